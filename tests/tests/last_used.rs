//! When keys were last used, against the real daemon and futucli: an allowed check (a dry
//! run and a scope check too) is a use and a denied one is not; `futucli list-keys`,
//! `futucli usage` and `/metrics` show it; it survives a restart through
//! `<state-dir>/last-used.json`, which is not written per check; `list-keys --unused-for`
//! finds the stale keys; a client does not send KeyActivity to a daemon too old for it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futu_auth_client::{AuthClient, ClientError};
use futu_auth_proto::codec::{decode_message_v, encode_frame_v};
use futu_auth_proto::{Iface, KeyId, Market, Request, Response, Scope, TrdSide, Usage, MAX_ACTIVITY_IDS};
use futu_authd_tests::{
    deny_reason, key_json, metric_value, order, skip, token_for, with, Daemon, DaemonBuilder, Run,
    LIBFAKETIME,
};
use jiff::{Span, Timestamp};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The gauge of a key's last use.
const GAUGE: &str = "futu_auth_key_last_used_timestamp_seconds";

/// The last-used file in the state directory.
const FILE: &str = "last-used.json";

/// futucli with `d`'s socket, keys file and machine id.
fn futucli(d: &Daemon, args: &[&str]) -> Run {
    d.futucli().args(args).output().expect("run futucli").into()
}

/// futucli, which must succeed.
fn futucli_ok(d: &Daemon, args: &[&str]) -> Run {
    let run = futucli(d, args);
    assert_eq!(run.code, Some(0), "futucli {args:?} failed: {run:#?}");
    run
}

/// `t` rounded down to its minute.
fn minute(t: Timestamp) -> i64 {
    t.as_second() - t.as_second().rem_euclid(60)
}

/// A minute as futucli shows it.
fn shown(minute: i64) -> String {
    Timestamp::from_second(minute)
        .unwrap()
        .strftime("%Y-%m-%d %H:%MZ")
        .to_string()
}

/// The LAST USED cell of each row of a `list-keys` table, by key id.
fn last_used_column(table: &str) -> Vec<(String, String)> {
    let mut lines = table.lines();
    let header = lines.next().expect("a header line");
    let at = header
        .find("LAST USED")
        .unwrap_or_else(|| panic!("a LAST USED column: {header:?}"));
    lines
        .map(|row| {
            let id = row.split_whitespace().next().unwrap_or_default().to_owned();
            let cell = row.get(at..).unwrap_or_default();
            let cell = cell.split("  ").next().unwrap_or_default().trim().to_owned();
            (id, cell)
        })
        .collect()
}

fn cell_of(table: &str, id: &str) -> String {
    last_used_column(table)
        .into_iter()
        .find(|(i, _)| i == id)
        .unwrap_or_else(|| panic!("a row for {id}: {table}"))
        .1
}

/// `list-keys --json` as (id → `last_used`, absent when the field is missing).
fn json_last_used(d: &Daemon, extra: &[&str]) -> Vec<(String, Option<Value>)> {
    let run = futucli_ok(d, &[&["list-keys", "--json"][..], extra].concat());
    let listed: Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("JSON ({e}): {}", run.stdout));
    listed
        .as_array()
        .expect("an array")
        .iter()
        .map(|k| {
            (
                k["id"].as_str().expect("an id").to_owned(),
                k.get("last_used").cloned(),
            )
        })
        .collect()
}

/// The `last used:` line of `futucli usage`.
fn usage_last_used(d: &Daemon, id: &str) -> String {
    let run = futucli_ok(d, &["usage", id]);
    run.stdout
        .lines()
        .find_map(|l| l.strip_prefix("last used: "))
        .unwrap_or_else(|| panic!("a `last used:` line: {run:#?}"))
        .to_owned()
}

fn last_used_file(d: &Daemon) -> PathBuf {
    d.state_path().join(FILE)
}

