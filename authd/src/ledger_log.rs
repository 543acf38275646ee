//! The ledger log: how daily totals, rate windows and release tickets survive a restart or
//! a `kill -9` at any moment.
//!
//! Every consumption and every release is appended to the journal
//! `STATE_DIR/ledger.log` (one JSON object a line) before the Allow or the Released is
//! sent, so whatever a client was told has reached the kernel. The entries of one group
//! commit ([`crate::commit`]) are one `write`, led by a `commit` line that counts them and
//! says where the commit's audit records go in the audit file ([`AuditMark`]). The audit
//! records are written right after, so after a `kill -9` only the newest commit can lack
//! them; at start that commit is counted only if its records reached the audit file
//! ([`Audited`]) — so the ledger and the audit trail never disagree about what was
//! allowed. A commit cut short by the crash is not counted either.
//!
//! The journal is compacted into `STATE_DIR/ledger.base`: one total per key for today
//! plus the orders still inside the release window (earlier UTC days are dropped). Every
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

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use futu_auth_proto::KeyId;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::ledger::{utc_day, Consumption, Ledger, LedgerDump, RATE_WINDOW_NS, RELEASE_WINDOW_NS};
use crate::money::Money;

/// The current journal's file name in the state directory; rotated ones add `.GEN`.
pub const FILE_NAME: &str = "ledger.log";

/// The compacted state's file name in the state directory.
pub const BASE_NAME: &str = "ledger.base";

/// Compact once the journal passes this size (and the last base's).
pub const COMPACT_AT_BYTES: u64 = 32 * 1024 * 1024;

/// One line of a journal or of the base.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Entry {
    /// First line of a journal: its generation.
    Journal { gen: u64 },
    /// First line of the base: the newest journal generation it includes, and the next
    /// ticket number (so a ticket from before a quiet restart never names a new order).
    Base {
        covers: u64,
        #[serde(default)]
        next_ticket: u64,
        /// The ticket cipher's key, 32 hex digits (absent in bases written before tickets
        /// were encrypted: a new key is made, and tickets from before cannot be released).
        #[serde(default)]
        ticket_key: Option<String>,
    },
    /// Leads the entries of one group commit: how many follow, and where the commit's
    /// audit records were to be written (none when there is no audit file).
    Commit { entries: u32, audit: Option<AuditMark> },
    /// An allowed order: adds to its day's total, takes a rate slot, has a ticket.
    Consume {
        key_id: KeyId,
        ticket: u64,
        unix_ns: i64,
        day: i64,
        value: u128,
    },
    /// A ticket's value was refunded.
    Release { ticket: u64 },
    /// Base: a key's total on a day.
    Total { key_id: KeyId, day: i64, used: u128 },
    /// Base: an order still in the release window; its value is in the total.
    Recent {
        key_id: KeyId,
        ticket: u64,
        unix_ns: i64,
        day: i64,
        value: u128,
        released: bool,
    },
}

/// Where a commit's audit records go: the audit file (by device and inode, which a
/// rotation by rename keeps) and the byte range they take in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditMark {
    /// `st_dev` of the audit file.
    pub dev: u64,
    /// `st_ino` of the audit file.
    pub ino: u64,
    /// Its size before the records were appended.
    pub at: u64,
    /// The records' length in bytes.
    pub len: u64,
}

/// Whether the newest commit's audit records reached the audit file, as found at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audited {
    /// They are all there: the commit counts.
    Yes,
    /// They are not (the daemon stopped between the ledger write and the audit write):
    /// nobody was answered, so the commit does not count.
    No,
    /// The audit file cannot be found any more: the commit counts (the safe side).
    Unknown,
}

/// What opening the log found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// Lines replayed (headers not counted).
    pub entries: usize,
    /// Why a tail was not used, if one was not (e.g. `ledger.log line 812: EOF while
    /// parsing`); one line per file.
    pub corrupt_tail: Option<String>,
    /// Entries of a last commit that were not counted because its audit records were
    /// never written.
    pub unaudited: usize,
}

/// The wall and monotonic clocks at one moment, to translate logged wall times.
#[derive(Debug, Clone, Copy)]
pub struct Moment {
    /// Wall time, Unix nanoseconds.
    pub unix_ns: i64,
    /// The ledger's monotonic clock.
    pub mono_ns: u64,
}

