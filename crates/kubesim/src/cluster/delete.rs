//! Deletion: finalizers and `deletionTimestamp`, owner-reference garbage collection
//! (background, foreground, orphan), namespace and CustomResourceDefinition cascades.

use super::read::served;
use super::{Cluster, ObjRef, State};
use crate::error::{ApiError, ApiResult};
use crate::meta;
use crate::resources::{ResourceType, TypeKey};
use serde_json::{Value, json};

/// `propagationPolicy` of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    /// Dependents are deleted after the owner is gone (the default).
    #[default]
    Background,
    /// The owner stays (with the `foregroundDeletion` finalizer) until its dependents are gone.
    Foreground,
    /// Dependents lose their owner reference and stay.
    Orphan,
}

/// Options of a delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// How dependents are treated.
    pub propagation: Propagation,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// What a delete did.
#[derive(Debug, Clone)]
pub struct Deleted {
    /// The object: its last state, or its state marked for deletion.
    pub object: Value,
    /// `true` when the object is gone; `false` when finalizers hold it.
    pub gone: bool,
}

const FOREGROUND: &str = "foregroundDeletion";
const CRD_CLEANUP: &str = "customresourcecleanup.apiextensions.k8s.io";

fn namespaces_key() -> TypeKey {
    TypeKey {
        group: String::new(),
        plural: "namespaces".into(),
    }
}

fn crd_key() -> TypeKey {
    TypeKey {
        group: "apiextensions.k8s.io".into(),
        plural: "customresourcedefinitions".into(),
    }
}

