//! [`AuthLayer`] and the [`AuthService`] it puts in front of a gateway's service; what an
//! allowed request carries on ([`Authorized`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futu_auth_proto::{Decision, Iface, KeyId, Reason, Scope, Token, TrdEnv};
use http::{Request, Response};
use http_body_util::{Either, Full};
use tower_layer::Layer;
use tower_service::Service;

use super::context::check_with;
use super::credentials::{is_grpc, take_token};
use super::order::{OrderHandle, Vault};
use super::refusal::{Allowed, Refusal};
use super::routes::{EndpointMap, Kind};
use super::session::Session;
use crate::AuthClient;
use crate::CheckContext;

/// The body of a response through the layer: the service's own, or a refusal's.
pub type AuthBody<B> = Either<B, Full<Bytes>>;

/// In the extensions of every request the layer let through after a decision: which key,
/// for which scope. On an order route it is the layer's scope check, and the order's own
/// decision is [`OrderHandle::place`]'s.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Authorized {
    /// The key that matched.
    pub key_id: KeyId,
    /// The scope it was checked for (`None` for endpoints that need none).
    pub scope: Option<Scope>,
    /// The protocol it was checked for.
    pub endpoint: Arc<str>,
}

/// A tower [`Layer`] that checks every request with futu-authd before the service sees it
/// (see [the module](super)).
#[derive(Clone, Debug)]
pub struct AuthLayer {
    pub(crate) shared: Arc<Shared>,
}

/// What every request through one layer shares.
pub(crate) struct Shared {
    /// The daemon connection every check goes through.
    pub(crate) client: AuthClient,
    /// Which front-end this is, for the daemon's audit records and metrics.
    pub(crate) iface: Iface,
    /// Which Futu endpoint each request calls.
    routes: Arc<dyn EndpointMap>,
    /// Whether `?token=` is a key (WebSocket upgrades, where a browser cannot set a header).
    query_token: bool,
    /// The keys of requests whose decision waits for their body.
    pub(crate) vault: Vault,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("client", &self.client)
            .field("iface", &self.iface)
            .field("query_token", &self.query_token)
            .field("vault", &self.vault)
            .finish_non_exhaustive()
    }
}

impl AuthLayer {
    /// A layer for the front-end `iface` (audit records and metrics are labelled with it)
    /// that asks `client` about every request, mapped to endpoints by `routes`. Keys come
    /// in the `Authorization` header only, until [`AuthLayer::query_token`].
    pub fn new(client: AuthClient, iface: Iface, routes: impl EndpointMap) -> AuthLayer {
        AuthLayer {
            shared: Arc::new(Shared {
                client,
                iface,
                routes: Arc::new(routes),
                query_token: false,
                vault: Vault::default(),
            }),
        }
    }

    /// Whether a `?token=` query parameter is a key too (for WebSocket upgrades, where a
    /// browser cannot set a header). Off by default: URLs end up in access logs.
    pub fn query_token(self, enabled: bool) -> AuthLayer {
        let s = &self.shared;
        AuthLayer {
            shared: Arc::new(Shared {
                client: s.client.clone(),
                iface: s.iface,
                routes: Arc::clone(&s.routes),
                query_token: enabled,
                vault: Vault::default(),
            }),
        }
    }

    /// A [`Session`] for a key that did not come in an HTTP request — an MCP server on
    /// stdio, whose key is in its environment — once the key is proved usable, as on an
    /// [`Endpoint::session`](super::Endpoint::session) route.
    pub async fn session(&self, token: Token) -> Result<Session, Refusal> {
        Ok(self.shared.open_session(token, false).await?.0)
    }

    /// How many keys wait in the layer (for their request's one decision, or for their
    /// session's end).
    #[cfg(test)]
    pub(crate) fn vault_held(&self) -> usize {
        self.shared.vault.held()
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service [`AuthLayer`] makes: `inner`, behind futu-authd's decision.
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> fmt::Debug for AuthService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthService")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl<S, B, ResBody> Service<Request<B>> for AuthService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<AuthBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The service that was polled ready goes with this request; a clone stays for the
        // next (tower's rule for services called from a future).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            match shared.authorize(&mut req).await {
                Ok(()) => Ok(inner.call(req).await?.map(Either::Left)),
                Err(refusal) => Ok(refusal.into_response().map(Either::Right)),
            }
        })
    }
}

impl Shared {
    /// Decides `req`: on an allow, puts [`Authorized`] (and, where the decision waits for
    /// the body, an [`OrderHandle`]) in its extensions; else the refusal.
    async fn authorize<B>(self: &Arc<Self>, req: &mut Request<B>) -> Result<(), Refusal> {
        let grpc = is_grpc(req.headers());
        let Some(token) = take_token(req, self.query_token) else {
            return Err(Refusal::no_token(grpc, self.query_token));
        };
        if !token.is_well_formed() {
            return Err(Refusal::not_a_key(grpc));
        }
        let Some(endpoint) = self.routes.endpoint(req.method(), req.uri().path()) else {
            return Err(Refusal::unmapped(req.method(), req.uri().path(), grpc));
        };
        match endpoint.kind {
            Kind::Read(name) => {
                // The account a read names (`?acc_id=`), for keys with `allowed_acc_ids`.
                let ctx = CheckContext::from_query(req.uri()).map_err(|r| r.with_grpc(grpc))?;
                let answer = check_with(&self.client, &token, self.iface, &name, None, ctx).await;
                let (key_id, scope, _) = Refusal::judge(answer, grpc)?;
                req.extensions_mut().insert(Authorized {
                    key_id,
                    scope,
                    endpoint: name,
                });
            }
            Kind::Order { name, env } => {
                let (key_id, scope, _) = self.may_trade(&token, env, grpc).await?;
                let handle =
                    OrderHandle::new(self, token, Some(Arc::clone(&name)), Some(key_id.clone()), grpc);
                req.extensions_mut().insert(Authorized {
                    key_id,
                    scope,
                    endpoint: name,
                });
                req.extensions_mut().insert(handle);
            }
            Kind::InBody => {
                req.extensions_mut()
                    .insert(OrderHandle::new(self, token, None, None, grpc));
            }
            Kind::Session => {
                let (session, authorized) = self.open_session(token, grpc).await?;
                req.extensions_mut().insert(authorized);
                req.extensions_mut().insert(session);
            }
        }
        Ok(())
    }

    /// Whether the key may trade: a scope check (it consumes nothing) of the route's
    /// environment, or, when the route does not know it, of `trade:simulate` and then —
    /// only when the key lacks that — of `trade:real`.
    pub(super) async fn may_trade(
        &self,
        token: &Token,
        env: Option<TrdEnv>,
        grpc: bool,
    ) -> Result<Allowed, Refusal> {
        let first = match env {
            Some(TrdEnv::Real) => Scope::TradeReal,
            Some(TrdEnv::Simulate) | None => Scope::TradeSimulate,
        };
        match self.client.check_scope(token, self.iface, first).await {
            Ok(Decision::Deny {
                reason: Reason::Scope,
                ..
            }) if env.is_none() => {
                let answer = self.client.check_scope(token, self.iface, Scope::TradeReal).await;
                Refusal::judge(answer, grpc)
            }
            answer => Refusal::judge(answer, grpc),
        }
    }
}
