//! `Pipeline`: one source stream, an optional filter and projection, and N sinks.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::schema::{
    DNS1123_LABEL_PATTERN, DURATION_PATTERN, HTTP_URL_PATTERN, JETSTREAM_NAME_PATTERN,
    NATS_SUBJECT_PATTERN, SQL_TABLE_PATTERN,
};

/// CEL rule on a sink: exactly one sink kind is set.
pub const SINK_ONE_OF_RULE: &str = "[has(self.nats), has(self.jetstream), has(self.kafka), has(self.http), \
     has(self.postgres), has(self.objectStore), has(self.file)].exists_one(k, k)";
/// CEL rule on a projection: exactly one of `fields` and `expression` is set.
pub const PROJECTION_ONE_OF_RULE: &str = "has(self.fields) != has(self.expression)";
/// CEL rule on a file sink: exactly one of `path` and `stdout: true` is set.
pub const FILE_SINK_ONE_OF_RULE: &str =
    "has(self.path) != (has(self.stdout) && self.stdout == true)";
/// CEL rule on a pipeline source: `startTime` is set exactly when `startFrom` is `time`.
pub const START_TIME_RULE: &str =
    "(has(self.startFrom) && self.startFrom == 'time') == has(self.startTime)";
/// CEL transition rule on `spec.source.stream`: it cannot change once set.
pub const SOURCE_STREAM_IMMUTABLE_RULE: &str = "self == oldSelf";

/// Desired state of a pipeline: what it reads, what it keeps, and where each event goes.
///
/// Each sink becomes its own route (its own Deployment of workers), so a slow or broken sink never
/// stalls the others.
// Several `printcolumn(...)` entries repeat the same keys, which is how kube spells them.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "Pipeline",
    namespaced,
    doc = "Moves the events of one stream, filtered and projected, to one or more sinks. Each \
           sink is a separate route with its own workers.",
    status = "PipelineStatus",
    derive = "PartialEq",
    shortname = "pl",
    category = "sluice",
    scale(
        spec_replicas_path = ".spec.parallelism",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether every route runs its desired replicas"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Lifecycle phase of the pipeline"
    ),
    printcolumn(
        name = "Source",
        type_ = "string",
        json_path = ".spec.source.stream",
        description = "The stream the pipeline reads"
    ),
    printcolumn(
        name = "Parallelism",
        type_ = "integer",
        json_path = ".spec.parallelism",
        description = "Worker replicas per route"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct PipelineSpec {
    /// The stream the pipeline reads, and from where.
    pub source: PipelineSource,
    /// CEL expression over the event (`event`) that keeps the events for which it is true, e.g.
    /// `event.amount > 100`; every event is kept when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub filter: Option<String>,
    /// Reshapes each kept event before delivery; events are delivered whole when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projection: Option<Projection>,
    /// Where events are delivered. Each sink becomes its own route; names are unique. At most
    /// 16.
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(min = 1, max = 16))]
    pub sinks: Vec<Sink>,
    /// Worker replicas per route (the scale subresource's replicas); 0 stops the workers.
    #[serde(default = "one")]
    #[schemars(range(min = 0, max = 1024))]
    pub parallelism: i32,
    /// CPU and memory of each worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ComputeResources>,
    /// Scales every route to zero while true, keeping the consumer positions.
    #[serde(default)]
    pub suspend: bool,
    /// Stream that receives poison events (not JSON, a failing expression, refused by the
    /// sink), with the error attached; when unset they are kept in the source stream under the
    /// subject `sluice.<tenant>.<stream>.dead.<pipeline>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetter>,
    /// How events are grouped before delivery to a sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batching: Option<Batching>,
}

fn one() -> i32 {
    1
}

/// The stream a pipeline reads, and from where.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = kube::core::Rule::new(START_TIME_RULE)
    .message("startTime must be set exactly when startFrom is 'time'"))]
