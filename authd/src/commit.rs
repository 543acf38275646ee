//! The group commit: what a group of bursts (of one connection or several: the bursts
//! queued while the previous commit was made, `service/checks.rs`) changed in the ledger
//! and the audit records of their answers are written under one lock — the ledger first,
//! then the audit file — and only then are the answers sent.
//!
//! So an answer never leaves the daemon before its audit record is in the audit file, and
//! the two never disagree about what was allowed: when the audit write fails, the ledger
//! store takes back what the group took (nobody else can have written in between, the lock
//! is held) and the orders are refused `internal`. The ledger's write carries an
//! [`AuditMark`] saying where the group's records go, so that after a `kill -9` between the
//! two writes the ledger can tell that they never came
//! ([`crate::ledger::Audited`]).
//!
//! Every failed write is counted and the first of a run is logged; the first that works
//! again is logged too: service resumes by itself once the disk takes writes again.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard};

use crate::audit::AuditFile;
use crate::ledger::AuditMark;
use crate::metrics::{Metrics, WrittenFile};

/// The commit lock and the audit file it guards.
#[derive(Debug)]
pub struct Committer {
    /// Held from a burst's ledger write to its audit write, so commits follow each other
    /// whole.
    audit: Mutex<Option<AuditFile>>,
    metrics: Arc<Metrics>,
    /// Whether the last ledger write worked (to log the changes only).
    ledger_ok: AtomicBool,
    /// Whether the last audit write worked.
    audit_ok: AtomicBool,
}

/// A commit in progress: the lock, held.
pub struct Commit<'a> {
    audit: MutexGuard<'a, Option<AuditFile>>,
    committer: &'a Committer,
}

impl Committer {
    /// Commits to `audit` (none: records go to journald only, if anywhere).
    pub fn new(audit: Option<AuditFile>, metrics: Arc<Metrics>) -> Committer {
        metrics.writable(WrittenFile::Ledger, true);
        metrics.writable(WrittenFile::Audit, true);
        Committer {
            audit: Mutex::new(audit),
            metrics,
            ledger_ok: AtomicBool::new(true),
            audit_ok: AtomicBool::new(true),
        }
    }

    /// Takes the commit lock.
    pub async fn begin(&self) -> Commit<'_> {
        Commit {
            audit: self.audit.lock().await,
            committer: self,
        }
    }

    /// Takes the commit lock if it is free and nobody waits for it.
    pub fn try_begin(&self) -> Option<Commit<'_>> {
        self.audit.try_lock().ok().map(|audit| Commit {
            audit,
            committer: self,
        })
    }

    /// Opens the audit file again at its path (after logrotate moved it).
    pub async fn reopen_audit(&self) -> io::Result<()> {
        match self.audit.lock().await.as_mut() {
            Some(a) => a.reopen(),
            None => Ok(()),
        }
    }

    /// Flushes the audit file to disk, holding the commit lock only to take a handle.
    pub async fn sync_audit(&self) -> io::Result<()> {
        let handle = self
            .audit
            .lock()
            .await
            .as_ref()
            .map(AuditFile::handle)
            .transpose()?;
        match handle {
            Some(f) => tokio::task::spawn_blocking(move || f.sync_data())
                .await
                .unwrap_or_else(|e| Err(io::Error::other(e))),
            None => Ok(()),
        }
    }

    /// Counts and logs how the ledger's write of a commit went (`error: None`: it worked).
    pub fn ledger_written(&self, error: Option<&dyn std::fmt::Display>) {
        self.health(WrittenFile::Ledger, &self.ledger_ok, error);
    }

    fn health(&self, file: WrittenFile, ok: &AtomicBool, error: Option<&dyn std::fmt::Display>) {
        match error {
            None => {
                if !ok.swap(true, Ordering::Relaxed) {
                    self.metrics.writable(file, true);
                    tracing::info!("the {} can be written again; service resumed", file.describe());
                }
            }
            Some(e) => {
                self.metrics.write_failed(file);
                if ok.swap(false, Ordering::Relaxed) {
                    self.metrics.writable(file, false);
                    tracing::error!(
                        "the {} cannot be written ({e}); {} refused `internal` until it can",
                        file.describe(),
                        file.refused()
                    );
                }
            }
        }
    }
}

impl Commit<'_> {
    /// Where the next `records` audit records will go, for the ledger's write (none
    /// without an audit file or records).
    pub fn mark(&self, records: usize) -> Option<AuditMark> {
        self.audit
            .as_ref()
            .filter(|_| records > 0)
            .map(|a| a.mark(records))
    }

    /// Whether records are written to a file at all.
    pub fn has_audit_file(&self) -> bool {
        self.audit.is_some()
    }

    /// Appends `records` (whole JSON lines) to the audit file; on `Err` nothing of them
    /// stays in it.
    pub fn write_records(&mut self, records: &[u8]) -> io::Result<()> {
        let Some(audit) = self.audit.as_mut().filter(|_| !records.is_empty()) else {
            return Ok(());
        };
        let written = audit.append(records);
        let c = self.committer;
        c.health(
            WrittenFile::Audit,
            &c.audit_ok,
            written.as_ref().err().map(|e| e as &dyn std::fmt::Display),
        );
        written
    }
}
