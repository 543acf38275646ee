//! The demo broker: fixed quotes and funds, and orders that it accepts — unless their
//! quantity is above [`MAX_QTY`], which it rejects, and then the order's daily value is
//! given back to its key.

use std::sync::atomic::{AtomicU64, Ordering};

use futu_auth_client::http::Placed;
use futu_auth_client::Order;
use serde::Serialize;

/// The largest quantity the demo broker accepts.
pub const MAX_QTY: f64 = 1_000_000.0;

/// Quotes of the demo market: symbol, last price, currency.
const QUOTES: &[(&str, f64, &str)] = &[
    ("HK.00700", 388.2, "HKD"),
    ("HK.09988", 82.5, "HKD"),
    ("US.AAPL", 190.5, "USD"),
    ("US.TSLA", 250.0, "USD"),
];

/// A security's quote (Qot_GetBasicQot).
#[derive(Debug, Serialize)]
pub struct Quote {
    /// E.g. `HK.00700`.
    pub symbol: String,
    /// The last price.
    pub price: f64,
    /// The price's currency.
    pub currency: &'static str,
}

/// The account's funds (Trd_GetFunds).
#[derive(Debug, Serialize)]
pub struct Funds {
    /// The key that asked.
    pub key_id: String,
    /// Cash.
    pub cash: f64,
    /// Value of the positions.
    pub market_value: f64,
    /// Cash and positions.
    pub total_assets: f64,
    /// The account's currency.
    pub currency: &'static str,
}

/// An order the broker accepted (Trd_PlaceOrder).
#[derive(Debug, Serialize)]
pub struct OrderAck {
    /// The broker's order id.
    pub order_id: u64,
    /// futu-authd's ticket for the order's daily value.
    pub ticket: Option<u64>,
}

/// An order the broker rejected, after its daily value was given back.
#[derive(Debug, Serialize)]
pub struct Rejection {
    /// Why the broker rejected it.
    pub detail: String,
    /// The value given back to the key's daily total (`None` when the release failed).
    pub refunded_value: Option<f64>,
    /// Why the release failed, if it did: the value stays counted.
    pub release_error: Option<String>,
}

/// The demo broker.
#[derive(Debug, Default)]
pub struct Broker {
    /// The last order id given.
    last_order_id: AtomicU64,
}

impl Broker {
    /// The quote of `symbol`, if the demo market lists it.
    pub fn quote(&self, symbol: &str) -> Option<Quote> {
        QUOTES
            .iter()
            .find(|(s, _, _)| *s == symbol)
            .map(|&(symbol, price, currency)| Quote {
                symbol: symbol.to_owned(),
                price,
                currency,
            })
    }

    /// The funds of the account behind `key_id`.
    pub fn funds(&self, key_id: &str) -> Funds {
        Funds {
            key_id: key_id.to_owned(),
            cash: 1_000_000.0,
            market_value: 388_200.0,
            total_assets: 1_388_200.0,
            currency: "HKD",
        }
    }

    /// Sends an order futu-authd allowed (`placed`). When the broker rejects it, its
    /// daily value is given back before this returns.
    pub async fn place(&self, order: &Order, placed: Placed) -> Result<OrderAck, Rejection> {
        if order.qty > MAX_QTY {
            let detail = format!("qty {} is above the demo broker's limit of {MAX_QTY}", order.qty);
            let key_id = placed.key_id.clone();
            let (refunded_value, release_error) = match placed.release().await {
                Ok(v) => (Some(v), None),
                Err(e) => (None, Some(e.to_string())),
            };
            match &release_error {
                None => tracing::info!(
                    "order of {key_id} rejected by the broker ({detail}); {} given back",
                    refunded_value.unwrap_or(0.0)
                ),
                Some(e) => tracing::warn!(
                    "order of {key_id} rejected by the broker ({detail}); its value stays counted: {e}"
                ),
            }
            return Err(Rejection {
                detail,
                refunded_value,
                release_error,
            });
        }
        let order_id = self.last_order_id.fetch_add(1, Ordering::Relaxed) + 1;
        let price = order.price.map_or_else(|| "market".to_owned(), |p| p.to_string());
        tracing::info!(
            "order {order_id} of {}: {} {} {} @ {price}",
            placed.key_id,
            order.side.as_str(),
            order.qty,
            order.symbol
        );
        Ok(OrderAck {
            order_id,
            ticket: placed.ticket,
        })
    }
}
