//! One client connection: read and validate each request, route it, answer
//! from the cache or hand it to its queue, stream the body to the process
//! and the response back, keep the connection alive where HTTP allows.
//!
//! Timeouts are HTTP.SYS's: IdleConnection between requests, HeaderWait
//! for a whole request head, EntityBody for each piece of a body,
//! DrainEntityBody for a body left unread after the response, RequestQueue
//! for a request waiting for a process, and MinSendRate for responses. A
//! client that trickles bytes holds nothing past them.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use httpapi::proto::{self, Header, LogInfo, ResponseBody, ResponseHead};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};

use crate::admit::{
    admit, request_message, Admission, Admitted, ConnInfo, Destination, Request, Rules,
};
use crate::cache::CacheEntry;
use crate::completion::{self, Events};
use crate::config::ListenerConfig;
use crate::http::{
    parse_head, ChunkedDecoder, ErrorReason as R, Framing, HttpError, Step, Version,
};
use crate::httperr::ErrorRecord;
use crate::queue::{ConnEvent, Dispatch};
use crate::response::{error_response, validate_head, write_head, Framed, WireBody};
use crate::server::{Route, Shared};
use crate::session::Session;
use crate::transport::Transport;
use crate::url::{CookedUrl, Scheme};

/// How an exchange ended for the connection.
enum Next {
    KeepAlive,
    Close,
    /// The process took the connection over: it goes to the process
    /// under `token` with what was read and not passed on.
    HandOff {
        token: httpapi::handoff::Token,
        forwarded: u64,
    },
}

/// A connection's state between its phases: what it is ([`ConnInfo`]),
/// its socket, the bytes read and not yet used, the output buffer, and
/// what the current exchange has sent.
struct Conn {
    shared: Arc<Shared>,
    stream: Transport,
    info: ConnInfo,
    buf: BytesMut,
    out: Vec<u8>,
    /// Bytes written for the current exchange (sc-bytes).
    sent: u64,
    /// The counters of the site this connection's last request went to.
    counters: Option<(Option<u32>, Arc<crate::stats::W3Counters>)>,
}

/// Counts a request being answered, for a graceful shutdown.
struct Busy(Arc<Shared>);

