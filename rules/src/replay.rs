//! What-if replay: every check of an audit file decided again against candidate keys, to
//! see which decisions a change of keys.json would have changed (`futucli replay`).
//!
//! Not the daemon's replay of its ledger journal after a restart: this one reads the audit
//! trail (the JSON lines of the daemon's audit records) and changes nothing.
//!
//! The rules are the daemon's own: a record's key is found by its id in the candidate
//! [`Snapshot`], [`decide::evaluate_key`] runs rules 2–7 and
//! [`decide::charge_and_settle`] takes an order's charge from a fresh in-memory
//! [`Ledger`], so the rate windows and daily totals are those the candidate would have
//! built from the same stream: an order it allows is charged at its record's time, one it
//! refuses is not, a dry run takes nothing, and a release in the audit refunds the
//! candidate's charge of the order whose ticket it names (if the candidate allowed it).
//! Scope checks go through [`decide::decide_scope_key`]. The clock of each decision is the
//! record's `ts`: its wall time for expiry and the UTC day, its local time (in the time
//! zone given) for `hours_window`, and the same instant for the 60 s window.
//!
//! Pure apart from reading: [`replay`] takes any reader and gives a [`Report`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::BufRead;

use futu_auth_proto::{Decision, Market, Order, Scope, TrdEnv, TrdSide};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::clock::Now;
use crate::decide::{self, Verdict};
use crate::ledger::{Ledger, RELEASE_WINDOW_NS};
use crate::snapshot::{CompiledKey, Snapshot};

/// How many examples a group of changes keeps.
pub const EXAMPLES: usize = 3;

/// What to replay, and in which zone.
#[derive(Debug, Clone)]
pub struct Options {
    /// Records before this time are replayed to rebuild the rate windows and daily totals,
    /// but not compared or reported.
    pub since: Option<Timestamp>,
    /// Records at or after this time are not replayed.
    pub until: Option<Timestamp>,
    /// The time zone `hours_window` is judged in.
    pub time_zone: TimeZone,
}

/// What the replay found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// `--since`, when given.
    pub since: Option<Timestamp>,
    /// `--until`, when given.
    pub until: Option<Timestamp>,
    /// The zone `hours_window` was judged in (an IANA name, or `local`).
    pub time_zone: String,
    /// The fingerprint `allowed_machines` was judged for (null: no host is in any list).
    pub machine: Option<String>,
    /// What happened to each record.
    pub records: Totals,
    /// The decisions that would change, grouped by key and transition: by key id, then the
    /// largest group first.
    pub changes: Vec<ChangeGroup>,
}

/// Counts of records. `read` is the sum of `replayed`, every `skipped` and `releases.read`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Records in the file.
    pub read: u64,
    /// Checks and scope checks decided again and compared.
    pub replayed: u64,
    /// Of those, how many the candidate decides otherwise (another outcome or reason).
    pub changed: u64,
    /// Of those, how many it decides the same.
    pub unchanged: u64,
    /// Records not compared, by why.
    pub skipped: Skipped,
    /// Releases of tickets.
    pub releases: Releases,
}

/// Records not compared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Checks with no key id (the token matched no key, or the daemon failed before it
    /// knew one): there is no key to decide them for.
    pub no_key_id: u64,
    /// Checks the daemon refused `internal` (a failure of its own, not a rule).
    pub internal: u64,
    /// Checks before `since`: decided again to rebuild the counters, not compared.
    pub before_since: u64,
    /// Checks at or after `until`: not decided.
    pub after_until: u64,
    /// Admin operations.
    pub admin: u64,
}

/// Releases in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Releases {
    /// Release records.
    pub read: u64,
    /// Those that refunded an order the candidate allowed.
    pub refunded: u64,
}

/// A decision as the audit shows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Outcome {
    /// `allow` or `reject`.
    pub outcome: String,
    /// The reason code of a reject.
    pub reason: Option<String>,
}

impl Outcome {
    /// `allow`, or `reject` and the reason, e.g. `reject order_value`.
    pub fn label(&self) -> String {
        match &self.reason {
            Some(r) => format!("{} {r}", self.outcome),
            None => self.outcome.clone(),
        }
    }
}

