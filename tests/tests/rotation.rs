//! End-to-end tests of key rotation: `futucli rotate-key` through a real futu-authd and on
//! keys.json with the daemon stopped, the overlap in which the old plaintext still works
//! (the daemon's clock faked with libfaketime to go past its end), the counters a rotated
//! key keeps, and keys.json's `rotations` as the daemon loads and refuses it.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use futu_auth_client::{AuthClient, ClientError};
use futu_auth_proto::codec::{decode_message_v, encode_frame_v};
use futu_auth_proto::{ErrorKind, Market, Reason, Request, Response, TrdSide};
use futu_authd_tests::{
    allowed_key, daemon_binary, deny_reason, futucli_command, hash_of, key_json, keys_json, order, token_for,
    with, write_private, Client, Daemon, DaemonBuilder, FakeClock, Run,
};
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

/// What futucli prints on stderr when it edits keys.json because the daemon is not running.
const NOT_REACHED: &str = "futu-authd not reached at";

// ---- futucli ---------------------------------------------------------------------------

/// Runs futucli against `socket` and `keys_file`.
fn futucli(socket: &Path, keys_file: &Path, args: &[&str]) -> Run {
    let out = futucli_command()
        .arg("--socket")
        .arg(socket)
        .arg("--keys-file")
        .arg(keys_file)
        .args(args)
        .output()
        .expect("run futucli");
    Run::from(out)
}

/// futucli against the daemon `d` (its socket and keys file).
fn cli(d: &Daemon, args: &[&str]) -> Run {
    d.futucli().args(args).output().expect("run futucli").into()
}

/// What rotate-key printed: the new plaintext and its "old plaintext" line.
struct Rotated {
    token: String,
    old: String,
}

