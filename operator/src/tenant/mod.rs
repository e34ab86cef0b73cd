//! The Tenant controller: fetch → validate → build the namespace and its guard rails (pure,
//! `desired`) → apply → prune → status (usage against each limit).

pub mod desired;

use crate::children::{self, FIELD_MANAGER, Outcome};
use crate::conditions::{self, Desired};
use crate::context::Context;
use crate::error::Error;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use sluice_core::{names, quota};
use sluice_crd::{ConditionStatus, Pipeline, Stream, Tenant, TenantStatus, TenantUsage};
use std::sync::Arc;
use std::time::Duration;

/// The controller's name in metrics and logs.
pub const CONTROLLER: &str = "tenant";

/// Reconciles one Tenant.
#[tracing::instrument(skip_all, fields(tenant = %t.name_any()))]
pub async fn reconcile(t: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.start(CONTROLLER);
    let name = t.name_any();
    if t.meta().deletion_timestamp.is_some() {
        // The namespace is owned by the tenant: the garbage collector removes it, and the
        // namespace takes everything in it.
        return Ok(Action::await_change());
    }
    let ns = names::tenant_namespace(&name);
    let errors = sluice_crd::validate::tenant(&name, &t.spec);
    // Nothing is created for a reserved name, and nothing is touched in a namespace the
    // operator did not create.
    let ready = if ctx.config.is_reserved_tenant_name(&name) {
        Desired::fails(
            "Ready",
            REASON_RESERVED_NAME,
            format!(
                "the tenant name {name:?} is reserved by the platform (reserved: {}; and any \
                 name whose namespace would be {})",
                ctx.config.reserved_tenant_names.join(", "),
                ctx.config.system_namespace
            ),
        )
    } else if !errors.is_empty() {
        Desired::fails(
            "Ready",
            "InvalidSpec",
            sluice_crd::validate::describe(&errors),
        )
    } else if namespace_conflict(&ctx, &name).await? {
        Desired::fails(
            "Ready",
            REASON_NAMESPACE_CONFLICT,
            format!(
                "namespace {ns} exists and was not created by the operator for this tenant; \
                 it is left untouched (delete or rename it, or rename the tenant)"
            ),
        )
    } else {
        apply(&t, &ctx).await?;
        Desired::holds(
            "Ready",
            "NamespaceReady",
            format!("namespace {ns} is set up"),
        )
    };
    let set_up = ready.status == ConditionStatus::True;
    let usage = usage(&t, &ns, &ctx).await?;
    let previous = t.status.clone().unwrap_or_default();
    let now = Time(jiff::Timestamp::now());
    let mut desired = vec![ready];
    if t.spec.suspend {
        desired.push(Desired::holds(
            "Suspended",
            "Suspended",
            "every route of the tenant is scaled to zero",
        ));
    }
    let next = TenantStatus {
        namespace: set_up.then(|| ns.clone()),
        usage: Some(usage),
        conditions: conditions::merge(&previous.conditions, &desired, t.meta().generation, &now),
        observed_generation: t.meta().generation,
    };
    if next != previous {
        let patch =
            json!({"apiVersion": sluice_crd::API_VERSION, "kind": "Tenant", "status": next});
        Api::<Tenant>::all(ctx.client.clone())
            .patch_status(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        ctx.metrics
            .writes
            .with_label_values(&["TenantStatus"])
            .inc();
        let reference = t.object_ref(&());
        for c in conditions::transitions(&previous.conditions, &next.conditions) {
            let bad = c.type_ == "Ready" && c.status != ConditionStatus::True;
            ctx.event(
                &reference,
                bad,
                c.reason.as_deref().unwrap_or(&c.type_),
                c.message.clone().unwrap_or_default(),
            )
            .await;
        }
    }
    Ok(Action::requeue(ctx.config.resync))
}

/// `Ready` reason of a Tenant whose name is reserved.
pub const REASON_RESERVED_NAME: &str = "ReservedName";
/// `Ready` reason of a Tenant whose namespace exists and was not created by the operator.
pub const REASON_NAMESPACE_CONFLICT: &str = "NamespaceConflict";

/// Whether the namespace of tenant `tenant` exists without the operator's labels for it
/// (someone else's namespace, which the operator must not adopt).
pub async fn namespace_conflict(ctx: &Context, tenant: &str) -> Result<bool, Error> {
    let ns = names::tenant_namespace(tenant);
    let live = Api::<Namespace>::all(ctx.client.clone())
        .get_metadata_opt(&ns)
        .await?;
    Ok(live.is_some_and(|n| !desired::is_owned_namespace(n.metadata.labels.as_ref(), tenant)))
}

/// Why the namespace of tenant `tenant` may hold nothing of the operator's (a reserved name,
/// or a namespace the operator did not create), if so. The Pipeline and Stream controllers
/// refuse objects there with `NoTenant`.
pub async fn refusal(ctx: &Context, tenant: &str) -> Result<Option<String>, Error> {
    Ok(if ctx.config.is_reserved_tenant_name(tenant) {
        Some(format!("tenant {tenant:?} has a reserved name"))
    } else if namespace_conflict(ctx, tenant).await? {
        Some(format!(
            "namespace {} was not created by the operator for tenant {tenant:?}",
            names::tenant_namespace(tenant)
        ))
    } else {
        None
    })
}

async fn apply(t: &Tenant, ctx: &Context) -> Result<(), Error> {
    let ns_obj = desired::namespace(t);
    let ns = ns_obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut objects = vec![ns_obj];
    objects.extend(desired::namespaced(t, &ctx.config));
    for obj in &objects {
        if children::ensure(&ctx.client, obj).await? == Outcome::Written {
            let kind = obj["kind"].as_str().unwrap_or("unknown");
            ctx.metrics.writes.with_label_values(&[kind]).inc();
        }
    }
    // Prune what the tenant no longer asks for.
    let present = |kind: &str| objects.iter().any(|o| o["kind"] == kind);
    for (api_version, kind, object) in [
        ("v1", "ResourceQuota", desired::RESOURCE_QUOTA),
        (
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            desired::OWNERS_BINDING,
        ),
    ] {
        if present(kind) {
            continue;
        }
        let probe = json!({"apiVersion": api_version, "kind": kind, "metadata": {"namespace": ns}});
        match children::api_for(&ctx.client, &probe)
            .delete(object, &DeleteParams::background())
            .await
        {
            Ok(_) => ctx.metrics.writes.with_label_values(&[kind]).inc(),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// What the tenant uses: its pipelines (all of them), its streams, and the workers of its
/// admitted pipelines.
async fn usage(t: &Tenant, ns: &str, ctx: &Context) -> Result<TenantUsage, Error> {
    // Before the first complete list of pipelines, the tenant would look empty.
    ctx.pipelines_by_namespace.wait_until_ready().await;
    let pipelines: Vec<Arc<Pipeline>> = ctx.pipelines_by_namespace.peers(&ctx.pipelines, ns);
    let admitted = pipelines.iter().filter(|p| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Accepted"))
            .is_some_and(|c| c.status == ConditionStatus::True)
    });
    let workers: quota::Usage = admitted
        .map(|p| sluice_crd::validate::pipeline_demand(&p.spec, t.spec.suspend))
        .sum();
    let streams = match Api::<Stream>::namespaced(ctx.client.clone(), ns)
        .list_metadata(&ListParams::default())
        .await
    {
        Ok(list) => list.items.len(),
        Err(kube::Error::Api(s)) if s.code == 404 => 0,
        Err(e) => return Err(e.into()),
    };
    Ok(TenantUsage {
        pipelines: pipelines.len() as i32,
        streams: streams as i32,
        parallelism: workers.parallelism as i32,
        cpu: Some(Quantity(quota::format_cpu(workers.cpu_millis))),
        memory: Some(Quantity(quota::format_memory(workers.memory_bytes))),
    })
}

/// Retry policy after a failed reconcile: back off, never crash.
pub fn error_policy(t: Arc<Tenant>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .errors
        .with_label_values(&[CONTROLLER, error.metric_label()])
        .inc();
    tracing::warn!(tenant = %t.name_any(), error = %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}
