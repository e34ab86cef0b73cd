//! Accepting one ingest request, start to end: the stream's target, the body read into a batch
//! of checked events, the whole cost reserved in the tenant's token bucket, the accepted events
//! published in acknowledgement windows (refunded when that fails), then metered.
//!
//! See [`crate::routes::ingest`] for the HTTP side: media types, limits and answers.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, timeout, timeout_at};
use utoipa::ToSchema;

use super::kafka::{KafkaFailure, KafkaIngest, Keys};
use super::limiter::{Refusal, retry_after_secs};
use super::parse::{Batch, Checker, Limits, NdjsonReader, ReadError, Rejected, read_json};
use super::{Destination, Ingest, Target};
use crate::k8s::Kube;
use crate::metrics::Metrics;
use crate::problem::ApiError;
use crate::store::TenantRow;

/// `Retry-After` of `ingest-unavailable` answers, in seconds.
pub const RETRY_AFTER_SECS: u64 = 1;

/// How an ingest body holds its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON event or a JSON array of events (`application/json`).
    Json,
    /// One event per line (`application/x-ndjson`), read as it arrives.
    Ndjson,
}

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

/// One ingest request, once its caller may produce into the tenant.
#[derive(Debug)]
pub struct Request<'a> {
    /// The tenant.
    pub tenant: &'a TenantRow,
    /// The stream's name.
    pub stream: &'a str,
    /// How the body holds its events.
    pub format: Format,
    /// The partition key of every event (the `Sluice-Partition-Key` header; Kafka streams).
    pub partition_key: Option<Vec<u8>>,
    /// The body, read as it arrives.
    pub body: Body,
}

/// Where one request's events are written.
enum Writer<'a> {
    Nats {
        js: async_nats::jetstream::Context,
        subject: &'a async_nats::Subject,
    },
    Kafka {
        producer: &'a KafkaIngest,
        topic: &'a str,
        keys: Keys<'a>,
    },
}

