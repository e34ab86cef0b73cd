//! Status conditions, Strimzi-style: a list keyed by `type`, each with a stable `reason`;
//! `lastTransitionTime` moves only when a condition's status flips.

use sluice_crd::{Condition, ConditionStatus};

/// A condition as a reconciler wants it, before timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// `Accepted`, `Ready`, `Progressing`, `Degraded`.
    pub type_: &'static str,
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// Stable CamelCase reason.
    pub reason: &'static str,
    /// Human message.
    pub message: String,
}

impl Desired {
    /// A condition that holds.
    pub fn holds(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Desired {
            type_,
            status: ConditionStatus::True,
            reason,
            message: message.into(),
        }
    }

    /// A condition that does not hold.
    pub fn fails(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
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
            let before = previous.iter().find(|c| c.type_ == d.type_);
            let last_transition_time = match before {
                Some(b) if b.status == d.status => b.last_transition_time.clone(),
                _ => Some(now.clone()),
            };
            Condition {
                type_: d.type_.to_string(),
                status: d.status,
                reason: Some(d.reason.to_string()),
                message: Some(d.message.clone()),
                last_transition_time,
                observed_generation: generation,
            }
        })
        .collect()
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
            &[Desired::holds("Ready", "RoutesReady", "ok")],
            Some(1),
            &t0,
        );
        assert_eq!(first[0].last_transition_time, Some(t0.clone()));
        let same = merge(
            &first,
            &[Desired::holds("Ready", "RoutesReady", "still ok")],
            Some(2),
            &t1,
        );
        assert_eq!(same[0].last_transition_time, Some(t0.clone()));
        assert_eq!(same[0].observed_generation, Some(2));
        assert!(transitions(&first, &same).is_empty());
        let flipped = merge(
            &same,
            &[Desired::fails("Ready", "RoutesNotReady", "down")],
            Some(2),
            &t1,
        );
        assert_eq!(flipped[0].last_transition_time, Some(t1));
        assert_eq!(transitions(&same, &flipped).len(), 1);
    }
}
