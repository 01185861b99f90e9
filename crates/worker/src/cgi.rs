//! CGI/1.1 programs (RFC 3875), and what CGI and FastCGI share: the
//! request's meta-variables (RFC 3875 §4.1 and IIS's own), and the
//! program's answer, a CGI header block (§6) then the body, relayed to
//! the client as it comes.
//!
//! A program starts through the worker's launcher ([`spawner`]) as the
//! pool's identity, with the body on its standard input (streamed), its
//! standard output read as the response, and its standard error written
//! to the service log under the script's name. CGITimeout bounds the whole
//! run: past it the process group is killed and the client gets a 502
//! (or, once the response began, a cut connection), with the reason in
//! the log.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use httpapi::proto::{BodyInfo, HttpVersion};
use httpapi::{Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::ip_text::IpText;
use crate::pipeline::Pipeline;

/// The longest header block a program may send before its body.
const MAX_HEAD: usize = 64 * 1024;
/// A chunked request body is gathered to learn its length (CGI needs
/// CONTENT_LENGTH) up to this much.
const MAX_GATHERED_BODY: usize = 64 << 20;
/// Local redirects (RFC 3875 §6.2.2) one request may follow.
const MAX_LOCAL_REDIRECTS: u8 = 10;

tokio::task_local! {
    /// The local redirects the request being answered has followed.
    static LOCAL_REDIRECTS: u8;
}

/// What a CGI program writes at once is gathered up to this much.
const CGI_BUFFER: usize = 256 * 1024;
/// Lines of a program's standard error logged per request; the rest are
/// counted.
const MAX_STDERR_LINES: usize = 200;

/// What a script is, for the variables that describe it.
#[derive(Clone, Debug)]
pub struct Script {
    /// The script's URL path (SCRIPT_NAME).
    pub name: String,
    /// Its file (SCRIPT_FILENAME).
    pub file: PathBuf,
    /// What follows the script in the URL (PATH_INFO), decoded.
    pub path_info: String,
    /// PATH_INFO's file under the site's root (PATH_TRANSLATED); `None`
    /// when it is the script's own file (no PATH_INFO).
    pub path_translated: Option<PathBuf>,
    /// The site's root directory (DOCUMENT_ROOT).
    pub document_root: Option<PathBuf>,
    pub site_id: u32,
    /// The application (APPL_MD_PATH, APPL_PHYSICAL_PATH).
    pub app: Arc<crate::config::Application>,
    pub user: String,
    pub auth_type: &'static str,
    /// The server consumed Authorization (a Basic logon): it is not
    /// passed on.
    pub authenticated: bool,
}

/// A CGI program to run for a request.
#[derive(Clone, Debug)]
pub struct CgiCall {
    pub script: Script,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// `nph-` scripts answer with their own status line.
    pub nph: bool,
    /// CGITimeout.
    pub timeout: Duration,
    /// Directories the program must reach (the site's content).
    pub reach: Arc<[PathBuf]>,
}

/// The meta-variables of a request (RFC 3875 §4.1, and IIS's), for a
/// CGI program's environment.
pub fn meta_variables(
    req: &httpapi::proto::RequestHead,
    script: &Script,
    content_length: Option<u64>,
) -> Vec<(String, String)> {
    let mut vars = Vec::with_capacity(48 + req.headers.iter().count());
    each_meta_variable(req, script, content_length, &mut |name, value| {
        vars.push((name.to_string(), value.to_string()))
    });
    vars
}

/// The meta-variables of a request, each given to `emit` (a FastCGI
/// application's PARAMS are encoded straight from them).
pub fn each_meta_variable(
    req: &httpapi::proto::RequestHead,
    script: &Script,
    content_length: Option<u64>,
    emit: &mut dyn FnMut(&str, &str),
) {
    let url = &req.url;
    let tls = req.tls.as_ref();
    // Numbers and addresses are written into one scratch buffer: a
    // FastCGI request is made for every hit, so no allocation each.
    let mut scratch = String::with_capacity(64);
    macro_rules! emit_formatted {
        ($name:expr, $($format:tt)+) => {{
            use std::fmt::Write as _;
            scratch.clear();
            let _ = write!(scratch, $($format)+);
            emit($name, &scratch);
        }};
    }
    // Numbers without the formatting machinery.
    let mut digits = itoa::Buffer::new();
    let on_off = |yes: bool| if yes { "on" } else { "off" };
    emit("GATEWAY_INTERFACE", "CGI/1.1");
    emit("SERVER_SOFTWARE", "Microsoft-IIS/6.0");
    emit("SERVER_NAME", &url.host);
    emit("SERVER_PORT", digits.format(url.port));
    emit("SERVER_PORT_SECURE", if tls.is_some() { "1" } else { "0" });
    emit(
        "SERVER_PROTOCOL",
        match req.version {
            HttpVersion::Http10 => "HTTP/1.0",
            HttpVersion::Http11 => "HTTP/1.1",
        },
    );
    let mut address = IpText::new();
    emit("SERVER_ADDR", address.format(req.local.ip()));
    emit("LOCAL_ADDR", address.as_str());
    emit("REQUEST_METHOD", &req.method);
    emit("QUERY_STRING", &url.query);
    emit("REQUEST_URI", &request_uri(&req.raw_url));
    emit("SCRIPT_NAME", &script.name);
    emit("SCRIPT_FILENAME", &script.file.to_string_lossy());
    emit("PATH_INFO", &script.path_info);
    emit(
        "PATH_TRANSLATED",
        &script
            .path_translated
            .as_deref()
            .unwrap_or(&script.file)
            .to_string_lossy(),
    );
    if let Some(root) = &script.document_root {
        emit("DOCUMENT_ROOT", &root.to_string_lossy());
    }
    emit("URL", &script.name);
    emit("REMOTE_ADDR", address.format(req.remote.ip()));
    // No name lookup (IIS's default): the address.
    emit("REMOTE_HOST", address.as_str());
    emit("REMOTE_PORT", digits.format(req.remote.port()));
    emit("AUTH_TYPE", script.auth_type);
    emit("REMOTE_USER", &script.user);
    emit("AUTH_USER", &script.user);
    emit("LOGON_USER", &script.user);
    emit("HTTPS", on_off(tls.is_some()));
    if let Some(t) = tls {
        emit_formatted!("HTTPS_KEYSIZE", "{}", t.key_size);
        emit_formatted!("HTTPS_SECRETKEYSIZE", "{}", t.key_size);
        emit("HTTPS_SERVER_SUBJECT", &t.server_subject);
        emit("HTTPS_SERVER_ISSUER", &t.server_issuer);
        if let Some(c) = &t.client_certificate {
            emit("CERT_SUBJECT", &c.subject);
            emit("CERT_ISSUER", &c.issuer);
            emit("CERT_SERIALNUMBER", &c.serial);
        }
    }
    emit("INSTANCE_ID", digits.format(script.site_id));
    emit_formatted!("INSTANCE_META_PATH", "/LM/W3SVC/{}", script.site_id);
    emit("APPL_MD_PATH", &script.app.md_path);
    if let Some(dir) = &script.app.physical_path {
        emit("APPL_PHYSICAL_PATH", dir);
    }
    // PHP's CGI refuses to run without it (cgi.force_redirect): it says a
    // server, not a visitor, started the program.
    emit("REDIRECT_STATUS", "200");
    if let Some(n) = content_length {
        emit("CONTENT_LENGTH", digits.format(n));
    }
    if let Some(t) = req.headers.get("content-type") {
        emit("CONTENT_TYPE", &String::from_utf8_lossy(t));
    }
    // HTTP_<NAME> for each field, the name built in a reused buffer.
    let mut key = String::with_capacity(64);
    let fields = || req.headers.iter();
    for (i, (name, value)) in fields().enumerate() {
        // Repeated fields are joined, as one would be: at the first.
        if fields().take(i).any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            continue;
        }
        key.clear();
        key.push_str("HTTP_");
        key.extend(name.chars().map(|c| match c {
            '-' => '_',
            c => c.to_ascii_uppercase(),
        }));
        let upper = &key[5..];
        // Proxy would become HTTP_PROXY, which programs take for their
        // own outgoing proxy (httpoxy); length and type are above.
        if upper == "PROXY" || upper == "CONTENT_LENGTH" || upper == "CONTENT_TYPE" {
            continue;
        }
        if upper == "AUTHORIZATION" && script.authenticated {
            continue;
        }
        let mut repeats = fields()
            .skip(i + 1)
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .peekable();
        if repeats.peek().is_none() {
            emit(&key, &String::from_utf8_lossy(value));
            continue;
        }
        let mut joined = String::from_utf8_lossy(value).into_owned();
        for (_, more) in repeats {
            joined.push_str(", ");
            joined.push_str(&String::from_utf8_lossy(more));
        }
        emit(&key, &joined);
    }
}

