//! cargo-fuzz target `layer_request`: the body is futu_authd_tests::fuzz::layer_request (tests/src/fuzz.rs),
//! which the regression test tests/tests/fuzz_regressions.rs runs too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| futu_authd_tests::fuzz::layer_request(data));
