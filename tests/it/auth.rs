//! Tenants kept apart: the whole key matrix (none / wrong / another customer's / own / operator)
//! on every `/customers` route, through `router_with(state, options)` and `oneshot`.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use logstats::api::{ApiKeys, ApiOptions, AppState, router_with};
use tower::ServiceExt;

use crate::common::*;

const KEYS: &str = r#"
"key-of-cust-1" = "cust_1"
"key-of-cust-2" = "cust_2"
"operator-key" = "*"
"#;

/// One request with an optional `Authorization` header to a router with [`KEYS`].
fn call(url: &str, uri: &str, authorization: Option<&str>) -> (StatusCode, serde_json::Value) {
    block_on(async {
        let store = logstats::store::Store::connect(url).await.unwrap();
        let options = ApiOptions {
            api_keys: Some(ApiKeys::parse(KEYS).unwrap()),
            ..ApiOptions::default()
        };
        let mut request = Request::get(uri);
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        let response = router_with(AppState { store }, options)
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 10 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).expect("a JSON body"))
    })
}

fn ingested() -> TestDb {
    let db = TestDb::new(Backend::Sqlite);
    let log = generated_log(db.dir(), "a.log", 4_000, 5);
    ingest_paths(&db.url, &[&log], 1);
    db
}

#[test]
fn every_customer_route_answers_the_key_matrix() {
    let db = ingested();
    let from = first_generated_day();
    let routes = [
        format!("/customers/cust_1/stats?from={from}"),
        format!("/customers/cust_1/stats/summary?from={from}"),
    ];
    for uri in &routes {
        for (authorization, expected, error) in [
            (None, StatusCode::UNAUTHORIZED, "unauthorized"),
            (
                Some("Bearer nope"),
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            ),
            (
                Some("key-of-cust-1"),
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            ),
            (
                Some("Basic key-of-cust-1"),
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            ),
            (
                Some("Bearer key-of-cust-2"),
                StatusCode::FORBIDDEN,
                "forbidden",
            ),
        ] {
            let (status, body) = call(&db.url, uri, authorization);
            assert_eq!(status, expected, "{uri} with {authorization:?}");
            assert_eq!(body["error"], error, "{uri} with {authorization:?}");
            let text = body.to_string();
            assert!(
                !text.contains("total_requests") && !text.contains("cust_1"),
                "no data leaks: {text}"
            );
        }
        for authorization in [
            "Bearer key-of-cust-1",
            "Bearer operator-key",
            "bearer key-of-cust-1",
        ] {
            let (status, body) = call(&db.url, uri, Some(authorization));
            assert_eq!(status, StatusCode::OK, "{uri} with {authorization}");
            let first = if body.is_array() { &body[0] } else { &body };
            assert_eq!(first["customer_id"], "cust_1", "{uri} with {authorization}");
        }
    }
}

#[test]
fn the_customer_list_shows_only_what_the_key_may_read() {
    let db = ingested();
    let ids = |body: &serde_json::Value| -> Vec<String> {
        body.as_array()
            .unwrap()
            .iter()
            .map(|c| c["customer_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        call(&db.url, "/customers", None).0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&db.url, "/customers", Some("Bearer wrong")).0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = call(&db.url, "/customers", Some("Bearer key-of-cust-2"));
    assert_eq!(
        (status, ids(&body)),
        (StatusCode::OK, vec!["cust_2".to_string()])
    );
    let (status, body) = call(&db.url, "/customers", Some("Bearer operator-key"));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&body).len(), 20);
}

#[test]
fn a_401_says_how_to_authenticate_and_other_customers_look_the_same_whether_they_exist_or_not() {
    let db = ingested();
    let response = block_on(async {
        let store = logstats::store::Store::connect(&db.url).await.unwrap();
        let options = ApiOptions {
            api_keys: Some(ApiKeys::parse(KEYS).unwrap()),
            ..ApiOptions::default()
        };
        router_with(AppState { store }, options)
            .oneshot(Request::get("/customers").body(Body::empty()).unwrap())
            .await
            .unwrap()
    });
    assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    let existing = call(
        &db.url,
        "/customers/cust_3/stats?from=2024-01-01",
        Some("Bearer key-of-cust-1"),
    );
    let missing = call(
        &db.url,
        "/customers/nobody/stats?from=2024-01-01",
        Some("Bearer key-of-cust-1"),
    );
    assert_eq!(existing, missing);
    assert_eq!(existing.0, StatusCode::FORBIDDEN);
}

#[test]
fn health_docs_and_metrics_need_no_key() {
    let db = TestDb::new(Backend::Sqlite);
    for uri in ["/healthz", "/readyz", "/openapi.json"] {
        assert_eq!(call(&db.url, uri, None).0, StatusCode::OK, "{uri}");
    }
}
