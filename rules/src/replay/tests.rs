use super::*;
use futu_auth_proto::key::Cap;
use futu_auth_proto::{KeyRecord, Limits};
use serde_json::json;

fn key(id: &str, limits: Limits) -> KeyRecord {
    KeyRecord {
        id: id.parse().unwrap(),
        hash: futu_auth_keys::token::digest(&futu_auth_proto::Token::new(format!("fc_{id:0>32}"))),
        scopes: vec![Scope::QotRead, Scope::TradeSimulate],
        limits,
        allowed_machines: None,
        created_at: "2026-04-15T10:00:00Z".parse().unwrap(),
        expires_at: None,
        note: None,
    }
}

fn snapshot(keys: Vec<KeyRecord>) -> Snapshot {
    Snapshot::compile(&keys, &[], &[], None)
}

/// An allowed order of `value` (qty 1) by `key` at 10:00:`s` UTC, with `ticket`.
fn order_line(s: u32, key: &str, value: f64, ticket: Option<u64>) -> String {
    json!({
        "ts": format!("2026-04-20T10:00:{s:02}.000000Z"),
        "kind": "check", "iface": "rest", "endpoint": "Trd_PlaceOrder", "key_id": key,
        "outcome": "allow", "reason": null, "error": null, "detail": null,
        "scope": "trade:simulate",
        "order": {"env": "simulate", "market": "HK", "symbol": "HK.00700", "side": "BUY",
                  "qty": 1.0, "price": value, "value": value},
        "dry_run": false, "ticket": ticket, "request_id": s, "peer_uid": 0, "peer_pid": 1,
        "latency_us": 5,
    })
    .to_string()
}

fn release_line(s: u32, key: &str, ticket: u64) -> String {
    json!({
        "ts": format!("2026-04-20T10:00:{s:02}.000000Z"),
        "kind": "release", "iface": null, "endpoint": "Release", "key_id": key,
        "outcome": "allow", "reason": null, "error": null, "detail": "refunded 600",
        "scope": null, "order": null, "dry_run": false, "ticket": ticket, "request_id": 99,
        "peer_uid": 0, "peer_pid": 1, "latency_us": 5,
    })
    .to_string()
}

fn run(lines: &[String], snapshot: &Snapshot, since: Option<&str>) -> Result<Report, ReplayError> {
    let text = lines.join("\n") + "\n";
    replay(
        text.as_bytes(),
        snapshot,
        Options {
            since: since.map(|s| s.parse().unwrap()),
            until: None,
            time_zone: TimeZone::UTC,
        },
    )
}

#[test]
fn a_rate_limit_refuses_the_order_past_it_and_only_that_one() {
    let limits = Limits {
        max_orders_per_minute: Some(2),
        ..Limits::default()
    };
    let lines: Vec<String> = (1..=3)
        .map(|s| order_line(s * 10, "bot", 10.0, Some(s.into())))
        .collect();
    let r = run(&lines, &snapshot(vec![key("bot", limits)]), None).unwrap();
    assert_eq!((r.records.replayed, r.records.changed), (3, 1));
    let g = &r.changes[0];
    assert_eq!(
        (g.from.label(), g.to.label(), g.count),
        ("allow".into(), "reject rate".into(), 1)
    );
    assert_eq!(g.examples[0].line, 3);
}

#[test]
fn a_release_refunds_the_candidates_charge_of_its_order() {
    let limits = Limits {
        max_daily_value: Some(Cap::try_from(1000.0).unwrap()),
        ..Limits::default()
    };
    let keys = snapshot(vec![key("bot", limits)]);
    let with_release = [
        order_line(1, "bot", 600.0, Some(11)),
        release_line(2, "bot", 11),
        order_line(3, "bot", 600.0, Some(12)),
    ];
    let r = run(&with_release, &keys, None).unwrap();
    assert_eq!((r.records.changed, r.records.releases.refunded), (0, 1));
    let without = [
        order_line(1, "bot", 600.0, Some(11)),
        order_line(3, "bot", 600.0, Some(12)),
    ];
    let r = run(&without, &keys, None).unwrap();
    assert_eq!(r.records.changed, 1);
    assert_eq!(r.changes[0].to.label(), "reject daily_value");
}

