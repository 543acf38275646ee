//! No plaintext token, nor its digest, reaches the audit file, stderr (at debug level too),
//! /metrics or the ledger log: not when sent as a token, nor pasted by mistake as an
//! endpoint, an order's symbol, an admin request's key id, the Hello's client name, or
//! inside a malformed frame.

mod daemon;

use daemon::*;
use futu_auth_proto::{Decision, ErrorKind, Hello, Iface, Market, Reason, Request, Response, Scope, TrdSide};
use futu_authd_tests::{deny_reason, key_json, order, token_for, Client, DaemonBuilder};

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
    // The ledger's files are binary: their text parts (key ids, symbols) are what is read.
    let ledger: String = ["state/ledger.log", "state/ledger.base"]
        .iter()
        .map(|f| String::from_utf8_lossy(&std::fs::read(d.dir().join(f)).unwrap()).into_owned())
        .collect();
    assert!(
        ledger.contains("sim-bot"),
        "the ledger holds the key that ordered:\n{ledger}"
    );
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
