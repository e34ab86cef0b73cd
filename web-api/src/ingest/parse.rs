//! Reading events out of an ingest body: one JSON event, a JSON array of events, or NDJSON
//! (one event per line) read incrementally, chunk by chunk, as the body arrives.
//!
//! Events are kept as [`Bytes`] slices of the received chunks (no copy, no per-event
//! allocation, except for the rare line split across two chunks), checked for being one
//! well-formed JSON object, and against the stream's JSON Schema when it has one.

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::ToSchema;

/// An event refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rejected {
    /// Position of the event in the request, from 0 (blank NDJSON lines do not count).
    pub index: usize,
    /// What is wrong with it.
    pub error: String,
}

/// How events are checked: always well-formed JSON objects; against a JSON Schema when the
/// stream has one.
#[derive(Debug, Clone, Copy)]
pub struct Checker<'a> {
    schema: Option<&'a jsonschema::Validator>,
}

/// At most this many schema errors are reported per event.
const MAX_ERRORS_PER_EVENT: usize = 3;

impl<'a> Checker<'a> {
    /// A checker with an optional compiled schema.
    pub fn new(schema: Option<&'a jsonschema::Validator>) -> Self {
        Checker { schema }
    }

    /// Why `raw` (trimmed, non-empty) is not an acceptable event, if it is not.
    pub fn check(&self, raw: &[u8]) -> Result<(), String> {
        if raw.first() != Some(&b'{') {
            return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(raw) {
                Ok(_) => "an event must be a JSON object".to_string(),
                Err(e) => format!("not valid JSON: {e}"),
            });
        }
        let Some(schema) = self.schema else {
            // Fast path: check the syntax without building a document.
            return serde_json::from_slice::<serde::de::IgnoredAny>(raw)
                .map(|_| ())
                .map_err(|e| format!("not valid JSON: {e}"));
        };
        let value: Value =
            serde_json::from_slice(raw).map_err(|e| format!("not valid JSON: {e}"))?;
        let messages: Vec<String> = schema
            .iter_errors(&value)
            .take(MAX_ERRORS_PER_EVENT)
            .map(|e| {
                let path = e.instance_path().to_string();
                if path.is_empty() {
                    format!("schema: {e}")
                } else {
                    format!("schema: {path}: {e}")
                }
            })
            .collect();
        if messages.is_empty() {
            Ok(())
        } else {
            Err(messages.join("; "))
        }
    }
}

/// The events of one request: those accepted (to publish) and those rejected.
#[derive(Debug, Default)]
pub struct Batch {
    /// Accepted events, in order.
    pub events: Vec<Bytes>,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Rejected events.
    pub rejected: Vec<Rejected>,
    /// Events seen (accepted and rejected).
    pub seen: usize,
}

fn is_json_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The range of `b` without JSON whitespace at either end.
fn trimmed(b: &[u8]) -> (usize, usize) {
    let start = b.iter().position(|c| !is_json_space(*c)).unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !is_json_space(*c))
        .map_or(start, |i| i + 1);
    (start, end.max(start))
}

impl Batch {
    /// Offers one event (`raw` is a slice of `owner`), skipping it when blank.
    fn offer(&mut self, owner: &Bytes, start: usize, end: usize, checker: &Checker<'_>) {
        let (s, e) = trimmed(&owner[start..end]);
        if s == e {
            return;
        }
        let (start, end) = (start + s, start + e);
        let index = self.seen;
        self.seen += 1;
        match checker.check(&owner[start..end]) {
            Ok(()) => {
                self.bytes += (end - start) as u64;
                self.events.push(owner.slice(start..end));
            }
            Err(error) => self.rejected.push(Rejected { index, error }),
        }
    }
}

/// An NDJSON reader fed chunk by chunk.
#[derive(Debug, Default)]
pub struct NdjsonReader {
    partial: BytesMut,
}

impl NdjsonReader {
    /// A reader with no pending line.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the complete lines of `chunk` (with what is pending from earlier chunks) into
    /// `batch`; keeps the incomplete last line for the next chunk.
    pub fn push(&mut self, chunk: Bytes, batch: &mut Batch, checker: &Checker<'_>) {
        let mut from = 0;
        if !self.partial.is_empty() {
            match memchr::memchr(b'\n', &chunk) {
                None => {
                    self.partial.extend_from_slice(&chunk);
                    return;
                }
                Some(nl) => {
                    self.partial.extend_from_slice(&chunk[..nl]);
                    let line = self.partial.split().freeze();
                    batch.offer(&line, 0, line.len(), checker);
                    from = nl + 1;
                }
            }
        }
        let mut start = from;
        for nl in memchr::memchr_iter(b'\n', &chunk[from..]) {
            let end = from + nl;
            batch.offer(&chunk, start, end, checker);
            start = end + 1;
        }
        if start < chunk.len() {
            self.partial.extend_from_slice(&chunk[start..]);
        }
    }

