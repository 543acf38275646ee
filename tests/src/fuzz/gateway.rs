//! The gateway the fuzz target [`layer_request`](super::layer_request) sends its requests
//! to: futu-gw-demo's routes behind futu-auth-client's layers (`AuthLayer` for REST, gRPC
//! and the WebSocket upgrade, `McpAuthLayer` for MCP), handlers of a few lines each as in
//! `client/gw-demo`, and a fake futu-authd on a Unix socket that keeps every frame it
//! receives and decides by the token ([`FakeDaemon`]).
//!
//! The fake daemon and the one [`AuthClient`] live as long as the process (one
//! [`Gateway`], made at the first input): every input goes over the same connection, as
//! every request of a gateway does. The layers and the MCP server are made afresh for each
//! input, so that what one input leaves behind (an MCP session, a session's place among its
//! key's) cannot change what the next one does.

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futu_auth_client::http::{
    decode_json, read_json, AuthLayer, Authorized, Endpoint, OrderHandle, Routes, Session,
};
use futu_auth_client::mcp::{McpAuthLayer, SESSION_ID};
use futu_auth_client::{AuthClient, Iface, Order};
use futu_auth_proto::{
    Decision, FrameCodec, Hello, KeyId, Reason, Request as Msg, Response as Reply, Scope, SessionSubject,
    Token, PROTOCOL_VERSION,
};
use futures_util::{SinkExt, StreamExt};
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use serde::Deserialize;
use tokio::runtime::Runtime;
use tokio_util::codec::Framed;
use tower_layer::Layer;
use tower_service::Service;

/// The routes an input's first byte picks from (`data[0] % 8`: the ASCII digits `0`–`7`
/// pick them in this order).
pub const ROUTES: [Route; 8] = [
    Route::Quote,
    Route::Funds,
    Route::Order,
    Route::Grpc,
    Route::Ws,
    Route::McpPost,
    Route::McpDelete,
    Route::Unmapped,
];

/// What a request calls, and which layer is in front of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /api/quote`, REST: `Qot_GetBasicQot`, decided in the layer.
    Quote,
    /// `GET /api/funds`, REST: `Trd_GetFunds`, decided in the layer.
    Funds,
    /// `POST /api/order`, REST: a scope check in the layer; the handler reads the order
    /// with `read_json` and places it with its `OrderHandle`.
    Order,
    /// `POST /futu.gateway.Gateway/Request`, gRPC: the endpoint is in the body.
    Grpc,
    /// `GET /ws`, the WebSocket upgrade: a session route, `?token=` a key too.
    Ws,
    /// `POST /mcp`, behind `McpAuthLayer`, after the gateway's own key opened the MCP
    /// session [`MCP_SESSION`].
    McpPost,
    /// `DELETE /mcp`, the same.
    McpDelete,
    /// `GET /api/nothing`, REST: a path no route maps.
    Unmapped,
}

impl Route {
    /// The request's method.
    pub fn method(self) -> Method {
        match self {
            Route::Quote | Route::Funds | Route::Ws | Route::Unmapped => Method::GET,
            Route::Order | Route::Grpc | Route::McpPost => Method::POST,
            Route::McpDelete => Method::DELETE,
        }
    }

    /// The request's path.
    pub fn path(self) -> &'static str {
        match self {
            Route::Quote => "/api/quote",
            Route::Funds => "/api/funds",
            Route::Order => "/api/order",
            Route::Grpc => GRPC_PATH,
            Route::Ws => "/ws",
            Route::McpPost | Route::McpDelete => "/mcp",
            Route::Unmapped => "/api/nothing",
        }
    }

    /// Whether `McpAuthLayer` is in front of it (whose refusals are always plain HTTP).
    pub fn is_mcp(self) -> bool {
        matches!(self, Route::McpPost | Route::McpDelete)
    }
}

/// The gRPC method of futu-gw-demo.
const GRPC_PATH: &str = "/futu.gateway.Gateway/Request";

/// The id the fake MCP server gives the session the gateway's own key opens before an MCP
/// input's request.
pub const MCP_SESSION: &str = "fuzz-session";

