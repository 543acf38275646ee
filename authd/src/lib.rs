//! futu-authd: the authorization sidecar of a Futu OpenD style trading gateway.
//!
//! One daemon holds keys.json and the one authoritative limit ledger; the gateway's REST,
//! gRPC, WebSocket and MCP front-ends ask it over a Unix socket whether each request may
//! go through. This library is the daemon: its server, ledger stores, audit trail and
//! metrics; `main.rs` adds the command line, logging and signals.
//!
//! What it decides is the `futu_auth_rules` crate (the rules, the keys compiled for
//! checking, the in-memory ledger, the what-if replay), and keys.json on disk is the
//! `futu_auth_keys` crate: `futucli` shares both without linking the daemon.
//!
//! Public, and why (every other module is private):
//!
//! * [`config`]: the command line; `main.rs` parses it, tests and benchmarks start a
//!   [`server::Daemon`] with one;
//! * [`notify`]: systemd's notifications, which `main.rs` sends as the process starts,
//!   reloads and stops;
//! * [`server`]: the daemon in any process (`main.rs`, the in-process test), its listener
//!   and what SIGHUP does;
//! * [`Authd`] and [`KeyRingError`]: the state [`server::Daemon::authd`] hands out, for a
//!   reload from outside the socket (SIGHUP, the tests) and the keys in service
//!   (systemd's status line);
//! * [`AUDIT_TARGET`]: the `tracing` target of journald's copy of the audit records,
//!   which `main.rs` sends to journald's layer only;
//! * [`journal`]: the local ledger store's journal on disk, which the fuzz target
//!   `ledger_replay` (`tests/src/fuzz.rs`) opens, replays and appends to, and whose size
//!   the load benchmark watches.
// Two places use unsafe, each in a function of its own: taking the socket systemd passes
// by descriptor number (`activation`) and returning freed heap to the system (`heap`).
#![deny(unsafe_code)]
#![deny(rust_2018_idioms)]

// Private: what the binary, the tests, the benchmarks and the fuzz targets need is made
// public below (the crate's documentation says why each is).
mod activation;
mod atomic_file;
mod audit;
mod clock;
mod commit;
mod connection;
mod expiry;
mod heap;
mod key_store;
mod last_used;
mod ledger;
mod metrics;
mod peer;
mod pg_schema;
mod service;
mod status;

pub mod config;
pub mod notify;
pub mod server;

pub use audit::TARGET as AUDIT_TARGET;
pub use service::{Authd, KeyRingError};

/// The local ledger store's journal on disk: the log itself, its entries and replay, the
/// marks it shares with the audit file, its file names and when it compacts.
pub mod journal {
    pub use crate::ledger::local::journal::{
        Entries, LedgerLog, Moment, Replay, BASE_NAME, COMPACT_AT_BYTES, FILE_NAME,
    };
    pub use crate::ledger::{AuditMark, Audited};
}
