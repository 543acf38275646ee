//! `futu-gw-demo`: a demonstration gateway over a demo broker, and the test bed of
//! futu-auth-client's HTTP layer. REST (axum) and gRPC (tonic) front-ends, each behind
//! one `AuthLayer` asking futu-authd; the command line, logging and the two servers here,
//! the handlers in `rest.rs` and `grpc.rs`, the broker in `broker.rs`.

mod broker;
mod grpc;
mod rest;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futu_auth_client::http::AuthLayer;
use futu_auth_client::{AuthClient, Iface};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::broker::Broker;

/// A demonstration gateway over a demo broker — fixed quotes and funds, orders accepted
/// unless their qty is above 1 000 000 — and the test bed of futu-auth-client's HTTP
/// layer. Not a gateway to trade with.
///
/// REST: GET /api/quote?symbol=HK.00700 (Qot_GetBasicQot), GET /api/funds
/// (Trd_GetFunds), POST /api/order with {"env","market","symbol","side","qty","price"}
/// (Trd_PlaceOrder). gRPC: futu.gateway.Gateway/Request with a proto id (3004, 2101,
/// 2202) and its body as JSON (client/gw-demo/proto/gateway.proto). The key:
/// `Authorization: Bearer fc_…` (gRPC: the `authorization` metadata).
#[derive(Debug, Parser)]
#[command(name = "futu-gw-demo", version, about, long_about)]
#[command(group = clap::ArgGroup::new("listen").required(true).multiple(true).args(["rest_listen", "grpc_listen"]))]
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
    /// FOR BENCHMARKING ONLY: serve REST without the auth layer and without futu-authd,
    /// so that `make bench` can measure what the layer costs. Quotes go out unchecked;
    /// funds and orders are refused (they need the layer's extensions); not with
    /// --grpc-listen.
    #[arg(long, conflicts_with = "grpc_listen")]
    no_auth: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("FUTU_GW_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
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

/// Binds both listeners, then serves until SIGTERM or SIGINT.
async fn run(args: Args) -> Result<(), String> {
    let stop = CancellationToken::new();
    let (mut term, mut int) = (
        signal(SignalKind::terminate()).map_err(|e| format!("signal handler: {e}"))?,
        signal(SignalKind::interrupt()).map_err(|e| format!("signal handler: {e}"))?,
    );
    let on_signal = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        on_signal.cancel();
    });

    let broker = Arc::new(Broker::default());
    let auth = if args.no_auth {
        None
    } else {
        Some(connect(&args).await)
    };
    let mut servers = tokio::task::JoinSet::new();

    if let Some(addr) = args.rest_listen {
        let listener = bind(addr, "REST").await?;
        let app = rest::router(Arc::clone(&broker));
        let app = match &auth {
            Some(client) => {
                tracing::info!(
                    "REST auth via futu-authd at {} (Bearer auth enabled)",
                    args.auth_socket.display()
                );
                app.layer(AuthLayer::new(client.clone(), Iface::Rest, rest::routes()))
            }
            None => {
                tracing::warn!(
                    "REST without auth (--no-auth: for benchmarking only; every read goes through unchecked)"
                );
                app
            }
        };
        tracing::info!("REST listening on http://{}", local_addr(&listener));
        let stop = stop.clone();
        servers.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
                .map_err(|e| format!("REST server: {e}"))
        });
    }

    if let Some(addr) = args.grpc_listen {
        let client = auth.ok_or("--no-auth serves REST only")?;
        let listener = bind(addr, "gRPC").await?;
        tracing::info!(
            "gRPC auth via futu-authd at {} (Bearer auth enabled)",
            args.auth_socket.display()
        );
        tracing::info!("gRPC listening on {}", local_addr(&listener));
        let layer = AuthLayer::new(client, Iface::Grpc, grpc::routes());
        let service = grpc::service(Arc::clone(&broker));
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let stop = stop.clone();
        servers.spawn(async move {
            tonic::transport::Server::builder()
                .layer(layer)
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                .await
                .map_err(|e| format!("gRPC server: {e}"))
        });
    }

    while let Some(done) = servers.join_next().await {
        done.map_err(|e| format!("a server task failed: {e}"))??;
    }
    Ok(())
}

/// The gateway's one futu-authd client, shared by both front-ends. Connects now to say
/// early whether the daemon answers; it does not have to: requests are refused (503,
/// UNAVAILABLE) until it does, and the client reconnects by itself.
async fn connect(args: &Args) -> AuthClient {
    let builder = AuthClient::builder(&args.auth_socket)
        .client_name("futu-gw-demo")
        .deadline(Duration::from_millis(args.auth_deadline_ms));
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

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen for {what} on {addr}: {e}"))
}

fn local_addr(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|e| format!("(unknown address: {e})"), |a| a.to_string())
}
