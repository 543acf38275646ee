//! End-to-end tests of `futucli replay`: a real futu-authd records an audit file from real
//! checks (orders of different values and symbols, a dry run, a release, a daily cap and a
//! rate limit reached, reads, scope checks, an unknown token), then futucli decides them
//! again against candidate keys files.
//!
//! What the candidate should change is worked out here, independently of futu-authd's code,
//! by [`Model`]: a few lines of the rules for the limits these keys use, run over the
//! records as the daemon wrote them (their times, so the 60 s window and the UTC day are
//! the records' own). The limits that follow orders — the accounts, the price collar, the
//! duplicate window and the open orders, with the order events that free them — are
//! recorded and modelled apart ([`record_risk`], [`RiskModel`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use futu_auth_proto::{
    Decision, Iface, Market, OrderEvent, OrderEventKind, OrderEventOutcome, Request, Response, Scope, TrdSide,
};
use futu_authd_tests::{
    decision_of, deny_reason, futucli_command, key_json, keys_json, order, this_fingerprint, token_for, with,
    write_private, Client, Daemon, DaemonBuilder, Run,
};
use jiff::Timestamp;
use serde_json::{json, Value};

// ---- the keys --------------------------------------------------------------------------

/// One key's limits, as keys.json has them and as [`Model`] applies them.
#[derive(Debug, Clone)]
struct Limits {
    scopes: Vec<&'static str>,
    symbols: Option<Vec<&'static str>>,
    max_order_value: Option<f64>,
    max_daily_value: Option<f64>,
    max_orders_per_minute: Option<usize>,
    machines: Option<Vec<String>>,
}

impl Limits {
    fn json(&self, id: &str) -> Value {
        let mut k = key_json(id, &token_for(id), &self.scopes);
        k = with(
            k,
            "limits",
            json!({
                "allowed_symbols": self.symbols,
                "max_order_value": self.max_order_value,
                "max_daily_value": self.max_daily_value,
                "max_orders_per_minute": self.max_orders_per_minute,
            }),
        );
        with(k, "allowed_machines", json!(self.machines))
    }
}

/// `bot` (symbols, value caps, a daily cap), `fast` (a rate) and `reader` (reads, bound to
/// this host).
fn original_keys() -> BTreeMap<&'static str, Limits> {
    BTreeMap::from([
        (
            "bot",
            Limits {
                scopes: vec!["qot:read", "trade:simulate"],
                symbols: Some(vec!["HK.00700", "HK.09988"]),
                max_order_value: Some(10_000.0),
                max_daily_value: Some(13_000.0),
                max_orders_per_minute: None,
                machines: None,
            },
        ),
        (
            "fast",
            Limits {
                scopes: vec!["trade:simulate"],
                symbols: None,
                max_order_value: None,
                max_daily_value: None,
                max_orders_per_minute: Some(3),
                machines: None,
            },
        ),
        (
            "reader",
            Limits {
                scopes: vec!["qot:read", "acc:read"],
                symbols: None,
                max_order_value: None,
                max_daily_value: None,
                max_orders_per_minute: None,
                machines: Some(vec![this_fingerprint()]),
            },
        ),
    ])
}

/// Tighter: bot loses HK.09988 and gets smaller caps, fast 2 a minute, reader no acc:read.
fn tightened_keys() -> BTreeMap<&'static str, Limits> {
    let mut k = original_keys();
    let bot = k.get_mut("bot").unwrap();
    bot.symbols = Some(vec!["HK.00700"]);
    bot.max_order_value = Some(6_000.0);
    bot.max_daily_value = Some(5_500.0);
    k.get_mut("fast").unwrap().max_orders_per_minute = Some(2);
    k.get_mut("reader").unwrap().scopes = vec!["qot:read"];
    k
}

fn keys_text(keys: &BTreeMap<&'static str, Limits>) -> String {
    let records: Vec<Value> = keys.iter().map(|(id, l)| l.json(id)).collect();
    keys_json(&records)
}

// ---- recording -------------------------------------------------------------------------

/// A daemon that has answered the scenario; its audit file holds every decision.
struct Recorded {
    daemon: Daemon,
}

impl Recorded {
    fn audit(&self) -> PathBuf {
        self.daemon.audit_path()
    }

    fn records(&self) -> Vec<Value> {
        self.daemon.audit_records()
    }

    /// Writes a candidate keys file next to the audit file.
    fn candidate(&self, name: &str, keys: &BTreeMap<&'static str, Limits>) -> PathBuf {
        let path = self.daemon.dir().join(name);
        write_private(&path, &keys_text(keys));
        path
    }