/// REQUEST_URI: the target as sent, its origin form.
fn request_uri(raw: &[u8]) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    let text = String::from_utf8_lossy(raw);
    let origin = match text.find("://") {
        Some(i) if !text.starts_with('/') => text[i + 3..].find('/').map(|j| i + 3 + j),
        _ => return text,
    };
    match (origin, text) {
        (None, _) => Cow::Borrowed("/"),
        (Some(at), Cow::Borrowed(t)) => Cow::Borrowed(&t[at..]),
        (Some(at), Cow::Owned(t)) => Cow::Owned(t[at..].to_string()),
    }
}

/// A program's header block as it wrote it, read where it lies (no
/// copies of its fields).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Head<'a> {
    /// `Status:` (or an nph- status line): code and reason.
    pub status: Option<(u16, &'a str)>,
    pub location: Option<&'a str>,
    /// The other fields, in order (Content-Length among them).
    pub fields: Vec<(&'a str, &'a str)>,
}

impl Head<'_> {
    pub fn content_length(&self) -> Option<u64> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
    }
}

/// Where the header block ends in `data`: the index of the body's first
/// byte (after a blank line, `\n\n` or `\r\n\r\n`).
pub fn head_end(data: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(n) = memchr::memchr(b'\n', &data[i..]) {
        let at = i + n;
        let next = &data[at + 1..];
        if next.starts_with(b"\n") {
            return Some(at + 2);
        }
        if next.starts_with(b"\r\n") {
            return Some(at + 3);
        }
        i = at + 1;
    }
    None
}

