//! The demo broker: fixed quotes and funds, and orders that it accepts — unless their
//! quantity is above [`MAX_QTY`], which it rejects, and then the order's daily value is
//! given back to its key; and the pushes a gateway would send, every [`PUSH_EVERY`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futu_auth_client::http::Placed;
use futu_auth_client::ws::Push;
use futu_auth_client::{Order, Scope};
use serde::Serialize;
use serde_json::json;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// How often the broker pushes a quote and an order update.
pub const PUSH_EVERY: Duration = Duration::from_millis(100);

/// Qot_GetBasicQot.
pub const QOT_GET_BASIC_QOT: u32 = 3004;
/// Trd_GetFunds.
pub const TRD_GET_FUNDS: u32 = 2101;
/// Trd_PlaceOrder.
pub const TRD_PLACE_ORDER: u32 = 2202;
/// Trd_UnlockTrade (needs `trade:unlock`).
pub const TRD_UNLOCK_TRADE: u32 = 2005;
/// Qot_UpdateBasicQot: a quote push (needs `qot:read`).
pub const QOT_UPDATE_BASIC_QOT: u32 = 3005;
/// Trd_UpdateOrder: an order update push (needs a trading scope; filtered with
/// `trade:simulate`).
pub const TRD_UPDATE_ORDER: u32 = 2208;

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
#[derive(Debug)]
pub struct Broker {
    /// The last order id given.
    last_order_id: AtomicU64,
    /// Where its pushes go, to every WebSocket connection (each filters them for its key).
    pushes: broadcast::Sender<Push>,
}

impl Default for Broker {
    fn default() -> Broker {
        Broker {
            last_order_id: AtomicU64::new(0),
            pushes: broadcast::channel(64).0,
        }
    }
}

impl Broker {
    /// Every push from now on (a slow receiver misses the oldest).
    pub fn subscribe(&self) -> broadcast::Receiver<Push> {
        self.pushes.subscribe()
    }

    /// Pushes a quote and an order update every [`PUSH_EVERY`] until `stop`.
    pub async fn push_until(&self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(PUSH_EVERY);
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            n += 1;
            // No receiver is no error: nobody is connected.
            let _ = self.pushes.send(Push {
                proto_id: QOT_UPDATE_BASIC_QOT,
                scope: Scope::QotRead,
                body: json!({"symbol": "HK.00700", "price": 388.2 + (n % 10) as f64 / 10.0, "seq": n}),
            });
            let _ = self.pushes.send(Push {
                proto_id: TRD_UPDATE_ORDER,
                scope: Scope::TradeSimulate,
                body: json!({"order_id": n, "symbol": "HK.00700", "status": "FILLED_ALL", "seq": n}),
            });
        }
    }

    /// Unlocks trading (Trd_UnlockTrade): the demo broker has nothing to unlock.
    pub fn unlock(&self, key_id: &str) -> serde_json::Value {
        json!({"unlocked": true, "key_id": key_id})
    }

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
