//! The API through `router(state)` (tower's `oneshot`), on both backends, and one real port.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use logstats::api::{AppState, router};
use tower::ServiceExt;

use crate::common::*;
use crate::oracle;

/// Sends one request to a fresh router over `url`; returns the status and the JSON body.
fn call(url: &str, method: Method, uri: &str) -> (StatusCode, serde_json::Value) {
    let (status, text) = call_text(url, method, uri);
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, body)
}

/// Like [`call`], with the body as sent.
fn call_text(url: &str, method: Method, uri: &str) -> (StatusCode, String) {
    block_on(async {
        let store = logstats::store::Store::connect(url).await.unwrap();
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let response = router(AppState { store }).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 10 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    })
}

fn ingested_db(backend: Backend) -> (TestDb, String) {
    let db = TestDb::new(backend);
    let log = generated_log(db.dir(), "a.log", 8_000, 11);
    ingest_paths(&db.url, &[&log], 2);
    let text = std::fs::read_to_string(log).unwrap();
    (db, text)
}

#[test]
fn daily_stats_equal_the_oracle_in_date_order_with_customer_and_date_first() {
    for backend in backends() {
        let (db, text) = ingested_db(backend);
        let first = first_generated_day();
        let uri = format!(
            "/customers/cust_3/stats?from={}&to={}",
            first.plus(2),
            first.plus(5)
        );
        let (status, body) = call(&db.url, Method::GET, &uri);
        assert_eq!(status, StatusCode::OK);
        let rows = body.as_array().unwrap();
        assert_eq!(rows.len(), 4);
        let groups = oracle::groups(&text);
        for (i, row) in rows.iter().enumerate() {
            let date = first.plus(2 + i as i32).to_string();
            assert_eq!(row["date"], date.as_str());
            oracle::assert_row_matches(
                row,
                &oracle::statistics(&groups[&("cust_3".to_string(), date)]),
            );
        }
        let (_, text) = call_text(&db.url, Method::GET, &uri);
        let first_row = format!(
            "[{{\"customer_id\":\"cust_3\",\"date\":\"{}\",",
            first.plus(2)
        );
        assert!(
            text.starts_with(&first_row),
            "customer_id and date come first: {text}"
        );
    }
}

#[test]
fn an_open_range_returns_every_later_day_and_an_unknown_customer_an_empty_array() {
    let (db, _) = ingested_db(Backend::Sqlite);
    let (status, body) = call(
        &db.url,
        Method::GET,
        &format!("/customers/cust_1/stats?from={}", first_generated_day()),
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.as_array().unwrap().len(), 10);
    let (status, body) = call(
        &db.url,
        Method::GET,
        "/customers/nobody/stats?from=2024-01-01",
    );
    assert_eq!((status, body), (StatusCode::OK, serde_json::json!([])));
}

#[test]
fn the_range_summary_has_exact_percentiles_over_all_raw_durations() {
    for backend in backends() {
        let (db, text) = ingested_db(backend);
        let first = first_generated_day();
        let (from, to) = (first.plus(1), first.plus(7));
        let uri = format!("/customers/cust_2/stats/summary?from={from}&to={to}");
        let (status, body) = call(&db.url, Method::GET, &uri);
        assert_eq!(status, StatusCode::OK);
        let all: Vec<(u16, u64)> = oracle::groups(&text)
            .into_iter()
            .filter(|((c, d), _)| c == "cust_2" && *d >= from.to_string() && *d <= to.to_string())
            .flat_map(|(_, requests)| requests)
            .collect();
        oracle::assert_row_matches(&body, &oracle::statistics(&all));
        assert_eq!(body["to"], to.to_string().as_str());
        let open = format!("/customers/cust_2/stats/summary?from={from}");
        let (status, body) = call(&db.url, Method::GET, &open);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["from"], from.to_string().as_str());
        assert!(
            body.get("to").is_none(),
            "an open range has no 'to': {body}"
        );
    }
}