impl Busy {
    fn new(shared: &Arc<Shared>) -> Busy {
        shared.busy.fetch_add(1, Ordering::SeqCst);
        Busy(shared.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a site's request log needs of a request, kept while it is served.
struct RequestLog {
    site_id: u32,
    started: Instant,
    method: Bytes,
    version: &'static str,
    head_len: u64,
    user_agent: Option<Bytes>,
    cookie: Option<Bytes>,
    referer: Option<Bytes>,
    host: Option<Bytes>,
}

/// A request head with its method's and target's byte ranges.
type SeenHead = (Bytes, (usize, usize), (usize, usize));

/// What the log line of a request knows. Its text is only made when a
/// line is written.
#[derive(Clone, Default)]
struct Seen {
    head: Option<SeenHead>,
    version: Option<&'static str>,
    site_id: Option<u32>,
    queue: Option<Arc<crate::queue::Queue>>,
}

pub(crate) async fn serve(
    shared: Arc<Shared>,
    stream: Transport,
    remote: SocketAddr,
    local: SocketAddr,
    scheme: Scheme,
    tls: Option<proto::TlsInfo>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    if let Some(tcp) = stream.tcp() {
        let _ = tcp.set_nodelay(true);
    }
    let mut info = ConnInfo::new(remote, local, scheme);
    let secure = tls.is_some();
    info.tls = tls;
    info.id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    // IIS 5 isolation mode: the raw-data filter sees the bytes first.
    let stream = match shared.raw_filter.load_full() {
        None => stream,
        Some(filter) => {
            let demand = shared.demand_hook();
            let Some(session) = crate::rawfilter::filtering_session(&filter, demand.as_ref()).await
            else {
                tracing::warn!(client = %remote, "no process to filter the connection's raw data; closed");
                return;
            };
            let conn = info.id;
            let limit = ListenerConfig::seconds(config(&shared).idle_connection_timeout);
            crate::rawfilter::wrap(
                session,
                &filter,
                stream,
                proto::RawConnection {
                    conn,
                    remote,
                    local,
                    secure,
                },
                limit,
            )
        }
    };
    let mut conn = Conn {
        shared,
        stream,
        info,
        buf: BytesMut::with_capacity(8 * 1024),
        out: Vec::with_capacity(8 * 1024),
        sent: 0,
        counters: None,
    };
    let next = loop {
        match conn.exchange().await {
            Next::KeepAlive => continue,
            next => break next,
        }
    };
    conn.shared.disconnected(conn.info.id);
    if let Next::HandOff { token, forwarded } = next {
        let Conn { stream, buf, .. } = conn;
        let handoff = httpapi::handoff::Handoff {
            stream: Box::new(stream),
            buffered: buf.freeze(),
            forwarded,
            held: Box::new(permit),
        };
        if let Err(mut back) = httpapi::handoff::deliver(&token, handoff) {
            tracing::warn!(client = %remote, "a process asked for a connection it is not in the listener's process to take; closed");
            let _ = back.stream.shutdown().await;
        }
        return;
    }
    let _ = conn.stream.shutdown().await;
}

/// An https connection: the handshake (bounded by SslHandshakeTimeout),
/// then requests as on any connection. A handshake that fails is logged
/// in HTTPERR with its reason.
pub(crate) async fn serve_tls(
    shared: Arc<Shared>,
    stream: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let limit = ListenerConfig::seconds(config(&shared).ssl_handshake_timeout);
    let table = shared.tls.load_full();
    match crate::tls::handshake(&table, stream, local, limit).await {
        Ok((tls, info)) => {
            let stream = Transport::Tls(Box::new(tls));
            serve(
                shared,
                stream,
                remote,
                local,
                Scheme::Https,
                Some(info),
                permit,
            )
            .await;
        }
        Err(refused) => {
            tracing::debug!(client = %remote, reason = refused.reason.as_str(), detail = %refused.detail, "TLS connection refused");
            shared.errlog.write(&ErrorRecord {
                client: Some(remote),
                server: Some(local),
                reason: refused.reason.as_str(),
                ..ErrorRecord::default()
            });
        }
    }
}

/// Answers a connection over MaxConnections with 503 and closes it.
pub(crate) async fn refuse(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
) {
    let e = HttpError::new(503, R::ConnLimit, "Too Many Connections");
    let _ = timeout(
        Duration::from_secs(5),
        stream.write_all(&error_response(&e, false)),
    )
    .await;
    shared.errlog.write(&ErrorRecord {
        client: Some(remote),
        server: Some(local),
        status: Some(503),
        reason: R::ConnLimit.as_str(),
        ..ErrorRecord::default()
    });
}

fn config(shared: &Shared) -> &ListenerConfig {
    &shared.config
}

impl Conn {
    /// Counts an answered request on its site's counters, kept from one
    /// request to the next (a connection's requests mostly go to one site).
    fn count(
        &mut self,
        site: Option<u32>,
        verb: usize,
        status: u16,
        sent: u64,
        received: u64,
        log: Option<&LogInfo>,
    ) {
        let user = log.is_some_and(|l| !l.user.is_empty());
        let handler = log.map_or(0, |l| l.handler);
        self.site_counters(site)
            .record(verb, status, sent, received, user, handler);
    }

    /// A site's counters, kept from one request to the next.
    fn site_counters(&mut self, site: Option<u32>) -> &Arc<crate::stats::W3Counters> {
        match &self.counters {
            Some((id, _)) if *id == site => {}
            _ => {
                let c = self.shared.stats.counters(site);
                self.counters = Some((site, c));
            }
        }
        &self.counters.as_ref().expect("set above").1
    }

    /// Counts a response whose head came as in progress (IIS's Current and
    /// Maximum users, ISAPI and CGI requests) until the guard drops.
    fn in_progress(
        &mut self,
        site: Option<u32>,
        log: Option<&LogInfo>,
    ) -> crate::stats::InProgress {
        use crate::stats::Busy;
        let user = if log.is_some_and(|l| !l.user.is_empty()) {
            Busy::Authenticated
        } else {
            Busy::Anonymous
        };
        let handler = match log.map_or(0, |l| l.handler) {
            proto::HANDLER_ISAPI => Some(Busy::Isapi),
            proto::HANDLER_CGI => Some(Busy::Cgi),
            _ => None,
        };
        let kinds = (user, handler);
        let stats = self.shared.stats.clone();
        let site = self.site_counters(site).clone();
        stats.in_progress(&site, kinds)
    }

    fn log(&self, seen: &Seen, status: Option<u16>, reason: R) {
        self.shared.errlog.write(&ErrorRecord {
            client: Some(self.info.remote),
            server: Some(self.info.local),
            version: seen.version,
            method: seen
                .head
                .as_ref()
                .map(|(raw, m, _)| String::from_utf8_lossy(&raw[m.0..m.1]).into_owned()),
            uri: seen
                .head
                .as_ref()
                .map(|(raw, _, t)| String::from_utf8_lossy(&raw[t.0..t.1]).into_owned()),
            status,
            site_id: seen.site_id,
            reason: reason.as_str(),
            queue: seen.queue.as_ref().map(|q| q.name.clone()),
        });
    }

    /// Sends body bytes from a file: framed as the response's body is, with
    /// sendfile(2), within the time MinSendRate allows.
    async fn send_file_body(
        &mut self,
        response: Option<&mut ResponseState>,
        file: &std::fs::File,
        offset: u64,
        len: u64,
    ) -> Result<(), R> {
        let state = response.ok_or(R::Internal)?;
        let Some((prefix, suffix)) = state.frame_file(len) else {
            return Err(R::Internal);
        };
        if !state.wire_sends() {
            return Ok(());
        }
        if !prefix.is_empty() {
            self.write_timed(&prefix).await?;
        }
        let rate = config(&self.shared).min_send_rate.max(1);
        let allowed = Duration::from_secs_f64((len as f64 / rate as f64).max(1.0));
        let deadline = Instant::now() + allowed;
        let (mut at, mut left) = (offset, len);
        if self.stream.plain().is_none() {
            // Over TLS the bytes must pass through the cipher: read the
            // file in pieces and write each.
            return self.copy_file_body(file, at, left, deadline, suffix).await;
        }
        while let (true, Some(stream)) = (left > 0, self.stream.plain()) {
            let step = timeout_at(deadline, async {
                loop {
                    stream.writable().await?;
                    let attempt = stream.try_io(tokio::io::Interest::WRITABLE, || {
                        let mut off = at as i64;
                        nix::sys::sendfile::sendfile64(
                            stream,
                            file,
                            Some(&mut off),
                            left.min(1 << 30) as usize,
                        )
                        .map_err(std::io::Error::from)
                    });
                    match attempt {
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        other => return other,
                    }
                }
            })
            .await;
            match step {
                // The file is shorter than the program said.
                Ok(Ok(0)) => return Err(R::Internal),
                Ok(Ok(n)) => {
                    at += n as u64;
                    left -= n as u64;
                    self.sent += n as u64;
                }
                Ok(Err(_)) => return Err(R::ConnectionDropped),
                Err(_) => return Err(R::TimerMinBytesPerSecond),
            }
        }
        if !suffix.is_empty() {
            self.write_timed(suffix).await?;
        }
        Ok(())
    }

    /// Sends `len` bytes of `file` from `at` by reading and writing (a TLS
    /// connection), then the framing suffix.
    async fn copy_file_body(
        &mut self,
        file: &std::fs::File,
        mut at: u64,
        mut left: u64,
        deadline: Instant,
        suffix: &[u8],
    ) -> Result<(), R> {
        use std::os::unix::fs::FileExt;
        let mut piece = vec![0u8; (left.min(64 * 1024)) as usize];
        while left > 0 {
            let want = left.min(piece.len() as u64) as usize;
            let n = match file.read_at(&mut piece[..want], at) {
                Ok(0) | Err(_) => return Err(R::Internal),
                Ok(n) => n,
            };
            match timeout_at(deadline, self.stream.write_all(&piece[..n])).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(R::ConnectionDropped),
                Err(_) => return Err(R::TimerMinBytesPerSecond),
            }
            at += n as u64;
            left -= n as u64;
            self.sent += n as u64;
        }
        if !suffix.is_empty() {
            self.write_timed(suffix).await?;
        }
        Ok(())
    }

    /// Writes the site's request log line of an exchange.
    fn w3c(
        &self,
        rl: &RequestLog,
        url: &CookedUrl,
        status: u16,
        log: Option<&LogInfo>,
        body_received: u64,
    ) {
        let method = String::from_utf8_lossy(&rl.method);
        let suffix = log.map(|l| l.query_suffix.as_str()).unwrap_or_default();
        let base = log
            .and_then(|l| l.query.as_deref())
            .unwrap_or(url.query.as_str());
        let query = if suffix.is_empty() {
            std::borrow::Cow::Borrowed(base)
        } else {
            std::borrow::Cow::Owned(format!("{base}{suffix}"))
        };
        let stem = log
            .and_then(|l| l.stem.as_deref())
            .unwrap_or(url.path.as_str());
        self.shared.w3c.write(&crate::w3c::Record {
            site_id: rl.site_id,
            time: std::time::SystemTime::now(),
            client: self.info.remote.ip(),
            server: self.info.local,
            method: &method,
            stem,
            query: &query,
            user: log.map(|l| l.user.as_str()).unwrap_or(""),
            version: rl.version,
            user_agent: rl.user_agent.as_deref(),
            cookie: rl.cookie.as_deref(),
            referer: rl.referer.as_deref(),
            host: rl.host.as_deref(),
            status,
            substatus: log.map(|l| l.substatus).unwrap_or(0),
            win32: log.map(|l| l.win32_status).unwrap_or(0),
            sent: self.sent,
            received: rl.head_len + body_received,
            taken_ms: rl.started.elapsed().as_millis() as u64,
        });
    }

    /// Sends the listener's own error page and logs it.
    /// A stopped queue's answer: 503 AppOffline, or with `drop`
    /// (LoadBalancerCapabilities 1) a closed connection, logged either way.
    async fn offline(&mut self, drop: bool, seen: &Seen, head_only: bool) -> Next {
        if drop {
            self.log(seen, None, R::AppOffline);
            return Next::Close;
        }
        self.refuse(HttpError::unavailable(R::AppOffline), seen, head_only)
            .await
    }

    async fn refuse(&mut self, error: HttpError, seen: &Seen, head_only: bool) -> Next {
        self.log(seen, Some(error.status), error.reason);
        let page = error_response(&error, head_only);
        let _ = self.write_timed(&page).await;
        if let Some((raw, method, _)) = &seen.head {
            self.count(
                seen.site_id,
                crate::stats::verb_index(&raw[method.0..method.1]),
                error.status,
                page.len() as u64,
                raw.len() as u64,
                None,
            );
        }
        Next::Close
    }

    /// Writes all of `data` within the time MinSendRate allows.
    async fn write_timed(&mut self, data: &[u8]) -> Result<(), R> {
        let mut write = std::pin::pin!(self.stream.write_all(data));
        // A socket with room takes it at once: no timer for that.
        let written = match httpapi::ready_now(write.as_mut()).await {
            Some(done) => Ok(done),
            None => {
                let rate = config(&self.shared).min_send_rate.max(1);
                let allowed = Duration::from_secs_f64((data.len() as f64 / rate as f64).max(1.0));
                timeout(allowed, write).await
            }
        };
        match written {
            Ok(Ok(())) => {
                self.sent += data.len() as u64;
                Ok(())
            }
            Ok(Err(_)) => Err(R::ConnectionDropped),
            Err(_) => Err(R::TimerMinBytesPerSecond),
        }
    }

    /// Reads more into the buffer before `deadline` (asked for only when
    /// the read has to wait).
    async fn read_more(&mut self, deadline: impl FnOnce() -> Instant) -> Result<usize, ReadError> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(8 * 1024);
        }
        let mut read = std::pin::pin!(self.stream.read_buf(&mut self.buf));
        let result = match httpapi::ready_now(read.as_mut()).await {
            Some(read) => Ok(read),
            None => timeout_at(deadline(), read).await,
        };
        match result {
            Err(_) => Err(ReadError::Timeout),
            Ok(Ok(0)) => Err(ReadError::Closed),
            Ok(Ok(n)) => Ok(n),
            Ok(Err(_)) => Err(ReadError::Closed),
        }
    }

