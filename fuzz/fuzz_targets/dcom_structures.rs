//! The DCOM structures (OBJREF, bindings, ORPCTHIS/ORPCTHAT, activation properties): `dcom::fuzz_checks::structures`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dcom::fuzz_checks::structures(data));