/// Parses a header block (RFC 3875 §6.2; an `nph` one starts with an
/// HTTP status line). An error says what is wrong with it.
pub fn parse_head(block: &[u8], nph: bool) -> Result<Head<'_>, String> {
    let text =
        std::str::from_utf8(block).map_err(|_| "the header block is not text".to_string())?;
    let mut head = Head::default();
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    if nph {
        let line = lines.next().unwrap_or_default();
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let code = parts.next().and_then(|c| c.parse::<u16>().ok());
        match (version.starts_with("HTTP/"), code) {
            (true, Some(code)) if (100..=999).contains(&code) => {
                head.status = Some((code, parts.next().unwrap_or_default().trim()))
            }
            _ => {
                return Err(format!(
                    "an nph- script's first line is not a status line: {line:?}"
                ))
            }
        }
    }
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("a header line without a colon: {line:?}"));
        };
        let name = name.trim();
        let value = value.trim();
        if name.is_empty() || !name.bytes().all(httpapi::proto::is_tchar) {
            return Err(format!("a header name that is not a token: {name:?}"));
        }
        if value.bytes().any(|b| b == 0 || b == b'\r') {
            return Err(format!("the value of {name} holds a control character"));
        }
        if name.eq_ignore_ascii_case("status") && !nph {
            let code = value.get(..3).and_then(|c| c.parse::<u16>().ok());
            match code {
                Some(code) if (100..=999).contains(&code) => {
                    head.status = Some((code, value[3..].trim()))
                }
                _ => {
                    return Err(format!(
                        "a Status that is not a three-digit code: {value:?}"
                    ))
                }
            }
        } else if name.eq_ignore_ascii_case("location") {
            head.location = Some(value);
        } else {
            head.fields.push((name, value));
        }
    }
    Ok(head)
}

