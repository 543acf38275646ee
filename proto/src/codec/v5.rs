//! What a peer of protocol version 5 or older reads and writes, where version 6 changed
//! the bytes: a [`Check`] ends after `dry_run` (no `acc_id`, no `ref_price`), and a
//! [`Limits`] — inside a [`KeySpec`] (GenKey) or a [`KeyRecord`] (KeyGenerated, Keys,
//! KeyBound, KeysPage) — has the seven fields of version 1. Every other message is the
//! same bytes in both.
//!
//! What such a peer cannot be told is never put in its bytes: a record with the scope
//! `admin` or a limit of version 6 would be a frame it cannot read (an unknown scope
//! index, or five bytes too many), and a record shown without them would be a key shown
//! with less than it has. So a response that carries one is answered, to that peer alone,
//! with an Error `internal` that names the key and says to use a client of version 6. A
//! client of version 6 talking to an older daemon likewise refuses to send what that
//! daemon could not read (a Check with an account or a reference price, a GenKey with the
//! new fields, an OrderEvent): [`CodecError::Encode`], before anything is written.
//!
//! A message is laid out here as its variant index (a varint `u32`, as bincode writes an
//! enum's) followed by its fields: a tuple of the two is the same bytes as the variant.

use serde::{Deserialize, Serialize};

use super::record::{Layout, WireIn};
use super::{decode_message, encode_message, CodecError, CONFIG};
use crate::key::{
    Cap, Fingerprint, HoursWindow, KeyHash, KeyId, KeyRecord, KeySpec, Limits, Market, Scope, Symbol, Token,
    TrdSide,
};
use crate::message::{Check, ErrorKind, Iface, Order, Request, Response, SessionSubject, Usage};

/// The first protocol version with the pre-trade risk limits.
pub(super) const RISK_SINCE: u16 = 6;

/// Variant indices of [`Request`] (pinned by the golden vectors).
const REQUEST_CHECK: u32 = 1;
const REQUEST_GEN_KEY: u32 = 4;
const REQUEST_ORDER_EVENT: u32 = 19;

/// Variant indices of [`Response`] (pinned by the golden vectors).
const RESPONSE_KEY_GENERATED: u32 = 3;
const RESPONSE_KEYS: u32 = 4;
const RESPONSE_KEY_BOUND: u32 = 6;
const RESPONSE_KEYS_PAGE: u32 = 10;
const RESPONSE_USAGE: u32 = 8;

/// What of `scopes` and `limits` a peer older than version 6 cannot be told: `admin` and
/// the version-6 limits that are set, by name; empty when it can be told everything.
fn newer_than_v5(scopes: &[Scope], limits: &Limits) -> Vec<&'static str> {
    let mut newer = Vec::new();
    if scopes.contains(&Scope::Admin) {
        newer.push("scope admin");
    }
    newer.extend(limits.since_v6());
    newer
}

/// The body a peer older than version 6 reads for `req`.
pub(super) fn encode_request(req: &Request, version: u16) -> Result<Vec<u8>, CodecError> {
    let too_new = |what: String| {
        Err(CodecError::Encode(format!(
            "{what} needs protocol version {RISK_SINCE}; this connection speaks {version}"
        )))
    };
    match req {
        Request::Check(c) => {
            // Taken apart so that a field added to Check does not compile until sorted.
            let Check {
                request_id,
                token,
                iface,
                endpoint,
                order,
                dry_run,
                acc_id,
                ref_price,
            } = c;
            if acc_id.is_some() {
                return too_new("a check naming an account".into());
            }
            if ref_price.is_some() {
                return too_new("a check with a reference price".into());
            }
            encode_message(&(
                REQUEST_CHECK,
                CheckV5Ref {
                    request_id: *request_id,
                    token,
                    iface: *iface,
                    endpoint,
                    order,
                    dry_run: *dry_run,
                },
            ))
        }
        Request::GenKey { request_id, spec } => {
            let newer = newer_than_v5(&spec.scopes, &spec.limits);
            if !newer.is_empty() {
                return too_new(format!("a key with {}", newer.join(", ")));
            }
            encode_message(&(REQUEST_GEN_KEY, *request_id, WireIn(spec, Layout::V5)))
        }
        Request::CheckScope(c) if c.scope == Scope::Admin => too_new("the scope admin".into()),
        Request::SessionCheck(c)
            if matches!(
                c.subject,
                SessionSubject::Pushes {
                    scope: Scope::Admin,
                    ..
                }
            ) =>
        {
            too_new("the scope admin".into())
        }
        Request::OrderEvent(_) => too_new("OrderEvent".into()),
        other => encode_message(other),
    }
}

