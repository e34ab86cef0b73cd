//! The broker side of a Stream. [`Broker`] is what the Stream controller needs from a broker;
//! [`JetStream`] implements it with NATS JetStream, [`super::kafka::KafkaTopics`] with Kafka
//! topics, and [`Brokers`] sends each Stream to the one its spec names.

use crate::accounts::Accounts;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// What a Stream asks of the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    /// The broker the stream lives on.
    pub broker: sluice_crd::StreamBroker,
    /// Broker-side name (`sluice_<tenant>_<stream>` on JetStream, the topic
    /// `sluice.<tenant>.<stream>` on Kafka).
    pub name: String,
    /// Subjects the stream captures (`sluice.<tenant>.<stream>.>`).
    pub subjects: Vec<String>,
    /// Oldest message kept; unlimited when `None`.
    pub max_age: Option<Duration>,
    /// Most bytes kept; unlimited when `None`.
    pub max_bytes: Option<i64>,
    /// Copies of each message.
    pub replicas: usize,
    /// Partitions (Kafka); JetStream streams are not partitioned.
    pub partitions: usize,
    /// The uid of the stream's Tenant: with a broker in operator mode, the stream lives in
    /// that tenant's account.
    pub tenant_uid: Option<String>,
}

/// What the broker reports about a stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamState {
    /// Messages held.
    pub messages: u64,
    /// Bytes held (JetStream).
    pub bytes: u64,
    /// Partitions of the topic (Kafka).
    pub partitions: Option<usize>,
    /// End offset of each partition (Kafka).
    pub end_offsets: Vec<i64>,
    /// What the broker could not do of the spec, for the `Ready` message.
    pub note: Option<String>,
}

/// A broker failure, with a message for the Stream's status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    /// The broker cannot be reached.
    #[error("the broker is unreachable: {0}")]
    Unavailable(String),
    /// The broker refused the request (e.g. more replicas than servers).
    #[error("the broker refused: {0}")]
    Refused(String),
}

/// The operations of the Stream controller on a broker.
pub trait Broker: Send + Sync {
    /// Creates the stream, or brings an existing one in line with `settings`.
    fn ensure<'a>(
        &'a self,
        settings: &'a StreamSettings,
    ) -> BoxFuture<'a, Result<StreamState, BrokerError>>;
    /// Deletes the stream and its messages; deleting a missing stream succeeds.
    fn delete<'a>(&'a self, settings: &'a StreamSettings)
    -> BoxFuture<'a, Result<(), BrokerError>>;
}

/// The brokers of the platform: every Stream goes to the one its settings name. A Kafka
/// Stream on a platform without Kafka is refused, with a message saying so.
pub struct Brokers {
    /// NATS JetStream.
    pub nats: Arc<dyn Broker>,
    /// Kafka, when the operator was given a cluster (`--kafka-bootstrap-servers`).
    pub kafka: Option<Arc<dyn Broker>>,
}

impl Brokers {
    fn of(&self, settings: &StreamSettings) -> Result<&Arc<dyn Broker>, BrokerError> {
        match settings.broker {
            sluice_crd::StreamBroker::Nats => Ok(&self.nats),
            sluice_crd::StreamBroker::Kafka => self.kafka.as_ref().ok_or_else(|| {
                BrokerError::Refused(
                    "the platform has no Kafka cluster (the operator runs without \
                     --kafka-bootstrap-servers)"
                        .into(),
                )
            }),
        }
    }
}

impl Broker for Brokers {
    fn ensure<'a>(
        &'a self,
        settings: &'a StreamSettings,
    ) -> BoxFuture<'a, Result<StreamState, BrokerError>> {
        Box::pin(async move { self.of(settings)?.ensure(settings).await })
    }

    fn delete<'a>(
        &'a self,
        settings: &'a StreamSettings,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            match self.of(settings) {
                Ok(broker) => broker.delete(settings).await,
                // Nothing was ever provisioned on a broker the platform does not have.
                Err(_) => Ok(()),
            }
        })
    }
}

/// NATS JetStream. Connects on first use, so the operator starts while the broker is down.
/// With tenant accounts (operator mode), each tenant's streams are made in its account, as its
/// stream manager, over that account's connection ([`Accounts::client`]).
pub struct JetStream {
    url: String,
    accounts: Option<Arc<Accounts>>,
    tls: Option<sluice_core::route::BrokerTls>,
    shared: OnceCell<async_nats::jetstream::Context>,
}

impl JetStream {
    /// A broker at `url`; with `accounts`, each tenant's streams are in its account.
    pub fn new(url: &str, accounts: Option<Arc<Accounts>>) -> Self {
        JetStream {
            url: url.to_string(),
            accounts,
            tls: None,
            shared: OnceCell::new(),
        }
    }

