//! What the futucli tests share: futucli run as a real process with its paths in a test's
//! own directory, either THROUGH THE DAEMON (a real futu-authd answers on the socket;
//! changes take effect at once) or ON THE FILE (the socket does not exist; futucli says so
//! in one line and edits keys.json itself), and what its output and keys.json are checked
//! against. Each test file uses a part of it.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use futu_auth_client::Decision;
use futu_authd_tests::{daemon_binary, futucli_command, have_program, run_as, Client, Daemon, MACHINE_ID};
use jiff::{Span, Timestamp};
use serde_json::Value;

// ---- running futucli -------------------------------------------------------------------

/// Where one futucli is pointed: a socket (the daemon's, or one that does not exist), a
/// keys file and a machine-id file, all inside the test's own temporary directory.
pub struct Futucli {
    pub socket: PathBuf,
    pub keys_file: PathBuf,
    pub machine_id_file: PathBuf,
    /// Pass the three paths as `FUTU_AUTH_SOCKET`, `FUTU_KEYS_FILE` and
    /// `FUTU_AUTHD_MACHINE_ID_FILE` instead of flags.
    pub by_env: bool,
}

/// What one futucli run did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn from_output(out: Output, elapsed: Duration) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8(out.stdout).expect("futucli prints UTF-8"),
            stderr: String::from_utf8(out.stderr).expect("futucli prints UTF-8"),
            elapsed,
        }
    }

    /// Asserts exit 0; returns self for more checks.
    pub fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "futucli failed: {self:#?}");
        self
    }
}

/// The line futucli prints on stderr when it edits the keys file because the daemon is
/// not running.
pub const NOT_REACHED: &str = "futu-authd not reached at";

/// The hint clap adds under a command-line error; not a second problem.
pub const CLAP_HINT: &str = "For more information, try '--help'.";

impl Futucli {
    /// futucli talking to a running daemon, with the daemon's keys file and machine id.
    pub fn for_daemon(d: &Daemon) -> Futucli {
        Futucli {
            socket: d.socket_path(),
            keys_file: d.keys_path(),
            machine_id_file: d.dir().join("machine-id"),
            by_env: false,
        }
    }

    /// futucli with no daemon: the socket in `dir` does not exist; the keys file is
    /// `dir/keys/keys.json` (the directory is made by futucli); the machine id is the
    /// harness's [`MACHINE_ID`].
    pub fn without_daemon(dir: &Path) -> Futucli {
        let machine_id_file = dir.join("machine-id");
        std::fs::write(&machine_id_file, format!("{MACHINE_ID}\n")).expect("write machine-id");
        Futucli {
            socket: dir.join("no-daemon.sock"),
            keys_file: dir.join("keys").join("keys.json"),
            machine_id_file,
            by_env: false,
        }
    }

    pub fn by_env(mut self) -> Futucli {
        self.by_env = true;
        self
    }

    /// The flags naming the socket, keys file and machine-id file.
    pub fn path_flags(&self) -> Vec<OsString> {
        vec![
            "--socket".into(),
            self.socket.clone().into(),
            "--keys-file".into(),
            self.keys_file.clone().into(),
            "--machine-id-file".into(),
            self.machine_id_file.clone().into(),
        ]
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = futucli_command();
        if self.by_env {
            cmd.env("FUTU_AUTH_SOCKET", &self.socket)
                .env("FUTU_KEYS_FILE", &self.keys_file)
                .env("FUTU_AUTHD_MACHINE_ID_FILE", &self.machine_id_file);
        } else {
            cmd.args(self.path_flags());
        }
        cmd.args(args);
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let start = Instant::now();
        let out = self.command(args).output().expect("run futucli");
        Run::from_output(out, start.elapsed())
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn futucli")
    }

    /// Runs `program` (a copy of futucli another user can reach) as uid/gid 65534 with no
    /// supplementary groups, with this futucli's paths.
    pub fn run_as_nobody(&self, program: &Path, args: &[&str]) -> Run {
        let mut all = self.path_flags();
        all.extend(args.iter().map(OsString::from));
        let all: Vec<&OsStr> = all.iter().map(OsString::as_os_str).collect();
        let start = Instant::now();
        let out = run_as(65534, 65534, &[], program, &all);
        Run::from_output(out, start.elapsed())
    }

    /// keys.json as JSON, after asserting it is mode 0600 and that futu-authd loads it.
    pub fn keys(&self) -> Value {
        let meta = std::fs::metadata(&self.keys_file).expect("keys.json exists");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "keys.json is mode 0600");
        let out = Command::new(daemon_binary())
            .arg("--check-config")
            .arg("--keys-file")
            .arg(&self.keys_file)
            .output()
            .expect("run futu-authd --check-config");
        assert!(
            out.status.success(),
            "futu-authd --check-config refuses what futucli wrote: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&self.keys_file).expect("read keys.json");
        serde_json::from_str(&text).expect("keys.json is JSON")
    }

    pub fn keys_text(&self) -> String {
        std::fs::read_to_string(&self.keys_file).expect("read keys.json")
    }
}

/// Asserts how futucli reached its target: through the daemon it says nothing on stderr; on
/// the file it says, in exactly one line, that the daemon was not reached.
pub fn assert_route(run: &Run, cli: &Futucli, through_daemon: bool) {
    if through_daemon {
        assert_eq!(run.stderr, "", "nothing on stderr through the daemon: {run:#?}");
    } else {
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr on the file: {run:#?}");
        assert!(
            lines[0].contains(NOT_REACHED)
                && lines[0].contains(&cli.socket.display().to_string())
                && lines[0].contains(&cli.keys_file.display().to_string()),
            "the line says the daemon at the socket was not reached and the file is edited: {:?}",
            lines[0]
        );
    }
}

/// Asserts the run failed with `code` and that stderr has exactly one line naming the
/// problem (besides the not-reached notice of the file route and clap's `--help` hint);
/// returns that line.
pub fn problem_line(run: &Run, code: i32) -> String {
    assert_eq!(run.code, Some(code), "exit code: {run:#?}");
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains(NOT_REACHED) && *l != CLAP_HINT)
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "exactly one line naming the problem on stderr: {run:#?}"
    );
    assert!(run.stdout.is_empty(), "nothing on stdout on failure: {run:#?}");
    lines[0].to_owned()
}

