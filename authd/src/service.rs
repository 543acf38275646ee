//! The daemon's state and what it does with each request: the keys in service (swapped
//! whole on reload), the ledger and its log, the audit trail and the metrics.
//!
//! Every request gets exactly one response and, for checks, releases and admin requests,
//! exactly one audit record.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use futu_auth_proto::{
    BindOp, Check, CheckScope, Decision, ErrorKind, Fingerprint, Iface, KeyId, KeySpec, Reason, Request,
    Response, Usage,
};
use jiff::Timestamp;
use tokio::sync::Mutex;

use crate::audit::{Audit, AuditOrder, AuditRecord, Kind, Outcome, TryRecord};
use crate::clock::Clock;
use crate::decide::{decide, decide_scope, Verdict};
use crate::ledger::{Consumption, Ledger};
use crate::ledger_log::{LedgerLog, Moment};
use crate::metrics::Metrics;
use crate::money::Money;
use crate::notify;
use crate::peer::{AdminPolicy, Peer};
use crate::snapshot::Snapshot;
use crate::store::{self, KeysFile, StoreError, TextDigest};

/// Everything a request handler needs, shared by every connection.
pub struct Authd {
    /// keys.json: read on start and reload, written by admin requests.
    pub keys_file: PathBuf,
    /// The keys in service; a reload swaps in a new snapshot whole.
    snapshot: ArcSwap<Snapshot>,
    /// This host's fingerprint, for new snapshots.
    host: Option<Fingerprint>,
    /// The one authoritative limit ledger.
    pub ledger: Ledger,
    /// Where consumptions are persisted before they are answered.
    pub log: LedgerLog,
    /// The audit trail.
    pub audit: Audit,
    /// Counters for /metrics.
    pub metrics: Arc<Metrics>,
    /// Wall, local and monotonic time.
    clock: ArcSwap<Clock>,
    /// Who may send admin requests.
    admin: AdminPolicy,
    /// Serializes reloads and admin mutations, so snapshots are installed in file order.
    reload_lock: Mutex<()>,
    /// SHA-256 of the keys.json text in service: a reload of the same text (a SIGHUP for
    /// logrotate) keeps the snapshot instead of compiling it again.
    loaded_digest: std::sync::Mutex<Option<TextDigest>>,
}

/// The answer to a request: ready now, or once a future completes.
#[allow(clippy::large_enum_variant)] // the common case is `Now`; boxing it would allocate per answer
pub enum Answer {
    /// Ready.
    Now(Response),
    /// Ready when this completes.
    Later(Pin<Box<dyn Future<Output = Response> + Send>>),
}

/// Why a reload failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReloadError(pub StoreError);

