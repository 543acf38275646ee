//! Checks, scope checks and releases: decided by the rules, charged to the ledger store and
//! audited in a group commit ([`crate::commit`]) before any answer is sent — one for every
//! burst, of any connection, queued while the previous commit was being made.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use futu_auth_proto::codec;
use futu_auth_proto::{
    Check, CheckScope, Decision, ErrorKind, Iface, KeyId, Response, Scope, SessionCheck, SessionOutcome,
    SessionSubject,
};

use futu_auth_rules::decide::{decide_scope, evaluate, settle, Evaluation, Verdict};
use futu_auth_rules::ledger::{Charge, Consumption, Released};
use futu_auth_rules::{Now, Snapshot};

use super::{Answer, Authd};
use crate::audit::{AuditKey, AuditOrder, AuditRecord, Kind, Outcome, TryRecord};
use crate::commit::Commit;
use crate::ledger::ReleaseFailure;
use crate::metrics::DecisionTally;
use crate::peer::Peer;

/// A check or scope check waiting for its group commit, or an answer made otherwise.
pub(super) enum Pending {
    /// A check: what the rules made of it, then (after the commit) its verdict.
    Check(Check, Evaluation),
    /// A scope check and its verdict.
    Scope(CheckScope, Verdict),
    /// A session's repeated decision, its verdict, and the protocol version of the
    /// connection (what the session is told, and so remembers, depends on it).
    Session(SessionCheck, Verdict, u16),
    /// Answered otherwise (a future, or an error).
    Ready(Answer),
}

impl Pending {
    /// Rules 1–7 for a check; a panic is a deny `internal`, never a crash.
    /// `follows`: whether the ledger store follows orders ([`LedgerStore::follows_orders`]).
    ///
    /// [`LedgerStore::follows_orders`]: crate::ledger::LedgerStore::follows_orders
    pub(super) fn check(snapshot: &Snapshot, now: &Now, c: Check, follows: bool) -> Pending {
        let e = catch_unwind(AssertUnwindSafe(|| evaluate(snapshot, now, &c))).unwrap_or_else(|_| {
            tracing::error!("deciding request {} panicked; denied", c.request_id);
            Evaluation::Decided(Verdict::internal(
                None,
                None,
                "the daemon failed while deciding".into(),
            ))
        });
        if follows {
            Pending::Check(c, e)
        } else {
            Pending::Check(c, Self::not_followed(e))
        }
    }

    /// With a ledger store that does not follow orders, an order of a key with
    /// `max_open_orders`, `max_position_value` or `duplicate_window_ms` is refused
    /// `internal`: an order the store cannot follow could pass those caps (after a restart,
    /// or on another host). Refused, nothing can exceed them.
    fn not_followed(e: Evaluation) -> Evaluation {
        match e {
        Evaluation::Charge {
            charge: Charge { track: Some(_), key_id, .. },
            scope,
            ..
        } => Evaluation::Decided(Verdict::internal(
            Some(key_id),
            scope,
            "max_open_orders, max_position_value and duplicate_window_ms are not supported by this ledger; the order is refused".into(),
        )),
        other => other,
    }
    }

    /// The scope rules for a scope check.
    pub(super) fn scope(snapshot: &Snapshot, now: &Now, c: CheckScope) -> Pending {
        let v = catch_unwind(AssertUnwindSafe(|| decide_scope(snapshot, now, &c))).unwrap_or_else(|_| {
            Verdict::internal(None, Some(c.scope), "the daemon failed while deciding".into())
        });
        Pending::Scope(c, v)
    }

