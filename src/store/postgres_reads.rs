//! The API's reads on PostgreSQL: a few connections of their own, each leased for one read and
//! taken back only when the read succeeded. sqlx's pool makes a round trip to the server on every
//! release (a `Sync` and its `ReadyForQuery`, to find a connection a cancelled query left
//! mid-answer): one of the two round trips of every answer, and a wake-up of the server's process.
//! Here a lease whose read failed or was cancelled is dropped instead, closing its connection, so
//! a connection taken back is always between statements.
//!
//! At most [`MAX_CONNECTIONS`] reads run at once; more wait for a lease. A connection idle longer
//! than [`PING_IDLE_AFTER`] is pinged before it is leased again, so that after a server restart a
//! stale one is replaced instead of failing a request.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions as _, Connection as _};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::postgres_batches::Waiters;
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
