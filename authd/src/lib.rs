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
// Two places use unsafe, each in a function of its own: taking the socket systemd passes
// by descriptor number (`activation`) and returning freed heap to the system (`heap`).
#![deny(unsafe_code)]
#![deny(rust_2018_idioms)]

// The modules are private: what the binary, the tests, the benchmarks and the fuzz
// targets need is made public below, each item with why.
mod activation;
mod atomic_file;
mod audit;
mod clock;
mod commit;
mod connection;
mod heap;
mod last_used;
mod ledger;
mod metrics;
mod peer;
mod service;

/// The command line, [`config::Config`]: `main.rs` parses it; tests and benchmarks start a
/// [`server::Daemon`] with one.
pub mod config;
/// systemd's notifications (READY, RELOADING, STOPPING, the watchdog), which `main.rs`
/// sends as the process starts, reloads and stops.
pub mod notify;
/// [`server::Daemon`], the daemon in any process (`main.rs`, the in-process test), its
/// listener ([`server::listen`], [`server::bind`]) and what SIGHUP does
/// ([`server::hangup`]).
pub mod server;

/// The state [`server::Daemon::authd`] hands out, for what comes from outside the socket:
/// a reload (SIGHUP in `main.rs`, the tests), the keys in service (systemd's status line).
pub use service::{Authd, KeyRingError};

/// The `tracing` target of journald's copy of the audit records: `main.rs` sends it to
/// journald's layer only, and keeps it off stderr.
pub use audit::TARGET as AUDIT_TARGET;

/// The local ledger store's journal on disk, as the fuzz target `ledger_replay`
/// (`tests/src/fuzz.rs`) opens, replays and appends to it, and the load benchmark watches
/// its size.
pub mod journal {
    pub use crate::ledger::local::journal::{
        Entries, LedgerLog, Moment, Replay, BASE_NAME, COMPACT_AT_BYTES, FILE_NAME,
    };
    pub use crate::ledger::{AuditMark, Audited};
}