    /// Runs `futucli replay` on the audit file with `args`, in UTC, as this host.
    fn replay(&self, keys: &Path, args: &[&str]) -> Run {
        let out = futucli_command()
            .env("TZ", "UTC")
            .arg("--machine-id-file")
            .arg(self.daemon.dir().join("machine-id"))
            .arg("replay")
            .arg("--audit")
            .arg(self.audit())
            .arg("--keys")
            .arg(keys)
            .args(args)
            .output()
            .expect("run futucli");
        Run::from(out)
    }

    /// `futucli replay --json`, which must succeed.
    fn replay_json(&self, keys: &Path, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let run = self.replay(keys, &all);
        assert_eq!(run.code, Some(0), "futucli replay failed: {run:#?}");
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("--json is not JSON ({e}): {run:#?}"))
    }
}

async fn dry_run(c: &mut Client, token: &str, o: futu_auth_proto::Order) -> Decision {
    let mut req = c.check_request(Iface::Rest, token, "Trd_PlaceOrder", Some(o));
    req.dry_run = true;
    let id = req.request_id;
    decision_of(id, c.request(Request::Check(req)).await)
}

fn ticket(d: &Decision) -> u64 {
    match d {
        Decision::Allow { ticket: Some(t), .. } => *t,
        other => panic!("expected an allowed order with a ticket, got {other:?}"),
    }
}

fn reason(d: &Decision) -> &'static str {
    deny_reason(d).as_str()
}

/// Starts futu-authd with the original keys and sends the scenario through it, checking
/// the daemon's own answers on the way (the replay is compared with what it wrote).
async fn record() -> Recorded {
    let daemon = DaemonBuilder::with_keys_text(keys_text(&original_keys()))
        .env("TZ", "UTC")
        .start();
    let mut c = daemon.client().await;
    let (bot, fast, reader) = (token_for("bot"), token_for("fast"), token_for("reader"));
    let buy = |symbol: &str, qty: f64, price: f64| order(Market::HK, symbol, TrdSide::BUY, qty, Some(price));
    let place = "Trd_PlaceOrder";

    // bot: 1 000, a dry run of 5 000, 8 000 on HK.09988, one above the cap, one off the
    // list, a release of the first, 5 000 (13 000 only thanks to the release), then the
    // daily cap reached.
    let first = c.check(&bot, place, Some(buy("HK.00700", 10.0, 100.0))).await;
    let first_ticket = ticket(&first);
    assert!(dry_run(&mut c, &bot, buy("HK.00700", 50.0, 100.0))
        .await
        .is_allow());
    assert!(c
        .check(&bot, place, Some(buy("HK.09988", 20.0, 400.0)))
        .await
        .is_allow());
    assert_eq!(
        reason(&c.check(&bot, place, Some(buy("HK.00700", 100.0, 150.0))).await),
        "order_value"
    );
    assert_eq!(
        reason(&c.check(&bot, place, Some(buy("HK.00005", 1.0, 10.0))).await),
        "symbol"
    );
    let id = c.next_id();
    match c
        .request(Request::Release {
            request_id: id,
            ticket: first_ticket,
        })
        .await
    {
        Response::Released { .. } => {}
        other => panic!("expected the release made, got {other:?}"),
    }
    assert!(c
        .check(&bot, place, Some(buy("HK.00700", 50.0, 100.0)))
        .await
        .is_allow());
    assert_eq!(
        reason(&c.check(&bot, place, Some(buy("HK.00700", 1.0, 100.0))).await),
        "daily_value"
    );
    assert!(c.check(&bot, "Qot_GetBasicQot", None).await.is_allow());

    // fast: five orders at once against 3 a minute.
    let mut fast_answers = Vec::new();
    for _ in 0..5 {
        fast_answers.push(c.check(&fast, place, Some(buy("HK.00700", 1.0, 10.0))).await);
    }
    assert!(
        fast_answers[..3].iter().all(Decision::is_allow),
        "{fast_answers:?}"
    );
    assert!(
        fast_answers[3..].iter().all(|d| reason(d) == "rate"),
        "{fast_answers:?}"
    );

    // reader: reads, scope checks, an order it may not place.
    assert!(c.check(&reader, "Qot_GetBasicQot", None).await.is_allow());
    assert!(c.check(&reader, "Trd_GetFunds", None).await.is_allow());
    assert!(c.check_scope(&reader, Iface::Ws, Scope::AccRead).await.is_allow());
    assert_eq!(
        reason(&c.check_scope(&reader, Iface::Ws, Scope::TradeReal).await),
        "scope"
    );
    assert_eq!(
        reason(&c.check(&reader, place, Some(buy("HK.00700", 1.0, 10.0))).await),
        "scope"
    );

    // A token no key has.
    assert_eq!(
        reason(&c.check(&token_for("nobody"), "Qot_GetBasicQot", None).await),
        "unknown_key"
    );
    Recorded { daemon }
}

