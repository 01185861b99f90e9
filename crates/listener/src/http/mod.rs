//! HTTP/1.x as the listener speaks it: the strict request-head parser,
//! request-body framing, and the errors the listener answers by itself.
//! No I/O here: every function works on bytes, so it can be tested and
//! fuzzed alone.

mod body;
mod error;
mod parse;

pub use body::{ChunkedDecoder, Step};
pub use error::{ErrorReason, HttpError};
pub use parse::{parse_head, Framing, Head, Limits, Version};

/// The tchar set of RFC 9110 5.6.2 (token characters).
pub(crate) fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_'
        | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}
