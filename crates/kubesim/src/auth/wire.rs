//! Decoding the protobuf bodies of the authentication and authorization requests that kubectl's
//! typed clients send (`kubectl create token`, `kubectl auth can-i`, `kubectl auth whoami`) into
//! the JSON objects they stand for.
//!
//! Field numbers follow `k8s.io/api` `authentication/v1` and `authorization/v1`
//! `generated.proto`: every object is 1 metadata, 2 spec, 3 status;
//! `TokenRequestSpec` 1 audiences, 4 expirationSeconds;
//! `SubjectAccessReviewSpec` 1 resourceAttributes, 2 nonResourceAttributes, 3 user, 4 groups,
//! 6 uid (`SelfSubjectAccessReviewSpec` has only the first two, `LocalSubjectAccessReview`
//! shares the spec); `TokenReviewSpec` 1 token;
//! `ResourceAttributes` 1 namespace, 2 verb, 3 group, 4 version, 5 resource, 6 subresource,
//! 7 name; `NonResourceAttributes` 1 path, 2 verb; `SelfSubjectRulesReviewSpec` 1 namespace.

use crate::protobuf::{MAGIC, ProtobufError, bytes_of, fields, string_of, varint_of};
use serde_json::{Map, Value, json};

/// Decodes a protobuf review or TokenRequest body into JSON (`kind`, `apiVersion`, `spec`).
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let rest = body
        .strip_prefix(&MAGIC[..])
        .ok_or(ProtobufError::BadMagic)?;
    let mut type_meta = Map::new();
    let mut raw: &[u8] = &[];
    for (num, v) in fields(rest)? {
        match num {
            1 => type_meta = strings(bytes_of(num, v)?, &[(1, "apiVersion"), (2, "kind")])?,
            2 => raw = bytes_of(num, v)?,
            _ => {}
        }
    }
    let kind = type_meta
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut spec = Map::new();
    for (num, v) in fields(raw)? {
        if num == 2 {
            spec = decode_spec(&kind, bytes_of(num, v)?)?;
        }
    }
    let mut obj = type_meta;
    obj.insert("spec".into(), Value::Object(spec));
    Ok(Value::Object(obj))
}

fn decode_spec(kind: &str, buf: &[u8]) -> Result<Map<String, Value>, ProtobufError> {
    let mut spec = Map::new();
    for (num, v) in fields(buf)? {
        match (kind, num) {
            ("TokenRequest", 1) => push(&mut spec, "audiences", string_of(num, v)?),
            ("TokenRequest", 4) => {
                spec.insert("expirationSeconds".into(), json!(varint_of(num, v)?));
            }
            ("TokenReview", 1) => {
                spec.insert("token".into(), string_of(num, v)?.into());
            }
            ("SelfSubjectRulesReview", 1) => {
                spec.insert("namespace".into(), string_of(num, v)?.into());
            }
            ("SelfSubjectAccessReview" | "SubjectAccessReview" | "LocalSubjectAccessReview", 1) => {
                let attrs = strings(
                    bytes_of(num, v)?,
                    &[
                        (1, "namespace"),
                        (2, "verb"),
                        (3, "group"),
                        (4, "version"),
                        (5, "resource"),
                        (6, "subresource"),
                        (7, "name"),
                    ],
                )?;
                spec.insert("resourceAttributes".into(), Value::Object(attrs));
            }
            ("SelfSubjectAccessReview" | "SubjectAccessReview" | "LocalSubjectAccessReview", 2) => {
                let attrs = strings(bytes_of(num, v)?, &[(1, "path"), (2, "verb")])?;
                spec.insert("nonResourceAttributes".into(), Value::Object(attrs));
            }
            ("SubjectAccessReview" | "LocalSubjectAccessReview", 3) => {
                spec.insert("user".into(), string_of(num, v)?.into());
            }
            ("SubjectAccessReview" | "LocalSubjectAccessReview", 4) => {
                push(&mut spec, "groups", string_of(num, v)?)
            }
            ("SubjectAccessReview" | "LocalSubjectAccessReview", 6) => {
                spec.insert("uid".into(), string_of(num, v)?.into());
            }
            _ => {}
        }
    }
    Ok(spec)
}

fn push(spec: &mut Map<String, Value>, key: &str, value: String) {
    if let Value::Array(items) = spec.entry(key).or_insert_with(|| json!([])) {
        items.push(value.into());
    }
}

/// The string fields of a message, named by `names` (field number, JSON name).
fn strings(buf: &[u8], names: &[(u32, &str)]) -> Result<Map<String, Value>, ProtobufError> {
    let mut out = Map::new();
    for (num, v) in fields(buf)? {
        if let Some((_, name)) = names.iter().find(|(n, _)| *n == num) {
            out.insert((*name).to_string(), string_of(num, v)?.into());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(num: u32, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(num << 3 | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    fn envelope(api_version: &str, kind: &str, object: &[u8]) -> Vec<u8> {
        let type_meta = [field(1, api_version.as_bytes()), field(2, kind.as_bytes())].concat();
        [MAGIC.to_vec(), field(1, &type_meta), field(2, object)].concat()
    }

    #[test]
    fn a_self_subject_access_review_decodes() {
        let attrs = [
            field(1, b"sluice-acme"),
            field(2, b"create"),
            field(3, b"sluice.dev"),
            field(5, b"pipelines"),
        ]
        .concat();
        let spec = field(1, &attrs);
        let object = [field(1, b""), field(2, &spec)].concat();
        let body = envelope(
            "authorization.k8s.io/v1",
            "SelfSubjectAccessReview",
            &object,
        );
        assert_eq!(
            decode(&body).unwrap(),
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                   "spec": {"resourceAttributes": {"namespace": "sluice-acme", "verb": "create",
                            "group": "sluice.dev", "resource": "pipelines"}}})
        );
    }

    #[test]
    fn a_token_request_and_a_rules_review_decode() {
        let spec = [field(1, b"api"), vec![4 << 3, 0x90, 0x1c]].concat();
        let body = envelope("authentication.k8s.io/v1", "TokenRequest", &field(2, &spec));
        assert_eq!(
            decode(&body).unwrap()["spec"],
            json!({"audiences": ["api"], "expirationSeconds": 3600})
        );
        let body = envelope(
            "authorization.k8s.io/v1",
            "SelfSubjectRulesReview",
            &field(2, &field(1, b"t1")),
        );
        assert_eq!(decode(&body).unwrap()["spec"], json!({"namespace": "t1"}));
    }
}
