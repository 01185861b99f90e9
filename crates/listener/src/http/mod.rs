//! HTTP/1.x as the listener speaks it: the strict request-head parser,
//! request-body framing, and the errors the listener answers by itself.
//! No I/O here: every function works on bytes, so it can be tested and
//! fuzzed alone.

mod body;
mod error;
mod parse;

pub use body::{ChunkedDecoder, Step};
pub use error::{status_text as status_text_for, ErrorReason, HttpError};
pub use parse::{parse_head, Framing, Head, Limits, Version};

pub(crate) use httpapi::proto::is_tchar;
