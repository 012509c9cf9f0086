//! The API in real use: fresh answers after a commit (the cache's guarantee), gzip, metrics, and
//! JSON errors for requests the framework rejects.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use logstats::api::{AppState, router};
use tower::ServiceExt;

use crate::common::*;

fn app(url: &str) -> Router {
    let store = block_on(logstats::store::Store::connect(url)).unwrap();
    router(AppState { store })
}

/// Sends one request; returns the status, the headers and the body as text.
fn send(
    app: &Router,
    uri: &str,
    headers: &[(header::HeaderName, &str)],
) -> (StatusCode, axum::http::HeaderMap, String) {
    block_on(async {
        let mut request = Request::get(uri);
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 10 << 20).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    })
}

fn total_requests(body: &str) -> u64 {
    let rows: serde_json::Value = serde_json::from_str(body).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|row| row["total_requests"].as_u64().unwrap())
        .sum()
}

#[test]
fn a_new_commit_shows_through_the_cache_once_its_answers_expire() {
    // How soon (within the cache's TTL, at most 1 s) is the cache's unit test, on a paused clock;
    // here the new commit must show in both answers, whatever the machine's speed.
    for backend in backends() {
        let db = TestDb::new(backend);
        let first = generated_log(db.dir(), "a.log", 3_000, 1);
        ingest_paths(&db.url, &[&first], 1);
        let app = app(&db.url);
        let uri = format!("/customers/cust_1/stats?from={}", first_generated_day());
        let summary = format!(
            "/customers/cust_1/stats/summary?from={}",
            first_generated_day()
        );
        let (status, _, body) = send(&app, &uri, &[]);
        assert_eq!(status, StatusCode::OK);
        let before = total_requests(&body);
        let (_, _, summary_before) = send(&app, &summary, &[]);
        // Both answers are now cached; a commit lands.
        let second = generated_log(db.dir(), "b.log", 3_000, 2);
        ingest_paths(&db.url, &[&second], 1);
        let started = Instant::now();
        while total_requests(&send(&app, &uri, &[]).2) == before {
            assert!(
                started.elapsed() < PATIENCE,
                "{backend:?}: the commit never showed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        while send(&app, &summary, &[]).2 == summary_before {
            assert!(
                started.elapsed() < PATIENCE,
                "{backend:?}: the summary never changed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn answers_are_gzipped_when_the_client_asks() {
    let db = TestDb::new(Backend::Sqlite);
    let log = generated_log(db.dir(), "a.log", 2_000, 3);
    ingest_paths(&db.url, &[&log], 1);
    let app = app(&db.url);
    let uri = format!("/customers/cust_1/stats?from={}", first_generated_day());
    let (status, headers, _) = send(&app, &uri, &[(header::ACCEPT_ENCODING, "gzip")]);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
    let (_, headers, _) = send(&app, &uri, &[]);
    assert!(headers.get(header::CONTENT_ENCODING).is_none());
}

#[test]
fn metrics_count_requests_by_route_pattern_and_read_totals_from_the_database() {
    let db = TestDb::new(Backend::Sqlite);
    let log = generated_log(db.dir(), "a.log", 2_500, 4);
    ingest_paths(&db.url, &[&log], 1);
    let app = app(&db.url);
    let uri = format!("/customers/cust_7/stats?from={}", first_generated_day());
    assert_eq!(send(&app, &uri, &[]).0, StatusCode::OK);
    assert_eq!(send(&app, "/no/such/route", &[]).0, StatusCode::NOT_FOUND);
    let (status, headers, text) = send(&app, "/metrics", &[]);
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(
        text.lines()
            .any(|line| line.starts_with("logstats_http_requests_total{")
                && line.contains("route=\"/customers/{customer_id}/stats\"")
                && line.contains("status=\"200\"")),
        "{text}"
    );
    assert!(text.contains("route=\"unmatched\""), "{text}");
    assert!(!text.contains("cust_7"), "customer ids never become labels");
    assert!(
        text.contains("logstats_http_request_duration_seconds_bucket{"),
        "{text}"
    );
    // Other tests share the process's recorder: the gauges hold the last scrape's database.
    assert!(
        text.contains("logstats_ingested_lines_total 2500"),
        "{text}"
    );
    assert!(text.contains("logstats_rejected_lines_total 0"), "{text}");
    assert!(
        text.contains("logstats_last_commit_timestamp_seconds 1"),
        "{text}"
    );
    assert!(
        text.contains("logstats_stored_requests_total 2500"),
        "{text}"
    );
}

#[test]
fn invented_methods_count_under_one_label_and_metrics_stay_small() {
    let db = TestDb::new(Backend::Sqlite);
    let app = app(&db.url);
    for i in 0..2_000 {
        let request = Request::builder()
            .method(format!("INVENTED{i}").as_str())
            .uri("/healthz")
            .body(Body::empty())
            .unwrap();
        block_on(app.clone().oneshot(request)).unwrap();
    }
    let (status, _, text) = send(&app, "/metrics", &[]);
    assert_eq!(status, StatusCode::OK);
    assert!(!text.contains("INVENTED"), "no invented method is a label");
    assert!(
        text.lines()
            .any(|line| line.starts_with("logstats_http_requests_total{")
                && line.contains("method=\"other\"")),
        "{text}"
    );
    assert!(text.len() < 64 << 10, "{} bytes", text.len());
}

#[test]
fn requests_the_framework_rejects_still_get_json() {
    let db = TestDb::new(Backend::Sqlite);
    let app = app(&db.url);
    let (status, _, body) = send(&app, "/customers/%FF%FE/stats?from=2024-09-03", &[]);
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["detail"][0]["loc"],
        serde_json::json!(["path", "customer_id"])
    );
    let long = format!("/customers/{}/stats?from=2024-09-03", "c".repeat(9_000));
    let (status, _, body) = send(&app, &long, &[]);
    assert_eq!(status, StatusCode::URI_TOO_LONG);
    assert!(body.contains("uri_too_long"));
}

/// Reads until the server closes the connection (a guard of 60 s fails a server that never does);
/// returns what it sent.
fn read_until_closed(stream: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

#[test]
fn connections_that_never_finish_a_request_head_are_closed_while_others_are_served() {
    use std::io::Write;
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start(&db.url, &["--header-timeout", "2"]);
    let mut stalled: Vec<std::net::TcpStream> = (0..100)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(&server.address).unwrap();
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: logstats\r\n")
                .unwrap();
            stream
        })
        .collect();
    for _ in 0..20 {
        assert_eq!(server.get("/healthz").0, 200);
    }
    for stream in &mut stalled {
        let answer = read_until_closed(stream);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
    }
    // A kept-alive connection that goes quiet after its request is closed too.
    let mut idle = std::net::TcpStream::connect(&server.address).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: logstats\r\n\r\n")
        .unwrap();
    let answer = read_until_closed(&mut idle);
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 1, "{answer}");
    assert_eq!(server.get("/healthz").0, 200, "the server is still up");
}

#[test]
fn past_max_connections_new_ones_wait_for_a_free_slot() {
    use std::io::{Read, Write};
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start(
        &db.url,
        &["--max-connections", "2", "--header-timeout", "300"],
    );
    let holders: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(&server.address).unwrap())
        .collect();
    let mut waiting = std::net::TcpStream::connect(&server.address).unwrap();
    waiting
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: logstats\r\nConnection: close\r\n\r\n")
        .unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        waiting.read(&mut byte).is_err(),
        "a third connection is not served while two are open"
    );
    drop(holders);
    let answer = read_until_closed(&mut waiting);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// `chattr +i` for as long as it lives: not even root may write the file.