impl Moment {
    fn mono_of(&self, unix_ns: i64) -> u64 {
        let ago = self.unix_ns.saturating_sub(unix_ns).max(0) as u64;
        self.mono_ns.saturating_sub(ago)
    }

    fn unix_of(&self, mono_ns: u64) -> i64 {
        let ago = self.mono_ns.saturating_sub(mono_ns).min(i64::MAX as u64) as i64;
        self.unix_ns.saturating_sub(ago)
    }

    fn today(&self) -> i64 {
        utc_day(self.unix_ns.div_euclid(1_000_000_000))
    }
}

#[derive(Debug)]
struct Journal {
    file: File,
    gen: u64,
    /// Bytes in the file, header included: where a failed write is cut back to.
    len: u64,
    /// Set when a failed write could not be cut back: the file holds bytes past `len`
    /// that must go before anything else is appended.
    dirty: bool,
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

/// The open log.
#[derive(Debug)]
pub struct LedgerLog {
    /// The exclusive lock on the state directory: two daemons on one ledger would each
    /// admit up to every cap.
    _owner: Flock<File>,
    dir: PathBuf,
    journal: Mutex<Journal>,
    /// Held shared around check-and-consume plus append, exclusively by compaction while
    /// it copies the ledger and rotates the journal.
    gate: RwLock<()>,
    /// Bytes in the current journal.
    size: AtomicU64,
    /// Bytes in the last base written.
    base_size: AtomicU64,
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
        let (replay, newest_gen) = replay_dir(state_dir, ledger, now, audited)?;
        let base_size = write_base(state_dir, &ledger.dump(), newest_gen, now)?;
        remove_journals(state_dir, newest_gen)?;
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

