//! Decoding the Kubernetes protobuf envelope that kubectl 1.32+ sends for
//! typed creates (`Content-Type: application/vnd.kubernetes.protobuf`), e.g.
//! `kubectl create ns foo`.
//!
//! Layout: the magic `6b 38 73 00` ("k8s\0"), then a `runtime.Unknown`
//! message: 1 TypeMeta{1 apiVersion, 2 kind}, 2 raw object bytes,
//! 3 contentEncoding, 4 contentType. The object is 1 ObjectMeta, 2 spec,
//! 3 status. ObjectMeta field numbers follow apimachinery's
//! `meta/v1/generated.proto`: 1 name, 2 generateName, 3 namespace,
//! 4 selfLink, 5 uid, 6 resourceVersion, 7 generation, 8 creationTimestamp,
//! 9 deletionTimestamp, 10 deletionGracePeriodSeconds, 11 labels,
//! 12 annotations, 13 ownerReferences, 14 finalizers, 17 managedFields
//! (ignored).
//!
//! `Namespace` (`spec.finalizers`, `status.phase`), `ConfigMap` and `Secret`
//! bodies are decoded fully; the kinds of kubectl's other imperative creates
//! (Deployment, Service, Job, ResourceQuota, PodDisruptionBudget, Ingress,
//! Role, ClusterRole, RoleBinding, ClusterRoleBinding) are decoded with the field tables of
//! [`kinds`]; any other kind decodes to its metadata when its other fields are
//! all empty, and is otherwise [`ProtobufError::UnsupportedKind`].

mod kinds;

use chrono::{DateTime, SecondsFormat};
use serde_json::{Map, Value};

/// The 4-byte prefix of every Kubernetes protobuf body.
pub const MAGIC: [u8; 4] = [0x6b, 0x38, 0x73, 0x00];

/// The media type kubectl uses for protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Whether a `Content-Type` header value denotes a Kubernetes protobuf body.
pub fn is_protobuf_content_type(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(CONTENT_TYPE))
}

/// Why a protobuf body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with `k8s\0`.
    #[error("protobuf body does not start with the k8s\\0 magic prefix")]
    BadMagic,
    /// A varint or length-delimited field runs past the end of its message.
    #[error("truncated protobuf message")]
    Truncated,
    /// A varint longer than 10 bytes.
    #[error("malformed protobuf varint")]
    BadVarint,
    /// Field number 0 or a wire type this walker does not handle (groups).
    #[error("unsupported protobuf wire type {0}")]
    BadWireType(u8),
    /// A known field arrived with a different wire type than its schema's.
    #[error("protobuf field {field} has wire type {got}, expected {expected}")]
    UnexpectedWireType {
        /// Field number.
        field: u32,
        /// Wire type seen.
        got: u8,
        /// Wire type the schema has.
        expected: u8,
    },
    /// A string field is not UTF-8.
    #[error("protobuf string field {0} is not valid UTF-8")]
    InvalidUtf8(u32),
    /// The envelope has no kind (or no apiVersion).
    #[error("protobuf envelope has no apiVersion/kind")]
    MissingTypeMeta,
    /// The envelope says the raw bytes are compressed or otherwise encoded.
    #[error("unsupported protobuf contentEncoding {0:?}")]
    UnsupportedEncoding(String),
    /// The object has spec/status content for a kind this decoder does not know.
    #[error("decoding protobuf bodies of kind {0:?} is not supported; send JSON")]
    UnsupportedKind(String),
    /// A field this decoder does not know carries a value.
    #[error("decoding field {field} of {message} from protobuf is not supported; send JSON")]
    UnsupportedField {
        /// Where the message sits in the object, e.g. `Deployment.spec.template`.
        message: String,
        /// Field number.
        field: u32,
    },
}

