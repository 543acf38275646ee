//! The wire protocol and the key model of futu-authd.
//!
//! A gateway front-end (REST, gRPC, WebSocket, MCP) asks futu-authd over a Unix socket
//! whether a request may go through. Every frame on that socket is a big-endian `u32`
//! length followed by one encoded message (see `docs/PROTOCOL.md`):
//!
//! * [`message`] — the requests, responses and decisions that travel in frames;
//! * [`key`] — the keys.json model ([`key::KeyRecord`], [`key::Limits`], a rotation, a
//!   halt of trading) and its validated value types (scopes, markets, symbols, trade
//!   sides, hours windows, fingerprints);
//! * [`codec`] — the only module that knows the bytes: the framing, the message
//!   encoding, and how key records look on the wire;
//! * [`money`] — exact amounts in 10⁻⁸ units: what a cap is, and an order's value.
//!
//! ```
//! use futu_auth_proto::codec;
//! use futu_auth_proto::message::{Hello, Request, PROTOCOL_VERSION};
//!
//! let hello = Request::Hello(Hello { protocol_version: PROTOCOL_VERSION, client_name: "rest".into() });
//! let bytes = codec::encode_frame(&hello).unwrap();
//! assert_eq!(&bytes[..4], &[0, 0, 0, 7]); // length prefix, big-endian
//! let back: Request = codec::decode_message(&bytes[4..]).unwrap();
//! assert_eq!(back, hello);
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod codec;
pub mod key;
pub mod message;
pub mod money;

pub use codec::{CodecError, FrameCodec, MAX_FRAME_LEN};
pub use key::{
    AccIds, BindOp, DeviationPct, DuplicateWindow, Fingerprint, Halt, HaltReason, HaltTarget, HaltedBy,
    HoursWindow, KeyHash, KeyId, KeyRecord, KeySpec, Limits, Market, Scope, Symbol, Token, TrdSide,
};
pub use message::{
    keys_chunk_end, Admin, AdminOp, Check, CheckScope, Decision, ErrorKind, Hello, Iface, Imported,
    KeyActivity, LimitFigures, Order, OrderEvent, OrderEventKind, OrderEventOutcome, OrderEventRefusal,
    PositionUsage, Reason, Request, Response, Route, SessionCheck, SessionOutcome, SessionSubject, TrdEnv,
    Usage, MAX_ACTIVITY_IDS, MAX_IMPORT_LEN, MAX_KEYS_CHUNK, PROTOCOL_VERSION, PROTOCOL_VERSIONS,
};
