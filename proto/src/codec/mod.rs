//! The bytes. This is the only module that calls bincode: a frame is a big-endian `u32`
//! length and then one message in bincode 2's standard configuration (variable-length
//! integers, little-endian where fixed width). Swapping the encoding touches this module
//! only: this file frames and encodes messages, `record.rs` says how the key records
//! inside admin messages are laid out (every field, where keys.json leaves some out),
//! `v1.rs` how a Deny looks to a peer that speaks protocol version 1, `v4.rs` which
//! reason (and which figures and scope) a peer is told for one its version does not have,
//! and `v5.rs` how a Check and the key records look to a peer older than version 6.
//!
//! The message types' own layout is the newest version's ([`PROTOCOL_VERSION`]): that is
//! what [`encode_message`] and [`decode_message`] write and read. A connection speaks the
//! version agreed on at Hello; [`encode_message_v`], [`decode_message_v`] and a
//! [`FrameCodec`] set to it ([`FrameCodec::set_version`]) write and read that version's.

use std::io;
use std::marker::PhantomData;

use bytes::{Buf, BufMut, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::codec::{Decoder, Encoder};

pub(crate) mod record;
mod v1;
mod v4;
mod v5;

pub use record::Wire;
pub use v4::reason_told_in;

use crate::message::{Request, Response, PROTOCOL_VERSION};

/// The largest frame body either side accepts, in bytes on the wire (64 KiB): the body
/// length a frame's prefix announces, for every message in both directions.
pub const MAX_FRAME_LEN: usize = 64 * 1024;

/// bincode's own limit, which is only an allocation guard. The frame limit is
/// [`MAX_FRAME_LEN`] wire bytes, checked on the body length; bincode's `Limit` counts
/// something else: the memory each decoded value *claims* (bincode 2.0.1,
/// `Decoder::claim_bytes_read`). On the serde path the claims are: 1 for a `u8`, a
/// `bool` or an `Option` tag (1 wire byte); 2, 4 and 8 for a varint `u16`, `u32` (enum
/// variant indices) and `u64`/`usize` (sequence and string lengths), which take at least
/// 1 wire byte; 8 for an `f64` (8 wire bytes); and a string's length in bytes, claimed
/// before it is allocated, for the same number of wire bytes. So a body that decodes
/// claims at most 8 × its wire bytes, and no valid body of at most 64 KiB can reach
/// 8 × 64 KiB. (No field of this protocol is a 128-bit integer, the only type that claims
/// 16 per wire byte.) What the limit still does: a lying length prefix inside a body can
/// never make bincode allocate more than 512 KiB for a string; a sequence's length is
/// not claimed on the serde path, and serde itself preallocates at most 1 MiB for it
/// (`size_hint::cautious`), every element after that being read from the body.
const CLAIM_LIMIT: usize = 8 * MAX_FRAME_LEN;

const CONFIG: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<CLAIM_LIMIT>,
> = bincode::config::standard().with_limit::<CLAIM_LIMIT>();

/// What can go wrong between bytes and messages.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The length prefix announced more than [`MAX_FRAME_LEN`] (nothing of that size was
    /// allocated), or a body handed to [`decode_message`] is longer than that.
    #[error("frame of {announced} bytes announced, the limit is {max}")]
    FrameTooLarge {
        /// The length the peer announced.
        announced: u64,
        /// [`MAX_FRAME_LEN`].
        max: usize,
    },
    /// The frame body is not a valid message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// A message's body would be longer than [`MAX_FRAME_LEN`]: it cannot be sent.
    #[error("cannot encode message: {size} bytes is over the {max}-byte frame limit")]
    TooLarge {
        /// The body's length in bytes.
        size: usize,
        /// [`MAX_FRAME_LEN`].
        max: usize,
    },
    /// The stream ended inside a frame: the peer closed after sending part of one.
    #[error("the stream ended inside a frame ({buffered} bytes of it received)")]
    Truncated {
        /// How many bytes of the unfinished frame (length prefix included) were received.
        buffered: usize,
    },
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Encodes one message body (no length prefix), in the newest protocol version's layout;
/// a body over [`MAX_FRAME_LEN`] bytes is a [`CodecError::TooLarge`] error.
pub fn encode_message<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    let body = bincode::serde::encode_to_vec(msg, CONFIG).map_err(|e| CodecError::Encode(e.to_string()))?;
    if body.len() > MAX_FRAME_LEN {
        return Err(CodecError::TooLarge {
            size: body.len(),
            max: MAX_FRAME_LEN,
        });
    }
    Ok(body)
}

