//! The wire protocol between the listener and the programs that own URL
//! prefixes, over a Unix stream socket. One connection per program carries
//! any number of queues and requests at once.
//!
//! A frame is `u32 length (LE) | u8 kind | body`. Control messages
//! ([`ToListener`], [`ToApp`]) are described once here with serde and
//! encoded with postcard; body bytes travel in raw frames
//! (`u64 request | u8 flags | data`) so they are copied as little as
//! possible. Both directions of body data are flow-controlled by windows:
//! a sender may have at most [`BODY_WINDOW`] bytes unacknowledged.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub const PROTOCOL_VERSION: u32 = 4;
/// The largest frame either side accepts.
pub const MAX_FRAME: usize = 1 << 24;
/// The most body bytes sent per frame.
pub const MAX_BODY_CHUNK: usize = 64 * 1024;
/// Unacknowledged body bytes allowed in flight per request and direction.
pub const BODY_WINDOW: u64 = 512 * 1024;
/// Receivers acknowledge body bytes in steps of at least this much, so a
/// small body costs no acknowledgement at all; it is well under the
/// window, so a sender waiting for room always gets it.
pub const ACK_STEP: u64 = 64 * 1024;

const KIND_MESSAGE: u8 = 0;
const KIND_REQUEST_BODY: u8 = 1;
const KIND_RESPONSE_BODY: u8 = 2;
const FLAG_END: u8 = 1;

/// A header field; values are bytes (HTTP allows obs-text).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub name: String,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

impl Header {
    pub fn new(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Header {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A request's header fields in one piece: their bytes in one buffer and
/// each field's name and value ranges in it. The listener copies the
/// fields of the head it parsed in one go, and the worker reads them where
/// they lie: two allocations on each side whatever the number of fields,
/// where a list of named fields costs two per field.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderBlock {
    #[serde(with = "serde_bytes")]
    bytes: Vec<u8>,
    /// (name start, name end, value start, value end) in `bytes`.
    fields: Vec<[u32; 4]>,
}

impl HeaderBlock {
    pub fn new() -> HeaderBlock {
        HeaderBlock::default()
    }

    /// A block over `bytes` (at most 4 GiB) whose fields are given as
    /// ranges into it, as a parser found them. Ranges outside `bytes` are
    /// kept but read as absent.
    pub fn from_ranges(bytes: Vec<u8>, fields: Vec<[u32; 4]>) -> HeaderBlock {
        HeaderBlock { bytes, fields }
    }

    /// Each field's (name, value) bytes as stored, `None` for one whose
    /// ranges do not fit the buffer: what a receiver validates.
    pub fn raw_fields(&self) -> impl Iterator<Item = Option<(&[u8], &[u8])>> + '_ {
        self.fields.iter().map(|&[nlo, nhi, vlo, vhi]| {
            Some((
                self.bytes.get(nlo as usize..nhi as usize)?,
                self.bytes.get(vlo as usize..vhi as usize)?,
            ))
        })
    }

    /// Keeps the fields `keep` says yes to (their bytes stay in the buffer
    /// until the block goes).
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &[u8]) -> bool) {
        let bytes = &self.bytes;
        self.fields.retain(|&[nlo, nhi, vlo, vhi]| {
            let name = bytes
                .get(nlo as usize..nhi as usize)
                .and_then(|n| std::str::from_utf8(n).ok());
            match (name, bytes.get(vlo as usize..vhi as usize)) {
                (Some(name), Some(value)) => keep(name, value),
                _ => false,
            }
        });
    }

    /// Appends `other`'s fields after these.
    pub fn append(&mut self, other: &HeaderBlock) {
        for (name, value) in other.iter() {
            self.push(name, value);
        }
    }

    /// Appends a field.
    pub fn push(&mut self, name: &str, value: &[u8]) {
        let at = |len: usize| u32::try_from(len).unwrap_or(u32::MAX);
        let name_start = at(self.bytes.len());
        self.bytes.extend_from_slice(name.as_bytes());
        let value_start = at(self.bytes.len());
        self.bytes.extend_from_slice(value);
        self.fields
            .push([name_start, value_start, value_start, at(self.bytes.len())]);
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Each field as (name, value), in the order received. A field whose
    /// ranges do not fit the buffer, or whose name is not text, is left
    /// out (a listener never sends one).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.fields.iter().filter_map(|&[nlo, nhi, vlo, vhi]| {
            let range = |lo: u32, hi: u32| self.bytes.get(lo as usize..hi as usize);
            let name = std::str::from_utf8(range(nlo, nhi)?).ok()?;
            Some((name, range(vlo, vhi)?))
        })
    }

    /// The first field named `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields.iter().find_map(|&[nlo, nhi, vlo, vhi]| {
            let field = self.bytes.get(nlo as usize..nhi as usize)?;
            if !field.eq_ignore_ascii_case(name.as_bytes()) {
                return None;
            }
            self.bytes.get(vlo as usize..vhi as usize)
        })
    }

    /// Every field named `name`, in order. Names are compared as bytes
    /// (the pipeline asks for a dozen fields of every request).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields.iter().filter_map(move |&[nlo, nhi, vlo, vhi]| {
            let field = self.bytes.get(nlo as usize..nhi as usize)?;
            if !field.eq_ignore_ascii_case(name.as_bytes()) {
                return None;
            }
            self.bytes.get(vlo as usize..vhi as usize)
        })
    }
}

