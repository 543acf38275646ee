//! `futucli replay`'s progress over a large audit file: on a terminal (a pseudo-terminal
//! that `script` gives it, Debian's bsdutils) a line on stderr rewritten in place — lines read,
//! MiB and the share of the file — and erased before the report; piped, not a byte of it,
//! and the report the same either way.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use futu_authd_tests::{
    futucli_binary, futucli_command, have_program, key_json, keys_json, skip, this_fingerprint, token_for,
    write_private, Run,
};

/// Records in the generated file: enough for a debug build to take well over the quarter
/// of a second before the first drawing.
const RECORDS: u64 = 100_000;

/// An audit file of [`RECORDS`] quotes of the key `reader`, a millisecond apart, and a
/// keys file that has the key.
fn large_audit(dir: &Path) -> (PathBuf, PathBuf) {
    let keys = dir.join("keys.json");
    write_private(
        &keys,
        &keys_json(&[key_json("reader", &token_for("reader"), &["qot:read"])]),
    );
    let start = jiff::Timestamp::from_second(1_796_000_000).unwrap();
    let mut text = String::with_capacity(RECORDS as usize * 320);
    for i in 0..RECORDS {
        let ts = start + jiff::SignedDuration::from_millis(i as i64);
        text.push_str(&format!(
            concat!(
                r#"{{"ts":"{ts}","kind":"check","iface":"rest","endpoint":"Qot_GetBasicQot","key_id":"reader","#,
                r#""outcome":"allow","reason":null,"error":null,"detail":null,"scope":"qot:read","order":null,"#,
                r#""dry_run":false,"ticket":null,"request_id":{id},"peer_uid":1000,"peer_pid":4242,"latency_us":90}}"#,
                "\n"
            ),
            ts = ts,
            id = i + 1,
        ));
    }
    let audit = dir.join("audit.jsonl");
    std::fs::write(&audit, text).expect("write the audit file");
    (audit, keys)
}

/// The arguments of the replay, after `futucli`.
fn replay_args(audit: &Path, keys: &Path) -> Vec<String> {
    vec![
        "replay".into(),
        "--machine".into(),
        this_fingerprint(),
        "--audit".into(),
        audit.display().to_string(),
        "--keys".into(),
        keys.display().to_string(),
    ]
}

#[test]
fn replay_piped_prints_its_report_and_no_progress_and_on_a_terminal_shows_it_in_place() {
    if !have_program("script") {
        return skip("script (Debian's bsdutils) is not installed");
    }
    let dir = tempfile::tempdir().expect("a directory");
    let (audit, keys) = large_audit(dir.path());
    let size = std::fs::metadata(&audit).unwrap().len();

    // Piped: the report alone on stdout, nothing on stderr.
    let piped = Run::from(
        futucli_command()
            .env("TZ", "UTC")
            .args(replay_args(&audit, &keys))
            .output()
            .expect("run futucli"),
    );
    assert_eq!(piped.code, Some(0), "{piped:#?}");
    assert_eq!(piped.stderr, "", "no progress when stderr is a pipe");
    assert!(
        piped.stdout.starts_with(&format!(
            "Replayed {} against {}\n",
            audit.display(),
            keys.display()
        )),
        "{}",
        piped.stdout
    );
    assert!(
        piped.stdout.contains(&format!(
            "  records: {RECORDS} read, {RECORDS} replayed ({RECORDS} unchanged, 0 changed)\n"
        )),
        "{}",
        piped.stdout
    );

    // On a terminal: stderr is script's pseudo-terminal, stdout a file.
    let report = dir.path().join("report.txt");
    let mut line = format!("exec '{}'", futucli_binary().display());
    for a in replay_args(&audit, &keys) {
        line.push_str(&format!(" '{a}'"));
    }
    line.push_str(&format!(" >'{}'", report.display()));
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .env("SHELL", "/bin/sh")
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .output()
        .expect("run script");
    let terminal = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{terminal}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&report).unwrap(),
        piped.stdout,
        "the report is the same, byte for byte, whatever stderr is"
    );

    // Each drawing erases the line and writes it again; the last erases it for good.
    let drawings: Vec<&str> = terminal.split("\r\x1b[2K").skip(1).collect();
    assert!(
        drawings.len() >= 2,
        "at least one progress line, then its erasure: {terminal:?}"
    );
    assert_eq!(
        drawings.last(),
        Some(&""),
        "the line is erased at the end: {terminal:?}"
    );
    let tenths = (size * 10 + 524_288) / 1_048_576;
    let total = format!(" of {}.{} MiB (", tenths / 10, tenths % 10);
    let mut last = 0u64;
    for d in &drawings[..drawings.len() - 1] {
        let rest = d
            .strip_prefix("replay: ")
            .unwrap_or_else(|| panic!("a progress line: {d:?}"));
        let (lines, rest) = rest.split_once(" lines read, ").unwrap();
        let lines: u64 = lines.parse().unwrap();
        assert!(lines > last && lines <= RECORDS, "{d:?} after {last} lines");
        last = lines;
        assert!(rest.contains(" MiB") && rest.contains(&total), "{d:?}");
        let percent: u64 = rest
            .rsplit_once('(')
            .and_then(|(_, p)| p.strip_suffix("%)"))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("a percentage: {d:?}"));
        assert!(percent <= 100, "{d:?}");
    }
}
