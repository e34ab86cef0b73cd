//! The Kafka phases of `ingest-bench`: a tenant with a Stream on Kafka (its topic made and its
//! status set as the operator would), and a bare rdkafka producer as the baseline.

use super::{Args, Phase, run, tenant_with_producer};
use anyhow::bail;
use bytes::Bytes;
use kube::api::{Api, Patch, PatchParams};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use sluice_core::names;
use std::sync::Arc;

const PARTITIONS: i32 = 3;

/// The Kafka side of the bench.
pub struct OnKafka {
    /// The ingest URL of the Stream on Kafka.
    pub url: String,
    /// A producer token of its tenant.
    pub token: String,
    /// The Stream's topic, and the baseline's.
    topics: [String; 2],
    producer: FutureProducer,
}

fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// Creates the tenant, its Stream on Kafka and the two topics.
pub async fn setup(
    bootstrap: &str,
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    kube: &kube::Client,
    suffix: &str,
) -> anyhow::Result<OnKafka> {
    let tenant = format!("bench-kafka-{suffix}");
    let token = tenant_with_producer(http, base, admin, kube, &tenant, json!({})).await?;
    let res = http
        .post(format!("{base}/v1/tenants/{tenant}/streams"))
        .bearer_auth(admin)
        .json(&json!({"name": "orders", "spec": {"broker": "kafka", "partitions": PARTITIONS}}))
        .send()
        .await?;
    if res.status() != 201 {
        bail!("stream create: {} {}", res.status(), res.text().await?);
    }
    let topic = format!("sluice.{tenant}.orders");
    let topics = [topic.clone(), format!("{topic}.baseline")];
    let admin_client: AdminClient<DefaultClientContext> = client(bootstrap).create()?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    for r in admin_client
        .create_topics(&new, &AdminOptions::new())
        .await?
    {
        r.map_err(|(t, e)| anyhow::anyhow!("topic {t}: {e}"))?;
    }
    Api::<sluice_crd::Stream>::namespaced(kube.clone(), &names::tenant_namespace(&tenant))
        .patch_status(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"broker": "kafka", "topic": topic, "partitions": PARTITIONS}}),
            ),
        )
        .await?;
    // The same settings as the API's producer.
    let producer = client(bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .create()?;
    Ok(OnKafka {
        url: format!("{base}/v1/tenants/{tenant}/streams/orders/events"),
        token,
        topics,
        producer,
    })
}

/// Each batch straight to the baseline topic, every acknowledgement awaited.
pub async fn baseline(k: &OnKafka, data: Arc<Vec<(Bytes, Vec<Bytes>)>>, args: &Args) -> Phase {
    let (producer, topic) = (k.producer.clone(), k.topics[1].clone());
    run(args.producers, args.seconds, move |_, i| {
        let (producer, topic, data) = (producer.clone(), topic.clone(), data.clone());
        async move {
            let events = &data[i % data.len()].1;
            let mut acks = Vec::with_capacity(events.len());
            let mut bytes = 0u64;
            for e in events {
                bytes += e.len() as u64;
                let record = FutureRecord::<[u8], [u8]>::to(&topic).payload(e.as_ref());
                acks.push(
                    producer
                        .send_result(record)
                        .map_err(|(e, _)| e.to_string())?,
                );
            }
            for a in acks {
                a.await
                    .map_err(|e| e.to_string())?
                    .map_err(|(e, _)| e.to_string())?;
            }
            Ok((events.len() as u64, bytes))
        }
    })
    .await
}

/// Deletes the topics.
pub async fn cleanup(bootstrap: &str, k: &OnKafka) {
    if let Ok(admin) = client(bootstrap).create::<AdminClient<DefaultClientContext>>() {
        let names: Vec<&str> = k.topics.iter().map(String::as_str).collect();
        let _ = admin.delete_topics(&names, &AdminOptions::new()).await;
    }
}
