//! [`Session`]: the key of a long-lived connection — a WebSocket, an MCP session — held
//! by the layer while the connection lives, and asked with for every request and push
//! over it.
//!
//! What a session asks again and again — may its pushes go out, is its key still usable —
//! goes to futu-authd as a `SessionCheck` carrying what the session was told last: the
//! daemon decides every one, but audits one only when its outcome changes. A session
//! starts out allowed (it was opened by an audited check) and receiving no pushes, so the
//! first push of a scope the key holds is audited as an allow, a key that lacks a scope
//! leaves no record for it (the metric `futu_ws_filtered_pushes_total` counts what was
//! held back), and a key revoked mid-session is audited at the decision that ends it.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use futu_auth_proto::{Decision, KeyId, Order, Reason, Scope, SessionOutcome, SessionSubject, Token, TrdEnv};
use futures_util::future::join_all;

use super::context::check_with;
use super::layer::{Authorized, Shared};
use super::order::Placed;
use super::refusal::{Allowed, Refusal};
use crate::client::KEEP_ALIVE;
use crate::sessions::SessionSlot;
use crate::CheckContext;
use crate::ClientError;

/// In the extensions of a request on an [`Endpoint::session`](super::Endpoint::session)
/// route, or from [`AuthLayer::session`](super::AuthLayer::session): a key the layer
/// found usable, for a connection over which many requests go.
///
/// Unlike an [`OrderHandle`](super::OrderHandle) it may be asked many times: every
/// [`check`](Session::check), [`place_as`](Session::place_as),
/// [`filter`](Session::filter) and [`recheck`](Session::recheck) is a decision of
/// futu-authd's, so a key revoked, expired or frozen mid-session is refused at its next
/// request or push (see [`Refusal::ends_session`]). The handle holds no key, only the
/// number of its slot in the layer; the key leaves the layer, and the session its place
/// among the key's sessions, when the last clone is dropped.
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
    /// Its place among the sessions its key may hold; freed with the session.
    _place: SessionSlot,
    /// What the session was told last, by subject: the daemon audits a decision only
    /// when it differs.
    told: Mutex<Told>,
}

/// The outcomes a session was told last.
struct Told {
    /// Whether the key is usable: allowed at the opening.
    keep_alive: SessionOutcome,
    /// Whether pushes of a scope go out; a scope not asked about yet has none going out,
    /// as if refused for want of the scope.
    pushes: HashMap<Scope, SessionOutcome>,
}

impl Told {
    const NO_PUSHES: SessionOutcome = SessionOutcome::Deny(Reason::Scope);

    fn pushes(&self, scope: Scope) -> SessionOutcome {
        self.pushes.get(&scope).copied().unwrap_or(Told::NO_PUSHES)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        drop(self.shared.vault.withdraw(self.slot));
    }
}