/// What became of a program's answer, for the log and for FastCGI's
/// retries.
pub enum Relayed {
    /// The response was sent (or a local redirect answered).
    Answered,
    /// Nothing came before the output ended: nothing was sent, and the
    /// request is given back.
    Nothing(Box<Request>),
    /// The client got an error (502) or a cut connection; the reason
    /// was logged.
    Failed,
}

/// How [`relay`] treats a program's output.
#[derive(Clone, Copy)]
pub(crate) struct RelayOptions<'a> {
    /// The script, for the log.
    pub name: &'a str,
    /// An nph- script: a status line first.
    pub nph: bool,
    /// Output that comes in one burst is gathered up to this much (a
    /// response that ends within it gets a Content-Length); a pause in
    /// the output sends what came (PHP's flush() reaches the client).
    pub buffer_limit: usize,
    /// What a misbehaving program's client gets: 502 (CGI, as IIS 6) or
    /// 500 (FastCGI, as its extension).
    pub error_status: u16,
}

/// A program's output as it comes: its chunks in order, `Ok(None)` at
/// its end. An error is an output that broke off; one of kind
/// `TimedOut`, a program past its time. Chunks are handed over as they
/// were read (no copy on the way to the relay).
pub(crate) trait ProgramOutput {
    /// The next chunk. `timed`: wait within the program's deadlines
    /// (false when the caller only takes what is there now, and drops the
    /// call if nothing is: no timer is set for that).
    async fn next_chunk(&mut self, timed: bool) -> std::io::Result<Option<Bytes>>;
}

/// A CGI program's standard output, read until its deadline (CGITimeout).
struct PipeOutput {
    pipe: tokio::net::unix::pipe::Receiver,
    piece: bytes::BytesMut,
    deadline: Instant,
}

impl ProgramOutput for PipeOutput {
    async fn next_chunk(&mut self, timed: bool) -> std::io::Result<Option<Bytes>> {
        self.piece.reserve(PIECE);
        let read = if timed {
            match tokio::time::timeout_at(self.deadline, self.pipe.read_buf(&mut self.piece)).await
            {
                Ok(read) => read,
                Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
            }
        } else {
            self.pipe.read_buf(&mut self.piece).await
        };
        match read? {
            0 => Ok(None),
            _ => Ok(Some(self.piece.split().freeze())),
        }
    }
}