#[serde(rename_all = "camelCase")]
pub struct PipelineSource {
    /// Name of a Stream in the pipeline's namespace. Immutable: a pipeline never changes source.
    #[x_kube(validation = kube::core::Rule::new(SOURCE_STREAM_IMMUTABLE_RULE)
        .message("source.stream is immutable"))]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS1123_LABEL_PATTERN))]
    pub stream: String,
    /// Where a new pipeline starts reading: `new` events only, `all` retained events, or from
    /// `time` (then `startTime` is required). Later restarts resume where the pipeline stopped.
    #[serde(default)]
    pub start_from: StartFrom,
    /// The instant to start reading from when `startFrom` is `time` (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
}

/// Where a new pipeline starts reading its stream (shared with the route configuration).
pub use sluice_core::route::StartFrom;

/// Reshapes each event: either a list of fields, or a CEL expression building a map.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = kube::core::Rule::new(PROJECTION_ONE_OF_RULE)
    .message("set exactly one of fields or expression"))]
#[serde(rename_all = "camelCase")]
pub struct Projection {
    /// Fields to keep, each optionally renamed; all other fields are dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub fields: Option<Vec<FieldProjection>>,
    /// CEL expression over the event (`event`) that evaluates to a map, the new event, e.g.
    /// `{"id": event.id, "total": event.price * event.qty}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub expression: Option<String>,
}

/// A field kept by a projection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldProjection {
    /// Dot-separated path of the field in the event, e.g. `customer.id`.
    #[schemars(length(min = 1, max = 1024))]
    pub path: String,
    /// Name of the field in the projected event; the last segment of `path` when unset.
    #[serde(default, rename = "as", skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub as_: Option<String>,
}

/// A destination of events. Exactly one sink kind is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = kube::core::Rule::new(SINK_ONE_OF_RULE)
    .message("set exactly one of nats, jetstream, kafka, http, postgres, objectStore or file"))]
#[serde(rename_all = "camelCase")]
pub struct Sink {
    /// Name of the sink, unique in the pipeline (a DNS-1123 label); it names the route.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS1123_LABEL_PATTERN))]
    pub name: String,
    /// Publishes each event on a NATS subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsSink>,
    /// Appends each event to a JetStream stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jetstream: Option<JetStreamSink>,
    /// Produces each event to a Kafka stream of the tenant (its topic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaSink>,
    /// POSTs batches of events to an HTTP endpoint (a webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSink>,
    /// Inserts events into a Postgres table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSink>,
    /// Writes batches of events as objects to an S3-compatible bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_store: Option<ObjectStoreSink>,
    /// Appends events, one JSON document per line, to a file or to standard output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileSink>,
}

/// Publishes each event on a NATS subject.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NatsSink {
    /// Subject to publish on, without wildcards, e.g. `alerts.payments`. It is relative to the
    /// tenant's subject space: events are published on `sluice.<tenant>.<subject>`.
    #[schemars(length(min = 1, max = 255), regex(pattern = NATS_SUBJECT_PATTERN))]
    pub subject: String,
}

/// Appends each event to a JetStream stream.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JetStreamSink {
    /// Name of the JetStream stream.
    #[schemars(length(min = 1, max = 255), regex(pattern = JETSTREAM_NAME_PATTERN))]
    pub stream: String,
}

/// Produces each event to the topic of one of the tenant's Kafka streams, with an idempotent
/// producer and `acks=all`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSink {
    /// Name of the Stream (in the pipeline's namespace, with `broker: kafka`) to write to.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS1123_LABEL_PATTERN))]
    pub stream: String,
    /// Dot-separated path of the field whose value is each message's key, e.g.
    /// `customer.id`: events with the same key land on the same partition. No key when unset
    /// or when an event lacks the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub key: Option<String>,
}

/// POSTs batches of events, as a JSON array, to an HTTP endpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpSink {
    /// URL of the endpoint (`http://` or `https://`).
    #[schemars(length(min = 1, max = 2048), regex(pattern = HTTP_URL_PATTERN))]
    pub url: String,
    /// Secret key holding the value of the `Authorization` header, if the endpoint needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// Time limits of each request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<HttpTimeouts>,
}