/// One decoded field value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl Wire<'_> {
    fn wire_type(&self) -> u8 {
        match self {
            Wire::Varint(_) => 0,
            Wire::Fixed64(_) => 1,
            Wire::Bytes(_) => 2,
            Wire::Fixed32(_) => 5,
        }
    }

    /// True for a zero varint/fixed value or an empty byte string.
    fn is_zero(&self) -> bool {
        match self {
            Wire::Varint(v) | Wire::Fixed64(v) => *v == 0,
            Wire::Fixed32(v) => *v == 0,
            Wire::Bytes(b) => b.is_empty(),
        }
    }
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, ProtobufError> {
    let mut out: u64 = 0;
    for i in 0..10 {
        let b = *buf.get(*pos).ok_or(ProtobufError::Truncated)?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err(ProtobufError::BadVarint)
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], ProtobufError> {
    let end = pos.checked_add(n).ok_or(ProtobufError::Truncated)?;
    let s = buf.get(*pos..end).ok_or(ProtobufError::Truncated)?;
    *pos = end;
    Ok(s)
}

/// Splits a message into (field number, value) pairs in wire order.
pub(crate) fn fields(buf: &[u8]) -> Result<Vec<(u32, Wire<'_>)>, ProtobufError> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let key = read_varint(buf, &mut pos)?;
        let wt = (key & 7) as u8;
        let num = u32::try_from(key >> 3).map_err(|_| ProtobufError::BadVarint)?;
        if num == 0 {
            return Err(ProtobufError::BadWireType(wt));
        }
        let v = match wt {
            0 => Wire::Varint(read_varint(buf, &mut pos)?),
            1 => Wire::Fixed64(u64::from_le_bytes(
                take(buf, &mut pos, 8)?.try_into().unwrap_or([0; 8]),
            )),
            2 => {
                let len = usize::try_from(read_varint(buf, &mut pos)?)
                    .map_err(|_| ProtobufError::Truncated)?;
                Wire::Bytes(take(buf, &mut pos, len)?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(
                take(buf, &mut pos, 4)?.try_into().unwrap_or([0; 4]),
            )),
            other => return Err(ProtobufError::BadWireType(other)),
        };
        out.push((num, v));
    }
    Ok(out)
}

pub(crate) fn bytes_of<'a>(num: u32, v: Wire<'a>) -> Result<&'a [u8], ProtobufError> {
    match v {
        Wire::Bytes(b) => Ok(b),
        other => Err(ProtobufError::UnexpectedWireType {
            field: num,
            got: other.wire_type(),
            expected: 2,
        }),
    }
}

pub(crate) fn string_of(num: u32, v: Wire<'_>) -> Result<String, ProtobufError> {
    let b = bytes_of(num, v)?;
    String::from_utf8(b.to_vec()).map_err(|_| ProtobufError::InvalidUtf8(num))
}

pub(crate) fn varint_of(num: u32, v: Wire<'_>) -> Result<u64, ProtobufError> {
    match v {
        Wire::Varint(x) => Ok(x),
        other => Err(ProtobufError::UnexpectedWireType {
            field: num,
            got: other.wire_type(),
            expected: 0,
        }),
    }
}

/// Whether a message carries nothing but default values, recursively (an
/// empty string and an empty sub-message look the same on the wire).
fn is_semantically_empty(buf: &[u8]) -> bool {
    match fields(buf) {
        Ok(fs) => fs.iter().all(|(_, v)| match v {
            Wire::Bytes(b) => b.is_empty() || is_semantically_empty(b),
            other => other.is_zero(),
        }),
        Err(_) => false,
    }
}

