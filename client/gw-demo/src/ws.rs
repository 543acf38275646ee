//! The WebSocket front-end: `/ws` on the REST listener, behind its own auth layer (the
//! key checked at the upgrade, from `?token=` or the Bearer header). Requests are JSON
//! text frames `{"id", "proto_id", "body"}` (3004, 2101, 2202, 2205, 2005); the broker's
//! pushes (quotes 3005, order updates 2208) go out filtered by the key's scopes.
//! futu-auth-client's `ws::serve` runs the connection; this file answers requests.

use std::sync::Arc;

use axum::extract::{State, WebSocketUpgrade};
use axum::http::Method;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use futu_auth_client::http::{CheckContext, Endpoint, Routes, Session};
use futu_auth_client::ws::{self, Failure, Handler, Push};
use futures_util::Stream;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::broker::{
    AccountRequest, Broker, OrderRequest, QOT_GET_BASIC_QOT, TRD_GET_FUNDS, TRD_MODIFY_ORDER,
    TRD_PLACE_ORDER, TRD_UNLOCK_TRADE,
};

/// The largest message a connection may send: a request is some 200 bytes. A larger one
/// closes the connection.
const MAX_MESSAGE: usize = 64 * 1024;

/// The upgrade route, for its auth layer: a session.
pub fn routes() -> Routes {
    Routes::new().route(Method::GET, "/ws", Endpoint::session())
}

/// `/ws` and its handler (its auth layer goes on top: `router(…).layer(auth)`).
pub fn router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/ws", get(upgrade))
        .with_state(Arc::new(WsGateway { broker }))
}

/// `GET /ws`: the layer found the key usable; the connection gets the broker's pushes.
async fn upgrade(
    upgrade: WebSocketUpgrade,
    Extension(session): Extension<Session>,
    State(gateway): State<Arc<WsGateway>>,
) -> Response {
    let pushes = pushes(gateway.broker.subscribe());
    upgrade
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| ws::serve(socket, session, gateway, pushes))
}

/// The broker's pushes as a stream; a connection too slow for them misses the oldest.
fn pushes(rx: broadcast::Receiver<Push>) -> impl Stream<Item = Push> + Unpin + Send {
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(push) => return Some((push, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }))
}

/// The requests a connection may send, over the demo broker.
struct WsGateway {
    broker: Arc<Broker>,
}

impl Handler for WsGateway {
    async fn request(&self, session: &Session, proto_id: u32, body: Value) -> Result<Value, Failure> {
        let endpoint = proto_id.to_string();
        if proto_id == TRD_PLACE_ORDER {
            let req: OrderRequest = parse(body)?;
            let order = req.order();
            let placed = session
                .place_as_with(&endpoint, order.clone(), self.broker.context(&req))
                .await?;
            return match self.broker.place(&order, placed).await {
                Ok(ack) => Ok(to_value(&ack)),
                Err(rejection) => Err(Failure::new("broker_rejected", rejection.detail)),
            };
        }
        if proto_id == TRD_MODIFY_ORDER {
            let AccountRequest { order_id, .. } = parse(body)?;
            let order_id =
                order_id.ok_or_else(|| Failure::new("bad_request", "a cancel needs its order_id"))?;
            let allowed = session.may_trade(&endpoint, None).await?;
            return match self.broker.cancel(allowed.key_id.as_str(), order_id).await {
                Ok(ack) => Ok(to_value(&ack)),
                Err(no) => Err(Failure::new("no_order", no.detail)),
            };
        }
        if proto_id == TRD_GET_FUNDS {
            let AccountRequest { acc_id, .. } = if body.is_null() {
                AccountRequest::default()
            } else {
                parse(body)?
            };
            let allowed = session
                .check_with(&endpoint, CheckContext::account(acc_id))
                .await?;
            return Ok(to_value(&self.broker.funds(allowed.key_id.as_str(), acc_id)));
        }
        let allowed = session.check(&endpoint).await?;
        match proto_id {
            QOT_GET_BASIC_QOT => {
                #[derive(serde::Deserialize)]
                struct QuoteBody {
                    symbol: String,
                }
                let QuoteBody { symbol } = parse(body)?;
                let quote = self.broker.quote(&symbol);
                quote
                    .map(|q| to_value(&q))
                    .ok_or_else(|| Failure::new("no_quote", format!("no quote for {symbol}")))
            }
            TRD_UNLOCK_TRADE => Ok(self.broker.unlock(allowed.key_id.as_str())),
            other => Err(Failure::new(
                "unimplemented",
                format!("the demo broker does not serve {other}"),
            )),
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, Failure> {
    serde_json::from_value(body).map_err(|e| Failure::new("bad_request", format!("body: {e}")))
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