/// The plaintext from gen-key's output, after asserting its three lines exactly as the
/// README's Quickstart shows them.
pub fn generated_token(run: &Run, id: &str, stored_in: &Path) -> String {
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "gen-key prints three lines: {run:#?}");
    assert_eq!(lines[0], format!("✅ Generated key \"{id}\""));
    let token = lines[1]
        .strip_prefix("plaintext: ")
        .and_then(|l| l.strip_suffix(" ← save this; the terminal output is your only copy"))
        .unwrap_or_else(|| panic!("the plaintext line: {:?}", lines[1]));
    let hex = token
        .strip_prefix("fc_")
        .unwrap_or_else(|| panic!("fc_ prefix: {token:?}"));
    assert!(
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "fc_ and 32 lower-case hex digits: {token:?}"
    );
    assert_eq!(lines[2], format!("stored in: {}", stored_in.display()));
    token.to_owned()
}

/// The record of key `id` in keys.json.
pub fn record<'a>(keys: &'a Value, id: &str) -> &'a Value {
    assert_eq!(keys["version"], 1, "keys.json version: {keys:#}");
    keys["keys"]
        .as_array()
        .expect("keys is an array")
        .iter()
        .find(|k| k["id"] == id)
        .unwrap_or_else(|| panic!("no key {id:?} in {keys:#}"))
}

pub fn ids(keys: &Value) -> BTreeSet<String> {
    keys["keys"]
        .as_array()
        .expect("keys is an array")
        .iter()
        .map(|k| k["id"].as_str().expect("id is a string").to_owned())
        .collect()
}

/// `field` is absent or null in `rec` (both mean "not set" in keys.json).
pub fn assert_unset(rec: &Value, field: &str) {
    assert!(rec[field].is_null(), "{field} is unset: {rec:#}");
}

/// Only keys.json's documented fields of a key record appear.
pub fn assert_only_documented_fields(rec: &Value) {
    const FIELDS: [&str; 8] = [
        "id",
        "hash",
        "scopes",
        "limits",
        "allowed_machines",
        "created_at",
        "expires_at",
        "note",
    ];
    for k in rec.as_object().expect("a record is an object").keys() {
        assert!(FIELDS.contains(&k.as_str()), "unknown field {k:?} in {rec:#}");
    }
}

/// The set (non-null) fields of a record's `limits`.
pub fn limit_fields(rec: &Value) -> BTreeSet<String> {
    match &rec["limits"] {
        Value::Null => BTreeSet::new(),
        Value::Object(m) => m
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, _)| k.clone())
            .collect(),
        other => panic!("limits is an object: {other}"),
    }
}

pub fn timestamp(v: &Value) -> Timestamp {
    v.as_str()
        .unwrap_or_else(|| panic!("an RFC 3339 string: {v}"))
        .parse()
        .unwrap_or_else(|e| panic!("RFC 3339 {v}: {e}"))
}

/// Now, cut to whole seconds (keys.json keeps whole seconds).
pub fn now_seconds() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).expect("now is a valid timestamp")
}

/// Asserts `t` lies within [from, to] widened by one second either side.
pub fn assert_between(what: &str, t: Timestamp, from: Timestamp, to: Timestamp) {
    let slack = Span::new().seconds(1);
    assert!(
        t >= from.checked_sub(slack).unwrap() && t <= to.checked_add(slack).unwrap(),
        "{what} {t} is not within {from}..={to}"
    );
}

/// Any run of 64 hex digits (a full SHA-256 hash) in `text`.
pub fn full_hash_in(text: &str) -> Option<String> {
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_hexdigit() {
            run.push(c);
        } else {
            if run.len() >= 64 {
                return Some(run);
            }
            run.clear();
        }
    }
    None
}

/// A POSIX `TZ` in which the local time is now about 12:45, the middle of `09:30-16:00`,
/// so the Quickstart's sim-bot key is inside its hours window whenever this runs.
pub fn tz_near_midday() -> String {
    let utc_minute = Timestamp::now().as_second().rem_euclid(86_400) / 60;
    let mut east = (12 * 60 + 45 - utc_minute).rem_euclid(24 * 60);
    if east > 12 * 60 {
        east -= 24 * 60;
    }
    // POSIX counts offsets west of Greenwich as positive.
    let west = -east;
    let sign = if west < 0 { '-' } else { '+' };
    format!("XYZ{sign}{:02}:{:02}", west.abs() / 60, west.abs() % 60)
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether the tests that run futucli as uid 65534 can run; prints why not.
pub fn can_run_as_nobody(test: &str) -> bool {
    if !is_root() {
        futu_authd_tests::skip(&format!("{test}: needs root to run futucli as uid 65534"));
        return false;
    }
    if !have_program("setpriv") {
        futu_authd_tests::skip(&format!("{test}: setpriv (util-linux) is not installed"));
        return false;
    }
    true
}

/// What the daemon decides for `token` on a quote endpoint, asked over the socket.
pub async fn quote_decision(c: &mut Client, token: &str) -> Decision {
    c.check(token, "Qot_GetBasicQot", None).await
}