/// Parses rotate-key's four lines (gen-key's style), asserting each; `stored_in` is the
/// keys file named on the last one.
fn rotated(run: &Run, id: &str, stored_in: &Path) -> Rotated {
    assert_eq!(run.code, Some(0), "rotate-key failed: {run:#?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "rotate-key prints four lines: {run:#?}");
    assert_eq!(lines[0], format!("✅ Rotated key \"{id}\""));
    let token = lines[1]
        .strip_prefix("plaintext: ")
        .and_then(|l| l.strip_suffix(" ← save this; the terminal output is your only copy"))
        .unwrap_or_else(|| panic!("gen-key's plaintext line: {:?}", lines[1]));
    assert!(
        token.len() == 35 && token.starts_with("fc_"),
        "fc_ and 32 hex digits: {token:?}"
    );
    let old = lines[2]
        .strip_prefix("old plaintext: ")
        .unwrap_or_else(|| panic!("the old plaintext's line: {:?}", lines[2]));
    assert_eq!(lines[3], format!("stored in: {}", stored_in.display()));
    Rotated {
        token: token.to_owned(),
        old: old.to_owned(),
    }
}

/// The time in an "accepted until T, then refused" line.
fn accepted_until(old: &str) -> Timestamp {
    let t = old
        .strip_prefix("accepted until ")
        .and_then(|l| l.split([' ', ',']).next())
        .unwrap_or_else(|| panic!("an 'accepted until' line: {old:?}"));
    t.parse().unwrap_or_else(|e| panic!("{t:?}: {e}"))
}

/// keys.json as JSON.
fn keys_of(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read keys.json")).expect("keys.json is JSON")
}

/// keys.json's `rotations` (empty when the field is absent).
fn rotations_of(path: &Path) -> Vec<Value> {
    keys_of(path)["rotations"].as_array().cloned().unwrap_or_default()
}

/// The `hash` of key `id` in keys.json.
fn hash_in(path: &Path, id: &str) -> String {
    let keys = keys_of(path);
    let rec = keys["keys"]
        .as_array()
        .expect("keys is an array")
        .iter()
        .find(|k| k["id"] == id)
        .unwrap_or_else(|| panic!("no key {id:?} in {keys:#}"))
        .clone();
    rec["hash"].as_str().expect("a hash").to_owned()
}

/// No file under `dir` (keys.json, ledger, audit, …) and not the daemon's log holds any of
/// `tokens`.
fn assert_no_plaintext(dir: &Path, log: &str, tokens: &[&str]) {
    for t in tokens {
        assert!(!log.contains(&t[3..]), "the daemon's log holds a plaintext");
    }
    for entry in std::fs::read_dir(dir).expect("read the directory") {
        let path = entry.expect("a directory entry").path();
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        if meta.is_dir() {
            assert_no_plaintext(&path, "", tokens);
        } else if meta.is_file() {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default()).into_owned();
            for t in tokens {
                assert!(!text.contains(&t[3..]), "{} holds a plaintext", path.display());
            }
        }
    }
}

// ---- checks ----------------------------------------------------------------------------

/// The key a quote read with `token` is allowed for, or the reason it is refused.
async fn quote(c: &mut Client, token: &str) -> Result<String, Reason> {
    let d = c.check(token, "Qot_GetBasicQot", None).await;
    if d.is_allow() {
        Ok(allowed_key(&d))
    } else {
        Err(deny_reason(&d))
    }
}

fn sell() -> Option<futu_auth_proto::Order> {
    Some(order(Market::HK, "HK.00700", TrdSide::SELL, 1.0, Some(1.0)))
}

fn bot(token: &str) -> Value {
    key_json("bot", token, &["qot:read", "trade:simulate"])
}

// ---- through the daemon ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_plaintext_works_during_the_overlap_and_is_unknown_key_after_it() {
    let Some(clock) = FakeClock::new() else { return };
    let old = token_for("rotation-overlap");
    let d = DaemonBuilder::new(&[bot(&old)]).clock(&clock).start();
    let mut c = d.client().await;
    assert_eq!(quote(&mut c, &old).await, Ok("bot".into()));

    let before = Timestamp::now();
    let r = rotated(
        &cli(&d, &["rotate-key", "bot", "--overlap", "2h"]),
        "bot",
        &d.keys_path(),
    );
    let after = Timestamp::now();
    let until = accepted_until(&r.old);
    assert!(r.old.ends_with(", then refused"), "{}", r.old);
    let two_hours = SignedDuration::from_hours(2);
    assert!(
        until
            >= before
                .checked_add(two_hours - SignedDuration::from_secs(1))
                .unwrap()
            && until <= after.checked_add(two_hours).unwrap(),
        "two hours from the rotation: {until}"
    );
    assert_ne!(r.token, old);

    // keys.json: the key's new digest, the old one with the end of its overlap.
    assert_eq!(hash_in(&d.keys_path(), "bot"), hash_of(&r.token));
    assert_eq!(
        rotations_of(&d.keys_path()),
        vec![json!({ "id": "bot", "previous_hash": hash_of(&old), "until": until.to_string() })]
    );

    // At once, both work, as the same key.
    assert_eq!(quote(&mut c, &r.token).await, Ok("bot".into()));
    assert_eq!(quote(&mut c, &old).await, Ok("bot".into()));
    // list-keys says the overlap is in force, until when.
    let overlap_note = format!("bot: rotated; the old plaintext is accepted until {until}");
    let table = cli(&d, &["list-keys"]);
    assert!(table.stdout.contains(&overlap_note), "{table:#?}");
    let listed: Value = serde_json::from_str(&cli(&d, &["list-keys", "--json"]).stdout).unwrap();
    assert_eq!(
        listed[0]["previous_valid_until"],
        json!(until.to_string()),
        "{listed}"
    );

    // An hour later, inside the overlap: still.
    clock.set_offset(SignedDuration::from_hours(1));
    assert_eq!(quote(&mut c, &old).await, Ok("bot".into()));

    // Past its end: the old plaintext is refused exactly like a token nobody made.
    clock.set_offset(two_hours + SignedDuration::from_secs(60));
    let refused = c.check(&old, "Qot_GetBasicQot", None).await;
    let stranger = c.check(&token_for("nobody"), "Qot_GetBasicQot", None).await;
    assert_eq!(deny_reason(&refused), Reason::UnknownKey);
    assert_eq!(refused, stranger, "the same answer as an unknown token");
    assert_eq!(
        quote(&mut c, &r.token).await,
        Ok("bot".into()),
        "the new one goes on"
    );
    assert!(
        !cli(&d, &["list-keys"]).stdout.contains("rotated;"),
        "the overlap is over"
    );
    let listed: Value = serde_json::from_str(&cli(&d, &["list-keys", "--json"]).stdout).unwrap();
    assert!(listed[0].get("previous_valid_until").is_none(), "{listed}");

    // The rotation is audited as an admin request on the key, with no plaintext anywhere.
    let audit = d.wait_audit(1);
    let rec = audit
        .iter()
        .find(|r| r["endpoint"] == "RotateKey")
        .unwrap_or_else(|| panic!("an audit record of RotateKey: {audit:#?}"));
    assert_eq!(rec["key_id"], "bot");
    assert_eq!(rec["outcome"], "allow");
    let unknown: Vec<&Value> = audit.iter().filter(|r| r["reason"] == "unknown_key").collect();
    assert_eq!(
        unknown.len(),
        2,
        "the old plaintext after the overlap, and the stranger"
    );
    assert!(unknown.iter().all(|r| r["key_id"].is_null()), "{unknown:#?}");
    assert_no_plaintext(d.dir(), &d.stderr_text(), &[&old, &r.token]);
}

