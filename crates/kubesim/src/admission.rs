//! ValidatingAdmissionPolicy (`admissionregistration.k8s.io/v1`): CEL checks of writes, run
//! as the real server's admission plugin runs them, after the request was authorized and the
//! object it would store is known, before it is stored.
//!
//! A write is checked against every `ValidatingAdmissionPolicyBinding` whose policy matches
//! it:
//!
//! - the policy's `matchConstraints` (`resourceRules` and `excludeResourceRules`: API groups,
//!   versions, operations, resources with `*`, `*/*` and `resource/subresource`, scope,
//!   resource names; `namespaceSelector` and `objectSelector`), then the binding's
//!   `matchResources`, both must match;
//! - every `matchConditions` expression must be true;
//! - `variables` are evaluated in order, as `variables.<name>`;
//! - each `validations` expression that is false is a violation, with its `message`,
//!   `messageExpression` or `failed expression: <expression>`, and its `reason` (`Invalid`,
//!   422, by default).
//!
//! The expressions see `object` (`null` on DELETE), `oldObject` (`null` on CREATE), `request`
//! (`operation`, `userInfo`, `namespace`, `name`, `resource`, `subResource`, `kind`, `dryRun`)
//! and `namespaceObject` (`null` for cluster-scoped objects). The binding's
//! `validationActions` decide what a violation does: `Deny` answers with an error worded as
//! the real server's, `Warn` adds a `Warning` header, `Audit` is ignored (kubesim keeps no
//! audit log). An expression that fails to compile or evaluate obeys the policy's
//! `failurePolicy` (`Fail`, the default, denies).
//!
//! Not implemented: `paramKind` and `paramRef` (a policy with them is refused when created),
//! and the `authorizer` variable. Writes of the admission policy types themselves are never
//! checked, as the real server never checks them.

use crate::auth::Identity;
use crate::cluster::{Cluster, ListOptions};
use crate::error::{ApiError, ApiResult, cause};
use crate::resources::ResourceType;
use crate::selector::LabelSelector;
use crate::validation::celrules;
use cel::objects::{Key, Map as CelMap};
use cel::{Context, Value as Cel};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// The API group of the admission policy types.
pub const GROUP: &str = "admissionregistration.k8s.io";
/// The plural of `ValidatingAdmissionPolicy`.
pub const POLICIES: &str = "validatingadmissionpolicies";
/// The plural of `ValidatingAdmissionPolicyBinding`.
pub const BINDINGS: &str = "validatingadmissionpolicybindings";

/// The operation of a write, as admission names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `CREATE`.
    Create,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

/// What admission decides on: one write.
pub struct Attributes<'a> {
    /// The operation.
    pub operation: Operation,
    /// The type written.
    pub rt: &'a ResourceType,
    /// The namespace (empty for cluster-scoped types).
    pub namespace: &'a str,
    /// The object's name.
    pub name: &'a str,
    /// The subresource written, if any (`status`, `scale`).
    pub subresource: Option<&'a str>,
    /// The object as it would be stored; `None` on DELETE.
    pub object: Option<&'a Value>,
    /// The object as it is stored now; `None` on CREATE.
    pub old_object: Option<&'a Value>,
    /// Who writes.
    pub identity: &'a Identity,
    /// Whether the write is a dry run.
    pub dry_run: bool,
}

/// Whether any binding exists, so that callers can skip preparing a check nothing would make.
pub fn any_binding(cluster: &Cluster) -> bool {
    bindings(cluster).is_some_and(|b| !b.is_empty())
}

fn bindings(cluster: &Cluster) -> Option<Vec<Value>> {
    let rt = cluster.resource_type(GROUP, "v1", BINDINGS)?;
    cluster
        .list(&rt, None, &ListOptions::default())
        .ok()
        .map(|p| p.items)
}

