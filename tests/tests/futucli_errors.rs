//! How futucli fails: exactly one line on stderr naming the problem, nothing on stdout,
//! nothing written — for an unknown or duplicate key id (through the daemon and on the
//! file), a bad scope, market, side, hours window or expiry (refused before the daemon or
//! the file is tried), a keys file that does not load, permission denied on the socket or
//! on the keys file (no fallback to the file), and the daemon refusing a non-administrator.

mod cli;

use std::os::unix::fs::PermissionsExt;

use cli::*;
use futu_authd_tests::{
    executable_copy, futucli_binary, key_json, keys_json, token_for, write_private, DaemonBuilder,
};
use serde_json::json;
use tempfile::TempDir;

fn assert_id_errors(cli: &Futucli, through_daemon: bool) {
    let before = cli.keys_text();
    for args in [
        &["revoke-key", "ghost"][..],
        &["bind-key", "ghost", "--freeze"],
        &["bind-key", "ghost", "--this-machine"],
    ] {
        let run = cli.run(args);
        let line = problem_line(&run, 1);
        assert!(line.contains("ghost"), "{args:?} names the unknown id: {line:?}");
        if through_daemon {
            assert!(!run.stderr.contains(NOT_REACHED), "{run:#?}");
        }
    }
    let run = cli.run(&["gen-key", "--id", "research", "--scopes", "acc:read"]);
    let line = problem_line(&run, 1);
    assert!(
        line.contains("research") && line.contains("already exists"),
        "a duplicate id is named: {line:?}"
    );
    assert_eq!(cli.keys_text(), before, "nothing was written");
}

#[test]
fn unknown_and_duplicate_ids_fail_with_one_line_through_the_daemon() {
    let d = DaemonBuilder::new(&[key_json("research", &token_for("research"), &["qot:read"])]).start();
    let cli = Futucli::for_daemon(&d);
    assert_id_errors(&cli, true);
    let line = problem_line(&cli.run(&["usage", "ghost"]), 1);
    assert!(line.contains("ghost"), "usage names the unknown id: {line:?}");
}

#[test]
fn unknown_and_duplicate_ids_fail_with_one_line_on_the_file() {
    let dir = TempDir::new().unwrap();
    let cli = Futucli::without_daemon(dir.path());
    cli.run(&["gen-key", "--id", "research", "--scopes", "qot:read"])
        .ok();
    assert_id_errors(&cli, false);
    // usage needs the daemon: the one line says it was not reached.
    let line = problem_line(&cli.run(&["usage", "research"]), 1);
    assert!(
        line.contains("futu-authd") && line.contains(&cli.socket.display().to_string()),
        "usage without a daemon names the socket: {line:?}"
    );
}

#[test]
fn a_bad_scope_market_side_hours_window_or_expiry_is_refused_before_anything_is_written() {
    let dir = TempDir::new().unwrap();
    let cli = Futucli::without_daemon(dir.path());
    let cases: [(&[&str], &str, i32); 10] = [
        (&["--scopes", "qot:write"], "qot:write", 2),
        (&["--scopes", "qot:read", "--allowed-markets", "HK,XX"], "XX", 2),
        (
            &["--scopes", "qot:read", "--allowed-trd-sides", "SIDEWAYS"],
            "SIDEWAYS",
            2,
        ),
        (
            &["--scopes", "qot:read", "--hours-window", "25:00-26:00"],
            "25:00-26:00",
            2,
        ),
        (
            &["--scopes", "qot:read", "--hours-window", "0930-1600"],
            "0930-1600",
            2,
        ),
        (&["--scopes", "qot:read", "--expires", "30y"], "30y", 1),
        (&["--scopes", "qot:read", "--expires", "tomorrow"], "tomorrow", 1),
        (&["--scopes", "qot:read", "--expires=-1d"], "-1d", 1),
        (&["--scopes", "qot:read", "--expires", "0d"], "0d", 1),
        (
            &["--scopes", "qot:read", "--expires", "2020-01-01T00:00:00Z"],
            "past",
            1,
        ),
    ];
    for (extra, named, code) in cases {
        let mut args = vec!["gen-key", "--id", "bad"];
        args.extend_from_slice(extra);
        let run = cli.run(&args);
        let line = problem_line(&run, code);
        assert!(
            line.contains(named),
            "{extra:?}: the line names {named:?}: {line:?}"
        );
        assert!(
            !run.stderr.contains(NOT_REACHED),
            "{extra:?} is refused before the daemon or the file is tried: {run:#?}"
        );
        assert!(!cli.keys_file.exists(), "{extra:?}: no keys file was written");
    }
}

