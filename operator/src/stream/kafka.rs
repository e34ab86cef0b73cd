//! Kafka topics for Streams whose broker is `kafka` (any broker speaking the Kafka protocol).
//!
//! One topic per Stream, named [`topic_name`] (`sluice.<tenant>.<stream>`: tenant and stream
//! names are DNS labels, so the name is a valid topic name and never collides with another
//! tenant's). [`plan`] decides, from what the broker reports, whether to create the topic,
//! grow its partitions, or refuse a shrink; [`KafkaTopics`] carries it out with librdkafka's
//! admin API. Retention follows the spec: `retention.ms` from `maxAge`, and `retention.bytes`,
//! which Kafka applies per partition, from `maxBytes` divided over the partitions.
//!
//! Metadata is always fetched for the whole cluster, never for one topic: a metadata request
//! naming a topic can create it on brokers that create topics on first use.

use super::broker::{Broker, BrokerError, StreamSettings, StreamState};
use futures::future::BoxFuture;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;
use std::sync::Arc;
use std::time::Duration;

/// How long one admin or metadata request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The topic of stream `stream` of tenant `tenant`.
pub fn topic_name(tenant: &str, stream: &str) -> String {
    format!("sluice.{tenant}.{stream}")
}

/// The per-pipeline dead-letter topic of pipeline `pipeline` reading Kafka stream `stream`:
/// `sluice.<tenant>.<stream>.dead-letter.<pipeline>`. It lives as long as its source stream
/// (deleting the Stream deletes it), as the default dead-letter subject of a NATS stream does.
pub fn dead_letter_topic(tenant: &str, stream: &str, pipeline: &str) -> String {
    format!(
        "{}{pipeline}",
        dead_letter_prefix(&topic_name(tenant, stream))
    )
}

/// What the dead-letter topics of the pipelines reading `topic` start with.
pub fn dead_letter_prefix(topic: &str) -> String {
    format!("{topic}.dead-letter.")
}

/// The topics that go with a stream's topic (pure): itself and its dead-letter topics,
/// among the cluster's `topics`.
pub fn topics_of_stream<'a>(topic: &str, topics: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let prefix = dead_letter_prefix(topic);
    topics
        .into_iter()
        .filter(|t| *t == topic || t.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// What to do to a topic (pure: from its partitions at the broker, if it exists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Create it with the spec's partitions.
    Create,
    /// Add partitions, up to this count.
    Grow(usize),
    /// It has the spec's partitions.
    Keep,
    /// It has more partitions than the spec: partitions never shrink.
    Refuse(String),
}

/// The plan for a topic that has `current` partitions (`None`: no such topic) and should have
/// `wanted`.
pub fn plan(current: Option<usize>, wanted: usize) -> Plan {
    match current {
        None => Plan::Create,
        Some(n) if n < wanted => Plan::Grow(wanted),
        Some(n) if n == wanted => Plan::Keep,
        Some(n) => Plan::Refuse(format!(
            "the topic has {n} partitions and the spec asks for {wanted}: partitions may grow \
             but never shrink"
        )),
    }
}

