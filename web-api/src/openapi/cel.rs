//! JSON Schema equivalents of the CEL rules of the custom resources.
//!
//! The CRD schemas carry some constraints as CEL rules (`x-kubernetes-validations`), which
//! Kubernetes enforces and OpenAPI clients ignore: "exactly one sink kind", "exactly one of
//! `fields` and `expression`", "exactly one of `path` and `stdout: true`", "`startTime` exactly
//! when `startFrom` is `time`". [`add_equivalents`] gives every schema carrying one of these
//! rules (matched by the constants the CRDs are built from) the same constraint as a `oneOf`.
//!
//! CEL's `has(self.f)` is true when `f` is present; the API drops a `null` field before the
//! object reaches Kubernetes, so here "present" means present and not `null`.

use serde_json::{Value, json};
use sluice_crd::pipeline::{
    FILE_SINK_ONE_OF_RULE, PROJECTION_ONE_OF_RULE, SINK_ONE_OF_RULE, START_TIME_RULE,
};

/// The fields of a sink that name its kind, as [`SINK_ONE_OF_RULE`] lists them.
const SINK_KINDS: [&str; 7] = [
    "nats",
    "jetstream",
    "kafka",
    "http",
    "postgres",
    "objectStore",
    "file",
];

/// Adds the `oneOf` equivalent of each known CEL rule to the schema holding it, at any depth.
pub fn add_equivalents(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let rules: Vec<String> = map
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.get("rule").and_then(Value::as_str).map(String::from))
                .collect();
            let nullable = allows_null(map.get("type"));
            for rule in rules {
                if let Some(mut branches) = equivalent(&rule) {
                    if nullable {
                        branches.insert(0, json!({"type": "null"}));
                    }
                    map.insert("oneOf".into(), Value::Array(branches));
                }
            }
            for value in map.values_mut() {
                add_equivalents(value);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(add_equivalents),
        _ => {}
    }
}

fn allows_null(ty: Option<&Value>) -> bool {
    match ty {
        Some(Value::String(t)) => t == "null",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "null"),
        _ => false,
    }
}

/// The mutually exclusive object shapes of which a value must match exactly one.
fn equivalent(rule: &str) -> Option<Vec<Value>> {
    let branches = if rule == SINK_ONE_OF_RULE {
        SINK_KINDS.iter().map(|k| present(k)).collect()
    } else if rule == PROJECTION_ONE_OF_RULE {
        vec![present("fields"), present("expression")]
    } else if rule == FILE_SINK_ONE_OF_RULE {
        vec![
            json!({"type": "object", "required": ["path"], "properties": {
                "path": {"not": {"type": "null"}}, "stdout": {"not": {"const": true}}}}),
            json!({"type": "object", "required": ["stdout"], "properties": {
                "stdout": {"const": true}, "path": {"type": "null"}}}),
        ]
    } else if rule == START_TIME_RULE {
        vec![
            json!({"type": "object", "required": ["startFrom", "startTime"], "properties": {
                "startFrom": {"const": "time"}, "startTime": {"not": {"type": "null"}}}}),
            json!({"type": "object", "properties": {
                "startFrom": {"not": {"const": "time"}}, "startTime": {"type": "null"}}}),
        ]
    } else {
        return None;
    };
    Some(branches)
}

/// An object in which `field` is present and not `null`.
fn present(field: &str) -> Value {
    json!({"type": "object", "required": [field], "properties": {field: {"not": {"type": "null"}}}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sink_kind_of_the_rule_is_listed() {
        for kind in SINK_KINDS {
            assert!(SINK_ONE_OF_RULE.contains(&format!("has(self.{kind})")));
        }
        assert_eq!(SINK_ONE_OF_RULE.matches("has(").count(), SINK_KINDS.len());
    }

    #[test]
    fn rules_get_a_one_of_and_nullable_schemas_accept_null() {
        let mut schema = json!({"properties": {"projection": {"type": ["object", "null"],
            "x-kubernetes-validations": [{"rule": PROJECTION_ONE_OF_RULE}]}}});
        add_equivalents(&mut schema);
        let one_of = &schema["properties"]["projection"]["oneOf"];
        assert_eq!(one_of[0], json!({"type": "null"}));
        assert_eq!(one_of.as_array().map(Vec::len), Some(3));
    }
}
