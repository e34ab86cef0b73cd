//! `worker-bench`: the worker's throughput against a bare consume-and-republish loop.
//!
//! Publishes N JSON events (about 200 bytes) to a fresh JetStream stream, then moves them
//! twice, each time with a durable pull consumer of its own starting at the first event:
//!
//! - **baseline**: a bare async-nats loop — pull (1000 per request, pipelined), publish each
//!   payload unchanged on a core NATS subject, ack each message without waiting;
//! - **worker**: the worker library (`sluice_worker::run`), with a CEL filter and a field projection, JetStream
//!   source to core NATS sink, as a route would run it.
//!
//! Each run ends when its consumer has nothing pending and nothing unacknowledged. Prints
//! events/s and CPU-seconds (user + system, of this process) per million events for both.
//!
//! With `--broker-auth`, both run against a nats-server in operator mode that the bench starts
//! (`sluice_testkit::nats::OperatorModeNats`), in a tenant account the operator's code makes:
//! the worker as its route's user (creds file, its own inbox prefix, a signing key scoped to
//! the route), and the baseline as a route user of its own with the same permissions for its
//! consumer and subject. So the baseline is authenticated too, and the ratio shows what the
//! worker costs, not what authentication costs.
//!
//! With `--kafka`, the same comparison runs Kafka topic to Kafka topic (`kafka` module).

#[path = "worker-bench/kafka.rs"]
mod kafka;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, stream};
use clap::Parser;
use futures::StreamExt;
use nix::sys::resource::{UsageWho, getrusage};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Measures the worker against a bare consume-and-republish loop.
#[derive(Parser, Debug)]
struct Args {
    /// Events to publish and move.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// NATS server.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    url: String,
    /// Keep the stream in memory instead of on disk.
    #[arg(long)]
    memory: bool,
    /// Run only one side: `baseline`, `worker` or `transform` (the transforms in memory).
    #[arg(long)]
    only: Option<String>,
    /// Start a nats-server in operator mode and run both sides as route users of a tenant
    /// account (`--url` is then ignored).
    #[arg(long)]
    broker_auth: bool,
    /// Move the events Kafka topic to Kafka topic instead, at `--kafka-bootstrap`.
    #[arg(long)]
    kafka: bool,
    /// Kafka-protocol broker of `--kafka`.
    #[arg(long, default_value = "127.0.0.1:9092")]
    kafka_bootstrap: String,
}

fn cpu_seconds() -> f64 {
    let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    t(u.user_time()) + t(u.system_time())
}

fn event(i: usize) -> Vec<u8> {
    let kind = if i % 10 == 9 {
        "order.cancelled"
    } else {
        "order.created"
    };
    format!(
        r#"{{"id":{i},"type":"{kind}","amount":{}.5,"currency":"EUR","customer":{{"id":"c-{}","tier":"gold","country":"NO"}},"items":{},"ts":"2026-03-04T05:06:07.{:03}Z","note":"benchmark event padding"}}"#,
        i % 1000,
        i % 50_000,
        i % 7 + 1,
        i % 1000
    )
    .into_bytes()
}

/// The names of one run, and how each side connects.
struct Names {
    /// The JetStream stream.
    stream: String,
    /// Its events subject.
    subject: String,
    /// The prefix of the sinks' subjects.
    out: String,
    /// The dead-letter subject.
    dead: String,
}

