//! The audit file's lines, pinned: every kind of record the daemon writes, built by the
//! functions the service builds them with, written by the record's own writer, compared
//! with the literal line, with the line serde makes of the record, and read back.

use std::time::Duration;

use futu_auth_proto::key::{Halt, HaltTarget, HaltedBy};
use futu_auth_proto::{
    Check, CheckScope, Decision, ErrorKind, Iface, KeyId, LimitFigures, Market, Order, OrderEvent,
    OrderEventKind, OrderEventRefusal, Reason, Response, Scope, SessionCheck, SessionOutcome, SessionSubject,
    Token, TrdEnv, TrdSide,
};
use futu_auth_rules::decide::Verdict;
use futu_auth_rules::ledger::{Consumption, EventApplied, Released};
use futu_auth_rules::money::Money;

use super::admin::{admin_record, forbidden_record, halt_detail};
use super::checks::{check_record, release_record, scope_record, session_record};
use super::events::order_event_record;
use crate::audit::{AuditKey, AuditRecord};
use crate::peer::Peer;

const PEER: Peer = Peer {
    uid: 1000,
    gid: 1000,
    pid: 4242,
};

const LATENCY: Duration = Duration::from_micros(37);

fn key(id: &str) -> KeyId {
    id.parse().unwrap()
}

fn check(endpoint: &str, order: Option<Order>, dry_run: bool) -> Check {
    Check {
        request_id: 11,
        token: Token::new("fc_00000000000000000000000000000002"),
        iface: Iface::Rest,
        endpoint: endpoint.into(),
        order,
        dry_run,
        acc_id: None,
        ref_price: None,
    }
}

fn order(price: Option<f64>) -> Order {
    Order {
        env: TrdEnv::Simulate,
        market: Market::HK,
        symbol: "HK.00700".into(),
        side: TrdSide::BUY,
        qty: 100.0,
        price,
    }
}

fn allow(key_id: &str, scope: Option<Scope>, ticket: Option<u64>, value: Option<Money>) -> Verdict {
    Verdict {
        decision: Decision::Allow {
            key_id: key(key_id),
            scope,
            ticket,
        },
        scope,
        value,
        consumption: ticket.map(|t| Consumption {
            key_id: key(key_id),
            number: 1,
            ticket: t,
            mono_ns: 0,
            unix_ns: 0,
            day: 20_563,
            value: value.unwrap_or(Money::ZERO),
        }),
    }
}

fn deny(key_id: Option<&str>, scope: Option<Scope>, reason: Reason, detail: &str) -> Verdict {
    Verdict {
        decision: Decision::Deny {
            reason,
            key_id: key_id.map(key),
            detail: detail.into(),
            retry_after_ms: None,
            limit: None,
        },
        scope,
        value: None,
        consumption: None,
    }
}

/// A halt of `target` by alice, as the daemon makes one.
fn halt(target: HaltTarget) -> Halt {
    Halt {
        target,
        reason: "fat finger".parse().unwrap(),
        halted_by: HaltedBy::new(1000, Some("alice".into())),
        halted_at: "2026-04-20T09:00:00Z".parse().unwrap(),
    }
}

/// The audit record of a Halt or Resume (`lifted`) of `target` that went through.
fn halt_record(name: &str, target: HaltTarget, lifted: bool, request_id: u64) -> AuditRecord {
    let made = halt(target.clone());
    let resp = Response::Halts {
        request_id,
        halts: if lifted { vec![] } else { vec![made.clone()] },
    };
    let mut rec = admin_record(name, Some(target.into()), request_id, &resp, PEER, LATENCY);
    rec.detail = Some(halt_detail(lifted, &made));
    rec
}

