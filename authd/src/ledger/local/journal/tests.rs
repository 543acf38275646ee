//! The ledger log through its front door: open, append, compact, and open again.

use std::fs;
use std::path::Path;

use futu_auth_proto::KeyId;
use futu_auth_rules::ledger::{Charge, Charged, Consumption, Ledger};
use futu_auth_rules::money::Money;

use super::*;

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

/// Takes an order of `value` (in the ledger's units) for [`key`], limited to `rate` orders
/// a minute, at `mono_ns`: as the daemon's store takes a charge.
fn take(ledger: &Ledger, now: Moment, mono_ns: u64, value: Money, rate: Option<u32>) -> Consumption {
    let charge = Charge {
        key_id: key(),
        value,
        max_orders_per_minute: rate,
        max_daily_value: None,
        dry_run: false,
        track: None,
    };
    match ledger.take(&charge, mono_ns, i128::from(now.unix_ns), now.today()) {
        Charged::Passed(Some(c)) => c,
        other => panic!("the order was not taken: {other:?}"),
    }
}

/// Allows an order of `value` whole units at `now` and logs it, as the daemon does.
fn order(log: &LedgerLog, ledger: &Ledger, now: Moment, value: u128) -> Consumption {
    let _g = log.gate();
    let c = take(ledger, now, now.mono_ns, Money(value * 100_000_000), Some(3));
    let mut entries = Entries::new();
    entries.consume(&c);
    log.append(&entries, None).unwrap();
    c
}

#[test]
fn a_restart_keeps_the_daily_total_the_rate_window_and_releases() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::new();
    let (log, replay) = LedgerLog::open(dir.path(), &ledger, at(100, 3600, 5000), &|_| Audited::Yes).unwrap();
    assert_eq!(replay, Replay::default());
    order(&log, &ledger, at(100, 3600, 5000), 40);
    let second = order(&log, &ledger, at(100, 3610, 5010), 30);
    {
        let _g = log.gate();
        let r = ledger.release(second.ticket, 5011 * S, 100).unwrap();
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
        again.release(second.ticket, now.mono_ns, now.today()).is_err(),
        "released once only"
    );
}

#[test]
fn earlier_utc_days_are_dropped_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::new();
    let (log, _) = LedgerLog::open(dir.path(), &ledger, at(100, 86_000, 5000), &|_| Audited::Yes).unwrap();
    order(&log, &ledger, at(100, 86_000, 5000), 40);
    drop(log);
    let fresh = Ledger::new();
    let tomorrow = at(101, 100, 9000);
    LedgerLog::open(dir.path(), &fresh, tomorrow, &|_| Audited::Yes).unwrap();
    assert_eq!(
        fresh.usage(&key(), tomorrow.mono_ns, tomorrow.today()),
        (0, Money::ZERO)
    );
    let base = entries_of(&fs::read(dir.path().join(BASE_NAME)).unwrap());
    assert!(
        !base.iter().any(|e| matches!(e, entry::Entry::Total { .. })),
        "{base:?}"
    );
}

#[test]
fn a_release_just_after_utc_midnight_refunds_nothing_and_a_restart_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::new();
    let late = at(100, 86_394, 5000); // 23:59:54 UTC
    let (log, _) = LedgerLog::open(dir.path(), &ledger, late, &|_| Audited::Yes).unwrap();
    let c = order(&log, &ledger, late, 60);
    let after = at(101, 1, 5007); // 00:00:01, nothing has used the key since
    {
        let _g = log.gate();
        let r = ledger.release(c.ticket, after.mono_ns, after.today()).unwrap();
        assert_eq!(r.refunded, Money::ZERO, "the order's UTC day is over");
        let mut entries = Entries::new();
        entries.release(r.number);
        log.append(&entries, None).unwrap();
    }
    drop(log); // as after kill -9

    let now = at(101, 5, 5011);
    let running = ledger.usage(&key(), now.mono_ns, now.today());
    assert_eq!(running, (1, Money::ZERO));
    let fresh = Ledger::new();
    let (log, replay) = LedgerLog::open(dir.path(), &fresh, now, &|_| Audited::Yes).unwrap();
    drop(log);
    assert_eq!(replay.entries, 2);
    assert_eq!(
        fresh.usage(&key(), now.mono_ns, now.today()),
        running,
        "memory and the state after a restart agree"
    );
    assert_eq!(
        fresh.release(c.ticket, now.mono_ns, now.today()),
        Err(futu_auth_rules::ledger::ReleaseError::AlreadyReleased)
    );
    // And again from the base the restart wrote.
    let again = Ledger::new();
    LedgerLog::open(dir.path(), &again, now, &|_| Audited::Yes).unwrap();
    assert_eq!(again.usage(&key(), now.mono_ns, now.today()), running);
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
        .starts_with("ledger.log record 5: truncated"));
    assert_eq!(
        fresh.usage(&key(), now.mono_ns, now.today()).1,
        Money(40 * 100_000_000)
    );
}

