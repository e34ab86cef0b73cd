//! The status condition shared by every Sluice custom resource.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The type of a condition: which aspect of an object's state it describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionType {
    /// The object is valid and within its tenant's quota.
    Accepted,
    /// The object is fully provisioned and serving.
    Ready,
    /// A change is being rolled out.
    Progressing,
    /// The object runs, but below its desired state.
    Degraded,
    /// The object is suspended on purpose (a Tenant with `spec.suspend`).
    Suspended,
}

impl ConditionType {
    /// Every condition type.
    pub const ALL: [ConditionType; 5] = [
        Self::Accepted,
        Self::Ready,
        Self::Progressing,
        Self::Degraded,
        Self::Suspended,
    ];

    /// The type as it appears in `conditions[].type`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "Accepted",
            Self::Ready => "Ready",
            Self::Progressing => "Progressing",
            Self::Degraded => "Degraded",
            Self::Suspended => "Suspended",
        }
    }
}

impl std::fmt::Display for ConditionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ConditionType {
    type Err = UnknownConditionType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownConditionType(s.to_string()))
    }
}

/// A `conditions[].type` that is none of [`ConditionType`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownConditionType(pub String);

impl std::fmt::Display for UnknownConditionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown condition type {:?}", self.0)
    }
}

impl std::error::Error for UnknownConditionType {}

/// Condition type: the object is valid and within its tenant's quota.
pub const ACCEPTED: &str = ConditionType::Accepted.as_str();
/// Condition type: the object is fully provisioned and serving.
pub const READY: &str = ConditionType::Ready.as_str();
/// Condition type: a change is being rolled out.
pub const PROGRESSING: &str = ConditionType::Progressing.as_str();
/// Condition type: the object runs, but below its desired state.
pub const DEGRADED: &str = ConditionType::Degraded.as_str();

/// The condition of type `type_` in `conditions`, if there is one.
pub fn find(conditions: &[Condition], type_: ConditionType) -> Option<&Condition> {
    conditions.iter().find(|c| c.is(type_))
}

/// One aspect of an object's observed state, in the Kubernetes condition convention.
///
/// A `conditions` list is keyed by `type`: it holds at most one condition of each type.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Type of the condition, in CamelCase, e.g. `Ready`, `Accepted`, `Progressing`, `Degraded`.
    #[serde(rename = "type")]
    #[schemars(length(min = 1, max = 316))]
    pub type_: String,
    /// Status of the condition: `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// Machine-stable, CamelCase reason for the condition's last transition, e.g. `QuotaExceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub reason: Option<String>,
    /// Human-readable message with details about the last transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32768))]
    pub message: Option<String>,
    /// Last time the condition's status changed (it does not move when only the message changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// The `metadata.generation` of the object this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,
}

/// Status of a condition: `True`, `False` or `Unknown`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// It is not known whether the condition holds.
    Unknown,
}

impl ConditionStatus {
    /// The status as it appears on the wire: `True`, `False` or `Unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl Condition {
    /// Whether this condition is of type `type_`.
    pub fn is(&self, type_: ConditionType) -> bool {
        self.type_ == type_.as_str()
    }

    /// Whether this condition holds (`status: True`).
    pub fn holds(&self) -> bool {
        self.status == ConditionStatus::True
    }
}

impl std::fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_types_round_trip_through_their_names() {
        for t in ConditionType::ALL {
            assert_eq!(t.as_str().parse::<ConditionType>(), Ok(t));
            assert_eq!(t.to_string(), t.as_str());
        }
        assert_eq!(ConditionType::Accepted.as_str(), ACCEPTED);
        assert_eq!(
            "ready".parse::<ConditionType>(),
            Err(UnknownConditionType("ready".into()))
        );
    }

    #[test]
    fn find_looks_up_by_type() {
        let c = |t: &str, status| Condition {
            type_: t.into(),
            status,
            reason: None,
            message: None,
            last_transition_time: None,
            observed_generation: None,
        };
        let list = [
            c("Accepted", ConditionStatus::True),
            c("Ready", ConditionStatus::False),
        ];
        assert!(find(&list, ConditionType::Accepted).is_some_and(Condition::holds));
        assert!(!find(&list, ConditionType::Ready).unwrap().holds());
        assert!(find(&list, ConditionType::Degraded).is_none());
    }
}
