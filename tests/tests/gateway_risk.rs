//! futu-authd's pre-trade risk limits (protocol version 6) through futu-gw-demo's real
//! front-ends and their real clients: the gateway passes each order's account and its
//! reference price (the demo's quote) into the check, and reports what becomes of each
//! order (accepted, filled a second later, or left open and cancelled), so that the
//! daemon's ledger follows open orders and positions.
//!
//! Over REST (curl), every control: `allowed_acc_ids` (orders and account reads),
//! `max_price_deviation_pct`, `max_open_orders` with cancels, `max_position_value` with
//! fills, `duplicate_window_ms`, and the admin routes. Over gRPC (grpcio) `account` and
//! `open_orders` with a cancel; over WebSocket (`websockets`) `price_collar` and
//! `duplicate`; over MCP (the Python SDK, streamable HTTP) `account` and `position`.
//! Each refusal is checked for its status, reason and figures.

mod gw;

use futu_authd_tests::{key_json, token_for, DaemonBuilder};
use gw::*;
use serde_json::{json, Value};

/// The account the keys below may trade in.
const ACC: u64 = 281_756;

/// The demo's quote of HK.00700, the reference price of its orders.
const QUOTE_700: f64 = 388.2;

fn the_order() -> Value {
    order("HK.00700", 100.0, QUOTE_700)
}

// ---- REST: every control -----------------------------------------------------------------

#[test]
fn rest_allowed_acc_ids_refuse_orders_and_reads_of_another_account_or_none() {
    if !have_curl() {
        return;
    }
    let d = DaemonBuilder::new(&[trader("acct", json!({ "allowed_acc_ids": [ACC] }))]).start();
    let gw = Gateway::start(&d.socket_path());
    let t = token_for("acct");

    let r = post_order(&gw, &t, &in_account(the_order(), ACC));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["status"], "accepted", "{r:?}");

    let r = post_order(&gw, &t, &in_account(the_order(), 999));
    assert_eq!((r.status, r.reason().as_str()), (403, "account"), "{r:?}");
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("account 999 is not in allowed_acc_ids"),
        "{r:?}"
    );
    let r = post_order(&gw, &t, &the_order());
    assert_eq!((r.status, r.reason().as_str()), (403, "account"), "{r:?}");
    assert!(
        r.json()["detail"].as_str().unwrap().contains("names no account"),
        "{r:?}"
    );

    // An account read names its account in the query; the layer checks it.
    let r = get(&gw, &format!("/api/funds?acc_id={ACC}"), Some(&t));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["acc_id"], ACC, "{r:?}");
    let r = get(&gw, "/api/funds?acc_id=999", Some(&t));
    assert_eq!((r.status, r.reason().as_str()), (403, "account"), "{r:?}");
    let r = get(&gw, "/api/funds", Some(&t));
    assert_eq!((r.status, r.reason().as_str()), (403, "account"), "{r:?}");
    let r = get(&gw, "/api/funds?acc_id=abc", Some(&t));
    assert_eq!((r.status, r.reason().as_str()), (400, "bad_request"), "{r:?}");
    // Quotes name no account and need none.
    let r = get(&gw, "/api/quote?symbol=HK.00700", Some(&t));
    assert_eq!(r.status, 200, "{r:?}");
}

#[test]
fn rest_a_limit_price_beyond_the_collar_around_the_demos_quote_is_refused_with_figures() {
    if !have_curl() {
        return;
    }
    let d = DaemonBuilder::new(&[trader("collar", json!({ "max_price_deviation_pct": 5 }))]).start();
    let gw = Gateway::start(&d.socket_path());
    let t = token_for("collar");

    // 4 % above the quote: inside.
    let r = post_order(&gw, &t, &order("HK.00700", 100.0, 403.7));
    assert_eq!(r.status, 200, "{r:?}");
    // 420 is 8.19 % above 388.2.
    let r = post_order(&gw, &t, &order("HK.00700", 100.0, 420.0));
    assert_eq!((r.status, r.reason().as_str()), (403, "price_collar"), "{r:?}");
    assert_eq!(r.header("retry-after"), None, "{r:?}");
    let body = r.json();
    let figures = &body["limit"]["price_collar"];
    assert_eq!(figures["price"], 420.0, "{body}");
    assert_eq!(figures["ref_price"], QUOTE_700, "{body}");
    assert_eq!(figures["max_price_deviation_pct"], 5.0, "{body}");
    let pct = figures["deviation_pct"].as_f64().unwrap();
    assert!((pct - 8.19).abs() < 0.01, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("reference price 388.2"),
        "{body}"
    );
    // Below the collar too.
    let r = post_order(&gw, &t, &order("HK.00700", 100.0, 360.0));
    assert_eq!((r.status, r.reason().as_str()), (403, "price_collar"), "{r:?}");
    // A symbol the demo has no quote of: no reference price, refused.
    let r = post_order(&gw, &t, &order("HK.00005", 100.0, 60.0));
    assert_eq!((r.status, r.reason().as_str()), (403, "price_collar"), "{r:?}");
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("no reference price"),
        "{r:?}"
    );
    // A market order has no price to compare.
    let mut market = the_order();
    market["price"] = Value::Null;
    let r = post_order(&gw, &t, &market);
    assert_eq!((r.status, r.reason().as_str()), (400, "bad_order"), "{r:?}");
}

