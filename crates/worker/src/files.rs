//! Static files: validators (ETag, Last-Modified), conditional requests
//! (RFC 9110 13) and byte ranges (RFC 9110 14), as pure decisions that
//! the pipeline turns into responses.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the pipeline knows of a file to serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileInfo {
    pub len: u64,
    pub modified: SystemTime,
    /// The content coding of a compressed representation (its ETag
    /// differs from the plain file's).
    pub variant: Option<&'static str>,
}

impl FileInfo {
    /// A strong validator from the modification time and the size.
    pub fn etag(&self) -> String {
        let nanos = self
            .modified
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        // "nanos:len[-coding]" in hex, written directly (every static
        // response carries one).
        let mut out = String::with_capacity(48);
        out.push('"');
        push_hex(&mut out, nanos);
        out.push(':');
        push_hex(&mut out, u128::from(self.len));
        if let Some(coding) = self.variant {
            out.push('-');
            out.push_str(coding);
        }
        out.push('"');
        out
    }

    /// Last-Modified, to the second (HTTP dates have no finer grain).
    pub fn last_modified(&self) -> SystemTime {
        let secs = self
            .modified
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        UNIX_EPOCH + Duration::from_secs(secs)
    }
}

/// `n` in lower-case hexadecimal, without leading zeros.
fn push_hex(out: &mut String, n: u128) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 32];
    let mut at = buf.len();
    let mut n = n;
    loop {
        at -= 1;
        buf[at] = DIGITS[(n & 15) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    for &b in &buf[at..] {
        out.push(char::from(b));
    }
}

/// The request fields conditional handling reads.
#[derive(Clone, Copy, Debug, Default)]
pub struct Conditions<'a> {
    pub if_match: Option<&'a str>,
    pub if_none_match: Option<&'a str>,
    pub if_modified_since: Option<&'a str>,
    pub if_unmodified_since: Option<&'a str>,
    pub range: Option<&'a str>,
    pub if_range: Option<&'a str>,
}

/// What preconditions decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Serve the representation (whole, or the ranges).
    Proceed,
    NotModified,
    Failed,
}

fn etag_matches(list: &str, etag: &str, weak: bool) -> bool {
    let strip = |t: &str| -> String { t.trim().trim_start_matches("W/").to_string() };
    list.split(',').map(str::trim).any(|candidate| {
        candidate == "*"
            || if weak {
                strip(candidate) == strip(etag)
            } else {
                !candidate.starts_with("W/") && candidate == etag
            }
    })
}

fn parse_date(text: &str) -> Option<SystemTime> {
    httpapi::dates::parse_http_date(text)
}

/// RFC 9110 13.2.2: the order preconditions are evaluated in.
pub fn evaluate(c: &Conditions<'_>, file: &FileInfo, safe_method: bool) -> Precondition {
    let etag = file.etag();
    let modified = file.last_modified();
    if let Some(list) = c.if_match {
        if !etag_matches(list, &etag, false) {
            return Precondition::Failed;
        }
    } else if let Some(date) = c.if_unmodified_since.and_then(parse_date) {
        if modified > date {
            return Precondition::Failed;
        }
    }
    if let Some(list) = c.if_none_match {
        if etag_matches(list, &etag, true) {
            return if safe_method {
                Precondition::NotModified
            } else {
                Precondition::Failed
            };
        }
    } else if safe_method {
        if let Some(date) = c.if_modified_since.and_then(parse_date) {
            if modified <= date {
                return Precondition::NotModified;
            }
        }
    }
    Precondition::Proceed
}

/// What a Range header asks for, against a representation of `len` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ranges {
    /// Send the whole representation (no Range, an If-Range that does not
    /// match, or a Range this server ignores).
    Whole,
    /// Send these (inclusive) byte ranges.
    Parts(Vec<(u64, u64)>),
    /// 416: nothing in the Range is within the representation.
    Unsatisfiable,
}

/// The most ranges served in one response; more is a sign of abuse and is
/// answered with the whole representation.
const MAX_RANGES: usize = 16;

