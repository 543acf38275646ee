//! End-to-end tests of the futu-authd daemon: each test starts the real binary in a
//! temporary directory of its own and talks to it over its Unix socket, its notify socket,
//! its audit file, its stderr and its /metrics endpoint.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use futu_auth_proto::{Decision, ErrorKind, Hello, Iface, Market, Reason, Request, Response, Scope, TrdSide};
use futu_authd_tests::{
    allowed_key, away_from_utc_midnight, decision_of, deny_reason, executable_copy, have_program, key_json,
    keys_json, order, poll, read_jsonl, run_as, this_fingerprint, token_for, with, write_private, Client,
    DaemonBuilder, DEADLINE,
};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

/// The seed's simulation bot: HK only, two symbols, SELL only, 100k per order, 500k a day.
fn sim_bot(token: &str) -> Value {
    with(
        key_json("sim-bot", token, &["qot:read", "acc:read", "trade:simulate"]),
        "limits",
        json!({
            "allowed_markets": ["HK"],
            "allowed_symbols": ["HK.00700", "HK.09988"],
            "allowed_trd_sides": ["SELL"],
            "max_order_value": 100000,
            "max_daily_value": 500000,
        }),
    )
}

/// A key that may place simulated orders with only these limits.
fn trader(id: &str, token: &str, limits: Value) -> Value {
    with(key_json(id, token, &["trade:simulate"]), "limits", limits)
}

fn sell_700(qty: f64, price: f64) -> Option<futu_auth_proto::Order> {
    Some(order(Market::HK, "HK.00700", TrdSide::SELL, qty, Some(price)))
}

/// CLOCK_MONOTONIC in microseconds, the clock of MONOTONIC_USEC.
fn monotonic_usec() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock_gettime");
    t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000
}

/// `HH:MM` of `minutes` after midnight, wrapping around the day.
fn hh_mm(minutes: i64) -> String {
    let m = minutes.rem_euclid(24 * 60);
    format!("{:02}:{:02}", m / 60, m % 60)
}

// ---- 1. systemd notifications -----------------------------------------------------------

#[tokio::test]
async fn ready_reload_and_stop_are_announced_on_the_notify_socket() {
    let research = token_for("research");
    let bot = token_for("sim-bot");
    let mut d = DaemonBuilder::new(&[key_json("research", &research, &["qot:read"]), sim_bot(&bot)]).start();

    // start() returned on READY=1: the socket must already answer, with the keys loaded —
    // no retry here.
    let mode = std::fs::metadata(d.socket_path()).expect("the socket exists when READY=1 arrives");
    assert_eq!(
        mode.permissions().mode() & 0o777,
        0o660,
        "the default --socket-mode"
    );
    let mut c = d.client().await;
    assert_eq!(
        allowed_key(&c.check(&research, "Qot_GetBasicQot", None).await),
        "research"
    );
    let notes = d.notifications();
    let ready = notes.iter().find(|n| n.lines().any(|l| l == "READY=1")).unwrap();
    assert!(
        ready
            .lines()
            .any(|l| l.starts_with("STATUS=") && l.contains("2 keys")),
        "READY=1 comes with a STATUS naming the key count: {ready:?}"
    );

    // SIGHUP: RELOADING=1 and MONOTONIC_USEC in one datagram, then READY=1.
    let mark = d.notifications().len();
    let before = monotonic_usec();
    d.signal(Signal::SIGHUP);
    let (i, reloading) = d.wait_notification(mark, "RELOADING=1");
    let after = monotonic_usec();
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC in the same datagram: {reloading:?}"))
        .parse()
        .expect("MONOTONIC_USEC is a number");
    assert!(
        (before..=after).contains(&usec),
        "MONOTONIC_USEC={usec} is CLOCK_MONOTONIC at the reload ({before}..={after})"
    );
    let (j, ready) = d.wait_notification(i + 1, "READY=1");
    assert!(
        j > i && ready.contains("STATUS="),
        "READY=1 follows the reload: {ready:?}"
    );
    assert!(c.check(&research, "Qot_GetBasicQot", None).await.is_allow());

    // SIGTERM: STOPPING=1, exit 0, socket removed.
    let mark = d.notifications().len();
    let status = d.stop();
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean exit");
    d.wait_notification(mark, "STOPPING=1");
    assert!(!d.socket_path().exists(), "the socket file is removed at exit");
}

/// A check expected to be denied with `reason`, made with the token of `key` (the label
/// `nobody` names no key).
struct DenyCase {
    reason: Reason,
    key: Option<&'static str>,
    token: String,
    endpoint: &'static str,
    order: Option<futu_auth_proto::Order>,
}

fn deny_case(
    reason: Reason,
    key: &'static str,
    endpoint: &'static str,
    order: Option<futu_auth_proto::Order>,
) -> DenyCase {
    DenyCase {
        reason,
        key: (key != "nobody").then_some(key),
        token: token_for(key),
        endpoint,
        order,
    }
}

// ---- 2. every reason code --------------------------------------------------------------

