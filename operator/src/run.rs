//! Wiring: the controllers, leader election, the metrics server, shutdown.

use crate::config::OperatorConfig;
use crate::context::Context;
use crate::leader::{self, LeaseConfig};
use crate::metrics::Metrics;
use crate::{http, pipeline, stream, tenant};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, Namespace, ResourceQuota, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, predicates, reflector, watcher};
use kube::{Api, Client, ResourceExt};
use sluice_core::names;
use sluice_crd::{Pipeline, Stream, Tenant};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Pipeline reconciles running at once. Unbounded, a burst of thousands of new pipelines
/// opens as many API connections and holds as many requests in memory, for no more throughput.
pub const PIPELINE_CONCURRENCY: u16 = 32;

/// Tenant reconciles running at once.
pub const TENANT_CONCURRENCY: u16 = 16;

/// How the operator runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Platform settings.
    pub config: OperatorConfig,
    /// Where `/metrics`, `/healthz` and `/readyz` listen (`None`: not served, for tests).
    pub metrics_addr: Option<SocketAddr>,
    /// Leader election; `None` runs the controllers at once.
    pub leader_election: Option<LeaseConfig>,
}

/// Errors that stop the operator.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The metrics endpoint could not listen.
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// This replica lost the leader lease; it must stop (and be restarted) so that only one
    /// replica acts.
    #[error("lost the leader lease")]
    LostLease,
}