/// Decodes one message body, in the newest protocol version's layout; trailing bytes are
/// an error, and so is a body over [`MAX_FRAME_LEN`] bytes ([`CodecError::FrameTooLarge`]).
pub fn decode_message<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
    if body.len() > MAX_FRAME_LEN {
        return Err(CodecError::FrameTooLarge {
            announced: body.len() as u64,
            max: MAX_FRAME_LEN,
        });
    }
    let (msg, used) =
        bincode::serde::decode_from_slice(body, CONFIG).map_err(|e| CodecError::Malformed(e.to_string()))?;
    if used != body.len() {
        return Err(CodecError::Malformed(format!(
            "{} trailing bytes after the message",
            body.len() - used
        )));
    }
    Ok(msg)
}

/// Encodes a whole frame, length prefix and body, in the newest protocol version's layout.
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    Ok(framed(encode_message(msg)?))
}

/// A message whose bytes may depend on the protocol version a connection speaks: the
/// requests (a `Check` gained two fields, and a `Limits` five, in version 6) and the
/// responses (a `Decision::Deny` gained two fields in version 2; a reason, `halted`, came
/// in version 5 and five more in version 6, which an older peer is told as the nearest it
/// has; key records carry five more limits from version 6).
///
/// A version is read as the newest this crate speaks at or below it: 0 and 1 are
/// version 1's layout, 2 to 5 version 2's but for the changes of the versions after it.
pub trait Versioned: Serialize + DeserializeOwned {
    /// The body a peer speaking `version` reads.
    fn encode_for(&self, version: u16) -> Result<Vec<u8>, CodecError>;

    /// The message in a body a peer speaking `version` wrote. What that version does not
    /// carry is left empty (a version-1 Deny has no `retry_after_ms` and no `limit`).
    fn decode_from(body: &[u8], version: u16) -> Result<Self, CodecError>;
}

impl Versioned for Request {
    fn encode_for(&self, version: u16) -> Result<Vec<u8>, CodecError> {
        if version < v5::RISK_SINCE {
            v5::encode_request(self, version)
        } else {
            encode_message(self)
        }
    }

    fn decode_from(body: &[u8], version: u16) -> Result<Self, CodecError> {
        if version < v5::RISK_SINCE {
            v5::decode_request(body, version)
        } else {
            decode_message(body)
        }
    }
}

impl Versioned for Response {
    fn encode_for(&self, version: u16) -> Result<Vec<u8>, CodecError> {
        let told = v4::told_in(self, version);
        if version < v5::RISK_SINCE {
            if let Some(body) = v5::encode_records(&told, version)? {
                return Ok(body);
            }
        }
        if version < 2 {
            v1::encode_response(&told)
        } else {
            encode_message(&told)
        }
    }

    fn decode_from(body: &[u8], version: u16) -> Result<Self, CodecError> {
        let old_records = if version < v5::RISK_SINCE {
            v5::decode_records(body)?
        } else {
            None
        };
        let resp = if let Some(resp) = old_records {
            resp
        } else if version < 2 {
            v1::decode_response(body)?
        } else {
            decode_message(body)?
        };
        v4::read_in(resp, version)
    }
}

