//! Pre-trade risk limits that follow orders after their check, end to end: `max_open_orders`
//! with order events freeing slots, `max_position_value` per symbol with fills,
//! `duplicate_window_ms`, all kept across `kill -9` and a restart.

mod daemon;

use std::time::Duration;

use daemon::*;
use futu_auth_proto::{
    Decision, LimitFigures, Market, Order, OrderEvent, OrderEventKind, OrderEventOutcome, OrderEventRefusal,
    Reason, Request, Response, TrdSide,
};
use futu_authd_tests::{
    away_from_utc_midnight, deny_reason, metric_value, order, token_for, Client, DaemonBuilder,
};
use nix::sys::signal::Signal;
use serde_json::json;

fn buy_700(qty: f64, price: f64) -> Option<Order> {
    Some(order(Market::HK, "HK.00700", TrdSide::BUY, qty, Some(price)))
}

fn buy_9988(qty: f64, price: f64) -> Option<Order> {
    Some(order(Market::HK, "HK.09988", TrdSide::BUY, qty, Some(price)))
}

/// Checks an order that must be allowed; returns its ticket.
async fn allowed(c: &mut Client, token: &str, o: Option<Order>) -> u64 {
    match c.check(token, "Trd_PlaceOrder", o).await {
        Decision::Allow { ticket: Some(t), .. } => t,
        other => panic!("expected an allow with a ticket, got {other:?}"),
    }
}

/// Sends an order event; returns what it came to.
async fn event(
    c: &mut Client,
    ticket: u64,
    kind: OrderEventKind,
    fill: Option<(f64, f64)>,
) -> OrderEventOutcome {
    let id = c.next_id();
    match c
        .request(Request::OrderEvent(OrderEvent {
            request_id: id,
            ticket,
            kind,
            filled_qty: fill.map(|f| f.0),
            fill_price: fill.map(|f| f.1),
        }))
        .await
    {
        Response::OrderEventDone { request_id, outcome } => {
            assert_eq!(request_id, id);
            outcome
        }
        other => panic!("an order event answered with {other:?}"),
    }
}

fn applied(o: &OrderEventOutcome) -> bool {
    matches!(o, OrderEventOutcome::Applied { .. })
}

fn duplicate(o: &OrderEventOutcome) -> bool {
    matches!(o, OrderEventOutcome::Duplicate { .. })
}

fn refused(o: &OrderEventOutcome) -> Option<OrderEventRefusal> {
    match o {
        OrderEventOutcome::Refused { reason, .. } => Some(*reason),
        _ => None,
    }
}

