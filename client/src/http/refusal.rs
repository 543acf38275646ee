//! [`Refusal`]: why a request may not go through, and the one response every refusal
//! becomes ([`Refusal::into_response`]), whether the layer or a handler refused.

use std::fmt;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futu_auth_proto::{Decision, KeyId, LimitFigures, Reason, Scope};
use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;

use crate::ClientError;

/// The metadata a gRPC refusal carries its reason code in.
const FUTU_REASON: HeaderName = HeaderName::from_static("futu-reason");
/// The metadata a gRPC refusal carries `retry_after_ms` in.
const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The request carried no key.
    NoToken,
    /// futu-authd refused it, for this reason — or the layer did, for a credential that
    /// cannot be a key (`unknown_key`: not `fc_` and 32 hex digits), without asking.
    Denied(Reason),
    /// futu-authd gave no decision — not running, no answer within the client's deadline,
    /// the connection lost — so the request is refused: no answer is a deny.
    NoDecision,
    /// The request itself cannot be read: its body does not decode, is too large, or is
    /// not of the media type the route takes (`bad_request`).
    BadRequest(BadRequest),
    /// The key already holds the most long-lived sessions (WebSocket connections, MCP
    /// sessions) it may hold at once (`sessions`).
    Sessions,
    /// No such session for this key: an MCP session id that is unknown, ended, or
    /// another key's (`unknown_session`).
    UnknownSession,
}

/// What is wrong with a request that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRequest {
    /// Its body is not what the route takes (not JSON, a field missing, twice or of the
    /// wrong type, a number out of range): 400.
    Malformed,
    /// It is larger than the route takes, or too large to be checked at all (a token,
    /// an order or a symbol that cannot fit in a 64 KiB frame): 413.
    TooLarge,
    /// Its body is not of the media type the route takes (e.g. not `application/json`):
    /// 415.
    MediaType,
}

