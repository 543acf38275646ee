//! The group commit: what a burst of requests changed in the ledger and the audit records
//! of its answers are written under one lock — the ledger journal first, then the audit
//! file — and only then are the answers sent.
//!
//! So an answer never leaves the daemon before its audit record is in the audit file, and
//! the two files never disagree about what was allowed: when the audit write fails, the
//! journal is cut back to where it was (nobody else can have appended, the lock is held)
//! and the caller undoes the consumptions in memory and refuses the orders `internal`.
//! After a `kill -9` between the two writes, the ledger finds the newest commit without
//! its audit records and does not count it ([`crate::ledger_log::Audited`]).
//!
//! Every failed write is counted and the first of a run is logged; the first that works
//! again is logged too: service resumes by itself once the disk takes writes again.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::audit::AuditFile;
use crate::ledger_log::{Entries, LedgerLog};
use crate::metrics::{Metrics, WrittenFile};

/// Why a commit was not made. Nothing of it stays in either file.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The ledger journal could not be written.
    #[error("the ledger could not be written: {0}")]
    Ledger(io::Error),
    /// The audit file could not be written.
    #[error("the audit trail could not be written: {0}")]
    Audit(io::Error),
}

/// The commit lock and the audit file it guards.
#[derive(Debug)]
pub struct Committer {
    /// Held across both writes of a commit, so commits follow each other whole.
    audit: Mutex<Option<AuditFile>>,
    metrics: Arc<Metrics>,
    /// Whether the last ledger write worked (to log the changes only).
    ledger_ok: AtomicBool,
    /// Whether the last audit write worked.
    audit_ok: AtomicBool,
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

    fn lock(&self) -> MutexGuard<'_, Option<AuditFile>> {
        self.audit.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes one commit: `entries` to the ledger journal (when there are any; hold the
    /// ledger's gate since they were made), then `records` (whole JSON lines) to the audit
    /// file. On `Err` neither file keeps anything of it.
    pub fn write(&self, log: &LedgerLog, entries: &Entries, records: &[u8]) -> Result<(), CommitError> {
        let mut audit = self.lock();
        let audit = audit.as_mut().filter(|_| !records.is_empty());
        let before = if entries.is_empty() {
            None
        } else {
            let mark = audit.as_ref().map(|a| a.mark(records.len()));
            let written = log.append(entries, mark);
            self.health(WrittenFile::Ledger, &self.ledger_ok, written.as_ref().err());
            Some(written.map_err(CommitError::Ledger)?)
        };
        if let Some(audit) = audit {
            let written = audit.append(records);
            self.health(WrittenFile::Audit, &self.audit_ok, written.as_ref().err());
            if let Err(e) = written {
                if let Some(before) = before {
                    log.cut_back(before);
                }
                return Err(CommitError::Audit(e));
            }
        }
        Ok(())
    }

    /// Writes audit records that come with no ledger entry (admin requests, refused
    /// releases).
    pub fn write_records(&self, log: &LedgerLog, records: &[u8]) -> Result<(), CommitError> {
        self.write(log, &Entries::new(), records)
    }

    /// Whether there is an audit file (records are built for it).
    pub fn has_audit_file(&self) -> bool {
        self.lock().is_some()
    }

    /// Opens the audit file again at its path (after logrotate moved it).
    pub fn reopen_audit(&self) -> io::Result<()> {
        match self.lock().as_mut() {
            Some(a) => a.reopen(),
            None => Ok(()),
        }
    }

    /// Flushes the audit file to disk, holding the commit lock only to take a handle.
    pub fn sync_audit(&self) -> io::Result<()> {
        let handle = self.lock().as_ref().map(AuditFile::handle).transpose()?;
        handle.map_or(Ok(()), |f| f.sync_data())
    }

    fn health(&self, file: WrittenFile, ok: &AtomicBool, error: Option<&io::Error>) {
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
