//! Requests to IMSAdminBaseW: `iisadmin::fuzz_checks::imsa_requests`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| iisadmin::fuzz_checks::imsa_requests(data));
