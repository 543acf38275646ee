//! [`LocalLedger`]: the ledger of one daemon — counters in memory (the rules' [`Ledger`])
//! and a journal in the state directory ([`journal`]) that every change is appended to
//! before it is answered, so caps hold across restarts and `kill -9`. The journal is this
//! store's alone: nothing outside `ledger::local` reads or writes it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futu_auth_proto::{KeyId, OrderEvent};
use futu_auth_rules::ledger::{Charge, Charged, Consumption, EventApplied, Ledger, OrderBook, Released};
use futu_auth_rules::money::Money;
use futu_auth_rules::Now;

use super::{AuditMark, BoxFuture, EventDone, LedgerError, LedgerStore, ReleaseFailure, Undo};

pub mod journal;

use journal::{Entries, LedgerLog, Moment};

/// Memory plus journal, behind [`LedgerStore`].
pub struct LocalLedger {
    ledger: Arc<Ledger>,
    log: Arc<LedgerLog>,
    /// The journal's length before the last append, for `cancel` (the caller's commit lock
    /// keeps anyone else from appending in between).
    before: AtomicU64,
    /// The entries of the commit being made, kept between commits so that encoding a
    /// burst allocates nothing once the buffer has grown to a burst's size (uncontended:
    /// the caller's commit lock orders the commits).
    scratch: Mutex<Entries>,
    /// Wall and monotonic time now, for compaction.
    moment: Arc<dyn Fn() -> Moment + Send + Sync>,
}

impl std::fmt::Debug for LocalLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLedger")
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

impl LocalLedger {
    /// The store over a ledger restored from `log` ([`LedgerLog::open`]); `moment` reads
    /// the clocks the ledger's times are on.
    pub fn new(
        ledger: Ledger,
        log: LedgerLog,
        moment: impl Fn() -> Moment + Send + Sync + 'static,
    ) -> LocalLedger {
        LocalLedger {
            ledger: Arc::new(ledger),
            log: Arc::new(log),
            before: AtomicU64::new(0),
            scratch: Mutex::new(Entries::new()),
            moment: Arc::new(moment),
        }
    }

    fn append(&self, entries: &Entries, note: Option<AuditMark>) -> Result<(), LedgerError> {
        match self.log.append(entries, note) {
            Ok(before) => {
                self.before.store(before, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(LedgerError {
                transient: true,
                message: format!("the ledger journal could not be written: {e}"),
            }),
        }
    }
}

impl LedgerStore for LocalLedger {
    fn charge<'a>(
        &'a self,
        at: &'a Now,
        charges: &'a [Charge],
        note: Option<AuditMark>,
    ) -> BoxFuture<'a, Result<Vec<Charged>, LedgerError>> {
        Box::pin(async move {
            let _gate = self.log.gate();
            let (mono, unix, day) = (at.mono_ns, at.utc.as_nanosecond(), at.day());
            let outcomes: Vec<Charged> = charges
                .iter()
                .map(|c| self.ledger.take(c, mono, unix, day))
                .collect();
            let mut entries = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
            entries.clear();
            for (o, charge) in outcomes.iter().zip(charges) {
                if let Charged::Passed(Some(c)) = o {
                    entries.consume_followed(c, charge.track.as_ref());
                }
            }
            if !entries.is_empty() {
                if let Err(e) = self.append(&entries, note) {
                    for o in &outcomes {
                        if let Charged::Passed(Some(c)) = o {
                            self.ledger.undo_consumption(c);
                        }
                    }
                    return Err(e);
                }
            }
            Ok(outcomes)
        })
    }

    fn cancel<'a>(&'a self, taken: &'a [Consumption]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if taken.is_empty() {
                return;
            }
            self.log.cut_back(self.before.load(Ordering::Relaxed));
            for c in taken {
                self.ledger.undo_consumption(c);
            }
        })
    }

    fn release<'a>(
        &'a self,
        at: &'a Now,
        ticket: u64,
        note: Option<AuditMark>,
    ) -> BoxFuture<'a, Result<Released, ReleaseFailure>> {
        Box::pin(async move {
            let _gate = self.log.gate();
            let r = self.ledger.release(ticket, at.mono_ns, at.day())?;
            let mut entries = Entries::new();
            entries.release(r.number);
            if let Err(e) = self.append(&entries, note) {
                self.ledger.undo_release(&r);
                return Err(e.into());
            }
            Ok(r)
        })
    }

    fn cancel_release<'a>(&'a self, released: &'a Released) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.log.cut_back(self.before.load(Ordering::Relaxed));
            self.ledger.undo_release(released);
        })
    }

    fn follows_orders(&self) -> bool {
        true
    }

    fn order_event<'a>(
        &'a self,
        at: &'a Now,
        event: &'a OrderEvent,
        note: Option<AuditMark>,
    ) -> BoxFuture<'a, Result<EventDone, LedgerError>> {
        Box::pin(async move {
            let _gate = self.log.gate();
            let undo = self.ledger.event_undo(event.ticket);
            let result = self.ledger.order_event(
                event.ticket,
                event.kind,
                event.filled_qty,
                event.fill_price,
                at.mono_ns,
                at.day(),
            );
            if let Ok(applied @ EventApplied::Applied { .. }) = &result {
                let mut entries = Entries::new();
                entries.event(
                    self.ledger.ticket_number(event.ticket),
                    event.kind,
                    event.filled_qty,
                    event.fill_price,
                    at.utc.as_nanosecond(),
                );
                if let Err(e) = self.append(&entries, note) {
                    self.ledger.undo_event(undo, applied);
                    return Err(e);
                }
                return Ok(EventDone {
                    result,
                    undo: Some(Undo::Local(undo)),
                });
            }
            Ok(EventDone { result, undo: None })
        })
    }

    fn cancel_event<'a>(&'a self, done: &'a EventDone) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let (Some(Undo::Local(undo)), Ok(applied)) = (&done.undo, &done.result) {
                self.log.cut_back(self.before.load(Ordering::Relaxed));
                self.ledger.undo_event(undo.clone(), applied);
            }
        })
    }

    fn order_book<'a>(&'a self, key_id: &'a KeyId) -> BoxFuture<'a, Result<OrderBook, LedgerError>> {
        Box::pin(async move { Ok(self.ledger.order_book(key_id)) })
    }

    fn usage<'a>(
        &'a self,
        at: &'a Now,
        key_id: &'a KeyId,
    ) -> BoxFuture<'a, Result<(u32, Money), LedgerError>> {
        Box::pin(async move { Ok(self.ledger.usage(key_id, at.mono_ns, at.day())) })
    }

    fn maintain(&self) {
        if !self.log.wants_compaction() {
            return;
        }
        // The rotation now, between commits (the caller holds its commit lock); the base
        // is written off the lock.
        match self.log.rotate(&self.ledger, || (self.moment)()) {
            Ok(rotated) => {
                let log = Arc::clone(&self.log);
                let finish = move || {
                    if let Err(e) = log.finish_compaction(rotated) {
                        tracing::error!("ledger log compaction failed: {e}");
                    }
                };
                match tokio::runtime::Handle::try_current() {
                    Ok(rt) => drop(rt.spawn_blocking(finish)),
                    Err(_) => finish(),
                }
            }
            Err(e) => tracing::error!("ledger log compaction failed: {e}"),
        }
    }

    fn sync(&self) -> std::io::Result<()> {
        self.log.sync()
    }
}
