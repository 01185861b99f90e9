//! The properties the fuzz targets check, shared with the test suite that
//! replays the fuzz corpus. Each panics on a violation.

use crate::http::{parse_head, ChunkedDecoder, Framing, Limits, Step};
use crate::url::{canonicalize, Scheme, Target, UrlOptions};

/// The request-head parser: any input parses, asks for more, or is
/// refused; a parsed head's ranges lie within what it consumed, and its
/// framing is never ambiguous. Whatever parsed canonicalises or is
/// refused, never panics.
pub fn http_head(data: &[u8]) {
    let limits = Limits::default();
    let head = match parse_head(data, &limits) {
        Ok(Some(head)) => head,
        Ok(None) => {
            assert!(
                data.len() <= limits.max_request_bytes + 8,
                "kept waiting past the limits"
            );
            return;
        }
        Err(e) => {
            assert!(
                [400, 414, 417, 431, 501, 505].contains(&e.status),
                "status {}",
                e.status
            );
            return;
        }
    };
    assert!(head.len <= data.len());
    assert!(head.len <= limits.max_request_bytes + 2 + 16);
    for (lo, hi) in [head.method, head.target]
        .into_iter()
        .chain(head.headers.iter().flat_map(|(n, v)| [*n, *v]))
    {
        assert!(lo <= hi && hi <= head.len);
    }
    let has = |name: &[u8]| {
        head.headers
            .iter()
            .filter(|((lo, hi), _)| data[*lo..*hi].eq_ignore_ascii_case(name))
            .count()
    };
    if head.framing == Framing::Chunked {
        assert_eq!(has(b"content-length"), 0, "chunked with a Content-Length");
    }
    assert!(
        has(b"content-length") <= 1,
        "several Content-Lengths accepted"
    );
    let host = head
        .host
        .map(|i| &data[head.headers[i].1 .0..head.headers[i].1 .1]);
    let _ = canonicalize(
        &Target {
            raw: &data[head.target.0..head.target.1],
            host_header: host,
            local_host: "127.0.0.1",
            scheme: Scheme::Http,
            local_port: 80,
            is_options: &data[head.method.0..head.method.1] == b"OPTIONS",
        },
        &limits,
        &UrlOptions::default(),
    );
}

/// The chunked decoder, fed the input in pieces of every size: it never
/// consumes more than it is given, never yields data outside its input,
/// and gives the same body whatever the pieces.
pub fn chunked(data: &[u8]) {
    let mut bodies = Vec::new();
    for piece in [1usize, 3, 64, data.len().max(1)] {
        let mut decoder = ChunkedDecoder::new(4096, 1024);
        let mut buf: Vec<u8> = Vec::new();
        let mut body = Vec::new();
        let mut fed = 0;
        let mut outcome = None;
        'feed: while fed < data.len() || !buf.is_empty() {
            let end = (fed + piece).min(data.len());
            buf.extend_from_slice(&data[fed..end]);
            fed = end;
            loop {
                match decoder.decode(&buf) {
                    Ok(Step::Data {
                        start,
                        end,
                        consumed,
                    }) => {
                        assert!(start <= end && end <= consumed && consumed <= buf.len());
                        body.extend_from_slice(&buf[start..end]);
                        buf.drain(..consumed);
                    }
                    Ok(Step::NeedMore { consumed }) => {
                        assert!(consumed <= buf.len());
                        buf.drain(..consumed);
                        if fed == data.len() {
                            break 'feed;
                        }
                        break;
                    }
                    Ok(Step::End { consumed, .. }) => {
                        assert!(consumed <= buf.len());
                        outcome = Some(Ok(body.clone()));
                        break 'feed;
                    }
                    Err(e) => {
                        outcome = Some(Err(e.status));
                        break 'feed;
                    }
                }
            }
        }
        bodies.push(outcome);
    }
    // Complete bodies agree whatever the piece size.
    let complete: Vec<_> = bodies
        .iter()
        .flatten()
        .filter_map(|o| o.as_ref().ok())
        .collect();
    assert!(
        complete.windows(2).all(|w| w[0] == w[1]),
        "the body depends on how it arrived"
    );
}

/// URL canonicalisation: any target is canonicalised or refused; a cooked
/// path starts with `/`, holds no `.` or `..` segment, no NUL or control
/// character, no backslash, and respects the segment limits.
pub fn url(data: &[u8]) {
    let limits = Limits::default();
    for options in [
        UrlOptions::default(),
        UrlOptions {
            enable_non_utf8: false,
            percent_u_allowed: false,
            ..UrlOptions::default()
        },
    ] {
        let Ok(url) = canonicalize(
            &Target {
                raw: data,
                host_header: Some(b"fuzz.example"),
                local_host: "127.0.0.1",
                scheme: Scheme::Http,
                local_port: 80,
                is_options: false,
            },
            &limits,
            &options,
        ) else {
            continue;
        };
        assert!(url.path.starts_with('/'), "{:?}", url.path);
        assert!(!url.path.contains('\\'));
        assert!(
            !url.path.chars().any(|c| c == '\0' || c.is_control()),
            "{:?}",
            url.path
        );
        let segments: Vec<&str> = url.path[1..].split('/').collect();
        assert!(
            !segments.iter().any(|s| *s == "." || *s == ".."),
            "{:?}",
            url.path
        );
        assert!(segments.len() <= limits.url_segment_max_count);
        assert!(segments
            .iter()
            .all(|s| s.chars().count() <= limits.url_segment_max_length));
    }
}
