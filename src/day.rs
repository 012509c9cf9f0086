//! A UTC calendar day as a packed integer (days since 1970-01-01).
//!
//! The hot path never builds a `chrono` date: parsing and grouping use [`Day`], and only output
//! (SQL parameters, JSON) converts it. The civil-date arithmetic is Howard Hinnant's.

use std::fmt;

/// A UTC calendar day, counted from 1970-01-01 (day 0).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Day(pub i32);

impl Day {
    /// The first day stored: 0001-01-01 (both backends store and compare four-digit years as text).
    pub const FIRST: Day = Day(-719_162);
    /// The last day stored: 9999-12-31.
    pub const LAST: Day = Day(2_932_896);

    /// Whether this day lies in [`Day::FIRST`]..=[`Day::LAST`].
    pub fn is_storable(self) -> bool {
        (Day::FIRST..=Day::LAST).contains(&self)
    }

    /// The day of a proleptic Gregorian date, or `None` when the date does not exist.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Day> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = month as i32;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i32 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Some(Day(era * 146_097 + doe - 719_468))
    }

    /// The (year, month, day) of this day.
    pub fn ymd(self) -> (i32, u32, u32) {
        let z = self.0 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let y = yoe + era * 400 + i32::from(m <= 2);
        (y, m, d)
    }

    /// Parses `YYYY-MM-DD` exactly: a real date from 0001-01-01 on (year 0000 is `None`).
    pub fn parse(text: &[u8]) -> Option<Day> {
        Day::parse_any_year(text).filter(|_| text[..4] != *b"0000")
    }

    /// Parses `YYYY-MM-DD` exactly, year 0000 included (a local date whose UTC day may be later).
    pub fn parse_any_year(text: &[u8]) -> Option<Day> {
        let &[y1, y2, y3, y4, b'-', m1, m2, b'-', d1, d2] = text else {
            return None;
        };
        let year = digits(&[y1, y2, y3, y4])?;
        let month = digits(&[m1, m2])?;
        let day = digits(&[d1, d2])?;
        Day::from_ymd(year as i32, month as u32, day as u32)
    }

    /// The same day as a `chrono` date, for SQL parameters and JSON.
    pub fn to_naive_date(self) -> chrono::NaiveDate {
        let (y, m, d) = self.ymd();
        chrono::NaiveDate::from_ymd_opt(y, m, d).expect("a Day always holds a valid date")
    }

    /// The day of a `chrono` date.
    pub fn from_naive_date(date: chrono::NaiveDate) -> Day {
        use chrono::Datelike;
        Day::from_ymd(date.year(), date.month(), date.day()).expect("chrono dates are valid")
    }

    /// The first day of this day's month.
    pub fn first_of_month(self) -> Day {
        Day(self.0 - self.ymd().2 as i32 + 1)
    }

    /// The day `n` days later (earlier when negative).
    pub fn plus(self, n: i32) -> Day {
        Day(self.0 + n)
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// The value of a run of ASCII digits, or `None` if any byte is not a digit.
/// At most 19 digits (callers check lengths), so the value cannot overflow.
#[inline]
pub(crate) fn digits(text: &[u8]) -> Option<u64> {
    text.iter().try_fold(0u64, |acc, &b| {
        let digit = b.wrapping_sub(b'0');
        (digit < 10).then(|| acc * 10 + u64::from(digit))
    })
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_day_of_four_centuries_round_trips_through_chrono() {
        let start = chrono::NaiveDate::from_ymd_opt(1900, 1, 1).unwrap();
        for offset in 0..146_097 {
            let date = start + chrono::Duration::days(offset);
            let day = Day::from_naive_date(date);
            assert_eq!(day.to_naive_date(), date);
            assert_eq!(day.to_string(), date.format("%Y-%m-%d").to_string());
            assert_eq!(Day::parse(day.to_string().as_bytes()), Some(day));
        }
        assert_eq!(Day::from_ymd(1970, 1, 1), Some(Day(0)));
    }

    #[test]
    fn the_storable_days_are_years_0001_to_9999() {
        assert_eq!(Day::parse(b"0001-01-01"), Some(Day::FIRST));
        assert_eq!(Day::parse(b"9999-12-31"), Some(Day::LAST));
        assert_eq!(Day::FIRST.to_string(), "0001-01-01");
        assert_eq!(Day::LAST.to_string(), "9999-12-31");
        assert_eq!(Day::parse(b"0000-12-31"), None);
        assert_eq!(
            Day::parse_any_year(b"0000-12-31"),
            Some(Day::FIRST.plus(-1))
        );
        assert!(!Day::LAST.plus(1).is_storable());
        assert!(!Day::FIRST.plus(-1).is_storable());
    }

    #[test]
    fn impossible_dates_are_none() {
        for text in [
            "2024-02-30",
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-1-01",
            "2024/01/01",
        ] {
            assert_eq!(Day::parse(text.as_bytes()), None, "{text}");
        }
        assert!(Day::parse(b"2024-02-29").is_some());
    }
}
