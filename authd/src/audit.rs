//! The audit trail: exactly one record per decision and per admin operation.
//!
//! The audit file (JSONL, one object a line, O_APPEND, mode 0600) is written in the
//! request's group commit ([`crate::commit`]): a record reaches the file with `write(2)`,
//! after the ledger entries of its commit and before its answer is sent, so after any
//! `kill -9` every allow a client saw has its record. The file is fsynced every second, on
//! rotation and at shutdown (a power loss can cost the last second; a crash of the daemon
//! costs nothing). [`AuditFile`] is that file; [`settle`] squares it with the ledger at
//! start. A record never holds a token or a digest.
//!
//! journald gets the same records as an extra copy, through a bounded queue and a writer
//! thread (tracing-journald, structured fields such as KEY_ID, OUTCOME, REASON): handlers
//! wait when the queue is full, so no record is dropped.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use futu_auth_proto::{Iface, KeyId, Order, Reason, Scope};
use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::key::redact;
use crate::ledger_log::{AuditMark, Audited};
use crate::money::Money;

/// Records waiting for the journald writer; past this, handlers wait.
pub const QUEUE_CAPACITY: usize = 65_536;

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

    /// Appends the record as one JSON line to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(&mut *out, self).expect("an audit record always serializes");
        out.push(b'\n');
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

/// The audit file, written by the group commit: appends are whole `write(2)` calls, and
/// one that fails is cut back so the file never holds half a record.
#[derive(Debug)]
pub struct AuditFile {
    path: PathBuf,
    file: File,
    /// Bytes in the file: where a failed append is cut back to.
    len: u64,
    dev: u64,
    ino: u64,
    /// A failed append could not be cut back: that must happen before the next one.
    dirty: bool,
}

impl AuditFile {
    /// Opens (creating, mode 0600) `path` for appending.
    pub fn open(path: &Path) -> io::Result<AuditFile> {
        let at = |e: io::Error| io::Error::new(e.kind(), format!("audit log {}: {e}", path.display()));
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(at)?;
        let meta = file.metadata().map_err(at)?;
        Ok(AuditFile {
            path: path.to_owned(),
            file,
            len: meta.len(),
            dev: meta.dev(),
            ino: meta.ino(),
            dirty: false,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where records of `len` bytes appended now will lie.
    pub fn mark(&self, len: usize) -> AuditMark {
        AuditMark {
            dev: self.dev,
            ino: self.ino,
            at: self.len,
            len: len as u64,
        }
    }

    /// Appends `records` (whole lines) in one write. On `Err` nothing of them stays.
    pub fn append(&mut self, records: &[u8]) -> io::Result<()> {
        if self.dirty {
            self.file.set_len(self.len)?;
            self.dirty = false;
        }
        if let Err(e) = self.file.write_all(records) {
            if self.file.set_len(self.len).is_err() {
                self.dirty = true;
            }
            return Err(e);
        }
        self.len += records.len() as u64;
        Ok(())
    }

    /// Opens the file at its path again (after logrotate moved it); the old one is
    /// synced first.
    pub fn reopen(&mut self) -> io::Result<()> {
        let _ = self.file.sync_data();
        *self = AuditFile::open(&self.path)?;
        Ok(())
    }

    /// A handle on the open file, for syncing it off the commit lock.
    pub fn handle(&self) -> io::Result<File> {
        self.file.try_clone()
    }
}

/// At start, before the ledger is replayed: whether the audit records of the ledger's
/// newest commit, at `mark`, reached the audit file (looked up by inode at `path` or among
/// the files beside it, where logrotate moves it). When they did not (the daemon stopped
/// between the ledger write and the audit write), any part of them that was written is cut
/// off, so the file holds no record of an answer that was never sent.
pub fn settle(path: &Path, mark: &AuditMark) -> Audited {
    let same = |p: &Path| {
        fs::metadata(p)
            .ok()
            .filter(|m| m.dev() == mark.dev && m.ino() == mark.ino)
            .map(|m| (p.to_owned(), m.len()))
    };
    let found = same(path).or_else(|| {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty())?;
        fs::read_dir(dir)
            .ok()?
            .filter_map(Result::ok)
            .find_map(|e| same(&e.path()))
    });
    let Some((file, size)) = found else {
        return Audited::Unknown;
    };
    if size >= mark.at + mark.len {
        return Audited::Yes;
    }
    if size > mark.at {
        if let Err(e) = OpenOptions::new()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_len(mark.at))
        {
            tracing::error!("cutting unanswered records off {}: {e}", file.display());
        }
    }
    Audited::No
}

/// At start: cuts a record left half-written by a crash off the end of the audit file, so
/// every line of it is whole JSON again. Returns how many bytes were cut.
pub fn tidy_tail(path: &Path) -> io::Result<u64> {
    let text = match fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let keep = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let cut = (text.len() - keep) as u64;
    if cut > 0 {
        OpenOptions::new().write(true).open(path)?.set_len(keep as u64)?;
    }
    Ok(cut)
}

enum Cmd {
    Record(Box<AuditRecord>),
    Close(oneshot::Sender<()>),
}

/// The handle request handlers send journald's copy of their records through; a no-op
/// when journald is off.
#[derive(Debug, Clone)]
pub struct Audit {
    tx: Option<mpsc::Sender<Cmd>>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cmd")
    }
}

