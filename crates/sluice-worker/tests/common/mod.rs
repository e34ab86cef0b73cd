//! Helpers shared by the worker's tests: a JetStream stream per test (deleted at the end),
//! route configurations, an HTTP receiver, in-process workers and worker processes.
#![allow(dead_code)]

use async_nats::jetstream::{self, consumer, stream};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use bytes::Bytes;
use sluice_core::route::RouteConfig;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The NATS server with JetStream: `$SLUICE_TEST_NATS_URL`, by default `nats://127.0.0.1:4222`.
pub fn nats_url() -> String {
    std::env::var("SLUICE_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// The PostgreSQL database the tests create their own databases from:
/// `$SLUICE_TEST_DATABASE_URL`, by default `postgres://root@127.0.0.1:5432/test`.
pub fn admin_database_url() -> String {
    std::env::var("SLUICE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into())
}

/// `url` with its database name replaced by `db` (any `?query` is kept).
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{db}?{q}"),
        None => format!("{root}/{db}"),
    }
}

/// A JetStream stream of its own: `t_<id>` holding `t.<id>.>`.
pub struct TestStream {
    pub id: String,
    pub name: String,
    pub js: jetstream::Context,
    pub client: async_nats::Client,
    pub stream: stream::Stream,
}

impl TestStream {
    pub async fn new() -> Self {
        let id: String = format!("{:08x}", rand::random::<u32>());
        let client = async_nats::connect(nats_url())
            .await
            .expect("NATS with JetStream at $SLUICE_TEST_NATS_URL (default 127.0.0.1:4222)");
        let js = jetstream::new(client.clone());
        let name = format!("t_{id}");
        let stream = js
            .create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![format!("t.{id}.>")],
                ..Default::default()
            })
            .await
            .unwrap();
        TestStream {
            id,
            name,
            js,
            client,
            stream,
        }
    }

    pub fn events(&self) -> String {
        format!("t.{}.events", self.id)
    }

    pub fn dead(&self) -> String {
        format!("t.{}.dead", self.id)
    }

    pub fn out(&self) -> String {
        format!("t.{}.out", self.id)
    }

    pub async fn publish_all(&self, payloads: impl IntoIterator<Item = Vec<u8>>) {
        let mut acks = vec![];
        for p in payloads {
            acks.push(self.js.publish(self.events(), p.into()).await.unwrap());
            if acks.len() >= 1000 {
                for a in acks.drain(..) {
                    a.await.unwrap();
                }
            }
        }
        for a in acks {
            a.await.unwrap();
        }
    }

    /// The durable consumer's info, once the worker created it.
    pub async fn consumer_info(&self, durable: &str) -> consumer::Info {
        for _ in 0..600 {
            if let Ok(mut c) = self
                .stream
                .get_consumer::<consumer::pull::Config>(durable)
                .await
            {
                return c.info().await.unwrap().clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("consumer {durable} was never created");
    }

    /// Every message stored on `subject`, read with an ephemeral consumer.
    pub async fn read_subject(&self, subject: &str) -> Vec<jetstream::Message> {
        let c = self
            .stream
            .create_consumer(consumer::pull::Config {
                filter_subject: subject.into(),
                deliver_policy: consumer::DeliverPolicy::All,
                ack_policy: consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut out = vec![];
        loop {
            let mut batch = c.fetch().max_messages(1000).messages().await.unwrap();
            let before = out.len();
            while let Some(m) = futures::StreamExt::next(&mut batch).await {
                out.push(m.unwrap());
            }
            if out.len() == before {
                return out;
            }
        }
    }

    /// A route reading this stream's events with durable `durable`; its sinks may reach
    /// loopback addresses (the test receivers).
    pub fn config(&self, durable: &str, extra: &str, sink: &str) -> RouteConfig {
        let text = format!(
            r#"{{
              "tenant": "acme", "pipeline": "orders", "route": "r-{id}",
              "source": {{"kind": "jetstream", "url": "{nats}", "stream": "{name}",
                         "subject": "{events}", "durable": "{durable}", "startFrom": "all",
                         "ackWaitSeconds": 2}},
              {extra}
              "sink": {sink},
              "retry": {{"initialBackoffMs": 20, "maxBackoffMs": 200, "maxDeliver": 1000}},
              "batching": {{"maxEvents": 100, "maxWaitMs": 20}},
              "deadLetter": {{"url": "{nats}", "subject": "{dead}"}},
              "sinkPolicy": {{"allowLoopback": true}}
            }}"#,
            id = self.id,
            name = self.name,
            nats = nats_url(),
            events = self.events(),
            dead = self.dead(),
        );
        sluice_worker::config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Delete the stream even when the test failed, from a runtime of our own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok(c) = async_nats::connect(nats_url()).await {
                    let _ = jetstream::new(c).delete_stream(&name).await;
                }
            });
        })
        .join();
    }
}

