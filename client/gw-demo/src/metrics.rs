//! The gateway's own metrics, on `--metrics-listen` (path `/metrics`): every refusal the
//! front-ends answered, by front-end and reason (the auth layer puts each refusal in its
//! response's extensions; [`Metrics::refusals`] counts them there), the long-lived
//! sessions open, and the orders released because they were allowed after their caller
//! gave up. futu-authd's own metrics are on its listener; these are what only the
//! gateway sees (a `sessions` refusal, a request refused before any key was found).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::routing::get;
use axum::Router;
use futu_auth_client::http::Refusal;
use futu_auth_client::{AuthClient, Iface};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tower_layer::Layer;
use tower_service::Service;

/// The labels of `futu_gw_refusals_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    /// `rest`, `grpc`, `ws` or `mcp`.
    iface: &'static str,
    /// The refusal's reason (`sessions`, `unknown_key`, `bad_request`, …).
    reason: &'static str,
}

/// The gateway's metrics, cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    registry: Mutex<Option<Registry>>,
    refusals: Family<RefusalLabels, Counter>,
    sessions: Gauge,
    late_releases: Counter,
    /// The client's count of late releases at the last scrape.
    late_seen: AtomicI64,
}

impl Metrics {
    /// A layer counting the refusals of front-end `iface`, for outside its auth layer.
    pub fn refusals(&self, iface: Iface) -> CountRefusals {
        CountRefusals {
            metrics: self.clone(),
            iface,
        }
    }

    /// `/metrics`, with the figures of `client` (none with --no-auth).
    pub fn router(&self, client: Option<AuthClient>) -> Router {
        let me = self.clone();
        Router::new().route(
            "/metrics",
            get(move || {
                let me = me.clone();
                let client = client.clone();
                async move { me.render(client.as_ref()) }
            }),
        )
    }

    fn render(&self, client: Option<&AuthClient>) -> String {
        let inner = &self.inner;
        if let Some(c) = client {
            inner
                .sessions
                .set(i64::try_from(c.sessions_open()).unwrap_or(i64::MAX));
            let now = i64::try_from(c.late_releases()).unwrap_or(i64::MAX);
            let before = inner.late_seen.swap(now, Ordering::Relaxed);
            inner
                .late_releases
                .inc_by(u64::try_from(now - before).unwrap_or(0));
        }
        let mut registry = inner.registry.lock().unwrap_or_else(|p| p.into_inner());
        let registry = registry.get_or_insert_with(|| {
            let mut r = Registry::default();
            r.register(
                "futu_gw_refusals",
                "Requests the gateway refused, by front-end and reason",
                inner.refusals.clone(),
            );
            r.register(
                "futu_gw_sessions",
                "WebSocket connections and MCP sessions open, every key together",
                inner.sessions.clone(),
            );
            r.register(
                "futu_gw_late_releases",
                "Orders futu-authd allowed after their caller gave up, released",
                inner.late_releases.clone(),
            );
            r
        });
        let mut out = String::new();
        if let Err(e) = encode(&mut out, registry) {
            return format!("# the metrics could not be encoded: {e}\n");
        }
        out
    }
}

/// The layer of [`Metrics::refusals`].
#[derive(Clone)]
pub struct CountRefusals {
    metrics: Metrics,
    iface: Iface,
}

impl<S> Layer<S> for CountRefusals {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            metrics: self.metrics.clone(),
            iface: self.iface,
        }
    }
}

/// A service whose refusals are counted.
#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    metrics: Metrics,
    iface: Iface,
}

impl<S, Req, B> Service<Req> for Counted<S>
where
    S: Service<Req, Response = http::Response<B>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<B>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<B>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let answer = self.inner.call(req);
        let (metrics, iface) = (self.metrics.clone(), self.iface);
        Box::pin(async move {
            let res = answer.await?;
            if let Some(refusal) = res.extensions().get::<Refusal>() {
                metrics
                    .inner
                    .refusals
                    .get_or_create(&RefusalLabels {
                        iface: iface.as_str(),
                        reason: refusal.cause().as_str(),
                    })
                    .inc();
            }
            Ok(res)
        })
    }
}
