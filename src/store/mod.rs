//! The database: SQLite (embedded default) or PostgreSQL, one schema, the only place with SQL.
//!
//! Both backends run the same statements (`$1..$n` placeholders work on both); where they differ
//! (how a writer takes the lock, BLOB vs BYTEA in migrations) [`Dialect`] says so, and a commit's
//! steps run each backend's fastest way (`transaction.rs`: sqlx on PostgreSQL; `sqlite_writes.rs`:
//! rusqlite on SQLite). Writers merge into
//! stored days under one writer lock per transaction, so concurrent ingestions lose nothing.

mod analyze;
mod batch;
mod blocking;
mod commit;
mod migrations;
mod months;
mod postgres_batches;
mod postgres_reads;
mod read;
mod reports;
mod sqlite_file;
mod sqlite_reads;
mod sqlite_writes;
mod transaction;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use sqlx::ConnectOptions as _;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use batch::{CommitBatch, Conflict, FileCheckpoint, FileId, GroupDelta, OtherName, Retraction};
pub use blocking::BlockingStore;
pub use commit::{StoredProgress, Written};
pub use read::{CustomerSummary, DayRow};
pub use reports::ExportCursor;
pub use sqlite_file::DatabaseFileMissing;

/// Statements slower than this are logged, at debug level: a commit's large multi-row insert under
/// load is expected, and its text (thousands of parameters) must not flood stderr.
const SLOW_STATEMENT: Duration = Duration::from_secs(1);

/// The default database: a SQLite file in the working directory, created on first use.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://logstats.db";

/// How long a new connection may take before the database counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How a server's reads are bounded.
#[derive(Clone, Copy, Debug)]
pub struct ReadLimits {
    /// The longest a read may take (the API's request timeout). Its request is answered 503 by
    /// then; what still runs is stopped after twice as long: a SQLite read waiting for a lock
    /// another program holds gives up, a PostgreSQL statement is cancelled.
    pub query_timeout: Duration,
}

impl Default for ReadLimits {
    fn default() -> ReadLimits {
        ReadLimits {
            query_timeout: Duration::from_secs(10),
        }
    }
}

/// What a store is opened for.
#[derive(Clone, Copy, Debug)]
enum Role {
    /// Ingestion and `migrate`: a SQLite file (and its directory) is created when missing.
    Write,
    /// The API server: nothing is created; reads are bounded.
    Serve(ReadLimits),
}

/// A connection pool to either backend.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    /// Set once this store has applied (or found applied) every migration.
    migrated: Arc<AtomicBool>,
    /// Set while the database is known to be down (see [`Store::guarded`]).
    down: Arc<AtomicBool>,
    /// SQLite: the API's read connections.
    readers: Option<Arc<sqlite_reads::Readers>>,
    /// PostgreSQL: the API's read connections.
    pg_readers: Option<Arc<postgres_reads::Connections>>,
    /// Opened for the API server (creates nothing).
    serving: bool,
}

/// How often a store whose database is down tries it again.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// A PostgreSQL connection idle longer than this is pinged before it is used again.
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// The database is known to be down: a read was refused without trying it.
#[derive(Debug, thiserror::Error)]
#[error("the database is unavailable (it is being retried in the background)")]
pub struct DatabaseDown;

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same code on whichever pool the store holds; `$pool` is bound to it.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite($pool) => $body,
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// A row as a driver hands it over, its columns by position, decoded to the few types the schema
/// has: implemented once for sqlx's rows (both backends) and once for rusqlite's.
pub(super) trait StoredRow {
    fn integer(&self, column: usize) -> anyhow::Result<i64>;
    fn real(&self, column: usize) -> anyhow::Result<f64>;
    fn text(&self, column: usize) -> anyhow::Result<String>;
    fn date(&self, column: usize) -> anyhow::Result<chrono::NaiveDate>;
    /// A BLOB, borrowed from the row (a histogram is decoded from it, never copied first).
    fn blob(&self, column: usize) -> anyhow::Result<&[u8]>;
    /// A BLOB that may be NULL.
    fn optional_blob(&self, column: usize) -> anyhow::Result<Option<&[u8]>>;
}

