//! The ledger in memory: per key, the orders allowed in the last 60 s and the value
//! allowed today (UTC), plus the tickets that let a rejected order's value be released.
//!
//! Counters are kept by key id, not by snapshot, so a reload never resets them (and a key
//! revoked and made again under the same id keeps its day's total). Check-and-consume for
//! one key happens under that key's mutex: N threads racing one key are admitted exactly as
//! often as its limits allow.
//!
//! For a key with `max_open_orders`, `max_position_value` or `duplicate_window_ms` the
//! ledger also follows each order after its check ([`Charge::track`]): the orders still
//! open (by ledger number), per symbol the value filled and the value still open in each
//! direction, and the orders of the last window for duplicates; [`Ledger::order_event`]
//! applies what the broker reports, once. The daemon's local store journals the orders
//! and events and replays them ([`Ledger::restore_follow`], [`Ledger::restore_event`]);
//! its base keeps [`Ledger::dump_follow`].
//!
//! A consumption or release that could not be made durable is undone
//! ([`Ledger::undo_consumption`], [`Ledger::undo_release`]): a refused order leaves no
//! trace in the counters, the usage figures or later decisions.

use std::collections::{HashMap, VecDeque};

/// The maps of followed orders hash ledger numbers, fingerprints and symbols on the order
/// path: a fast hash, seeded per process (foldhash's), not SipHash.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::{Arc, Mutex, MutexGuard};

use dashmap::DashMap;
use futu_auth_proto::{ErrorKind, KeyId, OrderEventKind, OrderEventRefusal};

use super::ticket::TicketCipher;
use super::{Charge, Charged, Track};
use crate::money::Money;

/// The sliding window of `max_orders_per_minute`.
pub const RATE_WINDOW_NS: u64 = 60_000_000_000;

/// How long after an Allow its ticket may be released.
pub const RELEASE_WINDOW_NS: u64 = 15 * 60 * 1_000_000_000;

/// Most tickets kept at once; past this the oldest are forgotten before their window
/// ends, so memory stays bounded whatever the order rate (a sustained 1 100 orders/s
/// fills the 15-minute window).
pub const MAX_TICKETS: usize = 1_000_000;

/// For a key without `max_orders_per_minute`, the window is kept only for `usage`, and
/// only its newest this many orders: usage then reads "at least" this many.
pub const UNLIMITED_WINDOW_CAP: usize = 10_000;

/// Most open orders followed for one key: past this its orders are refused `open_orders`
/// whatever its `max_open_orders`, so that a gateway that never reports what became of
/// its orders cannot grow the ledger without bound.
pub const MAX_OPEN_ORDERS_KEPT: usize = 100_000;

/// Most finished orders remembered (so that an event for one is a duplicate, not an
/// unknown ticket); past this the oldest are forgotten.
pub const MAX_FINISHED: usize = 1_000_000;

/// Ledger numbers restored from a journal are below this (2^62): no ledger hands out that
/// many, so a larger one is damage, and is not allowed to exhaust the numbers after it.
pub const MAX_NUMBER: u64 = 1 << 62;

/// One key's counters, only ever touched under its lock, inside this module.
#[derive(Debug, Default, Clone, PartialEq)]
struct KeyCounters {
    /// Monotonic times (ns) of the orders allowed in the last 60 s, oldest first.
    pub recent: VecDeque<u64>,
    /// The UTC day `used` counts.
    pub day: i64,
    /// Value allowed on `day`, less releases.
    pub used: Money,
    /// Orders followed and not finished, by ledger number (keys with `max_open_orders`
    /// or `max_position_value`).
    open: FastMap<u64, OpenOrder>,
    /// Per symbol, the value filled and open in each direction.
    positions: FastMap<Box<str>, Position>,
    /// For `duplicate_window_ms`: each order's fingerprint ([`Track::fingerprint`]) and the
    /// monotonic time it was last allowed at.
    seen: FastMap<u64, u64>,
    /// The same, oldest first, to forget them once out of the window.
    seen_order: VecDeque<(u64, u64)>,
}

/// Whether an order event's figures fit its kind, before any ledger looks at its order: a
/// fill carries the quantity filled so far and its average price, finite and above zero;
/// other events carry neither. `Err`: why not, for the `bad_figures` refusal.
pub fn event_figures(
    kind: OrderEventKind,
    filled_qty: Option<f64>,
    fill_price: Option<f64>,
) -> Result<(), String> {
    match (kind.is_fill(), filled_qty, fill_price) {
        (true, Some(q), Some(p)) if !(q.is_finite() && q > 0.0 && p.is_finite() && p > 0.0) => Err(format!(
            "a fill of {q} at {p}: quantity and price must be finite numbers above zero"
        )),
        (true, Some(_), Some(_)) | (false, None, None) => Ok(()),
        (true, _, _) => Err(format!("a {kind} event needs filled_qty and fill_price")),
        (false, _, _) => Err(format!("a {kind} event carries no filled_qty or fill_price")),
    }
}