#[test]
fn a_keys_file_that_does_not_load_is_refused_whole_and_left_untouched() {
    let dir = TempDir::new().unwrap();
    let cli = Futucli::without_daemon(dir.path());
    std::fs::create_dir(cli.keys_file.parent().unwrap()).unwrap();
    let mut typo = key_json("sim-bot", &token_for("sim-bot"), &["trade:simulate"]);
    typo["limits"] = json!({ "max_order_valeu": 100000 });
    let text = keys_json(&[typo]);
    write_private(&cli.keys_file, &text);
    for args in [
        &["gen-key", "--id", "research", "--scopes", "qot:read"][..],
        &["list-keys"],
        &["bind-key", "sim-bot", "--freeze"],
        &["revoke-key", "sim-bot"],
    ] {
        let line = problem_line(&cli.run(args), 1);
        for named in [
            format!("{}:", cli.keys_file.display()),
            "sim-bot".into(),
            "max_order_valeu".into(),
        ] {
            assert!(
                line.contains(&named),
                "{args:?}: the line names {named:?}: {line:?}"
            );
        }
        assert_eq!(cli.keys_text(), text, "{args:?} left the file as it was");
    }
}

#[test]
fn permission_denied_on_the_socket_is_one_line_and_no_fallback_to_the_file() {
    if !can_run_as_nobody("permission_denied_on_the_socket_is_one_line_and_no_fallback_to_the_file") {
        return;
    }
    let d = DaemonBuilder::new(&[key_json("research", &token_for("research"), &["qot:read"])])
        .dir_mode(0o755)
        .arg("--socket-mode")
        .arg("0600")
        .start();
    let futucli = executable_copy(&futucli_binary(), d.dir());
    let cli = Futucli::for_daemon(&d);
    let before = cli.keys_text();
    for args in [
        &["list-keys"][..],
        &["gen-key", "--id", "intruder", "--scopes", "trade:real"],
    ] {
        let run = cli.run_as_nobody(&futucli, args);
        let line = problem_line(&run, 1);
        assert!(
            line.contains("Permission denied") && line.contains(&cli.socket.display().to_string()),
            "{args:?}: the line names the socket and the denial: {line:?}"
        );
        assert!(
            !run.stderr.contains(NOT_REACHED),
            "a refusal is not a missing daemon"
        );
    }
    let run = cli.run_as_nobody(
        &futucli,
        &[
            "check",
            "--token",
            &token_for("research"),
            "--endpoint",
            "Qot_GetBasicQot",
        ],
    );
    assert!(problem_line(&run, 2).contains("Permission denied"));
    assert_eq!(cli.keys_text(), before, "no key was made");
}

#[test]
fn permission_denied_on_the_keys_file_is_one_line() {
    if !can_run_as_nobody("permission_denied_on_the_keys_file_is_one_line") {
        return;
    }
    let dir = TempDir::new().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cli = Futucli::without_daemon(dir.path());
    let keys_dir = cli.keys_file.parent().unwrap();
    std::fs::create_dir(keys_dir).unwrap();
    std::fs::set_permissions(keys_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    write_private(
        &cli.keys_file,
        &keys_json(&[key_json("research", &token_for("research"), &["qot:read"])]),
    );
    let futucli = executable_copy(&futucli_binary(), dir.path());
    let before = cli.keys_text();
    for args in [
        &["list-keys"][..],
        &["revoke-key", "research"],
        &["gen-key", "--id", "intruder", "--scopes", "trade:real"],
    ] {
        let run = cli.run_as_nobody(&futucli, args);
        let line = problem_line(&run, 1);
        assert!(
            line.contains("Permission denied") && line.contains(&keys_dir.display().to_string()),
            "{args:?}: the line names the file and the denial: {line:?}"
        );
    }
    assert_eq!(cli.keys_text(), before, "nothing was written");
}

#[test]
fn the_daemon_refusing_a_non_administrator_is_one_line() {
    if !can_run_as_nobody("the_daemon_refusing_a_non_administrator_is_one_line") {
        return;
    }
    let d = DaemonBuilder::new(&[key_json("research", &token_for("research"), &["qot:read"])])
        .dir_mode(0o755)
        .arg("--socket-mode")
        .arg("0666")
        .start();
    let futucli = executable_copy(&futucli_binary(), d.dir());
    let cli = Futucli::for_daemon(&d);
    let before = cli.keys_text();
    for args in [
        &["list-keys"][..],
        &["gen-key", "--id", "intruder", "--scopes", "trade:real"],
        &["revoke-key", "research"],
        &["reload"],
    ] {
        let run = cli.run_as_nobody(&futucli, args);
        let line = problem_line(&run, 1);
        assert!(
            line.contains("refused") && line.contains("administrator") && line.contains("65534"),
            "{args:?}: the line says the daemon refused a non-administrator: {line:?}"
        );
        assert!(!run.stderr.contains(NOT_REACHED), "{run:#?}");
    }
    assert_eq!(cli.keys_text(), before, "nothing was written");
    // A check is not an admin request: uid 65534 may ask.
    let run = cli.run_as_nobody(
        &futucli,
        &[
            "check",
            "--token",
            &token_for("research"),
            "--endpoint",
            "Qot_GetBasicQot",
        ],
    );
    assert_eq!(run.code, Some(0), "{run:#?}");
}