#[tokio::test]
async fn orders_with_the_old_and_the_new_plaintext_count_toward_the_same_limits() {
    let old = token_for("rotation-counters");
    let key = with(bot(&old), "limits", json!({ "max_orders_per_minute": 3 }));
    let d = DaemonBuilder::new(&[key]).start();
    let mut c = d.client().await;
    assert!(c.check(&old, "Trd_PlaceOrder", sell()).await.is_allow());

    let r = rotated(
        &cli(&d, &["rotate-key", "bot", "--overlap", "1h"]),
        "bot",
        &d.keys_path(),
    );
    assert!(c.check(&old, "Trd_PlaceOrder", sell()).await.is_allow());
    assert!(c.check(&r.token, "Trd_PlaceOrder", sell()).await.is_allow());
    assert_eq!(c.usage("bot").await.1, 3, "one key, one count");
    for token in [&old, &r.token] {
        let d = c.check(token, "Trd_PlaceOrder", sell()).await;
        assert_eq!(deny_reason(&d), Reason::Rate, "{d:?}");
    }
}

#[tokio::test]
async fn overlap_0_refuses_the_old_plaintext_at_once() {
    let old = token_for("rotation-zero");
    let d = DaemonBuilder::new(&[bot(&old)]).start();
    let mut c = d.client().await;
    let r = rotated(
        &cli(&d, &["rotate-key", "bot", "--overlap", "0"]),
        "bot",
        &d.keys_path(),
    );
    assert_eq!(r.old, "refused from now on");
    assert_eq!(quote(&mut c, &old).await, Err(Reason::UnknownKey));
    assert_eq!(quote(&mut c, &r.token).await, Ok("bot".into()));
    let text = std::fs::read_to_string(d.keys_path()).unwrap();
    assert!(!text.contains("rotations"), "no entry for overlap 0: {text}");
}

#[tokio::test]
async fn the_overlap_ends_no_later_than_the_keys_expiry() {
    let old = token_for("rotation-expiry");
    let expires = Timestamp::from_second(Timestamp::now().as_second() + 3600).unwrap();
    let key = with(bot(&old), "expires_at", json!(expires.to_string()));
    let d = DaemonBuilder::new(&[key]).start();
    let r = rotated(
        &cli(&d, &["rotate-key", "bot", "--overlap", "7d"]),
        "bot",
        &d.keys_path(),
    );
    assert_eq!(
        r.old,
        format!("accepted until {expires} (the key's expires_at), then refused")
    );
    assert_eq!(rotations_of(&d.keys_path())[0]["until"], expires.to_string());
    let mut c = d.client().await;
    assert_eq!(quote(&mut c, &old).await, Ok("bot".into()));
}

