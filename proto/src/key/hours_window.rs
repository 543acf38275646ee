//! Hours windows: the local time of day in which a key may be used (`hours_window`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::invalid::{invalid, InvalidValue};

/// A daily time window in the daemon host's local time, `HH:MM-HH:MM`: the start is inside,
/// the end is not, and a window whose end is before its start crosses midnight
/// (`22:00-04:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HoursWindow {
    /// Minutes after local midnight at which the window opens.
    pub start_min: u16,
    /// Minutes after local midnight at which the window closes.
    pub end_min: u16,
}

impl HoursWindow {
    /// Whether a local time of day, in seconds after midnight, lies in the window.
    pub fn contains(&self, local_secs: u32) -> bool {
        let start = u32::from(self.start_min) * 60;
        let end = u32::from(self.end_min) * 60;
        if start < end {
            start <= local_secs && local_secs < end
        } else {
            local_secs >= start || local_secs < end
        }
    }
}

impl FromStr for HoursWindow {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| invalid(format!("malformed hours_window {s:?}: {why}"));
        let parse_hm = |t: &str| -> Option<u16> {
            let b = t.as_bytes();
            if b.len() != 5
                || b[2] != b':'
                || !b.iter().enumerate().all(|(i, c)| i == 2 || c.is_ascii_digit())
            {
                return None;
            }
            let h = u16::from(b[0] - b'0') * 10 + u16::from(b[1] - b'0');
            let m = u16::from(b[3] - b'0') * 10 + u16::from(b[4] - b'0');
            (h < 24 && m < 60).then_some(h * 60 + m)
        };
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| bad("expected HH:MM-HH:MM, e.g. 09:30-16:00 or 22:00-04:00"))?;
        let start_min = parse_hm(a).ok_or_else(|| bad("start is not a 24-hour HH:MM time"))?;
        let end_min = parse_hm(b).ok_or_else(|| bad("end is not a 24-hour HH:MM time"))?;
        if start_min == end_min {
            return Err(bad(
                "start and end are equal, so the window is empty; omit the limit for all day",
            ));
        }
        Ok(HoursWindow { start_min, end_min })
    }
}

impl TryFrom<String> for HoursWindow {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<HoursWindow> for String {
    fn from(w: HoursWindow) -> String {
        w.to_string()
    }
}

impl fmt::Display for HoursWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start_min / 60,
            self.start_min % 60,
            self.end_min / 60,
            self.end_min % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_window_start_is_inside_and_end_is_not() {
        let w: HoursWindow = "09:30-16:00".parse().unwrap();
        assert!(!w.contains(9 * 3600 + 29 * 60 + 59));
        assert!(w.contains(9 * 3600 + 30 * 60));
        assert!(w.contains(15 * 3600 + 59 * 60 + 59));
        assert!(!w.contains(16 * 3600));
    }

    #[test]
    fn hours_window_crossing_midnight_covers_both_sides() {
        let w: HoursWindow = "22:00-04:00".parse().unwrap();
        assert!(!w.contains(21 * 3600 + 59 * 60 + 59));
        assert!(w.contains(22 * 3600));
        assert!(w.contains(23 * 3600 + 59 * 60 + 59));
        assert!(w.contains(0));
        assert!(w.contains(3 * 3600 + 59 * 60 + 59));
        assert!(!w.contains(4 * 3600));
        assert!(!w.contains(12 * 3600));
    }

    #[test]
    fn malformed_hours_windows_are_refused() {
        for s in [
            "9:30-16:00",
            "09:30-24:00",
            "09:60-10:00",
            "09:30",
            "09:30-09:30",
            "0930-1600",
            "09:30-16:00 ",
        ] {
            assert!(s.parse::<HoursWindow>().is_err(), "{s} should be refused");
        }
        assert_eq!(
            "00:00-23:59".parse::<HoursWindow>().unwrap().to_string(),
            "00:00-23:59"
        );
    }
}
