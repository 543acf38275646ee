//! Key records: what keys.json holds for a key, its limits, and what an operator asks for
//! when making or rebinding one.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{
    AccIds, Cap, DeviationPct, DuplicateWindow, Fingerprint, HoursWindow, KeyHash, KeyId, Market, Scope,
    Symbol, TrdSide,
};

/// A key's limits; every field `None` (or omitted in keys.json) means unlimited.
///
/// keys.json leaves out the limits that are not set, so a key with none is as short as
/// README.md's examples (`research`, in its keys.json section). A frame carries every
/// field, set or not, in this order ([`crate::codec`] writes it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Market whitelist for orders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_markets: Option<Vec<Market>>,
    /// Symbol whitelist for orders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_symbols: Option<Vec<Symbol>>,
    /// Direction whitelist for orders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_trd_sides: Option<Vec<TrdSide>>,
    /// Per-order cap on qty × price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_order_value: Option<Cap>,
    /// Cap on the sum of allowed order values in one UTC day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_daily_value: Option<Cap>,
    /// Allowed orders in any 60-second window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_orders_per_minute: Option<u32>,
    /// Local time of day in which the key may be used at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours_window: Option<HoursWindow>,
    /// Protocol version 6: the broker accounts an order or an account read may name; a
    /// request that names none is refused (`account`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_acc_ids: Option<AccIds>,
    /// Protocol version 6: the price collar — how far, in percent, a limit order's price
    /// may be from the reference price the gateway supplies (`price_collar`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price_deviation_pct: Option<DeviationPct>,
    /// Protocol version 6: orders allowed and not yet finished — filled, cancelled or
    /// rejected (`open_orders`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_open_orders: Option<u32>,
    /// Protocol version 6: per symbol, the value of filled buys less filled sells plus the
    /// open orders that would add to it (`position`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_position_value: Option<Cap>,
    /// Protocol version 6: the same order (account, symbol, side, qty, price) again within
    /// this many milliseconds is refused (`duplicate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_window_ms: Option<DuplicateWindow>,
}

impl Limits {
    /// Whether no limit is set.
    pub fn is_unlimited(&self) -> bool {
        *self == Limits::default()
    }

    /// The names of the limits protocol version 6 added that are set: what a peer of an
    /// older version cannot be shown.
    pub fn since_v6(&self) -> Vec<&'static str> {
        let mut set = Vec::new();
        let mut note = |is: bool, name| {
            if is {
                set.push(name)
            }
        };
        note(self.allowed_acc_ids.is_some(), "allowed_acc_ids");
        note(self.max_price_deviation_pct.is_some(), "max_price_deviation_pct");
        note(self.max_open_orders.is_some(), "max_open_orders");
        note(self.max_position_value.is_some(), "max_position_value");
        note(self.duplicate_window_ms.is_some(), "duplicate_window_ms");
        set
    }

    /// Whether a limit the ledger keeps state for is set (`max_open_orders`,
    /// `max_position_value`, `duplicate_window_ms`): such a key's orders need a ledger
    /// that follows each order after its check.
    pub fn needs_order_tracking(&self) -> bool {
        self.max_open_orders.is_some()
            || self.max_position_value.is_some()
            || self.duplicate_window_ms.is_some()
    }
}

/// One API key as stored in keys.json. The plaintext is never stored, only its digest.
///
/// keys.json always has `id`, `hash`, `scopes` and `created_at`, and the rest only when
/// set. A frame carries every field, in this order ([`crate::codec`] writes it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// Unique name, shown as `key_id` in audit and metrics.
    pub id: KeyId,
    /// SHA-256 of the plaintext.
    pub hash: KeyHash,
    /// What the key may do.
    pub scopes: Vec<Scope>,
    /// Whitelists and caps; empty means unlimited.
    #[serde(default, skip_serializing_if = "Limits::is_unlimited")]
    pub limits: Limits,
    /// `None`: usable on any host; `Some([])`: frozen; `Some(list)`: only on those hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_machines: Option<Vec<Fingerprint>>,
    /// When the key was made.
    pub created_at: Timestamp,
    /// When the key stops working; `None` never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Free-form note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What an operator asks for when making a key; the daemon adds the hash and `created_at`.
/// A frame carries its fields in this order ([`crate::codec`] writes it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeySpec {
    /// Unique name.
    pub id: KeyId,
    /// What the key may do.
    pub scopes: Vec<Scope>,
    /// Whitelists and caps.
    pub limits: Limits,
    /// Machine binding (see [`KeyRecord::allowed_machines`]).
    pub allowed_machines: Option<Vec<Fingerprint>>,
    /// When the key stops working.
    pub expires_at: Option<Timestamp>,
    /// Free-form note.
    pub note: Option<String>,
}

/// A change to a key's machine binding (`futucli bind-key`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BindOp {
    /// Add these fingerprints to the whitelist (an unbound key becomes bound to them).
    Add(Vec<Fingerprint>),
    /// Make the whitelist exactly these fingerprints.
    Replace(Vec<Fingerprint>),
    /// `allowed_machines: []`: the key is refused everywhere until bound again.
    Freeze,
    /// `allowed_machines: null`: no binding.
    Clear,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_json_omits_unset_fields_and_reads_them_back() {
        let json =
            r#"{"id":"research","hash":"__H__","scopes":["qot:read"],"created_at":"2026-04-15T10:00:00Z"}"#
                .replace("__H__", &"a1".repeat(32));
        let rec: KeyRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&rec).unwrap(), json);
    }

    #[test]
    fn keys_json_writes_only_the_limits_that_are_set() {
        let json = r#"{"id":"bot","hash":"__H__","scopes":["trade:simulate"],"limits":{"allowed_markets":["HK"],"max_orders_per_minute":5},"created_at":"2026-04-15T10:00:00Z","note":"paper"}"#
            .replace("__H__", &"a1".repeat(32));
        let rec: KeyRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(rec.limits.max_orders_per_minute, Some(5));
        assert_eq!(serde_json::to_string(&rec).unwrap(), json);
    }
}
