//! The cluster state: every stored object, the resource version counter, the watch history and
//! the live watchers. All operations take one lock, so each is atomic, as a single etcd
//! transaction is for the real server.
//!
//! - `read.rs`: get and list;
//! - `write.rs`: create, update, patch and the subresources;
//! - `delete.rs`: deletion, finalizers, garbage collection and namespace cascade;
//! - `watch.rs`: the event history and watch subscriptions;
//! - `builtin.rs`: what the built-in controllers do (namespace phase, service IPs, CRD status,
//!   Deployment status through the kubelet hook, aggregated cluster roles).

mod builtin;
mod delete;
mod events;
mod read;
mod watch;
mod write;

pub use delete::{DeleteOptions, Deleted, Propagation};
pub(crate) use read::served as served_object;
pub use read::{ListOptions, ListPage, Selectors};
pub use watch::{EventType, WatchEvent, WatchStart, Watched};
pub use write::{FieldValidation, PatchKind, Subresource, WriteOptions, Written};

use crate::kubelet::{Kubelet, PodBehaviour, Uniform};
use crate::meta;
use crate::persist::{MemoryOnly, Persistence};
use crate::resources::{Registry, ResourceType, TypeKey};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// Identifies one stored object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjRef {
    /// Its resource type.
    pub key: TypeKey,
    /// Namespace, empty for cluster-scoped objects.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjRef {
    fn storage_path(&self) -> String {
        let group = if self.key.group.is_empty() {
            "core"
        } else {
            &self.key.group
        };
        format!(
            "{group}/{}/{}/{}",
            self.key.plural, self.namespace, self.name
        )
    }
}

/// Settings of a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// How many change events are kept for watches that resume from a resource version; older
    /// versions get `410 Gone`.
    pub history_limit: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            history_limit: 200_000,
        }
    }
}

pub(crate) struct State {
    rv: u64,
    registry: Arc<Registry>,
    objects: HashMap<TypeKey, BTreeMap<(String, String), Value>>,
    uids: HashMap<String, ObjRef>,
    dependents: HashMap<String, BTreeSet<ObjRef>>,
    history: VecDeque<Arc<WatchEvent>>,
    /// Events at or below this resource version are no longer in `history`.
    history_floor: u64,
    history_limit: usize,
    watchers: Vec<watch::Watcher>,
    persistence: Box<dyn Persistence>,
    kubelet: Arc<dyn Kubelet>,
}

/// An in-memory Kubernetes cluster state with the API server's semantics. The HTTP layer
/// ([`crate::Server`]) translates requests into calls on it; tests and embedders may call it
/// directly too.
pub struct Cluster {
    state: Mutex<State>,
}

impl Cluster {
    /// An empty cluster with the default namespaces, keeping state in memory only.
    pub fn new() -> Arc<Self> {
        Self::with(ClusterConfig::default(), Box::new(MemoryOnly))
            .expect("memory persistence cannot fail")
    }

