//! The request head: request line and header fields, parsed strictly
//! (RFC 9112 sections 2 to 6), with HTTP.SYS's limits.
//!
//! Strict means: lines end in CRLF (a bare CR or LF is refused), one space
//! between the parts of the request line, no whitespace before a field's
//! colon, no obs-fold, field values without control characters, one Host
//! for HTTP/1.1, and message framing that leaves no room for request
//! smuggling (no Content-Length with Transfer-Encoding, no repeated or
//! malformed Content-Length, `chunked` last and once).

use memchr::memchr;

use super::error::{ErrorReason as R, HttpError};
use super::is_tchar;

/// HTTP.SYS's request limits (HKLM\...\HTTP\Parameters), with its defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The longest request line or header line (MaxFieldLength).
    pub max_field_length: usize,
    /// The longest request head, request line and headers together
    /// (MaxRequestBytes).
    pub max_request_bytes: usize,
    /// The longest path segment, in characters (UrlSegmentMaxLength).
    pub url_segment_max_length: usize,
    /// The most path segments (UrlSegmentMaxCount).
    pub url_segment_max_count: usize,
    /// The longest method name.
    pub max_verb_length: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_field_length: 16_384,
            max_request_bytes: 16_384,
            url_segment_max_length: 260,
            url_segment_max_count: 255,
            max_verb_length: 255,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// How the request body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// A parsed request head. Positions are byte ranges of the buffer that was
/// parsed, so the head can be kept as one shared buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// Bytes of the buffer the head took, empty lines before it included.
    pub len: usize,
    pub method: (usize, usize),
    pub target: (usize, usize),
    pub version: Version,
    /// Each header field: (name range, value range), value without the
    /// surrounding whitespace.
    pub headers: Vec<((usize, usize), (usize, usize))>,
    /// Index into `headers` of the Host field.
    pub host: Option<usize>,
    pub framing: Framing,
    pub keep_alive: bool,
    pub expect_continue: bool,
}

const MAX_LEADING_EMPTY_LINES: usize = 8;

/// Parses a request head from the start of `buf`. `Ok(None)` means more
/// bytes are needed; the limits are enforced on partial input too, so a
/// client cannot make the listener buffer more than they allow.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<Head>, HttpError> {
    // RFC 9112 2.2: empty lines before the request line are ignored.
    let mut start = 0;
    for _ in 0..MAX_LEADING_EMPTY_LINES {
        if buf[start..].starts_with(b"\r\n") {
            start += 2;
        } else {
            break;
        }
    }
    if buf[start..].starts_with(b"\n") {
        return Err(HttpError::bad_request(
            R::InvalidCrLf,
            "Invalid Line Ending",
        ));
    }

    let Some(line_end) = memchr(b'\n', &buf[start..]).map(|i| start + i) else {
        if buf.len() - start > limits.max_field_length {
            return Err(HttpError::new(414, R::UrlLength, "Request URL Too Long"));
        }
        check_partial_line(&buf[start..])?;
        return Ok(None);
    };
    if line_end - start > limits.max_field_length + 1 {
        return Err(HttpError::new(414, R::UrlLength, "Request URL Too Long"));
    }
    let line = line_without_crlf(buf, start, line_end)?;
    let (method, target, version) = request_line(buf, line, limits)?;

    let mut headers = Vec::new();
    let mut pos = line_end + 1;
    loop {
        if pos - start > limits.max_request_bytes {
            return Err(HttpError::new(
                431,
                R::RequestLength,
                "Request Header Too Long",
            ));
        }
        let Some(end) = memchr(b'\n', &buf[pos..]).map(|i| pos + i) else {
            if buf.len() - pos > limits.max_field_length {
                return Err(HttpError::new(431, R::FieldLength, "Header Field Too Long"));
            }
            if buf.len() - start > limits.max_request_bytes {
                return Err(HttpError::new(
                    431,
                    R::RequestLength,
                    "Request Header Too Long",
                ));
            }
            check_partial_line(&buf[pos..])?;
            return Ok(None);
        };
        if end - pos > limits.max_field_length + 1 {
            return Err(HttpError::new(431, R::FieldLength, "Header Field Too Long"));
        }
        if end + 1 - start > limits.max_request_bytes {
            return Err(HttpError::new(
                431,
                R::RequestLength,
                "Request Header Too Long",
            ));
        }
        let (lo, hi) = line_without_crlf(buf, pos, end)?;
        pos = end + 1;
        if lo == hi {
            break;
        }
        headers.push(header_field(buf, lo, hi)?);
    }

    let mut head = Head {
        len: pos,
        method,
        target,
        version,
        headers,
        host: None,
        framing: Framing::None,
        keep_alive: version == Version::Http11,
        expect_continue: false,
    };
    semantics(buf, &mut head)?;
    Ok(Some(head))
}