impl Cluster {
    /// Deletes an object (`DELETE`).
    pub fn delete(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Deleted> {
        let mut st = self.lock();
        let r = super::write::obj_ref(rt, namespace, name);
        let obj = st
            .get_stored(&r)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
        for (label, field, wanted) in [
            ("UID", "uid", &opts.uid),
            ("ResourceVersion", "resourceVersion", &opts.resource_version),
        ] {
            let have = meta::meta_str(&obj, field);
            if let Some(wanted) = wanted
                && wanted != have
            {
                return Err(ApiError::conflict_message(
                    &rt.group,
                    &rt.plural,
                    name,
                    format!(
                        "Precondition failed: {label} in precondition: {wanted}, {label} in object meta: {have}"
                    ),
                    vec![],
                ));
            }
        }
        if opts.dry_run {
            return Ok(Deleted {
                object: served(rt, obj),
                gone: false,
            });
        }
        let (object, gone) = st.delete_object(&r, opts.propagation);
        Ok(Deleted {
            object: served(rt, object.unwrap_or(obj)),
            gone,
        })
    }

    /// Deletes every object of `rt` in `namespace` (or everywhere) matching the selectors.
    pub fn delete_collection(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        list: &super::ListOptions,
        opts: &DeleteOptions,
    ) -> ApiResult<Vec<Value>> {
        let page = self.list(rt, namespace, list)?;
        let mut out = vec![];
        for item in page.items {
            let ns = meta::meta_str(&item, "namespace").to_string();
            let name = meta::meta_str(&item, "name").to_string();
            match self.delete(rt, &ns, &name, opts) {
                Ok(d) => out.push(d.object),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

impl State {
    /// Starts deleting an object: marks it when something holds it back, removes it otherwise.
    /// Returns the object's state after the call and whether it is gone.
    pub(super) fn delete_object(
        &mut self,
        r: &ObjRef,
        propagation: Propagation,
    ) -> (Option<Value>, bool) {
        let Some(mut obj) = self.get_stored(r).cloned() else {
            return (None, true);
        };
        let uid = meta::meta_str(&obj, "uid").to_string();
        if propagation == Propagation::Orphan {
            self.orphan_dependents(&uid);
        }
        let already = !obj["metadata"]["deletionTimestamp"].is_null();
        let mut finalizers = meta::finalizers(&obj);
        let has_dependents = self.dependents.get(&uid).is_some_and(|d| !d.is_empty());
        if propagation == Propagation::Foreground
            && has_dependents
            && !finalizers.iter().any(|f| f == FOREGROUND)
        {
            finalizers.push(FOREGROUND.to_string());
            obj["metadata"]["finalizers"] = json!(finalizers);
        }
        let is_namespace = r.key == namespaces_key();
        let is_crd = r.key == crd_key();
        if finalizers.is_empty() && !is_namespace && !is_crd {
            let last = self.remove(r);
            return (last, true);
        }
        if !already {
            obj["metadata"]["deletionTimestamp"] = json!(meta::now());
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if is_namespace {
                obj["status"]["phase"] = json!("Terminating");
            }
            self.store(r, obj);
        } else if meta::finalizers(self.get_stored(r).expect("present")) != finalizers {
            self.store(r, obj);
        }
        if is_namespace {
            self.empty_namespace(&r.name);
        }
        if is_crd {
            self.empty_crd(r);
        }
        if finalizers.iter().any(|f| f == FOREGROUND) {
            self.delete_dependents(&uid);
            self.finish_foreground(&uid);
        }
        let state = self.get_stored(r).cloned();
        let gone = state.is_none();
        (state, gone)
    }

    /// Whether the server itself still holds an object marked for deletion whose finalizers
    /// are all gone (a namespace with content, a CRD with instances).
    pub(super) fn holds_back_removal(&self, rt: &ResourceType, obj: &Value) -> bool {
        let name = meta::meta_str(obj, "name");
        if rt.key() == namespaces_key() {
            return self.namespace_has_content(name);
        }
        false
    }

    fn namespace_has_content(&self, ns: &str) -> bool {
        self.objects
            .iter()
            .any(|(key, map)| *key != namespaces_key() && map.keys().any(|(n, _)| n == ns))
    }

    fn empty_namespace(&mut self, ns: &str) {
        let keys: Vec<TypeKey> = self.objects.keys().cloned().collect();
        for key in keys {
            if key == namespaces_key() {
                continue;
            }
            for r in self.list_refs(&key, Some(ns)) {
                if r.namespace.is_empty() {
                    continue;
                }
                self.delete_in_background(&r);
            }
        }
        self.finish_namespace(ns);
    }

    /// Deletes `r` in the background unless its deletion already began.
    fn delete_in_background(&mut self, r: &ObjRef) {
        let marked = self
            .get_stored(r)
            .is_some_and(|o| !o["metadata"]["deletionTimestamp"].is_null());
        if !marked {
            self.delete_object(r, Propagation::Background);
        }
    }

    /// Removes a terminating namespace once nothing is left in it.
    fn finish_namespace(&mut self, ns: &str) {
        let r = super::ns_ref(ns);
        let Some(obj) = self.get_stored(&r).cloned() else {
            return;
        };
        if obj["metadata"]["deletionTimestamp"].is_null() || self.namespace_has_content(ns) {
            return;
        }
        let has_spec_finalizer = obj["spec"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        let mut obj = obj;
        if has_spec_finalizer {
            obj["spec"]["finalizers"] = json!([]);
            obj = self.store(&r, obj);
        }
        if meta::finalizers(&obj).is_empty() {
            self.remove(&r);
        }
    }

    fn crd_instances(&self, crd: &Value) -> Vec<ObjRef> {
        let key = TypeKey {
            group: crd["spec"]["group"].as_str().unwrap_or_default().into(),
            plural: crd["spec"]["names"]["plural"]
                .as_str()
                .unwrap_or_default()
                .into(),
        };
        self.list_refs(&key, None)
    }

    fn empty_crd(&mut self, r: &ObjRef) {
        let Some(crd) = self.get_stored(r).cloned() else {
            return;
        };
        for inst in self.crd_instances(&crd) {
            self.delete_in_background(&inst);
        }
        self.finish_crd(r);
    }

    /// Drops the cleanup finalizer of a terminating CRD once it has no instances left.
    fn finish_crd(&mut self, r: &ObjRef) {
        let Some(mut crd) = self.get_stored(r).cloned() else {
            return;
        };
        if crd["metadata"]["deletionTimestamp"].is_null() || !self.crd_instances(&crd).is_empty() {
            return;
        }
        let rest: Vec<String> = meta::finalizers(&crd)
            .into_iter()
            .filter(|f| f != CRD_CLEANUP)
            .collect();
        crd["metadata"]["finalizers"] = json!(rest);
        if rest.is_empty() {
            self.store(r, crd);
            self.remove(r);
        } else {
            self.store(r, crd);
        }
    }

    /// The objects whose owner references name `uid`.
    fn dependents_of(&self, uid: &str) -> Vec<ObjRef> {
        self.dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn delete_dependents(&mut self, uid: &str) {
        for d in self.dependents_of(uid) {
            self.delete_in_background(&d);
        }
    }

    /// Drops `foregroundDeletion` from an owner once its dependents are gone.
    fn finish_foreground(&mut self, uid: &str) {
        let Some(r) = self.uids.get(uid).cloned() else {
            return;
        };
        if self.has_blocking_dependents(uid) {
            return;
        }
        let Some(mut obj) = self.get_stored(&r).cloned() else {
            return;
        };
        let fins = meta::finalizers(&obj);
        if !fins.iter().any(|f| f == FOREGROUND) {
            return;
        }
        let rest: Vec<String> = fins.into_iter().filter(|f| f != FOREGROUND).collect();
        obj["metadata"]["finalizers"] = json!(rest);
        self.store(&r, obj);
        if rest.is_empty() {
            self.remove(&r);
        }
    }

    /// Whether a dependent still holds its owner's foreground deletion: only references with
    /// `blockOwnerDeletion: true` do, as with the real garbage collector.
    fn has_blocking_dependents(&self, uid: &str) -> bool {
        self.dependents.get(uid).is_some_and(|deps| {
            deps.iter().any(|d| {
                self.get_stored(d).is_some_and(|dep| {
                    dep["metadata"]["ownerReferences"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|o| o["uid"] == uid && o["blockOwnerDeletion"] == true)
                })
            })
        })
    }

    fn orphan_dependents(&mut self, uid: &str) {
        for d in self.dependents_of(uid) {
            self.drop_owner_ref(&d, uid);
        }
    }

    fn drop_owner_ref(&mut self, r: &ObjRef, owner_uid: &str) {
        let Some(mut obj) = self.get_stored(r).cloned() else {
            return;
        };
        if let Some(refs) = obj["metadata"]["ownerReferences"].as_array_mut() {
            refs.retain(|o| o["uid"].as_str() != Some(owner_uid));
            if refs.is_empty()
                && let Some(m) = obj["metadata"].as_object_mut()
            {
                m.remove("ownerReferences");
            }
        }
        self.store(r, obj);
    }

    /// What the garbage collector does with an object written with owner references that
    /// point at objects which do not exist (an owner deleted, or deleted and created again under
    /// a new uid, before the write): with no owner left it is deleted in the background; with
    /// some owners left it loses the dangling references.
    pub(super) fn collect_if_orphaned(&mut self, r: &ObjRef) {
        let Some(obj) = self.get_stored(r) else {
            return;
        };
        if !obj["metadata"]["deletionTimestamp"].is_null() {
            return;
        }
        let owners = meta::owner_uids(obj);
        if owners.is_empty() {
            return;
        }
        let (alive, gone): (Vec<String>, Vec<String>) = owners
            .into_iter()
            .partition(|uid| self.uids.contains_key(uid));
        if alive.is_empty() {
            self.delete_object(r, Propagation::Background);
        } else {
            for uid in gone {
                self.drop_owner_ref(r, &uid);
            }
        }
    }

    /// What the garbage collector and the namespace and CRD controllers do after an object is
    /// gone.
    pub(super) fn after_removal(&mut self, r: &ObjRef, obj: &Value) {
        if r.key == crd_key() {
            let group = obj["spec"]["group"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let plural = obj["spec"]["names"]["plural"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            std::sync::Arc::make_mut(&mut self.registry).remove_custom(&group, &plural);
            self.objects.remove(&TypeKey { group, plural });
        }
        // Dependents whose owners are all gone are collected; others lose the dangling reference.
        let uid = meta::meta_str(obj, "uid").to_string();
        let deps: Vec<ObjRef> = self
            .dependents
            .remove(&uid)
            .map(|s| s.into_iter().collect())
            .unwrap_or_default();
        for d in deps {
            let Some(dep) = self.get_stored(&d).cloned() else {
                continue;
            };
            let others_alive = meta::owner_uids(&dep)
                .iter()
                .any(|o| *o != uid && self.uids.contains_key(o));
            if others_alive {
                self.drop_owner_ref(&d, &uid);
            } else if dep["metadata"]["deletionTimestamp"].is_null() {
                self.delete_object(&d, Propagation::Background);
            }
        }
        for owner in meta::owner_uids(obj) {
            self.finish_foreground(&owner);
        }
        if !r.namespace.is_empty() {
            let terminating = self
                .get_stored(&super::ns_ref(&r.namespace))
                .is_some_and(|n| !n["metadata"]["deletionTimestamp"].is_null());
            if terminating {
                self.finish_namespace(&r.namespace.clone());
            }
        }
        if r.key.group == "rbac.authorization.k8s.io" && r.key.plural == "clusterroles" {
            // An aggregated role loses the rules of a deleted part.
            self.aggregate_cluster_roles();
        }
        if self.registry.has_key(&r.key)
            && let Some(crd_ref) = self.crd_ref_for(&r.key)
        {
            self.finish_crd(&crd_ref);
        }
    }

    fn crd_ref_for(&self, key: &TypeKey) -> Option<ObjRef> {
        let rt = self
            .registry
            .all()
            .iter()
            .find(|t| t.custom && t.key() == *key)?;
        let r = ObjRef {
            key: crd_key(),
            namespace: String::new(),
            name: format!("{}.{}", rt.plural, rt.group),
        };
        self.get_stored(&r).is_some().then_some(r)
    }
}
