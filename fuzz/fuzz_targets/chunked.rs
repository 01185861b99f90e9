//! The listener's chunked property: `listener::fuzz_checks::chunked`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| listener::fuzz_checks::chunked(data));
