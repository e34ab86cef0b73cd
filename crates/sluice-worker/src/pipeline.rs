//! The delivery loop. Two stages joined by a bounded channel, and a keeper:
//!
//! - **fetch**: pulls chunks of messages from the source, applies the transforms (filtered
//!   events are acknowledged at once) and queues the rest; an event the broker delivered more
//!   than `retry.maxDeliver` times is dead-lettered without another attempt;
//! - **deliver**: groups queued events into batches (full, or the first event waited
//!   `maxWaitMs`), hands each batch to the sink (each attempt bounded by the sink timeout;
//!   transient failures retried with backoff until `retry.maxDeliver` attempts, counting the
//!   broker's earlier deliveries, then dead-lettered with the last error), publishes dead
//!   events to the dead-letter subject, and only then acknowledges the batch's messages.
//!   When dead events cannot be published, they are given back to the source (redelivered
//!   after a backoff), the rest of the batch is acknowledged, and readiness fails with
//!   `DeadLetterUnavailable` until a publish succeeds;
//! - **keeper**: every message fetched and not yet acknowledged is held; the keeper sends
//!   in-progress acknowledgements for them every [`Timing::keepalive`], so the broker's ack
//!   wait can be short (a killed worker's messages come back quickly) while batches wait as
//!   long as their configuration says.
//!
//! When the sink stalls, the channel fills, the fetch stage stops pulling and the source
//! keeps the rest: the worker never holds more than [`Limits::max_in_flight`] messages.
//! On shutdown the fetch stage finishes its outstanding pull request, the deliver stage
//! delivers and acknowledges everything queued, and the acks are flushed to the broker.
//! Each stage times the steps that wait on the outside world ([`Health::step`]) for liveness.

use crate::backoff::Backoff;
use crate::batch::{Limits, is_due};
use crate::dead_letter::{DeadEvent, DeadLetters};
use crate::health::{Health, Stage as Step};
use crate::metrics::Metrics;
use crate::sink::{Sink, SinkError};
use crate::source::{Acker, Received, Source};
use crate::timing::Timing;
use crate::transform::{EventError, Outcome, Stage, Transform};
use bytes::Bytes;
use sluice_core::route::Retry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, warn};

/// Why the delivery loop stopped before draining.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A second stop signal came while deliveries were still failing: the unacknowledged
    /// messages will be redelivered.
    #[error("stopped before the in-flight batch was delivered; it will be redelivered")]
    Aborted,
    /// A stage of the loop panicked.
    #[error("a stage of the delivery loop failed: {0}")]
    Task(String),
}

/// Everything the delivery loop runs with.
pub struct Parts<Src, Snk> {
    /// Where events come from.
    pub source: Src,
    /// Where they go.
    pub sink: Snk,
    /// The compiled filter and projection.
    pub transform: Arc<Transform>,
    /// Where poison events go.
    pub dead_letters: DeadLetters,
    /// Counters and histograms.
    pub metrics: Metrics,
    /// Readiness and liveness, updated as the loop runs.
    pub health: Health,
    /// Buffer sizes.
    pub limits: Limits,
    /// Backoff of retried deliveries.
    pub retry: Retry,
    /// Ack wait, keepalive, sink timeout and max deliver.
    pub timing: Timing,
}

/// One transformed message waiting for delivery.
enum Item<T> {
    Deliver {
        token: T,
        event: Bytes,
        original: Bytes,
        subject: async_nats::Subject,
    },
    Dead {
        token: T,
        original: Bytes,
        subject: async_nats::Subject,
        error: EventError,
    },
}

/// The messages the worker holds: fetched and not yet acknowledged (or given back), each
/// with when it was fetched or last kept alive.
struct Held<T>(Arc<Mutex<BTreeMap<T, Instant>>>);

impl<T> Clone for Held<T> {
    fn clone(&self) -> Self {
        Held(self.0.clone())
    }
}

impl<T: Clone + Ord> Held<T> {
    fn new() -> Self {
        Held(Arc::new(Mutex::new(BTreeMap::new())))
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<T, Instant>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn hold<'a>(&self, tokens: impl Iterator<Item = &'a T>)
    where
        T: 'a,
    {
        let now = Instant::now();
        self.map().extend(tokens.map(|t| (t.clone(), now)));
    }

    fn release(&self, tokens: &[T]) {
        let mut map = self.map();
        for t in tokens {
            map.remove(t);
        }
    }

    /// The messages not kept alive for `every` (marked as kept alive now). Messages that
    /// go through quickly never need an in-progress acknowledgement.
    fn due(&self, every: Duration) -> Vec<T> {
        let now = Instant::now();
        let mut due = vec![];
        for (token, at) in self.map().iter_mut() {
            if now.duration_since(*at) >= every {
                *at = now;
                due.push(token.clone());
            }
        }
        due
    }
}

