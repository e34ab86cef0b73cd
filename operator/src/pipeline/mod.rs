//! The Pipeline controller: fetch → validate → admit (quota) → build routes → apply → prune →
//! status. Only fetch, apply, prune and status touch the API; the decisions are pure
//! (`admission`, `desired`, `status`).

pub mod admission;
pub mod desired;
pub mod index;
pub mod status;

use crate::children::{self, FIELD_MANAGER, Outcome};
use crate::context::Context;
use crate::error::Error;
use admission::{Candidate, Decision};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;
use sluice_core::names;
use sluice_crd::{ConditionStatus, Pipeline, Stream, Tenant};
use status::{RouteObservation, Verdict};
use std::sync::Arc;
use std::time::Duration;

/// The controller's name in metrics and logs.
pub const CONTROLLER: &str = "pipeline";

/// Reconciles one Pipeline.
#[tracing::instrument(skip_all, fields(pipeline = %p.name_any(), namespace = p.namespace().unwrap_or_default(), tenant))]
pub async fn reconcile(p: Arc<Pipeline>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.start(CONTROLLER);
    let ns = p
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = p.name_any();
    if p.meta().deletion_timestamp.is_some() {
        // The garbage collector removes the routes (they are owned by the pipeline).
        return Ok(Action::await_change());
    }
    // Fetch.
    let tenant_name = names::tenant_of_namespace(&ns).map(String::from);
    tracing::Span::current().record("tenant", tenant_name.as_deref().unwrap_or(""));
    // The tenant comes from the store the Tenant trigger feeds (updated before it triggers);
    // one the store has not seen yet is read from the API.
    let tenant = match &tenant_name {
        Some(t) => match ctx.tenants.get(&ObjectRef::new(t)) {
            Some(t) => Some((*t).clone()),
            None => Api::<Tenant>::all(ctx.client.clone()).get_opt(t).await?,
        },
        None => None,
    };
    // A tenant whose name is reserved, or whose namespace the operator did not create, has no
    // namespace the operator may run anything in.
    let refused = match &tenant_name {
        Some(t) if tenant.is_some() => crate::tenant::refusal(&ctx, t).await?,
        _ => None,
    };
    let tenant = if refused.is_some() { None } else { tenant };
    // Validate and admit (peers come from the index, complete once it has seen a full list).
    ctx.pipelines_by_namespace.wait_until_ready().await;
    let errors = sluice_crd::validate::pipeline(&p.spec);
    let verdict = match &tenant {
        None => Verdict::NoTenant(refused.unwrap_or_else(|| {
            format!(
                "namespace {ns} belongs to no tenant (tenant namespaces are named {}<tenant>)",
                names::NAMESPACE_PREFIX
            )
        })),
        Some(_) if !errors.is_empty() => {
            Verdict::InvalidSpec(sluice_crd::validate::describe(&errors))
        }
        Some(t) => match source_missing(&p, &ns, &ctx).await? {
            Some(why) => Verdict::StreamNotFound(why),
            None => admit(&p, t, &ctx),
        },
    };
    let tenant_suspended = tenant.as_ref().is_some_and(|t| t.spec.suspend);
    let suspended = p.spec.suspend || tenant_suspended;
    let dead_letter_unavailable = match &verdict {
        Verdict::Accepted => dead_letter_missing(&p, &ns, &ctx).await?,
        _ => None,
    };

    // Build, apply, prune.
    let keep: Option<Vec<String>> = match (&verdict, &tenant) {
        (Verdict::Accepted, Some(t)) => {
            let replicas = if suspended { 0 } else { p.spec.parallelism };
            let routes = desired::routes(
                &p,
                &desired::Inputs {
                    tenant: t,
                    config: &ctx.config,
                    replicas,
                },
            );
            for route in &routes {
                for obj in &route.objects {
                    if children::ensure(&ctx.client, obj).await? == Outcome::Written {
                        let kind = obj["kind"].as_str().unwrap_or("unknown");
                        ctx.metrics.writes.with_label_values(&[kind]).inc();
                    }
                }
            }
            Some(routes.into_iter().map(|r| r.sink).collect())
        }
        // An invalid edit keeps the routes of the last accepted spec running.
        (Verdict::InvalidSpec(_), _) => None,
        // Nothing is scheduled for a pipeline that is not admitted.
        _ => Some(vec![]),
    };
    let deployments = Api::<Deployment>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default().labels(&format!(
            "{}={name},{}={}",
            names::LABEL_PIPELINE,
            names::LABEL_MANAGED_BY,
            names::MANAGED_BY
        )))
        .await?
        .items;
    let mut observed = vec![];
    for d in deployments {
        let sink = d
            .labels()
            .get(names::LABEL_ROUTE)
            .cloned()
            .unwrap_or_default();
        if keep.as_ref().is_some_and(|k| !k.contains(&sink)) {
            prune_route(&ctx, &ns, &d.name_any()).await?;
            continue;
        }
        observed.push(observe(&sink, &d));
    }
    observed.sort_by(|a, b| a.sink.cmp(&b.sink));

    // Status.
    let previous = p.status.clone().unwrap_or_default();
    let now = Time(jiff::Timestamp::now());
    let next = status::compute(&status::Inputs {
        verdict: &verdict,
        routes: &observed,
        suspended,
        dead_letter_unavailable,
        generation: p.meta().generation,
        selector: desired::pipeline_selector(tenant_name.as_deref().unwrap_or(""), &name),
        previous: &previous,
        now: &now,
    });
    if next != previous {
        let api = Api::<Pipeline>::namespaced(ctx.client.clone(), &ns);
        let patch =
            json!({"apiVersion": sluice_crd::API_VERSION, "kind": "Pipeline", "status": next});
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        ctx.metrics
            .writes
            .with_label_values(&["PipelineStatus"])
            .inc();
        let reference = p.object_ref(&());
        for c in crate::conditions::transitions(&previous.conditions, &next.conditions) {
            let bad = match c.type_.as_str() {
                "Degraded" => c.status == ConditionStatus::True,
                "Progressing" => false,
                _ => c.status != ConditionStatus::True,
            };
            ctx.event(
                &reference,
                bad,
                c.reason.as_deref().unwrap_or(&c.type_),
                format!("{}: {}", c.type_, c.message.as_deref().unwrap_or_default()),
            )
            .await;
        }
    }
    Ok(Action::requeue(ctx.config.resync))
}

