//! The audit file in DuckDB: a real futu-authd records allows and refusals of several keys
//! and reasons, then the two DuckDB queries of docs/OPERATIONS.md ("Querying it with
//! DuckDB": the reject reason histogram, a key's order checks today) run through DuckDB's
//! Python package (`tests/python/audit_duckdb.py`, `make deps` puts it in `target/venv`)
//! and answer what the jq queries answer, and what the traffic sent adds up to — also
//! when a record of yesterday is in the file, and when the file begins with more quiet
//! records than DuckDB reads to guess a file's columns.

mod daemon;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use daemon::*;
use futu_auth_proto::{Market, Reason, TrdSide};
use futu_authd_tests::{
    away_from_utc_midnight, deny_reason, have_program, key_json, order, read_jsonl, skip, token_for, with,
    DaemonBuilder,
};
use serde_json::{json, Value};

/// Where the documentation's queries name the audit file.
const DOCUMENTED_PATH: &str = "/var/log/futu-authd/audit.jsonl";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace")
        .to_path_buf()
}

/// The venv's python when it has DuckDB; `None` (the test says it is skipped) otherwise.
fn python_with_duckdb() -> Option<PathBuf> {
    let python = std::env::var_os("FUTU_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/venv/bin/python"));
    let ready = python.is_file()
        && Command::new(&python)
            .args(["-c", "import duckdb"])
            .output()
            .is_ok_and(|o| o.status.success());
    if !ready {
        skip(&format!(
            "no Python with duckdb at {} (make deps makes it)",
            python.display()
        ));
        return None;
    }
    Some(python)
}

/// What the DuckDB queries answered.
struct DuckDb {
    histogram: Vec<(String, u64)>,
    orders_today: u64,
    /// The queries' text, as the documentation must show it.
    queries: Vec<String>,
}

fn duckdb(python: &Path, file: &Path) -> DuckDb {
    let out = Command::new(python)
        .arg(workspace().join("tests/python/audit_duckdb.py"))
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .expect("run audit_duckdb.py");
    assert!(
        out.status.success(),
        "audit_duckdb.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("audit_duckdb.py prints JSON");
    DuckDb {
        histogram: v["histogram"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                (
                    row[0].as_str().unwrap_or("NULL").to_owned(),
                    row[1].as_u64().unwrap(),
                )
            })
            .collect(),
        orders_today: v["orders_today"].as_u64().unwrap(),
        queries: v["queries"]
            .as_object()
            .unwrap()
            .values()
            .map(|q| q.as_str().unwrap().to_owned())
            .collect(),
    }
}

