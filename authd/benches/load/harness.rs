//! The client harness every server is measured with: N connections, each keeping D
//! requests in flight (write D, then one more per response read), answers matched in
//! order, each request's latency (written → its answer read) in an HDR histogram, and
//! throughput = answers read in the measuring window / the window's length.
//!
//! What differs between servers is only a [`Wire`]: how a request is written, how an
//! answer is read, and what an answer means.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Display;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::{FutureExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio_util::codec::{Decoder, FramedRead};
use tokio_util::sync::CancellationToken;

/// What an answer meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The check passed.
    Allow,
    /// The check was refused, with this reason code.
    Deny(Cow<'static, str>),
    /// No decision: an error answer, an answer out of order, a broken connection.
    Error(String),
}

/// Why a run could not be made. The rest of the benchmark reports errors as text: it
/// takes this one as its line ([`From`] below).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The server's socket could not be connected to.
    #[error("connect {}: {source}", socket.display())]
    Connect {
        /// The socket.
        socket: std::path::PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The hello could not be written.
    #[error("hello: {0}")]
    Hello(#[source] std::io::Error),
    /// The answer to the hello could not be read (the decoder's error, as text: each
    /// wire has its own type).
    #[error("hello answer: {0}")]
    HelloAnswer(String),
    /// The server closed the connection instead of answering the hello.
    #[error("the server closed the connection after hello")]
    ClosedAfterHello,
    /// The server answered the hello with something else than a welcome.
    #[error("hello refused: {0}")]
    HelloRefused(String),
    /// A connection's task panicked or was cancelled.
    #[error("connection task: {0}")]
    Task(#[source] tokio::task::JoinError),
}

impl From<HarnessError> for String {
    fn from(e: HarnessError) -> String {
        e.to_string()
    }
}

/// One server's protocol, as the harness needs it.
pub trait Wire: Send + Sync + 'static {
    /// Reads answers.
    type Decoder: Decoder<Item = Self::Resp, Error = Self::DecodeError> + Send + 'static;
    /// An answer.
    type Resp: Send + 'static;
    /// The decoder's error.
    type DecodeError: Display + From<std::io::Error> + Send + 'static;

    /// A fresh decoder for one connection.
    fn decoder(&self) -> Self::Decoder;
    /// Bytes to send once on a new connection (futu's Hello), whose one answer must be
    /// accepted by [`Wire::accept_hello`] before the load starts.
    fn hello(&self) -> Option<Vec<u8>>;
    /// Whether the answer to the hello is the expected one ([`HarnessError::HelloRefused`]
    /// when not).
    fn accept_hello(&self, resp: &Self::Resp) -> Result<(), HarnessError>;
    /// Appends request number `seq` (1, 2, … on each connection) of connection `conn`.
    fn encode(&self, conn: usize, seq: u64, out: &mut BytesMut);
    /// What the answer to request `seq` means.
    fn judge(&self, seq: u64, resp: &Self::Resp) -> Verdict;
}

/// How much load, for how long.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Connections (or, for the client library, clients).
    pub connections: usize,
    /// Requests in flight per connection.
    pub depth: usize,
    /// Load before the measuring window opens (not counted).
    pub warmup: Duration,
    /// The measuring window; ignored when the run is stopped by a token instead.
    pub duration: Duration,
}

/// Failures kept with their time, for counting those inside a reload.
const FAILURE_TIMES_KEPT: usize = 100_000;

/// What one run saw.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latency of each request answered in the window, in nanoseconds.
    pub hist: Histogram<u64>,
    /// Answers read in the window.
    pub completed: u64,
    /// The window's length.
    pub window: Duration,
    /// Requests written, warm-up and drain included.
    pub sent: u64,
    /// Allow answers (whole run).
    pub allowed: u64,
    /// Deny answers (whole run), by reason.
    pub denied: BTreeMap<String, u64>,
    /// Errors (whole run): error answers, answers out of order, requests lost with a
    /// broken connection.
    pub errors: u64,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
    /// When each deny or error was seen (the first [`FAILURE_TIMES_KEPT`]).
    pub failure_times: Vec<Instant>,
    /// The slowest answer of the whole run (ns).
    pub max_ns: u64,
    /// Answers per [`TICK`] of the window, to see stalls.
    pub timeline: Vec<u64>,
    /// CPU time the server and the harness used during the whole run (warm-up and
    /// drain included), when measured.
    pub cpu: Option<(Duration, Duration)>,
}

/// The timeline's resolution.
pub const TICK: Duration = Duration::from_millis(100);

impl Default for Stats {
    fn default() -> Self {
        Stats {
            hist: Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds"),
            completed: 0,
            window: Duration::ZERO,
            sent: 0,
            allowed: 0,
            denied: BTreeMap::new(),
            errors: 0,
            first_error: None,
            failure_times: Vec::new(),
            max_ns: 0,
            timeline: Vec::new(),
            cpu: None,
        }
    }
}

