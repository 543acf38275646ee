//! Failover of the PostgreSQL ledger (`--ledger-url`) and key store (`--keys-url`): a
//! primary with a synchronous standby ([`Replicated`]), two futu-authd naming both servers
//! in one URL with `target_session_attrs=read-write`, the primary killed (`kill -9`) while
//! they stream orders and one of them makes keys, then the standby promoted. Every order
//! allowed and every key made is on the new primary, nothing is allowed while there is no
//! primary, and both daemons resume by themselves — orders, and key changes made through
//! one reaching the other. The test
//! prints the gap it measured (docs/PERFORMANCE.md, "Failover of the ledger"; run it with
//! `-- --nocapture` to see it).

use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futu_auth_proto::{Decision, Iface, Market, Order, Reason, Request, Response, TrdSide};
use futu_authd_tests::postgres::{self, Replicated};
use futu_authd_tests::{
    away_from_utc_midnight, deny_reason, key_json, metric_value, skip, token_for, with, Client, Daemon,
    DaemonBuilder, Run,
};
use serde_json::json;

/// The daemons: two, standing for two gateway hosts (the machine binding is not what this
/// test is about, so both read the harness's machine id).
const DAEMONS: usize = 2;

/// Connections streaming orders to each daemon, one order at a time each: at most this
/// many of a daemon's orders are in flight when the primary dies.
const CALLERS_PER_DAEMON: usize = 3;

/// The daemons' `--ledger-timeout`: every call to a live database beats it on a loaded
/// machine, so that no order is refused late — and perhaps counted — outside the kill.
/// While there is no primary, orders are refused at once, not after it.
const LEDGER_TIMEOUT: &str = "2s";
const LEDGER_TIMEOUT_AS_DURATION: Duration = Duration::from_secs(2);

/// Orders each daemon allows before the primary is killed.
const ALLOWS_BEFORE_THE_KILL: usize = 100;

/// Keys made through the second daemon before the primary is killed (and more go on being
/// made until after it).
const KEYS_BEFORE_THE_KILL: usize = 10;

/// Orders each daemon refuses after the kill before the standby is promoted: both see the
/// outage.
const REFUSALS_BEFORE_PROMOTION: usize = 20;

/// How long a caller waits after an order that was not allowed: a client's back-off, which
/// keeps the refusals from taking both cores.
const BACK_OFF: Duration = Duration::from_millis(2);

/// How soon a key change made through one daemon must be in service on the other.
const PROPAGATION: Duration = Duration::from_secs(1);

/// Every wait of the test gives up after this long.
const WAIT: Duration = Duration::from_secs(20);

/// What one order got.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Allowed {
        ticket: u64,
    },
    Refused(Reason),
    /// The connection failed: the daemon closed it, or went away.
    Failed,
}

/// One order and its answer, as a caller saw it.
#[derive(Debug, Clone, Copy)]
struct Answer {
    /// Which daemon it went to.
    daemon: usize,
    sent: Instant,
    answered: Instant,
    outcome: Outcome,
}

impl Answer {
    fn ticket(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Allowed { ticket } => Some(ticket),
            _ => None,
        }
    }

    fn is_allow(&self) -> bool {
        self.ticket().is_some()
    }
}

/// What the callers have been answered so far, a daemon at a time, for the test's waits.
struct Tally {
    since: Instant,
    allowed: [AtomicUsize; DAEMONS],
    refused: [AtomicUsize; DAEMONS],
    /// When the daemon's latest allow arrived, in µs after `since`.
    last_allow_us: [AtomicU64; DAEMONS],
}

impl Tally {
    fn new() -> Tally {
        Tally {
            since: Instant::now(),
            allowed: Default::default(),
            refused: Default::default(),
            last_allow_us: Default::default(),
        }
    }

