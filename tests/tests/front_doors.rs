//! The front doors under hostile clients: the real futu-gw-demo in front of a real
//! futu-authd, tried from outside the way an attacker or a careless bot would — curl,
//! Python's http.client, `websockets`, grpcio and the official MCP SDK — with oversized
//! credentials and bodies, idle connections by the dozen, numbers with every digit, a
//! daemon that stalls, bodies that do not decode, another key's MCP session, and a log at
//! trace level. Each test names what must hold; the Python clients are in tests/python.

mod gw;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use futu_authd_tests::{key_json, metric_value, poll, token_for, DaemonBuilder};
use gw::*;
use serde_json::{json, Value};

/// What a Python script of tests/python printed as its one JSON line.
fn run_script(py: &Grpc, name: &str, args: &[&str], stdin: &[u8]) -> Value {
    let mut child = script(py, name)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run a Python client");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin)
        .expect("write the body");
    let out = child.wait_with_output().expect("wait for the script");
    assert!(
        out.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{name} printed no JSON ({e}): {text}"))
}

/// futu-authd's count of open connections.
fn daemon_connections(d: &futu_authd_tests::Daemon) -> f64 {
    metric_value(&d.metrics_text(), "futu_auth_connections", &[]).expect("futu_auth_connections")
}

/// The key serves on all four front-ends: a quote over REST, gRPC, WebSocket and MCP.
fn served_everywhere(py: &Grpc, gw: &Gateway, token: &str) {
    let r = get(gw, "/api/quote?symbol=HK.00700", Some(token));
    assert_eq!(r.status, 200, "REST: {r:?}");
    let r = py.one(gw, call(QOT, quote_body(), Some(token)));
    assert_eq!(r["code"], "OK", "gRPC: {r}");
    let mut socket = ws(py, gw, token);
    let r = socket.ask(ws_request(1, QOT, quote_body()));
    assert_eq!(r["answer"]["ok"]["symbol"], "HK.00700", "WebSocket: {r}");
    let mut mcp = mcp_http(py, gw, token);
    let r = mcp.ask(tool("get_quote", quote_body()));
    assert_eq!(r["is_error"], false, "MCP: {r}");
}

#[test]
fn oversized_credentials_and_bodies_are_refused_alone_and_every_front_end_goes_on() {
    let Some(py) = python() else { return };
    if !have_curl() {
        return;
    }
    let d = DaemonBuilder::new(&[trader("bot", json!({}))]).metrics().start();
    let gw = Gateway::start(&d.socket_path());
    let bot = token_for("bot");
    served_everywhere(&py, &gw, &bot);
    let before = daemon_connections(&d);

    // 600 requests with a 70 KB bearer: each a 401 of its own, none reaches the socket.
    let big = "a".repeat(70_000);
    let bearer = format!("Authorization: Bearer {big}");
    let url = gw.url("/api/quote?symbol=HK.00700");
    let r = run_script(&py, "http_many.py", &["GET", &url, "600", &bearer], b"");
    assert_eq!(r["statuses"], json!({"401": 600}), "{r}");
    let mcp = gw.mcp_url();
    let r = run_script(
        &py,
        "http_many.py",
        &[
            "POST",
            &mcp,
            "20",
            &bearer,
            "Content-Type: application/json",
            "Accept: application/json, text/event-stream",
        ],
        b"{}",
    );
    assert_eq!(r["statuses"], json!({"401": 20}), "MCP: {r}");
    let upgrade = ws(&py, &gw, &big);
    assert_eq!(upgrade.hello["refused"], 401, "WebSocket: {}", upgrade.hello);
    let mut big_symbol = order("HK.00700", 100.0, 388.2);
    big_symbol["symbol"] = json!(format!("HK.{}", "0".repeat(70_000)));
    let bogus = "fc_00000000000000000000000000000000";
    // gRPC: a message that large is refused before it is decoded, whatever the key.
    for token in [bogus, bot.as_str()] {
        let r = py.one(&gw, call(ORDER, big_symbol.clone(), Some(token)));
        assert_eq!(r["code"], "OUT_OF_RANGE", "gRPC: {r}");
        assert!(r["details"].as_str().unwrap().contains("too large"), "{r}");
    }
    let r = py.one(&gw, call(ORDER, order("HK.00700", 1.0, 1.0), Some(bogus)));
    assert_eq!(r["code"], "UNAUTHENTICATED", "gRPC: {r}");

    // An order body of 1.9 MB with a good key: 413, the documented shape.
    let mut huge = order("HK.00700", 100.0, 388.2);
    huge["symbol"] = json!(format!("HK.{}", "0".repeat(1_900_000)));
    let r = post_order(&gw, &bot, &huge);
    assert_eq!(
        (r.status, r.reason().as_str()),
        (413, "bad_request"),
        "{}",
        &r.body[..200.min(r.body.len())]
    );
    // A 1 MB symbol over WebSocket closes that socket (a message over 64 KiB), nothing
    // else: another socket of the same key goes on.
    let mut socket = ws(&py, &gw, &bot);
    let mut other = ws(&py, &gw, &bot);
    let mut one_mb = order("HK.00700", 100.0, 388.2);
    one_mb["symbol"] = json!(format!("HK.{}", "0".repeat(1_000_000)));
    let r = socket.ask(ws_request(1, ORDER, one_mb));
    assert!(r["closed"].is_object() && r["answer"].is_null(), "{r}");
    let r = other.ask(ws_request(2, QOT, quote_body()));
    assert_eq!(r["answer"]["ok"]["symbol"], "HK.00700", "{r}");

    // The daemon sees the gateway's one connection as before; the good key is served.
    assert_eq!(daemon_connections(&d), before, "{}", d.metrics_text());
    served_everywhere(&py, &gw, &bot);
    assert_eq!(daemon_connections(&d), before);
    let recs = d.audit_records();
    assert!(
        recs.iter().all(|r| r["reason"] != "internal"),
        "nothing was refused for want of a decision: {recs:?}"
    );
}

#[test]
fn idle_websockets_leave_one_audit_record_each_and_a_key_holds_at_most_its_sessions() {
    let Some(py) = python() else { return };
    let d = DaemonBuilder::new(&[
        key_json("watcher", &token_for("watcher"), &["acc:read"]),
        key_json("reader", &token_for("reader"), &["qot:read"]),
    ])
    .metrics()
    .start();
    let gw = Gateway::builder(&d.socket_path())
        .arg("--max-sessions-per-key=20")
        .metrics()
        .start();
    let url = format!("ws://{}/ws", gw.rest);

    // 21 idle sockets of a key that may receive no push: 20 open, the 21st is refused.
    let watcher = token_for("watcher");
    let r = run_script(&py, "ws_many.py", &[&url, &watcher, "21", "3"], b"");
    assert_eq!(r["opened"], 20, "{r}");
    let refused = &r["refused"][0];
    assert_eq!(refused["status"], 429, "{r}");
    assert_eq!(refused["retry_after"], "1", "{r}");
    let body: Value = serde_json::from_str(refused["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["reason"], "sessions", "{body}");
    assert!(body["detail"].as_str().unwrap().contains("20 sessions"), "{body}");
    assert_eq!(r["pushes"], json!({}), "{r}");

    // Three seconds of pushes held back: counted, and audited not at all. Each socket's
    // one record is its opening; the refused one, refused before futu-authd was asked,
    // has none.
    let held = poll("the held-back pushes counted", || {
        let m = d.metrics_text();
        let n = |scope| {
            metric_value(
                &m,
                "futu_ws_filtered_pushes_total",
                &[("required_scope", scope), ("key_id", "watcher")],
            )
            .unwrap_or(0.0)
        };
        let (qot, trade) = (n("qot"), n("trade"));
        (qot >= 100.0 && trade >= 100.0).then_some(qot + trade)
    });
    assert!(held >= 200.0);
    let of_watcher: Vec<Value> = d
        .audit_records()
        .into_iter()
        .filter(|r| r["key_id"] == "watcher")
        .collect();
    assert_eq!(of_watcher.len(), 20, "{of_watcher:?}");
    assert!(
        of_watcher
            .iter()
            .all(|r| r["kind"] == "check" && r["endpoint"] == "KeepAlive" && r["iface"] == "ws"),
        "{of_watcher:?}"
    );
    let gw_metrics = gw.metrics_text();
    assert_eq!(
        metric_value(
            &gw_metrics,
            "futu_gw_refusals_total",
            &[("iface", "ws"), ("reason", "sessions")]
        ),
        Some(1.0),
        "{gw_metrics}"
    );

    // The sockets are gone, and so is their hold on the key's sessions.
    let r = poll("the watcher's places freed", || {
        let r = run_script(&py, "ws_many.py", &[&url, &watcher, "1", "0.1"], b"");
        (r["opened"] == 1).then_some(r)
    });
    assert_eq!(r["refused"], json!([]));

    // A key that may receive quotes: its opening, and the first quote push allowed (with
    // how many it was for), then nothing more however many follow.
    let r = run_script(&py, "ws_many.py", &[&url, &token_for("reader"), "1", "2"], b"");
    assert!(r["pushes"]["3005"].as_u64().unwrap() >= 10, "{r}");
    let of_reader: Vec<Value> = d
        .audit_records()
        .into_iter()
        .filter(|r| r["key_id"] == "reader")
        .collect();
    assert_eq!(of_reader.len(), 2, "{of_reader:?}");
    assert_eq!(of_reader[0]["endpoint"], "KeepAlive");
    assert_eq!(
        (
            &of_reader[1]["kind"],
            &of_reader[1]["endpoint"],
            &of_reader[1]["outcome"]
        ),
        (&json!("check_scope"), &json!("qot:read"), &json!("allow")),
        "{of_reader:?}"
    );
    assert!(of_reader[1]["pushes"].as_u64().unwrap() >= 1, "{of_reader:?}");
}

#[test]
fn an_mcp_session_is_audited_once_however_many_requests_it_makes() {
    let Some(py) = python() else { return };
    let d = DaemonBuilder::new(&[trader("bot", json!({}))]).start();
    let gw = Gateway::start(&d.socket_path());
    let mut mcp = mcp_http(&py, &gw, &token_for("bot"));
    for _ in 0..5 {
        let r = mcp.ask(tool("get_quote", quote_body()));
        assert_eq!(r["is_error"], false, "{r}");
    }
    drop(mcp);
    let recs = d.audit_records();
    let keep_alive = recs
        .iter()
        .filter(|r| r["iface"] == "mcp" && r["endpoint"] == "KeepAlive")
        .count();
    let quotes = recs
        .iter()
        .filter(|r| r["iface"] == "mcp" && r["endpoint"] == "Qot_GetBasicQot")
        .count();
    assert_eq!((keep_alive, quotes), (1, 5), "{recs:?}");
}

#[test]
fn json_numbers_are_read_as_the_decimals_they_are_written_as_on_every_front_end() {
    let Some(py) = python() else { return };
    if !have_curl() {
        return;
    }
    let d = DaemonBuilder::new(&[trader("capped", json!({"max_order_value": 1000}))]).start();
    let gw = Gateway::start(&d.socket_path());
    let capped = token_for("capped");
    // 1e308 × 1e-305 is exactly 1000: at the cap, allowed on every front-end.
    let at_cap = || order("HK.00700", 1e308, 1e-305);
    // (The demo broker then rejects a quantity that large, and the value goes back.)
    let r = post_order(&gw, &capped, &at_cap());
    assert_eq!(
        (r.status, r.reason().as_str()),
        (422, "broker_rejected"),
        "REST: {r:?}"
    );
    let r = py.one(&gw, call(ORDER, at_cap(), Some(&capped)));
    assert_eq!(r["code"], "FAILED_PRECONDITION", "gRPC: {r}");
    let mut socket = ws(&py, &gw, &capped);
    let r = socket.ask(ws_request(1, ORDER, at_cap()));
    assert_eq!(
        r["answer"]["error"]["reason"], "broker_rejected",
        "WebSocket: {r}"
    );
    let mut mcp = mcp_http(&py, &gw, &capped);
    let r = mcp.ask(tool("place_order", at_cap()));
    assert_eq!(tool_error(&r)["reason"], "broker_rejected", "MCP: {r}");
    let at_cap_checks: Vec<Value> = d
        .audit_records()
        .into_iter()
        .filter(|r| r["kind"] == "check" && r["order"]["qty"] == 1e308)
        .collect();
    assert_eq!(at_cap_checks.len(), 4, "{at_cap_checks:?}");
    for r in &at_cap_checks {
        assert_eq!(r["outcome"], "allow", "{r}");
        assert_eq!(r["order"]["value"], 1000.0, "{r}");
    }

    // 17 significant digits reach the daemon as written (the audit record repeats them).
    let texts = [
        "987.4559437006833",
        "0.30000000000000004",
        "388.20000000000005",
        "9.999999999999999",
    ];
    for text in texts {
        let body = format!(
            r#"{{"env":"simulate","market":"HK","symbol":"HK.00700","side":"BUY","qty":1,"price":{text}}}"#
        );
        assert_eq!(
            post_raw(&gw, &capped, "application/json", &body).status,
            200,
            "{text}"
        );
    }
    let prices: Vec<f64> = d
        .audit_records()
        .iter()
        .filter(|r| r["iface"] == "rest" && r["order"]["qty"] == 1.0)
        .map(|r| r["order"]["price"].as_f64().unwrap())
        .collect();
    let expected: Vec<f64> = texts.iter().map(|t| t.parse().unwrap()).collect();
    assert_eq!(prices, expected);
}

#[test]
fn an_order_allowed_after_the_gateway_gave_up_is_released_so_the_ledger_holds_what_was_placed() {
    let Some(py) = python() else { return };
    let d = DaemonBuilder::new(&[trader("bot", json!({}))]).start();
    let gw = Gateway::builder(&d.socket_path())
        .deadline(Duration::from_millis(50))
        .metrics()
        .start();
    let bot = token_for("bot");
    let one = order("HK.00700", 1.0, 1.0).to_string();
    let addr = gw.rest.to_string();
    let stream = std::thread::spawn({
        let py_python = py.python.clone();
        let bot = bot.clone();
        move || {
            let out = Command::new(py_python)
                .arg(workspace().join("tests/python/orders.py"))
                .args([&addr, &bot, "8", "4.5", &one])
                .output()
                .expect("run orders.py");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            serde_json::from_slice::<Value>(&out.stdout).expect("one JSON line")
        }
    });
    // Three stalls of the daemon while the orders stream in.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        d.pause();
        std::thread::sleep(Duration::from_millis(500));
        d.resume();
    }
    let r = stream.join().expect("the order stream");
    let placed = r["statuses"]["200"].as_u64().unwrap_or(0) as f64;
    let refused = r["statuses"]["503"].as_u64().unwrap_or(0);
    assert!(placed > 0.0 && refused > 0, "the stalls were felt: {r}");
    let used = poll("the ledger to hold exactly the orders answered 200", || {
        let used = daily_value_used(&d, "bot");
        (used == placed).then_some(used)
    });
    assert_eq!(used, placed);
    let recs = d.audit_records();
    let released = recs
        .iter()
        .filter(|r| r["kind"] == "release" && r["outcome"] == "allow")
        .count();
    let allowed = recs
        .iter()
        .filter(|r| r["kind"] == "check" && r["endpoint"] == "Trd_PlaceOrder" && r["outcome"] == "allow")
        .count();
    assert!(released > 0, "some allows came late: {r}");
    assert_eq!(
        allowed - released,
        placed as usize,
        "allowed {allowed}, released {released}: {r}"
    );
    let late = metric_value(&gw.metrics_text(), "futu_gw_late_releases_total", &[]);
    assert_eq!(late, Some(released as f64));
}

/// A JSON refusal's reason, with its status and content type checked.
fn refusal(r: &Reply, status: u16) -> String {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    let json = r.json();
    assert!(json["detail"].as_str().is_some_and(|d| !d.is_empty()), "{r:?}");
    assert!(json.get("retry_after_ms").is_some(), "{r:?}");
    r.reason()
}

fn post_raw(gw: &Gateway, token: &str, content_type: &str, body: &str) -> Reply {
    let mut cmd = curl_command(&gw.url("/api/order"), Some(token));
    cmd.args([
        "-X",
        "POST",
        "-H",
        &format!("Content-Type: {content_type}"),
        "--data-binary",
        "@-",
    ]);
    reply_with_body(cmd, body.as_bytes())
}

#[test]
fn every_refusal_of_the_rest_front_end_is_the_documented_json() {
    if !have_curl() {
        return;
    }
    let d = DaemonBuilder::new(&[trader("bot", json!({}))]).start();
    let gw = Gateway::start(&d.socket_path());
    let bot = token_for("bot");
    let good = order("HK.00700", 100.0, 388.2).to_string();
    let json = "application/json";
    let cases = [
        (
            good.replace("\"qty\":100.0", "\"qty\":100.0,\"qty\":1"),
            json,
            400,
        ),
        (good.replace("\"qty\":100.0", "\"qty\":\"1\""), json, 400),
        (good.replace("\"qty\":100.0", "\"qty\":1e400"), json, 400),
        ("{\"env\":".to_owned(), json, 400),
        (good.clone(), "text/plain", 415),
        (format!("{{\"pad\":\"{}\"}}", " ".repeat(2_100_000)), json, 413),
    ];
    for (body, content_type, status) in cases {
        let r = post_raw(&gw, &bot, content_type, &body);
        assert_eq!(
            refusal(&r, status),
            "bad_request",
            "{content_type} {}",
            &body[..60.min(body.len())]
        );
    }
    let r = get(&gw, "/api/quote", Some(&bot));
    assert_eq!(refusal(&r, 400), "bad_request");
    let r = get(&gw, "/api/quote?symbol=HK.99999", Some(&bot));
    assert_eq!(refusal(&r, 404), "no_quote");
    let r = get(&gw, "/api/nowhere", Some(&bot));
    assert_eq!(refusal(&r, 400), "unknown_endpoint");
    let r = get(&gw, "/api/quote?symbol=HK.00700", None);
    assert_eq!(refusal(&r, 401), "no_token");
    // HEAD is GET without the body.
    let out = curl_command(&gw.url("/api/quote?symbol=HK.00700"), Some(&bot))
        .arg("-I")
        .output()
        .expect("run curl");
    let head = String::from_utf8_lossy(&out.stdout);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

/// An MCP request by curl: `(status, headers, body)`; SSE bodies are returned as they are.
fn mcp_post(gw: &Gateway, token: &str, session: Option<&str>, content_type: &str, body: &str) -> Reply {
    let mut cmd = curl_command(&gw.mcp_url(), Some(token));
    cmd.args(["-X", "POST", "-H", &format!("Content-Type: {content_type}")])
        .args(["-H", "Accept: application/json, text/event-stream"])
        .args(["-H", "MCP-Protocol-Version: 2025-06-18"]);
    if let Some(s) = session {
        cmd.args(["-H", &format!("Mcp-Session-Id: {s}")]);
    }
    cmd.args(["--data-binary", "@-"]);
    reply_with_body(cmd, body.as_bytes())
}

fn mcp_delete(gw: &Gateway, token: &str, session: &str) -> Reply {
    let mut cmd = curl_command(&gw.mcp_url(), Some(token));
    cmd.args(["-X", "DELETE", "-H", &format!("Mcp-Session-Id: {session}")])
        .args(["-H", "MCP-Protocol-Version: 2025-06-18"]);
    reply_of(cmd.output().expect("run curl"))
}

/// Opens an MCP session with `token` by hand (initialize, then initialized): its id.
fn mcp_session(gw: &Gateway, token: &str) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "curl", "version": "1"}}});
    let r = mcp_post(gw, token, None, "application/json", &init.to_string());
    assert_eq!(r.status, 200, "{r:?}");
    let id = r.header("mcp-session-id").expect("a session id").to_owned();
    let done = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let r = mcp_post(gw, token, Some(&id), "application/json", &done.to_string());
    assert_eq!(r.status, 202, "{r:?}");
    id
}

