//! What a durable store needs to keep the orders the ledger follows: a copy of them for a
//! compacted base, their restoration at start, the replay of a followed order and of an
//! event, and the undoing of an event that could not be made durable.

use futu_auth_proto::KeyId;

use super::{follows_open, lock, Consumption, EventApplied, Ledger, LedgerDump, OpenOrder, Position};
use crate::ledger::Track;
use crate::money::Money;

/// An open order as a store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowedOrder {
    /// The order's key.
    pub key_id: KeyId,
    /// Its ledger number.
    pub number: u64,
    /// Its symbol.
    pub symbol: Box<str>,
    /// Whether it adds to a long position.
    pub buys: bool,
    /// Its quantity.
    pub qty: f64,
    /// Its limit price.
    pub price: Option<f64>,
    /// The quantity filled so far.
    pub filled_qty: f64,
    /// What is filled, by value.
    pub filled_value: Money,
    /// What is still open, by value.
    pub open_value: Money,
    /// The broker took it.
    pub accepted: bool,
}

/// A position as a store keeps it: the filled values (the open ones come from the open
/// orders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowedPosition {
    /// The key.
    pub key_id: KeyId,
    /// The symbol.
    pub symbol: Box<str>,
    /// Value of filled buys.
    pub bought: Money,
    /// Value of filled sells.
    pub sold: Money,
}

/// Everything the ledger follows, for a compacted base ([`Ledger::dump_follow`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FollowDump {
    /// Orders open now.
    pub open: Vec<FollowedOrder>,
    /// Positions with something filled.
    pub positions: Vec<FollowedPosition>,
    /// For duplicates: (key, fingerprint, monotonic time it was allowed at).
    pub seen: Vec<(KeyId, u64, u64)>,
    /// Finished orders: (ledger number, key).
    pub finished: Vec<(u64, KeyId)>,
}

/// What an event changed, to take it back ([`Ledger::event_undo`]).
#[derive(Debug, Clone)]
pub struct EventUndo {
    number: u64,
    key_id: Option<KeyId>,
    order: Option<OpenOrder>,
    position: Option<(Box<str>, Option<Position>)>,
    was_finished: bool,
}

impl Ledger {
    /// The ledger number a client's ticket names.
    pub fn ticket_number(&self, ticket: u64) -> u64 {
        lock(&self.tickets).cipher.number(ticket)
    }

    /// Follows an order replayed from a store (its consumption restored already), as
    /// [`Ledger::take`] followed it.
    pub fn restore_follow(&self, c: &Consumption, t: &Track) {
        self.with_key(&c.key_id, |slot| {
            slot.counters.follow(t, None, c.number, c.mono_ns, c.value);
        });
        if follows_open(t) {
            self.open_index.insert(c.number, c.key_id.clone());
        }
    }

    /// What a compacted base keeps of the counters and tickets: [`Ledger::dump`] less the
    /// tickets issued before `since_mono_ns`, and with each `ticket` left 0 — a base keeps
    /// ledger numbers, and ciphering up to a million of them would hold the ticket book
    /// (and every order) that much longer.
    pub fn dump_for_base(&self, since_mono_ns: u64) -> LedgerDump {
        let totals = self.totals();
        let book = lock(&self.tickets);
        let mut recent = Vec::with_capacity(book.ring.len());
        for (i, t) in book.ring.iter().enumerate() {
            // Each ticket by its own time: bursts take numbers in whatever order they get
            // the book, not quite the order of their clock readings.
            let Some(t) = t.as_ref().filter(|t| t.issued_mono_ns >= since_mono_ns) else {
                continue;
            };
            recent.push((
                Consumption {
                    key_id: t.key_id.clone(),
                    number: book.base + i as u64,
                    ticket: 0,
                    mono_ns: t.issued_mono_ns,
                    unix_ns: 0,
                    day: t.day,
                    value: t.value,
                },
                t.released,
            ));
        }
        LedgerDump {
            totals,
            recent,
            next_ticket: book.next,
            ticket_key: book.cipher.key(),
        }
    }

