//! Applying desired child objects and pruning leftovers, for every controller. A child is a
//! typed Kubernetes object; its API (group, version, plural, scope) comes from its type.
//!
//! A child is written (server-side apply, one field manager, forced) only when the live object
//! differs from what is desired, so a converged reconcile writes nothing; a child edited or
//! deleted by hand is restored. Every write is counted in `sluice_operator_api_writes_total`
//! under the child's kind.
//!
//! Before a child is written, its controller (the owner reference marked `controller`) is read
//! afresh from the API: a child is never written for a Tenant or Pipeline that is being
//! deleted, is gone, or was replaced by a new object of the same name since the reconcile read
//! it (the controller's cache can be that stale). Such a child would outlive its owner until
//! the garbage collector found it, and a route's workers would run meanwhile.

use crate::context::Context;
use crate::error::Error;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sluice_crd::{Pipeline, Tenant};
use std::collections::BTreeSet;
use std::fmt::Debug;

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

/// How the API of a kind is reached: within a namespace, or cluster-wide.
pub trait Scope {
    /// The API of `K` for an object in `namespace` (ignored for cluster-scoped kinds).
    fn api<K>(client: Client, namespace: &str) -> Api<K>
    where
        K: Resource<Scope = Self, DynamicType = ()>;
}

impl Scope for NamespaceResourceScope {
    fn api<K>(client: Client, namespace: &str) -> Api<K>
    where
        K: Resource<Scope = Self, DynamicType = ()>,
    {
        Api::namespaced(client, namespace)
    }
}

impl Scope for ClusterResourceScope {
    fn api<K>(client: Client, _namespace: &str) -> Api<K>
    where
        K: Resource<Scope = Self, DynamicType = ()>,
    {
        Api::all(client)
    }
}

/// A kind of object the operator owns (any typed Kubernetes object).
pub trait Child:
    Resource<DynamicType = (), Scope: Scope> + Clone + Debug + Serialize + DeserializeOwned
{
}

impl<K> Child for K where
    K: Resource<DynamicType = (), Scope: Scope> + Clone + Debug + Serialize + DeserializeOwned
{
}

/// The API of `K` in `namespace` (cluster-wide for cluster-scoped kinds).
pub fn api<K: Child>(client: &Client, namespace: &str) -> Api<K> {
    <K::Scope as Scope>::api(client.clone(), namespace)
}

/// What `apply` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The live object already matched.
    Unchanged,
    /// The object was created or updated.
    Written,
}

/// Makes the live object match `desired`: reads it, and applies `desired` only when it differs.
pub async fn apply<K: Child>(ctx: &Context, desired: &K) -> Result<Outcome, Error> {
    let meta = desired.meta();
    let name = meta
        .name
        .as_deref()
        .ok_or(Error::MissingField("metadata.name"))?;
    let api = api::<K>(&ctx.client, meta.namespace.as_deref().unwrap_or_default());
    if let Some(live) = api.get_opt(name).await?
        && is_subset(
            &serde_json::to_value(desired)?,
            &serde_json::to_value(&live)?,
        )
    {
        return Ok(Outcome::Unchanged);
    }
    write(ctx, desired).await?;
    Ok(Outcome::Written)
}

/// Writes `desired` (server-side apply) without reading it first, once its controller is
/// confirmed: for the objects the operator may write but not read (credentials Secrets).
pub async fn write<K: Child>(ctx: &Context, desired: &K) -> Result<(), Error> {
    let meta = desired.meta();
    let name = meta
        .name
        .as_deref()
        .ok_or(Error::MissingField("metadata.name"))?;
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    if let Some(owner) = controller_of(desired) {
        confirm_owner(ctx, owner, namespace).await?;
    }
    api::<K>(&ctx.client, namespace)
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(desired),
        )
        .await?;
    ctx.count_write(&K::kind(&()));
    Ok(())
}

