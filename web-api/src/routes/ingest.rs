//! `POST /v1/tenants/{tenant}/streams/{stream}/events`: producers' events into a stream.
//!
//! The body is one JSON event or a JSON array of events (`application/json`), or NDJSON
//! (`application/x-ndjson`, one event per line, read incrementally as it arrives). Each event
//! must be a JSON object and, when the stream has a JSON Schema, satisfy it; refused events are
//! reported by index and the others go on. Then, in this order:
//!
//! 1. the request's whole cost (every event received, accepted or rejected, and every byte of
//!    the body) is reserved in the tenant's token bucket — over the limit, `429` with
//!    `Retry-After` and nothing is written;
//! 2. the accepted events are published to the stream's subject on JetStream, in windows of
//!    [`Config::ingest_ack_window`](crate::Config::ingest_ack_window) publishes whose
//!    acknowledgements are awaited before the next window;
//! 3. only then `202` with `{"accepted": N, "rejected": [{"index", "error"}], "rejectedCount": M}`.
//!
//! Bounds, so that no request can hold the API or other tenants' requests: at most
//! `ingest_max_events` events (`413 too-many-events`, nothing written), at most
//! `ingest_max_rejections` rejection records (all counted in `rejectedCount`), a deadline of
//! `ingest_timeout` for the whole request and at most `ingest_permit_timeout` of waiting for a
//! broker publish permit (`503 ingest-unavailable` with `Retry-After`). A request refused
//! while it was read is still charged to the tenant's bucket for what was read.
//!
//! When the broker fails, `503 broker-unavailable`: some events may have been stored, so the
//! client retries the whole request and may create duplicates (at-least-once).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::{Produce, TenantAccess};
use crate::body::media_type;
use crate::ingest::accept::Request;
pub use crate::ingest::accept::{Format, IngestResult, RETRY_AFTER_SECS};
use crate::path::ValidPath;
use crate::problem::{ApiError, Problem};

/// Media type of NDJSON bodies.
pub const NDJSON: &str = "application/x-ndjson";

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(ingest_events))
}

/// How the body holds its events, from its `Content-Type` (415 for any other).
fn format_of(headers: &HeaderMap) -> Result<Format, ApiError> {
    match media_type(headers).as_deref() {
        Some("application/json") => Ok(Format::Json),
        Some(NDJSON) => Ok(Format::Ndjson),
        Some(m) => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type {m:?} is not accepted here; send application/json or {NDJSON}"
        ))),
        None => Err(ApiError::UnsupportedMediaType(format!(
            "missing Content-Type; send application/json or {NDJSON}"
        ))),
    }
}

/// Ingests events into a stream: one JSON event, a JSON array, or NDJSON. Answers `202` only
/// once the broker acknowledged every accepted event; `413` over the body or event limit,
/// having written nothing; `429` (with `Retry-After`) over the tenant's ingest rate, having
/// written nothing; `507` when the broker refused events because the tenant's stream storage
/// quota is used up (events before the refusal may be stored); `503` when the broker failed or
/// the request could not finish in time — retry the request: its events may then be stored
/// twice (at-least-once).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/streams/{stream}/events", tag = "ingest",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant name"),
        ("stream" = String, Path, description = "Stream name")),
    request_body(description = "One JSON object, a JSON array of objects, or NDJSON (one \
        object per line)",
        content(("application/json"), ("application/x-ndjson"))),
    responses(
        (status = 202, description = "Accepted events are stored on the broker", body = IngestResult),
        (status = 400, description = "A path parameter is not a valid name (`invalid-name`)",
            body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the ingest size limit, more events than the \
            per-request limit (`too-many-events`), or batch over the tenant's burst; nothing \
            was written", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the tenant's ingest rate; nothing was written",
            body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The broker failed, or the request could not get a \
            publish permit or finish within the ingest deadline (`ingest-unavailable`); retry \
            (duplicates possible)",
            body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 507, description = "The broker refused events: the tenant's stream storage \
            quota (`spec.quota.storage`) is used up (`storage-quota-exceeded`); events before \
            the refusal may be stored",
            body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn ingest_events(
    State(state): State<AppState>,
    access: TenantAccess<Produce>,
    ValidPath((_tenant, stream)): ValidPath<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let format = format_of(&headers)?;
    let limit = state.config.ingest_max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let request = Request {
        tenant: &access.tenant,
        stream: &stream,
        format,
        partition_key: crate::ingest::kafka::header_key(&headers)?,
        body,
    };
    let result = state
        .ingest
        .accept(&state.kube, &state.metrics, request)
        .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(result)).into_response())
}
