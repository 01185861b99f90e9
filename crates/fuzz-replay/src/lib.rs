//! Test-only crate: `tests/replay.rs` feeds every file of `fuzz/corpus/*`
//! (and seeded mutations of it) through the property the matching fuzz
//! target checks, so the hand-written hostile inputs are exercised by
//! every test run, not only when someone runs `fuzz/run.sh`.
