//! One ingestion commit: merge group deltas into stored days and advance file offsets, atomically.
//! The algorithm is written once, over the steps of a [`WriteTx`]; each backend runs the steps its
//! own fastest way (`transaction.rs`, `sqlite_writes.rs`).

use std::collections::{BTreeMap, HashMap};

use sqlx::Row;

use super::batch::{
    ANY_DAY, CHUNK_ROWS, CommitBatch, Conflict, FileCheckpoint, FileId, GroupDelta, MergedDay,
    other_requests,
};
use super::months::{CLEAR_MONTHS, MARK_MONTHS_BUILT, MergedMonth, MonthChange, Months};
use super::transaction::{PgWrite, StoredStates, WriteTx};
use super::{Backend, Store, count, stored, with_pool};
use crate::day::Day;
use crate::stats::DayStats;

/// The requests to take back, by day: each its resource, status and duration.
type Retractions = HashMap<(String, Day), Vec<(String, u16, u64)>>;

/// Two ascending streams of groups as one, equal keys merged.
fn merge_sorted(
    a: impl Iterator<Item = anyhow::Result<GroupDelta>> + Send,
    b: impl Iterator<Item = GroupDelta> + Send,
) -> impl Iterator<Item = anyhow::Result<GroupDelta>> + Send {
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
fn check_progress(progress: &FileCheckpoint, rows: &[(String, i64, i64)]) -> Result<(), Conflict> {
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

impl Store {
    /// Merges `batch.groups` into the stored days and records `batch.progress`, in one
    /// transaction under the writer lock.
    pub async fn commit(&self, mut batch: CommitBatch) -> anyhow::Result<Written> {
        // Deltas for the same day merge first: each day is written once.
        let mut sorted: BTreeMap<(String, Day), DayStats> = BTreeMap::new();
        for delta in std::mem::take(&mut batch.groups) {
            sorted
                .entry((delta.customer, delta.day))
                .or_default()
                .merge(delta.stats);
        }
        let groups = sorted
            .into_iter()
            .map(|((customer, day), stats)| Ok(GroupDelta::new(customer, day, stats)));
        self.commit_sorted(batch, groups).await
    }

    /// [`Store::commit`] for groups given apart from `batch` (whose own `groups` must be empty),
    /// strictly ascending by (customer, day): they are read, merged and written a chunk at a time,
    /// so a commit of millions of groups holds only a chunk of them in memory.
    #[tracing::instrument(level = "debug", skip_all, fields(files = batch.progress.len()))]
    pub async fn commit_sorted(
        &self,
        batch: CommitBatch,
        groups: impl Iterator<Item = anyhow::Result<GroupDelta>> + Send,
    ) -> anyhow::Result<Written> {
        debug_assert!(batch.groups.is_empty(), "groups come apart from the batch");
        let mut retractions = Retractions::new();
        for r in &batch.retractions {
            retractions
                .entry((r.customer.clone(), r.day))
                .or_default()
                .push((r.resource.clone(), r.status, r.duration_us));
        }
        // A day with a retraction is read and written even when nothing new came for it.
        let mut retracted: Vec<GroupDelta> = retractions
            .keys()
            .map(|(customer, day)| GroupDelta::new(customer.clone(), *day, DayStats::default()))
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
                let written = write_commit(tx, &batch, groups, retractions).await?;
                super::analyze::analyze_if_grown(pool, written.days).await;
                Ok(written)
            }
        }
    }

    /// Whether any day is stored (a commit into a table that holds none writes its groups as they
    /// are, without reading anything back).
    pub async fn holds_any_day(&self) -> anyhow::Result<bool> {
        Ok(with_pool!(self, pool => sqlx::query(ANY_DAY).fetch_optional(pool).await?.is_some()))
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

/// What a commit wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Days written (new or changed).
    pub days: usize,
    /// Requests newly counted as [`crate::resources::OTHER`]: past the most resources a day
    /// keeps by name.
    pub other_requests: u64,
}

/// The commit itself, in `tx`: checks that no other writer moved the files meanwhile, merges the
/// groups (ascending) into their stored days a chunk at a time, takes back what `retractions`
/// says, and records the progress and totals.
async fn write_commit(
    mut tx: impl WriteTx,
    batch: &CommitBatch,
    mut groups: impl Iterator<Item = anyhow::Result<GroupDelta>> + Send,
    mut retractions: Retractions,
) -> anyhow::Result<Written> {
    for progress in &batch.progress {
        let rows = tx.progress_rows(progress).await?;
        check_progress(progress, &rows)?;
    }
    if !tx.months_built().await? {
        build_months(&mut tx).await?;
    }
    // In an empty table no group exists yet: nothing to read back, nothing to merge with.
    let stored_days = tx.holds_any_day().await?;
    let mut written = Written::default();
    let mut months = Months::default();
    if !stored_days && retractions.is_empty() {
        let other = std::sync::atomic::AtomicU64::new(0);
        let mut days = groups.by_ref().filter_map(|group| match group {
            Ok(group) if group.stats.total() == 0 => None,
            group => Some(group.map(|group| {
                let counted = group.other_requests();
                other.fetch_add(counted, std::sync::atomic::Ordering::Relaxed);
                MergedDay::from(group)
            })),
        });
        // The days are inserted in parts, each until enough months are complete to be written.
        loop {
            let mut part = UntilMonthsFull {
                days: &mut days,
                months: &mut months,
                ended: false,
            };
            written.days += tx.insert_fresh(&mut part).await?;
            let ended = part.ended;
            write_months(&mut tx, months.take_complete(), true).await?;
            if ended {
                break;
            }
        }
        written.other_requests = other.into_inner();
    }
    let mut next_chunk = || {
        groups
            .by_ref()
            .take(CHUNK_ROWS)
            .map(|group| group?.into_keyed_stats())
            .collect::<anyhow::Result<Vec<_>>>()
    };
    let mut chunk = next_chunk()?;
    if stored_days && !chunk.is_empty() {
        tx.read_ahead(&keys_of(&chunk));
    }
    while !chunk.is_empty() {
        // The next chunk's stored days are read while this one is merged and written.
        let following = next_chunk()?;
        if stored_days && !following.is_empty() {
            tx.read_ahead(&keys_of(&following));
        }
        let chunk = std::mem::replace(&mut chunk, following);
        let chunk = write_chunk(&mut tx, chunk, stored_days, &mut retractions, &mut months).await?;
        written.days += chunk.days;
        written.other_requests += chunk.other_requests;
        if months.is_full() {
            write_months(&mut tx, months.take_complete(), !stored_days).await?;
        }
    }
    write_months(&mut tx, months.take_all(), !stored_days).await?;
    let linked = batch.progress.iter().flat_map(|progress| {
        let links = progress.other_names.iter().filter(|name| name.linked);
        std::iter::once((&progress.path, progress))
            .chain(links.map(move |name| (&name.path, progress)))
    });
    for progress in &batch.progress {
        if let Some(retired) = &progress.retire {
            tx.retire_progress(&progress.path, retired).await?;
        }
    }
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

/// Days of a fresh table's insert, each folded into `months` as it goes by, until enough months
/// are complete to be written (`ended` once the days are over).
struct UntilMonthsFull<'a, I> {
    days: &'a mut I,
    months: &'a mut Months,
    ended: bool,
}

impl<I: Iterator<Item = anyhow::Result<MergedDay>>> Iterator for UntilMonthsFull<'_, I> {
    type Item = anyhow::Result<MergedDay>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.months.is_full() {
            return None;
        }
        let day = self.days.next();
        match &day {
            None => self.ended = true,
            Some(Ok(day)) => self.months.add(&day.customer, day.day, &day.stats),
            Some(Err(_)) => {}
        }
        day
    }
}

