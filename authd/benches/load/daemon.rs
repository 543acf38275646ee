//! The real futu-authd: a keys.json written for the benchmark, the daemon started on a
//! temporary socket with the audit file on, ready and reload timed through NOTIFY_SOCKET,
//! stopped with SIGTERM and its audit lines counted; and the futu-auth-client load.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futu_auth_client::{AuthClient, Decision, Iface};
use futu_auth_keys::store::KeysFile;
use futu_auth_keys::token::digest;
use futu_auth_proto::key::Cap;
use futu_auth_proto::{Fingerprint, KeyHash, KeyRecord, Limits, Market, Scope, Token, TrdSide};
use nix::sys::signal::Signal;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use crate::futu::bench_order;
use crate::harness::{Plan, Stats, Verdict, Window};
use crate::procs::{self, ChildGuard, NotifySocket};

/// The id of the key every check uses.
pub const BENCH_KEY_ID: &str = "bench";

/// A key with every limit set, all high enough never to deny the benchmark's order.
fn key_with_every_limit(id: &str, hash: KeyHash, host: Option<&Fingerprint>) -> KeyRecord {
    KeyRecord {
        id: id.parse().expect("valid key id"),
        hash,
        scopes: vec![Scope::QotRead, Scope::AccRead, Scope::TradeSimulate],
        limits: Limits {
            allowed_markets: Some(vec![Market::HK, Market::US]),
            allowed_symbols: Some(vec![
                "HK.00700".parse().expect("valid symbol"),
                "HK.09988".parse().expect("valid symbol"),
            ]),
            allowed_trd_sides: Some(vec![TrdSide::SELL]),
            max_order_value: Some(Cap::try_from(1e9).expect("valid cap")),
            max_daily_value: Some(Cap::try_from(1e15).expect("valid cap")),
            max_orders_per_minute: Some(4_000_000_000),
            hours_window: Some("00:00-23:59".parse().expect("valid window")),
            // The limits the daemon's ledger stores do not follow yet are left unset.
            ..Limits::default()
        },
        allowed_machines: host.map(|h| vec![h.clone()]),
        created_at: "2026-04-15T10:00:00Z".parse().expect("valid time"),
        expires_at: Some("2099-01-01T00:00:00Z".parse().expect("valid time")),
        note: None,
    }
}

/// What the keys other than the benchmark's look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fillers {
    /// Like the benchmark's key: every limit set, bound to this machine, an expiry.
    EveryLimit,
    /// `qot:read` and nothing else: the smallest record keys.json allows.
    Minimal,
}

fn minimal_key(id: &str, hash: KeyHash) -> KeyRecord {
    KeyRecord {
        id: id.parse().expect("valid key id"),
        hash,
        scopes: vec![Scope::QotRead],
        limits: Limits::default(),
        allowed_machines: None,
        created_at: "2026-04-15T10:00:00Z".parse().expect("valid time"),
        expires_at: None,
        note: None,
    }
}

