//! What a request asks to do, in the authorizer's terms: the real server's `RequestInfo`.

use std::collections::HashMap;

/// The authorization attributes of a request on a resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceAttributes {
    /// Namespace; empty for cluster-scoped objects and all-namespace requests.
    pub namespace: String,
    /// API group; empty for the core group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Resource (plural).
    pub resource: String,
    /// Subresource, e.g. `status`; empty for none.
    pub subresource: String,
    /// Object name; empty for collections.
    pub name: String,
}

/// What a request asks: a verb on a resource, or a verb on a non-resource path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`, or for
    /// non-resource paths the lower-case HTTP method.
    pub verb: String,
    /// The request path (for non-resource requests and messages).
    pub path: String,
    /// The resource, `None` for non-resource paths such as `/version` or `/apis`.
    pub resource: Option<ResourceAttributes>,
}

/// Sub-paths of a namespace that are subresources of the namespace itself.
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

/// Maps a request to its attributes, the way the real server's `RequestInfoFactory` does:
/// `/api/v1/...` and `/apis/{group}/{version}/...` are resource requests, anything else (or a
/// path too short to name a resource) is a non-resource request.
pub fn request_info(method: &str, path: &str, query: &HashMap<String, String>) -> RequestInfo {
    let non_resource = || RequestInfo {
        verb: method.to_ascii_lowercase(),
        path: path.to_string(),
        resource: None,
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, mut rest) = match parts.as_slice() {
        ["api", version, rest @ ..] if !rest.is_empty() => ("", *version, rest),
        ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
        _ => return non_resource(),
    };
    let mut verb = match method {
        "GET" | "HEAD" => "get",
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => return non_resource(),
    }
    .to_string();
    let mut attrs = ResourceAttributes {
        group: group.into(),
        version: version.into(),
        ..Default::default()
    };
    if rest[0] == "namespaces" && rest.len() > 1 {
        attrs.namespace = rest[1].into();
        // `/namespaces/{ns}/{resource}...` addresses a resource in the namespace;
        // `/namespaces/{ns}` and `/namespaces/{ns}/status` address the namespace itself.
        if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
            rest = &rest[2..];
        }
    }
    attrs.resource = rest[0].into();
    attrs.name = rest.get(1).map(|s| s.to_string()).unwrap_or_default();
    attrs.subresource = rest.get(2).map(|s| s.to_string()).unwrap_or_default();
    if attrs.name.is_empty() && verb == "delete" {
        verb = "deletecollection".into();
    }
    if attrs.name.is_empty() && verb == "get" {
        let watching = query.get("watch").is_some_and(|w| w == "true" || w == "1");
        verb = if watching { "watch" } else { "list" }.into();
        if let Some(name) = query.get("fieldSelector").and_then(|s| exact_name(s)) {
            attrs.name = name;
        }
    }
    RequestInfo {
        verb,
        path: path.to_string(),
        resource: Some(attrs),
    }
}

/// The name a field selector requires exactly (`metadata.name=x` or `metadata.name==x`, alone
/// or among other terms), as list and watch authorization uses it.
fn exact_name(selector: &str) -> Option<String> {
    selector.split(',').find_map(|term| {
        let (field, value) = term.split_once("==").or_else(|| term.split_once('='))?;
        (field.trim() == "metadata.name" && !value.contains('!') && !value.is_empty())
            .then(|| value.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(method: &str, path: &str, query: &[(&str, &str)]) -> RequestInfo {
        let q = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        request_info(method, path, &q)
    }

    fn attrs(method: &str, path: &str, query: &[(&str, &str)]) -> (String, ResourceAttributes) {
        let i = info(method, path, query);
        (i.verb, i.resource.expect("a resource request"))
    }

    #[test]
    fn resource_paths_map_like_the_real_request_info() {
        let (verb, a) = attrs(
            "POST",
            "/apis/sluice.dev/v1alpha1/namespaces/acme/pipelines",
            &[],
        );
        assert_eq!(verb, "create");
        assert_eq!(
            (
                a.group.as_str(),
                a.resource.as_str(),
                a.namespace.as_str(),
                a.name.as_str()
            ),
            ("sluice.dev", "pipelines", "acme", "")
        );
        let (verb, a) = attrs("GET", "/api/v1/namespaces/acme/configmaps/c", &[]);
        assert_eq!((verb.as_str(), a.name.as_str()), ("get", "c"));
        let (verb, a) = attrs("GET", "/apis/apps/v1/deployments", &[]);
        assert_eq!((verb.as_str(), a.namespace.as_str()), ("list", ""));
        let (verb, _) = attrs("GET", "/api/v1/namespaces/a/secrets", &[("watch", "true")]);
        assert_eq!(verb, "watch");
        let (verb, _) = attrs("DELETE", "/api/v1/namespaces/a/secrets", &[]);
        assert_eq!(verb, "deletecollection");
        let (verb, a) = attrs(
            "PATCH",
            "/apis/apps/v1/namespaces/a/deployments/d/scale",
            &[],
        );
        assert_eq!((verb.as_str(), a.subresource.as_str()), ("patch", "scale"));
        let (verb, a) = attrs("PUT", "/apis/apps/v1/namespaces/a/deployments/d", &[]);
        assert_eq!((verb.as_str(), a.name.as_str()), ("update", "d"));
    }

    #[test]
    fn a_namespace_is_its_own_namespace() {
        let (_, a) = attrs("GET", "/api/v1/namespaces/acme", &[]);
        assert_eq!(
            (a.resource.as_str(), a.name.as_str(), a.namespace.as_str()),
            ("namespaces", "acme", "acme")
        );
        let (verb, a) = attrs("PUT", "/api/v1/namespaces/acme/finalize", &[]);
        assert_eq!(
            (verb.as_str(), a.resource.as_str(), a.subresource.as_str()),
            ("update", "namespaces", "finalize")
        );
        let (verb, a) = attrs("GET", "/api/v1/namespaces", &[]);
        assert_eq!((verb.as_str(), a.namespace.as_str()), ("list", ""));
    }

    #[test]
    fn a_field_selector_on_the_name_names_the_object() {
        let (verb, a) = attrs(
            "GET",
            "/api/v1/namespaces/a/secrets",
            &[("fieldSelector", "metadata.name=s1"), ("watch", "1")],
        );
        assert_eq!((verb.as_str(), a.name.as_str()), ("watch", "s1"));
        let (_, a) = attrs(
            "GET",
            "/api/v1/namespaces/a/secrets",
            &[("fieldSelector", "metadata.name!=s1")],
        );
        assert_eq!(a.name, "");
    }

    #[test]
    fn other_paths_are_non_resource_requests() {
        for path in [
            "/version",
            "/apis",
            "/api",
            "/api/v1",
            "/apis/apps/v1",
            "/openapi/v3",
            "/healthz",
        ] {
            let i = info("GET", path, &[]);
            assert_eq!(i.resource, None, "{path}");
            assert_eq!(i.verb, "get");
        }
    }
}
