//! Applying desired child objects and pruning leftovers. A child is written (server-side
//! apply, one field manager, forced) only when the live object differs from what is desired,
//! so a converged reconcile writes nothing; a child edited or deleted by hand is restored.

use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::ApiResource;
use kube::{Client, ResourceExt};
use serde_json::Value;

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "sluice-operator";

/// Whether every field of `desired` is present in `live` with the same value (objects are
/// compared key by key, so fields the server or others add do not count; lists must match
/// element by element).
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(k, dv)| {
            l.get(k).is_some_and(|lv| is_subset(dv, lv)) || (dv.is_null() && !l.contains_key(k))
        }),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(dv, lv)| is_subset(dv, lv))
        }
        (d, l) => d == l,
    }
}

/// What `ensure` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The live object already matched.
    Unchanged,
    /// The object was created or updated.
    Written,
}

/// The dynamic API of a desired object (from its `apiVersion`, `kind`; plural from the kind).
pub fn api_for(client: &Client, obj: &Value) -> Api<DynamicObject> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let ar = ApiResource::from_gvk_with_plural(&gvk, &plural_of(kind));
    match obj["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

/// The plural resource name of the kinds the operator writes.
pub fn plural_of(kind: &str) -> String {
    match kind {
        "NetworkPolicy" => "networkpolicies".into(),
        "PodDisruptionBudget" => "poddisruptionbudgets".into(),
        other => format!("{}s", other.to_lowercase()),
    }
}

/// Makes the live object match `desired`: reads it, and applies `desired` only when it differs.
pub async fn ensure(client: &Client, desired: &Value) -> Result<Outcome, kube::Error> {
    let api = api_for(client, desired);
    let name = desired["metadata"]["name"].as_str().unwrap_or_default();
    if let Some(live) = api.get_opt(name).await? {
        let live = serde_json::to_value(&live).map_err(kube::Error::SerdeError)?;
        if is_subset(desired, &live) {
            return Ok(Outcome::Unchanged);
        }
    }
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(desired),
    )
    .await?;
    Ok(Outcome::Written)
}

/// Deletes the objects of `kind` in `namespace` matching `selector` whose names are not in
/// `keep`. Returns how many were deleted.
pub async fn prune(
    client: &Client,
    api_version: &str,
    kind: &str,
    namespace: &str,
    selector: &str,
    keep: &[String],
) -> Result<usize, kube::Error> {
    let probe = serde_json::json!({"apiVersion": api_version, "kind": kind, "metadata": {"namespace": namespace}});
    let api = api_for(client, &probe);
    let mut deleted = 0;
    for obj in api.list(&ListParams::default().labels(selector)).await? {
        let name = obj.name_any();
        if keep.contains(&name) {
            continue;
        }
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => deleted += 1,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset_ignores_what_the_server_adds() {
        let desired = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "w", "image": "x"}]}}}});
        let live = json!({"metadata": {"uid": "u"}, "spec": {"replicas": 2, "strategy": {},
            "template": {"spec": {"containers": [{"name": "w", "image": "x", "imagePullPolicy": "IfNotPresent"}]}}},
            "status": {}});
        assert!(is_subset(&desired, &live));
        let edited = json!({"spec": {"replicas": 5, "template": {"spec": {"containers": [{"name": "w", "image": "x"}]}}}});
        assert!(!is_subset(&desired, &edited));
        let extra_container = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "w", "image": "x"}, {"name": "y"}]}}}});
        assert!(!is_subset(&desired, &extra_container));
        assert!(is_subset(&json!({"a": null}), &json!({})));
    }

    #[test]
    fn plurals() {
        assert_eq!(plural_of("Deployment"), "deployments");
        assert_eq!(plural_of("NetworkPolicy"), "networkpolicies");
        assert_eq!(plural_of("ConfigMap"), "configmaps");
    }
}
