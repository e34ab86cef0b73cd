//! The supervisor of one route Deployment: it runs `spec.replicas` worker processes with the
//! route's config, restarts crashed ones with backoff, replaces them all when the config hash
//! on the pod template changes, and writes what it observes into the Deployment's status.

use super::DevError;
use super::paths::DataDir;
use super::secrets;
use super::status::{self, Observed};
use super::worker::Worker;
use futures::future::join_all;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use sluice_core::names;
use sluice_core::route::CONFIG_KEY;
use sluice_operator::pipeline::desired::CONFIG_HASH_ANNOTATION;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the supervisor looks at its workers when nothing else happens.
const TICK: Duration = Duration::from_secs(1);
/// Consecutive crashes after which the rollout counts as failed.
const CRASH_LOOP: u32 = 3;
/// A worker that ran this long before exiting was not crash-looping.
const STABLE: Duration = Duration::from_secs(60);

/// What every supervisor shares.
pub struct Shared {
    /// The Kubernetes client.
    pub client: Client,
    /// The data directory.
    pub data: DataDir,
    /// The `sluice-worker` binary.
    pub worker_bin: PathBuf,
    /// For readiness probes.
    pub http: reqwest::Client,
}

/// One replica's place.
#[derive(Debug, Default)]
struct Slot {
    worker: Option<Worker>,
    crashes: u32,
    restart_at: Option<Instant>,
}

/// The config the workers run.
#[derive(Debug)]
struct Loaded {
    hash: String,
    path: PathBuf,
}

/// Supervises the workers of one Deployment.
pub struct Route {
    shared: Arc<Shared>,
    namespace: String,
    name: String,
    slots: BTreeMap<i32, Slot>,
    config: Option<Loaded>,
    hash_mismatches: u32,
    last_error: Option<String>,
    /// Why the Deployment's current configuration is refused, if it is.
    failure: Option<String>,
    last_status: Option<Value>,
}

/// Runs the supervisor until the Deployment is deleted (`None` in `rx`: its workers stop) or
/// `stop` is cancelled (shutdown: the workers drain, and the status says none runs).
pub async fn supervise(
    shared: Arc<Shared>,
    namespace: String,
    name: String,
    mut rx: watch::Receiver<Option<Deployment>>,
    stop: CancellationToken,
) {
    let mut route = Route {
        last_status: rx
            .borrow()
            .as_ref()
            .and_then(|d| d.status.as_ref())
            .and_then(|s| serde_json::to_value(s).ok()),
        shared,
        namespace,
        name,
        slots: BTreeMap::new(),
        config: None,
        hash_mismatches: 0,
        last_error: None,
        failure: None,
    };
    let last = loop {
        let current = rx.borrow_and_update().clone();
        let Some(deployment) = current else {
            tracing::info!(route = %route.key(), "deployment deleted: stopping its workers");
            route.stop_all().await;
            return;
        };
        route.step(&deployment).await;
        tokio::select! {
            _ = stop.cancelled() => break deployment,
            changed = rx.changed() => if changed.is_err() { break deployment },
            _ = tokio::time::sleep(TICK) => {}
        }
    };
    route.stop_all().await;
    let generation = last.metadata.generation.unwrap_or(0);
    route
        .write_status(
            &last,
            Observed {
                generation,
                desired: last.spec.replicas.unwrap_or(1),
                running: 0,
                ready: 0,
                updated: 0,
                crash_looping: false,
                failure: route.failure.clone(),
            },
        )
        .await;
}

impl Route {
    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    async fn step(&mut self, d: &Deployment) {
        let desired = d.spec.replicas.unwrap_or(1).max(0);
        let generation = d.metadata.generation.unwrap_or(0);
        let hash = template_annotation(d, CONFIG_HASH_ANNOTATION).unwrap_or_default();
        if self.config.as_ref().map(|c| &c.hash) != Some(&hash) {
            match self.load_config(d, &hash).await {
                Ok(Some(loaded)) => {
                    self.config = Some(loaded);
                    self.last_error = None;
                    self.failure = None;
                }
                Ok(None) => {}
                Err(DevError::Escape(e)) => {
                    // Workers of an earlier, accepted configuration keep running.
                    self.failure = Some(format!("the route configuration is refused: {e}"));
                    self.report(DevError::Escape(e));
                }
                Err(e) => self.report(e),
            }
        }
        self.reap();
        self.stop_outdated(desired).await;
        self.start_missing(d, desired).await;
        let observed = self.observe(generation, desired).await;
        self.write_status(d, observed).await;
    }

