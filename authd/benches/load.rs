//! The load benchmark: the real futu-authd under pipelined load, next to the floor of its
//! protocol (an echo server) and to what a user would deploy instead (redis-server with the
//! same decision in Lua), all driven by one client harness; then check latency with 1,
//! 1 000 and 100 000 keys, the daemon's RSS with 100 000 keys, a SIGHUP reload of 100 000
//! keys under load, the overhead of futu-auth-client, and the ledger on PostgreSQL (one and
//! two daemons on a throwaway cluster, next to the local journal; `--pg` for that alone).
//!
//! ```sh
//! cargo bench -p futu-authd --bench load -- [--quick] [--duration SECS] [--connections N] [--depth D] [--json-only]
//! ```
//!
//! Human-readable lines first; the last line of standard output is one JSON object with
//! every figure (`--json-only`: the human lines go to standard error instead). `--help`
//! lists the rest (`--only`, `--client-threads`, `--perf-record`, …).
//!
//! Every server runs in its own process: the echo server is this binary re-executed with
//! `--echo-server`, the daemon is the `futu-authd` cargo built with this benchmark, redis
//! is `redis-server` from PATH (skipped, with the reason, when missing). Each is killed
//! when the benchmark ends, panics or is interrupted.
//!
//! The harness runs on a tokio current-thread runtime by default (`--client-threads N`
//! for a multi-thread one). On two cores one client thread leaves the other core to the
//! server under test: futu-authd and redis did as well or better than with two client
//! threads; only the echo server, which needs ~1 µs of CPU a request, went faster with
//! two (its floor is then set partly by the harness, ~0.6 µs a request).
#![allow(missing_docs)]

#[path = "load/daemon.rs"]
mod daemon;
#[path = "load/futu.rs"]
mod futu;
#[path = "load/harness.rs"]
mod harness;
#[path = "load/pg.rs"]
mod pg;
// The end-to-end tests' throwaway cluster; they use more of it than the benchmark.
#[allow(dead_code)]
#[path = "../../tests/src/postgres.rs"]
mod postgres;
#[path = "load/procs.rs"]
mod procs;
#[path = "load/redis.rs"]
mod redis;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futu_auth_proto::{Fingerprint, Token};
use futu_authd::journal::COMPACT_AT_BYTES;
use tokio_util::sync::CancellationToken;

use crate::daemon::{Daemon, Fillers};
use crate::futu::{CheckKind, FutuWire};
use crate::harness::{Plan, Stats};
use crate::procs::ChildGuard;
use crate::redis::{RedisServer, RedisWire};

/// The futu-auth-client deadline: generous, because the daemon's ledger-log compactions
/// hold order checks for seconds under sustained load (a shorter one turns them into errors).
const CLIENT_DEADLINE: Duration = Duration::from_secs(30);

/// How long after READY=1 RSS is read: the daemon frees the parsed keys.json after READY=1.
const RSS_SETTLE: Duration = Duration::from_secs(1);

/// The connections of the many-connections run (the order write at depth 1).
const MANY_CONNECTIONS: usize = 1000;

/// futu-authd's load benchmark (see the file's documentation).
#[derive(Debug, Parser)]
#[command(name = "load", about)]
struct Args {
    /// ~3 s per scenario (the whole run stays under a minute).
    #[arg(long)]
    quick: bool,
    /// Seconds each throughput scenario measures (default 10, or 3 with --quick).
    #[arg(long)]
    duration: Option<f64>,
    /// Connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 32)]
    depth: usize,
    /// Only the JSON line on standard output (the rest goes to standard error).
    #[arg(long)]
    json_only: bool,
    /// Worker threads of the harness's runtime; 0 = tokio's current-thread runtime.
    #[arg(long, default_value_t = 0)]
    client_threads: usize,
    /// Run only these scenarios (comma-separated: echo, authd, client, redis, keys, reload,
    /// pg).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Run only the PostgreSQL ledger (`--only pg`): a throwaway cluster, one and two
    /// daemons on it, next to the local journal.
    #[arg(long)]
    pg: bool,
    /// The throwaway cluster's `synchronous_commit` (`on`: a commit is acknowledged once
    /// its WAL is on disk; `off`: once it is in the WAL buffers).
    #[arg(long, default_value = "on")]
    pg_synchronous_commit: String,
    /// The daemons' --ledger-timeout, in milliseconds.
    #[arg(long, default_value_t = 30)]
    pg_timeout_ms: u64,
    /// Keys of the big keys.json (RSS, reload, latency).
    #[arg(long, default_value_t = 100_000)]
    big_keys: usize,
    /// The futu-authd binary (default: the one cargo built with this benchmark).
    #[arg(long)]
    authd_bin: Option<PathBuf>,
    /// Record the server with `perf record --call-graph dwarf` into this file during one
    /// scenario (see --perf-during).
    #[arg(long)]
    perf_record: Option<PathBuf>,
    /// The scenario --perf-record records: echo, authd-read, authd-order,
    /// authd-order-dry-run, client,
    /// redis-order, redis-read, keys-N (e.g. keys-100000) or reload.
    #[arg(long, default_value = "authd-order")]
    perf_during: String,
    /// Internal: run as the echo server on this socket.
    #[arg(long, hide = true)]
    echo_server: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.echo_server {
        return futu::echo_server_main(path);
    }
    watch_signals();
    let out = Out {
        json_only: args.json_only,
    };
    match Bench::new(args, out).and_then(|b| b.run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGINT/SIGTERM: kill every process the benchmark started, then exit.
fn watch_signals() {
    std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("signal runtime");
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) =
                (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
            else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            procs::kill_all_children();
            eprintln!("load bench: interrupted; the processes it started are killed");
            std::process::exit(130);
        });
    });
}

/// Where human-readable lines go.
#[derive(Clone, Copy)]
struct Out {
    json_only: bool,
}

impl Out {
    fn line(&self, text: impl AsRef<str>) {
        if self.json_only {
            eprintln!("{}", text.as_ref());
        } else {
            println!("{}", text.as_ref());
        }
    }
}