    /// One request and its response, in phases: the head is read
    /// ([`Conn::read_head`]), admitted ([`admit`]: canonical URL, route,
    /// refusals), answered from the cache ([`Conn::answer_from_cache`]) or
    /// handed to its queue and waited for ([`Conn::hand_to_queue`]), then
    /// streamed ([`Conn::run_exchange`]).
    async fn exchange(&mut self) -> Next {
        let request = match self.read_head().await {
            Ok(request) => request,
            Err(next) => return next,
        };
        let shared = self.shared.clone();
        let _busy = Busy::new(&shared);
        self.sent = 0;
        let mut seen = Seen {
            head: Some((
                request.raw.clone(),
                request.head.method,
                request.head.target,
            )),
            version: Some(request.head.version.as_str()),
            ..Seen::default()
        };
        let is_head = request.is_head();
        let rules = Rules {
            config: &shared.config,
            limits: &shared.limits,
            url_options: &shared.url_options,
        };
        let routes = shared.routes.load_full();
        let admitted = match admit(&self.info, &request, &routes, &rules) {
            Ok(Admission::Routed(admitted)) => admitted,
            Ok(Admission::ServerOptions) => return self.answer_server_options(&request).await,
            Err(refusal) => {
                if let Some(route) = refusal.route {
                    seen.site_id = route.site_id;
                    seen.queue = Some(route.queue.clone());
                }
                return self.refuse(refusal.error, &seen, is_head).await;
            }
        };
        let route = admitted.route;
        seen.site_id = route.site_id;
        seen.queue = Some(route.queue.clone());
        let request_log = route
            .site_id
            .filter(|id| shared.w3c.is_logging(*id))
            .map(|site_id| RequestLog {
                site_id,
                // Read only for a logged request (time-taken).
                started: Instant::now(),
                method: request
                    .raw
                    .slice(request.head.method.0..request.head.method.1),
                version: request.head.version.as_str(),
                head_len: request.raw.len() as u64,
                user_agent: request.header_bytes("user-agent"),
                cookie: request.header_bytes("cookie"),
                referer: request.header_bytes("referer"),
                host: request.header_bytes("host"),
            });
        if let Some(key) = &admitted.cache_key {
            if let Some(entry) = shared.cache.get(key) {
                return self
                    .answer_from_cache(&entry, &request, &admitted.url, request_log.as_ref(), &seen)
                    .await;
            }
        }
        let (id, session, mut events) = match self.hand_to_queue(&request, &admitted, &seen).await {
            Ok(handed) => handed,
            Err(next) => return next,
        };
        let ctx = ExchangeCtx {
            id,
            version: request.head.version,
            keep_alive: request.head.keep_alive,
            expect_continue: request.head.expect_continue,
            is_head,
            cache_key: if request.method() == b"GET" {
                admitted.cache_key
            } else {
                None
            },
            url: admitted.url,
            request_log,
            verb: crate::stats::verb_index(request.method()),
            site_id: seen.site_id,
            head_len: request.raw.len() as u64,
        };
        let next = self
            .run_exchange(&session, &mut events, request.head.framing, ctx, &seen)
            .await;
        session.finish(id);
        next
    }

