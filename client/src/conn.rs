//! One connection to futu-authd: the socket, a writer task and a reader task, and the
//! callers waiting for their answers.
//!
//! A request is encoded by its caller, before it is queued: one that cannot become a
//! frame (a token or an order too large for 64 KiB) fails that call alone and never
//! reaches the writer. The writer only writes bytes. When either task stops — the daemon
//! closed, a write failed, an answer could not be read, the client was dropped — the
//! other stops too, so the socket is closed whole and the daemon sees the connection go;
//! every caller still waiting is told at once.
//!
//! An order the daemon allowed after its caller gave up (the deadline passed, or the
//! caller's future was dropped) was counted but will never be placed: its ticket is
//! released on the same connection, so that the ledger holds exactly the orders the
//! gateway placed, and the audit trail shows the release.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futu_auth_proto::codec::encode_frame_v;
use futu_auth_proto::{
    CodecError, Decision, ErrorKind, FrameCodec, Hello, Request, Response, PROTOCOL_VERSIONS,
};
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{Framed, FramedParts};
use tokio_util::sync::CancellationToken;

use crate::error::ClientError;

/// Frames queued for the connection's writer; callers wait past this.
const QUEUE: usize = 1024;

/// The most calls that may wait for an answer on one connection (answered, timed out or
/// abandoned ones included until their answer comes). Past it a call fails at once
/// rather than growing the table while the daemon does not answer.
pub(crate) const MAX_WAITING: usize = 65_536;

/// The most bytes the writer gathers into one write.
const WRITE_BATCH: usize = 256 * 1024;

/// What the connection's tasks and its callers share.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Orders allowed after their caller gave up, whose ticket was released.
    pub(crate) late_releases: AtomicU64,
}

type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<Response>>>>;

/// A live connection: encoded requests go to its writer task, answers come back by
/// request id.
pub(crate) struct Conn {
    /// Frames for the writer.
    tx: mpsc::Sender<Vec<u8>>,
    /// The protocol version agreed in Hello: requests newer than it are not sent.
    pub(crate) version: u16,
    /// Callers waiting for an answer, by request id.
    waiting: Waiting,
    /// Why the reader stopped, when it was not a plain close: a frame it could not decode
    /// is a protocol error, never reported as a closed connection.
    failure: Arc<Mutex<Option<String>>>,
    /// Cancelled when either task stops: the connection is gone.
    closed: CancellationToken,
    /// Releases what callers who gave up were allowed.
    releaser: Arc<Releaser>,
}

impl Conn {
    /// Whether the connection can still carry requests.
    pub(crate) fn is_alive(&self) -> bool {
        !self.closed.is_cancelled()
    }

    /// The error for a call whose answer will not come.
    pub(crate) fn lost(&self) -> ClientError {
        match lock(&self.failure).clone() {
            Some(why) => ClientError::Protocol(why),
            None => ClientError::Closed,
        }
    }

    /// Sends `req` (request id `id`) and waits for its answer. The request is encoded
    /// here: one that cannot be a frame fails this call alone. Dropping the future before
    /// the answer is fine: an order allowed meanwhile is released.
    pub(crate) async fn ask(self: &Arc<Self>, id: u64, req: &Request) -> Result<Response, ClientError> {
        let frame = encode_frame_v(req, self.version).map_err(ClientError::from_encode)?;
        let answer = self.expect(id)?;
        if self.tx.send(frame).await.is_err() {
            return Err(self.lost());
        }
        answer.wait().await
    }