#[tokio::test]
async fn each_rule_denies_with_its_own_reason_code_and_allows_name_the_key() {
    away_from_utc_midnight(5);
    let t = |l: &str| token_for(l);
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let minute = i64::from(now.hour()) * 60 + i64::from(now.minute());
    // Two to three hours ahead never holds now, whatever the time of day (it may cross
    // midnight, which the daemon handles); an hour either side always does.
    let closed = format!("{}-{}", hh_mm(minute + 120), hh_mm(minute + 180));
    let open = format!("{}-{}", hh_mm(minute - 60), hh_mm(minute + 60));
    let keys = vec![
        key_json("research", &t("research"), &["qot:read"]),
        sim_bot(&t("sim-bot")),
        with(
            key_json("old", &t("old"), &["qot:read"]),
            "expires_at",
            json!("2020-01-01T00:00:00Z"),
        ),
        with(
            key_json("frozen", &t("frozen"), &["qot:read"]),
            "allowed_machines",
            json!([]),
        ),
        with(
            key_json("elsewhere", &t("elsewhere"), &["qot:read"]),
            "allowed_machines",
            json!([futu_auth_keys::machine::fingerprint_of("another-host-machine-id").as_str()]),
        ),
        with(
            key_json("here", &t("here"), &["qot:read"]),
            "allowed_machines",
            json!([this_fingerprint()]),
        ),
        with(
            key_json("closed", &t("closed"), &["qot:read"]),
            "limits",
            json!({ "hours_window": closed }),
        ),
        with(
            key_json("open", &t("open"), &["qot:read"]),
            "limits",
            json!({ "hours_window": open }),
        ),
        trader("daily", &t("daily"), json!({ "max_daily_value": 1000 })),
        trader("rate", &t("rate"), json!({ "max_orders_per_minute": 1 })),
    ];
    let d = DaemonBuilder::new(&keys).env("TZ", "UTC").metrics().start();
    let mut c = d.client().await;

    // Allows carry the key id (and, for an order that consumed value, a ticket).
    for id in ["research", "here", "open"] {
        let got = c.check(&t(id), "Qot_GetBasicQot", None).await;
        assert_eq!(
            got,
            Decision::Allow {
                key_id: id.parse().unwrap(),
                scope: Some(Scope::QotRead),
                ticket: None
            }
        );
    }
    match c
        .check(&t("sim-bot"), "Trd_PlaceOrder", sell_700(100.0, 320.5))
        .await
    {
        Decision::Allow {
            key_id,
            scope,
            ticket,
        } => {
            assert_eq!(key_id.as_str(), "sim-bot");
            assert_eq!(scope, Some(Scope::TradeSimulate));
            assert!(ticket.is_some(), "an allowed order has a ticket");
        }
        other => panic!("a whitelisted order under the caps is allowed, got {other:?}"),
    }
    assert!(c
        .check(&t("daily"), "Trd_PlaceOrder", sell_700(6.0, 100.0))
        .await
        .is_allow());
    assert!(c
        .check(&t("rate"), "Trd_PlaceOrder", sell_700(1.0, 1.0))
        .await
        .is_allow());
    let allows = 6;

    let quote = "Qot_GetBasicQot";
    let place = "Trd_PlaceOrder";
    let cases = [
        deny_case(Reason::UnknownKey, "nobody", quote, None),
        deny_case(Reason::Expired, "old", quote, None),
        deny_case(Reason::Frozen, "frozen", quote, None),
        deny_case(Reason::Machine, "elsewhere", quote, None),
        deny_case(Reason::Scope, "research", "Trd_GetFunds", None),
        deny_case(Reason::UnknownEndpoint, "research", "Qot_NoSuchProtocol", None),
        deny_case(
            Reason::Market,
            "sim-bot",
            place,
            Some(order(Market::US, "US.AAPL", TrdSide::SELL, 1.0, Some(100.0))),
        ),
        deny_case(
            Reason::Symbol,
            "sim-bot",
            place,
            Some(order(Market::HK, "HK.00005", TrdSide::SELL, 1.0, Some(60.0))),
        ),
        deny_case(
            Reason::Side,
            "sim-bot",
            place,
            Some(order(Market::HK, "HK.00700", TrdSide::BUY, 1.0, Some(320.0))),
        ),
        deny_case(Reason::Hours, "closed", quote, None),
        deny_case(Reason::OrderValue, "sim-bot", place, sell_700(1000.0, 320.5)),
        deny_case(Reason::DailyValue, "daily", place, sell_700(6.0, 100.0)),
        deny_case(Reason::Rate, "rate", place, sell_700(1.0, 1.0)),
        deny_case(Reason::BadOrder, "sim-bot", place, None),
        deny_case(Reason::BadOrder, "sim-bot", place, sell_700(0.0, 320.5)),
    ];
    for DenyCase {
        reason,
        key,
        token,
        endpoint,
        order,
    } in &cases
    {
        match c.check(token, endpoint, order.clone()).await {
            Decision::Deny {
                reason: got,
                key_id,
                detail,
                retry_after_ms,
                limit,
            } => {
                assert_eq!(got, *reason, "{endpoint} with key {key:?}: {detail}");
                assert_eq!(
                    key_id.as_ref().map(|k| k.as_str()),
                    *key,
                    "the deny names the key"
                );
                assert!(!detail.is_empty(), "a deny explains itself");
                // Protocol version 2: a limit's figures, and when waiting helps.
                let by_limit = matches!(
                    reason,
                    Reason::Rate | Reason::DailyValue | Reason::OrderValue | Reason::Hours
                );
                assert_eq!(limit.is_some(), by_limit, "{reason}: {limit:?}");
                let waiting_helps = matches!(reason, Reason::Rate | Reason::DailyValue | Reason::Hours);
                assert_eq!(
                    retry_after_ms.is_some(),
                    waiting_helps,
                    "{reason}: {retry_after_ms:?}"
                );
            }
            allow => panic!("expected {reason} for key {key:?} on {endpoint}, got {allow:?}"),
        }
    }

    let metrics = d.metrics_text();
    let records = d.wait_audit(allows + cases.len());
    assert_eq!(records.len(), allows + cases.len(), "one audit record per check");
    for DenyCase {
        reason,
        key,
        endpoint,
        ..
    } in &cases
    {
        let key_label = key.unwrap_or("<none>");
        let n = futu_authd_tests::metric_value(
            &metrics,
            "futu_auth_limit_rejects_total",
            &[
                ("iface", "rest"),
                ("key_id", key_label),
                ("reason", reason.as_str()),
            ],
        );
        assert!(
            n >= Some(1.0),
            "futu_auth_limit_rejects_total counts {reason} for {key_label}:\n{metrics}"
        );
        assert!(
            records.iter().any(|r| r["outcome"] == "reject"
                && r["reason"] == reason.as_str()
                && r["endpoint"] == *endpoint
                && r["key_id"].as_str() == *key),
            "the audit file has the {reason} reject of {key:?}"
        );
    }
    for id in ["research", "here", "open", "sim-bot", "daily", "rate"] {
        assert!(
            records
                .iter()
                .any(|r| r["outcome"] == "allow" && r["key_id"] == id),
            "the audit file has the allow of {id}"
        );
    }
}

// ---- 3. hot reload ------------------------------------------------------------------------