    /// Reads a request head: IdleConnection until its first byte, then
    /// HeaderWait for the rest. `Err` when the connection is done.
    async fn read_head(&mut self) -> Result<Request, Next> {
        let cfg = config(&self.shared);
        let idle_wait = ListenerConfig::seconds(cfg.idle_connection_timeout);
        let header_wait = ListenerConfig::seconds(cfg.header_wait_timeout);
        // Each deadline is set when first needed: IdleConnection's at the
        // first wait with nothing received, HeaderWait's at the first wait
        // with part of a head (a head that arrives whole reads no clock).
        let mut idle_deadline: Option<Instant> = None;
        let mut head_deadline: Option<Instant> = None;
        loop {
            if !self.buf.is_empty() {
                match parse_head(&self.buf, &self.shared.limits) {
                    Ok(Some(head)) => {
                        let raw = self.buf.split_to(head.len).freeze();
                        return Ok(Request { raw, head });
                    }
                    Ok(None) => {}
                    Err(e) => return Err(self.refuse(e, &Seen::default(), false).await),
                }
            }
            let waiting = if self.buf.is_empty() {
                (&mut idle_deadline, idle_wait)
            } else {
                (&mut head_deadline, header_wait)
            };
            let deadline = || *waiting.0.get_or_insert_with(|| Instant::now() + waiting.1);
            match self.read_more(deadline).await {
                Ok(_) => {}
                Err(ReadError::Timeout) => {
                    let reason = if head_deadline.is_some() {
                        R::TimerHeaderWait
                    } else {
                        R::TimerConnectionIdle
                    };
                    self.log(&Seen::default(), None, reason);
                    return Err(Next::Close);
                }
                Err(ReadError::Closed) => {
                    if !self.buf.is_empty() {
                        self.log(&Seen::default(), None, R::ConnectionDropped);
                    }
                    return Err(Next::Close);
                }
            }
        }
    }

    /// `OPTIONS *`: what the server allows.
    async fn answer_server_options(&mut self, request: &Request) -> Next {
        let reply = format!(
            "HTTP/1.1 200 OK\r\nAllow: OPTIONS, GET, HEAD, POST, PUT, DELETE, TRACE\r\nServer: {}\r\nDate: {}\r\nContent-Length: 0\r\n\r\n",
            crate::response::SERVER,
            crate::response::http_date()
        );
        match self.write_timed(reply.as_bytes()).await {
            Ok(()) if request.head.keep_alive => Next::KeepAlive,
            _ => Next::Close,
        }
    }

    /// A response the cache holds, written without the queue.
    async fn answer_from_cache(
        &mut self,
        entry: &CacheEntry,
        request: &Request,
        url: &CookedUrl,
        request_log: Option<&RequestLog>,
        seen: &Seen,
    ) -> Next {
        let not_modified = entry.not_modified(
            request.header("if-none-match"),
            request.header("if-modified-since"),
        );
        self.out.clear();
        let mut out = std::mem::take(&mut self.out);
        entry.render(
            not_modified,
            request.is_head(),
            request.head.keep_alive,
            request.head.version == Version::Http10,
            &mut out,
        );
        let result = self.write_timed(&out).await;
        let out_len = out.len() as u64;
        self.out = out;
        let status = if not_modified { 304 } else { 200 };
        if result.is_ok() {
            self.count(
                seen.site_id,
                crate::stats::verb_index(request.method()),
                status,
                out_len,
                request.raw.len() as u64,
                None,
            );
        }
        if let (Ok(()), Some(rl), false) = (&result, request_log, entry.dont_log) {
            self.w3c(rl, url, status, None, 0);
        }
        match result {
            Ok(()) if request.head.keep_alive => Next::KeepAlive,
            Ok(()) => Next::Close,
            Err(reason) => {
                self.log(seen, Some(200), reason);
                Next::Close
            }
        }
    }

