//! Ingest into Kafka streams: one idempotent producer with `acks=all` for the platform's
//! cluster. A request is answered `202` only once every accepted event is acknowledged by
//! all in-sync replicas of its partition. Each event's key (and so its partition) is the
//! request's `Sluice-Partition-Key` header when given, else the value of the Stream's
//! `spec.partitionKey` field in the event, else none (the producer spreads such events).

use bytes::Bytes;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;

/// Request header naming the partition key of all the request's events.
pub const PARTITION_KEY_HEADER: &str = "sluice-partition-key";
/// Longest partition key a request may name, in bytes.
pub const MAX_PARTITION_KEY_BYTES: usize = 1024;

/// The Kafka producer of ingest.
pub struct KafkaIngest {
    producer: FutureProducer,
    bootstrap: String,
}

impl std::fmt::Debug for KafkaIngest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaIngest")
            .field("bootstrap", &self.bootstrap)
            .finish_non_exhaustive()
    }
}

/// Why events were not all written.
#[derive(Debug)]
pub enum KafkaFailure {
    /// The cluster refuses this event, and will again (too large for the topic).
    Refused(String),
    /// The cluster failed or did not answer in time.
    Unavailable(String),
}

/// How each event of a request is keyed.
#[derive(Debug, Clone, Copy)]
pub enum Keys<'a> {
    /// Every event has this key (the request's header).
    Fixed(&'a [u8]),
    /// Each event's key is the value of this field.
    Field(&'a str),
    /// No keys.
    None,
}

impl Keys<'_> {
    fn of(&self, event: &[u8]) -> Option<Vec<u8>> {
        match self {
            Keys::Fixed(k) => Some(k.to_vec()),
            Keys::Field(path) => sluice_core::key::key_of(event, path),
            Keys::None => None,
        }
    }
}

impl KafkaIngest {
    /// A producer to the cluster at `bootstrap` with the extra librdkafka `properties` (TLS,
    /// SASL). Connects in the background; nothing fails until the first request.
    pub fn new(bootstrap: &str, properties: &[(String, String)]) -> Result<Self, String> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", bootstrap);
        for (k, v) in properties {
            config.set(k, v);
        }
        let producer = config
            .set("client.id", "sluice-api")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("message.timeout.ms", "20000")
            .create()
            .map_err(|e| format!("Kafka producer for {bootstrap}: {e}"))?;
        Ok(KafkaIngest {
            producer,
            bootstrap: bootstrap.to_string(),
        })
    }

    /// Writes every event to `topic` and waits until each is acknowledged.
    pub async fn publish(
        &self,
        topic: &str,
        keys: Keys<'_>,
        events: &[Bytes],
    ) -> Result<(), KafkaFailure> {
        let mut pending = Vec::with_capacity(events.len());
        for e in events {
            let key = keys.of(e);
            let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(e.as_ref());
            if let Some(k) = &key {
                record = record.key(k.as_slice());
            }
            loop {
                match self.producer.send_result(record) {
                    Ok(f) => {
                        pending.push(f);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        // The request's deadline bounds this wait.
                        record = r;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => return Err(failure(&e)),
                }
            }
        }
        for f in pending {
            match f.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(failure(&e)),
                Err(_) => return Err(KafkaFailure::Unavailable("the producer closed".into())),
            }
        }
        Ok(())
    }
}

fn failure(e: &KafkaError) -> KafkaFailure {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize) => {
            KafkaFailure::Refused(e.to_string())
        }
        _ => KafkaFailure::Unavailable(e.to_string()),
    }
}

/// The partition key a request's headers name, if any: 400 when it is empty or longer than
/// [`MAX_PARTITION_KEY_BYTES`].
pub fn header_key(
    headers: &axum::http::HeaderMap,
) -> Result<Option<Vec<u8>>, crate::problem::ApiError> {
    let Some(v) = headers.get(PARTITION_KEY_HEADER) else {
        return Ok(None);
    };
    let bytes = v.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_PARTITION_KEY_BYTES {
        return Err(crate::problem::ApiError::bad_param(
            "Sluice-Partition-Key",
            format!("must be 1 to {MAX_PARTITION_KEY_BYTES} bytes"),
        ));
    }
    Ok(Some(bytes.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_the_header_or_the_field() {
        let e = br#"{"customer": {"id": "c-1"}}"#;
        assert_eq!(Keys::Fixed(b"k").of(e).as_deref(), Some(&b"k"[..]));
        assert_eq!(
            Keys::Field("customer.id").of(e).as_deref(),
            Some(&b"c-1"[..])
        );
        assert_eq!(Keys::Field("missing").of(e), None);
        assert_eq!(Keys::None.of(e), None);
    }

    #[test]
    fn partition_key_headers_are_bounded() {
        let mut h = axum::http::HeaderMap::new();
        assert_eq!(header_key(&h).unwrap(), None);
        h.insert(PARTITION_KEY_HEADER, "c-1".parse().unwrap());
        assert_eq!(header_key(&h).unwrap().as_deref(), Some(&b"c-1"[..]));
        h.insert(PARTITION_KEY_HEADER, "x".repeat(1025).parse().unwrap());
        assert!(header_key(&h).is_err());
        h.insert(PARTITION_KEY_HEADER, "".parse().unwrap());
        assert!(header_key(&h).is_err());
    }
}
