//! End-to-end tests of futu-auth-client's HTTP layer as a gateway's callers meet it: the
//! real futu-authd (the harness's [`DaemonBuilder`]), the real `futu-gw-demo` binary, curl
//! for REST and Python's grpcio for gRPC (`make deps` puts it in `target/venv`; stubs are
//! generated from `client/gw-demo/proto/gateway.proto` with `grpc_tools.protoc` into a
//! temporary directory). A missing curl or grpcio skips the test with the reason, which
//! `FUTU_TEST_STRICT=1` turns into a failure.

mod gw;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futu_authd_tests::{key_json, poll, target_dir, token_for, with, DaemonBuilder};
use gw::*;
use serde_json::{json, Value};

// ---- the tests --------------------------------------------------------------------------

#[test]
fn the_gateway_says_where_it_asks_and_what_it_is() {
    let d = DaemonBuilder::new(&[]).start();
    let gw = Gateway::start(&d.socket_path());
    let log = gw.stderr();
    let socket = d.socket_path();
    for front in ["REST", "gRPC"] {
        let line = format!(
            "INFO {front} auth via futu-authd at {} (Bearer auth enabled)",
            socket.display()
        );
        assert!(log.contains(&line), "no {line:?} in:\n{log}");
    }
    let help = Command::new(target_dir().join("futu-gw-demo"))
        .arg("--help")
        .output()
        .expect("futu-gw-demo --help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("demonstration") && help.contains("test bed"),
        "{help}"
    );
    for flag in [
        "--auth-socket",
        "FUTU_AUTH_SOCKET",
        "/run/futu/auth.sock",
        "--rest-listen",
        "--grpc-listen",
        "--no-auth",
    ] {
        assert!(help.contains(flag), "--help does not mention {flag}: {help}");
    }
}

#[test]
fn rest_refusals_have_their_status_headers_and_reason() {
    if !have_curl() {
        return;
    }
    let reader = token_for("reader");
    let d = DaemonBuilder::new(&[
        key_json("reader", &reader, &["qot:read"]),
        trader(
            "trader",
            json!({"max_order_value": 1_000_000, "allowed_trd_sides": ["BUY"]}),
        ),
        with(
            key_json("old", &token_for("old"), &["qot:read"]),
            "expires_at",
            json!("2026-01-02T00:00:00Z"),
        ),
        with(
            key_json("frozen", &token_for("frozen"), &["qot:read"]),
            "allowed_machines",
            json!([]),
        ),
    ])
    .start();
    let gw = Gateway::start(&d.socket_path());
    let trader = token_for("trader");

    let ok = get(&gw, "/api/quote?symbol=HK.00700", Some(&reader));
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.json()["price"], 388.2);
    let funds = get(&gw, "/api/funds", Some(&trader));
    assert_eq!(
        funds.json()["key_id"],
        "trader",
        "the handler sees the key the layer matched"
    );

    // 401, with a challenge.
    let none = get(&gw, "/api/quote?symbol=HK.00700", None);
    assert_eq!(
        (none.status, none.reason().as_str()),
        (401, "no_token"),
        "{none:?}"
    );
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    for (token, reason) in [
        (token_for("nobody"), "unknown_key"),
        (token_for("old"), "expired"),
    ] {
        let r = get(&gw, "/api/quote?symbol=HK.00700", Some(&token));
        assert_eq!((r.status, r.reason().as_str()), (401, reason), "{r:?}");
        assert!(
            r.header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            "{r:?}"
        );
        assert_eq!(r.json()["retry_after_ms"], Value::Null);
    }
    // A lowercase scheme is a bearer token too.
    let lower = reply_of(
        curl_command(&gw.url("/api/quote?symbol=HK.00700"), None)
            .arg("-H")
            .arg(format!("authorization: bearer {reader}"))
            .output()
            .expect("run curl"),
    );
    assert_eq!(lower.status, 200, "{lower:?}");

    // 403.
    let forbidden = [
        (get(&gw, "/api/funds", Some(&reader)), "scope"),
        (
            get(&gw, "/api/quote?symbol=HK.00700", Some(&token_for("frozen"))),
            "frozen",
        ),
        (
            post_order(&gw, &trader, &order("HK.00700", 10_000.0, 388.2)),
            "order_value",
        ),
        (
            post_order(
                &gw,
                &trader,
                &json!({"env": "simulate", "market": "HK", "symbol": "HK.00700", "side": "SELL", "qty": 1, "price": 1}),
            ),
            "side",
        ),
        (post_order(&gw, &reader, &order("HK.00700", 1.0, 1.0)), "scope"),
    ];
    for (r, reason) in forbidden {
        assert_eq!((r.status, r.reason().as_str()), (403, reason), "{r:?}");
        assert!(r.header("www-authenticate").is_none() && r.header("retry-after").is_none());
    }

    // 400: an order the daemon finds malformed, and a path no route maps.
    let bad = post_order(
        &gw,
        &trader,
        &json!({"env": "simulate", "market": "HK", "symbol": "US.AAPL", "side": "BUY", "qty": 1, "price": 1}),
    );
    assert_eq!((bad.status, bad.reason().as_str()), (400, "bad_order"), "{bad:?}");
    let unmapped = get(&gw, "/api/positions", Some(&trader));
    assert_eq!(
        (unmapped.status, unmapped.reason().as_str()),
        (400, "unknown_endpoint"),
        "{unmapped:?}"
    );

    // The daemon's audit says which front-end asked; no log shows a key.
    let recs = d.wait_audit(10);
    assert!(recs.iter().all(|r| r["iface"] == "rest"), "{recs:?}");
    for text in [gw.stderr(), d.stderr_text()] {
        for t in [&reader, &trader] {
            assert!(!text.contains(t.as_str()), "a key in the logs:\n{text}");
        }
    }
}

