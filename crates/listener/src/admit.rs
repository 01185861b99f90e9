//! What the listener decides about a request head before any I/O: its
//! canonical URL, the route it takes, whether the server answers it itself
//! (`OPTIONS *`), whether it is refused (bad URL, no host, no path, a body
//! over MaxRequestEntityBytes), whether the response cache may answer it,
//! and the message a process receives. No socket, queue or clock is
//! touched here, so each decision is tested on bytes alone.

use std::net::SocketAddr;

use bytes::Bytes;
use httpapi::proto::{self, BodyInfo, HeaderBlockRef, HttpVersion, RequestHeadRef};

use crate::cache::ResponseCache;
use crate::config::ListenerConfig;
use crate::http::{ErrorReason as R, Framing, Head, HttpError, Limits, Version};
use crate::routing::{Routed, RoutingTable};
use crate::url::{canonicalize, CookedUrl, Scheme, Target, UrlOptions};

/// What a connection is, as far as its requests are concerned.
#[derive(Clone, Debug)]
pub(crate) struct ConnInfo {
    pub remote: SocketAddr,
    pub local: SocketAddr,
    pub scheme: Scheme,
    /// The local address as a host, for HTTP/1.0 requests without Host.
    pub local_host: String,
    /// What the handshake settled, on an https connection.
    pub tls: Option<proto::TlsInfo>,
    /// The connection's number, unique while the listener runs.
    pub id: u64,
}

impl ConnInfo {
    pub fn new(remote: SocketAddr, local: SocketAddr, scheme: Scheme) -> ConnInfo {
        ConnInfo {
            remote,
            local,
            scheme,
            local_host: match local.ip() {
                std::net::IpAddr::V6(a) => format!("[{a}]"),
                std::net::IpAddr::V4(a) => a.to_string(),
            },
            tls: None,
            id: 0,
        }
    }
}

/// A parsed request head and the bytes it was parsed from.
pub(crate) struct Request {
    pub raw: Bytes,
    pub head: Head,
}

impl Request {
    pub fn method(&self) -> &[u8] {
        &self.raw[self.head.method.0..self.head.method.1]
    }

    pub fn target(&self) -> &[u8] {
        &self.raw[self.head.target.0..self.head.target.1]
    }

    pub fn is_head(&self) -> bool {
        self.method() == b"HEAD"
    }

    /// The first field named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.header_range(name).map(|(lo, hi)| &self.raw[lo..hi])
    }

    /// [`Request::header`] as a slice of the shared buffer (no copy).
    pub fn header_bytes(&self, name: &str) -> Option<Bytes> {
        self.header_range(name)
            .map(|(lo, hi)| self.raw.slice(lo..hi))
    }

    fn header_range(&self, name: &str) -> Option<(usize, usize)> {
        self.head
            .headers
            .iter()
            .find(|((nlo, nhi), _)| self.raw[*nlo..*nhi].eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| *value)
    }

    fn host_header(&self) -> Option<&[u8]> {
        self.head.host.map(|i| {
            let (lo, hi) = self.head.headers[i].1;
            &self.raw[lo..hi]
        })
    }
}

/// The request-independent inputs of [`admit`].
pub(crate) struct Rules<'a> {
    pub config: &'a ListenerConfig,
    pub limits: &'a Limits,
    pub url_options: &'a UrlOptions,
}

/// What to do with a request.
#[derive(Debug)]
pub(crate) enum Admission<'r, T> {
    /// `OPTIONS *`: the server answers about itself.
    ServerOptions,
    /// Routed: to the cache (when `cache_key` is set and it holds an
    /// answer) or to the route's queue.
    Routed(Admitted<'r, T>),
}

#[derive(Debug)]
pub(crate) struct Admitted<'r, T> {
    pub url: CookedUrl,
    pub route: &'r T,
    /// Set when the response cache may answer this request (and keep
    /// its response).
    pub cache_key: Option<String>,
}

/// Why a request is refused, and how far it got (the log line says which
/// route it had).
#[derive(Debug)]
pub(crate) struct Refusal<'r, T> {
    pub error: HttpError,
    pub route: Option<&'r T>,
}

impl<T> From<HttpError> for Refusal<'_, T> {
    fn from(error: HttpError) -> Self {
        Refusal { error, route: None }
    }
}

