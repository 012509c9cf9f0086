//! Ingestion past its memory limit: groups spill to disk, and no number changes for it, whatever
//! the limit, the order of the lines, how they are split over runs, or a kill in the middle.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use logstats::pipeline::{IngestConfig, IngestReport};

use crate::common::*;
use crate::oracle;

const MIB: u64 = 1 << 20;

/// Ingests `paths` in process with `memory_limit`, spilling under `spill_dir`.
fn ingest_within(url: &str, paths: &[&Path], memory_limit: u64, spill_dir: &Path) -> IngestReport {
    let mut config = IngestConfig::new(paths.iter().map(|p| p.display().to_string()).collect());
    config.workers = 2;
    config.memory_limit = memory_limit;
    config.spill_dir = spill_dir.to_path_buf();
    ingest_into(url, config).expect("ingestion succeeds")
}

/// `lines` cut in three files in `dir`, in order.
fn split_in_three(dir: &Path, lines: &[&str]) -> Vec<PathBuf> {
    let third = lines.len() / 3;
    (0..3)
        .map(|i| {
            let path = dir.join(format!("part{i}.log"));
            let end = if i == 2 { lines.len() } else { (i + 1) * third };
            write_lines(&path, &lines[i * third..end]);
            path
        })
        .collect()
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut entries| entries.next().is_none())
}

#[test]
fn numbers_do_not_depend_on_the_memory_limit_the_order_or_the_runs() {
    for backend in backends() {
        let mut reference = None;
        let scratch = tempfile::tempdir().unwrap();
        let log = generated_log_of(scratch.path(), "many.log", 60_000, 5, 3_000);
        let text = std::fs::read_to_string(&log).unwrap();
        for (limit, seed) in [(MIB, 1), (3 * MIB, 2), (256 * MIB, 3)] {
            let db = TestDb::new(backend);
            let spill = db.dir().join("spill");
            // The lines shuffled and cut in three: one file, then two more in a second run.
            let parts = split_in_three(db.dir(), &shuffled_lines(&text, seed));
            let first = ingest_within(&db.url, &[&parts[0]], limit, &spill);
            let rest = ingest_within(&db.url, &[&parts[1], &parts[2]], limit, &spill);
            let again = ingest_within(&db.url, &[&parts[0], &parts[1], &parts[2]], limit, &spill);
            assert_eq!(again.lines, 0, "{backend:?}: nothing is read twice");
            if limit < 4 * MIB {
                assert!(
                    first.spilled_bytes > 0 && rest.spilled_bytes > 0,
                    "{backend:?}, {limit} bytes: groups spilled"
                );
            } else {
                assert_eq!(rest.spilled_bytes, 0, "{backend:?}: everything fit");
            }
            assert!(is_empty_dir(&spill), "{backend:?}: spill files are removed");
            let rows = all_rows(&db.url);
            oracle::assert_rows_match_text(&rows, &text);
            match &reference {
                None => reference = Some(rows),
                Some(want) => {
                    assert_rows_equal(&rows, want, &format!("{backend:?}, limit {limit}"))
                }
            }
        }
    }
}

