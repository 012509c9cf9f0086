//! The HTTP API (SPEC.md section 5) on axum: thin handlers over [`Store`], JSON errors, the OpenAPI
//! document generated from the handlers, Swagger UI and the dashboard served from the binary.

mod dashboard;
mod error;
mod query;

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tower_http::compression::CompressionLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

pub use error::{ApiError, Detail, ErrorBody};
pub use query::DateRange;

use crate::stats::Statistics;
use crate::store::{CustomerSummary, DayRow, Store};

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Store,
}

/// The longest a request may take before it is answered with an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The whole application: API routes, docs, dashboard, JSON fallbacks and middleware.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/customers", get(customers))
        .route("/customers/{customer_id}/stats", get(daily_stats))
        .route("/customers/{customer_id}/stats/summary", get(range_summary))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
        .merge(dashboard::routes())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        .layer(CompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(TraceLayer::new_for_http())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "logstats",
        description = "Per-customer daily service statistics from API request logs."
    ),
    paths(daily_stats, range_summary, customers, healthz, readyz),
    components(schemas(DayRow, RangeSummary, CustomerSummary, Statistics, ErrorBody, Detail))
)]
pub struct ApiDoc;

/// The statistics of every day of a customer in a date range.
#[utoipa::path(
    get,
    path = "/customers/{customer_id}/stats",
    params(
        ("customer_id" = String, Path, description = "The customer, e.g. cust_1", example = "cust_1"),
        ("from" = String, Query, description = "First day (YYYY-MM-DD), inclusive", example = "2024-09-03"),
        ("to" = Option<String>, Query, description = "Last day (YYYY-MM-DD), inclusive; open when absent", example = "2024-10-02"),
    ),
    responses(
        (status = 200, description = "One object per day with data, by date ascending; [] when none", body = [DayRow]),
        (status = 422, description = "A missing or invalid date, or to < from", body = ErrorBody,
         example = json!({"error": "invalid_query", "detail": [{"loc": ["query", "from"], "msg": "expected a date YYYY-MM-DD, got 'aaaa'"}]})),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
async fn daily_stats(
    State(state): State<AppState>,
    Path(customer_id): Path<String>,
    range: DateRange,
) -> Result<Json<Vec<DayRow>>, ApiError> {
    query::check_customer(&customer_id)?;
    Ok(Json(
        state.store.days(&customer_id, range.from, range.to).await?,
    ))
}

/// One customer's statistics over a whole date range (percentiles exact over the range).
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RangeSummary {
    #[schema(example = "cust_1")]
    pub customer_id: String,
    pub from: chrono::NaiveDate,
    pub to: chrono::NaiveDate,
    #[serde(flatten)]
    pub statistics: Statistics,
}

/// The statistics of a customer over a date range, exact: day histograms are merged, never
/// daily percentiles averaged.
#[utoipa::path(
    get,
    path = "/customers/{customer_id}/stats/summary",
    params(
        ("customer_id" = String, Path, description = "The customer", example = "cust_1"),
        ("from" = String, Query, description = "First day (YYYY-MM-DD), inclusive", example = "2024-09-03"),
        ("to" = Option<String>, Query, description = "Last day (YYYY-MM-DD), inclusive", example = "2024-10-02"),
    ),
    responses(
        (status = 200, description = "The range's statistics (all zero when it has no data)", body = RangeSummary),
        (status = 422, description = "A missing or invalid date, or to < from", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
async fn range_summary(
    State(state): State<AppState>,
    Path(customer_id): Path<String>,
    range: DateRange,
) -> Result<Json<RangeSummary>, ApiError> {
    query::check_customer(&customer_id)?;
    let mut merged = state
        .store
        .range_state(&customer_id, range.from, range.to)
        .await?;
    Ok(Json(RangeSummary {
        customer_id,
        from: range.from,
        to: range.to,
        statistics: merged.statistics(),
    }))
}

/// Every customer with data: first and last day, total requests.
#[utoipa::path(
    get,
    path = "/customers",
    responses(
        (status = 200, description = "Customers by id", body = [CustomerSummary]),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
async fn customers(State(state): State<AppState>) -> Result<Json<Vec<CustomerSummary>>, ApiError> {
    Ok(Json(state.store.customers().await?))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "Alive", body = Object, example = json!({"status": "ok"}))))]
async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: the database answers.
#[utoipa::path(
    get,
    path = "/readyz",
    responses(
        (status = 200, description = "Ready", body = Object, example = json!({"status": "ok", "database": "sqlite"})),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
async fn readyz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    state
        .store
        .ping()
        .await
        .map_err(ApiError::DatabaseUnavailable)?;
    Ok(Json(
        serde_json::json!({"status": "ok", "database": state.store.backend_name()}),
    ))
}
