//! The Pipeline controller: fetch → validate → admit (quota) → build routes → apply → prune →
//! status, one function each. Only fetch, apply, prune and status touch the API; the
//! decisions are pure (`admission`, `desired`, `status`). What a route is made of is in
//! `route`.

pub mod admission;
pub mod desired;
pub mod index;
pub mod route;
pub mod status;

use crate::children::Keep;
use crate::context::Context;
use crate::error::Error;
use crate::reconcile::{self, Reconciled};
use crate::route_users::{self, RouteKey, RouteUsers};
use admission::{Candidate, Decision};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use route::Route;
use sluice_core::names;
use sluice_crd::{Pipeline, Stream, StreamBroker, Tenant};
use status::{RouteObservation, Verdict};
use std::sync::Arc;

/// The controller's name in metrics and logs.
pub const CONTROLLER: &str = Pipeline::CONTROLLER;

/// Reconciles one Pipeline.
#[tracing::instrument(skip_all, fields(pipeline = %p.name_any(), namespace = p.namespace().unwrap_or_default(), tenant))]
pub async fn reconcile(p: Arc<Pipeline>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.start(CONTROLLER);
    let ns = p
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    if p.meta().deletion_timestamp.is_some() {
        // The operator puts no finalizer on Pipelines: one is seen being deleted only while
        // something else holds it (e.g. foreground deletion of its routes). The garbage
        // collector removes the routes, which the pipeline owns; nothing is left to do.
        return Ok(Action::await_change());
    }
    let owner = fetch_tenant(&ns, &ctx).await?;
    let streams = list_streams(&ns, &ctx).await?;
    let brokers = stream_brokers(&streams, &ctx);
    let verdict = validate_and_admit(&p, &ns, &owner, &streams, &ctx).await?;
    let suspended = p.spec.suspend || owner.tenant.as_ref().is_some_and(|t| t.spec.suspend);
    let users = match (&ctx.accounts, &owner.tenant) {
        (Some(accounts), Some(t)) => Some(accounts.route_users(
            &t.uid().ok_or(Error::MissingField("metadata.uid"))?,
            sluice_broker::jwt::now(),
        )),
        _ => None,
    };
    let (routes, keep) = build(
        &p,
        &verdict,
        owner.tenant.as_ref(),
        suspended,
        users.as_ref(),
        &brokers,
        &ctx,
    );
    if let (Some(users), Some(t)) = (&users, &owner.tenant)
        && !routes.is_empty()
    {
        list_route_keys(&p, t, &routes, users, &brokers, &ctx).await?;
    }
    for r in &routes {
        route::apply(&ctx, r).await?;
    }
    let observed = prune(&p, &ns, &keep, &ctx).await?;
    let dead_letter_unavailable = match &verdict {
        Verdict::Accepted => dead_letter_missing(&p, &ns, &streams, &ctx).await,
        _ => None,
    };
    let next = status::compute(&status::Inputs {
        verdict: &verdict,
        routes: &observed,
        suspended,
        dead_letter_unavailable,
        generation: p.meta().generation,
        selector: desired::pipeline_selector(owner.name.as_deref().unwrap_or(""), &p.name_any()),
        previous: &reconcile::current_status(p.as_ref()),
        now: &Time(jiff::Timestamp::now()),
    });
    reconcile::write_status(&ctx, p.as_ref(), &next).await?;
    // Back when a route's credentials rotate, or the previous ones' grace ends.
    let next_change = routes
        .iter()
        .filter_map(|r| r.user.as_ref().map(|u| u.epochs.next_change))
        .min();
    Ok(Action::requeue(
        next_change.map_or(ctx.config.resync, |n| n.min(ctx.config.resync)),
    ))
}

/// Makes the tenant's account list exactly the current signing keys of this pipeline's
/// routes, before their pods may need them. Nothing is sent when the account as last pushed
/// already does; otherwise the account is pushed with the keys of every admitted pipeline of
/// the tenant ([`route_keys`]), this one's as just built.
async fn list_route_keys(
    p: &Pipeline,
    tenant: &Tenant,
    routes: &[Route],
    users: &RouteUsers,
    brokers: &desired::StreamBrokers,
    ctx: &Context,
) -> Result<(), Error> {
    let Some(accounts) = &ctx.accounts else {
        return Ok(());
    };
    let uid = tenant.uid().unwrap_or_default();
    let pipeline_uid = p.uid().unwrap_or_default();
    let mine: Vec<RouteKey> = routes
        .iter()
        .flat_map(|r| users.keys(&r.route_id, &r.name, &r.config))
        .collect();
    if accounts.lists_routes(&uid, &pipeline_uid, &mine) {
        return Ok(());
    }
    let prefix = format!("{pipeline_uid}/");
    let mut keys: Vec<RouteKey> = peer_route_keys(tenant, users, brokers, ctx)
        .await
        .into_iter()
        .filter(|k| !k.route_id.starts_with(&prefix))
        .collect();
    keys.extend(mine);
    accounts.ensure(tenant, &keys).await?;
    Ok(())
}