impl std::fmt::Debug for HeaderBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.iter()
                    .map(|(n, v)| (n, String::from_utf8_lossy(v).into_owned())),
            )
            .finish()
    }
}

impl<'a> FromIterator<(&'a str, &'a [u8])> for HeaderBlock {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a [u8])>>(fields: I) -> HeaderBlock {
        let mut block = HeaderBlock::new();
        for (name, value) in fields {
            block.push(name, value);
        }
        block
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpVersion {
    Http10,
    Http11,
}

/// The URL after the listener's canonicalisation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CookedUrl {
    pub scheme: String,
    pub host: String,
    pub port: u16,
    /// Decoded and normalised.
    pub path: String,
    /// Raw, without `?`.
    pub query: String,
}

impl CookedUrl {
    /// `scheme://host:port/path?query`
    pub fn full(&self) -> String {
        let mut full = format!("{}://{}:{}{}", self.scheme, self.host, self.port, self.path);
        if !self.query.is_empty() {
            full.push('?');
            full.push_str(&self.query);
        }
        full
    }
}

/// How the request body arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BodyInfo {
    None,
    Length(u64),
    Chunked,
}

/// What the listener knows of a TLS connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsInfo {
    /// `TLSv1.2` or `TLSv1.3`.
    pub protocol: String,
    /// The IANA name of the cipher suite.
    pub cipher: String,
    /// The bulk cipher's key size in bits (HTTPS_KEYSIZE).
    pub key_size: u32,
    /// The host name the client asked for (SNI).
    pub server_name: Option<String>,
    /// The server certificate's subject and issuer (HTTPS_SERVER_SUBJECT,
    /// HTTPS_SERVER_ISSUER).
    pub server_subject: String,
    pub server_issuer: String,
    /// The certificate the client presented, when the binding asked for
    /// one and it was given.
    pub client_certificate: Option<ClientCertInfo>,
}

/// A client certificate: the facts behind IIS's CERT_* variables.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCertInfo {
    pub subject: String,
    pub issuer: String,
    /// The serial number as hex bytes joined by `:`.
    pub serial: String,
    /// The whole certificate (CERT_COOKIE's source, and for programs that
    /// check it further).
    #[serde(with = "serde_bytes")]
    pub der: Vec<u8>,
}

/// A request as delivered to the queue's owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestHead {
    pub id: u64,
    pub queue: u32,
    /// The context given with the URL prefix that routed this request.
    pub url_context: u64,
    /// The prefix that routed it.
    pub prefix: String,
    pub method: String,
    /// The request target exactly as the client sent it.
    #[serde(with = "serde_bytes")]
    pub raw_url: Vec<u8>,
    pub url: CookedUrl,
    pub version: HttpVersion,
    pub headers: HeaderBlock,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    pub tls: Option<TlsInfo>,
    pub body: BodyInfo,
    /// The client connection it came on (what
    /// [`ToListener::WaitForDisconnect`] names).
    pub connection: u64,
}

