//! Trade sides: an order's direction, as `allowed_trd_sides` lists them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::invalid::{invalid, InvalidValue};

/// An order's direction (Futu's TrdSide).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[allow(non_camel_case_types)]
pub enum TrdSide {
    /// Buy.
    BUY,
    /// Sell what is held.
    SELL,
    /// Sell short.
    SELL_SHORT,
    /// Buy back a short position.
    BUY_BACK,
}

impl TrdSide {
    /// Every side, in wire order.
    pub const ALL: [TrdSide; 4] = [
        TrdSide::BUY,
        TrdSide::SELL,
        TrdSide::SELL_SHORT,
        TrdSide::BUY_BACK,
    ];

    /// The upper-case name, as in keys.json.
    pub fn as_str(self) -> &'static str {
        match self {
            TrdSide::BUY => "BUY",
            TrdSide::SELL => "SELL",
            TrdSide::SELL_SHORT => "SELL_SHORT",
            TrdSide::BUY_BACK => "BUY_BACK",
        }
    }

    /// A bit of its own, for side sets kept as a `u8`.
    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for TrdSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TrdSide {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TrdSide::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| {
            invalid(format!(
                "unknown trade side {s:?} (expected BUY, SELL, SELL_SHORT or BUY_BACK)"
            ))
        })
    }
}
