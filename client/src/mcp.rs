//! The MCP adapter (feature `mcp`), for servers on rmcp, the official Rust MCP SDK.
//!
//! * Over streamable HTTP, rmcp's `StreamableHttpService` sits behind an [`McpAuthLayer`]:
//!   the request that opens an MCP session (`initialize`, without `Mcp-Session-Id`) opens
//!   a [`Session`] of its Bearer key (401/403 otherwise; 429 `sessions` past the key's
//!   share), and the `Mcp-Session-Id` the server answers with is bound to that key. Every
//!   later request of the session must carry a usable key of the same key id — another
//!   key gets 404 `unknown_session` and the session goes on — and finds the session's
//!   [`Session`] in `http::request::Parts`, which rmcp puts in the call's context. Bodies
//!   are read by the layer (at most [`MAX_BODY`] bytes of JSON) and every error answer is
//!   the documented JSON `{"reason", "detail", "retry_after_ms"}`; a session's own
//!   `DELETE` answers 204.
//! * Over stdio, the key comes from the environment ([`API_KEY_ENV`]), never from a tool
//!   argument: [`KeySource::stdio`] holds it in a layer for the process's life.
//!
//! A tool maps to an endpoint and decides through the session
//! ([`Session::check`], [`Session::place_as`]); a refusal becomes a tool error
//! ([`tool_error`]), which the session survives.
//!
//! ```ignore
//! #[tool(description = "Qot_GetBasicQot")]
//! async fn get_quote(&self, Parameters(q): Parameters<Quote>, ctx: RequestContext<RoleServer>)
//!     -> Result<CallToolResult, ErrorData> {
//!     let session = self.keys.session(&ctx)?;
//!     if let Err(refusal) = session.check("Qot_GetBasicQot").await {
//!         return Ok(mcp::tool_error(&refusal));
//!     }
//!     // … the quote
//! }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futu_auth_proto::Token;
use http::header::CONTENT_TYPE;
use http::{HeaderName, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Either, Full};
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use tower_layer::Layer;
use tower_service::Service;

use crate::http::credentials::take_token;
use crate::http::layer::Shared;
use crate::http::{read_json, AuthBody, AuthLayer, Endpoint, EndpointMap, Refusal, Session};
use crate::{AuthClient, Iface};

/// The environment variable an MCP server on stdio takes its key from.
pub const API_KEY_ENV: &str = "FUTU_MCP_API_KEY";

/// The routes of an MCP endpoint behind the layer: every request (the POSTs of messages,
/// the GET of the event stream, the DELETE of a session) opens a session.
pub fn routes() -> impl EndpointMap {
    |_: &Method, _: &str| Some(Endpoint::session())
}

/// Where a tool call finds its key's session.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// In the HTTP request that carried the call, put there by the layer.
    Http,
    /// The process's own, from [`API_KEY_ENV`] (an MCP server on stdio).
    Stdio(Session),
}

/// Why an MCP server on stdio has no key.
#[derive(Debug, thiserror::Error)]
pub enum StdioKeyError {
    /// The variable is not set, or empty.
    #[error("{API_KEY_ENV} is not set: an MCP server on stdio takes its API key from it")]
    Missing,
    /// futu-authd refused the key (or gave no decision).
    #[error("the key in {API_KEY_ENV} is refused: {0}")]
    Refused(#[from] Refusal),
}

impl KeySource {
    /// The key of [`API_KEY_ENV`], proved usable through `layer` (of [`Iface::Mcp`](crate::Iface::Mcp)) and
    /// held there while the server runs.
    pub async fn stdio(layer: &AuthLayer) -> Result<KeySource, StdioKeyError> {
        let key = std::env::var(API_KEY_ENV).unwrap_or_default();
        let key = key.trim();
        if key.is_empty() {
            return Err(StdioKeyError::Missing);
        }
        Ok(KeySource::Stdio(layer.session(Token::new(key)).await?))
    }

    /// The session of the call in `ctx`. An error only when the server is wired wrong
    /// (no auth layer in front of its HTTP service).
    pub fn session(&self, ctx: &RequestContext<RoleServer>) -> Result<Session, ErrorData> {
        match self {
            KeySource::Stdio(session) => Ok(session.clone()),
            KeySource::Http => ctx
                .extensions
                .get::<http::request::Parts>()
                .and_then(|parts| parts.extensions.get::<Session>())
                .cloned()
                .ok_or_else(|| {
                    ErrorData::internal_error("no futu-authd layer in front of this MCP service", None)
                }),
        }
    }
}

/// A refusal as a tool error (`is_error`): its text is `{"reason", "detail",
/// "retry_after_ms"}`, as a REST refusal's body.
pub fn tool_error(refusal: &Refusal) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(refusal.to_json())])
}

