//! What can go wrong when asking futu-authd. Every error means: treat the request as
//! denied.

use std::path::PathBuf;
use std::time::Duration;

use futu_auth_proto::{CodecError, ErrorKind};

/// A call that got no decision. Callers must fail closed: treat it as a deny.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be connected (daemon not running, permission denied, …).
    #[error("cannot connect to futu-authd at {path}: {source}")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A recent connection attempt failed; the next is allowed after the backoff.
    #[error("futu-authd at {path} is unavailable; retrying in {retry_in:?}")]
    Unavailable {
        /// The socket.
        path: PathBuf,
        /// Time until the next attempt.
        retry_in: Duration,
    },
    /// No answer within the deadline.
    #[error("futu-authd did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection broke before the answer came.
    #[error("the connection to futu-authd was closed")]
    Closed,
    /// The daemon answered with an error.
    #[error("futu-authd refused the request ({kind}): {message}")]
    Refused {
        /// What kind of error.
        kind: ErrorKind,
        /// The daemon's message.
        message: String,
    },
    /// An admin request from a peer that is not an administrator.
    #[error("futu-authd refused: {0}")]
    Forbidden(String),
    /// Bytes that are not the protocol, or an answer that does not fit the request.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The request cannot be sent: encoded, it would be longer than a frame (64 KiB) — a
    /// token, an order or a symbol far larger than any valid one. Only this call fails.
    #[error("the request is too large to send to futu-authd: {size} bytes, the limit is {max}")]
    TooLarge {
        /// The encoded request's length.
        size: usize,
        /// The frame limit.
        max: usize,
    },
    /// Too many calls are waiting for futu-authd on this connection (it is not
    /// answering); this one was not sent.
    #[error("{waiting} calls are already waiting for futu-authd; this one was not sent")]
    Overloaded {
        /// How many calls wait.
        waiting: usize,
    },
    /// The daemon speaks a protocol version without this request; it was not sent.
    #[error("futu-authd speaks protocol version {speaks}, and {request} needs version {needs}: upgrade futu-authd")]
    TooOld {
        /// The request, e.g. `RotateKey`.
        request: &'static str,
        /// The protocol version that has it.
        needs: u16,
        /// The version the connection agreed on.
        speaks: u16,
    },
}

impl From<CodecError> for ClientError {
    fn from(e: CodecError) -> Self {
        match e {
            // The daemon went away, possibly in the middle of a frame.
            CodecError::Io(_) | CodecError::Truncated { .. } => ClientError::Closed,
            other => ClientError::Protocol(other.to_string()),
        }
    }
}

impl ClientError {
    /// The error of a request that could not be encoded: only that call fails.
    pub(crate) fn from_encode(e: CodecError) -> ClientError {
        match e {
            CodecError::TooLarge { size, max } => ClientError::TooLarge { size, max },
            other => ClientError::Protocol(other.to_string()),
        }
    }

    /// Whether the daemon was not there at all (socket missing or nobody listening), as
    /// opposed to refusing or failing: what `futucli` falls back to editing the file on.
    pub fn is_not_running(&self) -> bool {
        match self {
            ClientError::Connect { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ),
            ClientError::Unavailable { .. } => true,
            _ => false,
        }
    }
}
