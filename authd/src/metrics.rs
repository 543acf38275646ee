//! Prometheus metrics, served as OpenMetrics text at `GET /metrics` (no auth; loopback by
//! default), and `GET /healthz` (200 once the daemon is ready).
//!
//! The three families shown in README.md's "Prometheus scrape" keep these names and labels:
//! `futu_auth_events_total{iface,outcome,key_id}`,
//! `futu_auth_limit_rejects_total{iface,key_id,reason}` (every rejected check, by reason code) and
//! `futu_ws_filtered_pushes_total{required_scope,key_id}` (a denied CheckScope from the
//! WebSocket front-end; `required_scope` is the scope's family: `qot`, `acc` or `trade`).
//! A token that matched no key is counted under `key_id="<none>"`, never under the token.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futu_auth_proto::{Halt, Iface, KeyId, OrderEventKind, OrderEventRefusal, Reason, Scope};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::audit::Outcome;
use crate::connection::{Closed, Fault};
use crate::key_store::FreshnessEvent;
use crate::ledger::HealthEvent;
use crate::status::{self, Exposition, History};

/// The `key_id` label of a token that matched no key.
pub const NO_KEY: &str = "<none>";

/// A `key_id` label that shares the key id's text instead of copying it.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct KeyLabel(Option<KeyId>);

impl EncodeLabelValue for KeyLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        encoder.write_str(self.0.as_ref().map(KeyId::as_str).unwrap_or(NO_KEY))
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    iface: &'static str,
    outcome: &'static str,
    key_id: KeyLabel,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    iface: &'static str,
    key_id: KeyLabel,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PushLabels {
    required_scope: &'static str,
    key_id: KeyLabel,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FileLabels {
    file: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// A file every answer waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrittenFile {
    /// The ledger journal (order consumptions and releases).
    Ledger,
    /// The audit file.
    Audit,
}

impl WrittenFile {
    /// The `file` label: `ledger` or `audit`.
    pub fn as_str(self) -> &'static str {
        match self {
            WrittenFile::Ledger => "ledger",
            WrittenFile::Audit => "audit",
        }
    }

    /// For log lines: `ledger` (its journal or database) or `audit file`.
    pub fn describe(self) -> &'static str {
        match self {
            WrittenFile::Ledger => "ledger",
            WrittenFile::Audit => "audit file",
        }
    }

    /// What is refused while the file cannot be written.
    pub fn refused(self) -> &'static str {
        match self {
            WrittenFile::Ledger => "orders and releases are",
            WrittenFile::Audit => "checks, orders and releases are",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    key_id: KeyLabel,
}

/// The `key_id` label of a halt: the key's id, or `*` for every key.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HaltLabels {
    key_id: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OrderEventLabels {
    kind: &'static str,
    outcome: &'static str,
}

/// What an order event came to, as `futu_auth_order_events_total`'s `outcome` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// Applied to its order.
    Applied,
    /// Applied before, or its order finished already: nothing changed.
    Duplicate,
    /// Refused, for this reason.
    Refused(OrderEventRefusal),
    /// Not applied: the daemon failed (its ledger store or the audit file).
    Internal,
}

