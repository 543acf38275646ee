//! The moment a decision is made at, as the rules see it: wall time, local time of day and
//! a monotonic counter. The daemon reads its clocks once per burst and hands the rules a
//! [`Now`]; `futucli replay` makes one of each audit record's time.

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Seconds in a UTC day.
const DAY_SECS: i64 = 86_400;

/// A UTC day as days since 1970-01-01.
pub fn utc_day(unix_seconds: i64) -> i64 {
    unix_seconds.div_euclid(DAY_SECS)
}

/// The time a decision is made at, read once by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Wall time, for expiry and the UTC day.
    pub utc: Timestamp,
    /// Seconds since local midnight on the daemon host, for `hours_window`.
    pub local_secs: u32,
    /// A monotonic clock in nanoseconds, for the 60 s rate window.
    pub mono_ns: u64,
}

impl Now {
    /// The moment `utc`, seen in time zone `tz`, at monotonic time `mono_ns`.
    pub fn new(utc: Timestamp, tz: &TimeZone, mono_ns: u64) -> Now {
        let offset = i64::from(tz.to_offset(utc).seconds());
        let local_secs = (utc.as_second() + offset).rem_euclid(DAY_SECS) as u32;
        Now {
            utc,
            local_secs,
            mono_ns,
        }
    }

    /// The UTC day, as days since 1970-01-01.
    pub fn day(&self) -> i64 {
        utc_day(self.utc.as_second())
    }
}

/// How long `secs` seconds is, in the two largest units that say it, as futucli and the
/// daemon's log lines show the time a key has left: `3d 4h`, `5h 12m`, `42m`, `17s`
/// (`0s` for none). A negative length is said as its size.
pub fn span_in_words(secs: i64) -> String {
    let secs = secs.unsigned_abs();
    let (d, h, m, s) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m")
    } else {
        format!("{s}s")
    }
}

/// When a key expiring at `expires_at` expires, seen at `now`: `in 3d 4h`, or
/// `expired 2d 1h ago` (`expired 0s ago` at the very second).
pub fn expiry_in_words(expires_at: Timestamp, now: Timestamp) -> String {
    let left = expires_at.as_second() - now.as_second();
    if left > 0 {
        format!("in {}", span_in_words(left))
    } else {
        format!("expired {} ago", span_in_words(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_is_said_in_its_two_largest_units() {
        assert_eq!(span_in_words(3 * 86_400 + 4 * 3_600 + 59), "3d 4h");
        assert_eq!(span_in_words(86_400), "1d 0h");
        assert_eq!(span_in_words(5 * 3_600 + 12 * 60 + 7), "5h 12m");
        assert_eq!(span_in_words(42 * 60 + 1), "42m");
        assert_eq!(span_in_words(17), "17s");
        assert_eq!(span_in_words(0), "0s");
        assert_eq!(span_in_words(-(2 * 86_400 + 3_600)), "2d 1h");
    }

    #[test]
    fn an_expiry_is_in_the_future_or_was_in_the_past() {
        let now: Timestamp = "2026-12-06T00:00:00Z".parse().unwrap();
        let later: Timestamp = "2026-12-09T04:00:00Z".parse().unwrap();
        assert_eq!(expiry_in_words(later, now), "in 3d 4h");
        assert_eq!(expiry_in_words(now, later), "expired 3d 4h ago");
        assert_eq!(expiry_in_words(now, now), "expired 0s ago");
    }
}
