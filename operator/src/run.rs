//! Wiring: the controllers, leader election, the metrics server, shutdown.

use crate::config::OperatorConfig;
use crate::context::Context;
use crate::error::Error;
use crate::leader::{self, LeaseConfig};
use crate::metrics::Metrics;
use crate::{http, pipeline, reconcile, stream, tenant};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, predicates, reflector, watcher};
use kube::{Api, Client, ResourceExt};
use sluice_core::names;
use sluice_crd::{Pipeline, Stream, Tenant};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio_stream::wrappers::UnboundedReceiverStream;

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

/// Runs the operator until `shutdown` resolves (or the lease is lost).
pub async fn run(
    client: Client,
    opts: RunOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let registry = prometheus::Registry::new();
    let metrics = Metrics::new(&registry)?;
    let accounts = match &opts.config.broker_auth {
        Some(auth) => Some(Arc::new(crate::accounts::Accounts::new(
            &opts.config.nats_url,
            auth,
            opts.config.broker_tls.as_ref(),
        )?)),
        None => None,
    };
    let ready = Arc::new(AtomicBool::new(false));
    let stop = Stop::on(shutdown);
    if let Some(addr) = opts.metrics_addr {
        serve_probes(addr, registry, ready.clone(), &stop).await?;
    }
    if let Some(lease) = &opts.leader_election {
        // A standby is ready: it is healthy and waits for its turn.
        ready.store(true, Ordering::SeqCst);
        tokio::select! {
            _ = leader::acquire(&client, lease) => {}
            _ = stop.stopped() => return Ok(()),
        }
        metrics.leader.set(1);
    }
    let controllers = controllers(&client, &opts, accounts, &metrics, &stop);
    ready.store(true, Ordering::SeqCst);
    tracing::info!("controllers running");
    match &opts.leader_election {
        Some(lease) => run_as_leader(&client, lease, controllers, &metrics, &stop).await,
        None => {
            controllers.await;
            Ok(())
        }
    }
}

/// When the operator stops: on the shutdown signal, or when it loses the lease.
#[derive(Clone)]
struct Stop(tokio::sync::watch::Sender<bool>);

impl Stop {
    /// Stops when `shutdown` resolves.
    fn on(shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        let stop = Stop(tokio::sync::watch::channel(false).0);
        tokio::spawn({
            let stop = stop.clone();
            async move {
                shutdown.await;
                stop.stop();
            }
        });
        stop
    }

    /// Stops now.
    fn stop(&self) {
        self.0.send_replace(true);
    }

    /// Resolves once stopped.
    fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + use<> {
        let mut rx = self.0.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until stopped.
async fn serve_probes(
    addr: SocketAddr,
    registry: prometheus::Registry,
    ready: Arc<AtomicBool>,
    stop: &Stop,
) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Listen(addr, e))?;
    tracing::info!(addr = %listener.local_addr().map_err(|e| Error::Listen(addr, e))?, "metrics listening");
    let app = http::router(http::Probe { registry, ready });
    let stopped = stop.stopped();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await;
    });
    Ok(())
}

/// Runs `controllers` while holding `lease`; stops them, and fails, when the lease is lost.
/// A leader that stops cleanly releases the lease, so a standby takes over at once.
async fn run_as_leader(
    client: &Client,
    lease: &LeaseConfig,
    controllers: impl std::future::Future<Output = ()>,
    metrics: &Metrics,
    stop: &Stop,
) -> Result<(), Error> {
    let lost = tokio::select! {
        _ = controllers => false,
        _ = leader::hold(client, lease) => true,
    };
    metrics.leader.set(0);
    if lost {
        stop.stop();
        return Err(Error::LostLease);
    }
    leader::release(client, lease).await;
    Ok(())
}

