//! The key store on PostgreSQL (`--keys-url`): several futu-authd standing for several
//! gateway hosts share one key store in a throwaway cluster
//! ([`futu_authd_tests::postgres`]). A change made through any of them is committed in the
//! database first and reaches the others within a second; each checks against its own
//! snapshot, and refuses trading once it cannot confirm that snapshot for
//! `--keys-max-staleness`.
//!
//! Each test starts its own cluster and its daemons; each daemon is its own "host": its own
//! directory, socket and state (its keys.json is not read with `--keys-url`).
//!
//! `revocations_reach_the_other_host_within_a_second` measures how long a revocation takes
//! to reach the other host; run it with `--nocapture` to see the figures
//! (docs/PERFORMANCE.md).

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use futu_auth_proto::{Decision, KeyId, Market, Reason, Request, Response, TrdSide};
use futu_authd_tests::postgres::{self, Postgres};
use futu_authd_tests::{
    daemon_binary, deny_reason, key_json, keys_json, metric_value, skip, this_fingerprint, token_for, with,
    write_private, Client, Daemon, DaemonBuilder, Run,
};
use serde_json::{json, Value};

/// How soon a change made through one host must be in service on another.
const PROPAGATION: Duration = Duration::from_secs(1);

/// A cluster, or `None` after saying why the test is skipped.
fn cluster() -> Option<Postgres> {
    if let Some(why) = postgres::unavailable() {
        skip(&why);
        return None;
    }
    Some(Postgres::start_for_tests(&[]).unwrap_or_else(|e| panic!("starting PostgreSQL: {e}")))
}

/// A daemon whose keys are in the cluster; `keys` is only its keys.json, which it does
/// not read (the tests import it with futucli).
fn host(pg: &Postgres, keys: &[Value]) -> DaemonBuilder {
    DaemonBuilder::new(keys).arg("--keys-url").arg(pg.url())
}

fn run(out: std::io::Result<Output>) -> Run {
    Run::from(out.expect("run futucli"))
}

/// `futucli import-keys FILE` (and `extra`) through `d`.
fn import(d: &Daemon, file: &Path, extra: &[&str]) -> Run {
    run(d.futucli().arg("import-keys").arg(file).args(extra).output())
}

/// Imports the daemon's own keys.json into the shared store; it must succeed.
fn import_own(d: &Daemon) {
    let r = import(d, &d.keys_path(), &[]);
    assert_eq!(r.code, Some(0), "import-keys: {}{}", r.stdout, r.stderr);
}

/// A simulated sell order of the one symbol these keys trade.
fn sell() -> Option<futu_auth_proto::Order> {
    Some(futu_authd_tests::order(
        Market::HK,
        "HK.00700",
        TrdSide::SELL,
        1.0,
        Some(1.0),
    ))
}

/// A key that reads quotes and places simulated orders, bound to no machine.
fn trader(id: &str, token: &str) -> Value {
    key_json(id, token, &["qot:read", "trade:simulate"])
}

/// Asks `c` about `token` (a quote) until `done` says yes, or fails after `within`; how
/// long it took.
async fn until_decided(
    c: &mut Client,
    token: &str,
    within: Duration,
    what: &str,
    done: impl Fn(&Decision) -> bool,
) -> Duration {
    until_answered(c, token, false, within, what, done).await
}

/// [`until_decided`] for an order of `token`.
async fn until_order(
    c: &mut Client,
    token: &str,
    within: Duration,
    what: &str,
    done: impl Fn(&Decision) -> bool,
) -> Duration {
    until_answered(c, token, true, within, what, done).await
}

