//! End-to-end tests of what must hold when futu-authd is attacked or its disks fail: a
//! refused order leaves no trace, every allow a client saw is in the ledger and the audit
//! file (across `kill -9` too), tickets cannot be guessed, and an answer is never sent
//! before its audit record is in the file; connections that never say Hello or leave a
//! frame unfinished are closed while another uid is served; twenty thousand keys are
//! listed a page at a time.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use futu_auth_proto::{Check, Decision, ErrorKind, Iface, Market, Reason, Request, Response, Token, TrdSide};
use futu_authd_tests::{
    away_from_utc_midnight, deny_reason, executable_copy, key_json, metric_value, order, read_jsonl, skip,
    token_for, with, Client, DaemonBuilder,
};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

/// A key that may place simulated orders; `limits` as in keys.json.
fn trader(id: &str, token: &str, limits: Value) -> Value {
    with(
        key_json(id, token, &["qot:read", "trade:simulate"]),
        "limits",
        limits,
    )
}

/// An order worth exactly 1.
fn one() -> Option<futu_auth_proto::Order> {
    Some(order(Market::HK, "HK.00700", TrdSide::SELL, 1.0, Some(1.0)))
}

/// A small tmpfs mounted for one test (root only), unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `kib` KiB, or says why it cannot.
    fn mount(kib: u32) -> Result<SmallDisk, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("needs root to mount a small tmpfs".into());
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k,mode=0700"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk to the last byte.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.filler()).expect("create the filler");
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.write_all(&[0u8]); // the last partial page
    }

    /// Gives the space back.
    fn free(&self) {
        std::fs::remove_file(self.filler()).expect("remove the filler");
    }

    fn filler(&self) -> PathBuf {
        self.path().join("filler")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

#[tokio::test]
async fn a_full_state_disk_refuses_orders_and_leaves_no_trace_in_memory_or_after_a_restart() {
    let disk = match SmallDisk::mount(256) {
        Ok(d) => d,
        Err(why) => return skip(&why),
    };
    away_from_utc_midnight(30);
    let bot = token_for("bot");
    let mut d = DaemonBuilder::new(&[trader("bot", &bot, json!({ "max_daily_value": 200 }))])
        .arg("--state-dir")
        .arg(disk.path())
        .metrics()
        .start();
    let mut c = d.client().await;
    assert!(c.check(&bot, "Trd_PlaceOrder", one()).await.is_allow());

    disk.fill();
    // The journal's last page may still have room for a few entries.
    let mut allowed = 1;
    while c.check(&bot, "Trd_PlaceOrder", one()).await.is_allow() {
        allowed += 1;
        assert!(allowed < 150, "the full disk never refused an order");
    }
    for _ in 0..5 {
        let refused = c.check(&bot, "Trd_PlaceOrder", one()).await;
        assert_eq!(deny_reason(&refused), Reason::Internal, "{refused:?}");
    }
    assert_eq!(
        c.usage("bot").await,
        (f64::from(allowed), allowed),
        "refused orders took nothing"
    );
    let m = d.metrics_text();
    assert_eq!(
        metric_value(&m, "futu_auth_file_writable", &[("file", "ledger")]),
        Some(0.0)
    );
    assert!(metric_value(&m, "futu_auth_write_errors_total", &[("file", "ledger")]).unwrap() >= 5.0);
    d.wait_stderr("the ledger cannot be written");
    // Reads need no ledger write: they go on, and are audited.
    assert!(c.check(&bot, "Qot_GetBasicQot", None).await.is_allow());

    disk.free();
    // The cap of 200 is reached exactly: the refused orders did not eat into it.
    for i in allowed + 1..=200 {
        let d = c.check(&bot, "Trd_PlaceOrder", one()).await;
        assert!(d.is_allow(), "order {i}: {d:?}");
    }
    let over = c.check(&bot, "Trd_PlaceOrder", one()).await;
    assert_eq!(deny_reason(&over), Reason::DailyValue, "{over:?}");
    d.wait_stderr("the ledger can be written again");
    assert_eq!(
        metric_value(
            &d.metrics_text(),
            "futu_auth_file_writable",
            &[("file", "ledger")]
        ),
        Some(1.0)
    );

    // After kill -9 the ledger reads back what memory held.
    d.signal(Signal::SIGKILL);
    d.wait_exit();
    d.restart();
    let mut c = d.client().await;
    assert_eq!(c.usage("bot").await.0, 200.0);
    let allows = d
        .audit_records()
        .iter()
        .filter(|r| r["endpoint"] == "Trd_PlaceOrder" && r["outcome"] == "allow")
        .count();
    assert_eq!(allows, 200, "the audit file holds exactly the allowed orders");
}

#[tokio::test]
async fn a_full_audit_disk_refuses_every_check_until_it_has_room_again() {
    let disk = match SmallDisk::mount(256) {
        Ok(d) => d,
        Err(why) => return skip(&why),
    };
    away_from_utc_midnight(30);
    let bot = token_for("bot");
    let audit = disk.path().join("audit.jsonl");
    let mut d = DaemonBuilder::new(&[trader("bot", &bot, json!({ "max_daily_value": 100 }))])
        .arg("--audit-log")
        .arg(&audit)
        .metrics()
        .start();
    let mut c = d.client().await;
    assert!(c.check(&bot, "Trd_PlaceOrder", one()).await.is_allow());

    disk.fill();
    // The audit file's last page may still have room for a record or two.
    let mut allowed = 1;
    while c.check(&bot, "Trd_PlaceOrder", one()).await.is_allow() {
        allowed += 1;
        assert!(allowed < 50, "the full disk never refused an order");
    }
    let m = d.metrics_text();
    assert_eq!(
        metric_value(&m, "futu_auth_file_writable", &[("file", "audit")]),
        Some(0.0)
    );
    // A shorter record may still fit the file's last page: each order is either audited
    // and allowed or refused, never allowed unaudited.
    for _ in 0..5 {
        match c.check(&bot, "Trd_PlaceOrder", one()).await {
            Decision::Allow { .. } => allowed += 1,
            refused => assert_eq!(deny_reason(&refused), Reason::Internal, "{refused:?}"),
        }
    }
    d.wait_stderr("the audit file cannot be written");
    assert_eq!(
        c.usage("bot").await.0,
        f64::from(allowed),
        "the refused orders took nothing"
    );

    disk.free();
    assert!(c.check(&bot, "Trd_PlaceOrder", one()).await.is_allow());
    d.wait_stderr("the audit file can be written again");
    let records = read_jsonl(&audit);
    let allowed_orders = records
        .iter()
        .filter(|r| r["endpoint"] == "Trd_PlaceOrder" && r["outcome"] == "allow")
        .count();
    assert_eq!(allowed_orders, allowed as usize + 1, "{records:#?}");
    assert!(
        records.iter().all(|r| r["reason"] != "internal"),
        "nothing was written while the disk was full"
    );

    d.signal(Signal::SIGKILL);
    d.wait_exit();
    d.restart();
    let mut c = d.client().await;
    assert_eq!(
        c.usage("bot").await.0,
        f64::from(allowed + 1),
        "the ledger agrees with the audit file"
    );
}

#[tokio::test]
async fn every_answer_finds_its_audit_record_already_in_the_file() {
    let bot = token_for("bot");
    let d = DaemonBuilder::new(&[trader("bot", &bot, json!({}))]).start();
    let mut c = d.client().await;
    for i in 0..60 {
        let (endpoint, order) = match i % 3 {
            0 => ("Trd_PlaceOrder", one()),
            1 => ("Qot_GetBasicQot", None),
            _ => ("Trd_GetFunds", None), // a deny: the key lacks acc:read
        };
        let check = c.check_request(Iface::Rest, &bot, endpoint, order);
        let id = check.request_id;
        c.request(Request::Check(check)).await;
        // No waiting: the record was written before the answer left the daemon.
        let records = d.audit_records();
        assert!(
            records.iter().any(|r| r["request_id"] == id),
            "answer {id} arrived before its audit record"
        );
    }
}

/// Runs pipelined orders on `conns` connections until the daemon dies; returns the allows
/// the clients received.
async fn load_until_killed(socket: PathBuf, token: String, conns: usize, depth: usize) -> u64 {
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let socket = socket.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let mut c = Client::connect(&socket).await;
                c.hello().await;
                let mut allows = 0u64;
                loop {
                    for _ in 0..depth {
                        let check = Check {
                            request_id: c.next_id(),
                            token: Token::new(&token),
                            iface: Iface::Rest,
                            endpoint: "Trd_PlaceOrder".into(),
                            order: one(),
                            dry_run: false,
                            acc_id: None,
                            ref_price: None,
                        };
                        if c.try_feed(Request::Check(check)).await.is_err() {
                            return allows;
                        }
                    }
                    if c.try_flush().await.is_err() {
                        return allows;
                    }
                    for _ in 0..depth {
                        match c.next_frame().await {
                            Some(Ok(Response::Decision { decision, .. })) => {
                                allows += u64::from(decision.is_allow());
                            }
                            _ => return allows,
                        }
                    }
                }
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("a load task");
    }
    total
}

