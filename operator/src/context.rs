//! What every reconcile shares.

use crate::config::OperatorConfig;
use crate::metrics::Metrics;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use sluice_crd::Pipeline;
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
    /// Publishes Events.
    pub recorder: Recorder,
    /// Every Pipeline, as the pipeline controller sees them.
    pub pipelines: Store<Pipeline>,
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
        if let Err(e) = self.recorder.publish(&ev, reference).await {
            tracing::warn!(error = %e, reason, "cannot publish event");
        } else {
            self.metrics.writes.with_label_values(&["Event"]).inc();
        }
    }
}
