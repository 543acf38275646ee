//! The keys in service: keys.json compiled for lookup by digest, with every limit turned
//! into the form a check needs (bit sets, exact money, the binding resolved against this
//! host), the previous plaintexts of rotated keys with the end of their overlap, and the
//! halts of trading in force. A snapshot is immutable; a reload builds a new one and swaps
//! it in.

use std::collections::HashMap;

use futu_auth_proto::key::{Halt, HaltTarget, Rotation};
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
    /// Allowed symbols; `None` for any.
    pub symbols: Option<SymbolSet>,
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
    /// The pre-trade risk limits, when the key has any (few keys do: out of line, so
    /// that a key without them costs 8 bytes for them, not 96).
    pub risk: Option<Box<RiskLimits>>,
}

/// A key's pre-trade risk limits ([`CompiledKey::risk`]); at least one is set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RiskLimits {
    /// `allowed_acc_ids`; `None` for any account.
    pub acc_ids: Option<Box<[u64]>>,
    /// `max_price_deviation_pct`.
    pub max_price_deviation_pct: Option<f64>,
    /// `max_open_orders`.
    pub max_open_orders: Option<u32>,
    /// `max_position_value`, exact.
    pub max_position_value: Option<Money>,
    /// `duplicate_window_ms`, in nanoseconds.
    pub duplicate_window_ns: Option<u64>,
}

impl CompiledKey {
    /// Compiles `record` into allocations of its own (none shared with the record), so
    /// that dropping keys.json as parsed frees its memory whole.
    fn compile(record: &KeyRecord, host: Option<&Fingerprint>) -> (KeyHash, CompiledKey) {
        let l = &record.limits;
        let binding = match &record.allowed_machines {
            None => Binding::Unbound,
            Some(list) if list.is_empty() => Binding::Frozen,
            Some(list) if host.is_some_and(|h| list.contains(h)) => Binding::ThisHost,
            Some(_) => Binding::OtherHosts,
        };
        let symbols = l
            .allowed_symbols
            .as_ref()
            .map(|v| SymbolSet::new(v.iter().map(|s| s.as_str())));
        // Every cap is exact by construction (checked by `Money::try_cap` when read).
        let exact = |c: Option<futu_auth_proto::key::Cap>| c.map(|c| c.money());
        let key = CompiledKey {
            id: record.id.fresh_copy(),
            scopes: record.scopes.iter().fold(0, |acc, s| acc | s.bit()),
            markets: l
                .allowed_markets
                .as_ref()
                .map(|v| v.iter().fold(0, |acc, m| acc | m.bit())),
            symbols,
            sides: l
                .allowed_trd_sides
                .as_ref()
                .map(|v| v.iter().fold(0, |acc, s| acc | s.bit())),
            max_order_value: exact(l.max_order_value),
            max_daily_value: exact(l.max_daily_value),
            max_orders_per_minute: l.max_orders_per_minute,
            hours_window: l.hours_window,
            binding,
            expires_at: record.expires_at,
            risk: Some(RiskLimits {
                acc_ids: l.allowed_acc_ids.as_ref().map(|a| a.as_slice().into()),
                max_price_deviation_pct: l.max_price_deviation_pct.map(|p| p.get()),
                max_open_orders: l.max_open_orders,
                max_position_value: exact(l.max_position_value),
                duplicate_window_ns: l.duplicate_window_ms.map(|w| w.ns()),
            })
            .filter(|r| *r != RiskLimits::default())
            .map(Box::new),
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
        self.symbols.as_ref().is_none_or(|s| s.contains(symbol))
    }

    /// Whether `side` is allowed.
    pub fn allows_side(&self, side: TrdSide) -> bool {
        self.sides.is_none_or(|s| s & side.bit() != 0)
    }

    /// Whether the ledger follows this key's orders after their check (open orders,
    /// positions, recent orders for duplicates).
    pub fn tracks_orders(&self) -> bool {
        self.max_open_orders().is_some()
            || self.max_position_value().is_some()
            || self.duplicate_window_ns().is_some()
    }

    /// `allowed_acc_ids`; `None` for any account.
    pub fn acc_ids(&self) -> Option<&[u64]> {
        self.risk.as_ref().and_then(|r| r.acc_ids.as_deref())
    }

    /// `max_price_deviation_pct`.
    pub fn max_price_deviation_pct(&self) -> Option<f64> {
        self.risk.as_ref().and_then(|r| r.max_price_deviation_pct)
    }

    /// `max_open_orders`.
    pub fn max_open_orders(&self) -> Option<u32> {
        self.risk.as_ref().and_then(|r| r.max_open_orders)
    }

    /// `max_position_value`, exact.
    pub fn max_position_value(&self) -> Option<Money> {
        self.risk.as_ref().and_then(|r| r.max_position_value)
    }

    /// `duplicate_window_ms`, in nanoseconds.
    pub fn duplicate_window_ns(&self) -> Option<u64> {
        self.risk.as_ref().and_then(|r| r.duplicate_window_ns)
    }
}

/// A key's `allowed_symbols`, sorted and without duplicates, in one allocation: the
/// number of symbols and the end of each (little-endian `u32`s), then their text. 100 000
/// keys with a few symbols each would otherwise hold three or more small allocations a key.
#[derive(Clone, PartialEq, Eq)]
pub struct SymbolSet(Box<[u8]>);

impl SymbolSet {
    /// The set of `symbols`.
    pub fn new<'a>(symbols: impl IntoIterator<Item = &'a str>) -> SymbolSet {
        let mut list: Vec<&str> = symbols.into_iter().collect();
        list.sort_unstable();
        list.dedup();
        let text: usize = list.iter().map(|s| s.len()).sum();
        let mut bytes = Vec::with_capacity(4 * (1 + list.len()) + text);
        bytes.extend_from_slice(&(list.len() as u32).to_le_bytes());
        let mut end = 0u32;
        for s in &list {
            end += s.len() as u32;
            bytes.extend_from_slice(&end.to_le_bytes());
        }
        for s in &list {
            bytes.extend_from_slice(s.as_bytes());
        }
        SymbolSet(bytes.into_boxed_slice())
    }