/// Decodes a Kubernetes protobuf body into the equivalent JSON object
/// (`apiVersion`, `kind`, `metadata`, and for Namespace `spec`/`status`).
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let rest = body
        .strip_prefix(&MAGIC[..])
        .ok_or(ProtobufError::BadMagic)?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (num, v) in fields(rest)? {
        match num {
            1 => {
                for (n, tv) in fields(bytes_of(num, v)?)? {
                    match n {
                        1 => api_version = string_of(n, tv)?,
                        2 => kind = string_of(n, tv)?,
                        _ => {}
                    }
                }
            }
            2 => raw = bytes_of(num, v)?,
            3 => {
                let enc = string_of(num, v)?;
                if !enc.is_empty() {
                    return Err(ProtobufError::UnsupportedEncoding(enc));
                }
            }
            _ => {}
        }
    }
    if kind.is_empty() || api_version.is_empty() {
        return Err(ProtobufError::MissingTypeMeta);
    }

    let mut metadata = Map::new();
    let mut spec: Option<&[u8]> = None;
    let mut status: Option<&[u8]> = None;
    let mut others_empty = true;
    for (num, v) in fields(raw)? {
        match num {
            1 => decode_object_meta(bytes_of(num, v)?, &mut metadata)?,
            2 => spec = Some(bytes_of(num, v)?),
            3 => status = Some(bytes_of(num, v)?),
            _ => {
                others_empty &= match v {
                    Wire::Bytes(b) => b.is_empty() || is_semantically_empty(b),
                    other => other.is_zero(),
                }
            }
        }
    }

    let mut obj = Map::new();
    obj.insert("apiVersion".into(), api_version.clone().into());
    obj.insert("kind".into(), kind.clone().into());
    obj.insert("metadata".into(), Value::Object(metadata));

    if kind == "Namespace" && api_version == "v1" {
        let mut spec_json = Map::new();
        let mut finalizers = Vec::new();
        for (n, v) in fields(spec.unwrap_or(&[]))? {
            if n == 1 {
                finalizers.push(Value::String(string_of(n, v)?));
            }
        }
        if !finalizers.is_empty() {
            spec_json.insert("finalizers".into(), Value::Array(finalizers));
        }
        let mut status_json = Map::new();
        for (n, v) in fields(status.unwrap_or(&[]))? {
            if n == 1 {
                let phase = string_of(n, v)?;
                if !phase.is_empty() {
                    status_json.insert("phase".into(), phase.into());
                }
            }
        }
        obj.insert("spec".into(), Value::Object(spec_json));
        obj.insert("status".into(), Value::Object(status_json));
        return Ok(Value::Object(obj));
    }

    if api_version == "v1" && (kind == "ConfigMap" || kind == "Secret") {
        decode_data_object(&kind, raw, &mut obj)?;
        return Ok(Value::Object(obj));
    }

    if let Some(decoded) = kinds::decode(&api_version, &kind, raw, &mut obj) {
        decoded?;
        return Ok(Value::Object(obj));
    }

    let empty = |b: Option<&[u8]>| b.is_none_or(is_semantically_empty);
    if empty(spec) && empty(status) && others_empty {
        Ok(Value::Object(obj))
    } else {
        Err(ProtobufError::UnsupportedKind(kind))
    }
}

/// ConfigMap (2 data, 3 binaryData, 4 immutable) and Secret (2 data, 3 type, 4 stringData,
/// 5 immutable): maps are repeated entries of {1 key, 2 value}; bytes values become base64.
fn decode_data_object(
    kind: &str,
    raw: &[u8],
    obj: &mut Map<String, Value>,
) -> Result<(), ProtobufError> {
    use base64::Engine;
    let b64 = |b: &[u8]| Value::String(base64::engine::general_purpose::STANDARD.encode(b));
    let mut maps: Map<String, Value> = Map::new();
    for (num, v) in fields(raw)? {
        let (field, bytes_values) = match (kind, num) {
            ("ConfigMap", 2) => ("data", false),
            ("ConfigMap", 3) => ("binaryData", true),
            ("Secret", 2) => ("data", true),
            ("Secret", 4) => ("stringData", false),
            ("Secret", 3) => {
                obj.insert("type".into(), Value::String(string_of(num, v)?));
                continue;
            }
            ("ConfigMap", 4) | ("Secret", 5) => {
                obj.insert("immutable".into(), Value::Bool(varint_of(num, v)? != 0));
                continue;
            }
            _ => continue,
        };
        let mut key = String::new();
        let mut value = Value::String(String::new());
        for (n, ev) in fields(bytes_of(num, v)?)? {
            match n {
                1 => key = string_of(n, ev)?,
                2 if bytes_values => value = b64(bytes_of(n, ev)?),
                2 => value = Value::String(string_of(n, ev)?),
                _ => {}
            }
        }
        maps.entry(field)
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .expect("object")
            .insert(key, value);
    }
    obj.extend(maps);
    Ok(())
}

