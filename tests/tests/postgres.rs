//! The limit ledger on PostgreSQL (`--ledger-url`): several futu-authd standing for several
//! gateway hosts share one ledger in a throwaway cluster ([`futu_authd_tests::postgres`]).
//!
//! Each test starts its own cluster (a second or two) and its daemons; each daemon is its
//! own "host": its own directory, socket, keys.json and machine id.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futu_auth_proto::{
    Decision, ErrorKind, LimitFigures, Market, OrderEvent, OrderEventKind, OrderEventOutcome,
    OrderEventRefusal, Reason, Request, Response, TrdSide,
};
use futu_authd_tests::postgres::{self, Postgres};
use futu_authd_tests::{
    away_from_utc_midnight, deny_reason, key_json, metric_value, skip, this_fingerprint, token_for, with,
    Client, Daemon, DaemonBuilder, FakeClock, LIBFAKETIME,
};
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use tempfile::TempDir;

/// The machine id of the second host (the first is the harness's).
const SECOND_MACHINE_ID: &str = "b2b0a1b2c3d4e5f60718293a4b5c6d7f";

/// A cluster, or `None` after saying why the test is skipped.
fn cluster() -> Option<Postgres> {
    if let Some(why) = postgres::unavailable() {
        skip(&why);
        return None;
    }
    Some(Postgres::start_for_tests(&[]).unwrap_or_else(|e| panic!("starting PostgreSQL: {e}")))
}

/// The second host's machine-id file, in a directory the test keeps.
struct SecondHost {
    dir: TempDir,
}

impl SecondHost {
    fn new() -> SecondHost {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::write(dir.path().join("machine-id"), format!("{SECOND_MACHINE_ID}\n"))
            .expect("write machine-id");
        SecondHost { dir }
    }

    fn machine_id_file(&self) -> PathBuf {
        self.dir.path().join("machine-id")
    }

    fn fingerprint() -> String {
        futu_auth_keys::machine::fingerprint_of(SECOND_MACHINE_ID)
            .as_str()
            .to_owned()
    }
}

/// A key for simulated trading bound to both hosts, with `limits`.
fn on_both_hosts(id: &str, token: &str, limits: Value) -> Value {
    let k = with(
        key_json(id, token, &["trade:simulate", "qot:read"]),
        "limits",
        limits,
    );
    with(
        k,
        "allowed_machines",
        json!([this_fingerprint(), SecondHost::fingerprint()]),
    )
}

/// A daemon on the first host using the cluster's ledger, with a deadline every call
/// beats on a loaded machine too (these tests expect no timeout).
fn first_host(pg: &Postgres, keys: &[Value]) -> DaemonBuilder {
    DaemonBuilder::new(keys)
        .arg("--ledger-url")
        .arg(pg.url())
        .arg("--ledger-timeout")
        .arg("1s")
}

/// A daemon on the second host (its own machine id) using the cluster's ledger.
fn second_host(pg: &Postgres, host: &SecondHost, keys: &[Value]) -> DaemonBuilder {
    first_host(pg, keys)
        .arg("--machine-id-file")
        .arg(host.machine_id_file())
}

fn sell(qty: f64, price: f64) -> Option<futu_auth_proto::Order> {
    Some(futu_authd_tests::order(
        Market::HK,
        "HK.00700",
        TrdSide::SELL,
        qty,
        Some(price),
    ))
}

