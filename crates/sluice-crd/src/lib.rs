//! Custom resources of Sluice, group `sluice.dev`, version `v1alpha1`.
//!
//! - [`Tenant`] (cluster-scoped): a team, its owners, quota and isolation.
//! - [`Stream`] (namespaced): a named event stream backed by a broker stream.
//! - [`Pipeline`] (namespaced): one source stream, an optional filter and projection, N sinks.
//!
//! [`crds`] returns their `CustomResourceDefinition`s and [`crds_yaml`] renders them as the
//! multi-document YAML installed by the Helm chart.

pub mod condition;
pub mod pipeline;
pub mod schema;
pub mod stream;
pub mod tenant;
pub mod validate;

pub use condition::{Condition, ConditionStatus, ConditionType};
pub use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
pub use pipeline::{
    Batching, ComputeResources, DeadLetter, FieldProjection, FileSink, HttpSink, HttpTimeouts,
    JetStreamSink, KafkaSink, NatsSink, ObjectStoreSink, Pipeline, PipelinePhase, PipelineSource,
    PipelineSpec, PipelineStatus, PostgresSink, Projection, ResourceAmounts, RouteStatus,
    SecretKeyRef, SecretRef, Sink, StartFrom,
};
pub use stream::{Retention, Stream, StreamBroker, StreamSpec, StreamStatus};
pub use tenant::{
    EgressPort, EgressRule, IngestQuota, Protocol, Subject, SubjectKind, Tenant, TenantIsolation,
    TenantQuota, TenantSpec, TenantStatus, TenantUsage,
};

use kube::CustomResourceExt;

/// API group of every Sluice custom resource.
pub const GROUP: &str = "sluice.dev";
/// API version of the Sluice custom resources.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of the Sluice custom resources.
pub const API_VERSION: &str = "sluice.dev/v1alpha1";
/// Category every Sluice resource belongs to (`kubectl get sluice`).
pub const CATEGORY: &str = "sluice";
/// The most sinks (so routes) a Pipeline has: the `maxItems` of `spec.sinks`.
pub const MAX_SINKS: usize = 16;

#[cfg(test)]
mod max_sinks_tests {
    #[test]
    fn the_schema_allows_max_sinks() {
        let crd = serde_json::to_value(<crate::Pipeline as kube::CustomResourceExt>::crd())
            .expect("the CRD serializes");
        let sinks = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["sinks"];
        assert_eq!(sinks["maxItems"], super::MAX_SINKS);
    }
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A custom resource definition could not be rendered as YAML.
    #[error("cannot render custom resource definitions as YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
}

/// The custom resource definitions of Sluice, in a fixed order: Tenant, Stream, Pipeline.
///
/// Field descriptions come from the types' doc comments, with the comments' line wrapping undone
/// (paragraphs are kept), so that `kubectl explain` can wrap them to the terminal.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![Tenant::crd(), Stream::crd(), Pipeline::crd()];
    for crd in &mut crds {
        for version in &mut crd.spec.versions {
            if let Some(schema) = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
            {
                unwrap_descriptions(schema);
            }
        }
    }
    crds
}

/// Joins the soft-wrapped lines of every description in `schema`, keeping paragraph breaks.
fn unwrap_descriptions(schema: &mut JSONSchemaProps) {
    if let Some(description) = schema.description.as_mut() {
        *description = description
            .split("\n\n")
            .map(|paragraph| {
                paragraph
                    .lines()
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect::<Vec<_>>()
            .join("\n\n");
    }
    let children = schema
        .properties
        .iter_mut()
        .flat_map(|properties| properties.values_mut())
        .chain(schema.all_of.iter_mut().flatten())
        .chain(schema.any_of.iter_mut().flatten())
        .chain(schema.one_of.iter_mut().flatten())
        .chain(schema.not.as_deref_mut());
    for child in children {
        unwrap_descriptions(child);
    }
    match schema.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(item)) => unwrap_descriptions(item),
        Some(JSONSchemaPropsOrArray::Schemas(items)) => {
            items.iter_mut().for_each(unwrap_descriptions)
        }
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(additional)) = schema.additional_properties.as_mut() {
        unwrap_descriptions(additional);
    }
}

/// Renders custom resource definitions as multi-document YAML, each document starting with
/// `---`.
pub fn to_yaml(crds: &[CustomResourceDefinition]) -> Result<String, Error> {
    let mut out = String::new();
    for crd in crds {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(crd)?);
    }
    Ok(out)
}

/// The custom resource definitions of Sluice as multi-document YAML (what the Helm chart
/// installs). The output is deterministic.
pub fn crds_yaml() -> String {
    // A CustomResourceDefinition holds only string-keyed maps, strings, numbers and booleans,
    // which YAML always represents.
    to_yaml(&crds()).expect("custom resource definitions always render as YAML")
}
