//! The API's reads on SQLite, run on the thread of the request that asks: a few connections of
//! their own, each query executed synchronously (tens of microseconds) and all its rows taken at
//! once. sqlx runs every SQLite connection on a thread of its own and sends each row back through a
//! channel, so one query of 30 rows cost dozens of thread switches, most of the time under load.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// Connections kept open between queries.
const MAX_IDLE: usize = 8;

/// How much of the database file each connection maps (address space, not memory: the pages are
/// the kernel's page cache, shared by every connection).
const MMAP_BYTES: i64 = 1 << 30;

/// Read connections to one SQLite database, opened on demand and reused.
#[derive(Debug)]
pub(super) struct Readers {
    path: PathBuf,
    /// A file this process may not write: opened read-only.
    read_only: bool,
    /// An archive on read-only storage: opened immutable (never locked, never written).
    immutable: bool,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    pub fn new(path: PathBuf, read_only: bool, immutable: bool) -> Readers {
        Readers {
            // As a file: URI, which must be absolute (`sqlite://logstats.db` is relative).
            path: std::path::absolute(&path).unwrap_or(path),
            read_only,
            immutable,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `read` on an idle connection (or a new one), then keeps the connection.
    pub fn with<T>(
        &self,
        read: impl FnOnce(&Connection) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let connection = match idle {
            Some(connection) => connection,
            None => self.open()?,
        };
        let result = read(&connection);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if result.is_ok() && idle.len() < MAX_IDLE {
            idle.push(connection);
        }
        result
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let mut uri = url::Url::from_file_path(&self.path)
            .map_err(|()| rusqlite::Error::InvalidPath(self.path.clone()))?;
        if self.immutable {
            uri.set_query(Some("immutable=1"));
        }
        // Read-write (never create) unless the file may not be written: a reader of a WAL
        // database may need to write its shared-memory index. Only SELECTs run here.
        let access = if self.read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        };
        let connection = Connection::open_with_flags(
            uri.as_str(),
            access | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(Duration::from_secs(5))?;
        // Pages are read through a memory map, not a system call each (random customers touch
        // pages all over the file).
        connection.pragma_update(None, "mmap_size", MMAP_BYTES)?;
        connection.set_prepared_statement_cache_capacity(8);
        Ok(connection)
    }
}

/// A rusqlite row, read as [`super::StoredRow`] like sqlx's.
pub(super) struct Row<'a>(pub &'a rusqlite::Row<'a>);

impl super::StoredRow for Row<'_> {
    fn integer(&self, column: usize) -> anyhow::Result<i64> {
        Ok(self.0.get(column)?)
    }
    fn real(&self, column: usize) -> anyhow::Result<f64> {
        Ok(self.0.get(column)?)
    }
    fn text(&self, column: usize) -> anyhow::Result<String> {
        Ok(self.0.get(column)?)
    }
    fn date(&self, column: usize) -> anyhow::Result<chrono::NaiveDate> {
        Ok(self.0.get(column)?)
    }
    fn blob(&self, column: usize) -> anyhow::Result<Vec<u8>> {
        Ok(self.0.get(column)?)
    }
}
