use super::*;
use futu_auth_proto::key::{AccIds, Cap, DeviationPct, DuplicateWindow, Halt, HaltTarget, HaltedBy};
use futu_auth_proto::{Fingerprint, Iface, KeyRecord, Limits, Market, Token, TrdEnv, TrdSide};
use jiff::tz::TimeZone;
use jiff::Timestamp;

use futu_auth_keys::machine::fingerprint_of;
use futu_auth_keys::store::KeysFile;
use futu_auth_keys::token::digest;

const S: u64 = 1_000_000_000;
const RESEARCH: &str = "fc_00000000000000000000000000000001";
const BOT: &str = "fc_00000000000000000000000000000002";

fn host() -> Fingerprint {
    fingerprint_of("test-host")
}

/// 2026-04-20T10:00:00Z, a Monday; in UTC so local time equals UTC unless a test says so.
fn at(h: u32, m: u32) -> Now {
    let utc: Timestamp = format!("2026-04-20T{h:02}:{m:02}:00Z").parse().unwrap();
    Now::new(utc, &TimeZone::UTC, 1_000 * S)
}

fn record(id: &str, token: &str, scopes: &[Scope]) -> KeyRecord {
    KeyRecord {
        id: id.parse().unwrap(),
        hash: digest(&Token::new(token)),
        scopes: scopes.to_vec(),
        limits: Limits::default(),
        allowed_machines: None,
        created_at: "2026-04-15T10:00:00Z".parse().unwrap(),
        expires_at: None,
        note: None,
    }
}

/// Two keys: research (qot:read only) and a sim-bot with every limit set, as in README.md's
/// Quickstart.
fn example_keys() -> Vec<KeyRecord> {
    let mut bot = record(
        "sim-bot",
        BOT,
        &[Scope::QotRead, Scope::AccRead, Scope::TradeSimulate],
    );
    bot.limits = Limits {
        allowed_markets: Some(vec![Market::HK]),
        allowed_symbols: Some(vec!["HK.00700".parse().unwrap(), "HK.09988".parse().unwrap()]),
        allowed_trd_sides: Some(vec![TrdSide::SELL]),
        max_order_value: Some(Cap::try_from(100_000.0).unwrap()),
        max_daily_value: Some(Cap::try_from(500_000.0).unwrap()),
        max_orders_per_minute: Some(3),
        hours_window: Some("09:30-16:00".parse().unwrap()),
        ..Limits::default()
    };
    bot.allowed_machines = Some(vec![host()]);
    bot.expires_at = Some("2026-05-15T10:00:00Z".parse().unwrap());
    vec![record("research", RESEARCH, &[Scope::QotRead]), bot]
}

fn snapshot(keys: Vec<KeyRecord>) -> Snapshot {
    halted_snapshot(keys, vec![])
}

/// The keys with these halts of trading.
fn halted_snapshot(keys: Vec<KeyRecord>, halts: Vec<Halt>) -> Snapshot {
    let file = KeysFile {
        keys,
        halts,
        ..KeysFile::default()
    };
    Snapshot::compile(&file.keys, &file.rotations, &file.halts, Some(host()))
}

/// A halt of `target` by alice at 09:00 UTC, for `reason`.
fn halt(target: HaltTarget, reason: &str) -> Halt {
    Halt {
        target,
        reason: reason.parse().unwrap(),
        halted_by: HaltedBy::new(1000, Some("alice".into())),
        halted_at: "2026-04-20T09:00:00Z".parse().unwrap(),
    }
}

fn key_halt(id: &str, reason: &str) -> Halt {
    halt(HaltTarget::Key(id.parse().unwrap()), reason)
}

fn check(token: &str, endpoint: &str, order: Option<Order>) -> Check {
    Check {
        request_id: 1,
        token: Token::new(token),
        iface: Iface::Rest,
        endpoint: endpoint.into(),
        order,
        dry_run: false,
        acc_id: None,
        ref_price: None,
    }
}

const RISKY: &str = "fc_00000000000000000000000000000009";

/// A key with every pre-trade risk limit: account 7 only, a 5 % collar, one open order, a
/// position of 150 per symbol, a 2 s duplicate window.
fn risky() -> KeyRecord {
    let mut k = record(
        "risky",
        RISKY,
        &[Scope::TradeSimulate, Scope::AccRead, Scope::QotRead],
    );
    k.limits.allowed_acc_ids = Some(AccIds::try_from(vec![7]).unwrap());
    k.limits.max_price_deviation_pct = Some(DeviationPct::try_from(5.0).unwrap());
    k.limits.max_open_orders = Some(1);
    k.limits.max_position_value = Some(Cap::try_from(150.0).unwrap());
    k.limits.duplicate_window_ms = Some(DuplicateWindow::try_from(2000).unwrap());
    k
}

/// A check of `order` on account 7 by the risky key, with reference price `ref_price`.
fn risky_check(order: Order, ref_price: f64) -> Check {
    Check {
        acc_id: Some(7),
        ref_price: Some(ref_price),
        ..check(RISKY, "Trd_PlaceOrder", Some(order))
    }
}

fn sell(qty: f64, price: f64) -> Order {
    Order {
        env: TrdEnv::Simulate,
        market: Market::HK,
        symbol: "HK.00700".into(),
        side: TrdSide::SELL,
        qty,
        price: Some(price),
    }
}

fn reason(v: &Verdict) -> Option<Reason> {
    v.decision.reason()
}

/// Decides with the example keys at 10:00 UTC.
fn run(token: &str, endpoint: &str, order: Option<Order>) -> Verdict {
    decide(
        &snapshot(example_keys()),
        &Ledger::new(),
        &at(10, 0),
        &check(token, endpoint, order),
    )
}

#[test]
fn a_read_with_the_right_scope_is_allowed() {
    let v = run(RESEARCH, "Qot_GetBasicQot", None);
    assert_eq!(
        v.decision,
        Decision::Allow {
            key_id: "research".parse().unwrap(),
            scope: Some(Scope::QotRead),
            ticket: None
        }
    );
    assert!(v.consumption.is_none());
}

#[test]
fn an_unknown_token_is_unknown_key_without_a_key_id() {
    let v = run("fc_ffffffffffffffffffffffffffffffff", "Qot_GetBasicQot", None);
    assert_eq!(reason(&v), Some(Reason::UnknownKey));
    assert!(matches!(v.decision, Decision::Deny { key_id: None, .. }));
    let v = run("", "Qot_GetBasicQot", None);
    assert_eq!(reason(&v), Some(Reason::UnknownKey));
}

#[test]
fn no_detail_ever_holds_the_token() {
    for endpoint in ["Qot_GetBasicQot", "Trd_PlaceOrder", BOT, "Trd_GetFunds"] {
        for order in [None, Some(sell(1.0, 1.0)), Some(sell(-1.0, 1.0))] {
            let v = run(BOT, endpoint, order);
            if let Decision::Deny { detail, .. } = &v.decision {
                assert!(!detail.contains(&BOT[3..]), "{detail}");
            }
        }
    }
}

#[test]
fn expiry_is_refused_from_the_expiry_instant_on() {
    let s = snapshot(example_keys());
    let l = Ledger::new();
    let just_before = Now::new(
        "2026-05-15T09:59:59.999999999Z".parse().unwrap(),
        &TimeZone::UTC,
        S,
    );
    let at_expiry = Now::new("2026-05-15T10:00:00Z".parse().unwrap(), &TimeZone::UTC, S);
    let c = check(BOT, "Qot_GetBasicQot", None);
    assert!(decide(&s, &l, &just_before, &c).decision.is_allow());
    let v = decide(&s, &l, &at_expiry, &c);
    assert_eq!(reason(&v), Some(Reason::Expired));
    assert!(matches!(&v.decision, Decision::Deny { key_id: Some(k), .. } if k.as_str() == "sim-bot"));
}

