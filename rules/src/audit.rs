//! The audit record: one JSON line of the audit file per decision and per admin
//! operation. One type, written by the daemon ([`AuditRecord::write_json`], the bytes its
//! `Serialize` makes, field by field for speed) and read back by `futucli replay`
//! ([`AuditRecord::parse`]): every field that code branches on is an enum of the protocol
//! (`Kind`, `Outcome`, [`Reason`], [`ErrorKind`], [`Iface`], [`Scope`]), spelled in the line
//! as the protocol, the metrics and the README spell it.
//!
//! A number that is not finite is written as `null` (JSON has no other way); an order's
//! price that was not a finite number also sets `price_not_finite`, so that a reader can
//! tell it from an order without a price (a market order). A check's `ref_price` is left
//! out of the line when the check had none, so its `null` is one that was not finite.

use futu_auth_proto::key::{redact, HaltTarget, InvalidValue};
use futu_auth_proto::{
    ErrorKind, Iface, KeyId, Market, Order, OrderEvent, OrderEventKind, Reason, Scope, TrdEnv, TrdSide,
};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::money::Money;

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A Check (and a session's keep-alive, a dry run of `KeepAlive`).
    Check,
    /// A CheckScope (and a session's decision on its pushes).
    CheckScope,
    /// A Release.
    Release,
    /// An OrderEvent: what became of an allowed order.
    OrderEvent,
    /// An admin request.
    Admin,
}

impl Kind {
    /// `check`, `check_scope`, `release`, `order_event` or `admin`, as in the record.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Check => "check",
            Kind::CheckScope => "check_scope",
            Kind::Release => "release",
            Kind::OrderEvent => "order_event",
            Kind::Admin => "admin",
        }
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

/// The keys a record is about: one key (its id), or every key (`*`: a halt or resume of
/// all trading).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum AuditKey {
    /// One key.
    Key(KeyId),
    /// Every key, written `*`.
    All,
}

impl AuditKey {
    /// The key id, or `*`.
    pub fn as_str(&self) -> &str {
        match self {
            AuditKey::Key(id) => id.as_str(),
            AuditKey::All => "*",
        }
    }

    /// The one key it names, if it names one.
    pub fn key(&self) -> Option<&KeyId> {
        match self {
            AuditKey::Key(id) => Some(id),
            AuditKey::All => None,
        }
    }
}

impl From<KeyId> for AuditKey {
    fn from(id: KeyId) -> AuditKey {
        AuditKey::Key(id)
    }
}

impl From<HaltTarget> for AuditKey {
    fn from(target: HaltTarget) -> AuditKey {
        match target {
            HaltTarget::Key(id) => AuditKey::Key(id),
            HaltTarget::All => AuditKey::All,
        }
    }
}

impl std::str::FromStr for AuditKey {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<AuditKey, InvalidValue> {
        if s == "*" {
            Ok(AuditKey::All)
        } else {
            s.parse().map(AuditKey::Key)
        }
    }
}

impl TryFrom<String> for AuditKey {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<AuditKey, InvalidValue> {
        s.parse()
    }
}

impl From<AuditKey> for String {
    fn from(k: AuditKey) -> String {
        k.as_str().to_owned()
    }
}

/// Who asked: the connecting process, as SO_PEERCRED gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// Its uid.
    pub uid: u32,
    /// Its pid (0 when the kernel did not say).
    pub pid: u32,
}

/// The order part of a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "OrderFields", from = "OrderFields")]
pub struct AuditOrder {
    /// `simulate` or `real`.
    pub env: TrdEnv,
    /// e.g. `HK`.
    pub market: Market,
    /// e.g. `HK.00700` (redacted, at most 64 characters).
    pub symbol: String,
    /// e.g. `SELL`.
    pub side: TrdSide,
    /// Quantity as sent (written `null` when not a finite number; read back as NaN).
    pub qty: f64,
    /// Price as sent; `None` for none (a market order). One that was not a finite number
    /// is written `null` with `price_not_finite`, and read back as NaN.
    pub price: Option<f64>,
    /// qty × price, exact to 10⁻⁸ (null without a price).
    pub value: Option<f64>,
}

