//! Schema-guided walks over objects: field sets, comparison, apply-merge, pruning.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, path_string};
use super::hints::{Hints, ListType};

/// Metadata fields the server owns; never part of a field set nor compared.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "managedFields",
    "selfLink",
    "clusterName",
];

/// The shape of a value as far as merging is concerned.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Kind {
    /// Scalar, null, atomic list or atomic map: owned and replaced whole.
    Leaf,
    /// A map walked key by key.
    Map,
    /// A set or associative list walked item by item.
    List(ListType),
}

fn as_strs(hp: &[String]) -> Vec<&str> {
    hp.iter().map(String::as_str).collect()
}

pub(crate) fn kind(v: &Value, hp: &[String], h: &dyn Hints) -> Kind {
    match v {
        Value::Object(_) => {
            if h.is_atomic_map(&as_strs(hp)) {
                Kind::Leaf
            } else {
                Kind::Map
            }
        }
        Value::Array(_) => match h.list_type(&as_strs(hp)) {
            ListType::Atomic => Kind::Leaf,
            lt => Kind::List(lt),
        },
        _ => Kind::Leaf,
    }
}

/// The path element of a list item: `k:{...}` for associative lists, `v:...` for sets.
pub(crate) fn item_pe(lt: &ListType, item: &Value) -> Option<String> {
    match lt {
        ListType::Atomic => None,
        ListType::Set => Some(format!("v:{item}")),
        ListType::Map(keys) => {
            let obj = item.as_object()?;
            let mut sorted: Vec<&String> = keys.iter().collect();
            sorted.sort();
            let mut m = Map::new();
            for k in sorted {
                match obj.get(k.as_str()) {
                    Some(v) if !v.is_null() => {
                        m.insert(k.clone(), v.clone());
                    }
                    _ if k == "protocol" => {
                        m.insert(k.clone(), Value::String("TCP".into()));
                    }
                    _ => {}
                }
            }
            Some(format!("k:{}", Value::Object(m)))
        }
    }
}

/// A copy of `obj` without `apiVersion`, `kind` and the server-owned metadata.
pub(crate) fn strip_server_fields(obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(root) = out.as_object_mut() {
        root.remove("apiVersion");
        root.remove("kind");
        if let Some(Value::Object(meta)) = root.get_mut("metadata") {
            for f in SERVER_METADATA {
                meta.remove(*f);
            }
        }
    }
    out
}

/// Drops the `metadata` node's own membership (the server strips it) and empty nodes.
fn finish_set(mut set: FieldSet) -> FieldSet {
    if let Some(m) = set.children.get_mut("f:metadata") {
        m.member = false;
    }
    set.normalize();
    set
}

/// The field set of an object, as structured-merge-diff's `ToFieldSet`:
/// scalars, atomic lists/maps, list items, entries of granular maps and
/// empty/null map values are members. With `skip_nulls`, null values are left out.
pub(crate) fn object_field_set(obj: &Value, h: &dyn Hints, skip_nulls: bool) -> FieldSet {
    let stripped = strip_server_fields(obj);
    let mut set = FieldSet::default();
    if let Some(m) = stripped.as_object() {
        collect_map(m, &mut Vec::new(), &mut set, h, false, skip_nulls);
    }
    finish_set(set)
}

fn collect_map(
    m: &Map<String, Value>,
    hp: &mut Vec<String>,
    node: &mut FieldSet,
    h: &dyn Hints,
    granular: bool,
    skip_nulls: bool,
) {
    for (k, v) in m {
        if skip_nulls && v.is_null() {
            continue;
        }
        hp.push(k.clone());
        let child = node.children.entry(format!("f:{k}")).or_default();
        collect_value(v, hp, child, h, skip_nulls);
        if granular || v.is_null() || v.as_object().is_some_and(Map::is_empty) {
            child.member = true;
        }
        hp.pop();
    }
}