/// Runs the loop until `shutdown` is cancelled and everything fetched is delivered and
/// acknowledged. Cancelling `abort` gives up retrying at once.
pub async fn run<Src: Source, Snk: Sink>(
    parts: Parts<Src, Snk>,
    shutdown: CancellationToken,
    abort: CancellationToken,
) -> Result<(), PipelineError> {
    let (tx, rx) = mpsc::channel(parts.limits.channel_chunks);
    let acker = parts.source.acker();
    let held = Held::new();
    let stop_keeper = CancellationToken::new();
    let keeper = tokio::spawn(
        keep_alive(
            acker.clone(),
            held.clone(),
            parts.timing,
            parts.health.clone(),
            stop_keeper.clone(),
        )
        .in_current_span(),
    );
    let fetch = tokio::spawn(
        Fetch {
            acker: parts.source.acker(),
            source: parts.source,
            transform: parts.transform,
            tx,
            metrics: parts.metrics.clone(),
            health: parts.health.clone(),
            limits: parts.limits,
            retry: parts.retry,
            max_deliver: parts.timing.max_deliver,
            held: held.clone(),
        }
        .run(shutdown)
        .in_current_span(),
    );
    let deliver = Deliver {
        sink: parts.sink,
        acker,
        dead_letters: parts.dead_letters,
        metrics: parts.metrics,
        health: parts.health,
        limits: parts.limits,
        timing: parts.timing,
        abort,
        batch: Batch::default(),
        held,
        dead_letter_backoff: Backoff::new(&parts.retry),
        retry: parts.retry,
    };
    let delivered = tokio::spawn(deliver.run(rx).in_current_span());
    let fetched = fetch.await;
    let delivered = delivered.await;
    stop_keeper.cancel();
    let _ = keeper.await;
    fetched.map_err(|e| PipelineError::Task(e.to_string()))?;
    delivered.map_err(|e| PipelineError::Task(e.to_string()))?
}

/// Sends in-progress acknowledgements for every held message, every `timing.keepalive`.
async fn keep_alive<A: Acker>(
    acker: A,
    held: Held<A::Token>,
    timing: Timing,
    health: Health,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(timing.keepalive) => {}
            _ = stop.cancelled() => break,
        }
        // Sent at most two keepalive periods after a message was fetched or last kept alive:
        // within the ack wait (three periods).
        let tokens = held.due(timing.keepalive);
        if tokens.is_empty() {
            continue;
        }
        let _step = health.step(Step::Keepalive);
        if let Err(e) = acker.progress(&tokens).await {
            warn!(error = %e, "in-progress acknowledgements failed; held messages may be redelivered");
        }
    }
}

/// The fetching stage.
struct Fetch<Src: Source> {
    source: Src,
    acker: Src::Acker,
    transform: Arc<Transform>,
    tx: mpsc::Sender<Vec<Item<Src::Token>>>,
    metrics: Metrics,
    health: Health,
    limits: Limits,
    retry: Retry,
    max_deliver: u32,
    held: Held<Src::Token>,
}

/// Whether an event delivered `delivered` times (by the broker) has had its attempts.
pub fn delivered_too_often(delivered: u64, max_deliver: u32) -> bool {
    delivered > u64::from(max_deliver)
}

impl<Src: Source> Fetch<Src> {
    async fn run(mut self, shutdown: CancellationToken) {
        let limits = self.limits;
        let mut received: Vec<Received<Src::Token>> = Vec::with_capacity(limits.fetch_size);
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(limits.fetch_size);
        let mut backoff = Backoff::new(&self.retry);
        loop {
            let stopping = shutdown.is_cancelled();
            received.clear();
            let result = {
                let _step = self.health.step(Step::Fetch);
                if stopping {
                    self.source.finish(&mut received).await
                } else {
                    self.source.receive(&mut received, limits.fetch_size).await
                }
            };
            self.held.hold(received.iter().map(|r| &r.token));
            if let Err(e) = result {
                warn!(error = %e, "fetching failed");
                if stopping {
                    // Whatever was not seen is redelivered after the ack wait.
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = shutdown.cancelled() => {}
                }
                if received.is_empty() {
                    continue;
                }
            } else {
                backoff.reset();
            }
            if !received.is_empty() && !self.queue(&mut received, &mut outcomes).await {
                break;
            }
            if stopping {
                break;
            }
        }
        debug!("fetch stage stopped");
    }

