//! Ingestion end to end, in process, against both backends and the oracle.

use std::io::Write;

use logstats::pipeline::IngestConfig;

use crate::common::*;
use crate::oracle;

#[test]
fn stored_days_equal_the_naive_oracle_on_both_backends() {
    for backend in backends() {
        let db = TestDb::new(backend);
        let log = generated_log(db.dir(), "a.log", 30_000, 1);
        let report = ingest_paths(&db.url, &[&log], 2);
        assert_eq!(report.lines, 30_000);
        assert_eq!(report.rejected, 0);
        oracle::assert_rows_match_text(&all_rows(&db.url), &std::fs::read_to_string(&log).unwrap());
    }
}

#[test]
fn one_worker_and_several_workers_and_many_epochs_give_identical_rows() {
    let db_one = TestDb::new(Backend::Sqlite);
    let log = generated_log(db_one.dir(), "a.log", 40_000, 2);
    ingest_paths(&db_one.url, &[&log], 1);
    let expected = all_rows(&db_one.url);
    for workers in [2, 3] {
        let db = TestDb::new(Backend::Sqlite);
        let mut config = IngestConfig::new(vec![log.display().to_string()]);
        config.workers = workers;
        config.unit_bytes = 50_000; // dozens of units and epochs (the file is 2.6 MB)
        config.commit_interval = std::time::Duration::ZERO; // a commit whenever epochs finish
        let report = ingest_into(&db.url, config).unwrap();
        assert_eq!(report.lines, 40_000, "{workers} workers");
        assert_rows_equal(&all_rows(&db.url), &expected, &format!("{workers} workers"));
    }
}

#[test]
fn shuffled_split_and_repeated_input_changes_no_number() {
    for backend in backends() {
        let db = TestDb::new(backend);
        let log = generated_log(db.dir(), "whole.log", 20_000, 3);
        ingest_paths(&db.url, &[&log], 2);
        let expected = all_rows(&db.url);

        let shuffled_db = TestDb::new(backend);
        let text = std::fs::read_to_string(&log).unwrap();
        let lines = shuffled_lines(&text, 99);
        let parts: Vec<std::path::PathBuf> = lines
            .chunks(lines.len() / 3 + 1)
            .enumerate()
            .map(|(i, chunk)| {
                let path = shuffled_db.dir().join(format!("part{i}.log"));
                write_lines(&path, chunk);
                path
            })
            .collect();
        let part_refs: Vec<&std::path::Path> = parts.iter().map(|p| p.as_path()).collect();
        ingest_paths(&shuffled_db.url, &part_refs, 3);
        assert_rows_equal(
            &all_rows(&shuffled_db.url),
            &expected,
            &format!("shuffled and split ({backend:?})"),
        );

        let again = ingest_paths(&shuffled_db.url, &part_refs, 2);
        assert_eq!(
            again.lines, 0,
            "the same bytes are offered again: nothing is read"
        );
        assert_rows_equal(
            &all_rows(&shuffled_db.url),
            &expected,
            &format!("re-ingested ({backend:?})"),
        );
    }
}

