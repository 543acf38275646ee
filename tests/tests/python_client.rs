//! End-to-end tests of the Python client (`client/python`, the `futu_auth_client`
//! package) against the real futu-authd.
//!
//! Each test installs the package with pip — not editable, from a copy of
//! `client/python` — into a directory of its own, and runs it with the Python of
//! `make deps`' virtual environment (`target/venv`, or where `FUTU_TEST_PYTHON` names
//! one) started with `-S`: no site-packages, so only the standard library and the
//! package can be imported. `tests/python/py_client.py` drives one blocking and one
//! asyncio client through JSON lines; what it reports is checked here against what
//! futucli, keys.json, the audit file and the harness's own client say. Without that
//! Python the tests say they are skipped, which `FUTU_TEST_STRICT=1` turns into failures.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futu_auth_client::BlockingAuthClient;
use futu_auth_proto::{Decision, Iface, Reason, Scope, SessionOutcome, SessionSubject, Token};
use futu_authd_tests::{
    hash_of, key_json, metric_value, poll, skip, this_fingerprint, token_for, with, Daemon, DaemonBuilder,
};
use serde_json::{json, Value};
use tempfile::TempDir;

// ---- the package, installed ----------------------------------------------------------------

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace")
        .to_path_buf()
}

/// How long one command of the driver may take before the test gives up.
const COMMAND_DEADLINE: Duration = Duration::from_secs(60);

/// Slack on top of a deadline on a loaded machine.
const SLACK: Duration = Duration::from_millis(1000);

/// The package as pip installed it, and the Python that runs it.
struct Package {
    python: PathBuf,
    site: TempDir,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("make a directory");
    for entry in std::fs::read_dir(from).expect("read a directory") {
        let entry = entry.expect("a directory entry");
        let name = entry.file_name();
        if name == "__pycache__" || name.to_string_lossy().ends_with(".egg-info") || name == "build" {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).expect("copy a file");
        }
    }
}

/// Installs `client/python` with pip into a fresh directory; `None` (the test says it is
/// skipped) when there is no Python to run it.
fn package() -> Option<Package> {
    let python = std::env::var_os("FUTU_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/venv/bin/python"));
    let works = python.is_file()
        && Command::new(&python)
            .args(["-m", "pip", "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
    if !works {
        skip(&format!(
            "no Python with pip at {} (make deps makes target/venv)",
            python.display()
        ));
        return None;
    }
    // A copy, so that the build leaves nothing in the tree.
    let source = tempfile::tempdir().expect("a directory for the sources");
    let client = workspace().join("client/python");
    for file in ["pyproject.toml", "README.md"] {
        std::fs::copy(client.join(file), source.path().join(file)).expect("copy the package's files");
    }
    copy_dir(&client.join("src"), &source.path().join("src"));
    let site = tempfile::tempdir().expect("a directory to install into");
    // A setuptools that builds wheels itself needs nothing from the network.
    let offline = Command::new(&python)
        .args([
            "-c",
            "import importlib.util as u, sys; sys.exit(not (u.find_spec('setuptools.command.bdist_wheel') or u.find_spec('wheel')))",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut pip = Command::new(&python);
    pip.args([
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        "--no-deps",
        "--target",
    ])
    .arg(site.path());
    if offline {
        pip.args(["--no-index", "--no-build-isolation"]);
    }
    let out = pip.arg(source.path()).output().expect("run pip");
    assert!(
        out.status.success(),
        "pip install client/python failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(Package { python, site })
}

impl Package {
    /// `python -S …` seeing the standard library and the installed package only.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.python);
        cmd.arg("-S")
            .env("PYTHONPATH", self.site.path())
            .env_remove("PYTHONHOME")
            .env_remove("PYTHONSTARTUP")
            .current_dir(self.site.path());
        cmd
    }

    /// The driver, talking to `socket` with a default deadline of `timeout` seconds.
    fn driver(&self, socket: &Path, timeout: f64) -> Driver {
        let mut cmd = self.command();
        cmd.arg(workspace().join("tests/python/py_client.py"))
            .arg(socket)
            .arg(timeout.to_string());
        let mut driver = Driver::spawn(cmd);
        let ready = driver.read();
        assert_eq!(ready["ready"], true, "{ready}");
        let module = ready["module"].as_str().expect("the module's path");
        assert!(
            Path::new(module).starts_with(self.site.path()),
            "futu_auth_client came from {module}, not from what pip installed"
        );
        assert_eq!(
            ready["foreign"],
            json!([]),
            "modules from outside the standard library were loaded"
        );
        driver
    }
}

/// py_client.py, running: one JSON line in, one JSON line out.
struct Driver {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Driver {
    fn spawn(mut cmd: Command) -> Driver {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run py_client.py");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(&buf[..n]);
            }
        });
        Driver {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
        }
    }

    fn read(&mut self) -> Value {
        match self.lines.recv_timeout(COMMAND_DEADLINE) {
            Ok(line) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not JSON from py_client.py: {line:?}: {e}")),
            Err(_) => {
                let stderr = self.stderr_text();
                panic!("no answer from py_client.py within {COMMAND_DEADLINE:?}; its stderr:\n{stderr}")
            }
        }
    }

    fn stderr_text(&self) -> String {
        let bytes = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Sends one command and returns its answer.
    fn run(&mut self, command: Value) -> Value {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{command}").expect("write to py_client.py");
        stdin.flush().expect("flush");
        self.read()
    }

    /// A check with the blocking (`sync`) or asyncio (`async`) client.
    fn check(&mut self, client: &str, token: &str, endpoint: &str, order: Option<Value>) -> Value {
        let mut cmd = json!({"op": "check", "client": client, "token": token, "endpoint": endpoint});
        if let Some(o) = order {
            cmd["order"] = o;
        }
        self.run(cmd)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- py_client.py stderr ---\n{}--- end ---", self.stderr_text());
        }
    }
}

// ---- futucli, keys.json, decisions --------------------------------------------------------

const CLIENTS: [&str; 2] = ["sync", "async"];

/// `futucli` pointed at the daemon's socket, keys file and machine id.
fn futucli(d: &Daemon, args: &[&str]) -> std::process::Output {
    d.futucli().args(args).output().expect("run futucli")
}

/// `futucli check --json` for the same question, as a JSON value.
fn futucli_check(d: &Daemon, token: &str, endpoint: &str, extra: &[&str]) -> Value {
    let mut args = vec!["check", "--json", "--token", token, "--endpoint", endpoint];
    args.extend_from_slice(extra);
    let out = futucli(d, &args);
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "futucli check --json printed {text:?} ({e}); stderr {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// keys.json as JSON.
fn keys_file(d: &Daemon) -> Value {
    serde_json::from_str(&std::fs::read_to_string(d.keys_path()).expect("read keys.json"))
        .expect("keys.json is JSON")
}

fn key_record(d: &Daemon, id: &str) -> Option<Value> {
    keys_file(d)["keys"]
        .as_array()
        .expect("keys is an array")
        .iter()
        .find(|k| k["id"] == id)
        .cloned()
}

/// Asserts that the Python client decided as futucli did: the same outcome, reason, key,
/// detail and limit figures.
fn assert_same_decision(python: &Value, futucli: &Value, what: &str) {
    for field in ["outcome", "reason", "key_id", "detail", "limit", "scope"] {
        assert_eq!(
            python.get(field).unwrap_or(&Value::Null),
            futucli.get(field).unwrap_or(&Value::Null),
            "{what}: {field} differs\npython:  {python}\nfutucli: {futucli}"
        );
    }
    assert_eq!(
        python["error"],
        Value::Null,
        "{what}: the daemon decided: {python}"
    );
}

/// Asserts a deny the client made itself because the daemon gave no decision.
fn assert_fail_closed(d: &Value, errors: &[&str], what: &str) {
    assert_eq!(d["allowed"], false, "{what}: {d}");
    assert_eq!(d["outcome"], "reject", "{what}: {d}");
    assert_eq!(d["reason"], "internal", "{what}: {d}");
    let error = d["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no error: {d}"));
    assert!(
        errors.contains(&error),
        "{what}: error {error}, expected one of {errors:?}: {d}"
    );
}

fn elapsed(d: &Value) -> Duration {
    Duration::from_secs_f64(d["elapsed_ms"].as_f64().expect("elapsed_ms") / 1000.0)
}

fn sell(qty: f64) -> Value {
    json!({"env": "simulate", "market": "HK", "symbol": "HK.00700", "side": "SELL", "qty": qty, "price": 388.2})
}

/// Daily totals reset at UTC midnight: a test that spends and reads back a daily total
/// steps past midnight first if it is less than a minute away.
fn away_from_utc_midnight() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let left = 86_400 - now % 86_400;
    if left < 60 {
        std::thread::sleep(Duration::from_secs(left + 1));
    }
}