/// The benchmarked route: filter and field projection, JetStream to core NATS, reading with
/// the durable consumer `durable`, connecting as `broker` says (route configuration JSON).
fn config_text(url: &str, names: &Names, durable: &str, out: &str, broker: &str) -> String {
    let (stream_name, subject, dead) = (&names.stream, &names.subject, &names.dead);
    format!(
        r#"{{
          "tenant": "bench", "pipeline": "orders", "route": "nats",
          "broker": {broker},
          "source": {{"kind": "jetstream", "url": "{url}", "stream": "{stream_name}",
                     "subject": "{subject}", "durable": "{durable}", "startFrom": "all",
                     "maxAckPending": 10000}},
          "filter": "event.type == 'order.created' && event.amount > 50.0",
          "projection": {{"fields": [{{"path": "id"}}, {{"path": "customer.id", "as": "customerId"}},
                                     {{"path": "amount"}}, {{"path": "currency"}}, {{"path": "ts"}}]}},
          "sink": {{"kind": "nats", "url": "{url}", "subject": "{out}"}},
          "batching": {{"maxEvents": 1000, "maxWaitMs": 50}},
          "deadLetter": {{"url": "{url}", "subject": "{dead}"}}
        }}"#
    )
}

/// The transforms alone, in memory: the CPU they add per event.
fn transform_only(config: &str, n: usize) -> anyhow::Result<()> {
    let config = sluice_worker::config::parse(config)?;
    let t = sluice_worker::transform::Transform::new(&config)?;
    let events: Vec<bytes::Bytes> = (0..n.min(200_000)).map(|i| event(i).into()).collect();
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let mut delivered = 0usize;
    t.apply_all(&events, |o| {
        if let sluice_worker::transform::Outcome::Deliver(_) = o {
            delivered += 1
        }
    });
    let f = Figures {
        seconds: t0.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - cpu0,
    };
    report(
        &format!(
            "transforms alone, in memory ({delivered} of {} pass)",
            events.len()
        ),
        &f,
        events.len(),
    );
    Ok(())
}

struct Figures {
    seconds: f64,
    cpu: f64,
}

impl Figures {
    fn rate(&self, n: usize) -> f64 {
        n as f64 / self.seconds
    }
    fn cpu_per_million(&self, n: usize) -> f64 {
        self.cpu * 1e6 / n as f64
    }
}

async fn wait_consumed(stream: &stream::Stream, durable: &str) -> anyhow::Result<()> {
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut c: consumer::PullConsumer = stream
            .get_consumer(durable)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        let info = c.info().await?;
        if info.num_pending == 0 && info.num_ack_pending == 0 && info.delivered.stream_sequence > 0
        {
            return Ok(());
        }
    }
}

async fn consumer_for(
    stream: &stream::Stream,
    durable: &str,
    subject: &str,
) -> anyhow::Result<consumer::PullConsumer> {
    Ok(stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(durable.into()),
            filter_subject: subject.into(),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::Explicit,
            max_ack_pending: 10_000,
            ..Default::default()
        })
        .await?)
}

/// The bare loop, on `client` (with `own`, the stream as that client sees it); `stream` is the
/// stream as the bench's manager sees it.
async fn baseline(
    client: &async_nats::Client,
    own: &stream::Stream,
    stream: &stream::Stream,
    subject: &str,
    out: &str,
) -> anyhow::Result<Figures> {
    let consumer = consumer_for(own, "baseline", subject).await?;
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let stop = CancellationToken::new();
    let task = {
        let client = client.clone();
        let out = async_nats::Subject::from(out);
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut messages = consumer
                .stream()
                .max_messages_per_batch(1000)
                .messages()
                .await
                .expect("pull stream");
            loop {
                let m = tokio::select! {
                    m = messages.next() => m,
                    _ = stop.cancelled() => break,
                };
                let Some(Ok(m)) = m else { break };
                client
                    .publish(out.clone(), m.payload.clone())
                    .await
                    .expect("publish");
                m.ack().await.expect("ack");
            }
        })
    };
    wait_consumed(stream, "baseline").await?;
    let figures = Figures {
        seconds: t0.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - cpu0,
    };
    stop.cancel();
    task.await?;
    Ok(figures)
}

