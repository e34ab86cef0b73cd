//! The status of a pipeline (pure): from the verdict on its spec and what its route
//! Deployments report.

use crate::conditions::{self, Desired, Reason};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use sluice_crd::{ConditionStatus, ConditionType, PipelinePhase, PipelineStatus, RouteStatus};

/// Why a pipeline is, or is not, accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and within quota.
    Accepted,
    /// Its namespace belongs to no tenant.
    NoTenant(String),
    /// The spec is invalid (message names the fields).
    InvalidSpec(String),
    /// Admitting it would break the tenant's quota (message names the limit).
    QuotaExceeded(String),
    /// Its source stream does not exist (yet).
    StreamNotFound(String),
}

impl Verdict {
    fn reason(&self) -> Reason {
        match self {
            Verdict::Accepted => Reason::Admitted,
            Verdict::NoTenant(_) => Reason::NoTenant,
            Verdict::InvalidSpec(_) => Reason::InvalidSpec,
            Verdict::QuotaExceeded(_) => Reason::QuotaExceeded,
            Verdict::StreamNotFound(_) => Reason::StreamNotFound,
        }
    }

    fn message(&self) -> String {
        match self {
            Verdict::Accepted => "the pipeline is valid and within its tenant's quota".into(),
            Verdict::NoTenant(m)
            | Verdict::InvalidSpec(m)
            | Verdict::QuotaExceeded(m)
            | Verdict::StreamNotFound(m) => m.clone(),
        }
    }
}

/// What one route's Deployment reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteObservation {
    /// The sink.
    pub sink: String,
    /// Desired replicas (`spec.replicas`).
    pub desired: i32,
    /// Replicas running.
    pub replicas: i32,
    /// Replicas ready.
    pub ready: i32,
    /// Whether the Deployment has rolled out its current spec.
    pub rolled_out: bool,
    /// Whether the rollout failed (pods crash or never start past the deadline).
    pub failed: bool,
    /// What the Deployment says about the failure, when it says more than the usual
    /// timed-out message (e.g. `sluice dev` refusing a path outside its data directory).
    pub failure: Option<String>,
}

/// Everything the status is computed from.
pub struct Inputs<'a> {
    /// The verdict on the spec.
    pub verdict: &'a Verdict,
    /// The routes that exist (from the last accepted spec).
    pub routes: &'a [RouteObservation],
    /// Whether the pipeline or its tenant is suspended.
    pub suspended: bool,
    /// Why the pipeline's dead-letter stream cannot take dead events, when it cannot (it
    /// does not exist or is not provisioned). The routes keep delivering; their workers give
    /// dead events back to the source and retry them with backoff.
    pub dead_letter_unavailable: Option<String>,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// Label selector of the pipeline's pods.
    pub selector: String,
    /// The current status.
    pub previous: &'a PipelineStatus,
    /// Now, for conditions that flip.
    pub now: &'a Time,
}

