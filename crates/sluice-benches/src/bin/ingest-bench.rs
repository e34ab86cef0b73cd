//! Ingest throughput through the API against a bare JetStream producer, in one process on
//! loopback: kubesim (with Sluice's CRDs), the API (a fresh PostgreSQL database, or an SQLite
//! file) and the local NATS server's JetStream.
//!
//! Each phase runs `--producers` concurrent producers for `--seconds`, each sending batches of
//! `--batch` events of about `--event-bytes` bytes and waiting for each batch's answer:
//!
//! - `baseline`: an async-nats producer publishing each batch straight to JetStream, pipelined
//!   (all published, then all acknowledgements awaited) — the broker's and client's limit;
//! - `api`: `POST /v1/tenants/{t}/streams/{s}/events` with the batch as NDJSON (a tenant with
//!   no ingest quota: the rate limiter is skipped);
//! - `api+bucket`: the same for a tenant whose quota is far above the load, so every request
//!   goes through the token bucket.
//!
//! Then a micro-benchmark of the token bucket alone. Streams are deleted at the end.
//!
//! With `--kafka host:port`, two more phases run against a Kafka-protocol broker: a bare
//! rdkafka producer (idempotent, `acks=all`, each batch's acknowledgements awaited) writing to
//! a topic, and the API ingesting into a Stream on Kafka backed by another topic of the same
//! broker (a tenant without an ingest quota).
//!
//! With `--broker-auth`, the same phases run against a nats-server in operator mode that the
//! benchmark starts (from `PATH`): each tenant has its own account, the API publishes as a
//! user of the ingest key, and the baseline producer connects as the tenant's ingest user, so
//! both sides are authenticated and publish into the same account.
//!
//! `cargo run --release -p sluice-benches --bin ingest-bench -- --help`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use sluice_api::Config;
use sluice_api::ingest::broker::TenantAccounts;
use sluice_api::ingest::limiter::{RateLimiter, Rates};
use sluice_core::{names, subjects};
use sluice_operator::accounts::{Accounts, BrokerAuth};
use sluice_testkit::nats::OperatorModeNats;

#[path = "ingest-bench/kafka.rs"]
mod kafka;

#[derive(Parser)]
#[command(about = "Measures ingest through the Sluice API against a bare JetStream producer")]
struct Args {
    /// Admin URL of a PostgreSQL server; a fresh database is created on it and dropped after.
    #[arg(long, default_value = "postgres://root@127.0.0.1:5432/test")]
    postgres: String,
    /// Use an SQLite file instead of PostgreSQL.
    #[arg(long)]
    sqlite: bool,
    /// NATS server with JetStream.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Concurrent producers.
    #[arg(long, default_value_t = 4)]
    producers: usize,
    /// Events per batch (one request).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Approximate size of one event in bytes.
    #[arg(long, default_value_t = 200)]
    event_bytes: usize,
    /// Seconds per phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Rounds of (baseline, api, api+bucket), to see the spread on a busy machine.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Run against a nats-server in operator mode with tenant accounts (both the baseline and
    /// the API authenticated); `--nats-url` is then ignored.
    #[arg(long)]
    broker_auth: bool,
    /// A Kafka-protocol broker: also measure ingest into a Stream on Kafka against a bare
    /// rdkafka producer.
    #[arg(long)]
    kafka: Option<String>,
    /// Calls of the token-bucket micro-benchmark.
    #[arg(long, default_value_t = 5_000_000)]
    bucket_calls: u64,
}

/// `n` NDJSON batches of `batch` events of about `size` bytes each.
fn batches(n: usize, batch: usize, size: usize) -> Vec<(Bytes, Vec<Bytes>)> {
    (0..n)
        .map(|b| {
            let mut body = Vec::with_capacity(batch * (size + 1));
            let mut events = Vec::with_capacity(batch);
            for i in 0..batch {
                let mut e = format!(
                    "{{\"id\":\"evt-{b:04}-{i:06}\",\"type\":\"order.created\",\
                     \"customer\":{{\"id\":\"c-{}\",\"tier\":\"gold\"}},\"amount\":{}.{:02},\
                     \"currency\":\"EUR\",\"ts\":\"2025-01-01T00:00:00.000Z\",\"pad\":\"",
                    i % 977,
                    i % 500,
                    i % 100
                );
                while e.len() + 2 < size {
                    e.push('x');
                }
                e.push_str("\"}");
                events.push(Bytes::from(e.clone()));
                body.extend_from_slice(e.as_bytes());
                body.push(b'\n');
            }
            (Bytes::from(body), events)
        })
        .collect()
}