/// Relays a program's output (`out`: its header block, then its body) as
/// the response to `req`. A read error means the output broke off: a
/// response begun is cut, not completed. A local `Location` (no Status, a
/// path) answers the request as that URL, through the pipeline again.
pub(crate) async fn relay<O: ProgramOutput>(
    pipeline: &Arc<Pipeline>,
    how: &RelayOptions<'_>,
    out: &mut O,
    req: Request,
    template: &Response,
    filters: Option<(
        &mut crate::filters::RequestFilters,
        &crate::isapi::Variables,
    )>,
) -> Relayed {
    let RelayOptions {
        name,
        nph,
        buffer_limit,
        error_status,
    } = *how;
    // The header block, and what came of the body with it. Most often the
    // block ends within the first chunk and is read there; one that spans
    // chunks is gathered.
    let mut gathered = bytes::BytesMut::new();
    let (block, first) = loop {
        let chunk = match out.next_chunk(true).await {
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                tracing::error!(
                    script = name,
                    "the program did not answer in time (CGITimeout / RequestTimeout)"
                );
                bad_gateway(req, template, error_status, "it did not answer in time");
                return Relayed::Failed;
            }
            Err(_) if gathered.is_empty() => return Relayed::Nothing(Box::new(req)),
            Err(_) => {
                tracing::error!(
                    script = name,
                    "the program's output broke off within its header block"
                );
                bad_gateway(req, template, error_status, "its output broke off");
                return Relayed::Failed;
            }
            Ok(None) => {
                if gathered.is_empty() {
                    return Relayed::Nothing(Box::new(req));
                }
                // The output ended within the header block: a block with
                // no body after it still counts when it ends a line.
                if gathered.ends_with(b"\n") {
                    gathered.extend_from_slice(b"\n");
                    break (gathered.freeze(), Bytes::new());
                }
                tracing::error!(
                    script = name,
                    "the program ended before its header block did"
                );
                bad_gateway(
                    req,
                    template,
                    error_status,
                    "its header block is incomplete",
                );
                return Relayed::Failed;
            }
            Ok(Some(chunk)) => chunk,
        };
        if gathered.is_empty() {
            if let Some(end) = head_end(&chunk) {
                break (chunk.slice(..end), chunk.slice(end..));
            }
        }
        gathered.extend_from_slice(&chunk);
        if let Some(end) = head_end(&gathered) {
            let mut all = gathered.freeze();
            let block = all.split_to(end);
            break (block, all);
        }
        if gathered.len() > MAX_HEAD {
            // Judged below, as too large, without reading on.
            break (gathered.freeze(), Bytes::new());
        }
    };
    if block.len() > MAX_HEAD {
        tracing::error!(
            script = name,
            "the program's header block is larger than 64 KB"
        );
        bad_gateway(req, template, error_status, "its header block is too large");
        return Relayed::Failed;
    }
    let head = match parse_head(&block, nph) {
        Ok(head) => head,
        Err(reason) => {
            tracing::error!(script = name, %reason, "the program sent a malformed header block");
            bad_gateway(req, template, error_status, "its header block is malformed");
            return Relayed::Failed;
        }
    };
    // RFC 3875 §6.2.2: a local redirect is answered as that URL.
    if let (None, Some(location)) = (&head.status, &head.location) {
        if location.starts_with('/') && !location.starts_with("//") {
            let (path, query) = location.split_once('?').unwrap_or((location, ""));
            if let Some(path) = crate::isapi::child_path(path) {
                let mut req = req;
                req.replace_body(Bytes::new());
                let h = req.head_mut();
                h.method = "GET".into();
                h.url.path = path;
                h.url.query = query.to_string();
                h.raw_url = location.as_bytes().to_vec();
                // A script that sends the request round in a circle is
                // stopped, not followed for ever.
                let depth = LOCAL_REDIRECTS.try_with(|d| *d).unwrap_or(0);
                if depth >= MAX_LOCAL_REDIRECTS {
                    tracing::error!(script = name, location = %location, "more than {MAX_LOCAL_REDIRECTS} local redirects in a row");
                    bad_gateway(
                        req,
                        template,
                        error_status,
                        "its local redirects go round in a circle",
                    );
                    return Relayed::Failed;
                }
                LOCAL_REDIRECTS
                    .scope(depth + 1, pipeline.clone().serve_child_boxed(req))
                    .await;
                return Relayed::Answered;
            }
        }
    }
    let mut response = template.clone();
    response.status = match (&head.status, &head.location) {
        (Some((code, _)), _) => *code,
        (None, Some(_)) => 302,
        (None, None) => 200,
    };
    if let Some((_, reason)) = &head.status {
        if !reason.is_empty()
            && reason
                .bytes()
                .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
        {
            response.reason = Some(reason.to_string());
        }
    }
    if let Some(location) = &head.location {
        response.headers.push("Location", location.as_bytes());
    }
    let length = head.content_length();
    for (field, value) in &head.fields {
        // The listener frames the body and owns the connection.
        if field.eq_ignore_ascii_case("content-length")
            || field.eq_ignore_ascii_case("transfer-encoding")
            || field.eq_ignore_ascii_case("connection")
            || field.eq_ignore_ascii_case("keep-alive")
        {
            continue;
        }
        response.headers.push(field, value.as_bytes());
    }
    // Read: the block's storage is not held while the body is relayed.
    drop(head);
    drop(block);
    if let Some((request, vars)) = filters {
        request.on_response(&mut response, &|n| vars.get(n));
    }
    let is_head = req.method == "HEAD";
    let no_body = is_head || matches!(response.status, 204 | 304) || response.status < 200;
    // What comes at once is gathered (up to the limit), as the chunks it
    // came in (no copy while gathering): a response that ends within it
    // goes whole, with its length.
    let mut parts: Vec<Bytes> = Vec::new();
    let mut gathered_len = first.len();
    if !first.is_empty() {
        parts.push(first);
    }
    let mut ended = false;
    while gathered_len < buffer_limit {
        match httpapi::ready_now(std::pin::pin!(out.next_chunk(false))).await {
            Some(Ok(None)) => {
                ended = true;
                break;
            }
            Some(Ok(Some(chunk))) => {
                gathered_len += chunk.len();
                parts.push(chunk);
            }
            Some(Err(_)) => {
                tracing::error!(script = name, "the program's output broke off");
                bad_gateway(req, &response, error_status, "its output broke off");
                return Relayed::Failed;
            }
            None => break,
        }
    }
    let length = match (length, ended) {
        (None, true) => Some(gathered_len as u64),
        (length, _) => length,
    };
    if ended && !no_body && length == Some(gathered_len as u64) {
        let body = match parts.len() {
            0 => Bytes::new(),
            1 => parts.swap_remove(0),
            _ => {
                let mut whole = bytes::BytesMut::with_capacity(gathered_len);
                for part in parts.drain(..) {
                    whole.extend_from_slice(&part);
                }
                whole.freeze()
            }
        };
        let _ = req.respond(response.body(body)).await;
        return Relayed::Answered;
    }
    let framing = if no_body {
        Some(length.unwrap_or(0))
    } else {
        length
    };
    let mut writer = match req.start_response(response, framing).await {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(script = name, error = %e, "the response could not start");
            return Relayed::Failed;
        }
    };
    let mut sent = 0u64;
    // What of `data` goes: nothing for a response without a body, and
    // never more than the length announced.
    let mut allowed = |data: &[u8]| -> usize {
        if no_body {
            return 0;
        }
        let allowed = match length {
            Some(n) => (n.saturating_sub(sent)).min(data.len() as u64) as usize,
            None => data.len(),
        };
        sent += allowed as u64;
        allowed
    };
    for part in parts {
        let n = allowed(&part);
        if n > 0 && writer.send(&part[..n]).await.is_err() {
            return Relayed::Failed;
        }
    }
    loop {
        match out.next_chunk(true).await {
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                tracing::error!(script = name, "the program did not finish in time (CGITimeout / RequestTimeout); the response was cut");
                return Relayed::Failed;
            }
            Ok(None) => break,
            Err(_) => {
                tracing::error!(
                    script = name,
                    "the program's output broke off; the response was cut"
                );
                return Relayed::Failed;
            }
            Ok(Some(chunk)) => {
                let n = allowed(&chunk);
                if n > 0 && writer.send(&chunk[..n]).await.is_err() {
                    return Relayed::Failed;
                }
            }
        }
    }
    if let (Some(n), false) = (length, no_body) {
        if sent < n {
            tracing::error!(
                script = name,
                announced = n,
                sent,
                "the program's output ended before its Content-Length"
            );
            return Relayed::Failed;
        }
    }
    let _ = writer.finish(Vec::new()).await;
    Relayed::Answered
}