fn keys_of(chunk: &[((String, Day), DayStats)]) -> Vec<(String, Day)> {
    chunk.iter().map(|(key, _)| key.clone()).collect()
}

/// Merges a chunk of groups (in key order) into their stored days, takes back what `retractions`
/// names, and writes the result: a day left with no request is deleted. What changes in the days
/// is folded into `months`.
async fn write_chunk(
    tx: &mut impl WriteTx,
    chunk: Vec<((String, Day), DayStats)>,
    stored_days: bool,
    retractions: &mut Retractions,
    months: &mut Months,
) -> anyhow::Result<Written> {
    let mut existing = HashMap::new();
    if stored_days {
        existing = tx.stored_states(&keys_of(&chunk)).await?;
    }
    let mut merged = Vec::with_capacity(chunk.len());
    let mut other = 0;
    for (key, mut delta) in chunk {
        delta.compact();
        months.add(&key.0, key.1, &delta);
        let mut stats = existing.remove(&key).unwrap_or_default();
        let other_before = other_requests(&stats);
        stats.merge(delta);
        other += other_requests(&stats).saturating_sub(other_before);
        for (resource, status, duration_us) in retractions.remove(&key).unwrap_or_default() {
            if stats.remove_request(&resource, status, duration_us) {
                months.take_back(&key.0, key.1, status, duration_us);
            } else {
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
                values: None,
            });
        }
    }
    if !merged.is_empty() {
        tx.write_days(&mut merged, !stored_days).await?;
    }
    Ok(Written {
        days: merged.len(),
        other_requests: other,
    })
}

