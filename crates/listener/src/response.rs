//! Writing responses: the listener's own error pages, and the head of an
//! application's response. The listener owns framing: whatever the
//! application says, Content-Length, Transfer-Encoding and Connection are
//! written by the listener to match how the body is actually sent.

use std::cell::RefCell;
use std::time::UNIX_EPOCH;

use httpapi::proto::{ResponseBody, ResponseHead};

use crate::http::{status_text_for, HttpError, Version};

pub const SERVER: &str = "inetsrv";

/// Appends `Date: <now>\r\n`; the value is formatted once a second per
/// thread.
pub fn push_date(out: &mut Vec<u8>) {
    thread_local! {
        static CACHE: RefCell<(u64, [u8; 29])> = const { RefCell::new((0, [0; 29])) };
    }
    // The kernel's coarse clock (its last tick, read without the TSC) is
    // exact enough for a value in whole seconds.
    let secs = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME_COARSE)
        .ok()
        .and_then(|t| u64::try_from(t.tv_sec()).ok())
        .unwrap_or(0);
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            let text = httpapi::dates::http_date(UNIX_EPOCH + std::time::Duration::from_secs(secs));
            if text.len() == 29 {
                c.1.copy_from_slice(text.as_bytes());
                c.0 = secs;
            }
        }
        out.extend_from_slice(b"Date: ");
        out.extend_from_slice(&c.1);
        out.extend_from_slice(b"\r\n");
    })
}

/// The current `Date` value as text.
pub fn http_date() -> String {
    let mut line = Vec::with_capacity(37);
    push_date(&mut line);
    String::from_utf8_lossy(&line[6..line.len() - 2]).into_owned()
}

/// The page HTTP.SYS sends with the errors it answers itself.
pub fn error_response(error: &HttpError, head_only: bool) -> Vec<u8> {
    let title = error.status_text();
    let heading = if error.detail == title {
        title.to_string()
    } else {
        format!("{title} - {}", error.detail)
    };
    let body = format!(
        "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01//EN\"\"http://www.w3.org/TR/html4/strict.dtd\">\r\n\
         <HTML><HEAD><TITLE>{title}</TITLE>\r\n\
         <META HTTP-EQUIV=\"Content-Type\" Content=\"text/html; charset=us-ascii\"></HEAD>\r\n\
         <BODY><h2>{heading}</h2>\r\n<hr><p>HTTP Error {status}. {explanation}</p>\r\n</BODY></HTML>\r\n",
        status = error.status,
        explanation = explanation(error.status),
    );
    let mut out = format!(
        "{} {} {title}\r\nContent-Type: text/html; charset=us-ascii\r\nServer: {SERVER}\r\nDate: {}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        // HTTP/1.0 clients get an HTTP/1.1 status line too: RFC 9110
        // 6.2 allows it, and HTTP.SYS does it.
        Version::Http11.as_str(),
        error.status,
        http_date(),
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

fn explanation(status: u16) -> &'static str {
    match status {
        400 => "The request is badly formed.",
        404 => "The requested resource is not found.",
        413 => "The request entity is too large.",
        414 => "The request URL is too long.",
        417 => "The expectation given in the Expect header could not be met.",
        431 => "The request header fields are too large.",
        501 => "The request uses a feature the server does not implement.",
        503 => "The service is unavailable.",
        505 => "The request has an unsupported HTTP version.",
        _ => "The request could not be served.",
    }
}

/// How the body of an application's response goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireBody {
    /// No body bytes are written (HEAD, 204, 304).
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (a streamed body to an HTTP/1.0 client).
    UntilClose,
}

/// Headers the application may not set: the listener frames the message.
fn is_framing_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("content-length")
        || name.eq_ignore_ascii_case("transfer-encoding")
        || name.eq_ignore_ascii_case("connection")
        || name.eq_ignore_ascii_case("keep-alive")
}

/// Checks an application's response head; `Err` describes what is wrong.
pub fn validate_head(head: &ResponseHead) -> Result<(), String> {
    httpapi::proto::validate_response_head(head)
}

