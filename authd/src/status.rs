//! The status page: `GET /` on the metrics listener, one HTML page an operator on call
//! reads without JavaScript, refreshing itself every few seconds (like Envoy's admin page
//! or HAProxy's stats page).
//!
//! Everything it shows is computed from the same counters and gauges as `/metrics`: the
//! page parses the daemon's own exposition text ([`Exposition`]), and a sampler keeps what
//! that text said every [`SAMPLE_EVERY`] for the last quarter of an hour ([`History`]), so
//! that "the last minute" and "the last 15 minutes" are differences of counters, as
//! PromQL's `increase()` would work them out. The page names keys by id only: no
//! plaintext, no hash, no prefix of either exists in the metrics it is made from.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the sampler reads the counters.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// The longest window the page shows.
const LONGEST: Duration = Duration::from_secs(15 * 60);

/// How often the page reloads itself, in seconds.
const REFRESH_S: u32 = 5;

/// How many keys the "refused most" table lists.
const TOP_KEYS: usize = 10;

/// Keys expiring within this are listed: the window of the daemon's expiry warnings.
const EXPIRING_WITHIN_S: f64 = crate::expiry::WARN_WITHIN_SECS as f64;

/// A line of the exposition text: the metric's name, its labels, its value.
type Sample = (String, Vec<(String, String)>, f64);

/// One sample of the daemon's exposition text: `name{labels} value` lines.
#[derive(Debug, Default, Clone)]
pub struct Exposition {
    samples: Vec<Sample>,
}

impl Exposition {
    /// Parses OpenMetrics (or Prometheus) text: comment lines are skipped, label values
    /// unescaped (`\\`, `\"`, `\n`); a line that does not parse is skipped.
    pub fn parse(text: &str) -> Exposition {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(parse_line)
            .collect();
        Exposition { samples }
    }

    /// The samples of metric `name` (with its `_total` for a counter), with their labels.
    fn of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a [(String, String)], f64)> + 'a {
        self.samples
            .iter()
            .filter(move |(n, _, _)| n == name)
            .map(|(_, labels, v)| (labels.as_slice(), *v))
    }

    /// The value of the sample of `name` without labels, or with exactly `label=value`.
    fn value(&self, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
        self.of(name)
            .find(|(labels, _)| match label {
                None => labels.is_empty(),
                Some((k, v)) => labels.iter().any(|(lk, lv)| lk == k && lv == v),
            })
            .map(|(_, v)| v)
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let mut labels = Vec::new();
    let rest = if let Some(mut body) = rest.strip_prefix('{') {
        loop {
            body = body.trim_start_matches(',');
            if let Some(after) = body.strip_prefix('}') {
                break after;
            }
            let eq = body.find('=')?;
            let key = body[..eq].trim().to_owned();
            let mut chars = body[eq + 1..].strip_prefix('"')?.char_indices();
            let mut value = String::new();
            let end = loop {
                match chars.next()? {
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (i, '"') => break i,
                    (_, c) => value.push(c),
                }
            };
            labels.push((key, value));
            body = &body[eq + 1 + 1 + end + 1..];
        }
    } else {
        rest
    };
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    Some((name.to_owned(), labels, value))
}

fn label<'a>(labels: &'a [(String, String)], key: &str) -> &'a str {
    labels
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// What the page needs of one sample: decisions by front-end and outcome, and rejects by
/// key and reason (counters, summed over what the page does not show).
#[derive(Debug, Default, Clone)]
struct Counts {
    /// (front-end, outcome) → decisions.
    decisions: HashMap<(String, String), f64>,
    /// (key, reason) → rejects.
    rejects: HashMap<(String, String), f64>,
}

impl Counts {
    fn of(e: &Exposition) -> Counts {
        let mut c = Counts::default();
        for (labels, v) in e.of("futu_auth_events_total") {
            *c.decisions
                .entry((
                    label(labels, "iface").to_owned(),
                    label(labels, "outcome").to_owned(),
                ))
                .or_default() += v;
        }
        for (labels, v) in e.of("futu_auth_limit_rejects_total") {
            *c.rejects
                .entry((
                    label(labels, "key_id").to_owned(),
                    label(labels, "reason").to_owned(),
                ))
                .or_default() += v;
        }
        c
    }

