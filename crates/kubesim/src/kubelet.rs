//! The pluggable "kubelet": kubesim runs no pods, so whoever embeds it decides what a
//! Deployment's pods do (become ready, crash, never start) by choosing the status it reports.

use serde_json::{Value, json};

/// What the pods of one Deployment do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodBehaviour {
    /// Every desired replica becomes ready at once.
    Ready,
    /// Pods are created but never become ready (image pull failure, pending scheduling).
    NeverReady,
    /// Pods start and crash in a loop: none ready, the rollout reports a failure.
    CrashLoop,
    /// Nothing is reported: the Deployment keeps whatever status it has (an external runner,
    /// such as the local development runner, writes the status itself).
    External,
}

/// Decides the behaviour of a Deployment's pods. Called after each change of a Deployment's spec
/// and when [`crate::Cluster::refresh_deployments`] is called.
pub trait Kubelet: Send + Sync {
    /// The behaviour for this Deployment object.
    fn behaviour(&self, deployment: &Value) -> PodBehaviour;
}

/// Every Deployment gets the same behaviour.
#[derive(Debug, Clone, Copy)]
pub struct Uniform(pub PodBehaviour);

impl Kubelet for Uniform {
    fn behaviour(&self, _deployment: &Value) -> PodBehaviour {
        self.0
    }
}

impl<F> Kubelet for F
where
    F: Fn(&Value) -> PodBehaviour + Send + Sync,
{
    fn behaviour(&self, deployment: &Value) -> PodBehaviour {
        self(deployment)
    }
}

/// The status a Deployment controller plus kubelet would report for `behaviour`, or `None` for
/// [`PodBehaviour::External`].
pub fn deployment_status(deployment: &Value, behaviour: PodBehaviour, now: &str) -> Option<Value> {
    let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    let generation = deployment["metadata"]["generation"].as_i64().unwrap_or(1);
    let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
    let ready = match behaviour {
        PodBehaviour::External => return None,
        PodBehaviour::Ready => replicas,
        PodBehaviour::NeverReady | PodBehaviour::CrashLoop => 0,
    };
    let available = if ready >= replicas { "True" } else { "False" };
    let (progressing, reason, message) = match behaviour {
        PodBehaviour::CrashLoop => (
            "False",
            "ProgressDeadlineExceeded",
            format!("ReplicaSet \"{name}\" has timed out progressing."),
        ),
        PodBehaviour::NeverReady => (
            "True",
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{name}\" is progressing."),
        ),
        _ => (
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{name}\" has successfully progressed."),
        ),
    };
    let mut status = json!({
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "conditions": [
            {"type": "Available", "status": available,
             "reason": if available == "True" { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
             "message": if available == "True" { "Deployment has minimum availability." } else { "Deployment does not have minimum availability." },
             "lastUpdateTime": now, "lastTransitionTime": now},
            {"type": "Progressing", "status": progressing, "reason": reason, "message": message,
             "lastUpdateTime": now, "lastTransitionTime": now}
        ]
    });
    if ready > 0 {
        status["readyReplicas"] = json!(ready);
        status["availableReplicas"] = json!(ready);
    } else if replicas > 0 {
        status["unavailableReplicas"] = json!(replicas);
    }
    Some(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_and_crashing_statuses() {
        let d = json!({"metadata": {"name": "d", "generation": 3}, "spec": {"replicas": 2}});
        let s = deployment_status(&d, PodBehaviour::Ready, "t").unwrap();
        assert_eq!(s["readyReplicas"], 2);
        assert_eq!(s["observedGeneration"], 3);
        assert_eq!(s["conditions"][0]["status"], "True");
        let s = deployment_status(&d, PodBehaviour::CrashLoop, "t").unwrap();
        assert!(s.get("readyReplicas").is_none());
        assert_eq!(s["unavailableReplicas"], 2);
        assert_eq!(s["conditions"][1]["reason"], "ProgressDeadlineExceeded");
        assert!(deployment_status(&d, PodBehaviour::External, "t").is_none());
    }
}
