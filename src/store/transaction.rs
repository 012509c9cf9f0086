//! The steps of one writing transaction, one method each, whatever the backend: the commit
//! algorithm (`commit.rs`) is written once over [`WriteTx`]. PostgreSQL runs them through sqlx
//! (multi-row statements, one round trip per chunk); SQLite through rusqlite (`sqlite_writes.rs`:
//! prepared statements reused for every row, on the committing thread).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::NaiveDate;

use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{PgPool, Postgres};

use super::batch::{
    ADD_TOTALS, ANY_DAY, Column, DAY_COLUMNS, DELETE_DAY, FileCheckpoint, INSERT_DAYS, KEYS_JOIN,
    MergedDay, ON_CONFLICT_DAYS, ProgressRow, RETIRE_PROGRESS, RowValues, SELECT_PROGRESS,
    UPSERT_PROGRESS, day_column_names, select_keys,
};
use super::months::{
    DELETE_MONTH, MONTH_KEYS_JOIN, MONTHS_BUILT, MergedMonth, SELECT_DAYS_AFTER, SELECT_MONTH_KEYS,
    UPSERT_MONTHS_UNNEST, state_values,
};
use super::{
    POSTGRES, WRITER_LOCK_KEY, keyed_state_from_row, keyed_state_without_breakdown,
    say_when_waiting_for_the_lock, stored,
};
use crate::day::Day;
use crate::stats::DayStats;

/// One open writing transaction, holding the writer lock. Dropped without [`WriteTx::commit`],
/// it rolls back.
pub(super) trait WriteTx {
    /// Every progress row of `progress`'s file: under its path, or under another name with the
    /// same identity.
    async fn progress_rows(
        &mut self,
        progress: &FileCheckpoint,
    ) -> anyhow::Result<Vec<ProgressRow>>;

    /// Whether the table holds any day at all (when not, nothing needs reading back).
    async fn holds_any_day(&mut self) -> anyhow::Result<bool>;

    /// The stored state of those of `keys` that have a row.
    async fn stored_states(&mut self, keys: &[(String, Day)]) -> anyhow::Result<StoredStates>;

    /// Starts reading the stored state of `keys` (a chunk still to come) while the transaction
    /// goes on; [`WriteTx::stored_states`] of the same keys then takes what it read. A backend
    /// whose reads cost no round trip ignores it.
    fn read_ahead(&mut self, _keys: &[(String, Day)]) {}

    /// Inserts or replaces these days; `fresh` when the table held no day as this transaction
    /// began (nothing can conflict: the rows are only inserted, the fastest way there is).
    async fn write_days(&mut self, days: &mut [MergedDay], fresh: bool) -> anyhow::Result<()>;

    /// Inserts `days` into a table that held no day as this transaction began: nothing can
    /// conflict. Returns the days written.
    async fn insert_fresh(
        &mut self,
        days: impl Iterator<Item = anyhow::Result<MergedDay>> + Send,
    ) -> anyhow::Result<usize>;

    async fn delete_day(&mut self, customer: &str, day: Day) -> anyhow::Result<()>;

    /// Whether every stored day is in its month ([`MONTHS_BUILT`]).
    async fn months_built(&mut self) -> anyhow::Result<bool>;

    /// The stored state of those of the (customer, month) `keys` that have a row.
    async fn stored_months(&mut self, keys: &[(String, Day)]) -> anyhow::Result<StoredStates>;

    /// Inserts or replaces these months.
    async fn write_months(&mut self, months: &[MergedMonth]) -> anyhow::Result<()>;

    async fn delete_month(&mut self, customer: &str, month: Day) -> anyhow::Result<()>;

    /// Up to `limit` stored days after `after` in (customer, day) order, with their state (without
    /// breakdown).
    async fn days_after(
        &mut self,
        after: &(String, Day),
        limit: usize,
    ) -> anyhow::Result<Vec<((String, Day), DayStats)>>;

