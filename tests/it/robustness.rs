//! Ingestion as operators run it: killed mid-run, following growing and rotating files, and as a
//! cluster of processes.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use std::time::{Duration, Instant};

use crate::common::*;
use crate::oracle;

/// A pseudo-random delay in `min..max` milliseconds (deterministic per seed).
fn delay_ms(seed: u64, min: u64, max: u64) -> Duration {
    let mixed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    Duration::from_millis(min + mixed % (max - min))
}

#[test]
fn a_run_killed_at_random_moments_then_run_again_ends_as_one_clean_run() {
    for backend in backends() {
        let db = TestDb::new(backend);
        // Migrated: a run takes the write lock only to commit.
        block_on(db.store().close());
        let logs: Vec<_> = (0..2)
            .map(|i| generated_log(db.dir(), &format!("{i}.log"), 150_000, 20 + i))
            .collect();
        let mut kills = 0;
        for attempt in 0..rounds(6, 3) {
            // About 55 units of work, two per epoch, a commit as often as it can. Even attempts
            // are killed for certain in the middle, whatever the machine's speed: after 0, 1 or 2
            // commits another program takes the write lock, and the run is killed once it says it
            // waits for it (with epochs read and merged that it cannot commit). Odd attempts are
            // killed a little after their 1st, 2nd or 3rd commit, wherever they are then
            // (committing, reading, or already done).
            let commits = attempt % 3 + attempt % 2;
            let mut holder = (commits == 0).then(|| WriteLockHolder::take(&db));
            let (mut child, mut watch) = watched_batch(&db.url, &logs);
            if watch.until_commits(commits, PATIENCE) {
                if attempt % 2 == 0 {
                    holder = holder.or_else(|| Some(WriteLockHolder::take(&db)));
                    if watch.until_line(WAITING_FOR_THE_LOCK, PATIENCE) {
                        child.kill().unwrap();
                    }
                } else {
                    std::thread::sleep(delay_ms(attempt + 1, 0, 30));
                    child.kill().unwrap(); // SIGKILL, unless the run has just ended
                }
            }
            let status = child.wait().unwrap();
            if let Some(holder) = holder {
                holder.release();
            }
            if status.signal() == Some(9) {
                kills += 1;
            } else {
                assert!(
                    status.success(),
                    "{backend:?}, attempt {attempt}: {status:?}"
                );
            }
            if attempt == 0 {
                assert_eq!(
                    kills, 1,
                    "{backend:?}: the first run is killed before it commits"
                );
                assert!(
                    all_rows(&db.url).is_empty(),
                    "nothing uncommitted is stored"
                );
            }
        }
        let last = ingest_command(&db.url).args(&logs).output().unwrap();
        assert!(last.status.success(), "{last:?}");
        let text: String = logs
            .iter()
            .map(|l| std::fs::read_to_string(l).unwrap())
            .collect();
        oracle::assert_rows_match_text(&all_rows(&db.url), &text);
    }
}

/// A batch ingestion of `logs` in units of 300 KB (many epochs, a commit after each), watched.
fn watched_batch(url: &str, logs: &[std::path::PathBuf]) -> (std::process::Child, CommitWatch) {
    let mut child = watched_ingest(url)
        .env("LOGSTATS_UNIT_BYTES", "300000")
        .args(logs)
        .spawn()
        .unwrap();
    let watch = CommitWatch::new(&mut child);
    (child, watch)
}

/// `ingest --follow` of `path`, once it has committed twice (it is following).
fn follow(url: &str, path: &Path) -> (std::process::Child, CommitWatch) {
    following(url, path, &[])
}

