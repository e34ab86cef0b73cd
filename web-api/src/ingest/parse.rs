//! Reading events out of an ingest body: one JSON event, a JSON array of events, or NDJSON
//! (one event per line) read incrementally, chunk by chunk, as the body arrives.
//!
//! Events are kept as [`Bytes`] slices of the received chunks (no copy, no per-event
//! allocation, except for the rare line split across two chunks), checked for being one
//! well-formed JSON object, and against the stream's JSON Schema when it has one.
//!
//! What one request can make the API hold is bounded by [`Limits`]: reading stops at the
//! first event past `max_events` ([`ReadError::TooManyEvents`]), at most `max_rejections`
//! rejection records are kept (the others are only counted), each of at most
//! [`MAX_ERROR_LEN`] bytes, and a JSON array is read element by element without a list of
//! its elements. So memory stays within a small multiple of the body limit, whatever the body.

use std::fmt;

use bytes::{Bytes, BytesMut};
use serde::de::{self, Deserializer as _, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::ToSchema;

/// Longest reported reason for a rejected event, in bytes (schema errors can quote the
/// event).
pub const MAX_ERROR_LEN: usize = 300;

/// Why a body cannot be read into a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// More events than [`Limits::max_events`]; reading stopped there.
    #[error("more than {max} events in one request")]
    TooManyEvents {
        /// The limit.
        max: usize,
    },
    /// The body is not JSON at all.
    #[error("{0}")]
    Malformed(String),
}

/// What one request may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most events (accepted and rejected) per request.
    pub max_events: usize,
    /// Most rejection records kept (the others are counted).
    pub max_rejections: usize,
}

impl Limits {
    /// No limit (for tests and tools).
    pub const UNLIMITED: Limits = Limits {
        max_events: usize::MAX,
        max_rejections: usize::MAX,
    };
}

/// `s` cut to at most `max` bytes, on a character boundary, with `…` when cut.
fn truncated(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
    s
}

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
#[derive(Debug)]
pub struct Batch {
    /// Accepted events, in order.
    pub events: Vec<Bytes>,
    /// Their total size in bytes.
    pub bytes: u64,
    /// The first [`Limits::max_rejections`] rejected events.
    pub rejected: Vec<Rejected>,
    /// How many events were rejected (all of them, reported or not).
    pub rejected_count: usize,
    /// Events seen (accepted and rejected).
    pub seen: usize,
    limits: Limits,
}

impl Default for Batch {
    fn default() -> Self {
        Batch::new(Limits::UNLIMITED)
    }
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
    /// An empty batch within `limits`.
    pub fn new(limits: Limits) -> Self {
        Batch {
            events: Vec::new(),
            bytes: 0,
            rejected: Vec::new(),
            rejected_count: 0,
            seen: 0,
            limits,
        }
    }

    /// Offers one event (`raw` is a slice of `owner`), skipping it when blank; refuses it
    /// when the batch already holds [`Limits::max_events`].
    fn offer(
        &mut self,
        owner: &Bytes,
        start: usize,
        end: usize,
        checker: &Checker<'_>,
    ) -> Result<(), ReadError> {
        let (s, e) = trimmed(&owner[start..end]);
        if s == e {
            return Ok(());
        }
        if self.seen >= self.limits.max_events {
            return Err(ReadError::TooManyEvents {
                max: self.limits.max_events,
            });
        }
        let (start, end) = (start + s, start + e);
        let index = self.seen;
        self.seen += 1;
        match checker.check(&owner[start..end]) {
            Ok(()) => {
                self.bytes += (end - start) as u64;
                self.events.push(owner.slice(start..end));
            }
            Err(error) => {
                self.rejected_count += 1;
                if self.rejected.len() < self.limits.max_rejections {
                    let error = truncated(error, MAX_ERROR_LEN);
                    self.rejected.push(Rejected { index, error });
                }
            }
        }
        Ok(())
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
    pub fn push(
        &mut self,
        chunk: Bytes,
        batch: &mut Batch,
        checker: &Checker<'_>,
    ) -> Result<(), ReadError> {
        let mut from = 0;
        if !self.partial.is_empty() {
            match memchr::memchr(b'\n', &chunk) {
                None => {
                    self.partial.extend_from_slice(&chunk);
                    return Ok(());
                }
                Some(nl) => {
                    self.partial.extend_from_slice(&chunk[..nl]);
                    let line = self.partial.split().freeze();
                    batch.offer(&line, 0, line.len(), checker)?;
                    from = nl + 1;
                }
            }
        }
        let mut start = from;
        for nl in memchr::memchr_iter(b'\n', &chunk[from..]) {
            let end = from + nl;
            batch.offer(&chunk, start, end, checker)?;
            start = end + 1;
        }
        if start < chunk.len() {
            self.partial.extend_from_slice(&chunk[start..]);
        }
        Ok(())
    }

    /// Reads the last line (a body need not end with a newline).
    pub fn finish(&mut self, batch: &mut Batch, checker: &Checker<'_>) -> Result<(), ReadError> {
        if !self.partial.is_empty() {
            let line = self.partial.split().freeze();
            batch.offer(&line, 0, line.len(), checker)?;
        }
        Ok(())
    }
}

/// Offers the elements of a JSON array to a batch as they are parsed, without a list of them.
struct ArrayReader<'a, 'c> {
    body: &'a Bytes,
    batch: &'a mut Batch,
    checker: &'a Checker<'c>,
    /// Why reading stopped, when the batch refused an element.
    stopped: Option<ReadError>,
}

impl<'de, 'a, 'c> Visitor<'de> for &mut ArrayReader<'a, 'c> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let base = self.body.as_ptr() as usize;
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            let text = raw.get().as_bytes();
            let start = text.as_ptr() as usize - base;
            if let Err(e) = self
                .batch
                .offer(self.body, start, start + text.len(), self.checker)
            {
                self.stopped = Some(e);
                return Err(de::Error::custom("stopped"));
            }
        }
        Ok(())
    }
}

