//! [`OrderHandle`]: the decision a handler makes once it has decoded the body — an order
//! placed exactly once, or the endpoint of a generic call — with a key the handler never
//! holds; and [`Placed`], the order's allow, which can give its value back.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futu_auth_proto::{KeyId, Order, Scope, Token};

use super::layer::{Authorized, Shared};
use super::refusal::{Allowed, Refusal};
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
    /// daily value: call it once, then send the order to the broker; if the broker
    /// rejects it, [`Placed::release`].
    pub async fn place(&self, order: Order) -> Result<Placed, Refusal> {
        let Some(endpoint) = self.held.endpoint.clone() else {
            return Err(Refusal::no_endpoint(self.held.grpc));
        };
        self.place_as(&endpoint, order).await
    }

    /// [`place`](OrderHandle::place) for a route whose endpoint is in the body: the order
    /// write the body names (`Trd_PlaceOrder`, or its id `2202`).
    pub async fn place_as(&self, endpoint: &str, order: Order) -> Result<Placed, Refusal> {
        let allowed = self.decide(endpoint, Some(order)).await?;
        Ok(Placed::new(allowed, &self.held.shared.client))
    }

    /// The check of an endpoint that takes no order, named by the body (a generic call's
    /// protocol id, e.g. `3004`).
    pub async fn check(&self, endpoint: &str) -> Result<Authorized, Refusal> {
        let (key_id, scope, _) = self.decide(endpoint, None).await?;
        Ok(Authorized {
            key_id,
            scope,
            endpoint: endpoint.into(),
        })
    }

    /// The request's one check: the key leaves the vault for it.
    async fn decide(&self, endpoint: &str, order: Option<Order>) -> Result<Allowed, Refusal> {
        let held = &self.held;
        let Some(token) = held.shared.vault.withdraw(held.slot) else {
            return Err(Refusal::spent(held.grpc));
        };
        let answer = held
            .shared
            .client
            .check(&token, held.shared.iface, endpoint, order)
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

/// An allowed order: its rate slot and daily value are taken. If the broker rejects it,
/// [`release`](Placed::release) gives the value back.
#[derive(Debug)]
#[must_use = "if the broker rejects the order, release() gives its daily value back"]
pub struct Placed {
    /// The key the order was charged to.
    pub key_id: KeyId,
    /// The scope the order needed (`trade:simulate` or `trade:real`).
    pub scope: Option<Scope>,
    /// The ledger's ticket for [`release`](Placed::release); `None` when the order took
    /// nothing that could be given back.
    pub ticket: Option<u64>,
    /// Where the release goes.
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
    /// safe side — and says why.
    pub async fn release(self) -> Result<f64, ClientError> {
        match self.ticket {
            Some(ticket) => self.client.release(ticket).await,
            None => Ok(0.0),
        }
    }
}
