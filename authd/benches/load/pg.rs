//! The limit ledger on PostgreSQL (`--ledger-url`) under load, next to the local journal:
//! a throwaway cluster on this machine (the tests' harness, `tests/src/postgres.rs`), one
//! and then two daemons on it, the order check's throughput and latency, and a database
//! round trip for scale. Skipped, with the reason, when PostgreSQL is not installed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;

use crate::daemon::{Daemon, Fillers};
use crate::futu::{CheckKind, FutuWire};
use crate::harness::{self, Plan, Stats, Verdict};
use crate::postgres::{self, Postgres};
use crate::{combine, describe, procs, stats_json, Bench, Json};

/// What the PostgreSQL scenario measured.
#[derive(Default)]
pub struct PgResults {
    /// The cluster's durability settings, as run.
    pub settings: String,
    /// A prepared `SELECT 1` from this process, one at a time: a read's round trip.
    pub round_trip: Option<Stats>,
    /// A prepared one-row `UPDATE`, one at a time, each its own transaction: a durable
    /// write's round trip (with `synchronous_commit = on`, a WAL flush each).
    pub commit_round_trip: Option<Stats>,
    /// The order check on the local journal (when the authd scenario did not measure it).
    pub local_order: Option<Stats>,
    /// The order check with one daemon on the database.
    pub one: Option<Stats>,
    /// The order check with two daemons on the database, each under the load of `one`.
    pub two: Option<Stats>,
    /// Depth 1, one connection, in turns: the local journal…
    pub local_depth1: Option<Stats>,
    /// …and the database.
    pub pg_depth1: Option<Stats>,
}

/// `synchronous_commit`: `on` acknowledges a commit once its WAL is flushed to disk (the
/// README's deployment, with a synchronous standby), `off` once it is written to the WAL
/// buffers (flushed within 3 × wal_writer_delay = 0.6 s, about the local journal's
/// once-a-second flush).
fn settings(synchronous_commit: &str) -> Vec<String> {
    vec![
        format!("synchronous_commit = {synchronous_commit}"),
        "shared_buffers = 256MB".into(),
        "max_wal_size = 2GB".into(),
        "checkpoint_timeout = 15min".into(),
    ]
}

impl Bench {
    /// A daemon with the benchmark's key whose ledger is at `url`.
    fn pg_daemon(&self, url: &str) -> Result<Daemon, String> {
        let args = [
            "--ledger-url".to_owned(),
            url.to_owned(),
            "--ledger-timeout".to_owned(),
            format!("{}ms", self.args.pg_timeout_ms),
        ];
        let d = Daemon::start_with_args(
            &self.authd_bin,
            1,
            Fillers::EveryLimit,
            &self.token,
            self.host.as_ref(),
            &args,
        )?;
        self.out.line(format!(
            "futu-authd     pid {}, 1 key, ledger on PostgreSQL, ready in {:.0} ms",
            d.pid(),
            d.startup.as_secs_f64() * 1000.0
        ));
        Ok(d)
    }

    /// The PostgreSQL scenario (see the module's documentation).
    pub(crate) fn pg(&mut self) -> Result<(), String> {
        if let Some(why) = postgres::unavailable() {
            self.skip("pg", why);
            return Ok(());
        }
        let lines = settings(&self.args.pg_synchronous_commit);
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let pg = Postgres::start(&refs)?;
        let postmaster = pg.postmaster_pid();
        if let Some(pid) = postmaster {
            procs::watch_pid(pid);
        }
        let result = self.pg_runs(&pg, lines.join(", "));
        if let Some(pid) = postmaster {
            procs::forget_pid(pid);
        }
        drop(pg);
        result
    }