impl<R: sqlx::Row> StoredRow for R
where
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    f64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    chrono::NaiveDate: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r [u8]: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<&'r [u8]>: sqlx::Decode<'r, R::Database>,
{
    // Unchecked but for reals: comparing each column's type with the Rust type's was an eighth
    // of the work of a PostgreSQL answer in this process. The statements are ours, tested on both
    // backends, and an unexpected value still fails to decode: a binary integer or date of an
    // unexpected size is an error, and so is NULL in a column read as non-optional. A real is
    // checked: sqlx's decoder of a binary float panics on one of 4 bytes.
    fn integer(&self, column: usize) -> anyhow::Result<i64> {
        Ok(self.try_get_unchecked(column)?)
    }
    fn real(&self, column: usize) -> anyhow::Result<f64> {
        Ok(self.try_get(column)?)
    }
    fn text(&self, column: usize) -> anyhow::Result<String> {
        Ok(self.try_get_unchecked(column)?)
    }
    fn date(&self, column: usize) -> anyhow::Result<chrono::NaiveDate> {
        Ok(self.try_get_unchecked(column)?)
    }
    fn blob(&self, column: usize) -> anyhow::Result<&[u8]> {
        Ok(self.try_get_unchecked(column)?)
    }
    fn optional_blob(&self, column: usize) -> anyhow::Result<Option<&[u8]>> {
        Ok(self.try_get_unchecked(column)?)
    }
}

/// Decodes the mergeable state (status counts, sums, histogram) of a stored day's row, whose
/// [`STATE_COLUMNS`] begin at column `first`.
pub(super) fn state_from_row(
    row: &impl StoredRow,
    first: usize,
) -> anyhow::Result<crate::stats::DayStats> {
    let count_at = |offset| row.integer(first + offset).map(count);
    let wide_at = |offset| {
        Ok::<_, anyhow::Error>(wide(
            row.integer(first + offset)?,
            row.integer(first + offset + 1)?,
        ))
    };
    Ok(crate::stats::DayStats {
        by_class: [
            count_at(0)?,
            count_at(1)?,
            count_at(2)?,
            count_at(3)?,
            count_at(4)?,
        ],
        duration_sum_us: wide_at(5)?,
        success_duration_sum_us: wide_at(7)?,
        histogram: crate::histogram::Histogram::from_bytes(row.blob(first + 9)?)?,
        resources: None,
    })
}

/// [`state_from_row`] with the day's breakdown by resource, in the column after the state.
pub(super) fn state_with_resources(
    row: &impl StoredRow,
    first: usize,
) -> anyhow::Result<crate::stats::DayStats> {
    let mut state = state_from_row(row, first)?;
    if let Some(bytes) = row.optional_blob(first + STATE_COLUMN_COUNT)? {
        let breakdown = crate::resources::Breakdown::decode(bytes)?;
        state.resources = Some(Box::new(breakdown));
    }
    Ok(state)
}

/// A row of [`batch::select_keys`]: the (customer, day) key, then the state.
pub(super) fn keyed_state_from_row(
    row: &impl StoredRow,
) -> anyhow::Result<((String, crate::day::Day), crate::stats::DayStats)> {
    let day = crate::day::Day::from_naive_date(row.date(1)?);
    Ok(((row.text(0)?, day), state_with_resources(row, 2)?))
}

/// A row of a (customer, day or month) key, then the state without breakdown.
pub(super) fn keyed_state_without_breakdown(
    row: &impl StoredRow,
) -> anyhow::Result<((String, crate::day::Day), crate::stats::DayStats)> {
    let day = crate::day::Day::from_naive_date(row.date(1)?);
    Ok(((row.text(0)?, day), state_from_row(row, 2)?))
}

/// The columns [`state_from_row`] reads, in the order it reads them.
const STATE_COLUMNS: &str = "status_1xx, status_2xx, status_3xx, status_4xx, status_5xx, \
     duration_sum_us, duration_sum_us_high, success_duration_sum_us, success_duration_sum_us_high, \
     duration_histogram";

/// How many columns [`STATE_COLUMNS`] names.
const STATE_COLUMN_COUNT: usize = 10;

/// The SQL that differs between backends.
struct Dialect {
    /// Starts a writing transaction.
    begin_write: &'static str,
    /// Run first in a writing transaction, with [`WRITER_LOCK_KEY`] bound: serializes writers
    /// (none needed where `begin_write` locks).
    writer_lock: Option<&'static str>,
}

