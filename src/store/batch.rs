//! What a commit is made of, shared by the commit's algorithm (`commit.rs`) and both backends'
//! transactions (`transaction.rs`, `sqlite_writes.rs`): the batch and its parts, the SQL of each
//! step, and the row of a merged day as it is bound. Imports none of them.

use std::sync::LazyLock;

use super::{stored, stored_wide};
use crate::day::Day;
use crate::histogram::{read_varint, write_varint};
use crate::stats::{DayStats, Statistics};
use Column::{Integer, Real};

/// New requests for one (customer, day) group.
#[derive(Clone, Debug)]
pub struct GroupDelta {
    pub customer: String,
    pub day: Day,
    pub stats: DayStats,
    /// The row of a day that is all new (no stored state to merge with), computed ahead where
    /// the group was drained (in parallel, off the writer's thread); `None` to have the writer
    /// compute it.
    pub values: Option<RowValues>,
}

impl GroupDelta {
    pub fn new(customer: String, day: Day, stats: DayStats) -> GroupDelta {
        GroupDelta {
            customer,
            day,
            stats,
            values: None,
        }
    }

    /// Computes the row this group is when written as a day of its own. Its breakdown is then
    /// in the row's bytes and is freed here, off the writer's thread, which never reads it again.
    pub fn with_values(mut self) -> GroupDelta {
        self.values = Some(RowValues::of(&mut self.stats));
        self.stats.resources = None;
        self
    }

    /// Its key and its state whole: with its breakdown read back from the row's bytes when that
    /// was freed (a writer that finds the table no longer empty merges the state, not the row).
    pub fn into_keyed_stats(self) -> anyhow::Result<((String, Day), DayStats)> {
        let mut stats = self.stats;
        if let Some(RowValues {
            resources: Some(bytes),
            ..
        }) = &self.values
        {
            stats.resources = Some(Box::new(crate::resources::Breakdown::decode(bytes)?));
        }
        Ok(((self.customer, self.day), stats))
    }

    /// Appends this day with its row, computed here unless it was (read back by
    /// [`GroupDelta::decode`]): how an owner of another process sends its days to the committer,
    /// which then writes them into an empty table without computing anything.
    pub fn encode(self, bytes: &mut Vec<u8>) {
        let mut day = match self.values {
            Some(_) => self,
            None => self.with_values(),
        };
        write_varint(bytes, day.customer.len() as u64);
        bytes.extend_from_slice(day.customer.as_bytes());
        write_varint(bytes, u64::from(day.day.0 as u32));
        // The breakdown is not part of the state's form: it is in the row's.
        day.stats.encode(bytes);
        day.values.as_ref().expect("computed above").encode(bytes);
    }

    /// A day as [`GroupDelta::encode`] wrote it (`None`: the bytes are not one).
    pub fn decode(mut bytes: &[u8]) -> Option<GroupDelta> {
        let bytes = &mut bytes;
        let len = usize::try_from(read_varint(bytes).ok()?).ok()?;
        let customer = std::str::from_utf8(bytes.get(..len)?).ok()?.to_string();
        *bytes = &bytes[len..];
        let day = Day(u32::try_from(read_varint(bytes).ok()?).ok()? as i32);
        let stats = DayStats::decode(bytes).ok()?;
        let values = RowValues::decode(bytes)?;
        bytes.is_empty().then_some(GroupDelta {
            customer,
            day,
            stats,
            values: Some(values),
        })
    }

    /// Requests of this group counted as [`crate::resources::OTHER`].
    pub fn other_requests(&self) -> u64 {
        match &self.values {
            Some(values) => values.other_requests,
            None => other_requests(&self.stats),
        }
    }
}

/// Requests of `stats` counted as [`crate::resources::OTHER`].
pub fn other_requests(stats: &DayStats) -> u64 {
    stats.resources.as_ref().map_or(0, |b| b.other_requests())
}

/// A day's values as a write binds them: [`DAY_COLUMNS`], the histogram's bytes and the
/// breakdown's (`None`: the day has none).
#[derive(Clone, Debug)]
pub struct RowValues {
    pub(super) columns: [Column; DAY_COLUMNS.len()],
    pub(super) histogram: Vec<u8>,
    pub(super) resources: Option<Vec<u8>>,
    /// Requests of the breakdown counted as [`crate::resources::OTHER`].
    other_requests: u64,
}

