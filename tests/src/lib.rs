//! End-to-end tests of futu-authd and futucli: they spawn the real binaries.
//!
//! This library is the harness the tests in `tests/` share:
//!
//! * [`DaemonBuilder`] / [`Daemon`]: a futu-authd process in a temporary directory of its
//!   own (socket, keys.json, state dir, audit file, machine-id), started with
//!   `NOTIFY_SOCKET` pointing at a datagram socket the harness reads, so "started" means
//!   "sent READY=1". Every later notification is kept for tests to look at. The process is
//!   killed when the [`Daemon`] is dropped.
//! * [`Client`]: a raw protocol client over the Unix socket (the proto crate's
//!   [`FrameCodec`]), with helpers for Hello, checks and raw bytes.
//! * keys.json helpers ([`token_for`], [`key_json`], [`keys_json`]), a `/metrics` fetcher
//!   and a parser for metric lines ([`metric_value`]).
//! * [`monitoring`]: the metric names the alerting rules and the Grafana dashboard read,
//!   checked against a scrape of a real daemon.
#![forbid(unsafe_code)]

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futu_auth_proto::codec::encode_frame;
use futu_auth_proto::{
    Check, CheckScope, CodecError, Decision, FrameCodec, Hello, Iface, Market, Order, Request, Response,
    Scope, Token, TrdEnv, TrdSide, PROTOCOL_VERSION,
};
use futures_util::{SinkExt, StreamExt};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio_util::codec::Framed;

pub mod fuzz;
pub mod monitoring;
pub mod postgres;

/// How long any single wait of the harness lasts before it gives up and fails the test.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// How often the harness polls while it waits.
const POLL: Duration = Duration::from_millis(5);

/// The machine id every daemon started by the harness reads (`--machine-id-file`), so
/// tests know the host's fingerprint: [`this_fingerprint`].
pub const MACHINE_ID: &str = "e2e0a1b2c3d4e5f60718293a4b5c6d7e";