#[tokio::test]
async fn revoking_a_rotated_key_removes_its_rotation() {
    let old = token_for("rotation-revoke");
    let d = DaemonBuilder::new(&[bot(&old)]).start();
    let r = rotated(&cli(&d, &["rotate-key", "bot"]), "bot", &d.keys_path());
    let until = accepted_until(&r.old);
    let day = until.duration_since(Timestamp::now());
    assert!(
        day > SignedDuration::from_hours(23) && day <= SignedDuration::from_hours(24),
        "24h by default: {until}"
    );
    assert_eq!(rotations_of(&d.keys_path()).len(), 1);
    let revoked = cli(&d, &["revoke-key", "bot"]);
    assert_eq!(revoked.code, Some(0), "{revoked:#?}");
    assert!(rotations_of(&d.keys_path()).is_empty());
    let mut c = d.client().await;
    for token in [&old, &r.token] {
        assert_eq!(quote(&mut c, token).await, Err(Reason::UnknownKey));
    }
}

#[tokio::test]
async fn rotating_twice_leaves_only_the_last_old_plaintext_working() {
    let first = token_for("rotation-twice");
    let d = DaemonBuilder::new(&[bot(&first)]).start();
    let second = rotated(
        &cli(&d, &["rotate-key", "bot", "--overlap", "1h"]),
        "bot",
        &d.keys_path(),
    )
    .token;
    let third = rotated(
        &cli(&d, &["rotate-key", "bot", "--overlap", "1h"]),
        "bot",
        &d.keys_path(),
    )
    .token;
    let mut c = d.client().await;
    assert_eq!(quote(&mut c, &first).await, Err(Reason::UnknownKey));
    assert_eq!(quote(&mut c, &second).await, Ok("bot".into()));
    assert_eq!(quote(&mut c, &third).await, Ok("bot".into()));
    let rotations = rotations_of(&d.keys_path());
    assert_eq!(rotations.len(), 1, "{rotations:#?}");
    assert_eq!(rotations[0]["previous_hash"], hash_of(&second));
    assert_no_plaintext(d.dir(), &d.stderr_text(), &[&first, &second, &third]);
}

#[tokio::test]
async fn rotating_an_unknown_key_or_with_a_bad_overlap_is_one_line_and_changes_nothing() {
    let old = token_for("rotation-errors");
    let d = DaemonBuilder::new(&[bot(&old)]).start();
    let text = std::fs::read_to_string(d.keys_path()).unwrap();
    let r = cli(&d, &["rotate-key", "ghost"]);
    assert_eq!(r.code, Some(1), "{r:#?}");
    assert!(r.stderr.contains("no key with id \"ghost\""), "{r:#?}");
    for (overlap, says) in [
        ("2w", "such as 24h, 90m, 7d, 3600s, or 0"),
        ("1.5h", "such as 24h, 90m, 7d, 3600s, or 0"),
        ("91d", "longer than the longest overlap, 90d"),
    ] {
        let r = cli(&d, &["rotate-key", "bot", "--overlap", overlap]);
        assert_eq!(r.code, Some(2), "{r:#?}");
        assert!(
            r.stderr.contains("--overlap") && r.stderr.contains(says),
            "{overlap}: {r:#?}"
        );
    }
    assert_eq!(std::fs::read_to_string(d.keys_path()).unwrap(), text);

    // The daemon refuses an overlap over 90 days from any client.
    let mut c = d.client().await;
    let request_id = c.next_id();
    let answer = c
        .request(Request::RotateKey {
            request_id,
            id: "bot".parse().unwrap(),
            overlap_secs: 90 * 86_400 + 1,
        })
        .await;
    assert!(
        matches!(&answer, Response::Error { kind: ErrorKind::InvalidSpec, message, .. } if message.contains("90 days")),
        "{answer:?}"
    );
    assert_eq!(std::fs::read_to_string(d.keys_path()).unwrap(), text);
}

