//! How futucli prints things.

use std::collections::HashMap;

use futu_auth_client::{
    Decision, Halt, HaltTarget, KeyActivity, KeyId, KeyRecord, LimitFigures, Token, Usage,
};
use futu_auth_rules::clock::expiry_in_words;
use jiff::Timestamp;

/// What the daemon said of each key it has in service: when it was last used (`None`:
/// never) and until when its old plaintext is accepted after a rotation; a key it does not
/// have in service is missing.
pub type Activity = HashMap<KeyId, KeyActivity>;

/// What list-keys shows beside the key records.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// What the daemon said of each key; `None`: the daemon was not asked (LAST USED `-`).
    pub activity: Option<&'a Activity>,
    /// The halts of trading in force.
    pub halts: &'a [Halt],
    /// With `--expiring-within`, the moment the time each key has left is counted from.
    pub time_left_at: Option<Timestamp>,
}

/// `usage`'s line of a key with an expiry: `expires: 2026-12-10T00:00:00Z (in 3d 4h)`, or
/// `(expired 2d 1h ago)`.
pub fn expires(expires_at: Timestamp, now: Timestamp) -> String {
    format!("expires: {expires_at} ({})", expiry_in_words(expires_at, now))
}

/// What gen-key prints: the key, its plaintext once, where it is stored (README.md,
/// "2. Generate a read-only key").
pub fn generated(record: &KeyRecord, token: &Token, stored_in: &str) -> String {
    format!(
        "✅ Generated key \"{}\"\nplaintext: {} ← save this; the terminal output is your only copy\nstored in: {}\n",
        record.id,
        token.expose(),
        stored_in
    )
}

/// rotate-key's output, in gen-key's style: the new plaintext once, and how long the old
/// one still works (`clamped`: cut short by the key's expiry).
pub fn rotated(
    id: &KeyId,
    token: &Token,
    until: Option<Timestamp>,
    clamped: bool,
    stored_in: &str,
) -> String {
    let old = match until {
        Some(t) if clamped => format!("accepted until {t} (the key's expires_at), then refused"),
        Some(t) => format!("accepted until {t}, then refused"),
        None => "refused from now on".into(),
    };
    format!(
        "✅ Rotated key \"{id}\"\nplaintext: {} ← save this; the terminal output is your only copy\nold plaintext: {old}\nstored in: {stored_in}\n",
        token.expose(),
    )
}

/// What `import-keys` did.
pub fn imported(file: &std::path::Path, done: &futu_auth_client::Imported) -> String {
    format!(
        "✅ Imported {}: {} keys added, {} replaced; {} keys in the store\nstored in: {}\n",
        file.display(),
        done.added,
        done.replaced,
        done.total,
        done.stored_in
    )
}