    fn word(&self, i: usize) -> usize {
        let at = 4 * i;
        u32::from_le_bytes([self.0[at], self.0[at + 1], self.0[at + 2], self.0[at + 3]]) as usize
    }

    /// How many symbols the set holds.
    pub fn len(&self) -> usize {
        self.word(0)
    }

    /// Whether the set is empty (no symbol allowed).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`-th symbol in sorted order.
    fn get(&self, i: usize) -> &[u8] {
        let text = 4 * (1 + self.len());
        let start = if i == 0 { 0 } else { self.word(i) };
        &self.0[text + start..text + self.word(i + 1)]
    }

    /// The symbols, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        // Built from `&str`s cut at their own boundaries: always UTF-8.
        (0..self.len()).map(|i| std::str::from_utf8(self.get(i)).unwrap_or_default())
    }

    /// Whether `symbol` is in the set (a binary search).
    pub fn contains(&self, symbol: &str) -> bool {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid).cmp(symbol.as_bytes()) {
                std::cmp::Ordering::Equal => return true,
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        false
    }
}

impl std::fmt::Debug for SymbolSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// The keys in service and the host they are checked on: the compiled keys in one vector
/// (one allocation, not one per key), found through an index by digest, and a second
/// index for the previous plaintexts of rotated keys.
#[derive(Debug, Clone)]
pub struct Snapshot {
    keys: Vec<CompiledKey>,
    by_hash: HashMap<KeyHash, u32>,
    /// keys.json's `rotations`: the digest of a rotated key's previous plaintext, the key
    /// and the end of its overlap. Empty, with no allocation, unless keys.json has some.
    previous: HashMap<KeyHash, Previous>,
    /// keys.json's `halts`: trading halted for every key, and for keys on their own.
    halts: Halts,
    host: Option<Fingerprint>,
}

/// The halts of trading in force, as keys.json lists them. Empty, with no allocation,
/// unless keys.json has some.
#[derive(Debug, Clone, Default)]
struct Halts {
    /// The halt of every key, if any.
    all: Option<Box<Halt>>,
    /// The halts of keys on their own, by key id.
    keys: HashMap<KeyId, Halt>,
    /// Every halt, in keys.json's order (for listings and the metrics).
    listed: Vec<Halt>,
}