/// What one read of a program's output takes at most.
const PIECE: usize = 16 * 1024;

/// The request body's length, which CGI and FastCGI programs want before
/// the body (CONTENT_LENGTH; `None` without a body): a chunked body is
/// gathered to learn it, up to MAX_GATHERED_BODY, and given back. `None`
/// when the request cannot go on: a larger body was answered 413, or the
/// client went.
pub(crate) async fn body_length(mut req: Request) -> Option<(Request, Option<u64>, Option<Bytes>)> {
    match req.body {
        BodyInfo::Length(n) => Some((req, Some(n), None)),
        BodyInfo::None => Some((req, None, None)),
        BodyInfo::Chunked => match req.read_body(MAX_GATHERED_BODY).await {
            Ok(body) => Some((req, Some(body.len() as u64), Some(Bytes::from(body)))),
            Err(httpapi::Error::TooLarge(_)) => {
                let _ = req.respond(Response::new(413)).await;
                None
            }
            Err(_) => None,
        },
    }
}

/// IIS's answer (502 for CGI, 500 for FastCGI) for a gateway program
/// that misbehaved, with the request's log fields from `template`. The
/// page is far within the flow-control window: it goes at once.
pub(crate) fn bad_gateway(req: Request, template: &Response, status: u16, why: &str) {
    let mut response = Response::new(status);
    response.log = template.log.clone();
    if let Some(log) = response.log.as_mut() {
        log.win32_status = 0;
    }
    let title = httpapi::proto::reason_phrase(status);
    let page = format!(
        "<html><head><title>{status} {title}</title></head><body><h1>{title}</h1><p>The application for this URL misbehaved: {why}.</p></body></html>"
    );
    let sending = req.respond(response.header("Content-Type", "text/html").body(page));
    debug_assert!(matches!(sending, httpapi::Responding::Sent(_)));
}

