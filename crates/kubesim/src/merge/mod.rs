//! Patch semantics of the Kubernetes API server: server-side apply with
//! `metadata.managedFields`, ownership tracking of ordinary writes, and
//! strategic merge patch. Pure functions over `serde_json::Value`.
//!
//! # Rules, as in the real server (structured-merge-diff)
//!
//! * **Field sets** ([`field_set`]): scalars, atomic lists and atomic maps, list items
//!   (`k:{...}` for associative lists, `v:...` for sets), entries of granular maps
//!   (labels...) and empty-map/null values are members. Server-owned metadata
//!   (`name`, `namespace`, `uid`, `resourceVersion`, `generation`, `creationTimestamp`,
//!   `deletionTimestamp`, `managedFields`, `selfLink`), `apiVersion` and `kind` are never
//!   part of a set.
//! * **Apply** ([`apply`]): the configuration is merged into the live object; the
//!   applier's set becomes exactly the configuration's set; fields in the applier's
//!   previous set that no manager owns any more are removed (a named field counts as
//!   owned when anything under it is owned; a list item or map entry only when itself
//!   owned); then the change from the live object is checked against every other
//!   manager (other name, operation or subresource): a field another manager owns that
//!   the apply adds or modifies is a [`Conflict`]. With `force` those fields move to the
//!   applier. Fields set to the live value are shared. Fields removed by the apply are
//!   dropped from every manager.
//! * **Explicit null in apply** means "this field must be absent": it is removed from the
//!   object and is *not* owned by the applier. Removing a field another manager owns
//!   this way is a conflict (forced: the field goes and so does their ownership).
//! * **Updates** ([`record_update`]): the fields added or changed by a write become the
//!   writer's and are taken from every other manager; removed fields are dropped from
//!   all managers; managers left with nothing are dropped. As the real server does, an
//!   existing object without managedFields is not tracked by updates, and the first
//!   apply to such an object gives its existing fields to a `before-first-apply`
//!   Update manager.
//! * **Entries** are keyed, as in the real server, by (manager, operation, subresource)
//!   for Apply and (manager, operation, apiVersion, subresource) for Update. They are
//!   written sorted the way the real server sorts them: operation (`Apply` before
//!   `Update`), then `time`, manager, apiVersion, subresource (times are compared as
//!   strings: pass RFC 3339 UTC such as `2024-01-02T03:04:05Z`). An entry's `time` is set
//!   to `now` when the writer's write changes the object or its own set (other
//!   managers' times are left alone, even when their sets shrink); an untouched entry
//!   is written back byte for byte, so a no-op apply returns a deep-equal object.
//!
//! Not supported: the real server's interop with the client-side
//! `kubectl.kubernetes.io/last-applied-configuration` annotation, the cap of ten Update
//! entries (`ancient-changes`), version conversion of field sets, and unions.

mod fieldset;
mod hints;
mod managed;
mod smp;
mod walk;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

pub use hints::{BuiltinHints, Hints, ListType, SchemaHints};
pub use smp::strategic_merge;

use fieldset::{FieldSet, path_string};
use managed::{Entry, decode, managed_fields_of, write};
use walk::{compare, merge_apply, null_paths, object_field_set, prune};

/// The manager that owns the existing fields of an object without managedFields
/// on its first apply.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// One field another manager owns that an apply would change.
///
/// Besides the manager's name it carries what the real server prints about the
/// manager: its operation, apiVersion (printed for Update managers) and subresource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager's name, e.g. `kubectl-edit`.
    pub manager: String,
    /// The field in the real server's format: `.spec.replicas`,
    /// `.spec.containers[name="app"].image`, `.metadata.labels.app`.
    pub field: String,
    /// The other manager's operation: `Apply` or `Update`.
    pub operation: String,
    /// The apiVersion of the other manager's entry, e.g. `apps/v1`.
    pub api_version: String,
    /// The other manager's subresource (`""` for the main resource).
    pub subresource: String,
}

