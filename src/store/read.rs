//! The API's queries: daily rows of a customer, the customer list, and a range's merged state.

use std::sync::LazyLock;

use chrono::NaiveDate;
use serde::Serialize;

use super::batch::{STATISTICS_COLUMNS, day_column_names};
use super::months::{MONTHS_BUILT, whole_months};
use super::postgres_batches::RangeRead;
use super::{STATE_COLUMNS, Store, StoredRow, count, state_from_row};
use crate::stats::{DayStats, RangeMerger, Statistics};

/// One stored day of one customer, as the API returns it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DayRow {
    pub customer_id: String,
    pub date: NaiveDate,
    #[serde(flatten)]
    pub statistics: Statistics,
}

/// One customer in the customer list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CustomerSummary {
    pub customer_id: String,
    /// The first day with data.
    pub first_day: NaiveDate,
    /// The last day with data.
    pub last_day: NaiveDate,
    pub total_requests: u64,
}

/// Whole-database figures for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StoreTotals {
    /// Requests stored (the sum of every day's `total_requests`): every accepted line ingested.
    pub requests: u64,
    /// Stored (customer, day) groups.
    pub days: u64,
    pub customers: u64,
    /// Input files with recorded progress, and the bytes of them consumed (sum of offsets).
    pub files: u64,
    pub ingested_bytes: u64,
    /// Lines ingestion read (accepted or rejected) and rejected, in all.
    pub ingested_lines: u64,
    pub rejected_lines: u64,
    /// When ingestion last committed (seconds since the Unix epoch; 0 when never).
    pub last_commit_unix: f64,
}

const SELECT_TOTALS: &str = "SELECT CAST(COALESCE(SUM(total_requests), 0) AS BIGINT) AS requests, \
     COUNT(*) AS days, COUNT(DISTINCT customer_id) AS customers FROM resource_statistics_by_day";
/// Files and bytes ingested (rows kept for files known by content only, `retired:`, are no files).
const SELECT_PROGRESS_TOTALS: &str = "SELECT \
     CAST(COALESCE(SUM(CASE WHEN path LIKE 'retired:%' THEN 0 ELSE 1 END), 0) AS BIGINT) AS files, \
     CAST(COALESCE(SUM(byte_offset), 0) AS BIGINT) AS bytes FROM ingest_progress";
const SELECT_INGEST_TOTALS: &str =
    "SELECT lines, rejected, last_commit_unix FROM ingest_totals WHERE id = 1";
/// A customer's days in a range, the statistics of [`DAY_COLUMNS`] after the key.
static SELECT_DAYS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT customer_id, date, {} FROM resource_statistics_by_day \
         WHERE customer_id = $1 AND date >= $2 AND date <= $3 ORDER BY date",
        day_column_names(STATISTICS_COLUMNS)
    )
});
/// A page of customers after `$1`, or only customer `$2` when it is not null; `$3` at most.
const SELECT_CUSTOMERS: &str = "SELECT customer_id, MIN(date) AS first_day, MAX(date) AS last_day, \
     CAST(SUM(total_requests) AS BIGINT) AS total_requests FROM resource_statistics_by_day \
     WHERE customer_id > $1 AND ($2 IS NULL OR customer_id = $2) \
     GROUP BY customer_id ORDER BY customer_id LIMIT $3";

/// The stored states of a customer's range (built once: it is on every summary's path): its
/// whole months from `$4` to `$5` (the last day of the last), and its days outside them; every day
/// while the months are not built yet.
static SELECT_RANGE_STATE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} AND (date < $4 OR date > $5 OR ({MONTHS_BUILT}) = 0) \
         UNION ALL SELECT {STATE_COLUMNS} FROM customer_months \
         WHERE customer_id = $1 AND month >= $4 AND month <= $5 AND ({MONTHS_BUILT}) = 1",
        super::batch::select_state("")
    )
});
/// The date, stored state and breakdown of each of a customer's days in a range, by date.
static SELECT_DAY_STATES: LazyLock<String> = LazyLock::new(|| {
    let select = super::batch::select_state("date, ");
    let select = select.replacen(" FROM ", ", resources FROM ", 1);
    format!("{select} ORDER BY date")
});

