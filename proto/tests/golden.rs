//! Golden vectors: the exact bytes of every message on the wire.
//!
//! Each vector is written as a list of hex chunks, one per field, in the order the fields
//! travel; the first chunk is the big-endian `u32` length prefix. The vectors were derived
//! from the bincode 2 standard-configuration rules described in `docs/PROTOCOL.md` and then
//! checked against the real encoder. If one of these tests fails, the wire format changed:
//! that breaks every client written against the document, so change the protocol version
//! (and the document) or change the code back.

use std::fmt::Debug;

use bytes::BytesMut;
use futu_auth_proto::codec::{self, CodecError, FrameCodec, Versioned, MAX_FRAME_LEN};
use futu_auth_proto::key::{
    BindOp, Cap, Fingerprint, Halt, HaltTarget, HaltedBy, HoursWindow, KeyHash, KeyId, KeyRecord, KeySpec,
    Limits, Market, Scope, Symbol, Token, TrdSide,
};
use futu_auth_proto::message::{
    Check, CheckScope, Decision, ErrorKind, Hello, Iface, LimitFigures, Order, OrderEvent, OrderEventKind,
    OrderEventOutcome, OrderEventRefusal, Reason, Request, Response, SessionCheck, SessionOutcome,
    SessionSubject, TrdEnv, Usage, PROTOCOL_VERSION, PROTOCOL_VERSIONS,
};
use jiff::Timestamp;
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::codec::{Decoder, Encoder};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

fn from_hex(hex: &str) -> Vec<u8> {
    assert!(hex.len() % 2 == 0, "odd number of hex digits in {hex:?}");
    hex.as_bytes()
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).expect("ASCII hex");
            u8::from_str_radix(text, 16).unwrap_or_else(|_| panic!("bad hex pair {text:?}"))
        })
        .collect()
}

/// A message of the protocol, as the vectors see it.
trait Message: Versioned + PartialEq + Debug {
    /// Whether protocol version 2 writes it otherwise than version 1 (only a Deny).
    fn differs_in_v2(&self) -> bool;
}

impl Message for Request {
    fn differs_in_v2(&self) -> bool {
        false
    }
}

impl Message for Response {
    fn differs_in_v2(&self) -> bool {
        matches!(
            self,
            Response::Decision {
                decision: Decision::Deny { .. },
                ..
            }
        )
    }
}

/// The vector of `value` for a peer of protocol version 1: encodes `value` as a frame,
/// checks it against the concatenated `fields`, and decodes the vector's body back into a
/// value equal to `value`. Every message but a Deny has the same vector in version 2.
fn assert_golden<T: Message>(value: &T, fields: &[&str]) {
    assert_golden_v(1, value, fields);
    if !value.differs_in_v2() {
        assert_golden_v(2, value, fields);
    }
}

/// [`assert_golden`] for a peer of protocol `version`.
fn assert_golden_v<T: Message>(version: u16, value: &T, fields: &[&str]) {
    let expected = fields.concat();
    let frame = codec::encode_frame_v(value, version).expect("the value encodes");
    assert_eq!(
        to_hex(&frame),
        expected,
        "version {version} wire bytes of {value:?}"
    );
    if version == PROTOCOL_VERSION {
        // The types' own layout is the newest version's.
        assert_eq!(codec::encode_frame(value).unwrap(), frame);
    }

    let bytes = from_hex(&expected);
    let announced = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
    assert_eq!(announced, bytes.len() - 4, "length prefix of {value:?}");
    let decoded: T = codec::decode_message_v(&bytes[4..], version).expect("the vector decodes");
    assert_eq!(&decoded, value);
}

fn malformed<T: DeserializeOwned + Debug>(body: &[u8]) -> String {
    match codec::decode_message::<T>(body) {
        Err(CodecError::Malformed(why)) => why,
        other => panic!("expected Malformed for {}, got {other:?}", to_hex(body)),
    }
}

// ---------------------------------------------------------------------------------------
// Fixtures and their encodings
// ---------------------------------------------------------------------------------------

const TOKEN: &str = "fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f";
/// `TOKEN` as a string: length 35, then its ASCII bytes.
const TOKEN_FIELD: &str = "2366635f3861336632623963316535643761346238633266396531643361356237633966";

const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
/// A `KeyHash` travels as its 64 hex characters, not as 32 raw bytes.
const HASH_FIELD: &str = "4039663836643038313838346337643635396132666561613063353561643031356133626634663162326230623832326364313564366331356230663030613038";

const SIM_BOT_FIELD: &str = "0773696d2d626f74"; // "sim-bot"
const RESEARCH_FIELD: &str = "087265736561726368"; // "research"
const FP_BOT: &str = "fp_bot_host_abc123";
const FP_BACKUP: &str = "fp_backup_host_7f3e";
const CREATED_AT: &str = "2026-04-15T10:00:00Z";
const EXPIRES_AT: &str = "2026-12-31T00:00:00Z";

fn token() -> Token {
    Token::new(TOKEN)
}

fn key_id(s: &str) -> KeyId {
    s.parse().unwrap()
}

fn fp(s: &str) -> Fingerprint {
    s.parse().unwrap()
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn cap(v: f64) -> Cap {
    Cap::try_from(v).unwrap()
}

fn full_limits() -> Limits {
    Limits {
        allowed_markets: Some(vec![Market::HK, Market::US]),
        allowed_symbols: Some(vec!["HK.00700".parse::<Symbol>().unwrap()]),
        allowed_trd_sides: Some(vec![TrdSide::BUY, TrdSide::SELL]),
        max_order_value: Some(cap(50000.0)),
        max_daily_value: Some(cap(200000.0)),
        max_orders_per_minute: Some(10),
        hours_window: Some("09:30-16:00".parse::<HoursWindow>().unwrap()),
        ..Limits::default()
    }
}

/// `full_limits()` on the wire: seven `Option`s, every one `Some`.
const FULL_LIMITS_FIELDS: [&str; 7] = [
    "01020001",                   // allowed_markets: Some, 2 items, HK=0, US=1
    "010108484b2e3030373030",     // allowed_symbols: Some, 1 item, "HK.00700"
    "01020001",                   // allowed_trd_sides: Some, 2 items, BUY=0, SELL=1
    "0100000000006ae840",         // max_order_value: Some, f64 50000.0 LE
    "0100000000006a0841",         // max_daily_value: Some, f64 200000.0 LE
    "010a",                       // max_orders_per_minute: Some, u32 10
    "010b30393a33302d31363a3030", // hours_window: Some, "09:30-16:00"
];

/// `Limits::default()` on the wire: seven `None`s (keys.json would omit them all).
const NO_LIMITS_FIELD: &str = "00000000000000";

fn full_record() -> KeyRecord {
    KeyRecord {
        id: key_id("sim-bot"),
        hash: HASH.parse::<KeyHash>().unwrap(),
        scopes: vec![Scope::QotRead, Scope::TradeSimulate],
        limits: full_limits(),
        allowed_machines: Some(vec![fp(FP_BOT)]),
        created_at: ts(CREATED_AT),
        expires_at: Some(ts(EXPIRES_AT)),
        note: Some("paper bot".into()),
    }
}

fn full_record_fields() -> Vec<&'static str> {
    let mut fields = vec![SIM_BOT_FIELD, HASH_FIELD, "020002"]; // scopes: 2 items, QotRead, TradeSimulate
    fields.extend(FULL_LIMITS_FIELDS);
    fields.extend([
        "01011266705f626f745f686f73745f616263313233", // allowed_machines: Some, 1 item, "fp_bot_host_abc123"
        "14323032362d30342d31355431303a30303a30305a", // created_at: "2026-04-15T10:00:00Z"
        "0114323032362d31322d33315430303a30303a30305a", // expires_at: Some, "2026-12-31T00:00:00Z"
        "0109706170657220626f74",                     // note: Some, "paper bot"
    ]);
    fields
}

fn minimal_record(allowed_machines: Option<Vec<Fingerprint>>) -> KeyRecord {
    KeyRecord {
        id: key_id("research"),
        hash: HASH.parse::<KeyHash>().unwrap(),
        scopes: vec![Scope::QotRead],
        limits: Limits::default(),
        allowed_machines,
        created_at: ts(CREATED_AT),
        expires_at: None,
        note: None,
    }
}

fn check_with_order() -> Request {
    Request::Check(Check {
        request_id: 300,
        token: token(),
        iface: Iface::Rest,
        endpoint: "Trd_PlaceOrder".into(),
        order: Some(Order {
            env: TrdEnv::Simulate,
            market: Market::HK,
            symbol: "HK.00700".into(),
            side: TrdSide::BUY,
            qty: 100.0,
            price: Some(320.5),
        }),
        dry_run: false,
        acc_id: None,
        ref_price: None,
    })
}

/// A version-1 client's Hello.
fn hello() -> Request {
    Request::Hello(Hello {
        protocol_version: 1,
        client_name: "rest".into(),
    })
}

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

#[test]
fn hello_has_pinned_bytes() {
    assert_golden(
        &hello(),
        &[
            "00000007",   // length 7
            "00",         // Request::Hello
            "01",         // protocol_version 1
            "0472657374", // client_name "rest"
        ],
    );
}

#[test]
fn check_with_order_has_pinned_bytes() {
    assert_golden(
        &check_with_order(),
        &[
            "00000057",                       // length 87
            "01",                             // Request::Check
            "fb2c01",                         // request_id 300: 251 then u16 LE 0x012c
            TOKEN_FIELD,                      // token
            "00",                             // iface Rest
            "0e5472645f506c6163654f72646572", // endpoint "Trd_PlaceOrder"
            "01",                             // order: Some
            "00",                             //   env Simulate
            "00",                             //   market HK
            "08484b2e3030373030",             //   symbol "HK.00700"
            "00",                             //   side BUY
            "0000000000005940",               //   qty 100.0
            "010000000000087440",             //   price Some(320.5)
            "00",                             // dry_run false
        ],
    );
}

#[test]
fn check_without_order_has_pinned_bytes() {
    let value = Request::Check(Check {
        request_id: 2,
        token: token(),
        iface: Iface::Ws,
        endpoint: "Qot_GetBasicQot".into(),
        order: None,
        dry_run: true,
        acc_id: None,
        ref_price: None,
    });
    assert_golden(
        &value,
        &[
            "00000039",                         // length 57
            "01",                               // Request::Check
            "02",                               // request_id 2
            TOKEN_FIELD,                        // token
            "02",                               // iface Ws
            "0f516f745f4765744261736963516f74", // endpoint "Qot_GetBasicQot"
            "00",                               // order: None
            "01",                               // dry_run true
        ],
    );
}

#[test]
fn check_scope_has_pinned_bytes() {
    let value = Request::CheckScope(CheckScope {
        request_id: 3,
        token: token(),
        iface: Iface::Ws,
        scope: Scope::QotRead,
    });
    assert_golden(
        &value,
        &[
            "00000028",  // length 40
            "02",        // Request::CheckScope
            "03",        // request_id 3
            TOKEN_FIELD, // token
            "02",        // iface Ws
            "00",        // scope QotRead
        ],
    );
}

