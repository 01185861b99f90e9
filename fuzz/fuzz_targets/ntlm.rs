//! NTLM tokens and verification trailers: `msrpc::fuzz_checks::ntlm`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| msrpc::fuzz_checks::ntlm(data));
