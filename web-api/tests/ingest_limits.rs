//! What one ingest request can cost the API and the other tenants: events per request,
//! rejection records, publish permits, the request's deadline, the rate limiter's charge and
//! the memory of a hostile body. In-process API, kubesim, a fresh PostgreSQL database and the
//! real NATS JetStream server (plus, for one test, a NATS server of its own that it stops).

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use common::{BrokerStream, Db, TestApp, unique_tenant};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sluice_api::Config;
use tower::ServiceExt;

/// A liveness bound for requests that must answer: far above any normal answer, only there
/// so that a hang fails the test instead of stalling it.
const HANG: Duration = Duration::from_secs(60);

/// A tenant with a provisioned stream `orders` whose schema needs a string `id`, and a
/// producer token.
async fn setup(app: &TestApp, prefix: &str, quota: Value) -> (String, BrokerStream, String) {
    let tenant = unique_tenant(prefix);
    app.tenant(&tenant, json!({"quota": quota})).await;
    let dev = app.token(&tenant, "setup", "developer").await;
    app.call(
        "POST",
        &format!("/v1/tenants/{tenant}/streams"),
        Some(&dev),
        Some(
            json!({"name": "orders", "spec": {"schema": {"type": "object",
            "required": ["id"], "properties": {"id": {"type": "string"}}}}}),
        ),
    )
    .await
    .ok(201);
    let broker = BrokerStream::create(&tenant, "orders").await;
    app.set_stream_status(
        &tenant,
        "orders",
        json!({"subject": sluice_core::subjects::events_subject(&tenant, "orders")}),
    )
    .await;
    let producer = app.token(&tenant, "producer", "producer").await;
    (tenant, broker, producer)
}

fn events_path(tenant: &str) -> String {
    format!("/v1/tenants/{tenant}/streams/orders/events")
}

/// `n` valid events, one per line.
fn ndjson(n: usize) -> String {
    (0..n).map(|i| format!("{{\"id\": \"e{i}\"}}\n")).collect()
}

/// A raw answer: status, headers and the body's bytes.
struct Raw {
    status: StatusCode,
    headers: HeaderMap,
    bytes: Bytes,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).expect("JSON answer")
    }

    /// Asserts a problem with this status and type; returns it.
    fn problem(&self, status: u16, slug: &str) -> Value {
        let body = self.json();
        assert_eq!(self.status.as_u16(), status, "{body}");
        assert_eq!(
            body["type"],
            format!("https://sluice.dev/problems/{slug}"),
            "{body}"
        );
        body
    }

    fn retry_after(&self) -> Option<u64> {
        self.headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }
}