fn quote_call(id: u64) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "get_quote", "arguments": {"symbol": "HK.00700"}}})
    .to_string()
}

#[test]
fn an_mcp_session_belongs_to_the_key_that_opened_it() {
    if !have_curl() {
        return;
    }
    let d = DaemonBuilder::new(&[trader("alice", json!({})), trader("mallory", json!({}))]).start();
    let gw = Gateway::start(&d.socket_path());
    let (alice, mallory) = (token_for("alice"), token_for("mallory"));
    let session = mcp_session(&gw, &alice);

    // Another key can neither end the session nor call tools in it: 404, and it goes on.
    let r = mcp_delete(&gw, &mallory, &session);
    assert_eq!(refusal(&r, 404), "unknown_session");
    let r = mcp_post(&gw, &mallory, Some(&session), "application/json", &quote_call(2));
    assert_eq!(refusal(&r, 404), "unknown_session");
    let r = mcp_post(&gw, &alice, Some(&session), "application/json", &quote_call(3));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body.contains("HK.00700") && !r.body.contains("\"isError\":true"),
        "{r:?}"
    );
    // An id nobody was given is the same 404.
    let r = mcp_post(
        &gw,
        &alice,
        Some("no-such-session"),
        "application/json",
        &quote_call(4),
    );
    assert_eq!(refusal(&r, 404), "unknown_session");

    // A key that is no key: 401 saying why, for an MCP client to show.
    let r = mcp_post(
        &gw,
        "fc_00000000000000000000000000000000",
        Some(&session),
        "application/json",
        &quote_call(5),
    );
    assert_eq!(refusal(&r, 401), "unknown_key");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\", error_description=\"unknown_key\"")
    );

    // Bodies that are not a message: the documented JSON, never a plain-text 415.
    let bad = quote_call(6).replace("\"HK.00700\"", "1e999");
    let r = mcp_post(&gw, &alice, Some(&session), "application/json", &bad);
    assert_eq!(refusal(&r, 400), "bad_request");
    let r = mcp_post(&gw, &alice, Some(&session), "text/plain", &quote_call(7));
    assert_eq!(refusal(&r, 415), "bad_request");
    let r = mcp_post(
        &gw,
        &alice,
        Some(&session),
        "application/json",
        &"[".repeat(300_000),
    );
    assert_eq!(refusal(&r, 413), "bad_request");

    // Its own key ends it: 204; then it is gone.
    let r = mcp_delete(&gw, &alice, &session);
    assert_eq!(r.status, 204, "{r:?}");
    let r = mcp_post(&gw, &alice, Some(&session), "application/json", &quote_call(8));
    assert_eq!(refusal(&r, 404), "unknown_session");
}

