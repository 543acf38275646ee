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
mod error;
pub mod token;

pub use blocking::BlockingAuthClient;
pub use client::{AuthClient, Builder, DEFAULT_DEADLINE, MAX_BACKOFF};
pub use error::ClientError;
pub use futu_auth_proto::{
    BindOp, Decision, ErrorKind, Fingerprint, Iface, KeyId, KeyRecord, KeySpec, Limits, Market, Order,
    Reason, Scope, Token, TrdEnv, TrdSide, Usage,
};
