//! Each customer's months (`customer_months`): the merge of the month's days' states, without
//! their breakdowns. A commit folds the days it writes into their months and writes those in the
//! same transaction (`commit.rs`), so a month never disagrees with its days; a summary of years
//! reads a row a month and the days at the edges of its range (`read.rs`). What a commit's months
//! are made of and their SQL, for the commit and both backends' transactions.

use std::sync::LazyLock;

use chrono::NaiveDate;

use super::{STATE_COLUMN_COUNT, STATE_COLUMNS};
use crate::day::Day;
use crate::stats::{DayStats, RangeMerger};

/// Complete months written together: few enough to hold, many enough that a commit into an
/// empty table, which inserts its days in parts between the writes of their months, seldom stops
/// its pipeline. At most this many, and at most [`MONTH_BYTES_PER_WRITE`] of them: a busy
/// customer's month holds thousands of distinct durations (16,384 such months took 80 MB).
const MONTHS_PER_WRITE: usize = 16 << 10;
const MONTH_BYTES_PER_WRITE: usize = 8 << 20;

/// What a commit changes in one month of a customer: the requests it adds, and those it takes
/// back (status, duration in µs).
#[derive(Debug)]
pub(super) struct MonthChange<Added = DayStats> {
    pub customer: String,
    /// The month's first day.
    pub month: Day,
    pub added: Added,
    pub taken_back: Vec<(u16, u64)>,
}

/// The changes of a commit's months, folded from its days, which come in (customer, day) order:
/// a month is complete once a day of another month comes. The month being folded gathers its
/// days' histograms and merges them once, when it is complete (see [`RangeMerger`]).
#[derive(Debug, Default)]
pub(super) struct Months {
    current: Option<MonthChange<RangeMerger>>,
    complete: Vec<MonthChange>,
    /// What the complete months hold on the heap.
    complete_bytes: usize,
}

impl Months {
    /// Adds the requests of a day (its state compacted).
    pub fn add(&mut self, customer: &str, day: Day, state: &DayStats) {
        self.month_of(customer, day).added.push_ref(state);
    }

    /// Takes back a request of a day, taken back from the day itself.
    pub fn take_back(&mut self, customer: &str, day: Day, status: u16, duration_us: u64) {
        let month = self.month_of(customer, day);
        month.taken_back.push((status, duration_us));
    }

    fn month_of(&mut self, customer: &str, day: Day) -> &mut MonthChange<RangeMerger> {
        let month = day.first_of_month();
        let same =
            |current: &MonthChange<_>| current.customer == customer && current.month == month;
        if !self.current.as_ref().is_some_and(same) {
            self.complete_current();
            self.current = Some(MonthChange {
                customer: customer.to_owned(),
                month,
                added: RangeMerger::default(),
                taken_back: Vec::new(),
            });
        }
        self.current.as_mut().expect("just set")
    }

    fn complete_current(&mut self) {
        if let Some(current) = self.current.take() {
            let added = current.added.finish();
            self.complete_bytes += added.heap_bytes();
            self.complete.push(MonthChange {
                added,
                customer: current.customer,
                month: current.month,
                taken_back: current.taken_back,
            });
        }
    }

    /// Whether enough months are complete to be written together.
    pub fn is_full(&self) -> bool {
        self.complete.len() >= MONTHS_PER_WRITE || self.complete_bytes >= MONTH_BYTES_PER_WRITE
    }

    /// The complete months, taken out.
    pub fn take_complete(&mut self) -> Vec<MonthChange> {
        self.complete_bytes = 0;
        std::mem::take(&mut self.complete)
    }

    /// Every month, the one still open included (the commit's days are over).
    pub fn take_all(&mut self) -> Vec<MonthChange> {
        self.complete_current();
        self.take_complete()
    }
}

/// A stored month after its change, ready to write.
pub(super) struct MergedMonth {
    pub customer: String,
    pub month: Day,
    pub state: DayStats,
}

/// The whole months of `from..=to`, as their first day and the last day of the last of them; when
/// there is none, `from` and the day before it (an empty range: every day of `from..=to` lies
/// outside it).
pub(super) fn whole_months(from: NaiveDate, to: NaiveDate) -> (NaiveDate, NaiveDate) {
    let (from, to) = (Day::from_naive_date(from), Day::from_naive_date(to));
    let first = if from == from.first_of_month() {
        from
    } else {
        from.first_of_month().plus(31).first_of_month()
    };
    let after_last = to.plus(1).first_of_month();
    if first >= after_last {
        // Before `from` (after 9999-12-31 would not compare as a date in SQLite's text).
        return (from.to_naive_date(), from.plus(-1).to_naive_date());
    }
    (first.to_naive_date(), after_last.plus(-1).to_naive_date())
}

/// Whether every stored day is in its month (`ingest_totals.months_built`).
pub(super) const MONTHS_BUILT: &str = "SELECT months_built FROM ingest_totals WHERE id = 1";
pub(super) const MARK_MONTHS_BUILT: &str = "UPDATE ingest_totals SET months_built = 1 WHERE id = 1";
pub(super) const CLEAR_MONTHS: &str = "DELETE FROM customer_months";
pub(super) const DELETE_MONTH: &str =
    "DELETE FROM customer_months WHERE customer_id = $1 AND month = $2";

