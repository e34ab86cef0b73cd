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
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, timeout, timeout_at};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::{Produce, TenantAccess};
use crate::ingest::Target;
use crate::ingest::limiter::{Refusal, retry_after_secs};
use crate::ingest::parse::{Batch, Checker, Limits, NdjsonReader, ReadError, Rejected, read_json};
use crate::path::ValidPath;
use crate::problem::{ApiError, Problem};

/// Media type of NDJSON bodies.
pub const NDJSON: &str = "application/x-ndjson";

/// `Retry-After` of `ingest-unavailable` answers, in seconds.
pub const RETRY_AFTER_SECS: u64 = 1;

/// The answer to an ingest request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngestResult {
    /// Events accepted and acknowledged by the broker.
    pub accepted: usize,
    /// Events refused (not valid JSON objects, or not matching the stream's schema), by
    /// their position in the request: the first ones, up to the API's limit on rejection
    /// records.
    pub rejected: Vec<Rejected>,
    /// How many events were refused, listed in `rejected` or not.
    pub rejected_count: usize,
}

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(ingest_events))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Ndjson,
}

fn format_of(headers: &HeaderMap) -> Result<Format, ApiError> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    match media.as_deref() {
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

/// Reads and checks the body's events into `batch`, counting the bytes read in `received`;
/// stops with 413 as soon as the body is over `limit` bytes or holds too many events.
async fn read_events(
    body: Body,
    format: Format,
    target: &Target,
    limit: usize,
    batch: &mut Batch,
    received: &mut u64,
) -> Result<(), ApiError> {
    let checker = Checker::new(target.schema.as_deref());
    let mut stream = body.into_data_stream();
    let too_large = || ApiError::PayloadTooLarge { limit };
    let read_error = |e: axum::Error| ApiError::MalformedJson {
        detail: format!("cannot read the request body: {e}"),
    };
    let mut take = |chunk: &Bytes| {
        *received += chunk.len() as u64;
        if *received > limit as u64 {
            Err(too_large())
        } else {
            Ok(())
        }
    };
    match format {
        Format::Ndjson => {
            let mut reader = NdjsonReader::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(read_error)?;
                take(&chunk)?;
                reader.push(chunk, batch, &checker).map_err(refused)?;
            }
            reader.finish(batch, &checker).map_err(refused)?;
        }
        Format::Json => {
            let mut buf = BytesMut::new();
            let mut single: Option<Bytes> = None;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(read_error)?;
                take(&chunk)?;
                // A body in one chunk is used as it is, without a copy.
                match (single.take(), buf.is_empty()) {
                    (None, true) => single = Some(chunk),
                    (Some(first), _) => {
                        buf.extend_from_slice(&first);
                        buf.extend_from_slice(&chunk);
                    }
                    (None, false) => buf.extend_from_slice(&chunk),
                }
            }
            let body = single.unwrap_or_else(|| buf.freeze());
            read_json(&body, batch, &checker).map_err(refused)?;
        }
    }
    Ok(())
}

/// The answer to a body that cannot be read into a batch.
fn refused(e: ReadError) -> ApiError {
    match e {
        ReadError::TooManyEvents { max } => ApiError::TooManyEvents { limit: max },
        ReadError::Malformed(e) => ApiError::MalformedJson {
            detail: format!("request body is not valid JSON: {e}"),
        },
    }
}

/// Why events were not all published.
#[derive(Debug)]
enum PublishFailure {
    /// No publish permit within the permit timeout: the broker client has as many
    /// acknowledgements outstanding as it allows.
    Busy,
    /// The broker refused or failed.
    Broker(String),
}

/// Publishes every event, in windows of `window` publishes whose acknowledgements are
/// awaited before the next window, so that one request never holds more than `window`
/// publish permits; a publish waits at most `permit_timeout` for its permit.
async fn publish(
    js: &async_nats::jetstream::Context,
    subject: &async_nats::Subject,
    events: &[Bytes],
    window: usize,
    permit_timeout: std::time::Duration,
) -> Result<(), PublishFailure> {
    use async_nats::jetstream::context::PublishErrorKind;
    for events in events.chunks(window.max(1)) {
        let mut acks = Vec::with_capacity(events.len());
        for e in events {
            let ack = match timeout(permit_timeout, js.publish(subject.clone(), e.clone())).await {
                Err(_) => return Err(PublishFailure::Busy),
                Ok(Err(e)) if e.kind() == PublishErrorKind::MaxAckPending => {
                    return Err(PublishFailure::Busy);
                }
                Ok(Err(e)) => return Err(PublishFailure::Broker(format!("publish: {e}"))),
                Ok(Ok(ack)) => ack,
            };
            acks.push(ack);
        }
        for ack in acks {
            ack.await
                .map_err(|e| PublishFailure::Broker(format!("acknowledgement: {e}")))?;
        }
    }
    Ok(())
}

/// The 503 of a request past its deadline, `doing` what.
fn deadline_passed(timeout: std::time::Duration, doing: &str) -> ApiError {
    ApiError::IngestUnavailable {
        detail: format!(
            "the request did not finish within the ingest deadline of {} s ({doing}); retry \
             after the Retry-After delay",
            timeout.as_secs_f64()
        ),
        retry_after_secs: RETRY_AFTER_SECS,
    }
}

