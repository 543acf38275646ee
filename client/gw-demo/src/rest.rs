//! The REST front-end (axum): six routes, each a few lines, behind the auth layer. Every
//! error a caller can get has the auth layer's shape, `{"reason", "detail",
//! "retry_after_ms"}`: a body or a query that cannot be read is the layer's own
//! `bad_request` refusal, and the broker's errors use the same three fields.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futu_auth_client::http::{
    read_json, Authorized, BadRequest, CheckContext, Endpoint, OrderHandle, Refusal, Routes,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::broker::{
    AccountRequest, Broker, CancelAck, Funds, NoOrder, OrderAck, OrderRequest, Quote, Rejection,
};

/// The largest order body the gateway reads: an order is some 100 bytes.
const MAX_ORDER_BODY: usize = 16 * 1024;

/// Which Futu endpoint each route calls, for the auth layer.
pub fn routes() -> Routes {
    Routes::new()
        .route(Method::GET, "/api/quote", Endpoint::read("Qot_GetBasicQot"))
        .route(Method::GET, "/api/funds", Endpoint::read("Trd_GetFunds"))
        .route(Method::POST, "/api/order", Endpoint::order("Trd_PlaceOrder"))
        .route(
            Method::POST,
            "/api/order/cancel",
            Endpoint::order("Trd_ModifyOrder"),
        )
        .route(Method::GET, "/api/admin/status", Endpoint::read("Admin_Status"))
        .route(Method::POST, "/api/admin/reload", Endpoint::read("Admin_Reload"))
}

/// The routes and their handlers (the auth layer goes on top: `router(…).layer(auth)`).
pub fn router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/api/quote", get(quote))
        .route("/api/funds", get(funds))
        .route("/api/order", post(order))
        .route("/api/order/cancel", post(cancel))
        .route("/api/admin/status", get(admin_status))
        .route("/api/admin/reload", post(admin_reload))
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

/// `GET /api/funds?acc_id=…`: Trd_GetFunds, for the key the layer matched; the layer
/// checked the account (`?acc_id=`) too.
async fn funds(
    State(broker): State<Arc<Broker>>,
    Extension(auth): Extension<Authorized>,
    uri: Uri,
) -> Result<Json<Funds>, ApiError> {
    let ctx = CheckContext::from_query(&uri)?;
    Ok(Json(broker.funds(auth.key_id.as_str(), ctx.acc_id)))
}

/// `POST /api/order` with the order as JSON (and its `acc_id`): Trd_PlaceOrder. The
/// order's check is `place_with`, here, where the body is decoded, with the order's
/// account and the demo's quote of its symbol as the reference price.
async fn order(
    State(broker): State<Arc<Broker>>,
    Extension(auth): Extension<OrderHandle>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<OrderAck>, ApiError> {
    let req: OrderRequest = read_json(&headers, body, MAX_ORDER_BODY).await?;
    let order = req.order();
    let placed = auth.place_with(order.clone(), broker.context(&req)).await?;
    Ok(Json(broker.place(&order, placed).await?))
}

/// `POST /api/order/cancel` with `{"order_id"}`: Trd_ModifyOrder's cancel, of an order of
/// the key the layer matched (its scope check is the layer's: a cancel places nothing).
async fn cancel(
    State(broker): State<Arc<Broker>>,
    Extension(auth): Extension<OrderHandle>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<CancelAck>, ApiError> {
    let req: AccountRequest = read_json(&headers, body, MAX_ORDER_BODY).await?;
    let (Some(order_id), Some(key_id)) = (req.order_id, auth.key_id()) else {
        return Err(Refusal::bad_request(BadRequest::Malformed, "a cancel needs its order_id").into());
    };
    Ok(Json(broker.cancel(key_id.as_str(), order_id).await?))
}

/// `GET /api/admin/status`: Admin_Status (needs `admin`).
async fn admin_status(
    State(broker): State<Arc<Broker>>,
    Extension(auth): Extension<Authorized>,
) -> Json<Value> {
    Json(broker.status(auth.key_id.as_str()))
}

/// `POST /api/admin/reload`: Admin_Reload (needs `admin`).
async fn admin_reload(
    State(broker): State<Arc<Broker>>,
    Extension(auth): Extension<Authorized>,
) -> Json<Value> {
    Json(broker.reload(auth.key_id.as_str()))
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
    /// The key has no open order of that id.
    NoOrder(NoOrder),
}

impl From<NoOrder> for ApiError {
    fn from(n: NoOrder) -> Self {
        ApiError::NoOrder(n)
    }
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
            ApiError::NoOrder(n) => (
                StatusCode::NOT_FOUND,
                Json(json!({"reason": "no_order", "detail": n.detail, "retry_after_ms": null})),
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
