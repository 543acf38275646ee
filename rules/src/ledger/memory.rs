//! The ledger in memory: per key, the orders allowed in the last 60 s and the value
//! allowed today (UTC), plus the tickets that let a rejected order's value be released.
//!
//! Counters are kept by key id, not by snapshot, so a reload never resets them (and a key
//! revoked and made again under the same id keeps its day's total). Check-and-consume for
//! one key happens under that key's mutex: N threads racing one key are admitted exactly as
//! often as its limits allow.
//!
//! A consumption or release that could not be made durable is undone
//! ([`Ledger::undo_consumption`], [`Ledger::undo_release`]): a refused order leaves no
//! trace in the counters, the usage figures or later decisions.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use dashmap::DashMap;
use futu_auth_proto::{ErrorKind, KeyId};

use super::ticket::TicketCipher;
use super::{Charge, Charged};
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

/// Ledger numbers restored from a journal are below this (2^62): no ledger hands out that
/// many, so a larger one is damage, and is not allowed to exhaust the numbers after it.
pub const MAX_NUMBER: u64 = 1 << 62;

/// One key's counters, only ever touched under its lock, inside this module.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct KeyCounters {
    /// Monotonic times (ns) of the orders allowed in the last 60 s, oldest first.
    pub recent: VecDeque<u64>,
    /// The UTC day `used` counts.
    pub day: i64,
    /// Value allowed on `day`, less releases.
    pub used: Money,
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
        self.with_key(&charge.key_id, |slot| {
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
                LimitCheck::Pass if charge.dry_run => Charged::Passed(None),
                LimitCheck::Pass => Charged::Passed(Some(slot.consume(mono_ns, unix_ns, day, charge.value))),
            }
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
    pub fn release(&self, ticket: u64, mono_ns: u64, today: i64) -> Result<Released, ReleaseError> {
        let number = lock(&self.tickets).cipher.number(ticket);
        self.refund(number, Some(mono_ns), today)
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
        }
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
    }

    /// Every key's day and total, and every ticket still in its release window: what
    /// compaction writes so that a restart rebuilds the same ledger.
    pub fn dump(&self) -> LedgerDump {
        let totals = self
            .keys
            .iter()
            .map(|e| {
                let c = lock(e.value());
                (e.key().clone(), c.day, c.used)
            })
            .collect();
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

#[cfg(test)]
mod tests;