/// `target/debug` (or whichever profile directory the running test binary sits in).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    // target/debug/deps/<test>-<hash>  →  target/debug
    let mut dir = exe
        .parent()
        .expect("the test binary is in a directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// The `futu-authd` binary built next to this test; panics with what to do if it is missing.
pub fn daemon_binary() -> PathBuf {
    let path = target_dir().join("futu-authd");
    assert!(
        path.is_file(),
        "{} does not exist: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// A plaintext token made from a label: `fc_` and 32 hex digits, the same for the same
/// label, so a test can name its tokens.
pub fn token_for(label: &str) -> String {
    let digest = Sha256::digest(format!("futu-authd e2e token {label}").as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("fc_{hex}")
}

/// The keys.json `hash` of a plaintext (64 lower-case hex digits).
pub fn hash_of(token: &str) -> String {
    futu_auth_keys::token::digest(&Token::new(token)).to_hex()
}

/// The fingerprint of the harness's [`MACHINE_ID`], i.e. of "this host" for the daemon.
pub fn this_fingerprint() -> String {
    futu_auth_keys::machine::fingerprint_of(MACHINE_ID)
        .as_str()
        .to_owned()
}

/// A key record for keys.json with no limits; add fields with [`with`].
pub fn key_json(id: &str, token: &str, scopes: &[&str]) -> Value {
    json!({
        "id": id,
        "hash": hash_of(token),
        "scopes": scopes,
        "created_at": "2026-01-01T00:00:00Z",
    })
}

/// `record` with `field` set to `value` (e.g. `limits`, `allowed_machines`, `expires_at`).
pub fn with(mut record: Value, field: &str, value: Value) -> Value {
    record[field] = value;
    record
}

/// The text of a keys.json holding `keys`.
pub fn keys_json(keys: &[Value]) -> String {
    let mut text = serde_json::to_string_pretty(&json!({ "version": 1, "keys": keys }))
        .expect("a JSON value always serializes");
    text.push('\n');
    text
}

/// Writes `text` to `path` with mode 0600, atomically (temporary file and rename), so a
/// daemon reloading at the same moment sees the old file or the new one, never half.
pub fn write_private(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-e2e");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .unwrap_or_else(|e| panic!("{}: {e}", tmp.display()));
    f.write_all(text.as_bytes()).expect("write keys file");
    f.sync_all().expect("sync keys file");
    drop(f);
    std::fs::rename(&tmp, path).expect("rename keys file into place");
}

/// Where Debian's `faketime` package puts its library.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Daily totals reset at UTC midnight: a test that spends and reads back a daily total
/// first steps past midnight when it is less than `secs` seconds away.
pub fn away_from_utc_midnight(secs: i64) {
    let left = 86_400 - jiff::Timestamp::now().as_second().rem_euclid(86_400);
    if left < secs {
        std::thread::sleep(Duration::from_secs(left as u64 + 1));
    }
}

/// The first UTC midnight at least two minutes from now (real time): where a
/// [`FakeClock`] is put to cross one.
pub fn next_utc_midnight() -> jiff::Timestamp {
    let soon = jiff::Timestamp::now().as_second() + 120;
    jiff::Timestamp::from_second((soon.div_euclid(86_400) + 1) * 86_400).expect("a time in range")
}

/// The wall clock of processes run under libfaketime ([`FakeClock::env`]): real time plus
/// an offset read from a file on every call, which the test moves. Their monotonic clock
/// stays real, so rate windows, release windows and timeouts are not affected. The file
/// is readable by every user, so a process run as another user (PostgreSQL as `nobody`)
/// reads the same clock.
#[derive(Debug)]
pub struct FakeClock {
    dir: TempDir,
}

impl FakeClock {
    /// A clock at real time, or `None` after [`skip`] without libfaketime.
    pub fn new() -> Option<FakeClock> {
        if !Path::new(LIBFAKETIME).is_file() {
            skip("libfaketime is not installed (`make deps` installs Debian's faketime)");
            return None;
        }
        // In /tmp, not $TMPDIR: another user must be able to reach it.
        let dir = tempfile::Builder::new()
            .prefix("futu-clock-")
            .tempdir_in("/tmp")
            .expect("a temporary directory");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the clock's directory");
        let clock = FakeClock { dir };
        clock.set_offset(jiff::SignedDuration::ZERO);
        Some(clock)
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("faketime")
    }

    /// From now on the clock reads real time plus `offset`, in whole seconds (rounded
    /// toward zero).
    pub fn set_offset(&self, offset: jiff::SignedDuration) {
        let path = self.file();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{:+}\n", offset.as_secs()))
            .unwrap_or_else(|e| panic!("{}: {e}", tmp.display()));
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))
            .expect("chmod the clock's file");
        std::fs::rename(&tmp, &path).expect("rename the clock's file into place");
    }

    /// From now on the clock reads `t` or up to a second after it, and runs on from
    /// there.
    pub fn set_now(&self, t: jiff::Timestamp) {
        let ahead = t.duration_since(jiff::Timestamp::now());
        // Whole seconds, rounded up: never before `t`.
        let secs = ahead.as_secs() + i64::from(ahead.subsec_nanos() > 0);
        self.set_offset(jiff::SignedDuration::from_secs(secs));
    }

    /// The environment that puts a process on this clock.
    pub fn env(&self) -> Vec<(OsString, OsString)> {
        vec![
            ("LD_PRELOAD".into(), LIBFAKETIME.into()),
            ("FAKETIME_TIMESTAMP_FILE".into(), self.file().into()),
            ("FAKETIME_NO_CACHE".into(), "1".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ]
    }
}

/// A simulated order.
pub fn order(market: Market, symbol: &str, side: TrdSide, qty: f64, price: Option<f64>) -> Order {
    Order {
        env: TrdEnv::Simulate,
        market,
        symbol: symbol.to_owned(),
        side,
        qty,
        price,
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released for the daemon to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Polls `probe` every few milliseconds until it returns `Some`, or fails the test with
/// `what` after [`DEADLINE`].
pub fn poll<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < until,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

/// The value of the sample `name{labels…}` in Prometheus/OpenMetrics text, where every
/// pair in `labels` must be present (others may be too). `None` when no line matches.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (n, rest) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        if n != name {
            return None;
        }
        let found: Vec<(&str, &str)> = rest
            .split("\",")
            .filter(|p| !p.is_empty())
            .filter_map(|p| {
                let (k, v) = p.split_once("=\"")?;
                Some((k, v.trim_end_matches('"')))
            })
            .collect();
        labels
            .iter()
            .all(|want| found.contains(want))
            .then(|| value.parse().ok())
            .flatten()
    })
}

/// Runs `program args…` as another user through `setpriv` (util-linux): `uid`/`gid`, and
/// exactly the supplementary `groups` (none when empty). Needs root.
pub fn run_as(uid: u32, gid: u32, groups: &[u32], program: &Path, args: &[&OsStr]) -> Output {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}")).arg(format!("--regid={gid}"));
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        let list: Vec<String> = groups.iter().map(u32::to_string).collect();
        cmd.arg(format!("--groups={}", list.join(",")));
    }
    cmd.arg(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv")
}