#[tokio::test]
async fn after_kill_9_under_load_the_ledger_and_the_audit_file_hold_exactly_the_allows() {
    away_from_utc_midnight(60);
    let bot = token_for("bot");
    let mut d = DaemonBuilder::new(&[trader("bot", &bot, json!({}))]).start();
    let (conns, depth) = (4, 32);
    let mut seen = 0u64;
    for round in 0..6 {
        let load = tokio::spawn(load_until_killed(d.socket_path(), bot.clone(), conns, depth));
        tokio::time::sleep(Duration::from_millis(150 + 40 * round)).await;
        d.signal(Signal::SIGKILL);
        d.wait_exit();
        seen += load.await.unwrap();
        d.restart();
        let mut c = d.client().await;
        let counted = c.usage("bot").await.0 as u64;
        let audited = d
            .audit_records()
            .iter()
            .filter(|r| r["endpoint"] == "Trd_PlaceOrder" && r["outcome"] == "allow")
            .count() as u64;
        assert_eq!(counted, audited, "round {round}: ledger and audit file agree");
        // An answer written to the ledger and the audit file but not yet sent when the
        // daemon died is counted (the safe side); at most what was in flight.
        assert!(
            seen <= counted && counted - seen <= (round + 1) * (conns * depth) as u64,
            "round {round}: clients saw {seen} allows, the ledger counted {counted}"
        );
        assert!(seen > 0, "the load made progress");
    }
}

