//! The listener's url property: `listener::fuzz_checks::url`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| listener::fuzz_checks::url(data));