/// A request head to send, borrowing what the sender already holds (the
/// client's bytes, the canonical URL): encoded by [`encode_request`]
/// exactly as `ToApp::Request` with the [`RequestHead`] it describes, but
/// without copying each string into one first.
#[derive(Serialize)]
pub struct RequestHeadRef<'a> {
    pub id: u64,
    pub queue: u32,
    pub url_context: u64,
    pub prefix: &'a str,
    pub method: &'a str,
    #[serde(with = "serde_bytes")]
    pub raw_url: &'a [u8],
    pub url: CookedUrlRef<'a>,
    pub version: HttpVersion,
    pub headers: HeaderBlockRef<'a>,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    pub tls: Option<&'a TlsInfo>,
    pub body: BodyInfo,
    pub connection: u64,
}

/// [`CookedUrl`], borrowed.
#[derive(Serialize)]
pub struct CookedUrlRef<'a> {
    pub scheme: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub path: &'a str,
    pub query: &'a str,
}

/// A [`HeaderBlock`] over bytes held elsewhere: the stretch of a head the
/// fields lie in, and each field's (name, value) ranges in the whole head,
/// moved by `base` as they are written (no list of ranges built first).
pub struct HeaderBlockRef<'a> {
    pub bytes: &'a [u8],
    pub base: usize,
    pub fields: &'a [FieldRanges],
}

/// A field's (name start, name end) and (value start, value end).
pub type FieldRanges = ((usize, usize), (usize, usize));

impl Serialize for HeaderBlockRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Ranges<'a>(&'a HeaderBlockRef<'a>);
        impl Serialize for Ranges<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let base = self.0.base;
                let at = |i: usize| i.saturating_sub(base) as u32;
                serializer.collect_seq(
                    self.0
                        .fields
                        .iter()
                        .map(|&((nlo, nhi), (vlo, vhi))| [at(nlo), at(nhi), at(vlo), at(vhi)]),
                )
            }
        }
        let mut block = serializer.serialize_struct("HeaderBlock", 2)?;
        block.serialize_field("bytes", serde_bytes::Bytes::new(self.bytes))?;
        block.serialize_field("fields", &Ranges(self))?;
        block.end()
    }
}

/// Appends `head` as a `ToApp::Request` message frame.
pub fn encode_request(head: &RequestHeadRef<'_>, out: &mut Vec<u8>) {
    /// `ToApp::Request`, with what it carries borrowed.
    struct RequestMessage<'a>(&'a RequestHeadRef<'a>);
    impl Serialize for RequestMessage<'_> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            // ToApp's third variant (the test below holds the two apart).
            serializer.serialize_newtype_variant("ToApp", 2, "Request", self.0)
        }
    }
    encode_message(&RequestMessage(head), out);
}

/// How the listener may cache a response (the kernel cache's role).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CachePolicy {
    /// Until the owner flushes it (or it goes unused for the scavenger
    /// period).
    UntilInvalidated,
    TimeToLive {
        seconds: u32,
    },
}

/// How the response body follows its head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseBody {
    /// No body (HEAD, 204, 304, or an empty one).
    Empty,
    /// Exactly this many bytes follow.
    Length(u64),
    /// Bytes follow until the end (chunked to HTTP/1.1 clients).
    Streamed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: Option<String>,
    pub headers: HeaderBlock,
    pub body: ResponseBody,
    pub cache: Option<CachePolicy>,
    /// What the listener's request log records beyond what it sees itself
    /// (HTTP_LOG_FIELDS_DATA's role).
    pub log: Option<LogInfo>,
}

/// [`LogInfo::handler`]: an ISAPI extension answered (IIS's BGI counters).
pub const HANDLER_ISAPI: u8 = 1;
/// [`LogInfo::handler`]: a CGI program answered.
pub const HANDLER_CGI: u8 = 2;

/// Log fields only the application knows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogInfo {
    /// The authenticated user; empty for anonymous requests.
    pub user: String,
    /// What answered: [`HANDLER_ISAPI`] (an extension, FastCGI included
    /// as IIS 6's was one), [`HANDLER_CGI`], or 0 (a file, an error).
    pub handler: u8,
    /// IIS's sub-status (the 3 of 404.3).
    pub substatus: u16,
    /// The Win32 error behind the status (2 for a missing file).
    pub win32_status: u32,
    /// DontLog: leave this request out of the site's log.
    pub dont_log: bool,
    /// Appended to the logged query (cs-uri-query), as ISAPI's
    /// HSE_APPEND_LOG_PARAMETER appends to it.
    pub query_suffix: String,
    /// What to log as cs-uri-stem and cs-uri-query instead of the
    /// request's (an ISAPI filter's SF_NOTIFY_LOG may rewrite them).
    pub stem: Option<String>,
    pub query: Option<String>,
}

