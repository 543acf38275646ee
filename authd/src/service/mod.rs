//! The daemon's state and what it does with each request, by responsibility:
//!
//! * [`keyring`] — the keys in service, swapped whole on reload and after admin changes;
//! * [`checks`] — checks, scope checks and releases: the rules, the ledger store and the
//!   group commit that writes the ledger and the audit records before any answer;
//! * [`admin`] — admin requests, for administrators only ([`rotation`] and [`halt`], the
//!   kill switch, in files of their own);
//! * [`activity`] — when keys were last used (noted once a burst, [`crate::last_used`]);
//! * [`transfer`] — import and export of keys.json, a chunk at a time.
//!
//! Every request gets exactly one response and, for checks, releases and admin requests,
//! exactly one audit record, written to the audit file before the response is sent
//! ([`crate::commit`]). Which requests are admin is decided in one place,
//! [`futu_auth_proto::Request::route`], matched here without a wildcard.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use futu_auth_proto::{ErrorKind, Request, Response, Route};

use crate::audit::{Audit, AuditRecord};
use crate::clock::Clock;
use crate::commit::Committer;
use crate::last_used::LastUsed;
use crate::ledger::LedgerStore;
use crate::metrics::{DecisionTally, Metrics};
use crate::peer::{AdminPolicy, Peer};

mod activity;
mod admin;
#[cfg(test)]
mod audit_lines;
mod checks;
mod events;
mod halt;
mod kept;
mod keyring;
mod rotation;
mod transfer;

use checks::Pending;
pub use keyring::{KeyRing, KeyRingError};

/// Everything a request handler needs, shared by every connection.
pub struct Authd {
    /// The keys in service and keys.json.
    pub(crate) keys: Arc<KeyRing>,
    /// The one authoritative limit ledger.
    pub(crate) ledger: Arc<dyn LedgerStore>,
    /// The group commit: the commit lock and the audit file.
    pub(crate) commit: Committer,
    /// The bursts waiting for the next group commit.
    waiting: checks::Queue,
    /// journald's copy of the audit trail.
    pub(crate) audit: Audit,
    /// Counters for /metrics.
    pub(crate) metrics: Arc<Metrics>,
    /// When each key was last allowed a check.
    pub(crate) last_used: Arc<LastUsed>,
    /// Wall, local and monotonic time (its time zone is read again on reload).
    clock: ArcSwap<Clock>,
    /// Who may send admin requests.
    admin: AdminPolicy,
    /// Listings being paged through.
    listings: admin::Listings,
    /// Imports being received and exports being sent.
    transfers: transfer::Transfers,
}

/// The answer to a request: ready now, or once a future completes.
#[allow(clippy::large_enum_variant)] // the common case is `Now`; boxing it would allocate per answer
pub enum Answer {
    /// Ready.
    Now(Response),
    /// Ready when this completes.
    Later(Pin<Box<dyn Future<Output = Response> + Send>>),
}

impl Authd {
    /// Assembles the daemon's state.
    #[allow(clippy::too_many_arguments)] // one each of the parts above
    pub(crate) fn new(
        keys: Arc<KeyRing>,
        ledger: Arc<dyn LedgerStore>,
        commit: Committer,
        audit: Audit,
        metrics: Arc<Metrics>,
        last_used: Arc<LastUsed>,
        clock: Clock,
        admin: AdminPolicy,
    ) -> Authd {
        Authd {
            keys,
            ledger,
            commit,
            waiting: checks::Queue::default(),
            audit,
            metrics,
            last_used,
            clock: ArcSwap::from_pointee(clock),
            admin,
            listings: admin::Listings::default(),
            transfers: transfer::Transfers::default(),
        }
    }

    /// Keys in service now.
    pub fn keys_loaded(&self) -> usize {
        self.keys.len()
    }

