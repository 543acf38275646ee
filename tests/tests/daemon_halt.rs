//! The kill switch over the protocol: Halt, Resume and ListHalts (protocol version 5)
//! through the Rust client library; a halted key's orders refused `halted` and its quotes
//! allowed; a client that agreed on version 4 or older told `scope` instead, with the same
//! detail, and its sessions audited by what they were told.

mod daemon;

use daemon::*;
use futu_auth_client::{AuthClient, ClientError, HaltTarget, Iface, Token};
use futu_auth_proto::{
    Decision, Reason, Request, Response, Scope, SessionCheck, SessionOutcome, SessionSubject,
};
use futu_authd_tests::{allowed_key, decision_of, deny_reason, key_json, token_for, Client, DaemonBuilder};

fn keys() -> Vec<serde_json::Value> {
    vec![
        sim_bot(&token_for("sim-bot")),
        key_json("research", &token_for("research"), &["qot:read"]),
    ]
}

fn detail(d: &Decision) -> &str {
    match d {
        Decision::Deny { detail, .. } => detail,
        Decision::Allow { .. } => panic!("expected a deny, got {d:?}"),
    }
}

#[tokio::test]
async fn the_client_library_halts_lists_and_resumes_and_a_halted_order_is_refused() {
    let d = DaemonBuilder::new(&keys()).start();
    let auth = AuthClient::connect(d.socket_path()).await.expect("connect");
    let bot = Token::new(token_for("sim-bot"));
    let sim_bot = HaltTarget::Key("sim-bot".parse().unwrap());
    assert_eq!(auth.halts().await.unwrap(), vec![]);

    let halts = auth.halt(&sim_bot, "fat finger").await.unwrap();
    assert_eq!(halts.len(), 1);
    assert_eq!(halts[0].target, sim_bot);
    assert_eq!(halts[0].reason.as_str(), "fat finger");
    assert_eq!(halts[0].halted_by.uid, nix::unistd::geteuid().as_raw());
    assert_eq!(auth.halts().await.unwrap(), halts);

    let order = auth
        .check(&bot, Iface::Rest, "Trd_PlaceOrder", sell_700(100.0, 10.0))
        .await
        .unwrap();
    assert_eq!(deny_reason(&order), Reason::Halted);
    assert_eq!(detail(&order), halts[0].to_string());
    assert!(detail(&order).ends_with(": fat finger"), "{order:?}");
    let quote = auth
        .check(&bot, Iface::Rest, "Qot_GetBasicQot", None)
        .await
        .unwrap();
    assert_eq!(allowed_key(&quote), "sim-bot");
    let funds = auth.check(&bot, Iface::Rest, "Trd_GetFunds", None).await.unwrap();
    assert_eq!(allowed_key(&funds), "sim-bot");

    // A halt's reason is checked by the daemon too; what is not halted is not resumed.
    match auth.halt(&HaltTarget::All, "  ").await {
        Err(ClientError::Refused { message, .. }) => assert!(message.contains("needs a reason"), "{message}"),
        other => panic!("an empty reason: {other:?}"),
    }
    match auth.resume(&HaltTarget::All).await {
        Err(ClientError::Refused { message, .. }) => {
            assert!(
                message.contains("only these keys are halted, each on its own: sim-bot"),
                "{message}"
            )
        }
        other => panic!("a resume of what is not halted: {other:?}"),
    }
    match auth.halt(&HaltTarget::Key("ghost".parse().unwrap()), "r").await {
        Err(ClientError::Refused { message, .. }) => assert!(message.contains("ghost"), "{message}"),
        other => panic!("a halt of an unknown key: {other:?}"),
    }

    assert_eq!(auth.resume(&sim_bot).await.unwrap(), vec![]);
    let order = auth
        .check(&bot, Iface::Rest, "Trd_PlaceOrder", sell_700(100.0, 10.0))
        .await
        .unwrap();
    assert_eq!(allowed_key(&order), "sim-bot");
}