    fn pg_runs(&mut self, pg: &Postgres, settings: String) -> Result<(), String> {
        let url = pg.url();
        self.out.line(format!(
            "postgresql     throwaway cluster on this machine, Unix socket, fsync on, {settings}"
        ));
        let mut r = PgResults {
            settings,
            ..PgResults::default()
        };
        pg.psql("CREATE TABLE bench_round_trip (n bigint); INSERT INTO bench_round_trip VALUES (0)")?;
        for (label, sql, what) in [
            ("db read", "SELECT 1", "prepared SELECT 1"),
            (
                "db commit",
                "UPDATE bench_round_trip SET n = n + 1",
                "prepared one-row UPDATE, each committed",
            ),
        ] {
            let rtt = self.rt.block_on(round_trips(&url, sql, 2000))?;
            self.out.line(format!(
                "{label:<14} round trip p50 {:>8.1} µs   p99 {:>8.1} µs   ({what}, one at a time, {} queries)",
                rtt.quantile_us(0.5),
                rtt.quantile_us(0.99),
                rtt.completed
            ));
            if label == "db read" {
                r.round_trip = Some(rtt);
            } else {
                r.commit_round_trip = Some(rtt);
            }
        }

        if self.results.authd_order.is_none() {
            let mut d = self.fresh_daemon()?;
            let st = self.load(
                "authd-order",
                FutuWire::new(CheckKind::Order, &self.token),
                &d.socket,
                d.pid(),
                self.plan,
                None,
            )?;
            d.checks += st.decisions();
            self.out.line(describe("local order", &st, &self.shape()));
            r.local_order = Some(st);
            self.stop_daemon(d)?;
        }

        let mut d = self.pg_daemon(&url)?;
        let st = self.load(
            "pg-order",
            FutuWire::new(CheckKind::Order, &self.token),
            &d.socket,
            d.pid(),
            self.plan,
            None,
        )?;
        d.checks += st.decisions();
        self.out.line(describe("pg order", &st, &self.shape()));
        r.one = Some(st);
        self.stop_daemon(d)?;
        self.pg_note(pg);
        pg.psql("TRUNCATE futu_ledger.consumptions; TRUNCATE futu_ledger.keys")?;

        let mut d1 = self.pg_daemon(&url)?;
        let mut d2 = self.pg_daemon(&url)?;
        // Each daemon gets the whole load of the one-daemon run (4 × 32 by default).
        let each = self.plan;
        let wire = Arc::new(FutuWire::new(CheckKind::Order, &self.token));
        let pids = [d1.pid(), d2.pid(), std::process::id()];
        let before: Vec<_> = pids.iter().map(|p| procs::cpu_time(*p)).collect();
        let (s1, s2) = self.rt.block_on(async {
            tokio::join!(
                harness::run(Arc::clone(&wire), &d1.socket, each, None),
                harness::run(Arc::clone(&wire), &d2.socket, each, None)
            )
        });
        let after: Vec<_> = pids.iter().map(|p| procs::cpu_time(*p)).collect();
        let (s1, s2) = (s1?, s2?);
        d1.checks += s1.decisions();
        d2.checks += s2.decisions();
        let window = s1.window.max(s2.window);
        let mut st = s1;
        st.merge(s2);
        st.window = window;
        let used = |i: usize| match (before[i], after[i]) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b)),
            _ => None,
        };
        if let (Some(a), Some(b), Some(me)) = (used(0), used(1), used(2)) {
            st.cpu = Some((a + b, me));
        }
        self.out.line(describe(
            "pg order ×2",
            &st,
            &format!(
                "two daemons, {} conn × depth {} each",
                each.connections, each.depth
            ),
        ));
        r.two = Some(st);
        self.stop_daemon(d1)?;
        self.stop_daemon(d2)?;
        self.pg_note(pg);

        // Depth 1 in turns of 0.5 s, so that background load affects both alike.
        let mut local = self.fresh_daemon()?;
        let mut remote = self.pg_daemon(&url)?;
        let turn = Plan {
            connections: 1,
            depth: 1,
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(500),
        };
        let per_daemon = if self.args.quick {
            Duration::from_secs(2)
        } else {
            self.plan.duration.min(Duration::from_secs(5))
        };
        let turns = (per_daemon.as_millis() / turn.duration.as_millis()).max(1) as usize;
        let (mut ls, mut ps) = (Vec::new(), Vec::new());
        for _ in 0..turns {
            for (d, slices, label) in [
                (&mut local, &mut ls, "local-depth1"),
                (&mut remote, &mut ps, "pg-depth1"),
            ] {
                let st = self.load(
                    label,
                    FutuWire::new(CheckKind::Order, &self.token),
                    &d.socket,
                    d.pid(),
                    turn,
                    None,
                )?;
                d.checks += st.decisions();
                slices.push(st);
            }
        }
        let shape = format!("1 conn × depth 1, {turns} turns of 0.5 s");
        let (ls, ps) = (combine(ls), combine(ps));
        self.out.line(describe("local depth 1", &ls, &shape));
        self.out.line(describe("pg depth 1", &ps, &shape));
        r.local_depth1 = Some(ls);
        r.pg_depth1 = Some(ps);
        self.stop_daemon(local)?;
        self.stop_daemon(remote)?;
        self.results.pg = Some(r);
        Ok(())
    }

    /// What the database holds after a run.
    fn pg_note(&self, pg: &Postgres) {
        if let Ok(text) = pg.psql(
            "SELECT count(*), pg_size_pretty(pg_total_relation_size('futu_ledger.consumptions')) FROM futu_ledger.consumptions",
        ) {
            let (rows, size) = text.split_once('|').unwrap_or((&text, "?"));
            self.out
                .line(format!("{:<14} futu_ledger.consumptions: {rows} rows, {size}", ""));
        }
    }
}

