//! Hostile and unusual input: values that overflow naive sums, ids and days that must be refused,
//! byte-order marks, lines too long to hold, names and bytes that must not reach a terminal raw.

use std::process::Command;

use logstats::pipeline::IngestConfig;

use crate::common::*;
use crate::oracle;

fn ingest_text(db: &TestDb, name: &str, text: &str) -> logstats::pipeline::IngestReport {
    let log = db.dir().join(name);
    std::fs::write(&log, text).unwrap();
    ingest_into(&db.url, IngestConfig::new(vec![log.display().to_string()])).unwrap()
}

#[test]
fn durations_whose_sums_pass_64_bits_stay_exact_through_storage() {
    for backend in backends() {
        let db = TestDb::new(backend);
        // An epoch time logged as the duration: 11,000 of them pass 2^64 microseconds.
        let line = |i: usize| {
            let status = if i.is_multiple_of(2) { 200 } else { 500 };
            format!("2024-09-15 10:00:00 cust_1 /x {status} 1727000000.123\n")
        };
        let half: String = (0..5_500).map(line).collect();
        let longest = "2024-09-16 10:00:00 cust_1 /x 200 999999999999.999999\n".repeat(10);
        // Two runs: the second merges into the stored sums.
        ingest_text(&db, "a.log", &half);
        ingest_text(&db, "b.log", &format!("{longest}{half}"));
        let rows = all_rows(&db.url);
        oracle::assert_rows_match_text(&rows, &format!("{half}{half}{longest}"));
        assert_eq!(rows[0]["uptime_percentage"], 50.0, "{backend:?}");
        assert_eq!(rows[1]["duration_mean"], 999999999999.999999, "{backend:?}");
    }
}

#[test]
fn lookalike_ids_and_days_outside_0001_to_9999_are_rejected_with_a_reason() {
    let db = TestDb::new(Backend::Sqlite);
    let good = "2024-09-15 10:00:00 cust_1 /x 200 0.5\n";
    let bad = [
        "2024-09-15 10:00:00 cust_\u{202e}1 /x 200 0.5\n",
        "2024-09-15 10:00:00 cust_1\u{200b} /x 200 0.5\n",
        "9999-12-31T23:00:00-02:00 cust_1 /x 200 0.5\n",
        "0000-06-01 10:00:00 cust_1 /x 200 0.5\n",
    ];
    let report = ingest_text(&db, "a.log", &format!("{good}{}", bad.concat()));
    assert_eq!((report.lines, report.rejected), (5, 4));
    let reasons: Vec<&str> = report
        .rejected_by_reason
        .iter()
        .map(|(code, _)| code.as_str())
        .collect();
    assert_eq!(reasons, ["timestamp", "customer_id"]);
    oracle::assert_rows_match_text(&all_rows(&db.url), good);
}

#[test]
fn a_byte_order_mark_is_skipped_and_a_line_too_long_is_rejected_without_being_held() {
    let db = TestDb::new(Backend::Sqlite);
    let good = "2024-09-15 10:00:00 cust_1 /x 200 0.5\n";
    let long = format!(
        "2024-09-15 10:00:00 cust_1 /x 200 0.5 {}\n",
        "x".repeat(1 << 20)
    );
    let report = ingest_text(&db, "a.log", &format!("\u{feff}{good}{long}{good}"));
    assert_eq!((report.lines, report.rejected), (3, 1));
    assert_eq!(
        report.rejected_by_reason,
        [("line_too_long".to_string(), 1)]
    );
    oracle::assert_rows_match_text(&all_rows(&db.url), &format!("{good}{good}"));
}

fn total_requests(url: &str) -> u64 {
    all_rows(url)
        .iter()
        .map(|row| row["total_requests"].as_u64().unwrap())
        .sum()
}

fn ingest_dir(db: &TestDb, dir: &std::path::Path) -> logstats::pipeline::IngestReport {
    ingest_into(&db.url, IngestConfig::new(vec![dir.display().to_string()])).unwrap()
}