impl Authd {
    /// Assembles the daemon's state; `file` is keys.json as loaded at start.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        keys_file: PathBuf,
        file: KeysFile,
        loaded_digest: Option<TextDigest>,
        host: Option<Fingerprint>,
        ledger: Ledger,
        log: LedgerLog,
        audit: Audit,
        metrics: Arc<Metrics>,
        clock: Clock,
        admin: AdminPolicy,
    ) -> Authd {
        let snapshot = Snapshot::new(file, host.clone());
        metrics.keys_loaded(snapshot.len());
        Authd {
            keys_file,
            snapshot: ArcSwap::from_pointee(snapshot),
            host,
            ledger,
            log,
            audit,
            metrics,
            clock: ArcSwap::from_pointee(clock),
            admin,
            reload_lock: Mutex::new(()),
            loaded_digest: std::sync::Mutex::new(loaded_digest),
        }
    }

    /// Keys in service now.
    pub fn keys_loaded(&self) -> usize {
        self.snapshot.load().len()
    }

    /// The current wall and monotonic time, for the ledger log.
    pub fn moment(&self) -> Moment {
        let clock = self.clock.load();
        Moment {
            unix_ns: Timestamp::now().as_nanosecond() as i64,
            mono_ns: clock.mono_ns(),
        }
    }

    /// Compiles and swaps in a new snapshot; returns the number of keys and the old
    /// snapshot, to be dropped off the reload's path. Blocking work (a reload of many keys
    /// takes a while to compile): call from a blocking task.
    fn install(&self, file: KeysFile, text_digest: TextDigest) -> (usize, Arc<Snapshot>) {
        let snapshot = Snapshot::new(file, self.host.clone());
        let n = snapshot.len();
        let old = self.snapshot.swap(Arc::new(snapshot));
        *self.loaded_digest.lock().unwrap_or_else(|p| p.into_inner()) = Some(text_digest);
        self.metrics.keys_loaded(n);
        (n, old)
    }

    /// Reads keys.json and, unless it is the text already in service, parses and installs
    /// it. `Ok(None)`: unchanged.
    fn load_and_install(&self) -> Result<Option<(usize, Arc<Snapshot>)>, StoreError> {
        let text = store::read_text(&self.keys_file)?;
        let digest = store::text_digest(&text);
        if *self.loaded_digest.lock().unwrap_or_else(|p| p.into_inner()) == Some(digest) {
            return Ok(None);
        }
        let file = KeysFile::parse(&text, &self.keys_file)?;
        drop(text);
        Ok(Some(self.install(file, digest)))
    }

    /// Re-reads keys.json. A file that does not load leaves the keys in service as they
    /// were: never zero keys, never fail open.
    pub async fn reload(self: &Arc<Self>, why: &str) -> Result<usize, ReloadError> {
        let _serial = self.reload_lock.lock().await;
        notify::reloading();
        let me = Arc::clone(self);
        let loaded = tokio::task::spawn_blocking(move || me.load_and_install())
            .await
            .unwrap_or_else(|e| Err(StoreError::Random(format!("reload task failed: {e}"))));
        let mut clock = Clock::clone(&self.clock.load());
        clock.refresh_time_zone();
        self.clock.store(Arc::new(clock));
        let mut retired = None;
        let result = match loaded {
            Ok(installed) => {
                self.metrics.reload(true);
                let n = match installed {
                    Some((n, old)) => {
                        retired = Some(old);
                        tracing::info!("keys_loaded={n} keys file reloaded ({why})");
                        n
                    }
                    None => {
                        let n = self.keys_loaded();
                        tracing::info!("keys_loaded={n} keys file unchanged ({why})");
                        n
                    }
                };
                if let Some(w) = store::mode_warning(&self.keys_file) {
                    tracing::warn!("{w}");
                }
                Ok(n)
            }
            Err(e) => {
                self.metrics.reload(false);
                tracing::error!(
                    "reload ({why}) failed, keeping the {} keys in service: {e}",
                    self.keys_loaded()
                );
                Err(ReloadError(e))
            }
        };
        notify::reloaded(self.keys_loaded());
        if let Some(old) = retired {
            // Freeing 100 000 compiled keys takes a while; not on the reload's clock.
            tokio::task::spawn_blocking(move || {
                drop(old);
                crate::heap::give_back_freed_memory();
            });
        }
        result
    }

    /// Answers requests read together from `peer` at `received`, in order: checks at once
    /// (decided together, persisted in one write, audited without waiting), other
    /// requests as futures, and a check whose audit record must wait for room as a future
    /// too.
    pub fn answer_all(self: &Arc<Self>, reqs: Vec<Request>, peer: Peer, received: Instant) -> Vec<Answer> {
        let checks: Vec<&Check> = reqs
            .iter()
            .filter_map(|r| match r {
                Request::Check(c) => Some(c),
                _ => None,
            })
            .collect();
        let mut verdicts = if checks.is_empty() {
            Vec::new()
        } else {
            self.decide_and_persist(&checks)
        }
        .into_iter();
        self.compact_if_due();
        reqs.into_iter()
            .map(|req| {
                let (resp, rec) = match req {
                    Request::Check(c) => {
                        let v = verdicts.next().expect("one verdict per check");
                        self.check(c, v, peer, received)
                    }
                    Request::CheckScope(c) => self.check_scope(c, peer, received),
                    Request::Hello(_) => {
                        return Answer::Now(Response::Error {
                            request_id: 0,
                            kind: ErrorKind::HelloFirst,
                            message: "Hello is only valid as the first message".into(),
                        })
                    }
                    Request::Release { request_id, ticket } => {
                        let me = Arc::clone(self);
                        return Answer::Later(Box::pin(async move {
                            me.release(request_id, ticket, peer, received).await
                        }));
                    }
                    admin => {
                        let me = Arc::clone(self);
                        return Answer::Later(Box::pin(async move { me.admin(admin, peer, received).await }));
                    }
                };
                self.audited(resp, rec)
            })
            .collect()
    }

    /// `resp`, once `rec` is queued for the audit trail: at once when there is room, else
    /// as a future that waits for it (records are never dropped).
    fn audited(self: &Arc<Self>, resp: Response, rec: AuditRecord) -> Answer {
        match self.audit.try_record(rec) {
            Ok(()) => Answer::Now(resp),
            Err(TryRecord::Full(rec)) => {
                let me = Arc::clone(self);
                Answer::Later(Box::pin(async move {
                    me.write_audit(rec).await;
                    resp
                }))
            }
            Err(TryRecord::Closed) => {
                tracing::error!("audit writer stopped; a record could not be queued");
                Answer::Now(resp)
            }
        }
    }

    /// Decides a burst of checks read together and appends the consumptions of the
    /// allowed orders to the ledger log in one write, before anything is answered (group
    /// commit). Any failure is a deny `internal`: a panic for that check, a failed write
    /// for every order of the burst.
    fn decide_and_persist(&self, checks: &[&Check]) -> Vec<Verdict> {
        let now = self.clock.load().now();
        let snapshot = self.snapshot.load();
        let consuming = checks.iter().any(|c| c.order.is_some() && !c.dry_run);
        let _gate = consuming.then(|| self.log.gate());
        let mut verdicts: Vec<Verdict> = checks
            .iter()
            .map(|c| {
                catch_unwind(AssertUnwindSafe(|| decide(&snapshot, &self.ledger, &now, c))).unwrap_or_else(
                    |_| {
                        tracing::error!("deciding request {} panicked; denied", c.request_id);
                        Verdict::internal(None, None, "the daemon failed while deciding".into())
                    },
                )
            })
            .collect();
        let consumptions: Vec<&Consumption> =
            verdicts.iter().filter_map(|v| v.consumption.as_ref()).collect();
        if !consumptions.is_empty() {
            if let Err(e) = self.log.append_consumptions(&consumptions) {
                // The consumptions stay counted in memory (the safe side); the orders are
                // refused because they could not be made durable.
                tracing::error!(
                    "ledger log append failed; {} orders denied: {e}",
                    consumptions.len()
                );
                for v in verdicts.iter_mut() {
                    if let Some(c) = &v.consumption {
                        let key_id = Some(c.key_id.clone());
                        *v = Verdict::internal(key_id, v.scope, "the ledger could not be written".into());
                    }
                }
            }
        }
        verdicts
    }

    fn compact_if_due(self: &Arc<Self>) {
        if self.log.wants_compaction() {
            let me = Arc::clone(self);
            tokio::task::spawn_blocking(move || {
                if let Err(e) = me.log.compact(&me.ledger, || me.moment()) {
                    tracing::error!("ledger log compaction failed: {e}");
                }
            });
        }
    }

    fn check(&self, c: Check, verdict: Verdict, peer: Peer, received: Instant) -> (Response, AuditRecord) {
        let latency = received.elapsed();
        let key_id = decision_key(&verdict.decision);
        self.metrics
            .decision(c.iface, key_id, verdict.decision.reason(), latency.as_secs_f64());
        let mut rec = decision_record(
            Kind::Check,
            &c.endpoint,
            c.request_id,
            c.iface,
            peer,
            &verdict,
            latency,
        );
        rec.order = c.order.as_ref().map(|o| AuditOrder::of(o, verdict.value));
        rec.dry_run = c.dry_run;
        let resp = Response::Decision {
            request_id: c.request_id,
            decision: verdict.decision,
        };
        (resp, rec)
    }

    fn check_scope(&self, c: CheckScope, peer: Peer, received: Instant) -> (Response, AuditRecord) {
        let now = self.clock.load().now();
        let snapshot = self.snapshot.load();
        let verdict =
            catch_unwind(AssertUnwindSafe(|| decide_scope(&snapshot, &now, &c))).unwrap_or_else(|_| {
                Verdict::internal(None, Some(c.scope), "the daemon failed while deciding".into())
            });
        drop(snapshot);
        let latency = received.elapsed();
        let key_id = decision_key(&verdict.decision);
        let reason = verdict.decision.reason();
        self.metrics
            .decision(c.iface, key_id, reason, latency.as_secs_f64());
        if reason.is_some() && c.iface == Iface::Ws {
            self.metrics.ws_filtered(c.scope, key_id);
        }
        let rec = decision_record(
            Kind::CheckScope,
            c.scope.as_str(),
            c.request_id,
            c.iface,
            peer,
            &verdict,
            latency,
        );
        let resp = Response::Decision {
            request_id: c.request_id,
            decision: verdict.decision,
        };
        (resp, rec)
    }

    async fn release(&self, request_id: u64, ticket: u64, peer: Peer, received: Instant) -> Response {
        let result = {
            let mono = self.clock.load().mono_ns();
            let _gate = self.log.gate();
            match self.ledger.release(ticket, mono) {
                Ok(r) => match self.log.append_release(ticket) {
                    Ok(()) => Ok(r),
                    Err(e) => {
                        tracing::error!("ledger log append failed for a release: {e}");
                        Err((
                            ErrorKind::Internal,
                            format!("the release was made but could not be written: {e}"),
                        ))
                    }
                },
                Err(e) => Err((e.kind(), format!("ticket {ticket}: {e}"))),
            }
        };
        let (outcome, resp, key_id, error) = match result {
            Ok(r) => (
                Outcome::Allow,
                Response::Released {
                    request_id,
                    key_id: r.key_id.clone(),
                    refunded_value: r.refunded.as_f64(),
                },
                Some(r.key_id),
                None,
            ),
            Err((kind, message)) => (
                Outcome::Error,
                Response::Error {
                    request_id,
                    kind,
                    message,
                },
                None,
                Some(kind),
            ),
        };
        let mut rec = AuditRecord::new(Kind::Release, "Release", outcome, request_id, peer);
        rec.key_id = key_id;
        rec.ticket = Some(ticket);
        rec.error = error.map(ErrorKind::as_str);
        rec.latency_us = received.elapsed().as_micros() as u64;
        if let Response::Released { refunded_value, .. } = &resp {
            rec.detail = Some(format!("refunded {refunded_value}"));
        }
        self.write_audit(rec).await;
        resp
    }

    async fn admin(self: &Arc<Self>, req: Request, peer: Peer, received: Instant) -> Response {
        let request_id = req.request_id();
        let op = req.name();
        let target = admin_target(&req);
        if !self.admin.is_admin(&peer) {
            self.metrics.admin(op, "reject");
            let detail = format!("{op} needs an administrator; uid {} is not one", peer.uid);
            let mut rec = AuditRecord::new(Kind::Admin, op, Outcome::Reject, request_id, peer)
                .reason(Reason::Forbidden);
            rec.key_id = target.clone();
            rec.detail = Some(detail.clone());
            rec.latency_us = received.elapsed().as_micros() as u64;
            self.write_audit(rec).await;
            return Response::Decision {
                request_id,
                decision: Decision::Deny {
                    reason: Reason::Forbidden,
                    key_id: None,
                    detail,
                },
            };
        }
        let resp = match req {
            Request::GenKey { spec, .. } => self.gen_key(request_id, spec).await,
            // keys.json itself, as futucli shows it when the daemon is down.
            Request::ListKeys { .. } => {
                let path = self.keys_file.clone();
                match tokio::task::spawn_blocking(move || KeysFile::load(&path)).await {
                    Ok(Ok(file)) => Response::Keys {
                        request_id,
                        keys: file.keys,
                    },
                    Ok(Err(e)) => store_error(request_id, e),
                    Err(e) => error(request_id, ErrorKind::Internal, format!("list task failed: {e}")),
                }
            }
            Request::RevokeKey { id, .. } => {
                let revoked = id.clone();
                match self.mutate(request_id, move |f| f.revoke(&revoked)).await {
                    Ok(_) => Response::KeyRevoked { request_id, id },
                    Err(resp) => resp,
                }
            }
            Request::BindKey { id, op, .. } => self.bind_key(request_id, id, op).await,
            Request::Reload { .. } => match self.reload("admin request").await {
                Ok(n) => Response::Reloaded {
                    request_id,
                    keys_loaded: n as u32,
                },
                Err(e) => error(request_id, ErrorKind::Store, e.to_string()),
            },
            Request::Usage { id, .. } => self.usage(request_id, &id),
            other => error(
                request_id,
                ErrorKind::Internal,
                format!("{} is not an admin request", other.name()),
            ),
        };
        let (outcome, err) = match &resp {
            Response::Error { kind, .. } => (Outcome::Error, Some(*kind)),
            _ => (Outcome::Allow, None),
        };
        self.metrics.admin(op, outcome.as_str());
        let mut rec = AuditRecord::new(Kind::Admin, op, outcome, request_id, peer);
        rec.key_id = target;
        rec.error = err.map(ErrorKind::as_str);
        if let Response::Error { message, .. } = &resp {
            rec.detail = Some(message.clone());
        }
        rec.latency_us = received.elapsed().as_micros() as u64;
        self.write_audit(rec).await;
        resp
    }

    /// Applies a change to keys.json under the store's lock and installs the result; a
    /// failure comes back as the error response to send.
    async fn mutate<T: Send + 'static>(
        self: &Arc<Self>,
        request_id: u64,
        change: impl FnOnce(&mut KeysFile) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Response> {
        let _serial = self.reload_lock.lock().await;
        let me = Arc::clone(self);
        let result = tokio::task::spawn_blocking(move || {
            store::update(&me.keys_file, change).map(|u| (u.value, me.install(u.file, u.digest).0))
        })
        .await
        .unwrap_or_else(|e| Err(StoreError::Random(format!("store task failed: {e}"))));
        match result {
            Ok((value, n)) => {
                notify::ready(n);
                Ok(value)
            }
            Err(e) => Err(store_error(request_id, e)),
        }
    }

    async fn gen_key(self: &Arc<Self>, request_id: u64, spec: KeySpec) -> Response {
        if spec.scopes.is_empty() {
            return error(
                request_id,
                ErrorKind::InvalidSpec,
                "a key needs at least one scope".into(),
            );
        }
        if spec.expires_at.is_some_and(|t| t <= Timestamp::now()) {
            return error(
                request_id,
                ErrorKind::InvalidSpec,
                "expires_at is in the past".into(),
            );
        }
        let now = Timestamp::now();
        let stored_in = self.keys_file.display().to_string();
        match self.mutate(request_id, move |f| f.gen_key(spec, now)).await {
            Ok((plaintext, record)) => Response::KeyGenerated {
                request_id,
                plaintext,
                record,
                stored_in,
            },
            Err(resp) => resp,
        }
    }

    async fn bind_key(self: &Arc<Self>, request_id: u64, id: KeyId, op: BindOp) -> Response {
        match self.mutate(request_id, move |f| f.bind(&id, op)).await {
            Ok(record) => Response::KeyBound { request_id, record },
            Err(resp) => resp,
        }
    }

    fn usage(&self, request_id: u64, id: &KeyId) -> Response {
        let snapshot = self.snapshot.load();
        let Some(key) = snapshot.by_id(id.as_str()) else {
            return error(
                request_id,
                ErrorKind::UnknownKey,
                format!("no key with id {:?}", id.as_str()),
            );
        };
        let now = self.clock.load().now();
        let (orders, used) = self.ledger.usage(id, now.mono_ns, now.day());
        Response::Usage(Usage {
            request_id,
            id: id.clone(),
            day: now.utc.strftime("%Y-%m-%d").to_string(),
            daily_value_used: used.as_f64(),
            max_daily_value: key.max_daily_value.map(Money::as_f64),
            orders_last_minute: orders,
            max_orders_per_minute: key.max_orders_per_minute,
        })
    }

    async fn write_audit(&self, rec: impl Into<Box<AuditRecord>>) {
        if self.audit.record(rec).await.is_err() {
            tracing::error!("audit writer stopped; a record could not be queued");
        }
    }
}