/// Time limits of an HTTP sink's requests, as durations such as `500ms` or `10s`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpTimeouts {
    /// Limit on establishing the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub connect: Option<String>,
    /// Limit on the whole request, from sending to the end of the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub request: Option<String>,
}

/// Inserts events into a Postgres table.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSink {
    /// Table to insert into, optionally schema-qualified, e.g. `analytics.orders`.
    #[schemars(length(min = 1, max = 127), regex(pattern = SQL_TABLE_PATTERN))]
    pub table: String,
    /// Secret key holding the connection URL (`postgres://user:password@host/db`).
    pub connection_secret_ref: SecretKeyRef,
}

/// Writes batches of events as objects to an S3-compatible bucket.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStoreSink {
    /// Name of the bucket.
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// URL of the S3-compatible endpoint; the provider's default endpoint when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = HTTP_URL_PATTERN))]
    pub url: Option<String>,
    /// Region of the bucket, if the provider needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub region: Option<String>,
    /// Key prefix of the written objects, e.g. `orders/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub prefix: Option<String>,
    /// Secret holding the credentials, under the keys `accessKeyId` and `secretAccessKey`;
    /// ambient credentials are used when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

/// Appends events, one JSON document per line, to a file or to standard output.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[x_kube(validation = kube::core::Rule::new(FILE_SINK_ONE_OF_RULE)
    .message("set exactly one of path or stdout: true"))]
#[serde(rename_all = "camelCase")]
pub struct FileSink {
    /// Path of the file to append to, inside the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub path: Option<String>,
    /// Writes to the worker's standard output instead of a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<bool>,
}

/// A key of a Secret in the pipeline's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A Secret in the pipeline's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// CPU and memory requests and limits of a worker container.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComputeResources {
    /// Resources the scheduler reserves for the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceAmounts>,
    /// Resources the worker may use at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceAmounts>,
}

/// Amounts of CPU and memory, as Kubernetes quantities.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceAmounts {
    /// CPU, e.g. `250m` or `1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// Memory, e.g. `256Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
}

/// Where poison events go.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// Name of a Stream in the pipeline's namespace.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS1123_LABEL_PATTERN))]
    pub stream: String,
}

/// How events are grouped before delivery: a batch is sent when it is full or old enough.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Batching {
    /// Maximum number of events in a batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_events: Option<i32>,
    /// Maximum time, in milliseconds, the first event of a batch waits before the batch is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600000))]
    pub max_wait_ms: Option<i64>,
}

/// Observed state of a pipeline.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineStatus {
    /// Lifecycle phase: `Pending`, `Running`, `Degraded`, `Suspended` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PipelinePhase>,
    /// Replicas per route currently deployed (the smallest over all routes): the scale
    /// subresource's counterpart of `spec.parallelism`.
    #[serde(default)]
    pub replicas: i32,
    /// Ready replicas per route (the smallest over all routes).
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the pipeline's worker pods, in string form (for the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Status of each route, one per sink.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["sink".into()]))]
    pub routes: Vec<RouteStatus>,
    /// Current conditions (`Accepted`, `Ready`, `Progressing`, `Degraded`), at most one of each
    /// type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the status was last computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Human-readable explanation of the current phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Machine-stable, CamelCase reason for the current phase, e.g. `QuotaExceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Lifecycle phase of a pipeline: `Pending`, `Running`, `Degraded`, `Suspended` or `Failed`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum PipelinePhase {
    /// Accepted, but not every route runs yet.
    Pending,
    /// Every route runs its desired replicas.
    Running,
    /// Some routes run below their desired replicas.
    Degraded,
    /// Suspended by the pipeline or its tenant; no route runs.
    Suspended,
    /// Cannot run, e.g. invalid or over quota; see `reason` and `message`.
    Failed,
}

/// Observed state of one route: the workers delivering to one sink.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    /// Name of the sink the route delivers to.
    pub sink: String,
    /// Worker replicas deployed for the route.
    #[serde(default)]
    pub replicas: i32,
    /// Worker replicas ready.
    #[serde(default)]
    pub ready_replicas: i32,
}