#[test]
fn frozen_unbound_and_listed_machines_differ() {
    let mut keys = example_keys();
    let c = check(BOT, "Qot_GetBasicQot", None);
    let l = Ledger::new();
    // Listed: this host is in the list.
    assert!(decide(&snapshot(keys.clone()), &l, &at(10, 0), &c)
        .decision
        .is_allow());
    // Unbound.
    keys[1].allowed_machines = None;
    assert!(decide(&snapshot(keys.clone()), &l, &at(10, 0), &c)
        .decision
        .is_allow());
    // Frozen.
    keys[1].allowed_machines = Some(vec![]);
    assert_eq!(
        reason(&decide(&snapshot(keys.clone()), &l, &at(10, 0), &c)),
        Some(Reason::Frozen)
    );
    // A list without this host.
    keys[1].allowed_machines = Some(vec!["fp_bot_host_abc123".parse().unwrap()]);
    assert_eq!(
        reason(&decide(&snapshot(keys), &l, &at(10, 0), &c)),
        Some(Reason::Machine)
    );
}

#[test]
fn an_endpoint_outside_the_table_is_refused() {
    assert_eq!(
        reason(&run(RESEARCH, "Qot_GetEverything", None)),
        Some(Reason::UnknownEndpoint)
    );
    assert_eq!(
        reason(&run(RESEARCH, "9999", None)),
        Some(Reason::UnknownEndpoint)
    );
    assert_eq!(reason(&run(RESEARCH, "", None)), Some(Reason::UnknownEndpoint));
}

#[test]
fn scopes_follow_the_endpoint_table() {
    // research holds only qot:read.
    assert!(run(RESEARCH, "3004", None).decision.is_allow());
    assert!(
        run(RESEARCH, "InitConnect", None).decision.is_allow(),
        "1xxx needs no scope"
    );
    assert_eq!(reason(&run(RESEARCH, "Trd_GetFunds", None)), Some(Reason::Scope));
    assert_eq!(
        reason(&run(RESEARCH, "Trd_UnlockTrade", None)),
        Some(Reason::Scope)
    );
    let v = run(RESEARCH, "Trd_PlaceOrder", Some(sell(1.0, 1.0)));
    assert_eq!(reason(&v), Some(Reason::Scope));
    assert_eq!(v.scope, Some(Scope::TradeSimulate));
    // sim-bot holds acc:read and trade:simulate but not trade:real or trade:unlock.
    assert!(run(BOT, "Trd_GetFunds", None).decision.is_allow());
    assert_eq!(reason(&run(BOT, "2005", None)), Some(Reason::Scope));
    let mut real = sell(1.0, 1.0);
    real.env = TrdEnv::Real;
    assert_eq!(
        reason(&run(BOT, "Trd_PlaceOrder", Some(real))),
        Some(Reason::Scope)
    );
    assert!(run(BOT, "Trd_PlaceOrder", Some(sell(1.0, 1.0)))
        .decision
        .is_allow());
}

#[test]
fn unlock_needs_trade_unlock() {
    let keys = vec![record("unlocker", RESEARCH, &[Scope::TradeUnlock])];
    let v = decide(
        &snapshot(keys),
        &Ledger::new(),
        &at(10, 0),
        &check(RESEARCH, "Trd_UnlockTrade", None),
    );
    assert!(v.decision.is_allow());
    assert_eq!(v.scope, Some(Scope::TradeUnlock));
}

#[test]
fn an_order_attached_to_a_read_endpoint_is_bad_order_naming_the_endpoint() {
    for e in [
        "Qot_GetBasicQot",
        "3004",
        "Trd_GetFunds",
        "InitConnect",
        "Trd_UnlockTrade",
    ] {
        let v = run(BOT, e, Some(sell(1.0, 1.0)));
        assert_eq!(reason(&v), Some(Reason::BadOrder), "{e}: {v:?}");
        let Decision::Deny { detail, .. } = &v.decision else {
            unreachable!()
        };
        assert!(detail.contains(e), "{detail}");
        assert_eq!(v.consumption, None);
    }
}

#[test]
fn an_order_write_without_an_order_is_bad_order() {
    for e in ["Trd_PlaceOrder", "2202", "Trd_ModifyOrder", "2237"] {
        assert_eq!(reason(&run(BOT, e, None)), Some(Reason::BadOrder), "{e}");
    }
}

#[test]
fn hours_window_start_is_allowed_and_end_is_refused() {
    let s = snapshot(example_keys());
    let l = Ledger::new();
    let c = check(BOT, "Qot_GetBasicQot", None);
    assert_eq!(reason(&decide(&s, &l, &at(9, 29), &c)), Some(Reason::Hours));
    assert!(decide(&s, &l, &at(9, 30), &c).decision.is_allow());
    assert!(decide(&s, &l, &at(15, 59), &c).decision.is_allow());
    assert_eq!(reason(&decide(&s, &l, &at(16, 0), &c)), Some(Reason::Hours));
}

#[test]
fn hours_window_uses_the_host_time_zone() {
    let s = snapshot(example_keys());
    let l = Ledger::new();
    let c = check(BOT, "Qot_GetBasicQot", None);
    let hk = TimeZone::get("Asia/Hong_Kong").unwrap();
    // 02:00 UTC is 10:00 in Hong Kong: inside 09:30-16:00 there, outside in UTC.
    let utc: Timestamp = "2026-04-20T02:00:00Z".parse().unwrap();
    assert!(decide(&s, &l, &Now::new(utc, &hk, S), &c).decision.is_allow());
    assert_eq!(
        reason(&decide(&s, &l, &Now::new(utc, &TimeZone::UTC, S), &c)),
        Some(Reason::Hours)
    );
}

#[test]
fn a_cross_midnight_window_covers_late_evening_and_early_morning() {
    let mut keys = example_keys();
    keys[1].limits.hours_window = Some("22:00-04:00".parse().unwrap());
    keys[1].expires_at = None;
    let s = snapshot(keys);
    let l = Ledger::new();
    let c = check(BOT, "Qot_GetBasicQot", None);
    for (h, m, ok) in [
        (21, 59, false),
        (22, 0, true),
        (23, 59, true),
        (0, 0, true),
        (3, 59, true),
        (4, 0, false),
        (12, 0, false),
    ] {
        assert_eq!(
            decide(&s, &l, &at(h, m), &c).decision.is_allow(),
            ok,
            "{h:02}:{m:02}"
        );
    }
}

#[test]
fn hours_apply_to_every_request_of_the_key() {
    let s = snapshot(example_keys());
    let v = decide(&s, &Ledger::new(), &at(17, 0), &check(BOT, "InitConnect", None));
    assert_eq!(reason(&v), Some(Reason::Hours));
}

#[test]
fn malformed_orders_are_bad_order() {
    let mut no_price = sell(100.0, 1.0);
    no_price.price = None;
    let mut bad_symbol = sell(1.0, 1.0);
    bad_symbol.symbol = "00700".into();
    let mut foreign_symbol = sell(1.0, 1.0);
    foreign_symbol.symbol = "US.AAPL".into();
    for (o, why) in [
        (sell(0.0, 1.0), "qty 0"),
        (sell(-1.0, 1.0), "qty < 0"),
        (sell(f64::NAN, 1.0), "qty NaN"),
        (sell(f64::INFINITY, 1.0), "qty inf"),
        (sell(1.0, 0.0), "price 0"),
        (sell(1.0, -3.0), "price < 0"),
        (sell(1.0, f64::NAN), "price NaN"),
        (sell(1.0, f64::INFINITY), "price inf"),
        (no_price, "no price with value caps"),
        (bad_symbol, "symbol without market"),
        (foreign_symbol, "symbol of another market"),
    ] {
        assert_eq!(
            reason(&run(BOT, "Trd_PlaceOrder", Some(o))),
            Some(Reason::BadOrder),
            "{why}"
        );
    }
}

#[test]
fn an_order_without_a_price_passes_when_no_value_cap_is_set() {
    let mut keys = example_keys();
    keys[1].limits.max_order_value = None;
    keys[1].limits.max_daily_value = None;
    let mut o = sell(100.0, 1.0);
    o.price = None;
    let v = decide(
        &snapshot(keys),
        &Ledger::new(),
        &at(10, 0),
        &check(BOT, "Trd_PlaceOrder", Some(o)),
    );
    assert!(v.decision.is_allow());
    assert_eq!(v.value, None);
}

