//! The audit trail: exactly one record per decision and per admin operation, written off
//! the decision path.
//!
//! Request handlers send records into a bounded channel; a writer thread drains it in
//! batches, appends each batch to the JSONL file (O_APPEND, one object a line) and flushes
//! it before waiting again, so a record reaches the file within one batch (well under
//! 100 ms). When the channel is full, handlers wait: records are never dropped. The same
//! records go to journald (tracing-journald, structured fields such as KEY_ID, OUTCOME,
//! REASON) when enabled. A record never holds a token or a digest.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use futu_auth_proto::{Iface, KeyId, Order, Reason, Scope};
use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::key::redact;
use crate::money::Money;

/// Records waiting for the writer; past this, handlers wait.
pub const QUEUE_CAPACITY: usize = 65_536;

/// Most records written in one batch.
const BATCH: usize = 4096;

/// How long the writer sleeps between polls of an empty queue (the most a record waits
/// before it is written, under load).
const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(2);

/// Empty polls (of [`POLL_INTERVAL`]) before the writer parks until the next record.
const IDLE_POLLS: u32 = 50;

/// The `target` of audit events in tracing, which the journald layer listens to.
pub const TARGET: &str = "futu_audit";

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A Check.
    Check,
    /// A CheckScope.
    CheckScope,
    /// A Release.
    Release,
    /// An admin request.
    Admin,
}

impl Kind {
    /// `check`, `check_scope`, `release` or `admin`, as in the record.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Check => "check",
            Kind::CheckScope => "check_scope",
            Kind::Release => "release",
            Kind::Admin => "admin",
        }
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Allowed (or, for admin requests and releases, done).
    Allow,
    /// Refused by a rule; `reason` says which.
    Reject,
    /// Failed for another cause (unknown ticket, duplicate id, unreadable keys.json);
    /// `error` says which.
    Error,
}

impl Outcome {
    /// `allow`, `reject` or `error`, as in the record and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Reject => "reject",
            Outcome::Error => "error",
        }
    }
}

/// The order part of a record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditOrder {
    /// `simulate` or `real`.
    pub env: &'static str,
    /// e.g. `HK`.
    pub market: &'static str,
    /// e.g. `HK.00700`.
    pub symbol: String,
    /// e.g. `SELL`.
    pub side: &'static str,
    /// Quantity as sent.
    pub qty: f64,
    /// Price as sent.
    pub price: Option<f64>,
    /// qty × price, exact to 10⁻⁸ (null without a price).
    pub value: Option<f64>,
}

impl AuditOrder {
    /// The record of `order`, whose exact value (if computed) is `value`.
    pub fn of(order: &Order, value: Option<Money>) -> AuditOrder {
        AuditOrder {
            env: order.env.as_str(),
            market: order.market.as_str(),
            symbol: redact(&order.symbol).chars().take(64).collect(),
            side: order.side.as_str(),
            qty: order.qty,
            price: order.price,
            value: value
                .map(Money::as_f64)
                .or_else(|| order.price.map(|p| order.qty * p).filter(|v| v.is_finite())),
        }
    }
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    /// When the request was answered; written as RFC 3339 in UTC with microseconds (the
    /// formatting happens on the writer thread, off the decision path).
    #[serde(serialize_with = "serialize_ts")]
    pub ts: Timestamp,
    /// What kind of request.
    pub kind: Kind,
    /// The front-end it came through (null for admin requests and releases).
    pub iface: Option<&'static str>,
    /// The endpoint of a check; for other requests the request name (`Release`, `GenKey`).
    pub endpoint: String,
    /// The key involved; null when the token matched no key.
    pub key_id: Option<KeyId>,
    /// allow, reject or error.
    pub outcome: Outcome,
    /// The reason code of a reject.
    pub reason: Option<&'static str>,
    /// The error kind of an error.
    pub error: Option<&'static str>,
    /// One line for a person.
    pub detail: Option<String>,
    /// The scope the endpoint needed.
    pub scope: Option<&'static str>,
    /// The order of an order write.
    pub order: Option<AuditOrder>,
    /// Whether the check was a dry run (nothing consumed).
    pub dry_run: bool,
    /// The ticket of an allowed order, or the ticket released.
    pub ticket: Option<u64>,
    /// The client's request id.
    pub request_id: u64,
    /// The connecting process's uid (SO_PEERCRED).
    pub peer_uid: u32,
    /// The connecting process's pid.
    pub peer_pid: u32,
    /// From reading the request to deciding, in microseconds.
    pub latency_us: u64,
}