#[tokio::test]
async fn tickets_cannot_be_guessed_from_ones_own() {
    let bot = token_for("bot");
    let d = DaemonBuilder::new(&[trader("bot", &bot, json!({}))]).start();
    let mut c = d.client().await;
    let mut tickets = Vec::new();
    for _ in 0..20 {
        match c.check(&bot, "Trd_PlaceOrder", one()).await {
            Decision::Allow { ticket: Some(t), .. } => tickets.push(t),
            other => panic!("expected an allow with a ticket, got {other:?}"),
        }
    }
    let close = tickets
        .windows(2)
        .filter(|w| w[0].abs_diff(w[1]) < 1 << 32)
        .count();
    assert_eq!(close, 0, "consecutive orders get unrelated tickets: {tickets:?}");
    for guess in [tickets[0] + 1, tickets[19] + 1, tickets[0] - 1, 1, 2, 21] {
        if tickets.contains(&guess) {
            continue;
        }
        let request_id = c.next_id();
        match c
            .request(Request::Release {
                request_id,
                ticket: guess,
            })
            .await
        {
            Response::Error {
                kind: ErrorKind::UnknownTicket,
                ..
            } => {}
            other => panic!("a guessed ticket {guess} was not refused: {other:?}"),
        }
    }
    let request_id = c.next_id();
    match c
        .request(Request::Release {
            request_id,
            ticket: tickets[3],
        })
        .await
    {
        Response::Released { refunded_value, .. } => assert_eq!(refunded_value, 1.0),
        other => panic!("the holder's release failed: {other:?}"),
    }
}

/// Whether a connection was closed by the daemon (EOF or reset) within the harness
/// deadline; panics if it sent anything.
async fn closed_by_daemon(c: &mut Client) {
    c.expect_closed().await;
}

