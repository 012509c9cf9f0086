//! The database: SQLite (embedded default) or PostgreSQL, one schema, the only place with SQL.
//!
//! Both backends run the same statements (`$1..$n` placeholders work on both); where they differ
//! (how a writer takes the lock, BLOB vs BYTEA in migrations) [`Dialect`] says so. Writers merge into
//! stored days under one writer lock per transaction, so concurrent ingestions lose nothing.

mod commit;
mod read;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use commit::{CommitBatch, Conflict, FileProgress, GroupDelta, StoredProgress};
pub use read::{CustomerSummary, DayRow};

/// The default database: a SQLite file in the working directory, created on first use.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://logstats.db";

/// A connection pool to either backend.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
}

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

/// Decodes the mergeable state (status counts, sums, histogram) of a stored day's row.
macro_rules! state_from_row {
    ($row:expr) => {{
        let row = $row;
        let histogram: Vec<u8> = row.try_get("duration_histogram")?;
        $crate::stats::DayStats {
            by_class: [
                $crate::store::count(row.try_get("status_1xx")?),
                $crate::store::count(row.try_get("status_2xx")?),
                $crate::store::count(row.try_get("status_3xx")?),
                $crate::store::count(row.try_get("status_4xx")?),
                $crate::store::count(row.try_get("status_5xx")?),
            ],
            duration_sum_us: $crate::store::count(row.try_get("duration_sum_us")?),
            success_duration_sum_us: $crate::store::count(row.try_get("success_duration_sum_us")?),
            histogram: $crate::histogram::Histogram::from_bytes(&histogram)?,
        }
    }};
}
pub(crate) use state_from_row;

/// The columns [`state_from_row`] reads.
const STATE_COLUMNS: &str = "status_1xx, status_2xx, status_3xx, status_4xx, status_5xx, \
     duration_sum_us, success_duration_sum_us, duration_histogram";

/// The SQL that differs between backends.
struct Dialect {
    /// Starts a writing transaction.
    begin_write: &'static str,
    /// Run first in a writing transaction: serializes writers (none needed where `begin_write` locks).
    writer_lock: Option<&'static str>,
}

const SQLITE: Dialect = Dialect {
    begin_write: "BEGIN IMMEDIATE",
    writer_lock: None,
};
const POSTGRES: Dialect = Dialect {
    begin_write: "BEGIN",
    // An arbitrary constant key: "logstats writer".
    writer_lock: Some("SELECT pg_advisory_xact_lock(7486813302412)"),
};

impl Store {
    /// Connects to `url` (`sqlite://PATH` or `postgres://...`) and applies pending migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Store> {
        let shown = redact(url);
        let store = Store::connect_lazy(url)?;
        store
            .migrate()
            .await
            .with_context(|| format!("migrating the database at {shown}"))?;
        Ok(store)
    }

    /// A store that connects on first use (the API server starts even while the database is down).
    pub fn connect_lazy(url: &str) -> anyhow::Result<Store> {
        let shown = redact(url);
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)
                .with_context(|| format!("invalid database URL {shown}"))?;
            Backend::Postgres(
                PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_lazy_with(options),
            )
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .with_context(|| format!("invalid database URL {shown}"))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(60));
            Backend::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(60))
                    .connect_lazy_with(options),
            )
        } else {
            anyhow::bail!(
                "unsupported database URL {shown}: expected sqlite://PATH or postgres://..."
            );
        };
        Ok(Store { backend })
    }

    /// Applies pending migrations; safe to run any number of times, also concurrently.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlx::migrate!("migrations/sqlite").run(pool).await?,
            Backend::Postgres(pool) => sqlx::migrate!("migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> anyhow::Result<()> {
        with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop))?;
        Ok(())
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    fn dialect(&self) -> &'static Dialect {
        match self.backend {
            Backend::Sqlite(_) => &SQLITE,
            Backend::Postgres(_) => &POSTGRES,
        }
    }

    /// Closes every connection (lets SQLite checkpoint its WAL).
    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await)
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

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_appear_in_a_shown_url() {
        let shown = redact("postgres://alice:s3cret@db.example:5432/stats");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("alice") && shown.contains("db.example"));
        assert_eq!(redact("sqlite://logstats.db"), "sqlite://logstats.db");
        assert!(!redact("postgres://a:b c@host/x").contains("b c"));
    }
}