// ---- the model -------------------------------------------------------------------------

/// One decision the candidate changes: (key, from, to, request id, ts).
type Change = (String, String, String, u64, Timestamp);

/// The rules for the limits [`Limits`] has, over the audit's records.
struct Model<'a> {
    keys: &'a BTreeMap<&'static str, Limits>,
    /// The fingerprint bindings are judged for.
    machine: String,
    /// Per key: times (ns) of the orders allowed, and value used per UTC day.
    allowed: HashMap<String, Vec<i128>>,
    used: HashMap<(String, i64), f64>,
    /// The daemon's ticket → (key, day, value) of the candidate's charge.
    tickets: HashMap<u64, (String, i64, f64)>,
}

fn label(outcome: &str, reason: Option<&str>) -> String {
    match reason {
        Some(r) => format!("{outcome} {r}"),
        None => outcome.to_owned(),
    }
}

impl Model<'_> {
    /// The changes among records with a time in `since..until`; every record before
    /// `until` counts toward the limits.
    fn changes(
        keys: &BTreeMap<&'static str, Limits>,
        machine: &str,
        records: &[Value],
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Vec<Change> {
        let mut m = Model {
            keys,
            machine: machine.to_owned(),
            allowed: HashMap::new(),
            used: HashMap::new(),
            tickets: HashMap::new(),
        };
        let mut out = Vec::new();
        for r in records {
            let ts: Timestamp = r["ts"].as_str().unwrap().parse().unwrap();
            if until.is_some_and(|u| ts >= u) {
                continue;
            }
            let kind = r["kind"].as_str().unwrap();
            if kind == "release" {
                if let Some((key, day, value)) = r["ticket"].as_u64().and_then(|t| m.tickets.remove(&t)) {
                    *m.used.get_mut(&(key, day)).unwrap() -= value;
                }
                continue;
            }
            let Some(key) = r["key_id"].as_str() else { continue };
            let to = m.decide(r, key, ts);
            let from = label(r["outcome"].as_str().unwrap(), r["reason"].as_str());
            if since.is_none_or(|s| ts >= s) && from != to {
                out.push((key.to_owned(), from, to, r["request_id"].as_u64().unwrap(), ts));
            }
        }
        out
    }

    fn decide(&mut self, r: &Value, key: &str, ts: Timestamp) -> String {
        let reject = |why: &str| label("reject", Some(why));
        let l = &self.keys[key];
        if l.machines
            .as_ref()
            .is_some_and(|list| !list.contains(&self.machine))
        {
            return reject("machine");
        }
        let endpoint = r["endpoint"].as_str().unwrap();
        let needs = match (r["kind"].as_str().unwrap(), endpoint) {
            ("check_scope", s) => s,
            (_, "Qot_GetBasicQot") => "qot:read",
            (_, "Trd_GetFunds") => "acc:read",
            (_, "Trd_PlaceOrder") => "trade:simulate",
            (_, other) => panic!("the scenario sends no {other}"),
        };
        if !l.scopes.contains(&needs) {
            return reject("scope");
        }
        let o = &r["order"];
        if o.is_null() {
            return "allow".into();
        }
        if l.symbols
            .as_ref()
            .is_some_and(|s| !s.contains(&o["symbol"].as_str().unwrap()))
        {
            return reject("symbol");
        }
        let value = o["qty"].as_f64().unwrap() * o["price"].as_f64().unwrap();
        if l.max_order_value.is_some_and(|cap| value > cap) {
            return reject("order_value");
        }
        let ns = ts.as_nanosecond();
        let times = self.allowed.entry(key.to_owned()).or_default();
        if let Some(max) = l.max_orders_per_minute {
            if times.iter().filter(|t| ns - **t < 60_000_000_000).count() >= max {
                return reject("rate");
            }
        }
        let day = ts.as_second().div_euclid(86_400);
        let used = self.used.entry((key.to_owned(), day)).or_default();
        if l.max_daily_value.is_some_and(|cap| *used + value > cap) {
            return reject("daily_value");
        }
        if !r["dry_run"].as_bool().unwrap() {
            times.push(ns);
            *used += value;
            if let Some(t) = r["ticket"].as_u64() {
                self.tickets.insert(t, (key.to_owned(), day, value));
            }
        }
        "allow".into()
    }
}