/// Events `{"id": i, "amount": ..., "customer": {...}}`.
pub fn order(i: usize) -> Vec<u8> {
    format!(
        r#"{{"id":{i},"amount":{},"customer":{{"id":"c{}","tier":"gold"}},"pad":"xxxxxxxxxxxxxxxx"}}"#,
        i % 200,
        i % 7
    )
    .into_bytes()
}

/// A worker running in this process.
pub struct InProcess {
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), sluice_worker::WorkerError>>,
    pub metrics: SocketAddr,
}

impl InProcess {
    pub async fn start(config: RouteConfig) -> Self {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let shutdown = CancellationToken::new();
        let options = sluice_worker::RunOptions {
            metrics_addr: Some("127.0.0.1:0".parse().unwrap()),
            listening: Some(tx),
        };
        let task = tokio::spawn(sluice_worker::run(
            config,
            options,
            shutdown.clone(),
            CancellationToken::new(),
        ));
        let metrics = rx.await.expect("metrics address");
        InProcess {
            shutdown,
            task,
            metrics,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("worker stops")
            .unwrap()
            .unwrap();
    }

    /// The value of a metric series (name without prefix, optional extra label matcher).
    pub async fn metric(&self, name: &str, label: Option<&str>) -> f64 {
        metric(self.metrics, name, label).await
    }
}

pub async fn metric(addr: SocketAddr, name: &str, label: Option<&str>) -> f64 {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let full = format!("sluice_worker_{name}{{");
    text.lines()
        .filter(|l| l.starts_with(&full) && label.is_none_or(|m| l.contains(m)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits (up to a minute) until `check` holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// An HTTP receiver: stores every POSTed JSON array's events, answering with `status`
/// (which tests may change) and failing the first `fail_first` requests with 503.
#[derive(Clone, Default)]
pub struct Receiver {
    pub events: Arc<Mutex<Vec<serde_json::Value>>>,
    pub requests: Arc<AtomicUsize>,
    pub fail_first: Arc<AtomicUsize>,
    pub status: Arc<AtomicU16>,
    pub authorization: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    pub async fn start() -> (Self, String) {
        let r = Receiver::default();
        r.status.store(200, Ordering::SeqCst);
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (r, format!("http://{addr}/hook"))
    }

    pub fn count(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    pub fn ids(&self) -> std::collections::BTreeSet<u64> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| e["id"].as_u64())
            .collect()
    }
}

async fn receive(
    State(r): State<Receiver>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> StatusCode {
    let n = r.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(a) = headers.get("authorization") {
        r.authorization
            .lock()
            .unwrap()
            .push(a.to_str().unwrap().to_owned());
    }
    if n < r.fail_first.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let status = StatusCode::from_u16(r.status.load(Ordering::SeqCst)).unwrap();
    if status.is_success() {
        let events: Vec<serde_json::Value> = serde_json::from_slice(&body).expect("a JSON array");
        r.events.lock().unwrap().extend(events);
    }
    status
}

/// A worker process (the real binary).
pub struct Process {
    pub child: Child,
    pub metrics: SocketAddr,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Process {
    pub fn start(config_path: &std::path::Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-worker"))
            .arg("--config")
            .arg(config_path)
            .arg("--metrics-addr")
            .arg("127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in stderr.lines() {
                    let Ok(line) = line else { break };
                    if let Some(addr) = line.strip_prefix("metrics listening on ") {
                        let _ = tx.send(addr.trim().parse::<SocketAddr>().unwrap());
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let metrics = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the worker prints its metrics address");
        Process {
            child,
            metrics,
            stderr: lines,
        }
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    pub fn wait(&mut self) -> std::process::ExitStatus {
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the worker did not exit");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn write_config(dir: &std::path::Path, config: &RouteConfig) -> std::path::PathBuf {
    let path = dir.join("route.json");
    std::fs::write(&path, config.to_json()).unwrap();
    path
}

/// A fresh database per test, dropped at the end.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub async fn new() -> (Self, tokio_postgres::Client, String) {
        let name = format!("sluice_worker_{:08x}", rand::random::<u32>());
        let admin_url = admin_database_url();
        let (admin, conn) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!("PostgreSQL at {admin_url} (SLUICE_TEST_DATABASE_URL): {e}")
            });
        tokio::spawn(conn);
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = with_database(&admin_url, &name);
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        (TestDb { name }, client, url)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok((c, conn)) =
                    tokio_postgres::connect(&admin_database_url(), tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = c
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}