const SQLITE: Dialect = Dialect {
    begin_write: "BEGIN IMMEDIATE",
    writer_lock: None,
};
const POSTGRES: Dialect = Dialect {
    begin_write: "BEGIN",
    writer_lock: Some("SELECT pg_advisory_xact_lock($1)"),
};

/// The PostgreSQL advisory lock every writing transaction holds (an arbitrary constant: "logstats
/// writer"); another program holding it makes ingestion wait before it commits.
pub const WRITER_LOCK_KEY: i64 = 7486813302412;

impl Store {
    /// Connects to `url` (`sqlite://PATH` or `postgres://...`) and applies pending migrations.
    /// Errors are one clear line (the CLI prints them as they are) and never show a password.
    pub async fn connect(url: &str) -> anyhow::Result<Store> {
        let shown = redact(url);
        let store = Store::open(url, Role::Write)?;
        let mut migrated =
            match store.backend_name() {
                "postgres" => say_when_slow(store.migrate(), || {
                    format!(
                        "waiting for PostgreSQL at {shown} to answer (up to {CONNECT_TIMEOUT:?})"
                    )
                })
                .await,
                _ => store.migrate().await,
            };
        if migrated.is_err() && store.database_is_missing().await {
            use sqlx::migrate::MigrateDatabase;
            sqlx::Postgres::create_database(url)
                .await
                .map_err(|error| {
                    anyhow::anyhow!(
                        "the database at {shown} does not exist and could not be created ({}): \
                     create it first, e.g. with createdb",
                        crate::errors::one_line(&error.into())
                    )
                })?;
            tracing::info!("created the database at {shown}");
            migrated = store.migrate().await;
        }
        if let Err(error) = migrated {
            // A pool that cannot connect only says it timed out: one direct connection says why.
            if let Some(cause) = store.connection_error().await {
                anyhow::bail!(
                    "connecting to the database at {shown}: {}",
                    crate::errors::one_line(&cause)
                );
            }
            anyhow::bail!(
                "migrating the database at {shown}: {}",
                crate::errors::one_line(&error)
            );
        }
        Ok(store)
    }

    /// Whether PostgreSQL answers that the database does not exist (SQLSTATE 3D000).
    async fn database_is_missing(&self) -> bool {
        let Backend::Postgres(_) = &self.backend else {
            return false;
        };
        self.connection_error().await.is_some_and(|error| {
            error
                .downcast_ref::<sqlx::Error>()
                .and_then(|e| e.as_database_error())
                .and_then(|e| e.code())
                .is_some_and(|code| code == "3D000")
        })
    }

