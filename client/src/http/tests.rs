//! The layer in front of an in-memory service, asking a fake futu-authd on a Unix socket
//! of a temporary directory: a token names the answer the fake gives (`deny-rate`,
//! `allow`, …), and the fake keeps every request it was sent.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futu_auth_proto::{
    Decision, FrameCodec, KeyId, Market, Order, OrderEventKind, OrderEventOutcome, Reason, Request as Msg,
    Response as Answer, Scope, SessionOutcome, SessionSubject, TrdEnv, TrdSide,
};
use futures_util::{SinkExt, StreamExt};
use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::net::UnixListener;
use tokio_util::codec::Framed;
use tower::{service_fn, Layer, ServiceExt};

use super::*;
use crate::{AuthClient, ClientError, Iface};

/// A token shaped like a real one, to look for in Debug output.
const SECRET: &str = "fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f";

/// The names of the fake daemon's behaviours: `deny-<reason>` denies with that reason (and
/// `retry_after_ms` 1500 for `rate` and `daily_value`); `real-only` holds `trade:real`
/// but not `trade:simulate`; `silent` is never answered; `slow` is answered after 300 ms;
/// anything else is allowed as key `k`, with ticket 7 for an order.
fn behaviours() -> Vec<String> {
    let mut names: Vec<String> = ["allow", "real-only", "silent", "slow", "other-key"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    names.extend(Reason::ALL.iter().map(|r| format!("deny-{r}")));
    names
}

/// A well-formed key whose digits name a behaviour of the fake daemon.
fn key(behaviour: &str) -> String {
    let i = behaviours()
        .iter()
        .position(|b| b == behaviour)
        .unwrap_or_else(|| panic!("no behaviour {behaviour}"));
    format!("fc_{:032x}", i + 1)
}

/// The behaviour a key names (`allow` for a key of none, such as [`SECRET`]).
fn behaviour(token: &str) -> String {
    let i = token
        .strip_prefix("fc_")
        .and_then(|hex| u128::from_str_radix(hex, 16).ok())
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0);
    behaviours()
        .get(i.wrapping_sub(1))
        .cloned()
        .unwrap_or_else(|| "allow".into())
}

/// A futu-authd that answers by the behaviour the token names ([`behaviours`]).
struct FakeDaemon {
    _dir: tempfile::TempDir,
    path: PathBuf,
    /// Every request but Hello, in the order received.
    seen: Arc<Mutex<Vec<Msg>>>,
    /// How many connections it accepted.
    connections: Arc<AtomicUsize>,
}