/// The owner reference marked `controller` of an object, if any.
fn controller_of<K: Resource>(obj: &K) -> Option<&OwnerReference> {
    obj.meta()
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Whether an owner read now still is the one `owner` names: same uid, not being deleted.
pub fn is_live_owner(owner: &OwnerReference, live: Option<&kube::api::ObjectMeta>) -> bool {
    live.is_some_and(|m| {
        m.uid.as_deref() == Some(owner.uid.as_str()) && m.deletion_timestamp.is_none()
    })
}

/// Reads `owner` (a Tenant, or a Pipeline in `namespace`) afresh, and fails with
/// [`Error::OwnerGone`] unless it is still there, with its uid, and not being deleted.
async fn confirm_owner(
    ctx: &Context,
    owner: &OwnerReference,
    namespace: &str,
) -> Result<(), Error> {
    let live = match owner.kind.as_str() {
        "Tenant" => Api::<Tenant>::all(ctx.client.clone())
            .get_metadata_opt(&owner.name)
            .await?
            .map(|m| m.metadata),
        "Pipeline" => Api::<Pipeline>::namespaced(ctx.client.clone(), namespace)
            .get_metadata_opt(&owner.name)
            .await?
            .map(|m| m.metadata),
        // The operator's children have only these controllers.
        _ => return Ok(()),
    };
    if is_live_owner(owner, live.as_ref()) {
        return Ok(());
    }
    Err(Error::OwnerGone {
        kind: owner.kind.clone(),
        name: owner.name.clone(),
        uid: owner.uid.clone(),
    })
}

/// Deletes the `K` called `name` in `namespace`, if it exists.
pub async fn delete<K: Child>(ctx: &Context, namespace: &str, name: &str) -> Result<(), Error> {
    match api::<K>(&ctx.client, namespace)
        .delete(name, &DeleteParams::background())
        .await
    {
        Ok(_) => {
            ctx.count_write(&K::kind(&()));
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Which of the children a controller finds it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    /// Every one (nothing is pruned).
    All,
    /// Only these names.
    Only(BTreeSet<String>),
}

impl Keep {
    /// Keeps the names given.
    pub fn only<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Keep::Only(names.into_iter().map(Into::into).collect())
    }

    /// Keeps nothing (everything found is pruned).
    pub fn none() -> Self {
        Keep::Only(BTreeSet::new())
    }

    /// Whether `name` is kept.
    pub fn keeps(&self, name: &str) -> bool {
        match self {
            Keep::All => true,
            Keep::Only(names) => names.contains(name),
        }
    }

    /// The names in `live` that are not kept: what pruning deletes.
    pub fn unwanted<'a>(&self, live: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        live.into_iter()
            .filter(|name| !self.keeps(name))
            .map(String::from)
            .collect()
    }
}

/// Deletes the `K`s in `namespace` matching `selector` that `keep` does not keep.
pub async fn prune<K: Child>(
    ctx: &Context,
    namespace: &str,
    selector: &str,
    keep: &Keep,
) -> Result<(), Error> {
    if *keep == Keep::All {
        return Ok(());
    }
    let live = api::<K>(&ctx.client, namespace)
        .list_metadata(&ListParams::default().labels(selector))
        .await?;
    let names: Vec<String> = live.items.iter().map(ResourceExt::name_any).collect();
    for name in keep.unwanted(names.iter().map(String::as_str)) {
        delete::<K>(ctx, namespace, &name).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_owner_is_live_only_with_its_uid_and_no_deletion() {
        let owner = OwnerReference {
            kind: "Pipeline".into(),
            name: "p".into(),
            uid: "u1".into(),
            controller: Some(true),
            ..Default::default()
        };
        let meta = |uid: &str, deleting: bool| kube::api::ObjectMeta {
            uid: Some(uid.into()),
            deletion_timestamp: deleting.then(|| {
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now())
            }),
            ..Default::default()
        };
        assert!(is_live_owner(&owner, Some(&meta("u1", false))));
        assert!(!is_live_owner(&owner, Some(&meta("u2", false))), "replaced");
        assert!(
            !is_live_owner(&owner, Some(&meta("u1", true))),
            "being deleted"
        );
        assert!(!is_live_owner(&owner, None), "gone");
    }

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
    fn pruning_deletes_what_the_keep_set_lacks() {
        let live = ["a", "b", "c"];
        assert_eq!(Keep::only(["a", "c"]).unwanted(live), ["b"]);
        assert_eq!(Keep::none().unwanted(live), live);
        assert!(Keep::All.unwanted(live).is_empty());
        assert!(Keep::only(["a", "b", "c", "d"]).unwanted(live).is_empty());
        assert!(Keep::only(["x"]).keeps("x"));
        assert!(!Keep::only(["x"]).keeps("y"));
    }

    #[test]
    fn the_api_comes_from_the_type() {
        use k8s_openapi::api::apps::v1::Deployment;
        use k8s_openapi::api::core::v1::Namespace;
        use k8s_openapi::api::networking::v1::NetworkPolicy;
        assert_eq!(Deployment::plural(&()), "deployments");
        assert_eq!(NetworkPolicy::plural(&()), "networkpolicies");
        assert_eq!(Namespace::kind(&()), "Namespace");
    }
}