    /// Appends the entries of one commit (made with [`Entries`]) in one write, led by
    /// their `commit` line; returns the journal's length before, for
    /// [`LedgerLog::cut_back`]. Call with [`LedgerLog::gate`] held since the entries were
    /// made, under the commit lock, and send the answers only after the commit's audit
    /// records are written too. On `Err` nothing of the commit stays in the journal.
    pub fn append(&self, entries: &Entries, audit: Option<AuditMark>) -> io::Result<u64> {
        let mut bytes = Vec::with_capacity(64 + entries.bytes.len());
        push_line(
            &mut bytes,
            &Entry::Commit {
                entries: entries.count,
                audit,
            },
        )?;
        bytes.extend_from_slice(&entries.bytes);
        let mut j = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        j.repair()?;
        let before = j.len;
        if let Err(e) = j.file.write_all(&bytes) {
            // A write cut short (disk full) must not leave half a line for the next append
            // to run into: replay would stop there and drop every later order.
            if let Err(cut) = j.file.set_len(before) {
                tracing::error!("ledger journal could not be cut back after a failed write: {cut}");
                j.dirty = true;
            }
            return Err(e);
        }
        j.len += bytes.len() as u64;
        self.size.fetch_add(bytes.len() as u64, Ordering::Relaxed);
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

    /// Folds the journal into a new base. Checks wait only while the ledger is copied and
    /// the journal rotated; the base is written after.
    pub fn compact(&self, ledger: &Ledger, now: impl FnOnce() -> Moment) -> io::Result<()> {
        let result = (|| {
            let (dump, covers, moment) = {
                let _exclusive = self.gate.write().unwrap_or_else(|p| p.into_inner());
                let moment = now();
                let dump = ledger.dump();
                let mut j = self.journal.lock().unwrap_or_else(|p| p.into_inner());
                let covers = j.gen;
                fs::rename(self.path(), self.dir.join(format!("{FILE_NAME}.{covers}")))?;
                *j = start_journal(&self.dir, covers + 1)?;
                self.size.store(0, Ordering::Relaxed);
                (dump, covers, moment)
            };
            let size = write_base(&self.dir, &dump, covers, moment)?;
            self.base_size.store(size, Ordering::Relaxed);
            remove_journals(&self.dir, covers)
        })();
        self.compacting.store(false, Ordering::Release);
        result.map_err(|e| io::Error::new(e.kind(), format!("compacting {}: {e}", self.dir.display())))
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
fn lock_state_dir(dir: &Path) -> io::Result<Flock<File>> {
    let path = dir.join(".lock");
    crate::store::exclusive_lock(&path, None, FlockArg::LockExclusiveNonblock).map_err(|e| {
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

/// The entries of one commit, encoded before the commit lock is taken.
#[derive(Debug, Default)]
pub struct Entries {
    bytes: Vec<u8>,
    count: u32,
}

impl Entries {
    /// No entries yet.
    pub fn new() -> Entries {
        Entries::default()
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds an allowed order.
    pub fn consume(&mut self, c: &Consumption) {
        self.push(&Entry::Consume {
            key_id: c.key_id.clone(),
            ticket: c.number,
            unix_ns: clamp_i64(c.unix_ns),
            day: c.day,
            value: c.value.0,
        });
    }

    /// Adds a release of ledger number `number`.
    pub fn release(&mut self, number: u64) {
        self.push(&Entry::Release { ticket: number });
    }

    fn push(&mut self, e: &Entry) {
        push_line(&mut self.bytes, e).expect("ledger entries always serialize");
        self.count += 1;
    }
}

fn push_line(out: &mut Vec<u8>, e: &Entry) -> io::Result<()> {
    serde_json::to_writer(&mut *out, e).map_err(io::Error::other)?;
    out.push(b'\n');
    Ok(())
}

fn clamp_i64(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Creates the journal of generation `gen`, header first.
fn start_journal(dir: &Path, gen: u64) -> io::Result<Journal> {
    let path = dir.join(FILE_NAME);
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let mut header = serde_json::to_vec(&Entry::Journal { gen }).map_err(io::Error::other)?;
    header.push(b'\n');
    file.write_all(&header)?;
    let len = file.metadata()?.len();
    Ok(Journal {
        file,
        gen,
        len,
        dirty: false,
    })
}

/// Every journal file in `dir` with its generation (from its first line).
fn journals(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
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
        let text = fs::read(&path)?;
        let first = text.split(|b| *b == b'\n').next().unwrap_or_default();
        match serde_json::from_slice::<Entry>(first) {
            Ok(Entry::Journal { gen }) => found.push((gen, path)),
            _ => tracing::warn!(
                "{}: not a ledger journal (no header line); ignored",
                path.display()
            ),
        }
    }
    found.sort();
    Ok(found)
}

fn remove_journals(dir: &Path, up_to_gen: u64) -> io::Result<()> {
    for (gen, path) in journals(dir)? {
        if gen <= up_to_gen {
            fs::remove_file(&path)?;
        }
    }
    File::open(dir)?.sync_all()
}

/// Replays the base and every newer journal; returns what was found and the newest
/// generation seen (0 when none).
fn replay_dir(
    dir: &Path,
    ledger: &Ledger,
    now: Moment,
    audited: &dyn Fn(&AuditMark) -> Audited,
) -> io::Result<(Replay, u64)> {
    let mut out = Replay::default();
    let mut problems = Vec::new();
    let mut covers = 0;
    let base = dir.join(BASE_NAME);
    match fs::read(&base) {
        Ok(bytes) => {
            let (header, entries, problem) = replay_file(&bytes, ledger, now, None, &mut 0);
            match header {
                Some(Entry::Base {
                    covers: c,
                    next_ticket,
                    ticket_key,
                }) => {
                    covers = c;
                    ledger.restore_next_ticket(next_ticket);
                    match ticket_key.as_deref().map(parse_key) {
                        Some(Some(key)) => ledger.restore_ticket_key(key),
                        Some(None) => problems.push(format!("{BASE_NAME}: malformed ticket_key")),
                        None => {}
                    }
                }
                _ => problems.push(format!("{BASE_NAME}: no header line")),
            }
            out.entries += entries;
            problems.extend(problem.map(|p| format!("{BASE_NAME} {p}")));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", base.display()))),
    }
    let mut newest = covers;
    let found = journals(dir)?;
    let last = found.last().map(|(gen, _)| *gen);
    for (gen, path) in found {
        newest = newest.max(gen);
        if gen <= covers {
            continue; // already in the base: a compaction ended before removing it
        }
        let bytes = fs::read(&path)?;
        // Only the newest journal's last commit can lack its audit records: every earlier
        // commit had its records written before the next one began.
        let check = (Some(gen) == last).then_some(audited);
        let (_, entries, problem) = replay_file(&bytes, ledger, now, check, &mut out.unaudited);
        out.entries += entries;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        problems.extend(problem.map(|p| format!("{name} {p}")));
    }
    out.corrupt_tail = (!problems.is_empty()).then(|| problems.join("; "));
    Ok((out, newest))
}

fn parse_key(hex: &str) -> Option<[u8; 16]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 32 {
        return None;
    }
    let mut key = [0u8; 16];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        key[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(key)
}

fn key_hex(key: &[u8; 16]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// Replays one file's lines after its header until the first that is not a complete,
/// valid entry. The entries of a commit are applied once all of them were read; when
/// `audited` is given (the newest journal), the file's last commit is applied only if its
/// audit records were written, and the entries it leaves out are added to `unaudited`.
/// Returns the header, the entries replayed and what stopped it.
fn replay_file(
    bytes: &[u8],
    ledger: &Ledger,
    now: Moment,
    audited: Option<&dyn Fn(&AuditMark) -> Audited>,
    unaudited: &mut usize,
) -> (Option<Entry>, usize, Option<String>) {
    let today = now.today();
    let mut header = None;
    let mut entries = 0;
    let mut rest = bytes;
    let mut line_no = 0;
    // The commit being read: its audit mark, how many entries it announced, those read.
    let mut open: Option<(Option<AuditMark>, u32, Vec<Entry>)> = None;
    // The last complete commit, held back until something follows it.
    let mut held: Option<(Option<AuditMark>, Vec<Entry>)> = None;
    let apply_all = |batch: Vec<Entry>, entries: &mut usize| {
        for e in batch {
            apply(e, ledger, now, today);
            *entries += 1;
        }
    };
    let mut problem = None;
    while !rest.is_empty() {
        line_no += 1;
        let Some(end) = rest.iter().position(|b| *b == b'\n') else {
            problem = Some(format!("line {line_no}: truncated (no end of line)"));
            break;
        };
        let line = &rest[..end];
        rest = &rest[end + 1..];
        let entry: Entry = match serde_json::from_slice(line) {
            Ok(e) => e,
            Err(e) => {
                problem = Some(format!("line {line_no}: {e}"));
                break;
            }
        };
        if line_no == 1 && matches!(entry, Entry::Journal { .. } | Entry::Base { .. }) {
            header = Some(entry);
            continue;
        }
        if let Some((_, batch)) = held.take() {
            apply_all(batch, &mut entries);
        }
        match (entry, open.as_mut()) {
            (Entry::Commit { .. }, Some((_, want, got))) => {
                problem = Some(format!(
                    "line {line_no}: a commit began before the previous one's {want} entries were all read ({})",
                    got.len()
                ));
                open = None;
                break;
            }
            (Entry::Commit { entries: n, audit }, None) => open = Some((audit, n, Vec::new())),
            (e, Some((_, _, got))) => got.push(e),
            (e, None) => apply_all(vec![e], &mut entries),
        }
        if let Some((audit, want, got)) = open.take() {
            if got.len() as u32 >= want {
                held = Some((audit, got));
            } else {
                open = Some((audit, want, got));
            }
        }
    }
    if let Some((_, want, got)) = open {
        // Written in one write: a commit cut short was never answered.
        problem.get_or_insert_with(|| {
            format!(
                "line {line_no}: the last commit has {} of its {want} entries",
                got.len()
            )
        });
    }
    if let Some((audit, batch)) = held {
        let counts = match (audit, audited) {
            (Some(mark), Some(audited)) => audited(&mark) != Audited::No,
            _ => true,
        };
        if counts {
            apply_all(batch, &mut entries);
        } else {
            *unaudited += batch.len();
        }
    }
    (header, entries, problem)
}

fn apply(entry: Entry, ledger: &Ledger, now: Moment, today: i64) {
    let consumption = |key_id, number, unix_ns, day, value| Consumption {
        key_id,
        number,
        ticket: ledger.public_ticket(number),
        mono_ns: now.mono_of(unix_ns),
        unix_ns: i128::from(unix_ns),
        day,
        value: Money(value),
    };
    match entry {
        Entry::Journal { .. } | Entry::Base { .. } | Entry::Commit { .. } => {}
        Entry::Consume {
            key_id,
            ticket,
            unix_ns,
            day,
            value,
        } => ledger.restore_consumption(
            &consumption(key_id, ticket, unix_ns, day, value),
            now.mono_ns,
            today,
        ),
        Entry::Release { ticket } => ledger.restore_release(ticket),
        Entry::Total { key_id, day, used } => {
            ledger.restore_total(&key_id, day, Money(used), now.mono_ns, today)
        }
        Entry::Recent {
            key_id,
            ticket,
            unix_ns,
            day,
            value,
            released,
        } => ledger.restore_recent(
            &consumption(key_id, ticket, unix_ns, day, value),
            released,
            now.mono_ns,
            today,
        ),
    }
}

/// Writes `dump` as the base covering journals up to `covers`, atomically; returns its
/// size.
fn write_base(dir: &Path, dump: &LedgerDump, covers: u64, now: Moment) -> io::Result<u64> {
    let today = now.today();
    let mut text = Vec::new();
    let mut push = |e: &Entry| -> io::Result<()> {
        serde_json::to_writer(&mut text, e).map_err(io::Error::other)?;
        text.push(b'\n');
        Ok(())
    };
    push(&Entry::Base {
        covers,
        next_ticket: dump.next_ticket,
        ticket_key: Some(key_hex(&dump.ticket_key)),
    })?;
    for (key_id, day, used) in &dump.totals {
        if *day == today && *used > Money::ZERO {
            push(&Entry::Total {
                key_id: key_id.clone(),
                day: *day,
                used: used.0,
            })?;
        }
    }
    let keep = RELEASE_WINDOW_NS.max(RATE_WINDOW_NS);
    for (c, released) in &dump.recent {
        if now.mono_ns.saturating_sub(c.mono_ns) < keep {
            push(&Entry::Recent {
                unix_ns: now.unix_of(c.mono_ns),
                key_id: c.key_id.clone(),
                ticket: c.number,
                day: c.day,
                value: c.value.0,
                released: *released,
            })?;
        }
    }
    let path = dir.join(BASE_NAME);
    let tmp = dir.join(format!(".{BASE_NAME}.tmp"));
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))?;
    Ok(text.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::LimitCheck;

    const S: u64 = 1_000_000_000;
    const DAY_NS: i64 = 86_400 * 1_000_000_000;

    fn at(day: i64, secs: i64, mono_s: u64) -> Moment {
        Moment {
            unix_ns: day * DAY_NS + secs * 1_000_000_000,
            mono_ns: mono_s * S,
        }
    }

    fn key() -> KeyId {
        "bot".parse().unwrap()
    }

    /// Allows an order of `value` whole units at `now` and logs it, as the daemon does.
    fn order(log: &LedgerLog, ledger: &Ledger, now: Moment, value: u128) -> Consumption {
        let _g = log.gate();
        let c = ledger.with_key(&key(), |slot| {
            assert_eq!(
                slot.check(
                    now.mono_ns,
                    now.today(),
                    Money(value * 100_000_000),
                    Some(3),
                    None
                ),
                LimitCheck::Pass
            );
            slot.consume(
                now.mono_ns,
                i128::from(now.unix_ns),
                now.today(),
                Money(value * 100_000_000),
            )
        });
        let mut entries = Entries::new();
        entries.consume(&c);
        log.append(&entries, None).unwrap();
        c
    }

    #[test]
    fn a_restart_keeps_the_daily_total_the_rate_window_and_releases() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new();
        let (log, replay) =
            LedgerLog::open(dir.path(), &ledger, at(100, 3600, 5000), &|_| Audited::Yes).unwrap();
        assert_eq!(replay, Replay::default());
        order(&log, &ledger, at(100, 3600, 5000), 40);
        let second = order(&log, &ledger, at(100, 3610, 5010), 30);
        {
            let _g = log.gate();
            let r = ledger.release(second.ticket, 5011 * S).unwrap();
            let mut entries = Entries::new();
            entries.release(r.number);
            log.append(&entries, None).unwrap();
        }
        drop(log); // as after kill -9: no sync, no compaction

        // A new process, 20 s later, with another monotonic origin.
        let fresh = Ledger::new();
        let now = at(100, 3630, 3600);
        let (log, replay) = LedgerLog::open(dir.path(), &fresh, now, &|_| Audited::Yes).unwrap();
        drop(log);
        assert_eq!(replay.entries, 3);
        assert_eq!(replay.corrupt_tail, None);
        let (in_window, used) = fresh.usage(&key(), now.mono_ns, now.today());
        assert_eq!((in_window, used), (2, Money(40 * 100_000_000)));
        // And again after compaction rewrote the file.
        let again = Ledger::new();
        let (_log, replay) = LedgerLog::open(dir.path(), &again, now, &|_| Audited::Yes).unwrap();
        assert_eq!(replay.entries, 3, "one total and two recent orders");
        assert_eq!(
            again.usage(&key(), now.mono_ns, now.today()),
            (2, Money(40 * 100_000_000))
        );
        assert!(
            again.release(second.ticket, now.mono_ns).is_err(),
            "released once only"
        );
    }

    #[test]
    fn earlier_utc_days_are_dropped_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new();
        let (log, _) =
            LedgerLog::open(dir.path(), &ledger, at(100, 86_000, 5000), &|_| Audited::Yes).unwrap();
        order(&log, &ledger, at(100, 86_000, 5000), 40);
        drop(log);
        let fresh = Ledger::new();
        let tomorrow = at(101, 100, 9000);
        LedgerLog::open(dir.path(), &fresh, tomorrow, &|_| Audited::Yes).unwrap();
        assert_eq!(
            fresh.usage(&key(), tomorrow.mono_ns, tomorrow.today()),
            (0, Money::ZERO)
        );
        let text = fs::read_to_string(dir.path().join(BASE_NAME)).unwrap();
        assert!(!text.contains("\"total\""), "{text}");
    }

    #[test]
    fn a_truncated_tail_is_reported_and_the_prefix_used() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new();
        let now = at(100, 3600, 5000);
        let (log, _) = LedgerLog::open(dir.path(), &ledger, now, &|_| Audited::Yes).unwrap();
        order(&log, &ledger, now, 40);
        order(&log, &ledger, now, 30);
        drop(log);
        let path = dir.path().join(FILE_NAME);
        let mut bytes = fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 10);
        fs::write(&path, &bytes).unwrap();
        let fresh = Ledger::new();
        let (_log, replay) = LedgerLog::open(dir.path(), &fresh, now, &|_| Audited::Yes).unwrap();
        assert_eq!(replay.entries, 1);
        assert!(replay
            .corrupt_tail
            .unwrap()
            .starts_with("ledger.log line 5: truncated"));
        assert_eq!(
            fresh.usage(&key(), now.mono_ns, now.today()).1,
            Money(40 * 100_000_000)
        );
    }

    #[test]
    fn a_corrupt_line_stops_the_replay_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let now = at(100, 3600, 5000);
        let good = format!(
            "{{\"consume\":{{\"key_id\":\"bot\",\"ticket\":1,\"unix_ns\":{},\"day\":100,\"value\":700000000}}}}\n",
            now.unix_ns
        );
        fs::write(
            &path,
            format!("{{\"journal\":{{\"gen\":1}}}}\n{good}garbage\n{good}"),
        )
        .unwrap();
        let ledger = Ledger::new();
        let (_log, replay) = LedgerLog::open(dir.path(), &ledger, now, &|_| Audited::Yes).unwrap();
        assert_eq!(replay.entries, 1);
        assert!(replay.corrupt_tail.unwrap().starts_with("ledger.log line 3:"));
        assert_eq!(
            ledger.usage(&key(), now.mono_ns, now.today()).1,
            Money(700_000_000)
        );
    }

    #[test]
    fn compaction_keeps_the_same_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new();
        let now = at(100, 3600, 5000);
        let (log, _) = LedgerLog::open(dir.path(), &ledger, now, &|_| Audited::Yes).unwrap();
        for i in 0..3 {
            order(&log, &ledger, at(100, 3600 + i, 5000 + i as u64), 10);
        }
        let later = at(100, 3700, 5100);
        log.compact(&ledger, || later).unwrap();
        drop(log);
        let fresh = Ledger::new();
        LedgerLog::open(dir.path(), &fresh, later, &|_| Audited::Yes).unwrap();
        assert_eq!(
            fresh.usage(&key(), later.mono_ns, later.today()),
            ledger.usage(&key(), later.mono_ns, later.today())
        );
    }

    #[test]
    fn a_crash_between_writing_the_base_and_removing_the_journal_counts_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let now = at(100, 3600, 5000);
        let consume = format!(
            "{{\"consume\":{{\"key_id\":\"bot\",\"ticket\":1,\"unix_ns\":{},\"day\":100,\"value\":700000000}}}}\n",
            now.unix_ns
        );
        // Journal 5 holds the order; the base already covers journal 5 and holds it too.
        fs::write(
            dir.path().join(format!("{FILE_NAME}.5")),
            format!("{{\"journal\":{{\"gen\":5}}}}\n{consume}"),
        )
        .unwrap();
        fs::write(
            dir.path().join(BASE_NAME),
            "{\"base\":{\"covers\":5}}\n{\"total\":{\"key_id\":\"bot\",\"day\":100,\"used\":700000000}}\n",
        )
        .unwrap();
        // Journal 6 came after the base.
        fs::write(
            dir.path().join(FILE_NAME),
            format!("{{\"journal\":{{\"gen\":6}}}}\n{consume}"),
        )
        .unwrap();
        let ledger = Ledger::new();
        let (_log, replay) = LedgerLog::open(dir.path(), &ledger, now, &|_| Audited::Yes).unwrap();
        assert_eq!(replay.entries, 2, "the base's total and journal 6's order");
        assert_eq!(
            ledger.usage(&key(), now.mono_ns, now.today()).1,
            Money(1_400_000_000)
        );
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        assert_eq!(names.len(), 2, "one base and one fresh journal remain: {names:?}");
    }

    #[test]
    fn compaction_rotates_the_journal_and_orders_after_it_land_in_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new();
        let now = at(100, 3600, 5000);
        let (log, _) = LedgerLog::open(dir.path(), &ledger, now, &|_| Audited::Yes).unwrap();
        order(&log, &ledger, now, 10);
        log.compact(&ledger, || now).unwrap();
        order(&log, &ledger, at(100, 3601, 5001), 5);
        drop(log);
        let fresh = Ledger::new();
        let later = at(100, 3602, 5002);
        LedgerLog::open(dir.path(), &fresh, later, &|_| Audited::Yes).unwrap();
        assert_eq!(
            fresh.usage(&key(), later.mono_ns, later.today()),
            (2, Money(15 * 100_000_000))
        );
    }