/// A line still arriving may already be refused for a stray CR.
fn check_partial_line(partial: &[u8]) -> Result<(), HttpError> {
    match memchr(b'\r', partial) {
        Some(i) if i + 1 < partial.len() => Err(HttpError::bad_request(
            R::InvalidCrLf,
            "Invalid Line Ending",
        )),
        _ => Ok(()),
    }
}

/// The line from `start` to the LF at `lf`, which must be preceded by CR
/// and hold no other CR.
fn line_without_crlf(buf: &[u8], start: usize, lf: usize) -> Result<(usize, usize), HttpError> {
    if lf == start || buf[lf - 1] != b'\r' {
        return Err(HttpError::bad_request(
            R::InvalidCrLf,
            "Invalid Line Ending",
        ));
    }
    let end = lf - 1;
    if memchr(b'\r', &buf[start..end]).is_some() {
        return Err(HttpError::bad_request(
            R::InvalidCrLf,
            "Invalid Line Ending",
        ));
    }
    Ok((start, end))
}

type Range = (usize, usize);

fn request_line(
    buf: &[u8],
    (lo, hi): Range,
    limits: &Limits,
) -> Result<(Range, Range, Version), HttpError> {
    let line = &buf[lo..hi];
    let Some(sp1) = memchr(b' ', line) else {
        return Err(HttpError::bad_request(
            R::BadRequest,
            "Invalid Request Line",
        ));
    };
    let method = &line[..sp1];
    if method.is_empty() {
        return Err(HttpError::bad_request(
            R::BadRequest,
            "Invalid Request Line",
        ));
    }
    if method.len() > limits.max_verb_length || !method.iter().all(|&b| is_tchar(b)) {
        return Err(HttpError::bad_request(R::Verb, "Invalid Verb"));
    }
    let rest = &line[sp1 + 1..];
    let Some(sp2) = memchr(b' ', rest) else {
        // "GET /" alone is HTTP/0.9, which is not served.
        return Err(HttpError::bad_request(
            R::BadRequest,
            "Invalid Request Line",
        ));
    };
    let target = &rest[..sp2];
    if target.is_empty() {
        return Err(HttpError::bad_request(R::Url, "Invalid URL"));
    }
    // The target is visible ASCII or raw non-ASCII bytes (clients send raw
    // UTF-8; URL canonicalisation decides about those).
    if target.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(HttpError::bad_request(R::Url, "Invalid URL"));
    }
    let version = &rest[sp2 + 1..];
    let version = match version {
        b"HTTP/1.1" => Version::Http11,
        b"HTTP/1.0" => Version::Http10,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(HttpError::new(
                505,
                R::VersionNotSupported,
                "Version Not Supported",
            ));
        }
        _ => {
            return Err(HttpError::bad_request(
                R::BadRequest,
                "Invalid Request Line",
            ))
        }
    };
    let method_range = (lo, lo + sp1);
    let target_lo = lo + sp1 + 1;
    Ok((method_range, (target_lo, target_lo + sp2), version))
}

