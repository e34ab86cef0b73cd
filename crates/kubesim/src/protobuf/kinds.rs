//! The built-in kinds whose protobuf bodies kubectl's imperative commands send (`kubectl create
//! deployment|service|job|role|clusterrole|rolebinding|clusterrolebinding|quota|pdb|ingress`), described as
//! tables of field numbers, names and types taken from k8s.io/api's `generated.proto`, and one
//! decoder that walks a body with such a table.
//!
//! Go's generated marshaller writes every field that is not a pointer, empty or zero, and a
//! pointer field only when it is set. So an empty string, a zero number or an empty message is
//! left out of the JSON (the server's defaults apply, as they would to the JSON the same command
//! would send), except for fields marked [`Presence::Pointer`], which keep their zero. A field
//! the table does not know is ignored when it carries nothing, and refused otherwise: a body is
//! never stored with part of it silently dropped.

use super::{ProtobufError, Wire, bytes_of, decode_object_meta, fields, string_of, varint_of};
use serde_json::{Map, Value};

/// How a field is typed on the wire and in JSON.
#[derive(Clone, Copy)]
enum Ty {
    Str,
    Int,
    Bool,
    Msg(&'static [Field]),
    /// `ObjectMeta`, decoded by the envelope's own decoder.
    Meta,
    /// `map<string, string>`: repeated {1 key, 2 value}.
    StrMap,
    /// `map<string, Quantity>`: repeated {1 key, 2 {1 string}}.
    QuantityMap,
    /// `IntOrString`: {1 type (0 int, 1 string), 2 intVal, 3 strVal}.
    IntOrString,
}

/// Whether a zero value on the wire means "set to zero" (a Go pointer) or "unset".
#[derive(Clone, Copy, PartialEq, Eq)]
enum Presence {
    Value,
    Pointer,
}

/// One field of a message.
#[derive(Clone, Copy)]
struct Field {
    num: u32,
    name: &'static str,
    ty: Ty,
    repeated: bool,
    presence: Presence,
}

const fn f(num: u32, name: &'static str, ty: Ty) -> Field {
    Field {
        num,
        name,
        ty,
        repeated: false,
        presence: Presence::Value,
    }
}

const fn list(num: u32, name: &'static str, ty: Ty) -> Field {
    Field {
        repeated: true,
        ..f(num, name, ty)
    }
}

const fn ptr(num: u32, name: &'static str, ty: Ty) -> Field {
    Field {
        presence: Presence::Pointer,
        ..f(num, name, ty)
    }
}

// --- meta/v1 -------------------------------------------------------------------------------

const LABEL_SELECTOR_REQUIREMENT: &[Field] = &[
    f(1, "key", Ty::Str),
    f(2, "operator", Ty::Str),
    list(3, "values", Ty::Str),
];
const LABEL_SELECTOR: &[Field] = &[
    f(1, "matchLabels", Ty::StrMap),
    list(2, "matchExpressions", Ty::Msg(LABEL_SELECTOR_REQUIREMENT)),
];

// --- core/v1: pods --------------------------------------------------------------------------

const CONTAINER_PORT: &[Field] = &[
    f(1, "name", Ty::Str),
    f(2, "hostPort", Ty::Int),
    f(3, "containerPort", Ty::Int),
    f(4, "protocol", Ty::Str),
    f(5, "hostIP", Ty::Str),
];
const ENV_VAR: &[Field] = &[f(1, "name", Ty::Str), f(2, "value", Ty::Str)];
const RESOURCES: &[Field] = &[
    f(1, "limits", Ty::QuantityMap),
    f(2, "requests", Ty::QuantityMap),
];
const CONTAINER: &[Field] = &[
    f(1, "name", Ty::Str),
    f(2, "image", Ty::Str),
    list(3, "command", Ty::Str),
    list(4, "args", Ty::Str),
    f(5, "workingDir", Ty::Str),
    list(6, "ports", Ty::Msg(CONTAINER_PORT)),
    list(7, "env", Ty::Msg(ENV_VAR)),
    f(8, "resources", Ty::Msg(RESOURCES)),
    f(13, "terminationMessagePath", Ty::Str),
    f(14, "imagePullPolicy", Ty::Str),
    f(16, "stdin", Ty::Bool),
    f(17, "stdinOnce", Ty::Bool),
    f(18, "tty", Ty::Bool),
    f(20, "terminationMessagePolicy", Ty::Str),
];
const POD_SPEC: &[Field] = &[
    list(2, "containers", Ty::Msg(CONTAINER)),
    f(3, "restartPolicy", Ty::Str),
    ptr(4, "terminationGracePeriodSeconds", Ty::Int),
    ptr(5, "activeDeadlineSeconds", Ty::Int),
    f(6, "dnsPolicy", Ty::Str),
    f(7, "nodeSelector", Ty::StrMap),
    f(8, "serviceAccountName", Ty::Str),
    f(9, "serviceAccount", Ty::Str),
    f(10, "nodeName", Ty::Str),
    f(11, "hostNetwork", Ty::Bool),
    f(12, "hostPID", Ty::Bool),
    f(13, "hostIPC", Ty::Bool),
    f(16, "hostname", Ty::Str),
    f(17, "subdomain", Ty::Str),
    f(19, "schedulerName", Ty::Str),
    list(20, "initContainers", Ty::Msg(CONTAINER)),
    ptr(21, "automountServiceAccountToken", Ty::Bool),
    f(24, "priorityClassName", Ty::Str),
];
const POD_TEMPLATE_SPEC: &[Field] = &[f(1, "metadata", Ty::Meta), f(2, "spec", Ty::Msg(POD_SPEC))];

// --- apps/v1 and batch/v1 -----------------------------------------------------------------

const ROLLING_UPDATE_DEPLOYMENT: &[Field] = &[
    ptr(1, "maxUnavailable", Ty::IntOrString),
    ptr(2, "maxSurge", Ty::IntOrString),
];
const DEPLOYMENT_STRATEGY: &[Field] = &[
    f(1, "type", Ty::Str),
    f(2, "rollingUpdate", Ty::Msg(ROLLING_UPDATE_DEPLOYMENT)),
];
const DEPLOYMENT_SPEC: &[Field] = &[
    ptr(1, "replicas", Ty::Int),
    f(2, "selector", Ty::Msg(LABEL_SELECTOR)),
    f(3, "template", Ty::Msg(POD_TEMPLATE_SPEC)),
    f(4, "strategy", Ty::Msg(DEPLOYMENT_STRATEGY)),
    f(5, "minReadySeconds", Ty::Int),
    ptr(6, "revisionHistoryLimit", Ty::Int),
    f(7, "paused", Ty::Bool),
    ptr(9, "progressDeadlineSeconds", Ty::Int),
];
const JOB_SPEC: &[Field] = &[
    ptr(1, "parallelism", Ty::Int),
    ptr(2, "completions", Ty::Int),
    ptr(3, "activeDeadlineSeconds", Ty::Int),
    f(4, "selector", Ty::Msg(LABEL_SELECTOR)),
    ptr(5, "manualSelector", Ty::Bool),
    f(6, "template", Ty::Msg(POD_TEMPLATE_SPEC)),
    ptr(7, "backoffLimit", Ty::Int),
    ptr(8, "ttlSecondsAfterFinished", Ty::Int),
    ptr(9, "completionMode", Ty::Str),
    ptr(10, "suspend", Ty::Bool),
];

// --- core/v1: services and quotas --------------------------------------------------------------

const SERVICE_PORT: &[Field] = &[
    f(1, "name", Ty::Str),
    f(2, "protocol", Ty::Str),
    f(3, "port", Ty::Int),
    f(4, "targetPort", Ty::IntOrString),
    f(5, "nodePort", Ty::Int),
    ptr(6, "appProtocol", Ty::Str),
];
const SERVICE_SPEC: &[Field] = &[
    list(1, "ports", Ty::Msg(SERVICE_PORT)),
    f(2, "selector", Ty::StrMap),
    f(3, "clusterIP", Ty::Str),
    f(4, "type", Ty::Str),
    list(5, "externalIPs", Ty::Str),
    f(7, "sessionAffinity", Ty::Str),
    f(8, "loadBalancerIP", Ty::Str),
    list(9, "loadBalancerSourceRanges", Ty::Str),
    f(10, "externalName", Ty::Str),
    f(11, "externalTrafficPolicy", Ty::Str),
    f(12, "healthCheckNodePort", Ty::Int),
    f(13, "publishNotReadyAddresses", Ty::Bool),
    ptr(17, "ipFamilyPolicy", Ty::Str),
    list(18, "clusterIPs", Ty::Str),
    list(19, "ipFamilies", Ty::Str),
];
const RESOURCE_QUOTA_SPEC: &[Field] = &[f(1, "hard", Ty::QuantityMap), list(2, "scopes", Ty::Str)];

// --- policy/v1, rbac/v1, networking/v1 ------------------------------------------------------

const PDB_SPEC: &[Field] = &[
    ptr(1, "minAvailable", Ty::IntOrString),
    f(2, "selector", Ty::Msg(LABEL_SELECTOR)),
    ptr(3, "maxUnavailable", Ty::IntOrString),
    ptr(4, "unhealthyPodEvictionPolicy", Ty::Str),
];
const SUBJECT: &[Field] = &[
    f(1, "kind", Ty::Str),
    f(2, "apiGroup", Ty::Str),
    f(3, "name", Ty::Str),
    f(4, "namespace", Ty::Str),
];
const ROLE_REF: &[Field] = &[
    f(1, "apiGroup", Ty::Str),
    f(2, "kind", Ty::Str),
    f(3, "name", Ty::Str),
];
const POLICY_RULE: &[Field] = &[
    list(1, "verbs", Ty::Str),
    list(2, "apiGroups", Ty::Str),
    list(3, "resources", Ty::Str),
    list(4, "resourceNames", Ty::Str),
    list(5, "nonResourceURLs", Ty::Str),
];
const AGGREGATION_RULE: &[Field] = &[list(1, "clusterRoleSelectors", Ty::Msg(LABEL_SELECTOR))];
const SERVICE_BACKEND_PORT: &[Field] = &[f(1, "name", Ty::Str), f(2, "number", Ty::Int)];
const SERVICE_BACKEND: &[Field] = &[
    f(1, "name", Ty::Str),
    f(2, "port", Ty::Msg(SERVICE_BACKEND_PORT)),
];
const INGRESS_BACKEND: &[Field] = &[f(4, "service", Ty::Msg(SERVICE_BACKEND))];
const HTTP_INGRESS_PATH: &[Field] = &[
    f(1, "path", Ty::Str),
    f(2, "backend", Ty::Msg(INGRESS_BACKEND)),
    ptr(3, "pathType", Ty::Str),
];
const HTTP_INGRESS_RULE: &[Field] = &[list(1, "paths", Ty::Msg(HTTP_INGRESS_PATH))];
const INGRESS_RULE: &[Field] = &[
    f(1, "host", Ty::Str),
    f(2, "http", Ty::Msg(HTTP_INGRESS_RULE)),
];
const INGRESS_TLS: &[Field] = &[list(1, "hosts", Ty::Str), f(2, "secretName", Ty::Str)];
const INGRESS_SPEC: &[Field] = &[
    f(1, "defaultBackend", Ty::Msg(INGRESS_BACKEND)),
    list(2, "tls", Ty::Msg(INGRESS_TLS)),
    list(3, "rules", Ty::Msg(INGRESS_RULE)),
    ptr(4, "ingressClassName", Ty::Str),
];

/// The fields after `metadata` (1) of each kind this module decodes; `status` is left out, as
/// a create ignores it.
fn top_level(api_version: &str, kind: &str) -> Option<&'static [Field]> {
    const DEPLOYMENT: &[Field] = &[f(2, "spec", Ty::Msg(DEPLOYMENT_SPEC))];
    const JOB: &[Field] = &[f(2, "spec", Ty::Msg(JOB_SPEC))];
    const SERVICE: &[Field] = &[f(2, "spec", Ty::Msg(SERVICE_SPEC))];
    const QUOTA: &[Field] = &[f(2, "spec", Ty::Msg(RESOURCE_QUOTA_SPEC))];
    const PDB: &[Field] = &[f(2, "spec", Ty::Msg(PDB_SPEC))];
    const INGRESS: &[Field] = &[f(2, "spec", Ty::Msg(INGRESS_SPEC))];
    const BINDING: &[Field] = &[
        list(2, "subjects", Ty::Msg(SUBJECT)),
        f(3, "roleRef", Ty::Msg(ROLE_REF)),
    ];
    const ROLE: &[Field] = &[
        list(2, "rules", Ty::Msg(POLICY_RULE)),
        f(3, "aggregationRule", Ty::Msg(AGGREGATION_RULE)),
    ];
    Some(match (api_version, kind) {
        ("rbac.authorization.k8s.io/v1", "Role" | "ClusterRole") => ROLE,
        ("apps/v1", "Deployment") => DEPLOYMENT,
        ("batch/v1", "Job") => JOB,
        ("v1", "Service") => SERVICE,
        ("v1", "ResourceQuota") => QUOTA,
        ("policy/v1", "PodDisruptionBudget") => PDB,
        ("networking.k8s.io/v1", "Ingress") => INGRESS,
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => BINDING,
        _ => return None,
    })
}