fn decode_time(buf: &[u8]) -> Result<Option<String>, ProtobufError> {
    let mut seconds: i64 = 0;
    let mut nanos: i64 = 0;
    for (n, v) in fields(buf)? {
        match n {
            1 => seconds = varint_of(n, v)? as i64,
            2 => nanos = i64::from(varint_of(n, v)? as i32),
            _ => {}
        }
    }
    // Go's zero time.Time encodes as an empty message (or 0001-01-01).
    if (seconds == 0 && nanos == 0) || seconds == -62_135_596_800 {
        return Ok(None);
    }
    Ok(
        DateTime::from_timestamp(seconds, nanos.clamp(0, 999_999_999) as u32)
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
    )
}

fn decode_string_map(buf: &[u8], into: &mut Map<String, Value>) -> Result<(), ProtobufError> {
    let mut key = String::new();
    let mut value = String::new();
    for (n, v) in fields(buf)? {
        match n {
            1 => key = string_of(n, v)?,
            2 => value = string_of(n, v)?,
            _ => {}
        }
    }
    into.insert(key, Value::String(value));
    Ok(())
}

fn decode_owner_reference(buf: &[u8]) -> Result<Value, ProtobufError> {
    let mut o = Map::new();
    for (n, v) in fields(buf)? {
        let key = match n {
            1 => "kind",
            3 => "name",
            4 => "uid",
            5 => "apiVersion",
            6 | 7 => {
                let b = varint_of(n, v)? != 0;
                o.insert(
                    if n == 6 {
                        "controller"
                    } else {
                        "blockOwnerDeletion"
                    }
                    .into(),
                    b.into(),
                );
                continue;
            }
            _ => continue,
        };
        o.insert(key.into(), string_of(n, v)?.into());
    }
    Ok(Value::Object(o))
}