/// The signing keys of the routes of every admitted pipeline of `tenant`, as the store has
/// them: what its account lists (the Tenant controller pushes it; a pipeline reconcile does
/// when its own routes' keys are missing or stale).
pub async fn route_keys(
    tenant: &Tenant,
    users: &RouteUsers,
    ctx: &Context,
) -> Result<Vec<RouteKey>, Error> {
    let ns = names::tenant_namespace(&tenant.name_any());
    let streams = list_streams(&ns, ctx).await?;
    let brokers = stream_brokers(&streams, ctx);
    Ok(peer_route_keys(tenant, users, &brokers, ctx).await)
}

/// [`route_keys`], with the namespace's Streams on `brokers`.
async fn peer_route_keys(
    tenant: &Tenant,
    users: &RouteUsers,
    brokers: &desired::StreamBrokers,
    ctx: &Context,
) -> Vec<RouteKey> {
    ctx.pipelines_by_namespace.wait_until_ready().await;
    let name = tenant.name_any();
    let ns = names::tenant_namespace(&name);
    let peers = ctx.pipelines_by_namespace.peers(&ctx.pipelines, &ns);
    let decisions = decisions(tenant, &peers, None, ctx);
    peers
        .iter()
        .filter(|q| {
            ctx.pipelines_by_namespace.valid(q)
                && decisions.get(&q.name_any()) == Some(&Decision::Admitted)
        })
        .flat_map(|q| {
            let name = &name;
            q.spec.sinks.iter().flat_map(move |sink| {
                let config = desired::route_config(q, name, sink, &ctx.config, brokers);
                users.keys(
                    &route_users::route_id(q, &sink.name),
                    &names::route_name(&q.name_any(), &sink.name),
                    &config,
                )
            })
        })
        .collect()
}

/// The tenant of a pipeline's namespace, as the reconcile sees it.
struct Owner {
    /// The tenant the namespace is named after, if it is a tenant namespace.
    name: Option<String>,
    /// The Tenant, when it exists and its namespace may hold the operator's objects.
    tenant: Option<Tenant>,
    /// Why the namespace may hold nothing of the operator's, when the Tenant exists but it
    /// may not (a reserved name, a namespace the operator did not create).
    refusal: Option<String>,
}

/// Fetch: the tenant of namespace `ns`. It comes from the store the Tenant trigger feeds
/// (updated before it triggers); one the store has not seen yet is read from the API.
async fn fetch_tenant(ns: &str, ctx: &Context) -> Result<Owner, Error> {
    let name = names::tenant_of_namespace(ns).map(String::from);
    tracing::Span::current().record("tenant", name.as_deref().unwrap_or(""));
    let Some(t) = &name else {
        return Ok(Owner {
            name,
            tenant: None,
            refusal: None,
        });
    };
    let tenant = match ctx.tenants.get(&ObjectRef::new(t)) {
        Some(t) => Some((*t).clone()),
        None => Api::<Tenant>::all(ctx.client.clone()).get_opt(t).await?,
    };
    // A tenant whose name is reserved, or whose namespace the operator did not create, has no
    // namespace the operator may run anything in.
    let refusal = match &tenant {
        Some(_) => crate::tenant::refusal(ctx, t).await?,
        None => None,
    };
    Ok(Owner {
        tenant: if refusal.is_some() { None } else { tenant },
        name,
        refusal,
    })
}

/// Validate and admit: the verdict on the pipeline's spec (peers come from the index,
/// complete once it has seen a full list).
async fn validate_and_admit(
    p: &Pipeline,
    ns: &str,
    owner: &Owner,
    streams: &[Stream],
    ctx: &Context,
) -> Result<Verdict, Error> {
    ctx.pipelines_by_namespace.wait_until_ready().await;
    let errors = sluice_crd::validate::named_pipeline(&p.name_any(), &p.spec);
    Ok(match &owner.tenant {
        None => Verdict::NoTenant(owner.refusal.clone().unwrap_or_else(|| {
            format!(
                "namespace {ns} belongs to no tenant (tenant namespaces are named {}<tenant>)",
                names::NAMESPACE_PREFIX
            )
        })),
        Some(_) if !errors.is_empty() => {
            Verdict::InvalidSpec(sluice_crd::validate::describe(&errors))
        }
        Some(t) => match streams_unusable(p, ns, streams, ctx) {
            Some(why) => Verdict::StreamNotFound(why),
            None => admit(p, t, ctx),
        },
    })
}