/// A JSON value written in the order it was built (the report's key order is fixed).
enum Json {
    Null,
    Num(f64, usize),
    Int(u64),
    Bool(bool),
    Str(String),
    Obj(Vec<(String, Json)>),
    Arr(Vec<Json>),
}

impl Json {
    fn obj() -> Json {
        Json::Obj(Vec::new())
    }

    fn set(&mut self, key: &str, value: Json) -> &mut Json {
        if let Json::Obj(items) = self {
            items.push((key.to_owned(), value));
        }
        self
    }

    fn opt(v: Option<f64>, decimals: usize) -> Json {
        match v {
            Some(x) if x.is_finite() => Json::Num(x, decimals),
            _ => Json::Null,
        }
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Num(x, d) => out.push_str(&format!("{x:.d$}")),
            Json::Int(n) => out.push_str(&n.to_string()),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Str(s) => out.push_str(&serde_json::to_string(s).expect("a string serializes")),
            Json::Obj(items) => {
                out.push('{');
                for (i, (k, v)) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).expect("a string serializes"));
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
            Json::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
        }
    }
}

/// `{"throughput":N,"p50_us":N,"p99_us":N}` and a few more figures.
fn stats_json(st: Option<&Stats>) -> Json {
    let mut o = Json::obj();
    match st {
        Some(st) => {
            o.set("throughput", Json::Num(st.throughput(), 0))
                .set("p50_us", Json::Num(st.quantile_us(0.5), 1))
                .set("p99_us", Json::Num(st.quantile_us(0.99), 1))
                .set("p999_us", Json::Num(st.quantile_us(0.999), 1))
                .set("max_us", Json::Num(st.max_ns as f64 / 1000.0, 1))
                .set("completed", Json::Int(st.completed))
                .set("failures", Json::Int(st.failures()));
            if let Some((slowest, stalls)) = st.slowest_tick() {
                o.set("slowest_100ms", Json::Int(slowest))
                    .set("stalled_100ms", Json::Int(stalls as u64));
            }
            if let Some((server, client)) = st.cpu_us_per_request() {
                o.set("server_cpu_us_per_req", Json::Num(server, 2))
                    .set("client_cpu_us_per_req", Json::Num(client, 2));
            }
        }
        None => {
            o.set("throughput", Json::Null)
                .set("p50_us", Json::Null)
                .set("p99_us", Json::Null);
        }
    }
    o
}

