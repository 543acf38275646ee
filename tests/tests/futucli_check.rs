//! `futucli check` and the two other commands only a running daemon answers: check exits 0
//! on an allow and 1 on a reject with its reason (`--json` too), a dry run consumes
//! nothing, and without an answering daemon (paused, stopped, or a server that never says
//! Hello) check exits 2 within its deadline; `usage` shows what the checks consumed today
//! and in the last minute; `reload` names the key count and a check is then answered with
//! the new file's keys, or the old ones when the new file does not load.

mod cli;

use std::time::Duration;

use cli::*;
use futu_authd_tests::{away_from_utc_midnight, key_json, token_for, with, DaemonBuilder, SilentServer};
use jiff::Timestamp;
use serde_json::{json, Value};
use tempfile::TempDir;

// ---- check ----------------------------------------------------------------------------

fn check_args<'a>(token: &'a str, endpoint: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["check", "--token", token, "--endpoint", endpoint];
    args.extend_from_slice(extra);
    args
}

const SELL_700: [&str; 10] = [
    "--market", "HK", "--symbol", "HK.00700", "--side", "SELL", "--qty", "100", "--price", "388.2",
];

#[test]
fn check_exits_0_on_allow_and_1_on_reject_with_the_reason() {
    let research = token_for("research");
    let d = DaemonBuilder::new(&[key_json("research", &research, &["qot:read"])]).start();
    let cli = Futucli::for_daemon(&d);

    let run = cli.run(&check_args(&research, "Qot_GetBasicQot", &[])).ok();
    assert!(
        run.stdout.contains("allow") && run.stdout.contains("research"),
        "{run:#?}"
    );

    let run = cli.run(&check_args(&research, "Trd_GetFunds", &[]));
    assert_eq!(run.code, Some(1), "a reject exits 1: {run:#?}");
    assert!(
        run.stdout.contains("reject") && run.stdout.contains("scope"),
        "{run:#?}"
    );

    let stranger = token_for("stranger");
    let run = cli.run(&check_args(&stranger, "Qot_GetBasicQot", &[]));
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stdout.contains("unknown_key"), "{run:#?}");
    assert!(!run.stdout.contains(&stranger), "the token is not echoed");

    let run = cli
        .run(&check_args(&research, "Qot_GetBasicQot", &["--json"]))
        .ok();
    let v: Value = serde_json::from_str(run.stdout.trim()).expect("check --json prints JSON");
    assert_eq!(v["outcome"], "allow");
    assert_eq!(v["key_id"], "research");

    let run = cli.run(&check_args(&research, "Trd_GetFunds", &["--json"]));
    assert_eq!(run.code, Some(1));
    let v: Value = serde_json::from_str(run.stdout.trim()).expect("check --json prints JSON");
    assert_eq!((&v["outcome"], &v["reason"]), (&json!("reject"), &json!("scope")));
    // Not a limit: nothing to wait for, no figures.
    assert_eq!((&v["retry_after_ms"], &v["limit"]), (&Value::Null, &Value::Null));

    // The token can come from FUTU_AUTH_TOKEN instead of the command line.
    let run = cli
        .command(&["check", "--endpoint", "Qot_GetBasicQot"])
        .env("FUTU_AUTH_TOKEN", &research)
        .output()
        .expect("run futucli");
    assert_eq!(run.status.code(), Some(0));
}

