//! Followed orders (open orders, positions, duplicates) and order events through the
//! journal: replayed after a crash at any byte, and kept by compaction.

use std::fs;

use futu_auth_proto::{KeyId, OrderEventKind};
use futu_auth_rules::ledger::{Charge, Charged, Consumption, EventApplied, Ledger, Track};
use futu_auth_rules::money::Money;

use super::*;

const S: u64 = 1_000_000_000;
const DAY_NS: i64 = 86_400 * 1_000_000_000;
const SYMBOL: &str = "HK.00700";

fn at(secs: i64, mono_s: u64) -> Moment {
    Moment {
        unix_ns: 100 * DAY_NS + secs * 1_000_000_000,
        mono_ns: mono_s * S,
    }
}

fn key() -> KeyId {
    "bot".parse().unwrap()
}

fn track(buys: bool, qty: f64, price: f64) -> Track {
    Track {
        symbol: SYMBOL.into(),
        buys,
        qty,
        price: Some(price),
        acc_id: Some(7),
        max_open_orders: Some(3),
        max_position_value: Some(Money::cap(1_000_000.0).unwrap()),
        duplicate_window_ns: Some(10 * S),
    }
}

fn charge(t: &Track) -> Charge {
    Charge {
        key_id: key(),
        value: Money::order_value(t.qty, t.price.unwrap()).unwrap(),
        max_orders_per_minute: None,
        max_daily_value: None,
        dry_run: false,
        track: Some(t.clone()),
    }
}

/// Takes a followed order at `now` and journals it, as the local store does.
fn order(log: &LedgerLog, ledger: &Ledger, now: Moment, t: &Track) -> Consumption {
    let _g = log.gate();
    let ch = charge(t);
    let c = match ledger.take(&ch, now.mono_ns, i128::from(now.unix_ns), now.today()) {
        Charged::Passed(Some(c)) => c,
        other => panic!("not taken: {other:?}"),
    };
    let mut entries = Entries::new();
    entries.consume_followed(&c, ch.track.as_ref());
    log.append(&entries, None).unwrap();
    c
}

/// Applies an event at `now` and journals it when it changed something.
fn event(
    log: &LedgerLog,
    ledger: &Ledger,
    now: Moment,
    c: &Consumption,
    kind: OrderEventKind,
    fill: Option<(f64, f64)>,
) {
    let _g = log.gate();
    let applied = ledger
        .order_event(
            c.ticket,
            kind,
            fill.map(|f| f.0),
            fill.map(|f| f.1),
            now.mono_ns,
            now.today(),
        )
        .unwrap();
    if matches!(applied, EventApplied::Applied { .. }) {
        let mut entries = Entries::new();
        entries.event(
            c.number,
            kind,
            fill.map(|f| f.0),
            fill.map(|f| f.1),
            i128::from(now.unix_ns),
        );
        log.append(&entries, None).unwrap();
    }
}

/// What the tests compare: open orders, the long and short positions, the day's total.
type State = (u32, Money, Money, Money);

/// The [`State`] of `ledger` at `now`.
fn state(ledger: &Ledger, now: Moment) -> State {
    (
        ledger.open_orders(&key()),
        ledger.position(&key(), SYMBOL, true),
        ledger.position(&key(), SYMBOL, false),
        ledger.usage(&key(), now.mono_ns, now.today()).1,
    )
}

/// A life of four orders: one filled in two steps, one cancelled, one rejected, one left
/// open; returns the state after each commit with the journal's length then.
fn scenario(log: &LedgerLog, ledger: &Ledger) -> Vec<(u64, State)> {
    let path = log.path();
    let mut out = Vec::new();
    let mut note = |ledger: &Ledger| {
        let len = fs::metadata(&path).unwrap().len();
        out.push((len, state(ledger, at(3700, 5100))));
    };
    note(ledger);
    let a = order(log, ledger, at(3600, 5000), &track(true, 100.0, 300.0));
    note(ledger);
    let b = order(log, ledger, at(3601, 5001), &track(true, 200.0, 300.0));
    note(ledger);
    let c = order(log, ledger, at(3602, 5002), &track(false, 100.0, 310.0));
    note(ledger);
    event(log, ledger, at(3603, 5003), &a, OrderEventKind::Accepted, None);
    note(ledger);
    event(
        log,
        ledger,
        at(3604, 5004),
        &a,
        OrderEventKind::PartiallyFilled,
        Some((40.0, 299.0)),
    );
    note(ledger);
    event(
        log,
        ledger,
        at(3605, 5005),
        &a,
        OrderEventKind::Filled,
        Some((100.0, 299.5)),
    );
    note(ledger);
    event(log, ledger, at(3606, 5006), &b, OrderEventKind::Cancelled, None);
    note(ledger);
    event(log, ledger, at(3607, 5007), &c, OrderEventKind::Rejected, None);
    note(ledger);
    order(log, ledger, at(3608, 5008), &track(true, 10.0, 301.0));
    note(ledger);
    out
}