/// A rotated key's previous plaintext: which key it names, and until when.
#[derive(Debug, Clone, Copy)]
struct Previous {
    /// Index of the key in [`Snapshot::keys`].
    key: u32,
    /// Accepted while `now < until`.
    until: Timestamp,
}

impl Snapshot {
    /// Compiles keys.json's `keys`, `rotations` and `halts` for a host with fingerprint
    /// `host`. Without a fingerprint (no machine id could be read) no host is in any
    /// `allowed_machines` list.
    ///
    /// The keys are compiled from the records by reference, each into new allocations
    /// above those of the parsed file, so that freeing the file (off a reload's clock)
    /// frees its memory whole and its pages can go back to the system (compiling record by
    /// record while freeing them would scatter the keys across the parsed file's pages and
    /// keep them all resident).
    pub fn compile(
        records: &[KeyRecord],
        rotations: &[Rotation],
        halts: &[Halt],
        host: Option<Fingerprint>,
    ) -> Snapshot {
        let mut keys = Vec::with_capacity(records.len());
        let mut by_hash = HashMap::with_capacity(records.len());
        for record in records {
            let (hash, key) = CompiledKey::compile(record, host.as_ref());
            // keys.json holds each digest once (checked when it is read); should one come
            // twice, the later wins, as it would in a map.
            match by_hash.entry(hash) {
                std::collections::hash_map::Entry::Occupied(e) => keys[*e.get() as usize] = key,
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(keys.len() as u32);
                    keys.push(key);
                }
            }
        }
        let previous = Snapshot::index_rotations(rotations, &keys);
        Snapshot {
            keys,
            by_hash,
            previous,
            halts: Halts::index(halts),
            host,
        }
    }

    /// The previous-plaintext index of keys.json's `rotations` (each names a key of the
    /// file: checked when it is read).
    fn index_rotations(rotations: &[Rotation], keys: &[CompiledKey]) -> HashMap<KeyHash, Previous> {
        if rotations.is_empty() {
            return HashMap::new();
        }
        let by_id: HashMap<&str, u32> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.id.as_str(), i as u32))
            .collect();
        rotations
            .iter()
            .filter_map(|r| {
                let key = *by_id.get(r.id.as_str())?;
                Some((r.previous_hash, Previous { key, until: r.until }))
            })
            .collect()
    }

    /// The key whose current plaintext has this digest.
    pub fn by_hash(&self, hash: &KeyHash) -> Option<&CompiledKey> {
        self.by_hash.get(hash).map(|&i| &self.keys[i as usize])
    }

    /// The key a plaintext with this digest names at `now`: the key whose current
    /// plaintext it is, or the key it was before a rotation, while that rotation's overlap
    /// lasts (`now < until`). Anything else names no key.
    pub fn by_hash_at(&self, hash: &KeyHash, now: Timestamp) -> Option<&CompiledKey> {
        if let Some(key) = self.by_hash(hash) {
            return Some(key);
        }
        if self.previous.is_empty() {
            return None;
        }
        self.previous
            .get(hash)
            .filter(|p| now < p.until)
            .map(|p| &self.keys[p.key as usize])
    }

    /// Until when key `id`'s plaintext before its last rotation is accepted, as keys.json
    /// records it; `None` when it has no rotation. The time may have passed already (the
    /// entry stays until keys.json next changes): compare it with now.
    pub fn previous_valid_until(&self, id: &str) -> Option<Timestamp> {
        self.overlaps()
            .find(|(key, _)| key.as_str() == id)
            .map(|(_, until)| until)
    }

    /// Every rotated key's id and until when its previous plaintext is accepted, as
    /// keys.json records it (the time may have passed: compare it with now).
    pub fn overlaps(&self) -> impl Iterator<Item = (&KeyId, Timestamp)> {
        self.previous
            .values()
            .map(|p| (&self.keys[p.key as usize].id, p.until))
    }

    /// The halt that stops key `id`'s trading now, if any: the halt of every key first (a
    /// key's own halt lifted, that one still holds), else the key's own.
    pub fn halt_of(&self, id: &KeyId) -> Option<&Halt> {
        if let Some(all) = &self.halts.all {
            return Some(all);
        }
        if self.halts.keys.is_empty() {
            return None;
        }
        self.halts.keys.get(id)
    }

    /// Replaces the halts in force with `halts`: the what-if replay judges each record by
    /// the halts its audit file says were in force then, not by the candidate's own.
    pub fn set_halts(&mut self, halts: &[Halt]) {
        self.halts = Halts::index(halts);
    }

    /// Every halt in force, in keys.json's order.
    pub fn halts(&self) -> &[Halt] {
        &self.halts.listed
    }

    /// The key with this id (a scan: admin paths only).
    pub fn by_id(&self, id: &str) -> Option<&CompiledKey> {
        self.keys.iter().find(|k| k.id.as_str() == id)
    }

    /// Every key in service, in keys.json's order.
    pub fn iter(&self) -> impl Iterator<Item = &CompiledKey> {
        self.keys.iter()
    }

    /// The ids of the keys in service, in keys.json order.
    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.iter().map(|k| &k.id)
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

