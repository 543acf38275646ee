//! Appending: the journal's open file, the commits written to it (and taken back), and the
//! lock that keeps a second daemon off the state directory.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::Ordering;

use nix::fcntl::{Flock, FlockArg};

use super::entry::{push_commit, Entries};
use super::LedgerLog;
use crate::ledger::AuditMark;

/// The largest commit buffer kept between appends.
const KEEP_BUFFER_BYTES: usize = 1 << 20;

/// The journal being appended to.
#[derive(Debug)]
pub(super) struct Journal {
    /// The open file, `ledger.log`, in append mode.
    pub(super) file: File,
    /// Its generation, from its header line.
    pub(super) gen: u64,
    /// Bytes in the file, header included: where a failed write is cut back to.
    pub(super) len: u64,
    /// Set when a failed write could not be cut back: the file holds bytes past `len`
    /// that must go before anything else is appended.
    pub(super) dirty: bool,
    /// The bytes of the commit being appended, kept between commits so that an append
    /// allocates nothing once it has grown to a burst's size.
    pub(super) buf: Vec<u8>,
}

impl Journal {
    /// Cuts the file back to `len` if a failed write left bytes past it.
    fn repair(&mut self) -> io::Result<()> {
        if self.dirty {
            self.file.set_len(self.len)?;
            self.dirty = false;
        }
        Ok(())
    }
}

impl LedgerLog {
    /// Appends the entries of one commit (made with [`Entries`]) in one write, led by
    /// their `commit` record; returns the journal's length before, for
    /// [`LedgerLog::cut_back`]. Call with [`LedgerLog::gate`] held since the entries were
    /// made, under the commit lock, and send the answers only after the commit's audit
    /// records are written too. On `Err` nothing of the commit stays in the journal.
    pub fn append(&self, entries: &Entries, audit: Option<AuditMark>) -> io::Result<u64> {
        let mut guard = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        let j = &mut *guard;
        j.repair()?;
        let before = j.len;
        j.buf.clear();
        push_commit(&mut j.buf, entries.count, audit.as_ref());
        j.buf.extend_from_slice(&entries.bytes);
        if let Err(e) = j.file.write_all(&j.buf) {
            // A write cut short (disk full) must not leave half a record for the next
            // append to run into: replay would stop there and drop every later order.
            if let Err(cut) = j.file.set_len(before) {
                tracing::error!("ledger journal could not be cut back after a failed write: {cut}");
                j.dirty = true;
            }
            return Err(e);
        }
        let written = j.buf.len() as u64;
        if j.buf.capacity() > KEEP_BUFFER_BYTES {
            j.buf = Vec::new(); // an unusually large commit: give its memory back
        }
        j.len += written;
        self.size.fetch_add(written, Ordering::Relaxed);
        Ok(before)
    }

    /// Takes back the last [`LedgerLog::append`] (whose audit records could not be
    /// written): the journal is cut back to `before`, its length then. If the cut fails,
    /// it is tried again before the next append, and appends fail until it works.
    pub fn cut_back(&self, before: u64) {
        let mut j = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        let written = j.len.saturating_sub(before);
        j.len = before;
        self.size
            .fetch_sub(written.min(self.size.load(Ordering::Relaxed)), Ordering::Relaxed);
        j.dirty = true;
        if let Err(e) = j.repair() {
            tracing::error!("ledger journal could not be cut back after a failed audit write: {e}");
        }
    }

    /// Flushes the journal to disk, holding its lock only to take a handle (appends go on
    /// meanwhile).
    pub fn sync(&self) -> io::Result<()> {
        let handle = self
            .journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .file
            .try_clone()?;
        handle.sync_data()
    }
}

/// Takes `STATE_DIR/.lock` for this process, or fails if another daemon holds it.
pub(super) fn lock_state_dir(dir: &Path) -> io::Result<Flock<File>> {
    let path = dir.join(".lock");
    futu_auth_keys::store::exclusive_lock(&path, None, FlockArg::LockExclusiveNonblock).map_err(|e| {
        if e.kind() == io::ErrorKind::WouldBlock {
            io::Error::new(
                e.kind(),
                format!(
                    "state dir {} is in use by another futu-authd; two daemons must not share one ledger",
                    dir.display()
                ),
            )
        } else {
            io::Error::new(e.kind(), format!("{}: {e}", path.display()))
        }
    })
}
