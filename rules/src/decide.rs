//! The decision engine: the rules, in [`evaluate`], and what the ledger's answer makes of
//! them, in [`settle`].
//!
//! Pure: no IO, and the clock comes in as [`Now`]. Rules 1–7 take no lock; [`decide`] and
//! [`charge_and_settle`] take an order's charge from an in-memory [`Ledger`], which locks
//! the order's key inside it. A request is allowed only when every rule says yes, checked
//! in this order (the first that says no is the reason):
//!
//! 1. the token's digest names a key — its current plaintext, or its previous one while
//!    a rotation's overlap lasts — `unknown_key`;
//! 2. its `expires_at` has not passed — `expired`;
//! 3. `allowed_machines` is not `[]` — `frozen` — and, when a list, holds this host —
//!    `machine`;
//! 4. the endpoint is in the table ([`crate::endpoint`]) — `unknown_endpoint`; an order
//!    write comes with an order, and any other endpoint without one — `bad_order`;
//! 5. the key holds the scope the endpoint needs — `scope`; and, when that scope is a
//!    trading one (`trade:simulate`, `trade:real`, `trade:unlock`: orders, unlocks, pushes
//!    of order updates), trading is not halted for the key or for every key — `halted`
//!    (the snapshot's halts; a key without the scope is refused `scope` first);
//! 6. local time is inside `hours_window` — `hours`;
//! 7. for order writes: the order is well formed (qty and price finite and above zero,
//!    a valid symbol of the order's market) — `bad_order`; its market, symbol and side are
//!    whitelisted — `market`, `symbol`, `side`; qty × price ≤ `max_order_value` —
//!    `order_value` (a value cap with no price is `bad_order`);
//! 8. by the ledger (the daemon's ledger store, or an in-memory [`Ledger`]), atomically per
//!    key, for the [`Charge`] rules 1–7 made of the order: fewer than `max_orders_per_minute` orders
//!    allowed in the last 60 s — `rate`; today's value plus this one ≤ `max_daily_value`
//!    — `daily_value`; then both are consumed together (unless `dry_run`).
//!
//! [`decide`] runs all eight against an in-memory [`Ledger`] (tests, the micro-benchmark).
//! Rule 1 is the only one that needs the token: [`evaluate_key`] and [`decide_scope_key`]
//! run the rest for a key found already, which is how the audit trail is decided again
//! ([`crate::replay`]) without one.
//!
//! A deny by a limit carries the limit's figures ([`LimitFigures`]) and, where waiting
//! helps, how long until asking again can succeed (`retry_after_ms`): `rate`, until enough
//! orders leave the 60 s window; `daily_value`, until the next UTC midnight (unless the
//! order alone is above the cap); `hours`, until the window next opens in local time.
//! `order_value` has figures and no wait; every other reason neither.

// The `Err` of the helpers below is the deny verdict itself, built once on the deny path.
#![allow(clippy::result_large_err)]

use std::fmt::Write as _;

use futu_auth_proto::key::redact;
use futu_auth_proto::{
    Check, CheckScope, Decision, HoursWindow, KeyId, LimitFigures, Order, Reason, Scope, Symbol,
};

use crate::clock::Now;
use crate::endpoint::{classify, EndpointClass};
use crate::ledger::{Charge, Charged, Consumption, Ledger};
use crate::money::Money;
use crate::snapshot::{Binding, CompiledKey, Snapshot};

/// A decision and what comes with it for audit and persistence.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// What the client is told.
    pub decision: Decision,
    /// The scope the endpoint needed, when it got that far.
    pub scope: Option<Scope>,
    /// The order's value, when it had one.
    pub value: Option<Money>,
    /// The consumption to persist before the Allow is sent (orders that were not dry runs).
    pub consumption: Option<Consumption>,
}

impl Verdict {
    /// Details quote what the caller sent; anything shaped like a plaintext is redacted.
    fn deny(reason: Reason, key: Option<&CompiledKey>, detail: String) -> Verdict {
        Verdict {
            decision: Decision::Deny {
                reason,
                key_id: key.map(|k| k.id.clone()),
                detail: redact(&detail).into_owned(),
                retry_after_ms: None,
                limit: None,
            },
            scope: None,
            value: None,
            consumption: None,
        }
    }

