//! One ingestion commit: merge group deltas into stored days and advance file offsets, atomically.
//! The algorithm is written once, over the steps of a [`WriteTx`]; each backend runs the steps its
//! own fastest way (`transaction.rs`, `sqlite_writes.rs`).

use std::collections::{BTreeMap, HashMap};

use sqlx::Row;

use super::transaction::{PgWrite, WriteTx};
use super::{Backend, Store, count, stored, stored_wide, with_pool};
use crate::day::Day;
use crate::stats::DayStats;

/// New requests for one (customer, day) group.
#[derive(Clone, Debug)]
pub struct GroupDelta {
    pub customer: String,
    pub day: Day,
    pub stats: DayStats,
}

/// A request counted before its line was complete (a last line without a newline, which then
/// went on): taken back from its stored day before the whole line is counted.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Retraction {
    pub customer: String,
    pub day: Day,
    pub status: u16,
    pub duration_us: u64,
}

/// How far one input file has now been consumed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileProgress {
    pub path: String,
    /// The offset the stored row must hold now (0 when there is no row): anything else means
    /// another process ingested this file meanwhile, and the commit is refused.
    pub expected_offset: u64,
    /// Where the reading this record covers started (orders records of one file; not stored).
    pub from: u64,
    /// The byte offset just past the last consumed line.
    pub offset: u64,
    /// Compressed files that broke off: bytes of complete lines decompressed past `offset`
    /// (0 otherwise), and what the stored row must hold now.
    pub decoded: u64,
    pub expected_decoded: u64,
    /// Of the bytes before `offset`, those of a last line without a newline (0 when it ends
    /// with one): if the line goes on, the next run takes it back and reads it whole.
    pub tail: u64,
    /// FNV-1a of the file's first `head_len` bytes: tells a replaced file from an appended one.
    pub head_hash: u64,
    pub head_len: u64,
    /// FNV-1a of the 4 KiB before `offset` (0 when not recorded): tells a file rewritten in place
    /// behind an unchanged beginning from an appended one.
    pub end_hash: u64,
    /// Which file this is, whatever its name.
    pub file: FileId,
    /// The other rows of this file (same device and inode) the plan saw, each with the offset it
    /// must hold now: any other row of it means another process got there meanwhile.
    pub other_names: Vec<OtherName>,
}

/// Another progress row of the same file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OtherName {
    pub path: String,
    pub offset: u64,
    /// The path is still a name of this file (a hard link): its row moves with this one, so that
    /// a later run under that name does not read the same bytes again. Otherwise the name is
    /// left behind (the file was renamed) and its row stays as it is.
    pub linked: bool,
}

/// A file's identity on its filesystem: device and inode (both 0 when unknown).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct FileId {
    pub device: u64,
    pub inode: u64,
}

impl FileId {
    /// Whether this identity was recorded (rows written before identities were have none).
    pub fn is_known(self) -> bool {
        self != FileId::default()
    }
}

/// Everything one epoch produced, committed in one transaction.
#[derive(Clone, Debug, Default)]
pub struct CommitBatch {
    pub groups: Vec<GroupDelta>,
    pub progress: Vec<FileProgress>,
    /// Lines read and rejected for this batch (added to the stored totals).
    pub lines: u64,
    pub rejected: u64,
    /// Requests counted by an earlier commit whose lines were not complete then.
    pub retractions: Vec<Retraction>,
    /// Lines (and of them, rejected ones) counted earlier and taken back now.
    pub retracted_lines: u64,
    pub retracted_rejected: u64,
}

/// Another writer advanced a file this commit meant to advance.
#[derive(Debug, thiserror::Error)]
#[error(
    "{path} was ingested by another process meanwhile (expected offset {expected}, found {found}); \
     nothing of this batch was committed: run the ingestion again"
)]
pub struct Conflict {
    pub path: String,
    pub expected: u64,
    pub found: u64,
}

/// Groups read, merged and written together: one statement reads their stored state (two bound
/// values a group: 1,000 stay under both backends' limit on bound values).
const CHUNK_ROWS: usize = 1000;

pub(super) const DELETE_DAY: &str =
    "DELETE FROM resource_statistics_by_day WHERE customer_id = $1 AND date = $2";
/// Every row of one file: under its path, or under another name with the same identity.
pub(super) const SELECT_PROGRESS: &str = "SELECT path, byte_offset, decoded_offset FROM ingest_progress \
     WHERE path = $1 OR (device = $2 AND inode = $3 AND (device <> 0 OR inode <> 0))";
pub(super) const ADD_TOTALS: &str = "UPDATE ingest_totals SET lines = lines + $1, rejected = rejected + $2, \
     last_commit_unix = $3 WHERE id = 1";
