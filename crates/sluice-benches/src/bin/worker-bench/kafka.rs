//! `worker-bench --kafka`: the same events and route, Kafka topic to Kafka topic, at the
//! Kafka-protocol broker at `--kafka-bootstrap`:
//!
//! - **baseline**: a bare rdkafka loop in a consumer group of its own — consume each event,
//!   produce it unchanged to the output topic with an idempotent `acks=all` producer, and
//!   store its offset once the produce is acknowledged (committed every second);
//! - **worker**: the worker library with the filter and projection, Kafka source (its own
//!   group) to Kafka sink (idempotent, `acks=all`), as a route runs it.
//!
//! The baseline ends when every event it read is acknowledged by the broker; the worker when
//! its sink has had every event that passes the filter acknowledged (its `events_out_total`).

use super::{Figures, cpu_seconds, event, report};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 3;

fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

fn producer(bootstrap: &str) -> anyhow::Result<FutureProducer> {
    Ok(client(bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()?)
}

async fn create_topics(bootstrap: &str, names: &[&str]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client(bootstrap).create()?;
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(n, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    for r in admin.create_topics(&topics, &AdminOptions::new()).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("topic {t}: {e}"))?;
    }
    Ok(())
}

async fn delete_topics(bootstrap: &str, names: &[&str]) {
    if let Ok(admin) = client(bootstrap).create::<AdminClient<DefaultClientContext>>() {
        let _ = admin.delete_topics(names, &AdminOptions::new()).await;
    }
}

/// Writes `n` events to `topic`, spread over its partitions, each acknowledged.
async fn preload(producer: &FutureProducer, topic: &str, n: usize) -> anyhow::Result<usize> {
    let mut pending = Vec::with_capacity(10_000);
    let mut bytes = 0;
    for i in 0..n {
        let e = event(i);
        bytes += e.len();
        let record = FutureRecord::<[u8], [u8]>::to(topic)
            .payload(&e)
            .partition((i % PARTITIONS as usize) as i32);
        pending.push(producer.send_result(record).map_err(|(e, _)| e)?);
        if pending.len() == 10_000 {
            for p in pending.drain(..) {
                p.await?.map_err(|(e, _)| e)?;
            }
        }
    }
    for p in pending.drain(..) {
        p.await?.map_err(|(e, _)| e)?;
    }
    Ok(bytes)
}