    /// A session's decision, asked on a connection of protocol `version`: a scope check
    /// for pushes, a dry run of `KeepAlive` for the key itself; a panic is a deny
    /// `internal`.
    pub(super) fn session(snapshot: &Snapshot, now: &Now, c: SessionCheck, version: u16) -> Pending {
        let v = catch_unwind(AssertUnwindSafe(|| match c.subject {
            SessionSubject::Pushes { scope, .. } => decide_scope(snapshot, now, &as_scope_check(&c, scope)),
            SessionSubject::KeepAlive => match evaluate(snapshot, now, &as_keep_alive(&c)) {
                Evaluation::Decided(v) => v,
                // A dry run takes nothing; a charge here would be a bug, refused.
                Evaluation::Charge { charge, scope, .. } => Verdict::internal(
                    Some(charge.key_id),
                    scope,
                    "a dry run of KeepAlive asked for a charge".into(),
                ),
            },
        }))
        .unwrap_or_else(|_| Verdict::internal(None, None, "the daemon failed while deciding".into()));
        Pending::Session(c, v, version)
    }

    /// Refuses it `internal`, for `why`, when it would allow what needs a trading scope — an
    /// order (before it is charged; dry runs too), an unlock, a scope check or a session's
    /// pushes of a `trade:*` scope: the key store's snapshot is not known to be current,
    /// and a revocation may have been missed. Denies stay as they are; reads go on.
    pub(super) fn refuse_trading(&mut self, why: &str) {
        let refused = |key_id: Option<KeyId>, scope| Verdict::internal(key_id, scope, why.to_owned());
        match self {
            Pending::Check(_, e) => {
                let v = match e {
                    Evaluation::Charge { charge, scope, .. } => refused(Some(charge.key_id.clone()), *scope),
                    Evaluation::Decided(v) if v.decision.is_allow() && is_trading(v.scope) => {
                        refused(decision_key(&v.decision).cloned(), v.scope)
                    }
                    Evaluation::Decided(_) => return,
                };
                *e = Evaluation::Decided(v);
            }
            Pending::Scope(c, v) => {
                if v.decision.is_allow() && is_trading(Some(c.scope)) {
                    *v = refused(decision_key(&v.decision).cloned(), Some(c.scope));
                }
            }
            Pending::Session(c, v, _) => {
                if let SessionSubject::Pushes { scope, .. } = c.subject {
                    if v.decision.is_allow() && is_trading(Some(scope)) {
                        *v = refused(decision_key(&v.decision).cloned(), Some(scope));
                    }
                }
            }
            Pending::Ready(_) => {}
        }
    }

    /// Whether it is an order still to be charged to the ledger.
    fn is_charge(&self) -> bool {
        matches!(self, Pending::Check(_, Evaluation::Charge { .. }))
    }

    fn verdict_mut(&mut self) -> Option<&mut Verdict> {
        match self {
            Pending::Check(_, Evaluation::Decided(v)) | Pending::Scope(_, v) | Pending::Session(_, v, _) => {
                Some(v)
            }
            Pending::Check(_, Evaluation::Charge { .. }) | Pending::Ready(_) => None,
        }
    }

    /// Whether it leaves a record in the audit trail: every check and scope check; a
    /// session's decision only when its outcome changed (the audit policy of sessions, in
    /// PROTOCOL.md) — as the session was told it: a client older than `halted` remembers
    /// the `scope` it was told instead.
    fn audited(&self) -> bool {
        match self {
            Pending::Check(..) | Pending::Scope(..) => true,
            Pending::Session(c, v, version) => told(&v.decision, *version) != c.previous,
            Pending::Ready(_) => false,
        }
    }

    fn record(&self, peer: Peer, latency: Duration) -> Option<AuditRecord> {
        if !self.audited() {
            return None;
        }
        match self {
            Pending::Check(c, Evaluation::Decided(v)) => Some(check_record(c, v, peer, latency)),
            Pending::Scope(c, v) => Some(scope_record(c, v, peer, latency)),
            Pending::Session(c, v, _) => Some(session_record(c, v, peer, latency)),
            Pending::Check(_, Evaluation::Charge { .. }) | Pending::Ready(_) => None,
        }
    }
}

/// The outcome of `decision` as a session on a connection of protocol `version` is told it.
fn told(decision: &Decision, version: u16) -> SessionOutcome {
    match SessionOutcome::of(decision) {
        SessionOutcome::Allow => SessionOutcome::Allow,
        SessionOutcome::Deny(reason) => SessionOutcome::Deny(codec::reason_told_in(reason, version)),
    }
}

