//! The HTTP API (docs/spec.md section 5) on axum: thin handlers over [`Store`], JSON errors for every
//! failure, tenants kept apart by API keys, a cache of fresh answers, Prometheus metrics, the
//! OpenAPI document generated from the handlers, Swagger UI and the dashboard served from the
//! binary.

mod auth;
mod by_resource;
mod cache;
mod dashboard;
mod days_json;
mod error;
mod export;
mod handlers;
mod layers;
mod metrics;
mod query;
mod revalidate;
mod schema;
mod server;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

pub use auth::{ApiKeys, Grant};
pub use error::{ApiError, Detail, ErrorBody};
pub use handlers::RangeSummary;
pub use query::DateRange;
pub use server::{ConnectionLimits, raise_open_file_limit, serve as serve_connections};

use crate::store::Store;

/// What the API serves from: the store.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Store,
}

/// How the API is set up beyond its store (`Default`: open, no keys).
#[derive(Clone, Debug)]
pub struct ApiOptions {
    /// With keys, every `/customers...` request needs `Authorization: Bearer KEY`.
    pub api_keys: Option<ApiKeys>,
    /// The longest a request may take before it is answered 503.
    pub request_timeout: Duration,
    /// Requests handled at once; more are answered 503 at once (load shedding), never queued.
    pub max_concurrent_requests: usize,
    /// The longest URI (path and query) accepted; longer ones get 414.
    pub max_uri_len: usize,
    /// How long a stats answer is reused (capped at 1 s, the freshness promise; zero: never).
    pub cache_ttl: Duration,
}

impl Default for ApiOptions {
    fn default() -> ApiOptions {
        ApiOptions {
            api_keys: None,
            request_timeout: Duration::from_secs(10),
            max_concurrent_requests: 1024,
            max_uri_len: 8 * 1024,
            cache_ttl: cache::TTL,
        }
    }
}

/// What every handler shares: the store, the keys (when the API is closed) and the answer cache.
#[derive(Clone, Debug)]
pub(crate) struct Ctx {
    store: Store,
    keys: Option<Arc<ApiKeys>>,
    cache: Arc<cache::AnswerCache>,
    /// How long a request may take; an export's pages are each held to it.
    request_timeout: Duration,
}

/// The whole application, open (no API keys): see [`router_with`].
pub fn router(state: AppState) -> Router {
    router_with(state, ApiOptions::default())
}

/// The whole application: API routes, metrics, docs, dashboard, JSON fallbacks and middleware.
pub fn router_with(state: AppState, options: ApiOptions) -> Router {
    metrics::install();
    let ctx = Ctx {
        store: state.store,
        keys: options.api_keys.clone().map(Arc::new),
        cache: Arc::new(cache::AnswerCache::new(options.cache_ttl)),
        request_timeout: options.request_timeout,
    };
    let data = Router::new()
        .route("/customers", get(handlers::customers))
        .route("/customers/{customer_id}/stats", get(handlers::daily_stats))
        .route(
            "/customers/{customer_id}/stats/summary",
            get(handlers::range_summary),
        )
        .route("/customers/{customer_id}/sla", get(handlers::monthly_sla))
        .route_layer(axum::middleware::from_fn(revalidate::revalidate));
    let routes = Router::new()
        .merge(data)
        // Streamed: outside revalidation, which would hold the whole body to tag it.
        .route("/export", get(export::export))
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(metrics::scrape))
        .merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
        .merge(dashboard::routes())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(ctx);
    layers::harden(routes, &options)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "logstats",
        description = "Per-customer daily service statistics from API request logs.\n\n\
            When the server runs with `--api-keys`, every `/customers` route and `/export` need \
            `Authorization: Bearer KEY`: a customer's key reads that customer only, an operator \
            key reads all."
    ),
    paths(
        handlers::daily_stats,
        handlers::range_summary,
        handlers::customers,
        handlers::monthly_sla,
        export::export,
        handlers::healthz,
        handlers::readyz,
        metrics::scrape
    ),
    components(schemas(
        schema::DayRow,
        RangeSummary,
        schema::ResourceSummary,
        schema::SummaryAnswer,
        schema::CustomerSummary,
        schema::Statistics,
        schema::MonthlySla,
        schema::WorstDay,
        ErrorBody,
        Detail
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// Declares the optional bearer-key scheme.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}