fn collect_value(v: &Value, hp: &mut Vec<String>, node: &mut FieldSet, h: &dyn Hints, sn: bool) {
    match (kind(v, hp, h), v) {
        (Kind::Map, Value::Object(m)) => {
            let granular = h.is_granular_map(&as_strs(hp));
            collect_map(m, hp, node, h, granular, sn);
        }
        (Kind::List(lt), Value::Array(items)) => {
            for item in items {
                let Some(pe) = item_pe(&lt, item) else {
                    continue;
                };
                let child = node.children.entry(pe).or_default();
                if let (ListType::Map(_), Value::Object(im)) = (&lt, item) {
                    collect_map(im, hp, child, h, false, sn);
                }
                child.member = true;
            }
        }
        _ => node.member = true,
    }
}

/// The result of comparing two objects (structured-merge-diff `Comparison`).
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    /// Paths (leaves and inner nodes) present only in the new object.
    pub(crate) added: FieldSet,
    /// Paths (leaves and inner nodes) present only in the old object.
    pub(crate) removed: FieldSet,
    /// Leaf paths whose value changed.
    pub(crate) modified: FieldSet,
}

/// Compares two objects, ignoring server-owned fields.
pub(crate) fn compare(old: &Value, new: &Value, h: &dyn Hints) -> Comparison {
    let (o, n) = (strip_server_fields(old), strip_server_fields(new));
    let mut c = Comparison::default();
    cmp(
        Some(&o),
        Some(&n),
        &mut Vec::new(),
        &mut Vec::new(),
        h,
        &mut c,
    );
    c.added = finish_set(c.added);
    c.removed = finish_set(c.removed);
    c.modified = finish_set(c.modified);
    c
}

type Kids<'v> = BTreeMap<String, (Option<String>, &'v Value)>;

fn kids<'v>(v: &'v Value, k: &Kind) -> Kids<'v> {
    let mut out = BTreeMap::new();
    match (k, v) {
        (Kind::Map, Value::Object(m)) => {
            for (name, cv) in m {
                out.insert(format!("f:{name}"), (Some(name.clone()), cv));
            }
        }
        (Kind::List(lt), Value::Array(items)) => {
            for item in items {
                if let Some(pe) = item_pe(lt, item) {
                    out.entry(pe).or_insert((None, item));
                }
            }
        }
        _ => {}
    }
    out
}

fn cmp(
    l: Option<&Value>,
    r: Option<&Value>,
    hp: &mut Vec<String>,
    pp: &mut Vec<String>,
    h: &dyn Hints,
    c: &mut Comparison,
) {
    if let (Some(a), Some(b)) = (l, r)
        && a == b
    {
        return;
    }
    let kl = l.map(|v| kind(v, hp, h));
    let kr = r.map(|v| kind(v, hp, h));
    let structural = |k: &Option<Kind>| matches!(k, Some(Kind::Map | Kind::List(_)));
    if structural(&kl) && kl == kr {
        let (Some(a), Some(b), Some(k)) = (l, r, kl.as_ref()) else {
            return;
        };
        let (ka, kb) = (kids(a, k), kids(b, k));
        let mut pes: Vec<&String> = ka.keys().chain(kb.keys()).collect();
        pes.sort();
        pes.dedup();
        for pe in pes {
            let (name, va) = match ka.get(pe) {
                Some((n, v)) => (n.clone(), Some(*v)),
                None => (None, None),
            };
            let vb = kb.get(pe).map(|(_, v)| *v);
            let name = name.or_else(|| kb.get(pe).and_then(|(n, _)| n.clone()));
            descend(va, vb, pe, name, hp, pp, h, c);
        }
        return;
    }
    // One side missing, a leaf, or a change of shape.
    if let (Some(a), Some(k)) = (l, kl.as_ref())
        && structural(&kl)
    {
        for (pe, (name, v)) in kids(a, k) {
            descend(Some(v), None, &pe, name, hp, pp, h, c);
        }
    }
    if let (Some(b), Some(k)) = (r, kr.as_ref())
        && structural(&kr)
    {
        for (pe, (name, v)) in kids(b, k) {
            descend(None, Some(v), &pe, name, hp, pp, h, c);
        }
    }
    match (l, r) {
        (Some(_), Some(_)) => c.modified.insert(pp),
        (Some(_), None) => c.removed.insert(pp),
        (None, Some(_)) => c.added.insert(pp),
        (None, None) => {}
    }
}