    /// Hands the request to its route's queue and waits (RequestQueue at
    /// most) for a process to take it: the request's id, the process's
    /// session and the events of the exchange.
    async fn hand_to_queue(
        &mut self,
        request: &Request,
        admitted: &Admitted<'_, Route>,
        seen: &Seen,
    ) -> Result<(u64, Arc<Session>, Events), Next> {
        let shared = self.shared.clone();
        let route = admitted.route;
        let is_head = request.is_head();
        let id = shared.next_request_id.fetch_add(1, Ordering::Relaxed);
        let message = request_message(
            &self.info,
            request,
            &admitted.url,
            &Destination {
                id,
                queue: route.queue.id,
                url_context: route.context,
                prefix: &route.prefix,
            },
        );
        let (events_tx, mut events) = completion::slot();
        let demand = shared.demand_hook();
        match route.queue.dispatch(message, events_tx, demand.as_ref()) {
            Dispatch::Offline => return Err(self.offline(false, seen, is_head).await),
            Dispatch::Dropped => return Err(self.offline(true, seen, is_head).await),
            Dispatch::Full => {
                return Err(self
                    .refuse(HttpError::unavailable(R::QueueFull), seen, is_head)
                    .await);
            }
            Dispatch::Delivered | Dispatch::Queued => {}
        }
        // Taken at once (a process had room) is the common case: its
        // event is already there, and no timer is armed for it.
        let mut queue_deadline = None;
        loop {
            let event = match events.try_recv() {
                Some(event) => Ok(Some(event)),
                None => {
                    let deadline = *queue_deadline.get_or_insert_with(|| {
                        Instant::now()
                            + ListenerConfig::seconds(config(&shared).request_queue_timeout)
                    });
                    timeout_at(deadline, events.recv()).await
                }
            };
            match event {
                Ok(Some(ConnEvent::Delivered(session))) => return Ok((id, session, events)),
                Ok(Some(ConnEvent::Offline { drop })) => {
                    return Err(self.offline(drop, seen, is_head).await);
                }
                Ok(Some(ConnEvent::Abandoned)) | Ok(None) => {
                    return Err(self.offline(false, seen, is_head).await);
                }
                Ok(Some(_)) => continue,
                Err(_) => {
                    if route.queue.cancel(id) {
                        return Err(self
                            .refuse(HttpError::unavailable(R::TimerAppPool), seen, is_head)
                            .await);
                    }
                    // Taken just now: its Delivered event is on its way.
                }
            }
        }
    }

