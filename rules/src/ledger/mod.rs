//! The limit ledger in memory: per key, the orders allowed in the last 60 s and the value
//! allowed today (UTC), and the tickets that refund a rejected order.
//!
//! The rules ([`decide`](mod@crate::decide)) say what an allowed order would take — a
//! [`Charge`]; the [`Ledger`] checks and takes it atomically per key ([`Ledger::take`]) and
//! says what it found — [`Charged`]. The daemon keeps this ledger durable behind its
//! ledger store (a journal beside it, or a database instead of it); `futucli replay` uses
//! a fresh one per run. The per-key lock never leaves this module: callers take, release,
//! undo and read usage, never lock.
//!
//! `memory.rs` is the ledger itself, `ticket.rs` the cipher that turns ledger numbers into
//! the tickets clients see.

use futu_auth_proto::KeyId;

use crate::money::Money;

mod memory;
pub mod ticket;

pub use memory::{
    Consumption, Ledger, LedgerDump, ReleaseError, Released, MAX_NUMBER, MAX_TICKETS, RATE_WINDOW_NS,
    RELEASE_WINDOW_NS, UNLIMITED_WINDOW_CAP,
};

/// What an order that passed rules 1–7 would take from its key's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The key.
    pub key_id: KeyId,
    /// The order's value (zero for an order without a price, allowed when no value cap
    /// applies).
    pub value: Money,
    /// The key's `max_orders_per_minute`.
    pub max_orders_per_minute: Option<u32>,
    /// The key's `max_daily_value`.
    pub max_daily_value: Option<Money>,
    /// Check only, take nothing.
    pub dry_run: bool,
}

/// What a ledger (this one, or a store across the network) found for one [`Charge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charged {
    /// Both limits passed; what was taken (`None` for a dry run).
    Passed(Option<Consumption>),
    /// `max_orders_per_minute` orders were already allowed in the window.
    Rate {
        /// Orders in the window.
        in_window: u32,
        /// Until enough of them leave the window for one more order (0 when waiting does
        /// not help: a rate of 0).
        retry_after_ns: u64,
    },
    /// Today's total plus this value would pass the daily cap.
    Daily {
        /// Today's total so far.
        used: Money,
    },
}
