//! The client library (`futu-auth-client`) against real daemons and fake ones: it fails
//! closed while the daemon is down and the same client reconnects after a restart; with no
//! daemon a check errs at once as "not running"; two hundred concurrent callers on one
//! client each get their own answer; a daemon slower than the deadline is a timeout within
//! about the deadline (connecting too); the blocking client works from a plain thread.

use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futu_auth_client::{AuthClient, BlockingAuthClient, ClientError, Decision, Iface, Reason, Scope, Token};
use futu_auth_proto::{Market, TrdSide};
use futu_authd_tests::{
    allowed_key, deny_reason, key_json, order, token_for, with, DaemonBuilder, SilentServer,
};
use serde_json::{json, Value};
use tempfile::TempDir;

/// Slack for the scheduler on top of a deadline, on a loaded test machine.
const SLACK: Duration = Duration::from_millis(200);

#[tokio::test]
async fn the_client_fails_closed_while_the_daemon_is_down_and_reconnects_after_a_restart() {
    let research = Token::new(token_for("research"));
    let mut d = DaemonBuilder::new(&[key_json("research", research.expose(), &["qot:read"])]).start();
    let deadline = Duration::from_millis(250);
    let auth = AuthClient::builder(d.socket_path())
        .deadline(deadline)
        .connect()
        .await
        .expect("connect to the daemon");
    let d1 = auth
        .check(&research, Iface::Rest, "Qot_GetBasicQot", None)
        .await
        .expect("a decision");
    assert_eq!(allowed_key(&d1), "research");

    d.stop();
    for i in 0..5 {
        let start = Instant::now();
        let r = auth.check(&research, Iface::Rest, "Qot_GetBasicQot", None).await;
        let took = start.elapsed();
        assert!(r.is_err(), "call {i} with the daemon down fails closed: {r:?}");
        assert!(
            took <= deadline + SLACK,
            "call {i} failed within its deadline ({took:?})"
        );
    }

    d.restart();
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < Duration::from_secs(5) {
        match auth.check(&research, Iface::Rest, "Qot_GetBasicQot", None).await {
            Ok(decision) => {
                assert_eq!(allowed_key(&decision), "research");
                return;
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the same AuthClient did not reconnect within 5 s of the restart; last error: {last:?}");
}

#[tokio::test]
async fn with_no_daemon_a_check_errs_within_its_deadline_as_not_running() {
    let dir = TempDir::new().unwrap();
    let token = Token::new(token_for("research"));
    let auth = AuthClient::builder(dir.path().join("absent.sock")).build();
    for i in 0..3 {
        let start = Instant::now();
        let err = auth
            .check(&token, Iface::Rest, "Qot_GetBasicQot", None)
            .await
            .expect_err("no daemon, no decision");
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "call {i} took {:?}",
            start.elapsed()
        );
        assert!(err.is_not_running(), "call {i}: {err:?} counts as not running");
    }
    let err = AuthClient::connect(dir.path().join("absent.sock"))
        .await
        .expect_err("connect fails");
    assert!(err.is_not_running(), "{err:?}");

    // A socket file nobody listens on (a daemon that died without cleaning up).
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    let start = Instant::now();
    let err = AuthClient::connect(&stale).await.expect_err("nobody listens");
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(err.is_not_running(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_callers_on_one_client_each_get_their_own_answer() {
    // k0…k9: even ones read quotes, odd ones read accounts.
    let keys: Vec<Value> = (0..10)
        .map(|j| {
            let scope = if j % 2 == 0 { "qot:read" } else { "acc:read" };
            key_json(&format!("k{j}"), &token_for(&format!("k{j}")), &[scope])
        })
        .collect();
    let d = DaemonBuilder::new(&keys).start();
    let auth = AuthClient::builder(d.socket_path())
        .deadline(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect");
    let barrier = Arc::new(tokio::sync::Barrier::new(200));
    let tasks: Vec<_> = (0..200)
        .map(|i: usize| {
            let auth = auth.clone();
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                let j = i % 10;
                let stranger = i % 7 == 0;
                let token = if stranger {
                    token_for(&format!("stranger-{i}"))
                } else {
                    token_for(&format!("k{j}"))
                };
                let quotes = (i / 10) % 2 == 0;
                let endpoint = if quotes { "Qot_GetBasicQot" } else { "Trd_GetFunds" };
                barrier.wait().await;
                let got = auth
                    .check(&Token::new(token), Iface::Grpc, endpoint, None)
                    .await
                    .unwrap_or_else(|e| panic!("caller {i}: {e}"));
                let expected = if stranger {
                    (None, Some(Reason::UnknownKey))
                } else if quotes == (j % 2 == 0) {
                    (Some(format!("k{j}")), None)
                } else {
                    (Some(format!("k{j}")), Some(Reason::Scope))
                };
                let key = match &got {
                    Decision::Allow { key_id, .. } => Some(key_id.as_str().to_owned()),
                    Decision::Deny { key_id, .. } => key_id.as_ref().map(|k| k.as_str().to_owned()),
                };
                assert_eq!(
                    (key, got.reason()),
                    expected,
                    "caller {i} ({endpoint}) got {got:?}"
                );
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a caller panicked");
    }
}

#[tokio::test]
async fn a_daemon_slower_than_the_deadline_is_a_timeout_within_about_the_deadline() {
    let dir = TempDir::new().unwrap();
    let token = Token::new(token_for("research"));
    let deadline = Duration::from_millis(200);

    // Answers Hello, then nothing.
    let mute = dir.path().join("mute.sock");
    let _mute = SilentServer::start(&mute, true);
    let auth = AuthClient::builder(&mute)
        .deadline(deadline)
        .connect()
        .await
        .expect("Hello is answered");
    for i in 0..2 {
        let start = Instant::now();
        let r = auth.check(&token, Iface::Rest, "Qot_GetBasicQot", None).await;
        let took = start.elapsed();
        assert!(
            matches!(r, Err(ClientError::Timeout(d)) if d == deadline),
            "call {i}: {r:?}"
        );
        assert!(
            took >= deadline && took <= deadline + SLACK,
            "call {i} timed out after {took:?}, deadline {deadline:?}"
        );
    }
    let start = Instant::now();
    let r = auth.check_scope(&token, Iface::Ws, Scope::QotRead).await;
    assert!(matches!(r, Err(ClientError::Timeout(_))), "{r:?}");
    assert!(start.elapsed() <= deadline + SLACK);

    // Never answers Hello: connecting is bounded by the same deadline.
    let deaf = dir.path().join("deaf.sock");
    let _deaf = SilentServer::start(&deaf, false);
    let start = Instant::now();
    let r = AuthClient::builder(&deaf).deadline(deadline).connect().await;
    let took = start.elapsed();
    assert!(matches!(r, Err(ClientError::Timeout(_))), "{r:?}");
    assert!(took >= deadline && took <= deadline + SLACK, "{took:?}");
}

#[test]
fn the_blocking_client_works_from_a_plain_thread() {
    let research = token_for("research");
    let once = token_for("once");
    let d = DaemonBuilder::new(&[
        key_json("research", &research, &["qot:read"]),
        with(
            key_json("once", &once, &["trade:simulate"]),
            "limits",
            json!({ "max_orders_per_minute": 1 }),
        ),
    ])
    .start();
    let socket = d.socket_path();
    let absent = d.dir().join("absent.sock");
    std::thread::spawn(move || {
        assert!(
            tokio::runtime::Handle::try_current().is_err(),
            "a plain thread, no runtime"
        );
        let auth = BlockingAuthClient::connect_with_deadline(&socket, Duration::from_secs(5))
            .expect("connect from a plain thread");
        let research = Token::new(research);
        let once = Token::new(once);
        let sell = || Some(order(Market::HK, "HK.00700", TrdSide::SELL, 100.0, Some(388.2)));
        assert_eq!(
            allowed_key(
                &auth
                    .check(&research, Iface::Mcp, "Qot_GetBasicQot", None)
                    .unwrap()
            ),
            "research"
        );
        assert_eq!(
            deny_reason(&auth.check(&research, Iface::Mcp, "Trd_GetFunds", None).unwrap()),
            Reason::Scope
        );
        assert!(auth
            .check_scope(&research, Iface::Ws, Scope::QotRead)
            .unwrap()
            .is_allow());
        assert_eq!(
            deny_reason(&auth.check_scope(&research, Iface::Ws, Scope::AccRead).unwrap()),
            Reason::Scope
        );
        assert!(auth
            .check_dry_run(&once, Iface::Mcp, "Trd_PlaceOrder", sell())
            .unwrap()
            .is_allow());
        assert!(auth
            .check(&once, Iface::Mcp, "Trd_PlaceOrder", sell())
            .unwrap()
            .is_allow());
        assert_eq!(
            deny_reason(&auth.check(&once, Iface::Mcp, "Trd_PlaceOrder", sell()).unwrap()),
            Reason::Rate
        );
        let keys = auth.block_on(auth.inner().list_keys()).expect("admin calls too");
        assert_eq!(keys.len(), 2);

        let start = Instant::now();
        let err = BlockingAuthClient::connect(&absent).expect_err("no daemon there");
        assert!(err.is_not_running(), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(1));
    })
    .join()
    .expect("the plain thread's checks passed");
}
