//! The pre-trade risk limits (protocol version 6): each refuses exactly what it should,
//! with its reason and figures, and nothing else; the ledger follows orders through their
//! events, once.

use futu_auth_proto::{OrderEventKind, OrderEventRefusal};
use proptest::prelude::*;

use super::*;
use crate::ledger::EventApplied;

fn risky_snapshot() -> Snapshot {
    let mut keys = example_keys();
    keys.push(risky());
    snapshot(keys)
}

fn ticket(v: &Verdict) -> u64 {
    match &v.decision {
        Decision::Allow { ticket: Some(t), .. } => *t,
        other => panic!("allowed with a ticket: {other:?}"),
    }
}

#[test]
fn the_account_whitelist_refuses_other_accounts_and_none_for_orders_and_account_reads_only() {
    let s = risky_snapshot();
    let l = Ledger::new();
    let read = |acc: Option<u64>, endpoint: &str| {
        decide(
            &s,
            &l,
            &at(10, 0),
            &Check {
                acc_id: acc,
                ..check(RISKY, endpoint, None)
            },
        )
    };
    assert!(read(Some(7), "Trd_GetFunds").decision.is_allow());
    let v = read(Some(8), "Trd_GetFunds");
    assert_eq!(reason(&v), Some(Reason::Account));
    let Decision::Deny { detail, limit, .. } = &v.decision else {
        panic!()
    };
    assert_eq!(detail, "account 8 is not in allowed_acc_ids");
    assert_eq!(limit, &None);
    assert_eq!(reason(&read(None, "Trd_GetFunds")), Some(Reason::Account));
    // Quotes name no account, and need none.
    assert!(read(None, "Qot_GetBasicQot").decision.is_allow());
    let order = |acc| {
        decide(
            &s,
            &l,
            &at(10, 0),
            &Check {
                acc_id: acc,
                ..risky_check(sell(1.0, 1.0), 1.0)
            },
        )
    };
    assert_eq!(reason(&order(Some(8))), Some(Reason::Account));
    assert_eq!(reason(&order(None)), Some(Reason::Account));
    // A key without the list takes any account, or none.
    let any = |acc| Check {
        acc_id: acc,
        ..check(BOT, "Trd_GetFunds", None)
    };
    assert!(decide(&s, &l, &at(10, 0), &any(Some(12345))).decision.is_allow());
    assert!(decide(&s, &l, &at(10, 0), &any(None)).decision.is_allow());
}

#[test]
fn the_collar_allows_up_to_its_percentage_either_way_and_refuses_past_it_with_figures() {
    let s = risky_snapshot();
    for (price, allowed) in [
        (105.0, true),
        (95.0, true),
        (100.0, true),
        (105.01, false),
        (94.99, false),
    ] {
        let l = Ledger::new();
        let v = decide(&s, &l, &at(10, 0), &risky_check(sell(1.0, price), 100.0));
        assert_eq!(v.decision.is_allow(), allowed, "{price}: {v:?}");
        if !allowed {
            assert_eq!(reason(&v), Some(Reason::PriceCollar));
            let Some(LimitFigures::PriceCollar {
                price: p,
                ref_price,
                deviation_pct,
                max_price_deviation_pct,
            }) = v.decision.limit().cloned()
            else {
                panic!("figures: {v:?}")
            };
            assert_eq!((p, ref_price, max_price_deviation_pct), (price, 100.0, 5.0));
            assert!((deviation_pct - (price - 100.0f64).abs()).abs() < 1e-9);
            assert_eq!(v.decision.retry_after(), None);
        }
    }
}

#[test]
fn a_collar_needs_a_reference_price_and_a_limit_price() {
    let s = risky_snapshot();
    let l = Ledger::new();
    let no_ref = Check {
        ref_price: None,
        ..risky_check(sell(1.0, 1.0), 1.0)
    };
    assert_eq!(
        reason(&decide(&s, &l, &at(10, 0), &no_ref)),
        Some(Reason::PriceCollar)
    );
    let mut market = sell(1.0, 1.0);
    market.price = None;
    let v = decide(&s, &l, &at(10, 0), &risky_check(market, 1.0));
    assert_eq!(reason(&v), Some(Reason::BadOrder));
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let v = decide(&s, &l, &at(10, 0), &risky_check(sell(1.0, 1.0), bad));
        assert_eq!(reason(&v), Some(Reason::BadOrder), "{bad}");
    }
    // A reference price without an order is refused, from any key.
    let stray = Check {
        ref_price: Some(1.0),
        ..check(RESEARCH, "Qot_GetBasicQot", None)
    };
    assert_eq!(
        reason(&decide(&s, &l, &at(10, 0), &stray)),
        Some(Reason::BadOrder)
    );
    // A key without a collar ignores the reference price.
    let free = Check {
        ref_price: Some(1000.0),
        ..check(BOT, "Trd_PlaceOrder", Some(sell(1.0, 1.0)))
    };
    assert!(decide(&s, &l, &at(10, 0), &free).decision.is_allow());
}