impl RowValues {
    /// The values of the day `stats` (compacted here).
    pub fn of(stats: &mut DayStats) -> RowValues {
        stats.compact();
        let statistics = stats.statistics();
        RowValues {
            columns: DAY_COLUMNS.map(|(_, value)| value(&statistics, stats)),
            histogram: stats.histogram.to_bytes(),
            resources: stats.resources.as_mut().map(|breakdown| {
                let mut bytes = Vec::new();
                breakdown.encode(&mut bytes);
                bytes
            }),
            other_requests: other_requests(stats),
        }
    }

    /// Appends these values (read back by [`RowValues::decode`]): which columns are reals, then
    /// each column (an integer as a zigzag varint, a real as its 8 bytes), the histogram's bytes,
    /// the breakdown's (their length plus one; 0: none) and the requests counted as `(other)`.
    fn encode(&self, bytes: &mut Vec<u8>) {
        let reals = self
            .columns
            .iter()
            .enumerate()
            .fold(0u64, |reals, (i, column)| {
                reals | u64::from(matches!(column, Real(_))) << i
            });
        write_varint(bytes, reals);
        for column in &self.columns {
            match *column {
                Integer(value) => write_varint(bytes, ((value << 1) ^ (value >> 63)) as u64),
                Real(value) => bytes.extend_from_slice(&value.to_le_bytes()),
            }
        }
        write_bytes(bytes, &self.histogram);
        match &self.resources {
            None => write_varint(bytes, 0),
            Some(resources) => {
                write_varint(bytes, resources.len() as u64 + 1);
                bytes.extend_from_slice(resources);
            }
        }
        write_varint(bytes, self.other_requests);
    }

    /// Values as [`RowValues::encode`] wrote them, read from the front of `bytes`.
    fn decode(bytes: &mut &[u8]) -> Option<RowValues> {
        let reals = read_varint(bytes).ok()?;
        let mut columns = [Integer(0); DAY_COLUMNS.len()];
        for (i, column) in columns.iter_mut().enumerate() {
            *column = if reals >> i & 1 == 1 {
                let (value, rest) = bytes.split_first_chunk::<8>()?;
                *bytes = rest;
                Real(f64::from_le_bytes(*value))
            } else {
                let zigzag = read_varint(bytes).ok()?;
                Integer((zigzag >> 1) as i64 ^ -((zigzag & 1) as i64))
            };
        }
        let histogram = read_bytes(bytes)?;
        let resources = match read_varint(bytes).ok()? {
            0 => None,
            len => Some(take_bytes(bytes, len - 1)?),
        };
        let other_requests = read_varint(bytes).ok()?;
        Some(RowValues {
            columns,
            histogram,
            resources,
            other_requests,
        })
    }
}

/// Appends `value`'s length, then its bytes.
fn write_bytes(bytes: &mut Vec<u8>, value: &[u8]) {
    write_varint(bytes, value.len() as u64);
    bytes.extend_from_slice(value);
}

/// Bytes as [`write_bytes`] wrote them, from the front of `bytes`.
fn read_bytes(bytes: &mut &[u8]) -> Option<Vec<u8>> {
    let len = read_varint(bytes).ok()?;
    take_bytes(bytes, len)
}

/// The first `len` bytes of `bytes`, taken off it.
fn take_bytes(bytes: &mut &[u8], len: u64) -> Option<Vec<u8>> {
    let len = usize::try_from(len).ok()?;
    let value = bytes.get(..len)?.to_vec();
    *bytes = &bytes[len..];
    Some(value)
}

/// A request counted before its line was complete (a last line without a newline, which then
/// went on): taken back from its stored day before the whole line is counted.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Retraction {
    pub customer: String,
    pub day: Day,
    /// Its resource (empty when it was counted without one).
    pub resource: String,
    pub status: u16,
    pub duration_us: u64,
}

/// How far one input file has now been consumed, as a commit records it: its progress row's new
/// values, and what the row must hold before.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileCheckpoint {
    pub path: String,
    /// The offset the stored row must hold now (0 when there is no row): anything else means
    /// another process ingested this file meanwhile, and the commit is refused.
    pub expected_offset: u64,
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
    /// The row under `path` describes another file (the path names a new one now): before it is
    /// overwritten, it is kept under this name, so that its file is still known by its content
    /// when it turns up again (compressed, copied).
    pub retire: Option<String>,
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
    pub progress: Vec<FileCheckpoint>,
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
pub(super) const CHUNK_ROWS: usize = 1000;