/// Whether an executable of this name is on PATH.
pub fn have_program(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

/// Says that a test cannot run here and why (a tool or a privilege it needs is missing):
/// prints `skipped: {why}`, after which the caller returns and the test passes.
///
/// With `FUTU_TEST_STRICT=1` in the environment (as `.ci/run` sets it) skipping is not
/// allowed: this panics instead, so the test fails and names what is missing. `make deps`
/// installs every Debian package the tests need.
///
/// Either way, when `FUTU_TEST_SKIP_LOG` names a file, a line `{file}::{test}: {why}` is
/// appended to it: `make test` prints that list at the end, since cargo shows a skipped
/// test as `ok` and hides what it printed.
///
/// ```no_run
/// if !futu_authd_tests::have_program("jq") {
///     return futu_authd_tests::skip("jq is not installed");
/// }
/// ```
pub fn skip(why: &str) {
    println!("skipped: {why}");
    let strict = std::env::var_os("FUTU_TEST_STRICT").is_some_and(|v| v == "1");
    if let Some(log) = std::env::var_os("FUTU_TEST_SKIP_LOG").filter(|p| !p.is_empty()) {
        let failed = if strict {
            " (failed: FUTU_TEST_STRICT=1)"
        } else {
            ""
        };
        log_skip(Path::new(&log), &format!("{}: {why}{failed}\n", test_name()));
    }
    if strict {
        panic!(
            "this test could not run ({why}) and FUTU_TEST_STRICT=1 forbids skipping; \
             install what it needs (`make deps` as root) or unset FUTU_TEST_STRICT"
        );
    }
}

/// `file::test` for the running test: the test binary's name without cargo's hash (e.g.
/// `packaging`) and the test thread's name, which libtest sets to the test's path.
fn test_name() -> String {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.file_stem()?.to_string_lossy().into_owned()))
        .map(|stem| match stem.rsplit_once('-') {
            Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_owned(),
            _ => stem,
        })
        .unwrap_or_else(|| "?".to_owned());
    let thread = std::thread::current();
    format!("{binary}::{}", thread.name().unwrap_or("?"))
}

/// Appends `line` to the skip log in one `write(2)` on a file opened with `O_APPEND`, so
/// lines from tests running at once, in threads or processes, never interleave. A log that
/// cannot be written is reported, and the test goes on.
fn log_skip(log: &Path, line: &str) {
    let written = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        eprintln!("could not add to the skip log {}: {e}", log.display());
    }
}

/// What a [`Daemon`] is started with. Every daemon gets its own temporary directory with
/// `auth.sock`, `keys.json` (mode 0600), `state/`, `audit.jsonl`, `machine-id` and
/// `notify.sock`; metrics are off unless [`DaemonBuilder::metrics`] is called.
#[derive(Debug)]
pub struct DaemonBuilder {
    keys: String,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    metrics: bool,
    dir_mode: Option<u32>,
    /// Files put in `state/` before the daemon starts: (name, text).
    state_files: Vec<(String, String)>,
}

impl DaemonBuilder {
    /// A daemon serving these key records.
    pub fn new(keys: &[Value]) -> DaemonBuilder {
        DaemonBuilder::with_keys_text(keys_json(keys))
    }

    /// A daemon whose keys.json is exactly `text`.
    pub fn with_keys_text(text: impl Into<String>) -> DaemonBuilder {
        DaemonBuilder {
            keys: text.into(),
            args: Vec::new(),
            env: Vec::new(),
            metrics: false,
            dir_mode: None,
            state_files: Vec::new(),
        }
    }

    /// A file in the state directory (`state/name`, mode 0600) before the daemon first
    /// starts, e.g. a `last-used.json` from an earlier run.
    pub fn state_file(mut self, name: &str, text: impl Into<String>) -> Self {
        self.state_files.push((name.to_owned(), text.into()));
        self
    }

