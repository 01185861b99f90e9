//! Sessions: one per program connected to the control socket (at most 128
//! per user). A session creates or opens queues (the peer's user and
//! process decide which it may open, and whether it may control them or
//! only receive), registers URL prefixes (checked against the URL
//! reservations with the peer's Unix credentials), receives requests and
//! sends responses, all multiplexed on one connection. When a program
//! goes away its in-flight requests are abandoned (their clients'
//! connections close) and the queues only it held are removed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Buf, BytesMut};
use httpapi::proto::{
    decode_frame, decode_message, encode_message, encode_request_body, ApiError, ErrorCode, Frame,
    QueueProperty, ToApp, ToListener, PROTOCOL_VERSION,
};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use crate::queue::{ConnEvent, EventSender, Queue};
use crate::server::{Caller, Shared};

/// A connected program.
pub struct Session {
    pub id: u64,
    pub uid: u32,
    /// The peer's process, when the socket says.
    pub pid: Option<u32>,
    writer: mpsc::UnboundedSender<Vec<u8>>,
    requests: Mutex<HashMap<u64, EventSender>>,
    queues: Mutex<HashMap<u32, Arc<Queue>>>,
    closed: AtomicBool,
    /// Raw-data round trips waiting for the filter's answer, by
    /// connection and sequence number.
    raw_waits: Mutex<HashMap<(u64, u64), tokio::sync::oneshot::Sender<RawDone>>>,
}

/// A raw-data filter's answer ([`ToListener::RawDataDone`]).
#[derive(Debug)]
pub(crate) struct RawDone {
    pub data: Vec<u8>,
    pub to_client: Vec<u8>,
    pub close: bool,
    /// The most the next read from the client takes (0: any).
    pub next_read: u32,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("uid", &self.uid)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Session {
    fn send(&self, msg: &ToApp) {
        let mut frame = Vec::with_capacity(256);
        encode_message(msg, &mut frame);
        let _ = self.writer.send(frame);
    }

    /// Sends a request message, encoded when it was admitted.
    pub(crate) fn send_request(&self, request: crate::admit::RequestFrame) {
        let _ = self.writer.send(request.frame);
    }

    pub(crate) fn send_body(&self, request: u64, end: bool, data: &[u8]) {
        let mut frame = Vec::with_capacity(data.len() + 14);
        encode_request_body(request, end, data, &mut frame);
        let _ = self.writer.send(frame);
    }

    pub(crate) fn send_trailers(&self, request: u64, trailers: Vec<httpapi::proto::Header>) {
        self.send(&ToApp::RequestTrailers { request, trailers });
    }

    pub(crate) fn response_consumed(&self, request: u64, bytes: u64) {
        self.send(&ToApp::ResponseConsumed { request, bytes });
    }

    /// A connection this session waits on closed.
    pub(crate) fn disconnected(&self, connection: u64) {
        self.send(&ToApp::Disconnected { connection });
    }

    /// A connection this session filters opened.
    pub(crate) fn raw_opened(&self, connection: httpapi::proto::RawConnection) {
        self.send(&ToApp::RawOpened(connection));
    }

    /// A connection this session filtered closed.
    pub(crate) fn raw_closed(&self, conn: u64) {
        lock(&self.raw_waits).retain(|(c, _), _| *c != conn);
        self.send(&ToApp::RawClosed { conn });
    }

    /// Hands a piece of a connection's bytes to the filter; its answer,
    /// or `None` when the session ends first.
    pub(crate) fn raw_call(
        &self,
        conn: u64,
        seq: u64,
        outbound: bool,
        data: Vec<u8>,
    ) -> impl std::future::Future<Output = Option<RawDone>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut waits = lock(&self.raw_waits);
            if !self.closed.load(Ordering::Acquire) {
                waits.insert((conn, seq), tx);
            }
        }
        self.send(&ToApp::RawData {
            conn,
            seq,
            outbound,
            data,
        });
        async move { rx.await.ok() }
    }

    /// The listener gives up on a request (its client left).
    pub(crate) fn abort(&self, request: u64) {
        if lock(&self.requests).remove(&request).is_some() {
            self.send(&ToApp::Aborted { request });
        }
    }

    /// The connection is done with the request.
    pub(crate) fn finish(&self, request: u64) {
        lock(&self.requests).remove(&request);
    }

    /// Registers a request handed to this session; false when the
    /// session is closing and will never answer it.
    pub(crate) fn track(&self, request: u64, events: EventSender) -> bool {
        let mut requests = lock(&self.requests);
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        requests.insert(request, events);
        true
    }

    fn event_sender(&self, request: u64) -> Option<EventSender> {
        lock(&self.requests).get(&request).cloned()
    }

    /// Hands `event` to the connection of `request`, if it still waits.
    fn deliver(&self, request: u64, event: ConnEvent) {
        if let Some(events) = lock(&self.requests).get(&request) {
            let _ = events.send(event);
        }
    }
}