struct Phase {
    events: u64,
    bytes: u64,
    errors: u64,
    elapsed: Duration,
}

impl Phase {
    fn eps(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
    fn mbps(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }
}

/// Runs `producers` copies of `one` (one batch per call, returning events and bytes written)
/// for `seconds`.
async fn run<F, Fut>(producers: usize, seconds: u64, one: F) -> Phase
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(u64, u64), String>> + Send,
{
    let one = Arc::new(one);
    let stop = Arc::new(AtomicBool::new(false));
    let (events, bytes, errors) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let start = Instant::now();
    let mut tasks = vec![];
    for p in 0..producers {
        let (one, stop, events, bytes, errors) = (
            one.clone(),
            stop.clone(),
            events.clone(),
            bytes.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = p;
            while !stop.load(Ordering::Relaxed) {
                match one(p, i).await {
                    Ok((e, b)) => {
                        events.fetch_add(e, Ordering::Relaxed);
                        bytes.fetch_add(b, Ordering::Relaxed);
                    }
                    Err(msg) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("error: {msg}");
                        }
                    }
                }
                i += producers;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    Phase {
        events: events.load(Ordering::Relaxed),
        bytes: bytes.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
    }
}

async fn baseline(
    js: async_nats::jetstream::Context,
    subject: String,
    data: Arc<Vec<(Bytes, Vec<Bytes>)>>,
    args: &Args,
) -> Phase {
    let subject = async_nats::Subject::from(subject);
    run(args.producers, args.seconds, move |_, i| {
        let (js, subject, data) = (js.clone(), subject.clone(), data.clone());
        async move {
            let events = &data[i % data.len()].1;
            let mut acks = Vec::with_capacity(events.len());
            let mut bytes = 0u64;
            for e in events {
                bytes += e.len() as u64;
                acks.push(
                    js.publish(subject.clone(), e.clone())
                        .await
                        .map_err(|e| e.to_string())?,
                );
            }
            for a in acks {
                a.await.map_err(|e| e.to_string())?;
            }
            Ok((events.len() as u64, bytes))
        }
    })
    .await
}

async fn through_api(
    http: reqwest::Client,
    url: String,
    token: String,
    data: Arc<Vec<(Bytes, Vec<Bytes>)>>,
    args: &Args,
) -> Phase {
    run(args.producers, args.seconds, move |_, i| {
        let (http, url, token, data) = (http.clone(), url.clone(), token.clone(), data.clone());
        async move {
            let (body, events) = &data[i % data.len()];
            let bytes: u64 = events.iter().map(|e| e.len() as u64).sum();
            let res = http
                .post(url.as_str())
                .bearer_auth(&token)
                .header("content-type", "application/x-ndjson")
                .body(body.clone())
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = res.status();
            let text = res.bytes().await.map_err(|e| e.to_string())?;
            if status != 202 {
                return Err(format!("{status}: {}", String::from_utf8_lossy(&text)));
            }
            Ok((events.len() as u64, bytes))
        }
    })
    .await
}

/// Creates `tenant` with `quota` through the API, its namespace (standing for the operator),
/// and a producer token of it, which it returns.
async fn tenant_with_producer(
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    kube: &kube::Client,
    tenant: &str,
    quota: serde_json::Value,
) -> anyhow::Result<String> {
    let res = http
        .post(format!("{base}/v1/tenants"))
        .bearer_auth(admin)
        .json(&json!({"name": tenant, "spec": {"quota": quota}}))
        .send()
        .await?;
    if res.status() != 201 {
        bail!("tenant create: {} {}", res.status(), res.text().await?);
    }
    let ns: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(json!({"metadata": {"name": names::tenant_namespace(tenant)}}))?;
    Api::<k8s_openapi::api::core::v1::Namespace>::all(kube.clone())
        .create(&Default::default(), &ns)
        .await?;
    let token: serde_json::Value = http
        .post(format!("{base}/v1/tenants/{tenant}/tokens"))
        .bearer_auth(admin)
        .json(&json!({"name": "producer", "role": "producer"}))
        .send()
        .await?
        .json()
        .await?;
    Ok(token["token"].as_str().context("token")?.to_string())
}

fn bucket_micro(calls: u64) {
    let l = RateLimiter::new();
    let rates = Rates {
        events_per_sec: Some(1e15),
        bytes_per_sec: Some(1e18),
        event_capacity: 1e15,
        byte_capacity: 1e18,
    };
    for (name, rates) in [
        ("bucket (limited tenant)", rates),
        ("no limit", Rates::UNLIMITED),
    ] {
        let start = Instant::now();
        let mut refused = 0u64;
        for i in 0..calls {
            if l.reserve("bench", rates, 1000, 200_000 + (i & 1)).is_err() {
                refused += 1;
            }
        }
        let ns = start.elapsed().as_nanos() as f64 / calls as f64;
        println!(
            "| {name} | {calls} | {ns:.1} ns per request | {:.3} ns per event (batches of 1000) | refused {refused} |",
            ns / 1000.0
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();

    let (kubernetes, bench_store) =
        sluice_benches::kubernetes_and_store("ingest-bench", args.sqlite, &args.postgres).await?;
    let (client, store) = (kubernetes.client.clone(), bench_store.store.clone());

    // The broker: the local NATS server, or one in operator mode with tenant accounts.
    let secured = args.broker_auth.then(OperatorModeNats::start);
    let nats_url = secured
        .as_ref()
        .map_or(args.nats_url.clone(), |n| n.url.clone());
    let accounts = match &secured {
        Some(n) => Some(Accounts::new(
            &n.url,
            &BrokerAuth::new(
                n.bootstrap.operator_seed(),
                n.bootstrap.admin_creds.clone(),
                Some(n.bootstrap.ingest.public_key()),
            ),
            None,
        )?),
        None => None,
    };
    let shared_js = match &secured {
        None => Some(async_nats::jetstream::new(
            async_nats::connect(nats_url.as_str())
                .await
                .context("NATS")?,
        )),
        Some(_) => None,
    };
    let tenant_accounts = match &secured {
        Some(n) => Some(TenantAccounts::new(&n.url, &n.bootstrap.ingest_seed())?),
        None => None,
    };

    let config = Config {
        ingest_max_body_bytes: 64 * 1024 * 1024,
        ..Config::default()
    };
    let api = sluice_benches::RunningApi::start_with(
        config,
        store.clone(),
        client.clone(),
        shared_js.clone(),
        tenant_accounts,
        args.kafka
            .as_deref()
            .map(|k| sluice_api::ingest::kafka::KafkaIngest::new(k, &[]))
            .transpose()
            .map_err(anyhow::Error::msg)?,
    )
    .await?;
    let (base, admin_token) = (api.base.clone(), api.admin_token.clone());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.producers * 2)
        .build()?;

    // Two tenants: one without an ingest quota, one with a quota far above the load. Each has
    // a stream `orders`, provisioned on JetStream as the operator would.
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut setups = vec![];
    let mut broker_streams = vec![];
    for (kind, quota) in [
        ("free", json!({})),
        (
            "limited",
            json!({"ingest": {"eventsPerSecond": 1_000_000_000i64,
                "bytesPerSecond": 1_000_000_000_000i64, "burst": 1_000_000_000i64}}),
        ),
    ] {
        let tenant = format!("bench-{kind}-{suffix}");
        let token =
            tenant_with_producer(&http, &base, &admin_token, &client, &tenant, quota).await?;
        let res = http
            .post(format!("{base}/v1/tenants/{tenant}/streams"))
            .bearer_auth(&admin_token)
            .json(&json!({"name": "orders", "spec": {"retention": {"maxBytes": 536870912}}}))
            .send()
            .await?;
        if res.status() != 201 {
            bail!("stream create: {} {}", res.status(), res.text().await?);
        }
        // The tenant's JetStream: the shared one, or its account's (set up as the operator
        // does, the account named in the Tenant's status), with the producer of the baseline
        // connected as its ingest user.
        let (js, producer_js) = match (&accounts, &shared_js) {
            (Some(accounts), _) => {
                let t = Api::<sluice_crd::Tenant>::all(client.clone())
                    .get(&tenant)
                    .await?;
                let uid = t.metadata.uid.clone().context("tenant uid")?;
                let account = accounts.ensure(&t, &[]).await?;
                Api::<sluice_crd::Tenant>::all(client.clone())
                    .patch_status(
                        &tenant,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": {"brokerAccount": account}})),
                    )
                    .await?;
                let manager = async_nats::jetstream::new(
                    accounts.client(&uid).await.map_err(anyhow::Error::msg)?,
                );
                let ingest_creds = accounts.ingest_creds(&tenant, &uid)?;
                let producer = sluice_operator::accounts::connect(&nats_url, &ingest_creds)
                    .await
                    .map_err(anyhow::Error::msg)?;
                (manager, async_nats::jetstream::new(producer))
            }
            (None, Some(js)) => (js.clone(), js.clone()),
            (None, None) => bail!("no broker"),
        };
        let js_name = subjects::jetstream_name(&tenant, "orders");
        js.create_stream(async_nats::jetstream::stream::Config {
            name: js_name.clone(),
            subjects: vec![subjects::stream_subjects(&tenant, "orders")],
            max_bytes: 512 * 1024 * 1024,
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await?;
        broker_streams.push((js.clone(), js_name));
        let subject = subjects::events_subject(&tenant, "orders");
        Api::<sluice_crd::Stream>::namespaced(client.clone(), &names::tenant_namespace(&tenant))
            .patch_status(
                "orders",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"subject": subject}})),
            )
            .await?;
        setups.push((
            format!("{base}/v1/tenants/{tenant}/streams/orders/events"),
            token,
            subject,
            producer_js,
        ));
    }

    let on_kafka = match &args.kafka {
        Some(bootstrap) => {
            Some(kafka::setup(bootstrap, &http, &base, &admin_token, &client, suffix).await?)
        }
        None => None,
    };

    let data = Arc::new(batches(16, args.batch, args.event_bytes));
    let avg = data[0].1.iter().map(|e| e.len()).sum::<usize>() as f64 / args.batch as f64;
    println!(
        "producers {}, batches of {} events of {avg:.0} bytes, {} s per phase, broker {}\n",
        args.producers,
        args.batch,
        args.seconds,
        if args.broker_auth {
            "in operator mode (tenant accounts; baseline and API authenticated)"
        } else {
            "without authentication"
        }
    );
    // Warm-up: connections, caches.
    for (url, token, _, _) in &setups {
        let res = http
            .post(url.as_str())
            .bearer_auth(token)
            .header("content-type", "application/x-ndjson")
            .body(data[0].0.clone())
            .send()
            .await?;
        if res.status() != 202 {
            bail!("warm-up: {} {}", res.status(), res.text().await?);
        }
    }

    println!("| round | phase | events | errors | events/s | MB/s | vs baseline |");
    println!("|---|---|---|---|---|---|---|");
    for round in 1..=args.rounds {
        let base_phase = baseline(
            setups[0].3.clone(),
            setups[0].2.clone(),
            data.clone(),
            &args,
        )
        .await;
        let api = through_api(
            http.clone(),
            setups[0].0.clone(),
            setups[0].1.clone(),
            data.clone(),
            &args,
        )
        .await;
        let bucket = through_api(
            http.clone(),
            setups[1].0.clone(),
            setups[1].1.clone(),
            data.clone(),
            &args,
        )
        .await;
        for (name, p) in [
            ("baseline (async-nats → JetStream)", &base_phase),
            ("API, no limiter", &api),
            ("API, token bucket", &bucket),
        ] {
            println!(
                "| {round} | {name} | {} | {} | {:.0} | {:.1} | {:.0}% |",
                p.events,
                p.errors,
                p.eps(),
                p.mbps(),
                100.0 * p.eps() / base_phase.eps()
            );
        }
        if let Some(k) = &on_kafka {
            // Against its own baseline: the bare producer to the same broker.
            let raw = kafka::baseline(k, data.clone(), &args).await;
            let through = through_api(
                http.clone(),
                k.url.clone(),
                k.token.clone(),
                data.clone(),
                &args,
            )
            .await;
            for (name, p) in [
                ("Kafka baseline (rdkafka, acks=all)", &raw),
                ("API into a Stream on Kafka", &through),
            ] {
                println!(
                    "| {round} | {name} | {} | {} | {:.0} | {:.1} | {:.0}% of the Kafka baseline |",
                    p.events,
                    p.errors,
                    p.eps(),
                    p.mbps(),
                    100.0 * p.eps() / raw.eps()
                );
            }
        }
    }

    println!("\n| token bucket | calls | per request | per event | |\n|---|---|---|---|---|");
    bucket_micro(args.bucket_calls);

    api.stop().await?;
    if let (Some(k), Some(bootstrap)) = (&on_kafka, &args.kafka) {
        kafka::cleanup(bootstrap, k).await;
    }
    for (js, name) in broker_streams {
        let _ = js.delete_stream(&name).await;
    }
    bench_store.drop_database().await?;
    kubernetes.shutdown().await;
    Ok(())
}