async fn worker(stream: &stream::Stream, config_text: &str) -> anyhow::Result<Figures> {
    let config = sluice_worker::config::parse(config_text)?;
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let shutdown = CancellationToken::new();
    let options = sluice_worker::RunOptions {
        metrics_addr: Some("127.0.0.1:0".parse()?),
        listening: None,
    };
    let task = tokio::spawn(sluice_worker::run(
        config,
        options,
        shutdown.clone(),
        CancellationToken::new(),
    ));
    // The worker creates its consumer; wait for it, then for it to be done.
    while stream
        .get_consumer::<consumer::pull::Config>("worker")
        .await
        .is_err()
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wait_consumed(stream, "worker").await?;
    let figures = Figures {
        seconds: t0.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - cpu0,
    };
    shutdown.cancel();
    task.await??;
    Ok(figures)
}

/// The connections and route configurations of one run.
struct Setup {
    names: Names,
    /// Creates and deletes the stream, reads the consumers' state.
    manager: async_nats::Client,
    /// Publishes the events.
    publisher: async_nats::Client,
    /// The baseline's connection.
    baseline: async_nats::Client,
    /// The worker's route configuration.
    worker_config: String,
    /// The broker in operator mode and the worker's creds file, kept while the run lasts.
    _secured: Option<(sluice_testkit::nats::OperatorModeNats, tempfile::TempDir)>,
}

/// Everything on one unauthenticated connection to `url`.
async fn plain(url: &str, suffix: &str) -> anyhow::Result<Setup> {
    let client = async_nats::connect(url).await.context("connecting")?;
    let names = Names {
        stream: format!("bench_{suffix}"),
        subject: format!("bench.{suffix}.events"),
        out: format!("benchout.{suffix}"),
        dead: format!("bench.{suffix}.dead"),
    };
    let worker_config = config_text(
        url,
        &names,
        "worker",
        &format!("{}.worker", names.out),
        "{}",
    );
    Ok(Setup {
        names,
        manager: client.clone(),
        publisher: client.clone(),
        baseline: client,
        worker_config,
        _secured: None,
    })
}