/// An order followed after its check.
#[derive(Debug, Clone, PartialEq)]
struct OpenOrder {
    symbol: Box<str>,
    buys: bool,
    qty: f64,
    price: Option<f64>,
    /// The quantity filled so far (the last fill event's, which counts the whole order).
    filled_qty: f64,
    /// What is filled, by value (filled_qty × the average fill price).
    filled_value: Money,
    /// What is still open, by value (the rest × the limit price), counted in the position.
    open_value: Money,
    /// The broker took it.
    accepted: bool,
}

/// One symbol's position for a key.
#[derive(Debug, Clone, Default, PartialEq)]
struct Position {
    /// Value of filled buys (BUY, BUY_BACK).
    bought: Money,
    /// Value of filled sells (SELL, SELL_SHORT).
    sold: Money,
    /// Value still open in orders that buy.
    open_buys: Money,
    /// Value still open in orders that sell.
    open_sells: Money,
}

impl Position {
    /// The position in one direction: what is held long (or short), plus the open orders
    /// that would add to it.
    fn exposure(&self, buys: bool) -> Money {
        if buys {
            self.bought
                .saturating_sub(self.sold)
                .saturating_add(self.open_buys)
        } else {
            self.sold
                .saturating_sub(self.bought)
                .saturating_add(self.open_sells)
        }
    }

    fn open_mut(&mut self, buys: bool) -> &mut Money {
        if buys {
            &mut self.open_buys
        } else {
            &mut self.open_sells
        }
    }

    fn filled_mut(&mut self, buys: bool) -> &mut Money {
        if buys {
            &mut self.bought
        } else {
            &mut self.sold
        }
    }
}

impl KeyCounters {
    /// Forgets the orders that left the duplicate window.
    fn forget_seen(&mut self, mono_ns: u64, window_ns: u64) {
        while let Some(&(t, fp)) = self.seen_order.front() {
            if mono_ns.saturating_sub(t) < window_ns {
                break;
            }
            self.seen_order.pop_front();
            if self.seen.get(&fp) == Some(&t) {
                self.seen.remove(&fp);
            }
        }
    }

    /// The limits only a followed order has, in order: `duplicate`, then (after the rate
    /// and the daily value, [`KeySlot::check`]) `open_orders` and `position`. `value` is
    /// the order's.
    /// `fp` is `t`'s [`Track::fingerprint`], worked out once by the caller.
    fn check_duplicate(&mut self, t: &Track, fp: u64, mono_ns: u64) -> Option<Charged> {
        let window = t.duplicate_window_ns?;
        self.forget_seen(mono_ns, window);
        let at = *self.seen.get(&fp)?;
        let since_ns = mono_ns.saturating_sub(at);
        (since_ns < window).then_some(Charged::Duplicate { since_ns })
    }

    fn check_open_and_position(&self, t: &Track, value: Money) -> Option<Charged> {
        if follows_open(t) {
            let open = self.open.len();
            if t.max_open_orders.is_some_and(|max| open as u64 >= u64::from(max))
                || open >= MAX_OPEN_ORDERS_KEPT
            {
                return Some(Charged::OpenOrders { open: open as u32 });
            }
        }
        let max = t.max_position_value?;
        let position = self
            .positions
            .get(&t.symbol)
            .map_or(Money::ZERO, |p| p.exposure(t.buys));
        match position.checked_add(value) {
            Some(total) if total <= max => None,
            _ => Some(Charged::Position { position }),
        }
    }

    /// Follows an order just taken: its fingerprint for duplicates (`fp`, when the caller
    /// has worked it out already), and the order itself when open orders or positions are
    /// limited.
    fn follow(&mut self, t: &Track, fp: Option<u64>, number: u64, mono_ns: u64, value: Money) {
        if t.duplicate_window_ns.is_some() {
            let fp = fp.unwrap_or_else(|| t.fingerprint());
            self.seen.insert(fp, mono_ns);
            self.seen_order.push_back((mono_ns, fp));
        }
        if follows_open(t) {
            let open = self
                .positions
                .entry(t.symbol.clone())
                .or_default()
                .open_mut(t.buys);
            *open = open.saturating_add(value);
            self.open.insert(
                number,
                OpenOrder {
                    symbol: t.symbol.clone(),
                    buys: t.buys,
                    qty: t.qty,
                    price: t.price,
                    filled_qty: 0.0,
                    filled_value: Money::ZERO,
                    open_value: value,
                    accepted: false,
                },
            );
        }
    }

    /// Takes an order out of the open ones, and its open value out of its position.
    fn close(&mut self, number: u64) -> Option<OpenOrder> {
        let o = self.open.remove(&number)?;
        if let Some(p) = self.positions.get_mut(&o.symbol) {
            let open = p.open_mut(o.buys);
            *open = open.saturating_sub(o.open_value);
        }
        Some(o)
    }
}

/// Whether the ledger keeps `t`'s order open until it finishes.
fn follows_open(t: &Track) -> bool {
    t.max_open_orders.is_some() || t.max_position_value.is_some()
}

