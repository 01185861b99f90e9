//! MBSchema.xml reader; the property checked is
//! `metabase::fuzz_checks::mbschema_xml`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| metabase::fuzz_checks::mbschema_xml(data));
