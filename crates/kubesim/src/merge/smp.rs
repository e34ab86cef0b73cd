//! Strategic merge patch (`application/strategic-merge-patch+json`).

use serde_json::{Map, Value};

use super::hints::{Hints, ListType};

const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// Strategic merge patch as the real server applies it to built-in types:
///
/// * maps merge recursively; a `null` value deletes the key;
/// * lists whose [`Hints::list_type`] is [`ListType::Map`] merge by their first key
///   (the `patchMergeKey`): items with a matching key are merged, new ones appended;
///   `{"<key>": ..., "$patch": "delete"}` deletes the item, an item `{"$patch": "replace"}`
///   makes the list exactly the patch's other items;
/// * [`ListType::Set`] lists (`patchStrategy: merge` of scalars) take the union,
///   keeping the original order and appending new values;
///   `$deleteFromPrimitiveList/<field>: [..]` removes values;
/// * every other list is replaced by the patch's list;
/// * `$patch: replace` in a map replaces it by the patch's map, `$patch: delete`
///   removes it, `$patch: merge` is the default;
/// * `$retainKeys: [..]` drops the original's keys not listed;
/// * `$setElementOrder/<field>: [..]` orders the merged list as listed (merge-key
///   objects or scalars); items it does not mention keep their relative order after
///   the listed ones.
///
/// Errors: the patch is not an object, an item of a merge-key list lacks the key,
/// an unknown `$patch` value.
pub fn strategic_merge(
    original: &Value,
    patch: &Value,
    hints: &dyn Hints,
) -> Result<Value, String> {
    let Value::Object(p) = patch else {
        return Err("strategic merge patch must be a JSON object".into());
    };
    let empty = Map::new();
    let o = original.as_object().unwrap_or(&empty);
    Ok(Value::Object(
        merge_map(o, p, &mut Vec::new(), hints)?.unwrap_or_default(),
    ))
}

fn strs(hp: &[String]) -> Vec<&str> {
    hp.iter().map(String::as_str).collect()
}

/// Merges `patch` into `orig`; `None` means the map is deleted.
fn merge_map(
    orig: &Map<String, Value>,
    patch: &Map<String, Value>,
    hp: &mut Vec<String>,
    h: &dyn Hints,
) -> Result<Option<Map<String, Value>>, String> {
    match patch.get("$patch") {
        None => {}
        Some(Value::String(s)) if s == "merge" => {}
        Some(Value::String(s)) if s == "delete" => return Ok(None),
        Some(Value::String(s)) if s == "replace" => {
            let mut fresh = patch.clone();
            fresh.remove("$patch");
            return merge_map(&Map::new(), &fresh, hp, h);
        }
        Some(other) => return Err(format!("Unknown patch type: {other}")),
    }
    let mut out = orig.clone();
    if let Some(retain) = patch.get("$retainKeys") {
        let Value::Array(keys) = retain else {
            return Err("$retainKeys must be a list of strings".into());
        };
        let keep: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
        out.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            let Value::Array(gone) = v else {
                return Err(format!("{k} must be a list"));
            };
            if let Some(Value::Array(items)) = out.get_mut(field) {
                items.retain(|x| !gone.contains(x));
            }
        }
    }
    for (k, pv) in patch {
        if k.starts_with('$') {
            continue;
        }
        if pv.is_null() {
            out.remove(k);
            continue;
        }
        hp.push(k.clone());
        let merged = match (out.get(k), pv) {
            (o, Value::Object(pm)) => {
                let empty = Map::new();
                let om = o.and_then(Value::as_object).unwrap_or(&empty);
                merge_map(om, pm, hp, h)?.map(Value::Object)
            }
            (o, Value::Array(pa)) => {
                let oa: &[Value] = o.and_then(Value::as_array).map_or(&[], Vec::as_slice);
                Some(Value::Array(merge_list(oa, pa, hp, h)?))
            }
            (_, scalar) => Some(scalar.clone()),
        };
        hp.pop();
        match merged {
            Some(v) => {
                out.insert(k.clone(), v);
            }
            None => {
                out.remove(k);
            }
        }
    }
    for (k, order) in patch {
        if let Some(field) = k.strip_prefix(SET_ELEMENT_ORDER) {
            let Value::Array(order) = order else {
                return Err(format!("{k} must be a list"));
            };
            hp.push(field.to_string());
            let lt = h.list_type(&strs(hp));
            hp.pop();
            if let Some(Value::Array(items)) = out.get_mut(field) {
                reorder(items, order, &lt);
            }
        }
    }
    Ok(Some(out))
}

