//! What FastCGI applications and CGI programs send back: the worker's
//! `fuzz_checks::gateway_output` (FastCGI records and CGI header blocks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| worker::fuzz_checks::gateway_output(data));