#[test]
fn a_spilling_run_killed_at_random_moments_then_run_again_ends_as_one_clean_run() {
    for backend in backends() {
        let db = TestDb::new(backend);
        let log = generated_log_of(db.dir(), "many.log", 120_000, 9, 20_000);
        let spill = db.dir().join("spill");
        let ingest = |watched: bool| {
            let mut command = Command::new(binary());
            command
                .args(["ingest", "--database", &db.url, "--memory-limit", "1MB"])
                .arg("--spill-dir")
                .arg(&spill)
                .arg(&log)
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            if watched {
                // A commit after every epoch, each epoch spilling several times.
                command
                    .env("LOGSTATS_LOG", "logstats=debug")
                    .env("LOGSTATS_COMMIT_INTERVAL", "0.001");
            }
            command
        };
        let mut kills = 0;
        for attempt in 0..rounds(4, 2) {
            // The second run is killed mid-way for certain: it reads and spills but cannot commit
            // while another program holds the write lock. The others are killed right after their
            // first, second or third commit, while later epochs spill (or once they are done).
            let holder = (attempt == 1).then(|| {
                db.store();
                WriteLockHolder::take(&db)
            });
            let mut child = ingest(true).spawn().unwrap();
            let mut watch = CommitWatch::new(&mut child);
            match holder {
                Some(_) => assert!(
                    watch.until_line(WAITING_FOR_THE_LOCK, PATIENCE),
                    "{backend:?}: the run waits for the lock"
                ),
                None => {
                    watch.until_commits(1 + attempt % 3, PATIENCE);
                }
            }
            child.kill().unwrap();
            let status = child.wait().unwrap();
            if let Some(holder) = holder {
                holder.release();
            }
            kills += u64::from(status.signal() == Some(9));
        }
        assert!(kills > 0, "{backend:?}: the second run was killed mid-way");
        let last = ingest(false).output().unwrap();
        assert!(last.status.success(), "{backend:?}: {last:?}");
        assert!(
            is_empty_dir(&spill),
            "{backend:?}: the last run removed what killed runs left"
        );
        let text = std::fs::read_to_string(&log).unwrap();
        oracle::assert_rows_match_text(&all_rows(&db.url), &text);
    }
}

#[test]
fn a_spill_directory_that_cannot_be_written_stops_the_run_with_nothing_committed() {
    let db = TestDb::new(Backend::Sqlite);
    let log = generated_log_of(db.dir(), "many.log", 20_000, 3, 5_000);
    let not_a_dir = db.dir().join("a-file");
    std::fs::write(&not_a_dir, "").unwrap();
    let output = Command::new(binary())
        .args(["ingest", "--database", &db.url, "--memory-limit", "1MB"])
        .arg("--spill-dir")
        .arg(not_a_dir.join("spill"))
        .arg(&log)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("spill directory"), "{stderr}");
    assert!(all_rows(&db.url).is_empty(), "nothing was committed");
    let rerun = Command::new(binary())
        .args(["ingest", "--database", &db.url, "--memory-limit", "1MB"])
        .arg("--spill-dir")
        .arg(db.dir().join("spill"))
        .arg(&log)
        .output()
        .unwrap();
    assert!(rerun.status.success(), "{rerun:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    oracle::assert_rows_match_text(&all_rows(&db.url), &text);
}

/// The peak resident memory of a running process, from its `VmHWM`.
fn peak_rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// A customer base of 100,000 within 32 MB: each run spills, one is killed after a commit (its
/// peak memory read just before), and the database ends equal to the oracle, every run within
/// 96 MB of resident memory.
#[test]
fn a_hundred_thousand_customers_within_32mb_over_runs_and_a_kill_stay_exact() {
    const MOST_RSS: u64 = 96 * MIB;
    for backend in backends() {
        let db = TestDb::new(backend);
        let log = generated_log_of(db.dir(), "all.log", 2_000_000, 11, 100_000);
        let text = std::fs::read_to_string(&log).unwrap();
        let parts = split_in_three(db.dir(), &text.lines().collect::<Vec<_>>());
        let spill = db.dir().join("spill");
        let ingest = |parts: &[PathBuf]| {
            let mut command = Command::new(binary());
            command
                .args([
                    "ingest",
                    "--json",
                    "--database",
                    &db.url,
                    "--memory-limit",
                    "32MB",
                ])
                .arg("--spill-dir")
                .arg(&spill)
                .args(parts)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            command
        };
        let complete = |parts: &[PathBuf]| {
            let output = ingest(parts).output().unwrap();
            assert!(output.status.success(), "{backend:?}: {output:?}");
            let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
            let rss = report["peak_rss_bytes"].as_u64().unwrap();
            assert!(
                rss > 0 && rss <= MOST_RSS,
                "{backend:?}: peak RSS {rss} bytes"
            );
            assert!(
                report["spilled_bytes"].as_u64().unwrap() > 0,
                "{backend:?}: spilled"
            );
        };
        complete(&parts[..1]);
        // The second part, killed after its first commit (an epoch at a time).
        let mut child = ingest(&parts[..2])
            .env("LOGSTATS_LOG", "logstats=debug")
            .env("LOGSTATS_COMMIT_INTERVAL", "0.001")
            .spawn()
            .unwrap();
        let mut watch = CommitWatch::new(&mut child);
        let committed = watch.until_commits(1, PATIENCE);
        let rss = peak_rss_of(child.id());
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(
            committed,
            "{backend:?}: the second run committed before its kill"
        );
        assert_eq!(status.signal(), Some(9), "{backend:?}: killed mid-way");
        assert!(
            rss <= MOST_RSS,
            "{backend:?}: peak RSS {rss} bytes before the kill"
        );
        complete(&parts);
        assert!(is_empty_dir(&spill), "{backend:?}: spill files are removed");
        assert_store_matches_text(&db.url, &text);
    }
}

