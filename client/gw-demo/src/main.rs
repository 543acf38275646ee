//! `futu-gw-demo`: a demonstration gateway over a demo broker, and the test bed of
//! futu-auth-client's adapters. REST (axum), gRPC (tonic), WebSocket (`/ws` on the REST
//! listener) and MCP (rmcp, streamable HTTP or stdio) front-ends, each behind one
//! `AuthLayer` asking futu-authd; the command line, logging and the servers here, the
//! handlers in `rest.rs`, `grpc.rs`, `ws.rs` and `mcp.rs`, the broker in `broker.rs`.

mod broker;
mod grpc;
mod mcp;
mod metrics;
mod rest;
mod ws;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futu_auth_client::http::AuthLayer;
use futu_auth_client::mcp::{KeySource, McpAuthLayer, StdioKeyError};
use futu_auth_client::redact::Redacting;
use futu_auth_client::{AuthClient, Iface, DEFAULT_MAX_SESSIONS_PER_KEY};
use rmcp::transport::streamable_http_server::session::local::{LocalSessionManager, SessionConfig};
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::ServiceExt;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::broker::{Broker, Fills};

/// How long an MCP session may go without a request before it ends (rmcp's keep-alive,
/// and the auth layer's: the session's place among its key's sessions is freed then).
const MCP_IDLE: Duration = Duration::from_secs(300);

/// A demonstration gateway over a demo broker — fixed quotes and funds, orders accepted
/// unless their qty is above 1 000 000 and filled a second later (--fill-after,
/// --leave-open), each change reported to futu-authd, a quote and an order update pushed
/// every 100 ms — and the test bed of futu-auth-client's adapters. Not a gateway to trade
/// with. An order's reference price, for futu-authd's price collar, is the demo's quote.
///
/// REST: GET /api/quote?symbol=HK.00700 (Qot_GetBasicQot), GET /api/funds?acc_id=N
/// (Trd_GetFunds), POST /api/order with {"env","market","symbol","side","qty","price",
/// "acc_id"} (Trd_PlaceOrder), POST /api/order/cancel with {"order_id"}
/// (Trd_ModifyOrder), GET /api/admin/status (Admin_Status), POST /api/admin/reload
/// (Admin_Reload). gRPC: futu.gateway.Gateway/Request with a proto id (3004, 2101, 2202,
/// 2205) and its body as JSON (client/gw-demo/proto/gateway.proto). WebSocket: /ws on
/// the REST listener, frames {"id","proto_id","body"} (3004, 2101, 2202, 2205, 2005),
/// pushes {"push","body"} (3005 quotes, 2208 order updates) filtered by the key's scopes.
/// MCP: tools get_quote, get_funds, place_order, cancel_order, unlock_trade, over streamable HTTP
/// (--mcp-listen, path /mcp) or stdio (--mcp-stdio). The key: `Authorization: Bearer
/// fc_…` (gRPC: the `authorization` metadata; WebSocket: also `?token=`; MCP on stdio:
/// FUTU_MCP_API_KEY).
#[derive(Debug, Parser)]
#[command(name = "futu-gw-demo", version, about, long_about)]
#[command(group = clap::ArgGroup::new("listen").required(true).multiple(true).args(["rest_listen", "grpc_listen", "mcp_listen", "mcp_stdio"]))]
struct Args {
    /// futu-authd's socket.
    #[arg(
        long,
        env = "FUTU_AUTH_SOCKET",
        value_name = "PATH",
        default_value = "/run/futu/auth.sock"
    )]
    auth_socket: PathBuf,
    /// How long a check may take, connecting included, before the request is refused
    /// (503, UNAVAILABLE): futu-authd not answering is a deny.
    #[arg(long, value_name = "MS", default_value_t = 50)]
    auth_deadline_ms: u64,
    /// Serve REST on this address, e.g. 127.0.0.1:8080 (port 0: a free port; the log
    /// says which).
    #[arg(long, value_name = "ADDR")]
    rest_listen: Option<SocketAddr>,
    /// Serve gRPC on this address, e.g. 127.0.0.1:50051 (port 0: a free port; the log
    /// says which).
    #[arg(long, value_name = "ADDR")]
    grpc_listen: Option<SocketAddr>,
    /// Serve MCP over streamable HTTP on this address, path /mcp, e.g. 127.0.0.1:8081
    /// (port 0: a free port; the log says which). The key: each request's Bearer token.
    #[arg(long, value_name = "ADDR")]
    mcp_listen: Option<SocketAddr>,
    /// Serve MCP on stdin and stdout, with the key in FUTU_MCP_API_KEY (never a tool
    /// argument); the gateway exits when stdin closes.
    #[arg(long)]
    mcp_stdio: bool,
    /// The most WebSocket connections and MCP sessions one key may hold at once, every
    /// front-end together; the next is refused (429, reason `sessions`, Retry-After).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_SESSIONS_PER_KEY)]
    max_sessions_per_key: usize,
    /// Serve the gateway's own Prometheus metrics (refusals by front-end and reason,
    /// sessions open, late releases) on this address, path /metrics, e.g.
    /// 127.0.0.1:9465 (port 0: a free port; the log says which).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// FOR BENCHMARKING ONLY: serve REST without the auth layer and without futu-authd,
    /// so that `make bench` can measure what the layer costs. Quotes go out unchecked;
    /// funds and orders are refused (they need the layer's extensions); no /ws; not with
    /// --grpc-listen or MCP.
    #[arg(long, conflicts_with_all = ["grpc_listen", "mcp_listen", "mcp_stdio"])]
    no_auth: bool,
    /// How long after accepting an order the demo broker fills it (e.g. 1s, 250ms, 0s),
    /// reporting each change to futu-authd (a partial fill of half, then the fill).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    fill_after: Duration,
    /// Leave every accepted order open until it is cancelled (Trd_ModifyOrder, POST
    /// /api/order/cancel), instead of filling it.
    #[arg(long)]
    leave_open: bool,
    /// The runtime's worker threads (default: one per CPU).
    #[arg(long, value_name = "N")]
    worker_threads: Option<std::num::NonZeroUsize>,
}