impl Shared {
    /// Proves `token` usable (a dry run of `KeepAlive`, audited: a session's opening) and
    /// holds it for a session, unless its key holds the most sessions it may. A plaintext
    /// whose key is known to be at its limit is refused before futu-authd is asked.
    pub(crate) async fn open_session(
        self: &Arc<Self>,
        token: Token,
        grpc: bool,
    ) -> Result<(Session, Authorized), Refusal> {
        if let Some((key_id, full)) = self.client.sessions_full_for(&token) {
            return Err(Refusal::sessions(full.max, key_id, grpc));
        }
        let answer = self
            .client
            .check_dry_run(&token, self.iface, KEEP_ALIVE, None)
            .await;
        let (key_id, scope, _) = Refusal::judge(answer, grpc)?;
        let place = self
            .client
            .open_session_slot(&key_id, &token)
            .map_err(|full| Refusal::sessions(full.max, key_id.clone(), grpc))?;
        let session = Session {
            held: Arc::new(Held {
                slot: self.vault.deposit(token),
                shared: Arc::clone(self),
                key_id: key_id.clone(),
                _place: place,
                told: Mutex::new(Told {
                    keep_alive: SessionOutcome::Allow,
                    pushes: HashMap::new(),
                }),
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
        self.check_with(endpoint, CheckContext::default()).await
    }

    /// [`check`](Session::check), with the account an account read names (a key with
    /// `allowed_acc_ids` is refused `account` without one).
    pub async fn check_with(&self, endpoint: &str, ctx: CheckContext) -> Result<Authorized, Refusal> {
        let (key_id, scope, _) = self.decide(endpoint, None, ctx).await?;
        Ok(Authorized {
            key_id,
            scope,
            endpoint: endpoint.into(),
        })
    }

    /// Checks `order` for the order write `endpoint` (`Trd_PlaceOrder`, `2202`) and, when
    /// allowed, takes its rate slot and daily value: once per order, then send it to the
    /// broker and report what becomes of it ([`Placed::accepted`], …,
    /// [`Placed::rejected`]).
    pub async fn place_as(&self, endpoint: &str, order: Order) -> Result<Placed, Refusal> {
        self.place_as_with(endpoint, order, CheckContext::default()).await
    }

    /// [`place_as`](Session::place_as), with the order's account and the gateway's
    /// reference price for its symbol.
    pub async fn place_as_with(
        &self,
        endpoint: &str,
        order: Order,
        ctx: CheckContext,
    ) -> Result<Placed, Refusal> {
        let allowed = self.decide(endpoint, Some(order), ctx).await?;
        Ok(Placed::new(allowed, &self.held.shared.client))
    }

    /// For an order write that places nothing new — a cancel of an order the key placed —
    /// may the key trade in `env` (see [`OrderHandle::may_trade`](super::OrderHandle::may_trade)).
    /// Consumes nothing.
    pub async fn may_trade(&self, endpoint: &str, env: Option<TrdEnv>) -> Result<Authorized, Refusal> {
        let token = self.token()?;
        let (key_id, scope, _) = self.held.shared.may_trade(&token, env, false).await?;
        Ok(Authorized {
            key_id,
            scope,
            endpoint: endpoint.into(),
        })
    }

    /// Whether the key is still usable, by the decision that opened the session (a dry run
    /// of `KeepAlive`): for a connection that has been idle, whose key may have been
    /// revoked meanwhile. Audited only when the answer changes.
    pub async fn recheck(&self) -> Result<(), Refusal> {
        let previous = self.told().keep_alive;
        let answer = self.ask(SessionSubject::KeepAlive, previous).await;
        if let Ok(d) = &answer {
            self.told().keep_alive = SessionOutcome::of(d);
        }
        Refusal::judge(answer, false).map(drop)
    }

    /// Whether `token` — presented again on a request of this session (an MCP session's
    /// next HTTP request) — is a usable key and the session's own: a decision audited
    /// only when it refuses. `Err` when it is not usable (the refusal) or not this
    /// session's key ([`Refusal`] `unknown_session`).
    pub(crate) async fn belongs_to(&self, token: &Token, grpc: bool) -> Result<(), Refusal> {
        let shared = &self.held.shared;
        let answer = shared
            .client
            .session_check(
                token,
                shared.iface,
                SessionSubject::KeepAlive,
                SessionOutcome::Allow,
            )
            .await;
        let (key_id, _, _) = Refusal::judge(answer, grpc)?;
        if key_id == self.held.key_id {
            Ok(())
        } else {
            Err(Refusal::unknown_session().with_grpc(grpc))
        }
    }

    /// Whether `token` is the plaintext the session was opened with.
    pub(crate) fn holds(&self, token: &Token) -> bool {
        self.token().is_ok_and(|t| t == *token)
    }

    /// The pushes of `batch` the key's scopes cover, in order: futu-authd decides each
    /// scope of the batch once (all at once, pipelined on the client's one connection),
    /// counts the pushes it holds back, and audits a decision only when it differs from
    /// the one this session had for that scope. A push without an answer is held back too
    /// (fail closed). `Err` when the key is no longer usable ([`Refusal::ends_session`]):
    /// the connection should close.
    pub async fn filter<T>(&self, batch: Vec<(Scope, T)>) -> Result<Vec<T>, Refusal> {
        let mut scopes: Vec<(Scope, u32)> = Vec::new();
        for (scope, _) in &batch {
            match scopes.iter_mut().find(|(s, _)| s == scope) {
                Some((_, n)) => *n += 1,
                None => scopes.push((*scope, 1)),
            }
        }
        let asked = {
            let told = self.told();
            scopes
                .iter()
                .map(|&(scope, pushes)| (SessionSubject::Pushes { scope, pushes }, told.pushes(scope)))
                .collect::<Vec<_>>()
        };
        let answers = join_all(
            asked
                .iter()
                .map(|&(subject, previous)| self.ask(subject, previous)),
        )
        .await;
        let mut pass_scopes = Vec::new();
        for ((scope, _), answer) in scopes.iter().zip(answers) {
            if let Ok(d) = &answer {
                self.told().pushes.insert(*scope, SessionOutcome::of(d));
            }
            match answer {
                Ok(Decision::Allow { .. }) => pass_scopes.push(*scope),
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
        Ok(batch
            .into_iter()
            .filter(|(scope, _)| pass_scopes.contains(scope))
            .map(|(_, push)| push)
            .collect())
    }

    /// One of the session's repeated decisions, with the key it holds.
    async fn ask(&self, subject: SessionSubject, previous: SessionOutcome) -> Result<Decision, ClientError> {
        let token = self.token().map_err(|_| ClientError::Closed)?;
        let shared = &self.held.shared;
        shared
            .client
            .session_check(&token, shared.iface, subject, previous)
            .await
    }

    /// One decision with the session's key, which stays in the layer.
    async fn decide(
        &self,
        endpoint: &str,
        order: Option<Order>,
        ctx: CheckContext,
    ) -> Result<Allowed, Refusal> {
        let token = self.token()?;
        let shared = &self.held.shared;
        let answer = check_with(&shared.client, &token, shared.iface, endpoint, order, ctx).await;
        Refusal::judge(answer, false)
    }

    fn token(&self) -> Result<Token, Refusal> {
        self.held
            .shared
            .vault
            .peek(self.held.slot)
            .ok_or_else(|| Refusal::spent(false))
    }

    fn told(&self) -> std::sync::MutexGuard<'_, Told> {
        self.held.told.lock().unwrap_or_else(|p| p.into_inner())
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