fn sh(script: &str, file: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The documented jq histogram, `uniq -c`'s counts and reasons in its order.
fn jq_histogram(file: &Path) -> Vec<(String, u64)> {
    sh(
        r#"jq -r 'select(.outcome=="reject") | .reason' "$1" | sort | uniq -c | sort -rn"#,
        file,
    )
    .lines()
    .map(|l| {
        let (n, reason) = l.trim().split_once(' ').unwrap();
        (reason.to_owned(), n.parse().unwrap())
    })
    .collect()
}

/// The documented jq count of sim-bot's order checks, today's (UTC) only.
fn jq_orders_today(file: &Path) -> u64 {
    sh(
        r#"jq -c --arg today "$(date -u +%F)" 'select(.key_id=="sim-bot" and (.endpoint|test("order";"i")) and (.ts|startswith($today)))' "$1" | wc -l"#,
        file,
    )
    .trim()
    .parse()
    .unwrap()
}

fn write_lines(path: &Path, records: &[Value]) {
    let mut text = String::new();
    for r in records {
        text.push_str(&serde_json::to_string(r).unwrap());
        text.push('\n');
    }
    std::fs::write(path, text).expect("write an audit file");
}

#[tokio::test]
async fn duckdb_answers_the_reject_histogram_and_a_keys_orders_today_as_jq_does() {
    if !have_program("jq") {
        return skip("jq is not installed");
    }
    let Some(python) = python_with_duckdb() else {
        return;
    };
    // The records are today's, and so are the queries' "today".
    away_from_utc_midnight(120);

    let research = token_for("research");
    let bot = token_for("sim-bot");
    let fast = token_for("fast-bot");
    let mut d = DaemonBuilder::new(&[
        key_json("research", &research, &["qot:read"]),
        with(
            key_json("sim-bot", &bot, &["qot:read", "trade:simulate"]),
            "limits",
            json!({ "allowed_trd_sides": ["SELL"], "max_orders_per_minute": 3 }),
        ),
        trader("fast-bot", &fast, json!({ "max_order_value": 1000 })),
    ])
    .start();
    let mut c = d.client().await;
    for _ in 0..2 {
        assert!(c.check(&research, "Qot_GetBasicQot", None).await.is_allow());
    }
    for _ in 0..4 {
        let d = c.check(&research, "Trd_PlaceOrder", sell_700(1.0, 1.0)).await;
        assert_eq!(deny_reason(&d), Reason::Scope);
    }
    assert!(c.check(&bot, "Qot_GetBasicQot", None).await.is_allow());
    let buy = Some(order(Market::HK, "HK.00700", TrdSide::BUY, 1.0, Some(1.0)));
    for _ in 0..2 {
        let d = c.check(&bot, "Trd_PlaceOrder", buy.clone()).await;
        assert_eq!(deny_reason(&d), Reason::Side);
    }
    for i in 0..6 {
        let d = c.check(&bot, "Trd_PlaceOrder", sell_700(1.0, 1.0)).await;
        if i < 3 {
            assert!(d.is_allow(), "order {i}: {d:?}");
        } else {
            assert_eq!(deny_reason(&d), Reason::Rate, "order {i}");
        }
    }
    for _ in 0..5 {
        let d = c.check(&fast, "Trd_PlaceOrder", sell_700(100.0, 100.0)).await;
        assert_eq!(deny_reason(&d), Reason::OrderValue);
    }
    assert!(c
        .check(&fast, "Trd_PlaceOrder", sell_700(1.0, 1.0))
        .await
        .is_allow());
    let unknown = c.check(&token_for("nobody"), "Qot_GetBasicQot", None).await;
    assert_eq!(deny_reason(&unknown), Reason::UnknownKey);
    assert_eq!(d.stop().code(), Some(0));
    let records = read_jsonl(&d.audit_path());
    assert_eq!(records.len(), 22);

    // What was sent: 15 refusals of five reasons, no two reasons as many (so that the
    // order of `sort -rn` and of ORDER BY n DESC is one), and 8 order checks of sim-bot
    // (2 BUY, 6 SELL) beside its quote.
    let expected_histogram: Vec<(String, u64)> = [
        ("order_value", 5),
        ("scope", 4),
        ("rate", 3),
        ("side", 2),
        ("unknown_key", 1),
    ]
    .map(|(r, n)| (r.to_owned(), n))
    .into();

    // A copy with one more of sim-bot's allowed orders, of yesterday: not today's.
    let dir = tempfile::tempdir().expect("a directory");
    let mut with_yesterday = records.clone();
    let mut old = records
        .iter()
        .find(|r| r["key_id"] == "sim-bot" && r["endpoint"] == "Trd_PlaceOrder" && r["outcome"] == "allow")
        .expect("an allowed order of sim-bot")
        .clone();
    let ts: jiff::Timestamp = old["ts"].as_str().unwrap().parse().unwrap();
    old["ts"] = json!((ts - jiff::SignedDuration::from_hours(24)).to_string());
    with_yesterday.insert(0, old);
    let file = dir.path().join("audit.jsonl");
    write_lines(&file, &with_yesterday);

    let got = duckdb(&python, &file);
    assert_eq!(got.histogram, expected_histogram);
    assert_eq!(jq_histogram(&file), expected_histogram);
    assert_eq!(got.orders_today, 8);
    assert_eq!(jq_orders_today(&file), 8);
    // Without the day, yesterday's order counts too.
    let all = sh(
        r#"jq -c 'select(.key_id=="sim-bot" and (.endpoint|test("order";"i")))' "$1" | wc -l"#,
        &file,
    );
    assert_eq!(all.trim(), "9");

    // The same behind 25 000 quotes: DuckDB guesses a file's columns from its first 20 480
    // records, where `reason` is always null; the documented queries name their columns.
    let quote = records
        .iter()
        .find(|r| r["key_id"] == "research" && r["outcome"] == "allow")
        .expect("an allowed quote")
        .clone();
    let mut quiet_morning = vec![quote; 25_000];
    quiet_morning.extend(with_yesterday);
    let big = dir.path().join("big.jsonl");
    write_lines(&big, &quiet_morning);
    let got_big = duckdb(&python, &big);
    assert_eq!(got_big.histogram, expected_histogram);
    assert_eq!(jq_histogram(&big), expected_histogram);
    assert_eq!(got_big.orders_today, 8);

    // The queries run are the documentation's, to the character (README.md's on the
    // tour's file).
    let operations = std::fs::read_to_string(workspace().join("docs/OPERATIONS.md")).unwrap();
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    for q in &got.queries {
        assert!(q.contains(DOCUMENTED_PATH), "{q}");
        assert!(
            operations.contains(q.as_str()),
            "docs/OPERATIONS.md shows this DuckDB query as it is:\n{q}"
        );
        let tour = q.replace(DOCUMENTED_PATH, "run/audit.jsonl");
        assert!(
            readme.contains(&tour),
            "README.md shows this DuckDB query as it is:\n{tour}"
        );
    }
    assert!(operations.contains(
        r#"jq -c --arg today "$(date -u +%F)" 'select(.key_id=="sim-bot" and (.endpoint|test("order";"i")) and (.ts|startswith($today)))' /var/log/futu-authd/audit.jsonl | wc -l"#
    ));
}