#[test]
fn a_duplicate_is_refused_within_the_window_and_allowed_after_it() {
    let s = risky_snapshot();
    let l = Ledger::new();
    let c = risky_check(sell(1.0, 1.0), 1.0);
    let first = decide(&s, &l, &at(10, 0), &c);
    l.order_event(ticket(&first), OrderEventKind::Filled, Some(1.0), Some(1.0), 0, 0)
        .unwrap();
    let later = |ms: u64| Now {
        mono_ns: at(10, 0).mono_ns + ms * 1_000_000,
        ..at(10, 0)
    };
    let v = decide(&s, &l, &later(1500), &c);
    assert_eq!(reason(&v), Some(Reason::Duplicate));
    assert_eq!(
        v.decision.limit(),
        Some(&LimitFigures::Duplicate {
            since_ms: 1500,
            duplicate_window_ms: 2000
        })
    );
    assert_eq!(
        v.decision.retry_after(),
        Some(std::time::Duration::from_millis(500))
    );
    // Another price is another order.
    let other = decide(&s, &l, &later(1600), &risky_check(sell(1.0, 1.01), 1.0));
    assert!(other.decision.is_allow());
    assert_eq!(
        reason(&decide(&s, &l, &later(1700), &risky_check(sell(1.0, 1.01), 1.0))),
        Some(Reason::Duplicate)
    );
    l.order_event(ticket(&other), OrderEventKind::Cancelled, None, None, 0, 0)
        .unwrap();
    // Once the window is over, the same order is allowed again.
    assert!(decide(&s, &l, &later(2000), &c).decision.is_allow());
}

#[test]
fn open_orders_are_freed_by_a_fill_a_cancel_or_a_rejection_once() {
    let s = risky_snapshot();
    let l = Ledger::new();
    let n = |i: u64| Now {
        mono_ns: at(10, 0).mono_ns + i * 3 * S,
        ..at(10, 0)
    };
    let first = decide(&s, &l, &n(0), &risky_check(sell(1.0, 1.0), 1.0));
    let v = decide(&s, &l, &n(1), &risky_check(sell(2.0, 1.0), 1.0));
    assert_eq!(reason(&v), Some(Reason::OpenOrders));
    assert_eq!(
        v.decision.limit(),
        Some(&LimitFigures::OpenOrders {
            open_orders: 1,
            max_open_orders: 1
        })
    );
    let t = ticket(&first);
    let accepted = l
        .order_event(t, OrderEventKind::Accepted, None, None, 0, 0)
        .unwrap();
    assert!(matches!(accepted, EventApplied::Applied { released: None, .. }));
    let again = l
        .order_event(t, OrderEventKind::Accepted, None, None, 0, 0)
        .unwrap();
    assert!(matches!(again, EventApplied::Duplicate { .. }));
    assert_eq!(
        reason(&decide(&s, &l, &n(2), &risky_check(sell(2.0, 1.0), 1.0))),
        Some(Reason::OpenOrders)
    );
    l.order_event(t, OrderEventKind::Cancelled, None, None, 0, 0)
        .unwrap();
    for kind in OrderEventKind::ALL {
        let figures = kind.is_fill().then_some(1.0);
        let r = l.order_event(t, kind, figures, figures, 0, 0).unwrap();
        assert!(matches!(r, EventApplied::Duplicate { .. }), "{kind}");
    }
    let second = decide(&s, &l, &n(3), &risky_check(sell(2.0, 1.0), 1.0));
    assert!(second.decision.is_allow());
    // A rejection gives the day's value back, as a release does.
    let r = l.order_event(
        ticket(&second),
        OrderEventKind::Rejected,
        None,
        None,
        0,
        at(10, 0).day(),
    );
    let Ok(EventApplied::Applied {
        released: Some(rel), ..
    }) = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(rel.refunded, Money::cap(2.0).unwrap());
}

#[test]
fn the_position_counts_fills_and_open_orders_in_the_orders_direction() {
    let s = risky_snapshot();
    let l = Ledger::new();
    let n = |i: u64| Now {
        mono_ns: at(10, 0).mono_ns + i * 3 * S,
        ..at(10, 0)
    };
    let buy = |qty: f64| {
        let mut o = sell(qty, 1.0);
        o.side = TrdSide::BUY;
        risky_check(o, 1.0)
    };
    let first = decide(&s, &l, &n(0), &buy(100.0));
    let t = ticket(&first);
    l.order_event(t, OrderEventKind::PartiallyFilled, Some(40.0), Some(1.0), 0, 0)
        .unwrap();
    // The same fill again changes nothing.
    let dup = l
        .order_event(t, OrderEventKind::PartiallyFilled, Some(40.0), Some(1.0), 0, 0)
        .unwrap();
    assert!(matches!(dup, EventApplied::Duplicate { .. }));
    let key: KeyId = "risky".parse().unwrap();
    assert_eq!(l.position(&key, "HK.00700", true), Money::cap(100.0).unwrap());
    l.order_event(t, OrderEventKind::Filled, Some(100.0), Some(1.0), 0, 0)
        .unwrap();
    assert_eq!(l.position(&key, "HK.00700", true), Money::cap(100.0).unwrap());
    assert_eq!(l.open_orders(&key), 0);
    let v = decide(&s, &l, &n(1), &buy(60.0));
    assert_eq!(reason(&v), Some(Reason::Position));
    assert_eq!(
        v.decision.limit(),
        Some(&LimitFigures::Position {
            position_value: 100.0,
            order_value: 60.0,
            max_position_value: 150.0
        })
    );
    assert!(decide(&s, &l, &n(2), &buy(50.0)).decision.is_allow());
    // A sell reduces a long position: it is checked against the short side.
    let mut o = sell(150.0, 1.0);
    o.symbol = "HK.00700".into();
    let l2 = Ledger::new();
    assert!(decide(&s, &l2, &n(0), &risky_check(o, 1.0)).decision.is_allow());
}

