use super::*;
use jiff::tz::TimeZone;
use proptest::prelude::*;

use crate::clock::Now;

const S: u64 = 1_000_000_000;

fn id(s: &str) -> KeyId {
    s.parse().unwrap()
}

fn m(v: u128) -> Money {
    Money(v * 100_000_000)
}

/// Checks and, when it passes, consumes: what `decide` does under the lock.
fn take(
    l: &Ledger,
    key: &KeyId,
    t: u64,
    day: i64,
    value: Money,
    rate: Option<u32>,
    daily: Option<Money>,
) -> Result<Consumption, LimitCheck> {
    l.with_key(key, |slot| match slot.check(t, day, value, rate, daily) {
        LimitCheck::Pass => Ok(slot.consume(t, 0, day, value)),
        other => Err(other),
    })
}

#[test]
fn the_rate_window_slides_over_60_seconds() {
    let l = Ledger::new();
    let k = id("bot");
    for i in 0..3 {
        assert!(take(&l, &k, 10 * S + i, 0, Money::ZERO, Some(3), None).is_ok());
    }
    assert_eq!(
        take(&l, &k, 69 * S, 0, Money::ZERO, Some(3), None).unwrap_err(),
        LimitCheck::Rate {
            in_window: 3,
            retry_after_ns: S, // until the first order, at 10 s, is 60 s old
        }
    );
    // 60 s after the first order its slot is free again, and only its slot.
    assert!(take(&l, &k, 70 * S, 0, Money::ZERO, Some(3), None).is_ok());
    assert!(take(&l, &k, 70 * S + 1, 0, Money::ZERO, Some(3), None).is_ok());
    assert!(take(&l, &k, 70 * S + 1, 0, Money::ZERO, Some(3), None).is_err());
}

#[test]
fn a_rate_of_zero_allows_nothing() {
    let l = Ledger::new();
    assert!(take(&l, &id("k"), S, 0, Money::ZERO, Some(0), None).is_err());
}

#[test]
fn a_rate_lowered_to_zero_says_waiting_does_not_help() {
    let l = Ledger::new();
    let k = id("k");
    assert!(take(&l, &k, S, 0, Money::ZERO, Some(5), None).is_ok());
    assert_eq!(
        take(&l, &k, 2 * S, 0, Money::ZERO, Some(0), None).unwrap_err(),
        LimitCheck::Rate {
            in_window: 1,
            retry_after_ns: 0,
        }
    );
}

#[test]
fn the_daily_cap_is_inclusive_and_never_passed_by_one_unit() {
    let l = Ledger::new();
    let k = id("bot");
    let cap = Some(m(500_000));
    assert!(take(&l, &k, S, 7, m(400_000), None, cap).is_ok());
    assert_eq!(
        take(&l, &k, 2 * S, 7, Money(m(100_000).0 + 1), None, cap).unwrap_err(),
        LimitCheck::Daily { used: m(400_000) }
    );
    assert!(take(&l, &k, 3 * S, 7, m(100_000), None, cap).is_ok());
    assert!(take(&l, &k, 4 * S, 7, Money(1), None, cap).is_err());
    assert!(take(&l, &k, 4 * S, 7, Money::ZERO, None, cap).is_ok());
}

#[test]
fn the_daily_total_resets_on_a_new_utc_day() {
    let l = Ledger::new();
    let k = id("bot");
    assert!(take(&l, &k, S, 7, m(500), None, Some(m(500))).is_ok());
    assert!(take(&l, &k, 2 * S, 7, m(1), None, Some(m(500))).is_err());
    assert!(take(&l, &k, 3 * S, 8, m(500), None, Some(m(500))).is_ok());
    assert_eq!(
        l.usage(&k, 3 * S, 8),
        (2, m(500)),
        "the refused order took no slot"
    );
}

#[test]
fn a_denied_check_consumes_nothing() {
    let l = Ledger::new();
    let k = id("bot");
    assert!(take(&l, &k, S, 0, m(10), Some(5), Some(m(5))).is_err());
    assert_eq!(l.usage(&k, S, 0), (0, Money::ZERO));
}

