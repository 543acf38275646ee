//! `futucli halt` and `futucli resume`, the kill switch, through a real futu-authd and on
//! keys.json with the daemon stopped: a halted key's orders and trade unlock are refused
//! `halted` with the reason, who and when, while its quotes go on; a halt of every key; a
//! resume; a halt kept across a restart and a SIGHUP reload; administrators only; shown by
//! list-keys and usage; audited and in the metrics; and keys.json's `halts` as
//! `futu-authd --check-config` refuses it.

mod cli;

use cli::*;
use futu_authd_tests::{
    daemon_binary, executable_copy, futucli_binary, key_json, keys_json, metric_value, token_for,
    write_private, Daemon, DaemonBuilder,
};
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use tempfile::TempDir;

/// A simulation bot and another trader, each with quotes too.
fn traders() -> Vec<Value> {
    vec![
        key_json(
            "sim-bot",
            &token_for("sim-bot"),
            &["qot:read", "trade:simulate", "trade:unlock"],
        ),
        key_json("other", &token_for("other"), &["qot:read", "trade:simulate"]),
    ]
}

/// `futucli check` of a simulated SELL of 100 HK.00700 at 10 by `id`'s key.
fn order(cli: &Futucli, id: &str) -> Run {
    cli.run(&[
        "check",
        "--token",
        &token_for(id),
        "--endpoint",
        "Trd_PlaceOrder",
        "--market",
        "HK",
        "--symbol",
        "HK.00700",
        "--side",
        "SELL",
        "--qty",
        "100",
        "--price",
        "10",
        "--dry-run",
    ])
}

/// `futucli check` of `endpoint` (no order) by `id`'s key.
fn call(cli: &Futucli, id: &str, endpoint: &str) -> Run {
    cli.run(&[
        "check",
        "--token",
        &token_for(id),
        "--endpoint",
        endpoint,
        "--dry-run",
    ])
}

/// Asserts `run` is a `halted` refusal of `id`'s key whose detail names what is halted,
/// who halted it and the reason; returns the line.
fn assert_halted(run: &Run, id: &str, what: &str, reason: &str) -> String {
    assert_eq!(run.code, Some(1), "a reject: {run:#?}");
    let line = run.stdout.trim_end().to_owned();
    let head = format!("reject: halted (key {id}): trading halted for {what} by uid ");
    assert!(line.starts_with(&head), "{head:?}: {line:?}");
    assert!(
        line.ends_with(&format!(": {reason}")),
        "the reason ends it: {line:?}"
    );
    assert!(line.contains(" at 20"), "when, in UTC: {line:?}");
    line
}

fn assert_allowed(run: &Run, id: &str) {
    assert_eq!(run.code, Some(0), "an allow: {run:#?}");
    assert!(run.stdout.starts_with(&format!("allow: key {id}")), "{run:#?}");
}

/// keys.json of `keys` with these `halts`.
fn keys_with_halts(keys: &[Value], halts: Value) -> String {
    let mut file: Value = serde_json::from_str(&keys_json(keys)).unwrap();
    file["halts"] = halts;
    serde_json::to_string_pretty(&file).unwrap()
}

/// A `halts` entry of `target` (`{"key_id": …}` or `{"all": true}`) for `reason`.
fn halt_entry(target: Value, reason: &str) -> Value {
    let mut entry = target;
    entry["reason"] = reason.into();
    entry["halted_by"] = json!({ "uid": 1000, "user": "alice" });
    entry["halted_at"] = "2026-12-06T10:00:00Z".into();
    entry
}

/// Sends SIGHUP and waits for the reload to finish.
fn reload(d: &Daemon) {
    let mark = d.notifications().len();
    d.signal(Signal::SIGHUP);
    let (i, _) = d.wait_notification(mark, "RELOADING=1");
    d.wait_notification(i + 1, "READY=1");
}