/// What a response's end changes in its log line, decided after its head
/// went.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateLog {
    /// The log fields in place of the head's (an ISAPI filter's
    /// SF_NOTIFY_LOG runs once the response is sent, with its sizes and
    /// time).
    pub fields: Option<LogInfo>,
    /// Appended to the logged query (HSE_APPEND_LOG_PARAMETER after the
    /// head went).
    pub query_suffix: String,
}

impl LateLog {
    /// Adds what was decided later.
    pub fn merge(&mut self, later: LateLog) {
        if later.fields.is_some() {
            self.fields = later.fields;
        }
        self.query_suffix.push_str(&later.query_suffix);
    }

    /// Applies it to the log fields the head carried.
    pub fn apply(self, log: &mut Option<LogInfo>) {
        if let Some(fields) = self.fields {
            *log = Some(fields);
        }
        if !self.query_suffix.is_empty() {
            log.get_or_insert_with(LogInfo::default)
                .query_suffix
                .push_str(&self.query_suffix);
        }
    }
}

/// The reason phrase of a status code (RFC 9110's).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Requested Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// A queue's settings that its owner may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueProperty {
    /// A stopped queue answers 503 (AppOffline).
    Stopped(bool),
    /// Requests waiting beyond this answer 503 (QueueFull).
    MaxLength(u32),
}

/// Why an operation failed, with the Win32 code the HTTP Server API
/// returns for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// ERROR_ACCESS_DENIED (5): no URL reservation allows it.
    AccessDenied,
    /// ERROR_ALREADY_EXISTS (183).
    AlreadyExists,
    /// ERROR_FILE_NOT_FOUND (2).
    NotFound,
    /// ERROR_INVALID_PARAMETER (87).
    InvalidParameter,
    /// ERROR_SHARING_VIOLATION (32): the prefix is another queue's.
    SharingViolation,
    /// ERROR_INVALID_HANDLE (6).
    InvalidHandle,
    /// The port could not be listened on.
    AddressInUse,
    Protocol,
    /// ERROR_QUOTA_EXCEEDED (1816): a per-user limit (queues, URLs).
    QuotaExceeded,
}

impl ErrorCode {
    pub fn win32(self) -> u32 {
        match self {
            ErrorCode::AccessDenied => 5,
            ErrorCode::AlreadyExists => 183,
            ErrorCode::NotFound => 2,
            ErrorCode::InvalidParameter => 87,
            ErrorCode::SharingViolation => 32,
            ErrorCode::InvalidHandle => 6,
            ErrorCode::AddressInUse => 10048,
            ErrorCode::Protocol => 1726,
            ErrorCode::QuotaExceeded => 1816,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} ({code:?}, error {})", code.win32())]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

/// Messages from a program to the listener. `call` numbers pair a request
/// with its [`ToApp::Reply`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToListener {
    Hello {
        version: u32,
        program: String,
    },
    /// Creates a queue (`open_existing` false), or opens one that exists
    /// to serve it too (`open_existing` true). Replies with its id.
    OpenQueue {
        call: u32,
        name: String,
        open_existing: bool,
    },
    CloseQueue {
        call: u32,
        queue: u32,
    },
    AddUrl {
        call: u32,
        queue: u32,
        prefix: String,
        context: u64,
    },
    RemoveUrl {
        call: u32,
        queue: u32,
        prefix: String,
    },
    SetQueue {
        call: u32,
        queue: u32,
        property: QueueProperty,
    },
    /// Drops cached responses under the prefix.
    FlushCache {
        call: u32,
        queue: u32,
        prefix: String,
    },
    /// Ready for `count` more requests of the queue.
    Receive {
        queue: u32,
        count: u32,
    },
    /// Deliver no more requests of the queue to this program; the reply
    /// comes after every request already delivered.
    StopReceiving {
        call: u32,
        queue: u32,
    },
    Respond {
        request: u64,
        head: ResponseHead,
    },
    /// The response is complete, with its trailers, and what changed in
    /// its log line since its head was sent.
    ResponseEnd {
        request: u64,
        trailers: Vec<Header>,
        late_log: LateLog,
    },
    /// This many request body bytes were taken (opens the window).
    BodyConsumed {
        request: u64,
        bytes: u64,
    },
    /// Abandon the request: the client's connection is closed.
    Abort {
        request: u64,
    },
    /// Hand the request's connection over to the program, which is in
    /// the listener's process ([`crate::handoff`]): the listener stops
    /// reading and writing it, logs the request with `status`, and passes
    /// the connection on under `token`.
    TakeConnection {
        request: u64,
        token: [u8; 16],
        status: u16,
    },
    /// Body bytes from a file: `len` bytes at `offset` of the descriptor
    /// that travels with this frame ([`crate::fdpass`]).
    SendFile {
        request: u64,
        offset: u64,
        len: u64,
    },
    /// How many requests wait in the queue for a process to take them
    /// (the reply's value).
    QueuedRequests {
        call: u32,
        queue: u32,
    },
    /// Tell this session when connection `connection` closes
    /// ([`ToApp::Disconnected`]), as HttpWaitForDisconnect does.
    WaitForDisconnect {
        connection: u64,
    },
    /// What the raw-data filter made of [`ToApp::RawData`] `seq` of
    /// connection `conn`: the bytes to pass on in its place, bytes to
    /// send to the client first (a filter's WriteClient), whether to
    /// close the connection instead (SF_STATUS_REQ_FINISHED, or an
    /// error), and the next read's size.
    RawDataDone {
        conn: u64,
        seq: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        #[serde(with = "serde_bytes")]
        to_client: Vec<u8>,
        close: bool,
        /// The most the next read from the client takes (a filter's
        /// SF_REQ_SET_NEXT_READ_SIZE); 0: the listener's own size.
        next_read: u32,
    },
    /// The program reads the request body: a client that waits for
    /// `100 Continue` (Expect: 100-continue) gets it now, not before (a
    /// program that answers without reading, a 401 say, sends none).
    WantBody {
        request: u64,
    },
}

/// A connection as its raw-data filter first hears of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawConnection {
    pub conn: u64,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    pub secure: bool,
}

