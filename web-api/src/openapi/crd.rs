//! The schemas of the custom resource types as the API reads them, which is stricter or looser
//! than Kubernetes in places: the API refuses unknown fields, reads `null` as absent, applies
//! the CRDs' CEL rules ([`cel`]) and list types, parses quantities ([`quantity`]) and checks
//! some fields as names ([`sluice_crd::validate`]).

use serde_json::{Map, Value};

use super::{cel, quantity};

/// Adjusts the generated CRD `schemas` (components by name) to what the API accepts.
pub fn as_the_api_reads_them(schemas: &mut Map<String, Value>) {
    for schema in schemas.values_mut() {
        close_objects(schema);
        unique_list_items(schema);
        cel::add_equivalents(schema);
    }
    quantity::declare(schemas);
    declare_validated_names(schemas);
    for (name, schema) in schemas.iter_mut() {
        if name.starts_with("io.k8s.") {
            nullable_optionals(schema);
        }
    }
}

/// Fields that [`sluice_crd::validate`] checks as names (DNS-1123 labels of at most 63
/// characters) although their CRD schema allows more: (schema, field).
const VALIDATED_NAMES: [(&str, &str); 1] = [("JetStreamSink", "stream")];

fn declare_validated_names(schemas: &mut Map<String, Value>) {
    for (schema, field) in VALIDATED_NAMES {
        if let Some(slot) = schemas
            .get_mut(schema)
            .and_then(|s| s.pointer_mut(&format!("/properties/{field}")))
        {
            let description = slot.get("description").cloned().unwrap_or(Value::Null);
            *slot = serde_json::json!({"type": "string", "minLength": 1,
                "maxLength": crate::path::MAX_NAME,
                "pattern": sluice_crd::schema::DNS1123_LABEL_PATTERN,
                "description": description});
        }
    }
}

/// Lets the optional fields of `schema` be `null`, as the API reads them: the schemas of the
/// Kubernetes types (e.g. `Toleration`) do not say so, although their fields are `Option`s.
fn nullable_optionals(schema: &mut Value) {
    let required: Vec<Value> = schema
        .get("required")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for (name, prop) in props.iter_mut() {
        if required.contains(&Value::String(name.clone())) {
            continue;
        }
        match prop.get_mut("type") {
            Some(Value::String(t)) => {
                let t = Value::String(t.clone());
                prop["type"] = Value::Array(vec![t, "null".into()]);
            }
            Some(Value::Array(ts)) if !ts.iter().any(|t| t == "null") => ts.push("null".into()),
            _ => {}
        }
    }
}

/// Gives the lists that Kubernetes keeps as sets or maps (`x-kubernetes-list-type`), which
/// refuse duplicates, `uniqueItems`, at any depth. (For a map keyed by some of its items'
/// fields, two items with the same keys and different other fields are refused too.)
fn unique_list_items(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let keyed = map
                .get("x-kubernetes-list-type")
                .and_then(Value::as_str)
                .is_some_and(|t| t == "set" || t == "map");
            if keyed {
                map.insert("uniqueItems".into(), Value::Bool(true));
            }
            map.values_mut().for_each(unique_list_items);
        }
        Value::Array(items) => items.iter_mut().for_each(unique_list_items),
        _ => {}
    }
}

/// Marks every object schema with named properties as closed (`additionalProperties: false`),
/// at any depth, unless it keeps unknown fields (`x-kubernetes-preserve-unknown-fields`) or says
/// otherwise: the API refuses unknown fields in these types ([`crate::body`]), although
/// Kubernetes objects do not deny them themselves. (Before [`cel::add_equivalents`], whose
/// branches name only some fields.)
fn close_objects(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let open = map.contains_key("additionalProperties")
                || map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            if map.contains_key("properties") && !open {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            map.values_mut().for_each(close_objects);
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_close_unless_they_keep_unknown_fields() {
        let mut schema = json!({"properties": {
            "a": {"type": "object", "properties": {"b": {"type": "string"}}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                "properties": {"c": {}}}}});
        close_objects(&mut schema);
        assert_eq!(schema["additionalProperties"], json!(false));
        assert_eq!(
            schema["properties"]["a"]["additionalProperties"],
            json!(false)
        );
        assert_eq!(
            schema["properties"]["free"].get("additionalProperties"),
            None
        );
    }

    #[test]
    fn optional_fields_of_kubernetes_types_take_null() {
        let mut schema = json!({"required": ["key"], "properties": {
            "key": {"type": "string"}, "value": {"type": "string"}}});
        nullable_optionals(&mut schema);
        assert_eq!(schema["properties"]["key"]["type"], json!("string"));
        assert_eq!(
            schema["properties"]["value"]["type"],
            json!(["string", "null"])
        );
    }
}
