//! The NDR decoder: `msrpc::fuzz_checks::ndr`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| msrpc::fuzz_checks::ndr(data));