    /// Streams the request body to the process and its response back.
    /// Response events that are ready together are written together: a
    /// small response is one write.
    async fn run_exchange(
        &mut self,
        session: &Arc<Session>,
        events: &mut Events,
        framing: Framing,
        ctx: ExchangeCtx,
        seen: &Seen,
    ) -> Next {
        let shared = self.shared.clone();
        let cfg = config(&shared);
        let mut body = BodyState::new(framing, &shared);
        let mut response: Option<ResponseState> = None;
        let mut in_progress: Option<crate::stats::InProgress> = None;
        let mut sent_continue = false;
        // The process reads the body: only then is a 100 Continue owed
        // (a program that answers without reading, a 401 say, sends none).
        let mut body_wanted = false;

        loop {
            // Forward what the buffer already holds, within the window.
            if let Err(e) = body.forward(&mut self.buf, session, ctx.id) {
                session.abort(ctx.id);
                if response.is_none() {
                    return self.refuse(e, seen, ctx.is_head).await;
                }
                self.log(seen, None, e.reason);
                return Next::Close;
            }
            if ctx.expect_continue
                && body_wanted
                && !sent_continue
                && response.is_none()
                && body.wants_more()
            {
                sent_continue = true;
                if self
                    .write_timed(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await
                    .is_err()
                {
                    session.abort(ctx.id);
                    return Next::Close;
                }
            }
            let reading = body.wants_more() && body.window_open();
            // Only while the body is read (a request without one arms no
            // timer and reads no clock).
            let entity_deadline =
                reading.then(|| Instant::now() + ListenerConfig::seconds(cfg.entity_body_timeout));
            tokio::select! {
                biased;
                event = events.recv() => {
                    let Some(mut event) = event else {
                        self.log(seen, None, R::ConnectionAbandonedByAppPool);
                        return Next::Close;
                    };
                    self.out.clear();
                    let mut outcome = EventOutcome::Continue;
                    let mut file = None;
                    let had_head = response.is_some();
                    loop {
                        if let ConnEvent::BodyConsumed(n) = event {
                            body.acknowledge(n);
                        } else if let ConnEvent::BodyWanted = event {
                            body_wanted = true;
                        } else if let ConnEvent::TakeOver { token, status } = event {
                            // The process speaks for itself from here:
                            // what it framed before goes first.
                            if !self.out.is_empty() {
                                let out = std::mem::take(&mut self.out);
                                if self.write_timed(&out).await.is_err() {
                                    return Next::Close;
                                }
                            }
                            self.count(ctx.site_id, ctx.verb, status, self.sent, ctx.head_len + body.forwarded, None);
                            if let Some(rl) = &ctx.request_log {
                                self.w3c(rl, &ctx.url, status, None, body.forwarded);
                            }
                            return Next::HandOff { token, forwarded: body.forwarded };
                        } else if let ConnEvent::File { file: f, offset, len } = event {
                            // Written after what is already framed.
                            file = Some((f, offset, len));
                            break;
                        } else {
                            outcome = apply(event, &mut response, &ctx, &shared, &mut self.out);
                        }
                        if !matches!(outcome, EventOutcome::Continue) {
                            break;
                        }
                        match events.try_recv() {
                            Some(more) => event = more,
                            None => break,
                        }
                    }
                    // From its head to its end, the response is in
                    // progress (the guard ends with the exchange).
                    if !had_head && in_progress.is_none() {
                        if let Some(r) = response.as_ref() {
                            in_progress = Some(self.in_progress(ctx.site_id, r.log.as_ref()));
                        }
                    }
                    if let EventOutcome::Fail { error: Some(error), .. } = outcome {
                        if response.is_none() {
                            session.abort(ctx.id);
                            return self.refuse(error, seen, ctx.is_head).await;
                        }
                    }
                    // A finished response goes into the cache before its
                    // last bytes leave, so the client's next request hits.
                    if let (EventOutcome::Done, Some(state)) = (&outcome, response.as_mut()) {
                        if let Some((key, entry)) = state.cache_entry(&ctx) {
                            shared.cache.insert(key, entry);
                        }
                    }
                    // Head and file leave in full segments (nginx's
                    // tcp_nopush): cork until the file is handed over.
                    let corked = file.is_some() && self.stream.tcp().is_some_and(|tcp| socket2::SockRef::from(tcp).set_tcp_cork(true).is_ok());
                    if !self.out.is_empty() {
                        let out = std::mem::take(&mut self.out);
                        let result = self.write_timed(&out).await;
                        self.out = out;
                        if let Err(reason) = result {
                            session.abort(ctx.id);
                            self.log(seen, response.as_ref().map(|r| r.status), reason);
                            return Next::Close;
                        }
                    }
                    if let Some((f, offset, len)) = file {
                        let sent = self.send_file_body(response.as_mut(), &f, offset, len).await;
                        if corked {
                            if let Some(tcp) = self.stream.tcp() { let _ = socket2::SockRef::from(tcp).set_tcp_cork(false); }
                        }
                        if let Err(reason) = sent {
                            session.abort(ctx.id);
                            self.log(seen, response.as_ref().map(|r| r.status), reason);
                            return Next::Close;
                        }
                    }
                    if let Some(state) = response.as_mut() {
                        if state.unacked >= proto::ACK_STEP {
                            session.response_consumed(ctx.id, std::mem::take(&mut state.unacked));
                        }
                    }
                    match outcome {
                        EventOutcome::Continue => {}
                        EventOutcome::Done => {
                            if let Some(r) = response.as_ref() {
                                self.count(
                                    ctx.site_id,
                                    ctx.verb,
                                    r.status,
                                    self.sent,
                                    ctx.head_len + body.forwarded,
                                    r.log.as_ref(),
                                );
                            }
                            if let (Some(rl), Some(r)) = (&ctx.request_log, response.as_ref()) {
                                if !r.log.as_ref().is_some_and(|l| l.dont_log) {
                                    self.w3c(rl, &ctx.url, r.status, r.log.as_ref(), body.forwarded);
                                }
                            }
                            let keep = response.as_ref().is_some_and(|r| r.keep_alive) && ctx.keep_alive;
                            return self.after_response(&mut body, keep, seen).await;
                        }
                        EventOutcome::Fail { reason, abort, .. } => {
                            if abort {
                                session.abort(ctx.id);
                            }
                            self.log(seen, response.as_ref().map(|r| r.status), reason);
                            return Next::Close;
                        }
                    }
                }
                read = self.stream.read_buf(&mut self.buf), if reading => {
                    match read {
                        Ok(0) | Err(_) => {
                            session.abort(ctx.id);
                            self.log(seen, None, R::ConnectionDropped);
                            return Next::Close;
                        }
                        Ok(_) => {}
                    }
                }
                _ = sleep_until_some(entity_deadline), if reading => {
                    session.abort(ctx.id);
                    self.log(seen, None, R::TimerEntityBody);
                    return Next::Close;
                }
            }
        }
    }

    /// After the response: the rest of the request body is read and
    /// dropped (DrainEntityBody at most) so the connection can be reused.
    async fn after_response(
        &mut self,
        body: &mut BodyState,
        keep_alive: bool,
        seen: &Seen,
    ) -> Next {
        if !keep_alive {
            return Next::Close;
        }
        let mut deadline = None;
        loop {
            match body.drain(&mut self.buf) {
                Err(_) => return Next::Close,
                Ok(true) => return Next::KeepAlive,
                Ok(false) => {}
            }
            let drain_wait =
                ListenerConfig::seconds(config(&self.shared).drain_entity_body_timeout);
            let deadline = || *deadline.get_or_insert_with(|| Instant::now() + drain_wait);
            match self.read_more(deadline).await {
                Ok(_) => {}
                Err(ReadError::Timeout) => {
                    self.log(seen, None, R::TimerEntityBody);
                    return Next::Close;
                }
                Err(ReadError::Closed) => return Next::Close,
            }
        }
    }
}

enum ReadError {
    Timeout,
    Closed,
}

/// What one response event did to the exchange.
enum EventOutcome {
    Continue,
    /// The response is complete (its last bytes are in the buffer).
    Done,
    /// The exchange cannot go on. `error` is the page to send if no
    /// response has started; `abort` tells the process.
    Fail {
        error: Option<HttpError>,
        reason: R,
        abort: bool,
    },
}

/// Sleeps until `deadline`, or forever without one. A `select!` branch's
/// future is built even while the branch is off: this one then builds no
/// timer.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn internal() -> HttpError {
    HttpError::new(500, R::Internal, "Internal Server Error")
}