#[test]
fn files_are_known_by_content_a_copy_counts_once_and_a_hard_link_is_read_once() {
    for backend in backends() {
        let db = TestDb::new(backend);
        let dir = db.dir().join("logs");
        std::fs::create_dir(&dir).unwrap();
        let line = |host: u32| format!("2024-09-15 10:00:0{host} cust_{host} /x 200 0.5\n");
        let other = "2024-09-15 11:00:00 cust_1 /x 500 0.7\n";
        for host in 1..=3 {
            std::fs::write(dir.join(format!("host{host}.log")), line(host)).unwrap();
        }
        assert_eq!(ingest_dir(&db, &dir).lines, 3, "{backend:?}");
        // A copy of an ingested file (logrotate's copytruncate) is that file: nothing new.
        std::fs::copy(dir.join("host1.log"), dir.join("host1.log.1")).unwrap();
        let report = ingest_dir(&db, &dir);
        assert_eq!(report.lines, 0, "{backend:?}: {:?}", report.notes);
        assert!(
            report.notes.iter().any(|n| n.contains("renamed or copied")),
            "{:?}",
            report.notes
        );
        // A file that begins as one ingested and goes on is read on from there.
        std::fs::write(dir.join("host5.log"), format!("{}{other}", line(2))).unwrap();
        std::fs::hard_link(dir.join("host5.log"), dir.join("host5-link.log")).unwrap();
        let report = ingest_dir(&db, &dir);
        assert_eq!(report.lines, 1, "{backend:?}: {:?}", report.notes);
        assert!(
            report.notes.iter().any(|n| n.contains("hard link")),
            "{:?}",
            report.notes
        );
        assert_eq!(total_requests(&db.url), 4, "{backend:?}");
        assert_eq!(
            ingest_dir(&db, &dir).lines,
            0,
            "{backend:?}: a rerun adds nothing"
        );
        // A hard link made after its file was ingested is the same file under a new name.
        std::fs::hard_link(dir.join("host1.log"), db.dir().join("late-link.log")).unwrap();
        let late = db.dir().join("late-link.log");
        let report =
            ingest_into(&db.url, IngestConfig::new(vec![late.display().to_string()])).unwrap();
        assert_eq!(report.lines, 0, "{backend:?}: {:?}", report.notes);
        assert_eq!(total_requests(&db.url), 4, "{backend:?}");
    }
}

#[test]
fn file_names_that_are_not_utf8_keep_their_own_progress() {
    use std::os::unix::ffi::OsStrExt;
    let db = TestDb::new(Backend::Sqlite);
    let dir = db.dir().join("logs");
    std::fs::create_dir(&dir).unwrap();
    let name =
        |byte: u8| std::ffi::OsStr::from_bytes(&[b'x', byte, b'.', b'l', b'o', b'g']).to_owned();
    std::fs::write(dir.join(name(0xff)), "2024-09-15 10:00:00 a /x 200 0.5\n").unwrap();
    std::fs::write(
        dir.join(name(0xfe)),
        "2024-09-15 10:00:00 b /x 200 0.5\nx\n",
    )
    .unwrap();
    let first = ingest_dir(&db, &dir);
    assert_eq!((first.lines, first.rejected), (3, 1));
    assert!(
        first.reject_samples[0].contains("x\\xfe.log"),
        "{:?}",
        first.reject_samples
    );
    let again = ingest_dir(&db, &dir);
    assert_eq!(again.lines, 0, "{:?}", again.notes);
    assert!(again.notes.is_empty(), "{:?}", again.notes);
    assert_eq!(total_requests(&db.url), 2);
}

#[test]
fn nothing_from_a_log_line_or_a_file_name_reaches_the_terminal_raw() {
    let db = TestDb::new(Backend::Sqlite);
    let dir = db.dir().join("logs");
    std::fs::create_dir(&dir).unwrap();
    let forged = dir.join("n\nerror: forged.log");
    std::fs::write(&forged, "\x1b]0;owned\x07\x1b[31m 2024 \0 red\n").unwrap();
    let rejects = db.dir().join("rejects.tsv");
    // Named, not found in the directory: a file found there with a NUL this early is left out as
    // not text (its name is shown escaped in that note too).
    let output = std::process::Command::new(binary())
        .args(["ingest", "--database", &db.url, "--rejects"])
        .arg(&rejects)
        .arg(&forged)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    let report = std::fs::read_to_string(&rejects).unwrap();
    for text in [&stderr, &report] {
        assert!(
            !text
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t'),
            "{text:?}"
        );
        assert!(text.contains("\\u{001b}]0;owned\\u{0007}"), "{text:?}");
    }
    assert!(stderr.contains("n\\nerror: forged.log"), "{stderr}");
    assert!(!stderr.lines().any(|l| l.starts_with("error:")), "{stderr}");
    assert_eq!(report.lines().count(), 1, "{report:?}");
}

