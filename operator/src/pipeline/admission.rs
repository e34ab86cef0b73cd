//! Quota admission of a tenant's pipelines (pure). Pipelines are admitted oldest first
//! (creation time, then name): each one fits or not next to the ones admitted before it, so
//! the decision is deterministic, the same whichever pipeline is reconciled, and a pipeline
//! refused for lack of room is admitted by itself when room appears.
//!
//! Re-admission lives here too: what decision a pipeline's status records, and when that
//! record is out of date, so the pipeline deserves another reconcile.

use crate::conditions::Reason;
use sluice_core::quota::{self, Exceeded, Limits, Usage};
use sluice_crd::{ConditionType, Pipeline};
use std::collections::BTreeMap;

/// One pipeline of the tenant, as admission sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Name.
    pub name: String,
    /// Creation time (RFC 3339; sorts chronologically).
    pub created: String,
    /// What it asks for when admitted.
    pub demand: Usage,
    /// Whether its spec is valid. Invalid pipelines count as a pipeline (toward
    /// `maxPipelines`) and ask for no workers.
    pub valid: bool,
}

/// The decision for one pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// It fits.
    Admitted,
    /// It does not fit; the first limit it breaks.
    Refused(Exceeded),
}

/// Decides every candidate. `base` is what is used outside pipelines (e.g. streams).
pub fn admit(limits: &Limits, base: Usage, candidates: &[Candidate]) -> BTreeMap<String, Decision> {
    let mut order: Vec<&Candidate> = candidates.iter().collect();
    order.sort_by(|a, b| (&a.created, &a.name).cmp(&(&b.created, &b.name)));
    let mut used = base;
    let mut out = BTreeMap::new();
    for c in order {
        let demand = if c.valid {
            c.demand
        } else {
            Usage {
                pipelines: 1,
                ..Default::default()
            }
        };
        match quota::check(limits, used, demand) {
            Ok(()) => {
                used = used + demand;
                out.insert(c.name.clone(), Decision::Admitted);
            }
            Err(e) => {
                out.insert(c.name.clone(), Decision::Refused(e));
            }
        }
    }
    out
}

/// What the admitted pipelines use in total.
pub fn admitted_usage(candidates: &[Candidate], decisions: &BTreeMap<String, Decision>) -> Usage {
    candidates
        .iter()
        .filter(|c| c.valid && decisions.get(&c.name) == Some(&Decision::Admitted))
        .map(|c| c.demand)
        .sum()
}

/// The admission decision a pipeline's status records (its `Accepted` condition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// `Accepted=True`.
    Admitted,
    /// `Accepted` does not hold, for lack of quota.
    RefusedForQuota,
    /// Refused for another reason, or no decision recorded yet.
    Other,
}

/// What `p`'s status records.
pub fn recorded(p: &Pipeline) -> Recorded {
    let accepted = p
        .status
        .as_ref()
        .and_then(|s| sluice_crd::condition::find(&s.conditions, ConditionType::Accepted));
    match accepted {
        Some(c) if c.holds() => Recorded::Admitted,
        Some(c) if c.reason.as_deref() == Some(Reason::QuotaExceeded.as_str()) => {
            Recorded::RefusedForQuota
        }
        _ => Recorded::Other,
    }
}

/// Whether a recorded decision is out of date now that the pipeline is (or is not) admitted:
/// an admitted pipeline that no longer fits, or one refused for quota that now fits. Other
/// refusals are not quota's business.
pub fn is_stale(recorded: Recorded, now_admitted: bool) -> bool {
    match recorded {
        Recorded::Admitted => !now_admitted,
        Recorded::RefusedForQuota => now_admitted,
        Recorded::Other => false,
    }
}

/// The pipelines among `peers` (other than `name`) whose recorded decision `decisions`
/// contradicts: each deserves a reconcile, so room that appears is used without anyone
/// touching them.
pub fn stale_peers<'a, P: AsRef<Pipeline>>(
    peers: &'a [P],
    name: &str,
    decisions: &BTreeMap<String, Decision>,
) -> impl Iterator<Item = &'a Pipeline> {
    peers.iter().map(AsRef::as_ref).filter(move |q| {
        let q_name = q.metadata.name.as_deref().unwrap_or_default();
        q_name != name
            && is_stale(
                recorded(q),
                decisions.get(q_name) == Some(&Decision::Admitted),
            )
    })
}