/// The key that opens [`MCP_SESSION`]: allowed, key id `k00` (see [`FakeDaemon`]). The
/// client lets a key hold one session at a time, so an input that opens another with a
/// key of id `k00` is refused `sessions`.
pub const MCP_OWNER: &str = "fc_00000000000000000000000000000000";

/// The key of the allowed request made after every input: key id `kff`.
pub const PROBE: &str = "fc_ff000000000000000000000000000000";

/// The header every answer of a handler's own (not a refusal) carries.
pub const HANDLED: HeaderName = HeaderName::from_static("x-fuzz-handled-by");

/// The most bytes of order JSON the order handler reads (futu-gw-demo's).
const MAX_ORDER_BODY: usize = 16 * 1024;

/// The demo broker rejects orders of more than this quantity; the handler then gives the
/// order's value back.
const BROKER_MAX_QTY: f64 = 1_000_000.0;

/// An input decoded into an HTTP request (see [`super::layer_request`] for the format).
#[derive(Debug, Clone)]
pub struct HttpInput {
    /// What it calls.
    pub route: Route,
    /// The `?` lines, joined with `&`; `None` when there is none.
    pub query: Option<Vec<u8>>,
    /// The `name: value` lines, in order (not yet checked to be valid HTTP).
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// Everything after the first empty line.
    pub body: Vec<u8>,
}

impl HttpInput {
    /// Decodes an input: never fails (an empty input is a quote without headers).
    pub fn decode(data: &[u8]) -> HttpInput {
        let route = ROUTES[usize::from(data.first().copied().unwrap_or(0)) % ROUTES.len()];
        // The rest of the first line is not read (the seeds name their route there).
        let rest = match data.iter().position(|&b| b == b'\n') {
            Some(end) => &data[end + 1..],
            None => &[],
        };
        let mut input = HttpInput {
            route,
            query: None,
            headers: Vec::new(),
            body: Vec::new(),
        };
        let mut at = 0;
        while at < rest.len() {
            let end = rest[at..].iter().position(|&b| b == b'\n').map(|i| at + i);
            let line = &rest[at..end.unwrap_or(rest.len())];
            at = end.map_or(rest.len(), |e| e + 1);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() && end.is_some() {
                input.body = rest[at..].to_vec();
                break;
            }
            if let Some(query) = line.strip_prefix(b"?") {
                let joined = input.query.get_or_insert_with(Vec::new);
                if !joined.is_empty() {
                    joined.push(b'&');
                }
                joined.extend_from_slice(query);
            } else if let Some(colon) = line.iter().position(|&b| b == b':') {
                let value = line[colon + 1..].trim_ascii();
                input.headers.push((line[..colon].to_vec(), value.to_vec()));
            }
        }
        input
    }

    /// The same input with each of `keys`, where it is an `Authorization` header's Bearer
    /// credential or a `token` query parameter (as written or decoded), changed by
    /// [`changed`]: keys that cannot be keys, so changed, must not change how the gateway
    /// answers (they are taken, or not, and refused alike).
    pub fn with_keys_changed(&self, keys: &[&[u8]]) -> HttpInput {
        let mut changed = self.clone();
        for (name, value) in &mut changed.headers {
            if let Some(at) = bearer_credential(value).filter(|_| name.eq_ignore_ascii_case(b"authorization"))
            {
                if keys.contains(&&value[at.clone()]) {
                    let new = self::changed(&value[at.clone()]);
                    value[at].copy_from_slice(&new);
                }
            }
        }
        if let Some(query) = &mut changed.query {
            let mut start = 0;
            for pair in query.clone().split(|&b| b == b'&') {
                if let Some(v) = pair.strip_prefix(b"token=") {
                    let decoded = std::str::from_utf8(pair)
                        .ok()
                        .and_then(futu_auth_client::token::from_query);
                    let decoded = decoded.as_ref().map(|t| t.expose().as_bytes());
                    if keys.contains(&v) || decoded.is_some_and(|d| keys.contains(&d)) {
                        let at = start + "token=".len();
                        query[at..at + v.len()].copy_from_slice(&self::changed(v));
                    }
                }
                start += pair.len() + 1;
            }
        }
        changed
    }