/// Messages from the listener to a program.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToApp {
    Welcome {
        version: u32,
    },
    Reply {
        call: u32,
        result: Result<u64, ApiError>,
    },
    Request(Box<RequestHead>),
    /// The trailer fields of a chunked request body; sent just before the
    /// body's final frame.
    RequestTrailers {
        request: u64,
        trailers: Vec<Header>,
    },
    /// This many response body bytes went to the client.
    ResponseConsumed {
        request: u64,
        bytes: u64,
    },
    /// The client went away, or the listener gave up on the request.
    Aborted {
        request: u64,
    },
    /// A connection this session waits on closed
    /// ([`ToListener::WaitForDisconnect`]).
    Disconnected {
        connection: u64,
    },
    /// A connection opened, to a session whose queue filters raw data
    /// (IIS 5 isolation mode's SF_NOTIFY_READ_RAW_DATA and
    /// SF_NOTIFY_SEND_RAW_DATA).
    RawOpened(RawConnection),
    /// Bytes of connection `conn` for the raw-data filter: read from the
    /// client (decrypted) before they are parsed, or on their way out
    /// (`outbound`). Answered with [`ToListener::RawDataDone`].
    RawData {
        conn: u64,
        seq: u64,
        outbound: bool,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// The connection closed (SF_NOTIFY_END_OF_NET_SESSION).
    RawClosed {
        conn: u64,
    },
}

/// The tchar set of RFC 9110 5.6.2 (token characters), as a table: every
/// header name of every response is checked against it.
const TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = matches!(b as u8,
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_'
            | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z');
        b += 1;
    }
    table
};

/// Whether a byte is a tchar (RFC 9110 5.6.2).
pub fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

/// Whether a header field is well-formed: a token name, a value without
/// CR, LF or NUL (which would let it inject other fields).
pub fn is_valid_header(h: &Header) -> bool {
    is_valid_field(h.name.as_bytes(), &h.value)
}

/// A field name is a token and its value holds no line break or NUL.
pub fn is_valid_field(name: &[u8], value: &[u8]) -> bool {
    !name.is_empty()
        && name.iter().copied().all(is_tchar)
        && memchr::memchr3(b'\r', b'\n', 0, value).is_none()
}

