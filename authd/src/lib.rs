//! futu-authd: the authorization sidecar of a Futu OpenD style trading gateway.
//!
//! One daemon holds keys.json and the one authoritative limit ledger; the gateway's REST,
//! gRPC, WebSocket and MCP front-ends ask it over a Unix socket whether each request may
//! go through. This library is the daemon's core, free of sockets and processes:
//!
//! * [`endpoint`] maps Futu OpenAPI protocols to the scope they need;
//! * [`snapshot`] compiles keys.json for checking; [`ledger`] counts orders and value;
//! * [`decide`](mod@decide) is the pure decision engine; [`money`] keeps amounts exact;
//! * [`replay`](mod@replay) decides an audit file's checks again against candidate keys.
//!
//! keys.json on disk (the store, key generation, the machine fingerprint) is the
//! `futu_auth_keys` crate, which `futucli` shares without linking the daemon.
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
pub mod decide;
pub mod endpoint;
pub mod heap;
pub mod last_used;
pub mod ledger;
pub mod ledger_log;
pub mod metrics;
pub mod money;
pub mod notify;
pub mod peer;
pub mod replay;
pub mod server;
pub mod service;
pub mod snapshot;
pub mod ticket;

pub use decide::{decide, decide_scope, Now, Verdict};
pub use ledger::Ledger;
pub use snapshot::Snapshot;