#[tokio::test]
async fn max_open_orders_refuses_the_next_order_until_an_event_frees_a_slot() {
    away_from_utc_midnight(5);
    let token = token_for("open");
    let d = DaemonBuilder::new(&[trader(
        "open",
        &token,
        json!({ "max_open_orders": 2, "max_daily_value": 100000 }),
    )])
    .start();
    let mut c = d.client().await;
    let a = allowed(&mut c, &token, sell_700(1.0, 100.0)).await;
    let b = allowed(&mut c, &token, sell_700(2.0, 100.0)).await;
    let third = c.check(&token, "Trd_PlaceOrder", sell_700(3.0, 100.0)).await;
    assert_eq!(deny_reason(&third), Reason::OpenOrders);
    match &third {
        Decision::Deny { limit, .. } => assert_eq!(
            *limit,
            Some(LimitFigures::OpenOrders {
                open_orders: 2,
                max_open_orders: 2
            })
        ),
        Decision::Allow { .. } => unreachable!(),
    }

    // Accepted and a partial fill leave the order open.
    assert!(applied(&event(&mut c, a, OrderEventKind::Accepted, None).await));
    assert!(duplicate(&event(&mut c, a, OrderEventKind::Accepted, None).await));
    assert!(applied(
        &event(&mut c, a, OrderEventKind::PartiallyFilled, Some((0.5, 100.0))).await
    ));
    assert_eq!(
        deny_reason(&c.check(&token, "Trd_PlaceOrder", sell_700(3.0, 100.0)).await),
        Reason::OpenOrders
    );
    // Filled frees a slot, once.
    assert!(applied(
        &event(&mut c, a, OrderEventKind::Filled, Some((1.0, 100.0))).await
    ));
    assert!(duplicate(
        &event(&mut c, a, OrderEventKind::Filled, Some((1.0, 100.0))).await
    ));
    let e = allowed(&mut c, &token, sell_700(3.0, 100.0)).await;
    assert_eq!(
        deny_reason(&c.check(&token, "Trd_PlaceOrder", sell_700(4.0, 100.0)).await),
        Reason::OpenOrders
    );
    // Cancelled frees one; so does Rejected, which also refunds the daily value.
    assert!(applied(&event(&mut c, b, OrderEventKind::Cancelled, None).await));
    assert!(duplicate(
        &event(&mut c, b, OrderEventKind::Cancelled, None).await
    ));
    let f = allowed(&mut c, &token, sell_700(4.0, 100.0)).await;
    match event(&mut c, e, OrderEventKind::Rejected, None).await {
        OrderEventOutcome::Applied {
            key_id,
            refunded_value,
        } => {
            assert_eq!((key_id.as_str(), refunded_value), ("open", 300.0));
        }
        other => panic!("a rejection: {other:?}"),
    }
    assert!(duplicate(&event(&mut c, e, OrderEventKind::Rejected, None).await));
    allowed(&mut c, &token, sell_700(5.0, 100.0)).await;
    assert_eq!(
        deny_reason(&c.check(&token, "Trd_PlaceOrder", sell_700(6.0, 100.0)).await),
        Reason::OpenOrders
    );
    // A fill of more than the order is refused; a ticket never handed out is unknown.
    assert_eq!(
        refused(&event(&mut c, f, OrderEventKind::Filled, Some((40.0, 100.0))).await),
        Some(OrderEventRefusal::BadFigures)
    );
    assert_eq!(
        refused(&event(&mut c, 0x1234_5678_9abc, OrderEventKind::Filled, Some((1.0, 1.0))).await),
        Some(OrderEventRefusal::UnknownTicket)
    );

    // Each event left an audit record.
    let records = d.audit_records();
    let events: Vec<_> = records.iter().filter(|r| r["kind"] == "order_event").collect();
    assert_eq!(events.len(), 11, "{events:#?}");
    assert!(events
        .iter()
        .any(|r| r["detail"] == "rejected: applied, refunded 300" && r["key_id"] == "open"));
    assert!(events
        .iter()
        .any(|r| r["error"] == "unknown_ticket" && r["outcome"] == "error"));
}

#[tokio::test]
async fn a_ticket_of_another_daemon_names_no_order() {
    away_from_utc_midnight(5);
    let token = token_for("open");
    let keys = [trader("open", &token, json!({ "max_open_orders": 2 }))];
    let one = DaemonBuilder::new(&keys).start();
    let other = DaemonBuilder::new(&keys).start();
    let mut c1 = one.client().await;
    let mut c2 = other.client().await;
    let foreign = allowed(&mut c2, &token, sell_700(1.0, 100.0)).await;
    let mine = allowed(&mut c1, &token, sell_700(1.0, 100.0)).await;
    assert_ne!(foreign, mine);
    assert_eq!(
        refused(&event(&mut c1, foreign, OrderEventKind::Cancelled, None).await),
        Some(OrderEventRefusal::UnknownTicket)
    );
    assert!(applied(
        &event(&mut c1, mine, OrderEventKind::Cancelled, None).await
    ));
}