impl FakeDaemon {
    async fn start() -> FakeDaemon {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let seen: Arc<Mutex<Vec<Msg>>> = Arc::default();
        let log = Arc::clone(&seen);
        let connections: Arc<AtomicUsize> = Arc::default();
        let accepted = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let mut framed = Framed::new(stream, FrameCodec::<Msg, Answer>::new());
                    while let Some(Ok(msg)) = framed.next().await {
                        if !matches!(msg, Msg::Hello(_)) {
                            log.lock().unwrap().push(msg.clone());
                        }
                        let slow = token_of(&msg).is_some_and(|t| behaviour(t) == "slow");
                        if slow {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                        }
                        if let Some(answer) = answer(msg) {
                            if framed.send(answer).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        FakeDaemon {
            _dir: dir,
            path,
            seen,
            connections,
        }
    }

    fn client(&self) -> AuthClient {
        AuthClient::builder(&self.path).build()
    }

    fn seen(&self) -> Vec<Msg> {
        self.seen.lock().unwrap().clone()
    }
}

/// The token a request carries.
fn token_of(msg: &Msg) -> Option<&str> {
    match msg {
        Msg::Check(c) => Some(c.token.expose()),
        Msg::CheckScope(c) => Some(c.token.expose()),
        Msg::SessionCheck(c) => Some(c.token.expose()),
        _ => None,
    }
}

fn answer(msg: Msg) -> Option<Answer> {
    let decide = |token: &str, scope: Option<Scope>, ticket: Option<u64>| -> Option<Decision> {
        let behaviour = behaviour(token);
        if behaviour == "silent" {
            return None;
        }
        if behaviour == "real-only" && scope == Some(Scope::TradeSimulate) {
            return Some(deny(Reason::Scope));
        }
        match behaviour.strip_prefix("deny-") {
            Some(name) => {
                let reason = Reason::ALL.into_iter().find(|r| r.as_str() == name).unwrap();
                Some(deny(reason))
            }
            None => Some(Decision::Allow {
                key_id: if behaviour == "other-key" { "other" } else { "k" }
                    .parse::<KeyId>()
                    .unwrap(),
                scope,
                ticket,
            }),
        }
    };
    let decision =
        |request_id, d: Option<Decision>| d.map(|decision| Answer::Decision { request_id, decision });
    match msg {
        Msg::Hello(h) => Some(Answer::HelloOk {
            protocol_version: h.protocol_version,
            server_version: "fake".into(),
        }),
        Msg::Check(c) => {
            let scope = Some(if c.order.is_some() {
                Scope::TradeSimulate
            } else {
                Scope::QotRead
            });
            let ticket = c.order.as_ref().map(|_| 7);
            decision(c.request_id, decide(c.token.expose(), scope, ticket))
        }
        Msg::CheckScope(c) => decision(c.request_id, decide(c.token.expose(), Some(c.scope), None)),
        Msg::SessionCheck(c) => {
            let scope = match c.subject {
                SessionSubject::Pushes { scope, .. } => Some(scope),
                SessionSubject::KeepAlive => None,
            };
            decision(c.request_id, decide(c.token.expose(), scope, None))
        }
        Msg::Release { request_id, .. } => Some(Answer::Released {
            request_id,
            key_id: "k".parse::<KeyId>().unwrap(),
            refunded_value: 38820.0,
        }),
        Msg::OrderEvent(e) => Some(Answer::OrderEventDone {
            request_id: e.request_id,
            outcome: OrderEventOutcome::Applied {
                key_id: "k".parse::<KeyId>().unwrap(),
                refunded_value: if e.kind == OrderEventKind::Rejected {
                    38820.0
                } else {
                    0.0
                },
            },
        }),
        other => panic!("the fake daemon was sent {other:?}"),
    }
}

fn deny(reason: Reason) -> Decision {
    let waits = matches!(
        reason,
        Reason::Rate | Reason::DailyValue | Reason::OpenOrders | Reason::Duplicate
    );
    Decision::Deny {
        reason,
        key_id: None,
        detail: format!("{reason} says no"),
        retry_after_ms: waits.then_some(1500),
        limit: None,
    }
}

fn order() -> Order {
    Order {
        env: TrdEnv::Simulate,
        market: Market::HK,
        symbol: "HK.00700".into(),
        side: TrdSide::BUY,
        qty: 100.0,
        price: Some(388.2),
    }
}

fn routes() -> Routes {
    Routes::new()
        .route(Method::GET, "/api/quote", Endpoint::read("Qot_GetBasicQot"))
        .route(Method::POST, "/api/order", Endpoint::order("Trd_PlaceOrder"))
        .grpc("/futu.gateway.Gateway/Request", Endpoint::in_body())
}

fn request(method: Method, uri: &str, token: Option<&str>, grpc: bool) -> Request<Full<Bytes>> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header(AUTHORIZATION, format!("Bearer {t}"));
    }
    if grpc {
        b = b.header(CONTENT_TYPE, "application/grpc");
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

/// A service that answers 200 with the Debug text of what it received.
fn echo() -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    service_fn(|req: Request<Full<Bytes>>| async move {
        let seen = format!(
            "{:?} {:?} {:?} {:?}",
            req.uri(),
            req.headers(),
            req.extensions().get::<Authorized>(),
            req.extensions().get::<OrderHandle>()
        );
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(seen))))
    })
}

