//! futu-auth-client: how a gateway front-end (REST, gRPC, WebSocket, MCP) asks futu-authd
//! whether a request may go through.
//!
//! Every front-end process keeps one [`AuthClient`] (cheap to clone) and asks it for each
//! request. All of them share the daemon's one limit ledger, so a key's daily cap and
//! orders-per-minute hold across every front-end.
//!
//! **Fail closed.** A call returns `Ok(Decision)` only when the daemon decided. Every
//! `Err` — daemon not running, the 50 ms deadline passed, the connection broke — means the
//! request must be refused, exactly like a [`Decision::Deny`].
//!
//! **Denies a caller can act on.** A deny by a limit carries its figures
//! ([`LimitFigures`]) and, where waiting helps (`rate`, `daily_value`, `hours`), how long
//! until asking again can succeed ([`Decision::retry_after`]): a REST front-end can answer
//! 429 with `Retry-After`. The client offers protocol version 5 and falls back one
//! version at a time to what the daemon speaks; with a daemon of version 1 both are
//! always None.
//!
//! **HTTP front-ends** (feature `http`): `http::AuthLayer` is one tower layer for axum,
//! hyper and tonic that does all of this for every request — the key from the request,
//! the check, a typed extension on an allow, and one response for every refusal (401, 403,
//! 400, 429 with `Retry-After`, 503; gRPC status codes for gRPC). On top of its sessions,
//! `ws` (feature `ws`) runs a WebSocket connection — requests decided, pushes filtered
//! by scope, a revoked key's socket closed with 1008 — and `mcp` (feature `mcp`) is the
//! glue of an MCP server on rmcp: a tool call's session, a refusal as a tool error.
//!
//! ```no_run
//! use futu_auth_client::{token, AuthClient, Decision, Iface, Market, Order, TrdEnv, TrdSide};
//!
//! # async fn handle() -> Result<(), Box<dyn std::error::Error>> {
//! let auth = AuthClient::connect("/run/futu/auth.sock").await?;
//!
//! // REST: the key comes in the Authorization header.
//! let Some(key) = token::from_bearer("Bearer fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f") else {
//!     return Ok(()); // 401: no key
//! };
//! let order = Order {
//!     env: TrdEnv::Simulate,
//!     market: Market::HK,
//!     symbol: "HK.00700".into(),
//!     side: TrdSide::SELL,
//!     qty: 100.0,
//!     price: Some(388.2),
//! };
//! match auth.check(&key, Iface::Rest, "Trd_PlaceOrder", Some(order)).await {
//!     Ok(Decision::Allow { ticket, .. }) => {
//!         // Place the order. If the broker rejects it, give its value back:
//!         if let Some(t) = ticket {
//!             let _ = auth.release(t).await;
//!         }
//!     }
//!     // A limit that waiting lifts (rate, daily_value, hours): tell the caller when.
//!     Ok(Decision::Deny { reason, detail, retry_after_ms: Some(ms), .. }) => {
//!         eprintln!("429 {reason}: {detail}; Retry-After: {}", ms.div_ceil(1000))
//!     }
//!     Ok(Decision::Deny { reason, detail, .. }) => eprintln!("403 {reason}: {detail}"),
//!     Err(e) => eprintln!("503, refused (fail closed): {e}"),
//! }
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod blocking;
mod client;
mod conn;
mod error;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "mcp")]
pub mod mcp;
pub mod redact;
mod sessions;
pub mod token;
#[cfg(feature = "ws")]
pub mod ws;

pub use blocking::BlockingAuthClient;
pub use client::{AuthClient, Builder, CheckContext, Rotated, DEFAULT_DEADLINE, MAX_BACKOFF};
pub use error::ClientError;
pub use futu_auth_proto::{
    BindOp, Decision, ErrorKind, Fingerprint, Halt, HaltTarget, HaltedBy, HoursWindow, Iface, Imported,
    KeyActivity, KeyId, KeyRecord, KeySpec, LimitFigures, Limits, Market, Order, OrderEventKind,
    OrderEventOutcome, OrderEventRefusal, Reason, Scope, SessionOutcome, SessionSubject, Token, TrdEnv,
    TrdSide, Usage,
};
pub use sessions::DEFAULT_MAX_SESSIONS_PER_KEY;
