//! The registry of resource types the server knows: the built-in kinds Sluice uses, plus every
//! custom resource whose CustomResourceDefinition is installed.

use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Where the replica count of a resource lives, for its `scale` subresource.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleSpec {
    /// JSON path (dotted, leading `.`) of the desired replicas, e.g. `.spec.replicas`.
    pub spec_replicas_path: String,
    /// JSON path of the observed replicas, e.g. `.status.replicas`.
    pub status_replicas_path: String,
    /// JSON path of the label selector string, if any.
    pub label_selector_path: Option<String>,
}

/// One resource type served at `/api/v1/...` or `/apis/{group}/{version}/...`.
#[derive(Debug, Clone)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: String,
    /// API version, e.g. `v1`.
    pub version: String,
    /// Plural resource name used in URLs, e.g. `deployments`.
    pub plural: String,
    /// Singular name, e.g. `deployment`.
    pub singular: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names kubectl accepts, e.g. `deploy`.
    pub short_names: Vec<String>,
    /// Categories, e.g. `all`.
    pub categories: Vec<String>,
    /// Whether a `status` subresource exists (status is then ignored on main-resource writes).
    pub status_subresource: bool,
    /// The `scale` subresource, when there is one.
    pub scale: Option<ScaleSpec>,
    /// Whether `metadata.generation` is maintained (moves on spec changes).
    pub has_generation: bool,
    /// The structural schema (`openAPIV3Schema`) of a custom resource version.
    pub schema: Option<Value>,
    /// `additionalPrinterColumns` of a custom resource version.
    pub printer_columns: Value,
    /// Whether this version is the storage version (custom resources only).
    pub storage: bool,
    /// Whether this type comes from a CustomResourceDefinition.
    pub custom: bool,
    /// For custom resources: the JSON paths of the version's `selectableFields` (besides
    /// `metadata.name` and `metadata.namespace`, the only fields a field selector may use).
    pub selectable_fields: Vec<String>,
    /// A create-only review (`selfsubjectaccessreviews`, `tokenreviews`, ...): a POST is
    /// answered by the authenticator or authorizer, and nothing is stored.
    pub review: bool,
}

impl ResourceType {
    /// `group/version`, or just `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The key objects of this type are stored under (version-independent).
    pub fn key(&self) -> TypeKey {
        if self.is_events_v1() {
            // events.k8s.io/v1 Events are core Events seen through a conversion, as on a
            // real server: both APIs show the same objects.
            return TypeKey {
                group: String::new(),
                plural: "events".into(),
            };
        }
        TypeKey {
            group: self.group.clone(),
            plural: self.plural.clone(),
        }
    }

    /// Whether this is `events.k8s.io/v1` `Event`, stored as a core `Event`.
    pub fn is_events_v1(&self) -> bool {
        self.group == "events.k8s.io" && self.plural == "events"
    }

    /// `plural.group` (or just `plural` for the core group), as error messages name it.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Verbs advertised in discovery.
    pub fn verbs(&self) -> Vec<&'static str> {
        if self.review {
            return vec!["create"];
        }
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

/// Identifies the stored collection of a resource type, independent of the version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TypeKey {
    /// API group.
    pub group: String,
    /// Plural name.
    pub plural: String,
}

/// All resource types, by group and version.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    types: Vec<ResourceType>,
}

/// An RBAC type: no short names, no status, no generation.
fn rbac(plural: &str, kind: &str, namespaced: bool) -> ResourceType {
    builtin(
        "rbac.authorization.k8s.io",
        "v1",
        plural,
        kind,
        namespaced,
        &[],
        false,
        false,
    )
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short_names: &[&str],
    status: bool,
    has_generation: bool,
) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: version.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        namespaced,
        short_names: short_names.iter().map(|s| s.to_string()).collect(),
        categories: vec![],
        status_subresource: status,
        scale: None,
        has_generation,
        schema: None,
        printer_columns: json!([]),
        storage: true,
        custom: false,
        selectable_fields: vec![],
        review: false,
    }
}

/// A create-only review type of `group/v1`.
fn review(group: &str, plural: &str, kind: &str, namespaced: bool) -> ResourceType {
    ResourceType {
        review: true,
        ..builtin(group, "v1", plural, kind, namespaced, &[], false, false)
    }
}

