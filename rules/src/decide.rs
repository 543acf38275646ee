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
//! 7. for order writes and account reads of a key with `allowed_acc_ids`: the check names
//!    an account (`Check::acc_id`, protocol version 6) and it is in the list — `account`;
//! 8. for order writes: the order is well formed (qty, price and the reference price
//!    finite and above zero, a valid symbol of the order's market) — `bad_order`; its
//!    market, symbol and side are whitelisted — `market`, `symbol`, `side`; qty × price ≤
//!    `max_order_value` — `order_value` (a value cap with no price is `bad_order`); a
//!    limit order's price within `max_price_deviation_pct` of the gateway's reference
//!    price — `price_collar` (a collar and no reference price is `price_collar` too; a
//!    market order, which has no price to compare, is `bad_order` under a collar, as under
//!    a value cap; so is one under `max_position_value`);
//! 9. by the ledger (the daemon's ledger store, or an in-memory [`Ledger`]), atomically per
//!    key, for the [`Charge`] rules 1–8 made of the order: the same order (account,
//!    symbol, side, qty, price) not allowed within `duplicate_window_ms` — `duplicate`;
//!    fewer than `max_orders_per_minute` orders allowed in the last 60 s — `rate`; today's
//!    value plus this one ≤ `max_daily_value` — `daily_value`; fewer than
//!    `max_open_orders` orders open — `open_orders`; the symbol's position in the order's
//!    direction (filled, plus open orders that add to it) plus this order ≤
//!    `max_position_value` — `position`; then all are consumed together (unless
//!    `dry_run`). Open orders, positions and recent orders are the in-memory [`Ledger`]'s
//!    (`Charge::track`); [`Ledger::order_event`] keeps them as the broker reports.
//!
//! A check that carries a reference price without an order is `bad_order` (step 4), as
//! one carrying an order for an endpoint that takes none.
//!
//! [`decide`] runs all eight against an in-memory [`Ledger`] (tests, the micro-benchmark).
//! Rule 1 is the only one that needs the token: [`evaluate_key`] and [`decide_scope_key`]
//! run the rest for a key found already, which is how the audit trail is decided again
//! ([`crate::replay`]) without one.
//!
//! A deny by a limit carries the limit's figures ([`LimitFigures`]) and, where waiting
//! helps, how long until asking again can succeed (`retry_after_ms`): `rate`, until enough
//! orders leave the 60 s window; `daily_value`, until the next UTC midnight (unless the
//! order alone is above the cap); `hours`, until the window next opens in local time;
//! `duplicate`, until the same order leaves the window. `order_value`, `price_collar`,
//! `open_orders` and `position` have figures and no wait (what changes them is an order
//! finishing, not time); every other reason neither (`account`'s detail names the
//! account).

// The `Err` of the helpers below is the deny verdict itself, built once on the deny path.
#![allow(clippy::result_large_err)]

use std::fmt::Write as _;

use futu_auth_proto::key::redact;
use futu_auth_proto::{
    Check, CheckScope, Decision, HoursWindow, KeyId, LimitFigures, Order, Reason, Scope, Symbol,
};

use crate::clock::Now;
use crate::endpoint::{classify, EndpointClass};
use crate::ledger::{Charge, Charged, Consumption, Ledger, Track};
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
        // The gateway's management goes on during a halt: it may be how one is lifted.
        Scope::Admin => false,
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
        Ok(key) => evaluate_key(
            snapshot,
            key,
            now,
            &req.endpoint,
            &OrderContext::of(req),
            req.dry_run,
        ),
        Err(v) => Evaluation::Decided(v),
    }
}

/// What a check says about the request besides its endpoint: the order, and what the
/// gateway knows of it — the account it goes to and the symbol's reference price
/// (protocol version 6). What [`evaluate_key`] decides by; the audit record keeps each.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OrderContext<'a> {
    /// The order, for order writes.
    pub order: Option<&'a Order>,
    /// The account the request is for.
    pub acc_id: Option<u64>,
    /// The reference price of the order's symbol.
    pub ref_price: Option<f64>,
}

