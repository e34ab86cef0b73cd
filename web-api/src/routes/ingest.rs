//! `POST /v1/tenants/{tenant}/streams/{stream}/events`: producers' events into a stream.
//!
//! The body is one JSON event or a JSON array of events (`application/json`), or NDJSON
//! (`application/x-ndjson`, one event per line, read incrementally as it arrives). Each event
//! must be a JSON object and, when the stream has a JSON Schema, satisfy it; refused events are
//! reported by index and the others go on. Then, in this order:
//!
//! 1. the request's whole cost (accepted events and their bytes) is reserved in the tenant's
//!    token bucket — over the limit, `429` with `Retry-After` and nothing is written;
//! 2. the accepted events are published to the stream's subject on JetStream, pipelined, and
//!    every acknowledgement is awaited;
//! 3. only then `202` with `{"accepted": N, "rejected": [{"index", "error"}]}`.
//!
//! When the broker fails, `503 broker-unavailable`: some events may have been stored, so the
//! client retries the whole request and may create duplicates (at-least-once).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::{Produce, TenantAccess};
use crate::ingest::Target;
use crate::ingest::limiter::{Refusal, retry_after_secs};
use crate::ingest::parse::{Batch, Checker, NdjsonReader, Rejected, read_json};
use crate::problem::{ApiError, Problem};

/// Media type of NDJSON bodies.
pub const NDJSON: &str = "application/x-ndjson";

/// The answer to an ingest request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IngestResult {
    /// Events accepted and acknowledged by the broker.
    pub accepted: usize,
    /// Events refused (not valid JSON objects, or not matching the stream's schema), by
    /// their position in the request.
    pub rejected: Vec<Rejected>,
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

/// Reads and checks the body's events, stopping with 413 as soon as it is over `limit`.
async fn read_events(
    body: Body,
    format: Format,
    target: &Target,
    limit: usize,
) -> Result<Batch, ApiError> {
    let checker = Checker::new(target.schema.as_deref());
    let mut batch = Batch::default();
    let mut stream = body.into_data_stream();
    let mut received = 0usize;
    let too_large = || ApiError::PayloadTooLarge { limit };
    let read_error = |e: axum::Error| ApiError::MalformedJson {
        detail: format!("cannot read the request body: {e}"),
    };
    match format {
        Format::Ndjson => {
            let mut reader = NdjsonReader::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(read_error)?;
                received += chunk.len();
                if received > limit {
                    return Err(too_large());
                }
                reader.push(chunk, &mut batch, &checker);
            }
            reader.finish(&mut batch, &checker);
        }
        Format::Json => {
            let mut buf = BytesMut::new();
            let mut single: Option<Bytes> = None;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(read_error)?;
                received += chunk.len();
                if received > limit {
                    return Err(too_large());
                }
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
            read_json(&body, &mut batch, &checker).map_err(|e| ApiError::MalformedJson {
                detail: format!("request body is not valid JSON: {e}"),
            })?;
        }
    }
    Ok(batch)
}

/// Publishes every event (pipelined: all sent, then all acknowledgements awaited).
async fn publish(
    js: &async_nats::jetstream::Context,
    subject: &async_nats::Subject,
    events: &[Bytes],
) -> Result<(), String> {
    let mut acks = Vec::with_capacity(events.len());
    for e in events {
        let ack = js
            .publish(subject.clone(), e.clone())
            .await
            .map_err(|e| format!("publish: {e}"))?;
        acks.push(ack);
    }
    for ack in acks {
        ack.await.map_err(|e| format!("acknowledgement: {e}"))?;
    }
    Ok(())
}

/// Ingests events into a stream: one JSON event, a JSON array, or NDJSON. Answers `202` only
/// once the broker acknowledged every accepted event; `429` (with `Retry-After`) over the
/// tenant's ingest rate, having written nothing; `503` when the broker failed — retry the
/// request: its events may then be stored twice (at-least-once).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/streams/{stream}/events", tag = "ingest",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant name"),
        ("stream" = String, Path, description = "Stream name")),
    request_body(description = "One JSON object, a JSON array of objects, or NDJSON (one \
        object per line)",
        content(("application/json"), ("application/x-ndjson"))),
    responses(
        (status = 202, description = "Accepted events are stored on the broker", body = IngestResult),
        (status = 413, description = "Body over the ingest size limit, or batch over the \
            tenant's burst", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the tenant's ingest rate; nothing was written",
            body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The broker failed; retry (duplicates possible)",
            body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn ingest_events(
    State(state): State<AppState>,
    access: TenantAccess<Produce>,
    Path((_tenant, stream)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let tenant = access.tenant.name.as_str();
    let format = format_of(&headers)?;
    let limit = state.config.ingest_max_body_bytes;
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
    let target = state.ingest.target(&state.kube, tenant, &stream).await?;
    if target.suspended {
        return Err(ApiError::Conflict(format!(
            "tenant {tenant:?} is suspended: ingest is refused until it is resumed"
        )));
    }
    let batch = read_events(body, format, &target, limit).await?;
    let metrics = &state.metrics;
    let count = |outcome: &str, n: usize| {
        if n > 0 {
            metrics
                .ingest_events
                .with_label_values(&[tenant, stream.as_str(), outcome])
                .inc_by(n as u64);
        }
    };
    count("rejected", batch.rejected.len());
    let accepted = batch.events.len();
    if accepted > 0 {
        if let Err(refusal) =
            state
                .ingest
                .limiter
                .reserve(tenant, target.rates, accepted as u64, batch.bytes)
        {
            count("rate_limited", accepted);
            return Err(match refusal {
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
            });
        }
        if let Err(e) = publish(js, &target.subject, &batch.events).await {
            state
                .ingest
                .limiter
                .refund(tenant, accepted as u64, batch.bytes);
            count("failed", accepted);
            return Err(ApiError::BrokerUnavailable(format!(
                "the broker did not acknowledge every event ({e}); some may be stored: retry \
                 the request (events may then be stored twice)"
            )));
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
        }),
    )
        .into_response())
}
