//! Protocol versions against the real daemon: Hello agrees on a version; a version-1
//! client is served, byte for byte, what it was served before version 2 existed; a
//! version-2 client's denies say when to retry and the figures of the limit that refused;
//! the client library falls back to version 1 with a daemon that speaks only that.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futu_auth_client::AuthClient;
use futu_auth_proto::codec::{decode_message_v, encode_frame_v};
use futu_auth_proto::{
    Check, Decision, ErrorKind, Hello, Iface, LimitFigures, Market, Reason, Request, Response, Token, TrdEnv,
    TrdSide, PROTOCOL_VERSION,
};
use futu_authd_tests::{
    have_program, key_json, order, skip, token_for, with, Daemon, DaemonBuilder, DEADLINE,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// A connection that sends and reads whole frames as bytes: what a client of either
/// version sees on the socket.
struct RawClient {
    stream: UnixStream,
    /// The version its requests are written in: the daemon's answer to its Hello.
    version: u16,
}

impl RawClient {
    async fn connect(socket: &Path) -> RawClient {
        let stream = UnixStream::connect(socket)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", socket.display()));
        RawClient {
            stream,
            version: PROTOCOL_VERSION,
        }
    }

    /// Connects and says Hello offering `version`; returns the connection and the version
    /// the daemon answered with.
    async fn hello(socket: &Path, version: u16) -> (RawClient, u16) {
        let mut c = RawClient::connect(socket).await;
        c.send(&Request::Hello(Hello {
            protocol_version: version,
            client_name: format!("raw-v{version}"),
        }))
        .await;
        // HelloOk is the same in every version.
        match decode_message_v::<Response>(&c.read_frame().await[4..], 1).unwrap() {
            Response::HelloOk { protocol_version, .. } => {
                c.version = protocol_version;
                (c, protocol_version)
            }
            other => panic!("Hello {version} answered with {other:?}"),
        }
    }

    /// A request as its version writes it (a Check is shorter before version 6).
    async fn send(&mut self, req: &Request) {
        let frame = encode_frame_v(req, self.version).unwrap();
        self.stream.write_all(&frame).await.expect("send a frame");
    }

    /// The next frame, length prefix included.
    async fn read_frame(&mut self) -> Vec<u8> {
        tokio::time::timeout(DEADLINE, async {
            let mut len = [0u8; 4];
            self.stream.read_exact(&mut len).await.expect("read a length");
            let mut frame = len.to_vec();
            frame.resize(4 + u32::from_be_bytes(len) as usize, 0);
            self.stream
                .read_exact(&mut frame[4..])
                .await
                .expect("read a body");
            frame
        })
        .await
        .unwrap_or_else(|_| panic!("no answer from futu-authd within {DEADLINE:?}"))
    }

    /// Sends an order check for `token` and returns the answer's frame.
    async fn place(&mut self, request_id: u64, token: &str) -> Vec<u8> {
        self.send(&Request::Check(Check {
            request_id,
            token: Token::new(token),
            iface: Iface::Rest,
            endpoint: "Trd_PlaceOrder".into(),
            order: Some(order(Market::HK, "HK.00700", TrdSide::SELL, 100.0, Some(388.2))),
            dry_run: false,
            acc_id: None,
            ref_price: None,
        }))
        .await;
        self.read_frame().await
    }
}

/// The unsigned varint of docs/PROTOCOL.md §4, written by hand.
fn varint(n: u64) -> Vec<u8> {
    match n {
        0..=250 => vec![n as u8],
        251..=0xffff => [&[0xfb][..], &(n as u16).to_le_bytes()].concat(),
        0x1_0000..=0xffff_ffff => [&[0xfc][..], &(n as u32).to_le_bytes()].concat(),
        _ => [&[0xfd][..], &n.to_le_bytes()].concat(),
    }
}

fn string(s: &str) -> Vec<u8> {
    [varint(s.len() as u64), s.as_bytes().to_vec()].concat()
}

/// A Deny answer as version 1 (and every futu-authd before version 2) writes it, by the
/// rules of docs/PROTOCOL.md, without the codec: Decision, request_id, Deny, reason,
/// key_id Some, detail — and nothing after it.
fn version_1_deny_frame(request_id: u64, reason: Reason, key: &str, detail: &str) -> Vec<u8> {
    let reason_index = Reason::ALL.iter().position(|r| *r == reason).unwrap() as u64;
    let body = [
        vec![1],
        varint(request_id),
        vec![1],
        varint(reason_index),
        vec![1],
        string(key),
        string(detail),
    ]
    .concat();
    [(body.len() as u32).to_be_bytes().to_vec(), body].concat()
}

/// A simulation key allowed `max_orders_per_minute` orders a minute.
fn rate_limited(token: &str, max_orders_per_minute: u32) -> Daemon {
    DaemonBuilder::new(&[with(
        key_json("sim-bot", token, &["trade:simulate"]),
        "limits",
        json!({ "max_orders_per_minute": max_orders_per_minute }),
    )])
    .start()
}

#[tokio::test]
async fn hello_agrees_on_the_older_of_the_two_versions() {
    let d = rate_limited(&token_for("sim-bot"), 1);
    for (offered, agreed) in [
        (1, 1),
        (2, 2),
        (3, 3),
        (4, 4),
        (5, 5),
        (6, 6),
        (7, 6),
        (u16::MAX, 6),
    ] {
        let (_, got) = RawClient::hello(&d.socket_path(), offered).await;
        assert_eq!(got, agreed, "Hello {offered}");
    }
    // A version-1 client's HelloOk is today's bytes: version 1, then the server version.
    let mut c = RawClient::connect(&d.socket_path()).await;
    c.send(&Request::Hello(Hello {
        protocol_version: 1,
        client_name: "rest".into(),
    }))
    .await;
    let frame = c.read_frame().await;
    let server_version = env!("CARGO_PKG_VERSION");
    let body = [vec![0, 1], string(server_version)].concat();
    assert_eq!(frame[4..], body[..]);
    // Version 0 is spoken nowhere.
    let mut c = RawClient::connect(&d.socket_path()).await;
    c.send(&Request::Hello(Hello {
        protocol_version: 0,
        client_name: "rest".into(),
    }))
    .await;
    match decode_message_v::<Response>(&c.read_frame().await[4..], PROTOCOL_VERSION).unwrap() {
        Response::Error { kind, .. } => assert_eq!(kind, ErrorKind::Version),
        other => panic!("Hello 0 answered with {other:?}"),
    }
}

#[tokio::test]
async fn a_rate_limited_key_is_denied_to_each_client_in_its_own_version() {
    let bot = token_for("sim-bot");
    let d = rate_limited(&bot, 2);
    let (mut v1, version) = RawClient::hello(&d.socket_path(), 1).await;
    assert_eq!(version, 1);
    let (mut v2, version) = RawClient::hello(&d.socket_path(), 2).await;
    assert_eq!(version, 2);

    // Two orders fill the key's minute.
    for id in [1, 2] {
        let answer = decode_message_v::<Response>(&v2.place(id, &bot).await[4..], 2).unwrap();
        assert!(
            matches!(&answer, Response::Decision { decision, .. } if decision.is_allow()),
            "{answer:?}"
        );
    }

    // Version 1: exactly the bytes of before, which its codec reads.
    let frame = v1.place(7, &bot).await;
    let answer = decode_message_v::<Response>(&frame[4..], 1).expect("a version-1 answer");
    let Response::Decision {
        request_id: 7,
        decision:
            Decision::Deny {
                reason: Reason::Rate,
                detail,
                retry_after_ms: None,
                limit: None,
                ..
            },
    } = &answer
    else {
        panic!("expected a rate deny, got {answer:?}")
    };
    assert_eq!(detail, "2 orders in the last 60 s; max_orders_per_minute is 2");
    assert_eq!(frame, version_1_deny_frame(7, Reason::Rate, "sim-bot", detail));
    assert_eq!(frame, encode_frame_v(&answer, 1).unwrap());
    assert!(
        decode_message_v::<Response>(&frame[4..], 2).is_err(),
        "a version-2 reader finds the Deny cut short"
    );

    // Version 2: when to retry, and the figures.
    let frame = v2.place(8, &bot).await;
    let answer = decode_message_v::<Response>(&frame[4..], 2).expect("a version-2 answer");
    let Response::Decision {
        request_id: 8,
        decision:
            Decision::Deny {
                reason: Reason::Rate,
                detail: detail_v2,
                retry_after_ms: Some(retry),
                limit: Some(limit),
                ..
            },
    } = &answer
    else {
        panic!("expected a rate deny with retry_after_ms and limit, got {answer:?}")
    };
    assert_eq!(detail_v2, detail, "the same words in both versions");
    assert!(
        (1..=60_000).contains(retry),
        "the oldest order leaves the 60 s window within a minute: {retry}"
    );
    assert_eq!(
        *limit,
        LimitFigures::Rate {
            orders_in_window: 2,
            max_orders_per_minute: 2
        }
    );
    // The version-2 frame begins with the version-1 one's body and adds the two fields.
    let v1_body = &version_1_deny_frame(8, Reason::Rate, "sim-bot", detail)[4..];
    assert!(frame[4..].starts_with(v1_body), "{frame:?}");

    // The audit record of each deny says when to retry, whichever version was told.
    let records = d.wait_audit(4);
    let rejects: Vec<&Value> = records.iter().filter(|r| r["outcome"] == "reject").collect();
    assert_eq!(rejects.len(), 2, "{records:?}");
    for r in rejects {
        let ms = r["retry_after_ms"].as_u64().unwrap_or_else(|| panic!("{r}"));
        assert!((1..=60_000).contains(&ms), "{r}");
    }
    for r in records.iter().filter(|r| r["outcome"] == "allow") {
        assert!(r.get("retry_after_ms").is_none(), "only a reject has it: {r}");
    }
}

/// `futucli check` of one order against daemon `d`.
fn futucli_check(d: &Daemon, token: &str, extra: &[&str]) -> std::process::Output {
    d.futucli()
        .args(["check", "--token", token, "--endpoint", "Trd_PlaceOrder"])
        .args(["--market", "HK", "--symbol", "HK.00700", "--side", "SELL"])
        .args(["--qty", "100", "--price", "388.2"])
        .args(extra)
        .output()
        .expect("run futucli")
}

#[test]
fn futucli_check_says_when_to_retry_and_the_figures() {
    let bot = token_for("sim-bot");
    let d = rate_limited(&bot, 1);
    let first = futucli_check(&d, &bot, &[]);
    assert_eq!(first.status.code(), Some(0), "{first:?}");

    let out = futucli_check(&d, &bot, &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = String::from_utf8(out.stdout).unwrap();
    assert_eq!(line.lines().count(), 1, "one line: {line}");
    assert!(
        line.starts_with(
            "reject: rate (key sim-bot): 1 orders in the last 60 s; max_orders_per_minute is 1; retry after "
        ),
        "{line}"
    );
    assert!(line.trim_end().ends_with(" s; orders in window 1 of 1"), "{line}");
    let seconds: f64 = line
        .split("retry after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a number of seconds: {line}"));
    assert!(seconds > 0.0 && seconds <= 60.0, "{line}");

    let out = futucli_check(&d, &bot, &["--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("check --json prints JSON");
    assert_eq!((&v["outcome"], &v["reason"]), (&json!("reject"), &json!("rate")));
    let ms = v["retry_after_ms"].as_u64().unwrap_or_else(|| panic!("{v}"));
    assert!((1..=60_000).contains(&ms), "{v}");
    assert_eq!(
        v["limit"],
        json!({ "rate": { "orders_in_window": 1, "max_orders_per_minute": 1 } })
    );
}

/// A futu-authd of protocol version 1 only, on `socket`, for one client: it refuses a
/// Hello of any other version (Error `version`, then close), and answers every Check of
/// a version-1 connection with a rate deny in version 1's bytes. Returns the versions
/// offered to it, in order.
async fn version_1_daemon(socket: PathBuf) -> (tokio::task::JoinHandle<Vec<u16>>, PathBuf) {
    let listener = UnixListener::bind(&socket).expect("bind the version-1 daemon");
    let task = tokio::spawn(async move {
        let mut offered = Vec::new();
        loop {
            let (stream, _) = listener.accept().await.expect("accept");
            let mut c = RawClient { stream, version: 1 };
            let Request::Hello(hello) = decode_message_v::<Request>(&c.read_frame().await[4..], 1).unwrap()
            else {
                panic!("Hello first")
            };
            offered.push(hello.protocol_version);
            if hello.protocol_version != 1 {
                let refusal = Response::Error {
                    request_id: 0,
                    kind: ErrorKind::Version,
                    message: "protocol version 2 is not spoken here; this futu-authd speaks 1".into(),
                };
                c.stream
                    .write_all(&encode_frame_v(&refusal, 1).unwrap())
                    .await
                    .unwrap();
                continue; // dropped: closed
            }
            let ok = Response::HelloOk {
                protocol_version: 1,
                server_version: "0.0.9".into(),
            };
            c.stream
                .write_all(&encode_frame_v(&ok, 1).unwrap())
                .await
                .unwrap();
            let Request::Check(check) = decode_message_v::<Request>(&c.read_frame().await[4..], 1).unwrap()
            else {
                panic!("a Check")
            };
            let deny = version_1_deny_frame(check.request_id, Reason::Rate, "sim-bot", "too fast");
            c.stream.write_all(&deny).await.unwrap();
            return offered;
        }
    });
    (task, socket)
}

#[tokio::test]
async fn the_client_falls_back_to_version_1_with_a_daemon_that_speaks_only_that() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, socket) = version_1_daemon(dir.path().join("v1.sock")).await;
    let client = AuthClient::builder(&socket)
        .deadline(Duration::from_secs(5))
        .build();
    let order = order(Market::HK, "HK.00700", TrdSide::SELL, 100.0, Some(388.2));
    assert_eq!(order.env, TrdEnv::Simulate);
    let decision = client
        .check(
            &Token::new(token_for("sim-bot")),
            Iface::Rest,
            "Trd_PlaceOrder",
            Some(order),
        )
        .await
        .expect("the version-1 daemon decides");
    assert_eq!(
        decision,
        Decision::Deny {
            reason: Reason::Rate,
            key_id: Some("sim-bot".parse().unwrap()),
            detail: "too fast".into(),
            retry_after_ms: None,
            limit: None,
        }
    );
    assert_eq!(decision.retry_after(), None);
    assert_eq!(
        daemon.await.unwrap(),
        vec![6, 5, 4, 3, 2, 1],
        "version 6 first, then 5, 4, 3, 2 and 1"
    );
}

/// The Python client of docs/PROTOCOL.md §8, as the document shows it, pointed at
/// `socket` and speaking for `token`.
fn protocol_md_python_client(socket: &Path, token: &str) -> String {
    let doc = include_str!("../../docs/PROTOCOL.md");
    let section = &doc[doc.find("## 8. Writing a client").expect("PROTOCOL.md has §8")..];
    let start = section.find("```python\n").expect("§8 has a Python program") + "```python\n".len();
    let program = &section[start..];
    let program = &program[..program.find("\n```").expect("the program ends")];
    let mut replaced = 0;
    let lines: Vec<String> = program
        .lines()
        .map(|l| {
            if l.starts_with("SOCKET_PATH = ") {
                replaced += 1;
                format!("SOCKET_PATH = {:?}", socket.display().to_string())
            } else if l.starts_with("TOKEN = ") {
                replaced += 1;
                format!("TOKEN = {token:?}")
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert_eq!(replaced, 2, "the program sets SOCKET_PATH and TOKEN");
    lines.join("\n")
}

#[test]
fn the_python_client_of_protocol_md_speaks_version_2() {
    if !have_program("python3") {
        return skip("python3 is not installed");
    }
    let research = token_for("research");
    let closed = token_for("closed");
    // A window that opens an hour and a half from now, in UTC (the daemon's zone here).
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let minute = (i64::from(now.hour()) * 60 + i64::from(now.minute()) + 90) % (24 * 60);
    let window = format!(
        "{:02}:{:02}-{:02}:{:02}",
        minute / 60,
        minute % 60,
        (minute / 60 + 1) % 24,
        minute % 60
    );
    let d = DaemonBuilder::new(&[
        key_json("research", &research, &["qot:read"]),
        with(
            key_json("closed", &closed, &["qot:read"]),
            "limits",
            json!({ "hours_window": window }),
        ),
    ])
    .env("TZ", "UTC")
    .start();
    let run = |token: &str| {
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(protocol_md_python_client(&d.socket_path(), token))
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "the Python client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(run(&research).trim(), "allowed, key research, scope qot:read");
    let denied = run(&closed);
    assert!(denied.starts_with("denied: hours (local time "), "{denied}");
    assert!(
        denied.contains("; retry after "),
        "version 2's retry_after_ms: {denied}"
    );
    assert!(
        denied.contains(&format!("'hours_window': '{window}'")),
        "version 2's limit: {denied}"
    );
}