#[allow(clippy::too_many_arguments)]
fn descend(
    a: Option<&Value>,
    b: Option<&Value>,
    pe: &str,
    name: Option<String>,
    hp: &mut Vec<String>,
    pp: &mut Vec<String>,
    h: &dyn Hints,
    c: &mut Comparison,
) {
    let pushed = name.is_some();
    if let Some(n) = name {
        hp.push(n);
    }
    pp.push(pe.to_string());
    cmp(a, b, hp, pp, h, c);
    pp.pop();
    if pushed {
        hp.pop();
    }
}

/// Paths of the explicit nulls in an applied configuration.
pub(crate) fn null_paths(obj: &Value, h: &dyn Hints) -> FieldSet {
    let all = object_field_set(obj, h, false);
    let present = object_field_set(obj, h, true);
    all.difference(&present)
}

/// Merges an applied configuration into the live object (structured-merge-diff
/// `Merge`): maps key by key, sets and associative lists item by item, everything
/// else replaced. Explicit nulls in the configuration remove the field.
pub(crate) fn merge_apply(
    live: &Value,
    cfg: &Value,
    hp: &mut Vec<String>,
    h: &dyn Hints,
) -> Result<Value, String> {
    match (kind(live, hp, h), kind(cfg, hp, h), live, cfg) {
        (Kind::Map, Kind::Map, Value::Object(lm), Value::Object(cm)) => {
            let mut out = lm.clone();
            for (k, cv) in cm {
                if cv.is_null() {
                    out.remove(k);
                    continue;
                }
                hp.push(k.clone());
                let nv = match out.get(k) {
                    Some(lv) => merge_apply(lv, cv, hp, h),
                    None => normalize_cfg(cv, hp, h),
                };
                hp.pop();
                out.insert(k.clone(), nv?);
            }
            Ok(Value::Object(out))
        }
        (Kind::List(a), Kind::List(b), Value::Array(la), Value::Array(ca)) if a == b => {
            merge_list(la, ca, &a, hp, h).map(Value::Array)
        }
        _ => normalize_cfg(cfg, hp, h),
    }
}

fn normalize_cfg(cfg: &Value, hp: &mut Vec<String>, h: &dyn Hints) -> Result<Value, String> {
    match (kind(cfg, hp, h), cfg) {
        (Kind::Map, Value::Object(_)) => merge_apply(&Value::Object(Map::new()), cfg, hp, h),
        (Kind::List(lt), Value::Array(items)) => {
            merge_list(&[], items, &lt, hp, h).map(Value::Array)
        }
        _ => Ok(cfg.clone()),
    }
}

