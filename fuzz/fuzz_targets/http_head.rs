//! The listener's http_head property: `listener::fuzz_checks::http_head`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| listener::fuzz_checks::http_head(data));
