//! What futu-auth-client's HTTP layer costs a gateway: futu-gw-demo's REST quote route
//! (`GET /api/quote?symbol=HK.00700`) behind the layer — each request checked by a real
//! futu-authd, audited — and without it (`futu-gw-demo --no-auth`), at 1 connection ×
//! depth 1 (the latency one caller sees) and under load (connections × depth): latency
//! percentiles, throughput, and the CPU the gateway and futu-authd spend per request.
//!
//! ```sh
//! make bench        # builds the release binaries, then runs this among the others
//! cargo bench -p futu-gw-demo --bench rest -- [--quick] [--duration SECS] [--rounds N] [--connections N] [--depth D] [--authd-bin PATH] [--gateway-bin PATH] [--gateway-workers N]
//! ```
//!
//! The futu-authd is `target/release/futu-authd` (`cargo build --release -p futu-authd`
//! first, or `--authd-bin`); the gateway is the futu-gw-demo cargo built with this
//! benchmark (or `--gateway-bin`, e.g. another build's, for an A/B on one machine). Both run in a temporary directory and are killed when the benchmark ends.
//! The load generator is HTTP/1.1 over keep-alive connections on one thread, with `depth`
//! requests pipelined on each. Every case runs `rounds` times (3; 1 with `--quick`), the
//! gateway with and the one without the layer taking turns, and the summary gives the
//! medians, then what the layer adds (p50 and gateway CPU at 1×1, the throughput it keeps
//! under load) against its targets. Human-readable lines first; the last line is one JSON
//! object with every figure, the layer's in `"layer"`. A 503 is counted, not hidden: it is the layer failing closed
//! when futu-authd did not answer within the client's 50 ms deadline; any other answer
//! but 200 fails the benchmark.
#![allow(missing_docs)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The key every request carries (ignored by `--no-auth`, so both sides parse the same
/// bytes).
const TOKEN: &str = "fc_be0c4b5e2d9f4c1aa7e3b6d8f0c2e4a6";

