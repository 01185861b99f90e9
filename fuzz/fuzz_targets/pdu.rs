//! Connection-oriented RPC PDUs: `msrpc::fuzz_checks::pdu`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| msrpc::fuzz_checks::pdu(data));