#[test]
fn follow_mode_reads_appends_partial_lines_rotations_truncations_new_files_and_late_lines() {
    let db = TestDb::new(Backend::Sqlite);
    let source = std::fs::read_to_string(generated_log(db.dir(), "source.log", 6_000, 30)).unwrap();
    let lines: Vec<&str> = source.lines().collect();
    let chunk = |range: std::ops::Range<usize>| {
        lines[range]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    };
    let dir = db.dir().join("followed");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("app.log");
    append(&log, &chunk(0..1000));
    let (mut follower, mut watch) = follow(&db.url, &dir);
    let mut seen = chunk(0..1000);
    let patience = PATIENCE;
    eventually_matches(&db.url, &seen, patience).expect("the backlog is ingested");

    // Appended lines, the last one partial (cut inside its path, so it is no line yet): only
    // complete lines count until its newline comes.
    let appended = chunk(1000..2000);
    let (complete, partial) = appended.split_at(appended.len() - 20);
    append(&log, complete);
    seen.push_str(complete);
    eventually_matches(&db.url, &seen, patience).expect("appended lines are visible");
    // Every tick commits; the pipeline holds fewer than four ticks, so after four more commits one
    // tick has read the file since the partial line was written.
    watch.drain();
    assert!(
        watch.until_commits(watch.commits + 4, PATIENCE),
        "following goes on"
    );
    eventually_matches(&db.url, &seen, Duration::ZERO)
        .expect("a partial line waits for its newline");
    append(&log, partial);
    seen.push_str(partial);
    eventually_matches(&db.url, &seen, patience).expect("the completed line is visible");

    // A late line for a day long past merges into that day.
    let late = "2024-01-15 10:00:00 cust_1 /api/v1/resource1 200 0.250\n";
    append(&log, late);
    seen.push_str(late);
    eventually_matches(&db.url, &seen, patience).expect("a late line merges into its day");

    // Rotation: lines written to the old file just before the rename still count.
    append(&log, &chunk(2000..2500));
    std::fs::rename(&log, dir.join("app.log.1")).unwrap();
    append(&log, &chunk(2500..3000));
    seen.push_str(&chunk(2000..3000));
    // The renamed file is a new name in the followed directory: it must not be read twice.
    eventually_matches(&db.url, &seen, patience)
        .expect("a rotated file is drained, the new one read");

    // Truncation: the file is read again from its start.
    std::fs::write(&log, chunk(3000..3500)).unwrap();
    seen.push_str(&chunk(3000..3500));
    eventually_matches(&db.url, &seen, patience).expect("a truncated file is read from its start");

    // A new file in the followed directory.
    append(&dir.join("other.log"), &chunk(3500..4000));
    seen.push_str(&chunk(3500..4000));
    eventually_matches(&db.url, &seen, patience).expect("a new file is picked up");

    // SIGTERM: what was read is committed and the process exits cleanly.
    append(&log, &chunk(4000..4100));
    seen.push_str(&chunk(4000..4100));
    signal(follower.id(), "TERM");
    let status = follower.wait().unwrap();
    assert!(status.success(), "{status:?}");
    eventually_matches(&db.url, &seen, Duration::ZERO)
        .expect("everything read before SIGTERM is committed");
}

