//! What the gateway tests share: the real `futu-gw-demo` binary on free ports (REST with
//! `/ws`, gRPC, MCP over streamable HTTP), curl for REST, Python's grpcio for gRPC (stubs
//! generated into a temporary directory), and keys and orders. Each test file uses a part
//! of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futu_auth_client::{BlockingAuthClient, KeyId};
use futu_authd_tests::{key_json, poll, skip, target_dir, token_for, with, Daemon};
use serde_json::{json, Value};

// ---- the gateway ------------------------------------------------------------------------

/// A running futu-gw-demo serving REST (with `/ws`), gRPC and MCP over streamable HTTP on
/// free ports of 127.0.0.1. Killed on drop.
pub struct Gateway {
    child: Child,
    pub rest: SocketAddr,
    pub grpc: SocketAddr,
    pub mcp: SocketAddr,
    /// The gateway's own /metrics, when started with [`GatewayBuilder::metrics`].
    pub metrics: Option<SocketAddr>,
    stderr: Arc<Mutex<String>>,
}

/// A futu-gw-demo to start: its flags and environment beyond the listeners.
pub struct GatewayBuilder {
    socket: PathBuf,
    deadline: Duration,
    args: Vec<String>,
    env: Vec<(String, String)>,
    metrics: bool,
}

impl GatewayBuilder {
    /// The deadline of each check (default 1 s).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// One more flag.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// One more environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Serve the gateway's own metrics on a free port too.
    pub fn metrics(mut self) -> Self {
        self.metrics = true;
        self
    }

    /// Starts it and waits for its listeners.
    pub fn start(self) -> Gateway {
        Gateway::spawn(self)
    }
}

impl Gateway {
    /// Starts futu-gw-demo asking the daemon at `socket`, and waits for both listeners.
    /// Checks may take a second (a slow CI machine must not turn a decision into a 503).
    pub fn start(socket: &Path) -> Gateway {
        Gateway::builder(socket).start()
    }

    /// [`Gateway::start`] with a deadline of its own for each check.
    pub fn with_deadline(socket: &Path, deadline: Duration) -> Gateway {
        Gateway::builder(socket).deadline(deadline).start()
    }

    /// A gateway to start, asking the daemon at `socket`.
    pub fn builder(socket: &Path) -> GatewayBuilder {
        GatewayBuilder {
            socket: socket.to_owned(),
            deadline: Duration::from_secs(1),
            args: Vec::new(),
            env: Vec::new(),
            metrics: false,
        }
    }

    fn spawn(b: GatewayBuilder) -> Gateway {
        let (socket, deadline) = (b.socket.as_path(), b.deadline);
        let binary = target_dir().join("futu-gw-demo");
        assert!(
            binary.is_file(),
            "{} does not exist: run `cargo build --workspace --bins` first",
            binary.display()
        );
        let mut cmd = Command::new(binary);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("FUTU_") {
                cmd.env_remove(&k);
            }
        }
        if b.metrics {
            cmd.args(["--metrics-listen", "127.0.0.1:0"]);
        }
        cmd.args(&b.args).envs(b.env.iter().map(|(k, v)| (k, v)));
        let mut child = cmd
            .arg("--auth-socket")
            .arg(socket)
            .args(["--rest-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"])
            .args(["--mcp-listen", "127.0.0.1:0"])
            .arg(format!("--auth-deadline-ms={}", deadline.as_millis()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn futu-gw-demo");
        let stderr: Arc<Mutex<String>> = Arc::default();
        let sink = Arc::clone(&stderr);
        let pipe = child.stderr.take().expect("stderr is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        let (rest, grpc, mcp, metrics) = poll("futu-gw-demo's listening lines", || {
            let text = stderr.lock().unwrap().clone();
            let addr = |prefix: &str| -> Option<SocketAddr> {
                let line = text.lines().find(|l| l.contains(prefix))?;
                let rest = line.split(prefix).nth(1)?.trim();
                rest.trim_end_matches("/mcp")
                    .trim_end_matches("/metrics")
                    .parse()
                    .ok()
            };
            let metrics = addr("metrics listening on http://");
            if b.metrics && metrics.is_none() {
                return None;
            }
            Some((
                addr("REST listening on http://")?,
                addr("gRPC listening on ")?,
                addr("MCP listening on http://")?,
                metrics,
            ))
        });
        Gateway {
            child,
            rest,
            grpc,
            mcp,
            metrics,
            stderr,
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.rest)
    }