impl KeyCounters {
    /// Drops what fell out of the window and rolls the day over.
    fn advance(&mut self, mono_ns: u64, day: i64) {
        while self
            .recent
            .front()
            .is_some_and(|t| mono_ns.saturating_sub(*t) >= RATE_WINDOW_NS)
        {
            self.recent.pop_front();
        }
        // Days only move forward: a request stamped just before midnight that takes the
        // lock after one stamped just after (or a wall clock stepped back) counts against
        // the newer day instead of wiping its total.
        if day > self.day {
            self.day = day;
            self.used = Money::ZERO;
        }
    }

    /// Orders allowed in the 60 s before `mono_ns`.
    fn orders_in_window(&mut self, mono_ns: u64, day: i64) -> u32 {
        self.advance(mono_ns, day);
        self.recent.len() as u32
    }
}

/// What a check found against the counters, under the key's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LimitCheck {
    /// Both limits pass.
    Pass,
    /// `max_orders_per_minute` orders were already allowed in the window.
    Rate {
        /// Orders in the window.
        in_window: u32,
        /// Until the oldest of them leaves the window (0 with a rate of 0: waiting does
        /// not help).
        retry_after_ns: u64,
    },
    /// Today's total plus this value would pass the daily cap.
    Daily {
        /// Today's total so far.
        used: Money,
    },
}

/// A consumption that was made: what the daemon writes to its ledger log before it sends
/// the Allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumption {
    /// The key.
    pub key_id: KeyId,
    /// The ledger's own number for the order: consecutive, kept in the journal, never shown
    /// to a client.
    pub number: u64,
    /// The ticket handed out with the Allow: `number` encrypted ([`super::ticket`]).
    pub ticket: u64,
    /// Monotonic time of the order (ns).
    pub mono_ns: u64,
    /// Wall time of the order (Unix seconds and nanoseconds), for the log.
    pub unix_ns: i128,
    /// UTC day the value counts on.
    pub day: i64,
    /// The order's value.
    pub value: Money,
}

#[derive(Debug, Clone)]
struct Ticket {
    key_id: KeyId,
    day: i64,
    value: Money,
    issued_mono_ns: u64,
    released: bool,
}

impl Ticket {
    fn of(c: &Consumption) -> Ticket {
        Ticket {
            key_id: c.key_id.clone(),
            day: c.day,
            value: c.value,
            issued_mono_ns: c.mono_ns,
            released: false,
        }
    }
}

/// What a release did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// The ledger number of the released order (what the journal records).
    pub number: u64,
    /// The key whose total went down.
    pub key_id: KeyId,
    /// The value refunded (zero when the order's day is over).
    pub refunded: Money,
    /// UTC day of the refunded order.
    pub day: i64,
}

/// Why a release was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    /// No ticket with this number.
    #[error("unknown ticket")]
    Unknown,
    /// Released before.
    #[error("ticket already released")]
    AlreadyReleased,
    /// Older than [`RELEASE_WINDOW_NS`].
    #[error("ticket is older than the 15-minute release window")]
    Expired,
}

impl ReleaseError {
    /// The protocol's error kind for it.
    pub fn kind(self) -> ErrorKind {
        match self {
            ReleaseError::Unknown => ErrorKind::UnknownTicket,
            ReleaseError::AlreadyReleased => ErrorKind::AlreadyReleased,
            ReleaseError::Expired => ErrorKind::TicketExpired,
        }
    }
}

/// What [`Ledger::dump`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerDump {
    /// (key, UTC day, value used that day).
    pub totals: Vec<(KeyId, i64, Money)>,
    /// Orders within the release window, with whether they were released; `unix_ns` is
    /// left 0 for the caller to fill from `mono_ns`.
    pub recent: Vec<(Consumption, bool)>,
    /// The next ticket number, so numbers are never handed out twice across restarts.
    pub next_ticket: u64,
    /// The key of the ticket cipher, so tickets stay releasable across restarts.
    pub ticket_key: [u8; 16],
}

/// Every key's counters and the outstanding tickets.
#[derive(Debug)]
pub struct Ledger {
    keys: DashMap<KeyId, Arc<Mutex<KeyCounters>>>,
    tickets: Mutex<TicketBook>,
    /// The key of each open order followed, by ledger number: where an event goes.
    open_index: DashMap<u64, KeyId>,
    /// Orders followed that finished, by ledger number, oldest first in `finished_order`.
    finished: Mutex<Finished>,
}

/// Finished orders, remembered so that an event for one is a duplicate.
#[derive(Debug, Default)]
struct Finished {
    by_number: HashMap<u64, KeyId>,
    order: VecDeque<u64>,
}

impl Finished {
    fn note(&mut self, number: u64, key_id: KeyId) {
        if self.by_number.insert(number, key_id).is_none() {
            self.order.push_back(number);
        }
        while self.order.len() > MAX_FINISHED {
            if let Some(n) = self.order.pop_front() {
                self.by_number.remove(&n);
            }
        }
    }
}

