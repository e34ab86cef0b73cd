//! Status conditions, Strimzi-style: a list keyed by `type`, each with a stable `reason`;
//! `lastTransitionTime` moves only when a condition's status flips.

use sluice_crd::{Condition, ConditionStatus, ConditionType};

/// The reason of a condition. In status it is a stable CamelCase string, part of the API
/// ([`Reason::as_str`]); in code, one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `Accepted`: valid and within the tenant's quota.
    Admitted,
    /// `Accepted`: the namespace belongs to no tenant the operator serves.
    NoTenant,
    /// `Accepted` (`Ready` for a Tenant): the spec is invalid.
    InvalidSpec,
    /// `Accepted`: admitting it would exceed the tenant's quota.
    QuotaExceeded,
    /// `Accepted`: a pipeline's source stream does not exist or is not provisioned.
    StreamNotFound,
    /// `Ready` of a suspended pipeline; `Suspended` of a suspended tenant.
    Suspended,
    /// `Ready`: no route is running.
    NoRoutes,
    /// `Ready`: every route runs its replicas.
    RoutesReady,
    /// `Ready`: some route runs fewer replicas than desired.
    RoutesNotReady,
    /// `Progressing`: routes are rolling out.
    RolloutInProgress,
    /// `Progressing` (False): every route runs its current configuration.
    RolloutComplete,
    /// `Degraded`: some route fails to roll out.
    RouteFailing,
    /// `Degraded`: the dead-letter stream cannot take dead events.
    DeadLetterUnavailable,
    /// `Degraded` (False): no route is failing.
    NoFailures,
    /// A pipeline's headline `reason` when every condition is as it should be.
    Running,
    /// `Ready` of a Tenant whose name is reserved.
    ReservedName,
    /// `Ready` of a Tenant whose namespace exists and was not created by the operator.
    NamespaceConflict,
    /// `Ready` of a Tenant whose namespace is set up.
    NamespaceReady,
    /// `Ready` of a Stream that is not accepted.
    NotAccepted,
    /// `Ready` of a Stream whose broker stream exists and matches its spec.
    Provisioned,
    /// `Ready` of a Stream: the broker cannot be reached.
    BrokerUnavailable,
    /// `Ready` of a Stream: the broker refused the stream.
    BrokerRefused,
}

impl Reason {
    /// The reason as it appears in status.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Admitted => "Admitted",
            Self::NoTenant => "NoTenant",
            Self::InvalidSpec => "InvalidSpec",
            Self::QuotaExceeded => "QuotaExceeded",
            Self::StreamNotFound => "StreamNotFound",
            Self::Suspended => "Suspended",
            Self::NoRoutes => "NoRoutes",
            Self::RoutesReady => "RoutesReady",
            Self::RoutesNotReady => "RoutesNotReady",
            Self::RolloutInProgress => "RolloutInProgress",
            Self::RolloutComplete => "RolloutComplete",
            Self::RouteFailing => "RouteFailing",
            Self::DeadLetterUnavailable => "DeadLetterUnavailable",
            Self::NoFailures => "NoFailures",
            Self::Running => "Running",
            Self::ReservedName => "ReservedName",
            Self::NamespaceConflict => "NamespaceConflict",
            Self::NamespaceReady => "NamespaceReady",
            Self::NotAccepted => "NotAccepted",
            Self::Provisioned => "Provisioned",
            Self::BrokerUnavailable => "BrokerUnavailable",
            Self::BrokerRefused => "BrokerRefused",
        }
    }
}

/// A condition as a reconciler wants it, before timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// Which aspect of the object it describes.
    pub type_: ConditionType,
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// Why.
    pub reason: Reason,
    /// Human message.
    pub message: String,
}

impl Desired {
    /// A condition that holds.
    pub fn holds(type_: ConditionType, reason: Reason, message: impl Into<String>) -> Self {
        Desired {
            type_,
            status: ConditionStatus::True,
            reason,
            message: message.into(),
        }
    }

    /// A condition that does not hold.
    pub fn fails(type_: ConditionType, reason: Reason, message: impl Into<String>) -> Self {
        Desired {
            type_,
            status: ConditionStatus::False,
            reason,
            message: message.into(),
        }
    }
}

