//! The four front-ends of one gateway — REST, gRPC, WebSocket, MCP — over one futu-authd
//! and its one ledger, each through the client it would meet in the field: curl, Python's
//! grpcio, Python's `websockets` (tests/python/ws_client.py) and the official MCP Python
//! SDK, over streamable HTTP and over stdio (tests/python/mcp_client.py). `make deps`
//! puts the Python packages in `target/venv`; a missing one skips the test with the
//! reason, which `FUTU_TEST_STRICT=1` turns into a failure.

mod gw;

use futu_authd_tests::{futucli_command, key_json, metric_value, poll, token_for, DaemonBuilder};
use gw::*;
use serde_json::{json, Value};

// ---- the tests --------------------------------------------------------------------------

#[test]
fn five_orders_a_minute_hold_across_all_four_front_ends() {
    let Some(py) = python() else { return };
    if !have_curl() {
        return;
    }
    let d = DaemonBuilder::new(&[trader("bot", json!({"max_orders_per_minute": 5}))])
        .metrics()
        .start();
    let gw = Gateway::start(&d.socket_path());
    let bot = token_for("bot");
    let o = order("HK.00700", 100.0, 388.2);

    // Two over REST, one over each of the others: five, all allowed.
    for _ in 0..2 {
        let r = post_order(&gw, &bot, &o);
        assert_eq!(r.status, 200, "{r:?}");
    }
    let r = py.one(&gw, call(ORDER, o.clone(), Some(&bot)));
    assert_eq!(r["code"], "OK", "{r}");
    let mut socket = ws(&py, &gw, &bot);
    assert_eq!(socket.hello["open"], true, "{}", socket.hello);
    let r = socket.ask(ws_request(1, ORDER, o.clone()));
    assert_eq!(r["answer"]["id"], 1, "{r}");
    assert!(r["answer"]["ok"]["order_id"].as_u64().is_some(), "{r}");
    let mut mcp = mcp_http(&py, &gw, &bot);
    let r = mcp.ask(tool("place_order", o.clone()));
    assert_eq!(r["is_error"], false, "{r}");

    // The sixth, on any of the four: `rate`, with when to try again.
    let r = post_order(&gw, &bot, &o);
    assert_eq!((r.status, r.reason().as_str()), (429, "rate"), "{r:?}");
    let r = py.one(&gw, call(ORDER, o.clone(), Some(&bot)));
    assert_eq!(r["code"], "RESOURCE_EXHAUSTED", "{r}");
    assert_eq!(r["metadata"]["futu-reason"], "rate", "{r}");
    let r = socket.ask(ws_request(2, ORDER, o.clone()));
    let error = &r["answer"]["error"];
    assert_eq!(r["answer"]["id"], 2, "{r}");
    assert_eq!(error["reason"], "rate", "{r}");
    assert!(error["detail"].as_str().is_some_and(|d| !d.is_empty()), "{r}");
    assert!(error["retry_after_ms"].as_u64().is_some(), "{r}");
    let denied = tool_error(&mcp.ask(tool("place_order", o.clone())));
    assert_eq!(denied["reason"], "rate", "{denied}");
    assert!(denied["retry_after_ms"].as_u64().is_some(), "{denied}");
    assert!(denied["detail"]
        .as_str()
        .is_some_and(|d| d.contains("max_orders_per_minute")));

    // The daemon's audit: five allowed orders and four refused, by front-end.
    let records = poll("the audit of nine orders", || {
        let recs: Vec<Value> = d
            .audit_records()
            .into_iter()
            .filter(|r| {
                r["kind"] == "check"
                    && r["endpoint"]
                        .as_str()
                        .is_some_and(|e| e == "Trd_PlaceOrder" || e == "2202")
            })
            .collect();
        (recs.len() >= 9).then_some(recs)
    });
    let allowed_by = |iface: &str| {
        records
            .iter()
            .filter(|r| r["outcome"] == "allow" && r["iface"] == iface)
            .count()
    };
    assert_eq!(
        [
            allowed_by("rest"),
            allowed_by("grpc"),
            allowed_by("ws"),
            allowed_by("mcp")
        ],
        [2, 1, 1, 1],
        "{records:?}"
    );
    for iface in ["rest", "grpc", "ws", "mcp"] {
        let refused = records
            .iter()
            .filter(|r| r["iface"] == iface && r["reason"] == "rate")
            .count();
        assert_eq!(refused, 1, "{iface}: {records:?}");
    }

    // And the metrics count each front-end.
    let text = d.metrics_text();
    for iface in ["rest", "grpc", "ws", "mcp"] {
        let allowed = metric_value(
            &text,
            "futu_auth_events_total",
            &[("iface", iface), ("outcome", "allow"), ("key_id", "bot")],
        );
        assert!(allowed.is_some_and(|n| n >= 1.0), "{iface}: {text}");
    }
}