#[test]
fn rest_max_open_orders_holds_open_orders_and_a_cancel_frees_a_place() {
    if !have_curl() {
        return;
    }
    let d = DaemonBuilder::new(&[
        trader("open", json!({ "max_open_orders": 2 })),
        trader("other", json!({})),
    ])
    .start();
    let gw = Gateway::builder(&d.socket_path()).arg("--leave-open").start();
    let t = token_for("open");

    let first = post_order(&gw, &t, &the_order());
    assert_eq!(first.status, 200, "{first:?}");
    let first_id = first.json()["order_id"].as_u64().unwrap();
    let r = post_order(&gw, &t, &order("HK.00700", 200.0, QUOTE_700));
    assert_eq!(r.status, 200, "{r:?}");

    let r = post_order(&gw, &t, &order("HK.00700", 300.0, QUOTE_700));
    assert_eq!((r.status, r.reason().as_str()), (429, "open_orders"), "{r:?}");
    assert_eq!(r.header("retry-after"), None, "fewer once orders finish: {r:?}");
    let body = r.json();
    assert_eq!(body["limit"]["open_orders"]["open_orders"], 2, "{body}");
    assert_eq!(body["limit"]["open_orders"]["max_open_orders"], 2, "{body}");

    // Another key cannot cancel it; its own key can, once.
    let r = post_json(
        &gw,
        "/api/order/cancel",
        &token_for("other"),
        &json!({ "order_id": first_id }),
    );
    assert_eq!((r.status, r.reason().as_str()), (404, "no_order"), "{r:?}");
    let r = post_json(&gw, "/api/order/cancel", &t, &json!({ "order_id": first_id }));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["status"], "cancelled", "{r:?}");
    let r = post_json(&gw, "/api/order/cancel", &t, &json!({ "order_id": first_id }));
    assert_eq!((r.status, r.reason().as_str()), (404, "no_order"), "{r:?}");

    // The cancel freed a place.
    let r = post_order(&gw, &t, &order("HK.00700", 300.0, QUOTE_700));
    assert_eq!(r.status, 200, "{r:?}");
    let r = post_order(&gw, &t, &order("HK.00700", 400.0, QUOTE_700));
    assert_eq!((r.status, r.reason().as_str()), (429, "open_orders"), "{r:?}");
}

#[test]
fn rest_fills_accumulate_in_the_position_until_the_next_buy_is_refused() {
    if !have_curl() {
        return;
    }
    // Each order is 100 × 388.2 = 38 820: two fit in 100 000, a third does not.
    let d = DaemonBuilder::new(&[trader("pos", json!({ "max_position_value": 100000 }))]).start();
    let gw = Gateway::start(&d.socket_path());
    let t = token_for("pos");

    for _ in 0..2 {
        let r = post_order(&gw, &t, &the_order());
        assert_eq!(r.status, 200, "{r:?}");
        wait_filled(&gw, r.json()["order_id"].as_u64().unwrap());
    }
    let r = post_order(&gw, &t, &the_order());
    assert_eq!((r.status, r.reason().as_str()), (403, "position"), "{r:?}");
    let body = r.json();
    let figures = &body["limit"]["position"];
    assert_eq!(figures["max_position_value"], 100000.0, "{body}");
    assert_eq!(figures["order_value"], 38820.0, "{body}");
    let held = figures["position_value"].as_f64().unwrap();
    assert!((held - 77640.0).abs() < 0.01, "both fills count: {body}");
}

