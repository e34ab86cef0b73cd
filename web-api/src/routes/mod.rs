//! The routes, one module per resource. Every route is registered through
//! [`utoipa_axum`], so the router and `/openapi.json` cannot disagree.

pub mod audit;
pub mod health;
pub mod ingest;
pub mod pipelines;
pub mod platform_tokens;
pub mod resource;
pub mod streams;
pub mod tenants;
pub mod tokens;
pub mod usage;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;

use crate::AppState;
use crate::openapi::ApiDoc;
use crate::problem::{ApiError, PROBLEM_JSON};

/// Every documented route of the API.
pub fn router() -> OpenApiRouter<AppState> {
    use utoipa::OpenApi;
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(tenants::router())
        .merge(tokens::router())
        .merge(platform_tokens::router())
        .merge(streams::router())
        .merge(ingest::router())
        .merge(pipelines::router())
        .merge(usage::router())
        .merge(audit::router())
        .merge(health::documented())
}

/// Answers unknown paths with a problem document.
pub async fn fallback(req: Request) -> ApiError {
    ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

/// Answers 503 `busy` (with `Retry-After`) when the request takes longer than
/// [`crate::Config::request_timeout`]; the handler is cancelled.
pub async fn deadline(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = state.config.request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => ApiError::Busy(format!(
            "the request took longer than {} ms",
            limit.as_millis()
        ))
        .into_response(),
    }
}

/// Marks an error response whose body is deliberate (e.g. `/readyz`'s 503 status document):
/// [`problem_for_bare_errors`] leaves it as it is.
#[derive(Debug, Clone, Copy)]
pub struct DeliberateBody;

/// Turns any error response that is not yet a problem document (e.g. axum's own 405 or 413)
/// into one, so every error the API answers is `application/problem+json`.
pub async fn problem_for_bare_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error())
        || res.extensions().get::<DeliberateBody>().is_some()
    {
        return res;
    }
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON));
    if is_problem {
        return res;
    }
    let err = match status {
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { limit: 0 },
        StatusCode::NOT_FOUND => ApiError::NotFound("not found".into()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::UnsupportedMediaType("unsupported media type".into())
        }
        s if s.is_server_error() => ApiError::Internal(format!("status {s}")),
        s => ApiError::BadRequest {
            detail: format!("request refused ({s})"),
            errors: vec![],
        },
    };
    let mut out = err.into_response();
    if status != out.status() {
        *out.status_mut() = status;
    }
    out
}

/// Checks a resource name: a DNS-1123 label of at most `max` characters (422 naming `field`).
pub fn check_name(field: &str, name: &str, max: usize) -> Result<(), ApiError> {
    match sluice_core::names::check_name(name, max) {
        Some(m) => Err(ApiError::field(field, m)),
        None => Ok(()),
    }
}
