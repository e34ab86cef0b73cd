//! The Stream controller: a Stream in a tenant namespace gets its backing broker stream
//! (subjects namespaced by tenant), kept in line with its retention; a finalizer removes the
//! broker stream when the Stream goes. `maxStreams` is enforced oldest first, like pipelines.

pub mod broker;

use crate::conditions::{self, Desired, Reason};
use crate::context::Context;
use crate::error::Error;
use crate::reconcile::{self, Reconciled};
use broker::{BrokerError, StreamSettings, StreamState};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};
use sluice_core::quota::{self, Usage};
use sluice_core::{names, subjects};
use sluice_crd::{ConditionType, Stream, StreamStatus, Tenant};
use std::sync::Arc;
use std::time::Duration;

/// The controller's name in metrics and logs.
pub const CONTROLLER: &str = Stream::CONTROLLER;
/// The finalizer that removes the broker stream.
pub const FINALIZER: &str = "sluice.dev/broker-stream";

/// Reconciles one Stream.
#[tracing::instrument(skip_all, fields(stream = %s.name_any(), namespace = s.namespace().unwrap_or_default()))]
pub async fn reconcile(s: Arc<Stream>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.start(CONTROLLER);
    let ns = s
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<Stream> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, s, |event| async {
        match event {
            Finalizer::Apply(s) => apply(&s, &ctx).await,
            Finalizer::Cleanup(s) => cleanup(&s, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// The broker settings of a Stream of `tenant` (whose uid is `tenant_uid`).
pub fn settings(tenant: &str, tenant_uid: Option<String>, s: &Stream) -> StreamSettings {
    let name = s.name_any();
    let retention = s.spec.retention.clone().unwrap_or_default();
    StreamSettings {
        name: subjects::jetstream_name(tenant, &name),
        subjects: vec![subjects::stream_subjects(tenant, &name)],
        max_age: retention
            .max_age
            .as_deref()
            .and_then(sluice_crd::validate::parse_duration_millis)
            .map(Duration::from_millis),
        max_bytes: retention.max_bytes,
        replicas: s.spec.replicas.max(1) as usize,
        partitions: s.spec.partitions.max(1) as usize,
        tenant_uid,
    }
}

/// The verdict on a Stream's spec.
enum Verdict {
    /// Valid and within quota.
    Accepted,
    /// Refused: the `Accepted` reason and message.
    Refused(Reason, String),
}

/// Validate → admit → provision → status.
async fn apply(s: &Stream, ctx: &Context) -> Result<Action, Error> {
    let ns = s.namespace().unwrap_or_default();
    let tenant = names::tenant_of_namespace(&ns);
    let (verdict, found) = validate_and_admit(s, &ns, tenant, ctx).await?;
    let provisioned = match (&verdict, tenant) {
        (Verdict::Accepted, Some(t)) => {
            let uid = found.as_ref().and_then(|f| f.uid());
            Some(ctx.broker.ensure(&settings(t, uid, s)).await)
        }
        _ => None,
    };
    let requeue = match provisioned {
        Some(Err(_)) => Duration::from_secs(10),
        _ => ctx.config.resync,
    };
    let next = status(s, tenant, &verdict, provisioned.as_ref());
    reconcile::write_status(ctx, s, &next).await?;
    Ok(Action::requeue(requeue))
}

/// The verdict on the Stream, and its Tenant: nothing is provisioned for a reserved tenant, in
/// a namespace the operator did not create, for an invalid spec, or beyond `maxStreams`.
async fn validate_and_admit(
    s: &Stream,
    ns: &str,
    tenant: Option<&str>,
    ctx: &Context,
) -> Result<(Verdict, Option<Tenant>), Error> {
    // A Tenant being deleted provisions nothing more: its cleanup deletes its streams.
    let found = match tenant {
        Some(t) => Api::<Tenant>::all(ctx.client.clone())
            .get_opt(t)
            .await?
            .filter(|t| t.meta().deletion_timestamp.is_none()),
        None => None,
    };
    let refused = match (tenant, &found) {
        (Some(t), Some(_)) => crate::tenant::refusal(ctx, t).await?,
        _ => None,
    };
    let errors = sluice_crd::validate::stream(&s.spec);
    let verdict = match (&found, refused) {
        (_, Some(why)) => Verdict::Refused(Reason::NoTenant, why),
        (None, None) => Verdict::Refused(
            Reason::NoTenant,
            format!("namespace {ns} belongs to no tenant"),
        ),
        (Some(_), None) if !errors.is_empty() => {
            Verdict::Refused(Reason::InvalidSpec, sluice_crd::validate::describe(&errors))
        }
        (Some(t), None) => admit(s, t, ctx).await?,
    };
    Ok((verdict, found))
}

/// The Stream's next status (pure): its conditions, and its subject once provisioned.
fn status(
    s: &Stream,
    tenant: Option<&str>,
    verdict: &Verdict,
    provisioned: Option<&Result<StreamState, BrokerError>>,
) -> StreamStatus {
    let previous = reconcile::current_status(s);
    let state = provisioned.and_then(|r| r.as_ref().ok()).copied();
    let desired = desired_conditions(verdict, provisioned);
    let now = Time(jiff::Timestamp::now());
    let has_subject = state.is_some() || previous.subject.is_some();
    StreamStatus {
        subject: match (tenant, has_subject, verdict) {
            (Some(t), true, Verdict::Accepted) => Some(subjects::events_subject(t, &s.name_any())),
            _ => None,
        },
        messages: state.map(|s| s.messages as i64).or(previous.messages),
        bytes: state.map(|s| s.bytes as i64).or(previous.bytes),
        conditions: conditions::merge(&previous.conditions, &desired, s.meta().generation, &now),
        observed_generation: s.meta().generation,
    }
}

/// `Accepted` and `Ready` from the verdict and what the broker said.
fn desired_conditions(
    verdict: &Verdict,
    provisioned: Option<&Result<StreamState, BrokerError>>,
) -> Vec<Desired> {
    match (verdict, provisioned) {
        (Verdict::Refused(reason, message), _) => vec![
            Desired::fails(ConditionType::Accepted, *reason, message.clone()),
            Desired::fails(
                ConditionType::Ready,
                Reason::NotAccepted,
                "the stream is not provisioned",
            ),
        ],
        (Verdict::Accepted, None) => vec![],
        (Verdict::Accepted, Some(result)) => vec![
            Desired::holds(
                ConditionType::Accepted,
                Reason::Admitted,
                "the stream is valid and within its tenant's quota",
            ),
            match result {
                Ok(_) => Desired::holds(
                    ConditionType::Ready,
                    Reason::Provisioned,
                    "the broker stream exists and matches the spec",
                ),
                Err(e) => {
                    let reason = match e {
                        BrokerError::Unavailable(_) => Reason::BrokerUnavailable,
                        BrokerError::Refused(_) => Reason::BrokerRefused,
                    };
                    Desired::fails(ConditionType::Ready, reason, e.to_string())
                }
            },
        ],
    }
}

/// `maxStreams`, oldest first.
async fn admit(s: &Stream, tenant: &Tenant, ctx: &Context) -> Result<Verdict, Error> {
    let limits = sluice_crd::validate::tenant_limits(&tenant.spec);
    let Some(max) = limits.max_streams else {
        return Ok(Verdict::Accepted);
    };
    let ns = s.namespace().unwrap_or_default();
    let mut peers: Vec<(String, String)> = Api::<Stream>::namespaced(ctx.client.clone(), &ns)
        .list_metadata(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|m| m.metadata.deletion_timestamp.is_none())
        .map(|m| {
            let created = m
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default();
            (created, m.name_any())
        })
        .collect();
    peers.sort();
    let position = peers
        .iter()
        .position(|(_, n)| *n == s.name_any())
        .unwrap_or(peers.len());
    let used = Usage {
        streams: position as u64,
        ..Default::default()
    };
    let request = Usage {
        streams: 1,
        ..Default::default()
    };
    match quota::check(
        &quota::Limits {
            max_streams: Some(max),
            ..Default::default()
        },
        used,
        request,
    ) {
        Ok(()) => Ok(Verdict::Accepted),
        Err(e) => Ok(Verdict::Refused(
            Reason::QuotaExceeded,
            format!("admitting this stream would exceed its tenant's quota: {e}"),
        )),
    }
}

/// Removes the broker stream. With tenant accounts, a stream whose Tenant is gone or being
/// deleted is left to the Tenant's own cleanup, which deletes every stream of its account and
/// then the account.
async fn cleanup(s: &Stream, ctx: &Context) -> Result<Action, Error> {
    let ns = s.namespace().unwrap_or_default();
    let Some(tenant) = names::tenant_of_namespace(&ns) else {
        return Ok(Action::await_change());
    };
    let uid = match &ctx.accounts {
        None => None,
        Some(_) => match Api::<Tenant>::all(ctx.client.clone())
            .get_opt(tenant)
            .await?
        {
            Some(t) if t.meta().deletion_timestamp.is_none() => t.uid(),
            _ => return Ok(Action::await_change()),
        },
    };
    ctx.broker
        .delete(&settings(tenant, uid, s))
        .await
        .map_err(|e| Error::Broker(e.to_string()))?;
    Ok(Action::await_change())
}
