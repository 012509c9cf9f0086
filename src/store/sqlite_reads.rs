//! The API's reads on SQLite: a few connections of their own, each query executed synchronously
//! and all its rows taken at once (sqlx sends each row back through a channel from a thread of its
//! own: one query of 30 rows cost dozens of thread switches).
//!
//! A query runs on a blocking thread, never on the async runtime's: at most [`READ_THREADS`]
//! at once (more wait for a turn without holding a thread), so `/healthz`, cached answers and the
//! request timeout never wait behind a slow query. A read whose caller gave up (the request timed
//! out, the client went away) is interrupted: its query stops within a thousand SQLite steps.
//!
//! The file is opened read-only where this process may not write it, never `immutable` unless the
//! URL asks for it (`?immutable=1`, an archive that never changes): SQLite reads a file that
//! changes correctly only through its locks and its WAL index. Which file the path names is checked
//! at most every [`IDENTITY_CHECK`]: connections to a file since replaced (`mv new.db stats.db`)
//! are closed and the new file opened.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::{Connection, OpenFlags};

use super::sqlite_file::{DatabaseFileMissing, FileIdentity, what_to_grant};

/// How much of the database file each connection maps (address space, not memory: the pages are
/// the kernel's page cache, shared by every connection).
const MMAP_BYTES: i64 = 1 << 30;

/// Reads run at once (and connections kept): twice the cores, at least 4, at most 16.
static READ_THREADS: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
    std::thread::available_parallelism()
        .map_or(4, |cores| cores.get() * 2)
        .clamp(4, 16)
});

/// How often the path's file identity is looked at again: a replaced file is served within this
/// plus the answer cache's 0.5 s, inside the API's one-second freshness promise.
pub(super) const IDENTITY_CHECK: Duration = Duration::from_millis(500);

/// Read connections to one SQLite database, opened on demand and reused.
#[derive(Debug)]
pub(super) struct Readers {
    path: PathBuf,
    /// The user asked for `immutable=1`: never locked, never checked for changes.
    immutable: bool,
    /// How long a read waits for a lock another program holds.
    busy_timeout: Duration,
    idle: Mutex<Vec<Idle>>,
    /// The identity of the file the path names, and when it was looked at.
    current: Mutex<Option<(Instant, Option<FileIdentity>)>>,
    /// Reads run at once, and connections kept.
    threads: usize,
    /// Turns on the blocking threads.
    turns: Arc<tokio::sync::Semaphore>,
}

/// A connection kept between reads, with the identity of the file it opened.
#[derive(Debug)]
struct Idle {
    connection: Connection,
    file: FileIdentity,
}

impl Readers {
    pub fn new(path: PathBuf, immutable: bool, busy_timeout: Duration) -> Readers {
        Readers {
            // As a file: URI, which must be absolute (`sqlite://logstats.db` is relative).
            path: std::path::absolute(&path).unwrap_or(path),
            immutable,
            busy_timeout,
            idle: Mutex::new(Vec::new()),
            current: Mutex::new(None),
            threads: *READ_THREADS,
            turns: Arc::new(tokio::sync::Semaphore::new(*READ_THREADS)),
        }
    }