#[test]
fn the_customer_list_has_every_customer_with_its_days_and_totals() {
    let (db, text) = ingested_db(Backend::Sqlite);
    let (status, body) = call(&db.url, Method::GET, "/customers");
    assert_eq!(status, StatusCode::OK);
    let customers = body.as_array().unwrap();
    assert_eq!(customers.len(), 20);
    let total: u64 = customers
        .iter()
        .map(|c| c["total_requests"].as_u64().unwrap())
        .sum();
    assert_eq!(total, text.lines().count() as u64);
    assert_eq!(
        customers[0]["first_day"],
        first_generated_day().to_string().as_str()
    );
}

#[test]
fn bad_queries_get_422_naming_the_parameter() {
    let db = TestDb::new(Backend::Sqlite);
    let cases = [
        ("/customers/cust_1/stats", "from"),
        ("/customers/cust_1/stats?from=aaaa", "from"),
        ("/customers/cust_1/stats?from=2024-02-30", "from"),
        ("/customers/cust_1/stats?from=2024-09-03&to=bbb", "to"),
        (
            "/customers/cust_1/stats?from=2024-09-03&to=2024-09-01",
            "to",
        ),
        ("/customers/cust_1/stats/summary?from=%FF%FE", "from"),
    ];
    for (uri, parameter) in cases {
        let (status, body) = call(&db.url, Method::GET, uri);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
        assert_eq!(body["error"], "invalid_query", "{uri}");
        assert_eq!(
            body["detail"][0]["loc"],
            serde_json::json!(["query", parameter]),
            "{uri}"
        );
    }
    let (_, body) = call(&db.url, Method::GET, "/customers/cust_1/stats?from=aaaa");
    assert_eq!(
        body["detail"][0]["msg"],
        "expected a date YYYY-MM-DD, got 'aaaa'"
    );
    let long = "c".repeat(256);
    let (status, body) = call(
        &db.url,
        Method::GET,
        &format!("/customers/{long}/stats?from=2024-09-03"),
    );
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["detail"][0]["loc"],
        serde_json::json!(["path", "customer_id"])
    );
}

#[test]
fn unknown_routes_and_wrong_methods_answer_json() {
    let db = TestDb::new(Backend::Sqlite);
    let (status, body) = call(&db.url, Method::GET, "/nope");
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, body) = call(
        &db.url,
        Method::POST,
        "/customers/cust_1/stats?from=2024-09-03",
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
}

#[test]
fn health_readiness_docs_and_the_openapi_document_are_served() {
    let db = TestDb::new(Backend::Sqlite);
    assert_eq!(call(&db.url, Method::GET, "/healthz").0, StatusCode::OK);
    let (status, body) = call(&db.url, Method::GET, "/readyz");
    assert_eq!(
        (status, body["database"].as_str()),
        (StatusCode::OK, Some("sqlite"))
    );
    let (status, openapi) = call(&db.url, Method::GET, "/openapi.json");
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/customers",
        "/customers/{customer_id}/stats",
        "/customers/{customer_id}/stats/summary",
        "/customers/{customer_id}/sla",
        "/export",
    ] {
        assert!(openapi["paths"][path].is_object(), "{path} is documented");
    }
    let (status, page) = call(&db.url, Method::GET, "/docs/");
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.as_str().unwrap().contains("swagger"),
        "Swagger UI is served from the binary"
    );
}