/// Decodes the object bytes `raw` of a kind listed in [`top_level`] into `obj` (which holds
/// `apiVersion` and `kind` already). `None` when the kind is not one of them.
pub(super) fn decode(
    api_version: &str,
    kind: &str,
    raw: &[u8],
    obj: &mut Map<String, Value>,
) -> Option<Result<(), ProtobufError>> {
    let table = top_level(api_version, kind)?;
    Some((|| {
        let mut meta = Map::new();
        let mut rest = Vec::new();
        for (num, v) in fields(raw)? {
            match num {
                1 => decode_object_meta(bytes_of(num, v)?, &mut meta)?,
                3 if !table.iter().any(|f| f.num == 3) => {} // status
                _ => rest.push((num, v)),
            }
        }
        obj.insert("metadata".into(), Value::Object(meta));
        message_fields(kind, table, &rest, obj)
    })())
}

/// Decodes one message with its table.
fn message(path: &str, table: &[Field], buf: &[u8]) -> Result<Map<String, Value>, ProtobufError> {
    let mut out = Map::new();
    message_fields(path, table, &fields(buf)?, &mut out)?;
    Ok(out)
}

fn message_fields(
    path: &str,
    table: &[Field],
    wire: &[(u32, Wire<'_>)],
    out: &mut Map<String, Value>,
) -> Result<(), ProtobufError> {
    for &(num, v) in wire {
        let Some(field) = table.iter().find(|f| f.num == num) else {
            if !carries_nothing(v) {
                return Err(ProtobufError::UnsupportedField {
                    message: path.to_string(),
                    field: num,
                });
            }
            continue;
        };
        let at = format!("{path}.{}", field.name);
        let Some(value) = value_of(&at, field, num, v)? else {
            continue;
        };
        if field.repeated {
            out.entry(field.name)
                .or_insert_with(|| Value::Array(vec![]))
                .as_array_mut()
                .expect("a repeated field is an array")
                .push(value);
        } else if let (Value::Object(more), Some(Value::Object(have))) =
            (&value, out.get_mut(field.name))
        {
            // Map entries arrive one at a time.
            have.extend(more.clone());
        } else {
            out.insert(field.name.into(), value);
        }
    }
    Ok(())
}

/// A field's JSON value, or `None` when it is unset (see the module doc).
fn value_of(
    at: &str,
    field: &Field,
    num: u32,
    v: Wire<'_>,
) -> Result<Option<Value>, ProtobufError> {
    let keep_zero = field.presence == Presence::Pointer || field.repeated;
    let value = match field.ty {
        Ty::Str => Value::String(string_of(num, v)?),
        Ty::Int => Value::from(varint_of(num, v)? as i64),
        Ty::Bool => Value::Bool(varint_of(num, v)? != 0),
        Ty::Msg(table) => Value::Object(message(at, table, bytes_of(num, v)?)?),
        Ty::Meta => {
            let mut meta = Map::new();
            decode_object_meta(bytes_of(num, v)?, &mut meta)?;
            Value::Object(meta)
        }
        Ty::StrMap | Ty::QuantityMap => {
            let (mut key, mut value) = (String::new(), String::new());
            for (n, ev) in fields(bytes_of(num, v)?)? {
                match (n, field.ty) {
                    (1, _) => key = string_of(n, ev)?,
                    (2, Ty::StrMap) => value = string_of(n, ev)?,
                    (2, _) => value = quantity(bytes_of(n, ev)?)?,
                    _ => {}
                }
            }
            let mut entry = Map::new();
            entry.insert(key, Value::String(value));
            return Ok(Some(Value::Object(entry)));
        }
        Ty::IntOrString => int_or_string(bytes_of(num, v)?)?,
    };
    let is_zero = match &value {
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_i64() == Some(0),
        Value::Bool(b) => !b,
        Value::Object(m) => m.is_empty(),
        _ => false,
    };
    Ok((keep_zero || !is_zero).then_some(value))
}

fn quantity(buf: &[u8]) -> Result<String, ProtobufError> {
    let mut s = String::new();
    for (n, v) in fields(buf)? {
        if n == 1 {
            s = string_of(n, v)?;
        }
    }
    Ok(s)
}

fn int_or_string(buf: &[u8]) -> Result<Value, ProtobufError> {
    let (mut is_string, mut int, mut string) = (false, 0i64, String::new());
    for (n, v) in fields(buf)? {
        match n {
            1 => is_string = varint_of(n, v)? == 1,
            2 => int = i64::from(varint_of(n, v)? as i32),
            3 => string = string_of(n, v)?,
            _ => {}
        }
    }
    Ok(if is_string {
        Value::String(string)
    } else {
        Value::from(int)
    })
}

/// Whether a field the table does not know is empty or zero, recursively.
fn carries_nothing(v: Wire<'_>) -> bool {
    match v {
        Wire::Bytes(b) => b.is_empty() || super::is_semantically_empty(b),
        other => other.is_zero(),
    }
}

#[cfg(test)]
mod tests {
    use crate::protobuf::decode;
    use serde_json::json;

    /// What kubectl 1.32 sends for `create deployment web --image=nginx:1 --replicas=2 --port=80`.
    const DEPLOYMENT: &str = "\
        6b3873000a150a07617070732f7631120a4465706c6f796d656e7412ba010a1f0a0377656212001a0022002a00320038\
        0042005a0a0a0361707012037765621288010802120c0a0a0a0361707012037765621a6e0a1c0a0012001a0022002a00\
        3200380042005a0a0a036170701203776562124e12300a056e67696e7812076e67696e783a312a00320a0a0010001850\
        22002a0042006a007200800100880100900100a201001a00320042004a0052005800600068008201008a01009a0100c2\
        010022020a00280038001a0c0800100018002000280038001a002200";

    /// What kubectl 1.32 sends for `create service clusterip web --tcp=80:8080`.
    const SERVICE: &str = "\
        6b3873000a0d0a02763112075365727669636512690a1f0a0377656212001a0022002a003200380042005a0a0a036170\
        70120377656212420a1b0a0738302d38303830120354435018502207080010903f1a002800120a0a0361707012037765\
        621a002209436c757374657249503a00420052005a00600068001a020a001a002200";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn a_deployment_from_kubectl_decodes_to_the_json_it_would_send() {
        let obj = decode(&unhex(DEPLOYMENT)).expect("decodes");
        assert_eq!(
            obj,
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{
                            "name": "nginx", "image": "nginx:1",
                            "ports": [{"containerPort": 80}]
                        }]}
                    }
                }
            })
        );
    }

    #[test]
    fn a_service_from_kubectl_keeps_its_int_target_port() {
        let obj = decode(&unhex(SERVICE)).expect("decodes");
        assert_eq!(
            obj["spec"],
            json!({
                "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                "selector": {"app": "web"},
                "type": "ClusterIP"
            })
        );
    }

    #[test]
    fn a_field_the_tables_do_not_know_is_refused_rather_than_dropped() {
        // A Service whose spec sets type (4) = "x" and field 30, unknown here, = 1.
        let spec = [0x22, 0x01, b'x', 0xf0, 0x01, 0x01];
        let mut raw = vec![0x12, spec.len() as u8];
        raw.extend(spec);
        let mut body = crate::protobuf::MAGIC.to_vec();
        body.extend([0x0a, 0x0d, 0x0a, 0x02, b'v', b'1', 0x12, 0x07]);
        body.extend(b"Service");
        body.extend([0x12, raw.len() as u8]);
        body.extend(raw);
        let err = decode(&body).expect_err("field 30 is not known");
        assert_eq!(
            err.to_string(),
            "decoding field 30 of Service.spec from protobuf is not supported; send JSON"
        );
    }
}