/// Asks a simulated order of sim-bot on `c`.
async fn order_on(c: &mut Client) -> Decision {
    c.check(&token_for("sim-bot"), "Trd_PlaceOrder", sell_700(100.0, 10.0))
        .await
}

#[tokio::test]
async fn a_client_of_protocol_version_4_or_older_is_told_scope_with_the_same_detail() {
    let d = DaemonBuilder::new(&keys()).start();
    let auth = AuthClient::connect(d.socket_path()).await.expect("connect");
    auth.halt(&HaltTarget::All, "market turmoil").await.unwrap();

    let mut newest = d.client().await;
    let halted = order_on(&mut newest).await;
    assert_eq!(deny_reason(&halted), Reason::Halted);
    for version in [1, 2, 3, 4] {
        let mut c = Client::connect(&d.socket_path()).await;
        c.hello_version(version).await;
        let told = order_on(&mut c).await;
        assert_eq!(deny_reason(&told), Reason::Scope, "version {version}");
        assert_eq!(
            detail(&told),
            detail(&halted),
            "version {version}: the same detail"
        );
        let quote = c.check(&token_for("research"), "Qot_GetBasicQot", None).await;
        assert_eq!(allowed_key(&quote), "research", "version {version}");
    }
    // The audit trail has the daemon's reason, whatever a client was told.
    let records = d.audit_records();
    let rejects: Vec<_> = records
        .iter()
        .filter(|r| r["kind"] == "check" && r["outcome"] == "reject")
        .collect();
    assert_eq!(rejects.len(), 5, "{records:#?}");
    assert!(rejects.iter().all(|r| r["reason"] == "halted"), "{rejects:#?}");
}

#[tokio::test]
async fn a_sessions_pushes_of_orders_are_held_back_and_audited_by_what_its_version_was_told() {
    let d = DaemonBuilder::new(&keys()).start();
    let auth = AuthClient::connect(d.socket_path()).await.expect("connect");
    auth.halt(&HaltTarget::Key("sim-bot".parse().unwrap()), "fat finger")
        .await
        .unwrap();
    let before = d.audit_records().len();
    let session = |c: &mut Client, scope: Scope, previous: SessionOutcome| {
        Request::SessionCheck(SessionCheck {
            request_id: c.next_id(),
            token: Token::new(token_for("sim-bot")),
            iface: Iface::Ws,
            subject: SessionSubject::Pushes { scope, pushes: 1 },
            previous,
        })
    };
    let mut c = Client::connect(&d.socket_path()).await;
    c.hello_version(4).await;
    // A version-4 session that was told `scope` is told `scope` again: not a change.
    let req = session(&mut c, Scope::TradeSimulate, SessionOutcome::Deny(Reason::Scope));
    let id = req.request_id();
    let told = decision_of(id, c.request(req).await);
    assert_eq!(deny_reason(&told), Reason::Scope);
    let req = session(&mut c, Scope::QotRead, SessionOutcome::Allow);
    let id = req.request_id();
    assert_eq!(allowed_key(&decision_of(id, c.request(req).await)), "sim-bot");
    assert_eq!(
        d.audit_records().len(),
        before,
        "neither outcome changed: nothing audited"
    );

    let mut c = d.client().await;
    let req = session(&mut c, Scope::TradeSimulate, SessionOutcome::Allow);
    let id = req.request_id();
    assert_eq!(
        deny_reason(&decision_of(id, c.request(req).await)),
        Reason::Halted
    );
    let records = d.audit_records();
    assert_eq!(records.len(), before + 1, "the change is audited: {records:#?}");
    assert_eq!(records[before]["reason"], "halted");
}

#[tokio::test]
async fn list_halts_answers_with_the_halts_in_force() {
    let d = DaemonBuilder::new(&keys()).start();
    let mut c = d.client().await;
    let id = c.next_id();
    match c.request(Request::ListHalts { request_id: id }).await {
        Response::Halts { request_id, halts } => {
            assert_eq!(request_id, id);
            assert!(halts.is_empty());
        }
        other => panic!("ListHalts: {other:?}"),
    }
}