impl Registry {
    /// The built-in kinds this server implements.
    pub fn builtin() -> Self {
        let mut deployments = builtin(
            "apps",
            "v1",
            "deployments",
            "Deployment",
            true,
            &["deploy"],
            true,
            true,
        );
        deployments.categories = vec!["all".into()];
        deployments.scale = Some(ScaleSpec {
            spec_replicas_path: ".spec.replicas".into(),
            status_replicas_path: ".status.replicas".into(),
            label_selector_path: None,
        });
        let mut services = builtin("", "v1", "services", "Service", true, &["svc"], true, false);
        services.categories = vec!["all".into()];
        let types = vec![
            builtin(
                "",
                "v1",
                "namespaces",
                "Namespace",
                false,
                &["ns"],
                true,
                false,
            ),
            builtin(
                "",
                "v1",
                "configmaps",
                "ConfigMap",
                true,
                &["cm"],
                false,
                false,
            ),
            builtin("", "v1", "secrets", "Secret", true, &[], false, false),
            builtin(
                "",
                "v1",
                "serviceaccounts",
                "ServiceAccount",
                true,
                &["sa"],
                false,
                false,
            ),
            services,
            builtin(
                "",
                "v1",
                "resourcequotas",
                "ResourceQuota",
                true,
                &["quota"],
                true,
                false,
            ),
            builtin(
                "",
                "v1",
                "limitranges",
                "LimitRange",
                true,
                &["limits"],
                false,
                false,
            ),
            builtin("", "v1", "events", "Event", true, &["ev"], false, false),
            deployments,
            builtin(
                "policy",
                "v1",
                "poddisruptionbudgets",
                "PodDisruptionBudget",
                true,
                &["pdb"],
                true,
                true,
            ),
            builtin(
                "networking.k8s.io",
                "v1",
                "networkpolicies",
                "NetworkPolicy",
                true,
                &["netpol"],
                false,
                true,
            ),
            builtin(
                "networking.k8s.io",
                "v1",
                "ingresses",
                "Ingress",
                true,
                &["ing"],
                true,
                true,
            ),
            builtin("batch", "v1", "jobs", "Job", true, &[], true, true),
            rbac("roles", "Role", true),
            rbac("rolebindings", "RoleBinding", true),
            rbac("clusterroles", "ClusterRole", false),
            rbac("clusterrolebindings", "ClusterRoleBinding", false),
            builtin(
                "coordination.k8s.io",
                "v1",
                "leases",
                "Lease",
                true,
                &[],
                false,
                false,
            ),
            builtin(
                "events.k8s.io",
                "v1",
                "events",
                "Event",
                true,
                &["ev"],
                false,
                false,
            ),
            builtin(
                "admissionregistration.k8s.io",
                "v1",
                "validatingadmissionpolicies",
                "ValidatingAdmissionPolicy",
                false,
                &[],
                true,
                true,
            ),
            builtin(
                "admissionregistration.k8s.io",
                "v1",
                "validatingadmissionpolicybindings",
                "ValidatingAdmissionPolicyBinding",
                false,
                &[],
                false,
                true,
            ),
            builtin(
                "apiextensions.k8s.io",
                "v1",
                "customresourcedefinitions",
                "CustomResourceDefinition",
                false,
                &["crd", "crds"],
                true,
                true,
            ),
            review(
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                "SelfSubjectAccessReview",
                false,
            ),
            review(
                "authorization.k8s.io",
                "selfsubjectrulesreviews",
                "SelfSubjectRulesReview",
                false,
            ),
            review(
                "authorization.k8s.io",
                "subjectaccessreviews",
                "SubjectAccessReview",
                false,
            ),
            review(
                "authorization.k8s.io",
                "localsubjectaccessreviews",
                "LocalSubjectAccessReview",
                true,
            ),
            review(
                "authentication.k8s.io",
                "selfsubjectreviews",
                "SelfSubjectReview",
                false,
            ),
            review(
                "authentication.k8s.io",
                "tokenreviews",
                "TokenReview",
                false,
            ),
        ];
        Registry { types }
    }

    /// Every type, in registration order.
    pub fn all(&self) -> &[ResourceType] {
        &self.types
    }

