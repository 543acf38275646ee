//! [`OrderHandle`]: the decision a handler makes once it has decoded the body — an order
//! placed exactly once, or the endpoint of a generic call — with a key the handler never
//! holds; and [`Placed`], the order's allow, which can give its value back.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futu_auth_proto::{KeyId, Order, OrderEventKind, OrderEventOutcome, Scope, Token, TrdEnv};

use super::context::check_with;
use super::layer::{Authorized, Shared};
use super::refusal::{Allowed, Refusal};
use crate::CheckContext;
use crate::{AuthClient, ClientError};

/// The keys of requests whose decision waits for their body, and of sessions, by slot
/// number. A request's key leaves when its one decision is asked, or when its handle is
/// dropped; a session's when its last handle is dropped.
#[derive(Default)]
pub(crate) struct Vault {
    /// The next slot: a counter, so two requests never share one. It need not be
    /// unguessable: a slot number never leaves the process, and only a handle made by the
    /// layer (its fields are private) can redeem one.
    next_slot: AtomicU64,
    /// The keys waiting.
    keys: Mutex<HashMap<u64, Token>>,
}

impl Vault {
    pub(super) fn deposit(&self, token: Token) -> u64 {
        let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(slot, token);
        slot
    }

    pub(super) fn withdraw(&self, slot: u64) -> Option<Token> {
        self.lock().remove(&slot)
    }

    /// A copy of the key in `slot`, which stays (a session's key, asked with many times).
    pub(super) fn peek(&self, slot: u64) -> Option<Token> {
        self.lock().get(&slot).cloned()
    }

    /// How many keys are waiting.
    pub(crate) fn held(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Token>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault").field("held", &self.held()).finish()
    }
}

/// In the extensions of a request whose decision waits for its body: an order route
/// ([`Endpoint::order`](super::Endpoint::order)) or a route whose endpoint is in the body
/// ([`Endpoint::in_body`](super::Endpoint::in_body)).
///
/// Call one of [`place`](OrderHandle::place), [`place_as`](OrderHandle::place_as) or
/// [`check`](OrderHandle::check) once, with what the body said: that is the request's
/// check, and an order's rate slot and daily value are taken there, exactly once. The
/// handle holds no key, only the number of its slot in the layer; cloning it (extensions
/// are cloned by extractors) does not allow a second decision.
#[derive(Clone)]
pub struct OrderHandle {
    held: Arc<Held>,
}

/// One request's claim on its key in the layer's vault.
struct Held {
    /// The layer: its client, its front-end, its vault.
    shared: Arc<Shared>,
    /// Where the key waits.
    slot: u64,
    /// The route's protocol; `None` for a route whose endpoint is in the body.
    endpoint: Option<Arc<str>>,
    /// The key the layer's scope check matched (order routes).
    key_id: Option<KeyId>,
    /// Whether refusals are gRPC's.
    grpc: bool,
}

impl Drop for Held {
    fn drop(&mut self) {
        drop(self.shared.vault.withdraw(self.slot));
    }
}

impl OrderHandle {
    pub(crate) fn new(
        shared: &Arc<Shared>,
        token: Token,
        endpoint: Option<Arc<str>>,
        key_id: Option<KeyId>,
        grpc: bool,
    ) -> OrderHandle {
        OrderHandle {
            held: Arc::new(Held {
                slot: shared.vault.deposit(token),
                shared: Arc::clone(shared),
                endpoint,
                key_id,
                grpc,
            }),
        }
    }

    /// The key the layer matched, on an order route (`None` where the endpoint is in the
    /// body: the layer has not asked yet).
    pub fn key_id(&self) -> Option<&KeyId> {
        self.held.key_id.as_ref()
    }

    /// The route's protocol (`None` where it is in the body).
    pub fn endpoint(&self) -> Option<&str> {
        self.held.endpoint.as_deref()
    }

    /// Checks `order` for the route's endpoint and, when allowed, takes its rate slot and
    /// daily value: call it once, then send the order to the broker and report what
    /// becomes of it ([`Placed::accepted`], [`Placed::filled`], …; [`Placed::rejected`]
    /// gives its daily value back).
    pub async fn place(&self, order: Order) -> Result<Placed, Refusal> {
        self.place_with(order, CheckContext::default()).await
    }

