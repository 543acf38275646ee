//! The Grafana dashboard, `systemd/grafana/futu-authd.json`: a dashboard Grafana imports on
//! any Prometheus data source (the `${datasource}` variable), whose every query is valid
//! PromQL (promtool) and reads only metrics a running futu-authd exports, each by a name
//! its type gives samples (`_total` of a counter, `_bucket` of a histogram…), and rates
//! only of counters.

use std::collections::BTreeSet;

use futu_authd_tests::monitoring::{
    check_uses, expect_success, metric_uses, promtool, repo_root, scrape_a_busy_daemon, Exposition, AWAITED,
};
use futu_authd_tests::skip;
use serde_json::{json, Value};

fn dashboard() -> Value {
    let path = repo_root().join("systemd/grafana/futu-authd.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every panel, those inside collapsed rows too.
fn panels(d: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        all.push(p);
        all.extend(p["panels"].as_array().into_iter().flatten());
    }
    all
}

/// Every `targets[].expr` of every panel.
fn exprs(d: &Value) -> Vec<String> {
    panels(d)
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .map(|t| t["expr"].as_str().expect("a target with an expr").to_owned())
        .collect()
}

/// The series selector of each query variable's `label_values(selector, label)`.
fn variable_selectors(d: &Value) -> Vec<String> {
    d["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let q = v["definition"].as_str().expect("a query variable's definition");
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|q| q.rsplit_once(','))
                .unwrap_or_else(|| panic!("not label_values(selector, label): {q}"));
            inner.0.to_owned()
        })
        .collect()
}

/// Grafana's variables as a query sends them, for promtool.
fn as_sent(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("$instance", ".+")
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_on_a_prometheus_datasource_variable() {
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36, "schemaVersion");
    assert_eq!(d["uid"], "futu-authd");
    let vars = d["templating"]["list"].as_array().unwrap();
    let ds = vars
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let on_variable = json!({"type": "prometheus", "uid": "${datasource}"});
    let mut ids = BTreeSet::new();
    for p in panels(&d) {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id {}",
            p["id"]
        );
        let grid = &p["gridPos"];
        assert!(grid["w"].as_u64().is_some_and(|w| (1..=24).contains(&w)) && grid["h"].as_u64().is_some());
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().expect("a title");
        assert_eq!(p["datasource"], on_variable, "panel {title}");
        let targets = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("panel {title} has no targets"));
        assert!(!targets.is_empty(), "panel {title} has no targets");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert_eq!(t["datasource"], on_variable, "panel {title}");
            assert!(
                refs.insert(t["refId"].as_str().expect("refId")),
                "panel {title}: duplicate refId"
            );
            let expr = t["expr"].as_str().unwrap();
            assert!(
                expr.contains("job=\"futu-authd\""),
                "panel {title}: {expr} ignores the job"
            );
        }
    }
    // The panels the dashboard promises, by the metric each reads.
    let read: BTreeSet<String> = exprs(&d)
        .iter()
        .flat_map(|e| metric_uses(e))
        .map(|u| u.name)
        .collect();
    for name in [
        "futu_auth_events_total",
        "futu_auth_limit_rejects_total",
        "futu_auth_check_latency_seconds_bucket",
        "futu_auth_keys_loaded",
        "futu_auth_ledger_up",
        "futu_auth_file_writable",
        "futu_auth_keys_store_up",
        "futu_auth_keys_snapshot_age_seconds",
        "futu_auth_halted",
        "futu_auth_connections",
        "futu_auth_reloads_total",
        "futu_auth_key_last_used_timestamp_seconds",
        "futu_auth_key_expires_timestamp_seconds",
    ] {
        assert!(read.contains(name), "no panel reads {name}");
    }
}

#[test]
fn every_query_of_the_dashboard_is_valid_promql() {
    let mut cmd = match promtool() {
        Ok(cmd) => cmd,
        Err(why) => return skip(why),
    };
    let d = dashboard();
    // promtool checks a rules file's expressions; JSON is YAML.
    let rules: Vec<Value> = exprs(&d)
        .iter()
        .chain(&variable_selectors(&d))
        .enumerate()
        .map(|(i, e)| json!({"record": format!("dashboard:query_{i}"), "expr": as_sent(e)}))
        .collect();
    let n = rules.len();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yml");
    std::fs::write(
        &file,
        json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string(),
    )
    .unwrap();
    cmd.args(["check", "rules"]).arg(&file);
    let out = expect_success(cmd);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("SUCCESS: {n} rules found")), "{said}");
}

#[tokio::test]
async fn the_dashboard_reads_only_metrics_a_running_futu_authd_exports() {
    let d = dashboard();
    let mut queries = exprs(&d);
    queries.extend(variable_selectors(&d));
    let text = scrape_a_busy_daemon().await;
    let report = check_uses(&queries, &Exposition::parse(&text), AWAITED);
    for name in &report.awaited_missing {
        println!("awaited metric not exported yet (its panel stays empty until it is): {name}");
    }
    for name in &report.awaited_present {
        println!("{name} is exported now: remove it from monitoring::AWAITED");
    }
    assert!(report.is_clean(), "{report:#?}\n--- the scrape ---\n{text}");
}
