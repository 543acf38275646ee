//! What-if replay: every check of an audit file decided again against candidate keys, to
//! see which decisions a change of keys.json would have changed (`futucli replay`).
//!
//! Not the daemon's replay of its ledger journal after a restart: this one reads the audit
//! trail ([`AuditRecord`], read by the same code that writes it) and changes nothing. What
//! it decides by is fields of the record, never the text of a detail.
//!
//! The rules are the daemon's own: a record's key is found by its id in the candidate
//! [`Snapshot`], [`decide::evaluate_key`] runs rules 2–7 and
//! [`decide::charge_and_settle`] takes an order's charge from a fresh in-memory
//! [`Ledger`], so the rate windows and daily totals are those the candidate would have
//! built from the same stream: an order it allows is charged at its record's time, one it
//! refuses is not, a dry run takes nothing, and a release in the audit refunds the
//! candidate's charge of the order whose ticket it names (if the candidate allowed it).
//! A check is decided with the account (`acc_id`) and reference price (`ref_price`) its
//! record keeps, so `allowed_acc_ids`, the price collar and the duplicate window judge
//! what the daemon judged. Scope checks go through [`decide::decide_scope_key`]. The clock
//! of each decision is the record's `ts`: its wall time for expiry and the UTC day, its
//! local time (in the time zone given) for `hours_window`, and the same instant for the
//! 60 s window and `duplicate_window_ms`.
//!
//! Orders are followed as the audit file tells their lives: each `order_event` record
//! (its `event`: kind, filled quantity, fill price) is applied, in file order among the
//! checks, to the candidate's order that the daemon's ticket names, if the candidate
//! allowed that order — so a candidate's `max_open_orders` and `max_position_value` see
//! the slots freed and the fills as they came. An event the daemon refused as naming no
//! order it followed (`unknown_ticket`: its key followed no orders, say) is applied too, as
//! the candidate may follow that order; one the daemon failed on (`internal`) is not. A
//! candidate that follows orders the daemon did not can only see their events if the
//! gateway sent them.
//!
//! A halt of trading is not a rule of the candidate but an event of the past, so the
//! candidate's own `halts` (the state of now) are not applied: each record is judged by
//! the halts the audit file says were in force at its time — those its `Halt` and
//! `Resume` admin records made and lifted (by their `key_id`, a key or `*`), and the halt
//! of a key whose check the daemon refused `halted` with no such record before it (made
//! before the file begins), in force until a `Resume` of it. A refusal `halted` stays
//! `halted` unless the candidate refuses it first (no such key, no trading scope, expired,
//! frozen, bound elsewhere); an order allowed while nothing was halted is not refused by a
//! halt made later.
//!
//! Pure apart from reading: [`replay`] takes any reader and gives a [`Report`].

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::BufRead;

use futu_auth_proto::key::{Halt, HaltTarget, HaltedBy, InvalidValue};
use futu_auth_proto::{Decision, ErrorKind, KeyId, OrderEventKind, Reason, Scope, TrdSide};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Serialize;

use crate::audit::{self, AuditKey, AuditRecord, Kind, RecordError};
use crate::clock::Now;
use crate::decide::{self, Verdict};
use crate::ledger::{EventApplied, Ledger, RELEASE_WINDOW_NS};
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

/// Counts of records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Records in the file: `replayed`, every `skipped`, `releases.read` and
    /// `order_events.read`.
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
    /// Order events.
    pub order_events: OrderEvents,
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

/// Order events in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OrderEvents {
    /// Order event records.
    pub read: u64,
    /// Those the candidate's ledger applied to an order it allowed (the others name an
    /// order it refused or no longer knows, or change nothing: sent again, or for an order
    /// finished already).
    pub applied: u64,
}

/// A decision as the audit shows it: allow, or reject and its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Outcome {
    /// `allow` or `reject`.
    pub outcome: audit::Outcome,
    /// The reason code of a reject.
    pub reason: Option<Reason>,
}

impl Outcome {
    /// An allow.
    const ALLOW: Outcome = Outcome {
        outcome: audit::Outcome::Allow,
        reason: None,
    };

