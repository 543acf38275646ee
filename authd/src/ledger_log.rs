//! The ledger log: how daily totals, rate windows and release tickets survive a restart or
//! a `kill -9` at any moment.
//!
//! Every consumption and every release is appended to `STATE_DIR/ledger.log` (one JSON
//! object a line, a single `write` each) before the Allow or the Released is sent, so
//! whatever a client was told has reached the kernel. At start the log is replayed into
//! the ledger — a corrupt or truncated tail is reported and the intact prefix used — and
//! then compacted: rewritten (temporary file, fsync, rename, fsync of the directory) as one
//! total per key for today plus the orders still inside the release window; earlier UTC
//! days are dropped. The log is compacted again whenever it grows past
//! [`COMPACT_AT_BYTES`]; compaction holds the log's gate, so no consumption is half in the
//! old file and half in the new one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use futu_auth_proto::KeyId;
use serde::{Deserialize, Serialize};

use crate::ledger::{utc_day, Consumption, Ledger, RATE_WINDOW_NS, RELEASE_WINDOW_NS};
use crate::money::Money;

/// The log's file name in the state directory.
pub const FILE_NAME: &str = "ledger.log";

/// Compact once the log passes this size.
pub const COMPACT_AT_BYTES: u64 = 32 * 1024 * 1024;

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Entry {
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
    /// Compaction: a key's total on a day.
    Total { key_id: KeyId, day: i64, used: u128 },
    /// Compaction: an order still in the release window; its value is in the total.
    Recent {
        key_id: KeyId,
        ticket: u64,
        unix_ns: i64,
        day: i64,
        value: u128,
        released: bool,
    },
}

/// What opening the log found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// Lines replayed.
    pub entries: usize,
    /// Why the tail was not used, if it was not (e.g. `line 812: EOF while parsing`).
    pub corrupt_tail: Option<String>,
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

/// The open log.
#[derive(Debug)]
pub struct LedgerLog {
    path: PathBuf,
    file: Mutex<File>,
    /// Held shared around check-and-consume plus append, exclusively by compaction.
    gate: RwLock<()>,
    size: AtomicU64,
    compacting: AtomicBool,
}

