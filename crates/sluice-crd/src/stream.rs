//! `Stream`: a named event stream of a tenant, backed by a broker stream.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;

/// CEL transition rule on `spec.partitions`: the count may grow but never shrink.
pub const PARTITIONS_GROW_ONLY_RULE: &str = "self >= oldSelf";
/// CEL transition rule on `spec.broker`: it cannot change once set.
pub const BROKER_IMMUTABLE_RULE: &str = "self == oldSelf";
/// CEL transition rule on `spec`: a broker once set cannot be unset.
pub const BROKER_KEPT_RULE: &str = "!has(oldSelf.broker) || has(self.broker)";
use crate::schema::{DURATION_PATTERN, preserve_unknown_object};

/// Desired state of a stream: how long it keeps events, how it is spread and what events look like.
// Several `printcolumn(...)` entries repeat the same keys, which is how kube spells them.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "Stream",
    namespaced,
    doc = "A named event stream in a tenant namespace, backed by a broker stream. Events enter \
           through the ingest API and are read by pipelines.",
    status = "StreamStatus",
    derive = "PartialEq",
    derive = "Default",
    shortname = "sst",
    category = "sluice",
    printcolumn(
        name = "Subject",
        type_ = "string",
        json_path = ".status.subject",
        description = "The broker subject backing the stream"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the broker side of the stream is provisioned"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = kube::core::Rule::new(BROKER_KEPT_RULE)
    .message("broker cannot be unset once set"))]
#[serde(rename_all = "camelCase")]
pub struct StreamSpec {
    /// The broker the stream lives on: `nats` (a JetStream stream `sluice_<tenant>_<stream>`)
    /// or `kafka` (a topic `sluice.<tenant>.<stream>`). Unset: the platform's default.
    /// Immutable: a stream never moves between brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new(BROKER_IMMUTABLE_RULE)
        .message("broker is immutable"))]
    pub broker: Option<StreamBroker>,
    /// How long, and how much, the stream keeps events; the platform default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// Number of partitions events are spread over (and so the useful parallelism of readers):
    /// the topic's partitions on Kafka; JetStream streams are not partitioned. It may grow but
    /// never shrink (events already spread over the partitions stay where they are).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1024))]
    #[x_kube(validation = kube::core::Rule::new(PARTITIONS_GROW_ONLY_RULE)
        .message("partitions may grow but never shrink"))]
    pub partitions: i32,
    /// Dot-separated path of the field whose value keys each ingested event to a partition,
    /// e.g. `customer.id` (Kafka streams): events with the same key land on the same
    /// partition and keep their order. A request's `Sluice-Partition-Key` header overrides
    /// it; events with neither are spread by the producer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub partition_key: Option<String>,
    /// Number of copies of the stream the broker keeps.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: i32,
    /// JSON Schema every ingested event must satisfy; events are not checked when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub schema: Option<serde_json::Map<String, serde_json::Value>>,
}

fn one() -> i32 {
    1
}

/// The kind of broker a stream lives on.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StreamBroker {
    /// NATS JetStream.
    #[default]
    Nats,
    /// Kafka, or a broker that speaks the Kafka protocol.
    Kafka,
}

impl StreamBroker {
    /// The name used in the spec (`nats`, `kafka`).
    pub fn as_str(self) -> &'static str {
        match self {
            StreamBroker::Nats => "nats",
            StreamBroker::Kafka => "kafka",
        }
    }
}

impl std::fmt::Display for StreamBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How long, and how much, a stream keeps events; the oldest events go first.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// Age after which events are discarded, as a duration such as `24h`, `7d` or `1h30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub max_age: Option<String>,
    /// Size in bytes above which the oldest events are discarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_bytes: Option<i64>,
}

/// Observed state of a stream.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamStatus {
    /// Broker subject the stream's events are published on, e.g. `sluice.acme.orders`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Number of events the stream currently holds (on Kafka: the end offsets less the
    /// earliest retained ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<i64>,
    /// Number of bytes the stream currently holds (JetStream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
    /// The broker the stream was provisioned on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<StreamBroker>,
    /// The Kafka topic backing the stream, e.g. `sluice.acme.orders` (Kafka streams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Number of partitions the topic has (Kafka streams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// The end offset of each partition of the topic, in partition order: the offset the next
    /// event written to it gets (Kafka streams).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub end_offsets: Vec<i64>,
    /// Current conditions of the stream (`Ready`, ...), at most one of each type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the status was last computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