pub(super) const DELETE_DAY: &str =
    "DELETE FROM resource_statistics_by_day WHERE customer_id = $1 AND date = $2";
/// Every row of one file: under its path, or under another name with the same identity.
pub(super) const SELECT_PROGRESS: &str = "SELECT path, byte_offset, decoded_offset FROM ingest_progress \
     WHERE path = $1 OR (device = $2 AND inode = $3 AND (device <> 0 OR inode <> 0))";
/// Keeps the progress row of `$2` under the name `$1` (as a file known by content only: no
/// device or inode), unless a row of that name is there already.
pub(super) const RETIRE_PROGRESS: &str = "INSERT INTO ingest_progress \
     (path, byte_offset, head_hash, head_len, device, inode, decoded_offset, tail_len, end_hash) \
     SELECT $1, byte_offset, head_hash, head_len, 0, 0, decoded_offset, tail_len, end_hash \
     FROM ingest_progress WHERE path = $2 ON CONFLICT (path) DO NOTHING";
pub(super) const ADD_TOTALS: &str = "UPDATE ingest_totals SET lines = lines + $1, rejected = rejected + $2, \
     last_commit_unix = $3 WHERE id = 1";
pub(super) const UPSERT_PROGRESS: &str = "INSERT INTO ingest_progress \
     (path, byte_offset, head_hash, head_len, device, inode, decoded_offset, tail_len, end_hash) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
     ON CONFLICT (path) DO UPDATE SET byte_offset = excluded.byte_offset, \
     head_hash = excluded.head_hash, head_len = excluded.head_len, device = excluded.device, \
     inode = excluded.inode, decoded_offset = excluded.decoded_offset, \
     tail_len = excluded.tail_len, end_hash = excluded.end_hash";
/// How one stored value of a day is computed from its statistics and state.
type DayValue = fn(&Statistics, &DayStats) -> Column;

/// The value columns of a stored day (between the key and the histogram), each with how its value
/// is computed: the one list of them, for every backend's writes and the API's reads. The first
/// sixteen are the API's statistics, in its order.
pub(super) const DAY_COLUMNS: [(&str, DayValue); 20] = [
    ("success_requests", |s, _| {
        Integer(stored(s.success_requests))
    }),
    ("failed_requests", |s, _| Integer(stored(s.failed_requests))),
    ("uptime_percentage", |s, _| Real(s.uptime_percentage)),
    ("duration_mean", |s, _| Real(s.duration_mean)),
    ("duration_p50", |s, _| Real(s.duration_p50)),
    ("duration_p99", |s, _| Real(s.duration_p99)),
    ("total_requests", |s, _| Integer(stored(s.total_requests))),
    ("status_1xx", |s, _| Integer(stored(s.status_1xx))),
    ("status_2xx", |s, _| Integer(stored(s.status_2xx))),
    ("status_3xx", |s, _| Integer(stored(s.status_3xx))),
    ("status_4xx", |s, _| Integer(stored(s.status_4xx))),
    ("status_5xx", |s, _| Integer(stored(s.status_5xx))),
    ("availability_percentage", |s, _| {
        Real(s.availability_percentage)
    }),
    ("duration_p90", |s, _| Real(s.duration_p90)),
    ("duration_p95", |s, _| Real(s.duration_p95)),
    ("duration_max", |s, _| Real(s.duration_max)),
    ("duration_sum_us", |_, d| {
        Integer(stored_wide(d.duration_sum_us).0)
    }),
    ("duration_sum_us_high", |_, d| {
        Integer(stored_wide(d.duration_sum_us).1)
    }),
    ("success_duration_sum_us", |_, d| {
        Integer(stored_wide(d.success_duration_sum_us).0)
    }),
    ("success_duration_sum_us_high", |_, d| {
        Integer(stored_wide(d.success_duration_sum_us).1)
    }),
];

/// The names of [`DAY_COLUMNS`] (the first `count` of them), as an SQL list.
pub(super) fn day_column_names(count: usize) -> String {
    let names: Vec<&str> = DAY_COLUMNS[..count].iter().map(|(name, _)| *name).collect();
    names.join(", ")
}

/// How many of [`DAY_COLUMNS`] the API returns.
pub(super) const STATISTICS_COLUMNS: usize = 16;

/// `INSERT INTO` the days' table with every column: the key, [`DAY_COLUMNS`], the histogram
/// (values or a `SELECT` follow).
pub(super) static INSERT_DAYS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO resource_statistics_by_day (customer_id, date, {}, duration_histogram, resources) ",
        day_column_names(DAY_COLUMNS.len())
    )
});

