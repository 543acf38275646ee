//! futucli when whoever reads its output goes away: `futucli usage KEY | true`,
//! `futucli list-keys | head -1`, a closed stderr. No command panics or says anything
//! about it: a closed stdout ends futucli with status 141 (128 + SIGPIPE, what a shell
//! reports for a program SIGPIPE killed), a closed stderr loses only the messages and the
//! command exits with its own status.

use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};

use futu_auth_proto::{Iface, Request};
use futu_authd_tests::{
    futucli_command, have_program, key_json, keys_json, skip, token_for, with, write_private, Daemon,
    DaemonBuilder,
};
use serde_json::json;

/// What a shell reports for a program SIGPIPE killed, and what futucli exits with when
/// its stdout is closed.
const CLOSED_PIPE: i32 = 141;

/// The write end of a pipe whose read end is already closed: every write to it fails
/// with EPIPE, whenever the writer gets to it.
fn closed_pipe() -> OwnedFd {
    let (read, write) = nix::unistd::pipe().expect("a pipe");
    drop(read);
    write
}

/// Exit code and stderr of `cmd` run with a closed stdout.
fn with_closed_stdout(mut cmd: Command) -> (Option<i32>, String) {
    let out = cmd
        .stdout(Stdio::from(closed_pipe()))
        .stderr(Stdio::piped())
        .output()
        .expect("run futucli");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Exit code and stdout of `cmd` run with a closed stderr.
fn with_closed_stderr(mut cmd: Command) -> (Option<i32>, String) {
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::from(closed_pipe()))
        .output()
        .expect("run futucli");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A daemon with the key `bot` (its token is `token_for("pipes")`) and an audit file of
/// `checks` quote checks of it.
async fn daemon_with_audit(checks: usize) -> Daemon {
    let token = token_for("pipes");
    let bot = with(
        key_json("bot", &token, &["qot:read", "trade:simulate"]),
        "limits",
        json!({ "max_daily_value": 1000 }),
    );
    let d = DaemonBuilder::new(&[bot]).start();
    let mut c = d.client().await;
    for chunk in (0..checks).collect::<Vec<_>>().chunks(500) {
        for _ in chunk {
            let check = c.check_request(Iface::Rest, &token, "Qot_GetBasicQot", None);
            c.feed(Request::Check(check)).await;
        }
        c.flush().await;
        for _ in chunk {
            c.recv().await;
        }
    }
    d.wait_audit(checks);
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_ends_quietly_with_141_when_stdout_is_closed() {
    let d = daemon_with_audit(5000).await;
    let token = token_for("pipes");
    let audit = d.audit_path();
    let audit = audit.to_str().expect("a UTF-8 path");
    let keys = d.keys_path();
    let keys = keys.to_str().expect("a UTF-8 path");
    let check = ["check", "--token", &token, "--endpoint", "Qot_GetBasicQot"];
    let commands: Vec<Vec<&str>> = vec![
        vec!["usage", "bot"],
        vec!["list-keys"],
        vec!["list-keys", "--json"],
        vec!["list-keys", "--unused-for", "1d"],
        check.to_vec(),
        [&check[..], &["--json"]].concat(),
        vec!["replay", "--audit", audit, "--keys", keys],
        vec!["replay", "--audit", audit, "--keys", keys, "--json"],
        vec!["machine-id"],
        vec!["reload"],
        vec!["gen-key", "--id", "piped", "--scopes", "qot:read"],
        vec!["bind-key", "piped", "--this-machine"],
        vec!["rotate-key", "piped"],
        vec!["revoke-key", "piped"],
        vec!["completions", "bash"],
        vec!["--help"],
        vec!["usage", "--help"],
        vec!["--version"],
    ];
    for args in commands {
        let mut cmd = d.futucli();
        cmd.env("TZ", "UTC").args(&args);
        let (code, stderr) = with_closed_stdout(cmd);
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
        assert_eq!(stderr, "", "{args:?} ends quietly");
        assert_eq!(code, Some(CLOSED_PIPE), "{args:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_after_the_first_line_ends_futucli_quietly() {
    // More than a pipe holds (64 KiB), so futucli is still writing when the reader goes.
    let keys: Vec<_> = (0..600)
        .map(|i| {
            with(
                key_json(
                    &format!("key-{i:03}"),
                    &token_for(&format!("k{i}")),
                    &["qot:read"],
                ),
                "note",
                json!("a note long enough that six hundred keys fill more than a pipe holds"),
            )
        })
        .collect();
    let d = DaemonBuilder::new(&keys).start();
    let mut child = d
        .futucli()
        .args(["list-keys", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run futucli");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout is piped"))
        .read_line(&mut first)
        .expect("read the first line");
    assert_eq!(first, "[\n");
    // The reader is dropped: the rest cannot be written.
    let out = child.wait_with_output().expect("wait for futucli");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr, "", "quietly");
    assert_eq!(out.status.code(), Some(CLOSED_PIPE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_piped_into_true_neither_panics_nor_says_anything() {
    if !have_program("bash") {
        return skip("bash is not installed");
    }
    let d = daemon_with_audit(1).await;
    for _ in 0..20 {
        let cmd = d.futucli();
        let mut argv = vec![cmd.get_program().to_owned()];
        argv.extend(cmd.get_args().map(|a| a.to_owned()));
        // Whether `true` has gone before futucli writes is a race: 141 when it has, 0
        // when the line still fitted in the pipe.
        let out = Command::new("bash")
            .arg("-c")
            .arg(r#"set -o pipefail; "$@" usage bot | true"#)
            .arg("bash")
            .args(&argv)
            .stdin(Stdio::null())
            .output()
            .expect("run bash");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr, "", "quietly");
        assert!(
            matches!(out.status.code(), Some(0 | CLOSED_PIPE)),
            "{:?}",
            out.status
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stderr_loses_only_the_message() {
    let d = daemon_with_audit(1).await;

    // The error of an unknown key goes nowhere; the status is still the error's.
    let mut cmd = d.futucli();
    cmd.args(["usage", "nobody"]);
    let (code, stdout) = with_closed_stderr(cmd);
    assert_eq!((code, stdout.as_str()), (Some(1), ""));

    // With the daemon away, the note that futucli reads the file itself goes nowhere; the
    // listing is printed all the same.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let keys = dir.path().join("keys.json");
    write_private(
        &keys,
        &keys_json(&[key_json("solo", &token_for("solo"), &["qot:read"])]),
    );
    let mut cmd = futucli_command();
    cmd.arg("--socket")
        .arg(dir.path().join("no.sock"))
        .arg("--keys-file")
        .arg(&keys)
        .arg("list-keys");
    let (code, stdout) = with_closed_stderr(cmd);
    assert_eq!(code, Some(0));
    assert!(stdout.starts_with("ID "), "{stdout}");
    assert!(stdout.contains("solo"), "{stdout}");

    // Both closed: stdout decides.
    let mut cmd = d.futucli();
    cmd.args(["usage", "bot"])
        .stdout(Stdio::from(closed_pipe()))
        .stderr(Stdio::from(closed_pipe()));
    let status = cmd.status().expect("run futucli");
    assert_eq!(status.code(), Some(CLOSED_PIPE));
}