pub(super) const UPSERT_PROGRESS: &str = "INSERT INTO ingest_progress \
     (path, byte_offset, head_hash, head_len, device, inode, decoded_offset, tail_len, end_hash) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
     ON CONFLICT (path) DO UPDATE SET byte_offset = excluded.byte_offset, \
     head_hash = excluded.head_hash, head_len = excluded.head_len, device = excluded.device, \
     inode = excluded.inode, decoded_offset = excluded.decoded_offset, \
     tail_len = excluded.tail_len, end_hash = excluded.end_hash";
/// The columns of a stored day, in the order of [`MergedDay::columns`] (after the key, before the
/// histogram).
pub(super) const INSERT_DAYS: &str = "INSERT INTO resource_statistics_by_day (customer_id, date, \
     success_requests, failed_requests, uptime_percentage, duration_mean, duration_p50, duration_p99, \
     total_requests, status_1xx, status_2xx, status_3xx, status_4xx, status_5xx, \
     availability_percentage, duration_p90, duration_p95, duration_max, \
     duration_sum_us, duration_sum_us_high, success_duration_sum_us, success_duration_sum_us_high, \
     duration_histogram) ";
pub(super) const ON_CONFLICT_DAYS: &str = " ON CONFLICT (customer_id, date) DO UPDATE SET \
     success_requests = excluded.success_requests, failed_requests = excluded.failed_requests, \
     uptime_percentage = excluded.uptime_percentage, duration_mean = excluded.duration_mean, \
     duration_p50 = excluded.duration_p50, duration_p99 = excluded.duration_p99, \
     total_requests = excluded.total_requests, status_1xx = excluded.status_1xx, \
     status_2xx = excluded.status_2xx, status_3xx = excluded.status_3xx, \
     status_4xx = excluded.status_4xx, status_5xx = excluded.status_5xx, \
     availability_percentage = excluded.availability_percentage, \
     duration_p90 = excluded.duration_p90, duration_p95 = excluded.duration_p95, \
     duration_max = excluded.duration_max, duration_sum_us = excluded.duration_sum_us, \
     duration_sum_us_high = excluded.duration_sum_us_high, \
     success_duration_sum_us = excluded.success_duration_sum_us, \
     success_duration_sum_us_high = excluded.success_duration_sum_us_high, \
     duration_histogram = excluded.duration_histogram";

/// Selects the stored state (after `extra` columns) of one customer's days in a date range.
pub(super) fn select_state(extra: &str) -> String {
    format!(
        "SELECT {extra}{} FROM resource_statistics_by_day \
         WHERE customer_id = $1 AND date >= $2 AND date <= $3",
        super::STATE_COLUMNS
    )
}

/// Selects the stored state of the (customer, day) keys of a `VALUES` list that follows, closed by
/// [`KEYS_JOIN`] (a join, so that both backends look each key up in the primary key: SQLite scans
/// the whole table for a row-value `IN` list).
pub(super) fn select_keys() -> String {
    format!("SELECT customer_id, date, {} FROM (", super::STATE_COLUMNS)
}

pub(super) const KEYS_JOIN: &str = ") AS k JOIN resource_statistics_by_day \
     ON customer_id = k.column1 AND date = k.column2";

/// A progress row as [`SELECT_PROGRESS`] reads it: path, byte offset, decoded offset.
pub(super) type ProgressRow = (String, i64, i64);

/// One stored value of a day.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Column {
    Integer(i64),
    Real(f64),
}

/// Two ascending streams of groups as one, equal keys merged.
fn merge_sorted(
    a: impl Iterator<Item = anyhow::Result<GroupDelta>>,
    b: impl Iterator<Item = GroupDelta>,
) -> impl Iterator<Item = anyhow::Result<GroupDelta>> {
    let mut a = a.peekable();
    let mut b = b.peekable();
    fn key(group: &GroupDelta) -> (&str, Day) {
        (&group.customer, group.day)
    }
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(Ok(x)), Some(y)) if key(y) < key(x) => b.next().map(Ok),
        (Some(Ok(x)), Some(y)) if key(y) == key(x) => {
            let mut group = a.next()?.ok()?;
            group.stats.merge(b.next()?.stats);
            Some(Ok(group))
        }
        (Some(_), _) => a.next(),
        (None, _) => b.next().map(Ok),
    })
}

