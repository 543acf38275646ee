//! One connection's protocol: a hundred pipelined checks answered in order with their
//! ids; a release pending while its connection's next order arrives hangs neither; a bad frame (too large, malformed, before Hello, a version no daemon speaks) gets
//! an error and closes only its own connection; a request before Hello is refused with
//! request id 0; a listing too large for a frame is an error and the connection lives on.

mod daemon;

use daemon::*;
use futu_auth_proto::{Decision, ErrorKind, Hello, Iface, Market, Request, Response, TrdSide};
use futu_authd_tests::{decision_of, key_json, order, token_for, Client, DaemonBuilder};

// ---- pipelining ----------------------------------------------------------------------------

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

/// A release still being worked out when its connection's next order arrives: both wait
/// for the commit lock, which other connections keep busy. Each connection sends a
/// release, then at once its next order, and reads both answers; none may hang (the
/// harness gives up on an answer after 10 s), and an admin request on its own connection
/// is answered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_pending_when_the_next_order_arrives_hangs_neither_nor_the_daemon() {
    let token = token_for("busy");
    let d = DaemonBuilder::new(&[key_json("busy", &token, &["trade:simulate"])]).start();
    let one = || Some(order(Market::HK, "HK.00700", TrdSide::SELL, 1.0, Some(1.0)));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut c = d.client().await;
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let mut ticket = None;
            let mut released = 0;
            for _ in 0..1000 {
                if let Some(t) = ticket.take() {
                    let request_id = c.next_id();
                    c.feed(Request::Release {
                        request_id,
                        ticket: t,
                    })
                    .await;
                    c.flush().await;
                    let check = c.check_request(Iface::Rest, &token, "Trd_PlaceOrder", one());
                    let id = check.request_id;
                    c.feed(Request::Check(check)).await;
                    c.flush().await;
                    match c.recv().await {
                        Response::Released { request_id: r, .. } => {
                            assert_eq!(r, request_id);
                            released += 1;
                        }
                        other => panic!("a release answered {other:?}"),
                    }
                    ticket = match decision_of(id, c.recv().await) {
                        Decision::Allow { ticket, .. } => ticket,
                        other => panic!("an order refused: {other:?}"),
                    };
                } else {
                    ticket = match c.check(&token, "Trd_PlaceOrder", one()).await {
                        Decision::Allow { ticket, .. } => ticket,
                        other => panic!("an order refused: {other:?}"),
                    };
                }
            }
            released
        }));
    }
    let mut admin = d.client().await;
    while !tasks.iter().all(|t| t.is_finished()) {
        admin.usage("busy").await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for t in tasks {
        assert_eq!(t.await.expect("a connection's orders"), 999);
    }
}

// ---- bad input -----------------------------------------------------------------------------

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

// ---- a listing too large for a frame -------------------------------------------------------

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