/// The new status.
pub fn compute(i: &Inputs) -> PipelineStatus {
    let accepted = *i.verdict == Verdict::Accepted;
    let routes = i.routes;
    let all_ready = !routes.is_empty() && routes.iter().all(|r| r.ready >= r.desired);
    let rolling = routes.iter().any(|r| !r.rolled_out);
    let failing: Vec<&RouteObservation> = routes.iter().filter(|r| r.failed).collect();
    let not_ready: Vec<String> = routes
        .iter()
        .filter(|r| r.ready < r.desired)
        .map(|r| format!("{} {}/{}", r.sink, r.ready, r.desired))
        .collect();

    let accepted_c = if accepted {
        Desired::holds(
            ConditionType::Accepted,
            i.verdict.reason(),
            i.verdict.message(),
        )
    } else {
        Desired::fails(
            ConditionType::Accepted,
            i.verdict.reason(),
            i.verdict.message(),
        )
    };
    let ready_c = if i.suspended && accepted {
        Desired::fails(
            ConditionType::Ready,
            Reason::Suspended,
            "the pipeline or its tenant is suspended",
        )
    } else if routes.is_empty() {
        Desired::fails(
            ConditionType::Ready,
            Reason::NoRoutes,
            "no route is running",
        )
    } else if all_ready {
        Desired::holds(
            ConditionType::Ready,
            Reason::RoutesReady,
            format!("all {} routes run their replicas", routes.len()),
        )
    } else {
        Desired::fails(
            ConditionType::Ready,
            Reason::RoutesNotReady,
            format!("routes not ready (ready/desired): {}", not_ready.join(", ")),
        )
    };
    let progressing_c = if rolling {
        Desired::holds(
            ConditionType::Progressing,
            Reason::RolloutInProgress,
            "routes are rolling out",
        )
    } else {
        Desired::fails(
            ConditionType::Progressing,
            Reason::RolloutComplete,
            "every route runs its current configuration",
        )
    };
    let degraded_c = if !failing.is_empty() {
        let names: Vec<String> = failing
            .iter()
            .map(|r| match &r.failure {
                Some(why) => format!("{} ({why})", r.sink),
                None => r.sink.clone(),
            })
            .collect();
        Desired::holds(
            ConditionType::Degraded,
            Reason::RouteFailing,
            format!("routes failing: {}", names.join(", ")),
        )
    } else if let (Some(why), false) = (&i.dead_letter_unavailable, routes.is_empty()) {
        Desired::holds(
            ConditionType::Degraded,
            Reason::DeadLetterUnavailable,
            why.clone(),
        )
    } else {
        Desired::fails(
            ConditionType::Degraded,
            Reason::NoFailures,
            "no route is failing",
        )
    };
    let degraded = degraded_c.status == ConditionStatus::True;
    let phase = if i.suspended && accepted {
        PipelinePhase::Suspended
    } else if routes.is_empty() {
        if accepted {
            PipelinePhase::Pending
        } else {
            PipelinePhase::Failed
        }
    } else if degraded {
        PipelinePhase::Degraded
    } else if all_ready {
        PipelinePhase::Running
    } else {
        PipelinePhase::Pending
    };
    let desired = [accepted_c, ready_c, progressing_c, degraded_c];
    let conditions = conditions::merge(&i.previous.conditions, &desired, i.generation, i.now);
    // The headline: the first condition that is not as it should be.
    let headline = desired
        .iter()
        .find(|d| conditions::is_warning(Some(d.type_), d.status));
    let (reason, message) = match headline {
        Some(d) => (d.reason.as_str().to_string(), d.message.clone()),
        None => (
            Reason::Running.as_str().to_string(),
            "every route runs its replicas".to_string(),
        ),
    };
    PipelineStatus {
        phase: Some(phase),
        replicas: routes.iter().map(|r| r.replicas).min().unwrap_or(0),
        ready_replicas: routes.iter().map(|r| r.ready).min().unwrap_or(0),
        selector: Some(i.selector.clone()),
        routes: routes
            .iter()
            .map(|r| RouteStatus {
                sink: r.sink.clone(),
                replicas: r.replicas,
                ready_replicas: r.ready,
            })
            .collect(),
        conditions,
        observed_generation: i.generation,
        message: Some(message),
        reason: Some(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(sink: &str, desired: i32, ready: i32, failed: bool) -> RouteObservation {
        RouteObservation {
            sink: sink.into(),
            desired,
            replicas: desired,
            ready,
            rolled_out: true,
            failed,
            failure: None,
        }
    }

    fn run(verdict: Verdict, routes: &[RouteObservation], suspended: bool) -> PipelineStatus {
        run_with(verdict, routes, suspended, None)
    }

    fn run_with(
        verdict: Verdict,
        routes: &[RouteObservation],
        suspended: bool,
        dead_letter_unavailable: Option<String>,
    ) -> PipelineStatus {
        let now = Time("2026-01-01T00:00:00Z".parse().unwrap());
        compute(&Inputs {
            verdict: &verdict,
            routes,
            suspended,
            dead_letter_unavailable,
            generation: Some(3),
            selector: "s".into(),
            previous: &PipelineStatus::default(),
            now: &now,
        })
    }

    #[test]
    fn a_missing_dead_letter_stream_degrades_a_running_pipeline() {
        let why = "the dead-letter stream \"dead\" does not exist".to_string();
        let s = run_with(
            Verdict::Accepted,
            &[obs("a", 1, 1, false)],
            false,
            Some(why.clone()),
        );
        assert_eq!(s.phase, Some(PipelinePhase::Degraded));
        let d = cond(&s, "Degraded");
        assert_eq!(d.status, ConditionStatus::True);
        assert_eq!(d.reason.as_deref(), Some("DeadLetterUnavailable"));
        assert_eq!(d.message.as_deref(), Some(why.as_str()));
        assert_eq!(s.reason.as_deref(), Some("DeadLetterUnavailable"));
        // A failing route says more.
        let s = run_with(Verdict::Accepted, &[obs("a", 1, 0, true)], false, Some(why));
        assert_eq!(cond(&s, "Degraded").reason.as_deref(), Some("RouteFailing"));
    }

    fn cond<'a>(s: &'a PipelineStatus, t: &str) -> &'a sluice_crd::Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn running_when_every_route_is_ready() {
        let s = run(
            Verdict::Accepted,
            &[obs("a", 2, 2, false), obs("b", 2, 2, false)],
            false,
        );
        assert_eq!(s.phase, Some(PipelinePhase::Running));
        assert_eq!(cond(&s, "Ready").status, ConditionStatus::True);
        assert_eq!(cond(&s, "Accepted").reason.as_deref(), Some("Admitted"));
        assert_eq!((s.replicas, s.ready_replicas), (2, 2));
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.reason.as_deref(), Some("Running"));
    }

    #[test]
    fn one_failing_sink_degrades_without_hiding_the_others() {
        let s = run(
            Verdict::Accepted,
            &[obs("a", 1, 1, false), obs("b", 1, 0, true)],
            false,
        );
        assert_eq!(s.phase, Some(PipelinePhase::Degraded));
        assert_eq!(cond(&s, "Degraded").status, ConditionStatus::True);
        assert!(
            cond(&s, "Degraded")
                .message
                .as_deref()
                .unwrap()
                .contains('b')
        );
        assert_eq!(s.routes[0].ready_replicas, 1);
    }

    #[test]
    fn refused_pipelines_fail_with_a_stable_reason() {
        let s = run(
            Verdict::QuotaExceeded("quota maxPipelines is 1: 1 in use, 1 requested".into()),
            &[],
            false,
        );
        assert_eq!(s.phase, Some(PipelinePhase::Failed));
        assert_eq!(s.reason.as_deref(), Some("QuotaExceeded"));
        assert!(s.message.as_deref().unwrap().contains("maxPipelines"));
        assert_eq!(cond(&s, "Accepted").status, ConditionStatus::False);
    }

    #[test]
    fn invalid_spec_keeps_reporting_the_running_routes() {
        let s = run(
            Verdict::InvalidSpec("spec.filter: bad".into()),
            &[obs("a", 1, 1, false)],
            false,
        );
        assert_eq!(s.phase, Some(PipelinePhase::Running));
        assert_eq!(s.reason.as_deref(), Some("InvalidSpec"));
        assert_eq!(cond(&s, "Ready").status, ConditionStatus::True);
    }

    #[test]
    fn suspended() {
        let s = run(Verdict::Accepted, &[obs("a", 0, 0, false)], true);
        assert_eq!(s.phase, Some(PipelinePhase::Suspended));
        assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("Suspended"));
    }
}
