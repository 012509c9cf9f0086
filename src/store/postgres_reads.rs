//! The API's reads on PostgreSQL: a few connections of their own, each leased for one read and
//! taken back only when the read succeeded. sqlx's pool makes a round trip to the server on every
//! release (a `Sync` and its `ReadyForQuery`, to find a connection a cancelled query left
//! mid-answer): one of the two round trips of every answer, and a wake-up of the server's process.
//! Here a lease whose read failed or was cancelled is dropped instead, closing its connection, so
//! a connection taken back is always between statements.
//!
//! At most [`MAX_CONNECTIONS`] reads run at once. Other reads wait for a lease; reads of a
//! customer's range wait in a queue instead, read in batches (`postgres_batches.rs`) as
//! connections are given up. A connection idle longer than [`PING_IDLE_AFTER`] is pinged before
//! it is leased again, so that after a server restart a stale one is replaced instead of failing
//! a request.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sqlx::{ConnectOptions as _, Connection as _};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::postgres_batches::{Answer, RangeRead, Waiters, Waiting, read_batch};
use super::{CONNECT_TIMEOUT, PING_IDLE_AFTER};

/// Reads at once, and connections kept: one per core and one more, at least 3, at most 16.
/// Reads that wait for one are read together (`postgres_batches.rs`), so more connections only
/// make the database's processes take turns on the cores: with PostgreSQL on the same 2 cores, 3
/// connections answered the random mix at 0.23-0.27 of `/healthz` with a p99 of 11-13 ms, 6 at
/// 0.20-0.21 with 14-15 ms (bench/RESULTS.md, The API).
static MAX_CONNECTIONS: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
    std::thread::available_parallelism()
        .map_or(3, |cores| cores.get() + 1)
        .clamp(3, 16)
});

/// Read connections to one PostgreSQL database, opened on demand and reused.
#[derive(Debug)]
pub(super) struct Connections {
    options: PgConnectOptions,
    /// Connections between statements, the most recently used last.
    idle: Mutex<Vec<(PgConnection, Instant)>>,
    leases: Arc<Semaphore>,
    /// Range reads waiting for a turn, to be read in batches.
    pub(super) waiters: Waiters,
}

/// A connection leased for one read: [`Lease::give_back`] once the read succeeded; dropped
/// otherwise, which closes it.
pub(super) struct Lease {
    connection: Option<PgConnection>,
    connections: Arc<Connections>,
    _turn: Turn,
}

/// The right to use one of the connections. Given up when dropped, whatever ended the read;
/// then, while range reads are waiting, the next of them are started (nobody else would: they
/// wait for their rows, not for a turn).
pub(super) struct Turn {
    permit: Option<OwnedSemaphorePermit>,
    connections: Arc<Connections>,
}

impl Turn {
    /// A turn now, when one is free.
    pub fn try_take(connections: &Arc<Connections>) -> Option<Turn> {
        let permit = Arc::clone(&connections.leases).try_acquire_owned().ok()?;
        Some(Turn {
            permit: Some(permit),
            connections: Arc::clone(connections),
        })
    }

    /// A turn, waiting for one.
    async fn take(connections: &Arc<Connections>) -> anyhow::Result<Turn> {
        let permit = Arc::clone(&connections.leases).acquire_owned().await?;
        Ok(Turn {
            permit: Some(permit),
            connections: Arc::clone(connections),
        })
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.connections.start_waiting_reads();
    }
}

impl Connections {
    pub fn new(options: PgConnectOptions) -> Connections {
        Connections {
            options,
            idle: Mutex::new(Vec::new()),
            leases: Arc::new(Semaphore::new(*MAX_CONNECTIONS)),
            waiters: Waiters::default(),
        }
    }

    /// A connection between statements: the most recently used idle one (pinged first when it
    /// has been idle a while), or a new one.
    pub async fn lease(self: &Arc<Self>) -> anyhow::Result<Lease> {
        let turn = Turn::take(self).await?;
        self.lease_with(turn).await
    }

