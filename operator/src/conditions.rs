//! Status conditions, Strimzi-style: a list keyed by `type`, each with a stable `reason`;
//! `lastTransitionTime` moves only when a condition's status flips.

use sluice_crd::{Condition, ConditionStatus, ConditionType};

/// A condition as a reconciler wants it, before timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// Which aspect of the object it describes.
    pub type_: ConditionType,
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// Stable CamelCase reason.
    pub reason: &'static str,
    /// Human message.
    pub message: String,
}

impl Desired {
    /// A condition that holds.
    pub fn holds(type_: ConditionType, reason: &'static str, message: impl Into<String>) -> Self {
        Desired {
            type_,
            status: ConditionStatus::True,
            reason,
            message: message.into(),
        }
    }

    /// A condition that does not hold.
    pub fn fails(type_: ConditionType, reason: &'static str, message: impl Into<String>) -> Self {
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
                reason: Some(d.reason.to_string()),
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
            &[Desired::holds(ConditionType::Ready, "RoutesReady", "ok")],
            Some(1),
            &t0,
        );
        assert_eq!(first[0].last_transition_time, Some(t0.clone()));
        let same = merge(
            &first,
            &[Desired::holds(
                ConditionType::Ready,
                "RoutesReady",
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
                "RoutesNotReady",
                "down",
            )],
            Some(2),
            &t1,
        );
        assert_eq!(flipped[0].last_transition_time, Some(t1));
        assert_eq!(transitions(&same, &flipped).len(), 1);
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