#[test]
fn whitelists_refuse_market_symbol_and_side() {
    let mut us = sell(1.0, 1.0);
    us.market = Market::US;
    us.symbol = "US.AAPL".into();
    assert_eq!(
        reason(&run(BOT, "Trd_PlaceOrder", Some(us))),
        Some(Reason::Market)
    );
    let mut other = sell(1.0, 1.0);
    other.symbol = "HK.00005".into();
    assert_eq!(
        reason(&run(BOT, "Trd_PlaceOrder", Some(other))),
        Some(Reason::Symbol)
    );
    let mut buy = sell(1.0, 1.0);
    buy.side = TrdSide::BUY;
    assert_eq!(reason(&run(BOT, "Trd_PlaceOrder", Some(buy))), Some(Reason::Side));
    let mut alibaba = sell(1.0, 1.0);
    alibaba.symbol = "HK.09988".into();
    assert!(run(BOT, "Trd_PlaceOrder", Some(alibaba)).decision.is_allow());
}

#[test]
fn the_order_value_cap_is_inclusive() {
    let v = run(BOT, "Trd_PlaceOrder", Some(sell(1000.0, 100.0)));
    assert!(v.decision.is_allow(), "exactly 100000");
    assert_eq!(v.value, Money::cap(100_000.0));
    let v = run(BOT, "Trd_PlaceOrder", Some(sell(1000.0, 100.00001)));
    assert_eq!(reason(&v), Some(Reason::OrderValue));
    assert_eq!(v.value, Money::order_value(1000.0, 100.00001));
}

#[test]
fn the_rate_limit_counts_allowed_orders_in_the_last_60_seconds() {
    let s = snapshot(example_keys());
    let l = Ledger::new();
    let c = check(BOT, "Trd_PlaceOrder", Some(sell(1.0, 1.0)));
    let t0 = at(10, 0);
    for i in 0..3 {
        let now = Now {
            mono_ns: t0.mono_ns + i,
            ..t0
        };
        assert!(decide(&s, &l, &now, &c).decision.is_allow());
    }
    let later = Now {
        mono_ns: t0.mono_ns + 60 * S - 1,
        ..t0
    };
    assert_eq!(reason(&decide(&s, &l, &later, &c)), Some(Reason::Rate));
    let after = Now {
        mono_ns: t0.mono_ns + 60 * S,
        ..t0
    };
    assert!(decide(&s, &l, &after, &c).decision.is_allow());
}

#[test]
fn reads_do_not_take_rate_slots() {
    let s = snapshot(example_keys());
    let l = Ledger::new();
    for _ in 0..10 {
        assert!(decide(&s, &l, &at(10, 0), &check(BOT, "Trd_GetOrderList", None))
            .decision
            .is_allow());
    }
    assert_eq!(
        l.usage(&"sim-bot".parse().unwrap(), at(10, 0).mono_ns, at(10, 0).day())
            .0,
        0
    );
}

#[test]
fn the_daily_cap_is_never_passed_and_resets_at_utc_midnight() {
    let mut keys = example_keys();
    keys[1].limits.max_orders_per_minute = None;
    keys[1].limits.hours_window = None;
    keys[1].limits.max_order_value = None;
    let s = snapshot(keys);
    let l = Ledger::new();
    let order = |qty, price| check(BOT, "Trd_PlaceOrder", Some(sell(qty, price)));
    let now = at(10, 0);
    for _ in 0..4 {
        assert!(decide(&s, &l, &now, &order(1000.0, 100.0)).decision.is_allow());
    }
    // 400000 used; 100000.01 more would pass 500000 by a cent.
    assert_eq!(
        reason(&decide(&s, &l, &now, &order(1.0, 100_000.01))),
        Some(Reason::DailyValue)
    );
    assert!(decide(&s, &l, &now, &order(1.0, 100_000.0)).decision.is_allow());
    assert_eq!(
        reason(&decide(&s, &l, &now, &order(1.0, 0.01))),
        Some(Reason::DailyValue)
    );
    // 23:59:59 UTC is still the same day; 00:00:00 the next is a new one.
    let last = Now::new(
        "2026-04-20T23:59:59Z".parse().unwrap(),
        &TimeZone::UTC,
        now.mono_ns + S,
    );
    assert_eq!(
        reason(&decide(&s, &l, &last, &order(1.0, 0.01))),
        Some(Reason::DailyValue)
    );
    let next = Now::new(
        "2026-04-21T00:00:00Z".parse().unwrap(),
        &TimeZone::UTC,
        now.mono_ns + 2 * S,
    );
    assert!(decide(&s, &l, &next, &order(1.0, 0.01)).decision.is_allow());
}

#[test]
fn a_dry_run_consumes_nothing() {
    let s = snapshot(example_keys());
    let l = Ledger::new();
    let mut c = check(BOT, "Trd_PlaceOrder", Some(sell(1000.0, 100.0)));
    c.dry_run = true;
    for _ in 0..10 {
        let v = decide(&s, &l, &at(10, 0), &c);
        assert!(v.decision.is_allow());
        assert!(v.consumption.is_none());
        assert!(matches!(v.decision, Decision::Allow { ticket: None, .. }));
    }
    assert_eq!(
        l.usage(&"sim-bot".parse().unwrap(), at(10, 0).mono_ns, at(10, 0).day()),
        (0, Money::ZERO)
    );
}

#[test]
fn an_allowed_order_carries_a_ticket_and_its_consumption() {
    let s = snapshot(example_keys());
    let l = Ledger::new();
    let v = decide(
        &s,
        &l,
        &at(10, 0),
        &check(BOT, "Trd_PlaceOrder", Some(sell(10.0, 388.2))),
    );
    let c = v.consumption.expect("consumed");
    assert_eq!(c.value.to_string(), "3882");
    assert_eq!(c.day, at(10, 0).day());
    assert!(matches!(v.decision, Decision::Allow { ticket: Some(t), .. } if t == c.ticket));
    assert_eq!(
        l.release(c.ticket, at(10, 0).mono_ns, at(10, 0).day())
            .unwrap()
            .refunded,
        c.value
    );
}

#[test]
fn a_new_snapshot_keeps_counters_and_drops_revoked_keys() {
    let l = Ledger::new();
    let c = check(BOT, "Trd_PlaceOrder", Some(sell(1.0, 1.0)));
    let first = snapshot(example_keys());
    for _ in 0..3 {
        assert!(decide(&first, &l, &at(10, 0), &c).decision.is_allow());
    }
    let reloaded = snapshot(example_keys());
    assert_eq!(
        reason(&decide(&reloaded, &l, &at(10, 0), &c)),
        Some(Reason::Rate),
        "counters survive a reload"
    );
    let revoked = snapshot(
        example_keys()
            .into_iter()
            .filter(|k| k.id.as_str() != "sim-bot")
            .collect(),
    );
    assert_eq!(
        reason(&decide(
            &revoked,
            &l,
            &at(10, 0),
            &check(BOT, "Qot_GetBasicQot", None)
        )),
        Some(Reason::UnknownKey)
    );
}

#[test]
fn racing_threads_never_over_admit_through_decide() {
    let mut keys = example_keys();
    keys[1].limits.max_orders_per_minute = Some(5);
    let s = snapshot(keys);
    let l = Ledger::new();
    let admitted = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                let c = check(BOT, "Trd_PlaceOrder", Some(sell(1.0, 1.0)));
                for _ in 0..500 {
                    if decide(&s, &l, &at(10, 0), &c).decision.is_allow() {
                        admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(admitted.into_inner(), 5, "exactly max_orders_per_minute admitted");
}

#[test]
fn racing_threads_never_pass_the_daily_cap() {
    let mut keys = example_keys();
    keys[1].limits.max_orders_per_minute = None;
    keys[1].limits.max_daily_value = Some(Cap::try_from(1000.0).unwrap());
    let s = snapshot(keys);
    let l = Ledger::new();
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                let c = check(BOT, "Trd_PlaceOrder", Some(sell(3.0, 0.1)));
                for _ in 0..2000 {
                    decide(&s, &l, &at(10, 0), &c);
                }
            });
        }
    });
    let (orders, used) = l.usage(&"sim-bot".parse().unwrap(), at(10, 0).mono_ns, at(10, 0).day());
    // 0.3 a time: 3333 orders make 999.9, and one more would make 1000.2.
    assert_eq!(used.to_string(), "999.9");
    assert_eq!(orders, 3333);
}

