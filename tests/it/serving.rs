//! The API in real use: fresh answers after a commit (the cache's guarantee), gzip, metrics, and
//! JSON errors for requests the framework rejects.

use std::time::Duration;

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
fn a_new_commit_is_visible_within_one_second_through_the_cache() {
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
        std::thread::sleep(Duration::from_secs(1));
        let (_, _, body) = send(&app, &uri, &[]);
        assert!(
            total_requests(&body) > before,
            "{:?}: the commit shows within 1 s",
            db.backend
        );
        let (_, _, summary_after) = send(&app, &summary, &[]);
        assert_ne!(
            summary_before, summary_after,
            "{backend:?}: the summary too"
        );
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