    /// Why a new connection fails, if it does (within the pool's acquire timeout).
    async fn connection_error(&self) -> Option<anyhow::Error> {
        use sqlx::{ConnectOptions, Connection};
        let attempt = with_pool!(self, pool => {
            let options = pool.connect_options();
            match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
                Ok(Ok(connection)) => {
                    let _ = connection.close().await;
                    Ok(())
                }
                Ok(Err(error)) => Err(anyhow::Error::from(error)),
                Err(_) => Err(anyhow::anyhow!("no answer within {CONNECT_TIMEOUT:?}")),
            }
        });
        attempt.err()
    }

    /// A store for the API server, that connects on first use (the server starts even while the
    /// database is down), with the default [`ReadLimits`]: see [`Store::serving`].
    pub fn connect_lazy(url: &str) -> anyhow::Result<Store> {
        Store::serving(url, ReadLimits::default())
    }

    /// A store for the API server, that connects on first use. It creates nothing: a SQLite file
    /// that does not exist is an error at each read (503) until it appears. A SQLite URL with
    /// `?immutable=1` is read as an archive that never changes (never locked, never re-read).
    pub fn serving(url: &str, limits: ReadLimits) -> anyhow::Result<Store> {
        Store::open(url, Role::Serve(limits))
    }

    fn open(url: &str, role: Role) -> anyhow::Result<Store> {
        let shown = redact(url);
        let limits = match role {
            Role::Write => ReadLimits::default(),
            Role::Serve(limits) => limits,
        };
        let mut readers = None;
        let mut pg_readers = None;
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut options = PgConnectOptions::from_str(url)
                .with_context(|| format!("invalid database URL {shown}"))?
                .log_slow_statements(log::LevelFilter::Debug, SLOW_STATEMENT);
            if let Role::Serve(limits) = role {
                let cancel_after = (limits.query_timeout * 2).as_millis().to_string();
                // The API's few statements are prepared once per connection; planned once too
                // (PostgreSQL otherwise plans each execution again while a custom plan looks
                // cheaper, as it does on a table not analysed yet; bench/RESULTS.md).
                options = options.options([
                    ("statement_timeout", cancel_after.as_str()),
                    ("plan_cache_mode", "force_generic_plan"),
                ]);
            }
            pg_readers = Some(Arc::new(postgres_reads::Connections::new(options.clone())));
            Backend::Postgres(
                PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(CONNECT_TIMEOUT)
                    // A connection in steady use is not pinged before each query (a round trip
                    // per request); one idle a while is, so that after a server restart a stale
                    // one is replaced instead of failing a request.
                    .test_before_acquire(false)
                    .before_acquire(|connection, meta| {
                        Box::pin(async move {
                            if meta.idle_for > PING_IDLE_AFTER {
                                sqlx::Connection::ping(connection).await?;
                            }
                            Ok(true)
                        })
                    })
                    .connect_lazy_with(options),
            )
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .with_context(|| format!("invalid database URL {shown}"))?;
            let path = options.get_filename().to_path_buf();
            // Like `generate -o`, ingestion into a directory not made yet makes it.
            if let (Role::Write, Some(parent)) = (role, path.parent())
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).with_context(|| {
                    format!(
                        "cannot create the directory {} for the database",
                        crate::errors::shown_path(parent)
                    )
                })?;
            }
            let immutable = asks_immutable(url);
            readers = Some(Arc::new(sqlite_reads::Readers::new(
                path.clone(),
                immutable,
                limits.query_timeout * 2,
            )));
            let options = if immutable || read_only_file(&path) {
                options.read_only(true)
            } else {
                // Pages of 16 KiB in a new database (an existing one keeps its own): a commit of
                // millions of days writes them about 15% faster than in 4 KiB pages.
                options
                    .create_if_missing(matches!(role, Role::Write))
                    .page_size(16 << 10)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(60))
            }
            .log_slow_statements(log::LevelFilter::Debug, SLOW_STATEMENT);
            Backend::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(60))
                    .after_connect(|connection, _| Box::pin(keep_the_wal_files(connection)))
                    .connect_lazy_with(options),
            )
        } else {
            anyhow::bail!(
                "unsupported database URL {shown}: expected sqlite://PATH or postgres://..."
            );
        };
        Ok(Store {
            backend,
            migrated: Arc::new(AtomicBool::new(false)),
            down: Arc::new(AtomicBool::new(false)),
            readers,
            pg_readers,
            serving: matches!(role, Role::Serve(_)),
        })
    }

    /// Applies pending migrations; safe to run any number of times, also concurrently (by other
    /// processes too).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        if self.nothing_pending().await? {
            self.migrated.store(true, Ordering::SeqCst);
            return Ok(());
        }
        match &self.backend {
            Backend::Sqlite(pool) => {
                // Two processes opening a new database at once can meet SQLITE_BUSY before the
                // busy timeout applies (both switch it to WAL); that passes in milliseconds.
                let mut attempt = 0;
                loop {
                    match migrate_sqlite(pool).await {
                        Err(error) if is_busy(&error) && attempt < BUSY_RETRIES => {
                            attempt += 1;
                            tracing::debug!(attempt, "database busy while opening it: retrying");
                            tokio::time::sleep(Duration::from_millis(10 * attempt)).await;
                        }
                        result => break result?,
                    }
                }
            }
            // sqlx holds an advisory lock while it migrates PostgreSQL.
            Backend::Postgres(pool) => migrations::postgres()
                .run(pool)
                .await
                .map_err(unwrap_migrate_error)?,
        }
        self.migrated.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Whether every migration is applied already, found by reading (so that a read-only
    /// database is served without taking a write lock). A database that cannot be reached is an
    /// error at once (not a second wait in the migration).
    async fn nothing_pending(&self) -> anyhow::Result<bool> {
        // A server reads through its readers (read-only where it may not write); ingestion
        // through the pool, which creates a new database.
        if let Some(readers) = self.readers.as_ref().filter(|_| self.serving) {
            return readers.read(sqlite_reads::nothing_pending).await;
        }
        let migrator = match &self.backend {
            Backend::Sqlite(_) => migrations::sqlite(),
            Backend::Postgres(_) => migrations::postgres(),
        };
        let applied: Result<Vec<(i64, Vec<u8>)>, sqlx::Error> =
            with_pool!(self, pool => sqlx::query_as(APPLIED_MIGRATIONS).fetch_all(pool).await);
        match applied {
            Ok(applied) => Ok(all_applied(&migrator, &applied)),
            // No migration table yet (a new database): the migration makes it.
            Err(sqlx::Error::Database(_)) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Migrates first if this store has not yet (a server started while the database was down):
    /// a query never meets a database without its tables.
    async fn ready(&self) -> anyhow::Result<()> {
        if !self.migrated.load(Ordering::SeqCst) {
            // Boxed: run once, it would otherwise make every read's future kilobytes larger.
            Box::pin(self.migrate()).await?;
        }
        Ok(())
    }

    /// Whether the database answers a trivial query (and has the schema).
    pub async fn ping(&self) -> anyhow::Result<()> {
        self.guarded(self.probe()).await
    }

    /// Asks the database what the API's reads ask it through: their own connections.
    async fn probe(&self) -> anyhow::Result<()> {
        self.ready().await?;
        if let Some(readers) = &self.readers {
            // A read of the file itself (a bare `SELECT 1` opens no read transaction).
            return readers
                .read(|connection| {
                    Ok(connection.execute_batch("SELECT COUNT(*) FROM sqlite_master")?)
                })
                .await;
        }
        self.postgres_rows(sqlx::query("SELECT 1")).await?;
        Ok(())
    }

    /// Every row of `query`, read on a PostgreSQL read connection (given back once they are).
    async fn postgres_rows(
        &self,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> anyhow::Result<Vec<sqlx::postgres::PgRow>> {
        let mut connection = self.postgres_lease().await?;
        let rows = query.fetch_all(&mut *connection).await?;
        connection.give_back();
        Ok(rows)
    }

    /// The rows of a customer's range `statement` on PostgreSQL, read in a batch with others
    /// waiting for a connection.
    async fn postgres_range(
        &self,
        statement: &'static str,
        read: postgres_batches::RangeRead,
    ) -> anyhow::Result<Vec<sqlx::postgres::PgRow>> {
        self.postgres_readers()?.range(statement, read).await
    }

    /// A PostgreSQL read connection (every store that has no SQLite readers has them).
    async fn postgres_lease(&self) -> anyhow::Result<postgres_reads::Lease> {
        self.postgres_readers()?.lease().await
    }

    /// The PostgreSQL read connections (every store that has no SQLite readers has them).
    fn postgres_readers(&self) -> anyhow::Result<&Arc<postgres_reads::Connections>> {
        self.pg_readers.as_ref().ok_or_else(|| {
            anyhow::anyhow!("a read found neither SQLite nor PostgreSQL connections (a bug)")
        })
    }

    /// Runs a read for the API behind the circuit breaker: while the database is known to be
    /// down, fails at once with [`DatabaseDown`] instead of waiting for a connection; the first
    /// failure opens the breaker, logs the outage once, and starts a task that probes the
    /// database every [`PROBE_INTERVAL`] until it answers (then logs the recovery once).
    pub(crate) async fn guarded<T>(
        &self,
        read: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        if self.down.load(Ordering::SeqCst) {
            return Err(DatabaseDown.into());
        }
        let result = read.await;
        if let Err(error) = &result
            && !self.down.swap(true, Ordering::SeqCst)
        {
            tracing::warn!("database unavailable, answering 503 until it is back: {error:#}");
            let store = self.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(PROBE_INTERVAL).await;
                    if store.probe().await.is_ok() {
                        store.down.store(false, Ordering::SeqCst);
                        tracing::warn!("database available again");
                        return;
                    }
                }
            });
        }
        result
    }

    /// The files this store keeps its data in (a SQLite database, its WAL and shared memory),
    /// which must never be read as logs.
    pub fn own_files(&self) -> Vec<std::path::PathBuf> {
        match &self.backend {
            Backend::Sqlite(pool) => {
                let database = pool.connect_options().get_filename().to_path_buf();
                let with_suffix = |suffix: &str| {
                    let mut name = database.clone().into_os_string();
                    name.push(suffix);
                    std::path::PathBuf::from(name)
                };
                vec![with_suffix("-wal"), with_suffix("-shm"), database]
            }
            Backend::Postgres(_) => Vec::new(),
        }
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Closes every connection (lets SQLite checkpoint its WAL).
    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await)
    }
}