impl Cause {
    /// The `reason` a refusal shows its caller: the daemon's reason code (`rate`,
    /// `unknown_key`, …, as in the audit log and the metrics), or one of the layer's own:
    /// `no_token`, `unavailable`, `bad_request`, `sessions`, `unknown_session`.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::NoToken => "no_token",
            Cause::Denied(reason) => reason.as_str(),
            Cause::NoDecision => "unavailable",
            Cause::BadRequest(_) => "bad_request",
            Cause::Sessions => "sessions",
            Cause::UnknownSession => "unknown_session",
        }
    }

    /// Which kind of refusal it is, which picks the HTTP status and the gRPC code. No
    /// wildcard: a new reason does not compile until it is given a kind here.
    pub fn class(self) -> Class {
        match self {
            Cause::NoToken => Class::Unauthenticated,
            Cause::NoDecision => Class::Unavailable,
            Cause::BadRequest(BadRequest::Malformed) => Class::InvalidArgument,
            Cause::BadRequest(BadRequest::TooLarge) => Class::TooLarge,
            Cause::BadRequest(BadRequest::MediaType) => Class::UnsupportedMediaType,
            Cause::Sessions => Class::ResourceExhausted,
            Cause::UnknownSession => Class::NotFound,
            Cause::Denied(reason) => match reason {
                Reason::UnknownKey | Reason::Expired => Class::Unauthenticated,
                Reason::Frozen
                | Reason::Machine
                | Reason::Scope
                | Reason::Market
                | Reason::Symbol
                | Reason::Side
                | Reason::Hours
                | Reason::OrderValue
                | Reason::Forbidden
                | Reason::Halted
                | Reason::Account
                | Reason::PriceCollar
                | Reason::Position => Class::PermissionDenied,
                Reason::UnknownEndpoint | Reason::BadOrder => Class::InvalidArgument,
                Reason::Rate | Reason::DailyValue | Reason::OpenOrders | Reason::Duplicate => {
                    Class::ResourceExhausted
                }
                Reason::Internal => Class::Unavailable,
            },
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds of refusal: one HTTP status and one gRPC status code each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// No key, or not a key in service: 401, gRPC UNAUTHENTICATED.
    Unauthenticated,
    /// The key may not do this: 403, gRPC PERMISSION_DENIED.
    PermissionDenied,
    /// The request itself is wrong (no such endpoint, a malformed order): 400, gRPC
    /// INVALID_ARGUMENT.
    InvalidArgument,
    /// A limit that waiting lifts: 429, gRPC RESOURCE_EXHAUSTED.
    ResourceExhausted,
    /// No decision could be had (fail closed): 503, gRPC UNAVAILABLE.
    Unavailable,
    /// The request is larger than the route takes: 413, gRPC RESOURCE_EXHAUSTED.
    TooLarge,
    /// The body is not of a media type the route takes: 415, gRPC INVALID_ARGUMENT.
    UnsupportedMediaType,
    /// No such resource for this key (an MCP session): 404, gRPC NOT_FOUND.
    NotFound,
}

impl Class {
    /// The HTTP status of a plain HTTP refusal.
    pub fn http_status(self) -> StatusCode {
        match self {
            Class::Unauthenticated => StatusCode::UNAUTHORIZED,
            Class::PermissionDenied => StatusCode::FORBIDDEN,
            Class::InvalidArgument => StatusCode::BAD_REQUEST,
            Class::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Class::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Class::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Class::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Class::NotFound => StatusCode::NOT_FOUND,
        }
    }

    /// The `grpc-status` of a gRPC refusal.
    pub fn grpc_code(self) -> u16 {
        match self {
            Class::Unauthenticated => 16,
            Class::PermissionDenied => 7,
            Class::InvalidArgument | Class::UnsupportedMediaType => 3,
            Class::ResourceExhausted | Class::TooLarge => 8,
            Class::Unavailable => 14,
            Class::NotFound => 5,
        }
    }
}

/// A request that may not go through: what the layer answers instead of calling the
/// service, and what [`OrderHandle::place`](super::OrderHandle::place) returns to a
/// handler. [`Refusal::into_response`] is its whole answer to the caller; it is also put
/// in that response's extensions, for a logging layer outside this one.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Why.
    cause: Cause,
    /// One line for the caller: the daemon's detail, or the layer's own.
    detail: String,
    /// How long until asking again can succeed, when waiting helps.
    retry_after_ms: Option<u64>,
    /// The key the daemon matched, if any.
    key_id: Option<KeyId>,
    /// The figures of the limit that refused, if a limit did.
    limit: Option<LimitFigures>,
    /// Whether the request was gRPC, which picks the shape of the response.
    grpc: bool,
    /// Why no decision came, for the gateway's logs (never sent to the caller).
    source: Option<Arc<ClientError>>,
    /// The HTTP status of a refusal that is another server's error reshaped (an MCP
    /// server's 406, say); `None`: the class's.
    status: Option<StatusCode>,
}

/// The `Retry-After` of a `sessions` refusal: a session ends when its client goes, which
/// cannot be foretold; asking again after a second is a fair pace.
const SESSIONS_RETRY_AFTER_MS: u64 = 1000;

/// What an allow says: the key, the scope it was checked for, the ticket of a charged
/// order.
pub(crate) type Allowed = (KeyId, Option<Scope>, Option<u64>);

impl Refusal {
    /// A request without a key.
    pub(crate) fn no_token(grpc: bool, query_token: bool) -> Refusal {
        let how = if grpc {
            "send the metadata `authorization: Bearer fc_…`"
        } else if query_token {
            "send `Authorization: Bearer fc_…` or `?token=fc_…`"
        } else {
            "send `Authorization: Bearer fc_…`"
        };
        Refusal::new(Cause::NoToken, format!("no API key: {how}"), grpc)
    }

