//! Which Futu endpoint a request calls: [`Endpoint`], the gateway's [`Routes`] table, and
//! [`EndpointMap`], what the layer asks (a table, or a closure over method and path).

use std::collections::HashMap;
use std::sync::Arc;

use futu_auth_proto::TrdEnv;
use http::Method;

/// The Futu OpenAPI protocol a request calls, and how its decision is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub(crate) kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Decided in the layer, by a check without an order.
    Read(Arc<str>),
    /// An order write: the layer checks a trading scope, the handler places the order.
    Order {
        /// The protocol, e.g. `Trd_PlaceOrder`.
        name: Arc<str>,
        /// The trading environment every order of the route goes to, when the route knows.
        env: Option<TrdEnv>,
    },
    /// The protocol is named in the body; the handler asks once it has decoded it.
    InBody,
    /// A long-lived connection (a WebSocket, an MCP session): the layer proves the key
    /// usable and the handler asks for each request over it.
    Session,
}

impl Endpoint {
    /// An endpoint that takes no order (quotes, account reads, …), by protocol name
    /// (`Qot_GetBasicQot`) or id (`3004`): decided in the layer.
    pub fn read(protocol: impl Into<Arc<str>>) -> Endpoint {
        Endpoint {
            kind: Kind::Read(protocol.into()),
        }
    }

    /// An order write (`Trd_PlaceOrder`, `Trd_ModifyOrder`, …): the layer lets through a
    /// key that may trade, with an [`OrderHandle`](super::OrderHandle) for the handler,
    /// which places the decoded order with it.
    pub fn order(protocol: impl Into<Arc<str>>) -> Endpoint {
        Endpoint {
            kind: Kind::Order {
                name: protocol.into(),
                env: None,
            },
        }
    }

    /// For an order route whose orders all go to one environment: the layer checks only
    /// that environment's scope (`trade:real` for [`TrdEnv::Real`]). Without it, the layer
    /// checks `trade:simulate`, then `trade:real` when the key lacks the first.
    pub fn env(self, env: TrdEnv) -> Endpoint {
        match self.kind {
            Kind::Order { name, .. } => Endpoint {
                kind: Kind::Order { name, env: Some(env) },
            },
            other => Endpoint { kind: other },
        }
    }

    /// A route whose protocol is named in the body, such as a generic call carrying a
    /// protocol id: the layer requires a key and leaves the decision to the handler
    /// ([`OrderHandle::check`](super::OrderHandle::check),
    /// [`OrderHandle::place_as`](super::OrderHandle::place_as)).
    pub fn in_body() -> Endpoint {
        Endpoint { kind: Kind::InBody }
    }

    /// A route that opens a session — a WebSocket upgrade, an MCP endpoint — over which
    /// many requests go: the layer checks that the key is usable (a dry run of the system
    /// endpoint `KeepAlive`, which needs no scope and consumes nothing) and puts a
    /// [`Session`](super::Session) in the extensions; the handler asks for each request
    /// through it. The key stays in the layer while the session lives.
    pub fn session() -> Endpoint {
        Endpoint { kind: Kind::Session }
    }

    /// The protocol, when the route names it.
    pub fn protocol(&self) -> Option<&str> {
        match &self.kind {
            Kind::Read(name) | Kind::Order { name, .. } => Some(name),
            Kind::InBody | Kind::Session => None,
        }
    }
}

/// Maps a request to the Futu endpoint it calls; `None` for a request that calls none,
/// which the layer refuses (`unknown_endpoint`) rather than let through unchecked.
///
/// [`Routes`] is one; so is any `Fn(&Method, &str) -> Option<Endpoint>` over the method
/// and the path.
pub trait EndpointMap: Send + Sync + 'static {
    /// The endpoint of a request with this method and path.
    fn endpoint(&self, method: &Method, path: &str) -> Option<Endpoint>;
}

impl<F> EndpointMap for F
where
    F: Fn(&Method, &str) -> Option<Endpoint> + Send + Sync + 'static,
{
    fn endpoint(&self, method: &Method, path: &str) -> Option<Endpoint> {
        self(method, path)
    }
}

/// A route table: method and exact path → endpoint.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    /// By path, then method: a lookup borrows the request's path, nothing is allocated.
    by_path: HashMap<String, Vec<(Method, Endpoint)>>,
}

impl Routes {
    /// An empty table.
    pub fn new() -> Routes {
        Routes::default()
    }

    /// `method path` calls `endpoint`. A later route for the same method and path
    /// replaces an earlier one.
    pub fn route(mut self, method: Method, path: impl Into<String>, endpoint: Endpoint) -> Routes {
        let routes = self.by_path.entry(path.into()).or_default();
        routes.retain(|(m, _)| *m != method);
        routes.push((method, endpoint));
        self
    }

    /// A gRPC method, by its path (`/package.Service/Method`): gRPC calls are POSTs.
    pub fn grpc(self, path: impl Into<String>, endpoint: Endpoint) -> Routes {
        self.route(Method::POST, path, endpoint)
    }
}

impl EndpointMap for Routes {
    /// The route of `method path`; a HEAD without a route of its own is its GET's (HTTP
    /// servers answer HEAD as GET without the body).
    fn endpoint(&self, method: &Method, path: &str) -> Option<Endpoint> {
        let routes = self.by_path.get(path)?;
        let find = |method: &Method| routes.iter().find(|(m, _)| m == method).map(|(_, e)| e.clone());
        find(method).or_else(|| (method == Method::HEAD).then(|| find(&Method::GET)).flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_method_and_exact_path() {
        let routes = Routes::new()
            .route(Method::GET, "/api/quote", Endpoint::read("Qot_GetBasicQot"))
            .route(Method::POST, "/api/order", Endpoint::order("Trd_PlaceOrder"))
            .grpc("/futu.gateway.Gateway/Request", Endpoint::in_body());
        assert_eq!(
            routes.endpoint(&Method::GET, "/api/quote"),
            Some(Endpoint::read("Qot_GetBasicQot"))
        );
        assert_eq!(routes.endpoint(&Method::POST, "/api/quote"), None);
        assert_eq!(
            routes.endpoint(&Method::HEAD, "/api/quote"),
            Some(Endpoint::read("Qot_GetBasicQot")),
            "a HEAD is its GET"
        );
        assert_eq!(routes.endpoint(&Method::HEAD, "/api/order"), None);
        assert_eq!(routes.endpoint(&Method::GET, "/api/quote/"), None);
        assert_eq!(
            routes
                .endpoint(&Method::POST, "/api/order")
                .and_then(|e| e.protocol().map(str::to_owned)),
            Some("Trd_PlaceOrder".to_owned())
        );
        assert_eq!(
            routes.endpoint(&Method::POST, "/futu.gateway.Gateway/Request"),
            Some(Endpoint::in_body())
        );
    }

    #[test]
    fn a_closure_maps_too() {
        let map = |_: &Method, path: &str| {
            path.strip_prefix("/proto/")
                .map(|id| Endpoint::read(id.to_owned()))
        };
        assert_eq!(
            EndpointMap::endpoint(&map, &Method::GET, "/proto/3004"),
            Some(Endpoint::read("3004"))
        );
        assert_eq!(EndpointMap::endpoint(&map, &Method::GET, "/other"), None);
    }
}