/// Applies a response event, appending what goes on the wire to `out`.
fn apply(
    event: ConnEvent,
    response: &mut Option<ResponseState>,
    ctx: &ExchangeCtx,
    shared: &Shared,
    out: &mut Vec<u8>,
) -> EventOutcome {
    let fail = |error: Option<HttpError>, reason: R, abort: bool| EventOutcome::Fail {
        error,
        reason,
        abort,
    };
    match event {
        // Files and hand-overs are the connection's own work, outside
        // this batch.
        ConnEvent::Delivered(_)
        | ConnEvent::BodyConsumed(_)
        | ConnEvent::BodyWanted
        | ConnEvent::File { .. }
        | ConnEvent::TakeOver { .. } => EventOutcome::Continue,
        ConnEvent::Head(h) => {
            if response.is_some() {
                return fail(None, R::Internal, true);
            }
            if let Err(why) = validate_head(&h) {
                tracing::warn!(request = ctx.id, %why, "a process sent an invalid response");
                return fail(Some(internal()), R::Internal, true);
            }
            let framed = write_head(&h, ctx.version, ctx.is_head, ctx.keep_alive, out);
            *response = Some(ResponseState::new(&h, framed, ctx, shared));
            EventOutcome::Continue
        }
        ConnEvent::Body(data) => {
            let Some(state) = response.as_mut() else {
                return fail(Some(internal()), R::Internal, true);
            };
            if state.frame_chunk(&data, out).is_none() {
                return fail(None, R::Internal, true);
            }
            EventOutcome::Continue
        }
        ConnEvent::End(trailers, late_log) => {
            let Some(state) = response.as_mut() else {
                return fail(Some(internal()), R::Internal, false);
            };
            late_log.apply(&mut state.log);
            match state.finish(&trailers) {
                Some(end) => {
                    out.extend_from_slice(&end);
                    EventOutcome::Done
                }
                None => fail(None, R::Internal, false),
            }
        }
        ConnEvent::Abandoned | ConnEvent::Offline { .. } => fail(
            Some(HttpError::unavailable(R::ConnectionAbandonedByAppPool)),
            R::ConnectionAbandonedByAppPool,
            false,
        ),
    }
}

struct ExchangeCtx {
    id: u64,
    version: Version,
    keep_alive: bool,
    expect_continue: bool,
    is_head: bool,
    cache_key: Option<String>,
    url: CookedUrl,
    request_log: Option<RequestLog>,
    /// For the counters: the verb's index, the site, the head's size.
    verb: usize,
    site_id: Option<u32>,
    head_len: u64,
}

/// The request body on its way to the process.
struct BodyState {
    kind: BodyKind,
    /// Sent but not yet acknowledged by the process.
    unacked: u64,
    ended: bool,
    /// Bytes forwarded so far, against MaxRequestEntityBytes (0: none).
    forwarded: u64,
    max: u64,
}

enum BodyKind {
    None,
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
}

impl BodyState {
    fn new(framing: Framing, shared: &Shared) -> BodyState {
        let kind = match framing {
            Framing::None => BodyKind::None,
            Framing::Length(n) => BodyKind::Length(n),
            Framing::Chunked => BodyKind::Chunked(Box::new(ChunkedDecoder::new(
                shared.config.max_request_bytes,
                shared.config.max_field_length,
            ))),
        };
        BodyState {
            ended: matches!(kind, BodyKind::None),
            kind,
            unacked: 0,
            forwarded: 0,
            max: shared.config.max_request_entity_bytes,
        }
    }

    fn wants_more(&self) -> bool {
        !self.ended
    }

    fn window_open(&self) -> bool {
        self.unacked < proto::BODY_WINDOW
    }

    fn acknowledge(&mut self, n: u64) {
        self.unacked = self.unacked.saturating_sub(n);
    }

    /// Sends body bytes from `buf` to the process while the window allows.
    fn forward(&mut self, buf: &mut BytesMut, session: &Session, id: u64) -> Result<(), HttpError> {
        while !self.ended && self.window_open() && !buf.is_empty() {
            let room = (proto::BODY_WINDOW - self.unacked) as usize;
            match &mut self.kind {
                BodyKind::None => self.ended = true,
                BodyKind::Length(remaining) => {
                    let take = (*remaining)
                        .min(buf.len() as u64)
                        .min(room as u64)
                        .min(proto::MAX_BODY_CHUNK as u64) as usize;
                    let chunk = buf.split_to(take);
                    *remaining -= take as u64;
                    self.unacked += take as u64;
                    self.ended = *remaining == 0;
                    session.send_body(id, self.ended, &chunk);
                }
                BodyKind::Chunked(decoder) => match decoder.decode(buf)? {
                    // The window is a bound on what is buffered, not a
                    // hard cut: a decoded piece goes whole.
                    Step::Data {
                        start,
                        end,
                        consumed,
                    } => {
                        self.forwarded += (end - start) as u64;
                        if self.max > 0 && self.forwarded > self.max {
                            return Err(HttpError::new(
                                413,
                                R::EntityTooLarge,
                                "Request Entity Too Large",
                            ));
                        }
                        for piece in buf[start..end].chunks(proto::MAX_BODY_CHUNK) {
                            session.send_body(id, false, piece);
                        }
                        self.unacked += (end - start) as u64;
                        bytes::Buf::advance(buf, consumed);
                    }
                    Step::NeedMore { consumed } => {
                        bytes::Buf::advance(buf, consumed);
                        break;
                    }
                    Step::End { consumed, trailers } => {
                        bytes::Buf::advance(buf, consumed);
                        self.ended = true;
                        if !trailers.is_empty() {
                            session.send_trailers(id, parse_trailers(&trailers));
                        }
                        session.send_body(id, true, &[]);
                    }
                },
            }
        }
        Ok(())
    }

