//! Sinks: where a route delivers its events, one batch at a time. A sink either accepts the
//! whole batch, fails for a reason that may pass ([`SinkError::Transient`], retried with
//! backoff up to `retry.maxDeliver` attempts), refuses the batch for good
//! ([`SinkError::Rejected`], its events go to the dead-letter subject), or accepts all but
//! some events it refuses for good ([`SinkError::PartlyRejected`], those go to the
//! dead-letter subject, one by one, with their own reason).

pub mod egress;
pub mod file;
pub mod http;
pub mod kafka;
pub mod nats;
pub mod object_store;
pub mod postgres;

use bytes::Bytes;
use sluice_core::egress::{Egress, SinkPolicy};
use sluice_core::route::{BrokerClient, Sink as SinkConfig};
use std::future::Future;
use std::sync::Arc;

/// A failed delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// Retry later: the sink is down, slow or overloaded.
    #[error("{0}")]
    Transient(String),
    /// The sink refused these events and will refuse them again.
    #[error("refused: {0}")]
    Rejected(String),
    /// The sink accepted every event of the batch except these (index in the batch, why),
    /// which it will refuse again.
    #[error("refused {} events of the batch", .0.len())]
    PartlyRejected(Vec<(usize, String)>),
}

/// Delivers batches of events (each one JSON document).
pub trait Sink: Send + 'static {
    /// Delivers every event of the batch, or fails.
    fn deliver(&mut self, events: &[Bytes]) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Whether the sink's connection (if it has one) is up.
    fn readiness(&self) -> crate::health::Probe {
        crate::health::Probe::always()
    }
}

/// Any of the configured sinks.
pub enum AnySink {
    /// Core NATS publish.
    Nats(nats::NatsSink),
    /// JetStream publish.
    JetStream(nats::JetStreamSink),
    /// HTTP webhook.
    Http(http::HttpSink),
    /// Kafka produce.
    Kafka(kafka::KafkaSink),
    /// PostgreSQL table.
    Postgres(postgres::PostgresSink),
    /// Object storage.
    ObjectStore(object_store::ObjectStoreSink),
    /// File or standard output.
    File(file::FileSink),
}

/// Why a sink cannot be set up.
#[derive(Debug, thiserror::Error)]
#[error("sink: {0}")]
pub struct SetupError(pub String);

impl AnySink {
    /// Sets up the configured sink, within the platform's sink `policy`; NATS sinks connect
    /// to the broker as `broker` says. `name` identifies the worker to the sink where it can
    /// (NATS connection name, object names).
    pub async fn connect(
        config: &SinkConfig,
        policy: &SinkPolicy,
        broker: &BrokerClient,
        name: &str,
    ) -> Result<Self, SetupError> {
        let egress =
            Arc::new(Egress::new(policy).map_err(|e| SetupError(format!("sinkPolicy: {e}")))?);
        Ok(match config {
            SinkConfig::Nats { url, subject } => {
                AnySink::Nats(nats::NatsSink::connect(url, subject, broker, name).await?)
            }
            SinkConfig::Jetstream { url, subject } => {
                AnySink::JetStream(nats::JetStreamSink::from_core(
                    nats::NatsSink::connect(url, subject, broker, name).await?,
                ))
            }
            SinkConfig::Kafka { kafka, topic, key } => {
                AnySink::Kafka(kafka::KafkaSink::new(kafka, topic, key.as_deref(), name)?)
            }
            SinkConfig::Http { .. } => AnySink::Http(http::HttpSink::new(config, egress)?),
            SinkConfig::Postgres { .. } => {
                let mut sink = postgres::PostgresSink::new(config)?;
                if let Err(e) = sink.prepare().await {
                    tracing::warn!(error = %e, "postgres not reachable yet; retrying with the first batch");
                }
                AnySink::Postgres(sink)
            }
            SinkConfig::ObjectStore { .. } => AnySink::ObjectStore(
                object_store::ObjectStoreSink::new(config, policy, egress, name)?,
            ),
            SinkConfig::File { path } => AnySink::File(file::FileSink::new(path.as_deref())),
        })
    }
}

impl Sink for AnySink {
    async fn deliver(&mut self, events: &[Bytes]) -> Result<(), SinkError> {
        match self {
            AnySink::Nats(s) => s.deliver(events).await,
            AnySink::JetStream(s) => s.deliver(events).await,
            AnySink::Http(s) => s.deliver(events).await,
            AnySink::Kafka(s) => s.deliver(events).await,
            AnySink::Postgres(s) => s.deliver(events).await,
            AnySink::ObjectStore(s) => s.deliver(events).await,
            AnySink::File(s) => s.deliver(events).await,
        }
    }

    fn readiness(&self) -> crate::health::Probe {
        match self {
            AnySink::Nats(s) => s.readiness(),
            AnySink::JetStream(s) => s.readiness(),
            AnySink::Http(s) => s.readiness(),
            AnySink::Kafka(s) => s.readiness(),
            AnySink::Postgres(s) => s.readiness(),
            AnySink::ObjectStore(s) => s.readiness(),
            AnySink::File(s) => s.readiness(),
        }
    }
}

/// Concatenates events into lines of NDJSON.
pub fn ndjson(events: &[Bytes]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.iter().map(|e| e.len() + 1).sum());
    for e in events {
        out.extend_from_slice(e);
        out.push(b'\n');
    }
    out
}

/// Concatenates events into one JSON array.
pub fn json_array(events: &[Bytes]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
    out.push(b'[');
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(e);
    }
    out.push(b']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_framed() {
        let events = [Bytes::from_static(b"{\"a\":1}"), Bytes::from_static(b"2")];
        assert_eq!(json_array(&events), b"[{\"a\":1},2]");
        assert_eq!(json_array(&[]), b"[]");
        assert_eq!(ndjson(&events), b"{\"a\":1}\n2\n");
    }
}