fn decode_object_meta(buf: &[u8], meta: &mut Map<String, Value>) -> Result<(), ProtobufError> {
    let mut labels = Map::new();
    let mut annotations = Map::new();
    let mut owners = Vec::new();
    let mut finalizers = Vec::new();
    for (n, v) in fields(buf)? {
        let string_key = match n {
            1 => Some("name"),
            2 => Some("generateName"),
            3 => Some("namespace"),
            4 => Some("selfLink"),
            5 => Some("uid"),
            6 => Some("resourceVersion"),
            _ => None,
        };
        if let Some(key) = string_key {
            let s = string_of(n, v)?;
            if !s.is_empty() {
                meta.insert(key.into(), s.into());
            }
            continue;
        }
        match n {
            7 => {
                let g = varint_of(n, v)? as i64;
                if g != 0 {
                    meta.insert("generation".into(), g.into());
                }
            }
            8 | 9 => {
                if let Some(t) = decode_time(bytes_of(n, v)?)? {
                    let key = if n == 8 {
                        "creationTimestamp"
                    } else {
                        "deletionTimestamp"
                    };
                    meta.insert(key.into(), t.into());
                }
            }
            10 => {
                meta.insert(
                    "deletionGracePeriodSeconds".into(),
                    (varint_of(n, v)? as i64).into(),
                );
            }
            11 => decode_string_map(bytes_of(n, v)?, &mut labels)?,
            12 => decode_string_map(bytes_of(n, v)?, &mut annotations)?,
            13 => owners.push(decode_owner_reference(bytes_of(n, v)?)?),
            14 => finalizers.push(Value::String(string_of(n, v)?)),
            _ => {}
        }
    }
    if !labels.is_empty() {
        meta.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
    if !owners.is_empty() {
        meta.insert("ownerReferences".into(), Value::Array(owners));
    }
    if !finalizers.is_empty() {
        meta.insert("finalizers".into(), Value::Array(finalizers));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // --- a tiny encoder for building test inputs ---
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn field_bytes(num: u32, data: &[u8], out: &mut Vec<u8>) {
        varint(u64::from(num) << 3 | 2, out);
        varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }

    fn field_str(num: u32, s: &str, out: &mut Vec<u8>) {
        field_bytes(num, s.as_bytes(), out);
    }

    fn field_varint(num: u32, v: u64, out: &mut Vec<u8>) {
        varint(u64::from(num) << 3, out);
        varint(v, out);
    }

    fn map_entry(num: u32, k: &str, v: &str, out: &mut Vec<u8>) {
        let mut e = Vec::new();
        field_str(1, k, &mut e);
        field_str(2, v, &mut e);
        field_bytes(num, &e, out);
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8], encoding: &str) -> Vec<u8> {
        let mut tm = Vec::new();
        field_str(1, api_version, &mut tm);
        field_str(2, kind, &mut tm);
        let mut u = Vec::new();
        field_bytes(1, &tm, &mut u);
        field_bytes(2, raw, &mut u);
        field_str(3, encoding, &mut u);
        field_str(4, "", &mut u);
        let mut body = MAGIC.to_vec();
        body.extend(u);
        body
    }

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Captured from `kubectl create ns foo` (kubectl v1.32.5) against a
    /// loopback listener.
    const REAL_CREATE_NS_FOO: &str = "6b387300 0a0f0a0276311209 4e616d657370616365 121b \
        0a13 0a03666f6f 1200 1a00 2200 2a00 3200 3800 4200 \
        1200 1a020a00 1a00 2200";

    /// Captured from `kubectl create configmap cm1 -n default --from-literal=a=b`.
    const REAL_CREATE_CONFIGMAP: &str = "6b387300 0a0f0a0276311209 436f6e6669674d6170 1224 \
        0a1a 0a03636d31 1200 1a0764656661756c74 2200 2a00 3200 3800 4200 \
        1206 0a0161 120162 1a00 2200";

    /// Captured from `kubectl create serviceaccount sa1 -n default`.
    const REAL_CREATE_SERVICEACCOUNT: &str = "6b387300 0a140a027631120e 536572766963654163636f756e74 121c \
        0a1a 0a03736131 1200 1a0764656661756c74 2200 2a00 3200 3800 4200 \
        1a00 2200";

    #[test]
    fn real_kubectl_create_namespace() {
        let v = decode(&unhex(REAL_CREATE_NS_FOO)).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "foo"},
                   "spec": {}, "status": {}})
        );
    }

    #[test]
    fn real_kubectl_create_serviceaccount_is_metadata_only() {
        let v = decode(&unhex(REAL_CREATE_SERVICEACCOUNT)).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": "sa1", "namespace": "default"}})
        );
    }

    #[test]
    fn real_kubectl_create_configmap_keeps_its_data() {
        let v = decode(&unhex(REAL_CREATE_CONFIGMAP)).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "cm1", "namespace": "default"},
                   "data": {"a": "b"}})
        );
    }

    fn full_meta() -> Vec<u8> {
        let mut m = Vec::new();
        field_str(1, "ns1", &mut m);
        field_str(2, "gen-", &mut m);
        field_str(3, "", &mut m);
        field_str(5, "uid-1", &mut m);
        field_varint(7, 4, &mut m);
        let mut t = Vec::new();
        field_varint(1, 1_764_115_200, &mut t); // 2025-11-26T00:00:00Z
        field_bytes(8, &t, &mut m);
        map_entry(11, "team", "core", &mut m);
        map_entry(11, "app.kubernetes.io/name", "sluice", &mut m);
        map_entry(12, "note", "hi", &mut m);
        let mut owner = Vec::new();
        field_str(5, "apps/v1", &mut owner);
        field_str(1, "Deployment", &mut owner);
        field_str(3, "web", &mut owner);
        field_str(4, "u-9", &mut owner);
        field_varint(6, 1, &mut owner);
        field_bytes(13, &owner, &mut m);
        field_str(14, "a/b", &mut m);
        field_str(14, "c/d", &mut m);
        field_bytes(17, b"\x0a\x03mgr", &mut m); // managedFields: ignored
        field_varint(99, 7, &mut m); // unknown field: ignored
        m
    }

    #[test]
    fn namespace_with_full_metadata_and_finalizers() {
        let mut ns = Vec::new();
        field_bytes(1, &full_meta(), &mut ns);
        let mut spec = Vec::new();
        field_str(1, "kubernetes", &mut spec);
        field_bytes(2, &spec, &mut ns);
        let mut status = Vec::new();
        field_str(1, "Active", &mut status);
        field_bytes(3, &status, &mut ns);
        let v = decode(&envelope("v1", "Namespace", &ns, "")).unwrap();
        assert_eq!(
            v,
            json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {
                    "name": "ns1", "generateName": "gen-", "uid": "uid-1", "generation": 4,
                    "creationTimestamp": "2025-11-26T00:00:00Z",
                    "labels": {"team": "core", "app.kubernetes.io/name": "sluice"},
                    "annotations": {"note": "hi"},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                         "uid": "u-9", "controller": true}],
                    "finalizers": ["a/b", "c/d"]
                },
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"}
            })
        );
    }

    #[test]
    fn other_kinds_need_empty_spec_and_status() {
        let mut meta = Vec::new();
        field_str(1, "x", &mut meta);
        let mut obj = Vec::new();
        field_bytes(1, &meta, &mut obj);
        field_bytes(2, &[], &mut obj);
        field_bytes(3, &unhex("0a00 1000"), &mut obj); // all-default status
        let v = decode(&envelope("apps/v1", "StatefulSet", &obj, "")).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "x"}})
        );

        let mut spec = Vec::new();
        field_varint(1, 3, &mut spec); // replicas: 3
        let mut obj2 = Vec::new();
        field_bytes(1, &meta, &mut obj2);
        field_bytes(2, &spec, &mut obj2);
        assert_eq!(
            decode(&envelope("apps/v1", "StatefulSet", &obj2, "")),
            Err(ProtobufError::UnsupportedKind("StatefulSet".into()))
        );
    }

    #[test]
    fn malformed_inputs() {
        assert_eq!(
            decode(b"{\"kind\":\"Namespace\"}"),
            Err(ProtobufError::BadMagic)
        );
        assert_eq!(decode(&[]), Err(ProtobufError::BadMagic));
        let real = unhex(REAL_CREATE_NS_FOO);
        for cut in [5, 10, 20, real.len() - 1] {
            assert!(decode(&real[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = MAGIC.to_vec();
        bad.extend([0x0b]); // field 1, wire type 3 (group)
        assert_eq!(decode(&bad), Err(ProtobufError::BadWireType(3)));
        let mut long = MAGIC.to_vec();
        long.extend([
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ]);
        assert_eq!(decode(&long), Err(ProtobufError::BadVarint));
        assert_eq!(
            decode(&envelope("", "", &[], "")),
            Err(ProtobufError::MissingTypeMeta)
        );
        assert_eq!(
            decode(&envelope("v1", "Namespace", &[], "gzip")),
            Err(ProtobufError::UnsupportedEncoding("gzip".into()))
        );
        let mut meta = Vec::new();
        field_varint(1, 5, &mut meta); // name as a varint
        let mut obj = Vec::new();
        field_bytes(1, &meta, &mut obj);
        assert_eq!(
            decode(&envelope("v1", "Namespace", &obj, "")),
            Err(ProtobufError::UnexpectedWireType {
                field: 1,
                got: 0,
                expected: 2
            })
        );
        let mut meta = Vec::new();
        field_bytes(1, &[0xff, 0xfe], &mut meta);
        let mut obj = Vec::new();
        field_bytes(1, &meta, &mut obj);
        assert_eq!(
            decode(&envelope("v1", "Namespace", &obj, "")),
            Err(ProtobufError::InvalidUtf8(1))
        );
    }

    #[test]
    fn content_type_detection() {
        assert!(is_protobuf_content_type(
            "application/vnd.kubernetes.protobuf"
        ));
        assert!(is_protobuf_content_type(
            "application/vnd.kubernetes.protobuf; charset=x"
        ));
        assert!(!is_protobuf_content_type("application/json"));
        assert!(!is_protobuf_content_type(
            "application/vnd.kubernetes.protobuf-x"
        ));
    }
}