/// `1s`, `250ms`, `2m`: a whole number and its unit.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 1s, 250ms or 2m"))?;
    match &text[digits.len()..] {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        unit => Err(format!("{unit:?} is not a unit of duration: ms, s or m")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("FUTU_GW_LOG").unwrap_or_else(|_| EnvFilter::new("info,rmcp=warn")),
        )
        // A library's trace output may print a request body or a tool argument verbatim:
        // nothing shaped like a key reaches the log.
        .with_writer(|| Redacting::new(std::io::stderr()))
        .with_target(false)
        .with_ansi(false)
        .init();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.worker_threads {
        builder.worker_threads(n.get());
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("futu-gw-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Why the gateway stopped with an error (each in one line, with what failed beneath).
#[derive(Debug, thiserror::Error)]
enum GatewayError {
    /// A signal handler could not be installed.
    #[error("signal handler: {0}")]
    Signal(#[source] std::io::Error),
    /// A front-end's address could not be bound.
    #[error("cannot listen for {what} on {addr}: {source}")]
    Listen {
        /// Which front-end.
        what: &'static str,
        /// Its address.
        addr: SocketAddr,
        /// What failed.
        source: std::io::Error,
    },
    /// A front-end that needs futu-authd was asked for with --no-auth.
    #[error("--no-auth serves REST only")]
    NoAuth,
    /// MCP on stdio has no key to ask with.
    #[error(transparent)]
    StdioKey(#[from] StdioKeyError),
    /// A server stopped with an error.
    #[error("{server}: {source}")]
    Serve {
        /// Which server, e.g. `REST server`.
        server: &'static str,
        /// What failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A server's task panicked or was cancelled.
    #[error("a server task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

impl GatewayError {
    /// `server` stopped with `source`.
    fn serve(server: &'static str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        GatewayError::Serve {
            server,
            source: source.into(),
        }
    }
}

/// The servers running, each until the gateway stops.
type Servers = tokio::task::JoinSet<Result<(), GatewayError>>;

/// What every front-end shares: the broker, the one futu-authd client (none with
/// --no-auth), the gateway's own metrics, and the signal to stop.
struct Gateway {
    broker: Arc<Broker>,
    auth: Option<AuthClient>,
    metrics: metrics::Metrics,
    stop: CancellationToken,
    /// futu-authd's socket, for log lines.
    auth_socket: PathBuf,
}

impl Gateway {
    /// The futu-authd client, for a front-end that cannot do without it.
    fn client(&self) -> Result<AuthClient, GatewayError> {
        self.auth.clone().ok_or(GatewayError::NoAuth)
    }
}

/// Binds the listeners, then serves until SIGTERM or SIGINT (or, with --mcp-stdio, until
/// stdin closes). One function per front-end below: each binds, puts futu-auth-client's
/// layer in front of its handlers and adds its server to `servers`.
async fn run(args: Args) -> Result<(), GatewayError> {
    let stop = stop_on_signal()?;
    let broker = Arc::new(Broker::new(Fills {
        after: args.fill_after,
        leave_open: args.leave_open,
    }));
    let pushing = Arc::clone(&broker);
    let stop_pushing = stop.clone();
    tokio::spawn(async move { pushing.push_until(stop_pushing).await });
    let auth = if args.no_auth {
        None
    } else {
        Some(connect(&args).await)
    };
    let gateway = Gateway {
        broker,
        auth,
        metrics: metrics::Metrics::default(),
        stop,
        auth_socket: args.auth_socket.clone(),
    };
    let mut servers = Servers::new();
    if let Some(addr) = args.rest_listen {
        serve_rest(&gateway, addr, &mut servers).await?;
    }
    if let Some(addr) = args.grpc_listen {
        serve_grpc(&gateway, addr, &mut servers).await?;
    }
    if let Some(addr) = args.mcp_listen {
        serve_mcp_http(&gateway, addr, &mut servers).await?;
    }
    if args.mcp_stdio {
        serve_mcp_stdio(&gateway, &mut servers).await?;
    }
    if let Some(addr) = args.metrics_listen {
        serve_metrics(&gateway, addr, &mut servers).await?;
    }
    while let Some(done) = servers.join_next().await {
        done.map_err(GatewayError::Task)??;
    }
    Ok(())
}

/// A token cancelled at SIGTERM or SIGINT.
fn stop_on_signal() -> Result<CancellationToken, GatewayError> {
    let stop = CancellationToken::new();
    let (mut term, mut int) = (
        signal(SignalKind::terminate()).map_err(GatewayError::Signal)?,
        signal(SignalKind::interrupt()).map_err(GatewayError::Signal)?,
    );
    let on_signal = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        on_signal.cancel();
    });
    Ok(stop)
}

/// REST on `addr`, and WebSocket on its `/ws`: each router behind an `AuthLayer` with its
/// own routes (the WebSocket's reads `?token=` too), the refusals counted outside it.
/// With --no-auth, REST alone and unchecked (for benchmarking).
async fn serve_rest(gateway: &Gateway, addr: SocketAddr, servers: &mut Servers) -> Result<(), GatewayError> {
    let listener = bind(addr, "REST").await?;
    let app = rest::router(Arc::clone(&gateway.broker));
    let app = match &gateway.auth {
        Some(client) => {
            tracing::info!(
                "REST auth via futu-authd at {} (Bearer auth enabled)",
                gateway.auth_socket.display()
            );
            tracing::info!("WebSocket auth via futu-authd on /ws (Bearer or ?token=)");
            let ws = ws::router(Arc::clone(&gateway.broker))
                .layer(AuthLayer::new(client.clone(), Iface::Ws, ws::routes()).query_token(true))
                .layer(gateway.metrics.refusals(Iface::Ws));
            app.layer(AuthLayer::new(client.clone(), Iface::Rest, rest::routes()))
                .layer(gateway.metrics.refusals(Iface::Rest))
                .merge(ws)
        }
        None => {
            tracing::warn!(
                "REST without auth (--no-auth: for benchmarking only; every read goes through unchecked)"
            );
            app
        }
    };
    tracing::info!("REST listening on http://{}", local_addr(&listener));
    servers.spawn(serve_axum("REST server", listener, app, gateway.stop.clone()));
    Ok(())
}

/// gRPC on `addr`: the gateway's service behind an `AuthLayer` with the gRPC routes.
async fn serve_grpc(gateway: &Gateway, addr: SocketAddr, servers: &mut Servers) -> Result<(), GatewayError> {
    let client = gateway.client()?;
    let listener = bind(addr, "gRPC").await?;
    tracing::info!(
        "gRPC auth via futu-authd at {} (Bearer auth enabled)",
        gateway.auth_socket.display()
    );
    tracing::info!("gRPC listening on {}", local_addr(&listener));
    let layer = AuthLayer::new(client, Iface::Grpc, grpc::routes());
    let service = grpc::service(Arc::clone(&gateway.broker));
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let stop = gateway.stop.clone();
    let counted = gateway.metrics.refusals(Iface::Grpc);
    servers.spawn(async move {
        tonic::transport::Server::builder()
            .layer(counted)
            .layer(layer)
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
            .await
            .map_err(|e| GatewayError::serve("gRPC server", e))
    });
    Ok(())
}

/// MCP over streamable HTTP on `addr`, path `/mcp`: rmcp's service behind an
/// `McpAuthLayer`, which binds each MCP session to the key that opened it.
async fn serve_mcp_http(
    gateway: &Gateway,
    addr: SocketAddr,
    servers: &mut Servers,
) -> Result<(), GatewayError> {
    let client = gateway.client()?;
    let listener = bind(addr, "MCP").await?;
    let layer = McpAuthLayer::new(client).idle(MCP_IDLE);
    let broker = Arc::clone(&gateway.broker);
    let config = StreamableHttpServerConfig::default()
        .with_max_request_body_bytes(futu_auth_client::mcp::MAX_BODY)
        .with_allowed_hosts([
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
            addr.ip().to_string(),
        ])
        .with_cancellation_token(gateway.stop.child_token());
    let mut sessions = LocalSessionManager::default();
    sessions.session_config = {
        let mut c = SessionConfig::default();
        c.keep_alive = Some(MCP_IDLE);
        c
    };
    let service: StreamableHttpService<mcp::Tools, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(mcp::Tools::new(Arc::clone(&broker), KeySource::Http)),
        Arc::new(sessions),
        config,
    );
    let app = axum::Router::new()
        .nest_service("/mcp", service)
        .layer(layer)
        .layer(gateway.metrics.refusals(Iface::Mcp));
    tracing::info!(
        "MCP auth via futu-authd at {} (Bearer auth enabled)",
        gateway.auth_socket.display()
    );
    tracing::info!("MCP listening on http://{}/mcp", local_addr(&listener));
    servers.spawn(serve_axum("MCP server", listener, app, gateway.stop.clone()));
    Ok(())
}

/// MCP on stdin and stdout, with the key of FUTU_MCP_API_KEY: the tools ask through an
/// `AuthLayer` with MCP's routes. The gateway stops when stdin closes.
async fn serve_mcp_stdio(gateway: &Gateway, servers: &mut Servers) -> Result<(), GatewayError> {
    let client = gateway.client()?;
    let layer = AuthLayer::new(client, Iface::Mcp, futu_auth_client::mcp::routes());
    let keys = KeySource::stdio(&layer).await?;
    tracing::info!("MCP on stdio, with the key of FUTU_MCP_API_KEY");
    let tools = mcp::Tools::new(Arc::clone(&gateway.broker), keys);
    let stop = gateway.stop.clone();
    servers.spawn(async move {
        let outcome = match tools.serve(rmcp::transport::stdio()).await {
            Ok(server) => server
                .waiting()
                .await
                .map(drop)
                .map_err(|e| GatewayError::serve("MCP on stdio", e)),
            Err(e) => Err(GatewayError::serve("MCP on stdio", e)),
        };
        // stdin closed: the gateway's client is gone.
        stop.cancel();
        outcome
    });
    Ok(())
}

/// The gateway's own metrics on `addr`, path `/metrics`.
async fn serve_metrics(
    gateway: &Gateway,
    addr: SocketAddr,
    servers: &mut Servers,
) -> Result<(), GatewayError> {
    let listener = bind(addr, "metrics").await?;
    tracing::info!("metrics listening on http://{}/metrics", local_addr(&listener));
    let app = gateway.metrics.router(gateway.auth.clone());
    servers.spawn(serve_axum("metrics server", listener, app, gateway.stop.clone()));
    Ok(())
}

/// Serves `app` on `listener` until `stop`, then finishes what is in flight.
async fn serve_axum(
    server: &'static str,
    listener: TcpListener,
    app: axum::Router,
    stop: CancellationToken,
) -> Result<(), GatewayError> {
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
        .map_err(|e| GatewayError::serve(server, e))
}

/// The gateway's one futu-authd client, shared by every front-end. Connects now to say
/// early whether the daemon answers; it does not have to: requests are refused (503,
/// UNAVAILABLE) until it does, and the client reconnects by itself.
async fn connect(args: &Args) -> AuthClient {
    let builder = AuthClient::builder(&args.auth_socket)
        .client_name("futu-gw-demo")
        .deadline(Duration::from_millis(args.auth_deadline_ms))
        .max_sessions_per_key(args.max_sessions_per_key);
    match builder.clone().connect().await {
        Ok(client) => client,
        Err(e) => {
            tracing::warn!(
                "futu-authd at {} does not answer ({e}); requests are refused until it does",
                args.auth_socket.display()
            );
            builder.build()
        }
    }
}

/// Binds `addr` for front-end `what`.
async fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, GatewayError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| GatewayError::Listen { what, addr, source })
}

fn local_addr(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|e| format!("(unknown address: {e})"), |a| a.to_string())
}
