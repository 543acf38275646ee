//! The alerting rules (`systemd/prometheus/`) and the Grafana dashboard (`systemd/grafana/`)
//! against the metrics futu-authd really exports: the metric names their PromQL reads, a
//! scrape of a daemon that gave every family it can a sample, and which names it lacks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use futu_auth_proto::{Iface, Market, Scope, TrdSide};
use nix::sys::signal::Signal;
use serde_json::json;

use crate::{deny_reason, key_json, order, token_for, with, DaemonBuilder};

/// Metrics Prometheus makes itself for every target (not futu-authd's).
pub const PROMETHEUS_OWN: &[&str] = &["up"];

/// Metrics the rules and the dashboard read that are being added to futu-authd: a scrape
/// that lacks one is reported (printed), not failed. Remove a name once the daemon exports
/// it; from then on its absence fails.
pub const AWAITED: &[&str] = &[];

/// Counters that have a sample only after a failure (a write, a call to the ledger
/// database), and until then are not in the scrape at all: for them it is enough that
/// `authd/src/metrics.rs` registers the family (the name without `_total`).
pub const ONLY_AFTER_A_FAILURE: &[&str] = &["futu_auth_write_errors_total", "futu_auth_ledger_errors_total"];

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .to_owned()
}

/// `promtool` on PATH, or why there is none (for [`crate::skip`]).
pub fn promtool() -> Result<Command, &'static str> {
    if crate::have_program("promtool") {
        Ok(Command::new("promtool"))
    } else {
        Err("promtool is not installed (Debian package prometheus; `make deps` installs it)")
    }
}

/// Runs `cmd` and fails the test, with what it printed, unless it succeeds.
pub fn expect_success(mut cmd: Command) -> Output {
    let out = cmd.output().expect("run promtool");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A metric an expression reads, and the function it is the first argument of, if any
/// (`rate` in `rate(x[5m])`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricUse {
    /// The metric name as written.
    pub name: String,
    /// The function whose parenthesis directly encloses it.
    pub function: Option<String>,
}

/// PromQL words that are never metric names when no `(` follows them.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "atan2",
];

/// Aggregations: `sum by (x) (…)` puts a grouping between the word and its parenthesis.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Words whose parenthesis holds label names, not expressions.
const GROUPINGS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];

/// The metric names `expr` reads, in order: every identifier outside strings, label
/// matchers (`{…}`), ranges (`[…]`) and groupings (`by (…)`) that is neither a function,
/// an aggregation nor a keyword. Grafana's variables (`$instance`, `$__rate_interval`) are
/// skipped.
pub fn metric_uses(expr: &str) -> Vec<MetricUse> {
    let b = expr.as_bytes();
    let mut uses = Vec::new();
    // The innermost function call open: its name and where its argument starts.
    let mut open_calls: Vec<(String, usize)> = Vec::new();
    let mut depth_names: Vec<Option<String>> = Vec::new();
    let mut i = 0;
    let next_non_space = |mut j: usize| {
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        j
    };
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => i = skip_quoted(b, i),
            b'{' => i = skip_to(b, i, b'}'),
            b'[' => i = skip_to(b, i, b']'),
            b'(' => {
                depth_names.push(None);
                i += 1;
            }
            b')' => {
                if let Some(Some(_)) = depth_names.pop() {
                    open_calls.pop();
                }
                i += 1;
            }
            b'$' => {
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
            }
            c if c.is_ascii_digit() || c == b'.' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                    i += 1;
                }
                let word = &expr[start..i];
                let after = next_non_space(i);
                let paren = after < b.len() && b[after] == b'(';
                if GROUPINGS.contains(&word) && paren {
                    i = skip_to(b, after, b')');
                } else if paren {
                    open_calls.push((word.to_owned(), after + 1));
                    depth_names.push(Some(word.to_owned()));
                    i = after + 1;
                } else if !KEYWORDS.contains(&word) && !AGGREGATIONS.contains(&word) {
                    let function = open_calls
                        .last()
                        .filter(|(_, arg)| expr[*arg..start].trim().is_empty())
                        .map(|(f, _)| f.clone());
                    uses.push(MetricUse {
                        name: word.to_owned(),
                        function,
                    });
                }
            }
            _ => i += 1,
        }
    }
    uses
}

