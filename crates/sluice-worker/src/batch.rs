//! Batching decisions (pure): when a batch goes, and how many messages a worker can hold
//! fetched but not yet acknowledged.

use sluice_core::route::{Batching, RouteConfig};
use std::time::{Duration, Instant};

/// Buffer sizes of the delivery loop, derived from the route configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most messages requested from the source at once (one pull request).
    pub fetch_size: usize,
    /// Capacity, in chunks of at most `fetch_size` messages, of the channel between the
    /// fetching stage and the delivering stage.
    pub channel_chunks: usize,
    /// Most events in one delivered batch.
    pub max_events: usize,
    /// Longest wait of the first event of a batch.
    pub max_wait: Duration,
}

/// Chunks buffered between fetching and delivering.
const CHANNEL_CHUNKS: usize = 2;
/// Largest pull request, whatever the batching: bigger requests do not speed JetStream up.
const MAX_FETCH: usize = 1_000;

impl Limits {
    /// The limits of a route: fetches of at most `batching.maxEvents` (and at most
    /// `maxAckPending`, and at most 1000) messages.
    pub fn for_route(config: &RouteConfig) -> Self {
        Self::new(&config.batching, config.source.max_unacknowledged())
    }

    /// Limits from batching settings and the source's cap on unacknowledged messages.
    pub fn new(batching: &Batching, max_ack_pending: usize) -> Self {
        let max_events = (batching.max_events as usize).max(1);
        Limits {
            fetch_size: max_events.min(max_ack_pending.max(1)).min(MAX_FETCH),
            channel_chunks: CHANNEL_CHUNKS,
            max_events,
            max_wait: Duration::from_millis(batching.max_wait_ms),
        }
    }

    /// The most messages the worker holds fetched and not yet acknowledged, whatever the
    /// sink does: the chunks queued in the channel, the chunk the fetching stage holds while
    /// the channel is full, the outstanding pull requests, and the batch being delivered
    /// with the rest of the chunk it came from. The source's own cap (`maxAckPending`) may be
    /// lower still.
    pub fn max_in_flight(&self) -> usize {
        (self.channel_chunks + 2 + crate::source::jetstream::PULLS_IN_FLIGHT) * self.fetch_size
            + self.max_events
    }
}

/// Whether a batch goes now: it is full, or its first event has waited `max_wait`.
pub fn is_due(
    len: usize,
    first_at: Option<Instant>,
    now: Instant,
    max_events: usize,
    max_wait: Duration,
) -> bool {
    if len == 0 {
        return false;
    }
    len >= max_events || first_at.is_some_and(|t| now.duration_since(t) >= max_wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_size_follows_batching_and_ack_pending() {
        let b = Batching {
            max_events: 500,
            max_wait_ms: 100,
        };
        assert_eq!(Limits::new(&b, 10_000).fetch_size, 500);
        assert_eq!(Limits::new(&b, 20).fetch_size, 20);
        let big = Batching {
            max_events: 5_000,
            max_wait_ms: 100,
        };
        assert_eq!(Limits::new(&big, 10_000).fetch_size, 1_000);
        let l = Limits::new(&b, 10_000);
        assert_eq!(l.max_in_flight(), 5 * 500 + 500);
    }

    #[test]
    fn batches_go_when_full_or_old() {
        let t0 = Instant::now();
        let wait = Duration::from_millis(100);
        assert!(!is_due(0, None, t0, 10, wait));
        assert!(!is_due(
            3,
            Some(t0),
            t0 + Duration::from_millis(99),
            10,
            wait
        ));
        assert!(is_due(
            3,
            Some(t0),
            t0 + Duration::from_millis(100),
            10,
            wait
        ));
        assert!(is_due(10, Some(t0), t0, 10, wait));
    }
}