#[test]
fn orders_before_since_fill_the_window_but_are_not_compared() {
    let limits = Limits {
        max_orders_per_minute: Some(1),
        ..Limits::default()
    };
    let lines = [
        order_line(1, "bot", 10.0, Some(1)),
        order_line(20, "bot", 10.0, Some(2)),
    ];
    let r = run(
        &lines,
        &snapshot(vec![key("bot", limits)]),
        Some("2026-04-20T10:00:10Z"),
    )
    .unwrap();
    assert_eq!(r.records.skipped.before_since, 1);
    assert_eq!((r.records.replayed, r.records.changed), (1, 1));
    assert_eq!(r.changes[0].to.label(), "reject rate");
}

#[test]
fn a_key_missing_from_the_candidate_is_unknown_key_and_no_key_id_is_skipped() {
    let mut unknown: serde_json::Value = serde_json::from_str(&order_line(2, "x", 1.0, None)).unwrap();
    unknown["key_id"] = json!(null);
    unknown["outcome"] = json!("reject");
    unknown["reason"] = json!("unknown_key");
    let lines = [order_line(1, "gone", 10.0, Some(1)), unknown.to_string()];
    let r = run(&lines, &snapshot(vec![key("bot", Limits::default())]), None).unwrap();
    assert_eq!(r.records.skipped.no_key_id, 1);
    assert_eq!(r.changes.len(), 1);
    assert_eq!(r.changes[0].key_id, "gone");
    assert_eq!(r.changes[0].to.label(), "reject unknown_key");
}

#[test]
fn a_line_that_is_not_json_is_an_error_naming_it() {
    let lines = [order_line(1, "bot", 10.0, Some(1)), "{\"ts\": tru".into()];
    match run(&lines, &snapshot(vec![key("bot", Limits::default())]), None) {
        Err(ReplayError::Line { line: 2, source }) => {
            let message = source.to_string();
            assert!(message.starts_with("not JSON"), "{message}")
        }
        other => panic!("expected an error on line 2, got {other:?}"),
    }
    let lines = ["{\"ts\": \"2026-04-20T10:00:00Z\"}".to_owned()];
    match run(&lines, &snapshot(vec![]), None) {
        Err(ReplayError::Line { line: 1, source }) => {
            let message = source.to_string();
            assert!(message.starts_with("not an audit record"), "{message}")
        }
        other => panic!("expected an error on line 1, got {other:?}"),
    }
}

/// A `bad_order` reject of an order whose price is `price`, as the daemon writes the record;
/// its detail is no sentence the daemon ever wrote.
fn bad_order_line(price: Option<f64>) -> String {
    use crate::audit::{AuditOrder, AuditRecord, Caller, Kind, Outcome};
    use futu_auth_proto::{Iface, Market, Order, Reason, TrdEnv, TrdSide};
    let order = Order {
        env: TrdEnv::Simulate,
        market: Market::HK,
        symbol: "HK.00700".into(),
        side: TrdSide::BUY,
        qty: 100.0,
        price,
    };
    let caller = Caller { uid: 0, pid: 1 };
    let mut r = AuditRecord::new(Kind::Check, "Trd_PlaceOrder", Outcome::Reject, 7, caller)
        .iface(Iface::Rest)
        .reason(Reason::BadOrder)
        .scope(Some(Scope::TradeSimulate));
    r.ts = "2026-04-20T10:00:05Z".parse().unwrap();
    r.key_id = Some("bot".parse().unwrap());
    r.detail = Some("worded any way at all".into());
    r.order = Some(AuditOrder::of(&order, None));
    let mut line = Vec::new();
    r.write_json(&mut line);
    String::from_utf8(line).unwrap()
}