    /// The MCP endpoint's URL.
    pub fn mcp_url(&self) -> String {
        format!("http://{}/mcp", self.mcp)
    }

    /// The gateway's own metrics (started with [`GatewayBuilder::metrics`]).
    pub fn metrics_text(&self) -> String {
        let addr = self.metrics.expect("the gateway was started with metrics()");
        let (status, text) = futu_authd_tests::http_get(addr, "/metrics");
        assert_eq!(status, 200, "{text}");
        text
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- futu-gw-demo stderr ---\n{}--- end ---", self.stderr());
        }
    }
}

// ---- REST through curl ------------------------------------------------------------------

/// What curl received.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// The refusal's `reason`.
    pub fn reason(&self) -> String {
        self.json()["reason"].as_str().unwrap_or_default().to_owned()
    }
}

/// Whether curl is here; when it is not, the test says it is skipped.
pub fn have_curl() -> bool {
    let ok = futu_authd_tests::have_program("curl");
    if !ok {
        skip("curl is not installed (make deps installs it)");
    }
    ok
}

/// A curl command for `url`, with the key as a bearer token when given.
pub fn curl_command(url: &str, token: Option<&str>) -> Command {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-i", "--max-time", "10"]).arg(url);
    if let Some(t) = token {
        cmd.arg("-H").arg(format!("Authorization: Bearer {t}"));
    }
    cmd
}