fn is_directive(v: &Value, which: &str) -> bool {
    v.get("$patch").and_then(Value::as_str) == Some(which)
}

fn merge_list(
    orig: &[Value],
    patch: &[Value],
    hp: &mut Vec<String>,
    h: &dyn Hints,
) -> Result<Vec<Value>, String> {
    let lt = h.list_type(&strs(hp));
    let replace = patch
        .iter()
        .any(|x| is_directive(x, "replace") && x.as_object().is_some_and(|m| m.len() == 1));
    let patch_items: Vec<&Value> = patch
        .iter()
        .filter(|x| !(is_directive(x, "replace") && x.as_object().is_some_and(|m| m.len() == 1)))
        .collect();
    match lt {
        ListType::Atomic => fresh_items(&patch_items, hp, h),
        _ if replace => fresh_items(&patch_items, hp, h),
        ListType::Set => {
            let mut out = orig.to_vec();
            for x in patch_items {
                if !out.contains(x) {
                    out.push(x.clone());
                }
            }
            Ok(out)
        }
        ListType::Map(keys) => {
            let mk = keys.first().cloned().unwrap_or_default();
            let mut out = orig.to_vec();
            for item in patch_items {
                let Value::Object(pm) = item else {
                    return Err(format!(
                        "{}: list items must be objects with merge key {mk}",
                        hp.join(".")
                    ));
                };
                let Some(kv) = pm.get(&mk) else {
                    return Err(format!(
                        "map: {item} does not contain declared merge key: {mk}"
                    ));
                };
                let pos = out.iter().position(|o| o.get(&mk) == Some(kv));
                if is_directive(item, "delete") {
                    out.retain(|o| o.get(&mk) != Some(kv));
                    continue;
                }
                let empty = Map::new();
                let om = pos.and_then(|i| out[i].as_object()).unwrap_or(&empty);
                let merged = merge_map(om, pm, hp, h)?;
                match (pos, merged) {
                    (Some(i), Some(m)) => out[i] = Value::Object(m),
                    (Some(i), None) => {
                        out.remove(i);
                    }
                    (None, Some(m)) => out.push(Value::Object(m)),
                    (None, None) => {}
                }
            }
            Ok(out)
        }
    }
}

/// The patch's items with their directives processed against nothing.
fn fresh_items(
    items: &[&Value],
    hp: &mut Vec<String>,
    h: &dyn Hints,
) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for x in items {
        match x {
            Value::Object(m) => {
                if let Some(m) = merge_map(&Map::new(), m, hp, h)? {
                    out.push(Value::Object(m));
                }
            }
            other => out.push((*other).clone()),
        }
    }
    Ok(out)
}

fn reorder(items: &mut Vec<Value>, order: &[Value], lt: &ListType) {
    let mk = match lt {
        ListType::Map(keys) => keys.first().cloned(),
        _ => None,
    };
    let matches = |item: &Value, o: &Value| match &mk {
        Some(k) => item.get(k).is_some() && item.get(k) == o.get(k),
        None => item == o,
    };
    let mut rest = std::mem::take(items);
    for o in order {
        if let Some(pos) = rest.iter().position(|it| matches(it, o)) {
            items.push(rest.remove(pos));
        }
    }
    items.append(&mut rest);
}