    /// A deny for a failure of the daemon itself: refused to fail closed.
    pub fn internal(key_id: Option<KeyId>, scope: Option<Scope>, detail: String) -> Verdict {
        Verdict {
            decision: Decision::Deny {
                reason: Reason::Internal,
                key_id,
                detail,
                retry_after_ms: None,
                limit: None,
            },
            scope,
            value: None,
            consumption: None,
        }
    }

    /// A deny by a limit: its figures, and how long until asking again can succeed.
    fn with_limit(mut self, figures: LimitFigures, retry_after_ms: Option<u64>) -> Verdict {
        if let Decision::Deny {
            retry_after_ms: retry,
            limit,
            ..
        } = &mut self.decision
        {
            *retry = retry_after_ms;
            *limit = Some(figures);
        }
        self
    }

    fn with_scope(mut self, scope: Option<Scope>) -> Verdict {
        self.scope = scope;
        self
    }

    fn with_value(mut self, value: Option<Money>) -> Verdict {
        self.value = value;
        self
    }
}

/// Step 1: the key behind a token now (a rotated key's old plaintext only until its
/// overlap ends).
fn key_of<'s>(
    snapshot: &'s Snapshot,
    token: &futu_auth_proto::Token,
    now: &Now,
) -> Result<&'s CompiledKey, Verdict> {
    snapshot
        .by_hash_at(&token.digest(), now.utc)
        .ok_or_else(|| Verdict::deny(Reason::UnknownKey, None, "no key matches this token".into()))
}

/// Steps 2–3: the key is usable on this host now.
fn usable(snapshot: &Snapshot, key: &CompiledKey, now: &Now) -> Result<(), Verdict> {
    if let Some(at) = key.expires_at {
        if now.utc >= at {
            return Err(Verdict::deny(
                Reason::Expired,
                Some(key),
                format!("key expired at {at}"),
            ));
        }
    }
    match key.binding {
        Binding::Unbound | Binding::ThisHost => Ok(()),
        Binding::Frozen => Err(Verdict::deny(
            Reason::Frozen,
            Some(key),
            "key is frozen (allowed_machines is [])".into(),
        )),
        Binding::OtherHosts => Err(Verdict::deny(
            Reason::Machine,
            Some(key),
            match snapshot.host() {
                Some(fp) => format!("this host ({fp}) is not in the key's allowed_machines"),
                None => "this host's machine id is unknown, so it is in no allowed_machines list".into(),
            },
        )),
    }
}

/// Steps 5–6: the scope, then the halt of trading, then the hours window.
fn scope_and_hours(
    snapshot: &Snapshot,
    key: &CompiledKey,
    scope: Option<Scope>,
    now: &Now,
) -> Result<(), Verdict> {
    if let Some(s) = scope {
        if !key.has_scope(s) {
            return Err(
                Verdict::deny(Reason::Scope, Some(key), format!("key lacks scope {s}")).with_scope(Some(s)),
            );
        }
        if halts_stop(s) {
            if let Some(halt) = snapshot.halt_of(&key.id) {
                // The detail says who halted, when and why: `trading halted for key bot by
                // uid 1000 (alice) at …: fat finger`.
                return Err(Verdict::deny(Reason::Halted, Some(key), halt.to_string()).with_scope(Some(s)));
            }
        }
    }
    if let Some(w) = key.hours_window {
        if !w.contains(now.local_secs) {
            let t = now.local_secs;
            let local_time = format!("{:02}:{:02}", t / 3600, t / 60 % 60);
            return Err(Verdict::deny(
                Reason::Hours,
                Some(key),
                format!("local time {local_time} is outside hours_window {w}"),
            )
            .with_limit(
                LimitFigures::Hours {
                    local_time,
                    hours_window: w,
                },
                Some(until_window_opens(&w, now)),
            )
            .with_scope(scope));
        }
    }
    Ok(())
}

