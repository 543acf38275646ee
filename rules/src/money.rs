//! Exact money for caps, order values and daily totals: the protocol crate's
//! [`futu_auth_proto::money`], re-exported so that the rules name it `crate::money`. Caps
//! are validated where they are read (keys.json, GenKey, futucli) by that one module, so
//! every `Cap` the rules see is already exact.

pub use futu_auth_proto::money::*;