// ---- on the file -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_daemon_stopped_rotate_key_edits_keys_json_and_the_daemon_serves_the_overlap() {
    let Some(clock) = FakeClock::new() else { return };
    let old = token_for("rotation-file");
    let mut d = DaemonBuilder::new(&[bot(&old)]).clock(&clock).start();
    assert!(d.stop().success());

    let run = cli(&d, &["rotate-key", "bot", "--overlap", "90m"]);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].contains(NOT_REACHED),
        "one line saying the file is edited: {run:#?}"
    );
    let r = rotated(&run, "bot", &d.keys_path());
    let until = accepted_until(&r.old);
    assert_eq!(
        rotations_of(&d.keys_path()),
        vec![json!({ "id": "bot", "previous_hash": hash_of(&old), "until": until.to_string() })]
    );

    d.restart();
    let mut c = d.client().await;
    assert_eq!(quote(&mut c, &old).await, Ok("bot".into()));
    assert_eq!(quote(&mut c, &r.token).await, Ok("bot".into()));
    clock.set_offset(SignedDuration::from_mins(91));
    assert_eq!(quote(&mut c, &old).await, Err(Reason::UnknownKey));
    assert_eq!(quote(&mut c, &r.token).await, Ok("bot".into()));
    assert_no_plaintext(d.dir(), &d.stderr_text(), &[&old, &r.token]);
}

/// A futu-authd of protocol version 2 on `socket`: it refuses a Hello of version 3 (Error
/// `version`, then close) and accepts version 2. Every request it receives after a Hello
/// is kept in the returned list.
fn version_2_daemon(socket: &Path) -> Arc<Mutex<Vec<String>>> {
    let listener = UnixListener::bind(socket).expect("bind the version-2 daemon");
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let Some(body) = read_frame(&mut s) else { continue };
            let Ok(Request::Hello(hello)) = decode_message_v::<Request>(&body, 1) else {
                continue;
            };
            let answer = if hello.protocol_version == 2 {
                Response::HelloOk {
                    protocol_version: 2,
                    server_version: "0.9.0".into(),
                }
            } else {
                Response::Error {
                    request_id: 0,
                    kind: ErrorKind::Version,
                    message: format!(
                        "protocol version {} is not spoken here; this futu-authd speaks 1 and 2",
                        hello.protocol_version
                    ),
                }
            };
            let _ = s.write_all(&encode_frame_v(&answer, 2).unwrap());
            if hello.protocol_version != 2 {
                continue;
            }
            while let Some(body) = read_frame(&mut s) {
                let what = match decode_message_v::<Request>(&body, 2) {
                    Ok(req) => req.name().to_owned(),
                    Err(e) => format!("an unreadable frame: {e}"),
                };
                seen.lock().unwrap().push(what);
            }
        }
    });
    received
}

/// One frame's body, or None at the end of the stream.
fn read_frame(s: &mut UnixStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Some(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_too_old_for_rotation_is_named_and_keys_json_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("v2.sock");
    let keys_file = dir.path().join("keys.json");
    let old = token_for("rotation-old-daemon");
    write_private(&keys_file, &keys_json(&[bot(&old)]));
    let text = std::fs::read_to_string(&keys_file).unwrap();
    let received = version_2_daemon(&socket);

    let r = futucli(&socket, &keys_file, &["rotate-key", "bot"]);
    assert_eq!(r.code, Some(1), "{r:#?}");
    assert!(r.stdout.is_empty(), "{r:#?}");
    let line = r.stderr.trim_end();
    assert_eq!(line.lines().count(), 1, "one line: {r:#?}");
    for says in [
        "too old for rotate-key",
        "protocol version 2",
        "upgrade",
        "was not changed",
        "next reload",
    ] {
        assert!(line.contains(says), "{says:?} in {line:?}");
    }
    assert_eq!(std::fs::read_to_string(&keys_file).unwrap(), text);

    // The library says the same to any caller, before sending anything.
    let client = AuthClient::builder(&socket)
        .deadline(std::time::Duration::from_secs(5))
        .build();
    let e = client
        .rotate_key(&"bot".parse().unwrap(), std::time::Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::TooOld {
                request: "RotateKey",
                needs: 3,
                speaks: 2
            }
        ),
        "{e:?}"
    );
    assert!(
        received.lock().unwrap().is_empty(),
        "nothing was sent after Hello: {:?}",
        received.lock().unwrap()
    );
}