/// Serves one program's connection until it closes.
pub(crate) async fn run(shared: Arc<Shared>, stream: UnixStream, id: u64) {
    let cred = stream.peer_cred().ok();
    let uid = cred.map(|c| c.uid()).unwrap_or(u32::MAX);
    let pid = cred.and_then(|c| c.pid());
    tracing::debug!(session = id, uid, pid, "program connected");
    // Registered for reading only: the worker's every read of what this
    // side wrote would otherwise wake this loop (see quietsock).
    let stream = match quietsock::QuietUnixStream::from_tokio(stream) {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!(session = id, error = %e, "cannot take over the program's socket");
            return;
        }
    };
    let (reader, writer_half) = stream.into_split();
    let mut fds: std::collections::VecDeque<std::os::fd::OwnedFd> =
        std::collections::VecDeque::new();
    let mut reader_buf = httpapi::fdpass::FdReader::new(64 * 1024);
    let (tx, rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let session = Arc::new(Session {
        id,
        uid,
        pid: pid.map(|p| p as u32),
        writer: tx,
        requests: Mutex::new(HashMap::new()),
        queues: Mutex::new(HashMap::new()),
        closed: AtomicBool::new(false),
        raw_waits: Mutex::new(HashMap::new()),
    });

    let writer = tokio::spawn(httpapi::proto::write_batched(rx, writer_half));

    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut greeted = false;
    'read: loop {
        loop {
            let decoded = match decode_frame(&buf) {
                Ok(Some((frame, len))) => match frame {
                    Frame::Message(bytes) => match decode_message::<ToListener>(bytes) {
                        Ok(msg) => Some((Some(msg), len, None)),
                        Err(e) => {
                            tracing::warn!(session = id, error = %e, "bad message; closing the session");
                            break 'read;
                        }
                    },
                    Frame::ResponseBody { request, end, data } => {
                        let data_start = len - data.len();
                        Some((None, len, Some((request, end, data_start))))
                    }
                    Frame::RequestBody { .. } => {
                        tracing::warn!(
                            session = id,
                            "a program sent a request body frame; closing the session"
                        );
                        break 'read;
                    }
                },
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(session = id, error = %e, "bad frame; closing the session");
                    break 'read;
                }
            };
            let Some((msg, len, body)) = decoded else {
                break;
            };
            if let Some((request, end, data_start)) = body {
                let frame = buf.split_to(len).freeze();
                let data = frame.slice(data_start..);
                if !end {
                    if !data.is_empty() {
                        session.deliver(request, ConnEvent::Body(data));
                    }
                } else if let Some(events) = lock(&session.requests).remove(&request) {
                    if !data.is_empty() {
                        let _ = events.send(ConnEvent::Body(data));
                    }
                    // The same as a ResponseEnd without trailers.
                    let _ = events.send(ConnEvent::End(Vec::new(), Default::default()));
                }
                continue;
            }
            buf.advance(len);
            let Some(msg) = msg else { continue };
            if !greeted {
                match msg {
                    ToListener::Hello { version, .. } if version == PROTOCOL_VERSION => {
                        greeted = true;
                        session.send(&ToApp::Welcome {
                            version: PROTOCOL_VERSION,
                        });
                        continue;
                    }
                    _ => {
                        tracing::warn!(
                            session = id,
                            "the first message was not a Hello of this protocol version"
                        );
                        break 'read;
                    }
                }
            }
            if let ToListener::SendFile {
                request,
                offset,
                len,
            } = msg
            {
                let Some(fd) = fds.pop_front() else {
                    tracing::warn!(
                        session = id,
                        "a SendFile frame came without a descriptor; closing the session"
                    );
                    break 'read;
                };
                send_file(&session, request, std::fs::File::from(fd), offset, len);
                continue;
            }
            handle(&shared, &session, msg);
        }
        // Descriptors may come with the bytes (SendFile).
        match reader_buf.read(&reader, &mut fds).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&reader_buf.scratch[..n]),
        }
        if fds.len() > httpapi::fdpass::MAX_PENDING_FDS {
            tracing::warn!(
                session = id,
                "a program sent descriptors no frame claims; closing the session"
            );
            break;
        }
    }

    close(&shared, &session);
    drop(session);
    let _ = writer.await;
}