    /// Runs `read` on a blocking thread with a connection, when a turn is free. Dropping the
    /// returned future interrupts the query.
    pub async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        read: impl FnOnce(&Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let turn = Arc::clone(&self.turns)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let cancel = Arc::new(Cancel::default());
        let mut on_drop = CancelOnDrop(Some(Arc::clone(&cancel)));
        let readers = Arc::clone(self);
        let done = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            readers.with(&cancel, read)
        })
        .await;
        on_drop.0 = None;
        match done {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => Err(anyhow::anyhow!("a read was stopped: {error}")),
        }
    }

    /// Runs `read` on an idle connection to the file the path names now (or a new one), then
    /// keeps the connection.
    fn with<T>(
        &self,
        cancel: &Arc<Cancel>,
        read: impl FnOnce(&Connection) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let idle = self.take()?;
        let stop = Arc::clone(cancel);
        idle.connection
            .progress_handler(CHECK_EVERY, Some(move || stop.0.load(Ordering::SeqCst)))?;
        let result = read(&idle.connection);
        idle.connection.progress_handler(0, None::<fn() -> bool>)?;
        let result = result.map_err(|error| self.explained(error));
        if result.is_ok() {
            let mut kept = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if kept.len() < self.threads {
                kept.push(idle);
            }
        }
        result
    }

    /// An idle connection to the current file, or a new one; connections to another file go.
    fn take(&self) -> anyhow::Result<Idle> {
        let current = self.current_file();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|kept| Some(kept.file) == current);
        if let Some(kept) = idle.pop() {
            return Ok(kept);
        }
        drop(idle);
        let file =
            FileIdentity::of(&self.path).ok_or_else(|| DatabaseFileMissing(self.path.clone()))?;
        self.open(file).map_err(|error| self.explained(error))
    }

    /// The identity of the file the path names, looked at again when the last look is older than
    /// [`IDENTITY_CHECK`]; an immutable archive is looked at once.
    fn current_file(&self) -> Option<FileIdentity> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match *current {
            Some((_, file)) if self.immutable && file.is_some() => file,
            Some((looked, file)) if looked.elapsed() < IDENTITY_CHECK => file,
            _ => {
                let file = FileIdentity::of(&self.path);
                *current = Some((Instant::now(), file));
                file
            }
        }
    }

    /// Opens a connection to the file at the path, whose identity is `file`.
    fn open(&self, file: FileIdentity) -> anyhow::Result<Idle> {
        let mut uri = url::Url::from_file_path(&self.path)
            .map_err(|()| rusqlite::Error::InvalidPath(self.path.clone()))?;
        if self.immutable {
            uri.set_query(Some("immutable=1"));
        }
        // Read-write (never create) where this process may write the file: a reader of a WAL
        // database may need to write its shared-memory index. Only SELECTs run here.
        let writable = rustix::fs::access(&self.path, rustix::fs::Access::WRITE_OK).is_ok();
        let access = if writable && !self.immutable {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        } else {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        };
        let connection = Connection::open_with_flags(
            uri.as_str(),
            access | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(self.busy_timeout)?;
        // SAFETY: the connection was just opened, and is used by this thread alone.
        unsafe { super::persist_wal(connection.handle()) };
        // Pages are read through a memory map, not a system call each (random customers touch
        // pages all over the file).
        connection.pragma_update(None, "mmap_size", MMAP_BYTES)?;
        connection.set_prepared_statement_cache_capacity(8);
        Ok(Idle { connection, file })
    }

    /// A failed read with what to grant, when missing permissions are why SQLite refused.
    fn explained(&self, error: anyhow::Error) -> anyhow::Error {
        let refused = error.chain().any(|cause| {
            matches!(
                cause.downcast_ref::<rusqlite::Error>(),
                Some(rusqlite::Error::SqliteFailure(failure, _))
                    if matches!(
                        failure.code,
                        rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly
                    )
            )
        });
        match refused.then(|| what_to_grant(&self.path)).flatten() {
            Some(advice) => error.context(advice),
            None => error,
        }
        .context(format!("reading {}", crate::errors::shown_path(&self.path)))
    }
}

/// Runs `read` with the memory map off, for a scan of the whole table (the export). Through the
/// map, every page of the file it passes would stay mapped into the server, whose resident memory
/// would grow by the file's size (up to the map's 1 GiB); through SQLite's own page cache of a few
/// MB, the pages stay in the kernel's page cache only. Point reads keep the map. A connection whose
/// map could not be set back fails the read, and a failed read's connection is not kept.
pub(super) fn without_mmap<T>(
    connection: &Connection,
    read: impl FnOnce(&Connection) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    connection.pragma_update(None, "mmap_size", 0)?;
    let result = read(connection);
    connection.pragma_update(None, "mmap_size", MMAP_BYTES)?;
    result
}