/// Posts an ingest body (from any task: the router is cloned).
async fn post(router: Router, path: String, token: String, ndjson_body: Body) -> Raw {
    let req = Request::post(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/x-ndjson")
        .body(ndjson_body)
        .unwrap();
    let res = tokio::time::timeout(HANG, router.oneshot(req))
        .await
        .expect("the request answers")
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Raw {
        status,
        headers,
        bytes,
    }
}

/// The process's resident memory and its peak, in KiB (Linux).
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_per_request_and_rejection_records_are_capped() {
    let app = TestApp::start_ingest(Db::Postgres, Config::default()).await;
    let (tenant, broker, producer) = setup(&app, "cap", json!({})).await;
    let path = events_path(&tenant);
    let send = |body: String| {
        post(
            app.router.clone(),
            path.clone(),
            producer.clone(),
            body.into(),
        )
    };

    // One event too many: 413, nothing published.
    let a = send(ndjson(5001)).await;
    let p = a.problem(413, "too-many-events");
    assert_eq!(p["errors"][0]["field"], "body", "{p}");
    assert!(p["detail"].as_str().unwrap().contains("5000"), "{p}");
    let array: Vec<Value> = (0..5001).map(|i| json!({"id": format!("a{i}")})).collect();
    let req = Request::post(&path)
        .header("authorization", format!("Bearer {producer}"))
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&array).unwrap()))
        .unwrap();
    let a = app.send(req).await;
    a.problem(413, "too-many-events");
    assert_eq!(broker.messages().await, 0);

    // Exactly the limit: all of it, acknowledged.
    let a = send(ndjson(5000)).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{:?}", a.bytes);
    assert_eq!(a.json()["accepted"], 5000);
    assert_eq!(broker.messages().await, 5000);

    // 8 MiB of `1` lines (4 Mi events that are not objects): refused at the 5001st line,
    // with a small answer.
    let ones = "1\n".repeat(4 * 1024 * 1024);
    assert_eq!(ones.len(), 8 * 1024 * 1024);
    let a = send(ones).await;
    a.problem(413, "too-many-events");
    assert!(a.bytes.len() < 1024, "{} bytes", a.bytes.len());
    assert_eq!(broker.messages().await, 5000);

    // Rejections: the first 100 are listed, all are counted, the valid events go on.
    let mut body = String::new();
    for i in 0..250 {
        body.push_str(&format!("{{\"id\": {i}}}\n"));
    }
    body.push_str(&ndjson(3));
    let a = send(body).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let r = a.json();
    assert_eq!(r["accepted"], 3, "{r}");
    assert_eq!(r["rejectedCount"], 250, "{r}");
    let listed = r["rejected"].as_array().unwrap();
    assert_eq!(listed.len(), 100);
    assert_eq!(listed[99]["index"], 99);
    assert_eq!(broker.messages().await, 5003);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(&format!(
            "sluice_api_ingest_events_total{{outcome=\"rejected\",stream=\"orders\",tenant=\"{tenant}\"}} 250"
        )),
        "{metrics}"
    );
    broker.delete().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_millions_of_rejected_events_has_a_bounded_answer() {
    // Event limit raised past the body's 4 Mi events: each one is read, checked and
    // rejected, and the answer still lists only 100 of them.
    let config = Config {
        ingest_max_events: 5_000_000,
        ingest_timeout: Duration::from_secs(600),
        ..Config::default()
    };
    let app = TestApp::start_ingest(Db::Postgres, config).await;
    let (tenant, broker, producer) = setup(&app, "ones", json!({})).await;
    let ones = "1\n".repeat(4 * 1024 * 1024);
    let (rss_before, _) = rss_kib();
    let a = post(
        app.router.clone(),
        events_path(&tenant),
        producer.clone(),
        ones.into(),
    )
    .await;
    let (rss_after, peak) = rss_kib();
    eprintln!(
        "8 MiB body of 4 Mi rejected events: RSS {rss_before} KiB before, {rss_after} KiB \
         after, peak {peak} KiB; answer {} bytes",
        a.bytes.len()
    );
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let r = a.json();
    assert_eq!(r["accepted"], 0);
    assert_eq!(r["rejectedCount"], 4 * 1024 * 1024);
    assert_eq!(r["rejected"].as_array().unwrap().len(), 100);
    assert!(a.bytes.len() < 16 * 1024, "{} bytes", a.bytes.len());
    assert_eq!(broker.messages().await, 0);
    broker.delete().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_requests_in_flight_do_not_hold_other_tenants() {
    let app = TestApp::start_ingest(Db::Postgres, Config::default()).await;
    let (mallory, mallory_broker, mallory_token) = setup(&app, "mallory", json!({})).await;
    let (alice, alice_broker, alice_token) = setup(&app, "alice", json!({})).await;
    // Four requests of 5,000 events at once: 20,000 publishes, four times what the broker
    // client allows unacknowledged. Published all before any acknowledgement was awaited,
    // they would wait for each other's permits for ever.
    let big: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(post(
                app.router.clone(),
                events_path(&mallory),
                mallory_token.clone(),
                ndjson(5000).into(),
            ))
        })
        .collect();
    for _ in 0..5 {
        let a = post(
            app.router.clone(),
            events_path(&alice),
            alice_token.clone(),
            ndjson(1).into(),
        )
        .await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{:?}", a.bytes);
    }
    for b in big {
        let a = b.await.unwrap();
        assert_eq!(a.status, StatusCode::ACCEPTED, "{:?}", a.bytes);
    }
    assert_eq!(mallory_broker.messages().await, 20_000);
    assert_eq!(alice_broker.messages().await, 5);
    mallory_broker.delete().await;
    alice_broker.delete().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_deadline_is_503_with_retry_after() {
    let config = Config {
        ingest_timeout: Duration::from_secs(1),
        ..Config::default()
    };
    let app = TestApp::start_ingest(Db::Postgres, config).await;
    let (mallory, mallory_broker, mallory_token) = setup(&app, "slow", json!({})).await;
    let (alice, alice_broker, alice_token) = setup(&app, "alice", json!({})).await;
    // A body that sends ten events and then never ends.
    let first = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(ndjson(10)))]);
    let never = futures::StreamExt::chain(first, futures::stream::pending());
    let slow = tokio::spawn(post(
        app.router.clone(),
        events_path(&mallory),
        mallory_token,
        Body::from_stream(never),
    ));
    let a = post(
        app.router.clone(),
        events_path(&alice),
        alice_token,
        ndjson(1).into(),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let a = slow.await.unwrap();
    let p = a.problem(503, "ingest-unavailable");
    assert!(p["detail"].as_str().unwrap().contains("deadline"), "{p}");
    assert_eq!(a.retry_after(), Some(1));
    assert_eq!(mallory_broker.messages().await, 0);
    assert_eq!(alice_broker.messages().await, 1);
    mallory_broker.delete().await;
    alice_broker.delete().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_publish_permit_fails_fast_with_retry_after() {
    // A broker client that allows four unacknowledged publishes, all four held elsewhere.
    let client = async_nats::connect(common::nats_url()).await.unwrap();
    let js = async_nats::jetstream::context::ContextBuilder::new()
        .max_ack_inflight(4)
        .build(client);
    let config = Config {
        ingest_permit_timeout: Duration::from_millis(200),
        ..Config::default()
    };
    let app = TestApp::start_full(Db::Postgres, None, config, Some(js.clone())).await;
    let (tenant, broker, producer) = setup(&app, "permit", json!({})).await;
    let subject = sluice_core::subjects::events_subject(&tenant, "orders");
    let mut held = vec![];
    for i in 0..4 {
        let ack = js
            .publish(subject.clone(), format!("{{\"id\": \"held{i}\"}}").into())
            .await
            .unwrap();
        held.push(ack);
    }
    let a = post(
        app.router.clone(),
        events_path(&tenant),
        producer.clone(),
        ndjson(2).into(),
    )
    .await;
    let p = a.problem(503, "ingest-unavailable");
    assert!(p["detail"].as_str().unwrap().contains("permit"), "{p}");
    assert_eq!(a.retry_after(), Some(1));
    // Once the permits are free again, the same request goes through.
    for ack in held {
        ack.await.unwrap();
    }
    let a = post(
        app.router.clone(),
        events_path(&tenant),
        producer,
        ndjson(2).into(),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{:?}", a.bytes);
    assert_eq!(broker.messages().await, 6);
    broker.delete().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limiter_is_charged_for_what_was_received() {
    let config = Config {
        ingest_max_events: 20,
        ..Config::default()
    };
    let app = TestApp::start_ingest(Db::Postgres, config).await;
    let quota = json!({"ingest": {"eventsPerSecond": 1, "burst": 10}});
    let send = |tenant: &str, token: &str, body: String| {
        post(
            app.router.clone(),
            events_path(tenant),
            token.to_string(),
            body.into(),
        )
    };

    // Ten rejected events take the whole burst: the next valid event waits.
    let (rejecting, broker_r, token_r) = setup(&app, "rej", quota.clone()).await;
    let a = send(&rejecting, &token_r, "2\n".repeat(10)).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(a.json()["rejectedCount"], 10);
    let a = send(&rejecting, &token_r, ndjson(1)).await;
    a.problem(429, "rate-limited");
    assert!(a.retry_after().is_some());

    // A request refused for too many events pays for the twenty it made the API read.
    let (flooding, broker_f, token_f) = setup(&app, "flood", quota).await;
    let a = send(&flooding, &token_f, ndjson(21)).await;
    a.problem(413, "too-many-events");
    let a = send(&flooding, &token_f, ndjson(1)).await;
    a.problem(429, "rate-limited");
    assert_eq!(broker_r.messages().await, 0);
    assert_eq!(broker_f.messages().await, 0);
    broker_r.delete().await;
    broker_f.delete().await;
    app.shutdown().await;
}

/// A NATS server of the test's own, on a free port, stopped when dropped.
struct OwnNats {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl OwnNats {
    fn start() -> OwnNats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server on PATH");
        OwnNats {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_broker_is_503_with_retry_after_within_the_deadline() {
    let mut nats = OwnNats::start();
    let mut client = None;
    for _ in 0..100 {
        match async_nats::connect(&nats.url).await {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let js = async_nats::jetstream::new(client.expect("own NATS server answers"));
    let config = Config {
        ingest_timeout: Duration::from_secs(2),
        ..Config::default()
    };
    let app = TestApp::start_full(Db::Postgres, None, config, Some(js.clone())).await;
    let tenant = unique_tenant("stop");
    app.tenant(&tenant, json!({})).await;
    let dev = app.token(&tenant, "dev", "developer").await;
    app.call(
        "POST",
        &format!("/v1/tenants/{tenant}/streams"),
        Some(&dev),
        Some(json!({"name": "orders", "spec": {}})),
    )
    .await
    .ok(201);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: sluice_core::subjects::jetstream_name(&tenant, "orders"),
        subjects: vec![sluice_core::subjects::stream_subjects(&tenant, "orders")],
        ..Default::default()
    })
    .await
    .unwrap();
    app.set_stream_status(
        &tenant,
        "orders",
        json!({"subject": sluice_core::subjects::events_subject(&tenant, "orders")}),
    )
    .await;
    let producer = app.token(&tenant, "producer", "producer").await;
    let a = post(
        app.router.clone(),
        events_path(&tenant),
        producer.clone(),
        ndjson(3).into(),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{:?}", a.bytes);

    nats.stop();
    let a = post(
        app.router.clone(),
        events_path(&tenant),
        producer,
        ndjson(3).into(),
    )
    .await;
    let body = a.json();
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let slug = body["type"].as_str().unwrap().rsplit('/').next().unwrap();
    assert!(
        ["ingest-unavailable", "broker-unavailable"].contains(&slug),
        "{body}"
    );
    assert!(a.retry_after().is_some_and(|s| s >= 1), "{:?}", a.headers);
    app.shutdown().await;
}