// ---- keys.json -------------------------------------------------------------------------

/// `futu-authd --check-config` of keys.json `text`: its exit code and stderr.
fn check_config(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    write_private(&path, text);
    let out = Command::new(daemon_binary())
        .arg("--check-config")
        .arg("--keys-file")
        .arg(&path)
        .output()
        .expect("run futu-authd --check-config");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// keys.json with key `bot` and these `rotations`.
fn with_rotations(token: &str, rotations: Value) -> String {
    let mut file: Value = serde_json::from_str(&keys_json(&[bot(token)])).unwrap();
    file["rotations"] = rotations;
    serde_json::to_string_pretty(&file).unwrap()
}

#[tokio::test]
async fn a_bad_rotations_entry_is_refused_naming_the_entry_and_field() {
    let token = token_for("rotation-validation");
    let entry = |id: &str, previous: &str| json!({ "id": id, "previous_hash": previous, "until": "2099-01-01T00:00:00Z" });
    let (a, b) = (hash_of(&token_for("a")), hash_of(&token_for("b")));

    let good = with_rotations(&token, json!([entry("bot", &a)]));
    assert_eq!(check_config(&good).0, Some(0), "{}", check_config(&good).1);

    let cases = [
        (
            json!([entry("ghost", &a)]),
            "field rotations[0].id",
            "no key has id \"ghost\"",
        ),
        (
            json!([entry("bot", &a), entry("bot", &b)]),
            "field rotations[1].id",
            "two rotations",
        ),
        (
            json!([entry("bot", &hash_of(&token))]),
            "field rotations[0].previous_hash",
            "a plaintext in service",
        ),
        (
            json!([{ "id": "bot", "previous_hash": a, "until": "2099-01-01T00:00:00Z", "plaintext": "x" }]),
            "rotations[0]",
            "unknown field `plaintext`",
        ),
    ];
    for (rotations, field, says) in cases {
        let (code, stderr) = check_config(&with_rotations(&token, rotations));
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains(field) && stderr.contains(says),
            "{field}, {says}: {stderr}"
        );
    }

    // Two entries with one previous_hash: at reload the keys in service stay, and the log
    // names the entry.
    let mut file: Value = serde_json::from_str(&keys_json(&[
        bot(&token),
        key_json("other", &token_for("other"), &["qot:read"]),
    ]))
    .unwrap();
    file["rotations"] = json!([entry("bot", &a), entry("other", &a)]);
    let d = DaemonBuilder::new(&[bot(&token)]).start();
    d.write_keys_text(&serde_json::to_string_pretty(&file).unwrap());
    let r = cli(&d, &["reload"]);
    assert_eq!(r.code, Some(1), "{r:#?}");
    assert!(
        r.stderr.contains("field rotations[1].previous_hash")
            && r.stderr.contains("the same previous_hash as rotations[0]"),
        "{r:#?}"
    );
    d.wait_stderr("field rotations[1].previous_hash");
    let mut c = d.client().await;
    assert_eq!(
        quote(&mut c, &token).await,
        Ok("bot".into()),
        "the keys in service stay"
    );
    assert_eq!(quote(&mut c, &token_for("other")).await, Err(Reason::UnknownKey));
}