/// Writes keys.json with `count` keys: the benchmark's key (`token`, every limit) first,
/// then `count - 1` `fillers` with their own digests. Returns the file's size.
pub fn write_keys(
    path: &Path,
    count: usize,
    fillers: Fillers,
    token: &Token,
    host: Option<&Fingerprint>,
) -> Result<u64, String> {
    let mut keys = Vec::with_capacity(count);
    keys.push(key_with_every_limit(BENCH_KEY_ID, digest(token), host));
    for i in 1..count {
        let hash = digest(&Token::new(format!("fc_{i:032x}")));
        let id = format!("k{i:06}");
        keys.push(match fillers {
            Fillers::EveryLimit => key_with_every_limit(&id, hash, host),
            Fillers::Minimal => minimal_key(&id, hash),
        });
    }
    let file = KeysFile {
        keys,
        ..KeysFile::default()
    };
    file.save(path)
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A futu-authd the benchmark started.
pub struct Daemon {
    /// Its socket.
    pub socket: PathBuf,
    /// Its audit file.
    pub audit: PathBuf,
    /// Its keys file.
    pub keys_file: PathBuf,
    /// From spawn to READY=1.
    pub startup: Duration,
    /// Checks answered with a decision, counted by the benchmark.
    pub checks: u64,
    /// Checks the client library gave up on (deadline): the daemon still answers and
    /// audits them.
    pub timed_out: u64,
    /// Keys it serves.
    pub keys: usize,
    state_dir: PathBuf,
    notify: Arc<NotifySocket>,
    log: PathBuf,
    guard: ChildGuard,
    _dir: TempDir,
}

/// What stopping a daemon found.
pub struct Stopped {
    /// Lines in the audit file after the daemon flushed it.
    pub audit_lines: u64,
    /// Checks the benchmark counted.
    pub checks: u64,
    /// See [`Daemon::timed_out`].
    pub timed_out: u64,
    /// Whether it exited 0 within the grace period.
    pub clean: bool,
}

impl Daemon {
    /// Starts `binary` serving `keys` keys (the benchmark's key among them) and waits for
    /// READY=1.
    pub fn start(
        binary: &Path,
        keys: usize,
        fillers: Fillers,
        token: &Token,
        host: Option<&Fingerprint>,
    ) -> Result<Daemon, String> {
        Daemon::start_with_args(binary, keys, fillers, token, host, &[])
    }

    /// [`Daemon::start`] with more command-line arguments (e.g. `--ledger-url`).
    pub fn start_with_args(
        binary: &Path,
        keys: usize,
        fillers: Fillers,
        token: &Token,
        host: Option<&Fingerprint>,
        args: &[String],
    ) -> Result<Daemon, String> {
        let dir = procs::temp_dir("futu-load-")?;
        let keys_file = dir.path().join("keys.json");
        write_keys(&keys_file, keys, fillers, token, host)?;
        let socket = dir.path().join("auth.sock");
        let audit = dir.path().join("audit.jsonl");
        let log = dir.path().join("futu-authd.log");
        let state_dir = dir.path().join("state");
        let notify =
            NotifySocket::bind(&dir.path().join("notify.sock")).map_err(|e| format!("notify socket: {e}"))?;
        let log_file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let started = Instant::now();
        let child = Command::new(binary)
            .arg("--socket")
            .arg(&socket)
            .arg("--keys-file")
            .arg(&keys_file)
            .arg("--state-dir")
            .arg(&state_dir)
            .arg("--audit-log")
            .arg(&audit)
            .args([
                "--audit-journald=false",
                "--metrics-listen",
                "off",
                "--socket-mode",
                "0600",
            ])
            .args(args)
            .env("NOTIFY_SOCKET", notify.path())
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES")
            .env_remove("WATCHDOG_USEC")
            .env_remove("JOURNAL_STREAM")
            .env("FUTU_AUTHD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let mut guard = ChildGuard::new("futu-authd", child);
        let deadline = started + Duration::from_secs(120);
        let (ready_at, _) = notify.wait_for("READY=1", deadline, || match guard.exited() {
            Some(s) => Err(format!(
                "futu-authd exited ({s}) before READY=1:\n{}",
                procs::tail(&log, 3000)
            )),
            None => Ok(()),
        })?;
        Ok(Daemon {
            socket,
            audit,
            keys_file,
            startup: ready_at - started,
            checks: 0,
            timed_out: 0,
            keys,
            state_dir,
            notify: Arc::new(notify),
            log,
            guard,
            _dir: dir,
        })
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// VmRSS and VmHWM in KiB.
    pub fn rss_kib(&self) -> Option<(u64, u64)> {
        procs::rss_kib(self.pid())
    }

    /// What SIGHUP needs, to be timed from a blocking thread while the load runs.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            pid: self.pid(),
            notify: Arc::clone(&self.notify),
            keys_file: self.keys_file.clone(),
        }
    }

    /// The size of its keys.json.
    pub fn keys_file_bytes(&self) -> u64 {
        std::fs::metadata(&self.keys_file).map(|m| m.len()).unwrap_or(0)
    }

    /// The size of its ledger log now.
    pub fn ledger_log_bytes(&self) -> u64 {
        std::fs::metadata(self.state_dir.join(futu_authd::journal::FILE_NAME))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// The end of its log, for messages.
    pub fn log_tail(&self, bytes: usize) -> String {
        procs::tail(&self.log, bytes)
    }

    /// SIGTERM (it answers what is in flight and flushes the audit file), then counts the
    /// audit lines.
    pub fn stop(self) -> Result<Stopped, String> {
        let log = self.log.clone();
        let (status, in_time) = self
            .guard
            .terminate(Duration::from_secs(20))
            .map_err(|e| format!("stopping futu-authd: {e}"))?;
        let clean = in_time && status.success();
        if !clean {
            eprintln!(
                "WARNING: futu-authd did not stop cleanly ({status}, within grace: {in_time}):\n{}",
                procs::tail(&log, 2000)
            );
        }
        let audit = std::fs::read(&self.audit).map_err(|e| format!("{}: {e}", self.audit.display()))?;
        let audit_lines = audit.iter().filter(|b| **b == b'\n').count() as u64;
        Ok(Stopped {
            audit_lines,
            checks: self.checks,
            timed_out: self.timed_out,
            clean,
        })
    }
}

/// Sends SIGHUP and times the reload through the notify socket.
pub struct Reloader {
    pid: u32,
    notify: Arc<NotifySocket>,
    /// Touched before each SIGHUP: the daemon keeps its snapshot when the text is
    /// unchanged, and the benchmark times a real reload of every key.
    keys_file: std::path::PathBuf,
}

/// One timed reload.
#[derive(Debug, Clone, Copy)]
pub struct Reload {
    /// When SIGHUP was sent.
    pub sent: Instant,
    /// When RELOADING=1 arrived.
    pub reloading: Instant,
    /// When READY=1 arrived after it.
    pub ready: Instant,
}

impl Reload {
    /// SIGHUP → READY=1.
    pub fn total(&self) -> Duration {
        self.ready - self.sent
    }

    /// RELOADING=1 → READY=1 (the daemon's own reload, without signal delivery).
    pub fn reloading(&self) -> Duration {
        self.ready - self.reloading
    }
}

impl Reloader {
    /// SIGHUP, then waits for RELOADING=1 and the READY=1 after it. Blocking.
    pub fn reload(&self, timeout: Duration) -> Result<Reload, String> {
        // A trailing newline changes the text (so the daemon must parse and compile every
        // key again) but not the keys.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&self.keys_file)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"\n"))
            .map_err(|e| format!("{}: {e}", self.keys_file.display()))?;
        self.notify.drain();
        let sent = Instant::now();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), Signal::SIGHUP)
            .map_err(|e| format!("SIGHUP: {e}"))?;
        let deadline = sent + timeout;
        let (reloading, _) = self.notify.wait_for("RELOADING=1", deadline, || Ok(()))?;
        let (ready, _) = self.notify.wait_for("READY=1", deadline, || Ok(()))?;
        Ok(Reload {
            sent,
            reloading,
            ready,
        })
    }
}

