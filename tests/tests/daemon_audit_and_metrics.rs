//! What the daemon reports: the audit file answers the README's jq queries ("Query the
//! audit log": recent rejects, a key's order checks, the reject reason histogram), and
//! /metrics carries the README's families with their labels ("Prometheus scrape"), with
//! /healthz.

mod daemon;

use std::path::Path;
use std::process::{Command, Stdio};

use daemon::*;
use futu_auth_proto::{Iface, Market, Reason, Scope, TrdSide};
use futu_authd_tests::{
    deny_reason, have_program, key_json, order, read_jsonl, token_for, with, DaemonBuilder,
};
use serde_json::{json, Value};

// ---- the audit file ------------------------------------------------------------------------

fn sh(script: &str, file: &Path) -> (bool, String, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .expect("run sh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_audit_file_answers_the_documented_jq_queries() {
    if !have_program("jq") {
        return futu_authd_tests::skip("jq is not installed");
    }
    let research = token_for("research");
    let bot = token_for("sim-bot");
    let mut d = DaemonBuilder::new(&[
        key_json("research", &research, &["qot:read"]),
        with(
            key_json("sim-bot", &bot, &["qot:read", "acc:read", "trade:simulate"]),
            "limits",
            json!({ "allowed_trd_sides": ["SELL"], "max_orders_per_minute": 3 }),
        ),
    ])
    .start();
    let mut c = d.client().await;
    assert!(c.check(&research, "Qot_GetBasicQot", None).await.is_allow());
    assert!(c.check(&bot, "Qot_GetBasicQot", None).await.is_allow());
    assert!(c.check(&bot, "Trd_GetFunds", None).await.is_allow());
    let buy = Some(order(Market::HK, "HK.00700", TrdSide::BUY, 1.0, Some(1.0)));
    for _ in 0..2 {
        assert_eq!(
            deny_reason(&c.check(&bot, "Trd_PlaceOrder", buy.clone()).await),
            Reason::Side
        );
    }
    for i in 0..6 {
        let d = c.check(&bot, "Trd_PlaceOrder", sell_700(1.0, 1.0)).await;
        assert_eq!(d.is_allow(), i < 3, "order {i}: {d:?}");
    }
    let unknown = c.check(&token_for("nobody"), "Qot_GetBasicQot", None).await;
    assert_eq!(deny_reason(&unknown), Reason::UnknownKey);
    assert_eq!(d.stop().code(), Some(0));
    let file = d.audit_path();
    assert_eq!(read_jsonl(&file).len(), 12);

    // 1. recent rejects. tail counts lines of jq's pretty output, so this shows the end of
    //    the last records; every outcome in it is a reject.
    let (ok, out, err) = sh(r#"jq 'select(.outcome=="reject")' "$1" | tail -20"#, &file);
    assert!(ok, "{err}");
    let outcomes: Vec<&str> = out.lines().filter(|l| l.contains("\"outcome\":")).collect();
    assert!(!outcomes.is_empty(), "the tail shows an outcome:\n{out}");
    assert!(
        outcomes.iter().all(|l| l.contains("\"reject\"")),
        "only rejects:\n{out}"
    );
    //    With -c each record is one line, and tail -20 gives whole records: all 6 rejects.
    let (ok, out, err) = sh(r#"jq -c 'select(.outcome=="reject")' "$1" | tail -20"#, &file);
    assert!(ok, "{err}");
    let rejects: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rejects.len(), 6);
    assert!(rejects.iter().all(|r| r["outcome"] == "reject"));

    // 2. sim-bot's orders, allowed or not. Without the parentheses the README explains,
    //    the query parses as `(.key_id=="sim-bot" and .endpoint) | test("order")` and
    //    fails on a boolean.
    let (ok, out, err) = sh(
        r#"jq 'select(.key_id=="sim-bot" and .endpoint|test("order"))' "$1""#,
        &file,
    );
    assert!(!ok && out.is_empty(), "the query without parentheses fails in jq");
    assert!(err.contains("cannot be matched, as it is not a string"), "{err}");
    let (ok, out, err) = sh(
        r#"jq 'select(.key_id=="sim-bot" and (.endpoint|test("order";"i")))' "$1" | wc -l"#,
        &file,
    );
    assert!(ok, "{err}");
    let lines: usize = out.trim().parse().unwrap();
    let (_, objects, _) = sh(
        r#"jq -c 'select(.key_id=="sim-bot" and (.endpoint|test("order";"i")))' "$1" | wc -l"#,
        &file,
    );
    assert_eq!(objects.trim(), "8", "2 BUY + 6 SELL order checks of sim-bot");
    assert!(
        lines > 8,
        "the pretty form prints several lines per record ({lines})"
    );

    // 3. the reject reason histogram.
    let (ok, out, err) = sh(
        r#"jq -r 'select(.outcome=="reject") | .reason' "$1" | sort | uniq -c | sort -rn"#,
        &file,
    );
    assert!(ok, "{err}");
    let histogram: Vec<(u32, String)> = out
        .lines()
        .map(|l| {
            let (n, reason) = l.trim().split_once(' ').unwrap();
            (n.parse().unwrap(), reason.to_owned())
        })
        .collect();
    assert_eq!(
        histogram,
        [
            (3, "rate".to_owned()),
            (2, "side".to_owned()),
            (1, "unknown_key".to_owned())
        ]
    );
}

// ---- metrics -------------------------------------------------------------------------------

#[tokio::test]
async fn metrics_carry_the_documented_families_with_their_labels() {
    let research = token_for("research");
    let bot = token_for("sim-bot");
    let d = DaemonBuilder::new(&[
        key_json("research", &research, &["qot:read"]),
        trader("sim-bot", &bot, json!({ "max_orders_per_minute": 1 })),
    ])
    .metrics()
    .start();
    let mut c = d.client().await;
    assert!(c.check(&research, "Qot_GetBasicQot", None).await.is_allow());
    assert!(c.check(&research, "3004", None).await.is_allow());
    assert!(c
        .check_via(Iface::Grpc, &bot, "Trd_PlaceOrder", sell_700(1.0, 1.0))
        .await
        .is_allow());
    let rate = c
        .check_via(Iface::Grpc, &bot, "Trd_PlaceOrder", sell_700(1.0, 1.0))
        .await;
    assert_eq!(deny_reason(&rate), Reason::Rate);
    let push = c.check_scope(&research, Iface::Ws, Scope::TradeReal).await;
    assert_eq!(deny_reason(&push), Reason::Scope);
    assert!(c
        .check_scope(&research, Iface::Ws, Scope::QotRead)
        .await
        .is_allow());

    let text = d.metrics_text();
    for line in [
        r#"futu_auth_events_total{iface="rest",outcome="allow",key_id="research"} 2"#,
        r#"futu_auth_events_total{iface="grpc",outcome="allow",key_id="sim-bot"} 1"#,
        r#"futu_auth_events_total{iface="grpc",outcome="reject",key_id="sim-bot"} 1"#,
        r#"futu_auth_limit_rejects_total{iface="grpc",key_id="sim-bot",reason="rate"} 1"#,
        r#"futu_auth_limit_rejects_total{iface="ws",key_id="research",reason="scope"} 1"#,
        r#"futu_ws_filtered_pushes_total{required_scope="trade",key_id="research"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "/metrics has `{line}`:\n{text}");
    }
    assert!(
        !text.contains(r#"required_scope="qot""#),
        "an allowed push is not counted as filtered:\n{text}"
    );
    assert_eq!(d.http_get("/healthz"), (200, "ok\n".to_owned()));
}
