//! MS-WMIO objects and MS-WMI ObjectArrays: `wmio::fuzz_checks::objects`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wmio::fuzz_checks::objects(data));
