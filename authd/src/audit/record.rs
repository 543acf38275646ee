//! The record schema: one JSON line of the audit file per decision and per admin
//! operation (`journald.rs` sends the same fields to journald).

use futu_auth_proto::key::redact;
use futu_auth_proto::{Iface, KeyId, Order, Reason, Scope};
use jiff::Timestamp;
use serde::Serialize;

use crate::money::Money;

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

    /// Appends the record as one JSON line to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(&mut *out, self).expect("an audit record always serializes");
        out.push(b'\n');
    }
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-04-20T10:00:00.123456Z`.
/// The date and time to the second is formatted once per second (per thread; only the
/// writer thread formats) and the microseconds appended.
fn serialize_ts<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    thread_local! {
        static SECOND: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    let (second, micros) = (t.as_second(), t.subsec_microsecond());
    let (second, micros) = if micros < 0 {
        (second - 1, micros + 1_000_000)
    } else {
        (second, micros)
    };
    SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != second {
            *cached = second;
            *text = Timestamp::from_second(second)
                .map(|whole| whole.strftime("%Y-%m-%dT%H:%M:%S").to_string())
                .unwrap_or_default();
        }
        s.collect_str(&format_args!("{text}.{micros:06}Z"))
    })
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
