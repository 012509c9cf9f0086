//! A cluster that loses a peer in the middle of a run: killed (SIGKILL) or stopped (SIGSTOP), the
//! others end soon after, each with exit status 4 and one `error:` line naming the lost process,
//! never a panic; what process 0 committed is whole, so a rerun ends as one clean run.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::common::*;

const PROCESSES: usize = 3;
/// The process the tests kill or stop.
const LOST: usize = 2;
/// How long the others may take to end: a guard against hangs, not a measure of speed.
const BOUND: Duration = Duration::from_secs(15);

/// A process of the cluster under test, with every line of its stderr.
struct Member {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Member {
    /// Waits until a line containing `text` came; false when stderr ended first.
    fn until_line(&mut self, text: &str) -> bool {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(text);
                    self.seen.push(line);
                    if found {
                        return true;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return false,
                Err(RecvTimeoutError::Timeout) => panic!("no {text:?} within {PATIENCE:?}"),
            }
        }
    }

    /// Waits for the process to exit, at most `bound` after `since` (then it is killed and the
    /// test fails), and returns its status, all of its stderr, and when it was seen ended.
    fn ends_within(self, bound: Duration, since: Instant, name: &str) -> Ended {
        all_end_within(vec![self], bound, since, name).remove(0)
    }
}