/// Checks a write against every binding: the warnings to send, or the denial.
pub fn admit(cluster: &Cluster, attrs: &Attributes) -> ApiResult<Vec<String>> {
    if attrs.rt.group == GROUP && (attrs.rt.plural == POLICIES || attrs.rt.plural == BINDINGS) {
        return Ok(vec![]);
    }
    let Some(policies_rt) = cluster.resource_type(GROUP, "v1", POLICIES) else {
        return Ok(vec![]);
    };
    let mut warnings = vec![];
    let mut namespace_object: Option<Option<Value>> = None;
    for binding in bindings(cluster).unwrap_or_default() {
        let policy_name = binding["spec"]["policyName"].as_str().unwrap_or("");
        // A binding to a policy that does not exist (yet) does nothing.
        let Ok(policy) = cluster.get(&policies_rt, "", policy_name) else {
            continue;
        };
        let ns_obj = namespace_object
            .get_or_insert_with(|| namespace_of(cluster, attrs))
            .as_ref();
        if !matches(&policy["spec"]["matchConstraints"], attrs, ns_obj, true)
            || !matches(&binding["spec"]["matchResources"], attrs, ns_obj, false)
        {
            continue;
        }
        let binding_name = binding["metadata"]["name"].as_str().unwrap_or("");
        let Some(violation) = evaluate(&policy["spec"], attrs, ns_obj) else {
            continue;
        };
        let message = format!(
            "ValidatingAdmissionPolicy '{policy_name}' with binding '{binding_name}' denied request: {}",
            violation.message
        );
        let actions: Vec<&str> = binding["spec"]["validationActions"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if actions.contains(&"Deny") {
            return Err(denial(violation.reason, message));
        }
        if actions.contains(&"Warn") {
            warnings.push(format!(
                "Validation failed for ValidatingAdmissionPolicy '{policy_name}' with binding '{binding_name}': {}",
                violation.message
            ));
        }
    }
    Ok(warnings)
}

/// Refuses a policy kubesim cannot run, when it is written.
pub fn check_policy(policy: &Value) -> ApiResult<()> {
    let name = policy["metadata"]["name"].as_str().unwrap_or("");
    for field in ["paramKind"] {
        if !policy["spec"][field].is_null() {
            return Err(ApiError::invalid(
                GROUP,
                "ValidatingAdmissionPolicy",
                name,
                vec![cause(
                    "FieldValueNotSupported",
                    &format!("spec.{field}"),
                    "kubesim does not implement policy parameters",
                )],
            ));
        }
    }
    let env = celrules::env();
    for (list, key) in [
        ("validations", "expression"),
        ("matchConditions", "expression"),
        ("variables", "expression"),
    ] {
        for (i, item) in policy["spec"][list]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let src = item[key].as_str().unwrap_or("");
            if let Err(e) = celrules::compile(&env, src) {
                return Err(ApiError::invalid(
                    GROUP,
                    "ValidatingAdmissionPolicy",
                    name,
                    vec![cause(
                        "FieldValueInvalid",
                        &format!("spec.{list}[{i}].{key}"),
                        format!("compilation failed: {e}"),
                    )],
                ));
            }
        }
    }
    Ok(())
}

fn denial(reason: Reason, message: String) -> ApiError {
    let (code, reason) = match reason {
        Reason::Forbidden => (403, "Forbidden"),
        Reason::Unauthorized => (401, "Unauthorized"),
        Reason::TooLarge => (413, "RequestEntityTooLarge"),
        Reason::Invalid => (422, "Invalid"),
    };
    ApiError {
        code,
        reason,
        ..ApiError::bad_request(message)
    }
}

/// The reason a validation gives its denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Invalid,
    Forbidden,
    Unauthorized,
    TooLarge,
}

impl Reason {
    fn parse(v: &Value) -> Reason {
        match v.as_str() {
            Some("Forbidden") => Reason::Forbidden,
            Some("Unauthorized") => Reason::Unauthorized,
            Some("RequestEntityTooLarge") => Reason::TooLarge,
            _ => Reason::Invalid,
        }
    }
}

struct Violation {
    message: String,
    reason: Reason,
}

/// The Namespace object a write's expressions see as `namespaceObject`.
fn namespace_of(cluster: &Cluster, attrs: &Attributes) -> Option<Value> {
    if !attrs.rt.namespaced {
        return None;
    }
    let ns_rt = cluster.resource_type("", "v1", "namespaces")?;
    cluster.get(&ns_rt, "", attrs.namespace).ok()
}

