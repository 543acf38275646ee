//! One client connection: Hello first, then requests pipelined and answered in the order
//! they came, with a bound on how many are being answered at once.
//!
//! Hello agrees on the protocol version the connection speaks (the client's newest or the
//! daemon's, whichever is older); every answer after it is written in that version.
//!
//! A malformed frame, a request before Hello or a protocol version not spoken here gets an
//! error reply where possible, then this connection (and only this one) is closed.
//!
//! So that no peer can hold connections it does not use, a connection that sends no Hello
//! within `hello_timeout`, or stops in the middle of a frame for `frame_timeout`, is closed.
//! A connection that said Hello and then waits quietly is a gateway's, and is never cut for
//! being quiet. Every closure has a [`Closed`] reason, counted in the metrics.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futu_auth_proto::key::redact;
use futu_auth_proto::{
    CodecError, ErrorKind, FrameCodec, Request, Response, PROTOCOL_VERSION, PROTOCOL_VERSIONS,
};
use futures_util::future::OptionFuture;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::UnixStream;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use crate::peer::Peer;
use crate::service::{Answer, Authd};

/// Why a connection was closed: the `reason` label of
/// `futu_auth_connections_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The client closed it.
    ByClient,
    /// No Hello within the hello timeout.
    HelloTimeout,
    /// A frame was begun and not finished within the frame timeout.
    FrameTimeout,
    /// Its uid already held its share of the connections.
    UidShare,
    /// A malformed, oversized or cut-short frame.
    BadFrame,
    /// A Hello with a protocol version not spoken here (0).
    Version,
    /// A request before Hello, or a second Hello.
    HelloFirst,
    /// The daemon is shutting down.
    Shutdown,
    /// Writing to the socket failed.
    Io,
}

impl Closed {
    /// The label value, e.g. `hello_timeout`.
    pub fn as_str(self) -> &'static str {
        match self {
            Closed::ByClient => "client",
            Closed::HelloTimeout => "hello_timeout",
            Closed::FrameTimeout => "frame_timeout",
            Closed::UidShare => "uid_share",
            Closed::BadFrame => "bad_frame",
            Closed::Version => "version",
            Closed::HelloFirst => "hello_first",
            Closed::Shutdown => "shutdown",
            Closed::Io => "io",
        }
    }
}

/// A frame or a message that breaks the protocol: the connection gets an error reply and
/// is closed. The `kind` label of `futu_auth_bad_frames_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A Hello with a protocol version not spoken here.
    Version,
    /// A request before Hello, or a second Hello.
    HelloFirst,
    /// A frame longer than the protocol allows.
    TooLarge,
    /// A frame that is not a message.
    Malformed,
    /// A frame cut short.
    Truncated,
}

impl Fault {
    /// The label value, e.g. `too_large`.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Version => "version",
            Fault::HelloFirst => "hello_first",
            Fault::TooLarge => "too_large",
            Fault::Malformed => "malformed",
            Fault::Truncated => "truncated",
        }
    }

    /// Why the connection is closed for it.
    fn closed(self) -> Closed {
        match self {
            Fault::Version => Closed::Version,
            Fault::HelloFirst => Closed::HelloFirst,
            Fault::TooLarge | Fault::Malformed | Fault::Truncated => Closed::BadFrame,
        }
    }
}

/// Why a connection ends with a last error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The peer broke the protocol (counted).
    Fault(Fault),
    /// The socket failed while a frame was read (not the peer's fault; not counted).
    Io,
}

impl Refusal {
    /// For the log line: the fault's label, or `io`.
    fn as_str(self) -> &'static str {
        match self {
            Refusal::Fault(f) => f.as_str(),
            Refusal::Io => "io",
        }
    }
}

/// How long a peer may take, from [`crate::config::Config`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most requests of one connection being answered at once.
    pub max_in_flight: usize,
    /// From accepting a connection to its Hello.
    pub hello_timeout: Duration,
    /// From the first byte of a frame to its last.
    pub frame_timeout: Duration,
}