    /// What was counted since `before` (a counter that went down started again from zero).
    fn since(&self, before: &Counts) -> Counts {
        let diff = |now: &HashMap<(String, String), f64>, then: &HashMap<(String, String), f64>| {
            now.iter()
                .map(|(k, v)| {
                    let was = then.get(k).copied().unwrap_or(0.0);
                    (k.clone(), if *v >= was { v - was } else { *v })
                })
                .filter(|(_, v)| *v > 0.0)
                .collect()
        };
        Counts {
            decisions: diff(&self.decisions, &before.decisions),
            rejects: diff(&self.rejects, &before.rejects),
        }
    }
}

/// The counters as they were every [`SAMPLE_EVERY`] for the last quarter of an hour, the
/// first taken when the daemon started (all zero).
#[derive(Debug)]
pub struct History {
    started: Instant,
    started_unix: f64,
    samples: Mutex<VecDeque<(Instant, Counts)>>,
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

impl History {
    /// A history starting now, with the counters at zero.
    pub fn new() -> History {
        let mut samples = VecDeque::new();
        samples.push_back((Instant::now(), Counts::default()));
        History {
            started: Instant::now(),
            started_unix: unix_now(),
            samples: Mutex::new(samples),
        }
    }

    /// Notes what `exposition` says now, and forgets what is older than the longest window.
    pub fn sample(&self, exposition: &Exposition) {
        let now = Instant::now();
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples.push_back((now, Counts::of(exposition)));
        // Keep one sample at least as old as the longest window.
        while samples.len() > 2
            && samples
                .get(1)
                .is_some_and(|(at, _)| now.duration_since(*at) >= LONGEST)
        {
            samples.pop_front();
        }
    }

    /// The counts since the newest sample at least `window` old (or the oldest there is),
    /// and how long that covers.
    fn within(&self, now: &Counts, window: Duration) -> (Counts, Duration) {
        let at = Instant::now();
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let base = samples
            .iter()
            .rev()
            .find(|(t, _)| at.duration_since(*t) >= window)
            .or_else(|| samples.front());
        match base {
            Some((t, c)) => (now.since(c), at.duration_since(*t)),
            None => (now.clone(), at.duration_since(self.started)),
        }
    }
}

/// Now, in Unix seconds.
pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `3d 4h`, `2h 5m`, `40s`: as futucli and the expiry warnings say a span.
fn span(secs: f64) -> String {
    futu_auth_rules::clock::span_in_words(secs.max(0.0) as i64)
}

/// A Unix time as `2026-12-06T07:30:00Z`.
fn utc(unix: f64) -> String {
    jiff::Timestamp::from_second(unix as i64)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| format!("{unix:.0}"))
}

fn yes_no(v: Option<f64>, good: &str, bad: &str) -> String {
    match v {
        Some(x) if x >= 1.0 => format!("<span class=ok>{good}</span>"),
        Some(_) => format!("<span class=bad>{bad}</span>"),
        None => "<span class=dim>not reported</span>".to_owned(),
    }
}

