//! futu-authd run in this test's own process ([`Daemon`]): start-up, a check through the
//! client library, a reload, and shutdown by a future — no binary, no harness process.

use std::time::Duration;

use clap::Parser;
use futu_auth_client::{AuthClient, Decision, Iface, Token};
use futu_auth_keys::token::digest;
use futu_authd::config::Config;
use futu_authd::server::{bind, Daemon, Listener};

const TOKEN: &str = "fc_0123456789abcdef0123456789abcdef";

fn keys_json(scopes: &str) -> String {
    format!(
        r#"{{"version":1,"keys":[{{"id":"research","hash":"{}","scopes":[{scopes}],"created_at":"2026-04-15T10:00:00Z"}}]}}"#,
        digest(&Token::new(TOKEN)).to_hex()
    )
}

#[tokio::test]
async fn a_daemon_in_this_process_answers_reloads_and_stops_when_told() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    std::fs::write(&keys, keys_json(r#""qot:read""#)).unwrap();
    let socket = dir.path().join("auth.sock");
    let config = Config::try_parse_from([
        "futu-authd".as_ref(),
        "--keys-file".as_ref(),
        keys.as_os_str(),
        "--state-dir".as_ref(),
        dir.path().join("state").as_os_str(),
        "--audit-log".as_ref(),
        dir.path().join("audit.jsonl").as_os_str(),
        "--audit-journald=false".as_ref(),
        "--metrics-listen".as_ref(),
        "off".as_ref(),
    ])
    .unwrap();
    let daemon = Daemon::start(&config).await.unwrap();
    let authd = std::sync::Arc::clone(daemon.authd());
    let listener = Listener::Bound(bind(&socket, 0o600).unwrap(), socket.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(daemon.serve(listener, async {
        let _ = stopped.await;
    }));

    let client = AuthClient::builder(&socket)
        .deadline(Duration::from_secs(2))
        .connect()
        .await
        .unwrap();
    let token = Token::new(TOKEN);
    let read = client
        .check(&token, Iface::Rest, "Qot_GetBasicQot", None)
        .await
        .unwrap();
    assert!(matches!(read, Decision::Allow { .. }), "{read:?}");
    let funds = client
        .check(&token, Iface::Rest, "Trd_GetFunds", None)
        .await
        .unwrap();
    assert!(!funds.is_allow(), "research lacks acc:read: {funds:?}");

    std::fs::write(&keys, keys_json(r#""qot:read","acc:read""#)).unwrap();
    assert_eq!(authd.reload("test").await.unwrap(), 1);
    let funds = client
        .check(&token, Iface::Rest, "Trd_GetFunds", None)
        .await
        .unwrap();
    assert!(funds.is_allow(), "the reload is in service at once: {funds:?}");

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .expect("the daemon stops when told")
        .unwrap();
    assert!(!socket.exists(), "the socket it bound is removed");
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert_eq!(audit.lines().count(), 3, "every decision audited: {audit}");
}