/// The answer to a reservation the tenant's bucket refused.
fn rate_limited(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::LargerThanBurst {
            dimension,
            requested,
            capacity,
        } => ApiError::BatchTooLarge(format!(
            "this request needs {requested} {dimension} at once but the tenant's ingest \
             burst allows {capacity} (per API replica); send smaller batches"
        )),
        Refusal::Wait { wait, dimension } => ApiError::RateLimited {
            detail: format!(
                "over the tenant's ingest rate ({dimension}); nothing of this request \
                 was written; retry after the Retry-After delay"
            ),
            retry_after_secs: retry_after_secs(wait),
        },
    }
}

/// Ingests events into a stream: one JSON event, a JSON array, or NDJSON. Answers `202` only
/// once the broker acknowledged every accepted event; `413` over the body or event limit,
/// having written nothing; `429` (with `Retry-After`) over the tenant's ingest rate, having
/// written nothing; `503` when the broker failed or the request could not finish in time —
/// retry the request: its events may then be stored twice (at-least-once).
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
    let config = &state.config;
    let deadline = Instant::now() + config.ingest_timeout;
    let tenant = access.tenant.name.as_str();
    let format = format_of(&headers)?;
    let limit = config.ingest_max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let Some(js) = state.ingest.jetstream.as_ref() else {
        return Err(ApiError::BrokerUnavailable(
            "this API has no broker configured (SLUICE_NATS_URL); ingest is off".into(),
        ));
    };
    // From here on the stream exists: only then may its name label metrics and usage rows.
    let target = timeout_at(deadline, state.ingest.target(&state.kube, tenant, &stream))
        .await
        .map_err(|_| deadline_passed(config.ingest_timeout, "looking up the stream"))??;
    if target.suspended {
        return Err(ApiError::Conflict(format!(
            "tenant {tenant:?} is suspended: ingest is refused until it is resumed"
        )));
    }
    let limiter = &state.ingest.limiter;
    let mut batch = Batch::new(Limits {
        max_events: config.ingest_max_events,
        max_rejections: config.ingest_max_rejections,
    });
    let mut received = 0u64;
    let read = timeout_at(
        deadline,
        read_events(body, format, &target, limit, &mut batch, &mut received),
    )
    .await
    .unwrap_or_else(|_| {
        Err(deadline_passed(
            config.ingest_timeout,
            "reading the request body",
        ))
    });
    if let Err(e) = read {
        // What was read is paid for, even though nothing is written.
        limiter.charge(tenant, target.rates, batch.seen as u64, received);
        return Err(e);
    }
    let metrics = &state.metrics;
    let count = |outcome: &str, n: usize| {
        if n > 0 {
            metrics
                .ingest_events
                .with_label_values(&[tenant, stream.as_str(), outcome])
                .inc_by(n as u64);
        }
    };
    count("rejected", batch.rejected_count);
    let accepted = batch.events.len();
    if batch.seen > 0 {
        // Every event and byte received, accepted or not.
        if let Err(refusal) = limiter.reserve(tenant, target.rates, batch.seen as u64, received) {
            count("rate_limited", accepted);
            return Err(rate_limited(refusal));
        }
    }
    if accepted > 0 {
        let published = timeout_at(
            deadline,
            publish(
                js,
                &target.subject,
                &batch.events,
                config.ingest_ack_window,
                config.ingest_permit_timeout,
            ),
        )
        .await;
        let failure = match published {
            Ok(Ok(())) => None,
            Err(_) => Some(deadline_passed(
                config.ingest_timeout,
                "waiting for the broker; some events may be stored, and stored twice if the \
                 request is retried",
            )),
            Ok(Err(PublishFailure::Busy)) => Some(ApiError::IngestUnavailable {
                detail: format!(
                    "the broker has as many acknowledgements outstanding as this API allows \
                     and no publish permit came within {} ms; some events may be stored: \
                     retry after the Retry-After delay (events may then be stored twice)",
                    config.ingest_permit_timeout.as_millis()
                ),
                retry_after_secs: RETRY_AFTER_SECS,
            }),
            Ok(Err(PublishFailure::Broker(e))) => Some(ApiError::BrokerUnavailable(format!(
                "the broker did not acknowledge every event ({e}); some may be stored: retry \
                 the request (events may then be stored twice)"
            ))),
        };
        if let Some(err) = failure {
            limiter.refund(tenant, accepted as u64, batch.bytes);
            count("failed", accepted);
            return Err(err);
        }
        count("accepted", accepted);
        metrics
            .ingest_bytes
            .with_label_values(&[tenant, stream.as_str()])
            .inc_by(batch.bytes);
        state.ingest.meter.add(
            &access.tenant.id,
            &stream,
            chrono::Utc::now().timestamp_millis(),
            accepted as u64,
            batch.bytes,
        );
    }
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(IngestResult {
            accepted,
            rejected: batch.rejected,
            rejected_count: batch.rejected_count,
        }),
    )
        .into_response())
}
