//! Load generator for the Web API: starts kubesim (with Sluice's CRDs) and the API in this
//! process on loopback, with a fresh PostgreSQL database (or an SQLite file), then measures
//! authenticated `GET /v1/tenants/{t}/pipelines/{p}` and pipeline creates: requests per second,
//! p50 and p99 latency.
//!
//! `cargo run --release -p sluice-benches --bin api-bench -- --help`

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};
use sluice_api::Config;

#[derive(Parser)]
#[command(about = "Measures the Sluice API on loopback")]
struct Args {
    /// Admin URL of a PostgreSQL server; a fresh database is created on it and dropped after.
    #[arg(long, default_value = "postgres://root@127.0.0.1:5432/test")]
    postgres: String,
    /// Use an SQLite file instead of PostgreSQL.
    #[arg(long)]
    sqlite: bool,
    /// Concurrent connections for the GET phase.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Duration of the GET phase, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Pipelines created in the create phase.
    #[arg(long, default_value_t = 1000)]
    creates: usize,
    /// Concurrent clients in the create phase.
    #[arg(long, default_value_t = 8)]
    create_connections: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(name: &str, mut lat: Vec<Duration>, errors: usize, elapsed: Duration) {
    lat.sort();
    println!(
        "| {name} | {} | {} | {:.0} | {:.2} | {:.2} |",
        lat.len(),
        errors,
        lat.len() as f64 / elapsed.as_secs_f64(),
        percentile(&lat, 0.50).as_secs_f64() * 1000.0,
        percentile(&lat, 0.99).as_secs_f64() * 1000.0,
    );
}

fn pipeline(name: &str) -> Value {
    json!({"name": name, "spec": {"source": {"stream": "orders"},
        "filter": "event.amount > 100",
        "sinks": [{"name": "out", "nats": {"subject": "alerts.big"}}], "parallelism": 1}})
}

/// Counts a request sent at `started`: its latency when it answered `expected` (the body
/// read), else an error.
async fn record(
    sent: reqwest::Result<reqwest::Response>,
    expected: u16,
    started: Instant,
    lat: &mut Vec<Duration>,
    errors: &mut usize,
) {
    match sent {
        Ok(r) if r.status() == expected => {
            let _ = r.bytes().await;
            lat.push(started.elapsed());
        }
        _ => *errors += 1,
    }
}

/// The latencies and error counts of every connection's task, together.
async fn gathered(
    tasks: Vec<tokio::task::JoinHandle<(Vec<Duration>, usize)>>,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let (mut lat, mut errors) = (vec![], 0);
    for t in tasks {
        let (l, e) = t.await?;
        lat.extend(l);
        errors += e;
    }
    Ok((lat, errors))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();

    let (kubernetes, bench_store) =
        sluice_benches::kubernetes_and_store("api-bench", args.sqlite, &args.postgres).await?;
    let (client, store) = (kubernetes.client.clone(), bench_store.store.clone());

    let config = Config::default();
    let api =
        sluice_benches::RunningApi::start(config, store.clone(), client.clone(), None).await?;
    let (base, admin_token) = (api.base.clone(), api.admin_token.clone());

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections.max(args.create_connections) * 2)
        .build()?;
    let res = http
        .post(format!("{base}/v1/tenants"))
        .bearer_auth(&admin_token)
        .json(&json!({"name": "bench", "spec": {}}))
        .send()
        .await?;
    if res.status() != 201 {
        bail!("tenant create: {} {}", res.status(), res.text().await?);
    }
    // Stands for the operator: the tenant's namespace.
    let ns: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(json!({"metadata": {"name": "sluice-bench"}}))?;
    kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .create(&Default::default(), &ns)
        .await?;
    let res = http
        .post(format!("{base}/v1/tenants/bench/tokens"))
        .bearer_auth(&admin_token)
        .json(&json!({"name": "bench", "role": "developer"}))
        .send()
        .await?;
    let body: Value = res.json().await?;
    let token = body["token"]
        .as_str()
        .context("token in answer")?
        .to_string();
    let res = http
        .post(format!("{base}/v1/tenants/bench/pipelines"))
        .bearer_auth(&token)
        .json(&pipeline("p0"))
        .send()
        .await?;
    if res.status() != 201 {
        bail!("pipeline create: {} {}", res.status(), res.text().await?);
    }

    println!(
        "| operation | requests | errors | requests/s | p50 ms | p99 ms |\n|---|---|---|---|---|---|"
    );

    // Warm-up, then the GET phase.
    let url = Arc::new(format!("{base}/v1/tenants/bench/pipelines/p0"));
    for _ in 0..200 {
        http.get(url.as_str()).bearer_auth(&token).send().await?;
    }
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let start = Instant::now();
    let mut tasks = vec![];
    for _ in 0..args.connections {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::with_capacity(100_000), 0usize);
            while Instant::now() < deadline {
                let t = Instant::now();
                let sent = http.get(url.as_str()).bearer_auth(&token).send().await;
                record(sent, 200, t, &mut lat, &mut errors).await;
            }
            (lat, errors)
        }));
    }
    let (lat, errors) = gathered(tasks).await?;
    report(
        "GET /v1/tenants/{t}/pipelines/{p}",
        lat,
        errors,
        start.elapsed(),
    );

    // Create phase.
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = vec![];
    for _ in 0..args.create_connections {
        let (http, base, token, next) = (http.clone(), base.clone(), token.clone(), next.clone());
        let total = args.creates;
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (vec![], 0usize);
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let t = Instant::now();
                let sent = http
                    .post(format!("{base}/v1/tenants/bench/pipelines"))
                    .bearer_auth(&token)
                    .json(&pipeline(&format!("p{}", i + 1)))
                    .send()
                    .await;
                record(sent, 201, t, &mut lat, &mut errors).await;
            }
            (lat, errors)
        }));
    }
    let (lat, errors) = gathered(tasks).await?;
    report(
        "POST /v1/tenants/{t}/pipelines",
        lat,
        errors,
        start.elapsed(),
    );

    api.stop().await?;
    bench_store.drop_database().await?;
    kubernetes.shutdown().await;
    Ok(())
}
