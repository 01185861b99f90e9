//! RPC over HTTP channels of RTS PDUs: `msrpc::fuzz_checks::rts_channel`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| msrpc::fuzz_checks::rts_channel(data));