    /// [`place`](OrderHandle::place), with the order's account and the gateway's reference
    /// price for its symbol (protocol version 6's risk limits: `account`, `price_collar`).
    pub async fn place_with(&self, order: Order, ctx: CheckContext) -> Result<Placed, Refusal> {
        let Some(endpoint) = self.held.endpoint.clone() else {
            return Err(Refusal::no_endpoint(self.held.grpc));
        };
        self.place_as_with(&endpoint, order, ctx).await
    }

    /// [`place`](OrderHandle::place) for a route whose endpoint is in the body: the order
    /// write the body names (`Trd_PlaceOrder`, or its id `2202`).
    pub async fn place_as(&self, endpoint: &str, order: Order) -> Result<Placed, Refusal> {
        self.place_as_with(endpoint, order, CheckContext::default()).await
    }

    /// [`place_as`](OrderHandle::place_as), with the order's account and reference price.
    pub async fn place_as_with(
        &self,
        endpoint: &str,
        order: Order,
        ctx: CheckContext,
    ) -> Result<Placed, Refusal> {
        let allowed = self.decide(endpoint, Some(order), ctx).await?;
        Ok(Placed::new(allowed, &self.held.shared.client))
    }

    /// The check of an endpoint that takes no order, named by the body (a generic call's
    /// protocol id, e.g. `3004`).
    pub async fn check(&self, endpoint: &str) -> Result<Authorized, Refusal> {
        self.check_with(endpoint, CheckContext::default()).await
    }

    /// [`check`](OrderHandle::check), with the account an account read names (a key with
    /// `allowed_acc_ids` is refused `account` without one).
    pub async fn check_with(&self, endpoint: &str, ctx: CheckContext) -> Result<Authorized, Refusal> {
        let (key_id, scope, _) = self.decide(endpoint, None, ctx).await?;
        Ok(Authorized {
            key_id,
            scope,
            endpoint: endpoint.into(),
        })
    }

    /// For an order write that places nothing new — a cancel (`Trd_ModifyOrder`) of an
    /// order the key placed — the check an [`Endpoint::order`](super::Endpoint::order)
    /// route makes in the layer: may the key trade in `env` (`None`: `trade:simulate`, or
    /// `trade:real` when the key holds only that). Consumes nothing. The gateway then
    /// finds the order by the returned key's id, and reports [`Placed::cancelled`].
    pub async fn may_trade(&self, endpoint: &str, env: Option<TrdEnv>) -> Result<Authorized, Refusal> {
        let held = &self.held;
        let Some(token) = held.shared.vault.withdraw(held.slot) else {
            return Err(Refusal::spent(held.grpc));
        };
        let (key_id, scope, _) = held.shared.may_trade(&token, env, held.grpc).await?;
        Ok(Authorized {
            key_id,
            scope,
            endpoint: endpoint.into(),
        })
    }

    /// The request's one check: the key leaves the vault for it.
    async fn decide(
        &self,
        endpoint: &str,
        order: Option<Order>,
        ctx: CheckContext,
    ) -> Result<Allowed, Refusal> {
        let held = &self.held;
        let Some(token) = held.shared.vault.withdraw(held.slot) else {
            return Err(Refusal::spent(held.grpc));
        };
        let answer = check_with(
            &held.shared.client,
            &token,
            held.shared.iface,
            endpoint,
            order,
            ctx,
        )
        .await;
        Refusal::judge(answer, held.grpc)
    }
}

impl fmt::Debug for OrderHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrderHandle")
            .field("endpoint", &self.held.endpoint)
            .field("key_id", &self.held.key_id)
            .field("key", &"<held by the layer>")
            .finish()
    }
}

