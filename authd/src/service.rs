//! The daemon's state and what it does with each request: the keys in service (swapped
//! whole on reload), the ledger and its log, the audit trail and the metrics.
//!
//! Every request gets exactly one response and, for checks, releases and admin requests,
//! exactly one audit record, written to the audit file before the response is sent
//! ([`crate::commit`]).

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
use crate::commit::{CommitError, Committer};
use crate::decide::{decide, decide_scope, Verdict};
use crate::ledger::Ledger;
use crate::ledger_log::{Entries, LedgerLog, Moment};
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
    /// The group commit: the ledger journal and the audit file, written before answers.
    pub commit: Committer,
    /// journald's copy of the audit trail.
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
    /// keys.json as read for the listings being paged through, so a listing of any size
    /// reads the file once and its pages agree with each other.
    listings: std::sync::Mutex<Listings>,
}

/// Listings being paged through ([`Request::ListKeysPage`]); the oldest go first.
#[derive(Default)]
struct Listings {
    open: std::collections::VecDeque<Listing>,
}

struct Listing {
    id: u64,
    keys: Arc<Vec<futu_auth_proto::KeyRecord>>,
    used: Instant,
}

/// Listings kept at once; more start by replacing the oldest.
const MAX_LISTINGS: usize = 4;

/// A listing left this long without a page request is forgotten.
const LISTING_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// Room for a page's records in a frame, after the page's own fields.
const PAGE_BUDGET: usize = futu_auth_proto::MAX_FRAME_LEN - 64;

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
        commit: Committer,
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
            commit,
            audit,
            metrics,
            clock: ArcSwap::from_pointee(clock),
            admin,
            reload_lock: Mutex::new(()),
            loaded_digest: std::sync::Mutex::new(loaded_digest),
            listings: std::sync::Mutex::default(),
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
    /// (decided together, their ledger entries and audit records written in one group
    /// commit before any of them is answered), other requests as futures, and a check
    /// whose journald copy must wait for room as a future too.
    pub fn answer_all(self: &Arc<Self>, reqs: Vec<Request>, peer: Peer, received: Instant) -> Vec<Answer> {
        let consuming = reqs
            .iter()
            .any(|r| matches!(r, Request::Check(c) if c.order.is_some() && !c.dry_run));
        let gate = consuming.then(|| self.log.gate());
        let now = self.clock.load().now();
        let snapshot = self.snapshot.load();
        let mut pending: Vec<Pending> = reqs
            .into_iter()
            .map(|req| match req {
                Request::Check(c) => {
                    let v = catch_unwind(AssertUnwindSafe(|| decide(&snapshot, &self.ledger, &now, &c)))
                        .unwrap_or_else(|_| {
                            tracing::error!("deciding request {} panicked; denied", c.request_id);
                            Verdict::internal(None, None, "the daemon failed while deciding".into())
                        });
                    Pending::Check(c, v)
                }
                Request::CheckScope(c) => {
                    let v = catch_unwind(AssertUnwindSafe(|| decide_scope(&snapshot, &now, &c)))
                        .unwrap_or_else(|_| {
                            Verdict::internal(None, Some(c.scope), "the daemon failed while deciding".into())
                        });
                    Pending::Scope(c, v)
                }
                Request::Hello(_) => Pending::Ready(Answer::Now(Response::Error {
                    request_id: 0,
                    kind: ErrorKind::HelloFirst,
                    message: "Hello is only valid as the first message".into(),
                })),
                Request::Release { request_id, ticket } => {
                    let me = Arc::clone(self);
                    Pending::Ready(Answer::Later(Box::pin(async move {
                        me.release(request_id, ticket, peer, received).await
                    })))
                }
                admin => {
                    let me = Arc::clone(self);
                    Pending::Ready(Answer::Later(Box::pin(async move {
                        me.admin(admin, peer, received).await
                    })))
                }
            })
            .collect();
        drop(snapshot);
        let latency = received.elapsed();
        self.commit_decisions(&mut pending, peer, latency);
        drop(gate);
        self.compact_if_due();
        pending
            .into_iter()
            .map(|p| match p {
                Pending::Ready(answer) => answer,
                Pending::Check(c, v) => {
                    self.count(c.iface, &v, latency);
                    let rec = self.audit.is_on().then(|| check_record(&c, &v, peer, latency));
                    let resp = Response::Decision {
                        request_id: c.request_id,
                        decision: v.decision,
                    };
                    self.journald_copy(resp, rec)
                }
                Pending::Scope(c, v) => {
                    self.count(c.iface, &v, latency);
                    if v.decision.reason().is_some() && c.iface == Iface::Ws {
                        self.metrics.ws_filtered(c.scope, decision_key(&v.decision));
                    }
                    let rec = self.audit.is_on().then(|| scope_record(&c, &v, peer, latency));
                    let resp = Response::Decision {
                        request_id: c.request_id,
                        decision: v.decision,
                    };
                    self.journald_copy(resp, rec)
                }
            })
            .collect()
    }

    /// Writes the burst's consumptions to the ledger journal and every decision's audit
    /// record to the audit file, in one commit. When that fails, the burst's consumptions
    /// are undone and its allows become denies `internal`: nothing is allowed that is not
    /// both counted and audited.
    fn commit_decisions(&self, pending: &mut [Pending], peer: Peer, latency: std::time::Duration) {
        let mut entries = Entries::new();
        for p in pending.iter() {
            if let Pending::Check(
                _,
                Verdict {
                    consumption: Some(c), ..
                },
            ) = p
            {
                entries.consume(c);
            }
        }
        let decided = pending.iter().any(|p| !matches!(p, Pending::Ready(_)));
        if entries.is_empty() && (!decided || !self.commit.has_audit_file()) {
            return;
        }
        let records = |pending: &[Pending]| {
            let mut out = Vec::with_capacity(pending.len() * 400);
            for p in pending {
                match p {
                    Pending::Check(c, v) => check_record(c, v, peer, latency).write_json(&mut out),
                    Pending::Scope(c, v) => scope_record(c, v, peer, latency).write_json(&mut out),
                    Pending::Ready(_) => {}
                }
            }
            out
        };
        let failure = match self.commit.write(&self.log, &entries, &records(pending)) {
            Ok(()) => return,
            Err(e) => e,
        };
        self.undo_consumptions(pending, &failure.to_string());
        if let CommitError::Ledger(_) = failure {
            // The orders are refused; the rest of the burst and the refusals are audited.
            if self.commit.write_records(&self.log, &records(pending)).is_ok() {
                return;
            }
        }
        // Nothing can be audited: nothing is allowed.
        for p in pending.iter_mut() {
            match p {
                Pending::Check(_, v) | Pending::Scope(_, v) if v.decision.is_allow() => {
                    let key_id = decision_key(&v.decision).cloned();
                    *v = Verdict::internal(key_id, v.scope, "the audit trail could not be written".into());
                }
                _ => {}
            }
        }
    }

    /// Undoes the consumptions of a burst whose commit failed; their checks become denies
    /// `internal` saying `why`.
    fn undo_consumptions(&self, pending: &mut [Pending], why: &str) {
        for p in pending.iter_mut() {
            if let Pending::Check(_, v) = p {
                if let Some(c) = v.consumption.take() {
                    self.ledger.undo_consumption(&c);
                    *v = Verdict::internal(Some(c.key_id), v.scope, why.to_owned());
                }
            }
        }
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

    fn count(&self, iface: Iface, v: &Verdict, latency: std::time::Duration) {
        self.metrics.decision(
            iface,
            decision_key(&v.decision),
            v.decision.reason(),
            latency.as_secs_f64(),
        );
    }

    async fn release(&self, request_id: u64, ticket: u64, peer: Peer, received: Instant) -> Response {
        let record = |result: &Result<crate::ledger::Released, (ErrorKind, String)>| {
            let outcome = if result.is_ok() {
                Outcome::Allow
            } else {
                Outcome::Error
            };
            let mut rec = AuditRecord::new(Kind::Release, "Release", outcome, request_id, peer);
            rec.ticket = Some(ticket);
            rec.latency_us = received.elapsed().as_micros() as u64;
            match result {
                Ok(r) => {
                    rec.key_id = Some(r.key_id.clone());
                    rec.detail = Some(format!("refunded {}", r.refunded.as_f64()));
                }
                Err((kind, _)) => rec.error = Some(kind.as_str()),
            }
            rec
        };
        let result = {
            let mono = self.clock.load().mono_ns();
            let _gate = self.log.gate();
            match self.ledger.release(ticket, mono) {
                Ok(r) => {
                    let mut entries = Entries::new();
                    entries.release(r.number);
                    let mut bytes = Vec::new();
                    record(&Ok(r.clone())).write_json(&mut bytes);
                    match self.commit.write(&self.log, &entries, &bytes) {
                        Ok(()) => Ok(r),
                        Err(e) => {
                            self.ledger.undo_release(&r);
                            Err((ErrorKind::Internal, format!("the release was not made: {e}")))
                        }
                    }
                }
                Err(e) => {
                    let refused = Err((e.kind(), format!("ticket {ticket}: {e}")));
                    let mut bytes = Vec::new();
                    record(&refused).write_json(&mut bytes);
                    let _ = self.commit.write_records(&self.log, &bytes);
                    refused
                }
            }
        };
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
            Request::ListKeysPage { listing, offset, .. } => {
                self.list_page(request_id, listing, offset).await
            }
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

    /// One page of a listing; `listing` 0 starts one by reading keys.json.
    async fn list_page(&self, request_id: u64, listing: u64, offset: u32) -> Response {
        let keys = if listing == 0 {
            let path = self.keys_file.clone();
            let file = match tokio::task::spawn_blocking(move || KeysFile::load(&path)).await {
                Ok(Ok(file)) => file,
                Ok(Err(e)) => return store_error(request_id, e),
                Err(e) => return error(request_id, ErrorKind::Internal, format!("list task failed: {e}")),
            };
            let keys = Arc::new(file.keys);
            let mut id = [0u8; 8];
            if getrandom::fill(&mut id).is_err() {
                return error(
                    request_id,
                    ErrorKind::Internal,
                    "the OS random source failed".into(),
                );
            }
            let id = u64::from_le_bytes(id).max(1);
            let mut l = self.listings.lock().unwrap_or_else(|p| p.into_inner());
            l.open.retain(|x| x.used.elapsed() < LISTING_IDLE);
            while l.open.len() >= MAX_LISTINGS {
                l.open.pop_front();
            }
            l.open.push_back(Listing {
                id,
                keys: Arc::clone(&keys),
                used: Instant::now(),
            });
            (id, keys)
        } else {
            let mut l = self.listings.lock().unwrap_or_else(|p| p.into_inner());
            l.open.retain(|x| x.used.elapsed() < LISTING_IDLE);
            match l.open.iter_mut().find(|x| x.id == listing) {
                Some(x) => {
                    x.used = Instant::now();
                    (x.id, Arc::clone(&x.keys))
                }
                None => {
                    return error(
                        request_id,
                        ErrorKind::ListingExpired,
                        "this listing is gone (unused for a minute, or replaced by newer ones); start again"
                            .into(),
                    )
                }
            }
        };
        let (listing, keys) = keys;
        let start = (offset as usize).min(keys.len());
        let mut size = 0;
        let mut page = Vec::new();
        for record in &keys[start..] {
            let len = futu_auth_proto::codec::encode_message(record).map_or(usize::MAX, |b| b.len());
            if size + len > PAGE_BUDGET {
                if page.is_empty() {
                    return error(
                        request_id,
                        ErrorKind::Internal,
                        format!(
                            "key {:?} has a record too large for a frame; read {} directly",
                            record.id.as_str(),
                            self.keys_file.display()
                        ),
                    );
                }
                break;
            }
            size += len;
            page.push(record.clone());
        }
        if start + page.len() == keys.len() {
            // The last page: the listing is done.
            let mut l = self.listings.lock().unwrap_or_else(|p| p.into_inner());
            l.open.retain(|x| x.id != listing);
        }
        Response::KeysPage {
            request_id,
            listing,
            offset: start as u32,
            total: keys.len() as u32,
            keys: page,
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

    /// Writes an admin request's record to the audit file (before its answer is sent)
    /// and queues journald's copy.
    async fn write_audit(&self, rec: AuditRecord) {
        let mut bytes = Vec::new();
        rec.write_json(&mut bytes);
        if let Err(e) = self.commit.write_records(&self.log, &bytes) {
            tracing::error!(
                "the audit record of {} {} was not written: {e}",
                rec.endpoint,
                rec.request_id
            );
        }
        self.journald(rec).await;
    }

    async fn journald(&self, rec: AuditRecord) {
        if self.audit.record(rec).await.is_err() {
            tracing::error!("audit writer stopped; a journald record could not be queued");
        }
    }
}

fn decision_key(d: &Decision) -> Option<&KeyId> {
    match d {
        Decision::Allow { key_id, .. } => Some(key_id),
        Decision::Deny { key_id, .. } => key_id.as_ref(),
    }
}

/// A check or scope check waiting for its group commit.
enum Pending {
    Check(Check, Verdict),
    Scope(CheckScope, Verdict),
    /// Answered otherwise (a future, or an error).
    Ready(Answer),
}

fn check_record(c: &Check, v: &Verdict, peer: Peer, latency: std::time::Duration) -> AuditRecord {
    let mut rec = decision_record(Kind::Check, &c.endpoint, c.request_id, c.iface, peer, v, latency);
    rec.order = c.order.as_ref().map(|o| AuditOrder::of(o, v.value));
    rec.dry_run = c.dry_run;
    rec
}

fn scope_record(c: &CheckScope, v: &Verdict, peer: Peer, latency: std::time::Duration) -> AuditRecord {
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