async fn body_text<B: http_body::Body>(res: Response<B>) -> String
where
    B::Error: std::fmt::Debug,
{
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn every_reason_becomes_its_status_through_the_layer() {
    let daemon = FakeDaemon::start().await;
    let layer = AuthLayer::new(daemon.client(), Iface::Rest, routes());
    for reason in Reason::ALL {
        let token = key(&format!("deny-{reason}"));
        let res = layer
            .layer(echo())
            .oneshot(request(Method::GET, "/api/quote", Some(&token), false))
            .await
            .unwrap();
        let class = Cause::Denied(reason).class();
        assert_eq!(res.status(), class.http_status(), "{reason}");
        assert_eq!(
            res.headers().contains_key(WWW_AUTHENTICATE),
            class == Class::Unauthenticated
        );
        assert_eq!(
            res.headers().contains_key(RETRY_AFTER),
            class == Class::ResourceExhausted,
            "{reason}"
        );
        if class == Class::ResourceExhausted {
            assert_eq!(res.headers()[RETRY_AFTER], "2", "1500 ms is 2 s, rounded up");
        }
        let json: serde_json::Value = serde_json::from_str(&body_text(res).await).unwrap();
        assert_eq!(json["reason"], reason.as_str());
        assert_eq!(json["detail"], format!("{reason} says no"));

        let res = layer
            .layer(echo())
            .oneshot(request(Method::GET, "/api/quote", Some(&token), true))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{reason}: gRPC refuses in trailers");
        assert_eq!(
            res.headers()["grpc-status"],
            class.grpc_code().to_string().as_str()
        );
        assert_eq!(res.headers()["futu-reason"], reason.as_str());
        assert_eq!(
            res.headers()["grpc-message"],
            format!("{reason} says no").as_str()
        );
        assert_eq!(
            res.headers()
                .get("retry-after-ms")
                .map(|v| v.to_str().unwrap().to_owned()),
            (class == Class::ResourceExhausted).then(|| "1500".to_owned())
        );
        assert_eq!(body_text(res).await, "", "trailers-only: no body");
    }
}

#[tokio::test]
async fn an_allowed_read_goes_on_with_its_key_id_and_without_the_token() {
    let daemon = FakeDaemon::start().await;
    let svc = AuthLayer::new(daemon.client(), Iface::Rest, routes()).layer(echo());
    let res = svc
        .oneshot(request(
            Method::GET,
            "/api/quote?symbol=HK.00700",
            Some(SECRET),
            false,
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let seen = body_text(res).await;
    assert!(seen.contains("key_id: KeyId(\"k\")"), "{seen}");
    assert!(seen.contains("Qot_GetBasicQot"), "{seen}");
    assert!(!seen.contains("8a3f"), "the token reached the service: {seen}");
    assert!(!seen.contains("authorization"), "{seen}");
    match &daemon.seen()[..] {
        [Msg::Check(c)] => {
            assert_eq!(c.token.expose(), SECRET);
            assert_eq!(c.endpoint, "Qot_GetBasicQot");
            assert_eq!(c.iface, Iface::Rest);
            assert!(c.order.is_none() && !c.dry_run);
        }
        other => panic!("expected one check, got {other:?}"),
    }
}

#[tokio::test]
async fn no_token_is_refused_without_asking_the_daemon() {
    let daemon = FakeDaemon::start().await;
    let layer = AuthLayer::new(daemon.client(), Iface::Rest, routes());
    let res = layer
        .layer(echo())
        .oneshot(request(Method::GET, "/api/quote", None, false))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()[WWW_AUTHENTICATE], "Bearer");
    assert_eq!(
        res.extensions().get::<Refusal>().map(Refusal::cause),
        Some(Cause::NoToken)
    );
    let json: serde_json::Value = serde_json::from_str(&body_text(res).await).unwrap();
    assert_eq!(json["reason"], "no_token");
    assert_eq!(json["retry_after_ms"], serde_json::Value::Null);

    let res = layer
        .layer(echo())
        .oneshot(request(Method::POST, "/futu.gateway.Gateway/Request", None, true))
        .await
        .unwrap();
    assert_eq!(res.headers()["grpc-status"], "16");
    assert_eq!(res.headers()["futu-reason"], "no_token");
    assert!(daemon.seen().is_empty());
}

#[tokio::test]
async fn a_query_token_counts_only_where_the_gateway_enables_it() {
    let daemon = FakeDaemon::start().await;
    let uri = format!("/api/quote?symbol=HK.00700&token={SECRET}");
    let off = AuthLayer::new(daemon.client(), Iface::Ws, routes());
    let res = off
        .layer(echo())
        .oneshot(request(Method::GET, &uri, None, false))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let on = off.query_token(true);
    let res = on
        .layer(echo())
        .oneshot(request(Method::GET, &uri, None, false))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let seen = body_text(res).await;
    assert!(seen.starts_with("/api/quote?symbol=HK.00700 "), "{seen}");
    assert!(!seen.contains("8a3f"), "{seen}");
}

#[tokio::test]
async fn a_request_no_route_maps_is_refused_unknown_endpoint() {
    let daemon = FakeDaemon::start().await;
    let layer = AuthLayer::new(daemon.client(), Iface::Rest, routes());
    let res = layer
        .layer(echo())
        .oneshot(request(Method::DELETE, "/api/quote", Some(SECRET), false))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let json: serde_json::Value = serde_json::from_str(&body_text(res).await).unwrap();
    assert_eq!(json["reason"], "unknown_endpoint");
    assert!(daemon.seen().is_empty());
}

#[tokio::test]
async fn an_order_is_checked_once_where_the_handler_places_it() {
    let daemon = FakeDaemon::start().await;
    let layer = AuthLayer::new(daemon.client(), Iface::Rest, routes());
    let placed: Arc<Mutex<Option<(u64, String)>>> = Arc::default();
    let out = Arc::clone(&placed);
    let handler = service_fn(move |req: Request<Full<Bytes>>| {
        let out = Arc::clone(&out);
        async move {
            let handle = req.extensions().get::<OrderHandle>().unwrap().clone();
            let debug = format!("{handle:?} {:?}", req.extensions());
            let p = handle.place(order()).await.unwrap();
            let again = handle.place(order()).await.unwrap_err();
            assert_eq!(again.cause(), Cause::NoDecision, "one decision a request");
            *out.lock().unwrap() = Some((p.ticket.unwrap(), debug));
            assert_eq!(p.release().await.unwrap(), 38820.0);
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }
    });
    let svc = layer.layer(handler);
    let res = svc
        .oneshot(request(Method::POST, "/api/order", Some(SECRET), false))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (ticket, debug) = placed.lock().unwrap().take().unwrap();
    assert_eq!(ticket, 7);
    assert!(!debug.contains("8a3f"), "{debug}");
    match &daemon.seen()[..] {
        [Msg::CheckScope(s), Msg::Check(c), Msg::Release { ticket: 7, .. }] => {
            assert_eq!(s.scope, Scope::TradeSimulate, "the layer checks a trading scope");
            assert_eq!(c.endpoint, "Trd_PlaceOrder");
            assert_eq!(c.order, Some(order()));
            assert!(!c.dry_run, "the order's check takes its rate slot and value");
        }
        other => panic!("expected a scope check, one order check and a release, got {other:?}"),
    }
    assert_eq!(layer.vault_held(), 0, "the key left the vault");
}

#[tokio::test]
async fn a_key_that_holds_only_trade_real_may_reach_an_order_route() {
    let daemon = FakeDaemon::start().await;
    let layer = AuthLayer::new(daemon.client(), Iface::Rest, routes());
    let res = layer
        .layer(echo())
        .oneshot(request(
            Method::POST,
            "/api/order",
            Some(&key("real-only")),
            false,
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let scopes: Vec<Scope> = daemon
        .seen()
        .iter()
        .filter_map(|m| match m {
            Msg::CheckScope(s) => Some(s.scope),
            _ => None,
        })
        .collect();
    assert_eq!(scopes, [Scope::TradeSimulate, Scope::TradeReal]);

    let real = Routes::new().route(
        Method::POST,
        "/api/order",
        Endpoint::order("Trd_PlaceOrder").env(TrdEnv::Real),
    );
    let daemon = FakeDaemon::start().await;
    let res = AuthLayer::new(daemon.client(), Iface::Rest, real)
        .layer(echo())
        .oneshot(request(
            Method::POST,
            "/api/order",
            Some(&key("real-only")),
            false,
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(matches!(&daemon.seen()[..], [Msg::CheckScope(s)] if s.scope == Scope::TradeReal));
}

#[tokio::test]
async fn a_dropped_handle_takes_its_key_out_of_the_layer() {
    let daemon = FakeDaemon::start().await;
    let layer = AuthLayer::new(daemon.client(), Iface::Rest, routes());
    let res = layer
        .layer(echo())
        .oneshot(request(Method::POST, "/api/order", Some(SECRET), false))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(layer.vault_held(), 0);
}

#[tokio::test]
async fn the_generic_call_names_its_endpoint_in_the_handler() {
    let daemon = FakeDaemon::start().await;
    let layer = AuthLayer::new(daemon.client(), Iface::Grpc, routes());
    let handler = service_fn(|req: Request<Full<Bytes>>| async move {
        let handle = req.extensions().get::<OrderHandle>().unwrap().clone();
        assert!(handle.key_id().is_none(), "nothing was asked yet");
        let res = match handle.place(order()).await {
            Err(refusal) => refusal.into_response(),
            Ok(_) => panic!("place() has no endpoint on an in_body route"),
        };
        assert_eq!(res.headers()["grpc-status"], "14");
        let handle = req.extensions().get::<OrderHandle>().unwrap().clone();
        let allowed = handle.check("3004").await;
        Ok::<_, Infallible>(match allowed {
            Ok(a) => Response::new(Full::new(Bytes::from(format!("{a:?}")))),
            Err(r) => r.into_response(),
        })
    });
    let res = layer
        .clone()
        .layer(handler)
        .oneshot(request(
            Method::POST,
            "/futu.gateway.Gateway/Request",
            Some(SECRET),
            true,
        ))
        .await
        .unwrap();
    // place() without an endpoint asked nothing, so the key was still there for check().
    assert_eq!(res.status(), StatusCode::OK);
    assert!(body_text(res).await.contains("3004"));
    assert!(matches!(&daemon.seen()[..], [Msg::Check(c)] if c.endpoint == "3004" && c.iface == Iface::Grpc));

    let deny = service_fn(|req: Request<Full<Bytes>>| async move {
        let handle = req.extensions().get::<OrderHandle>().unwrap().clone();
        Ok::<_, Infallible>(match handle.place_as("2202", order()).await {
            Ok(_) => Response::new(Full::new(Bytes::new())),
            Err(r) => r.into_response(),
        })
    });
    let res = layer
        .layer(deny)
        .oneshot(request(
            Method::POST,
            "/futu.gateway.Gateway/Request",
            Some(&key("deny-rate")),
            true,
        ))
        .await
        .unwrap();
    assert_eq!(res.headers()["grpc-status"], "8");
    assert_eq!(res.headers()["retry-after-ms"], "1500");
}

#[tokio::test]
async fn no_daemon_is_503_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let client = AuthClient::builder(dir.path().join("nobody.sock")).build();
    let layer = AuthLayer::new(client, Iface::Rest, routes());
    let res = layer
        .layer(echo())
        .oneshot(request(Method::GET, "/api/quote", Some(SECRET), false))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let refusal = res.extensions().get::<Refusal>().unwrap().clone();
    assert!(
        std::error::Error::source(&refusal).is_some(),
        "the client's error is kept for logs"
    );
    let json: serde_json::Value = serde_json::from_str(&body_text(res).await).unwrap();
    assert_eq!(json["reason"], "unavailable");
    assert!(
        !json["detail"].as_str().unwrap().contains("nobody.sock"),
        "{json}"
    );

    let res = layer
        .layer(echo())
        .oneshot(request(Method::GET, "/api/quote", Some(SECRET), true))
        .await
        .unwrap();
    assert_eq!(res.headers()["grpc-status"], "14");
}

#[tokio::test]
async fn a_daemon_that_does_not_answer_in_time_is_503() {
    let daemon = FakeDaemon::start().await;
    let client = AuthClient::builder(&daemon.path)
        .deadline(Duration::from_millis(50))
        .build();
    let res = AuthLayer::new(client, Iface::Rest, routes())
        .layer(echo())
        .oneshot(request(Method::GET, "/api/quote", Some(&key("silent")), false))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let json: serde_json::Value = serde_json::from_str(&body_text(res).await).unwrap();
    assert_eq!(json["reason"], "unavailable");
    assert!(json["detail"].as_str().unwrap().contains("50 ms"), "{json}");
}

#[tokio::test]
async fn nothing_the_layer_makes_shows_the_token_in_debug() {
    let daemon = FakeDaemon::start().await;
    let layer = AuthLayer::new(daemon.client(), Iface::Rest, routes());
    let svc = layer.layer(echo());
    let shown: Arc<Mutex<Vec<String>>> = Arc::default();
    let out = Arc::clone(&shown);
    let handler = service_fn(move |req: Request<Full<Bytes>>| {
        let out = Arc::clone(&out);
        async move {
            let handle = req.extensions().get::<OrderHandle>().unwrap().clone();
            let mut seen = vec![
                format!("{req:?}"),
                format!("{:?}", req.extensions()),
                format!("{handle:?}"),
            ];
            let placed = handle.place(order()).await.unwrap();
            seen.push(format!("{placed:?}"));
            let refused = handle.place(order()).await.unwrap_err();
            seen.push(format!("{refused:?} {refused}"));
            out.lock().unwrap().extend(seen);
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }
    });
    let order_svc = layer.layer(handler);
    let res = order_svc
        .clone()
        .oneshot(request(Method::POST, "/api/order", Some(SECRET), false))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut texts = shown.lock().unwrap().clone();
    texts.push(format!("{layer:?}"));
    texts.push(format!("{svc:?}"));
    texts.push(format!("{order_svc:?}"));
    for text in &texts {
        assert!(!text.contains("8a3f"), "a token in Debug output: {text}");
    }
}

#[tokio::test]
async fn a_session_route_proves_the_key_by_a_dry_run_and_holds_it_while_the_session_lives() {
    let daemon = FakeDaemon::start().await;
    let layer = AuthLayer::new(
        daemon.client(),
        Iface::Ws,
        Routes::new().route(Method::GET, "/ws", Endpoint::session()),
    )
    .query_token(true);
    let kept: Arc<Mutex<Option<Session>>> = Arc::default();
    let keep = Arc::clone(&kept);
    let handler = service_fn(move |req: Request<Full<Bytes>>| {
        let keep = Arc::clone(&keep);
        async move {
            *keep.lock().unwrap() = req.extensions().get::<Session>().cloned();
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }
    });
    let res = layer
        .layer(handler.clone())
        .oneshot(request(Method::GET, &format!("/ws?token={SECRET}"), None, false))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        matches!(&daemon.seen()[..], [Msg::Check(c)] if c.dry_run && c.endpoint == "KeepAlive" && c.iface == Iface::Ws)
    );
    let session = kept.lock().unwrap().take().expect("a session in the extensions");
    assert_eq!(layer.vault_held(), 1, "the key stays for the session");
    for _ in 0..3 {
        session.check("Qot_GetBasicQot").await.expect("allowed");
    }
    let placed = session
        .place_as("Trd_PlaceOrder", order())
        .await
        .expect("allowed");
    assert_eq!(placed.ticket, Some(7));
    assert!(!format!("{session:?}").contains("8a3f"));
    drop(session);
    assert_eq!(layer.vault_held(), 0, "and leaves with it");

    let refused = layer
        .layer(handler)
        .oneshot(request(Method::GET, "/ws", Some(&key("deny-unknown_key")), false))
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::UNAUTHORIZED,
        "refused before any upgrade"
    );
    assert_eq!(layer.vault_held(), 0);
}

#[tokio::test]
async fn a_session_filters_pushes_by_scope_and_ends_when_its_key_does() {
    let daemon = FakeDaemon::start().await;
    let layer = AuthLayer::new(daemon.client(), Iface::Ws, routes());
    let session = layer
        .session(futu_auth_proto::Token::new(key("real-only")))
        .await
        .unwrap();
    let pass = session
        .filter(vec![
            (Scope::QotRead, 1),
            (Scope::TradeSimulate, 2),
            (Scope::QotRead, 3),
        ])
        .await
        .unwrap();
    assert_eq!(pass, [1, 3], "the push its scopes do not cover is held back");

    let revoked = layer
        .session(futu_auth_proto::Token::new(key("allow")))
        .await
        .unwrap();
    assert!(revoked.recheck().await.is_ok());
    let ended = layer
        .session(futu_auth_proto::Token::new(key("deny-unknown_key")))
        .await
        .expect_err("an unknown key opens no session");
    assert!(ended.ends_session());
    assert!(!Refusal::judge(Ok(deny(Reason::Rate)), false)
        .unwrap_err()
        .ends_session());
}

#[tokio::test]
async fn a_credential_that_cannot_be_a_key_is_401_without_asking_the_daemon() {
    let daemon = FakeDaemon::start().await;
    let layer = AuthLayer::new(daemon.client(), Iface::Rest, routes());
    let huge = "a".repeat(70_000);
    for bad in [
        huge.as_str(),
        "fc_abc",
        "fc_8A3F2B9C1E5D7A4B8C2F9E1D3A5B7C9F",
        "bogus",
    ] {
        let res = layer
            .layer(echo())
            .oneshot(request(Method::GET, "/api/quote", Some(bad), false))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            res.headers()[WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\", error_description=\"unknown_key\""
        );
        let json: serde_json::Value = serde_json::from_str(&body_text(res).await).unwrap();
        assert_eq!(json["reason"], "unknown_key");
        let res = layer
            .layer(echo())
            .oneshot(request(
                Method::POST,
                "/futu.gateway.Gateway/Request",
                Some(bad),
                true,
            ))
            .await
            .unwrap();
        assert_eq!(res.headers()["grpc-status"], "16");
    }
    assert!(daemon.seen().is_empty(), "{:?}", daemon.seen());
    assert_eq!(daemon.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_order_too_large_for_a_frame_fails_alone_and_the_connection_serves_the_next() {
    let daemon = FakeDaemon::start().await;
    let client = daemon.client();
    let layer = AuthLayer::new(client.clone(), Iface::Rest, routes());
    let handler = service_fn(|req: Request<Full<Bytes>>| async move {
        let handle = req.extensions().get::<OrderHandle>().unwrap().clone();
        let mut big = order();
        big.symbol = format!("HK.{}", "0".repeat(70_000));
        Ok::<_, Infallible>(match handle.place(big).await {
            Ok(_) => Response::new(Full::new(Bytes::new())),
            Err(r) => r.into_response(),
        })
    });
    let res = layer
        .layer(handler)
        .oneshot(request(Method::POST, "/api/order", Some(SECRET), false))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let json: serde_json::Value = serde_json::from_str(&body_text(res).await).unwrap();
    assert_eq!(json["reason"], "bad_request");
    assert!(json["detail"].as_str().unwrap().contains("too large"), "{json}");
    // Calls queued behind it and after it are answered on the same connection.
    let secret = futu_auth_proto::Token::new(SECRET);
    let answers = futures_util::future::join_all(
        (0..50).map(|_| client.check(&secret, Iface::Rest, "Qot_GetBasicQot", None)),
    )
    .await;
    assert!(
        answers.iter().all(|a| matches!(a, Ok(Decision::Allow { .. }))),
        "{answers:?}"
    );
    assert_eq!(
        daemon.connections.load(Ordering::SeqCst),
        1,
        "one connection, still alive"
    );
}

#[tokio::test]
async fn an_order_allowed_after_its_caller_gave_up_is_released() {
    let daemon = FakeDaemon::start().await;
    let client = AuthClient::builder(&daemon.path)
        .deadline(Duration::from_millis(50))
        .build();
    let slow = futu_auth_proto::Token::new(key("slow"));
    let late = client
        .check(&slow, Iface::Rest, "Trd_PlaceOrder", Some(order()))
        .await;
    assert!(matches!(late, Err(ClientError::Timeout(_))), "{late:?}");
    // A caller whose future is dropped (its HTTP client went away) gives up too.
    let c = client.clone();
    let t = slow.clone();
    let task = tokio::spawn(async move { c.check(&t, Iface::Rest, "Trd_PlaceOrder", Some(order())).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    task.abort();
    // A read allowed late takes nothing and is not released.
    let read = client.check(&slow, Iface::Rest, "Qot_GetBasicQot", None).await;
    assert!(read.is_err());
    let released = |d: &FakeDaemon| {
        d.seen()
            .iter()
            .filter(|m| matches!(m, Msg::Release { ticket: 7, .. }))
            .count()
    };
    for _ in 0..100 {
        if released(&daemon) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(released(&daemon), 2, "{:?}", daemon.seen());
    assert_eq!(client.late_releases(), 2);
    // An order answered in time is not released.
    let fast = client
        .check(
            &futu_auth_proto::Token::new(SECRET),
            Iface::Rest,
            "Trd_PlaceOrder",
            Some(order()),
        )
        .await;
    assert!(
        matches!(fast, Ok(Decision::Allow { ticket: Some(7), .. })),
        "{fast:?}"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(released(&daemon), 2);
}

#[tokio::test]
async fn a_key_holds_at_most_its_share_of_sessions_and_the_next_is_429_sessions() {
    let daemon = FakeDaemon::start().await;
    let client = AuthClient::builder(&daemon.path).max_sessions_per_key(2).build();
    let ws = AuthLayer::new(client.clone(), Iface::Ws, routes());
    let mcp = AuthLayer::new(client.clone(), Iface::Mcp, routes());
    let token = || futu_auth_proto::Token::new(SECRET);
    let first = ws.session(token()).await.unwrap();
    let _second = mcp
        .session(token())
        .await
        .expect("WebSocket and MCP share the key's places");
    let refused = ws.session(token()).await.unwrap_err();
    assert_eq!(refused.cause(), Cause::Sessions);
    assert_eq!(refused.cause().as_str(), "sessions");
    let res = refused.into_response();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()[RETRY_AFTER], "1");
    let _other = ws
        .session(futu_auth_proto::Token::new(key("other-key")))
        .await
        .expect("another key has places of its own");
    assert_eq!(client.sessions_open(), 3);
    drop(first);
    assert_eq!(client.sessions_open(), 2);
    let _again = ws.session(token()).await.expect("a place was freed");
}

#[tokio::test]
async fn a_session_tells_the_daemon_what_it_was_told_before() {
    let daemon = FakeDaemon::start().await;
    let layer = AuthLayer::new(daemon.client(), Iface::Ws, routes());
    let session = layer
        .session(futu_auth_proto::Token::new(key("real-only")))
        .await
        .unwrap();
    for _ in 0..2 {
        let pass = session
            .filter(vec![
                (Scope::QotRead, 1),
                (Scope::TradeSimulate, 2),
                (Scope::QotRead, 3),
            ])
            .await
            .unwrap();
        assert_eq!(pass, [1, 3]);
    }
    session.recheck().await.unwrap();
    let asked: Vec<(SessionSubject, SessionOutcome)> = daemon
        .seen()
        .iter()
        .filter_map(|m| match m {
            Msg::SessionCheck(c) => Some((c.subject, c.previous)),
            _ => None,
        })
        .collect();
    let qot = |pushes| SessionSubject::Pushes {
        scope: Scope::QotRead,
        pushes,
    };
    let trade = |pushes| SessionSubject::Pushes {
        scope: Scope::TradeSimulate,
        pushes,
    };
    let no_scope = SessionOutcome::Deny(Reason::Scope);
    assert_eq!(
        asked,
        [
            // A session starts out receiving nothing: the first allow is a change.
            (qot(2), no_scope),
            (trade(1), no_scope),
            (qot(2), SessionOutcome::Allow),
            (trade(1), no_scope),
            (SessionSubject::KeepAlive, SessionOutcome::Allow),
        ]
    );
}

#[tokio::test]
async fn a_check_carries_the_account_and_reference_price_and_placed_reports_the_orders_life() {
    let daemon = FakeDaemon::start().await;
    let routes = routes().route(Method::GET, "/api/funds", Endpoint::read("Trd_GetFunds"));
    let layer = AuthLayer::new(daemon.client(), Iface::Rest, routes);
    let handler = service_fn(move |req: Request<Full<Bytes>>| async move {
        if let Some(handle) = req.extensions().get::<OrderHandle>().cloned() {
            let ctx = CheckContext::account(Some(281_756)).ref_price(Some(388.0));
            let p = handle.place_with(order(), ctx).await.unwrap();
            let copy = p.clone();
            assert!(matches!(
                p.accepted().await,
                Ok(Some(OrderEventOutcome::Applied { .. }))
            ));
            p.partially_filled(50.0, 388.2).await.unwrap();
            copy.filled(100.0, 388.2).await.unwrap();
            p.cancelled().await.unwrap();
            match p.rejected().await {
                Ok(Some(OrderEventOutcome::Applied { refunded_value, .. })) => {
                    assert_eq!(refunded_value, 38820.0)
                }
                other => panic!("{other:?}"),
            }
        }
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    });
    let svc = layer.layer(handler);
    let res = svc
        .clone()
        .oneshot(request(Method::POST, "/api/order", Some(SECRET), false))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = svc
        .clone()
        .oneshot(request(Method::GET, "/api/funds?acc_id=99", Some(SECRET), false))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = svc
        .oneshot(request(Method::GET, "/api/funds?acc_id=x", Some(SECRET), false))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "not an account number");
    let seen = daemon.seen();
    let checks: Vec<_> = seen
        .iter()
        .filter_map(|m| match m {
            Msg::Check(c) => Some((c.endpoint.as_str(), c.acc_id, c.ref_price)),
            _ => None,
        })
        .collect();
    assert_eq!(
        checks,
        [
            ("Trd_PlaceOrder", Some(281_756), Some(388.0)),
            ("Trd_GetFunds", Some(99), None)
        ]
    );
    let events: Vec<_> = seen
        .iter()
        .filter_map(|m| match m {
            Msg::OrderEvent(e) => Some((e.ticket, e.kind, e.filled_qty, e.fill_price)),
            _ => None,
        })
        .collect();
    assert_eq!(
        events,
        [
            (7, OrderEventKind::Accepted, None, None),
            (7, OrderEventKind::PartiallyFilled, Some(50.0), Some(388.2)),
            (7, OrderEventKind::Filled, Some(100.0), Some(388.2)),
            (7, OrderEventKind::Cancelled, None, None),
            (7, OrderEventKind::Rejected, None, None),
        ]
    );
}

#[test]
fn a_refusal_by_a_limit_names_its_figures() {
    let answer = Ok(Decision::Deny {
        reason: Reason::OpenOrders,
        key_id: None,
        detail: "2 orders are open; max_open_orders is 2".into(),
        retry_after_ms: None,
        limit: Some(futu_auth_proto::LimitFigures::OpenOrders {
            open_orders: 2,
            max_open_orders: 2,
        }),
    });
    let refusal = Refusal::judge(answer, false).unwrap_err();
    let body: serde_json::Value = serde_json::from_str(&refusal.to_json()).unwrap();
    assert_eq!(body["reason"], "open_orders");
    assert_eq!(body["limit"]["open_orders"]["max_open_orders"], 2, "{body}");
    let plain = Refusal::judge(Ok(deny(Reason::Scope)), false).unwrap_err();
    assert!(!plain.to_json().contains("limit"), "{}", plain.to_json());
}
