//! The Tenant controller: fetch → validate → build the namespace and its guard rails (pure,
//! `desired`) → apply → prune → status (usage against each limit).

pub mod desired;

use crate::children::{self, Keep};
use crate::conditions::{self, Desired, Reason};
use crate::context::Context;
use crate::error::Error;
use crate::pipeline::admission;
use crate::reconcile::{self, Reconciled};
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};
use sluice_core::{names, quota};
use sluice_crd::{ConditionType, Pipeline, Stream, Tenant, TenantStatus, TenantUsage};
use std::sync::Arc;

/// The controller's name in metrics and logs.
pub const CONTROLLER: &str = Tenant::CONTROLLER;

/// The finalizer that deletes a tenant's broker account (only with tenant accounts).
pub const ACCOUNT_FINALIZER: &str = "sluice.dev/broker-account";

/// Reconciles one Tenant: validate → build its children (pure, `desired`) → apply → prune →
/// status. With tenant accounts at the broker, its account is created and kept in line with its
/// quota, and a finalizer deletes it (with its streams) when the Tenant goes.
#[tracing::instrument(skip_all, fields(tenant = %t.name_any()))]
pub async fn reconcile(t: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.start(CONTROLLER);
    let holds_finalizer = t.finalizers().iter().any(|f| f == ACCOUNT_FINALIZER);
    if ctx.accounts.is_none() && !holds_finalizer {
        return reconcile_tenant(&t, &ctx).await;
    }
    let api: Api<Tenant> = Api::all(ctx.client.clone());
    finalizer(&api, ACCOUNT_FINALIZER, t, |event| async {
        match event {
            Finalizer::Apply(t) => reconcile_tenant(&t, &ctx).await,
            Finalizer::Cleanup(t) => remove_account(&t, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

async fn reconcile_tenant(t: &Tenant, ctx: &Context) -> Result<Action, Error> {
    if t.meta().deletion_timestamp.is_some() {
        // Held by something else (e.g. foreground deletion of its namespace). The namespace
        // is owned by the tenant: the garbage collector removes it, and the namespace takes
        // everything in it.
        return Ok(Action::await_change());
    }
    let mut account = None;
    let ready = match refusal_condition(t, ctx).await? {
        Some(refused) => refused,
        None => {
            apply(t, ctx).await?;
            if let Some(accounts) = &ctx.accounts {
                let uid = t.uid().ok_or(Error::MissingField("metadata.uid"))?;
                let users = accounts.route_users(&uid, sluice_broker::jwt::now());
                let keys = crate::pipeline::route_keys(t, &users, ctx).await?;
                account = Some(accounts.ensure(t, &keys).await?);
            }
            Desired::holds(
                ConditionType::Ready,
                Reason::NamespaceReady,
                format!(
                    "namespace {} is set up",
                    names::tenant_namespace(&t.name_any())
                ),
            )
        }
    };
    let usage = usage(t, ctx).await?;
    reconcile::write_status(ctx, t, &status(t, ready, usage, account)).await?;
    Ok(Action::requeue(ctx.config.resync))
}

/// Deletes the tenant's streams and account at the broker. Without tenant accounts (the
/// operator was started without them since), there is nothing it can do: it lets go.
async fn remove_account(t: &Tenant, ctx: &Context) -> Result<Action, Error> {
    match &ctx.accounts {
        Some(accounts) => accounts.remove(t).await?,
        None => tracing::warn!(
            tenant = %t.name_any(),
            "the operator runs without broker accounts: the tenant's account is left at the broker"
        ),
    }
    Ok(Action::await_change())
}

/// The `Ready` condition of a tenant the operator sets nothing up for, if it is one: nothing
/// is created for a reserved name or an invalid spec, and nothing is touched in a namespace the
/// operator did not create.
async fn refusal_condition(t: &Tenant, ctx: &Context) -> Result<Option<Desired>, Error> {
    let name = t.name_any();
    let errors = sluice_crd::validate::tenant(&name, &t.spec);
    Ok(if ctx.config.is_reserved_tenant_name(&name) {
        Some(Desired::fails(
            ConditionType::Ready,
            Reason::ReservedName,
            format!(
                "the tenant name {name:?} is reserved by the platform (reserved: {}; and any \
                 name whose namespace would be {})",
                ctx.config.reserved_tenant_names.join(", "),
                ctx.config.system_namespace
            ),
        ))
    } else if !errors.is_empty() {
        Some(Desired::fails(
            ConditionType::Ready,
            Reason::InvalidSpec,
            sluice_crd::validate::describe(&errors),
        ))
    } else if namespace_conflict(ctx, &name).await? {
        Some(Desired::fails(
            ConditionType::Ready,
            Reason::NamespaceConflict,
            format!(
                "namespace {} exists and was not created by the operator for this tenant; \
                 it is left untouched (delete or rename it, or rename the tenant)",
                names::tenant_namespace(&name)
            ),
        ))
    } else {
        None
    })
}

/// The tenant's next status (pure).
fn status(
    t: &Tenant,
    ready: Desired,
    usage: TenantUsage,
    broker_account: Option<String>,
) -> TenantStatus {
    let set_up = ready.status == sluice_crd::ConditionStatus::True;
    let mut desired = vec![ready];
    if t.spec.suspend {
        desired.push(Desired::holds(
            ConditionType::Suspended,
            Reason::Suspended,
            "every route of the tenant is scaled to zero",
        ));
    }
    let previous = reconcile::current_status(t);
    let now = Time(jiff::Timestamp::now());
    TenantStatus {
        namespace: set_up.then(|| names::tenant_namespace(&t.name_any())),
        usage: Some(usage),
        broker_account,
        conditions: conditions::merge(&previous.conditions, &desired, t.meta().generation, &now),
        observed_generation: t.meta().generation,
    }
}

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

/// Applies what the tenant owns, and prunes the optional children it no longer asks for.
async fn apply(t: &Tenant, ctx: &Context) -> Result<(), Error> {
    let c = desired::children(t, &ctx.config);
    let ns = names::tenant_namespace(&t.name_any());
    children::apply(ctx, &c.namespace).await?;
    if let Some(quota) = &c.resource_quota {
        children::apply(ctx, quota).await?;
    }
    children::apply(ctx, &c.limit_range).await?;
    children::apply(ctx, &c.network_policy).await?;
    children::apply(ctx, &c.service_account).await?;
    if let Some(binding) = &c.owners_binding {
        children::apply(ctx, binding).await?;
    }
    let selector = desired::selector(&t.name_any());
    let quota = c.resource_quota.as_ref().map(|_| desired::RESOURCE_QUOTA);
    children::prune::<ResourceQuota>(ctx, &ns, &selector, &Keep::only(quota)).await?;
    let binding = c.owners_binding.as_ref().map(|_| desired::OWNERS_BINDING);
    children::prune::<RoleBinding>(ctx, &ns, &selector, &Keep::only(binding)).await?;
    Ok(())
}

/// What the tenant uses: its pipelines (all of them), its streams, and the workers of its
/// admitted pipelines.
async fn usage(t: &Tenant, ctx: &Context) -> Result<TenantUsage, Error> {
    let ns = &names::tenant_namespace(&t.name_any());
    // Before the first complete list of pipelines, the tenant would look empty.
    ctx.pipelines_by_namespace.wait_until_ready().await;
    let pipelines: Vec<Arc<Pipeline>> = ctx.pipelines_by_namespace.peers(&ctx.pipelines, ns);
    let admitted = pipelines
        .iter()
        .filter(|p| admission::recorded(p) == admission::Recorded::Admitted);
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