/// Ends a session: its requests are abandoned, its queues released.
fn close(shared: &Arc<Shared>, session: &Arc<Session>) {
    let requests: Vec<EventSender> = {
        let mut map = lock(&session.requests);
        session.closed.store(true, Ordering::Release);
        map.drain().map(|(_, s)| s).collect()
    };
    for events in requests {
        let _ = events.send(ConnEvent::Abandoned);
    }
    // Connections waiting on this session's raw-data filter close.
    lock(&session.raw_waits).clear();
    let queues: Vec<Arc<Queue>> = lock(&session.queues).drain().map(|(_, q)| q).collect();
    for queue in queues {
        queue.detach(session);
        if queue.remove_holder() {
            shared.remove_queue(&queue);
        }
    }
}

/// Hands a file to the connection of its request; anything but a regular
/// file aborts the request.
fn send_file(session: &Session, request: u64, file: std::fs::File, offset: u64, len: u64) {
    let Some(events) = session.event_sender(request) else {
        return;
    };
    let regular = file.metadata().map(|m| m.is_file()).unwrap_or(false);
    if regular {
        let _ = events.send(ConnEvent::File { file, offset, len });
    } else {
        lock(&session.requests).remove(&request);
        let _ = events.send(ConnEvent::Abandoned);
    }
}

fn reply(session: &Session, call: u32, result: Result<u64, ApiError>) {
    session.send(&ToApp::Reply { call, result });
}

fn own_queue(session: &Session, queue: u32) -> Result<Arc<Queue>, ApiError> {
    lock(&session.queues).get(&queue).cloned().ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidHandle,
            format!("queue {queue} is not open in this session"),
        )
    })
}

/// A queue open in this session that the session may also control
/// (stop, length, URLs): its creator's, not one it may only receive from.
fn controlled_queue(session: &Session, queue: u32) -> Result<Arc<Queue>, ApiError> {
    let q = own_queue(session, queue)?;
    if q.may_control(session.uid) {
        return Ok(q);
    }
    tracing::warn!(queue = %q.name, pid = ?session.pid, user = %crate::acl::user_name(session.uid), "refused: a process that may only receive from a queue tried to control it");
    Err(ApiError::new(
        ErrorCode::AccessDenied,
        format!(
            "queue {} may only be received from in this session; its owner controls it",
            q.name
        ),
    ))
}