#[tokio::test]
async fn sighup_serves_added_keys_refuses_removed_ones_and_reopens_a_rotated_audit_file() {
    let alpha = token_for("alpha");
    let beta = token_for("beta");
    let alpha_key = key_json("alpha", &alpha, &["qot:read"]);
    let beta_key = key_json("beta", &beta, &["qot:read"]);
    let d = DaemonBuilder::new(std::slice::from_ref(&alpha_key)).start();
    let mut c = d.client().await;
    assert!(c.check(&alpha, "Qot_GetBasicQot", None).await.is_allow());
    assert_eq!(
        deny_reason(&c.check(&beta, "Qot_GetBasicQot", None).await),
        Reason::UnknownKey
    );

    // A key added to keys.json is served right after the reload.
    d.write_keys(&[alpha_key.clone(), beta_key.clone()]);
    let mark = d.notifications().len();
    d.signal(Signal::SIGHUP);
    let (i, _) = d.wait_notification(mark, "RELOADING=1");
    d.wait_notification(i + 1, "READY=1");
    assert_eq!(
        allowed_key(&c.check(&beta, "Qot_GetBasicQot", None).await),
        "beta"
    );
    let before_rotation = d.wait_audit(3);
    assert_eq!(before_rotation.len(), 3);

    // logrotate: move the file away, SIGHUP; a removed key is refused on the next check.
    let rotated = d.dir().join("audit.jsonl.1");
    std::fs::rename(d.audit_path(), &rotated).unwrap();
    d.write_keys(&[beta_key]);
    let mark = d.notifications().len();
    d.signal(Signal::SIGHUP);
    let (i, _) = d.wait_notification(mark, "RELOADING=1");
    d.wait_notification(i + 1, "READY=1");
    // READY=1 is sent when keys.json is reloaded; the audit file is reopened just after
    // (server.rs on_hangup), so wait for the fresh file before writing records into it.
    poll("a fresh audit.jsonl after SIGHUP", || {
        d.audit_path().exists().then_some(())
    });
    let gone = c.check(&alpha, "Qot_GetBasicQot", None).await;
    assert_eq!(
        deny_reason(&gone),
        Reason::UnknownKey,
        "a removed key is refused at once"
    );
    assert!(c.check(&beta, "Qot_GetBasicQot", None).await.is_allow());

    let fresh = d.wait_audit(2);
    let ids = |recs: &[Value]| {
        recs.iter()
            .map(|r| r["request_id"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&fresh), vec![4, 5], "new records go to the fresh audit.jsonl");
    assert_eq!(fresh[0]["reason"], "unknown_key");
    assert_eq!(
        ids(&read_jsonl(&rotated)),
        vec![1, 2, 3],
        "the rotated file keeps the old records only"
    );
}

// ---- 4. a broken reload ----------------------------------------------------------------

#[tokio::test]
async fn a_broken_keys_file_on_reload_keeps_the_old_keys_and_limits_serving() {
    let alpha = token_for("alpha");
    let beta = token_for("beta");
    let d = DaemonBuilder::new(&[trader("alpha", &alpha, json!({ "max_order_value": 1000 }))])
        .metrics()
        .start();
    let mut c = d.client().await;
    assert!(c
        .check(&alpha, "Trd_PlaceOrder", sell_700(1.0, 500.0))
        .await
        .is_allow());
    let big = c.check(&alpha, "Trd_PlaceOrder", sell_700(10.0, 500.0)).await;
    assert_eq!(deny_reason(&big), Reason::OrderValue);

    // The typo would silently drop the cap if the file were taken; it must be refused.
    d.write_keys(&[
        trader("alpha", &alpha, json!({ "max_order_valeu": 1000 })),
        key_json("beta", &beta, &["qot:read"]),
    ]);
    let mark = d.notifications().len();
    d.signal(Signal::SIGHUP);
    let (i, _) = d.wait_notification(mark, "RELOADING=1");
    let (_, ready) = d.wait_notification(i + 1, "READY=1");
    assert!(
        ready.contains("1 keys"),
        "still serving the one old key: {ready:?}"
    );

    let big = c.check(&alpha, "Trd_PlaceOrder", sell_700(10.0, 500.0)).await;
    assert_eq!(deny_reason(&big), Reason::OrderValue, "the old cap still holds");
    assert!(c
        .check(&alpha, "Trd_PlaceOrder", sell_700(1.0, 500.0))
        .await
        .is_allow());
    let new = c.check(&beta, "Qot_GetBasicQot", None).await;
    assert_eq!(
        deny_reason(&new),
        Reason::UnknownKey,
        "nothing of the broken file is served"
    );

    let metrics = d.metrics_text();
    let reloads =
        |result| futu_authd_tests::metric_value(&metrics, "futu_auth_reloads_total", &[("result", result)]);
    assert_eq!(reloads("error"), Some(1.0), "{metrics}");
    assert_eq!(reloads("ok").unwrap_or(0.0), 0.0, "{metrics}");
    let stderr = d.wait_stderr("max_order_valeu");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("max_order_valeu") && l.contains("\"alpha\"")),
        "the error names the key and the field:\n{stderr}"
    );
}

// ---- 5. kill -9 -------------------------------------------------------------------------

#[tokio::test]
async fn kill_9_and_restart_keep_the_rate_window_and_the_daily_total() {
    away_from_utc_midnight(5);
    let fast = token_for("fast");
    let daily = token_for("daily");
    let mut d = DaemonBuilder::new(&[
        trader("fast", &fast, json!({ "max_orders_per_minute": 3 })),
        trader("daily", &daily, json!({ "max_daily_value": 1000 })),
    ])
    .start();
    {
        let mut c = d.client().await;
        for _ in 0..3 {
            assert!(c
                .check(&fast, "Trd_PlaceOrder", sell_700(1.0, 1.0))
                .await
                .is_allow());
        }
        assert!(c
            .check(&daily, "Trd_PlaceOrder", sell_700(6.0, 100.0))
            .await
            .is_allow());
    }

    d.signal(Signal::SIGKILL);
    assert_eq!(d.wait_exit().signal(), Some(9));
    d.restart();

    let mut c = d.client().await;
    let fourth = c.check(&fast, "Trd_PlaceOrder", sell_700(1.0, 1.0)).await;
    assert_eq!(
        deny_reason(&fourth),
        Reason::Rate,
        "the three orders before the kill still count"
    );
    let again = c.check(&daily, "Trd_PlaceOrder", sell_700(6.0, 100.0)).await;
    assert_eq!(
        deny_reason(&again),
        Reason::DailyValue,
        "600 of 1000 was used before the kill"
    );
    let rest = c.check(&daily, "Trd_PlaceOrder", sell_700(4.0, 100.0)).await;
    assert!(rest.is_allow(), "exactly the remaining 400 still fits: {rest:?}");
}