#[test]
fn release_refunds_the_daily_value_once_but_not_the_rate_slot() {
    let l = Ledger::new();
    let k = id("bot");
    let c = take(&l, &k, S, 3, m(100), Some(1), Some(m(100))).unwrap();
    let r = l.release(c.ticket, 2 * S, 3).unwrap();
    assert_eq!(r.refunded, m(100));
    assert_eq!(r.key_id, k);
    assert_eq!(l.usage(&k, 2 * S, 3), (1, Money::ZERO));
    assert_eq!(l.release(c.ticket, 3 * S, 3), Err(ReleaseError::AlreadyReleased));
    assert_eq!(l.release(c.ticket + 100, 3 * S, 3), Err(ReleaseError::Unknown));
    // The rate slot is still taken.
    assert!(take(&l, &k, 4 * S, 3, m(1), Some(1), Some(m(100))).is_err());
}

#[test]
fn release_is_refused_after_the_window() {
    let l = Ledger::new();
    let k = id("bot");
    let c = take(&l, &k, S, 3, m(100), None, None).unwrap();
    assert_eq!(
        l.release(c.ticket, S + RELEASE_WINDOW_NS, 3),
        Err(ReleaseError::Expired)
    );
    let c2 = take(&l, &k, S, 3, m(100), None, None).unwrap();
    assert!(l.release(c2.ticket, S + RELEASE_WINDOW_NS - 1, 3).is_ok());
}

#[test]
fn release_after_the_day_rolled_over_refunds_nothing() {
    let l = Ledger::new();
    let k = id("bot");
    let c = take(&l, &k, S, 3, m(100), None, None).unwrap();
    take(&l, &k, 2 * S, 4, m(7), None, None).unwrap();
    assert_eq!(l.release(c.ticket, 3 * S, 4).unwrap().refunded, Money::ZERO);
    assert_eq!(l.usage(&k, 3 * S, 4).1, m(7));
}

#[test]
fn a_release_just_after_utc_midnight_refunds_nothing_though_the_key_was_not_used_since() {
    let clock = |utc: &str, mono_ns: u64| Now::new(utc.parse().unwrap(), &TimeZone::UTC, mono_ns);
    let l = Ledger::new();
    let k = id("bot");
    let cap = Some(m(100));
    let first = clock("2026-12-06T23:59:54Z", 1_000 * S);
    let second = clock("2026-12-06T23:59:55Z", 1_001 * S);
    let a = take(&l, &k, first.mono_ns, first.day(), m(40), None, cap).unwrap();
    let b = take(&l, &k, second.mono_ns, second.day(), m(60), None, cap).unwrap();

    // Before midnight the day is not over: the value goes back.
    let late = clock("2026-12-06T23:59:59.999Z", 1_005 * S);
    assert_eq!(
        l.release(a.ticket, late.mono_ns, late.day()).unwrap().refunded,
        m(40)
    );

    // Just after it, with the key's counters not rolled over yet (nothing used the key
    // since): nothing goes back, whatever the counters still hold of yesterday.
    let after = clock("2026-12-07T00:00:00.6Z", 1_006 * S);
    let r = l.release(b.ticket, after.mono_ns, after.day()).unwrap();
    assert_eq!(r.refunded, Money::ZERO, "the order's UTC day is over");
    assert_eq!(r.day, second.day());
    assert_eq!(
        l.usage(&k, after.mono_ns, after.day()),
        (2, Money::ZERO),
        "today starts at zero; the rate slots stay"
    );
    assert!(
        take(&l, &k, after.mono_ns, after.day(), m(100), None, cap).is_ok(),
        "today's whole cap is there"
    );
}

#[test]
fn tickets_are_unique() {
    let l = Ledger::new();
    let a = take(&l, &id("a"), S, 0, m(1), None, None).unwrap();
    let b = take(&l, &id("b"), S, 0, m(1), None, None).unwrap();
    assert_ne!(a.ticket, b.ticket);
}