#[test]
fn rest_the_same_order_twice_within_the_window_is_a_duplicate() {
    if !have_curl() {
        return;
    }
    let d = DaemonBuilder::new(&[trader("dup", json!({ "duplicate_window_ms": 60000 }))]).start();
    let gw = Gateway::start(&d.socket_path());
    let t = token_for("dup");

    let r = post_order(&gw, &t, &the_order());
    assert_eq!(r.status, 200, "{r:?}");
    let r = post_order(&gw, &t, &the_order());
    assert_eq!((r.status, r.reason().as_str()), (429, "duplicate"), "{r:?}");
    let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry), "{r:?}");
    let body = r.json();
    assert_eq!(body["limit"]["duplicate"]["duplicate_window_ms"], 60000, "{body}");
    // Another quantity is another order.
    let r = post_order(&gw, &t, &order("HK.00700", 200.0, QUOTE_700));
    assert_eq!(r.status, 200, "{r:?}");
}

#[test]
fn rest_admin_routes_need_the_admin_scope() {
    if !have_curl() {
        return;
    }
    let d = DaemonBuilder::new(&[
        trader("trader", json!({})),
        key_json("ops", &token_for("ops"), &["admin"]),
    ])
    .start();
    let gw = Gateway::start(&d.socket_path());
    let (trader, ops) = (token_for("trader"), token_for("ops"));

    let r = get(&gw, "/api/admin/status", Some(&trader));
    assert_eq!((r.status, r.reason().as_str()), (403, "scope"), "{r:?}");
    let r = post_json(&gw, "/api/admin/reload", &trader, &json!({}));
    assert_eq!((r.status, r.reason().as_str()), (403, "scope"), "{r:?}");
    let r = get(&gw, "/api/admin/status", None);
    assert_eq!((r.status, r.reason().as_str()), (401, "no_token"), "{r:?}");

    let r = post_order(&gw, &trader, &the_order());
    assert_eq!(r.status, 200, "{r:?}");
    let r = get(&gw, "/api/admin/status", Some(&ops));
    assert_eq!(r.status, 200, "{r:?}");
    let status = r.json();
    assert_eq!(status["orders"]["accepted"], 1, "{status}");
    assert_eq!(status["fill_after_ms"], 1000, "{status}");
    let r = post_json(&gw, "/api/admin/reload", &ops, &json!({}));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["reloaded"], true, "{r:?}");
    // An admin key is no trader.
    let r = post_order(&gw, &ops, &the_order());
    assert_eq!((r.status, r.reason().as_str()), (403, "scope"), "{r:?}");
}

// ---- gRPC, WebSocket, MCP ----------------------------------------------------------------

#[test]
fn grpc_account_and_open_orders_with_a_cancel() {
    let Some(py) = grpc_client() else { return };
    let d = DaemonBuilder::new(&[trader(
        "grpc",
        json!({ "allowed_acc_ids": [ACC], "max_open_orders": 1 }),
    )])
    .start();
    let gw = Gateway::builder(&d.socket_path()).arg("--leave-open").start();
    let t = token_for("grpc");
    let mine = in_account(the_order(), ACC);

    let r = py.calls(
        &gw,
        &[
            call(FUNDS, json!({ "acc_id": 999 }), Some(&t)),
            call(FUNDS, json!({}), Some(&t)),
            call(FUNDS, json!({ "acc_id": ACC }), Some(&t)),
            call(ORDER, in_account(the_order(), 999), Some(&t)),
            call(ORDER, mine.clone(), Some(&t)),
            call(
                ORDER,
                in_account(order("HK.00700", 200.0, QUOTE_700), ACC),
                Some(&t),
            ),
        ],
    );
    for (i, reason) in [(0, "account"), (1, "account"), (3, "account")] {
        assert_eq!(r[i]["code"], "PERMISSION_DENIED", "{}", r[i]);
        assert_eq!(r[i]["metadata"]["futu-reason"], reason, "{}", r[i]);
    }
    assert_eq!(r[2]["code"], "OK", "{}", r[2]);
    assert_eq!(r[2]["body"]["acc_id"], ACC, "{}", r[2]);
    assert_eq!(r[4]["code"], "OK", "{}", r[4]);
    let order_id = r[4]["body"]["order_id"].as_u64().unwrap();
    assert_eq!(r[5]["code"], "RESOURCE_EXHAUSTED", "{}", r[5]);
    assert_eq!(r[5]["metadata"]["futu-reason"], "open_orders", "{}", r[5]);
    assert!(
        r[5]["details"].as_str().unwrap().contains("max_open_orders"),
        "{}",
        r[5]
    );

    let r = py.calls(
        &gw,
        &[
            call(CANCEL, json!({ "order_id": order_id }), Some(&t)),
            call(CANCEL, json!({ "order_id": order_id }), Some(&t)),
            call(
                ORDER,
                in_account(order("HK.00700", 200.0, QUOTE_700), ACC),
                Some(&t),
            ),
        ],
    );
    assert_eq!(r[0]["code"], "OK", "{}", r[0]);
    assert_eq!(r[0]["body"]["status"], "cancelled", "{}", r[0]);
    assert_eq!(r[1]["code"], "NOT_FOUND", "{}", r[1]);
    assert_eq!(r[2]["code"], "OK", "the cancel freed the place: {}", r[2]);
}

