//! Structural pruning, null pruning and defaulting.

use super::schema::{self, join};
use serde_json::Value;

const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Removes fields the schema does not know, recording their paths.
pub fn prune(obj: &mut Value, s: &Value, pruned: &mut Vec<String>) {
    if schema::preserve(s) && schema::props(s).is_none() && schema::addl(s).is_none() {
        return;
    }
    prune_node(obj, s, true, "", pruned);
}

fn prune_node(v: &mut Value, s: &Value, is_resource: bool, path: &str, pruned: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            let preserve = schema::preserve(s) || schema::addl_true(s);
            let is_resource = is_resource || schema::embedded(s);
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if is_resource && META_FIELDS.contains(&k.as_str()) {
                    // always kept; metadata is not pruned here
                    if k != "metadata"
                        && let (Some(ps), Some(child)) =
                            (schema::props(s).and_then(|p| p.get(&k)), m.get_mut(&k))
                    {
                        prune_node(child, ps, false, &join(path, &k), pruned);
                    }
                    continue;
                }
                let child_schema = schema::child(s, &k);
                match child_schema {
                    Some(cs) => {
                        if let Some(child) = m.get_mut(&k) {
                            prune_node(child, cs, false, &join(path, &k), pruned);
                        }
                    }
                    None if preserve => {}
                    None => {
                        m.remove(&k);
                        pruned.push(join(path, &k));
                    }
                }
            }
        }
        Value::Array(a) => {
            if let Some(is) = schema::items(s) {
                for (i, item) in a.iter_mut().enumerate() {
                    prune_node(item, is, false, &schema::index(path, i), pruned);
                }
            }
        }
        _ => {}
    }
}

/// Removes `null`s the schema neither allows (`nullable`) nor defaults.
pub fn prune_nulls(v: &mut Value, s: Option<&Value>) {
    match v {
        Value::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let cs = s.and_then(|s| schema::child(s, &k));
                let drop = matches!(m.get(&k), Some(Value::Null))
                    && cs.is_some_and(|cs| {
                        !schema::flag(cs, "nullable") && cs.get("default").is_none()
                    });
                if drop {
                    m.remove(&k);
                } else if let Some(child) = m.get_mut(&k) {
                    prune_nulls(child, cs);
                }
            }
        }
        Value::Array(a) => {
            let is = s.and_then(schema::items);
            for item in a.iter_mut() {
                prune_nulls(item, is);
            }
        }
        _ => {}
    }
}

/// Applies `default`s where a property is absent (or a non-nullable null),
/// then recurses, so defaults inside applied defaults apply too.
pub fn apply_defaults(v: &mut Value, s: &Value) {
    match v {
        Value::Object(m) => {
            if let Some(props) = schema::props(s) {
                for (k, ps) in props {
                    let Some(d) = ps.get("default") else { continue };
                    let absent = match m.get(k) {
                        None => true,
                        Some(Value::Null) => !schema::flag(ps, "nullable"),
                        Some(_) => false,
                    };
                    if absent {
                        m.insert(k.clone(), d.clone());
                    }
                }
            }
            for (k, child) in m.iter_mut() {
                if let Some(cs) = schema::child(s, k) {
                    apply_defaults(child, cs);
                }
            }
        }
        Value::Array(a) => {
            if let Some(is) = schema::items(s) {
                for item in a.iter_mut() {
                    apply_defaults(item, is);
                }
            }
        }
        _ => {}
    }
}