/// The days after the key (`$1`, `$2`) in key order, `$3` at most, with their state.
pub(super) static SELECT_DAYS_AFTER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT customer_id, date, {STATE_COLUMNS} FROM resource_statistics_by_day \
         WHERE (customer_id, date) > ($1, $2) ORDER BY customer_id, date LIMIT $3"
    )
});

/// Selects the stored state of the (customer, month) keys of a `VALUES` list that follows, closed
/// by [`MONTH_KEYS_JOIN`] (as the days' `select_keys`).
pub(super) static SELECT_MONTH_KEYS: LazyLock<String> =
    LazyLock::new(|| format!("SELECT customer_id, month, {STATE_COLUMNS} FROM ("));

pub(super) const MONTH_KEYS_JOIN: &str = ") AS k JOIN customer_months \
     ON customer_id = k.column1 AND month = k.column2";

/// Inserts or replaces one month: `$1` the customer, `$2` the month, then [`STATE_COLUMNS`].
pub(super) static UPSERT_MONTH: LazyLock<String> = LazyLock::new(|| {
    let values: Vec<String> = (1..=2 + STATE_COLUMN_COUNT)
        .map(|i| format!("${i}"))
        .collect();
    upsert_months(&format!("VALUES ({})", values.join(", ")))
});

/// Inserts or replaces months given as one array a column (PostgreSQL: one statement a chunk).
pub(super) static UPSERT_MONTHS_UNNEST: LazyLock<String> = LazyLock::new(|| {
    let types = ["text[]", "date[]"]
        .into_iter()
        .chain(["int8[]"; STATE_COLUMN_COUNT - 1])
        .chain(["bytea[]"]);
    let arrays: Vec<String> = types
        .enumerate()
        .map(|(i, t)| format!("${}::{t}", i + 1))
        .collect();
    upsert_months(&format!("SELECT * FROM UNNEST({})", arrays.join(", ")))
});

/// An insert of the rows of `source` into the months, replacing those stored.
fn upsert_months(source: &str) -> String {
    let set: Vec<String> = STATE_COLUMNS
        .split(", ")
        .map(|column| format!("{column} = excluded.{column}"))
        .collect();
    format!(
        "INSERT INTO customer_months (customer_id, month, {STATE_COLUMNS}) {source} \
         ON CONFLICT (customer_id, month) DO UPDATE SET {}",
        set.join(", ")
    )
}

/// The state columns of a month as a write binds them: the counts by class, the two sums as low
/// and high parts, then the histogram's bytes.
pub(super) fn state_values(state: &DayStats) -> ([i64; 9], Vec<u8>) {
    let (sum, sum_high) = super::stored_wide(state.duration_sum_us);
    let (success, success_high) = super::stored_wide(state.success_duration_sum_us);
    let [c1, c2, c3, c4, c5] = state.by_class.map(super::stored);
    (
        [c1, c2, c3, c4, c5, sum, sum_high, success, success_high],
        state.histogram.to_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn whole_months_of_a_range() {
        let cases = [
            ("2024-01-01", "2024-12-31", ("2024-01-01", "2024-12-31")),
            ("2024-01-02", "2024-12-30", ("2024-02-01", "2024-11-30")),
            ("2024-02-01", "2024-02-29", ("2024-02-01", "2024-02-29")),
            ("2024-02-01", "2024-02-28", ("2024-02-01", "2024-01-31")),
            ("2024-01-31", "2024-03-01", ("2024-02-01", "2024-02-29")),
            ("2024-01-15", "2024-01-20", ("2024-01-15", "2024-01-14")),
            ("0001-01-01", "9999-12-31", ("0001-01-01", "9999-12-31")),
            ("9999-12-02", "9999-12-31", ("9999-12-02", "9999-12-01")),
            ("9999-11-30", "9999-12-31", ("9999-12-01", "9999-12-31")),
        ];
        for (from, to, (first, last)) in cases {
            assert_eq!(
                whole_months(date(from), date(to)),
                (date(first), date(last)),
                "{from}..{to}"
            );
        }
    }

    #[test]
    fn a_commits_days_fold_into_their_months_in_order() {
        let mut months = Months::default();
        let day = |text: &str| Day::parse(text.as_bytes()).unwrap();
        let state = |durations: &[u64]| {
            let mut state = DayStats::default();
            durations.iter().for_each(|&d| state.record(200, d));
            state.compact();
            state
        };
        months.add("a", day("2024-01-30"), &state(&[1, 2]));
        months.add("a", day("2024-01-31"), &state(&[2]));
        months.take_back("a", day("2024-01-31"), 200, 2);
        months.add("a", day("2024-02-01"), &state(&[3]));
        months.add("b", day("2024-02-01"), &state(&[4]));
        let all = months.take_all();
        let keys: Vec<(&str, String, u64, usize)> = all
            .iter()
            .map(|m| {
                let total = m.added.total();
                (
                    m.customer.as_str(),
                    m.month.to_string(),
                    total,
                    m.taken_back.len(),
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                ("a", "2024-01-01".into(), 3, 1),
                ("a", "2024-02-01".into(), 1, 0),
                ("b", "2024-02-01".into(), 1, 0)
            ]
        );
    }
}
