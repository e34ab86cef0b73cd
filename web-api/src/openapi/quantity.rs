//! The quantities the API accepts, declared in the document.
//!
//! A Kubernetes quantity's own schema (`x-kubernetes-int-or-string`) allows any value, but the
//! API reads quantities as strings and parses CPU and memory with
//! [`sluice_core::quota::parse_cpu_millis`] and [`sluice_core::quota::parse_memory_bytes`]. The
//! `cpu` and `memory` fields of requested amounts and quotas (and a tenant's `storage`, read as
//! bytes like memory) get these patterns, each a subset
//! of what its parser accepts that holds every usual spelling (`250m`, `1`, `0.5`, `128Mi`,
//! `1Gi`, `500M`); a quantity may also be a JSON number (Kubernetes' int-or-string), which the
//! parsers take when it is not negative.

use serde_json::{Map, Value, json};

/// A CPU quantity: millicores (`250m`) or cores with an optional decimal suffix (`1`, `0.5`, `2k`).
pub const CPU_PATTERN: &str = r"^([0-9]{1,15}m|[0-9]{1,15}(\.[0-9]{1,6})?[kMGTPE]?)$";
/// A memory quantity: bytes with an optional decimal or binary suffix (`1024`, `500M`, `128Mi`).
pub const MEMORY_PATTERN: &str = r"^[0-9]{1,15}(\.[0-9]{1,6})?([kMGTPE]|[KMGTPE]i)?$";

/// The schemas whose `cpu` and `memory` fields are requested amounts or limits.
const WITH_QUANTITIES: [&str; 2] = ["ResourceAmounts", "TenantQuota"];

/// Gives the `cpu`, `memory` and `storage` fields of [`WITH_QUANTITIES`] their patterns (keeping their
/// descriptions; numbers and `null` stay allowed).
pub fn declare(schemas: &mut Map<String, Value>) {
    for name in WITH_QUANTITIES {
        let Some(props) = schemas
            .get_mut(name)
            .and_then(|s| s.get_mut("properties"))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        for (field, pattern) in [
            ("cpu", CPU_PATTERN),
            ("memory", MEMORY_PATTERN),
            ("storage", MEMORY_PATTERN),
        ] {
            if let Some(slot) = props.get_mut(field) {
                let description = slot.get("description").cloned().unwrap_or(Value::Null);
                *slot = json!({"anyOf": [
                    {"type": "string", "pattern": pattern},
                    {"type": "number", "minimum": 0},
                    {"type": "null"}],
                    "description": description});
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sluice_core::quota::{parse_cpu_millis, parse_memory_bytes};

    /// The longest and shortest spellings of each pattern parse.
    #[test]
    fn what_the_patterns_allow_parses() {
        for cpu in [
            "0m",
            "999999999999999m",
            "1",
            "0.5",
            "999999999999999.999999E",
            "2k",
        ] {
            assert!(parse_cpu_millis(cpu).is_ok(), "{cpu}");
        }
        for mem in [
            "0",
            "1024",
            "500M",
            "128Mi",
            "999999999999999.999999Ei",
            "1.5k",
        ] {
            assert!(parse_memory_bytes(mem).is_ok(), "{mem}");
        }
    }
}