/// Runs a CGI program for the request and relays its answer.
pub(crate) async fn run(
    pipeline: Arc<Pipeline>,
    // Boxed: an async fn keeps its arguments twice in its state.
    call: Box<CgiCall>,
    req: Request,
    template: Response,
    filters: Option<(
        &mut crate::filters::RequestFilters,
        &crate::isapi::Variables,
    )>,
) {
    let deadline = Instant::now() + call.timeout;
    let name = call.script.name.clone();
    let Some(spawner) = pipeline.spawner.get().cloned() else {
        tracing::error!(script = %name, "CGI programs cannot run: this worker has no program launcher");
        bad_gateway(req, &template, 502, "it could not be started");
        return;
    };
    let Some((mut req, length, gathered)) = body_length(req).await else {
        return;
    };
    let mut program = spawner::Program::new(&call.program);
    program.args = call.args.clone();
    program.env = meta_variables(&req, &call.script, length);
    program
        .env
        .push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
    program.cwd = call.script.file.parent().map(PathBuf::from);
    program.reach = call.reach.to_vec();
    program.stdin = spawner::Stdio::Passed;
    program.stdout = spawner::Stdio::Passed;
    program.stderr = spawner::Stdio::Passed;
    let pipes = (|| -> std::io::Result<_> {
        let flags = nix::fcntl::OFlag::O_CLOEXEC;
        Ok((
            nix::unistd::pipe2(flags)?,
            nix::unistd::pipe2(flags)?,
            nix::unistd::pipe2(flags)?,
        ))
    })();
    let Ok(((in_r, in_w), (out_r, out_w), (err_r, err_w))) = pipes else {
        tracing::error!(script = %name, "no pipes for a CGI program");
        bad_gateway(req, &template, 502, "it could not be started");
        return;
    };
    let started = match spawner.spawn(program, &[&in_r, &out_w, &err_w]).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(script = %name, error = %e, "the CGI program could not be started");
            bad_gateway(req, &template, 502, "it could not be started");
            return;
        }
    };
    drop((in_r, out_w, err_w));
    let pid = started.pid;
    // Its standard error, to the service log under the script's name.
    if let Ok(err) = tokio::net::unix::pipe::Receiver::from_owned_fd(err_r) {
        tokio::spawn(log_stderr(name.clone(), err));
    }
    // The body, streamed to its standard input as the client sends it.
    let mut body = req.take_body();
    if let Ok(mut input) = tokio::net::unix::pipe::Sender::from_owned_fd(in_w) {
        tokio::spawn(async move {
            if let Some(all) = gathered {
                let _ = input.write_all(&all).await;
                return;
            }
            while let Ok(Some(chunk)) = body.chunk().await {
                // A program that stops reading ends the stream.
                if input.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        });
    }
    let outcome = match tokio::net::unix::pipe::Receiver::from_owned_fd(out_r) {
        Ok(pipe) => {
            let how = RelayOptions {
                name: &name,
                nph: call.nph,
                buffer_limit: CGI_BUFFER,
                error_status: 502,
            };
            let mut out = PipeOutput {
                pipe,
                piece: bytes::BytesMut::new(),
                deadline,
            };
            relay(&pipeline, &how, &mut out, req, &template, filters).await
        }
        Err(_) => Relayed::Nothing(Box::new(req)),
    };
    match outcome {
        Relayed::Answered => {}
        Relayed::Nothing(req) => {
            let exit = tokio::time::timeout(Duration::from_secs(1), started.exited)
                .await
                .ok()
                .and_then(Result::ok);
            let how = exit
                .map(|e| e.to_string())
                .unwrap_or_else(|| "no end seen".into());
            tracing::error!(script = %name, ended = %how, "the CGI program wrote nothing");
            bad_gateway(*req, &Response::new(502), 502, "it wrote no answer");
        }
        Relayed::Failed => {}
    }
    // Whatever is left of it (a program past its time, or one that went
    // on after its answer) goes with its process group.
    spawner.kill(pid);
}

