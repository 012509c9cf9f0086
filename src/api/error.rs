//! Every failure of the API as JSON, mapped to a status code in one place (docs/spec.md section 5).

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// What went wrong with a request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid query")]
    InvalidQuery(Vec<Detail>),
    #[error("no route for this path")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("no or unknown API key")]
    Unauthorized,
    #[error("this API key may not read this customer")]
    Forbidden,
    #[error("the URI is too long")]
    UriTooLong,
    #[error("too many requests in flight")]
    Overloaded,
    #[error("the request took too long")]
    Timeout,
    #[error("the handler panicked")]
    Panic,
    /// A failure produced outside the handlers (a framework rejection): its status, as JSON.
    #[error("{0}")]
    Status(StatusCode),
    #[error("the database is unavailable")]
    DatabaseUnavailable(anyhow::Error),
    #[error("internal error")]
    Internal(anyhow::Error),
}

/// One problem with one parameter: where (`["query","from"]`) and what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Detail {
    #[schema(example = json!(["query", "from"]))]
    pub loc: Vec<String>,
    #[schema(example = "expected a date YYYY-MM-DD, got 'aaaa'")]
    pub msg: String,
}

impl Detail {
    pub fn new(kind: &str, name: &str, msg: impl Into<String>) -> Detail {
        Detail {
            loc: vec![kind.to_string(), name.to_string()],
            msg: msg.into(),
        }
    }
}

/// The body of every error response, whatever the status: a code, a sentence, and the problems
/// with each parameter (a 422's; empty otherwise).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable code: `invalid_query`, `not_found`, `database_unavailable`...
    #[schema(example = "invalid_query")]
    pub error: &'static str,
    /// What went wrong, for people.
    #[schema(example = "invalid query parameters")]
    pub message: String,
    /// One entry per invalid parameter (422 only).
    pub detail: Vec<Detail>,
}

impl From<anyhow::Error> for ApiError {
    /// Storage errors are 503, whatever their cause (no connection, a database or user that does
    /// not exist, a file that is not a database, a schema it cannot migrate): the queries are
    /// fixed, so a failing one means the database cannot serve. Anything else is 500.
    fn from(error: anyhow::Error) -> ApiError {
        let unavailable = error.chain().any(|cause| {
            cause.is::<sqlx::Error>()
                || cause.is::<rusqlite::Error>()
                || cause.is::<crate::store::DatabaseDown>()
                || cause.is::<crate::store::DatabaseFileMissing>()
                || cause.is::<sqlx::migrate::MigrateError>()
                || cause.is::<std::io::Error>()
        });
        if unavailable {
            ApiError::DatabaseUnavailable(error)
        } else {
            ApiError::Internal(error)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error, detail, message) = match self {
            ApiError::InvalidQuery(detail) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_query",
                detail,
                "invalid query parameters",
            ),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                vec![],
                "no route for this path",
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                vec![],
                "method not allowed here",
            ),
            ApiError::Unauthorized => {
                let body = ErrorBody {
                    error: "unauthorized",
                    message: "a valid API key is required: Authorization: Bearer KEY".into(),
                    detail: vec![],
                };
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    Json(body),
                )
                    .into_response();
            }
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                vec![],
                "this API key may not read this customer",
            ),
            ApiError::UriTooLong => (
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                vec![],
                "the URI is too long",
            ),
            ApiError::Overloaded => (
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                vec![],
                "too many requests in flight; try again shortly",
            ),
            ApiError::Timeout => (
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                vec![],
                "the request took too long; try again shortly",
            ),
            ApiError::Panic => {
                tracing::error!("a request handler panicked");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    vec![],
                    "internal error",
                )
            }
            ApiError::Status(status) => (
                status,
                status_name(status),
                vec![],
                status.canonical_reason().unwrap_or("error"),
            ),
            ApiError::DatabaseUnavailable(cause) => {
                // The store logs the outage and the recovery once each.
                tracing::debug!("database unavailable: {cause:#}");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    vec![],
                    "the database is unavailable; try again shortly",
                )
            }
            ApiError::Internal(cause) => {
                tracing::error!("internal error: {cause:#}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    vec![],
                    "internal error",
                )
            }
        };
        let body = ErrorBody {
            error,
            message: message.to_string(),
            detail,
        };
        (status, Json(body)).into_response()
    }
}

/// The `error` code of a response that no handler made, by status.
fn status_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        406 => "not_acceptable",
        408 => "timeout",
        413 => "payload_too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        422 => "invalid_query",
        429 => "too_many_requests",
        503 => "unavailable",
        504 => "timeout",
        500..=599 => "internal_error",
        _ => "error",
    }
}
