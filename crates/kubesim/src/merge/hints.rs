//! Schema knowledge: how lists and maps merge.

use serde_json::Value;

/// How a list is merged, from the schema (CRD `x-kubernetes-list-type` /
/// `x-kubernetes-list-map-keys`, or built-in type knowledge).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListType {
    /// Replaced whole; owned as a single field.
    Atomic,
    /// A set of scalars (`x-kubernetes-list-type: set`); each value is owned separately.
    Set,
    /// An associative list keyed by these fields (`x-kubernetes-list-type: map`).
    /// Strategic merge patch uses the first key as its `patchMergeKey`.
    Map(Vec<String>),
}

/// Schema knowledge the merge needs. `path` is the field path from the object
/// root without list indices, e.g. `["spec","template","spec","containers"]`.
pub trait Hints {
    /// How the list at `path` merges.
    fn list_type(&self, path: &[&str]) -> ListType;

    /// True when the object at `path` is replaced whole (`x-kubernetes-map-type: atomic`,
    /// `+structType=atomic`), and owned as a single field.
    fn is_atomic_map(&self, _path: &[&str]) -> bool {
        false
    }

    /// True when the object at `path` is a map whose keys are data rather than
    /// declared fields (`map[string]string` such as labels, or `additionalProperties`).
    /// Each entry of such a map is a field of its own in the field set, which is
    /// why `f:labels` has no `"."` in an apply set but `f:app` under it is a member.
    fn is_granular_map(&self, _path: &[&str]) -> bool {
        false
    }
}

/// Built-in Kubernetes knowledge, by path alone.
///
/// Associative lists: `containers`/`initContainers`/`ephemeralContainers`, `env`,
/// `volumes`, `imagePullSecrets`, `resourceClaims`, `schedulingGates`, `webhooks` (by `name`);
/// container `ports` (by `containerPort`,`protocol`) and Service `spec.ports` (by `port`,`protocol`),
/// where a missing `protocol` counts as `"TCP"` as the server defaults it;
/// `volumeMounts` (`mountPath`), `volumeDevices` (`devicePath`), `conditions` (`type`),
/// `metadata.ownerReferences` (`uid`), `hostAliases` (`ip`),
/// `topologySpreadConstraints` (`topologyKey`,`whenUnsatisfiable`).
/// Sets: `metadata.finalizers`. Every other list is atomic (`tolerations`,
/// RBAC `subjects`/`rules`, `args`, `command`...).
///
/// Atomic maps: label selectors (`spec.selector`, `selector`, `labelSelector`,
/// `namespaceSelector`, `podSelector`, `objectSelector`). Note that a Service's or
/// ReplicationController's `spec.selector` (a plain string map in the real schema)
/// is therefore owned as one field here: the path alone cannot tell the kinds apart.
///
/// Granular maps (each key its own field): `labels`, `annotations`, `nodeSelector`,
/// `data`, `binaryData`, `stringData`, `limits`, `requests`, `capacity`,
/// `allocatable`, `parameters`.
#[derive(Clone, Copy, Debug, Default)]
pub struct BuiltinHints;

impl Hints for BuiltinHints {
    fn list_type(&self, path: &[&str]) -> ListType {
        let keys = |ks: &[&str]| ListType::Map(ks.iter().map(|k| k.to_string()).collect());
        let Some(last) = path.last() else {
            return ListType::Atomic;
        };
        match *last {
            "containers"
            | "initContainers"
            | "ephemeralContainers"
            | "env"
            | "volumes"
            | "imagePullSecrets"
            | "resourceClaims"
            | "schedulingGates"
            | "webhooks" => keys(&["name"]),
            "ports" if path == ["spec", "ports"] => keys(&["port", "protocol"]),
            "ports" if path.len() >= 2 && path[path.len() - 2].ends_with("ontainers") => {
                keys(&["containerPort", "protocol"])
            }
            "volumeMounts" => keys(&["mountPath"]),
            "volumeDevices" => keys(&["devicePath"]),
            "conditions" => keys(&["type"]),
            "ownerReferences" if path == ["metadata", "ownerReferences"] => keys(&["uid"]),
            "finalizers" if path == ["metadata", "finalizers"] => ListType::Set,
            "hostAliases" => keys(&["ip"]),
            "topologySpreadConstraints" => keys(&["topologyKey", "whenUnsatisfiable"]),
            _ => ListType::Atomic,
        }
    }

    fn is_atomic_map(&self, path: &[&str]) -> bool {
        matches!(
            path.last(),
            Some(&"selector" | &"labelSelector" | &"namespaceSelector" | &"podSelector")
                | Some(&"objectSelector")
        )
    }

    fn is_granular_map(&self, path: &[&str]) -> bool {
        matches!(
            path.last(),
            Some(
                &"labels"
                    | &"annotations"
                    | &"nodeSelector"
                    | &"data"
                    | &"binaryData"
                    | &"stringData"
                    | &"limits"
                    | &"requests"
                    | &"capacity"
                    | &"allocatable"
                    | &"parameters"
            )
        )
    }
}

/// A CRD schema (`openAPIV3Schema` JSON) read for list and map types.
///
/// `x-kubernetes-list-type` absent → [`ListType::Atomic`]; `set`; `map` with
/// `x-kubernetes-list-map-keys`. `x-kubernetes-map-type: atomic` → atomic map.
/// A node with `additionalProperties` (and no `properties`) or with
/// `x-kubernetes-preserve-unknown-fields` (and no `properties`) is a granular map.
/// Paths under `metadata` use [`BuiltinHints`]; other paths the schema does not
/// describe are atomic lists and non-granular maps.
#[derive(Clone, Copy, Debug)]
pub struct SchemaHints<'a>(pub &'a Value);

impl SchemaHints<'_> {
    fn resolve(&self, path: &[&str]) -> Option<&Value> {
        let mut cur = self.0;
        for seg in path {
            while is_array_schema(cur) {
                cur = cur.get("items")?;
            }
            cur = match cur.get("properties").and_then(|p| p.get(*seg)) {
                Some(p) => p,
                None => match cur.get("additionalProperties") {
                    Some(ap) if ap.is_object() => ap,
                    _ => return None,
                },
            };
        }
        Some(cur)
    }
}

fn is_array_schema(s: &Value) -> bool {
    s.get("type").and_then(Value::as_str) == Some("array") || s.get("items").is_some()
}

impl Hints for SchemaHints<'_> {
    fn list_type(&self, path: &[&str]) -> ListType {
        if path.first() == Some(&"metadata") {
            return BuiltinHints.list_type(path);
        }
        let Some(node) = self.resolve(path) else {
            return ListType::Atomic;
        };
        match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => ListType::Set,
            Some("map") => {
                let keys = node
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|k| k.as_str().map(str::to_string))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                if keys.is_empty() {
                    ListType::Atomic
                } else {
                    ListType::Map(keys)
                }
            }
            _ => ListType::Atomic,
        }
    }

    fn is_atomic_map(&self, path: &[&str]) -> bool {
        if path.first() == Some(&"metadata") {
            return BuiltinHints.is_atomic_map(path);
        }
        self.resolve(path)
            .and_then(|n| n.get("x-kubernetes-map-type"))
            .and_then(Value::as_str)
            == Some("atomic")
    }

    fn is_granular_map(&self, path: &[&str]) -> bool {
        if path.first() == Some(&"metadata") {
            return BuiltinHints.is_granular_map(path);
        }
        let Some(node) = self.resolve(path) else {
            return false;
        };
        if node.get("properties").is_some() {
            return false;
        }
        node.get("additionalProperties")
            .is_some_and(Value::is_object)
            || node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
    }
}