// ---- the tests ----------------------------------------------------------------------------

#[test]
fn the_package_installs_with_pip_and_passes_its_own_unit_tests() {
    let Some(pkg) = package() else { return };
    let metadata = pkg
        .command()
        .args([
            "-c",
            "import importlib.metadata as m, json; print(json.dumps([m.version('futu-auth-client'), m.requires('futu-auth-client')]))",
        ])
        .output()
        .expect("run python");
    let metadata: Value = serde_json::from_slice(&metadata.stdout).expect("the package's metadata");
    assert_eq!(metadata, json!(["0.1.0", null]), "version 0.1.0, no dependencies");

    let out = pkg
        .command()
        .args(["-m", "unittest", "discover", "-v", "-s"])
        .arg(workspace().join("client/python/tests"))
        .output()
        .expect("run python -m unittest");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the package's unit tests failed:\n{report}");
    let ran: usize = report
        .lines()
        .find_map(|l| l.strip_prefix("Ran ")?.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no `Ran N tests` line:\n{report}"));
    assert!(ran >= 50, "only {ran} unit tests ran:\n{report}");
    assert!(!report.contains("skipped"), "a unit test was skipped:\n{report}");
    // The vectors of docs/PROTOCOL.md §7 were compared with the document itself.
    assert!(
        report.contains("test_the_vectors_here_are_the_documents")
            && report.contains("test_7_2_check_with_an_order"),
        "{report}"
    );
}

#[test]
fn checks_answer_as_futucli_check_does() {
    let Some(pkg) = package() else { return };
    away_from_utc_midnight();
    let research = token_for("research");
    let bot = token_for("sim-bot");
    let doomed = token_for("doomed");
    let stranger = token_for("stranger");
    let d = DaemonBuilder::new(&[
        key_json("research", &research, &["qot:read"]),
        with(
            key_json("sim-bot", &bot, &["qot:read", "acc:read", "trade:simulate"]),
            "limits",
            json!({"max_order_value": 100000, "max_daily_value": 500000, "max_orders_per_minute": 3}),
        ),
        key_json("doomed", &doomed, &["qot:read"]),
    ])
    .start();
    let mut py = pkg.driver(&d.socket_path(), 5.0);

    // Reads: allowed, wrong scope, unknown key — each client, each as futucli says.
    for client in CLIENTS {
        let cases = [
            (&research, "Qot_GetBasicQot", "allow", None),
            (&research, "Trd_GetFunds", "reject", Some("scope")),
            (&stranger, "Qot_GetBasicQot", "reject", Some("unknown_key")),
        ];
        for (token, endpoint, outcome, reason) in cases {
            let got = py.check(client, token, endpoint, None);
            let what = format!("{client} {endpoint}");
            assert_eq!(got["outcome"], outcome, "{what}: {got}");
            assert_eq!(got["reason"].as_str(), reason, "{what}: {got}");
            assert_same_decision(&got, &futucli_check(&d, token, endpoint, &[]), &what);
        }
        let allow = py.check(client, &research, "Qot_GetBasicQot", None);
        assert_eq!(
            (&allow["key_id"], &allow["scope"]),
            (&json!("research"), &json!("qot:read"))
        );
        let unknown = py.check(client, &stranger, "Qot_GetBasicQot", None);
        assert_eq!(unknown["key_id"], Value::Null, "no key matched: {unknown}");
        assert!(
            !unknown.to_string().contains(&stranger),
            "the token is not echoed: {unknown}"
        );
    }

    // An order over the per-order cap, with its figures.
    let over = [
        "--market", "HK", "--symbol", "HK.00700", "--side", "SELL", "--qty", "1000", "--price", "388.2",
    ];
    for client in CLIENTS {
        let got = py.check(client, &bot, "Trd_PlaceOrder", Some(sell(1000.0)));
        assert_eq!(got["reason"], "order_value", "{got}");
        assert_eq!(got["retry_after_ms"], Value::Null, "waiting does not help: {got}");
        assert_eq!(
            got["limit"],
            json!({"order_value": {"order_value": 388200.0, "max_order_value": 100000.0}})
        );
        assert_same_decision(
            &got,
            &futucli_check(&d, &bot, "Trd_PlaceOrder", &over),
            "order_value",
        );
    }

    // Three orders a minute: the fourth is over the rate, with when to retry.
    let mut tickets = Vec::new();
    for (i, client) in ["sync", "async", "sync"].into_iter().enumerate() {
        let got = py.check(client, &bot, "Trd_PlaceOrder", Some(sell(100.0)));
        assert_eq!(got["outcome"], "allow", "order {i}: {got}");
        assert_eq!(got["scope"], "trade:simulate");
        tickets.push(
            got["ticket"]
                .as_u64()
                .unwrap_or_else(|| panic!("order {i} has a ticket: {got}")),
        );
    }
    let rate = py.check("async", &bot, "Trd_PlaceOrder", Some(sell(100.0)));
    assert_eq!(rate["reason"], "rate", "{rate}");
    let retry = rate["retry_after_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("retry_after_ms: {rate}"));
    assert!((1..=60_000).contains(&retry), "{rate}");
    assert_eq!(
        rate["limit"],
        json!({"rate": {"orders_in_window": 3, "max_orders_per_minute": 3}})
    );
    let small = [
        "--market", "HK", "--symbol", "HK.00700", "--side", "SELL", "--qty", "100", "--price", "388.2",
    ];
    let cli = futucli_check(&d, &bot, "Trd_PlaceOrder", &[&small[..], &["--dry-run"]].concat());
    assert_eq!(
        (&cli["reason"], &cli["limit"]),
        (&rate["reason"], &rate["limit"]),
        "{cli}"
    );
    let cli_retry = cli["retry_after_ms"].as_u64().expect("futucli's retry_after_ms");
    assert!(
        cli_retry <= retry && retry - cli_retry < 10_000,
        "python {retry} ms, futucli {cli_retry} ms"
    );

    // Releasing a ticket gives its value back (not the rate slot).
    let before = py.run(json!({"op": "usage", "id": "sim-bot"}));
    assert!(
        (before["daily_value_used"].as_f64().unwrap() - 3.0 * 38820.0).abs() < 1e-6,
        "{before}"
    );
    let released = py.run(json!({"op": "release", "ticket": tickets[0]}));
    assert_eq!(released["key_id"], "sim-bot", "{released}");
    assert!(
        (released["refunded_value"].as_f64().unwrap() - 38820.0).abs() < 1e-6,
        "{released}"
    );
    let after = py.run(json!({"op": "usage", "id": "sim-bot", "client": "async"}));
    assert!(
        (after["daily_value_used"].as_f64().unwrap() - 2.0 * 38820.0).abs() < 1e-6,
        "{after}"
    );
    assert_eq!(after["orders_last_minute"], 3, "{after}");
    let shown = String::from_utf8_lossy(&futucli(&d, &["usage", "sim-bot"]).stdout).into_owned();
    assert!(shown.contains("77640 of 500000"), "futucli agrees: {shown}");
    for (ticket, kind) in [
        (tickets[0], "already_released"),
        (tickets[1] ^ 1, "unknown_ticket"),
    ] {
        let again = py.run(json!({"op": "release", "ticket": ticket}));
        assert_eq!(
            (&again["raised"], &again["kind"]),
            (&json!("AuthError"), &json!(kind)),
            "{again}"
        );
    }
    let async_release = py.run(json!({"op": "release", "ticket": tickets[1], "client": "async"}));
    assert_eq!(async_release["key_id"], "sim-bot", "{async_release}");

    // A revoked key.
    for client in CLIENTS {
        assert_eq!(
            py.check(client, &doomed, "Qot_GetBasicQot", None)["outcome"],
            "allow"
        );
    }
    let out = futucli(&d, &["revoke-key", "doomed"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for client in CLIENTS {
        let got = py.check(client, &doomed, "Qot_GetBasicQot", None);
        assert_eq!(got["reason"], "unknown_key", "{client}: {got}");
        assert_same_decision(
            &got,
            &futucli_check(&d, &doomed, "Qot_GetBasicQot", &[]),
            "revoked",
        );
    }

    // Scope checks, and the front-end named in the audit.
    for client in CLIENTS {
        let yes = py.run(json!({"op": "check_scope", "client": client, "token": research, "scope": "qot:read", "iface": "ws"}));
        assert_eq!(
            (&yes["outcome"], &yes["scope"]),
            (&json!("allow"), &json!("qot:read")),
            "{yes}"
        );
        let no = py.run(json!({"op": "check_scope", "client": client, "token": research, "scope": "trade:real", "iface": "ws"}));
        assert_eq!(no["reason"], "scope", "{no}");
    }
    let grpc =
        py.run(json!({"op": "check", "token": research, "endpoint": "Qot_GetBasicQot", "iface": "grpc"}));
    assert_eq!(grpc["outcome"], "allow");
    let records = futu_authd_tests::poll("the gRPC check in the audit", || {
        let recs = d.audit_records();
        recs.iter().any(|r| r["iface"] == "grpc").then_some(recs)
    });
    assert!(
        records.iter().any(|r| r["iface"] == "ws"),
        "the scope checks say ws"
    );
    let audit = std::fs::read_to_string(d.audit_path()).expect("read the audit file");
    for t in [&research, &bot, &stranger, &doomed] {
        assert!(!audit.contains(t.as_str()), "a token in the audit file");
    }
    let state = py.run(json!({"op": "state"}));
    let newest = json!(futu_auth_proto::PROTOCOL_VERSION);
    assert_eq!(
        (
            &state["sync_connections"],
            &state["async_connections"],
            &state["sync_version"],
            &state["async_version"]
        ),
        (&json!(1), &json!(1), &newest, &newest),
        "one connection each, the daemon's newest protocol version: {state}"
    );
    assert_eq!(
        (&state["sync_late_releases"], &state["async_late_releases"]),
        (&json!(0), &json!(0)),
        "every answer was read in time: {state}"
    );
}

#[test]
fn two_hundred_checks_in_flight_on_one_connection_get_their_own_answers() {
    let Some(pkg) = package() else { return };
    // k0…k9: even ones read quotes, odd ones read accounts.
    let keys: Vec<Value> = (0..10)
        .map(|j| {
            let scope = if j % 2 == 0 { "qot:read" } else { "acc:read" };
            key_json(&format!("k{j}"), &token_for(&format!("k{j}")), &[scope])
        })
        .collect();
    let d = DaemonBuilder::new(&keys).start();
    let mut py = pkg.driver(&d.socket_path(), 10.0);
    let expected = |i: usize| -> (Value, Value) {
        let j = i % 10;
        let quotes = (i / 10) % 2 == 0;
        if i % 7 == 0 {
            (Value::Null, json!("unknown_key"))
        } else if quotes == (j % 2 == 0) {
            (json!(format!("k{j}")), Value::Null)
        } else {
            (json!(format!("k{j}")), json!("scope"))
        }
    };
    let checks: Vec<Value> = (0..200)
        .map(|i| {
            let token = if i % 7 == 0 {
                token_for(&format!("stranger-{i}"))
            } else {
                token_for(&format!("k{}", i % 10))
            };
            let endpoint = if (i / 10) % 2 == 0 {
                "Qot_GetBasicQot"
            } else {
                "Trd_GetFunds"
            };
            json!({"token": token, "endpoint": endpoint, "iface": "grpc"})
        })
        .collect();
    for (client, callers) in [("async", 200), ("sync", 50)] {
        let out = py.run(json!({"op": "pipeline", "client": client, "checks": checks[..callers]}));
        let decisions = out["decisions"].as_array().expect("decisions");
        assert_eq!(decisions.len(), callers);
        for (i, got) in decisions.iter().enumerate() {
            let (key, reason) = expected(i);
            assert_eq!(
                (&got["key_id"], &got["reason"], &got["error"]),
                (&key, &reason, &Value::Null),
                "{client} caller {i} got {got}"
            );
        }
        assert_eq!(out["connections_opened"], 1, "{client}: one connection: {out}");
        let peak = out["peak_in_flight"].as_u64().expect("peak_in_flight");
        if client == "async" {
            assert_eq!(peak, 200, "all 200 were in flight at once: {out}");
        } else {
            assert!(peak > 1, "the threads' checks were in flight together: {out}");
        }
    }
    let records = d.wait_audit(250);
    assert_eq!(records.len(), 250, "one audit record per check");
}

#[test]
fn a_socket_that_never_answers_is_a_deny_after_the_deadline() {
    let Some(pkg) = package() else { return };
    let research = token_for("research");
    let mut d = DaemonBuilder::new(&[key_json("research", &research, &["qot:read"])]).start();
    let mut py = pkg.driver(&d.socket_path(), 5.0);
    let deadline = Duration::from_millis(300);

    // A server of the script's own that accepts and stays silent, or says Hello and then
    // nothing.
    for client in CLIENTS {
        for answer_hello in [false, true] {
            let got = py.run(json!({
                "op": "silent", "client": client, "answer_hello": answer_hello, "timeout": 0.3,
                "token": research, "endpoint": "Qot_GetBasicQot",
            }));
            let what = format!("{client}, Hello answered: {answer_hello}");
            assert_fail_closed(&got, &["DeadlineExceeded"], &what);
            let took = elapsed(&got);
            assert!(
                took >= deadline && took <= deadline + SLACK,
                "{what}: denied after {took:?}"
            );
            assert_eq!(got["hellos"], u64::from(answer_hello), "{what}: {got}");
        }
    }

    // The real daemon, paused: the socket accepts, nobody answers.
    for client in CLIENTS {
        assert_eq!(
            py.check(client, &research, "Qot_GetBasicQot", None)["outcome"],
            "allow"
        );
    }
    d.pause();
    let mut paused = Vec::new();
    for client in CLIENTS {
        paused.push(py.run(json!({
            "op": "check", "client": client, "timeout": 0.3, "token": research, "endpoint": "Qot_GetBasicQot",
        })));
    }
    d.resume();
    for (client, got) in CLIENTS.iter().zip(&paused) {
        assert_fail_closed(got, &["DeadlineExceeded"], &format!("{client}, paused daemon"));
        let took = elapsed(got);
        assert!(took >= deadline && took <= deadline + SLACK, "{client}: {took:?}");
    }
    // Resumed: the same connection answers again (its late answers are dropped: they
    // allowed no order, so there is nothing to release).
    for client in CLIENTS {
        let got = py.check(client, &research, "Qot_GetBasicQot", None);
        assert_eq!(got["outcome"], "allow", "{client} after SIGCONT: {got}");
    }
    let state = py.run(json!({"op": "state"}));
    assert_eq!(
        (
            &state["sync_connections"],
            &state["async_connections"],
            &state["sync_late_releases"],
            &state["async_late_releases"]
        ),
        (&json!(1), &json!(1), &json!(0), &json!(0)),
        "{state}"
    );
    d.stop();
}

#[test]
fn the_client_reconnects_after_a_restart_and_fails_closed_while_the_daemon_is_down() {
    let Some(pkg) = package() else { return };
    let research = token_for("research");
    let mut d = DaemonBuilder::new(&[key_json("research", &research, &["qot:read"])]).start();
    let mut py = pkg.driver(&d.socket_path(), 1.0);
    for client in CLIENTS {
        assert_eq!(
            py.check(client, &research, "Qot_GetBasicQot", None)["outcome"],
            "allow"
        );
    }

    // Restarted between two checks: the second one reconnects and is answered.
    d.stop();
    d.restart();
    for client in CLIENTS {
        let got = py.check(client, &research, "Qot_GetBasicQot", None);
        assert_eq!(got["outcome"], "allow", "{client} after the restart: {got}");
        assert_eq!(got["error"], Value::Null);
    }
    let state = py.run(json!({"op": "state"}));
    assert_eq!(
        (&state["sync_connections"], &state["async_connections"]),
        (&json!(2), &json!(2)),
        "{state}"
    );

    // Down: every check is a deny made by the client, in well under its deadline; the
    // other calls raise.
    d.stop();
    for client in CLIENTS {
        for i in 0..3 {
            let got = py.check(client, &research, "Qot_GetBasicQot", None);
            let what = format!("{client} check {i} with the daemon down");
            assert_fail_closed(
                &got,
                &["ConnectionLost", "ConnectError", "UnavailableError"],
                &what,
            );
            assert!(elapsed(&got) < Duration::from_secs(1), "{what}: {got}");
            assert!(
                got["detail"].as_str().is_some_and(|t| t.contains("futu-authd")),
                "{what}: {got}"
            );
        }
        let usage = py.run(json!({"op": "usage", "client": client, "id": "research"}));
        assert!(
            ["ConnectError", "UnavailableError", "ConnectionLost"]
                .contains(&usage["raised"].as_str().unwrap_or("")),
            "{client}: {usage}"
        );
    }

    // Up again: once the backoff (at most 1 s) has passed, the next check is answered.
    d.restart();
    std::thread::sleep(Duration::from_millis(1100));
    for client in CLIENTS {
        let got = py.check(client, &research, "Qot_GetBasicQot", None);
        assert_eq!(
            got["outcome"], "allow",
            "{client} after the second restart: {got}"
        );
    }
}

#[test]
fn admin_calls_manage_keys_as_futucli_does() {
    let Some(pkg) = package() else { return };
    away_from_utc_midnight();
    let research = token_for("research");
    let d = DaemonBuilder::new(&[key_json("research", &research, &["qot:read"])]).start();
    let mut py = pkg.driver(&d.socket_path(), 5.0);

    // GenKey: the record lands in keys.json with the digest of the plaintext shown.
    let made = py.run(json!({"op": "gen_key", "spec": {
        "id": "py-bot",
        "scopes": ["qot:read", "trade:simulate"],
        "limits": {"allowed_markets": ["HK"], "max_order_value": 50000, "max_orders_per_minute": 2},
        "expires_at": "2030-01-01T00:00:00Z",
        "note": "made from Python",
    }}));
    let plaintext = made["plaintext"]
        .as_str()
        .unwrap_or_else(|| panic!("{made}"))
        .to_owned();
    assert!(
        !made["repr"].as_str().unwrap().contains(&plaintext[3..]),
        "repr() hides the plaintext: {made}"
    );
    let stored = key_record(&d, "py-bot").expect("py-bot is in keys.json");
    assert_eq!(
        stored["hash"],
        hash_of(&plaintext),
        "keys.json holds the SHA-256 of the plaintext"
    );
    assert_eq!(
        made["digest"], stored["hash"],
        "the Python digest is keys.json's hash"
    );
    assert_eq!(made["record"]["hash"], stored["hash"]);
    assert_eq!(made["stored_in"], d.keys_path().display().to_string());
    for field in ["id", "scopes", "limits", "expires_at", "note", "created_at"] {
        assert_eq!(
            made["record"][field], stored[field],
            "{field}: {made} vs {stored}"
        );
    }
    assert_eq!(stored["note"], "made from Python");
    assert_eq!(
        py.check("async", &plaintext, "Qot_GetBasicQot", None)["key_id"],
        "py-bot",
        "the new key is served at once"
    );
    let dup =
        py.run(json!({"op": "gen_key", "client": "async", "spec": {"id": "py-bot", "scopes": ["qot:read"]}}));
    assert_eq!(
        (&dup["raised"], &dup["kind"]),
        (&json!("AuthError"), &json!("duplicate_key")),
        "{dup}"
    );

    // Listings: paged and in one answer, both clients, as keys.json and futucli list them.
    let file_ids: Vec<Value> = keys_file(&d)["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].clone())
        .collect();
    assert_eq!(file_ids, vec![json!("research"), json!("py-bot")]);
    for (client, paged) in [("sync", true), ("sync", false), ("async", true), ("async", false)] {
        let listed = py.run(json!({"op": "list_keys", "client": client, "paged": paged}));
        let keys = listed["keys"].as_array().unwrap_or_else(|| panic!("{listed}"));
        let ids: Vec<Value> = keys.iter().map(|k| k["id"].clone()).collect();
        assert_eq!(ids, file_ids, "{client}, paged {paged}");
        let hashes: Vec<Value> = keys.iter().map(|k| k["hash"].clone()).collect();
        assert_eq!(
            hashes,
            vec![json!(hash_of(&research)), json!(hash_of(&plaintext))]
        );
    }
    let page = py.run(json!({"op": "list_keys_page"}));
    assert_eq!(
        (&page["offset"], &page["total"]),
        (&json!(0), &json!(2)),
        "{page}"
    );
    let cli = futucli(&d, &["list-keys", "--json"]);
    let cli: Value = serde_json::from_slice(&cli.stdout).expect("futucli list-keys --json");
    let cli_ids: Vec<Value> = cli
        .as_array()
        .or_else(|| cli["keys"].as_array())
        .expect("a list of keys")
        .iter()
        .map(|k| k["id"].clone())
        .collect();
    assert_eq!(cli_ids, file_ids);

    // Usage, after one order.
    let order = py.check("sync", &plaintext, "Trd_PlaceOrder", Some(sell(100.0)));
    assert_eq!(order["outcome"], "allow", "{order}");
    let usage = py.run(json!({"op": "usage", "id": "py-bot"}));
    assert!(
        (usage["daily_value_used"].as_f64().unwrap() - 38820.0).abs() < 1e-6,
        "{usage}"
    );
    assert_eq!(
        (
            &usage["orders_last_minute"],
            &usage["max_orders_per_minute"],
            &usage["max_daily_value"]
        ),
        (&json!(1), &json!(2), &Value::Null),
        "{usage}"
    );
    let shown = String::from_utf8_lossy(&futucli(&d, &["usage", "py-bot"]).stdout).into_owned();
    assert!(
        shown.contains("38820") && shown.contains("1 of 2"),
        "futucli agrees: {shown}"
    );

    // Binding: freeze, clear, this host, another host.
    let fp = this_fingerprint();
    let steps = [
        (json!({"bind": "freeze"}), json!([]), "reject", Some("frozen")),
        (json!({"bind": "clear"}), Value::Null, "allow", None),
        (
            json!({"bind": "add", "machines": [fp]}),
            json!([fp]),
            "allow",
            None,
        ),
        (
            json!({"bind": "replace", "machines": ["fp_elsewhere"]}),
            json!(["fp_elsewhere"]),
            "reject",
            Some("machine"),
        ),
    ];
    for (i, (op, machines, outcome, reason)) in steps.into_iter().enumerate() {
        let mut cmd = op.clone();
        cmd["op"] = json!("bind_key");
        cmd["id"] = json!("py-bot");
        cmd["client"] = json!(CLIENTS[i % 2]);
        let bound = py.run(cmd);
        assert_eq!(
            bound["record"].get("allowed_machines").unwrap_or(&Value::Null),
            &machines,
            "{op}: {bound}"
        );
        let stored = key_record(&d, "py-bot").unwrap();
        assert_eq!(
            stored.get("allowed_machines").unwrap_or(&Value::Null),
            &machines,
            "{op}: keys.json"
        );
        let got = py.check("sync", &plaintext, "Qot_GetBasicQot", None);
        assert_eq!(
            (got["outcome"].as_str(), got["reason"].as_str()),
            (Some(outcome), reason),
            "{op}: {got}"
        );
    }

    // Reload: the count of keys.json.
    let mut keys = keys_file(&d)["keys"].as_array().unwrap().clone();
    keys.push(key_json("late", &token_for("late"), &["qot:read"]));
    d.write_keys(&keys);
    let reloaded = py.run(json!({"op": "reload", "client": "async"}));
    assert_eq!(reloaded["keys_loaded"], keys.len(), "{reloaded}");
    assert_eq!(
        py.check("sync", &token_for("late"), "Qot_GetBasicQot", None)["key_id"],
        "late"
    );

    // Revoke.
    let revoked = py.run(json!({"op": "revoke_key", "id": "py-bot"}));
    assert_eq!(revoked["id"], "py-bot", "{revoked}");
    assert!(key_record(&d, "py-bot").is_none(), "py-bot left keys.json");
    assert_eq!(
        py.check("async", &plaintext, "Qot_GetBasicQot", None)["reason"],
        "unknown_key"
    );
    for op in ["revoke_key", "usage"] {
        let again = py.run(json!({"op": op, "id": "py-bot"}));
        assert_eq!(
            (&again["raised"], &again["kind"]),
            (&json!("AuthError"), &json!("unknown_key")),
            "{op}: {again}"
        );
    }
    let audit = std::fs::read_to_string(d.audit_path()).unwrap_or_default();
    assert!(
        !audit.contains(&plaintext),
        "the plaintext is not in the audit file"
    );
    assert!(!d.stderr_text().contains(&plaintext), "nor in the daemon's log");
}

#[test]
fn token_functions_give_what_futucli_and_the_daemon_compute() {
    let Some(pkg) = package() else { return };
    let d = DaemonBuilder::new(&[]).start();
    let mut py = pkg.driver(&d.socket_path(), 5.0);

    // A key futucli made: the Python digest of its plaintext is keys.json's hash.
    let out = futucli(&d, &["gen-key", "--id", "cli-made", "--scopes", "qot:read"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let plaintext = stdout
        .lines()
        .find_map(|l| l.strip_prefix("plaintext: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no plaintext in {stdout:?}"))
        .to_owned();
    let stored = key_record(&d, "cli-made").expect("cli-made is in keys.json");
    let results = py.run(json!({"op": "token", "token": plaintext}));
    assert_eq!(results["digest"], stored["hash"], "{results}");
    assert_eq!(results["digest_of_token"], stored["hash"]);
    assert_eq!(results["shaped"], true);
    assert_eq!(results["redacted"], "before fc_<redacted> after");
    for field in ["repr", "str", "format"] {
        let shown = results[field].as_str().unwrap();
        assert!(
            !shown.contains(&plaintext[3..]) && shown.contains("redacted"),
            "{field}: {shown}"
        );
    }
    assert_eq!(
        (&results["bearer"], &results["query"]),
        (&json!(plaintext), &json!(plaintext))
    );
    let not_a_token = py.run(json!({"op": "token", "token": "fc_NOT-A-TOKEN"}));
    assert_eq!(
        (&not_a_token["shaped"], &not_a_token["redacted"]),
        (&json!(false), &json!("before fc_NOT-A-TOKEN after"))
    );

    // Tokens Python made: the shape futucli makes, digests the Rust crates compute, and a
    // daemon serving a keys.json written with those digests recognises them.
    let made = py.run(json!({"op": "generate", "n": 20}));
    let made = made["tokens"].as_array().expect("tokens").clone();
    let mut keys = Vec::new();
    for (i, t) in made.iter().enumerate() {
        let token = t["token"].as_str().unwrap();
        let hex = token.strip_prefix("fc_").expect("fc_ prefix");
        assert!(
            hex.len() == 32
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{token}"
        );
        assert_eq!(t["digest"], hash_of(token), "{token}");
        let mut record = key_json(&format!("py-{i}"), token, &["qot:read"]);
        record["hash"] = t["digest"].clone();
        keys.push(record);
    }
    let tokens: std::collections::BTreeSet<&str> =
        made.iter().map(|t| t["token"].as_str().unwrap()).collect();
    assert_eq!(tokens.len(), made.len(), "no two alike");
    let d2 = DaemonBuilder::new(&keys).start();
    let mut py2 = pkg.driver(&d2.socket_path(), 5.0);
    for (i, t) in made.iter().enumerate() {
        let got = py2.check(
            CLIENTS[i % 2],
            t["token"].as_str().unwrap(),
            "Qot_GetBasicQot",
            None,
        );
        assert_eq!(got["key_id"], format!("py-{i}"), "{got}");
    }
}

/// Protocol version 3 from Python: a rotation seen in keys.json and by the daemon at once,
/// and the activity the daemon reports, as futucli lists it.
#[test]
fn rotation_and_key_activity_from_python_match_keys_json_and_futucli() {
    let Some(pkg) = package() else { return };
    away_from_utc_midnight();
    let research = token_for("research");
    let bot = token_for("bot");
    let d = DaemonBuilder::new(&[
        key_json("research", &research, &["qot:read"]),
        key_json("bot", &bot, &["qot:read"]),
        key_json("idle", &token_for("idle"), &["qot:read"]),
    ])
    .start();
    let mut py = pkg.driver(&d.socket_path(), 5.0);
    let allowed = |py: &mut Driver, client: &str, token: &str| {
        let d = py.check(client, token, "Qot_GetBasicQot", None);
        (
            d["outcome"].as_str().map(str::to_owned),
            d["reason"].as_str().map(str::to_owned),
        )
    };
    assert_eq!(allowed(&mut py, "sync", &research).0.as_deref(), Some("allow"));

    // Rotate bot with an hour's overlap: keys.json holds the new digest and the old one
    // with its end; both plaintexts are allowed at once, as bot.
    let started = jiff::Timestamp::now();
    let rotated = py.run(json!({"op": "rotate_key", "id": "bot", "overlap_secs": 3600}));
    let fresh = rotated["plaintext"]
        .as_str()
        .unwrap_or_else(|| panic!("{rotated}"))
        .to_owned();
    assert_ne!(fresh, bot);
    assert!(
        !rotated["repr"].as_str().unwrap().contains(&fresh[3..]),
        "repr() hides it: {rotated}"
    );
    let file = keys_file(&d);
    assert_eq!(key_record(&d, "bot").unwrap()["hash"], json!(hash_of(&fresh)));
    let rotations = file["rotations"].as_array().expect("a rotations array");
    assert_eq!(rotations.len(), 1, "{file}");
    assert_eq!(rotations[0]["id"], "bot");
    assert_eq!(rotations[0]["previous_hash"], json!(hash_of(&bot)));
    assert_eq!(
        rotations[0]["until"], rotated["previous_valid_until"],
        "{rotated}"
    );
    let until: jiff::Timestamp = rotated["previous_valid_until"].as_str().unwrap().parse().unwrap();
    let overlap = until.duration_since(started).as_secs();
    assert!((3590..=3610).contains(&overlap), "an hour's overlap: {overlap} s");
    assert!(
        !std::fs::read_to_string(d.keys_path()).unwrap().contains(&fresh),
        "no plaintext stored"
    );
    for (client, token) in [("sync", &bot), ("async", &fresh)] {
        let got = py.check(client, token, "Qot_GetBasicQot", None);
        assert_eq!(
            (&got["outcome"], &got["key_id"]),
            (&json!("allow"), &json!("bot")),
            "{got}"
        );
    }

    // The activity: research and bot used this minute, bot's overlap reported, idle never
    // used, an unknown id left out; futucli lists the same last uses.
    let activity =
        py.run(json!({"op": "key_activity", "ids": ["research", "bot", "idle", "ghost"], "client": "async"}));
    let keys = activity["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("{activity}"));
    let ids: Vec<&str> = keys.iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["research", "bot", "idle"], "{activity}");
    let minute = |t: jiff::Timestamp| t.as_second() - t.as_second().rem_euclid(60);
    for k in &keys[..2] {
        let used: jiff::Timestamp = k["last_used"]
            .as_str()
            .unwrap_or_else(|| panic!("{k}"))
            .parse()
            .unwrap();
        let now = jiff::Timestamp::now();
        assert!(
            (minute(started)..=minute(now)).contains(&used.as_second()),
            "used this minute: {k}"
        );
    }
    assert_eq!(keys[0]["previous_valid_until"], Value::Null);
    assert_eq!(keys[1]["previous_valid_until"], rotated["previous_valid_until"]);
    assert_eq!(
        (&keys[2]["last_used"], &keys[2]["previous_valid_until"]),
        (&Value::Null, &Value::Null)
    );
    let cli = futucli(&d, &["list-keys", "--json"]);
    let cli: Value = serde_json::from_slice(&cli.stdout).expect("futucli list-keys --json");
    for k in keys {
        let listed = cli
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == k["id"])
            .unwrap_or_else(|| panic!("{} in futucli's list", k["id"]));
        let (a, b) = (&listed["last_used"], &k["last_used"]);
        let at = |v: &Value| v.as_str().map(|s| s.parse::<jiff::Timestamp>().unwrap());
        assert_eq!(at(a), at(b), "futucli and Python agree on {}", k["id"]);
    }

    // Rotating again with no overlap: only the newest plaintext works, refused at once
    // for the one just replaced and for the first.
    let again = py.run(json!({"op": "rotate_key", "id": "bot", "overlap_secs": 0}));
    assert_eq!(again["previous_valid_until"], Value::Null, "{again}");
    let newest = again["plaintext"].as_str().unwrap().to_owned();
    assert_eq!(allowed(&mut py, "sync", &newest).0.as_deref(), Some("allow"));
    for token in [&fresh, &bot] {
        assert_eq!(
            allowed(&mut py, "async", token),
            (Some("reject".to_owned()), Some("unknown_key".to_owned()))
        );
    }
    assert!(
        keys_file(&d).get("rotations").is_none(),
        "no overlap left in keys.json"
    );

    // Errors: an unknown key is AuthError unknown_key; more than 500 ids is refused
    // before anything is sent.
    let ghost = py.run(json!({"op": "rotate_key", "id": "ghost"}));
    assert_eq!(
        (&ghost["raised"], &ghost["kind"]),
        (&json!("AuthError"), &json!("unknown_key")),
        "{ghost}"
    );
    let many: Vec<String> = (0..501).map(|i| format!("k{i}")).collect();
    let refused = py.run(json!({"op": "key_activity", "ids": many}));
    assert!(refused["raised"].is_string(), "{refused}");
}

#[test]
fn halt_and_resume_from_python_refuse_orders_halted_as_futucli_sees_it() {
    let Some(pkg) = package() else { return };
    let bot = token_for("bot");
    let d = DaemonBuilder::new(&[key_json("bot", &bot, &["qot:read", "trade:simulate"])]).start();
    let mut py = pkg.driver(&d.socket_path(), 5.0);
    let order = json!({"env": "simulate", "market": "HK", "symbol": "HK.00700", "side": "SELL",
                       "qty": 100.0, "price": 10.0});
    for client in CLIENTS {
        let halted = py.run(json!({"op": "halt", "client": client, "id": "bot", "reason": "fat finger"}));
        let halts = halted["halts"].as_array().unwrap_or_else(|| panic!("{halted}"));
        assert_eq!(halts.len(), 1, "{halted}");
        assert_eq!(halts[0]["key_id"], "bot");
        assert_eq!(halts[0]["reason"], "fat finger");
        assert_eq!(halts[0]["uid"], json!(nix::unistd::geteuid().as_raw()));
        assert_eq!(keys_file(&d)["halts"][0]["key_id"], "bot", "kept in keys.json");
        assert_eq!(py.run(json!({"op": "halts", "client": client})), halted);

        let deny = py.check(client, &bot, "Trd_PlaceOrder", Some(order.clone()));
        assert_eq!(deny["reason"], "halted", "{deny}");
        assert_eq!(
            deny["detail"], halts[0]["text"],
            "the detail is the halt's sentence"
        );
        let futucli = futucli_check(
            &d,
            &bot,
            "Trd_PlaceOrder",
            &[
                "--market", "HK", "--symbol", "HK.00700", "--side", "SELL", "--qty", "100", "--price", "10",
            ],
        );
        assert_same_decision(&deny, &futucli, "a halted order");
        let quote = py.check(client, &bot, "Qot_GetBasicQot", None);
        assert_eq!(quote["outcome"], "allow", "{quote}");

        let not_halted = py.run(json!({"op": "resume", "client": client}));
        assert_eq!(not_halted["raised"], "AuthError", "{not_halted}");
        assert_eq!(not_halted["kind"], "invalid_spec", "{not_halted}");
        let resumed = py.run(json!({"op": "resume", "client": client, "id": "bot"}));
        assert_eq!(resumed, json!({"halts": []}));
        let allowed = py.check(client, &bot, "Trd_PlaceOrder", Some(order.clone()));
        assert_eq!(allowed["outcome"], "allow", "{allowed}");
    }
}

/// Protocol version 5 from Python: a keys.json of several frames' worth, with multi-byte
/// characters, imported into a daemon running on keys.json and exported back; keys.json,
/// `futucli list-keys --json` and `futucli export-keys` say the same.
#[test]
fn keys_imported_from_python_are_in_keys_json_and_exported_back() {
    let Some(pkg) = package() else { return };
    let seed = token_for("seed");
    let d = DaemonBuilder::new(&[key_json("seed", &seed, &["qot:read"])]).start();
    let mut py = pkg.driver(&d.socket_path(), 5.0);

    // Some 150 KiB: three chunks or more, and characters of two, three and four bytes
    // wherever a chunk may end.
    let imported: Vec<Value> = (0..400)
        .map(|i| {
            let note = format!("{i:03} été 東京 😀 ").repeat(12);
            with(
                key_json(
                    &format!("imp-{i}"),
                    &token_for(&format!("imp-{i}")),
                    &["qot:read"],
                ),
                "note",
                json!(note),
            )
        })
        .collect();
    let text = serde_json::to_string_pretty(&json!({"version": 1, "keys": imported})).unwrap();
    assert!(text.len() > 2 * 60 * 1024, "{} bytes", text.len());
    let done = py.run(json!({"op": "import_keys", "text": text}));
    assert_eq!(
        done,
        json!({"added": 400, "replaced": 0, "total": 401,
               "stored_in": d.keys_path().display().to_string()}),
        "{done}"
    );
    let file = keys_file(&d);
    let kept = file["keys"].as_array().expect("a keys array");
    assert_eq!(kept.len(), 401);
    for key in &imported {
        let got = kept
            .iter()
            .find(|k| k["id"] == key["id"])
            .unwrap_or_else(|| panic!("{} in keys.json", key["id"]));
        for field in ["hash", "scopes", "note", "created_at"] {
            assert_eq!(got[field], key[field], "{field} of {}", key["id"]);
        }
    }
    let listed = futucli(&d, &["list-keys", "--json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("futucli list-keys --json");
    let ids: Vec<&str> = listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    let mut want = vec!["seed".to_owned()];
    want.extend((0..400).map(|i| format!("imp-{i}")));
    assert_eq!(
        ids, want,
        "the file's keys after the store's, in the file's order"
    );
    let imp = py.check("async", &token_for("imp-7"), "Qot_GetBasicQot", None);
    assert_eq!(
        (&imp["outcome"], &imp["key_id"]),
        (&json!("allow"), &json!("imp-7")),
        "{imp}"
    );

    // The same file again: its ids are taken, refused unless replace; nothing changes.
    let again = py.run(json!({"op": "import_keys", "client": "async", "text": text}));
    assert_eq!(
        (&again["raised"], &again["kind"]),
        (&json!("AuthError"), &json!("duplicate_key")),
        "{again}"
    );
    assert_eq!(keys_file(&d), file, "a refused import changes nothing");
    let replaced = py.run(json!({"op": "import_keys", "client": "async", "text": text, "replace": true}));
    assert_eq!(
        (&replaced["added"], &replaced["replaced"], &replaced["total"]),
        (&json!(0), &json!(400), &json!(401)),
        "{replaced}"
    );

    // Exported back, by either client, in chunks: the store's keys.json, the text
    // futucli export-keys prints.
    let exported = py.run(json!({"op": "export_keys"}));
    let exported = exported["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{exported}"))
        .to_owned();
    assert!(exported.len() > 2 * 60 * 1024, "{} bytes", exported.len());
    let again = py.run(json!({"op": "export_keys", "client": "async"}));
    assert_eq!(
        again["text"].as_str(),
        Some(exported.as_str()),
        "both clients export the same text"
    );
    let parsed: Value = serde_json::from_str(&exported).expect("the export is JSON");
    assert_eq!(parsed, keys_file(&d), "the export is the store's keys.json");
    for key in &imported {
        let got = parsed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == key["id"])
            .unwrap_or_else(|| panic!("{} in the export", key["id"]));
        assert_eq!((&got["hash"], &got["note"]), (&key["hash"], &key["note"]));
    }
    let cli = futucli(&d, &["export-keys"]);
    assert!(
        cli.status.success(),
        "futucli export-keys: {}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&cli.stdout).trim_end(),
        exported.trim_end(),
        "futucli exports the same"
    );
}

/// The Rust client's decision as the Python driver prints one (`futucli check --json`'s
/// fields).
fn rust_view(d: &Decision) -> Value {
    match d {
        Decision::Allow { key_id, scope, .. } => {
            json!({"outcome": "allow", "key_id": key_id.as_str(), "scope": scope.map(Scope::as_str)})
        }
        Decision::Deny {
            reason,
            key_id,
            detail,
            ..
        } => json!({
            "outcome": "reject",
            "reason": reason.as_str(),
            "key_id": key_id.as_ref().map(|k| k.as_str()),
            "detail": detail,
        }),
    }
}

/// The records of the audit file that the process `pid` asked for.
fn records_of(d: &Daemon, pid: u32) -> Vec<Value> {
    d.audit_records()
        .into_iter()
        .filter(|r| r["peer_pid"] == pid)
        .collect()
}

/// Protocol version 4 from Python: a session's repeated decisions are the Rust client's
/// (and a dry-run check's, as futucli makes it), and the daemon audits one only when its
/// outcome differs from the one the session had before; held-back WebSocket pushes are
/// counted by the number the decision was for.
#[test]
fn session_checks_from_python_decide_as_the_rust_client_and_are_audited_only_when_they_change() {
    let Some(pkg) = package() else { return };
    let research = token_for("research");
    let stranger = token_for("stranger");
    let d = DaemonBuilder::new(&[key_json("research", &research, &["qot:read"])])
        .metrics()
        .start();
    let mut py = pkg.driver(&d.socket_path(), 5.0);
    let python = py.child.id();
    let rust = BlockingAuthClient::connect_with_deadline(d.socket_path(), Duration::from_secs(5))
        .expect("the Rust client connects");
    let filtered = || {
        let text = d.metrics_text();
        let labels = [("required_scope", "trade"), ("key_id", "research")];
        metric_value(&text, "futu_ws_filtered_pushes_total", &labels).unwrap_or(0.0)
    };
    let pushes = |scope, pushes| SessionSubject::Pushes { scope, pushes };
    let keep_alive = SessionSubject::KeepAlive;
    let allow = SessionOutcome::Allow;
    let no_scope = SessionOutcome::Deny(Reason::Scope);
    let no_key = SessionOutcome::Deny(Reason::UnknownKey);
    // (client, token, iface, subject, previous, the outcome and reason, audited)
    let steps = [
        (
            CLIENTS[0],
            &research,
            Iface::Ws,
            pushes(Scope::QotRead, 3),
            no_scope,
            ("allow", None),
            true,
        ),
        (
            CLIENTS[1],
            &research,
            Iface::Ws,
            pushes(Scope::QotRead, 3),
            allow,
            ("allow", None),
            false,
        ),
        (
            CLIENTS[0],
            &research,
            Iface::Ws,
            pushes(Scope::TradeReal, 5),
            no_scope,
            ("reject", Some("scope")),
            false,
        ),
        (
            CLIENTS[1],
            &research,
            Iface::Ws,
            pushes(Scope::TradeReal, 2),
            allow,
            ("reject", Some("scope")),
            true,
        ),
        (
            CLIENTS[0],
            &research,
            Iface::Grpc,
            pushes(Scope::TradeReal, 4),
            allow,
            ("reject", Some("scope")),
            true,
        ),
        (
            CLIENTS[1],
            &research,
            Iface::Mcp,
            keep_alive,
            allow,
            ("allow", None),
            false,
        ),
        (
            CLIENTS[0],
            &research,
            Iface::Mcp,
            keep_alive,
            no_key,
            ("allow", None),
            true,
        ),
        (
            CLIENTS[1],
            &stranger,
            Iface::Mcp,
            keep_alive,
            allow,
            ("reject", Some("unknown_key")),
            true,
        ),
        (
            CLIENTS[0],
            &stranger,
            Iface::Mcp,
            keep_alive,
            no_key,
            ("reject", Some("unknown_key")),
            false,
        ),
    ];
    let mut audited = 0;
    for (i, (client, token, iface, subject, previous, (outcome, reason), leaves_record)) in
        steps.into_iter().enumerate()
    {
        let what = format!("step {i}: {client} {iface} {subject:?} after {previous:?}");
        let theirs = rust
            .block_on(
                rust.inner()
                    .session_check(&Token::new(token.as_str()), iface, subject, previous),
            )
            .unwrap_or_else(|e| panic!("{what}: the Rust client: {e}"));
        let before = filtered();
        let records_before = records_of(&d, python).len();
        let (subject_json, held) = match subject {
            SessionSubject::KeepAlive => (json!("keep_alive"), 0),
            SessionSubject::Pushes { scope, pushes } => (
                json!({"scope": scope.as_str(), "pushes": pushes}),
                if iface == Iface::Ws && outcome == "reject" {
                    pushes
                } else {
                    0
                },
            ),
        };
        let previous_json = match previous {
            SessionOutcome::Allow => json!("allow"),
            SessionOutcome::Deny(reason) => json!(reason.as_str()),
        };
        let got = py.run(json!({
            "op": "session_check", "client": client, "token": token, "iface": iface.as_str(),
            "subject": subject_json, "previous": previous_json,
        }));
        assert_eq!(
            (got["outcome"].as_str(), got["reason"].as_str()),
            (Some(outcome), reason),
            "{what}: {got}"
        );
        assert_same_decision(&got, &rust_view(&theirs), &what);
        if subject == keep_alive {
            let cli = futucli_check(&d, token, "KeepAlive", &["--dry-run"]);
            assert_same_decision(&got, &cli, &format!("{what}, futucli"));
        }

        // The record comes before the answer: it is there now, or never.
        let records = records_of(&d, python);
        if leaves_record {
            audited += 1;
        }
        assert_eq!(records.len(), audited, "{what}: {records:#?}");
        assert_eq!(
            records.len() - records_before,
            usize::from(leaves_record),
            "{what}"
        );
        if leaves_record {
            let r = records.last().unwrap();
            assert_eq!(
                (&r["outcome"], &r["reason"], &r["iface"]),
                (&json!(outcome), &json!(reason), &json!(iface.as_str())),
                "{what}: {r}"
            );
            match subject {
                SessionSubject::Pushes { scope, pushes } => {
                    assert_eq!(
                        (&r["kind"], &r["endpoint"], &r["pushes"]),
                        (&json!("check_scope"), &json!(scope.as_str()), &json!(pushes)),
                        "{what}: {r}"
                    );
                }
                SessionSubject::KeepAlive => {
                    assert_eq!(
                        (&r["kind"], &r["endpoint"], &r["dry_run"], r.get("pushes")),
                        (&json!("check"), &json!("KeepAlive"), &json!(true), None),
                        "{what}: {r}"
                    );
                }
            }
        }
        assert_eq!(
            filtered() - before,
            f64::from(held),
            "{what}: futu_ws_filtered_pushes_total grows by the pushes held back on a WebSocket"
        );
    }
    let state = py.run(json!({"op": "state"}));
    assert_eq!(
        (&state["sync_version"], &state["async_version"]),
        (
            &json!(futu_auth_proto::PROTOCOL_VERSION),
            &json!(futu_auth_proto::PROTOCOL_VERSION)
        ),
        "SessionCheck itself was sent: {state}"
    );
}

/// An order the daemon allowed after the Python caller gave up (its deadline passed while
/// the daemon was stopped) is released by the client on the same connection: the audit
/// file shows the release of that order's ticket, and the key's daily value is what the
/// callers were answered allowed.
#[test]
fn an_order_allowed_after_its_caller_gave_up_is_released_by_the_python_client() {
    let Some(pkg) = package() else { return };
    away_from_utc_midnight();
    let bot = token_for("sim-bot");
    let d = DaemonBuilder::new(&[with(
        key_json("sim-bot", &bot, &["trade:simulate"]),
        "limits",
        json!({"max_daily_value": 500000}),
    )])
    .start();
    let mut py = pkg.driver(&d.socket_path(), 5.0);
    let python = py.child.id();
    let mut answered_allowed = 0.0;
    for (n, client) in CLIENTS.into_iter().enumerate() {
        let on_time = py.check(client, &bot, "Trd_PlaceOrder", Some(sell(100.0)));
        assert_eq!(on_time["outcome"], "allow", "{client}: {on_time}");
        answered_allowed += 38820.0;

        // Stopped while the next order is asked with a short deadline: the caller is
        // denied, and the daemon allows the order once it goes on.
        d.pause();
        let late = py.run(json!({
            "op": "check", "client": client, "timeout": 0.3, "token": bot, "endpoint": "Trd_PlaceOrder",
            "order": sell(100.0),
        }));
        d.resume();
        assert_fail_closed(&late, &["DeadlineExceeded"], &format!("{client}, paused daemon"));
        let count = py.run(json!({"op": "late_releases", "client": client, "at_least": 1, "within": 10}));
        assert_eq!(count["late_releases"], 1, "{client}: {count}");

        let records = poll("the late order's release in the audit file", || {
            let recs = records_of(&d, python);
            (recs.iter().filter(|r| r["kind"] == "release").count() > n).then_some(recs)
        });
        let releases: Vec<&Value> = records.iter().filter(|r| r["kind"] == "release").collect();
        assert_eq!(releases.len(), n + 1, "{client}: {records:#?}");
        let release = releases[n];
        let ticket = &release["ticket"];
        assert_eq!(
            (&release["outcome"], &release["key_id"]),
            (&json!("allow"), &json!("sim-bot")),
            "{client}: {release}"
        );
        assert_ne!(
            ticket, &on_time["ticket"],
            "the order answered in time is not released"
        );
        let allowed: Vec<&Value> = records
            .iter()
            .filter(|r| r["kind"] == "check" && &r["ticket"] == ticket)
            .collect();
        assert_eq!(
            allowed.len(),
            1,
            "{client}: the released ticket is an order's: {records:#?}"
        );
        assert_eq!(
            (&allowed[0]["outcome"], &allowed[0]["endpoint"]),
            (&json!("allow"), &json!("Trd_PlaceOrder")),
            "{client}: {}",
            allowed[0]
        );
        assert_eq!(
            records
                .iter()
                .filter(|r| r["kind"] == "check" && r["outcome"] == "allow")
                .count(),
            2 * (n + 1),
            "{client}: one order on time and one late, each time"
        );

        let usage = py.run(json!({"op": "usage", "id": "sim-bot"}));
        assert!(
            (usage["daily_value_used"].as_f64().unwrap() - answered_allowed).abs() < 1e-6,
            "{client}: the late order's value was given back: {usage}"
        );
    }
    let state = py.run(json!({"op": "state"}));
    assert_eq!(
        (
            &state["sync_connections"],
            &state["async_connections"],
            &state["sync_late_releases"],
            &state["async_late_releases"]
        ),
        (&json!(1), &json!(1), &json!(1), &json!(1)),
        "released on the connection that asked: {state}"
    );
}

/// The pre-trade risk limits through the Python client, sync and async, as futucli sees
/// them: an account whitelist, a price collar around the reference price, one open order,
/// a position cap fed by a fill reported with `order_event`, and the duplicate window.
#[test]
fn risk_limits_from_python_refuse_as_futucli_sees_them_and_order_events_move_them() {
    let Some(pkg) = package() else { return };
    let limits = json!({
        "allowed_acc_ids": [281756],
        "max_price_deviation_pct": 5,
        "max_open_orders": 1,
        "max_position_value": 1000,
        "duplicate_window_ms": 600000
    });
    let tokens: Vec<String> = CLIENTS.iter().map(|c| token_for(&format!("risk-{c}"))).collect();
    let keys: Vec<Value> = CLIENTS
        .iter()
        .zip(&tokens)
        .map(|(c, t)| {
            futu_authd_tests::with(
                key_json(
                    &format!("risk-{c}"),
                    t,
                    &["qot:read", "acc:read", "trade:simulate"],
                ),
                "limits",
                limits.clone(),
            )
        })
        .collect();
    let d = DaemonBuilder::new(&keys).start();
    let mut py = pkg.driver(&d.socket_path(), 5.0);
    let buy = |qty: f64, price: f64| {
        json!({"env": "simulate", "market": "HK", "symbol": "HK.00700", "side": "BUY",
               "qty": qty, "price": price})
    };
    for (client, token) in CLIENTS.iter().zip(&tokens) {
        let order = |py: &mut Driver, qty: f64, price: f64, acc_id: Option<u64>, ref_price: Option<f64>| {
            let mut cmd = json!({"op": "check", "client": client, "token": token,
                                 "endpoint": "Trd_PlaceOrder", "order": buy(qty, price)});
            if let Some(a) = acc_id {
                cmd["acc_id"] = json!(a);
            }
            if let Some(r) = ref_price {
                cmd["ref_price"] = json!(r);
            }
            py.run(cmd)
        };
        // Accounts: none, or another, is refused `account` — as futucli sees it.
        let none = order(&mut py, 10.0, 10.0, None, Some(10.0));
        assert_eq!(none["reason"], "account", "{none}");
        let other = order(&mut py, 10.0, 10.0, Some(1), Some(10.0));
        assert_eq!(other["reason"], "account", "{other}");
        let cli = futucli_check(
            &d,
            token,
            "Trd_PlaceOrder",
            &[
                "--market",
                "HK",
                "--symbol",
                "HK.00700",
                "--side",
                "BUY",
                "--qty",
                "10",
                "--price",
                "10",
                "--acc-id",
                "1",
                "--ref-price",
                "10",
                "--dry-run",
            ],
        );
        assert_same_decision(&other, &cli, "an order on another account");
        // The collar: 12 is 20 % from 10; no reference price is refused too.
        let far = order(&mut py, 10.0, 12.0, Some(281756), Some(10.0));
        assert_eq!(far["reason"], "price_collar", "{far}");
        let blind = order(&mut py, 10.0, 10.0, Some(281756), None);
        assert_eq!(blind["reason"], "price_collar", "{blind}");
        // Allowed: 100 at 10 within 5 % of 10.2, on the account.
        let first = order(&mut py, 100.0, 10.0, Some(281756), Some(10.2));
        assert_eq!(first["outcome"], "allow", "{first}");
        let ticket = first["ticket"].as_u64().unwrap_or_else(|| panic!("{first}"));
        // The same order again is a duplicate; another is past the one open order.
        let again = order(&mut py, 100.0, 10.0, Some(281756), Some(10.2));
        assert_eq!(again["reason"], "duplicate", "{again}");
        let second = order(&mut py, 1.0, 10.0, Some(281756), Some(10.0));
        assert_eq!(second["reason"], "open_orders", "{second}");
        // Filled: the slot is free, the position is 1000 — at its cap.
        let filled = py.run(json!({"op": "order_event", "client": client, "ticket": ticket,
                                   "kind": "filled", "filled_qty": 100.0, "fill_price": 10.0}));
        assert_eq!(filled["kind"], "applied", "{filled}");
        let twice = py.run(json!({"op": "order_event", "client": client, "ticket": ticket,
                                  "kind": "filled", "filled_qty": 100.0, "fill_price": 10.0}));
        assert_eq!(twice["kind"], "duplicate", "{twice}");
        let unknown = py.run(json!({"op": "order_event", "client": client, "ticket": 12345,
                                    "kind": "cancelled"}));
        assert_eq!(
            (&unknown["kind"], &unknown["reason"]),
            (&json!("refused"), &json!("unknown_ticket")),
            "{unknown}"
        );
        let over = order(&mut py, 1.0, 10.0, Some(281756), Some(10.0));
        assert_eq!(over["reason"], "position", "{over}");
        // An account read names its account too.
        let mut read = json!({"op": "check", "client": client, "token": token, "endpoint": "Trd_GetFunds"});
        assert_eq!(py.run(read.clone())["reason"], "account");
        read["acc_id"] = json!(281756);
        assert_eq!(py.run(read)["outcome"], "allow");
    }
}