fn merge_list(
    live: &[Value],
    cfg: &[Value],
    lt: &ListType,
    hp: &mut Vec<String>,
    h: &dyn Hints,
) -> Result<Vec<Value>, String> {
    let where_ = || format!(".{}", hp.join("."));
    let mut ckeys = Vec::with_capacity(cfg.len());
    let mut cindex: HashMap<String, usize> = HashMap::new();
    for (i, item) in cfg.iter().enumerate() {
        let pe = match (lt, item) {
            (ListType::Map(_), Value::Object(_)) | (ListType::Set, _) => item_pe(lt, item),
            _ => None,
        };
        let Some(pe) = pe else {
            return Err(format!(
                "{}: associative list with keys has an element that is not a map",
                where_()
            ));
        };
        if cindex.insert(pe.clone(), i).is_some() {
            return Err(format!(
                "{}: duplicate entries for key {}",
                where_(),
                path_string(std::slice::from_ref(&pe))
            ));
        }
        ckeys.push(pe);
    }
    let lkeys: Vec<Option<String>> = live.iter().map(|x| item_pe(lt, x)).collect();
    let mut lindex: HashMap<&String, usize> = HashMap::new();
    for (i, k) in lkeys.iter().enumerate() {
        if let Some(k) = k {
            lindex.entry(k).or_insert(i);
        }
    }
    let merge_item = |l: Option<&Value>, c: &Value, hp: &mut Vec<String>| match l {
        Some(l) => merge_apply(l, c, hp, h),
        None => normalize_cfg(c, hp, h),
    };
    let mut out = Vec::new();
    let mut emitted: HashSet<String> = HashSet::new();
    let (mut li, mut ri) = (0, 0);
    while li < live.len() || ri < cfg.len() {
        if li < live.len() {
            match &lkeys[li] {
                Some(k) if emitted.contains(k) => {
                    li += 1;
                    continue;
                }
                Some(k) if ri < cfg.len() && *k == ckeys[ri] => {
                    out.push(merge_item(Some(&live[li]), &cfg[ri], hp)?);
                    emitted.insert(k.clone());
                    li += 1;
                    ri += 1;
                    continue;
                }
                Some(k) if !cindex.contains_key(k) => {
                    out.push(live[li].clone());
                    li += 1;
                    continue;
                }
                None => {
                    out.push(live[li].clone());
                    li += 1;
                    continue;
                }
                Some(_) => {}
            }
        }
        if ri < cfg.len() {
            let k = &ckeys[ri];
            let l = lindex.get(k).map(|i| &live[*i]);
            out.push(merge_item(l, &cfg[ri], hp)?);
            emitted.insert(k.clone());
            ri += 1;
            continue;
        }
        li += 1;
    }
    Ok(out)
}

fn is_empty_container(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Removes from `v` what `last` (the applier's previous apply set) owned and no
/// manager (`owned`, which includes the applier's new set) owns any more.
/// A named field counts as owned when anything below it is owned.
pub(crate) fn prune(
    v: &mut Value,
    last: &FieldSet,
    owned: Option<&FieldSet>,
    hp: &mut Vec<String>,
    h: &dyn Hints,
) {
    match kind(v, hp, h) {
        Kind::Map => {
            let named = !h.is_granular_map(&as_strs(hp));
            let Value::Object(obj) = v else {
                return;
            };
            let keys: Vec<String> = obj.keys().cloned().collect();
            for k in keys {
                let pe = format!("f:{k}");
                let Some(ln) = last.children.get(&pe) else {
                    continue;
                };
                let on = owned.and_then(|o| o.children.get(&pe));
                let is_owned = on.is_some_and(|o| o.member || (named && !o.is_empty()));
                if ln.member && !is_owned {
                    obj.remove(&k);
                } else if !ln.children.is_empty()
                    && let Some(child) = obj.get_mut(&k)
                {
                    let was_empty = is_empty_container(child);
                    hp.push(k.clone());
                    prune(child, ln, on, hp, h);
                    hp.pop();
                    // A map or list emptied by pruning goes too (built-in types omit
                    // empty values), unless someone owns the node itself.
                    if !was_empty && is_empty_container(child) && !on.is_some_and(|o| o.member) {
                        obj.remove(&k);
                    }
                }
            }
        }
        Kind::List(lt) => {
            let Value::Array(items) = v else {
                return;
            };
            let old = std::mem::take(items);
            for mut item in old {
                let Some(pe) = item_pe(&lt, &item) else {
                    items.push(item);
                    continue;
                };
                let Some(ln) = last.children.get(&pe) else {
                    items.push(item);
                    continue;
                };
                let on = owned.and_then(|o| o.children.get(&pe));
                if ln.member && !on.is_some_and(|o| o.member) {
                    continue;
                }
                if !ln.children.is_empty() {
                    prune(&mut item, ln, on, hp, h);
                }
                items.push(item);
            }
        }
        Kind::Leaf => {}
    }
}