/// The index just past the quote that closes the one at `i`.
fn skip_quoted(b: &[u8], i: usize) -> usize {
    let quote = b[i];
    let mut j = i + 1;
    while j < b.len() && b[j] != quote {
        if b[j] == b'\\' && quote != b'`' {
            j += 1;
        }
        j += 1;
    }
    j + 1
}

/// The index just past the `close` that ends the bracket at `i`, strings skipped.
fn skip_to(b: &[u8], i: usize, close: u8) -> usize {
    let mut j = i + 1;
    while j < b.len() && b[j] != close {
        j = match b[j] {
            b'"' | b'\'' | b'`' => skip_quoted(b, j),
            _ => j + 1,
        };
    }
    j + 1
}

/// The `expr:` of every rule of a Prometheus rules file, as written (a folded block
/// `>-` or `|` joined into one line).
pub fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut exprs = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest.starts_with('>') || rest.starts_with('|') {
            let block: Vec<&str> = lines[n + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || indent(l) > indent(line))
                .map(|l| l.trim())
                .collect();
            exprs.push(block.join(" ").trim().to_owned());
        } else {
            exprs.push(rest.trim_matches(|c| c == '\'' || c == '"').to_owned());
        }
    }
    exprs
}

/// What a scrape of /metrics says: each family's type (`# TYPE`) and every sample name.
#[derive(Debug, Default)]
pub struct Exposition {
    types: BTreeMap<String, String>,
    samples: BTreeSet<String>,
}

impl Exposition {
    /// Reads Prometheus or OpenMetrics text.
    pub fn parse(text: &str) -> Exposition {
        let mut e = Exposition::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                if let Some((name, kind)) = rest.split_once(' ') {
                    e.types.insert(name.to_owned(), kind.trim().to_owned());
                }
            } else if !line.starts_with('#') && !line.is_empty() {
                let end = line.find(['{', ' ']).unwrap_or(line.len());
                e.samples.insert(line[..end].to_owned());
            }
        }
        e
    }

    /// The type of the family a query by `name` reads, when the exposition declares one
    /// that has samples by that name: a gauge (or untyped) family by its own name, a
    /// counter by its name and `_total` (OpenMetrics names the family without it), a
    /// histogram by its name and `_bucket`, `_sum` or `_count`, a summary by `_sum` or
    /// `_count`. `futu_auth_events` (a counter's family name) is no series: `None`.
    pub fn type_of(&self, name: &str) -> Option<&str> {
        if let Some(kind) = self.types.get(name) {
            let whole = match kind.as_str() {
                "gauge" | "unknown" | "untyped" => true,
                // The classic text format declares a counter by its sample's name.
                "counter" => name.ends_with("_total"),
                _ => false,
            };
            if whole {
                return Some(kind);
            }
        }
        let suffixed = |suffix: &str, kinds: &[&str]| {
            let family = name.strip_suffix(suffix)?;
            let kind = self.types.get(family)?;
            kinds.contains(&kind.as_str()).then_some(kind.as_str())
        };
        suffixed("_total", &["counter"])
            .or_else(|| suffixed("_bucket", &["histogram"]))
            .or_else(|| suffixed("_sum", &["histogram", "summary"]))
            .or_else(|| suffixed("_count", &["histogram", "summary"]))
    }

    /// Whether a sample named `name` was scraped.
    pub fn has_sample(&self, name: &str) -> bool {
        self.samples.contains(name)
    }
}

