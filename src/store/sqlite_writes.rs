//! Ingestion's writes on SQLite, through a connection of their own on the committing thread:
//! every statement is prepared once per transaction and run for each row with its values bound in
//! place. sqlx built a multi-row statement of 23,000 bound values per thousand days, copied every
//! value into its own argument list and ran it on a worker thread behind a channel; the days of a
//! large commit were written at a fraction of SQLite's own speed.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql, params};

use super::batch::{
    ADD_TOTALS, ANY_DAY, CHUNK_ROWS, Column, DAY_COLUMNS, DELETE_DAY, FileCheckpoint, INSERT_DAYS,
    KEYS_JOIN, MergedDay, ON_CONFLICT_DAYS, ProgressRow, RETIRE_PROGRESS, RowValues,
    SELECT_PROGRESS, UPSERT_PROGRESS, select_keys,
};
use super::months::{
    DELETE_MONTH, MONTH_KEYS_JOIN, MONTHS_BUILT, MergedMonth, SELECT_DAYS_AFTER, SELECT_MONTH_KEYS,
    UPSERT_MONTH, state_values,
};
use super::transaction::{StoredStates, WriteTx};
use super::{
    LOCK_PATIENCE, keyed_state_from_row, keyed_state_without_breakdown,
    report_waiting_for_the_lock, stored,
};
use crate::day::Day;
use crate::stats::DayStats;

/// How long a writer waits for another's lock before it gives up (as sqlx's busy timeout did).
const LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the writer sleeps between two tries of a lock another connection holds.
const LOCK_RETRY: Duration = Duration::from_millis(2);

/// Page cache of the writing connection: a commit of millions of days touches many pages.
const CACHE_KIB: i64 = 8 << 10;

/// A SQLite write transaction (`BEGIN IMMEDIATE`: the writer lock is taken at once).
pub(super) struct SqliteWrite {
    connection: Connection,
}

impl SqliteWrite {
    /// Opens the database the store's pool opens (`path`, as sqlx names it) and begins a write
    /// transaction, waiting (and saying so after a second) while another writer holds the lock.
    pub fn begin(path: &Path) -> anyhow::Result<SqliteWrite> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        // `sqlite::memory:`: sqlx names the database and shares its cache between connections, so
        // that this one joins the same database.
        let in_memory = path
            .to_str()
            .is_some_and(|name| name.starts_with(SQLX_IN_MEMORY));
        let flags = match in_memory {
            true => {
                flags
                    | OpenFlags::SQLITE_OPEN_MEMORY
                    | OpenFlags::SQLITE_OPEN_SHARED_CACHE
                    | OpenFlags::SQLITE_OPEN_URI
            }
            false => flags,
        };
        let connection = Connection::open_with_flags(path, flags)?;
        connection.busy_handler(Some(wait_for_the_lock))?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.pragma_update(None, "cache_size", -CACHE_KIB)?;
        connection.execute_batch("BEGIN IMMEDIATE")?;
        Ok(SqliteWrite { connection })
    }
}

/// How sqlx names an in-memory database (`sqlite::memory:`).
const SQLX_IN_MEMORY: &str = "file:sqlx-in-memory-";

thread_local! {
    /// When the present wait for a lock began (SQLite calls the busy handler on the waiting
    /// thread, with 0 retries at the start of each wait).
    static WAITING_SINCE: std::cell::Cell<Instant> = std::cell::Cell::new(Instant::now());
}

/// SQLite's busy handler: retries every [`LOCK_RETRY`], reports a wait past [`LOCK_PATIENCE`],
/// gives up after [`LOCK_TIMEOUT`], all in real time (retries take longer than their sleep on a
/// loaded machine).
fn wait_for_the_lock(retries: i32) -> bool {
    if retries == 0 {
        WAITING_SINCE.set(Instant::now());
    }
    let waited = WAITING_SINCE.get().elapsed();
    if waited >= LOCK_PATIENCE {
        report_waiting_for_the_lock();
    }
    if waited >= LOCK_TIMEOUT {
        return false;
    }
    std::thread::sleep(LOCK_RETRY);
    true
}