    #[test]
    fn two_logs_cannot_share_a_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let now = at(100, 3600, 5000);
        let (_first, _) = LedgerLog::open(dir.path(), &Ledger::new(), now, &|_| Audited::Yes).unwrap();
        let err = LedgerLog::open(dir.path(), &Ledger::new(), now, &|_| Audited::Yes).unwrap_err();
        assert!(err.to_string().contains("in use by another futu-authd"), "{err}");
    }

    #[test]
    fn ticket_numbers_continue_after_a_quiet_restart() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new();
        let now = at(100, 3600, 5000);
        let (log, _) = LedgerLog::open(dir.path(), &ledger, now, &|_| Audited::Yes).unwrap();
        let c = order(&log, &ledger, now, 10);
        drop(log);
        // An hour later: the order is out of every window, yet its number is not reused.
        let later = at(100, 7200, 9000);
        let fresh = Ledger::new();
        let (log, _) = LedgerLog::open(dir.path(), &fresh, later, &|_| Audited::Yes).unwrap();
        let next = order(&log, &fresh, later, 10);
        assert!(next.number > c.number, "{} after {}", next.number, c.number);
    }

    fn mark(at: u64) -> AuditMark {
        AuditMark {
            dev: 1,
            ino: 2,
            at,
            len: 10,
        }
    }

    /// Two commits of one order each, the second one's audit records at `mark(100)`.
    fn two_commits(dir: &Path, now: Moment) -> (Consumption, Consumption) {
        let ledger = Ledger::new();
        let (log, _) = LedgerLog::open(dir, &ledger, now, &|_| Audited::Yes).unwrap();
        let mut out = Vec::new();
        for (i, at) in [50, 100].into_iter().enumerate() {
            let _g = log.gate();
            let c = ledger.with_key(&key(), |slot| {
                slot.check(now.mono_ns + i as u64, now.today(), Money(1), None, None);
                slot.consume(
                    now.mono_ns + i as u64,
                    i128::from(now.unix_ns),
                    now.today(),
                    Money(1),
                )
            });
            let mut entries = Entries::new();
            entries.consume(&c);
            log.append(&entries, Some(mark(at))).unwrap();
            out.push(c);
        }
        (out.remove(0), out.remove(0))
    }

    #[test]
    fn the_last_commit_counts_only_if_its_audit_records_were_written() {
        let now = at(100, 3600, 5000);
        for (answer, counted, unaudited) in [
            (Audited::Yes, 2, 0),
            (Audited::Unknown, 2, 0),
            (Audited::No, 1, 1),
        ] {
            let dir = tempfile::tempdir().unwrap();
            two_commits(dir.path(), now);
            let asked = std::cell::RefCell::new(Vec::new());
            let fresh = Ledger::new();
            let (_log, replay) = LedgerLog::open(dir.path(), &fresh, now, &|m| {
                asked.borrow_mut().push(m.at);
                answer
            })
            .unwrap();
            assert_eq!(*asked.borrow(), vec![100], "only the newest commit is in doubt");
            assert_eq!(replay.entries, counted, "{answer:?}");
            assert_eq!(replay.unaudited, unaudited, "{answer:?}");
            assert_eq!(
                fresh.usage(&key(), now.mono_ns + 5, now.today()).0,
                counted as u32
            );
        }
    }

    #[test]
    fn a_commit_cut_short_by_a_crash_is_not_counted() {
        let dir = tempfile::tempdir().unwrap();
        let now = at(100, 3600, 5000);
        two_commits(dir.path(), now);
        let path = dir.path().join(FILE_NAME);
        let text = fs::read_to_string(&path).unwrap();
        // The second commit's header line survives, its entry does not.
        let cut = text.trim_end().rfind('\n').unwrap() + 1;
        fs::write(&path, &text[..cut]).unwrap();
        let fresh = Ledger::new();
        let (_log, replay) = LedgerLog::open(dir.path(), &fresh, now, &|_| Audited::Yes).unwrap();
        assert_eq!(replay.entries, 1);
        assert!(
            replay
                .corrupt_tail
                .as_deref()
                .unwrap_or("")
                .contains("0 of its 1 entries"),
            "{replay:?}"
        );
    }

    #[test]
    fn a_cut_back_commit_leaves_nothing_in_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let now = at(100, 3600, 5000);
        let ledger = Ledger::new();
        let (log, _) = LedgerLog::open(dir.path(), &ledger, now, &|_| Audited::Yes).unwrap();
        order(&log, &ledger, now, 10);
        let size = fs::metadata(dir.path().join(FILE_NAME)).unwrap().len();
        let undone = ledger.with_key(&key(), |slot| {
            slot.check(now.mono_ns, now.today(), Money(1), Some(3), None);
            slot.consume(now.mono_ns, i128::from(now.unix_ns), now.today(), Money(1))
        });
        // The second commit's audit write failed: both its traces go.
        let mut entries = Entries::new();
        entries.consume(&undone);
        let before = log.append(&entries, None).unwrap();
        log.cut_back(before);
        ledger.undo_consumption(&undone);
        assert_eq!(fs::metadata(dir.path().join(FILE_NAME)).unwrap().len(), size);
        drop(log);
        let fresh = Ledger::new();
        LedgerLog::open(dir.path(), &fresh, now, &|_| Audited::Yes).unwrap();
        assert_eq!(
            fresh.usage(&key(), now.mono_ns, now.today()),
            ledger.usage(&key(), now.mono_ns, now.today()),
            "memory and the state after a restart agree"
        );
    }

    #[test]
    fn tickets_handed_out_before_a_restart_stay_releasable() {
        let dir = tempfile::tempdir().unwrap();
        let now = at(100, 3600, 5000);
        let ledger = Ledger::new();
        let (log, _) = LedgerLog::open(dir.path(), &ledger, now, &|_| Audited::Yes).unwrap();
        let c = order(&log, &ledger, now, 10);
        drop(log);
        let fresh = Ledger::new();
        let later = at(100, 3610, 6000);
        LedgerLog::open(dir.path(), &fresh, later, &|_| Audited::Yes).unwrap();
        assert_eq!(fresh.release(c.ticket, later.mono_ns).unwrap().refunded, c.value);
    }
}