#[test]
fn a_crash_at_any_byte_replays_the_followed_orders_of_the_whole_commits() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::new();
    let (log, _) = LedgerLog::open(dir.path(), &ledger, at(3600, 5000), &|_| Audited::Yes).unwrap();
    let states = scenario(&log, &ledger);
    drop(log);
    let journal = fs::read(dir.path().join(FILE_NAME)).unwrap();
    let base = fs::read(dir.path().join(BASE_NAME)).unwrap();
    assert!(journal.starts_with(entry::MAGIC) && base.starts_with(entry::MAGIC));
    assert_eq!(states.last().unwrap().0, journal.len() as u64);
    crash_at_every_byte(&journal, &base, &states);
}

#[test]
fn a_crash_at_any_byte_of_a_json_journal_of_an_earlier_release_replays_the_whole_commits() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::new();
    let (log, _) = LedgerLog::open(dir.path(), &ledger, at(3600, 5000), &|_| Audited::Yes).unwrap();
    let states = scenario(&log, &ledger);
    drop(log);
    // The same files as an earlier release wrote them: one JSON object a line.
    let journal = fs::read(dir.path().join(FILE_NAME)).unwrap();
    let json_states: Vec<_> = states
        .iter()
        .map(|(len, state)| (as_json(&journal[..*len as usize]).len() as u64, *state))
        .collect();
    let journal = as_json(&journal);
    let base = as_json(&fs::read(dir.path().join(BASE_NAME)).unwrap());
    assert!(journal.starts_with(b"{\"journal\":{\"gen\":1}}\n"));
    crash_at_every_byte(&journal, &base, &json_states);
}

/// The entries of a binary file written again as one JSON object a line, as releases
/// before the binary format wrote them.
fn as_json(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entry::Records::of(bytes) {
        match e.unwrap() {
            // Written as one `recent` line each before.
            entry::Entry::Recents { key_id, orders } => {
                for o in orders {
                    let e = entry::Entry::Recent {
                        key_id: key_id.clone(),
                        ticket: o.ticket,
                        unix_ns: o.unix_ns,
                        day: o.day,
                        value: o.value,
                        released: o.released,
                    };
                    json::push_line(&mut out, &e);
                }
            }
            e => json::push_line(&mut out, &e),
        }
    }
    out
}

/// Replays `journal` cut at every byte after its first state, over `base`: each cut
/// must give the state of the last commit written whole before it.
fn crash_at_every_byte(journal: &[u8], base: &[u8], states: &[(u64, State)]) {
    let later = at(3700, 5100);
    for cut in states[0].0 as usize..=journal.len() {
        let crash = tempfile::tempdir().unwrap();
        fs::write(crash.path().join(FILE_NAME), &journal[..cut]).unwrap();
        fs::write(crash.path().join(BASE_NAME), base).unwrap();
        let fresh = Ledger::new();
        let (_log, replay) = LedgerLog::open(crash.path(), &fresh, later, &|_| Audited::Yes).unwrap();
        let want = states
            .iter()
            .rev()
            .find(|(len, _)| *len as usize <= cut)
            .unwrap()
            .1;
        assert_eq!(state(&fresh, later), want, "journal cut at byte {cut}");
        let whole = states.iter().any(|(len, _)| *len as usize == cut);
        assert_eq!(
            replay.corrupt_tail.is_none(),
            whole,
            "journal cut at byte {cut}: {replay:?}"
        );
    }
}

