//! Hardening middleware: load shedding, the URI length limit, panics, and a last net that turns
//! any error response no handler made (framework rejections, timeouts) into the API's JSON shape.

use std::any::Any;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::{BoxError, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::trace::TraceLayer;

use super::ApiOptions;
use super::error::ApiError;
use super::metrics;

/// Wraps every route (and the fallbacks) in the API's middleware. From the outside in: tracing,
/// metrics (they see every final status), gzip when asked, JSON for any error body, panics to 500,
/// the URI limit (414), load shedding over a global cap on requests in flight (503), the timeout
/// (503).
pub fn harden(routes: Router, options: &ApiOptions) -> Router {
    let max_uri_len = options.max_uri_len;
    // Added inside out: the last layer sees the request first.
    routes
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(overloaded))
                .load_shed()
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                    options.max_concurrent_requests,
                ))
                .timeout(options.request_timeout),
        )
        .layer(axum::middleware::from_fn(move |request, next| {
            limit_uri(max_uri_len, request, next)
        }))
        .layer(CatchPanicLayer::custom(panicked))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(CompressionLayer::new())
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(TraceLayer::new_for_http())
}

/// Load shedding's and the concurrency limit's errors as 503 JSON.
pub async fn overloaded(error: BoxError) -> ApiError {
    if error.is::<tower::load_shed::error::Overloaded>() {
        ApiError::Overloaded
    } else if error.is::<tower::timeout::error::Elapsed>() {
        ApiError::Timeout
    } else {
        ApiError::Internal(anyhow::anyhow!("middleware error: {error}"))
    }
}

/// Answers 414 to a URI (path and query) longer than `max_len` bytes.
pub async fn limit_uri(max_len: usize, request: Request, next: Next) -> Response {
    let len = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if len > max_len {
        return ApiError::UriTooLong.into_response();
    }
    next.run(request).await
}

/// A handler's panic as 500 JSON (the panic message is logged by the panic hook, never sent).
pub fn panicked(_payload: Box<dyn Any + Send + 'static>) -> Response {
    ApiError::Panic.into_response()
}

/// Gives every error response without a JSON body one (same shape as [`ApiError`]'s).
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(is_json);
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        let mut replaced = ApiError::Status(status).into_response();
        for name in [header::ALLOW, header::WWW_AUTHENTICATE, header::RETRY_AFTER] {
            if let Some(value) = response.headers().get(&name) {
                replaced.headers_mut().insert(name, value.clone());
            }
        }
        return replaced;
    }
    response
}

fn is_json(value: &HeaderValue) -> bool {
    value
        .to_str()
        .is_ok_and(|text| text.starts_with("application/json"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    async fn boom() -> &'static str {
        panic!("a bug")
    }

    fn app(options: &ApiOptions) -> Router {
        let routes = Router::new()
            .route("/panic", get(boom))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "done"
                }),
            )
            .route(
                "/plain-error",
                get(|| async { (StatusCode::BAD_REQUEST, "bad") }),
            );
        harden(routes, options)
    }

    async fn send(app: Router, uri: &str) -> (StatusCode, serde_json::Value) {
        let response = app
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    #[tokio::test]
    async fn a_panic_is_a_500_with_a_json_body() {
        let (status, body) = send(app(&ApiOptions::default()), "/panic").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"], "internal_error");
        assert!(!body.to_string().contains("a bug"), "{body}");
    }

    #[tokio::test]
    async fn a_request_over_the_timeout_is_a_503_with_a_json_body() {
        let options = ApiOptions {
            request_timeout: Duration::from_millis(50),
            ..ApiOptions::default()
        };
        let (status, body) = send(app(&options), "/slow").await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("timeout"))
        );
    }

    #[tokio::test]
    async fn requests_over_the_cap_are_shed_with_503_json() {
        let options = ApiOptions {
            max_concurrent_requests: 1,
            ..ApiOptions::default()
        };
        let app = app(&options);
        let first = tokio::spawn(send(app.clone(), "/slow"));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (status, body) = send(app.clone(), "/slow").await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("overloaded"))
        );
        assert_eq!(first.await.unwrap().0, StatusCode::OK);
        assert_eq!(
            send(app, "/slow").await.0,
            StatusCode::OK,
            "the permit is given back"
        );
    }

    #[tokio::test]
    async fn a_long_uri_is_a_414_and_plain_errors_become_json() {
        let options = ApiOptions::default();
        let long = format!("/slow?x={}", "a".repeat(options.max_uri_len));
        let (status, body) = send(app(&options), &long).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::URI_TOO_LONG, Some("uri_too_long"))
        );
        let (status, body) = send(app(&options), "/plain-error").await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("bad_request"))
        );
    }
}