impl AuditOrder {
    /// The record of `order`, whose exact value (if computed) is `value`.
    pub fn of(order: &Order, value: Option<Money>) -> AuditOrder {
        AuditOrder {
            env: order.env,
            market: order.market,
            symbol: redact(&order.symbol).chars().take(64).collect(),
            side: order.side,
            qty: order.qty,
            price: order.price,
            value: value
                .map(Money::as_f64)
                .or_else(|| order.price.map(|p| order.qty * p).filter(|v| v.is_finite())),
        }
    }

    /// The order as a check would carry it (what `futucli replay` decides again).
    pub fn to_order(&self) -> Order {
        Order {
            env: self.env,
            market: self.market,
            symbol: self.symbol.clone(),
            side: self.side,
            qty: self.qty,
            price: self.price,
        }
    }

    /// Whether the price was given and was not a finite number.
    fn price_not_finite(&self) -> bool {
        self.price.is_some_and(|p| !p.is_finite())
    }
}

/// [`AuditOrder`] as the line holds it.
#[derive(Serialize, Deserialize)]
struct OrderFields {
    env: TrdEnv,
    market: Market,
    symbol: String,
    side: TrdSide,
    /// `null` is a quantity that was not a finite number.
    #[serde(deserialize_with = "nan_if_null")]
    qty: f64,
    price: Option<f64>,
    value: Option<f64>,
    /// Left out of the line unless the price was not a finite number.
    #[serde(default, skip_serializing_if = "is_false")]
    price_not_finite: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A number present in the line, or NaN for a `null` there (what a number that was not
/// finite became); a field left out is `None` by its default.
fn some_nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(Some(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN)))
}

/// A number, or NaN for `null` (what a number that was not finite became).
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

impl From<AuditOrder> for OrderFields {
    fn from(o: AuditOrder) -> OrderFields {
        let price_not_finite = o.price_not_finite();
        OrderFields {
            env: o.env,
            market: o.market,
            symbol: o.symbol,
            side: o.side,
            qty: o.qty,
            price: o.price,
            value: o.value,
            price_not_finite,
        }
    }
}

impl From<OrderFields> for AuditOrder {
    fn from(o: OrderFields) -> AuditOrder {
        AuditOrder {
            env: o.env,
            market: o.market,
            symbol: o.symbol,
            side: o.side,
            qty: o.qty,
            price: if o.price_not_finite {
                Some(o.price.unwrap_or(f64::NAN))
            } else {
                o.price
            },
            value: o.value,
        }
    }
}

/// The event part of an order event's record: what the gateway said became of the order
/// whose ticket the record names.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// `accepted`, `partially_filled`, `filled`, `cancelled` or `rejected`.
    pub kind: OrderEventKind,
    /// For a fill: the quantity the order has filled so far, in all (null for none, or
    /// for a figure that was not a finite number, which the event was refused for).
    pub filled_qty: Option<f64>,
    /// For a fill: the average price of `filled_qty` (null as `filled_qty`).
    pub fill_price: Option<f64>,
}

impl AuditEvent {
    /// The record of `e`.
    pub fn of(e: &OrderEvent) -> AuditEvent {
        AuditEvent {
            kind: e.kind,
            filled_qty: e.filled_qty,
            fill_price: e.fill_price,
        }
    }