/// Exactly `{"throughput":N,"p50_us":N,"p99_us":N}` (the details are under other keys).
fn summary_json(st: Option<&Stats>) -> Json {
    let mut o = Json::obj();
    o.set("throughput", Json::opt(st.map(Stats::throughput), 0))
        .set("p50_us", Json::opt(st.map(|s| s.quantile_us(0.5)), 1))
        .set("p99_us", Json::opt(st.map(|s| s.quantile_us(0.99)), 1));
    o
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// One human-readable line for a run.
fn describe(name: &str, st: &Stats, shape: &str) -> String {
    let mut s = format!(
        "{name:<14} {:>9.0} req/s   p50 {:>8.1} µs   p99 {:>8.1} µs   max {:>9.1} µs   ({shape}, {:.1} s, {} answers)",
        st.throughput(),
        st.quantile_us(0.5),
        st.quantile_us(0.99),
        st.max_ns as f64 / 1000.0,
        st.window.as_secs_f64(),
        st.completed,
    );
    if let Some((server, client)) = st.cpu_us_per_request() {
        s.push_str(&format!(
            "\n{:<14} CPU per request: server {server:.2} µs, harness {client:.2} µs",
            ""
        ));
    }
    let per_tick = st.throughput() * harness::TICK.as_secs_f64();
    let uneven = st
        .slowest_tick()
        .filter(|(slowest, _)| per_tick > 0.0 && (*slowest as f64) < per_tick / 2.0);
    if let Some((slowest, stalls)) = uneven {
        s.push_str(&format!(
            "\n{:<14} uneven: slowest 100 ms had {slowest} answers (mean {per_tick:.0}); {stalls} × 100 ms with none",
            ""
        ));
    }
    if st.failures() > 0 {
        s.push_str(&format!(
            "   FAILURES: {} denies {:?}, {} errors (first: {})",
            st.denied.values().sum::<u64>(),
            st.denied,
            st.errors,
            st.first_error.as_deref().unwrap_or("-")
        ));
    }
    s
}

/// The figures of one run, collected for the report.
#[derive(Default)]
struct Results {
    echo: Option<Stats>,
    authd_order: Option<Stats>,
    /// The order check with `dry_run` (nothing consumed, nothing written).
    authd_order_dry_run: Option<Stats>,
    authd_read: Option<Stats>,
    client: Option<Stats>,
    redis_order: Option<Stats>,
    redis_read: Option<Stats>,
    /// Echo and the order write at 1 connection × depth 1, measured in turns.
    depth1_echo: Option<Stats>,
    depth1_authd: Option<Stats>,
    /// The order write at [`MANY_CONNECTIONS`] connections × depth 1.
    many_connections: Option<Stats>,
    /// The echo server at [`MANY_CONNECTIONS`] connections × depth 1: the floor of the
    /// ratio above (what the same many small round trips cost a server that does nothing).
    many_connections_echo: Option<Stats>,
    /// Latency at depth 1 on one connection, by keys served.
    keys: Vec<KeysRun>,
    /// VmRSS and VmHWM in KiB with the big keys.json, loaded and settled, before any check.
    rss_kib: Option<(u64, u64)>,
    /// VmRSS in KiB with the big keys.json after the latency run, and the checks it made.
    rss_after_checks_kib: Option<(u64, u64)>,
    /// The same with minimal filler keys (full run only), and the start-up and one
    /// reload without load.
    minimal: Option<KeysRun>,
    reloads: Vec<daemon::Reload>,
    reload_load: Option<Stats>,
    reload_failed: u64,
    reload_failed_in_window: usize,
    /// The PostgreSQL ledger.
    pg: Option<pg::PgResults>,
    checks: u64,
    audit_lines: u64,
    audit_mismatch: bool,
    /// Whether a ledger log grew past the compaction threshold.
    ledger_over_threshold: bool,
    /// Daemons that did not exit 0 within the grace period after SIGTERM.
    unclean_stops: u64,
    skipped: Vec<(String, String)>,
}

/// A daemon started with some keys.json.
struct KeysRun {
    keys: usize,
    /// keys.json's size.
    bytes: u64,
    /// Spawn to READY=1.
    startup: Duration,
    /// VmRSS and VmHWM in KiB after loading, before any check ([`RSS_SETTLE`] after
    /// READY=1: the parsed keys.json is freed after READY=1).
    rss_kib: Option<(u64, u64)>,
    /// VmRSS and VmHWM in KiB after the latency run, which leaves each allowed order's
    /// ticket in the ledger for the release window.
    rss_after_checks_kib: Option<(u64, u64)>,
    /// Checks made before `rss_after_checks_kib`.
    checks: u64,
    /// The latency run (none for the minimal-keys daemon).
    latency: Option<Stats>,
    /// One reload without load (minimal-keys daemon).
    reload: Option<Duration>,
}

struct Bench {
    args: Args,
    out: Out,
    rt: tokio::runtime::Runtime,
    plan: Plan,
    authd_bin: PathBuf,
    host: Option<Fingerprint>,
    token: Token,
    results: Results,
}

impl Bench {
    fn new(mut args: Args, out: Out) -> Result<Bench, String> {
        if args.pg && !args.only.iter().any(|s| s == "pg") {
            args.only.push("pg".into());
        }
        if args.connections == 0 || args.depth == 0 {
            return Err("--connections and --depth must be at least 1".into());
        }
        let secs = args.duration.unwrap_or(if args.quick { 3.0 } else { 10.0 });
        if !(secs > 0.0 && secs.is_finite()) {
            return Err("--duration must be a positive number of seconds".into());
        }
        let plan = Plan {
            connections: args.connections,
            depth: args.depth,
            warmup: Duration::from_millis(if args.quick { 300 } else { 1000 }),
            duration: Duration::from_secs_f64(secs),
        };
        let authd_bin = match &args.authd_bin {
            Some(p) => p.clone(),
            None => PathBuf::from(env!("CARGO_BIN_EXE_futu-authd")),
        };
        if !authd_bin.is_file() {
            return Err(format!(
                "{} not found; build it with `cargo build --release -p futu-authd --bin futu-authd` \
                 or pass --authd-bin PATH",
                authd_bin.display()
            ));
        }
        let rt = if args.client_threads == 0 {
            tokio::runtime::Builder::new_current_thread().enable_all().build()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(args.client_threads)
                .enable_all()
                .build()
        }
        .map_err(|e| format!("tokio runtime: {e}"))?;
        let host = futu_auth_keys::machine::fingerprint_from_file(Path::new("/etc/machine-id")).ok();
        let token = futu_auth_keys::token::generate_token().map_err(|e| format!("random token: {e}"))?;
        Ok(Bench {
            args,
            out,
            rt,
            plan,
            authd_bin,
            host,
            token,
            results: Results::default(),
        })
    }

    /// Runs `wire` against `socket` (see [`Bench::measure`]).
    fn load<W: harness::Wire>(
        &self,
        label: &str,
        wire: W,
        socket: &Path,
        server_pid: u32,
        plan: Plan,
        stop: Option<CancellationToken>,
    ) -> Result<Stats, String> {
        self.measure(
            label,
            server_pid,
            harness::run(Arc::new(wire), socket, plan, stop),
        )
    }

    /// Runs `load` on the harness's runtime and notes the CPU time `server_pid` and the
    /// harness used meanwhile; `perf record`s the server when --perf-during names `label`.
    fn measure<E>(
        &self,
        label: &str,
        server_pid: u32,
        load: impl std::future::Future<Output = Result<Stats, E>>,
    ) -> Result<Stats, String>
    where
        String: From<E>,
    {
        let perf = match &self.args.perf_record {
            Some(file) if self.args.perf_during == label => {
                self.out.line(format!(
                    "perf           recording pid {server_pid} during {label} into {}",
                    file.display()
                ));
                Some(start_perf(file, server_pid)?)
            }
            _ => None,
        };
        let me = std::process::id();
        let before = (procs::cpu_time(server_pid), procs::cpu_time(me));
        let st = self.rt.block_on(load);
        let after = (procs::cpu_time(server_pid), procs::cpu_time(me));
        if let Some(p) = perf {
            let _ = p.terminate(Duration::from_secs(60));
        }
        let mut st = st?;
        if let ((Some(s0), Some(c0)), (Some(s1), Some(c1))) = (before, after) {
            st.cpu = Some((s1.saturating_sub(s0), c1.saturating_sub(c0)));
        }
        Ok(st)
    }

    fn wants(&self, scenario: &str) -> bool {
        self.args.only.is_empty() || self.args.only.iter().any(|s| s == scenario)
    }

    fn skip(&mut self, scenario: &str, why: impl Into<String>) {
        let why = why.into();
        self.out.line(format!("{scenario:<14} skipped: {why}"));
        self.results.skipped.push((scenario.to_owned(), why));
    }

    fn shape(&self) -> String {
        format!("{} conn × depth {}", self.plan.connections, self.plan.depth)
    }

    fn run(mut self) -> Result<(), String> {
        let started = Instant::now();
        self.out.line(format!(
            "futu-authd load benchmark: {}, {:.1} s per scenario after {:.1} s warm-up, harness on a {} runtime, {} cores, daemon {}",
            self.shape(),
            self.plan.duration.as_secs_f64(),
            self.plan.warmup.as_secs_f64(),
            if self.args.client_threads == 0 {
                "tokio current-thread".to_owned()
            } else {
                format!("tokio {}-thread", self.args.client_threads)
            },
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            self.authd_bin.display(),
        ));
        self.out.line(
            "the order check: Trd_PlaceOrder, simulate, sell 100 HK.00700 at 388.2, key with every limit set \
             (markets, symbols, sides, per-order and daily caps, orders per minute, hours window, expiry, machine binding)",
        );
        if self.host.is_none() {
            self.out
                .line("note: /etc/machine-id unreadable; the benchmark's keys are not bound to this machine");
        }

        if self.wants("echo") {
            self.echo()?;
        }
        if self.wants("authd") || self.wants("client") {
            self.authd()?;
        }
        if self.wants("redis") {
            self.redis()?;
        }
        if self.wants("keys") || self.wants("reload") {
            self.keys_rss_reload()?;
        }
        if self.wants("pg") {
            self.pg()?;
        }
        self.report(started.elapsed());
        Ok(())
    }

    fn echo(&mut self) -> Result<(), String> {
        let (_dir, socket, guard) = self.start_echo()?;
        let wire = FutuWire::new(CheckKind::Order, &self.token);
        let st = self.load("echo", wire, &socket, guard.pid(), self.plan, None)?;
        self.out.line(describe("echo", &st, &self.shape()));
        drop(guard);
        self.results.echo = Some(st);
        Ok(())
    }

    /// Starts the echo server; it runs until the guard is dropped.
    fn start_echo(&self) -> Result<(tempfile::TempDir, PathBuf, ChildGuard), String> {
        let dir = procs::temp_dir("futu-load-echo-")?;
        let socket = dir.path().join("echo.sock");
        let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
        let child = Command::new(exe)
            .arg("--echo-server")
            .arg(&socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the echo server: {e}"))?;
        let mut guard = ChildGuard::new("echo server", child);
        procs::wait_connectable(
            &socket,
            Instant::now() + Duration::from_secs(10),
            || match guard.exited() {
                Some(s) => Err(format!("the echo server exited ({s})")),
                None => Ok(()),
            },
        )?;
        Ok((dir, socket, guard))
    }

    /// Echo and the order write at 1 connection × depth 1, in turns of 0.5 s (as the key
    /// counts are: depth-1 latency on two cores depends on how idle they are).
    fn depth1(&mut self) -> Result<(), String> {
        let (_dir, echo_socket, echo) = self.start_echo()?;
        let mut d = self.fresh_daemon()?;
        let turn = Plan {
            connections: 1,
            depth: 1,
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(500),
        };
        let turns = if self.args.quick { 4 } else { 10 };
        let (mut echo_slices, mut authd_slices) = (Vec::new(), Vec::new());
        for _ in 0..turns {
            let wire = FutuWire::new(CheckKind::Order, &self.token);
            echo_slices.push(self.load("echo-depth1", wire, &echo_socket, echo.pid(), turn, None)?);
            let wire = FutuWire::new(CheckKind::Order, &self.token);
            let st = self.load("authd-order-depth1", wire, &d.socket, d.pid(), turn, None)?;
            d.checks += st.decisions();
            authd_slices.push(st);
        }
        drop(echo);
        let shape = format!("1 conn × depth 1, {turns} turns of 0.5 s");
        let (e, a) = (combine(echo_slices), combine(authd_slices));
        self.out.line(describe("echo 1×1", &e, &shape));
        self.out.line(describe("authd order 1×1", &a, &shape));
        self.results.depth1_echo = Some(e);
        self.results.depth1_authd = Some(a);
        self.stop_daemon(d)
    }

    /// The order write at [`MANY_CONNECTIONS`] connections × depth 1, on a daemon that
    /// admits them all.
    fn many_connections(&mut self) -> Result<(), String> {
        let limit = (2 * MANY_CONNECTIONS).to_string();
        let args = [
            "--max-connections".to_owned(),
            limit.clone(),
            "--max-connections-per-uid".to_owned(),
            limit,
        ];
        let mut d = Daemon::start_with_args(
            &self.authd_bin,
            1,
            Fillers::EveryLimit,
            &self.token,
            self.host.as_ref(),
            &args,
        )?;
        let plan = Plan {
            connections: MANY_CONNECTIONS,
            depth: 1,
            ..self.plan
        };
        let (_dir, echo_socket, echo) = self.start_echo()?;
        let wire = FutuWire::new(CheckKind::Order, &self.token);
        let est = self.load("echo-1000", wire, &echo_socket, echo.pid(), plan, None)?;
        drop(echo);
        self.out.line(describe(
            "echo 1000 conn",
            &est,
            &format!("{MANY_CONNECTIONS} conn × depth 1"),
        ));
        self.results.many_connections_echo = Some(est);
        let wire = FutuWire::new(CheckKind::Order, &self.token);
        let st = self.load("authd-order-1000", wire, &d.socket, d.pid(), plan, None)?;
        d.checks += st.decisions();
        self.out.line(describe(
            "authd 1000 conn",
            &st,
            &format!("{MANY_CONNECTIONS} conn × depth 1"),
        ));
        self.results.many_connections = Some(st);
        self.stop_daemon(d)
    }

    /// Starts a daemon with one key (the benchmark's).
    fn fresh_daemon(&self) -> Result<Daemon, String> {
        let d = Daemon::start(
            &self.authd_bin,
            1,
            Fillers::EveryLimit,
            &self.token,
            self.host.as_ref(),
        )?;
        self.out.line(format!(
            "futu-authd     pid {}, 1 key, audit file on, ready in {:.0} ms",
            d.pid(),
            d.startup.as_secs_f64() * 1000.0
        ));
        Ok(d)
    }

    /// The quote read, the order write and the client library, each on a fresh daemon, so
    /// that none inherits another's ledger (see [`Bench::ledger_note`]).
    fn authd(&mut self) -> Result<(), String> {
        if self.wants("authd") {
            let mut d = self.fresh_daemon()?;
            let wire = FutuWire::new(CheckKind::Read, &self.token);
            let st = self.load("authd-read", wire, &d.socket, d.pid(), self.plan, None)?;
            d.checks += st.decisions();
            self.out.line(describe("authd read", &st, &self.shape()));
            self.results.authd_read = Some(st);
            self.stop_daemon(d)?;

            let mut d = self.fresh_daemon()?;
            let wire = FutuWire::new(CheckKind::Order, &self.token);
            let st = self.load("authd-order", wire, &d.socket, d.pid(), self.plan, None)?;
            d.checks += st.decisions();
            self.out.line(describe("authd order", &st, &self.shape()));
            self.ledger_note(&d);
            self.results.authd_order = Some(st);
            self.stop_daemon(d)?;

            // The same order decided in full but not consumed: no ledger-log write, so no
            // compaction; the difference to the order above is what persisting costs.
            let mut d = self.fresh_daemon()?;
            let wire = FutuWire::dry_run(CheckKind::Order, &self.token);
            let st = self.load("authd-order-dry-run", wire, &d.socket, d.pid(), self.plan, None)?;
            d.checks += st.decisions();
            self.out.line(describe("authd dry run", &st, &self.shape()));
            self.results.authd_order_dry_run = Some(st);
            self.stop_daemon(d)?;

            self.depth1()?;
            self.many_connections()?;
        }
        if self.wants("client") {
            let mut d = self.fresh_daemon()?;
            let run = daemon::run_client(&d.socket, &self.token, self.plan, CLIENT_DEADLINE);
            let st = self.measure("client", d.pid(), run)?;
            d.checks += st.decisions();
            d.timed_out += st.errors;
            self.out.line(describe(
                "client order",
                &st,
                &format!(
                    "futu-auth-client, deadline {} s: {} clients × {} tasks",
                    CLIENT_DEADLINE.as_secs(),
                    self.plan.connections,
                    self.plan.depth
                ),
            ));
            self.ledger_note(&d);
            self.results.client = Some(st);
            self.stop_daemon(d)?;
        }
        Ok(())
    }

    /// The ledger log's size: past [`COMPACT_AT_BYTES`] the daemon compacts it, holding
    /// every order check while it does; a compacted log that still holds more than that
    /// (every order of the last 15 minutes is kept) is compacted again at once.
    fn ledger_note(&mut self, d: &Daemon) {
        let size = d.ledger_log_bytes();
        let over = size > COMPACT_AT_BYTES;
        self.results.ledger_over_threshold |= over;
        self.out.line(format!(
            "{:<14} ledger.log {:.1} MiB{}",
            "",
            size as f64 / (1 << 20) as f64,
            if over {
                format!(
                    " (past {} MiB: the journal was or will be folded into the base, off the checks' path)",
                    COMPACT_AT_BYTES >> 20
                )
            } else {
                String::new()
            }
        ));
    }

    /// Stops a daemon and compares its audit lines with the checks counted.
    fn stop_daemon(&mut self, d: Daemon) -> Result<(), String> {
        let keys = d.keys;
        let stopped = d.stop()?;
        self.results.checks += stopped.checks;
        self.results.audit_lines += stopped.audit_lines;
        let same = stopped.checks == stopped.audit_lines;
        if !stopped.clean {
            self.results.unclean_stops += 1;
        }
        self.out.line(format!(
            "audit          {} keys: {} checks answered with a decision, {} audit lines after SIGTERM{}",
            keys,
            stopped.checks,
            stopped.audit_lines,
            if same { " — equal" } else { "" }
        ));
        if !same {
            self.results.audit_mismatch = true;
            let late = stopped.audit_lines.wrapping_sub(stopped.checks);
            let why = if stopped.audit_lines > stopped.checks && late <= stopped.timed_out {
                format!(
                    " — {late} of the {} client calls that passed their deadline were still answered and audited",
                    stopped.timed_out
                )
            } else {
                String::new()
            };
            self.out.line(format!(
                "WARNING !!! audit lines ({}) != checks answered ({}) for the daemon with {keys} keys{why}",
                stopped.audit_lines, stopped.checks
            ));
        }
        Ok(())
    }

    fn redis(&mut self) -> Result<(), String> {
        let Some(binary) = redis::find_binary() else {
            self.skip(
                "redis",
                "redis-server not found; install it with `apt-get install redis-server` (Debian) to compare",
            );
            return Ok(());
        };
        let dir = procs::temp_dir("futu-load-redis-")?;
        let token = self.token.expose().to_owned();
        let server = self
            .rt
            .block_on(RedisServer::start(&binary, dir.path(), &token))?;
        let kinds: &[CheckKind] = if self.args.quick {
            &[CheckKind::Order]
        } else {
            &[CheckKind::Order, CheckKind::Read]
        };
        for (run, kind) in kinds.iter().enumerate() {
            let wire = RedisWire::new(server.script_sha.clone(), token.clone(), *kind, run as u64);
            let label = match kind {
                CheckKind::Order => "redis-order",
                CheckKind::Read => "redis-read",
            };
            let st = self.load(label, wire, &server.socket, server.pid(), self.plan, None)?;
            match kind {
                CheckKind::Order => {
                    self.out.line(describe("redis order", &st, &self.shape()));
                    self.results.redis_order = Some(st);
                }
                CheckKind::Read => {
                    self.out.line(describe("redis read", &st, &self.shape()));
                    self.results.redis_read = Some(st);
                }
            }
        }
        if self.args.quick {
            self.results.skipped.push((
                "redis_read".into(),
                "--quick measures the redis order check only".into(),
            ));
        }
        server.stop()
    }

    /// Check latency with 1, 1 000 and the big number of keys; RSS and reload under load
    /// with the big keys.json; and, in the full run, RSS and reload with minimal keys.
    fn keys_rss_reload(&mut self) -> Result<(), String> {
        let big = self.args.big_keys.max(1);
        let counts: Vec<usize> = if self.args.quick {
            self.results.skipped.push((
                "keys_1000".into(),
                "--quick measures latency with 1 key and the big keys.json only".into(),
            ));
            vec![1, big]
        } else {
            vec![1, 1000, big]
        };
        // Depth-1 latency on this 2-core VM depends on how idle the CPUs are (waking a
        // sleeping vCPU costs tens of µs), so the daemons are measured in turns of 0.5 s
        // rather than one after the other: background load then affects them alike.
        let per_daemon = if self.args.quick {
            Duration::from_secs(2)
        } else {
            self.plan.duration.min(Duration::from_secs(5))
        };
        let turn = Plan {
            connections: 1,
            depth: 1,
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(500),
        };
        let turns = (per_daemon.as_millis() / turn.duration.as_millis()).max(1) as usize;
        let mut daemons = Vec::new();
        for &count in &counts {
            if self.wants("keys") || count == big {
                daemons.push((count, self.keys_daemon(count, Fillers::EveryLimit)?, Vec::new()));
            }
        }
        // What the keys cost, before any order leaves a ticket in the ledger: the figure of
        // RSS with N keys (the latency run below adds each allowed order's ticket for the
        // release window, so RSS after it depends on how many orders the run made).
        std::thread::sleep(RSS_SETTLE);
        let loaded: Vec<_> = daemons.iter().map(|(_, d, _)| d.rss_kib()).collect();
        for _ in 0..turns {
            for (count, d, slices) in daemons.iter_mut() {
                let wire = FutuWire::new(CheckKind::Order, &self.token);
                let st = self.load(&format!("keys-{count}"), wire, &d.socket, d.pid(), turn, None)?;
                d.checks += st.decisions();
                slices.push(st);
            }
        }
        for ((count, mut d, slices), rss_kib) in daemons.into_iter().zip(loaded) {
            let st = combine(slices);
            self.out.line(describe(
                &format!("keys {count}"),
                &st,
                &format!("1 conn × depth 1, {turns} turns of 0.5 s"),
            ));
            let after = d.rss_kib();
            if let (Some((rss, hwm)), Some((after, _))) = (rss_kib, after) {
                self.out.line(format!(
                    "rss            {count} keys: VmRSS {:.1} MiB (peak VmHWM {:.1} MiB) after loading; {:.1} MiB after {} checks",
                    rss as f64 / 1024.0,
                    hwm as f64 / 1024.0,
                    after as f64 / 1024.0,
                    d.checks
                ));
            }
            self.results.keys.push(KeysRun {
                keys: count,
                bytes: d.keys_file_bytes(),
                startup: d.startup,
                rss_kib,
                rss_after_checks_kib: after,
                checks: d.checks,
                latency: Some(st),
                reload: None,
            });
            if count == big {
                self.results.rss_kib = rss_kib;
                self.results.rss_after_checks_kib = after;
                if self.wants("reload") {
                    if let Err(e) = self.reload_under_load(&mut d) {
                        self.out.line(format!("reload failed: {e}\n{}", d.log_tail(2000)));
                        self.stop_daemon(d)?;
                        return Err(e);
                    }
                } else {
                    self.skip("reload", "not selected with --only");
                }
            }
            self.stop_daemon(d)?;
        }
        if self.args.quick {
            self.results.skipped.push((
                "minimal_keys".into(),
                "--quick does not measure RSS and reload with minimal keys".into(),
            ));
        } else {
            let d = self.keys_daemon(big, Fillers::Minimal)?;
            std::thread::sleep(RSS_SETTLE);
            let rss_kib = d.rss_kib();
            let reload = d
                .reloader()
                .reload(Duration::from_secs(60))
                .map(|r| r.total())
                .ok();
            self.out.line(format!(
                "minimal keys   {big} keys with only qot:read: VmRSS {:.1} MiB (peak {:.1} MiB), reload without load {:.1} ms",
                rss_kib.map(|r| r.0 as f64 / 1024.0).unwrap_or(f64::NAN),
                rss_kib.map(|r| r.1 as f64 / 1024.0).unwrap_or(f64::NAN),
                reload.map(|r| r.as_secs_f64() * 1000.0).unwrap_or(f64::NAN),
            ));
            self.results.minimal = Some(KeysRun {
                keys: big,
                bytes: d.keys_file_bytes(),
                startup: d.startup,
                rss_kib,
                rss_after_checks_kib: None,
                checks: 0,
                latency: None,
                reload,
            });
            self.stop_daemon(d)?;
        }
        Ok(())
    }

    /// Starts a daemon with `count` keys (the benchmark's and `fillers`).
    fn keys_daemon(&self, count: usize, fillers: Fillers) -> Result<Daemon, String> {
        let d = Daemon::start(&self.authd_bin, count, fillers, &self.token, self.host.as_ref())?;
        self.out.line(format!(
            "futu-authd     pid {}, {count} keys ({}keys.json {:.1} MiB), ready in {:.0} ms",
            d.pid(),
            if fillers == Fillers::Minimal {
                "minimal, "
            } else {
                ""
            },
            d.keys_file_bytes() as f64 / (1 << 20) as f64,
            d.startup.as_secs_f64() * 1000.0
        ));
        Ok(d)
    }

    /// Dry-run order checks on N×D from before the first SIGHUP to after the last READY=1.
    fn reload_under_load(&mut self, d: &mut Daemon) -> Result<(), String> {
        let reloads = if self.args.quick { 1 } else { 3 };
        let stop = CancellationToken::new();
        let reloader = d.reloader();
        let cancel = stop.clone();
        let settle = self.plan.warmup + Duration::from_millis(500);
        let thread = std::thread::spawn(move || {
            let _stop_load = cancel.drop_guard();
            std::thread::sleep(settle);
            let mut done = Vec::new();
            for _ in 0..reloads {
                let r = reloader.reload(Duration::from_secs(60));
                let failed = r.is_err();
                done.push(r);
                if failed {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            done
        });
        // Dry-run order checks: every rule is decided, nothing is written to the ledger log,
        // so its compactions (see ledger_note) do not mix with the reload.
        let wire = FutuWire::dry_run(CheckKind::Order, &self.token);
        let st = self.load("reload", wire, &d.socket, d.pid(), self.plan, Some(stop));
        let done = thread
            .join()
            .map_err(|_| "the reload thread panicked".to_owned())?;
        let st = st?;
        d.checks += st.decisions();
        for r in done {
            let r = r?;
            let in_window = st.failures_between(r.sent, r.ready + Duration::from_millis(50));
            self.results.reload_failed_in_window += in_window;
            self.out.line(format!(
                "reload         {} keys: SIGHUP → READY=1 {:.1} ms (RELOADING=1 → READY=1 {:.1} ms), {} failed checks during it",
                d.keys,
                r.total().as_secs_f64() * 1000.0,
                r.reloading().as_secs_f64() * 1000.0,
                in_window
            ));
            self.results.reloads.push(r);
        }
        self.out.line(describe("reload load", &st, &self.shape()));
        self.results.reload_failed = st.failures();
        self.results.reload_load = Some(st);
        Ok(())
    }

    fn report(&self, elapsed: Duration) {
        let r = &self.results;
        let tput = |s: &Option<Stats>| s.as_ref().map(Stats::throughput);
        let q = |s: &Option<Stats>, p: f64| s.as_ref().map(|s| s.quantile_us(p));
        let ratios = [
            (
                "authd_echo_throughput",
                ratio(tput(&r.authd_order), tput(&r.echo)),
            ),
            ("authd_echo_p50", ratio(q(&r.authd_order, 0.5), q(&r.echo, 0.5))),
            ("authd_echo_p99", ratio(q(&r.authd_order, 0.99), q(&r.echo, 0.99))),
            (
                "authd_redis_throughput",
                ratio(tput(&r.authd_order), tput(&r.redis_order)),
            ),
            (
                "depth1_authd_echo_p50",
                ratio(q(&r.depth1_authd, 0.5), q(&r.depth1_echo, 0.5)),
            ),
            (
                "depth1_authd_echo_p99",
                ratio(q(&r.depth1_authd, 0.99), q(&r.depth1_echo, 0.99)),
            ),
            (
                "connections_1000_authd_echo",
                ratio(tput(&r.many_connections), tput(&r.many_connections_echo)),
            ),
        ];
        let many_ratio = ratio(tput(&r.many_connections), tput(&r.authd_order));
        let many_echo_ratio = ratio(tput(&r.many_connections_echo), tput(&r.echo));
        let key_p50 = |n: usize| {
            r.keys
                .iter()
                .find(|k| k.keys == n)
                .and_then(|k| k.latency.as_ref())
                .map(|st| st.quantile_us(0.5))
        };
        let big = self.args.big_keys.max(1);
        let keys_ratio = ratio(key_p50(big), key_p50(1));
        let reload_max = r.reloads.iter().map(|x| x.total()).max();
        let shown = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_else(|| "n/a".into());

        self.out.line("");
        self.out.line(
            "authd = the order-write check (Trd_PlaceOrder with every limit); ratios against echo and redis:",
        );
        for (name, v) in &ratios {
            self.out.line(format!("ratio          {name:<24} {}", shown(*v)));
        }
        self.out.line("targets (measured, not asserted):");
        let target = |label: &str, ok: Option<bool>| {
            let verdict = match ok {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "not measured",
            };
            self.out.line(format!("  {label:<58} {verdict}"));
        };
        target("authd ≥ 0.4× echo throughput", ratios[0].1.map(|v| v >= 0.4));
        target("authd ≥ 3× redis throughput", ratios[3].1.map(|v| v >= 3.0));
        target(
            &format!(
                "p50 with {big} keys within 10 % of 1 key (ratio {})",
                shown(keys_ratio)
            ),
            keys_ratio.map(|v| v <= 1.1),
        );
        target(
            &format!("≤ 40 MiB RSS with {big} keys"),
            r.rss_kib.map(|(rss, _)| rss as f64 / 1024.0 <= 40.0),
        );
        target(
            &format!("reload of {big} keys under load ≤ 400 ms with zero failed checks"),
            reload_max.map(|m| m <= Duration::from_millis(400) && r.reload_failed == 0),
        );
        target("authd 1×1 p50 ≤ 1.1× echo 1×1 p50", ratios[4].1.map(|v| v <= 1.1));
        target(
            "authd 1×1 p99 ≤ 1.25× echo 1×1 p99",
            ratios[5].1.map(|v| v <= 1.25),
        );
        target(
            &format!(
                "authd at {MANY_CONNECTIONS} × 1 ≥ 0.7× echo at {MANY_CONNECTIONS} × 1 (ratio {})",
                shown(ratios[6].1)
            ),
            ratios[6].1.map(|v| v >= 0.7),
        );
        for (label, ok) in self.pg_targets() {
            target(&label, ok);
        }
        self.out.line(format!(
            "checks         {} answered with a decision, {} audit lines{}",
            r.checks,
            r.audit_lines,
            if r.audit_mismatch { "  !!! MISMATCH" } else { "" }
        ));
        self.out
            .line(format!("total time     {:.1} s", elapsed.as_secs_f64()));

        let mut j = Json::obj();
        j.set("echo", summary_json(r.echo.as_ref()))
            .set("authd", summary_json(r.authd_order.as_ref()))
            .set("redis", summary_json(r.redis_order.as_ref()));
        let mut rj = Json::obj();
        for (name, v) in &ratios {
            rj.set(name, Json::opt(*v, 3));
        }
        j.set("ratios", rj).set("checks", Json::Int(r.checks));
        let mut cj = Json::obj();
        cj.set("connections", Json::Int(MANY_CONNECTIONS as u64))
            .set("depth", Json::Int(1))
            .set("throughput_ratio", Json::opt(many_ratio, 3))
            .set("stats", stats_json(r.many_connections.as_ref()))
            .set("echo_throughput_ratio", Json::opt(many_echo_ratio, 3))
            .set("echo_stats", stats_json(r.many_connections_echo.as_ref()));
        j.set("connections_1000", cj)
            .set("depth1_echo", stats_json(r.depth1_echo.as_ref()))
            .set("depth1_authd_order", stats_json(r.depth1_authd.as_ref()));
        j.set("audit_lines", Json::Int(r.audit_lines))
            .set("audit_equal", Json::Bool(!r.audit_mismatch))
            .set("unclean_stops", Json::Int(r.unclean_stops))
            .set(
                "ledger_over_compaction_threshold",
                Json::Bool(r.ledger_over_threshold),
            )
            .set("echo_detail", stats_json(r.echo.as_ref()))
            .set("authd_order", stats_json(r.authd_order.as_ref()))
            .set("authd_order_dry_run", stats_json(r.authd_order_dry_run.as_ref()))
            .set("authd_read", stats_json(r.authd_read.as_ref()))
            .set("redis_order", stats_json(r.redis_order.as_ref()))
            .set("redis_read", stats_json(r.redis_read.as_ref()))
            .set("client", stats_json(r.client.as_ref()));
        let keys_run = |k: &KeysRun| {
            let mut o = Json::obj();
            if let Some(st) = &k.latency {
                o.set("p50_us", Json::Num(st.quantile_us(0.5), 1))
                    .set("p99_us", Json::Num(st.quantile_us(0.99), 1))
                    .set("throughput", Json::Num(st.throughput(), 0));
            }
            o.set("keys_json_bytes", Json::Int(k.bytes))
                .set("startup_ms", Json::Num(k.startup.as_secs_f64() * 1000.0, 1))
                .set("rss_mib", Json::opt(k.rss_kib.map(|r| r.0 as f64 / 1024.0), 1))
                .set(
                    "rss_hwm_mib",
                    Json::opt(k.rss_kib.map(|r| r.1 as f64 / 1024.0), 1),
                )
                .set(
                    "rss_after_checks_mib",
                    Json::opt(k.rss_after_checks_kib.map(|r| r.0 as f64 / 1024.0), 1),
                )
                .set("checks_before_rss_after", Json::Int(k.checks));
            if let Some(reload) = k.reload {
                o.set("reload_ms", Json::Num(reload.as_secs_f64() * 1000.0, 1));
            }
            o
        };
        let mut kj = Json::obj();
        for k in &r.keys {
            kj.set(&k.keys.to_string(), keys_run(k));
        }
        kj.set("p50_ratio_big_to_1", Json::opt(keys_ratio, 3));
        j.set("keys", kj);
        j.set(
            "rss_mib",
            Json::opt(r.rss_kib.map(|(rss, _)| rss as f64 / 1024.0), 1),
        )
        .set(
            "rss_hwm_mib",
            Json::opt(r.rss_kib.map(|(_, hwm)| hwm as f64 / 1024.0), 1),
        )
        .set(
            "rss_after_checks_mib",
            Json::opt(r.rss_after_checks_kib.map(|(rss, _)| rss as f64 / 1024.0), 1),
        )
        .set(
            "minimal_keys",
            match &r.minimal {
                Some(k) => keys_run(k),
                None => Json::Null,
            },
        );
        let mut re = Json::obj();
        re.set("keys", Json::Int(big as u64))
            .set("ms", Json::opt(reload_max.map(|m| m.as_secs_f64() * 1000.0), 1))
            .set(
                "each_ms",
                Json::Arr(
                    r.reloads
                        .iter()
                        .map(|x| Json::Num(x.total().as_secs_f64() * 1000.0, 1))
                        .collect(),
                ),
            )
            .set(
                "failed_checks",
                if r.reload_load.is_some() {
                    Json::Int(r.reload_failed)
                } else {
                    Json::Null
                },
            )
            .set(
                "failed_checks_during_reloads",
                Json::Int(r.reload_failed_in_window as u64),
            )
            .set("load", stats_json(r.reload_load.as_ref()));
        j.set("reload", re);
        j.set("pg", self.pg_json());
        let mut cfg = Json::obj();
        cfg.set("connections", Json::Int(self.plan.connections as u64))
            .set("depth", Json::Int(self.plan.depth as u64))
            .set("duration_s", Json::Num(self.plan.duration.as_secs_f64(), 1))
            .set("warmup_s", Json::Num(self.plan.warmup.as_secs_f64(), 1))
            .set("quick", Json::Bool(self.args.quick))
            .set(
                "client_runtime",
                Json::Str(if self.args.client_threads == 0 {
                    "current_thread".into()
                } else {
                    format!("multi_thread({})", self.args.client_threads)
                }),
            )
            .set("elapsed_s", Json::Num(elapsed.as_secs_f64(), 1));
        j.set("config", cfg);
        let mut sk = Json::obj();
        for (name, why) in &r.skipped {
            sk.set(name, Json::Str(why.clone()));
        }
        j.set("skipped", sk);
        let mut line = String::new();
        j.write(&mut line);
        println!("{line}");
    }
}

/// Adds up runs made in turns: counts, histograms, windows and CPU times (the timeline,
/// whose ticks would overlap, is dropped).
fn combine(slices: Vec<Stats>) -> Stats {
    let mut total = Stats::default();
    let mut cpu: Option<(Duration, Duration)> = Some((Duration::ZERO, Duration::ZERO));
    for st in slices {
        total.window += st.window;
        cpu = match (cpu, st.cpu) {
            (Some((s, c)), Some((s1, c1))) => Some((s + s1, c + c1)),
            _ => None,
        };
        total.merge(st);
    }
    total.timeline.clear();
    total.cpu = cpu;
    total
}

/// `perf record --call-graph dwarf` on `pid` until the guard is terminated.
fn start_perf(file: &Path, pid: u32) -> Result<ChildGuard, String> {
    let child = Command::new("perf")
        .args([
            "record",
            "-F",
            "499",
            "--call-graph",
            "dwarf,16384",
            "-p",
            &pid.to_string(),
            "-o",
        ])
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting perf: {e}"))?;
    std::thread::sleep(Duration::from_millis(300));
    Ok(ChildGuard::new("perf", child))
}
