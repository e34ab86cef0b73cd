//! The Kafka sink: an idempotent producer with `acks=all` (a retried send is written once per
//! partition), each event's key read from a field. A batch counts as delivered once every
//! event of it is acknowledged by the cluster; an event the cluster refuses for good (too
//! large) goes to the dead-letter destination, any other failure retries the batch.

use super::{SetupError, Sink, SinkError};
use bytes::Bytes;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_core::route::KafkaClient;
use std::time::Duration;

/// The producer settings of every Kafka writer of the worker (sink and dead letters).
pub fn producer(kafka: &KafkaClient, name: &str) -> Result<FutureProducer, String> {
    crate::source::kafka::client_config(kafka)
        .set("client.id", name)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        // A send not acknowledged within this is reported failed (and the batch retried).
        .set("message.timeout.ms", "30000")
        .create()
        .map_err(|e| format!("kafka producer: {e}"))
}

/// Whether the cluster will refuse this message again, whatever the retries.
pub fn refused_for_good(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::InvalidMessage
        )
    )
}

/// One message for [`send_all`].
pub struct Outgoing<'a> {
    /// The key, if any.
    pub key: Option<Vec<u8>>,
    /// The value.
    pub payload: &'a [u8],
    /// Headers.
    pub headers: Option<rdkafka::message::OwnedHeaders>,
}

/// Why [`send_all`] failed: for each event not written, its index and the error.
pub type SendFailures = Vec<(usize, KafkaError)>;

/// Sends every message to `topic` and waits until the cluster acknowledged each; the
/// messages the cluster did not take, with why. Sends wait while librdkafka's queue is full.
pub async fn send_all(
    producer: &FutureProducer,
    topic: &str,
    messages: Vec<Outgoing<'_>>,
) -> SendFailures {
    let mut pending = Vec::with_capacity(messages.len());
    let mut failures = vec![];
    for (i, m) in messages.into_iter().enumerate() {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(m.payload);
        if let Some(k) = &m.key {
            record = record.key(k.as_slice());
        }
        if let Some(h) = m.headers {
            record = record.headers(h);
        }
        loop {
            match producer.send_result(record) {
                Ok(f) => {
                    pending.push((i, f));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    // Let librdkafka drain its queue, then queue again.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => {
                    failures.push((i, e));
                    break;
                }
            }
        }
    }
    for (i, f) in pending {
        match f.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => failures.push((i, e)),
            Err(_) => failures.push((i, KafkaError::Canceled)),
        }
    }
    failures
}

/// Produces a route's events to its topic.
pub struct KafkaSink {
    producer: FutureProducer,
    topic: String,
    key: Option<String>,
}

impl KafkaSink {
    /// A producer to `topic`, keys read from the field `key`.
    pub fn new(
        kafka: &KafkaClient,
        topic: &str,
        key: Option<&str>,
        name: &str,
    ) -> Result<Self, SetupError> {
        Ok(KafkaSink {
            producer: producer(kafka, name).map_err(SetupError)?,
            topic: topic.to_string(),
            key: key.map(str::to_string),
        })
    }
}

impl Sink for KafkaSink {
    async fn deliver(&mut self, events: &[Bytes]) -> Result<(), SinkError> {
        let messages = events
            .iter()
            .map(|e| Outgoing {
                key: self
                    .key
                    .as_deref()
                    .and_then(|path| sluice_core::key::key_of(e, path)),
                payload: e,
                headers: None,
            })
            .collect();
        let failures = send_all(&self.producer, &self.topic, messages).await;
        if failures.is_empty() {
            return Ok(());
        }
        if let Some((_, e)) = failures.iter().find(|(_, e)| !refused_for_good(e)) {
            // Sent again with the batch: the idempotent producer keeps each partition free
            // of duplicates within a session, and delivery is at least once across sessions.
            return Err(SinkError::Transient(format!("kafka produce: {e}")));
        }
        Err(SinkError::PartlyRejected(
            failures
                .into_iter()
                .map(|(i, e)| (i, format!("kafka refused the event: {e}")))
                .collect(),
        ))
    }
}