    /// A credential that cannot be a key (not `fc_` and 32 lower-case hex digits): no key
    /// has it, so it is refused as `unknown_key` without asking futu-authd, whatever its
    /// size.
    pub(crate) fn not_a_key(grpc: bool) -> Refusal {
        Refusal::new(
            Cause::Denied(Reason::UnknownKey),
            "the credential is not an API key (a key is fc_ followed by 32 hex digits)".into(),
            grpc,
        )
    }

    /// A request that cannot be read: `detail` says what and where.
    pub fn bad_request(kind: BadRequest, detail: impl Into<String>) -> Refusal {
        Refusal::new(Cause::BadRequest(kind), detail.into(), false)
    }

    /// The key holds `max` sessions already.
    pub(crate) fn sessions(max: usize, key_id: KeyId, grpc: bool) -> Refusal {
        let mut r = Refusal::new(
            Cause::Sessions,
            format!("key {key_id} already holds {max} sessions (WebSocket and MCP together), the most it may; close one"),
            grpc,
        );
        r.retry_after_ms = Some(SESSIONS_RETRY_AFTER_MS);
        r.key_id = Some(key_id);
        r
    }

    /// An MCP session id that is unknown, ended or another key's: the same answer for
    /// all three, so that nobody learns which ids exist.
    pub(crate) fn unknown_session() -> Refusal {
        Refusal::new(
            Cause::UnknownSession,
            "no such session for this key: start a new one (initialize)".into(),
            false,
        )
    }

    /// The same refusal, answered as gRPC (`true`) or plain HTTP.
    pub fn with_grpc(mut self, grpc: bool) -> Refusal {
        self.grpc = grpc;
        self
    }

    /// A request no route maps to a Futu endpoint.
    pub(crate) fn unmapped(method: &Method, path: &str, grpc: bool) -> Refusal {
        let mut shown: String = path.chars().take(200).collect();
        if shown.len() < path.len() {
            shown.push('…');
        }
        let shown = futu_auth_proto::key::redact(&shown);
        Refusal::new(
            Cause::Denied(Reason::UnknownEndpoint),
            format!("no Futu endpoint is mapped to {method} {shown}"),
            grpc,
        )
    }

    /// A second decision asked of one request's key (a handler bug: one decision a
    /// request).
    pub(crate) fn spent(grpc: bool) -> Refusal {
        Refusal::new(
            Cause::NoDecision,
            "futu-authd was not asked: this request's key was already used for its one decision".into(),
            grpc,
        )
    }

    /// [`OrderHandle::place`](super::OrderHandle::place) on a route whose endpoint is in
    /// the body (a handler bug: that route needs `place_as`).
    pub(crate) fn no_endpoint(grpc: bool) -> Refusal {
        Refusal::new(
            Cause::NoDecision,
            "futu-authd was not asked: this route's endpoint is in the body; the gateway must name it (place_as)"
                .into(),
            grpc,
        )
    }

    /// The allow in an answer, or the refusal it amounts to: a deny, or no answer (fail
    /// closed).
    pub(crate) fn judge(answer: Result<Decision, ClientError>, grpc: bool) -> Result<Allowed, Refusal> {
        match answer {
            Ok(Decision::Allow {
                key_id,
                scope,
                ticket,
            }) => Ok((key_id, scope, ticket)),
            Ok(Decision::Deny {
                reason,
                key_id,
                detail,
                retry_after_ms,
                limit,
            }) => Err(Refusal {
                cause: Cause::Denied(reason),
                detail,
                retry_after_ms,
                key_id,
                limit,
                grpc,
                source: None,
                status: None,
            }),
            Err(ClientError::TooLarge { size, max }) => Err(Refusal::new(
                Cause::BadRequest(BadRequest::TooLarge),
                format!(
                    "the request is too large to be checked: {size} bytes where futu-authd reads at most {max}"
                ),
                grpc,
            )),
            Err(e) => {
                let what = match &e {
                    ClientError::Timeout(d) => format!("no answer within {} ms", d.as_millis()),
                    ClientError::Connect { .. } | ClientError::Unavailable { .. } => "not reachable".into(),
                    ClientError::Closed => "the connection closed".into(),
                    other => format!("{other}"),
                };
                let mut refusal = Refusal::new(
                    Cause::NoDecision,
                    format!("futu-authd gave no decision ({what}); refused to fail closed"),
                    grpc,
                );
                refusal.source = Some(Arc::new(e));
                Err(refusal)
            }
        }
    }

