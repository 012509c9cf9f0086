//! The monthly SLA report (docs/spec.md section 5, "The monthly SLA"): a customer's availability
//! and uptime over a calendar month against an objective, with the error budget it leaves and the
//! month's worst day. Pure: computed from the stored days' counts and exact duration sums, never
//! from daily percentages (a month's availability is not the mean of its days').

use std::fmt;

use chrono::{Datelike, NaiveDate};
use serde::Serialize;

use crate::stats::percentage;

/// What the SLA needs of one stored day: its requests, those the server failed (5xx), and its
/// duration sums in microseconds (exact, 128-bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DayTotals {
    pub date: NaiveDate,
    pub total_requests: u64,
    pub status_5xx: u64,
    pub duration_sum_us: u128,
    pub success_duration_sum_us: u128,
}

impl DayTotals {
    /// Requests the server did not fail (status < 500).
    fn served(&self) -> u64 {
        self.total_requests - self.status_5xx
    }
}

/// A calendar month, 0001-01 to 9999-12 (the days both backends store).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Month {
    year: i32,
    month: u32,
}

impl Month {
    /// Exactly `YYYY-MM`: four digits, a dash, two digits; year 0001..9999, month 01..12.
    pub fn parse(text: &str) -> Option<Month> {
        let bytes = text.as_bytes();
        let digits = |range: std::ops::Range<usize>| {
            bytes[range].iter().try_fold(0u32, |n, &b| {
                b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
            })
        };
        if bytes.len() != 7 || bytes[4] != b'-' {
            return None;
        }
        let (year, month) = (digits(0..4)?, digits(5..7)?);
        ((1..=9999).contains(&year) && (1..=12).contains(&month)).then_some(Month {
            year: year as i32,
            month,
        })
    }

    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).expect("a month of 0001..9999")
    }

    pub fn last_day(self) -> NaiveDate {
        let next = if self.month == 12 {
            NaiveDate::from_ymd_opt(self.year + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(self.year, self.month + 1, 1)
        };
        // 10000-01-01 exists for chrono; its day before is 9999-12-31.
        next.and_then(|day| day.pred_opt())
            .expect("a month of 0001..9999")
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl Serialize for Month {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl From<NaiveDate> for Month {
    fn from(date: NaiveDate) -> Month {
        Month {
            year: date.year(),
            month: date.month(),
        }
    }
}

/// An availability objective, a percentage strictly between 0 and 100, kept exactly as its
/// decimal digits (in billionths of a percent): the budget and the breach are computed from the
/// number the client wrote (`99.9`), not from the nearest double (99.900000000000005...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Objective {
    billionths: u64,
}

/// Billionths of a percent in one percent.
const SCALE: u64 = 1_000_000_000;

/// Digits an objective may have after its decimal point.
pub const OBJECTIVE_DECIMALS: usize = 9;

impl Objective {
    /// The default objective, 99.9 %.
    pub const DEFAULT: Objective = Objective {
        billionths: 99_900_000_000,
    };

    /// A decimal `DIGITS[.DIGITS]` (at most [`OBJECTIVE_DECIMALS`] after the point, no sign or
    /// exponent) strictly between 0 and 100.
    pub fn parse(text: &str) -> Option<Objective> {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || whole.len() > 2
            || !all_digits(whole)
            || !all_digits(fraction)
            || fraction.len() > OBJECTIVE_DECIMALS
            || (text.contains('.') && fraction.is_empty())
        {
            return None;
        }
        let whole: u64 = whole.parse().ok()?;
        let fraction: u64 = format!("{fraction:0<9}").parse().ok()?;
        let billionths = whole * SCALE + fraction;
        (billionths > 0 && billionths < 100 * SCALE).then_some(Objective { billionths })
    }

    /// The objective as a double (the nearest to its decimal).
    pub fn percent(self) -> f64 {
        self.billionths as f64 / SCALE as f64
    }

    /// The exact key of this objective (for caches).
    pub fn key(self) -> u64 {
        self.billionths
    }
}

/// The month's worst day: the lowest availability (the earliest of equals).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorstDay {
    pub date: NaiveDate,
    pub total_requests: u64,
    pub failed_by_server: u64,
    pub availability_percentage: f64,
}

/// A customer's SLA over one calendar month, in the order the API prints it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MonthlySla {
    pub customer_id: String,
    pub month: Month,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub objective: f64,
    pub total_requests: u64,
    /// Requests the server failed: 5xx.
    pub failed_by_server: u64,
    pub availability_percentage: f64,
    pub uptime_percentage: f64,
    /// (100 - objective) % of the month's requests: how many may fail.
    pub error_budget_requests: f64,
    /// The budget less the 5xx requests; negative once overspent.
    pub error_budget_remaining_requests: f64,
    /// Availability below the objective; never with no requests.
    pub breached: bool,
    /// `null` when the month has no data.
    pub worst_day: Option<WorstDay>,
}

