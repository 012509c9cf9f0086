//! The route handlers: extract (key, customer, range), ask the cache or the store, answer JSON.
//! No logic beyond that: validation and access live in extractors, SQL in `store`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Json, response};
use serde::Serialize;

use super::Ctx;
use super::auth::{Access, Customer, Grant};
use super::by_resource;
use super::cache::{Key, Kind};
use super::error::{ApiError, ErrorBody};
use super::query::{ByResource, CustomerPage, DateRange, SlaQuery};
use crate::sla::MonthlySla;
use crate::stats::Statistics;

/// A JSON body already serialized.
fn json_bytes(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The cached answer for `key`, or the one `compute` makes (and the cache keeps).
async fn cached<Q: Future<Output = Result<Bytes, ApiError>>>(
    ctx: &Ctx,
    key: &Key,
    compute: impl FnOnce() -> Q,
) -> Result<Response, ApiError> {
    Ok(json_bytes(
        ctx.cache.get_or_compute(key.clone(), compute).await?,
    ))
}

/// Serializes straight into the bytes the response will send.
fn to_bytes<T: Serialize>(value: &T, capacity: usize) -> Result<Bytes, ApiError> {
    let mut buffer = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut buffer, value).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Bytes::from(buffer))
}

/// The statistics of every day of a customer in a date range.
#[utoipa::path(
    get,
    path = "/customers/{customer_id}/stats",
    params(
        ("customer_id" = String, Path, description = "The customer (1 to 255 bytes), e.g. cust_1", example = "cust_1", min_length = 1, max_length = 255),
        ("from" = chrono::NaiveDate, Query, description = "First day (YYYY-MM-DD), inclusive", example = "2024-09-03"),
        ("to" = Option<chrono::NaiveDate>, Query, description = "Last day (YYYY-MM-DD), inclusive; open when absent", example = "2024-10-02"),
        ("group_by" = Option<String>, Query, description = "`resource`: one object per (day, resource), by date then resource, each with its `resource`", example = "resource", pattern = "^resource$"),
        ("resource" = Option<String>, Query, description = "Only this resource (implies group_by=resource): a path, normalised as ingestion does (`/users/7` is `/users/{id}`), or `(other)`", example = "/api/v1/resource1"),
    ),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "One object per day with data, by date ascending (with group_by=resource: per day and resource); [] when none", body = [super::schema::DayRow],
         headers(("ETag" = String, description = "A weak tag of the body; send it back in If-None-Match to get 304 while it holds"),
                 ("Cache-Control" = String, description = "no-cache: keep, but revalidate every time"))),
        (status = 304, description = "Not modified: If-None-Match names the current ETag (no body)"),
        (status = 401, description = "API keys are configured and the request has no known key", body = ErrorBody),
        (status = 403, description = "The key belongs to another customer", body = ErrorBody),
        (status = 422, description = "A missing or invalid date, to < from, or a customer id over 255 bytes", body = ErrorBody,
         example = json!({"error": "invalid_query", "detail": [{"loc": ["query", "from"], "msg": "expected a date YYYY-MM-DD, got 'aaaa'"}]})),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
pub async fn daily_stats(
    State(ctx): State<Ctx>,
    Customer(customer): Customer,
    range: DateRange,
    by: ByResource,
) -> Result<Response, ApiError> {
    let key = Key::new(Kind::Days, customer, range).broken_down(by);
    cached(&ctx, &key, || async {
        if key.by.grouped {
            let states = ctx
                .store
                .day_states(&key.customer, key.from, key.to)
                .await?;
            let rows = by_resource::days(&key.customer, states, key.by.only.as_deref());
            return to_bytes(&rows, 64 + rows.len() * 640);
        }
        let rows = ctx.store.days(&key.customer, key.from, key.to).await?;
        Ok(Bytes::from(super::days_json::days_json(&rows)))
    })
    .await
}