#[test]
fn release_has_pinned_bytes() {
    let value = Request::Release {
        request_id: 4,
        ticket: 70000,
    };
    assert_golden(
        &value,
        &[
            "00000007",   // length 7
            "03",         // Request::Release
            "04",         // request_id 4
            "fc70110100", // ticket 70000: 252 then u32 LE 0x00011170
        ],
    );
}

#[test]
fn gen_key_with_every_limit_set_has_pinned_bytes() {
    let value = Request::GenKey {
        request_id: 5,
        spec: KeySpec {
            id: key_id("sim-bot"),
            scopes: vec![Scope::QotRead, Scope::TradeSimulate],
            limits: full_limits(),
            allowed_machines: Some(vec![fp(FP_BOT)]),
            expires_at: Some(ts(EXPIRES_AT)),
            note: Some("paper bot".into()),
        },
    };
    let mut fields = vec![
        "00000077",    // length 119
        "04",          // Request::GenKey
        "05",          // request_id 5
        SIM_BOT_FIELD, // spec.id "sim-bot"
        "020002",      // spec.scopes: 2 items, QotRead, TradeSimulate
    ];
    fields.extend(FULL_LIMITS_FIELDS); // spec.limits
    fields.extend([
        "01011266705f626f745f686f73745f616263313233", // allowed_machines: Some(["fp_bot_host_abc123"])
        "0114323032362d31322d33315430303a30303a30305a", // expires_at: Some("2026-12-31T00:00:00Z")
        "0109706170657220626f74",                     // note: Some("paper bot")
    ]);
    assert_golden(&value, &fields);
}

#[test]
fn list_keys_has_pinned_bytes() {
    assert_golden(
        &Request::ListKeys { request_id: 6 },
        &[
            "00000002", // length 2
            "05",       // Request::ListKeys
            "06",       // request_id 6
        ],
    );
}

#[test]
fn revoke_key_has_pinned_bytes() {
    let value = Request::RevokeKey {
        request_id: 7,
        id: key_id("old-bot"),
    };
    assert_golden(
        &value,
        &[
            "0000000a",         // length 10
            "06",               // Request::RevokeKey
            "07",               // request_id 7
            "076f6c642d626f74", // id "old-bot"
        ],
    );
}

#[test]
fn bind_key_add_has_pinned_bytes() {
    let value = Request::BindKey {
        request_id: 8,
        id: key_id("sim-bot"),
        op: BindOp::Add(vec![fp(FP_BOT)]),
    };
    assert_golden(
        &value,
        &[
            "0000001f",                                 // length 31
            "07",                                       // Request::BindKey
            "08",                                       // request_id 8
            SIM_BOT_FIELD,                              // id "sim-bot"
            "00",                                       // op BindOp::Add
            "011266705f626f745f686f73745f616263313233", //   1 item, "fp_bot_host_abc123"
        ],
    );
}

#[test]
fn bind_key_replace_has_pinned_bytes() {
    let value = Request::BindKey {
        request_id: 9,
        id: key_id("sim-bot"),
        op: BindOp::Replace(vec![fp(FP_BOT), fp(FP_BACKUP)]),
    };
    assert_golden(
        &value,
        &[
            "00000033",                                 // length 51
            "07",                                       // Request::BindKey
            "09",                                       // request_id 9
            SIM_BOT_FIELD,                              // id "sim-bot"
            "01",                                       // op BindOp::Replace
            "02",                                       //   2 items
            "1266705f626f745f686f73745f616263313233",   //   "fp_bot_host_abc123"
            "1366705f6261636b75705f686f73745f37663365", //   "fp_backup_host_7f3e"
        ],
    );
}

#[test]
fn bind_key_freeze_has_pinned_bytes() {
    let value = Request::BindKey {
        request_id: 10,
        id: key_id("sim-bot"),
        op: BindOp::Freeze,
    };
    assert_golden(
        &value,
        &[
            "0000000b",    // length 11
            "07",          // Request::BindKey
            "0a",          // request_id 10
            SIM_BOT_FIELD, // id "sim-bot"
            "02",          // op BindOp::Freeze (no fields)
        ],
    );
}

#[test]
fn bind_key_clear_has_pinned_bytes() {
    let value = Request::BindKey {
        request_id: 11,
        id: key_id("sim-bot"),
        op: BindOp::Clear,
    };
    assert_golden(
        &value,
        &[
            "0000000b",    // length 11
            "07",          // Request::BindKey
            "0b",          // request_id 11
            SIM_BOT_FIELD, // id "sim-bot"
            "03",          // op BindOp::Clear (no fields)
        ],
    );
}

#[test]
fn reload_has_pinned_bytes() {
    assert_golden(
        &Request::Reload { request_id: 12 },
        &[
            "00000002", // length 2
            "08",       // Request::Reload
            "0c",       // request_id 12
        ],
    );
}

