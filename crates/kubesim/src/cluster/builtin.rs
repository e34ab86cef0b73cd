//! What the built-in controllers and admission of a real cluster do to built-in objects:
//! namespace phase and default service account, service cluster IPs, secret `stringData`,
//! Deployment defaults, validation and status (through the kubelet hook), CRD status and
//! registration, and ClusterRole aggregation.

use super::{ObjRef, State};
use crate::error::{StatusCause, cause};
use crate::kubelet;
use crate::meta;
use crate::resources::{ResourceType, TypeKey};
use crate::selector::LabelSelector;
use crate::validation;
use base64::Engine;
use serde_json::{Value, json};

const CRD_CLEANUP: &str = "customresourcecleanup.apiextensions.k8s.io";

impl State {
    pub(super) fn defaults_on_create(&mut self, rt: &ResourceType, obj: &mut Value) {
        match (rt.group.as_str(), rt.plural.as_str()) {
            ("", "namespaces") => {
                obj["spec"]["finalizers"] = json!(["kubernetes"]);
                obj["metadata"]["labels"]["kubernetes.io/metadata.name"] =
                    obj["metadata"]["name"].clone();
            }
            ("", "services") => {
                let headless = obj["spec"]["clusterIP"].as_str() == Some("None");
                let external = obj["spec"]["type"].as_str() == Some("ExternalName");
                if obj["spec"]["type"].is_null() {
                    obj["spec"]["type"] = json!("ClusterIP");
                }
                if !headless && !external && obj["spec"]["clusterIP"].as_str().is_none() {
                    let n = self.rv + 1;
                    let ip = format!("10.96.{}.{}", (n / 250) % 250, n % 250 + 2);
                    obj["spec"]["clusterIP"] = json!(ip);
                    obj["spec"]["clusterIPs"] = json!([ip]);
                }
            }
            ("", "secrets") if obj["type"].is_null() => obj["type"] = json!("Opaque"),
            ("apps", "deployments") if obj["spec"]["replicas"].is_null() => {
                obj["spec"]["replicas"] = json!(1);
            }
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                let mut fins = meta::finalizers(obj);
                if !fins.iter().any(|f| f == CRD_CLEANUP) {
                    fins.push(CRD_CLEANUP.into());
                }
                obj["metadata"]["finalizers"] = json!(fins);
            }
            _ => {}
        }
        secret_string_data(rt, obj);
    }

    pub(super) fn status_on_create(&self, rt: &ResourceType, obj: &mut Value) {
        match (rt.group.as_str(), rt.plural.as_str()) {
            ("", "namespaces") => obj["status"] = json!({"phase": "Active"}),
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                obj["status"] = crd_status(obj, None);
            }
            _ => {}
        }
    }

    pub(super) fn defaults_on_update(&self, rt: &ResourceType, old: &Value, new: &mut Value) {
        match (rt.group.as_str(), rt.plural.as_str()) {
            ("", "namespaces") => {
                if new["spec"]["finalizers"].is_null() {
                    new["spec"]["finalizers"] = old["spec"]["finalizers"].clone();
                }
                new["metadata"]["labels"]["kubernetes.io/metadata.name"] =
                    old["metadata"]["name"].clone();
            }
            ("", "services")
                if new["spec"]["clusterIP"].is_null() && !old["spec"]["clusterIP"].is_null() =>
            {
                new["spec"]["clusterIP"] = old["spec"]["clusterIP"].clone();
                new["spec"]["clusterIPs"] = old["spec"]["clusterIPs"].clone();
            }
            ("apps", "deployments") if new["spec"]["replicas"].is_null() => {
                new["spec"]["replicas"] = json!(1);
            }
            _ => {}
        }
        secret_string_data(rt, new);
    }

    /// What the built-in controllers do after an object was written.
    pub(super) fn after_write(&mut self, rt: &ResourceType, r: &ObjRef, old: Option<&Value>) {
        let Some(obj) = self.get_stored(r).cloned() else {
            return;
        };
        match (rt.group.as_str(), rt.plural.as_str()) {
            ("", "namespaces") if old.is_none() => {
                let sa = ObjRef {
                    key: TypeKey {
                        group: String::new(),
                        plural: "serviceaccounts".into(),
                    },
                    namespace: r.name.clone(),
                    name: "default".into(),
                };
                if self.get_stored(&sa).is_none() {
                    let obj = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"name": "default", "namespace": r.name,
                            "uid": uuid::Uuid::new_v4().to_string(),
                            "creationTimestamp": meta::now()}});
                    self.store(&sa, obj);
                }
            }
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                if obj["metadata"]["deletionTimestamp"].is_null() {
                    std::sync::Arc::make_mut(&mut self.registry).install_crd(&obj);
                }
                let status = crd_status(&obj, obj.get("status"));
                if obj.get("status") != Some(&status) {
                    let mut updated = obj.clone();
                    updated["status"] = status;
                    self.store(r, updated);
                }
            }
            ("apps", "deployments") => {
                let generation_moved = old
                    .is_none_or(|o| o["metadata"]["generation"] != obj["metadata"]["generation"]);
                if generation_moved {
                    self.update_deployment_status(r);
                }
            }
            ("rbac.authorization.k8s.io", "clusterroles") => self.aggregate_cluster_roles(),
            _ => {}
        }
        self.collect_if_orphaned(r);
    }

    /// Asks the kubelet hook about every Deployment again.
    pub(super) fn refresh_deployments(&mut self) {
        let key = TypeKey {
            group: "apps".into(),
            plural: "deployments".into(),
        };
        for r in self.list_refs(&key, None) {
            self.update_deployment_status(&r);
        }
    }

    fn update_deployment_status(&mut self, r: &ObjRef) {
        let Some(obj) = self.get_stored(r).cloned() else {
            return;
        };
        let behaviour = self.kubelet.behaviour(&obj);
        let Some(mut status) = kubelet::deployment_status(&obj, behaviour, &meta::now()) else {
            return;
        };
        // Keep the timestamps of conditions that did not change, so that asking again with the
        // same answer writes nothing.
        if let (Some(new), Some(old)) = (
            status["conditions"].as_array_mut(),
            obj["status"]["conditions"].as_array(),
        ) {
            for c in new.iter_mut() {
                if let Some(prev) = old.iter().find(|o| o["type"] == c["type"]) {
                    if prev["status"] == c["status"] {
                        c["lastTransitionTime"] = prev["lastTransitionTime"].clone();
                    }
                    if prev["status"] == c["status"] && prev["reason"] == c["reason"] {
                        c["lastUpdateTime"] = prev["lastUpdateTime"].clone();
                    }
                }
            }
        }
        if obj["status"] != status {
            let mut updated = obj;
            updated["status"] = status;
            self.store(r, updated);
        }
    }

    pub(super) fn aggregate_cluster_roles(&mut self) {
        let key = TypeKey {
            group: "rbac.authorization.k8s.io".into(),
            plural: "clusterroles".into(),
        };
        let refs = self.list_refs(&key, None);
        let roles: Vec<(ObjRef, Value)> = refs
            .iter()
            .filter_map(|r| self.get_stored(r).map(|o| (r.clone(), o.clone())))
            .collect();
        for (r, role) in &roles {
            let Some(selectors) = role["aggregationRule"]["clusterRoleSelectors"].as_array() else {
                continue;
            };
            let selectors: Vec<LabelSelector> = selectors
                .iter()
                .filter_map(LabelSelector::from_object)
                .collect();
            let mut rules: Vec<Value> = vec![];
            for (other_ref, other) in &roles {
                if other_ref == r {
                    continue;
                }
                let matched = selectors.iter().any(|sel| sel.matches_object(other));
                if matched {
                    for rule in other["rules"].as_array().into_iter().flatten() {
                        if !rules.contains(rule) {
                            rules.push(rule.clone());
                        }
                    }
                }
            }
            if role["rules"] != json!(rules) && !(role["rules"].is_null() && rules.is_empty()) {
                let mut updated = role.clone();
                updated["rules"] = json!(rules);
                self.store(r, updated);
            }
        }
    }
}