/// What an order event did ([`Ledger::order_event`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventApplied {
    /// It changed the ledger; a rejection gave the order's daily value back.
    Applied {
        /// The order's key.
        key_id: KeyId,
        /// For a rejection: the release it made (what the daemon's journal records).
        released: Option<Released>,
    },
    /// It was applied before, or the order is finished: nothing changed.
    Duplicate {
        /// The order's key.
        key_id: KeyId,
    },
}

/// Outstanding tickets. Numbers are handed out consecutively under this book's lock, so
/// they index a ring: no hashing on the order path, and forgetting the oldest is a pop.
#[derive(Debug)]
struct TicketBook {
    /// The number of `ring[0]`.
    base: u64,
    /// Tickets `base..base + ring.len()`; `None` for numbers not (or no longer) held.
    ring: VecDeque<Option<Ticket>>,
    /// The next number to hand out.
    next: u64,
    /// Turns numbers into the tickets clients see, and back.
    cipher: TicketCipher,
}

impl TicketBook {
    fn get_mut(&mut self, number: u64) -> Option<&mut Ticket> {
        let i = usize::try_from(number.checked_sub(self.base)?).ok()?;
        self.ring.get_mut(i)?.as_mut()
    }

    /// Forgets tickets issued a release window before `mono_ns`.
    fn forget_before(&mut self, mono_ns: u64) {
        while let Some(front) = self.ring.front() {
            let old = front
                .as_ref()
                .is_none_or(|t| mono_ns.saturating_sub(t.issued_mono_ns) >= RELEASE_WINDOW_NS);
            if !old {
                break;
            }
            self.ring.pop_front();
            self.base += 1;
        }
        if self.ring.is_empty() {
            self.base = self.next;
        }
    }

    /// Files `ticket` under `number`, growing the ring as needed.
    fn put(&mut self, number: u64, ticket: Ticket) {
        if self.ring.is_empty() {
            self.base = number;
        }
        if number < self.base {
            return; // Older than everything held: past the window already.
        }
        // The ring holds at most MAX_TICKETS consecutive numbers ending at the newest: a
        // number far past the others (a damaged journal could hold any) forgets the ones it
        // leaves behind rather than growing the ring to reach it.
        let keep_from = number.saturating_sub(MAX_TICKETS as u64 - 1);
        if keep_from > self.base {
            let drop = usize::try_from(keep_from - self.base).unwrap_or(usize::MAX);
            if drop >= self.ring.len() {
                self.ring.clear();
            } else {
                self.ring.drain(..drop);
            }
            self.base = keep_from;
        }
        let i = (number - self.base) as usize;
        if i >= self.ring.len() {
            self.ring.resize(i + 1, None);
        }
        self.ring[i] = Some(ticket);
        self.next = self.next.max(number.saturating_add(1));
    }
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger::new()
    }
}

/// A key's counters, locked: check and consume happen while this is held.
struct KeySlot<'a> {
    counters: MutexGuard<'a, KeyCounters>,
    ledger: &'a Ledger,
    key_id: &'a KeyId,
    /// The rate limit the last check used, for how much window `consume` keeps.
    limit: Option<u32>,
}

impl Ledger {
    /// An empty ledger; numbers start at 1, tickets are encrypted under a fresh key.
    pub fn new() -> Ledger {
        Ledger {
            keys: DashMap::new(),
            tickets: Mutex::new(TicketBook {
                base: 1,
                ring: VecDeque::new(),
                next: 1,
                cipher: TicketCipher::random(),
            }),
            open_index: DashMap::new(),
            finished: Mutex::new(Finished::default()),
        }
    }

    /// Uses the ticket cipher key kept with a restored ledger.
    pub fn restore_ticket_key(&self, key: [u8; 16]) {
        lock(&self.tickets).cipher = TicketCipher::from_key(key);
    }

    /// The ticket a client holds for ledger number `number`.
    pub fn public_ticket(&self, number: u64) -> u64 {
        lock(&self.tickets).cipher.ticket(number)
    }

    /// The counters of `key_id`, made empty if it has none yet. Private: the lock in it
    /// is taken only by this module, one key at a time.
    fn counters(&self, key_id: &KeyId) -> Arc<Mutex<KeyCounters>> {
        if let Some(c) = self.keys.get(key_id) {
            return Arc::clone(&c);
        }
        Arc::clone(&self.keys.entry(key_id.clone()).or_default())
    }

