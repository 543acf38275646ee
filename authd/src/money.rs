//! Exact money for caps and daily totals.
//!
//! Orders arrive as `f64` quantity and price, and caps are `f64` in keys.json. Summing
//! binary floats drifts (`0.1 + 0.2 > 0.3`), and a trading cap must never be passed by a
//! cent because of it. So every amount is converted to an integer number of
//! 10⁻⁸ units: a number is read as the decimal its shortest text form shows (what a person
//! typed: `0.1` is one tenth), `qty × price` is multiplied exactly, an order's value is
//! rounded up and a cap down, and from then on everything is integer arithmetic.

use std::fmt::{self, Write as _};

/// Decimal places kept: amounts are whole multiples of 10⁻⁸.
pub const SCALE: u32 = 8;

/// An amount of money in 10⁻⁸ units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(pub u128);

/// A fixed buffer for printing an `f64` without allocating; a number too long for it
/// (beyond what any cap or order needs) fails to print and is refused.
struct TextBuf {
    bytes: [u8; 64],
    len: usize,
}

impl Default for TextBuf {
    fn default() -> Self {
        TextBuf {
            bytes: [0; 64],
            len: 0,
        }
    }
}

impl fmt::Write for TextBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dst = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// An exact decimal `m × 10^e` with no trailing zeros in `m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decimal {
    m: u128,
    e: i32,
}

impl Decimal {
    /// The decimal a finite, non-negative `f64` prints as. `None` for NaN, infinities,
    /// negative numbers and numbers too long to hold.
    fn of(v: f64) -> Option<Decimal> {
        if !v.is_finite() || v < 0.0 {
            return None;
        }
        // Rust prints the shortest text that reads back to the same f64, with no exponent.
        let mut buf = TextBuf::default();
        write!(buf, "{v}").ok()?;
        let text = std::str::from_utf8(&buf.bytes[..buf.len]).ok()?;
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        let mut m: u128 = 0;
        let mut e: i32 = -(frac.len() as i32);
        let mut started = false;
        for c in int.bytes().chain(frac.bytes()) {
            let d = u128::from(c - b'0');
            if !started && d == 0 {
                continue;
            }
            started = true;
            m = m.checked_mul(10)?.checked_add(d)?;
        }
        if m == 0 {
            return Some(Decimal { m: 0, e: 0 });
        }
        while m % 10 == 0 {
            m /= 10;
            e += 1;
        }
        Some(Decimal { m, e })
    }

    fn times(self, other: Decimal) -> Option<Decimal> {
        Some(Decimal {
            m: self.m.checked_mul(other.m)?,
            e: self.e + other.e,
        })
    }

    /// To 10⁻⁸ units, rounding a remainder up or down.
    fn to_money(self, round_up: bool) -> Option<Money> {
        let shift = self.e + SCALE as i32;
        if shift >= 0 {
            let factor = 10u128.checked_pow(shift as u32)?;
            return self.m.checked_mul(factor).map(Money);
        }
        let Some(divisor) = 10u128.checked_pow(shift.unsigned_abs()) else {
            // Smaller than 10⁻⁴⁶: nothing, or one unit when rounding up.
            return Some(Money(u128::from(round_up && self.m > 0)));
        };
        let (q, r) = (self.m / divisor, self.m % divisor);
        Some(Money(q + u128::from(round_up && r > 0)))
    }
}

impl Money {
    /// Nothing.
    pub const ZERO: Money = Money(0);

    /// A cap: rounded down, so a cap of `0.123456789` allows `0.12345678` and no more.
    /// `None` when the number is negative, not finite or too large.
    pub fn cap(v: f64) -> Option<Money> {
        Decimal::of(v)?.to_money(false)
    }

    /// The value of an order, `qty × price`, exact and then rounded up to the next 10⁻⁸.
    /// `None` when either is negative, not finite, or the product is too large.
    pub fn order_value(qty: f64, price: f64) -> Option<Money> {
        Decimal::of(qty)?.times(Decimal::of(price)?)?.to_money(true)
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    /// `self − other`, never below zero.
    pub fn saturating_sub(self, other: Money) -> Money {
        Money(self.0.saturating_sub(other.0))
    }

    /// As a float, for logs, audit and metrics (never for decisions).
    pub fn as_f64(self) -> f64 {
        let unit = 10u128.pow(SCALE);
        (self.0 / unit) as f64 + (self.0 % unit) as f64 / unit as f64
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = 10u128.pow(SCALE);
        let (int, frac) = (self.0 / unit, self.0 % unit);
        if frac == 0 {
            write!(f, "{int}")
        } else {
            let frac = format!("{frac:08}");
            write!(f, "{int}.{}", frac.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decimal_sums_do_not_drift() {
        let a = Money::order_value(1.0, 0.1).unwrap();
        let b = Money::order_value(1.0, 0.2).unwrap();
        assert_eq!(a.checked_add(b).unwrap(), Money::cap(0.3).unwrap());
        assert_eq!(Money::order_value(3.0, 0.1).unwrap(), Money::cap(0.3).unwrap());
    }

    #[test]
    fn order_value_is_exact_for_typical_orders() {
        assert_eq!(
            Money::order_value(100.0, 1000.0).unwrap(),
            Money::cap(100000.0).unwrap()
        );
        assert_eq!(Money::order_value(500.0, 388.2).unwrap().to_string(), "194100");
        assert_eq!(Money::order_value(3.0, 187.33).unwrap().to_string(), "561.99");
        assert_eq!(Money::order_value(0.0, 5.0).unwrap(), Money::ZERO);
    }

    #[test]
    fn order_value_rounds_up_and_caps_round_down() {
        // 1e-9 of value is below one unit: it still counts as one unit.
        assert_eq!(Money::order_value(1.0, 0.000000001).unwrap(), Money(1));
        assert_eq!(Money::cap(0.000000001).unwrap(), Money(0));
        assert_eq!(Money::order_value(3.0, 0.333333333).unwrap().to_string(), "1");
        assert_eq!(Money::cap(0.999999999).unwrap().to_string(), "0.99999999");
    }

    #[test]
    fn refuses_what_is_not_an_amount() {
        assert_eq!(Money::cap(-1.0), None);
        assert_eq!(Money::cap(f64::NAN), None);
        assert_eq!(Money::order_value(f64::INFINITY, 1.0), None);
        assert_eq!(Money::order_value(1.0, -0.5), None);
        assert_eq!(Money::cap(f64::MAX), None);
    }

    proptest! {
        #[test]
        fn integer_orders_are_exact(qty in 0u32..1_000_000, cents in 0u64..100_000_000_000u64) {
            let price = cents as f64 / 100.0;
            let v = Money::order_value(f64::from(qty), price).unwrap();
            // The price's shortest decimal is exactly cents/100, so the value is qty × cents cents.
            let want = u128::from(qty) * u128::from(cents) * 10u128.pow(SCALE - 2);
            prop_assert_eq!(v.0, want);
        }

        #[test]
        fn value_never_undercounts_the_float_product(qty in 1e-3f64..1e7, price in 1e-3f64..1e6) {
            let v = Money::order_value(qty, price).unwrap();
            // The exact product is at least the float product less its rounding error.
            prop_assert!(v.as_f64() >= qty * price * (1.0 - 1e-12));
        }
    }
}