impl Ingest {
    /// Accepts one request's events: looks up the stream, reads and checks the body, reserves
    /// the whole cost (every event and byte received) in the tenant's bucket, publishes the
    /// accepted events, and meters them; all within [`Bounds::timeout`](super::Bounds::timeout). What was read is paid
    /// for even when the body is refused; a failed publish is refunded.
    pub async fn accept(
        &self,
        kube: &Kube,
        metrics: &Metrics,
        req: Request<'_>,
    ) -> Result<IngestResult, ApiError> {
        let bounds = &self.bounds;
        let deadline = Instant::now() + bounds.timeout;
        let Request {
            tenant: row,
            stream,
            format,
            partition_key,
            body,
        } = req;
        let tenant = row.name.as_str();
        if self.broker.is_none() && self.kafka.is_none() {
            return Err(ApiError::BrokerUnavailable(
                "this API has no broker configured (SLUICE_NATS_URL, SLUICE_KAFKA_BOOTSTRAP_SERVERS); \
                 ingest is off"
                    .into(),
            ));
        }
        // From here on the stream exists: only then may its name label metrics and usage rows.
        let target = timeout_at(deadline, self.target(kube, tenant, stream))
            .await
            .map_err(|_| deadline_passed(bounds.timeout, "looking up the stream"))??;
        if target.suspended {
            return Err(ApiError::Conflict(format!(
                "tenant {tenant:?} is suspended: ingest is refused until it is resumed"
            )));
        }
        let writer = match &target.destination {
            Destination::Nats(subject) => {
                let Some(broker) = self.broker.as_ref() else {
                    return Err(ApiError::BrokerUnavailable(
                        "this API has no NATS broker configured (SLUICE_NATS_URL); ingest into \
                         NATS streams is off"
                            .into(),
                    ));
                };
                let js = timeout_at(deadline, broker.context(tenant, target.account.as_deref()))
                    .await
                    .map_err(|_| deadline_passed(bounds.timeout, "connecting to the broker"))??;
                Writer::Nats { js, subject }
            }
            Destination::Kafka {
                topic,
                partition_key: field,
            } => {
                let Some(producer) = self.kafka.as_ref() else {
                    return Err(ApiError::BrokerUnavailable(
                        "this API has no Kafka cluster configured \
                         (SLUICE_KAFKA_BOOTSTRAP_SERVERS); ingest into Kafka streams is off"
                            .into(),
                    ));
                };
                let keys = match (&partition_key, field) {
                    (Some(k), _) => Keys::Fixed(k),
                    (None, Some(path)) => Keys::Field(path),
                    (None, None) => Keys::None,
                };
                Writer::Kafka {
                    producer,
                    topic,
                    keys,
                }
            }
        };
        let mut batch = Batch::new(Limits {
            max_events: bounds.max_events,
            max_rejections: bounds.max_rejections,
        });
        let mut received = 0u64;
        let read = timeout_at(
            deadline,
            read_events(
                body,
                format,
                &target,
                bounds.max_body_bytes,
                &mut batch,
                &mut received,
            ),
        )
        .await
        .unwrap_or_else(|_| Err(deadline_passed(bounds.timeout, "reading the request body")));
        if let Err(e) = read {
            // What was read is paid for, even though nothing is written.
            self.limiter
                .charge(tenant, target.rates, batch.seen as u64, received);
            return Err(e);
        }
        let count = |outcome: &str, n: usize| {
            if n > 0 {
                metrics
                    .ingest_events
                    .with_label_values(&[tenant, stream, outcome])
                    .inc_by(n as u64);
            }
        };
        count("rejected", batch.rejected_count);
        let accepted = batch.events.len();
        if batch.seen > 0 {
            // Every event and byte received, accepted or not.
            if let Err(refusal) =
                self.limiter
                    .reserve(tenant, target.rates, batch.seen as u64, received)
            {
                count("rate_limited", accepted);
                return Err(rate_limited(refusal));
            }
        }
        if accepted > 0 {
            let published = timeout_at(deadline, async {
                match &writer {
                    Writer::Nats { js, subject } => {
                        publish(
                            js,
                            subject,
                            &batch.events,
                            bounds.ack_window,
                            bounds.permit_timeout,
                        )
                        .await
                    }
                    Writer::Kafka {
                        producer,
                        topic,
                        keys,
                    } => producer
                        .publish(topic, *keys, &batch.events)
                        .await
                        .map_err(|e| match e {
                            KafkaFailure::Refused(e) => PublishFailure::Refused(e),
                            KafkaFailure::Unavailable(e) => PublishFailure::Broker(e),
                        }),
                }
            })
            .await;
            let failure = match published {
                Ok(Ok(())) => None,
                Err(_) => Some(deadline_passed(
                    bounds.timeout,
                    "waiting for the broker; some events may be stored, and stored twice if \
                     the request is retried",
                )),
                Ok(Err(PublishFailure::Busy)) => Some(ApiError::IngestUnavailable {
                    detail: format!(
                        "the broker has as many acknowledgements outstanding as this API \
                         allows and no publish permit came within {} ms; some events may be \
                         stored: retry after the Retry-After delay (events may then be stored \
                         twice)",
                        bounds.permit_timeout.as_millis()
                    ),
                    retry_after_secs: RETRY_AFTER_SECS,
                }),
                Ok(Err(PublishFailure::StorageFull)) => {
                    Some(ApiError::StorageQuotaExceeded(format!(
                        "the broker refused events: the stream storage quota of tenant {tenant:?} \
                     (spec.quota.storage) is used up; events before the refusal may be stored. \
                     Free space (shorter retention, fewer streams) or raise the quota, then retry"
                    )))
                }
                Ok(Err(PublishFailure::Refused(e))) => Some(ApiError::bad_param(
                    "body",
                    format!(
                        "the broker refused an event for good ({e}); events before it may be \
                         stored. Send smaller events"
                    ),
                )),
                Ok(Err(PublishFailure::Broker(e))) => Some(ApiError::BrokerUnavailable(format!(
                    "the broker did not acknowledge every event ({e}); some may be stored: \
                     retry the request (events may then be stored twice)"
                ))),
            };
            if let Some(err) = failure {
                self.limiter.refund(tenant, accepted as u64, batch.bytes);
                count("failed", accepted);
                return Err(err);
            }
            count("accepted", accepted);
            metrics
                .ingest_bytes
                .with_label_values(&[tenant, stream])
                .inc_by(batch.bytes);
            self.meter.add(
                &row.id,
                stream,
                chrono::Utc::now().timestamp_millis(),
                accepted as u64,
                batch.bytes,
            );
        }
        Ok(IngestResult {
            accepted,
            rejected: batch.rejected,
            rejected_count: batch.rejected_count,
        })
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
    /// The broker refused events: the tenant's storage quota is used up.
    StorageFull,
    /// The broker refuses an event, and will again.
    Refused(String),
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
            ack.await.map_err(|e| {
                if super::broker::is_storage_full(&e) {
                    PublishFailure::StorageFull
                } else {
                    PublishFailure::Broker(format!("acknowledgement: {e}"))
                }
            })?;
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