    fn report(&mut self, e: DevError) {
        let text = e.to_string();
        if self.last_error.as_deref() != Some(&text) {
            tracing::warn!(route = %self.key(), "{text}");
            self.last_error = Some(text);
        }
    }

    /// Reads the route's ConfigMap and writes its config, made local, to the route directory.
    /// `None` while the ConfigMap does not (yet) match the hash on the pod template.
    async fn load_config(
        &mut self,
        d: &Deployment,
        hash: &str,
    ) -> Result<Option<Loaded>, DevError> {
        let cm_name = template_volumes(d)
            .iter()
            .find_map(|v| v.config_map.as_ref().map(|c| c.name.clone()))
            .unwrap_or_else(|| self.name.clone());
        let api: Api<ConfigMap> = Api::namespaced(self.shared.client.clone(), &self.namespace);
        let cm = api.get_opt(&cm_name).await?.ok_or_else(|| {
            DevError::Kube(format!(
                "configmap {}/{cm_name} does not exist (yet)",
                self.namespace
            ))
        })?;
        let text = cm
            .data
            .as_ref()
            .and_then(|d| d.get(CONFIG_KEY))
            .cloned()
            .ok_or_else(|| {
                DevError::Kube(format!(
                    "configmap {}/{cm_name} has no {CONFIG_KEY}",
                    self.namespace
                ))
            })?;
        // The operator writes the ConfigMap before the Deployment; a mismatch is a moment in
        // between (or an edit by hand, accepted after a few tries).
        let content_hash = format!("{:016x}", names::fnv1a(text.as_bytes()));
        if !hash.is_empty() && content_hash != hash && self.hash_mismatches < 3 {
            self.hash_mismatches += 1;
            return Ok(None);
        }
        self.hash_mismatches = 0;
        let mut config: Value = serde_json::from_str(&text).map_err(|e| {
            DevError::Kube(format!(
                "configmap {}/{cm_name}: {CONFIG_KEY}: {e}",
                self.namespace
            ))
        })?;
        let dir = self.shared.data.route(&self.namespace, &self.name);
        let files = self.shared.data.files(&self.namespace);
        if let Some(out) = secrets::localize(&mut config, &dir.join("secrets"), &files)? {
            if let Some(parent) = out.parent() {
                std::fs::create_dir_all(parent).map_err(DevError::io(parent))?;
            }
            tracing::info!(route = %self.key(), "file sink writes to {}", out.display());
        }
        let path = dir.join(CONFIG_KEY);
        let body = serde_json::to_vec_pretty(&config).unwrap_or_default();
        super::paths::write_private(&path, &body)?;
        Ok(Some(Loaded {
            hash: hash.to_string(),
            path,
        }))
    }

    /// Notices exited workers and schedules their restart with backoff.
    fn reap(&mut self) {
        let key = self.key();
        for (i, slot) in self.slots.iter_mut() {
            let Some(w) = slot.worker.as_mut() else {
                continue;
            };
            let Some(status) = w.exited() else { continue };
            let ran = w.started.elapsed();
            slot.crashes = if ran >= STABLE { 1 } else { slot.crashes + 1 };
            let backoff = backoff(slot.crashes);
            tracing::warn!(route = %key, replica = i, %status, "worker exited; restarting in {backoff:?} (log: {})",
                self.shared.data.logs().join(log_name(&self.namespace, &self.name, *i)).display());
            slot.worker = None;
            slot.restart_at = Some(Instant::now() + backoff);
        }
    }

    /// Drains the workers beyond `desired` and those running an old config.
    async fn stop_outdated(&mut self, desired: i32) {
        let current = self.config.as_ref().map(|c| c.hash.clone());
        let mut stopping = Vec::new();
        for (i, slot) in self.slots.iter_mut() {
            let outdated = slot
                .worker
                .as_ref()
                .is_some_and(|w| Some(&w.hash) != current.as_ref());
            if *i >= desired || outdated {
                if let Some(w) = slot.worker.take() {
                    stopping.push(w);
                }
                slot.crashes = 0;
                slot.restart_at = None;
            }
        }
        self.slots.retain(|i, _| *i < desired);
        if !stopping.is_empty() {
            tracing::info!(route = %self.key(), count = stopping.len(), "stopping workers");
            join_all(stopping.into_iter().map(Worker::stop)).await;
        }
    }

