//! End-to-end tests of `futucli` and of the `futu-auth-client` library.
//!
//! futucli runs as a real process, either THROUGH THE DAEMON (a real futu-authd answers on
//! the socket; changes take effect at once) or ON THE FILE (the socket does not exist;
//! futucli says so in one line and edits keys.json itself). The library is driven against
//! real daemons (stopped, restarted, shared by many callers) and against fake servers that
//! accept and then never answer.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futu_auth_client::{AuthClient, BlockingAuthClient, ClientError, Decision, Iface, Reason, Scope, Token};
use futu_auth_proto::{Market, Request, TrdSide};
use futu_authd_tests::{
    allowed_key, away_from_utc_midnight, daemon_binary, deny_reason, executable_copy, futucli_binary,
    futucli_command, hash_of, have_program, key_json, keys_json, order, run_as, this_fingerprint, token_for,
    with, write_private, Client, Daemon, DaemonBuilder, SilentServer, MACHINE_ID,
};
use jiff::{Span, Timestamp};
use serde_json::{json, Value};
use tempfile::TempDir;

// ---- running futucli -------------------------------------------------------------------

/// Where one futucli is pointed: a socket (the daemon's, or one that does not exist), a
/// keys file and a machine-id file, all inside the test's own temporary directory.
struct Futucli {
    socket: PathBuf,
    keys_file: PathBuf,
    machine_id_file: PathBuf,
    /// Pass the three paths as `FUTU_AUTH_SOCKET`, `FUTU_KEYS_FILE` and
    /// `FUTU_AUTHD_MACHINE_ID_FILE` instead of flags.
    by_env: bool,
}

/// What one futucli run did.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    fn from_output(out: Output, elapsed: Duration) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8(out.stdout).expect("futucli prints UTF-8"),
            stderr: String::from_utf8(out.stderr).expect("futucli prints UTF-8"),
            elapsed,
        }
    }

    /// Asserts exit 0; returns self for more checks.
    fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "futucli failed: {self:#?}");
        self
    }
}

/// The line futucli prints on stderr when it edits the keys file because the daemon is
/// not running.
const NOT_REACHED: &str = "futu-authd not reached at";

/// The hint clap adds under a command-line error; not a second problem.
const CLAP_HINT: &str = "For more information, try '--help'.";

