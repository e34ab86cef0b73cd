//! The Kafka-protocol broker of the tests: `$SLUICE_TEST_KAFKA_BOOTSTRAP`, by default
//! `127.0.0.1:9092`, which the test command starts. Topics, a producer with `acks=all`, and
//! readers of what a topic and a consumer group hold, through the raw librdkafka client.

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::BTreeMap;
use std::time::Duration;

/// The bootstrap servers of the tests' broker.
pub fn bootstrap() -> String {
    std::env::var("SLUICE_TEST_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// A name no earlier run used: `<prefix><nanoseconds>`.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}{nanos}")
}

/// Creates `name` with `partitions` partitions (replication 1).
pub async fn create_topic(name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .unwrap();
    let results = admin
        .create_topics(
            [&NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("the Kafka-protocol broker answers (the test command starts it)");
    for r in results {
        r.unwrap_or_else(|e| panic!("topic {name}: {e:?}"));
    }
}

/// A producer with `acks=all`.
pub fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("acks", "all")
        .create()
        .unwrap()
}

/// Writes `payload` to `partition` of `topic`, waiting for the acknowledgement.
pub async fn send(producer: &FutureProducer, topic: &str, partition: i32, payload: &[u8]) {
    producer
        .send(
            FutureRecord::<[u8], [u8]>::to(topic)
                .payload(payload)
                .partition(partition),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("produce to {topic}: {e}"));
}

/// One message as read back.
#[derive(Debug, Clone)]
pub struct Record {
    /// The partition it was on.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its key, if any.
    pub key: Option<Vec<u8>>,
    /// Its payload as JSON (`null` when it is not JSON).
    pub event: serde_json::Value,
}

/// Reads `topic` from the start, in a group of its own, until `want` messages arrived or
/// `within` passed; returns what arrived (so a test sees what is missing).
pub async fn read_all(topic: &str, want: usize, within: Duration) -> Vec<Record> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique(&format!("{topic}-reader-")))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = vec![];
    let _ = tokio::time::timeout(within, async {
        while out.len() < want {
            let m = consumer.recv().await.unwrap();
            out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                event: serde_json::from_slice(m.payload().unwrap_or_default())
                    .unwrap_or(serde_json::Value::Null),
            });
        }
    })
    .await;
    out
}

/// The committed offsets of `group` on partitions `0..partitions` of `topic`; partitions
/// with none are left out.
pub fn committed(group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let Ok(c) = consumer.committed_offsets(tpl, Duration::from_secs(10)) else {
        return BTreeMap::new();
    };
    c.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            rdkafka::Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// The topics at the broker whose name starts with `prefix`.
pub fn topics_with_prefix(prefix: &str) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("the broker's metadata");
    let mut names: Vec<String> = metadata
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}