    /// Runs a statement that binds no value.
    async fn run(&mut self, sql: &'static str) -> anyhow::Result<()>;

    /// Keeps the progress row of `path` under the name `retired` (see [`RETIRE_PROGRESS`]).
    async fn retire_progress(&mut self, path: &str, retired: &str) -> anyhow::Result<()>;

    /// Records how far `progress`'s file is, under `path`.
    async fn record_progress(
        &mut self,
        path: &str,
        progress: &FileCheckpoint,
    ) -> anyhow::Result<()>;

    /// Adds to the stored totals of lines read and rejected, and stamps the commit's time.
    async fn add_totals(&mut self, lines: i64, rejected: i64, unix_now: f64) -> anyhow::Result<()>;

    async fn commit(self) -> anyhow::Result<()>;
}

/// A PostgreSQL transaction holding the writer's advisory lock, and the reads of stored days
/// started ahead of it ([`WriteTx::read_ahead`]).
pub(super) struct PgWrite {
    tx: sqlx::Transaction<'static, Postgres>,
    pool: PgPool,
    ahead: VecDeque<ReadAhead>,
    /// False once a read ahead failed (no second connection: the server's or the role's limit,
    /// say): the transaction then reads on its own connection, as it can.
    reading_ahead: bool,
}

/// Set once a read ahead found no connection to read on: the server or the role allows this
/// process too few, and each commit would wait for one in vain (commits read in turn from then
/// on).
static NO_SECOND_CONNECTION: AtomicBool = AtomicBool::new(false);

/// How long a read ahead waits for its connection (a connection opens in milliseconds; a server
/// refusing one more is retried until the pool's own timeout, much longer).
const SECOND_CONNECTION_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// A read of stored days on a connection of its own, so that the server looks up the next chunk's
/// days while this one is merged and written (one after the other, a commit into a table of
/// millions of days left both the server and this process idle half the time). It sees exactly
/// what the transaction would: the days committed before it, which no other writer can change
/// while the transaction holds the lock, and none of the transaction's own writes (it reads only
/// keys the transaction has not written: a commit's keys are distinct and come in order).
struct ReadAhead {
    keys: Vec<(String, Day)>,
    read: tokio::task::JoinHandle<anyhow::Result<StoredStates>>,
}

impl PgWrite {
    /// Begins a transaction and takes the writer lock (saying so when that waits).
    pub async fn begin(pool: &PgPool) -> anyhow::Result<PgWrite> {
        let lock = POSTGRES
            .writer_lock
            .expect("PostgreSQL serializes writers by a lock");
        let tx = say_when_waiting_for_the_lock(async {
            let mut tx = pool.begin_with(POSTGRES.begin_write).await?;
            sqlx::query(lock)
                .bind(WRITER_LOCK_KEY)
                .execute(&mut *tx)
                .await?;
            Ok::<_, sqlx::Error>(tx)
        })
        .await?;
        Ok(PgWrite {
            tx,
            pool: pool.clone(),
            ahead: VecDeque::new(),
            reading_ahead: true,
        })
    }
}

impl Drop for ReadAhead {
    /// A read no commit takes (the transaction was given up) stops; its connection goes back to
    /// the pool.
    fn drop(&mut self) {
        self.read.abort();
    }
}

/// The rows of `select`, the (customer, day) `keys` as two arrays unnested by the server, then
/// `join`: one statement whatever the number of keys, prepared once (a `VALUES` list of two
/// parameters a key was parsed and planned anew for every chunk).
async fn rows_of_keys(
    connection: &mut PgConnection,
    select: &str,
    join: &str,
    keys: &[(String, Day)],
) -> anyhow::Result<Vec<PgRow>> {
    let (customers, dates): (Vec<&str>, Vec<NaiveDate>) = keys
        .iter()
        .map(|(customer, day)| (customer.as_str(), day.to_naive_date()))
        .unzip();
    let sql = format!(
        "{select}SELECT * FROM unnest($1::text[], $2::date[]) AS u(column1, column2){join}"
    );
    Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(customers)
        .bind(dates)
        .fetch_all(connection)
        .await?)
}