/// The three controllers and the phase gauge, sharing one [`Context`], until stopped.
fn controllers(
    client: &Client,
    opts: &RunOptions,
    accounts: Option<Arc<crate::accounts::Accounts>>,
    metrics: &Metrics,
    stop: &Stop,
) -> impl std::future::Future<Output = ()> + use<> {
    let (requeue_tx, requeue_rx) = tokio::sync::mpsc::unbounded_channel::<ObjectRef<Pipeline>>();
    let (tenant_tx, tenant_rx) = tokio::sync::mpsc::unbounded_channel::<ObjectRef<Tenant>>();
    let (store, pipeline_writer) = reflector::store::<Pipeline>();
    let by_namespace = pipeline::index::ByNamespace::default();
    let pipeline_events = pipeline_events(
        client,
        pipeline_writer,
        &store,
        &by_namespace,
        requeue_tx.clone(),
        tenant_tx,
    );
    // The Tenants, as the pipelines see them: a store for the reconciles, and a trigger when a
    // tenant's spec changes (its status changes no pipeline).
    let (tenants, tenant_writer) = reflector::store::<Tenant>();
    let tenant_changes = reflector(
        tenant_writer,
        watcher(
            Api::<Tenant>::all(client.clone()),
            watcher::Config::default(),
        ),
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
        broker: Arc::new(stream::broker::Brokers {
            nats: Arc::new(
                stream::broker::JetStream::new(&opts.config.nats_url, accounts.clone())
                    .with_tls(opts.config.broker_tls.clone()),
            ),
            kafka: kafka_topics(&opts.config),
        }),
        accounts,
        requeue: requeue_tx,
    });
    let pipelines = pipeline_controller(
        Controller::for_stream(pipeline_events, store.clone()),
        &ctx,
        tenant_changes,
        requeue_rx,
        by_namespace,
        stop,
    );
    let tenants = tenant_controller(&ctx, tenant_rx, stop);
    let streams = stream_controller(&ctx, stop);
    let phases = count_phases(store, metrics.clone(), stop.stopped());
    async move {
        tokio::join!(pipelines, tenants, streams, phases);
    }
}

/// The Kafka cluster of the platform, if it has one. A client that cannot be made (a bad
/// property) is logged, and Kafka Streams are then refused as on a platform without Kafka.
fn kafka_topics(config: &crate::config::OperatorConfig) -> Option<Arc<dyn stream::broker::Broker>> {
    let kafka = config.kafka.as_ref()?;
    match stream::kafka::KafkaTopics::new(&kafka.bootstrap_servers, &kafka.properties) {
        Ok(topics) => Some(Arc::new(topics)),
        Err(e) => {
            tracing::error!(error = %e, "no Kafka client: Kafka streams are refused");
            None
        }
    }
}

/// Only the children the operator labels as its own are watched.
fn owned() -> watcher::Config {
    watcher::Config::default().labels(&format!(
        "{}={}",
        names::LABEL_MANAGED_BY,
        names::MANAGED_BY
    ))
}

/// One watch of the Pipelines feeds the store, the per-namespace index, and the Tenant
/// controller's trigger (only when something a tenant's status counts changed); a deleted
/// pipeline makes room, so its peers refused for quota are looked at again.
fn pipeline_events(
    client: &Client,
    writer: reflector::store::Writer<Pipeline>,
    store: &Store<Pipeline>,
    by_namespace: &pipeline::index::ByNamespace,
    requeue: UnboundedSender<ObjectRef<Pipeline>>,
    tenant_trigger: UnboundedSender<ObjectRef<Tenant>>,
) -> impl futures::Stream<Item = Result<Pipeline, watcher::Error>> + Send + use<> {
    let by_namespace = by_namespace.clone();
    let store = store.clone();
    let mut seen = std::collections::HashMap::<ObjectRef<Pipeline>, u64>::new();
    reflector(
        writer,
        watcher(
            Api::<Pipeline>::all(client.clone()),
            watcher::Config::default(),
        ),
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
            let peers = by_namespace.peers(&store, ns);
            for q in pipeline::admission::refused_for_quota(&peers) {
                let _ = requeue.send(ObjectRef::from_obj(q));
            }
            true
        } else {
            let fingerprint = pipeline::index::tenant_relevant(p);
            seen.insert(key, fingerprint) != Some(fingerprint)
        };
        if changed && let Some(t) = names::tenant_of_namespace(ns) {
            let _ = tenant_trigger.send(ObjectRef::new(t));
        }
    })
    .applied_objects()
}

