//! Names and labels of what Sluice creates.

/// Label naming the tenant an object belongs to.
pub const LABEL_TENANT: &str = "sluice.dev/tenant";
/// Label naming the pipeline an object belongs to.
pub const LABEL_PIPELINE: &str = "sluice.dev/pipeline";
/// Label naming the route (the sink) an object belongs to.
pub const LABEL_ROUTE: &str = "sluice.dev/route";
/// Standard label: who manages the object.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`LABEL_MANAGED_BY`] on everything the operator creates.
pub const MANAGED_BY: &str = "sluice-operator";
/// Standard label: the application name.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// Standard label: the component within the application.
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// Prefix of tenant namespaces.
pub const NAMESPACE_PREFIX: &str = "sluice-";
/// Longest tenant name, so that its namespace name stays a DNS-1123 label.
pub const MAX_TENANT_NAME: usize = 63 - NAMESPACE_PREFIX.len();

/// Whether `s` is a DNS-1123 label: lowercase alphanumerics and '-', starting and ending
/// alphanumeric, at most 63 characters.
pub fn is_dns1123_label(s: &str) -> bool {
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    s.len() <= 63
        && s.starts_with(alphanumeric)
        && s.ends_with(alphanumeric)
        && s.chars().all(|c| alphanumeric(c) || c == '-')
}

/// Why a name is refused, or `None` when it is a valid DNS-1123 label of at most `max` bytes.
pub fn check_name(name: &str, max: usize) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.len() > max {
        return Some(format!("must be at most {max} characters"));
    }
    if !is_dns1123_label(name) {
        return Some(
            "must consist of lower case alphanumeric characters or '-', and start and end with \
             an alphanumeric character (a DNS-1123 label)"
                .into(),
        );
    }
    None
}

/// The namespace of a tenant: `sluice-<tenant>`.
pub fn tenant_namespace(tenant: &str) -> String {
    format!("{NAMESPACE_PREFIX}{tenant}")
}

/// The tenant owning a namespace, when it follows the tenant naming.
pub fn tenant_of_namespace(namespace: &str) -> Option<&str> {
    namespace
        .strip_prefix(NAMESPACE_PREFIX)
        .filter(|t| !t.is_empty())
}

/// The name of a route's objects (ConfigMap, Deployment, Service, PodDisruptionBudget):
/// `<pipeline>-<sink>`, shortened with a stable hash when longer than 63 characters.
pub fn route_name(pipeline: &str, sink: &str) -> String {
    let full = format!("{pipeline}-{sink}");
    if full.len() <= 63 {
        return full;
    }
    let hash = format!("{:08x}", fnv1a(full.as_bytes()) as u32);
    let keep = 63 - hash.len() - 1;
    let prefix = full[..keep].trim_end_matches('-');
    format!("{prefix}-{hash}")
}

/// 64-bit FNV-1a: a small stable hash for names and config fingerprints.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_dns1123_label("acme-1"));
        assert!(!is_dns1123_label("Acme"));
        assert_eq!(check_name("", 10).unwrap(), "must not be empty");
        assert!(check_name("abc", 2).unwrap().contains("at most 2"));
        assert!(check_name("a_b", 10).unwrap().contains("DNS-1123"));
        assert_eq!(check_name("ok", 10), None);
        assert_eq!(tenant_namespace("acme"), "sluice-acme");
        assert_eq!(tenant_of_namespace("sluice-acme"), Some("acme"));
        assert_eq!(tenant_of_namespace("default"), None);
    }

    #[test]
    fn route_names_fit_in_a_label() {
        assert_eq!(route_name("orders", "alerts"), "orders-alerts");
        let long = route_name(&"p".repeat(60), &"s".repeat(60));
        assert!(long.len() <= 63, "{long}");
        assert!(is_dns1123_label(&long));
        assert_ne!(long, route_name(&"p".repeat(60), &"t".repeat(60)));
        assert_eq!(long, route_name(&"p".repeat(60), &"s".repeat(60)));
    }
}
