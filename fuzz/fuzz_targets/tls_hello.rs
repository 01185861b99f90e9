//! The listener's tls_hello property: `listener::fuzz_checks::tls_hello`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| listener::fuzz_checks::tls_hello(data));
