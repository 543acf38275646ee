//! The Prometheus alerting rules, `systemd/prometheus/futu-authd.rules.yml`: promtool finds
//! them valid and their unit tests (`futu-authd.rules.test.yml`) pass, every alert has a
//! test where it fires and one where it stays quiet, every metric they read is one a
//! running futu-authd exports, and a real Prometheus configured as README.md says fires
//! the halt's alert for a real daemon, and no other.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futu_authd_tests::monitoring::{
    check_uses, expect_success, promtool, repo_root, rule_exprs, scrape_a_busy_daemon, start_prometheus,
    try_get, Exposition, AWAITED,
};
use futu_authd_tests::{key_json, skip, token_for, DaemonBuilder};
use serde_json::Value;

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
    let text = scrape_a_busy_daemon().await;
    let report = check_uses(&exprs, &Exposition::parse(&text), AWAITED);
    for name in &report.awaited_missing {
        println!("awaited metric not exported yet (its alert cannot fire until it is): {name}");
    }
    for name in &report.awaited_present {
        println!("{name} is exported now: remove it from monitoring::AWAITED");
    }
    assert!(report.is_clean(), "{report:#?}\n--- the scrape ---\n{text}");
}

/// The `prometheus.yml` of README.md's "Status page, alerts and dashboard", pointed at `target` and at
/// the rules in the repository, evaluating every second.
fn readme_prometheus_yml(target: &str) -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let block = readme
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split_once("```").map(|(b, _)| b))
        .find(|b| b.starts_with("# prometheus.yml"))
        .expect("README.md shows a prometheus.yml");
    let installed = "/usr/local/share/futu-authd/prometheus/futu-authd.rules.yml";
    assert!(block.contains(installed), "{block}");
    assert!(block.contains("'127.0.0.1:9464'"), "{block}");
    let rules = rules_dir().join("futu-authd.rules.yml");
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{}",
        block
            .replace(installed, &rules.display().to_string())
            .replace("127.0.0.1:9464", target)
    )
}

#[tokio::test]
async fn a_real_prometheus_with_the_readme_config_alerts_on_a_halted_key_and_not_on_a_running_daemon() {
    let Some(prometheus) = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
    else {
        return skip("prometheus is not installed (Debian package prometheus; `make deps` installs it)");
    };
    let bot = token_for("alerts bot");
    let d = DaemonBuilder::new(&[key_json("sim-bot", &bot, &["qot:read", "trade:simulate"])])
        .metrics()
        .start();
    let halt = d
        .futucli()
        .args(["halt", "--key", "sim-bot", "--reason", "alert test"])
        .output()
        .expect("run futucli halt");
    assert!(halt.status.success(), "{}", String::from_utf8_lossy(&halt.stderr));

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    let target = d.metrics_addr().to_string();
    std::fs::write(&config, readme_prometheus_yml(&target)).unwrap();
    let (_prometheus, addr) = start_prometheus(Path::new(prometheus), &config, &dir.path().join("data"));

    // Prometheus's own list of firing and pending alerts, once the halt's is firing.
    let until = Instant::now() + Duration::from_secs(30);
    let alerts = loop {
        let answer = try_get(addr, "/api/v1/alerts");
        if let Some(body) = &answer {
            let v: Value = serde_json::from_str(body).unwrap_or_default();
            let alerts = v["data"]["alerts"].as_array().cloned().unwrap_or_default();
            if alerts
                .iter()
                .any(|a| a["labels"]["alertname"] == "FutuAuthTradingHalted" && a["state"] == "firing")
            {
                break alerts;
            }
        }
        assert!(
            Instant::now() < until,
            "FutuAuthTradingHalted did not fire within 30 s (last answer: {answer:?})"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let halted: Vec<_> = alerts
        .iter()
        .filter(|a| a["labels"]["alertname"] == "FutuAuthTradingHalted")
        .collect();
    assert_eq!(halted.len(), 1, "{alerts:#?}");
    let labels = &halted[0]["labels"];
    assert_eq!(labels["key_id"], "sim-bot");
    assert_eq!(labels["job"], "futu-authd");
    assert_eq!(labels["instance"], target.as_str());
    assert_eq!(labels["severity"], "warning");
    assert_eq!(
        halted[0]["annotations"]["summary"],
        "Trading is halted for key sim-bot"
    );
    // A healthy daemon: nothing else is pending or firing (the job is there, it is up, its
    // ledger, files and keys are fine).
    let others: Vec<_> = alerts
        .iter()
        .filter(|a| a["labels"]["alertname"] != "FutuAuthTradingHalted")
        .collect();
    assert!(others.is_empty(), "{others:#?}");
}
