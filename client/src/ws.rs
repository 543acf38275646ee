//! The WebSocket adapter (feature `ws`, over axum's WebSocket): one connection's
//! requests and pushes, each decided with the [`Session`] the auth layer opened at the
//! upgrade.
//!
//! The key is checked at the upgrade, by an [`AuthLayer`](crate::http::AuthLayer) route
//! of [`Endpoint::session`](crate::http::Endpoint::session) (with
//! [`query_token`](crate::http::AuthLayer::query_token), for browsers): a refusal is a
//! 401 or 403 before any upgrade. [`serve`] then runs the connection:
//!
//! * a request, a text frame `{"id", "proto_id", "body"}`, goes to the gateway's
//!   [`Handler`], which decides it through the session like a REST request (an order is
//!   placed once); the answer is `{"id", "ok": …}` or
//!   `{"id", "error": {"reason", "detail", "retry_after_ms"}}`;
//! * every [`Push`] the gateway would send is scope-checked for the connection's key
//!   ([`Session::filter`]: what is ready goes as one batch, pipelined), and goes out as
//!   `{"push": proto_id, "body": …}` only when the key's scopes cover it; futu-authd
//!   counts the ones held back in `futu_ws_filtered_pushes_total`;
//! * when the key is revoked, expires or is frozen, the connection is closed with 1008
//!   (policy violation) at its next request or push, and an idle one is asked about once
//!   a [`RECHECK`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::extract::{State, WebSocketUpgrade};
//! use axum::response::Response;
//! use axum::Extension;
//! use futu_auth_client::http::Session;
//! use futu_auth_client::ws::{self, Failure, Handler, Push};
//!
//! struct Gateway;
//! impl Handler for Gateway {
//!     async fn request(&self, session: &Session, proto_id: u32, _body: serde_json::Value)
//!         -> Result<serde_json::Value, Failure> {
//!         session.check(&proto_id.to_string()).await?;
//!         Ok(serde_json::json!({}))
//!     }
//! }
//!
//! async fn upgrade(
//!     upgrade: WebSocketUpgrade,
//!     Extension(session): Extension<Session>,
//!     State(gateway): State<Arc<Gateway>>,
//! ) -> Response {
//!     let pushes = futures_util::stream::pending::<Push>();
//!     upgrade.on_upgrade(move |socket| ws::serve(socket, session, gateway, pushes))
//! }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futu_auth_proto::Scope;
use futures_util::{FutureExt, Stream, StreamExt};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::http::{Refusal, Session};

/// The close code of a connection whose key is no longer usable: policy violation.
pub const POLICY_VIOLATION: u16 = 1008;

/// How long a connection may go without a decision before its key is asked about again.
pub const RECHECK: Duration = Duration::from_secs(1);

/// At most this many pushes are filtered as one batch.
const MAX_BATCH: usize = 256;

/// How long a closing connection waits for the peer's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// A push the gateway would send: its protocol id, the scope it needs, its body.
#[derive(Debug, Clone)]
pub struct Push {
    /// E.g. 3005 (Qot_UpdateBasicQot).
    pub proto_id: u32,
    /// What a key must hold to receive it (`qot:read` for quotes, `trade:simulate` for
    /// order updates).
    pub scope: Scope,
    /// The push's body.
    pub body: Value,
}

/// Why a request over the socket failed: futu-authd's refusal, or the gateway's own
/// error. Sent as `{"reason", "detail", "retry_after_ms"}`.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The body of the `error` member.
    body: Value,
    /// futu-authd's refusal, when it refused: one that ends the session closes the
    /// connection after the answer.
    refusal: Option<Box<Refusal>>,
}

impl Failure {
    /// The gateway's own error (`no_quote`, `broker_rejected`, …).
    pub fn new(reason: &str, detail: impl Into<String>) -> Failure {
        Failure {
            body: json!({"reason": reason, "detail": detail.into(), "retry_after_ms": null}),
            refusal: None,
        }
    }
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Failure {
        Failure {
            body: serde_json::from_str(&r.to_json()).unwrap_or(Value::Null),
            refusal: Some(Box::new(r)),
        }
    }
}

/// What the gateway answers over the socket.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request, deciding it through `session` (`check`, `place_as`).
    fn request(
        &self,
        session: &Session,
        proto_id: u32,
        body: Value,
    ) -> impl Future<Output = Result<Value, Failure>> + Send;
}

/// Serves one upgraded connection until the peer closes it or its key is no longer
/// usable (closed with 1008). `pushes` is what the gateway would send it.
pub async fn serve<H, P>(mut socket: WebSocket, session: Session, handler: Arc<H>, mut pushes: P)
where
    H: Handler,
    P: Stream<Item = Push> + Unpin + Send,
{
    let idle = tokio::time::sleep(RECHECK);
    tokio::pin!(idle);
    let end = loop {
        tokio::select! {
            frame = socket.recv() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                    Some(Ok(_)) => continue, // pings are answered by axum; binary is not ours
                };
                let (answer, end) = answer(&*handler, &session, text.as_str()).await;
                idle.as_mut().reset(Instant::now() + RECHECK);
                if socket.send(Message::Text(answer.to_string().into())).await.is_err() {
                    return;
                }
                if end.is_some() {
                    break end;
                }
            }
            Some(first) = pushes.next() => {
                let mut batch = vec![(first.scope, first)];
                while batch.len() < MAX_BATCH {
                    match pushes.next().now_or_never() {
                        Some(Some(p)) => batch.push((p.scope, p)),
                        _ => break,
                    }
                }
                idle.as_mut().reset(Instant::now() + RECHECK);
                match session.filter(batch).await {
                    Ok(pass) => {
                        for p in pass {
                            let frame = json!({"push": p.proto_id, "body": p.body}).to_string();
                            if socket.send(Message::Text(frame.into())).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(refusal) => break Some(refusal),
                }
            }
            () = &mut idle => {
                idle.as_mut().reset(Instant::now() + RECHECK);
                if let Err(refusal) = session.recheck().await {
                    if refusal.ends_session() {
                        break Some(refusal);
                    }
                }
            }
        }
    };
    if let Some(refusal) = end {
        close(socket, &refusal).await;
    }
}

/// The answer to one text frame, and the refusal that ends the session, if one did.
async fn answer<H: Handler>(handler: &H, session: &Session, text: &str) -> (Value, Option<Refusal>) {
    #[derive(serde::Deserialize)]
    struct Frame {
        #[serde(default)]
        id: Value,
        proto_id: u32,
        #[serde(default)]
        body: Value,
    }
    let frame: Frame = match serde_json::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            let detail = format!("a request is {{\"id\", \"proto_id\", \"body\"}}: {e}");
            let failure = Failure::new("bad_request", detail);
            return (json!({"id": null, "error": failure.body}), None);
        }
    };
    match handler.request(session, frame.proto_id, frame.body).await {
        Ok(ok) => (json!({"id": frame.id, "ok": ok}), None),
        Err(Failure { body, refusal }) => {
            let end = refusal.filter(|r| r.ends_session()).map(|r| *r);
            (json!({"id": frame.id, "error": body}), end)
        }
    }
}

/// Closes with 1008 and the refusal's reason, then waits a moment for the peer's close.
async fn close(mut socket: WebSocket, refusal: &Refusal) {
    let frame = CloseFrame {
        code: POLICY_VIOLATION,
        reason: refusal.cause().as_str().into(),
    };
    if socket.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(m)) = socket.recv().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}