    /// The same broker, reached with TLS as `tls` says (tenant accounts use the TLS their
    /// [`Accounts`] were made with).
    pub fn with_tls(mut self, tls: Option<sluice_core::route::BrokerTls>) -> Self {
        self.tls = tls;
        self
    }

    async fn js(
        &self,
        settings: &StreamSettings,
    ) -> Result<async_nats::jetstream::Context, BrokerError> {
        let Some(accounts) = &self.accounts else {
            return self
                .shared
                .get_or_try_init(|| async {
                    let client = sluice_broker::client::with_tls(
                        async_nats::ConnectOptions::new(),
                        self.tls.as_ref(),
                    )
                    .connection_timeout(Duration::from_secs(5))
                    .connect(self.url.as_str())
                    .await
                    .map_err(|e| BrokerError::Unavailable(format!("{}: {e}", self.url)))?;
                    Ok(async_nats::jetstream::new(client))
                })
                .await
                .cloned();
        };
        let uid = settings.tenant_uid.as_deref().ok_or_else(|| {
            BrokerError::Refused("a stream outside any tenant has no account".into())
        })?;
        let client = accounts
            .client(uid)
            .await
            .map_err(BrokerError::Unavailable)?;
        Ok(async_nats::jetstream::new(client))
    }
}

fn config(s: &StreamSettings) -> async_nats::jetstream::stream::Config {
    async_nats::jetstream::stream::Config {
        name: s.name.clone(),
        subjects: s.subjects.clone(),
        max_age: s.max_age.unwrap_or(Duration::ZERO),
        max_bytes: s.max_bytes.unwrap_or(-1),
        num_replicas: s.replicas.max(1),
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    }
}

impl Broker for JetStream {
    fn ensure<'a>(
        &'a self,
        settings: &'a StreamSettings,
    ) -> BoxFuture<'a, Result<StreamState, BrokerError>> {
        Box::pin(async move {
            let js = self.js(settings).await?;
            let wanted = config(settings);
            let mut stream = js
                .get_or_create_stream(wanted.clone())
                .await
                .map_err(|e| BrokerError::Refused(e.to_string()))?;
            let info = stream
                .info()
                .await
                .map_err(|e| BrokerError::Unavailable(e.to_string()))?
                .clone();
            let live = &info.config;
            let differs = live.subjects != wanted.subjects
                || live.max_age != wanted.max_age
                || live.max_bytes != wanted.max_bytes
                || live.num_replicas != wanted.num_replicas;
            let state = if differs {
                let updated = js
                    .update_stream(wanted)
                    .await
                    .map_err(|e| BrokerError::Refused(e.to_string()))?;
                updated.state
            } else {
                info.state
            };
            Ok(StreamState {
                messages: state.messages,
                bytes: state.bytes,
                ..Default::default()
            })
        })
    }

    fn delete<'a>(
        &'a self,
        settings: &'a StreamSettings,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let js = match self.js(settings).await {
                Ok(js) => js,
                // No account (the tenant was refused, or its account is gone): no stream.
                Err(BrokerError::Unavailable(e))
                    if self.accounts.is_some() && crate::accounts::is_unknown_account(&e) =>
                {
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            match js.delete_stream(&settings.name).await {
                Ok(_) => Ok(()),
                Err(e) if e.to_string().contains("not found") => Ok(()),
                Err(e) => Err(BrokerError::Refused(e.to_string())),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(broker: sluice_crd::StreamBroker) -> StreamSettings {
        StreamSettings {
            broker,
            name: "sluice.acme.orders".into(),
            subjects: vec![],
            max_age: None,
            max_bytes: None,
            replicas: 1,
            partitions: 1,
            tenant_uid: None,
        }
    }

    #[tokio::test]
    async fn a_kafka_stream_on_a_platform_without_kafka_is_refused_and_deletes_cleanly() {
        // Never connected: the refusal comes before any broker is asked.
        let brokers = Brokers {
            nats: Arc::new(JetStream::new("nats://127.0.0.1:1", None)),
            kafka: None,
        };
        let refused = brokers
            .ensure(&settings(sluice_crd::StreamBroker::Kafka))
            .await
            .expect_err("no Kafka cluster");
        assert!(
            matches!(&refused, BrokerError::Refused(m) if m.contains("--kafka-bootstrap-servers")),
            "{refused}"
        );
        brokers
            .delete(&settings(sluice_crd::StreamBroker::Kafka))
            .await
            .expect("nothing to delete");
    }
}