#[test]
fn check_scope_filters_pushes_by_scope() {
    let s = snapshot(example_keys());
    let req = |token: &str, scope| CheckScope {
        request_id: 9,
        token: Token::new(token),
        iface: Iface::Ws,
        scope,
    };
    assert!(decide_scope(&s, &at(10, 0), &req(RESEARCH, Scope::QotRead))
        .decision
        .is_allow());
    let v = decide_scope(&s, &at(10, 0), &req(RESEARCH, Scope::TradeSimulate));
    assert_eq!(reason(&v), Some(Reason::Scope));
    assert_eq!(v.scope, Some(Scope::TradeSimulate));
    assert_eq!(
        reason(&decide_scope(&s, &at(17, 0), &req(BOT, Scope::QotRead))),
        Some(Reason::Hours)
    );
    assert_eq!(
        reason(&decide_scope(&s, &at(10, 0), &req("fc_x", Scope::QotRead))),
        Some(Reason::UnknownKey)
    );
}

/// A check that draws `reason` from the rules, or `None` for the reasons only the server
/// gives. The match is exhaustive: a new reason does not compile until it has a case here.
fn scenario(reason: Reason) -> Option<Verdict> {
    const OLD: &str = "fc_00000000000000000000000000000003";
    const ICE: &str = "fc_00000000000000000000000000000004";
    const FAR: &str = "fc_00000000000000000000000000000005";
    const THRIFTY: &str = "fc_00000000000000000000000000000006";
    const HASTY: &str = "fc_00000000000000000000000000000007";
    const STOPPED: &str = "fc_00000000000000000000000000000008";
    let mut keys = example_keys();
    let mut old = record("old", OLD, &[Scope::QotRead]);
    old.expires_at = Some("2026-01-01T00:00:00Z".parse().unwrap());
    let mut ice = record("ice", ICE, &[Scope::QotRead]);
    ice.allowed_machines = Some(vec![]);
    let mut far = record("far", FAR, &[Scope::QotRead]);
    far.allowed_machines = Some(vec![fingerprint_of("another-host")]);
    let mut thrifty = record("thrifty", THRIFTY, &[Scope::TradeSimulate]);
    thrifty.limits.max_daily_value = Some(Cap::try_from(1.0).unwrap());
    let mut hasty = record("hasty", HASTY, &[Scope::TradeSimulate]);
    hasty.limits.max_orders_per_minute = Some(0);
    let stopped = record("stopped", STOPPED, &[Scope::TradeSimulate]);
    keys.extend([old, ice, far, thrifty, hasty, stopped, risky()]);
    let s = halted_snapshot(keys, vec![key_halt("stopped", "fat finger")]);
    let ledger = Ledger::new();
    let run_at = |now: Now, token: &str, endpoint: &str, order: Option<Order>| {
        decide(&s, &ledger, &now, &check(token, endpoint, order))
    };
    let run = |token: &str, endpoint: &str, order: Option<Order>| run_at(at(10, 0), token, endpoint, order);
    let with = |f: fn(&mut Order)| {
        let mut o = sell(1.0, 1.0);
        f(&mut o);
        Some(o)
    };
    Some(match reason {
        Reason::UnknownKey => run("fc_nope", "Qot_GetBasicQot", None),
        Reason::Expired => run(OLD, "Qot_GetBasicQot", None),
        Reason::Frozen => run(ICE, "Qot_GetBasicQot", None),
        Reason::Machine => run(FAR, "Qot_GetBasicQot", None),
        Reason::Scope => run(RESEARCH, "Trd_GetFunds", None),
        Reason::UnknownEndpoint => run(BOT, "Qot_Nope", None),
        Reason::Market => run(
            BOT,
            "Trd_PlaceOrder",
            with(|o| {
                o.market = Market::US;
                o.symbol = "US.AAPL".into();
            }),
        ),
        Reason::Symbol => run(BOT, "Trd_PlaceOrder", with(|o| o.symbol = "HK.00005".into())),
        Reason::Side => run(BOT, "Trd_PlaceOrder", with(|o| o.side = TrdSide::BUY)),
        Reason::Hours => run_at(at(17, 0), BOT, "Qot_GetBasicQot", None),
        Reason::OrderValue => run(BOT, "Trd_PlaceOrder", Some(sell(1000.0, 1000.0))),
        Reason::DailyValue => run(THRIFTY, "Trd_PlaceOrder", Some(sell(2.0, 1.0))),
        Reason::Rate => run(HASTY, "Trd_PlaceOrder", Some(sell(1.0, 1.0))),
        Reason::BadOrder => run(BOT, "Trd_PlaceOrder", None),
        Reason::Halted => run(STOPPED, "Trd_PlaceOrder", Some(sell(1.0, 1.0))),
        Reason::Account => run(RISKY, "Trd_GetFunds", None),
        Reason::PriceCollar => decide(&s, &ledger, &at(10, 0), &risky_check(sell(1.0, 1.0), 2.0)),
        Reason::Duplicate => {
            let c = risky_check(sell(1.0, 1.0), 1.0);
            assert!(decide(&s, &ledger, &at(10, 0), &c).decision.is_allow());
            decide(&s, &ledger, &at(10, 0), &c)
        }
        Reason::OpenOrders => {
            assert!(decide(&s, &ledger, &at(10, 0), &risky_check(sell(1.0, 1.0), 1.0))
                .decision
                .is_allow());
            decide(&s, &ledger, &at(10, 0), &risky_check(sell(2.0, 1.0), 1.0))
        }
        Reason::Position => decide(&s, &ledger, &at(10, 0), &risky_check(sell(200.0, 1.0), 1.0)),
        Reason::Forbidden | Reason::Internal => return None,
    })
}

#[test]
fn every_reason_but_forbidden_and_internal_comes_from_decide() {
    for r in Reason::ALL {
        match scenario(r) {
            Some(v) => assert_eq!(reason(&v), Some(r), "{r}: {v:?}"),
            // The server's own: a peer that is not an administrator, a failure.
            None => assert!(matches!(r, Reason::Forbidden | Reason::Internal), "{r}"),
        }
    }
}

#[test]
fn a_token_after_a_long_endpoint_prefix_is_redacted_before_it_is_cut() {
    let endpoint = format!("{}{BOT}", "x".repeat(40));
    let v = run(RESEARCH, &endpoint, None);
    let Decision::Deny { detail, .. } = &v.decision else {
        panic!("denied")
    };
    assert!(!detail.contains(&BOT[3..20]), "{detail}");
}

#[test]
fn a_cap_too_small_to_hold_is_refused_never_unlimited() {
    // Finer than 10⁻⁸ is refused where the cap is read, not rounded to 0 or to no cap.
    let e = Cap::try_from(1e-63).unwrap_err();
    assert!(e.to_string().contains("more than 8 decimal places"), "{e}");
    // The smallest cap there is, one unit, still denies an order worth more.
    let mut keys = example_keys();
    keys[1].limits.max_order_value = Some(Cap::try_from(0.00000001).unwrap());
    let v = decide(
        &snapshot(keys),
        &Ledger::new(),
        &at(10, 0),
        &check(BOT, "Trd_PlaceOrder", Some(sell(1.0, 1.0))),
    );
    assert_eq!(reason(&v), Some(Reason::OrderValue));
}

#[test]
fn a_negative_zero_cap_in_keys_json_is_zero_and_denies_an_order_of_2000() {
    let text = format!(
        r#"{{"version": 1, "keys": [
  {{"id": "nz-order", "hash": "{}", "scopes": ["trade:simulate"],
    "limits": {{"max_order_value": -0}}, "created_at": "2026-04-15T10:00:00Z"}},
  {{"id": "nz-daily", "hash": "{}", "scopes": ["trade:simulate"],
    "limits": {{"max_daily_value": -0.0}}, "created_at": "2026-04-15T10:00:00Z"}}
]}}"#,
        digest(&Token::new(RESEARCH)).to_hex(),
        digest(&Token::new(BOT)).to_hex()
    );
    let file = KeysFile::parse(&text, std::path::Path::new("keys.json")).unwrap();
    let s = Snapshot::compile(&file.keys, &file.rotations, &file.halts, Some(host()));
    let cases = [
        (RESEARCH, Reason::OrderValue, "max_order_value 0"),
        (BOT, Reason::DailyValue, "max_daily_value 0"),
    ];
    for (token, want, cap) in cases {
        let v = decide(
            &s,
            &Ledger::new(),
            &at(10, 0),
            &check(token, "Trd_PlaceOrder", Some(sell(1.0, 2000.0))),
        );
        assert_eq!(reason(&v), Some(want));
        let Decision::Deny { detail, .. } = &v.decision else {
            panic!("denied")
        };
        assert!(detail.ends_with(cap), "{detail}");
    }
}

