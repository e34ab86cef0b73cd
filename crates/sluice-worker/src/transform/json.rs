//! JSON ⇄ CEL values. Events are decoded straight into CEL values (one pass, no intermediate
//! `serde_json::Value`) and CEL results are written back as compact JSON.

use cel::Value;
use cel::common::types;
use cel::common::value::Val;
use cel::objects::{Key, Map};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Decodes one JSON document into a CEL value. Integers stay integers (`int`, or `uint`
/// above `i64::MAX`), other numbers are `double`.
pub fn decode(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = CelSeed.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Checks that `bytes` hold exactly one JSON document, without building it.
pub fn validate(bytes: &[u8]) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    <serde::de::IgnoredAny as serde::Deserialize>::deserialize(&mut de)?;
    de.end()
}

/// The top-level members of a JSON object, each value left undecoded. The whole document is
/// checked to be JSON.
pub fn members(bytes: &[u8]) -> Result<Members<'_>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let members = de.deserialize_map(MembersVisitor)?;
    de.end()?;
    Ok(members)
}

/// The members of a JSON object in document order: name and raw value.
pub type Members<'a> = Vec<(Cow<'a, str>, &'a RawValue)>;

/// The value of the last member named `name` (JSON parsers keep the last duplicate).
pub fn member<'a>(members: &[(Cow<'a, str>, &'a RawValue)], name: &str) -> Option<&'a RawValue> {
    members
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| *v)
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Members<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(access.size_hint().unwrap_or(16));
        while let Some(k) = access.next_key::<BorrowedKey<'de>>()? {
            out.push((k.0, access.next_value::<&'de RawValue>()?));
        }
        Ok(out)
    }
}

/// A member name, borrowed unless it has escapes.
struct BorrowedKey<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for BorrowedKey<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = BorrowedKey<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedKey(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BorrowedKey(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(BorrowedKey(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

struct CelSeed;

impl<'de> DeserializeSeed<'de> for CelSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(CelVisitor)
    }
}

struct CelVisitor;

impl<'de> Visitor<'de> for CelVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::UInt(v), Value::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(Arc::new(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(Arc::new(v)))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        while let Some(v) = seq.next_element_seed(CelSeed)? {
            items.push(v);
        }
        Ok(Value::List(Arc::new(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = HashMap::with_capacity(access.size_hint().unwrap_or(8));
        while let Some(k) = access.next_key::<String>()? {
            let v = access.next_value_seed(CelSeed)?;
            map.insert(Key::String(Arc::new(k)), v);
        }
        Ok(Value::Map(Map { map: Arc::new(map) }))
    }
}

/// Decodes one JSON value into a CEL runtime value that borrows its strings from `text`
/// where they have no escapes (no copy, no reference counting).
pub fn decode_val(text: &str) -> Result<Box<dyn Val + '_>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = de.deserialize_any(ValVisitor)?;
    de.end()?;
    Ok(value)
}

struct ValSeed;

impl<'de> DeserializeSeed<'de> for ValSeed {
    type Value = Box<dyn Val + 'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(ValVisitor)
    }
}

struct ValVisitor;

impl<'de> Visitor<'de> for ValVisitor {
    type Value = Box<dyn Val + 'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Box::new(types::CelBool::from(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Box::new(types::CelInt::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => Box::new(types::CelInt::from(i)),
            Err(_) => Box::new(types::CelUInt::from(v)),
        })
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Box::new(types::CelDouble::from(v)))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Box::new(types::CelString::from(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Box::new(types::CelString::from(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Box::new(types::CelString::from(v)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Box::new(types::CelNull))
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Box::new(types::CelNull))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        while let Some(v) = seq.next_element_seed(ValSeed)? {
            items.push(v);
        }
        Ok(Box::new(types::CelList::from(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = HashMap::with_capacity(access.size_hint().unwrap_or(8));
        while let Some(k) = access.next_key::<BorrowedKey<'de>>()? {
            let v = access.next_value_seed(ValSeed)?;
            map.insert(types::CelMapKey::String(types::CelString::from(k.0)), v);
        }
        Ok(Box::new(types::CelMap::from(map)))
    }
}

/// The event as a CEL map of the given top-level members, borrowing from the event.
pub fn event_val<'a>(
    members: &Members<'a>,
    names: &[String],
) -> Result<Box<dyn Val + 'a>, (String, serde_json::Error)> {
    let mut map = HashMap::with_capacity(names.len());
    for name in names {
        if let Some(raw) = member(members, name) {
            let v = decode_val(raw.get()).map_err(|e| (name.clone(), e))?;
            let key = members
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(k, _)| k.clone())
                .unwrap_or_else(|| Cow::Owned(name.clone()));
            map.insert(types::CelMapKey::String(types::CelString::from(key)), v);
        }
    }
    Ok(Box::new(types::CelMap::from(map)))
}