/// The entries of a whole file, as replay reads them; panics at a record that is not one.
fn entries_of(bytes: &[u8]) -> Vec<entry::Entry> {
    entry::Records::of(bytes).map(Result::unwrap).collect()
}

/// Where each record of a binary file starts, and its end.
fn record_starts(bytes: &[u8]) -> Vec<usize> {
    assert!(bytes.starts_with(entry::MAGIC));
    let mut at = entry::MAGIC.len();
    let mut starts = Vec::new();
    while at < bytes.len() {
        starts.push(at);
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 8 + len;
    }
    assert_eq!(at, bytes.len());
    starts.push(at);
    starts
}

#[test]
fn a_corrupt_record_stops_the_replay_there() {
    let dir = tempfile::tempdir().unwrap();
    let now = at(100, 3600, 5000);
    let ledger = Ledger::new();
    let (log, _) = LedgerLog::open(dir.path(), &ledger, now, &|_| Audited::Yes).unwrap();
    for value in [7, 5, 3] {
        order(&log, &ledger, now, value);
    }
    drop(log);
    let path = dir.path().join(FILE_NAME);
    let clean = fs::read(&path).unwrap();
    // Records: the header, then a commit and its order three times. A byte of the second
    // order flipped: the checksum no longer holds, and nothing from there on counts.
    let starts = record_starts(&clean);
    assert_eq!(starts.len(), 8, "{starts:?}");
    // The payload, the length (now far too long) and the checksum, each in turn.
    for at in [starts[4] + 20, starts[4] + 2, starts[4] + 5] {
        let mut bytes = clean.clone();
        bytes[at] ^= 0x40;
        let crash = tempfile::tempdir().unwrap();
        fs::write(crash.path().join(FILE_NAME), &bytes).unwrap();
        let fresh = Ledger::new();
        let (log, replay) = LedgerLog::open(crash.path(), &fresh, now, &|_| Audited::Yes).unwrap();
        drop(log);
        assert_eq!(replay.entries, 1, "byte {at}");
        let why = replay.corrupt_tail.unwrap();
        assert!(
            why.starts_with("ledger.log record 5: corrupt"),
            "byte {at}: {why}"
        );
        assert_eq!(
            fresh.usage(&key(), now.mono_ns, now.today()).1,
            Money(7 * 100_000_000),
            "byte {at}"
        );
        // The next start reads the base that one wrote: the same, and nothing reported.
        let again = Ledger::new();
        let (_log, replay) = LedgerLog::open(crash.path(), &again, now, &|_| Audited::Yes).unwrap();
        assert_eq!(replay.corrupt_tail, None, "byte {at}");
        assert_eq!(
            again.usage(&key(), now.mono_ns, now.today()),
            fresh.usage(&key(), now.mono_ns, now.today()),
            "byte {at}"
        );
    }
}

#[test]
fn a_corrupt_line_of_a_json_journal_stops_the_replay_there() {
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
        records: 1,
    }
}