/// Build (pure): the routes the pipeline should have, and which of its existing routes (by
/// sink) to keep. An accepted pipeline has a route per sink; an invalid edit keeps the routes
/// of the last accepted spec running; nothing is scheduled for a pipeline not admitted.
fn build(
    p: &Pipeline,
    verdict: &Verdict,
    tenant: Option<&Tenant>,
    suspended: bool,
    users: Option<&RouteUsers>,
    brokers: &desired::StreamBrokers,
    ctx: &Context,
) -> (Vec<Route>, Keep) {
    match (verdict, tenant) {
        (Verdict::Accepted, Some(t)) => {
            let replicas = if suspended { 0 } else { p.spec.parallelism };
            let routes = desired::routes(
                p,
                &desired::Inputs {
                    tenant: t,
                    config: &ctx.config,
                    replicas,
                    users,
                    brokers,
                },
            );
            let keep = Keep::only(routes.iter().map(|r| r.sink.clone()));
            (routes, keep)
        }
        (Verdict::InvalidSpec(_), _) => (vec![], Keep::All),
        _ => (vec![], Keep::none()),
    }
}

/// Prune: deletes the routes whose sink `keep` does not keep, and reports what the remaining
/// ones' Deployments say, by sink.
async fn prune(
    p: &Pipeline,
    ns: &str,
    keep: &Keep,
    ctx: &Context,
) -> Result<Vec<RouteObservation>, Error> {
    let deployments = Api::<Deployment>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default().labels(&desired::routes_selector(&p.name_any())))
        .await?
        .items;
    let mut observed = vec![];
    for d in deployments {
        let sink = d
            .labels()
            .get(names::LABEL_ROUTE)
            .cloned()
            .unwrap_or_default();
        if keep.keeps(&sink) {
            observed.push(observe(&sink, &d));
        } else {
            route::delete(ctx, ns, &d.name_any()).await?;
        }
    }
    observed.sort_by(|a, b| a.sink.cmp(&b.sink));
    Ok(observed)
}

/// The Streams of namespace `ns`.
async fn list_streams(ns: &str, ctx: &Context) -> Result<Vec<Stream>, Error> {
    Ok(Api::<Stream>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items)
}

/// The broker of each of `streams`.
fn stream_brokers(streams: &[Stream], ctx: &Context) -> desired::StreamBrokers {
    desired::StreamBrokers(
        streams
            .iter()
            .map(|s| {
                (
                    s.name_any(),
                    crate::stream::broker_of(s, ctx.config.default_stream_broker),
                )
            })
            .collect(),
    )
}

/// Where a Stream stands, as a pipeline reading or writing it sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamState {
    /// There is no such Stream.
    Missing,
    /// The Stream exists, but its broker stream (or topic) is not provisioned yet.
    NotProvisioned,
    /// Events can be read and written, on this broker.
    Provisioned(StreamBroker),
}

fn stream_state(streams: &[Stream], name: &str, ctx: &Context) -> StreamState {
    let Some(s) = streams.iter().find(|s| s.name_any() == name) else {
        return StreamState::Missing;
    };
    if s.metadata.deletion_timestamp.is_some() {
        // Its cleanup is deleting what the broker holds: nothing is made for it anew.
        return StreamState::NotProvisioned;
    }
    let broker = crate::stream::broker_of(s, ctx.config.default_stream_broker);
    let status = s.status.as_ref();
    let provisioned = match broker {
        StreamBroker::Nats => status.and_then(|st| st.subject.as_ref()).is_some(),
        StreamBroker::Kafka => status.and_then(|st| st.topic.as_ref()).is_some(),
    };
    if provisioned {
        StreamState::Provisioned(broker)
    } else {
        StreamState::NotProvisioned
    }
}

