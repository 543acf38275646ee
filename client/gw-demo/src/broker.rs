//! The demo broker: fixed quotes and funds, and orders that it accepts — unless their
//! quantity is above [`MAX_QTY`], which it rejects, and then the order's daily value is
//! given back to its key — and fills [`Fills::after`] later (or leaves open, with
//! `--leave-open`) until cancelled; every change reported to futu-authd, whose ledger
//! follows the key's open orders and positions; and the pushes a gateway would send,
//! every [`PUSH_EVERY`].
//!
//! Its quotes are a fixed table ([`QUOTES`]): an order's reference price, for futu-authd's
//! price collar, is its symbol's quote there — the last price the demo serves.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futu_auth_client::http::{CheckContext, Placed};
use futu_auth_client::ws::Push;
use futu_auth_client::{
    ClientError, Market, Order, OrderEventOutcome, OrderEventRefusal, Scope, TrdEnv, TrdSide,
};
use serde::{Deserialize, Serialize};
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
/// Trd_ModifyOrder: the demo's is a cancel.
pub const TRD_MODIFY_ORDER: u32 = 2205;
/// Trd_UnlockTrade (needs `trade:unlock`).
pub const TRD_UNLOCK_TRADE: u32 = 2005;
/// Qot_UpdateBasicQot: a quote push (needs `qot:read`).
pub const QOT_UPDATE_BASIC_QOT: u32 = 3005;
/// Trd_UpdateOrder: an order update push (needs a trading scope; filtered with
/// `trade:simulate`).
pub const TRD_UPDATE_ORDER: u32 = 2208;

/// The largest quantity the demo broker accepts.
pub const MAX_QTY: f64 = 1_000_000.0;

/// Quotes of the demo market: symbol, last price, currency. The last price is an order's
/// reference price too.
pub const QUOTES: &[(&str, f64, &str)] = &[
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
    /// The account the request named, if any.
    pub acc_id: Option<u64>,
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
    /// futu-authd's ticket for the order's events and daily value.
    pub ticket: Option<u64>,
    /// `accepted`: open until it fills or is cancelled.
    pub status: &'static str,
}

/// An order request, on every front-end: the order's fields, and the account it is for
/// (Futu OpenD's `TrdHeader.accID`).
#[derive(Debug, Clone, Deserialize)]
pub struct OrderRequest {
    /// `simulate` or `real`.
    pub env: TrdEnv,
    /// E.g. `HK`.
    pub market: Market,
    /// E.g. `HK.00700`.
    pub symbol: String,
    /// `BUY` or `SELL`.
    pub side: TrdSide,
    /// Quantity.
    pub qty: f64,
    /// Limit price; none for a market order.
    #[serde(default)]
    pub price: Option<f64>,
    /// The broker account.
    #[serde(default)]
    pub acc_id: Option<u64>,
}

impl OrderRequest {
    /// The order, as futu-authd checks it.
    pub fn order(&self) -> Order {
        Order {
            env: self.env,
            market: self.market,
            symbol: self.symbol.clone(),
            side: self.side,
            qty: self.qty,
            price: self.price,
        }
    }
}

/// An account read's or a cancel's body: the account, and for a cancel the order.
#[derive(Debug, Default, Deserialize)]
pub struct AccountRequest {
    /// The broker account.
    #[serde(default)]
    pub acc_id: Option<u64>,
    /// The order to cancel (Trd_ModifyOrder).
    #[serde(default)]
    pub order_id: Option<u64>,
}

/// A cancelled order (Trd_ModifyOrder).
#[derive(Debug, Serialize)]
pub struct CancelAck {
    /// The broker's order id.
    pub order_id: u64,
    /// `cancelled`.
    pub status: &'static str,
}