#[tokio::test]
async fn max_position_value_counts_open_orders_and_fills_per_symbol() {
    away_from_utc_midnight(5);
    let token = token_for("pos");
    let d = DaemonBuilder::new(&[trader("pos", &token, json!({ "max_position_value": 1000 }))]).start();
    let mut c = d.client().await;
    let a = allowed(&mut c, &token, buy_700(5.0, 100.0)).await;
    let over = c.check(&token, "Trd_PlaceOrder", buy_700(6.0, 100.0)).await;
    assert_eq!(deny_reason(&over), Reason::Position);
    match &over {
        Decision::Deny { limit, .. } => assert_eq!(
            *limit,
            Some(LimitFigures::Position {
                position_value: 500.0,
                order_value: 600.0,
                max_position_value: 1000.0
            })
        ),
        Decision::Allow { .. } => unreachable!(),
    }
    // Another symbol has a position of its own.
    allowed(&mut c, &token, buy_9988(9.0, 100.0)).await;
    // A partial fill keeps the position (filled plus open); a full fill at a lower price
    // lowers it.
    assert!(applied(
        &event(&mut c, a, OrderEventKind::PartiallyFilled, Some((2.0, 100.0))).await
    ));
    assert_eq!(
        deny_reason(&c.check(&token, "Trd_PlaceOrder", buy_700(6.0, 100.0)).await),
        Reason::Position
    );
    assert!(applied(
        &event(&mut c, a, OrderEventKind::Filled, Some((5.0, 80.0))).await
    ));
    allowed(&mut c, &token, buy_700(6.0, 100.0)).await; // 400 held + 600 open
    assert_eq!(
        deny_reason(&c.check(&token, "Trd_PlaceOrder", buy_700(1.0, 1.0)).await),
        Reason::Position
    );
    // Selling what is held is not capped by the long position.
    allowed(&mut c, &token, sell_700(4.0, 100.0)).await;
}

