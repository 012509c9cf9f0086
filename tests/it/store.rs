//! The store on both backends: merge-commits, progress, and refusal of a conflicting commit.

use logstats::day::Day;
use logstats::stats::DayStats;
use logstats::store::{CommitBatch, FileCheckpoint, FileId, GroupDelta};

use crate::common::*;

fn delta(customer: &str, day: Day, requests: &[(u16, u64)]) -> GroupDelta {
    let mut stats = DayStats::default();
    requests.iter().for_each(|&(s, d)| stats.record(s, d));
    GroupDelta::new(customer.to_string(), day, stats)
}

fn progress(path: &str, expected: u64, offset: u64) -> FileCheckpoint {
    FileCheckpoint {
        path: path.to_string(),
        expected_offset: expected,
        offset,
        decoded: 0,
        expected_decoded: 0,
        tail: 0,
        head_hash: 1,
        head_len: 10,
        end_hash: 0,
        file: FileId::default(),
        other_names: Vec::new(),
        retire: None,
    }
}

#[test]
fn commits_merge_into_stored_days_never_overwrite_them() {
    for backend in backends() {
        let db = TestDb::new(backend);
        let store = db.store();
        let day = Day::from_ymd(2024, 9, 15).unwrap();
        let first = CommitBatch {
            groups: vec![
                delta("a", day, &[(200, 1_000_000), (500, 2_000_000)]),
                delta("a", day, &[(201, 3_000_000)]),
            ],
            progress: vec![progress("/logs/x", 0, 100)],
            lines: 4,
            rejected: 1,
            ..CommitBatch::default()
        };
        block_on(store.commit(first)).unwrap();
        let second = CommitBatch {
            groups: vec![delta("a", day, &[(404, 4_000_000)])],
            progress: vec![progress("/logs/x", 100, 200)],
            lines: 1,
            rejected: 0,
            ..CommitBatch::default()
        };
        block_on(store.commit(second)).unwrap();
        let rows = block_on(store.days("a", day.to_naive_date(), day.to_naive_date())).unwrap();
        let s = &rows[0].statistics;
        assert_eq!(
            (s.success_requests, s.failed_requests, s.total_requests),
            (2, 2, 4),
            "{backend:?}"
        );
        assert_eq!(
            (s.duration_mean, s.duration_p50, s.duration_p99),
            (2.5, 2.0, 4.0)
        );
        assert_eq!(
            (s.uptime_percentage, s.availability_percentage),
            (40.0, 75.0)
        );
        let stored = block_on(store.progress()).unwrap();
        assert_eq!(stored["/logs/x"].offset, 200);
        let totals = block_on(store.totals()).unwrap();
        assert_eq!((totals.ingested_lines, totals.rejected_lines), (5, 1));
        assert!(
            totals.last_commit_unix > 1.7e9,
            "the last commit time is recorded"
        );
    }
}

#[test]
fn a_commit_expecting_an_offset_another_writer_moved_is_refused_whole() {
    for backend in backends() {
        let db = TestDb::new(backend);
        let store = db.store();
        let day = Day::from_ymd(2024, 9, 15).unwrap();
        block_on(store.commit(CommitBatch {
            progress: vec![progress("/logs/x", 0, 100)],
            lines: 7,
            ..CommitBatch::default()
        }))
        .unwrap();
        let stale = CommitBatch {
            groups: vec![delta("a", day, &[(200, 1)])],
            progress: vec![progress("/logs/x", 0, 50)],
            lines: 1,
            rejected: 0,
            ..CommitBatch::default()
        };
        let error = block_on(store.commit(stale)).unwrap_err();
        assert!(error.to_string().contains("another process"), "{error}");
        let rows = block_on(store.days("a", day.to_naive_date(), day.to_naive_date())).unwrap();
        assert!(
            rows.is_empty(),
            "nothing of the refused batch was written ({backend:?})"
        );
        assert_eq!(block_on(store.totals()).unwrap().ingested_lines, 7);
    }
}

#[test]
fn a_new_sqlite_database_gets_16k_pages_and_one_made_with_4k_pages_keeps_them() {
    let page_size = |db: &TestDb| -> i64 {
        let path = db.url.strip_prefix("sqlite://").unwrap();
        let connection = rusqlite::Connection::open(path).unwrap();
        connection
            .query_row("PRAGMA page_size", [], |row| row.get(0))
            .unwrap()
    };
    let new = TestDb::new(Backend::Sqlite);
    let old = TestDb::new(Backend::Sqlite);
    {
        // As earlier releases made it: SQLite's default pages, in WAL mode.
        let path = old.url.strip_prefix("sqlite://").unwrap();
        let connection = rusqlite::Connection::open(path).unwrap();
        connection
            .execute_batch("PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; VACUUM;")
            .unwrap();
    }
    for db in [&new, &old] {
        let log = generated_log(db.dir(), "a.log", 2_000, 5);
        ingest_paths(&db.url, &[&log], 2);
        let text = std::fs::read_to_string(&log).unwrap();
        crate::oracle::assert_rows_match_text(&all_rows(&db.url), &text);
    }
    assert_eq!((page_size(&new), page_size(&old)), (16384, 4096));
}

/// A day broken down by resource: `requests` of (resource, status, duration).
fn broken_down(customer: &str, day: Day, requests: &[(&str, u16, u64)]) -> GroupDelta {
    let entries = requests.iter().map(|&(resource, status, duration)| {
        let mut stats = DayStats::default();
        stats.record(status, duration);
        (resource.into(), stats)
    });
    let breakdown = logstats::resources::Breakdown::of(entries);
    let mut stats = DayStats::default();
    for (_, entry) in breakdown.entries() {
        stats.merge(entry.clone());
    }
    stats.resources = Some(Box::new(breakdown));
    GroupDelta::new(customer.to_string(), day, stats)
}

