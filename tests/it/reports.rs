//! The reports: the monthly SLA against a naive oracle over the raw lines, and the bulk export
//! against the stored rows, on both backends, ingested by the real binary.

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::path::Path;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use logstats::api::{ApiKeys, ApiOptions, AppState, router_with};
use logstats::day::Day;
use logstats::generate::{GenerateConfig, generate};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::common::*;

const KEYS: &str = r#"
"key-of-cust-3" = "cust_3"
"operator-key" = "*"
"#;

/// A GET through the whole router over `url` (with [`KEYS`] when `keys`), its body read whole.
fn get(url: &str, uri: &str, keys: bool, key: Option<&str>) -> (StatusCode, HeaderMap, String) {
    block_on(async {
        let store = logstats::store::Store::connect(url).await.unwrap();
        let options = ApiOptions {
            api_keys: keys.then(|| ApiKeys::parse(KEYS).unwrap()),
            ..ApiOptions::default()
        };
        let mut request = Request::get(uri);
        if let Some(key) = key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let response = router_with(
            AppState {
                store: store.clone(),
            },
            options,
        )
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 512 << 20).await.unwrap();
        store.close().await;
        (
            parts.status,
            parts.headers,
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    })
}

fn get_json(url: &str, uri: &str) -> Value {
    let (status, _, body) = get(url, uri, false, None);
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Ingests `paths` with the built binary.
fn ingest_with_binary(url: &str, paths: &[&Path]) {
    let output = ingest_command(url).args(paths).output().unwrap();
    assert!(
        output.status.success(),
        "ingest failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Writes a generated log of `lines` lines, `customers` customers over `days` days ending `end`.
fn generated(dir: &Path, lines: u64, customers: u32, days: u32, end: Day) -> String {
    let config = GenerateConfig {
        lines,
        customers,
        days,
        end,
        seed: 2024,
    };
    let mut text = Vec::new();
    generate(&config, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    std::fs::write(dir.join("all.log"), &text).unwrap();
    text
}

// ---------- the monthly SLA ----------

/// What the oracle keeps of a (customer, month): requests, 5xx, duration sums (µs), and each
/// day's requests and 5xx.
#[derive(Default)]
struct MonthTally {
    n: u64,
    failed: u64,
    duration: u128,
    success: u128,
    days: BTreeMap<String, (u64, u64)>,
}

/// (customer, "YYYY-MM") -> tally, straight from the raw lines (its own tokenizer and decimals).
fn month_tallies(text: &str) -> BTreeMap<(String, String), MonthTally> {
    let mut tallies: BTreeMap<(String, String), MonthTally> = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [date, _, customer, _, status, duration] = fields[..] else {
            panic!("a generated line: {line}");
        };
        let status: u16 = status.parse().unwrap();
        let (whole, fraction) = duration.split_once('.').unwrap_or((duration, ""));
        let micros: u128 = whole.parse::<u128>().unwrap() * 1_000_000
            + format!("{fraction:0<6}").parse::<u128>().unwrap();
        let tally = tallies
            .entry((customer.to_string(), date[..7].to_string()))
            .or_default();
        let day = tally.days.entry(date.to_string()).or_default();
        tally.n += 1;
        day.0 += 1;
        if status >= 500 {
            tally.failed += 1;
            day.1 += 1;
        }
        tally.duration += micros;
        if (200..300).contains(&status) {
            tally.success += micros;
        }
    }
    tallies
}

/// The SLA the contract defines, computed naively from a tally.
fn expected_sla(customer: &str, month: &str, objective: f64, tally: &MonthTally) -> Value {
    let n = tally.n as f64;
    let availability = 100.0 * (tally.n - tally.failed) as f64 / n;
    let budget = n * (100.0 - objective) / 100.0;
    let mut worst: Option<(&String, &(u64, u64), f64)> = None;
    for (date, day) in &tally.days {
        let share = 100.0 * (day.0 - day.1) as f64 / day.0 as f64;
        if worst.is_none_or(|(_, _, lowest)| share < lowest) {
            worst = Some((date, day, share));
        }
    }
    let (date, day, share) = worst.unwrap();
    json!({
        "customer_id": customer,
        "month": month,
        "objective": objective,
        "total_requests": tally.n,
        "failed_by_server": tally.failed,
        "availability_percentage": availability,
        "uptime_percentage": 100.0 * tally.success as f64 / tally.duration as f64,
        "error_budget_requests": budget,
        "error_budget_remaining_requests": budget - tally.failed as f64,
        "breached": availability < objective,
        "worst_day": {"date": date, "total_requests": day.0, "failed_by_server": day.1,
                      "availability_percentage": share},
    })
}

/// Equal field by field: integers, strings, booleans and null exactly, doubles to 1e-9 relative.
fn assert_close(got: &Value, want: &Value, context: &str) {
    match (got, want) {
        (Value::Object(got), Value::Object(want)) => {
            for (field, value) in want {
                let inner = format!("{context}.{field}");
                assert_close(got.get(field).unwrap_or(&Value::Null), value, &inner);
            }
        }
        (Value::Number(g), Value::Number(w)) if w.is_f64() || g.is_f64() => {
            let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            assert!(
                (g - w).abs() <= 1e-9 * w.abs().max(1e-300),
                "{context}: got {g}, want {w}"
            );
        }
        _ => assert_eq!(got, want, "{context}"),
    }
}

#[test]
fn the_monthly_sla_of_every_customer_and_month_equals_the_oracle() {
    for backend in backends() {
        let db = TestDb::new(backend);
        // Two whole months, August and September 2024, over 400,000 lines.
        let end = Day::from_ymd(2024, 9, 30).unwrap();
        let text = generated(db.dir(), 400_000, 6, 61, end);
        ingest_with_binary(&db.url, &[&db.dir().join("all.log")]);
        let tallies = month_tallies(&text);
        assert_eq!(tallies.len(), 12, "6 customers x 2 months");
        for ((customer, month), tally) in &tallies {
            for (objective, written) in [(99.9, "99.9"), (50.0, "50")] {
                let uri = format!("/customers/{customer}/sla?month={month}&objective={written}");
                let (status, _, body) = get(&db.url, &uri, false, None);
                assert_eq!(status, StatusCode::OK, "{uri}: {body}");
                let got: Value = serde_json::from_str(&body).unwrap();
                let want = expected_sla(customer, month, objective, tally);
                assert_close(&got, &want, &format!("{backend:?} {uri}"));
                let first = format!("{month}-01");
                let last = if month == "2024-08" {
                    "2024-08-31"
                } else {
                    "2024-09-30"
                };
                assert_eq!(
                    (got["from"].as_str(), got["to"].as_str()),
                    (Some(first.as_str()), Some(last))
                );
                let keys: Vec<&str> = body
                    .match_indices("\":")
                    .map(|(at, _)| &body[body[..at].rfind('"').unwrap() + 1..at])
                    .collect();
                assert_eq!(
                    &keys[..13],
                    [
                        "customer_id",
                        "month",
                        "from",
                        "to",
                        "objective",
                        "total_requests",
                        "failed_by_server",
                        "availability_percentage",
                        "uptime_percentage",
                        "error_budget_requests",
                        "error_budget_remaining_requests",
                        "breached",
                        "worst_day"
                    ],
                    "the fields in the contract's order: {body}"
                );
            }
            // The default objective is 99.9.
            let default = get_json(&db.url, &format!("/customers/{customer}/sla?month={month}"));
            assert_eq!(default["objective"], 99.9);
        }
        // The worst day's numbers are the stats route's for that day.
        let sla = get_json(&db.url, "/customers/cust_2/sla?month=2024-09");
        let date = sla["worst_day"]["date"].as_str().unwrap();
        let day = get_json(
            &db.url,
            &format!("/customers/cust_2/stats?from={date}&to={date}"),
        );
        assert_eq!(
            sla["worst_day"]["availability_percentage"],
            day[0]["availability_percentage"]
        );
        assert_eq!(sla["worst_day"]["failed_by_server"], day[0]["status_5xx"]);

        // A month without data and an unknown customer: zeros, no breach, no worst day.
        for uri in [
            "/customers/cust_1/sla?month=2024-10",
            "/customers/nobody/sla?month=2024-09&objective=12.5",
        ] {
            let empty = get_json(&db.url, uri);
            for field in [
                "total_requests",
                "failed_by_server",
                "availability_percentage",
                "uptime_percentage",
                "error_budget_requests",
                "error_budget_remaining_requests",
            ] {
                assert_eq!(empty[field].as_f64(), Some(0.0), "{uri}: {empty}");
            }
            assert_eq!(empty["breached"], false, "{uri}");
            assert_eq!(empty["worst_day"], Value::Null, "{uri}");
        }
    }
}

#[test]
fn sla_queries_are_checked_like_the_stats_routes() {
    let db = TestDb::new(Backend::Sqlite);
    let log = generated_log(db.dir(), "a.log", 2_000, 3);
    ingest_paths(&db.url, &[&log], 1);
    for (query, parameter) in [
        ("", "month"),
        ("month=2024-13", "month"),
        ("month=2024-9", "month"),
        ("month=0000-12", "month"),
        ("month=2024-09&objective=0", "objective"),
        ("month=2024-09&objective=100", "objective"),
        ("month=2024-09&objective=abc", "objective"),
        ("month=2024-09&objective=-1", "objective"),
    ] {
        let uri = format!("/customers/cust_1/sla?{query}");
        let (status, _, body) = get(&db.url, &uri, false, None);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"], "invalid_query");
        assert_eq!(
            body["detail"][0]["loc"],
            json!(["query", parameter]),
            "{uri}"
        );
    }
    let long = "c".repeat(256);
    let (status, _, body) = get(
        &db.url,
        &format!("/customers/{long}/sla?month=2024-09"),
        false,
        None,
    );
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains(r#"["path","customer_id"]"#), "{body}");

    // The key matrix, and the order of the checks: the key, its customer, then the query.
    let sla = "/customers/cust_3/sla?month=2024-09";
    for (uri, key, want) in [
        (sla, None, StatusCode::UNAUTHORIZED),
        (sla, Some("wrong"), StatusCode::UNAUTHORIZED),
        (
            "/customers/cust_3/sla?month=bad",
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/customers/cust_1/sla?month=2024-09",
            Some("key-of-cust-3"),
            StatusCode::FORBIDDEN,
        ),
        (
            "/customers/cust_1/sla?month=bad",
            Some("key-of-cust-3"),
            StatusCode::FORBIDDEN,
        ),
        (
            "/customers/cust_3/sla?month=bad",
            Some("key-of-cust-3"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (sla, Some("key-of-cust-3"), StatusCode::OK),
        (
            "/customers/cust_1/sla?month=2024-09",
            Some("operator-key"),
            StatusCode::OK,
        ),
    ] {
        let (status, _, body) = get(&db.url, uri, true, key);
        assert_eq!(status, want, "{uri} with {key:?}: {body}");
    }

    // Revalidated like the stats: an ETag, and 304 when it is sent back.
    let (status, headers, _) = get(&db.url, sla, false, None);
    assert_eq!(status, StatusCode::OK);
    let tag = headers[header::ETAG].to_str().unwrap().to_string();
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
    let response = block_on(async {
        let store = logstats::store::Store::connect(&db.url).await.unwrap();
        let request = Request::get(sla)
            .header(header::IF_NONE_MATCH, &tag)
            .body(Body::empty())
            .unwrap();
        logstats::api::router(AppState { store })
            .oneshot(request)
            .await
            .unwrap()
    });
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
}

// ---------- the bulk export ----------

/// A CSV cell as the contract neutralises it (its own implementation of the rule).
fn csv_text(text: &str) -> String {
    let formula = text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let shown = if formula {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if formula || shown.contains(['"', ',', '\r', '\n']) {
        format!("\"{}\"", shown.replace('"', "\"\""))
    } else {
        shown
    }
}

const FIELDS: [&str; 18] = [
    "customer_id",
    "date",
    "success_requests",
    "failed_requests",
    "uptime_percentage",
    "duration_mean",
    "duration_p50",
    "duration_p99",
    "total_requests",
    "status_1xx",
    "status_2xx",
    "status_3xx",
    "status_4xx",
    "status_5xx",
    "availability_percentage",
    "duration_p90",
    "duration_p95",
    "duration_max",
];

/// The CSV the export should send for `rows` (day objects as JSON values).
fn expected_csv(rows: &[Value]) -> String {
    let mut csv = FIELDS.join(",") + "\n";
    for row in rows {
        let cells: Vec<String> = FIELDS
            .iter()
            .map(|field| match &row[*field] {
                Value::String(text) => csv_text(text),
                number => number.to_string(),
            })
            .collect();
        csv += &(cells.join(",") + "\n");
    }
    csv
}

/// The stored rows (the store's own reads, customer by customer) with `from <= date <= to`.
fn stored_rows(url: &str, from: &str, to: &str) -> Vec<Value> {
    all_rows(url)
        .into_iter()
        .filter(|row| {
            let date = row["date"].as_str().unwrap();
            from <= date && date <= to
        })
        .collect()
}

/// The stored days with `from <= date <= to` as the stats route serializes them, one per line.
fn stored_day_lines(url: &str, from: &str, to: &str) -> Vec<String> {
    let (from, to) = (from.parse().unwrap(), to.parse().unwrap());
    block_on(async {
        let store = logstats::store::Store::connect(url).await.unwrap();
        let mut lines = Vec::new();
        for customer in store.customers("", None, usize::MAX).await.unwrap() {
            for day in store.days(&customer.customer_id, from, to).await.unwrap() {
                lines.push(serde_json::to_string(&day).unwrap());
            }
        }
        store.close().await;
        lines
    })
}

#[test]
fn the_export_sends_every_stored_day_in_order_in_both_formats() {
    for backend in backends() {
        let db = TestDb::new(backend);
        let text = generated(db.dir(), 60_000, 40, 30, GenerateConfig::default().end);
        // Shuffled and split over three files.
        let lines = shuffled_lines(&text, 7);
        let third = lines.len() / 3;
        let parts: Vec<_> = (0..3)
            .map(|i| {
                let path = db.dir().join(format!("part-{i}.log"));
                let end = if i == 2 { lines.len() } else { (i + 1) * third };
                write_lines(&path, &lines[i * third..end]);
                path
            })
            .collect();
        let paths: Vec<&Path> = parts.iter().map(|p| p.as_path()).collect();
        ingest_with_binary(&db.url, &paths);
        assert_store_matches_text(&db.url, &text);

        for (from, to) in [("2024-09-03", None), ("2024-09-10", Some("2024-09-20"))] {
            let range = match to {
                Some(to) => format!("from={from}&to={to}"),
                None => format!("from={from}"),
            };
            let want = stored_rows(&db.url, from, to.unwrap_or("9999-12-31"));
            assert!(want.len() > 300, "{}", want.len());

            let (status, headers, csv) = get(&db.url, &format!("/export?{range}"), false, None);
            assert_eq!(status, StatusCode::OK, "{csv}");
            assert_eq!(headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
            let last = to.unwrap_or("9999-12-31");
            assert_eq!(
                headers[header::CONTENT_DISPOSITION],
                format!("attachment; filename=\"logstats-{from}-{last}.csv\"").as_str()
            );
            assert_eq!(csv, expected_csv(&want), "{backend:?} {range}: the CSV");

            let (status, headers, ndjson) = get(
                &db.url,
                &format!("/export?{range}&format=ndjson"),
                false,
                None,
            );
            assert_eq!(status, StatusCode::OK);
            assert_eq!(headers[header::CONTENT_TYPE], "application/x-ndjson");
            // Compared as text: the day objects exactly as the stats route prints them (parsing
            // them back would round some doubles differently).
            let want_lines = stored_day_lines(&db.url, from, last);
            assert_eq!(want_lines.len(), want.len());
            let got_lines: Vec<&str> = ndjson.lines().collect();
            assert_eq!(got_lines.len(), want_lines.len(), "{backend:?} {range}");
            if let Some((got, want)) = got_lines.iter().zip(&want_lines).find(|(g, w)| *g != w) {
                panic!("{backend:?} {range}: NDJSON differs:\n got {got}\nwant {want}");
            }
            assert!(ndjson.ends_with('\n'));
        }

        // Gzipped when asked, ended properly (the compression layer polls the body past its end).
        let gzipped = block_on(async {
            let store = logstats::store::Store::connect(&db.url).await.unwrap();
            let request = Request::get("/export?from=2024-09-03")
                .header(header::ACCEPT_ENCODING, "gzip")
                .body(Body::empty())
                .unwrap();
            let response = logstats::api::router(AppState { store })
                .oneshot(request)
                .await
                .unwrap();
            assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
            axum::body::to_bytes(response.into_body(), 512 << 20).await
        });
        assert!(gzipped.is_ok_and(|bytes| bytes.len() > 1000));

        // Nothing in the range: the header alone, or nothing.
        let (_, _, csv) = get(&db.url, "/export?from=2030-01-01", false, None);
        assert_eq!(csv, FIELDS.join(",") + "\n");
        let (_, _, ndjson) = get(
            &db.url,
            "/export?from=2030-01-01&format=ndjson",
            false,
            None,
        );
        assert_eq!(ndjson, "");
    }
}

#[test]
fn a_customers_key_exports_its_own_days_and_formulas_are_defused() {
    for backend in backends() {
        let db = TestDb::new(backend);
        let log = generated_log(db.dir(), "a.log", 6_000, 5);
        // Customer ids a spreadsheet would run (section 1 allows any printable UTF-8 without
        // spaces), and one that needs quoting.
        let hostile = [
            "=HYPERLINK(\"http://evil.example\",\"x\")",
            "+1",
            "-2",
            "@SUM(A1)",
            "a,b\"c",
        ];
        let extra: String = hostile
            .iter()
            .map(|id| format!("2024-09-25 10:00:00 {id} /api/v1/resource1 500 0.250\n"))
            .collect();
        std::fs::write(db.dir().join("hostile.log"), &extra).unwrap();
        ingest_with_binary(&db.url, &[&log, &db.dir().join("hostile.log")]);

        let everything = stored_rows(&db.url, "2024-09-01", "9999-12-31");
        let (status, _, csv) = get(
            &db.url,
            "/export?from=2024-09-01",
            true,
            Some("operator-key"),
        );
        assert_eq!(status, StatusCode::OK);
        assert_eq!(csv, expected_csv(&everything), "{backend:?}");
        for id in hostile {
            let start = format!("{},2024-09-25,", csv_text(id));
            assert!(
                csv.lines().any(|line| line.starts_with(&start)),
                "{id} is in the export, neutralised: {csv}"
            );
        }
        assert!(
            csv.contains("\n\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\",2024-09-25,")
        );
        assert!(csv.contains("\n\"'+1\",2024-09-25,"));
        assert!(csv.contains("\n\"a,b\"\"c\",2024-09-25,"));

        let own: Vec<Value> = everything
            .iter()
            .filter(|row| row["customer_id"] == "cust_3")
            .cloned()
            .collect();
        assert!(!own.is_empty());
        let (status, _, csv) = get(
            &db.url,
            "/export?from=2024-09-01",
            true,
            Some("key-of-cust-3"),
        );
        assert_eq!(status, StatusCode::OK);
        assert_eq!(csv, expected_csv(&own), "{backend:?}: only cust_3's days");

        for (uri, key, want) in [
            ("/export?from=2024-09-01", None, StatusCode::UNAUTHORIZED),
            (
                "/export?from=2024-09-01",
                Some("wrong"),
                StatusCode::UNAUTHORIZED,
            ),
            ("/export?from=bad", None, StatusCode::UNAUTHORIZED),
            (
                "/export?from=bad",
                Some("key-of-cust-3"),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                "/export?from=2024-09-01&format=xml",
                Some("operator-key"),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
        ] {
            let (status, headers, body) = get(&db.url, uri, true, key);
            assert_eq!(status, want, "{uri} with {key:?}: {body}");
            assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{uri}");
        }
        let (_, _, body) = get(&db.url, "/export?to=x&format=xml", false, None);
        let body: Value = serde_json::from_str(&body).unwrap();
        let locs: Vec<String> = body["detail"]
            .as_array()
            .unwrap()
            .iter()
            .map(|detail| detail["loc"][1].as_str().unwrap().to_string())
            .collect();
        assert_eq!(locs, ["from", "to", "format"], "every problem at once");
    }
}

#[test]
fn an_export_longer_than_the_request_timeout_finishes_while_it_makes_progress() {
    let db = TestDb::new(Backend::Sqlite);
    // About 55,000 days: far more than the socket's buffers and the export's channel hold.
    generated(db.dir(), 200_000, 2_000, 30, GenerateConfig::default().end);
    ingest_with_binary(&db.url, &[&db.dir().join("all.log")]);
    let rows = stored_rows(&db.url, "0001-01-01", "9999-12-31").len();
    let server = Server::start(&db.url, &["--request-timeout", "1"]);

    let mut stream = std::net::TcpStream::connect(&server.address).unwrap();
    write!(
        stream,
        "GET /export?from=2024-01-01 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reader = std::io::BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    // The client stops reading for longer than the request timeout: the export waits for it
    // (this pause only makes the request outlast the timeout; nothing waits on it).
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.ends_with("\r\n0\r\n\r\n"),
        "the last chunk came: the export is whole"
    );
    let lines = rest.matches('\n').count();
    // Each row is one line; chunk framing adds two line ends per chunk, headers a few.
    assert!(lines > rows, "{lines} line ends for {rows} rows");
    let days = rest.matches(",2024-").count();
    assert_eq!(days, rows, "every day once");
}