fn decision_key(d: &Decision) -> Option<&KeyId> {
    match d {
        Decision::Allow { key_id, .. } => Some(key_id),
        Decision::Deny { key_id, .. } => key_id.as_ref(),
    }
}

fn decision_record(
    kind: Kind,
    endpoint: &str,
    request_id: u64,
    iface: Iface,
    peer: Peer,
    v: &Verdict,
    latency: std::time::Duration,
) -> AuditRecord {
    let (outcome, ticket, reason, detail) = match &v.decision {
        Decision::Allow { ticket, .. } => (Outcome::Allow, *ticket, None, None),
        Decision::Deny { reason, detail, .. } => (Outcome::Reject, None, Some(*reason), Some(detail.clone())),
    };
    let mut rec = AuditRecord::new(kind, endpoint, outcome, request_id, peer)
        .iface(iface)
        .scope(v.scope);
    rec.key_id = decision_key(&v.decision).cloned();
    rec.reason = reason.map(Reason::as_str);
    rec.detail = detail;
    rec.ticket = ticket;
    rec.latency_us = latency.as_micros() as u64;
    rec
}

fn admin_target(req: &Request) -> Option<KeyId> {
    match req {
        Request::GenKey { spec, .. } => Some(spec.id.clone()),
        Request::RevokeKey { id, .. } | Request::BindKey { id, .. } | Request::Usage { id, .. } => {
            Some(id.clone())
        }
        _ => None,
    }
}

fn error(request_id: u64, kind: ErrorKind, message: String) -> Response {
    Response::Error {
        request_id,
        kind,
        message,
    }
}

fn store_error(request_id: u64, e: StoreError) -> Response {
    let kind = match &e {
        StoreError::DuplicateKey(_) => ErrorKind::DuplicateKey,
        StoreError::UnknownKey(_) => ErrorKind::UnknownKey,
        StoreError::Io { .. } | StoreError::Invalid(_) => ErrorKind::Store,
        StoreError::Random(_) => ErrorKind::Internal,
    };
    error(request_id, kind, e.to_string())
}