/// `bound to fp_a, fp_b` / `frozen …` / `unbound …`.
pub fn binding_sentence(r: &KeyRecord) -> String {
    match &r.allowed_machines {
        None => "is unbound (allowed_machines: null)".into(),
        Some(l) if l.is_empty() => "is frozen (allowed_machines: [])".into(),
        Some(l) => format!(
            "is bound to {}",
            l.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn binding(r: &KeyRecord) -> String {
    match &r.allowed_machines {
        None => "any".into(),
        Some(l) if l.is_empty() => "frozen".into(),
        Some(l) => l.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(","),
    }
}

fn join<T: std::fmt::Display>(v: &[T]) -> String {
    v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")
}

/// The limits in short: `HK,US SELL ≤100000/order ≤500000/day 5/min 09:30-16:00`, then
/// `accounts=281756 collar ±5% ≤10 open ≤200000/position no repeat in 2000ms`.
fn limits(r: &KeyRecord) -> String {
    let l = &r.limits;
    let mut parts = Vec::new();
    if let Some(m) = &l.allowed_markets {
        parts.push(format!("markets={}", join(m)));
    }
    if let Some(s) = &l.allowed_symbols {
        parts.push(format!("symbols={}", join(s)));
    }
    if let Some(s) = &l.allowed_trd_sides {
        parts.push(format!("sides={}", join(s)));
    }
    if let Some(v) = l.max_order_value {
        parts.push(format!("≤{}/order", v.get()));
    }
    if let Some(v) = l.max_daily_value {
        parts.push(format!("≤{}/day", v.get()));
    }
    if let Some(n) = l.max_orders_per_minute {
        parts.push(format!("{n}/min"));
    }
    if let Some(w) = l.hours_window {
        parts.push(w.to_string());
    }
    if let Some(a) = &l.allowed_acc_ids {
        parts.push(format!("accounts={}", join(a.as_slice())));
    }
    if let Some(p) = l.max_price_deviation_pct {
        parts.push(format!("collar ±{}%", p.get()));
    }
    if let Some(n) = l.max_open_orders {
        parts.push(format!("≤{n} open"));
    }
    if let Some(v) = l.max_position_value {
        parts.push(format!("≤{}/position", v.get()));
    }
    if let Some(w) = l.duplicate_window_ms {
        parts.push(format!("no repeat in {}ms", w.ms()));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

/// A last use as futucli shows it: `2026-11-30 08:41Z`, `never`, or `-` when not known.
pub fn last_used(t: Option<Option<Timestamp>>) -> String {
    match t {
        Some(Some(t)) => t.strftime("%Y-%m-%d %H:%MZ").to_string(),
        Some(None) => "never".into(),
        None => "-".into(),
    }
}

/// The halts in `halts` that stop key `id`: of every key, and its own.
fn halts_for<'a>(id: &'a KeyId, halts: &'a [Halt]) -> impl Iterator<Item = &'a Halt> + 'a {
    halts.iter().filter(move |h| match &h.target {
        HaltTarget::All => true,
        HaltTarget::Key(k) => k == id,
    })
}

/// What `halt` prints: the halt made, and what it stops.
pub fn halted(target: &HaltTarget, halts: &[Halt]) -> String {
    let mut out = match halts.iter().find(|h| &h.target == target) {
        Some(h) => format!(
            "✅ Halted trading for {}: {}\n{h}\n",
            target_name(target),
            h.reason
        ),
        None => format!("✅ Halted trading for {}\n", target_name(target)),
    };
    out.push_str(&format!(
        "orders and trade unlock are refused (reason halted) until `futucli resume {}`; quotes and account reads go on\n",
        flag(target)
    ));
    out
}

/// What `resume` prints: the halt lifted, and a halt of every key that still stops the key.
pub fn resumed(target: &HaltTarget, halts: &[Halt]) -> String {
    let mut out = format!("✅ Resumed trading for {}\n", target_name(target));
    if let HaltTarget::Key(_) = target {
        if let Some(all) = halts.iter().find(|h| h.target == HaltTarget::All) {
            out.push_str(&format!(
                "still halted: {all} (`futucli resume --all` lifts it)\n"
            ));
        }
    }
    out
}

/// `key "sim-bot"` or `every key`.
fn target_name(target: &HaltTarget) -> String {
    match target {
        HaltTarget::Key(id) => format!("key \"{id}\""),
        HaltTarget::All => "every key".into(),
    }
}

/// `--key sim-bot` or `--all`.
fn flag(target: &HaltTarget) -> String {
    match target {
        HaltTarget::Key(id) => format!("--key {id}"),
        HaltTarget::All => "--all".into(),
    }
}

/// `usage`'s line about halts: `halted: trading halted for … : fat finger` for each halt
/// that stops key `id`, or `halted: no`.
pub fn halts_of_key(id: &KeyId, halts: &[Halt]) -> String {
    let lines: Vec<String> = halts_for(id, halts).map(|h| format!("halted: {h}")).collect();
    if lines.is_empty() {
        "halted: no".into()
    } else {
        lines.join("\n")
    }
}

/// The list-keys table; LAST USED is `-` for every key without `activity` (the daemon
/// was not asked); with `time_left_at`, EXPIRES says the time left too
/// (`2026-12-10T00:00:00Z (in 3d 4h)`, `… (expired 2d 1h ago)`). Under it, the rotations
/// in their overlap and every halt of trading in force (of every key, and of each key
/// listed).
pub fn keys_table(keys: &[KeyRecord], view: &View<'_>) -> String {
    let View {
        activity,
        halts,
        time_left_at,
    } = *view;
    if keys.is_empty() {
        return "no keys\n".into();
    }
    let header = [
        "ID",
        "SCOPES",
        "LIMITS",
        "MACHINES",
        "EXPIRES",
        "LAST USED",
        "NOTE",
    ]
    .map(String::from);
    let rows: Vec<[String; 7]> = keys
        .iter()
        .map(|r| {
            [
                r.id.to_string(),
                join(&r.scopes),
                limits(r),
                binding(r),
                match (r.expires_at, time_left_at) {
                    (Some(t), Some(now)) => format!("{t} ({})", expiry_in_words(t, now)),
                    (Some(t), None) => t.to_string(),
                    (None, _) => "never".into(),
                },
                last_used(activity.and_then(|a| a.get(&r.id)).map(|k| k.last_used)),
                r.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut width = [0usize; 7];
    for row in std::iter::once(&header).chain(rows.iter()) {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows.iter()) {
        let line: Vec<String> = row
            .iter()
            .zip(width)
            .map(|(cell, w)| format!("{cell}{}", " ".repeat(w - cell.chars().count())))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    // Rotations still in their overlap, under the table.
    for r in keys {
        if let Some(until) = activity
            .and_then(|a| a.get(&r.id))
            .and_then(|k| k.previous_valid_until)
        {
            out.push_str(&format!(
                "{}: rotated; the old plaintext is accepted until {until}\n",
                r.id
            ));
        }
    }
    for h in halts {
        let listed = match &h.target {
            HaltTarget::All => true,
            HaltTarget::Key(id) => keys.iter().any(|r| &r.id == id),
        };
        if listed {
            out.push_str(&format!("{h}\n"));
        }
    }
    out
}

/// list-keys --json: the records as in keys.json, without `hash`; with `activity`, each key
/// the daemon has in service gets `last_used` (RFC 3339, or null: never used) and, while a
/// rotation's overlap lasts, `previous_valid_until` (RFC 3339); a key whose trading is
/// halted gets `halts`, the halts that stop it (of every key, and its own) as keys.json
/// writes them. With `time_left_at`, each key with an expiry gets `expires_in_seconds` (how
/// long it has left; 0 or less once expired) and `expired` (true once it has).
pub fn keys_json(keys: &[KeyRecord], view: &View<'_>) -> String {
    let View {
        activity,
        halts,
        time_left_at,
    } = *view;
    let list: Vec<serde_json::Value> = keys
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).expect("a key record serializes");
            if let Some(obj) = v.as_object_mut() {
                obj.remove("hash");
                if let Some(k) = activity.and_then(|a| a.get(&r.id)) {
                    obj.insert(
                        "last_used".into(),
                        k.last_used
                            .map_or(serde_json::Value::Null, |t| t.to_string().into()),
                    );
                    if let Some(until) = k.previous_valid_until {
                        obj.insert("previous_valid_until".into(), until.to_string().into());
                    }
                }
                if let (Some(t), Some(now)) = (r.expires_at, time_left_at) {
                    let left = t.as_second() - now.as_second();
                    obj.insert("expires_in_seconds".into(), left.into());
                    obj.insert("expired".into(), (left <= 0).into());
                }
                let stopping: Vec<&Halt> = halts_for(&r.id, halts).collect();
                if !stopping.is_empty() {
                    obj.insert(
                        "halts".into(),
                        serde_json::to_value(stopping).expect("a halt serializes"),
                    );
                }
            }
            v
        })
        .collect();
    serde_json::to_string_pretty(&list).expect("JSON values serialize")
}

/// `usage` output.
pub fn usage(u: &Usage) -> String {
    let cap = |v: Option<String>| v.unwrap_or_else(|| "unlimited".into());
    let mut out = format!(
        "{} on {} (UTC): daily value {} of {}; orders in the last 60 s: {} of {}",
        u.id,
        u.day,
        u.daily_value_used,
        cap(u.max_daily_value.map(|v| v.to_string())),
        u.orders_last_minute,
        cap(u.max_orders_per_minute.map(|v| v.to_string())),
    );
    // The orders the ledger follows (protocol version 6), for a key that has them.
    if u.max_open_orders.is_some() || u.open_orders > 0 {
        out.push_str(&format!(
            "\nopen orders: {} of {}",
            u.open_orders,
            cap(u.max_open_orders.map(|v| v.to_string()))
        ));
    }
    for p in &u.positions {
        out.push_str(&format!(
            "\nposition {}: long {}, short {} (each with its open orders) of {}",
            p.symbol,
            p.long,
            p.short,
            cap(u.max_position_value.map(|v| v.to_string()))
        ));
    }
    out
}

/// `check` output: one line. A deny by a limit adds when to retry (if waiting helps) and
/// the limit's figures, e.g. `reject: rate (key sim-bot): 5 orders in the last 60 s;
/// max_orders_per_minute is 5; retry after 12.345 s; orders in window 5 of 5`.
pub fn decision(d: &Decision) -> String {
    match d {
        Decision::Allow {
            key_id,
            scope,
            ticket,
        } => {
            let mut s = format!("allow: key {key_id}");
            if let Some(sc) = scope {
                s.push_str(&format!(", scope {sc}"));
            }
            if let Some(t) = ticket {
                s.push_str(&format!(", ticket {t}"));
            }
            s
        }
        Decision::Deny {
            reason,
            key_id,
            detail,
            retry_after_ms,
            limit,
        } => {
            let mut s = match key_id {
                Some(k) => format!("reject: {reason} (key {k}): {detail}"),
                None => format!("reject: {reason}: {detail}"),
            };
            if let Some(ms) = retry_after_ms {
                s.push_str(&format!("; retry after {}.{:03} s", ms / 1000, ms % 1000));
            }
            if let Some(l) = limit {
                s.push_str("; ");
                s.push_str(&figures(l));
            }
            s
        }
    }
}

/// A limit's figures, in a few words.
fn figures(l: &LimitFigures) -> String {
    match l {
        LimitFigures::Rate {
            orders_in_window,
            max_orders_per_minute,
        } => format!("orders in window {orders_in_window} of {max_orders_per_minute}"),
        LimitFigures::DailyValue {
            used,
            order_value,
            max_daily_value,
        } => format!("daily value used {used}, this order {order_value}, max_daily_value {max_daily_value}"),
        LimitFigures::OrderValue {
            order_value,
            max_order_value,
        } => format!("order value {order_value}, max_order_value {max_order_value}"),
        LimitFigures::Hours {
            local_time,
            hours_window,
        } => format!("local time {local_time}, hours_window {hours_window}"),
        LimitFigures::PriceCollar {
            price,
            ref_price,
            deviation_pct,
            max_price_deviation_pct,
        } => format!(
            "price {price}, reference price {ref_price}, {deviation_pct:.4}% apart, max_price_deviation_pct {max_price_deviation_pct}"
        ),
        LimitFigures::OpenOrders {
            open_orders,
            max_open_orders,
        } => format!("open orders {open_orders} of {max_open_orders}"),
        LimitFigures::Position {
            position_value,
            order_value,
            max_position_value,
        } => format!("position {position_value}, this order {order_value}, max_position_value {max_position_value}"),
        LimitFigures::Duplicate {
            since_ms,
            duplicate_window_ms,
        } => format!("the same order {since_ms} ms ago, duplicate_window_ms {duplicate_window_ms}"),
    }
}

/// `check --json` output.
pub fn decision_json(d: &Decision) -> String {
    let v = match d {
        Decision::Allow {
            key_id,
            scope,
            ticket,
        } => serde_json::json!({
            "outcome": "allow",
            "key_id": key_id.as_str(),
            "scope": scope.map(|s| s.as_str()),
            "ticket": ticket,
        }),
        Decision::Deny {
            reason,
            key_id,
            detail,
            retry_after_ms,
            limit,
        } => serde_json::json!({
            "outcome": "reject",
            "reason": reason.as_str(),
            "key_id": key_id.as_ref().map(|k| k.as_str()),
            "detail": detail,
            "retry_after_ms": retry_after_ms,
            "limit": limit,
        }),
    };
    v.to_string()
}
