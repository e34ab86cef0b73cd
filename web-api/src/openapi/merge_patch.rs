//! Schemas of the JSON merge patches (RFC 7396) the `PATCH` routes take.
//!
//! The server merges the patch into `{"spec": <current spec>}` and reads the result as the
//! route's replace body, so the schema allows what gives a valid result whatever the current
//! spec: a field that is always there (required) may be patched in part, recursively, but not
//! removed; an optional field may be removed (`null`) or patched with a value that holds its
//! required fields (it may be absent before the patch); an array is always replaced whole.
//! Rules that depend on the current spec (a changed source stream, one of a projection's
//! `fields` and `expression` merged into the other) are the server's to refuse (422). A map
//! (`nodeSelector`) takes `null` for a key, which removes it.

use serde_json::{Map, Value, json};

/// The `PATCH` routes and the schema each patches: (route, patch schema name, target schema).
pub fn targets() -> [(&'static str, &'static str, Value); 3] {
    let spec_of = |name: &str| {
        json!({"type": "object", "additionalProperties": false, "required": ["spec"],
            "properties": {"spec": {"$ref": format!("#/components/schemas/{name}")}}})
    };
    [
        ("/v1/tenants/{tenant}", "TenantPatch", spec_of("TenantSpec")),
        (
            "/v1/tenants/{tenant}/streams/{stream}",
            "StreamPatch",
            json!({"$ref": "#/components/schemas/ReplaceStream"}),
        ),
        (
            "/v1/tenants/{tenant}/pipelines/{pipeline}",
            "PipelinePatch",
            json!({"$ref": "#/components/schemas/ReplacePipeline"}),
        ),
    ]
}

/// The schema of a merge patch of a value of `schema` that is always present.
pub fn patch_of(schema: &Value, schemas: &Map<String, Value>) -> Value {
    patch(schema, schemas, false)
}

/// The schema of a merge patch of a value of `schema`; `whole` when the value may be absent
/// before the patch, so that the patch must hold every required field. Optional fields may be
/// `null` (removed) at any depth.
fn patch(schema: &Value, schemas: &Map<String, Value>, whole: bool) -> Value {
    let schema = resolve(schema, schemas);
    if let Some(branches) = schema.get("anyOf").and_then(Value::as_array) {
        let mut out = schema.as_object().cloned().unwrap_or_default();
        let branches = branches.iter().map(|b| patch(b, schemas, whole)).collect();
        out.insert("anyOf".into(), Value::Array(branches));
        return Value::Object(out);
    }
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        // A map: a patch sets some of its keys and removes others (`null`).
        let mut out = schema.as_object().cloned().unwrap_or_default();
        out.insert(
            "additionalProperties".into(),
            json!({"anyOf": [values, {"type": "null"}]}),
        );
        return Value::Object(out);
    }
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return schema.clone();
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let patched: Map<String, Value> = properties
        .iter()
        .map(|(name, property)| {
            let patch = if required.contains(&name.as_str()) {
                patch(property, schemas, whole)
            } else {
                json!({"anyOf": [patch(property, schemas, true), {"type": "null"}]})
            };
            (name.clone(), patch)
        })
        .collect();
    let mut out = schema.as_object().cloned().unwrap_or_default();
    if !whole {
        out.remove("required");
        out.insert("type".into(), "object".into());
    }
    out.insert("properties".into(), Value::Object(patched));
    Value::Object(out)
}

/// `schema`, or the component it refers to.
fn resolve<'a>(schema: &'a Value, schemas: &'a Map<String, Value>) -> &'a Value {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
        .and_then(|name| schemas.get(name))
        .unwrap_or(schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_fields_are_patched_in_part_and_optional_ones_replaced_or_removed() {
        let schemas = json!({"Spec": {"type": "object", "required": ["source"],
            "additionalProperties": false, "properties": {
                "source": {"type": "object", "required": ["stream"],
                    "properties": {"stream": {"type": "string"}}},
                "dead": {"type": "object", "required": ["stream"],
                    "properties": {"stream": {"type": "string"}}}}}});
        let schemas = schemas.as_object().unwrap();
        let patch = patch_of(&json!({"$ref": "#/components/schemas/Spec"}), schemas);
        assert_eq!(patch.get("required"), None);
        assert_eq!(patch["additionalProperties"], json!(false));
        assert_eq!(patch["properties"]["source"].get("required"), None);
        assert_eq!(
            patch["properties"]["dead"]["anyOf"][0]["required"],
            json!(["stream"])
        );
        assert_eq!(
            patch["properties"]["dead"]["anyOf"][1],
            json!({"type": "null"})
        );
        let map = json!({"type": "object", "additionalProperties": {"type": "string"}});
        assert_eq!(
            patch_of(&map, schemas)["additionalProperties"]["anyOf"][1],
            json!({"type": "null"})
        );
    }
}