impl Stats {
    /// Counts one answer read at `at`; those in the window (`window_from` is its start)
    /// also go to the histogram, the throughput and the timeline.
    pub fn record(&mut self, verdict: Verdict, latency: Duration, at: Instant, window_from: Option<Instant>) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.max_ns = self.max_ns.max(ns);
        if let Some(from) = window_from {
            self.completed += 1;
            self.hist.saturating_record(ns.max(1));
            let tick = (at.saturating_duration_since(from).as_nanos() / TICK.as_nanos()) as usize;
            if self.timeline.len() <= tick {
                self.timeline.resize(tick + 1, 0);
            }
            self.timeline[tick] += 1;
        }
        match verdict {
            Verdict::Allow => self.allowed += 1,
            Verdict::Deny(reason) => {
                *self.denied.entry(reason.into_owned()).or_default() += 1;
                self.failed_at(at);
            }
            Verdict::Error(e) => self.error(e, at),
        }
    }

    /// Counts an error that is not an answer (e.g. a request lost with its connection).
    pub fn error(&mut self, e: String, at: Instant) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
        self.failed_at(at);
    }

    fn failed_at(&mut self, at: Instant) {
        if self.failure_times.len() < FAILURE_TIMES_KEPT {
            self.failure_times.push(at);
        }
    }

    /// Adds another run's (or connection's) figures.
    pub fn merge(&mut self, other: Stats) {
        self.hist
            .add(&other.hist)
            .expect("histograms with the same bounds");
        self.completed += other.completed;
        self.sent += other.sent;
        self.allowed += other.allowed;
        for (r, n) in other.denied {
            *self.denied.entry(r).or_default() += n;
        }
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.failure_times.extend(other.failure_times);
        self.max_ns = self.max_ns.max(other.max_ns);
        if self.timeline.len() < other.timeline.len() {
            self.timeline.resize(other.timeline.len(), 0);
        }
        for (mine, theirs) in self.timeline.iter_mut().zip(other.timeline) {
            *mine += theirs;
        }
    }

    /// The fewest answers in one whole [`TICK`] of the window, and how many whole ticks
    /// had none (a stall); `None` without a timeline (runs made in turns).
    pub fn slowest_tick(&self) -> Option<(u64, usize)> {
        if self.timeline.is_empty() {
            return None;
        }
        let whole = (self.window.as_nanos() / TICK.as_nanos()) as usize;
        let ticks = || (0..whole).map(|i| self.timeline.get(i).copied().unwrap_or(0));
        Some((ticks().min().unwrap_or(0), ticks().filter(|n| *n == 0).count()))
    }

    /// Answers that were decisions (allow or deny).
    pub fn decisions(&self) -> u64 {
        self.allowed + self.denied.values().sum::<u64>()
    }

    /// CPU microseconds per request of the server and of the harness.
    pub fn cpu_us_per_request(&self) -> Option<(f64, f64)> {
        let (server, client) = self.cpu?;
        let n = self.sent.max(1) as f64;
        Some((server.as_secs_f64() * 1e6 / n, client.as_secs_f64() * 1e6 / n))
    }

    /// Denies plus errors.
    pub fn failures(&self) -> u64 {
        self.denied.values().sum::<u64>() + self.errors
    }

    /// Answers per second in the window.
    pub fn throughput(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            self.completed as f64 / secs
        } else {
            0.0
        }
    }

    /// A latency quantile, in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    /// Denies and errors seen between `from` and `to`.
    pub fn failures_between(&self, from: Instant, to: Instant) -> usize {
        self.failure_times
            .iter()
            .filter(|t| **t >= from && **t <= to)
            .count()
    }
}

/// The run's clock: when the window opens, and whether it has closed.
pub struct Window {
    /// When the window opens (after the warm-up).
    pub from: Instant,
    stopping: AtomicBool,
}

impl Window {
    /// A window opening after `warmup`.
    pub fn new(warmup: Duration) -> Arc<Window> {
        Arc::new(Window {
            from: Instant::now() + warmup,
            stopping: AtomicBool::new(false),
        })
    }

    /// Whether the window has closed (no new requests are written).
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The window's start if an answer read at `at` counts.
    pub fn counts(&self, at: Instant) -> Option<Instant> {
        (at >= self.from && !self.stopping()).then_some(self.from)
    }

    /// Closes the window when `stop` fires, or after the plan's warm-up and duration;
    /// returns when it closed.
    pub async fn close_after(&self, plan: &Plan, stop: Option<CancellationToken>) -> Instant {
        match stop {
            Some(token) => token.cancelled().await,
            None => tokio::time::sleep_until((self.from + plan.duration).into()).await,
        }
        let at = Instant::now();
        self.stopping.store(true, Ordering::Release);
        at
    }
}