impl EventOutcome {
    /// `applied`, `duplicate`, `unknown_ticket`, `bad_figures`, `not_supported` or
    /// `internal`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventOutcome::Applied => "applied",
            EventOutcome::Duplicate => "duplicate",
            EventOutcome::Refused(r) => r.as_str(),
            EventOutcome::Internal => "internal",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdminLabels {
    op: &'static str,
    outcome: &'static str,
}

/// Every metric the daemon keeps.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    events: Family<EventLabels, Counter>,
    limit_rejects: Family<RejectLabels, Counter>,
    ws_filtered: Family<PushLabels, Counter>,
    check_latency: Histogram,
    keys_loaded: Gauge,
    reloads: Family<ResultLabels, Counter>,
    connections: Gauge,
    bad_frames: Family<KindLabels, Counter>,
    admin: Family<AdminLabels, Counter>,
    order_events: Family<OrderEventLabels, Counter>,
    writable: Family<FileLabels, Gauge>,
    write_errors: Family<FileLabels, Counter>,
    closed: Family<ReasonLabels, Counter>,
    ledger_up: Gauge,
    keys_store_up: Gauge,
    keys_snapshot_age: Gauge<f64, AtomicU64>,
    ledger_errors: Family<KindLabels, Counter>,
    key_last_used: Family<KeyLabels, Gauge>,
    halted: Family<HaltLabels, Gauge>,
    last_reload_at: Gauge<f64, AtomicU64>,
    last_reload_ok: Gauge,
    /// The counters as they were over the last quarter of an hour, for the status page.
    history: History,
    /// The `key_id`s `halted` has a sample for: what a change of the halts removes.
    halted_labels: std::sync::Mutex<Vec<String>>,
    key_expires: Family<KeyLabels, Gauge>,
    /// The keys `key_expires` has a sample for: what a change of the keys removes.
    key_expires_labels: std::sync::Mutex<Vec<KeyId>>,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every family registered and nothing counted.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let events = Family::<EventLabels, Counter>::default();
        let limit_rejects = Family::<RejectLabels, Counter>::default();
        let ws_filtered = Family::<PushLabels, Counter>::default();
        let check_latency = Histogram::new(exponential_buckets(1e-6, 2.0, 20));
        let keys_loaded = Gauge::default();
        let reloads = Family::<ResultLabels, Counter>::default();
        let connections = Gauge::default();
        let bad_frames = Family::<KindLabels, Counter>::default();
        let admin = Family::<AdminLabels, Counter>::default();
        let order_events = Family::<OrderEventLabels, Counter>::default();
        let writable = Family::<FileLabels, Gauge>::default();
        let write_errors = Family::<FileLabels, Counter>::default();
        let closed = Family::<ReasonLabels, Counter>::default();
        let ledger_up = Gauge::default();
        ledger_up.set(1);
        let keys_store_up = Gauge::default();
        keys_store_up.set(1);
        let keys_snapshot_age = Gauge::<f64, AtomicU64>::default();
        let ledger_errors = Family::<KindLabels, Counter>::default();
        let key_last_used = Family::<KeyLabels, Gauge>::default();
        let halted = Family::<HaltLabels, Gauge>::default();
        let last_reload_at = Gauge::<f64, AtomicU64>::default();
        let last_reload_ok = Gauge::default();
        last_reload_ok.set(1);
        let key_expires = Family::<KeyLabels, Gauge>::default();
        registry.register(
            "futu_auth_events",
            "Decisions by front-end, outcome and key",
            events.clone(),
        );
        registry.register(
            "futu_auth_limit_rejects",
            "Rejected checks by front-end, key and reason code",
            limit_rejects.clone(),
        );
        registry.register(
            "futu_ws_filtered_pushes",
            "WebSocket pushes withheld because the key lacks the scope",
            ws_filtered.clone(),
        );
        registry.register(
            "futu_auth_check_latency_seconds",
            "Time from reading a check to deciding it",
            check_latency.clone(),
        );
        registry.register("futu_auth_keys_loaded", "Keys in service", keys_loaded.clone());
        registry.register(
            "futu_auth_reloads",
            "keys.json reloads by result",
            reloads.clone(),
        );
        registry.register(
            "futu_auth_connections",
            "Open client connections",
            connections.clone(),
        );
        registry.register(
            "futu_auth_bad_frames",
            "Connections closed for a malformed frame, by kind",
            bad_frames.clone(),
        );
        registry.register(
            "futu_auth_admin_requests",
            "Admin requests by operation and outcome",
            admin.clone(),
        );
        registry.register(
            "futu_auth_order_events",
            "Order events by kind and what they came to: applied, duplicate, or refused (unknown_ticket, bad_figures, not_supported, internal)",
            order_events.clone(),
        );
        registry.register(
            "futu_auth_file_writable",
            "Whether the last write of the ledger journal or the audit file worked (1) or not (0)",
            writable.clone(),
        );
        registry.register(
            "futu_auth_write_errors",
            "Failed writes of the ledger journal or the audit file; each refused its requests",
            write_errors.clone(),
        );
        registry.register(
            "futu_auth_connections_closed",
            "Client connections closed, by reason",
            closed.clone(),
        );
        registry.register(
            "futu_auth_ledger_up",
            "Whether the ledger store answered its last call (1) or not (0); orders are refused while 0",
            ledger_up.clone(),
        );
        registry.register(
            "futu_auth_keys_store_up",
            "Whether the key store's last check confirmed the keys in service current (1) or not (0); always 1 for keys.json",
            keys_store_up.clone(),
        );
        registry.register(
            "futu_auth_keys_snapshot_age_seconds",
            "How long ago a key store shared by several hosts last confirmed the keys in service current; always 0 for keys.json",
            keys_snapshot_age.clone(),
        );
        registry.register(
            "futu_auth_ledger_errors",
            "Failed calls to the ledger database, by kind: unreachable, timeout, schema, database",
            ledger_errors.clone(),
        );
        registry.register(
            "futu_auth_key_last_used_timestamp_seconds",
            "When each key was last allowed a check (Unix seconds, to the minute); keys never used have no sample",
            key_last_used.clone(),
        );
        registry.register(
            "futu_auth_last_reload_timestamp_seconds",
            "When the keys were last reloaded (SIGHUP or futucli reload; Unix seconds); 0 before the first",
            last_reload_at.clone(),
        );
        registry.register(
            "futu_auth_last_reload_successful",
            "Whether the last reload worked (1) or failed and left the keys before it in service (0); 1 before the first",
            last_reload_ok.clone(),
        );
        registry.register(
            "futu_auth_halted",
            "1 while trading is halted for the key (key_id=\"*\": for every key); no sample otherwise",
            halted.clone(),
        );
        registry.register(
            "futu_auth_key_expires_timestamp_seconds",
            "When each key expires (Unix seconds, its expires_at); keys without an expiry have no sample",
            key_expires.clone(),
        );
        Metrics {
            registry,
            events,
            limit_rejects,
            ws_filtered,
            check_latency,
            keys_loaded,
            reloads,
            connections,
            bad_frames,
            admin,
            order_events,
            writable,
            write_errors,
            closed,
            ledger_up,
            keys_store_up,
            keys_snapshot_age,
            ledger_errors,
            key_last_used,
            halted,
            last_reload_at,
            last_reload_ok,
            history: History::new(),
            halted_labels: std::sync::Mutex::new(Vec::new()),
            key_expires,
            key_expires_labels: std::sync::Mutex::new(Vec::new()),
            ready: AtomicBool::new(false),
        }
    }

    /// Counts a decision of a Check or CheckScope (the daemon counts a burst's together,
    /// [`Metrics::decisions`]; the tests count one).
    #[cfg(test)]
    pub fn decision(&self, iface: Iface, key_id: Option<&KeyId>, reason: Option<Reason>, latency_s: f64) {
        let mut tally = DecisionTally::default();
        tally.add(iface, key_id, reason);
        self.decisions(tally, latency_s);
    }

    /// Counts a burst's decisions, all decided `latency_s` after they were read: one
    /// lookup of each family per run of equal labels instead of one per decision.
    pub fn decisions(&self, tally: DecisionTally, latency_s: f64) {
        for (iface, key_id, reason, n) in tally.runs {
            let key_id = KeyLabel(key_id);
            let outcome = match reason {
                Some(_) => Outcome::Reject,
                None => Outcome::Allow,
            }
            .as_str();
            self.events
                .get_or_create(&EventLabels {
                    iface: iface.as_str(),
                    outcome,
                    key_id: key_id.clone(),
                })
                .inc_by(n);
            if let Some(reason) = reason {
                self.limit_rejects
                    .get_or_create(&RejectLabels {
                        iface: iface.as_str(),
                        key_id,
                        reason: reason.as_str(),
                    })
                    .inc_by(n);
            }
            for _ in 0..n {
                self.check_latency.observe(latency_s);
            }
        }
    }

    /// Counts a WebSocket push withheld for lack of `scope`.
    pub fn ws_filtered(&self, scope: Scope, key_id: Option<&KeyId>, pushes: u32) {
        self.ws_filtered
            .get_or_create(&PushLabels {
                required_scope: scope.family(),
                key_id: KeyLabel(key_id.cloned()),
            })
            .inc_by(u64::from(pushes));
    }

    /// Counts a reload.
    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
        self.last_reload_at.set(status::unix_now());
        self.last_reload_ok.set(i64::from(ok));
    }

    /// Sets the number of keys in service.
    pub fn keys_loaded(&self, n: usize) {
        self.keys_loaded.set(n as i64);
    }

    /// A connection opened (+1) or closed (−1).
    pub fn connection(&self, delta: i64) {
        self.connections.inc_by(delta);
    }

    /// Counts a connection closed for breaking the protocol.
    pub fn bad_frame(&self, fault: Fault) {
        self.bad_frames
            .get_or_create(&KindLabels { kind: fault.as_str() })
            .inc();
    }

    /// Counts an admin request `op` (the request's name, e.g. `GenKey`).
    pub fn admin(&self, op: &'static str, outcome: Outcome) {
        self.admin
            .get_or_create(&AdminLabels {
                op,
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// Counts an order event of `kind` that came to `outcome`.
    pub fn order_event(&self, kind: OrderEventKind, outcome: EventOutcome) {
        self.order_events
            .get_or_create(&OrderEventLabels {
                kind: kind.as_str(),
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// Sets whether `file` can be written.
    pub fn writable(&self, file: WrittenFile, ok: bool) {
        self.writable
            .get_or_create(&FileLabels { file: file.as_str() })
            .set(i64::from(ok));
    }

    /// Counts a failed write of `file`.
    pub fn write_failed(&self, file: WrittenFile) {
        self.write_errors
            .get_or_create(&FileLabels { file: file.as_str() })
            .inc();
    }

    /// Counts a connection closed for `reason`.
    pub fn connection_closed(&self, reason: Closed) {
        self.closed
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// What a ledger store reported about its health: a failed call is counted by its
    /// kind and sets `futu_auth_ledger_up` to 0; one that worked sets it to 1.
    pub fn ledger_health(&self, event: HealthEvent) {
        match event {
            HealthEvent::Answered => {
                self.ledger_up.set(1);
            }
            HealthEvent::Failed(trouble) => {
                self.ledger_errors
                    .get_or_create(&KindLabels {
                        kind: trouble.as_str(),
                    })
                    .inc();
                self.ledger_up.set(0);
            }
        }
    }

    /// What a shared key store found: `futu_auth_keys_store_up` and
    /// `futu_auth_keys_snapshot_age_seconds`.
    pub fn keys_freshness(&self, event: FreshnessEvent) {
        match event {
            FreshnessEvent::Up(up) => {
                self.keys_store_up.set(i64::from(up));
            }
            FreshnessEvent::Age(age) => {
                self.keys_snapshot_age.set(age.as_secs_f64());
            }
        }
    }

    /// Sets when `key` was last used (Unix seconds).
    pub fn key_last_used(&self, key: &KeyId, unix_secs: i64) {
        self.key_last_used
            .get_or_create(&KeyLabels {
                // Its own copy: the family must not keep a snapshot's allocation alive.
                key_id: KeyLabel(Some(key.fresh_copy())),
            })
            .set(unix_secs);
    }

    /// Removes `key`'s last-used gauge (the key is no longer in keys.json).
    pub fn forget_key_last_used(&self, key: &KeyId) {
        self.key_last_used.remove(&KeyLabels {
            key_id: KeyLabel(Some(key.clone())),
        });
    }

    /// Sets `futu_auth_halted` to the halts in force: 1 for each halted key (`*` for every
    /// key), and no sample for the others.
    pub fn halts(&self, halts: &[Halt]) {
        let now: Vec<String> = halts.iter().map(|h| h.target.label().to_owned()).collect();
        let mut shown = self.halted_labels.lock().unwrap_or_else(|p| p.into_inner());
        // Set before removing, so that a scrape never sees a halt that lasts go missing.
        for key_id in &now {
            self.halted
                .get_or_create(&HaltLabels {
                    key_id: key_id.clone(),
                })
                .set(1);
        }
        for key_id in shown.iter().filter(|k| !now.contains(k)) {
            self.halted.remove(&HaltLabels {
                key_id: key_id.clone(),
            });
        }
        *shown = now;
    }

    /// Sets `futu_auth_key_expires_timestamp_seconds` to the keys in service: each key with
    /// an expiry (`(id, Unix seconds)`) has a sample, and no other key.
    pub fn key_expiries<'a>(&self, expiries: impl IntoIterator<Item = (&'a KeyId, i64)>) {
        let mut shown = self.key_expires_labels.lock().unwrap_or_else(|p| p.into_inner());
        let mut now = Vec::new();
        // Set before removing, so that a scrape never sees a key that stays go missing.
        for (id, unix_secs) in expiries {
            // Its own copy: the family must not keep a snapshot's allocation alive.
            let id = id.fresh_copy();
            self.key_expires
                .get_or_create(&KeyLabels {
                    key_id: KeyLabel(Some(id.clone())),
                })
                .set(unix_secs);
            now.push(id);
        }
        let kept: std::collections::HashSet<&KeyId> = now.iter().collect();
        for id in shown.iter().filter(|k| !kept.contains(k)) {
            self.key_expires.remove(&KeyLabels {
                key_id: KeyLabel(Some(id.clone())),
            });
        }
        drop(kept);
        *shown = now;
    }

    /// Marks the daemon ready for /healthz.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// The OpenMetrics text of every family.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    fn respond(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let (status, ctype, body) = match (req.method(), req.uri().path()) {
            (&Method::GET, "/metrics") => (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.encode(),
            ),
            (&Method::GET, "/") => (
                StatusCode::OK,
                "text/html; charset=utf-8",
                status::render(&self.encode(), &self.history),
            ),
            (&Method::GET, "/healthz") if self.ready.load(Ordering::Relaxed) => {
                (StatusCode::OK, "text/plain", "ok\n".to_owned())
            }
            (&Method::GET, "/healthz") => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "starting\n".to_owned(),
            ),
            _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".to_owned()),
        };
        Response::builder()
            .status(status)
            .header("content-type", ctype)
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts are valid")
    }
}

/// Binds the metrics address (so a bad one fails at startup).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("metrics listen {addr}: {e}")))
}

