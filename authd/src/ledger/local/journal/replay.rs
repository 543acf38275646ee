//! Replay: reading the base and the journals back into the ledger at start, commit by
//! commit, stopping at the first record (or, in a file of the JSON format, line) that is
//! not a whole entry.

use std::fs;
use std::io;
use std::path::Path;

use super::compaction::journals;
use super::entry::{parse_key, Entry, RecentOrder, Records};
use super::BASE_NAME;
use futu_auth_rules::clock::utc_day;
use futu_auth_rules::ledger::{Consumption, FollowedOrder, FollowedPosition, Ledger};
use futu_auth_rules::money::Money;

use crate::ledger::{AuditMark, Audited};

/// What opening the log found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// Entries replayed (headers not counted).
    pub entries: usize,
    /// Why a tail was not used, if one was not (e.g. `ledger.log record 812: truncated`,
    /// or `line 812` in a file of the JSON format); one line per file.
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
    /// The monotonic time of a logged wall time, as long before this moment as it was (a
    /// time after it is now; none is before the clock's zero).
    pub(super) fn mono_of(&self, unix_ns: i64) -> u64 {
        let ago = self.unix_ns.saturating_sub(unix_ns).max(0) as u64;
        self.mono_ns.saturating_sub(ago)
    }

    /// The wall time of a monotonic time, to log it.
    pub(super) fn unix_of(&self, mono_ns: u64) -> i64 {
        let ago = self.mono_ns.saturating_sub(mono_ns).min(i64::MAX as u64) as i64;
        self.unix_ns.saturating_sub(ago)
    }

    /// The UTC day of this moment.
    pub(super) fn today(&self) -> i64 {
        utc_day(self.unix_ns.div_euclid(1_000_000_000))
    }
}

/// Replays the base and every newer journal; returns what was found and the newest
/// generation seen (0 when none).
pub(super) fn replay_dir(
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
                _ => problems.push(format!("{BASE_NAME}: no header")),
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

/// Replays one file's entries after its header until the first that is not a complete,
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
    let mut records = Records::of(bytes);
    let mut first = true;
    // The commit being read: its audit mark, how many entries it announced, those read.
    let mut open: Option<(Option<AuditMark>, u32, Vec<Entry>)> = None;
    // The last complete commit, held back until something follows it.
    let mut held: Option<(Option<AuditMark>, Vec<Entry>)> = None;
    let apply_all = |batch: Vec<Entry>, entries: &mut usize| {
        for e in batch {
            *entries += apply(e, ledger, now, today);
        }
    };
    let mut problem = None;
    while let Some(read) = records.next() {
        let entry = match read {
            Ok(e) => e,
            Err(e) => {
                problem = Some(e);
                break;
            }
        };
        if std::mem::take(&mut first) && matches!(entry, Entry::Journal { .. } | Entry::Base { .. }) {
            header = Some(entry);
            continue;
        }
        if let Some((_, batch)) = held.take() {
            apply_all(batch, &mut entries);
        }
        match (entry, open.as_mut()) {
            (Entry::Commit { .. }, Some((_, want, got))) => {
                problem = Some(format!(
                    "{}: a commit began before the previous one's {want} entries were all read ({})",
                    records.at(),
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
                "{}: the last commit has {} of its {want} entries",
                records.at(),
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

/// Applies one replayed entry to the ledger; returns how many entries it counts as (a
/// record of several orders counts each).
fn apply(entry: Entry, ledger: &Ledger, now: Moment, today: i64) -> usize {
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
            track,
        } => {
            let c = consumption(key_id, ticket, unix_ns, day, value);
            ledger.restore_consumption(&c, now.mono_ns, today);
            if let Some(t) = track {
                ledger.restore_follow(&c, &t.track());
            }
        }
        Entry::Release { ticket } => ledger.restore_release(ticket, today),
        Entry::Event {
            ticket,
            kind,
            unix_ns,
            filled_qty,
            fill_price,
        } => ledger.restore_event(ticket, kind, filled_qty, fill_price, now.mono_of(unix_ns), today),
        Entry::Open {
            key_id,
            ticket,
            symbol,
            buys,
            qty,
            price,
            filled_qty,
            filled_value,
            open_value,
            accepted,
        } => ledger.restore_open(FollowedOrder {
            key_id,
            number: ticket,
            symbol,
            buys,
            qty,
            price,
            filled_qty,
            filled_value: Money(filled_value),
            open_value: Money(open_value),
            accepted,
        }),
        Entry::Position {
            key_id,
            symbol,
            bought,
            sold,
        } => ledger.restore_position(FollowedPosition {
            key_id,
            symbol,
            bought: Money(bought),
            sold: Money(sold),
        }),
        Entry::Seen { key_id, fp, unix_ns } => ledger.restore_seen(&key_id, fp, now.mono_of(unix_ns)),
        Entry::Finished { key_id, ticket } => ledger.restore_finished(ticket, key_id),
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
        Entry::Recents { key_id, orders } => {
            let count = orders.len();
            for RecentOrder {
                ticket,
                unix_ns,
                day,
                value,
                released,
            } in orders
            {
                let c = consumption(key_id.clone(), ticket, unix_ns, day, value);
                ledger.restore_recent(&c, released, now.mono_ns, today);
            }
            return count;
        }
    }
    1
}