/// A cancel the broker cannot do: the key has no open order of that id.
#[derive(Debug, Serialize)]
pub struct NoOrder {
    /// Why.
    pub detail: String,
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

/// When the broker fills what it accepted.
#[derive(Debug, Clone, Copy)]
pub struct Fills {
    /// How long after its acceptance an order fills.
    pub after: Duration,
    /// Leave every order open (until cancelled) instead.
    pub leave_open: bool,
}

impl Default for Fills {
    fn default() -> Fills {
        Fills {
            after: Duration::from_secs(1),
            leave_open: false,
        }
    }
}

/// An order the broker holds open.
#[derive(Debug)]
struct Open {
    /// The key that placed it: only it may cancel it.
    key_id: String,
    /// Its allow, through which its events are reported.
    placed: Placed,
}

/// How many orders ended how, for `Admin_Status`.
#[derive(Debug, Default, Serialize, Clone, Copy)]
pub struct Counts {
    /// Accepted.
    pub accepted: u64,
    /// Filled.
    pub filled: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// Rejected by the broker.
    pub rejected: u64,
}

/// The demo broker.
#[derive(Debug)]
pub struct Broker {
    /// The last order id given.
    last_order_id: AtomicU64,
    /// Where its pushes go, to every WebSocket connection (each filters them for its key).
    pushes: broadcast::Sender<Push>,
    /// When orders fill.
    fills: Fills,
    /// The orders open, by order id.
    open: Arc<Mutex<HashMap<u64, Open>>>,
    /// How many orders ended how.
    counts: Arc<Mutex<Counts>>,
}

impl Default for Broker {
    fn default() -> Broker {
        Broker::new(Fills::default())
    }
}

impl Broker {
    /// A broker filling orders as `fills` says.
    pub fn new(fills: Fills) -> Broker {
        Broker {
            last_order_id: AtomicU64::new(0),
            pushes: broadcast::channel(64).0,
            fills,
            open: Arc::default(),
            counts: Arc::default(),
        }
    }

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

    /// What futu-authd's check of `req` carries beside the order: its account, and the
    /// reference price of its symbol — the demo's quote (none for a symbol without one).
    pub fn context(&self, req: &OrderRequest) -> CheckContext {
        CheckContext::account(req.acc_id).ref_price(self.quote(&req.symbol).map(|q| q.price))
    }

    /// The funds of account `acc_id` (the demo has the same in every account), for
    /// `key_id`.
    pub fn funds(&self, key_id: &str, acc_id: Option<u64>) -> Funds {
        Funds {
            key_id: key_id.to_owned(),
            acc_id,
            cash: 1_000_000.0,
            market_value: 388_200.0,
            total_assets: 1_388_200.0,
            currency: "HKD",
        }
    }

    /// `Admin_Status`: the broker's orders and settings.
    pub fn status(&self, key_id: &str) -> serde_json::Value {
        let open = lock(&self.open).len();
        let counts = *lock(&self.counts);
        json!({
            "key_id": key_id,
            "open_orders": open,
            "orders": counts,
            "fill_after_ms": u64::try_from(self.fills.after.as_millis()).unwrap_or(u64::MAX),
            "leave_open": self.fills.leave_open,
            "quotes": QUOTES.len(),
        })
    }

    /// `Admin_Reload`: the demo's quote table is fixed in the binary; reloading it reads it
    /// again and says how many quotes it has.
    pub fn reload(&self, key_id: &str) -> serde_json::Value {
        tracing::info!("quotes reloaded by {key_id}: {} symbols", QUOTES.len());
        json!({"reloaded": true, "key_id": key_id, "quotes": QUOTES.len()})
    }

