//! Clock-aligned rotation times: an hourly file rotates at the top of each hour of the local
//! clock, not an hour after the task started, as cron-driven logrotate did.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike};
use singularity_common::records::LogrotateFrequency;

/// The first boundary of `frequency` strictly after `after`, in `after`'s time zone.
///
/// Minutes: the next whole minute (or multiple of five). Hourly: the next hour. Daily: the
/// next midnight. Weekly: the next Sunday midnight (logrotate rotates when the weekday wraps).
/// Monthly: midnight of the next month's first day. A boundary that the local clock skips
/// (a daylight-saving gap) moves to the first instant after the gap.
pub fn next_boundary<Tz: TimeZone>(
    frequency: LogrotateFrequency,
    after: &DateTime<Tz>,
) -> DateTime<Tz> {
    let local = after.naive_local();
    let minute_start = local
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(local);
    let midnight = local.date().and_hms_opt(0, 0, 0).unwrap_or(local);
    let naive = match frequency {
        LogrotateFrequency::EveryMinute => minute_start + Duration::minutes(1),
        LogrotateFrequency::EveryFiveMinutes => {
            let past = i64::from(minute_start.minute() % 5);
            minute_start + Duration::minutes(5 - past)
        }
        LogrotateFrequency::Hourly => {
            minute_start.with_minute(0).unwrap_or(minute_start) + Duration::hours(1)
        }
        LogrotateFrequency::Daily => midnight + Duration::days(1),
        LogrotateFrequency::Weekly => {
            let since_sunday = i64::from(local.weekday().num_days_from_sunday());
            midnight + Duration::days(7 - since_sunday)
        }
        LogrotateFrequency::Monthly => {
            let (year, month) = match local.month() {
                12 => (local.year() + 1, 1),
                month => (local.year(), month + 1),
            };
            NaiveDate::from_ymd_opt(year, month, 1)
                .and_then(|date| date.and_hms_opt(0, 0, 0))
                .unwrap_or(midnight + Duration::days(31))
        }
    };
    resolve(&after.timezone(), naive)
}

/// The instant a local time names; the earlier one when the clock repeats it, the first
/// instant after the gap when the clock skips it.
fn resolve<Tz: TimeZone>(zone: &Tz, naive: NaiveDateTime) -> DateTime<Tz> {
    let mut candidate = naive;
    // Gaps are at most a few hours; step by minutes until the local time exists.
    for _ in 0..(24 * 60) {
        if let Some(instant) = zone.from_local_datetime(&candidate).earliest() {
            return instant;
        }
        candidate += Duration::minutes(1);
    }
    zone.from_utc_datetime(&naive)
}

#[cfg(test)]
mod tests {
    use chrono::{FixedOffset, Utc};

    use super::*;
    use LogrotateFrequency as F;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn boundaries_follow_the_clock() {
        let now = at("2022-11-18T15:42:17.250Z"); // a Friday
        let cases = [
            (F::EveryMinute, "2022-11-18T15:43:00Z"),
            (F::EveryFiveMinutes, "2022-11-18T15:45:00Z"),
            (F::Hourly, "2022-11-18T16:00:00Z"),
            (F::Daily, "2022-11-19T00:00:00Z"),
            (F::Weekly, "2022-11-20T00:00:00Z"),
            (F::Monthly, "2022-12-01T00:00:00Z"),
        ];
        for (frequency, expected) in cases {
            assert_eq!(next_boundary(frequency, &now), at(expected), "{frequency}");
        }
    }

    #[test]
    fn a_boundary_is_strictly_later() {
        let now = at("2022-12-31T00:00:00Z"); // a Saturday, midnight, a five-minute mark
        assert_eq!(
            next_boundary(F::EveryFiveMinutes, &now),
            at("2022-12-31T00:05:00Z")
        );
        assert_eq!(next_boundary(F::Daily, &now), at("2023-01-01T00:00:00Z"));
        assert_eq!(next_boundary(F::Monthly, &now), at("2023-01-01T00:00:00Z"));
        let sunday = at("2022-11-20T00:00:00Z");
        assert_eq!(
            next_boundary(F::Weekly, &sunday),
            at("2022-11-27T00:00:00Z")
        );
    }

    #[test]
    fn boundaries_are_those_of_the_local_clock() {
        let zone = FixedOffset::east_opt(5 * 3600 + 1800).expect("offset");
        let now = at("2022-11-18T15:42:17Z").with_timezone(&zone); // 21:12 local
        let expected = at("2022-11-18T18:30:00Z"); // local midnight
        assert_eq!(next_boundary(F::Daily, &now), expected);
        let hourly = next_boundary(F::Hourly, &now);
        assert_eq!(hourly, at("2022-11-18T16:30:00Z"));
    }
}
