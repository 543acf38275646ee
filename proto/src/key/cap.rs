//! Caps: the money limits of a key (`max_order_value`, `max_daily_value`).

use serde::{Deserialize, Serialize};

use super::invalid::{invalid, InvalidValue};
use crate::money::Money;

/// A money cap (`max_order_value`, `max_daily_value`): a finite number that is not
/// negative, with at most 8 decimal places, and at most [`crate::money::MAX`] (10²⁰).
/// `-0` is zero and is kept as `0`. What is and is not a cap is decided by
/// [`Money::try_cap`], for keys.json, the wire (GenKey) and futucli alike.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Cap {
    /// The number as given (with `-0` made `0`), so keys.json keeps what was written.
    value: f64,
    /// The same amount, exactly, for decisions.
    money: Money,
}

impl Cap {
    /// The cap as a number.
    pub fn get(self) -> f64 {
        self.value
    }

    /// The cap exactly, in 10⁻⁸ units.
    pub fn money(self) -> Money {
        self.money
    }
}

impl TryFrom<f64> for Cap {
    type Error = InvalidValue;
    fn try_from(v: f64) -> Result<Self, Self::Error> {
        let money = Money::try_cap(v).map_err(|e| invalid(e.to_string()))?;
        // Adding +0.0 turns -0.0 into +0.0 and leaves every other number as it is.
        Ok(Cap {
            value: v + 0.0,
            money,
        })
    }
}

impl From<Cap> for f64 {
    fn from(c: Cap) -> f64 {
        c.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_refuse_negative_and_non_finite_numbers() {
        assert!(Cap::try_from(0.0).is_ok());
        assert!(Cap::try_from(-0.01).is_err());
        assert!(Cap::try_from(f64::NAN).is_err());
        assert!(Cap::try_from(f64::INFINITY).is_err());
    }

    #[test]
    fn a_negative_zero_cap_is_zero_and_written_as_0() {
        let c = Cap::try_from(-0.0).unwrap();
        assert_eq!(c.get().to_bits(), 0.0f64.to_bits());
        assert_eq!(c.money(), Money::ZERO);
        assert_eq!(serde_json::to_string(&c).unwrap(), "0.0");
        let read: Cap = serde_json::from_str("-0").unwrap();
        assert_eq!(read.get().to_bits(), 0.0f64.to_bits());
        let read: Cap = serde_json::from_str("-0.0").unwrap();
        assert_eq!(read.get().to_bits(), 0.0f64.to_bits());
    }

    #[test]
    fn caps_are_what_they_say_or_refused() {
        let c = Cap::try_from(2530.5).unwrap();
        assert_eq!((c.get(), c.money()), (2530.5, Money(253_050_000_000)));
        let e = Cap::try_from(0.123456789).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cap 0.123456789 has more than 8 decimal places; amounts are counted to 0.00000001"
        );
        assert!(Cap::try_from(5e-324).is_err());
        assert!(Cap::try_from(1e300).is_err());
        assert!(Cap::try_from(1e20).is_ok());
    }
}
