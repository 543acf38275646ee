//! The keys in service: keys.json compiled for lookup by digest, with every limit turned
//! into the form a check needs (bit sets, exact money, the binding resolved against this
//! host). A snapshot is immutable; a reload builds a new one and swaps it in.

use std::collections::HashMap;
use std::sync::Arc;

use futu_auth_keys::store::KeysFile;
use futu_auth_proto::{Fingerprint, HoursWindow, KeyHash, KeyId, KeyRecord, Market, Scope, TrdSide};
use jiff::Timestamp;

use crate::money::Money;

/// How a key's `allowed_machines` applies to this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// `null`: any host.
    Unbound,
    /// `[]`: no host.
    Frozen,
    /// The list holds this host.
    ThisHost,
    /// The list does not hold this host.
    OtherHosts,
}

/// One key, ready to check: only what a check needs, in the form it needs it (a reload
/// of 100 000 keys should not hold 100 000 copies of their records).
#[derive(Debug, Clone)]
pub struct CompiledKey {
    /// The key's id.
    pub id: KeyId,
    /// Scopes as bits ([`Scope::bit`]).
    pub scopes: u8,
    /// Allowed markets as bits ([`Market::bit`]); `None` for any.
    pub markets: Option<u16>,
    /// Allowed symbols, sorted for binary search; `None` for any.
    pub symbols: Option<Box<[Box<str>]>>,
    /// Allowed sides as bits ([`TrdSide::bit`]); `None` for any.
    pub sides: Option<u8>,
    /// Per-order cap, exact.
    pub max_order_value: Option<Money>,
    /// Daily cap, exact.
    pub max_daily_value: Option<Money>,
    /// Orders per 60 s.
    pub max_orders_per_minute: Option<u32>,
    /// Local time window.
    pub hours_window: Option<HoursWindow>,
    /// `allowed_machines` against this host.
    pub binding: Binding,
    /// When the key stops working.
    pub expires_at: Option<Timestamp>,
}

impl CompiledKey {
    fn compile(record: KeyRecord, host: Option<&Fingerprint>) -> (KeyHash, CompiledKey) {
        let l = record.limits;
        let binding = match &record.allowed_machines {
            None => Binding::Unbound,
            Some(list) if list.is_empty() => Binding::Frozen,
            Some(list) if host.is_some_and(|h| list.contains(h)) => Binding::ThisHost,
            Some(_) => Binding::OtherHosts,
        };
        let symbols = l.allowed_symbols.map(|v| {
            let mut s: Vec<Box<str>> = v.into_iter().map(|s| String::from(s).into_boxed_str()).collect();
            s.sort_unstable();
            s.dedup();
            s.into_boxed_slice()
        });
        // Every cap is exact by construction (checked by `Money::try_cap` when read).
        let exact = |c: Option<futu_auth_proto::key::Cap>| c.map(|c| c.money());
        let key = CompiledKey {
            id: record.id,
            scopes: record.scopes.iter().fold(0, |acc, s| acc | s.bit()),
            markets: l
                .allowed_markets
                .map(|v| v.iter().fold(0, |acc, m| acc | m.bit())),
            symbols,
            sides: l
                .allowed_trd_sides
                .map(|v| v.iter().fold(0, |acc, s| acc | s.bit())),
            max_order_value: exact(l.max_order_value),
            max_daily_value: exact(l.max_daily_value),
            max_orders_per_minute: l.max_orders_per_minute,
            hours_window: l.hours_window,
            binding,
            expires_at: record.expires_at,
        };
        (record.hash, key)
    }

    /// Whether the key holds `scope`.
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes & scope.bit() != 0
    }

    /// Whether `market` is allowed.
    pub fn allows_market(&self, market: Market) -> bool {
        self.markets.is_none_or(|m| m & market.bit() != 0)
    }

    /// Whether `symbol` is allowed.
    pub fn allows_symbol(&self, symbol: &str) -> bool {
        self.symbols
            .as_ref()
            .is_none_or(|s| s.binary_search_by(|x| (**x).cmp(symbol)).is_ok())
    }

    /// Whether `side` is allowed.
    pub fn allows_side(&self, side: TrdSide) -> bool {
        self.sides.is_none_or(|s| s & side.bit() != 0)
    }
}

/// The keys in service and the host they are checked on.
#[derive(Debug, Clone)]
pub struct Snapshot {
    by_hash: HashMap<KeyHash, Arc<CompiledKey>>,
    host: Option<Fingerprint>,
}

impl Snapshot {
    /// Compiles keys.json for a host with fingerprint `host`. Without a fingerprint (no
    /// machine id could be read) no host is in any `allowed_machines` list.
    pub fn new(file: KeysFile, host: Option<Fingerprint>) -> Snapshot {
        let mut by_hash = HashMap::with_capacity(file.keys.len());
        for record in file.keys {
            let (hash, key) = CompiledKey::compile(record, host.as_ref());
            by_hash.insert(hash, Arc::new(key));
        }
        Snapshot { by_hash, host }
    }

    /// The key whose plaintext has this digest.
    pub fn by_hash(&self, hash: &KeyHash) -> Option<&Arc<CompiledKey>> {
        self.by_hash.get(hash)
    }

    /// The key with this id (a scan: admin paths only).
    pub fn by_id(&self, id: &str) -> Option<&Arc<CompiledKey>> {
        self.by_hash.values().find(|k| k.id.as_str() == id)
    }

    /// How many keys are in service.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether no key is in service.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// This host's fingerprint, if known.
    pub fn host(&self) -> Option<&Fingerprint> {
        self.host.as_ref()
    }
}
