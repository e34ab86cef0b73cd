//! The time limits of a route (pure): the consumer's ack wait, how often the messages a
//! worker holds are kept alive, how long one sink attempt may take and when the delivery
//! loop counts as stuck.
//!
//! The ack wait is how long a message delivered to a worker that died waits before the
//! broker redelivers it, so it is kept short (at most [`MAX_ACK_WAIT`]). A worker that holds
//! messages longer than that (a long batching window, a slow or failing sink) sends
//! in-progress acknowledgements for them every [`Timing::keepalive`], so that a live worker's
//! messages are never redelivered to another replica while it still works on them.

use sluice_core::route::{RouteConfig, Sink, Source};
use std::time::Duration;

/// The longest ack wait: a killed worker's messages are redelivered within this (plus the
/// time the next worker takes to deliver them).
pub const MAX_ACK_WAIT: Duration = Duration::from_secs(5);
/// The shortest ack wait.
pub const MIN_ACK_WAIT: Duration = Duration::from_secs(1);
/// How long one attempt of a sink without a timeout of its own (NATS, JetStream, Postgres,
/// object storage, file) may take before it counts as a transient failure.
pub const DEFAULT_SINK_TIMEOUT: Duration = Duration::from_secs(30);

/// The time limits of one route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The consumer's ack wait.
    pub ack_wait: Duration,
    /// How often in-progress acknowledgements are sent for held messages (a third of the
    /// ack wait, so that one lost keepalive does not cause a redelivery).
    pub keepalive: Duration,
    /// Longest sink attempt.
    pub sink_timeout: Duration,
    /// A step of the delivery loop taking longer than this fails liveness.
    pub stall_timeout: Duration,
    /// Attempts of an event before a transient failure dead-letters it.
    pub max_deliver: u32,
}

/// How long one delivery attempt to `sink` may take.
pub fn sink_timeout(sink: &Sink) -> Duration {
    match sink {
        Sink::Http {
            connect_timeout_ms,
            request_timeout_ms,
            ..
        } => Duration::from_millis(connect_timeout_ms.saturating_add(*request_timeout_ms)),
        _ => DEFAULT_SINK_TIMEOUT,
    }
}

/// The ack wait of a route: the time a message may naturally stay unacknowledged (the
/// batching window plus one sink attempt), capped by the source's `ackWaitSeconds` and by
/// [`MAX_ACK_WAIT`], at least [`MIN_ACK_WAIT`].
pub fn ack_wait(max_wait: Duration, sink_timeout: Duration, ack_wait_seconds: u32) -> Duration {
    let cap = MAX_ACK_WAIT.min(Duration::from_secs(u64::from(ack_wait_seconds)));
    max_wait
        .saturating_add(sink_timeout)
        .min(cap)
        .max(MIN_ACK_WAIT)
}

impl Timing {
    /// The time limits of a route.
    pub fn for_route(config: &RouteConfig) -> Self {
        let ack_wait_seconds = match &config.source {
            Source::Jetstream {
                ack_wait_seconds, ..
            } => *ack_wait_seconds,
            // A consumer group has no ack wait; the worker's own timing still uses one to
            // bound how long a message stays held.
            Source::Kafka { .. } => 30,
        };
        let sink_timeout = sink_timeout(&config.sink);
        let ack_wait = ack_wait(
            Duration::from_millis(config.batching.max_wait_ms),
            sink_timeout,
            ack_wait_seconds,
        );
        Timing {
            ack_wait,
            keepalive: ack_wait / 3,
            sink_timeout,
            stall_timeout: Duration::from_secs(u64::from(
                config.liveness.stall_timeout_seconds.max(1),
            )),
            max_deliver: config.retry.max_deliver.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ack_wait_is_short_whatever_the_batching() {
        let hour = Duration::from_secs(3600);
        let ten = Duration::from_secs(10);
        // An hour of batching, the old 30 s default: still redelivered within 5 s.
        assert_eq!(ack_wait(hour, ten, 30), MAX_ACK_WAIT);
        // A lower bound from the configuration wins.
        assert_eq!(ack_wait(hour, ten, 2), Duration::from_secs(2));
        // Quick batches and sinks: as short as allowed.
        assert_eq!(
            ack_wait(Duration::from_millis(10), Duration::from_millis(100), 30),
            MIN_ACK_WAIT
        );
        assert_eq!(
            ack_wait(Duration::from_millis(500), Duration::from_millis(1500), 30),
            Duration::from_secs(2)
        );
        assert_eq!(ack_wait(hour, ten, 0), MIN_ACK_WAIT);
    }

    #[test]
    fn http_sinks_are_bounded_by_their_own_timeouts() {
        let http: Sink = serde_json::from_str(
            r#"{"kind": "http", "url": "http://x", "connectTimeoutMs": 1000, "requestTimeoutMs": 4000}"#,
        )
        .unwrap();
        assert_eq!(sink_timeout(&http), Duration::from_secs(5));
        let file = Sink::File { path: None };
        assert_eq!(sink_timeout(&file), DEFAULT_SINK_TIMEOUT);
    }
}
