//! The record schema: one JSON line of the audit file per decision and per admin
//! operation (`journald.rs` sends the same fields to journald).

use futu_auth_proto::key::redact;
use futu_auth_proto::{Iface, KeyId, Order, Reason, Scope};
use jiff::Timestamp;
use serde::Serialize;

use futu_auth_rules::money::Money;

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A Check.
    Check,
    /// A CheckScope.
    CheckScope,
    /// A Release.
    Release,
    /// An admin request.
    Admin,
}

impl Kind {
    /// `check`, `check_scope`, `release` or `admin`, as in the record.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Check => "check",
            Kind::CheckScope => "check_scope",
            Kind::Release => "release",
            Kind::Admin => "admin",
        }
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Allowed (or, for admin requests and releases, done).
    Allow,
    /// Refused by a rule; `reason` says which.
    Reject,
    /// Failed for another cause (unknown ticket, duplicate id, unreadable keys.json);
    /// `error` says which.
    Error,
}

impl Outcome {
    /// `allow`, `reject` or `error`, as in the record and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Reject => "reject",
            Outcome::Error => "error",
        }
    }
}

/// The order part of a record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditOrder {
    /// `simulate` or `real`.
    pub env: &'static str,
    /// e.g. `HK`.
    pub market: &'static str,
    /// e.g. `HK.00700`.
    pub symbol: String,
    /// e.g. `SELL`.
    pub side: &'static str,
    /// Quantity as sent.
    pub qty: f64,
    /// Price as sent.
    pub price: Option<f64>,
    /// qty × price, exact to 10⁻⁸ (null without a price).
    pub value: Option<f64>,
}

impl AuditOrder {
    /// The record of `order`, whose exact value (if computed) is `value`.
    pub fn of(order: &Order, value: Option<Money>) -> AuditOrder {
        AuditOrder {
            env: order.env.as_str(),
            market: order.market.as_str(),
            symbol: redact(&order.symbol).chars().take(64).collect(),
            side: order.side.as_str(),
            qty: order.qty,
            price: order.price,
            value: value
                .map(Money::as_f64)
                .or_else(|| order.price.map(|p| order.qty * p).filter(|v| v.is_finite())),
        }
    }
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    /// When the request was answered; written as RFC 3339 in UTC with microseconds (the
    /// formatting happens on the writer thread, off the decision path).
    #[serde(serialize_with = "serialize_ts")]
    pub ts: Timestamp,
    /// What kind of request.
    pub kind: Kind,
    /// The front-end it came through (null for admin requests and releases).
    pub iface: Option<&'static str>,
    /// The endpoint of a check; for other requests the request name (`Release`, `GenKey`).
    pub endpoint: String,
    /// The key involved; null when the token matched no key.
    pub key_id: Option<KeyId>,
    /// allow, reject or error.
    pub outcome: Outcome,
    /// The reason code of a reject.
    pub reason: Option<&'static str>,
    /// The error kind of an error.
    pub error: Option<&'static str>,
    /// One line for a person.
    pub detail: Option<String>,
    /// The scope the endpoint needed.
    pub scope: Option<&'static str>,
    /// The order of an order write.
    pub order: Option<AuditOrder>,
    /// Whether the check was a dry run (nothing consumed).
    pub dry_run: bool,
    /// The ticket of an allowed order, or the ticket released.
    pub ticket: Option<u64>,
    /// For a reject where waiting helps (rate, daily_value, hours): how long until asking
    /// again can succeed, as the client was told. Left out of the line otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// For a session's push decision (a `check_scope` record of a SessionCheck): how many
    /// pushes it was for. Left out of the line otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pushes: Option<u32>,
    /// The client's request id.
    pub request_id: u64,
    /// The connecting process's uid (SO_PEERCRED).
    pub peer_uid: u32,
    /// The connecting process's pid.
    pub peer_pid: u32,
    /// From reading the request to deciding, in microseconds.
    pub latency_us: u64,
}

impl AuditRecord {
    /// A record stamped now, with everything optional empty.
    pub fn new(
        kind: Kind,
        endpoint: &str,
        outcome: Outcome,
        request_id: u64,
        peer: crate::peer::Peer,
    ) -> AuditRecord {
        AuditRecord {
            ts: Timestamp::now(),
            kind,
            iface: None,
            endpoint: match redact(endpoint) {
                std::borrow::Cow::Borrowed(e) if e.len() <= 128 => e.to_owned(),
                shown => shown.chars().take(128).collect(),
            },
            key_id: None,
            outcome,
            reason: None,
            error: None,
            detail: None,
            scope: None,
            order: None,
            dry_run: false,
            ticket: None,
            retry_after_ms: None,
            pushes: None,
            request_id,
            peer_uid: peer.uid,
            peer_pid: peer.pid,
            latency_us: 0,
        }
    }