/// Runs `work`, saying on stderr what it waits for (`waiting`) when it takes over a second.
async fn say_when_slow<T>(work: impl Future<Output = T>, waiting: impl FnOnce() -> String) -> T {
    let mut work = std::pin::pin!(work);
    if let Ok(done) = tokio::time::timeout(std::time::Duration::from_secs(1), &mut work).await {
        return done;
    }
    eprintln!("{}", waiting());
    work.await
}

/// How long taking the write lock may take before the wait is reported.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs `take_lock`, saying once per process on stderr when it waits for the write lock: another
/// program's write transaction (SQLite allows one writer) or another ingestion's commit holds it.
pub(crate) async fn say_when_waiting_for_the_lock<T>(take_lock: impl Future<Output = T>) -> T {
    let mut take_lock = std::pin::pin!(take_lock);
    if let Ok(done) = tokio::time::timeout(LOCK_PATIENCE, &mut take_lock).await {
        return done;
    }
    report_waiting_for_the_lock();
    take_lock.await
}

/// Says (once per process) that a writer waits for the database's write lock.
fn report_waiting_for_the_lock() {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            "waiting for the database's write lock: another program holds a write transaction \
             on it (SQLite allows one writer at a time; logstats waits up to 60 s), or another \
             ingestion is committing"
        );
    }
}