/// The page, from the exposition text of now and the history.
pub fn render(text: &str, history: &History) -> String {
    let e = Exposition::parse(text);
    let now_counts = Counts::of(&e);
    let now = unix_now();
    let mut h = String::with_capacity(8 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>\
         <meta http-equiv=refresh content={REFRESH_S}>\
         <title>futu-authd status</title><style>\
         body{{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}}\
         table{{border-collapse:collapse;margin:.4em 0 1.2em}}\
         th,td{{border:1px solid #ccc;padding:.25em .6em;text-align:left}}\
         td.n{{text-align:right}}.ok{{color:#187a2f}}.bad{{color:#b00020;font-weight:bold}}\
         .dim{{color:#888}}h2{{font-size:1.1em;margin-top:1.2em}}\
         </style></head><body>\n<h1>futu-authd {}</h1>\n<p id=uptime>up {} (since {}); \
         this page at {}, refreshing every {REFRESH_S} s. The figures are those of \
         <a href=\"/metrics\">/metrics</a>.</p>\n",
        esc(env!("CARGO_PKG_VERSION")),
        span(history.started.elapsed().as_secs_f64()),
        utc(history.started_unix),
        utc(now),
    );

    // Keys and the stores.
    let keys = e.value("futu_auth_keys_loaded", None);
    let age = e.value("futu_auth_keys_snapshot_age_seconds", None);
    let _ = write!(
        h,
        "<h2>Keys and stores</h2>\n<table id=health>\
         <tr><th>keys in service</th><td class=n>{}</td></tr>\
         <tr><th>key store</th><td>{}; snapshot confirmed {}</td></tr>\
         <tr><th>ledger</th><td>{}; last write {}</td></tr>\
         <tr><th>audit file</th><td>{}</td></tr></table>\n",
        keys.map_or("?".to_owned(), |k| format!("{k:.0}")),
        yes_no(
            e.value("futu_auth_keys_store_up", None),
            "current",
            "NOT CONFIRMED CURRENT"
        ),
        age.map_or("?".to_owned(), |a| format!("{} ago", span(a))),
        yes_no(e.value("futu_auth_ledger_up", None), "answering", "UNREACHABLE"),
        yes_no(
            e.value("futu_auth_file_writable", Some(("file", "ledger"))),
            "worked",
            "FAILED"
        ),
        yes_no(
            e.value("futu_auth_file_writable", Some(("file", "audit"))),
            "writable",
            "NOT WRITABLE"
        ),
    );

    // Decisions in the last minute.
    let (minute, covered) = history.within(&now_counts, Duration::from_secs(60));
    let mut outcomes: Vec<&str> = vec!["allow", "reject"];
    for (_, o) in minute.decisions.keys() {
        if !outcomes.contains(&o.as_str()) {
            outcomes.push(o);
        }
    }
    let mut by_iface: BTreeMap<&str, HashMap<&str, f64>> = BTreeMap::new();
    for ((iface, outcome), v) in &minute.decisions {
        *by_iface.entry(iface).or_default().entry(outcome).or_default() += v;
    }
    let _ = write!(
        h,
        "<h2>Decisions in the last minute</h2>\n<p class=dim>over the last {}</p>\
         <table id=decisions><tr><th>front-end</th>",
        span(covered.as_secs_f64())
    );
    for o in &outcomes {
        let _ = write!(h, "<th>{}</th>", esc(o));
    }
    h.push_str("</tr>");
    if by_iface.is_empty() {
        let _ = write!(h, "<tr><td colspan={}>none</td></tr>", outcomes.len() + 1);
    }
    for (iface, counts) in &by_iface {
        let _ = write!(h, "<tr><td>{}</td>", esc(iface));
        for o in &outcomes {
            let _ = write!(h, "<td class=n>{:.0}</td>", counts.get(o).copied().unwrap_or(0.0));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>\n");

    // The keys refused most in the last 15 minutes.
    let (quarter, covered) = history.within(&now_counts, LONGEST);
    /// A key's refusals: their number, and by reason.
    type Refused<'a> = (f64, Vec<(&'a str, f64)>);
    let mut per_key: HashMap<&str, Refused<'_>> = HashMap::new();
    for ((key, reason), v) in &quarter.rejects {
        let e = per_key.entry(key).or_default();
        e.0 += v;
        e.1.push((reason, *v));
    }
    let mut top: Vec<_> = per_key.into_iter().collect();
    top.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0).then(a.0.cmp(b.0)));
    let _ = write!(
        h,
        "<h2>Keys refused most in the last 15 minutes</h2>\n<p class=dim>over the last {}</p>\
         <table id=refused><tr><th>key</th><th>refused</th><th>reasons</th></tr>",
        span(covered.as_secs_f64())
    );
    if top.is_empty() {
        h.push_str("<tr><td colspan=3>none</td></tr>");
    }
    for (key, (total, mut reasons)) in top.into_iter().take(TOP_KEYS) {
        reasons.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        let reasons: Vec<String> = reasons
            .iter()
            .map(|(r, n)| format!("{} {n:.0}", esc(r)))
            .collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=n>{total:.0}</td><td>{}</td></tr>",
            esc(key),
            reasons.join(", ")
        );
    }
    h.push_str("</table>\n");

    // Halts.
    let mut halted: Vec<&str> = e
        .of("futu_auth_halted")
        .filter(|(_, v)| *v >= 1.0)
        .map(|(labels, _)| label(labels, "key_id"))
        .collect();
    halted.sort_unstable();
    h.push_str("<h2>Trading halted</h2>\n<table id=halted><tr><th>key</th></tr>");
    if halted.is_empty() {
        h.push_str("<tr><td>none</td></tr>");
    }
    for k in halted {
        let shown = if k == "*" {
            "every key (*)".to_owned()
        } else {
            esc(k)
        };
        let _ = write!(h, "<tr><td class=bad>{shown}</td></tr>");
    }
    h.push_str("</table>\n");

    // Keys expiring within 7 days.
    let mut expiring: Vec<(&str, f64)> = e
        .of("futu_auth_key_expires_timestamp_seconds")
        .filter(|(_, at)| at - now <= EXPIRING_WITHIN_S)
        .map(|(labels, at)| (label(labels, "key_id"), at))
        .collect();
    expiring.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(b.0)));
    h.push_str(
        "<h2>Keys expiring within 7 days</h2>\n<table id=expiring><tr><th>key</th><th>expires</th><th>left</th></tr>",
    );
    if expiring.is_empty() {
        h.push_str("<tr><td colspan=3>none</td></tr>");
    }
    for (k, at) in expiring {
        let left = if at <= now {
            "<span class=bad>expired</span>".to_owned()
        } else {
            span(at - now)
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{left}</td></tr>",
            esc(k),
            utc(at)
        );
    }
    h.push_str("</table>\n");

    // The last reload.
    let ok = e
        .value("futu_auth_reloads_total", Some(("result", "ok")))
        .unwrap_or(0.0);
    let failed = e
        .value("futu_auth_reloads_total", Some(("result", "error")))
        .unwrap_or(0.0);
    let last = e.value("futu_auth_last_reload_timestamp_seconds", None);
    let last_ok = e.value("futu_auth_last_reload_successful", None);
    let _ = write!(
        h,
        "<h2>Reloads</h2>\n<table id=reloads>\
         <tr><th>last reload</th><td>{}</td></tr>\
         <tr><th>since start</th><td>{ok:.0} ok, {failed:.0} failed</td></tr></table>\n",
        match (last, last_ok) {
            (Some(at), Some(r)) if at > 0.0 => format!(
                "{} ({} ago): {}",
                utc(at),
                span(now - at),
                yes_no(Some(r), "ok", "FAILED, the keys before it stay in service")
            ),
            _ => "none since start".to_owned(),
        }
    );
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP futu_auth_events Decisions\n# TYPE futu_auth_events counter\n\
        futu_auth_events_total{iface=\"rest\",outcome=\"allow\",key_id=\"bot\"} 5\n\
        futu_auth_events_total{iface=\"rest\",outcome=\"reject\",key_id=\"bot\"} 3\n\
        futu_auth_events_total{iface=\"grpc\",outcome=\"reject\",key_id=\"<b>\"} 2\n\
        futu_auth_limit_rejects_total{iface=\"rest\",key_id=\"bot\",reason=\"rate\"} 3\n\
        futu_auth_limit_rejects_total{iface=\"grpc\",key_id=\"<b>\",reason=\"scope\"} 2\n\
        futu_auth_keys_loaded 7\nfutu_auth_file_writable{file=\"audit\"} 0\n\
        futu_auth_halted{key_id=\"*\"} 1\n# EOF\n";

    #[test]
    fn the_exposition_is_read_with_its_labels_unescaped() {
        let e = Exposition::parse("m{a=\"x\\\"y\\\\z\",b=\"\"} 2.5\nn 3\n# EOF\nbroken{a=\"x} 1\n");
        assert_eq!(e.value("m", Some(("a", "x\"y\\z"))), Some(2.5));
        assert_eq!(e.value("n", None), Some(3.0));
        assert_eq!(e.samples.len(), 2);
    }

    #[test]
    fn the_page_shows_the_figures_and_escapes_every_name() {
        let page = render(TEXT, &History::new());
        assert!(page.contains("<td class=n>7</td>"), "{page}");
        assert!(page.contains("NOT WRITABLE"), "{page}");
        assert!(page.contains("every key (*)"), "{page}");
        assert!(
            page.contains("<td>bot</td><td class=n>3</td><td>rate 3</td>"),
            "{page}"
        );
        assert!(page.contains("&lt;b&gt;"), "{page}");
        assert!(!page.contains("<b>"), "{page}");
    }

    #[test]
    fn windows_count_what_happened_since_their_sample() {
        let history = History::new();
        history.sample(&Exposition::parse(TEXT));
        let later = TEXT.replace("reason=\"rate\"} 3", "reason=\"rate\"} 10");
        let (counts, _) = history.within(&Counts::of(&Exposition::parse(&later)), Duration::ZERO);
        assert_eq!(counts.rejects.get(&("bot".into(), "rate".into())), Some(&7.0));
        assert_eq!(counts.rejects.get(&("<b>".into(), "scope".into())), None);
    }
}