fn secret_string_data(rt: &ResourceType, obj: &mut Value) {
    if rt.group.is_empty() && rt.plural == "secrets" {
        if let Some(string_data) = obj.get("stringData").and_then(|v| v.as_object()).cloned() {
            for (k, v) in string_data {
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(v.as_str().unwrap_or_default());
                obj["data"][k] = json!(encoded);
            }
        }
        if let Some(m) = obj.as_object_mut() {
            m.remove("stringData");
        }
    }
}

fn crd_status(crd: &Value, old: Option<&Value>) -> Value {
    let now = meta::now();
    let time_of = |t: &str| -> Value {
        old.and_then(|o| o["conditions"].as_array())
            .and_then(|cs| cs.iter().find(|c| c["type"] == t))
            .map(|c| c["lastTransitionTime"].clone())
            .unwrap_or(json!(now))
    };
    let stored: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .map(|v| v["name"].clone())
        .collect();
    let mut stored_versions: Vec<Value> = old
        .and_then(|o| o["storedVersions"].as_array().cloned())
        .unwrap_or_default();
    for v in stored {
        if !stored_versions.contains(&v) {
            stored_versions.push(v);
        }
    }
    let mut status = json!({
        "acceptedNames": crd["spec"]["names"],
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": time_of("NamesAccepted")},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": time_of("Established")}
        ],
        "storedVersions": stored_versions,
    });
    if !crd["metadata"]["deletionTimestamp"].is_null() {
        status["conditions"]
            .as_array_mut()
            .expect("array")
            .push(json!({"type": "Terminating", "status": "True", "reason": "InstanceDeletionInProgress",
                "message": "CustomResource deletion is in progress", "lastTransitionTime": time_of("Terminating")}));
    }
    status
}

