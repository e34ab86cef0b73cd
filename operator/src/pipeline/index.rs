//! The pipelines of each namespace, kept beside the pipeline controller's store, so that the
//! peers of a pipeline (admission, a tenant's usage, a tenant change) are found without
//! scanning every pipeline of the cluster.

use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use sluice_crd::{ConditionType, Pipeline};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::Notify;

type Names = HashMap<String, BTreeSet<String>>;

#[derive(Default)]
struct Inner {
    live: Names,
    /// Filled during a re-list, swapped in when it completes (as the store does).
    relisting: Names,
    /// Whether each pipeline's spec is valid, by uid, at a generation (validation compiles
    /// CEL, and admission judges every peer of a pipeline at each reconcile).
    validity: HashMap<String, (Option<i64>, bool)>,
}

/// Pipeline names by namespace, fed the same watch events as the pipeline store.
#[derive(Clone, Default)]
pub struct ByNamespace {
    inner: Arc<RwLock<Inner>>,
    /// Set once the first complete list has been seen.
    ready: Arc<(AtomicBool, Notify)>,
}

fn add(names: &mut Names, p: &Pipeline) {
    if let Some(ns) = p.metadata.namespace.as_deref() {
        names
            .entry(ns.to_string())
            .or_default()
            .insert(p.name_any());
    }
}

impl ByNamespace {
    /// Applies one watch event (call it after the store has applied it).
    pub fn observe(&self, event: &watcher::Event<Pipeline>) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        match event {
            watcher::Event::Apply(p) => add(&mut inner.live, p),
            watcher::Event::Delete(p) => {
                if let Some(uid) = p.metadata.uid.as_deref() {
                    inner.validity.remove(uid);
                }
                if let Some(ns) = p.metadata.namespace.as_deref()
                    && let Some(set) = inner.live.get_mut(ns)
                {
                    set.remove(&p.name_any());
                    if set.is_empty() {
                        inner.live.remove(ns);
                    }
                }
            }
            watcher::Event::Init => inner.relisting = Names::new(),
            watcher::Event::InitApply(p) => add(&mut inner.relisting, p),
            watcher::Event::InitDone => {
                inner.live = std::mem::take(&mut inner.relisting);
                self.ready.0.store(true, Ordering::SeqCst);
                self.ready.1.notify_waiters();
            }
        }
    }

    /// Waits until the index holds a complete list (before it, a namespace looks empty).
    pub async fn wait_until_ready(&self) {
        loop {
            let notified = self.ready.1.notified();
            if self.ready.0.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    /// Whether `p` is valid (`sluice_crd::validate::named_pipeline` finds nothing),
    /// remembered per uid and generation.
    pub fn valid(&self, p: &Pipeline) -> bool {
        let Some(uid) = p.metadata.uid.as_deref() else {
            return sluice_crd::validate::named_pipeline(&p.name_any(), &p.spec).is_empty();
        };
        let generation = p.metadata.generation;
        {
            let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
            if let Some((g, valid)) = inner.validity.get(uid)
                && *g == generation
            {
                return *valid;
            }
        }
        let valid = sluice_crd::validate::named_pipeline(&p.name_any(), &p.spec).is_empty();
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.validity.insert(uid.to_string(), (generation, valid));
        valid
    }

    /// The names of the pipelines in `namespace`.
    pub fn names(&self, namespace: &str) -> Vec<String> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner
            .live
            .get(namespace)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The pipelines of `namespace` in `store`, not being deleted.
    pub fn peers(&self, store: &Store<Pipeline>, namespace: &str) -> Vec<Arc<Pipeline>> {
        self.names(namespace)
            .into_iter()
            .filter_map(|name| store.get(&ObjectRef::new(&name).within(namespace)))
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect()
    }
}

/// A fingerprint of what a tenant's status depends on in one of its pipelines: its spec
/// (generation), whether it is being deleted, and its admission decision.
pub fn tenant_relevant(p: &Pipeline) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    p.metadata.generation.hash(&mut h);
    p.metadata.deletion_timestamp.is_some().hash(&mut h);
    p.status
        .as_ref()
        .and_then(|s| sluice_crd::condition::find(&s.conditions, ConditionType::Accepted))
        .map(|c| (c.holds(), c.reason.clone()))
        .hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(ns: &str, name: &str) -> Pipeline {
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"source": {"stream": "s"}, "sinks": [{"name": "a", "nats": {"subject": "x"}}]}
        }))
        .unwrap()
    }

    #[test]
    fn follows_applies_deletes_and_relists() {
        let idx = ByNamespace::default();
        idx.observe(&watcher::Event::Apply(p("a", "one")));
        idx.observe(&watcher::Event::Apply(p("a", "two")));
        idx.observe(&watcher::Event::Apply(p("b", "three")));
        assert_eq!(idx.names("a"), vec!["one", "two"]);
        idx.observe(&watcher::Event::Delete(p("a", "one")));
        assert_eq!(idx.names("a"), vec!["two"]);
        // A re-list replaces everything once it is complete.
        idx.observe(&watcher::Event::Init);
        idx.observe(&watcher::Event::InitApply(p("c", "four")));
        assert_eq!(
            idx.names("a"),
            vec!["two"],
            "the old view holds until InitDone"
        );
        idx.observe(&watcher::Event::InitDone);
        assert!(idx.names("a").is_empty());
        assert!(idx.names("b").is_empty());
        assert_eq!(idx.names("c"), vec!["four"]);
    }

    #[tokio::test]
    async fn ready_after_the_first_complete_list() {
        let idx = ByNamespace::default();
        let waiting = tokio::spawn({
            let idx = idx.clone();
            async move { idx.wait_until_ready().await }
        });
        idx.observe(&watcher::Event::Init);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        idx.observe(&watcher::Event::InitDone);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("ready")
            .expect("task");
    }

    #[test]
    fn tenant_relevance_ignores_route_status() {
        let a = p("a", "one");
        let mut b = a.clone();
        b.status = Some(sluice_crd::PipelineStatus {
            ready_replicas: 3,
            ..Default::default()
        });
        assert_eq!(tenant_relevant(&a), tenant_relevant(&b));
        b.metadata.generation = Some(2);
        assert_ne!(tenant_relevant(&a), tenant_relevant(&b));
    }
}