/// Whether a halt of trading stops what needs `scope`: orders and unlocks, and the pushes
/// of order updates, which need the same scopes. Quotes and account reads go on. No
/// wildcard: a new scope does not compile until it is sorted here.
fn halts_stop(scope: Scope) -> bool {
    match scope {
        Scope::QotRead | Scope::AccRead => false,
        Scope::TradeSimulate | Scope::TradeReal | Scope::TradeUnlock => true,
    }
}

const NS_PER_MS: u64 = 1_000_000;
const NS_PER_S: u64 = 1_000_000_000;

/// Milliseconds from now until `w` next opens, local time (now is outside it, so the
/// start is ahead: later today, or tomorrow). Counted with the UTC offset in force now;
/// across a daylight-saving change it is off by the change, and the check then says so.
fn until_window_opens(w: &HoursWindow, now: &Now) -> u64 {
    const DAY_S: u64 = 86_400;
    let start = u64::from(w.start_min) * 60;
    let whole_s = (start + DAY_S - u64::from(now.local_secs) % DAY_S) % DAY_S;
    // local_secs counts whole seconds; the part of this one already gone comes off.
    let into_second = now.utc.as_nanosecond().rem_euclid(i128::from(NS_PER_S)) as u64;
    (whole_s * NS_PER_S)
        .saturating_sub(into_second)
        .div_ceil(NS_PER_MS)
}

/// Milliseconds from now until the next UTC midnight, when the daily totals start again.
fn until_next_utc_day(now: &Now) -> u64 {
    let midnight = i128::from(now.day() + 1) * 86_400 * i128::from(NS_PER_S);
    let ns = (midnight - now.utc.as_nanosecond()).max(0);
    u64::try_from(ns).unwrap_or(u64::MAX).div_ceil(NS_PER_MS)
}

fn allow(key_id: &KeyId, scope: Option<Scope>, ticket: Option<u64>) -> Decision {
    Decision::Allow {
        key_id: key_id.clone(),
        scope,
        ticket,
    }
}

/// What rules 1–7 made of a [`Check`].
#[derive(Debug, Clone, PartialEq)]
pub enum Evaluation {
    /// Decided: a deny, or an allow that takes nothing from the ledger (not an order).
    Decided(Verdict),
    /// Every rule passed for an order: its charge goes to the ledger store, and
    /// [`settle`] makes the verdict of what the store found.
    Charge {
        /// What the order would take.
        charge: Charge,
        /// The scope the endpoint needed.
        scope: Option<Scope>,
        /// The order's value, when it had a price.
        value: Option<Money>,
    },
}

/// Decides a [`Check`] against an in-memory ledger: [`evaluate`], then [`charge_and_settle`].
pub fn decide(snapshot: &Snapshot, ledger: &Ledger, now: &Now, req: &Check) -> Verdict {
    charge_and_settle(ledger, now, evaluate(snapshot, now, req))
}

/// What an [`Evaluation`] comes to against an in-memory ledger: a decided one as it is; a
/// charge taken from `ledger` at `now`, then [`settle`]d.
pub fn charge_and_settle(ledger: &Ledger, now: &Now, evaluation: Evaluation) -> Verdict {
    match evaluation {
        Evaluation::Decided(v) => v,
        Evaluation::Charge { charge, scope, value } => {
            let outcome = ledger.take(&charge, now.mono_ns, now.utc.as_nanosecond(), now.day());
            settle(&charge, scope, value, outcome, now)
        }
    }
}

/// Rules 1–7 for a [`Check`]: the key its token names, then [`evaluate_key`].
pub fn evaluate(snapshot: &Snapshot, now: &Now, req: &Check) -> Evaluation {
    match key_of(snapshot, &req.token, now) {
        Ok(key) => evaluate_key(snapshot, key, now, &req.endpoint, req.order.as_ref(), req.dry_run),
        Err(v) => Evaluation::Decided(v),
    }
}

/// Rules 2–7 for a check of `endpoint` (with `order`) by `key`, a key of `snapshot` found
/// already: by a token's digest ([`evaluate`]), or by its id when the audit trail is
/// replayed ([`crate::replay`]).
pub fn evaluate_key(
    snapshot: &Snapshot,
    key: &CompiledKey,
    now: &Now,
    endpoint: &str,
    order: Option<&Order>,
    dry_run: bool,
) -> Evaluation {
    match evaluate_rules(snapshot, key, now, endpoint, order, dry_run) {
        Ok(e) => e,
        Err(v) => Evaluation::Decided(v),
    }
}

