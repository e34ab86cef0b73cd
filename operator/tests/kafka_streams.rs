//! Kafka streams at a real Kafka-protocol broker (`$SLUICE_TEST_KAFKA_BOOTSTRAP`, by default
//! `127.0.0.1:9092`, which the test command starts): a Stream on `kafka` gets its topic with
//! the spec's partitions; its status shows the partition count and the end offsets; the
//! partitions grow in place and the API server refuses a shrink; a pipeline reading it gets
//! routes with a Kafka source and its dead-letter topic; deleting the Stream deletes both
//! topics.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use rdkafka::ClientConfig;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use sluice_crd::{Pipeline, Stream, Tenant};
use sluice_operator::config::{KafkaConfig, OperatorConfig};
use sluice_testkit::SimCluster;
use std::time::Duration;

mod common;
use common::{Operator, client, eventually, nats_url, operator_client};

fn kafka_bootstrap() -> String {
    std::env::var("SLUICE_TEST_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// The partitions of `topic` at the broker, `None` when it does not exist.
fn partitions_at_broker(topic: &str) -> Option<usize> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .create()
        .unwrap();
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("the Kafka-protocol broker answers (the test command starts it)");
    metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
}

async fn stream_status(api: &Api<Stream>, name: &str) -> serde_json::Value {
    serde_json::to_value(api.get(name).await.unwrap().status).unwrap()
}

/// Waits up to 30 s for the status of Stream `orders` to satisfy `check`; fails showing it.
async fn until(api: &Api<Stream>, what: &str, check: impl Fn(&serde_json::Value) -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while !check(&stream_status(api, "orders").await) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "timed out waiting for {what}; the status: {}",
        stream_status(api, "orders").await
    );
}

#[test]
fn a_kafka_stream_is_a_topic_with_its_partitions_that_goes_with_it() {
    let sim = SimCluster::start();
    // A tenant of its own, so that runs against the same broker never meet.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let tenant = format!("k{nanos}");
    let ns = format!("sluice-{tenant}");
    let topic = format!("sluice.{tenant}.orders");
    sim.block_on(async {
        let admin = client(&sim);
        let config = OperatorConfig {
            nats_url: nats_url(),
            kafka: Some(KafkaConfig {
                bootstrap_servers: kafka_bootstrap(),
                properties: vec![],
                worker_properties: vec![],
                namespace: "kafka".into(),
                port: 9092,
            }),
            resync: Duration::from_secs(1),
            ..Default::default()
        };
        let op = Operator::start_with(operator_client(&sim), config, None);
        Api::<Tenant>::all(admin.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "sluice.dev/v1alpha1", "kind": "Tenant",
                    "metadata": {"name": tenant},
                    "spec": {"owners": [{"kind": "User", "name": "alice"}], "quota": {}}
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        eventually("the tenant namespace", || async {
            Api::<Namespace>::all(admin.clone())
                .get_opt(&ns)
                .await
                .unwrap()
                .is_some()
        })
        .await;

        let streams = Api::<Stream>::namespaced(admin.clone(), &ns);
        streams
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "sluice.dev/v1alpha1", "kind": "Stream",
                    "metadata": {"name": "orders", "namespace": ns},
                    "spec": {"broker": "kafka", "partitions": 3,
                             "retention": {"maxAge": "1h", "maxBytes": 3_000_000}}
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        until(&streams, "the topic, in the Stream's status", |s| {
            s["topic"] == json!(topic) && s["partitions"] == 3
        })
        .await;
        let s = stream_status(&streams, "orders").await;
        assert_eq!(s["broker"], "kafka");
        assert_eq!(s["endOffsets"], json!([0, 0, 0]), "{s}");
        assert!(s.get("subject").is_none(), "no NATS subject: {s}");
        assert_eq!(partitions_at_broker(&topic), Some(3));

        // Events written to the topic show in the end offsets.
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", kafka_bootstrap())
            .set("acks", "all")
            .create()
            .unwrap();
        for i in 0..5 {
            let payload = format!("{{\"n\":{i}}}");
            producer
                .send(
                    FutureRecord::<(), _>::to(&topic)
                        .partition(1)
                        .payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .expect("the broker takes the event");
        }
        until(&streams, "the end offsets to count the events", |s| {
            s["endOffsets"] == json!([0, 5, 0])
        })
        .await;

        // Partitions grow in place (CreatePartitions); a broker without that request says so
        // in the Ready condition, and the topic keeps its partitions.
        streams
            .patch(
                "orders",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"partitions": 5}})),
            )
            .await
            .unwrap();
        until(&streams, "five partitions, or the broker's refusal", |s| {
            s["partitions"] == 5 || s.to_string().contains("cannot add partitions")
        })
        .await;
        let grown = stream_status(&streams, "orders").await["partitions"] == 5;
        assert_eq!(
            partitions_at_broker(&topic),
            Some(if grown { 5 } else { 3 }),
            "the status tells the broker's partitions"
        );
        if !grown {
            let s = stream_status(&streams, "orders").await;
            let ready = s["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "Ready")
                .unwrap()
                .clone();
            assert_eq!(ready["status"], "False", "{s}");
            assert_eq!(ready["reason"], "BrokerRefused", "{s}");
        }
        let shrink = streams
            .patch(
                "orders",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"partitions": 2}})),
            )
            .await
            .expect_err("partitions never shrink");
        assert!(shrink.to_string().contains("never shrink"), "{shrink}");
        let moved = streams
            .patch(
                "orders",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"broker": "nats"}})),
            )
            .await
            .expect_err("the broker is immutable");
        assert!(moved.to_string().contains("broker is immutable"), "{moved}");

        // A pipeline reading it: its route reads the topic in a consumer group of its own,
        // and its dead letters go to a per-pipeline topic, made at once.
        Api::<Pipeline>::namespaced(admin.clone(), &ns)
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline",
                    "metadata": {"name": "alerts", "namespace": ns},
                    "spec": {"source": {"stream": "orders"},
                             "sinks": [{"name": "out", "nats": {"subject": "alerts"}}]}
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        let maps = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(admin.clone(), &ns);
        eventually("the route's configuration", || async {
            maps.get_opt("alerts-out").await.unwrap().is_some()
        })
        .await;
        let map = maps.get("alerts-out").await.unwrap();
        let config = sluice_core::route::RouteConfig::from_json(
            &map.data.unwrap()[sluice_core::route::CONFIG_KEY],
        )
        .unwrap();
        let sluice_core::route::Source::Kafka {
            topic: read, group, ..
        } = &config.source
        else {
            panic!("a Kafka source: {:?}", config.source);
        };
        assert_eq!(read, &topic);
        assert_eq!(group, &format!("sluice.{tenant}.alerts.out"));
        let dead_letters = format!("{topic}.dead-letter.alerts");
        assert_eq!(
            config.dead_letter.kafka.as_ref().map(|d| d.topic.as_str()),
            Some(dead_letters.as_str())
        );
        eventually("the dead-letter topic", || async {
            partitions_at_broker(&dead_letters) == Some(1)
        })
        .await;

        // Deleting the Stream deletes the topic (the finalizer).
        streams
            .delete("orders", &DeleteParams::default())
            .await
            .unwrap();
        eventually("the Stream to go", || async {
            streams.get_opt("orders").await.unwrap().is_none()
        })
        .await;
        assert_eq!(partitions_at_broker(&topic), None, "the topic is deleted");
        eventually("the dead-letter topic to go too", || async {
            partitions_at_broker(&dead_letters).is_none()
        })
        .await;
        op.assert_running();
        op.stop().await;
    });
}