/// One kind of change for one key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeGroup {
    /// The key.
    pub key_id: String,
    /// What the daemon decided.
    pub from: Outcome,
    /// What the candidate decides.
    pub to: Outcome,
    /// How many records.
    pub count: u64,
    /// The first [`EXAMPLES`] of them, in file order.
    pub examples: Vec<Example>,
}

/// One record whose decision would change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Example {
    /// Its line in the audit file, from 1.
    pub line: u64,
    /// Its time.
    pub ts: Timestamp,
    /// `check` or `check_scope`.
    pub kind: &'static str,
    /// The client's request id.
    pub request_id: u64,
    /// The endpoint (for a scope check, the scope asked for).
    pub endpoint: String,
    /// The order of an order check, as the audit shows it.
    pub order: Option<ShownOrder>,
    /// What the daemon decided, and its detail.
    pub from: Said,
    /// What the candidate decides, and its detail.
    pub to: Said,
}

/// An order as an example shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShownOrder {
    /// e.g. `HK.00700`.
    pub symbol: String,
    /// e.g. `BUY`.
    pub side: String,
    /// Quantity (null when the audit could not write it: not a finite number).
    pub qty: Option<f64>,
    /// Price (null for none, or not a finite number).
    pub price: Option<f64>,
    /// Whether it was a dry run.
    pub dry_run: bool,
}

/// A decision with its detail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Said {
    /// `allow` or `reject`.
    pub outcome: String,
    /// The reason code of a reject.
    pub reason: Option<String>,
    /// The reject's detail.
    pub detail: Option<String>,
}

/// Why the replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file could not be read.
    #[error("line {line}: cannot read: {source}")]
    Read {
        /// The line being read, from 1.
        line: u64,
        /// What failed.
        source: std::io::Error,
    },
    /// A line is not an audit record.
    #[error("line {line}: {message}")]
    Line {
        /// The line, from 1.
        line: u64,
        /// What is wrong with it.
        message: String,
    },
}

/// Replays every record of `audit` against `snapshot`.
pub fn replay(mut audit: impl BufRead, snapshot: &Snapshot, options: Options) -> Result<Report, ReplayError> {
    let mut run = Replay::new(snapshot, options);
    let mut text = String::new();
    let mut line = 0u64;
    loop {
        line += 1;
        text.clear();
        match audit.read_line(&mut text) {
            Ok(0) => break,
            Ok(_) => {}
            Err(source) => return Err(ReplayError::Read { line, source }),
        }
        run.record(line, &text)
            .map_err(|message| ReplayError::Line { line, message })?;
    }
    Ok(run.finish())
}

/// One line of the audit file, as far as the replay needs it.
#[derive(Debug, Deserialize)]
struct Line {
    ts: Timestamp,
    kind: String,
    endpoint: String,
    key_id: Option<String>,
    outcome: String,
    reason: Option<String>,
    detail: Option<String>,
    order: Option<LineOrder>,
    #[serde(default)]
    dry_run: bool,
    ticket: Option<u64>,
    request_id: u64,
}

/// The order of a line.
#[derive(Debug, Deserialize)]
struct LineOrder {
    env: String,
    market: String,
    symbol: String,
    side: String,
    qty: Option<f64>,
    price: Option<f64>,
}

/// The replay's state between lines.
struct Replay<'s> {
    snapshot: &'s Snapshot,
    by_id: HashMap<&'s str, &'s CompiledKey>,
    ledger: Ledger,
    options: Options,
    /// The ticket the candidate gave each order the daemon allowed, by the daemon's ticket,
    /// while a release may still name it.
    tickets: HashMap<u64, u64>,
    /// The daemon's tickets in `tickets`, with their times, oldest first.
    ticket_times: VecDeque<(u64, u64)>,
    totals: Totals,
    groups: BTreeMap<(String, Outcome, Outcome), ChangeGroup>,
}