#[tokio::test]
async fn a_ticket_issued_before_kill_9_can_be_released_after_restart() {
    away_from_utc_midnight(5);
    let daily = token_for("daily");
    let mut d = DaemonBuilder::new(&[trader("daily", &daily, json!({ "max_daily_value": 1000 }))]).start();
    let ticket = {
        let mut c = d.client().await;
        match c.check(&daily, "Trd_PlaceOrder", sell_700(6.0, 100.0)).await {
            Decision::Allow { ticket: Some(t), .. } => t,
            other => panic!("an allowed order has a ticket: {other:?}"),
        }
    };
    d.signal(Signal::SIGKILL);
    d.wait_exit();
    d.restart();

    let mut c = d.client().await;
    let id = c.next_id();
    match c
        .request(Request::Release {
            request_id: id,
            ticket,
        })
        .await
    {
        Response::Released {
            request_id,
            key_id,
            refunded_value,
        } => {
            assert_eq!(
                (request_id, key_id.as_str(), refunded_value),
                (id, "daily", 600.0)
            );
        }
        other => panic!("releasing ticket {ticket} after the restart: {other:?}"),
    }
    let id = c.next_id();
    let again = c
        .request(Request::Release {
            request_id: id,
            ticket,
        })
        .await;
    assert!(
        matches!(
            again,
            Response::Error {
                kind: ErrorKind::AlreadyReleased,
                ..
            }
        ),
        "a ticket is released once: {again:?}"
    );
    match c.check(&daily, "Trd_PlaceOrder", sell_700(10.0, 100.0)).await {
        Decision::Allow { ticket: Some(t), .. } => {
            assert_ne!(
                t, ticket,
                "tickets are not reused after a restart ({t} after {ticket})"
            )
        }
        other => panic!("the refunded 600 can be spent again: {other:?}"),
    }
}

// ---- 6. pipelining ------------------------------------------------------------------------

#[tokio::test]
async fn a_hundred_pipelined_checks_are_answered_in_order_with_their_ids() {
    let research = token_for("research");
    let stranger = token_for("stranger");
    let d = DaemonBuilder::new(&[key_json("research", &research, &["qot:read"])]).start();
    let mut c = d.client().await;
    let ids: Vec<u64> = (0..100u64).map(|i| 1_000_000 - i * 7919).collect();
    for (i, id) in ids.iter().enumerate() {
        let token = if i % 2 == 0 { &research } else { &stranger };
        let mut check = c.check_request(Iface::Grpc, token, "Qot_GetBasicQot", None);
        check.request_id = *id;
        c.feed(Request::Check(check)).await;
    }
    c.flush().await;
    for (i, id) in ids.iter().enumerate() {
        let decision = decision_of(*id, c.recv().await);
        assert_eq!(
            decision.is_allow(),
            i % 2 == 0,
            "answer {i} matches request {i}: {decision:?}"
        );
    }
}

// ---- 7. admin peers -------------------------------------------------------------------

#[tokio::test]
async fn admin_requests_from_a_stranger_are_forbidden_but_the_admin_group_may_send_them() {
    if !nix::unistd::geteuid().is_root() {
        return futu_authd_tests::skip("needs root to run a client as another uid");
    }
    if !have_program("setpriv") {
        return futu_authd_tests::skip("setpriv (util-linux) is not installed");
    }
    let Some(adm) = nix::unistd::Group::from_name("adm").ok().flatten() else {
        return futu_authd_tests::skip("this host has no group `adm` for --admin-group");
    };
    let adm_gid = adm.gid.as_raw();
    let research = token_for("research");
    let d = DaemonBuilder::new(&[key_json("research", &research, &["qot:read"])])
        .dir_mode(0o755)
        .arg("--socket-mode")
        .arg("0666")
        .arg("--admin-group")
        .arg("adm")
        .metrics()
        .start();
    let mode = std::fs::metadata(d.socket_path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o666, "--socket-mode 0666 is applied");
    // The probe must be reachable by uid 65534: copy it into the (0755) daemon directory.
    let probe = executable_copy(Path::new(env!("CARGO_BIN_EXE_authd-probe")), d.dir());
    let keys_before = std::fs::read_to_string(d.keys_path()).unwrap();

    let ask = |groups: &[u32], requests: &[Value]| -> Vec<Response> {
        let socket = d.socket_path();
        let texts: Vec<String> = requests.iter().map(Value::to_string).collect();
        let mut args: Vec<&OsStr> = vec![socket.as_os_str()];
        args.extend(texts.iter().map(OsStr::new));
        let out = run_as(65534, 65534, groups, &probe, &args);
        assert!(
            out.status.success(),
            "authd-probe as uid 65534 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("probe output {l:?}: {e}")))
            .collect()
    };

    let spec = json!({ "id": "intruder", "scopes": ["trade:real"], "limits": {},
                       "allowed_machines": null, "expires_at": null, "note": null });
    let answers = ask(
        &[],
        &[
            json!({ "ListKeys": { "request_id": 1 } }),
            json!({ "GenKey": { "request_id": 2, "spec": spec } }),
            json!({ "Reload": { "request_id": 3 } }),
            json!({ "Check": { "request_id": 4, "token": research, "iface": "rest",
                               "endpoint": "Qot_GetBasicQot", "order": null, "dry_run": false } }),
        ],
    );
    assert_eq!(answers.len(), 4);
    for (id, answer) in (1..=3).zip(&answers) {
        assert_eq!(
            deny_reason(&decision_of(id, answer.clone())),
            Reason::Forbidden,
            "admin request {id} from uid 65534"
        );
    }
    assert_eq!(
        allowed_key(&decision_of(4, answers[3].clone())),
        "research",
        "a Check still works"
    );
    assert_eq!(
        std::fs::read_to_string(d.keys_path()).unwrap(),
        keys_before,
        "no key was made"
    );

    let records = d.wait_audit(4);
    for op in ["ListKeys", "GenKey", "Reload"] {
        assert!(
            records.iter().any(|r| r["endpoint"] == op
                && r["outcome"] == "reject"
                && r["reason"] == "forbidden"
                && r["peer_uid"] == 65534),
            "the audit file has the forbidden {op} of uid 65534: {records:#?}"
        );
    }
    assert!(records
        .iter()
        .any(|r| r["kind"] == "check" && r["peer_uid"] == 65534 && r["outcome"] == "allow"));

    // The same uid with `adm` as a supplementary group is an administrator.
    let answers = ask(&[adm_gid], &[json!({ "ListKeys": { "request_id": 9 } })]);
    match &answers[..] {
        [Response::Keys { request_id: 9, keys }] => {
            let ids: Vec<&str> = keys.iter().map(|k| k.id.as_str()).collect();
            assert_eq!(ids, ["research"]);
        }
        other => panic!("ListKeys from a member of --admin-group: {other:?}"),
    }
    let metrics = d.metrics_text();
    let admin = |outcome| {
        futu_authd_tests::metric_value(
            &metrics,
            "futu_auth_admin_requests_total",
            &[("op", "ListKeys"), ("outcome", outcome)],
        )
    };
    assert_eq!(
        (admin("reject"), admin("allow")),
        (Some(1.0), Some(1.0)),
        "{metrics}"
    );
}

// ---- 8. one ledger under concurrency ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_connections_racing_one_key_get_exactly_its_rate_limit() {
    let token = token_for("racer");
    let d = DaemonBuilder::new(&[trader("racer", &token, json!({ "max_orders_per_minute": 5 }))]).start();
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut c = d.client().await;
        let token = token.clone();
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut ids = Vec::new();
            for _ in 0..50 {
                let check = c.check_request(Iface::Rest, &token, "Trd_PlaceOrder", sell_700(1.0, 1.0));
                ids.push(check.request_id);
                c.feed(Request::Check(check)).await;
            }
            c.flush().await;
            let mut got = Vec::new();
            for id in ids {
                got.push(decision_of(id, c.recv().await));
            }
            got
        }));
    }
    let mut allows = 0;
    let mut rate = 0;
    for t in tasks {
        for decision in t.await.unwrap() {
            match decision.reason() {
                None => allows += 1,
                Some(Reason::Rate) => rate += 1,
                Some(other) => panic!("unexpected deny {other}: {decision:?}"),
            }
        }
    }
    assert_eq!(
        (allows, rate),
        (5, 395),
        "exactly max_orders_per_minute orders in total"
    );
}