impl AuditRecord {
    /// A record stamped now, with everything optional empty.
    pub fn new(
        kind: Kind,
        endpoint: &str,
        outcome: Outcome,
        request_id: u64,
        peer: crate::peer::Peer,
    ) -> AuditRecord {
        AuditRecord {
            ts: Timestamp::now(),
            kind,
            iface: None,
            endpoint: match redact(endpoint) {
                std::borrow::Cow::Borrowed(e) if e.len() <= 128 => e.to_owned(),
                shown => shown.chars().take(128).collect(),
            },
            key_id: None,
            outcome,
            reason: None,
            error: None,
            detail: None,
            scope: None,
            order: None,
            dry_run: false,
            ticket: None,
            request_id,
            peer_uid: peer.uid,
            peer_pid: peer.pid,
            latency_us: 0,
        }
    }

    /// Sets the interface.
    pub fn iface(mut self, iface: Iface) -> Self {
        self.iface = Some(iface.as_str());
        self
    }

    /// Sets the reason of a reject.
    pub fn reason(mut self, reason: Reason) -> Self {
        self.reason = Some(reason.as_str());
        self
    }

    /// Sets the scope.
    pub fn scope(mut self, scope: Option<Scope>) -> Self {
        self.scope = scope.map(Scope::as_str);
        self
    }

    fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        serde_json::to_writer(&mut *out, self)?;
        out.write_all(b"\n")
    }

    /// Emits the record as a tracing event for the journald layer.
    fn emit_journald(&self) {
        let o = self.order.as_ref();
        tracing::info!(
            target: TARGET,
            kind = self.kind.as_str(),
            iface = self.iface,
            endpoint = %self.endpoint,
            key_id = self.key_id.as_ref().map(KeyId::as_str),
            outcome = self.outcome.as_str(),
            reason = self.reason,
            error = self.error,
            scope = self.scope,
            market = o.map(|o| o.market),
            symbol = o.map(|o| o.symbol.as_str()),
            side = o.map(|o| o.side),
            qty = o.map(|o| o.qty),
            price = o.and_then(|o| o.price),
            value = o.and_then(|o| o.value),
            dry_run = self.dry_run,
            ticket = self.ticket,
            request_id = self.request_id,
            peer_uid = self.peer_uid,
            peer_pid = self.peer_pid,
            latency_us = self.latency_us,
            "{} {} {}{}",
            self.outcome.as_str(),
            self.key_id.as_ref().map(KeyId::as_str).unwrap_or("-"),
            self.endpoint,
            self.reason.map(|r| format!(" reason={r}")).unwrap_or_default(),
        );
    }
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-04-20T10:00:00.123456Z`.
/// The date and time to the second is formatted once per second (per thread; only the
/// writer thread formats) and the microseconds appended.
fn serialize_ts<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    thread_local! {
        static SECOND: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    let (second, micros) = (t.as_second(), t.subsec_microsecond());
    let (second, micros) = if micros < 0 {
        (second - 1, micros + 1_000_000)
    } else {
        (second, micros)
    };
    SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != second {
            *cached = second;
            *text = Timestamp::from_second(second)
                .map(|whole| whole.strftime("%Y-%m-%dT%H:%M:%S").to_string())
                .unwrap_or_default();
        }
        s.collect_str(&format_args!("{text}.{micros:06}Z"))
    })
}

enum Cmd {
    Record(Box<AuditRecord>),
    Reopen(oneshot::Sender<io::Result<()>>),
    Close(oneshot::Sender<()>),
}

/// The handle request handlers send records through.
#[derive(Debug, Clone)]
pub struct Audit {
    tx: mpsc::Sender<Cmd>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cmd")
    }
}

/// The writer thread; [`Audit::close`] stops it.
pub struct Writer {
    thread: Option<JoinHandle<()>>,
}

impl Audit {
    /// Opens the JSONL file (if any) and starts the writer thread.
    pub fn start(file: Option<PathBuf>, journald: bool) -> io::Result<(Audit, Writer)> {
        let sink = match &file {
            Some(p) => Some(open_append(p)?),
            None => None,
        };
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let thread = std::thread::Builder::new()
            .name("futu-audit".into())
            .spawn(move || write_loop(rx, file, sink, journald))?;
        Ok((Audit { tx }, Writer { thread: Some(thread) }))
    }

    /// Queues a record, waiting while the queue is full. Fails only after [`Audit::close`].
    pub async fn record(&self, rec: impl Into<Box<AuditRecord>>) -> Result<(), AuditClosed> {
        self.tx
            .send(Cmd::Record(rec.into()))
            .await
            .map_err(|_| AuditClosed)
    }

    /// Queues a record if there is room now.
    pub fn try_record(&self, rec: AuditRecord) -> Result<(), TryRecord> {
        match self.tx.try_send(Cmd::Record(Box::new(rec))) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(Cmd::Record(rec))) => Err(TryRecord::Full(rec)),
            Err(_) => Err(TryRecord::Closed),
        }
    }

    /// Reopens the file (after logrotate moved it), once what is queued before is written.
    pub async fn reopen(&self) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Reopen(tx))
            .await
            .map_err(|_| io::Error::other("audit writer stopped"))?;
        rx.await.map_err(|_| io::Error::other("audit writer stopped"))?
    }

    /// Writes and flushes everything queued, then stops the writer.
    pub async fn close(&self, mut writer: Writer) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
        if let Some(t) = writer.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// Why [`Audit::try_record`] did not queue a record.
#[derive(Debug)]
pub enum TryRecord {
    /// The queue is full; here is the record back, to send with [`Audit::record`].
    Full(Box<AuditRecord>),
    /// The writer has stopped.
    Closed,
}

/// The audit writer has stopped (the daemon is shutting down).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the audit writer has stopped")]
pub struct AuditClosed;

fn open_append(path: &Path) -> io::Result<BufWriter<File>> {
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("audit log {}: {e}", path.display())))?;
    Ok(BufWriter::with_capacity(256 * 1024, f))
}

fn write_loop(
    mut rx: mpsc::Receiver<Cmd>,
    path: Option<PathBuf>,
    mut sink: Option<BufWriter<File>>,
    journald: bool,
) {
    let mut batch: Vec<Cmd> = Vec::with_capacity(BATCH);
    let mut idle_polls = 0u32;
    loop {
        // Under load the writer polls: a sender then never has to wake it (a futex call
        // and a context switch per record). After IDLE_POLLS empty polls it parks until the
        // next record instead, so an idle daemon does not spin.
        match rx.try_recv() {
            Ok(c) => {
                idle_polls = 0;
                batch.push(c);
            }
            Err(mpsc::error::TryRecvError::Empty) if idle_polls < IDLE_POLLS => {
                idle_polls += 1;
                std::thread::sleep(POLL_INTERVAL);
                continue;
            }
            Err(mpsc::error::TryRecvError::Empty) => match rx.blocking_recv() {
                Some(c) => {
                    idle_polls = 0;
                    batch.push(c);
                }
                None => return,
            },
            Err(mpsc::error::TryRecvError::Disconnected) => return,
        }
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        for cmd in batch.drain(..) {
            match cmd {
                Cmd::Record(rec) => {
                    if let Some(out) = sink.as_mut() {
                        if let Err(e) = rec.write_json(out) {
                            tracing::error!("audit log write failed: {e}");
                        }
                    }
                    if journald {
                        rec.emit_journald();
                    }
                }
                Cmd::Reopen(done) => {
                    let result = match (&path, sink.as_mut()) {
                        (Some(p), Some(out)) => out.flush().and_then(|()| open_append(p)).map(|new| {
                            sink = Some(new);
                        }),
                        _ => Ok(()),
                    };
                    let _ = done.send(result);
                }
                Cmd::Close(done) => {
                    if let Some(out) = sink.as_mut() {
                        if let Err(e) = out.flush().and_then(|()| out.get_ref().sync_all()) {
                            tracing::error!("audit log flush failed: {e}");
                        }
                    }
                    let _ = done.send(());
                    return;
                }
            }
        }
        if let Some(out) = sink.as_mut() {
            if let Err(e) = out.flush() {
                tracing::error!("audit log flush failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::Peer;

    fn peer() -> Peer {
        Peer {
            uid: 1000,
            gid: 1000,
            pid: 4242,
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let mut r = AuditRecord::new(Kind::Check, "Qot_GetBasicQot", Outcome::Allow, 1, peer());
        for (t, shown) in [
            ("2026-04-20T10:00:00.1234567Z", "2026-04-20T10:00:00.123456Z"),
            ("2026-04-20T10:00:00.9Z", "2026-04-20T10:00:00.900000Z"),
            ("2026-04-20T10:00:01Z", "2026-04-20T10:00:01.000000Z"),
            ("1969-12-31T23:59:59.5Z", "1969-12-31T23:59:59.500000Z"),
        ] {
            r.ts = t.parse().unwrap();
            let v = serde_json::to_value(&r).unwrap();
            assert_eq!(v["ts"], shown);
        }
    }

    #[test]
    fn a_record_never_holds_a_token_shaped_endpoint() {
        let r = AuditRecord::new(
            Kind::Check,
            "fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f",
            Outcome::Reject,
            1,
            peer(),
        );
        assert_eq!(r.endpoint, "fc_<redacted>");
    }

    #[tokio::test]
    async fn records_reach_the_file_in_order_and_close_flushes_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (audit, writer) = Audit::start(Some(path.clone()), false).unwrap();
        for i in 0..1000 {
            let mut r =
                AuditRecord::new(Kind::Check, "Trd_PlaceOrder", Outcome::Allow, i, peer()).iface(Iface::Rest);
            r.key_id = Some("sim-bot".parse().unwrap());
            audit.record(r).await.unwrap();
        }
        audit.close(writer).await;
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 1000);
        assert_eq!(lines[999]["request_id"], 999);
        assert_eq!(lines[0]["outcome"], "allow");
        assert_eq!(lines[0]["key_id"], "sim-bot");
        assert_eq!(lines[0]["iface"], "rest");
        assert_eq!(lines[0]["peer_pid"], 4242);
        assert!(lines[0]["reason"].is_null());
    }

    #[tokio::test]
    async fn records_are_flushed_without_waiting_for_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (audit, writer) = Audit::start(Some(path.clone()), false).unwrap();
        audit
            .record(AuditRecord::new(
                Kind::Admin,
                "ListKeys",
                Outcome::Allow,
                7,
                peer(),
            ))
            .await
            .unwrap();
        let mut seen = false;
        for _ in 0..100 {
            if std::fs::read_to_string(&path)
                .unwrap()
                .contains("\"request_id\":7")
            {
                seen = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(seen, "the record reached the file while the daemon runs");
        audit.close(writer).await;
    }

    #[tokio::test]
    async fn reopen_follows_a_rotated_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (audit, writer) = Audit::start(Some(path.clone()), false).unwrap();
        audit
            .record(AuditRecord::new(Kind::Admin, "A", Outcome::Allow, 1, peer()))
            .await
            .unwrap();
        std::fs::rename(&path, dir.path().join("audit.jsonl.1")).unwrap();
        audit.reopen().await.unwrap();
        audit
            .record(AuditRecord::new(Kind::Admin, "B", Outcome::Allow, 2, peer()))
            .await
            .unwrap();
        audit.close(writer).await;
        let old = std::fs::read_to_string(dir.path().join("audit.jsonl.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(old.contains("\"endpoint\":\"A\"") && !old.contains("\"endpoint\":\"B\""));
        assert!(new.contains("\"endpoint\":\"B\"") && !new.contains("\"endpoint\":\"A\""));
    }
}