/// What [`check_uses`] found wrong with the metric names of some expressions.
#[derive(Debug, Default)]
pub struct NameReport {
    /// `name (in expr)`: no family of the scrape has samples by that name.
    pub unknown: Vec<String>,
    /// `name (in expr)`: declared, but without a sample although the daemon made one.
    pub without_sample: Vec<String>,
    /// `function(name) (in expr)`: a rate of something that is not a counter.
    pub misused: Vec<String>,
    /// Names listed as awaited that the scrape lacks (they are not failures).
    pub awaited_missing: BTreeSet<String>,
    /// Names listed as awaited that the scrape has already.
    pub awaited_present: BTreeSet<String>,
}

impl NameReport {
    /// Whether nothing is wrong (awaited names aside).
    pub fn is_clean(&self) -> bool {
        self.unknown.is_empty() && self.without_sample.is_empty() && self.misused.is_empty()
    }
}

/// Checks every metric each expression of `exprs` reads against `scrape`. Names in
/// `awaited` (metrics being added) are reported apart when missing, not as failures.
pub fn check_uses(exprs: &[String], scrape: &Exposition, awaited: &[&str]) -> NameReport {
    let mut r = NameReport::default();
    for expr in exprs {
        for u in metric_uses(expr) {
            let name = u.name.as_str();
            if PROMETHEUS_OWN.contains(&name) {
                continue;
            }
            let where_ = format!("{name} (in {expr})");
            let Some(kind) = scrape.type_of(name) else {
                if ONLY_AFTER_A_FAILURE.contains(&name) && registered_counter(name) {
                    continue;
                }
                if awaited.contains(&name) {
                    r.awaited_missing.insert(name.to_owned());
                } else {
                    r.unknown.push(where_);
                }
                continue;
            };
            if awaited.contains(&name) {
                r.awaited_present.insert(name.to_owned());
            }
            if !scrape.has_sample(name) && !awaited.contains(&name) {
                r.without_sample.push(where_.clone());
            }
            let counting = matches!(u.function.as_deref(), Some("rate" | "irate" | "increase"));
            if counting && !matches!(kind, "counter" | "histogram" | "summary") {
                r.misused
                    .push(format!("{}({name}) of a {kind} (in {expr})", u.function.unwrap()));
            }
        }
    }
    r
}

/// Whether `authd/src/metrics.rs` registers `name` less `_total` as a family (its name is
/// a string literal there only where it is registered).
fn registered_counter(name: &str) -> bool {
    let source =
        std::fs::read_to_string(repo_root().join("authd/src/metrics.rs")).expect("read authd/src/metrics.rs");
    name.strip_suffix("_total")
        .is_some_and(|family| source.contains(&format!("\"{family}\",")))
}