impl LedgerLog {
    /// Opens (or creates) the log in `state_dir`, replays it into `ledger`, and compacts it.
    pub fn open(state_dir: &Path, ledger: &Ledger, now: Moment) -> io::Result<(LedgerLog, Replay)> {
        fs::create_dir_all(state_dir)
            .map_err(|e| io::Error::new(e.kind(), format!("state dir {}: {e}", state_dir.display())))?;
        let path = state_dir.join(FILE_NAME);
        let replay = match fs::read(&path) {
            Ok(bytes) => replay(&bytes, ledger, now),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Replay::default(),
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        let size = write_compacted(&path, ledger, now)?;
        let file = open_append(&path)?;
        Ok((
            LedgerLog {
                path,
                file: Mutex::new(file),
                gate: RwLock::new(()),
                size: AtomicU64::new(size),
                compacting: AtomicBool::new(false),
            },
            replay,
        ))
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Holds off compaction while a check consumes and its consumption is appended.
    pub fn gate(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a consumption. Call with [`LedgerLog::gate`] held since the consumption was
    /// made, and send the Allow only after this returned `Ok`.
    pub fn append_consumption(&self, c: &Consumption) -> io::Result<()> {
        self.append(&Entry::Consume {
            key_id: c.key_id.clone(),
            ticket: c.ticket,
            unix_ns: clamp_i64(c.unix_ns),
            day: c.day,
            value: c.value.0,
        })
    }

    /// Appends a release, under the gate, before the Released is sent.
    pub fn append_release(&self, ticket: u64) -> io::Result<()> {
        self.append(&Entry::Release { ticket })
    }

    fn append(&self, e: &Entry) -> io::Result<()> {
        let mut line = serde_json::to_vec(e).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(&line)?;
        self.size.fetch_add(line.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Whether the log has grown past [`COMPACT_AT_BYTES`] and no compaction is under way;
    /// the caller that gets `true` runs [`LedgerLog::compact`].
    pub fn wants_compaction(&self) -> bool {
        self.size.load(Ordering::Relaxed) > COMPACT_AT_BYTES
            && self
                .compacting
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Rewrites the log from the ledger's state; checks wait for it.
    pub fn compact(&self, ledger: &Ledger, now: Moment) -> io::Result<()> {
        let _exclusive = self.gate.write().unwrap_or_else(|p| p.into_inner());
        let result = (|| {
            let size = write_compacted(&self.path, ledger, now)?;
            let new = open_append(&self.path)?;
            *self.file.lock().unwrap_or_else(|p| p.into_inner()) = new;
            self.size.store(size, Ordering::Relaxed);
            Ok(())
        })();
        self.compacting.store(false, Ordering::Release);
        result
    }

    /// Flushes the log to disk (at shutdown).
    pub fn sync(&self) -> io::Result<()> {
        self.file.lock().unwrap_or_else(|p| p.into_inner()).sync_all()
    }
}

fn clamp_i64(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Replays lines until the first one that is not a complete, valid entry.
fn replay(bytes: &[u8], ledger: &Ledger, now: Moment) -> Replay {
    let today = now.today();
    let mut out = Replay::default();
    let mut rest = bytes;
    let mut line_no = 0;
    while !rest.is_empty() {
        line_no += 1;
        let Some(end) = rest.iter().position(|b| *b == b'\n') else {
            out.corrupt_tail = Some(format!("line {line_no}: truncated (no end of line)"));
            break;
        };
        let line = &rest[..end];
        rest = &rest[end + 1..];
        let entry: Entry = match serde_json::from_slice(line) {
            Ok(e) => e,
            Err(e) => {
                out.corrupt_tail = Some(format!("line {line_no}: {e}"));
                break;
            }
        };
        apply(entry, ledger, now, today);
        out.entries += 1;
    }
    out
}

fn apply(entry: Entry, ledger: &Ledger, now: Moment, today: i64) {
    let consumption = |key_id, ticket, unix_ns, day, value| Consumption {
        key_id,
        ticket,
        mono_ns: now.mono_of(unix_ns),
        unix_ns: i128::from(unix_ns),
        day,
        value: Money(value),
    };
    match entry {
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

/// Writes the ledger's state as a fresh log, atomically; returns its size.
fn write_compacted(path: &Path, ledger: &Ledger, now: Moment) -> io::Result<u64> {
    let today = now.today();
    let dump = ledger.dump();
    let mut text = Vec::new();
    let mut push = |e: &Entry| -> io::Result<()> {
        serde_json::to_writer(&mut text, e).map_err(io::Error::other)?;
        text.push(b'\n');
        Ok(())
    };
    for (key_id, day, used) in dump.totals {
        if day == today && used > Money::ZERO {
            push(&Entry::Total {
                key_id,
                day,
                used: used.0,
            })?;
        }
    }
    let keep = RELEASE_WINDOW_NS.max(RATE_WINDOW_NS);
    for (c, released) in dump.recent {
        if now.mono_ns.saturating_sub(c.mono_ns) < keep {
            push(&Entry::Recent {
                unix_ns: now.unix_of(c.mono_ns),
                key_id: c.key_id,
                ticket: c.ticket,
                day: c.day,
                value: c.value.0,
                released,
            })?;
        }
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{FILE_NAME}.tmp"));
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| io::Error::new(e.kind(), format!("compacting {}: {e}", path.display())))?;
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
        log.append_consumption(&c).unwrap();
        c
    }

    #[test]
    fn a_restart_keeps_the_daily_total_the_rate_window_and_releases() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new();
        let (log, replay) = LedgerLog::open(dir.path(), &ledger, at(100, 3600, 5000)).unwrap();
        assert_eq!(replay, Replay::default());
        order(&log, &ledger, at(100, 3600, 5000), 40);
        let second = order(&log, &ledger, at(100, 3610, 5010), 30);
        {
            let _g = log.gate();
            ledger.release(second.ticket, 5011 * S).unwrap();
            log.append_release(second.ticket).unwrap();
        }
        drop(log); // as after kill -9: no sync, no compaction

        // A new process, 20 s later, with another monotonic origin.
        let fresh = Ledger::new();
        let now = at(100, 3630, 3600);
        let (_log, replay) = LedgerLog::open(dir.path(), &fresh, now).unwrap();
        assert_eq!(replay.entries, 3);
        assert_eq!(replay.corrupt_tail, None);
        let (in_window, used) = fresh.usage(&key(), now.mono_ns, now.today());
        assert_eq!((in_window, used), (2, Money(40 * 100_000_000)));
        // And again after compaction rewrote the file.
        let again = Ledger::new();
        let (_log, replay) = LedgerLog::open(dir.path(), &again, now).unwrap();
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
        let (log, _) = LedgerLog::open(dir.path(), &ledger, at(100, 86_000, 5000)).unwrap();
        order(&log, &ledger, at(100, 86_000, 5000), 40);
        drop(log);
        let fresh = Ledger::new();
        let tomorrow = at(101, 100, 9000);
        LedgerLog::open(dir.path(), &fresh, tomorrow).unwrap();
        assert_eq!(
            fresh.usage(&key(), tomorrow.mono_ns, tomorrow.today()),
            (0, Money::ZERO)
        );
        let text = fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(!text.contains("\"total\""), "{text}");
    }

    #[test]
    fn a_truncated_tail_is_reported_and_the_prefix_used() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new();
        let now = at(100, 3600, 5000);
        let (log, _) = LedgerLog::open(dir.path(), &ledger, now).unwrap();
        order(&log, &ledger, now, 40);
        order(&log, &ledger, now, 30);
        drop(log);
        let path = dir.path().join(FILE_NAME);
        let mut bytes = fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 10);
        fs::write(&path, &bytes).unwrap();
        let fresh = Ledger::new();
        let (_log, replay) = LedgerLog::open(dir.path(), &fresh, now).unwrap();
        assert_eq!(replay.entries, 1);
        assert!(replay.corrupt_tail.unwrap().starts_with("line 2: truncated"));
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
        fs::write(&path, format!("{good}garbage\n{good}")).unwrap();
        let ledger = Ledger::new();
        let (_log, replay) = LedgerLog::open(dir.path(), &ledger, now).unwrap();
        assert_eq!(replay.entries, 1);
        assert!(replay.corrupt_tail.unwrap().starts_with("line 2:"));
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
        let (log, _) = LedgerLog::open(dir.path(), &ledger, now).unwrap();
        for i in 0..3 {
            order(&log, &ledger, at(100, 3600 + i, 5000 + i as u64), 10);
        }
        let later = at(100, 3700, 5100);
        log.compact(&ledger, later).unwrap();
        let fresh = Ledger::new();
        LedgerLog::open(dir.path(), &fresh, later).unwrap();
        assert_eq!(
            fresh.usage(&key(), later.mono_ns, later.today()),
            ledger.usage(&key(), later.mono_ns, later.today())
        );
    }
}