#[test]
fn an_order_value_too_large_to_count_is_bad_order_saying_so() {
    let mut keys = example_keys();
    keys[1].limits.max_order_value = None;
    keys[1].limits.max_daily_value = None;
    let v = decide(
        &snapshot(keys),
        &Ledger::new(),
        &at(10, 0),
        &check(BOT, "Trd_PlaceOrder", Some(sell(1e300, 1e10))),
    );
    assert_eq!(reason(&v), Some(Reason::BadOrder));
    let Decision::Deny { detail, .. } = &v.decision else {
        panic!("denied")
    };
    assert_eq!(
        detail,
        "order value 1e300 × 10000000000 is above 100000000000000000000, the largest amount futu-authd counts"
    );
}

/// An independent oracle for exact caps: a non-negative decimal `digits × 10^exp`, read
/// from Rust's plain `{}` text of an `f64` (no exponent, shortest round-trip digits),
/// with no leading or trailing zero digits (zero has none at all).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dec {
    digits: Vec<u8>,
    exp: i64,
}

impl Dec {
    /// `None` for a negative number (`-0` is zero).
    fn of(v: f64) -> Option<Dec> {
        assert!(v.is_finite());
        let text = format!("{v}");
        let (negative, text) = match text.strip_prefix('-') {
            Some(t) => (true, t.to_owned()),
            None => (false, text),
        };
        let d = Dec::parse(&text);
        (d.digits.is_empty() || !negative).then_some(d)
    }

    /// Plain decimal text: digits and at most one point.
    fn parse(text: &str) -> Dec {
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|c| c - b'0').collect();
        let mut exp = -(frac.len() as i64);
        let leading = digits.iter().take_while(|d| **d == 0).count();
        digits.drain(..leading);
        while digits.last() == Some(&0) {
            digits.pop();
            exp += 1;
        }
        if digits.is_empty() {
            exp = 0;
        }
        Dec { digits, exp }
    }

    fn decimal_places(&self) -> i64 {
        (-self.exp).max(0)
    }

    fn times(&self, other: &Dec) -> Dec {
        if self.digits.is_empty() || other.digits.is_empty() {
            return Dec::parse("0");
        }
        // Schoolbook, least significant digit first.
        let (a, b): (Vec<u32>, Vec<u32>) = (
            self.digits.iter().rev().map(|d| u32::from(*d)).collect(),
            other.digits.iter().rev().map(|d| u32::from(*d)).collect(),
        );
        let mut acc = vec![0u32; a.len() + b.len()];
        for (i, x) in a.iter().enumerate() {
            for (j, y) in b.iter().enumerate() {
                acc[i + j] += x * y;
            }
        }
        let mut carry = 0;
        for d in acc.iter_mut() {
            let t = *d + carry;
            *d = t % 10;
            carry = t / 10;
        }
        assert_eq!(carry, 0);
        let text: String = acc.iter().rev().map(|d| char::from(b'0' + *d as u8)).collect();
        let mut product = Dec::parse(&text);
        if !product.digits.is_empty() {
            product.exp += self.exp + other.exp;
        }
        product
    }
}

impl PartialOrd for Dec {
    fn partial_cmp(&self, other: &Dec) -> Option<std::cmp::Ordering> {
        use std::cmp::Ordering;
        let order = match (self.digits.is_empty(), other.digits.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => {
                // The place of the leading digit first, then digit by digit.
                let top = |d: &Dec| d.digits.len() as i64 + d.exp;
                top(self).cmp(&top(other)).then_with(|| {
                    let n = self.digits.len().max(other.digits.len());
                    let at = |d: &Dec, i: usize| d.digits.get(i).copied().unwrap_or(0);
                    (0..n)
                        .map(|i| at(self, i).cmp(&at(other, i)))
                        .find(|o| o.is_ne())
                        .unwrap_or(Ordering::Equal)
                })
            }
        };
        Some(order)
    }
}

/// What the cap rule says about `v`: the exact cap, or the words its refusal must hold.
fn oracle_cap(v: f64) -> Result<Dec, &'static str> {
    if !v.is_finite() {
        return Err("is not a finite number");
    }
    let d = Dec::of(v).ok_or("is negative")?;
    if d.decimal_places() > 8 {
        Err("has more than 8 decimal places; amounts are counted to 0.00000001")
    } else if d > Dec::parse("100000000000000000000") {
        Err("the largest amount futu-authd counts")
    } else {
        Ok(d)
    }
}

/// The f64 nearest to decimal text such as `123e-9`.
fn float(text: String) -> f64 {
    text.parse().unwrap()
}

fn next_up(v: f64) -> f64 {
    f64::from_bits(v.to_bits() + 1)
}

fn next_down(v: f64) -> f64 {
    f64::from_bits(v.to_bits() - 1)
}

/// Numbers around every edge of the cap rule, positive unless `signed`.
fn edgy_numbers(signed: bool) -> impl proptest::strategy::Strategy<Value = f64> {
    use proptest::prelude::*;
    let specials = vec![
        0.0,
        -0.0,
        5e-324,
        f64::MIN_POSITIVE,
        1e-9,
        0.00000001,
        0.1,
        0.3,
        2000.0,
        1999.99999999,
        2530.0,
        9007199254740992.0,
        9007199254740993.0,
        1e20,
        next_up(1e20),
        next_down(1e20),
        1e300,
        f64::MAX,
    ];
    let any_bits = any::<u64>().prop_map(f64::from_bits).prop_map(move |v| {
        if signed || (v.is_finite() && v > 0.0) {
            v
        } else {
            1.5
        }
    });
    prop_oneof![
        proptest::sample::select(specials),
        (1u64..(1 << 52)).prop_map(f64::from_bits),
        (0u64..10_000_000_000).prop_map(|n| float(format!("{n}e-9"))),
        (0u64..10_000_000_000).prop_map(|n| float(format!("{n}e-8"))),
        (0u64..1_000_000_000_000, 0u32..12).prop_map(|(m, k)| float(format!("{m}e-{k}"))),
        ((1u64 << 53)..u64::MAX).prop_map(|n| n as f64),
        (1u64..1_000_000, 10i32..26).prop_map(|(m, k)| float(format!("{m}e{k}"))),
        any_bits,
    ]
    .prop_map(move |v| if signed || v > 0.0 { v } else { 1.0 })
}

/// The decision for one order on a key with `cap` as its only limit, daily or per order,
/// and an empty ledger.
fn decide_with_cap(cap: Cap, daily: bool, qty: f64, price: f64) -> Verdict {
    let mut key = record("capped", BOT, &[Scope::TradeSimulate]);
    if daily {
        key.limits.max_daily_value = Some(cap);
    } else {
        key.limits.max_order_value = Some(cap);
    }
    decide(
        &snapshot(vec![key]),
        &Ledger::new(),
        &at(10, 0),
        &check(BOT, "Trd_PlaceOrder", Some(sell(qty, price))),
    )
}