impl Conflict {
    /// The manager as the real server prints it: `"name"`, plus
    /// ` with subresource "status"` and, for Update managers, ` using apps/v1`.
    pub fn manager_display(&self) -> String {
        let mut s = quote(&self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {}", quote(&self.subresource)));
        }
        if self.operation == "Update" {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    /// The manager identifier the real server groups and sorts conflicts by.
    fn identifier(&self) -> String {
        let mut s = format!(
            "{{\"manager\":{},\"operation\":{}",
            quote(&self.manager),
            quote(&self.operation)
        );
        if self.operation != "Apply" && !self.api_version.is_empty() {
            s.push_str(&format!(",\"apiVersion\":{}", quote(&self.api_version)));
        }
        if !self.subresource.is_empty() {
            s.push_str(&format!(",\"subresource\":{}", quote(&self.subresource)));
        }
        s.push('}');
        s
    }
}

fn quote(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// The message of the real server's 409 for these conflicts:
/// `Apply failed with 1 conflict: conflict with "kubectl-edit" using apps/v1: .spec.replicas`,
/// or with two or more, grouped by manager (sorted):
/// `Apply failed with 2 conflicts: conflicts with "m" using v1:\n- .spec.a\n- .spec.b`.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    match conflicts {
        [] => "Apply failed with 0 conflicts".to_string(),
        [c] => format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            c.manager_display(),
            c.field
        ),
        _ => {
            let mut groups: Vec<(String, String, Vec<&str>)> = Vec::new();
            for c in conflicts {
                let id = c.identifier();
                match groups.iter_mut().find(|g| g.0 == id) {
                    Some(g) => g.2.push(&c.field),
                    None => groups.push((id, c.manager_display(), vec![&c.field])),
                }
            }
            groups.sort_by(|a, b| a.0.cmp(&b.0));
            let mut lines = Vec::new();
            for (_, display, fields) in groups {
                lines.push(format!("conflicts with {display}:"));
                lines.extend(fields.iter().map(|f| format!("- {f}")));
            }
            format!(
                "Apply failed with {} conflicts: {}",
                conflicts.len(),
                lines.join("\n")
            )
        }
    }
}

/// Why an apply was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Fields owned by other managers would change (HTTP 409); the message is
    /// [`conflict_message`].
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The configuration cannot be applied (HTTP 400 / 422).
    #[error("{0}")]
    Invalid(String),
}

fn remove_managed_fields(obj: &mut Value) {
    if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
        meta.remove("managedFields");
    }
}

fn api_version_of(obj: &Value) -> String {
    obj.get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Server-side apply of `applied` (the full intent of `manager`) onto `live`
/// (`None` = create). Returns the new object with `metadata.managedFields` updated
/// (operation `Apply`, `fieldsType: FieldsV1`, apiVersion from `applied`, `time` =
/// `now` when the entry changes, `subresource` when given). See the module docs for
/// the rules. Applying the same configuration twice returns a deep-equal object.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    subresource: Option<&str>,
    force: bool,
    hints: &dyn Hints,
    now: &str,
) -> Result<Value, ApplyError> {
    if !applied.is_object() {
        return Err(ApplyError::Invalid(
            "the applied configuration must be a JSON object".into(),
        ));
    }
    let api_version = match applied.get("apiVersion").and_then(Value::as_str) {
        Some(v) if !v.is_empty() => v.to_string(),
        _ => return Err(ApplyError::Invalid("Object 'apiVersion' is missing".into())),
    };
    if managed_fields_of(applied).is_some_and(|m| m.as_array().is_none_or(|a| !a.is_empty())) {
        return Err(ApplyError::Invalid(
            "metadata.managedFields must be nil".into(),
        ));
    }
    let sub = subresource.unwrap_or("");
    let empty = Value::Object(Map::new());

    let mut live_body = live.cloned().unwrap_or_else(|| empty.clone());
    let mut entries = live
        .map(|l| decode(managed_fields_of(l)))
        .unwrap_or_default();
    remove_managed_fields(&mut live_body);
    if live.is_some() && entries.iter().all(|e| e.set.is_empty()) {
        entries.clear();
        let set = compare(&empty, &live_body, hints).added;
        if !set.is_empty() {
            entries.push(Entry {
                manager: BEFORE_FIRST_APPLY.into(),
                operation: "Update".into(),
                api_version: api_version_of(&live_body),
                subresource: String::new(),
                time: None,
                set,
                raw: None,
            });
        }
    }

    let mut cfg = applied.clone();
    remove_managed_fields(&mut cfg);
    let mut merged =
        merge_apply(&live_body, &cfg, &mut Vec::new(), hints).map_err(ApplyError::Invalid)?;
    let new_set = object_field_set(&cfg, hints, true);
    let nulls = null_paths(&cfg, hints);

    let idx = entries.iter().position(|e| e.is(manager, "Apply", "", sub));
    let last = idx.map(|i| entries[i].set.clone()).unwrap_or_default();
    let owned = entries
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != idx)
        .fold(new_set.clone(), |acc, (_, e)| acc.union(&e.set));
    prune(&mut merged, &last, Some(&owned), &mut Vec::new(), hints);

    let cmp = compare(&live_body, &merged, hints);
    let mut removed_by_null = FieldSet::default();
    for p in cmp.removed.paths() {
        if nulls.covers(&p) {
            removed_by_null.insert(&p);
        }
    }
    let changed = cmp.modified.union(&cmp.added).union(&removed_by_null);

    let mut conflicts = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if Some(i) == idx {
            continue;
        }
        for p in e.set.intersection(&changed).paths() {
            conflicts.push(Conflict {
                manager: e.manager.clone(),
                field: path_string(&p),
                operation: e.operation.clone(),
                api_version: e.api_version.clone(),
                subresource: e.subresource.clone(),
            });
        }
    }
    if !force && !conflicts.is_empty() {
        conflicts.sort_by_cached_key(Conflict::identifier);
        return Err(ApplyError::Conflicts(conflicts));
    }

    let taken = changed.union(&cmp.removed);
    for (i, e) in entries.iter_mut().enumerate() {
        if Some(i) == idx {
            continue;
        }
        let rest = e.set.difference(&taken);
        if rest != e.set {
            e.set = rest;
            e.raw = None;
        }
    }

    let object_changed = merged != live_body;
    match idx {
        Some(i) => {
            let e = &mut entries[i];
            if e.set != new_set || e.api_version != api_version || object_changed {
                e.set = new_set;
                e.api_version = api_version;
                e.time = Some(now.to_string());
                e.raw = None;
            }
        }
        None => entries.push(Entry {
            manager: manager.to_string(),
            operation: "Apply".into(),
            api_version,
            subresource: sub.to_string(),
            time: Some(now.to_string()),
            set: new_set,
            raw: None,
        }),
    }
    write(&mut merged, entries);
    Ok(merged)
}