/// The request in a body a peer older than version 6 wrote.
pub(super) fn decode_request(body: &[u8], version: u16) -> Result<Request, CodecError> {
    let malformed = |what: &str| {
        Err(CodecError::Malformed(format!(
            "{what} in a message of protocol version {version}, which does not have it"
        )))
    };
    let req = match variant(body) {
        Some(REQUEST_CHECK) => {
            let (_, c) = decode_message::<(u32, CheckV5)>(body)?;
            Request::Check(Check {
                request_id: c.request_id,
                token: c.token,
                iface: c.iface,
                endpoint: c.endpoint,
                order: c.order,
                dry_run: c.dry_run,
                acc_id: None,
                ref_price: None,
            })
        }
        Some(REQUEST_GEN_KEY) => {
            let (_, request_id, spec) = decode_message::<(u32, u64, KeySpecV5)>(body)?;
            Request::GenKey {
                request_id,
                spec: spec.into(),
            }
        }
        Some(REQUEST_ORDER_EVENT) => return malformed("request OrderEvent"),
        _ => decode_message(body)?,
    };
    match &req {
        Request::GenKey { spec, .. } if spec.scopes.contains(&Scope::Admin) => malformed("scope admin"),
        Request::CheckScope(c) if c.scope == Scope::Admin => malformed("scope admin"),
        Request::SessionCheck(c)
            if matches!(
                c.subject,
                SessionSubject::Pushes {
                    scope: Scope::Admin,
                    ..
                }
            ) =>
        {
            malformed("scope admin")
        }
        _ => Ok(req),
    }
}

/// The body a peer older than version 6 reads for a response that carries key records, or
/// None for any other response (written as in its own version).
pub(super) fn encode_records(resp: &Response, version: u16) -> Result<Option<Vec<u8>>, CodecError> {
    let records: &[KeyRecord] = match resp {
        Response::KeyGenerated { record, .. } | Response::KeyBound { record, .. } => {
            std::slice::from_ref(record)
        }
        Response::Keys { keys, .. } | Response::KeysPage { keys, .. } => keys,
        Response::Usage(u) => {
            // Version 6's figures of open orders and positions are left out: an older peer
            // reads the figures it knows.
            let Usage {
                request_id,
                id,
                day,
                daily_value_used,
                max_daily_value,
                orders_last_minute,
                max_orders_per_minute,
                open_orders: _,
                max_open_orders: _,
                positions: _,
                max_position_value: _,
            } = u;
            return encode_message(&(
                RESPONSE_USAGE,
                *request_id,
                id,
                day,
                *daily_value_used,
                *max_daily_value,
                *orders_last_minute,
                *max_orders_per_minute,
            ))
            .map(Some);
        }
        _ => return Ok(None),
    };
    for r in records {
        let newer = newer_than_v5(&r.scopes, &r.limits);
        if !newer.is_empty() {
            return encode_message(&Response::Error {
                request_id: resp.request_id(),
                kind: ErrorKind::Internal,
                message: format!(
                    "key {} has {}, which protocol version {version} cannot carry; use a client of protocol version {RISK_SINCE}",
                    r.id,
                    newer.join(", ")
                ),
            })
            .map(Some);
        }
    }
    let old = |r| WireIn(r, Layout::V5);
    let body = match resp {
        Response::KeyGenerated {
            request_id,
            plaintext,
            record,
            stored_in,
        } => encode_message(&(
            RESPONSE_KEY_GENERATED,
            *request_id,
            plaintext,
            old(record),
            stored_in,
        ))?,
        Response::Keys { request_id, keys } => encode_message(&(
            RESPONSE_KEYS,
            *request_id,
            keys.iter().map(old).collect::<Vec<_>>(),
        ))?,
        Response::KeyBound { request_id, record } => {
            encode_message(&(RESPONSE_KEY_BOUND, *request_id, old(record)))?
        }
        Response::KeysPage {
            request_id,
            listing,
            offset,
            total,
            keys,
        } => encode_message(&(
            RESPONSE_KEYS_PAGE,
            *request_id,
            *listing,
            *offset,
            *total,
            keys.iter().map(old).collect::<Vec<_>>(),
        ))?,
        _ => unreachable!("only responses with records get here"),
    };
    Ok(Some(body))
}

