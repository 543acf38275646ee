//! One client connection: Hello first, then requests pipelined and answered in the order
//! they came, with a bound on how many are being answered at once.
//!
//! A malformed frame, a request before Hello or a wrong protocol version gets an error
//! reply where possible, then this connection (and only this one) is closed.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futu_auth_proto::{CodecError, ErrorKind, FrameCodec, Request, Response, PROTOCOL_VERSION};
use futures_util::future::OptionFuture;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::UnixStream;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use crate::key::redact;
use crate::peer::Peer;
use crate::service::{Answer, Authd};

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

    // Answers in request order. Checks are answered as they are read; a request that
    // waits (admin IO, a full audit queue) holds back the answers behind it until it is
    // done, and is polled while it is at the head.
    let mut queue: VecDeque<Answer> = VecDeque::new();
    let mut head: Option<Pin<Box<dyn Future<Output = Response> + Send>>> = None;
    let mut reading = true;
    let mut closing_with: Option<(&'static str, Response)> = None;
    loop {
        if head.is_none() {
            let mut fed = false;
            while let Some(answer) = queue.pop_front() {
                match answer {
                    Answer::Now(resp) => {
                        if send_answer(&mut writer, resp).await.is_err() {
                            return;
                        }
                        fed = true;
                    }
                    Answer::Later(f) => {
                        head = Some(f);
                        break;
                    }
                }
            }
            if fed && writer.flush().await.is_err() {
                return;
            }
        }
        let in_flight = queue.len() + usize::from(head.is_some());
        let mut head_done = None;
        tokio::select! {
            biased;
            Some(resp) = OptionFuture::from(head.as_mut()), if head.is_some() => head_done = Some(resp),
            _ = shutdown.cancelled(), if reading => reading = false,
            frame = reader.next(), if reading && in_flight < max_in_flight => {
                // Take this frame and every other already buffered, then answer them in
                // one write.
                let received = Instant::now();
                let mut burst = Vec::new();
                let mut next = Some(frame);
                while let Some(frame) = next.take() {
                    match frame {
                        None => reading = false,
                        Some(Ok(Request::Hello(_))) => {
                            reading = false;
                            closing_with = Some(("hello_first", Response::Error {
                                request_id: 0,
                                kind: ErrorKind::HelloFirst,
                                message: "a second Hello on one connection".into(),
                            }));
                        }
                        Some(Ok(req)) => burst.push(req),
                        Some(Err(e)) => {
                            reading = false;
                            closing_with = Some(bad_frame(&e));
                        }
                    }
                    if reading && in_flight + burst.len() < max_in_flight {
                        next = reader.next().now_or_never();
                    }
                }
                queue.extend(authd.answer_all(burst, peer, received));
            },
            else => break,
        }
        if let Some(resp) = head_done {
            head = None;
            queue.push_front(Answer::Now(resp));
        }
    }
    if let Some((kind, resp)) = closing_with {
        refuse(&authd, peer, kind, resp, &mut writer).await;
    }
}

type Writer = FramedWrite<tokio::net::unix::OwnedWriteHalf, FrameCodec<Request, Response>>;

/// Queues an answer; one too large for a frame (a listing of many keys) is answered with
/// an error instead, so the client learns why rather than losing its connection.
async fn send_answer(writer: &mut Writer, resp: Response) -> Result<(), CodecError> {
    let request_id = resp.request_id();
    match writer.feed(resp).await {
        Err(CodecError::Encode(why)) => {
            tracing::warn!("answer to request {request_id} not sent: {why}");
            writer
                .feed(Response::Error {
                    request_id,
                    kind: ErrorKind::Internal,
                    message: format!("the answer does not fit in a frame ({why})"),
                })
                .await
        }
        other => other,
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
async fn refuse(authd: &Authd, peer: Peer, kind: &'static str, resp: Response, writer: &mut Writer) {
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
