//! What every reconcile shares.

use crate::config::OperatorConfig;
use crate::metrics::Metrics;
use kube::Client;
use kube::runtime::events::Reporter;
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
    /// The tenants' accounts at the broker, when it runs in operator mode.
    pub accounts: Option<Arc<crate::accounts::Accounts>>,
    /// Asks the pipeline controller to reconcile a pipeline (used when an admission decision
    /// about a peer changed).
    pub requeue: UnboundedSender<ObjectRef<Pipeline>>,
}

impl Context {
    /// Counts one write of `kind` to the Kubernetes API.
    pub fn count_write(&self, kind: &str) {
        self.metrics.writes.with_label_values(&[kind]).inc();
    }
}