impl<'a> OrderContext<'a> {
    /// A check's.
    pub fn of(req: &'a Check) -> OrderContext<'a> {
        OrderContext {
            order: req.order.as_ref(),
            acc_id: req.acc_id,
            ref_price: req.ref_price,
        }
    }

    /// Just an order (or none), with no account and no reference price.
    pub fn order(order: Option<&'a Order>) -> OrderContext<'a> {
        OrderContext {
            order,
            ..OrderContext::default()
        }
    }
}

/// Rules 2–8 for a check of `endpoint` (with an order, an account, a reference price:
/// `ctx`) by `key`, a key of `snapshot` found already: by a token's digest ([`evaluate`]),
/// or by its id when the audit trail is replayed ([`crate::replay`]).
pub fn evaluate_key(
    snapshot: &Snapshot,
    key: &CompiledKey,
    now: &Now,
    endpoint: &str,
    ctx: &OrderContext<'_>,
    dry_run: bool,
) -> Evaluation {
    match evaluate_rules(snapshot, key, now, endpoint, ctx, dry_run) {
        Ok(e) => e,
        Err(v) => Evaluation::Decided(v),
    }
}

fn evaluate_rules(
    snapshot: &Snapshot,
    key: &CompiledKey,
    now: &Now,
    endpoint: &str,
    ctx: &OrderContext<'_>,
    dry_run: bool,
) -> Result<Evaluation, Verdict> {
    let order = ctx.order;
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
    if order.is_none() && ctx.ref_price.is_some() {
        return Err(Verdict::deny(
            Reason::BadOrder,
            Some(key),
            format!(
                "{} takes no order; a check for it must not carry a reference price",
                shown_endpoint(endpoint)
            ),
        ));
    }
    let scope = class.required_scope(order.map(|o| o.env));
    scope_and_hours(snapshot, key, scope, now)?;
    if matches!(class, EndpointClass::OrderWrite | EndpointClass::Account) {
        check_account(key, ctx.acc_id).map_err(|v| v.with_scope(scope))?;
    }
    let Some(order) = order else {
        return Ok(Evaluation::Decided(Verdict {
            decision: allow(&key.id, scope, None),
            scope,
            value: None,
            consumption: None,
        }));
    };
    let value = check_order(key, order, ctx.ref_price).map_err(|v| v.with_scope(scope))?;
    let track = key.tracks_orders().then(|| Track {
        symbol: order.symbol.as_str().into(),
        buys: Track::buys(order.side),
        qty: order.qty,
        price: order.price,
        acc_id: ctx.acc_id,
        max_open_orders: key.max_open_orders(),
        max_position_value: key.max_position_value(),
        duplicate_window_ns: key.duplicate_window_ns(),
    });
    Ok(Evaluation::Charge {
        charge: Charge {
            key_id: key.id.clone(),
            value: value.unwrap_or(Money::ZERO),
            max_orders_per_minute: key.max_orders_per_minute,
            max_daily_value: key.max_daily_value,
            dry_run,
            track,
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

/// Step 7: the account of an order or an account read, for a key with `allowed_acc_ids`.
fn check_account(key: &CompiledKey, acc_id: Option<u64>) -> Result<(), Verdict> {
    let Some(allowed) = key.acc_ids() else {
        return Ok(());
    };
    match acc_id {
        Some(a) if allowed.contains(&a) => Ok(()),
        Some(a) => Err(Verdict::deny(
            Reason::Account,
            Some(key),
            format!("account {a} is not in allowed_acc_ids"),
        )),
        None => Err(Verdict::deny(
            Reason::Account,
            Some(key),
            "the request names no account, and the key has allowed_acc_ids".into(),
        )),
    }
}

/// Step 8: the order's shape, whitelists, per-order cap and price collar; returns its value.
fn check_order(key: &CompiledKey, o: &Order, ref_price: Option<f64>) -> Result<Option<Money>, Verdict> {
    let bad = |detail: String| Err(Verdict::deny(Reason::BadOrder, Some(key), detail));
    if !(o.qty.is_finite() && o.qty > 0.0) {
        return bad(format!("qty {} is not a finite number above zero", o.qty));
    }
    if let Some(p) = o.price {
        if !(p.is_finite() && p > 0.0) {
            return bad(format!("price {p} is not a finite number above zero"));
        }
    }
    if let Some(r) = ref_price {
        if !(r.is_finite() && r > 0.0) {
            return bad(format!("reference price {r} is not a finite number above zero"));
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
            return bad("an order without a price cannot be checked against max_order_value".into())
        }
        (None, None, Some(_)) => {
            return bad("an order without a price cannot be checked against max_daily_value".into())
        }
        (Some(v), Some(cap), _) if v > cap => {
            return Err(Verdict::deny(
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
            .with_value(Some(v)));
        }
        _ => {}
    }
    if value.is_none() && key.max_position_value().is_some() {
        return bad("an order without a price cannot be checked against max_position_value".into());
    }
    if let Some(max) = key.max_price_deviation_pct() {
        check_collar(key, o, ref_price, max).map_err(|v| v.with_value(value))?;
    }
    Ok(value)
}

/// Step 8's price collar: a limit order's price within `max` percent of the reference.
fn check_collar(key: &CompiledKey, o: &Order, ref_price: Option<f64>, max: f64) -> Result<(), Verdict> {
    let Some(price) = o.price else {
        return Err(Verdict::deny(
            Reason::BadOrder,
            Some(key),
            "an order without a price cannot be checked against max_price_deviation_pct".into(),
        ));
    };
    let Some(r) = ref_price else {
        return Err(Verdict::deny(
            Reason::PriceCollar,
            Some(key),
            "the order has no reference price, and the key has max_price_deviation_pct".into(),
        ));
    };
    // Compared without dividing: |price − r| × 100 ≤ max × r, both sides rounded alike.
    let deviation_pct = (price - r).abs() / r * 100.0;
    if (price - r).abs() * 100.0 <= max * r {
        return Ok(());
    }
    Err(Verdict::deny(
        Reason::PriceCollar,
        Some(key),
        format!("price {price} is {deviation_pct:.4}% from the reference price {r}; max_price_deviation_pct is {max}"),
    )
    .with_limit(
        LimitFigures::PriceCollar {
            price,
            ref_price: r,
            deviation_pct,
            max_price_deviation_pct: max,
        },
        None,
    ))
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
        Charged::Duplicate { since_ns } => {
            let window_ns = charge
                .track
                .as_ref()
                .and_then(|t| t.duplicate_window_ns)
                .unwrap_or(0);
            let since_ms = since_ns / NS_PER_MS;
            deny(
                Reason::Duplicate,
                format!(
                    "the same order was allowed {since_ms} ms ago; duplicate_window_ms is {}",
                    window_ns / NS_PER_MS
                ),
                LimitFigures::Duplicate {
                    since_ms,
                    duplicate_window_ms: window_ns / NS_PER_MS,
                },
                Some(window_ns.saturating_sub(since_ns).div_ceil(NS_PER_MS).max(1)),
            )
        }
        Charged::OpenOrders { open } => {
            let max = charge.track.as_ref().and_then(|t| t.max_open_orders);
            deny(
                Reason::OpenOrders,
                match max {
                    Some(max) => format!("{open} orders open; max_open_orders is {max}"),
                    None => format!("{open} orders open, the most futu-authd follows for a key"),
                },
                LimitFigures::OpenOrders {
                    open_orders: open,
                    max_open_orders: max.unwrap_or(open),
                },
                None,
            )
        }
        Charged::Position { position } => {
            let cap = charge
                .track
                .as_ref()
                .and_then(|t| t.max_position_value)
                .unwrap_or_default();
            deny(
                Reason::Position,
                format!(
                    "position {position} + {} would pass max_position_value {cap}",
                    charge.value
                ),
                LimitFigures::Position {
                    position_value: position.as_f64(),
                    order_value: charge.value.as_f64(),
                    max_position_value: cap.as_f64(),
                },
                None,
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
