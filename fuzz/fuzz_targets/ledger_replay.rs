//! cargo-fuzz target `ledger_replay`: the body is futu_authd_tests::fuzz::ledger_replay (tests/src/fuzz.rs),
//! which the regression test tests/tests/fuzz_regressions.rs runs too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| futu_authd_tests::fuzz::ledger_replay(data));