/// The pipelines among `peers` refused for quota: when a pipeline goes, they may fit.
pub fn refused_for_quota<P: AsRef<Pipeline>>(peers: &[P]) -> impl Iterator<Item = &Pipeline> {
    peers
        .iter()
        .map(AsRef::as_ref)
        .filter(|q| recorded(q) == Recorded::RefusedForQuota)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::quota::{Limit, pipeline_demand};

    fn c(name: &str, created: &str, routes: u64, replicas: u64) -> Candidate {
        Candidate {
            name: name.into(),
            created: created.into(),
            demand: pipeline_demand(routes, replicas, false, 100, 1 << 20),
            valid: true,
        }
    }

    #[test]
    fn oldest_first_whatever_the_input_order() {
        let limits = Limits {
            max_pipelines: Some(2),
            ..Default::default()
        };
        let cands = vec![
            c("c", "2026-01-03T00:00:00Z", 1, 1),
            c("a", "2026-01-01T00:00:00Z", 1, 1),
            c("b", "2026-01-02T00:00:00Z", 1, 1),
        ];
        let d = admit(&limits, Usage::default(), &cands);
        assert_eq!(d["a"], Decision::Admitted);
        assert_eq!(d["b"], Decision::Admitted);
        assert!(matches!(d["c"], Decision::Refused(e) if e.limit == Limit::MaxPipelines));
        // Room appears when an older one goes.
        let d = admit(&limits, Usage::default(), &cands[..2]);
        assert_eq!(d["c"], Decision::Admitted);
    }

    #[test]
    fn a_big_pipeline_does_not_block_smaller_later_ones() {
        let limits = Limits {
            max_parallelism: Some(4),
            ..Default::default()
        };
        let cands = vec![
            c("small", "2026-01-01T00:00:00Z", 1, 2),
            c("huge", "2026-01-02T00:00:00Z", 2, 2),
            c("tiny", "2026-01-03T00:00:00Z", 1, 1),
        ];
        let d = admit(&limits, Usage::default(), &cands);
        assert_eq!(d["small"], Decision::Admitted);
        assert!(
            matches!(d["huge"], Decision::Refused(e) if e.limit == Limit::MaxParallelism && e.used == 2 && e.requested == 4)
        );
        assert_eq!(d["tiny"], Decision::Admitted);
        assert_eq!(admitted_usage(&cands, &d).parallelism, 3);
    }

    #[test]
    fn same_creation_time_breaks_ties_by_name() {
        let limits = Limits {
            max_pipelines: Some(1),
            ..Default::default()
        };
        let t = "2026-01-01T00:00:00Z";
        let d = admit(
            &limits,
            Usage::default(),
            &[c("b", t, 1, 1), c("a", t, 1, 1)],
        );
        assert_eq!(d["a"], Decision::Admitted);
        assert!(matches!(d["b"], Decision::Refused(_)));
    }

    fn recorded_as(accepted: Option<(sluice_crd::ConditionStatus, &str)>) -> Pipeline {
        let mut p: Pipeline = serde_json::from_value(serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline",
            "metadata": {"name": "p", "namespace": "sluice-t"},
            "spec": {"source": {"stream": "s"}, "sinks": [{"name": "a", "nats": {"subject": "x"}}]}
        }))
        .unwrap();
        if let Some((status, reason)) = accepted {
            p.status = Some(sluice_crd::PipelineStatus {
                conditions: vec![sluice_crd::Condition {
                    type_: "Accepted".into(),
                    status,
                    reason: Some(reason.into()),
                    message: None,
                    last_transition_time: None,
                    observed_generation: None,
                }],
                ..Default::default()
            });
        }
        p
    }

    #[test]
    fn a_recorded_decision_is_stale_when_quota_says_otherwise() {
        use sluice_crd::ConditionStatus::{False, True};
        let admitted = recorded_as(Some((True, "Admitted")));
        let refused = recorded_as(Some((False, "QuotaExceeded")));
        let invalid = recorded_as(Some((False, "InvalidSpec")));
        let undecided = recorded_as(None);
        assert_eq!(recorded(&admitted), Recorded::Admitted);
        assert_eq!(recorded(&refused), Recorded::RefusedForQuota);
        assert_eq!(recorded(&invalid), Recorded::Other);
        assert_eq!(recorded(&undecided), Recorded::Other);
        assert!(is_stale(Recorded::Admitted, false));
        assert!(!is_stale(Recorded::Admitted, true));
        assert!(is_stale(Recorded::RefusedForQuota, true));
        assert!(!is_stale(Recorded::RefusedForQuota, false));
        assert!(!is_stale(Recorded::Other, true));
        assert!(!is_stale(Recorded::Other, false));
        let name = |p: &Pipeline| p.metadata.name.clone().unwrap();
        let peers: Vec<std::sync::Arc<Pipeline>> = [admitted, refused, invalid]
            .into_iter()
            .enumerate()
            .map(|(i, mut p)| {
                p.metadata.name = Some(format!("p{i}"));
                std::sync::Arc::new(p)
            })
            .collect();
        // p0 no longer fits, p1 now fits; p2 is not quota's business.
        let decisions = BTreeMap::from([
            (
                "p0".to_string(),
                Decision::Refused(Exceeded {
                    limit: quota::Limit::MaxPipelines,
                    max: 1,
                    used: 1,
                    requested: 1,
                }),
            ),
            ("p1".to_string(), Decision::Admitted),
            ("p2".to_string(), Decision::Admitted),
        ]);
        let stale: Vec<String> = stale_peers(&peers, "x", &decisions).map(name).collect();
        assert_eq!(stale, ["p0", "p1"]);
        let stale: Vec<String> = stale_peers(&peers, "p1", &decisions).map(name).collect();
        assert_eq!(
            stale,
            ["p0"],
            "the pipeline being reconciled is not its own peer"
        );
        let refused: Vec<String> = refused_for_quota(&peers).map(name).collect();
        assert_eq!(refused, ["p1"]);
    }
}