fn handle(shared: &Arc<Shared>, session: &Arc<Session>, msg: ToListener) {
    match msg {
        ToListener::Hello { .. } => {}
        ToListener::WaitForDisconnect { connection } => {
            shared.watch_disconnect(connection, session);
        }
        ToListener::RawDataDone {
            conn,
            seq,
            data,
            to_client,
            close,
            next_read,
        } => {
            if let Some(waiting) = lock(&session.raw_waits).remove(&(conn, seq)) {
                let _ = waiting.send(RawDone {
                    data,
                    to_client,
                    close,
                    next_read,
                });
            }
        }
        ToListener::OpenQueue {
            call,
            name,
            open_existing,
        } => {
            let caller = Caller {
                uid: session.uid,
                pid: session.pid,
            };
            let result = shared
                .open_queue(&name, &caller, open_existing)
                .map(|queue| {
                    let id = queue.id;
                    if let std::collections::hash_map::Entry::Vacant(slot) =
                        lock(&session.queues).entry(id)
                    {
                        queue.add_holder();
                        slot.insert(queue);
                    }
                    u64::from(id)
                });
            reply(session, call, result);
        }
        ToListener::CloseQueue { call, queue } => {
            let result = match lock(&session.queues).remove(&queue) {
                Some(q) => {
                    q.detach(session);
                    if q.remove_holder() {
                        shared.remove_queue(&q);
                    }
                    Ok(0)
                }
                None => Err(ApiError::new(ErrorCode::InvalidHandle, "queue not open")),
            };
            reply(session, call, result);
        }
        ToListener::AddUrl {
            call,
            queue,
            prefix,
            context,
        } => {
            let result = controlled_queue(session, queue)
                .and_then(|q| shared.add_url(&q, &prefix, context, None, Some(session.uid)))
                .map(|()| 0);
            reply(session, call, result);
        }
        ToListener::RemoveUrl {
            call,
            queue,
            prefix,
        } => {
            let result = controlled_queue(session, queue)
                .and_then(|q| shared.remove_url(&q, &prefix))
                .map(|()| 0);
            reply(session, call, result);
        }
        ToListener::SetQueue {
            call,
            queue,
            property,
        } => {
            let result = controlled_queue(session, queue).map(|q| {
                match property {
                    QueueProperty::Stopped(stopped) => q.set_stopped(stopped),
                    QueueProperty::MaxLength(n) => q.set_max_length(n as usize),
                }
                0
            });
            reply(session, call, result);
        }
        ToListener::FlushCache {
            call,
            queue,
            prefix,
        } => {
            let result = own_queue(session, queue)
                .and_then(|q| shared.flush_cache(&prefix, Some(&q)))
                .map(|n| n as u64);
            reply(session, call, result);
        }
        ToListener::QueuedRequests { call, queue } => {
            let result = own_queue(session, queue).map(|q| q.pending() as u64);
            reply(session, call, result);
        }
        ToListener::StopReceiving { call, queue } => {
            let result = own_queue(session, queue).map(|q| {
                q.detach(session);
                0
            });
            reply(session, call, result);
        }
        ToListener::Receive { queue, count } => {
            if let Ok(q) = own_queue(session, queue) {
                q.grant(session, count);
            }
        }
        ToListener::Respond { request, head } => {
            session.deliver(request, ConnEvent::Head(head));
        }
        ToListener::ResponseEnd {
            request,
            trailers,
            late_log,
        } => {
            if let Some(events) = lock(&session.requests).remove(&request) {
                let _ = events.send(ConnEvent::End(trailers, late_log));
            }
        }
        ToListener::BodyConsumed { request, bytes } => {
            session.deliver(request, ConnEvent::BodyConsumed(bytes));
        }
        // Taken in the read loop, with its descriptor.
        ToListener::SendFile { .. } => {}
        ToListener::Abort { request } => {
            if let Some(events) = lock(&session.requests).remove(&request) {
                let _ = events.send(ConnEvent::Abandoned);
            }
        }
        ToListener::WantBody { request } => {
            session.deliver(request, ConnEvent::BodyWanted);
        }
        ToListener::TakeConnection {
            request,
            token,
            status,
        } => {
            if let Some(events) = lock(&session.requests).remove(&request) {
                let _ = events.send(ConnEvent::TakeOver { token, status });
            }
        }
    }
}