    /// Reads the last line (a body need not end with a newline).
    pub fn finish(&mut self, batch: &mut Batch, checker: &Checker<'_>) {
        if !self.partial.is_empty() {
            let line = self.partial.split().freeze();
            batch.offer(&line, 0, line.len(), checker);
        }
    }
}

/// Reads a whole `application/json` body: an array of events, or one event. `Err` when the
/// body is not JSON at all.
pub fn read_json(body: &Bytes, batch: &mut Batch, checker: &Checker<'_>) -> Result<(), String> {
    let (s, e) = trimmed(body);
    if s == e {
        return Err("the body is empty".into());
    }
    if body[s] != b'[' {
        serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(|e| e.to_string())?;
        batch.offer(body, s, e, checker);
        return Ok(());
    }
    let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let base = body.as_ptr() as usize;
    for raw in items {
        let text = raw.get().as_bytes();
        let start = text.as_ptr() as usize - base;
        batch.offer(body, start, start + text.len(), checker);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn texts(b: &Batch) -> Vec<&str> {
        b.events
            .iter()
            .map(|e| std::str::from_utf8(e).unwrap())
            .collect()
    }

    #[test]
    fn ndjson_lines_split_anywhere_are_read_whole() {
        let body = "{\"a\":1}\n\n  {\"b\":2}\r\n[1]\n{\"c\":\n{\"d\":\"x\"}";
        // Every way of cutting the body in two, and byte by byte.
        for cut in 0..=body.len() {
            let mut batch = Batch::default();
            let mut r = NdjsonReader::new();
            let c = Checker::new(None);
            r.push(
                Bytes::copy_from_slice(&body.as_bytes()[..cut]),
                &mut batch,
                &c,
            );
            r.push(
                Bytes::copy_from_slice(&body.as_bytes()[cut..]),
                &mut batch,
                &c,
            );
            r.finish(&mut batch, &c);
            assert_eq!(texts(&batch), ["{\"a\":1}", "{\"b\":2}", "{\"d\":\"x\"}"]);
            assert_eq!(batch.seen, 5);
            let idx: Vec<_> = batch.rejected.iter().map(|r| r.index).collect();
            assert_eq!(idx, [2, 3]);
            assert!(batch.rejected[0].error.contains("JSON object"));
            assert!(batch.rejected[1].error.contains("not valid JSON"));
        }
        let mut batch = Batch::default();
        let mut r = NdjsonReader::new();
        let c = Checker::new(None);
        for b in body.bytes() {
            r.push(Bytes::copy_from_slice(&[b]), &mut batch, &c);
        }
        r.finish(&mut batch, &c);
        assert_eq!(batch.events.len(), 3);
        assert_eq!(batch.bytes, 7 + 7 + 9);
    }

    #[test]
    fn json_bodies_are_one_event_or_an_array() {
        let c = Checker::new(None);
        let mut b = Batch::default();
        read_json(&Bytes::from_static(b" {\"a\": 1} "), &mut b, &c).unwrap();
        assert_eq!(texts(&b), ["{\"a\": 1}"]);
        let mut b = Batch::default();
        read_json(
            &Bytes::from_static(b"[{\"a\":1}, 2, {\"b\": [1,2]}]"),
            &mut b,
            &c,
        )
        .unwrap();
        assert_eq!(texts(&b), ["{\"a\":1}", "{\"b\": [1,2]}"]);
        assert_eq!(b.rejected[0].index, 1);
        let mut b = Batch::default();
        assert!(read_json(&Bytes::from_static(b"[{\"a\":1},"), &mut b, &c).is_err());
        assert!(read_json(&Bytes::from_static(b"  "), &mut b, &c).is_err());
    }

    #[test]
    fn schema_errors_name_the_field() {
        let schema = json!({"type": "object", "required": ["id"],
            "properties": {"id": {"type": "string"}, "amount": {"type": "number"}}});
        let v = jsonschema::validator_for(&schema).unwrap();
        let c = Checker::new(Some(&v));
        assert!(c.check(br#"{"id": "a", "amount": 3}"#).is_ok());
        let e = c.check(br#"{"id": "a", "amount": "3"}"#).unwrap_err();
        assert!(e.contains("/amount"), "{e}");
        let e = c.check(br#"{"amount": 3}"#).unwrap_err();
        assert!(e.contains("id"), "{e}");
    }
}
