//! The bytes. This is the only module that calls bincode: a frame is a big-endian `u32`
//! length and then one message in bincode 2's standard configuration (variable-length
//! integers, little-endian where fixed width). Swapping the encoding touches this file only.

use std::io;
use std::marker::PhantomData;

use bytes::{Buf, BufMut, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::codec::{Decoder, Encoder};

/// The largest frame body either side accepts, in bytes (64 KiB).
pub const MAX_FRAME_LEN: usize = 64 * 1024;

const CONFIG: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_FRAME_LEN>,
> = bincode::config::standard().with_limit::<MAX_FRAME_LEN>();

/// What can go wrong between bytes and messages.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The length prefix announced more than [`MAX_FRAME_LEN`]; nothing of that size was
    /// allocated.
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
    /// A message could not be encoded (it would not fit in a frame).
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Encodes one message body (no length prefix).
pub fn encode_message<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    let body = bincode::serde::encode_to_vec(msg, CONFIG).map_err(|e| CodecError::Encode(e.to_string()))?;
    if body.len() > MAX_FRAME_LEN {
        return Err(CodecError::Encode(format!(
            "{} bytes is over the {MAX_FRAME_LEN}-byte frame limit",
            body.len()
        )));
    }
    Ok(body)
}

/// Decodes one message body; trailing bytes are an error.
pub fn decode_message<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
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

/// Encodes a whole frame: length prefix and body.
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    let body = encode_message(msg)?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// A tokio-util codec that reads messages of type `In` and writes messages of type `Out`
/// (the daemon reads [`crate::Request`] and writes [`crate::Response`]; a client the other
/// way round).
///
/// It frames by hand rather than through `LengthDelimitedCodec` so that an announced
/// length over the limit is a typed [`CodecError::FrameTooLarge`], raised from the four
/// prefix bytes alone, before anything of that size is reserved.
#[derive(Debug)]
pub struct FrameCodec<In, Out> {
    _types: PhantomData<fn(Out) -> In>,
}

impl<In, Out> Default for FrameCodec<In, Out> {
    fn default() -> Self {
        FrameCodec { _types: PhantomData }
    }
}

impl<In, Out> FrameCodec<In, Out> {
    /// A codec with the 64 KiB frame limit.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<In: DeserializeOwned, Out> Decoder for FrameCodec<In, Out> {
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
        decode_message(&body).map(Some)
    }
}

impl<In, Out: Serialize> Encoder<Out> for FrameCodec<In, Out> {
    type Error = CodecError;

    fn encode(&mut self, msg: Out, dst: &mut BytesMut) -> Result<(), CodecError> {
        let body = encode_message(&msg)?;
        dst.reserve(4 + body.len());
        dst.put_u32(body.len() as u32);
        dst.extend_from_slice(&body);
        Ok(())
    }
}