/// The /metrics text of a futu-authd that made a sample for every family it can without a
/// failure: allowed and refused checks (a scope, a rate limit, an unknown token), a
/// WebSocket push withheld, a halt, a reload, a bad frame, a closed connection and an admin
/// request; one key (`research`) expires, in 2099.
pub async fn scrape_a_busy_daemon() -> String {
    let research = token_for("monitoring research");
    let bot = token_for("monitoring bot");
    let d = DaemonBuilder::new(&[
        with(
            key_json("research", &research, &["qot:read"]),
            "expires_at",
            json!("2099-01-01T00:00:00Z"),
        ),
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
    assert!(!c
        .check_via(Iface::Grpc, &bot, "Trd_PlaceOrder", sell())
        .await
        .is_allow());
    let unknown = c
        .check(&token_for("monitoring nobody"), "Qot_GetBasicQot", None)
        .await;
    assert_eq!(deny_reason(&unknown), futu_auth_proto::Reason::UnknownKey);
    assert!(!c
        .check_scope(&research, Iface::Ws, Scope::TradeReal)
        .await
        .is_allow());

    let halt = d
        .futucli()
        .args(["halt", "--key", "sim-bot", "--reason", "dashboard test"])
        .output()
        .expect("run futucli halt");
    assert!(
        halt.status.success(),
        "futucli halt: {}",
        String::from_utf8_lossy(&halt.stderr)
    );
    d.signal(Signal::SIGHUP);

    // A frame longer than the protocol allows is refused and closes its connection
    // (bad_frame), and a client that goes away closes its own (client).
    let mut bad = d.client().await;
    bad.write_raw(&u32::MAX.to_be_bytes()).await;
    assert!(matches!(
        bad.recv().await,
        futu_auth_proto::Response::Error { .. }
    ));
    bad.expect_closed().await;
    drop(d.client().await);

    let expected = [
        "futu_auth_halted{",
        "futu_auth_reloads_total{",
        "futu_auth_bad_frames_total{",
        "futu_auth_connections_closed_total{reason=\"client\"}",
        "futu_auth_admin_requests_total{",
        "futu_auth_key_last_used_timestamp_seconds{",
    ];
    let text = d.wait_metrics(|t| expected.iter().all(|e| t.contains(e)));
    for e in expected {
        assert!(text.contains(e), "{e} in\n{text}");
    }
    text
}

/// A real Prometheus (the `prometheus` binary at `program`) with `config`, its data in
/// `data`, listening on a free loopback port: the process, killed when dropped, and the
/// address of its HTTP API.
pub fn start_prometheus(program: &Path, config: &Path, data: &Path) -> (Reaper, std::net::SocketAddr) {
    let port = crate::free_port();
    let child = Command::new(program)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start prometheus");
    let addr = format!("127.0.0.1:{port}").parse().expect("a socket address");
    (Reaper(child), addr)
}

/// Kills a child process when dropped.
pub struct Reaper(pub std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The body of a 200 answer to `GET path`, or `None` (not listening yet, another status).
pub fn try_get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_secs(5);
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<(String, Option<String>)> {
        metric_uses(expr)
            .into_iter()
            .map(|u| (u.name, u.function))
            .collect()
    }

    #[test]
    fn metric_names_are_found_outside_matchers_ranges_groupings_and_strings() {
        let q = r#"histogram_quantile(0.99, sum by (le, instance) (rate(a_bucket{job="x",le=~"b_c"}[$__rate_interval])))
            / on (instance) group_left (key_id) b_total offset 5m > bool 0.5 and ignoring(k) c unless count(d == 1) or vector(0)"#;
        assert_eq!(
            names(q),
            [
                ("a_bucket".to_owned(), Some("rate".to_owned())),
                ("b_total".to_owned(), None),
                ("c".to_owned(), None),
                ("d".to_owned(), Some("count".to_owned())),
            ]
        );
        assert_eq!(
            names("sum(x) by (y) - time() < 7 * 86400"),
            [("x".to_owned(), Some("sum".to_owned()))]
        );
    }

    #[test]
    fn a_name_is_exported_only_with_the_suffix_its_type_gives_samples() {
        let e = Exposition::parse(
            "# TYPE c counter\nc_total{a=\"1\"} 1\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n# TYPE g gauge\ng 1\n# TYPE g_total gauge\n# EOF\n",
        );
        assert_eq!(e.type_of("c_total"), Some("counter"));
        assert_eq!(e.type_of("c"), None, "a counter's family name is no series");
        assert_eq!(e.type_of("h_bucket"), Some("histogram"));
        assert_eq!(e.type_of("h_count"), Some("histogram"));
        assert_eq!(e.type_of("h"), None);
        assert_eq!(e.type_of("g"), Some("gauge"));
        assert_eq!(e.type_of("g_bucket"), None);
        assert_eq!(e.type_of("g_total"), Some("gauge"));
        assert!(e.has_sample("c_total") && !e.has_sample("g_total"));
        let r = check_uses(&["rate(g[5m]) + c_total + missing".to_owned()], &e, &["missing"]);
        assert_eq!(r.misused.len(), 1, "{r:?}");
        assert!(
            r.unknown.is_empty() && r.awaited_missing.contains("missing"),
            "{r:?}"
        );
        let r = check_uses(&["g_total".to_owned()], &e, &[]);
        assert_eq!(r.without_sample.len(), 1, "{r:?}");
    }
}
