//! Calendar arithmetic for targeting hours and daily cap resets, in an
//! offer's timezone. The current time is always passed in (milliseconds since
//! the Unix epoch); nothing here reads a clock.

use chrono::{TimeZone, Timelike};
use chrono_tz::Tz;

/// A moment as seen from one timezone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalTime {
    /// Hour of the local day, `0..24`.
    pub hour: u8,
    /// Local calendar day as a day number (days since 1970-01-01 in that zone).
    pub day: u32,
    /// Seconds until the next local midnight.
    pub secs_to_midnight: u32,
}

pub fn local(tz: Tz, now_ms: i64) -> LocalTime {
    let secs = now_ms.div_euclid(1000);
    if tz == chrono_tz::UTC {
        let sod = secs.rem_euclid(86_400);
        return LocalTime {
            hour: (sod / 3600) as u8,
            day: secs.div_euclid(86_400).max(0) as u32,
            secs_to_midnight: (86_400 - sod) as u32,
        };
    }
    match tz.timestamp_opt(secs, 0).single() {
        Some(t) => {
            let offset = t.naive_local().and_utc().timestamp() - secs;
            let local_secs = secs + offset;
            let sod = t.num_seconds_from_midnight() as i64;
            LocalTime {
                hour: t.hour() as u8,
                day: local_secs.div_euclid(86_400).max(0) as u32,
                secs_to_midnight: (86_400 - sod) as u32,
            }
        }
        None => local(chrono_tz::UTC, now_ms),
    }
}

/// The UTC millisecond range `[start, end)` of local day `day` in `tz`
/// (used to rebuild today's cap counters from stored events).
pub fn day_range_ms(tz: Tz, day: u32) -> (i64, i64) {
    let start_of = |d: i64| -> i64 {
        let naive = chrono::DateTime::from_timestamp(d * 86_400, 0).map(|t| t.naive_utc());
        match naive.and_then(|n| tz.from_local_datetime(&n).earliest()) {
            Some(t) => t.timestamp_millis(),
            None => d * 86_400_000,
        }
    };
    (start_of(day as i64), start_of(day as i64 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAN5_2026: i64 = 1_767_571_200_000; // 2026-01-05T00:00:00Z

    #[test]
    fn utc_hours_and_days() {
        let t = local(chrono_tz::UTC, JAN5_2026 + 3_600_000 * 13 + 1);
        assert_eq!(t.hour, 13);
        assert_eq!(t.day, 20458);
        assert_eq!(t.secs_to_midnight, 11 * 3600);
    }

    #[test]
    fn new_york_is_five_hours_behind_in_winter() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let t = local(tz, JAN5_2026 + 3_600_000 * 3);
        assert_eq!(t.hour, 22);
        assert_eq!(t.day, 20457, "still Jan 4 in New York");
        assert_eq!(t.secs_to_midnight, 2 * 3600);
        let (start, end) = day_range_ms(tz, 20458);
        assert_eq!(start, JAN5_2026 + 5 * 3_600_000);
        assert_eq!(end - start, 86_400_000);
    }
}