    /// Reads and drops body bytes; true once the body is over.
    fn drain(&mut self, buf: &mut BytesMut) -> Result<bool, HttpError> {
        while !self.ended && !buf.is_empty() {
            match &mut self.kind {
                BodyKind::None => self.ended = true,
                BodyKind::Length(remaining) => {
                    let take = (*remaining).min(buf.len() as u64) as usize;
                    let _ = buf.split_to(take);
                    *remaining -= take as u64;
                    self.ended = *remaining == 0;
                }
                BodyKind::Chunked(decoder) => match decoder.decode(buf)? {
                    Step::Data { consumed, .. } | Step::NeedMore { consumed } => {
                        let _ = buf.split_to(consumed);
                    }
                    Step::End { consumed, .. } => {
                        let _ = buf.split_to(consumed);
                        self.ended = true;
                    }
                },
            }
        }
        Ok(self.ended)
    }
}

/// The response on its way to the client.
struct ResponseState {
    status: u16,
    wire: WireBody,
    written: u64,
    /// Written to the client but not yet acknowledged to the process.
    unacked: u64,
    keep_alive: bool,
    /// The head and body kept for the cache, while the response may go in.
    cache: Option<(Vec<u8>, Vec<u8>, Option<Duration>)>,
    /// What the application added for the request log.
    log: Option<LogInfo>,
}

impl ResponseState {
    fn new(
        head: &ResponseHead,
        framed: Framed,
        ctx: &ExchangeCtx,
        shared: &Shared,
    ) -> ResponseState {
        let cfg = &shared.config;
        let cache = match (head.cache, head.body, &ctx.cache_key) {
            (Some(policy), ResponseBody::Length(n), Some(_))
                if head.status == 200 && n <= cfg.uri_max_uri_bytes && !ctx.is_head =>
            {
                let kept_head = cacheable_head(head);
                (kept_head.len() <= cfg.uri_max_header_bytes).then(|| {
                    let ttl = match policy {
                        proto::CachePolicy::UntilInvalidated => None,
                        proto::CachePolicy::TimeToLive { seconds } => {
                            Some(Duration::from_secs(u64::from(seconds)))
                        }
                    };
                    (kept_head, Vec::with_capacity(n as usize), ttl)
                })
            }
            _ => None,
        };
        ResponseState {
            status: head.status,
            wire: framed.body,
            written: 0,
            unacked: 0,
            keep_alive: framed.keep_alive,
            cache,
            log: head.log.clone(),
        }
    }

    /// Frames a body chunk into `out`. `Some(true)` if there is something
    /// to write, `Some(false)` if nothing goes on the wire (HEAD), `None`
    /// if the process sent more than it announced.
    fn frame_chunk(&mut self, data: &Bytes, out: &mut Vec<u8>) -> Option<bool> {
        self.written += data.len() as u64;
        self.unacked += data.len() as u64;
        if let Some((_, body, _)) = &mut self.cache {
            body.extend_from_slice(data);
        }
        match self.wire {
            WireBody::None => Some(false),
            WireBody::Length(n) => {
                if self.written > n {
                    return None;
                }
                out.extend_from_slice(data);
                Some(true)
            }
            WireBody::Chunked => {
                out.extend_from_slice(format!("{:X}\r\n", data.len()).as_bytes());
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
                Some(true)
            }
            WireBody::UntilClose => {
                out.extend_from_slice(data);
                Some(true)
            }
        }
    }

    /// Accounts for `len` body bytes coming from a file: the bytes to write
    /// before and after them (chunk framing), or `None` if they are more
    /// than the response announced. Such a body is never cached.
    fn frame_file(&mut self, len: u64) -> Option<(Vec<u8>, &'static [u8])> {
        self.written += len;
        self.cache = None;
        match self.wire {
            WireBody::Length(n) if self.written > n => None,
            WireBody::Chunked if len > 0 => Some((format!("{len:X}\r\n").into_bytes(), b"\r\n")),
            _ => Some((Vec::new(), b"")),
        }
    }

    /// Whether body bytes go on the wire (not for HEAD, 204, 304).
    fn wire_sends(&self) -> bool {
        self.wire != WireBody::None
    }

    /// The bytes that end the response, or `None` if the body fell short.
    fn finish(&mut self, trailers: &[Header]) -> Option<Vec<u8>> {
        match self.wire {
            WireBody::Length(n) if self.written != n => None,
            WireBody::Chunked => {
                let mut end = b"0\r\n".to_vec();
                for t in trailers.iter().filter(|t| {
                    t.name.bytes().all(crate::http::is_tchar)
                        && !t.value.iter().any(|&b| b == b'\r' || b == b'\n')
                }) {
                    end.extend_from_slice(t.name.as_bytes());
                    end.extend_from_slice(b": ");
                    end.extend_from_slice(&t.value);
                    end.extend_from_slice(b"\r\n");
                }
                end.extend_from_slice(b"\r\n");
                Some(end)
            }
            _ => Some(Vec::new()),
        }
    }

    fn cache_entry(&mut self, ctx: &ExchangeCtx) -> Option<(String, CacheEntry)> {
        let (head, body, ttl) = self.cache.take()?;
        let key = ctx.cache_key.clone()?;
        let mut entry = CacheEntry::new(
            head,
            Bytes::from(body),
            &ctx.url.host,
            ctx.url.port,
            &ctx.url.path,
            ttl,
        );
        entry.dont_log = self.log.as_ref().is_some_and(|l| l.dont_log);
        Some((key, entry))
    }
}

/// Raw trailer lines (`name: value\r\n`, already validated) as fields.
fn parse_trailers(raw: &[u8]) -> Vec<Header> {
    raw.split(|&b| b == b'\n')
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|&b| b == b':')?;
            Some(Header {
                name: String::from_utf8_lossy(&line[..colon]).into_owned(),
                value: line[colon + 1..].trim_ascii().to_vec(),
            })
        })
        .collect()
}

/// The head a cache entry keeps: status line and the application's
/// headers, without what is written fresh for each hit.
fn cacheable_head(head: &ResponseHead) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    crate::response::push_status_and_fields(head, true, &mut out);
    out
}