/// `n` orders of `token`, sent at once over `n` connections spread over `daemons` in turn.
async fn at_once(daemons: &[&Daemon], token: &str, n: usize, qty: f64, price: f64) -> Vec<Decision> {
    let mut clients = Vec::new();
    for i in 0..n {
        clients.push(daemons[i % daemons.len()].client().await);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            let barrier = Arc::clone(&barrier);
            let token = token.to_owned();
            tokio::spawn(async move {
                barrier.wait().await;
                c.check(&token, "Trd_PlaceOrder", sell(qty, price)).await
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("client task"));
    }
    out
}

async fn release(c: &mut Client, ticket: u64) -> Response {
    let request_id = c.next_id();
    c.request(Request::Release { request_id, ticket }).await
}

fn ticket_of(d: &Decision) -> u64 {
    match d {
        Decision::Allow { ticket: Some(t), .. } => *t,
        other => panic!("expected an allow with a ticket, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_on_one_database_share_the_rate_window_and_the_daily_cap() {
    let Some(pg) = cluster() else { return };
    away_from_utc_midnight(30);
    let fast = token_for("pg-fast");
    let daily = token_for("pg-daily");
    let keys = [
        on_both_hosts("fast", &fast, json!({ "max_orders_per_minute": 5 })),
        on_both_hosts("daily", &daily, json!({ "max_daily_value": 100 })),
    ];
    let second = SecondHost::new();
    let a = first_host(&pg, &keys).start();
    let b = second_host(&pg, &second, &keys).start();

    let decisions = at_once(&[&a, &b], &fast, 16, 1.0, 1.0).await;
    let allowed = decisions.iter().filter(|d| d.is_allow()).count();
    assert_eq!(allowed, 5, "5 orders a minute across both hosts: {decisions:?}");
    for d in decisions.iter().filter(|d| !d.is_allow()) {
        assert_eq!(deny_reason(d), Reason::Rate, "{d:?}");
    }

    // 40 orders of 3.33 against a cap of 100: exactly 30 fit (99.90), wherever they go.
    let decisions = at_once(&[&a, &b], &daily, 40, 1.0, 3.33).await;
    let allowed = decisions.iter().filter(|d| d.is_allow()).count();
    assert_eq!(allowed, 30, "{decisions:?}");
    for d in decisions.iter().filter(|d| !d.is_allow()) {
        assert_eq!(deny_reason(d), Reason::DailyValue, "{d:?}");
    }
    let mut ca = a.client().await;
    let mut cb = b.client().await;
    assert!(
        cb.check(&daily, "Trd_PlaceOrder", sell(1.0, 0.1))
            .await
            .is_allow(),
        "0.10 still fits"
    );
    let over = ca.check(&daily, "Trd_PlaceOrder", sell(1.0, 0.01)).await;
    assert_eq!(
        deny_reason(&over),
        Reason::DailyValue,
        "100.00 is used to the cent"
    );
    assert_eq!(ca.usage("daily").await.0, 100.0);
    assert_eq!(cb.usage("daily").await.0, 100.0);
    assert_eq!(cb.usage("fast").await.1, 5, "usage shows both hosts' orders");

    // Nothing of it is kept in the state directory.
    assert!(
        !a.dir().join("state").exists() || std::fs::read_dir(a.dir().join("state")).unwrap().next().is_none(),
        "with --ledger-url the state directory stays empty"
    );
    let rows = pg
        .psql("SELECT key_id, count(*), sum(value) FROM futu_ledger.consumptions GROUP BY 1 ORDER BY 1")
        .unwrap();
    assert_eq!(
        rows, "daily|31|10000000000\nfast|5|500000000",
        "the ledger in units of 1e-8: 100.00 and 5.00"
    );
    assert_eq!(
        pg.psql("SELECT max(version) FROM futu_ledger.schema_version")
            .unwrap(),
        "3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_refused_while_postgresql_is_down_and_resume_without_a_restart() {
    let Some(pg) = cluster() else { return };
    let token = token_for("pg-down");
    let keys = [on_both_hosts(
        "down",
        &token,
        json!({ "max_daily_value": 1000000 }),
    )];
    let d = first_host(&pg, &keys).metrics().start();
    let mut c = d.client().await;
    assert!(c.check(&token, "Trd_PlaceOrder", sell(1.0, 1.0)).await.is_allow());

    pg.stop().expect("stopping PostgreSQL");
    for _ in 0..3 {
        let refused = c.check(&token, "Trd_PlaceOrder", sell(1.0, 1.0)).await;
        assert_eq!(deny_reason(&refused), Reason::Internal, "{refused:?}");
        assert!(
            c.check(&token, "Qot_GetBasicQot", None).await.is_allow(),
            "reads never reach the ledger"
        );
    }
    // Refused at once while it is down: the deadline is not waited for.
    let started = Instant::now();
    let refused = c.check(&token, "Trd_PlaceOrder", sell(1.0, 1.0)).await;
    assert_eq!(deny_reason(&refused), Reason::Internal);
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
    d.wait_stderr("orders and releases are refused `internal` until it answers");
    let text = d.metrics_text();
    assert_eq!(
        metric_value(&text, "futu_auth_ledger_up", &[]),
        Some(0.0),
        "{text}"
    );
    assert!(
        metric_value(&text, "futu_auth_ledger_errors_total", &[("kind", "unreachable")]).unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );

    pg.start_again().expect("starting PostgreSQL again");
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if c.check(&token, "Trd_PlaceOrder", sell(1.0, 1.0)).await.is_allow() {
            break;
        }
        assert!(Instant::now() < until, "orders did not resume within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.wait_stderr("answers again");
    // The gauge is set a moment after that line is logged (by a probe, perhaps).
    let up = |m: &str| metric_value(m, "futu_auth_ledger_up", &[]);
    let m = d.wait_metrics(|m| up(m) == Some(1.0));
    assert_eq!(up(&m), Some(1.0), "{m}");
    assert_eq!(
        pg.psql("SELECT count(*) FROM futu_ledger.consumptions").unwrap(),
        "2",
        "only the allowed orders were counted"
    );
}

/// Sends orders one after another until the connection closes or `stop` passes; returns
/// the tickets of the allows.
async fn load(mut c: Client, token: String, stop: Instant) -> Vec<u64> {
    let mut tickets = Vec::new();
    while Instant::now() < stop {
        let check = c.check_request(
            futu_auth_proto::Iface::Rest,
            &token,
            "Trd_PlaceOrder",
            sell(1.0, 1.0),
        );
        let id = check.request_id;
        if c.try_feed(Request::Check(check)).await.is_err() || c.try_flush().await.is_err() {
            break;
        }
        match c.next_frame().await {
            Some(Ok(Response::Decision { request_id, decision })) => {
                assert_eq!(request_id, id);
                if let Decision::Allow { ticket: Some(t), .. } = decision {
                    tickets.push(t);
                }
            }
            Some(Ok(other)) => panic!("unexpected answer {other:?}"),
            Some(Err(_)) | None => break,
        }
    }
    tickets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_consumption_and_any_host_releases_a_ticket_once() {
    let Some(pg) = cluster() else { return };
    away_from_utc_midnight(30);
    let token = token_for("pg-load");
    let keys = [on_both_hosts(
        "load",
        &token,
        json!({ "max_daily_value": 100000000 }),
    )];
    let second = SecondHost::new();
    let mut a = first_host(&pg, &keys).start();
    let b = second_host(&pg, &second, &keys).start();

    let stop = Instant::now() + Duration::from_millis(1200);
    let mut tasks = Vec::new();
    for d in [&a, &b, &a, &b, &a, &b] {
        let c = d.client().await;
        tasks.push(tokio::spawn(load(c, token.clone(), stop)));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.signal(Signal::SIGKILL);
    let mut seen = Vec::new();
    for t in tasks {
        seen.extend(t.await.expect("load task"));
    }
    assert!(seen.len() > 50, "the load ran: {} allows", seen.len());
    let stored: HashSet<u64> = pg
        .psql("SELECT ticket FROM futu_ledger.consumptions")
        .unwrap()
        .lines()
        .map(|l| l.parse::<i64>().unwrap() as u64)
        .collect();
    let lost: Vec<&u64> = seen.iter().filter(|t| !stored.contains(t)).collect();
    assert!(
        lost.is_empty(),
        "{} allowed orders are not in the ledger: {lost:?}",
        lost.len()
    );
    assert!(seen.len() <= stored.len());
    let unique: HashSet<&u64> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "every allow has its own ticket");

    // A ticket the first host handed out, released on the second: once.
    a.wait_exit();
    a.restart();
    let mut ca = a.client().await;
    let ticket = ticket_of(&ca.check(&token, "Trd_PlaceOrder", sell(2.0, 50.0)).await);
    let (used_before, _) = ca.usage("load").await;
    let mut cb = b.client().await;
    match release(&mut cb, ticket).await {
        Response::Released {
            key_id,
            refunded_value,
            ..
        } => assert_eq!((key_id.as_str(), refunded_value), ("load", 100.0)),
        other => panic!("releasing the first host's ticket on the second: {other:?}"),
    }
    for c in [&mut cb, &mut ca] {
        let again = release(c, ticket).await;
        assert!(
            matches!(
                again,
                Response::Error {
                    kind: ErrorKind::AlreadyReleased,
                    ..
                }
            ),
            "{again:?}"
        );
    }
    let (used_after, _) = ca.usage("load").await;
    assert!(
        (used_before - used_after - 100.0).abs() < 1e-6,
        "{used_before} → {used_after}"
    );
    let unknown = release(&mut cb, ticket ^ 0x5555).await;
    assert!(
        matches!(
            unknown,
            Response::Error {
                kind: ErrorKind::UnknownTicket,
                ..
            }
        ),
        "{unknown:?}"
    );
}

/// The UTC day of an audit record's `ts`.
fn audit_day(rec: &Value) -> i64 {
    let ts: jiff::Timestamp = rec["ts"].as_str().expect("ts").parse().expect("an RFC 3339 time");
    ts.as_second().div_euclid(86_400)
}

fn have_libfaketime() -> bool {
    Path::new(LIBFAKETIME).is_file()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_clock_is_hours_off_counts_the_same_window_and_day() {
    if !have_libfaketime() {
        return skip("libfaketime is not installed (`make deps` installs Debian's faketime)");
    }
    let Some(pg) = cluster() else { return };
    away_from_utc_midnight(30);
    // The second host's clock is two hours into tomorrow (UTC): its own day would be fresh.
    let now = jiff::Timestamp::now().as_second();
    let offset = 86_400 - now.rem_euclid(86_400) + 2 * 3600;
    let fast = token_for("pg-clock-fast");
    let daily = token_for("pg-clock-daily");
    let keys = [
        on_both_hosts("fast", &fast, json!({ "max_orders_per_minute": 5 })),
        on_both_hosts("daily", &daily, json!({ "max_daily_value": 100 })),
    ];
    let second = SecondHost::new();
    let a = first_host(&pg, &keys).start();
    let b = second_host(&pg, &second, &keys)
        .env("LD_PRELOAD", LIBFAKETIME)
        .env("FAKETIME", format!("+{offset}"))
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .start();
    let (mut ca, mut cb) = (a.client().await, b.client().await);

    for i in 0..5 {
        let c = if i % 2 == 0 { &mut ca } else { &mut cb };
        assert!(c.check(&fast, "Trd_PlaceOrder", sell(1.0, 1.0)).await.is_allow());
    }
    for c in [&mut cb, &mut ca] {
        let d = c.check(&fast, "Trd_PlaceOrder", sell(1.0, 1.0)).await;
        assert_eq!(deny_reason(&d), Reason::Rate, "one window for both hosts: {d:?}");
    }

    assert!(ca
        .check(&daily, "Trd_PlaceOrder", sell(6.0, 10.0))
        .await
        .is_allow());
    let d = cb.check(&daily, "Trd_PlaceOrder", sell(5.0, 10.0)).await;
    assert_eq!(
        deny_reason(&d),
        Reason::DailyValue,
        "the second host counts the same day as the first: {d:?}"
    );
    assert!(cb
        .check(&daily, "Trd_PlaceOrder", sell(4.0, 10.0))
        .await
        .is_allow());
    let d = ca.check(&daily, "Trd_PlaceOrder", sell(1.0, 0.01)).await;
    assert_eq!(deny_reason(&d), Reason::DailyValue);

    // The fake clock did apply: the second host wrote its records on another day.
    let a_day = audit_day(&a.wait_audit(1)[0]);
    let b_day = audit_day(&b.wait_audit(1)[0]);
    assert_eq!(b_day, a_day + 1, "the second host's clock is in tomorrow");
    assert_eq!(cb.usage("daily").await.0, 100.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_whose_outcome_is_unknown_is_refused_and_stays_counted_once() {
    let Some(pg) = cluster() else { return };
    away_from_utc_midnight(30);
    let token = token_for("pg-late");
    let keys = [on_both_hosts("late", &token, json!({ "max_daily_value": 1000 }))];
    // Every other call of the test must beat the deadline, on a loaded machine too: a
    // second, with the row held three times as long.
    let d = DaemonBuilder::new(&keys)
        .arg("--ledger-url")
        .arg(pg.url())
        .arg("--ledger-timeout")
        .arg("1s")
        .start();
    let mut c = d.client().await;
    assert!(c
        .check(&token, "Trd_PlaceOrder", sell(1.0, 100.0))
        .await
        .is_allow());

    // Another session holds the key's row for 3 s: the next charge is sent, waits for the
    // lock past the daemon's deadline, and commits once the lock is free.
    let holder = {
        let url_dir = pg.socket_dir().to_owned();
        let psql = postgres::bin_dir().unwrap().join("psql");
        std::thread::spawn(move || {
            std::process::Command::new(psql)
                .arg("-h")
                .arg(url_dir)
                .args(["-U", "postgres", "-d", "postgres", "-X", "-q", "-c"])
                .arg(
                    "BEGIN; SELECT 1 FROM futu_ledger.keys WHERE key_id = 'late' FOR UPDATE; \
                     SELECT pg_sleep(3); COMMIT;",
                )
                .output()
                .expect("psql")
        })
    };
    let started = Instant::now();
    while pg
        .psql("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE a.query LIKE '%pg_sleep%' AND l.mode = 'RowShareLock'")
        .unwrap()
        == "0"
    {
        assert!(started.elapsed() < Duration::from_secs(5), "the row lock was not taken");
        std::thread::sleep(Duration::from_millis(10));
    }
    let late = c.check(&token, "Trd_PlaceOrder", sell(2.0, 100.0)).await;
    assert_eq!(deny_reason(&late), Reason::Internal, "{late:?}");
    assert!(holder.join().unwrap().status.success());

    // The refused order committed after all: it is counted (the safe side), once, and
    // the key's usage says so; nothing was sent twice.
    let until = Instant::now() + Duration::from_secs(5);
    while pg.psql("SELECT count(*) FROM futu_ledger.consumptions").unwrap() != "2" {
        assert!(Instant::now() < until, "the late charge never committed");
        std::thread::sleep(Duration::from_millis(20));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        pg.psql("SELECT count(*) FROM futu_ledger.consumptions").unwrap(),
        "2"
    );
    assert_eq!(c.usage("late").await.0, 300.0);
    // Service goes on: 700 is left of the cap.
    assert!(c
        .check(&token, "Trd_PlaceOrder", sell(7.0, 100.0))
        .await
        .is_allow());
    let over = c.check(&token, "Trd_PlaceOrder", sell(1.0, 0.01)).await;
    assert_eq!(deny_reason(&over), Reason::DailyValue);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_tickets_expire_and_housekeeping_prunes_them() {
    let Some(pg) = cluster() else { return };
    let token = token_for("pg-old");
    let keys = [on_both_hosts(
        "old",
        &token,
        json!({ "max_orders_per_minute": 3 }),
    )];
    let d = first_host(&pg, &keys).start();
    let mut c = d.client().await;
    assert!(c.check(&token, "Trd_PlaceOrder", sell(1.0, 1.0)).await.is_allow());
    // Three orders of 16 minutes ago, as another host would have left them, one of them
    // counted in the window then.
    pg.psql(
        "INSERT INTO futu_ledger.consumptions (ticket, key_id, at, day, value) VALUES \
         (101, 'old', clock_timestamp() - interval '16 minutes', 0, 100000000), \
         (102, 'old', clock_timestamp() - interval '16 minutes', 0, 100000000), \
         (103, 'idle', clock_timestamp() - interval '16 minutes', 0, 100000000); \
         INSERT INTO futu_ledger.keys VALUES ('idle', 0, 0, 1, '-infinity', clock_timestamp() - interval '16 minutes')",
    )
    .unwrap();
    let expired = release(&mut c, 101).await;
    assert!(
        matches!(
            expired,
            Response::Error {
                kind: ErrorKind::TicketExpired,
                ..
            }
        ),
        "{expired:?}"
    );
    assert_eq!(pg.psql("SELECT futu_ledger.prune(10)").unwrap(), "3");
    assert_eq!(
        pg.psql("SELECT window_count FROM futu_ledger.keys WHERE key_id = 'idle'")
            .unwrap(),
        "0",
        "an idle key's window is emptied"
    );
    let unknown = release(&mut c, 102).await;
    assert!(
        matches!(
            unknown,
            Response::Error {
                kind: ErrorKind::UnknownTicket,
                ..
            }
        ),
        "{unknown:?}"
    );
    // The window still holds the order of a moment ago, and only it.
    assert_eq!(c.usage("old").await.1, 1);
    assert!(c.check(&token, "Trd_PlaceOrder", sell(1.0, 1.0)).await.is_allow());
    assert!(c.check(&token, "Trd_PlaceOrder", sell(1.0, 1.0)).await.is_allow());
    let d4 = c.check(&token, "Trd_PlaceOrder", sell(1.0, 1.0)).await;
    assert_eq!(deny_reason(&d4), Reason::Rate);
    match d4 {
        Decision::Deny {
            retry_after_ms: Some(ms),
            ..
        } => assert!(
            (55_000..=60_000).contains(&ms),
            "{ms} ms until the first order leaves"
        ),
        other => panic!("a rate deny says when to retry: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_could_not_be_audited_is_taken_back_from_the_database() {
    if !futu_authd_tests::have_program("prlimit") {
        return skip("prlimit (util-linux) is not installed");
    }
    let Some(pg) = cluster() else { return };
    away_from_utc_midnight(30);
    let token = token_for("pg-audit");
    let keys = [on_both_hosts("audit", &token, json!({ "max_daily_value": 1000 }))];
    let d = first_host(&pg, &keys).start();
    let mut c = d.client().await;
    let ticket = ticket_of(&c.check(&token, "Trd_PlaceOrder", sell(1.0, 100.0)).await);
    let limit = |value: &str| {
        let out = std::process::Command::new("prlimit")
            .arg(format!("--pid={}", d.pid()))
            .arg(format!("--fsize={value}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    // The audit file cannot grow: the order is charged, then taken back; so is the release.
    limit("1:");
    let refused = c.check(&token, "Trd_PlaceOrder", sell(2.0, 100.0)).await;
    assert_eq!(deny_reason(&refused), Reason::Internal, "{refused:?}");
    let not_released = release(&mut c, ticket).await;
    assert!(
        matches!(
            not_released,
            Response::Error {
                kind: ErrorKind::Internal,
                ..
            }
        ),
        "{not_released:?}"
    );
    assert_eq!(
        pg.psql(
            "SELECT k.used, k.window_count, count(c.*), bool_or(c.released) FROM futu_ledger.keys k \
             JOIN futu_ledger.consumptions c USING (key_id) GROUP BY 1, 2"
        )
        .unwrap(),
        "10000000000|1|1|f",
        "only the first order is counted, and it is not released"
    );
    limit("unlimited:");
    match release(&mut c, ticket).await {
        Response::Released { refunded_value, .. } => assert_eq!(refunded_value, 100.0),
        other => panic!("the release can be made once the audit file takes it: {other:?}"),
    }
    assert!(c
        .check(&token, "Trd_PlaceOrder", sell(10.0, 100.0))
        .await
        .is_allow());
    let over = c.check(&token, "Trd_PlaceOrder", sell(1.0, 0.01)).await;
    assert_eq!(deny_reason(&over), Reason::DailyValue);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_started_before_its_database_serves_reads_then_orders_once_it_answers() {
    let Some(pg) = cluster() else { return };
    pg.stop().expect("stopping PostgreSQL");
    let token = token_for("pg-late-start");
    let keys = [on_both_hosts(
        "early",
        &token,
        json!({ "max_orders_per_minute": 10 }),
    )];
    let d = first_host(&pg, &keys).start();
    d.wait_stderr("does not serve the ledger yet");
    let mut c = d.client().await;
    assert!(c.check(&token, "Qot_GetBasicQot", None).await.is_allow());
    let refused = c.check(&token, "Trd_PlaceOrder", sell(1.0, 1.0)).await;
    assert_eq!(deny_reason(&refused), Reason::Internal, "{refused:?}");

    pg.start_again().expect("starting PostgreSQL");
    let until = Instant::now() + Duration::from_secs(10);
    while !c.check(&token, "Trd_PlaceOrder", sell(1.0, 1.0)).await.is_allow() {
        assert!(Instant::now() < until, "orders did not start within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.wait_stderr("schema futu_ledger.1 created");
    assert_eq!(c.usage("early").await.1, 1);
}

/// The ledger's schema as a futu-authd of schema version 1 made it.
const SCHEMA_V1: &str = include_str!("../../authd/src/ledger/pg/v1.sql");

/// The database's UTC day, by its clock.
fn database_day(pg: &Postgres) -> i64 {
    pg.psql("SELECT floor(extract(epoch FROM clock_timestamp()) / 86400)::bigint")
        .expect("the database's clock")
        .parse()
        .expect("a day number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_just_after_utc_midnight_by_the_database_clock_refunds_nothing() {
    let Some(clock) = FakeClock::new() else { return };
    if let Some(why) = postgres::unavailable() {
        return skip(&why);
    }
    // The database runs on the fake clock too: it is the clock the ledger goes by.
    let pg = Postgres::start_for_tests_with_env(&[], clock.env())
        .unwrap_or_else(|e| panic!("starting PostgreSQL: {e}"));
    // A database an older futu-authd made, at schema version 1: the daemon migrates it.
    pg.psql(&format!(
        "CREATE SCHEMA futu_ledger;
         CREATE TABLE futu_ledger.schema_version (
             version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now(),
             applied_by text NOT NULL);
         {SCHEMA_V1}
         INSERT INTO futu_ledger.schema_version (version, applied_by) VALUES (1, 'futu-authd 0.1.0');"
    ))
    .expect("the schema of version 1");
    let token = token_for("pg-midnight");
    let keys = [on_both_hosts("late", &token, json!({ "max_daily_value": 100 }))];
    let mut d = first_host(&pg, &keys).clock(&clock).start();
    assert_eq!(
        pg.psql("SELECT max(version) FROM futu_ledger.schema_version")
            .unwrap(),
        "3"
    );
    let mut c = d.client().await;

    let midnight = futu_authd_tests::next_utc_midnight();
    let today = midnight.as_second() / 86_400;
    clock.set_now(midnight - jiff::SignedDuration::from_secs(6)); // 23:59:54
    assert_eq!(
        database_day(&pg),
        today - 1,
        "the database's clock is the fake one"
    );
    let early = ticket_of(&c.check(&token, "Trd_PlaceOrder", sell(1.0, 40.0)).await);
    let late = ticket_of(&c.check(&token, "Trd_PlaceOrder", sell(1.0, 60.0)).await);
    let refunded = |r: Response| match r {
        Response::Released { refunded_value, .. } => refunded_value,
        other => panic!("expected Released, got {other:?}"),
    };
    assert_eq!(
        refunded(release(&mut c, early).await),
        40.0,
        "before midnight the order's day is not over"
    );

    clock.set_now(midnight + jiff::SignedDuration::from_secs(1)); // 00:00:01
    assert_eq!(database_day(&pg), today);
    assert_eq!(
        refunded(release(&mut c, late).await),
        0.0,
        "the order's UTC day is over: nothing is refunded"
    );
    // Nothing charged the key since: its row still holds the day before (lazily rolled
    // over by the next charge), which is what the release must not go by.
    assert_eq!(
        pg.psql("SELECT day, used FROM futu_ledger.keys WHERE key_id = 'late'")
            .unwrap(),
        format!("{}|6000000000", today - 1)
    );
    assert_eq!(c.usage("late").await.0, 0.0);
    let records: Vec<Value> = d
        .audit_records()
        .into_iter()
        .filter(|r| r["kind"] == "release")
        .collect();
    let details: Vec<&Value> = records.iter().map(|r| &r["detail"]).collect();
    assert_eq!(details, ["refunded 40", "refunded 0"], "{records:#?}");
    assert!(c
        .check(&token, "Trd_PlaceOrder", sell(1.0, 100.0))
        .await
        .is_allow());
    let over = c.check(&token, "Trd_PlaceOrder", sell(1.0, 0.01)).await;
    assert_eq!(deny_reason(&over), Reason::DailyValue);
    // Stopped, not killed: libfaketime then removes what it made in /dev/shm.
    assert!(d.stop().success());
}

fn buy(qty: f64, price: f64) -> Option<futu_auth_proto::Order> {
    Some(futu_authd_tests::order(
        Market::HK,
        "HK.00700",
        TrdSide::BUY,
        qty,
        Some(price),
    ))
}

/// Sends an order event; returns what it came to.
async fn event(
    c: &mut Client,
    ticket: u64,
    kind: OrderEventKind,
    fill: Option<(f64, f64)>,
) -> OrderEventOutcome {
    let request_id = c.next_id();
    match c
        .request(Request::OrderEvent(OrderEvent {
            request_id,
            ticket,
            kind,
            filled_qty: fill.map(|f| f.0),
            fill_price: fill.map(|f| f.1),
        }))
        .await
    {
        Response::OrderEventDone { outcome, .. } => outcome,
        other => panic!("an order event answered with {other:?}"),
    }
}

fn applied(o: &OrderEventOutcome) -> bool {
    matches!(o, OrderEventOutcome::Applied { .. })
}

fn duplicate(o: &OrderEventOutcome) -> bool {
    matches!(o, OrderEventOutcome::Duplicate { .. })
}

fn refused(o: &OrderEventOutcome) -> Option<OrderEventRefusal> {
    match o {
        OrderEventOutcome::Refused { reason, .. } => Some(*reason),
        _ => None,
    }
}

fn limit_of(d: &Decision) -> Option<LimitFigures> {
    match d {
        Decision::Deny { limit, .. } => limit.clone(),
        Decision::Allow { .. } => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_share_open_orders_positions_and_duplicates_across_restarts() {
    let Some(pg) = cluster() else { return };
    away_from_utc_midnight(30);
    let open = token_for("pg-open");
    let pos = token_for("pg-pos");
    let keys = [
        on_both_hosts(
            "open",
            &open,
            json!({ "max_open_orders": 2, "duplicate_window_ms": 600000, "max_daily_value": 100000 }),
        ),
        on_both_hosts("pos", &pos, json!({ "max_position_value": 1000 })),
    ];
    let second = SecondHost::new();
    let mut a = first_host(&pg, &keys).start();
    let mut b = second_host(&pg, &second, &keys).start();
    let (mut ca, mut cb) = (a.client().await, b.client().await);

    // max_open_orders: one order through each host fills both slots, on both hosts.
    let t1 = ticket_of(&ca.check(&open, "Trd_PlaceOrder", sell(1.0, 100.0)).await);
    let t2 = ticket_of(&cb.check(&open, "Trd_PlaceOrder", sell(2.0, 100.0)).await);
    for c in [&mut ca, &mut cb] {
        let third = c.check(&open, "Trd_PlaceOrder", sell(3.0, 100.0)).await;
        assert_eq!(deny_reason(&third), Reason::OpenOrders, "{third:?}");
        assert_eq!(
            limit_of(&third),
            Some(LimitFigures::OpenOrders {
                open_orders: 2,
                max_open_orders: 2
            })
        );
    }
    // The same order through the other host is a duplicate (checked before the slots).
    let again = cb.check(&open, "Trd_PlaceOrder", sell(1.0, 100.0)).await;
    assert_eq!(deny_reason(&again), Reason::Duplicate, "{again:?}");
    match limit_of(&again) {
        Some(LimitFigures::Duplicate {
            since_ms,
            duplicate_window_ms: 600_000,
        }) => assert!(since_ms < 30_000, "{since_ms}"),
        other => panic!("a duplicate's figures: {other:?}"),
    }

    // An event through the host that issued the ticket frees a slot on both; the same
    // event again, through either host, is a duplicate.
    assert!(applied(&event(&mut ca, t1, OrderEventKind::Accepted, None).await));
    assert!(duplicate(
        &event(&mut cb, t1, OrderEventKind::Accepted, None).await
    ));
    assert!(applied(
        &event(&mut ca, t1, OrderEventKind::Cancelled, None).await
    ));
    assert!(duplicate(
        &event(&mut ca, t1, OrderEventKind::Cancelled, None).await
    ));
    assert!(duplicate(
        &event(&mut cb, t1, OrderEventKind::Cancelled, None).await
    ));
    let t3 = ticket_of(&cb.check(&open, "Trd_PlaceOrder", sell(3.0, 100.0)).await);
    let full = ca.check(&open, "Trd_PlaceOrder", sell(4.0, 100.0)).await;
    assert_eq!(deny_reason(&full), Reason::OpenOrders, "{full:?}");
    // A rejection frees the slot and gives the daily value back, once.
    match event(&mut cb, t3, OrderEventKind::Rejected, None).await {
        OrderEventOutcome::Applied {
            key_id,
            refunded_value,
        } => assert_eq!((key_id.as_str(), refunded_value), ("open", 300.0)),
        other => panic!("a rejection: {other:?}"),
    }
    assert!(duplicate(
        &event(&mut ca, t3, OrderEventKind::Rejected, None).await
    ));
    assert_eq!(ca.usage("open").await.0, 300.0, "100 + 200 used, 300 given back");
    // Bad figures and unknown tickets change nothing.
    assert_eq!(
        refused(&event(&mut ca, t2, OrderEventKind::Filled, Some((40.0, 100.0))).await),
        Some(OrderEventRefusal::BadFigures)
    );
    assert_eq!(
        refused(&event(&mut ca, t2, OrderEventKind::Filled, None).await),
        Some(OrderEventRefusal::BadFigures)
    );
    assert_eq!(
        refused(&event(&mut cb, 0x1234_5678_9abc, OrderEventKind::Cancelled, None).await),
        Some(OrderEventRefusal::UnknownTicket)
    );
    let t4 = ticket_of(&ca.check(&open, "Trd_PlaceOrder", sell(4.0, 100.0)).await);
    assert_eq!(
        deny_reason(&cb.check(&open, "Trd_PlaceOrder", sell(5.0, 100.0)).await),
        Reason::OpenOrders
    );

    // max_position_value: per symbol and direction, open orders and fills of both hosts.
    let p1 = ticket_of(&ca.check(&pos, "Trd_PlaceOrder", buy(5.0, 100.0)).await);
    let over = cb.check(&pos, "Trd_PlaceOrder", buy(6.0, 100.0)).await;
    assert_eq!(deny_reason(&over), Reason::Position, "{over:?}");
    assert_eq!(
        limit_of(&over),
        Some(LimitFigures::Position {
            position_value: 500.0,
            order_value: 600.0,
            max_position_value: 1000.0
        })
    );
    // A partial fill keeps the position (filled plus open); a full fill at a lower price
    // lowers it. Fills carry the total filled so far: an older one is a duplicate.
    assert!(applied(
        &event(&mut cb, p1, OrderEventKind::PartiallyFilled, Some((2.0, 100.0))).await
    ));
    assert!(duplicate(
        &event(&mut ca, p1, OrderEventKind::PartiallyFilled, Some((2.0, 100.0))).await
    ));
    assert!(duplicate(
        &event(&mut ca, p1, OrderEventKind::PartiallyFilled, Some((1.0, 100.0))).await
    ));
    assert_eq!(
        deny_reason(&ca.check(&pos, "Trd_PlaceOrder", buy(6.0, 100.0)).await),
        Reason::Position
    );
    assert_eq!(
        refused(&event(&mut ca, p1, OrderEventKind::Rejected, None).await),
        Some(OrderEventRefusal::BadFigures),
        "an order with a fill can be cancelled, not rejected"
    );
    assert!(applied(
        &event(&mut ca, p1, OrderEventKind::Filled, Some((5.0, 80.0))).await
    ));
    assert!(duplicate(
        &event(&mut cb, p1, OrderEventKind::Filled, Some((5.0, 80.0))).await
    ));
    let p2 = ticket_of(&cb.check(&pos, "Trd_PlaceOrder", buy(6.0, 100.0)).await); // 400 held + 600 open
                                                                                  // Both hosts' futucli usage show the same open orders and position, read from the
                                                                                  // database.
    for d in [&a, &b] {
        let usage = d.futucli().args(["usage", "pos"]).output().unwrap();
        let usage = String::from_utf8_lossy(&usage.stdout).into_owned();
        assert!(usage.contains("\nopen orders: 1 of unlimited"), "{usage}");
        assert!(
            usage.contains("\nposition HK.00700: long 1000, short 0 (each with its open orders) of 1000"),
            "{usage}"
        );
    }
    let full = ca.check(&pos, "Trd_PlaceOrder", buy(1.0, 1.0)).await;
    assert_eq!(
        limit_of(&full),
        Some(LimitFigures::Position {
            position_value: 1000.0,
            order_value: 1.0,
            max_position_value: 1000.0
        })
    );
    // Selling what is held is not capped by the long position.
    ticket_of(&ca.check(&pos, "Trd_PlaceOrder", sell(4.0, 100.0)).await);
    let rows = pg
        .psql(
            "SELECT symbol, bought, sold, open_buys, open_sells FROM futu_ledger.positions \
             WHERE key_id = 'pos'",
        )
        .unwrap();
    assert_eq!(rows, "HK.00700|40000000000|0|60000000000|40000000000");

    // Both hosts restart, one of them killed: everything is in the database.
    a.signal(Signal::SIGKILL);
    a.wait_exit();
    assert!(b.stop().success());
    a.restart();
    b.restart();
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    assert_eq!(
        deny_reason(&cb.check(&open, "Trd_PlaceOrder", sell(5.0, 100.0)).await),
        Reason::OpenOrders,
        "t2 and t4 are still open"
    );
    assert_eq!(
        deny_reason(&ca.check(&open, "Trd_PlaceOrder", sell(4.0, 100.0)).await),
        Reason::Duplicate,
        "t4 is still in the duplicate window"
    );
    assert!(duplicate(
        &event(&mut cb, t1, OrderEventKind::Cancelled, None).await
    ));
    assert!(applied(
        &event(&mut cb, t4, OrderEventKind::Filled, Some((4.0, 100.0))).await
    ));
    ticket_of(&ca.check(&open, "Trd_PlaceOrder", sell(5.0, 100.0)).await);
    assert_eq!(
        deny_reason(&cb.check(&open, "Trd_PlaceOrder", sell(6.0, 100.0)).await),
        Reason::OpenOrders
    );
    assert_eq!(
        deny_reason(&cb.check(&pos, "Trd_PlaceOrder", buy(0.01, 1.0)).await),
        Reason::Position,
        "the position is kept"
    );
    assert!(applied(
        &event(&mut ca, p2, OrderEventKind::Cancelled, None).await
    ));
    // 400 held: 600 more fits, 601 does not.
    assert_eq!(
        deny_reason(&cb.check(&pos, "Trd_PlaceOrder", buy(6.01, 100.0)).await),
        Reason::Position
    );
    ticket_of(&cb.check(&pos, "Trd_PlaceOrder", buy(6.0, 100.0)).await);
    assert_eq!(
        pg.psql("SELECT count(*) FILTER (WHERE finished_at IS NULL), count(*) FROM futu_ledger.orders")
            .unwrap(),
        "4|9",
        "open: t2, t5, the sell of pos and its last buy; finished: t1, t3, t4, p1, p2"
    );
    // Pruning keeps open orders and what is in its windows.
    pg.psql("SELECT futu_ledger.prune(1000)").unwrap();
    assert_eq!(
        pg.psql("SELECT count(*) FROM futu_ledger.orders WHERE finished_at IS NULL")
            .unwrap(),
        "4"
    );
    assert_eq!(
        pg.psql("SELECT sum(open_count) FROM futu_ledger.keys").unwrap(),
        "4"
    );
}

/// The database works out an order's value (a partial fill's rest at its limit price) as
/// the daemon does: the same 1e-8 units for any quantity and price.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_values_an_order_as_the_daemon_does() {
    let Some(pg) = cluster() else { return };
    pg.psql(&format!(
        "CREATE SCHEMA futu_ledger; {} {} {}",
        SCHEMA_V1,
        include_str!("../../authd/src/ledger/pg/v2.sql"),
        include_str!("../../authd/src/ledger/pg/v3.sql")
    ))
    .expect("the schema");
    let mut pairs: Vec<(f64, f64)> = vec![
        (0.3 - 0.1, 100.0),
        (1e-5, 3.33),
        (0.1, 0.2),
        (123456.789, 0.001),
        (1e-9, 1e-9),
        (7.0, 299.5),
        (1e12, 1e9),
        (1e13, 1e9),
        (5e-324, 1.0),
        (0.0, 12.5),
    ];
    // A little generator of quantities and prices of every size (deterministic).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // (One psql argument holds them all: at most 128 KiB.)
    for _ in 0..500 {
        let q = (next() % 1_000_000) as f64 / 10f64.powi((next() % 9) as i32);
        let p = f64::from_bits(next()).abs() % 10_000.0;
        let whole = 100.0 - (next() % 100) as f64 / 7.0;
        pairs.push((q, if p.is_finite() { p } else { whole }));
        pairs.push((q - q / 3.0, whole));
    }
    let values: Vec<String> = pairs
        .iter()
        .map(|(q, p)| format!("({q:e}::float8, {p:e}::float8)"))
        .collect();
    let got = pg
        .psql(&format!(
            "SELECT coalesce(futu_ledger.order_value(q, p)::text, '-') FROM (VALUES {}) AS v(q, p)",
            values.join(", ")
        ))
        .unwrap();
    let got: Vec<&str> = got.lines().collect();
    assert_eq!(got.len(), pairs.len());
    for ((q, p), got) in pairs.iter().zip(got) {
        let want =
            futu_auth_proto::money::Money::order_value(*q, *p).map_or("-".to_owned(), |m| m.0.to_string());
        assert_eq!(got, want, "{q:e} × {p:e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_racing_one_key_get_exactly_its_open_orders() {
    let Some(pg) = cluster() else { return };
    away_from_utc_midnight(30);
    let token = token_for("pg-race");
    let keys = [on_both_hosts(
        "race",
        &token,
        json!({ "max_open_orders": 5, "max_position_value": 1000000 }),
    )];
    let second = SecondHost::new();
    let a = first_host(&pg, &keys).start();
    let b = second_host(&pg, &second, &keys).start();
    let decisions = at_once(&[&a, &b], &token, 16, 1.0, 1.0).await;
    let allowed: Vec<u64> = decisions.iter().filter(|d| d.is_allow()).map(ticket_of).collect();
    assert_eq!(allowed.len(), 5, "{decisions:?}");
    for d in decisions.iter().filter(|d| !d.is_allow()) {
        assert_eq!(deny_reason(d), Reason::OpenOrders, "{d:?}");
    }
    // Every ticket's events, through both hosts at once: each finishes its order once.
    let mut tasks = Vec::new();
    for (i, t) in allowed.iter().enumerate() {
        for d in [&a, &b] {
            let mut c = d.client().await;
            let t = *t;
            let fill = if i % 2 == 0 { Some((1.0, 1.0)) } else { None };
            let kind = if fill.is_some() {
                OrderEventKind::Filled
            } else {
                OrderEventKind::Cancelled
            };
            tasks.push(tokio::spawn(async move { event(&mut c, t, kind, fill).await }));
        }
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.expect("event task"));
    }
    assert_eq!(outcomes.iter().filter(|o| applied(o)).count(), 5, "{outcomes:?}");
    assert_eq!(
        outcomes.iter().filter(|o| duplicate(o)).count(),
        5,
        "{outcomes:?}"
    );
    assert_eq!(
        pg.psql(
            "SELECT k.open_count, p.sold, p.open_sells FROM futu_ledger.keys k \
             JOIN futu_ledger.positions p USING (key_id)"
        )
        .unwrap(),
        "0|300000000|0",
        "three fills of 1.00, nothing open"
    );
}

/// Sends an order event that must fail `internal`.
async fn event_not_applied(c: &mut Client, ticket: u64, kind: OrderEventKind, fill: Option<(f64, f64)>) {
    let request_id = c.next_id();
    let r = c
        .request(Request::OrderEvent(OrderEvent {
            request_id,
            ticket,
            kind,
            filled_qty: fill.map(|f| f.0),
            fill_price: fill.map(|f| f.1),
        }))
        .await;
    assert!(
        matches!(
            r,
            Response::Error {
                kind: ErrorKind::Internal,
                ..
            }
        ),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_events_and_releases_that_could_not_be_audited_are_taken_back_from_the_database() {
    if !futu_authd_tests::have_program("prlimit") {
        return skip("prlimit (util-linux) is not installed");
    }
    let Some(pg) = cluster() else { return };
    away_from_utc_midnight(30);
    let token = token_for("pg-ev-audit");
    let keys = [on_both_hosts(
        "ev",
        &token,
        json!({ "max_open_orders": 2, "max_position_value": 1000, "max_daily_value": 1000 }),
    )];
    let d = first_host(&pg, &keys).start();
    let mut c = d.client().await;
    let filling = ticket_of(&c.check(&token, "Trd_PlaceOrder", buy(5.0, 100.0)).await);
    let fresh = ticket_of(&c.check(&token, "Trd_PlaceOrder", sell(1.0, 100.0)).await);
    assert!(applied(
        &event(
            &mut c,
            filling,
            OrderEventKind::PartiallyFilled,
            Some((2.0, 100.0))
        )
        .await
    ));
    let state = || {
        pg.psql(
            "SELECT (SELECT string_agg(concat_ws(',', filled_qty, filled_value, open_value, accepted, \
                     finished_at IS NULL), ';' ORDER BY buys DESC) FROM futu_ledger.orders), \
                    (SELECT concat_ws(',', bought, sold, open_buys, open_sells) FROM futu_ledger.positions), \
                    (SELECT concat_ws(',', used, open_count) FROM futu_ledger.keys), \
                    (SELECT count(*) FILTER (WHERE released) FROM futu_ledger.consumptions)",
        )
        .unwrap()
    };
    let before = state();
    assert_eq!(
        before,
        "2,20000000000,30000000000,t,t;0,0,10000000000,f,t|20000000000,0,30000000000,10000000000|60000000000,2|0"
    );
    let limit = |value: &str| {
        let out = std::process::Command::new("prlimit")
            .arg(format!("--pid={}", d.pid()))
            .arg(format!("--fsize={value}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    limit("1:");
    event_not_applied(&mut c, filling, OrderEventKind::Filled, Some((5.0, 80.0))).await;
    event_not_applied(
        &mut c,
        filling,
        OrderEventKind::PartiallyFilled,
        Some((3.0, 90.0)),
    )
    .await;
    event_not_applied(&mut c, filling, OrderEventKind::Cancelled, None).await;
    event_not_applied(&mut c, fresh, OrderEventKind::Accepted, None).await;
    event_not_applied(&mut c, fresh, OrderEventKind::Rejected, None).await;
    let not_released = release(&mut c, fresh).await;
    assert!(
        matches!(
            not_released,
            Response::Error {
                kind: ErrorKind::Internal,
                ..
            }
        ),
        "{not_released:?}"
    );
    assert_eq!(state(), before, "nothing of it stays");
    limit("unlimited:");
    match event(&mut c, fresh, OrderEventKind::Rejected, None).await {
        OrderEventOutcome::Applied { refunded_value, .. } => assert_eq!(refunded_value, 100.0),
        other => panic!("the rejection once the audit file takes it: {other:?}"),
    }
    assert!(applied(
        &event(&mut c, filling, OrderEventKind::Filled, Some((5.0, 80.0))).await
    ));
    assert_eq!(
        state(),
        "5,40000000000,0,t,f;0,0,10000000000,f,f|40000000000,0,0,0|50000000000,0|1"
    );
}
