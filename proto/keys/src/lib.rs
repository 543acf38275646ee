//! futu-auth-keys: keys.json on disk, and what makes the keys in it.
//!
//! Both the daemon and `futucli` (which edits keys.json itself when the daemon is down)
//! use this crate, so it carries no daemon runtime:
//!
//! * [`store`] reads and writes keys.json (strict, atomic, locked);
//! * [`token`] makes key plaintexts and their digests;
//! * [`machine`] computes a host's machine fingerprint, for `allowed_machines`.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod machine;
pub mod store;
pub mod token;
