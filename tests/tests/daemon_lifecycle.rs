//! futu-authd's life as systemd sees it: READY=1 once the socket answers with the keys
//! loaded, RELOADING=1 and READY=1 around a SIGHUP, STOPPING=1 and exit 0 on SIGTERM, the
//! watchdog fed at half the interval asked for; `--check-config` accepting a good keys file
//! and naming the line, key and field of a bad one; refusing to start on a broken keys
//! file, and on a socket another daemon answers on.

mod daemon;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use daemon::*;
use futu_authd_tests::{allowed_key, key_json, keys_json, token_for, write_private, DaemonBuilder, DEADLINE};
use nix::sys::signal::Signal;
use serde_json::json;

/// CLOCK_MONOTONIC in microseconds, the clock of MONOTONIC_USEC.
fn monotonic_usec() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock_gettime");
    t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000
}

// ---- systemd notifications -----------------------------------------------------------------

#[tokio::test]
async fn ready_reload_and_stop_are_announced_on_the_notify_socket() {
    let research = token_for("research");
    let bot = token_for("sim-bot");
    let mut d = DaemonBuilder::new(&[key_json("research", &research, &["qot:read"]), sim_bot(&bot)]).start();

    // start() returned on READY=1: the socket must already answer, with the keys loaded —
    // no retry here.
    let mode = std::fs::metadata(d.socket_path()).expect("the socket exists when READY=1 arrives");
    assert_eq!(
        mode.permissions().mode() & 0o777,
        0o660,
        "the default --socket-mode"
    );
    let mut c = d.client().await;
    assert_eq!(
        allowed_key(&c.check(&research, "Qot_GetBasicQot", None).await),
        "research"
    );
    let notes = d.notifications();
    let ready = notes.iter().find(|n| n.lines().any(|l| l == "READY=1")).unwrap();
    assert!(
        ready
            .lines()
            .any(|l| l.starts_with("STATUS=") && l.contains("2 keys")),
        "READY=1 comes with a STATUS naming the key count: {ready:?}"
    );

    // SIGHUP: RELOADING=1 and MONOTONIC_USEC in one datagram, then READY=1.
    let mark = d.notifications().len();
    let before = monotonic_usec();
    d.signal(Signal::SIGHUP);
    let (i, reloading) = d.wait_notification(mark, "RELOADING=1");
    let after = monotonic_usec();
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC in the same datagram: {reloading:?}"))
        .parse()
        .expect("MONOTONIC_USEC is a number");
    assert!(
        (before..=after).contains(&usec),
        "MONOTONIC_USEC={usec} is CLOCK_MONOTONIC at the reload ({before}..={after})"
    );
    let (j, ready) = d.wait_notification(i + 1, "READY=1");
    assert!(
        j > i && ready.contains("STATUS="),
        "READY=1 follows the reload: {ready:?}"
    );
    assert!(c.check(&research, "Qot_GetBasicQot", None).await.is_allow());

    // SIGTERM: STOPPING=1, exit 0, socket removed.
    let mark = d.notifications().len();
    let status = d.stop();
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean exit");
    d.wait_notification(mark, "STOPPING=1");
    assert!(!d.socket_path().exists(), "the socket file is removed at exit");
}

/// A check expected to be denied with `reason`, made with the token of `key` (the label

#[test]
fn the_watchdog_is_fed_at_half_the_interval_systemd_asks_for() {
    let d = DaemonBuilder::new(&[key_json("research", &token_for("research"), &["qot:read"])])
        .env("WATCHDOG_USEC", "200000")
        .start();
    let started = Instant::now();
    let (first, _) = d.wait_notification(0, "WATCHDOG=1");
    let (second, _) = d.wait_notification(first + 1, "WATCHDOG=1");
    let (_, _) = d.wait_notification(second + 1, "WATCHDOG=1");
    // Three pings at 100 ms take about 200 ms; at the full 200 ms they would take 400.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let quiet = DaemonBuilder::new(&[key_json("research", &token_for("research"), &["qot:read"])]).start();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        !quiet.notifications().iter().any(|n| n.contains("WATCHDOG=1")),
        "no watchdog pings unless systemd asks for them"
    );
}

// ---- start-up ------------------------------------------------------------------------------

#[test]
fn check_config_accepts_a_good_keys_file_and_names_the_line_key_and_field_of_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let research = key_json("research", &token_for("research"), &["qot:read"]);
    write_private(
        &path,
        &keys_json(&[research.clone(), sim_bot(&token_for("sim-bot"))]),
    );
    let run = |path: &Path| {
        Command::new(futu_authd_tests::daemon_binary())
            .arg("--check-config")
            .arg("--keys-file")
            .arg(path)
            .env_remove("FUTU_AUTHD_KEYS_FILE")
            .output()
            .unwrap()
    };
    let good = run(&path);
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(String::from_utf8_lossy(&good.stdout).contains("ok, 2 keys"));

    let broken = keys_json(&[
        research,
        trader(
            "sim-bot",
            &token_for("sim-bot"),
            json!({ "max_order_valeu": 100000 }),
        ),
    ]);
    let line = broken
        .lines()
        .position(|l| l.contains("max_order_valeu"))
        .unwrap()
        + 1;
    write_private(&path, &broken);
    let bad = run(&path);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    for part in [
        format!("{}:{line}:", path.display()),
        "key \"sim-bot\"".to_owned(),
        "keys[1].limits.max_order_valeu".to_owned(),
        "unknown field".to_owned(),
    ] {
        assert!(stderr.contains(&part), "stderr names {part:?}: {stderr}");
    }
}

#[test]
fn the_daemon_refuses_to_start_on_a_broken_keys_file() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    write_private(&keys, "{\"version\": 1, \"keys\": [ {\"id\": \"x\"} ]}\n");
    let mut child = Command::new(futu_authd_tests::daemon_binary())
        .arg("--socket")
        .arg(dir.path().join("auth.sock"))
        .arg("--keys-file")
        .arg(&keys)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--metrics-listen", "off", "--audit-journald=false"])
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("futu-authd kept running on a broken keys.json");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("keys.json"), "{stderr}");
    assert!(!dir.path().join("auth.sock").exists(), "it never listened");
}

#[test]
fn a_socket_another_daemon_answers_on_is_not_taken_over() {
    let first = DaemonBuilder::new(&[key_json("research", &token_for("research"), &["qot:read"])]).start();
    let dir = tempfile::tempdir().unwrap();
    write_private(&dir.path().join("keys.json"), &keys_json(&[]));
    let out = Command::new(futu_authd_tests::daemon_binary())
        .arg("--socket")
        .arg(first.socket_path())
        .arg("--keys-file")
        .arg(dir.path().join("keys.json"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--metrics-listen", "off", "--audit-journald=false"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another futu-authd is answering"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(first.socket_path().exists(), "the live socket was left in place");
}