/// Why the pipeline cannot run yet, if it cannot: its source stream, or the stream of a
/// Kafka sink, does not exist or is not provisioned; a Kafka sink names a NATS stream. The
/// pipeline starts by itself when they are (the controller watches Streams).
fn streams_unusable(p: &Pipeline, ns: &str, streams: &[Stream], ctx: &Context) -> Option<String> {
    let name = &p.spec.source.stream;
    let source = match stream_state(streams, name, ctx) {
        StreamState::Missing => Some(format!(
            "the source stream {name:?} does not exist in namespace {ns}"
        )),
        StreamState::NotProvisioned => Some(format!(
            "the source stream {name:?} is not provisioned yet; the pipeline starts when it is"
        )),
        StreamState::Provisioned(_) => None,
    };
    source.or_else(|| {
        p.spec.sinks.iter().find_map(|sink| {
            let stream = &sink.kafka.as_ref()?.stream;
            match stream_state(streams, stream, ctx) {
                StreamState::Provisioned(StreamBroker::Kafka) => None,
                StreamState::Provisioned(StreamBroker::Nats) => Some(format!(
                    "sink {:?}: stream {stream:?} is a NATS stream; a kafka sink writes to a \
                     Kafka stream (use a jetstream sink for it)",
                    sink.name
                )),
                StreamState::Missing => Some(format!(
                    "sink {:?}: stream {stream:?} does not exist in namespace {ns}",
                    sink.name
                )),
                StreamState::NotProvisioned => Some(format!(
                    "sink {:?}: stream {stream:?} is not provisioned yet; the pipeline starts \
                     when it is",
                    sink.name
                )),
            }
        })
    })
}

/// Why the pipeline's dead letters cannot be taken, if they cannot: the dead-letter stream
/// it names does not exist or is not provisioned, or its per-pipeline dead-letter topic (a
/// Kafka source with no `deadLetter`) cannot be made. The default dead-letter subject of a
/// NATS source lives in the source stream, which exists once the pipeline is accepted. The
/// pipeline is `Degraded` with reason `DeadLetterUnavailable` meanwhile; the controller
/// watches Streams, so it recovers by itself when the stream appears.
async fn dead_letter_missing(
    p: &Pipeline,
    ns: &str,
    streams: &[Stream],
    ctx: &Context,
) -> Option<String> {
    let source = &p.spec.source.stream;
    let Some(name) = p.spec.dead_letter.as_ref().map(|d| &d.stream) else {
        let s = streams
            .iter()
            .find(|s| &s.name_any() == source && s.metadata.deletion_timestamp.is_none())?;
        let broker = crate::stream::broker_of(s, ctx.config.default_stream_broker);
        if broker != StreamBroker::Kafka {
            return None;
        }
        // The per-pipeline dead-letter topic: one partition, the source's replicas.
        let tenant = names::tenant_of_namespace(ns)?;
        let mut settings = crate::stream::settings(tenant, None, s, broker);
        settings.name = crate::stream::kafka::dead_letter_topic(tenant, source, &p.name_any());
        settings.partitions = 1;
        return match ctx.broker.ensure(&settings).await {
            Ok(_) => None,
            Err(e) => Some(format!(
                "the dead-letter topic {} cannot be made ({e}); events that fail are given \
                 back to the source and retried until it can",
                settings.name
            )),
        };
    };
    let provisioned = matches!(
        stream_state(streams, name, ctx),
        StreamState::Provisioned(_)
    );
    (!provisioned).then(|| {
        format!(
            "the dead-letter stream {name:?} does not exist or is not provisioned in namespace \
             {ns}; events that fail are given back to the source and retried until it is"
        )
    })
}

/// Admission of `p` among its tenant's pipelines; asks for a reconcile of every peer whose
/// recorded decision is now wrong, so room that appears is used without anyone touching them.
fn admit(p: &Pipeline, tenant: &Tenant, ctx: &Context) -> Verdict {
    let ns = p.namespace().unwrap_or_default();
    let peers = ctx.pipelines_by_namespace.peers(&ctx.pipelines, &ns);
    let decisions = decisions(tenant, &peers, Some(p), ctx);
    for q in admission::stale_peers(&peers, &p.name_any(), &decisions) {
        let _ = ctx.requeue.send(ObjectRef::from_obj(q));
    }
    match decisions.get(&p.name_any()) {
        Some(Decision::Refused(e)) => Verdict::QuotaExceeded(format!(
            "admitting this pipeline would exceed its tenant's quota: {e}"
        )),
        _ => Verdict::Accepted,
    }
}

/// The admission decisions of `tenant`'s pipelines `peers`, with `current` judged on its
/// current spec (the store may lag behind it).
fn decisions(
    tenant: &Tenant,
    peers: &[Arc<Pipeline>],
    current: Option<&Pipeline>,
    ctx: &Context,
) -> std::collections::BTreeMap<String, Decision> {
    let tenant_suspended = tenant.spec.suspend;
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
    if let Some(p) = current {
        candidates.retain(|c| c.name != p.name_any());
        candidates.push(candidate(p));
    }
    let limits = sluice_crd::validate::tenant_limits(&tenant.spec);
    admission::admit(&limits, Default::default(), &candidates)
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