/// [`Member::ends_within`] for all of `members` at once (each one's time is its own).
fn all_end_within(
    mut members: Vec<Member>,
    bound: Duration,
    since: Instant,
    name: &str,
) -> Vec<Ended> {
    let mut after = vec![None; members.len()];
    while after.iter().any(Option::is_none) {
        for (member, after) in members.iter_mut().zip(&mut after) {
            if after.is_none() && member.child.try_wait().unwrap().is_some() {
                *after = Some(since.elapsed());
            }
        }
        if since.elapsed() > bound && after.iter().any(Option::is_none) {
            members.iter_mut().for_each(|m| drop(m.child.kill()));
            panic!("{name}: still running {bound:?} later ({after:?})");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    members
        .into_iter()
        .zip(after)
        .map(|(mut member, after)| {
            let status = member.child.wait().unwrap();
            member.seen.extend(member.lines.iter());
            Ended {
                status,
                stderr: member.seen,
                after: after.expect("every member ended"),
            }
        })
        .collect()
}

struct Ended {
    status: ExitStatus,
    stderr: Vec<String>,
    after: Duration,
}

impl Ended {
    /// Exit status 4, one `error:` line that names `peer` at `address`, and no panic.
    fn assert_lost(&self, peer: usize, address: &str, name: &str) {
        let stderr = self.stderr.join("\n");
        assert_eq!(self.status.code(), Some(4), "{name}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("poisoned"),
            "{name}: {stderr}"
        );
        let errors: Vec<&String> = self
            .stderr
            .iter()
            .filter(|line| line.starts_with("error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{name}: {stderr}");
        assert!(
            errors[0].contains(&format!("lost process {peer} ({address}) of the cluster")),
            "{name}: {}",
            errors[0]
        );
    }
}

/// A hostfile of `processes` free ports on loopback, in `dir`, and its addresses.
fn hostfile(dir: &Path, processes: usize) -> (PathBuf, Vec<String>) {
    let addresses: Vec<String> = (0..processes)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let path = dir.join("hosts");
    std::fs::write(&path, addresses.join("\n")).unwrap();
    (path, addresses)
}

/// The processes of a cluster ingesting `log` into `url`, committing after every epoch (each
/// commit logged), in units of 200 KB.
fn start_cluster(url: &str, hostfile: &Path, log: &Path, connect_timeout: u64) -> Vec<Member> {
    (0..PROCESSES)
        .map(|id| {
            let mut child = watched_ingest(url)
                .env("LOGSTATS_UNIT_BYTES", "200000")
                .args(["--workers", "2", "--processes", &PROCESSES.to_string()])
                .args(["--process-id", &id.to_string()])
                .args(["--connect-timeout", &connect_timeout.to_string()])
                .arg("--hostfile")
                .arg(hostfile)
                .arg(log)
                .spawn()
                .unwrap();
            let lines = stderr_lines(&mut child);
            Member {
                child,
                lines,
                seen: Vec::new(),
            }
        })
        .collect()
}

/// The rows of one clean single-process run over `log`.
fn clean_rows(log: &Path) -> Vec<serde_json::Value> {
    let clean = TestDb::new(Backend::Sqlite);
    ingest_paths(&clean.url, &[log], 1);
    all_rows(&clean.url)
}

/// Starts the cluster, and once process 0 has committed (the run is under way: about 14 more
/// epochs to go) does `lose` to process 2; returns the others' ends and process 2's child.
fn lose_a_peer_mid_run(
    db: &TestDb,
    log: &Path,
    connect_timeout: u64,
    lose: impl FnOnce(&mut Child),
) -> (Vec<Ended>, Member, Vec<String>) {
    let (hostfile, addresses) = hostfile(db.dir(), PROCESSES);
    let mut members = start_cluster(&db.url, &hostfile, log, connect_timeout);
    assert!(members[0].until_line("committed"), "process 0 commits");
    lose(&mut members[LOST].child);
    let lost_at = Instant::now();
    let lost = members.pop().unwrap();
    let ended = all_end_within(members, BOUND, lost_at, "the others");
    for (id, end) in ended.iter().enumerate() {
        eprintln!(
            "process {id} ended {:.2} s after process {LOST} was lost",
            end.after.as_secs_f64()
        );
        end.assert_lost(LOST, &addresses[LOST], &format!("process {id}"));
    }
    (ended, lost, addresses)
}

#[test]
fn a_cluster_peer_killed_mid_run_ends_the_others_with_one_error_naming_it_and_a_rerun_completes() {
    let dir = tempfile::tempdir().unwrap();
    let log = generated_log(dir.path(), "a.log", 300_000, 70);
    let clean = clean_rows(&log);
    for backend in backends() {
        let db = TestDb::new(backend);
        block_on(db.store().close());
        let (_, killed, _) = lose_a_peer_mid_run(&db, &log, 30, |child| child.kill().unwrap());
        let killed = killed.ends_within(BOUND, Instant::now(), "the killed process");
        assert_eq!(killed.status.signal(), Some(9));

        // What process 0 committed holds whole epochs: the cluster run again ends as one run.
        let (hostfile, _) = hostfile(db.dir(), PROCESSES);
        let rerun = start_cluster(&db.url, &hostfile, &log, 30);
        for end in all_end_within(rerun, PATIENCE, Instant::now(), "the rerun") {
            assert!(end.status.success(), "{backend:?}: {:?}", end.stderr);
        }
        assert_rows_equal(&all_rows(&db.url), &clean, &format!("{backend:?}"));
    }
}

#[test]
fn a_stopped_cluster_peer_ends_the_others_after_the_connect_timeout_and_itself_once_resumed() {
    let db = TestDb::new(Backend::Sqlite);
    block_on(db.store().close());
    let log = generated_log(db.dir(), "a.log", 300_000, 71);
    let (ended, stopped, addresses) =
        lose_a_peer_mid_run(&db, &log, 5, |child| signal(child.id(), "STOP"));
    for end in &ended {
        assert!(
            end.stderr
                .iter()
                .any(|line| line.contains("sent nothing for 5 s") || line.contains("lost it")),
            "{:?}",
            end.stderr
        );
    }
    // Resumed, the stopped process finds the others gone and ends too, as cleanly.
    signal(stopped.child.id(), "CONT");
    let resumed = stopped.ends_within(BOUND, Instant::now(), "the resumed process");
    let stderr = resumed.stderr.join("\n");
    assert_eq!(resumed.status.code(), Some(4), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        addresses[..LOST]
            .iter()
            .enumerate()
            .any(|(peer, address)| stderr.contains(&format!("lost process {peer} ({address})"))),
        "{stderr}"
    );

    let rerun = ingest_command(&db.url).arg(&log).output().unwrap();
    assert!(rerun.status.success(), "{rerun:?}");
    assert_rows_equal(&all_rows(&db.url), &clean_rows(&log), "after the rerun");
}
