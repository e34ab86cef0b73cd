//! Quota admission of a tenant's pipelines (pure). Pipelines are admitted oldest first
//! (creation time, then name): each one fits or not next to the ones admitted before it, so
//! the decision is deterministic, the same whichever pipeline is reconciled, and a pipeline
//! refused for lack of room is admitted by itself when room appears.

use sluice_core::quota::{self, Exceeded, Limits, Usage};
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
}