pub fn reply_of(out: std::process::Output) -> Reply {
    let mut raw = String::from_utf8_lossy(&out.stdout).into_owned();
    // curl sends `Expect: 100-continue` with a large body; the interim answer comes first.
    while raw.starts_with("HTTP/1.1 100") {
        match raw.split_once("\r\n\r\n") {
            Some((_, rest)) => raw = rest.to_owned(),
            None => break,
        }
    }
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("curl printed no response (exit {:?}): {raw:?}", out.status));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {raw:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// Runs `cmd` (a curl command ending in `--data-binary @-`) with `body` on its stdin.
pub fn reply_with_body(mut cmd: Command, body: &[u8]) -> Reply {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run curl");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let body = body.to_vec();
    // A server may answer before it has read the whole body; the writer must not block the
    // reading of the answer.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let out = child.wait_with_output().expect("wait for curl");
    let _ = writer.join();
    reply_of(out)
}

pub fn get(gw: &Gateway, path: &str, token: Option<&str>) -> Reply {
    reply_of(curl_command(&gw.url(path), token).output().expect("run curl"))
}

pub fn order_command(gw: &Gateway, token: &str, order: &Value) -> Command {
    let mut cmd = curl_command(&gw.url("/api/order"), Some(token));
    cmd.args(["-X", "POST", "-H", "Content-Type: application/json", "--data"])
        .arg(order.to_string());
    cmd
}

pub fn post_order(gw: &Gateway, token: &str, order: &Value) -> Reply {
    let mut cmd = curl_command(&gw.url("/api/order"), Some(token));
    cmd.args([
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        "@-",
    ]);
    reply_with_body(cmd, order.to_string().as_bytes())
}

/// A POST of `body` as JSON to `path`.
pub fn post_json(gw: &Gateway, path: &str, token: &str, body: &Value) -> Reply {
    let mut cmd = curl_command(&gw.url(path), Some(token));
    cmd.args([
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        "@-",
    ]);
    reply_with_body(cmd, body.to_string().as_bytes())
}

/// `order` with its account.
pub fn in_account(mut order: Value, acc_id: u64) -> Value {
    order["acc_id"] = json!(acc_id);
    order
}

/// Waits until the gateway logged that its order `order_id` filled.
pub fn wait_filled(gw: &Gateway, order_id: u64) {
    let needle = format!("order {order_id} of ");
    poll(&format!("order {order_id} filled"), || {
        gw.stderr()
            .lines()
            .any(|l| l.contains(&needle) && l.contains(" filled: "))
            .then_some(())
    });
}

// ---- gRPC through Python's grpcio -------------------------------------------------------

/// The Python of `make deps`' virtual environment and the stubs generated for this test.
pub struct Grpc {
    pub python: PathBuf,
    stubs: tempfile::TempDir,
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace")
        .to_path_buf()
}

/// grpcio with stubs of gateway.proto; `None` (the test says it is skipped) when the
/// virtual environment is missing.
pub fn grpc_client() -> Option<Grpc> {
    let python = std::env::var_os("FUTU_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/venv/bin/python"));
    let ready = python.is_file()
        && Command::new(&python)
            .args(["-c", "import grpc, grpc_tools"])
            .output()
            .is_ok_and(|o| o.status.success());
    if !ready {
        skip(&format!(
            "no Python with grpcio and grpcio-tools at {} (make deps makes it)",
            python.display()
        ));
        return None;
    }
    let stubs = tempfile::tempdir().expect("a directory for the stubs");
    let proto_dir = workspace().join("client/gw-demo/proto");
    let out = Command::new(&python)
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(&proto_dir)
        .arg(format!("--python_out={}", stubs.path().display()))
        .arg(format!("--grpc_python_out={}", stubs.path().display()))
        .arg("gateway.proto")
        .output()
        .expect("run grpc_tools.protoc");
    assert!(
        out.status.success(),
        "grpc_tools.protoc failed on {}: {}",
        proto_dir.join("gateway.proto").display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(Grpc { python, stubs })
}

/// One call of Gateway/Request.
pub fn call(proto_id: u32, body: Value, token: Option<&str>) -> Value {
    json!({"proto_id": proto_id, "body": body, "token": token})
}

impl Grpc {
    /// Starts the script with these calls; [`Grpc::results`] waits for their outcomes.
    pub fn spawn(&self, gw: &Gateway, calls: &[Value]) -> Child {
        let mut child = Command::new(&self.python)
            .arg(workspace().join("tests/python/grpc_client.py"))
            .arg(self.stubs.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run grpc_client.py");
        let job = json!({"addr": gw.grpc.to_string(), "calls": calls});
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(job.to_string().as_bytes())
            .expect("send the calls");
        child
    }

    pub fn results(child: Child) -> Vec<Value> {
        let out = child.wait_with_output().expect("wait for grpc_client.py");
        assert!(
            out.status.success(),
            "grpc_client.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line from grpc_client.py"))
            .collect()
    }

    pub fn calls(&self, gw: &Gateway, calls: &[Value]) -> Vec<Value> {
        Grpc::results(self.spawn(gw, calls))
    }

    pub fn one(&self, gw: &Gateway, c: Value) -> Value {
        self.calls(gw, &[c]).remove(0)
    }
}

// ---- keys and orders --------------------------------------------------------------------

pub const QOT: u32 = 3004;
pub const FUNDS: u32 = 2101;
pub const ORDER: u32 = 2202;
/// Trd_ModifyOrder: futu-gw-demo's cancel, `{"order_id"}`.
pub const CANCEL: u32 = 2205;

pub fn order(symbol: &str, qty: f64, price: f64) -> Value {
    let market = symbol.split('.').next().expect("a symbol has a market");
    json!({"env": "simulate", "market": market, "symbol": symbol, "side": "BUY", "qty": qty, "price": price})
}

pub fn quote_body() -> Value {
    json!({"symbol": "HK.00700"})
}

/// A key that may read quotes and funds and place simulated orders, with `limits`.
pub fn trader(id: &str, limits: Value) -> Value {
    with(
        key_json(id, &token_for(id), &["qot:read", "acc:read", "trade:simulate"]),
        "limits",
        limits,
    )
}

pub fn admin(d: &Daemon) -> BlockingAuthClient {
    BlockingAuthClient::connect_with_deadline(d.socket_path(), Duration::from_secs(5))
        .expect("connect to futu-authd")
}

/// The key's daily value used today, as futu-authd counts it.
pub fn daily_value_used(d: &Daemon, id: &str) -> f64 {
    let c = admin(d);
    let id: KeyId = id.parse().unwrap();
    c.block_on(c.inner().usage(&id)).expect("usage").daily_value_used
}

/// The state letter of process `pid` in /proc (`T` when stopped).
pub fn ts_ms(record: &Value) -> f64 {
    let ts: jiff::Timestamp = record["ts"]
        .as_str()
        .expect("a ts")
        .parse()
        .expect("an RFC 3339 ts");
    ts.as_microsecond() as f64 / 1000.0
}

// ---- Python clients, one line in, one line out ------------------------------------------

/// A Python client script running in the background: a JSON line in, a JSON line out.
pub struct Script {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// What it said first (`{"open": true}`, `{"ready": …}`, `{"refused": …}`).
    pub hello: Value,
}

impl Script {
    pub fn spawn(mut cmd: Command) -> Script {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run a Python client");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut script = Script {
            child,
            stdin,
            stdout,
            hello: Value::Null,
        };
        script.hello = script.read();
        script
    }

    pub fn read(&mut self) -> Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read the client's line");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"))
    }

    /// Sends `command`, returns the answer.
    pub fn ask(&mut self, command: Value) -> Value {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{command}").expect("write to the client");
        stdin.flush().expect("flush");
        self.read()
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The venv's python with grpcio, websockets and mcp; `None` (the test says it is
/// skipped) without them.
pub fn python() -> Option<Grpc> {
    let grpc = grpc_client()?;
    let ready = Command::new(&grpc.python)
        .args(["-c", "import websockets, mcp"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        skip(&format!(
            "no websockets and mcp in {} (make deps installs them)",
            grpc.python.display()
        ));
        return None;
    }
    Some(grpc)
}

pub fn script(py: &Grpc, name: &str) -> Command {
    let mut cmd = Command::new(&py.python);
    cmd.arg(workspace().join("tests/python").join(name));
    cmd
}

/// A WebSocket on `/ws`, the key as a Bearer header.
pub fn ws(py: &Grpc, gw: &Gateway, token: &str) -> Script {
    let mut cmd = script(py, "ws_client.py");
    cmd.arg(format!("ws://{}/ws", gw.rest)).arg(token);
    Script::spawn(cmd)
}

/// A WebSocket on `/ws?token=…`.
pub fn ws_query(py: &Grpc, gw: &Gateway, token: &str) -> Script {
    let mut cmd = script(py, "ws_client.py");
    cmd.arg(format!("ws://{}/ws?token={token}", gw.rest));
    Script::spawn(cmd)
}

/// An MCP session over streamable HTTP, the key as a Bearer token.
pub fn mcp_http(py: &Grpc, gw: &Gateway, token: &str) -> Script {
    let mut cmd = script(py, "mcp_client.py");
    cmd.args(["http", &format!("http://{}/mcp", gw.mcp), token]);
    let s = Script::spawn(cmd);
    assert_eq!(s.hello["ready"], true, "{}", s.hello);
    s
}

/// An MCP session over stdio with a futu-gw-demo of its own, the key in FUTU_MCP_API_KEY.
pub fn mcp_stdio(py: &Grpc, socket: &Path, token: &str) -> Script {
    let mut cmd = script(py, "mcp_client.py");
    cmd.arg("stdio")
        .arg(target_dir().join("futu-gw-demo"))
        .arg("--mcp-stdio")
        .arg("--auth-socket")
        .arg(socket)
        .arg("--auth-deadline-ms=1000")
        .env("FUTU_MCP_API_KEY", token);
    let s = Script::spawn(cmd);
    assert_eq!(s.hello["ready"], true, "{}", s.hello);
    s
}

pub fn tool(name: &str, arguments: Value) -> Value {
    json!({"tool": name, "arguments": arguments})
}

/// A tool error's text: the refusal's `{"reason", "detail", "retry_after_ms"}`.
pub fn tool_error(result: &Value) -> Value {
    assert_eq!(result["is_error"], true, "{result}");
    serde_json::from_str(result["text"].as_str().expect("a text")).expect("JSON text")
}

pub fn ws_request(id: u64, proto_id: u32, body: Value) -> Value {
    json!({"send": {"id": id, "proto_id": proto_id, "body": body}})
}

pub fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
        * 1000.0
}

pub const UNLOCK: u32 = 2005;
