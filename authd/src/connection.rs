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
    match handshake(&mut reader, &mut writer, peer, limits, &shutdown).await {
        Handshake::Agreed => {}
        Handshake::Ended(closed) => return closed,
        Handshake::Refused(refusal, resp) => return refuse(&authd, peer, refusal, *resp, &mut writer).await,
    }
    Pipeline {
        authd,
        reader,
        writer,
        peer,
        limits,
        shutdown,
        queue: VecDeque::new(),
        head: None,
        reading: true,
        closing_with: None,
        closed: Closed::ByClient,
        partial_since: None,
    }
    .run()
    .await
}

/// How a connection's Hello went.
enum Handshake {
    /// A version was agreed on; the reader and the writer speak it now.
    Agreed,
    /// The connection ended before a Hello: closed by the client, timed out, shut down,
    /// or the answer could not be written.
    Ended(Closed),
    /// The first message was not a Hello this daemon can answer: the error reply to send
    /// before closing.
    Refused(Refusal, Box<Response>),
}

/// Waits for the Hello (at most `hello_timeout`) and answers it: the connection speaks the
/// agreed protocol version from then on.
async fn handshake(
    reader: &mut Reader,
    writer: &mut Writer,
    peer: Peer,
    limits: Limits,
    shutdown: &CancellationToken,
) -> Handshake {
    let first = tokio::select! {
        _ = shutdown.cancelled() => return Handshake::Ended(Closed::Shutdown),
        f = tokio::time::timeout(limits.hello_timeout, reader.next()) => match f {
            Ok(f) => f,
            Err(_) => {
                tracing::debug!(
                    "closing connection of pid {} uid {}: no Hello within {:?}",
                    peer.pid,
                    peer.uid,
                    limits.hello_timeout
                );
                return Handshake::Ended(Closed::HelloTimeout);
            }
        },
    };
    let hello = match first {
        None => return Handshake::Ended(Closed::ByClient),
        Some(Ok(Request::Hello(h))) => h,
        Some(Ok(other)) => {
            return Handshake::Refused(
                Refusal::Fault(Fault::HelloFirst),
                Box::new(Response::Error {
                    request_id: 0,
                    kind: ErrorKind::HelloFirst,
                    message: format!("{} before Hello; send Hello first", other.name()),
                }),
            )
        }
        Some(Err(e)) => {
            let (refusal, resp) = bad_frame(&e);
            return Handshake::Refused(refusal, Box::new(resp));
        }
    };
    let Some(version) = hello.agreed_version() else {
        return Handshake::Refused(
            Refusal::Fault(Fault::Version),
            Box::new(Response::Error {
                request_id: 0,
                kind: ErrorKind::Version,
                message: format!(
                    "protocol version {} is not spoken here; this futu-authd speaks versions {} to {PROTOCOL_VERSION}",
                    hello.protocol_version, PROTOCOL_VERSIONS[0]
                ),
            }),
        );
    };
    tracing::debug!(peer_pid = peer.pid, peer_uid = peer.uid, client = %redact(&hello.client_name).escape_debug(), version, "hello");
    let ok = Response::HelloOk {
        protocol_version: version,
        server_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    if writer.send(ok).await.is_err() {
        return Handshake::Ended(Closed::Io);
    }
    // Every answer from here on is in the agreed version (requests read the same in all
    // of them).
    writer.encoder_mut().set_version(version);
    reader.decoder_mut().set_version(version);
    Handshake::Agreed
}

/// A future answer that holds back the answers behind it until it is ready.
type Pending = Pin<Box<dyn Future<Output = Response> + Send>>;

/// A connection after its Hello: requests read in bursts, answered in the order they came.
/// Checks are answered as they are read; a request that waits (admin IO, a full audit
/// queue) holds back the answers behind it until it is done, and is polled while it is
/// at the head.
struct Pipeline {
    /// The state every connection shares; answers the bursts.
    authd: Arc<Authd>,
    /// Frames from the client.
    reader: Reader,
    /// Answers to the client.
    writer: Writer,
    /// Who is on the other end (for the answers' audit records and log lines).
    peer: Peer,
    /// How much it may pipeline, how long a frame may take.
    limits: Limits,
    /// Fires at shutdown: stop reading, answer what was read.
    shutdown: CancellationToken,
    /// Answers not written yet, in request order.
    queue: VecDeque<Answer>,
    /// The answer at the head that is still being worked out.
    head: Option<Pending>,
    /// Whether requests are still read (not after the client closed, a bad frame, a
    /// stall or shutdown).
    reading: bool,
    /// The error reply to send last, and why, when the client broke the protocol.
    closing_with: Option<(Refusal, Response)>,
    /// Why the connection ends, unless `closing_with` says otherwise.
    closed: Closed,
    /// Since when a frame has been buffered in part: it must be finished in time. Looked
    /// at on a slow tick, so a quiet connection costs nothing.
    partial_since: Option<Instant>,
}

/// What woke the pipeline up.
enum Event {
    /// The answer at the head is ready.
    HeadReady(Response),
    /// The daemon is shutting down.
    Shutdown,
    /// Time to look for a frame begun too long ago.
    StallTick,
    /// A frame arrived (`None`: the client closed the connection).
    Frame(Option<Result<Request, CodecError>>),
    /// Nothing left to do: not reading, and every answer written.
    Done,
}

impl Pipeline {
    /// Reads and answers until the connection ends; returns why it ended.
    async fn run(mut self) -> Closed {
        let mut stall_tick = tokio::time::interval(self.limits.frame_timeout / 2);
        stall_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.head.is_none() {
                if let Err(closed) = self.write_answers().await {
                    return closed;
                }
            }
            let in_flight = self.queue.len() + usize::from(self.head.is_some());
            let room = self.reading && in_flight < self.limits.max_in_flight;
            let event = tokio::select! {
                biased;
                Some(resp) = OptionFuture::from(self.head.as_mut()), if self.head.is_some() => Event::HeadReady(resp),
                _ = self.shutdown.cancelled(), if self.reading => Event::Shutdown,
                _ = stall_tick.tick(), if room => Event::StallTick,
                frame = self.reader.next(), if room => Event::Frame(frame),
                else => Event::Done,
            };
            match event {
                Event::HeadReady(resp) => {
                    self.head = None;
                    self.queue.push_front(Answer::Now(resp));
                }
                Event::Shutdown => {
                    self.reading = false;
                    self.closed = Closed::Shutdown;
                }
                Event::StallTick => self.look_for_a_stall(),
                Event::Frame(frame) => self.read_burst_driving_head(frame, in_flight).await,
                Event::Done => break,
            }
        }
        match self.closing_with.take() {
            Some((refusal, resp)) => refuse(&self.authd, self.peer, refusal, resp, &mut self.writer).await,
            None => self.closed,
        }
    }

    /// [`Pipeline::read_burst`], polling the head (an answer still being worked out: a
    /// release, an order event, an admin request) meanwhile. The head may be queued on a
    /// lock the burst needs too — the commit, which is fair: once the head is first in its
    /// queue, the burst gets it only after the head has had it, so the head must go on
    /// being polled or neither ever finishes.
    async fn read_burst_driving_head(
        &mut self,
        frame: Option<Result<Request, CodecError>>,
        in_flight: usize,
    ) {
        let mut head = self.head.take();
        let mut head_answer = None;
        {
            let mut burst = std::pin::pin!(self.read_burst(frame, in_flight));
            loop {
                tokio::select! {
                    biased;
                    Some(resp) = OptionFuture::from(head.as_mut()), if head.is_some() => {
                        head = None;
                        head_answer = Some(resp);
                    }
                    () = &mut burst => break,
                }
            }
        }
        match head_answer {
            // The head's answer goes first: it was asked before the burst.
            Some(resp) => self.queue.push_front(Answer::Now(resp)),
            None => self.head = head,
        }
    }

    /// Writes the answers that are ready, up to the first that is not (which becomes the
    /// head), in one flush. `Err`: the socket failed.
    async fn write_answers(&mut self) -> Result<(), Closed> {
        let mut fed = false;
        while let Some(answer) = self.queue.pop_front() {
            match answer {
                Answer::Now(resp) => {
                    if send_answer(&mut self.writer, resp).await.is_err() {
                        return Err(Closed::Io);
                    }
                    fed = true;
                }
                Answer::Later(f) => {
                    self.head = Some(f);
                    break;
                }
            }
        }
        if fed && self.writer.flush().await.is_err() {
            return Err(Closed::Io);
        }
        Ok(())
    }

    /// Stops reading a connection whose frame, begun over `frame_timeout` ago, is still
    /// not complete.
    fn look_for_a_stall(&mut self) {
        if self.reader.read_buffer().is_empty() {
            self.partial_since = None;
        } else if self
            .partial_since
            .is_none_or(|t| t.elapsed() < self.limits.frame_timeout)
        {
            self.partial_since.get_or_insert_with(Instant::now);
        } else {
            tracing::warn!(
                "closing connection of pid {} uid {}: a frame begun over {:?} ago is still not complete",
                self.peer.pid,
                self.peer.uid,
                self.limits.frame_timeout
            );
            self.reading = false;
            self.closed = Closed::FrameTimeout;
        }
    }

    /// Takes `frame` and every other already buffered (up to the in-flight limit; `in_flight`
    /// answers are owed already), and queues their answers, decided together.
    async fn read_burst(&mut self, frame: Option<Result<Request, CodecError>>, in_flight: usize) {
        let received = Instant::now();
        let mut burst = Vec::new();
        let mut next = Some(frame);
        while let Some(frame) = next.take() {
            match frame {
                None => self.reading = false,
                Some(Ok(Request::Hello(_))) => {
                    self.reading = false;
                    self.closing_with = Some((
                        Refusal::Fault(Fault::HelloFirst),
                        Response::Error {
                            request_id: 0,
                            kind: ErrorKind::HelloFirst,
                            message: "a second Hello on one connection".into(),
                        },
                    ));
                }
                Some(Ok(req)) => burst.push(req),
                Some(Err(e)) => {
                    self.reading = false;
                    self.closing_with = Some(bad_frame(&e));
                }
            }
            if self.reading && in_flight + burst.len() < self.limits.max_in_flight {
                next = self.reader.next().now_or_never();
            }
        }
        // A frame begun after the last complete one gets the whole frame timeout.
        self.partial_since = (!self.reader.read_buffer().is_empty()).then(Instant::now);
        if !burst.is_empty() {
            let version = self.writer.encoder().version();
            let answers = self.authd.answer_all(burst, self.peer, version, received).await;
            self.queue.extend(answers);
        }
    }
}

type Reader = FramedRead<tokio::net::unix::OwnedReadHalf, FrameCodec<Request, Response>>;
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