/// Decides what happens to `request` on connection `conn`.
pub(crate) fn admit<'r, T: Clone>(
    conn: &ConnInfo,
    request: &Request,
    routes: &'r RoutingTable<T>,
    rules: &Rules<'_>,
) -> Result<Admission<'r, T>, Refusal<'r, T>> {
    let method = request.method();
    let url = canonicalize(
        &Target {
            raw: request.target(),
            host_header: request.host_header(),
            local_host: &conn.local_host,
            scheme: conn.scheme,
            local_port: conn.local.port(),
            is_options: method == b"OPTIONS",
        },
        rules.limits,
        rules.url_options,
    )?;
    if url.path == "*" {
        if request.head.framing != Framing::None {
            return Err(HttpError::bad_request(R::BadRequest, "Invalid Request").into());
        }
        return Ok(Admission::ServerOptions);
    }
    let route = match routes.route(
        conn.scheme,
        conn.local.port(),
        &url.host,
        conn.local.ip(),
        &url.path,
    ) {
        Routed::Found { target, .. } => target,
        Routed::NoPath => return Err(HttpError::new(404, R::NotFound, "Not Found").into()),
        Routed::NoHost => {
            return Err(HttpError::bad_request(R::Hostname, "Invalid Hostname").into());
        }
    };
    let max_body = rules.config.max_request_entity_bytes;
    if max_body > 0 && matches!(request.head.framing, Framing::Length(n) if n > max_body) {
        return Err(Refusal {
            error: HttpError::new(413, R::EntityTooLarge, "Request Entity Too Large"),
            route: Some(route),
        });
    }
    let cacheable = rules.config.uri_enable_cache
        && (method == b"GET" || request.is_head())
        && url.query.is_empty()
        && request.head.framing == Framing::None
        && request.header("authorization").is_none()
        && request.header("range").is_none()
        && request.header("if-range").is_none()
        // Preconditions the cache does not evaluate go to the owner.
        && request.header("if-match").is_none()
        && request.header("if-unmodified-since").is_none();
    let cache_key = cacheable.then(|| ResponseCache::key(&url.host, url.port, &url.path));
    Ok(Admission::Routed(Admitted {
        url,
        route,
        cache_key,
    }))
}

/// Where a request goes: its queue's message fields.
pub(crate) struct Destination<'a> {
    pub id: u64,
    pub queue: u32,
    pub url_context: u64,
    pub prefix: &'a str,
}

/// The message a process receives for `request`.
pub(crate) fn request_message(
    conn: &ConnInfo,
    request: &Request,
    url: &CookedUrl,
    to: &Destination<'_>,
) -> RequestFrame {
    let raw = &request.raw;
    let fields = &request.head.headers[..];
    // The stretch of the head the fields lie in, sent as it is.
    let (base, end) = match (fields.first(), fields.last()) {
        (Some(first), Some(last)) => (first.0 .0, last.1 .1.max(last.0 .1)),
        _ => (0, 0),
    };
    // Token characters (the parser admits no others): borrowed, not copied.
    let method = String::from_utf8_lossy(request.method());
    let head = RequestHeadRef {
        id: to.id,
        queue: to.queue,
        url_context: to.url_context,
        prefix: to.prefix,
        method: &method,
        raw_url: request.target(),
        url: proto::CookedUrlRef {
            scheme: url.scheme.as_str(),
            host: &url.host,
            port: url.port,
            path: &url.path,
            query: &url.query,
        },
        version: match request.head.version {
            Version::Http10 => HttpVersion::Http10,
            Version::Http11 => HttpVersion::Http11,
        },
        headers: HeaderBlockRef {
            bytes: &raw[base..end],
            base,
            fields,
        },
        remote: conn.remote,
        local: conn.local,
        tls: conn.tls.as_ref(),
        body: match request.head.framing {
            Framing::None => BodyInfo::None,
            Framing::Length(n) => BodyInfo::Length(n),
            Framing::Chunked => BodyInfo::Chunked,
        },
        connection: conn.id,
    };
    let mut frame = Vec::with_capacity(256 + raw.len());
    proto::encode_request(&head, &mut frame);
    RequestFrame { id: to.id, frame }
}

/// A request on its way to a process: its id, and its message encoded
/// once, when it was admitted.
pub(crate) struct RequestFrame {
    pub id: u64,
    pub frame: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_head;
    use crate::routing::UrlPrefix;

    fn conn() -> ConnInfo {
        ConnInfo::new(
            "127.0.0.1:50000".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
            Scheme::Http,
        )
    }

    fn request(text: &str) -> Request {
        let raw = Bytes::copy_from_slice(text.as_bytes());
        let head = parse_head(&raw, &ListenerConfig::default().limits())
            .unwrap()
            .unwrap();
        Request { raw, head }
    }