#[test]
fn the_mcp_sdk_ends_its_session_without_complaint() {
    let Some(py) = python() else { return };
    let d = DaemonBuilder::new(&[trader("bot", json!({}))]).start();
    let gw = Gateway::start(&d.socket_path());
    let mut child = script(&py, "mcp_client.py")
        .args(["http", &gw.mcp_url(), &token_for("bot")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mcp_client.py");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "{}", tool("get_quote", quote_body())).expect("ask");
    drop(stdin);
    let out = child.wait_with_output().expect("wait for mcp_client.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("\"is_error\": false"), "{stdout}");
    assert!(!stderr.contains("Session termination failed"), "{stderr}");
}

#[test]
fn no_key_reaches_the_gateways_log_even_at_trace_level() {
    let Some(py) = python() else { return };
    if !have_curl() {
        return;
    }
    let d = DaemonBuilder::new(&[trader("bot", json!({}))]).start();
    let gw = Gateway::builder(&d.socket_path())
        .env("FUTU_GW_LOG", "trace")
        .start();
    let bot = token_for("bot");
    // A careless client puts its key where it does not belong: a tool argument, a
    // WebSocket body, a query, an order's symbol.
    let mut mcp = mcp_http(&py, &gw, &bot);
    let r = mcp.ask(tool("get_quote", json!({"symbol": bot})));
    assert_eq!(r["is_error"], true, "{r}");
    let mut socket = ws(&py, &gw, &bot);
    socket.ask(ws_request(1, QOT, json!({"symbol": bot})));
    get(&gw, &format!("/api/quote?symbol={bot}"), Some(&bot));
    post_order(&gw, &bot, &order(&format!("HK.{bot}"), 1.0, 1.0));
    drop(mcp);
    drop(socket);
    std::thread::sleep(Duration::from_millis(300));
    let log = gw.stderr();
    assert!(log.lines().count() > 50, "a trace log: {log}");
    assert!(!log.contains(&bot[3..]), "a key in the gateway's log");
    assert!(log.contains("fc_<redacted>"), "the key was seen and hidden");
}

#[test]
fn a_closed_pipe_ends_nothing_but_its_own_request() {
    // A REST client that sends half an order body and vanishes: the gateway and its
    // daemon connection carry on.
    if !have_curl() {
        return;
    }
    let d = DaemonBuilder::new(&[trader("bot", json!({}))]).metrics().start();
    let gw = Gateway::start(&d.socket_path());
    let bot = token_for("bot");
    assert_eq!(get(&gw, "/api/quote?symbol=HK.00700", Some(&bot)).status, 200);
    let before = daemon_connections(&d);
    for _ in 0..20 {
        let mut s = std::net::TcpStream::connect(gw.rest).expect("connect");
        write!(
            s,
            "POST /api/order HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bot}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"env\":"
        )
        .expect("write");
        drop(s);
    }
    let mut s = std::net::TcpStream::connect(gw.rest).expect("connect");
    write!(s, "GET /api/quote?symbol=HK.00700 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bot}\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(daemon_connections(&d), before);
}

#[test]
fn grpc_and_websocket_bodies_that_do_not_decode_are_bad_request() {
    let Some(py) = python() else { return };
    let d = DaemonBuilder::new(&[trader("bot", json!({}))]).start();
    let gw = Gateway::start(&d.socket_path());
    let bot = token_for("bot");
    let mut with_text = order("HK.00700", 100.0, 388.2);
    with_text["qty"] = json!("100");
    let r = py.one(&gw, call(ORDER, with_text.clone(), Some(&bot)));
    assert_eq!(r["code"], "INVALID_ARGUMENT", "{r}");
    assert_eq!(r["metadata"]["futu-reason"], "bad_request", "{r}");
    assert!(r["details"].as_str().unwrap().contains("invalid type"), "{r}");
    let mut socket = ws(&py, &gw, &bot);
    let r = socket.ask(ws_request(1, ORDER, with_text));
    assert_eq!(r["answer"]["error"]["reason"], "bad_request", "{r}");
    let r = socket.ask(json!({"send": "not a request"}));
    assert_eq!(r["answer"]["error"]["reason"], "bad_request", "{r}");
    assert_eq!(r["closed"], Value::Null, "the socket goes on: {r}");
}
