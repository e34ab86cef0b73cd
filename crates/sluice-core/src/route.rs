//! The route configuration: what the operator renders into a route's ConfigMap (key
//! [`CONFIG_KEY`]) and what `sluice-worker` reads at start. One route = one pipeline sink:
//! one source, the pipeline's filter and projection, one sink, batching, retry and the
//! dead-letter destination. Credentials are never in it, only the paths of mounted files.

use crate::egress::{Egress, SinkPolicy};
use crate::{expr, names};
use serde::{Deserialize, Serialize};

/// The ConfigMap key holding the route configuration (JSON).
pub const CONFIG_KEY: &str = "route.json";
/// Where the operator mounts the route's ConfigMap in worker pods.
pub const CONFIG_MOUNT_DIR: &str = "/etc/sluice";
/// Where the operator mounts each referenced Secret: `<dir>/<secret name>/<key>`.
pub const SECRETS_MOUNT_DIR: &str = "/var/run/sluice/secrets";
/// Port of the worker's metrics and health endpoints in pods.
pub const WORKER_METRICS_PORT: u16 = 9090;

/// One route's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteConfig {
    /// The tenant owning the pipeline.
    pub tenant: String,
    /// The pipeline.
    pub pipeline: String,
    /// The route: the name of the sink it delivers to.
    pub route: String,
    /// Where events come from.
    pub source: Source,
    /// CEL filter over `event`; every event passes when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Reshaping of each event; events are delivered whole when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projection: Option<Projection>,
    /// Where events go.
    pub sink: Sink,
    /// Grouping of events before delivery.
    #[serde(default)]
    pub batching: Batching,
    /// Retries of failed deliveries.
    #[serde(default)]
    pub retry: Retry,
    /// Where poison events go.
    pub dead_letter: DeadLetter,
    /// Port of the metrics and health endpoints (0 picks a free port).
    #[serde(default = "default_metrics_port")]
    pub metrics_port: u16,
    /// When the worker's liveness endpoint reports the delivery loop stuck.
    #[serde(default)]
    pub liveness: Liveness,
    /// What the platform lets sinks reach (addresses, ambient credentials); the default
    /// denies metadata, link-local, loopback and unspecified addresses and ambient
    /// credentials.
    #[serde(default, skip_serializing_if = "is_default_policy")]
    pub sink_policy: SinkPolicy,
    /// Most estimated evaluation steps of the filter or the projection on one event (see
    /// [`expr::limits::DEFAULT_MAX_EVALUATION_COST`]); an event over it is dead-lettered.
    #[serde(default = "default_max_evaluation_cost")]
    pub max_evaluation_cost: u64,
    /// How every connection to the platform's broker (source, NATS sinks, dead letters)
    /// authenticates and is secured.
    #[serde(default, skip_serializing_if = "BrokerClient::is_default")]
    pub broker: BrokerClient,
}

/// How a worker connects to the platform's broker: its credentials, the inbox prefix its
/// permissions allow replies on, and TLS. Every path is a mounted file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BrokerClient {
    /// Path of the route user's NATS creds file (JWT and seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<String>,
    /// The prefix of the inboxes replies arrive on (JetStream API answers, pulled events,
    /// publish acknowledgements); the route user may subscribe to nothing else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbox_prefix: Option<String>,
    /// TLS to the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<BrokerTls>,
}

impl BrokerClient {
    /// Whether nothing is set (no credentials, default inboxes, no TLS).
    pub fn is_default(&self) -> bool {
        *self == BrokerClient::default()
    }
}

/// TLS to the broker: the server is verified against `caFile` (the system's roots when
/// unset), and a client certificate is presented when `certFile` and `keyFile` are set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BrokerTls {
    /// PEM file of the certificate authorities the broker's certificate is checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// PEM file of the client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// PEM file of the client certificate's private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
}

fn default_max_evaluation_cost() -> u64 {
    expr::limits::DEFAULT_MAX_EVALUATION_COST
}

fn is_default_policy(p: &SinkPolicy) -> bool {
    *p == SinkPolicy::default()
}

fn default_metrics_port() -> u16 {
    WORKER_METRICS_PORT
}