impl ToSql for Column {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Owned(match *self {
            Column::Integer(value) => Value::Integer(value),
            Column::Real(value) => Value::Real(value),
        }))
    }
}

/// A date as SQLite keeps it (the text `YYYY-MM-DD`, as sqlx and rusqlite write a `NaiveDate`),
/// without going through a formatter.
struct DateText([u8; 10]);

impl DateText {
    fn of(day: Day) -> DateText {
        let (year, month, date) = day.ymd();
        let mut text = *b"0000-00-00";
        let digits = |out: &mut [u8], mut value: u32| {
            for slot in out.iter_mut().rev() {
                *slot = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        // Stored days lie in 0001..=9999 (see `Day::is_storable`).
        digits(&mut text[0..4], year.clamp(0, 9999) as u32);
        digits(&mut text[5..7], month);
        digits(&mut text[8..10], date);
        DateText(text)
    }
}

impl ToSql for DateText {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(&self.0)))
    }
}

/// Chunks of prepared rows that may wait for the writer.
const PREPARED_CHUNKS: usize = 4;

/// Values bound for a day: its key, [`DAY_COLUMNS`], its histogram, its breakdown.
const VALUES_PER_DAY: usize = DAY_COLUMNS.len() + 4;

/// Days a fresh table's insert writes per statement.
const DAYS_PER_INSERT: usize = 16;

/// The values of `days` days.
fn values_sql(days: usize) -> String {
    let row = format!("({})", vec!["?"; VALUES_PER_DAY].join(", "));
    format!("VALUES {}", vec![row; days].join(", "))
}

/// An insert of `days` days into a table that held none. `OR ROLLBACK`: a row breaking a
/// constraint (a bug) fails the whole transaction, as any error of a commit does, so SQLite keeps
/// no statement journal to undo one statement of many rows alone (a copy of every page it
/// changes, written to a temporary file: a tenth of a big commit's time).
fn insert_sql(days: usize) -> String {
    let insert = INSERT_DAYS.replacen("INSERT", "INSERT OR ROLLBACK", 1);
    format!("{insert}{}", values_sql(days))
}

/// The statement that writes a day: an insert into a table that held no day, an upsert otherwise.
fn write_days_sql(fresh: bool) -> &'static str {
    static INSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| insert_sql(1));
    static UPSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!("{}{}{}", *INSERT_DAYS, values_sql(1), *ON_CONFLICT_DAYS)
    });
    if fresh { &INSERT } else { &UPSERT }
}

/// An insert of [`DAYS_PER_INSERT`] days into a table that held none.
fn insert_many_sql() -> &'static str {
    static INSERT: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| insert_sql(DAYS_PER_INSERT));
    &INSERT
}

/// A day's values, computed and ready to bind.
struct PreparedDay {
    customer: String,
    date: DateText,
    columns: [Column; DAY_COLUMNS.len()],
    histogram: Vec<u8>,
    resources: Option<Vec<u8>>,
}

impl PreparedDay {
    fn of(day: &mut MergedDay) -> PreparedDay {
        let RowValues {
            columns,
            histogram,
            resources,
            ..
        } = day.values();
        PreparedDay {
            columns,
            customer: std::mem::take(&mut day.customer),
            date: DateText::of(day.day),
            histogram,
            resources,
        }
    }

    /// Binds the day's values to `statement` (see [`write_days_sql`]) and runs it.
    fn write(&self, statement: &mut rusqlite::CachedStatement<'_>) -> anyhow::Result<()> {
        self.bind(statement, 0)?;
        statement.raw_execute()?;
        Ok(())
    }

    /// Binds the day's values as the `row`th row of a statement's `VALUES` list.
    fn bind(
        &self,
        statement: &mut rusqlite::CachedStatement<'_>,
        row: usize,
    ) -> anyhow::Result<()> {
        let first = row * VALUES_PER_DAY + 1;
        statement.raw_bind_parameter(first, &self.customer)?;
        statement.raw_bind_parameter(first + 1, &self.date)?;
        for (index, column) in self.columns.iter().enumerate() {
            statement.raw_bind_parameter(first + 2 + index, column)?;
        }
        statement.raw_bind_parameter(first + VALUES_PER_DAY - 2, &self.histogram)?;
        statement.raw_bind_parameter(first + VALUES_PER_DAY - 1, &self.resources)?;
        Ok(())
    }
}