/// Serves `stream` until the client closes it, breaks the protocol, stalls, or `shutdown`
/// fires (then requests already read are still answered). Returns why it ended.
pub async fn serve(
    authd: Arc<Authd>,
    stream: UnixStream,
    peer: Peer,
    limits: Limits,
    shutdown: CancellationToken,
) -> Closed {
    let (read, write) = stream.into_split();
    let mut reader = FramedRead::new(read, FrameCodec::<Request, Response>::new());
    let mut writer = FramedWrite::new(write, FrameCodec::<Request, Response>::new());
    let max_in_flight = limits.max_in_flight;

    // Hello.
    let first = tokio::select! {
        _ = shutdown.cancelled() => return Closed::Shutdown,
        f = tokio::time::timeout(limits.hello_timeout, reader.next()) => match f {
            Ok(f) => f,
            Err(_) => {
                tracing::debug!(
                    "closing connection of pid {} uid {}: no Hello within {:?}",
                    peer.pid,
                    peer.uid,
                    limits.hello_timeout
                );
                return Closed::HelloTimeout;
            }
        },
    };
    let refusal = match first {
        None => return Closed::ByClient,
        Some(Ok(Request::Hello(h))) => match h.agreed_version() {
            Some(version) => {
                tracing::debug!(peer_pid = peer.pid, peer_uid = peer.uid, client = %redact(&h.client_name).escape_debug(), version, "hello");
                let ok = Response::HelloOk {
                    protocol_version: version,
                    server_version: env!("CARGO_PKG_VERSION").to_owned(),
                };
                if writer.send(ok).await.is_err() {
                    return Closed::Io;
                }
                // Every answer from here on is in the agreed version (requests read the
                // same in all of them).
                writer.encoder_mut().set_version(version);
                reader.decoder_mut().set_version(version);
                None
            }
            None => Some((
                Refusal::Fault(Fault::Version),
                Response::Error {
                    request_id: 0,
                    kind: ErrorKind::Version,
                    message: format!(
                        "protocol version {} is not spoken here; this futu-authd speaks versions {} to {PROTOCOL_VERSION}",
                        h.protocol_version, PROTOCOL_VERSIONS[0]
                    ),
                },
            )),
        },
        Some(Ok(other)) => Some((
            Refusal::Fault(Fault::HelloFirst),
            Response::Error {
                request_id: 0,
                kind: ErrorKind::HelloFirst,
                message: format!("{} before Hello; send Hello first", other.name()),
            },
        )),
        Some(Err(e)) => Some(bad_frame(&e)),
    };
    if let Some((kind, resp)) = refusal {
        return refuse(&authd, peer, kind, resp, &mut writer).await;
    }

    // Answers in request order. Checks are answered as they are read; a request that
    // waits (admin IO, a full audit queue) holds back the answers behind it until it is
    // done, and is polled while it is at the head.
    let mut queue: VecDeque<Answer> = VecDeque::new();
    let mut head: Option<Pin<Box<dyn Future<Output = Response> + Send>>> = None;
    let mut reading = true;
    let mut closing_with: Option<(Refusal, Response)> = None;
    let mut closed = Closed::ByClient;
    // Since when a frame has been buffered in part: it must be finished in time. Looked at
    // on a slow tick, so a quiet connection costs nothing.
    let mut partial_since: Option<Instant> = None;
    let mut stall_tick = tokio::time::interval(limits.frame_timeout / 2);
    stall_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if head.is_none() {
            let mut fed = false;
            while let Some(answer) = queue.pop_front() {
                match answer {
                    Answer::Now(resp) => {
                        if send_answer(&mut writer, resp).await.is_err() {
                            return Closed::Io;
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
                return Closed::Io;
            }
        }
        let in_flight = queue.len() + usize::from(head.is_some());
        let mut head_done = None;
        tokio::select! {
            biased;
            Some(resp) = OptionFuture::from(head.as_mut()), if head.is_some() => head_done = Some(resp),
            _ = shutdown.cancelled(), if reading => {
                reading = false;
                closed = Closed::Shutdown;
            }
            _ = stall_tick.tick(), if reading && in_flight < max_in_flight => {
                if reader.read_buffer().is_empty() {
                    partial_since = None;
                } else if partial_since.is_none_or(|t| t.elapsed() < limits.frame_timeout) {
                    partial_since.get_or_insert_with(Instant::now);
                } else {
                    tracing::warn!(
                        "closing connection of pid {} uid {}: a frame begun over {:?} ago is still not complete",
                        peer.pid,
                        peer.uid,
                        limits.frame_timeout
                    );
                    reading = false;
                    closed = Closed::FrameTimeout;
                }
            }
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
                            closing_with = Some((Refusal::Fault(Fault::HelloFirst), Response::Error {
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
                // A frame begun after the last complete one gets the whole frame timeout.
                partial_since = (!reader.read_buffer().is_empty()).then(Instant::now);
                if !burst.is_empty() {
                    queue.extend(authd.answer_all(burst, peer, received).await);
                }
            },
            else => break,
        }
        if let Some(resp) = head_done {
            head = None;
            queue.push_front(Answer::Now(resp));
        }
    }
    match closing_with {
        Some((kind, resp)) => refuse(&authd, peer, kind, resp, &mut writer).await,
        None => closed,
    }
}

type Writer = FramedWrite<tokio::net::unix::OwnedWriteHalf, FrameCodec<Request, Response>>;

/// Queues an answer; one too large for a frame (a listing of many keys) is answered with
/// an error instead, so the client learns why rather than losing its connection.
async fn send_answer(writer: &mut Writer, resp: Response) -> Result<(), CodecError> {
    let request_id = resp.request_id();
    match writer.feed(resp).await {
        Err(why @ (CodecError::Encode(_) | CodecError::TooLarge { .. })) => {
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

/// Why a frame could not be read (the peer's fault, or the socket's), and the error reply.
fn bad_frame(e: &CodecError) -> (Refusal, Response) {
    let refusal = match e {
        CodecError::FrameTooLarge { .. } => Refusal::Fault(Fault::TooLarge),
        CodecError::Malformed(_) => Refusal::Fault(Fault::Malformed),
        CodecError::Truncated { .. } => Refusal::Fault(Fault::Truncated),
        CodecError::Encode(_) | CodecError::TooLarge { .. } | CodecError::Io(_) => Refusal::Io,
    };
    (
        refusal,
        Response::Error {
            request_id: 0,
            kind: ErrorKind::BadFrame,
            message: redact(&e.to_string()).into_owned(),
        },
    )
}

/// Sends a last error reply, counts and logs why the connection is closed.
async fn refuse(authd: &Authd, peer: Peer, refusal: Refusal, resp: Response, writer: &mut Writer) -> Closed {
    let closed = match refusal {
        Refusal::Fault(fault) => {
            authd.metrics.bad_frame(fault);
            fault.closed()
        }
        Refusal::Io => Closed::Io,
    };
    if let Response::Error { message, .. } = &resp {
        tracing::warn!(
            "closing connection of pid {} uid {}: {}: {message}",
            peer.pid,
            peer.uid,
            refusal.as_str()
        );
    }
    let _ = writer.send(resp).await;
    closed
}