/// Where a new pipeline starts reading its stream. The Pipeline resource (`sluice-crd`) and
/// the route configuration share this type, so its docs are the field's `kubectl explain`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum StartFrom {
    /// Only events arriving after the pipeline starts.
    #[default]
    New,
    /// Every event the stream still retains.
    All,
    /// Events from `startTime` on.
    Time,
}

/// Where events come from. Tagged by `kind`; more brokers (Kafka) fit as new kinds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
pub enum Source {
    /// A JetStream durable pull consumer, shared by all replicas of the route.
    #[serde(rename_all = "camelCase")]
    Jetstream {
        /// NATS server URL(s), comma-separated.
        url: String,
        /// The JetStream stream.
        stream: String,
        /// Only messages on this subject are consumed.
        subject: String,
        /// The durable consumer name.
        durable: String,
        /// Where a new consumer starts.
        #[serde(default)]
        start_from: StartFrom,
        /// RFC 3339 instant, when `start_from` is `time`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_time: Option<String>,
        /// Most messages delivered and not yet acknowledged, per consumer (bounds memory).
        #[serde(default = "default_max_ack_pending")]
        max_ack_pending: u32,
        /// Upper bound (seconds) of the consumer's ack wait: how long a message held by a
        /// worker that died waits before it is redelivered. The worker derives the ack wait
        /// from its batching and sink timeouts, never above this nor above 5 s, and keeps the
        /// messages it holds alive with in-progress acknowledgements.
        #[serde(default = "default_ack_wait_seconds")]
        ack_wait_seconds: u32,
    },
    /// A Kafka consumer group: every replica of the route joins the same group, so the
    /// cluster splits the topic's partitions between them; offsets are committed only once
    /// the sink accepted the events.
    #[serde(rename_all = "camelCase")]
    Kafka {
        /// The cluster.
        kafka: KafkaClient,
        /// The topic (`sluice.<tenant>.<stream>`).
        topic: String,
        /// The consumer group, one per route.
        group: String,
        /// Where a group with no committed offsets starts.
        #[serde(default)]
        start_from: StartFrom,
        /// RFC 3339 time to start from when `startFrom` is `time`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_time: Option<String>,
    },
}

impl Source {
    /// The most messages held fetched and not yet acknowledged that the source allows.
    pub fn max_unacknowledged(&self) -> usize {
        match self {
            Source::Jetstream {
                max_ack_pending, ..
            } => *max_ack_pending as usize,
            // A consumer group has no such cap: the worker's own buffers bound it.
            Source::Kafka { .. } => usize::MAX,
        }
    }

    /// Where the source's events are published: a subject on NATS, a topic on Kafka.
    pub fn destination(&self) -> &str {
        match self {
            Source::Jetstream { subject, .. } => subject,
            Source::Kafka { topic, .. } => topic,
        }
    }
}

/// How a worker reaches the platform's Kafka cluster. Only settings that are not secret are
/// in the route configuration (TLS files, the security protocol): see `docs/kafka.md`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaClient {
    /// `host:port[,host:port…]`.
    pub bootstrap_servers: String,
    /// Extra librdkafka properties (`security.protocol`, `ssl.ca.location`, …).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub properties: std::collections::BTreeMap<String, String>,
}

/// A Kafka topic to write to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaTopic {
    /// The cluster.
    pub kafka: KafkaClient,
    /// The topic.
    pub topic: String,
}

fn default_max_ack_pending() -> u32 {
    10_000
}

fn default_ack_wait_seconds() -> u32 {
    30
}

/// A projection: fields to keep (nested paths, optional renames) or a CEL map expression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Projection {
    /// Keep these fields.
    Fields(Vec<FieldProjection>),
    /// A CEL expression over `event` that evaluates to a map: the new event.
    Expression(String),
}

/// One kept field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FieldProjection {
    /// Dot-separated path in the event.
    pub path: String,
    /// Name in the projected event (top level); the last path segment when unset.
    #[serde(default, rename = "as", skip_serializing_if = "Option::is_none")]
    pub as_: Option<String>,
}

impl FieldProjection {
    /// The name the field gets in the projected event.
    pub fn output_name(&self) -> &str {
        self.as_
            .as_deref()
            .unwrap_or_else(|| self.path.rsplit('.').next().unwrap_or(&self.path))
    }
}