#[test]
fn a_halted_key_is_refused_orders_and_unlock_with_the_reason_while_its_quotes_go_on() {
    let d = DaemonBuilder::new(&traders()).metrics().start();
    let cli = Futucli::for_daemon(&d);
    assert_allowed(&order(&cli, "sim-bot"), "sim-bot");

    let run = cli
        .run(&["halt", "--key", "sim-bot", "--reason", "fat finger"])
        .ok();
    assert_route(&run, &cli, true);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[0], "✅ Halted trading for key \"sim-bot\": fat finger",
        "{run:#?}"
    );
    assert!(
        lines[1].starts_with("trading halted for key sim-bot by uid 0"),
        "{run:#?}"
    );

    assert_halted(&order(&cli, "sim-bot"), "sim-bot", "key sim-bot", "fat finger");
    assert_halted(
        &call(&cli, "sim-bot", "Trd_UnlockTrade"),
        "sim-bot",
        "key sim-bot",
        "fat finger",
    );
    assert_allowed(&call(&cli, "sim-bot", "Qot_GetBasicQot"), "sim-bot");
    assert_allowed(&order(&cli, "other"), "other");
    let json: Value = serde_json::from_str(
        &cli.run(&[
            "check",
            "--token",
            &token_for("sim-bot"),
            "--endpoint",
            "Trd_UnlockTrade",
            "--json",
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(json["reason"], "halted");
    assert_eq!(json["key_id"], "sim-bot");

    // Kept in keys.json, which the daemon's own check accepts.
    let keys = cli.keys();
    let halts = keys["halts"].as_array().expect("keys.json has `halts`");
    assert_eq!(halts.len(), 1);
    assert_eq!(halts[0]["key_id"], "sim-bot");
    assert_eq!(halts[0]["reason"], "fat finger");
    assert_eq!(halts[0]["halted_by"]["uid"], 0);
    // Audited, like every admin change, and in the metrics.
    let records = d.audit_records();
    let halt = records
        .iter()
        .find(|r| r["endpoint"] == "Halt")
        .unwrap_or_else(|| panic!("an audit record of the halt: {records:#?}"));
    assert_eq!(halt["kind"], "admin");
    assert_eq!(halt["key_id"], "sim-bot");
    assert_eq!(halt["outcome"], "allow");
    assert_eq!(halt["peer_uid"], 0);
    assert!(
        halt["detail"].as_str().unwrap().ends_with(": fat finger"),
        "{halt}"
    );
    assert!(records
        .iter()
        .any(|r| r["kind"] == "check" && r["reason"] == "halted" && r["key_id"] == "sim-bot"));
    let metrics = d.metrics_text();
    assert_eq!(
        metric_value(&metrics, "futu_auth_halted", &[("key_id", "sim-bot")]),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&metrics, "futu_auth_halted", &[("key_id", "other")]),
        None
    );

    let run = cli.run(&["resume", "--key", "sim-bot"]).ok();
    assert_eq!(run.stdout, "✅ Resumed trading for key \"sim-bot\"\n");
    assert_allowed(&order(&cli, "sim-bot"), "sim-bot");
    assert_allowed(&call(&cli, "sim-bot", "Trd_UnlockTrade"), "sim-bot");
    assert!(
        cli.keys().get("halts").is_none(),
        "no halts: the field is left out"
    );
    let records = d.audit_records();
    let resume = records
        .iter()
        .find(|r| r["endpoint"] == "Resume")
        .expect("a Resume record");
    assert_eq!(resume["key_id"], "sim-bot");
    assert!(resume["detail"]
        .as_str()
        .unwrap()
        .starts_with("lifted: trading halted for key sim-bot"));
    let metrics = d.metrics_text();
    assert_eq!(
        metric_value(&metrics, "futu_auth_halted", &[("key_id", "sim-bot")]),
        None
    );

    // What is not halted is not resumed.
    let run = cli.run(&["resume", "--key", "sim-bot"]);
    assert!(
        problem_line(&run, 1).contains("key \"sim-bot\" is not halted"),
        "{run:#?}"
    );
}

#[test]
fn a_halt_of_every_key_refuses_every_keys_orders_until_resume_all() {
    let d = DaemonBuilder::new(&traders()).metrics().start();
    let cli = Futucli::for_daemon(&d);
    cli.run(&["halt", "--key", "sim-bot", "--reason", "fat finger"])
        .ok();
    let run = cli.run(&["halt", "--all", "--reason", "market turmoil"]).ok();
    assert!(
        run.stdout
            .starts_with("✅ Halted trading for every key: market turmoil\n"),
        "{run:#?}"
    );
    for id in ["sim-bot", "other"] {
        assert_halted(&order(&cli, id), id, "every key", "market turmoil");
        assert_allowed(&call(&cli, id, "Qot_GetBasicQot"), id);
    }
    let metrics = d.metrics_text();
    assert_eq!(
        metric_value(&metrics, "futu_auth_halted", &[("key_id", "*")]),
        Some(1.0)
    );
    let records = d.audit_records();
    assert!(
        records
            .iter()
            .any(|r| r["endpoint"] == "Halt" && r["key_id"] == "*"),
        "{records:#?}"
    );

    // A key's own resume leaves the halt of every key, and says so.
    let run = cli.run(&["resume", "--key", "sim-bot"]).ok();
    assert!(
        run.stdout.contains("still halted: trading halted for every key"),
        "{run:#?}"
    );
    assert_halted(&order(&cli, "sim-bot"), "sim-bot", "every key", "market turmoil");
    let run = cli.run(&["resume", "--key", "sim-bot"]);
    assert!(
        problem_line(&run, 1).contains("trading is halted for every key"),
        "{run:#?}"
    );

    cli.run(&["resume", "--all"]).ok();
    for id in ["sim-bot", "other"] {
        assert_allowed(&order(&cli, id), id);
    }
    let metrics = d.metrics_text();
    assert_eq!(
        metric_value(&metrics, "futu_auth_halted", &[("key_id", "*")]),
        None
    );
}

#[test]
fn a_halt_survives_a_restart_and_a_sighup_reload() {
    let mut d = DaemonBuilder::new(&traders()).start();
    let cli = Futucli::for_daemon(&d);
    cli.run(&["halt", "--key", "sim-bot", "--reason", "fat finger"])
        .ok();
    d.stop();
    d.restart();
    assert_halted(&order(&cli, "sim-bot"), "sim-bot", "key sim-bot", "fat finger");

    // A reload of an edited keys.json (a key added) keeps the halt.
    let text = cli.keys_text();
    let mut file: Value = serde_json::from_str(&text).unwrap();
    file["keys"]
        .as_array_mut()
        .unwrap()
        .push(key_json("third", &token_for("third"), &["trade:simulate"]));
    d.write_keys_text(&serde_json::to_string_pretty(&file).unwrap());
    reload(&d);
    assert_allowed(&order(&cli, "third"), "third");
    assert_halted(&order(&cli, "sim-bot"), "sim-bot", "key sim-bot", "fat finger");

    // Halted on the file while the daemon is stopped: in force when it starts.
    d.stop();
    let run = cli.run(&["halt", "--all", "--reason", "overnight"]).ok();
    assert_route(&run, &cli, false);
    d.restart();
    assert_halted(&order(&cli, "other"), "other", "every key", "overnight");
    // And a keys.json without the halts, reloaded, lifts them.
    file.as_object_mut().unwrap().remove("halts");
    d.write_keys_text(&serde_json::to_string_pretty(&file).unwrap());
    reload(&d);
    assert_allowed(&order(&cli, "sim-bot"), "sim-bot");
}

#[test]
fn halt_and_resume_edit_keys_json_when_the_daemon_is_not_running() {
    let dir = TempDir::new().unwrap();
    let cli = Futucli::without_daemon(dir.path());
    std::fs::create_dir_all(cli.keys_file.parent().unwrap()).unwrap();
    write_private(&cli.keys_file, &keys_json(&traders()));
    let run = cli
        .run(&["halt", "--key", "sim-bot", "--reason", "fat finger"])
        .ok();
    assert_route(&run, &cli, false);
    assert_eq!(
        run.stdout.lines().next(),
        Some("✅ Halted trading for key \"sim-bot\": fat finger")
    );
    let keys = cli.keys();
    assert_eq!(keys["halts"][0]["key_id"], "sim-bot");
    assert_eq!(keys["halts"][0]["halted_by"]["uid"], 0);
    // A key that is not in the file cannot be halted; the file stays as it was.
    let before = cli.keys_text();
    let run = cli.run(&["halt", "--key", "ghost", "--reason", "x"]);
    assert!(problem_line(&run, 1).contains("ghost"), "{run:#?}");
    assert_eq!(cli.keys_text(), before);
    let run = cli.run(&["resume", "--key", "sim-bot"]).ok();
    assert_route(&run, &cli, false);
    assert!(cli.keys().get("halts").is_none());
}

#[test]
fn halt_and_resume_name_one_target_and_a_reason_the_daemon_takes() {
    let dir = TempDir::new().unwrap();
    let cli = Futucli::without_daemon(dir.path());
    for (args, says) in [
        (&["halt", "--key", "bot"][..], "--reason"),
        (&["halt", "--reason", "x"], "--key"),
        (
            &["halt", "--key", "bot", "--all", "--reason", "x"],
            "cannot be used with",
        ),
        (&["resume"], "--key"),
        (&["halt", "--all", "--reason", ""], "needs a reason"),
        (&["halt", "--all", "--reason", "two\nlines"], "one line"),
        (
            &[
                "halt",
                "--all",
                "--reason",
                "leaked fc_0123456789abcdef0123456789abcdef",
            ],
            "must not hold a key's plaintext",
        ),
    ] {
        let run = cli.run(args);
        assert_eq!(run.code, Some(2), "a usage error: {run:#?}");
        assert!(run.stderr.contains(says), "{args:?}: {run:#?}");
    }
    assert!(!cli.keys_file.exists(), "nothing was written");
}

#[test]
fn a_stranger_may_not_halt_or_resume() {
    if !can_run_as_nobody("a_stranger_may_not_halt_or_resume") {
        return;
    }
    let d = DaemonBuilder::new(&traders())
        .dir_mode(0o755)
        .arg("--socket-mode")
        .arg("0666")
        .start();
    let futucli = executable_copy(&futucli_binary(), d.dir());
    let cli = Futucli::for_daemon(&d);
    cli.run(&["halt", "--key", "other", "--reason", "fat finger"])
        .ok();
    let before = cli.keys_text();
    for args in [
        &["halt", "--all", "--reason", "prank"][..],
        &["halt", "--key", "sim-bot", "--reason", "prank"],
        &["resume", "--key", "other"],
        &["list-keys"],
    ] {
        let run = cli.run_as_nobody(&futucli, args);
        let line = problem_line(&run, 1);
        assert!(
            line.contains("needs an administrator") && line.contains("uid 65534"),
            "{args:?}: {line:?}"
        );
        assert!(
            !run.stderr.contains(NOT_REACHED),
            "a refusal is not a missing daemon"
        );
    }
    assert_eq!(cli.keys_text(), before, "keys.json is as it was");
    assert_allowed(&order(&cli, "sim-bot"), "sim-bot");
    assert_halted(&order(&cli, "other"), "other", "key other", "fat finger");
    let records = d.audit_records();
    for op in ["Halt", "Resume"] {
        assert!(
            records.iter().any(|r| r["endpoint"] == op
                && r["outcome"] == "reject"
                && r["reason"] == "forbidden"
                && r["peer_uid"] == 65534),
            "the forbidden {op} is audited: {records:#?}"
        );
    }
}

#[test]
fn list_keys_and_usage_show_the_halts() {
    let d = DaemonBuilder::new(&traders()).start();
    let cli = Futucli::for_daemon(&d);
    cli.run(&["halt", "--key", "sim-bot", "--reason", "fat finger"])
        .ok();

    let table = cli.run(&["list-keys"]).ok().stdout;
    let halt_line = table
        .lines()
        .find(|l| l.starts_with("trading halted for key sim-bot by uid 0"))
        .unwrap_or_else(|| panic!("the halt under the table: {table}"));
    assert!(halt_line.ends_with(": fat finger"), "{halt_line}");
    let json: Value = serde_json::from_str(&cli.run(&["list-keys", "--json"]).ok().stdout).unwrap();
    let of = |id: &str| {
        json.as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(of("sim-bot")["halts"][0]["key_id"], "sim-bot");
    assert_eq!(of("sim-bot")["halts"][0]["reason"], "fat finger");
    assert!(of("other").get("halts").is_none(), "{json:#}");

    let usage = cli.run(&["usage", "sim-bot"]).ok().stdout;
    assert!(
        usage
            .lines()
            .any(|l| l.starts_with("halted: trading halted for key sim-bot") && l.ends_with(": fat finger")),
        "{usage}"
    );
    assert!(cli
        .run(&["usage", "other"])
        .ok()
        .stdout
        .lines()
        .any(|l| l == "halted: no"));

    cli.run(&["halt", "--all", "--reason", "market turmoil"]).ok();
    let json: Value = serde_json::from_str(&cli.run(&["list-keys", "--json"]).ok().stdout).unwrap();
    let other = json
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == "other")
        .unwrap();
    assert_eq!(other["halts"], json!([halt_of_all(&cli)]));
    let usage = cli.run(&["usage", "other"]).ok().stdout;
    assert!(usage.contains("halted: trading halted for every key"), "{usage}");

    // On the file, with the daemon stopped, the same lines.
    let mut d = d;
    d.stop();
    let run = cli.run(&["list-keys"]).ok();
    assert!(
        run.stdout.contains("trading halted for every key by uid 0"),
        "{run:#?}"
    );
    assert!(
        run.stdout.contains("trading halted for key sim-bot by uid 0"),
        "{run:#?}"
    );
}

/// The halt of every key, as keys.json has it.
fn halt_of_all(cli: &Futucli) -> Value {
    cli.keys()["halts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["all"] == true)
        .expect("a halt of every key")
        .clone()
}

/// `futu-authd --check-config` of keys.json `text`: its exit code and stderr.
fn check_config(text: &str) -> (Option<i32>, String) {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("keys.json");
    write_private(&path, text);
    let out = std::process::Command::new(daemon_binary())
        .arg("--check-config")
        .arg("--keys-file")
        .arg(&path)
        .output()
        .expect("run futu-authd --check-config");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_halts_field_is_refused_by_check_config_naming_where() {
    let keys = traders();
    let good = keys_with_halts(
        &keys,
        json!([
            halt_entry(json!({ "key_id": "sim-bot" }), "fat finger"),
            halt_entry(json!({ "all": true }), "turmoil"),
        ]),
    );
    let (code, stderr) = check_config(&good);
    assert_eq!(code, Some(0), "{stderr}");

    let mut unknown_field = halt_entry(json!({ "key_id": "sim-bot" }), "r");
    unknown_field["until"] = "tomorrow".into();
    let cases = [
        (
            json!([halt_entry(json!({ "key_id": "ghost" }), "r")]),
            "field halts[0].key_id",
            "no key has id \"ghost\"",
        ),
        (
            json!([
                halt_entry(json!({ "key_id": "sim-bot" }), "r"),
                halt_entry(json!({ "key_id": "sim-bot" }), "again"),
            ]),
            "field halts[1].key_id",
            "two halts",
        ),
        (json!([unknown_field]), "halts[0]", "unknown field `until`"),
        (
            json!([halt_entry(json!({}), "r")]),
            "halts[0]",
            "a halt names what it stops",
        ),
        (
            json!([halt_entry(json!({ "all": true }), "")]),
            "halts[0]",
            "a halt needs a reason",
        ),
        (json!({ "all": true }), "halts", "expected a sequence"),
    ];
    for (halts, field, says) in cases {
        let (code, stderr) = check_config(&keys_with_halts(&keys, halts.clone()));
        assert_eq!(code, Some(1), "{halts}: {stderr}");
        assert!(
            stderr.contains("keys.json:") && stderr.contains(field) && stderr.contains(says),
            "{halts}: the error says where ({field}) and what ({says}): {stderr}"
        );
    }

    // A reload of such a file keeps the keys and halts in service.
    let d = DaemonBuilder::with_keys_text(keys_with_halts(
        &keys,
        json!([halt_entry(json!({ "key_id": "sim-bot" }), "fat finger")]),
    ))
    .start();
    let cli = Futucli::for_daemon(&d);
    assert_halted(&order(&cli, "sim-bot"), "sim-bot", "key sim-bot", "fat finger");
    // The halt kept in the file by someone else names its maker: alice, uid 1000.
    assert!(order(&cli, "sim-bot")
        .stdout
        .contains("by uid 1000 (alice) at 2026-12-06T10:00:00Z"));
    d.write_keys_text(&keys_with_halts(
        &keys,
        json!([halt_entry(json!({ "key_id": "ghost" }), "r")]),
    ));
    let run = cli.run(&["reload"]);
    assert!(
        problem_line(&run, 1).contains("field halts[0].key_id"),
        "{run:#?}"
    );
    assert_halted(&order(&cli, "sim-bot"), "sim-bot", "key sim-bot", "fat finger");
}