/// Whether `scope` is one of trading: `trade:simulate`, `trade:real`, `trade:unlock`.
fn is_trading(scope: Option<Scope>) -> bool {
    matches!(
        scope,
        Some(Scope::TradeSimulate | Scope::TradeReal | Scope::TradeUnlock)
    )
}

/// The scope check a session's pushes amount to.
fn as_scope_check(c: &SessionCheck, scope: Scope) -> CheckScope {
    CheckScope {
        request_id: c.request_id,
        token: c.token.clone(),
        iface: c.iface,
        scope,
    }
}

/// The check a session's keep-alive amounts to: a dry run of the system endpoint.
fn as_keep_alive(c: &SessionCheck) -> Check {
    Check {
        request_id: c.request_id,
        token: c.token.clone(),
        iface: c.iface,
        endpoint: KEEP_ALIVE.into(),
        order: None,
        dry_run: true,
        acc_id: None,
        ref_price: None,
    }
}

/// The system endpoint a session's key is kept alive with.
const KEEP_ALIVE: &str = "KeepAlive";

/// A burst of one connection waiting for its group commit.
pub(super) struct Burst {
    /// Its requests, in order, as the rules left them.
    pending: Vec<Pending>,
    /// When they were decided.
    now: Now,
    /// Who asked (for their audit records).
    peer: Peer,
    /// From their arrival to their decision (for their audit records).
    latency: Duration,
    /// Where the burst goes back to its connection once committed (none: the committing
    /// task's own, committed alone).
    done: Option<oneshot::Sender<Vec<Pending>>>,
}

/// The bursts waiting for the commit lock, in the order they came: the next holder of the
/// lock commits all of them at once, so a daemon makes one ledger call and one audit write
/// for every burst that arrived while the previous commit was being made.
#[derive(Default)]
pub(super) struct Queue {
    bursts: Mutex<Vec<Burst>>,
}

impl Queue {
    fn is_empty(&self) -> bool {
        self.bursts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    fn push(&self, burst: Burst) {
        self.bursts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(burst);
    }

    /// The bursts queued first, to commit them (the caller holds the commit lock): all of
    /// them, or as many as make [`GROUP_MOST`] requests (at least one).
    fn take(&self) -> Vec<Burst> {
        let mut bursts = self.bursts.lock().unwrap_or_else(PoisonError::into_inner);
        let mut requests = 0;
        let n = bursts
            .iter()
            .take_while(|b| {
                requests += b.pending.len();
                requests <= GROUP_MOST || requests == b.pending.len()
            })
            .count();
        if n == bursts.len() {
            std::mem::take(&mut *bursts)
        } else {
            bursts.drain(..n).collect()
        }
    }
}

/// The most requests one group commit takes (a single burst larger than that goes alone):
/// so one ledger call stays well within its deadline however many connections wait.
const GROUP_MOST: usize = 512;

/// A burst whose group commit never came back: the commit that took it panicked. Its
/// connection ends here (its client fails closed), as it would have if its own commit
/// had panicked.
fn lost() -> Vec<Pending> {
    panic!("the group commit of this burst failed; closing the connection")
}

impl Authd {
    /// Charges the burst's orders to the ledger store and writes every decision's audit
    /// record, in a group commit with the bursts of other connections that wait for it
    /// meanwhile ([`Queue`]). When the ledger cannot take them, the orders are refused
    /// `internal` and leave no trace; when the records cannot be written, what the ledger
    /// took is given back and every allow becomes a deny `internal`: nothing is allowed that
    /// is not both counted and audited. Returns the burst, decided.
    pub(super) async fn commit_checks(
        &self,
        pending: Vec<Pending>,
        now: &Now,
        peer: Peer,
        latency: Duration,
    ) -> Vec<Pending> {
        let charges = pending.iter().any(Pending::is_charge);
        if !charges && !pending.iter().any(Pending::audited) {
            return pending;
        }
        let burst = Burst {
            pending,
            now: *now,
            peer,
            latency,
            done: None,
        };
        // Nobody committing and nobody waiting: committed at once, alone.
        if let Some(commit) = self.commit.try_begin() {
            if self.waiting.is_empty() {
                return self.commit_group(commit, vec![burst]).await.unwrap_or_else(lost);
            }
        }
        let (done, mut decided) = oneshot::channel();
        self.waiting.push(Burst {
            done: Some(done),
            ..burst
        });
        // Whoever holds the commit lock next commits the bursts queued by then (up to
        // GROUP_MOST): ours is either taken by a commit in progress (its answer comes) or
        // by ours.
        loop {
            let commit = tokio::select! {
                biased;
                d = &mut decided => return d.unwrap_or_else(|_| lost()),
                c = self.commit.begin() => c,
            };
            let group = self.waiting.take();
            if group.is_empty() {
                drop(commit);
                break;
            }
            self.commit_group(commit, group).await;
            match decided.try_recv() {
                Ok(p) => return p,
                // Ours is further back in the queue: commit the next group too.
                Err(oneshot::error::TryRecvError::Empty) => {}
                Err(oneshot::error::TryRecvError::Closed) => return lost(),
            }
        }
        decided.await.unwrap_or_else(|_| lost())
    }