    /// An extra command-line argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// An extra environment variable for the daemon (e.g. `TZ`, `FUTU_AUTHD_LOG`).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The daemon's wall clock is `clock` (libfaketime).
    pub fn clock(mut self, clock: &FakeClock) -> Self {
        self.env.extend(clock.env());
        self
    }

    /// Serve /metrics on a free port of 127.0.0.1.
    pub fn metrics(mut self) -> Self {
        self.metrics = true;
        self
    }

    /// Permissions of the temporary directory (it is 0700 otherwise), e.g. 0755 so that
    /// another user can reach the socket.
    pub fn dir_mode(mut self, mode: u32) -> Self {
        self.dir_mode = Some(mode);
        self
    }

    /// Starts the daemon and waits (up to [`DEADLINE`]) for READY=1 on its notify socket.
    pub fn start(self) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("futu-authd-e2e-")
            .tempdir()
            .expect("make a temporary directory");
        if let Some(mode) = self.dir_mode {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode))
                .expect("chmod the temporary directory");
        }
        write_private(&dir.path().join("keys.json"), &self.keys);
        if !self.state_files.is_empty() {
            std::fs::create_dir(dir.path().join("state")).expect("make the state directory");
            for (name, text) in &self.state_files {
                write_private(&dir.path().join("state").join(name), text);
            }
        }
        std::fs::write(dir.path().join("machine-id"), format!("{MACHINE_ID}\n")).expect("write machine-id");
        let notify = UnixDatagram::bind(dir.path().join("notify.sock")).expect("bind the notify socket");
        notify.set_nonblocking(true).expect("non-blocking notify socket");
        let metrics_addr = self
            .metrics
            .then(|| SocketAddr::from(([127, 0, 0, 1], free_port())));

        let p = dir.path();
        let mut args: Vec<OsString> = vec![
            "--socket".into(),
            p.join("auth.sock").into(),
            "--keys-file".into(),
            p.join("keys.json").into(),
            "--state-dir".into(),
            p.join("state").into(),
            "--audit-log".into(),
            p.join("audit.jsonl").into(),
            "--audit-journald=false".into(),
            "--machine-id-file".into(),
            p.join("machine-id").into(),
            "--metrics-listen".into(),
            metrics_addr
                .map_or_else(|| "off".to_owned(), |a| a.to_string())
                .into(),
        ];
        args.extend(self.args);

        let mut daemon = Daemon {
            dir,
            child: None,
            args,
            env: self.env,
            notify,
            notes: Mutex::new(Vec::new()),
            stderr: Arc::new(Mutex::new(Vec::new())),
            stderr_reader: None,
            metrics_addr,
        };
        daemon.spawn_and_wait_ready();
        daemon
    }
}

/// A running (or stopped) futu-authd and everything it wrote. Killed on drop.
#[derive(Debug)]
pub struct Daemon {
    dir: TempDir,
    child: Option<Child>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    notify: UnixDatagram,
    /// Every notify datagram received so far, in order, across restarts.
    notes: Mutex<Vec<String>>,
    /// Everything the daemon wrote to stderr, across restarts.
    stderr: Arc<Mutex<Vec<u8>>>,
    /// The thread copying the running daemon's stderr into `stderr`: it ends a moment
    /// after the daemon exits, when it has read the last line.
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    metrics_addr: Option<SocketAddr>,
}

