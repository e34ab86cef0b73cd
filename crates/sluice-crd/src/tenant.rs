//! `Tenant`: a team using Sluice, its owners, quota and isolation.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::schema::CIDR_PATTERN;

/// Desired state of a tenant: who owns it, what it may use and how it is isolated.
// Several `printcolumn(...)` entries repeat the same keys, which is how kube spells them.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "Tenant",
    doc = "A team using Sluice. The operator gives each tenant its own namespace, with quota, \
           limits, network isolation and access for its owners.",
    status = "TenantStatus",
    derive = "PartialEq",
    derive = "Default",
    shortname = "tn",
    category = "sluice",
    printcolumn(
        name = "Namespace",
        type_ = "string",
        json_path = ".status.namespace",
        description = "The tenant's namespace"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the tenant's namespace and policies are in place"
    ),
    printcolumn(
        name = "Pipelines",
        type_ = "integer",
        json_path = ".status.usage.pipelines",
        description = "Number of pipelines the tenant runs"
    ),
    printcolumn(
        name = "Suspended",
        type_ = "boolean",
        json_path = ".spec.suspend",
        description = "Whether the tenant's pipelines are suspended"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// Human-readable name of the tenant, e.g. the team's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub display_name: Option<String>,
    /// Users and groups who own the tenant: they are granted the admin role in its namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["kind".into(), "name".into()]))]
    #[schemars(length(max = 64))]
    pub owners: Vec<Subject>,
    /// Limits on what the tenant may create and consume.
    #[serde(default)]
    pub quota: TenantQuota,
    /// Where and how the tenant's workloads run, beyond the default isolation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<TenantIsolation>,
    /// Suspends every pipeline of the tenant (scaled to zero) and refuses ingest while true.
    #[serde(default)]
    pub suspend: bool,
}

/// A user or group that owns a tenant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    /// Kind of subject: `User` or `Group`.
    pub kind: SubjectKind,
    /// Name of the user or group, as the Kubernetes authenticator reports it.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
}

/// Kind of an owner: a user or a group.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum SubjectKind {
    /// A single user.
    User,
    /// A group of users.
    Group,
}

/// Limits on what a tenant may create and consume. An unset limit does not constrain.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantQuota {
    /// Maximum number of pipelines in the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_pipelines: Option<i32>,
    /// Maximum number of streams in the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_streams: Option<i32>,
    /// Maximum total parallelism: the sum of worker replicas over all routes of all pipelines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_parallelism: Option<i32>,
    /// Maximum total CPU the tenant's workloads may request, as a Kubernetes quantity (`4`, `500m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// Maximum total memory the tenant's workloads may request, as a Kubernetes quantity (`8Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
    /// Rate limits on events ingested through the API, over all the tenant's streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest: Option<IngestQuota>,
    /// Maximum bytes of stream storage at the broker, over all the tenant's streams (dead-letter
    /// streams included), as a Kubernetes quantity (`10Gi`). When the broker runs in operator
    /// mode it enforces this itself: past it, the tenant's streams take no more events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Quantity>,
}

/// Rate limits on ingest (a token bucket).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngestQuota {
    /// Sustained number of events per second the tenant may ingest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub events_per_second: Option<i64>,
    /// Sustained number of bytes per second the tenant may ingest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub bytes_per_second: Option<i64>,
    /// Number of events that may be ingested at once above the sustained rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub burst: Option<i64>,
}

/// Scheduling and network settings of a tenant's workloads.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantIsolation {
    /// Node labels the tenant's pods must run on (e.g. dedicated nodes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations added to the tenant's pods, e.g. to run on tainted dedicated nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Priority class of the tenant's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub priority_class_name: Option<String>,
    /// Destinations the tenant's pods may reach besides DNS and the broker, which are always
    /// allowed (everything else is denied by default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub extra_egress: Vec<EgressRule>,
}

/// An allowed egress destination.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EgressRule {
    /// Destination IP block in CIDR notation, e.g. `10.20.0.0/16`.
    #[schemars(regex(pattern = CIDR_PATTERN))]
    pub cidr: String,
    /// Blocks inside `cidr` that stay denied, in CIDR notation. Link-local (`169.254.0.0/16`,
    /// `fe80::/10`) and cloud metadata addresses are always excepted besides these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(regex(pattern = CIDR_PATTERN)))]
    pub except: Vec<String>,
    /// Destination ports; all ports when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub ports: Vec<EgressPort>,
}

/// A destination port of an egress rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EgressPort {
    /// Port number.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Transport protocol: `TCP` (the default), `UDP` or `SCTP`.
    #[serde(default)]
    pub protocol: Protocol,
}

/// A transport protocol.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Protocol {
    /// TCP.
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
    /// SCTP.
    #[serde(rename = "SCTP")]
    Sctp,
}

/// Observed state of a tenant.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// The namespace the tenant's streams and pipelines live in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// What the tenant currently uses, to compare with its quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<TenantUsage>,
    /// The tenant's NATS account (its public key), when the broker runs in operator mode and
    /// the account is set up: the API publishes the tenant's events into it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_account: Option<String>,
    /// Current conditions of the tenant (`Ready`, ...), at most one of each type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the status was last computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// What a tenant currently uses.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantUsage {
    /// Number of pipelines.
    #[serde(default)]
    pub pipelines: i32,
    /// Number of streams.
    #[serde(default)]
    pub streams: i32,
    /// Total parallelism: the sum of worker replicas over all routes of all pipelines.
    #[serde(default)]
    pub parallelism: i32,
    /// Total CPU requested by the tenant's workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// Total memory requested by the tenant's workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
}