/// Checks a response head before it is sent; `Err` says what is wrong.
pub fn validate_response_head(head: &ResponseHead) -> Result<(), String> {
    if !(200..=999).contains(&head.status) {
        return Err(format!(
            "status {} is not a final status (200 to 999)",
            head.status
        ));
    }
    if let Some(reason) = &head.reason {
        if reason.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err("the reason phrase holds a line break".into());
        }
    }
    for field in head.headers.raw_fields() {
        let Some((name, value)) = field else {
            return Err("a header field lies outside its block".into());
        };
        if !is_valid_field(name, value) {
            return Err(format!(
                "header '{}' is not a valid field",
                String::from_utf8_lossy(name)
            ));
        }
    }
    Ok(())
}

/// A decoded frame, borrowing from the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Message(&'a [u8]),
    RequestBody {
        request: u64,
        end: bool,
        data: &'a [u8],
    },
    ResponseBody {
        request: u64,
        end: bool,
        data: &'a [u8],
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("frame of {0} bytes is larger than the limit")]
    TooLarge(usize),
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("truncated frame")]
    Truncated,
    #[error("bad message: {0}")]
    Decode(#[from] postcard::Error),
}

/// Appends a control message frame to `out`.
pub fn encode_message<M: Serialize>(msg: &M, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, KIND_MESSAGE]);
    // Serialising these types into a Vec cannot fail.
    let encoded = postcard::to_extend(msg, std::mem::take(out)).unwrap_or_default();
    *out = encoded;
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

fn encode_body(kind: u8, request: u64, end: bool, data: &[u8], out: &mut Vec<u8>) {
    let len = (1 + 8 + 1 + data.len()) as u32;
    out.reserve(4 + len as usize);
    out.extend_from_slice(&len.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(&request.to_le_bytes());
    out.push(if end { FLAG_END } else { 0 });
    out.extend_from_slice(data);
}

/// Appends a request body frame (listener to program).
pub fn encode_request_body(request: u64, end: bool, data: &[u8], out: &mut Vec<u8>) {
    encode_body(KIND_REQUEST_BODY, request, end, data, out)
}

/// Appends a response body frame (program to listener).
pub fn encode_response_body(request: u64, end: bool, data: &[u8], out: &mut Vec<u8>) {
    encode_body(KIND_RESPONSE_BODY, request, end, data, out)
}

/// Decodes the frame at the start of `buf`: the frame and its total
/// length, or `None` when more bytes are needed.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, ProtoError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_FRAME {
        return Err(ProtoError::TooLarge(len));
    }
    if len == 0 {
        return Err(ProtoError::Truncated);
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let body = &buf[4..4 + len];
    let frame = match body[0] {
        KIND_MESSAGE => Frame::Message(&body[1..]),
        kind @ (KIND_REQUEST_BODY | KIND_RESPONSE_BODY) => {
            if body.len() < 10 {
                return Err(ProtoError::Truncated);
            }
            let mut id = [0u8; 8];
            id.copy_from_slice(&body[1..9]);
            let request = u64::from_le_bytes(id);
            let end = body[9] & FLAG_END != 0;
            let data = &body[10..];
            if kind == KIND_REQUEST_BODY {
                Frame::RequestBody { request, end, data }
            } else {
                Frame::ResponseBody { request, end, data }
            }
        }
        other => return Err(ProtoError::UnknownKind(other)),
    };
    Ok(Some((frame, 4 + len)))
}