/// Whether `constraints` (a policy's `matchConstraints` or a binding's `matchResources`)
/// select the write. An absent block selects every write, except that a policy without
/// `resourceRules` selects none (the real server requires them).
fn matches(
    constraints: &Value,
    attrs: &Attributes,
    namespace: Option<&Value>,
    rules_required: bool,
) -> bool {
    if constraints.is_null() {
        return !rules_required;
    }
    let rules = constraints["resourceRules"].as_array();
    if rules.is_none() && rules_required {
        return false;
    }
    if let Some(rules) = rules
        && !rules.iter().any(|r| rule_matches(r, attrs))
    {
        return false;
    }
    if constraints["excludeResourceRules"]
        .as_array()
        .is_some_and(|rules| rules.iter().any(|r| rule_matches(r, attrs)))
    {
        return false;
    }
    let object = attrs.object.or(attrs.old_object);
    if let Some(selector) = LabelSelector::from_object(&constraints["objectSelector"])
        && !object.is_some_and(|o| selector.matches_object(o))
    {
        return false;
    }
    if let Some(selector) = LabelSelector::from_object(&constraints["namespaceSelector"]) {
        // A namespace's own writes are selected by its labels; other cluster-scoped objects
        // are not subject to the namespace selector.
        let subject = if attrs.rt.group.is_empty() && attrs.rt.plural == "namespaces" {
            object
        } else if attrs.rt.namespaced {
            namespace
        } else {
            return true;
        };
        if !subject.is_some_and(|o| selector.matches_object(o)) {
            return false;
        }
    }
    true
}

fn listed(list: &Value, want: &str) -> bool {
    list.as_array()
        .is_some_and(|l| l.iter().any(|v| v == "*" || v == want))
}

fn rule_matches(rule: &Value, attrs: &Attributes) -> bool {
    let rt = attrs.rt;
    if !listed(&rule["apiGroups"], &rt.group)
        || !listed(&rule["apiVersions"], &rt.version)
        || !listed(&rule["operations"], attrs.operation.name())
    {
        return false;
    }
    let scope_ok = match rule["scope"].as_str() {
        Some("Namespaced") => rt.namespaced,
        Some("Cluster") => !rt.namespaced,
        _ => true,
    };
    let resource_ok = rule["resources"].as_array().is_some_and(|l| {
        l.iter().filter_map(Value::as_str).any(|r| {
            let (res, sub) = r.split_once('/').unwrap_or((r, ""));
            let res_ok = res == "*" || res == rt.plural;
            let sub_ok = match attrs.subresource {
                None => sub.is_empty(),
                Some(s) => sub == "*" || sub == s,
            };
            res_ok && sub_ok
        })
    });
    let name_ok = rule["resourceNames"]
        .as_array()
        .is_none_or(|names| names.is_empty() || names.iter().any(|n| n == attrs.name));
    scope_ok && resource_ok && name_ok
}

/// Runs a policy's conditions, variables and validations: its first violation, if any.
fn evaluate(spec: &Value, attrs: &Attributes, namespace: Option<&Value>) -> Option<Violation> {
    let fail_closed = spec["failurePolicy"].as_str() != Some("Ignore");
    let env = celrules::env();
    let root = celrules::root_context(env.clone());
    let mut scope = root.new_inner_scope();
    scope.add_variable_from_value("object", attrs.object.map(json_to_cel).unwrap_or(Cel::Null));
    scope.add_variable_from_value(
        "oldObject",
        attrs.old_object.map(json_to_cel).unwrap_or(Cel::Null),
    );
    scope.add_variable_from_value(
        "namespaceObject",
        namespace.map(json_to_cel).unwrap_or(Cel::Null),
    );
    scope.add_variable_from_value("request", json_to_cel(&request(attrs)));
    // An expression that cannot be run: denied when the policy fails closed.
    let broken = |what: &str, src: &str, e: String| {
        fail_closed.then(|| Violation {
            message: format!("{what} {src:?} could not be evaluated: {e}"),
            reason: Reason::Invalid,
        })
    };
    let run = |scope: &Context, src: &str| -> Result<Cel, String> {
        let program = celrules::compile(&env, src)?;
        program.execute(scope).map_err(|e| e.to_string())
    };
    for condition in spec["matchConditions"].as_array().into_iter().flatten() {
        let src = condition["expression"].as_str().unwrap_or("");
        match run(&scope, src) {
            Ok(Cel::Bool(true)) => {}
            Ok(Cel::Bool(false)) => return None,
            Ok(other) => return broken("match condition", src, not_bool(&other)),
            Err(e) => return broken("match condition", src, e),
        }
    }
    let mut variables: HashMap<Key, Cel> = HashMap::new();
    for variable in spec["variables"].as_array().into_iter().flatten() {
        let name = variable["name"].as_str().unwrap_or("");
        let src = variable["expression"].as_str().unwrap_or("");
        let value = {
            let mut inner = scope.new_inner_scope();
            inner.add_variable_from_value("variables", cel_map(variables.clone()));
            run(&inner, src)
        };
        match value {
            Ok(v) => {
                variables.insert(Key::from(name), v);
            }
            Err(e) => return broken("variable", name, e),
        }
    }
    scope.add_variable_from_value("variables", cel_map(variables));
    for validation in spec["validations"].as_array().into_iter().flatten() {
        let src = validation["expression"].as_str().unwrap_or("");
        let passed = match run(&scope, src) {
            Ok(Cel::Bool(b)) => b,
            Ok(other) => return broken("validation", src, not_bool(&other)),
            Err(e) => return broken("validation", src, e),
        };
        if passed {
            continue;
        }
        let from_expression =
            validation["messageExpression"]
                .as_str()
                .and_then(|me| match run(&scope, me) {
                    Ok(Cel::String(s)) if !s.trim().is_empty() => Some(s.to_string()),
                    _ => None,
                });
        let message = from_expression
            .or_else(|| validation["message"].as_str().map(String::from))
            .unwrap_or_else(|| format!("failed expression: {src}"));
        return Some(Violation {
            message,
            reason: Reason::parse(&validation["reason"]),
        });
    }
    None
}

