//! URL canonicalisation, as HTTP.SYS does it before routing: the request
//! target and Host become a "cooked" URL (scheme, lower-case host, the port
//! the request arrived on, a decoded and normalised path, the raw query).
//!
//! - `%XX` escapes are decoded, and `%uXXXX` ones when `PercentUAllowed`;
//!   a malformed escape is refused.
//! - The decoded bytes are read as UTF-8 (`FavorUTF8`), falling back to
//!   Windows-1252 when `EnableNonUTF8` allows; overlong UTF-8 (the old
//!   `%c0%af` traversal) is always refused.
//! - NUL is always refused; other control characters (U+0001–U+001F,
//!   U+007F–U+009F) unless `AllowRestrictedChars`.
//! - `\` becomes `/`; `.` and `..` segments are removed after decoding (so
//!   `%2e%2e` counts), and a path climbing above the root is refused.
//! - UrlSegmentMaxLength and UrlSegmentMaxCount bound the result.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::http::{ErrorReason as R, HttpError, Limits};

/// HTTP.SYS's URL registry parameters, with its defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UrlOptions {
    pub enable_non_utf8: bool,
    pub favor_utf8: bool,
    pub percent_u_allowed: bool,
    pub allow_restricted_chars: bool,
}

impl Default for UrlOptions {
    fn default() -> UrlOptions {
        UrlOptions {
            enable_non_utf8: true,
            favor_utf8: true,
            percent_u_allowed: true,
            allow_restricted_chars: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A canonical URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookedUrl {
    pub scheme: Scheme,
    /// Lower case; an IPv6 address in brackets.
    pub host: String,
    /// The port the request arrived on.
    pub port: u16,
    /// Decoded and normalised, starting with `/` (or `*` for `OPTIONS *`).
    pub path: String,
    /// The raw query without its `?` (non-ASCII bytes percent-encoded).
    pub query: String,
}

impl CookedUrl {
    /// `scheme://host:port/path?query`, as handed to applications.
    pub fn full(&self) -> String {
        let mut s = format!(
            "{}://{}:{}{}",
            self.scheme.as_str(),
            self.host,
            self.port,
            self.path
        );
        if !self.query.is_empty() {
            s.push('?');
            s.push_str(&self.query);
        }
        s
    }
}

fn url_error() -> HttpError {
    HttpError::bad_request(R::Url, "Invalid URL")
}

fn host_error() -> HttpError {
    HttpError::bad_request(R::Hostname, "Invalid Hostname")
}

/// What the canonicaliser needs to know about the request.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    pub raw: &'a [u8],
    pub host_header: Option<&'a [u8]>,
    /// Used as the host when an HTTP/1.0 request has no Host.
    pub local_host: &'a str,
    pub scheme: Scheme,
    pub local_port: u16,
    pub is_options: bool,
}

/// Canonicalises a request target.
pub fn canonicalize(
    t: &Target<'_>,
    limits: &Limits,
    options: &UrlOptions,
) -> Result<CookedUrl, HttpError> {
    let (authority, path_and_query) = split_target(t)?;
    let host = match (authority, t.host_header) {
        (Some(authority), host_header) => {
            let from_target = parse_authority(authority, t.scheme)?;
            // RFC 9112 3.2.2 makes the target's authority win; refusing a
            // Host that disagrees closes a routing ambiguity instead.
            if let Some(h) = host_header {
                if parse_authority(h, t.scheme)? != from_target {
                    return Err(host_error());
                }
            }
            from_target.0
        }
        (None, Some(h)) => parse_authority(h, t.scheme)?.0,
        (None, None) => t.local_host.to_ascii_lowercase(),
    };
    if path_and_query == b"*" {
        if !t.is_options {
            return Err(url_error());
        }
        return Ok(CookedUrl {
            scheme: t.scheme,
            host,
            port: t.local_port,
            path: "*".into(),
            query: String::new(),
        });
    }
    let (raw_path, raw_query) = match path_and_query.iter().position(|&b| b == b'?') {
        Some(q) => (&path_and_query[..q], &path_and_query[q + 1..]),
        None => (path_and_query, &b""[..]),
    };
    if raw_path.first() != Some(&b'/') || path_and_query.contains(&b'#') {
        return Err(url_error());
    }
    let decoded = percent_decode(raw_path, options)?;
    let text = to_text(decoded, options)?;
    for c in text.chars() {
        let restricted = ('\u{1}'..='\u{1f}').contains(&c) || ('\u{7f}'..='\u{9f}').contains(&c);
        if c == '\0' || (restricted && !options.allow_restricted_chars) {
            return Err(url_error());
        }
    }
    let text = if text.contains('\\') {
        text.replace('\\', "/")
    } else {
        text
    };
    let path = remove_dot_segments(text)?;
    let mut segments = 0;
    for segment in path[1..].split('/') {
        segments += 1;
        if segments > limits.url_segment_max_count
            || segment.chars().count() > limits.url_segment_max_length
        {
            return Err(url_error());
        }
    }
    Ok(CookedUrl {
        scheme: t.scheme,
        host,
        port: t.local_port,
        path,
        query: encode_query(raw_query),
    })
}

/// Splits absolute-form (`http://authority/path`) from origin-form.
fn split_target<'a>(t: &Target<'a>) -> Result<(Option<&'a [u8]>, &'a [u8]), HttpError> {
    let raw = t.raw;
    let lower_prefix = |p: &[u8]| raw.len() >= p.len() && raw[..p.len()].eq_ignore_ascii_case(p);
    let rest = if lower_prefix(b"http://") {
        &raw[7..]
    } else if lower_prefix(b"https://") {
        &raw[8..]
    } else {
        return Ok((None, raw));
    };
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    let remainder = &rest[end..];
    let path = if remainder.is_empty() {
        &b"/"[..]
    } else {
        remainder
    };
    if path.first() == Some(&b'?') {
        // "http://host?q": the path is empty; refuse rather than guess.
        return Err(url_error());
    }
    Ok((Some(authority), path))
}

/// Parses `host[:port]` into (lower-case host, port).
fn parse_authority(raw: &[u8], scheme: Scheme) -> Result<(String, u16), HttpError> {
    let text = std::str::from_utf8(raw).map_err(|_| host_error())?;
    if text.contains('@') || text.is_empty() {
        return Err(host_error());
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let close = rest.find(']').ok_or_else(host_error)?;
        let addr: Ipv6Addr = rest[..close].parse().map_err(|_| host_error())?;
        let after = &rest[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(host_error()),
        };
        (format!("[{addr}]"), port)
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (text.to_string(), None),
        }
    };
    let port = match port {
        None => scheme.default_port(),
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse::<u16>().map_err(|_| host_error())?
        }
        Some("") => scheme.default_port(),
        Some(_) => return Err(host_error()),
    };
    let mut host = host;
    if !host.starts_with('[') {
        let valid = !host.is_empty()
            && host.len() <= 255
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            && !host.starts_with('.')
            && !host.as_bytes().windows(2).any(|pair| pair == b"..");
        if !valid {
            return Err(host_error());
        }
        if host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && host.parse::<Ipv4Addr>().is_err()
        {
            return Err(host_error());
        }
    }
    host.make_ascii_lowercase();
    Ok((host, port))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` and (when allowed) `%uXXXX` escapes. A `%u` escape is a
/// UTF-16 code unit; surrogates must pair.
fn percent_decode(raw: &[u8], options: &UrlOptions) -> Result<Vec<u8>, HttpError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    let mut pending_high: Option<u16> = None;
    while i < raw.len() {
        let b = raw[i];
        if b != b'%' {
            if pending_high.is_some() {
                return Err(url_error());
            }
            out.push(b);
            i += 1;
            continue;
        }
        if matches!(raw.get(i + 1), Some(b'u' | b'U')) {
            if !options.percent_u_allowed {
                return Err(url_error());
            }
            let digits = raw.get(i + 2..i + 6).ok_or_else(url_error)?;
            let mut unit = 0u16;
            for &d in digits {
                unit = (unit << 4) | u16::from(hex(d).ok_or_else(url_error)?);
            }
            i += 6;
            match (pending_high.take(), unit) {
                (None, 0xD800..=0xDBFF) => pending_high = Some(unit),
                (None, 0xDC00..=0xDFFF) => return Err(url_error()),
                (None, u) => push_char(&mut out, u32::from(u))?,
                (Some(high), 0xDC00..=0xDFFF) => {
                    let c =
                        0x10000 + ((u32::from(high) - 0xD800) << 10) + (u32::from(unit) - 0xDC00);
                    push_char(&mut out, c)?;
                }
                (Some(_), _) => return Err(url_error()),
            }
            continue;
        }
        if pending_high.is_some() {
            return Err(url_error());
        }
        let hi = raw
            .get(i + 1)
            .copied()
            .and_then(hex)
            .ok_or_else(url_error)?;
        let lo = raw
            .get(i + 2)
            .copied()
            .and_then(hex)
            .ok_or_else(url_error)?;
        out.push((hi << 4) | lo);
        i += 3;
    }
    if pending_high.is_some() {
        return Err(url_error());
    }
    Ok(out)
}

fn push_char(out: &mut Vec<u8>, code: u32) -> Result<(), HttpError> {
    let c = char::from_u32(code).ok_or_else(url_error)?;
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    Ok(())
}

/// True when `bytes` hold an overlong UTF-8 encoding (a character written
/// with more bytes than it needs), the classic way to smuggle `/` or `.`.
fn has_overlong_utf8(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| {
        matches!(
            (w[0], w[1]),
            (0xC0 | 0xC1, _) | (0xE0, 0x80..=0x9F) | (0xF0, 0x80..=0x8F)
        )
    }) || bytes.last().is_some_and(|&b| b == 0xC0 || b == 0xC1)
}

/// Windows-1252's characters for bytes 0x80–0x9F (the rest of the range
/// is Latin-1); undefined bytes keep their Latin-1 control character.
const CP1252_HIGH: [u32; 32] = [
    0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039,
    0x0152, 0x8D, 0x017D, 0x8F, 0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
    0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
];

fn from_cp1252(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            0x80..=0x9F => char::from_u32(CP1252_HIGH[usize::from(b - 0x80)]).unwrap_or('\u{FFFD}'),
            _ => char::from(b),
        })
        .collect()
}

fn to_text(decoded: Vec<u8>, options: &UrlOptions) -> Result<String, HttpError> {
    if has_overlong_utf8(&decoded) {
        return Err(url_error());
    }
    if decoded.is_ascii() {
        return String::from_utf8(decoded).map_err(|_| url_error());
    }
    if !options.favor_utf8 && options.enable_non_utf8 {
        return Ok(from_cp1252(&decoded));
    }
    match String::from_utf8(decoded) {
        Ok(s) => Ok(s),
        Err(e) if options.enable_non_utf8 => Ok(from_cp1252(e.as_bytes())),
        Err(_) => Err(url_error()),
    }
}

/// RFC 3986 5.2.4 on a decoded absolute path; climbing above the root is
/// an error rather than being clamped.
fn remove_dot_segments(path: String) -> Result<String, HttpError> {
    // Most paths have none: they stay as they are.
    if !path[1..].split('/').any(|s| s == "." || s == "..") {
        return Ok(path);
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    let mut trailing_slash = false;
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." => trailing_slash = i == last,
            ".." => {
                if out.pop().is_none() {
                    return Err(url_error());
                }
                trailing_slash = i == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut result = String::with_capacity(path.len());
    for s in &out {
        result.push('/');
        result.push_str(s);
    }
    if result.is_empty() || trailing_slash {
        result.push('/');
    }
    Ok(result)
}

fn encode_query(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for &b in raw {
        if b.is_ascii() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cook_with(
        raw: &str,
        host: Option<&str>,
        options: UrlOptions,
    ) -> Result<CookedUrl, HttpError> {
        canonicalize(
            &Target {
                raw: raw.as_bytes(),
                host_header: host.map(str::as_bytes),
                local_host: "127.0.0.1",
                scheme: Scheme::Http,
                local_port: 8080,
                is_options: false,
            },
            &Limits::default(),
            &options,
        )
    }

    fn cook(raw: &str) -> Result<CookedUrl, HttpError> {
        cook_with(raw, Some("Example.COM"), UrlOptions::default())
    }

    fn path(raw: &str) -> String {
        cook(raw).unwrap_or_else(|e| panic!("{raw}: {e}")).path
    }

    #[test]
    fn cooked_urls() {
        let c = cook("/a/b?x=%41&y").unwrap();
        assert_eq!(c.full(), "http://example.com:8080/a/b?x=%41&y");
        assert_eq!(c.query, "x=%41&y");
        assert_eq!(path("/"), "/");
        assert_eq!(path("/caf%C3%A9"), "/café");
        assert_eq!(path("/caf\u{e9}"), "/café");
        assert_eq!(path("/a%20b"), "/a b");
        assert_eq!(path("/a%2Fb"), "/a/b");
        assert_eq!(path("/%u0041%u00e9"), "/Aé");
        assert_eq!(path("/%uD83D%uDE00"), "/\u{1F600}");
        assert_eq!(path("/a\\b"), "/a/b");
        assert_eq!(path("/a//b"), "/a//b");
    }

    #[test]
    fn dot_segments() {
        assert_eq!(path("/a/./b"), "/a/b");
        assert_eq!(path("/a/b/../c"), "/a/c");
        assert_eq!(path("/a/b/.."), "/a/");
        assert_eq!(path("/a/."), "/a/");
        assert_eq!(path("/a/%2e%2E/b"), "/b");
        assert_eq!(path("/a/.%2e/b"), "/b");
        assert_eq!(path("/a\\..\\b"), "/b");
    }

    #[test]
    fn refusals() {
        for raw in [
            "/..",
            "/../etc/passwd",
            "/a/../../b",
            "/%2e%2e/x",
            "/a%00b",
            "/a%01b",
            "/a%7Fb",
            "/a%C2%85b",
            "/%c0%af",
            "/%c0%ae%c0%ae/x",
            "/%e0%80%af",
            "/%f0%80%80%af",
            "/a%zz",
            "/a%4",
            "/a%",
            "/%u00",
            "/%uD83D",
            "/%uDE00",
            "/%uD83Dx",
            "/a#frag",
            "a/b",
            "*",
            "",
        ] {
            let e = cook(raw).unwrap_err();
            assert_eq!((e.status, e.reason), (400, R::Url), "{raw:?}");
        }
    }

    #[test]
    fn the_non_utf8_options() {
        // Latin-1 bytes that are not UTF-8.
        assert_eq!(path("/caf%E9"), "/café");
        assert_eq!(path("/%80"), "/€");
        let strict = UrlOptions {
            enable_non_utf8: false,
            ..UrlOptions::default()
        };
        assert!(cook_with("/caf%E9", Some("a"), strict).is_err());
        assert_eq!(
            cook_with("/caf%C3%A9", Some("a"), strict).unwrap().path,
            "/café"
        );
        let ansi_first = UrlOptions {
            favor_utf8: false,
            ..UrlOptions::default()
        };
        assert_eq!(
            cook_with("/caf%C3%A9", Some("a"), ansi_first).unwrap().path,
            "/cafÃ©"
        );
        let no_u = UrlOptions {
            percent_u_allowed: false,
            ..UrlOptions::default()
        };
        assert!(cook_with("/%u0041", Some("a"), no_u).is_err());
        let restricted = UrlOptions {
            allow_restricted_chars: true,
            ..UrlOptions::default()
        };
        assert_eq!(
            cook_with("/a%01b", Some("a"), restricted).unwrap().path,
            "/a\u{1}b"
        );
        assert!(
            cook_with("/a%00b", Some("a"), restricted).is_err(),
            "NUL never passes"
        );
    }

    #[test]
    fn hosts() {
        assert_eq!(
            cook_with("/", Some("[::1]:8080"), UrlOptions::default())
                .unwrap()
                .host,
            "[::1]"
        );
        assert_eq!(
            cook_with("/", Some("10.0.0.1"), UrlOptions::default())
                .unwrap()
                .host,
            "10.0.0.1"
        );
        assert_eq!(
            cook_with("/", None, UrlOptions::default()).unwrap().host,
            "127.0.0.1"
        );
        for bad in [
            "",
            "a b",
            "a@b",
            "[::1",
            "[zz]",
            "a:port",
            "a:99999",
            "a:-1",
            "..",
            ".a",
            "300.1.1.1",
            "a/b",
            "é",
        ] {
            let e = cook_with("/", Some(bad), UrlOptions::default()).unwrap_err();
            assert_eq!(e.reason, R::Hostname, "{bad:?}");
        }
        // Absolute-form: the target's authority, which Host must match.
        let c = cook_with(
            "http://Example.com/x",
            Some("example.com"),
            UrlOptions::default(),
        )
        .unwrap();
        assert_eq!((c.host.as_str(), c.path.as_str()), ("example.com", "/x"));
        assert_eq!(
            cook_with("HTTP://a:80", Some("a"), UrlOptions::default())
                .unwrap()
                .path,
            "/"
        );
        let e = cook_with(
            "http://evil.com/x",
            Some("example.com"),
            UrlOptions::default(),
        )
        .unwrap_err();
        assert_eq!(e.reason, R::Hostname);
        assert!(cook_with("http://user@a/x", Some("a"), UrlOptions::default()).is_err());
        assert!(cook_with("http://a?x", Some("a"), UrlOptions::default()).is_err());
    }

    #[test]
    fn segment_limits() {
        let limits = Limits::default();
        let long = format!("/{}", "a".repeat(261));
        assert!(cook(&long).is_err());
        assert!(cook(&format!("/{}", "a".repeat(260))).is_ok());
        // Characters, not bytes, are counted.
        assert!(cook(&format!("/{}", "é".repeat(260))).is_ok());
        let many = "/a".repeat(limits.url_segment_max_count + 1);
        assert!(cook(&many).is_err());
        assert!(cook(&"/a".repeat(limits.url_segment_max_count)).is_ok());
    }

    #[test]
    fn options_star() {
        let c = canonicalize(
            &Target {
                raw: b"*",
                host_header: Some(b"a"),
                local_host: "127.0.0.1",
                scheme: Scheme::Http,
                local_port: 80,
                is_options: true,
            },
            &Limits::default(),
            &UrlOptions::default(),
        )
        .unwrap();
        assert_eq!(c.path, "*");
    }

    #[test]
    fn raw_query_bytes_survive() {
        assert_eq!(cook("/a?q=caf\u{e9}").unwrap().query, "q=caf%C3%A9");
    }
}
