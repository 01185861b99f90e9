//! The WQL parser: `wmi::fuzz_checks::wql`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wmi::fuzz_checks::wql(data));