fn evaluate_rules(
    snapshot: &Snapshot,
    key: &CompiledKey,
    now: &Now,
    endpoint: &str,
    order: Option<&Order>,
    dry_run: bool,
) -> Result<Evaluation, Verdict> {
    usable(snapshot, key, now)?;
    let Some(class) = classify(endpoint) else {
        return Err(Verdict::deny(
            Reason::UnknownEndpoint,
            Some(key),
            format!(
                "endpoint \"{}\" is not in the daemon's table",
                shown_endpoint(endpoint)
            ),
        ));
    };
    let order = match (class, order) {
        (EndpointClass::OrderWrite, None) => {
            return Err(Verdict::deny(
                Reason::BadOrder,
                Some(key),
                format!("{endpoint} is an order write and needs an order"),
            ))
        }
        (EndpointClass::OrderWrite, Some(o)) => Some(o),
        // A front-end that maps an order route to a read endpoint by mistake would
        // otherwise pass every limit without a trace.
        (_, Some(_)) => {
            return Err(Verdict::deny(
                Reason::BadOrder,
                Some(key),
                format!(
                    "{} is not an order write; a check for it must not carry an order",
                    shown_endpoint(endpoint)
                ),
            ))
        }
        (_, None) => None,
    };
    let scope = class.required_scope(order.map(|o| o.env));
    scope_and_hours(snapshot, key, scope, now)?;
    let Some(order) = order else {
        return Ok(Evaluation::Decided(Verdict {
            decision: allow(&key.id, scope, None),
            scope,
            value: None,
            consumption: None,
        }));
    };
    let value = check_order(key, order).map_err(|v| v.with_scope(scope))?;
    Ok(Evaluation::Charge {
        charge: Charge {
            key_id: key.id.clone(),
            value: value.unwrap_or(Money::ZERO),
            max_orders_per_minute: key.max_orders_per_minute,
            max_daily_value: key.max_daily_value,
            dry_run,
        },
        scope,
        value,
    })
}

/// A caller-supplied endpoint as a detail may quote it: redacted, escaped, at most 64
/// characters.
fn shown_endpoint(endpoint: &str) -> String {
    let mut shown = String::new();
    for c in redact(endpoint).chars().take(64) {
        let _ = write!(shown, "{}", c.escape_debug());
    }
    shown
}

/// Step 7: the order's shape, whitelists and per-order cap; returns its value.
fn check_order(key: &CompiledKey, o: &Order) -> Result<Option<Money>, Verdict> {
    let bad = |detail: String| Err(Verdict::deny(Reason::BadOrder, Some(key), detail));
    if !(o.qty.is_finite() && o.qty > 0.0) {
        return bad(format!("qty {} is not a finite number above zero", o.qty));
    }
    if let Some(p) = o.price {
        if !(p.is_finite() && p > 0.0) {
            return bad(format!("price {p} is not a finite number above zero"));
        }
    }
    let symbol = o.symbol.as_str();
    let prefix = match Symbol::validate(symbol) {
        Ok(p) => p,
        Err(e) => return bad(e.to_string()),
    };
    if !o.market.trades_prefix(prefix) {
        return bad(format!("symbol {symbol} does not trade in market {}", o.market));
    }
    if !key.allows_market(o.market) {
        return Err(Verdict::deny(
            Reason::Market,
            Some(key),
            format!("market {} is not in allowed_markets", o.market),
        ));
    }
    if !key.allows_symbol(symbol) {
        return Err(Verdict::deny(
            Reason::Symbol,
            Some(key),
            format!("symbol {symbol} is not in allowed_symbols"),
        ));
    }
    if !key.allows_side(o.side) {
        return Err(Verdict::deny(
            Reason::Side,
            Some(key),
            format!("side {} is not in allowed_trd_sides", o.side),
        ));
    }
    let value = match o.price {
        Some(p) => match Money::order_value(o.qty, p) {
            Some(v) => Some(v),
            // qty and price are finite and above zero here: the value is too large to count.
            None => {
                let shown = |v: f64| if v < 1e16 { v.to_string() } else { format!("{v:e}") };
                return bad(format!(
                    "order value {} × {} is above {}, the largest amount futu-authd counts",
                    shown(o.qty),
                    shown(p),
                    crate::money::MAX
                ));
            }
        },
        None => None,
    };
    match (value, key.max_order_value, key.max_daily_value) {
        (None, Some(_), _) => {
            bad("an order without a price cannot be checked against max_order_value".into())
        }
        (None, None, Some(_)) => {
            bad("an order without a price cannot be checked against max_daily_value".into())
        }
        (Some(v), Some(cap), _) if v > cap => Err(Verdict::deny(
            Reason::OrderValue,
            Some(key),
            format!("order value {v} is above max_order_value {cap}"),
        )
        // Waiting does not make the order smaller.
        .with_limit(
            LimitFigures::OrderValue {
                order_value: v.as_f64(),
                max_order_value: cap.as_f64(),
            },
            None,
        )
        .with_value(Some(v))),
        _ => Ok(value),
    }
}