/// Set when a read's caller has gone; the query running checks it every [`CHECK_EVERY`] steps
/// (SQLite's progress handler: unlike `sqlite3_interrupt`, which is lost when it comes just before
/// a statement starts, it cannot miss the query).
#[derive(Default)]
struct Cancel(AtomicBool);

/// How many SQLite virtual-machine steps run between two looks at [`Cancel`] (microseconds).
const CHECK_EVERY: std::ffi::c_int = 1000;

/// Cancels a read when the future waiting for it is dropped before it finished.
struct CancelOnDrop(Option<Arc<Cancel>>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(cancel) = self.0.take() {
            cancel.0.store(true, Ordering::SeqCst);
        }
    }
}

/// Whether the database has every migration applied (no migration table: none is).
pub(super) fn nothing_pending(connection: &Connection) -> anyhow::Result<bool> {
    let mut statement = match connection.prepare(super::APPLIED_MIGRATIONS) {
        Ok(statement) => statement,
        Err(rusqlite::Error::SqliteFailure(failure, _))
            if failure.code == rusqlite::ErrorCode::Unknown =>
        {
            return Ok(false);
        }
        Err(error) => return Err(error.into()),
    };
    let applied = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<Vec<(i64, Vec<u8>)>>>()?;
    Ok(super::all_applied(&super::migrations::sqlite(), &applied))
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
    fn blob(&self, column: usize) -> anyhow::Result<&[u8]> {
        Ok(self.0.get_ref(column)?.as_blob()?)
    }
    fn optional_blob(&self, column: usize) -> anyhow::Result<Option<&[u8]>> {
        Ok(self.0.get_ref(column)?.as_blob_or_null()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database with one table, in a directory that lives as long as the returned guard.
    fn database() -> (tempfile::TempDir, Arc<Readers>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let connection = Connection::open(&path).unwrap();
        connection
            .execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1)")
            .unwrap();
        let readers = Arc::new(Readers::new(path, false, Duration::from_secs(5)));
        (dir, readers)
    }

    fn count(connection: &Connection) -> anyhow::Result<i64> {
        Ok(connection.query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0))?)
    }

    #[tokio::test]
    async fn a_read_whose_caller_gave_up_is_interrupted() {
        let (_dir, readers) = database();
        let (started, mut running) = tokio::sync::mpsc::unbounded_channel();
        let (ended, mut over) = tokio::sync::mpsc::unbounded_channel();
        let endless = Arc::clone(&readers);
        let endless = async move {
            endless
                .read(move |connection| {
                    started.send(()).unwrap();
                    // Counts for ever unless interrupted.
                    let outcome = connection.query_row(
                        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
                 SELECT COUNT(*) FROM n",
                        [],
                        |row| row.get::<_, i64>(0),
                    );
                    ended.send(outcome.is_err()).unwrap();
                    Ok(())
                })
                .await
        };
        let endless = tokio::spawn(endless);
        running.recv().await.unwrap();
        endless.abort();
        assert_eq!(
            over.recv().await,
            Some(true),
            "the query stopped with an error"
        );
        assert_eq!(readers.read(count).await.unwrap(), 1, "reads go on");
    }

    #[tokio::test]
    async fn a_replaced_file_is_read_once_its_identity_is_looked_at_again() {
        let (dir, readers) = database();
        assert_eq!(readers.read(count).await.unwrap(), 1);
        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2)")
            .unwrap();
        std::fs::rename(&other, dir.path().join("t.db")).unwrap();
        // The next look at the path (forced here rather than waited for) finds the new file.
        *readers.current.lock().unwrap() = None;
        assert_eq!(readers.read(count).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_missing_file_is_an_error_naming_it_and_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.db");
        let readers = Arc::new(Readers::new(path.clone(), false, Duration::from_secs(5)));
        let error = readers.read(count).await.unwrap_err();
        assert!(error.is::<DatabaseFileMissing>(), "{error:#}");
        assert!(format!("{error:#}").contains("none.db"), "{error:#}");
        assert!(!path.exists());
    }
}