/// Checks the cap rule for `v` against the oracle and, when `v` is a cap, the decision for
/// each order `(qty, price)` on a key with that cap per order, then per day.
fn check_cap_against_the_oracle(
    v: f64,
    orders: &[(f64, f64)],
) -> Result<(), proptest::test_runner::TestCaseError> {
    match (Cap::try_from(v), oracle_cap(v)) {
        (Err(e), Err(words)) => {
            proptest::prop_assert!(e.to_string().contains(words), "{:e}: {}", v, e);
        }
        (Ok(cap), Ok(exact)) => {
            // Never a different cap: the same number (with -0 made 0), the same decimal.
            proptest::prop_assert_eq!(cap.get().to_bits(), (v + 0.0).to_bits());
            proptest::prop_assert_eq!(Dec::parse(&cap.money().to_string()), exact.clone());
            let max = Dec::parse("100000000000000000000");
            for &(q, p) in orders {
                let value = Dec::of(q).unwrap().times(&Dec::of(p).unwrap());
                for daily in [false, true] {
                    let verdict = decide_with_cap(cap, daily, q, p);
                    let want = if value <= exact {
                        None
                    } else if value > max {
                        Some(Reason::BadOrder)
                    } else if daily {
                        Some(Reason::DailyValue)
                    } else {
                        Some(Reason::OrderValue)
                    };
                    proptest::prop_assert_eq!(
                        reason(&verdict),
                        want,
                        "cap {:e}, {:e} × {:e}, daily {}: {:?}",
                        v,
                        q,
                        p,
                        daily,
                        verdict.decision
                    );
                }
            }
        }
        (got, want) => proptest::prop_assert!(false, "{:e}: got {:?}, want {:?}", v, got, want),
    }
    Ok(())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// For every number, either a clear refusal, or a cap that is exactly that decimal and
    /// allows an order exactly when its value is at most the cap, per order and per day.
    #[test]
    fn a_cap_is_refused_or_allows_exactly_the_orders_whose_value_is_at_most_it(
        v in edgy_numbers(true),
        qty in edgy_numbers(false),
        price in edgy_numbers(false),
    ) {
        check_cap_against_the_oracle(v, &[(1.0, price), (qty, price)])?;
    }

    /// The same, for orders whose value is within a few 10⁻⁹⁺ᵏ of an on-grid cap: where
    /// rounding the value the wrong way, or the cap at all, would change the decision.
    #[test]
    fn orders_a_hair_either_side_of_a_cap_are_decided_by_their_exact_value(
        units in 0u64..10_000_000_000_000,
        finer in 1u32..5,
        hair in -30i64..=30,
        qty in 1u64..1000,
    ) {
        let v = float(format!("{units}e-8"));
        let scale = 10i128.pow(finer);
        let at_cap = i128::from(units) * scale;
        let single = float(format!("{}e-{}", (at_cap + i128::from(hair)).max(1), 8 + finer));
        let share = (at_cap + i128::from(qty) - 1) / i128::from(qty) + i128::from(hair);
        let split = float(format!("{}e-{}", share.max(1), 8 + finer));
        check_cap_against_the_oracle(v, &[(1.0, single), (qty as f64, split)])?;
    }
}

#[test]
fn the_cap_oracle_compares_decimals_exactly() {
    let d = |s: &str| Dec::parse(s);
    assert!(d("0.3") < d("0.30000001"));
    assert!(d("100000000000000000000") < d("100000000000000000000.00000001"));
    assert!(d("2000") > d("1999.99999999"));
    assert_eq!(
        d("000120.500"),
        Dec {
            digits: vec![1, 2, 0, 5],
            exp: -1
        }
    );
    assert_eq!(d("0.1").times(&d("0.2")), d("0.02"));
    assert_eq!(d("3").times(&d("0.333333333")), d("0.999999999"));
    assert_eq!(Dec::of(-0.0), Some(d("0")));
    assert_eq!(Dec::of(-1.0), None);
    assert_eq!(
        Dec::of(1e300).unwrap(),
        Dec {
            digits: vec![1],
            exp: 300
        }
    );
    assert_eq!(Dec::of(5e-324).unwrap().decimal_places(), 324);
}

// ---- what a deny by a limit tells the client (protocol version 2) -----------------------

/// The `retry_after_ms` and `limit` of a deny.
fn retry_and_limit(v: &Verdict) -> (Option<u64>, Option<LimitFigures>) {
    match &v.decision {
        Decision::Deny {
            retry_after_ms,
            limit,
            ..
        } => (*retry_after_ms, limit.clone()),
        allow => panic!("expected a deny, got {allow:?}"),
    }
}

#[test]
fn a_rate_deny_says_when_the_oldest_counted_order_leaves_the_window() {
    let s = snapshot(example_keys());
    let l = Ledger::new();
    let c = check(BOT, "Trd_PlaceOrder", Some(sell(1.0, 1.0)));
    let t0 = at(10, 0);
    let after = |ns| Now {
        mono_ns: t0.mono_ns + ns,
        ..t0
    };
    // max_orders_per_minute 3: orders at 0 s, 10 s and 20 s.
    for i in 0..3 {
        assert!(decide(&s, &l, &after(i * 10 * S), &c).decision.is_allow());
    }
    let v = decide(&s, &l, &after(30 * S), &c);
    assert_eq!(reason(&v), Some(Reason::Rate));
    let figures = LimitFigures::Rate {
        orders_in_window: 3,
        max_orders_per_minute: 3,
    };
    // The order at 0 s leaves the window at 60 s.
    assert_eq!(retry_and_limit(&v), (Some(30_000), Some(figures.clone())));
    // Rounded up to the millisecond: asking again after it is never early.
    let v = decide(&s, &l, &after(30 * S + 400_000), &c);
    assert_eq!(retry_and_limit(&v), (Some(30_000), Some(figures)));
    let v = decide(&s, &l, &after(59 * S + 999_999_999), &c);
    assert_eq!(retry_and_limit(&v).0, Some(1));
    // And then it is so.
    assert!(decide(&s, &l, &after(60 * S), &c).decision.is_allow());
}

#[test]
fn a_rate_of_zero_has_figures_and_no_retry() {
    let mut keys = example_keys();
    keys[1].limits.max_orders_per_minute = Some(0);
    let v = decide(
        &snapshot(keys),
        &Ledger::new(),
        &at(10, 0),
        &check(BOT, "Trd_PlaceOrder", Some(sell(1.0, 1.0))),
    );
    assert_eq!(reason(&v), Some(Reason::Rate));
    assert_eq!(
        retry_and_limit(&v),
        (
            None,
            Some(LimitFigures::Rate {
                orders_in_window: 0,
                max_orders_per_minute: 0
            })
        )
    );
}

#[test]
fn a_daily_value_deny_says_how_long_until_the_next_utc_midnight() {
    let mut keys = example_keys();
    keys[1].limits.max_orders_per_minute = None;
    keys[1].limits.hours_window = None;
    keys[1].limits.max_order_value = None;
    let s = snapshot(keys);
    let l = Ledger::new();
    let order = |qty, price| check(BOT, "Trd_PlaceOrder", Some(sell(qty, price)));
    assert!(decide(&s, &l, &at(10, 0), &order(1000.0, 400.0))
        .decision
        .is_allow());
    let late = Now::new(
        "2026-04-20T23:59:30Z".parse().unwrap(),
        &TimeZone::UTC,
        at(10, 0).mono_ns + S,
    );
    let v = decide(&s, &l, &late, &order(1.0, 100_000.01));
    assert_eq!(reason(&v), Some(Reason::DailyValue));
    assert_eq!(
        retry_and_limit(&v),
        (
            Some(30_000),
            Some(LimitFigures::DailyValue {
                used: 400_000.0,
                order_value: 100_000.01,
                max_daily_value: 500_000.0,
            })
        )
    );
    // In a time zone far from UTC it is still UTC midnight: the day the totals count.
    let hk = TimeZone::get("Asia/Hong_Kong").unwrap();
    let morning = Now::new("2026-04-20T23:00:00Z".parse().unwrap(), &hk, late.mono_ns);
    let v = decide(&s, &l, &morning, &order(1.0, 100_000.01));
    assert_eq!(retry_and_limit(&v).0, Some(3_600_000));
}

#[test]
fn an_order_above_the_daily_cap_on_its_own_has_no_retry() {
    let mut keys = example_keys();
    keys[1].limits.max_order_value = None;
    let v = decide(
        &snapshot(keys),
        &Ledger::new(),
        &at(10, 0),
        &check(BOT, "Trd_PlaceOrder", Some(sell(1000.0, 600.0))),
    );
    assert_eq!(reason(&v), Some(Reason::DailyValue));
    assert_eq!(
        retry_and_limit(&v),
        (
            None,
            Some(LimitFigures::DailyValue {
                used: 0.0,
                order_value: 600_000.0,
                max_daily_value: 500_000.0,
            })
        )
    );
}