/// What follows [`INSERT_DAYS`] to replace a stored day: every value column from the new row.
pub(super) static ON_CONFLICT_DAYS: LazyLock<String> = LazyLock::new(|| {
    let set: Vec<String> = DAY_COLUMNS
        .iter()
        .map(|(name, _)| *name)
        .chain(["duration_histogram", "resources"])
        .map(|column| format!("{column} = excluded.{column}"))
        .collect();
    format!(
        " ON CONFLICT (customer_id, date) DO UPDATE SET {}",
        set.join(", ")
    )
});

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
    format!(
        "SELECT customer_id, date, {}, resources FROM (",
        super::STATE_COLUMNS
    )
}

pub(super) const KEYS_JOIN: &str = ") AS k JOIN resource_statistics_by_day \
     ON customer_id = k.column1 AND date = k.column2";

/// Whether the days' table holds any row.
pub(super) const ANY_DAY: &str = "SELECT 1 FROM resource_statistics_by_day LIMIT 1";

/// A progress row as [`SELECT_PROGRESS`] reads it: path, byte offset, decoded offset.
pub(super) type ProgressRow = (String, i64, i64);

/// One stored value of a day.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Column {
    Integer(i64),
    Real(f64),
}

/// A stored day after merging, ready to write.
pub(super) struct MergedDay {
    pub customer: String,
    pub day: Day,
    pub stats: DayStats,
    /// Its values, when they were computed ahead.
    pub values: Option<RowValues>,
}

impl From<GroupDelta> for MergedDay {
    /// The day of a group that has no stored state to merge with.
    fn from(group: GroupDelta) -> MergedDay {
        let mut stats = group.stats;
        if group.values.is_none() {
            stats.compact();
        }
        MergedDay {
            customer: group.customer,
            day: group.day,
            stats,
            values: group.values,
        }
    }
}

impl MergedDay {
    /// Its values for [`DAY_COLUMNS`] and its histogram's bytes, for every backend.
    pub fn values(&mut self) -> RowValues {
        match self.values.take() {
            Some(values) => values,
            None => RowValues::of(&mut self.stats),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Breakdown;
    use proptest::prelude::*;

    /// A day of `requests` (resource, status, duration), broken down by resource unless none has
    /// one.
    fn day_of(customer: &str, day: i32, requests: &[(u8, u16, u64)]) -> GroupDelta {
        let mut stats = DayStats::default();
        let mut entries = std::collections::BTreeMap::<Box<str>, DayStats>::new();
        for &(resource, status, duration) in requests {
            stats.record(status, duration);
            let name = format!("/r{resource}/é").into_boxed_str();
            entries.entry(name).or_default().record(status, duration);
        }
        if requests.iter().any(|&(resource, ..)| resource > 0) {
            stats.resources = Some(Box::new(Breakdown::of(entries)));
        }
        GroupDelta::new(customer.into(), Day(day), stats)
    }

    proptest! {
        #[test]
        fn a_day_sent_with_its_row_reads_back_as_the_day_and_row_it_was(
            customer in "[a-z_0-9é\u{1F600}]{0,12}",
            day in -1_000_000i32..3_000_000,
            requests in proptest::collection::vec(
                (0u8..4, 100u16..600, prop_oneof![0u64..2_000, any::<u64>()]), 1..40),
            computed in any::<bool>(),
        ) {
            let group = day_of(&customer, day, &requests);
            let expected = group.clone().with_values();
            let sent = if computed { group.with_values() } else { group };
            let mut bytes = Vec::new();
            sent.encode(&mut bytes);
            let read = GroupDelta::decode(&bytes).expect("a day");
            let (values, wanted) = (read.values.as_ref().unwrap(), expected.values.as_ref().unwrap());
            prop_assert_eq!(&values.columns, &wanted.columns);
            prop_assert_eq!(&values.histogram, &wanted.histogram);
            prop_assert_eq!(&values.resources, &wanted.resources);
            prop_assert_eq!(values.other_requests, wanted.other_requests);
            // As a writer that finds the table no longer empty merges it: the state whole.
            prop_assert_eq!(read.into_keyed_stats().unwrap(), expected.into_keyed_stats().unwrap());
            // Cut short anywhere, it is not a day.
            for len in 0..bytes.len() {
                prop_assert!(GroupDelta::decode(&bytes[..len]).is_none());
            }
        }
    }
}
