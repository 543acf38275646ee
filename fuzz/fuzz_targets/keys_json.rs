//! cargo-fuzz target `keys_json`: the body is futu_authd_tests::fuzz::keys_json (tests/src/fuzz.rs),
//! which the regression test tests/tests/fuzz_regressions.rs runs too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| futu_authd_tests::fuzz::keys_json(data));
