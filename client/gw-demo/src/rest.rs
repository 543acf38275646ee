//! The REST front-end (axum): three routes, each a few lines, behind the auth layer. Every
//! error a caller can get has the auth layer's shape, `{"reason", "detail",
//! "retry_after_ms"}`: a body or a query that cannot be read is the layer's own
//! `bad_request` refusal, and the broker's errors use the same three fields.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futu_auth_client::http::{read_json, Authorized, BadRequest, Endpoint, OrderHandle, Refusal, Routes};
use futu_auth_client::Order;
use serde::Deserialize;
use serde_json::json;

use crate::broker::{Broker, Funds, OrderAck, Quote, Rejection};

/// The largest order body the gateway reads: an order is some 100 bytes.
const MAX_ORDER_BODY: usize = 16 * 1024;

/// Which Futu endpoint each route calls, for the auth layer.
pub fn routes() -> Routes {
    Routes::new()
        .route(Method::GET, "/api/quote", Endpoint::read("Qot_GetBasicQot"))
        .route(Method::GET, "/api/funds", Endpoint::read("Trd_GetFunds"))
        .route(Method::POST, "/api/order", Endpoint::order("Trd_PlaceOrder"))
}

/// The routes and their handlers (the auth layer goes on top: `router(…).layer(auth)`).
pub fn router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/api/quote", get(quote))
        .route("/api/funds", get(funds))
        .route("/api/order", post(order))
        .with_state(broker)
}

#[derive(Deserialize)]
struct QuoteQuery {
    symbol: String,
}

/// `GET /api/quote?symbol=HK.00700`: Qot_GetBasicQot.
async fn quote(
    State(broker): State<Arc<Broker>>,
    query: Result<Query<QuoteQuery>, QueryRejection>,
) -> Result<Json<Quote>, ApiError> {
    let Query(q) = query.map_err(|e| {
        Refusal::bad_request(
            BadRequest::Malformed,
            format!("the query must be ?symbol=…: {}", e.body_text()),
        )
    })?;
    broker
        .quote(&q.symbol)
        .map(Json)
        .ok_or(ApiError::NoQuote(q.symbol))
}

/// `GET /api/funds`: Trd_GetFunds, for the key the layer matched.
async fn funds(State(broker): State<Arc<Broker>>, Extension(auth): Extension<Authorized>) -> Json<Funds> {
    Json(broker.funds(auth.key_id.as_str()))
}

/// `POST /api/order` with the order as JSON: Trd_PlaceOrder. The order's check is
/// `place`, here, where the body is decoded.
async fn order(
    State(broker): State<Arc<Broker>>,
    Extension(auth): Extension<OrderHandle>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<OrderAck>, ApiError> {
    let order: Order = read_json(&headers, body, MAX_ORDER_BODY).await?;
    let placed = auth.place(order.clone()).await?;
    Ok(Json(broker.place(&order, placed).await?))
}

/// What a handler answers instead of its result.
enum ApiError {
    /// futu-authd refused (or gave no decision), or the request cannot be read: the
    /// layer's own response.
    Refused(Refusal),
    /// The demo market has no such symbol.
    NoQuote(String),
    /// The broker rejected the order; its value was given back.
    Rejected(Rejection),
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        ApiError::Refused(r)
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        ApiError::Rejected(r)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Refused(r) => r.into_response().into_response(),
            ApiError::NoQuote(symbol) => (
                StatusCode::NOT_FOUND,
                Json(json!({
                    "reason": "no_quote",
                    "detail": format!("no quote for {}", shown(&symbol)),
                    "retry_after_ms": null,
                })),
            )
                .into_response(),
            ApiError::Rejected(r) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({
                    "reason": "broker_rejected",
                    "detail": r.detail,
                    "retry_after_ms": null,
                    "refunded_value": r.refunded_value,
                    "release_error": r.release_error,
                })),
            )
                .into_response(),
        }
    }
}

/// A caller's symbol as an answer may repeat it: short, and without a key in it.
pub fn shown(symbol: &str) -> String {
    let redacted = futu_auth_client::redact::redact(symbol);
    let mut out: String = redacted.chars().take(64).collect();
    if out.len() < redacted.len() {
        out.push('…');
    }
    out
}
