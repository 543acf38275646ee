//! The value types of the pre-trade risk limits (protocol version 6): the account
//! whitelist (`allowed_acc_ids`), the price collar (`max_price_deviation_pct`) and the
//! duplicate-order window (`duplicate_window_ms`). `max_open_orders` is a plain `u32` and
//! `max_position_value` a [`super::Cap`].

use std::fmt;

use serde::{Deserialize, Serialize};

use super::invalid::{invalid, InvalidValue};

/// `allowed_acc_ids`: the broker account ids a key may order on and read; at least one,
/// each once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<u64>", into = "Vec<u64>")]
pub struct AccIds(Vec<u64>);

impl AccIds {
    /// The ids, in keys.json's order.
    pub fn as_slice(&self) -> &[u64] {
        &self.0
    }

    /// Whether `acc_id` is one of them.
    pub fn contains(&self, acc_id: u64) -> bool {
        self.0.contains(&acc_id)
    }
}

impl TryFrom<Vec<u64>> for AccIds {
    type Error = InvalidValue;
    fn try_from(ids: Vec<u64>) -> Result<Self, Self::Error> {
        if ids.is_empty() {
            return Err(invalid(
                "allowed_acc_ids is empty; list at least one account id, or leave the field out for any account",
            ));
        }
        for (i, id) in ids.iter().enumerate() {
            if ids[..i].contains(id) {
                return Err(invalid(format!(
                    "account id {id} is listed twice in allowed_acc_ids"
                )));
            }
        }
        Ok(AccIds(ids))
    }
}

impl From<AccIds> for Vec<u64> {
    fn from(a: AccIds) -> Vec<u64> {
        a.0
    }
}

/// `max_price_deviation_pct`: how far, in percent of the reference price, a limit order's
/// price may be from it; a finite number above zero, at most [`DeviationPct::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct DeviationPct(f64);

impl DeviationPct {
    /// The largest collar: 10 000 % (a price 100 times the reference).
    pub const MAX: f64 = 10_000.0;

    /// The percentage.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for DeviationPct {
    type Error = InvalidValue;
    fn try_from(v: f64) -> Result<Self, Self::Error> {
        if !(v.is_finite() && v > 0.0 && v <= Self::MAX) {
            return Err(invalid(format!(
                "max_price_deviation_pct {v} is not a percentage above 0 and at most {}",
                Self::MAX
            )));
        }
        Ok(DeviationPct(v))
    }
}

impl From<DeviationPct> for f64 {
    fn from(p: DeviationPct) -> f64 {
        p.0
    }
}

impl fmt::Display for DeviationPct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// `duplicate_window_ms`: how long the same order again is refused `duplicate`; at least
/// 1 ms, at most [`DuplicateWindow::MAX_MS`] (an hour), which bounds what the ledger keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct DuplicateWindow(u64);

impl DuplicateWindow {
    /// The longest window: one hour.
    pub const MAX_MS: u64 = 3_600_000;

    /// The window in milliseconds.
    pub fn ms(self) -> u64 {
        self.0
    }

    /// The window in nanoseconds.
    pub fn ns(self) -> u64 {
        self.0 * 1_000_000
    }
}

impl TryFrom<u64> for DuplicateWindow {
    type Error = InvalidValue;
    fn try_from(ms: u64) -> Result<Self, Self::Error> {
        if ms == 0 || ms > Self::MAX_MS {
            return Err(invalid(format!(
                "duplicate_window_ms {ms} is not a window of 1 to {} ms",
                Self::MAX_MS
            )));
        }
        Ok(DuplicateWindow(ms))
    }
}

impl From<DuplicateWindow> for u64 {
    fn from(w: DuplicateWindow) -> u64 {
        w.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_lists_are_non_empty_and_without_duplicates() {
        assert!(AccIds::try_from(vec![281756, 281757]).is_ok());
        let e = AccIds::try_from(vec![]).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let e = AccIds::try_from(vec![1, 2, 1]).unwrap_err();
        assert_eq!(e.to_string(), "account id 1 is listed twice in allowed_acc_ids");
    }

    #[test]
    fn collars_are_finite_percentages_above_zero() {
        assert_eq!(DeviationPct::try_from(5.0).unwrap().get(), 5.0);
        assert!(DeviationPct::try_from(0.01).is_ok());
        for bad in [0.0, -0.0, -1.0, f64::NAN, f64::INFINITY, 10_000.5] {
            assert!(DeviationPct::try_from(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn duplicate_windows_are_positive_and_at_most_an_hour() {
        assert_eq!(DuplicateWindow::try_from(2000).unwrap().ns(), 2_000_000_000);
        assert!(DuplicateWindow::try_from(0).is_err());
        assert!(DuplicateWindow::try_from(3_600_001).is_err());
        assert!(serde_json::from_str::<DuplicateWindow>("1.5").is_err());
        assert!(serde_json::from_str::<DuplicateWindow>("-1").is_err());
    }
}
