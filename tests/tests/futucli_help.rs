//! What futucli answers by itself, with no daemon and no keys file: `--help` of every
//! command naming each of its flags, a bash completion script, and `machine-id`, this
//! host's fingerprint as the daemon computes it (and one line when the machine id cannot
//! be read).

mod cli;

use cli::*;
use futu_authd_tests::{futucli_command, this_fingerprint, MACHINE_ID};
use tempfile::TempDir;

#[test]
fn every_command_has_help_naming_its_flags() {
    let help = |args: &[&str]| -> String {
        let out = futucli_command().args(args).output().expect("run futucli");
        assert_eq!(out.status.code(), Some(0), "futucli {args:?} exits 0");
        String::from_utf8(out.stdout).expect("UTF-8 help")
    };
    let top = help(&["--help"]);
    let commands: [(&str, &[&str]); 9] = [
        (
            "gen-key",
            &[
                "--id",
                "--scopes",
                "--allowed-markets",
                "--allowed-symbols",
                "--allowed-trd-sides",
                "--max-order-value",
                "--max-daily-value",
                "--max-orders-per-minute",
                "--hours-window",
                "--expires",
                "--note",
                "--bind-this-machine",
                "--bind-machines",
            ],
        ),
        ("list-keys", &["--json"]),
        ("revoke-key", &["<ID>"]),
        (
            "bind-key",
            &[
                "<ID>",
                "--this-machine",
                "--machines",
                "--replace",
                "--freeze",
                "--clear",
            ],
        ),
        ("machine-id", &["--machine-id-file"]),
        ("usage", &["<ID>"]),
        ("reload", &["--socket"]),
        (
            "check",
            &[
                "--token",
                "--endpoint",
                "--market",
                "--symbol",
                "--side",
                "--qty",
                "--price",
                "--dry-run",
                "--json",
            ],
        ),
        ("completions", &["bash"]),
    ];
    for (cmd, flags) in commands {
        assert!(
            top.lines().any(|l| l.split_whitespace().next() == Some(cmd)),
            "futucli --help lists {cmd}: {top}"
        );
        let text = help(&[cmd, "--help"]);
        for flag in flags.iter().chain(&["--socket", "--keys-file"]) {
            assert!(
                text.contains(flag),
                "futucli {cmd} --help mentions {flag}: {text}"
            );
        }
    }
    let script = help(&["completions", "bash"]);
    assert!(
        script.contains("gen-key") && script.contains("complete"),
        "a bash completion script"
    );
}

#[test]
fn machine_id_prints_this_hosts_fingerprint() {
    let dir = TempDir::new().unwrap();
    let cli = Futucli::without_daemon(dir.path());
    let run = cli.run(&["machine-id"]).ok();
    let fp = run.stdout.trim();
    let hex = fp
        .strip_prefix("fp_")
        .unwrap_or_else(|| panic!("fp_ prefix: {fp:?}"));
    assert!(
        hex.len() == 16
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "fp_ and 16 lower-case hex digits: {fp:?}"
    );
    assert_eq!(fp, futu_auth_keys::machine::fingerprint_of(MACHINE_ID).as_str());
    assert_eq!(fp, this_fingerprint(), "the fingerprint the daemon uses");
    assert!(
        !fp.contains(&MACHINE_ID[..8]),
        "the machine id cannot be read back"
    );

    std::fs::write(&cli.machine_id_file, "").unwrap();
    let line = problem_line(&cli.run(&["machine-id"]), 1);
    assert!(
        line.contains(&cli.machine_id_file.display().to_string()),
        "{line:?}"
    );
}