pub(crate) async fn log_stderr(script: String, err: tokio::net::unix::pipe::Receiver) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(err).lines();
    let mut count = 0usize;
    while let Ok(Some(line)) = lines.next_line().await {
        count += 1;
        if count <= MAX_STDERR_LINES {
            let line: String = line.chars().take(2000).collect();
            tracing::warn!(script = %script, "stderr: {line}");
        }
    }
    if count > MAX_STDERR_LINES {
        tracing::warn!(script = %script, "stderr: {} more lines not logged", count - MAX_STDERR_LINES);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_blocks_end_at_the_first_blank_line_either_way() {
        assert_eq!(head_end(b"A: b\n\nbody"), Some(6));
        assert_eq!(head_end(b"A: b\r\n\r\nbody"), Some(8));
        assert_eq!(head_end(b"X: y\n\r\n"), Some(7));
        assert_eq!(head_end(b"A: b\r\nC: d\r\n"), None);
    }

    #[test]
    fn status_location_and_fields_are_read_and_bad_blocks_refused() {
        let head = parse_head(
            b"Status: 404 Not Here\r\nContent-Type: text/plain\r\nX-A: 1\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(head.status, Some((404, "Not Here")));
        assert_eq!(head.fields[0], ("Content-Type", "text/plain"));
        let head = parse_head(b"Location: /elsewhere?x=1\n\n", false).unwrap();
        assert_eq!(head.location, Some("/elsewhere?x=1"));
        let head = parse_head(b"HTTP/1.1 201 Made\r\nContent-Length: 3\r\n\r\n", true).unwrap();
        assert_eq!(head.status, Some((201, "Made")));
        assert_eq!(head.content_length(), Some(3));
        for bad in [
            &b"no colon here\n\n"[..],
            b"Status: abc\n\n",
            b"Bad Name: x\n\n",
            b"\xff\xfe: x\n\n",
        ] {
            assert!(parse_head(bad, false).is_err(), "{bad:?}");
        }
        assert!(parse_head(b"Content-Type: text/plain\n\n", true).is_err());
    }

    #[test]
    fn request_uri_is_the_origin_form_of_the_target() {
        assert_eq!(request_uri(b"/a/b.php?x=1"), "/a/b.php?x=1");
        assert_eq!(request_uri(b"http://host:8080/a?b"), "/a?b");
        assert_eq!(request_uri(b"http://host"), "/");
    }
}