#[test]
fn ws_price_collar_and_duplicate() {
    let Some(py) = python() else { return };
    let d = DaemonBuilder::new(&[trader(
        "wsrisk",
        json!({ "max_price_deviation_pct": 5, "duplicate_window_ms": 60000 }),
    )])
    .start();
    let gw = Gateway::start(&d.socket_path());
    let mut socket = ws(&py, &gw, &token_for("wsrisk"));
    assert_eq!(socket.hello["open"], true, "{}", socket.hello);

    let r = socket.ask(ws_request(1, ORDER, order("HK.00700", 100.0, 420.0)));
    let error = &r["answer"]["error"];
    assert_eq!(error["reason"], "price_collar", "{r}");
    let detail = error["detail"].as_str().unwrap();
    assert!(
        detail.contains("price 420")
            && detail.contains("reference price 388.2")
            && detail.contains("max_price_deviation_pct is 5"),
        "{r}"
    );
    assert_eq!(error["limit"]["price_collar"]["ref_price"], QUOTE_700, "{r}");

    let r = socket.ask(ws_request(2, ORDER, the_order()));
    assert!(r["answer"]["ok"]["order_id"].as_u64().is_some(), "{r}");
    let r = socket.ask(ws_request(3, ORDER, the_order()));
    let error = &r["answer"]["error"];
    assert_eq!(error["reason"], "duplicate", "{r}");
    assert!(
        error["retry_after_ms"].as_u64().is_some_and(|ms| ms <= 60000),
        "{r}"
    );
    assert_eq!(
        r["closed"],
        Value::Null,
        "a refusal does not close the socket: {r}"
    );
}

#[test]
fn mcp_account_and_position() {
    let Some(py) = python() else { return };
    // 100 × 388.2 = 38 820: one fits in 50 000, a second does not.
    let d = DaemonBuilder::new(&[trader(
        "mcprisk",
        json!({ "allowed_acc_ids": [ACC], "max_position_value": 50000 }),
    )])
    .start();
    let gw = Gateway::start(&d.socket_path());
    let mut mcp = mcp_http(&py, &gw, &token_for("mcprisk"));

    let denied = tool_error(&mcp.ask(tool("place_order", the_order())));
    assert_eq!(denied["reason"], "account", "{denied}");
    let denied = tool_error(&mcp.ask(tool("get_funds", json!({ "acc_id": 999 }))));
    assert_eq!(denied["reason"], "account", "{denied}");
    let r = mcp.ask(tool("get_funds", json!({ "acc_id": ACC })));
    assert_eq!(r["is_error"], false, "{r}");

    let r = mcp.ask(tool("place_order", in_account(the_order(), ACC)));
    assert_eq!(r["is_error"], false, "{r}");
    let ack: Value = serde_json::from_str(r["text"].as_str().unwrap()).unwrap();
    wait_filled(&gw, ack["order_id"].as_u64().unwrap());
    let denied = tool_error(&mcp.ask(tool("place_order", in_account(the_order(), ACC))));
    assert_eq!(denied["reason"], "position", "{denied}");
    assert_eq!(
        denied["limit"]["position"]["max_position_value"], 50000.0,
        "{denied}"
    );
    // The filled order is no longer open: nothing to cancel.
    let failed = tool_error(&mcp.ask(tool("cancel_order", json!({ "order_id": ack["order_id"] }))));
    assert_eq!(failed["reason"], "no_order", "{failed}");
}
