//! Hot reload on SIGHUP: keys added to keys.json are served and removed ones refused at
//! once, a rotated audit file is reopened; a keys file that does not load keeps the old
//! keys and limits in service, logged and counted; an unchanged file keeps the snapshot.

mod daemon;

use daemon::*;
use futu_auth_proto::Reason;
use futu_authd_tests::{allowed_key, deny_reason, key_json, poll, read_jsonl, token_for, DaemonBuilder};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

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