impl Futucli {
    /// futucli talking to a running daemon, with the daemon's keys file and machine id.
    fn for_daemon(d: &Daemon) -> Futucli {
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
    fn without_daemon(dir: &Path) -> Futucli {
        let machine_id_file = dir.join("machine-id");
        std::fs::write(&machine_id_file, format!("{MACHINE_ID}\n")).expect("write machine-id");
        Futucli {
            socket: dir.join("no-daemon.sock"),
            keys_file: dir.join("keys").join("keys.json"),
            machine_id_file,
            by_env: false,
        }
    }

    fn by_env(mut self) -> Futucli {
        self.by_env = true;
        self
    }

    /// The flags naming the socket, keys file and machine-id file.
    fn path_flags(&self) -> Vec<OsString> {
        vec![
            "--socket".into(),
            self.socket.clone().into(),
            "--keys-file".into(),
            self.keys_file.clone().into(),
            "--machine-id-file".into(),
            self.machine_id_file.clone().into(),
        ]
    }

    fn command(&self, args: &[&str]) -> Command {
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

    fn run(&self, args: &[&str]) -> Run {
        let start = Instant::now();
        let out = self.command(args).output().expect("run futucli");
        Run::from_output(out, start.elapsed())
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn futucli")
    }

    /// Runs `program` (a copy of futucli another user can reach) as uid/gid 65534 with no
    /// supplementary groups, with this futucli's paths.
    fn run_as_nobody(&self, program: &Path, args: &[&str]) -> Run {
        let mut all = self.path_flags();
        all.extend(args.iter().map(OsString::from));
        let all: Vec<&OsStr> = all.iter().map(OsString::as_os_str).collect();
        let start = Instant::now();
        let out = run_as(65534, 65534, &[], program, &all);
        Run::from_output(out, start.elapsed())
    }

    /// keys.json as JSON, after asserting it is mode 0600 and that futu-authd loads it.
    fn keys(&self) -> Value {
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

    fn keys_text(&self) -> String {
        std::fs::read_to_string(&self.keys_file).expect("read keys.json")
    }
}

/// Asserts how futucli reached its target: through the daemon it says nothing on stderr; on
/// the file it says, in exactly one line, that the daemon was not reached.
fn assert_route(run: &Run, cli: &Futucli, through_daemon: bool) {
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
fn problem_line(run: &Run, code: i32) -> String {
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

/// The plaintext from gen-key's output, after asserting the seed's three lines exactly.
fn generated_token(run: &Run, id: &str, stored_in: &Path) -> String {
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "gen-key prints three lines: {run:#?}");
    assert_eq!(lines[0], format!("✅ Generated key \"{id}\""));
    let token = lines[1]
        .strip_prefix("plaintext: ")
        .and_then(|l| l.strip_suffix(" ← save this; the terminal output is your only copy"))
        .unwrap_or_else(|| panic!("the seed's plaintext line: {:?}", lines[1]));
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
fn record<'a>(keys: &'a Value, id: &str) -> &'a Value {
    assert_eq!(keys["version"], 1, "keys.json version: {keys:#}");
    keys["keys"]
        .as_array()
        .expect("keys is an array")
        .iter()
        .find(|k| k["id"] == id)
        .unwrap_or_else(|| panic!("no key {id:?} in {keys:#}"))
}

fn ids(keys: &Value) -> BTreeSet<String> {
    keys["keys"]
        .as_array()
        .expect("keys is an array")
        .iter()
        .map(|k| k["id"].as_str().expect("id is a string").to_owned())
        .collect()
}

/// `field` is absent or null in `rec` (both mean "not set" in keys.json).
fn assert_unset(rec: &Value, field: &str) {
    assert!(rec[field].is_null(), "{field} is unset: {rec:#}");
}

/// Only the seed's KeyRecord fields appear.
fn assert_only_seed_fields(rec: &Value) {
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
fn limit_fields(rec: &Value) -> BTreeSet<String> {
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

fn timestamp(v: &Value) -> Timestamp {
    v.as_str()
        .unwrap_or_else(|| panic!("an RFC 3339 string: {v}"))
        .parse()
        .unwrap_or_else(|e| panic!("RFC 3339 {v}: {e}"))
}

/// Now, cut to whole seconds (keys.json keeps whole seconds).
fn now_seconds() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).expect("now is a valid timestamp")
}

/// Asserts `t` lies within [from, to] widened by one second either side.
fn assert_between(what: &str, t: Timestamp, from: Timestamp, to: Timestamp) {
    let slack = Span::new().seconds(1);
    assert!(
        t >= from.checked_sub(slack).unwrap() && t <= to.checked_add(slack).unwrap(),
        "{what} {t} is not within {from}..={to}"
    );
}

/// Any run of 64 hex digits (a full SHA-256 hash) in `text`.
fn full_hash_in(text: &str) -> Option<String> {
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

/// A POSIX `TZ` in which the local time is now about 12:45, the middle of the seed's
/// `09:30-16:00`, so the seed's sim-bot key is inside its hours window whenever this runs.
fn tz_near_midday() -> String {
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

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether the tests that run futucli as uid 65534 can run; prints why not.
fn can_run_as_nobody(test: &str) -> bool {
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

// ---- 1. the seed's command lines --------------------------------------------------------

/// The seed's sim-bot command line, as written.
fn sim_bot_args() -> Vec<&'static str> {
    vec![
        "gen-key",
        "--id",
        "sim-bot",
        "--scopes",
        "qot:read,acc:read,trade:simulate",
        "--allowed-markets",
        "HK,US",
        "--allowed-trd-sides",
        "SELL",
        "--max-order-value",
        "100000",
        "--max-daily-value",
        "500000",
        "--max-orders-per-minute",
        "5",
        "--hours-window",
        "09:30-16:00",
        "--expires",
        "30d",
    ]
}

/// What the daemon decides for `token` on a quote endpoint, asked over the socket.
async fn quote_decision(c: &mut Client, token: &str) -> Decision {
    c.check(token, "Qot_GetBasicQot", None).await
}

/// Runs every command line of the seed, in an order in which each applies, and checks
/// keys.json after each; with `daemon`, also that each change is in effect at once (a Check
/// over the socket, no SIGHUP). Returns the two plaintexts printed.
async fn run_the_seeds_commands(cli: &Futucli, daemon: Option<&Daemon>) -> (String, String) {
    let through_daemon = daemon.is_some();
    let mut client = match daemon {
        Some(d) => Some(d.client().await),
        None => None,
    };

    // 2. gen-key --id research --scopes qot:read
    let before = now_seconds();
    let run = cli
        .run(&["gen-key", "--id", "research", "--scopes", "qot:read"])
        .ok();
    let after = Timestamp::now();
    assert_route(&run, cli, through_daemon);
    let research = generated_token(&run, "research", &cli.keys_file);
    let keys = cli.keys();
    let rec = record(&keys, "research");
    assert_only_seed_fields(rec);
    assert_eq!(rec["hash"], hash_of(&research), "hash = SHA-256 of the plaintext");
    assert_eq!(rec["scopes"], json!(["qot:read"]));
    assert_eq!(limit_fields(rec), BTreeSet::new(), "no limits: {rec:#}");
    assert_unset(rec, "allowed_machines");
    assert_unset(rec, "expires_at");
    assert_unset(rec, "note");
    assert_between("created_at", timestamp(&rec["created_at"]), before, after);
    if let Some(c) = client.as_mut() {
        assert_eq!(
            allowed_key(&quote_decision(c, &research).await),
            "research",
            "the new key works at once"
        );
    }

    // 3. the sim-bot trading key with limits
    let before = now_seconds();
    let run = cli.run(&sim_bot_args()).ok();
    let after = Timestamp::now();
    assert_route(&run, cli, through_daemon);
    let sim_bot = generated_token(&run, "sim-bot", &cli.keys_file);
    assert_ne!(sim_bot, research);
    let keys = cli.keys();
    assert_eq!(ids(&keys), BTreeSet::from(["research".into(), "sim-bot".into()]));
    let rec = record(&keys, "sim-bot");
    assert_only_seed_fields(rec);
    assert_eq!(rec["hash"], hash_of(&sim_bot));
    assert_eq!(rec["scopes"], json!(["qot:read", "acc:read", "trade:simulate"]));
    let expected: BTreeSet<String> = [
        "allowed_markets",
        "allowed_trd_sides",
        "max_order_value",
        "max_daily_value",
        "max_orders_per_minute",
        "hours_window",
    ]
    .map(String::from)
    .into();
    assert_eq!(limit_fields(rec), expected, "exactly the limits given: {rec:#}");
    let l = &rec["limits"];
    assert_eq!(l["allowed_markets"], json!(["HK", "US"]));
    assert_eq!(l["allowed_trd_sides"], json!(["SELL"]));
    assert_eq!(l["max_order_value"].as_f64(), Some(100_000.0));
    assert_eq!(l["max_daily_value"].as_f64(), Some(500_000.0));
    assert_eq!(l["max_orders_per_minute"], 5);
    assert_eq!(l["hours_window"], "09:30-16:00");
    assert_unset(rec, "allowed_machines");
    assert_unset(rec, "note");
    assert_between("created_at", timestamp(&rec["created_at"]), before, after);
    let days30 = Span::new().hours(30 * 24);
    assert_between(
        "expires_at (30d)",
        timestamp(&rec["expires_at"]),
        before.checked_add(days30).unwrap(),
        after.checked_add(days30).unwrap(),
    );
    let sim_hash = rec["hash"].clone();
    let research_rec = record(&keys, "research").clone();
    if let Some(c) = client.as_mut() {
        assert_eq!(allowed_key(&quote_decision(c, &sim_bot).await), "sim-bot");
        // Its limits are live too: a BUY is refused, without consuming anything.
        let mut buy = c.check_request(
            Iface::Rest,
            &sim_bot,
            "Trd_PlaceOrder",
            Some(order(Market::HK, "HK.00700", TrdSide::BUY, 100.0, Some(388.2))),
        );
        buy.dry_run = true;
        let id = buy.request_id;
        let d = futu_authd_tests::decision_of(id, c.request(Request::Check(buy)).await);
        assert_eq!(
            deny_reason(&d),
            Reason::Side,
            "--allowed-trd-sides SELL is in force"
        );
    }

    // 6. list-keys
    let run = cli.run(&["list-keys"]).ok();
    assert_route(&run, cli, through_daemon);
    for id in ["research", "sim-bot"] {
        assert!(run.stdout.contains(id), "list-keys shows {id}: {run:#?}");
    }
    assert_eq!(full_hash_in(&run.stdout), None, "list-keys never shows a hash");
    assert_eq!(cli.keys(), keys, "list-keys changes nothing");

    // bind-key sim-bot --this-machine
    let run = cli.run(&["bind-key", "sim-bot", "--this-machine"]).ok();
    assert_route(&run, cli, through_daemon);
    let keys = cli.keys();
    let rec = record(&keys, "sim-bot");
    assert_eq!(rec["allowed_machines"], json!([this_fingerprint()]));
    assert_eq!(rec["hash"], sim_hash, "binding does not change the plaintext");
    assert_eq!(record(&keys, "research"), &research_rec, "research is untouched");
    if let Some(c) = client.as_mut() {
        assert_eq!(
            allowed_key(&quote_decision(c, &sim_bot).await),
            "sim-bot",
            "bound to this host"
        );
    }

    // bind-key sim-bot --replace --machines fp_abc123,fp_def456
    let run = cli
        .run(&[
            "bind-key",
            "sim-bot",
            "--replace",
            "--machines",
            "fp_abc123,fp_def456",
        ])
        .ok();
    assert_route(&run, cli, through_daemon);
    let keys = cli.keys();
    let rec = record(&keys, "sim-bot");
    assert_eq!(rec["allowed_machines"], json!(["fp_abc123", "fp_def456"]));
    assert_eq!(rec["hash"], sim_hash);
    if let Some(c) = client.as_mut() {
        assert_eq!(
            deny_reason(&quote_decision(c, &sim_bot).await),
            Reason::Machine,
            "bound elsewhere"
        );
    }

    // bind-key sim-bot --freeze
    let run = cli.run(&["bind-key", "sim-bot", "--freeze"]).ok();
    assert_route(&run, cli, through_daemon);
    let keys = cli.keys();
    assert_eq!(record(&keys, "sim-bot")["allowed_machines"], json!([]));
    if let Some(c) = client.as_mut() {
        assert_eq!(deny_reason(&quote_decision(c, &sim_bot).await), Reason::Frozen);
    }

    // bind-key sim-bot --clear
    let run = cli.run(&["bind-key", "sim-bot", "--clear"]).ok();
    assert_route(&run, cli, through_daemon);
    let keys = cli.keys();
    let rec = record(&keys, "sim-bot");
    assert_unset(rec, "allowed_machines");
    assert_eq!(rec["hash"], sim_hash);
    if let Some(c) = client.as_mut() {
        assert_eq!(allowed_key(&quote_decision(c, &sim_bot).await), "sim-bot");
    }

    // revoke-key sim-bot
    let run = cli.run(&["revoke-key", "sim-bot"]).ok();
    assert_route(&run, cli, through_daemon);
    let keys = cli.keys();
    assert_eq!(ids(&keys), BTreeSet::from(["research".into()]));
    assert_eq!(record(&keys, "research"), &research_rec);
    if let Some(c) = client.as_mut() {
        assert_eq!(
            deny_reason(&quote_decision(c, &sim_bot).await),
            Reason::UnknownKey,
            "revoked at once"
        );
        assert_eq!(allowed_key(&quote_decision(c, &research).await), "research");
    }

    let text = cli.keys_text();
    for token in [&research, &sim_bot] {
        assert!(
            !text.contains(token.as_str()) && !text.contains(&token[3..]),
            "keys.json never holds a plaintext"
        );
    }
    (research, sim_bot)
}

/// No file in `dir` (recursively) holds either plaintext.
fn assert_no_plaintext_in(dir: &Path, tokens: &[&str]) {
    for entry in std::fs::read_dir(dir).expect("read the test directory") {
        let path = entry.expect("a directory entry").path();
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        if meta.is_dir() {
            assert_no_plaintext_in(&path, tokens);
        } else if meta.is_file() {
            let bytes = std::fs::read(&path).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            for t in tokens {
                assert!(
                    !text.contains(t) && !text.contains(&t[3..]),
                    "{} holds a plaintext",
                    path.display()
                );
            }
        }
    }
}

#[tokio::test]
async fn the_seeds_commands_through_the_daemon_take_effect_at_once() {
    let mut d = DaemonBuilder::new(&[]).env("TZ", tz_near_midday()).start();
    let cli = Futucli::for_daemon(&d);
    // No SIGHUP is ever sent: every Check in there sees the change at once.
    let (research, sim_bot) = run_the_seeds_commands(&cli, Some(&d)).await;
    d.stop();
    assert_no_plaintext_in(d.dir(), &[&research, &sim_bot]);
}

#[tokio::test]
async fn the_seeds_commands_without_a_daemon_edit_the_file_and_say_so() {
    let dir = TempDir::new().unwrap();
    // FUTU_AUTH_SOCKET / FUTU_KEYS_FILE / FUTU_AUTHD_MACHINE_ID_FILE instead of flags.
    let cli = Futucli::without_daemon(dir.path()).by_env();
    let (research, sim_bot) = run_the_seeds_commands(&cli, None).await;
    assert_no_plaintext_in(dir.path(), &[&research, &sim_bot]);

    // A daemon started on that file serves what futucli wrote.
    let d = DaemonBuilder::with_keys_text(cli.keys_text()).start();
    let mut c = d.client().await;
    assert_eq!(allowed_key(&quote_decision(&mut c, &research).await), "research");
    assert_eq!(
        deny_reason(&quote_decision(&mut c, &sim_bot).await),
        Reason::UnknownKey
    );
}

#[test]
fn gen_key_note_symbols_and_machine_flags_land_in_keys_json() {
    let dir = TempDir::new().unwrap();
    let cli = Futucli::without_daemon(dir.path());
    let run = cli
        .run(&[
            "gen-key",
            "--id",
            "tp-bot",
            "--scopes",
            "trade:simulate",
            "--allowed-symbols",
            "HK.00700,US.AAPL",
            "--note",
            "simulated take-profit sell bot",
            "--bind-this-machine",
            "--expires",
            "2099-05-15T10:00:00Z",
        ])
        .ok();
    let token = generated_token(&run, "tp-bot", &cli.keys_file);
    let run = cli
        .run(&[
            "gen-key",
            "--id",
            "far",
            "--scopes",
            "qot:read",
            "--bind-machines",
            "fp_a,fp_b",
            "--expires",
            "12h",
        ])
        .ok();
    generated_token(&run, "far", &cli.keys_file);
    let keys = cli.keys();
    let rec = record(&keys, "tp-bot");
    assert_eq!(rec["hash"], hash_of(&token));
    assert_eq!(
        rec["limits"],
        json!({ "allowed_symbols": ["HK.00700", "US.AAPL"] })
    );
    assert_eq!(rec["note"], "simulated take-profit sell bot");
    assert_eq!(rec["allowed_machines"], json!([this_fingerprint()]));
    assert_eq!(
        timestamp(&rec["expires_at"]),
        "2099-05-15T10:00:00Z".parse::<Timestamp>().unwrap()
    );
    let rec = record(&keys, "far");
    assert_eq!(rec["allowed_machines"], json!(["fp_a", "fp_b"]));
    let twelve_hours = Span::new().hours(12);
    let created = timestamp(&rec["created_at"]);
    assert_between(
        "expires_at (12h)",
        timestamp(&rec["expires_at"]),
        created.checked_add(twelve_hours).unwrap(),
        created.checked_add(twelve_hours).unwrap(),
    );
}

// ---- 2. concurrent gen-key ---------------------------------------------------------------

/// Eight gen-key processes at once, with distinct ids; returns (id, plaintext) of each.
fn eight_concurrent_gen_keys(cli: &Futucli) -> Vec<(String, String)> {
    let ids: Vec<String> = (0..8).map(|i| format!("bot-{i}")).collect();
    let children: Vec<(String, Child)> = ids
        .iter()
        .map(|id| {
            (
                id.clone(),
                cli.spawn(&["gen-key", "--id", id, "--scopes", "qot:read"]),
            )
        })
        .collect();
    children
        .into_iter()
        .map(|(id, child)| {
            let start = Instant::now();
            let out = child.wait_with_output().expect("wait for futucli");
            let run = Run::from_output(out, start.elapsed()).ok();
            let token = generated_token(&run, &id, &cli.keys_file);
            (id, token)
        })
        .collect()
}

fn assert_all_kept(cli: &Futucli, made: &[(String, String)], also: &str) {
    let keys = cli.keys();
    let mut want: BTreeSet<String> = made.iter().map(|(id, _)| id.clone()).collect();
    want.insert(also.into());
    assert_eq!(ids(&keys), want, "no key is lost");
    for (id, token) in made {
        assert_eq!(record(&keys, id)["hash"], hash_of(token), "{id}'s hash");
    }
}

#[test]
fn eight_concurrent_gen_keys_on_the_file_lose_no_key() {
    let dir = TempDir::new().unwrap();
    let cli = Futucli::without_daemon(dir.path());
    cli.run(&["gen-key", "--id", "veteran", "--scopes", "acc:read"])
        .ok();
    let made = eight_concurrent_gen_keys(&cli);
    assert_all_kept(&cli, &made, "veteran");
}

#[tokio::test]
async fn eight_concurrent_gen_keys_through_the_daemon_lose_no_key() {
    let veteran = token_for("veteran");
    let d = DaemonBuilder::new(&[key_json("veteran", &veteran, &["acc:read"])]).start();
    let cli = Futucli::for_daemon(&d);
    let made = eight_concurrent_gen_keys(&cli);
    assert_all_kept(&cli, &made, "veteran");
    let mut c = d.client().await;
    for (id, token) in &made {
        assert_eq!(&allowed_key(&quote_decision(&mut c, token).await), id);
    }
    assert_eq!(
        allowed_key(&c.check(&veteran, "Trd_GetFunds", None).await),
        "veteran"
    );
}

// ---- 3. list-keys ----------------------------------------------------------------------

fn listed_keys() -> Vec<Value> {
    let mut sim_bot = with(
        key_json(
            "sim-bot",
            &token_for("sim-bot"),
            &["qot:read", "acc:read", "trade:simulate"],
        ),
        "limits",
        json!({
            "allowed_markets": ["HK", "US"],
            "allowed_trd_sides": ["SELL"],
            "max_order_value": 100000,
            "max_daily_value": 500000,
            "max_orders_per_minute": 5,
            "hours_window": "09:30-16:00",
        }),
    );
    sim_bot["allowed_machines"] = json!([this_fingerprint()]);
    sim_bot["expires_at"] = json!("2099-05-15T10:00:00Z");
    sim_bot["note"] = json!("simulated take-profit sell bot");
    vec![
        key_json("research", &token_for("research"), &["qot:read"]),
        sim_bot,
        with(
            key_json("iced", &token_for("iced"), &["acc:read"]),
            "allowed_machines",
            json!([]),
        ),
    ]
}

fn assert_list_keys_output(cli: &Futucli, through_daemon: bool) {
    let run = cli.run(&["list-keys"]).ok();
    assert_route(&run, cli, through_daemon);
    let lines: Vec<&str> = run.stdout.lines().collect();
    let header = lines[0].to_uppercase();
    for column in ["ID", "SCOPES", "LIMITS", "MACHINES", "EXPIRES", "NOTE"] {
        assert!(
            header.contains(column),
            "the table has a {column} column: {header:?}"
        );
    }
    let row = |id: &str| -> &str {
        lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("a row for {id}: {}", run.stdout))
    };
    let sim = row("sim-bot");
    for shown in [
        "qot:read,acc:read,trade:simulate",
        "HK,US",
        "SELL",
        "100000",
        "500000",
        "5/min",
        "09:30-16:00",
        this_fingerprint().as_str(),
        "2099-05-15",
        "simulated take-profit sell bot",
    ] {
        assert!(sim.contains(shown), "sim-bot's row shows {shown:?}: {sim:?}");
    }
    assert!(row("iced").contains("frozen"), "a frozen key says so");
    assert!(row("research").contains("qot:read"));
    assert_eq!(lines.len(), 4, "a header and three rows: {}", run.stdout);
    assert_eq!(
        full_hash_in(&run.stdout),
        None,
        "never the full hash: {}",
        run.stdout
    );
    for label in ["research", "sim-bot", "iced"] {
        assert!(!run.stdout.contains(&hash_of(&token_for(label))));
    }

    let run = cli.run(&["list-keys", "--json"]).ok();
    assert_route(&run, cli, through_daemon);
    let listed: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("list-keys --json is JSON ({e}): {}", run.stdout));
    let listed = listed.as_array().expect("a JSON array of keys");
    assert_eq!(listed.len(), 3);
    assert_eq!(
        full_hash_in(&run.stdout),
        None,
        "never the full hash: {}",
        run.stdout
    );
    let sim = listed
        .iter()
        .find(|k| k["id"] == "sim-bot")
        .expect("sim-bot is listed");
    assert_eq!(sim["scopes"], json!(["qot:read", "acc:read", "trade:simulate"]));
    assert_eq!(sim["limits"]["max_orders_per_minute"], 5);
    assert_eq!(sim["limits"]["hours_window"], "09:30-16:00");
    assert_eq!(sim["allowed_machines"], json!([this_fingerprint()]));
    assert_eq!(sim["note"], "simulated take-profit sell bot");
    let iced = listed.iter().find(|k| k["id"] == "iced").expect("iced is listed");
    assert_eq!(iced["allowed_machines"], json!([]));
}

#[test]
fn list_keys_shows_a_table_and_json_without_the_hash_through_the_daemon() {
    let d = DaemonBuilder::new(&listed_keys()).start();
    assert_list_keys_output(&Futucli::for_daemon(&d), true);
}

#[test]
fn list_keys_shows_a_table_and_json_without_the_hash_on_the_file() {
    let dir = TempDir::new().unwrap();
    let cli = Futucli::without_daemon(dir.path());
    std::fs::create_dir(cli.keys_file.parent().unwrap()).unwrap();
    write_private(&cli.keys_file, &keys_json(&listed_keys()));
    assert_list_keys_output(&cli, false);
}

// ---- 4. errors -------------------------------------------------------------------------

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

// ---- 5. check --------------------------------------------------------------------------

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

// ---- 6. usage, reload, machine-id -------------------------------------------------------

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

// ---- 7. help ---------------------------------------------------------------------------

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

// ---- 8. the client library ----------------------------------------------------------------

/// Slack for the scheduler on top of a deadline, on a loaded test machine.
const SLACK: Duration = Duration::from_millis(200);

#[tokio::test]
async fn the_client_fails_closed_while_the_daemon_is_down_and_reconnects_after_a_restart() {
    let research = Token::new(token_for("research"));
    let mut d = DaemonBuilder::new(&[key_json("research", research.expose(), &["qot:read"])]).start();
    let deadline = Duration::from_millis(250);
    let auth = AuthClient::builder(d.socket_path())
        .deadline(deadline)
        .connect()
        .await
        .expect("connect to the daemon");
    let d1 = auth
        .check(&research, Iface::Rest, "Qot_GetBasicQot", None)
        .await
        .expect("a decision");
    assert_eq!(allowed_key(&d1), "research");

    d.stop();
    for i in 0..5 {
        let start = Instant::now();
        let r = auth.check(&research, Iface::Rest, "Qot_GetBasicQot", None).await;
        let took = start.elapsed();
        assert!(r.is_err(), "call {i} with the daemon down fails closed: {r:?}");
        assert!(
            took <= deadline + SLACK,
            "call {i} failed within its deadline ({took:?})"
        );
    }

    d.restart();
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < Duration::from_secs(5) {
        match auth.check(&research, Iface::Rest, "Qot_GetBasicQot", None).await {
            Ok(decision) => {
                assert_eq!(allowed_key(&decision), "research");
                return;
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the same AuthClient did not reconnect within 5 s of the restart; last error: {last:?}");
}

#[tokio::test]
async fn with_no_daemon_a_check_errs_within_its_deadline_as_not_running() {
    let dir = TempDir::new().unwrap();
    let token = Token::new(token_for("research"));
    let auth = AuthClient::builder(dir.path().join("absent.sock")).build();
    for i in 0..3 {
        let start = Instant::now();
        let err = auth
            .check(&token, Iface::Rest, "Qot_GetBasicQot", None)
            .await
            .expect_err("no daemon, no decision");
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "call {i} took {:?}",
            start.elapsed()
        );
        assert!(err.is_not_running(), "call {i}: {err:?} counts as not running");
    }
    let err = AuthClient::connect(dir.path().join("absent.sock"))
        .await
        .expect_err("connect fails");
    assert!(err.is_not_running(), "{err:?}");

    // A socket file nobody listens on (a daemon that died without cleaning up).
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    let start = Instant::now();
    let err = AuthClient::connect(&stale).await.expect_err("nobody listens");
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(err.is_not_running(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_callers_on_one_client_each_get_their_own_answer() {
    // k0…k9: even ones read quotes, odd ones read accounts.
    let keys: Vec<Value> = (0..10)
        .map(|j| {
            let scope = if j % 2 == 0 { "qot:read" } else { "acc:read" };
            key_json(&format!("k{j}"), &token_for(&format!("k{j}")), &[scope])
        })
        .collect();
    let d = DaemonBuilder::new(&keys).start();
    let auth = AuthClient::builder(d.socket_path())
        .deadline(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect");
    let barrier = Arc::new(tokio::sync::Barrier::new(200));
    let tasks: Vec<_> = (0..200)
        .map(|i: usize| {
            let auth = auth.clone();
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                let j = i % 10;
                let stranger = i % 7 == 0;
                let token = if stranger {
                    token_for(&format!("stranger-{i}"))
                } else {
                    token_for(&format!("k{j}"))
                };
                let quotes = (i / 10) % 2 == 0;
                let endpoint = if quotes { "Qot_GetBasicQot" } else { "Trd_GetFunds" };
                barrier.wait().await;
                let got = auth
                    .check(&Token::new(token), Iface::Grpc, endpoint, None)
                    .await
                    .unwrap_or_else(|e| panic!("caller {i}: {e}"));
                let expected = if stranger {
                    (None, Some(Reason::UnknownKey))
                } else if quotes == (j % 2 == 0) {
                    (Some(format!("k{j}")), None)
                } else {
                    (Some(format!("k{j}")), Some(Reason::Scope))
                };
                let key = match &got {
                    Decision::Allow { key_id, .. } => Some(key_id.as_str().to_owned()),
                    Decision::Deny { key_id, .. } => key_id.as_ref().map(|k| k.as_str().to_owned()),
                };
                assert_eq!(
                    (key, got.reason()),
                    expected,
                    "caller {i} ({endpoint}) got {got:?}"
                );
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a caller panicked");
    }
}

#[tokio::test]
async fn a_daemon_slower_than_the_deadline_is_a_timeout_within_about_the_deadline() {
    let dir = TempDir::new().unwrap();
    let token = Token::new(token_for("research"));
    let deadline = Duration::from_millis(200);

    // Answers Hello, then nothing.
    let mute = dir.path().join("mute.sock");
    let _mute = SilentServer::start(&mute, true);
    let auth = AuthClient::builder(&mute)
        .deadline(deadline)
        .connect()
        .await
        .expect("Hello is answered");
    for i in 0..2 {
        let start = Instant::now();
        let r = auth.check(&token, Iface::Rest, "Qot_GetBasicQot", None).await;
        let took = start.elapsed();
        assert!(
            matches!(r, Err(ClientError::Timeout(d)) if d == deadline),
            "call {i}: {r:?}"
        );
        assert!(
            took >= deadline && took <= deadline + SLACK,
            "call {i} timed out after {took:?}, deadline {deadline:?}"
        );
    }
    let start = Instant::now();
    let r = auth.check_scope(&token, Iface::Ws, Scope::QotRead).await;
    assert!(matches!(r, Err(ClientError::Timeout(_))), "{r:?}");
    assert!(start.elapsed() <= deadline + SLACK);

    // Never answers Hello: connecting is bounded by the same deadline.
    let deaf = dir.path().join("deaf.sock");
    let _deaf = SilentServer::start(&deaf, false);
    let start = Instant::now();
    let r = AuthClient::builder(&deaf).deadline(deadline).connect().await;
    let took = start.elapsed();
    assert!(matches!(r, Err(ClientError::Timeout(_))), "{r:?}");
    assert!(took >= deadline && took <= deadline + SLACK, "{took:?}");
}

#[test]
fn the_blocking_client_works_from_a_plain_thread() {
    let research = token_for("research");
    let once = token_for("once");
    let d = DaemonBuilder::new(&[
        key_json("research", &research, &["qot:read"]),
        with(
            key_json("once", &once, &["trade:simulate"]),
            "limits",
            json!({ "max_orders_per_minute": 1 }),
        ),
    ])
    .start();
    let socket = d.socket_path();
    let absent = d.dir().join("absent.sock");
    std::thread::spawn(move || {
        assert!(
            tokio::runtime::Handle::try_current().is_err(),
            "a plain thread, no runtime"
        );
        let auth = BlockingAuthClient::connect_with_deadline(&socket, Duration::from_secs(5))
            .expect("connect from a plain thread");
        let research = Token::new(research);
        let once = Token::new(once);
        let sell = || Some(order(Market::HK, "HK.00700", TrdSide::SELL, 100.0, Some(388.2)));
        assert_eq!(
            allowed_key(
                &auth
                    .check(&research, Iface::Mcp, "Qot_GetBasicQot", None)
                    .unwrap()
            ),
            "research"
        );
        assert_eq!(
            deny_reason(&auth.check(&research, Iface::Mcp, "Trd_GetFunds", None).unwrap()),
            Reason::Scope
        );
        assert!(auth
            .check_scope(&research, Iface::Ws, Scope::QotRead)
            .unwrap()
            .is_allow());
        assert_eq!(
            deny_reason(&auth.check_scope(&research, Iface::Ws, Scope::AccRead).unwrap()),
            Reason::Scope
        );
        assert!(auth
            .check_dry_run(&once, Iface::Mcp, "Trd_PlaceOrder", sell())
            .unwrap()
            .is_allow());
        assert!(auth
            .check(&once, Iface::Mcp, "Trd_PlaceOrder", sell())
            .unwrap()
            .is_allow());
        assert_eq!(
            deny_reason(&auth.check(&once, Iface::Mcp, "Trd_PlaceOrder", sell()).unwrap()),
            Reason::Rate
        );
        let keys = auth.block_on(auth.inner().list_keys()).expect("admin calls too");
        assert_eq!(keys.len(), 2);

        let start = Instant::now();
        let err = BlockingAuthClient::connect(&absent).expect_err("no daemon there");
        assert!(err.is_not_running(), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(1));
    })
    .join()
    .expect("the plain thread's checks passed");
}

// ---- the daemon's own user and the keys file's lock ----------------------------------------

/// futu-authd running as uid/gid 65534 (as `futu-authd` runs under systemd: keys.json and
/// its directory belong to that user), killed on drop.
struct DaemonAsNobody(Child);

impl Drop for DaemonAsNobody {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The installed layout in miniature, in `root` (0755): `etc/` (0750) with `keys.json`
/// (0600), `state/` and `run/`, all owned by uid 65534; returns futucli pointed at it.
fn layout_owned_by_nobody(root: &Path) -> Futucli {
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    for sub in ["etc", "state", "run"] {
        let d = root.join(sub);
        std::fs::create_dir(&d).unwrap();
        std::os::unix::fs::chown(&d, Some(65534), Some(65534)).unwrap();
    }
    std::fs::set_permissions(root.join("etc"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let cli = Futucli {
        socket: root.join("run").join("auth.sock"),
        keys_file: root.join("etc").join("keys.json"),
        ..Futucli::without_daemon(root)
    };
    write_private(&cli.keys_file, &keys_json(&[]));
    std::os::unix::fs::chown(&cli.keys_file, Some(65534), Some(65534)).unwrap();
    cli
}

fn start_daemon_as_nobody(root: &Path, cli: &Futucli) -> DaemonAsNobody {
    let daemon = executable_copy(&daemon_binary(), root);
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(daemon)
        .arg("--socket")
        .arg(&cli.socket)
        .arg("--keys-file")
        .arg(&cli.keys_file)
        .arg("--state-dir")
        .arg(root.join("state"))
        .arg("--machine-id-file")
        .arg(&cli.machine_id_file)
        .args(["--metrics-listen", "off", "--audit-journald=false"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, _) in std::env::vars_os() {
        let name = k.to_string_lossy();
        if name.starts_with("FUTU_") || name == "NOTIFY_SOCKET" || name.starts_with("LISTEN_") {
            cmd.env_remove(&k);
        }
    }
    let mut guard = DaemonAsNobody(cmd.spawn().expect("spawn futu-authd as uid 65534"));
    futu_authd_tests::poll("futu-authd (uid 65534) to listen", || {
        if let Ok(Some(status)) = guard.0.try_wait() {
            panic!("futu-authd as uid 65534 exited with {status}");
        }
        UnixStream::connect(&cli.socket).ok()
    });
    guard
}

#[test]
fn after_a_root_edit_on_the_file_the_daemons_user_can_still_change_keys() {
    if !can_run_as_nobody("after_a_root_edit_on_the_file_the_daemons_user_can_still_change_keys") {
        return;
    }
    let root = TempDir::new().unwrap();
    let cli = layout_owned_by_nobody(root.path());

    // The daemon is down: root (an administrator) edits the file, as README step 2 allows.
    let run = cli
        .run(&["gen-key", "--id", "offline", "--scopes", "qot:read"])
        .ok();
    assert_route(&run, &cli, false);
    let keys_owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&cli.keys_file).unwrap());
    assert_eq!(keys_owner, 65534, "keys.json keeps its owner");

    // The daemon starts as its own user; the next admin change goes through it.
    let _daemon = start_daemon_as_nobody(root.path(), &cli);
    let run = cli.run(&["gen-key", "--id", "online", "--scopes", "qot:read"]);
    assert_eq!(
        run.code,
        Some(0),
        "gen-key through the daemon after an offline edit: {run:#?} (lock file: {:?})",
        std::fs::metadata(futu_auth_keys::store::lock_path(&cli.keys_file)).map(|m| (
            std::os::unix::fs::MetadataExt::uid(&m),
            m.permissions().mode() & 0o777
        ))
    );
    assert_eq!(
        ids(&serde_json::from_str(&cli.keys_text()).unwrap()),
        BTreeSet::from(["offline".into(), "online".into()])
    );
}

#[test]
fn the_daemons_user_can_change_keys_when_no_one_else_touched_the_file() {
    // The control for the test above: same layout, no offline edit first.
    if !can_run_as_nobody("the_daemons_user_can_change_keys_when_no_one_else_touched_the_file") {
        return;
    }
    let root = TempDir::new().unwrap();
    let cli = layout_owned_by_nobody(root.path());
    let _daemon = start_daemon_as_nobody(root.path(), &cli);
    let run = cli
        .run(&["gen-key", "--id", "online", "--scopes", "qot:read"])
        .ok();
    assert_route(&run, &cli, true);
    let run = cli.run(&["revoke-key", "online"]).ok();
    assert_route(&run, &cli, true);
}

#[test]
fn bind_key_adds_this_machine_and_listed_ones_together_but_refuses_contradictions() {
    let dir = TempDir::new().unwrap();
    let cli = Futucli::without_daemon(dir.path());
    cli.run(&["gen-key", "--id", "bot", "--scopes", "qot:read"]).ok();
    cli.run(&["bind-key", "bot", "--this-machine", "--machines", "fp_other"])
        .ok();
    let keys = cli.keys();
    assert_eq!(
        record(&keys, "bot")["allowed_machines"],
        serde_json::json!([this_fingerprint(), "fp_other"])
    );
    cli.run(&["bind-key", "bot", "--replace", "--this-machine"]).ok();
    assert_eq!(
        record(&cli.keys(), "bot")["allowed_machines"],
        serde_json::json!([this_fingerprint()])
    );
    for contradiction in [
        &["bind-key", "bot", "--freeze", "--clear"][..],
        &["bind-key", "bot", "--freeze", "--machines", "fp_x"][..],
        &["bind-key", "bot", "--clear", "--this-machine"][..],
        &["bind-key", "bot"][..],
    ] {
        let run = cli.run(contradiction);
        assert_eq!(run.code, Some(2), "{contradiction:?}: {run:#?}");
    }
    assert_eq!(
        record(&cli.keys(), "bot")["allowed_machines"],
        serde_json::json!([this_fingerprint()])
    );
}
