//! [`Session`]: the key of a long-lived connection — a WebSocket, an MCP session — held
//! by the layer while the connection lives, and asked with for every request and push
//! over it.

use std::fmt;
use std::sync::Arc;

use futu_auth_proto::{Decision, KeyId, Order, Reason, Scope, Token};
use futures_util::future::join_all;

use super::layer::{Authorized, Shared};
use super::order::Placed;
use super::refusal::{Allowed, Refusal};

/// The system endpoint a session's key is proved usable with: 1xxx needs no scope, and a
/// dry run consumes nothing.
pub(crate) const KEEP_ALIVE: &str = "KeepAlive";

/// In the extensions of a request on an [`Endpoint::session`](super::Endpoint::session)
/// route, or from [`AuthLayer::session`](super::AuthLayer::session): a key the layer
/// found usable, for a connection over which many requests go.
///
/// Unlike an [`OrderHandle`](super::OrderHandle) it may be asked many times: every
/// [`check`](Session::check), [`place_as`](Session::place_as) and
/// [`filter`](Session::filter) is a decision of futu-authd's, so a key revoked, expired
/// or frozen mid-session is refused at its next request or push (see
/// [`Refusal::ends_session`]). The handle holds no key, only the number of its slot in
/// the layer; the key leaves the layer when the last clone is dropped.
#[derive(Clone)]
pub struct Session {
    held: Arc<Held>,
}

/// One session's claim on its key in the layer's vault.
struct Held {
    /// The layer: its client, its front-end, its vault.
    shared: Arc<Shared>,
    /// Where the key waits.
    slot: u64,
    /// The key the opening check matched.
    key_id: KeyId,
}

impl Drop for Held {
    fn drop(&mut self) {
        drop(self.shared.vault.withdraw(self.slot));
    }
}

impl Shared {
    /// Proves `token` usable (a dry run of `KeepAlive`) and holds it for a session.
    pub(crate) async fn open_session(
        self: &Arc<Self>,
        token: Token,
        grpc: bool,
    ) -> Result<(Session, Authorized), Refusal> {
        let answer = self
            .client
            .check_dry_run(&token, self.iface, KEEP_ALIVE, None)
            .await;
        let (key_id, scope, _) = Refusal::judge(answer, grpc)?;
        let session = Session {
            held: Arc::new(Held {
                slot: self.vault.deposit(token),
                shared: Arc::clone(self),
                key_id: key_id.clone(),
            }),
        };
        let authorized = Authorized {
            key_id,
            scope,
            endpoint: KEEP_ALIVE.into(),
        };
        Ok((session, authorized))
    }
}

impl Session {
    /// The key the session was opened with.
    pub fn key_id(&self) -> &KeyId {
        &self.held.key_id
    }

    /// The check of an endpoint that takes no order (`Qot_GetBasicQot`, `3004`, …).
    pub async fn check(&self, endpoint: &str) -> Result<Authorized, Refusal> {
        let (key_id, scope, _) = self.decide(endpoint, None).await?;
        Ok(Authorized {
            key_id,
            scope,
            endpoint: endpoint.into(),
        })
    }

    /// Checks `order` for the order write `endpoint` (`Trd_PlaceOrder`, `2202`) and, when
    /// allowed, takes its rate slot and daily value: once per order, then send it to the
    /// broker; if the broker rejects it, [`Placed::release`].
    pub async fn place_as(&self, endpoint: &str, order: Order) -> Result<Placed, Refusal> {
        let allowed = self.decide(endpoint, Some(order)).await?;
        Ok(Placed::new(allowed, &self.held.shared.client))
    }

    /// Whether the key is still usable, by the same dry run that opened the session: for
    /// a connection that has been idle, whose key may have been revoked meanwhile.
    pub async fn recheck(&self) -> Result<(), Refusal> {
        let token = self.token()?;
        let shared = &self.held.shared;
        let answer = shared
            .client
            .check_dry_run(&token, shared.iface, KEEP_ALIVE, None)
            .await;
        Refusal::judge(answer, false).map(drop)
    }

    /// The pushes of `batch` the key's scopes cover, in order: each is asked of
    /// futu-authd with a scope check (all at once, pipelined on the client's one
    /// connection), and the daemon counts the ones it holds back. A push without an
    /// answer is held back too (fail closed). `Err` when the key is no longer usable
    /// ([`Refusal::ends_session`]): the connection should close.
    pub async fn filter<T>(&self, batch: Vec<(Scope, T)>) -> Result<Vec<T>, Refusal> {
        let token = self.token()?;
        let shared = &self.held.shared;
        let answers = join_all(
            batch
                .iter()
                .map(|(scope, _)| shared.client.check_scope(&token, shared.iface, *scope)),
        )
        .await;
        let mut pass = Vec::with_capacity(batch.len());
        for ((_, push), answer) in batch.into_iter().zip(answers) {
            match answer {
                Ok(Decision::Allow { .. }) => pass.push(push),
                Ok(Decision::Deny {
                    reason: Reason::Scope | Reason::Hours,
                    ..
                })
                | Err(_) => {}
                denied @ Ok(Decision::Deny { .. }) => {
                    let refusal = Refusal::judge(denied, false).expect_err("a deny is a refusal");
                    if refusal.ends_session() {
                        return Err(refusal);
                    }
                }
            }
        }
        Ok(pass)
    }

    /// One decision with the session's key, which stays in the layer.
    async fn decide(&self, endpoint: &str, order: Option<Order>) -> Result<Allowed, Refusal> {
        let token = self.token()?;
        let shared = &self.held.shared;
        let answer = shared.client.check(&token, shared.iface, endpoint, order).await;
        Refusal::judge(answer, false)
    }

    fn token(&self) -> Result<Token, Refusal> {
        self.held
            .shared
            .vault
            .peek(self.held.slot)
            .ok_or_else(|| Refusal::spent(false))
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("key_id", &self.held.key_id)
            .field("key", &"<held by the layer>")
            .finish()
    }
}
