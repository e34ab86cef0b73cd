//! `metadata.managedFields` entries: decoding, encoding, ordering.

use serde_json::{Map, Value};

use super::fieldset::FieldSet;

/// One managedFields entry. `raw` keeps the entry exactly as it came in so that
/// untouched entries round-trip byte for byte; it is dropped when the entry changes.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) manager: String,
    pub(crate) operation: String,
    pub(crate) api_version: String,
    pub(crate) subresource: String,
    pub(crate) time: Option<String>,
    pub(crate) set: FieldSet,
    pub(crate) raw: Option<Value>,
}

impl Entry {
    /// Whether this entry is the manager identified by the other fields. As in the
    /// real server, Apply managers are one entry whatever the apiVersion, Update
    /// managers one entry per apiVersion.
    pub(crate) fn is(&self, manager: &str, operation: &str, api_version: &str, sub: &str) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource == sub
            && (operation == "Apply" || self.api_version == api_version)
    }

    fn to_json(&self) -> Value {
        if let Some(raw) = &self.raw {
            return raw.clone();
        }
        let mut m = Map::new();
        m.insert("manager".into(), Value::String(self.manager.clone()));
        m.insert("operation".into(), Value::String(self.operation.clone()));
        m.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        if let Some(t) = &self.time {
            m.insert("time".into(), Value::String(t.clone()));
        }
        m.insert("fieldsType".into(), Value::String("FieldsV1".into()));
        m.insert("fieldsV1".into(), self.set.to_json());
        if !self.subresource.is_empty() {
            m.insert(
                "subresource".into(),
                Value::String(self.subresource.clone()),
            );
        }
        Value::Object(m)
    }
}

fn str_field(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Decodes a managedFields array; anything else is no entries.
pub(crate) fn decode(mf: Option<&Value>) -> Vec<Entry> {
    let Some(Value::Array(items)) = mf else {
        return Vec::new();
    };
    items
        .iter()
        .filter(|e| e.is_object())
        .map(|e| {
            let mut set = match e.get("fieldsV1") {
                Some(f) => FieldSet::from_json(f),
                None => FieldSet::default(),
            };
            set.normalize();
            Entry {
                manager: str_field(e, "manager"),
                operation: str_field(e, "operation"),
                api_version: str_field(e, "apiVersion"),
                subresource: str_field(e, "subresource"),
                time: e.get("time").and_then(Value::as_str).map(str::to_string),
                set,
                raw: Some(e.clone()),
            }
        })
        .collect()
}

/// The managedFields of an object, if it has a non-null `metadata.managedFields`.
pub(crate) fn managed_fields_of(obj: &Value) -> Option<&Value> {
    obj.get("metadata")
        .and_then(|m| m.get("managedFields"))
        .filter(|v| !v.is_null())
}

/// Sorts entries as the real server encodes them: operation (Apply before
/// Update), then time, manager, apiVersion, subresource.
pub(crate) fn sort(entries: &mut [Entry]) {
    entries.sort_by(|p, q| {
        (
            &p.operation,
            p.time.as_deref().unwrap_or(""),
            &p.manager,
            &p.api_version,
            &p.subresource,
        )
            .cmp(&(
                &q.operation,
                q.time.as_deref().unwrap_or(""),
                &q.manager,
                &q.api_version,
                &q.subresource,
            ))
    });
}

/// Writes `entries` (sorted) into `obj.metadata.managedFields`; no entries removes the field.
pub(crate) fn write(obj: &mut Value, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.set.is_empty());
    sort(&mut entries);
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    if let Some(meta) = meta.as_object_mut() {
        if entries.is_empty() {
            meta.remove("managedFields");
        } else {
            let arr = entries.iter().map(Entry::to_json).collect();
            meta.insert("managedFields".into(), Value::Array(arr));
        }
    }
}