    fn new(cause: Cause, detail: String, grpc: bool) -> Refusal {
        Refusal {
            cause,
            detail,
            retry_after_ms: None,
            key_id: None,
            limit: None,
            grpc,
            source: None,
            status: None,
        }
    }

    /// An error answer of the service behind the layer (status `status`, plain text
    /// `text`), reshaped as a refusal: `bad_request` for a 4xx (`unknown_session` for a
    /// 404), `unavailable` for a 5xx, with the same status.
    pub(crate) fn reshaped(status: StatusCode, text: &str) -> Refusal {
        let cause = match status {
            StatusCode::NOT_FOUND => Cause::UnknownSession,
            StatusCode::PAYLOAD_TOO_LARGE => Cause::BadRequest(BadRequest::TooLarge),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Cause::BadRequest(BadRequest::MediaType),
            s if s.is_server_error() => Cause::NoDecision,
            _ => Cause::BadRequest(BadRequest::Malformed),
        };
        let mut detail: String = futu_auth_proto::key::redact(text.trim())
            .chars()
            .take(300)
            .collect();
        if detail.is_empty() {
            detail = status.canonical_reason().unwrap_or("refused").to_owned();
        }
        let mut r = Refusal::new(cause, detail, false);
        r.status = Some(status);
        r
    }

    /// Why.
    pub fn cause(&self) -> Cause {
        self.cause
    }

    /// The kind of refusal (the HTTP status and gRPC code).
    pub fn class(&self) -> Class {
        self.cause.class()
    }