fn header_field(buf: &[u8], lo: usize, hi: usize) -> Result<(Range, Range), HttpError> {
    let line = &buf[lo..hi];
    if matches!(line[0], b' ' | b'\t') {
        // obs-fold (RFC 9112 5.2): refused.
        return Err(HttpError::bad_request(R::Header, "Invalid Header"));
    }
    let Some(colon) = memchr(b':', line) else {
        return Err(HttpError::bad_request(R::Header, "Invalid Header"));
    };
    let name = &line[..colon];
    // Includes the case of whitespace before the colon (RFC 9112 5.1).
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(HttpError::bad_request(R::Header, "Invalid Header Name"));
    }
    let mut vlo = colon + 1;
    let mut vhi = line.len();
    while vlo < vhi && matches!(line[vlo], b' ' | b'\t') {
        vlo += 1;
    }
    while vhi > vlo && matches!(line[vhi - 1], b' ' | b'\t') {
        vhi -= 1;
    }
    if line[vlo..vhi]
        .iter()
        .any(|&b| (b < b' ' && b != b'\t') || b == 0x7f)
    {
        return Err(HttpError::bad_request(R::Header, "Invalid Header"));
    }
    Ok(((lo, lo + colon), (lo + vlo, lo + vhi)))
}

/// The comma-separated elements of a list-valued field (RFC 9110 5.6.1).
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|e| e.trim_ascii())
        .filter(|e| !e.is_empty())
}