/// Asserts the report's changes are exactly `expected`: each group's count, and its
/// examples the group's first three in file order.
fn assert_changes(report: &Value, expected: &[Change]) {
    let mut groups: BTreeMap<(String, String, String), Vec<u64>> = BTreeMap::new();
    for (key, from, to, id, _) in expected {
        groups
            .entry((key.clone(), from.clone(), to.clone()))
            .or_default()
            .push(*id);
    }
    assert_eq!(
        report["records"]["changed"].as_u64().unwrap(),
        expected.len() as u64,
        "{report:#}"
    );
    let got: BTreeMap<(String, String, String), (u64, Vec<u64>)> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let side = |s: &Value| label(s["outcome"].as_str().unwrap(), s["reason"].as_str());
            (
                (
                    g["key_id"].as_str().unwrap().to_owned(),
                    side(&g["from"]),
                    side(&g["to"]),
                ),
                (
                    g["count"].as_u64().unwrap(),
                    g["examples"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| e["request_id"].as_u64().unwrap())
                        .collect(),
                ),
            )
        })
        .collect();
    let want: BTreeMap<_, _> = groups
        .into_iter()
        .map(|(k, ids)| (k, (ids.len() as u64, ids.into_iter().take(3).collect::<Vec<_>>())))
        .collect();
    assert_eq!(got, want, "{report:#}");
}

fn checks_with_key(records: &[Value]) -> u64 {
    records
        .iter()
        .filter(|r| r["kind"] != "admin" && r["kind"] != "release" && !r["key_id"].is_null())
        .count() as u64
}

// ---- the tests -------------------------------------------------------------------------

#[tokio::test]
async fn replay_against_the_same_keys_changes_no_decision() {
    let rec = record().await;
    let records = rec.records();
    let keys = rec.candidate("same.json", &original_keys());

    let report = rec.replay_json(&keys, &[]);
    assert_eq!(
        report["records"]["read"].as_u64().unwrap(),
        records.len() as u64,
        "{report:#}"
    );
    assert_eq!(
        report["records"]["replayed"].as_u64().unwrap(),
        checks_with_key(&records)
    );
    assert_eq!(report["records"]["unchanged"], report["records"]["replayed"]);
    assert_eq!(report["records"]["changed"], 0, "{report:#}");
    assert_eq!(report["records"]["skipped"]["no_key_id"], 1);
    // The release refunded the first order, or the fourth order of bot would be refused.
    assert_eq!(report["records"]["releases"], json!({"read": 1, "refunded": 1}));
    assert_eq!(report["changes"], json!([]));
    assert_eq!(report["machine"], this_fingerprint());
    assert_eq!(report["time_zone"], "UTC");

    let human = rec.replay(&keys, &[]);
    assert_eq!(human.code, Some(0), "{human:#?}");
    assert!(
        human.stdout.contains("✅ No decision would change"),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains(&format!(
            "records: {} read, {} replayed ({} unchanged, 0 changed)",
            records.len(),
            checks_with_key(&records),
            checks_with_key(&records)
        )),
        "{}",
        human.stdout
    );
}

#[tokio::test]
async fn tightened_limits_refuse_exactly_what_they_would_have_refused() {
    let rec = record().await;
    let records = rec.records();
    let tight = tightened_keys();
    let keys = rec.candidate("tight.json", &tight);
    let expected = Model::changes(&tight, &this_fingerprint(), &records, None, None);
    // What the scenario was made to show (the model works it out from the records).
    let kinds: Vec<(&str, &str, &str)> = expected
        .iter()
        .map(|(k, f, t, _, _)| (k.as_str(), f.as_str(), t.as_str()))
        .collect();
    for want in [
        ("bot", "allow", "reject daily_value"), // the dry run: 1 000 + 5 000 > 5 500
        ("bot", "allow", "reject symbol"),      // HK.09988
        ("bot", "reject daily_value", "allow"), // room left by the order refused above
        ("fast", "allow", "reject rate"),       // the third of the minute
        ("reader", "allow", "reject scope"),    // acc:read gone
    ] {
        assert!(kinds.contains(&want), "{want:?} not in {kinds:?}");
    }

    let report = rec.replay_json(&keys, &[]);
    assert_changes(&report, &expected);
    assert_eq!(
        report["records"]["unchanged"].as_u64().unwrap(),
        checks_with_key(&records) - expected.len() as u64
    );
    let example = &report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key_id"] == "bot" && g["to"]["reason"] == "symbol")
        .unwrap()["examples"][0];
    assert_eq!(example["endpoint"], "Trd_PlaceOrder");
    assert_eq!(example["order"]["symbol"], "HK.09988");
    assert_eq!(example["from"]["outcome"], "allow");
    assert_eq!(
        example["to"]["detail"],
        "symbol HK.09988 is not in allowed_symbols"
    );

    // The same, for a person: a heading per key with its count, a line per transition.
    let human = rec.replay(&keys, &[]);
    assert_eq!(human.code, Some(0), "{human:#?}");
    let out = &human.stdout;
    assert!(
        out.contains(&format!("⚠️  {} decisions would change", expected.len())),
        "{out}"
    );
    for key in ["bot", "fast", "reader"] {
        let n = expected.iter().filter(|c| c.0 == key).count();
        assert!(out.contains(&format!("\n{key}: {n}\n")), "{key}: {n} in\n{out}");
    }
    assert!(out.contains("  allow → reject symbol: 1\n"), "{out}");
    assert!(out.contains("  reject daily_value → allow: 1\n"), "{out}");
    assert!(
        out.contains("      now: symbol HK.09988 is not in allowed_symbols"),
        "{out}"
    );
    assert!(out.contains("Trd_PlaceOrder HK.09988 BUY 20 × 400"), "{out}");
}