/// Customers count in the limit (their names were once kept for the whole run, past it: a
/// million customers in 3,000,000 lines took 280 MB at `--memory-limit 32MB`). 300,000 lines of
/// customers seen once or twice, within 16MB: the run's peak resident memory stays within the
/// limit above that of a run of 5,000 customers (the process, its threads and libraries, a
/// commit's buffers and page cache), and the stored days equal the oracle: every one on SQLite;
/// on PostgreSQL, which answers a query per customer slowly, their count and requests, and every
/// day of one customer in fifty.
#[test]
fn many_customers_stay_within_the_memory_limit_names_included() {
    const LIMIT: u64 = 16 * MIB;
    let scratch = tempfile::tempdir().unwrap();
    let few = generated_log_of(scratch.path(), "few.log", 100_000, 12, 5_000);
    let many = generated_log_of(scratch.path(), "many.log", 300_000, 12, 300_000);
    let groups = oracle::groups(&std::fs::read_to_string(&many).unwrap());
    let spill = scratch.path().join("spill");
    for backend in backends() {
        // The peak resident memory of an ingestion of `log` into `db`, and what it spilled.
        let ingest = |db: &TestDb, log: &Path| {
            let output = Command::new(binary())
                .args(["ingest", "--json", "--database", &db.url, "--memory-limit"])
                .arg(LIMIT.to_string())
                .arg("--spill-dir")
                .arg(&spill)
                .arg(log)
                .output()
                .unwrap();
            assert!(output.status.success(), "{backend:?}: {output:?}");
            let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
            let field = |name: &str| report[name].as_u64().unwrap();
            (field("peak_rss_bytes"), field("spilled_bytes"))
        };
        let (base, _) = ingest(&TestDb::new(backend), &few);
        let db = TestDb::new(backend);
        let (peak, spilled) = ingest(&db, &many);
        assert!(base > 0 && spilled > 0, "{backend:?}: the groups spilled");
        assert!(
            peak <= base + LIMIT,
            "{backend:?}: peak RSS {} MiB, past the limit above the {} MiB of 5,000 customers",
            peak / MIB,
            base / MIB
        );
        match backend {
            Backend::Sqlite => {
                let mut rows = 0;
                for_each_row(&db.url, |row| {
                    oracle::assert_row_is_its_group(&row, &groups);
                    rows += 1;
                });
                assert_eq!(rows, groups.len(), "one row per (customer, day)");
            }
            Backend::Postgres => {
                let store = db.store();
                block_on(async {
                    let totals = store.totals().await.unwrap();
                    let requests: usize = groups.values().map(Vec::len).sum();
                    assert_eq!(
                        (totals.days, totals.requests),
                        (groups.len() as u64, requests as u64),
                        "every day and request stored"
                    );
                    let customers = store.customers("", None, usize::MAX).await.unwrap();
                    for customer in customers.iter().step_by(50) {
                        let (first, last) = (customer.first_day, customer.last_day);
                        let days = store.days(&customer.customer_id, first, last).await;
                        for day in days.unwrap() {
                            let row = serde_json::to_value(day).unwrap();
                            oracle::assert_row_is_its_group(&row, &groups);
                        }
                    }
                    store.close().await;
                })
            }
        }
    }
}
