//! NATS sinks: core publish (flushed before the batch counts as delivered) and JetStream
//! publish (every publish acknowledged by the server).

use super::{SetupError, Sink, SinkError};
use crate::health::Probe;
use async_nats::{Client, Subject};
use bytes::Bytes;
use sluice_core::route::BrokerClient;

/// Most publishes awaiting their acknowledgement at once: the JetStream context bounds them
/// (5000 by default) and blocks further publishes, so they are awaited before reaching that.
pub const ACK_WINDOW: usize = 1_000;

async fn client(url: &str, broker: &BrokerClient, name: &str) -> Result<Client, SetupError> {
    crate::source::jetstream::connect(url, broker, name)
        .await
        .map_err(|e| SetupError(e.0))
}

fn connected(client: &Client) -> Probe {
    let client = client.clone();
    Probe::new(move || client.connection_state() == async_nats::connection::State::Connected)
}

/// Publishes each event on a subject with core NATS.
pub struct NatsSink {
    client: Client,
    subject: Subject,
}

impl NatsSink {
    /// Connects to the NATS server.
    pub async fn connect(
        url: &str,
        subject: &str,
        broker: &BrokerClient,
        name: &str,
    ) -> Result<Self, SetupError> {
        Ok(NatsSink {
            client: client(url, broker, name).await?,
            subject: Subject::from(subject),
        })
    }

    /// A sink over an existing client.
    pub fn with_client(client: Client, subject: &str) -> Self {
        NatsSink {
            client,
            subject: Subject::from(subject),
        }
    }
}

impl Sink for NatsSink {
    async fn deliver(&mut self, events: &[Bytes]) -> Result<(), SinkError> {
        for e in events {
            self.client
                .publish(self.subject.clone(), e.clone())
                .await
                .map_err(|e| SinkError::Transient(format!("nats publish: {e}")))?;
        }
        // The batch counts as delivered once it left this process.
        self.client
            .flush()
            .await
            .map_err(|e| SinkError::Transient(format!("nats flush: {e}")))
    }

    fn readiness(&self) -> Probe {
        connected(&self.client)
    }
}

/// Publishes each event to JetStream and waits for every acknowledgement.
pub struct JetStreamSink {
    client: Client,
    js: async_nats::jetstream::Context,
    subject: Subject,
}

impl JetStreamSink {
    /// A JetStream sink publishing on the connection and subject of `core`.
    pub fn from_core(core: NatsSink) -> Self {
        JetStreamSink {
            js: async_nats::jetstream::new(core.client.clone()),
            client: core.client,
            subject: core.subject,
        }
    }
}

impl Sink for JetStreamSink {
    async fn deliver(&mut self, events: &[Bytes]) -> Result<(), SinkError> {
        let mut acks = Vec::with_capacity(events.len().min(ACK_WINDOW));
        for e in events {
            let ack = self
                .js
                .publish(self.subject.clone(), e.clone())
                .await
                .map_err(|e| SinkError::Transient(format!("jetstream publish: {e}")))?;
            acks.push(ack);
            if acks.len() >= ACK_WINDOW {
                for ack in acks.drain(..) {
                    ack.await
                        .map_err(|e| SinkError::Transient(format!("jetstream publish ack: {e}")))?;
                }
            }
        }
        for ack in acks {
            ack.await
                .map_err(|e| SinkError::Transient(format!("jetstream publish ack: {e}")))?;
        }
        Ok(())
    }

    fn readiness(&self) -> Probe {
        connected(&self.client)
    }
}