/// futu-gw-demo's REST quote route with and without the auth layer (see the file's
/// documentation).
#[derive(Debug, Parser)]
#[command(name = "rest", about)]
struct Args {
    /// ~2 s per case.
    #[arg(long)]
    quick: bool,
    /// Seconds each case measures (default 5, or 2 with --quick).
    #[arg(long)]
    duration: Option<f64>,
    /// Connections of the loaded case.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Requests in flight on each connection of the loaded case (HTTP/1.1 pipelining).
    #[arg(long, default_value_t = 1)]
    depth: usize,
    /// Rounds of every case, the two gateways taking turns; the summary is their medians
    /// (default 3, or 1 with --quick).
    #[arg(long)]
    rounds: Option<usize>,
    /// The futu-authd binary (default: target/release/futu-authd).
    #[arg(long)]
    authd_bin: Option<PathBuf>,
    /// The futu-gw-demo binary (default: the one cargo built with this benchmark), e.g.
    /// another build's, to compare the two on the same machine.
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// The gateway runtime's worker threads (default: its own, one per CPU).
    #[arg(long)]
    gateway_workers: Option<usize>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rest bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A process that is killed when dropped.
struct Proc {
    child: Child,
    what: &'static str,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    fn spawn(mut cmd: Command, what: &'static str) -> Result<Proc, String> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {what}: {e}"))?;
        let stderr: Arc<Mutex<String>> = Arc::default();
        let sink = Arc::clone(&stderr);
        let pipe = child.stderr.take().expect("stderr is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut text = sink.lock().unwrap_or_else(|p| p.into_inner());
                text.push_str(&line);
                text.push('\n');
            }
        });
        Ok(Proc { child, what, stderr })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until `probe` says yes, or fails with the process's stderr.
    fn wait_for<T>(&mut self, what: &str, mut probe: impl FnMut(&Proc) -> Option<T>) -> Result<T, String> {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = probe(self) {
                return Ok(v);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited ({status}) before {what}:\n{}",
                    self.what,
                    self.stderr()
                ));
            }
            if Instant::now() > until {
                return Err(format!(
                    "{} did not get to {what} within 10 s:\n{}",
                    self.what,
                    self.stderr()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User + system CPU time of a process so far.
fn cpu_of(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces) start at field 3.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15: 11 and 12 after the state (field 3).
    let total = ticks(11) + ticks(12);
    // The kernel's USER_HZ is 100 on Linux.
    Duration::from_millis(total * 10)
}

/// futu-authd in `dir`, serving one key with `qot:read`.
fn start_authd(bin: &Path, dir: &Path) -> Result<Proc, String> {
    let hash: String = Sha256::digest(TOKEN.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let keys = serde_json::json!({
        "version": 1,
        "keys": [{"id": "bench", "hash": hash, "scopes": ["qot:read"], "created_at": "2026-01-01T00:00:00Z"}],
    });
    let keys_path = dir.join("keys.json");
    std::fs::write(&keys_path, keys.to_string()).map_err(|e| format!("{}: {e}", keys_path.display()))?;
    std::fs::set_permissions(&keys_path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| format!("chmod {}: {e}", keys_path.display()))?;
    std::fs::write(dir.join("machine-id"), "be0c4b5e2d9f4c1aa7e3b6d8f0c2e4a6\n")
        .map_err(|e| e.to_string())?;
    let socket = dir.join("auth.sock");
    let mut cmd = Command::new(bin);
    cmd.arg("--socket")
        .arg(&socket)
        .arg("--keys-file")
        .arg(&keys_path)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--audit-log")
        .arg(dir.join("audit.jsonl"))
        .arg("--machine-id-file")
        .arg(dir.join("machine-id"))
        .args(["--audit-journald=false", "--metrics-listen", "off"])
        .env("FUTU_AUTHD_LOG", "warn")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS");
    let mut p = Proc::spawn(cmd, "futu-authd")?;
    p.wait_for("listening", |_| {
        std::os::unix::net::UnixStream::connect(&socket).ok()
    })?;
    Ok(p)
}

/// futu-gw-demo (`bin`) serving REST on a free port, with or without the layer.
fn start_gateway(
    bin: &Path,
    workers: Option<usize>,
    socket: &Path,
    auth: bool,
) -> Result<(Proc, SocketAddr), String> {
    let mut cmd = Command::new(bin);
    if let Some(n) = workers {
        cmd.arg("--worker-threads").arg(n.to_string());
    }
    cmd.arg("--auth-socket")
        .arg(socket)
        .args(["--rest-listen", "127.0.0.1:0"])
        .env("FUTU_GW_LOG", "info");
    if !auth {
        cmd.arg("--no-auth");
    }
    let mut p = Proc::spawn(cmd, "futu-gw-demo")?;
    let addr = p.wait_for("listening", |p| {
        let text = p.stderr();
        let line = text.lines().find(|l| l.contains("REST listening on http://"))?;
        line.split("http://").nth(1)?.trim().parse().ok()
    })?;
    Ok((p, addr))
}

/// What one case saw.
struct Figures {
    hist: Histogram<u64>,
    /// Answers read in the window.
    completed: u64,
    /// Requests written, warm-up included (what the CPU is divided by).
    sent: u64,
    /// Answers that were not 200, by status (a 503 is the layer failing closed when
    /// futu-authd did not answer within the client's deadline).
    refused: std::collections::BTreeMap<u16, u64>,
    window: Duration,
    /// CPU µs per request: gateway, futu-authd (0 without it), load generator.
    cpu_us: (f64, f64, f64),
}

impl Figures {
    fn rps(&self) -> f64 {
        self.completed as f64 / self.window.as_secs_f64()
    }

    fn us(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    /// `-`, or e.g. `503×3`.
    fn refused_text(&self) -> String {
        if self.refused.is_empty() {
            return "-".into();
        }
        let parts: Vec<String> = self.refused.iter().map(|(s, n)| format!("{s}×{n}")).collect();
        parts.join(" ")
    }
}

/// One connection's counts.
struct ConnFigures {
    hist: Histogram<u64>,
    completed: u64,
    sent: u64,
    refused: std::collections::BTreeMap<u16, u64>,
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Keeps `depth` requests in flight on one connection until `stop`; answers read after
/// `from` are counted.
async fn drive(
    addr: SocketAddr,
    depth: usize,
    from: Instant,
    stop: Arc<AtomicBool>,
) -> Result<ConnFigures, String> {
    let request = format!(
        "GET /api/quote?symbol=HK.00700 HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    );
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut f = ConnFigures {
        hist: new_hist(),
        completed: 0,
        sent: 0,
        refused: Default::default(),
    };
    let mut in_flight = std::collections::VecDeque::with_capacity(depth);
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut batch = Vec::with_capacity(request.len() * depth);
    for _ in 0..depth {
        batch.extend_from_slice(request.as_bytes());
        in_flight.push_back(Instant::now());
    }
    stream.write_all(&batch).await.map_err(|e| e.to_string())?;
    f.sent += depth as u64;
    let mut chunk = [0u8; 16 * 1024];
    while !in_flight.is_empty() {
        // Read until one whole response is buffered.
        let (status, len) = loop {
            if let Some(parsed) = parse_response(&buf) {
                break parsed;
            }
            let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the gateway closed the connection".into());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        buf.drain(..len);
        let sent_at = in_flight.pop_front().expect("an answer to a request in flight");
        let now = Instant::now();
        if status != 200 {
            *f.refused.entry(status).or_default() += 1;
        }
        if now >= from && !stop.load(Ordering::Relaxed) {
            f.completed += 1;
            f.hist.saturating_record(
                u64::try_from((now - sent_at).as_nanos())
                    .unwrap_or(u64::MAX)
                    .max(1),
            );
        }
        if !stop.load(Ordering::Relaxed) {
            stream
                .write_all(request.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            in_flight.push_back(Instant::now());
            f.sent += 1;
        }
    }
    Ok(f)
}

/// The status and length of the first whole response in `buf`, if there is one.
fn parse_response(buf: &[u8]) -> Option<(u16, usize)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body_len: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    (buf.len() >= head_end + body_len).then_some((status, head_end + body_len))
}

/// One case: `connections` × `depth` against `addr` for `duration` after a warm-up; CPU of
/// the processes in `pids` (gateway, futu-authd) over the whole case.
fn measure(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    connections: usize,
    depth: usize,
    duration: Duration,
    pids: (u32, Option<u32>),
) -> Result<Figures, String> {
    let warmup = Duration::from_millis(500);
    let cpu_before = (
        cpu_of(pids.0),
        pids.1.map_or(Duration::ZERO, cpu_of),
        cpu_of(std::process::id()),
    );
    let started = Instant::now();
    let from = started + warmup;
    let stop = Arc::new(AtomicBool::new(false));
    let per_conn = rt.block_on(async {
        let tasks: Vec<_> = (0..connections)
            .map(|_| tokio::spawn(drive(addr, depth, from, Arc::clone(&stop))))
            .collect();
        tokio::time::sleep_until((from + duration).into()).await;
        stop.store(true, Ordering::Relaxed);
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.map_err(|e| e.to_string())?);
        }
        Ok::<_, String>(out)
    })?;
    let cpu_after = (
        cpu_of(pids.0),
        pids.1.map_or(Duration::ZERO, cpu_of),
        cpu_of(std::process::id()),
    );
    let mut f = Figures {
        hist: new_hist(),
        completed: 0,
        sent: 0,
        refused: Default::default(),
        window: duration,
        cpu_us: (0.0, 0.0, 0.0),
    };
    for c in per_conn {
        let c = c?;
        f.hist.add(&c.hist).expect("histograms with the same bounds");
        f.completed += c.completed;
        f.sent += c.sent;
        for (status, n) in c.refused {
            *f.refused.entry(status).or_default() += n;
        }
    }
    let per_req = |a: Duration, b: Duration| (b - a).as_secs_f64() * 1e6 / f.sent.max(1) as f64;
    f.cpu_us = (
        per_req(cpu_before.0, cpu_after.0),
        per_req(cpu_before.1, cpu_after.1),
        per_req(cpu_before.2, cpu_after.2),
    );
    Ok(f)
}

fn run(args: &Args) -> Result<(), String> {
    let duration = Duration::from_secs_f64(args.duration.unwrap_or(if args.quick { 2.0 } else { 5.0 }));
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    let authd_bin = match &args.authd_bin {
        Some(p) => p.clone(),
        None => {
            // target/release/deps/rest-… → target/release/futu-authd
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let dir = exe.parent().and_then(Path::parent).ok_or("no target directory")?;
            dir.join("futu-authd")
        }
    };
    if !authd_bin.is_file() {
        return Err(format!(
            "{} does not exist: `cargo build --release -p futu-authd` first (make bench does), or pass --authd-bin",
            authd_bin.display()
        ));
    }
    let gateway_bin = args
        .gateway_bin
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_futu-gw-demo")));
    let dir = tempfile::Builder::new()
        .prefix("futu-gw-bench-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let cases = [(1, 1), (args.connections, args.depth)];
    let modes = [("without layer", false), ("with layer", true)];
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "futu-gw-demo REST GET /api/quote with and without the auth layer: {:.0} s a case, {rounds} round(s), {cores} cores",
        duration.as_secs_f64()
    );
    println!(
        "{:<22} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}  {:>13} {:>14}  not 200",
        "case", "req/s", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs", "gw CPU µs/req", "authd µs/req"
    );

    let authd = start_authd(&authd_bin, dir.path())?;
    let socket = dir.path().join("auth.sock");
    // (mode, case) → one Figures a round. Rounds alternate the two gateways, so that a
    // noisy moment of the machine does not fall on one side only.
    let mut results: Vec<((usize, usize), Vec<Figures>)> = Vec::new();
    for round in 1..=rounds {
        if rounds > 1 {
            println!("round {round}");
        }
        for (m, &(mode, auth)) in modes.iter().enumerate() {
            let (gw, addr) = start_gateway(&gateway_bin, args.gateway_workers, &socket, auth)?;
            for (c, &(connections, depth)) in cases.iter().enumerate() {
                let pids = (gw.pid(), auth.then(|| authd.pid()));
                let f = measure(&rt, addr, connections, depth, duration, pids)?;
                print_row(&format!("{mode} {connections}×{depth}"), &f);
                if f.refused.keys().any(|s| *s != 503) {
                    return Err(format!(
                        "{mode} {connections}×{depth}: answers other than 200 and 503 ({}); gateway log:\n{}",
                        f.refused_text(),
                        gw.stderr()
                    ));
                }
                match results.iter_mut().find(|(k, _)| *k == (m, c)) {
                    Some((_, runs)) => runs.push(f),
                    None => results.push(((m, c), vec![f])),
                }
            }
        }
    }

    let median = |m: usize, c: usize, figure: &dyn Fn(&Figures) -> f64| -> f64 {
        let mut v: Vec<f64> = results
            .iter()
            .find(|(k, _)| *k == (m, c))
            .map(|(_, runs)| runs.iter().map(figure).collect())
            .unwrap_or_default();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    if rounds > 1 {
        println!("medians of {rounds} rounds");
    }
    let mut json = Vec::new();
    for (c, &(connections, depth)) in cases.iter().enumerate() {
        let fig = |m: usize, f: &dyn Fn(&Figures) -> f64| median(m, c, f);
        let rps = |f: &Figures| f.rps();
        let p50 = |f: &Figures| f.us(0.5);
        let p99 = |f: &Figures| f.us(0.99);
        let gw_cpu = |f: &Figures| f.cpu_us.0;
        let authd_cpu = |f: &Figures| f.cpu_us.1;
        for (m, (mode, _)) in modes.iter().enumerate() {
            json.push(format!(
                r#"{{"case":"{connections}x{depth}","layer":{},"rps":{:.0},"p50_us":{:.1},"p90_us":{:.1},"p99_us":{:.1},"p999_us":{:.1},"gateway_cpu_us":{:.2},"authd_cpu_us":{:.2},"loadgen_cpu_us":{:.2},"refused_503":{:.0}}}"#,
                m == 1,
                fig(m, &rps),
                fig(m, &p50),
                fig(m, &|f| f.us(0.9)),
                fig(m, &p99),
                fig(m, &|f| f.us(0.999)),
                fig(m, &gw_cpu),
                fig(m, &authd_cpu),
                fig(m, &|f| f.cpu_us.2),
                fig(m, &|f| f.refused.get(&503).copied().unwrap_or(0) as f64),
            ));
            if rounds > 1 {
                println!(
                    "{:<22} {:>9.0} {:>8.1} {:>8} {:>8.1} {:>8} {:>8}  {:>13.1} {:>14.1}",
                    format!("{mode} {connections}×{depth}"),
                    fig(m, &rps),
                    fig(m, &p50),
                    "",
                    fig(m, &p99),
                    "",
                    "",
                    fig(m, &gw_cpu),
                    fig(m, &authd_cpu),
                );
            }
        }
        println!(
            "the layer adds at {connections}×{depth}: p50 {:+.1} µs, p99 {:+.1} µs; CPU {:+.1} µs a request in the gateway and {:.1} µs in futu-authd; throughput {:.0} → {:.0} req/s",
            fig(1, &p50) - fig(0, &p50),
            fig(1, &p99) - fig(0, &p99),
            fig(1, &gw_cpu) - fig(0, &gw_cpu),
            fig(1, &authd_cpu),
            fig(0, &rps),
            fig(1, &rps),
        );
    }
    // What the layer costs, from the medians: at 1×1 the latency and the gateway CPU it
    // adds, under load the share of the throughput it keeps.
    let p50_added = median(1, 0, &|f| f.us(0.5)) - median(0, 0, &|f| f.us(0.5));
    let cpu_added = median(1, 0, &|f| f.cpu_us.0) - median(0, 0, &|f| f.cpu_us.0);
    let loaded = cases.len() - 1;
    let throughput_ratio = median(1, loaded, &|f| f.rps()) / median(0, loaded, &|f| f.rps());
    let (connections, depth) = cases[loaded];
    println!("targets (measured, not asserted):");
    let target = |label: String, ok: bool| {
        println!("  {label:<66} {}", if ok { "met" } else { "MISSED" });
    };
    target(
        format!("layer adds ≤ 15 µs to the p50 at 1×1 (adds {p50_added:+.1} µs)"),
        p50_added <= 15.0,
    );
    target(
        format!("layer adds ≤ 8 µs of gateway CPU a request at 1×1 (adds {cpu_added:+.1} µs)"),
        cpu_added <= 8.0,
    );
    target(
        format!("layer keeps ≥ 0.8 of the throughput at {connections}×{depth} (keeps {throughput_ratio:.2})"),
        throughput_ratio >= 0.8,
    );
    println!(
        r#"{{"bench":"gw-demo-rest","duration_s":{},"rounds":{rounds},"cores":{cores},"cases":[{}],"layer":{{"p50_added_us":{p50_added:.1},"cpu_added_us":{cpu_added:.2},"throughput_ratio_{connections}x{depth}":{throughput_ratio:.3}}}}}"#,
        duration.as_secs_f64(),
        json.join(",")
    );
    Ok(())
}

fn print_row(name: &str, f: &Figures) {
    println!(
        "{:<22} {:>9.0} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.0}  {:>13.1} {:>14.1}  {}",
        name,
        f.rps(),
        f.us(0.5),
        f.us(0.9),
        f.us(0.99),
        f.us(0.999),
        f.hist.max() as f64 / 1000.0,
        f.cpu_us.0,
        f.cpu_us.1,
        f.refused_text()
    );
}