/// Host, framing, connection persistence and expectations.
fn semantics(buf: &[u8], head: &mut Head) -> Result<(), HttpError> {
    let mut content_length: Option<u64> = None;
    let mut transfer_codings: Vec<&[u8]> = Vec::new();
    let mut saw_te = false;
    let mut connection_close = false;
    let mut connection_keep_alive = false;
    for (i, &((nlo, nhi), (vlo, vhi))) in head.headers.iter().enumerate() {
        let name = &buf[nlo..nhi];
        let value = &buf[vlo..vhi];
        if name.eq_ignore_ascii_case(b"host") {
            if head.host.is_some() {
                return Err(HttpError::bad_request(R::Hostname, "Invalid Hostname"));
            }
            head.host = Some(i);
        } else if name.eq_ignore_ascii_case(b"content-length") {
            // One value, digits only, once: anything else could be read two
            // ways by two parsers (RFC 9112 6.3 and 11.2).
            if content_length.is_some()
                || value.is_empty()
                || value.len() > 18
                || !value.iter().all(u8::is_ascii_digit)
            {
                return Err(HttpError::bad_request(
                    R::BadRequest,
                    "Invalid Content Length",
                ));
            }
            content_length = Some(value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')));
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            saw_te = true;
            transfer_codings.extend(list_elements(value));
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in list_elements(value) {
                if token.eq_ignore_ascii_case(b"close") {
                    connection_close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    connection_keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"expect") && head.version == Version::Http11 {
            if value.eq_ignore_ascii_case(b"100-continue") {
                head.expect_continue = true;
            } else {
                return Err(HttpError::new(
                    417,
                    R::ExpectationFailed,
                    "Expectation Failed",
                ));
            }
        }
    }
    if head.version == Version::Http11 && head.host.is_none() {
        return Err(HttpError::bad_request(R::Hostname, "Invalid Hostname"));
    }
    if saw_te {
        if head.version == Version::Http10 {
            return Err(HttpError::bad_request(
                R::BadRequest,
                "Invalid Transfer-Encoding",
            ));
        }
        if content_length.is_some() {
            return Err(HttpError::bad_request(
                R::BadRequest,
                "Content-Length With Transfer-Encoding",
            ));
        }
        let coding_name = |c: &[u8]| -> Vec<u8> {
            let name = c.split(|&b| b == b';').next().unwrap_or(c).trim_ascii();
            name.to_ascii_lowercase()
        };
        let names: Vec<Vec<u8>> = transfer_codings.iter().map(|c| coding_name(c)).collect();
        let chunked_count = names.iter().filter(|n| n.as_slice() == b"chunked").count();
        if names.last().map(Vec::as_slice) != Some(b"chunked") || chunked_count != 1 {
            // RFC 9112 6.3: a request whose final coding is not chunked
            // cannot be delimited.
            return Err(HttpError::bad_request(
                R::BadRequest,
                "Invalid Transfer-Encoding",
            ));
        }
        // Only the bare `chunked` is understood, as by HTTP.SYS: the coding
        // defines no parameters (RFC 9112 7), and `chunked;q=1` read as
        // chunked by one party and refused by another is how requests are
        // smuggled past a proxy.
        let chunked_has_parameters = transfer_codings.last().is_some_and(|c| c.contains(&b';'));
        if names.len() > 1 || chunked_has_parameters {
            return Err(HttpError::new(
                501,
                R::NotImplemented,
                "Transfer-Encoding Not Implemented",
            ));
        }
        head.framing = Framing::Chunked;
    } else if let Some(n) = content_length {
        head.framing = if n == 0 {
            Framing::None
        } else {
            Framing::Length(n)
        };
    }
    head.keep_alive = match head.version {
        Version::Http11 => !connection_close,
        Version::Http10 => connection_keep_alive && !connection_close,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<Head>, HttpError> {
        parse_head(text.as_bytes(), &Limits::default())
    }

    fn ok(text: &str) -> Head {
        parse(text).unwrap().unwrap()
    }

    fn err(text: &str) -> (u16, R) {
        let e = parse(text).unwrap_err();
        (e.status, e.reason)
    }

    fn s(text: &str, r: (usize, usize)) -> &str {
        &text[r.0..r.1]
    }

    #[test]
    fn a_simple_request() {
        let t = "GET /index.htm?x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
        let h = ok(t);
        assert_eq!(h.len, t.len());
        assert_eq!(s(t, h.method), "GET");
        assert_eq!(s(t, h.target), "/index.htm?x=1");
        assert_eq!(h.version, Version::Http11);
        assert_eq!(h.headers.len(), 2);
        assert_eq!(s(t, h.headers[h.host.unwrap()].1), "example.com");
        assert!(h.keep_alive);
        assert_eq!(h.framing, Framing::None);
    }

    #[test]
    fn incomplete_heads_ask_for_more() {
        for partial in [
            "",
            "GET",
            "GET / HTTP/1.1\r",
            "GET / HTTP/1.1\r\nHost: a\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\n\r",
        ] {
            assert_eq!(parse(partial).unwrap(), None, "{partial:?}");
        }
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        let t = "\r\n\r\nGET / HTTP/1.0\r\n\r\n";
        let h = ok(t);
        assert_eq!(s(t, h.method), "GET");
        assert_eq!(h.len, t.len());
    }

    #[test]
    fn framing() {
        assert_eq!(
            ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n").framing,
            Framing::Length(12)
        );
        assert_eq!(
            ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").framing,
            Framing::None
        );
        assert_eq!(
            ok("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n").framing,
            Framing::Chunked
        );
        assert_eq!(
            ok("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n").framing,
            Framing::Chunked
        );
        assert_eq!(err("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n").0, 400);
        assert_eq!(
            err("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n").0,
            400
        );
        assert_eq!(
            err("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n").0,
            400
        );
        assert_eq!(
            err("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n").0,
            400
        );
        assert_eq!(
            err("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n").0,
            400
        );
        assert_eq!(
            err("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n").0,
            400
        );
        assert_eq!(
            err("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            (501, R::NotImplemented)
        );
        for parameterised in ["chunked;q=1", "chunked ; x", "Chunked;"] {
            let text =
                format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {parameterised}\r\n\r\n");
            assert_eq!(err(&text), (501, R::NotImplemented), "{parameterised}");
        }
        assert_eq!(
            err("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n").0,
            400
        );
        assert_eq!(err("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n").0, 400);
        assert_eq!(
            err("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n").0,
            400
        );
    }

    #[test]
    fn persistence_and_expectations() {
        assert!(!ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!ok("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(ok("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(
            ok("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
                .expect_continue
        );
        assert_eq!(
            err("PUT / HTTP/1.1\r\nHost: a\r\nExpect: the-unexpected\r\n\r\n").0,
            417
        );
        assert!(!ok("PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue);
    }

    #[test]
    fn refusals() {
        let cases: &[(&str, u16, R)] = &[
            ("GET / HTTP/1.1\r\n\r\n", 400, R::Hostname),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                400,
                R::Hostname,
            ),
            ("GET / HTTP/1.1\nHost: a\r\n\r\n", 400, R::InvalidCrLf),
            ("GET / HTTP/1.1\r\nHost: a\n\r\n", 400, R::InvalidCrLf),
            ("GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", 400, R::InvalidCrLf),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
                400,
                R::InvalidCrLf,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
                400,
                R::Header,
            ),
            ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, R::Header),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nNo colon\r\n\r\n",
                400,
                R::Header,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n",
                400,
                R::Header,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
                400,
                R::Header,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n",
                400,
                R::Header,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nX\x01: a\r\n\r\n",
                400,
                R::Header,
            ),
            ("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, R::Verb),
            (" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, R::BadRequest),
            ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, R::Url),
            ("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400, R::BadRequest),
            ("GET /\r\n\r\n", 400, R::BadRequest),
            (
                "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
                505,
                R::VersionNotSupported,
            ),
            ("GET / HTTP/0.9\r\n\r\n", 505, R::VersionNotSupported),
            (
                "GET / HTTP/1.2\r\nHost: a\r\n\r\n",
                505,
                R::VersionNotSupported,
            ),
            ("GET / http/1.1\r\nHost: a\r\n\r\n", 400, R::BadRequest),
            ("GET / HTTP/1\r\nHost: a\r\n\r\n", 400, R::BadRequest),
            ("GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400, R::BadRequest),
            ("GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n", 400, R::Url),
            ("GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", 400, R::Url),
            ("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, R::InvalidCrLf),
        ];
        for (text, status, reason) in cases {
            assert_eq!(err(text), (*status, *reason), "{text:?}");
        }
    }

    #[test]
    fn limits() {
        let limits = Limits::default();
        let long_url = format!(
            "GET /{} HTTP/1.1\r\nHost: a\r\n\r\n",
            "a".repeat(limits.max_field_length)
        );
        assert_eq!(err(&long_url), (414, R::UrlLength));
        // Refused before the line is complete: nothing waits for the end.
        let partial = format!("GET /{}", "a".repeat(limits.max_field_length + 1));
        assert_eq!(err(&partial), (414, R::UrlLength));
        let long_field = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "v".repeat(limits.max_field_length)
        );
        assert_eq!(err(&long_field), (431, R::FieldLength));
        let partial_field = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}",
            "v".repeat(limits.max_field_length + 1)
        );
        assert_eq!(err(&partial_field), (431, R::FieldLength));
        let many = format!(
            "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
            "X-Field: 0123456789\r\n".repeat(1000)
        );
        assert_eq!(err(&many), (431, R::RequestLength));
        let just_fits = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "v".repeat(16_300)
        );
        assert!(ok(&just_fits).headers.len() == 2);
        let verb = format!("{} / HTTP/1.1\r\nHost: a\r\n\r\n", "V".repeat(256));
        assert_eq!(err(&verb), (400, R::Verb));
        let tight = Limits {
            max_request_bytes: 40,
            ..limits
        };
        let e = parse_head(
            b"GET / HTTP/1.1\r\nHost: a\r\nAccept: everything-at-once\r\n\r\n",
            &tight,
        )
        .unwrap_err();
        assert_eq!(e.reason, R::RequestLength);
    }

    #[test]
    fn header_values_are_trimmed_and_may_hold_obs_text() {
        let t =
            "GET / HTTP/1.1\r\nHost:\t example.com \t\r\nX-Latin: caf\u{e9}\r\nX-Empty:\r\n\r\n";
        let h = ok(t);
        assert_eq!(s(t, h.headers[0].1), "example.com");
        assert_eq!(s(t, h.headers[1].1), "caf\u{e9}");
        assert_eq!(s(t, h.headers[2].1), "");
    }
}