#[test]
fn a_bad_order_for_a_price_that_was_not_a_finite_number_is_decided_by_the_record_not_its_detail() {
    // A candidate without value caps allows an order without a price.
    let keys = snapshot(vec![key("bot", Limits::default())]);
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let line = bad_order_line(Some(bad));
        assert!(line.contains(r#""price_not_finite":true"#), "{line}");
        let r = run(&[line], &keys, None).unwrap();
        assert_eq!(
            (r.records.replayed, r.records.unchanged, r.records.changed),
            (1, 1, 0),
            "{bad}: still bad_order: {r:?}"
        );
    }
    // The same reject of a market order (no price: a value cap needed one) is allowed by
    // a candidate without caps.
    let r = run(&[bad_order_line(None)], &keys, None).unwrap();
    assert_eq!(r.records.changed, 1, "{r:?}");
    assert_eq!(
        (r.changes[0].from.label(), r.changes[0].to.label()),
        ("reject bad_order".to_owned(), "allow".to_owned())
    );
}

/// An admin record of a halt or resume (`endpoint`) of `key_id` (`*`: every key) at
/// 10:00:`s` UTC.
fn halt_line(s: u32, endpoint: &str, key_id: &str) -> String {
    json!({
        "ts": format!("2026-04-20T10:00:{s:02}.000000Z"),
        "kind": "admin", "iface": null, "endpoint": endpoint, "key_id": key_id,
        "outcome": "allow", "reason": null, "error": null, "detail": "trading halted for …",
        "scope": null, "order": null, "dry_run": false, "ticket": null, "request_id": 1,
        "peer_uid": 0, "peer_pid": 1, "latency_us": 5,
    })
    .to_string()
}

/// The order of `order_line`, refused `halted`.
fn halted_line(s: u32, key: &str, value: f64) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&order_line(s, key, value, None)).unwrap();
    v["outcome"] = "reject".into();
    v["reason"] = "halted".into();
    v["detail"] = "trading halted for key bot by uid 0 at 2026-04-20T09:00:00Z: fat finger".into();
    v.to_string()
}

fn labels(r: &Report) -> Vec<(String, String, u64)> {
    r.changes
        .iter()
        .map(|g| (g.from.label(), g.to.label(), g.count))
        .collect()
}

#[test]
fn halts_are_followed_as_the_audit_file_records_them_and_the_candidates_own_are_not() {
    use futu_auth_proto::key::{Halt, HaltTarget, HaltedBy};
    let keys = vec![key("bot", Limits::default())];
    let lines = [
        order_line(1, "bot", 10.0, Some(1)),
        halt_line(2, "Halt", "bot"),
        halted_line(3, "bot", 10.0),
        halt_line(4, "Resume", "bot"),
        order_line(5, "bot", 10.0, Some(2)),
        halt_line(6, "Halt", "*"),
        halted_line(7, "bot", 10.0),
        halt_line(8, "Resume", "*"),
        order_line(9, "bot", 10.0, Some(3)),
    ];
    // The same keys: nothing changes, the halts in the file included.
    let r = run(&lines, &snapshot(keys.clone()), None).unwrap();
    assert_eq!((r.records.replayed, r.records.changed), (5, 0), "{r:?}");
    assert_eq!(r.records.skipped.admin, 4);
    // A candidate halted now does not refuse what was allowed then.
    let halted_now = Snapshot::compile(
        &keys,
        &[],
        &[Halt {
            target: HaltTarget::All,
            reason: "turmoil".parse().unwrap(),
            halted_by: HaltedBy::new(0, None),
            halted_at: "2026-04-21T09:00:00Z".parse().unwrap(),
        }],
        None,
    );
    let r = run(&lines, &halted_now, None).unwrap();
    assert_eq!(r.records.changed, 0, "{r:?}");
    // A tighter cap changes the allowed orders; the halted ones stay halted.
    let capped = snapshot(vec![key(
        "bot",
        Limits {
            max_order_value: Some(Cap::try_from(5.0).unwrap()),
            ..Limits::default()
        },
    )]);
    let r = run(&lines, &capped, None).unwrap();
    assert_eq!(
        labels(&r),
        [("allow".to_owned(), "reject order_value".to_owned(), 3)],
        "{r:?}"
    );
}