    /// Routes to a name: "site" for the site's root, "app" for /app/.
    fn routes() -> RoutingTable<&'static str> {
        let mut table = RoutingTable::default();
        let prefix = |p: &str| UrlPrefix::parse(p).unwrap();
        table.insert(prefix("http://+:8080/"), "site").unwrap();
        table.insert(prefix("http://+:8080/app/"), "app").unwrap();
        table
    }

    /// (route, cache key) of an admitted request.
    type Decision = (Option<&'static str>, Option<String>);
    /// (status, reason, route) of a refused one.
    type Refused = (u16, R, Option<&'static str>);

    fn decide(config: &ListenerConfig, text: &str) -> Result<Decision, Refused> {
        let table = Box::leak(Box::new(routes()));
        let limits = config.limits();
        let url_options = config.url_options();
        let rules = Rules {
            config,
            limits: &limits,
            url_options: &url_options,
        };
        match admit(&conn(), &request(text), table, &rules) {
            Ok(Admission::ServerOptions) => Ok((None, None)),
            Ok(Admission::Routed(a)) => Ok((Some(*a.route), a.cache_key)),
            Err(r) => Err((r.error.status, r.error.reason, r.route.copied())),
        }
    }

    #[test]
    fn routes_by_the_longest_prefix_of_the_canonical_path() {
        let config = ListenerConfig::default();
        let get = |target: &str| format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(decide(&config, &get("/")).unwrap().0, Some("site"));
        assert_eq!(decide(&config, &get("/app/page")).unwrap().0, Some("app"));
        // Decoded and normalised before routing.
        assert_eq!(
            decide(&config, &get("/x/../%61pp/page")).unwrap().0,
            Some("app")
        );
        assert_eq!(decide(&config, &get("/apple")).unwrap().0, Some("site"));
    }

    #[test]
    fn the_server_answers_options_star_itself() {
        let config = ListenerConfig::default();
        assert_eq!(
            decide(&config, "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n").unwrap(),
            (None, None)
        );
        let with_body = "OPTIONS * HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(
            decide(&config, with_body).unwrap_err(),
            (400, R::BadRequest, None)
        );
    }

    #[test]
    fn refusals_say_why_and_how_far_the_request_got() {
        let config = ListenerConfig {
            max_request_entity_bytes: 10,
            ..ListenerConfig::default()
        };
        let big = "POST /app/ HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n";
        assert_eq!(
            decide(&config, big).unwrap_err(),
            (413, R::EntityTooLarge, Some("app"))
        );
        let fits = "POST /app/ HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n";
        assert!(decide(&config, fits).is_ok());
        // A URL that escapes the root is refused before routing.
        let escape = "GET /../etc HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(decide(&config, escape).unwrap_err().0, 400);
    }

    #[test]
    fn only_plain_gets_may_come_from_the_cache() {
        let mut config = ListenerConfig {
            uri_enable_cache: true,
            ..ListenerConfig::default()
        };
        let key = |text: &str| decide(&config, text).unwrap().1;
        let plain = key("GET /app/a HTTP/1.1\r\nHost: X\r\n\r\n").expect("cacheable");
        assert_eq!(plain, ResponseCache::key("x", 8080, "/app/a"));
        assert!(key("HEAD /app/a HTTP/1.1\r\nHost: x\r\n\r\n").is_some());
        for refused in [
            "GET /app/a?q=1 HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /app/a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            "GET /app/a HTTP/1.1\r\nHost: x\r\nAuthorization: Basic eDp5\r\n\r\n",
            "GET /app/a HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n\r\n",
            "GET /app/a HTTP/1.1\r\nHost: x\r\nIf-Match: \"e\"\r\n\r\n",
            "GET /app/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(key(refused), None, "{refused}");
        }
        config.uri_enable_cache = false;
        assert_eq!(
            decide(&config, "GET /app/a HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap()
                .1,
            None
        );
    }

    #[test]
    fn the_message_carries_the_head_as_received() {
        let conn = conn();
        let req = request("GET /App/%7Euser?q=1 HTTP/1.0\r\nHost: Example\r\nX-A: 1\r\n\r\n");
        let table = routes();
        let config = ListenerConfig::default();
        let limits = config.limits();
        let url_options = config.url_options();
        let rules = Rules {
            config: &config,
            limits: &limits,
            url_options: &url_options,
        };
        let Ok(Admission::Routed(a)) = admit(&conn, &req, &table, &rules) else {
            panic!("not routed");
        };
        let msg = request_message(
            &conn,
            &req,
            &a.url,
            &Destination {
                id: 7,
                queue: 3,
                url_context: 9,
                prefix: "http://+:8080/",
            },
        );
        assert_eq!(msg.id, 7);
        let (proto::Frame::Message(bytes), _) = proto::decode_frame(&msg.frame).unwrap().unwrap()
        else {
            panic!("not a message frame");
        };
        let proto::ToApp::Request(msg) = proto::decode_message::<proto::ToApp>(bytes).unwrap()
        else {
            panic!("not a request");
        };
        assert_eq!((msg.id, msg.queue, msg.url_context), (7, 3, 9));
        assert_eq!(msg.method, "GET");
        assert_eq!(msg.raw_url, b"/App/%7Euser?q=1");
        assert_eq!(msg.url.full(), "http://example:8080/App/~user?q=1");
        assert_eq!(msg.version, HttpVersion::Http10);
        assert_eq!(
            msg.headers.iter().collect::<Vec<_>>(),
            [("Host", b"Example".as_slice()), ("X-A", b"1".as_slice())]
        );
        assert_eq!(msg.body, BodyInfo::None);
    }
}