    /// Registers a caller waiting for the answer to request `id`.
    fn expect(self: &Arc<Self>, id: u64) -> Result<Answer, ClientError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut waiting = lock(&self.waiting);
            if waiting.len() >= MAX_WAITING {
                return Err(ClientError::Overloaded {
                    waiting: waiting.len(),
                });
            }
            waiting.insert(id, tx);
        }
        if !self.is_alive() {
            // The reader may have cleared the table just before the insert.
            lock(&self.waiting).remove(&id);
            return Err(self.lost());
        }
        Ok(Answer {
            conn: Arc::clone(self),
            rx: Some(rx),
        })
    }

    /// An answer nobody will read (see [`Releaser`]).
    fn unclaimed(&self, resp: Response) {
        self.releaser.release(&self.tx, resp);
    }
}

/// Releases the orders allowed after their caller gave up: such an order was counted but
/// will not be placed.
struct Releaser {
    /// The connection's protocol version, to encode the Release in.
    version: u16,
    /// Where the request ids of these releases come from (the client's own counter).
    next_id: Arc<AtomicU64>,
    /// Shared with the client, for its statistics.
    counters: Arc<Counters>,
}

impl Releaser {
    /// Sends a Release for the ticket of `resp`, if it allowed an order. Its answer has no
    /// waiter and is dropped by the reader; the audit trail has it.
    fn release(&self, tx: &mpsc::Sender<Vec<u8>>, resp: Response) {
        let Response::Decision {
            decision: Decision::Allow {
                ticket: Some(ticket), ..
            },
            ..
        } = resp
        else {
            return;
        };
        let request_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let Ok(frame) = encode_frame_v(&Request::Release { request_id, ticket }, self.version) else {
            return;
        };
        self.counters.late_releases.fetch_add(1, Ordering::Relaxed);
        match tx.try_send(frame) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(frame)) => {
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    let tx = tx.clone();
                    rt.spawn(async move { tx.send(frame).await });
                }
            }
        }
    }
}

/// One caller's wait for its answer. Dropped with an answer delivered but not read (the
/// caller's future was dropped at that moment), it hands the answer back to the
/// connection, which releases an order it allowed.
struct Answer {
    conn: Arc<Conn>,
    rx: Option<oneshot::Receiver<Response>>,
}

impl Answer {
    async fn wait(mut self) -> Result<Response, ClientError> {
        let rx = self.rx.as_mut().expect("an answer is waited for once");
        let answer = rx.await;
        self.rx = None;
        answer.map_err(|_| self.conn.lost())
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if let Ok(resp) = rx.try_recv() {
                self.conn.unclaimed(resp);
            }
        }
    }
}