    fn note(&self, a: &Answer) {
        if a.is_allow() {
            self.allowed[a.daemon].fetch_add(1, Ordering::Relaxed);
            let us = a.answered.duration_since(self.since).as_micros() as u64;
            self.last_allow_us[a.daemon].fetch_max(us, Ordering::Relaxed);
        } else {
            self.refused[a.daemon].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn allowed(&self, daemon: usize) -> usize {
        self.allowed[daemon].load(Ordering::Relaxed)
    }

    fn refused(&self, daemon: usize) -> usize {
        self.refused[daemon].load(Ordering::Relaxed)
    }

    fn allowed_since(&self, daemon: usize, t: Instant) -> bool {
        let us = self.last_allow_us[daemon].load(Ordering::Relaxed);
        self.since + Duration::from_micros(us) > t
    }
}

/// A simulated SELL of one HK.00700 at 1.00: every allowed order adds 1 to the key's day.
fn one_share() -> Order {
    futu_authd_tests::order(Market::HK, "HK.00700", TrdSide::SELL, 1.0, Some(1.0))
}

/// Sends orders one after another on `c` until `stop`, noting every answer.
async fn stream(
    daemon: usize,
    mut c: Client,
    token: String,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Vec<Answer> {
    let mut answers = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let check = c.check_request(Iface::Rest, &token, "Trd_PlaceOrder", Some(one_share()));
        let id = check.request_id;
        let sent = Instant::now();
        let frame = if c.try_feed(Request::Check(check)).await.is_ok() && c.try_flush().await.is_ok() {
            c.next_frame().await
        } else {
            None
        };
        let answered = Instant::now();
        let outcome = match frame {
            Some(Ok(Response::Decision { request_id, decision })) => {
                assert_eq!(request_id, id, "one order at a time: its own answer");
                match decision {
                    Decision::Allow {
                        ticket: Some(ticket), ..
                    } => Outcome::Allowed { ticket },
                    Decision::Deny { reason, .. } => Outcome::Refused(reason),
                    other => panic!("an allowed order without a ticket: {other:?}"),
                }
            }
            Some(Ok(other)) => panic!("unexpected answer to an order: {other:?}"),
            Some(Err(_)) | None => Outcome::Failed,
        };
        let answer = Answer {
            daemon,
            sent,
            answered,
            outcome,
        };
        tally.note(&answer);
        answers.push(answer);
        match outcome {
            Outcome::Allowed { .. } => {}
            Outcome::Refused(_) => tokio::time::sleep(BACK_OFF).await,
            Outcome::Failed => break,
        }
    }
    answers
}

/// A key made by `futucli gen-key`, acknowledged.
struct Made {
    id: String,
    token: String,
    /// When futucli was started: a key asked for before the primary was killed may have
    /// been committed before it, and acknowledged a moment after (futucli still printing
    /// and exiting when the kill was done).
    started: Instant,
}

/// Runs `futucli gen-key` commands one after another (each through the same daemon) until
/// `stop`, and returns the keys whose making was acknowledged (futucli exited 0) — those in
/// flight when the primary died fail, and are neither required nor ruled out.
fn make_keys(
    commands: Vec<(String, Command)>,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
) -> (Vec<Made>, usize) {
    let mut made = Vec::new();
    let mut failed = 0;
    for (id, mut cmd) in commands {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let started = Instant::now();
        let r = Run::from(cmd.output().expect("run futucli gen-key"));
        if r.code == Some(0) {
            let token = r
                .stdout
                .lines()
                .find_map(|l| l.strip_prefix("plaintext: "))
                .and_then(|l| l.split_whitespace().next())
                .unwrap_or_else(|| panic!("no plaintext in {:?}", r.stdout))
                .to_owned();
            made.push(Made { id, token, started });
            count.fetch_add(1, Ordering::Relaxed);
        } else {
            failed += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    (made, failed)
}

/// Asks `c` about `token` (a quote) until `done`, failing after [`PROPAGATION`].
async fn until_quote(c: &mut Client, token: &str, what: &str, done: impl Fn(&Decision) -> bool) {
    let started = Instant::now();
    loop {
        let d = c.check(token, "Qot_GetBasicQot", None).await;
        if done(&d) {
            return;
        }
        assert!(
            started.elapsed() < PROPAGATION,
            "{what}: not within {PROPAGATION:?}; the last answer: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until `done`, failing the test after [`WAIT`].
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + WAIT;
    while !done() {
        assert!(
            Instant::now() < until,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `a - b` in milliseconds, negative when `a` came first.
fn ms(a: Instant, b: Instant) -> f64 {
    match a.checked_duration_since(b) {
        Some(d) => d.as_secs_f64() * 1e3,
        None => -(b.duration_since(a).as_secs_f64() * 1e3),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_loses_no_allowed_order_and_both_daemons_resume_by_themselves() {
    if let Some(why) = postgres::unavailable() {
        return skip(&why);
    }
    away_from_utc_midnight(60);
    let pair = Replicated::start_for_tests(&[])
        .unwrap_or_else(|e| panic!("starting a primary and its synchronous standby: {e}"));
    let token = token_for("pg-failover");
    let keys = [with(
        key_json("failover", &token, &["trade:simulate"]),
        "limits",
        json!({ "max_daily_value": 100000000 }),
    )];
    let daemons: Vec<Daemon> = (0..DAEMONS)
        .map(|_| {
            DaemonBuilder::new(&keys)
                .arg("--ledger-url")
                .arg(pair.url())
                .arg("--ledger-timeout")
                .arg(LEDGER_TIMEOUT)
                .arg("--keys-url")
                .arg(pair.url())
                .metrics()
                .start()
        })
        .collect();
    // The keys go into the shared store through one daemon: both serve them.
    let imported = Run::from(
        daemons[0]
            .futucli()
            .arg("import-keys")
            .arg(daemons[0].keys_path())
            .output()
            .expect("run futucli import-keys"),
    );
    assert_eq!(imported.code, Some(0), "{}{}", imported.stdout, imported.stderr);
    for d in &daemons {
        let mut c = d.client().await;
        until_quote(&mut c, &token, "the imported key", |d| {
            !d.is_allow() && deny_reason(d) == Reason::Scope
        })
        .await;
    }

    let tally = Arc::new(Tally::new());
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::new();
    for (i, d) in daemons.iter().enumerate() {
        for _ in 0..CALLERS_PER_DAEMON {
            let c = d.client().await;
            callers.push(tokio::spawn(stream(
                i,
                c,
                token.clone(),
                Arc::clone(&stop),
                Arc::clone(&tally),
            )));
        }
    }
    // Keys made through the second daemon, one after another, until after the kill.
    let gen_keys: Vec<(String, Command)> = (0..10_000)
        .map(|i| {
            let id = format!("made-{i}");
            let mut cmd = daemons[1].futucli();
            cmd.args(["gen-key", "--id", &id, "--scopes", "qot:read"]);
            (id, cmd)
        })
        .collect();
    let stop_making = Arc::new(AtomicBool::new(false));
    let keys_made = Arc::new(AtomicUsize::new(0));
    let maker = {
        let (stop, count) = (Arc::clone(&stop_making), Arc::clone(&keys_made));
        std::thread::spawn(move || make_keys(gen_keys, stop, count))
    };
    wait_until("orders allowed by both daemons, and keys made", || {
        (0..DAEMONS).all(|d| tally.allowed(d) >= ALLOWS_BEFORE_THE_KILL)
            && keys_made.load(Ordering::Relaxed) >= KEYS_BEFORE_THE_KILL
    })
    .await;
    // The URL names the standby first: the daemons skipped it for the primary.
    assert_eq!(pair.sync_state().unwrap(), "sync", "commits wait for the standby");
    assert!(!pair.standby.takes_writes());
    let sessions: usize = pair
        .primary
        .psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'futu-authd'")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        sessions >= DAEMONS,
        "both daemons hold sessions on the primary: {sessions}"
    );

    // `sigkill`: when the SIGKILLs went out; `killed`: every process of the primary is gone.
    let sigkill = pair
        .primary
        .kill_9()
        .unwrap_or_else(|e| panic!("killing the primary: {e}"));
    let killed = Instant::now();
    let refused_at_kill: Vec<usize> = (0..DAEMONS).map(|d| tally.refused(d)).collect();
    wait_until("both daemons refusing orders without a primary", || {
        (0..DAEMONS).all(|d| tally.refused(d) >= refused_at_kill[d] + REFUSALS_BEFORE_PROMOTION)
    })
    .await;
    assert!(!pair.standby.takes_writes(), "the standby waits to be promoted");
    stop_making.store(true, Ordering::Relaxed);

    let promote_started = Instant::now();
    pair.standby
        .promote()
        .unwrap_or_else(|e| panic!("promoting the standby: {e}"));
    let promoted = Instant::now();
    wait_until("both daemons allowing orders again", || {
        (0..DAEMONS).all(|d| tally.allowed_since(d, promote_started))
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut answers = Vec::new();
    for c in callers {
        answers.extend(c.await.expect("a caller"));
    }

    // Every answer is an allow or a refusal `internal` (the key's cap is far off), and the
    // daemons kept every connection.
    for a in &answers {
        match a.outcome {
            Outcome::Allowed { .. } | Outcome::Refused(Reason::Internal) => {}
            Outcome::Refused(other) => panic!("refused {other:?}, not internal: {a:?}"),
            Outcome::Failed => panic!("a daemon failed a caller's connection: {a:?}"),
        }
    }
    // Nothing is allowed while there is no primary: every order sent once the primary was
    // dead and answered before the promotion began was refused.
    for d in 0..DAEMONS {
        let gap: Vec<&Answer> = answers
            .iter()
            .filter(|a| a.daemon == d && a.sent >= killed && a.answered <= promote_started)
            .collect();
        assert!(
            !gap.is_empty(),
            "daemon {d} was asked nothing while there was no primary"
        );
        let allowed: Vec<&&Answer> = gap.iter().filter(|a| a.is_allow()).collect();
        assert!(
            allowed.is_empty(),
            "daemon {d} allowed orders without a primary: {allowed:?}"
        );
    }

    // Every allowed order is on the new primary. What it holds beyond them was in flight at
    // the kill — refused, its commit's fate unknown to the daemon: one order a caller at
    // most, as each waits for its answer before it sends the next and a daemon refuses at
    // once after its first failed call — or refused after the ledger deadline, its call
    // perhaps committed late (none, unless the machine stalled for seconds).
    let allowed: Vec<u64> = answers.iter().filter_map(Answer::ticket).collect();
    let unique: HashSet<u64> = allowed.iter().copied().collect();
    assert_eq!(unique.len(), allowed.len(), "every allow has its own ticket");
    let stored: HashSet<u64> = pair
        .standby
        .psql("SELECT ticket FROM futu_ledger.consumptions WHERE key_id = 'failover'")
        .unwrap()
        .lines()
        .map(|l| l.parse::<i64>().unwrap() as u64)
        .collect();
    let lost: Vec<&u64> = allowed.iter().filter(|t| !stored.contains(t)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} allowed orders are not on the new primary: {lost:?}",
        lost.len(),
        allowed.len()
    );
    let callers = DAEMONS * CALLERS_PER_DAEMON;
    let late = answers
        .iter()
        .filter(|a| !a.is_allow() && a.answered.duration_since(a.sent) >= LEDGER_TIMEOUT_AS_DURATION)
        .count();
    let unanswered = stored.len() - allowed.len();
    assert!(
        unanswered <= callers + late,
        "{} allowed, {} on the new primary: {unanswered} more than {callers} callers had in flight \
         at the kill (and {late} refused late)",
        allowed.len(),
        stored.len()
    );

    let (made, gen_key_failures) = tokio::task::spawn_blocking(move || maker.join().expect("the key maker"))
        .await
        .expect("the key maker's join");
    assert!(!made.is_empty(), "no key was made before the kill");
    // Nothing can be made while there is no primary: a key asked for once every process of
    // the primary was gone (and before the promotion, when the maker stopped) is never
    // acknowledged.
    let made_after_kill: Vec<&str> = made
        .iter()
        .filter(|m| m.started > killed)
        .map(|m| m.id.as_str())
        .collect();
    assert!(
        made_after_kill.is_empty(),
        "keys asked for and acknowledged while there was no primary: {made_after_kill:?}"
    );
    // Every key made was acknowledged only once it was on the standby too: all are on the
    // new primary, and both daemons serve them.
    let stored_keys: HashSet<String> = pair
        .standby
        .psql("SELECT id FROM futu_keys.keys")
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let lost: Vec<&str> = made
        .iter()
        .filter(|m| !stored_keys.contains(&m.id))
        .map(|m| m.id.as_str())
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} keys made are not on the new primary: {lost:?}",
        lost.len(),
        made.len()
    );
    let newest = made.last().expect("a key made");
    let mut clients = Vec::new();
    for d in &daemons {
        let mut c = d.client().await;
        until_quote(&mut c, &newest.token, "a key made before the failover", |d| {
            d.is_allow()
        })
        .await;
        clients.push(c);
    }
    // Key changes flow again: a revocation through the first daemon, on the new primary,
    // reaches the second within a second (its listening connection found the new primary).
    let revoked = Run::from(
        daemons[0]
            .futucli()
            .args(["revoke-key", &newest.id])
            .output()
            .expect("run futucli revoke-key"),
    );
    assert_eq!(revoked.code, Some(0), "{}{}", revoked.stdout, revoked.stderr);
    until_quote(
        &mut clients[1],
        &newest.token,
        "a revocation after the failover",
        |d| !d.is_allow() && deny_reason(d) == Reason::UnknownKey,
    )
    .await;

    // Both daemons resumed by themselves: the same processes, their ledger up, and today's
    // total they read from the new primary is every order it holds (1.00 each).
    for d in &daemons {
        d.wait_stderr("answers again");
        let up = |m: &str| metric_value(m, "futu_auth_ledger_up", &[]);
        let m = d.wait_metrics(|m| up(m) == Some(1.0));
        assert_eq!(up(&m), Some(1.0), "{m}");
        let (used, _) = d.client().await.usage("failover").await;
        assert_eq!(used, stored.len() as f64, "today's total on the new primary");
    }

    // The gap, as the callers saw it. The moment the standby took writes is when the
    // harness's poll (psql, every few ms) first saw it take them: a few ms late.
    println!(
        "failover: {} allowed, {} on the new primary ({unanswered} more: refused in flight at the \
         kill; {late} refused late); the primary's processes were gone {:.1} ms after the SIGKILLs; \
         `pg_ctl promote` {:.0} ms after them; the standby took writes {:.0} ms after it",
        allowed.len(),
        stored.len(),
        ms(killed, sigkill),
        ms(promote_started, sigkill),
        ms(promoted, promote_started),
    );
    println!(
        "keys: {} made through daemon 1, asked for before the kill, all on the new primary \
         ({gen_key_failures} gen-key failed in flight or while there was no primary)",
        made.len()
    );
    for d in 0..DAEMONS {
        let mine = || answers.iter().filter(move |a| a.daemon == d);
        let last_allow = mine()
            .filter(|a| a.is_allow() && a.answered < sigkill)
            .map(|a| a.answered)
            .max()
            .expect("allows before the kill");
        let first_allow_after = mine()
            .filter(|a| a.is_allow() && a.sent >= killed)
            .map(|a| a.answered)
            .min()
            .expect("an allow after the promotion");
        let refusals: Vec<Instant> = mine()
            .filter(|a| !a.is_allow() && a.answered >= sigkill && a.answered <= first_allow_after)
            .map(|a| a.answered)
            .collect();
        let first_refusal = refusals.iter().min().copied().expect("refusals after the kill");
        println!(
            "daemon {d}: first refusal {:.1} ms after the SIGKILLs; {} refused `internal` over {:.0} ms \
             until its first allow after the promotion; no allow for {:.0} ms in all; first allow {:.0} ms \
             after `pg_ctl promote`, {:.0} ms after the standby took writes",
            ms(first_refusal, sigkill),
            refusals.len(),
            ms(first_allow_after, first_refusal),
            ms(first_allow_after, last_allow),
            ms(first_allow_after, promote_started),
            ms(first_allow_after, promoted),
        );
    }
}