/// A key made `age` ago.
fn created(id: &str, scopes: &[&str], age: Span) -> Value {
    let at = Timestamp::now().checked_sub(age).unwrap();
    with(
        key_json(id, &token_for(id), scopes),
        "created_at",
        json!(Timestamp::from_second(at.as_second()).unwrap().to_string()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_check_is_shown_as_the_last_use_everywhere_and_a_denied_one_is_not() {
    let d = DaemonBuilder::new(&[
        key_json("used", &token_for("used"), &["qot:read"]),
        key_json("dry", &token_for("dry"), &["trade:simulate"]),
        key_json("pushes", &token_for("pushes"), &["qot:read"]),
        key_json("denied", &token_for("denied"), &["qot:read"]),
        key_json("unused", &token_for("unused"), &["qot:read"]),
    ])
    .metrics()
    .start();
    let before = minute(Timestamp::now());
    let mut c = d.client().await;
    assert!(c
        .check(&token_for("used"), "Qot_GetBasicQot", None)
        .await
        .is_allow());
    let mut dry = c.check_request(
        Iface::Grpc,
        &token_for("dry"),
        "Trd_PlaceOrder",
        Some(order(Market::HK, "HK.00700", TrdSide::SELL, 100.0, Some(388.2))),
    );
    dry.dry_run = true;
    let id = dry.request_id;
    assert!(futu_authd_tests::decision_of(id, c.request(Request::Check(dry)).await).is_allow());
    assert!(c
        .check_scope(&token_for("pushes"), Iface::Ws, Scope::QotRead)
        .await
        .is_allow());
    // Refused for lack of a scope, both as a check and as a scope check.
    deny_reason(&c.check(&token_for("denied"), "Trd_PlaceOrder", None).await);
    deny_reason(
        &c.check_scope(&token_for("denied"), Iface::Ws, Scope::TradeReal)
            .await,
    );
    let after = minute(Timestamp::now());
    let in_window = |secs: i64| (before..=after).contains(&secs) && secs % 60 == 0;

    let table = futucli_ok(&d, &["list-keys"]).stdout;
    for id in ["used", "dry", "pushes"] {
        let cell = cell_of(&table, id);
        assert!(
            (before..=after).step_by(60).any(|m| shown(m) == cell),
            "{id} was used between {} and {}: {cell:?} in\n{table}",
            shown(before),
            shown(after)
        );
    }
    for id in ["denied", "unused"] {
        assert_eq!(cell_of(&table, id), "never", "{table}");
    }

    for (id, used) in json_last_used(&d, &[]) {
        let used = used.unwrap_or_else(|| panic!("{id} has a last_used field"));
        if ["used", "dry", "pushes"].contains(&id.as_str()) {
            let t: Timestamp = used.as_str().expect("RFC 3339").parse().expect("a time");
            assert!(in_window(t.as_second()), "{id}: {t}");
        } else {
            assert_eq!(used, Value::Null, "{id} was never used");
        }
    }

    let line = usage_last_used(&d, "used");
    assert!((before..=after).step_by(60).any(|m| shown(m) == line), "{line:?}");
    assert_eq!(usage_last_used(&d, "denied"), "never");

    let metrics = d.metrics_text();
    for id in ["used", "dry", "pushes"] {
        let v = metric_value(&metrics, GAUGE, &[("key_id", id)])
            .unwrap_or_else(|| panic!("a gauge for {id}:\n{metrics}"));
        assert!(in_window(v as i64), "{id}: {v}");
    }
    for id in ["denied", "unused"] {
        assert_eq!(
            metric_value(&metrics, GAUGE, &[("key_id", id)]),
            None,
            "{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_use_survives_a_restart_and_a_revoked_key_leaves_the_file() {
    let mut d = DaemonBuilder::new(&[
        key_json("kept", &token_for("kept"), &["qot:read"]),
        key_json("gone", &token_for("gone"), &["qot:read"]),
    ])
    .metrics()
    .start();
    {
        let mut c = d.client().await;
        for id in ["kept", "gone"] {
            assert!(c.check(&token_for(id), "Qot_GetBasicQot", None).await.is_allow());
        }
    }
    let listed = json_last_used(&d, &[]);
    let kept = listed
        .iter()
        .find(|(id, _)| id == "kept")
        .and_then(|(_, v)| v.clone())
        .expect("kept has a last use");
    assert!(kept.is_string(), "{kept}");
    let gauge = metric_value(&d.metrics_text(), GAUGE, &[("key_id", "kept")]).expect("a gauge");
    futucli_ok(&d, &["revoke-key", "gone"]);

    assert!(d.stop().success());
    let text = std::fs::read_to_string(last_used_file(&d)).expect("written at shutdown");
    assert!(text.contains("\"kept\""), "{text}");
    assert!(!text.contains("\"gone\""), "a revoked key is dropped: {text}");
    let mode = std::fs::metadata(last_used_file(&d)).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o600);

    d.restart();
    let again = json_last_used(&d, &[]);
    assert_eq!(again, vec![("kept".to_owned(), Some(kept.clone()))]);
    let metrics = d.metrics_text();
    assert_eq!(metric_value(&metrics, GAUGE, &[("key_id", "kept")]), Some(gauge));
    assert_eq!(metric_value(&metrics, GAUGE, &[("key_id", "gone")]), None);
    let line = usage_last_used(&d, "kept");
    let t: Timestamp = kept.as_str().unwrap().parse().unwrap();
    assert_eq!(line, shown(t.as_second()));
}

/// A last-used file as an earlier run would have left it.
fn file_with(entries: &[(&str, Timestamp)]) -> String {
    let map: serde_json::Map<String, Value> = entries
        .iter()
        .map(|(id, t)| {
            (
                (*id).to_owned(),
                json!(Timestamp::from_second(minute(*t)).unwrap().to_string()),
            )
        })
        .collect();
    json!({ "version": 1, "last_used": map }).to_string()
}

fn ago(span: Span) -> Timestamp {
    Timestamp::now().checked_sub(span).unwrap()
}

/// The ids `list-keys --unused-for` lists, from its table.
fn unused_for(d: &Daemon, duration: &str) -> Vec<String> {
    let run = futucli_ok(d, &["list-keys", "--unused-for", duration]);
    assert_eq!(run.stderr, "", "{run:#?}");
    if run.stdout.starts_with("no keys") {
        return Vec::new();
    }
    let mut ids: Vec<String> = last_used_column(&run.stdout)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_for_lists_keys_used_long_ago_and_old_keys_never_used() {
    let d = DaemonBuilder::new(&[
        created("stale", &["qot:read"], Span::new().hours(4800)),
        created("hour-ago", &["qot:read"], Span::new().hours(4800)),
        created("busy", &["qot:read"], Span::new().hours(4800)),
        created("never-old", &["qot:read"], Span::new().hours(960)),
        created("never-young", &["qot:read"], Span::new().hours(1)),
    ])
    .state_file(
        FILE,
        file_with(&[
            ("stale", ago(Span::new().hours(960))),
            ("hour-ago", ago(Span::new().hours(1))),
            ("busy", ago(Span::new().hours(2400))),
            // Not in keys.json: ignored.
            ("revoked-long-ago", ago(Span::new().hours(2400))),
        ]),
    )
    .start();
    let mut c = d.client().await;
    assert!(c
        .check(&token_for("busy"), "Qot_GetBasicQot", None)
        .await
        .is_allow());

    assert_eq!(unused_for(&d, "30d"), ["never-old", "stale"]);
    assert_eq!(unused_for(&d, "720h"), ["never-old", "stale"]);
    assert_eq!(
        unused_for(&d, "30m"),
        ["hour-ago", "never-old", "never-young", "stale"]
    );
    assert_eq!(unused_for(&d, "365d"), Vec::<String>::new());
    let run = futucli_ok(&d, &["list-keys", "--unused-for", "365d"]);
    assert_eq!(run.stdout, "no keys unused for 365d\n");

    let mut json: Vec<String> = json_last_used(&d, &["--unused-for", "30d"])
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    json.sort();
    assert_eq!(json, ["never-old", "stale"]);

    for bad in ["30", "2w", "0d", "-5d", "soon", "100000d"] {
        let run = futucli(&d, &["list-keys", "--unused-for", bad]);
        assert_eq!(run.code, Some(2), "{bad}: {run:#?}");
        assert!(
            run.stderr.contains("--unused-for") && run.stderr.contains("30d, 12h or 90m"),
            "{bad}: the error names the flag and what it takes: {}",
            run.stderr
        );
    }
}

#[test]
fn a_use_under_a_clock_forty_days_back_is_listed_as_unused_for_thirty_days() {
    if !Path::new(LIBFAKETIME).is_file() {
        return skip("libfaketime is not installed (`make deps` installs Debian's faketime)");
    }
    let keys = [
        key_json("old", &token_for("old"), &["qot:read"]),
        key_json("new", &token_for("new"), &["qot:read"]),
    ];
    let mut past = DaemonBuilder::new(&keys)
        .env("LD_PRELOAD", LIBFAKETIME)
        .env("FAKETIME", "-40d")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .start();
    let run = futucli_ok(
        &past,
        &[
            "check",
            "--token",
            &token_for("old"),
            "--endpoint",
            "Qot_GetBasicQot",
        ],
    );
    assert!(run.stdout.starts_with("allow"), "{run:#?}");
    assert!(past.stop().success());
    let file = std::fs::read_to_string(last_used_file(&past)).expect("written at shutdown");

    let d = DaemonBuilder::new(&keys).state_file(FILE, file).start();
    futucli_ok(
        &d,
        &[
            "check",
            "--token",
            &token_for("new"),
            "--endpoint",
            "Qot_GetBasicQot",
        ],
    );
    assert_eq!(unused_for(&d, "30d"), ["old"]);
    let table = futucli_ok(&d, &["list-keys"]).stdout;
    let forty_days_ago = ago(Span::new().hours(960)).strftime("%Y-%m-%d").to_string();
    assert!(cell_of(&table, "old").starts_with(&forty_days_ago), "{table}");
}

#[test]
fn without_the_daemon_list_keys_shows_no_last_use_and_unused_for_refuses() {
    let d = {
        let mut d = DaemonBuilder::new(&[key_json("k", &token_for("k"), &["qot:read"])]).start();
        assert!(d.stop().success());
        d
    };
    let run = futucli(&d, &["list-keys"]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(cell_of(&run.stdout, "k"), "-");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one note on stderr: {run:#?}");
    assert!(
        lines[0].contains("not reached") && lines[0].contains("LAST USED"),
        "{lines:?}"
    );
    let listed = futucli(&d, &["list-keys", "--json"]);
    assert!(
        !listed.stdout.contains("last_used"),
        "unknown, not null: {listed:#?}"
    );

    let run = futucli(&d, &["list-keys", "--unused-for", "30d"]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("needs futu-authd"), "{run:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_checks_do_not_write_the_file_a_thousand_times() {
    let mut d = DaemonBuilder::new(&[key_json("busy", &token_for("busy"), &["qot:read"])]).start();
    let path = last_used_file(&d);
    // Each write replaces the file (a new inode) and sets its mtime.
    let version = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.ino(), m.mtime(), m.mtime_nsec()))
    };
    let mut seen = Vec::new();
    let mut c = d.client().await;
    for i in 0..1000 {
        // In bursts of ten (one group commit each) and one at a time.
        let n = if i % 2 == 0 { 10 } else { 1 };
        let mut ids = Vec::new();
        for _ in 0..n {
            let check = c.check_request(Iface::Rest, &token_for("busy"), "Qot_GetBasicQot", None);
            ids.push(check.request_id);
            c.feed(Request::Check(check)).await;
        }
        c.flush().await;
        for id in ids {
            assert!(futu_authd_tests::decision_of(id, c.recv().await).is_allow());
        }
        if let Some(v) = version(&path) {
            if seen.last() != Some(&v) {
                seen.push(v);
            }
        }
    }
    assert!(
        seen.len() <= 2,
        "at most a write a minute, not one per check: {} versions of the file",
        seen.len()
    );
    drop(c);
    assert!(d.stop().success());
    let text = std::fs::read_to_string(&path).expect("written at shutdown");
    assert!(text.contains("\"busy\""), "{text}");
}

// ---- the client and an older daemon -----------------------------------------------------

/// A futu-authd of protocol version 2, on `socket`, for one connection: it agrees on
/// version 2 and answers a Usage; it returns the requests it was sent after Hello, up to
/// that Usage or the first other request.
async fn version_2_daemon(socket: PathBuf) -> tokio::task::JoinHandle<Vec<String>> {
    let listener = tokio::net::UnixListener::bind(&socket).expect("bind the version-2 daemon");
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut names = Vec::new();
        loop {
            let mut len = [0u8; 4];
            if s.read_exact(&mut len).await.is_err() {
                return names;
            }
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut body).await.expect("a whole frame");
            let Ok(req) = decode_message_v::<Request>(&body, 2) else {
                // A version-2 daemon cannot read a version-3 request: it closes.
                names.push("<unreadable>".into());
                return names;
            };
            let resp = match req {
                Request::Hello(_) => Response::HelloOk {
                    protocol_version: 2,
                    server_version: "0.0.9".into(),
                },
                Request::Usage { request_id, id } => {
                    names.push("Usage".into());
                    let answer = Response::Usage(Usage {
                        request_id,
                        id,
                        day: "2026-11-30".into(),
                        daily_value_used: 0.0,
                        max_daily_value: None,
                        orders_last_minute: 0,
                        max_orders_per_minute: None,
                        open_orders: 0,
                        max_open_orders: None,
                        positions: Vec::new(),
                        max_position_value: None,
                    });
                    s.write_all(&encode_frame_v(&answer, 2).unwrap()).await.unwrap();
                    return names;
                }
                other => {
                    names.push(other.name().to_owned());
                    return names;
                }
            };
            s.write_all(&encode_frame_v(&resp, 2).unwrap()).await.unwrap();
        }
    })
}

#[tokio::test]
async fn the_client_does_not_send_key_activity_to_a_daemon_of_version_2() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("v2.sock");
    let daemon = version_2_daemon(socket.clone()).await;
    let client = AuthClient::builder(&socket)
        .deadline(Duration::from_secs(5))
        .build();
    let id: KeyId = "k".parse().unwrap();
    let err = client
        .key_activity(std::slice::from_ref(&id))
        .await
        .expect_err("refused before sending");
    assert!(
        matches!(
            err,
            ClientError::TooOld {
                needs: 3,
                speaks: 2,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("KeyActivity") && text.contains("upgrade futu-authd"),
        "{text}"
    );
    // The daemon was sent nothing it cannot read: the next request it gets is the Usage.
    let usage = client.usage(&id).await;
    assert_eq!(daemon.await.unwrap(), ["Usage"]);
    usage.expect("a version-2 request is answered on the same connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_the_most_ids_a_request_may_ask_about_is_invalid_spec() {
    let d = DaemonBuilder::new(&[key_json("k", &token_for("k"), &["qot:read"])]).start();
    let mut c = d.client().await;
    let request_id = c.next_id();
    let ids: Vec<KeyId> = (0..=MAX_ACTIVITY_IDS)
        .map(|i| format!("k{i}").parse().unwrap())
        .collect();
    match c.request(Request::KeyActivity { request_id, ids }).await {
        Response::Error { kind, message, .. } => {
            assert_eq!(kind, futu_auth_proto::ErrorKind::InvalidSpec, "{message}");
            assert!(message.contains("500"), "{message}");
        }
        other => panic!("expected invalid_spec, got {other:?}"),
    }
    // Ids not in service are left out; the rest come in the order asked.
    let request_id = c.next_id();
    let ids: Vec<KeyId> = ["ghost", "k"].iter().map(|i| i.parse().unwrap()).collect();
    match c.request(Request::KeyActivity { request_id, ids }).await {
        Response::KeyActivity { keys, .. } => {
            assert_eq!(keys.len(), 1, "{keys:?}");
            assert_eq!(keys[0].id.as_str(), "k");
            assert_eq!(keys[0].last_used, None);
        }
        other => panic!("expected KeyActivity, got {other:?}"),
    }
}
