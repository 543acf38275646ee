//! One client connection: Hello first, then requests pipelined and answered in the order
//! they came, with a bound on how many are being answered at once.
//!
//! A malformed frame, a request before Hello or a wrong protocol version gets an error
//! reply where possible, then this connection (and only this one) is closed.

use std::sync::Arc;
use std::time::Instant;

use futu_auth_proto::{CodecError, ErrorKind, FrameCodec, Request, Response, PROTOCOL_VERSION};
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::UnixStream;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use crate::key::redact;
use crate::peer::Peer;
use crate::service::Authd;

/// Serves `stream` until the client closes it, breaks the protocol, or `shutdown` fires
/// (then requests already read are still answered).
pub async fn serve(
    authd: Arc<Authd>,
    stream: UnixStream,
    peer: Peer,
    max_in_flight: usize,
    shutdown: CancellationToken,
) {
    let (read, write) = stream.into_split();
    let mut reader = FramedRead::new(read, FrameCodec::<Request, Response>::new());
    let mut writer = FramedWrite::new(write, FrameCodec::<Request, Response>::new());

    // Hello.
    let first = tokio::select! {
        _ = shutdown.cancelled() => return,
        f = reader.next() => f,
    };
    let refusal = match first {
        None => return,
        Some(Ok(Request::Hello(h))) if h.protocol_version == PROTOCOL_VERSION => {
            tracing::debug!(peer_pid = peer.pid, peer_uid = peer.uid, client = %redact(&h.client_name).escape_debug(), "hello");
            let ok = Response::HelloOk {
                protocol_version: PROTOCOL_VERSION,
                server_version: env!("CARGO_PKG_VERSION").to_owned(),
            };
            if writer.send(ok).await.is_err() {
                return;
            }
            None
        }
        Some(Ok(Request::Hello(h))) => Some((
            "version",
            Response::Error {
                request_id: 0,
                kind: ErrorKind::Version,
                message: format!(
                    "protocol version {} is not spoken here; this futu-authd speaks {PROTOCOL_VERSION}",
                    h.protocol_version
                ),
            },
        )),
        Some(Ok(other)) => Some((
            "hello_first",
            Response::Error {
                request_id: 0,
                kind: ErrorKind::HelloFirst,
                message: format!("{} before Hello; send Hello first", other.name()),
            },
        )),
        Some(Err(e)) => Some(bad_frame(&e)),
    };
    if let Some((kind, resp)) = refusal {
        refuse(&authd, peer, kind, resp, &mut writer).await;
        return;
    }

    let mut in_flight = FuturesOrdered::new();
    let mut reading = true;
    let mut closing_with: Option<(&'static str, Response)> = None;
    loop {
        tokio::select! {
            biased;
            Some(resp) = in_flight.next(), if !in_flight.is_empty() => {
                if writer.feed(resp).await.is_err() {
                    return;
                }
                // Batch whatever else is already answered into the same write.
                while let Some(Some(resp)) = in_flight.next().now_or_never() {
                    if writer.feed(resp).await.is_err() {
                        return;
                    }
                }
                if writer.flush().await.is_err() {
                    return;
                }
            }
            _ = shutdown.cancelled(), if reading => reading = false,
            frame = reader.next(), if reading && in_flight.len() < max_in_flight => match frame {
                None => reading = false,
                Some(Ok(Request::Hello(_))) => {
                    reading = false;
                    closing_with = Some(("hello_first", Response::Error {
                        request_id: 0,
                        kind: ErrorKind::HelloFirst,
                        message: "a second Hello on one connection".into(),
                    }));
                }
                Some(Ok(req)) => {
                    let authd = Arc::clone(&authd);
                    let received = Instant::now();
                    in_flight.push_back(async move { authd.handle(req, peer, received).await });
                }
                Some(Err(e)) => {
                    reading = false;
                    closing_with = Some(bad_frame(&e));
                }
            },
            else => break,
        }
    }
    if let Some((kind, resp)) = closing_with {
        refuse(&authd, peer, kind, resp, &mut writer).await;
    }
}

fn bad_frame(e: &CodecError) -> (&'static str, Response) {
    let kind = match e {
        CodecError::FrameTooLarge { .. } => "too_large",
        CodecError::Malformed(_) => "malformed",
        CodecError::Encode(_) | CodecError::Io(_) => "io",
    };
    (
        kind,
        Response::Error {
            request_id: 0,
            kind: ErrorKind::BadFrame,
            message: redact(&e.to_string()).into_owned(),
        },
    )
}

/// Sends a last error reply, counts and logs why the connection is closed.
async fn refuse(
    authd: &Authd,
    peer: Peer,
    kind: &'static str,
    resp: Response,
    writer: &mut FramedWrite<tokio::net::unix::OwnedWriteHalf, FrameCodec<Request, Response>>,
) {
    if kind != "io" {
        authd.metrics.bad_frame(kind);
    }
    if let Response::Error { message, .. } = &resp {
        tracing::warn!(
            "closing connection of pid {} uid {}: {kind}: {message}",
            peer.pid,
            peer.uid
        );
    }
    let _ = writer.send(resp).await;
}