/// Reads a whole `application/json` body: an array of events, or one event. `Err` when the
/// body is not JSON at all, or holds too many events.
pub fn read_json(body: &Bytes, batch: &mut Batch, checker: &Checker<'_>) -> Result<(), ReadError> {
    let malformed = |e: serde_json::Error| ReadError::Malformed(e.to_string());
    let (s, e) = trimmed(body);
    if s == e {
        return Err(ReadError::Malformed("the body is empty".into()));
    }
    if body[s] != b'[' {
        serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(malformed)?;
        return batch.offer(body, s, e, checker);
    }
    let mut reader = ArrayReader {
        body,
        batch,
        checker,
        stopped: None,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let read = de.deserialize_seq(&mut reader).and_then(|()| de.end());
    match (reader.stopped, read) {
        (Some(stopped), _) => Err(stopped),
        (None, Err(e)) => Err(malformed(e)),
        (None, Ok(())) => Ok(()),
    }
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
            )
            .unwrap();
            r.push(
                Bytes::copy_from_slice(&body.as_bytes()[cut..]),
                &mut batch,
                &c,
            )
            .unwrap();
            r.finish(&mut batch, &c).unwrap();
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
            r.push(Bytes::copy_from_slice(&[b]), &mut batch, &c)
                .unwrap();
        }
        r.finish(&mut batch, &c).unwrap();
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
        assert!(matches!(
            read_json(&Bytes::from_static(b"[{\"a\":1},"), &mut b, &c),
            Err(ReadError::Malformed(_))
        ));
        assert!(read_json(&Bytes::from_static(b"  "), &mut b, &c).is_err());
    }

    #[test]
    fn reading_stops_at_the_event_limit_and_rejections_are_counted_past_theirs() {
        let limits = Limits {
            max_events: 5,
            max_rejections: 2,
        };
        let c = Checker::new(None);
        // Five events fit, blank lines do not count.
        let mut b = Batch::new(limits);
        let mut r = NdjsonReader::new();
        r.push(Bytes::from_static(b"1\n2\n\n{}\n3\n4"), &mut b, &c)
            .unwrap();
        r.finish(&mut b, &c).unwrap();
        assert_eq!((b.seen, b.events.len(), b.rejected_count), (5, 1, 4));
        assert_eq!(b.rejected.len(), 2);
        assert_eq!(b.rejected[1].index, 1);
        // A sixth stops the reading, in NDJSON and in a JSON array.
        let mut b = Batch::new(limits);
        let mut r = NdjsonReader::new();
        assert_eq!(
            r.push(Bytes::from_static(b"1\n1\n1\n1\n1\n1\n"), &mut b, &c),
            Err(ReadError::TooManyEvents { max: 5 })
        );
        let mut b = Batch::new(limits);
        assert_eq!(
            read_json(&Bytes::from_static(b"[{},{},{},{},{},{}]"), &mut b, &c),
            Err(ReadError::TooManyEvents { max: 5 })
        );
        let mut b = Batch::new(limits);
        read_json(&Bytes::from_static(b"[{},{},{},{},{}]"), &mut b, &c).unwrap();
        assert_eq!(b.events.len(), 5);
    }

    #[test]
    fn long_reasons_are_cut() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "number"}}});
        let v = jsonschema::validator_for(&schema).unwrap();
        let c = Checker::new(Some(&v));
        let event = format!("{{\"a\": \"{}\"}}", "é".repeat(10_000));
        let mut b = Batch::default();
        read_json(&Bytes::from(event), &mut b, &c).unwrap();
        let error = &b.rejected[0].error;
        assert!(
            error.len() <= MAX_ERROR_LEN + '…'.len_utf8(),
            "{}",
            error.len()
        );
        assert!(error.ends_with('…'));
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