/// One customer's statistics over a whole date range (percentiles exact over the range).
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RangeSummary {
    #[schema(example = "cust_1")]
    pub customer_id: String,
    pub from: chrono::NaiveDate,
    /// The last day asked for; absent when the request gave no `to` (an open range).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<chrono::NaiveDate>,
    #[serde(flatten)]
    #[schema(value_type = super::schema::Statistics)]
    pub statistics: Statistics,
}

/// The statistics of a customer over a date range, exact: day histograms are merged, never
/// daily percentiles averaged.
#[utoipa::path(
    get,
    path = "/customers/{customer_id}/stats/summary",
    params(
        ("customer_id" = String, Path, description = "The customer (1 to 255 bytes)", example = "cust_1", min_length = 1, max_length = 255),
        ("from" = chrono::NaiveDate, Query, description = "First day (YYYY-MM-DD), inclusive", example = "2024-09-03"),
        ("to" = Option<chrono::NaiveDate>, Query, description = "Last day (YYYY-MM-DD), inclusive", example = "2024-10-02"),
        ("group_by" = Option<String>, Query, description = "`resource`: an array of one summary per resource over the range, by resource", example = "resource", pattern = "^resource$"),
        ("resource" = Option<String>, Query, description = "Only this resource (implies group_by=resource): a path, normalised as ingestion does, or `(other)`", example = "/api/v1/resource1"),
    ),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "The range's statistics (all zero when it has no data); with group_by=resource an array, one per resource ([] when no data)", body = super::schema::SummaryAnswer,
         headers(("ETag" = String, description = "A weak tag of the body; send it back in If-None-Match to get 304 while it holds"),
                 ("Cache-Control" = String, description = "no-cache: keep, but revalidate every time"))),
        (status = 304, description = "Not modified: If-None-Match names the current ETag (no body)"),
        (status = 401, description = "API keys are configured and the request has no known key", body = ErrorBody),
        (status = 403, description = "The key belongs to another customer", body = ErrorBody),
        (status = 422, description = "A missing or invalid date, to < from, or a customer id over 255 bytes", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
pub async fn range_summary(
    State(ctx): State<Ctx>,
    Customer(customer): Customer,
    range: DateRange,
    by: ByResource,
) -> Result<Response, ApiError> {
    let key = Key::new(Kind::Summary, customer, range).broken_down(by);
    cached(&ctx, &key, || async {
        if key.by.grouped {
            let states = ctx
                .store
                .day_states(&key.customer, key.from, key.to)
                .await?;
            let range = (key.from, (!key.open).then_some(key.to));
            let only = key.by.only.as_deref();
            let summaries = by_resource::summaries(&key.customer, range, states, only);
            return to_bytes(&summaries, 64 + summaries.len() * 700);
        }
        let mut merged = ctx
            .store
            .range_state(&key.customer, key.from, key.to)
            .await?;
        let summary = RangeSummary {
            customer_id: key.customer.clone(),
            from: key.from,
            to: (!key.open).then_some(key.to),
            statistics: merged.statistics(),
        };
        to_bytes(&summary, 640)
    })
    .await
}

/// A customer's availability and uptime over a calendar month against an objective, with the
/// error budget and the worst day: computed from the month's stored counts and exact duration
/// sums, never from daily percentages.
#[utoipa::path(
    get,
    path = "/customers/{customer_id}/sla",
    params(
        ("customer_id" = String, Path, description = "The customer (1 to 255 bytes)", example = "cust_1", min_length = 1, max_length = 255),
        ("month" = String, Query, description = "The calendar month, YYYY-MM (0001-01 to 9999-12)", example = "2024-09", pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])$"),
        ("objective" = Option<String>, Query, description = "The availability objective in percent, above 0 and below 100, at most 9 decimals (default 99.9)", example = "99.9", pattern = r"^[0-9]{1,2}(\.[0-9]{1,9})?$"),
    ),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "The month's SLA (zeros and a null worst_day when it has no data)", body = super::schema::MonthlySla,
         headers(("ETag" = String, description = "A weak tag of the body; send it back in If-None-Match to get 304 while it holds"),
                 ("Cache-Control" = String, description = "no-cache: keep, but revalidate every time"))),
        (status = 304, description = "Not modified: If-None-Match names the current ETag (no body)"),
        (status = 401, description = "API keys are configured and the request has no known key", body = ErrorBody),
        (status = 403, description = "The key belongs to another customer", body = ErrorBody),
        (status = 422, description = "A missing or invalid month, an objective not above 0 and below 100, or a customer id over 255 bytes", body = ErrorBody,
         example = json!({"error": "invalid_query", "message": "invalid query parameters", "detail": [{"loc": ["query", "month"], "msg": "expected a month YYYY-MM from 0001-01 to 9999-12, got '2024-13'"}]})),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