/// Applies `changes` to the stored months: each read (unless `fresh`: none is stored), merged with
/// what the commit adds, its taken back requests removed, and written; a month left with no
/// request is deleted.
async fn write_months(
    tx: &mut impl WriteTx,
    changes: Vec<MonthChange>,
    fresh: bool,
) -> anyhow::Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut stored = StoredStates::default();
    if !fresh {
        // One read a chunk (the bound values of a statement are limited).
        for chunk in changes.chunks(CHUNK_ROWS) {
            let keys: Vec<(String, Day)> = chunk
                .iter()
                .map(|change| (change.customer.clone(), change.month))
                .collect();
            stored.extend(tx.stored_months(&keys).await?);
        }
    }
    let mut merged = Vec::with_capacity(changes.len());
    for change in changes {
        let key = (change.customer, change.month);
        let mut state = stored.remove(&key).unwrap_or_default();
        state.merge(change.added);
        for (status, duration_us) in change.taken_back {
            if !state.remove(status, duration_us) {
                tracing::warn!(
                    "{} {}: the stored month does not hold a request taken back from its day \
                     (the database was changed by hand?)",
                    crate::errors::escaped(key.0.as_bytes()),
                    key.1
                );
            }
        }
        let (customer, month) = key;
        if state.total() == 0 {
            tx.delete_month(&customer, month).await?;
        } else {
            state.compact();
            merged.push(MergedMonth {
                customer,
                month,
                state,
            });
        }
    }
    tx.write_months(&merged).await
}

/// Folds every stored day into its month, once: days stored before the months' table existed
/// (see its migration). Reads the days a page at a time, in key order.
async fn build_months(tx: &mut impl WriteTx) -> anyhow::Result<()> {
    tx.run(CLEAR_MONTHS).await?;
    let mut months = Months::default();
    let mut after = (String::new(), Day::FIRST);
    let mut days = 0;
    loop {
        let page = tx.days_after(&after, CHUNK_ROWS).await?;
        for ((customer, day), state) in &page {
            months.add(customer, *day, state);
        }
        days += page.len();
        if months.is_full() {
            write_months(tx, months.take_complete(), true).await?;
        }
        let more = page.len() == CHUNK_ROWS;
        match page.into_iter().last() {
            Some((key, _)) if more => after = key,
            _ => break,
        }
    }
    write_months(tx, months.take_all(), true).await?;
    tx.run(MARK_MONTHS_BUILT).await?;
    if days > 0 {
        eprintln!(
            "note: folded the {days} stored days into their months (once: they were stored by a version without monthly states)"
        );
    }
    Ok(())
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
