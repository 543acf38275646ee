//! Symbols: security codes with their quote-market prefix, as `allowed_symbols` lists them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::invalid::{invalid, InvalidValue};

/// The quote-market prefixes a symbol may start with.
pub const SYMBOL_PREFIXES: [&str; 9] = ["HK", "US", "SH", "SZ", "SG", "JP", "AU", "MY", "CA"];

/// A security code with its quote-market prefix, e.g. `HK.00700`, `US.AAPL`, `US.BRK.B`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Symbol(String);

impl Symbol {
    /// The full text, e.g. `HK.00700`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The quote-market prefix, e.g. `HK`.
    pub fn prefix(&self) -> &str {
        self.0.split_once('.').map(|(p, _)| p).unwrap_or("")
    }
}

impl Symbol {
    /// Checks symbol text without keeping it; returns its quote-market prefix.
    pub fn validate(s: &str) -> Result<&str, InvalidValue> {
        let bad = || {
            invalid(format!(
                "malformed symbol {s:?} (expected MARKET.CODE such as HK.00700 or US.AAPL, MARKET one of {})",
                SYMBOL_PREFIXES.join(", ")
            ))
        };
        let (prefix, code) = s.split_once('.').ok_or_else(bad)?;
        let code_ok = !code.is_empty()
            && code.len() <= 32
            && code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if SYMBOL_PREFIXES.contains(&prefix) && code_ok {
            Ok(prefix)
        } else {
            Err(bad())
        }
    }
}

impl FromStr for Symbol {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Symbol::validate(s).map(|_| Symbol(s.to_owned()))
    }
}

impl TryFrom<String> for Symbol {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Symbol> for String {
    fn from(s: Symbol) -> String {
        s.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_need_a_known_prefix_and_a_code() {
        for ok in ["HK.00700", "US.AAPL", "US.BRK.B", "SH.600519", "SZ.000001"] {
            assert_eq!(ok.parse::<Symbol>().unwrap().as_str(), ok);
        }
        for bad in ["AAPL", "XX.AAPL", "US.", ".AAPL", "US.AA PL", "us.AAPL"] {
            assert!(bad.parse::<Symbol>().is_err(), "{bad} should be refused");
        }
        assert_eq!("US.BRK.B".parse::<Symbol>().unwrap().prefix(), "US");
    }
}
