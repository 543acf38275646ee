//! What the futu-authd tests share: the keys they load and the orders they send, and how a
//! connection's refusal is read. Each test file uses a part of it.
#![allow(dead_code)]

use futu_auth_proto::{ErrorKind, Market, Response, TrdSide};
use futu_authd_tests::{key_json, order, with, Client};
use serde_json::{json, Value};

/// A tightly limited simulation bot: HK only, two symbols, SELL only, 100k per order, 500k
/// a day.
pub fn sim_bot(token: &str) -> Value {
    with(
        key_json("sim-bot", token, &["qot:read", "acc:read", "trade:simulate"]),
        "limits",
        json!({
            "allowed_markets": ["HK"],
            "allowed_symbols": ["HK.00700", "HK.09988"],
            "allowed_trd_sides": ["SELL"],
            "max_order_value": 100000,
            "max_daily_value": 500000,
        }),
    )
}

/// A key that may place simulated orders with only these limits.
pub fn trader(id: &str, token: &str, limits: Value) -> Value {
    with(key_json(id, token, &["trade:simulate"]), "limits", limits)
}

/// A simulated SELL of `qty` HK.00700 at `price`.
pub fn sell_700(qty: f64, price: f64) -> Option<futu_auth_proto::Order> {
    Some(order(Market::HK, "HK.00700", TrdSide::SELL, qty, Some(price)))
}

/// Reads the connection's last words: an Error of `kind` (request id 0) where the daemon
/// could send one (`optional` when the spec allows a plain close), then the close.
pub async fn expect_refusal(c: &mut Client, kind: ErrorKind, optional: bool) {
    match c.next_frame().await {
        Some(Ok(Response::Error { kind: got, .. })) => {
            assert_eq!(got, kind);
            c.expect_closed().await;
        }
        None if optional => {}
        other => panic!("expected an Error {kind} and a close, got {other:?}"),
    }
}