/// Appends the status line and the application's fields (framing fields
/// left out, and Date too when `skip_date`), then Server if the
/// application gave none. Returns whether the application gave a Date.
pub fn push_status_and_fields(head: &ResponseHead, skip_date: bool, out: &mut Vec<u8>) -> bool {
    let reason = head
        .reason
        .as_deref()
        .unwrap_or_else(|| status_text_for(head.status));
    // Written in place: no String per response, no formatting machinery.
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(head.status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut has_server = false;
    let mut has_date = false;
    for (name, value) in head.headers.iter().filter(|(n, _)| !is_framing_header(n)) {
        let is_date = name.eq_ignore_ascii_case("date");
        has_date |= is_date;
        if is_date && skip_date {
            continue;
        }
        has_server |= name.eq_ignore_ascii_case("server");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if !has_server {
        out.extend_from_slice(b"Server: ");
        out.extend_from_slice(SERVER.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    has_date
}

/// How a written response head frames what follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framed {
    pub body: WireBody,
    /// Whether the connection stays open after this response.
    pub keep_alive: bool,
}

/// Serialises an application's response head into `out`.
pub fn write_head(
    head: &ResponseHead,
    version: Version,
    head_request: bool,
    keep_alive: bool,
    out: &mut Vec<u8>,
) -> Framed {
    let bodyless_status = head.status == 204 || head.status == 304;
    let wire = match (head.body, version) {
        _ if bodyless_status => WireBody::None,
        (ResponseBody::Empty, _) => WireBody::Length(0),
        (ResponseBody::Length(n), _) => WireBody::Length(n),
        (ResponseBody::Streamed, Version::Http11) => WireBody::Chunked,
        (ResponseBody::Streamed, Version::Http10) => WireBody::UntilClose,
    };
    let keep_alive = keep_alive && wire != WireBody::UntilClose;
    let has_date = push_status_and_fields(head, false, out);
    if !has_date {
        push_date(out);
    }
    match wire {
        WireBody::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        WireBody::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        WireBody::None | WireBody::UntilClose => {}
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if version == Version::Http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Framed {
        body: if head_request || bodyless_status {
            WireBody::None
        } else {
            wire
        },
        keep_alive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ErrorReason;
    use httpapi::proto::Header;

    fn head(status: u16, body: ResponseBody, headers: Vec<Header>) -> ResponseHead {
        ResponseHead {
            status,
            reason: None,
            headers: headers
                .iter()
                .map(|h| (h.name.as_str(), h.value.as_slice()))
                .collect(),
            body,
            cache: None,
            log: None,
        }
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn error_pages() {
        let e = HttpError::bad_request(ErrorReason::Url, "Invalid URL");
        let page = text(&error_response(&e, false));
        assert!(page.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(page.contains("Connection: close\r\n"));
        assert!(page.contains("<h2>Bad Request - Invalid URL</h2>"));
        let (head, body) = page.split_once("\r\n\r\n").unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, body.len());
        let head_only = text(&error_response(&e, true));
        assert!(head_only.ends_with("\r\n\r\n"));
    }

    #[test]
    fn the_listener_frames_responses() {
        let mut out = Vec::new();
        let h = head(
            200,
            ResponseBody::Length(5),
            vec![
                Header::new("Content-Length", "999"),
                Header::new("Connection", "upgrade"),
                Header::new("X-App", "1"),
            ],
        );
        assert_eq!(
            write_head(&h, Version::Http11, false, true, &mut out).body,
            WireBody::Length(5)
        );
        let t = text(&out);
        assert!(t.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(t.contains("X-App: 1\r\n") && t.contains("Content-Length: 5\r\n"));
        assert!(!t.contains("999") && !t.contains("upgrade"));
        assert!(t.contains("Server: inetsrv\r\n") && t.contains("Date: "));

        out.clear();
        let streamed = head(200, ResponseBody::Streamed, vec![]);
        assert_eq!(
            write_head(&streamed, Version::Http11, false, true, &mut out).body,
            WireBody::Chunked
        );
        assert!(text(&out).contains("Transfer-Encoding: chunked\r\n"));
        out.clear();
        let framed = write_head(&streamed, Version::Http10, false, true, &mut out);
        assert_eq!(
            (framed.body, framed.keep_alive),
            (WireBody::UntilClose, false)
        );
        assert!(text(&out).contains("Connection: close\r\n"));
        out.clear();
        let ka10 = head(200, ResponseBody::Length(0), vec![]);
        write_head(&ka10, Version::Http10, false, true, &mut out);
        assert!(text(&out).contains("Connection: keep-alive\r\n"));
        out.clear();
        assert_eq!(
            write_head(&h, Version::Http11, true, true, &mut out).body,
            WireBody::None
        );
        assert!(
            text(&out).contains("Content-Length: 5\r\n"),
            "HEAD keeps the length"
        );
        out.clear();
        let not_modified = head(304, ResponseBody::Length(10), vec![]);
        assert_eq!(
            write_head(&not_modified, Version::Http11, false, true, &mut out).body,
            WireBody::None
        );
        assert!(!text(&out).contains("Content-Length"));
    }

    #[test]
    fn invalid_application_heads() {
        assert!(validate_head(&head(100, ResponseBody::Empty, vec![])).is_err());
        assert!(validate_head(&head(
            200,
            ResponseBody::Empty,
            vec![Header::new("X", "a\r\nInjected: 1")]
        ))
        .is_err());
        assert!(validate_head(&head(
            200,
            ResponseBody::Empty,
            vec![Header::new("Bad Name", "x")]
        ))
        .is_err());
        let mut h = head(200, ResponseBody::Empty, vec![]);
        h.reason = Some("OK\r\nX: y".into());
        assert!(validate_head(&h).is_err());
        assert!(validate_head(&head(
            404,
            ResponseBody::Empty,
            vec![Header::new("X", "fine")]
        ))
        .is_ok());
    }
}