/// Encodes one message body (no length prefix) as a peer speaking `version` reads it.
pub fn encode_message_v<T: Versioned>(msg: &T, version: u16) -> Result<Vec<u8>, CodecError> {
    msg.encode_for(version)
}

/// Decodes one message body a peer speaking `version` wrote.
pub fn decode_message_v<T: Versioned>(body: &[u8], version: u16) -> Result<T, CodecError> {
    T::decode_from(body, version)
}

/// Encodes a whole frame, length prefix and body, as a peer speaking `version` reads it.
pub fn encode_frame_v<T: Versioned>(msg: &T, version: u16) -> Result<Vec<u8>, CodecError> {
    Ok(framed(msg.encode_for(version)?))
}

/// The length prefix, then `body`.
fn framed(body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// A tokio-util codec that reads messages of type `In` and writes messages of type `Out`
/// (the daemon reads [`crate::Request`] and writes [`crate::Response`]; a client the other
/// way round), in the protocol version the connection speaks.
///
/// A new codec speaks [`PROTOCOL_VERSION`]; Hello, HelloOk and Error look the same in
/// every version, so each side sets the version agreed on once Hello is answered
/// ([`FrameCodec::set_version`]).
///
/// It frames by hand rather than through `LengthDelimitedCodec` so that an announced
/// length over the limit is a typed [`CodecError::FrameTooLarge`], raised from the four
/// prefix bytes alone, before anything of that size is reserved.
#[derive(Debug)]
pub struct FrameCodec<In, Out> {
    /// The protocol version of the messages read and written.
    version: u16,
    _types: PhantomData<fn(Out) -> In>,
}

impl<In, Out> Default for FrameCodec<In, Out> {
    fn default() -> Self {
        FrameCodec::with_version(PROTOCOL_VERSION)
    }
}

impl<In, Out> FrameCodec<In, Out> {
    /// A codec with the 64 KiB frame limit, speaking [`PROTOCOL_VERSION`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A codec with the 64 KiB frame limit, speaking protocol `version`.
    pub fn with_version(version: u16) -> Self {
        FrameCodec {
            version,
            _types: PhantomData,
        }
    }

    /// The protocol version it reads and writes.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// Reads and writes protocol `version` from now on (the version agreed on at Hello).
    pub fn set_version(&mut self, version: u16) {
        self.version = version;
    }
}

impl<In: Versioned, Out> Decoder for FrameCodec<In, Out> {
    type Item = In;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, CodecError> {
        let Some(prefix) = src.get(..4) else {
            return Ok(None);
        };
        let announced = u32::from_be_bytes(prefix.try_into().expect("four bytes")) as usize;
        if announced > MAX_FRAME_LEN {
            return Err(CodecError::FrameTooLarge {
                announced: announced as u64,
                max: MAX_FRAME_LEN,
            });
        }
        if src.len() < 4 + announced {
            src.reserve(4 + announced - src.len());
            return Ok(None);
        }
        src.advance(4);
        let body = src.split_to(announced);
        In::decode_from(&body, self.version).map(Some)
    }

    /// At the end of the stream, bytes of an unfinished frame are a typed
    /// [`CodecError::Truncated`] (tokio-util's default is an untyped `io::Error`), so the
    /// daemon can count it as a bad frame.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<In>, CodecError> {
        match self.decode(src)? {
            Some(msg) => Ok(Some(msg)),
            None if src.is_empty() => Ok(None),
            None => Err(CodecError::Truncated { buffered: src.len() }),
        }
    }
}

impl<In, Out: Versioned> Encoder<Out> for FrameCodec<In, Out> {
    type Error = CodecError;

    fn encode(&mut self, msg: Out, dst: &mut BytesMut) -> Result<(), CodecError> {
        let body = msg.encode_for(self.version)?;
        dst.reserve(4 + body.len());
        dst.put_u32(body.len() as u32);
        dst.extend_from_slice(&body);
        Ok(())
    }
}
