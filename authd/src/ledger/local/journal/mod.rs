//! The ledger log: how daily totals, rate windows and release tickets survive a restart or
//! a `kill -9` at any moment.
//!
//! Every consumption and every release is appended to the journal
//! `STATE_DIR/ledger.log` (binary records, each with its length and a CRC32C: `entry.rs`)
//! before the Allow or the Released is sent, so whatever a client was told has reached the
//! kernel. The entries of one group commit ([`crate::commit`]) are one `write`, led by a
//! `commit` record that counts them and says where the commit's audit records go in the
//! audit file ([`AuditMark`]). The audit records are written right after, so after a
//! `kill -9` only the newest commit can lack them; at start that commit is counted only if
//! its records reached the audit file ([`Audited`]) — so the ledger and the audit trail
//! never disagree about what was allowed. A commit cut short by the crash is not counted
//! either.
//!
//! The journal is compacted into `STATE_DIR/ledger.base`: one total per key for today
//! plus the orders still inside the release window (earlier UTC days are dropped; a run of
//! one key's orders is one record of differences, ~12 bytes an order). Every
//! journal starts with its generation number and the base names the last generation it
//! covers, so a crash at any point of a compaction neither loses nor double-counts an
//! entry: at start the base is read, then every journal newer than it, oldest first (a
//! corrupt or truncated tail of a journal is reported and its intact prefix used), and a
//! fresh base is written before serving.
//!
//! While serving, compaction runs once the journal has grown past both
//! [`COMPACT_AT_BYTES`] and the size of the last base (so it never runs back to back).
//! Checks wait only while it copies the ledger and starts the next journal — memory work
//! and a rename; writing the new base happens off the gate.
//!
//! Files of releases that wrote one JSON object a line are read too (`json.rs`): the first
//! start after an upgrade replays them and writes a binary base, and appends go to a new
//! binary journal.
//!
//! `entry.rs` is the record format, `append.rs` appends commits, `compaction.rs` rotates
//! generations and writes the base, and `replay.rs` reads it all back at start.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use nix::fcntl::Flock;

use futu_auth_rules::Ledger;

use crate::ledger::{AuditMark, Audited};

mod append;
mod compaction;
mod entry;
mod json;
mod replay;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_follow;

use append::{lock_state_dir, Journal};
use compaction::{remove_journals, start_journal, write_base, Dump};
pub use entry::Entries;
use replay::replay_dir;
pub use replay::{Moment, Replay};

/// The current journal's file name in the state directory; rotated ones add `.GEN`.
pub const FILE_NAME: &str = "ledger.log";

/// The compacted state's file name in the state directory.
pub const BASE_NAME: &str = "ledger.base";

/// Compact once the journal passes this size (and the last base's).
pub const COMPACT_AT_BYTES: u64 = 32 * 1024 * 1024;

/// The open log.
#[derive(Debug)]
pub struct LedgerLog {
    /// The exclusive lock on the state directory: two daemons on one ledger would each
    /// admit up to every cap.
    _owner: Flock<File>,
    /// The state directory.
    dir: PathBuf,
    /// The journal being appended to.
    journal: Mutex<Journal>,
    /// Held shared around check-and-consume plus append, exclusively by compaction while
    /// it copies the ledger and rotates the journal.
    gate: RwLock<()>,
    /// Bytes in the current journal.
    size: AtomicU64,
    /// Bytes in the last base written.
    base_size: AtomicU64,
    /// Set while a compaction runs, so that only one does.
    compacting: AtomicBool,
}

impl LedgerLog {
    /// Opens the log in `state_dir`, replays it into `ledger`, writes a fresh base and
    /// starts a new journal. `audited` tells whether the newest commit's audit records
    /// were written (see [`Audited`]).
    pub fn open(
        state_dir: &Path,
        ledger: &Ledger,
        now: Moment,
        audited: &dyn Fn(&AuditMark) -> Audited,
    ) -> io::Result<(LedgerLog, Replay)> {
        fs::create_dir_all(state_dir)
            .map_err(|e| io::Error::new(e.kind(), format!("state dir {}: {e}", state_dir.display())))?;
        let owner = lock_state_dir(state_dir)?;
        let (mut replay, newest_gen) = replay_dir(state_dir, ledger, now, audited)?;
        let base_size = write_base(state_dir, &Dump::of(ledger, now), newest_gen, now)?;
        remove_journals(state_dir, newest_gen)?;
        // A journal whose header could not be read was not replayed; appending behind its
        // bad first line would make every later entry unreadable too. Keep it aside.
        let current = state_dir.join(FILE_NAME);
        if current.exists() {
            let aside = state_dir.join(format!(
                "damaged-{FILE_NAME}.{}",
                now.unix_ns.div_euclid(1_000_000_000)
            ));
            fs::rename(&current, &aside)?;
            let note = format!(
                "{FILE_NAME}: no journal header; kept aside as {}",
                aside.display()
            );
            replay.corrupt_tail = Some(match replay.corrupt_tail.take() {
                Some(before) => format!("{before}; {note}"),
                None => note,
            });
        }
        let journal = start_journal(state_dir, newest_gen + 1)?;
        Ok((
            LedgerLog {
                _owner: owner,
                dir: state_dir.to_owned(),
                journal: Mutex::new(journal),
                gate: RwLock::new(()),
                size: AtomicU64::new(0),
                base_size: AtomicU64::new(base_size),
                compacting: AtomicBool::new(false),
            },
            replay,
        ))
    }

    /// The current journal's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Holds off compaction while a check consumes and its consumption is appended.
    pub fn gate(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|p| p.into_inner())
    }
}