#[test]
fn rows_computed_for_an_empty_table_another_writer_filled_are_merged_breakdown_and_all() {
    for backend in backends() {
        let db = TestDb::new(backend);
        let store = db.store();
        let day = Day::from_ymd(2024, 9, 15).unwrap();
        let first = CommitBatch {
            groups: vec![broken_down(
                "a",
                day,
                &[("/x", 200, 1_000), ("/y", 500, 2_000)],
            )],
            progress: vec![progress("/logs/first", 0, 100)],
            ..CommitBatch::default()
        };
        block_on(store.commit(first)).unwrap();
        // Computed while the table looked empty (as the committer does then), written after the
        // other writer's commit: the writer merges the state, which must still hold its breakdown.
        let late = broken_down("a", day, &[("/x", 201, 3_000), ("/z", 404, 4_000)]).with_values();
        let batch = CommitBatch {
            progress: vec![progress("/logs/second", 0, 100)],
            ..CommitBatch::default()
        };
        block_on(store.commit_sorted(batch, std::iter::once(Ok(late)))).unwrap();
        let date = day.to_naive_date();
        let states = block_on(store.day_states("a", date, date)).unwrap();
        let breakdown = states[0].1.resources.as_ref().expect("a breakdown");
        let totals: Vec<(&str, u64)> = breakdown
            .entries()
            .iter()
            .map(|(name, stats)| (&**name, stats.total()))
            .collect();
        assert_eq!(totals, [("/x", 2), ("/y", 1), ("/z", 1)], "{backend:?}");
        assert_eq!(states[0].1.total(), 4);
    }
}

#[test]
fn a_fresh_commit_that_breaks_a_constraint_stores_nothing_and_the_next_commits() {
    for backend in backends() {
        let db = TestDb::new(backend);
        let store = db.store();
        let first = Day::from_ymd(2024, 9, 1).unwrap();
        let days = |repeated: Option<i32>| {
            let mut groups: Vec<GroupDelta> = (0..40)
                .map(|i| delta("a", Day(first.0 + i), &[(200, 1_000)]))
                .collect();
            // A day twice, in the middle of a statement of many rows (a bug upstream).
            if let Some(i) = repeated {
                groups.insert(i as usize, delta("a", Day(first.0 + i), &[(200, 1_000)]));
            }
            groups.into_iter().map(|group| Ok(group.with_values()))
        };
        let batch = || CommitBatch {
            progress: vec![progress("/logs/a", 0, 100)],
            lines: 40,
            ..CommitBatch::default()
        };
        let broken = block_on(store.commit_sorted(batch(), days(Some(21))));
        assert!(
            broken.is_err(),
            "{backend:?}: a day written twice is refused"
        );
        let (from, to) = (first.to_naive_date(), Day(first.0 + 39).to_naive_date());
        assert!(
            block_on(store.day_states("a", from, to))
                .unwrap()
                .is_empty()
        );
        // Nothing of it was recorded: the same file from the same offset commits.
        block_on(store.commit_sorted(batch(), days(None))).unwrap();
        let states = block_on(store.day_states("a", from, to)).unwrap();
        assert_eq!(states.len(), 40, "{backend:?}");
        assert!(states.iter().all(|(_, state)| state.total() == 1));
    }
}

/// A commit into a table of stored days reads them a chunk at a time, the next chunk's while this
/// one is written (on PostgreSQL, on a connection of its own): every day of several chunks, stored
/// or new, is the sum of its commits.
#[test]
fn a_commit_of_many_chunks_merges_each_day_into_its_stored_one() {
    for backend in backends() {
        let db = TestDb::new(backend);
        let store = db.store();
        let day = Day::from_ymd(2024, 9, 1).unwrap();
        let name = |i: usize, suffix: &str| format!("c{i:05}{suffix}");
        let commit = |groups: Vec<GroupDelta>, from: u64, to: u64| {
            let groups = groups.into_iter().map(|group| Ok(group.with_values()));
            let batch = CommitBatch {
                progress: vec![progress("/logs/a", from, to)],
                ..CommitBatch::default()
            };
            block_on(store.commit_sorted(batch, groups)).unwrap();
        };
        // Stored: 3,000 customers, 1 request each.
        commit(
            (0..3_000)
                .map(|i| delta(&name(i, ""), day, &[(200, 1_000)]))
                .collect(),
            0,
            1,
        );
        // Then 2 more requests for every other stored customer and for 2,000 new ones, in key
        // order: four chunks, the first of stored days only, the others of both.
        let mut second: Vec<GroupDelta> = (0..3_000)
            .step_by(2)
            .map(|i| delta(&name(i, ""), day, &[(200, 2_000), (500, 3_000)]))
            .chain((1_000..3_000).map(|i| delta(&name(i, "n"), day, &[(200, 2_000), (500, 3_000)])))
            .collect();
        second.sort_by(|a, b| a.customer.cmp(&b.customer));
        commit(second, 1, 2);
        let date = day.to_naive_date();
        for i in 0..3_000 {
            let states = block_on(store.day_states(&name(i, ""), date, date)).unwrap();
            let expected = if i % 2 == 0 { 3 } else { 1 };
            assert_eq!(states[0].1.total(), expected, "{backend:?} {}", name(i, ""));
        }
        let stored: i64 = db.query_number(
            "SELECT CAST(sum(total_requests) AS BIGINT) FROM resource_statistics_by_day",
        );
        assert_eq!(stored, 3_000 + 2 * 1_500 + 2 * 2_000, "{backend:?}");
        let days: i64 = db.query_number("SELECT count(*) FROM resource_statistics_by_day");
        assert_eq!(days, 5_000, "{backend:?}");
    }
}