#[test]
fn a_state_dir_of_an_earlier_release_is_read_and_written_again_in_the_binary_format() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::new();
    let (log, _) = LedgerLog::open(dir.path(), &ledger, at(3600, 5000), &|_| Audited::Yes).unwrap();
    let first = order(&log, &ledger, at(3600, 5000), &track(true, 100.0, 300.0));
    event(
        &log,
        &ledger,
        at(3601, 5001),
        &first,
        OrderEventKind::PartiallyFilled,
        Some((40.0, 299.0)),
    );
    // A compaction: the base holds the open order, its position and fingerprint.
    log.compact(&ledger, || at(3602, 5002)).unwrap();
    let second = order(&log, &ledger, at(3603, 5003), &track(false, 50.0, 310.0));
    event(
        &log,
        &ledger,
        at(3604, 5004),
        &second,
        OrderEventKind::Cancelled,
        None,
    );
    let now = at(3610, 5010);
    let want = state(&ledger, now);
    drop(log);

    // The state directory as the earlier release left it: its base and journal in JSON.
    let old = tempfile::tempdir().unwrap();
    for name in [BASE_NAME, FILE_NAME] {
        let bytes = fs::read(dir.path().join(name)).unwrap();
        fs::write(old.path().join(name), as_json(&bytes)).unwrap();
    }
    let upgraded = Ledger::new();
    let (log, replay) = LedgerLog::open(old.path(), &upgraded, now, &|_| Audited::Yes).unwrap();
    assert_eq!(replay.corrupt_tail, None);
    assert_eq!(state(&upgraded, now), want);
    // What the new release writes is binary: the base it wrote at start, the new journal.
    for name in [BASE_NAME, FILE_NAME] {
        let bytes = fs::read(old.path().join(name)).unwrap();
        assert!(bytes.starts_with(entry::MAGIC), "{name}");
    }
    // The first order's ticket is still followed, and its events apply.
    event(
        &log,
        &upgraded,
        now,
        &first,
        OrderEventKind::Filled,
        Some((100.0, 299.5)),
    );
    let filled = state(&upgraded, now);
    assert_eq!(filled.0, 0, "no order open");
    drop(log);
    let again = Ledger::new();
    let (_log, replay) = LedgerLog::open(old.path(), &again, now, &|_| Audited::Yes).unwrap();
    assert_eq!(replay.corrupt_tail, None);
    assert_eq!(state(&again, now), filled);
    // The old format's ticket key was kept: a ticket from before the upgrade is known.
    assert_eq!(again.ticket_number(first.ticket), first.number);
}

#[test]
fn open_orders_positions_and_duplicates_survive_a_restart_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::new();
    let (log, _) = LedgerLog::open(dir.path(), &ledger, at(3600, 5000), &|_| Audited::Yes).unwrap();
    scenario(&log, &ledger);
    let open = order(&log, &ledger, at(3609, 5009), &track(false, 5.0, 302.0));
    let now = at(3610, 5010);
    let want = state(&ledger, now);
    assert_eq!(want.0, 2, "two orders open");
    assert!(want.1 > Money::ZERO && want.2 > Money::ZERO);
    // Compaction folds it all into the base; a restart reads only the base.
    log.compact(&ledger, || now).unwrap();
    drop(log);
    for _ in 0..2 {
        let fresh = Ledger::new();
        let (log, _) = LedgerLog::open(dir.path(), &fresh, now, &|_| Audited::Yes).unwrap();
        assert_eq!(state(&fresh, now), want);
        // The order sent again within its window is a duplicate.
        let again = charge(&track(false, 5.0, 302.0));
        assert!(
            matches!(
                fresh.take(&again, now.mono_ns, i128::from(now.unix_ns), now.today()),
                Charged::Duplicate { .. }
            ),
            "a duplicate after the restart"
        );
        // A finished order's event is a duplicate; an open one's still applies.
        assert!(matches!(
            fresh.order_event(
                open.ticket,
                OrderEventKind::Accepted,
                None,
                None,
                now.mono_ns,
                now.today()
            ),
            Ok(EventApplied::Applied { .. })
        ));
        drop(log);
    }
    let fresh = Ledger::new();
    let (log, _) = LedgerLog::open(dir.path(), &fresh, now, &|_| Audited::Yes).unwrap();
    event(&log, &fresh, now, &open, OrderEventKind::Cancelled, None);
    assert_eq!(fresh.open_orders(&key()), 1);
    drop(log);
    let fresh = Ledger::new();
    let (_log, _) = LedgerLog::open(dir.path(), &fresh, now, &|_| Audited::Yes).unwrap();
    assert_eq!(fresh.open_orders(&key()), 1, "the cancel survives a restart");
    assert!(matches!(
        fresh.order_event(
            open.ticket,
            OrderEventKind::Cancelled,
            None,
            None,
            now.mono_ns,
            now.today()
        ),
        Ok(EventApplied::Duplicate { .. })
    ));
}
