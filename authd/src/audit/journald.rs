//! journald's copy of the audit records: a bounded queue, and a writer thread that emits
//! each record as a tracing event with structured fields (KEY_ID, OUTCOME, REASON, …).

use std::io;
use std::thread::JoinHandle;

use futu_auth_proto::{ErrorKind, Iface, Reason, Scope};
use tokio::sync::{mpsc, oneshot};

use super::{AuditKey, AuditRecord};

/// Records waiting for the journald writer; past this, handlers wait.
pub const QUEUE_CAPACITY: usize = 65_536;

/// The `target` of audit events in tracing, which the journald layer listens to.
pub const TARGET: &str = "futu_audit";

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
            Cmd::Record(rec) => emit(&rec),
            Cmd::Close(done) => {
                let _ = done.send(());
                return;
            }
        }
    }
}

/// Emits `rec` as a tracing event for the journald layer: the record's fields become
/// journald's structured fields.
fn emit(rec: &AuditRecord) {
    let o = rec.order.as_ref();
    tracing::info!(
        target: TARGET,
        kind = rec.kind.as_str(),
        iface = rec.iface.map(Iface::as_str),
        endpoint = %rec.endpoint,
        key_id = rec.key_id.as_ref().map(AuditKey::as_str),
        outcome = rec.outcome.as_str(),
        reason = rec.reason.map(Reason::as_str),
        error = rec.error.map(ErrorKind::as_str),
        scope = rec.scope.map(Scope::as_str),
        market = o.map(|o| o.market.as_str()),
        symbol = o.map(|o| o.symbol.as_str()),
        side = o.map(|o| o.side.as_str()),
        qty = o.map(|o| o.qty),
        price = o.and_then(|o| o.price),
        value = o.and_then(|o| o.value),
        dry_run = rec.dry_run,
        ticket = rec.ticket,
        retry_after_ms = rec.retry_after_ms,
        pushes = rec.pushes,
        request_id = rec.request_id,
        peer_uid = rec.peer_uid,
        peer_pid = rec.peer_pid,
        latency_us = rec.latency_us,
        "{} {} {}{}",
        rec.outcome.as_str(),
        rec.key_id.as_ref().map(AuditKey::as_str).unwrap_or("-"),
        rec.endpoint,
        rec.reason.map(|r| format!(" reason={r}")).unwrap_or_default(),
    );
}
