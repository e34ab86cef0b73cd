//! The review APIs: `SelfSubjectAccessReview`, `SubjectAccessReview`,
//! `LocalSubjectAccessReview` and `SelfSubjectRulesReview` (`authorization.k8s.io/v1`, behind
//! `kubectl auth can-i`), and `SelfSubjectReview` and `TokenReview` (`authentication.k8s.io/v1`,
//! behind `kubectl auth whoami`). Each is a create that stores nothing: the answer is the
//! request with its `status` filled in.

use super::rbac::{Authorizer, PolicyRule};
use super::request_info::{RequestInfo, ResourceAttributes};
use super::{Authenticator, Identity};
use crate::cluster::Cluster;
use crate::error::{ApiError, ApiResult, cause};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Which review a request creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Review {
    /// `selfsubjectaccessreviews`.
    SelfSubjectAccess,
    /// `subjectaccessreviews`.
    SubjectAccess,
    /// `localsubjectaccessreviews` (namespaced).
    LocalSubjectAccess,
    /// `selfsubjectrulesreviews`.
    SelfSubjectRules,
    /// `selfsubjectreviews`.
    SelfSubject,
    /// `tokenreviews`.
    Token,
}

impl Review {
    /// The review served at `plural`.
    pub fn of(plural: &str) -> Option<Review> {
        Some(match plural {
            "selfsubjectaccessreviews" => Review::SelfSubjectAccess,
            "subjectaccessreviews" => Review::SubjectAccess,
            "localsubjectaccessreviews" => Review::LocalSubjectAccess,
            "selfsubjectrulesreviews" => Review::SelfSubjectRules,
            "selfsubjectreviews" => Review::SelfSubject,
            "tokenreviews" => Review::Token,
            _ => return None,
        })
    }
}

/// `spec.resourceAttributes` of an access review.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ResourceSpec {
    namespace: String,
    verb: String,
    group: String,
    version: String,
    resource: String,
    subresource: String,
    name: String,
}

/// `spec.nonResourceAttributes` of an access review.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NonResourceSpec {
    path: String,
    verb: String,
}

/// The spec of the access reviews (the `user`, `groups` and `uid` only for the non-self ones).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct AccessSpec {
    resource_attributes: Option<ResourceSpec>,
    non_resource_attributes: Option<NonResourceSpec>,
    user: String,
    groups: Vec<String>,
    uid: String,
}

/// Where a review runs: the cluster, its authenticator, and who asks.
pub struct ReviewContext<'a> {
    /// The cluster whose RBAC objects decide.
    pub cluster: &'a Cluster,
    /// For token reviews.
    pub authenticator: &'a Authenticator,
    /// The (possibly impersonated) requester.
    pub requester: &'a Identity,
}

/// Answers a review: `request` (its JSON form) with `status` filled in. `namespace` is the
/// path's, for `localsubjectaccessreviews`.
pub fn answer(
    ctx: &ReviewContext<'_>,
    review: Review,
    namespace: Option<&str>,
    request: &Value,
) -> ApiResult<Value> {
    let status = match review {
        Review::SelfSubjectAccess => {
            let spec = access_spec(request)?;
            access_status(ctx.cluster, ctx.requester, &spec, None)?
        }
        Review::SubjectAccess | Review::LocalSubjectAccess => {
            let spec = access_spec(request)?;
            if spec.user.is_empty() && spec.groups.is_empty() {
                return Err(invalid(
                    request,
                    "spec.user",
                    "Invalid value: \"\": at least one of user or group must be specified",
                ));
            }
            let subject = Identity {
                user: spec.user.clone(),
                uid: (!spec.uid.is_empty()).then(|| spec.uid.clone()),
                groups: spec.groups.clone(),
            };
            access_status(ctx.cluster, &subject, &spec, namespace)?
        }
        Review::SelfSubjectRules => {
            let ns = request["spec"]["namespace"].as_str().unwrap_or_default();
            rules_status(ctx.cluster, ctx.requester, ns)
        }
        Review::SelfSubject => json!({"userInfo": user_info(ctx.requester)}),
        Review::Token => {
            let token = request["spec"]["token"].as_str().unwrap_or_default();
            let header = format!("Bearer {token}");
            match ctx.authenticator.authenticate(ctx.cluster, Some(&header)) {
                Ok(who) if !token.is_empty() => {
                    json!({"authenticated": true, "user": user_info(&who)})
                }
                _ => json!({"authenticated": false, "error": "invalid bearer token"}),
            }
        }
    };
    let mut out = request.clone();
    out["metadata"] = json!({"creationTimestamp": null});
    if out.get("spec").is_none_or(Value::is_null) {
        out["spec"] = json!({});
    }
    out["status"] = status;
    Ok(out)
}