    async fn start_missing(&mut self, d: &Deployment, desired: i32) {
        let Some(config) = &self.config else { return };
        let now = Instant::now();
        let due: Vec<i32> = (0..desired)
            .filter(|i| {
                self.slots
                    .get(i)
                    .is_none_or(|s| s.worker.is_none() && s.restart_at.is_none_or(|at| at <= now))
            })
            .collect();
        if due.is_empty() {
            return;
        }
        let secret_names: Vec<String> = template_volumes(d)
            .iter()
            .filter_map(|v| v.secret.as_ref().and_then(|s| s.secret_name.clone()))
            .collect();
        let dir = self
            .shared
            .data
            .route(&self.namespace, &self.name)
            .join("secrets");
        if let Err(e) =
            secrets::materialise(&self.shared.client, &self.namespace, &secret_names, &dir).await
        {
            self.report(e);
            return;
        }
        let (hash, path) = (config.hash.clone(), config.path.clone());
        for i in due {
            let log = self
                .shared
                .data
                .logs()
                .join(log_name(&self.namespace, &self.name, i));
            let pid_file = self
                .shared
                .data
                .route(&self.namespace, &self.name)
                .join(format!("pids/{i}"));
            match Worker::spawn(&self.shared.worker_bin, &path, log, &hash, pid_file) {
                Ok(w) => {
                    tracing::info!(route = %self.key(), replica = i, pid = ?w.pid(), "worker started");
                    let slot = self.slots.entry(i).or_default();
                    slot.worker = Some(w);
                    slot.restart_at = None;
                }
                Err(e) => self.report(e),
            }
        }
    }

    async fn observe(&mut self, generation: i64, desired: i32) -> Observed {
        let current = self.config.as_ref().map(|c| c.hash.clone());
        let http = &self.shared.http;
        let probes = self.slots.iter().filter_map(|(i, s)| {
            let w = s.worker.as_ref()?;
            let updated = Some(&w.hash) == current.as_ref();
            Some(async move { (*i, w.ready(http).await, updated) })
        });
        let results = join_all(probes).await;
        // A replica whose worker became ready is not crash-looping.
        for (i, ready, _) in &results {
            if let Some(slot) = self.slots.get_mut(i).filter(|_| *ready) {
                slot.crashes = 0;
            }
        }
        let ready = results.iter().filter(|(_, r, _)| *r).count() as i32;
        Observed {
            generation,
            desired,
            running: results.len() as i32,
            ready,
            updated: results.iter().filter(|(_, _, u)| *u).count() as i32,
            crash_looping: ready < desired && self.slots.values().any(|s| s.crashes >= CRASH_LOOP),
            failure: self.failure.clone(),
        }
    }

    async fn write_status(&mut self, d: &Deployment, o: Observed) {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let name = d.metadata.name.clone().unwrap_or_default();
        let new = status::deployment_status(&name, &o, self.last_status.as_ref(), &now);
        if self
            .last_status
            .as_ref()
            .is_some_and(|old| status::essence(old) == status::essence(&new))
        {
            return;
        }
        let api: Api<Deployment> = Api::namespaced(self.shared.client.clone(), &self.namespace);
        match api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": new})),
            )
            .await
        {
            Ok(_) => self.last_status = Some(new),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                tracing::warn!(route = %self.key(), error = %e, "cannot write the deployment status")
            }
        }
    }

    async fn stop_all(&mut self) {
        let workers: Vec<Worker> = self
            .slots
            .values_mut()
            .filter_map(|s| s.worker.take())
            .collect();
        if !workers.is_empty() {
            tracing::info!(route = %self.key(), count = workers.len(), "draining workers");
        }
        join_all(workers.into_iter().map(Worker::stop)).await;
        self.slots.clear();
    }
}

/// Restart delay after `crashes` consecutive crashes: 1 s, doubling, at most 30 s.
pub fn backoff(crashes: u32) -> Duration {
    let exp = crashes.saturating_sub(1).min(5);
    Duration::from_secs(1u64 << exp).min(Duration::from_secs(30))
}

fn log_name(namespace: &str, name: &str, replica: i32) -> String {
    format!("{namespace}.{name}-{replica}.log")
}

fn template_annotation(d: &Deployment, key: &str) -> Option<String> {
    d.spec
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(key)
        .cloned()
}

fn template_volumes(d: &Deployment) -> Vec<k8s_openapi::api::core::v1::Volume> {
    d.spec
        .template
        .spec
        .as_ref()
        .and_then(|p| p.volumes.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_thirty_seconds() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(10), Duration::from_secs(30));
    }
}