fn not_bool(v: &Cel) -> String {
    format!("expected a boolean, got {}", v.type_of())
}

fn cel_map(m: HashMap<Key, Cel>) -> Cel {
    Cel::Map(CelMap { map: Arc::new(m) })
}

/// The `request` variable.
fn request(attrs: &Attributes) -> Value {
    let rt = attrs.rt;
    let mut user = Map::new();
    user.insert("username".into(), Value::from(attrs.identity.user.clone()));
    if let Some(uid) = &attrs.identity.uid {
        user.insert("uid".into(), Value::from(uid.clone()));
    }
    user.insert("groups".into(), Value::from(attrs.identity.groups.clone()));
    serde_json::json!({
        "operation": attrs.operation.name(),
        "userInfo": user,
        "namespace": attrs.namespace,
        "name": attrs.name,
        "resource": {"group": rt.group, "version": rt.version, "resource": rt.plural},
        "subResource": attrs.subresource.unwrap_or(""),
        "kind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "dryRun": attrs.dry_run,
    })
}

/// JSON as CEL, every field visible (unlike a custom resource's rules, admission expressions
/// see all of `metadata`).
fn json_to_cel(v: &Value) -> Cel {
    celrules::to_cel(v, None, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;
    use serde_json::json;

    fn deployments() -> ResourceType {
        Registry::builtin()
            .find("apps", "v1", "deployments")
            .expect("deployments")
            .clone()
    }

    fn attrs<'a>(
        rt: &'a ResourceType,
        op: Operation,
        object: Option<&'a Value>,
        identity: &'a Identity,
    ) -> Attributes<'a> {
        Attributes {
            operation: op,
            rt,
            namespace: "team",
            name: "d",
            subresource: None,
            object,
            old_object: None,
            identity,
            dry_run: false,
        }
    }

    #[test]
    fn resource_rules_match_groups_operations_and_subresources() {
        let rt = deployments();
        let id = Identity::admin();
        let obj = json!({});
        let a = attrs(&rt, Operation::Create, Some(&obj), &id);
        let rule = |resources: Value, ops: Value| json!({"apiGroups": ["apps"], "apiVersions": ["*"], "operations": ops, "resources": resources});
        assert!(rule_matches(
            &rule(json!(["deployments"]), json!(["CREATE"])),
            &a
        ));
        assert!(rule_matches(&rule(json!(["*"]), json!(["*"])), &a));
        assert!(!rule_matches(
            &rule(json!(["deployments"]), json!(["DELETE"])),
            &a
        ));
        assert!(!rule_matches(
            &rule(json!(["configmaps"]), json!(["*"])),
            &a
        ));
        let status = Attributes {
            subresource: Some("status"),
            ..attrs(&rt, Operation::Update, Some(&obj), &id)
        };
        assert!(!rule_matches(
            &rule(json!(["deployments"]), json!(["*"])),
            &status
        ));
        assert!(rule_matches(
            &rule(json!(["deployments/status"]), json!(["*"])),
            &status
        ));
        assert!(rule_matches(&rule(json!(["*/*"]), json!(["*"])), &status));
    }

    #[test]
    fn validations_see_the_object_the_request_and_the_namespace() {
        let rt = deployments();
        let id = Identity::service_account("sys", "op");
        let obj = json!({"metadata": {"name": "d", "labels": {"a": "b"}}, "spec": {"replicas": 3}});
        let ns = json!({"metadata": {"name": "team", "labels": {"tenant": "yes"}}});
        let a = attrs(&rt, Operation::Create, Some(&obj), &id);
        let spec = |expr: &str| {
            json!({"validations": [{"expression": expr, "message": "no"}],
                   "matchConditions": [{"name": "sa", "expression": "request.userInfo.username == 'system:serviceaccount:sys:op'"}]})
        };
        for ok in [
            "object.spec.replicas <= 3 && object.metadata.labels['a'] == 'b'",
            "namespaceObject.metadata.labels['tenant'] == 'yes'",
            "request.operation == 'CREATE' && oldObject == null",
            "'system:authenticated' in request.userInfo.groups",
        ] {
            assert!(evaluate(&spec(ok), &a, Some(&ns)).is_none(), "{ok}");
        }
        let v = evaluate(&spec("object.spec.replicas < 3"), &a, Some(&ns)).expect("denied");
        assert_eq!(v.message, "no");
        assert_eq!(v.reason, Reason::Invalid);
        // Another user: the match condition is false, nothing is checked.
        let other = Identity::admin();
        let b = attrs(&rt, Operation::Create, Some(&obj), &other);
        assert!(evaluate(&spec("false"), &b, Some(&ns)).is_none());
    }

    #[test]
    fn broken_expressions_fail_closed_unless_the_policy_ignores_them() {
        let rt = deployments();
        let id = Identity::admin();
        let obj = json!({"metadata": {}});
        let a = attrs(&rt, Operation::Create, Some(&obj), &id);
        let broken = json!({"validations": [{"expression": "object.metadata.labels['x'] == 'y'"}]});
        assert!(
            evaluate(&broken, &a, None).is_some(),
            "no labels: an error, denied"
        );
        let mut ignored = broken.clone();
        ignored["failurePolicy"] = json!("Ignore");
        assert!(evaluate(&ignored, &a, None).is_none());
        let plain = json!({"validations": [{"expression": "1 == 2"}]});
        assert_eq!(
            evaluate(&plain, &a, None).expect("denied").message,
            "failed expression: 1 == 2"
        );
    }

    #[test]
    fn variables_are_evaluated_in_order_and_messages_may_be_expressions() {
        let rt = deployments();
        let id = Identity::admin();
        let obj = json!({"metadata": {"name": "d"}, "spec": {"replicas": 7}});
        let a = attrs(&rt, Operation::Create, Some(&obj), &id);
        let spec = json!({
            "variables": [
                {"name": "replicas", "expression": "object.spec.replicas"},
                {"name": "twice", "expression": "variables.replicas * 2"}
            ],
            "validations": [{
                "expression": "variables.twice <= 10",
                "messageExpression": "'too many: ' + string(variables.twice)",
                "reason": "Forbidden"
            }]
        });
        let v = evaluate(&spec, &a, None).expect("denied");
        assert_eq!(v.message, "too many: 14");
        assert_eq!(v.reason, Reason::Forbidden);
        assert_eq!(denial(v.reason, v.message).code, 403);
    }

    #[test]
    fn selectors_narrow_what_a_policy_matches() {
        let rt = deployments();
        let id = Identity::admin();
        let obj = json!({"metadata": {"labels": {"app": "x"}}});
        let a = attrs(&rt, Operation::Create, Some(&obj), &id);
        let tenant = json!({"metadata": {"labels": {"tenant": "yes"}}});
        let plain = json!({"metadata": {"labels": {}}});
        let c = json!({
            "resourceRules": [{"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["*"], "resources": ["*"]}],
            "namespaceSelector": {"matchExpressions": [{"key": "tenant", "operator": "DoesNotExist"}]}
        });
        assert!(matches(&c, &a, Some(&plain), true));
        assert!(!matches(&c, &a, Some(&tenant), true));
        assert!(
            !matches(&Value::Null, &a, None, true),
            "a policy needs rules"
        );
        assert!(matches(&Value::Null, &a, None, false), "a binding need not");
    }

    #[test]
    fn parameters_and_broken_expressions_are_refused_when_written() {
        let with_params =
            json!({"metadata": {"name": "p"}, "spec": {"paramKind": {"kind": "ConfigMap"}}});
        assert_eq!(check_policy(&with_params).unwrap_err().code, 422);
        let broken =
            json!({"metadata": {"name": "p"}, "spec": {"validations": [{"expression": "1 +"}]}});
        let e = check_policy(&broken).unwrap_err();
        assert_eq!(e.details.causes[0].field, "spec.validations[0].expression");
        let fine =
            json!({"metadata": {"name": "p"}, "spec": {"validations": [{"expression": "true"}]}});
        assert!(check_policy(&fine).is_ok());
    }
}
