//! The status a Deployment controller and kubelet would report for what the local runner
//! observes of a route's worker processes (pure).

use serde_json::{Value, json};

/// What the runner sees of one Deployment's workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The Deployment's `metadata.generation` the runner has acted on.
    pub generation: i64,
    /// `spec.replicas`.
    pub desired: i32,
    /// Worker processes alive.
    pub running: i32,
    /// Of those, the ones whose `/readyz` answers 200.
    pub ready: i32,
    /// Of those alive, the ones running the current config.
    pub updated: i32,
    /// Whether a worker keeps crashing without ever becoming ready.
    pub crash_looping: bool,
    /// Why the current configuration cannot run (a path escaping the data directory):
    /// reported as a failed rollout with this message.
    pub failure: Option<String>,
}

/// The Deployment `status` for `o`. Conditions keep their `lastTransitionTime` (and
/// `lastUpdateTime`) from `previous` while they do not change.
pub fn deployment_status(name: &str, o: &Observed, previous: Option<&Value>, now: &str) -> Value {
    let available = o.ready >= o.desired;
    let complete = available && o.updated >= o.desired && o.running == o.desired;
    let (progressing, reason, message) = if let Some(why) = &o.failure {
        (false, "ProgressDeadlineExceeded", why.clone())
    } else if o.crash_looping {
        (
            false,
            "ProgressDeadlineExceeded",
            format!("ReplicaSet \"{name}\" has timed out progressing."),
        )
    } else if complete {
        (
            true,
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{name}\" has successfully progressed."),
        )
    } else {
        (
            true,
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{name}\" is progressing."),
        )
    };
    let conditions = vec![
        condition(
            previous,
            "Available",
            available,
            if available {
                "MinimumReplicasAvailable"
            } else {
                "MinimumReplicasUnavailable"
            },
            if available {
                "Deployment has minimum availability."
            } else {
                "Deployment does not have minimum availability."
            },
            now,
        ),
        condition(previous, "Progressing", progressing, reason, &message, now),
    ];
    json!({
        "observedGeneration": o.generation,
        "replicas": o.running,
        "updatedReplicas": o.updated,
        "readyReplicas": o.ready,
        "availableReplicas": o.ready,
        "unavailableReplicas": (o.desired - o.ready).max(0),
        "conditions": conditions,
    })
}

fn condition(
    previous: Option<&Value>,
    type_: &str,
    holds: bool,
    reason: &str,
    message: &str,
    now: &str,
) -> Value {
    let status = if holds { "True" } else { "False" };
    let old = previous
        .and_then(|p| p["conditions"].as_array())
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_));
    let same_status = old.is_some_and(|c| c["status"] == status);
    let same_reason = same_status && old.is_some_and(|c| c["reason"] == reason);
    let time = |key: &str, keep: bool| match old.and_then(|c| c[key].as_str()) {
        Some(t) if keep => t.to_string(),
        _ => now.to_string(),
    };
    json!({
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastUpdateTime": time("lastUpdateTime", same_reason),
        "lastTransitionTime": time("lastTransitionTime", same_status),
    })
}

/// `status` without the condition times, to tell whether anything worth writing changed.
pub fn essence(status: &Value) -> Value {
    let mut s = status.clone();
    if let Some(cs) = s["conditions"].as_array_mut() {
        for c in cs {
            if let Some(m) = c.as_object_mut() {
                m.remove("lastUpdateTime");
                m.remove("lastTransitionTime");
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(desired: i32, running: i32, ready: i32) -> Observed {
        Observed {
            generation: 2,
            desired,
            running,
            ready,
            updated: running,
            crash_looping: false,
            failure: None,
        }
    }

    #[test]
    fn ready_when_every_replica_answers() {
        let s = deployment_status("r", &obs(2, 2, 2), None, "t1");
        assert_eq!(s["readyReplicas"], 2);
        assert_eq!(s["observedGeneration"], 2);
        assert_eq!(s["unavailableReplicas"], 0);
        assert_eq!(s["conditions"][0]["status"], "True");
        assert_eq!(s["conditions"][1]["reason"], "NewReplicaSetAvailable");
        let s = deployment_status("r", &obs(2, 2, 1), None, "t1");
        assert_eq!(s["conditions"][0]["status"], "False");
        assert_eq!(s["conditions"][1]["reason"], "ReplicaSetUpdated");
        assert_eq!(s["unavailableReplicas"], 1);
    }

    #[test]
    fn crash_loops_fail_the_rollout() {
        let mut o = obs(1, 0, 0);
        o.crash_looping = true;
        let s = deployment_status("r", &o, None, "t");
        assert_eq!(s["conditions"][1]["status"], "False");
        assert_eq!(s["conditions"][1]["reason"], "ProgressDeadlineExceeded");
    }

    #[test]
    fn a_refused_configuration_fails_the_rollout_with_its_reason() {
        let mut o = obs(1, 0, 0);
        o.failure = Some("sink.path: '..' is not allowed".into());
        let s = deployment_status("r", &o, None, "t");
        assert_eq!(s["conditions"][1]["status"], "False");
        assert_eq!(s["conditions"][1]["reason"], "ProgressDeadlineExceeded");
        assert_eq!(
            s["conditions"][1]["message"],
            "sink.path: '..' is not allowed"
        );
    }

    #[test]
    fn transition_times_move_only_on_flips() {
        let first = deployment_status("r", &obs(1, 1, 0), None, "t1");
        let same = deployment_status("r", &obs(1, 1, 0), Some(&first), "t2");
        assert_eq!(same["conditions"][0]["lastTransitionTime"], "t1");
        assert_eq!(essence(&first), essence(&same));
        let flipped = deployment_status("r", &obs(1, 1, 1), Some(&same), "t3");
        assert_eq!(flipped["conditions"][0]["lastTransitionTime"], "t3");
        assert_ne!(essence(&flipped), essence(&same));
    }
}
