//! Requests to IObjectExporter, IRemoteSCMActivator, IActivation, IRemUnknown(2): `dcom::fuzz_checks::requests`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dcom::fuzz_checks::requests(data));