/// The new condition list: `desired` in order, keeping each previous `lastTransitionTime`
/// when the status did not change. `now` stamps the ones that flipped or are new.
pub fn merge(
    previous: &[Condition],
    desired: &[Desired],
    generation: Option<i64>,
    now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> Vec<Condition> {
    desired
        .iter()
        .map(|d| {
            let before = sluice_crd::condition::find(previous, d.type_);
            let last_transition_time = match before {
                Some(b) if b.status == d.status => b.last_transition_time.clone(),
                _ => Some(now.clone()),
            };
            Condition {
                type_: d.type_.as_str().to_string(),
                status: d.status,
                reason: Some(d.reason.as_str().to_string()),
                message: Some(d.message.clone()),
                last_transition_time,
                observed_generation: generation,
            }
        })
        .collect()
}

/// Whether a condition of `type_` with `status` is bad news (an Event of type Warning, a
/// pipeline's headline): `Degraded` when it holds, `Progressing` never, any other type when
/// it does not hold. A type this operator does not know is bad news when it does not hold.
pub fn is_warning(type_: Option<ConditionType>, status: ConditionStatus) -> bool {
    match type_ {
        Some(ConditionType::Degraded) => status == ConditionStatus::True,
        Some(ConditionType::Progressing) => false,
        _ => status != ConditionStatus::True,
    }
}

/// [`is_warning`] of a condition as it is in a status.
pub fn warns(c: &Condition) -> bool {
    is_warning(c.type_.parse().ok(), c.status)
}

/// The conditions whose status changed (or that are new) between two lists: what deserves an
/// Event.
pub fn transitions<'a>(previous: &[Condition], next: &'a [Condition]) -> Vec<&'a Condition> {
    next.iter()
        .filter(|n| {
            previous
                .iter()
                .find(|p| p.type_ == n.type_)
                .is_none_or(|p| p.status != n.status || p.reason != n.reason)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn time(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn transition_time_moves_only_on_flips() {
        let t0 = time("2026-01-01T00:00:00Z");
        let t1 = time("2026-01-01T00:05:00Z");
        let first = merge(
            &[],
            &[Desired::holds(
                ConditionType::Ready,
                Reason::RoutesReady,
                "ok",
            )],
            Some(1),
            &t0,
        );
        assert_eq!(first[0].last_transition_time, Some(t0.clone()));
        let same = merge(
            &first,
            &[Desired::holds(
                ConditionType::Ready,
                Reason::RoutesReady,
                "still ok",
            )],
            Some(2),
            &t1,
        );
        assert_eq!(same[0].last_transition_time, Some(t0.clone()));
        assert_eq!(same[0].observed_generation, Some(2));
        assert!(transitions(&first, &same).is_empty());
        let flipped = merge(
            &same,
            &[Desired::fails(
                ConditionType::Ready,
                Reason::RoutesNotReady,
                "down",
            )],
            Some(2),
            &t1,
        );
        assert_eq!(flipped[0].last_transition_time, Some(t1));
        assert_eq!(transitions(&same, &flipped).len(), 1);
    }

    #[test]
    fn reasons_are_their_names_in_status() {
        for r in [
            Reason::Admitted,
            Reason::QuotaExceeded,
            Reason::ReservedName,
            Reason::NamespaceConflict,
            Reason::DeadLetterUnavailable,
            Reason::BrokerUnavailable,
        ] {
            assert_eq!(r.as_str(), format!("{r:?}"));
        }
    }

    #[test]
    fn warnings() {
        use ConditionStatus::{False, True};
        assert!(is_warning(Some(ConditionType::Degraded), True));
        assert!(!is_warning(Some(ConditionType::Degraded), False));
        assert!(!is_warning(Some(ConditionType::Progressing), True));
        assert!(!is_warning(Some(ConditionType::Progressing), False));
        for t in [ConditionType::Accepted, ConditionType::Ready] {
            assert!(!is_warning(Some(t), True));
            assert!(is_warning(Some(t), False));
        }
        assert!(!is_warning(Some(ConditionType::Suspended), True));
    }
}