/// The header an MCP session's id travels in.
pub const SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");

/// The largest MCP message body the layer reads (JSON-RPC messages are small).
pub const MAX_BODY: usize = 256 * 1024;

/// How long a session may go without a request before the layer forgets it (and frees
/// its place among its key's sessions): rmcp's own default keep-alive.
pub const IDLE: Duration = Duration::from_secs(300);

/// The longest session id the layer looks up (rmcp's are UUIDs).
const MAX_SESSION_ID: usize = 128;

/// The auth layer of an MCP server over streamable HTTP (see [the module](self)):
/// sessions bound to the key that opened them.
///
/// ```ignore
/// let service = StreamableHttpService::new(make_tools, Arc::default(), config);
/// let app = axum::Router::new().nest_service("/mcp", service).layer(McpAuthLayer::new(auth));
/// ```
#[derive(Clone)]
pub struct McpAuthLayer {
    shared: Arc<Shared>,
    sessions: Arc<Sessions>,
}

impl fmt::Debug for McpAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpAuthLayer")
            .field("shared", &self.shared)
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

impl McpAuthLayer {
    /// A layer asking `client` about every request of the MCP front-end
    /// ([`Iface::Mcp`]), forgetting sessions idle for [`IDLE`].
    pub fn new(client: AuthClient) -> McpAuthLayer {
        McpAuthLayer {
            shared: AuthLayer::new(client, Iface::Mcp, routes()).shared,
            sessions: Arc::new(Sessions::new(IDLE)),
        }
    }

    /// Forgets a session after `idle` without a request; set it to the MCP server's own
    /// keep-alive (rmcp's `SessionConfig::keep_alive`).
    pub fn idle(self, idle: Duration) -> McpAuthLayer {
        McpAuthLayer {
            sessions: Arc::new(Sessions::new(idle)),
            ..self
        }
    }

    /// How many MCP sessions the layer holds now.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }
}

impl<S> Layer<S> for McpAuthLayer {
    type Service = McpAuthService<S>;

    fn layer(&self, inner: S) -> McpAuthService<S> {
        McpAuthService {
            inner,
            shared: Arc::clone(&self.shared),
            sessions: Arc::clone(&self.sessions),
        }
    }
}

/// The service [`McpAuthLayer`] makes.
#[derive(Clone)]
pub struct McpAuthService<S> {
    inner: S,
    shared: Arc<Shared>,
    sessions: Arc<Sessions>,
}

impl<S> fmt::Debug for McpAuthService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpAuthService").finish_non_exhaustive()
    }
}

impl<S, B, ResBody> Service<Request<B>> for McpAuthService<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: fmt::Display,
{
    type Response = Response<AuthBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let (shared, sessions) = (Arc::clone(&self.shared), Arc::clone(&self.sessions));
        Box::pin(async move {
            match admit(&shared, &sessions, req).await {
                Ok(admitted) => serve(inner, &sessions, admitted).await,
                Err(refusal) => Ok(refusal.into_response().map(Either::Right)),
            }
        })
    }
}

/// A request the layer let through: its session, new or bound, and its body read.
struct Admitted {
    req: Request<Full<Bytes>>,
    session: Session,
    /// The session id it came with; `None` for a request that opens a session.
    id: Option<String>,
}

