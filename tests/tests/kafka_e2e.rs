//! End to end on Kafka, as Keystone runs: the REST API, the operator and kubesim, the real
//! PostgreSQL, NATS and Kafka-protocol broker, and `sluice-worker` processes running the
//! configurations the operator rendered. Events ingested through the API into a Stream on
//! Kafka pass a pipeline's filter and projection and arrive, exactly the matching ones, at a
//! Kafka sink (keyed by a field of the projection) and at a NATS sink; deleting the tenant
//! deletes its topics.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use rand::Rng;
use serde_json::{Value, json};
use sluice_operator::config::{KafkaConfig, OperatorConfig};
use sluice_testkit::kafka::{bootstrap, read_all, topics_with_prefix};
use sluice_tests::SimCluster;
use sluice_tests::stack::{
    ApiClient, ApiProcess, Database, Operator, Processes, api_kubeconfig, binary, eventually,
    nats_url, start_worker,
};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn event(i: usize) -> Value {
    json!({"id": format!("e-{i}"), "amount": i * 3,
           "customer": {"id": format!("c-{}", i % 7), "name": "someone"}, "noise": "x".repeat(40)})
}

fn projected(i: usize) -> Value {
    json!({"id": format!("e-{i}"), "customer": format!("c-{}", i % 7)})
}

fn ndjson(range: std::ops::Range<usize>) -> String {
    range.map(|i| event(i).to_string() + "\n").collect()
}