/// How often opening a new SQLite database retries after SQLITE_BUSY (about 0.5 s in all).
const BUSY_RETRIES: u64 = 10;

/// Applies SQLite's migrations. sqlx takes no lock on SQLite: two processes migrating a new database
/// at once would both create the tables, and one would fail ("database is locked" or "table already
/// exists"). Inside one write transaction (sqlx nests its own as a savepoint) the second waits,
/// then finds every migration applied. (`run(&mut *tx)` would make the future fail the `Send`
/// check, sqlx issue #2016; `run_direct` is the entry point sqlx keeps for that case.)
async fn migrate_sqlite(pool: &SqlitePool) -> anyhow::Result<()> {
    let mut tx = say_when_waiting_for_the_lock(pool.begin_with(SQLITE.begin_write)).await?;
    migrations::sqlite()
        .run_direct(None, &mut *tx, false)
        .await
        .map_err(unwrap_migrate_error)?;
    tx.commit().await?;
    Ok(())
}

/// The migrations a database has applied, as `(version, checksum)` rows.
const APPLIED_MIGRATIONS: &str = "SELECT version, checksum FROM _sqlx_migrations WHERE success";

/// Whether every migration of `migrator` is among the `applied` ones.
fn all_applied(migrator: &sqlx::migrate::Migrator, applied: &[(i64, Vec<u8>)]) -> bool {
    migrator.iter().all(|m| {
        applied
            .iter()
            .any(|(v, c)| *v == m.version && **c == *m.checksum)
    })
}

/// Keeps a WAL database's `-wal` and `-shm` files when this connection is the last to close
/// (emptied, not deleted): a server that may only read the database needs them, and cannot create
/// them in a directory it may not write. Where SQLite refuses (a database not in WAL mode), nothing
/// changes.
async fn keep_the_wal_files(connection: &mut sqlx::SqliteConnection) -> Result<(), sqlx::Error> {
    // A WAL kept at close is truncated to this size (zero: only its header is written again).
    sqlx::query("PRAGMA journal_size_limit = 0")
        .execute(&mut *connection)
        .await?;
    let mut handle = connection.lock_handle().await?;
    // SAFETY: the handle is this live connection's, locked (used by no other thread) meanwhile.
    unsafe { persist_wal(handle.as_raw_handle().as_ptr()) };
    Ok(())
}

