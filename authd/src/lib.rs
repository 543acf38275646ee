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

pub mod activation;
pub mod atomic_file;
pub mod audit;
pub mod clock;
pub mod commit;
pub mod config;
pub mod connection;
pub mod heap;
pub mod last_used;
pub mod ledger;
pub mod metrics;
pub mod notify;
pub mod peer;
pub mod server;
pub mod service;
