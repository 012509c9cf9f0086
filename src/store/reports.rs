//! The reports' queries: a customer's daily totals for the SLA, and every customer's days a page
//! at a time for the bulk export.

use std::sync::LazyLock;

use chrono::NaiveDate;

use super::batch::{STATISTICS_COLUMNS, day_column_names};
use super::read::{DayRow, FromStoredRow, day_from_row};
use super::{Store, StoredRow, count, wide};
use crate::sla::DayTotals;

/// A customer's days in a range, with what the SLA counts: requests, 5xx, and the exact duration
/// sums (128-bit, as low and high columns).
const SELECT_DAY_TOTALS: &str = "SELECT date, total_requests, status_5xx, \
     duration_sum_us, duration_sum_us_high, success_duration_sum_us, success_duration_sum_us_high \
     FROM resource_statistics_by_day \
     WHERE customer_id = $1 AND date >= $2 AND date <= $3 ORDER BY date";

/// A page of the export: the days after the key (`$1`, `$2`) in (customer, date) order, within the
/// dates `$3..=$4`, of customer `$5` only when it is not null; `$6` at most. The row-value
/// comparison is a range on the primary key for both backends (a seek, not a scan from the start).
static SELECT_EXPORT_PAGE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT customer_id, date, {} FROM resource_statistics_by_day \
         WHERE (customer_id, date) > ($1, $2) AND date >= $3 AND date <= $4 \
         AND ($5 IS NULL OR customer_id = $5) \
         ORDER BY customer_id, date LIMIT $6",
        day_column_names(STATISTICS_COLUMNS)
    )
});

/// A [`DayTotals`] from a row of [`SELECT_DAY_TOTALS`].
impl FromStoredRow for DayTotals {
    fn from_row(row: &impl StoredRow) -> anyhow::Result<DayTotals> {
        Ok(DayTotals {
            date: row.date(0)?,
            total_requests: count(row.integer(1)?),
            status_5xx: count(row.integer(2)?),
            duration_sum_us: wide(row.integer(3)?, row.integer(4)?),
            success_duration_sum_us: wide(row.integer(5)?, row.integer(6)?),
        })
    }
}

/// Where an export stands: the last (customer, date) sent, and what it is restricted to.
#[derive(Clone, Debug)]
pub struct ExportCursor {
    from: NaiveDate,
    to: NaiveDate,
    only: Option<String>,
    /// The key of the last row read; `("", from)` before the first page (no id is empty).
    after: (String, NaiveDate),
    done: bool,
}

impl ExportCursor {
    /// An export of every day with `from <= date <= to`, of customer `only` alone when given.
    pub fn new(from: NaiveDate, to: NaiveDate, only: Option<String>) -> ExportCursor {
        ExportCursor {
            from,
            to,
            only,
            after: (String::new(), from),
            done: false,
        }
    }

    /// Whether the last page was read.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Moves past `page`, which asked for `limit` rows: a shorter page was the last.
    fn advance(&mut self, page: &[DayRow], limit: usize) {
        match page.last() {
            Some(last) if page.len() == limit => {
                self.after = (last.customer_id.clone(), last.date);
            }
            _ => self.done = true,
        }
    }
}

impl Store {
    /// The days of `customer` with `from <= date <= to` (at most a month's: the SLA's), by date,
    /// with their request counts and exact duration sums.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn day_totals(
        &self,
        customer: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> anyhow::Result<Vec<DayTotals>> {
        self.customer_range(SELECT_DAY_TOTALS, customer, from, to)
            .await
    }

    /// The next page of an export, at most `limit` rows in (customer, date) order; empty once
    /// the export is over. Each page is a read of its own (one turn of the read pool, one
    /// statement): an export holds no connection between pages, however slowly its client reads.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn export_page(
        &self,
        cursor: &mut ExportCursor,
        limit: usize,
    ) -> anyhow::Result<Vec<DayRow>> {
        if cursor.done {
            return Ok(Vec::new());
        }
        let page = self
            .guarded(async {
                self.ready().await?;
                let bound = i64::try_from(limit).unwrap_or(i64::MAX);
                let (from, to) = (cursor.from, cursor.to);
                let (after, after_date) = cursor.after.clone();
                let only = cursor.only.clone();
                if let Some(readers) = &self.readers {
                    return readers
                        .read(move |connection| {
                            super::sqlite_reads::without_mmap(connection, |connection| {
                                let mut statement =
                                    connection.prepare_cached(&SELECT_EXPORT_PAGE)?;
                                let mut rows =
                                    statement.query((after, after_date, from, to, only, bound))?;
                                let mut days = Vec::with_capacity(limit);
                                while let Some(row) = rows.next()? {
                                    days.push(day_from_row(&super::sqlite_reads::Row(row))?);
                                }
                                Ok(days)
                            })
                        })
                        .await;
                }
                let rows = self
                    .postgres_rows(
                        sqlx::query(SELECT_EXPORT_PAGE.as_str())
                            .bind(after)
                            .bind(after_date)
                            .bind(from)
                            .bind(to)
                            .bind(only)
                            .bind(bound),
                    )
                    .await?;
                rows.iter().map(day_from_row).collect()
            })
            .await?;
        cursor.advance(&page, limit);
        Ok(page)
    }
}
