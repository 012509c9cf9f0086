//! The breakdown by resource (docs/spec.md sections 3 and 5): every (day, resource) object and
//! every resource's summary equal a naive oracle, on shuffled, split and spilled input, on both
//! backends; the cap keeps the names that sort first whatever the runs; days stored without
//! their resources answer `"resource": null`.

use std::collections::BTreeMap;

use logstats::pipeline::{IngestConfig, IngestReport};
use serde_json::Value;

use crate::common::{
    Server, TestDb, backends, generated_log_of, ingest_into, shuffled_lines, write_lines,
};
use crate::oracle::{assert_row_matches, statistics};

type Requests = Vec<(u16, u64)>;

/// The oracle's resource of a request path, written apart from the production code.
fn resource(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap();
    let trimmed = path.trim_end_matches('/');
    let path = if trimmed.is_empty() { "/" } else { trimmed };
    if path == "/" {
        return "/".into();
    }
    let is_uuid = |s: &str| {
        let parts: Vec<&str> = s.split('-').collect();
        parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
            && parts
                .iter()
                .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
    };
    path.split('/')
        .map(|segment| {
            let digits = !segment.is_empty() && segment.chars().all(|c| c.is_ascii_digit());
            if digits || is_uuid(segment) {
                "{id}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// (customer, date, resource) -> requests of every line of `text`.
fn oracle(text: &str) -> BTreeMap<(String, String, String), Requests> {
    let mut groups: BTreeMap<(String, String, String), Requests> = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [date, _, customer, path, status, duration] = fields[..] else {
            continue;
        };
        let (whole, fraction) = duration.split_once('.').unwrap_or((duration, ""));
        let micros = whole.parse::<u64>().unwrap() * 1_000_000
            + format!("{fraction:0<6}").parse::<u64>().unwrap();
        groups
            .entry((customer.into(), date.into(), resource(path)))
            .or_default()
            .push((status.parse().unwrap(), micros));
    }
    groups
}

/// Lines of a customer whose paths carry ids, queries, fragments and trailing slashes.
fn path_lines() -> Vec<String> {
    let paths = [
        "/users/123/orders?x=1",
        "/users/7/orders",
        "/users/0F8FAD5B-D9CB-469F-A165-70867728950E/orders/",
        "/",
        "/?page=2",
        "/items/#top",
        "/items/42/",
        "/v2/a1b2",
    ];
    (0..3000)
        .map(|i| {
            let day = 1 + i % 4;
            let status = [200, 201, 404, 500, 503, 302][i % 6];
            let path = paths[(i * 7) % paths.len()];
            format!(
                "2024-09-0{day} 10:{:02}:00 cust_paths {path} {status} {}.{:03}",
                i % 60,
                i % 3,
                (i * 37) % 1000
            )
        })
        .collect()
}

/// `GET path` as JSON, which must answer 200.
fn get_json(server: &Server, path: &str) -> Value {
    let (status, body) = server.get(path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn requests_of(row: &Value) -> u64 {
    row["total_requests"].as_u64().unwrap()
}

#[test]
fn every_day_and_range_by_resource_equals_the_oracle_on_split_spilled_input() {
    for (round, backend) in backends().into_iter().enumerate() {
        let db = TestDb::new(backend);
        let generated = generated_log_of(db.dir(), "gen.log", 300_000, 11 + round as u64, 12);
        let mut text = std::fs::read_to_string(&generated).unwrap();
        for line in path_lines() {
            text.push_str(&line);
            text.push('\n');
        }
        let lines = shuffled_lines(&text, 5 + round as u64);
        let third = lines.len() / 3;
        let mut inputs = Vec::new();
        for (i, part) in lines.chunks(third + 1).enumerate() {
            let path = db.dir().join(format!("part-{i}.log"));
            write_lines(&path, part);
            inputs.push(path.display().to_string());
        }
        let mut config = IngestConfig::new(inputs);
        config.workers = 3;
        // Small enough that the owners' tables spill.
        config.memory_limit = if round == 0 { 1 << 20 } else { 8 << 20 };
        ingest_into(&db.url, config).unwrap();

        let groups = oracle(&text);
        let server = Server::start(&db.url, &[]);
        let mut customers: Vec<&String> = groups.keys().map(|k| &k.0).collect();
        customers.dedup();
        assert_eq!(customers.len(), 13);
        for customer in customers {
            let days = get_json(
                &server,
                &format!("/customers/{customer}/stats?from=2000-01-01&group_by=resource"),
            );
            let days = days.as_array().unwrap();
            let expected: Vec<(&(String, String, String), &Requests)> =
                groups.iter().filter(|(k, _)| k.0 == *customer).collect();
            assert_eq!(
                days.len(),
                expected.len(),
                "{customer}: one object per (day, resource)"
            );
            for (row, (key, requests)) in days.iter().zip(&expected) {
                assert_eq!(row["date"], key.1.as_str());
                assert_eq!(
                    row["resource"],
                    key.2.as_str(),
                    "{customer}: by date then resource"
                );
                assert_row_matches(row, &statistics(requests));
            }
            // Each day's resources add up to the day.
            let plain = get_json(
                &server,
                &format!("/customers/{customer}/stats?from=2000-01-01"),
            );
            for day in plain.as_array().unwrap() {
                let sum: u64 = days
                    .iter()
                    .filter(|r| r["date"] == day["date"])
                    .map(requests_of)
                    .sum();
                assert_eq!(sum, requests_of(day));
            }
            // One summary per resource over the range.
            let summaries = get_json(
                &server,
                &format!(
                    "/customers/{customer}/stats/summary?from=2024-01-01&to=2030-01-01&group_by=resource"
                ),
            );
            let mut by_resource: BTreeMap<&str, Requests> = BTreeMap::new();
            for (key, requests) in &expected {
                by_resource
                    .entry(&key.2)
                    .or_default()
                    .extend(requests.iter().copied());
            }
            let summaries = summaries.as_array().unwrap();
            assert_eq!(summaries.len(), by_resource.len());
            for (summary, (name, requests)) in summaries.iter().zip(&by_resource) {
                assert_eq!(summary["resource"], *name);
                assert_eq!(summary["to"], "2030-01-01");
                assert_row_matches(summary, &statistics(requests));
            }
        }
        // `resource=` keeps one, given as a path the way ingestion normalises it.
        let one = get_json(
            &server,
            "/customers/cust_paths/stats/summary?from=2024-01-01&resource=/users/99/orders/",
        );
        let want: Requests = groups
            .iter()
            .filter(|(k, _)| k.0 == "cust_paths" && k.2 == "/users/{id}/orders")
            .flat_map(|(_, r)| r.iter().copied())
            .collect();
        assert_eq!(one.as_array().unwrap().len(), 1);
        assert_row_matches(&one[0], &statistics(&want));
        let (status, body) = server.get("/customers/cust_1/stats?from=2024-01-01&group_by=path");
        assert_eq!(status, 422, "{body}");
    }
}

/// Ingests `lines` in one run of its own.
fn ingest_lines(db: &TestDb, name: &str, lines: &[String], by_resource: bool) -> IngestReport {
    let path = db.dir().join(name);
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    write_lines(&path, &lines);
    let mut config = IngestConfig::new(vec![path.display().to_string()]);
    config.by_resource = by_resource;
    config.workers = 2;
    ingest_into(&db.url, config).unwrap()
}

#[test]
fn a_day_keeps_the_thousand_resources_that_sort_first_whatever_the_runs() {
    for backend in backends() {
        let db = TestDb::new(backend);
        let line = |r: usize| format!("2024-09-01 10:00:00 c /r/{r:05}x 200 0.{:03}", r % 1000);
        // Two runs: the first sees only names past the cap, the second the rest and some again.
        let first: Vec<String> = (600..1205).map(line).collect();
        let second: Vec<String> = (0..700).map(line).collect();
        let report = ingest_lines(&db, "first.log", &first, true);
        assert_eq!(report.other_requests, 0);
        // The summary says how many requests the second run put into (other).
        let report = ingest_lines(&db, "second.log", &second, true);
        assert_eq!(report.other_requests, 205);
        assert!(
            report
                .summary_line()
                .contains("205 requests counted as (other)")
        );
        let server = Server::start(&db.url, &[]);
        let rows = get_json(
            &server,
            "/customers/c/stats?from=2024-09-01&group_by=resource",
        );
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), 1001);
        assert_eq!(rows[0]["resource"], "(other)");
        // 1,205 distinct names, 1,305 requests: names 0..999 kept, 1000..1204 in (other).
        assert_eq!(requests_of(&rows[0]), 205);
        assert_eq!(rows[1]["resource"], "/r/00000x");
        assert_eq!(rows[1000]["resource"], "/r/00999x");
        assert_eq!(requests_of(&rows[601]), 2, "seen in both runs");
        let total: u64 = rows.iter().map(requests_of).sum();
        assert_eq!(total, 1305);
    }
}

#[test]
fn requests_stored_without_their_resource_answer_null_and_still_add_up() {
    for backend in backends() {
        let db = TestDb::new(backend);
        let old: Vec<String> = (0..10)
            .map(|i| format!("2024-09-01 10:00:0{i} c /a/{i} 200 1.{i}"))
            .collect();
        let new: Vec<String> = (0..6)
            .map(|i| format!("2024-09-01 11:00:0{i} c /b 500 2.{i}"))
            .collect();
        ingest_lines(&db, "old.log", &old, false);
        ingest_lines(&db, "new.log", &new, true);
        let server = Server::start(&db.url, &[]);
        let rows = get_json(
            &server,
            "/customers/c/stats?from=2024-09-01&group_by=resource",
        );
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["resource"], Value::Null);
        assert_eq!(requests_of(&rows[0]), 10);
        assert_eq!(
            (rows[1]["resource"].as_str(), requests_of(&rows[1])),
            (Some("/b"), 6)
        );
        let text = format!("{}\n{}\n", old.join("\n"), new.join("\n"));
        let day = &oracle(&text);
        let all: Requests = day.values().flatten().copied().collect();
        let plain = get_json(&server, "/customers/c/stats?from=2024-09-01");
        assert_row_matches(&plain[0], &statistics(&all));
    }
}
