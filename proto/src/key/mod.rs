//! The keys.json model: one [`KeyRecord`] per API key, and the validated value types its
//! fields are made of.
//!
//! Every value type checks its text when it is deserialized, so a malformed scope, market,
//! symbol, trade side, hours window, fingerprint or hash is an error at the place it was read
//! (serde_json reports the line). The same types travel on the wire inside admin messages;
//! how they look there is [`crate::codec`]'s business, not this module's.
//!
//! One file per value type (`scope.rs`, `market.rs`, `hours_window.rs`, …); `record.rs`
//! puts them together into [`KeyRecord`], [`Limits`] and [`KeySpec`]; `rotation.rs` is an
//! entry of keys.json's `rotations` ([`Rotation`]), `halt.rs` one of its `halts` ([`Halt`]); `risk.rs` the value types of the pre-trade risk limits; `redact.rs` is the
//! rule that keeps a plaintext out of every message ([`redact()`]), and `invalid.rs` the
//! error every value type returns.

mod cap;
mod fingerprint;
mod halt;
mod hours_window;
mod invalid;
mod key_id;
mod market;
mod record;
mod redact;
mod risk;
mod rotation;
mod scope;
mod symbol;
mod token;
mod trd_side;

pub use cap::Cap;
pub use fingerprint::Fingerprint;
pub(crate) use halt::check_user_name;
pub use halt::{Halt, HaltReason, HaltTarget, HaltedBy, MAX_HALT_REASON};
pub use hours_window::HoursWindow;
pub use invalid::InvalidValue;
pub use key_id::KeyId;
pub use market::Market;
pub use record::{BindOp, KeyRecord, KeySpec, Limits};
pub use redact::redact;
pub use risk::{AccIds, DeviationPct, DuplicateWindow};
pub use rotation::Rotation;
pub use scope::Scope;
pub use symbol::{Symbol, SYMBOL_PREFIXES};
pub use token::{KeyHash, Token};
pub use trd_side::TrdSide;