#[test]
fn a_quote_reader_on_ws_gets_quotes_and_no_order_updates() {
    let Some(py) = python() else { return };
    let d = DaemonBuilder::new(&[key_json("reader", &token_for("reader"), &["qot:read"])])
        .metrics()
        .start();
    let gw = Gateway::start(&d.socket_path());
    let reader = token_for("reader");

    // Refused before the upgrade, never after.
    let none = Script::spawn({
        let mut cmd = script(&py, "ws_client.py");
        cmd.arg(format!("ws://{}/ws", gw.rest));
        cmd
    });
    assert_eq!(none.hello["refused"], 401, "{}", none.hello);
    let unknown = ws(&py, &gw, &token_for("nobody"));
    assert_eq!(unknown.hello["refused"], 401, "{}", unknown.hello);
    assert!(
        unknown.hello["body"].as_str().unwrap().contains("unknown_key"),
        "{}",
        unknown.hello
    );

    let mut socket = ws_query(&py, &gw, &reader);
    assert_eq!(socket.hello["open"], true, "{}", socket.hello);
    let heard = socket.ask(json!({"listen_ms": 1500}));
    let quotes = heard["pushes"]["3005"].as_u64().unwrap_or(0);
    assert!(quotes >= 5, "a quote every 100 ms: {heard}");
    assert!(heard["pushes"].get("2208").is_none(), "no order updates: {heard}");
    assert_eq!(heard["closed"], Value::Null, "{heard}");

    // A request it may make, and one it may not: an answer each, the socket stays open.
    let r = socket.ask(ws_request(1, QOT, quote_body()));
    assert_eq!(r["answer"]["ok"]["symbol"], "HK.00700", "{r}");
    let r = socket.ask(ws_request(2, FUNDS, json!({})));
    assert_eq!(r["answer"]["error"]["reason"], "scope", "{r}");
    assert_eq!(r["closed"], Value::Null, "{r}");

    let held_back = poll("futu_ws_filtered_pushes_total for reader", || {
        metric_value(
            &d.metrics_text(),
            "futu_ws_filtered_pushes_total",
            &[("required_scope", "trade"), ("key_id", "reader")],
        )
        .filter(|n| *n >= 5.0)
    });
    assert!(held_back >= 5.0);
    assert!(
        !gw.stderr().contains(reader.as_str()),
        "a key in the gateway's log"
    );
}

