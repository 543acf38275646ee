//! UTC midnight end to end, with the local ledger: the daemon's wall clock runs under
//! libfaketime ([`FakeClock`]) a few seconds before midnight, orders are allowed, the
//! clock goes past midnight and a ticket is released. The order's UTC day is then over, so
//! the release refunds nothing (PROTOCOL.md, `Released`) although nothing has used the key
//! since, and its counters still hold the day before. The same with the PostgreSQL ledger
//! is in `postgres.rs`.

use futu_auth_proto::{Decision, ErrorKind, Market, Request, Response, TrdSide};
use futu_authd_tests::{
    key_json, next_utc_midnight, order, token_for, with, Client, Daemon, DaemonBuilder, FakeClock,
};
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

fn sell(value: f64) -> Option<futu_auth_proto::Order> {
    Some(order(Market::HK, "HK.00700", TrdSide::SELL, 1.0, Some(value)))
}

fn ticket_of(d: &Decision) -> u64 {
    match d {
        Decision::Allow { ticket: Some(t), .. } => *t,
        other => panic!("expected an allow with a ticket, got {other:?}"),
    }
}

/// The refunded value of a release, or the error.
async fn release(c: &mut Client, ticket: u64) -> Result<f64, ErrorKind> {
    let request_id = c.next_id();
    match c.request(Request::Release { request_id, ticket }).await {
        Response::Released { refunded_value, .. } => Ok(refunded_value),
        Response::Error { kind, .. } => Err(kind),
        other => panic!("expected Released or Error, got {other:?}"),
    }
}

/// The audit records of releases, oldest first.
fn release_records(d: &Daemon) -> Vec<Value> {
    d.audit_records()
        .into_iter()
        .filter(|r| r["kind"] == "release")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_just_after_utc_midnight_refunds_nothing_and_usage_audit_and_restart_agree() {
    let Some(clock) = FakeClock::new() else { return };
    let token = token_for("midnight");
    let keys = [with(
        key_json("late", &token, &["trade:simulate"]),
        "limits",
        json!({ "max_daily_value": 100 }),
    )];
    let mut d = DaemonBuilder::new(&keys).clock(&clock).start();
    let mut c = d.client().await;

    let midnight = next_utc_midnight();
    clock.set_now(midnight - SignedDuration::from_secs(6)); // 23:59:54
    let early = c.check(&token, "Trd_PlaceOrder", sell(40.0)).await;
    let late = c.check(&token, "Trd_PlaceOrder", sell(60.0)).await;
    assert_eq!(
        release(&mut c, ticket_of(&early)).await,
        Ok(40.0),
        "before midnight the order's day is not over"
    );

    clock.set_now(midnight + SignedDuration::from_secs(1)); // 00:00:01, the key unused since
    assert_eq!(
        release(&mut c, ticket_of(&late)).await,
        Ok(0.0),
        "the order's UTC day is over: nothing is refunded"
    );

    // Usage, through the protocol and futucli: today is the new day, at zero.
    assert_eq!(c.usage("late").await, (0.0, 2));
    let today = midnight.strftime("%Y-%m-%d").to_string();
    let usage = d.futucli().args(["usage", "late"]).output().expect("run futucli");
    let text = String::from_utf8_lossy(&usage.stdout);
    assert!(usage.status.success(), "{usage:?}");
    assert!(
        text.contains(&format!("late on {today} (UTC): daily value 0 of 100;")),
        "{text}"
    );

    // The audit trail says the same: the first release refunded 40, the second nothing.
    let records = release_records(&d);
    let refunds: Vec<&Value> = records.iter().map(|r| &r["detail"]).collect();
    assert_eq!(refunds, ["refunded 40", "refunded 0"], "{records:#?}");
    let ts: Timestamp = records[1]["ts"]
        .as_str()
        .expect("ts")
        .parse()
        .expect("an RFC 3339 time");
    assert!(
        ts >= midnight,
        "the release was made after midnight: {}",
        records[1]
    );

    // Today's whole cap is there, and only it.
    assert!(c.check(&token, "Trd_PlaceOrder", sell(100.0)).await.is_allow());
    assert!(!c.check(&token, "Trd_PlaceOrder", sell(0.01)).await.is_allow());

    // A restart replays the journal to the same figures; the ticket stays released.
    drop(c);
    assert!(d.stop().success());
    d.restart();
    let mut c = d.client().await;
    assert_eq!(c.usage("late").await.0, 100.0);
    assert_eq!(
        release(&mut c, ticket_of(&late)).await,
        Err(ErrorKind::AlreadyReleased)
    );
    assert!(!c.check(&token, "Trd_PlaceOrder", sell(0.01)).await.is_allow());
    // Stopped, not killed: libfaketime then removes what it made in /dev/shm.
    assert!(d.stop().success());
}
