//! `GET /metrics`: Prometheus text. Request counts by route and status and a latency histogram
//! come from a middleware; the ingestion figures are read from the database at each scrape.
//!
//! Routes are labelled by their matched pattern (`/customers/{customer_id}/stats`), never by the
//! raw URI, so customer ids never become labels; methods outside the standard nine count as
//! `other`. The label set stays small whatever clients send. The recorder is
//! installed once per process (tests build many routers).

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::Ctx;
use super::error::ApiError;

const REQUESTS: &str = "logstats_http_requests_total";
const LATENCY: &str = "logstats_http_request_duration_seconds";
const LATENCY_BUCKETS: &[f64] = &[
    0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's Prometheus recorder, installed on first use.
fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = || {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(LATENCY.to_string()), LATENCY_BUCKETS)
                .expect("the latency buckets are not empty")
        };
        metrics::describe_counter!(
            REQUESTS,
            "HTTP requests answered, by route, method and status"
        );
        metrics::describe_histogram!(
            LATENCY,
            metrics::Unit::Seconds,
            "HTTP request latency, by route"
        );
        builder().install_recorder().unwrap_or_else(|error| {
            // Another recorder is installed (an embedding program's): keep serving this endpoint.
            tracing::warn!("metrics recorder not installed: {error}");
            builder().build_recorder().handle()
        })
    })
}

/// Makes sure the recorder exists before the first request is counted.
pub fn install() {
    handle();
}

/// Counts every answer and its latency by matched route (`unmatched` for 404s) and status.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = method_label(request.method());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(REQUESTS, "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!(LATENCY, "route" => route).record(started.elapsed().as_secs_f64());
    response
}

/// The method as a label: the standard methods by name, any other as `other`, so that invented
/// methods cannot add series without end.
fn method_label(method: &Method) -> &'static str {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
        Method::PATCH,
        Method::TRACE,
        Method::CONNECT,
    ];
    STANDARD
        .iter()
        .find(|standard| *standard == method)
        .map_or("other", Method::as_str)
}

/// The Prometheus text of every metric, with the database's figures read now.
#[utoipa::path(
    get,
    path = "/metrics",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain",
         body = String, example = "logstats_stored_requests_total 1000000"),
        (status = 503, description = "The database is unavailable", body = super::ErrorBody),
    )
)]
pub async fn scrape(State(ctx): State<Ctx>) -> Result<Response, ApiError> {
    let handle = handle();
    handle.run_upkeep();
    let totals = ctx.store.totals().await?;
    metrics::gauge!("logstats_stored_requests_total").set(totals.requests as f64);
    metrics::gauge!("logstats_stored_days").set(totals.days as f64);
    metrics::gauge!("logstats_customers").set(totals.customers as f64);
    metrics::gauge!("logstats_ingested_bytes_total").set(totals.ingested_bytes as f64);
    metrics::gauge!("logstats_ingested_files").set(totals.files as f64);
    metrics::gauge!("logstats_ingested_lines_total").set(totals.ingested_lines as f64);
    metrics::gauge!("logstats_rejected_lines_total").set(totals.rejected_lines as f64);
    metrics::gauge!("logstats_last_commit_timestamp_seconds").set(totals.last_commit_unix);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response())
}
