//! Turns a request path into what it addresses.

use crate::resources::{Registry, ResourceType};

/// What a path addresses.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// `/version`.
    Version,
    /// `/healthz`, `/livez`, `/readyz`.
    Health,
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    Groups,
    /// `/apis/{group}`.
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`.
    ResourceList {
        /// Group ("" for core).
        group: String,
        /// Version.
        version: String,
    },
    /// `/openapi/v2`.
    OpenApiV2,
    /// `/openapi/v3`.
    OpenApiV3Index,
    /// `/openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`.
    OpenApiV3 {
        /// Group ("" for core).
        group: String,
        /// Version.
        version: String,
    },
    /// A collection, an object or a subresource.
    Resource(Target),
}

/// A collection, object or subresource of one resource type.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural resource name.
    pub plural: String,
    /// Namespace from the path (`None` for cluster-scoped paths and all-namespace lists).
    pub namespace: Option<String>,
    /// Object name.
    pub name: Option<String>,
    /// Subresource (`status`, `scale`, ...).
    pub subresource: Option<String>,
}

impl Target {
    /// Resolves the resource type; `None` when the server does not serve it.
    pub fn resource_type(&self, registry: &Registry) -> Option<ResourceType> {
        registry
            .find(&self.group, &self.version, &self.plural)
            .cloned()
    }
}

/// Parses a request path (without query).
pub fn parse(path: &str, registry: &Registry) -> Option<Route> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segs.as_slice() {
        ["version"] => Some(Route::Version),
        ["healthz"] | ["livez"] | ["readyz"] => Some(Route::Health),
        [h, _] if matches!(*h, "healthz" | "livez" | "readyz") => Some(Route::Health),
        ["api"] => Some(Route::CoreVersions),
        ["apis"] => Some(Route::Groups),
        ["apis", g] => Some(Route::Group(g.to_string())),
        ["api", v] => Some(Route::ResourceList {
            group: String::new(),
            version: v.to_string(),
        }),
        ["apis", g, v] => Some(Route::ResourceList {
            group: g.to_string(),
            version: v.to_string(),
        }),
        ["openapi", "v2"] => Some(Route::OpenApiV2),
        ["openapi", "v3"] => Some(Route::OpenApiV3Index),
        ["openapi", "v3", "api", v] => Some(Route::OpenApiV3 {
            group: String::new(),
            version: v.to_string(),
        }),
        ["openapi", "v3", "apis", g, v] => Some(Route::OpenApiV3 {
            group: g.to_string(),
            version: v.to_string(),
        }),
        ["api", v, rest @ ..] => resource("", v, rest, registry),
        ["apis", g, v, rest @ ..] => resource(g, v, rest, registry),
        _ => None,
    }
}

fn resource(group: &str, version: &str, rest: &[&str], registry: &Registry) -> Option<Route> {
    let namespaced_path = rest.len() >= 3
        && rest[0] == "namespaces"
        && registry
            .find(group, version, rest[2])
            .is_some_and(|t| t.namespaced);
    let (namespace, tail) = if namespaced_path {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    if tail.is_empty() || tail.len() > 3 {
        return None;
    }
    Some(Route::Resource(Target {
        group: group.to_string(),
        version: version.to_string(),
        plural: tail[0].to_string(),
        namespace,
        name: tail.get(1).map(|s| s.to_string()),
        subresource: tail.get(2).map(|s| s.to_string()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(route: Option<Route>) -> Target {
        match route {
            Some(Route::Resource(t)) => t,
            other => panic!("not a resource: {other:?}"),
        }
    }

    #[test]
    fn paths_resolve() {
        let r = Registry::builtin();
        let t = target(parse("/api/v1/namespaces/t1/configmaps/c", &r));
        assert_eq!(t.namespace.as_deref(), Some("t1"));
        assert_eq!(t.plural, "configmaps");
        assert_eq!(t.name.as_deref(), Some("c"));
        let t = target(parse("/api/v1/namespaces/t1", &r));
        assert_eq!(
            (t.plural.as_str(), t.name.as_deref()),
            ("namespaces", Some("t1"))
        );
        let t = target(parse("/api/v1/namespaces/t1/status", &r));
        assert_eq!(t.subresource.as_deref(), Some("status"));
        assert_eq!(t.namespace, None);
        let t = target(parse("/apis/apps/v1/deployments", &r));
        assert_eq!((t.namespace, t.name), (None, None));
        let t = target(parse("/apis/apps/v1/namespaces/a/deployments/d/scale", &r));
        assert_eq!(t.subresource.as_deref(), Some("scale"));
        assert_eq!(
            parse("/apis/apps/v1", &r),
            Some(Route::ResourceList {
                group: "apps".into(),
                version: "v1".into()
            })
        );
        assert_eq!(
            parse("/openapi/v3/apis/apps/v1", &r),
            Some(Route::OpenApiV3 {
                group: "apps".into(),
                version: "v1".into()
            })
        );
        assert_eq!(parse("/nothing", &r), None);
    }
}
