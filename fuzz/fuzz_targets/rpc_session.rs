//! One RPC connection's worth of client bytes through the server's state
//! machine: `msrpc::fuzz_checks::rpc_session`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| msrpc::fuzz_checks::rpc_session(data));
