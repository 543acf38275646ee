//! futu-authd as Linux administrators run it, against the real components: the systemd
//! units under `systemd-analyze verify`, socket activation by `systemd-socket-activate`,
//! audit records in a real systemd-journald read back with `journalctl`, and a real
//! Prometheus server scraping /metrics.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futu_auth_proto::{Iface, Market, Scope, TrdSide};
use futu_authd_tests::monitoring::{start_prometheus, try_get, Reaper};
use futu_authd_tests::{
    deny_reason, have_program, key_json, keys_json, order, poll, target_dir, token_for, with, write_private,
    Client, DaemonBuilder,
};
use serde_json::{json, Value};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .to_owned()
}

fn futucli() -> PathBuf {
    let p = target_dir().join("futucli");
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

/// Prints `skipped: {why}`; fails the test under `FUTU_TEST_STRICT=1`
/// ([`futu_authd_tests::skip`]).
fn skip(why: &str) {
    futu_authd_tests::skip(why);
}

#[test]
fn systemd_analyze_verifies_both_units_without_a_warning() {
    if !have_program("systemd-analyze") {
        return skip("systemd-analyze is not installed (Debian package systemd)");
    }
    let dir = tempfile::tempdir().unwrap();
    // The units as installed, with ExecStart pointing at the binary just built (verify
    // checks that the program exists and is executable).
    let service = std::fs::read_to_string(repo_root().join("systemd/futu-authd.service")).unwrap();
    assert!(
        service.contains("ExecStart=/usr/bin/futu-authd "),
        "the unit runs /usr/bin/futu-authd"
    );
    let built = target_dir().join("futu-authd");
    std::fs::write(
        dir.path().join("futu-authd.service"),
        service.replace("/usr/bin/futu-authd", built.to_str().unwrap()),
    )
    .unwrap();
    std::fs::copy(
        repo_root().join("systemd/futu-authd.socket"),
        dir.path().join("futu-authd.socket"),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args([
            "verify",
            "--man=no",
            "./futu-authd.socket",
            "./futu-authd.service",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "systemd-analyze verify failed:\n{said}");
    assert_eq!(said.trim(), "", "systemd-analyze verify printed warnings");
}

#[test]
fn the_units_say_what_the_packaging_promises() {
    let service = std::fs::read_to_string(repo_root().join("systemd/futu-authd.service")).unwrap();
    let socket = std::fs::read_to_string(repo_root().join("systemd/futu-authd.socket")).unwrap();
    let has = |text: &str, line: &str| text.lines().any(|l| l.trim() == line);
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "User=futu-authd",
        "StateDirectory=futu-authd",
        "ConfigurationDirectory=futu",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallFilter=@system-service",
        "CapabilityBoundingSet=",
        "UMask=0077",
    ] {
        assert!(has(&service, line), "futu-authd.service lacks {line:?}");
    }
    assert!(service.lines().any(|l| l.starts_with("WatchdogSec=")));
    assert!(
        !service.lines().any(|l| l.starts_with("DynamicUser=")),
        "a socket unit cannot hand its file to a dynamic user"
    );
    assert!(
        !service.lines().any(|l| l.starts_with("RuntimeDirectory=")),
        "systemd would delete the socket at stop"
    );
    for line in [
        "ListenStream=/run/futu/auth.sock",
        "SocketUser=futu-authd",
        "SocketGroup=futu-gw",
        "SocketMode=0660",
        "RemoveOnStop=yes",
    ] {
        assert!(has(&socket, line), "futu-authd.socket lacks {line:?}");
    }
    let sysusers = std::fs::read_to_string(repo_root().join("systemd/futu-authd.sysusers")).unwrap();
    for name in ["u futu-authd", "g futu-gw", "g futu-admin"] {
        assert!(
            sysusers.lines().any(|l| l.starts_with(name)),
            "sysusers.d lacks {name}"
        );
    }
}

#[test]
fn make_install_stages_everything_and_never_overwrites_keys_json() {
    if !have_program("make") {
        return skip("make is not installed");
    }
    let dest = tempfile::tempdir().unwrap();
    let install = |expect_kept: bool| {
        // The release build is what install copies; point it at the debug binaries so the
        // test does not rebuild the workspace in release mode.
        let out = Command::new("make")
            .args(["-s", "install", "PREFIX=/usr"])
            .arg(format!("DESTDIR={}", dest.path().display()))
            .arg("CARGO=true")
            .arg(format!("PROFILE_DIR={}", target_dir().display()))
            .current_dir(repo_root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "make install failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(said.contains("keeping the existing"), expect_kept, "{said}");
    };
    install(false);
    for f in [
        "usr/bin/futu-authd",
        "usr/bin/futucli",
        "usr/lib/systemd/system/futu-authd.service",
        "usr/lib/systemd/system/futu-authd.socket",
        "usr/lib/sysusers.d/futu-authd.conf",
        "usr/lib/tmpfiles.d/futu-authd.conf",
        "usr/share/futu-authd/prometheus/futu-authd.rules.yml",
        "usr/share/futu-authd/prometheus/futu-authd.rules.test.yml",
        "usr/share/futu-authd/grafana/futu-authd.json",
        "etc/futu/keys.json",
    ] {
        assert!(dest.path().join(f).is_file(), "{f} was not installed");
    }
    // The rules as installed pass their tests where they land.
    if have_program("promtool") {
        let out = Command::new("promtool")
            .args(["test", "rules", "futu-authd.rules.test.yml"])
            .current_dir(dest.path().join("usr/share/futu-authd/prometheus"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    }
    use std::os::unix::fs::PermissionsExt;
    let keys = dest.path().join("etc/futu/keys.json");
    assert_eq!(
        std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::write(&keys, "{\"version\": 1, \"keys\": [] }\n# mine\n").unwrap();
    install(true);
    assert!(
        std::fs::read_to_string(&keys).unwrap().contains("# mine"),
        "keys.json was overwritten"
    );
    let out = Command::new("make")
        .args(["-s", "uninstall", "PREFIX=/usr"])
        .arg(format!("DESTDIR={}", dest.path().display()))
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!dest.path().join("usr/bin/futu-authd").exists());
    assert!(!dest.path().join("usr/share/futu-authd").exists());
    assert!(keys.exists(), "uninstall keeps keys.json");
}

#[tokio::test]
async fn futucli_check_goes_through_a_socket_passed_by_systemd_socket_activate() {
    if !have_program("systemd-socket-activate") {
        return skip("systemd-socket-activate is not installed (Debian package systemd)");
    }
    let dir = tempfile::tempdir().unwrap();
    let research = token_for("activated research");
    write_private(
        &dir.path().join("keys.json"),
        &keys_json(&[key_json("research", &research, &["qot:read"])]),
    );
    let socket = dir.path().join("auth.sock");
    let child = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&socket)
        .arg(target_dir().join("futu-authd"))
        .arg("--keys-file")
        .arg(dir.path().join("keys.json"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--metrics-listen", "off", "--audit-journald=false"])
        .arg("--socket")
        .arg(dir.path().join("unused.sock"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reaper = Reaper(child);
    // The path exists from bind(), a moment before listen(): until then a connection is
    // refused. The first connection that gets through makes systemd-socket-activate start
    // the daemon, and a Hello answered says it is serving.
    poll("systemd-socket-activate to listen", || {
        std::os::unix::net::UnixStream::connect(&socket).ok()
    });
    Client::connect(&socket).await.hello().await;
    let check = |token: &str, endpoint: &str| {
        Command::new(futucli())
            .args(["check", "--token", token, "--endpoint", endpoint])
            .env("FUTU_AUTH_SOCKET", &socket)
            .output()
            .unwrap()
    };
    let allowed = check(&research, "Qot_GetBasicQot");
    assert_eq!(
        allowed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    assert!(String::from_utf8_lossy(&allowed.stdout).starts_with("allow: key research"));
    let refused = check(&research, "Trd_GetFunds");
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stdout).starts_with("reject: scope"));
    // The daemon took the passed socket and did not bind --socket.
    assert!(
        !dir.path().join("unused.sock").exists(),
        "the daemon bound its own socket"
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(reaper.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let status = reaper.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut err = String::new();
    std::io::Read::read_to_string(reaper.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("listening on the socket passed by systemd"), "{err}");
}

/// A systemd-journald for the test: the one already running, or one started now (as root).
struct Journal {
    _daemon: Option<Reaper>,
}

impl Journal {
    fn get() -> Result<Journal, String> {
        let socket = Path::new("/run/systemd/journal/socket");
        let answering = || {
            std::os::unix::net::UnixDatagram::unbound()
                .and_then(|s| s.send_to(b"", socket))
                .is_ok()
        };
        if answering() {
            return Ok(Journal { _daemon: None });
        }
        if !nix::unistd::geteuid().is_root() {
            return Err("needs root to start systemd-journald".into());
        }
        let journald = [
            "/lib/systemd/systemd-journald",
            "/usr/lib/systemd/systemd-journald",
        ]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .ok_or("systemd-journald is not installed (Debian package systemd)")?;
        let child = Command::new(journald)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {journald}: {e}"))?;
        let reaper = Reaper(child);
        let until = Instant::now() + Duration::from_secs(10);
        while !answering() {
            if Instant::now() > until {
                return Err("systemd-journald did not open its socket".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Journal {
            _daemon: Some(reaper),
        })
    }
}

#[tokio::test]
async fn a_real_journald_receives_the_audit_records_with_their_fields() {
    if !have_program("journalctl") {
        return skip("journalctl is not installed (Debian package systemd)");
    }
    let _journal = match Journal::get() {
        Ok(j) => j,
        Err(why) => return skip(&why),
    };
    // A key id of this run only, to find this run's records among others.
    let id = format!(
        "jr-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() % 100_000
    );
    let token = token_for(&id);
    let d = DaemonBuilder::new(&[key_json(&id, &token, &["qot:read"])])
        .arg("--audit-journald")
        .start();
    let mut c = d.client().await;
    assert!(c.check(&token, "Qot_GetBasicQot", None).await.is_allow());
    assert_eq!(
        deny_reason(&c.check(&token, "Trd_GetFunds", None).await),
        futu_auth_proto::Reason::Scope
    );
    let records = poll("journalctl to show both records", || {
        let out = Command::new("journalctl")
            .args(["-o", "json", "--no-pager", "SYSLOG_IDENTIFIER=futu-authd"])
            .arg(format!("KEY_ID={id}"))
            .output()
            .ok()?;
        let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        (lines.len() >= 2).then_some(lines)
    });
    let allow = records
        .iter()
        .find(|r| r["OUTCOME"] == "allow")
        .expect("an allow record");
    assert_eq!(allow["KEY_ID"], json!(id));
    assert_eq!(allow["ENDPOINT"], "Qot_GetBasicQot");
    assert_eq!(allow["IFACE"], "rest");
    assert_eq!(allow["SYSLOG_IDENTIFIER"], "futu-authd");
    let reject = records
        .iter()
        .find(|r| r["OUTCOME"] == "reject")
        .expect("a reject record");
    assert_eq!(reject["KEY_ID"], json!(id));
    assert_eq!(reject["REASON"], "scope");
    assert_eq!(reject["ENDPOINT"], "Trd_GetFunds");
    // The same query without the key filter, as the README gives it, shows them too.
    let out = Command::new("journalctl")
        .args(["-o", "json", "--no-pager", "SYSLOG_IDENTIFIER=futu-authd"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_documented_series_with_their_labels() {
    let Some(prometheus) = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
    else {
        return skip("prometheus is not installed (Debian package prometheus; `make deps` installs it)");
    };
    let research = token_for("prom research");
    let bot = token_for("prom bot");
    let d = DaemonBuilder::new(&[
        key_json("research", &research, &["qot:read"]),
        with(
            key_json("sim-bot", &bot, &["qot:read", "trade:simulate"]),
            "limits",
            json!({"max_orders_per_minute": 1}),
        ),
    ])
    .metrics()
    .start();
    let mut c = d.client().await;
    assert!(c.check(&research, "Qot_GetBasicQot", None).await.is_allow());
    let sell = || Some(order(Market::HK, "HK.00700", TrdSide::SELL, 1.0, Some(1.0)));
    assert!(c.check(&bot, "Trd_PlaceOrder", sell()).await.is_allow());
    c.check_via(Iface::Grpc, &bot, "Trd_PlaceOrder", sell()).await;
    assert!(!c
        .check_scope(&research, Iface::Ws, Scope::TradeReal)
        .await
        .is_allow());

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: futu-authd\n    static_configs:\n      - targets: ['{}']\n",
            d.metrics_addr()
        ),
    )
    .unwrap();
    let (_prometheus, addr) = start_prometheus(Path::new(prometheus), &config, &dir.path().join("data"));
    let query = |q: &str| -> Vec<Value> {
        let Some(body) = try_get(addr, &format!("/api/v1/query?query={q}")) else {
            return Vec::new(); // not up yet
        };
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    };
    let wait = |q: &str| {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let r = query(q);
            if !r.is_empty() {
                return r;
            }
            assert!(
                Instant::now() < until,
                "Prometheus returned nothing for {q} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let events = wait("futu_auth_events_total");
    let has = |series: &[Value], labels: &[(&str, &str)]| {
        series
            .iter()
            .any(|s| labels.iter().all(|(k, v)| s["metric"][*k] == *v))
    };
    assert!(
        has(
            &events,
            &[("iface", "rest"), ("outcome", "allow"), ("key_id", "research")]
        ),
        "{events:?}"
    );
    assert!(has(
        &events,
        &[("iface", "grpc"), ("outcome", "reject"), ("key_id", "sim-bot")]
    ));
    let rejects = wait("futu_auth_limit_rejects_total");
    assert!(
        has(
            &rejects,
            &[("iface", "grpc"), ("key_id", "sim-bot"), ("reason", "rate")]
        ),
        "{rejects:?}"
    );
    let pushes = wait("futu_ws_filtered_pushes_total");
    assert!(
        has(&pushes, &[("required_scope", "trade"), ("key_id", "research")]),
        "{pushes:?}"
    );
    assert_eq!(pushes[0]["metric"]["job"], "futu-authd");
}
