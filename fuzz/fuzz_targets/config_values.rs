//! Metabase values and request headers the server parses outside the
//! XML: ServerBindings entries (`was::fuzz_checks::binding`), IPSecurity
//! (`metabase::fuzz_checks::ipsecurity`), HttpRedirect, HttpExpires,
//! HttpErrors, ScriptMaps, Basic credentials, Accept-Encoding and Range
//! (`worker::fuzz_checks::url_settings`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    was::fuzz_checks::binding(data);
    metabase::fuzz_checks::ipsecurity(data);
    worker::fuzz_checks::url_settings(data);
});
