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
