//! The dead-letter publisher: poison events go, unchanged, to the route's dead-letter
//! subject with JetStream (every publish acknowledged), or to its dead-letter Kafka topic
//! (every produce acknowledged by all replicas), the error attached as headers.

use crate::source::Origin;
use crate::transform::EventError;
use async_nats::HeaderMap;
use async_nats::jetstream::Context;
use bytes::Bytes;

/// Header: what went wrong.
pub const HEADER_ERROR: &str = "Sluice-Error";
/// Header: where it went wrong (`decode`, `filter`, `projection`, `sink`).
pub const HEADER_STAGE: &str = "Sluice-Stage";
/// Header: the tenant.
pub const HEADER_TENANT: &str = "Sluice-Tenant";
/// Header: the pipeline.
pub const HEADER_PIPELINE: &str = "Sluice-Pipeline";
/// Header: the route.
pub const HEADER_ROUTE: &str = "Sluice-Route";
/// Header: the subject the event was published on.
pub const HEADER_SUBJECT: &str = "Sluice-Original-Subject";
/// Header: the source stream.
pub const HEADER_STREAM: &str = "Sluice-Original-Stream";
/// Header: the event's sequence in the source stream.
pub const HEADER_SEQUENCE: &str = "Sluice-Original-Sequence";

/// One event for the dead-letter subject.
#[derive(Debug, Clone)]
pub struct DeadEvent {
    /// The event as it was received.
    pub payload: Bytes,
    /// The subject it was received on.
    pub subject: String,
    /// Where it came from.
    pub origin: Origin,
    /// Why it is dead.
    pub error: EventError,
}

/// Why dead letters could not be published; retried with backoff.
#[derive(Debug, thiserror::Error)]
#[error("dead-letter publish: {0}")]
pub struct DeadLetterError(pub String);

/// Where dead events go.
#[derive(Clone)]
enum Destination {
    /// A JetStream subject.
    Nats { js: Box<Context>, subject: String },
    /// A Kafka topic.
    Kafka {
        producer: rdkafka::producer::FutureProducer,
        topic: String,
    },
}

/// Publishes dead events of one route.
#[derive(Clone)]
pub struct DeadLetters {
    to: Destination,
    tenant: String,
    pipeline: String,
    route: String,
}

/// Header values must be one line.
fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

impl DeadLetters {
    /// A publisher to `subject` for the given route.
    pub fn new(
        client: async_nats::Client,
        subject: &str,
        tenant: &str,
        pipeline: &str,
        route: &str,
    ) -> Self {
        DeadLetters {
            to: Destination::Nats {
                js: Box::new(async_nats::jetstream::new(client)),
                subject: subject.to_owned(),
            },
            tenant: tenant.to_owned(),
            pipeline: pipeline.to_owned(),
            route: route.to_owned(),
        }
    }

    /// A publisher to the Kafka topic `to` for the given route.
    pub fn kafka(
        to: &sluice_core::route::KafkaTopic,
        name: &str,
        tenant: &str,
        pipeline: &str,
        route: &str,
    ) -> Result<Self, DeadLetterError> {
        Ok(DeadLetters {
            to: Destination::Kafka {
                producer: crate::sink::kafka::producer(&to.kafka, name).map_err(DeadLetterError)?,
                topic: to.topic.clone(),
            },
            tenant: tenant.to_owned(),
            pipeline: pipeline.to_owned(),
            route: route.to_owned(),
        })
    }

    /// The headers attached to a dead event, as (name, value).
    pub fn header_pairs(&self, event: &DeadEvent) -> [(&'static str, String); 8] {
        [
            (HEADER_ERROR, one_line(&event.error.message)),
            (HEADER_STAGE, event.error.stage.as_str().to_string()),
            (HEADER_TENANT, self.tenant.clone()),
            (HEADER_PIPELINE, self.pipeline.clone()),
            (HEADER_ROUTE, self.route.clone()),
            (HEADER_SUBJECT, event.subject.clone()),
            (HEADER_STREAM, event.origin.stream.clone()),
            (HEADER_SEQUENCE, event.origin.sequence.to_string()),
        ]
    }

    /// The headers attached to a dead event.
    pub fn headers(&self, event: &DeadEvent) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in self.header_pairs(event) {
            h.insert(name, value.as_str());
        }
        h
    }

    /// Publishes every event and waits until the broker stored each one.
    pub async fn publish(&self, events: &[DeadEvent]) -> Result<(), DeadLetterError> {
        match &self.to {
            Destination::Nats { js, subject } => self.publish_nats(js, subject, events).await,
            Destination::Kafka { producer, topic } => {
                let messages = events
                    .iter()
                    .map(|e| {
                        let mut headers = rdkafka::message::OwnedHeaders::new();
                        for (key, value) in self.header_pairs(e) {
                            headers = headers.insert(rdkafka::message::Header {
                                key,
                                value: Some(value.as_bytes()),
                            });
                        }
                        crate::sink::kafka::Outgoing {
                            key: None,
                            payload: &e.payload,
                            headers: Some(headers),
                        }
                    })
                    .collect();
                match crate::sink::kafka::send_all(producer, topic, messages)
                    .await
                    .first()
                {
                    None => Ok(()),
                    Some((_, e)) => Err(DeadLetterError(format!("kafka topic {topic}: {e}"))),
                }
            }
        }
    }

    async fn publish_nats(
        &self,
        js: &Context,
        subject: &str,
        events: &[DeadEvent],
    ) -> Result<(), DeadLetterError> {
        let mut acks = Vec::with_capacity(events.len().min(crate::sink::nats::ACK_WINDOW));
        for e in events {
            let ack = js
                .publish_with_headers(subject.to_string(), self.headers(e), e.payload.clone())
                .await
                .map_err(|e| DeadLetterError(e.to_string()))?;
            acks.push(ack);
            if acks.len() >= crate::sink::nats::ACK_WINDOW {
                for ack in acks.drain(..) {
                    ack.await.map_err(|e| DeadLetterError(e.to_string()))?;
                }
            }
        }
        for ack in acks {
            ack.await.map_err(|e| DeadLetterError(e.to_string()))?;
        }
        Ok(())
    }
}
