//! futu-auth-rules: what futu-authd decides, without any IO.
//!
//! The daemon (futu-authd) asks these rules for every check and keeps their counters
//! durable; `futucli replay` runs the same rules over an audit file. Nothing here reads a
//! file, a socket or a database, and the clock comes in as a [`Now`]:
//!
//! * [`snapshot`] compiles keys.json's records for checking;
//! * [`endpoint`] maps Futu OpenAPI protocols to the scope they need;
//! * [`decide`](mod@decide) is the decision engine, rules 1–8;
//! * [`ledger`] holds the limit counters in memory and the tickets that release them;
//! * [`clock`] is the moment a decision is made at; [`money`] keeps amounts exact;
//! * [`audit`] is the audit record, as the daemon writes it and the replay reads it;
//! * [`replay`](mod@replay) decides an audit file's checks again against candidate keys.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod audit;
pub mod clock;
pub mod decide;
pub mod endpoint;
pub mod ledger;
pub mod money;
pub mod replay;
pub mod snapshot;

pub use clock::Now;
pub use decide::{decide, decide_scope, Verdict};
pub use ledger::Ledger;
pub use snapshot::Snapshot;