/// Where events go. Tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
pub enum Sink {
    /// Core NATS publish of each event.
    #[serde(rename_all = "camelCase")]
    Nats {
        /// NATS server URL(s).
        url: String,
        /// Subject events are published on.
        subject: String,
    },
    /// JetStream publish with acknowledgement of each event.
    #[serde(rename_all = "camelCase")]
    Jetstream {
        /// NATS server URL(s).
        url: String,
        /// Subject (captured by the target stream).
        subject: String,
    },
    /// Batched POST of a JSON array of events.
    #[serde(rename_all = "camelCase")]
    Http {
        /// Endpoint.
        url: String,
        /// File whose content is sent as the `Authorization` header.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        authorization_file: Option<String>,
        /// Connect timeout (ms).
        #[serde(default = "default_connect_timeout_ms")]
        connect_timeout_ms: u64,
        /// Whole-request timeout (ms).
        #[serde(default = "default_request_timeout_ms")]
        request_timeout_ms: u64,
    },
    /// Batched INSERT into a table with a JSONB column (created if missing).
    #[serde(rename_all = "camelCase")]
    Postgres {
        /// File holding the connection URL.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url_file: Option<String>,
        /// Connection URL, for local runs (the operator always uses `url_file`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        /// Table, optionally schema-qualified.
        table: String,
    },
    /// Batched NDJSON files, gzip-compressed, in object storage.
    #[serde(rename_all = "camelCase")]
    ObjectStore {
        /// `s3://bucket` or `file:///path`.
        url: String,
        /// Key prefix of written objects.
        #[serde(default)]
        prefix: String,
        /// Region (S3).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
        /// Endpoint of an S3-compatible service.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
        /// Directory with `accessKeyId` and `secretAccessKey` files.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credentials_dir: Option<String>,
    },
    /// Produces each event to a Kafka topic: idempotent producer, `acks=all`, the key read
    /// from a field of the event.
    #[serde(rename_all = "camelCase")]
    Kafka {
        /// The cluster.
        kafka: KafkaClient,
        /// The topic.
        topic: String,
        /// Field path of the message key (`customer.id`); no key when unset.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// One JSON document per line to a file or standard output (debugging).
    #[serde(rename_all = "camelCase")]
    File {
        /// File to append to; standard output when unset.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
    },
}

fn default_connect_timeout_ms() -> u64 {
    2_000
}

fn default_request_timeout_ms() -> u64 {
    10_000
}

/// Grouping before delivery: a batch goes when full or when its first event waited long enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Batching {
    /// Most events per batch.
    pub max_events: u32,
    /// Longest wait of the first event of a batch (ms).
    pub max_wait_ms: u64,
}

impl Default for Batching {
    fn default() -> Self {
        Batching {
            max_events: 500,
            max_wait_ms: 100,
        }
    }
}

/// Retries of deliveries that failed for a reason that may pass (timeouts, 5xx, broker down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retry {
    /// First backoff (ms); it doubles up to `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    /// Longest backoff (ms).
    pub max_backoff_ms: u64,
    /// Delivery attempts of an event (counting redeliveries by the broker) after which a
    /// transient failure dead-letters it with the last error.
    #[serde(default = "default_max_deliver")]
    pub max_deliver: u32,
}

fn default_max_deliver() -> u32 {
    10
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            initial_backoff_ms: 100,
            max_backoff_ms: 10_000,
            max_deliver: default_max_deliver(),
        }
    }
}

/// When the worker's liveness endpoint (`/healthz`) fails: a stage of the delivery loop
/// (a pull from the source, a sink attempt, a dead-letter publish) busy for longer than
/// `stallTimeoutSeconds`. An idle source is not a stall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Liveness {
    /// Seconds one step of the delivery loop may take before the worker counts as stuck.
    pub stall_timeout_seconds: u32,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            stall_timeout_seconds: 120,
        }
    }
}

/// Where poison events (not JSON, failing expressions, refused by the sink) go, with the
/// error attached as headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeadLetter {
    /// NATS server URL(s).
    pub url: String,
    /// JetStream subject.
    pub subject: String,
    /// A Kafka topic that takes the dead events instead of the subject: the per-pipeline
    /// dead-letter topic of a route reading a Kafka stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaTopic>,
}