    /// `allow`, or `reject` and the reason, e.g. `reject order_value`.
    pub fn label(&self) -> String {
        match &self.reason {
            Some(r) => format!("{} {r}", self.outcome.as_str()),
            None => self.outcome.as_str().to_owned(),
        }
    }

    /// The words of the line, to order groups by (as text, so the report's order is the
    /// alphabetical one of the codes).
    fn words(&self) -> (&'static str, Option<&'static str>) {
        (self.outcome.as_str(), self.reason.map(Reason::as_str))
    }
}

impl Ord for Outcome {
    fn cmp(&self, other: &Self) -> Ordering {
        self.words().cmp(&other.words())
    }
}

impl PartialOrd for Outcome {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
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
    pub kind: Kind,
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
    pub side: TrdSide,
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
    pub outcome: audit::Outcome,
    /// The reason code of a reject.
    pub reason: Option<Reason>,
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
    /// A line is not an audit record the replay can decide again.
    #[error("line {line}: {source}")]
    Line {
        /// The line, from 1.
        line: u64,
        /// What is wrong with it.
        source: LineError,
    },
}

/// What is wrong with a line.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// Not JSON, or not an audit record.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A check or scope check that was neither allowed nor rejected.
    #[error("outcome {:?} is not allow or reject", .0.as_str())]
    NotADecision(audit::Outcome),
    /// A reject that names no reason.
    #[error("a reject without a reason")]
    RejectWithoutReason,
    /// A scope check of something that is not a scope.
    #[error("a scope check of {endpoint:?}: {source}")]
    NotAScope {
        /// The record's endpoint, which a scope check's record holds the scope in.
        endpoint: String,
        /// Why it is not one.
        source: InvalidValue,
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
            .map_err(|source| ReplayError::Line { line, source })?;
    }
    Ok(run.finish())
}

/// The replay's state between lines.
struct Replay<'s> {
    /// The candidate with the halts of `halts` in force instead of its own.
    snapshot: Snapshot,
    /// The halts in force at the record being read, as the audit file tells them.
    halts: Vec<Halt>,
    by_id: HashMap<&'s str, &'s CompiledKey>,
    ledger: Ledger,
    options: Options,
    /// The candidate's order for each order the daemon allowed, by the daemon's ticket,
    /// while a release or an order event may still name it.
    tickets: HashMap<u64, Ours>,
    /// The daemon's tickets in `tickets`, with their times, oldest first.
    ticket_times: VecDeque<(u64, u64)>,
    totals: Totals,
    groups: BTreeMap<(String, Outcome, Outcome), ChangeGroup>,
}

/// The candidate's order for one the daemon allowed.
#[derive(Debug, Clone, Copy)]
struct Ours {
    /// The candidate's ticket.
    ticket: u64,
    /// When it was allowed (ns since 1970).
    at_ns: u64,
    /// Whether the candidate keeps it open until an event finishes it (its key has
    /// `max_open_orders` or `max_position_value`): its ticket is kept as long, beyond the
    /// release window.
    open: bool,
}