#[test]
fn lines_appended_since_the_last_run_are_added_and_nothing_twice() {
    for backend in backends() {
        let db = TestDb::new(backend);
        let text =
            std::fs::read_to_string(generated_log(db.dir(), "source.log", 10_000, 4)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let log = db.dir().join("growing.log");
        write_lines(&log, &lines[..6_000]);
        assert_eq!(ingest_paths(&db.url, &[&log], 2).lines, 6_000);
        let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        for line in &lines[6_000..] {
            writeln!(file, "{line}").unwrap();
        }
        drop(file);
        assert_eq!(ingest_paths(&db.url, &[&log], 2).lines, 4_000);
        assert_eq!(ingest_paths(&db.url, &[&log], 2).lines, 0);
        oracle::assert_rows_match_text(&all_rows(&db.url), &text);
    }
}

#[test]
fn a_replaced_file_is_reported_and_read_as_a_new_file() {
    let db = TestDb::new(Backend::Sqlite);
    let first = std::fs::read_to_string(generated_log(db.dir(), "first.log", 3_000, 5)).unwrap();
    let second = std::fs::read_to_string(generated_log(db.dir(), "second.log", 2_000, 6)).unwrap();
    let log = db.dir().join("app.log");
    std::fs::write(&log, &first).unwrap();
    ingest_paths(&db.url, &[&log], 1);
    std::fs::write(&log, &second).unwrap();
    let report = ingest_paths(&db.url, &[&log], 1);
    assert_eq!(report.lines, 2_000);
    assert!(
        report.notes.iter().any(|n| n.contains("new file")),
        "{:?}",
        report.notes
    );
    oracle::assert_rows_match_text(&all_rows(&db.url), &format!("{first}{second}"));
}

#[test]
fn malformed_lines_are_counted_sampled_and_change_no_result() {
    let db = TestDb::new(Backend::Sqlite);
    let good = std::fs::read_to_string(generated_log(db.dir(), "good.log", 5_000, 7)).unwrap();
    let mut mixed = String::new();
    let garbage = [
        "garbage",
        "2024-13-01 00:00:00 cust_1 /x 200 0.1",
        "2024-09-30 00:00:00 cust_1 /x 200 -1",
        "2024-09-30 00:00:00 cust_1 x 200 0.1",
        "2024-09-30 00:00:00 cust_1 /x 700 0.1",
        "\u{0}\u{1}\u{2}",
    ];
    for (i, line) in good.lines().enumerate() {
        mixed.push_str(line);
        mixed.push('\n');
        if i % 1000 == 0 {
            mixed.push_str(garbage[i / 1000 % garbage.len()]);
            mixed.push_str("\n\n");
        }
    }
    mixed.push_str("2024-09-30 00:00:00 cust_1 /x 200 0.1234567"); // no newline at the end
    let log = db.dir().join("mixed.log");
    std::fs::write(&log, &mixed).unwrap();
    let rejects_file = db.dir().join("rejects.tsv");
    let mut config = IngestConfig::new(vec![log.display().to_string()]);
    config.rejects_file = Some(rejects_file.clone());
    config.unit_bytes = 40_000;
    let report = ingest_into(&db.url, config).unwrap();
    assert_eq!(report.rejected, 6);
    assert_eq!(report.lines, 5_006);
    assert!(!report.reject_samples.is_empty());
    let rejects = std::fs::read_to_string(&rejects_file).unwrap();
    assert_eq!(rejects.lines().count(), 6);
    let first = rejects.lines().next().unwrap();
    assert!(
        first.starts_with(&format!("{}:2\t", log.display())),
        "file:line first: {first}"
    );
    assert!(rejects.lines().last().unwrap().contains("duration"));
    oracle::assert_rows_match_text(&all_rows(&db.url), &good);
}

#[test]
fn gzip_files_directories_and_globs_are_read() {
    let db = TestDb::new(Backend::Sqlite);
    let dir = db.dir().join("logs");
    std::fs::create_dir_all(dir.join("nested")).unwrap();
    let plain = std::fs::read_to_string(generated_log(&dir, "a.log", 3_000, 8)).unwrap();
    let zipped_text = std::fs::read_to_string(generated_log(db.dir(), "b.log", 2_000, 9)).unwrap();
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(dir.join("nested/b.log.gz")).unwrap(),
        flate2::Compression::fast(),
    );
    encoder.write_all(zipped_text.as_bytes()).unwrap();
    encoder.finish().unwrap();
    std::fs::write(dir.join("notes.txt"), "not a log\n").unwrap();
    let mut config = IngestConfig::new(vec![dir.display().to_string()]);
    config.glob = Some("*.log*".to_string());
    let report = ingest_into(&db.url, config).unwrap();
    assert_eq!((report.files, report.lines, report.rejected), (2, 5_000, 0));
    oracle::assert_rows_match_text(&all_rows(&db.url), &format!("{plain}{zipped_text}"));
    let again = IngestConfig::new(vec![format!("{}/**/*.gz", dir.display())]);
    assert_eq!(
        ingest_into(&db.url, again).unwrap().lines,
        0,
        "the compressed file was recorded as done"
    );
}
