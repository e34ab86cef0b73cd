//! End to end: the REST API, the operator and kubesim, the real PostgreSQL and NATS, and
//! `sluice-worker` processes running the configurations the operator rendered (as pods would).
//! A tenant, tokens, a stream and a pipeline with a filter, a projection and two sinks (NATS
//! and HTTP) are created through the API; events ingested through the API arrive, exactly the
//! matching ones, projected, at both sinks; one sink going down does not stop the other; the
//! ingest quota answers 429 without losing accepted events; deleting the tenant removes all it
//! owned.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use rand::Rng;
use serde_json::{Value, json};
use sluice_operator::config::OperatorConfig;
use sluice_tests::SimCluster;
use sluice_tests::stack::{
    ApiClient, ApiProcess, Database, Operator, Processes, api_kubeconfig, binary, eventually,
    nats_url, start_worker,
};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Receiver {
    down: AtomicBool,
    events: Mutex<Vec<Value>>,
}

async fn hook(State(r): State<Arc<Receiver>>, body: axum::body::Bytes) -> StatusCode {
    if r.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(batch)) => {
            r.events.lock().unwrap().extend(batch);
            StatusCode::OK
        }
        _ => StatusCode::BAD_REQUEST,
    }
}

fn ids(events: &[Value]) -> BTreeSet<String> {
    events
        .iter()
        .filter_map(|e| e["id"].as_str().map(String::from))
        .collect()
}

fn event(i: usize) -> Value {
    json!({"id": format!("e-{i}"), "amount": i * 3,
           "customer": {"id": format!("c-{i}"), "name": "someone"}, "noise": "x".repeat(40)})
}

fn projected(i: usize) -> Value {
    json!({"id": format!("e-{i}"), "customer": format!("c-{i}")})
}

fn ndjson(range: std::ops::Range<usize>) -> String {
    range.map(|i| event(i).to_string() + "\n").collect()
}