#[test]
fn restored_consumptions_count_toward_today_and_the_window() {
    let l = Ledger::new();
    let k = id("bot");
    let c = |number, mono_ns, day, v| Consumption {
        key_id: k.clone(),
        number,
        ticket: 0,
        mono_ns,
        unix_ns: 0,
        day,
        value: m(v),
    };
    l.restore_consumption(&c(5, 100 * S, 9, 40), 130 * S, 10);
    l.restore_consumption(&c(6, 120 * S, 10, 30), 130 * S, 10);
    l.restore_consumption(&c(7, 125 * S, 10, 20), 130 * S, 10);
    l.restore_release(7, 10);
    // Yesterday's value does not count; today's less the release does.
    assert_eq!(l.usage(&k, 130 * S, 10), (3, m(30)));
    let next = take(&l, &k, 131 * S, 10, m(1), None, None).unwrap();
    assert_eq!(next.number, 8, "new numbers follow restored ones");
}

#[test]
fn racing_threads_never_over_admit_one_key() {
    let l = Ledger::new();
    let k = id("bot");
    let admitted = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for i in 0..1000 {
                    if take(&l, &k, S + i, 0, m(1), Some(5), Some(m(1000))).is_ok() {
                        admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(admitted.into_inner(), 5);
}

proptest! {
    /// Whatever the sequence of orders, values and releases, the daily total never passes
    /// the cap, no 60 s window holds more than the rate allows, and the total equals the
    /// sum of what was admitted minus what was released.
    #[test]
    fn the_ledger_never_passes_its_limits(
        ops in proptest::collection::vec((0u64..5_000_000_000, 0u128..300, any::<bool>()), 1..200),
        rate in 1u32..6,
        cap in 1u128..1000,
    ) {
        let l = Ledger::new();
        let k = id("p");
        let mut t = 0u64;
        let mut admitted: Vec<(u64, Money, u64)> = Vec::new();
        let mut released = Money::ZERO;
        for (dt, v, release) in ops {
            t += dt;
            if release {
                if let Some((_, value, ticket)) = admitted.last() {
                    if l.release(*ticket, t, 0).is_ok() {
                        released = released.checked_add(*value).unwrap();
                    }
                }
                continue;
            }
            if let Ok(c) = take(&l, &k, t, 0, m(v), Some(rate), Some(m(cap))) {
                admitted.push((t, m(v), c.ticket));
            }
            let (in_window, used) = l.usage(&k, t, 0);
            prop_assert!(used <= m(cap));
            let total: u128 = admitted.iter().map(|a| a.1 .0).sum();
            prop_assert_eq!(used.0, total - released.0);
            let window = admitted.iter().filter(|a| t - a.0 < RATE_WINDOW_NS).count();
            prop_assert_eq!(in_window as usize, window);
            prop_assert!(window <= rate as usize);
        }
    }
}

#[test]
fn a_dump_restored_into_a_new_ledger_gives_the_same_limits() {
    let l = Ledger::new();
    let k = id("bot");
    let a = take(&l, &k, 100 * S, 10, m(40), Some(3), None).unwrap();
    take(&l, &k, 110 * S, 10, m(30), Some(3), None).unwrap();
    l.release(a.ticket, 111 * S, 10).unwrap();
    let dump = l.dump();
    let fresh = Ledger::new();
    fresh.restore_ticket_key(dump.ticket_key);
    for (key, day, used) in &dump.totals {
        fresh.restore_total(key, *day, *used, 120 * S, 10);
    }
    for (c, released) in &dump.recent {
        fresh.restore_recent(c, *released, 120 * S, 10);
    }
    assert_eq!(fresh.usage(&k, 120 * S, 10), l.usage(&k, 120 * S, 10));
    assert_eq!(
        fresh.release(a.ticket, 121 * S, 10),
        Err(ReleaseError::AlreadyReleased)
    );
    let next = take(&fresh, &k, 121 * S, 10, m(1), Some(3), None).unwrap();
    assert!(next.number > a.number + 1, "ticket numbers continue");
    assert!(
        take(&fresh, &k, 122 * S, 10, m(1), Some(3), None).is_err(),
        "the rate window came back"
    );
}

#[test]
fn memory_stays_bounded_at_any_order_rate() {
    let l = Ledger::new();
    let k = id("flood");
    let n = MAX_TICKETS as u64 + 5;
    for i in 0..n {
        take(&l, &k, S + i, 0, Money(1), None, None).unwrap();
    }
    let book = l.tickets.lock().unwrap();
    assert_eq!(book.ring.len(), MAX_TICKETS, "the oldest tickets are forgotten");
    drop(book);
    assert_eq!(
        l.release(l.public_ticket(1), S + n, 0),
        Err(ReleaseError::Unknown)
    );
    assert!(
        l.release(l.public_ticket(n), S + n, 0).is_ok(),
        "the newest ticket is kept"
    );
    assert_eq!(
        l.usage(&k, S + n, 0).0 as usize,
        UNLIMITED_WINDOW_CAP,
        "no rate limit: a bounded window"
    );
}

#[test]
fn a_rate_limited_key_keeps_its_whole_window() {
    let l = Ledger::new();
    let k = id("limited");
    for i in 0..(UNLIMITED_WINDOW_CAP as u64 + 10) {
        take(&l, &k, S + i, 0, Money(1), Some(u32::MAX), None).unwrap();
    }
    assert_eq!(l.usage(&k, 2 * S, 0).0 as usize, UNLIMITED_WINDOW_CAP + 10);
}

#[test]
fn a_request_stamped_before_midnight_that_arrives_after_one_stamped_after_never_wipes_the_new_day() {
    let l = Ledger::new();
    let k = id("bot");
    let cap = Some(m(1000));
    // Day 101 first, then a straggler stamped day 100, then day 101 again.
    let b = take(&l, &k, S, 101, m(600), None, cap).unwrap();
    let a = take(&l, &k, S + 1, 100, m(300), None, cap).unwrap();
    assert_eq!(a.day, 101, "counted against the newer day");
    assert_eq!(b.day, 101);
    assert!(
        take(&l, &k, S + 2, 101, m(600), None, cap).is_err(),
        "1500 would pass 1000"
    );
    assert_eq!(l.usage(&k, S + 3, 101).1, m(900));
}

#[test]
fn an_undone_consumption_leaves_no_trace() {
    let l = Ledger::new();
    let k = id("bot");
    let kept = take(&l, &k, 10 * S, 7, m(100), Some(2), Some(m(150))).unwrap();
    let undone = take(&l, &k, 11 * S, 7, m(50), Some(2), Some(m(150))).unwrap();
    assert!(take(&l, &k, 12 * S, 7, m(1), Some(2), Some(m(150))).is_err());
    l.undo_consumption(&undone);
    assert_eq!(l.usage(&k, 12 * S, 7), (1, m(100)), "slot and value are back");
    assert_eq!(l.release(undone.ticket, 12 * S, 7), Err(ReleaseError::Unknown));
    assert!(take(&l, &k, 12 * S, 7, m(50), Some(2), Some(m(150))).is_ok());
    assert!(
        l.release(kept.ticket, 13 * S, 7).is_ok(),
        "the other order is untouched"
    );
}

#[test]
fn an_undone_release_counts_again_and_can_be_released_once_more() {
    let l = Ledger::new();
    let k = id("bot");
    let c = take(&l, &k, 10 * S, 7, m(100), None, Some(m(150))).unwrap();
    let r = l.release(c.ticket, 11 * S, 7).unwrap();
    assert_eq!(l.usage(&k, 11 * S, 7).1, Money::ZERO);
    l.undo_release(&r);
    assert_eq!(l.usage(&k, 11 * S, 7).1, m(100));
    assert_eq!(l.release(c.ticket, 12 * S, 7).unwrap().refunded, m(100));
}

#[test]
fn a_ticket_does_not_reveal_its_neighbours() {
    let l = Ledger::new();
    let k = id("bot");
    let a = take(&l, &k, 10 * S, 7, m(1), None, None).unwrap();
    let b = take(&l, &k, 11 * S, 7, m(1), None, None).unwrap();
    assert_eq!(b.number, a.number + 1);
    for guess in [a.ticket + 1, a.ticket - 1, b.ticket + 1, a.number, b.number] {
        if guess != a.ticket && guess != b.ticket {
            assert_eq!(l.release(guess, 12 * S, 7), Err(ReleaseError::Unknown), "{guess}");
        }
    }
}

/// What a [`prop_ledger_op`] does.
#[derive(Debug, Clone)]
enum Op {
    /// An order of this many units after this many ns.
    Order(u64, u128),
    /// A release of the n-th admitted order (modulo), after this many ns.
    Release(u64, usize),
    /// A release of a ticket nobody was given.
    Guess(u64),
    /// The UTC day turns.
    Midnight,
}

fn prop_ledger_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u64..20_000_000_000, 0u128..300).prop_map(|(dt, v)| Op::Order(dt, v)),
        3 => (0u64..20_000_000_000, any::<usize>()).prop_map(|(dt, i)| Op::Release(dt, i)),
        1 => any::<u64>().prop_map(Op::Guess),
        1 => Just(Op::Midnight),
    ]
}

