//! `Stream`: a named event stream of a tenant, backed by a broker stream.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
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
#[serde(rename_all = "camelCase")]
pub struct StreamSpec {
    /// How long, and how much, the stream keeps events; the platform default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// Number of partitions events are spread over (and so the useful parallelism of readers).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1024))]
    pub partitions: i32,
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
    /// Number of events the stream currently holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<i64>,
    /// Number of bytes the stream currently holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
    /// Current conditions of the stream (`Ready`, ...), at most one of each type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the status was last computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