    /// The request: the route's method and path, the query when the URI it makes is valid,
    /// the headers whose name and value are valid (in order, repeats kept), the body.
    pub fn request(&self) -> Request<Full<Bytes>> {
        let path = self.route.path();
        let uri = self
            .query
            .as_ref()
            .and_then(|q| {
                let mut text = path.as_bytes().to_vec();
                text.push(b'?');
                text.extend_from_slice(q);
                Uri::try_from(text).ok()
            })
            .unwrap_or_else(|| Uri::from_static(path));
        let mut req = Request::new(Full::new(Bytes::copy_from_slice(&self.body)));
        *req.method_mut() = self.route.method();
        *req.uri_mut() = uri;
        for (name, value) in &self.headers {
            if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
                req.headers_mut().append(name, value);
            }
        }
        req
    }
}

/// Where the Bearer credential of an `Authorization` value is, read as bytes: `Bearer`
/// in any case, a space, and what follows, trimmed (not empty).
pub fn bearer_credential(value: &[u8]) -> Option<std::ops::Range<usize>> {
    let start = value.iter().position(|b| !b.is_ascii_whitespace())?;
    let end = value.iter().rposition(|b| !b.is_ascii_whitespace())? + 1;
    let space = start + value[start..end].iter().position(|&b| b == b' ')?;
    if !value[start..space].eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let key = space + value[space..end].iter().position(|b| !b.is_ascii_whitespace())?;
    Some(key..end)
}

/// `key` with its ASCII bytes changed to `x` (`y` where it was `x`), but for
/// percent-escapes: whether it is UTF-8, is a key's shape, decodes as a query parameter,
/// stays as it was.
fn changed(key: &[u8]) -> Vec<u8> {
    let mut out = key.to_vec();
    let mut escape = 0;
    for b in &mut out {
        if *b == b'%' {
            escape = 3;
        }
        if escape > 0 {
            escape -= 1;
        } else if b.is_ascii() {
            *b = if *b == b'x' { b'y' } else { b'x' };
        }
    }
    out
}

/// Whether a request with these headers is gRPC to the layer: its content type starts
/// with `application/grpc`.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// What the gateway answered, its body read.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Answer {
    /// The route whose handler answered, when one did (not a refusal).
    pub fn handled_by(&self) -> Option<&str> {
        self.headers.get(&HANDLED).and_then(|v| v.to_str().ok())
    }

    /// The headers and the body as one text to look for keys in: `name: value` lines,
    /// then the body.
    pub fn shown(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.push(b'\n');
        }
        out.extend_from_slice(&self.body);
        out
    }
}

/// The process's gateway: the fake futu-authd, the one client, the runtime the client's
/// connection lives on.
pub struct Gateway {
    /// The runtime every input runs on (the client's connection tasks live here).
    runtime: Runtime,
    /// The fake futu-authd, on a thread of its own.
    pub daemon: FakeDaemon,
    /// The one client of every layer, as a gateway has.
    pub client: AuthClient,
}

static GATEWAY: OnceLock<Mutex<Gateway>> = OnceLock::new();