    /// The type served at `group/version/plural`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    /// The type of a kind at an apiVersion (`apps/v1`, `v1`).
    pub fn find_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceType> {
        let (group, version) = split_api_version(api_version);
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.kind == kind)
    }

    /// Whether any version of this group/plural is served.
    pub fn has_key(&self, key: &TypeKey) -> bool {
        self.types
            .iter()
            .any(|t| t.group == key.group && t.plural == key.plural)
    }

    /// Groups with their versions, in a stable order (core group first, then by name).
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in &self.types {
            let versions = groups.entry(t.group.clone()).or_default();
            if !versions.contains(&t.version) {
                versions.push(t.version.clone());
            }
        }
        groups
    }

    /// The resource types in one group version.
    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a ResourceType> + 'a {
        self.types
            .iter()
            .filter(move |t| t.group == group && t.version == version)
    }

    /// Replaces every version of the custom resource defined by `crd` (a CustomResourceDefinition
    /// object). Versions with `served: false` are not registered.
    pub fn install_crd(&mut self, crd: &Value) {
        let spec = &crd["spec"];
        let group = spec["group"].as_str().unwrap_or_default().to_string();
        let plural = spec["names"]["plural"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.remove_custom(&group, &plural);
        let names = &spec["names"];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        for version in spec["versions"].as_array().into_iter().flatten() {
            if version["served"].as_bool() == Some(false) {
                continue;
            }
            let scale = version["subresources"].get("scale").map(|s| ScaleSpec {
                spec_replicas_path: s["specReplicasPath"].as_str().unwrap_or("").into(),
                status_replicas_path: s["statusReplicasPath"].as_str().unwrap_or("").into(),
                label_selector_path: s["labelSelectorPath"].as_str().map(String::from),
            });
            let kind = names["kind"].as_str().unwrap_or_default().to_string();
            self.types.push(ResourceType {
                group: group.clone(),
                version: version["name"].as_str().unwrap_or_default().into(),
                plural: plural.clone(),
                singular: names["singular"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| kind.to_lowercase()),
                kind,
                namespaced: spec["scope"].as_str() != Some("Cluster"),
                short_names: strings(&names["shortNames"]),
                categories: strings(&names["categories"]),
                status_subresource: version["subresources"].get("status").is_some(),
                scale,
                has_generation: true,
                schema: version["schema"].get("openAPIV3Schema").cloned(),
                printer_columns: version
                    .get("additionalPrinterColumns")
                    .cloned()
                    .unwrap_or(json!([])),
                storage: version["storage"].as_bool().unwrap_or(false),
                custom: true,
                selectable_fields: version["selectableFields"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f["jsonPath"].as_str())
                    .map(|p| p.trim_start_matches('.').to_string())
                    .collect(),
                review: false,
            });
        }
    }

    /// Removes every version of a custom resource type.
    pub fn remove_custom(&mut self, group: &str, plural: &str) {
        self.types
            .retain(|t| !(t.custom && t.group == group && t.plural == plural));
    }
}

/// Splits `apps/v1` into (`apps`, `v1`) and `v1` into (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_registry_serves_sluice_kinds() {
        let r = Registry::builtin();
        for (g, v, p) in [
            ("", "v1", "namespaces"),
            ("apps", "v1", "deployments"),
            ("policy", "v1", "poddisruptionbudgets"),
            ("coordination.k8s.io", "v1", "leases"),
            ("apiextensions.k8s.io", "v1", "customresourcedefinitions"),
        ] {
            assert!(r.find(g, v, p).is_some(), "{g}/{v}/{p}");
        }
        assert!(!r.find("", "v1", "namespaces").unwrap().namespaced);
        assert!(r.find("apps", "v1", "deployments").unwrap().scale.is_some());
    }

    #[test]
    fn installing_a_crd_registers_its_served_versions() {
        let mut r = Registry::builtin();
        let crd = json!({"spec": {"group": "sluice.dev", "scope": "Namespaced",
        "names": {"plural": "pipelines", "kind": "Pipeline", "shortNames": ["pl"]},
        "versions": [
            {"name": "v1alpha1", "served": true, "storage": true,
             "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.parallelism", "statusReplicasPath": ".status.replicas"}}},
            {"name": "v0", "served": false, "storage": false}
        ]}});
        r.install_crd(&crd);
        let t = r.find("sluice.dev", "v1alpha1", "pipelines").unwrap();
        assert_eq!(t.kind, "Pipeline");
        assert_eq!(t.singular, "pipeline");
        assert!(t.status_subresource);
        assert_eq!(
            t.scale.as_ref().unwrap().spec_replicas_path,
            ".spec.parallelism"
        );
        assert!(r.find("sluice.dev", "v0", "pipelines").is_none());
        r.install_crd(&crd);
        assert_eq!(r.in_group_version("sluice.dev", "v1alpha1").count(), 1);
        r.remove_custom("sluice.dev", "pipelines");
        assert!(r.find("sluice.dev", "v1alpha1", "pipelines").is_none());
    }
}