/// What a row of a customer's range reads as, whichever driver read it.
pub(super) trait FromStoredRow: Sized + Send + 'static {
    fn from_row(row: &impl StoredRow) -> anyhow::Result<Self>;
}

impl FromStoredRow for DayRow {
    fn from_row(row: &impl StoredRow) -> anyhow::Result<DayRow> {
        day_from_row(row)
    }
}

/// A day's date and state with its breakdown, from a row of [`SELECT_DAY_STATES`].
impl FromStoredRow for (NaiveDate, DayStats) {
    fn from_row(row: &impl StoredRow) -> anyhow::Result<(NaiveDate, DayStats)> {
        Ok((row.date(0)?, super::state_with_resources(row, 1)?))
    }
}

/// A [`DayRow`] from a row of [`SELECT_DAYS`], by column position: looking 18 columns up by name
/// was a sixth of a request's time.
pub(super) fn day_from_row(row: &impl StoredRow) -> anyhow::Result<DayRow> {
    let count_at = |column| row.integer(column).map(count);
    Ok(DayRow {
        customer_id: row.text(0)?,
        date: row.date(1)?,
        statistics: Statistics {
            success_requests: count_at(2)?,
            failed_requests: count_at(3)?,
            uptime_percentage: row.real(4)?,
            duration_mean: row.real(5)?,
            duration_p50: row.real(6)?,
            duration_p99: row.real(7)?,
            total_requests: count_at(8)?,
            status_1xx: count_at(9)?,
            status_2xx: count_at(10)?,
            status_3xx: count_at(11)?,
            status_4xx: count_at(12)?,
            status_5xx: count_at(13)?,
            availability_percentage: row.real(14)?,
            duration_p90: row.real(15)?,
            duration_p95: row.real(16)?,
            duration_max: row.real(17)?,
        },
    })
}

/// A [`CustomerSummary`] from a row of [`SELECT_CUSTOMERS`].
fn customer_from_row(row: &impl StoredRow) -> anyhow::Result<CustomerSummary> {
    Ok(CustomerSummary {
        customer_id: row.text(0)?,
        first_day: row.date(1)?,
        last_day: row.date(2)?,
        total_requests: count(row.integer(3)?),
    })
}

/// [`StoreTotals`] from the rows of [`SELECT_TOTALS`], [`SELECT_PROGRESS_TOTALS`] and
/// [`SELECT_INGEST_TOTALS`].
fn totals_from_rows(
    stored: &impl StoredRow,
    progress: &impl StoredRow,
    ingest: &impl StoredRow,
) -> anyhow::Result<StoreTotals> {
    Ok(StoreTotals {
        requests: count(stored.integer(0)?),
        days: count(stored.integer(1)?),
        customers: count(stored.integer(2)?),
        files: count(progress.integer(0)?),
        ingested_bytes: count(progress.integer(1)?),
        ingested_lines: count(ingest.integer(0)?),
        rejected_lines: count(ingest.integer(1)?),
        last_commit_unix: ingest.real(2)?,
    })
}

impl Store {
    /// The days of `customer` with `from <= date <= to`, ascending.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn days(
        &self,
        customer: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> anyhow::Result<Vec<DayRow>> {
        self.customer_range(&SELECT_DAYS, customer, from, to).await
    }

    /// The state of every day of `customer` in the range, by date, with its breakdown by
    /// resource when it has one.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn day_states(
        &self,
        customer: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> anyhow::Result<Vec<(NaiveDate, DayStats)>> {
        self.customer_range(&SELECT_DAY_STATES, customer, from, to)
            .await
    }

