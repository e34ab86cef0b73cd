//! Kafka routes at a real Kafka-protocol broker (`$SLUICE_TEST_KAFKA_BOOTSTRAP`, by default
//! `127.0.0.1:9092`, which the test command starts):
//! - a route reads a topic in its consumer group, filters, and produces to another topic keyed
//!   by a field, every accepted event arriving; its group's committed offsets then cover every
//!   event read;
//! - a worker killed with SIGKILL while it holds events loses none: the next one delivers them;
//! - two replicas of a route split the partitions, and together deliver every event once;
//! - a route that starts from a time reads exactly the events from that time on.

use sluice_testkit::kafka::{bootstrap, committed, create_topic, producer, read_all, send, unique};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

mod common;
use common::{InProcess, Process, Receiver, eventually, order, write_config};
use nix::sys::signal::Signal;
use std::sync::atomic::Ordering;

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

/// A route from `topic` (group `group`, starting as `start` says) to the HTTP receiver at
/// `url`.
fn http_route(topic: &str, group: &str, start: &str, url: &str) -> sluice_core::route::RouteConfig {
    let kafka = format!(r#"{{"bootstrapServers": "{}"}}"#, bootstrap());
    let text = format!(
        r#"{{
          "tenant": "acme", "pipeline": "orders", "route": "hook",
          "source": {{"kind": "kafka", "kafka": {kafka}, "topic": "{topic}", "group": "{group}",
                     {start}}},
          "sink": {{"kind": "http", "url": "{url}"}},
          "batching": {{"maxEvents": 50, "maxWaitMs": 20}},
          "retry": {{"initialBackoffMs": 20, "maxBackoffMs": 200, "maxDeliver": 1000}},
          "deadLetter": {{"url": "nats://127.0.0.1:4222", "subject": "unused",
                          "kafka": {{"kafka": {kafka}, "topic": "{topic}.dead-letter.orders"}}}},
          "sinkPolicy": {{"allowLoopback": true}}
        }}"#
    );
    sluice_worker::config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// The partitions a worker process holds now, from its last `partitions assigned` or
/// `partitions revoked` log line.
fn assigned(p: &Process) -> Vec<i32> {
    let lines = p.stderr.lock().unwrap();
    let Some(last) = lines
        .iter()
        .rev()
        .find(|l| l.contains("partitions assigned") || l.contains("partitions revoked"))
    else {
        return vec![];
    };
    if last.contains("partitions revoked") {
        return vec![];
    }
    let list = last
        .split("partitions=[")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .unwrap_or("");
    list.split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_no_event() {
    let id = unique("kill");
    let topic = format!("sluice.{id}.orders");
    create_topic(&topic, 3).await;
    create_topic(&format!("{topic}.dead-letter.orders"), 1).await;
    let (rx, url) = Receiver::start().await;
    // The sink fails while the first worker runs: it holds its events, retrying.
    rx.status.store(503, Ordering::SeqCst);
    let group = format!("sluice.{id}.orders.hook");
    let config = http_route(&topic, &group, r#""startFrom": "all""#, &url);
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &config);
    let producer = producer();
    let total = 240;
    for i in 0..total {
        send(&producer, &topic, (i % 3) as i32, &order(i)).await;
    }
    let mut first = Process::start(&path);
    eventually("the first worker holds events mid-batch", || async {
        rx.requests.load(Ordering::SeqCst) > 3
    })
    .await;
    first.signal(Signal::SIGKILL);
    assert!(!first.wait().success());
    assert_eq!(rx.count(), 0, "nothing was delivered before the kill");
    assert!(
        committed(&group, &topic, 3).values().all(|o| *o == 0),
        "no offset passed an undelivered event: {:?}",
        committed(&group, &topic, 3)
    );

    rx.status.store(200, Ordering::SeqCst);
    let second = Process::start(&path);
    let want: BTreeSet<u64> = (0..total as u64).collect();
    eventually("every event to arrive after the kill", || async {
        rx.ids() == want
    })
    .await;
    eventually("the group's offsets to reach the end", || async {
        committed(&group, &topic, 3) == BTreeMap::from([(0, 80), (1, 80), (2, 80)])
    })
    .await;
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_split_the_partitions() {
    let id = unique("split");
    let topic = format!("sluice.{id}.orders");
    create_topic(&topic, 4).await;
    create_topic(&format!("{topic}.dead-letter.orders"), 1).await;
    let (rx, url) = Receiver::start().await;
    let group = format!("sluice.{id}.orders.hook");
    let config = http_route(&topic, &group, r#""startFrom": "all""#, &url);
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &config);
    let a = Process::start(&path);
    let b = Process::start(&path);
    eventually("the replicas to share the four partitions", || async {
        let (pa, pb) = (assigned(&a), assigned(&b));
        let mut all: Vec<i32> = pa.iter().chain(&pb).copied().collect();
        all.sort();
        !pa.is_empty() && !pb.is_empty() && all == [0, 1, 2, 3]
    })
    .await;
    let producer = producer();
    let total = 400;
    for i in 0..total {
        send(&producer, &topic, (i % 4) as i32, &order(i)).await;
    }
    let want: BTreeSet<u64> = (0..total as u64).collect();
    eventually("every event to arrive", || async { rx.ids() == want }).await;
    assert_eq!(
        rx.count(),
        total,
        "each event once: the replicas do not overlap"
    );
    let (ina, inb) = (
        common::metric(a.metrics, "events_in_total", None).await,
        common::metric(b.metrics, "events_in_total", None).await,
    );
    assert!(
        ina > 0.0 && inb > 0.0,
        "both replicas read: {ina} and {inb}"
    );
    assert_eq!(ina + inb, total as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_starting_from_a_time_reads_the_events_from_then_on() {
    let id = unique("time");
    let topic = format!("sluice.{id}.orders");
    create_topic(&topic, 2).await;
    create_topic(&format!("{topic}.dead-letter.orders"), 1).await;
    let producer = producer();
    for i in 0..60 {
        send(&producer, &topic, (i % 2) as i32, &order(i)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let from = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 60..100 {
        send(&producer, &topic, (i % 2) as i32, &order(i)).await;
    }
    let (rx, url) = Receiver::start().await;
    let group = format!("sluice.{id}.orders.hook");
    let start = format!(r#""startFrom": "time", "startTime": "{from}""#);
    let worker = InProcess::start(http_route(&topic, &group, &start, &url)).await;
    let want: BTreeSet<u64> = (60..100).collect();
    eventually("the events from the start time to arrive", || async {
        rx.ids().len() >= want.len()
    })
    .await;
    // A moment for anything older to show up, were it read.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.ids(), want, "exactly the events at or after {from}");
    worker.stop().await;
}