#[test]
fn an_order_value_deny_has_the_value_and_the_cap_and_no_retry() {
    let v = run(BOT, "Trd_PlaceOrder", Some(sell(1000.0, 120.5)));
    assert_eq!(reason(&v), Some(Reason::OrderValue));
    assert_eq!(
        retry_and_limit(&v),
        (
            None,
            Some(LimitFigures::OrderValue {
                order_value: 120_500.0,
                max_order_value: 100_000.0,
            })
        )
    );
}

#[test]
fn an_hours_deny_says_when_the_window_opens_next_in_local_time() {
    let s = snapshot(example_keys());
    let l = Ledger::new();
    let c = check(BOT, "Qot_GetBasicQot", None);
    let nine_thirty: HoursWindow = "09:30-16:00".parse().unwrap();
    let hours = |local_time: &str| LimitFigures::Hours {
        local_time: local_time.into(),
        hours_window: nine_thirty,
    };
    // 09:30-16:00 at 08:00: an hour and a half.
    let v = decide(&s, &l, &at(8, 0), &c);
    assert_eq!(retry_and_limit(&v), (Some(5_400_000), Some(hours("08:00"))));
    // At 16:00, the end: 09:30 tomorrow, 17 h 30 min on.
    let v = decide(&s, &l, &at(16, 0), &c);
    assert_eq!(retry_and_limit(&v), (Some(63_000_000), Some(hours("16:00"))));
    // 09:29:59.75: a quarter of a second.
    let almost = Now::new("2026-04-20T09:29:59.75Z".parse().unwrap(), &TimeZone::UTC, S);
    assert_eq!(retry_and_limit(&decide(&s, &l, &almost, &c)).0, Some(250));
    // The host's time zone is the rule's: 00:00 UTC is 08:00 in Hong Kong.
    let hk = TimeZone::get("Asia/Hong_Kong").unwrap();
    let v = decide(
        &s,
        &l,
        &Now::new("2026-04-20T00:00:00Z".parse().unwrap(), &hk, S),
        &c,
    );
    assert_eq!(retry_and_limit(&v), (Some(5_400_000), Some(hours("08:00"))));
}

#[test]
fn an_hours_deny_of_a_window_across_midnight_waits_for_the_evening() {
    let mut keys = example_keys();
    keys[1].limits.hours_window = Some("22:00-04:00".parse().unwrap());
    let s = snapshot(keys);
    let l = Ledger::new();
    let c = check(BOT, "Qot_GetBasicQot", None);
    // 22:00-04:00 at 12:00: ten hours.
    let v = decide(&s, &l, &at(12, 0), &c);
    assert_eq!(reason(&v), Some(Reason::Hours));
    assert_eq!(retry_and_limit(&v).0, Some(36_000_000));
    // At 04:00, the end: eighteen hours.
    assert_eq!(
        retry_and_limit(&decide(&s, &l, &at(4, 0), &c)).0,
        Some(64_800_000)
    );
    // A scope check is refused the same way.
    let req = CheckScope {
        request_id: 1,
        token: Token::new(BOT),
        iface: Iface::Ws,
        scope: Scope::QotRead,
    };
    let v = decide_scope(&s, &at(21, 59), &req);
    assert_eq!(
        retry_and_limit(&v),
        (
            Some(60_000),
            Some(LimitFigures::Hours {
                local_time: "21:59".into(),
                hours_window: "22:00-04:00".parse().unwrap(),
            })
        )
    );
}

#[test]
fn only_limits_give_figures_and_only_waits_that_help_give_a_retry() {
    for r in Reason::ALL {
        let Some(v) = scenario(r) else { continue };
        let (retry, limit) = retry_and_limit(&v);
        let by_limit = matches!(
            r,
            Reason::Rate
                | Reason::DailyValue
                | Reason::OrderValue
                | Reason::Hours
                | Reason::PriceCollar
                | Reason::OpenOrders
                | Reason::Position
                | Reason::Duplicate
        );
        assert_eq!(limit.is_some(), by_limit, "{r}: {v:?}");
        // The scenarios' rate is 0 and their daily order is above the cap on its own:
        // of them, only the hours window and the duplicate window pass by waiting.
        assert_eq!(
            retry.is_some(),
            matches!(r, Reason::Hours | Reason::Duplicate),
            "{r}: {v:?}"
        );
    }
    let internal = Verdict::internal(None, None, "the ledger failed".into());
    assert_eq!(retry_and_limit(&internal), (None, None));
}

/// research's plaintext before a rotation, accepted until 10:30 UTC.
const RESEARCH_BEFORE: &str = "fc_000000000000000000000000000000aa";

fn rotated_snapshot() -> Snapshot {
    let file = KeysFile {
        keys: example_keys(),
        rotations: vec![futu_auth_keys::store::Rotation {
            id: "research".parse().unwrap(),
            previous_hash: digest(&Token::new(RESEARCH_BEFORE)),
            until: "2026-04-20T10:30:00Z".parse().unwrap(),
        }],
        ..KeysFile::default()
    };
    Snapshot::compile(&file.keys, &file.rotations, &file.halts, Some(host()))
}

#[test]
fn a_rotated_keys_previous_plaintext_names_the_key_until_its_overlap_ends() {
    let s = rotated_snapshot();
    let l = Ledger::new();
    let read = |token, now: &Now| decide(&s, &l, now, &check(token, "Qot_GetBasicQot", None));
    let v = read(RESEARCH_BEFORE, &at(10, 29));
    assert!(
        matches!(&v.decision, Decision::Allow { key_id, .. } if key_id.as_str() == "research"),
        "{:?}",
        v.decision
    );
    let v = read(RESEARCH_BEFORE, &at(10, 30));
    assert_eq!(reason(&v), Some(Reason::UnknownKey), "refused from `until` on");
    assert!(matches!(v.decision, Decision::Deny { key_id: None, .. }));
    assert_eq!(
        v.decision,
        read("fc_ffffffffffffffffffffffffffffffff", &at(10, 30)).decision
    );
    assert!(
        read(RESEARCH, &at(10, 30)).decision.is_allow(),
        "the new one goes on"
    );
    assert_eq!(
        s.previous_valid_until("research"),
        Some("2026-04-20T10:30:00Z".parse().unwrap())
    );
    assert_eq!(s.previous_valid_until("sim-bot"), None);
    assert_eq!(s.len(), 2, "a previous plaintext is not a key of its own");
}

// The kill switch.

/// `sim-bot` halted on its own, for a fat finger.
fn bot_halted() -> Snapshot {
    halted_snapshot(example_keys(), vec![key_halt("sim-bot", "fat finger")])
}

fn detail(v: &Verdict) -> &str {
    match &v.decision {
        Decision::Deny { detail, .. } => detail,
        Decision::Allow { .. } => panic!("allowed: {v:?}"),
    }
}

#[test]
fn a_halted_key_is_refused_orders_and_unlock_saying_who_halted_it_when_and_why() {
    let mut keys = example_keys();
    keys[1].scopes.push(Scope::TradeUnlock);
    let s = halted_snapshot(keys, vec![key_halt("sim-bot", "fat finger")]);
    let l = Ledger::new();
    let order = decide(
        &s,
        &l,
        &at(10, 0),
        &check(BOT, "Trd_PlaceOrder", Some(sell(1.0, 1.0))),
    );
    assert_eq!(reason(&order), Some(Reason::Halted));
    assert_eq!(
        detail(&order),
        "trading halted for key sim-bot by uid 1000 (alice) at 2026-04-20T09:00:00Z: fat finger"
    );
    assert!(
        matches!(&order.decision, Decision::Deny { key_id: Some(k), retry_after_ms: None, limit: None, .. } if k.as_str() == "sim-bot")
    );
    assert_eq!(order.scope, Some(Scope::TradeSimulate));
    assert!(order.consumption.is_none());
    for endpoint in [
        "Trd_ModifyOrder",
        "2202",
        "Trd_PlaceComboOrder",
        "Trd_ReconfirmOrder",
    ] {
        let v = decide(&s, &l, &at(10, 0), &check(BOT, endpoint, Some(sell(1.0, 1.0))));
        assert_eq!(reason(&v), Some(Reason::Halted), "{endpoint}");
    }
    let mut dry = check(BOT, "Trd_PlaceOrder", Some(sell(1.0, 1.0)));
    dry.dry_run = true;
    assert_eq!(reason(&decide(&s, &l, &at(10, 0), &dry)), Some(Reason::Halted));
    let unlock = decide(&s, &l, &at(10, 0), &check(BOT, "Trd_UnlockTrade", None));
    assert_eq!(reason(&unlock), Some(Reason::Halted));
    assert_eq!(unlock.scope, Some(Scope::TradeUnlock));
    // Nothing was charged for the refused orders.
    assert_eq!(
        l.usage(&"sim-bot".parse().unwrap(), 1_000 * S, at(10, 0).day()).0,
        0
    );
}