/// Writes frames from `frames` to `out` until either side closes. Frames
/// that are ready together go out in one write.
pub async fn write_batched<W: tokio::io::AsyncWrite + Unpin>(
    mut frames: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
    mut out: W,
) {
    use tokio::io::AsyncWriteExt;
    let mut batch = Vec::with_capacity(64 * 1024);
    while let Some(first) = frames.recv().await {
        // Let the other ready tasks queue their frames first: the
        // scheduler would otherwise run this writer right after each
        // sender, one frame per write.
        tokio::task::yield_now().await;
        batch.clear();
        batch.extend_from_slice(&first);
        while batch.len() < 256 * 1024 {
            match frames.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if out.write_all(&batch).await.is_err() {
            break;
        }
    }
}

/// Decodes a control message.
pub fn decode_message<'a, M: Deserialize<'a>>(bytes: &'a [u8]) -> Result<M, ProtoError> {
    Ok(postcard::from_bytes(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut out = Vec::new();
        let msg = ToListener::AddUrl {
            call: 7,
            queue: 3,
            prefix: "http://+:8080/hello/".into(),
            context: 42,
        };
        encode_message(&msg, &mut out);
        encode_request_body(9, false, b"hello", &mut out);
        encode_response_body(u64::MAX, true, b"", &mut out);
        let (frame, used) = decode_frame(&out).unwrap().unwrap();
        let Frame::Message(bytes) = frame else {
            panic!()
        };
        assert_eq!(decode_message::<ToListener>(bytes).unwrap(), msg);
        let rest = &out[used..];
        let (frame, used2) = decode_frame(rest).unwrap().unwrap();
        assert_eq!(
            frame,
            Frame::RequestBody {
                request: 9,
                end: false,
                data: b"hello"
            }
        );
        let (frame, used3) = decode_frame(&rest[used2..]).unwrap().unwrap();
        assert_eq!(
            frame,
            Frame::ResponseBody {
                request: u64::MAX,
                end: true,
                data: b""
            }
        );
        assert_eq!(used + used2 + used3, out.len());
        // Partial input asks for more.
        for cut in 0..out.len().min(used) {
            assert!(decode_frame(&out[..cut]).unwrap().is_none());
        }
    }

    #[test]
    fn bad_frames_are_errors() {
        assert!(decode_frame(&[0, 0, 0, 0]).is_err());
        assert!(decode_frame(&[0xff, 0xff, 0xff, 0x7f, 0]).is_err());
        assert!(decode_frame(&[1, 0, 0, 0, 9]).is_err());
        assert!(decode_frame(&[2, 0, 0, 0, KIND_REQUEST_BODY, 0]).is_err());
        assert!(decode_message::<ToApp>(&[200, 1, 2]).is_err());
    }

    #[test]
    fn a_request_head_round_trips() {
        let head = RequestHead {
            id: 1,
            queue: 2,
            url_context: 3,
            prefix: "http://+:80/".into(),
            method: "GET".into(),
            raw_url: b"/caf%C3%A9?x".to_vec(),
            url: CookedUrl {
                scheme: "http".into(),
                host: "h".into(),
                port: 80,
                path: "/café".into(),
                query: "x".into(),
            },
            version: HttpVersion::Http11,
            headers: [("Host", b"h".as_slice()), ("X-Latin", &[0xe9])]
                .into_iter()
                .collect(),
            connection: 7,
            remote: "127.0.0.1:5000".parse().unwrap(),
            local: "[::1]:80".parse().unwrap(),
            tls: None,
            body: BodyInfo::Chunked,
        };
        let mut out = Vec::new();
        encode_message(&ToApp::Request(Box::new(head.clone())), &mut out);
        let (Frame::Message(bytes), _) = decode_frame(&out).unwrap().unwrap() else {
            panic!()
        };
        let ToApp::Request(decoded) = decode_message::<ToApp>(bytes).unwrap() else {
            panic!("not a request")
        };
        assert_eq!(decoded.url.full(), "http://h:80/café?x");
        assert_eq!(decoded.headers.get("x-latin"), Some([0xe9].as_slice()));
        assert_eq!(decoded, Box::new(head));
    }

    #[test]
    fn a_borrowed_request_head_encodes_as_an_owned_one() {
        let raw = b"GET /a?b HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nAccept: */*\r\n\r\n";
        // (name, value) ranges in the whole head, as a parser gives them.
        let fields = [
            ((19, 23), (25, 26)),
            ((28, 35), (36, 36)),
            ((38, 44), (46, 49)),
        ];
        let tls = TlsInfo {
            protocol: "TLSv1.3".into(),
            cipher: "TLS13_AES_128_GCM_SHA256".into(),
            key_size: 128,
            server_name: Some("h".into()),
            server_subject: "CN=h".into(),
            server_issuer: "CN=h".into(),
            client_certificate: None,
        };
        for tls in [None, Some(&tls)] {
            let view = RequestHeadRef {
                id: 9,
                queue: 4,
                url_context: 2,
                prefix: "http://+:80/",
                method: "GET",
                raw_url: b"/a?b",
                url: CookedUrlRef {
                    scheme: "http",
                    host: "h",
                    port: 80,
                    path: "/a",
                    query: "b",
                },
                version: HttpVersion::Http11,
                headers: HeaderBlockRef {
                    bytes: &raw[19..49],
                    base: 19,
                    fields: &fields,
                },
                remote: "127.0.0.1:5000".parse().unwrap(),
                local: "127.0.0.1:80".parse().unwrap(),
                tls,
                body: BodyInfo::Length(3),
                connection: 5,
            };
            let owned = RequestHead {
                id: 9,
                queue: 4,
                url_context: 2,
                prefix: "http://+:80/".into(),
                method: "GET".into(),
                raw_url: b"/a?b".to_vec(),
                url: CookedUrl {
                    scheme: "http".into(),
                    host: "h".into(),
                    port: 80,
                    path: "/a".into(),
                    query: "b".into(),
                },
                version: HttpVersion::Http11,
                headers: [
                    ("Host", b"h".as_slice()),
                    ("X-Empty", b"".as_slice()),
                    ("Accept", b"*/*".as_slice()),
                ]
                .into_iter()
                .collect(),
                remote: "127.0.0.1:5000".parse().unwrap(),
                local: "127.0.0.1:80".parse().unwrap(),
                tls: tls.cloned(),
                body: BodyInfo::Length(3),
                connection: 5,
            };
            let mut borrowed = Vec::new();
            encode_request(&view, &mut borrowed);
            let (Frame::Message(bytes), _) = decode_frame(&borrowed).unwrap().unwrap() else {
                panic!("not a message")
            };
            let ToApp::Request(decoded) = decode_message::<ToApp>(bytes).unwrap() else {
                panic!("not a request")
            };
            assert_eq!(decoded.headers.get("accept"), Some(b"*/*".as_slice()));
            assert_eq!(decoded.headers.get("x-empty"), Some(b"".as_slice()));
            // The same message as the owned head's (header bytes aside:
            // the owned block is built without the CRLFs between fields).
            let mut expected = owned.clone();
            expected.headers = decoded.headers.clone();
            assert_eq!(*decoded, expected);
            let mut again = Vec::new();
            encode_message(&ToApp::Request(Box::new(expected)), &mut again);
            assert_eq!(borrowed, again);
        }
    }

    #[test]
    fn response_heads_with_bad_fields_are_refused() {
        let head = |headers: HeaderBlock| ResponseHead {
            status: 200,
            reason: None,
            headers,
            body: ResponseBody::Empty,
            cache: None,
            log: None,
        };
        let mut good = HeaderBlock::new();
        good.push("X-Fine", b"value \xe9");
        assert!(validate_response_head(&head(good)).is_ok());
        for (name, value) in [
            ("Bad Name", b"v".as_slice()),
            ("", b"v"),
            ("X-Split", b"a\r\nInjected: yes"),
            ("X-Nul", b"a\0b"),
        ] {
            let mut bad = HeaderBlock::new();
            bad.push(name, value);
            assert!(validate_response_head(&head(bad)).is_err(), "{name:?}");
        }
        let outside = HeaderBlock::from_ranges(b"X-A1".to_vec(), vec![[0, 3, 3, 40]]);
        let error = validate_response_head(&head(outside)).unwrap_err();
        assert!(error.contains("outside"), "{error}");
    }

    #[test]
    fn header_blocks_read_fields_in_order_and_survive_bad_ranges() {
        let mut block = HeaderBlock::new();
        block.push("Accept", b"a");
        block.push("Cookie", b"x=1");
        block.push("accept", b"b");
        assert_eq!(block.len(), 3);
        assert_eq!(block.get("ACCEPT"), Some(b"a".as_slice()));
        assert_eq!(
            block.get_all("accept").collect::<Vec<_>>(),
            [b"a".as_slice(), b"b".as_slice()]
        );
        assert_eq!(block.get("missing"), None);
        // Ranges that do not fit (a corrupt or hostile message) read as
        // absent, never as a panic.
        let odd = HeaderBlock::from_ranges(
            b"HostxBad\xff".to_vec(),
            vec![[0, 4, 4, 5], [5, 99, 0, 1], [3, 1, 0, 1], [8, 9, 0, 1]],
        );
        assert_eq!(odd.iter().collect::<Vec<_>>(), [("Host", b"x".as_slice())]);
        // Removing and appending keep the order.
        block.retain(|name, _| name != "Cookie");
        let mut more = HeaderBlock::new();
        more.push("Via", b"1.1 p");
        block.append(&more);
        assert_eq!(
            block.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            ["Accept", "accept", "Via"]
        );
    }
}