proptest! {
    /// Across UTC day rollovers and releases of any admitted ticket (or a guessed one), the
    /// day's total is exactly what was admitted that day less what was released that day,
    /// never above the cap; a ticket is released once, within its window, and refunds
    /// nothing once its day is over; guesses release nothing.
    #[test]
    fn days_roll_over_and_any_ticket_releases_exactly_once(
        ops in proptest::collection::vec(prop_ledger_op(), 1..250),
        rate in 1u32..6,
        cap in 1u128..1000,
    ) {
        struct Admitted { t: u64, value: Money, ticket: u64, day: i64, released: bool }
        let l = Ledger::new();
        let k = id("p");
        let (mut t, mut day) = (S, 100i64);
        let mut admitted: Vec<Admitted> = Vec::new();
        for op in ops {
            match op {
                Op::Midnight => {
                    day += 1;
                    // No usage read now (it would roll the counters over): what comes next
                    // meets counters still on the old day, as a release right after midnight
                    // does in the daemon when the key was not used since.
                    continue;
                }
                Op::Order(dt, v) => {
                    t += dt;
                    if let Ok(c) = take(&l, &k, t, day, m(v), Some(rate), Some(m(cap))) {
                        prop_assert_eq!(c.day, day);
                        admitted.push(Admitted { t, value: m(v), ticket: c.ticket, day, released: false });
                    }
                }
                Op::Release(dt, i) if !admitted.is_empty() => {
                    t += dt;
                    let n = admitted.len();
                    let a = &mut admitted[i % n];
                    let got = l.release(a.ticket, t, day);
                    // A ticket past its window may also be forgotten already (Unknown).
                    let past = t - a.t >= RELEASE_WINDOW_NS;
                    if a.released {
                        prop_assert!(
                            got == Err(ReleaseError::AlreadyReleased) || (past && got == Err(ReleaseError::Unknown)),
                            "{got:?}"
                        );
                    } else if past {
                        prop_assert!(
                            matches!(got, Err(ReleaseError::Expired | ReleaseError::Unknown)),
                            "{got:?}"
                        );
                    } else {
                        let r = got.unwrap();
                        let want = if a.day == day { a.value } else { Money::ZERO };
                        prop_assert_eq!(r.refunded, want);
                        a.released = true;
                    }
                }
                Op::Release(..) => {}
                Op::Guess(ticket) => {
                    if !admitted.iter().any(|a| a.ticket == ticket) {
                        prop_assert_eq!(l.release(ticket, t, day), Err(ReleaseError::Unknown));
                    }
                }
            }
            let (_, used) = l.usage(&k, t, day);
            let today: u128 = admitted
                .iter()
                .filter(|a| a.day == day && !a.released)
                .map(|a| a.value.0)
                .sum();
            prop_assert_eq!(used.0, today);
            prop_assert!(used <= m(cap));
        }
    }
}

#[test]
fn a_damaged_journal_with_huge_ticket_numbers_neither_overflows_nor_grows_the_ring() {
    let l = Ledger::new();
    let c = |number| Consumption {
        key_id: id("bot"),
        number,
        ticket: 0,
        mono_ns: 100 * S,
        unix_ns: 0,
        day: 7,
        value: m(1),
    };
    l.restore_consumption(&c(1), 110 * S, 7);
    l.restore_consumption(&c(1_000_000_000_000), 110 * S, 7);
    l.restore_consumption(&c(u64::MAX), 110 * S, 7);
    assert_eq!(l.usage(&id("bot"), 110 * S, 7).1, m(3), "every value counts");
    assert!(l.tickets.lock().unwrap().ring.len() <= MAX_TICKETS);
    let next = take(&l, &id("bot"), 111 * S, 7, m(1), None, None).unwrap();
    assert_eq!(
        next.number, 1_000_000_000_001,
        "numbers go on after the largest sane one"
    );
}
