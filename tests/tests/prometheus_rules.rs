//! The Prometheus alerting rules, `systemd/prometheus/futu-authd.rules.yml`: promtool finds
//! them valid and their unit tests (`futu-authd.rules.test.yml`) pass, every alert has a
//! test where it fires and one where it stays quiet, and every metric they read is one a
//! running futu-authd exports.

use std::collections::BTreeSet;
use std::path::PathBuf;

use futu_authd_tests::monitoring::{check_uses, expect_success, promtool, repo_root, rule_exprs, Exposition};
use futu_authd_tests::skip;

/// Metrics the rules read that are being added to futu-authd: when a scrape lacks one, the
/// test says so and goes on.
const AWAITED: &[&str] = &["futu_auth_key_expires_timestamp_seconds"];

fn rules_dir() -> PathBuf {
    repo_root().join("systemd/prometheus")
}

fn rules_text() -> String {
    std::fs::read_to_string(rules_dir().join("futu-authd.rules.yml")).expect("read the rules")
}

/// The names of the alerts the rules file defines.
fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- alert:"))
        .map(|n| n.trim().to_owned())
        .collect()
}

#[test]
fn promtool_finds_the_alerting_rules_valid() {
    let mut cmd = match promtool() {
        Ok(cmd) => cmd,
        Err(why) => return skip(why),
    };
    cmd.args(["check", "rules"])
        .arg(rules_dir().join("futu-authd.rules.yml"));
    let out = expect_success(cmd);
    let said = String::from_utf8_lossy(&out.stdout);
    let n = alert_names(&rules_text()).len();
    assert!(n >= 10, "the rules define {n} alerts");
    assert!(said.contains(&format!("SUCCESS: {n} rules found")), "{said}");
}

#[test]
fn the_alerting_rules_pass_their_promtool_unit_tests() {
    let mut cmd = match promtool() {
        Ok(cmd) => cmd,
        Err(why) => return skip(why),
    };
    // promtool reads the test's rule_files relative to the test file.
    cmd.args(["test", "rules", "futu-authd.rules.test.yml"])
        .current_dir(rules_dir());
    let out = expect_success(cmd);
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS"));
}

#[test]
fn every_alert_is_tested_firing_and_quiet() {
    let tests = std::fs::read_to_string(rules_dir().join("futu-authd.rules.test.yml")).unwrap();
    let lines: Vec<&str> = tests.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let (mut fires, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line.strip_prefix("alertname:") else {
            continue;
        };
        match lines.get(i + 1).copied() {
            Some("exp_alerts: []") => quiet.insert(name.trim().to_owned()),
            Some("exp_alerts:") => fires.insert(name.trim().to_owned()),
            other => panic!("alertname: {name} is followed by {other:?}"),
        };
    }
    for alert in alert_names(&rules_text()) {
        assert!(fires.contains(&alert), "no test where {alert} fires");
        assert!(quiet.contains(&alert), "no test where {alert} stays quiet");
    }
}

#[tokio::test]
async fn the_alerting_rules_read_only_metrics_a_running_futu_authd_exports() {
    let exprs = rule_exprs(&rules_text());
    assert_eq!(exprs.len(), alert_names(&rules_text()).len(), "{exprs:#?}");
    let text = futu_authd_tests::monitoring::scrape_a_busy_daemon().await;
    let report = check_uses(&exprs, &Exposition::parse(&text), AWAITED);
    for name in &report.awaited_missing {
        println!("awaited metric not exported yet (its alert cannot fire until it is): {name}");
    }
    assert!(report.is_clean(), "{report:#?}\n--- the scrape ---\n{text}");
}