/// The stored state of those of `keys` that have a day's row.
async fn stored_days(
    connection: &mut PgConnection,
    keys: &[(String, Day)],
) -> anyhow::Result<StoredStates> {
    let rows = rows_of_keys(connection, &select_keys(), KEYS_JOIN, keys).await?;
    rows.iter().map(keyed_state_from_row).collect()
}

impl WriteTx for PgWrite {
    async fn progress_rows(
        &mut self,
        progress: &FileCheckpoint,
    ) -> anyhow::Result<Vec<ProgressRow>> {
        Ok(sqlx::query_as(SELECT_PROGRESS)
            .bind(&progress.path)
            .bind(progress.file.device as i64)
            .bind(progress.file.inode as i64)
            .fetch_all(&mut *self.tx)
            .await?)
    }

    async fn holds_any_day(&mut self) -> anyhow::Result<bool> {
        Ok(sqlx::query(ANY_DAY)
            .fetch_optional(&mut *self.tx)
            .await?
            .is_some())
    }

    async fn stored_states(&mut self, keys: &[(String, Day)]) -> anyhow::Result<StoredStates> {
        if self.ahead.front().is_some_and(|ahead| ahead.keys == keys)
            && let Some(mut ahead) = self.ahead.pop_front()
        {
            let read = (&mut ahead.read)
                .await
                .map_err(anyhow::Error::from)
                .and_then(|states| states);
            match read {
                Ok(states) => return Ok(states),
                // Read again below: a failure that is not the connection's fails there too.
                Err(error) => {
                    tracing::debug!("reading stored days ahead failed ({error:#}): read in turn");
                    self.reading_ahead = false;
                    self.ahead.clear();
                }
            }
        }
        stored_days(&mut self.tx, keys).await
    }

    fn read_ahead(&mut self, keys: &[(String, Day)]) {
        if !self.reading_ahead || NO_SECOND_CONNECTION.load(Ordering::Relaxed) {
            return;
        }
        let pool = self.pool.clone();
        let owned = keys.to_vec();
        let read = tokio::spawn(async move {
            let acquired = tokio::time::timeout(SECOND_CONNECTION_WAIT, pool.acquire()).await;
            let Ok(Ok(mut connection)) = acquired else {
                NO_SECOND_CONNECTION.store(true, Ordering::Relaxed);
                anyhow::bail!("no second connection to read on");
            };
            stored_days(&mut connection, &owned).await
        });
        self.ahead.push_back(ReadAhead {
            keys: keys.to_vec(),
            read,
        });
    }