/// RFC 9110 14.2 and 13.1.5: interprets Range and If-Range.
pub fn ranges(c: &Conditions<'_>, file: &FileInfo) -> Ranges {
    let Some(range) = c.range else {
        return Ranges::Whole;
    };
    if let Some(if_range) = c.if_range {
        let if_range = if_range.trim();
        let still_valid = if if_range.starts_with('"') {
            if_range == file.etag()
        } else {
            parse_date(if_range) == Some(file.last_modified())
        };
        if !still_valid {
            return Ranges::Whole;
        }
    }
    let Some(spec) = range.trim().strip_prefix("bytes=") else {
        return Ranges::Whole;
    };
    let len = file.len;
    let mut parts = Vec::new();
    for item in spec.split(',') {
        let item = item.trim();
        let Some((first, last)) = item.split_once('-') else {
            return Ranges::Whole;
        };
        let digits =
            |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.len() <= 19;
        let part = match (first.trim(), last.trim()) {
            (f, "") if digits(f) => {
                let f: u64 = f.parse().unwrap_or(u64::MAX);
                (f < len).then(|| (f, len - 1))
            }
            ("", l) if digits(l) => {
                let n: u64 = l.parse().unwrap_or(u64::MAX);
                (n > 0 && len > 0).then(|| (len.saturating_sub(n), len - 1))
            }
            (f, l) if digits(f) && digits(l) => {
                let (f, l): (u64, u64) = (f.parse().unwrap_or(u64::MAX), l.parse().unwrap_or(0));
                if l < f {
                    return Ranges::Whole;
                }
                (f < len).then(|| (f, l.min(len - 1)))
            }
            _ => return Ranges::Whole,
        };
        if let Some(p) = part {
            parts.push(p);
        }
    }
    if parts.is_empty() {
        return Ranges::Unsatisfiable;
    }
    if parts.len() > MAX_RANGES {
        return Ranges::Whole;
    }
    parts.sort_unstable();
    // Overlapping or adjacent ranges are served as one.
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(parts.len());
    for (f, l) in parts {
        match merged.last_mut() {
            Some(last) if f <= last.1.saturating_add(1) => last.1 = last.1.max(l),
            _ => merged.push((f, l)),
        }
    }
    Ranges::Parts(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> FileInfo {
        FileInfo {
            len: 1000,
            modified: UNIX_EPOCH + Duration::from_secs(1_795_000_000) + Duration::from_millis(250),
            variant: None,
        }
    }

    const LM: &str = "Wed, 18 Nov 2026 11:06:40 GMT";

    #[test]
    fn validators() {
        let f = file();
        assert_eq!(httpapi::dates::http_date(f.last_modified()), LM);
        assert!(f.etag().starts_with('"') && f.etag().ends_with(":3e8\""));
        let other = FileInfo { len: 1001, ..f };
        assert_ne!(f.etag(), other.etag(), "size changes the ETag");
        let gzip = FileInfo {
            variant: Some("gzip"),
            ..f
        };
        assert!(gzip.etag().ends_with(":3e8-gzip\""));
        for n in [0u128, 1, 15, 16, 0xabc, u128::from(u64::MAX), u128::MAX] {
            let mut out = String::new();
            push_hex(&mut out, n);
            assert_eq!(out, format!("{n:x}"));
        }
    }

    #[test]
    fn preconditions() {
        let f = file();
        let etag = f.etag();
        let eval = |c: Conditions| evaluate(&c, &f, true);
        assert_eq!(eval(Conditions::default()), Precondition::Proceed);
        assert_eq!(
            eval(Conditions {
                if_none_match: Some(&etag),
                ..Default::default()
            }),
            Precondition::NotModified
        );
        assert_eq!(
            eval(Conditions {
                if_none_match: Some("\"x\", *"),
                ..Default::default()
            }),
            Precondition::NotModified
        );
        assert_eq!(
            eval(Conditions {
                if_none_match: Some(&format!("W/{etag}")),
                ..Default::default()
            }),
            Precondition::NotModified
        );
        assert_eq!(
            eval(Conditions {
                if_none_match: Some("\"x\""),
                ..Default::default()
            }),
            Precondition::Proceed
        );
        assert_eq!(
            eval(Conditions {
                if_modified_since: Some(LM),
                ..Default::default()
            }),
            Precondition::NotModified
        );
        assert_eq!(
            eval(Conditions {
                if_modified_since: Some("Tue, 17 Nov 2026 00:00:00 GMT"),
                ..Default::default()
            }),
            Precondition::Proceed
        );
        assert_eq!(
            eval(Conditions {
                if_modified_since: Some("garbage"),
                ..Default::default()
            }),
            Precondition::Proceed
        );
        // If-None-Match wins over If-Modified-Since.
        assert_eq!(
            eval(Conditions {
                if_none_match: Some("\"x\""),
                if_modified_since: Some(LM),
                ..Default::default()
            }),
            Precondition::Proceed
        );
        assert_eq!(
            eval(Conditions {
                if_match: Some("\"x\""),
                ..Default::default()
            }),
            Precondition::Failed
        );
        assert_eq!(
            eval(Conditions {
                if_match: Some(&format!("W/{etag}")),
                ..Default::default()
            }),
            Precondition::Failed,
            "If-Match is strong"
        );
        assert_eq!(
            eval(Conditions {
                if_match: Some(&etag),
                ..Default::default()
            }),
            Precondition::Proceed
        );
        assert_eq!(
            eval(Conditions {
                if_unmodified_since: Some("Tue, 17 Nov 2026 00:00:00 GMT"),
                ..Default::default()
            }),
            Precondition::Failed
        );
        assert_eq!(
            evaluate(
                &Conditions {
                    if_none_match: Some(&etag),
                    ..Default::default()
                },
                &f,
                false
            ),
            Precondition::Failed
        );
    }

    #[test]
    fn byte_ranges() {
        let f = file();
        let r = |range: &str| {
            ranges(
                &Conditions {
                    range: Some(range),
                    ..Default::default()
                },
                &f,
            )
        };
        assert_eq!(r("bytes=0-99"), Ranges::Parts(vec![(0, 99)]));
        assert_eq!(r("bytes=900-"), Ranges::Parts(vec![(900, 999)]));
        assert_eq!(r("bytes=-100"), Ranges::Parts(vec![(900, 999)]));
        assert_eq!(r("bytes=-5000"), Ranges::Parts(vec![(0, 999)]));
        assert_eq!(r("bytes=990-2000"), Ranges::Parts(vec![(990, 999)]));
        assert_eq!(r("bytes=0-9, 20-29"), Ranges::Parts(vec![(0, 9), (20, 29)]));
        assert_eq!(
            r("bytes=20-29,0-9,5-15"),
            Ranges::Parts(vec![(0, 15), (20, 29)])
        );
        assert_eq!(r("bytes=1000-"), Ranges::Unsatisfiable);
        assert_eq!(r("bytes=-0"), Ranges::Unsatisfiable);
        assert_eq!(r("bytes=5-1"), Ranges::Whole);
        assert_eq!(r("items=0-1"), Ranges::Whole);
        assert_eq!(r("bytes=a-b"), Ranges::Whole);
        assert_eq!(r("bytes=0-1,2-3,4-5,6-7,8-9,10-11,12-13,14-15,16-17,18-19,20-21,22-23,24-25,26-27,28-29,30-31,32-33"), Ranges::Whole);
        let stale = Conditions {
            range: Some("bytes=0-1"),
            if_range: Some("\"old\""),
            ..Default::default()
        };
        assert_eq!(ranges(&stale, &f), Ranges::Whole);
        let etag = f.etag();
        let fresh = Conditions {
            range: Some("bytes=0-1"),
            if_range: Some(&etag),
            ..Default::default()
        };
        assert_eq!(ranges(&fresh, &f), Ranges::Parts(vec![(0, 1)]));
        let by_date = Conditions {
            range: Some("bytes=0-1"),
            if_range: Some(LM),
            ..Default::default()
        };
        assert_eq!(ranges(&by_date, &f), Ranges::Parts(vec![(0, 1)]));
        let empty = FileInfo { len: 0, ..f };
        assert_eq!(
            ranges(
                &Conditions {
                    range: Some("bytes=0-"),
                    ..Default::default()
                },
                &empty
            ),
            Ranges::Unsatisfiable
        );
    }
}