/// Why the pipeline's source stream cannot be read yet, if it cannot: the Stream does not
/// exist, or its broker stream is not provisioned. The pipeline starts by itself when it is
/// (the controller watches Streams).
async fn source_missing(p: &Pipeline, ns: &str, ctx: &Context) -> Result<Option<String>, Error> {
    let name = &p.spec.source.stream;
    let stream = Api::<Stream>::namespaced(ctx.client.clone(), ns)
        .get_opt(name)
        .await?;
    Ok(match stream {
        None => Some(format!(
            "the source stream {name:?} does not exist in namespace {ns}; the pipeline starts when it does"
        )),
        Some(s)
            if s.status
                .as_ref()
                .and_then(|st| st.subject.as_ref())
                .is_none() =>
        {
            Some(format!(
                "the source stream {name:?} is not provisioned yet; the pipeline starts when it is"
            ))
        }
        Some(_) => None,
    })
}

/// Why the pipeline's dead-letter stream cannot take dead events, if it names one that does
/// not exist or is not provisioned (the default dead-letter subject lives in the source
/// stream, which exists once the pipeline is accepted). The pipeline is `Degraded` with
/// reason `DeadLetterUnavailable` meanwhile; the controller watches Streams, so it recovers
/// by itself when the stream appears.
async fn dead_letter_missing(
    p: &Pipeline,
    ns: &str,
    ctx: &Context,
) -> Result<Option<String>, Error> {
    let Some(name) = p.spec.dead_letter.as_ref().map(|d| &d.stream) else {
        return Ok(None);
    };
    let stream = Api::<Stream>::namespaced(ctx.client.clone(), ns)
        .get_opt(name)
        .await?;
    let provisioned = stream
        .as_ref()
        .and_then(|s| s.status.as_ref())
        .and_then(|st| st.subject.as_ref())
        .is_some();
    Ok((!provisioned).then(|| {
        format!(
            "the dead-letter stream {name:?} does not exist or is not provisioned in namespace \
             {ns}; events that fail are given back to the source and retried until it is"
        )
    }))
}