#[tokio::test]
async fn a_loosened_rate_turns_the_rate_refusals_into_allows() {
    let rec = record().await;
    let records = rec.records();
    let mut loose = original_keys();
    loose.get_mut("fast").unwrap().max_orders_per_minute = Some(100);
    let keys = rec.candidate("loose.json", &loose);
    let rate_denies: Vec<u64> = records
        .iter()
        .filter(|r| r["reason"] == "rate")
        .map(|r| r["request_id"].as_u64().unwrap())
        .collect();
    assert_eq!(rate_denies.len(), 2, "the scenario's two rate refusals");

    let report = rec.replay_json(&keys, &[]);
    assert_changes(
        &report,
        &Model::changes(&loose, &this_fingerprint(), &records, None, None),
    );
    assert_eq!(report["changes"].as_array().unwrap().len(), 1, "{report:#}");
    let g = &report["changes"][0];
    assert_eq!(g["key_id"], "fast");
    assert_eq!(g["from"], json!({"outcome": "reject", "reason": "rate"}));
    assert_eq!(g["to"], json!({"outcome": "allow", "reason": null}));
    let ids: Vec<u64> = g["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["request_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, rate_denies);
    assert!(g["examples"][0]["from"]["detail"]
        .as_str()
        .unwrap()
        .ends_with("max_orders_per_minute is 3"));
}