#[test]
fn inputs_that_cannot_be_read_are_named_and_the_others_are_ingested_exactly() {
    use std::io::Write;
    for backend in backends() {
        let db = TestDb::new(backend);
        let dir = db.dir().join("logs");
        std::fs::create_dir(&dir).unwrap();
        let good = std::fs::read_to_string(generated_log(&dir, "good.log", 2_000, 70)).unwrap();
        let zipped = std::fs::read_to_string(generated_log(db.dir(), "z.log", 20_000, 71)).unwrap();
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(zipped.as_bytes()).unwrap();
        let gz = encoder.finish().unwrap();
        // logrotate is still writing it: half of it is there.
        let (written, rest) = gz.split_at(gz.len() / 2);
        std::fs::write(dir.join("rotated.log.gz"), written).unwrap();
        let fifo = dir.join("pipe.log");
        assert!(
            Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        std::os::unix::fs::symlink(dir.join("loop.log"), dir.join("loop.log")).unwrap();
        let run = || {
            Command::new(binary())
                .args(["ingest", "--database", &db.url])
                .arg(&dir)
                .output()
                .unwrap()
        };
        let first = run();
        let stderr = String::from_utf8_lossy(&first.stderr);
        assert_eq!(first.status.code(), Some(2), "{stderr}");
        for name in [
            "rotated.log.gz",
            "pipe.log: a named pipe",
            "loop.log: too many levels",
        ] {
            assert!(stderr.contains(name), "{name}: {stderr}");
        }
        assert!(
            stderr.contains("3 input(s) could not be read completely"),
            "{stderr}"
        );
        let kept = total_requests(&db.url) - 2_000;
        assert!(
            kept > 0 && kept < 20_000,
            "{backend:?}: {kept} lines before the break"
        );
        // Nothing changed: nothing is added twice.
        let second = run();
        assert_eq!(second.status.code(), Some(2));
        assert_eq!(total_requests(&db.url), 2_000 + kept, "{backend:?}");
        // The compressed file is finished: what was kept is not counted again.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("rotated.log.gz"))
            .unwrap()
            .write_all(rest)
            .unwrap();
        std::fs::remove_file(&fifo).unwrap();
        std::fs::remove_file(dir.join("loop.log")).unwrap();
        let last = run();
        assert!(last.status.success(), "{last:?}");
        oracle::assert_rows_match_text(&all_rows(&db.url), &format!("{good}{zipped}"));
    }
}

/// Runs a batch ingestion of `log` as it is now.
fn ingest_file(url: &str, log: &std::path::Path) -> logstats::pipeline::IngestReport {
    let mut config = IngestConfig::new(vec![log.display().to_string()]);
    config.unit_bytes = 300; // several pieces: the last line may fall in any of them
    ingest_into(url, config).unwrap()
}

#[test]
fn batch_runs_interleaved_with_a_writer_end_as_one_run_over_the_finished_file() {
    let good = |i: usize| {
        format!(
            "2024-09-1{} 10:00:00 cust_{} /x {} 0.{:03}\n",
            i % 3,
            i % 2,
            200 + 300 * (i % 2),
            100 + i
        )
    };
    let mut text: String = (0..40).map(good).collect();
    // The case: a duration cut after its first digit, and lines that are bad while cut.
    text.push_str("2024-09-15 20:51:37 cust_27 /api/v1/resource1 200 0.488\n");
    text.push_str("2024-09-15 20:51:40 cust_27 /api/v1/resource1 500 0.104\n");
    let cut_in_duration = text.len() - 5 - 57;
    for backend in backends() {
        for (round, finished) in [(0u64, text.clone()), (1, text.trim_end().to_string())] {
            let db = TestDb::new(backend);
            let log = db.dir().join("app.log");
            // Writes arrive in pieces; a batch run after each, however they fall.
            let mut cuts: Vec<usize> = (0..12)
                .map(|i| (i as u64 * 7_919 + round * 104_729) as usize % finished.len())
                .chain([cut_in_duration, cut_in_duration + 2, finished.len() - 1])
                .collect();
            cuts.sort_unstable();
            cuts.push(finished.len());
            std::fs::write(&log, "").unwrap();
            let mut written = 0;
            for cut in cuts {
                let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
                std::io::Write::write_all(&mut file, &finished.as_bytes()[written..cut]).unwrap();
                written = cut;
                ingest_file(&db.url, &log);
            }
            let context = format!("{backend:?}, ends with a newline: {}", round == 0);
            oracle::assert_rows_match_text(&all_rows(&db.url), &finished);
            let totals = block_on(db.store().totals()).unwrap();
            assert_eq!(totals.ingested_lines, 42, "{context}");
            assert_eq!(totals.rejected_lines, 0, "{context}");
            assert_eq!(
                ingest_file(&db.url, &log).lines,
                0,
                "{context}: nothing left"
            );
        }
    }
}

#[test]
fn the_database_and_the_rejects_file_are_never_read_or_overwritten_as_logs() {
    let dir = tempfile::tempdir().unwrap();
    let log = generated_log(dir.path(), "a.log", 1_000, 90);
    let other = generated_log(dir.path(), "b.log", 1_000, 91);
    let url = format!("sqlite://{}", dir.path().join("logstats.db").display());
    let run = |extra: &[&str]| {
        Command::new(binary())
            .args(["ingest", "--json", "--database", &url])
            .args(extra)
            .arg(dir.path())
            .output()
            .unwrap()
    };
    for _ in 0..2 {
        let output = run(&[]);
        assert!(output.status.success(), "{output:?}");
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(report["rejected"], 0, "{report}");
        assert!(report["notes"].to_string().contains("database"), "{report}");
    }
    let before = std::fs::read(&other).unwrap();
    let output = run(&["--rejects", other.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is one of the inputs"), "{stderr}");
    assert_eq!(
        std::fs::read(&other).unwrap(),
        before,
        "the input is untouched"
    );
    let database = dir.path().join("logstats.db");
    let stored = std::fs::read(&database).unwrap();
    let output = run(&["--rejects", database.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is the database"), "{stderr}");
    assert_eq!(
        std::fs::read(&database).unwrap(),
        stored,
        "the database is untouched"
    );
    let text = format!(
        "{}{}",
        std::fs::read_to_string(&log).unwrap(),
        String::from_utf8(before).unwrap()
    );
    oracle::assert_rows_match_text(&all_rows(&url), &text);
}

#[test]
fn a_file_ingested_under_two_names_is_counted_once_in_any_order_and_at_once() {
    for backend in backends() {
        let db = TestDb::new(backend);
        let a = generated_log(db.dir(), "a.log", 1_000, 95);
        let b = db.dir().join("b.log");
        std::fs::hard_link(&a, &b).unwrap();
        ingest_file(&db.url, &a);
        let more = std::fs::read_to_string(generated_log(db.dir(), "more.log", 10, 96)).unwrap();
        let mut file = std::fs::OpenOptions::new().append(true).open(&a).unwrap();
        std::io::Write::write_all(&mut file, more.as_bytes()).unwrap();
        assert_eq!(ingest_file(&db.url, &b).lines, 10, "{backend:?}");
        assert_eq!(
            ingest_file(&db.url, &a).lines,
            0,
            "{backend:?}: a.log moved with b.log"
        );
        oracle::assert_rows_match_text(&all_rows(&db.url), &std::fs::read_to_string(&a).unwrap());

        // Two processes at once, each under one name, on a fresh database: one of them commits,
        // the other is refused (and a rerun adds nothing).
        let fresh = TestDb::new(backend);
        let spawn = |path: &std::path::Path| {
            Command::new(binary())
                .args(["ingest", "--database", &fresh.url])
                .arg(path)
                .env("LOGSTATS_UNIT_BYTES", "2000")
                .env("LOGSTATS_COMMIT_INTERVAL", "0.001")
                .output()
        };
        let (first, second) = std::thread::scope(|s| {
            let first = s.spawn(|| spawn(&a).unwrap());
            let second = s.spawn(|| spawn(&b).unwrap());
            (first.join().unwrap(), second.join().unwrap())
        });
        assert!(first.status.success() || second.status.success());
        for path in [&a, &b] {
            let rerun = Command::new(binary())
                .args(["ingest", "--database", &fresh.url])
                .arg(path)
                .output()
                .unwrap();
            assert!(rerun.status.success(), "{rerun:?}");
        }
        let text = std::fs::read_to_string(&a).unwrap();
        oracle::assert_rows_match_text(&all_rows(&fresh.url), &text);
    }
}

#[test]
fn a_file_rewritten_in_place_behind_an_unchanged_beginning_is_a_new_file() {
    let db = TestDb::new(Backend::Sqlite);
    let log = generated_log(db.dir(), "a.log", 1_000, 97);
    let old = std::fs::read_to_string(&log).unwrap();
    ingest_file(&db.url, &log);
    // The first 100 lines (over 4 KiB) again, then other lines: not an append.
    let head: String = old.lines().take(100).map(|l| format!("{l}\n")).collect();
    let new = std::fs::read_to_string(generated_log(db.dir(), "b.log", 1_000, 98)).unwrap();
    std::fs::write(&log, format!("{head}{new}")).unwrap();
    let report = ingest_file(&db.url, &log);
    assert_eq!(
        (report.lines, report.rejected),
        (1_100, 0),
        "{:?}",
        report.notes
    );
    assert!(
        report.notes[0].contains("rewritten in place"),
        "{:?}",
        report.notes
    );
    oracle::assert_rows_match_text(&all_rows(&db.url), &format!("{old}{head}{new}"));
}