#[test]
fn events_flow_from_the_api_through_the_routes_to_both_sinks() {
    let sim = SimCluster::start();
    let worker_bin = binary("sluice-worker", "sluice-worker");
    let api_bin = binary("sluice-api", "sluice-api");
    let suffix = format!("{:08x}", rand::rng().random::<u32>());
    let tenant = format!("e2e{suffix}");
    let db = Database::create(&format!("sluice_e2e_{suffix}"));
    let dir = tempfile::tempdir().unwrap();
    let nats_url = nats_url();

    sim.block_on(async {
        let client = kube::Client::try_from(kube::Config::new(sim.url().parse().unwrap())).unwrap();
        // The operator, in-process; the API, as a process.
        let operator = Operator::start(
            &sim,
            OperatorConfig {
                nats_url: nats_url.clone(),
                // The test's webhook receiver listens on loopback.
                sink_policy: sluice_core::egress::SinkPolicy {
                    allow_loopback: true,
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        let api_process = ApiProcess::start(&api_bin, &db.url, &api_kubeconfig(&sim), &nats_url, &[]).await;
        let admin = api_process.admin_token.clone();
        let api = ApiClient::new(&api_process.base);

        // Tenant, tokens, stream.
        let (s, b) = api
            .call(reqwest::Method::POST, "/v1/tenants", &admin, Some(json!({"name": tenant, "spec": {
                "quota": {"maxPipelines": 5, "maxStreams": 5,
                          "ingest": {"eventsPerSecond": 100, "bytesPerSecond": 10000000, "burst": 400}}}})))
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
        let (s, b) = api
            .call(reqwest::Method::POST, &format!("/v1/tenants/{tenant}/streams"), &dev,
                Some(json!({"name": "orders", "spec": {"retention": {"maxAge": "1h"}}})))
            .await;
        assert_eq!(s, 201, "{b}");
        eventually("stream provisioned", || async {
            let (_, b) = api.call(reqwest::Method::GET, &format!("/v1/tenants/{tenant}/streams/orders"), &dev, None).await;
            b["status"]["subject"].is_string()
        })
        .await;

        // The two sinks: an HTTP receiver and a NATS subscriber.
        let receiver = Arc::new(Receiver::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = Router::new().route("/hook", post(hook)).with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
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

        // The pipeline.
        let (s, b) = api
            .call(reqwest::Method::POST, &format!("/v1/tenants/{tenant}/pipelines"), &dev, Some(json!({
                "name": "big", "spec": {
                    "source": {"stream": "orders", "startFrom": "all"},
                    "filter": "event.amount > 100",
                    "projection": {"fields": [{"path": "id"}, {"path": "customer.id", "as": "customer"}]},
                    "sinks": [{"name": "alerts", "nats": {"subject": "alerts"}},
                              {"name": "hook", "http": {"url": hook_url}}],
                    "parallelism": 1,
                    "batching": {"maxEvents": 50, "maxWaitMs": 50}}})))
            .await;
        assert_eq!(s, 201, "{b}");
        eventually("pipeline running", || async {
            let (_, b) = api.call(reqwest::Method::GET, &format!("/v1/tenants/{tenant}/pipelines/big"), &dev, None).await;
            b["status"]["phase"] == "Running"
        })
        .await;

        // Each route runs as a worker process with the ConfigMap the operator rendered.
        let mut workers = Processes::default();
        for route in ["big-alerts", "big-hook"] {
            workers.0.push(start_worker(&worker_bin, &client, &ns, route, dir.path()).await);
        }

        // Ingest: 100 events, of which e-34..e-99 match the filter.
        let (s, b, _) = api.ingest(&tenant, "orders", &producer, ndjson(0..100)).await;
        assert_eq!(s, 202, "{b}");
        assert_eq!(b["accepted"], 100);
        let expected: BTreeSet<String> = (34..100).map(|i| format!("e-{i}")).collect();
        eventually("NATS sink got the matching events", || async {
            ids(&nats_events.lock().unwrap()) == expected
        })
        .await;
        eventually("HTTP sink got the matching events", || async {
            ids(&receiver.events.lock().unwrap()) == expected
        })
        .await;
        // Exactly the matching ones, projected.
        for e in nats_events.lock().unwrap().iter().chain(receiver.events.lock().unwrap().iter()) {
            let i: usize = e["id"].as_str().unwrap()[2..].parse().unwrap();
            assert_eq!(*e, projected(i));
        }

        // One sink down: the other route keeps flowing.
        receiver.down.store(true, Ordering::SeqCst);
        let (s, _, _) = api.ingest(&tenant, "orders", &producer, ndjson(100..150)).await;
        assert_eq!(s, 202);
        let mut expected2 = expected.clone();
        expected2.extend((100..150).map(|i| format!("e-{i}")));
        eventually("NATS route flows while the HTTP sink is down", || async {
            ids(&nats_events.lock().unwrap()) == expected2
        })
        .await;
        assert_eq!(ids(&receiver.events.lock().unwrap()), expected, "the HTTP sink is down");
        receiver.down.store(false, Ordering::SeqCst);
        eventually("HTTP route catches up after recovery", || async {
            ids(&receiver.events.lock().unwrap()) == expected2
        })
        .await;

        // Over the ingest quota: 429 with Retry-After, and every accepted event arrives.
        let mut accepted: BTreeSet<String> = expected2.clone();
        let mut refused = 0;
        for batch in 0..20 {
            let start = 1000 + batch * 100;
            let (s, b, retry) = api.ingest(&tenant, "orders", &producer, ndjson(start..start + 100)).await;
            match s {
                202 => {
                    assert_eq!(b["accepted"], 100);
                    accepted.extend((start..start + 100).map(|i| format!("e-{i}")));
                }
                429 => {
                    refused += 1;
                    assert!(retry.is_some_and(|r| r.parse::<u64>().is_ok()), "Retry-After");
                }
                other => panic!("unexpected {other}: {b}"),
            }
        }
        assert!(refused > 0, "the ingest quota never answered 429");
        eventually("every accepted event arrives", || async {
            ids(&nats_events.lock().unwrap()) == accepted
        })
        .await;

        // Deleting the tenant removes everything it owned.
        let (s, b) = api.call(reqwest::Method::DELETE, &format!("/v1/tenants/{tenant}"), &admin, None).await;
        assert!(s == 202 || s == 204, "{s} {b}");
        eventually("namespace gone", || async {
            Api::<Namespace>::all(client.clone()).get_opt(&ns).await.unwrap().is_none()
        })
        .await;
        let left = Api::<Deployment>::all(client.clone())
            .list(&ListParams::default().labels(&format!("sluice.dev/tenant={tenant}")))
            .await
            .unwrap();
        assert!(left.items.is_empty());
        let js = async_nats::jetstream::new(nats.clone());
        eventually("JetStream stream gone", || async {
            js.get_stream(format!("sluice_{tenant}_orders")).await.is_err()
        })
        .await;

        drop(workers);
        drop(api_process);
        operator.stop().await;
    });
    drop(db);
}