    /// Checks `charge` against its key's rate window and daily total and, when both pass
    /// and it is not a dry run, takes them: atomically, under the key's lock.
    pub fn take(&self, charge: &Charge, mono_ns: u64, unix_ns: i128, day: i64) -> Charged {
        // Worked out before the key's lock is taken, and once.
        let fp = charge
            .track
            .as_ref()
            .filter(|t| t.duplicate_window_ns.is_some())
            .map(Track::fingerprint);
        let taken = self.with_key(&charge.key_id, |slot| {
            if let (Some(t), Some(fp)) = (&charge.track, fp) {
                if let Some(dup) = slot.counters.check_duplicate(t, fp, mono_ns) {
                    return dup;
                }
            }
            match slot.check(
                mono_ns,
                day,
                charge.value,
                charge.max_orders_per_minute,
                charge.max_daily_value,
            ) {
                LimitCheck::Rate {
                    in_window,
                    retry_after_ns,
                } => Charged::Rate {
                    in_window,
                    retry_after_ns,
                },
                LimitCheck::Daily { used } => Charged::Daily { used },
                LimitCheck::Pass => {
                    let track = charge.track.as_ref();
                    if let Some(refused) =
                        track.and_then(|t| slot.counters.check_open_and_position(t, charge.value))
                    {
                        return refused;
                    }
                    if charge.dry_run {
                        return Charged::Passed(None);
                    }
                    let c = slot.consume(mono_ns, unix_ns, day, charge.value);
                    if let Some(t) = track {
                        slot.counters.follow(t, fp, c.number, mono_ns, charge.value);
                    }
                    Charged::Passed(Some(c))
                }
            }
        });
        if let (Some(t), Charged::Passed(Some(c))) = (&charge.track, &taken) {
            if follows_open(t) {
                self.open_index.insert(c.number, c.key_id.clone());
            }
        }
        taken
    }

    /// Applies what became of an allowed order ([`futu_auth_proto::OrderEvent`]), by the
    /// ticket its client holds, at `mono_ns` on UTC day `today`: once — the same event
    /// again, or any event for an order finished already, is a duplicate that changes
    /// nothing.
    ///
    /// A fill's `filled_qty` is the quantity filled so far, the whole order's, and
    /// `fill_price` their average price: a fill event repeated, or one older than the last
    /// applied, changes nothing. For an order the ledger does not follow (its key has no
    /// `max_open_orders` or `max_position_value`) only a rejection does something: it gives
    /// the daily value back as [`Ledger::release`] does; other events for it are applied
    /// with nothing to change while its ticket is within the release window.
    pub fn order_event(
        &self,
        ticket: u64,
        kind: OrderEventKind,
        filled_qty: Option<f64>,
        fill_price: Option<f64>,
        mono_ns: u64,
        today: i64,
    ) -> Result<EventApplied, (OrderEventRefusal, String)> {
        let bad = |m: String| Err((OrderEventRefusal::BadFigures, m));
        if let Err(m) = event_figures(kind, filled_qty, fill_price) {
            return bad(m);
        }
        let number = lock(&self.tickets).cipher.number(ticket);
        let Some(key_id) = self.open_index.get(&number).map(|k| k.clone()) else {
            if let Some(key_id) = lock(&self.finished).by_number.get(&number) {
                return Ok(EventApplied::Duplicate {
                    key_id: key_id.clone(),
                });
            }
            return self.event_of_unfollowed(number, kind, mono_ns, today);
        };
        let outcome = self.with_key(&key_id, |slot| {
            let c = &mut *slot.counters;
            let Some(o) = c.open.get_mut(&number) else {
                return Ok(EventApplied::Duplicate {
                    key_id: key_id.clone(),
                });
            };
            let applied = Ok(EventApplied::Applied {
                key_id: key_id.clone(),
                released: None,
            });
            match kind {
                OrderEventKind::Accepted if o.accepted => Ok(EventApplied::Duplicate {
                    key_id: key_id.clone(),
                }),
                OrderEventKind::Accepted => {
                    o.accepted = true;
                    applied
                }
                OrderEventKind::PartiallyFilled | OrderEventKind::Filled => {
                    let (q, p) = (filled_qty.unwrap_or(0.0), fill_price.unwrap_or(0.0));
                    // A little over the order's quantity is float rounding at the broker.
                    if q > o.qty * (1.0 + 1e-9) {
                        return bad(format!("{q} filled of an order of {}", o.qty));
                    }
                    if q < o.filled_qty || (q == o.filled_qty && kind == OrderEventKind::PartiallyFilled) {
                        return Ok(EventApplied::Duplicate {
                            key_id: key_id.clone(),
                        });
                    }
                    let Some(filled_value) = Money::order_value(q, p) else {
                        return bad(format!("a fill of {q} at {p} is too large to count"));
                    };
                    let rest = (o.qty - q).max(0.0);
                    let open_value = match (kind, o.price) {
                        (OrderEventKind::PartiallyFilled, Some(limit)) if rest > 0.0 => {
                            Money::order_value(rest, limit).unwrap_or(o.open_value)
                        }
                        _ => Money::ZERO,
                    };
                    let (old_filled, old_open, buys, symbol) =
                        (o.filled_value, o.open_value, o.buys, o.symbol.clone());
                    o.filled_qty = q;
                    o.filled_value = filled_value;
                    o.open_value = open_value;
                    o.accepted = true;
                    let pos = c.positions.entry(symbol).or_default();
                    let filled = pos.filled_mut(buys);
                    *filled = filled.saturating_sub(old_filled).saturating_add(filled_value);
                    let open = pos.open_mut(buys);
                    *open = open.saturating_sub(old_open).saturating_add(open_value);
                    if kind == OrderEventKind::Filled {
                        c.close(number);
                    }
                    applied
                }
                OrderEventKind::Cancelled => {
                    c.close(number);
                    applied
                }
                OrderEventKind::Rejected => {
                    if o.filled_qty > 0.0 {
                        return bad(format!(
                            "the order has {} filled: it can be cancelled, not rejected",
                            o.filled_qty
                        ));
                    }
                    c.close(number);
                    applied
                }
            }
        })?;
        if kind.finishes() && matches!(outcome, EventApplied::Applied { .. }) {
            self.open_index.remove(&number);
            lock(&self.finished).note(number, key_id.clone());
            if kind == OrderEventKind::Rejected {
                // Outside the key's lock: a refund takes it. A ticket forgotten by now
                // (past the release window) or released already gives nothing back.
                return Ok(EventApplied::Applied {
                    key_id,
                    released: self.refund(number, None, today).ok(),
                });
            }
        }
        Ok(outcome)
    }