/// The topic configuration of the spec's retention: `retention.ms` and `retention.bytes`
/// (per partition), `-1` for unlimited.
pub fn retention_config(settings: &StreamSettings) -> [(&'static str, String); 2] {
    let ms = settings
        .max_age
        .map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let partitions = settings.partitions.max(1) as i64;
    let bytes = settings
        .max_bytes
        .map_or(-1, |b| (b + partitions - 1) / partitions);
    [
        ("retention.ms", ms.to_string()),
        ("retention.bytes", bytes.to_string()),
    ]
}

/// The Kafka cluster the operator provisions topics in.
#[derive(Clone)]
pub struct KafkaTopics {
    admin: Arc<AdminClient<DefaultClientContext>>,
    bootstrap: String,
}

impl KafkaTopics {
    /// A cluster reached at `bootstrap` (`host:port[,host:port…]`), with the extra librdkafka
    /// `properties` (TLS, SASL). Nothing is connected until the first request.
    pub fn new(bootstrap: &str, properties: &[(String, String)]) -> Result<Self, String> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", bootstrap);
        for (k, v) in properties {
            config.set(k, v);
        }
        let admin = config
            .create::<AdminClient<DefaultClientContext>>()
            .map_err(|e| format!("Kafka client for {bootstrap}: {e}"))?;
        Ok(KafkaTopics {
            admin: Arc::new(admin),
            bootstrap: bootstrap.to_string(),
        })
    }

    fn options() -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(REQUEST_TIMEOUT))
            .operation_timeout(Some(REQUEST_TIMEOUT))
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> BrokerError {
        BrokerError::Unavailable(format!("Kafka at {}: {e}", self.bootstrap))
    }

    /// Every topic of the cluster with its partition count (blocking call, run on the
    /// blocking pool).
    async fn topics(&self) -> Result<Vec<(String, usize)>, BrokerError> {
        let admin = self.admin.clone();
        let metadata = tokio::task::spawn_blocking(move || {
            admin.inner().fetch_metadata(None, REQUEST_TIMEOUT)
        })
        .await
        .map_err(|e| self.unavailable(e))?
        .map_err(|e| self.unavailable(e))?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| (t.name().to_string(), t.partitions().len()))
            .collect())
    }

    /// The partition count of `topic`, `None` when it does not exist.
    async fn partitions(&self, topic: &str) -> Result<Option<usize>, BrokerError> {
        Ok(self
            .topics()
            .await?
            .into_iter()
            .find(|(name, _)| name == topic)
            .map(|(_, n)| n))
    }

    /// The end offset of each partition of `topic`, and the events retained in all.
    async fn offsets(
        &self,
        topic: &str,
        partitions: usize,
    ) -> Result<(Vec<i64>, u64), BrokerError> {
        let admin = self.admin.clone();
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || {
            let mut ends = Vec::with_capacity(partitions);
            let mut held = 0u64;
            for p in 0..partitions {
                let (low, high) =
                    admin
                        .inner()
                        .fetch_watermarks(&topic, p as i32, REQUEST_TIMEOUT)?;
                ends.push(high);
                held += (high - low).max(0) as u64;
            }
            Ok::<_, rdkafka::error::KafkaError>((ends, held))
        })
        .await
        .map_err(|e| self.unavailable(e))?
        .map_err(|e| self.unavailable(e))
    }

    async fn create(&self, s: &StreamSettings) -> Result<(), BrokerError> {
        let retention = retention_config(s);
        let mut topic = NewTopic::new(
            &s.name,
            s.partitions.max(1) as i32,
            TopicReplication::Fixed(s.replicas.max(1) as i32),
        );
        for (k, v) in &retention {
            topic = topic.set(k, v);
        }
        let results = self
            .admin
            .create_topics([&topic], &Self::options())
            .await
            .map_err(|e| self.unavailable(e))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(BrokerError::Refused(format!(
                        "creating topic {name}: {code}"
                    )));
                }
            }
        }
        Ok(())
    }

    async fn grow(&self, s: &StreamSettings, to: usize) -> Result<(), BrokerError> {
        let partitions = NewPartitions::new(&s.name, to);
        let results = match self
            .admin
            .create_partitions([&partitions], &Self::options())
            .await
        {
            Ok(results) => results,
            Err(rdkafka::error::KafkaError::AdminOp(RDKafkaErrorCode::UnsupportedFeature)) => {
                return Err(BrokerError::Refused(format!(
                    "the broker cannot add partitions to topic {} (it does not implement \
                     CreatePartitions), so it keeps the ones it has",
                    s.name
                )));
            }
            Err(e) => return Err(self.unavailable(e)),
        };
        for r in results {
            if let Err((name, code)) = r {
                return Err(BrokerError::Refused(format!(
                    "growing topic {name} to {to} partitions: {code}"
                )));
            }
        }
        Ok(())
    }

    /// Brings the topic's retention in line with the spec, when the broker reports it: on a
    /// broker without the config APIs, answers why it was left as created.
    async fn set_retention(&self, s: &StreamSettings) -> Result<Option<String>, BrokerError> {
        let wanted = retention_config(s);
        let described = self
            .admin
            .describe_configs([&ResourceSpecifier::Topic(&s.name)], &Self::options())
            .await;
        let current = match described {
            Ok(results) => match results.into_iter().next() {
                Some(Ok(resource)) => resource,
                Some(Err(code)) => {
                    return Err(BrokerError::Refused(format!(
                        "describing topic {}: {code}",
                        s.name
                    )));
                }
                None => return Err(self.unavailable("no answer to DescribeConfigs")),
            },
            Err(rdkafka::error::KafkaError::AdminOp(RDKafkaErrorCode::UnsupportedFeature)) => {
                return Ok(Some(
                    "the broker does not report topic configurations, so the retention stays as \
                     the topic was created with"
                        .into(),
                ));
            }
            Err(e) => return Err(self.unavailable(e)),
        };
        let differs = wanted
            .iter()
            .any(|(k, v)| current.get(k).and_then(|e| e.value.as_deref()) != Some(v.as_str()));
        if !differs {
            return Ok(None);
        }
        let mut change = AlterConfig::new(ResourceSpecifier::Topic(&s.name));
        for (k, v) in &wanted {
            change = change.set(k, v);
        }
        let results = match self.admin.alter_configs([&change], &Self::options()).await {
            Ok(results) => results,
            Err(rdkafka::error::KafkaError::AdminOp(RDKafkaErrorCode::UnsupportedFeature)) => {
                return Ok(Some(
                    "the broker does not change topic configurations (it does not implement \
                     AlterConfigs), so the retention stays as the topic was created with"
                        .into(),
                ));
            }
            Err(e) => return Err(self.unavailable(e)),
        };
        for r in results {
            if let Err((_, code)) = r {
                return Err(BrokerError::Refused(format!(
                    "setting the retention of topic {}: {code}",
                    s.name
                )));
            }
        }
        Ok(None)
    }
}