impl Gateway {
    /// The process's gateway, started at the first call, for one input at a time: inputs
    /// replayed by two tests at once must not see each other's sessions.
    pub fn lock() -> MutexGuard<'static, Gateway> {
        let gateway = GATEWAY.get_or_init(|| {
            let daemon = FakeDaemon::start();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("fuzz-gateway")
                .enable_all()
                .build()
                .expect("start the gateway's runtime");
            // A deadline far above any answer of the fake daemon: a timeout is a hang.
            let client = AuthClient::builder(&daemon.path)
                .client_name("fuzz-layer-request")
                .deadline(Duration::from_secs(5))
                .max_sessions_per_key(1)
                .build();
            Mutex::new(Gateway {
                runtime,
                daemon,
                client,
            })
        });
        // An input that panicked (under `make test`) leaves nothing half-done here.
        gateway.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `input`'s request through its route's layer and handler, as the gateway
    /// would; for an MCP route the gateway's own key opens [`MCP_SESSION`] first.
    pub fn serve(&self, input: &HttpInput) -> Answer {
        let req = input.request();
        self.runtime.block_on(async {
            match input.route {
                Route::Quote | Route::Funds | Route::Order | Route::Unmapped => {
                    let layer = AuthLayer::new(self.client.clone(), Iface::Rest, rest_routes());
                    call(layer.layer(Handlers::default()), req).await
                }
                Route::Grpc => {
                    let routes = Routes::new().grpc(GRPC_PATH, Endpoint::in_body());
                    let layer = AuthLayer::new(self.client.clone(), Iface::Grpc, routes);
                    call(layer.layer(Handlers::default()), req).await
                }
                Route::Ws => {
                    let routes = Routes::new().route(Method::GET, "/ws", Endpoint::session());
                    let layer = AuthLayer::new(self.client.clone(), Iface::Ws, routes).query_token(true);
                    call(layer.layer(Handlers::default()), req).await
                }
                Route::McpPost | Route::McpDelete => {
                    let service = McpAuthLayer::new(self.client.clone()).layer(Handlers::default());
                    let opened = call(service.clone(), mcp_initialize(MCP_OWNER)).await;
                    assert_eq!(
                        opened.headers.get(&SESSION_ID).map(HeaderValue::as_bytes),
                        Some(MCP_SESSION.as_bytes()),
                        "the gateway's own key could not open its MCP session: {opened:?}"
                    );
                    call(service, req).await
                }
            }
        })
    }

    /// A quote with [`PROBE`], an allowed key, through the REST layer: what a well-behaved
    /// client sends next.
    pub fn probe(&self) -> Answer {
        let mut req = Request::new(Full::new(Bytes::new()));
        *req.uri_mut() = Uri::from_static("/api/quote?symbol=HK.00700");
        req.headers_mut().insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {PROBE}")).expect("a valid header"),
        );
        self.runtime.block_on(async {
            let layer = AuthLayer::new(self.client.clone(), Iface::Rest, rest_routes());
            call(layer.layer(Handlers::default()), req).await
        })
    }
}

/// futu-gw-demo's REST routes.
fn rest_routes() -> Routes {
    Routes::new()
        .route(Method::GET, "/api/quote", Endpoint::read("Qot_GetBasicQot"))
        .route(Method::GET, "/api/funds", Endpoint::read("Trd_GetFunds"))
        .route(Method::POST, "/api/order", Endpoint::order("Trd_PlaceOrder"))
}

/// The `initialize` that opens an MCP session, with `key`.
fn mcp_initialize(key: &str) -> Request<Full<Bytes>> {
    let body = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}"#;
    let mut req = Request::new(Full::new(Bytes::from_static(body.as_bytes())));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = Uri::from_static("/mcp");
    let h = req.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {key}")).expect("a valid header"),
    );
    req
}

/// Calls `service` with `req` as a server does (ready, then call) and reads the answer.
async fn call<S, B>(mut service: S, req: Request<Full<Bytes>>) -> Answer
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let Ok(()) = std::future::poll_fn(|cx| service.poll_ready(cx)).await;
    let Ok(res) = service.call(req).await;
    let (parts, body) = res.into_parts();
    let body = body
        .collect()
        .await
        .expect("a body in memory is read whole")
        .to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// Every handler of the gateway, by path, and the fake MCP server behind `/mcp`. A handler
/// checks what the layer promises it (its extension is there; the key is not).
#[derive(Clone, Default)]
struct Handlers {
    /// The fake MCP server's sessions (one server per input).
    mcp: Arc<FakeMcp>,
}

impl Service<Request<Full<Bytes>>> for Handlers {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        let mcp = Arc::clone(&self.mcp);
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            no_key_left_in(&req, path == "/ws");
            Ok(match path.as_str() {
                "/api/quote" | "/api/funds" => {
                    let auth = extension::<Authorized, _>(&req);
                    handled(&path, &auth.key_id)
                }
                "/api/order" => order(req).await,
                GRPC_PATH => grpc(req).await,
                "/ws" => ws(req).await,
                "/mcp" => mcp.serve(req),
                other => panic!(
                    "the layer let through {} {other}, which no route maps",
                    req.method()
                ),
            })
        })
    }
}

