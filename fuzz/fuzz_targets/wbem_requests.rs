//! Requests to the WMI interfaces: `wbem::fuzz_checks::wbem_requests`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wbem::fuzz_checks::wbem_requests(data));
