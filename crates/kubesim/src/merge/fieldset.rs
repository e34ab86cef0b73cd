//! Field sets: the tree of owned paths behind `fieldsV1`.
//!
//! A path element is kept in its `fieldsV1` spelling: `f:<field>`,
//! `k:<json object of key fields>`, `v:<json value>` or `i:<index>`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// A set of field paths, stored as a tree. `member` says whether the path
/// ending at this node is itself in the set (the `"."` marker in fieldsV1
/// when the node also has children).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldSet {
    pub(crate) member: bool,
    pub(crate) children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    /// True when no path at all is in the set.
    pub(crate) fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    /// Adds `path` (ignored when empty: the root is never a member).
    pub(crate) fn insert(&mut self, path: &[String]) {
        if path.is_empty() {
            return;
        }
        let mut node = self;
        for pe in path {
            node = node.children.entry(pe.clone()).or_default();
        }
        node.member = true;
    }

    /// True when some member of the set is `path` or a prefix of it.
    pub(crate) fn covers(&self, path: &[String]) -> bool {
        let mut node = self;
        for pe in path {
            match node.children.get(pe) {
                Some(c) => {
                    if c.member {
                        return true;
                    }
                    node = c;
                }
                None => return false,
            }
        }
        false
    }

    /// Set union.
    pub(crate) fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.member |= other.member;
        for (k, c) in &other.children {
            let merged = match out.children.get(k) {
                Some(mine) => mine.union(c),
                None => c.clone(),
            };
            out.children.insert(k.clone(), merged);
        }
        out
    }

    /// Paths in `self` that are not members of `other` (exact paths, not subtrees).
    pub(crate) fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (k, c) in &self.children {
            let d = match other.children.get(k) {
                Some(oc) => c.difference(oc),
                None => c.clone(),
            };
            if !d.is_empty() {
                out.children.insert(k.clone(), d);
            }
        }
        out
    }

    /// Paths that are members of both sets.
    pub(crate) fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (k, c) in &self.children {
            if let Some(oc) = other.children.get(k) {
                let i = c.intersection(oc);
                if !i.is_empty() {
                    out.children.insert(k.clone(), i);
                }
            }
        }
        out
    }

    /// Removes nodes that hold no member.
    pub(crate) fn normalize(&mut self) {
        for c in self.children.values_mut() {
            c.normalize();
        }
        self.children.retain(|_, c| !c.is_empty());
    }

    /// Every member path, in the order structured-merge-diff iterates a set:
    /// the members of a level first, then the subtrees of its children.
    pub(crate) fn paths(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        for (k, c) in &self.children {
            if c.member {
                let mut p = prefix.clone();
                p.push(k.clone());
                out.push(p);
            }
        }
        for (k, c) in &self.children {
            if !c.children.is_empty() {
                prefix.push(k.clone());
                c.collect_paths(prefix, out);
                prefix.pop();
            }
        }
    }

    /// Parses a `fieldsV1` object. Anything that is not an object is an empty set.
    pub(crate) fn from_json(v: &Value) -> FieldSet {
        let mut out = FieldSet::default();
        if let Some(obj) = v.as_object() {
            for (k, cv) in obj {
                if k == "." {
                    out.member = true;
                    continue;
                }
                let mut child = FieldSet::from_json(cv);
                if cv.as_object().is_none_or(Map::is_empty) {
                    child.member = true;
                }
                out.children.insert(k.clone(), child);
            }
        }
        out
    }

    /// Renders the set as a `fieldsV1` object (the root's own flag is not shown).
    pub(crate) fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (k, c) in &self.children {
            if !c.is_empty() {
                m.insert(k.clone(), c.node_json());
            }
        }
        Value::Object(m)
    }

    fn node_json(&self) -> Value {
        let mut m = Map::new();
        let has_children = self.children.values().any(|c| !c.is_empty());
        if self.member && has_children {
            m.insert(".".to_string(), Value::Object(Map::new()));
        }
        for (k, c) in &self.children {
            if !c.is_empty() {
                m.insert(k.clone(), c.node_json());
            }
        }
        Value::Object(m)
    }
}

/// Renders a path the way the real server prints it in conflict messages:
/// `.spec.containers[name="app"].image`, `[=value]` for set items, `[3]` for indices.
pub(crate) fn path_string(path: &[String]) -> String {
    let mut s = String::new();
    for pe in path {
        if let Some(name) = pe.strip_prefix("f:") {
            s.push('.');
            s.push_str(name);
        } else if let Some(key) = pe.strip_prefix("k:") {
            s.push('[');
            match serde_json::from_str::<Value>(key) {
                Ok(Value::Object(fields)) => {
                    let parts: Vec<String> =
                        fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    s.push_str(&parts.join(","));
                }
                _ => s.push_str(key),
            }
            s.push(']');
        } else if let Some(val) = pe.strip_prefix("v:") {
            s.push_str("[=");
            s.push_str(val);
            s.push(']');
        } else if let Some(idx) = pe.strip_prefix("i:") {
            s.push('[');
            s.push_str(idx);
            s.push(']');
        } else {
            s.push('.');
            s.push_str(pe);
        }
    }
    s
}