async fn baseline(bootstrap: &str, input: &str, output: &str, n: usize) -> anyhow::Result<Figures> {
    let consumer: StreamConsumer = client(bootstrap)
        .set("group.id", format!("{input}.baseline"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.offset.store", "false")
        .create()?;
    let producer = producer(bootstrap)?;
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    consumer.subscribe(&[input])?;
    let mut pending = Vec::with_capacity(1_000);
    let mut positions = Vec::with_capacity(1_000);
    for _ in 0..n {
        let m = consumer.recv().await?;
        let record =
            FutureRecord::<[u8], [u8]>::to(output).payload(m.payload().unwrap_or_default());
        pending.push(producer.send_result(record).map_err(|(e, _)| e)?);
        positions.push((m.partition(), m.offset()));
        if pending.len() == 1_000 {
            for p in pending.drain(..) {
                p.await?.map_err(|(e, _)| e)?;
            }
            for (p, o) in positions.drain(..) {
                consumer.store_offset(input, p, o)?;
            }
        }
    }
    for p in pending.drain(..) {
        p.await?.map_err(|(e, _)| e)?;
    }
    for (p, o) in positions.drain(..) {
        consumer.store_offset(input, p, o)?;
    }
    Ok(Figures {
        seconds: t0.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - cpu0,
    })
}

fn config_text(bootstrap: &str, input: &str, output: &str) -> String {
    let kafka = format!(r#"{{"bootstrapServers": "{bootstrap}"}}"#);
    format!(
        r#"{{
          "tenant": "bench", "pipeline": "orders", "route": "kafka",
          "source": {{"kind": "kafka", "kafka": {kafka}, "topic": "{input}",
                     "group": "{input}.worker", "startFrom": "all"}},
          "filter": "event.type == 'order.created' && event.amount > 50.0",
          "projection": {{"fields": [{{"path": "id"}}, {{"path": "customer.id", "as": "customerId"}},
                                     {{"path": "amount"}}, {{"path": "currency"}}, {{"path": "ts"}}]}},
          "sink": {{"kind": "kafka", "kafka": {kafka}, "topic": "{output}"}},
          "batching": {{"maxEvents": 1000, "maxWaitMs": 50}},
          "deadLetter": {{"url": "nats://127.0.0.1:4222", "subject": "unused",
                          "kafka": {{"kafka": {kafka}, "topic": "{input}.dead-letter"}}}}
        }}"#
    )
}

/// Events of `0..n` the filter passes.
fn passing(n: usize) -> i64 {
    (0..n).filter(|i| i % 10 != 9 && i % 1000 >= 50).count() as i64
}

/// The worker's `events_out_total`, from its metrics endpoint.
async fn events_out(http: &reqwest::Client, metrics: &str) -> anyhow::Result<i64> {
    let text = http.get(metrics).send().await?.text().await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("sluice_worker_events_out_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as i64)
}

async fn worker(bootstrap: &str, input: &str, output: &str, n: usize) -> anyhow::Result<Figures> {
    let config = sluice_worker::config::parse(&config_text(bootstrap, input, output))?;
    let want = passing(n);
    let http = reqwest::Client::new();
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let shutdown = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let options = sluice_worker::RunOptions {
        metrics_addr: Some("127.0.0.1:0".parse()?),
        listening: Some(tx),
    };
    let task = tokio::spawn(sluice_worker::run(
        config,
        options,
        shutdown.clone(),
        CancellationToken::new(),
    ));
    let metrics = format!("http://{}/metrics", rx.await?);
    // The output topic's watermarks are not a count of records on every Kafka-protocol
    // broker: the worker's own count of events its sink had acknowledged is. Reading it
    // every 20 ms costs little next to the route; it is counted.
    let mut said = Instant::now();
    loop {
        let out = events_out(&http, &metrics).await?;
        if out >= want {
            break;
        }
        if said.elapsed() > Duration::from_secs(10) {
            eprintln!("worker: {out} of {want} events acknowledged by the sink");
            said = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let figures = Figures {
        seconds: t0.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - cpu0,
    };
    shutdown.cancel();
    task.await??;
    Ok(figures)
}

/// Runs the Kafka mode: `only` is `baseline`, `worker` or neither.
pub async fn bench(bootstrap: &str, n: usize, only: Option<&str>) -> anyhow::Result<()> {
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let input = format!("sluice.bench.orders-{suffix}");
    let out_base = format!("{input}.baseline");
    let out_worker = format!("{input}.worker-out");
    let dead = format!("{input}.dead-letter");
    let topics = [input.as_str(), &out_base, &out_worker, &dead];
    create_topics(bootstrap, &topics).await?;
    let result = async {
        let t0 = Instant::now();
        let bytes = preload(&producer(bootstrap)?, &input, n).await?;
        println!(
            "produced {n} events of {} bytes on average to {PARTITIONS} partitions in {:.1}s (Kafka, acks=all)",
            bytes / n.max(1),
            t0.elapsed().as_secs_f64()
        );
        let base = if only != Some("worker") {
            let f = baseline(bootstrap, &input, &out_base, n).await?;
            report("baseline (consume, produce acks=all, store offset)", &f, n);
            Some(f)
        } else {
            None
        };
        if only != Some("baseline") {
            let f = worker(bootstrap, &input, &out_worker, n).await?;
            report("worker (filter + projection, Kafka -> Kafka)", &f, n);
            if let Some(b) = base {
                println!(
                    "ratio: worker/baseline = {:.0}% of the rate, {:.2}x the CPU per event",
                    100.0 * f.rate(n) / b.rate(n),
                    f.cpu / b.cpu
                );
            }
        }
        anyhow::Ok(())
    }
    .await;
    delete_topics(bootstrap, &topics).await;
    result
}