pub async fn monthly_sla(
    State(ctx): State<Ctx>,
    Customer(customer): Customer,
    query: SlaQuery,
) -> Result<Response, ApiError> {
    let SlaQuery { month, objective } = query;
    let month_range = DateRange {
        from: month.first_day(),
        to: month.last_day(),
        open: false,
    };
    let kind = Kind::Sla {
        objective: objective.key(),
    };
    let key = Key::new(kind, customer, month_range);
    cached(&ctx, &key, || async {
        let days = ctx
            .store
            .day_totals(&key.customer, key.from, key.to)
            .await?;
        let sla = MonthlySla::compute(key.customer.clone(), month, objective, &days);
        to_bytes(&sla, 640)
    })
    .await
}

/// The customers with data that the request's key may read, by id, a page at a time: first and
/// last day, total requests. While more remain, a `Link` header gives the next page.
#[utoipa::path(
    get,
    path = "/customers",
    params(
        ("limit" = Option<usize>, Query, description = "Customers per page, 1 to 10000 (default 1000)", minimum = 1, maximum = 10000, example = 1000),
        ("after" = Option<String>, Query, description = "Only ids after this one (the last id of the previous page)", max_length = 255, example = "cust_1"),
    ),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "Customers by id (with a customer's key: that customer only)", body = [super::schema::CustomerSummary],
         headers(("Link" = String, description = "`</customers?limit=N&after=ID>; rel=\"next\"` while more customers remain (RFC 8288)"),
                 ("ETag" = String, description = "A weak tag of the body; send it back in If-None-Match to get 304 while it holds"),
                 ("Cache-Control" = String, description = "no-cache: keep, but revalidate every time"))),
        (status = 304, description = "Not modified: If-None-Match names the current ETag (no body)"),
        (status = 401, description = "API keys are configured and the request has no known key", body = ErrorBody),
        (status = 422, description = "A limit outside 1..10000 or an id over 255 bytes", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
pub async fn customers(
    State(ctx): State<Ctx>,
    Access(grant): Access,
    page: CustomerPage,
) -> Result<Response, ApiError> {
    let only = match &grant {
        Grant::All => None,
        Grant::Customer(own) => Some(own.as_str()),
    };
    let after = page.after.as_deref().unwrap_or("");
    // One more than asked: whether it comes back says whether a next page exists.
    let mut customers = ctx.store.customers(after, only, page.limit + 1).await?;
    let next = (customers.len() > page.limit).then(|| {
        customers.truncate(page.limit);
        let last = &customers[page.limit - 1].customer_id;
        format!("</customers?{}>; rel=\"next\"", page.next_query(last))
    });
    let mut response = Json(customers).into_response();
    if let Some(link) = next {
        let value = header::HeaderValue::from_str(&link)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("a Link header: {e}")))?;
        response.headers_mut().insert(header::LINK, value);
    }
    Ok(response)
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "Alive", body = Object, example = json!({"status": "ok"}))))]
pub async fn healthz() -> impl IntoResponse {
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
pub async fn readyz(State(ctx): State<Ctx>) -> Result<impl IntoResponse, ApiError> {
    ctx.store
        .ping()
        .await
        .map_err(ApiError::DatabaseUnavailable)?;
    Ok(response::Json(
        serde_json::json!({"status": "ok", "database": ctx.store.backend_name()}),
    ))
}