#[test]
fn revoking_a_key_closes_its_socket_at_once_and_refuses_its_next_calls_everywhere() {
    let Some(py) = python() else { return };
    if !have_curl() {
        return;
    }
    let d = DaemonBuilder::new(&[
        key_json("leaving", &token_for("leaving"), &["qot:read"]),
        key_json("staying", &token_for("staying"), &["qot:read"]),
    ])
    .start();
    let gw = Gateway::start(&d.socket_path());
    let leaving = token_for("leaving");

    let mut socket = ws(&py, &gw, &leaving);
    assert_eq!(socket.hello["open"], true, "{}", socket.hello);
    let mut staying = ws(&py, &gw, &token_for("staying"));
    let mut http = mcp_http(&py, &gw, &leaving);
    let mut stdio = mcp_stdio(&py, &d.socket_path(), &leaving);
    for s in [&mut http, &mut stdio] {
        let r = s.ask(tool("get_quote", quote_body()));
        assert_eq!(r["is_error"], false, "{r}");
    }

    let out = futucli_command()
        .arg("--socket")
        .arg(d.socket_path())
        .args(["revoke-key", "leaving"])
        .output()
        .expect("run futucli");
    let revoked_at = now_ms();
    assert!(
        out.status.success(),
        "futucli revoke-key: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let closed = socket.ask(json!({"wait_close_ms": 3000}))["closed"].clone();
    assert_eq!(closed["code"], 1008, "{closed}");
    assert_eq!(closed["reason"], "unknown_key", "{closed}");
    let after = closed["at_ms"].as_f64().unwrap() - revoked_at;
    assert!(after < 1000.0, "closed {after:.0} ms after the revoke");
    let heard = staying.ask(json!({"listen_ms": 300}));
    assert_eq!(
        heard["closed"],
        Value::Null,
        "another key's socket stays: {heard}"
    );

    // Its next call is refused on every front-end.
    // Over streamable HTTP the layer refuses the HTTP request itself: 401, unknown_key.
    let r = http.ask(tool("get_quote", quote_body()));
    assert_eq!(r["http_status"], 401, "{r}");
    let body: Value = serde_json::from_str(r["http_body"].as_str().unwrap()).unwrap();
    assert_eq!(body["reason"], "unknown_key", "{r}");
    let r = stdio.ask(tool("get_quote", quote_body()));
    assert_eq!(tool_error(&r)["reason"], "unknown_key", "{r}");
    let r = get(&gw, "/api/quote?symbol=HK.00700", Some(&leaving));
    assert_eq!((r.status, r.reason().as_str()), (401, "unknown_key"), "{r:?}");
    let r = py.one(&gw, call(QOT, quote_body(), Some(&leaving)));
    assert_eq!(r["metadata"]["futu-reason"], "unknown_key", "{r}");
    let again = ws(&py, &gw, &leaving);
    assert_eq!(again.hello["refused"], 401, "{}", again.hello);
}

#[test]
fn an_mcp_tool_call_without_trade_unlock_is_a_tool_error_and_the_session_goes_on() {
    let Some(py) = python() else { return };
    let d = DaemonBuilder::new(&[
        trader("bot", json!({})),
        key_json("unlocker", &token_for("unlocker"), &["trade:unlock"]),
    ])
    .start();
    let gw = Gateway::start(&d.socket_path());
    let bot = token_for("bot");

    let mut http = mcp_http(&py, &gw, &bot);
    assert_eq!(
        http.hello["tools"],
        json!([
            "cancel_order",
            "get_funds",
            "get_quote",
            "place_order",
            "unlock_trade"
        ]),
        "{}",
        http.hello
    );
    let mut stdio = mcp_stdio(&py, &d.socket_path(), &bot);
    for s in [&mut http, &mut stdio] {
        let denied = tool_error(&s.ask(tool("unlock_trade", json!({}))));
        assert_eq!(denied["reason"], "scope", "{denied}");
        assert!(
            denied["detail"]
                .as_str()
                .is_some_and(|d| d.contains("trade:unlock")),
            "{denied}"
        );
        assert_eq!(denied["retry_after_ms"], Value::Null, "{denied}");
        let r = s.ask(tool("get_funds", json!({})));
        assert_eq!(r["is_error"], false, "the session goes on: {r}");
        let funds: Value = serde_json::from_str(r["text"].as_str().unwrap()).unwrap();
        assert_eq!(funds["key_id"], "bot");
    }

    let mut unlocker = mcp_http(&py, &gw, &token_for("unlocker"));
    let r = unlocker.ask(tool("unlock_trade", json!({})));
    assert_eq!(r["is_error"], false, "{r}");
    let over_ws = ws(&py, &gw, &token_for("unlocker")).ask(ws_request(7, UNLOCK, json!({})));
    assert_eq!(over_ws["answer"]["ok"]["unlocked"], true, "{over_ws}");

    let recs = d.audit_records();
    assert!(
        recs.iter()
            .any(|r| r["iface"] == "mcp" && r["endpoint"] == "Trd_UnlockTrade" && r["reason"] == "scope"),
        "{recs:?}"
    );
}