#[tokio::test]
async fn a_duplicate_within_the_window_is_refused_and_allowed_after_it() {
    away_from_utc_midnight(5);
    let token = token_for("dup");
    let d = DaemonBuilder::new(&[trader("dup", &token, json!({ "duplicate_window_ms": 500 }))]).start();
    let mut c = d.client().await;
    allowed(&mut c, &token, sell_700(1.0, 100.0)).await;
    let again = c.check(&token, "Trd_PlaceOrder", sell_700(1.0, 100.0)).await;
    assert_eq!(deny_reason(&again), Reason::Duplicate);
    // Another quantity is another order.
    allowed(&mut c, &token, sell_700(2.0, 100.0)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    allowed(&mut c, &token, sell_700(1.0, 100.0)).await;
}

#[tokio::test]
async fn kill_9_and_restart_keep_open_orders_positions_and_duplicates() {
    away_from_utc_midnight(5);
    let token = token_for("risk");
    let mut d = DaemonBuilder::new(&[trader(
        "risk",
        &token,
        json!({ "max_open_orders": 2, "max_position_value": 1000, "duplicate_window_ms": 60000 }),
    )])
    .start();
    let (a, b) = {
        let mut c = d.client().await;
        let a = allowed(&mut c, &token, buy_700(3.0, 100.0)).await;
        let b = allowed(&mut c, &token, buy_700(4.0, 100.0)).await;
        assert!(applied(
            &event(&mut c, a, OrderEventKind::Filled, Some((3.0, 100.0))).await
        ));
        (a, b)
    };
    d.signal(Signal::SIGKILL);
    d.wait_exit();
    d.restart();

    // futucli usage shows them as the ledger rebuilt them: one order open, 300 filled and
    // 400 open long in HK.00700.
    let usage = d.futucli().args(["usage", "risk"]).output().unwrap();
    let usage = String::from_utf8_lossy(&usage.stdout).into_owned();
    assert!(usage.contains("\nopen orders: 1 of 2"), "{usage}");
    assert!(
        usage.contains("\nposition HK.00700: long 700, short 0 (each with its open orders) of 1000"),
        "{usage}"
    );

    let mut c = d.client().await;
    // 300 filled + 400 open: 400 more would pass 1000.
    assert_eq!(
        deny_reason(&c.check(&token, "Trd_PlaceOrder", buy_700(4.0, 101.0)).await),
        Reason::Position
    );
    assert_eq!(
        deny_reason(&c.check(&token, "Trd_PlaceOrder", buy_700(4.0, 100.0)).await),
        Reason::Duplicate,
        "the order sent before the kill is still in its window"
    );
    let c2 = allowed(&mut c, &token, buy_700(1.0, 100.0)).await;
    assert_eq!(
        deny_reason(&c.check(&token, "Trd_PlaceOrder", sell_700(1.0, 100.0)).await),
        Reason::OpenOrders
    );
    // Events for orders from before the kill: a finished one is a duplicate.
    assert!(duplicate(
        &event(&mut c, a, OrderEventKind::Filled, Some((3.0, 100.0))).await
    ));
    assert!(applied(&event(&mut c, b, OrderEventKind::Cancelled, None).await));
    drop(c);

    // A clean restart (the journal compacted into the base) keeps them too.
    d.stop();
    d.restart();
    let mut c = d.client().await;
    allowed(&mut c, &token, sell_700(1.0, 100.0)).await;
    assert_eq!(
        deny_reason(&c.check(&token, "Trd_PlaceOrder", sell_700(2.0, 100.0)).await),
        Reason::OpenOrders
    );
    assert!(duplicate(
        &event(&mut c, b, OrderEventKind::Cancelled, None).await
    ));
    assert!(applied(
        &event(&mut c, c2, OrderEventKind::Filled, Some((1.0, 100.0))).await
    ));
    // 400 filled: 600 more fits, 601 does not.
    assert_eq!(
        deny_reason(&c.check(&token, "Trd_PlaceOrder", buy_700(6.01, 100.0)).await),
        Reason::Position
    );
    allowed(&mut c, &token, buy_700(6.0, 100.0)).await;
}

#[tokio::test]
async fn order_events_are_counted_by_kind_and_outcome() {
    away_from_utc_midnight(5);
    let token = token_for("open");
    let d = DaemonBuilder::new(&[trader("open", &token, json!({ "max_open_orders": 2 }))])
        .metrics()
        .start();
    let mut c = d.client().await;
    let a = allowed(&mut c, &token, sell_700(1.0, 100.0)).await;
    assert!(applied(&event(&mut c, a, OrderEventKind::Accepted, None).await));
    assert!(applied(
        &event(&mut c, a, OrderEventKind::PartiallyFilled, Some((0.5, 100.0))).await
    ));
    assert!(applied(
        &event(&mut c, a, OrderEventKind::Filled, Some((1.0, 100.0))).await
    ));
    assert!(duplicate(
        &event(&mut c, a, OrderEventKind::Filled, Some((1.0, 100.0))).await
    ));
    let b = allowed(&mut c, &token, sell_700(2.0, 100.0)).await;
    assert_eq!(
        refused(&event(&mut c, b, OrderEventKind::Filled, Some((3.0, 100.0))).await),
        Some(OrderEventRefusal::BadFigures)
    );
    assert_eq!(
        refused(&event(&mut c, 0x1234_5678_9abc, OrderEventKind::Cancelled, None).await),
        Some(OrderEventRefusal::UnknownTicket)
    );
    let text = d.wait_metrics(|t| t.contains("futu_auth_order_events_total{"));
    let count = |kind: &str, outcome: &str| {
        metric_value(
            &text,
            "futu_auth_order_events_total",
            &[("kind", kind), ("outcome", outcome)],
        )
    };
    assert_eq!(count("accepted", "applied"), Some(1.0), "{text}");
    assert_eq!(count("partially_filled", "applied"), Some(1.0), "{text}");
    assert_eq!(count("filled", "applied"), Some(1.0), "{text}");
    assert_eq!(count("filled", "duplicate"), Some(1.0), "{text}");
    assert_eq!(count("filled", "bad_figures"), Some(1.0), "{text}");
    assert_eq!(count("cancelled", "unknown_ticket"), Some(1.0), "{text}");
    assert_eq!(
        count("rejected", "applied"),
        None,
        "no sample for what never came"
    );
    // The audit records say the same, each with its event.
    let events: Vec<_> = d
        .audit_records()
        .into_iter()
        .filter(|r| r["kind"] == "order_event")
        .collect();
    assert_eq!(events.len(), 6);
    assert_eq!(
        events[2]["event"],
        json!({"kind": "filled", "filled_qty": 1.0, "fill_price": 100.0})
    );
    assert_eq!(events[2]["ticket"], a);
    assert_eq!(
        events[5]["event"],
        json!({"kind": "cancelled", "filled_qty": null, "fill_price": null})
    );
}
