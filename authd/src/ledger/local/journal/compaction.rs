//! Generations and compaction: every journal starts with its generation, and the base
//! names the newest generation it covers, so the journals it covers can go.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::append::Journal;
use super::entry::{
    push_base, push_finished, push_journal, push_open, push_position, push_seen, push_total, Entry,
    RecentsWriter, Records, MAGIC,
};
use super::replay::Moment;
use super::{LedgerLog, BASE_NAME, COMPACT_AT_BYTES, FILE_NAME};
use futu_auth_rules::ledger::{FollowDump, Ledger, LedgerDump, RATE_WINDOW_NS, RELEASE_WINDOW_NS};
use futu_auth_rules::money::Money;

impl LedgerLog {
    /// Whether the journal has grown past [`COMPACT_AT_BYTES`] and the last base, and no
    /// compaction is under way; the caller that gets `true` runs [`LedgerLog::compact`].
    pub fn wants_compaction(&self) -> bool {
        let size = self.size.load(Ordering::Relaxed);
        size > COMPACT_AT_BYTES
            && size > self.base_size.load(Ordering::Relaxed)
            && self
                .compacting
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Folds the journal into a new base: [`LedgerLog::rotate`], then
    /// [`LedgerLog::finish_compaction`].
    pub fn compact(&self, ledger: &Ledger, now: impl FnOnce() -> Moment) -> io::Result<()> {
        let rotated = self.rotate(ledger, now)?;
        self.finish_compaction(rotated)
    }

    /// The part of a compaction that must not overlap a commit: copies the ledger and
    /// starts the next journal (memory work and a rename). Run it between commits; the
    /// slow part, [`LedgerLog::finish_compaction`], may run anywhere after.
    pub fn rotate(&self, ledger: &Ledger, now: impl FnOnce() -> Moment) -> io::Result<Rotated> {
        let result = (|| {
            let _exclusive = self.gate.write().unwrap_or_else(|p| p.into_inner());
            let moment = now();
            let dump = Dump::of(ledger, moment);
            let mut j = self.journal.lock().unwrap_or_else(|p| p.into_inner());
            let covers = j.gen;
            fs::rename(self.path(), self.dir.join(format!("{FILE_NAME}.{covers}")))?;
            *j = start_journal(&self.dir, covers + 1)?;
            self.size.store(0, Ordering::Relaxed);
            Ok(Rotated { dump, covers, moment })
        })();
        if result.is_err() {
            self.compacting.store(false, Ordering::Release);
        }
        result.map_err(|e: io::Error| {
            io::Error::new(e.kind(), format!("compacting {}: {e}", self.dir.display()))
        })
    }

    /// Writes the base of a rotation and removes the journals it covers.
    pub fn finish_compaction(&self, rotated: Rotated) -> io::Result<()> {
        let result = (|| {
            let size = write_base(&self.dir, &rotated.dump, rotated.covers, rotated.moment)?;
            self.base_size.store(size, Ordering::Relaxed);
            remove_journals(&self.dir, rotated.covers)
        })();
        self.compacting.store(false, Ordering::Release);
        result.map_err(|e| io::Error::new(e.kind(), format!("compacting {}: {e}", self.dir.display())))
    }
}

/// A rotated journal waiting for its base ([`LedgerLog::finish_compaction`]).
#[derive(Debug)]
pub struct Rotated {
    dump: Dump,
    covers: u64,
    moment: Moment,
}

/// What a base is written from: the counters and tickets, and the orders followed.
#[derive(Debug)]
pub(super) struct Dump {
    ledger: LedgerDump,
    follow: FollowDump,
}

impl Dump {
    /// A copy of what a base written at `now` keeps of `ledger` (taken while no commit
    /// changes it).
    pub(super) fn of(ledger: &Ledger, now: Moment) -> Dump {
        Dump {
            ledger: ledger.dump_for_base(now.mono_ns.saturating_sub(KEEP_NS)),
            follow: ledger.dump_follow(),
        }
    }
}

/// How long a base keeps an order: while it can be released, and while it counts in a
/// rate window.
const KEEP_NS: u64 = if RELEASE_WINDOW_NS > RATE_WINDOW_NS {
    RELEASE_WINDOW_NS
} else {
    RATE_WINDOW_NS
};

/// Creates the journal of generation `gen`, header first.
pub(super) fn start_journal(dir: &Path, gen: u64) -> io::Result<Journal> {
    let path = dir.join(FILE_NAME);
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let mut header = MAGIC.to_vec();
    push_journal(&mut header, gen);
    file.write_all(&header)?;
    let len = file.metadata()?.len();
    Ok(Journal {
        file,
        gen,
        len,
        dirty: false,
        buf: Vec::new(),
    })
}

/// Every journal file in `dir` with its generation (from its first line).
pub(super) fn journals(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name != FILE_NAME && !name.starts_with(&format!("{FILE_NAME}.")) {
            continue;
        }
        match Records::of(&head_of(&path)?).next() {
            Some(Ok(Entry::Journal { gen })) => found.push((gen, path)),
            _ => tracing::warn!("{}: not a ledger journal (no header); ignored", path.display()),
        }
    }
    found.sort();
    Ok(found)
}