/// The Pipeline controller: its routes' objects, a tenant's spec change (all its pipelines),
/// Streams (the pipelines reading or dead-lettering to them) and requeues from admission.
fn pipeline_controller<T>(
    pipelines: Controller<Pipeline>,
    ctx: &Arc<Context>,
    tenant_changes: T,
    requeue: UnboundedReceiver<ObjectRef<Pipeline>>,
    by_namespace: pipeline::index::ByNamespace,
    stop: &Stop,
) -> impl std::future::Future<Output = ()> + use<T>
where
    T: futures::Stream<Item = Result<Tenant, watcher::Error>> + Send + 'static,
{
    let client = &ctx.client;
    let store = ctx.pipelines.clone();
    pipeline::route::watch(pipelines, client, &owned())
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
        .watches(
            Api::<Stream>::all(client.clone()),
            watcher::Config::default(),
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
            },
        )
        .reconcile_on(UnboundedReceiverStream::new(requeue))
        .with_config(controller::Config::default().concurrency(PIPELINE_CONCURRENCY))
        .graceful_shutdown_on(stop.stopped())
        .run(
            pipeline::reconcile,
            reconcile::error_policy::<Pipeline>,
            ctx.clone(),
        )
        .for_each(log_failure)
}

/// The Tenant controller: its children, its pipelines (through `trigger`) and its Streams.
fn tenant_controller(
    ctx: &Arc<Context>,
    trigger: UnboundedReceiver<ObjectRef<Tenant>>,
    stop: &Stop,
) -> impl std::future::Future<Output = ()> + use<> {
    let client = &ctx.client;
    let cfg = watcher::Config::default();
    let owned = owned();
    Controller::new(Api::<Tenant>::all(client.clone()), cfg.clone())
        .owns(Api::<Namespace>::all(client.clone()), owned.clone())
        .owns(Api::<ResourceQuota>::all(client.clone()), owned.clone())
        .owns(Api::<LimitRange>::all(client.clone()), owned.clone())
        .owns(Api::<NetworkPolicy>::all(client.clone()), owned.clone())
        .owns(Api::<ServiceAccount>::all(client.clone()), owned.clone())
        .owns(Api::<RoleBinding>::all(client.clone()), owned)
        .reconcile_on(UnboundedReceiverStream::new(trigger))
        .watches(Api::<Stream>::all(client.clone()), cfg, |s| {
            s.namespace()
                .as_deref()
                .and_then(names::tenant_of_namespace)
                .map(ObjectRef::<Tenant>::new)
        })
        .with_config(controller::Config::default().concurrency(TENANT_CONCURRENCY))
        .graceful_shutdown_on(stop.stopped())
        .run(
            tenant::reconcile,
            reconcile::error_policy::<Tenant>,
            ctx.clone(),
        )
        .for_each(log_failure)
}

/// The Stream controller: a tenant's change reconciles its streams (its quota, its refusal).
fn stream_controller(
    ctx: &Arc<Context>,
    stop: &Stop,
) -> impl std::future::Future<Output = ()> + use<> {
    let client = &ctx.client;
    let cfg = watcher::Config::default();
    let streams = Controller::new(Api::<Stream>::all(client.clone()), cfg.clone());
    let stream_store = streams.store();
    streams
        .watches(Api::<Tenant>::all(client.clone()), cfg, move |t| {
            let ns = names::tenant_namespace(&t.name_any());
            stream_store
                .state()
                .into_iter()
                .filter(move |s| s.namespace().as_deref() == Some(ns.as_str()))
                .map(|s| ObjectRef::from_obj(s.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(stop.stopped())
        .run(
            stream::reconcile,
            reconcile::error_policy::<Stream>,
            ctx.clone(),
        )
        .for_each(log_failure)
}

/// Logs a reconcile that failed (`error_policy` has counted it and retries it).
async fn log_failure<T, E: std::fmt::Display>(result: Result<T, E>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "controller");
    }
}

/// The phases every pipeline reports.
const PHASES: [&str; 6] = [
    "Pending",
    "Running",
    "Degraded",
    "Suspended",
    "Failed",
    "Unknown",
];

/// Sets `sluice_operator_pipelines{phase}` from the pipeline store every 5 s, until stopped.
async fn count_phases(
    store: Store<Pipeline>,
    metrics: Metrics,
    stop: impl std::future::Future<Output = ()>,
) {
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
            for phase in PHASES {
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