/// A CEL value that has no JSON form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the result cannot be written as JSON: {0}")]
pub struct EncodeError(pub String);

/// Appends the JSON form of a CEL value to `out`: bytes become base64 strings, timestamps
/// RFC 3339 strings, durations strings of seconds (`"1.5s"`), as in CEL's JSON mapping.
pub fn encode(value: &Value, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::UInt(u) => out.extend_from_slice(u.to_string().as_bytes()),
        Value::Float(f) => {
            if !f.is_finite() {
                return Err(EncodeError(format!("{f} is not a JSON number")));
            }
            serde_json::to_writer(&mut *out, f).map_err(|e| EncodeError(e.to_string()))?;
        }
        Value::String(s) => write_str(s, out),
        Value::Bytes(b) => {
            use base64::Engine;
            write_str(&base64::engine::general_purpose::STANDARD.encode(&**b), out)
        }
        Value::Timestamp(t) => write_str(&t.to_rfc3339(), out),
        Value::Duration(d) => {
            let secs = d
                .num_nanoseconds()
                .map_or(d.num_seconds() as f64, |n| n as f64 / 1e9);
            write_str(&format!("{secs}s"), out)
        }
        Value::List(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                encode(v, out)?;
            }
            out.push(b']');
        }
        Value::Map(m) => {
            out.push(b'{');
            for (i, (k, v)) in m.map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match k {
                    Key::String(s) => write_str(s, out),
                    Key::Int(n) => write_str(&n.to_string(), out),
                    Key::Uint(n) => write_str(&n.to_string(), out),
                    Key::Bool(b) => write_str(if *b { "true" } else { "false" }, out),
                }
                out.push(b':');
                encode(v, out)?;
            }
            out.push(b'}');
        }
        other => {
            return Err(EncodeError(format!(
                "a value of type {} has no JSON form",
                other.type_of()
            )));
        }
    }
    Ok(())
}

/// Appends a JSON string literal.
pub fn write_str(s: &str, out: &mut Vec<u8>) {
    // Writing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> serde_json::Value {
        let v = decode(text.as_bytes()).unwrap();
        let mut out = vec![];
        encode(&v, &mut out).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn values_round_trip() {
        let text = r#"{"a":1,"b":-2,"c":1.5,"d":"x\"y","e":[true,false,null],"f":{"g":18446744073709551615}}"#;
        let expected: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(round_trip(text), expected);
    }

    #[test]
    fn numbers_keep_their_kind() {
        assert!(matches!(decode(b"7").unwrap(), Value::Int(7)));
        assert!(matches!(decode(b"7.0").unwrap(), Value::Float(_)));
        assert!(matches!(
            decode(b"18446744073709551615").unwrap(),
            Value::UInt(_)
        ));
    }

    #[test]
    fn invalid_json_is_refused() {
        assert!(decode(b"{\"a\":").is_err());
        assert!(decode(b"{} {}").is_err());
        assert!(decode(b"\xff").is_err());
        assert!(validate(b"{\"a\":[1,2]}").is_ok());
        assert!(validate(b"nope").is_err());
        assert!(validate(b"{} x").is_err());
    }

    #[test]
    fn members_are_read_without_decoding_values() {
        let text = br#"{"a": {"b": [1, 2]}, "c\u0041": "x", "a": 3}"#;
        let m = members(text).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].0, "cA");
        assert_eq!(member(&m, "a").unwrap().get(), "3");
        assert!(member(&m, "z").is_none());
        assert!(members(b"[1]").is_err());
        assert!(
            members(b"{\"a\": [1,}").is_err(),
            "nested syntax is checked"
        );
    }

    #[test]
    fn non_finite_floats_have_no_json_form() {
        let mut out = vec![];
        assert!(encode(&Value::Float(f64::NAN), &mut out).is_err());
    }
}