impl SqliteWrite {
    /// The states of `keys` that `select`, a `VALUES` list of them, then `join` read, each row
    /// decoded by `decode`.
    fn states_of_keys(
        &self,
        select: &str,
        join: &str,
        keys: &[(String, Day)],
        decode: impl Fn(&super::sqlite_reads::Row) -> anyhow::Result<((String, Day), DayStats)>,
    ) -> anyhow::Result<StoredStates> {
        let values = vec!["(?, ?)"; keys.len()].join(", ");
        let mut select = self
            .connection
            .prepare_cached(&format!("{select}VALUES {values}{join}"))?;
        let dates: Vec<DateText> = keys.iter().map(|(_, day)| DateText::of(*day)).collect();
        let bound: Vec<&dyn ToSql> = keys
            .iter()
            .zip(&dates)
            .flat_map(|((customer, _), date)| [customer as &dyn ToSql, date as &dyn ToSql])
            .collect();
        let mut rows = select.query(bound.as_slice())?;
        let mut states = StoredStates::new();
        while let Some(row) = rows.next()? {
            let (key, state) = decode(&super::sqlite_reads::Row(row))?;
            states.insert(key, state);
        }
        Ok(states)
    }
}

impl WriteTx for SqliteWrite {
    async fn progress_rows(
        &mut self,
        progress: &FileCheckpoint,
    ) -> anyhow::Result<Vec<ProgressRow>> {
        let mut select = self.connection.prepare_cached(SELECT_PROGRESS)?;
        let rows = select.query_map(
            params![
                progress.path,
                progress.file.device as i64,
                progress.file.inode as i64
            ],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    async fn holds_any_day(&mut self) -> anyhow::Result<bool> {
        let mut select = self.connection.prepare_cached(ANY_DAY)?;
        Ok(select.exists(params![])?)
    }

    async fn stored_states(&mut self, keys: &[(String, Day)]) -> anyhow::Result<StoredStates> {
        self.states_of_keys(&select_keys(), KEYS_JOIN, keys, |row| {
            keyed_state_from_row(row)
        })
    }

    async fn write_days(&mut self, days: &mut [MergedDay], fresh: bool) -> anyhow::Result<()> {
        let mut write = self.connection.prepare_cached(write_days_sql(fresh))?;
        for day in days.iter_mut() {
            PreparedDay::of(day).write(&mut write)?;
        }
        Ok(())
    }

    /// The rows are prepared (statistics, histogram, date) on a thread of their own, which also
    /// pulls the groups: this one only binds and steps, which is all SQLite can do at a time.
    async fn insert_fresh(
        &mut self,
        days: impl Iterator<Item = anyhow::Result<MergedDay>> + Send,
    ) -> anyhow::Result<usize> {
        let mut insert = self.connection.prepare_cached(write_days_sql(true))?;
        std::thread::scope(|scope| {
            let (prepared, received) = std::sync::mpsc::sync_channel(PREPARED_CHUNKS);
            scope.spawn(move || {
                let mut days = days.map(|day| day.map(|mut day| PreparedDay::of(&mut day)));
                loop {
                    let chunk: anyhow::Result<Vec<_>> = days.by_ref().take(CHUNK_ROWS).collect();
                    let end = chunk.as_ref().is_ok_and(Vec::is_empty);
                    // The writer stopped (it failed): nothing more is wanted.
                    if prepared.send(chunk).is_err() || end {
                        return;
                    }
                }
            });
            let mut many = self.connection.prepare_cached(insert_many_sql())?;
            let mut written = 0;
            for chunk in received {
                let chunk = chunk?;
                let mut days = chunk.chunks_exact(DAYS_PER_INSERT);
                for days in days.by_ref() {
                    for (row, day) in days.iter().enumerate() {
                        day.bind(&mut many, row)?;
                    }
                    many.raw_execute()?;
                }
                for day in days.remainder() {
                    day.write(&mut insert)?;
                }
                written += chunk.len();
            }
            Ok(written)
        })
    }

    async fn delete_day(&mut self, customer: &str, day: Day) -> anyhow::Result<()> {
        let mut delete = self.connection.prepare_cached(DELETE_DAY)?;
        delete.execute(params![customer, DateText::of(day)])?;
        Ok(())
    }

    async fn months_built(&mut self) -> anyhow::Result<bool> {
        let mut select = self.connection.prepare_cached(MONTHS_BUILT)?;
        let built: i64 = select.query_row(params![], |row| row.get(0))?;
        Ok(built == 1)
    }

    async fn stored_months(&mut self, keys: &[(String, Day)]) -> anyhow::Result<StoredStates> {
        self.states_of_keys(&SELECT_MONTH_KEYS, MONTH_KEYS_JOIN, keys, |row| {
            keyed_state_without_breakdown(row)
        })
    }

    async fn write_months(&mut self, months: &[MergedMonth]) -> anyhow::Result<()> {
        let mut upsert = self.connection.prepare_cached(&UPSERT_MONTH)?;
        for month in months {
            let (values, histogram) = state_values(&month.state);
            upsert.raw_bind_parameter(1, &month.customer)?;
            upsert.raw_bind_parameter(2, DateText::of(month.month))?;
            for (index, value) in values.iter().enumerate() {
                upsert.raw_bind_parameter(3 + index, value)?;
            }
            upsert.raw_bind_parameter(3 + values.len(), &histogram)?;
            upsert.raw_execute()?;
        }
        Ok(())
    }

    async fn delete_month(&mut self, customer: &str, month: Day) -> anyhow::Result<()> {
        let mut delete = self.connection.prepare_cached(DELETE_MONTH)?;
        delete.execute(params![customer, DateText::of(month)])?;
        Ok(())
    }

    async fn days_after(
        &mut self,
        after: &(String, Day),
        limit: usize,
    ) -> anyhow::Result<Vec<((String, Day), DayStats)>> {
        let mut select = self.connection.prepare_cached(&SELECT_DAYS_AFTER)?;
        let mut rows = select.query(params![after.0, DateText::of(after.1), limit as i64])?;
        let mut days = Vec::with_capacity(limit);
        while let Some(row) = rows.next()? {
            days.push(keyed_state_without_breakdown(&super::sqlite_reads::Row(
                row,
            ))?);
        }
        Ok(days)
    }

    async fn run(&mut self, sql: &'static str) -> anyhow::Result<()> {
        self.connection.execute(sql, params![])?;
        Ok(())
    }

    async fn record_progress(
        &mut self,
        path: &str,
        progress: &FileCheckpoint,
    ) -> anyhow::Result<()> {
        let mut upsert = self.connection.prepare_cached(UPSERT_PROGRESS)?;
        upsert.execute(params![
            path,
            stored(progress.offset),
            progress.head_hash as i64,
            stored(progress.head_len),
            progress.file.device as i64,
            progress.file.inode as i64,
            stored(progress.decoded),
            stored(progress.tail),
            progress.end_hash as i64,
        ])?;
        Ok(())
    }

    async fn retire_progress(&mut self, path: &str, retired: &str) -> anyhow::Result<()> {
        let mut retire = self.connection.prepare_cached(RETIRE_PROGRESS)?;
        retire.execute(params![retired, path])?;
        Ok(())
    }

    async fn add_totals(&mut self, lines: i64, rejected: i64, unix_now: f64) -> anyhow::Result<()> {
        let mut update = self.connection.prepare_cached(ADD_TOTALS)?;
        update.execute(params![lines, rejected, unix_now])?;
        Ok(())
    }

    async fn commit(self) -> anyhow::Result<()> {
        self.connection.execute_batch("COMMIT")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_written_as_sqlx_and_rusqlite_write_them() {
        for (y, m, d) in [(1, 1, 1), (2024, 9, 15), (2024, 2, 29), (9999, 12, 31)] {
            let day = Day::from_ymd(y, m, d).unwrap();
            let expected = day.to_naive_date().format("%Y-%m-%d").to_string();
            assert_eq!(std::str::from_utf8(&DateText::of(day).0).unwrap(), expected);
        }
    }
}