impl Broker for KafkaTopics {
    fn ensure<'a>(
        &'a self,
        settings: &'a StreamSettings,
    ) -> BoxFuture<'a, Result<StreamState, BrokerError>> {
        Box::pin(async move {
            let wanted = settings.partitions.max(1);
            let note = match plan(self.partitions(&settings.name).await?, wanted) {
                Plan::Create => {
                    self.create(settings).await?;
                    None
                }
                Plan::Grow(to) => {
                    self.grow(settings, to).await?;
                    self.set_retention(settings).await?
                }
                Plan::Keep => self.set_retention(settings).await?,
                Plan::Refuse(why) => return Err(BrokerError::Refused(why)),
            };
            // A new topic's partitions can take a moment to appear in the metadata.
            let mut partitions = None;
            for _ in 0..20 {
                partitions = self.partitions(&settings.name).await?;
                if partitions.is_some_and(|n| n >= wanted) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let partitions = partitions.ok_or_else(|| {
                self.unavailable(format!("topic {} is not in the metadata", settings.name))
            })?;
            let (end_offsets, messages) = self.offsets(&settings.name, partitions).await?;
            Ok(StreamState {
                messages,
                bytes: 0,
                partitions: Some(partitions),
                end_offsets,
                note,
            })
        })
    }

    fn delete<'a>(
        &'a self,
        settings: &'a StreamSettings,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let all = self.topics().await?;
            let doomed = topics_of_stream(&settings.name, all.iter().map(|(t, _)| t.as_str()));
            if doomed.is_empty() {
                return Ok(());
            }
            let doomed: Vec<&str> = doomed.iter().map(String::as_str).collect();
            let results = self
                .admin
                .delete_topics(&doomed, &Self::options())
                .await
                .map_err(|e| self.unavailable(e))?;
            for r in results {
                match r {
                    Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                    Err((name, code)) => {
                        return Err(BrokerError::Refused(format!(
                            "deleting topic {name}: {code}"
                        )));
                    }
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_takes_its_dead_letter_topics_along() {
        let topic = topic_name("acme", "orders");
        let dead = dead_letter_topic("acme", "orders", "alerts");
        assert_eq!(dead, "sluice.acme.orders.dead-letter.alerts");
        let cluster = [
            topic.as_str(),
            dead.as_str(),
            "sluice.acme.orders-eu",
            "sluice.acme.orders-eu.dead-letter.x",
            "sluice.other.orders",
        ];
        assert_eq!(topics_of_stream(&topic, cluster), [topic.clone(), dead]);
    }

    #[test]
    fn partitions_grow_and_never_shrink() {
        assert_eq!(plan(None, 3), Plan::Create);
        assert_eq!(plan(Some(3), 3), Plan::Keep);
        assert_eq!(plan(Some(3), 5), Plan::Grow(5));
        let Plan::Refuse(why) = plan(Some(5), 3) else {
            panic!("a shrink is refused");
        };
        assert!(why.contains("never shrink"), "{why}");
    }

    #[test]
    fn retention_is_per_partition_bytes_and_milliseconds() {
        let s = StreamSettings {
            name: topic_name("acme", "orders"),
            subjects: vec![],
            max_age: Some(Duration::from_secs(3600)),
            max_bytes: Some(1000),
            replicas: 1,
            partitions: 3,
            tenant_uid: None,
            broker: sluice_crd::StreamBroker::Kafka,
        };
        assert_eq!(s.name, "sluice.acme.orders");
        assert_eq!(
            retention_config(&s),
            [
                ("retention.ms", "3600000".to_string()),
                ("retention.bytes", "334".to_string())
            ]
        );
        let unlimited = StreamSettings {
            max_age: None,
            max_bytes: None,
            ..s
        };
        assert_eq!(retention_config(&unlimited)[0].1, "-1");
        assert_eq!(retention_config(&unlimited)[1].1, "-1");
    }
}