#[test]
fn grpc_refusals_have_their_status_and_metadata() {
    let Some(grpc) = grpc_client() else { return };
    let reader = token_for("reader");
    let d = DaemonBuilder::new(&[
        key_json("reader", &reader, &["qot:read"]),
        trader("trader", json!({"max_order_value": 1_000_000})),
        with(
            key_json("frozen", &token_for("frozen"), &["qot:read"]),
            "allowed_machines",
            json!([]),
        ),
    ])
    .start();
    let gw = Gateway::start(&d.socket_path());
    let trader = token_for("trader");
    let nobody = token_for("nobody");
    let frozen = token_for("frozen");
    let results = grpc.calls(
        &gw,
        &[
            call(QOT, quote_body(), Some(&reader)),
            call(QOT, quote_body(), None),
            call(QOT, quote_body(), Some(&nobody)),
            call(FUNDS, json!({}), Some(&reader)),
            call(QOT, quote_body(), Some(&frozen)),
            call(ORDER, order("HK.00700", 10_000.0, 388.2), Some(&trader)),
            call(9999, json!({}), Some(&trader)),
            call(ORDER, json!({"env": "simulate", "market": "HK", "symbol": "US.AAPL", "side": "BUY", "qty": 1, "price": 1}), Some(&trader)),
            call(FUNDS, json!({}), Some(&trader)),
        ],
    );
    let expected = [
        ("OK", None),
        ("UNAUTHENTICATED", Some("no_token")),
        ("UNAUTHENTICATED", Some("unknown_key")),
        ("PERMISSION_DENIED", Some("scope")),
        ("PERMISSION_DENIED", Some("frozen")),
        ("PERMISSION_DENIED", Some("order_value")),
        ("INVALID_ARGUMENT", Some("unknown_endpoint")),
        ("INVALID_ARGUMENT", Some("bad_order")),
        ("OK", None),
    ];
    assert_eq!(results.len(), expected.len(), "{results:?}");
    for (r, (code, reason)) in results.iter().zip(expected) {
        assert_eq!(r["code"], code, "{r}");
        assert_eq!(r["metadata"]["futu-reason"].as_str(), reason, "{r}");
        assert!(r["metadata"].get("retry-after-ms").is_none(), "{r}");
    }
    assert_eq!(results[0]["body"]["symbol"], "HK.00700");
    assert_eq!(results[8]["body"]["key_id"], "trader");
    let codes: Vec<i64> = results
        .iter()
        .map(|r| r["code_value"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [0, 16, 16, 7, 7, 7, 3, 3, 0]);

    let recs = d.wait_audit(7);
    assert!(recs.iter().all(|r| r["iface"] == "grpc"), "{recs:?}");
    for t in [&reader, &trader] {
        assert!(!gw.stderr().contains(t.as_str()));
    }
}

#[test]
fn five_orders_a_minute_hold_across_rest_and_grpc_with_a_retry_after_right_to_the_second() {
    let Some(grpc) = grpc_client() else { return };
    if !have_curl() {
        return;
    }
    let d = DaemonBuilder::new(&[trader("bot", json!({"max_orders_per_minute": 5}))]).start();
    let gw = Gateway::start(&d.socket_path());
    let bot = token_for("bot");
    let o = order("HK.00700", 100.0, 388.2);

    // Eight orders at once, four through each front-end: exactly five go through.
    let started = Instant::now();
    let four: Vec<Value> = (0..4).map(|_| call(ORDER, o.clone(), Some(&bot))).collect();
    let python = grpc.spawn(&gw, &four);
    let curls: Vec<Child> = (0..4)
        .map(|_| {
            order_command(&gw, &bot, &o)
                .stdout(Stdio::piped())
                .spawn()
                .expect("run curl")
        })
        .collect();
    let rest: Vec<Reply> = curls
        .into_iter()
        .map(|c| reply_of(c.wait_with_output().expect("wait for curl")))
        .collect();
    let grpc_results = Grpc::results(python);
    let settled = Instant::now();

    let rest_ok = rest.iter().filter(|r| r.status == 200).count();
    let grpc_ok = grpc_results.iter().filter(|r| r["code"] == "OK").count();
    assert_eq!(rest_ok + grpc_ok, 5, "REST {rest:?}\ngRPC {grpc_results:?}");
    for r in rest.iter().filter(|r| r.status != 200) {
        assert_eq!((r.status, r.reason().as_str()), (429, "rate"), "{r:?}");
        let ms = r.json()["retry_after_ms"].as_u64().expect("retry_after_ms");
        assert_eq!(
            r.header("retry-after"),
            Some(ms.div_ceil(1000).to_string().as_str()),
            "{r:?}"
        );
    }
    for r in grpc_results.iter().filter(|r| r["code"] != "OK") {
        assert_eq!(r["code"], "RESOURCE_EXHAUSTED", "{r}");
        assert_eq!(r["metadata"]["futu-reason"], "rate", "{r}");
        assert!(r["metadata"]["retry-after-ms"].as_str().is_some(), "{r}");
    }

    // One more each way: refused until the first of the five is a minute old.
    let before = Instant::now();
    let late_rest = post_order(&gw, &bot, &o);
    let late_grpc = grpc.one(&gw, call(ORDER, o.clone(), Some(&bot)));
    let after = Instant::now();
    assert_eq!(
        (late_rest.status, late_rest.reason().as_str()),
        (429, "rate"),
        "{late_rest:?}"
    );
    assert_eq!(late_grpc["code"], "RESOURCE_EXHAUSTED", "{late_grpc}");
    let rest_ms = late_rest.json()["retry_after_ms"].as_u64().unwrap();
    let grpc_ms: u64 = late_grpc["metadata"]["retry-after-ms"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let retry_after: u64 = late_rest
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert_eq!(retry_after, rest_ms.div_ceil(1000), "whole seconds, rounded up");

    // Right to the second: a minute after the first allowed order, by the daemon's own
    // record of when it allowed it and when it refused these.
    let orders: Vec<Value> = d
        .wait_audit(12)
        .into_iter()
        .filter(|r| {
            r["kind"] == "check"
                && r["endpoint"]
                    .as_str()
                    .is_some_and(|e| e == "Trd_PlaceOrder" || e == "2202")
        })
        .collect();
    let allowed: Vec<&Value> = orders.iter().filter(|r| r["outcome"] == "allow").collect();
    assert_eq!(allowed.len(), 5, "{orders:?}");
    let ifaces: Vec<&str> = allowed.iter().map(|r| r["iface"].as_str().unwrap()).collect();
    assert_eq!(
        ifaces.iter().filter(|i| **i == "rest").count(),
        rest_ok,
        "{ifaces:?}"
    );
    assert_eq!(
        ifaces.iter().filter(|i| **i == "grpc").count(),
        grpc_ok,
        "{ifaces:?}"
    );
    let first = allowed.iter().map(|r| ts_ms(r)).fold(f64::INFINITY, f64::min);
    let refusals: Vec<&Value> = orders.iter().filter(|r| r["outcome"] == "reject").collect();
    assert_eq!(refusals.len(), 5, "three at once and two late: {orders:?}");
    for (rec, told) in refusals[3..].iter().zip([rest_ms, grpc_ms]) {
        assert_eq!(
            rec["retry_after_ms"].as_u64(),
            Some(told),
            "the caller was told what the audit says"
        );
        let expected = 60_000.0 - (ts_ms(rec) - first);
        assert!(
            (told as f64 - expected).abs() <= 50.0,
            "retry after {told} ms, but the first order was {:.1} ms before the refusal",
            ts_ms(rec) - first
        );
    }
    // And by the test's own clock: the first order came after `started` and before
    // `settled`, the late refusal between `before` and `after`.
    let lo = 60_000u128.saturating_sub((after - started).as_millis()) as u64;
    let hi = 60_000u128.saturating_sub((before - settled).as_millis()) as u64;
    assert!(
        (lo.div_ceil(1000)..=hi.div_ceil(1000)).contains(&retry_after),
        "Retry-After {retry_after} s is not between {lo} and {hi} ms rounded up"
    );
}

#[test]
fn a_broker_rejected_order_gives_its_daily_value_back() {
    let Some(grpc) = grpc_client() else { return };
    if !have_curl() {
        return;
    }
    let d = DaemonBuilder::new(&[trader(
        "desk",
        json!({"max_daily_value": 10_000_000, "max_order_value": 5_000_000}),
    )])
    .start();
    let gw = Gateway::start(&d.socket_path());
    let desk = token_for("desk");
    assert_eq!(daily_value_used(&d, "desk"), 0.0);

    let placed = post_order(&gw, &desk, &order("HK.00700", 100.0, 10.0));
    assert_eq!(placed.status, 200, "{placed:?}");
    let ack = placed.json();
    assert!(
        ack["order_id"].as_u64().is_some() && ack["ticket"].as_u64().is_some(),
        "{ack}"
    );
    assert_eq!(daily_value_used(&d, "desk"), 1000.0);

    // Above the demo broker's 1 000 000: allowed by the key, rejected by the broker.
    let rejected = post_order(&gw, &desk, &order("HK.00700", 2_000_000.0, 1.0));
    assert_eq!(rejected.status, 422, "{rejected:?}");
    assert_eq!(rejected.json()["refunded_value"], 2_000_000.0, "{rejected:?}");
    assert_eq!(
        daily_value_used(&d, "desk"),
        1000.0,
        "the rejected order's value came back"
    );

    let r = grpc.one(&gw, call(ORDER, order("HK.00700", 3_000_000.0, 1.0), Some(&desk)));
    assert_eq!(r["code"], "FAILED_PRECONDITION", "{r}");
    assert_eq!(daily_value_used(&d, "desk"), 1000.0, "and through gRPC");
    let r = grpc.one(&gw, call(ORDER, order("HK.00700", 100.0, 10.0), Some(&desk)));
    assert_eq!(r["code"], "OK", "{r}");
    assert_eq!(daily_value_used(&d, "desk"), 2000.0);
}

#[test]
fn futu_authd_away_is_503_and_the_gateway_recovers_by_itself() {
    let Some(grpc) = grpc_client() else { return };
    if !have_curl() {
        return;
    }
    let mut d = DaemonBuilder::new(&[key_json("reader", &token_for("reader"), &["qot:read"])]).start();
    let gw = Gateway::with_deadline(&d.socket_path(), Duration::from_millis(200));
    let reader = token_for("reader");
    let quote = |gw: &Gateway| get(gw, "/api/quote?symbol=HK.00700", Some(&reader));
    assert_eq!(quote(&gw).status, 200);

    // Not answering in time (stopped, its socket still open): refused, fail closed.
    d.pause();
    let frozen = quote(&gw);
    let frozen_grpc = grpc.one(&gw, call(QOT, quote_body(), Some(&reader)));
    d.resume();
    assert_eq!(
        (frozen.status, frozen.reason().as_str()),
        (503, "unavailable"),
        "{frozen:?}"
    );
    assert!(
        frozen.json()["detail"]
            .as_str()
            .unwrap()
            .contains("no answer within 200 ms"),
        "{frozen:?}"
    );
    assert_eq!(frozen_grpc["code"], "UNAVAILABLE", "{frozen_grpc}");
    assert_eq!(frozen_grpc["metadata"]["futu-reason"], "unavailable");
    poll("the gateway answering 200 after SIGCONT", || {
        (quote(&gw).status == 200).then_some(())
    });

    // Not running at all.
    d.stop();
    let down = quote(&gw);
    assert_eq!(
        (down.status, down.reason().as_str()),
        (503, "unavailable"),
        "{down:?}"
    );
    assert!(
        !down.body.contains(&d.socket_path().display().to_string()),
        "{down:?}"
    );
    let down_grpc = grpc.one(&gw, call(QOT, quote_body(), Some(&reader)));
    assert_eq!(down_grpc["code"], "UNAVAILABLE", "{down_grpc}");
    assert_eq!(down_grpc["code_value"], 14);

    // Back: the gateway reconnects by itself.
    d.restart();
    poll("the gateway answering 200 once futu-authd is back", || {
        (quote(&gw).status == 200).then_some(())
    });
    let back = grpc.one(&gw, call(QOT, quote_body(), Some(&reader)));
    assert_eq!(back["code"], "OK", "{back}");
}

#[test]
fn a_revoked_key_is_refused_on_its_next_request() {
    let Some(grpc) = grpc_client() else { return };
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
    assert_eq!(get(&gw, "/api/quote?symbol=HK.00700", Some(&leaving)).status, 200);
    assert_eq!(
        grpc.one(&gw, call(QOT, quote_body(), Some(&leaving)))["code"],
        "OK"
    );

    let c = admin(&d);
    c.block_on(c.inner().revoke_key(&"leaving".parse().unwrap()))
        .expect("revoke the key");

    let r = get(&gw, "/api/quote?symbol=HK.00700", Some(&leaving));
    assert_eq!((r.status, r.reason().as_str()), (401, "unknown_key"), "{r:?}");
    let r = grpc.one(&gw, call(QOT, quote_body(), Some(&leaving)));
    assert_eq!(r["code"], "UNAUTHENTICATED", "{r}");
    assert_eq!(r["metadata"]["futu-reason"], "unknown_key");
    let staying = get(&gw, "/api/quote?symbol=HK.00700", Some(&token_for("staying")));
    assert_eq!(staying.status, 200, "{staying:?}");
}