/// The journald writer thread; [`Audit::close`] stops it.
pub struct Writer {
    thread: Option<JoinHandle<()>>,
}

impl Audit {
    /// Starts the journald writer thread when `journald` is on.
    pub fn start(journald: bool) -> io::Result<(Audit, Writer)> {
        if !journald {
            return Ok((Audit { tx: None }, Writer { thread: None }));
        }
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let thread = std::thread::Builder::new()
            .name("futu-audit".into())
            .spawn(move || write_loop(rx))?;
        Ok((Audit { tx: Some(tx) }, Writer { thread: Some(thread) }))
    }

    /// Whether records go to journald at all (else building them for it is wasted).
    pub fn is_on(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues a record, waiting while the queue is full. Fails only after [`Audit::close`].
    pub async fn record(&self, rec: impl Into<Box<AuditRecord>>) -> Result<(), AuditClosed> {
        match &self.tx {
            Some(tx) => tx.send(Cmd::Record(rec.into())).await.map_err(|_| AuditClosed),
            None => Ok(()),
        }
    }

    /// Queues a record if there is room now.
    pub fn try_record(&self, rec: AuditRecord) -> Result<(), TryRecord> {
        let Some(tx) = &self.tx else { return Ok(()) };
        match tx.try_send(Cmd::Record(Box::new(rec))) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(Cmd::Record(rec))) => Err(TryRecord::Full(rec)),
            Err(_) => Err(TryRecord::Closed),
        }
    }

    /// Sends everything queued to journald, then stops the writer.
    pub async fn close(&self, mut writer: Writer) {
        if let Some(tx) = &self.tx {
            let (done, rx) = oneshot::channel();
            if tx.send(Cmd::Close(done)).await.is_ok() {
                let _ = rx.await;
            }
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

fn write_loop(mut rx: mpsc::Receiver<Cmd>) {
    while let Some(cmd) = rx.blocking_recv() {
        match cmd {
            Cmd::Record(rec) => rec.emit_journald(),
            Cmd::Close(done) => {
                let _ = done.send(());
                return;
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

    fn line(endpoint: &str, request_id: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut r =
            AuditRecord::new(Kind::Check, endpoint, Outcome::Allow, request_id, peer()).iface(Iface::Rest);
        r.key_id = Some("sim-bot".parse().unwrap());
        r.write_json(&mut out);
        out
    }

    #[test]
    fn appended_records_are_in_the_file_at_once_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut f = AuditFile::open(&path).unwrap();
        for i in 0..100 {
            f.append(&line("Trd_PlaceOrder", i)).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(
            lines.len(),
            100,
            "written before append returned, no flush needed"
        );
        assert_eq!(lines[99]["request_id"], 99);
        assert_eq!(lines[0]["outcome"], "allow");
        assert_eq!(lines[0]["key_id"], "sim-bot");
        assert_eq!(lines[0]["iface"], "rest");
        assert_eq!(lines[0]["peer_pid"], 4242);
        assert!(lines[0]["reason"].is_null());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn reopen_follows_a_rotated_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut f = AuditFile::open(&path).unwrap();
        f.append(&line("A", 1)).unwrap();
        std::fs::rename(&path, dir.path().join("audit.jsonl.1")).unwrap();
        f.append(&line("B", 2)).unwrap();
        f.reopen().unwrap();
        f.append(&line("C", 3)).unwrap();
        let old = std::fs::read_to_string(dir.path().join("audit.jsonl.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(old.contains("\"endpoint\":\"A\"") && old.contains("\"endpoint\":\"B\""));
        assert!(new.contains("\"endpoint\":\"C\"") && !new.contains("\"endpoint\":\"A\""));
    }

    #[test]
    fn settle_finds_the_records_of_the_last_commit_or_cuts_their_remains() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut f = AuditFile::open(&path).unwrap();
        f.append(&line("A", 1)).unwrap();
        let rec = line("B", 2);
        let mark = f.mark(rec.len());
        // Written whole: counted, even after logrotate moved the file.
        f.append(&rec).unwrap();
        assert_eq!(settle(&path, &mark), Audited::Yes);
        let rotated = dir.path().join("audit.jsonl.1");
        std::fs::rename(&path, &rotated).unwrap();
        assert_eq!(settle(&path, &mark), Audited::Yes);
        // Half written: not counted, and the half is cut off.
        let whole = std::fs::metadata(&rotated).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&rotated)
            .unwrap()
            .set_len(whole - 5)
            .unwrap();
        assert_eq!(settle(&path, &mark), Audited::No);
        assert_eq!(std::fs::metadata(&rotated).unwrap().len(), mark.at);
        // Gone: unknown, so the commit counts (the safe side).
        std::fs::remove_file(&rotated).unwrap();
        assert_eq!(settle(&path, &mark), Audited::Unknown);
    }

    #[test]
    fn a_half_written_last_line_is_cut_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut text = line("A", 1);
        text.extend_from_slice(b"{\"ts\":\"2026");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(tidy_tail(&path).unwrap(), 11);
        assert!(std::fs::read_to_string(&path).unwrap().ends_with("}\n"));
        assert_eq!(tidy_tail(&path).unwrap(), 0);
        assert_eq!(tidy_tail(&dir.path().join("absent")).unwrap(), 0);
    }
}