    /// One commit for the bursts of `group`, in the order they were queued: one ledger
    /// call for all their charges, one audit write for all their records; then each burst
    /// is handed back, decided, once the commit lock is released: to its connection, or
    /// returned (the caller's own, which nobody waits for).
    async fn commit_group(&self, mut commit: Commit<'_>, mut group: Vec<Burst>) -> Option<Vec<Pending>> {
        // The newest of the bursts' moments: no burst's charge is older than its decision.
        let now = group
            .iter()
            .map(|b| b.now)
            .max_by_key(|n| n.mono_ns)
            .expect("a group has a burst");
        let charges: Vec<Charge> = group
            .iter()
            .flat_map(|b| b.pending.iter())
            .filter_map(|p| match p {
                Pending::Check(_, Evaluation::Charge { charge, .. }) => Some(charge.clone()),
                _ => None,
            })
            .collect();
        let records: usize = group
            .iter()
            .map(|b| b.pending.iter().filter(|p| p.audited()).count())
            .sum();
        if !charges.is_empty() {
            let charged = self.ledger.charge(&now, &charges, commit.mark(records)).await;
            self.commit.ledger_written(charged.as_ref().err().map(|e| e as _));
            let (mut outcomes, failure) = match charged {
                Ok(o) => (Some(o.into_iter()), String::new()),
                Err(e) => (None, e.to_string()),
            };
            for p in group.iter_mut().flat_map(|b| b.pending.iter_mut()) {
                let Pending::Check(_, e @ Evaluation::Charge { .. }) = p else {
                    continue;
                };
                let Evaluation::Charge { charge, scope, value } = &*e else {
                    continue;
                };
                let v = match outcomes.as_mut().and_then(Iterator::next) {
                    Some(outcome) => settle(charge, *scope, *value, outcome, &now),
                    None => Verdict::internal(Some(charge.key_id.clone()), *scope, failure.clone()),
                };
                *e = Evaluation::Decided(v);
            }
        }
        if commit.has_audit_file() && records > 0 {
            self.audit_decisions(&mut commit, &mut group, records).await;
        }
        self.ledger.maintain();
        drop(commit);
        let mut own = None;
        for b in group {
            match b.done {
                // A burst whose connection is gone has nobody to answer.
                Some(done) => drop(done.send(b.pending)),
                None => own = Some(b.pending),
            }
        }
        own
    }

    /// Writes the group's `records` audit records in one write; when that fails, gives back
    /// what the ledger took and turns every allow into a deny `internal`.
    async fn audit_decisions(&self, commit: &mut Commit<'_>, group: &mut [Burst], records: usize) {
        let mut bytes = Vec::with_capacity(records * 400);
        for b in group.iter() {
            for p in &b.pending {
                if let Some(rec) = p.record(b.peer, b.latency) {
                    rec.write_json(&mut bytes);
                }
            }
        }
        if let Err(e) = commit.write_records(&bytes) {
            let taken: Vec<Consumption> = group
                .iter_mut()
                .flat_map(|b| b.pending.iter_mut())
                .filter_map(|p| p.verdict_mut()?.consumption.take())
                .collect();
            self.ledger.cancel(&taken).await;
            for v in group
                .iter_mut()
                .flat_map(|b| b.pending.iter_mut())
                .filter_map(Pending::verdict_mut)
            {
                if v.decision.is_allow() {
                    let key_id = decision_key(&v.decision).cloned();
                    *v = Verdict::internal(
                        key_id,
                        v.scope,
                        format!("the audit trail could not be written: {e}"),
                    );
                }
            }
        }
    }