struct Immutable(std::path::PathBuf);

impl Immutable {
    fn set(path: &std::path::Path) -> Option<Immutable> {
        let status = std::process::Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status();
        if status.is_ok_and(|s| s.success()) {
            Some(Immutable(path.to_path_buf()))
        } else {
            eprintln!("chattr +i is not available here: skipping");
            None
        }
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_read_only_sqlite_database_is_served() {
    let db = TestDb::new(Backend::Sqlite);
    let log = generated_log(db.dir(), "a.log", 3_000, 8);
    ingest_paths(&db.url, &[&log], 1);
    let uri = format!("/customers/cust_3/stats?from={}", first_generated_day());
    let before = Server::start(&db.url, &[]).get(&uri);
    assert_eq!(before.0, 200);
    // Archived as one file: the write-ahead log folded in, the journal mode back to a rollback
    // journal (what `sqlite3 stats.db 'PRAGMA journal_mode=DELETE'` does).
    block_on(async {
        use sqlx::Connection;
        let mut connection = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE")
            .execute(&mut connection)
            .await
            .unwrap();
        connection.close().await.unwrap();
    });
    let file = db.dir().join("stats.db");
    for companion in ["stats.db-wal", "stats.db-shm"] {
        let path = db.dir().join(companion);
        assert!(!path.exists(), "{} is left", path.display());
    }
    let Some(_frozen) = Immutable::set(&file) else {
        return;
    };
    assert!(
        std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .is_err()
    );
    let server = Server::start(&db.url, &[]);
    assert_eq!(
        server.get(&uri),
        before,
        "the same answer from the read-only file"
    );
    assert_eq!(server.get("/readyz").0, 200);
    assert_eq!(server.get("/customers").0, 200);
}

#[test]
fn an_unchanged_answer_revalidates_to_304_and_a_commit_changes_its_tag() {
    let db = TestDb::new(Backend::Sqlite);
    let first_log = generated_log(db.dir(), "a.log", 2_000, 21);
    ingest_paths(&db.url, &[&first_log], 1);
    let store = block_on(logstats::store::Store::connect(&db.url)).unwrap();
    let options = logstats::api::ApiOptions {
        cache_ttl: Duration::ZERO,
        ..Default::default()
    };
    let app = logstats::api::router_with(AppState { store }, options);
    let first = first_generated_day();
    for uri in [
        format!("/customers/cust_2/stats?from={first}"),
        format!("/customers/cust_2/stats/summary?from={first}"),
        "/customers".to_string(),
    ] {
        let (status, headers, body) = send(&app, &uri, &[]);
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache", "{uri}");
        let tag = headers[header::ETAG].to_str().unwrap().to_string();

        let (status, again, unchanged) = send(&app, &uri, &[(header::IF_NONE_MATCH, &tag)]);
        assert_eq!(status, StatusCode::NOT_MODIFIED, "{uri}");
        assert!(unchanged.is_empty(), "{uri}: a 304 has no body");
        assert_eq!(again[header::ETAG], tag.as_str(), "{uri}");
        let (status, ..) = send(&app, &uri, &[(header::IF_NONE_MATCH, "W/\"other\"")]);
        assert_eq!(status, StatusCode::OK, "{uri}");

        // New requests for the customer: a new answer, a new tag. (Each file its own request: a
        // file with the content of one ingested is that file.)
        let second = uri.len() % 60;
        let more = db.dir().join(format!("more-{second}.log"));
        std::fs::write(
            &more,
            format!("{first} 12:00:{second:02} cust_2 /x 200 0.25\n"),
        )
        .unwrap();
        ingest_paths(&db.url, &[&more], 1);
        let (status, headers, changed) = send(&app, &uri, &[(header::IF_NONE_MATCH, &tag)]);
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_ne!(headers[header::ETAG], tag.as_str(), "{uri}");
        assert_ne!(changed, body, "{uri}");
    }
}