/// Asks SQLite to keep the WAL files when the connection `db` is the last to close (see
/// [`keep_the_wal_files`]); where it refuses, nothing changes.
///
/// # Safety
/// `db` is an open connection that no other thread uses during the call.
pub(super) unsafe fn persist_wal(db: *mut rusqlite::ffi::sqlite3) {
    use rusqlite::ffi;
    let mut persist: std::ffi::c_int = 1;
    // SAFETY: `db` is open (the caller's promise); SQLite reads and writes the one int the last
    // argument points at, which outlives the call.
    let code = unsafe {
        ffi::sqlite3_file_control(
            db,
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&raw mut persist).cast(),
        )
    };
    if code != ffi::SQLITE_OK {
        tracing::debug!(code, "SQLite did not keep the WAL files of this connection");
    }
}

/// Whether a SQLite URL asks for the file to be read as an unchanging archive (`immutable=1` or
/// `immutable=true` among its parameters).
fn asks_immutable(url: &str) -> bool {
    let query = url.split_once('?').map_or("", |(_, query)| query);
    url::form_urlencoded::parse(query.as_bytes())
        .any(|(name, value)| name == "immutable" && (value == "1" || value == "true"))
}

/// Whether `path` is a file this process may not write (read-only storage, permissions, an
/// immutable file).
fn read_only_file(path: &std::path::Path) -> bool {
    use rustix::fs::{Access, access};
    access(path, Access::EXISTS).is_ok() && access(path, Access::WRITE_OK).is_err()
}

/// Whether SQLite answered SQLITE_BUSY ("database is locked"; extended codes included).
fn is_busy(error: &anyhow::Error) -> bool {
    const SQLITE_BUSY: i32 = 5;
    error
        .chain()
        .any(|cause| match cause.downcast_ref::<sqlx::Error>() {
            Some(sqlx::Error::Database(e)) => e
                .code()
                .and_then(|code| code.parse::<i32>().ok())
                .is_some_and(|code| code & 0xff == SQLITE_BUSY),
            _ => false,
        })
}

/// A database error met while migrating, as itself (callers tell connection trouble by it).
fn unwrap_migrate_error(error: sqlx::migrate::MigrateError) -> anyhow::Error {
    match error {
        sqlx::migrate::MigrateError::Execute(error) => error.into(),
        other => other.into(),
    }
}

/// The URL with any password replaced by `***`, for logs and errors.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => match url.split_once('@') {
            Some((_, host)) => format!("(credentials hidden)@{host}"),
            None => url.to_string(),
        },
    }
}

/// Converts a stored integer (never negative) back to a count.
fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Converts a count to the stored integer type (saturating: counts never reach i64::MAX).
fn stored(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A 128-bit sum as two stored integers: its low 63 bits, and the bits above them.
fn stored_wide(value: u128) -> (i64, i64) {
    let low = (value & i64::MAX as u128) as i64;
    // Sums of accepted durations stay below 2^64 requests x 2^60 us, so the high part fits.
    let high = i64::try_from(value >> 63).unwrap_or(i64::MAX);
    (low, high)
}

/// The 128-bit sum [`stored_wide`] split.
fn wide(low: i64, high: i64) -> u128 {
    (u128::from(count(high)) << 63) | u128::from(count(low))
}

#[cfg(test)]
mod tests {
    use super::{redact, stored_wide, wide};

    #[test]
    fn wide_sums_survive_storage_exactly() {
        for value in [
            0,
            1,
            i64::MAX as u128,
            1 << 63,
            u128::from(u64::MAX) * 1000 + 7,
        ] {
            let (low, high) = stored_wide(value);
            assert_eq!(wide(low, high), value);
        }
        assert_eq!(
            stored_wide(42),
            (42, 0),
            "small sums read the same as before"
        );
    }

    #[test]
    fn passwords_never_appear_in_a_shown_url() {
        let shown = redact("postgres://alice:s3cret@db.example:5432/stats");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("alice") && shown.contains("db.example"));
        assert_eq!(redact("sqlite://logstats.db"), "sqlite://logstats.db");
        assert!(!redact("postgres://a:b c@host/x").contains("b c"));
    }
}