/// An allowed order: its rate slot and daily value are taken. Report what becomes of it
/// at the broker — [`accepted`](Placed::accepted), [`partially_filled`](Placed::partially_filled),
/// [`filled`](Placed::filled), [`cancelled`](Placed::cancelled), [`rejected`](Placed::rejected)
/// — so that futu-authd's ledger follows the key's open orders and positions
/// (`max_open_orders`, `max_position_value`; protocol version 6). A clone reports for the
/// same order: keep one with the broker's order.
#[derive(Debug, Clone)]
#[must_use = "report what the broker makes of the order: rejected() gives its daily value back"]
pub struct Placed {
    /// The key the order was charged to.
    pub key_id: KeyId,
    /// The scope the order needed (`trade:simulate` or `trade:real`).
    pub scope: Option<Scope>,
    /// The ledger's ticket for the order's events and [`release`](Placed::release);
    /// `None` when the order took nothing the ledger follows or could give back.
    pub ticket: Option<u64>,
    /// Where the events go.
    client: AuthClient,
}

impl Placed {
    pub(super) fn new((key_id, scope, ticket): Allowed, client: &AuthClient) -> Placed {
        Placed {
            key_id,
            scope,
            ticket,
            client: client.clone(),
        }
    }

    /// The broker rejected the order: gives its daily value back (once, within 15 minutes
    /// of the check). Returns the value refunded. An `Err` leaves the value counted — the
    /// safe side — and says why. [`rejected`](Placed::rejected) does the same and closes
    /// the order in the ledger too.
    pub async fn release(self) -> Result<f64, ClientError> {
        match self.ticket {
            Some(ticket) => self.client.release(ticket).await,
            None => Ok(0.0),
        }
    }

    /// The broker took the order: it is open.
    pub async fn accepted(&self) -> Result<Option<OrderEventOutcome>, ClientError> {
        self.event(OrderEventKind::Accepted, None, None).await
    }

    /// Part of the order filled: `filled_qty` in all so far, at `fill_price` on average.
    /// Counts in the symbol's position; the order stays open.
    pub async fn partially_filled(
        &self,
        filled_qty: f64,
        fill_price: f64,
    ) -> Result<Option<OrderEventOutcome>, ClientError> {
        self.event(
            OrderEventKind::PartiallyFilled,
            Some(filled_qty),
            Some(fill_price),
        )
        .await
    }

    /// The order filled: `filled_qty` in all, at `fill_price` on average. Counts in the
    /// symbol's position; the order is no longer open.
    pub async fn filled(
        &self,
        filled_qty: f64,
        fill_price: f64,
    ) -> Result<Option<OrderEventOutcome>, ClientError> {
        self.event(OrderEventKind::Filled, Some(filled_qty), Some(fill_price))
            .await
    }

    /// The order was cancelled: no longer open (what filled stays; the daily value it
    /// took is not given back).
    pub async fn cancelled(&self) -> Result<Option<OrderEventOutcome>, ClientError> {
        self.event(OrderEventKind::Cancelled, None, None).await
    }

    /// The broker rejected the order: no longer open, and its daily value is given back
    /// (`Applied`'s `refunded_value`). A daemon older than protocol version 6 is sent a
    /// Release instead, which gives the value back.
    pub async fn rejected(&self) -> Result<Option<OrderEventOutcome>, ClientError> {
        match self.event(OrderEventKind::Rejected, None, None).await {
            Err(ClientError::TooOld { .. }) => {
                let Some(ticket) = self.ticket else {
                    return Ok(None);
                };
                let refunded_value = self.client.release(ticket).await?;
                Ok(Some(OrderEventOutcome::Applied {
                    key_id: self.key_id.clone(),
                    refunded_value,
                }))
            }
            other => other,
        }
    }

    /// Reports `kind` of the order (see [`AuthClient::order_event`]); `Ok(None)` when it
    /// has no ticket (nothing to follow). Sending an event again is safe: `Duplicate`.
    pub async fn event(
        &self,
        kind: OrderEventKind,
        filled_qty: Option<f64>,
        fill_price: Option<f64>,
    ) -> Result<Option<OrderEventOutcome>, ClientError> {
        let Some(ticket) = self.ticket else {
            return Ok(None);
        };
        self.client
            .order_event(ticket, kind, filled_qty, fill_price)
            .await
            .map(Some)
    }
}
