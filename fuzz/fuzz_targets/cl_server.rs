//! The connectionless server's state machine over datagrams: `msrpc::fuzz_checks::cl_server`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| msrpc::fuzz_checks::cl_server(data));