/// A configuration error: the field at fault and why. Route configs and custom resources
/// (`sluice_crd::validate`) report their errors with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path from the root of what was checked, e.g. `sink.url` or `spec.sinks[1].name`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl RouteConfig {
    /// Parses a configuration (JSON, or YAML-free JSON as the operator writes it).
    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    /// The configuration as the operator writes it (pretty JSON, stable field order).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("route config serializes")
    }

    /// Every problem of the configuration, each naming its field.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = vec![];
        let mut err = |field: &str, message: String| {
            errors.push(FieldError {
                field: field.into(),
                message,
            })
        };
        for (field, value) in [
            ("tenant", &self.tenant),
            ("pipeline", &self.pipeline),
            ("route", &self.route),
        ] {
            if let Some(m) = names::check_name(value, 63) {
                err(field, m);
            }
        }
        match &self.source {
            Source::Jetstream {
                url,
                stream,
                subject,
                durable,
                start_from,
                start_time,
                max_ack_pending,
                ..
            } => {
                for (field, value) in [
                    ("source.url", url),
                    ("source.stream", stream),
                    ("source.subject", subject),
                    ("source.durable", durable),
                ] {
                    if value.trim().is_empty() {
                        err(field, "must not be empty".into());
                    }
                }
                if durable.contains(['.', '*', '>', ' ']) {
                    err(
                        "source.durable",
                        "must not contain '.', '*', '>' or spaces".into(),
                    );
                }
                if (*start_from == StartFrom::Time) != start_time.is_some() {
                    err(
                        "source.startTime",
                        "must be set exactly when startFrom is \"time\"".into(),
                    );
                }
                if *max_ack_pending == 0 {
                    err("source.maxAckPending", "must be at least 1".into());
                }
            }
            Source::Kafka {
                kafka,
                topic,
                group,
                start_from,
                start_time,
            } => {
                check_kafka(&mut err, "source", kafka, topic);
                if group.trim().is_empty() {
                    err("source.group", "must not be empty".into());
                }
                if (*start_from == StartFrom::Time) != start_time.is_some() {
                    err(
                        "source.startTime",
                        "must be set exactly when startFrom is \"time\"".into(),
                    );
                }
            }
        }
        if let Some(prefix) = &self.broker.inbox_prefix
            && (prefix.is_empty()
                || prefix.contains(['*', '>', ' ', '\t'])
                || prefix.split('.').any(str::is_empty))
        {
            err(
                "broker.inboxPrefix",
                "must be subject tokens separated by '.', with no wildcard or space".into(),
            );
        }
        if let Some(f) = &self.filter
            && let Err(m) = expr::check(f)
        {
            err("filter", m);
        }
        match &self.projection {
            Some(Projection::Fields(fields)) => {
                if fields.is_empty() {
                    err("projection.fields", "must list at least one field".into());
                }
                for (i, f) in fields.iter().enumerate() {
                    if let Err(m) = expr::check_field_path(&f.path) {
                        err(&format!("projection.fields[{i}].path"), m);
                    }
                }
            }
            Some(Projection::Expression(e)) => {
                if let Err(m) = expr::check(e) {
                    err("projection.expression", m);
                }
            }
            None => {}
        }
        let source_subject = self.source.destination();
        match &self.sink {
            Sink::Nats { url, subject, .. } | Sink::Jetstream { url, subject, .. } => {
                if url.trim().is_empty() {
                    err("sink.url", "must not be empty".into());
                }
                if subject.trim().is_empty() || subject.contains(['*', '>', ' ']) {
                    err(
                        "sink.subject",
                        "must be a NATS subject without wildcards or spaces".into(),
                    );
                }
                if subject == source_subject {
                    err(
                        "sink.subject",
                        "must not be the source subject: the route would consume its own output"
                            .into(),
                    );
                }
            }
            Sink::Http {
                url,
                request_timeout_ms,
                ..
            } => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    err("sink.url", "must be an http:// or https:// URL".into());
                }
                if *request_timeout_ms == 0 {
                    err("sink.requestTimeoutMs", "must be at least 1".into());
                }
            }
            Sink::Postgres {
                url_file,
                url,
                table,
            } => {
                if url_file.is_none() == url.is_none() {
                    err("sink.urlFile", "set exactly one of urlFile and url".into());
                }
                let ok = !table.is_empty()
                    && table.split('.').count() <= 2
                    && table.split('.').all(|p| {
                        !p.is_empty()
                            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                            && !p.starts_with(|c: char| c.is_ascii_digit())
                    });
                if !ok {
                    err(
                        "sink.table",
                        "must be a table name, optionally schema-qualified (letters, digits, _)"
                            .into(),
                    );
                }
            }
            Sink::ObjectStore { url, .. } => {
                if !(url.starts_with("s3://") || url.starts_with("file://")) {
                    err("sink.url", "must be an s3:// or file:// URL".into());
                }
            }
            Sink::Kafka { kafka, topic, key } => {
                check_kafka(&mut err, "sink", kafka, topic);
                if topic == source_subject {
                    err(
                        "sink.topic",
                        "must not be the source topic: the route would consume its own output"
                            .into(),
                    );
                }
                if let Some(Err(m)) = key.as_deref().map(expr::check_field_path) {
                    err("sink.key", m);
                }
            }
            Sink::File { .. } => {}
        }
        if let Some(d) = &self.dead_letter.kafka {
            check_kafka(&mut err, "deadLetter.kafka", &d.kafka, &d.topic);
            if d.topic == source_subject {
                err(
                    "deadLetter.kafka.topic",
                    "must not be the source topic: dead events would be consumed again".into(),
                );
            }
        }
        if self.batching.max_events == 0 {
            err("batching.maxEvents", "must be at least 1".into());
        }
        if self.retry.initial_backoff_ms == 0
            || self.retry.max_backoff_ms < self.retry.initial_backoff_ms
        {
            err(
                "retry",
                "initialBackoffMs must be at least 1 and at most maxBackoffMs".into(),
            );
        }
        if self.retry.max_deliver == 0 {
            err("retry.maxDeliver", "must be at least 1".into());
        }
        if self.liveness.stall_timeout_seconds == 0 {
            err("liveness.stallTimeoutSeconds", "must be at least 1".into());
        }
        if self.dead_letter.subject.trim().is_empty() {
            err("deadLetter.subject", "must not be empty".into());
        }
        if self.dead_letter.subject == source_subject {
            err(
                "deadLetter.subject",
                "must not be the source subject: dead events would be consumed again".into(),
            );
        }
        if self.max_evaluation_cost == 0 {
            err("maxEvaluationCost", "must be at least 1".into());
        }
        if let Err(e) = Egress::new(&self.sink_policy) {
            err("sinkPolicy", e.to_string());
        }
        errors
    }
}