/// Serves /metrics, /healthz and the status page (`/`) until `shutdown`; samples the
/// counters for the status page meanwhile.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let sampled = Arc::clone(&metrics);
    let stop_sampling = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(status::SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop_sampling.cancelled() => return,
                _ = tick.tick() => sampled.history.sample(&Exposition::parse(&sampled.encode())),
            }
        }
    });
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("metrics accept failed: {e}");
                    continue;
                }
            },
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let resp = metrics.respond(&req);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The decisions of one burst, to be counted together by [`Metrics::decisions`]:
/// consecutive decisions with the same labels (a burst is usually one key's checks) are
/// one run.
#[derive(Debug, Default)]
pub struct DecisionTally {
    /// (interface, key, reason of a reject, how many in a row).
    runs: Vec<(Iface, Option<KeyId>, Option<Reason>, u64)>,
}

impl DecisionTally {
    /// The keys the burst allowed something, each once per run of its decisions.
    pub fn allowed_keys(&self) -> impl Iterator<Item = &KeyId> {
        let mut last: Option<&KeyId> = None;
        self.runs.iter().filter_map(move |(_, key, reason, _)| {
            let key = key.as_ref().filter(|_| reason.is_none())?;
            if last == Some(key) {
                return None;
            }
            last = Some(key);
            Some(key)
        })
    }

