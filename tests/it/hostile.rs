//! Hostile and unusual input: values that overflow naive sums, ids and days that must be refused,
//! byte-order marks, lines too long to hold, names and bytes that must not reach a terminal raw.

use logstats::pipeline::{IngestConfig, ingest};

use crate::common::*;
use crate::oracle;

fn ingest_text(db: &TestDb, name: &str, text: &str) -> logstats::pipeline::IngestReport {
    let log = db.dir().join(name);
    std::fs::write(&log, text).unwrap();
    ingest(IngestConfig::new(&db.url, vec![log.display().to_string()])).unwrap()
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