#[test]
fn events_with_bad_figures_or_unknown_tickets_are_refused_and_change_nothing() {
    let s = risky_snapshot();
    let l = Ledger::new();
    let t = ticket(&decide(&s, &l, &at(10, 0), &risky_check(sell(10.0, 1.0), 1.0)));
    let refused = |r: Result<EventApplied, (OrderEventRefusal, String)>| r.unwrap_err().0;
    assert_eq!(
        refused(l.order_event(t, OrderEventKind::Filled, None, None, 0, 0)),
        OrderEventRefusal::BadFigures
    );
    assert_eq!(
        refused(l.order_event(t, OrderEventKind::Filled, Some(11.0), Some(1.0), 0, 0)),
        OrderEventRefusal::BadFigures
    );
    assert_eq!(
        refused(l.order_event(t, OrderEventKind::Cancelled, Some(1.0), None, 0, 0)),
        OrderEventRefusal::BadFigures
    );
    assert_eq!(
        refused(l.order_event(t ^ 1, OrderEventKind::Cancelled, None, None, 0, 0)),
        OrderEventRefusal::UnknownTicket
    );
    assert_eq!(l.open_orders(&"risky".parse().unwrap()), 1);
}

#[derive(Debug, Clone)]
enum Step {
    Order { qty: u8, buys: bool },
    Event { which: u8, kind: u8, qty: u8 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1u8..80, any::<bool>()).prop_map(|(qty, buys)| Step::Order { qty, buys }),
        (any::<u8>(), 0u8..5, 1u8..80).prop_map(|(which, kind, qty)| Step::Event { which, kind, qty }),
    ]
}

proptest! {
    /// Whatever the interleaving of orders and events (repeated ones too), the open
    /// orders never pass their cap, and the position an allow leaves never passes its
    /// cap when fills come at the limit price.
    #[test]
    fn caps_hold_under_any_interleaving_of_orders_and_events(steps in prop::collection::vec(step(), 1..60)) {
        let mut keys = example_keys();
        let mut k = risky();
        k.limits.max_open_orders = Some(3);
        k.limits.duplicate_window_ms = None;
        keys.push(k);
        let s = snapshot(keys);
        let l = Ledger::new();
        let key: KeyId = "risky".parse().unwrap();
        let mut tickets = Vec::new();
        for (i, st) in steps.iter().enumerate() {
            let now = Now { mono_ns: at(10, 0).mono_ns + i as u64 * S, ..at(10, 0) };
            match st {
                Step::Order { qty, buys } => {
                    let mut o = sell(f64::from(*qty), 1.0);
                    o.side = if *buys { TrdSide::BUY } else { TrdSide::SELL };
                    let v = decide(&s, &l, &now, &risky_check(o, 1.0));
                    if let Decision::Allow { ticket: Some(t), .. } = v.decision {
                        tickets.push((t, f64::from(*qty)));
                    }
                }
                Step::Event { which, kind, qty } if !tickets.is_empty() => {
                    let (t, order_qty) = tickets[*which as usize % tickets.len()];
                    let kind = OrderEventKind::ALL[*kind as usize];
                    let filled = f64::from(*qty).min(order_qty);
                    let fig = kind.is_fill().then_some(filled);
                    let price = kind.is_fill().then_some(1.0);
                    let first = l.order_event(t, kind, fig, price, now.mono_ns, now.day());
                    let open = l.open_orders(&key);
                    let long = l.position(&key, "HK.00700", true);
                    // The same event again changes nothing.
                    let again = l.order_event(t, kind, fig, price, now.mono_ns, now.day());
                    if first.is_ok() {
                        prop_assert!(matches!(again, Ok(EventApplied::Duplicate { .. })), "{kind}: {again:?}");
                    }
                    prop_assert_eq!(l.open_orders(&key), open);
                    prop_assert_eq!(l.position(&key, "HK.00700", true), long);
                }
                Step::Event { .. } => {}
            }
            prop_assert!(l.open_orders(&key) <= 3);
            let cap = Money::cap(150.0).unwrap();
            prop_assert!(l.position(&key, "HK.00700", true) <= cap);
            prop_assert!(l.position(&key, "HK.00700", false) <= cap);
        }
    }
}