#[test]
fn an_unreachable_database_gives_503_as_json() {
    // Nothing listens on port 1: connections are refused at once.
    let url = "postgres://postgres@127.0.0.1:1/none";
    let response = block_on(async {
        let store = logstats::store::Store::connect_lazy(url).unwrap();
        let request = Request::get("/customers/cust_1/stats?from=2024-09-03")
            .body(Body::empty())
            .unwrap();
        router(AppState { store }).oneshot(request).await.unwrap()
    });
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn every_error_has_one_shape() {
    let db = TestDb::new(Backend::Sqlite);
    for (method, uri, status) in [
        (Method::GET, "/nope", StatusCode::NOT_FOUND),
        (Method::POST, "/customers", StatusCode::METHOD_NOT_ALLOWED),
        (
            Method::GET,
            "/customers/c/stats",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (got, body) = call(&db.url, method, uri);
        assert_eq!(got, status, "{uri}: {body}");
        assert_error_shape(&body);
        assert_eq!(
            body["detail"].as_array().unwrap().is_empty(),
            status != StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
    }
}

/// `{"error": code, "message": text, "detail": [...]}`, nothing else.
fn assert_error_shape(body: &serde_json::Value) {
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("an object: {body}"));
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["detail", "error", "message"], "{body}");
    assert!(
        body["error"].is_string() && body["message"].is_string(),
        "{body}"
    );
    assert!(body["detail"].is_array(), "{body}");
}

#[test]
fn a_database_that_cannot_serve_answers_503_on_every_data_route() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_database = dir.path().join("notes.db");
    std::fs::write(
        &not_a_database,
        "these are notes, not a database\n".repeat(200),
    )
    .unwrap();
    let mut urls = vec![format!("sqlite://{}", not_a_database.display())];
    if backends().contains(&Backend::Postgres) {
        urls.push("postgres://no_such_user_here@127.0.0.1:5432/postgres".to_string());
    }
    for url in urls {
        let server = Server::start(&url, &[]);
        for path in [
            "/customers",
            "/customers/cust_1/stats?from=2024-09-03",
            "/customers/cust_1/stats/summary?from=2024-09-03",
            "/customers/cust_1/sla?month=2024-09",
            "/export?from=2024-09-03",
            "/metrics",
            "/readyz",
        ] {
            let (status, body) = server.get(path);
            assert_eq!(status, 503, "{url} {path}: {body}");
            let body: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_error_shape(&body);
            assert_eq!(body["error"], "database_unavailable", "{url} {path}");
        }
    }
}

#[test]
fn walking_the_link_headers_lists_every_customer_exactly_once() {
    for backend in backends() {
        let db = TestDb::new(backend);
        let log = generated_log_of(db.dir(), "many.log", 12_000, 3, 2_500);
        ingest_paths(&db.url, &[&log], 2);
        let store = db.store();
        let everyone: Vec<String> = block_on(store.customers("", None, usize::MAX))
            .unwrap()
            .into_iter()
            .map(|c| c.customer_id)
            .collect();
        assert!(everyone.len() > 2_000, "{}", everyone.len());

        let mut listed = Vec::new();
        let mut next = Some("/customers?limit=333".to_string());
        let mut pages = 0;
        while let Some(uri) = next.take() {
            let (status, headers, body) = get_with_headers(&db.url, &uri);
            assert_eq!(status, StatusCode::OK, "{uri}: {body}");
            let page: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
            assert!(page.len() <= 333);
            listed.extend(
                page.iter()
                    .map(|c| c["customer_id"].as_str().unwrap().to_string()),
            );
            next = headers.get("link").map(|link| {
                let link = link.to_str().unwrap();
                let target = link
                    .strip_prefix('<')
                    .and_then(|rest| rest.split_once(">; rel=\"next\""))
                    .unwrap_or_else(|| panic!("a next link: {link}"))
                    .0;
                target.to_string()
            });
            pages += 1;
        }
        assert_eq!(
            listed, everyone,
            "{backend:?}: every customer once, in id order"
        );
        assert_eq!(pages, everyone.len().div_ceil(333), "{backend:?}");

        let (_, headers, body) = get_with_headers(&db.url, "/customers");
        let first: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        assert_eq!(first.len(), 1_000, "the default page");
        assert!(headers.get("link").is_some());
        for bad in [
            "/customers?limit=0",
            "/customers?limit=10001",
            "/customers?limit=many",
        ] {
            assert_eq!(
                get_with_headers(&db.url, bad).0,
                StatusCode::UNPROCESSABLE_ENTITY
            );
        }
    }
}

fn get_with_headers(url: &str, uri: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    block_on(async {
        let store = logstats::store::Store::connect(url).await.unwrap();
        let request = Request::builder().uri(uri).body(Body::empty()).unwrap();
        let response = router(AppState { store }).oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 10 << 20).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    })
}