    /// Sets the interface.
    pub fn iface(mut self, iface: Iface) -> Self {
        self.iface = Some(iface.as_str());
        self
    }

    /// Sets the reason of a reject.
    pub fn reason(mut self, reason: Reason) -> Self {
        self.reason = Some(reason.as_str());
        self
    }

    /// Sets the scope.
    pub fn scope(mut self, scope: Option<Scope>) -> Self {
        self.scope = scope.map(Scope::as_str);
        self
    }

    /// Appends the record as one JSON line to `out`: the bytes serde_json makes of the
    /// record (its `Serialize` is the schema; a test holds the two equal), written field
    /// by field without serde's per-field machinery, which was the biggest cost of an
    /// order check after the socket (PERFORMANCE.md, "Performance round 2").
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"ts\":\"");
        write_ts(self.ts, out);
        out.extend_from_slice(b"\",\"kind\":\"");
        out.extend_from_slice(self.kind.as_str().as_bytes());
        out.extend_from_slice(b"\",\"iface\":");
        opt_str(self.iface, out);
        out.extend_from_slice(b",\"endpoint\":");
        json_str(&self.endpoint, out);
        out.extend_from_slice(b",\"key_id\":");
        opt_str(self.key_id.as_ref().map(KeyId::as_str), out);
        out.extend_from_slice(b",\"outcome\":\"");
        out.extend_from_slice(self.outcome.as_str().as_bytes());
        out.extend_from_slice(b"\",\"reason\":");
        opt_str(self.reason, out);
        out.extend_from_slice(b",\"error\":");
        opt_str(self.error, out);
        out.extend_from_slice(b",\"detail\":");
        opt_str(self.detail.as_deref(), out);
        out.extend_from_slice(b",\"scope\":");
        opt_str(self.scope, out);
        out.extend_from_slice(b",\"order\":");
        match &self.order {
            Some(o) => o.write_json(out),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(if self.dry_run {
            b",\"dry_run\":true,\"ticket\":"
        } else {
            b",\"dry_run\":false,\"ticket\":"
        });
        match self.ticket {
            Some(t) => json_u64(t, out),
            None => out.extend_from_slice(b"null"),
        }
        if let Some(ms) = self.retry_after_ms {
            out.extend_from_slice(b",\"retry_after_ms\":");
            json_u64(ms, out);
        }
        if let Some(n) = self.pushes {
            out.extend_from_slice(b",\"pushes\":");
            json_u64(n.into(), out);
        }
        out.extend_from_slice(b",\"request_id\":");
        json_u64(self.request_id, out);
        out.extend_from_slice(b",\"peer_uid\":");
        json_u64(self.peer_uid.into(), out);
        out.extend_from_slice(b",\"peer_pid\":");
        json_u64(self.peer_pid.into(), out);
        out.extend_from_slice(b",\"latency_us\":");
        json_u64(self.latency_us, out);
        out.extend_from_slice(b"}\n");
    }
}

impl AuditOrder {
    /// Appends the order as the JSON object serde_json makes of it.
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"env\":");
        json_str(self.env, out);
        out.extend_from_slice(b",\"market\":");
        json_str(self.market, out);
        out.extend_from_slice(b",\"symbol\":");
        json_str(&self.symbol, out);
        out.extend_from_slice(b",\"side\":");
        json_str(self.side, out);
        out.extend_from_slice(b",\"qty\":");
        json_f64(self.qty, out);
        out.extend_from_slice(b",\"price\":");
        match self.price {
            Some(p) => json_f64(p, out),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"value\":");
        match self.value {
            Some(v) => json_f64(v, out),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
    }
}