#[tokio::test]
async fn connections_that_never_say_hello_are_closed_and_another_uid_is_still_served() {
    if !nix::unistd::geteuid().is_root() {
        return skip("needs root to run a gateway as another uid");
    }
    if !futu_authd_tests::have_program("setpriv") {
        return skip("setpriv (util-linux) is not installed");
    }
    let research = token_for("research");
    let d = DaemonBuilder::new(&[key_json("research", &research, &["qot:read"])])
        .dir_mode(0o755)
        .arg("--socket-mode")
        .arg("0666")
        .arg("--max-connections")
        .arg("8")
        .arg("--max-connections-per-uid")
        .arg("4")
        .arg("--hello-timeout")
        .arg("700ms")
        .metrics()
        .start();
    // A connection that said Hello and then keeps quiet is a gateway's: never cut for it.
    let mut quiet = d.client().await;
    // The same uid fills the rest of its share with connections that say nothing.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(Client::connect(&d.socket_path()).await);
    }
    // Past its share, a new connection of that uid is closed at once.
    let mut over = Client::connect(&d.socket_path()).await;
    closed_by_daemon(&mut over).await;
    // Another uid's gateway is served meanwhile.
    let probe = executable_copy(Path::new(env!("CARGO_BIN_EXE_authd-probe")), d.dir());
    let check = json!({ "Check": { "request_id": 1, "token": research, "iface": "rest",
                                   "endpoint": "Qot_GetBasicQot", "order": null, "dry_run": false } })
    .to_string();
    let socket = d.socket_path();
    let out = futu_authd_tests::run_as(
        65534,
        65534,
        &[],
        &probe,
        &[socket.as_os_str(), std::ffi::OsStr::new(&check)],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Allow"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The silent ones are closed once the hello timeout passes.
    for c in &mut idle {
        closed_by_daemon(c).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(quiet.check(&research, "Qot_GetBasicQot", None).await.is_allow());
    // A connection is counted a moment after it is closed.
    let closed_in = |m: &str, reason| {
        metric_value(m, "futu_auth_connections_closed_total", &[("reason", reason)]).unwrap_or(0.0)
    };
    let m = d.wait_metrics(|m| {
        closed_in(m, "hello_timeout") >= 3.0
            && closed_in(m, "uid_share") >= 1.0
            && closed_in(m, "client") >= 1.0
    });
    let closed = |reason| closed_in(&m, reason);
    assert_eq!(closed("hello_timeout"), 3.0, "{m}");
    assert_eq!(closed("uid_share"), 1.0, "{m}");
    assert!(closed("client") >= 1.0, "the probe's own close is counted: {m}");
}

#[tokio::test]
async fn a_frame_left_unfinished_closes_its_connection_and_is_counted() {
    let research = token_for("research");
    let d = DaemonBuilder::new(&[key_json("research", &research, &["qot:read"])])
        .arg("--frame-timeout")
        .arg("400ms")
        .metrics()
        .start();
    let mut stalled = d.client().await;
    // A length prefix announcing 40 bytes, and 3 of them.
    stalled.write_raw(&[0, 0, 0, 40, 1, 2, 3]).await;
    let mut quiet = d.client().await;
    closed_by_daemon(&mut stalled).await;
    assert!(quiet.check(&research, "Qot_GetBasicQot", None).await.is_allow());
    // A connection is counted a moment after it is closed.
    let frame_timeouts = |m: &str| {
        metric_value(
            m,
            "futu_auth_connections_closed_total",
            &[("reason", "frame_timeout")],
        )
    };
    let m = d.wait_metrics(|m| frame_timeouts(m).is_some());
    assert_eq!(frame_timeouts(&m), Some(1.0), "{m}");
}

#[tokio::test]
async fn list_keys_pages_through_twenty_thousand_keys_and_never_reports_a_readable_answer_as_closed() {
    let mut keys = Vec::new();
    for i in 0..20_000 {
        keys.push(key_json(
            &format!("k{i:05}"),
            &token_for(&format!("k{i}")),
            &["qot:read"],
        ));
    }
    let d = DaemonBuilder::new(&keys).start();
    let out = futu_authd_tests::futucli_command()
        .arg("--socket")
        .arg(d.socket_path())
        .arg("--keys-file")
        .arg(d.dir().join("elsewhere.json"))
        .args(["list-keys", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.is_empty(),
        "nothing falls back to reading the file: {stderr}"
    );
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.len(), 20_000);
    assert_eq!(listed[0]["id"], "k00000");
    assert_eq!(listed[19_999]["id"], "k19999");

    // Pages fill frames, and a listing that is not (any more) there says so.
    let mut c = d.client().await;
    let request_id = c.next_id();
    let (listing, first) = match c
        .request(Request::ListKeysPage {
            request_id,
            listing: 0,
            offset: 0,
        })
        .await
    {
        Response::KeysPage {
            listing,
            offset: 0,
            total: 20_000,
            keys,
            ..
        } => (listing, keys.len()),
        other => panic!("expected the first page, got {other:?}"),
    };
    assert!(first > 400, "a page holds a frame's worth: {first}");
    let request_id = c.next_id();
    match c
        .request(Request::ListKeysPage {
            request_id,
            listing: listing ^ 1,
            offset: first as u32,
        })
        .await
    {
        Response::Error {
            kind: ErrorKind::ListingExpired,
            ..
        } => {}
        other => panic!("expected listing_expired, got {other:?}"),
    }
}