#[test]
fn dry_run_checks_consume_nothing() {
    let once = token_for("once");
    let d = DaemonBuilder::new(&[with(
        key_json("once", &once, &["trade:simulate"]),
        "limits",
        json!({ "max_orders_per_minute": 1 }),
    )])
    .start();
    let cli = Futucli::for_daemon(&d);
    for i in 0..3 {
        let run = cli.run(&check_args(
            &once,
            "Trd_PlaceOrder",
            &[&SELL_700[..], &["--dry-run"]].concat(),
        ));
        assert_eq!(run.code, Some(0), "dry run {i} is allowed: {run:#?}");
    }
    cli.run(&check_args(&once, "Trd_PlaceOrder", &SELL_700)).ok();
    let run = cli.run(&check_args(
        &once,
        "Trd_PlaceOrder",
        &[&SELL_700[..], &["--json"]].concat(),
    ));
    assert_eq!(
        run.code,
        Some(1),
        "the second real order is over the rate: {run:#?}"
    );
    let v: Value = serde_json::from_str(run.stdout.trim()).expect("JSON");
    assert_eq!((&v["outcome"], &v["reason"]), (&json!("reject"), &json!("rate")));
    assert!(v["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{v}");
    assert_eq!(
        v["limit"],
        json!({ "rate": { "orders_in_window": 1, "max_orders_per_minute": 1 } })
    );
}
/// futucli check's own deadline is 2 s; anything near 5 s is a hang.
const CHECK_GIVES_UP_WITHIN: Duration = Duration::from_secs(5);

fn assert_check_fails_fast(cli: &Futucli, token: &str, what: &str) {
    let run = cli.run(&check_args(token, "Qot_GetBasicQot", &[]));
    let line = problem_line(&run, 2);
    assert!(line.contains("futu-authd"), "{what}: {line:?}");
    assert!(
        run.elapsed < CHECK_GIVES_UP_WITHIN,
        "{what}: check took {:?}; it must give up within its deadline",
        run.elapsed
    );
}

#[test]
fn check_without_an_answering_daemon_exits_2_within_its_deadline() {
    let research = token_for("research");
    let mut d = DaemonBuilder::new(&[key_json("research", &research, &["qot:read"])]).start();
    let cli = Futucli::for_daemon(&d);
    cli.run(&check_args(&research, "Qot_GetBasicQot", &[])).ok();

    // Paused (SIGSTOP): the socket accepts, nobody answers.
    d.pause();
    let run = cli.run(&check_args(&research, "Qot_GetBasicQot", &[]));
    d.resume();
    let line = problem_line(&run, 2);
    assert!(line.contains("futu-authd"), "{line:?}");
    assert!(
        run.elapsed < CHECK_GIVES_UP_WITHIN,
        "a paused daemon: check took {:?}",
        run.elapsed
    );

    // Stopped (SIGTERM): no socket.
    d.stop();
    assert_check_fails_fast(&cli, &research, "a stopped daemon");

    // A server that accepts and never says Hello.
    let dir = TempDir::new().unwrap();
    let silent = dir.path().join("silent.sock");
    let _server = SilentServer::start(&silent, false);
    let cli = Futucli {
        socket: silent,
        ..Futucli::without_daemon(dir.path())
    };
    assert_check_fails_fast(&cli, &research, "a server that never answers Hello");
}

// ---- usage and reload ------------------------------------------------------------------

#[test]
fn usage_shows_todays_value_of_the_cap_and_orders_in_the_last_minute() {
    away_from_utc_midnight(5);
    let bot = token_for("sim-bot");
    let d = DaemonBuilder::new(&[with(
        key_json("sim-bot", &bot, &["qot:read", "acc:read", "trade:simulate"]),
        "limits",
        json!({
            "allowed_markets": ["HK", "US"],
            "allowed_trd_sides": ["SELL"],
            "max_order_value": 100000,
            "max_daily_value": 500000,
            "max_orders_per_minute": 5,
        }),
    )])
    .start();
    let cli = Futucli::for_daemon(&d);
    let run = cli.run(&["usage", "sim-bot"]).ok();
    assert!(
        run.stdout.contains("0 of 500000"),
        "nothing used yet: {}",
        run.stdout
    );
    for _ in 0..2 {
        cli.run(&check_args(&bot, "Trd_PlaceOrder", &SELL_700)).ok();
    }
    // A dry run and a refused order do not count.
    cli.run(&check_args(
        &bot,
        "Trd_PlaceOrder",
        &[&SELL_700[..], &["--dry-run"]].concat(),
    ))
    .ok();
    let buy: Vec<&str> = SELL_700
        .iter()
        .map(|a| if *a == "SELL" { "BUY" } else { a })
        .collect();
    assert_eq!(cli.run(&check_args(&bot, "Trd_PlaceOrder", &buy)).code, Some(1));

    let run = cli.run(&["usage", "sim-bot"]).ok();
    let today = Timestamp::now().strftime("%Y-%m-%d").to_string();
    for shown in ["sim-bot", today.as_str(), "77640 of 500000", "2 of 5"] {
        assert!(
            run.stdout.contains(shown),
            "usage shows {shown:?} (2 × 100 × 388.2 of the daily cap; 2 of 5 orders a minute): {}",
            run.stdout
        );
    }
}

#[test]
fn reload_answers_with_the_key_count_and_serves_the_new_file() {
    let d = DaemonBuilder::new(&[key_json("research", &token_for("research"), &["qot:read"])]).start();
    let cli = Futucli::for_daemon(&d);
    let run = cli.run(&["reload"]).ok();
    assert!(run.stdout.contains("1 key"), "{}", run.stdout);
    d.write_keys(&[
        key_json("research", &token_for("research"), &["qot:read"]),
        key_json("late", &token_for("late"), &["qot:read"]),
        key_json("later", &token_for("later"), &["acc:read"]),
    ]);
    let run = cli.run(&["reload"]).ok();
    assert!(
        run.stdout.contains("3 keys"),
        "reload names the key count: {}",
        run.stdout
    );
    let run = cli.run(&check_args(&token_for("late"), "Qot_GetBasicQot", &[]));
    assert_eq!(run.code, Some(0), "the reloaded key is served: {run:#?}");

    // A file that does not load: one line naming it, and the old keys stay in service.
    d.write_keys_text("{\"version\": 1, \"keys\": [\n  {\"id\": \"broken\"}\n]}\n");
    let line = problem_line(&cli.run(&["reload"]), 1);
    assert!(
        line.contains(&d.keys_path().display().to_string()) && line.contains("broken"),
        "the line names the file and the key: {line:?}"
    );
    let run = cli.run(&check_args(&token_for("late"), "Qot_GetBasicQot", &[]));
    assert_eq!(run.code, Some(0), "the old keys still answer: {run:#?}");
}