impl<'s> Replay<'s> {
    fn new(snapshot: &'s Snapshot, options: Options) -> Replay<'s> {
        Replay {
            snapshot,
            by_id: snapshot.iter().map(|k| (k.id.as_str(), k)).collect(),
            ledger: Ledger::new(),
            options,
            tickets: HashMap::new(),
            ticket_times: VecDeque::new(),
            totals: Totals::default(),
            groups: BTreeMap::new(),
        }
    }

    /// One line: `Err` says what is wrong with it.
    fn record(&mut self, line: u64, text: &str) -> Result<(), String> {
        if text.trim().is_empty() {
            return Ok(());
        }
        let rec: Line = serde_json::from_str(text).map_err(|e| {
            if e.is_data() {
                format!("not an audit record: {e}")
            } else {
                format!("not JSON: {e}")
            }
        })?;
        self.totals.read += 1;
        let now = self.now(rec.ts);
        match rec.kind.as_str() {
            "admin" => self.totals.skipped.admin += 1,
            "release" => self.release(&rec, &now),
            "check" | "check_scope" => self.check(line, rec, &now)?,
            other => return Err(format!("unknown kind {other:?}")),
        }
        Ok(())
    }

    /// The clock of a decision at `ts`. The 60 s window and the release window count in
    /// nanoseconds since 1970, so records replay at their own distances.
    fn now(&self, ts: Timestamp) -> Now {
        let mono_ns = u64::try_from(ts.as_nanosecond()).unwrap_or(0);
        Now::new(ts, &self.options.time_zone, mono_ns)
    }

    fn in_range(&self, ts: Timestamp) -> Range {
        if self.options.until.is_some_and(|u| ts >= u) {
            Range::After
        } else if self.options.since.is_some_and(|s| ts < s) {
            Range::Before
        } else {
            Range::In
        }
    }

    /// Refunds the candidate's charge of the order the released ticket names.
    fn release(&mut self, rec: &Line, now: &Now) {
        self.totals.releases.read += 1;
        if rec.outcome != "allow" || self.in_range(rec.ts) == Range::After {
            return;
        }
        let Some(ours) = rec.ticket.and_then(|t| self.tickets.remove(&t)) else {
            return;
        };
        if self.ledger.release(ours, now.mono_ns, now.day()).is_ok() {
            self.totals.releases.refunded += 1;
        }
    }

    fn check(&mut self, line: u64, rec: Line, now: &Now) -> Result<(), String> {
        let scope_check = rec.kind == "check_scope";
        let from = match rec.outcome.as_str() {
            "allow" => Outcome {
                outcome: "allow".into(),
                reason: None,
            },
            "reject" => Outcome {
                outcome: "reject".into(),
                reason: Some(rec.reason.clone().ok_or("a reject without a reason")?),
            },
            other => return Err(format!("outcome {other:?} is not allow or reject")),
        };
        let Some(key_id) = rec.key_id.as_deref() else {
            self.totals.skipped.no_key_id += 1;
            return Ok(());
        };
        if from.reason.as_deref() == Some("internal") {
            self.totals.skipped.internal += 1;
            return Ok(());
        }
        let range = self.in_range(rec.ts);
        if range == Range::After {
            self.totals.skipped.after_until += 1;
            return Ok(());
        }
        let order = rec.order.as_ref().map(order_of).transpose()?;
        let order = order.map(|mut o| {
            if recorded_price_was_not_finite(&rec) {
                o.price = Some(f64::NAN);
            }
            o
        });
        let scope = if scope_check {
            Some(
                rec.endpoint
                    .parse::<Scope>()
                    .map_err(|e| format!("a scope check of {:?}: {e}", rec.endpoint))?,
            )
        } else {
            None
        };
        let verdict = match self.by_id.get(key_id) {
            None => None,
            Some(key) => Some(match scope {
                Some(s) => decide::decide_scope_key(self.snapshot, key, now, s),
                None => decide::charge_and_settle(
                    &self.ledger,
                    now,
                    decide::evaluate_key(
                        self.snapshot,
                        key,
                        now,
                        &rec.endpoint,
                        order.as_ref(),
                        rec.dry_run,
                    ),
                ),
            }),
        };
        if let (Some(theirs), Some(v)) = (rec.ticket, &verdict) {
            if let Some(c) = &v.consumption {
                self.remember_ticket(theirs, c.ticket, now.mono_ns);
            }
        }
        let to = said(verdict.as_ref(), key_id);
        if range == Range::Before {
            self.totals.skipped.before_since += 1;
            return Ok(());
        }
        self.totals.replayed += 1;
        let to_outcome = Outcome {
            outcome: to.outcome.clone(),
            reason: to.reason.clone(),
        };
        if to_outcome == from {
            self.totals.unchanged += 1;
            return Ok(());
        }
        self.totals.changed += 1;
        let group = self
            .groups
            .entry((key_id.to_owned(), from.clone(), to_outcome.clone()))
            .or_insert_with(|| ChangeGroup {
                key_id: key_id.to_owned(),
                from: from.clone(),
                to: to_outcome,
                count: 0,
                examples: Vec::new(),
            });
        group.count += 1;
        if group.examples.len() < EXAMPLES {
            group.examples.push(Example {
                line,
                ts: rec.ts,
                kind: if scope_check { "check_scope" } else { "check" },
                request_id: rec.request_id,
                order: rec.order.as_ref().map(|o| ShownOrder {
                    symbol: o.symbol.clone(),
                    side: o.side.clone(),
                    qty: o.qty,
                    price: o.price,
                    dry_run: rec.dry_run,
                }),
                endpoint: rec.endpoint,
                from: Said {
                    outcome: from.outcome,
                    reason: from.reason,
                    detail: rec.detail,
                },
                to,
            });
        }
        Ok(())
    }

    /// Keeps the candidate's ticket for the daemon's while a release can name it.
    fn remember_ticket(&mut self, theirs: u64, ours: u64, mono_ns: u64) {
        while let Some(&(at, old)) = self.ticket_times.front() {
            if mono_ns.saturating_sub(at) < RELEASE_WINDOW_NS {
                break;
            }
            self.ticket_times.pop_front();
            self.tickets.remove(&old);
        }
        self.tickets.insert(theirs, ours);
        self.ticket_times.push_back((mono_ns, theirs));
    }

    fn finish(self) -> Report {
        let mut changes: Vec<ChangeGroup> = self.groups.into_values().collect();
        // BTreeMap order is key id, then transition; the largest group of a key comes first.
        changes.sort_by(|a, b| a.key_id.cmp(&b.key_id).then(b.count.cmp(&a.count)));
        Report {
            since: self.options.since,
            until: self.options.until,
            time_zone: self.options.time_zone.iana_name().unwrap_or("local").to_owned(),
            machine: self.snapshot.host().map(|f| f.as_str().to_owned()),
            records: self.totals,
            changes,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Range {
    Before,
    In,
    After,
}

/// The order a line holds. A quantity the audit wrote as null was not a finite number
/// (serde_json writes those as null): NaN stands for it, and rule 7 refuses it the same.
fn order_of(o: &LineOrder) -> Result<Order, String> {
    let env = match o.env.as_str() {
        "simulate" => TrdEnv::Simulate,
        "real" => TrdEnv::Real,
        other => return Err(format!("order.env {other:?} is not simulate or real")),
    };
    let market: Market = o
        .market
        .parse()
        .map_err(|e| format!("order.market {:?}: {e}", o.market))?;
    let side: TrdSide = o
        .side
        .parse()
        .map_err(|e| format!("order.side {:?}: {e}", o.side))?;
    Ok(Order {
        env,
        market,
        symbol: o.symbol.clone(),
        side,
        qty: o.qty.unwrap_or(f64::NAN),
        price: o.price,
    })
}

/// Whether a null price stands for one that was not a finite number rather than for none:
/// the audit writes both as null, and only the daemon's `bad_order` detail tells them
/// apart.
fn recorded_price_was_not_finite(rec: &Line) -> bool {
    rec.order.as_ref().is_some_and(|o| o.price.is_none())
        && rec.reason.as_deref() == Some("bad_order")
        && rec
            .detail
            .as_deref()
            .is_some_and(|d| d.starts_with("price ") && d.ends_with(" is not a finite number above zero"))
}

/// The candidate's decision as the audit would show it; `None` when the candidate has no
/// key `key_id`.
fn said(verdict: Option<&Verdict>, key_id: &str) -> Said {
    match verdict.map(|v| &v.decision) {
        None => Said {
            outcome: "reject".into(),
            reason: Some("unknown_key".into()),
            detail: Some(format!("the candidate keys file has no key {key_id:?}")),
        },
        Some(Decision::Allow { .. }) => Said {
            outcome: "allow".into(),
            reason: None,
            detail: None,
        },
        Some(Decision::Deny { reason, detail, .. }) => Said {
            outcome: "reject".into(),
            reason: Some(reason.as_str().to_owned()),
            detail: Some(detail.clone()),
        },
    }
}

#[cfg(test)]
mod tests;