/// Longest Kafka topic name the brokers accept.
pub const MAX_TOPIC_LENGTH: usize = 249;

/// Whether `topic` is a Kafka topic name: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` nor `..`.
pub fn is_topic_name(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= MAX_TOPIC_LENGTH
        && topic != "."
        && topic != ".."
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn check_kafka(err: &mut impl FnMut(&str, String), at: &str, kafka: &KafkaClient, topic: &str) {
    if kafka.bootstrap_servers.trim().is_empty() {
        err(
            &format!("{at}.kafka.bootstrapServers"),
            "must not be empty".into(),
        );
    }
    if !is_topic_name(topic) {
        err(
            &format!("{at}.topic"),
            format!(
                "must be 1 to {MAX_TOPIC_LENGTH} letters, digits, '.', '_' or '-' (a Kafka topic name)"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RouteConfig {
        RouteConfig::from_json(
            r#"{
              "tenant": "acme", "pipeline": "orders", "route": "alerts",
              "source": {"kind": "jetstream", "url": "nats://127.0.0.1:4222",
                         "stream": "sluice_acme_orders", "subject": "sluice.acme.orders.events",
                         "durable": "orders_alerts"},
              "filter": "event.amount > 100",
              "projection": {"fields": [{"path": "customer.id", "as": "customerId"}, {"path": "amount"}]},
              "sink": {"kind": "http", "url": "http://127.0.0.1:8080/hook"},
              "deadLetter": {"url": "nats://127.0.0.1:4222", "subject": "sluice.acme.orders.dead.orders"}
            }"#,
        )
        .unwrap()
    }

    #[test]
    fn parses_with_defaults_and_round_trips() {
        let c = sample();
        assert_eq!(c.batching, Batching::default());
        assert_eq!(c.metrics_port, WORKER_METRICS_PORT);
        match &c.sink {
            Sink::Http {
                connect_timeout_ms, ..
            } => assert_eq!(*connect_timeout_ms, 2000),
            other => panic!("{other:?}"),
        }
        assert_eq!(RouteConfig::from_json(&c.to_json()).unwrap(), c);
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        let Some(Projection::Fields(f)) = &c.projection else {
            panic!()
        };
        assert_eq!(f[0].output_name(), "customerId");
        assert_eq!(f[1].output_name(), "amount");
    }

    #[test]
    fn unknown_fields_and_kinds_are_refused() {
        let text = sample().to_json().replace("\"filter\"", "\"filtr\"");
        let err = RouteConfig::from_json(&text).unwrap_err();
        assert!(err.contains("unknown field `filtr`"), "{err}");
        let text = sample()
            .to_json()
            .replace("\"kind\": \"http\"", "\"kind\": \"carrier-pigeon\"");
        assert!(RouteConfig::from_json(&text).is_err());
    }

    #[test]
    fn validation_names_each_field() {
        let mut c = sample();
        c.filter = Some("event.amount >".into());
        c.batching.max_events = 0;
        c.sink = Sink::Postgres {
            url_file: None,
            url: None,
            table: "drop table;".into(),
        };
        let fields: Vec<String> = c.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            ["filter", "sink.urlFile", "sink.table", "batching.maxEvents"]
        );
    }

    #[test]
    fn loops_and_bad_policies_are_refused() {
        let mut c = sample();
        c.sink = Sink::Jetstream {
            url: "nats://127.0.0.1:4222".into(),
            subject: "sluice.acme.orders.events".into(),
        };
        c.dead_letter.subject = "sluice.acme.orders.events".into();
        c.broker.inbox_prefix = Some("_INBOX.>".into());
        c.sink_policy.deny_cidrs = vec!["10.0.0.0/99".into()];
        c.filter = Some(format!("event.a{}", ".b".repeat(2000)));
        let fields: Vec<String> = c.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "broker.inboxPrefix",
                "filter",
                "sink.subject",
                "deadLetter.subject",
                "sinkPolicy"
            ]
        );
    }

    #[test]
    fn the_sink_policy_is_written_only_when_set() {
        let mut c = sample();
        assert!(!c.to_json().contains("sinkPolicy"));
        c.sink_policy.allow_loopback = true;
        let text = c.to_json();
        assert!(text.contains("\"allowLoopback\": true"), "{text}");
        assert_eq!(RouteConfig::from_json(&text).unwrap(), c);
    }

    #[test]
    fn kafka_routes_parse_and_are_checked() {
        let text = r#"{
          "tenant": "acme", "pipeline": "orders", "route": "out",
          "source": {"kind": "kafka", "kafka": {"bootstrapServers": "k:9092"},
                     "topic": "sluice.acme.orders", "group": "orders_out", "startFrom": "all"},
          "sink": {"kind": "kafka", "kafka": {"bootstrapServers": "k:9092",
                   "properties": {"security.protocol": "ssl"}},
                   "topic": "sluice.acme.big", "key": "customer.id"},
          "deadLetter": {"url": "nats://n", "subject": "unused",
                         "kafka": {"kafka": {"bootstrapServers": "k:9092"},
                                   "topic": "sluice.acme.orders.dead-letter.orders"}}
        }"#;
        let mut c = RouteConfig::from_json(text).unwrap();
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert_eq!(RouteConfig::from_json(&c.to_json()).unwrap(), c);
        assert_eq!(c.source.destination(), "sluice.acme.orders");
        assert_eq!(c.source.max_unacknowledged(), usize::MAX);
        c.sink = Sink::Kafka {
            kafka: KafkaClient::default(),
            topic: "sluice.acme.orders".into(),
            key: Some("a..b".into()),
        };
        if let Some(d) = c.dead_letter.kafka.as_mut() {
            d.topic = "no spaces allowed".into();
        }
        let fields: Vec<String> = c.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "sink.kafka.bootstrapServers",
                "sink.topic",
                "sink.key",
                "deadLetter.kafka.topic"
            ]
        );
        assert!(!is_topic_name(&"t".repeat(250)));
        assert!(is_topic_name("sluice.acme.orders-1_x"));
        assert!(!is_topic_name(".."));
    }
}