impl MonthlySla {
    /// The SLA of `customer_id` over `month` from its stored `days` (those of the month, any
    /// order).
    pub fn compute(
        customer_id: String,
        month: Month,
        objective: Objective,
        days: &[DayTotals],
    ) -> MonthlySla {
        let n: u64 = days.iter().map(|day| day.total_requests).sum();
        let failed: u64 = days.iter().map(|day| day.status_5xx).sum();
        let duration: u128 = days.iter().map(|day| day.duration_sum_us).sum();
        let success: u128 = days.iter().map(|day| day.success_duration_sum_us).sum();
        let (n_wide, scale) = (u128::from(n), u128::from(SCALE));
        let allowed = u128::from(100 * SCALE - objective.billionths);
        // n x (100 - P) / 100, from the exact product: one rounding to a double, one division.
        let budget = (n_wide * allowed) as f64 / (100 * SCALE) as f64;
        // availability < P, compared exactly: 100 x served / n < P.
        let served = u128::from(n - failed);
        let breached = n > 0 && served * 100 * scale < u128::from(objective.billionths) * n_wide;
        MonthlySla {
            customer_id,
            month,
            from: month.first_day(),
            to: month.last_day(),
            objective: objective.percent(),
            total_requests: n,
            failed_by_server: failed,
            availability_percentage: percentage(served, n_wide),
            uptime_percentage: percentage(success, duration),
            error_budget_requests: budget,
            error_budget_remaining_requests: budget - failed as f64,
            breached,
            worst_day: worst_day(days),
        }
    }
}