impl Daemon {
    fn spawn_and_wait_ready(&mut self) {
        let mark = self.notifications().len();
        let mut cmd = Command::new(daemon_binary());
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Nothing from the test's own environment may configure the daemon.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("FUTU_AUTHD_") {
                cmd.env_remove(&k);
            }
        }
        for k in [
            "JOURNAL_STREAM",
            "LISTEN_FDS",
            "LISTEN_PID",
            "LISTEN_FDNAMES",
            "WATCHDOG_USEC",
        ] {
            cmd.env_remove(k);
        }
        cmd.env("NOTIFY_SOCKET", self.dir.path().join("notify.sock"))
            .env("FUTU_AUTHD_LOG", "info");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn futu-authd");
        let mut pipe = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&self.stderr);
        self.stderr_reader = Some(std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        }));
        self.child = Some(child);
        let until = Instant::now() + DEADLINE;
        loop {
            if self.notifications()[mark..]
                .iter()
                .any(|n| has_line(n, "READY=1"))
            {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.read_stderr_to_end();
                panic!(
                    "futu-authd exited with {status} before READY=1; its stderr:\n{}",
                    self.stderr_text()
                );
            }
            assert!(
                Instant::now() < until,
                "futu-authd sent no READY=1 within {DEADLINE:?}; its stderr:\n{}",
                self.stderr_text()
            );
            std::thread::sleep(POLL);
        }
    }

    /// `futucli` pointed at this daemon: its socket, keys file and machine id.
    pub fn futucli(&self) -> Command {
        let mut cmd = futucli_command();
        cmd.arg("--socket")
            .arg(self.socket_path())
            .arg("--keys-file")
            .arg(self.keys_path())
            .arg("--machine-id-file")
            .arg(self.dir().join("machine-id"));
        cmd
    }

    /// The daemon's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The Unix socket the daemon listens on.
    pub fn socket_path(&self) -> PathBuf {
        self.dir().join("auth.sock")
    }

    /// keys.json.
    pub fn keys_path(&self) -> PathBuf {
        self.dir().join("keys.json")
    }

    /// The JSONL audit file.
    pub fn audit_path(&self) -> PathBuf {
        self.dir().join("audit.jsonl")
    }

    /// The state directory (`--state-dir`).
    pub fn state_path(&self) -> PathBuf {
        self.dir().join("state")
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the daemon was started").id()
    }

    /// Replaces keys.json with these records (atomically, mode 0600).
    pub fn write_keys(&self, keys: &[Value]) {
        write_private(&self.keys_path(), &keys_json(keys));
    }

    /// Replaces keys.json with `text` (atomically, mode 0600).
    pub fn write_keys_text(&self, text: &str) {
        write_private(&self.keys_path(), text);
    }

    /// Sends `sig` to the daemon.
    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid() as i32), sig).expect("signal the daemon");
    }

    /// Stops the daemon (SIGSTOP) and waits until the kernel says every thread of it is
    /// stopped: `kill` returns before a thread running on another core has stopped, and
    /// a request sent in that moment would still be answered. Its socket still accepts;
    /// nobody answers until [`Daemon::resume`].
    pub fn pause(&self) {
        self.signal(Signal::SIGSTOP);
        let tasks = format!("/proc/{}/task", self.pid());
        poll("every thread of the daemon stopped by SIGSTOP", || {
            let mut states = std::fs::read_dir(&tasks)
                .ok()?
                .filter_map(|t| t.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .map(|tid| task_state(self.pid(), tid));
            states.all(|s| s == Some('T')).then_some(())
        });
    }

    /// Lets a paused daemon go on (SIGCONT).
    pub fn resume(&self) {
        self.signal(Signal::SIGCONT);
    }

    /// Waits (up to [`DEADLINE`]) for the daemon to exit, and for everything it wrote to
    /// stderr to be in [`Daemon::stderr_text`].
    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("the daemon was started");
        let until = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for the daemon") {
                break status;
            }
            assert!(
                Instant::now() < until,
                "futu-authd did not exit within {DEADLINE:?}"
            );
            std::thread::sleep(POLL);
        };
        self.read_stderr_to_end();
        status
    }

    /// Waits (up to [`DEADLINE`]) until the stderr of the daemon, which has exited, is
    /// read to its end: the reading thread may not have run since the last line came.
    fn read_stderr_to_end(&mut self) {
        if let Some(reader) = self.stderr_reader.take() {
            poll("the daemon's stderr read to its end", || {
                reader.is_finished().then_some(())
            });
            let _ = reader.join();
        }
    }

    /// SIGTERM, then waits for the exit (which flushes the audit file).
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        self.wait_exit()
    }

    /// Starts the daemon again with the same directory, arguments and environment (after it
    /// exited), and waits for a new READY=1.
    pub fn restart(&mut self) {
        if let Some(child) = self.child.as_mut() {
            assert!(
                child.try_wait().expect("wait for the daemon").is_some(),
                "restart() needs the daemon stopped first"
            );
        }
        self.spawn_and_wait_ready();
    }

    /// Every notify datagram received so far, oldest first.
    pub fn notifications(&self) -> Vec<String> {
        let mut notes = self.notes.lock().unwrap();
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = self.notify.recv(&mut buf) {
            notes.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        notes.clone()
    }

    /// Waits (up to [`DEADLINE`]) for a notify datagram at index `from` or later that holds
    /// the line `line` (e.g. `READY=1`); returns its index and text.
    pub fn wait_notification(&self, from: usize, line: &str) -> (usize, String) {
        poll(&format!("a notify datagram with {line}"), || {
            let notes = self.notifications();
            notes
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, n)| has_line(n, line))
                .map(|(i, n)| (i, n.clone()))
        })
    }

    /// Everything the daemon wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits (up to [`DEADLINE`]) until stderr contains `needle`; returns all of stderr.
    pub fn wait_stderr(&self, needle: &str) -> String {
        poll(&format!("{needle:?} on the daemon's stderr"), || {
            let text = self.stderr_text();
            text.contains(needle).then_some(text)
        })
    }

    /// The records of the audit file (none if it does not exist yet).
    pub fn audit_records(&self) -> Vec<Value> {
        read_jsonl(&self.audit_path())
    }

    /// Waits (up to [`DEADLINE`]) for at least `n` audit records; returns them all.
    pub fn wait_audit(&self, n: usize) -> Vec<Value> {
        poll(&format!("{n} audit records"), || {
            let recs = self.audit_records();
            (recs.len() >= n).then_some(recs)
        })
    }

    /// The metrics address (panics when started without [`DaemonBuilder::metrics`]).
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr.expect("the daemon was started with .metrics()")
    }

    /// GET `path` from the metrics listener: the status code and the body.
    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.metrics_addr(), path)
    }

    /// The text of GET /metrics.
    pub fn metrics_text(&self) -> String {
        let (status, body) = self.http_get("/metrics");
        assert_eq!(status, 200, "GET /metrics answered {status}: {body}");
        body
    }

    /// The text of GET /metrics once `settled(text)` holds, or the last text read when
    /// [`DEADLINE`] passes: for a count the daemon makes a moment after a client can see
    /// its cause (a connection is closed first, counted after). The caller then asserts
    /// exactly what it expects, so a count that never comes fails with the whole text.
    pub fn wait_metrics(&self, settled: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + DEADLINE;
        loop {
            let text = self.metrics_text();
            if settled(&text) || Instant::now() >= until {
                return text;
            }
            std::thread::sleep(POLL);
        }
    }

    /// A connection to the daemon's socket, Hello already exchanged.
    pub async fn client(&self) -> Client {
        let mut c = Client::connect(&self.socket_path()).await;
        c.hello().await;
        c
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "--- futu-authd stderr ({}) ---\n{}--- end ---",
                self.dir().display(),
                self.stderr_text()
            );
        }
    }
}