/// A nats-server in operator mode with a tenant account whose routes are the worker's and
/// the baseline's, each with its own user; events published by the tenant's ingest user.
async fn secured(suffix: &str) -> anyhow::Result<Setup> {
    use sluice_operator::accounts::{Accounts, BrokerAuth};
    let nats = sluice_testkit::nats::OperatorModeNats::start();
    let url = nats.url.clone();
    let accounts = Accounts::new(
        &url,
        &BrokerAuth::new(
            nats.bootstrap.operator_seed(),
            nats.bootstrap.admin_creds.clone(),
            Some(nats.bootstrap.ingest.public_key()),
        ),
        None,
    )?;
    let tenant: sluice_crd::Tenant = serde_json::from_value(serde_json::json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "bench", "uid": "worker-bench"}, "spec": {"quota": {}}
    }))?;
    let uid = "worker-bench";
    let id = format!("b{suffix}");
    let names = Names {
        stream: sluice_core::subjects::jetstream_name("bench", &id),
        subject: sluice_core::subjects::events_subject("bench", &id),
        out: format!("sluice.bench.out{suffix}"),
        dead: format!("sluice.bench.{id}.dead"),
    };
    let dir = tempfile::tempdir()?;
    let users = accounts.route_users(uid, sluice_broker::jwt::now());
    let mut keys = vec![];
    let mut route = |side: &str| -> anyhow::Result<(String, String)> {
        let (route_id, route_name) = (format!("bench/{side}"), format!("orders-{side}"));
        let prefix = sluice_broker::permissions::route_inbox_prefix(&route_name);
        let creds_file = dir.path().join(format!("{side}.creds"));
        let user = users.user(&route_id, &route_name);
        std::fs::write(&creds_file, &user.creds)?;
        let broker = serde_json::json!({
            "credentialsFile": creds_file.display().to_string(), "inboxPrefix": prefix,
        });
        let text = config_text(
            &url,
            &names,
            side,
            &format!("{}.{side}", names.out),
            &broker.to_string(),
        );
        let config =
            sluice_core::route::RouteConfig::from_json(&text).map_err(anyhow::Error::msg)?;
        keys.extend(users.keys(&route_id, &route_name, &config));
        Ok((text, user.creds))
    };
    let (worker_config, _) = route("worker")?;
    let (_, baseline_creds) = route("baseline")?;
    accounts.ensure(&tenant, &keys).await?;
    let manager = accounts.client(uid).await.map_err(anyhow::Error::msg)?;
    let publisher = sluice_operator::accounts::connect(&url, &accounts.ingest_creds("bench", uid)?)
        .await
        .map_err(anyhow::Error::msg)?;
    let baseline = async_nats::ConnectOptions::with_credentials(&baseline_creds)?
        .custom_inbox_prefix(sluice_broker::permissions::route_inbox_prefix(
            "orders-baseline",
        ))
        .connect(&url)
        .await
        .context("the baseline's route user")?;
    Ok(Setup {
        names,
        manager,
        publisher,
        baseline,
        worker_config,
        _secured: Some((nats, dir)),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.kafka {
        return kafka::bench(&args.kafka_bootstrap, args.events, args.only.as_deref()).await;
    }
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let setup = if args.broker_auth {
        secured(&suffix).await?
    } else {
        plain(&args.url, &suffix).await?
    };
    let names = &setup.names;
    let js = jetstream::new(setup.manager.clone());
    let stream = js
        .create_stream(stream::Config {
            name: names.stream.clone(),
            subjects: vec![names.subject.clone(), names.dead.clone()],
            storage: if args.memory {
                stream::StorageType::Memory
            } else {
                stream::StorageType::File
            },
            ..Default::default()
        })
        .await?;
    let result = bench(&args, &setup, &stream).await;
    js.delete_stream(&names.stream).await?;
    result
}

async fn bench(args: &Args, setup: &Setup, stream: &stream::Stream) -> anyhow::Result<()> {
    let n = args.events;
    let names = &setup.names;
    let js = jetstream::new(setup.publisher.clone());
    let t0 = Instant::now();
    let mut acks = Vec::with_capacity(1_000);
    let mut bytes = 0usize;
    for i in 0..n {
        let e = event(i);
        bytes += e.len();
        acks.push(js.publish(names.subject.clone(), e.into()).await?);
        if acks.len() == 1_000 {
            for a in acks.drain(..) {
                a.await?;
            }
        }
    }
    for a in acks.drain(..) {
        a.await?;
    }
    println!(
        "published {n} events of {} bytes on average in {:.1}s ({} storage, {})",
        bytes / n.max(1),
        t0.elapsed().as_secs_f64(),
        if args.memory { "memory" } else { "file" },
        if args.broker_auth {
            "broker in operator mode: both sides as route users"
        } else {
            "no broker authentication"
        }
    );
    transform_only(&setup.worker_config, n)?;
    if args.only.as_deref() == Some("transform") {
        return Ok(());
    }
    let run_baseline = args.only.as_deref() != Some("worker");
    let run_worker = args.only.as_deref() != Some("baseline");
    let base = if run_baseline {
        let own = jetstream::new(setup.baseline.clone())
            .get_stream(&names.stream)
            .await?;
        let out = format!("{}.baseline", names.out);
        let f = baseline(&setup.baseline, &own, stream, &names.subject, &out).await?;
        report("baseline (consume, republish, ack)", &f, n);
        Some(f)
    } else {
        None
    };
    if run_worker {
        let f = worker(stream, &setup.worker_config).await?;
        report("worker (filter + projection, JetStream -> NATS)", &f, n);
        if let Some(b) = base {
            println!(
                "ratio: worker/baseline = {:.0}% of the rate, {:.2}x the CPU per event",
                100.0 * f.rate(n) / b.rate(n),
                f.cpu / b.cpu
            );
        }
    }
    Ok(())
}

fn report(what: &str, f: &Figures, n: usize) {
    println!(
        "{what}: {:.0} events/s, {:.2} CPU-s per million events ({:.2}s wall, {:.2} CPU-s)",
        f.rate(n),
        f.cpu_per_million(n),
        f.seconds,
        f.cpu
    );
}