    /// Re-reads keys.json (and the host's time zone). A file that does not load leaves
    /// the keys in service as they were.
    pub async fn reload(&self, why: &str) -> Result<usize, KeyRingError> {
        let result = self.keys.reload(why).await;
        let mut clock = Clock::clone(&self.clock.load());
        clock.refresh_time_zone();
        self.clock.store(Arc::new(clock));
        result
    }

    /// Answers requests read together from `peer` at `received`, on a connection of
    /// protocol `version`, in order: checks and scope checks at once (decided together; the burst's ledger changes and audit
    /// records written in one group commit before any of them is answered), releases and
    /// admin requests as futures.
    pub(crate) async fn answer_all(
        self: &Arc<Self>,
        reqs: Vec<Request>,
        peer: Peer,
        version: u16,
        received: Instant,
    ) -> Vec<Answer> {
        let now = self.clock.load().now();
        let follows = self.ledger.follows_orders();
        let mut pending: Vec<Pending> = {
            let snapshot = self.keys.snapshot();
            reqs.into_iter()
                .map(|req| match req.route() {
                    Route::Check(c) => Pending::check(&snapshot, &now, c, follows),
                    Route::CheckScope(c) => Pending::scope(&snapshot, &now, c),
                    Route::SessionCheck(c) => Pending::session(&snapshot, &now, c, version),
                    Route::Hello(_) => Pending::Ready(Answer::Now(Response::Error {
                        request_id: 0,
                        kind: ErrorKind::HelloFirst,
                        message: "Hello is only valid as the first message".into(),
                    })),
                    Route::Release { request_id, ticket } => {
                        let me = Arc::clone(self);
                        Pending::Ready(Answer::Later(Box::pin(async move {
                            me.release(request_id, ticket, peer, received).await
                        })))
                    }
                    Route::OrderEvent(e) => {
                        let me = Arc::clone(self);
                        Pending::Ready(Answer::Later(Box::pin(async move {
                            me.order_event(e, peer, received).await
                        })))
                    }
                    Route::Admin(admin) => {
                        let me = Arc::clone(self);
                        Pending::Ready(Answer::Later(Box::pin(async move {
                            me.admin(admin, peer, received).await
                        })))
                    }
                })
                .collect()
        };
        if let Some(why) = self.keys.trading_refusal() {
            for p in &mut pending {
                p.refuse_trading(&why);
            }
        }
        let latency = received.elapsed();
        let pending = self.commit_checks(pending, &now, peer, latency).await;
        let mut tally = DecisionTally::default();
        let answers = pending
            .into_iter()
            .map(|p| self.answer_decided(p, peer, latency, &mut tally))
            .collect();
        let used_at = now.utc.as_second();
        for key in tally.allowed_keys() {
            self.last_used.note(key, used_at);
        }
        self.metrics.decisions(tally, latency.as_secs_f64());
        answers
    }

    /// Writes the last uses if anything changed, dropping keys no longer in service: to
    /// the last-used file (off the runtime's threads), or, with a shared key store, to the
    /// database (the uses noted since the last write).
    pub(crate) async fn save_last_used(&self) {
        if let Some(pg) = self.keys.shared() {
            let uses = self.last_used.take_unwritten(&self.keys.snapshot());
            if let Err(e) = pg.write_last_used(&uses).await {
                tracing::warn!("last uses not written (tried again in a minute): {e}");
                self.last_used.unwritten_again(uses);
            }
            return;
        }
        let last_used = Arc::clone(&self.last_used);
        let snapshot = Arc::clone(&self.keys.snapshot());
        match tokio::task::spawn_blocking(move || last_used.save(&snapshot)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("last-used file not written (tried again in a minute): {e}"),
            Err(e) => tracing::warn!("last-used file not written: the task failed: {e}"),
        }
    }

    async fn journald(&self, rec: AuditRecord) {
        if self.audit.record(rec).await.is_err() {
            tracing::error!("audit writer stopped; a journald record could not be queued");
        }
    }
}