/// Two commits of one order each, the second one's audit records at `mark(100)`.
fn two_commits(dir: &Path, now: Moment) -> (Consumption, Consumption) {
    let ledger = Ledger::new();
    let (log, _) = LedgerLog::open(dir, &ledger, now, &|_| Audited::Yes).unwrap();
    let mut out = Vec::new();
    for (i, at) in [50, 100].into_iter().enumerate() {
        let _g = log.gate();
        let c = take(&ledger, now, now.mono_ns + i as u64, Money(1), None);
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
    let bytes = fs::read(&path).unwrap();
    // The second commit's record survives, its entry does not.
    let starts = record_starts(&bytes);
    fs::write(&path, &bytes[..starts[starts.len() - 2]]).unwrap();
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
    let undone = take(&ledger, now, now.mono_ns, Money(1), Some(3));
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
    assert_eq!(
        fresh
            .release(c.ticket, later.mono_ns, later.today())
            .unwrap()
            .refunded,
        c.value
    );
}

#[test]
fn a_journal_with_a_torn_header_is_kept_aside_and_orders_after_it_survive() {
    for torn in [&b"\0{\"journ"[..], &entry::MAGIC[..5], &journal_header()[..14]] {
        a_journal_with_this_header_is_kept_aside(torn);
    }
}

/// A journal's first bytes, as the daemon writes them.
fn journal_header() -> Vec<u8> {
    let mut bytes = entry::MAGIC.to_vec();
    entry::push_journal(&mut bytes, 3);
    bytes
}

fn a_journal_with_this_header_is_kept_aside(torn: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let now = at(100, 3600, 5000);
    fs::write(dir.path().join(FILE_NAME), torn).unwrap();
    let ledger = Ledger::new();
    let (log, replay) = LedgerLog::open(dir.path(), &ledger, now, &|_| Audited::Yes).unwrap();
    assert!(
        replay
            .corrupt_tail
            .as_deref()
            .unwrap_or("")
            .contains("kept aside"),
        "{replay:?}"
    );
    order(&log, &ledger, now, 15);
    drop(log);
    let fresh = Ledger::new();
    LedgerLog::open(dir.path(), &fresh, now, &|_| Audited::Yes).unwrap();
    assert_eq!(
        fresh.usage(&key(), now.mono_ns, now.today()).1,
        Money(15 * 100_000_000),
        "the order written after the damaged journal counts after the next restart"
    );
}

#[test]
fn a_base_keeps_the_orders_of_the_release_window_only() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::new();
    let early = at(100, 3600, 5000);
    let (log, _) = LedgerLog::open(dir.path(), &ledger, early, &|_| Audited::Yes).unwrap();
    let old = order(&log, &ledger, early, 10);
    // Sixteen minutes later: the first order is past its release window.
    let late = at(100, 3600 + 960, 5960);
    let recent = order(&log, &ledger, late, 20);
    log.compact(&ledger, || late).unwrap();
    drop(log);
    let base = entries_of(&fs::read(dir.path().join(BASE_NAME)).unwrap());
    let kept: Vec<u64> = base
        .iter()
        .flat_map(|e| match e {
            entry::Entry::Recents { orders, .. } => orders.iter().map(|o| o.ticket).collect(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(kept, vec![recent.number], "{base:?}");
    let fresh = Ledger::new();
    let (_log, replay) = LedgerLog::open(dir.path(), &fresh, late, &|_| Audited::Yes).unwrap();
    assert_eq!(replay.corrupt_tail, None);
    assert_eq!(
        fresh.usage(&key(), late.mono_ns, late.today()),
        (1, Money(30 * 100_000_000)),
        "both orders in the day's total, the recent one in the rate window"
    );
    assert!(fresh.release(old.ticket, late.mono_ns, late.today()).is_err());
    assert_eq!(
        fresh
            .release(recent.ticket, late.mono_ns, late.today())
            .unwrap()
            .refunded,
        recent.value
    );
}

#[test]
fn a_base_of_many_orders_of_several_keys_reads_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::new();
    let now = at(100, 3600, 5000);
    let (log, _) = LedgerLog::open(dir.path(), &ledger, now, &|_| Audited::Yes).unwrap();
    let keys: Vec<KeyId> = ["a", "bb", "c-3"].iter().map(|k| k.parse().unwrap()).collect();
    let mut taken = Vec::new();
    // Runs of one key and single orders, more than a record holds, values of every size,
    // times out of order, some released.
    for i in 0..10_000u64 {
        let key_id = keys[((i / 7) % 3) as usize].clone();
        let value = Money(u128::from(i) << (i % 100));
        let mono = now.mono_ns - (i % 13) * S - i;
        let charge = Charge {
            key_id,
            value,
            max_orders_per_minute: None,
            max_daily_value: None,
            dry_run: false,
            track: None,
        };
        let Charged::Passed(Some(c)) = ledger.take(&charge, mono, i128::from(now.unix_ns), now.today())
        else {
            panic!("not taken");
        };
        if i % 5 == 0 {
            ledger.release(c.ticket, now.mono_ns, now.today()).unwrap();
        }
        taken.push(c);
    }
    log.compact(&ledger, || now).unwrap();
    drop(log);
    let fresh = Ledger::new();
    let (_log, replay) = LedgerLog::open(dir.path(), &fresh, now, &|_| Audited::Yes).unwrap();
    assert_eq!(replay.corrupt_tail, None);
    let (want, got) = (ledger.dump(), fresh.dump());
    assert_eq!(got.recent.len(), taken.len());
    assert_eq!(got.next_ticket, want.next_ticket);
    for ((w, w_released), (g, g_released)) in want.recent.iter().zip(&got.recent) {
        assert_eq!(
            (&g.key_id, g.number, g.day, g.value),
            (&w.key_id, w.number, w.day, w.value)
        );
        assert_eq!(g.mono_ns, w.mono_ns, "order {}", w.number);
        assert_eq!(g_released, w_released, "order {}", w.number);
    }
    for k in &keys {
        assert_eq!(
            fresh.usage(k, now.mono_ns, now.today()),
            ledger.usage(k, now.mono_ns, now.today())
        );
    }
}