fn has_line(datagram: &str, line: &str) -> bool {
    datagram.lines().any(|l| l == line)
}

/// The JSON objects of a JSONL file, one a line (an absent file has none).
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("{}: {e}", path.display()),
    };
    // A line still being written has no newline yet; leave it for the next read.
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l:?}: {e}")))
        .collect()
}

/// A minimal HTTP/1.1 GET: the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, DEADLINE).expect("connect to the metrics listener");
    s.set_read_timeout(Some(DEADLINE)).expect("set a read timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the GET");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read the HTTP response");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {raw:?}"));
    (status, body.to_owned())
}

/// A raw protocol connection to the daemon.
#[derive(Debug)]
pub struct Client {
    framed: Framed<UnixStream, FrameCodec<Response, Request>>,
    next_id: u64,
}

impl Client {
    /// Connects to `socket` (no Hello yet).
    pub async fn connect(socket: &Path) -> Client {
        let stream = UnixStream::connect(socket)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", socket.display()));
        Client {
            framed: Framed::new(stream, FrameCodec::new()),
            next_id: 1,
        }
    }

    /// Sends Hello (the newest protocol version, [`PROTOCOL_VERSION`]) and checks the
    /// answer is HelloOk for it.
    pub async fn hello(&mut self) {
        self.hello_version(PROTOCOL_VERSION).await;
    }

    /// Sends Hello offering protocol `version` and checks the answer is HelloOk for it;
    /// the connection then reads and writes that version.
    pub async fn hello_version(&mut self, version: u16) {
        self.send(Request::Hello(Hello {
            protocol_version: version,
            client_name: "e2e".into(),
        }))
        .await;
        match self.recv().await {
            Response::HelloOk { protocol_version, .. } => assert_eq!(protocol_version, version),
            other => panic!("Hello answered with {other:?}"),
        }
    }

