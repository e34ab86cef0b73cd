//! A bound on the cost of evaluating an expression on one event, checked before evaluating.
//!
//! Without comprehension macros an expression does work in proportion to its nodes, which
//! the limits of `sluice_core::expr::limits` already bound. Each nested comprehension
//! (`all`, `exists`, `exists_one`, `map`, `filter`) multiplies that by the length of what it
//! iterates over, which comes from the event (or from a literal in the expression). The
//! estimate is `nodes × (L + 1)^depth`, with `L` the longest array or object in the event or
//! literal in the expression and `depth` how deeply comprehensions nest. An event whose
//! estimate is over the route's budget is dead-lettered with the reason, unevaluated.

use sluice_core::expr::Shape;

/// The estimated cost of evaluating an expression of this shape on an event whose longest
/// array or object has `longest` elements.
pub fn estimate(shape: &Shape, longest: usize) -> u64 {
    let per_level = longest.max(shape.largest_literal) as u64 + 1;
    let depth = u32::try_from(shape.comprehension_depth).unwrap_or(u32::MAX);
    (shape.nodes as u64).saturating_mul(per_level.saturating_pow(depth))
}

/// The number of elements of the longest array or object in a JSON document (0 for a
/// scalar), by a scan of its bytes that needs no parse and no recursion.
pub fn longest_collection(json: &[u8]) -> usize {
    // Elements counted so far in each open array or object.
    let mut open: Vec<usize> = Vec::new();
    let mut longest = 0;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                mark_element(&mut open);
            }
            b'[' | b'{' => {
                mark_element(&mut open);
                open.push(0);
            }
            b']' | b'}' => {
                if let Some(n) = open.pop() {
                    longest = longest.max(n & !PENDING);
                }
            }
            b',' => {
                // The next element is counted when its first byte comes.
                if let Some(n) = open.last_mut() {
                    *n |= PENDING;
                }
            }
            b' ' | b'\t' | b'\n' | b'\r' | b':' => {}
            _ => mark_element(&mut open),
        }
    }
    // An unterminated document: count what was seen.
    for n in open {
        longest = longest.max(n & !PENDING);
    }
    longest
}

/// A flag in the counter of an open collection: a `,` was seen, the next byte of a value
/// starts a new element.
const PENDING: usize = 1 << (usize::BITS - 1);

/// Counts a new element in the innermost open collection if this byte starts one.
fn mark_element(open: &mut [usize]) {
    if let Some(n) = open.last_mut()
        && (*n == 0 || *n & PENDING != 0)
    {
        *n = (*n & !PENDING) + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(nodes: usize, depth: usize, literal: usize) -> Shape {
        Shape {
            nodes,
            depth: 0,
            comprehension_depth: depth,
            largest_literal: literal,
        }
    }

    #[test]
    fn longest_collections_are_counted_without_parsing() {
        assert_eq!(longest_collection(b"1"), 0);
        assert_eq!(longest_collection(b"[]"), 0);
        assert_eq!(longest_collection(b"[1]"), 1);
        assert_eq!(longest_collection(br#"{"a": [1, 2, 3], "b": {"c": 1}}"#), 3);
        assert_eq!(longest_collection(br#"{"a": "x,y,z,[", "b": 2}"#), 2);
        assert_eq!(longest_collection(br#"["a\",b", "c"]"#), 2);
        assert_eq!(longest_collection(br#"[[1, 2], [3, 4, 5, 6]]"#), 4);
        assert_eq!(longest_collection(br#"[true, false, null, -1.5e3]"#), 4);
        let big = format!("[{}]", vec!["1"; 10_000].join(","));
        assert_eq!(longest_collection(big.as_bytes()), 10_000);
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(longest_collection(deep.as_bytes()), 1);
    }

    #[test]
    fn the_estimate_grows_with_nested_comprehensions() {
        assert_eq!(estimate(&shape(10, 0, 0), 1_000_000), 10);
        assert_eq!(estimate(&shape(10, 1, 0), 99), 1_000);
        assert_eq!(estimate(&shape(10, 2, 0), 99), 100_000);
        assert_eq!(estimate(&shape(10, 2, 999), 0), 10_000_000);
        assert_eq!(estimate(&shape(1000, 32, 0), 1000), u64::MAX);
    }
}
