//! Object metadata rules: names, labels, timestamps, generated names.

use crate::error::{StatusCause, cause};
use rand::Rng;
use serde_json::Value;

/// Current time in the RFC 3339 form Kubernetes uses (`2026-01-02T03:04:05Z`).
pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Current time with microseconds (`MicroTime`, used by leases and events).
pub fn now_micro() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// A name from `generateName`: the prefix plus five random characters, as the real server does.
pub fn generate_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    let max_prefix = 63 - 5;
    let prefix = if prefix.len() > max_prefix {
        &prefix[..max_prefix]
    } else {
        prefix
    };
    format!("{prefix}{suffix}")
}

/// Whether `s` is a DNS-1123 label (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters).
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is a DNS-1123 subdomain (dot-separated labels, at most 253 characters).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

fn qualified_name_ok(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix
        && !is_dns1123_subdomain(p)
    {
        return false;
    }
    label_value_ok(name) && !name.is_empty()
}

fn label_value_ok(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    let b = s.as_bytes();
    s.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
}

/// Whether `s` is a DNS-1035 label (`[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63 characters): a
/// DNS-1123 label that starts with a letter.
pub fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// Whether `s` may be a path segment: what the real server asks of RBAC object names.
pub fn is_path_segment(s: &str) -> bool {
    s != "." && s != ".." && !s.contains(['/', '%'])
}

const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

/// The rule an object's name must follow, which depends on its kind, as in the real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// Namespaces.
    Dns1123Label,
    /// Services: their names become DNS labels that must not look like numbers.
    Dns1035Label,
    /// Most kinds, custom resources included.
    Dns1123Subdomain,
    /// Roles, ClusterRoles and their bindings.
    PathSegment,
}

impl NameRule {
    /// The rule for objects of the resource `plural` in API group `group`.
    pub fn of(group: &str, plural: &str) -> Self {
        match (group, plural) {
            ("", "namespaces") => NameRule::Dns1123Label,
            ("", "services") => NameRule::Dns1035Label,
            ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
            _ => NameRule::Dns1123Subdomain,
        }
    }

    /// Why `name` breaks the rule, in the real server's words, or `None` when it follows it.
    pub fn violation(self, name: &str) -> Option<String> {
        let (ok, why) = match self {
            NameRule::Dns1123Label => (is_dns1123_label(name), DNS1123_LABEL_MSG),
            NameRule::Dns1035Label => (is_dns1035_label(name), DNS1035_LABEL_MSG),
            NameRule::Dns1123Subdomain => (is_dns1123_subdomain(name), DNS1123_SUBDOMAIN_MSG),
            NameRule::PathSegment => (
                is_path_segment(name),
                "may not be '.' or '..' and may not contain '/' or '%'",
            ),
        };
        (!ok).then(|| {
            let mut why = why.to_string();
            if matches!(self, NameRule::Dns1123Label | NameRule::Dns1035Label) && name.len() > 63 {
                why = "must be no more than 63 characters".into();
            }
            format!("Invalid value: \"{name}\": {why}")
        })
    }
}

/// Validates `metadata` of an object about to be stored; `rule` is what its name must follow.
pub fn validate_metadata(obj: &Value, rule: NameRule) -> Vec<StatusCause> {
    let mut causes = vec![];
    let meta = &obj["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        causes.push(cause(
            "FieldValueRequired",
            "metadata.name",
            "Required value: name or generateName is required",
        ));
    } else if let Some(message) = rule.violation(name) {
        causes.push(cause("FieldValueInvalid", "metadata.name", message));
    }
    if let Some(labels) = meta["labels"].as_object() {
        for (k, v) in labels {
            if !qualified_name_ok(k) {
                causes.push(cause(
                    "FieldValueInvalid",
                    "metadata.labels",
                    format!("Invalid value: \"{k}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"),
                ));
            }
            match v.as_str() {
                Some(s) if label_value_ok(s) => {}
                _ => causes.push(cause(
                    "FieldValueInvalid",
                    "metadata.labels",
                    format!("Invalid value: {v}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"),
                )),
            }
        }
    } else if !meta["labels"].is_null() {
        causes.push(cause(
            "FieldValueTypeInvalid",
            "metadata.labels",
            "Invalid value: must be a map of strings",
        ));
    }
    if let Some(ann) = meta["annotations"].as_object() {
        let total: usize = ann
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map(str::len).unwrap_or(0))
            .sum();
        for (k, v) in ann {
            if !qualified_name_ok(k) {
                causes.push(cause(
                    "FieldValueInvalid",
                    "metadata.annotations",
                    format!("Invalid value: \"{k}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"),
                ));
            }
            if !v.is_string() {
                causes.push(cause(
                    "FieldValueTypeInvalid",
                    "metadata.annotations",
                    format!("Invalid value: {v}: annotation values must be strings"),
                ));
            }
        }
        if total > 256 * 1024 {
            causes.push(cause(
                "FieldValueTooLong",
                "metadata.annotations",
                "Too long: must have at most 262144 bytes",
            ));
        }
    }
    if let Some(fins) = meta.get("finalizers") {
        match fins.as_array() {
            Some(list) => {
                for f in list {
                    if !f.as_str().map(qualified_name_ok).unwrap_or(false) {
                        causes.push(cause(
                            "FieldValueInvalid",
                            "metadata.finalizers",
                            format!("Invalid value: {f}: name part must consist of alphanumeric characters, '-', '_' or '.'"),
                        ));
                    }
                }
            }
            None if fins.is_null() => {}
            None => causes.push(cause(
                "FieldValueTypeInvalid",
                "metadata.finalizers",
                "Invalid value: must be a list of strings",
            )),
        }
    }
    causes
}