    /// The answer of a decided check or scope check, noted in `tally` (the burst's
    /// metrics), with journald's copy of its record queued.
    pub(super) fn answer_decided(
        self: &Arc<Self>,
        p: Pending,
        peer: Peer,
        latency: Duration,
        tally: &mut DecisionTally,
    ) -> Answer {
        let rec = if self.audit.is_on() {
            p.record(peer, latency)
        } else {
            None
        };
        let (request_id, iface, v) = match p {
            Pending::Ready(answer) => return answer,
            Pending::Check(c, Evaluation::Decided(v)) => (c.request_id, c.iface, v),
            Pending::Check(c, Evaluation::Charge { charge, scope, .. }) => {
                // Not reached: every charge is settled by the commit.
                let why = "the order was not charged".to_owned();
                (
                    c.request_id,
                    c.iface,
                    Verdict::internal(Some(charge.key_id), scope, why),
                )
            }
            Pending::Scope(c, v) => {
                if v.decision.reason().is_some() && c.iface == Iface::Ws {
                    self.metrics.ws_filtered(c.scope, decision_key(&v.decision), 1);
                }
                (c.request_id, c.iface, v)
            }
            Pending::Session(c, v, _) => {
                if let SessionSubject::Pushes { scope, pushes } = c.subject {
                    if v.decision.reason().is_some() && c.iface == Iface::Ws {
                        self.metrics.ws_filtered(scope, decision_key(&v.decision), pushes);
                    }
                }
                (c.request_id, c.iface, v)
            }
        };
        tally.add(iface, decision_key(&v.decision), v.decision.reason());
        let resp = Response::Decision {
            request_id,
            decision: v.decision,
        };
        self.journald_copy(resp, rec)
    }

    /// `resp`, once journald's copy of `rec` is queued: at once when there is room, else
    /// as a future that waits for it (records are never dropped).
    fn journald_copy(self: &Arc<Self>, resp: Response, rec: Option<AuditRecord>) -> Answer {
        let Some(rec) = rec else {
            return Answer::Now(resp);
        };
        match self.audit.try_record(rec) {
            Ok(()) => Answer::Now(resp),
            Err(TryRecord::Full(rec)) => {
                let me = Arc::clone(self);
                Answer::Later(Box::pin(async move {
                    let _ = me.audit.record(rec).await;
                    resp
                }))
            }
            Err(TryRecord::Closed) => Answer::Now(resp),
        }
    }

