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

use futu_auth_proto::{KeyId, TrdSide};

use crate::money::Money;

mod memory;
pub mod ticket;

pub use memory::{
    Consumption, EventApplied, EventUndo, FollowDump, FollowedOrder, FollowedPosition, Ledger, LedgerDump,
    ReleaseError, Released, MAX_FINISHED, MAX_NUMBER, MAX_OPEN_ORDERS_KEPT, MAX_TICKETS, RATE_WINDOW_NS,
    RELEASE_WINDOW_NS, UNLIMITED_WINDOW_CAP,
};

/// What an order that passed rules 1–7 would take from its key's limits.
#[derive(Debug, Clone, PartialEq)]
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
    /// For a key whose orders the ledger follows ([`CompiledKey::tracks_orders`]): the
    /// order and the key's limits on open orders, positions and duplicates.
    ///
    /// [`CompiledKey::tracks_orders`]: crate::snapshot::CompiledKey::tracks_orders
    pub track: Option<Track>,
}

/// An order the ledger follows after its check, and the limits that need it: checked and
/// taken with the rate and the daily value, under the same lock.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    /// The order's symbol (positions are per symbol).
    pub symbol: Box<str>,
    /// Whether the order adds to a long position (BUY, BUY_BACK) or a short one (SELL,
    /// SELL_SHORT).
    pub buys: bool,
    /// The quantity.
    pub qty: f64,
    /// The limit price (None: a market order, which no value limit can check).
    pub price: Option<f64>,
    /// The account the order names.
    pub acc_id: Option<u64>,
    /// The key's `max_open_orders`.
    pub max_open_orders: Option<u32>,
    /// The key's `max_position_value`.
    pub max_position_value: Option<Money>,
    /// The key's `duplicate_window_ms`, in nanoseconds.
    pub duplicate_window_ns: Option<u64>,
}

impl Track {
    /// Whether `side` adds to a long position.
    pub fn buys(side: TrdSide) -> bool {
        match side {
            TrdSide::BUY | TrdSide::BUY_BACK => true,
            TrdSide::SELL | TrdSide::SELL_SHORT => false,
        }
    }

    /// What makes two orders the same for `duplicate_window_ms`: account, symbol, side
    /// (as the direction it moves the position), qty and price, bit for bit.
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (
            self.acc_id,
            &*self.symbol,
            self.buys,
            self.qty.to_bits(),
            self.price.map(f64::to_bits),
        )
            .hash(&mut h);
        h.finish()
    }
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
    /// The same order was allowed within `duplicate_window_ms`.
    Duplicate {
        /// How long ago (ns).
        since_ns: u64,
    },
    /// `max_open_orders` orders are open.
    OpenOrders {
        /// Orders open now.
        open: u32,
    },
    /// The symbol's position, in the order's direction, plus this order would pass
    /// `max_position_value`.
    Position {
        /// The position in the order's direction: filled, plus open orders that add to it.
        position: Money,
    },
}