    /// A connection for the holder of `turn`, as [`Connections::lease`].
    pub async fn lease_with(self: &Arc<Self>, turn: Turn) -> anyhow::Result<Lease> {
        let lease = |connection| Lease {
            connection: Some(connection),
            connections: Arc::clone(self),
            _turn: turn,
        };
        loop {
            let idle = self.idle.lock().expect("poisoned").pop();
            match idle {
                Some((connection, since)) if since.elapsed() <= PING_IDLE_AFTER => {
                    return Ok(lease(connection));
                }
                Some((mut connection, _)) => {
                    if Box::pin(connection.ping()).await.is_ok() {
                        return Ok(lease(connection));
                    }
                }
                None => break,
            }
        }
        // Boxed, as the ping: rare, and kilobytes in every read's future otherwise.
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, Box::pin(self.options.connect()))
            .await
            .map_err(|_| {
                anyhow::anyhow!("PostgreSQL did not accept a connection within {CONNECT_TIMEOUT:?}")
            })??;
        Ok(lease(connection))
    }
}

impl Lease {
    /// Takes the connection back for the next read (its read succeeded: it is between statements).
    pub fn give_back(mut self) {
        if let Some(connection) = self.connection.take() {
            let mut idle = self.connections.idle.lock().expect("poisoned");
            idle.push((connection, Instant::now()));
        }
    }
}

impl std::ops::Deref for Lease {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        self.connection.as_ref().expect("leased until given back")
    }
}

impl std::ops::DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.connection.as_mut().expect("leased until given back")
    }
}

/// Range reads: alone when a turn is free, else in batches (`postgres_batches.rs`).
impl Connections {
    /// The rows of `statement` for `read`: at once and alone when a turn is free; otherwise
    /// queued, and read in a batch when a turn is given up.
    pub async fn range(
        self: &Arc<Self>,
        statement: &'static str,
        read: RangeRead,
    ) -> anyhow::Result<Vec<PgRow>> {
        let (id, rows) = self.waiters.push(statement, read);
        match Turn::try_take(self) {
            Some(turn) => {
                let batch = self.waiters.take(id, statement);
                if let [alone] = batch.as_slice() {
                    return self.read_alone(statement, &alone.read, turn).await;
                }
                // Empty when another read took this one: its rows will come.
                if !batch.is_empty() {
                    tokio::spawn(Arc::clone(self).answer_batch(batch, turn));
                }
            }
            None => tracing::debug!("a range read waits for a connection"),
        }
        // A batch's task ends without answering only when it panicked or the runtime stops.
        rows.await
            .map_err(|_| anyhow::anyhow!("the read of a batch was abandoned"))?
            .map_err(anyhow::Error::msg)
    }

    /// Starts reading the longest waiting reads (of one statement), when there are some and a
    /// turn is free: called whenever a turn is given up.
    pub(super) fn start_waiting_reads(self: &Arc<Self>) {
        if self.waiters.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(turn) = Turn::try_take(self) else {
            return;
        };
        let batch = self.waiters.take_oldest();
        if batch.is_empty() {
            return;
        }
        // In a task of its own: the batch goes on when a client leaves, and each read is
        // answered as soon as its rows are in.
        runtime.spawn(Arc::clone(self).answer_batch(batch, turn));
    }

    /// Reads `read` of `statement` alone, on the lease of `turn`.
    async fn read_alone(
        self: &Arc<Self>,
        statement: &'static str,
        read: &RangeRead,
        turn: Turn,
    ) -> anyhow::Result<Vec<PgRow>> {
        let mut lease = self.lease_with(turn).await?;
        let mut query = sqlx::query(sqlx::AssertSqlSafe(statement))
            .bind(&read.customer)
            .bind(read.from)
            .bind(read.to);
        if let Some((first, last)) = read.months {
            query = query.bind(first).bind(last);
        }
        let rows = query.fetch_all(&mut *lease).await?;
        lease.give_back();
        Ok(rows)
    }

    /// Reads `batch` (of `statement`) on the lease of `turn`, and hands each read its rows as
    /// soon as they have arrived; or the error, to those not answered yet.
    async fn answer_batch(self: Arc<Self>, batch: Vec<Waiting>, turn: Turn) {
        let statement = batch[0].statement;
        let (reads, mut answers): (Vec<RangeRead>, Vec<Option<oneshot::Sender<Answer>>>) = batch
            .into_iter()
            .map(|waiting| (waiting.read, Some(waiting.answer)))
            .unzip();
        tracing::debug!(reads = reads.len(), "ranges read in one statement");
        let read = async {
            let mut lease = self.lease_with(turn).await?;
            read_batch(&mut lease, statement, &reads, &mut answers).await?;
            lease.give_back();
            anyhow::Ok(())
        };
        if let Err(error) = read.await {
            let message = format!("{error:#}");
            for answer in answers.into_iter().flatten() {
                let _ = answer.send(Err(message.clone()));
            }
        }
    }
}