    /// Transforms what was received and queues it for delivery; `false` when the deliver
    /// stage is gone.
    async fn queue(
        &mut self,
        received: &mut Vec<Received<Src::Token>>,
        outcomes: &mut Vec<Outcome>,
    ) -> bool {
        self.metrics.events_in.inc_by(received.len() as u64);
        outcomes.clear();
        self.transform
            .apply_all(received.iter().map(|r| &r.payload), |o| outcomes.push(o));
        let mut items = Vec::with_capacity(received.len());
        let mut filtered = Vec::new();
        for (r, outcome) in received.drain(..).zip(outcomes.drain(..)) {
            match outcome {
                Outcome::Deliver(event) => {
                    let delivered = self.acker.origin(&r.token).delivered;
                    if delivered_too_often(delivered, self.max_deliver) {
                        items.push(Item::Dead {
                            token: r.token,
                            original: r.payload,
                            subject: r.subject,
                            error: EventError {
                                stage: Stage::Sink,
                                message: format!(
                                    "delivered {delivered} times without success \
                                     (retry.maxDeliver is {})",
                                    self.max_deliver
                                ),
                            },
                        });
                    } else {
                        items.push(Item::Deliver {
                            token: r.token,
                            event,
                            original: r.payload,
                            subject: r.subject,
                        });
                    }
                }
                Outcome::Filtered => filtered.push(r.token),
                Outcome::Dead(error) => items.push(Item::Dead {
                    token: r.token,
                    original: r.payload,
                    subject: r.subject,
                    error,
                }),
            }
        }
        if !filtered.is_empty() {
            self.metrics.events_filtered.inc_by(filtered.len() as u64);
            let acked = {
                let _step = self.health.step(Step::Fetch);
                self.acker.ack(&filtered).await
            };
            if let Err(e) = acked {
                warn!(error = %e, "acknowledging filtered events failed; they will be redelivered");
            }
            self.held.release(&filtered);
        }
        items.is_empty() || self.tx.send(items).await.is_ok()
    }
}

/// The batch being assembled.
struct Batch<T> {
    /// Events for the sink.
    events: Vec<Bytes>,
    /// For each event: the original message, its subject and its token's index.
    originals: Vec<(Bytes, async_nats::Subject, usize)>,
    /// Dead events, with their token's index.
    dead: Vec<(usize, Bytes, async_nats::Subject, EventError)>,
    /// Every message of the batch, acknowledged once the batch is through.
    tokens: Vec<T>,
    first_at: Option<Instant>,
}

impl<T> Default for Batch<T> {
    fn default() -> Self {
        Batch {
            events: vec![],
            originals: vec![],
            dead: vec![],
            tokens: vec![],
            first_at: None,
        }
    }
}

impl<T> Batch<T> {
    fn push(&mut self, item: Item<T>, now: Instant) {
        if self.first_at.is_none() {
            self.first_at = Some(now);
        }
        let index = self.tokens.len();
        match item {
            Item::Deliver {
                token,
                event,
                original,
                subject,
            } => {
                self.tokens.push(token);
                self.events.push(event);
                self.originals.push((original, subject, index));
            }
            Item::Dead {
                token,
                original,
                subject,
                error,
            } => {
                self.tokens.push(token);
                self.dead.push((index, original, subject, error));
            }
        }
    }

    fn len(&self) -> usize {
        self.tokens.len()
    }
}

struct Deliver<Snk, A: Acker> {
    sink: Snk,
    acker: A,
    dead_letters: DeadLetters,
    metrics: Metrics,
    health: Health,
    limits: Limits,
    retry: Retry,
    timing: Timing,
    abort: CancellationToken,
    batch: Batch<A::Token>,
    held: Held<A::Token>,
    /// Delay before dead events that could not be published come back; grows while the
    /// dead-letter subject keeps failing.
    dead_letter_backoff: Backoff,
}

/// What became of a batch handed to the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Every event was accepted.
    Delivered,
    /// Every event was accepted except these (index in the batch, why).
    PartlyRefused(Vec<(usize, String)>),
    /// The sink refused the batch for good, or failed it `retry.maxDeliver` times.
    Failed(String),
}