    /// Every row of `select` (`$1` a customer, `$2` and `$3` the first and last day), decoded:
    /// SQLite's on a reader thread, PostgreSQL's from the pool.
    pub(super) async fn customer_range<T: FromStoredRow>(
        &self,
        select: &'static str,
        customer: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> anyhow::Result<Vec<T>> {
        self.guarded(async {
            self.ready().await?;
            if let Some(readers) = &self.readers {
                let customer = customer.to_owned();
                return readers
                    .read(move |connection| {
                        let mut statement = connection.prepare_cached(select)?;
                        let mut rows = statement.query((customer, from, to))?;
                        let mut decoded = Vec::new();
                        while let Some(row) = rows.next()? {
                            decoded.push(T::from_row(&super::sqlite_reads::Row(row))?);
                        }
                        Ok(decoded)
                    })
                    .await;
            }
            let read = RangeRead {
                customer: customer.to_owned(),
                from,
                to,
                months: None,
            };
            let rows = self.postgres_range(select, read).await?;
            rows.iter().map(|row| T::from_row(row)).collect()
        })
        .await
    }

    /// The exact merged state of every day of `customer` in the range (empty when there is none).
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn range_state(
        &self,
        customer: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> anyhow::Result<DayStats> {
        self.guarded(async {
            self.ready().await?;
            let select = SELECT_RANGE_STATE.as_str();
            let (first, last) = whole_months(from, to);
            let mut merged = RangeMerger::default();
            if let Some(readers) = &self.readers {
                let customer = customer.to_owned();
                return readers
                    .read(move |connection| {
                        let mut statement = connection.prepare_cached(select)?;
                        let mut rows = statement.query((customer, from, to, first, last))?;
                        while let Some(row) = rows.next()? {
                            merged.push(state_from_row(&super::sqlite_reads::Row(row), 0)?);
                        }
                        Ok(merged.finish())
                    })
                    .await;
            }
            let read = RangeRead {
                customer: customer.to_owned(),
                from,
                to,
                months: Some((first, last)),
            };
            for row in self.postgres_range(select, read).await? {
                merged.push(state_from_row(&row, 0)?);
            }
            Ok(merged.finish())
        })
        .await
    }

    /// Whole-database figures (three aggregate queries, one round trip each).
    pub async fn totals(&self) -> anyhow::Result<StoreTotals> {
        self.guarded(async {
            self.ready().await?;
            if let Some(readers) = &self.readers {
                return readers
                    .read(|connection| {
                        use super::sqlite_reads::Row;
                        let mut statements = [
                            connection.prepare_cached(SELECT_TOTALS)?,
                            connection.prepare_cached(SELECT_PROGRESS_TOTALS)?,
                            connection.prepare_cached(SELECT_INGEST_TOTALS)?,
                        ];
                        let [stored, progress, ingest] = &mut statements;
                        let (mut stored, mut progress, mut ingest) =
                            (stored.query([])?, progress.query([])?, ingest.query([])?);
                        let no_row = || anyhow::anyhow!("an aggregate answered no row");
                        totals_from_rows(
                            &Row(stored.next()?.ok_or_else(no_row)?),
                            &Row(progress.next()?.ok_or_else(no_row)?),
                            &Row(ingest.next()?.ok_or_else(no_row)?),
                        )
                    })
                    .await;
            }
            let mut connection = self.postgres_lease().await?;
            let row = sqlx::query(SELECT_TOTALS)
                .fetch_one(&mut *connection)
                .await?;
            let progress = sqlx::query(SELECT_PROGRESS_TOTALS)
                .fetch_one(&mut *connection)
                .await?;
            let ingest = sqlx::query(SELECT_INGEST_TOTALS)
                .fetch_one(&mut *connection)
                .await?;
            connection.give_back();
            totals_from_rows(&row, &progress, &ingest)
        })
        .await
    }

    /// Customers with their first and last day and total requests, by id: at most `limit`, with
    /// ids after `after` (all when empty), and only customer `only` when given.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn customers(
        &self,
        after: &str,
        only: Option<&str>,
        limit: usize,
    ) -> anyhow::Result<Vec<CustomerSummary>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.guarded(async {
            self.ready().await?;
            if let Some(readers) = &self.readers {
                let (after, only) = (after.to_owned(), only.map(str::to_owned));
                return readers
                    .read(move |connection| {
                        let mut statement = connection.prepare_cached(SELECT_CUSTOMERS)?;
                        let mut rows = statement.query((after, only, limit))?;
                        let mut customers = Vec::new();
                        while let Some(row) = rows.next()? {
                            customers.push(customer_from_row(&super::sqlite_reads::Row(row))?);
                        }
                        Ok(customers)
                    })
                    .await;
            }
            let rows = self
                .postgres_rows(
                    sqlx::query(SELECT_CUSTOMERS)
                        .bind(after)
                        .bind(only)
                        .bind(limit),
                )
                .await?;
            rows.iter().map(customer_from_row).collect()
        })
        .await
    }
}