/// The day of lowest availability, compared exactly (served_a / n_a < served_b / n_b by cross
/// multiplication), the earliest of equals; `None` without days.
fn worst_day(days: &[DayTotals]) -> Option<WorstDay> {
    let lower = |a: &DayTotals, b: &DayTotals| {
        let left = u128::from(a.served()) * u128::from(b.total_requests);
        let right = u128::from(b.served()) * u128::from(a.total_requests);
        left.cmp(&right).then(a.date.cmp(&b.date))
    };
    let worst = days
        .iter()
        .filter(|day| day.total_requests > 0)
        .min_by(|a, b| lower(a, b))?;
    Some(WorstDay {
        date: worst.date,
        total_requests: worst.total_requests,
        failed_by_server: worst.status_5xx,
        availability_percentage: percentage(
            u128::from(worst.served()),
            u128::from(worst.total_requests),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(date: &str, total: u64, failed: u64, duration: u128, success: u128) -> DayTotals {
        DayTotals {
            date: date.parse().unwrap(),
            total_requests: total,
            status_5xx: failed,
            duration_sum_us: duration,
            success_duration_sum_us: success,
        }
    }

    #[test]
    fn months_parse_exactly_and_know_their_last_day() {
        let february = Month::parse("2024-02").unwrap();
        assert_eq!(february.to_string(), "2024-02");
        assert_eq!(february.last_day().to_string(), "2024-02-29");
        assert_eq!(
            Month::parse("9999-12").unwrap().last_day().to_string(),
            "9999-12-31"
        );
        assert_eq!(
            Month::parse("0001-01").unwrap().first_day().to_string(),
            "0001-01-01"
        );
        for bad in [
            "2024-13",
            "2024-00",
            "0000-01",
            "2024-1",
            "24-01",
            "2024/01",
            "2024-01-01",
            "+024-01",
            "",
            "２０２４-01",
        ] {
            assert_eq!(Month::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn objectives_are_decimals_strictly_between_0_and_100() {
        assert_eq!(Objective::parse("99.9"), Some(Objective::DEFAULT));
        assert_eq!(Objective::parse("50").unwrap().percent(), 50.0);
        assert_eq!(
            Objective::parse("99.999999999").unwrap().key(),
            99_999_999_999
        );
        for bad in [
            "0",
            "0.0",
            "100",
            "100.0",
            "abc",
            "",
            "-1",
            "1e1",
            ".5",
            "5.",
            "99.9999999999",
            "NaN",
            "inf",
            "1000",
        ] {
            assert_eq!(Objective::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_month_is_computed_from_counts_and_sums_not_daily_percentages() {
        // Day 1: 1000 requests, 10 failed by the server; day 2: 10 requests, 5 failed.
        let days = [
            day("2024-09-01", 1000, 10, 2_000_000, 1_500_000),
            day("2024-09-02", 10, 5, 1_000_000, 0),
        ];
        let sla = MonthlySla::compute(
            "acme".into(),
            Month::parse("2024-09").unwrap(),
            Objective::DEFAULT,
            &days,
        );
        assert_eq!(sla.total_requests, 1010);
        assert_eq!(sla.failed_by_server, 15);
        assert_eq!(sla.availability_percentage, 100.0 * 995.0 / 1010.0);
        assert_eq!(sla.uptime_percentage, 50.0);
        assert_eq!(sla.error_budget_requests, 1.01);
        assert_eq!(sla.error_budget_remaining_requests, 1.01 - 15.0);
        assert!(sla.breached);
        let worst = sla.worst_day.unwrap();
        assert_eq!(worst.date.to_string(), "2024-09-02");
        assert_eq!(worst.availability_percentage, 50.0);
        assert_eq!(sla.to.to_string(), "2024-09-30");
    }

    #[test]
    fn no_requests_is_zeros_no_breach_and_no_worst_day() {
        let sla = MonthlySla::compute(
            "nobody".into(),
            Month::parse("2024-02").unwrap(),
            Objective::DEFAULT,
            &[],
        );
        assert_eq!(
            serde_json::to_value(&sla).unwrap(),
            serde_json::json!({
                "customer_id": "nobody", "month": "2024-02", "from": "2024-02-01",
                "to": "2024-02-29", "objective": 99.9, "total_requests": 0, "failed_by_server": 0,
                "availability_percentage": 0.0, "uptime_percentage": 0.0,
                "error_budget_requests": 0.0, "error_budget_remaining_requests": 0.0,
                "breached": false, "worst_day": null
            })
        );
    }

    #[test]
    fn ties_go_to_the_earliest_day_and_the_breach_is_exact() {
        let days = [
            day("2024-09-03", 4, 1, 1, 1),
            day("2024-09-02", 8, 2, 1, 1),
            day("2024-09-04", 1, 0, 1, 1),
        ];
        let half = Objective::parse("75").unwrap();
        let sla = MonthlySla::compute("c".into(), Month::parse("2024-09").unwrap(), half, &days);
        assert_eq!(sla.worst_day.unwrap().date.to_string(), "2024-09-02");
        // 10 of 13 served: 76.92... >= 75, not breached; at exactly the objective, not either.
        assert!(!sla.breached);
        let exact = [day("2024-09-01", 4, 1, 1, 1)];
        let sla = MonthlySla::compute("c".into(), Month::parse("2024-09").unwrap(), half, &exact);
        assert!(!sla.breached, "75 % is not below 75 %");
    }
}