    /// Appends the event as the JSON object serde_json makes of it.
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"kind\":\"");
        out.extend_from_slice(self.kind.as_str().as_bytes());
        out.extend_from_slice(b"\",\"filled_qty\":");
        opt_f64(self.filled_qty, out);
        out.extend_from_slice(b",\"fill_price\":");
        opt_f64(self.fill_price, out);
        out.push(b'}');
    }
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When the request was answered; written as RFC 3339 in UTC with microseconds (the
    /// formatting happens on the writer thread, off the decision path).
    #[serde(serialize_with = "serialize_ts")]
    pub ts: Timestamp,
    /// What kind of request.
    pub kind: Kind,
    /// The front-end it came through (null for admin requests and releases).
    pub iface: Option<Iface>,
    /// The endpoint of a check; for a scope check the scope; for other requests the
    /// request name (`Release`, `GenKey`).
    pub endpoint: String,
    /// The key involved; null when the token matched no key; `*` for an admin request
    /// about every key (a halt or resume of all trading).
    pub key_id: Option<AuditKey>,
    /// allow, reject or error.
    pub outcome: Outcome,
    /// The reason code of a reject.
    pub reason: Option<Reason>,
    /// The error kind of an error.
    pub error: Option<ErrorKind>,
    /// One line for a person. Never read back to decide anything.
    pub detail: Option<String>,
    /// The scope the endpoint needed.
    pub scope: Option<Scope>,
    /// The order of an order write.
    pub order: Option<AuditOrder>,
    /// The account a check named (protocol version 6: the order's, or the one an account
    /// read reads). Left out of the line when it named none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acc_id: Option<u64>,
    /// The reference price a check carried for the price collar (protocol version 6).
    /// Left out of the line when it carried none; `null` when it was not a finite number
    /// (read back as NaN, which the rules refuse as the daemon did).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some_nan_if_null"
    )]
    pub ref_price: Option<f64>,
    /// What an order event said (kind `order_event`). Left out of the lines of other kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<AuditEvent>,
    /// Whether the check was a dry run (nothing consumed).
    #[serde(default)]
    pub dry_run: bool,
    /// The ticket of an allowed order, or the ticket released.
    pub ticket: Option<u64>,
    /// For a reject where waiting helps (rate, daily_value, hours): how long until asking
    /// again can succeed, as the client was told. Left out of the line otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// For a session's push decision (a `check_scope` record of a SessionCheck): how many
    /// pushes it was for. Left out of the line otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushes: Option<u32>,
    /// The client's request id.
    pub request_id: u64,
    /// The connecting process's uid (SO_PEERCRED).
    #[serde(default)]
    pub peer_uid: u32,
    /// The connecting process's pid.
    #[serde(default)]
    pub peer_pid: u32,
    /// From reading the request to deciding, in microseconds.
    #[serde(default)]
    pub latency_us: u64,
}

/// Why a line is not an audit record.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Not JSON at all (cut short, say).
    #[error("not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// JSON, but not a record: a field missing, or a value no record holds.
    #[error("not an audit record: {0}")]
    NotARecord(#[source] serde_json::Error),
}

