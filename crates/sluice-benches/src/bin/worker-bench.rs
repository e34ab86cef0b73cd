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

/// The benchmarked route: filter and field projection, JetStream to core NATS.
fn config_text(url: &str, stream: &str, subject: &str, out: &str, dead: &str) -> String {
    let stream_name = stream;
    format!(
        r#"{{
          "tenant": "bench", "pipeline": "orders", "route": "nats",
          "source": {{"kind": "jetstream", "url": "{url}", "stream": "{stream_name}",
                     "subject": "{subject}", "durable": "worker", "startFrom": "all",
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

async fn baseline(
    client: &async_nats::Client,
    stream: &stream::Stream,
    subject: &str,
    out: &str,
) -> anyhow::Result<Figures> {
    let consumer = consumer_for(stream, "baseline", subject).await?;
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

async fn worker(
    url: &str,
    stream: &stream::Stream,
    stream_name: &str,
    subject: &str,
    out: &str,
    dead: &str,
) -> anyhow::Result<Figures> {
    let config = sluice_worker::config::parse(&config_text(url, stream_name, subject, out, dead))?;
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let name = format!("bench_{suffix}");
    let subject = format!("bench.{suffix}.events");
    let client = async_nats::connect(&args.url).await.context("connecting")?;
    let js = jetstream::new(client.clone());
    let stream = js
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![format!("bench.{suffix}.>")],
            storage: if args.memory {
                stream::StorageType::Memory
            } else {
                stream::StorageType::File
            },
            ..Default::default()
        })
        .await?;
    let result = bench(&args, &client, &js, &stream, &name, &subject, &suffix).await;
    js.delete_stream(&name).await?;
    result
}

async fn bench(
    args: &Args,
    client: &async_nats::Client,
    js: &jetstream::Context,
    stream: &stream::Stream,
    name: &str,
    subject: &str,
    suffix: &str,
) -> anyhow::Result<()> {
    let n = args.events;
    let t0 = Instant::now();
    let mut acks = Vec::with_capacity(1_000);
    let mut bytes = 0usize;
    for i in 0..n {
        let e = event(i);
        bytes += e.len();
        acks.push(js.publish(subject.to_owned(), e.into()).await?);
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
        "published {n} events of {} bytes on average in {:.1}s ({} storage)",
        bytes / n.max(1),
        t0.elapsed().as_secs_f64(),
        if args.memory { "memory" } else { "file" }
    );
    let out = format!("benchout.{suffix}");
    transform_only(&config_text(&args.url, name, subject, "x", "y"), n)?;
    if args.only.as_deref() == Some("transform") {
        return Ok(());
    }
    let run_baseline = args.only.as_deref() != Some("worker");
    let run_worker = args.only.as_deref() != Some("baseline");
    let base = if run_baseline {
        let f = baseline(client, stream, subject, &format!("{out}.baseline")).await?;
        report("baseline (consume, republish, ack)", &f, n);
        Some(f)
    } else {
        None
    };
    if run_worker {
        let f = worker(
            &args.url,
            stream,
            name,
            subject,
            &format!("{out}.worker"),
            &format!("bench.{suffix}.dead"),
        )
        .await?;
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
