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
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams};
use rand::Rng;
use serde_json::{Value, json};
use sluice_operator::config::OperatorConfig;
use sluice_operator::run::{RunOptions, run};
use sluice_tests::SimCluster;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const NATS: &str = "nats://127.0.0.1:4222";
const POSTGRES_ADMIN: &str = "postgres://root@127.0.0.1:5432/test";

/// A workspace binary next to this test's executable, built if missing.
fn binary(name: &str, package: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", package, "--bin", name])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cannot build {name}");
    }
    path
}

fn psql(sql: &str) {
    let out = Command::new("psql")
        .args([POSTGRES_ADMIN, "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Killed(Vec<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        for c in &mut self.0 {
            terminate(c);
        }
    }
}

fn terminate(c: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status();
    for _ in 0..100 {
        if matches!(c.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = c.kill();
    let _ = c.wait();
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

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

struct Api_ {
    http: reqwest::Client,
    base: String,
}

impl Api_ {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("API answers");
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn ingest(
        &self,
        tenant: &str,
        stream: &str,
        token: &str,
        body: String,
    ) -> (u16, Value, Option<String>) {
        let resp = self
            .http
            .post(format!(
                "{}/v1/tenants/{tenant}/streams/{stream}/events",
                self.base
            ))
            .bearer_auth(token)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .expect("API answers");
        let status = resp.status().as_u16();
        let retry = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        (status, resp.json().await.unwrap_or(Value::Null), retry)
    }
}

#[test]
fn events_flow_from_the_api_through_the_routes_to_both_sinks() {
    let sim = SimCluster::start();
    let kubeconfig = sim.kubeconfig.clone();
    let worker_bin = binary("sluice-worker", "sluice-worker");
    let api_bin = binary("sluice-api", "sluice-api");
    let suffix = format!("{:08x}", rand::rng().random::<u32>());
    let tenant = format!("e2e{suffix}");
    let db = format!("sluice_e2e_{suffix}");
    psql(&format!("CREATE DATABASE {db}"));
    let dir = tempfile::tempdir().unwrap();

    sim.block_on(async {
        let client = kube::Client::try_from(kube::Config::new(sim.url().parse().unwrap())).unwrap();
        // The operator, in-process.
        let (stop_op, stopped) = tokio::sync::oneshot::channel::<()>();
        let operator = tokio::spawn(run(
            client.clone(),
            RunOptions {
                config: OperatorConfig {
                    nats_url: NATS.into(),
                    // The test's webhook receiver listens on loopback.
                    sink_policy: sluice_core::egress::SinkPolicy {
                        allow_loopback: true,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                metrics_addr: None,
                leader_election: None,
            },
            async move {
                let _ = stopped.await;
            },
        ));
        // The API, as a process.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let api_proc = Command::new(&api_bin)
            .args(["serve", "--migrate", "--database-url"])
            .arg(format!("postgres://root@127.0.0.1:5432/{db}"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--nats-url", NATS, "--usage-flush-seconds", "1"])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .arg("--bootstrap-token-file")
            .arg(dir.path().join("admin-token"))
            .env("SLUICE_JWT_SECRET", "an-end-to-end-test-secret-of-enough-length")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sluice-api starts");
        let token_file = dir.path().join("admin-token");
        eventually("the bootstrap token file", || async { token_file.is_file() }).await;
        let admin = std::fs::read_to_string(&token_file).unwrap().trim().to_string();
        assert!(!admin.is_empty(), "the API wrote no bootstrap token");
        let mut processes = Killed(vec![api_proc]);
        let api = Api_ {
            http: reqwest::Client::new(),
            base: format!("http://127.0.0.1:{port}"),
        };
        eventually("API ready", || async {
            api.http.get(format!("{}/readyz", api.base)).send().await.is_ok_and(|r| r.status().is_success())
        })
        .await;

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
        let nats = async_nats::connect(NATS).await.unwrap();
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
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let mut workers = vec![];
        for route in ["big-alerts", "big-hook"] {
            let cm = cms.get(route).await.unwrap();
            let config = cm.data.unwrap()[sluice_core::route::CONFIG_KEY].clone();
            let path = dir.path().join(format!("{route}.json"));
            std::fs::write(&path, config).unwrap();
            let child = Command::new(&worker_bin)
                .arg("--config")
                .arg(&path)
                .args(["--metrics-addr", "127.0.0.1:0"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("sluice-worker starts");
            workers.push(child);
        }
        processes.0.extend(workers);

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

        drop(processes);
        let _ = stop_op.send(());
        let _ = tokio::time::timeout(Duration::from_secs(20), operator).await;
    });
    psql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
}