    /// An event for an order the ledger does not follow: a rejection releases it.
    fn event_of_unfollowed(
        &self,
        number: u64,
        kind: OrderEventKind,
        mono_ns: u64,
        today: i64,
    ) -> Result<EventApplied, (OrderEventRefusal, String)> {
        let unknown = || {
            Err((
                OrderEventRefusal::UnknownTicket,
                "no order the ledger knows has this ticket".to_string(),
            ))
        };
        if kind == OrderEventKind::Rejected {
            return match self.refund(number, Some(mono_ns), today) {
                Ok(r) => Ok(EventApplied::Applied {
                    key_id: r.key_id.clone(),
                    released: Some(r),
                }),
                Err(ReleaseError::AlreadyReleased) => {
                    let key_id = lock(&self.tickets).get_mut(number).map(|t| t.key_id.clone());
                    key_id.map_or_else(unknown, |key_id| Ok(EventApplied::Duplicate { key_id }))
                }
                Err(ReleaseError::Unknown | ReleaseError::Expired) => unknown(),
            };
        }
        let mut book = lock(&self.tickets);
        match book.get_mut(number) {
            Some(t) if mono_ns.saturating_sub(t.issued_mono_ns) < RELEASE_WINDOW_NS => {
                Ok(EventApplied::Applied {
                    key_id: t.key_id.clone(),
                    released: None,
                })
            }
            _ => unknown(),
        }
    }

    /// Orders open now for `key_id` and its position in `symbol` (long, short), for
    /// tests and usage.
    pub fn open_orders(&self, key_id: &KeyId) -> u32 {
        self.with_key(key_id, |slot| slot.counters.open.len() as u32)
    }

    /// The position of `key_id` in `symbol` in one direction (long when `buys`): filled
    /// value plus the open orders that add to it.
    pub fn position(&self, key_id: &KeyId, symbol: &str, buys: bool) -> Money {
        self.with_key(key_id, |slot| {
            slot.counters
                .positions
                .get(symbol)
                .map_or(Money::ZERO, |p| p.exposure(buys))
        })
    }