/// The scenario's targets: 20 000 order checks a second with one daemon, 80 000 with two
/// and none refused, and an order's p50 at depth 1 within 1.5 committed round trips.
impl Bench {
    pub(crate) fn pg_targets(&self) -> Vec<(String, Option<bool>)> {
        let r = self.results.pg.as_ref();
        let tput = |s: Option<&Stats>| s.map(Stats::throughput);
        let p50 = |s: Option<&Stats>| s.map(|s| s.quantile_us(0.5));
        let one = tput(r.and_then(|r| r.one.as_ref()));
        let two = tput(r.and_then(|r| r.two.as_ref()));
        let (local, remote, rtt) = (
            p50(r.and_then(|r| r.local_depth1.as_ref())),
            p50(r.and_then(|r| r.pg_depth1.as_ref())),
            p50(r.and_then(|r| r.commit_round_trip.as_ref())),
        );
        let ratio = depth1_rtt_ratio(remote, rtt);
        let two_failures = r.and_then(|r| r.two.as_ref()).map(Stats::failures);
        vec![
            (
                "pg ledger ≥ 20 000 order checks/s, one daemon".into(),
                one.map(|v| v >= 20_000.0),
            ),
            (
                format!(
                    "pg ledger, two daemons ≥ 80 000 order checks/s, 0 refused ({}/s, {} refused)",
                    two.map_or("n/a".into(), |v| format!("{v:.0}")),
                    two_failures.map_or("n/a".into(), |v| v.to_string())
                ),
                two.zip(two_failures).map(|(t, f)| t >= 80_000.0 && f == 0),
            ),
            (
                format!(
                    "pg order p50 at depth 1 ≤ 1.5 db commit round trips ({}; local {})",
                    ratio.map_or("n/a".into(), |w| format!("{w:.2}")),
                    local.map_or("n/a".into(), |l| format!("{l:.1} µs"))
                ),
                ratio.map(|w| w <= 1.5),
            ),
        ]
    }

    pub(crate) fn pg_json(&self) -> Json {
        let Some(r) = &self.results.pg else {
            return Json::Null;
        };
        let mut o = Json::obj();
        o.set("settings", Json::Str(r.settings.clone()))
            .set("round_trip", stats_json(r.round_trip.as_ref()))
            .set("commit_round_trip", stats_json(r.commit_round_trip.as_ref()))
            .set(
                "local_order",
                stats_json(r.local_order.as_ref().or(self.results.authd_order.as_ref())),
            )
            .set("one_daemon", stats_json(r.one.as_ref()))
            .set("two_daemons", stats_json(r.two.as_ref()))
            .set("local_depth1", stats_json(r.local_depth1.as_ref()))
            .set("pg_depth1", stats_json(r.pg_depth1.as_ref()))
            .set(
                "depth1_rtt_ratio",
                Json::opt(
                    depth1_rtt_ratio(
                        r.pg_depth1.as_ref().map(|s| s.quantile_us(0.5)),
                        r.commit_round_trip.as_ref().map(|s| s.quantile_us(0.5)),
                    ),
                    3,
                ),
            );
        o
    }
}

/// An order's p50 at depth 1 on PostgreSQL in round trips of the cheapest durable write
/// (a committed one-row `UPDATE`, p50): what the ledger's database costs an order over
/// what any durable write would.
fn depth1_rtt_ratio(order_p50: Option<f64>, commit_p50: Option<f64>) -> Option<f64> {
    match (order_p50, commit_p50) {
        (Some(p), Some(t)) if t > 0.0 => Some(p / t),
        _ => None,
    }
}

/// `n` times the prepared `sql`, one at a time, over the Unix socket at `url`.
async fn round_trips(url: &str, sql: &str, n: usize) -> Result<Stats, String> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| format!("connecting to {url}: {e}"))?;
    let conn = tokio::spawn(connection);
    let statement = client
        .prepare(sql)
        .await
        .map_err(|e| format!("prepare {sql}: {e}"))?;
    let mut st = Stats::default();
    let from = Instant::now();
    for i in 0..n + 100 {
        let sent = Instant::now();
        client
            .execute(&statement, &[])
            .await
            .map_err(|e| format!("{sql}: {e}"))?;
        let at = Instant::now();
        // The first 100 warm the connection up.
        st.record(Verdict::Allow, at - sent, at, (i >= 100).then_some(from));
    }
    st.window = from.elapsed();
    drop(client);
    let _ = conn.await;
    Ok(st)
}