    /// One line for the caller.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// How long until asking again can succeed, when waiting helps.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after_ms.map(Duration::from_millis)
    }

    /// The key the daemon matched, if any.
    pub fn key_id(&self) -> Option<&KeyId> {
        self.key_id.as_ref()
    }

    /// The figures of the limit that refused, if a limit did.
    pub fn limit(&self) -> Option<&LimitFigures> {
        self.limit.as_ref()
    }

    /// Whether the key itself is no longer usable — revoked (`unknown_key`), `expired`,
    /// `frozen`, or bound to other machines (`machine`) — so that a session opened with it
    /// must end (a WebSocket closes with 1008, policy violation).
    pub fn ends_session(&self) -> bool {
        matches!(
            self.cause,
            Cause::Denied(Reason::UnknownKey | Reason::Expired | Reason::Frozen | Reason::Machine)
        )
    }

    /// `{"reason", "detail", "retry_after_ms"}`: the body of an HTTP refusal, and what a
    /// WebSocket error frame and an MCP tool error carry.
    ///
    /// A refusal by a limit adds its figures, `"limit": {"<kind>": {…}}` — e.g.
    /// `{"price_collar": {"price", "ref_price", "deviation_pct", "max_price_deviation_pct"}}`
    /// — as futu-authd gave them.
    pub fn to_json(&self) -> String {
        // Written by hand to keep the fields in this order.
        let limit = self
            .limit
            .as_ref()
            .and_then(|l| serde_json::to_string(l).ok())
            .map_or_else(String::new, |l| format!(r#","limit":{l}"#));
        format!(
            r#"{{"reason":"{}","detail":{},"retry_after_ms":{}{limit}}}"#,
            self.cause.as_str(),
            serde_json::Value::from(self.detail.as_str()),
            self.retry_after_ms
                .map_or_else(|| "null".to_owned(), |ms| ms.to_string()),
        )
    }

    /// Whether the response is gRPC's trailers-only form.
    pub fn is_grpc(&self) -> bool {
        self.grpc
    }

    /// The whole answer to the caller, the one place a refusal's response is built.
    ///
    /// HTTP: the class's status, `{"reason", "detail", "retry_after_ms"}`,
    /// `WWW-Authenticate: Bearer` on a 401, `Retry-After` (whole seconds, rounded up) on a
    /// 429. gRPC: a trailers-only response — HTTP 200, `grpc-status`, `grpc-message`, and
    /// the metadata `futu-reason` and `retry-after-ms`.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let class = self.class();
        let mut res = if self.grpc {
            let mut res = Response::new(Full::new(Bytes::new()));
            let h = res.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            h.insert(GRPC_STATUS, HeaderValue::from(class.grpc_code()));
            h.insert(GRPC_MESSAGE, grpc_message(&self.detail));
            h.insert(FUTU_REASON, HeaderValue::from_static(self.cause.as_str()));
            if let Some(ms) = self.retry_after_ms {
                h.insert(RETRY_AFTER_MS, HeaderValue::from(ms));
            }
            res
        } else {
            let body = self.to_json();
            let mut res = Response::new(Full::new(Bytes::from(body)));
            *res.status_mut() = self.status.unwrap_or_else(|| class.http_status());
            let h = res.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            match (class, self.cause) {
                (Class::Unauthenticated, Cause::NoToken) => {
                    h.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                }
                (Class::Unauthenticated, cause) => {
                    // RFC 6750 §3: the reason, for a client (an MCP SDK, say) to show.
                    let challenge = format!(
                        "Bearer error=\"invalid_token\", error_description=\"{}\"",
                        cause.as_str()
                    );
                    if let Ok(v) = HeaderValue::from_str(&challenge) {
                        h.insert(WWW_AUTHENTICATE, v);
                    }
                }
                (Class::ResourceExhausted, _) => {
                    if let Some(ms) = self.retry_after_ms {
                        h.insert(RETRY_AFTER, HeaderValue::from(retry_after_secs(ms)));
                    }
                }
                _ => {}
            }
            res
        };
        res.extensions_mut().insert(self);
        res
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused ({}): {}", self.cause, self.detail)
    }
}