    /// The protocol version this connection reads and writes: [`PROTOCOL_VERSION`] until
    /// a HelloOk says otherwise.
    pub fn version(&self) -> u16 {
        self.framed.codec().version()
    }

    /// A fresh request id for this connection.
    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Sends one request (flushed).
    pub async fn send(&mut self, req: Request) {
        self.framed.send(req).await.expect("send a request");
    }

    /// Queues one request without flushing (for pipelining; then [`Client::flush`]).
    pub async fn feed(&mut self, req: Request) {
        self.framed.feed(req).await.expect("queue a request");
    }

    /// Queues one request without flushing; `Err` when the connection is gone (for load
    /// that runs until the daemon dies).
    pub async fn try_feed(&mut self, req: Request) -> Result<(), CodecError> {
        self.framed.feed(req).await
    }

    /// Flushes queued requests; `Err` when the connection is gone.
    pub async fn try_flush(&mut self) -> Result<(), CodecError> {
        SinkExt::<Request>::flush(&mut self.framed).await
    }

    /// Flushes queued requests.
    pub async fn flush(&mut self) {
        SinkExt::<Request>::flush(&mut self.framed)
            .await
            .expect("flush requests");
    }

    /// Writes raw bytes to the socket, bypassing the codec.
    pub async fn write_raw(&mut self, bytes: &[u8]) {
        let stream = self.framed.get_mut();
        stream.write_all(bytes).await.expect("write raw bytes");
        stream.flush().await.expect("flush raw bytes");
    }

    /// The next frame: `None` when the daemon closed the connection. Fails the test when
    /// nothing arrives within [`DEADLINE`].
    ///
    /// A HelloOk sets the version the connection speaks from then on, as a client does.
    pub async fn next_frame(&mut self) -> Option<Result<Response, CodecError>> {
        let frame = tokio::time::timeout(DEADLINE, self.framed.next())
            .await
            .unwrap_or_else(|_| panic!("no answer from futu-authd within {DEADLINE:?}"));
        if let Some(Ok(Response::HelloOk { protocol_version, .. })) = &frame {
            self.framed.codec_mut().set_version(*protocol_version);
        }
        frame
    }

    /// The next response; fails the test on close, error or timeout.
    pub async fn recv(&mut self) -> Response {
        match self.next_frame().await {
            Some(Ok(r)) => r,
            Some(Err(e)) => panic!("reading a response failed: {e}"),
            None => panic!("futu-authd closed the connection"),
        }
    }

    /// Asserts the daemon closes the connection (within [`DEADLINE`]) without sending
    /// anything more.
    pub async fn expect_closed(&mut self) {
        match self.next_frame().await {
            None => {}
            Some(Err(CodecError::Io(e))) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Some(other) => panic!("expected the connection closed, got {other:?}"),
        }
    }

    /// Sends a request and returns its answer.
    pub async fn request(&mut self, req: Request) -> Response {
        self.send(req).await;
        self.recv().await
    }

    /// A Check request (REST, not a dry run) with a fresh id.
    pub fn check_request(
        &mut self,
        iface: Iface,
        token: &str,
        endpoint: &str,
        order: Option<Order>,
    ) -> Check {
        Check {
            request_id: self.next_id(),
            token: Token::new(token),
            iface,
            endpoint: endpoint.to_owned(),
            order,
            dry_run: false,
            acc_id: None,
            ref_price: None,
        }
    }

    /// Checks `token` for `endpoint` (with `order`) through the REST front-end.
    pub async fn check(&mut self, token: &str, endpoint: &str, order: Option<Order>) -> Decision {
        self.check_via(Iface::Rest, token, endpoint, order).await
    }

    /// Checks through the front-end `iface`; asserts the answer echoes the request id.
    pub async fn check_via(
        &mut self,
        iface: Iface,
        token: &str,
        endpoint: &str,
        order: Option<Order>,
    ) -> Decision {
        let c = self.check_request(iface, token, endpoint, order);
        let id = c.request_id;
        decision_of(id, self.request(Request::Check(c)).await)
    }

    /// The key's value used today and orders in the last 60 s, from the daemon's Usage
    /// answer (an admin request: the harness runs as the daemon's own user).
    pub async fn usage(&mut self, id: &str) -> (f64, u32) {
        let request_id = self.next_id();
        match self
            .request(Request::Usage {
                request_id,
                id: id.parse().expect("a valid key id"),
            })
            .await
        {
            Response::Usage(u) => (u.daily_value_used, u.orders_last_minute),
            other => panic!("expected usage, got {other:?}"),
        }
    }

