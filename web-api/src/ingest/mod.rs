//! Ingest: producers' events enter through `POST /v1/tenants/{tenant}/streams/{stream}/events`
//! (see [`crate::routes::ingest`]) and are published to the stream's subject on NATS JetStream.
//!
//! This module holds what the route shares between requests: the JetStream context, the
//! per-tenant token buckets ([`limiter`]), the usage meter ([`meter`]), and a short-lived cache
//! of where each stream's events go (its subject, its compiled JSON Schema, the tenant's rates),
//! so that a request costs no Kubernetes round trip while the cache is fresh.

pub mod accept;
pub mod broker;
pub mod kafka;
pub mod limiter;
pub mod meter;
pub mod parse;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::auth;
use crate::config::Config;
use crate::k8s::Kube;
use crate::problem::ApiError;
use limiter::{RateLimiter, Rates};
use meter::UsageMeter;

/// Where a stream's events are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A JetStream subject (the Stream's `status.subject`).
    Nats(async_nats::Subject),
    /// A Kafka topic (the Stream's `status.topic`), with the field keying events to
    /// partitions (`spec.partitionKey`).
    Kafka {
        /// The topic.
        topic: String,
        /// The field path of each event's key.
        partition_key: Option<String>,
    },
}

/// Where a stream's events go, and how they are checked.
#[derive(Debug)]
pub struct Target {
    /// Where the events are written.
    pub destination: Destination,
    /// The stream's JSON Schema, compiled; `None` when events are not checked.
    pub schema: Option<Arc<jsonschema::Validator>>,
    /// The tenant's ingest rates on this replica.
    pub rates: Rates,
    /// Whether the tenant is suspended (ingest refused).
    pub suspended: bool,
    /// The tenant's broker account (`status.brokerAccount`), when the broker has tenant
    /// accounts.
    pub account: Option<String>,
}

#[derive(Debug)]
struct Cached {
    target: Arc<Target>,
    at: Instant,
    /// `metadata.resourceVersion` of the Stream the schema was compiled from.
    resource_version: Option<String>,
    schema: Option<Map<String, Value>>,
}

/// The bounds of one ingest request (see [`Config`]'s `ingest_*` settings).
#[derive(Debug, Clone)]
pub struct Bounds {
    /// Largest body, in bytes.
    pub max_body_bytes: usize,
    /// Most events.
    pub max_events: usize,
    /// Most rejection records in the answer.
    pub max_rejections: usize,
    /// Publishes whose acknowledgements are awaited together.
    pub ack_window: usize,
    /// Deadline of the whole request.
    pub timeout: Duration,
    /// Longest wait of one publish for a broker publish permit.
    pub permit_timeout: Duration,
}

impl Bounds {
    /// The bounds `config` sets.
    pub fn of(config: &Config) -> Self {
        Bounds {
            max_body_bytes: config.ingest_max_body_bytes,
            max_events: config.ingest_max_events,
            max_rejections: config.ingest_max_rejections,
            ack_window: config.ingest_ack_window,
            timeout: config.ingest_timeout,
            permit_timeout: config.ingest_permit_timeout,
        }
    }
}

/// State of the ingest route shared by all requests.
#[derive(Debug)]
pub struct Ingest {
    /// Where events are published, when a NATS URL is configured (ingest into NATS streams
    /// answers 503 otherwise).
    pub broker: Option<broker::IngestBroker>,
    /// The producer of Kafka streams' events, when a Kafka cluster is configured (ingest
    /// into Kafka streams answers 503 otherwise).
    pub kafka: Option<kafka::KafkaIngest>,
    /// Per-tenant token buckets.
    pub limiter: RateLimiter,
    /// Counts waiting to be written to the store.
    pub meter: UsageMeter,
    /// Rates and bursts are divided by this (API replicas sharing the load).
    pub replicas: u32,
    /// How long a looked-up stream and tenant are used before being read again.
    pub ttl: Duration,
    /// The bounds of one request.
    pub bounds: Bounds,
    targets: RwLock<HashMap<(String, String), Cached>>,
}

/// Compiles a stream's JSON Schema.
pub fn compile_schema(schema: &Map<String, Value>) -> Result<jsonschema::Validator, String> {
    jsonschema::validator_for(&Value::Object(schema.clone())).map_err(|e| e.to_string())
}