/// Runs the operator until `shutdown` resolves (or the lease is lost).
pub async fn run(
    client: Client,
    opts: RunOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let registry = prometheus::Registry::new();
    let metrics = Metrics::new(&registry)?;
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    tokio::spawn({
        let stop_tx = stop_tx.clone();
        async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        }
    });
    if let Some(addr) = opts.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| RunError::Listen(addr, e))?;
        tracing::info!(addr = %listener.local_addr().map_err(|e| RunError::Listen(addr, e))?, "metrics listening");
        let app = http::router(http::Probe {
            registry: registry.clone(),
            ready: ready.clone(),
        });
        let stop = stopped();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await;
        });
    }

    if let Some(lease) = &opts.leader_election {
        // A standby is ready: it is healthy and waits for its turn.
        ready.store(true, Ordering::SeqCst);
        tokio::select! {
            _ = leader::acquire(&client, lease) => {}
            _ = stopped() => return Ok(()),
        }
        metrics.leader.set(1);
    }

    let (requeue_tx, requeue_rx) = tokio::sync::mpsc::unbounded_channel::<ObjectRef<Pipeline>>();
    let cfg = watcher::Config::default();
    let owned = watcher::Config::default().labels(&format!(
        "{}={}",
        names::LABEL_MANAGED_BY,
        names::MANAGED_BY
    ));
    // One watch of the Pipelines feeds the store, the per-namespace index, and the Tenant
    // controller's trigger (only when something a tenant's status counts changed); a deleted
    // pipeline makes room, so its peers refused for quota are looked at again.
    let (store, pipeline_writer) = kube::runtime::reflector::store::<Pipeline>();
    let by_namespace = pipeline::index::ByNamespace::default();
    let (tenant_tx, tenant_rx) = tokio::sync::mpsc::unbounded_channel::<ObjectRef<Tenant>>();
    let pipeline_events = {
        let by_namespace = by_namespace.clone();
        let store = store.clone();
        let requeue = requeue_tx.clone();
        let mut seen = std::collections::HashMap::<ObjectRef<Pipeline>, u64>::new();
        reflector(
            pipeline_writer,
            watcher(Api::<Pipeline>::all(client.clone()), cfg.clone()),
        )
        .inspect_ok(move |event| {
            by_namespace.observe(event);
            let (p, deleted) = match event {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => (p, false),
                watcher::Event::Delete(p) => (p, true),
                _ => return,
            };
            let Some(ns) = p.metadata.namespace.as_deref() else {
                return;
            };
            let key = ObjectRef::from_obj(p);
            let changed = if deleted {
                seen.remove(&key);
                for q in by_namespace.peers(&store, ns) {
                    if pipeline::index::refused_for_quota(&q) {
                        let _ = requeue.send(ObjectRef::from_obj(q.as_ref()));
                    }
                }
                true
            } else {
                let fingerprint = pipeline::index::tenant_relevant(p);
                seen.insert(key, fingerprint) != Some(fingerprint)
            };
            if changed && let Some(t) = names::tenant_of_namespace(ns) {
                let _ = tenant_tx.send(ObjectRef::new(t));
            }
        })
        .applied_objects()
    };
    let pipelines = Controller::for_stream(pipeline_events, store.clone());
    // The Tenants, as the pipelines see them: a store for the reconciles, and a trigger when a
    // tenant's spec changes (its status changes no pipeline).
    let (tenants, tenant_writer) = kube::runtime::reflector::store::<Tenant>();
    let tenant_changes = reflector(
        tenant_writer,
        watcher(Api::<Tenant>::all(client.clone()), cfg.clone()),
    )
    .touched_objects()
    .predicate_filter(predicates::generation, Default::default());
    let ctx = Arc::new(Context {
        client: client.clone(),
        config: opts.config.clone(),
        metrics: metrics.clone(),
        reporter: Reporter {
            controller: "sluice-operator".into(),
            instance: opts.leader_election.as_ref().map(|l| l.identity.clone()),
        },
        pipelines: store.clone(),
        pipelines_by_namespace: by_namespace.clone(),
        tenants,
        broker: Arc::new(stream::broker::JetStream::new(&opts.config.nats_url)),
        requeue: requeue_tx,
    });
    let pipeline_controller = pipelines
        .owns(Api::<Deployment>::all(client.clone()), owned.clone())
        .owns(Api::<ConfigMap>::all(client.clone()), owned.clone())
        .owns(Api::<Service>::all(client.clone()), owned.clone())
        .owns(
            Api::<PodDisruptionBudget>::all(client.clone()),
            owned.clone(),
        )
        .watches_stream(tenant_changes, move |t| {
            let ns = names::tenant_namespace(&t.name_any());
            by_namespace
                .names(&ns)
                .into_iter()
                .map(move |name| ObjectRef::new(&name).within(&ns))
                .collect::<Vec<_>>()
        })
        // A pipeline waiting for its source stream starts when the stream appears; one
        // degraded for want of its dead-letter stream recovers when that one appears.
        .watches(Api::<Stream>::all(client.clone()), cfg.clone(), {
            let store = store.clone();
            move |s| {
                let ns = s.namespace();
                let name = s.name_any();
                store
                    .state()
                    .into_iter()
                    .filter(move |p| {
                        let dead_letter = p.spec.dead_letter.as_ref().map(|d| &d.stream);
                        p.namespace() == ns
                            && (p.spec.source.stream == name || dead_letter == Some(&name))
                    })
                    .map(|p| ObjectRef::from_obj(p.as_ref()))
                    .collect::<Vec<_>>()
            }
        })
        .reconcile_on(tokio_stream::wrappers::UnboundedReceiverStream::new(
            requeue_rx,
        ))
        .with_config(controller::Config::default().concurrency(PIPELINE_CONCURRENCY))
        .graceful_shutdown_on(stopped())
        .run(pipeline::reconcile, pipeline::error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "pipeline controller");
            }
        });
    let tenant_controller = Controller::new(Api::<Tenant>::all(client.clone()), cfg.clone())
        .owns(Api::<Namespace>::all(client.clone()), owned.clone())
        .owns(Api::<ResourceQuota>::all(client.clone()), owned.clone())
        .owns(Api::<LimitRange>::all(client.clone()), owned.clone())
        .owns(Api::<NetworkPolicy>::all(client.clone()), owned.clone())
        .owns(Api::<ServiceAccount>::all(client.clone()), owned.clone())
        .owns(Api::<RoleBinding>::all(client.clone()), owned.clone())
        .reconcile_on(tokio_stream::wrappers::UnboundedReceiverStream::new(
            tenant_rx,
        ))
        .watches(Api::<Stream>::all(client.clone()), cfg.clone(), |s| {
            s.namespace()
                .as_deref()
                .and_then(names::tenant_of_namespace)
                .map(ObjectRef::<Tenant>::new)
        })
        .with_config(controller::Config::default().concurrency(TENANT_CONCURRENCY))
        .graceful_shutdown_on(stopped())
        .run(tenant::reconcile, tenant::error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "tenant controller");
            }
        });
    let streams = Controller::new(Api::<Stream>::all(client.clone()), cfg.clone());
    let stream_store = streams.store();
    let stream_controller = streams
        .watches(Api::<Tenant>::all(client.clone()), cfg.clone(), move |t| {
            let ns = names::tenant_namespace(&t.name_any());
            stream_store
                .state()
                .into_iter()
                .filter(move |s| s.namespace().as_deref() == Some(ns.as_str()))
                .map(|s| ObjectRef::from_obj(s.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(stopped())
        .run(stream::reconcile, stream::error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "stream controller");
            }
        });
    let phases = {
        let store = store.clone();
        let metrics = metrics.clone();
        let stop = stopped();
        async move {
            let count = async {
                loop {
                    let mut counts = std::collections::BTreeMap::<String, i64>::new();
                    for p in store.state() {
                        let phase = p
                            .status
                            .as_ref()
                            .and_then(|s| s.phase)
                            .map(|ph| format!("{ph:?}"))
                            .unwrap_or_else(|| "Unknown".into());
                        *counts.entry(phase).or_default() += 1;
                    }
                    for phase in [
                        "Pending",
                        "Running",
                        "Degraded",
                        "Suspended",
                        "Failed",
                        "Unknown",
                    ] {
                        metrics
                            .pipelines_by_phase
                            .with_label_values(&[phase])
                            .set(counts.get(phase).copied().unwrap_or(0));
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                }
            };
            tokio::select! { _ = count => {}, _ = stop => {} }
        }
    };
    ready.store(true, Ordering::SeqCst);
    tracing::info!("controllers running");
    let controllers = async {
        tokio::join!(
            pipeline_controller,
            tenant_controller,
            stream_controller,
            phases
        );
    };
    match &opts.leader_election {
        Some(lease) => {
            let lost = tokio::select! {
                _ = controllers => false,
                _ = leader::hold(&client, lease) => true,
            };
            metrics.leader.set(0);
            if lost {
                let _ = stop_tx.send(true);
                return Err(RunError::LostLease);
            }
            leader::release(&client, lease).await;
        }
        None => controllers.await,
    }
    Ok(())
}
