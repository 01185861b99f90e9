//! The configuration a worker is handed: `worker::fuzz_checks::worker_config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    worker::fuzz_checks::worker_config(data);
});