/// A JSON string, or null.
fn opt_str(s: Option<&str>, out: &mut Vec<u8>) {
    match s {
        Some(s) => json_str(s, out),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string as serde_json writes it: copied as is when nothing in it needs an
/// escape (the usual case), else escaped by serde_json itself.
fn json_str(s: &str, out: &mut Vec<u8>) {
    if s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        serde_json::to_writer(&mut *out, s).expect("a string always serializes");
    } else {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// A number as serde_json writes an `f64` (null when not finite).
fn json_f64(x: f64, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, &x).expect("a number always serializes");
}

/// Decimal digits, as serde_json writes a `u64`.
fn json_u64(mut n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Splits `t` into whole seconds and the microseconds after them (never negative).
fn second_and_micros(t: Timestamp) -> (i64, i32) {
    let (second, micros) = (t.as_second(), t.subsec_microsecond());
    if micros < 0 {
        (second - 1, micros + 1_000_000)
    } else {
        (second, micros)
    }
}

/// Calls `f` with `second` formatted to the second (`2026-04-20T10:00:00`): once per
/// second and thread, since records of one second share it.
fn with_second<R>(second: i64, f: impl FnOnce(&str) -> R) -> R {
    thread_local! {
        static SECOND: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != second {
            *cached = second;
            *text = Timestamp::from_second(second)
                .map(|whole| whole.strftime("%Y-%m-%dT%H:%M:%S").to_string())
                .unwrap_or_default();
        }
        f(text)
    })
}

/// [`serialize_ts`]'s text, without the quotes, appended to `out`.
fn write_ts(t: Timestamp, out: &mut Vec<u8>) {
    let (second, micros) = second_and_micros(t);
    with_second(second, |text| out.extend_from_slice(text.as_bytes()));
    let micros = micros as u32;
    out.push(b'.');
    for div in [100_000, 10_000, 1_000, 100, 10, 1] {
        out.push(b'0' + (micros / div % 10) as u8);
    }
    out.push(b'Z');
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-04-20T10:00:00.123456Z`.
fn serialize_ts<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    let (second, micros) = second_and_micros(*t);
    with_second(second, |text| s.collect_str(&format_args!("{text}.{micros:06}Z")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::Peer;

    fn peer() -> Peer {
        Peer {
            uid: 1000,
            gid: 1000,
            pid: 4242,
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let mut r = AuditRecord::new(Kind::Check, "Qot_GetBasicQot", Outcome::Allow, 1, peer());
        for (t, shown) in [
            ("2026-04-20T10:00:00.1234567Z", "2026-04-20T10:00:00.123456Z"),
            ("2026-04-20T10:00:00.9Z", "2026-04-20T10:00:00.900000Z"),
            ("2026-04-20T10:00:01Z", "2026-04-20T10:00:01.000000Z"),
            ("1969-12-31T23:59:59.5Z", "1969-12-31T23:59:59.500000Z"),
        ] {
            r.ts = t.parse().unwrap();
            let v = serde_json::to_value(&r).unwrap();
            assert_eq!(v["ts"], shown);
        }
    }

    #[test]
    fn written_lines_are_the_bytes_serde_json_makes_of_the_record() {
        let order = |qty: f64, price: Option<f64>, value: Option<f64>, symbol: &str| AuditOrder {
            env: "simulate",
            market: "HK",
            symbol: symbol.to_owned(),
            side: "SELL",
            qty,
            price,
            value,
        };
        let base = AuditRecord::new(Kind::Check, "Trd_PlaceOrder", Outcome::Allow, 7, peer());
        let mut records = vec![base.clone()];
        let texts = [
            "plain",
            "quote \" and backslash \\",
            "controls \n\r\t\u{8}\u{c}\u{1}\u{1f} and \u{7f}",
            "unicode 騰訊 ✓ \u{2028}",
            "",
        ];
        let numbers = [
            0.0,
            -0.0,
            100.0,
            388.2,
            38_820.000_000_01,
            1e-7,
            1e16,
            1e21,
            123_456_789.123_456_79,
            f64::NAN,
            f64::INFINITY,
            f64::MIN_POSITIVE,
            f64::MAX,
        ];
        for (i, text) in texts.iter().enumerate() {
            for (j, x) in numbers.iter().enumerate() {
                let mut r = base.clone();
                r.ts =
                    Timestamp::from_microsecond(1_776_679_200_123_456 + (i * 1_000_003 + j) as i64).unwrap();
                r.kind = [Kind::Check, Kind::CheckScope, Kind::Release, Kind::Admin][j % 4];
                r.outcome = [Outcome::Allow, Outcome::Reject, Outcome::Error][j % 3];
                r.iface = (j % 2 == 0).then_some("http");
                r.endpoint = text.to_string();
                r.key_id = (j % 3 != 0).then(|| "bench-key_1.a".parse().unwrap());
                r.reason = (j % 2 == 1).then_some("daily_value");
                r.error = (j % 5 == 1).then_some("internal");
                r.detail = (j % 2 == 0).then(|| format!("{text} {x}"));
                r.scope = (j % 3 == 1).then_some("trade:simulate");
                r.order = (j % 4 != 3).then(|| order(*x, (j % 2 == 0).then_some(*x), Some(*x), text));
                r.dry_run = j % 2 == 1;
                r.ticket = (j % 3 == 0).then_some(u64::MAX - j as u64);
                r.retry_after_ms = (j % 4 == 2).then_some(j as u64 * 1000);
                r.request_id = if j == 0 { 0 } else { u64::MAX / j as u64 };
                r.peer_uid = u32::MAX - j as u32;
                r.latency_us = j as u64;
                records.push(r);
            }
        }
        for r in &records {
            let mut ours = Vec::new();
            r.write_json(&mut ours);
            let mut serde = serde_json::to_vec(r).unwrap();
            serde.push(b'\n');
            assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&serde));
        }
    }

    #[test]
    fn a_record_never_holds_a_token_shaped_endpoint() {
        let r = AuditRecord::new(
            Kind::Check,
            "fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f",
            Outcome::Reject,
            1,
            peer(),
        );
        assert_eq!(r.endpoint, "fc_<redacted>");
    }
}