impl<Snk: Sink, A: Acker> Deliver<Snk, A> {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Vec<Item<A::Token>>>,
    ) -> Result<(), PipelineError> {
        loop {
            let deadline = self.batch.first_at.map(|t| t + self.limits.max_wait);
            let received = tokio::select! {
                r = rx.recv() => r,
                _ = sleep_until(deadline), if deadline.is_some() => {
                    self.flush().await?;
                    continue;
                }
            };
            let Some(items) = received else { break };
            // One clock reading per chunk: its events arrived together.
            let now = Instant::now();
            for item in items {
                self.batch.push(item, now);
                if self.batch.len() >= self.limits.max_events {
                    self.flush().await?;
                }
            }
            if is_due(
                self.batch.len(),
                self.batch.first_at,
                Instant::now(),
                self.limits.max_events,
                self.limits.max_wait,
            ) {
                self.flush().await?;
            }
        }
        self.flush().await?;
        let flushed = {
            let _step = self.health.step(Step::Deliver);
            self.acker.flush().await
        };
        if let Err(e) = flushed {
            warn!(error = %e, "flushing acknowledgements failed; they will be redelivered");
        }
        debug!("deliver stage stopped");
        Ok(())
    }

    /// Delivers the batch, dead-letters what must be, then acknowledges every message (or
    /// gives back the dead ones when the dead-letter subject fails).
    async fn flush(&mut self) -> Result<(), PipelineError> {
        if self.batch.len() == 0 {
            self.batch.first_at = None;
            return Ok(());
        }
        let mut dead: Vec<(usize, Bytes, async_nats::Subject, EventError)> =
            std::mem::take(&mut self.batch.dead);
        if !self.batch.events.is_empty() {
            let started = Instant::now();
            let delivery = self.deliver_with_retry().await?;
            let refused = match delivery {
                Delivery::Delivered => vec![],
                Delivery::PartlyRefused(rows) => rows,
                Delivery::Failed(message) => (0..self.batch.events.len())
                    .map(|i| (i, message.clone()))
                    .collect(),
            };
            let accepted = self.batch.events.len() - refused.len();
            if accepted > 0 {
                self.metrics.events_out.inc_by(accepted as u64);
                self.metrics
                    .batch_events
                    .observe(self.batch.events.len() as f64);
                self.metrics
                    .batch_seconds
                    .observe(started.elapsed().as_secs_f64());
            }
            for (i, message) in refused {
                let Some((original, subject, index)) = self.batch.originals.get(i).cloned() else {
                    continue;
                };
                dead.push((
                    index,
                    original,
                    subject,
                    EventError {
                        stage: Stage::Sink,
                        message,
                    },
                ));
            }
        }
        let mut given_back: BTreeSet<usize> = BTreeSet::new();
        if !dead.is_empty() {
            let indices: Vec<usize> = dead.iter().map(|d| d.0).collect();
            let events: Vec<DeadEvent> = dead
                .into_iter()
                .map(|(index, payload, subject, error)| DeadEvent {
                    origin: self.acker.origin(&self.batch.tokens[index]),
                    payload,
                    subject: subject.to_string(),
                    error,
                })
                .collect();
            if self.dead_letter(&events, &indices).await? {
                for e in &events {
                    self.metrics
                        .events_dead
                        .with_label_values(&[e.error.stage.as_str()])
                        .inc();
                }
            } else {
                given_back.extend(indices);
            }
        }
        let to_ack: Vec<A::Token> = self
            .batch
            .tokens
            .iter()
            .enumerate()
            .filter(|(i, _)| !given_back.contains(i))
            .map(|(_, t)| t.clone())
            .collect();
        let acked = {
            let _step = self.health.step(Step::Deliver);
            self.acker.ack(&to_ack).await
        };
        if let Err(e) = acked {
            warn!(error = %e, "acknowledging a delivered batch failed; it will be redelivered");
        }
        self.held.release(&self.batch.tokens);
        self.batch.events.clear();
        self.batch.originals.clear();
        self.batch.tokens.clear();
        self.batch.first_at = None;
        Ok(())
    }

    /// Delivery attempts the batch's events already had: the most any of them was delivered
    /// by the broker before, each delivery having made at least one attempt.
    fn earlier_attempts(&self) -> u64 {
        self.batch
            .originals
            .iter()
            .map(|(_, _, i)| {
                self.acker
                    .origin(&self.batch.tokens[*i])
                    .delivered
                    .saturating_sub(1)
            })
            .max()
            .unwrap_or(0)
    }

    /// Hands the batch to the sink until it accepts it, refuses it for good, or fails it
    /// `retry.maxDeliver` times (counting earlier deliveries).
    async fn deliver_with_retry(&mut self) -> Result<Delivery, PipelineError> {
        let mut backoff = Backoff::new(&self.retry);
        let mut attempts = self.earlier_attempts();
        let max_deliver = u64::from(self.timing.max_deliver);
        let timeout = self.timing.sink_timeout;
        loop {
            attempts += 1;
            let result = {
                let _step = self.health.step(Step::Deliver);
                tokio::select! {
                    r = tokio::time::timeout(timeout, self.sink.deliver(&self.batch.events)) => {
                        r.unwrap_or_else(|_| Err(SinkError::Transient(format!(
                            "no answer within {} ms", timeout.as_millis()
                        ))))
                    }
                    _ = self.abort.cancelled() => return Err(PipelineError::Aborted),
                }
            };
            match result {
                Ok(()) => {
                    self.health.set_sink_failing(false);
                    return Ok(Delivery::Delivered);
                }
                Err(SinkError::PartlyRejected(rows)) => {
                    self.health.set_sink_failing(false);
                    self.metrics
                        .sink_errors
                        .with_label_values(&["rejected"])
                        .inc();
                    warn!(
                        refused = rows.len(),
                        events = self.batch.events.len(),
                        "the sink refused some events; they go to the dead-letter subject"
                    );
                    return Ok(Delivery::PartlyRefused(rows));
                }
                Err(SinkError::Rejected(message)) => {
                    self.health.set_sink_failing(false);
                    self.metrics
                        .sink_errors
                        .with_label_values(&["rejected"])
                        .inc();
                    warn!(error = %message, events = self.batch.events.len(), "the sink refused a batch; its events go to the dead-letter subject");
                    return Ok(Delivery::Failed(format!("refused: {message}")));
                }
                Err(SinkError::Transient(message)) => {
                    self.health.set_sink_failing(true);
                    self.metrics
                        .sink_errors
                        .with_label_values(&["transient"])
                        .inc();
                    if attempts >= max_deliver {
                        warn!(error = %message, attempts, events = self.batch.events.len(), "delivery failed retry.maxDeliver times; the batch goes to the dead-letter subject");
                        return Ok(Delivery::Failed(format!(
                            "{message} (failed {attempts} delivery attempts, retry.maxDeliver is {max_deliver})"
                        )));
                    }
                    let delay = backoff.next_delay();
                    warn!(error = %message, attempts, retry_in_ms = delay.as_millis() as u64, "delivery failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.abort.cancelled() => return Err(PipelineError::Aborted),
                    }
                }
            }
        }
    }

    /// Publishes dead events; `Ok(false)` when that failed and they were given back to the
    /// source for a later try (readiness says `DeadLetterUnavailable` meanwhile).
    async fn dead_letter(
        &mut self,
        events: &[DeadEvent],
        indices: &[usize],
    ) -> Result<bool, PipelineError> {
        let published = {
            let _step = self.health.step(Step::Deliver);
            tokio::select! {
                r = tokio::time::timeout(self.timing.sink_timeout, self.dead_letters.publish(events)) => {
                    r.unwrap_or_else(|_| Err(crate::dead_letter::DeadLetterError("no answer in time".into())))
                }
                _ = self.abort.cancelled() => return Err(PipelineError::Aborted),
            }
        };
        match published {
            Ok(()) => {
                self.health.set_dead_letter_error(None);
                self.dead_letter_backoff.reset();
                Ok(true)
            }
            Err(e) => {
                self.metrics
                    .sink_errors
                    .with_label_values(&["dead_letter"])
                    .inc();
                self.health.set_dead_letter_error(Some(e.to_string()));
                let delay = self.dead_letter_backoff.next_delay();
                warn!(error = %e, events = events.len(), retry_in_ms = delay.as_millis() as u64, "dead-letter publish failed; the dead events are given back and retried");
                let tokens: Vec<A::Token> = indices
                    .iter()
                    .map(|i| self.batch.tokens[*i].clone())
                    .collect();
                let nak = {
                    let _step = self.health.step(Step::Deliver);
                    self.acker.nak(&tokens, delay).await
                };
                if let Err(e) = nak {
                    warn!(error = %e, "giving dead events back failed; they come back after the ack wait");
                }
                Ok(false)
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(d.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_messages_held_for_a_while_are_kept_alive() {
        let held: Held<u32> = Held::new();
        held.hold([1, 2].iter());
        assert!(held.due(Duration::from_millis(30)).is_empty());
        std::thread::sleep(Duration::from_millis(40));
        held.hold([3].iter());
        held.release(&[2]);
        assert_eq!(held.due(Duration::from_millis(30)), [1]);
        // Just kept alive: not due again until another period passed.
        assert!(held.due(Duration::from_millis(30)).is_empty());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(held.due(Duration::from_millis(30)), [1, 3]);
    }

    #[test]
    fn events_past_max_deliver_are_not_tried_again() {
        assert!(!delivered_too_often(1, 1));
        assert!(delivered_too_often(2, 1));
        assert!(!delivered_too_often(10, 10));
        assert!(delivered_too_often(11, 10));
    }
}