    /// Runs `f` with the key's counters locked; `f` gets a [`KeySlot`] to check and consume.
    fn with_key<T>(&self, key_id: &KeyId, f: impl FnOnce(&mut KeySlot<'_>) -> T) -> T {
        let counters = self.counters(key_id);
        let guard = lock(&counters);
        let mut slot = KeySlot {
            counters: guard,
            ledger: self,
            key_id,
            limit: None,
        };
        f(&mut slot)
    }

    /// Orders in the last 60 s and value used today, for `Usage`.
    pub fn usage(&self, key_id: &KeyId, mono_ns: u64, day: i64) -> (u32, Money) {
        self.with_key(key_id, |slot| {
            let n = slot.counters.orders_in_window(mono_ns, day);
            (n, slot.counters.used)
        })
    }

    /// Refunds the value of the order a client's `ticket` names to its key's daily total:
    /// once, within the window, and nothing once the order's UTC day is over (`today` is
    /// the UTC day at the release).
    /// A followed order released is finished, as if rejected.
    pub fn release(&self, ticket: u64, mono_ns: u64, today: i64) -> Result<Released, ReleaseError> {
        let number = lock(&self.tickets).cipher.number(ticket);
        let released = self.refund(number, Some(mono_ns), today)?;
        if let Some((_, key_id)) = self.open_index.remove(&number) {
            self.with_key(&key_id, |slot| slot.counters.close(number));
            lock(&self.finished).note(number, key_id);
        }
        Ok(released)
    }

    /// Takes back a release that could not be made durable: the ticket is outstanding
    /// again and its value counts again (if its day is still the key's day).
    pub fn undo_release(&self, r: &Released) {
        if let Some(t) = lock(&self.tickets).get_mut(r.number) {
            t.released = false;
        }
        let counters = self.counters(&r.key_id);
        let mut c = lock(&counters);
        if c.day == r.day {
            c.used = c.used.saturating_add(r.refunded);
        }
    }

    /// Takes back a consumption that could not be made durable, as if the order had never
    /// been allowed: its rate slot, its value in the day's total and its ticket go.
    pub fn undo_consumption(&self, c: &Consumption) {
        {
            let counters = self.counters(&c.key_id);
            let mut k = lock(&counters);
            // The newest entry with this time is the one to go (times are pushed in order;
            // an equal time from another order is indistinguishable and as good).
            if let Some(i) = k.recent.iter().rposition(|t| *t == c.mono_ns) {
                k.recent.remove(i);
            }
            if k.day == c.day {
                k.used = k.used.saturating_sub(c.value);
            }
            k.close(c.number);
            if let Some(i) = k.seen_order.iter().rposition(|(t, _)| *t == c.mono_ns) {
                if let Some((t, fp)) = k.seen_order.remove(i) {
                    if k.seen.get(&fp) == Some(&t) {
                        k.seen.remove(&fp);
                    }
                }
            }
        }
        self.open_index.remove(&c.number);
        let mut book = lock(&self.tickets);
        if let Some(i) = c
            .number
            .checked_sub(book.base)
            .and_then(|i| usize::try_from(i).ok())
        {
            if let Some(slot) = book.ring.get_mut(i) {
                *slot = None;
            }
        }
    }

    fn refund(
        &self,
        number: u64,
        within_window_at: Option<u64>,
        today: i64,
    ) -> Result<Released, ReleaseError> {
        let t = {
            let mut book = lock(&self.tickets);
            let t = book.get_mut(number).ok_or(ReleaseError::Unknown)?;
            if t.released {
                return Err(ReleaseError::AlreadyReleased);
            }
            if let Some(mono_ns) = within_window_at {
                if mono_ns.saturating_sub(t.issued_mono_ns) >= RELEASE_WINDOW_NS {
                    return Err(ReleaseError::Expired);
                }
            }
            t.released = true;
            t.clone()
        };
        let counters = self.counters(&t.key_id);
        let mut c = lock(&counters);
        // The key's counters roll over only when the key is next used (`advance`): right
        // after midnight they may still hold the order's day although that day is over. So
        // the order's day must be the counters' day and not before `today` (a wall clock
        // stepped back counts as the newer day, as in `advance`).
        let refunded = if t.day == c.day && t.day >= today {
            t.value.min(c.used)
        } else {
            Money::ZERO
        };
        c.used = c.used.saturating_sub(refunded);
        Ok(Released {
            number,
            key_id: t.key_id,
            refunded,
            day: t.day,
        })
    }

    /// Replays a consumption read back from the daemon's ledger log after a restart: it
    /// counts toward its day's total, the rate window and the release window.
    /// `c.mono_ns` is its time translated to this process's monotonic clock.
    pub fn restore_consumption(&self, c: &Consumption, now_mono_ns: u64, today: i64) {
        self.restore_total(&c.key_id, c.day, c.value, now_mono_ns, today);
        self.restore_recent(c, false, now_mono_ns, today);
    }

    /// Replays a day's total written by compaction.
    pub fn restore_total(&self, key_id: &KeyId, day: i64, used: Money, now_mono_ns: u64, today: i64) {
        let counters = self.counters(key_id);
        let mut k = lock(&counters);
        k.advance(now_mono_ns, today);
        if day == today {
            k.used = k.used.saturating_add(used);
        }
    }

    /// Replays a recent order written by compaction: it takes a place in the rate window
    /// (if within 60 s) and keeps its ticket (if within the release window), but its value
    /// is already in the day's total.
    pub fn restore_recent(&self, c: &Consumption, released: bool, now_mono_ns: u64, today: i64) {
        {
            let counters = self.counters(&c.key_id);
            let mut k = lock(&counters);
            k.advance(now_mono_ns, today);
            if now_mono_ns.saturating_sub(c.mono_ns) < RATE_WINDOW_NS {
                let pos = k.recent.partition_point(|t| *t <= c.mono_ns);
                k.recent.insert(pos, c.mono_ns);
            }
        }
        if c.number >= MAX_NUMBER {
            // No ledger hands out that many numbers: a damaged journal. Its value counts
            // (above); its number is not taken up, or every later order would share it.
            return;
        }
        let mut book = lock(&self.tickets);
        book.forget_before(now_mono_ns);
        book.next = book.next.max(c.number + 1);
        if now_mono_ns.saturating_sub(c.mono_ns) < RELEASE_WINDOW_NS {
            let mut t = Ticket::of(c);
            t.released = released;
            book.put(c.number, t);
        }
    }

    /// Replays a release of ledger number `number` read back from the ledger log (it was
    /// within its window when it was made; a ticket already released or forgotten changes
    /// nothing). `today` is the UTC day at the replay: an order of an earlier day had its
    /// day's total dropped, and refunds nothing.
    pub fn restore_release(&self, number: u64, today: i64) {
        let _ = self.refund(number, None, today);
        if let Some((_, key_id)) = self.open_index.remove(&number) {
            self.with_key(&key_id, |slot| slot.counters.close(number));
            lock(&self.finished).note(number, key_id);
        }
    }

    /// Replays an order event for ledger number `number` read back from a store, at
    /// `mono_ns` (what it did then it does again; refusals change nothing).
    pub fn restore_event(
        &self,
        number: u64,
        kind: OrderEventKind,
        filled_qty: Option<f64>,
        fill_price: Option<f64>,
        mono_ns: u64,
        today: i64,
    ) {
        let ticket = self.public_ticket(number);
        let _ = self.order_event(ticket, kind, filled_qty, fill_price, mono_ns, today);
    }

    /// Every key's day and value used that day.
    fn totals(&self) -> Vec<(KeyId, i64, Money)> {
        self.keys
            .iter()
            .map(|e| {
                let c = lock(e.value());
                (e.key().clone(), c.day, c.used)
            })
            .collect()
    }

    /// Every key's day and total, and every ticket still in its release window: what
    /// compaction writes so that a restart rebuilds the same ledger.
    pub fn dump(&self) -> LedgerDump {
        let totals = self.totals();
        let book = lock(&self.tickets);
        let recent = book
            .ring
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.as_ref().map(|t| (book.base + i as u64, t)))
            .map(|(number, t)| {
                (
                    Consumption {
                        key_id: t.key_id.clone(),
                        number,
                        ticket: book.cipher.ticket(number),
                        mono_ns: t.issued_mono_ns,
                        unix_ns: 0,
                        day: t.day,
                        value: t.value,
                    },
                    t.released,
                )
            })
            .collect();
        LedgerDump {
            totals,
            recent,
            next_ticket: book.next,
            ticket_key: book.cipher.key(),
        }
    }