/// Refuses a commit when a row of the file no longer holds what the plan saw: another process
/// ingested it (under this name or another) meanwhile.
fn check_progress(progress: &FileProgress, rows: &[(String, i64, i64)]) -> Result<(), Conflict> {
    if !rows.iter().any(|(path, ..)| *path == progress.path) && progress.expected_offset != 0 {
        return Err(Conflict {
            path: progress.path.clone(),
            expected: progress.expected_offset,
            found: 0,
        });
    }
    for (path, offset, decoded) in rows {
        let (offset, decoded) = (count(*offset), count(*decoded));
        let expected = if *path == progress.path {
            Some((progress.expected_offset, progress.expected_decoded))
        } else {
            let name = progress.other_names.iter().find(|name| name.path == *path);
            name.map(|name| (name.offset, decoded))
        };
        let expected = expected.unwrap_or((0, 0));
        if (offset, decoded) != expected {
            return Err(Conflict {
                path: path.clone(),
                expected: expected.0,
                found: offset,
            });
        }
    }
    Ok(())
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A stored day after merging, ready to write.
pub(super) struct MergedDay {
    pub customer: String,
    pub day: Day,
    pub stats: DayStats,
}

impl MergedDay {
    /// Its values for the columns of [`INSERT_DAYS`] between the key and the histogram: the one
    /// place that lists them, for every backend. The stats must be compacted.
    pub fn columns(&mut self) -> [Column; 20] {
        use Column::{Integer, Real};
        let s = self.stats.statistics();
        let sum = stored_wide(self.stats.duration_sum_us);
        let success_sum = stored_wide(self.stats.success_duration_sum_us);
        [
            Integer(stored(s.success_requests)),
            Integer(stored(s.failed_requests)),
            Real(s.uptime_percentage),
            Real(s.duration_mean),
            Real(s.duration_p50),
            Real(s.duration_p99),
            Integer(stored(s.total_requests)),
            Integer(stored(s.status_1xx)),
            Integer(stored(s.status_2xx)),
            Integer(stored(s.status_3xx)),
            Integer(stored(s.status_4xx)),
            Integer(stored(s.status_5xx)),
            Real(s.availability_percentage),
            Real(s.duration_p90),
            Real(s.duration_p95),
            Real(s.duration_max),
            Integer(sum.0),
            Integer(sum.1),
            Integer(success_sum.0),
            Integer(success_sum.1),
        ]
    }
}

impl Store {
    /// Merges `batch.groups` into the stored days and records `batch.progress`, in one
    /// transaction under the writer lock. Returns the number of groups written.
    pub async fn commit(&self, mut batch: CommitBatch) -> anyhow::Result<usize> {
        // Deltas for the same day merge first: each day is written once.
        let mut sorted: BTreeMap<(String, Day), DayStats> = BTreeMap::new();
        for delta in std::mem::take(&mut batch.groups) {
            sorted
                .entry((delta.customer, delta.day))
                .or_default()
                .merge(delta.stats);
        }
        let groups = sorted.into_iter().map(|((customer, day), stats)| {
            Ok(GroupDelta {
                customer,
                day,
                stats,
            })
        });
        self.commit_sorted(batch, groups).await
    }

    /// [`Store::commit`] for groups given apart from `batch` (whose own `groups` must be empty),
    /// strictly ascending by (customer, day): they are read, merged and written a chunk at a time,
    /// so a commit of millions of groups holds only a chunk of them in memory.
    #[tracing::instrument(level = "debug", skip_all, fields(files = batch.progress.len()))]
    pub async fn commit_sorted(
        &self,
        batch: CommitBatch,
        groups: impl Iterator<Item = anyhow::Result<GroupDelta>>,
    ) -> anyhow::Result<usize> {
        debug_assert!(batch.groups.is_empty(), "groups come apart from the batch");
        let mut retractions: HashMap<(String, Day), Vec<(u16, u64)>> = HashMap::new();
        for r in &batch.retractions {
            retractions
                .entry((r.customer.clone(), r.day))
                .or_default()
                .push((r.status, r.duration_us));
        }
        // A day with a retraction is read and written even when nothing new came for it.
        let mut retracted: Vec<GroupDelta> = retractions
            .keys()
            .map(|(customer, day)| GroupDelta {
                customer: customer.clone(),
                day: *day,
                stats: DayStats::default(),
            })
            .collect();
        retracted.sort_by(|a, b| (&a.customer, a.day).cmp(&(&b.customer, b.day)));
        let groups = merge_sorted(groups, retracted.into_iter());
        match &self.backend {
            Backend::Sqlite(pool) => {
                let path = pool.connect_options().get_filename().to_path_buf();
                let tx = super::sqlite_writes::SqliteWrite::begin(&path)?;
                write_commit(tx, &batch, groups, retractions).await
            }
            Backend::Postgres(pool) => {
                let tx = PgWrite::begin(pool).await?;
                write_commit(tx, &batch, groups, retractions).await
            }
        }
    }

    /// The committed progress of every input file, by path (in order: every process of a
    /// cluster that reads it decides the same).
    pub async fn progress(&self) -> anyhow::Result<BTreeMap<String, StoredProgress>> {
        const SELECT_ALL: &str = "SELECT path, byte_offset, head_hash, head_len, device, inode, decoded_offset, tail_len, end_hash \
             FROM ingest_progress";
        let rows = with_pool!(self, pool => {
            let rows = sqlx::query(SELECT_ALL).fetch_all(pool).await?;
            rows.iter()
                .map(|row| {
                    Ok((
                        row.try_get::<String, _>("path")?,
                        StoredProgress {
                            offset: count(row.try_get("byte_offset")?),
                            head_hash: row.try_get::<i64, _>("head_hash")? as u64,
                            head_len: count(row.try_get("head_len")?),
                            decoded: count(row.try_get("decoded_offset")?),
                            tail: count(row.try_get("tail_len")?),
                            end_hash: row.try_get::<i64, _>("end_hash")? as u64,
                            file: FileId {
                                device: row.try_get::<i64, _>("device")? as u64,
                                inode: row.try_get::<i64, _>("inode")? as u64,
                            },
                        },
                    ))
                })
                .collect::<Result<BTreeMap<_, _>, sqlx::Error>>()?
        });
        Ok(rows)
    }
}

/// The commit itself, in `tx`: checks that no other writer moved the files meanwhile, merges the
/// groups (ascending) into their stored days a chunk at a time, takes back what `retractions`
/// says, and records the progress and totals. Returns the number of days written.
async fn write_commit(
    mut tx: impl WriteTx,
    batch: &CommitBatch,
    mut groups: impl Iterator<Item = anyhow::Result<GroupDelta>>,
    mut retractions: HashMap<(String, Day), Vec<(u16, u64)>>,
) -> anyhow::Result<usize> {
    for progress in &batch.progress {
        let rows = tx.progress_rows(progress).await?;
        check_progress(progress, &rows)?;
    }
    // In an empty table no group exists yet: nothing to read back.
    let stored_days = tx.holds_any_day().await?;
    let mut written = 0;
    let mut chunk = Vec::with_capacity(CHUNK_ROWS);
    loop {
        chunk.clear();
        for group in groups.by_ref().take(CHUNK_ROWS) {
            let group = group?;
            chunk.push(((group.customer, group.day), group.stats));
        }
        if chunk.is_empty() {
            break;
        }
        let mut existing = HashMap::new();
        if stored_days {
            let keys: Vec<(String, Day)> = chunk.iter().map(|(key, _)| key.clone()).collect();
            existing = tx.stored_states(&keys).await?;
        }
        let mut merged = Vec::with_capacity(chunk.len());
        for (key, delta) in chunk.drain(..) {
            let mut stats = existing.remove(&key).unwrap_or_default();
            stats.merge(delta);
            for (status, duration_us) in retractions.remove(&key).unwrap_or_default() {
                if !stats.remove(status, duration_us) {
                    tracing::warn!(
                        "{} {}: the stored day does not hold the request being taken back (the \
                         database was changed by hand?)",
                        crate::errors::escaped(key.0.as_bytes()),
                        key.1
                    );
                }
            }
            let (customer, day) = key;
            if stats.total() == 0 {
                tx.delete_day(&customer, day).await?;
            } else {
                stats.compact();
                merged.push(MergedDay {
                    customer,
                    day,
                    stats,
                });
            }
        }
        if !merged.is_empty() {
            tx.write_days(&mut merged, !stored_days).await?;
        }
        written += merged.len();
    }
    let linked = batch.progress.iter().flat_map(|progress| {
        let links = progress.other_names.iter().filter(|name| name.linked);
        std::iter::once((&progress.path, progress))
            .chain(links.map(move |name| (&name.path, progress)))
    });
    for (path, progress) in linked {
        tx.record_progress(path, progress).await?;
    }
    tx.add_totals(
        stored(batch.lines) - stored(batch.retracted_lines),
        stored(batch.rejected) - stored(batch.retracted_rejected),
        unix_now(),
    )
    .await?;
    tx.commit().await?;
    Ok(written)
}

/// A file's committed progress, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredProgress {
    pub offset: u64,
    /// Bytes of complete lines decompressed past `offset` (a compressed file that broke off).
    pub decoded: u64,
    /// Bytes before `offset` of a last line counted without its newline.
    pub tail: u64,
    /// FNV-1a of the 4 KiB before `offset` (0 when not recorded).
    pub end_hash: u64,
    pub head_hash: u64,
    pub head_len: u64,
    pub file: FileId,
}