#[test]
fn usage_request_has_pinned_bytes() {
    let value = Request::Usage {
        request_id: 13,
        id: key_id("sim-bot"),
    };
    assert_golden(
        &value,
        &[
            "0000000a",    // length 10
            "09",          // Request::Usage
            "0d",          // request_id 13
            SIM_BOT_FIELD, // id "sim-bot"
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------

#[test]
fn hello_ok_has_pinned_bytes() {
    let value = Response::HelloOk {
        protocol_version: 1,
        server_version: "0.1.0".into(),
    };
    assert_golden(
        &value,
        &[
            "00000008",     // length 8
            "00",           // Response::HelloOk
            "01",           // protocol_version 1
            "05302e312e30", // server_version "0.1.0"
        ],
    );
}

#[test]
fn allow_decision_has_pinned_bytes() {
    let value = Response::Decision {
        request_id: 300,
        decision: Decision::Allow {
            key_id: key_id("sim-bot"),
            scope: Some(Scope::TradeSimulate),
            ticket: Some(70000),
        },
    };
    assert_golden(
        &value,
        &[
            "00000015",     // length 21
            "01",           // Response::Decision
            "fb2c01",       // request_id 300
            "00",           // decision: Decision::Allow
            SIM_BOT_FIELD,  //   key_id "sim-bot"
            "0102",         //   scope Some(TradeSimulate)
            "01fc70110100", //   ticket Some(70000)
        ],
    );
}

#[test]
fn deny_decision_has_pinned_bytes() {
    let value = Response::Decision {
        request_id: 2,
        decision: Decision::Deny {
            reason: Reason::DailyValue,
            key_id: Some(key_id("sim-bot")),
            detail: "daily value cap reached".into(),
            retry_after_ms: None,
            limit: None,
        },
    };
    assert_golden(
        &value,
        &[
            "00000025",                                         // length 37
            "01",                                               // Response::Decision
            "02",                                               // request_id 2
            "01",                                               // decision: Decision::Deny
            "0b",                                               //   reason daily_value (11)
            "010773696d2d626f74",                               //   key_id Some("sim-bot")
            "176461696c792076616c7565206361702072656163686564", //   detail
        ],
    );
}

#[test]
fn released_has_pinned_bytes() {
    let value = Response::Released {
        request_id: 4,
        key_id: key_id("sim-bot"),
        refunded_value: 32050.0,
    };
    assert_golden(
        &value,
        &[
            "00000012",         // length 18
            "02",               // Response::Released
            "04",               // request_id 4
            SIM_BOT_FIELD,      // key_id "sim-bot"
            "00000000804cdf40", // refunded_value 32050.0
        ],
    );
}

#[test]
fn key_generated_has_pinned_bytes() {
    let value = Response::KeyGenerated {
        request_id: 5,
        plaintext: token(),
        record: full_record(),
        stored_in: "/etc/futu/keys.json".into(),
    };
    let mut fields = vec![
        "00000105",  // length 261 (a u32, big-endian)
        "03",        // Response::KeyGenerated
        "05",        // request_id 5
        TOKEN_FIELD, // plaintext
    ];
    fields.extend(full_record_fields()); // record
    fields.push("132f6574632f667574752f6b6579732e6a736f6e"); // stored_in "/etc/futu/keys.json"
    assert_golden(&value, &fields);
}

#[test]
fn keys_listing_writes_every_unset_field_of_a_record() {
    let value = Response::Keys {
        request_id: 6,
        keys: vec![minimal_record(None)],
    };
    assert_golden(
        &value,
        &[
            "0000006e",                                   // length 110
            "04",                                         // Response::Keys
            "06",                                         // request_id 6
            "01",                                         // keys: 1 item
            RESEARCH_FIELD,                               //   id "research"
            HASH_FIELD,                                   //   hash
            "0100",                                       //   scopes: 1 item, QotRead
            NO_LIMITS_FIELD, //   limits: seven Nones, written although keys.json omits them
            "00",            //   allowed_machines: None (any host)
            "14323032362d30342d31355431303a30303a30305a", // created_at
            "00",            //   expires_at: None
            "00",            //   note: None
        ],
    );
}

#[test]
fn key_revoked_has_pinned_bytes() {
    let value = Response::KeyRevoked {
        request_id: 7,
        id: key_id("old-bot"),
    };
    assert_golden(
        &value,
        &[
            "0000000a",         // length 10
            "05",               // Response::KeyRevoked
            "07",               // request_id 7
            "076f6c642d626f74", // id "old-bot"
        ],
    );
}

#[test]
fn key_bound_to_no_machine_has_pinned_bytes() {
    let value = Response::KeyBound {
        request_id: 10,
        record: minimal_record(Some(vec![])),
    };
    assert_golden(
        &value,
        &[
            "0000006e",                                   // length 110
            "06",                                         // Response::KeyBound
            "0a",                                         // request_id 10
            RESEARCH_FIELD,                               // record.id "research"
            HASH_FIELD,                                   // record.hash
            "0100",                                       // record.scopes: 1 item, QotRead
            NO_LIMITS_FIELD,                              // record.limits: seven Nones
            "0100",                                       // record.allowed_machines: Some, 0 items (frozen)
            "14323032362d30342d31355431303a30303a30305a", // record.created_at
            "00",                                         // record.expires_at: None
            "00",                                         // record.note: None
        ],
    );
}

#[test]
fn reloaded_has_pinned_bytes() {
    let value = Response::Reloaded {
        request_id: 12,
        keys_loaded: 3,
    };
    assert_golden(
        &value,
        &[
            "00000003", // length 3
            "07",       // Response::Reloaded
            "0c",       // request_id 12
            "03",       // keys_loaded 3
        ],
    );
}

#[test]
fn usage_response_has_pinned_bytes() {
    let value = Response::Usage(Usage {
        request_id: 13,
        id: key_id("sim-bot"),
        day: "2026-04-15".into(),
        daily_value_used: 32050.0,
        max_daily_value: Some(200000.0),
        orders_last_minute: 2,
        max_orders_per_minute: Some(10),
        open_orders: 0,
        max_open_orders: None,
        positions: Vec::new(),
        max_position_value: None,
    });
    assert_golden(
        &value,
        &[
            "00000029",               // length 41
            "08",                     // Response::Usage
            "0d",                     // request_id 13
            SIM_BOT_FIELD,            // id "sim-bot"
            "0a323032362d30342d3135", // day "2026-04-15"
            "00000000804cdf40",       // daily_value_used 32050.0
            "0100000000006a0841",     // max_daily_value Some(200000.0)
            "02",                     // orders_last_minute 2
            "010a",                   // max_orders_per_minute Some(10)
        ],
    );
}

/// Version 6's Usage: the figures of versions 1 to 5, then the open orders, the positions
/// and `max_position_value`. A peer of version 5 or older is sent the old figures alone.
#[test]
fn version_6_usage_adds_open_orders_and_positions() {
    let v6 = Response::Usage(Usage {
        request_id: 13,
        id: key_id("sim-bot"),
        day: "2026-04-15".into(),
        daily_value_used: 32050.0,
        max_daily_value: Some(200000.0),
        orders_last_minute: 2,
        max_orders_per_minute: Some(10),
        open_orders: 3,
        max_open_orders: Some(10),
        positions: vec![futu_auth_proto::PositionUsage {
            symbol: "HK.00700".into(),
            long: 1500.0,
            short: 0.0,
        }],
        max_position_value: Some(200000.0),
    });
    let old_fields = [
        "08",                     // Response::Usage
        "0d",                     // request_id 13
        SIM_BOT_FIELD,            // id "sim-bot"
        "0a323032362d30342d3135", // day "2026-04-15"
        "00000000804cdf40",       // daily_value_used 32050.0
        "0100000000006a0841",     // max_daily_value Some(200000.0)
        "02",                     // orders_last_minute 2
        "010a",                   // max_orders_per_minute Some(10)
    ];
    let mut fields = vec!["0000004f"]; // length 79
    fields.extend_from_slice(&old_fields);
    fields.extend_from_slice(&[
        "03",                 // open_orders 3
        "010a",               // max_open_orders Some(10)
        "01",                 // positions: 1
        "08484b2e3030373030", // symbol "HK.00700"
        "0000000000709740",   // long 1500.0
        "0000000000000000",   // short 0.0
        "0100000000006a0841", // max_position_value Some(200000.0)
    ]);
    assert_golden_v(6, &v6, &fields);
    // Version 5 and older: the old figures; read back, the new ones are empty.
    let Response::Usage(mut old) = v6 else {
        unreachable!()
    };
    old.open_orders = 0;
    old.max_open_orders = None;
    old.positions.clear();
    old.max_position_value = None;
    let mut fields = vec!["00000029"]; // length 41
    fields.extend_from_slice(&old_fields);
    for version in 1..=5 {
        assert_golden_v(version, &Response::Usage(old.clone()), &fields);
    }
    let v6_told_to_5 = codec::encode_frame_v(
        &Response::Usage(Usage {
            open_orders: 3,
            positions: vec![futu_auth_proto::PositionUsage {
                symbol: "HK.00700".into(),
                long: 1.0,
                short: 0.0,
            }],
            ..old.clone()
        }),
        5,
    )
    .unwrap();
    assert_eq!(to_hex(&v6_told_to_5), fields.concat());
}

#[test]
fn error_has_pinned_bytes() {
    let value = Response::Error {
        request_id: 0,
        kind: ErrorKind::Version,
        message: "unsupported protocol version 2".into(),
    };
    assert_golden(
        &value,
        &[
            "00000022",                                                       // length 34
            "09",                                                             // Response::Error
            "00",                                                             // request_id 0
            "00",                                                             // kind version
            "1e756e737570706f727465642070726f746f636f6c2076657273696f6e2032", // message
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Protocol version 2: negotiation, and a Deny's retry_after_ms and limit
// ---------------------------------------------------------------------------------------

#[test]
fn a_hello_offering_version_2_has_pinned_bytes() {
    let value = Request::Hello(Hello {
        protocol_version: 2,
        client_name: "rest".into(),
    });
    assert_golden(
        &value,
        &[
            "00000007",   // length 7
            "00",         // Request::Hello
            "02",         // protocol_version 2
            "0472657374", // client_name "rest"
        ],
    );
    let ok = Response::HelloOk {
        protocol_version: 2,
        server_version: "0.1.0".into(),
    };
    assert_golden(&ok, &["00000008", "00", "02", "05302e312e30"]);
}

#[test]
fn the_daemon_answers_the_older_of_the_clients_version_and_its_own() {
    assert_eq!(PROTOCOL_VERSIONS, [1, 2, 3, 4, 5, 6]);
    assert_eq!(PROTOCOL_VERSION, *PROTOCOL_VERSIONS.last().unwrap());
    let agreed = |v| {
        Hello {
            protocol_version: v,
            client_name: "rest".into(),
        }
        .agreed_version()
    };
    assert_eq!(agreed(0), None, "version 0 is refused (Error version)");
    assert_eq!(agreed(1), Some(1), "a version-1 client is served version 1");
    assert_eq!(agreed(2), Some(2));
    assert_eq!(agreed(3), Some(3));
    assert_eq!(agreed(4), Some(4));
    assert_eq!(agreed(5), Some(5));
    assert_eq!(agreed(6), Some(6));
    assert_eq!(agreed(7), Some(6), "a newer client is answered with 6");
    assert_eq!(agreed(u16::MAX), Some(6));
}

/// Version 5's requests and answers: appended to the enums at indices 17 and 18 (requests)
/// and 14 and 15 (responses), nothing else moved.
#[test]
fn version_5_import_and_export_of_keys() {
    let start = Request::ImportKeys {
        request_id: 9,
        import: 0,
        offset: 0,
        chunk: "{\"version\": 1,".into(),
        last: false,
        replace: false,
    };
    assert_golden(
        &start,
        &[
            "00000015",                       // length 21
            "11",                             // Request::ImportKeys (index 17)
            "09",                             // request_id 9
            "00",                             // import 0: a new one
            "00",                             // offset 0
            "0e7b2276657273696f6e223a20312c", // chunk (14 bytes)
            "00",                             // last false
            "00",                             // replace false
        ],
    );
    let end = Request::ImportKeys {
        request_id: 10,
        import: 300,
        offset: 14,
        chunk: " \"keys\": []}".into(),
        last: true,
        replace: true,
    };
    assert_golden(
        &end,
        &[
            "00000015",                   // length 21
            "11",                         // Request::ImportKeys
            "0a",                         // request_id 10
            "fb2c01",                     // import 300
            "0e",                         // offset 14
            "0c20226b657973223a205b5d7d", // chunk (12 bytes)
            "01",                         // last true
            "01",                         // replace true
        ],
    );
    let export = Request::ExportKeys {
        request_id: 11,
        export: 0,
        offset: 0,
    };
    assert_golden(&export, &["00000004", "12", "0b", "00", "00"]);
    let received = Response::KeysImported {
        request_id: 9,
        import: 300,
        next_offset: 14,
        done: None,
    };
    assert_golden(&received, &["00000007", "0e", "09", "fb2c01", "0e", "00"]);
    let done = Response::KeysImported {
        request_id: 10,
        import: 300,
        next_offset: 26,
        done: Some(futu_auth_proto::Imported {
            added: 2,
            replaced: 1,
            total: 5,
            stored_in: "k".into(),
        }),
    };
    assert_golden(
        &done,
        &[
            "0000000c", // length 12
            "0e",       // Response::KeysImported (index 14)
            "0a",       // request_id 10
            "fb2c01",   // import 300
            "1a",       // next_offset 26
            "01",       // done: Some
            "02",       //   added 2
            "01",       //   replaced 1
            "05",       //   total 5
            "016b",     //   stored_in "k"
        ],
    );
    let chunk = Response::KeysExport {
        request_id: 11,
        export: 7,
        offset: 0,
        total: 2,
        chunk: "{}".into(),
    };
    assert_golden(
        &chunk,
        &[
            "00000008", // length 8
            "0f",       // Response::KeysExport (index 15)
            "0b",       // request_id 11
            "07",       // export 7
            "00",       // offset 0
            "02",       // total 2
            "027b7d",   // chunk "{}"
        ],
    );
}

/// An index past version 5's last request (18) or response (15) is a malformed frame.
#[test]
fn indices_past_version_5_are_malformed() {
    malformed::<Request>(&from_hex("130100"));
    malformed::<Response>(&from_hex("100100"));
}

/// Version 4's request: appended to the enum, nothing else moved.
#[test]
fn version_4_session_check() {
    let pushes = Request::SessionCheck(SessionCheck {
        request_id: 5,
        token: token(),
        iface: Iface::Ws,
        subject: SessionSubject::Pushes {
            scope: Scope::TradeSimulate,
            pushes: 3,
        },
        previous: SessionOutcome::Deny(Reason::Scope),
    });
    assert_golden(
        &pushes,
        &[
            "0000002c",  // length 44
            "0d",        // Request::SessionCheck (index 13)
            "05",        // request_id 5
            TOKEN_FIELD, // token
            "02",        // iface Ws
            "01",        // subject Pushes
            "02",        //   scope TradeSimulate
            "03",        //   pushes 3
            "01",        // previous Deny
            "04",        //   reason Scope
        ],
    );
    let keep_alive = Request::SessionCheck(SessionCheck {
        request_id: 6,
        token: token(),
        iface: Iface::Mcp,
        subject: SessionSubject::KeepAlive,
        previous: SessionOutcome::Allow,
    });
    assert_golden(
        &keep_alive,
        &[
            "00000029",  // length 41
            "0d",        // Request::SessionCheck
            "06",        // request_id 6
            TOKEN_FIELD, // token
            "03",        // iface Mcp
            "00",        // subject KeepAlive
            "00",        // previous Allow
        ],
    );
}

/// `"trading halted for key bot by uid 1000 (alice) at 2026-12-06T10:00:00Z: fat finger"`:
/// its length (82), then its bytes.
const HALTED_DETAIL: &str = "52\
74726164696e672068616c74656420666f72206b657920626f742062792075696420313030302028616c69636529\
20617420323032362d31322d30365431303a30303a30305a3a206661742066696e676572";

fn halt(target: HaltTarget, reason: &str, uid: u32, user: &str, at: &str) -> Halt {
    Halt {
        target,
        reason: reason.parse().unwrap(),
        halted_by: HaltedBy::new(uid, Some(user.into())),
        halted_at: ts(at),
    }
}

/// Version 5's requests and their answer: appended to the enums, nothing else moved.
#[test]
fn version_5_halt_resume_and_list_halts() {
    let bot = || HaltTarget::Key(key_id("bot"));
    let halt_bot = Request::Halt {
        request_id: 9,
        target: bot(),
        reason: "fat finger".into(),
    };
    assert_golden(
        &halt_bot,
        &[
            "00000012",               // length 18
            "0e",                     // Request::Halt (index 14)
            "09",                     // request_id 9
            "00",                     // target Key
            "03626f74",               //   "bot"
            "0a6661742066696e676572", // reason "fat finger"
        ],
    );
    let halt_all = Request::Halt {
        request_id: 10,
        target: HaltTarget::All,
        reason: "turmoil".into(),
    };
    assert_golden(&halt_all, &["0000000b", "0e", "0a", "01", "077475726d6f696c"]);
    let resume_bot = Request::Resume {
        request_id: 11,
        target: bot(),
    };
    assert_golden(&resume_bot, &["00000007", "0f", "0b", "00", "03626f74"]);
    let resume_all = Request::Resume {
        request_id: 12,
        target: HaltTarget::All,
    };
    assert_golden(&resume_all, &["00000003", "0f", "0c", "01"]);
    let list = Request::ListHalts { request_id: 13 };
    assert_golden(&list, &["00000002", "10", "0d"]);

    let halts = Response::Halts {
        request_id: 9,
        halts: vec![
            halt(HaltTarget::All, "turmoil", 0, "root", "2026-12-06T09:00:00Z"),
            halt(bot(), "fat finger", 1000, "alice", "2026-12-06T10:00:00Z"),
        ],
    };
    assert_golden(
        &halts,
        &[
            "00000057", // length 87
            "0d",       // Response::Halts (index 13)
            "09",       // request_id 9
            "02",       // 2 halts
            "01",       // target All
            "077475726d6f696c",
            "00",           // uid 0
            "0104726f6f74", // user Some("root")
            "14323032362d31322d30365430393a30303a30305a",
            "00", // target Key
            "03626f74",
            "0a6661742066696e676572",
            "fbe803",         // uid 1000
            "0105616c696365", // user Some("alice")
            "14323032362d31322d30365431303a30303a30305a",
        ],
    );
    let none = Response::Halts {
        request_id: 13,
        halts: vec![],
    };
    assert_golden(&none, &["00000003", "0d", "0d", "00"]);
    // A halt by a uid without a name: its user is None.
    let nameless = Response::Halts {
        request_id: 1,
        halts: vec![Halt {
            halted_by: HaltedBy::new(4242, None),
            ..halt(bot(), "r", 0, "x", "2026-12-06T10:00:00Z")
        }],
    };
    assert_golden(
        &nameless,
        &[
            "00000023", // length 35
            "0d",
            "01",
            "01",
            "00",
            "03626f74",
            "0172",
            "fb9210",
            "00",
            "14323032362d31322d30365431303a30303a30305a",
        ],
    );
}

/// The deny of a halted key, as each version is sent it: reason 16 from version 5 on;
/// `scope` (4), with the same detail, to a peer of version 4 or older, which has no
/// `halted`.
#[test]
fn a_halted_deny_is_told_as_scope_to_a_peer_older_than_version_5() {
    let deny = Response::Decision {
        request_id: 4,
        decision: Decision::Deny {
            reason: Reason::Halted,
            key_id: Some(key_id("bot")),
            detail: "trading halted for key bot by uid 1000 (alice) at 2026-12-06T10:00:00Z: fat finger"
                .into(),
            retry_after_ms: None,
            limit: None,
        },
    };
    let head = |reason| ["01", "04", "01", reason, "0103626f74", HALTED_DETAIL];
    let v5 = [&["0000005e"][..], &head("10"), &["00", "00"]].concat();
    assert_golden_v(5, &deny, &v5);
    let as_scope = Response::Decision {
        request_id: 4,
        decision: Decision::Deny {
            reason: Reason::Scope,
            key_id: Some(key_id("bot")),
            detail: "trading halted for key bot by uid 1000 (alice) at 2026-12-06T10:00:00Z: fat finger"
                .into(),
            retry_after_ms: None,
            limit: None,
        },
    };
    let v2_to_4 = [&["0000005e"][..], &head("04"), &["00", "00"]].concat();
    let v1 = [&["0000005c"][..], &head("04")].concat();
    for version in [2, 3, 4] {
        let frame = codec::encode_frame_v(&deny, version).unwrap();
        assert_eq!(to_hex(&frame), v2_to_4.concat(), "version {version}");
        assert_golden_v(version, &as_scope, &v2_to_4);
    }
    let frame = codec::encode_frame_v(&deny, 1).unwrap();
    assert_eq!(to_hex(&frame), v1.concat());
    assert_golden_v(1, &as_scope, &v1);
    // A peer of version 4 never writes `halted`: such a body is malformed, not misread.
    let v5_body = codec::encode_message_v(&deny, 5).unwrap();
    for version in [2, 3, 4] {
        assert!(
            matches!(
                codec::decode_message_v::<Response>(&v5_body, version),
                Err(CodecError::Malformed(_))
            ),
            "version {version}"
        );
    }
    // The reasons of version 5 and before (version 6's are `v6_reasons_are_told_…`).
    for reason in Reason::ALL.into_iter().take(17) {
        let told = codec::reason_told_in(reason, 4);
        assert_eq!(
            told,
            if reason == Reason::Halted {
                Reason::Scope
            } else {
                reason
            }
        );
        assert_eq!(codec::reason_told_in(reason, 5), reason);
    }
}

/// Version 3's requests and answers: appended to the enums, nothing else moved.
#[test]
fn version_3_rotate_key_and_key_activity() {
    let rotate = Request::RotateKey {
        request_id: 7,
        id: "bot".parse().unwrap(),
        overlap_secs: 86_400,
    };
    // index 11, request 7, "bot", 86 400 as a varint (0xfc, then 4 bytes LE).
    assert_golden(&rotate, &["0000000b", "0b", "07", "03626f74", "fc80510100"]);
    let activity = Request::KeyActivity {
        request_id: 8,
        ids: vec!["bot".parse().unwrap(), "ops".parse().unwrap()],
    };
    assert_golden(&activity, &["0000000b", "0c", "08", "02", "03626f74", "036f7073"]);
    let rotated = Response::KeyRotated {
        request_id: 7,
        id: "bot".parse().unwrap(),
        plaintext: Token::new("fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f".to_owned()),
        previous_valid_until: Some("2026-12-01T08:00:00Z".parse().unwrap()),
        stored_in: "k".into(),
    };
    assert_golden(
        &rotated,
        &[
            "00000042",
            "0b",
            "07",
            "03626f74",
            "23", // 35 bytes of plaintext
            "66635f3861336632623963316535643761346238633266396531643361356237633966",
            "01",
            "14", // 20 bytes of RFC 3339
            "323032362d31322d30315430383a30303a30305a",
            "016b",
        ],
    );
    let answer = Response::KeyActivity {
        request_id: 8,
        keys: vec![futu_auth_proto::KeyActivity {
            id: "bot".parse().unwrap(),
            last_used: Some("2026-11-30T08:00:00Z".parse().unwrap()),
            previous_valid_until: None,
        }],
    };
    assert_golden(
        &answer,
        &[
            "0000001e",
            "0c",
            "08",
            "01",
            "03626f74",
            "01",
            "14",
            "323032362d31312d33305430383a30303a30305a",
            "00",
        ],
    );
}

/// `Response::Decision` for request 2 with a Deny by sim-bot.
fn v2_deny(
    reason: Reason,
    detail: &str,
    retry_after_ms: Option<u64>,
    limit: Option<LimitFigures>,
) -> Response {
    Response::Decision {
        request_id: 2,
        decision: Decision::Deny {
            reason,
            key_id: Some(key_id("sim-bot")),
            detail: detail.into(),
            retry_after_ms,
            limit,
        },
    }
}

/// The Deny of `deny_decision_has_pinned_bytes` as version 1 writes it (today's bytes).
const DAILY_DENY_V1: [&str; 7] = [
    "00000025",                                         // length 37
    "01",                                               // Response::Decision
    "02",                                               // request_id 2
    "01",                                               // decision: Decision::Deny
    "0b",                                               //   reason daily_value (11)
    "010773696d2d626f74",                               //   key_id Some("sim-bot")
    "176461696c792076616c7565206361702072656163686564", //   detail "daily value cap reached"
];

fn daily_figures() -> LimitFigures {
    LimitFigures::DailyValue {
        used: 400000.0,
        order_value: 150000.0,
        max_daily_value: 500000.0,
    }
}

#[test]
fn a_version_2_deny_without_retry_or_limit_ends_in_two_nones() {
    assert_golden_v(
        2,
        &v2_deny(Reason::DailyValue, "daily value cap reached", None, None),
        &[
            "00000027", // length 39
            &DAILY_DENY_V1[1..].concat(),
            "00", //   retry_after_ms None
            "00", //   limit None
        ],
    );
}

#[test]
fn a_version_2_daily_value_deny_has_pinned_bytes() {
    assert_golden_v(
        2,
        &v2_deny(
            Reason::DailyValue,
            "daily value cap reached",
            Some(30_000),
            Some(daily_figures()),
        ),
        &[
            "00000043", // length 67
            &DAILY_DENY_V1[1..].concat(),
            "01fb3075",         //   retry_after_ms Some(30000)
            "01",               //   limit Some
            "01",               //     LimitFigures::DailyValue
            "00000000006a1841", //     used 400000.0
            "00000000804f0241", //     order_value 150000.0
            "0000000080841e41", //     max_daily_value 500000.0
        ],
    );
}

#[test]
fn a_version_2_rate_deny_has_pinned_bytes() {
    assert_golden_v(
        2,
        &v2_deny(
            Reason::Rate,
            "rate",
            Some(12_345),
            Some(LimitFigures::Rate {
                orders_in_window: 5,
                max_orders_per_minute: 5,
            }),
        ),
        &[
            "0000001a",           // length 26
            "01",                 // Response::Decision
            "02",                 // request_id 2
            "01",                 // decision: Decision::Deny
            "0c",                 //   reason rate (12)
            "010773696d2d626f74", //   key_id Some("sim-bot")
            "0472617465",         //   detail "rate"
            "01fb3930",           //   retry_after_ms Some(12345)
            "01",                 //   limit Some
            "00",                 //     LimitFigures::Rate
            "05",                 //     orders_in_window 5
            "05",                 //     max_orders_per_minute 5
        ],
    );
}

#[test]
fn a_version_2_order_value_deny_has_pinned_bytes_and_no_retry() {
    assert_golden_v(
        2,
        &v2_deny(
            Reason::OrderValue,
            "",
            None,
            Some(LimitFigures::OrderValue {
                order_value: 120000.0,
                max_order_value: 100000.0,
            }),
        ),
        &[
            "00000021",           // length 33
            "01",                 // Response::Decision
            "02",                 // request_id 2
            "01",                 // decision: Decision::Deny
            "0a",                 //   reason order_value (10)
            "010773696d2d626f74", //   key_id Some("sim-bot")
            "00",                 //   detail ""
            "00",                 //   retry_after_ms None
            "01",                 //   limit Some
            "02",                 //     LimitFigures::OrderValue
            "00000000004cfd40",   //     order_value 120000.0
            "00000000006af840",   //     max_order_value 100000.0
        ],
    );
}

#[test]
fn a_version_2_hours_deny_has_pinned_bytes() {
    assert_golden_v(
        2,
        &v2_deny(
            Reason::Hours,
            "",
            Some(5_400_000),
            Some(LimitFigures::Hours {
                local_time: "08:00".into(),
                hours_window: "09:30-16:00".parse().unwrap(),
            }),
        ),
        &[
            "00000028",                 // length 40
            "01",                       // Response::Decision
            "02",                       // request_id 2
            "01",                       // decision: Decision::Deny
            "09",                       //   reason hours (9)
            "010773696d2d626f74",       //   key_id Some("sim-bot")
            "00",                       //   detail ""
            "01fcc0655200",             //   retry_after_ms Some(5400000)
            "01",                       //   limit Some
            "03",                       //     LimitFigures::Hours
            "0530383a3030",             //     local_time "08:00"
            "0b30393a33302d31363a3030", //     hours_window "09:30-16:00"
        ],
    );
}

#[test]
fn a_version_2_deny_encoded_for_a_version_1_peer_is_todays_bytes() {
    let v2 = v2_deny(
        Reason::DailyValue,
        "daily value cap reached",
        Some(30_000),
        Some(daily_figures()),
    );
    let today = DAILY_DENY_V1.concat();
    assert_eq!(to_hex(&codec::encode_frame_v(&v2, 1).unwrap()), today);
    // The same through the daemon's codec set to version 1.
    let mut server = FrameCodec::<Request, Response>::with_version(1);
    let mut wire = BytesMut::new();
    server.encode(v2.clone(), &mut wire).unwrap();
    assert_eq!(to_hex(&wire), today);
    // A version-1 client reads it with both new fields None.
    let mut client = FrameCodec::<Response, Request>::with_version(1);
    assert_eq!(
        feed(&mut client, &[&wire]),
        vec![v2_deny(Reason::DailyValue, "daily value cap reached", None, None)]
    );
}

#[test]
fn every_limit_figures_variant_has_its_wire_index_and_snake_case_name() {
    let hours = "22:00-04:00".parse::<HoursWindow>().unwrap();
    let cases = [
        (
            LimitFigures::Rate {
                orders_in_window: 1,
                max_orders_per_minute: 1,
            },
            0u8,
            "rate",
        ),
        (daily_figures(), 1, "daily_value"),
        (
            LimitFigures::OrderValue {
                order_value: 2.0,
                max_order_value: 1.0,
            },
            2,
            "order_value",
        ),
        (
            LimitFigures::Hours {
                local_time: "12:00".into(),
                hours_window: hours,
            },
            3,
            "hours",
        ),
    ];
    for (figures, index, name) in cases {
        assert_eq!(codec::encode_message(&figures).unwrap()[0], index, "{figures:?}");
        let json = serde_json::to_value(&figures).unwrap();
        assert!(json.get(name).is_some(), "{json}");
        assert_eq!(serde_json::from_value::<LimitFigures>(json).unwrap(), figures);
    }
}

#[test]
fn a_deny_read_in_the_other_version_is_malformed_not_misread() {
    let v2 = v2_deny(Reason::Rate, "rate", Some(1), None);
    let body_v2 = codec::encode_message_v(&v2, 2).unwrap();
    let body_v1 = codec::encode_message_v(&v2, 1).unwrap();
    assert!(matches!(
        codec::decode_message_v::<Response>(&body_v2, 1),
        Err(CodecError::Malformed(_))
    ));
    assert!(matches!(
        codec::decode_message_v::<Response>(&body_v1, 2),
        Err(CodecError::Malformed(_))
    ));
}

#[test]
fn pipelined_frames_round_trip_through_version_1_codecs() {
    let mut client = FrameCodec::<Response, Request>::with_version(1);
    let mut server = FrameCodec::<Request, Response>::with_version(1);
    let mut wire = BytesMut::new();
    for request in requests() {
        client.encode(request, &mut wire).unwrap();
    }
    assert_eq!(feed(&mut server, &[&wire]), requests());
    let mut wire = BytesMut::new();
    for response in responses() {
        server.encode(response, &mut wire).unwrap();
    }
    let expected: Vec<u8> = responses()
        .iter()
        .flat_map(|r| codec::encode_frame_v(r, 1).unwrap())
        .collect();
    assert_eq!(wire[..], expected[..]);
    assert_eq!(feed(&mut client, &[&wire]), responses());
}

// ---------------------------------------------------------------------------------------
// Enum indices and names
// ---------------------------------------------------------------------------------------

#[test]
fn every_reason_has_its_wire_index_and_snake_case_name() {
    let names = [
        "unknown_key",
        "expired",
        "frozen",
        "machine",
        "scope",
        "unknown_endpoint",
        "market",
        "symbol",
        "side",
        "hours",
        "order_value",
        "daily_value",
        "rate",
        "bad_order",
        "forbidden",
        "internal",
        "halted",
        "account",
        "price_collar",
        "open_orders",
        "position",
        "duplicate",
    ];
    assert_eq!(Reason::ALL.len(), 22);
    for (index, (reason, name)) in Reason::ALL.into_iter().zip(names).enumerate() {
        let index = u8::try_from(index).unwrap();
        assert_eq!(codec::encode_message(&reason).unwrap(), [index], "{reason:?}");
        assert_eq!(codec::decode_message::<Reason>(&[index]).unwrap(), reason);
        assert_eq!(reason.as_str(), name);
        assert_eq!(reason.to_string(), name);
        assert_eq!(serde_json::to_string(&reason).unwrap(), format!("\"{name}\""));
    }
    malformed::<Reason>(&[22]);
}

#[test]
fn every_error_kind_has_its_wire_index_and_snake_case_name() {
    let kinds = [
        (ErrorKind::Version, "version"),
        (ErrorKind::BadFrame, "bad_frame"),
        (ErrorKind::HelloFirst, "hello_first"),
        (ErrorKind::UnknownTicket, "unknown_ticket"),
        (ErrorKind::AlreadyReleased, "already_released"),
        (ErrorKind::TicketExpired, "ticket_expired"),
        (ErrorKind::UnknownKey, "unknown_key"),
        (ErrorKind::DuplicateKey, "duplicate_key"),
        (ErrorKind::InvalidSpec, "invalid_spec"),
        (ErrorKind::Store, "store"),
        (ErrorKind::Internal, "internal"),
        (ErrorKind::ListingExpired, "listing_expired"),
    ];
    for (index, (kind, name)) in kinds.into_iter().enumerate() {
        let index = u8::try_from(index).unwrap();
        assert_eq!(codec::encode_message(&kind).unwrap(), [index], "{kind:?}");
        assert_eq!(codec::decode_message::<ErrorKind>(&[index]).unwrap(), kind);
        assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{name}\""));
    }
    malformed::<ErrorKind>(&[12]);
}

#[test]
fn small_enums_travel_as_their_index_in_the_all_lists() {
    fn check<T: Serialize + DeserializeOwned + PartialEq + Debug + Copy>(all: &[T]) {
        for (index, value) in all.iter().enumerate() {
            let index = u8::try_from(index).unwrap();
            assert_eq!(codec::encode_message(value).unwrap(), [index], "{value:?}");
            assert_eq!(codec::decode_message::<T>(&[index]).unwrap(), *value);
        }
        malformed::<T>(&[u8::try_from(all.len()).unwrap()]);
    }
    check(&Iface::ALL);
    check(&Scope::ALL);
    check(&Market::ALL);
    check(&TrdSide::ALL);
    check(&[TrdEnv::Simulate, TrdEnv::Real]);
}

#[test]
fn scope_names_do_not_reach_the_wire() {
    // keys.json spells scopes `trade:simulate`; the wire carries only the index.
    assert_eq!(
        serde_json::to_string(&Scope::TradeSimulate).unwrap(),
        "\"trade:simulate\""
    );
    assert_eq!(codec::encode_message(&Scope::TradeSimulate).unwrap(), [2]);
}

// ---------------------------------------------------------------------------------------
// Encoding rules the document states
// ---------------------------------------------------------------------------------------

/// The unsigned varint of `docs/PROTOCOL.md`, written independently of bincode.
fn doc_varint(n: u64) -> Vec<u8> {
    if n < 251 {
        vec![n as u8]
    } else if n <= u64::from(u16::MAX) {
        let mut v = vec![251];
        v.extend_from_slice(&(n as u16).to_le_bytes());
        v
    } else if n <= u64::from(u32::MAX) {
        let mut v = vec![252];
        v.extend_from_slice(&(n as u32).to_le_bytes());
        v
    } else {
        let mut v = vec![253];
        v.extend_from_slice(&n.to_le_bytes());
        v
    }
}

#[test]
fn varint_boundaries_are_as_documented() {
    let cases: [(u64, &str); 8] = [
        (0, "00"),
        (250, "fa"),
        (251, "fbfb00"),
        (65535, "fbffff"),
        (65536, "fc00000100"),
        (u64::from(u32::MAX), "fcffffffff"),
        (1 << 32, "fd0000000001000000"),
        (u64::MAX, "fdffffffffffffffff"),
    ];
    for (n, hex) in cases {
        let body = codec::encode_message(&Request::ListKeys { request_id: n }).unwrap();
        assert_eq!(to_hex(&body), format!("05{hex}"), "request_id {n}");
        assert_eq!(doc_varint(n), from_hex(hex));
    }
}

#[test]
fn string_of_300_bytes_has_a_three_byte_length() {
    let value = Response::Error {
        request_id: 1,
        kind: ErrorKind::Internal,
        message: "x".repeat(300),
    };
    let body = codec::encode_message(&value).unwrap();
    assert_eq!(to_hex(&body[..6]), "09010afb2c01");
    assert_eq!(body.len(), 6 + 300);
}

#[test]
fn timestamps_travel_as_rfc3339_strings_and_any_offset_is_read() {
    let mut record = minimal_record(None);
    record.expires_at = Some(ts("2026-04-15T18:00:00+08:00"));
    let body = codec::encode_message(&record).unwrap();
    // The daemon always writes UTC with a `Z`.
    let utc = b"\x01\x142026-04-15T10:00:00Z";
    assert!(body.windows(utc.len()).any(|w| w == utc));
    assert_eq!(record.expires_at, Some(ts(CREATED_AT)));

    // A client may send a timestamp with an offset or fractional seconds.
    let mut spec_body = codec::encode_message(&Request::GenKey {
        request_id: 1,
        spec: KeySpec {
            id: key_id("a"),
            scopes: vec![],
            limits: Limits::default(),
            allowed_machines: None,
            expires_at: None,
            note: None,
        },
    })
    .unwrap();
    // Replace `expires_at: None, note: None` by `expires_at: Some("...+08:00"), note: None`.
    spec_body.truncate(spec_body.len() - 2);
    let text = "2026-12-31T08:00:00.5+08:00";
    spec_body.push(1);
    spec_body.push(u8::try_from(text.len()).unwrap());
    spec_body.extend_from_slice(text.as_bytes());
    spec_body.push(0);
    match codec::decode_message::<Request>(&spec_body).unwrap() {
        Request::GenKey { spec, .. } => {
            assert_eq!(spec.expires_at, Some(ts("2026-12-31T00:00:00.5Z")));
        }
        other => panic!("decoded {other:?}"),
    }
}

#[test]
fn order_symbol_is_a_plain_string_the_codec_does_not_check() {
    let Request::Check(mut check) = check_with_order() else {
        unreachable!()
    };
    check.order.as_mut().unwrap().symbol = "not a symbol".into();
    let value = Request::Check(check);
    let body = codec::encode_message(&value).unwrap();
    assert_eq!(codec::decode_message::<Request>(&body).unwrap(), value);
}

#[test]
fn validated_key_types_refuse_bad_text_as_malformed() {
    // RevokeKey with id "a b" (a space is not allowed in a key id).
    let mut body = from_hex("0607"); // RevokeKey, request_id 7
    body.extend_from_slice(b"\x03a b");
    malformed::<Request>(&body);
    // BindKey Add with fingerprint "bot" (no fp_ prefix).
    let mut body = from_hex("0708"); // BindKey, request_id 8
    body.extend_from_slice(b"\x07sim-bot\x00\x01\x03bot");
    malformed::<Request>(&body);
}

// ---------------------------------------------------------------------------------------
// Malformed bodies
// ---------------------------------------------------------------------------------------

#[test]
fn trailing_bytes_after_a_message_are_malformed() {
    let mut body = codec::encode_message(&hello()).unwrap();
    body.push(0);
    let why = malformed::<Request>(&body);
    assert!(why.contains("1 trailing bytes"), "{why}");

    // The same through the frame decoder: the length covers the extra byte.
    let mut frame = BytesMut::new();
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    let mut server = FrameCodec::<Request, Response>::new();
    assert!(matches!(server.decode(&mut frame), Err(CodecError::Malformed(_))));
}

#[test]
fn unknown_variant_index_is_malformed() {
    malformed::<Request>(&[11]); // Request has variants 0..=10
    malformed::<Response>(&[11]); // Response has variants 0..=10
    malformed::<Request>(&from_hex("07080773696d2d626f7404")); // BindOp has 0..=3
    malformed::<Response>(&from_hex("01020210")); // Decision has 0..=1
    malformed::<Response>(&from_hex("01020110000000")); // Reason has 0..=15
}

#[test]
fn truncated_message_is_malformed() {
    let body = codec::encode_message(&check_with_order()).unwrap();
    for cut in 0..body.len() {
        malformed::<Request>(&body[..cut]);
    }
}

#[test]
fn bool_and_option_tags_other_than_0_and_1_are_malformed() {
    let body = codec::encode_message(&check_with_order()).unwrap();
    let mut bad_bool = body.clone();
    *bad_bool.last_mut().unwrap() = 2; // dry_run
    malformed::<Request>(&bad_bool);

    let mut bad_option = body;
    let order_tag = 1 + 3 + 36 + 1 + 15; // variant, request_id, token, iface, endpoint
    assert_eq!(bad_option[order_tag], 1);
    bad_option[order_tag] = 2;
    malformed::<Request>(&bad_option);
}

#[test]
fn varint_tag_wider_than_the_field_is_malformed() {
    // protocol_version is a u16: the u32 form (252) is refused even for a small value.
    malformed::<Request>(&from_hex("00fc010000000472657374"));
    // A variant index is a u32: the u64 form (253) is refused.
    malformed::<Request>(&from_hex("fd0500000000000000"));
    // 254 and 255 are never valid for the integers of this protocol.
    malformed::<Request>(&from_hex("05fe"));
    malformed::<Request>(&from_hex("05ff"));
}

#[test]
fn invalid_utf8_in_a_string_is_malformed() {
    malformed::<Request>(&from_hex("000102ffff"));
}

// ---------------------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------------------

#[test]
fn announced_length_over_64_kib_is_frame_too_large_before_the_body_arrives() {
    for announced in [MAX_FRAME_LEN as u32 + 1, u32::MAX] {
        let mut server = FrameCodec::<Request, Response>::new();
        let mut buf = BytesMut::from(&announced.to_be_bytes()[..]);
        match server.decode(&mut buf) {
            Err(CodecError::FrameTooLarge { announced: a, max }) => {
                assert_eq!(a, u64::from(announced));
                assert_eq!(max, 65536);
            }
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }

        let mut client = FrameCodec::<Response, Request>::new();
        let mut buf = BytesMut::from(&announced.to_be_bytes()[..]);
        assert!(matches!(
            client.decode(&mut buf),
            Err(CodecError::FrameTooLarge { .. })
        ));
    }
}

#[test]
fn announced_length_of_exactly_64_kib_waits_for_the_body() {
    let mut server = FrameCodec::<Request, Response>::new();
    let mut buf = BytesMut::from(&(MAX_FRAME_LEN as u32).to_be_bytes()[..]);
    assert!(matches!(server.decode(&mut buf), Ok(None)));
}

#[test]
fn message_over_64_kib_cannot_be_encoded() {
    let value = Response::Error {
        request_id: 1,
        kind: ErrorKind::Internal,
        message: "x".repeat(MAX_FRAME_LEN),
    };
    assert!(matches!(
        codec::encode_frame(&value),
        Err(CodecError::TooLarge { .. })
    ));
    let mut server = FrameCodec::<Request, Response>::new();
    let mut dst = BytesMut::new();
    assert!(matches!(
        server.encode(value.clone(), &mut dst),
        Err(CodecError::TooLarge { .. })
    ));
}

fn requests() -> Vec<Request> {
    vec![
        hello(),
        check_with_order(),
        Request::CheckScope(CheckScope {
            request_id: 3,
            token: token(),
            iface: Iface::Ws,
            scope: Scope::QotRead,
        }),
        Request::ListKeys { request_id: 6 },
        Request::BindKey {
            request_id: 9,
            id: key_id("sim-bot"),
            op: BindOp::Replace(vec![fp(FP_BOT), fp(FP_BACKUP)]),
        },
        Request::SessionCheck(SessionCheck {
            request_id: 10,
            token: token(),
            iface: Iface::Ws,
            subject: SessionSubject::Pushes {
                scope: Scope::QotRead,
                pushes: 7,
            },
            previous: SessionOutcome::Allow,
        }),
    ]
}

fn responses() -> Vec<Response> {
    vec![
        Response::HelloOk {
            protocol_version: 1,
            server_version: "0.1.0".into(),
        },
        Response::Decision {
            request_id: 300,
            decision: Decision::Allow {
                key_id: key_id("sim-bot"),
                scope: Some(Scope::TradeSimulate),
                ticket: Some(70000),
            },
        },
        Response::Decision {
            request_id: 3,
            decision: Decision::Deny {
                reason: Reason::Scope,
                key_id: Some(key_id("research")),
                detail: "missing qot:read".into(),
                retry_after_ms: None,
                limit: None,
            },
        },
        Response::Keys {
            request_id: 6,
            keys: vec![full_record(), minimal_record(None)],
        },
        Response::KeyBound {
            request_id: 9,
            record: full_record(),
        },
    ]
}

/// Feeds `chunks` to `codec` one after the other, decoding after each, and returns every
/// message decoded.
fn feed<C: Decoder<Error = CodecError>>(codec: &mut C, chunks: &[&[u8]]) -> Vec<C::Item>
where
    C::Item: Debug,
{
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(msg) = codec.decode(&mut buf).expect("decodes") {
            out.push(msg);
        }
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    out
}

#[test]
fn pipelined_frames_round_trip_through_the_client_and_server_codecs() {
    let mut client = FrameCodec::<Response, Request>::new();
    let mut server = FrameCodec::<Request, Response>::new();

    let mut wire = BytesMut::new();
    for request in requests() {
        client.encode(request, &mut wire).unwrap();
    }
    // The codec writes the same bytes as encode_frame.
    let expected: Vec<u8> = requests()
        .iter()
        .flat_map(|r| codec::encode_frame(r).unwrap())
        .collect();
    assert_eq!(wire[..], expected[..]);
    assert_eq!(feed(&mut server, &[&wire]), requests());

    let mut wire = BytesMut::new();
    for response in &responses() {
        server.encode(response.clone(), &mut wire).unwrap();
    }
    assert_eq!(feed(&mut client, &[&wire]), responses());
}

#[test]
fn frame_split_inside_its_length_prefix_is_reassembled() {
    let wire: Vec<u8> = requests()
        .iter()
        .flat_map(|r| codec::encode_frame(r).unwrap())
        .collect();
    // Split points inside the second frame's length prefix, and at frame boundaries.
    let second = codec::encode_frame(&requests()[0]).unwrap().len();
    for split in [0, 1, 2, 3, second, second + 1, second + 2, second + 3, wire.len()] {
        let mut server = FrameCodec::<Request, Response>::new();
        let got = feed(&mut server, &[&wire[..split], &wire[split..]]);
        assert_eq!(got, requests(), "split at {split}");
    }
}

/// Every split point of a pipelined buffer, including ones inside a frame's body, must give
/// the same messages (the length check must never read body bytes as a prefix).
#[test]
fn frame_split_inside_its_body_is_reassembled() {
    let wire: Vec<u8> = responses()
        .iter()
        .flat_map(|r| codec::encode_frame(r).unwrap())
        .collect();
    for split in 0..=wire.len() {
        let mut client = FrameCodec::<Response, Request>::new();
        let got = feed(&mut client, &[&wire[..split], &wire[split..]]);
        assert_eq!(got, responses(), "split at {split}");
    }
}

#[test]
fn frame_arriving_one_byte_at_a_time_is_reassembled() {
    // This passes only because the body is shorter than four bytes; a longer body hits the
    // bug described on `frame_split_inside_its_body_is_reassembled`.
    let wire = codec::encode_frame(&Request::ListKeys { request_id: 6 }).unwrap();
    let chunks: Vec<&[u8]> = wire.chunks(1).collect();
    let mut server = FrameCodec::<Request, Response>::new();
    assert_eq!(
        feed(&mut server, &chunks),
        vec![Request::ListKeys { request_id: 6 }]
    );
}

proptest! {
    #[test]
    fn any_request_id_is_written_as_the_documented_varint(id in any::<u64>()) {
        let body = codec::encode_message(&Request::Reload { request_id: id }).unwrap();
        let mut expected = vec![8];
        expected.extend(doc_varint(id));
        prop_assert_eq!(body, expected);
    }

    #[test]
    fn any_u32_and_u16_field_is_written_as_the_documented_varint(n in any::<u32>(), v in any::<u16>()) {
        let body = codec::encode_message(&Response::Reloaded { request_id: 0, keys_loaded: n }).unwrap();
        let mut expected = vec![7, 0];
        expected.extend(doc_varint(u64::from(n)));
        prop_assert_eq!(body, expected);

        let body = codec::encode_message(&Request::Hello(Hello { protocol_version: v, client_name: String::new() })).unwrap();
        let mut expected = vec![0];
        expected.extend(doc_varint(u64::from(v)));
        expected.push(0);
        prop_assert_eq!(body, expected);
    }

    #[test]
    fn any_check_round_trips(
        request_id in any::<u64>(),
        qty in any::<f64>().prop_filter("NaN is never equal", |q| !q.is_nan()),
        price in proptest::option::of(any::<f64>().prop_filter("NaN", |p| !p.is_nan())),
        endpoint in ".{0,40}",
        dry_run in any::<bool>(),
    ) {
        let value = Request::Check(Check {
            request_id,
            token: token(),
            iface: Iface::Mcp,
            endpoint,
            order: Some(Order { env: TrdEnv::Real, market: Market::US, symbol: "US.AAPL".into(), side: TrdSide::SELL_SHORT, qty, price }),
            dry_run,
            acc_id: None,
            ref_price: None,
        });
        let frame = codec::encode_frame(&value).unwrap();
        prop_assert_eq!(codec::decode_message::<Request>(&frame[4..]).unwrap(), value);
    }
}

// ---------------------------------------------------------------------------------------
// The 64 KiB limit counts wire bytes, for every message both ways
// ---------------------------------------------------------------------------------------

/// `make(n)` for the `n` at which its body is exactly `target` bytes, and `make(n + 1)`,
/// one byte longer. `make` must grow by one body byte per unit of `n` from `probe` to the
/// target (a string of `n` bytes whose length varint stays 3 bytes wide, from 251 to
/// 65535, does).
fn exactly<T: Serialize>(target: usize, probe: usize, make: impl Fn(usize) -> T) -> (T, T) {
    let base = codec::encode_message(&make(probe)).unwrap().len() - probe;
    let n = target - base;
    let fits = make(n);
    assert_eq!(codec::encode_message(&fits).unwrap().len(), target);
    (fits, make(n + 1))
}

/// Fingerprints that take exactly `wire` bytes in a list (each 5 to 68 bytes: a length
/// byte, `fp_` and 1 to 64 characters).
fn fingerprints_filling(mut wire: usize) -> Vec<Fingerprint> {
    assert!(wire >= 5, "{wire} bytes cannot hold a fingerprint");
    let mut out = Vec::new();
    while wire > 0 {
        let take = if wire >= 68 + 5 {
            68
        } else if wire <= 68 {
            wire
        } else {
            wire - 5
        };
        out.push(fp(&format!("fp_{}", "a".repeat(take - 4))));
        wire -= take;
    }
    out
}

/// Asserts that `fits` (a body of exactly [`MAX_FRAME_LEN`] bytes) goes both ways through
/// `encode_frame`/`decode_message` and through the frame codecs, and that `over` (one byte
/// more) is refused: an Encode error when encoding, FrameTooLarge when decoding.
fn assert_limit_is_wire_bytes<T>(fits: &T, over: &T)
where
    T: Versioned + PartialEq + Debug + Clone,
{
    let frame = codec::encode_frame(fits).expect("a body of exactly 64 KiB encodes");
    assert_eq!(frame.len(), 4 + MAX_FRAME_LEN);
    assert_eq!(frame[..4], (MAX_FRAME_LEN as u32).to_be_bytes());
    let back: T = codec::decode_message(&frame[4..]).expect("a body of exactly 64 KiB decodes");
    assert_eq!(&back, fits);

    // Through the frame codecs: whoever sends T encodes it, whoever receives T decodes it.
    let mut sender = FrameCodec::<(), T>::new();
    let mut wire = BytesMut::new();
    sender
        .encode(fits.clone(), &mut wire)
        .expect("the codec encodes 64 KiB");
    assert_eq!(wire[..], frame[..]);
    let mut receiver = FrameCodec::<T, ()>::new();
    assert_eq!(receiver.decode(&mut wire).unwrap().as_ref(), Some(fits));
    assert!(wire.is_empty());

    match codec::encode_message(over) {
        Err(
            e @ CodecError::TooLarge {
                size: 65537,
                max: 65536,
            },
        ) => assert!(
            e.to_string()
                .contains("65537 bytes is over the 65536-byte frame limit"),
            "{e}"
        ),
        other => panic!("expected a TooLarge error for 65537 bytes, got {other:?}"),
    }
    assert!(matches!(
        codec::encode_frame(over),
        Err(CodecError::TooLarge { .. })
    ));
    assert!(matches!(
        sender.encode(over.clone(), &mut BytesMut::new()),
        Err(CodecError::TooLarge { .. })
    ));

    // A body of 65537 bytes is refused by its length, before bincode reads it.
    let mut long_body = frame[4..].to_vec();
    long_body.push(0);
    assert!(matches!(
        codec::decode_message::<T>(&long_body),
        Err(CodecError::FrameTooLarge {
            announced: 65537,
            max: 65536
        })
    ));
    let mut wire = BytesMut::new();
    wire.extend_from_slice(&65537u32.to_be_bytes());
    wire.extend_from_slice(&long_body);
    assert!(matches!(
        receiver.decode(&mut wire),
        Err(CodecError::FrameTooLarge {
            announced: 65537,
            max: 65536
        })
    ));
}

#[test]
fn a_check_of_exactly_64_kib_goes_through_and_one_byte_more_does_not() {
    let (fits, over) = exactly(MAX_FRAME_LEN, 300, |n| {
        Request::Check(Check {
            request_id: u64::MAX,
            token: token(),
            iface: Iface::Rest,
            endpoint: "e".repeat(n),
            order: None,
            dry_run: true,
            acc_id: None,
            ref_price: None,
        })
    });
    assert_limit_is_wire_bytes(&fits, &over);
}

#[test]
fn an_error_response_of_exactly_64_kib_goes_through_and_one_byte_more_does_not() {
    let (fits, over) = exactly(MAX_FRAME_LEN, 300, |n| Response::Error {
        request_id: 1,
        kind: ErrorKind::Internal,
        message: "x".repeat(n),
    });
    assert_limit_is_wire_bytes(&fits, &over);
}

#[test]
fn a_keys_listing_of_exactly_64_kib_goes_through_and_one_byte_more_does_not() {
    // 480 records of 130-odd bytes, the last one's note padding to the limit.
    let (fits, over) = exactly(MAX_FRAME_LEN, 300, |n| {
        let mut keys: Vec<KeyRecord> = (0..480)
            .map(|i| {
                let mut r = minimal_record(Some(vec![fp(FP_BOT)]));
                r.id = key_id(&format!("key-{i}"));
                r
            })
            .collect();
        keys[479].note = Some("n".repeat(n));
        Response::Keys { request_id: 6, keys }
    });
    assert_limit_is_wire_bytes(&fits, &over);
}

#[test]
fn a_bind_key_of_exactly_64_kib_goes_through_and_one_byte_more_does_not() {
    let (fits, over) = exactly(MAX_FRAME_LEN, 20_000, |n| Request::BindKey {
        request_id: 9,
        id: key_id("sim-bot"),
        op: BindOp::Replace(fingerprints_filling(n)),
    });
    assert_limit_is_wire_bytes(&fits, &over);
}

#[test]
fn a_gen_key_of_exactly_64_kib_goes_through_and_one_byte_more_does_not() {
    // A market is one wire byte but bincode claims 4 for it: 16 000 of them and the note
    // claim far more than 64 KiB, and the body is still 64 KiB on the wire.
    let (fits, over) = exactly(MAX_FRAME_LEN, 300, |n| Request::GenKey {
        request_id: 5,
        spec: KeySpec {
            id: key_id("sim-bot"),
            scopes: vec![Scope::TradeSimulate],
            limits: Limits {
                allowed_markets: Some(vec![Market::HK; 16_000]),
                ..Limits::default()
            },
            allowed_machines: None,
            expires_at: None,
            note: Some("n".repeat(n)),
        },
    });
    assert_limit_is_wire_bytes(&fits, &over);
}

/// Round-trips `value` through `encode_frame`/`decode_message` and through the frame
/// codecs; returns its body length.
fn round_trip<T>(value: &T) -> usize
where
    T: Versioned + PartialEq + Debug + Clone,
{
    let frame = codec::encode_frame(value).expect("encodes");
    assert_eq!(&codec::decode_message::<T>(&frame[4..]).expect("decodes"), value);
    let mut wire = BytesMut::new();
    FrameCodec::<(), T>::new()
        .encode(value.clone(), &mut wire)
        .expect("the codec encodes");
    assert_eq!(
        FrameCodec::<T, ()>::new()
            .decode(&mut wire)
            .expect("the codec decodes")
            .as_ref(),
        Some(value)
    );
    frame.len() - 4
}

#[test]
fn a_bind_key_with_5460_fingerprints_round_trips() {
    let value = Request::BindKey {
        request_id: 9,
        id: key_id("sim-bot"),
        op: BindOp::Add(vec![fp("fp_a"); 5460]),
    };
    assert_eq!(round_trip(&value), 27_314);
}

#[test]
fn a_gen_key_with_16384_markets_round_trips() {
    let value = Request::GenKey {
        request_id: 5,
        spec: KeySpec {
            id: key_id("sim-bot"),
            scopes: vec![Scope::TradeSimulate],
            limits: Limits {
                allowed_markets: Some(vec![Market::CA; 16_384]),
                ..Limits::default()
            },
            allowed_machines: None,
            expires_at: None,
            note: None,
        },
    };
    // Five bytes more than before version 6: its five limits, each None.
    assert_eq!(round_trip(&value), 16_414);
}

#[test]
fn a_keys_listing_of_as_many_full_records_as_fit_in_64_kib_round_trips() {
    let listing = |n: usize| Response::Keys {
        request_id: 6,
        keys: (0..n)
            .map(|i| {
                let mut r = full_record();
                r.id = key_id(&format!("sim-bot-{i}"));
                r
            })
            .collect(),
    };
    let fitting = (1..)
        .find(|&n| codec::encode_message(&listing(n + 1)).is_err())
        .unwrap();
    assert!(fitting > 250, "only {fitting} records fit");
    assert!(round_trip(&listing(fitting)) <= MAX_FRAME_LEN);
}

// ---------------------------------------------------------------------------------------
// End of stream
// ---------------------------------------------------------------------------------------

#[test]
fn a_frame_cut_short_by_the_end_of_the_stream_is_truncated() {
    let frame = codec::encode_frame(&check_with_order()).unwrap();
    for cut in [1, 3, 4, 5, frame.len() - 1] {
        let mut server = FrameCodec::<Request, Response>::new();
        let mut buf = BytesMut::from(&frame[..cut]);
        match server.decode_eof(&mut buf) {
            Err(CodecError::Truncated { buffered }) => assert_eq!(buffered, cut),
            other => panic!("cut at {cut}: expected Truncated, got {other:?}"),
        }
    }
    // A whole frame at the end of the stream is a message; nothing left over is the end.
    let mut server = FrameCodec::<Request, Response>::new();
    let mut buf = BytesMut::from(&frame[..]);
    assert_eq!(server.decode_eof(&mut buf).unwrap(), Some(check_with_order()));
    assert!(matches!(server.decode_eof(&mut buf), Ok(None)));
}

#[tokio::test]
async fn a_peer_that_closes_inside_a_frame_is_a_truncated_error_on_the_stream() {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;

    let frame = codec::encode_frame(&hello()).unwrap();
    let (mut peer, ours) = tokio::io::duplex(1024);
    peer.write_all(&frame).await.unwrap();
    peer.write_all(&frame[..6]).await.unwrap();
    drop(peer);
    let mut reader = tokio_util::codec::FramedRead::new(ours, FrameCodec::<Request, Response>::new());
    assert_eq!(reader.next().await.unwrap().unwrap(), hello());
    assert!(matches!(
        reader.next().await,
        Some(Err(CodecError::Truncated { buffered: 6 }))
    ));
}

// ---------------------------------------------------------------------------------------
// Caps on the wire
// ---------------------------------------------------------------------------------------

#[test]
fn a_gen_key_with_a_negative_zero_cap_decodes_as_zero() {
    let spec = KeySpec {
        id: key_id("nz"),
        scopes: vec![Scope::TradeSimulate],
        limits: Limits {
            max_order_value: Some(cap(0.0)),
            max_daily_value: Some(cap(0.0)),
            ..Limits::default()
        },
        allowed_machines: None,
        expires_at: None,
        note: None,
    };
    let value = Request::GenKey { request_id: 5, spec };
    let body = codec::encode_message(&value).unwrap();
    // limits: three Nones, Some(+0.0), Some(+0.0), two Nones; a client may send -0.0.
    let limits = from_hex("000000010000000000000000010000000000000000");
    let at = body
        .windows(limits.len())
        .position(|w| w == limits)
        .expect("the limits are in the body");
    let mut negative = body.clone();
    negative[at + 11] = 0x80; // max_order_value's sign bit (f64 little-endian)
    negative[at + 20] = 0x80; // max_daily_value's sign bit
    let Request::GenKey { spec, .. } = codec::decode_message::<Request>(&negative).unwrap() else {
        panic!("a GenKey")
    };
    for c in [spec.limits.max_order_value, spec.limits.max_daily_value] {
        let c = c.expect("the cap is set");
        assert_eq!(c.get().to_bits(), 0.0f64.to_bits(), "+0, not -0");
        assert_eq!(c.money(), futu_auth_proto::money::Money::ZERO);
    }
    // What the daemon would store and send back is +0.
    assert_eq!(
        codec::encode_message(&Request::GenKey { request_id: 5, spec }).unwrap(),
        body
    );
}

#[test]
fn a_gen_key_with_a_cap_finer_than_8_decimal_places_is_malformed() {
    let spec = KeySpec {
        id: key_id("fine"),
        scopes: vec![Scope::TradeSimulate],
        limits: Limits {
            max_order_value: Some(cap(0.5)),
            ..Limits::default()
        },
        allowed_machines: None,
        expires_at: None,
        note: None,
    };
    let mut body = codec::encode_message(&Request::GenKey { request_id: 5, spec }).unwrap();
    let half = 0.5f64.to_le_bytes();
    let at = body.windows(8).position(|w| w == half).unwrap();
    body[at..at + 8].copy_from_slice(&0.123456789f64.to_le_bytes());
    let why = malformed::<Request>(&body);
    assert!(why.contains("more than 8 decimal places"), "{why}");
}

#[test]
fn list_keys_page_and_keys_page_have_pinned_bytes() {
    let start = Request::ListKeysPage {
        request_id: 7,
        listing: 0,
        offset: 0,
    };
    assert_eq!(to_hex(&codec::encode_message(&start).unwrap()), "0a070000");
    let next = Request::ListKeysPage {
        request_id: 7,
        listing: 1 << 32,
        offset: 300,
    };
    let bytes = codec::encode_message(&next).unwrap();
    assert_eq!(to_hex(&bytes), "0a07fd0000000001000000fb2c01");
    assert_eq!(codec::decode_message::<Request>(&bytes).unwrap(), next);
    assert!(next.is_admin());

    let page = Response::KeysPage {
        request_id: 7,
        listing: 5,
        offset: 0,
        total: 1,
        keys: vec![],
    };
    let bytes = codec::encode_message(&page).unwrap();
    assert_eq!(to_hex(&bytes), "0a0705000100");
    assert_eq!(codec::decode_message::<Response>(&bytes).unwrap(), page);
}

// ---------------------------------------------------------------------------------------
// Protocol version 6: the pre-trade risk limits
// ---------------------------------------------------------------------------------------

/// The fields of `check_with_order()`'s body, in every version.
const CHECK_WITH_ORDER_V5: [&str; 13] = [
    "01",
    "fb2c01",
    TOKEN_FIELD,
    "00",
    "0e5472645f506c6163654f72646572",
    "01",
    "00",
    "00",
    "08484b2e3030373030",
    "00",
    "0000000000005940",
    "010000000000087440",
    "00",
];

#[test]
fn a_version_6_check_ends_with_its_account_and_reference_price_and_older_ones_are_unchanged() {
    let Request::Check(mut c) = check_with_order() else {
        panic!()
    };
    // Without them, versions 1 to 5 read the bytes they always did; version 6 two Nones more.
    let plain = Request::Check(c.clone());
    let old = ["00000057"]
        .into_iter()
        .chain(CHECK_WITH_ORDER_V5)
        .collect::<Vec<_>>();
    for v in 1..=5 {
        assert_golden_v(v, &plain, &old);
    }
    let v6 = ["00000059"]
        .into_iter()
        .chain(CHECK_WITH_ORDER_V5)
        .chain(["00", "00"])
        .collect::<Vec<_>>();
    assert_golden_v(6, &plain, &v6);
    c.acc_id = Some(281756);
    c.ref_price = Some(390.0);
    let with = Request::Check(c);
    let v6 = ["00000066"]
        .into_iter()
        .chain(CHECK_WITH_ORDER_V5)
        .chain([
            "01fc9c4c0400",       // acc_id Some(281756): fc then u32 LE
            "010000000000607840", // ref_price Some(390.0)
        ])
        .collect::<Vec<_>>();
    assert_golden_v(6, &with, &v6);
    // An older daemon could not read them: the client refuses to send, before any byte.
    assert!(matches!(
        codec::encode_message_v(&with, 5),
        Err(CodecError::Encode(_))
    ));
}

#[test]
fn order_event_and_its_answer_have_pinned_bytes() {
    let event = Request::OrderEvent(OrderEvent {
        request_id: 7,
        ticket: 300,
        kind: OrderEventKind::Filled,
        filled_qty: Some(10.0),
        fill_price: Some(388.2),
    });
    assert_golden_v(
        6,
        &event,
        &[
            "00000018",           // length 24
            "13",                 // Request::OrderEvent (19)
            "07",                 // request_id 7
            "fb2c01",             // ticket 300
            "02",                 // kind Filled
            "010000000000002440", // filled_qty Some(10.0)
            "013333333333437840", // fill_price Some(388.2)
        ],
    );
    let done = Response::OrderEventDone {
        request_id: 7,
        outcome: OrderEventOutcome::Duplicate {
            key_id: key_id("bot"),
        },
    };
    assert_golden_v(
        6,
        &done,
        &["00000007", "10", "07", "01", "03626f74"], // OrderEventDone (16), Duplicate, "bot"
    );
    let applied = Response::OrderEventDone {
        request_id: 7,
        outcome: OrderEventOutcome::Applied {
            key_id: key_id("bot"),
            refunded_value: 0.0,
        },
    };
    assert_golden_v(
        6,
        &applied,
        &["0000000f", "10", "07", "00", "03626f74", "0000000000000000"],
    );
    let refused = Response::OrderEventDone {
        request_id: 7,
        outcome: OrderEventOutcome::Refused {
            reason: OrderEventRefusal::UnknownTicket,
            message: "x".into(),
        },
    };
    assert_golden_v(6, &refused, &["00000006", "10", "07", "02", "00", "0178"]);
    // A peer of version 5 never sends one.
    let body = codec::encode_message(&event).unwrap();
    assert!(matches!(
        codec::decode_message_v::<Request>(&body, 5),
        Err(CodecError::Malformed(_))
    ));
}

#[test]
fn a_version_6_deny_has_pinned_figures_and_is_told_as_its_nearest_reason_before() {
    let deny = |reason, limit| Response::Decision {
        request_id: 1,
        decision: Decision::Deny {
            reason,
            key_id: None,
            detail: "d".into(),
            retry_after_ms: None,
            limit,
        },
    };
    let collar = deny(
        Reason::PriceCollar,
        Some(LimitFigures::PriceCollar {
            price: 10.0,
            ref_price: 10.0,
            deviation_pct: 10.0,
            max_price_deviation_pct: 10.0,
        }),
    );
    let ten = "0000000000002440";
    assert_golden_v(
        6,
        &collar,
        &[
            "0000002a", "01", "01", "01", "12", "00", "0164", "00", "01", "04", ten, ten, ten, ten,
        ],
    );
    // Version 5: order_value (10), no figures.
    assert_golden_v(
        5,
        &deny(Reason::OrderValue, None),
        &["00000009", "01", "01", "01", "0a", "00", "0164", "00", "00"],
    );
    let body = codec::encode_message_v(&collar, 5).unwrap();
    assert_eq!(to_hex(&body), "0101010a00016400 00".replace(' ', ""));
    for (reason, told) in [
        (Reason::Account, Reason::Scope),
        (Reason::PriceCollar, Reason::OrderValue),
        (Reason::OpenOrders, Reason::Rate),
        (Reason::Position, Reason::DailyValue),
        (Reason::Duplicate, Reason::Rate),
    ] {
        for v in 1..=5 {
            assert_eq!(codec::reason_told_in(reason, v), told);
        }
        assert_eq!(codec::reason_told_in(reason, 6), reason);
    }
}

#[test]
fn a_record_with_version_6_settings_is_an_error_to_an_older_peer_and_in_full_to_a_newer() {
    let mut record = minimal_record(None);
    let listing = |r: &KeyRecord| Response::Keys {
        request_id: 4,
        keys: vec![r.clone()],
    };
    // Nothing of version 6 set: version 5 gets seven limits, version 6 twelve.
    let v5 = codec::encode_message_v(&listing(&record), 5).unwrap();
    let v6 = codec::encode_message_v(&listing(&record), 6).unwrap();
    assert_eq!(v6.len(), v5.len() + 5);
    assert_eq!(
        codec::decode_message_v::<Response>(&v5, 5).unwrap(),
        listing(&record)
    );
    record.scopes.push(Scope::Admin);
    record.limits.max_open_orders = Some(10);
    let told =
        codec::decode_message_v::<Response>(&codec::encode_message_v(&listing(&record), 5).unwrap(), 5)
            .unwrap();
    let Response::Error { kind, message, .. } = told else {
        panic!("{told:?}")
    };
    assert_eq!(kind, ErrorKind::Internal);
    assert!(message.contains("scope admin, max_open_orders"), "{message}");
    let full = codec::encode_message_v(&listing(&record), 6).unwrap();
    assert_eq!(
        codec::decode_message_v::<Response>(&full, 6).unwrap(),
        listing(&record)
    );
}