    /// Continues ticket numbers from a restored ledger (never backwards).
    pub fn restore_next_ticket(&self, next: u64) {
        let mut book = lock(&self.tickets);
        book.next = book.next.max(next.min(MAX_NUMBER));
        if book.ring.is_empty() {
            book.base = book.next;
        }
    }

    /// Hands out the next ledger number and its ticket for a consumption made now.
    fn issue_ticket(&self, key_id: &KeyId, mono_ns: u64, day: i64, value: Money) -> (u64, u64) {
        let mut book = lock(&self.tickets);
        book.forget_before(mono_ns);
        let number = book.next;
        book.put(
            number,
            Ticket {
                key_id: key_id.clone(),
                day,
                value,
                issued_mono_ns: mono_ns,
                released: false,
            },
        );
        (number, book.cipher.ticket(number))
    }
}

impl KeySlot<'_> {
    /// Checks `max_orders_per_minute` and `max_daily_value` for an order of `value` at
    /// `mono_ns` on UTC `day`, without consuming.
    fn check(
        &mut self,
        mono_ns: u64,
        day: i64,
        value: Money,
        max_per_minute: Option<u32>,
        max_daily: Option<Money>,
    ) -> LimitCheck {
        self.limit = max_per_minute;
        let c = &mut *self.counters;
        c.advance(mono_ns, day);
        if let Some(max) = max_per_minute {
            if c.recent.len() as u64 >= u64::from(max) {
                // The max-th newest order: once it has left the window, one more fits.
                // None with a rate of 0, which no wait changes.
                let oldest = max
                    .checked_sub(1)
                    .and_then(|n| c.recent.iter().rev().nth(n as usize));
                return LimitCheck::Rate {
                    in_window: c.recent.len() as u32,
                    retry_after_ns: oldest
                        .map_or(0, |t| RATE_WINDOW_NS.saturating_sub(mono_ns.saturating_sub(*t))),
                };
            }
        }
        if let Some(max) = max_daily {
            match c.used.checked_add(value) {
                Some(total) if total <= max => {}
                _ => return LimitCheck::Daily { used: c.used },
            }
        }
        LimitCheck::Pass
    }

    /// Takes a rate slot and adds `value` to today's total; returns the record to persist.
    /// Call only after [`KeySlot::check`] passed, in the same `with_key`.
    fn consume(&mut self, mono_ns: u64, unix_ns: i128, day: i64, value: Money) -> Consumption {
        let c = &mut *self.counters;
        c.advance(mono_ns, day);
        let day = c.day;
        c.recent.push_back(mono_ns);
        if self.limit.is_none() && c.recent.len() > UNLIMITED_WINDOW_CAP {
            c.recent.pop_front();
        }
        c.used = c.used.saturating_add(value);
        let (number, ticket) = self.ledger.issue_ticket(self.key_id, mono_ns, day, value);
        Consumption {
            key_id: self.key_id.clone(),
            number,
            ticket,
            mono_ns,
            unix_ns,
            day,
            value,
        }
    }
}

/// Locks a mutex; a poisoned one (a panic while held) is still used — its counters were
/// changed only by complete, panic-free updates.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

mod book;
pub use book::OrderBook;
mod durable;
pub use durable::{EventUndo, FollowDump, FollowedOrder, FollowedPosition};

#[cfg(test)]
mod tests;