impl AuditRecord {
    /// A record stamped now (the wall clock), from `caller`, with everything optional
    /// empty.
    pub fn new(
        kind: Kind,
        endpoint: &str,
        outcome: Outcome,
        request_id: u64,
        caller: impl Into<Caller>,
    ) -> AuditRecord {
        let caller = caller.into();
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
            acc_id: None,
            ref_price: None,
            event: None,
            dry_run: false,
            ticket: None,
            retry_after_ms: None,
            pushes: None,
            request_id,
            peer_uid: caller.uid,
            peer_pid: caller.pid,
            latency_us: 0,
        }
    }

    /// Sets the interface.
    pub fn iface(mut self, iface: Iface) -> Self {
        self.iface = Some(iface);
        self
    }

    /// Sets the reason of a reject.
    pub fn reason(mut self, reason: Reason) -> Self {
        self.reason = Some(reason);
        self
    }

    /// Sets the scope.
    pub fn scope(mut self, scope: Option<Scope>) -> Self {
        self.scope = scope;
        self
    }

    /// Reads one line of the audit file.
    pub fn parse(line: &str) -> Result<AuditRecord, RecordError> {
        serde_json::from_str(line).map_err(|e| {
            if e.is_data() {
                RecordError::NotARecord(e)
            } else {
                RecordError::NotJson(e)
            }
        })
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
        opt_str(self.iface.map(Iface::as_str), out);
        out.extend_from_slice(b",\"endpoint\":");
        json_str(&self.endpoint, out);
        out.extend_from_slice(b",\"key_id\":");
        opt_str(self.key_id.as_ref().map(AuditKey::as_str), out);
        out.extend_from_slice(b",\"outcome\":\"");
        out.extend_from_slice(self.outcome.as_str().as_bytes());
        out.extend_from_slice(b"\",\"reason\":");
        opt_str(self.reason.map(Reason::as_str), out);
        out.extend_from_slice(b",\"error\":");
        opt_str(self.error.map(ErrorKind::as_str), out);
        out.extend_from_slice(b",\"detail\":");
        opt_str(self.detail.as_deref(), out);
        out.extend_from_slice(b",\"scope\":");
        opt_str(self.scope.map(Scope::as_str), out);
        out.extend_from_slice(b",\"order\":");
        match &self.order {
            Some(o) => o.write_json(out),
            None => out.extend_from_slice(b"null"),
        }
        if let Some(a) = self.acc_id {
            out.extend_from_slice(b",\"acc_id\":");
            json_u64(a, out);
        }
        if let Some(p) = self.ref_price {
            out.extend_from_slice(b",\"ref_price\":");
            json_f64(p, out);
        }
        if let Some(e) = &self.event {
            out.extend_from_slice(b",\"event\":");
            e.write_json(out);
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
        json_str(self.env.as_str(), out);
        out.extend_from_slice(b",\"market\":");
        json_str(self.market.as_str(), out);
        out.extend_from_slice(b",\"symbol\":");
        json_str(&self.symbol, out);
        out.extend_from_slice(b",\"side\":");
        json_str(self.side.as_str(), out);
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
        if self.price_not_finite() {
            out.extend_from_slice(b",\"price_not_finite\":true");
        }
        out.push(b'}');
    }
}