/// `metadata.finalizers` as strings.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The uids in `metadata.ownerReferences`.
pub fn owner_uids(obj: &Value) -> Vec<String> {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["uid"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// A string field of `metadata`, or "".
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"][field].as_str().unwrap_or_default()
}

/// Reads the value at a dotted path (`.spec.replicas`).
pub fn get_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for part in path.trim_start_matches('.').split('.') {
        if part.is_empty() {
            continue;
        }
        cur = cur.get(part)?;
    }
    Some(cur)
}

/// Writes `value` at a dotted path, creating objects on the way.
pub fn set_path(obj: &mut Value, path: &str, value: Value) {
    let parts: Vec<&str> = path
        .trim_start_matches('.')
        .split('.')
        .filter(|p| !p.is_empty())
        .collect();
    let mut cur = obj;
    for (i, part) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = Value::Object(Default::default());
        }
        let map = cur.as_object_mut().expect("object");
        if i == parts.len() - 1 {
            map.insert(part.to_string(), value);
            return;
        }
        cur = map
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dns_names() {
        assert!(is_dns1123_label("tenant-a1"));
        assert!(!is_dns1123_label("Tenant"));
        assert!(!is_dns1123_label("-a"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_subdomain("pipelines.sluice.dev"));
        assert!(!is_dns1123_subdomain("a..b"));
    }

    #[test]
    fn generated_names_keep_the_prefix() {
        let n = generate_name("route-");
        assert!(n.starts_with("route-"));
        assert_eq!(n.len(), "route-".len() + 5);
    }

    #[test]
    fn metadata_rules() {
        let label = NameRule::Dns1123Label;
        assert!(validate_metadata(&json!({"metadata": {"name": "ok"}}), label).is_empty());
        let bad = validate_metadata(
            &json!({"metadata": {"name": "Bad_Name", "labels": {"a": "x y"}}}),
            label,
        );
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].field, "metadata.name");
        assert!(bad[0].message.starts_with("Invalid value: \"Bad_Name\""));
        assert_eq!(bad[1].field, "metadata.labels");
    }

    #[test]
    fn each_kind_has_the_real_servers_name_rule() {
        let service = NameRule::of("", "services");
        assert_eq!(service, NameRule::Dns1035Label);
        assert!(service.violation("orders-o").is_none());
        let digit = service
            .violation("1abc-o")
            .expect("a digit first is refused");
        assert!(digit.contains("DNS-1035"), "{digit}");
        let long = service.violation(&"a".repeat(64)).expect("64 characters");
        assert!(long.contains("no more than 63"), "{long}");

        let ns = NameRule::of("", "namespaces");
        assert!(ns.violation("1abc").is_none());
        assert!(ns.violation("a.b").is_some());

        let deployment = NameRule::of("apps", "deployments");
        assert!(deployment.violation("1abc.route").is_none());
        assert!(deployment.violation(&"a".repeat(254)).is_some());
        assert!(
            NameRule::of("sluice.dev", "pipelines")
                .violation("1abc")
                .is_none()
        );

        let role = NameRule::of("rbac.authorization.k8s.io", "clusterroles");
        assert!(role.violation("system:controller:x").is_none());
        assert!(role.violation("a/b").is_some());
        assert!(role.violation("..").is_some());
    }

    #[test]
    fn paths() {
        let mut v = json!({"spec": {"replicas": 2}});
        assert_eq!(get_path(&v, ".spec.replicas"), Some(&json!(2)));
        set_path(&mut v, ".status.replicas", json!(3));
        assert_eq!(v["status"]["replicas"], 3);
    }
}