/// The futu-auth-client load: `plan.connections` clients (one connection each), each
/// called by `plan.depth` tasks in a loop, every call the benchmark's order check.
pub async fn run_client(
    socket: &Path,
    token: &Token,
    plan: Plan,
    deadline: Duration,
) -> Result<Stats, String> {
    let mut clients = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        let client = AuthClient::builder(socket)
            .client_name("load-bench-client")
            .deadline(deadline)
            .connect()
            .await
            .map_err(|e| format!("futu-auth-client connect: {e}"))?;
        clients.push(client);
    }
    let window = Window::new(plan.warmup);
    let mut tasks = Vec::new();
    for client in &clients {
        for _ in 0..plan.depth {
            let client = client.clone();
            let token = token.clone();
            let window = Arc::clone(&window);
            tasks.push(tokio::spawn(async move {
                let mut st = Stats::default();
                let order = bench_order();
                while !window.stopping() {
                    let sent = Instant::now();
                    let r = client
                        .check(&token, Iface::Rest, "Trd_PlaceOrder", Some(order.clone()))
                        .await;
                    let at = Instant::now();
                    st.sent += 1;
                    let verdict = match r {
                        Ok(Decision::Allow { .. }) => Verdict::Allow,
                        Ok(Decision::Deny { reason, .. }) => Verdict::Deny(reason.as_str().into()),
                        Err(e) => Verdict::Error(e.to_string()),
                    };
                    st.record(verdict, at - sent, at, window.counts(at));
                }
                st
            }));
        }
    }
    let closed = window.close_after(&plan, None::<CancellationToken>).await;
    let mut total = Stats::default();
    for t in tasks {
        total.merge(t.await.map_err(|e| format!("client task: {e}"))?);
    }
    total.window = closed.saturating_duration_since(window.from);
    Ok(total)
}
