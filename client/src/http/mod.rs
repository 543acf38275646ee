//! An authorization layer for HTTP front-ends (feature `http`): one tower [`Layer`] that
//! serves axum, hyper and tonic alike, because it wraps any service of
//! `http::Request<B>`.
//!
//! For each request, [`AuthService`]:
//!
//! 1. takes the key out of the request — `Authorization: Bearer fc_…` (gRPC: the
//!    `authorization` metadata), or `?token=` where [`AuthLayer::query_token`] allows it —
//!    and removes it, with any other Bearer credential the request carries, so that
//!    nothing after the layer (a handler, a trace layer, a proxy) can log it;
//! 2. maps the request to a Futu endpoint with the gateway's [`Routes`] (or any
//!    [`EndpointMap`], such as a closure over method and path);
//! 3. asks futu-authd, and either passes the request on with a typed extension —
//!    [`Authorized`] (key id, scope) and, where the decision waits for the body, an
//!    [`OrderHandle`], or for a long-lived connection a [`Session`] — or answers with the
//!    response of its [`Refusal`], built in one place ([`Refusal::into_response`]).
//!
//! # Four kinds of route
//!
//! * [`Endpoint::read`] (quotes, account reads): decided in the layer, by a check that
//!   consumes nothing.
//! * [`Endpoint::order`] (order writes): an order check needs the order, which is in the
//!   body, and the layer does not read bodies. So the layer checks that the key may trade
//!   at all — a scope check of `trade:simulate` (or of `trade:real`, when the key holds
//!   only that, or when the route says [`Endpoint::env`] is real), which consumes nothing —
//!   and puts an [`OrderHandle`] in the extensions. The handler decodes the order and calls
//!   [`OrderHandle::place`] once: that is the order's check, which takes its rate slot and
//!   daily value exactly once. The [`Placed`] it returns reports what becomes of the
//!   order — [`Placed::accepted`], [`Placed::partially_filled`], [`Placed::filled`],
//!   [`Placed::cancelled`], [`Placed::rejected`] (which gives its daily value back) — so
//!   that futu-authd's ledger follows the key's open orders and positions. A cancel places
//!   nothing: the layer's scope check is its check ([`OrderHandle::may_trade`] where the
//!   endpoint is in the body).
//! * [`Endpoint::in_body`] (the generic call whose protocol id is in the body, e.g. a gRPC
//!   `Request(ProtoRequest { proto_id, … })`): the layer only requires a key; the handler
//!   decodes the id and calls [`OrderHandle::check`] (reads) or [`OrderHandle::place_as`]
//!   (order writes) — one line each.
//! * [`Endpoint::session`] (a WebSocket upgrade, an MCP endpoint): the layer proves the
//!   key usable — a dry run of the system endpoint `KeepAlive`, which needs no scope and
//!   consumes nothing — so a refusal is a 401 or 403 before any upgrade, and puts a
//!   [`Session`] in the extensions, asked many times: [`Session::check`],
//!   [`Session::place_as`], [`Session::filter`] for pushes (the crate's `ws` and `mcp`
//!   modules build on it).
//!
//! # The account and the reference price
//!
//! futu-authd's risk limits (protocol version 6) need the broker account an order or an
//! account read is for, and the gateway's reference price for an order's symbol (its last
//! quote): a [`CheckContext`], passed with [`OrderHandle::place_with`],
//! [`OrderHandle::check_with`] and their [`Session`] twins. On an [`Endpoint::read`]
//! route the layer takes the account from the query parameter `acc_id`
//! ([`CheckContext::from_query`]).
//!
//! The key of a request whose decision waits for its body stays in the layer: the
//! extension holds only a slot number, and the key leaves the layer's store when it is
//! used or when the handle is dropped (a session's: when its last handle is dropped). `Debug` of an extension, a handle or a refusal
//! never shows a key.
//!
//! # Refusals
//!
//! | refusal | HTTP | gRPC |
//! |---|---|---|
//! | no key (`no_token`), `unknown_key`, `expired` | 401, `WWW-Authenticate: Bearer` | 16 UNAUTHENTICATED |
//! | `scope`, `machine`, `frozen`, `market`, `symbol`, `side`, `hours`, `order_value`, `forbidden`, `halted`, `account`, `price_collar`, `position` | 403 | 7 PERMISSION_DENIED |
//! | `bad_order`, `unknown_endpoint` (also a request no route maps) | 400 | 3 INVALID_ARGUMENT |
//! | `rate`, `daily_value`, `open_orders`, `duplicate` | 429, `Retry-After` (whole seconds, rounded up, where waiting helps) | 8 RESOURCE_EXHAUSTED |
//! | no decision in time (`unavailable`), `internal` | 503 | 14 UNAVAILABLE |
//!
//! An HTTP refusal has the JSON body `{"reason", "detail", "retry_after_ms"}`, and a
//! refusal by a limit its figures too, `"limit": {"<kind>": {…}}`. A gRPC
//! request (content type `application/grpc…`) gets a trailers-only response: HTTP 200,
//! `grpc-status`, `grpc-message` (the detail), and the metadata `futu-reason` and, when
//! waiting helps, `retry-after-ms`. A handler's refusal ([`OrderHandle::place`]) becomes
//! the same response: [`Refusal::into_response`], or for tonic
//! `Status::from_header_map(refusal.into_response().headers())`.
//!
//! ```no_run
//! use futu_auth_client::http::{AuthLayer, Endpoint, Routes};
//! use futu_auth_client::{AuthClient, Iface};
//! use http::Method;
//!
//! let auth = AuthClient::builder("/run/futu/auth.sock").client_name("my-gateway").build();
//! let rest = AuthLayer::new(
//!     auth.clone(),
//!     Iface::Rest,
//!     Routes::new()
//!         .route(Method::GET, "/api/quote", Endpoint::read("Qot_GetBasicQot"))
//!         .route(Method::POST, "/api/order", Endpoint::order("Trd_PlaceOrder")),
//! );
//! let grpc = AuthLayer::new(
//!     auth,
//!     Iface::Grpc,
//!     Routes::new().grpc("/futu.gateway.Gateway/Request", Endpoint::in_body()),
//! );
//! // axum:  Router::new().route(…).layer(rest)
//! // tonic: Server::builder().layer(grpc).add_service(…)
//! # let _ = (rest, grpc);
//! ```
//!
//! [`Layer`]: tower_layer::Layer

mod body;
mod context;
pub(crate) mod credentials;
pub(crate) mod layer;
mod order;
pub(crate) mod refusal;
mod routes;
pub(crate) mod session;

pub use crate::CheckContext;
pub use body::{decode_json, read_json, MAX_JSON_BODY};
pub use context::ACC_ID_PARAM;
pub use layer::{AuthBody, AuthLayer, AuthService, Authorized};
pub use order::{OrderHandle, Placed};
pub use refusal::{BadRequest, Cause, Class, Refusal};
pub use routes::{Endpoint, EndpointMap, Routes};
pub use session::Session;

#[cfg(test)]
mod tests;
