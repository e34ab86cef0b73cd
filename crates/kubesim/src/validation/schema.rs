//! Read-only accessors over a schema node (`JSONSchemaProps` as JSON).

use serde_json::{Map, Value};

/// The node's `type`, if any.
pub fn ty(s: &Value) -> Option<&str> {
    s.get("type").and_then(Value::as_str)
}

/// A boolean keyword, false when absent.
pub fn flag(s: &Value, key: &str) -> bool {
    s.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// `properties`, if any.
pub fn props(s: &Value) -> Option<&Map<String, Value>> {
    s.get("properties").and_then(Value::as_object)
}

/// `additionalProperties` when it is a schema.
pub fn addl(s: &Value) -> Option<&Value> {
    s.get("additionalProperties").filter(|v| v.is_object())
}

/// `additionalProperties: true`.
pub fn addl_true(s: &Value) -> bool {
    s.get("additionalProperties").and_then(Value::as_bool) == Some(true)
}

/// `items`, when it is a schema.
pub fn items(s: &Value) -> Option<&Value> {
    s.get("items").filter(|v| v.is_object())
}

/// `x-kubernetes-preserve-unknown-fields: true`.
pub fn preserve(s: &Value) -> bool {
    flag(s, "x-kubernetes-preserve-unknown-fields")
}

/// `x-kubernetes-embedded-resource: true`.
pub fn embedded(s: &Value) -> bool {
    flag(s, "x-kubernetes-embedded-resource")
}

/// `x-kubernetes-int-or-string: true`.
pub fn int_or_string(s: &Value) -> bool {
    flag(s, "x-kubernetes-int-or-string")
}

/// The schema for the value of key `k` of an object: its property, or
/// `additionalProperties`.
pub fn child<'a>(s: &'a Value, k: &str) -> Option<&'a Value> {
    props(s).and_then(|p| p.get(k)).or_else(|| addl(s))
}

/// `x-kubernetes-list-type`.
pub fn list_type(s: &Value) -> Option<&str> {
    s.get("x-kubernetes-list-type").and_then(Value::as_str)
}

/// `x-kubernetes-list-map-keys`.
pub fn list_map_keys(s: &Value) -> Vec<&str> {
    s.get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Appends a property to a dotted path.
pub fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

/// Appends an index to a path.
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// For a `x-kubernetes-list-type: map` list, the key of an item: the values
/// of the map keys (a missing key takes the key field's default), as an
/// object of key field → value.
pub fn map_key(s: &Value, item: &Value) -> Option<Value> {
    let keys = list_map_keys(s);
    let obj = item.as_object()?;
    let item_schema = items(s);
    let mut out = Map::new();
    for k in keys {
        let v = obj
            .get(k)
            .cloned()
            .or_else(|| {
                item_schema
                    .and_then(|is| props(is))
                    .and_then(|p| p.get(k))
                    .and_then(|ks| ks.get("default"))
                    .cloned()
            })
            .unwrap_or(Value::Null);
        out.insert(k.to_string(), v);
    }
    Some(Value::Object(out))
}

/// Finds the old item matching `item` by its map-list key.
pub fn correlate<'a>(s: &Value, item: &Value, old: Option<&'a Value>) -> Option<&'a Value> {
    if list_type(s) != Some("map") {
        return None;
    }
    let key = map_key(s, item)?;
    old?.as_array()?
        .iter()
        .find(|o| map_key(s, o).as_ref() == Some(&key))
}