/// Asks `c` about `token` — an order, or a quote — until `done` says yes, or fails after
/// `within`; how long it took.
async fn until_answered(
    c: &mut Client,
    token: &str,
    order: bool,
    within: Duration,
    what: &str,
    done: impl Fn(&Decision) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let d = if order {
            c.check(token, "Trd_PlaceOrder", sell()).await
        } else {
            c.check(token, "Qot_GetBasicQot", None).await
        };
        if done(&d) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{what}: not within {within:?}; the last answer: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn refused_unknown(d: &Decision) -> bool {
    !d.is_allow() && deny_reason(d) == Reason::UnknownKey
}

/// The plaintext in what gen-key or rotate-key printed.
fn plaintext_in(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("plaintext: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no plaintext in {stdout:?}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_through_one_host_are_in_service_on_the_other_within_a_second() {
    let Some(pg) = cluster() else { return };
    let seed = token_for("pgk-seed");
    let a = host(&pg, &[trader("seed", &seed)]).start();
    let b = host(&pg, &[]).start();
    let mut cb = b.client().await;
    assert!(refused_unknown(&cb.check(&seed, "Qot_GetBasicQot", None).await));

    import_own(&a);
    until_decided(
        &mut cb,
        &seed,
        PROPAGATION,
        "an imported key on the other host",
        |d| d.is_allow(),
    )
    .await;

    // gen-key on the first host: the new key works on the second.
    let made = run(a
        .futucli()
        .args(["gen-key", "--id", "made", "--scopes", "qot:read,trade:simulate"])
        .output());
    assert_eq!(made.code, Some(0), "{}{}", made.stdout, made.stderr);
    assert!(made.stdout.contains("stored in: postgres://"), "{}", made.stdout);
    assert!(made.stdout.contains("(schema futu_keys)"), "{}", made.stdout);
    let made_token = plaintext_in(&made.stdout);
    until_decided(
        &mut cb,
        &made_token,
        PROPAGATION,
        "a key made on the other host",
        |d| d.is_allow(),
    )
    .await;

    // rotate-key: the new plaintext works there, the old one (overlap 0) is refused.
    let rotated = run(a
        .futucli()
        .args(["rotate-key", "made", "--overlap", "0"])
        .output());
    assert_eq!(rotated.code, Some(0), "{}{}", rotated.stdout, rotated.stderr);
    let new_token = plaintext_in(&rotated.stdout);
    until_decided(
        &mut cb,
        &new_token,
        PROPAGATION,
        "a rotated key's new plaintext",
        |d| d.is_allow(),
    )
    .await;
    assert!(refused_unknown(
        &cb.check(&made_token, "Qot_GetBasicQot", None).await
    ));

    // bind-key --freeze: refused there; --clear: allowed again.
    let frozen = run(a.futucli().args(["bind-key", "made", "--freeze"]).output());
    assert_eq!(frozen.code, Some(0), "{}{}", frozen.stdout, frozen.stderr);
    until_decided(&mut cb, &new_token, PROPAGATION, "a frozen key", |d| {
        !d.is_allow() && deny_reason(d) == Reason::Frozen
    })
    .await;
    let cleared = run(a.futucli().args(["bind-key", "made", "--clear"]).output());
    assert_eq!(cleared.code, Some(0), "{}{}", cleared.stdout, cleared.stderr);
    until_decided(&mut cb, &new_token, PROPAGATION, "a key unfrozen", |d| {
        d.is_allow()
    })
    .await;

    // revoke-key: refused there.
    let revoked = run(a.futucli().args(["revoke-key", "seed"]).output());
    assert_eq!(revoked.code, Some(0), "{}{}", revoked.stdout, revoked.stderr);
    until_decided(&mut cb, &seed, PROPAGATION, "a revoked key", refused_unknown).await;

    // And the other way round: a change through the second reaches the first.
    let mut ca = a.client().await;
    let revoked = run(b.futucli().args(["revoke-key", "made"]).output());
    assert_eq!(revoked.code, Some(0), "{}{}", revoked.stdout, revoked.stderr);
    until_decided(
        &mut ca,
        &new_token,
        PROPAGATION,
        "a key revoked on the second host",
        refused_unknown,
    )
    .await;

    // Both list the same keys.
    let list = |d: &Daemon| run(d.futucli().args(["list-keys", "--json"]).output()).stdout;
    assert_eq!(list(&a), list(&b));
    assert_eq!(
        pg.psql("SELECT max(version) FROM futu_keys.schema_version")
            .unwrap(),
        "1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_the_other_host_within_a_second() {
    let Some(pg) = cluster() else { return };
    const N: usize = 150;
    let tokens: Vec<String> = (0..N).map(|i| token_for(&format!("pgk-rev-{i}"))).collect();
    let keys: Vec<Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| trader(&format!("k{i}"), t))
        .collect();
    let a = host(&pg, &keys).arg("--ledger-url").arg(pg.url()).start();
    let b = host(&pg, &[]).arg("--ledger-url").arg(pg.url()).start();
    import_own(&a);
    let mut ca = a.client().await;
    let mut cb = b.client().await;
    until_decided(&mut cb, &tokens[N - 1], PROPAGATION, "the imported keys", |d| {
        d.is_allow()
    })
    .await;

    let mut after_ack = Vec::with_capacity(N);
    let mut after_send = Vec::with_capacity(N);
    for (i, token) in tokens.iter().enumerate() {
        // Each change is a READY=1 with the keys' count on each host's notify socket, which
        // holds only a few unread: read them, as systemd does.
        a.notifications();
        b.notifications();
        assert!(cb.check(token, "Qot_GetBasicQot", None).await.is_allow());
        let sent = Instant::now();
        let request_id = ca.next_id();
        let id: KeyId = format!("k{i}").parse().unwrap();
        match ca.request(Request::RevokeKey { request_id, id }).await {
            Response::KeyRevoked { .. } => {}
            other => panic!("revoking k{i}: {other:?}"),
        }
        let acked = Instant::now();
        // Asked without a pause: the moment the other host refuses it, to the check.
        loop {
            let d = cb.check(token, "Qot_GetBasicQot", None).await;
            if refused_unknown(&d) {
                break;
            }
            assert!(d.is_allow(), "{d:?}");
            assert!(
                acked.elapsed() < PROPAGATION,
                "k{i} is still allowed on the other host {:?} after its revocation was acknowledged",
                acked.elapsed()
            );
        }
        after_ack.push(acked.elapsed());
        after_send.push(sent.elapsed());
    }
    let figures = |mut v: Vec<Duration>| {
        v.sort();
        let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
        (at(0.5), at(0.99), *v.last().unwrap())
    };
    let (p50, p99, max) = figures(after_ack);
    let (s50, s99, smax) = figures(after_send);
    println!(
        "revocation propagation over {N} revocations (acknowledged on host A → refused on host B): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    println!(
        "revocation sent on host A → refused on host B: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        s50.as_secs_f64() * 1e3,
        s99.as_secs_f64() * 1e3,
        smax.as_secs_f64() * 1e3
    );
    assert!(p99 < PROPAGATION, "p99 {p99:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_notification_is_made_up_for_by_the_periodic_check() {
    let Some(pg) = cluster() else { return };
    let token = token_for("pgk-lost");
    let a = host(&pg, &[trader("lost", &token)]).start();
    let b = host(&pg, &[]).start();
    import_own(&a);
    let mut cb = b.client().await;
    until_decided(&mut cb, &token, PROPAGATION, "the imported key", |d| d.is_allow()).await;

    // A change committed without its notification (as if the listening connections had
    // missed it): only the version check can find it.
    pg.psql(
        "BEGIN; DELETE FROM futu_keys.keys WHERE id = 'lost'; \
         UPDATE futu_keys.store SET version = version + 1; COMMIT;",
    )
    .unwrap();
    until_decided(
        &mut cb,
        &token,
        PROPAGATION,
        "a change nobody notified",
        refused_unknown,
    )
    .await;
    let mut ca = a.client().await;
    until_decided(
        &mut ca,
        &token,
        PROPAGATION,
        "a change nobody notified",
        refused_unknown,
    )
    .await;
    b.wait_stderr("the periodic check found a newer version");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_database_reads_go_on_and_trading_stops_past_the_max_staleness_then_resumes() {
    let Some(pg) = cluster() else { return };
    let token = token_for("pgk-down");
    let d = host(&pg, &[trader("down", &token)])
        .arg("--keys-max-staleness")
        .arg("1s")
        .metrics()
        .start();
    import_own(&d);
    let mut c = d.client().await;
    until_decided(&mut c, &token, PROPAGATION, "the imported key", |d| d.is_allow()).await;
    assert!(c.check(&token, "Trd_PlaceOrder", sell()).await.is_allow());
    let m = d.metrics_text();
    assert_eq!(metric_value(&m, "futu_auth_keys_store_up", &[]), Some(1.0), "{m}");

    pg.stop().expect("stopping PostgreSQL");
    let stopped = Instant::now();
    let refused = loop {
        let order = c.check(&token, "Trd_PlaceOrder", sell()).await;
        if !order.is_allow() {
            break order;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(5),
            "orders still allowed 5 s after the database stopped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    match &refused {
        Decision::Deny { reason, detail, .. } => {
            assert_eq!(*reason, Reason::Internal, "{refused:?}");
            assert!(detail.contains("a revocation may have been missed"), "{detail}");
            assert!(detail.contains("keys store"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    for _ in 0..3 {
        assert!(
            c.check(&token, "Qot_GetBasicQot", None).await.is_allow(),
            "reads go on with the snapshot in service"
        );
        let order = c.check(&token, "Trd_PlaceOrder", sell()).await;
        assert_eq!(deny_reason(&order), Reason::Internal, "{order:?}");
    }
    d.wait_stderr("cannot confirm the snapshot in service");
    d.wait_stderr("(--keys-max-staleness)");
    let m = d.wait_metrics(|m| {
        metric_value(m, "futu_auth_keys_snapshot_age_seconds", &[]).is_some_and(|age| age > 1.0)
    });
    assert_eq!(metric_value(&m, "futu_auth_keys_store_up", &[]), Some(0.0), "{m}");

    pg.start_again().expect("starting PostgreSQL again");
    let until = Instant::now() + Duration::from_secs(10);
    while !c.check(&token, "Trd_PlaceOrder", sell()).await.is_allow() {
        assert!(Instant::now() < until, "orders did not resume within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.wait_stderr("trading resumes");
    let m = d.wait_metrics(|m| metric_value(m, "futu_auth_keys_store_up", &[]) == Some(1.0));
    assert!(
        metric_value(&m, "futu_auth_keys_snapshot_age_seconds", &[]).is_some_and(|age| age < 1.0),
        "{m}"
    );
    assert_eq!(
        d.stderr_text().matches("trading resumes").count(),
        1,
        "one line a change"
    );
}

/// A keys.json with every field keys.json has: each limit, a binding, an expiry, a note,
/// a frozen key, a rotation.
fn every_field() -> String {
    let full = with(
        with(
            with(
                with(
                    key_json(
                        "full",
                        &token_for("pgk-full"),
                        &["qot:read", "acc:read", "trade:simulate"],
                    ),
                    "limits",
                    json!({
                        "allowed_markets": ["HK", "US"],
                        "allowed_symbols": ["HK.00700", "US.AAPL"],
                        "allowed_trd_sides": ["SELL"],
                        "max_order_value": 100000.0,
                        "max_daily_value": 500000.25,
                        "max_orders_per_minute": 3,
                        "hours_window": "22:00-04:00"
                    }),
                ),
                "allowed_machines",
                json!([this_fingerprint()]),
            ),
            "expires_at",
            json!("2099-05-15T10:00:00Z"),
        ),
        "note",
        json!("simulated take-profit sell bot"),
    );
    let frozen = with(
        key_json(
            "frozen",
            &token_for("pgk-frozen"),
            &["trade:real", "trade:unlock"],
        ),
        "allowed_machines",
        json!([]),
    );
    let plain = key_json("plain", &token_for("pgk-plain"), &["qot:read"]);
    let mut text = serde_json::to_string_pretty(&json!({
        "version": 1,
        "keys": [full, frozen, plain],
        "rotations": [{
            "id": "plain",
            "previous_hash": futu_authd_tests::hash_of(&token_for("pgk-plain-old")),
            "until": "2099-01-01T00:00:00Z"
        }]
    }))
    .unwrap();
    text.push('\n');
    text
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_imported_elsewhere_round_trips_every_field_and_import_refuses_what_it_must() {
    let Some(pg) = cluster() else { return };
    let a = host(&pg, &[]).start();
    let b = host(&pg, &[]).start();
    let original = every_field();
    let file = a.dir().join("every-field.json");
    write_private(&file, &original);

    let r = import(&a, &file, &[]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("3 keys added, 0 replaced; 3 keys in the store"),
        "{}",
        r.stdout
    );

    // Exported through the other host: the same JSON, a file --check-config accepts.
    let out = b.dir().join("exported.json");
    let r = run(b.futucli().arg("export-keys").arg("--out").arg(&out).output());
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("Exported 3 keys"), "{}", r.stdout);
    let exported = std::fs::read_to_string(&out).unwrap();
    assert_eq!(json_of(&exported), json_of(&original), "{exported}\n{original}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let checked = std::process::Command::new(daemon_binary())
        .arg("--check-config")
        .arg("--keys-file")
        .arg(&out)
        .output()
        .unwrap();
    assert!(checked.status.success(), "{checked:?}");
    let stdout = run(a.futucli().arg("export-keys").output());
    assert_eq!(json_of(&stdout.stdout), json_of(&original));

    // Into an empty store (a third host's keys.json, through a daemon without --keys-url):
    // the same again.
    let c = DaemonBuilder::with_keys_text(keys_json(&[])).start();
    let r = import(&c, &out, &[]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert_eq!(
        json_of(&std::fs::read_to_string(c.keys_path()).unwrap()),
        json_of(&original)
    );

    // An id the store holds refuses the import, unless --replace.
    let again = import(&a, &file, &[]);
    assert_eq!(again.code, Some(1), "{}{}", again.stdout, again.stderr);
    assert!(
        again.stderr.contains("holds 3 of the file's ids already"),
        "{}",
        again.stderr
    );
    assert!(again.stderr.contains("\"full\""), "{}", again.stderr);
    let replaced = import(&a, &file, &["--replace"]);
    assert_eq!(replaced.code, Some(0), "{}{}", replaced.stdout, replaced.stderr);
    assert!(
        replaced.stdout.contains("0 keys added, 3 replaced"),
        "{}",
        replaced.stdout
    );

    // A file --check-config refuses is refused, and changes nothing.
    let bad = a.dir().join("bad.json");
    write_private(
        &bad,
        &keys_json(&[key_json("bad", &token_for("pgk-bad"), &["trade:everything"])]),
    );
    let r = import(&a, &bad, &[]);
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("bad.json"), "{}", r.stderr);
    assert!(r.stderr.contains("trade:everything"), "{}", r.stderr);
    let stdout = run(b.futucli().arg("export-keys").output());
    assert_eq!(json_of(&stdout.stdout), json_of(&original));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_use_is_the_newest_of_every_host() {
    let Some(pg) = cluster() else { return };
    let used = token_for("pgk-used");
    let idle = token_for("pgk-idle");
    let a = host(&pg, &[trader("used", &used), trader("idle", &idle)]).start();
    let b = host(&pg, &[]).start();
    import_own(&a);
    let mut ca = a.client().await;
    until_decided(&mut ca, &used, PROPAGATION, "the imported key", |d| d.is_allow()).await;
    // The second host has the keys too before it is asked about them (without a check of
    // its own: the key stays unused there).
    let until = Instant::now() + PROPAGATION;
    let has_used = |d: &Daemon| {
        let all = run(d.futucli().args(["list-keys", "--json"]).output());
        json_of(&all.stdout)
            .as_array()
            .is_some_and(|keys| keys.iter().any(|k| k["id"] == "used"))
    };
    while !has_used(&b) {
        assert!(Instant::now() < until, "the imported keys on the second host");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Used on the first host only: the second shows it, within the write interval.
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let usage = run(b.futucli().args(["usage", "used"]).output());
        assert_eq!(usage.code, Some(0), "{}{}", usage.stdout, usage.stderr);
        if !usage.stdout.contains("last used: never") {
            break;
        }
        assert!(Instant::now() < until, "{}", usage.stdout);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for d in [&a, &b] {
        let unused = run(d
            .futucli()
            .args(["list-keys", "--json", "--unused-for", "1m"])
            .output());
        assert_eq!(unused.code, Some(0), "{}{}", unused.stdout, unused.stderr);
        let ids: Vec<Value> = json_of(&unused.stdout)
            .as_array()
            .map(|keys| keys.iter().map(|k| k["id"].clone()).collect())
            .unwrap_or_default();
        assert_eq!(ids, [json!("idle")], "{}", unused.stdout);
        let all = run(d.futucli().args(["list-keys", "--json"]).output());
        let all = json_of(&all.stdout);
        let used = all
            .as_array()
            .and_then(|keys| keys.iter().find(|k| k["id"] == "used"))
            .unwrap_or_else(|| panic!("{all}"));
        assert!(used["last_used"].is_string(), "{used}");
    }
    let rows = pg.psql("SELECT id FROM futu_keys.last_used").unwrap();
    assert_eq!(rows, "used");
}

fn halted(d: &Decision) -> bool {
    !d.is_allow() && deny_reason(d) == Reason::Halted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_through_one_host_stops_trading_on_every_host_within_a_second_and_resume_restores_it() {
    let Some(pg) = cluster() else { return };
    let bot = token_for("pgk-halt-bot");
    let other = token_for("pgk-halt-other");
    let a = host(&pg, &[trader("bot", &bot), trader("other", &other)]).start();
    let mut b = host(&pg, &[]).start();
    import_own(&a);
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    for (c, what) in [(&mut ca, "the first host"), (&mut cb, "the second host")] {
        until_order(c, &bot, PROPAGATION, what, |d| d.is_allow()).await;
    }

    // halt --all through the first: orders refused `halted` on both, with the reason;
    // quotes go on.
    let h = run(a
        .futucli()
        .args(["halt", "--all", "--reason", "exchange outage"])
        .output());
    assert_eq!(h.code, Some(0), "{}{}", h.stdout, h.stderr);
    for (c, what) in [
        (&mut ca, "halt --all on the first host"),
        (&mut cb, "halt --all on the second host"),
    ] {
        for token in [&bot, &other] {
            until_order(c, token, PROPAGATION, what, halted).await;
            let d = c.check(token, "Trd_PlaceOrder", sell()).await;
            assert!(format!("{d:?}").contains("exchange outage"), "{d:?}");
            assert!(c.check(token, "Qot_GetBasicQot", None).await.is_allow());
        }
    }
    // The second host lists the halt and keeps it across a restart: it is in the database.
    let listed = run(b.futucli().args(["list-keys"]).output());
    assert!(listed.stdout.contains("exchange outage"), "{}", listed.stdout);
    b.stop();
    b.restart();
    let mut cb = b.client().await;
    assert!(halted(&cb.check(&bot, "Trd_PlaceOrder", sell()).await));

    // resume --all through the second, halt --key through the second: only that key stays
    // halted, on both.
    let r = run(b.futucli().args(["resume", "--all"]).output());
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let h = run(b
        .futucli()
        .args(["halt", "--key", "bot", "--reason", "runaway loop"])
        .output());
    assert_eq!(h.code, Some(0), "{}{}", h.stdout, h.stderr);
    for (c, what) in [(&mut ca, "the first host"), (&mut cb, "the second host")] {
        until_order(c, &other, PROPAGATION, what, |d| d.is_allow()).await;
        until_order(c, &bot, PROPAGATION, what, |d| {
            halted(d) && format!("{d:?}").contains("runaway loop")
        })
        .await;
    }
    let r = run(a.futucli().args(["resume", "--key", "bot"]).output());
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    for (c, what) in [
        (&mut ca, "resume on the first host"),
        (&mut cb, "resume on the second host"),
    ] {
        until_order(c, &bot, PROPAGATION, what, |d| d.is_allow()).await;
    }
    let store = pg.psql("SELECT top_level FROM futu_keys.store").unwrap();
    assert!(!store.contains("runaway loop"), "{store}");
}