impl Ingest {
    /// Ingest state with `config`'s replicas, cache lifetime and bounds; `broker` is `None`
    /// when no broker is configured.
    pub fn new(broker: Option<broker::IngestBroker>, config: &Config) -> Self {
        Ingest {
            broker,
            kafka: None,
            limiter: RateLimiter::new(),
            meter: UsageMeter::new(),
            replicas: config.ingest_replicas.max(1),
            ttl: config.token_cache_ttl,
            bounds: Bounds::of(config),
            targets: Default::default(),
        }
    }

    /// Where the events of `stream` of `tenant` go: from the cache while fresh, else read from
    /// Kubernetes (the Stream and the Tenant). The schema is compiled again only when the
    /// Stream's resourceVersion and its schema changed.
    pub async fn target(
        &self,
        kube: &Kube,
        tenant: &str,
        stream: &str,
    ) -> Result<Arc<Target>, ApiError> {
        let key = (tenant.to_string(), stream.to_string());
        let previous = {
            let targets = self.targets.read().unwrap_or_else(|e| e.into_inner());
            match targets.get(&key) {
                Some(c) if c.at.elapsed() < self.ttl => return Ok(c.target.clone()),
                Some(c) => Some((
                    c.resource_version.clone(),
                    c.schema.clone(),
                    c.target.schema.clone(),
                )),
                None => None,
            }
        };
        let s = kube
            .stream(tenant, stream)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("stream {stream:?} not found")))?;
        if s.metadata.deletion_timestamp.is_some() {
            self.forget_stream(tenant, stream);
            return Err(ApiError::Conflict(format!(
                "stream {stream:?} is being deleted"
            )));
        }
        let on_kafka = s.status.as_ref().and_then(|st| st.broker).or(s.spec.broker)
            == Some(sluice_crd::StreamBroker::Kafka);
        let status = s.status.as_ref();
        let destination = if on_kafka {
            status
                .and_then(|st| st.topic.clone())
                .map(|topic| Destination::Kafka {
                    topic,
                    partition_key: s.spec.partition_key.clone(),
                })
        } else {
            status
                .and_then(|st| st.subject.clone())
                .map(|subject| Destination::Nats(subject.into()))
        };
        let Some(destination) = destination else {
            return Err(ApiError::StreamNotReady(format!(
                "stream {stream:?} is not provisioned on the broker yet (no status.subject or \
                 status.topic); the operator does it shortly after the stream is created; \
                 retry in a few seconds"
            )));
        };
        let t = kube
            .tenant(tenant)
            .await?
            .ok_or_else(|| auth::tenant_not_found(tenant))?;
        let rv = s.metadata.resource_version.clone();
        let schema = match (&s.spec.schema, previous) {
            (None, _) => None,
            (Some(new), Some((old_rv, old_schema, Some(compiled))))
                if old_rv == rv || old_schema.as_ref() == Some(new) =>
            {
                Some(compiled)
            }
            (Some(new), _) => Some(Arc::new(compile_schema(new).map_err(|e| {
                ApiError::Conflict(format!(
                    "stream {stream:?} has a schema that is not a valid JSON Schema ({e}); \
                     fix the stream's spec.schema"
                ))
            })?)),
        };
        let target = Arc::new(Target {
            destination,
            schema,
            rates: Rates::from_quota(t.spec.quota.ingest.as_ref(), self.replicas),
            suspended: t.spec.suspend,
            account: t.status.as_ref().and_then(|st| st.broker_account.clone()),
        });
        let mut targets = self.targets.write().unwrap_or_else(|e| e.into_inner());
        if targets.len() > 100_000 {
            targets.clear();
        }
        targets.insert(
            key,
            Cached {
                target: target.clone(),
                at: Instant::now(),
                resource_version: rv,
                schema: s.spec.schema.clone(),
            },
        );
        Ok(target)
    }

    /// Forgets a cached stream (after it changed through this replica).
    pub fn forget_stream(&self, tenant: &str, stream: &str) {
        self.targets
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(tenant.to_string(), stream.to_string()));
    }

    /// Forgets a tenant's cached streams (after its quota or suspension changed, or its
    /// deletion).
    pub fn forget_tenant(&self, tenant: &str) {
        self.targets
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(t, _), _| t != tenant);
    }
}