impl std::error::Error for Refusal {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// `Retry-After` in whole seconds, rounded up: a caller that waits that long finds the
/// limit lifted.
pub(crate) fn retry_after_secs(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

/// `grpc-message` as gRPC's HTTP/2 mapping wants it: percent-encoded outside printable
/// ASCII, and `%` itself.
fn grpc_message(text: &str) -> HeaderValue {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static("refused"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deny(reason: Reason, retry_after_ms: Option<u64>) -> Decision {
        Decision::Deny {
            reason,
            key_id: None,
            detail: format!("{reason} says no"),
            retry_after_ms,
            limit: None,
        }
    }

    fn refusal(reason: Reason, retry_after_ms: Option<u64>, grpc: bool) -> Refusal {
        Refusal::judge(Ok(deny(reason, retry_after_ms)), grpc).expect_err("a deny is a refusal")
    }

    fn expected(reason: Reason) -> (u16, u16) {
        match reason.as_str() {
            "unknown_key" | "expired" => (401, 16),
            "scope" | "machine" | "frozen" | "market" | "symbol" | "side" | "hours" | "order_value"
            | "forbidden" | "halted" | "account" | "price_collar" | "position" => (403, 7),
            "bad_order" | "unknown_endpoint" => (400, 3),
            "rate" | "daily_value" | "open_orders" | "duplicate" => (429, 8),
            "internal" => (503, 14),
            other => panic!("a reason the test does not know: {other}"),
        }
    }

    #[test]
    fn every_reason_has_its_http_status_and_grpc_code() {
        for reason in Reason::ALL {
            let (status, code) = expected(reason);
            let http = refusal(reason, None, false).into_response();
            assert_eq!(http.status().as_u16(), status, "{reason}");
            let grpc = refusal(reason, None, true).into_response();
            assert_eq!(
                grpc.status(),
                StatusCode::OK,
                "{reason}: gRPC answers in trailers"
            );
            assert_eq!(
                grpc.headers()["grpc-status"],
                code.to_string().as_str(),
                "{reason}"
            );
            assert_eq!(grpc.headers()["futu-reason"], reason.as_str());
            assert_eq!(grpc.headers()["content-type"], "application/grpc");
        }
        let none = Refusal::no_token(false, false).into_response();
        assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(none.headers()[WWW_AUTHENTICATE], "Bearer");
        let down = Refusal::judge(Err(ClientError::Closed), true).expect_err("no answer is a refusal");
        assert_eq!(down.cause(), Cause::NoDecision);
        let down = down.into_response();
        assert_eq!(down.headers()["grpc-status"], "14");
        assert_eq!(down.headers()["futu-reason"], "unavailable");
    }

    #[test]
    fn a_401_asks_for_a_bearer_token() {
        for reason in [Reason::UnknownKey, Reason::Expired] {
            let res = refusal(reason, None, false).into_response();
            let challenge = res.headers()[WWW_AUTHENTICATE].to_str().unwrap();
            assert!(challenge.starts_with("Bearer"), "{challenge}");
        }
        let res = refusal(Reason::Scope, None, false).into_response();
        assert!(res.headers().get(WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        assert_eq!(retry_after_secs(0), 0);
        assert_eq!(retry_after_secs(1), 1);
        assert_eq!(retry_after_secs(999), 1);
        assert_eq!(retry_after_secs(1000), 1);
        assert_eq!(retry_after_secs(1001), 2);
        assert_eq!(retry_after_secs(59_999), 60);
        let res = refusal(Reason::Rate, Some(12_001), false).into_response();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers()[RETRY_AFTER], "13");
        let res = refusal(Reason::DailyValue, Some(3_600_000), false).into_response();
        assert_eq!(res.headers()[RETRY_AFTER], "3600");
        let res = refusal(Reason::Rate, Some(12_001), true).into_response();
        assert_eq!(res.headers()["retry-after-ms"], "12001");
        assert!(res.headers().get(RETRY_AFTER).is_none());
    }

    #[test]
    fn the_json_body_has_reason_detail_and_retry_after_ms() {
        use http_body_util::BodyExt;
        let res = refusal(Reason::Rate, Some(1500), false).into_response();
        assert_eq!(res.headers()[CONTENT_TYPE], "application/json");
        let body = futures_util::FutureExt::now_or_never(res.into_body().collect())
            .expect("a full body is ready")
            .expect("a full body cannot fail")
            .to_bytes();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"reason":"rate","detail":"rate says no","retry_after_ms":1500}"#
        );
        let quoted = refusal(Reason::Scope, None, false).into_response();
        let body = futures_util::FutureExt::now_or_never(quoted.into_body().collect())
            .expect("a full body is ready")
            .expect("a full body cannot fail")
            .to_bytes();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"reason":"scope","detail":"scope says no","retry_after_ms":null}"#
        );
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(grpc_message("a b"), "a b");
        assert_eq!(grpc_message("100%"), "100%25");
        assert_eq!(grpc_message("09:30→16:00\n"), "09:30%E2%86%9216:00%0A");
    }

    #[test]
    fn an_unmapped_path_is_shown_without_a_token_in_it() {
        let t = "fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f";
        let r = Refusal::unmapped(&Method::GET, &format!("/api/{t}"), false);
        assert_eq!(r.cause(), Cause::Denied(Reason::UnknownEndpoint));
        assert!(!r.detail().contains("8a3f"), "{}", r.detail());
        assert!(!format!("{r:?}").contains("8a3f"));
    }
}