    async fn write_days(&mut self, days: &mut [MergedDay], fresh: bool) -> anyhow::Result<()> {
        // One array per column, unnested by the server: a statement of 23 parameters however
        // many days it writes (a multi-row VALUES list of 23 parameters a day is parsed and
        // planned anew for every chunk).
        let mut customers = Vec::with_capacity(days.len());
        let mut dates = Vec::with_capacity(days.len());
        let mut histograms = Vec::with_capacity(days.len());
        let mut breakdowns = Vec::with_capacity(days.len());
        let mut columns: Vec<ColumnArray> = Vec::new();
        for day in days.iter_mut() {
            // Written once: the name is not needed afterwards.
            customers.push(std::mem::take(&mut day.customer));
            dates.push(day.day.to_naive_date());
            let RowValues {
                columns: values,
                histogram,
                resources,
                ..
            } = day.values();
            histograms.push(histogram);
            breakdowns.push(resources);
            if columns.is_empty() {
                columns = values.iter().map(ColumnArray::of_kind).collect();
            }
            for (array, value) in columns.iter_mut().zip(values) {
                array.push(value);
            }
        }
        let types = ["text[]", "date[]"]
            .into_iter()
            .chain(columns.iter().map(ColumnArray::sql_type))
            .chain(["bytea[]", "bytea[]"]);
        let arrays: Vec<String> = types
            .enumerate()
            .map(|(i, t)| format!("${}::{t}", i + 1))
            .collect();
        let on_conflict = if fresh { "" } else { ON_CONFLICT_DAYS.as_str() };
        let sql = format!(
            "{}SELECT * FROM UNNEST({}){on_conflict}",
            *INSERT_DAYS,
            arrays.join(", ")
        );
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(customers)
            .bind(dates);
        for array in columns {
            insert = match array {
                ColumnArray::Integers(values) => insert.bind(values),
                ColumnArray::Reals(values) => insert.bind(values),
            };
        }
        insert
            .bind(histograms)
            .bind(breakdowns)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// One `COPY ... FROM STDIN` in PostgreSQL's binary format, streamed: the server inserts
    /// while the next rows are encoded (a statement per chunk waits for the server each time).
    async fn insert_fresh(
        &mut self,
        days: impl Iterator<Item = anyhow::Result<MergedDay>> + Send,
    ) -> anyhow::Result<usize> {
        static COPY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "COPY resource_statistics_by_day (customer_id, date, {}, duration_histogram, resources) \
                 FROM STDIN (FORMAT binary)",
                day_column_names(DAY_COLUMNS.len())
            )
        });
        let mut copy = self.tx.copy_in_raw(&COPY).await?;
        let mut rows = BinaryRows::new();
        let mut written = 0;
        let sent = async {
            for day in days {
                rows.push(&mut day?);
                written += 1;
                if rows.bytes.len() >= COPY_SEND_BYTES {
                    copy.send(rows.bytes.as_slice()).await?;
                    rows.bytes.clear();
                }
            }
            rows.end();
            copy.send(rows.bytes.as_slice()).await?;
            anyhow::Ok(())
        }
        .await;
        match sent {
            Ok(()) => {
                copy.finish().await?;
                Ok(written)
            }
            Err(error) => {
                let _ = copy.abort("the commit failed").await;
                Err(error)
            }
        }
    }

    async fn delete_day(&mut self, customer: &str, day: Day) -> anyhow::Result<()> {
        sqlx::query(DELETE_DAY)
            .bind(customer)
            .bind(day.to_naive_date())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn months_built(&mut self) -> anyhow::Result<bool> {
        let built: i64 = sqlx::query_scalar(MONTHS_BUILT)
            .fetch_one(&mut *self.tx)
            .await?;
        Ok(built == 1)
    }

    async fn stored_months(&mut self, keys: &[(String, Day)]) -> anyhow::Result<StoredStates> {
        let rows = rows_of_keys(&mut self.tx, &SELECT_MONTH_KEYS, MONTH_KEYS_JOIN, keys).await?;
        rows.iter().map(keyed_state_without_breakdown).collect()
    }

    async fn write_months(&mut self, months: &[MergedMonth]) -> anyhow::Result<()> {
        if months.is_empty() {
            return Ok(());
        }
        let mut columns: [Vec<i64>; 9] = std::array::from_fn(|_| Vec::with_capacity(months.len()));
        let mut histograms = Vec::with_capacity(months.len());
        for month in months {
            let (values, histogram) = state_values(&month.state);
            for (column, value) in columns.iter_mut().zip(values) {
                column.push(value);
            }
            histograms.push(histogram);
        }
        let customers: Vec<&str> = months.iter().map(|m| m.customer.as_str()).collect();
        let dates: Vec<_> = months.iter().map(|m| m.month.to_naive_date()).collect();
        let mut upsert = sqlx::query(UPSERT_MONTHS_UNNEST.as_str())
            .bind(customers)
            .bind(dates);
        for column in columns {
            upsert = upsert.bind(column);
        }
        upsert.bind(histograms).execute(&mut *self.tx).await?;
        Ok(())
    }

    async fn delete_month(&mut self, customer: &str, month: Day) -> anyhow::Result<()> {
        sqlx::query(DELETE_MONTH)
            .bind(customer)
            .bind(month.to_naive_date())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn days_after(
        &mut self,
        after: &(String, Day),
        limit: usize,
    ) -> anyhow::Result<Vec<((String, Day), DayStats)>> {
        let rows = sqlx::query(SELECT_DAYS_AFTER.as_str())
            .bind(&after.0)
            .bind(after.1.to_naive_date())
            .bind(i64::try_from(limit)?)
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter().map(keyed_state_without_breakdown).collect()
    }

    async fn run(&mut self, sql: &'static str) -> anyhow::Result<()> {
        sqlx::query(sql).execute(&mut *self.tx).await?;
        Ok(())
    }

    async fn record_progress(
        &mut self,
        path: &str,
        progress: &FileCheckpoint,
    ) -> anyhow::Result<()> {
        sqlx::query(UPSERT_PROGRESS)
            .bind(path)
            .bind(stored(progress.offset))
            .bind(progress.head_hash as i64)
            .bind(stored(progress.head_len))
            .bind(progress.file.device as i64)
            .bind(progress.file.inode as i64)
            .bind(stored(progress.decoded))
            .bind(stored(progress.tail))
            .bind(progress.end_hash as i64)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn retire_progress(&mut self, path: &str, retired: &str) -> anyhow::Result<()> {
        sqlx::query(RETIRE_PROGRESS)
            .bind(retired)
            .bind(path)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn add_totals(&mut self, lines: i64, rejected: i64, unix_now: f64) -> anyhow::Result<()> {
        sqlx::query(ADD_TOTALS)
            .bind(lines)
            .bind(rejected)
            .bind(unix_now)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn commit(self) -> anyhow::Result<()> {
        Ok(self.tx.commit().await?)
    }
}

/// Bytes of COPY data sent at a time.
const COPY_SEND_BYTES: usize = 1 << 20;

/// Days in PostgreSQL's binary COPY format: a header, then each row's fields as a length and the
/// value in network byte order, then a trailer.
struct BinaryRows {
    bytes: Vec<u8>,
}

/// Days from 1970-01-01 (a [`Day`]) to 2000-01-01 (PostgreSQL's dates count from there).
const POSTGRES_EPOCH_DAY: i32 = 10_957;

impl BinaryRows {
    fn new() -> BinaryRows {
        let mut bytes = Vec::with_capacity(COPY_SEND_BYTES + (64 << 10));
        bytes.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        bytes.extend_from_slice(&0i32.to_be_bytes()); // flags
        bytes.extend_from_slice(&0i32.to_be_bytes()); // header extension length
        BinaryRows { bytes }
    }

    fn push(&mut self, day: &mut MergedDay) {
        let RowValues {
            columns,
            histogram,
            resources,
            ..
        } = day.values();
        let fields = 2 + columns.len() + 2;
        self.bytes.extend_from_slice(&(fields as i16).to_be_bytes());
        self.field(day.customer.as_bytes());
        self.field(&(day.day.0 - POSTGRES_EPOCH_DAY).to_be_bytes());
        for column in columns {
            match column {
                Column::Integer(value) => self.field(&value.to_be_bytes()),
                Column::Real(value) => self.field(&value.to_be_bytes()),
            }
        }
        self.field(&histogram);
        match resources {
            Some(resources) => self.field(&resources),
            None => self.bytes.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }

    fn field(&mut self, value: &[u8]) {
        self.bytes
            .extend_from_slice(&(value.len() as i32).to_be_bytes());
        self.bytes.extend_from_slice(value);
    }

    fn end(&mut self) {
        self.bytes.extend_from_slice(&(-1i16).to_be_bytes());
    }
}

/// The values of one column for every day of a statement.
enum ColumnArray {
    Integers(Vec<i64>),
    Reals(Vec<f64>),
}

impl ColumnArray {
    fn of_kind(column: &Column) -> ColumnArray {
        match column {
            Column::Integer(_) => ColumnArray::Integers(Vec::new()),
            Column::Real(_) => ColumnArray::Reals(Vec::new()),
        }
    }

    fn push(&mut self, column: Column) {
        match (self, column) {
            (ColumnArray::Integers(values), Column::Integer(value)) => values.push(value),
            (ColumnArray::Reals(values), Column::Real(value)) => values.push(value),
            _ => unreachable!("every day has the same kind of value in a column"),
        }
    }

    fn sql_type(&self) -> &'static str {
        match self {
            ColumnArray::Integers(_) => "int8[]",
            ColumnArray::Reals(_) => "float8[]",
        }
    }
}

/// Stored states by key, for merging.
pub(super) type StoredStates = HashMap<(String, Day), DayStats>;
