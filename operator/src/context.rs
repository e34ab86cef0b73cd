//! What every reconcile shares.

use crate::config::OperatorConfig;
use crate::metrics::Metrics;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use sluice_crd::{Pipeline, Tenant};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

/// Shared state of the controllers.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// Platform settings.
    pub config: OperatorConfig,
    /// Metrics.
    pub metrics: Metrics,
    /// Who publishes the Events.
    pub reporter: Reporter,
    /// Every Pipeline, as the pipeline controller sees them.
    pub pipelines: Store<Pipeline>,
    /// The names of the Pipelines of each namespace (kept with `pipelines`).
    pub pipelines_by_namespace: crate::pipeline::index::ByNamespace,
    /// Every Tenant, as the pipeline controller sees them (its Tenant trigger feeds it).
    pub tenants: Store<Tenant>,
    /// The broker holding the streams' events.
    pub broker: Arc<dyn crate::stream::broker::Broker>,
    /// Asks the pipeline controller to reconcile a pipeline (used when an admission decision
    /// about a peer changed).
    pub requeue: UnboundedSender<ObjectRef<Pipeline>>,
}

impl Context {
    /// Publishes an Event about `reference`; failures are logged, never fatal.
    pub async fn event(
        &self,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        // Events are recorded on transitions only, so there is no series to aggregate: a fresh
        // recorder per Event keeps kube's recorder cache (scanned at every publish, and never
        // smaller than the number of objects with recent Events) from growing with the cluster.
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        if let Err(e) = recorder.publish(&ev, reference).await {
            tracing::warn!(error = %e, reason, "cannot publish event");
        } else {
            self.metrics.writes.with_label_values(&["Event"]).inc();
        }
    }
}
