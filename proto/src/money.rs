//! Exact money for caps, order values and daily totals.
//!
//! Orders arrive as `f64` quantity and price, and caps are `f64` in keys.json and on the
//! wire. Summing binary floats drifts (`0.1 + 0.2 > 0.3`), and a trading cap must never be
//! passed by a cent because of it. So every amount is an integer number of 10⁻⁸ units
//! ([`SCALE`]): a number is read as the decimal its shortest round-trip text shows (what a
//! person typed: `0.1` is one tenth, `-0` is zero), `qty × price` is multiplied exactly and
//! rounded up to the next 10⁻⁸, and from then on everything is integer arithmetic.
//!
//! A cap must mean exactly what it says, so it is never rounded: [`Money::try_cap`] refuses
//! a cap with more than 8 decimal places or above [`MAX`]. This module is the one place
//! that decides what a cap is; [`crate::key::Cap`] validates through it. Because every cap
//! is on the 10⁻⁸ grid, rounding an order's value up changes no decision:
//! `ceil(v) ≤ cap ⇔ v ≤ cap`.

use std::fmt::{self, Write as _};

/// Decimal places kept: amounts are whole multiples of 10⁻⁸.
pub const SCALE: u32 = 8;

/// 10⁻⁸ units in one.
const UNIT: u128 = 10u128.pow(SCALE);

/// The largest amount futu-authd counts: 10²⁰ (one hundred quintillion). A cap above it is
/// refused (omit the limit for no cap), and an order whose value is above it is refused as
/// `bad_order`, so "allowed ⇔ value ≤ cap" holds for every cap there is. A sum of many
/// orders still fits easily: `u128` holds 3.4 × 10³⁰ of it.
pub const MAX: Money = Money(100_000_000_000_000_000_000 * UNIT);

/// An amount of money in 10⁻⁸ units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(pub u128);

/// Why a number is not a cap. The text names the number and what to do.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum CapError {
    /// NaN or an infinity.
    #[error("cap {} is not a finite number; a cap is a finite number that is not negative", Shown(*.0))]
    NotFinite(f64),
    /// Below zero (`-0` is zero, not negative).
    #[error("cap {} is negative; a cap is a finite number that is not negative", Shown(*.0))]
    Negative(f64),
    /// Finer than 10⁻⁸: rounding it would make it a different cap.
    #[error(
        "cap {} has more than {scale} decimal places; amounts are counted to 0.00000001",
        Shown(*.0),
        scale = SCALE
    )]
    TooPrecise(f64),
    /// Above [`MAX`].
    #[error(
        "cap {} is above {max}, the largest amount futu-authd counts; omit the limit for no cap",
        Shown(*.0),
        max = MAX
    )]
    TooLarge(f64),
}

/// A number as an error message shows it: its shortest text, with an exponent when that
/// text would be long (`1e300`, `5e-324`).
struct Shown(f64);

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.0.abs();
        if a != 0.0 && a.is_finite() && !(1e-7..1e16).contains(&a) {
            write!(f, "{:e}", self.0)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// Room for the `{:e}` text of any `f64`: a sign, at most 17 significant digits and a
/// point, `e`, and an exponent of at most a sign and 3 digits (`-1.7976931348623157e308`
/// is 23 bytes).
const TEXT_LEN: usize = 32;

/// A fixed buffer for printing an `f64` without allocating.
struct TextBuf {
    bytes: [u8; TEXT_LEN],
    len: usize,
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

/// An exact decimal `m × 10^e`; `m` has no trailing zeros unless it is 0 (then `e` is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decimal {
    m: u128,
    e: i32,
}

impl Decimal {
    const ZERO: Decimal = Decimal { m: 0, e: 0 };

    /// The decimal a finite `f64` prints as, with its sign: `(negative, magnitude)`. Both
    /// zeros are zero and not negative. `None` for NaN and infinities.
    fn of(v: f64) -> Option<(bool, Decimal)> {
        if !v.is_finite() {
            return None;
        }
        // `{:e}` prints the shortest digits that read back to the same f64, then an
        // exponent: `1.2345e2`, `1e-9`, `5e-324`, `-0e0`. Its length is bounded (see
        // TEXT_LEN), whatever the magnitude.
        let mut buf = TextBuf {
            bytes: [0; TEXT_LEN],
            len: 0,
        };
        write!(buf, "{v:e}").ok()?;
        let text = std::str::from_utf8(&buf.bytes[..buf.len]).ok()?;
        let (digits, exp) = text.split_once('e')?;
        let (negative, digits) = match digits.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, digits),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let mut m: u128 = 0;
        for c in int.bytes().chain(frac.bytes()) {
            if !c.is_ascii_digit() {
                return None;
            }
            m = m.checked_mul(10)?.checked_add(u128::from(c - b'0'))?;
        }
        if m == 0 {
            return Some((false, Decimal::ZERO));
        }
        let exp: i32 = exp.parse().ok()?;
        let mut e = exp.checked_sub(i32::try_from(frac.len()).ok()?)?;
        while m % 10 == 0 {
            m /= 10;
            e += 1;
        }
        Some((negative, Decimal { m, e }))
    }

    /// The decimal of a finite number that is not negative.
    fn of_amount(v: f64) -> Option<Decimal> {
        match Decimal::of(v)? {
            (false, d) => Some(d),
            (true, _) => None,
        }
    }

    fn times(self, other: Decimal) -> Option<Decimal> {
        if self.m == 0 || other.m == 0 {
            return Some(Decimal::ZERO);
        }
        Some(Decimal {
            m: self.m.checked_mul(other.m)?,
            e: self.e.checked_add(other.e)?,
        })
    }

    /// In 10⁻⁸ units, exactly: `None` when it has more than 8 decimal places or does not
    /// fit.
    fn to_money_exact(self) -> Option<Money> {
        let shift = u32::try_from(self.e.checked_add(SCALE as i32)?).ok()?;
        let factor = 10u128.checked_pow(shift)?;
        self.m.checked_mul(factor).map(Money)
    }

    /// In 10⁻⁸ units, rounded up to the next unit; `None` when it does not fit.
    fn to_money_up(self) -> Option<Money> {
        if let Some(exact) = self.to_money_exact() {
            return Some(exact);
        }
        let places = self.e.checked_add(SCALE as i32)?;
        if places >= 0 {
            return None; // an integer number of units that does not fit
        }
        match 10u128.checked_pow(places.unsigned_abs()) {
            Some(divisor) => Some(Money(self.m / divisor + u128::from(self.m % divisor > 0))),
            // The divisor is past u128, so it is larger than `m`: less than one unit, but
            // not nothing.
            None => Some(Money(u128::from(self.m > 0))),
        }
    }
}

