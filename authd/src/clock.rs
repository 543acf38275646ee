//! The daemon's clock: wall time, local time of day and a monotonic counter, read once per
//! decision and handed to the pure engine as a [`Now`].

use std::time::Instant;

use jiff::tz::TimeZone;
use jiff::Timestamp;

use futu_auth_rules::Now;

/// The monotonic counter starts here rather than at zero, so events restored from the
/// ledger log (up to the 15-minute release window in the past) still have positive times.
pub const MONO_ORIGIN_NS: u64 = 3600 * 1_000_000_000;

/// Reads the system clocks.
#[derive(Debug, Clone)]
pub struct Clock {
    tz: TimeZone,
    start: Instant,
}

impl Clock {
    /// A clock in the host's time zone (`TZ` is honoured, else /etc/localtime).
    pub fn system() -> Clock {
        Clock {
            tz: TimeZone::system(),
            start: Instant::now(),
        }
    }

    /// Reads the time zone again (on reload, after the host's zone changed).
    pub fn refresh_time_zone(&mut self) {
        self.tz = TimeZone::system();
    }

    /// Now.
    pub fn now(&self) -> Now {
        Now::new(Timestamp::now(), &self.tz, self.mono_ns())
    }

    /// The monotonic counter, in nanoseconds.
    pub fn mono_ns(&self) -> u64 {
        MONO_ORIGIN_NS + self.start.elapsed().as_nanos() as u64
    }

    /// The time zone used for `hours_window`, e.g. `Asia/Hong_Kong`.
    pub fn zone_name(&self) -> &str {
        self.tz.iana_name().unwrap_or("local")
    }
}