#[test]
fn two_processes_on_loopback_give_the_numbers_of_one_process_and_print_nothing_on_stdout() {
    let single = TestDb::new(Backend::Sqlite);
    let logs: Vec<_> = (0..3)
        .map(|i| generated_log(single.dir(), &format!("{i}.log"), 20_000, 40 + i))
        .collect();
    let log_refs: Vec<&Path> = logs.iter().map(|p| p.as_path()).collect();
    ingest_paths(&single.url, &log_refs, 1);

    let cluster = TestDb::new(Backend::Sqlite);
    let hostfile = two_process_hostfile(cluster.dir());
    let processes: Vec<_> = (0..2)
        .map(|id| {
            ingest_command(&cluster.url)
                .env("LOGSTATS_UNIT_BYTES", "200000")
                .args([
                    "--workers",
                    "2",
                    "--processes",
                    "2",
                    "--process-id",
                    &id.to_string(),
                    "--hostfile",
                ])
                .arg(&hostfile)
                .args(&logs)
                .spawn()
                .unwrap()
        })
        .collect();
    let summaries: Vec<String> = processes
        .into_iter()
        .map(|process| {
            let output = process.wait_with_output().unwrap();
            assert!(output.status.success(), "{output:?}");
            assert!(
                output.stdout.is_empty(),
                "stdout stays clean: {:?}",
                String::from_utf8_lossy(&output.stdout)
            );
            let stderr = String::from_utf8(output.stderr).unwrap();
            stderr.lines().last().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(all_rows(&cluster.url), all_rows(&single.url));
    assert!(
        summaries[0].starts_with(
            "ingested 60000 lines (0 rejected) from 3 input(s) by a cluster of 2 processes"
        ),
        "process 0 sums up the cluster: {summaries:?}"
    );
    assert_eq!(
        summaries[1],
        "process 1 of the cluster's 2 is done: process 0 prints the cluster's summary"
    );
}

#[test]
fn a_cluster_peer_that_never_starts_gives_a_clear_error_after_the_connect_timeout() {
    let db = TestDb::new(Backend::Sqlite);
    let log = generated_log(db.dir(), "a.log", 100, 50);
    let hostfile = db.dir().join("hosts");
    std::fs::write(
        &hostfile,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
    )
    .unwrap();
    let output = ingest_command(&db.url)
        .args([
            "--processes",
            "2",
            "--process-id",
            "1",
            "--connect-timeout",
            "2",
            "--hostfile",
        ])
        .arg(&hostfile)
        .arg(&log)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("the cluster did not form within 2 s: process 0 (127.0.0.1:"),
        "{stderr}"
    );
    assert!(
        output.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// Waits for `child` to exit, failing the test if it runs past [`PATIENCE`].
fn exits_in_time(mut child: std::process::Child) -> std::process::Output {
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("still running after {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_rejects_file_that_cannot_be_written_ends_the_run_at_once_with_one_error_line() {
    let db = TestDb::new(Backend::Sqlite);
    let log = db.dir().join("bad.log");
    std::fs::write(&log, "garbage\n").unwrap();
    let missing_dir = db.dir().join("nodir").join("rej.tsv");
    for (rejects, workers) in [
        (&missing_dir, "2"),
        (&db.dir().to_path_buf(), "2"),
        (&missing_dir, "1"),
    ] {
        let child = ingest_command(&db.url)
            .args(["--workers", workers, "--rejects"])
            .arg(rejects)
            .arg(&log)
            .spawn()
            .unwrap();
        let output = exits_in_time(child);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("error: cannot write the rejects file"),
            "{stderr}"
        );
    }
}

#[test]
fn sigint_during_a_batch_commits_what_was_read_says_so_and_exits_130() {
    let db = TestDb::new(Backend::Sqlite);
    let log = generated_log(db.dir(), "a.log", 300_000, 60);
    let (mut child, mut watch) = watched_batch(&db.url, std::slice::from_ref(&log));
    assert!(watch.until_commits(1, PATIENCE), "the run commits");
    signal(child.id(), "INT");
    let status = child.wait().unwrap();
    let mut rest = Vec::new();
    while let Ok(line) = watch.lines.recv_timeout(PATIENCE) {
        rest.push(line);
    }
    let summary = rest.last().expect("a summary line");
    assert_eq!(status.code(), Some(130), "{summary}");
    assert!(summary.contains("interrupted by SIGINT"), "{summary}");
    assert!(summary.contains("run the same command again"), "{summary}");
    let interrupted: u64 = all_rows(&db.url)
        .iter()
        .map(|r| r["total_requests"].as_u64().unwrap())
        .sum();
    assert!(interrupted > 0 && interrupted < 300_000, "{interrupted}");
    let again = ingest_command(&db.url).arg(&log).output().unwrap();
    assert!(again.status.success(), "{again:?}");
    oracle::assert_rows_match_text(&all_rows(&db.url), &std::fs::read_to_string(&log).unwrap());
}

#[test]
fn following_a_file_whose_last_line_a_batch_run_counted_takes_it_back_when_it_goes_on() {
    let db = TestDb::new(Backend::Sqlite);
    let log = db.dir().join("app.log");
    let first = "2024-09-15 20:51:37 cust_27 /api/v1/resource1 200 0.4";
    std::fs::write(
        &log,
        format!("2024-09-15 10:00:00 cust_27 /x 500 0.104\n{first}"),
    )
    .unwrap();
    let batch = ingest_command(&db.url).arg(&log).output().unwrap();
    assert!(batch.status.success(), "{batch:?}");
    let (mut follower, _watch) = follow(&db.url, &log);
    append(&log, "88\n2024-09-16 00:00:01 cust_27 /x 200 1.5\n");
    let text = std::fs::read_to_string(&log).unwrap();
    let settled = eventually_matches(&db.url, &text, PATIENCE);
    signal(follower.id(), "TERM");
    assert!(follower.wait().unwrap().success());
    settled.expect("the completed line replaces the part counted before");
    // Its resource too: the part is taken back from the day's breakdown.
    let rows = all_rows(&db.url);
    let day = rows.iter().find(|r| r["date"] == "2024-09-15").unwrap();
    let resource = &day["resources"]["/api/v1/resource1"];
    assert_eq!(resource["total_requests"], 1, "{day}");
    assert_eq!(resource["duration_max"], 0.488, "{day}");
    assert_eq!(day["resources"]["/x"]["total_requests"], 1, "{day}");
}

#[test]
fn a_numbered_rotation_while_following_reads_every_line_once_even_a_line_finished_after_it() {
    let db = TestDb::new(Backend::Sqlite);
    let dir = db.dir().join("logs");
    std::fs::create_dir(&dir).unwrap();
    let source = std::fs::read_to_string(generated_log(db.dir(), "source.log", 600, 100)).unwrap();
    let lines: Vec<&str> = source.lines().collect();
    let chunk = |range: std::ops::Range<usize>| -> String {
        lines[range].iter().map(|l| format!("{l}\n")).collect()
    };
    let (log, log1, log2) = (
        dir.join("app.log"),
        dir.join("app.log.1"),
        dir.join("app.log.2"),
    );
    append(&log1, &chunk(0..200));
    append(&log, &chunk(200..500));
    assert!(
        ingest_command(&db.url)
            .arg(&dir)
            .output()
            .unwrap()
            .status
            .success()
    );
    let (mut follower, _watch) = follow(&db.url, &dir);
    append(&log, &chunk(500..550));
    eventually_matches(&db.url, &text_of(&[&log1, &log]), PATIENCE).expect("appended lines");
    // A last line begun before the rotation, finished after it by a writer that kept the file.
    let last = chunk(550..551);
    let (begun, rest) = last.split_at(30);
    append(&log, begun);
    std::fs::rename(&log1, &log2).unwrap();
    std::fs::rename(&log, &log1).unwrap();
    append(&log, &chunk(551..571));
    append(&log1, rest);
    append(&log1, &chunk(571..578));
    let all = || text_of(&[&log2, &log1, &log]);
    let settled = eventually_matches(&db.url, &all(), PATIENCE);
    signal(follower.id(), "TERM");
    assert!(follower.wait().unwrap().success());
    settled.expect("every line once after the rotation");
    let again = ingest_command(&db.url).arg(&dir).output().unwrap();
    assert!(again.status.success(), "{again:?}");
    oracle::assert_rows_match_text(&all_rows(&db.url), &all());
}

#[test]
fn a_followed_file_rotated_out_of_the_inputs_keeps_its_progress_under_its_new_name() {
    let db = TestDb::new(Backend::Sqlite);
    let log = generated_log(db.dir(), "app.log", 300, 101);
    let log1 = db.dir().join("app.log.1");
    let (mut follower, _watch) = follow(&db.url, &log);
    let more = std::fs::read_to_string(generated_log(db.dir(), "more.log", 70, 102)).unwrap();
    let half = more[..more.len() / 2].rfind('\n').unwrap() + 1;
    append(&log, &more[..half]);
    eventually_matches(&db.url, &text_of(&[&log]), PATIENCE).expect("appended lines");
    std::fs::rename(&log, &log1).unwrap();
    append(&log, &more[half..]);
    let settled = eventually_matches(&db.url, &text_of(&[&log1, &log]), PATIENCE);
    signal(follower.id(), "TERM");
    assert!(follower.wait().unwrap().success());
    settled.expect("the rotated file drained, the new one read");
    let again = ingest_command(&db.url)
        .arg(&log)
        .arg(&log1)
        .output()
        .unwrap();
    assert!(again.status.success(), "{again:?}");
    oracle::assert_rows_match_text(&all_rows(&db.url), &text_of(&[&log1, &log]));
}