    /// A cluster that loads its objects from `persistence` and reports every change to it.
    pub fn with(
        config: ClusterConfig,
        persistence: Box<dyn Persistence>,
    ) -> std::io::Result<Arc<Self>> {
        let saved = persistence.load()?;
        let saved_rv = persistence.load_resource_version()?;
        let mut state = State {
            rv: 0,
            registry: Arc::new(Registry::builtin()),
            objects: HashMap::new(),
            uids: HashMap::new(),
            dependents: HashMap::new(),
            history: VecDeque::new(),
            history_floor: 0,
            history_limit: config.history_limit.max(1),
            watchers: vec![],
            persistence,
            kubelet: Arc::new(Uniform(PodBehaviour::Ready)),
        };
        state.restore(saved, saved_rv);
        let cluster = Arc::new(Cluster {
            state: Mutex::new(state),
        });
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let exists = cluster.lock().get_stored(&ns_ref(ns)).is_some();
            if !exists {
                let obj = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
                let rt = cluster
                    .resource_type("", "v1", "namespaces")
                    .expect("builtin");
                cluster
                    .create(&rt, "", obj, &WriteOptions::manager("kubesim"))
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
            }
        }
        cluster.seed(crate::auth::bootstrap::objects())?;
        Ok(cluster)
    }

    /// Stores each of `objects` that does not exist yet (a restarted cluster keeps its own), as
    /// the real server's bootstrap does: without going through validation, since bootstrap
    /// names such as `system:discovery` are outside what a create would check.
    fn seed(&self, objects: Vec<Value>) -> std::io::Result<()> {
        let mut st = self.lock();
        for mut obj in objects {
            let rt = st
                .registry
                .find_kind(
                    obj["apiVersion"].as_str().unwrap_or_default(),
                    obj["kind"].as_str().unwrap_or_default(),
                )
                .cloned()
                .ok_or_else(|| std::io::Error::other("a seed object of an unknown kind"))?;
            let r = ObjRef {
                key: rt.key(),
                namespace: meta::meta_str(&obj, "namespace").to_string(),
                name: meta::meta_str(&obj, "name").to_string(),
            };
            if st.get_stored(&r).is_some() {
                continue;
            }
            obj["metadata"]["uid"] = Value::String(uuid::Uuid::new_v4().to_string());
            obj["metadata"]["creationTimestamp"] = Value::String(meta::now());
            st.store(&r, obj);
        }
        Ok(())
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (each operation writes through
        // `State::store`/`remove` only after validation), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the kubelet hook that decides Deployment statuses, and re-evaluates every
    /// Deployment with it.
    pub fn set_kubelet(&self, kubelet: Arc<dyn Kubelet>) {
        let mut st = self.lock();
        st.kubelet = kubelet;
        st.refresh_deployments();
    }

    /// Asks the kubelet hook again about every Deployment (for hooks whose answer changes).
    pub fn refresh_deployments(&self) {
        self.lock().refresh_deployments();
    }

    /// The current resource version of the whole cluster.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Drops the watch history, so watches from any earlier resource version get `410 Gone`
    /// (what etcd compaction does to a real server).
    pub fn compact(&self) {
        let mut st = self.lock();
        st.history.clear();
        st.history_floor = st.rv;
    }

    /// A snapshot of the registry of served types.
    pub fn registry(&self) -> Arc<Registry> {
        self.lock().registry.clone()
    }

    /// The type served at `group/version/plural`.
    pub fn resource_type(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.lock().registry.find(group, version, plural).cloned()
    }

    /// The type of `kind` at `api_version`.
    pub fn resource_type_of(&self, api_version: &str, kind: &str) -> Option<ResourceType> {
        self.lock().registry.find_kind(api_version, kind).cloned()
    }
}

fn ns_ref(name: &str) -> ObjRef {
    ObjRef {
        key: TypeKey {
            group: String::new(),
            plural: "namespaces".into(),
        },
        namespace: String::new(),
        name: name.into(),
    }
}

impl State {
    fn restore(&mut self, saved: Vec<Value>, saved_rv: u64) {
        self.rv = saved_rv;
        // CRDs first, so that their custom resources have a type to belong to.
        let (crds, others): (Vec<Value>, Vec<Value>) = saved
            .into_iter()
            .partition(|o| o["kind"] == "CustomResourceDefinition");
        for crd in &crds {
            Arc::make_mut(&mut self.registry).install_crd(crd);
        }
        for obj in crds.into_iter().chain(others) {
            let Some(rt) = self
                .registry
                .find_kind(
                    obj["apiVersion"].as_str().unwrap_or_default(),
                    obj["kind"].as_str().unwrap_or_default(),
                )
                .cloned()
            else {
                continue;
            };
            let r = ObjRef {
                key: rt.key(),
                namespace: meta::meta_str(&obj, "namespace").to_string(),
                name: meta::meta_str(&obj, "name").to_string(),
            };
            let rv: u64 = meta::meta_str(&obj, "resourceVersion").parse().unwrap_or(0);
            self.rv = self.rv.max(rv);
            self.index(&r, None, &obj);
            self.objects
                .entry(r.key.clone())
                .or_default()
                .insert((r.namespace.clone(), r.name.clone()), obj);
        }
        self.history_floor = self.rv;
    }

    pub(crate) fn get_stored(&self, r: &ObjRef) -> Option<&Value> {
        self.objects
            .get(&r.key)?
            .get(&(r.namespace.clone(), r.name.clone()))
    }

    fn index(&mut self, r: &ObjRef, old: Option<&Value>, new: &Value) {
        if let Some(old) = old {
            for owner in meta::owner_uids(old) {
                if let Some(set) = self.dependents.get_mut(&owner) {
                    set.remove(r);
                    if set.is_empty() {
                        self.dependents.remove(&owner);
                    }
                }
            }
        }
        let uid = meta::meta_str(new, "uid");
        if !uid.is_empty() {
            self.uids.insert(uid.to_string(), r.clone());
        }
        for owner in meta::owner_uids(new) {
            self.dependents.entry(owner).or_default().insert(r.clone());
        }
    }

    fn unindex(&mut self, r: &ObjRef, obj: &Value) {
        self.uids.remove(meta::meta_str(obj, "uid"));
        for owner in meta::owner_uids(obj) {
            if let Some(set) = self.dependents.get_mut(&owner) {
                set.remove(r);
                if set.is_empty() {
                    self.dependents.remove(&owner);
                }
            }
        }
    }

    /// Stores `obj` with a new resource version and tells watchers and persistence.
    fn store(&mut self, r: &ObjRef, mut obj: Value) -> Value {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        let old = self
            .objects
            .entry(r.key.clone())
            .or_default()
            .insert((r.namespace.clone(), r.name.clone()), obj.clone());
        self.index(r, old.as_ref(), &obj);
        if let Err(e) = self.persistence.put(&r.storage_path(), &obj) {
            tracing::error!(error = %e, object = %r.storage_path(), "cannot persist object");
        }
        let kind = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.publish(r, kind, obj.clone(), old);
        obj
    }

    /// Removes an object for good, then lets the garbage collector and the namespace and CRD
    /// finalizers react.
    fn remove(&mut self, r: &ObjRef) -> Option<Value> {
        let mut obj = self
            .objects
            .get_mut(&r.key)?
            .remove(&(r.namespace.clone(), r.name.clone()))?;
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        self.unindex(r, &obj);
        if let Err(e) = self.persistence.remove(&r.storage_path()) {
            tracing::error!(error = %e, object = %r.storage_path(), "cannot remove persisted object");
        }
        if let Err(e) = self.persistence.put_resource_version(self.rv) {
            tracing::error!(error = %e, "cannot persist the resource version");
        }
        self.publish(r, EventType::Deleted, obj.clone(), None);
        self.after_removal(r, &obj);
        Some(obj)
    }

    fn list_refs(&self, key: &TypeKey, namespace: Option<&str>) -> Vec<ObjRef> {
        let Some(map) = self.objects.get(key) else {
            return vec![];
        };
        let keys: Box<dyn Iterator<Item = &(String, String)>> = match namespace {
            Some(want) => Box::new(
                map.range((want.to_string(), String::new())..)
                    .map(|(k, _)| k)
                    .take_while(move |(ns, _)| ns == want),
            ),
            None => Box::new(map.keys()),
        };
        keys.map(|(ns, name)| ObjRef {
            key: key.clone(),
            namespace: ns.clone(),
            name: name.clone(),
        })
        .collect()
    }
}

/// Splits a multi-document YAML text into objects (empty documents are skipped).
pub fn parse_yaml_documents(text: &str) -> Result<Vec<Value>, serde_norway::Error> {
    use serde::Deserialize;
    let mut out = vec![];
    for doc in serde_norway::Deserializer::from_str(text) {
        let v = Value::deserialize(doc)?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

impl Cluster {
    /// Server-side applies one whole object (as `kubectl apply --server-side` would), resolving
    /// its type from `apiVersion` and `kind`.
    pub fn apply_object(&self, obj: &Value, manager: &str) -> Result<Value, crate::ApiError> {
        let api_version = obj["apiVersion"].as_str().unwrap_or_default();
        let kind = obj["kind"].as_str().unwrap_or_default();
        let rt = self.resource_type_of(api_version, kind).ok_or_else(|| {
            crate::ApiError::bad_request(format!(
                "no matches for kind \"{kind}\" in version \"{api_version}\""
            ))
        })?;
        let ns = if rt.namespaced {
            match meta::meta_str(obj, "namespace") {
                "" => "default",
                ns => ns,
            }
        } else {
            ""
        };
        let name = meta::meta_str(obj, "name");
        let written = self.patch(
            &rt,
            ns,
            name,
            PatchKind::Apply { force: true },
            obj,
            None,
            &WriteOptions::manager(manager),
        )?;
        Ok(written.object)
    }
}