/// The response in a body a peer older than version 6 wrote, when it carries key records;
/// None for any other response (read as in its own version).
pub(super) fn decode_records(body: &[u8]) -> Result<Option<Response>, CodecError> {
    let resp = match variant(body) {
        Some(RESPONSE_KEY_GENERATED) => {
            let (_, request_id, plaintext, record, stored_in) =
                decode_message::<(u32, u64, Token, KeyRecordV5, String)>(body)?;
            Response::KeyGenerated {
                request_id,
                plaintext,
                record: record.into(),
                stored_in,
            }
        }
        Some(RESPONSE_KEYS) => {
            let (_, request_id, keys) = decode_message::<(u32, u64, Vec<KeyRecordV5>)>(body)?;
            Response::Keys {
                request_id,
                keys: keys.into_iter().map(Into::into).collect(),
            }
        }
        Some(RESPONSE_KEY_BOUND) => {
            let (_, request_id, record) = decode_message::<(u32, u64, KeyRecordV5)>(body)?;
            Response::KeyBound {
                request_id,
                record: record.into(),
            }
        }
        Some(RESPONSE_KEYS_PAGE) => {
            let (_, request_id, listing, offset, total, keys) =
                decode_message::<(u32, u64, u64, u32, u32, Vec<KeyRecordV5>)>(body)?;
            Response::KeysPage {
                request_id,
                listing,
                offset,
                total,
                keys: keys.into_iter().map(Into::into).collect(),
            }
        }
        Some(RESPONSE_USAGE) => {
            let (
                _,
                request_id,
                id,
                day,
                daily_value_used,
                max_daily_value,
                orders_last_minute,
                max_orders_per_minute,
            ) = decode_message::<(u32, u64, KeyId, String, f64, Option<f64>, u32, Option<u32>)>(body)?;
            Response::Usage(Usage {
                request_id,
                id,
                day,
                daily_value_used,
                max_daily_value,
                orders_last_minute,
                max_orders_per_minute,
                open_orders: 0,
                max_open_orders: None,
                positions: Vec::new(),
                max_position_value: None,
            })
        }
        _ => return Ok(None),
    };
    let records: &[KeyRecord] = match &resp {
        Response::KeyGenerated { record, .. } | Response::KeyBound { record, .. } => {
            std::slice::from_ref(record)
        }
        Response::Keys { keys, .. } | Response::KeysPage { keys, .. } => keys,
        _ => &[],
    };
    if records.iter().any(|r| r.scopes.contains(&Scope::Admin)) {
        return Err(CodecError::Malformed(
            "scope admin in a message of a protocol version before 6, which does not have it".into(),
        ));
    }
    Ok(Some(resp))
}

/// The variant index a body starts with, if it starts with one.
fn variant(body: &[u8]) -> Option<u32> {
    bincode::serde::decode_from_slice::<u32, _>(body, CONFIG)
        .ok()
        .map(|(v, _)| v)
}

/// A [`Check`] as versions 1 to 5 write it.
#[derive(Serialize)]
struct CheckV5Ref<'a> {
    request_id: u64,
    token: &'a Token,
    iface: Iface,
    endpoint: &'a str,
    order: &'a Option<Order>,
    dry_run: bool,
}

/// A [`Check`] as versions 1 to 5 write it, read.
#[derive(Deserialize)]
struct CheckV5 {
    request_id: u64,
    token: Token,
    iface: Iface,
    endpoint: String,
    order: Option<Order>,
    dry_run: bool,
}

/// [`Limits`] as versions 1 to 5 write them: seven fields.
#[derive(Deserialize)]
struct LimitsV5 {
    allowed_markets: Option<Vec<Market>>,
    allowed_symbols: Option<Vec<Symbol>>,
    allowed_trd_sides: Option<Vec<TrdSide>>,
    max_order_value: Option<Cap>,
    max_daily_value: Option<Cap>,
    max_orders_per_minute: Option<u32>,
    hours_window: Option<HoursWindow>,
}

impl From<LimitsV5> for Limits {
    fn from(l: LimitsV5) -> Limits {
        Limits {
            allowed_markets: l.allowed_markets,
            allowed_symbols: l.allowed_symbols,
            allowed_trd_sides: l.allowed_trd_sides,
            max_order_value: l.max_order_value,
            max_daily_value: l.max_daily_value,
            max_orders_per_minute: l.max_orders_per_minute,
            hours_window: l.hours_window,
            ..Limits::default()
        }
    }
}

/// A [`KeySpec`] as versions 1 to 5 write it.
#[derive(Deserialize)]
struct KeySpecV5 {
    id: KeyId,
    scopes: Vec<Scope>,
    limits: LimitsV5,
    allowed_machines: Option<Vec<Fingerprint>>,
    expires_at: Option<jiff::Timestamp>,
    note: Option<String>,
}

impl From<KeySpecV5> for KeySpec {
    fn from(s: KeySpecV5) -> KeySpec {
        KeySpec {
            id: s.id,
            scopes: s.scopes,
            limits: s.limits.into(),
            allowed_machines: s.allowed_machines,
            expires_at: s.expires_at,
            note: s.note,
        }
    }
}

/// A [`KeyRecord`] as versions 1 to 5 write it.
#[derive(Deserialize)]
struct KeyRecordV5 {
    id: KeyId,
    hash: KeyHash,
    scopes: Vec<Scope>,
    limits: LimitsV5,
    allowed_machines: Option<Vec<Fingerprint>>,
    created_at: jiff::Timestamp,
    expires_at: Option<jiff::Timestamp>,
    note: Option<String>,
}

impl From<KeyRecordV5> for KeyRecord {
    fn from(r: KeyRecordV5) -> KeyRecord {
        KeyRecord {
            id: r.id,
            hash: r.hash,
            scopes: r.scopes,
            limits: r.limits.into(),
            allowed_machines: r.allowed_machines,
            created_at: r.created_at,
            expires_at: r.expires_at,
            note: r.note,
        }
    }
}