/// The extension the layer promises a handler on its route.
fn extension<T: Clone + Send + Sync + 'static, B>(req: &Request<B>) -> T {
    req.extensions().get::<T>().cloned().unwrap_or_else(|| {
        panic!(
            "the layer let {} {} through without its {}",
            req.method(),
            req.uri().path(),
            std::any::type_name::<T>()
        )
    })
}

/// The layer takes the key out of the request before a handler sees it: no
/// `Authorization` header holding a Bearer credential ([`bearer_credential`]) is left, nor,
/// where `?token=` is a key, a `token` parameter.
fn no_key_left_in<B>(req: &Request<B>, query_token: bool) {
    for value in req.headers().get_all(AUTHORIZATION) {
        assert!(
            bearer_credential(value.as_bytes()).is_none(),
            "{} {} reached its handler with a Bearer credential in an Authorization header",
            req.method(),
            req.uri().path()
        );
    }
    if query_token {
        let query = req.uri().query().unwrap_or_default();
        assert!(
            !query.split('&').any(|p| p.split('=').next() == Some("token")),
            "{} reached its handler with a token parameter ({} bytes of query)",
            req.uri().path(),
            query.len()
        );
    }
}

/// A handler's own answer: 200, naming the route and the key.
fn handled(route: &str, key_id: &KeyId) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(format!(
        r#"{{"ok":true,"key_id":"{key_id}"}}"#
    ))));
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(
        HANDLED,
        HeaderValue::from_str(route).expect("a path is a valid header"),
    );
    res
}