    /// Notes one decision.
    pub fn add(&mut self, iface: Iface, key_id: Option<&KeyId>, reason: Option<Reason>) {
        if let Some((i, k, r, n)) = self.runs.last_mut() {
            if *i == iface && k.as_ref() == key_id && *r == reason {
                *n += 1;
                return;
            }
        }
        self.runs.push((iface, key_id.cloned(), reason, 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_families_carry_their_documented_labels() {
        let m = Metrics::new();
        let research: KeyId = "research".parse().unwrap();
        let bot: KeyId = "sim-bot".parse().unwrap();
        m.decision(Iface::Rest, Some(&research), None, 1e-5);
        m.decision(Iface::Grpc, Some(&bot), Some(Reason::Rate), 1e-5);
        m.ws_filtered(Scope::TradeReal, Some(&research), 1);
        let text = m.encode();
        assert!(
            text.contains(r#"futu_auth_events_total{iface="rest",outcome="allow",key_id="research"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"futu_auth_limit_rejects_total{iface="grpc",key_id="sim-bot",reason="rate"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"futu_ws_filtered_pushes_total{required_scope="trade",key_id="research"} 1"#),
            "{text}"
        );
        assert!(text.contains("futu_auth_check_latency_seconds_bucket"));
    }

    #[test]
    fn the_halts_gauge_has_a_sample_for_each_halt_in_force_and_none_after_resume() {
        let m = Metrics::new();
        let halt = |json: &str| -> Halt { serde_json::from_str(json).unwrap() };
        let rest = r#""reason":"r","halted_by":{"uid":0},"halted_at":"2026-12-06T10:00:00Z""#;
        let bot = halt(&format!(r#"{{"key_id":"sim-bot",{rest}}}"#));
        let all = halt(&format!(r#"{{"all":true,{rest}}}"#));
        m.halts(&[bot.clone(), all]);
        let text = m.encode();
        assert!(text.contains(r#"futu_auth_halted{key_id="sim-bot"} 1"#), "{text}");
        assert!(text.contains(r#"futu_auth_halted{key_id="*"} 1"#), "{text}");
        m.halts(&[bot]);
        let text = m.encode();
        assert!(text.contains(r#"futu_auth_halted{key_id="sim-bot"} 1"#), "{text}");
        assert!(!text.contains(r#"futu_auth_halted{key_id="*"}"#), "{text}");
        m.halts(&[]);
        assert!(!m.encode().contains("futu_auth_halted{"), "no halt, no sample");
    }

    #[test]
    fn the_expiry_gauge_has_a_sample_for_each_key_with_an_expiry_and_none_once_it_goes() {
        let m = Metrics::new();
        let bot: KeyId = "sim-bot".parse().unwrap();
        let research: KeyId = "research".parse().unwrap();
        m.key_expiries([(&bot, 1_796_860_800), (&research, 1_797_000_000)]);
        let text = m.encode();
        assert!(
            text.contains(r#"futu_auth_key_expires_timestamp_seconds{key_id="sim-bot"} 1796860800"#),
            "{text}"
        );
        assert!(
            text.contains(r#"futu_auth_key_expires_timestamp_seconds{key_id="research"} 1797000000"#),
            "{text}"
        );
        m.key_expiries([(&bot, 1_796_947_200)]);
        let text = m.encode();
        assert!(
            text.contains(r#"futu_auth_key_expires_timestamp_seconds{key_id="sim-bot"} 1796947200"#),
            "{text}"
        );
        assert!(
            !text.contains(r#"key_expires_timestamp_seconds{key_id="research"}"#),
            "{text}"
        );
        m.key_expiries([]);
        assert!(!m.encode().contains("futu_auth_key_expires_timestamp_seconds{"));
    }

    #[test]
    fn a_burst_counted_together_counts_every_decision() {
        let (one_by_one, together) = (Metrics::new(), Metrics::new());
        let a: KeyId = "a".parse().unwrap();
        let b: KeyId = "b".parse().unwrap();
        let burst = [
            (Iface::Rest, Some(&a), None),
            (Iface::Rest, Some(&a), None),
            (Iface::Rest, Some(&a), Some(Reason::Rate)),
            (Iface::Rest, Some(&b), None),
            (Iface::Grpc, Some(&a), None),
            (Iface::Rest, Some(&a), None),
            (Iface::Mcp, None, Some(Reason::UnknownKey)),
        ];
        let mut tally = DecisionTally::default();
        for (iface, key, reason) in burst {
            one_by_one.decision(iface, key, reason, 1e-5);
            tally.add(iface, key, reason);
        }
        together.decisions(tally, 1e-5);
        // A family's series are listed in its hash map's order: compare them as sets.
        let lines = |m: &Metrics| {
            let mut l: Vec<String> = m.encode().lines().map(str::to_owned).collect();
            l.sort();
            l
        };
        assert_eq!(lines(&one_by_one), lines(&together));
        assert!(together
            .encode()
            .contains(r#"futu_auth_events_total{iface="rest",outcome="allow",key_id="a"} 3"#));
    }

    #[test]
    fn order_events_are_counted_by_kind_and_outcome() {
        let m = Metrics::new();
        m.order_event(OrderEventKind::Filled, EventOutcome::Applied);
        m.order_event(OrderEventKind::Filled, EventOutcome::Applied);
        m.order_event(OrderEventKind::Cancelled, EventOutcome::Duplicate);
        m.order_event(
            OrderEventKind::Accepted,
            EventOutcome::Refused(OrderEventRefusal::UnknownTicket),
        );
        m.order_event(OrderEventKind::Rejected, EventOutcome::Internal);
        let text = m.encode();
        for line in [
            r#"futu_auth_order_events_total{kind="filled",outcome="applied"} 2"#,
            r#"futu_auth_order_events_total{kind="cancelled",outcome="duplicate"} 1"#,
            r#"futu_auth_order_events_total{kind="accepted",outcome="unknown_ticket"} 1"#,
            r#"futu_auth_order_events_total{kind="rejected",outcome="internal"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    #[test]
    fn an_unknown_token_is_counted_under_a_placeholder() {
        let m = Metrics::new();
        m.decision(Iface::Mcp, None, Some(Reason::UnknownKey), 1e-5);
        let text = m.encode();
        assert!(
            text.contains(r#"futu_auth_events_total{iface="mcp",outcome="reject",key_id="<none>"} 1"#),
            "{text}"
        );
    }
}