/// Connects, says Hello, and starts the connection's reader and writer tasks.
///
/// Hello offers the newest protocol version; a daemon that does not speak it refuses with
/// Error `version` and closes, and the next older version is offered on a new connection
/// (a daemon of version 1 is served so: its denies have no `retry_after_ms` or `limit`).
pub(crate) async fn open(
    path: &Path,
    client_name: &str,
    next_id: Arc<AtomicU64>,
    counters: Arc<Counters>,
) -> Result<Conn, ClientError> {
    let mut versions = PROTOCOL_VERSIONS.iter().rev().copied().peekable();
    let framed = loop {
        let version = versions.next().expect("PROTOCOL_VERSIONS is not empty");
        match hello(path, client_name, version).await {
            Err(ClientError::Refused {
                kind: ErrorKind::Version,
                ..
            }) if versions.peek().is_some() => continue,
            other => break other?,
        }
    };
    let version = framed.codec().version();
    let parts = framed.into_parts();
    let (read, write) = parts.io.into_split();
    let mut read_parts = FramedParts::new::<Request>(read, parts.codec);
    read_parts.read_buf = parts.read_buf;
    let reader = Framed::from_parts(read_parts);

    let (tx, rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    let conn = Conn {
        tx,
        version,
        waiting: Arc::default(),
        failure: Arc::default(),
        closed: CancellationToken::new(),
        releaser: Arc::new(Releaser {
            version,
            next_id,
            counters,
        }),
    };
    tokio::spawn(write_loop(write, rx, conn.closed.clone()));
    tokio::spawn(read_loop(
        reader,
        Arc::clone(&conn.waiting),
        Arc::clone(&conn.failure),
        conn.closed.clone(),
        Unclaimed {
            tx: conn.tx.downgrade(),
            releaser: Arc::clone(&conn.releaser),
        },
    ));
    Ok(conn)
}

/// What the reader needs to release an order whose caller gave up: the connection's
/// writer queue (weakly: a client that was dropped lets its connection close).
struct Unclaimed {
    tx: mpsc::WeakSender<Vec<u8>>,
    releaser: Arc<Releaser>,
}

impl Unclaimed {
    fn release(&self, resp: Response) {
        if let Some(tx) = self.tx.upgrade() {
            self.releaser.release(&tx, resp);
        }
    }
}

type Reader = Framed<OwnedReadHalf, FrameCodec<Response, Request>>;

/// Hands each answer to its caller until the connection ends, then tells everyone still
/// waiting and stops the writer.
async fn read_loop(
    mut reader: Reader,
    waiting: Waiting,
    failure: Arc<Mutex<Option<String>>>,
    closed: CancellationToken,
    unclaimed: Unclaimed,
) {
    loop {
        let next = tokio::select! {
            () = closed.cancelled() => break,
            next = reader.next() => next,
        };
        match next {
            Some(Ok(resp)) => {
                let waiter = lock(&waiting).remove(&resp.request_id());
                // No waiter: the answer to the connection's own release, or to a caller
                // whose wait ended with its connection's table.
                if let Some(w) = waiter {
                    if let Err(resp) = w.send(resp) {
                        unclaimed.release(resp);
                    }
                }
            }
            Some(Err(CodecError::Io(_))) | None => break,
            Some(Err(e)) => {
                *lock(&failure) = Some(format!("an answer from futu-authd could not be read: {e}"));
                break;
            }
        }
    }
    closed.cancel();
    lock(&waiting).clear();
}

/// Writes the queued frames, as many as are ready in one write, until the queue closes
/// or a write fails; then closes the connection whole.
async fn write_loop(mut write: OwnedWriteHalf, mut rx: mpsc::Receiver<Vec<u8>>, closed: CancellationToken) {
    let mut batch = Vec::new();
    loop {
        let first = tokio::select! {
            () = closed.cancelled() => break,
            frame = rx.recv() => frame,
        };
        let Some(first) = first else { break };
        batch.clear();
        batch.extend_from_slice(&first);
        while batch.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if write.write_all(&batch).await.is_err() {
            break;
        }
    }
    closed.cancel();
    // Dropping the write half shuts the socket's sending side; the reader drops the other.
}

type Connection = Framed<UnixStream, FrameCodec<Response, Request>>;

/// Connects and says Hello offering protocol `version`; returns the connection set to the
/// version the daemon answered with.
async fn hello(path: &Path, client_name: &str, version: u16) -> Result<Connection, ClientError> {
    let stream = UnixStream::connect(path)
        .await
        .map_err(|source| ClientError::Connect {
            path: path.to_owned(),
            source,
        })?;
    let mut framed = Framed::new(stream, FrameCodec::<Response, Request>::with_version(version));
    framed
        .send(Request::Hello(Hello {
            protocol_version: version,
            client_name: client_name.to_owned(),
        }))
        .await?;
    match framed.next().await {
        // The daemon may answer with an older version it speaks; never a newer one.
        Some(Ok(Response::HelloOk { protocol_version, .. }))
            if protocol_version <= version && PROTOCOL_VERSIONS.contains(&protocol_version) =>
        {
            framed.codec_mut().set_version(protocol_version);
            Ok(framed)
        }
        Some(Ok(Response::Error { kind, message, .. })) => Err(ClientError::Refused { kind, message }),
        Some(Ok(other)) => Err(crate::client::unexpected(other)),
        Some(Err(e)) => Err(e.into()),
        None => Err(ClientError::Closed),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