/// Records an ordinary write (create/update/patch, `operation` normally `"Update"`)
/// by `manager`: fields added or changed from `old` to `new` (all set fields on
/// create) become owned by `manager` and are taken from every other manager; removed
/// fields are dropped from all managers; managers left with an empty set are dropped.
/// Returns `new` with `metadata.managedFields` updated.
///
/// The managedFields the client sent in `new` are used as the starting point when
/// present and non-empty (equal to `old`'s, or replaced explicitly as kubectl does when
/// migrating); absent or null means `old`'s; `[]` or `[{}]` resets them. As in the
/// real server, an existing object (`old` is `Some`) that ends up with no managedFields
/// to start from is not tracked at all: the result has no managedFields.
pub fn record_update(
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    operation: &str,
    subresource: Option<&str>,
    hints: &dyn Hints,
    now: &str,
) -> Value {
    let sub = subresource.unwrap_or("");
    let api_version = api_version_of(new);
    let mut entries = match managed_fields_of(new) {
        Some(Value::Array(a))
            if a.is_empty() || (a.len() == 1 && a[0].as_object().is_some_and(Map::is_empty)) =>
        {
            Vec::new()
        }
        Some(mf @ Value::Array(a)) if !a.is_empty() => decode(Some(mf)),
        _ => old
            .map(|o| decode(managed_fields_of(o)))
            .unwrap_or_default(),
    };
    entries.retain(|e| !e.set.is_empty());

    let mut out = new.clone();
    remove_managed_fields(&mut out);
    if old.is_some() && entries.is_empty() {
        return out;
    }
    let mut old_body = old.cloned().unwrap_or_else(|| Value::Object(Map::new()));
    remove_managed_fields(&mut old_body);

    let cmp = compare(&old_body, &out, hints);
    let changed = cmp.modified.union(&cmp.added);
    let taken = changed.union(&cmp.removed);
    for e in entries.iter_mut() {
        let rest = e.set.difference(&taken);
        if rest != e.set {
            e.set = rest;
            e.raw = None;
        }
    }
    if !changed.is_empty() {
        match entries
            .iter_mut()
            .find(|e| e.is(manager, operation, &api_version, sub))
        {
            Some(e) => {
                e.set = e.set.union(&changed);
                e.api_version = api_version;
                e.time = Some(now.to_string());
                e.raw = None;
            }
            None => entries.push(Entry {
                manager: manager.to_string(),
                operation: operation.to_string(),
                api_version,
                subresource: sub.to_string(),
                time: Some(now.to_string()),
                set: changed,
                raw: None,
            }),
        }
    }
    write(&mut out, entries);
    out
}

/// The field set (fieldsV1 JSON, e.g.
/// `{"f:spec":{"f:replicas":{},"f:containers":{"k:{\"name\":\"a\"}":{".":{},"f:image":{},"f:name":{}}}}}`)
/// of an object, as the real server computes it for an applied configuration,
/// ignoring `apiVersion`, `kind` and the metadata fields the server owns.
/// Explicit nulls are members.
pub fn field_set(obj: &Value, hints: &dyn Hints) -> Value {
    object_field_set(obj, hints, false).to_json()
}