impl Halts {
    /// Copies of keys.json's `halts` (each names a key of the file, at most once: checked
    /// when it is read), in allocations of their own, found by key.
    fn index(halts: &[Halt]) -> Halts {
        let mut out = Halts::default();
        for h in halts {
            let h = Halt {
                target: match &h.target {
                    HaltTarget::Key(id) => HaltTarget::Key(id.fresh_copy()),
                    HaltTarget::All => HaltTarget::All,
                },
                ..h.clone()
            };
            match &h.target {
                HaltTarget::All => out.all = Some(Box::new(h.clone())),
                HaltTarget::Key(id) => {
                    out.keys.insert(id.clone(), h.clone());
                }
            }
            out.listed.push(h);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use futu_auth_proto::key::{Cap, Limits};
    use futu_auth_proto::{KeyHash, KeyRecord, Scope};

    use super::{CompiledKey, SymbolSet};

    fn record(limits: Limits) -> KeyRecord {
        KeyRecord {
            id: "k".parse().unwrap(),
            hash: KeyHash([7; 32]),
            scopes: vec![Scope::TradeSimulate],
            limits,
            allowed_machines: None,
            created_at: "2026-04-15T10:00:00Z".parse().unwrap(),
            expires_at: None,
            note: None,
        }
    }

    /// 100 000 keys cost what a compiled key weighs, times 100 000: the risk limits most
    /// keys lack stay out of line.
    #[test]
    fn a_key_without_risk_limits_keeps_none_out_of_line() {
        let plain = Limits {
            max_order_value: Some(Cap::try_from(1000.0).unwrap()),
            max_orders_per_minute: Some(5),
            ..Limits::default()
        };
        let (_, key) = CompiledKey::compile(&record(plain.clone()), None);
        assert!(key.risk.is_none());
        assert!(!key.tracks_orders());
        assert!(
            std::mem::size_of::<CompiledKey>() <= 160,
            "CompiledKey is {} bytes",
            std::mem::size_of::<CompiledKey>()
        );

        let risky = Limits {
            max_open_orders: Some(3),
            ..plain
        };
        let (_, key) = CompiledKey::compile(&record(risky), None);
        assert_eq!(key.max_open_orders(), Some(3));
        assert_eq!(key.max_position_value(), None);
        assert!(key.tracks_orders());
    }

    #[test]
    fn a_symbol_set_finds_exactly_its_symbols() {
        let set = SymbolSet::new(["US.AAPL", "HK.00700", "HK.00700", "HK.09988", "SH.600519"]);
        assert_eq!(set.len(), 4);
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            ["HK.00700", "HK.09988", "SH.600519", "US.AAPL"]
        );
        for s in ["US.AAPL", "HK.00700", "HK.09988", "SH.600519"] {
            assert!(set.contains(s), "{s}");
        }
        for s in ["", "HK.0070", "HK.007000", "US.AAPM", "ZZ", "A", "hk.00700"] {
            assert!(!set.contains(s), "{s}");
        }
        let empty = SymbolSet::new([]);
        assert!(empty.is_empty());
        assert!(!empty.contains("HK.00700"));
    }

    #[test]
    fn a_symbol_set_agrees_with_a_sorted_list() {
        let many: Vec<String> = (0..1000).map(|i| format!("HK.{:05}", i * 7)).collect();
        let set = SymbolSet::new(many.iter().map(String::as_str));
        for i in 0..7100 {
            let s = format!("HK.{i:05}");
            assert_eq!(set.contains(&s), i % 7 == 0 && i < 7000, "{s}");
        }
    }
}
