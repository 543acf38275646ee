//! Markets: what `allowed_markets` whitelists and an order names, and which symbols each
//! one trades.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::invalid::{invalid, InvalidValue};

/// A trading market (Futu's TrdMarket), as whitelisted by `allowed_markets` and named by an
/// order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Market {
    /// Hong Kong.
    HK,
    /// United States.
    US,
    /// Mainland China A-shares.
    CN,
    /// Hong Kong Stock Connect to mainland China.
    HKCC,
    /// Futures.
    FUTURES,
    /// Singapore.
    SG,
    /// Japan.
    JP,
    /// Australia.
    AU,
    /// Malaysia.
    MY,
    /// Canada.
    CA,
}

impl Market {
    /// Every market, in wire order.
    pub const ALL: [Market; 10] = [
        Market::HK,
        Market::US,
        Market::CN,
        Market::HKCC,
        Market::FUTURES,
        Market::SG,
        Market::JP,
        Market::AU,
        Market::MY,
        Market::CA,
    ];

    /// The upper-case name, as in keys.json.
    pub fn as_str(self) -> &'static str {
        match self {
            Market::HK => "HK",
            Market::US => "US",
            Market::CN => "CN",
            Market::HKCC => "HKCC",
            Market::FUTURES => "FUTURES",
            Market::SG => "SG",
            Market::JP => "JP",
            Market::AU => "AU",
            Market::MY => "MY",
            Market::CA => "CA",
        }
    }

    /// A bit of its own, for market sets kept as a `u16`.
    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }

    /// Whether a symbol whose quote-market prefix is `prefix` (the part before the first dot
    /// of `HK.00700`) can be traded in this market. An order whose symbol does not belong to
    /// its market is malformed: otherwise a market whitelist could be walked around by
    /// naming an allowed market for a foreign symbol.
    pub fn trades_prefix(self, prefix: &str) -> bool {
        match self {
            Market::HK => prefix == "HK",
            Market::US => prefix == "US",
            Market::CN | Market::HKCC => prefix == "SH" || prefix == "SZ",
            Market::FUTURES => matches!(prefix, "HK" | "US" | "SG" | "JP"),
            Market::SG => prefix == "SG",
            Market::JP => prefix == "JP",
            Market::AU => prefix == "AU",
            Market::MY => prefix == "MY",
            Market::CA => prefix == "CA",
        }
    }
}

impl fmt::Display for Market {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Market {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Market::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| {
            invalid(format!(
                "unknown market {s:?} (expected one of HK, US, CN, HKCC, FUTURES, SG, JP, AU, MY, CA)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn market_prefix_compatibility_fails_closed() {
        assert!(Market::HK.trades_prefix("HK"));
        assert!(!Market::HK.trades_prefix("US"));
        assert!(Market::CN.trades_prefix("SH"));
        assert!(Market::HKCC.trades_prefix("SZ"));
        assert!(!Market::US.trades_prefix(""));
    }
}