impl<'s> Replay<'s> {
    fn new(snapshot: &'s Snapshot, options: Options) -> Replay<'s> {
        let mut judged = snapshot.clone();
        judged.set_halts(&[]);
        Replay {
            snapshot: judged,
            halts: Vec::new(),
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
    fn record(&mut self, line: u64, text: &str) -> Result<(), LineError> {
        if text.trim().is_empty() {
            return Ok(());
        }
        let rec = AuditRecord::parse(text)?;
        self.totals.read += 1;
        let now = self.now(rec.ts);
        match rec.kind {
            Kind::Admin => {
                self.totals.skipped.admin += 1;
                self.admin(&rec);
            }
            Kind::Release => self.release(&rec, &now),
            Kind::OrderEvent => self.order_event(&rec, &now),
            Kind::Check | Kind::CheckScope => self.check(line, rec, &now)?,
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

    /// Follows a halt or resume the daemon made: by the record's endpoint and `key_id`.
    fn admin(&mut self, rec: &AuditRecord) {
        if rec.outcome != audit::Outcome::Allow {
            return;
        }
        let Some(target) = rec.key_id.as_ref().map(|k| match k {
            AuditKey::Key(id) => HaltTarget::Key(id.clone()),
            AuditKey::All => HaltTarget::All,
        }) else {
            return;
        };
        match rec.endpoint.as_str() {
            "Halt" => self.set_halt(target, rec),
            "Resume" => {
                self.halts.retain(|h| h.target != target);
                self.snapshot.set_halts(&self.halts);
            }
            _ => {}
        }
    }

    /// Puts a halt of `target` in force, from `rec`'s time on.
    fn set_halt(&mut self, target: HaltTarget, rec: &AuditRecord) {
        self.halts.retain(|h| h.target != target);
        self.halts.push(Halt {
            target,
            reason: "as the audit file records".parse().expect("a valid reason"),
            halted_by: HaltedBy::new(rec.peer_uid, None),
            halted_at: rec.ts,
        });
        self.snapshot.set_halts(&self.halts);
    }

    /// Refunds the candidate's charge of the order the released ticket names.
    fn release(&mut self, rec: &AuditRecord, now: &Now) {
        self.totals.releases.read += 1;
        if rec.outcome != audit::Outcome::Allow || self.in_range(rec.ts) == Range::After {
            return;
        }
        let Some(ours) = rec.ticket.and_then(|t| self.tickets.remove(&t)) else {
            return;
        };
        if self.ledger.release(ours.ticket, now.mono_ns, now.day()).is_ok() {
            self.totals.releases.refunded += 1;
        }
    }

    /// Applies an order event to the candidate's order the daemon's ticket names.
    fn order_event(&mut self, rec: &AuditRecord, now: &Now) {
        self.totals.order_events.read += 1;
        if rec.error == Some(ErrorKind::Internal) || self.in_range(rec.ts) == Range::After {
            return;
        }
        let (Some(e), Some(theirs)) = (rec.event, rec.ticket) else {
            return;
        };
        let Some(ours) = self.tickets.get(&theirs).copied() else {
            return;
        };
        let applied = self.ledger.order_event(
            ours.ticket,
            e.kind,
            e.filled_qty,
            e.fill_price,
            now.mono_ns,
            now.day(),
        );
        if matches!(applied, Ok(EventApplied::Applied { .. })) {
            self.totals.order_events.applied += 1;
        }
        let finished = !matches!(e.kind, OrderEventKind::Accepted | OrderEventKind::PartiallyFilled);
        if finished && applied.is_ok() && ours.open {
            // Out of the release window its ticket is kept only while the order is open.
            if now.mono_ns.saturating_sub(ours.at_ns) >= RELEASE_WINDOW_NS {
                self.tickets.remove(&theirs);
            } else if let Some(o) = self.tickets.get_mut(&theirs) {
                o.open = false;
            }
        }
    }

    fn check(&mut self, line: u64, rec: AuditRecord, now: &Now) -> Result<(), LineError> {
        let from = match rec.outcome {
            audit::Outcome::Allow => Outcome::ALLOW,
            audit::Outcome::Reject => Outcome {
                outcome: audit::Outcome::Reject,
                reason: Some(rec.reason.ok_or(LineError::RejectWithoutReason)?),
            },
            audit::Outcome::Error => return Err(LineError::NotADecision(rec.outcome)),
        };
        let Some(key_id) = rec.key_id.as_ref().and_then(AuditKey::key).map(KeyId::as_str) else {
            self.totals.skipped.no_key_id += 1;
            return Ok(());
        };
        if from.reason == Some(Reason::Internal) {
            self.totals.skipped.internal += 1;
            return Ok(());
        }
        let range = self.in_range(rec.ts);
        if range == Range::After {
            self.totals.skipped.after_until += 1;
            return Ok(());
        }
        // Refused `halted`: the key was halted then, whether or not the file says since when.
        if let Some(id) = rec.key_id.as_ref().and_then(AuditKey::key) {
            if from.reason == Some(Reason::Halted) && self.snapshot.halt_of(id).is_none() {
                self.set_halt(HaltTarget::Key(id.clone()), &rec);
            }
        }
        // A price the record says was not a finite number comes back as NaN, which rule 7
        // refuses as the daemon did.
        let order = rec.order.as_ref().map(audit::AuditOrder::to_order);
        let scope = match rec.kind {
            Kind::CheckScope => {
                Some(
                    rec.endpoint
                        .parse::<Scope>()
                        .map_err(|source| LineError::NotAScope {
                            endpoint: rec.endpoint.clone(),
                            source,
                        })?,
                )
            }
            Kind::Check | Kind::Release | Kind::OrderEvent | Kind::Admin => None,
        };
        let mut opens = false;
        let verdict = match self.by_id.get(key_id) {
            None => None,
            Some(key) => Some(match scope {
                Some(s) => decide::decide_scope_key(&self.snapshot, key, now, s),
                None => {
                    let evaluation = decide::evaluate_key(
                        &self.snapshot,
                        key,
                        now,
                        &rec.endpoint,
                        &decide::OrderContext {
                            order: order.as_ref(),
                            acc_id: rec.acc_id,
                            ref_price: rec.ref_price,
                        },
                        rec.dry_run,
                    );
                    opens = matches!(&evaluation, decide::Evaluation::Charge { charge, .. }
                    if charge.track.as_ref().is_some_and(|t| {
                        t.max_open_orders.is_some() || t.max_position_value.is_some()
                    }));
                    decide::charge_and_settle(&self.ledger, now, evaluation)
                }
            }),
        };
        if let (Some(theirs), Some(v)) = (rec.ticket, &verdict) {
            if let Some(c) = &v.consumption {
                self.remember_ticket(
                    theirs,
                    Ours {
                        ticket: c.ticket,
                        at_ns: now.mono_ns,
                        open: opens,
                    },
                );
            }
        }
        let to = said(verdict.as_ref(), key_id);
        if range == Range::Before {
            self.totals.skipped.before_since += 1;
            return Ok(());
        }
        self.totals.replayed += 1;
        let to_outcome = Outcome {
            outcome: to.outcome,
            reason: to.reason,
        };
        if to_outcome == from {
            self.totals.unchanged += 1;
            return Ok(());
        }
        self.totals.changed += 1;
        let group = self
            .groups
            .entry((key_id.to_owned(), from, to_outcome))
            .or_insert_with(|| ChangeGroup {
                key_id: key_id.to_owned(),
                from,
                to: to_outcome,
                count: 0,
                examples: Vec::new(),
            });
        group.count += 1;
        if group.examples.len() < EXAMPLES {
            group.examples.push(Example {
                line,
                ts: rec.ts,
                kind: rec.kind,
                request_id: rec.request_id,
                order: rec.order.as_ref().map(|o| ShownOrder {
                    symbol: o.symbol.clone(),
                    side: o.side,
                    qty: Some(o.qty).filter(|q| q.is_finite()),
                    price: o.price.filter(|p| p.is_finite()),
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

    /// Keeps the candidate's ticket for the daemon's while a release can name it, and
    /// while the candidate keeps the order open.
    fn remember_ticket(&mut self, theirs: u64, ours: Ours) {
        while let Some(&(at, old)) = self.ticket_times.front() {
            if ours.at_ns.saturating_sub(at) < RELEASE_WINDOW_NS {
                break;
            }
            self.ticket_times.pop_front();
            if self.tickets.get(&old).is_some_and(|o| !o.open) {
                self.tickets.remove(&old);
            }
        }
        self.tickets.insert(theirs, ours);
        self.ticket_times.push_back((ours.at_ns, theirs));
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

/// The candidate's decision as the audit would show it; `None` when the candidate has no
/// key `key_id`.
fn said(verdict: Option<&Verdict>, key_id: &str) -> Said {
    match verdict.map(|v| &v.decision) {
        None => Said {
            outcome: audit::Outcome::Reject,
            reason: Some(Reason::UnknownKey),
            detail: Some(format!("the candidate keys file has no key {key_id:?}")),
        },
        Some(Decision::Allow { .. }) => Said {
            outcome: audit::Outcome::Allow,
            reason: None,
            detail: None,
        },
        Some(Decision::Deny { reason, detail, .. }) => Said {
            outcome: audit::Outcome::Reject,
            reason: Some(*reason),
            detail: Some(detail.clone()),
        },
    }
}

#[cfg(test)]
mod tests;
