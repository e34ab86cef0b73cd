//! Ingest into Streams on Kafka, at the real Kafka-protocol broker the test command starts:
//! the same endpoint, schema checks and quotas as for NATS streams; the 202 comes once every
//! event is acknowledged; each event's partition follows the `Sluice-Partition-Key` header or
//! the Stream's `spec.partitionKey` field. In-process API, kubesim, a fresh PostgreSQL database.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::body::Body;
use common::{Db, TestApp, unique_tenant};
use http::{Request, StatusCode};
use serde_json::{Value, json};
use sluice_api::Config;
use sluice_testkit::kafka::{Record, create_topic, read_all};

/// A tenant with the Kafka stream `orders` (3 partitions, keyed by `customer.id`, a schema
/// that needs a string `id`), its topic made the way the operator makes it; the tenant, the
/// topic and a producer token.
async fn setup(app: &TestApp, quota: Value) -> (String, String, String) {
    let tenant = unique_tenant("kafka");
    app.tenant(&tenant, json!({"quota": quota})).await;
    let dev = app.token(&tenant, "setup", "developer").await;
    app.call(
        "POST",
        &format!("/v1/tenants/{tenant}/streams"),
        Some(&dev),
        Some(json!({"name": "orders", "spec": {
            "broker": "kafka", "partitions": 3, "partitionKey": "customer.id",
            "schema": {"type": "object", "required": ["id"],
                       "properties": {"id": {"type": "string"}}}}})),
    )
    .await
    .ok(201);
    let topic = format!("sluice.{tenant}.orders");
    create_topic(&topic, 3).await;
    app.set_stream_status(
        &tenant,
        "orders",
        json!({"broker": "kafka", "topic": topic, "partitions": 3}),
    )
    .await;
    let producer = app.token(&tenant, "producer", "producer").await;
    (tenant, topic, producer)
}

fn events_path(tenant: &str) -> String {
    format!("/v1/tenants/{tenant}/streams/orders/events")
}

/// An NDJSON request, with the partition key header when given.
fn request(tenant: &str, token: &str, key: Option<&[u8]>, body: String) -> Request<Body> {
    let mut b = Request::post(events_path(tenant))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/x-ndjson");
    if let Some(k) = key {
        b = b.header("sluice-partition-key", k);
    }
    b.body(Body::from(body)).unwrap()
}

fn order(i: usize) -> String {
    format!(
        "{{\"id\": \"o{i}\", \"customer\": {{\"id\": \"c{}\"}}}}\n",
        i % 5
    )
}

/// Partitions by key of what was read.
fn partitions_by_key(records: &[Record]) -> BTreeMap<Vec<u8>, BTreeSet<i32>> {
    let mut out: BTreeMap<Vec<u8>, BTreeSet<i32>> = BTreeMap::new();
    for r in records {
        out.entry(r.key.clone().expect("keyed"))
            .or_default()
            .insert(r.partition);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_the_topic_keyed_by_the_field_or_the_header() {
    let app = TestApp::start_kafka(Db::Postgres, Config::default()).await;
    let (tenant, topic, producer) = setup(&app, json!({})).await;

    // Keyed by the Stream's partitionKey: each customer's events share a partition. One
    // event breaks the schema: refused, the rest written.
    let body: String = (0..60).map(order).collect::<String>() + "{\"id\": 7}\n";
    let a = app.send(request(&tenant, &producer, None, body)).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{:?}", a.body);
    assert_eq!(a.body["accepted"], 60, "{}", a.body);
    assert_eq!(a.body["rejectedCount"], 1, "{}", a.body);
    assert_eq!(a.body["rejected"][0]["index"], 60, "{}", a.body);
    // The 202 came after the acknowledgements: everything is already there.
    let got = read_all(&topic, 60, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 60, "every accepted event is in the topic");
    let ids: BTreeSet<String> = got
        .iter()
        .map(|r| r.event["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, (0..60).map(|i| format!("o{i}")).collect());
    let by_key = partitions_by_key(&got);
    assert_eq!(by_key.len(), 5, "five customers: {by_key:?}");
    for (key, partitions) in &by_key {
        assert_eq!(
            partitions.len(),
            1,
            "{key:?} is on one partition: {partitions:?}"
        );
    }
    for r in &got {
        assert_eq!(
            r.key.as_deref(),
            r.event["customer"]["id"].as_str().map(str::as_bytes)
        );
    }

    // The header wins over the field: all 30 events take its key, so one partition.
    let body: String = (100..130).map(order).collect();
    let a = app
        .send(request(&tenant, &producer, Some(b"region-eu"), body))
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{:?}", a.body);
    assert_eq!(a.body["accepted"], 30);
    let got = read_all(&topic, 90, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 90);
    let eu: Vec<&Record> = got
        .iter()
        .filter(|r| r.key.as_deref() == Some(b"region-eu"))
        .collect();
    assert_eq!(eu.len(), 30);
    assert_eq!(
        eu.iter()
            .map(|r| r.partition)
            .collect::<BTreeSet<_>>()
            .len(),
        1,
        "one key, one partition"
    );

    // A key just past its limit, or empty: 400 naming the header, nothing written.
    for key in [vec![b'k'; 1025], vec![]] {
        let a = app
            .send(request(&tenant, &producer, Some(&key), order(1)))
            .await;
        a.problem(400, "bad-request");
        assert!(
            a.body["detail"]
                .as_str()
                .unwrap()
                .contains("Sluice-Partition-Key"),
            "{}",
            a.body
        );
    }
    let a = app
        .send(request(&tenant, &producer, Some(&[b'k'; 1024]), order(2)))
        .await;
    assert_eq!(
        a.status,
        StatusCode::ACCEPTED,
        "exactly the limit: {:?}",
        a.body
    );
    let got = read_all(&topic, 92, Duration::from_secs(10)).await;
    assert_eq!(
        got.len(),
        91,
        "only the request within the limit was written"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_streams_have_the_same_rate_quota_and_tenant_boundaries() {
    let app = TestApp::start_kafka(Db::Postgres, Config::default()).await;
    let (tenant, topic, producer) =
        setup(&app, json!({"ingest": {"eventsPerSecond": 1, "burst": 10}})).await;
    let body: String = (0..10).map(order).collect();
    let a = app.send(request(&tenant, &producer, None, body)).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "the burst: {:?}", a.body);
    let a = app.send(request(&tenant, &producer, None, order(10))).await;
    a.problem(429, "rate-limited");
    assert!(a.headers.get("retry-after").is_some());

    // Another tenant's producer cannot write into this tenant's Kafka stream.
    let other = unique_tenant("kafka-other");
    app.tenant(&other, json!({})).await;
    let stranger = app.token(&other, "producer", "producer").await;
    let a = app.send(request(&tenant, &stranger, None, order(11))).await;
    a.problem(404, "not-found");
    let got = read_all(&topic, 11, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 10, "only the burst was written");
    app.shutdown().await;
}