/// Opens one connection and passes the wire's hello.
async fn connect<W: Wire>(
    wire: &W,
    socket: &Path,
) -> Result<FramedRead<UnixStream, W::Decoder>, HarnessError> {
    let mut stream = UnixStream::connect(socket)
        .await
        .map_err(|source| HarnessError::Connect {
            socket: socket.to_owned(),
            source,
        })?;
    if let Some(hello) = wire.hello() {
        stream.write_all(&hello).await.map_err(HarnessError::Hello)?;
        let mut reader = FramedRead::new(stream, wire.decoder());
        match reader.next().await {
            Some(Ok(resp)) => wire.accept_hello(&resp)?,
            Some(Err(e)) => return Err(HarnessError::HelloAnswer(e.to_string())),
            None => return Err(HarnessError::ClosedAfterHello),
        }
        return Ok(reader);
    }
    Ok(FramedRead::new(stream, wire.decoder()))
}

/// Runs `plan` against the server at `socket`. With `stop`, the window stays open until
/// it is cancelled (the plan's duration is then ignored).
pub async fn run<W: Wire>(
    wire: Arc<W>,
    socket: &Path,
    plan: Plan,
    stop: Option<CancellationToken>,
) -> Result<Stats, HarnessError> {
    let mut readers = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        readers.push(connect(&*wire, socket).await?);
    }
    let window = Window::new(plan.warmup);
    let tasks: Vec<_> = readers
        .into_iter()
        .enumerate()
        .map(|(conn, reader)| {
            let wire = Arc::clone(&wire);
            let window = Arc::clone(&window);
            tokio::spawn(drive(wire, conn, reader, plan.depth, window))
        })
        .collect();
    let closed = window.close_after(&plan, stop).await;
    let mut total = Stats::default();
    for t in tasks {
        total.merge(t.await.map_err(HarnessError::Task)?);
    }
    total.window = closed.saturating_duration_since(window.from);
    Ok(total)
}

/// One connection: keeps `depth` requests in flight until the window closes, then reads
/// the answers still owed.
async fn drive<W: Wire>(
    wire: Arc<W>,
    conn: usize,
    reader: FramedRead<UnixStream, W::Decoder>,
    depth: usize,
    window: Arc<Window>,
) -> Stats {
    let mut st = Stats::default();
    let parts = reader.into_parts();
    let mut stream = parts.io;
    let (rd, mut wr) = stream.split();
    let mut reader = FramedRead::with_capacity(rd, wire.decoder(), 64 * 1024);
    // Whatever came after the hello's answer (nothing, normally) is read first.
    reader.read_buffer_mut().extend_from_slice(&parts.read_buf);
    let mut out = BytesMut::with_capacity(16 * 1024);
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::with_capacity(depth + 1);
    let mut seq = 1u64;
    let now = Instant::now();
    for _ in 0..depth {
        wire.encode(conn, seq, &mut out);
        in_flight.push_back((seq, now));
        seq += 1;
    }
    st.sent += depth as u64;
    if let Err(e) = wr.write_all(&out).await {
        lose(&mut st, &mut in_flight, format!("write: {e}"));
        return st;
    }
    out.clear();
    loop {
        let stopping = window.stopping();
        let mut next = Some(reader.next().await);
        while let Some(item) = next {
            let resp = match item {
                Some(Ok(resp)) => resp,
                Some(Err(e)) => {
                    lose(&mut st, &mut in_flight, format!("read: {e}"));
                    return st;
                }
                None => {
                    lose(&mut st, &mut in_flight, "the server closed the connection".into());
                    return st;
                }
            };
            let at = Instant::now();
            let Some((s, sent_at)) = in_flight.pop_front() else {
                st.error("an answer nobody asked for".into(), at);
                return st;
            };
            let verdict = wire.judge(s, &resp);
            st.record(verdict, at - sent_at, at, window.counts(at));
            if !stopping {
                wire.encode(conn, seq, &mut out);
                in_flight.push_back((seq, at));
                seq += 1;
                st.sent += 1;
            }
            next = reader.next().now_or_never();
        }
        if !out.is_empty() {
            if let Err(e) = wr.write_all(&out).await {
                lose(&mut st, &mut in_flight, format!("write: {e}"));
                return st;
            }
            out.clear();
        }
        if stopping && in_flight.is_empty() {
            return st;
        }
    }
}

fn lose(st: &mut Stats, in_flight: &mut VecDeque<(u64, Instant)>, why: String) {
    let at = Instant::now();
    for _ in in_flight.drain(..) {
        st.error(why.clone(), at);
    }
}