/// Admission of `p` among its tenant's pipelines; asks for a reconcile of every peer whose
/// recorded decision is now wrong, so room that appears is used without anyone touching them.
fn admit(p: &Pipeline, tenant: &Tenant, ctx: &Context) -> Verdict {
    let ns = p.namespace().unwrap_or_default();
    let tenant_suspended = tenant.spec.suspend;
    let peers = ctx.pipelines_by_namespace.peers(&ctx.pipelines, &ns);
    let candidate = |q: &Pipeline| Candidate {
        name: q.name_any(),
        created: q
            .meta()
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default(),
        demand: sluice_crd::validate::pipeline_demand(&q.spec, tenant_suspended),
        valid: ctx.pipelines_by_namespace.valid(q),
    };
    let mut candidates: Vec<Candidate> = peers.iter().map(|q| candidate(q)).collect();
    // The pipeline being reconciled is judged on its current spec, even if the store lags.
    candidates.retain(|c| c.name != p.name_any());
    candidates.push(candidate(p));
    let limits = sluice_crd::validate::tenant_limits(&tenant.spec);
    let decisions = admission::admit(&limits, Default::default(), &candidates);
    for q in &peers {
        if q.name_any() == p.name_any() {
            continue;
        }
        let recorded = q
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Accepted"))
            .map(|c| (c.status, c.reason.clone()));
        let now_admitted = decisions.get(&q.name_any()) == Some(&Decision::Admitted);
        let stale = match recorded {
            Some((ConditionStatus::True, _)) => !now_admitted,
            Some((_, reason)) if reason.as_deref() == Some("QuotaExceeded") => now_admitted,
            _ => false,
        };
        if stale {
            let _ = ctx.requeue.send(ObjectRef::from_obj(q.as_ref()));
        }
    }
    match decisions.get(&p.name_any()) {
        Some(Decision::Refused(e)) => Verdict::QuotaExceeded(format!(
            "admitting this pipeline would exceed its tenant's quota: {e}"
        )),
        _ => Verdict::Accepted,
    }
}

fn observe(sink: &str, d: &Deployment) -> RouteObservation {
    let desired = d.spec.replicas.unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    let generation = d.metadata.generation.unwrap_or(0);
    let rolled_out = status.observed_generation.unwrap_or(0) >= generation
        && status.updated_replicas.unwrap_or(0) >= desired;
    let failed_condition = status.conditions.iter().flatten().find(|c| {
        c.type_.as_deref() == Some("Progressing")
            && c.status.as_deref() == Some("False")
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    let failed = failed_condition.is_some();
    // The usual "ReplicaSet ... has timed out progressing." says nothing the reason does not.
    let failure = failed_condition
        .and_then(|c| c.message.clone())
        .filter(|m| !m.contains("has timed out progressing"));
    RouteObservation {
        sink: sink.to_string(),
        desired,
        replicas: status.replicas.unwrap_or(0),
        ready: status.ready_replicas.unwrap_or(0),
        rolled_out,
        failed,
        failure,
    }
}

async fn prune_route(ctx: &Context, ns: &str, name: &str) -> Result<(), Error> {
    for (api_version, kind) in [
        ("apps/v1", "Deployment"),
        ("v1", "ConfigMap"),
        ("v1", "Service"),
        ("policy/v1", "PodDisruptionBudget"),
    ] {
        let probe = json!({"apiVersion": api_version, "kind": kind, "metadata": {"namespace": ns}});
        let api = children::api_for(&ctx.client, &probe);
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => ctx.metrics.writes.with_label_values(&[kind]).inc(),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Retry policy after a failed reconcile: back off, never crash.
pub fn error_policy(p: Arc<Pipeline>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .errors
        .with_label_values(&[CONTROLLER, error.metric_label()])
        .inc();
    tracing::warn!(pipeline = %p.name_any(), error = %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(if error.metric_label() == "conflict" {
        1
    } else {
        5
    }))
}
