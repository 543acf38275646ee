//! End-to-end tests of futu-authd and futucli: they spawn the real binaries.
#![forbid(unsafe_code)]
