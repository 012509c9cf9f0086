//! Workers own their customers: however many workers and processes share a run, whatever the
//! memory limit (spilling or not), the unit size (few or many epochs) and the commit interval (one
//! commit or many), the database is the same, and equals the oracle over the lines.

use std::path::{Path, PathBuf};
use std::process::Child;

use crate::common::*;

/// One way of running an ingestion.
#[derive(Debug, Clone, Copy)]
struct Shape {
    processes: usize,
    workers: usize,
    memory_limit: &'static str,
    unit_bytes: u64,
    commit_interval: &'static str,
}

/// A deterministic pseudo-random number below `n`.
fn below(state: &mut u64, n: u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*state >> 33) % n
}

impl Shape {
    fn random(state: &mut u64) -> Shape {
        Shape {
            processes: 1 + below(state, 2) as usize,
            workers: 1 + below(state, 4) as usize,
            memory_limit: ["1MB", "4MB", "256MB"][below(state, 3) as usize],
            unit_bytes: [20_000, 100_000, 4_000_000][below(state, 3) as usize],
            commit_interval: ["0.001", "60"][below(state, 2) as usize],
        }
    }

    /// Runs the ingestion of `logs` into `url` in this shape; every process must succeed.
    fn ingest(&self, url: &str, dir: &Path, logs: &[PathBuf]) {
        let hostfile = (self.processes > 1).then(|| two_process_hostfile(dir));
        let spill = dir.join("spill");
        let children: Vec<Child> = (0..self.processes)
            .map(|id| {
                let mut command = ingest_command(url);
                command
                    .env("LOGSTATS_UNIT_BYTES", self.unit_bytes.to_string())
                    .args(["--workers", &self.workers.to_string()])
                    .args(["--memory-limit", self.memory_limit])
                    .args(["--commit-interval", self.commit_interval])
                    .arg("--spill-dir")
                    .arg(&spill);
                if let Some(hostfile) = &hostfile {
                    command
                        .args(["--processes", "2", "--process-id", &id.to_string()])
                        .arg("--hostfile")
                        .arg(hostfile);
                }
                command.args(logs).spawn().unwrap()
            })
            .collect();
        for child in children {
            let output = child.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "{self:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

#[test]
fn any_number_of_workers_and_processes_and_any_memory_limit_give_the_same_database() {
    let dir = tempfile::tempdir().unwrap();
    // Many customers over few days: groups hold a few requests each, as at a large customer base.
    let text: String = (0..3)
        .map(|i| {
            let log = generated_log_of(dir.path(), &format!("g{i}.log"), 15_000, 90 + i, 3_000);
            std::fs::read_to_string(log).unwrap()
        })
        .collect();
    let shuffled = shuffled_lines(&text, 7);
    let logs: Vec<PathBuf> = shuffled
        .chunks(shuffled.len() / 3 + 1)
        .enumerate()
        .map(|(i, lines)| {
            let path = dir.path().join(format!("part{i}.log"));
            write_lines(&path, lines);
            path
        })
        .collect();

    let reference = TestDb::new(Backend::Sqlite);
    let mut single = Shape::random(&mut 1);
    (single.processes, single.workers) = (1, 1);
    single.ingest(&reference.url, reference.dir(), &logs);
    assert_store_matches_text(&reference.url, &text);
    let want = all_rows(&reference.url);

    let mut state = 0x5eed;
    for round in 0..rounds(12, 4) {
        let shape = Shape::random(&mut state);
        let db = TestDb::new(Backend::Sqlite);
        shape.ingest(&db.url, db.dir(), &logs);
        assert_rows_equal(
            &all_rows(&db.url),
            &want,
            &format!("round {round}: {shape:?}"),
        );
        // Run again: nothing is counted twice.
        shape.ingest(&db.url, db.dir(), &logs);
        assert_rows_equal(
            &all_rows(&db.url),
            &want,
            &format!("round {round} run again: {shape:?}"),
        );
    }
}