    /// Asks whether `token` holds `scope`, through `iface`.
    pub async fn check_scope(&mut self, token: &str, iface: Iface, scope: Scope) -> Decision {
        let id = self.next_id();
        let req = Request::CheckScope(CheckScope {
            request_id: id,
            token: Token::new(token),
            iface,
            scope,
        });
        decision_of(id, self.request(req).await)
    }
}

/// A Unix socket server that is not futu-authd: it accepts connections, answers Hello if
/// told to, and never answers anything else — a daemon that hangs. Stopped on drop.
pub struct SilentServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SilentServer {
    /// Listens on `path`; with `answer_hello`, each connection's first frame is answered
    /// with a HelloOk.
    pub fn start(path: &Path, answer_hello: bool) -> SilentServer {
        let listener = std::os::unix::net::UnixListener::bind(path).expect("bind the fake server");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut held: Vec<std::os::unix::net::UnixStream> = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).expect("blocking stream");
                        if answer_hello {
                            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                            let mut len = [0u8; 4];
                            if s.read_exact(&mut len).is_ok() {
                                let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
                                let _ = s.read_exact(&mut body);
                                let ok = Response::HelloOk {
                                    protocol_version: PROTOCOL_VERSION,
                                    server_version: "silent".into(),
                                };
                                let _ = s.write_all(&encode_frame(&ok).expect("encode HelloOk"));
                            }
                        }
                        held.push(s);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        SilentServer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The decision in `resp`, which must answer request `id`.
pub fn decision_of(id: u64, resp: Response) -> Decision {
    match resp {
        Response::Decision { request_id, decision } => {
            assert_eq!(request_id, id, "the answer carries the request's id");
            decision
        }
        other => panic!("expected a Decision for request {id}, got {other:?}"),
    }
}

/// The reason of a deny; fails the test on an allow.
pub fn deny_reason(d: &Decision) -> futu_auth_proto::Reason {
    d.reason().unwrap_or_else(|| panic!("expected a deny, got {d:?}"))
}

/// The key id of an allow; fails the test on a deny.
pub fn allowed_key(d: &Decision) -> String {
    match d {
        Decision::Allow { key_id, .. } => key_id.as_str().to_owned(),
        Decision::Deny { .. } => panic!("expected an allow, got {d:?}"),
    }
}

/// The `futucli` binary built next to this test; panics with what to do if it is missing.
pub fn futucli_binary() -> PathBuf {
    let path = target_dir().join("futucli");
    assert!(
        path.is_file(),
        "{} does not exist: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// A `futucli` command with stdin closed and no `FUTU_…` variable of the test's own
/// environment, so only what the test passes (flags or [`Command::env`]) configures it.
pub fn futucli_command() -> Command {
    let mut cmd = Command::new(futucli_binary());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("FUTU_") {
            cmd.env_remove(&k);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// A copy of the executable `program` in `dir`, mode 0755, for [`run_as`]: another user
/// may not be able to reach the build directory.
///
/// `install(1)` writes it, in a process of its own. Written from here, the copy would be
/// open for writing in this process for a moment, and a child that another test's thread
/// forks in that moment holds the descriptor too, until its exec: running the copy then
/// fails with ETXTBSY (setpriv exits 126).
pub fn executable_copy(program: &Path, dir: &Path) -> PathBuf {
    let name = program.file_name().expect("a program has a file name");
    let copy = dir.join(name);
    let out = Command::new("install")
        .arg("-m")
        .arg("0755")
        .arg(program)
        .arg(&copy)
        .stdin(Stdio::null())
        .output()
        .expect("run install (coreutils)");
    assert!(
        out.status.success(),
        "install {} {}: {}",
        program.display(),
        copy.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    copy
}

/// What one run of a command (futucli, mostly) printed, and how it exited.
#[derive(Debug)]
pub struct Run {
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8(out.stdout).expect("the command prints UTF-8"),
            stderr: String::from_utf8(out.stderr).expect("the command prints UTF-8"),
        }
    }
}

/// The state letter of thread `tid` of process `pid` in `/proc/PID/task/TID/stat` (`R`,
/// `S`, `T` for stopped, …).
fn task_state(pid: u32, tid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}
