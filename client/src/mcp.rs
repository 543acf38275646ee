//! The MCP adapter (feature `mcp`), for servers on rmcp, the official Rust MCP SDK.
//!
//! * Over streamable HTTP, rmcp's `StreamableHttpService` sits behind an
//!   [`AuthLayer`] of [`Iface::Mcp`](crate::Iface::Mcp) whose every request is a session
//!   ([`routes`]): each HTTP request's Bearer token is proved usable by the layer
//!   (401/403 otherwise), and the [`Session`] it opens reaches the tool through
//!   `http::request::Parts`, which rmcp puts in the call's context.
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

use futu_auth_proto::Token;
use http::Method;
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};

use crate::http::{AuthLayer, Endpoint, EndpointMap, Refusal, Session};

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
