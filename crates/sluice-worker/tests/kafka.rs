//! Kafka routes at a real Kafka-protocol broker (`$SLUICE_TEST_KAFKA_BOOTSTRAP`, by default
//! `127.0.0.1:9092`, which the test command starts): a route reads a topic in its consumer
//! group, filters, and produces to another topic keyed by a field, every accepted event
//! arriving; its group's committed offsets then cover every event read.

use sluice_testkit::kafka::{bootstrap, committed, create_topic, producer, read_all, send, unique};
use std::collections::BTreeMap;
use std::time::Duration;

mod common;
use common::{InProcess, eventually, order};

#[tokio::test]
async fn a_kafka_route_filters_and_produces_every_event_keyed_by_its_field() {
    let id = unique("test");
    let input = format!("sluice.{id}.orders");
    let output = format!("sluice.{id}.big");
    let dead = format!("{input}.dead-letter.orders");
    create_topic(&input, 3).await;
    create_topic(&output, 2).await;
    create_topic(&dead, 1).await;
    let producer = producer();
    let total = 300;
    for i in 0..total {
        send(&producer, &input, (i % 3) as i32, &order(i)).await;
    }
    let group = format!("sluice.{id}.orders.big");
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
    let got = read_all(&output, wanted.len(), Duration::from_secs(30)).await;
    let mut ids: Vec<u64> = got
        .iter()
        .map(|r| r.event["id"].as_u64().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids,
        wanted.iter().map(|i| *i as u64).collect::<Vec<_>>(),
        "every event that passes the filter arrives"
    );
    for r in &got {
        assert_eq!(
            r.key.as_deref(),
            r.event["customer"]["id"].as_str().map(str::as_bytes),
            "keyed by customer.id"
        );
    }
    // Offsets are committed for every event read, filtered ones included.
    eventually("the group's offsets to reach the end", || async {
        committed(&group, &input, 3) == BTreeMap::from([(0, 100), (1, 100), (2, 100)])
    })
    .await;
    worker.stop().await;
}
