//! What the three controllers share around their reconciles: which controller an object
//! belongs to, writing its status (only when it changed) with an Event per condition that
//! flipped, and one retry policy. Applying and pruning children is in `children.rs`.

use crate::children::{self, Child, FIELD_MANAGER};
use crate::conditions;
use crate::context::Context;
use crate::error::Error;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use kube::core::object::HasStatus;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use serde::Serialize;
use sluice_crd::{Condition, Pipeline, PipelineStatus, Stream, StreamStatus, Tenant, TenantStatus};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

/// A kind of object one of the controllers reconciles.
pub trait Reconciled: Child + HasStatus<Status: ObjectStatus> {
    /// The controller's name in metrics and logs.
    const CONTROLLER: &'static str;

    /// The note of the Event recorded when `c` flips.
    fn event_note(c: &Condition) -> String {
        c.message.clone().unwrap_or_default()
    }
}

/// The status of a reconciled object.
pub trait ObjectStatus: Serialize + PartialEq + Clone + Default + Debug + Send + Sync {
    /// Its conditions.
    fn conditions(&self) -> &[Condition];
}

impl Reconciled for Pipeline {
    const CONTROLLER: &'static str = "pipeline";

    fn event_note(c: &Condition) -> String {
        format!("{}: {}", c.type_, c.message.as_deref().unwrap_or_default())
    }
}

impl Reconciled for Tenant {
    const CONTROLLER: &'static str = "tenant";
}

impl Reconciled for Stream {
    const CONTROLLER: &'static str = "stream";
}

impl ObjectStatus for PipelineStatus {
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
}

impl ObjectStatus for TenantStatus {
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
}

impl ObjectStatus for StreamStatus {
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
}

/// The status `object` has now (empty when it has none yet).
pub fn current_status<K: Reconciled>(object: &K) -> K::Status {
    object.status().cloned().unwrap_or_default()
}

/// Writes `next` as the status of `object` (server-side apply on the status subresource) when
/// it differs from the current one, and records an Event for each condition that flipped.
pub async fn write_status<K: Reconciled>(
    ctx: &Context,
    object: &K,
    next: &K::Status,
) -> Result<(), Error> {
    let previous = current_status(object);
    if *next == previous {
        return Ok(());
    }
    let name = object.name_any();
    let namespace = object.namespace().unwrap_or_default();
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": next,
    });
    children::api::<K>(&ctx.client, &namespace)
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    ctx.count_write(&format!("{}Status", K::kind(&())));
    let reference = object.object_ref(&());
    for c in conditions::transitions(previous.conditions(), next.conditions()) {
        let reason = c.reason.as_deref().unwrap_or(&c.type_);
        publish_event(
            ctx,
            &reference,
            conditions::warns(c),
            reason,
            K::event_note(c),
        )
        .await;
    }
    Ok(())
}

/// Publishes an Event about `reference`; failures are logged, never fatal.
async fn publish_event(
    ctx: &Context,
    reference: &ObjectReference,
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
    let recorder = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
    if let Err(e) = recorder.publish(&ev, reference).await {
        tracing::warn!(error = %e, reason, "cannot publish event");
    } else {
        ctx.count_write("Event");
    }
}

/// How long to wait before retrying after `error`: 1 s after a write conflict (someone else
/// wrote first; the next attempt reads their version), 5 s otherwise.
pub fn retry_after(error: &Error) -> Duration {
    Duration::from_secs(if error.metric_label() == "conflict" {
        1
    } else {
        5
    })
}

/// Retry policy of every controller after a failed reconcile: count the error, log it, back
/// off; never crash.
pub fn error_policy<K: Reconciled>(object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .errors
        .with_label_values(&[K::CONTROLLER, error.metric_label()])
        .inc();
    tracing::warn!(
        controller = K::CONTROLLER,
        name = %object.name_any(),
        namespace = object.namespace().unwrap_or_default(),
        error = %error,
        "reconcile failed; retrying"
    );
    Action::requeue(retry_after(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_are_retried_sooner() {
        let status = |code| {
            Error::Kube(kube::Error::Api(
                kube::core::Status::failure("x", "y")
                    .with_code(code)
                    .boxed(),
            ))
        };
        assert_eq!(retry_after(&status(409)), Duration::from_secs(1));
        assert_eq!(retry_after(&status(500)), Duration::from_secs(5));
        assert_eq!(
            retry_after(&Error::MissingField("metadata.namespace")),
            Duration::from_secs(5)
        );
    }
}