#[tokio::test]
async fn since_and_until_compare_only_their_range_with_the_counters_of_all_before() {
    let rec = record().await;
    let records = rec.records();
    let tight = tightened_keys();
    let keys = rec.candidate("tight.json", &tight);
    let ts_of = |pred: &dyn Fn(&Value) -> bool| -> Timestamp {
        records.iter().find(|r| pred(r)).unwrap()["ts"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    // From fast's third order (refused at 2 a minute only because its first two count)
    // until reader's first check.
    let fast: Vec<&Value> = records.iter().filter(|r| r["key_id"] == "fast").collect();
    let since: Timestamp = fast[2]["ts"].as_str().unwrap().parse().unwrap();
    let until = ts_of(&|r| r["key_id"] == "reader");
    let expected = Model::changes(&tight, &this_fingerprint(), &records, Some(since), Some(until));
    assert!(
        expected.iter().any(|c| c.0 == "fast" && c.2 == "reject rate"),
        "{expected:?}"
    );
    assert!(expected.iter().all(|c| c.4 >= since && c.4 < until));

    let (s, u) = (since.to_string(), until.to_string());
    let report = rec.replay_json(&keys, &["--since", &s, "--until", &u]);
    assert_changes(&report, &expected);
    let in_range = |r: &&Value| {
        let ts: Timestamp = r["ts"].as_str().unwrap().parse().unwrap();
        ts >= since && ts < until
    };
    let keyed: Vec<Value> = records
        .iter()
        .filter(|r| r["kind"] != "release" && !r["key_id"].is_null())
        .cloned()
        .collect();
    assert_eq!(
        report["records"]["replayed"].as_u64().unwrap(),
        keyed.iter().filter(in_range).count() as u64
    );
    let before = keyed
        .iter()
        .filter(|r| r["ts"].as_str().unwrap().parse::<Timestamp>().unwrap() < since)
        .count() as u64;
    assert_eq!(
        report["records"]["skipped"]["before_since"].as_u64().unwrap(),
        before
    );
    assert!(report["records"]["skipped"]["after_until"].as_u64().unwrap() >= 5);
    assert_eq!(report["since"], json!(since));

    // A date is local midnight: from the day before, everything is compared.
    let day_before = (since - jiff::SignedDuration::from_hours(24))
        .strftime("%Y-%m-%d")
        .to_string();
    let all = rec.replay_json(&keys, &["--since", &day_before]);
    assert_eq!(all["records"]["changed"].as_u64().unwrap(), {
        Model::changes(&tight, &this_fingerprint(), &records, None, None).len() as u64
    });
    let bad = rec.replay(&keys, &["--since", "last tuesday"]);
    assert_eq!(bad.code, Some(1), "{bad:#?}");
    assert!(
        bad.stderr
            .contains("--since \"last tuesday\": expected an RFC 3339 time"),
        "{bad:#?}"
    );
}

#[tokio::test]
async fn the_binding_is_judged_for_the_machine_named() {
    let rec = record().await;
    let records = rec.records();
    let keys = rec.candidate("same.json", &original_keys());
    let other = "fp_0123456789abcdef";
    let expected = Model::changes(&original_keys(), other, &records, None, None);
    assert!(
        !expected.is_empty()
            && expected
                .iter()
                .all(|c| c.0 == "reader" && c.2 == "reject machine")
    );
    let report = rec.replay_json(&keys, &["--machine", other]);
    assert_eq!(report["machine"], other);
    assert_changes(&report, &expected);
}

#[tokio::test]
async fn a_line_that_is_not_an_audit_record_is_an_error_with_its_line_number() {
    let rec = record().await;
    let keys = rec.candidate("same.json", &original_keys());
    let text = std::fs::read_to_string(rec.audit()).unwrap();
    let n = text.lines().count();
    let broken = rec.daemon.dir().join("broken.jsonl");
    std::fs::write(
        &broken,
        format!("{text}{{\"ts\": \"2026-11-23T09:30:00Z\", \"kind\": \"chec\n{text}"),
    )
    .unwrap();
    let out = futucli_command()
        .arg("replay")
        .arg("--audit")
        .arg(&broken)
        .arg("--keys")
        .arg(&keys)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("broken.jsonl:{}: not JSON", n + 1)),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no report after a broken line");
}

// ---- the limits that follow orders --------------------------------------------------------

/// Risk limits of three keys, as keys.json has them (and [`RiskModel`] reads them back).
fn risk_keys(collar: Value, dup: Value, open: Value) -> String {
    let key = |id: &str, limits: Value| {
        with(
            key_json(id, &token_for(id), &["trade:simulate"]),
            "limits",
            limits,
        )
    };
    keys_json(&[key("collar", collar), key("dup", dup), key("open", open)])
}

/// The keys the risk scenario is recorded with: a 5 % collar, no duplicate window, three
/// open orders.
fn risk_original() -> (Value, Value, Value) {
    (
        json!({ "max_price_deviation_pct": 5 }),
        json!({}),
        json!({ "max_open_orders": 3 }),
    )
}

/// Tighter: the collar 2 % and account 1 only, a minute's duplicate window, one open order.
fn risk_tightened() -> (Value, Value, Value) {
    (
        json!({ "max_price_deviation_pct": 2, "allowed_acc_ids": [1] }),
        json!({ "duplicate_window_ms": 60000 }),
        json!({ "max_open_orders": 1 }),
    )
}

/// Checks an order with the account and reference price a gateway sends.
async fn check_risk(
    c: &mut Client,
    token: &str,
    acc_id: Option<u64>,
    ref_price: Option<f64>,
    qty: f64,
    price: f64,
) -> Decision {
    let o = order(Market::HK, "HK.00700", TrdSide::SELL, qty, Some(price));
    let mut req = c.check_request(Iface::Rest, token, "Trd_PlaceOrder", Some(o));
    req.acc_id = acc_id;
    req.ref_price = ref_price;
    let id = req.request_id;
    decision_of(id, c.request(Request::Check(req)).await)
}

/// Sends an order event; returns the answer's outcome.
async fn order_event(
    c: &mut Client,
    ticket: u64,
    kind: OrderEventKind,
    fill: Option<(f64, f64)>,
) -> OrderEventOutcome {
    let id = c.next_id();
    match c
        .request(Request::OrderEvent(OrderEvent {
            request_id: id,
            ticket,
            kind,
            filled_qty: fill.map(|f| f.0),
            fill_price: fill.map(|f| f.1),
        }))
        .await
    {
        Response::OrderEventDone { outcome, .. } => outcome,
        other => panic!("an order event answered with {other:?}"),
    }
}

fn applied(o: &OrderEventOutcome) -> bool {
    matches!(o, OrderEventOutcome::Applied { .. })
}

/// An order of key `open` for account 1.
async fn open_order(c: &mut Client, qty: f64) -> Decision {
    check_risk(c, &token_for("open"), Some(1), None, qty, 100.0).await
}

/// Starts futu-authd with the original risk keys and sends orders with accounts and
/// reference prices, and the events of their lives.
async fn record_risk() -> Recorded {
    let (collar, dup, open) = risk_original();
    let daemon = DaemonBuilder::with_keys_text(risk_keys(collar, dup, open))
        .env("TZ", "UTC")
        .start();
    let mut c = daemon.client().await;

    // collar: reference 100; 101, 103 and 97.5 within 5 %, 108 not, one without a
    // reference price, one for account 3.
    let collar = token_for("collar");
    for (acc, price, allowed) in [
        (1, 101.0, true),
        (1, 103.0, true),
        (1, 97.5, true),
        (1, 108.0, false),
        (3, 100.5, true),
    ] {
        let d = check_risk(&mut c, &collar, Some(acc), Some(100.0), 1.0, price).await;
        assert_eq!(d.is_allow(), allowed, "{price}: {d:?}");
    }
    let d = check_risk(&mut c, &collar, Some(1), None, 1.0, 100.0).await;
    assert_eq!(reason(&d), "price_collar");

    // dup: the same order again, for another account, another quantity, the same again.
    let dup = token_for("dup");
    for (acc, qty) in [(1, 1.0), (1, 1.0), (2, 1.0), (1, 2.0), (1, 1.0)] {
        assert!(check_risk(&mut c, &dup, Some(acc), None, qty, 100.0)
            .await
            .is_allow());
    }

    // open: three at most, slots freed by events as they come.
    let o1 = ticket(&open_order(&mut c, 1.0).await);
    let o2 = ticket(&open_order(&mut c, 2.0).await);
    assert!(applied(
        &order_event(&mut c, o1, OrderEventKind::Accepted, None).await
    ));
    let o3 = ticket(&open_order(&mut c, 3.0).await);
    assert_eq!(reason(&open_order(&mut c, 4.0).await), "open_orders");
    assert!(applied(
        &order_event(&mut c, o1, OrderEventKind::Filled, Some((1.0, 100.0))).await
    ));
    let o5 = ticket(&open_order(&mut c, 5.0).await);
    assert!(applied(
        &order_event(&mut c, o2, OrderEventKind::Cancelled, None).await
    ));
    assert!(applied(
        &order_event(&mut c, o3, OrderEventKind::PartiallyFilled, Some((1.0, 100.0))).await
    ));
    let o6 = ticket(&open_order(&mut c, 6.0).await);
    assert_eq!(reason(&open_order(&mut c, 7.0).await), "open_orders");
    assert!(applied(
        &order_event(&mut c, o5, OrderEventKind::Rejected, None).await
    ));
    // Sent again, and for a ticket no daemon handed out: they change nothing.
    assert!(!applied(
        &order_event(&mut c, o5, OrderEventKind::Rejected, None).await
    ));
    assert!(!applied(
        &order_event(&mut c, 0x1234_5678_9abc, OrderEventKind::Cancelled, None).await
    ));
    assert!(
        open_order(&mut c, 8.0).await.is_allow(),
        "a slot freed by the rejection"
    );
    assert!(applied(
        &order_event(&mut c, o6, OrderEventKind::Cancelled, None).await
    ));
    assert!(open_order(&mut c, 9.0).await.is_allow());
    Recorded { daemon }
}

/// The rules of the risk keys, over the audit's records, worked out apart: the account,
/// the collar, the duplicate window (the same account, symbol, side, qty and price allowed
/// within the window before) and the open orders (allowed, until an event filled,
/// cancelled or rejected them).
struct RiskModel {
    keys: HashMap<String, Value>,
    /// Per key: (fingerprint, ns) of the orders allowed.
    seen: HashMap<String, Vec<(String, i128)>>,
    /// Per key: the daemon's tickets of the orders open, and how many open without one.
    open: HashMap<String, (Vec<u64>, usize)>,
}

impl RiskModel {
    fn changes(keys: (Value, Value, Value), records: &[Value]) -> Vec<Change> {
        let mut m = RiskModel {
            keys: HashMap::from([
                ("collar".to_owned(), keys.0),
                ("dup".to_owned(), keys.1),
                ("open".to_owned(), keys.2),
            ]),
            seen: HashMap::new(),
            open: HashMap::new(),
        };
        let mut out = Vec::new();
        for r in records {
            let ts: Timestamp = r["ts"].as_str().unwrap().parse().unwrap();
            if r["kind"] == "order_event" {
                assert!(r["error"] != "internal", "{r}");
                let finishes =
                    ["filled", "cancelled", "rejected"].contains(&r["event"]["kind"].as_str().unwrap());
                let t = r["ticket"].as_u64().unwrap();
                if finishes {
                    for (tickets, _) in m.open.values_mut() {
                        tickets.retain(|x| *x != t);
                    }
                }
                continue;
            }
            let key = r["key_id"].as_str().unwrap();
            let to = m.decide(r, key, ts);
            let from = label(r["outcome"].as_str().unwrap(), r["reason"].as_str());
            if from != to {
                out.push((key.to_owned(), from, to, r["request_id"].as_u64().unwrap(), ts));
            }
        }
        out
    }

    fn decide(&mut self, r: &Value, key: &str, ts: Timestamp) -> String {
        let reject = |why: &str| label("reject", Some(why));
        let l = &self.keys[key];
        let acc = r["acc_id"].as_u64();
        if let Some(allowed) = l["allowed_acc_ids"].as_array() {
            if !acc.is_some_and(|a| allowed.contains(&json!(a))) {
                return reject("account");
            }
        }
        let o = &r["order"];
        let price = o["price"].as_f64().unwrap();
        if let Some(max) = l["max_price_deviation_pct"].as_f64() {
            match r["ref_price"].as_f64() {
                Some(rp) if (price - rp).abs() / rp * 100.0 <= max => {}
                _ => return reject("price_collar"),
            }
        }
        let ns = ts.as_nanosecond();
        let fp = format!("{acc:?} {} {} {} {price}", o["symbol"], o["side"], o["qty"]);
        let seen = self.seen.entry(key.to_owned()).or_default();
        if let Some(ms) = l["duplicate_window_ms"].as_i64() {
            if seen
                .iter()
                .any(|(f, t)| *f == fp && ns - t < i128::from(ms) * 1_000_000)
            {
                return reject("duplicate");
            }
        }
        let (tickets, untracked) = self.open.entry(key.to_owned()).or_default();
        if let Some(max) = l["max_open_orders"].as_u64() {
            if (tickets.len() + *untracked) as u64 >= max {
                return reject("open_orders");
            }
        }
        seen.push((fp, ns));
        match r["ticket"].as_u64() {
            Some(t) => tickets.push(t),
            None => *untracked += 1,
        }
        "allow".into()
    }
}

#[tokio::test]
async fn replay_follows_orders_through_their_events_and_the_same_keys_change_nothing() {
    let rec = record_risk().await;
    let records = rec.records();
    let (collar, dup, open) = risk_original();
    let keys = rec.candidate("same.json", &BTreeMap::new());
    write_private(&keys, &risk_keys(collar, dup, open));
    let report = rec.replay_json(&keys, &[]);
    let events = records.iter().filter(|r| r["kind"] == "order_event").count() as u64;
    assert_eq!(events, 8);
    assert_eq!(report["records"]["changed"], 0, "{report:#}");
    assert_eq!(
        report["records"]["replayed"].as_u64().unwrap(),
        records.len() as u64 - events
    );
    // Applied: all but the rejection sent again and the foreign ticket.
    assert_eq!(
        report["records"]["order_events"],
        json!({"read": events, "applied": events - 2}),
        "{report:#}"
    );
    let human = rec.replay(&keys, &[]);
    assert!(
        human
            .stdout
            .contains("  order events: 8 read, 6 applied to an order the candidate allowed\n"),
        "{}",
        human.stdout
    );
}

#[tokio::test]
async fn a_tighter_collar_duplicate_window_and_open_orders_refuse_what_the_model_predicts() {
    let rec = record_risk().await;
    let records = rec.records();
    let (collar, dup, open) = risk_tightened();
    let keys = rec.candidate("tight.json", &BTreeMap::new());
    write_private(&keys, &risk_keys(collar.clone(), dup.clone(), open.clone()));
    let expected = RiskModel::changes((collar, dup, open), &records);
    let count = |key: &str, to: &str| {
        expected
            .iter()
            .filter(|c| c.0 == key && c.1 == "allow" && c.2 == to)
            .count()
    };
    // What the scenario was made to show (the model works it out from the records).
    assert_eq!(
        count("collar", "reject price_collar"),
        2,
        "103 and 97.5: {expected:?}"
    );
    assert_eq!(count("collar", "reject account"), 1, "{expected:?}");
    assert_eq!(count("dup", "reject duplicate"), 2, "{expected:?}");
    assert!(count("open", "reject open_orders") >= 3, "{expected:?}");
    assert!(
        expected.iter().all(|c| c.1 == "allow"),
        "a tightening allows nothing refused: {expected:?}"
    );

    let report = rec.replay_json(&keys, &[]);
    assert_changes(&report, &expected);
    let example = &report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key_id"] == "collar" && g["to"]["reason"] == "price_collar")
        .unwrap()["examples"][0];
    assert_eq!(
        example["to"]["detail"],
        "price 103 is 3.0000% from the reference price 100; max_price_deviation_pct is 2"
    );

    // Loosened: the open orders refused at three are allowed at ten.
    let (collar, dup, _) = risk_original();
    let loose = json!({ "max_open_orders": 10 });
    write_private(&keys, &risk_keys(collar.clone(), dup.clone(), loose.clone()));
    let expected = RiskModel::changes((collar, dup, loose), &records);
    assert_eq!(
        expected
            .iter()
            .filter(|c| c.1 == "reject open_orders" && c.2 == "allow")
            .count(),
        2,
        "{expected:?}"
    );
    assert_changes(&rec.replay_json(&keys, &[]), &expected);
}