/// `POST /api/order`, as futu-gw-demo's: the order read with `read_json`, placed with the
/// `OrderHandle`; an order the broker rejects is given back.
async fn order(req: Request<Full<Bytes>>) -> Response<Full<Bytes>> {
    let handle = extension::<OrderHandle, _>(&req);
    let (parts, body) = req.into_parts();
    let order: Order = match read_json(&parts.headers, body, MAX_ORDER_BODY).await {
        Ok(order) => order,
        Err(refusal) => return refusal.into_response(),
    };
    let rejected = order.qty > BROKER_MAX_QTY;
    match handle.place(order).await {
        Ok(placed) => {
            let key_id = placed.key_id.clone();
            if rejected {
                let _ = placed.release().await;
            }
            handled("/api/order", &key_id)
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// The message of a gRPC call: the endpoint it calls, and its order for an order write.
/// (futu-gw-demo's is a protobuf `ProtoRequest`; here it is JSON, so that the fuzzer can
/// write it, and the endpoint is any text.)
#[derive(Deserialize)]
struct GrpcCall {
    endpoint: String,
    order: Option<Order>,
}

/// `POST /futu.gateway.Gateway/Request`: the body is gRPC's 5-byte message prefix, then
/// the call's JSON; the endpoint is checked, or the order placed, with the `OrderHandle`.
async fn grpc(req: Request<Full<Bytes>>) -> Response<Full<Bytes>> {
    let handle = extension::<OrderHandle, _>(&req);
    let grpc = is_grpc(req.headers());
    let body = req
        .into_body()
        .collect()
        .await
        .map_or_else(|e| match e {}, |b| b.to_bytes());
    let call: GrpcCall = match decode_json(body.get(5..).unwrap_or_default()) {
        Ok(call) => call,
        Err(refusal) => return refusal.with_grpc(grpc).into_response(),
    };
    let decided = match call.order {
        Some(order) => handle
            .place_as(&call.endpoint, order)
            .await
            .map(|placed| placed.key_id.clone()),
        None => handle.check(&call.endpoint).await.map(|a| a.key_id),
    };
    match decided {
        Ok(key_id) => {
            let mut res = handled(GRPC_PATH, &key_id);
            let h = res.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            h.insert("grpc-status", HeaderValue::from_static("0"));
            res
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// `GET /ws`: the upgrade's session, asked once for a quote as the first frame would be.
async fn ws(req: Request<Full<Bytes>>) -> Response<Full<Bytes>> {
    let session = extension::<Session, _>(&req);
    extension::<Authorized, _>(&req);
    match session.check("Qot_GetBasicQot").await {
        Ok(allowed) => handled("/ws", &allowed.key_id),
        Err(refusal) => refusal.into_response(),
    }
}

/// The MCP server behind `McpAuthLayer`, as rmcp's streamable HTTP answers: an
/// `initialize` (a POST without a session id) opens a session and names it in
/// `Mcp-Session-Id`; a POST of a session is answered; a DELETE ends it; an unknown session
/// is 404 in plain text.
#[derive(Default)]
struct FakeMcp {
    /// The sessions open.
    sessions: Mutex<HashSet<String>>,
    /// How many were opened: the first is [`MCP_SESSION`], then `fuzz-session-2`, ….
    opened: AtomicUsize,
}

impl FakeMcp {
    fn serve(&self, req: Request<Full<Bytes>>) -> Response<Full<Bytes>> {
        extension::<Session, _>(&req);
        let id = req
            .headers()
            .get(&SESSION_ID)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let known = id.as_ref().is_some_and(|id| sessions.contains(id));
        let text = |status: StatusCode, text: &'static str| {
            let mut res = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
            *res.status_mut() = status;
            res.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            res
        };
        match (req.method().clone(), id) {
            (Method::POST, None) => {
                let n = self.opened.fetch_add(1, Ordering::Relaxed) + 1;
                let new = if n == 1 {
                    MCP_SESSION.to_owned()
                } else {
                    format!("{MCP_SESSION}-{n}")
                };
                sessions.insert(new.clone());
                let mut res = handled("/mcp", &"mcp".parse().expect("a key id"));
                res.headers_mut()
                    .insert(SESSION_ID, HeaderValue::from_str(&new).expect("a valid header"));
                res
            }
            (Method::POST, Some(_)) if known => handled("/mcp", &"mcp".parse().expect("a key id")),
            (Method::DELETE, Some(id)) if known => {
                sessions.remove(&id);
                handled("/mcp", &"mcp".parse().expect("a key id"))
            }
            (Method::POST | Method::DELETE, _) => text(StatusCode::NOT_FOUND, "Not Found: Session not found"),
            _ => text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
        }
    }
}

/// A futu-authd that answers by the token, keeps every frame it receives and what was
/// wrong with any, and counts the connections it accepted.
///
/// A token is `fc_` and 32 hex digits (the layer sends no other): its key id is `k` and
/// its first two digits; its last two, as a number `n`, say the decision — below `0x80`
/// allowed; `0x80`–`0x8f` allowed except a `CheckScope` of `trade:simulate` (a key that
/// holds only `trade:real`); from `0x90` denied with reason `Reason::ALL[(n - 0x90) % 16]`,
/// `retry_after_ms` 1500 for `rate`, `daily_value` and `hours`.
pub struct FakeDaemon {
    /// Keeps the socket's directory.
    _dir: tempfile::TempDir,
    /// The socket.
    path: PathBuf,
    /// What it received, and what was wrong with it.
    pub log: Arc<DaemonLog>,
}

/// What the fake daemon saw.
#[derive(Default)]
pub struct DaemonLog {
    /// Every message it received but Hello, since [`DaemonLog::take`].
    frames: Mutex<Vec<Msg>>,
    /// What was wrong with what it received (a frame that does not decode, a token that
    /// cannot be a key, a request the layer never sends), since [`DaemonLog::take`].
    faults: Mutex<Vec<String>>,
    /// Connections accepted, over the process's life.
    pub connections: AtomicUsize,
}

impl DaemonLog {
    /// The frames and the faults seen since the last call, forgotten.
    pub fn take(&self) -> (Vec<Msg>, Vec<String>) {
        let frames = std::mem::take(&mut *self.frames.lock().unwrap_or_else(|p| p.into_inner()));
        let faults = std::mem::take(&mut *self.faults.lock().unwrap_or_else(|p| p.into_inner()));
        (frames, faults)
    }

    fn fault(&self, what: String) {
        self.faults.lock().unwrap_or_else(|p| p.into_inner()).push(what);
    }
}

impl FakeDaemon {
    /// Binds a socket in a temporary directory and serves it on a thread of its own.
    fn start() -> FakeDaemon {
        let dir = tempfile::tempdir().expect("a temporary directory for the socket");
        let path = dir.path().join("auth.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind the fake daemon's socket");
        listener.set_nonblocking(true).expect("a non-blocking socket");
        let log: Arc<DaemonLog> = Arc::default();
        let served = Arc::clone(&log);
        std::thread::Builder::new()
            .name("fuzz-fake-authd".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("start the fake daemon's runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::UnixListener::from_std(listener).expect("the fake daemon's listener");
                    let tickets = Arc::new(AtomicU64::new(1));
                    while let Ok((stream, _)) = listener.accept().await {
                        served.connections.fetch_add(1, Ordering::SeqCst);
                        tokio::spawn(serve_connection(
                            stream,
                            Arc::clone(&served),
                            Arc::clone(&tickets),
                        ));
                    }
                });
            })
            .expect("start the fake daemon's thread");
        FakeDaemon { _dir: dir, path, log }
    }
}

/// One connection of the fake daemon: Hello, then an answer to every request, until the
/// client closes or sends what cannot be read.
async fn serve_connection(stream: tokio::net::UnixStream, log: Arc<DaemonLog>, tickets: Arc<AtomicU64>) {
    let mut framed = Framed::new(stream, FrameCodec::<Msg, Reply>::new());
    while let Some(next) = framed.next().await {
        let msg = match next {
            Ok(msg) => msg,
            Err(e) => {
                log.fault(format!("a frame the fake futu-authd could not read: {e}"));
                return;
            }
        };
        let decision = |request_id, decision| Some(Reply::Decision { request_id, decision });
        let answer = match &msg {
            Msg::Hello(Hello { protocol_version, .. }) => Some(Reply::HelloOk {
                protocol_version: (*protocol_version).min(PROTOCOL_VERSION),
                server_version: "fuzz".into(),
            }),
            Msg::Check(c) => {
                let ticket = c.order.as_ref().map(|_| tickets.fetch_add(1, Ordering::Relaxed));
                decision(c.request_id, decide(&log, &c.token, None, ticket))
            }
            Msg::CheckScope(c) => decision(c.request_id, decide(&log, &c.token, Some(c.scope), None)),
            Msg::SessionCheck(c) => {
                let scope = match c.subject {
                    SessionSubject::Pushes { scope, .. } => Some(scope),
                    SessionSubject::KeepAlive => None,
                };
                decision(c.request_id, decide(&log, &c.token, scope, None))
            }
            Msg::Release { request_id, .. } => Some(Reply::Released {
                request_id: *request_id,
                key_id: "k00".parse().expect("a key id"),
                refunded_value: 0.0,
            }),
            other => {
                log.fault(format!(
                    "the layer sent {}, which no front-end asks",
                    other.name()
                ));
                None
            }
        };
        if !matches!(msg, Msg::Hello(_)) {
            log.frames.lock().unwrap_or_else(|p| p.into_inner()).push(msg);
        }
        if let Some(answer) = answer {
            if framed.send(answer).await.is_err() {
                return;
            }
        }
    }
}

/// The fake daemon's decision for `token` (see [`FakeDaemon`]) asked about `scope` (a
/// `CheckScope`'s or a session's pushes'), with `ticket` for an order. A token that cannot
/// be a key is a fault, denied `unknown_key`.
fn decide(log: &DaemonLog, token: &Token, scope: Option<Scope>, ticket: Option<u64>) -> Decision {
    let deny = |reason: Reason| Decision::Deny {
        reason,
        key_id: None,
        detail: format!("the fake futu-authd denies this key ({reason})"),
        retry_after_ms: matches!(reason, Reason::Rate | Reason::DailyValue | Reason::Hours).then_some(1500),
        limit: None,
    };
    if !token.is_well_formed() {
        log.fault(format!(
            "the layer sent a token that cannot be a key ({} bytes)",
            token.expose().len()
        ));
        return deny(Reason::UnknownKey);
    }
    let hex = &token.expose()[3..];
    let n = u8::from_str_radix(&hex[30..], 16).expect("hex digits");
    if n >= 0x90 {
        return deny(Reason::ALL[usize::from(n - 0x90) % Reason::ALL.len()]);
    }
    if (0x80..0x90).contains(&n) && scope == Some(Scope::TradeSimulate) {
        return deny(Reason::Scope);
    }
    Decision::Allow {
        key_id: format!("k{}", &hex[..2]).parse().expect("a key id"),
        scope,
        ticket,
    }
}