#[test]
fn a_refusal_halted_stays_halted_unless_the_candidate_refuses_it_first() {
    // No Halt record: the halt was made before the file begins; the refusal says so.
    let lines = [halted_line(1, "bot", 10.0), halted_line(2, "bot", 10.0)];
    let r = run(&lines, &snapshot(vec![key("bot", Limits::default())]), None).unwrap();
    assert_eq!((r.records.replayed, r.records.changed), (2, 0), "{r:?}");
    // Without the trading scope the candidate refuses it `scope` first; without the key,
    // `unknown_key`.
    let mut quotes_only = key("bot", Limits::default());
    quotes_only.scopes = vec![Scope::QotRead];
    let r = run(&lines, &snapshot(vec![quotes_only]), None).unwrap();
    assert_eq!(
        labels(&r),
        [("reject halted".to_owned(), "reject scope".to_owned(), 2)]
    );
    let r = run(&lines, &snapshot(vec![key("other", Limits::default())]), None).unwrap();
    assert_eq!(
        labels(&r),
        [("reject halted".to_owned(), "reject unknown_key".to_owned(), 2)]
    );
}

fn limits(v: serde_json::Value) -> Limits {
    serde_json::from_value(v).unwrap()
}

/// An allowed SELL of `qty` HK.00700 at `price` by `bot` at 10:00:00 + `ms`, with the
/// account and reference price the gateway sent, and `ticket`.
fn risk_order_line(
    ms: u32,
    acc_id: Option<u64>,
    ref_price: Option<f64>,
    qty: f64,
    price: f64,
    ticket: u64,
) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&order_line(0, "bot", price, Some(ticket))).unwrap();
    v["ts"] = format!(
        "2026-04-20T10:{:02}:{:02}.{:03}000Z",
        ms / 60_000,
        ms / 1000 % 60,
        ms % 1000
    )
    .into();
    v["order"]["side"] = "SELL".into();
    v["order"]["qty"] = qty.into();
    v["order"]["value"] = (qty * price).into();
    v["request_id"] = ms.into();
    if let Some(a) = acc_id {
        v["acc_id"] = a.into();
    }
    if let Some(r) = ref_price {
        v["ref_price"] = r.into();
    }
    v.to_string()
}

/// An order event for the daemon's `ticket` at 10:00:00 + `ms`, as the daemon records one
/// it applied (`outcome` allow) or refused naming no order (`error` unknown_ticket).
fn event_line(ms: u32, ticket: u64, kind: &str, fill: Option<(f64, f64)>, applied: bool) -> String {
    json!({
        "ts": format!("2026-04-20T10:{:02}:{:02}.{:03}000Z", ms / 60_000, ms / 1000 % 60, ms % 1000),
        "kind": "order_event", "iface": null, "endpoint": "OrderEvent",
        "key_id": if applied { json!("bot") } else { json!(null) },
        "outcome": if applied { "allow" } else { "error" }, "reason": null,
        "error": if applied { json!(null) } else { json!("unknown_ticket") },
        "detail": "worded any way at all", "scope": null, "order": null,
        "event": {"kind": kind, "filled_qty": fill.map(|f| f.0), "fill_price": fill.map(|f| f.1)},
        "dry_run": false, "ticket": ticket, "request_id": 1000 + ms, "peer_uid": 0, "peer_pid": 1,
        "latency_us": 5,
    })
    .to_string()
}

#[test]
fn the_collar_and_the_accounts_judge_the_account_and_reference_price_recorded() {
    let lines = [
        risk_order_line(0, Some(7), Some(100.0), 1.0, 101.0, 1),
        risk_order_line(1000, Some(8), Some(100.0), 1.0, 104.0, 2),
        risk_order_line(2000, None, None, 1.0, 100.0, 3),
    ];
    let keys = |l| snapshot(vec![key("bot", limits(l))]);
    let r = run(&lines, &keys(json!({})), None).unwrap();
    assert_eq!((r.records.replayed, r.records.changed), (3, 0), "{r:?}");
    // A 2 % collar: 104 against 100 is outside; an order without a reference price cannot
    // be checked.
    let r = run(&lines, &keys(json!({"max_price_deviation_pct": 2})), None).unwrap();
    assert_eq!(
        labels(&r),
        [("allow".to_owned(), "reject price_collar".to_owned(), 2)],
        "{r:?}"
    );
    assert_eq!(
        r.changes[0].examples.iter().map(|e| e.line).collect::<Vec<_>>(),
        [2, 3]
    );
    // Account 7 only: the other account and the order naming none are refused.
    let r = run(&lines, &keys(json!({"allowed_acc_ids": [7]})), None).unwrap();
    assert_eq!(
        labels(&r),
        [("allow".to_owned(), "reject account".to_owned(), 2)],
        "{r:?}"
    );
}