    /// Sends an order futu-authd allowed (`placed`) and reports what becomes of it. When
    /// the broker rejects it, that is reported (its daily value given back) before this
    /// returns; an accepted order is reported accepted, then filled [`Fills::after`]
    /// later unless cancelled first (or left open, with `--leave-open`).
    pub async fn place(&self, order: &Order, placed: Placed) -> Result<OrderAck, Rejection> {
        let key_id = placed.key_id.to_string();
        if order.qty > MAX_QTY {
            let detail = format!("qty {} is above the demo broker's limit of {MAX_QTY}", order.qty);
            let (refunded_value, release_error) = match placed.rejected().await {
                Ok(Some(OrderEventOutcome::Applied { refunded_value, .. })) => (Some(refunded_value), None),
                Ok(None | Some(OrderEventOutcome::Duplicate { .. })) => (Some(0.0), None),
                Ok(Some(OrderEventOutcome::Refused { message, .. })) => (None, Some(message)),
                Err(e) => (None, Some(e.to_string())),
            };
            lock(&self.counts).rejected += 1;
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
            "order {order_id} of {key_id}: {} {} {} @ {price}",
            order.side.as_str(),
            order.qty,
            order.symbol
        );
        reported(order_id, "accepted", placed.accepted().await);
        lock(&self.counts).accepted += 1;
        let ticket = placed.ticket;
        lock(&self.open).insert(
            order_id,
            Open {
                key_id,
                placed: placed.clone(),
            },
        );
        let fill_price = order.price.or_else(|| self.quote(&order.symbol).map(|q| q.price));
        match fill_price {
            Some(fill_price) if !self.fills.leave_open => {
                let (open, counts, after, qty) = (
                    Arc::clone(&self.open),
                    Arc::clone(&self.counts),
                    self.fills.after,
                    order.qty,
                );
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    fill(&open, &counts, order_id, qty, fill_price).await;
                });
            }
            _ => {}
        }
        Ok(OrderAck {
            order_id,
            ticket,
            status: "accepted",
        })
    }

    /// Cancels order `order_id` of `key_id` (Trd_ModifyOrder), if it is open, and reports
    /// it cancelled.
    pub async fn cancel(&self, key_id: &str, order_id: u64) -> Result<CancelAck, NoOrder> {
        let placed = {
            let mut open = lock(&self.open);
            match open.get(&order_id) {
                Some(o) if o.key_id == key_id => open.remove(&order_id).map(|o| o.placed),
                _ => None,
            }
        };
        let Some(placed) = placed else {
            return Err(NoOrder {
                detail: format!("no open order {order_id} of key {key_id}"),
            });
        };
        reported(order_id, "cancelled", placed.cancelled().await);
        lock(&self.counts).cancelled += 1;
        tracing::info!("order {order_id} of {key_id} cancelled");
        Ok(CancelAck {
            order_id,
            status: "cancelled",
        })
    }
}

/// Fills order `order_id` if it is still open: half of it first (a partial fill, when
/// there are two units or more), then all of it, each reported.
async fn fill(open: &Mutex<HashMap<u64, Open>>, counts: &Mutex<Counts>, order_id: u64, qty: f64, price: f64) {
    let Some(o) = lock(open).remove(&order_id) else {
        return; // cancelled meanwhile
    };
    let half = (qty / 2.0).floor();
    if half >= 1.0 && half < qty {
        reported(
            order_id,
            "partially_filled",
            o.placed.partially_filled(half, price).await,
        );
    }
    reported(order_id, "filled", o.placed.filled(qty, price).await);
    lock(counts).filled += 1;
    tracing::info!("order {order_id} of {} filled: {qty} @ {price}", o.key_id);
}

/// Logs what futu-authd made of an order's event: an event it refused, or one that did
/// not reach it, leaves its ledger behind the broker, which an operator should hear of.
fn reported(order_id: u64, kind: &str, outcome: Result<Option<OrderEventOutcome>, ClientError>) {
    match outcome {
        Ok(None) => {}
        Ok(Some(OrderEventOutcome::Applied { .. } | OrderEventOutcome::Duplicate { .. })) => {
            tracing::debug!("order {order_id}: {kind} reported");
        }
        // The order of a key whose limits follow no orders: nothing to follow.
        Ok(Some(OrderEventOutcome::Refused {
            reason: OrderEventRefusal::UnknownTicket,
            ..
        })) => tracing::debug!("order {order_id}: {kind} not followed by futu-authd"),
        Ok(Some(OrderEventOutcome::Refused { reason, message })) => {
            tracing::warn!("order {order_id}: futu-authd refused the event {kind} ({reason:?}: {message})");
        }
        Err(e) => tracing::warn!("order {order_id}: the event {kind} did not reach futu-authd: {e}"),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