/// A number (null when not finite), or null.
fn opt_f64(x: Option<f64>, out: &mut Vec<u8>) {
    match x {
        Some(x) => json_f64(x, out),
        None => out.extend_from_slice(b"null"),
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

    fn peer() -> Caller {
        Caller { uid: 1000, pid: 4242 }
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
            env: TrdEnv::Simulate,
            market: Market::HK,
            symbol: symbol.to_owned(),
            side: TrdSide::SELL,
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
                r.kind = [
                    Kind::Check,
                    Kind::CheckScope,
                    Kind::Release,
                    Kind::OrderEvent,
                    Kind::Admin,
                ][j % 5];
                r.outcome = [Outcome::Allow, Outcome::Reject, Outcome::Error][j % 3];
                r.iface = (j % 2 == 0).then_some(Iface::ALL[j % Iface::ALL.len()]);
                r.endpoint = text.to_string();
                r.key_id = match j % 3 {
                    0 => None,
                    1 => Some(AuditKey::Key("bench-key_1.a".parse().unwrap())),
                    _ => Some(AuditKey::All),
                };
                r.reason = (j % 2 == 1).then_some(Reason::ALL[j % Reason::ALL.len()]);
                r.error = (j % 5 == 1).then_some(ErrorKind::Internal);
                r.detail = (j % 2 == 0).then(|| format!("{text} {x}"));
                r.scope = (j % 3 == 1).then_some(Scope::ALL[j % Scope::ALL.len()]);
                r.order = (j % 4 != 3).then(|| order(*x, (j % 2 == 0).then_some(*x), Some(*x), text));
                r.acc_id = (j % 3 != 2).then_some(u64::MAX / (j as u64 + 1));
                r.ref_price = (j % 2 == 1).then_some(*x);
                r.event = (j % 3 == 0).then(|| AuditEvent {
                    kind: OrderEventKind::ALL[j % OrderEventKind::ALL.len()],
                    filled_qty: (j % 2 == 0).then_some(*x),
                    fill_price: (j % 4 == 0).then_some(x * 2.0),
                });
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
            // And read back to the same record, the line byte for byte.
            let text = std::str::from_utf8(&ours).unwrap();
            let back = AuditRecord::parse(text).unwrap();
            let mut again = Vec::new();
            back.write_json(&mut again);
            assert_eq!(String::from_utf8_lossy(&again), text);
        }
    }

    #[test]
    fn a_price_that_was_not_a_finite_number_is_told_from_no_price() {
        let order = |price: Option<f64>| Order {
            env: TrdEnv::Simulate,
            market: Market::HK,
            symbol: "HK.00700".into(),
            side: TrdSide::BUY,
            qty: 100.0,
            price,
        };
        let line = |price: Option<f64>| {
            let mut r = AuditRecord::new(Kind::Check, "Trd_PlaceOrder", Outcome::Reject, 1, peer());
            r.order = Some(AuditOrder::of(&order(price), None));
            let mut out = Vec::new();
            r.write_json(&mut out);
            String::from_utf8(out).unwrap()
        };
        let market = line(None);
        assert!(
            market.contains(r#""price":null,"value":null}"#),
            "no price, no flag: {market}"
        );
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let text = line(Some(bad));
            assert!(
                text.contains(r#""price":null,"value":null,"price_not_finite":true}"#),
                "{text}"
            );
            let back = AuditRecord::parse(&text).unwrap().order.unwrap();
            assert!(back.price.is_some_and(f64::is_nan), "{back:?}");
            assert!(back.to_order().price.is_some_and(|p| !p.is_finite()));
        }
        let back = AuditRecord::parse(&market).unwrap().order.unwrap();
        assert_eq!(back.price, None);
    }

    #[test]
    fn a_checks_account_and_reference_price_are_left_out_unless_it_had_them() {
        let line = |acc_id: Option<u64>, ref_price: Option<f64>| {
            let mut r = AuditRecord::new(Kind::Check, "Trd_PlaceOrder", Outcome::Allow, 1, peer());
            r.acc_id = acc_id;
            r.ref_price = ref_price;
            let mut out = Vec::new();
            r.write_json(&mut out);
            String::from_utf8(out).unwrap()
        };
        let none = line(None, None);
        assert!(!none.contains("acc_id") && !none.contains("ref_price"), "{none}");
        let back = AuditRecord::parse(&none).unwrap();
        assert_eq!((back.acc_id, back.ref_price), (None, None));
        let both = line(Some(281_756_455_983_234), Some(388.4));
        assert!(
            both.contains(r#""order":null,"acc_id":281756455983234,"ref_price":388.4,"dry_run""#),
            "{both}"
        );
        let back = AuditRecord::parse(&both).unwrap();
        assert_eq!(
            (back.acc_id, back.ref_price),
            (Some(281_756_455_983_234), Some(388.4))
        );
        // One that was not a finite number is null, told from none.
        for bad in [f64::NAN, f64::INFINITY] {
            let text = line(None, Some(bad));
            assert!(text.contains(r#""ref_price":null,"#), "{text}");
            let back = AuditRecord::parse(&text).unwrap();
            assert!(back.ref_price.is_some_and(f64::is_nan), "{back:?}");
        }
    }

    #[test]
    fn a_line_that_is_not_a_record_says_whether_it_is_json() {
        assert!(matches!(
            AuditRecord::parse("{\"ts\": tru"),
            Err(RecordError::NotJson(_))
        ));
        assert!(matches!(
            AuditRecord::parse(r#"{"ts": "2026-04-20T10:00:00Z"}"#),
            Err(RecordError::NotARecord(_))
        ));
        let mut r = AuditRecord::new(Kind::Check, "Qot_GetBasicQot", Outcome::Reject, 1, peer());
        r.reason = Some(Reason::Scope);
        let mut line = Vec::new();
        r.write_json(&mut line);
        let text = String::from_utf8(line)
            .unwrap()
            .replace(r#""reason":"scope""#, r#""reason":"no_such_reason""#);
        assert!(matches!(
            AuditRecord::parse(&text),
            Err(RecordError::NotARecord(_))
        ));
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