impl Money {
    /// Nothing.
    pub const ZERO: Money = Money(0);

    /// A cap, exactly: `-0` is zero; a cap that is not finite, negative, has more than 8
    /// decimal places or is above [`MAX`] is refused. This is the one rule for caps, used
    /// by keys.json, the wire and futucli alike (through [`crate::key::Cap`]).
    pub fn try_cap(v: f64) -> Result<Money, CapError> {
        let (negative, d) = Decimal::of(v).ok_or(CapError::NotFinite(v))?;
        if negative {
            return Err(CapError::Negative(v));
        }
        if d.e < -(SCALE as i32) {
            return Err(CapError::TooPrecise(v));
        }
        match d.to_money_exact() {
            Some(m) if m <= MAX => Ok(m),
            _ => Err(CapError::TooLarge(v)),
        }
    }

    /// [`Money::try_cap`] without the reason.
    pub fn cap(v: f64) -> Option<Money> {
        Money::try_cap(v).ok()
    }

    /// The value of an order, `qty × price`, exact and then rounded up to the next 10⁻⁸.
    /// `None` when either is negative or not finite, or the value is above [`MAX`].
    pub fn order_value(qty: f64, price: f64) -> Option<Money> {
        let v = Decimal::of_amount(qty)?
            .times(Decimal::of_amount(price)?)?
            .to_money_up()?;
        (v <= MAX).then_some(v)
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    /// `self + other`, at most the largest amount a `u128` holds (totals of restored or
    /// refunded values never wrap).
    pub fn saturating_add(self, other: Money) -> Money {
        Money(self.0.saturating_add(other.0))
    }

    /// `self − other`, never below zero.
    pub fn saturating_sub(self, other: Money) -> Money {
        Money(self.0.saturating_sub(other.0))
    }

    /// As a float, for logs, audit and metrics (never for decisions).
    pub fn as_f64(self) -> f64 {
        (self.0 / UNIT) as f64 + (self.0 % UNIT) as f64 / UNIT as f64
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (int, frac) = (self.0 / UNIT, self.0 % UNIT);
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

    fn cap(v: f64) -> Money {
        Money::try_cap(v).unwrap_or_else(|e| panic!("{v} should be a cap: {e}"))
    }

    #[test]
    fn decimal_sums_do_not_drift() {
        let a = Money::order_value(1.0, 0.1).unwrap();
        let b = Money::order_value(1.0, 0.2).unwrap();
        assert_eq!(a.checked_add(b).unwrap(), cap(0.3));
        assert_eq!(Money::order_value(3.0, 0.1).unwrap(), cap(0.3));
    }

    #[test]
    fn order_value_is_exact_for_typical_orders() {
        assert_eq!(Money::order_value(100.0, 1000.0).unwrap(), cap(100000.0));
        assert_eq!(Money::order_value(500.0, 388.2).unwrap().to_string(), "194100");
        assert_eq!(Money::order_value(3.0, 187.33).unwrap().to_string(), "561.99");
        assert_eq!(Money::order_value(0.0, 5.0).unwrap(), Money::ZERO);
    }

    #[test]
    fn order_value_rounds_up_to_the_next_unit() {
        // 1e-9 of value is below one unit: it still counts as one unit.
        assert_eq!(Money::order_value(1.0, 0.000000001).unwrap(), Money(1));
        assert_eq!(Money::order_value(1.0, 5e-324).unwrap(), Money(1));
        assert_eq!(Money::order_value(5e-324, 5e-324).unwrap(), Money(1));
        assert_eq!(Money::order_value(3.0, 0.333333333).unwrap().to_string(), "1");
        assert_eq!(
            Money::order_value(1.0, 0.123456789).unwrap().to_string(),
            "0.12345679"
        );
    }

    #[test]
    fn signed_zero_is_zero() {
        assert_eq!(Money::try_cap(-0.0), Ok(Money::ZERO));
        assert_eq!(Money::try_cap(0.0), Ok(Money::ZERO));
        assert_eq!(Money::order_value(-0.0, 5.0), Some(Money::ZERO));
        assert_eq!(Money::order_value(5.0, -0.0), Some(Money::ZERO));
    }

    #[test]
    fn caps_are_exact_or_refused_never_rounded() {
        assert_eq!(cap(0.12345678).to_string(), "0.12345678");
        assert_eq!(cap(0.00000001), Money(1));
        assert_eq!(cap(2530.0).to_string(), "2530");
        assert_eq!(cap(9007199254740993.0).to_string(), "9007199254740992");
        assert_eq!(cap(1e20), MAX);
        for v in [0.123456789, 1e-9, 0.999999999, 5e-324, f64::MIN_POSITIVE, 1e-300] {
            let e = Money::try_cap(v).unwrap_err();
            assert_eq!(e, CapError::TooPrecise(v));
            assert!(
                e.to_string()
                    .ends_with("has more than 8 decimal places; amounts are counted to 0.00000001"),
                "{e}"
            );
        }
        assert_eq!(
            Money::try_cap(0.123456789).unwrap_err().to_string(),
            "cap 0.123456789 has more than 8 decimal places; amounts are counted to 0.00000001"
        );
        assert_eq!(
            Money::try_cap(5e-324).unwrap_err().to_string(),
            "cap 5e-324 has more than 8 decimal places; amounts are counted to 0.00000001"
        );
        for v in [1.0000000000000002e20, 1e21, 1e300, f64::MAX] {
            assert_eq!(Money::try_cap(v), Err(CapError::TooLarge(v)));
        }
        assert_eq!(
            Money::try_cap(1e300).unwrap_err().to_string(),
            "cap 1e300 is above 100000000000000000000, the largest amount futu-authd counts; omit the limit for no cap"
        );
    }

    #[test]
    fn refuses_what_is_not_an_amount() {
        assert_eq!(Money::try_cap(-1.0), Err(CapError::Negative(-1.0)));
        assert_eq!(Money::try_cap(-5e-324), Err(CapError::Negative(-5e-324)));
        assert!(matches!(Money::try_cap(f64::NAN), Err(CapError::NotFinite(_))));
        assert_eq!(
            Money::try_cap(f64::NEG_INFINITY),
            Err(CapError::NotFinite(f64::NEG_INFINITY))
        );
        assert_eq!(Money::order_value(f64::INFINITY, 1.0), None);
        assert_eq!(Money::order_value(1.0, -0.5), None);
        assert_eq!(Money::order_value(1.0, f64::NAN), None);
    }

    #[test]
    fn an_order_value_above_max_is_not_counted() {
        assert_eq!(Money::order_value(1.0, 1e20), Some(MAX));
        assert_eq!(Money::order_value(1e10, 1e10), Some(MAX));
        assert_eq!(Money::order_value(1.0, 1.0000000000000002e20), None);
        assert_eq!(Money::order_value(1e10, 1.0000000001e10), None);
        assert_eq!(Money::order_value(1e300, 1e300), None);
        assert_eq!(Money::order_value(f64::MAX, f64::MAX), None);
        assert_eq!(
            Money::order_value(f64::MAX, 5e-324),
            Some(Money(1)),
            "about 9e-16"
        );
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

        #[test]
        fn any_float_is_a_cap_or_a_clear_refusal(bits in any::<u64>()) {
            let v = f64::from_bits(bits);
            match Money::try_cap(v) {
                // Printing the cap gives back the number it was made from.
                Ok(m) => prop_assert_eq!(m.to_string().parse::<f64>().unwrap(), v.abs()),
                Err(e) => prop_assert!(e.to_string().starts_with("cap "), "{}", e),
            }
        }
    }
}
