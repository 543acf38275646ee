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
    event_figures, Consumption, EventApplied, EventUndo, FollowDump, FollowedOrder, FollowedPosition, Ledger,
    LedgerDump, OrderBook, ReleaseError, Released, MAX_FINISHED, MAX_NUMBER, MAX_OPEN_ORDERS_KEPT,
    MAX_TICKETS, RATE_WINDOW_NS, RELEASE_WINDOW_NS, UNLIMITED_WINDOW_CAP,
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
    ///
    /// Stable across builds and Rust versions (the local ledger's journal keeps it): the
    /// first 8 bytes, little-endian, of SHA-256 over a fixed encoding — the account (`1`
    /// and its number as u64 LE, or `0` for none), the symbol's length as u64 LE and its
    /// bytes, the direction (`1` buys, `0` sells), the quantity's f64 bits LE, and the
    /// price (`1` and its f64 bits LE, or `0` for a market order).
    pub fn fingerprint(&self) -> u64 {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        match self.acc_id {
            Some(a) => {
                h.update([1]);
                h.update(a.to_le_bytes());
            }
            None => h.update([0]),
        }
        h.update((self.symbol.len() as u64).to_le_bytes());
        h.update(self.symbol.as_bytes());
        h.update([u8::from(self.buys)]);
        h.update(self.qty.to_bits().to_le_bytes());
        match self.price {
            Some(p) => {
                h.update([1]);
                h.update(p.to_bits().to_le_bytes());
            }
            None => h.update([0]),
        }
        let digest = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn track(acc_id: Option<u64>, symbol: &str, buys: bool, qty: f64, price: Option<f64>) -> Track {
        Track {
            symbol: symbol.into(),
            buys,
            qty,
            price,
            acc_id,
            max_open_orders: None,
            max_position_value: None,
            duplicate_window_ns: Some(1_000_000_000),
        }
    }

    /// The fingerprint is pinned: a journal written by one build is read by the next.
    #[test]
    fn the_duplicate_fingerprint_is_a_known_value() {
        let t = track(Some(281_756_455_983_234), "HK.00700", true, 100.0, Some(388.2));
        // Worked out apart (Python: hashlib.sha256 over the bytes of `fingerprint`'s doc).
        assert_eq!(t.fingerprint(), 0x257f_5eb1_4f52_5b02);
        let market = track(None, "HK.00700", false, 100.0, None);
        assert_eq!(market.fingerprint(), 0x781e_fdda_5b0f_2c72);
    }

    #[test]
    fn each_part_of_the_order_changes_the_fingerprint() {
        let base = track(Some(1), "HK.00700", true, 100.0, Some(388.2));
        let others = [
            track(None, "HK.00700", true, 100.0, Some(388.2)),
            track(Some(2), "HK.00700", true, 100.0, Some(388.2)),
            track(Some(1), "HK.09988", true, 100.0, Some(388.2)),
            track(Some(1), "HK.00700", false, 100.0, Some(388.2)),
            track(Some(1), "HK.00700", true, 200.0, Some(388.2)),
            track(Some(1), "HK.00700", true, 100.0, Some(388.4)),
            track(Some(1), "HK.00700", true, 100.0, None),
        ];
        for o in &others {
            assert_ne!(o.fingerprint(), base.fingerprint(), "{o:?}");
        }
        // The limits are not part of the order.
        let mut limited = base.clone();
        limited.max_open_orders = Some(3);
        limited.duplicate_window_ns = Some(5);
        assert_eq!(limited.fingerprint(), base.fingerprint());
    }
}
