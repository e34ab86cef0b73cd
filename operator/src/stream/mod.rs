//! The Stream controller: a Stream in a tenant namespace gets its backing broker stream
//! (subjects namespaced by tenant) or Kafka topic, kept in line with its retention and
//! partitions; a finalizer removes it when the Stream goes. `maxStreams` is enforced oldest
//! first, like pipelines.

pub mod broker;
pub mod kafka;

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
use sluice_crd::{ConditionType, Stream, StreamBroker, StreamStatus, Tenant};
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

/// The broker a Stream lives on: the one it was provisioned on, else the one its spec names,
/// else the platform's default (pure). A changed platform default never moves a stream.
pub fn broker_of(s: &Stream, default: StreamBroker) -> StreamBroker {
    s.status
        .as_ref()
        .and_then(|st| st.broker)
        .or(s.spec.broker)
        .unwrap_or(default)
}

/// Why the spec's broker cannot be the stream's, if it cannot: the stream was provisioned on
/// another one (pure).
fn broker_change(s: &Stream) -> Option<String> {
    let provisioned = s.status.as_ref().and_then(|st| st.broker)?;
    let asked = s.spec.broker?;
    (asked != provisioned).then(|| {
        format!(
            "spec.broker: the stream lives on {provisioned} and cannot move to {asked}; create \
             another stream"
        )
    })
}

/// The broker settings of a Stream of `tenant` (whose uid is `tenant_uid`), on `broker`.
pub fn settings(
    tenant: &str,
    tenant_uid: Option<String>,
    s: &Stream,
    broker: StreamBroker,
) -> StreamSettings {
    let name = s.name_any();
    let retention = s.spec.retention.clone().unwrap_or_default();
    StreamSettings {
        broker,
        name: match broker {
            StreamBroker::Nats => subjects::jetstream_name(tenant, &name),
            StreamBroker::Kafka => kafka::topic_name(tenant, &name),
        },
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
    let broker = broker_of(s, ctx.config.default_stream_broker);
    let provisioned = match (&verdict, tenant) {
        (Verdict::Accepted, Some(t)) => {
            let uid = found.as_ref().and_then(|f| f.uid());
            Some(ctx.broker.ensure(&settings(t, uid, s, broker)).await)
        }
        _ => None,
    };
    let requeue = match provisioned {
        Some(Err(_)) => Duration::from_secs(10),
        _ => ctx.config.resync,
    };
    let next = status(s, tenant, broker, &verdict, provisioned.as_ref());
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
    let mut errors = sluice_crd::validate::stream(&s.spec);
    if let Some(why) = broker_change(s) {
        errors.push(sluice_crd::validate::FieldError {
            field: "spec.broker".into(),
            message: why,
        });
    }
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

/// The Stream's next status (pure): its conditions, its broker, and once provisioned its
/// subject (JetStream) or its topic, partitions and end offsets (Kafka).
fn status(
    s: &Stream,
    tenant: Option<&str>,
    broker: StreamBroker,
    verdict: &Verdict,
    provisioned: Option<&Result<StreamState, BrokerError>>,
) -> StreamStatus {
    let previous = reconcile::current_status(s);
    let state = provisioned.and_then(|r| r.as_ref().ok()).cloned();
    let desired = desired_conditions(verdict, provisioned);
    let now = Time(jiff::Timestamp::now());
    let was_provisioned = previous.subject.is_some() || previous.topic.is_some();
    let live = state.is_some() || was_provisioned;
    let name = s.name_any();
    let (subject, topic) = match (tenant, live, verdict, broker) {
        (Some(t), true, Verdict::Accepted, StreamBroker::Nats) => {
            (Some(subjects::events_subject(t, &name)), None)
        }
        (Some(t), true, Verdict::Accepted, StreamBroker::Kafka) => {
            (None, Some(kafka::topic_name(t, &name)))
        }
        _ => (None, None),
    };
    let kafka = broker == StreamBroker::Kafka;
    StreamStatus {
        subject,
        topic,
        broker: (state.is_some() || was_provisioned)
            .then_some(broker)
            .or(previous.broker),
        messages: state
            .as_ref()
            .map(|s| s.messages as i64)
            .or(previous.messages),
        bytes: match &state {
            Some(st) if !kafka => Some(st.bytes as i64),
            Some(_) => None,
            None => previous.bytes,
        },
        partitions: state
            .as_ref()
            .and_then(|s| s.partitions)
            .map(|n| n as i32)
            .or(previous.partitions),
        end_offsets: state
            .map(|s| s.end_offsets)
            .filter(|o| !o.is_empty())
            .unwrap_or(previous.end_offsets),
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
                Ok(state) => Desired::holds(
                    ConditionType::Ready,
                    Reason::Provisioned,
                    match &state.note {
                        None => "the broker stream exists and matches the spec".to_string(),
                        Some(note) => format!("the broker stream exists; {note}"),
                    },
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

/// Removes the broker stream. With tenant accounts, a JetStream stream whose Tenant is gone
/// or being deleted is left to the Tenant's own cleanup, which deletes every stream of its
/// account and then the account; a Kafka topic is always deleted here.
async fn cleanup(s: &Stream, ctx: &Context) -> Result<Action, Error> {
    let ns = s.namespace().unwrap_or_default();
    let Some(tenant) = names::tenant_of_namespace(&ns) else {
        return Ok(Action::await_change());
    };
    let broker = broker_of(s, ctx.config.default_stream_broker);
    let uid = match &ctx.accounts {
        _ if broker == StreamBroker::Kafka => None,
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
        .delete(&settings(tenant, uid, s, broker))
        .await
        .map_err(|e| Error::Broker(e.to_string()))?;
    Ok(Action::await_change())
}
