//! Summaries of long ranges, read from each customer's months and the days at the edges: equal to
//! the naive oracle over the raw lines, whatever the runs that wrote the months, on both backends;
//! and a database whose days were stored before the months existed gets them at the next commit.

use chrono::NaiveDate;
use logstats::day::Day;

use crate::common::*;
use crate::oracle::{assert_row_matches, groups, statistics};

/// A small deterministic generator (the tests need no quality beyond "spread out").
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn line(day: Day, customer: &str, status: u16, duration_us: u64) -> String {
    format!(
        "{day} 12:00:00 {customer} /v1/items {status} {}.{:06}",
        duration_us / 1_000_000,
        duration_us % 1_000_000
    )
}

/// Ten years of `big` (a dozen requests a day, durations to the microsecond, so that days hardly
/// share a value) and 150 customers with a request a month: more months than a commit writes at a
/// time.
fn decade() -> Vec<String> {
    let mut random = Lcg(29);
    let first = Day::from_ymd(2015, 1, 1).unwrap();
    let mut lines = Vec::new();
    for offset in 0..3653 {
        let day = first.plus(offset);
        for _ in 0..12 {
            let status = [200, 200, 200, 201, 404, 500][random.below(6) as usize];
            lines.push(line(day, "big", status, 1 + random.below(3_000_000)));
        }
        if day == day.first_of_month() {
            for customer in 0..150 {
                let day = day.plus(random.below(28) as i32);
                let name = format!("small_{customer}");
                lines.push(line(day, &name, 200, 1 + random.below(900_000)));
            }
        }
    }
    lines
}

/// Ranges at and between month edges, within one month, across two, the whole decade, and
/// random ones.
fn ranges() -> Vec<(NaiveDate, NaiveDate)> {
    let date = |text: &str| text.parse::<NaiveDate>().unwrap();
    let mut ranges: Vec<(NaiveDate, NaiveDate)> = [
        ("2015-01-01", "2024-12-31"),
        ("2014-06-01", "2030-01-01"),
        ("2016-02-01", "2016-02-29"),
        ("2016-02-02", "2016-02-28"),
        ("2016-01-31", "2016-03-01"),
        ("2017-03-15", "2021-09-14"),
        ("2018-05-01", "2018-05-01"),
    ]
    .into_iter()
    .map(|(from, to)| (date(from), date(to)))
    .collect();
    let mut random = Lcg(7);
    for _ in 0..12 {
        let from = date("2015-01-01") + chrono::Days::new(random.below(3653));
        ranges.push((from, from + chrono::Days::new(random.below(2000))));
    }
    ranges
}

/// The first and last days a store keeps, and ranges at their edges, of `edge`'s requests.
fn edge_lines() -> Vec<String> {
    [
        "0001-01-01",
        "0001-01-02",
        "0001-02-01",
        "9999-11-30",
        "9999-12-30",
        "9999-12-31",
    ]
    .iter()
    .enumerate()
    .map(|(i, date)| {
        line(
            Day::parse(date.as_bytes()).unwrap(),
            "edge",
            200,
            1000 + i as u64,
        )
    })
    .collect()
}

fn edge_ranges() -> Vec<(NaiveDate, NaiveDate)> {
    let date = |text: &str| text.parse::<NaiveDate>().unwrap();
    [
        ("0001-01-01", "9999-12-31"),
        ("0001-01-01", "0001-01-15"),
        ("0001-01-02", "0001-02-28"),
        ("9999-12-02", "9999-12-31"),
        ("9999-11-30", "9999-12-31"),
        ("9999-12-01", "9999-12-31"),
    ]
    .into_iter()
    .map(|(from, to)| (date(from), date(to)))
    .collect()
}

/// Asserts that the summary of `customer` over each range equals the oracle over `lines`.
fn assert_summaries_match(url: &str, lines: &[String], customer: &str, context: &str) {
    let groups = groups(&lines.join("\n"));
    let store = logstats::store::Store::connect(url);
    let store = block_on(store).unwrap();
    let ranges = if customer == "edge" {
        edge_ranges()
    } else {
        ranges()
    };
    for (from, to) in ranges {
        let requests: Vec<(u16, u64)> = groups
            .range(
                (customer.to_string(), from.to_string())..=(customer.to_string(), to.to_string()),
            )
            .flat_map(|(_, requests)| requests.iter().copied())
            .collect();
        let mut state = block_on(store.range_state(customer, from, to)).unwrap();
        let got = serde_json::to_value(state.statistics()).unwrap();
        assert_eq!(
            got["total_requests"],
            requests.len(),
            "{context}: {from}..{to}"
        );
        if !requests.is_empty() {
            assert_row_matches(&got, &statistics(&requests));
        }
    }
    block_on(store.close());
}

fn months_built(db: &TestDb) -> (i64, i64) {
    (
        db.query_number("SELECT months_built FROM ingest_totals"),
        db.query_number("SELECT COUNT(*) FROM customer_months"),
    )
}

#[test]
fn summaries_of_years_equal_the_oracle_from_months_written_by_any_runs_or_built_afterwards() {
    for backend in backends() {
        let db = TestDb::new(backend);
        let mut lines = decade();
        lines.extend(edge_lines());
        let text = lines.join("\n");
        let shuffled: Vec<&str> = shuffled_lines(&text, 5);
        let third = shuffled.len() / 3;
        let files: Vec<_> = shuffled
            .chunks(third + 1)
            .enumerate()
            .map(|(i, part)| {
                let path = db.dir().join(format!("part{i}.log"));
                write_lines(&path, part);
                path
            })
            .collect();
        // Into an empty table, then merged into the stored days and months.
        ingest_paths(&db.url, &[&files[0]], 2);
        ingest_paths(&db.url, &[&files[1], &files[2]], 3);
        let months = 120 + 150 * 120 + 4;
        assert_eq!(months_built(&db), (1, months), "{backend:?}");
        assert_summaries_match(&db.url, &lines, "big", &format!("{backend:?}"));
        assert_summaries_match(&db.url, &lines, "edge", &format!("{backend:?}"));
        let rows = all_rows(&db.url);
        crate::oracle::assert_rows_match_text(&rows, &text);

        // As a database upgraded from a version without months: every day, none in its month.
        db.execute("DELETE FROM customer_months; UPDATE ingest_totals SET months_built = 0");
        assert_summaries_match(&db.url, &lines, "big", "read from the days alone");
        let late = line(Day::from_ymd(2019, 7, 4).unwrap(), "big", 503, 4_000_001);
        let path = db.dir().join("late.log");
        write_lines(&path, &[&late]);
        ingest_paths(&db.url, &[&path], 1);
        assert_eq!(months_built(&db), (1, months), "{backend:?}: built once");
        let mut all_lines = lines.clone();
        all_lines.push(late);
        assert_summaries_match(&db.url, &all_lines, "big", "after the months were built");
        let rows = all_rows(&db.url);
        crate::oracle::assert_rows_match_text(&rows, &all_lines.join("\n"));
    }
}