// ---- 9. metrics ---------------------------------------------------------------------------

#[tokio::test]
async fn metrics_carry_the_seed_families_with_the_seed_labels() {
    let research = token_for("research");
    let bot = token_for("sim-bot");
    let d = DaemonBuilder::new(&[
        key_json("research", &research, &["qot:read"]),
        trader("sim-bot", &bot, json!({ "max_orders_per_minute": 1 })),
    ])
    .metrics()
    .start();
    let mut c = d.client().await;
    assert!(c.check(&research, "Qot_GetBasicQot", None).await.is_allow());
    assert!(c.check(&research, "3004", None).await.is_allow());
    assert!(c
        .check_via(Iface::Grpc, &bot, "Trd_PlaceOrder", sell_700(1.0, 1.0))
        .await
        .is_allow());
    let rate = c
        .check_via(Iface::Grpc, &bot, "Trd_PlaceOrder", sell_700(1.0, 1.0))
        .await;
    assert_eq!(deny_reason(&rate), Reason::Rate);
    let push = c.check_scope(&research, Iface::Ws, Scope::TradeReal).await;
    assert_eq!(deny_reason(&push), Reason::Scope);
    assert!(c
        .check_scope(&research, Iface::Ws, Scope::QotRead)
        .await
        .is_allow());

    let text = d.metrics_text();
    for line in [
        r#"futu_auth_events_total{iface="rest",outcome="allow",key_id="research"} 2"#,
        r#"futu_auth_events_total{iface="grpc",outcome="allow",key_id="sim-bot"} 1"#,
        r#"futu_auth_events_total{iface="grpc",outcome="reject",key_id="sim-bot"} 1"#,
        r#"futu_auth_limit_rejects_total{iface="grpc",key_id="sim-bot",reason="rate"} 1"#,
        r#"futu_auth_limit_rejects_total{iface="ws",key_id="research",reason="scope"} 1"#,
        r#"futu_ws_filtered_pushes_total{required_scope="trade",key_id="research"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "/metrics has `{line}`:\n{text}");
    }
    assert!(
        !text.contains(r#"required_scope="qot""#),
        "an allowed push is not counted as filtered:\n{text}"
    );
    assert_eq!(d.http_get("/healthz"), (200, "ok\n".to_owned()));
}

// ---- 10. the seed's jq queries ------------------------------------------------------------

fn sh(script: &str, file: &Path) -> (bool, String, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .expect("run sh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_audit_file_answers_the_seeds_jq_queries() {
    if !have_program("jq") {
        return futu_authd_tests::skip("jq is not installed");
    }
    let research = token_for("research");
    let bot = token_for("sim-bot");
    let mut d = DaemonBuilder::new(&[
        key_json("research", &research, &["qot:read"]),
        with(
            key_json("sim-bot", &bot, &["qot:read", "acc:read", "trade:simulate"]),
            "limits",
            json!({ "allowed_trd_sides": ["SELL"], "max_orders_per_minute": 3 }),
        ),
    ])
    .start();
    let mut c = d.client().await;
    assert!(c.check(&research, "Qot_GetBasicQot", None).await.is_allow());
    assert!(c.check(&bot, "Qot_GetBasicQot", None).await.is_allow());
    assert!(c.check(&bot, "Trd_GetFunds", None).await.is_allow());
    let buy = Some(order(Market::HK, "HK.00700", TrdSide::BUY, 1.0, Some(1.0)));
    for _ in 0..2 {
        assert_eq!(
            deny_reason(&c.check(&bot, "Trd_PlaceOrder", buy.clone()).await),
            Reason::Side
        );
    }
    for i in 0..6 {
        let d = c.check(&bot, "Trd_PlaceOrder", sell_700(1.0, 1.0)).await;
        assert_eq!(d.is_allow(), i < 3, "order {i}: {d:?}");
    }
    let unknown = c.check(&token_for("nobody"), "Qot_GetBasicQot", None).await;
    assert_eq!(deny_reason(&unknown), Reason::UnknownKey);
    assert_eq!(d.stop().code(), Some(0));
    let file = d.audit_path();
    assert_eq!(read_jsonl(&file).len(), 12);

    // 1. recent rejects. tail counts lines of jq's pretty output, so this shows the end of
    //    the last records; every outcome in it is a reject.
    let (ok, out, err) = sh(r#"jq 'select(.outcome=="reject")' "$1" | tail -20"#, &file);
    assert!(ok, "{err}");
    let outcomes: Vec<&str> = out.lines().filter(|l| l.contains("\"outcome\":")).collect();
    assert!(!outcomes.is_empty(), "the tail shows an outcome:\n{out}");
    assert!(
        outcomes.iter().all(|l| l.contains("\"reject\"")),
        "only rejects:\n{out}"
    );
    //    With -c each record is one line, and tail -20 gives whole records: all 6 rejects.
    let (ok, out, err) = sh(r#"jq -c 'select(.outcome=="reject")' "$1" | tail -20"#, &file);
    assert!(ok, "{err}");
    let rejects: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rejects.len(), 6);
    assert!(rejects.iter().all(|r| r["outcome"] == "reject"));

    // 2. sim-bot's orders, allowed or not. The seed's text parses as
    //    `(.key_id=="sim-bot" and .endpoint) | test("order")` and fails on a boolean.
    let (ok, out, err) = sh(
        r#"jq 'select(.key_id=="sim-bot" and .endpoint|test("order"))' "$1""#,
        &file,
    );
    assert!(!ok && out.is_empty(), "the seed's literal query fails in jq");
    assert!(err.contains("cannot be matched, as it is not a string"), "{err}");
    let (ok, out, err) = sh(
        r#"jq 'select(.key_id=="sim-bot" and (.endpoint|test("order";"i")))' "$1" | wc -l"#,
        &file,
    );
    assert!(ok, "{err}");
    let lines: usize = out.trim().parse().unwrap();
    let (_, objects, _) = sh(
        r#"jq -c 'select(.key_id=="sim-bot" and (.endpoint|test("order";"i")))' "$1" | wc -l"#,
        &file,
    );
    assert_eq!(objects.trim(), "8", "2 BUY + 6 SELL order checks of sim-bot");
    assert!(
        lines > 8,
        "the pretty form prints several lines per record ({lines})"
    );

    // 3. the reject reason histogram.
    let (ok, out, err) = sh(
        r#"jq -r 'select(.outcome=="reject") | .reason' "$1" | sort | uniq -c | sort -rn"#,
        &file,
    );
    assert!(ok, "{err}");
    let histogram: Vec<(u32, String)> = out
        .lines()
        .map(|l| {
            let (n, reason) = l.trim().split_once(' ').unwrap();
            (n.parse().unwrap(), reason.to_owned())
        })
        .collect();
    assert_eq!(
        histogram,
        [
            (3, "rate".to_owned()),
            (2, "side".to_owned()),
            (1, "unknown_key".to_owned())
        ]
    );
}

// ---- 11. bad input ------------------------------------------------------------------------

/// Reads the connection's last words: an Error of `kind` (request id 0) where the daemon
/// could send one (`optional` when the spec allows a plain close), then the close.
async fn expect_refusal(c: &mut Client, kind: ErrorKind, optional: bool) {
    match c.next_frame().await {
        Some(Ok(Response::Error { kind: got, .. })) => {
            assert_eq!(got, kind);
            c.expect_closed().await;
        }
        None if optional => {}
        other => panic!("expected an Error {kind} and a close, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_frames_get_an_error_and_close_only_their_own_connection() {
    let research = token_for("research");
    let d = DaemonBuilder::new(&[key_json("research", &research, &["qot:read"])])
        .metrics()
        .start();
    let mut good = d.client().await;
    assert!(good.check(&research, "Qot_GetBasicQot", None).await.is_allow());

    // A frame announcing 1 MiB: decided from the 4 length bytes alone.
    let mut huge = d.client().await;
    huge.write_raw(&(1u32 << 20).to_be_bytes()).await;
    expect_refusal(&mut huge, ErrorKind::BadFrame, true).await;

    // Garbage bytes after Hello, in a well-formed frame: not a message.
    let mut garbage = d.client().await;
    garbage
        .write_raw(&[0, 0, 0, 5, 0xff, 0xfe, 0x13, 0x37, 0x00])
        .await;
    expect_refusal(&mut garbage, ErrorKind::BadFrame, false).await;

    // A Check before Hello.
    let mut early = Client::connect(&d.socket_path()).await;
    let check = early.check_request(Iface::Rest, &research, "Qot_GetBasicQot", None);
    early.send(Request::Check(check)).await;
    expect_refusal(&mut early, ErrorKind::HelloFirst, false).await;

    // A Hello for protocol version 0, which no futu-authd speaks (a newer version than the
    // daemon's is answered with the daemon's: tests/tests/versions.rs).
    let mut future = Client::connect(&d.socket_path()).await;
    future
        .send(Request::Hello(Hello {
            protocol_version: 0,
            client_name: "from-the-void".into(),
        }))
        .await;
    match future.next_frame().await {
        Some(Ok(Response::Error { request_id, kind, .. })) => {
            assert_eq!((request_id, kind), (0, ErrorKind::Version));
            future.expect_closed().await;
        }
        other => panic!("expected Error version, got {other:?}"),
    }

    // The connection opened before all this still works.
    assert!(good.check(&research, "Qot_GetBasicQot", None).await.is_allow());
    let metrics = d.metrics_text();
    for kind in ["too_large", "malformed", "hello_first", "version"] {
        let n = futu_authd_tests::metric_value(&metrics, "futu_auth_bad_frames_total", &[("kind", kind)]);
        assert_eq!(
            n,
            Some(1.0),
            "futu_auth_bad_frames_total{{kind={kind:?}}}:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn a_request_before_hello_is_refused_with_request_id_zero() {
    let research = token_for("research");
    let d = DaemonBuilder::new(&[key_json("research", &research, &["qot:read"])]).start();
    let mut early = Client::connect(&d.socket_path()).await;
    let mut check = early.check_request(Iface::Rest, &research, "Qot_GetBasicQot", None);
    check.request_id = 77;
    early.send(Request::Check(check)).await;
    match early.next_frame().await {
        Some(Ok(Response::Error { request_id, kind, .. })) => {
            // docs/PROTOCOL.md §3.5: "request_id is 0 in these errors".
            assert_eq!((kind, request_id), (ErrorKind::HelloFirst, 0));
        }
        other => panic!("expected Error hello_first, got {other:?}"),
    }
}

// ---- 12. --check-config -------------------------------------------------------------------

#[test]
fn check_config_accepts_a_good_keys_file_and_names_the_line_key_and_field_of_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let research = key_json("research", &token_for("research"), &["qot:read"]);
    write_private(
        &path,
        &keys_json(&[research.clone(), sim_bot(&token_for("sim-bot"))]),
    );
    let run = |path: &Path| {
        Command::new(futu_authd_tests::daemon_binary())
            .arg("--check-config")
            .arg("--keys-file")
            .arg(path)
            .env_remove("FUTU_AUTHD_KEYS_FILE")
            .output()
            .unwrap()
    };
    let good = run(&path);
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(String::from_utf8_lossy(&good.stdout).contains("ok, 2 keys"));

    let broken = keys_json(&[
        research,
        trader(
            "sim-bot",
            &token_for("sim-bot"),
            json!({ "max_order_valeu": 100000 }),
        ),
    ]);
    let line = broken
        .lines()
        .position(|l| l.contains("max_order_valeu"))
        .unwrap()
        + 1;
    write_private(&path, &broken);
    let bad = run(&path);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    for part in [
        format!("{}:{line}:", path.display()),
        "key \"sim-bot\"".to_owned(),
        "keys[1].limits.max_order_valeu".to_owned(),
        "unknown field".to_owned(),
    ] {
        assert!(stderr.contains(&part), "stderr names {part:?}: {stderr}");
    }
}

#[test]
fn the_daemon_refuses_to_start_on_a_broken_keys_file() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    write_private(&keys, "{\"version\": 1, \"keys\": [ {\"id\": \"x\"} ]}\n");
    let mut child = Command::new(futu_authd_tests::daemon_binary())
        .arg("--socket")
        .arg(dir.path().join("auth.sock"))
        .arg("--keys-file")
        .arg(&keys)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--metrics-listen", "off", "--audit-journald=false"])
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("futu-authd kept running on a broken keys.json");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("keys.json"), "{stderr}");
    assert!(!dir.path().join("auth.sock").exists(), "it never listened");
}

// ---- 13. no plaintext anywhere --------------------------------------------------------

#[tokio::test]
async fn no_plaintext_token_reaches_the_audit_file_stderr_or_metrics() {
    let research = token_for("research");
    let bot = token_for("sim-bot");
    let nobody = token_for("nobody");
    let mut d = DaemonBuilder::new(&[key_json("research", &research, &["qot:read"]), sim_bot(&bot)])
        .env("FUTU_AUTHD_LOG", "debug")
        .metrics()
        .start();
    let mut c = d.client().await;
    assert!(c.check(&research, "Qot_GetBasicQot", None).await.is_allow());
    assert!(c
        .check(&bot, "Trd_PlaceOrder", sell_700(100.0, 320.5))
        .await
        .is_allow());
    assert_eq!(
        deny_reason(&c.check(&research, "Trd_GetFunds", None).await),
        Reason::Scope
    );
    assert_eq!(
        deny_reason(&c.check(&nobody, "Qot_GetBasicQot", None).await),
        Reason::UnknownKey
    );
    // A token passed by mistake as the endpoint, with a valid and with an unknown token.
    let mistake = c.check(&research, &bot, None).await;
    assert_eq!(deny_reason(&mistake), Reason::UnknownEndpoint);
    if let Decision::Deny { detail, .. } = &mistake {
        assert!(
            !detail.contains(&bot),
            "the deny's detail hides the token: {detail}"
        );
    }
    let both = c.check(&nobody, &format!("x{research}"), None).await;
    assert_eq!(deny_reason(&both), Reason::UnknownKey);
    assert!(c
        .check_scope(&nobody, Iface::Ws, Scope::TradeReal)
        .await
        .reason()
        .is_some());
    // A token where a frame expects something else: a malformed frame.
    let mut bad = d.client().await;
    let mut body = vec![0xff];
    body.extend_from_slice(bot.as_bytes());
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    bad.write_raw(&frame).await;
    expect_refusal(&mut bad, ErrorKind::BadFrame, false).await;

    let metrics = d.metrics_text();
    assert_eq!(d.stop().code(), Some(0));
    let audit = std::fs::read_to_string(d.audit_path()).unwrap();
    assert_eq!(audit.lines().count(), 7, "every check was audited");
    let stderr = d.stderr_text();
    let ledger = std::fs::read_to_string(d.dir().join("state/ledger.log")).unwrap_or_default();
    for token in [&research, &bot, &nobody] {
        let secret = &token[3..]; // the 32 hex digits, with or without the fc_ prefix
        for (place, text) in [
            ("audit file", &audit),
            ("stderr", &stderr),
            ("/metrics", &metrics),
            ("ledger log", &ledger),
        ] {
            assert!(
                !text.contains(secret),
                "the plaintext {token} appears in the {place}:\n{text}"
            );
            let hash = futu_authd_tests::hash_of(token);
            assert!(
                !text.contains(&hash),
                "the digest of {token} appears in the {place}"
            );
        }
    }
    assert!(
        audit.contains("fc_<redacted>"),
        "the mistaken endpoint is kept, redacted"
    );
}

#[tokio::test]
async fn a_token_sent_as_the_order_symbol_never_reaches_the_audit_file() {
    let bot = token_for("sim-bot");
    let mut d = DaemonBuilder::new(&[sim_bot(&bot)]).start();
    let mut c = d.client().await;
    for symbol in [bot.clone(), format!("HK.{bot}")] {
        let ord = Some(order(Market::HK, &symbol, TrdSide::SELL, 1.0, Some(1.0)));
        let got = c.check(&bot, "Trd_PlaceOrder", ord).await;
        assert_eq!(deny_reason(&got), Reason::BadOrder);
        if let Decision::Deny { detail, .. } = &got {
            assert!(
                !detail.contains(&bot[3..]),
                "the deny's detail holds the token: {detail}"
            );
        }
    }
    assert_eq!(d.stop().code(), Some(0));
    let audit = std::fs::read_to_string(d.audit_path()).unwrap();
    assert!(
        !audit.contains(&bot[3..]),
        "the plaintext appears in the audit file:\n{audit}"
    );
}

#[tokio::test]
async fn a_token_pasted_as_an_admin_key_id_is_refused_and_never_logged() {
    let research = token_for("research");
    assert!(
        research.parse::<futu_auth_proto::KeyId>().is_err(),
        "a plaintext is never a valid key id"
    );
    let mut d = DaemonBuilder::new(&[key_json("research", &research, &["qot:read"])]).start();
    let mut c = d.client().await; // the test runs as the daemon's own user: an administrator
                                  // RevokeKey (variant 6) { request_id: 1, id: <the plaintext> }, laid out by hand since
                                  // no KeyId can hold it.
    let frame = futu_auth_proto::codec::encode_frame(&(6u32, 1u64, research.clone())).unwrap();
    c.write_raw(&frame).await;
    match c.recv().await {
        Response::Error {
            kind: ErrorKind::BadFrame,
            message,
            ..
        } => {
            assert!(!message.contains(&research[3..]), "{message}")
        }
        other => panic!("expected a bad_frame error, got {other:?}"),
    }
    c.expect_closed().await;
    assert_eq!(d.stop().code(), Some(0));
    let audit = std::fs::read_to_string(d.audit_path()).unwrap_or_default();
    assert!(
        !audit.contains(&research[3..]),
        "the plaintext appears in the audit file:\n{audit}"
    );
    let stderr = d.stderr_text();
    assert!(
        !stderr.contains(&research[3..]),
        "the plaintext appears on stderr:\n{stderr}"
    );
}

#[tokio::test]
async fn a_token_in_the_hello_client_name_is_not_logged() {
    let research = token_for("research");
    let mut d = DaemonBuilder::new(&[key_json("research", &research, &["qot:read"])])
        .env("FUTU_AUTHD_LOG", "debug")
        .start();
    let mut c = Client::connect(&d.socket_path()).await;
    c.send(Request::Hello(Hello {
        protocol_version: 1,
        client_name: format!("rest {research}"),
    }))
    .await;
    assert!(matches!(c.recv().await, Response::HelloOk { .. }));
    assert!(c.check(&research, "Qot_GetBasicQot", None).await.is_allow());
    assert_eq!(d.stop().code(), Some(0));
    let stderr = d.stderr_text();
    assert!(
        stderr.contains("hello"),
        "the debug log of the Hello is there:\n{stderr}"
    );
    assert!(
        !stderr.contains(&research[3..]),
        "the plaintext appears on stderr:\n{stderr}"
    );
}

#[tokio::test]
async fn a_token_inside_a_malformed_frame_is_not_logged() {
    let research = token_for("research");
    let mut d = DaemonBuilder::new(&[key_json("research", &research, &["qot:read"])]).start();
    let mut c = d.client().await;
    // RevokeKey (variant 6), request_id 7, id = the plaintext with a newline pasted after it:
    // not a valid key id, so the frame is malformed.
    let id = format!("{research}\n");
    let mut body = vec![6, 7, id.len() as u8];
    body.extend_from_slice(id.as_bytes());
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    c.write_raw(&frame).await;
    expect_refusal(&mut c, ErrorKind::BadFrame, false).await;
    assert_eq!(d.stop().code(), Some(0));
    let stderr = d.stderr_text();
    assert!(stderr.contains("malformed"), "the refusal is logged:\n{stderr}");
    assert!(
        !stderr.contains(&research[3..]),
        "the plaintext appears on stderr:\n{stderr}"
    );
}

#[test]
fn the_watchdog_is_fed_at_half_the_interval_systemd_asks_for() {
    let d = DaemonBuilder::new(&[key_json("research", &token_for("research"), &["qot:read"])])
        .env("WATCHDOG_USEC", "200000")
        .start();
    let started = Instant::now();
    let (first, _) = d.wait_notification(0, "WATCHDOG=1");
    let (second, _) = d.wait_notification(first + 1, "WATCHDOG=1");
    let (_, _) = d.wait_notification(second + 1, "WATCHDOG=1");
    // Three pings at 100 ms take about 200 ms; at the full 200 ms they would take 400.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let quiet = DaemonBuilder::new(&[key_json("research", &token_for("research"), &["qot:read"])]).start();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        !quiet.notifications().iter().any(|n| n.contains("WATCHDOG=1")),
        "no watchdog pings unless systemd asks for them"
    );
}

#[test]
fn a_socket_another_daemon_answers_on_is_not_taken_over() {
    let first = DaemonBuilder::new(&[key_json("research", &token_for("research"), &["qot:read"])]).start();
    let dir = tempfile::tempdir().unwrap();
    write_private(&dir.path().join("keys.json"), &keys_json(&[]));
    let out = Command::new(futu_authd_tests::daemon_binary())
        .arg("--socket")
        .arg(first.socket_path())
        .arg("--keys-file")
        .arg(dir.path().join("keys.json"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--metrics-listen", "off", "--audit-journald=false"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another futu-authd is answering"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(first.socket_path().exists(), "the live socket was left in place");
}

#[tokio::test]
async fn an_order_whose_ledger_write_fails_is_refused_internal_and_the_daemon_lives_on() {
    if !have_program("prlimit") {
        return futu_authd_tests::skip("prlimit (util-linux) is not installed");
    }
    let bot = token_for("sim-bot");
    let d = DaemonBuilder::new(&[sim_bot(&bot)]).start();
    let mut c = d.client().await;
    assert!(c
        .check(&bot, "Trd_PlaceOrder", sell_700(1.0, 1.0))
        .await
        .is_allow());
    // From now on no file of the daemon may grow: the ledger log cannot take the next order.
    let limit = |value: &str| {
        let out = Command::new("prlimit")
            .arg(format!("--pid={}", d.pid()))
            .arg(format!("--fsize={value}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    limit("1:"); // the soft limit only: raising it again needs no privilege
    let refused = c.check(&bot, "Trd_PlaceOrder", sell_700(1.0, 1.0)).await;
    assert_eq!(deny_reason(&refused), Reason::Internal, "{refused:?}");
    // The audit file cannot grow either, and nothing is allowed that cannot be audited;
    // the daemon is alive and answers.
    let read = c.check(&bot, "Qot_GetBasicQot", None).await;
    assert_eq!(deny_reason(&read), Reason::Internal, "{read:?}");
    limit("unlimited:");
    assert!(c
        .check(&bot, "Trd_PlaceOrder", sell_700(1.0, 1.0))
        .await
        .is_allow());
}

#[test]
fn a_sighup_with_an_unchanged_keys_file_keeps_the_snapshot_and_a_changed_one_reloads() {
    let research = token_for("research");
    let d = DaemonBuilder::new(&[key_json("research", &research, &["qot:read"])]).start();
    let (i, _) = d.wait_notification(0, "READY=1");
    d.signal(Signal::SIGHUP);
    let (i, _) = d.wait_notification(i + 1, "READY=1");
    d.wait_stderr("keys_loaded=1 keys file unchanged (SIGHUP)");
    let bot = token_for("sim-bot");
    d.write_keys(&[
        key_json("research", &research, &["qot:read"]),
        key_json("sim-bot", &bot, &["qot:read"]),
    ]);
    d.signal(Signal::SIGHUP);
    d.wait_notification(i + 1, "READY=1");
    d.wait_stderr("keys_loaded=2 keys file reloaded (SIGHUP)");
}

#[tokio::test]
async fn a_listing_too_large_for_a_frame_is_an_error_and_the_connection_lives_on() {
    let research = token_for("research");
    let mut keys = vec![key_json("research", &research, &["qot:read"])];
    for i in 0..1000 {
        keys.push(key_json(
            &format!("k{i:04}"),
            &token_for(&format!("k{i}")),
            &["qot:read"],
        ));
    }
    let d = DaemonBuilder::new(&keys).start();
    let mut c = d.client().await; // the daemon's own user: an administrator
    match c.request(Request::ListKeys { request_id: 5 }).await {
        Response::Error {
            request_id: 5,
            kind: ErrorKind::Internal,
            message,
        } => assert!(message.contains("does not fit in a frame"), "{message}"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(c.check(&research, "Qot_GetBasicQot", None).await.is_allow());
}