/// The key, the session and the body of `req`, or its refusal.
async fn admit<B>(shared: &Arc<Shared>, sessions: &Sessions, mut req: Request<B>) -> Result<Admitted, Refusal>
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let Some(token) = take_token(&mut req, false) else {
        return Err(Refusal::no_token(false, false));
    };
    if !token.is_well_formed() {
        return Err(Refusal::not_a_key(false));
    }
    let id = match req.headers().get(SESSION_ID) {
        None => None,
        Some(v) => match v.to_str() {
            Ok(id) if !id.is_empty() && id.len() <= MAX_SESSION_ID => Some(id.to_owned()),
            _ => return Err(Refusal::unknown_session()),
        },
    };
    let session = match &id {
        None => shared.open_session(token, false).await?.0,
        Some(id) => bound(sessions, id, &token).await?,
    };
    let (mut parts, body) = req.into_parts();
    let body = if parts.method == Method::POST {
        // MCP answers every error as JSON, whatever the request's content type.
        let message: serde_json::Value = read_json(&parts.headers, body, MAX_BODY)
            .await
            .map_err(|refusal| refusal.with_grpc(false))?;
        Bytes::from(message.to_string())
    } else {
        Bytes::new()
    };
    parts.extensions.insert(session.clone());
    Ok(Admitted {
        req: Request::from_parts(parts, Full::new(body)),
        session,
        id,
    })
}

/// The session `id` is bound to, when `token` is a usable key of its key id.
async fn bound(sessions: &Sessions, id: &str, token: &Token) -> Result<Session, Refusal> {
    let Some(session) = sessions.get(id) else {
        return Err(Refusal::unknown_session());
    };
    match session.belongs_to(token, false).await {
        Ok(()) => Ok(session),
        Err(refusal) => {
            if refusal.ends_session() && token_is_sessions(&session, token) {
                sessions.unbind(id);
            }
            Err(refusal)
        }
    }
}

/// Whether `token` is the one the session was opened with (its key no longer usable ends
/// the session; another key's refusal does not).
fn token_is_sessions(session: &Session, token: &Token) -> bool {
    session.holds(token)
}

/// Calls the MCP server and binds, forgets or reshapes what it answers.
async fn serve<S, ResBody>(
    mut inner: S,
    sessions: &Sessions,
    admitted: Admitted,
) -> Result<Response<AuthBody<ResBody>>, S::Error>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: fmt::Display,
{
    let Admitted { req, session, id } = admitted;
    let delete = req.method() == Method::DELETE;
    let res = inner.call(req).await?;
    let status = res.status();
    match &id {
        None if status.is_success() => {
            if let Some(new) = res.headers().get(SESSION_ID).and_then(|v| v.to_str().ok()) {
                sessions.bind(new.to_owned(), session);
            }
        }
        None => {}
        Some(id) if status == StatusCode::NOT_FOUND || (delete && status.is_success()) => sessions.unbind(id),
        Some(_) => {}
    }
    if delete && status.is_success() {
        let mut done = Response::new(Either::Right(Full::new(Bytes::new())));
        *done.status_mut() = StatusCode::NO_CONTENT;
        return Ok(done);
    }
    if status.is_client_error() || status.is_server_error() {
        let is_json = res
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/json"));
        if !is_json {
            let text = match res.into_body().collect().await {
                Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
                Err(e) => e.to_string(),
            };
            return Ok(Refusal::reshaped(status, &text)
                .into_response()
                .map(Either::Right));
        }
    }
    Ok(res.map(Either::Left))
}

/// The MCP sessions the layer holds, by the id the server gave each.
struct Sessions {
    /// How long a session may go without a request.
    idle: Duration,
    /// The sessions, with when each last had a request.
    by_id: Mutex<HashMap<String, (Session, Instant)>>,
    /// When idle sessions were last looked for.
    swept: Mutex<Instant>,
}

impl Sessions {
    fn new(idle: Duration) -> Sessions {
        Sessions {
            idle,
            by_id: Mutex::default(),
            swept: Mutex::new(Instant::now()),
        }
    }

    fn bind(&self, id: String, session: Session) {
        self.sweep();
        lock(&self.by_id).insert(id, (session, Instant::now()));
    }

    fn get(&self, id: &str) -> Option<Session> {
        self.sweep();
        let mut by_id = lock(&self.by_id);
        let (session, seen) = by_id.get_mut(id)?;
        *seen = Instant::now();
        Some(session.clone())
    }

    fn unbind(&self, id: &str) {
        lock(&self.by_id).remove(id);
    }

    fn len(&self) -> usize {
        lock(&self.by_id).len()
    }

    /// Forgets the sessions idle for longer than `idle`, at most once a tenth of it.
    fn sweep(&self) {
        {
            let mut swept = lock(&self.swept);
            if swept.elapsed() < self.idle / 10 {
                return;
            }
            *swept = Instant::now();
        }
        let idle = self.idle;
        lock(&self.by_id).retain(|_, (_, seen)| seen.elapsed() < idle);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