fn user_info(who: &Identity) -> Value {
    let mut info = json!({"username": who.user, "groups": who.groups});
    if let Some(uid) = &who.uid {
        info["uid"] = json!(uid);
    }
    info
}

fn invalid(request: &Value, field: &str, message: &str) -> ApiError {
    let kind = request["kind"].as_str().unwrap_or("SubjectAccessReview");
    ApiError::invalid(
        "authorization.k8s.io",
        kind,
        "",
        vec![cause("FieldValueInvalid", field, message)],
    )
}

fn access_spec(request: &Value) -> ApiResult<AccessSpec> {
    serde_json::from_value(request["spec"].clone())
        .map_err(|e| ApiError::bad_request(format!("invalid access review spec: {e}")))
}

/// The status of an access review of `who` doing what `spec` says (in `namespace` when the
/// review is a local one).
fn access_status(
    cluster: &Cluster,
    who: &Identity,
    spec: &AccessSpec,
    namespace: Option<&str>,
) -> ApiResult<Value> {
    let info = match (&spec.resource_attributes, &spec.non_resource_attributes) {
        (Some(r), None) => RequestInfo {
            verb: r.verb.clone(),
            path: String::new(),
            resource: Some(ResourceAttributes {
                namespace: namespace.unwrap_or(&r.namespace).to_string(),
                group: r.group.clone(),
                version: r.version.clone(),
                resource: r.resource.clone(),
                subresource: r.subresource.clone(),
                name: r.name.clone(),
            }),
        },
        (None, Some(n)) => RequestInfo {
            verb: n.verb.clone(),
            path: n.path.clone(),
            resource: None,
        },
        _ => {
            return Err(ApiError::invalid(
                "authorization.k8s.io",
                "SelfSubjectAccessReview",
                "",
                vec![cause(
                    "FieldValueInvalid",
                    "spec.resourceAttributes",
                    "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
                )],
            ));
        }
    };
    let decision = Authorizer::new(cluster).authorize(who, &info);
    let mut status = json!({"allowed": decision.allowed});
    if !decision.reason.is_empty() {
        status["reason"] = json!(decision.reason);
    }
    Ok(status)
}

/// A rule as a `SelfSubjectRulesReview` lists it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceRule<'a> {
    verbs: &'a [String],
    api_groups: &'a [String],
    resources: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    resource_names: &'a [String],
}

/// A non-resource rule as a `SelfSubjectRulesReview` lists it.
#[derive(Debug, Serialize)]
struct NonResourceRule<'a> {
    verbs: &'a [String],
    #[serde(rename = "nonResourceURLs")]
    non_resource_urls: &'a [String],
}

/// The status of a rules review: every rule that applies to `who` in `namespace`.
fn rules_status(cluster: &Cluster, who: &Identity, namespace: &str) -> Value {
    let set = Authorizer::new(cluster).rules_for(who, namespace);
    let resource_rules: Vec<ResourceRule> = set
        .rules
        .iter()
        .filter(|r| !r.resources.is_empty())
        .map(|r: &PolicyRule| ResourceRule {
            verbs: &r.verbs,
            api_groups: &r.api_groups,
            resources: &r.resources,
            resource_names: &r.resource_names,
        })
        .collect();
    let non_resource_rules: Vec<NonResourceRule> = set
        .rules
        .iter()
        .filter(|r| !r.non_resource_urls.is_empty())
        .map(|r| NonResourceRule {
            verbs: &r.verbs,
            non_resource_urls: &r.non_resource_urls,
        })
        .collect();
    let mut status = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": !set.errors.is_empty(),
    });
    if !set.errors.is_empty() {
        status["evaluationError"] = json!(set.errors.join(", "));
    }
    status
}