/// Validation of built-in kinds beyond metadata.
pub(super) fn validate_builtin(
    rt: &ResourceType,
    obj: &Value,
    old: Option<&Value>,
) -> Vec<StatusCause> {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("apiextensions.k8s.io", "customresourcedefinitions") => validate_crd(obj, old),
        ("apps", "deployments") => validate_deployment(obj, old),
        ("", "configmaps") | ("", "secrets") => {
            let mut causes = vec![];
            for field in ["data", "binaryData"] {
                if let Some(data) = obj.get(field) {
                    let ok = data.is_null()
                        || data
                            .as_object()
                            .is_some_and(|m| m.values().all(|v| v.is_string()));
                    if !ok {
                        causes.push(cause(
                            "FieldValueTypeInvalid",
                            field,
                            "Invalid value: must be a map of strings",
                        ));
                    }
                }
            }
            causes
        }
        _ => vec![],
    }
}

fn validate_crd(crd: &Value, old: Option<&Value>) -> Vec<StatusCause> {
    let mut causes = vec![];
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    let kind = spec["names"]["kind"].as_str().unwrap_or_default();
    if group.is_empty() {
        causes.push(cause("FieldValueRequired", "spec.group", "Required value"));
    } else if !group.contains('.') {
        causes.push(cause(
            "FieldValueInvalid",
            "spec.group",
            format!("Invalid value: \"{group}\": should be a domain with at least one dot"),
        ));
    }
    if plural.is_empty() {
        causes.push(cause(
            "FieldValueRequired",
            "spec.names.plural",
            "Required value",
        ));
    }
    if kind.is_empty() {
        causes.push(cause(
            "FieldValueRequired",
            "spec.names.kind",
            "Required value",
        ));
    }
    let name = meta::meta_str(crd, "name");
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        causes.push(cause(
            "FieldValueInvalid",
            "metadata.name",
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    match spec["scope"].as_str() {
        Some("Namespaced") | Some("Cluster") => {}
        other => causes.push(cause(
            "FieldValueNotSupported",
            "spec.scope",
            format!(
                "Unsupported value: {}: supported values: \"Cluster\", \"Namespaced\"",
                other.map(|s| format!("\"{s}\"")).unwrap_or("\"\"".into())
            ),
        )),
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        causes.push(cause(
            "FieldValueRequired",
            "spec.versions",
            "Required value",
        ));
    }
    let storage = versions
        .iter()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .count();
    if !versions.is_empty() && storage != 1 {
        causes.push(cause(
            "FieldValueInvalid",
            "spec.versions",
            format!(
                "Invalid value: {}: must have exactly one version marked as storage version",
                json!(
                    versions
                        .iter()
                        .map(|v| v["name"].clone())
                        .collect::<Vec<_>>()
                )
            ),
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        match v["schema"].get("openAPIV3Schema") {
            Some(schema) => {
                let prefix = format!("spec.versions[{i}].schema.openAPIV3Schema");
                causes.extend(
                    validation::check_schema(schema, &prefix)
                        .into_iter()
                        .map(|c| StatusCause {
                            reason: c.reason,
                            message: c.message,
                            field: c.field,
                        }),
                );
            }
            None => causes.push(cause(
                "FieldValueRequired",
                &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                "Required value: schemas are required",
            )),
        }
    }
    if let Some(old) = old {
        for field in ["group", "scope"] {
            if old["spec"][field] != spec[field] {
                causes.push(cause(
                    "FieldValueInvalid",
                    &format!("spec.{field}"),
                    format!("Invalid value: {}: field is immutable", spec[field]),
                ));
            }
        }
    }
    causes
}

fn validate_deployment(d: &Value, old: Option<&Value>) -> Vec<StatusCause> {
    let mut causes = vec![];
    let selector = &d["spec"]["selector"];
    let Some(match_labels) = selector["matchLabels"].as_object() else {
        if selector["matchExpressions"].is_null() {
            causes.push(cause(
                "FieldValueRequired",
                "spec.selector",
                "Required value",
            ));
        }
        return causes;
    };
    let labels = d["spec"]["template"]["metadata"]["labels"].as_object();
    let matches = match_labels
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
    if !matches || match_labels.is_empty() {
        causes.push(cause(
            "FieldValueInvalid",
            "spec.template.metadata.labels",
            format!(
                "Invalid value: {}: `selector` does not match template `labels`",
                d["spec"]["template"]["metadata"]["labels"]
            ),
        ));
    }
    if d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .is_none_or(|c| c.is_empty())
    {
        causes.push(cause(
            "FieldValueRequired",
            "spec.template.spec.containers",
            "Required value",
        ));
    }
    if let Some(old) = old
        && old["spec"]["selector"] != *selector
    {
        causes.push(cause(
            "FieldValueInvalid",
            "spec.selector",
            format!("Invalid value: {selector}: field is immutable"),
        ));
    }
    causes
}