    /// Refunds the order a ticket names: the release and its audit record in one commit.
    pub(super) async fn release(
        &self,
        request_id: u64,
        ticket: u64,
        peer: Peer,
        received: Instant,
    ) -> Response {
        let record = |result: &Result<Released, (ErrorKind, String)>| {
            release_record(request_id, ticket, result, peer, received.elapsed())
        };
        let now = self.clock.load().now();
        let mut commit = self.commit.begin().await;
        let released = self.ledger.release(&now, ticket, commit.mark(1)).await;
        if let Err(ReleaseFailure::Store(e)) = &released {
            self.commit.ledger_written(Some(e));
        }
        let mut result = released.map_err(|f| match f {
            ReleaseFailure::Refused(e) => (e.kind(), format!("ticket {ticket}: {e}")),
            ReleaseFailure::Store(e) => (ErrorKind::Internal, format!("the release was not made: {e}")),
        });
        let mut bytes = Vec::new();
        record(&result).write_json(&mut bytes);
        if let Err(e) = commit.write_records(&bytes) {
            if let Ok(r) = &result {
                self.ledger.cancel_release(r).await;
                result = Err((
                    ErrorKind::Internal,
                    format!("the release was not made: the audit trail could not be written: {e}"),
                ));
            }
        }
        self.ledger.maintain();
        drop(commit);
        let rec = record(&result);
        let resp = match result {
            Ok(r) => Response::Released {
                request_id,
                key_id: r.key_id,
                refunded_value: r.refunded.as_f64(),
            },
            Err((kind, message)) => Response::Error {
                request_id,
                kind,
                message,
            },
        };
        self.journald(rec).await;
        resp
    }
}

/// The audit record of the release of `ticket`: the key and what it refunded, or the error.
pub(super) fn release_record(
    request_id: u64,
    ticket: u64,
    result: &Result<Released, (ErrorKind, String)>,
    peer: Peer,
    latency: Duration,
) -> AuditRecord {
    let outcome = if result.is_ok() {
        Outcome::Allow
    } else {
        Outcome::Error
    };
    let mut rec = AuditRecord::new(Kind::Release, "Release", outcome, request_id, peer);
    rec.ticket = Some(ticket);
    rec.latency_us = latency.as_micros() as u64;
    match result {
        Ok(r) => {
            rec.key_id = Some(AuditKey::Key(r.key_id.clone()));
            rec.detail = Some(format!("refunded {}", r.refunded.as_f64()));
        }
        Err((kind, _)) => rec.error = Some(*kind),
    }
    rec
}

/// The key a decision is about.
pub(super) fn decision_key(d: &Decision) -> Option<&KeyId> {
    match d {
        Decision::Allow { key_id, .. } => Some(key_id),
        Decision::Deny { key_id, .. } => key_id.as_ref(),
    }
}

pub(super) fn check_record(c: &Check, v: &Verdict, peer: Peer, latency: Duration) -> AuditRecord {
    let mut rec = decision_record(Kind::Check, &c.endpoint, c.request_id, c.iface, peer, v, latency);
    rec.order = c.order.as_ref().map(|o| AuditOrder::of(o, v.value));
    rec.acc_id = c.acc_id;
    rec.ref_price = c.ref_price;
    rec.dry_run = c.dry_run;
    rec
}

pub(super) fn scope_record(c: &CheckScope, v: &Verdict, peer: Peer, latency: Duration) -> AuditRecord {
    decision_record(
        Kind::CheckScope,
        c.scope.as_str(),
        c.request_id,
        c.iface,
        peer,
        v,
        latency,
    )
}

pub(super) fn session_record(c: &SessionCheck, v: &Verdict, peer: Peer, latency: Duration) -> AuditRecord {
    match c.subject {
        SessionSubject::Pushes { scope, pushes } => {
            let mut rec = scope_record(&as_scope_check(c, scope), v, peer, latency);
            rec.pushes = Some(pushes);
            rec
        }
        SessionSubject::KeepAlive => check_record(&as_keep_alive(c), v, peer, latency),
    }
}

fn decision_record(
    kind: Kind,
    endpoint: &str,
    request_id: u64,
    iface: Iface,
    peer: Peer,
    v: &Verdict,
    latency: Duration,
) -> AuditRecord {
    let (outcome, ticket, reason, detail, retry_after_ms) = match &v.decision {
        Decision::Allow { ticket, .. } => (Outcome::Allow, *ticket, None, None, None),
        Decision::Deny {
            reason,
            detail,
            retry_after_ms,
            ..
        } => (
            Outcome::Reject,
            None,
            Some(*reason),
            Some(detail.clone()),
            *retry_after_ms,
        ),
    };
    let mut rec = AuditRecord::new(kind, endpoint, outcome, request_id, peer)
        .iface(iface)
        .scope(v.scope);
    rec.key_id = decision_key(&v.decision).cloned().map(AuditKey::Key);
    rec.reason = reason;
    rec.detail = detail;
    rec.ticket = ticket;
    rec.retry_after_ms = retry_after_ms;
    rec.latency_us = latency.as_micros() as u64;
    rec
}