    /// Every followed order, position, recent fingerprint and finished order.
    pub fn dump_follow(&self) -> FollowDump {
        let mut out = FollowDump::default();
        for e in self.keys.iter() {
            let c = lock(e.value());
            let key_id = e.key();
            for (number, o) in &c.open {
                out.open.push(FollowedOrder {
                    key_id: key_id.clone(),
                    number: *number,
                    symbol: o.symbol.clone(),
                    buys: o.buys,
                    qty: o.qty,
                    price: o.price,
                    filled_qty: o.filled_qty,
                    filled_value: o.filled_value,
                    open_value: o.open_value,
                    accepted: o.accepted,
                });
            }
            for (symbol, p) in &c.positions {
                if p.bought != Money::ZERO || p.sold != Money::ZERO {
                    out.positions.push(FollowedPosition {
                        key_id: key_id.clone(),
                        symbol: symbol.clone(),
                        bought: p.bought,
                        sold: p.sold,
                    });
                }
            }
            for (t, fp) in &c.seen_order {
                if c.seen.get(fp) == Some(t) {
                    out.seen.push((key_id.clone(), *fp, *t));
                }
            }
        }
        out.open.sort_by_key(|o| o.number);
        let finished = lock(&self.finished);
        out.finished = finished
            .order
            .iter()
            .filter_map(|n| finished.by_number.get(n).map(|k| (*n, k.clone())))
            .collect();
        out
    }

    /// Restores an open order from a base (its open value counts in its position).
    pub fn restore_open(&self, o: FollowedOrder) {
        let key_id = o.key_id.clone();
        let number = o.number;
        self.with_key(&key_id, |slot| {
            let c = &mut *slot.counters;
            let pos = c.positions.entry(o.symbol.clone()).or_default();
            let open = pos.open_mut(o.buys);
            *open = open.saturating_add(o.open_value);
            c.open.insert(
                o.number,
                OpenOrder {
                    symbol: o.symbol,
                    buys: o.buys,
                    qty: o.qty,
                    price: o.price,
                    filled_qty: o.filled_qty,
                    filled_value: o.filled_value,
                    open_value: o.open_value,
                    accepted: o.accepted,
                },
            );
        });
        self.open_index.insert(number, key_id);
    }

    /// Restores a position's filled values from a base.
    pub fn restore_position(&self, p: FollowedPosition) {
        self.with_key(&p.key_id, |slot| {
            let pos = slot.counters.positions.entry(p.symbol).or_default();
            pos.bought = pos.bought.saturating_add(p.bought);
            pos.sold = pos.sold.saturating_add(p.sold);
        });
    }

    /// Restores an order's fingerprint allowed at `mono_ns`, for duplicates.
    pub fn restore_seen(&self, key_id: &KeyId, fp: u64, mono_ns: u64) {
        self.with_key(key_id, |slot| {
            let c = &mut *slot.counters;
            let pos = c.seen_order.partition_point(|(t, _)| *t <= mono_ns);
            c.seen_order.insert(pos, (mono_ns, fp));
            if c.seen.get(&fp).is_none_or(|t| *t <= mono_ns) {
                c.seen.insert(fp, mono_ns);
            }
        });
    }

    /// Restores a finished order from a base.
    pub fn restore_finished(&self, number: u64, key_id: KeyId) {
        lock(&self.finished).note(number, key_id);
    }

    /// What an event for `ticket` may change, taken before it is applied, so that
    /// [`Ledger::undo_event`] can put it back (the caller serializes changes to the
    /// ledger between the two).
    pub fn event_undo(&self, ticket: u64) -> EventUndo {
        let number = self.ticket_number(ticket);
        let key_id = self.open_index.get(&number).map(|k| k.clone());
        let (order, position) = match &key_id {
            Some(k) => self.with_key(k, |slot| {
                let order = slot.counters.open.get(&number).cloned();
                let position = order
                    .as_ref()
                    .map(|o| (o.symbol.clone(), slot.counters.positions.get(&o.symbol).cloned()));
                (order, position)
            }),
            None => (None, None),
        };
        let was_finished = lock(&self.finished).by_number.contains_key(&number);
        EventUndo {
            number,
            key_id,
            order,
            position,
            was_finished,
        }
    }

    /// Takes back an event that could not be made durable.
    pub fn undo_event(&self, undo: EventUndo, applied: &EventApplied) {
        let EventApplied::Applied { released, .. } = applied else {
            return;
        };
        if let (Some(key_id), Some(order)) = (&undo.key_id, undo.order) {
            self.with_key(key_id, |slot| {
                let c = &mut *slot.counters;
                c.open.insert(undo.number, order);
                if let Some((symbol, position)) = undo.position {
                    match position {
                        Some(p) => {
                            c.positions.insert(symbol, p);
                        }
                        None => {
                            c.positions.remove(&symbol);
                        }
                    }
                }
            });
            self.open_index.insert(undo.number, key_id.clone());
            if !undo.was_finished {
                lock(&self.finished).by_number.remove(&undo.number);
            }
        }
        if let Some(r) = released {
            self.undo_release(r);
        }
    }
}
