//! Connectionless RPC datagrams: `msrpc::fuzz_checks::cl_datagram`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| msrpc::fuzz_checks::cl_datagram(data));
