//! UTC calendar: the store keeps seconds since the epoch in UTC; buckets start at UTC hour,
//! day, ISO-week (Monday) and month boundaries.

use time::{Date, Month, OffsetDateTime};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    Hour,
    Day,
    Week,
    Month,
}

impl Bucket {
    pub const ALL: [Bucket; 4] = [Bucket::Hour, Bucket::Day, Bucket::Week, Bucket::Month];

    pub fn name(self) -> &'static str {
        match self {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
            Bucket::Week => "week",
            Bucket::Month => "month",
        }
    }

    /// The start (seconds since the epoch) of the bucket holding `t`.
    pub fn start_of(self, t: i64) -> i64 {
        match self {
            Bucket::Hour => t - t.rem_euclid(3600),
            Bucket::Day => t - t.rem_euclid(86_400),
            // 1970-01-01 was a Thursday: day 4 of the ISO week (Monday = 1).
            Bucket::Week => {
                let day = t.div_euclid(86_400);
                (day - (day + 3).rem_euclid(7)) * 86_400
            }
            Bucket::Month => {
                let date = date_of(t);
                Date::from_calendar_date(date.year(), date.month(), 1).expect("the first of a month exists").midnight().assume_utc().unix_timestamp()
            }
        }
    }
}

fn date_of(t: i64) -> Date {
    OffsetDateTime::from_unix_timestamp(t).map_or(Date::MIN, |d| d.date())
}

/// `2026-11-24` or `2026-11-24T10:00:00Z`, as seconds since the epoch (UTC).
pub fn parse_since(text: &str) -> Result<i64, String> {
    if let Some(t) = crate::record::parse_rfc3339(text) {
        return Ok(t);
    }
    let parts: Vec<&str> = text.split('-').collect();
    let bad = || format!("'{text}' is not a date (YYYY-MM-DD) or an RFC 3339 time");
    let [y, m, d] = parts.as_slice() else { return Err(bad()) };
    let (y, m, d): (i32, u8, u8) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
    let month = Month::try_from(m).map_err(|_| bad())?;
    let date = Date::from_calendar_date(y, month, d).map_err(|_| bad())?;
    Ok(date.midnight().assume_utc().unix_timestamp())
}

/// A bucket start for tables: `2026-11-24` (with `T10:00Z` for hours).
pub fn format_start(t: i64, bucket: Bucket) -> String {
    let Ok(dt) = OffsetDateTime::from_unix_timestamp(t) else { return t.to_string() };
    let date = format!("{:04}-{:02}-{:02}", dt.year(), dt.month() as u8, dt.day());
    match bucket {
        Bucket::Hour => format!("{date}T{:02}:00Z", dt.hour()),
        _ => date,
    }
}

/// `7d`, `12h`, `2w`, `30m`, `90s` as seconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let bad = || format!("'{text}' is not a duration (like 7d, 12h, 2w)");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = text.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(unit).filter(|&s| s > 0).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> i64 {
        crate::record::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn buckets_across_month_and_year_boundaries() {
        // 2026-03-01 is a Sunday: its ISO week began on Monday 2026-02-23.
        assert_eq!(Bucket::Week.start_of(t("2026-03-01T23:59:59Z")), t("2026-02-23T00:00:00Z"));
        assert_eq!(Bucket::Week.start_of(t("2026-03-02T00:00:00Z")), t("2026-03-02T00:00:00Z"));
        assert_eq!(Bucket::Month.start_of(t("2026-02-28T23:59:59Z")), t("2026-02-01T00:00:00Z"));
        assert_eq!(Bucket::Month.start_of(t("2026-03-01T00:00:00Z")), t("2026-03-01T00:00:00Z"));
        assert_eq!(Bucket::Month.start_of(t("2025-12-31T23:00:00Z")), t("2025-12-01T00:00:00Z"));
        assert_eq!(Bucket::Day.start_of(t("2024-02-29T12:00:00Z")), t("2024-02-29T00:00:00Z"));
        assert_eq!(Bucket::Hour.start_of(t("2026-11-24T10:59:59Z")), t("2026-11-24T10:00:00Z"));
        // Before the epoch too.
        assert_eq!(Bucket::Day.start_of(-1), -86_400);
        // 1970-01-01 was a Thursday.
        assert_eq!(Bucket::Week.start_of(0), -3 * 86_400);
    }

    #[test]
    fn parsing() {
        assert_eq!(parse_since("2026-11-24"), Ok(t("2026-11-24T00:00:00Z")));
        assert!(parse_since("2026-02-30").is_err());
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert!(parse_duration("7").is_err() && parse_duration("d").is_err() && parse_duration("0d").is_err());
        assert_eq!(format_start(t("2026-11-24T10:00:00Z"), Bucket::Hour), "2026-11-24T10:00Z");
    }
}