#[test]
fn a_halted_key_still_reads_quotes_and_accounts_and_keeps_its_sessions() {
    let s = bot_halted();
    let l = Ledger::new();
    for endpoint in [
        "Qot_GetBasicQot",
        "Trd_GetFunds",
        "Trd_GetOrderList",
        "KeepAlive",
        "InitConnect",
    ] {
        let v = decide(&s, &l, &at(10, 0), &check(BOT, endpoint, None));
        assert!(v.decision.is_allow(), "{endpoint}: {v:?}");
    }
    // Pushes: quotes and account updates go out, order updates are held back.
    let scope = |scope| CheckScope {
        request_id: 1,
        token: Token::new(BOT),
        iface: Iface::Ws,
        scope,
    };
    assert!(decide_scope(&s, &at(10, 0), &scope(Scope::QotRead))
        .decision
        .is_allow());
    assert!(decide_scope(&s, &at(10, 0), &scope(Scope::AccRead))
        .decision
        .is_allow());
    let v = decide_scope(&s, &at(10, 0), &scope(Scope::TradeSimulate));
    assert_eq!(reason(&v), Some(Reason::Halted));
    assert_eq!(v.scope, Some(Scope::TradeSimulate));
    // Another key trades on.
    let mut keys = example_keys();
    keys.push(record(
        "other",
        "fc_00000000000000000000000000000009",
        &[Scope::TradeSimulate],
    ));
    let s = halted_snapshot(keys, vec![key_halt("sim-bot", "fat finger")]);
    let v = decide(
        &s,
        &l,
        &at(10, 0),
        &check(
            "fc_00000000000000000000000000000009",
            "Trd_PlaceOrder",
            Some(sell(1.0, 1.0)),
        ),
    );
    assert!(v.decision.is_allow(), "{v:?}");
}

#[test]
fn a_halt_of_every_key_refuses_every_keys_orders_and_is_named_before_a_keys_own() {
    let mut keys = example_keys();
    keys.push(record(
        "other",
        "fc_00000000000000000000000000000009",
        &[Scope::TradeReal],
    ));
    let s = halted_snapshot(
        keys,
        vec![
            key_halt("sim-bot", "fat finger"),
            halt(HaltTarget::All, "market turmoil"),
        ],
    );
    let l = Ledger::new();
    let v = decide(
        &s,
        &l,
        &at(10, 0),
        &check(BOT, "Trd_PlaceOrder", Some(sell(1.0, 1.0))),
    );
    assert_eq!(reason(&v), Some(Reason::Halted));
    assert_eq!(
        detail(&v),
        "trading halted for every key by uid 1000 (alice) at 2026-04-20T09:00:00Z: market turmoil"
    );
    let mut real = sell(1.0, 1.0);
    real.env = TrdEnv::Real;
    let v = decide(
        &s,
        &l,
        &at(10, 0),
        &check(
            "fc_00000000000000000000000000000009",
            "Trd_PlaceOrder",
            Some(real),
        ),
    );
    assert_eq!(reason(&v), Some(Reason::Halted));
    assert_eq!(v.scope, Some(Scope::TradeReal));
    assert!(
        decide(&s, &l, &at(10, 0), &check(RESEARCH, "Qot_GetBasicQot", None))
            .decision
            .is_allow()
    );
    assert_eq!(s.halts().len(), 2);
    assert_eq!(
        s.halt_of(&"research".parse().unwrap()).unwrap().target,
        HaltTarget::All
    );
}

#[test]
fn a_key_without_a_trading_scope_is_refused_scope_not_halted() {
    let s = halted_snapshot(
        example_keys(),
        vec![key_halt("research", "r"), halt(HaltTarget::All, "r")],
    );
    let l = Ledger::new();
    let v = decide(
        &s,
        &l,
        &at(10, 0),
        &check(RESEARCH, "Trd_PlaceOrder", Some(sell(1.0, 1.0))),
    );
    assert_eq!(reason(&v), Some(Reason::Scope));
    assert_eq!(
        reason(&decide(
            &s,
            &l,
            &at(10, 0),
            &check(RESEARCH, "Trd_UnlockTrade", None)
        )),
        Some(Reason::Scope)
    );
    // sim-bot trades simulate only: a real order is `scope`, a simulated one `halted`.
    let mut real = sell(1.0, 1.0);
    real.env = TrdEnv::Real;
    assert_eq!(
        reason(&decide(
            &s,
            &l,
            &at(10, 0),
            &check(BOT, "Trd_PlaceOrder", Some(real))
        )),
        Some(Reason::Scope)
    );
    assert_eq!(
        reason(&decide(
            &s,
            &l,
            &at(10, 0),
            &check(BOT, "Trd_PlaceOrder", Some(sell(1.0, 1.0)))
        )),
        Some(Reason::Halted)
    );
}

#[test]
fn halted_comes_after_the_key_is_usable_and_before_hours_and_the_order_checks() {
    let s = bot_halted();
    let l = Ledger::new();
    // Usable first: expired, frozen and other machines say so, not `halted`.
    for (change, want) in [
        (
            (|k: &mut KeyRecord| k.expires_at = Some("2026-01-01T00:00:00Z".parse().unwrap()))
                as fn(&mut KeyRecord),
            Reason::Expired,
        ),
        (
            |k: &mut KeyRecord| k.allowed_machines = Some(vec![]),
            Reason::Frozen,
        ),
        (
            |k: &mut KeyRecord| k.allowed_machines = Some(vec![fingerprint_of("another-host")]),
            Reason::Machine,
        ),
    ] {
        let mut keys = example_keys();
        change(&mut keys[1]);
        let s = halted_snapshot(keys, vec![key_halt("sim-bot", "r")]);
        let v = decide(
            &s,
            &l,
            &at(10, 0),
            &check(BOT, "Trd_PlaceOrder", Some(sell(1.0, 1.0))),
        );
        assert_eq!(reason(&v), Some(want));
    }
    // An unknown endpoint and a missing order are the request's own faults, found first.
    assert_eq!(
        reason(&decide(&s, &l, &at(10, 0), &check(BOT, "Trd_Nope", None))),
        Some(Reason::UnknownEndpoint)
    );
    assert_eq!(
        reason(&decide(&s, &l, &at(10, 0), &check(BOT, "Trd_PlaceOrder", None))),
        Some(Reason::BadOrder)
    );
    // Then the halt, before the hours window and every check of the order itself.
    let order = |o: Order| check(BOT, "Trd_PlaceOrder", Some(o));
    assert_eq!(
        reason(&decide(&s, &l, &at(17, 0), &order(sell(1.0, 1.0)))),
        Some(Reason::Halted)
    );
    let mut buy = sell(1.0, 1.0);
    buy.side = TrdSide::BUY;
    for o in [sell(-1.0, 1.0), sell(1000.0, 1000.0), buy] {
        assert_eq!(
            reason(&decide(&s, &l, &at(10, 0), &order(o.clone()))),
            Some(Reason::Halted),
            "{o:?}"
        );
    }
    // A read out of hours is still refused `hours`.
    assert_eq!(
        reason(&decide(&s, &l, &at(17, 0), &check(BOT, "Qot_GetBasicQot", None))),
        Some(Reason::Hours)
    );
}

mod risk;
