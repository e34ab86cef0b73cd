//! Kafka routes at a real Kafka-protocol broker (`$SLUICE_TEST_KAFKA_BOOTSTRAP`, by default
//! `127.0.0.1:9092`, which the test command starts): a route reads a topic in its consumer
//! group, filters, and produces to another topic keyed by a field, every accepted event
//! arriving; its group's committed offsets then cover every event read.

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::BTreeMap;
use std::time::Duration;

mod common;
use common::{InProcess, eventually, order};

fn bootstrap() -> String {
    std::env::var("SLUICE_TEST_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

async fn create_topic(name: &str, partitions: i32) {
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
        r.unwrap();
    }
}

/// Reads every message of `topic` from the start, until `want` arrived (or 30 s passed).
async fn read_all(topic: &str, want: usize) -> Vec<(Option<Vec<u8>>, serde_json::Value)> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", format!("{topic}-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = vec![];
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while out.len() < want {
            let m = consumer.recv().await.unwrap();
            out.push((
                m.key().map(<[u8]>::to_vec),
                serde_json::from_slice(m.payload().unwrap()).unwrap(),
            ));
        }
    })
    .await;
    out
}

#[tokio::test]
async fn a_kafka_route_filters_and_produces_every_event_keyed_by_its_field() {
    let id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let input = format!("sluice.test{id}.orders");
    let output = format!("sluice.test{id}.big");
    let dead = format!("{input}.dead-letter.orders");
    create_topic(&input, 3).await;
    create_topic(&output, 2).await;
    create_topic(&dead, 1).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("acks", "all")
        .create()
        .unwrap();
    let total = 300;
    for i in 0..total {
        let payload = order(i);
        producer
            .send(
                FutureRecord::<[u8], [u8]>::to(&input)
                    .payload(&payload)
                    .partition((i % 3) as i32),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    let group = format!("sluice.test{id}.orders.big");
    let kafka = format!(r#"{{"bootstrapServers": "{}"}}"#, bootstrap());
    let text = format!(
        r#"{{
          "tenant": "acme", "pipeline": "orders", "route": "big",
          "source": {{"kind": "kafka", "kafka": {kafka}, "topic": "{input}", "group": "{group}",
                     "startFrom": "all"}},
          "filter": "event.amount >= 100",
          "sink": {{"kind": "kafka", "kafka": {kafka}, "topic": "{output}", "key": "customer.id"}},
          "batching": {{"maxEvents": 50, "maxWaitMs": 20}},
          "retry": {{"initialBackoffMs": 20, "maxBackoffMs": 200, "maxDeliver": 100}},
          "deadLetter": {{"url": "nats://127.0.0.1:4222", "subject": "unused",
                          "kafka": {{"kafka": {kafka}, "topic": "{dead}"}}}}
        }}"#
    );
    let config = sluice_worker::config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let worker = InProcess::start(config).await;
    let wanted: Vec<usize> = (0..total).filter(|i| i % 200 >= 100).collect();
    let got = read_all(&output, wanted.len()).await;
    let mut ids: Vec<u64> = got.iter().map(|(_, e)| e["id"].as_u64().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids,
        wanted.iter().map(|i| *i as u64).collect::<Vec<_>>(),
        "every event that passes the filter arrives"
    );
    for (key, event) in &got {
        assert_eq!(
            key.as_deref(),
            event["customer"]["id"].as_str().map(str::as_bytes),
            "keyed by customer.id"
        );
    }
    // Offsets are committed for every event read, filtered ones included.
    eventually("the group's offsets to reach the end", || async {
        committed(&group, &input) == BTreeMap::from([(0, 100), (1, 100), (2, 100)])
    })
    .await;
    worker.stop().await;
}

/// The committed offsets of `group` on `topic`'s three partitions.
fn committed(group: &str, topic: &str) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..3 {
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
