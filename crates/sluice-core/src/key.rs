//! Message keys read from events (pure): the Kafka partition key that ingest and Kafka sinks
//! take from a field of each event. Events with the same key land on the same partition, so
//! their order is kept.

use serde_json::Value;

/// The key of `event` at the dotted field `path` (`customer.id`): a string field's text, or
/// the JSON text of any other value; `None` when the event is not a JSON object or the field
/// is missing or `null` (the message then has no key).
pub fn key_of(event: &[u8], path: &str) -> Option<Vec<u8>> {
    let root: Value = serde_json::from_slice(event).ok()?;
    let mut at = &root;
    for name in path.split('.') {
        at = at.as_object()?.get(name)?;
    }
    match at {
        Value::Null => None,
        Value::String(s) => Some(s.as_bytes().to_vec()),
        other => Some(other.to_string().into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_the_named_field() {
        let e = br#"{"customer": {"id": "c-7", "n": 42, "tags": ["a"]}, "none": null}"#;
        assert_eq!(key_of(e, "customer.id").as_deref(), Some(&b"c-7"[..]));
        assert_eq!(key_of(e, "customer.n").as_deref(), Some(&b"42"[..]));
        assert_eq!(key_of(e, "customer.tags").as_deref(), Some(&b"[\"a\"]"[..]));
        assert_eq!(key_of(e, "none"), None);
        assert_eq!(key_of(e, "customer.id.deeper"), None);
        assert_eq!(key_of(e, "missing"), None);
        assert_eq!(key_of(b"not json", "a"), None);
    }
}