/// `rec` stamped at a fixed time, as one line of the audit file.
fn line(mut rec: AuditRecord) -> String {
    rec.ts = "2026-04-20T10:00:00.123456Z".parse().unwrap();
    let mut ours = Vec::new();
    rec.write_json(&mut ours);
    let text = String::from_utf8(ours).unwrap();
    let mut serde = serde_json::to_string(&rec).unwrap();
    serde.push('\n');
    assert_eq!(text, serde, "the writer and the record's Serialize agree");
    let mut again = Vec::new();
    AuditRecord::parse(&text).unwrap().write_json(&mut again);
    assert_eq!(
        String::from_utf8(again).unwrap(),
        text,
        "read back, written again"
    );
    text
}

#[test]
fn every_kind_of_audit_record_is_written_as_pinned() {
    let value = Money::order_value(100.0, 388.2);
    let cases: Vec<(&str, AuditRecord, &str)> = vec![
        (
            "a check without an order",
            check_record(
                &check("Qot_GetBasicQot", None, false),
                &allow("research", Some(Scope::QotRead), None, None),
                PEER,
                LATENCY,
            ),
            r#"{"ts":"2026-04-20T10:00:00.123456Z","kind":"check","iface":"rest","endpoint":"Qot_GetBasicQot","key_id":"research","outcome":"allow","reason":null,"error":null,"detail":null,"scope":"qot:read","order":null,"dry_run":false,"ticket":null,"request_id":11,"peer_uid":1000,"peer_pid":4242,"latency_us":37}"#,
        ),
        (
            "an order allowed, with its ticket",
            check_record(
                &check("Trd_PlaceOrder", Some(order(Some(388.2))), false),
                &allow("sim-bot", Some(Scope::TradeSimulate), Some(9_876_543_210), value),
                PEER,
                LATENCY,
            ),
            r#"{"ts":"2026-04-20T10:00:00.123456Z","kind":"check","iface":"rest","endpoint":"Trd_PlaceOrder","key_id":"sim-bot","outcome":"allow","reason":null,"error":null,"detail":null,"scope":"trade:simulate","order":{"env":"simulate","market":"HK","symbol":"HK.00700","side":"BUY","qty":100.0,"price":388.2,"value":38820.0},"dry_run":false,"ticket":9876543210,"request_id":11,"peer_uid":1000,"peer_pid":4242,"latency_us":37}"#,
        ),
        (
            "a dry run of a market order",
            check_record(
                &check("2202", Some(order(None)), true),
                &allow("sim-bot", Some(Scope::TradeSimulate), None, None),
                PEER,
                LATENCY,
            ),
            r#"{"ts":"2026-04-20T10:00:00.123456Z","kind":"check","iface":"rest","endpoint":"2202","key_id":"sim-bot","outcome":"allow","reason":null,"error":null,"detail":null,"scope":"trade:simulate","order":{"env":"simulate","market":"HK","symbol":"HK.00700","side":"BUY","qty":100.0,"price":null,"value":null},"dry_run":true,"ticket":null,"request_id":11,"peer_uid":1000,"peer_pid":4242,"latency_us":37}"#,
        ),
        (
            "a reject with retry_after_ms",
            check_record(
                &check("Trd_PlaceOrder", Some(order(Some(388.2))), false),
                &Verdict {
                    decision: Decision::Deny {
                        reason: Reason::Rate,
                        key_id: Some(key("sim-bot")),
                        detail: "5 orders in the last 60 s; max_orders_per_minute is 5".into(),
                        retry_after_ms: Some(12_345),
                        limit: Some(LimitFigures::Rate {
                            orders_in_window: 5,
                            max_orders_per_minute: 5,
                        }),
                    },
                    scope: Some(Scope::TradeSimulate),
                    value,
                    consumption: None,
                },
                PEER,
                LATENCY,
            ),
            r#"{"ts":"2026-04-20T10:00:00.123456Z","kind":"check","iface":"rest","endpoint":"Trd_PlaceOrder","key_id":"sim-bot","outcome":"reject","reason":"rate","error":null,"detail":"5 orders in the last 60 s; max_orders_per_minute is 5","scope":"trade:simulate","order":{"env":"simulate","market":"HK","symbol":"HK.00700","side":"BUY","qty":100.0,"price":388.2,"value":38820.0},"dry_run":false,"ticket":null,"retry_after_ms":12345,"request_id":11,"peer_uid":1000,"peer_pid":4242,"latency_us":37}"#,
        ),
        (
            "an order with its account and reference price, refused by the price collar",
            check_record(
                &Check {
                    acc_id: Some(281_756_455_983_234),
                    ref_price: Some(380.0),
                    ..check("Trd_PlaceOrder", Some(order(Some(388.2))), false)
                },
                &Verdict {
                    decision: Decision::Deny {
                        reason: Reason::PriceCollar,
                        key_id: Some(key("sim-bot")),
                        detail: "price 388.2 is 2.1579% from the reference price 380; max_price_deviation_pct is 2".into(),
                        retry_after_ms: None,
                        limit: Some(LimitFigures::PriceCollar {
                            price: 388.2,
                            ref_price: 380.0,
                            deviation_pct: 2.157_894_736_842_1,
                            max_price_deviation_pct: 2.0,
                        }),
                    },
                    scope: Some(Scope::TradeSimulate),
                    value,
                    consumption: None,
                },
                PEER,
                LATENCY,
            ),
            r#"{"ts":"2026-04-20T10:00:00.123456Z","kind":"check","iface":"rest","endpoint":"Trd_PlaceOrder","key_id":"sim-bot","outcome":"reject","reason":"price_collar","error":null,"detail":"price 388.2 is 2.1579% from the reference price 380; max_price_deviation_pct is 2","scope":"trade:simulate","order":{"env":"simulate","market":"HK","symbol":"HK.00700","side":"BUY","qty":100.0,"price":388.2,"value":38820.0},"acc_id":281756455983234,"ref_price":380.0,"dry_run":false,"ticket":null,"request_id":11,"peer_uid":1000,"peer_pid":4242,"latency_us":37}"#,
        ),
        (
            "an account read of an account the key may not use",
            check_record(
                &Check {
                    acc_id: Some(42),
                    ..check("Trd_GetFunds", None, false)
                },
                &deny(
                    Some("sim-bot"),
                    Some(Scope::AccRead),
                    Reason::Account,
                    "account 42 is not in allowed_acc_ids",
                ),
                PEER,
                LATENCY,
            ),
            r#"{"ts":"2026-04-20T10:00:00.123456Z","kind":"check","iface":"rest","endpoint":"Trd_GetFunds","key_id":"sim-bot","outcome":"reject","reason":"account","error":null,"detail":"account 42 is not in allowed_acc_ids","scope":"acc:read","order":null,"acc_id":42,"dry_run":false,"ticket":null,"request_id":11,"peer_uid":1000,"peer_pid":4242,"latency_us":37}"#,
        ),
        (
            "a token that matched no key",
            check_record(
                &check("Qot_GetBasicQot", None, false),
                &deny(None, None, Reason::UnknownKey, "no key matches this token"),
                PEER,
                LATENCY,
            ),
            r#"{"ts":"2026-04-20T10:00:00.123456Z","kind":"check","iface":"rest","endpoint":"Qot_GetBasicQot","key_id":null,"outcome":"reject","reason":"unknown_key","error":null,"detail":"no key matches this token","scope":null,"order":null,"dry_run":false,"ticket":null,"request_id":11,"peer_uid":1000,"peer_pid":4242,"latency_us":37}"#,
        ),
        (
            "a scope check",
            scope_record(
                &CheckScope {
                    request_id: 12,
                    token: Token::new("fc_00000000000000000000000000000001"),
                    iface: Iface::Ws,
                    scope: Scope::TradeReal,
                },
                &deny(
                    Some("research"),
                    Some(Scope::TradeReal),
                    Reason::Scope,
                    "key lacks scope trade:real",
                ),
                PEER,
                LATENCY,
            ),
            r#"{"ts":"2026-04-20T10:00:00.123456Z","kind":"check_scope","iface":"ws","endpoint":"trade:real","key_id":"research","outcome":"reject","reason":"scope","error":null,"detail":"key lacks scope trade:real","scope":"trade:real","order":null,"dry_run":false,"ticket":null,"request_id":12,"peer_uid":1000,"peer_pid":4242,"latency_us":37}"#,
        ),
        (
            "a session's pushes",
            session_record(
                &SessionCheck {
                    request_id: 13,
                    token: Token::new("fc_00000000000000000000000000000001"),
                    iface: Iface::Ws,
                    subject: SessionSubject::Pushes {
                        scope: Scope::QotRead,
                        pushes: 3,
                    },
                    previous: SessionOutcome::Deny(Reason::Scope),
                },
                &allow("research", Some(Scope::QotRead), None, None),
                PEER,
                LATENCY,
            ),
            r#"{"ts":"2026-04-20T10:00:00.123456Z","kind":"check_scope","iface":"ws","endpoint":"qot:read","key_id":"research","outcome":"allow","reason":null,"error":null,"detail":null,"scope":"qot:read","order":null,"dry_run":false,"ticket":null,"pushes":3,"request_id":13,"peer_uid":1000,"peer_pid":4242,"latency_us":37}"#,
        ),
        (
            "a session's keep-alive",
            session_record(
                &SessionCheck {
                    request_id: 14,
                    token: Token::new("fc_00000000000000000000000000000001"),
                    iface: Iface::Mcp,
                    subject: SessionSubject::KeepAlive,
                    previous: SessionOutcome::Allow,
                },
                &deny(
                    Some("research"),
                    None,
                    Reason::Expired,
                    "key expired at 2026-04-20T09:00:00Z",
                ),
                PEER,
                LATENCY,
            ),
            r#"{"ts":"2026-04-20T10:00:00.123456Z","kind":"check","iface":"mcp","endpoint":"KeepAlive","key_id":"research","outcome":"reject","reason":"expired","error":null,"detail":"key expired at 2026-04-20T09:00:00Z","scope":null,"order":null,"dry_run":true,"ticket":null,"request_id":14,"peer_uid":1000,"peer_pid":4242,"latency_us":37}"#,
        ),
        (
            "a release",
            release_record(
                15,
                9_876_543_210,
                &Ok(Released {
                    number: 1,
                    key_id: key("sim-bot"),
                    refunded: Money(3_882_000_000_000),
                    day: 20_563,
                }),
                PEER,
                LATENCY,
            ),
            r#"{"ts":"2026-04-20T10:00:00.123456Z","kind":"release","iface":null,"endpoint":"Release","key_id":"sim-bot","outcome":"allow","reason":null,"error":null,"detail":"refunded 38820","scope":null,"order":null,"dry_run":false,"ticket":9876543210,"request_id":15,"peer_uid":1000,"peer_pid":4242,"latency_us":37}"#,
        ),
        (
            "a release refused",
            release_record(
                16,
                42,
                &Err((ErrorKind::UnknownTicket, "ticket 42: unknown ticket".into())),
                PEER,
                LATENCY,
            ),
            r#"{"ts":"2026-04-20T10:00:00.123456Z","kind":"release","iface":null,"endpoint":"Release","key_id":null,"outcome":"error","reason":null,"error":"unknown_ticket","detail":null,"scope":null,"order":null,"dry_run":false,"ticket":42,"request_id":16,"peer_uid":1000,"peer_pid":4242,"latency_us":37}"#,
        ),
        (
            "an order event applied",
            order_event_record(
                &OrderEvent {
                    request_id: 18,
                    ticket: 9_876_543_210,
                    kind: OrderEventKind::PartiallyFilled,
                    filled_qty: Some(40.0),
                    fill_price: Some(299.5),
                },
                &Ok(EventApplied::Applied {
                    key_id: key("sim-bot"),
                    released: None,
                }),
                None,
                PEER,
                LATENCY,
            ),
            r#"{"ts":"2026-04-20T10:00:00.123456Z","kind":"order_event","iface":null,"endpoint":"OrderEvent","key_id":"sim-bot","outcome":"allow","reason":null,"error":null,"detail":"partially_filled 40 at 299.5: applied","scope":null,"order":null,"event":{"kind":"partially_filled","filled_qty":40.0,"fill_price":299.5},"dry_run":false,"ticket":9876543210,"request_id":18,"peer_uid":1000,"peer_pid":4242,"latency_us":37}"#,
        ),
        (
            "an order event that rejects an order",
            order_event_record(
                &OrderEvent {
                    request_id: 19,
                    ticket: 9_876_543_210,
                    kind: OrderEventKind::Rejected,
                    filled_qty: None,
                    fill_price: None,
                },
                &Ok(EventApplied::Applied {
                    key_id: key("sim-bot"),
                    released: Some(Released {
                        number: 1,
                        key_id: key("sim-bot"),
                        refunded: Money(3_882_000_000_000),
                        day: 20_563,
                    }),
                }),
                None,
                PEER,
                LATENCY,
            ),
            r#"{"ts":"2026-04-20T10:00:00.123456Z","kind":"order_event","iface":null,"endpoint":"OrderEvent","key_id":"sim-bot","outcome":"allow","reason":null,"error":null,"detail":"rejected: applied, refunded 38820","scope":null,"order":null,"event":{"kind":"rejected","filled_qty":null,"fill_price":null},"dry_run":false,"ticket":9876543210,"request_id":19,"peer_uid":1000,"peer_pid":4242,"latency_us":37}"#,
        ),
        (
            "an order event sent again",
            order_event_record(
                &OrderEvent {
                    request_id: 20,
                    ticket: 9_876_543_210,
                    kind: OrderEventKind::Cancelled,
                    filled_qty: None,
                    fill_price: None,
                },
                &Ok(EventApplied::Duplicate {
                    key_id: key("sim-bot"),
                }),
                None,
                PEER,
                LATENCY,
            ),
            r#"{"ts":"2026-04-20T10:00:00.123456Z","kind":"order_event","iface":null,"endpoint":"OrderEvent","key_id":"sim-bot","outcome":"allow","reason":null,"error":null,"detail":"cancelled: duplicate","scope":null,"order":null,"event":{"kind":"cancelled","filled_qty":null,"fill_price":null},"dry_run":false,"ticket":9876543210,"request_id":20,"peer_uid":1000,"peer_pid":4242,"latency_us":37}"#,
        ),
        (
            "an order event refused",
            order_event_record(
                &OrderEvent {
                    request_id: 21,
                    ticket: 42,
                    kind: OrderEventKind::Filled,
                    filled_qty: Some(100.0),
                    fill_price: Some(300.0),
                },
                &Err((
                    OrderEventRefusal::UnknownTicket,
                    "no order the ledger knows has this ticket".into(),
                )),
                None,
                PEER,
                LATENCY,
            ),
            r#"{"ts":"2026-04-20T10:00:00.123456Z","kind":"order_event","iface":null,"endpoint":"OrderEvent","key_id":null,"outcome":"error","reason":null,"error":"unknown_ticket","detail":"filled 100 at 300: refused unknown_ticket","scope":null,"order":null,"event":{"kind":"filled","filled_qty":100.0,"fill_price":300.0},"dry_run":false,"ticket":42,"request_id":21,"peer_uid":1000,"peer_pid":4242,"latency_us":37}"#,
        ),
        (
            "an admin request done",
            admin_record(
                "RevokeKey",
                Some(AuditKey::Key(key("old-bot"))),
                17,
                &Response::KeyRevoked {
                    request_id: 17,
                    id: key("old-bot"),
                },
                PEER,
                LATENCY,
            ),
            r#"{"ts":"2026-04-20T10:00:00.123456Z","kind":"admin","iface":null,"endpoint":"RevokeKey","key_id":"old-bot","outcome":"allow","reason":null,"error":null,"detail":null,"scope":null,"order":null,"dry_run":false,"ticket":null,"request_id":17,"peer_uid":1000,"peer_pid":4242,"latency_us":37}"#,
        ),
        (
            "an admin request failed",
            admin_record(
                "GenKey",
                Some(AuditKey::Key(key("sim-bot"))),
                18,
                &Response::Error {
                    request_id: 18,
                    kind: ErrorKind::DuplicateKey,
                    message: "a key with id \"sim-bot\" exists".into(),
                },
                PEER,
                LATENCY,
            ),
            r#"{"ts":"2026-04-20T10:00:00.123456Z","kind":"admin","iface":null,"endpoint":"GenKey","key_id":"sim-bot","outcome":"error","reason":null,"error":"duplicate_key","detail":"a key with id \"sim-bot\" exists","scope":null,"order":null,"dry_run":false,"ticket":null,"request_id":18,"peer_uid":1000,"peer_pid":4242,"latency_us":37}"#,
        ),
        (
            "an admin request refused",
            forbidden_record(
                "ListKeys",
                None,
                19,
                "ListKeys needs an administrator; uid 1000 is not one",
                PEER,
                LATENCY,
            ),
            r#"{"ts":"2026-04-20T10:00:00.123456Z","kind":"admin","iface":null,"endpoint":"ListKeys","key_id":null,"outcome":"reject","reason":"forbidden","error":null,"detail":"ListKeys needs an administrator; uid 1000 is not one","scope":null,"order":null,"dry_run":false,"ticket":null,"request_id":19,"peer_uid":1000,"peer_pid":4242,"latency_us":37}"#,
        ),
        (
            "an order refused: trading halted",
            check_record(
                &check("Trd_PlaceOrder", Some(order(Some(388.2))), false),
                &deny(
                    Some("sim-bot"),
                    Some(Scope::TradeSimulate),
                    Reason::Halted,
                    "trading halted for key sim-bot by uid 1000 (alice) at 2026-04-20T09:00:00Z: fat finger",
                ),
                PEER,
                LATENCY,
            ),
            r#"{"ts":"2026-04-20T10:00:00.123456Z","kind":"check","iface":"rest","endpoint":"Trd_PlaceOrder","key_id":"sim-bot","outcome":"reject","reason":"halted","error":null,"detail":"trading halted for key sim-bot by uid 1000 (alice) at 2026-04-20T09:00:00Z: fat finger","scope":"trade:simulate","order":{"env":"simulate","market":"HK","symbol":"HK.00700","side":"BUY","qty":100.0,"price":388.2,"value":38820.0},"dry_run":false,"ticket":null,"request_id":11,"peer_uid":1000,"peer_pid":4242,"latency_us":37}"#,
        ),
        (
            "a halt of one key",
            halt_record("Halt", HaltTarget::Key(key("sim-bot")), false, 20),
            r#"{"ts":"2026-04-20T10:00:00.123456Z","kind":"admin","iface":null,"endpoint":"Halt","key_id":"sim-bot","outcome":"allow","reason":null,"error":null,"detail":"trading halted for key sim-bot by uid 1000 (alice) at 2026-04-20T09:00:00Z: fat finger","scope":null,"order":null,"dry_run":false,"ticket":null,"request_id":20,"peer_uid":1000,"peer_pid":4242,"latency_us":37}"#,
        ),
        (
            "a resume of every key",
            halt_record("Resume", HaltTarget::All, true, 21),
            r#"{"ts":"2026-04-20T10:00:00.123456Z","kind":"admin","iface":null,"endpoint":"Resume","key_id":"*","outcome":"allow","reason":null,"error":null,"detail":"lifted: trading halted for every key by uid 1000 (alice) at 2026-04-20T09:00:00Z: fat finger","scope":null,"order":null,"dry_run":false,"ticket":null,"request_id":21,"peer_uid":1000,"peer_pid":4242,"latency_us":37}"#,
        ),
    ];
    for (what, rec, expected) in cases {
        assert_eq!(line(rec), format!("{expected}\n"), "{what}");
    }
}
