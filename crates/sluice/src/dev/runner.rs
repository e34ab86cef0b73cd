//! The local runner that plays the kubelet: it watches the route Deployments and keeps one
//! supervisor ([`super::route`]) per Deployment, which runs its `sluice-worker` processes.

use super::route::{self, Shared};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use sluice_core::names;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

type Key = (String, String);

struct Supervised {
    tx: watch::Sender<Option<Deployment>>,
    task: JoinHandle<()>,
}

/// Runs until `stop` is cancelled, then drains every worker and returns.
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let api: Api<Deployment> = Api::all(shared.client.clone());
    let selector = format!(
        "{}={},{}=sluice-worker",
        names::LABEL_MANAGED_BY,
        names::MANAGED_BY,
        names::LABEL_NAME
    );
    let mut events = watcher::watcher(api, watcher::Config::default().labels(&selector))
        .default_backoff()
        .boxed();
    let mut routes: BTreeMap<Key, Supervised> = BTreeMap::new();
    // Supervisors of deleted Deployments, still stopping their workers.
    let mut retired: Vec<JoinHandle<()>> = Vec::new();
    let mut listed: Option<BTreeSet<Key>> = None;
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => break,
            e = events.next() => e,
        };
        match event {
            None => break,
            Some(Err(e)) => tracing::debug!(error = %e, "deployment watch (retrying)"),
            Some(Ok(Event::Init)) => listed = Some(BTreeSet::new()),
            Some(Ok(Event::InitApply(d))) => {
                if let Some(l) = listed.as_mut() {
                    l.insert(key_of(&d));
                }
                apply(&shared, &mut routes, &mut retired, &stop, d);
            }
            Some(Ok(Event::InitDone)) => {
                // Deployments deleted while the watch was re-listing.
                if let Some(seen) = listed.take() {
                    let gone: Vec<Key> = routes
                        .keys()
                        .filter(|k| !seen.contains(*k))
                        .cloned()
                        .collect();
                    for k in gone {
                        remove(&mut routes, &mut retired, &k);
                    }
                }
            }
            Some(Ok(Event::Apply(d))) => apply(&shared, &mut routes, &mut retired, &stop, d),
            Some(Ok(Event::Delete(d))) => remove(&mut routes, &mut retired, &key_of(&d)),
        }
    }
    // Shutdown: every supervisor sees `stop` and drains its workers.
    stop.cancel();
    let tasks = routes.into_values().map(|s| s.task).chain(retired);
    for task in tasks {
        let _ = task.await;
    }
}

fn key_of(d: &Deployment) -> Key {
    (d.namespace().unwrap_or_default(), d.name_any())
}

fn apply(
    shared: &Arc<Shared>,
    routes: &mut BTreeMap<Key, Supervised>,
    retired: &mut Vec<JoinHandle<()>>,
    stop: &CancellationToken,
    d: Deployment,
) {
    let key = key_of(&d);
    if d.metadata.deletion_timestamp.is_some() {
        remove(routes, retired, &key);
        return;
    }
    if let Some(s) = routes.get(&key)
        && !s.task.is_finished()
    {
        s.tx.send_replace(Some(d));
        return;
    }
    let (tx, rx) = watch::channel(Some(d));
    let task = tokio::spawn(route::supervise(
        shared.clone(),
        key.0.clone(),
        key.1.clone(),
        rx,
        stop.child_token(),
    ));
    routes.insert(key, Supervised { tx, task });
}

fn remove(routes: &mut BTreeMap<Key, Supervised>, retired: &mut Vec<JoinHandle<()>>, key: &Key) {
    if let Some(s) = routes.remove(key) {
        // The supervisor stops its workers and ends on its own.
        s.tx.send_replace(None);
        retired.push(s.task);
    }
    retired.retain(|t| !t.is_finished());
}