#[test]
fn the_duplicate_window_judges_the_accounts_and_the_records_times() {
    let lines = [
        risk_order_line(0, Some(7), None, 1.0, 100.0, 1),
        risk_order_line(300, Some(7), None, 1.0, 100.0, 2), // the same, 300 ms later
        risk_order_line(400, Some(8), None, 1.0, 100.0, 3), // another account
        risk_order_line(900, Some(7), None, 1.0, 100.0, 4), // 600 ms after the second
    ];
    let keys = |ms: u32| snapshot(vec![key("bot", limits(json!({ "duplicate_window_ms": ms })))]);
    let r = run(&lines, &keys(500), None).unwrap();
    assert_eq!(
        labels(&r),
        [("allow".to_owned(), "reject duplicate".to_owned(), 1)],
        "{r:?}"
    );
    assert_eq!(r.changes[0].examples[0].line, 2);
    // A wider window: the fourth is within it of the first (the second, refused, counts
    // for nothing).
    let r = run(&lines, &keys(1000), None).unwrap();
    assert_eq!(
        r.changes[0].examples.iter().map(|e| e.line).collect::<Vec<_>>(),
        [2, 4],
        "{r:?}"
    );
}

#[test]
fn order_events_free_the_candidates_open_orders_as_they_came() {
    let lines = [
        risk_order_line(0, None, None, 1.0, 100.0, 11),
        risk_order_line(1000, None, None, 2.0, 100.0, 12),
        event_line(2000, 11, "filled", Some((1.0, 100.0)), true),
        risk_order_line(3000, None, None, 3.0, 100.0, 13),
        event_line(4000, 12, "partially_filled", Some((1.0, 100.0)), true),
        risk_order_line(5000, None, None, 4.0, 100.0, 14),
        // Refused by the daemon as naming no order it followed: the candidate follows it.
        event_line(6000, 12, "cancelled", None, false),
        risk_order_line(7000, None, None, 5.0, 100.0, 15),
    ];
    let keys = |max: u32| snapshot(vec![key("bot", limits(json!({ "max_open_orders": max })))]);
    // Two open at most: the third is allowed once the first filled; the fourth not while
    // the second is only partly filled; the fifth once it is cancelled.
    let r = run(&lines, &keys(2), None).unwrap();
    assert_eq!(
        labels(&r),
        [("allow".to_owned(), "reject open_orders".to_owned(), 1)],
        "{r:?}"
    );
    assert_eq!(r.changes[0].examples[0].line, 6);
    assert_eq!(
        (r.records.order_events.read, r.records.order_events.applied),
        (3, 3)
    );
    // One open at most: the second is refused, so the events for it are for no order of
    // the candidate's, and the third (allowed when the first filled) is never finished.
    let r = run(&lines, &keys(1), None).unwrap();
    let lines_changed: Vec<u64> = r
        .changes
        .iter()
        .flat_map(|g| g.examples.iter().map(|e| e.line))
        .collect();
    assert_eq!(lines_changed, [2, 6, 8], "{r:?}");
    assert_eq!(r.records.order_events.applied, 1);
    // Without the events the candidate's orders stay open.
    let no_events: Vec<String> = lines
        .iter()
        .filter(|l| !l.contains("order_event"))
        .cloned()
        .collect();
    let r = run(&no_events, &keys(2), None).unwrap();
    assert_eq!(
        labels(&r),
        [("allow".to_owned(), "reject open_orders".to_owned(), 3)],
        "{r:?}"
    );
}