/// Step 8: the verdict of what the ledger store found for an order's charge, checked at
/// `now`.
pub fn settle(
    charge: &Charge,
    scope: Option<Scope>,
    value: Option<Money>,
    outcome: Charged,
    now: &Now,
) -> Verdict {
    let deny = |reason, detail, figures, retry_after_ms| Verdict {
        decision: Decision::Deny {
            reason,
            key_id: Some(charge.key_id.clone()),
            detail,
            retry_after_ms,
            limit: Some(figures),
        },
        scope,
        value,
        consumption: None,
    };
    match outcome {
        Charged::Rate {
            in_window,
            retry_after_ns,
        } => {
            let max = charge.max_orders_per_minute.unwrap_or(0);
            deny(
                Reason::Rate,
                format!("{in_window} orders in the last 60 s; max_orders_per_minute is {max}"),
                LimitFigures::Rate {
                    orders_in_window: in_window,
                    max_orders_per_minute: max,
                },
                // 0: a rate of 0, which no wait changes.
                (retry_after_ns > 0).then(|| retry_after_ns.div_ceil(NS_PER_MS)),
            )
        }
        Charged::Daily { used } => {
            let cap = charge.max_daily_value.unwrap_or_default();
            deny(
                Reason::DailyValue,
                format!(
                    "today's value {used} + {} would pass max_daily_value {cap}",
                    charge.value
                ),
                LimitFigures::DailyValue {
                    used: used.as_f64(),
                    order_value: charge.value.as_f64(),
                    max_daily_value: cap.as_f64(),
                },
                // An order above the cap on its own passes it on any day.
                (charge.value <= cap).then(|| until_next_utc_day(now)),
            )
        }
        Charged::Passed(taken) => Verdict {
            decision: allow(&charge.key_id, scope, taken.as_ref().map(|c| c.ticket)),
            scope,
            value,
            consumption: taken,
        },
    }
}

/// Decides a [`CheckScope`]: step 1, then [`decide_scope_key`].
pub fn decide_scope(snapshot: &Snapshot, now: &Now, req: &CheckScope) -> Verdict {
    match key_of(snapshot, &req.token, now) {
        Ok(key) => decide_scope_key(snapshot, key, now, req.scope),
        Err(v) => v,
    }
}

/// Whether `key`, a key of `snapshot` found already, may have `scope` now: steps 2–3, then
/// the scope, a halt of trading and the hours window.
pub fn decide_scope_key(snapshot: &Snapshot, key: &CompiledKey, now: &Now, scope: Scope) -> Verdict {
    if let Err(v) = usable(snapshot, key, now) {
        return v;
    }
    match scope_and_hours(snapshot, key, Some(scope), now) {
        Ok(()) => Verdict {
            decision: allow(&key.id, Some(scope), None),
            scope: Some(scope),
            value: None,
            consumption: None,
        },
        Err(v) => v.with_scope(Some(scope)),
    }
}

#[cfg(test)]
mod tests;