#[test]
fn events_flow_from_the_api_through_kafka_to_a_kafka_and_a_nats_sink() {
    let sim = SimCluster::start();
    let worker_bin = binary("sluice-worker", "sluice-worker");
    let api_bin = binary("sluice-api", "sluice-api");
    let suffix = format!("{:08x}", rand::rng().random::<u32>());
    let tenant = format!("kafka{suffix}");
    let db = Database::create(&format!("sluice_kafka_e2e_{suffix}"));
    let dir = tempfile::tempdir().unwrap();
    let nats_url = nats_url();
    let kafka = bootstrap();

    sim.block_on(async {
        let client = kube::Client::try_from(kube::Config::new(sim.url().parse().unwrap())).unwrap();
        let operator = Operator::start(
            &sim,
            OperatorConfig {
                nats_url: nats_url.clone(),
                kafka: Some(KafkaConfig {
                    bootstrap_servers: kafka.clone(),
                    properties: vec![],
                    worker_properties: vec![],
                    namespace: "kafka".into(),
                    port: 9092,
                }),
                ..Default::default()
            },
        );
        let api_process = ApiProcess::start(
            &api_bin,
            &db.url,
            &api_kubeconfig(&sim),
            &nats_url,
            &[("SLUICE_KAFKA_BOOTSTRAP_SERVERS", kafka.as_str())],
        )
        .await;
        let admin = api_process.admin_token.clone();
        let api = ApiClient::new(&api_process.base);

        let (s, b) = api
            .call(reqwest::Method::POST, "/v1/tenants", &admin, Some(json!({"name": tenant, "spec": {
                "quota": {"maxPipelines": 5, "maxStreams": 5}}})))
            .await;
        assert_eq!(s, 201, "{b}");
        let ns = format!("sluice-{tenant}");
        eventually("tenant namespace", || async {
            Api::<Namespace>::all(client.clone()).get_opt(&ns).await.unwrap().is_some()
        })
        .await;
        let token = |role: &'static str| {
            let api = &api;
            let admin = admin.clone();
            let tenant = tenant.clone();
            async move {
                let (s, b) = api
                    .call(reqwest::Method::POST, &format!("/v1/tenants/{tenant}/tokens"), &admin,
                        Some(json!({"name": role, "role": role})))
                    .await;
                assert_eq!(s, 201, "{b}");
                b["token"].as_str().unwrap().to_string()
            }
        };
        let dev = token("developer").await;
        let producer = token("producer").await;

        // Two Streams on Kafka: what producers send, and what the pipeline writes.
        for (name, spec) in [
            ("orders", json!({"broker": "kafka", "partitions": 3, "partitionKey": "customer.id"})),
            ("big-orders", json!({"broker": "kafka", "partitions": 2})),
        ] {
            let (s, b) = api
                .call(reqwest::Method::POST, &format!("/v1/tenants/{tenant}/streams"), &dev,
                    Some(json!({"name": name, "spec": spec})))
                .await;
            assert_eq!(s, 201, "{b}");
            eventually("stream's topic provisioned", || async {
                let (_, b) = api.call(reqwest::Method::GET, &format!("/v1/tenants/{tenant}/streams/{name}"), &dev, None).await;
                b["status"]["topic"] == format!("sluice.{tenant}.{name}")
            })
            .await;
        }

        // The NATS sink's subscriber.
        let nats = async_nats::connect(&nats_url).await.unwrap();
        let mut sub = nats.subscribe(format!("sluice.{tenant}.alerts")).await.unwrap();
        let nats_events = Arc::new(Mutex::new(Vec::<Value>::new()));
        {
            let nats_events = nats_events.clone();
            tokio::spawn(async move {
                while let Some(m) = sub.next().await {
                    if let Ok(v) = serde_json::from_slice::<Value>(&m.payload) {
                        nats_events.lock().unwrap().push(v);
                    }
                }
            });
        }

        let (s, b) = api
            .call(reqwest::Method::POST, &format!("/v1/tenants/{tenant}/pipelines"), &dev, Some(json!({
                "name": "big", "spec": {
                    "source": {"stream": "orders", "startFrom": "all"},
                    "filter": "event.amount > 100",
                    "projection": {"fields": [{"path": "id"}, {"path": "customer.id", "as": "customer"}]},
                    "sinks": [{"name": "topic", "kafka": {"stream": "big-orders", "key": "customer"}},
                              {"name": "alerts", "nats": {"subject": "alerts"}}],
                    "parallelism": 1,
                    "batching": {"maxEvents": 50, "maxWaitMs": 50}}})))
            .await;
        assert_eq!(s, 201, "{b}");
        eventually("pipeline running", || async {
            let (_, b) = api.call(reqwest::Method::GET, &format!("/v1/tenants/{tenant}/pipelines/big"), &dev, None).await;
            b["status"]["phase"] == "Running"
        })
        .await;
        let mut workers = Processes::default();
        for route in ["big-topic", "big-alerts"] {
            workers.0.push(start_worker(&worker_bin, &client, &ns, route, dir.path()).await);
        }

        // 100 events through the API; e-34..e-99 match the filter.
        let (s, b, _) = api.ingest(&tenant, "orders", &producer, ndjson(0..100)).await;
        assert_eq!(s, 202, "{b}");
        assert_eq!(b["accepted"], 100);
        let expected: BTreeSet<String> = (34..100).map(|i| format!("e-{i}")).collect();

        let out = read_all(&format!("sluice.{tenant}.big-orders"), expected.len(), Duration::from_secs(60)).await;
        let got: BTreeSet<String> = out.iter().map(|r| r.event["id"].as_str().unwrap().to_string()).collect();
        assert_eq!(got, expected, "the Kafka sink got exactly the matching events");
        for r in &out {
            let i: usize = r.event["id"].as_str().unwrap()[2..].parse().unwrap();
            assert_eq!(r.event, projected(i), "projected");
            assert_eq!(r.key.as_deref(), Some(format!("c-{}", i % 7).as_bytes()), "keyed by the projection's customer");
        }
        eventually("the NATS sink got the matching events", || async {
            let ids: BTreeSet<String> = nats_events.lock().unwrap().iter()
                .filter_map(|e| e["id"].as_str().map(String::from)).collect();
            ids == expected
        })
        .await;
        for e in nats_events.lock().unwrap().iter() {
            let i: usize = e["id"].as_str().unwrap()[2..].parse().unwrap();
            assert_eq!(*e, projected(i));
        }

        // Deleting the tenant deletes its topics (the streams' and the dead-letter one).
        let prefix = format!("sluice.{tenant}.");
        assert!(topics_with_prefix(&prefix).len() >= 3, "{:?}", topics_with_prefix(&prefix));
        let (s, b) = api.call(reqwest::Method::DELETE, &format!("/v1/tenants/{tenant}"), &admin, None).await;
        assert!(s == 202 || s == 204, "{s} {b}");
        eventually("namespace gone", || async {
            Api::<Namespace>::all(client.clone()).get_opt(&ns).await.unwrap().is_none()
        })
        .await;
        eventually("the tenant's topics gone", || async { topics_with_prefix(&prefix).is_empty() }).await;

        drop(workers);
        drop(api_process);
        operator.stop().await;
    });
    drop(db);
}
