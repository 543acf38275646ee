//! The ledger of what keys consumed: `kill -9` and a restart keep the rate window and the
//! daily total, and a ticket issued before the kill can be released after it, once;
//! eight connections racing one key get exactly its rate limit between them; an order whose
//! ledger write fails is refused `internal` and the daemon lives on.

mod daemon;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::Arc;

use daemon::*;
use futu_auth_proto::{Decision, ErrorKind, Iface, Reason, Request, Response};
use futu_authd_tests::{
    away_from_utc_midnight, decision_of, deny_reason, have_program, token_for, DaemonBuilder,
};
use nix::sys::signal::Signal;
use serde_json::json;

// ---- kill -9 -------------------------------------------------------------------------------

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

// ---- one ledger under concurrency ----------------------------------------------------------

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

// ---- a ledger that cannot be written -------------------------------------------------------

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
