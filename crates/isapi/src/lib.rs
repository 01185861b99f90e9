//! ISAPI's ABI on LP64 Linux: the structures, callback signatures and
//! constants of `include/httpext.h` (extensions) and `include/httpfilt.h`
//! (filters), which keep the Windows SDK's names and values, as Rust
//! types. The worker process hosts extensions through [`host`] (the one
//! place with unsafe code: the C boundary), and Rust authors write modules
//! with the same types.
//!
//! The C headers are the reference a C author compiles against; the test
//! `tests/headers.rs` compiles a program with `cc` against them and checks
//! that every size, field offset and constant here is the same.

pub mod ext;
pub mod extension;
mod ffi;
pub mod filt;
pub mod filter;
pub mod filter_host;
pub mod host;
pub mod types;