/// The first bytes of a file: enough for a journal's header in either format.
fn head_of(path: &Path) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(HEAD_BYTES);
    File::open(path)?.take(HEAD_BYTES as u64).read_to_end(&mut head)?;
    // A JSON header is read to its end of line; a binary one is whole in far fewer bytes.
    Ok(head)
}

/// How much of a file [`head_of`] reads.
const HEAD_BYTES: usize = 4096;

/// Removes the journals of generation `up_to_gen` and older (the base covers them).
pub(super) fn remove_journals(dir: &Path, up_to_gen: u64) -> io::Result<()> {
    for (gen, path) in journals(dir)? {
        if gen <= up_to_gen {
            fs::remove_file(&path)?;
        }
    }
    File::open(dir)?.sync_all()
}

/// Writes `dump` as the base covering journals up to `covers`, atomically; returns its
/// size.
pub(super) fn write_base(dir: &Path, dump: &Dump, covers: u64, now: Moment) -> io::Result<u64> {
    let (dump, follow) = (&dump.ledger, &dump.follow);
    let today = now.today();
    // A buffer sized up front is not copied as it grows: records of the release window's
    // orders take ~12 bytes an order, the others 40 to 80 bytes a record.
    let records = dump.totals.len()
        + dump.recent.len() / 4
        + follow.open.len()
        + follow.positions.len()
        + follow.seen.len()
        + follow.finished.len();
    let mut out = Vec::with_capacity(64 + records * 64);
    out.extend_from_slice(MAGIC);
    push_base(&mut out, covers, dump.next_ticket, &dump.ticket_key);
    for (key_id, day, used) in &dump.totals {
        if *day == today && *used > Money::ZERO {
            push_total(&mut out, key_id, *day, used.0);
        }
    }
    let mut recents = RecentsWriter::default();
    for (c, released) in &dump.recent {
        if now.mono_ns.saturating_sub(c.mono_ns) < KEEP_NS {
            recents.push(&mut out, c, now.unix_of(c.mono_ns), *released);
        }
    }
    recents.finish(&mut out);
    // Followed orders after the tickets: an open order's ticket is restored first.
    for o in &follow.open {
        push_open(&mut out, o);
    }
    for p in &follow.positions {
        push_position(&mut out, p);
    }
    for (key_id, fp, mono_ns) in &follow.seen {
        push_seen(&mut out, key_id, *fp, now.unix_of(*mono_ns));
    }
    for (number, key_id) in &follow.finished {
        push_finished(&mut out, key_id, *number);
    }
    let path = dir.join(BASE_NAME);
    crate::atomic_file::replace(&path, &out).map_err(|e| io::Error::new(e.kind(), format!("writing {e}")))?;
    Ok(out.len() as u64)
}
