//! The delivery loop. Two stages joined by a bounded channel:
//!
//! - **fetch**: pulls chunks of messages from the source, applies the transforms (filtered
//!   events are acknowledged at once) and queues the rest;
//! - **deliver**: groups queued events into batches (full, or the first event waited
//!   `maxWaitMs`), hands each batch to the sink (transient failures retried with backoff
//!   until they pass), publishes dead events to the dead-letter subject, and only then
//!   acknowledges the batch's messages.
//!
//! When the sink stalls, the channel fills, the fetch stage stops pulling and the source
//! keeps the rest: the worker never holds more than [`Limits::max_in_flight`] messages.
//! On shutdown the fetch stage finishes its outstanding pull request, the deliver stage
//! delivers and acknowledges everything queued, and the acks are flushed to the broker.

use crate::backoff::Backoff;
use crate::batch::{Limits, is_due};
use crate::dead_letter::{DeadEvent, DeadLetters};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::sink::{Sink, SinkError};
use crate::source::{Acker, Received, Source};
use crate::transform::{EventError, Outcome, Stage, Transform};
use bytes::Bytes;
use sluice_core::route::Retry;
use std::sync::Arc;
use std::time::Instant;
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
    /// Readiness, updated as deliveries succeed or fail.
    pub health: Health,
    /// Buffer sizes.
    pub limits: Limits,
    /// Backoff of retried deliveries.
    pub retry: Retry,
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

/// Runs the loop until `shutdown` is cancelled and everything fetched is delivered and
/// acknowledged. Cancelling `abort` gives up retrying at once.
pub async fn run<Src: Source, Snk: Sink>(
    parts: Parts<Src, Snk>,
    shutdown: CancellationToken,
    abort: CancellationToken,
) -> Result<(), PipelineError> {
    let (tx, rx) = mpsc::channel(parts.limits.channel_chunks);
    let acker = parts.source.acker();
    let fetch = tokio::spawn(
        fetch_stage(
            parts.source,
            parts.transform,
            tx,
            parts.metrics.clone(),
            parts.limits,
            parts.retry,
            shutdown,
        )
        .in_current_span(),
    );
    let deliver = Deliver {
        sink: parts.sink,
        acker,
        dead_letters: parts.dead_letters,
        metrics: parts.metrics,
        health: parts.health,
        limits: parts.limits,
        retry: parts.retry,
        abort,
        batch: Batch::default(),
    };
    let delivered = tokio::spawn(deliver.run(rx).in_current_span());
    let fetched = fetch.await;
    let delivered = delivered.await;
    fetched.map_err(|e| PipelineError::Task(e.to_string()))?;
    delivered.map_err(|e| PipelineError::Task(e.to_string()))?
}

async fn fetch_stage<Src: Source>(
    mut source: Src,
    transform: Arc<Transform>,
    tx: mpsc::Sender<Vec<Item<Src::Token>>>,
    metrics: Metrics,
    limits: Limits,
    retry: Retry,
    shutdown: CancellationToken,
) {
    let acker = source.acker();
    let mut received: Vec<Received<Src::Token>> = Vec::with_capacity(limits.fetch_size);
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(limits.fetch_size);
    let mut backoff = Backoff::new(&retry);
    loop {
        let stopping = shutdown.is_cancelled();
        received.clear();
        let result = if stopping {
            source.finish(&mut received).await
        } else {
            source.receive(&mut received, limits.fetch_size).await
        };
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
            continue;
        }
        backoff.reset();
        if !received.is_empty() {
            metrics.events_in.inc_by(received.len() as u64);
            outcomes.clear();
            transform.apply_all(received.iter().map(|r| &r.payload), |o| outcomes.push(o));
            let mut items = Vec::with_capacity(received.len());
            let mut filtered = Vec::new();
            for (r, outcome) in received.drain(..).zip(outcomes.drain(..)) {
                match outcome {
                    Outcome::Deliver(event) => items.push(Item::Deliver {
                        token: r.token,
                        event,
                        original: r.payload,
                        subject: r.subject,
                    }),
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
                metrics.events_filtered.inc_by(filtered.len() as u64);
                if let Err(e) = acker.ack(&filtered).await {
                    warn!(error = %e, "acknowledging filtered events failed; they will be redelivered");
                }
            }
            if !items.is_empty() && tx.send(items).await.is_err() {
                break;
            }
        }
        if stopping {
            break;
        }
    }
    debug!("fetch stage stopped");
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
    abort: CancellationToken,
    batch: Batch<A::Token>,
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
        if let Err(e) = self.acker.flush().await {
            warn!(error = %e, "flushing acknowledgements failed; they will be redelivered");
        }
        debug!("deliver stage stopped");
        Ok(())
    }

    /// Delivers the batch, dead-letters what must be, then acknowledges every message.
    async fn flush(&mut self) -> Result<(), PipelineError> {
        if self.batch.len() == 0 {
            self.batch.first_at = None;
            return Ok(());
        }
        let mut dead: Vec<(usize, Bytes, async_nats::Subject, EventError)> =
            std::mem::take(&mut self.batch.dead);
        if !self.batch.events.is_empty() {
            let started = Instant::now();
            match self.deliver_with_retry().await? {
                Ok(()) => {
                    self.metrics
                        .events_out
                        .inc_by(self.batch.events.len() as u64);
                    self.metrics
                        .batch_events
                        .observe(self.batch.events.len() as f64);
                    self.metrics
                        .batch_seconds
                        .observe(started.elapsed().as_secs_f64());
                }
                Err(message) => {
                    for (original, subject, index) in self.batch.originals.drain(..) {
                        dead.push((
                            index,
                            original,
                            subject,
                            EventError {
                                stage: Stage::Sink,
                                message: message.clone(),
                            },
                        ));
                    }
                }
            }
        }
        if !dead.is_empty() {
            let events: Vec<DeadEvent> = dead
                .into_iter()
                .map(|(index, payload, subject, error)| DeadEvent {
                    origin: self.acker.origin(&self.batch.tokens[index]),
                    payload,
                    subject: subject.to_string(),
                    error,
                })
                .collect();
            self.dead_letter_with_retry(&events).await?;
            for e in &events {
                self.metrics
                    .events_dead
                    .with_label_values(&[e.error.stage.as_str()])
                    .inc();
            }
        }
        if let Err(e) = self.acker.ack(&self.batch.tokens).await {
            warn!(error = %e, "acknowledging a delivered batch failed; it will be redelivered");
        }
        self.batch.events.clear();
        self.batch.originals.clear();
        self.batch.tokens.clear();
        self.batch.first_at = None;
        Ok(())
    }

    /// Hands the batch to the sink until it accepts it (`Ok(Ok)`) or refuses it for good
    /// (`Ok(Err(reason))`).
    async fn deliver_with_retry(&mut self) -> Result<Result<(), String>, PipelineError> {
        let mut backoff = Backoff::new(&self.retry);
        loop {
            let result = tokio::select! {
                r = self.sink.deliver(&self.batch.events) => r,
                _ = self.abort.cancelled() => return Err(PipelineError::Aborted),
            };
            match result {
                Ok(()) => {
                    self.health.set_sink_failing(false);
                    return Ok(Ok(()));
                }
                Err(SinkError::Rejected(message)) => {
                    self.health.set_sink_failing(false);
                    self.metrics
                        .sink_errors
                        .with_label_values(&["rejected"])
                        .inc();
                    warn!(error = %message, events = self.batch.events.len(), "the sink refused a batch; its events go to the dead-letter subject");
                    return Ok(Err(message));
                }
                Err(SinkError::Transient(message)) => {
                    self.health.set_sink_failing(true);
                    self.metrics
                        .sink_errors
                        .with_label_values(&["transient"])
                        .inc();
                    let delay = backoff.next_delay();
                    warn!(error = %message, retry_in_ms = delay.as_millis() as u64, "delivery failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.abort.cancelled() => return Err(PipelineError::Aborted),
                    }
                }
            }
        }
    }

    async fn dead_letter_with_retry(&mut self, events: &[DeadEvent]) -> Result<(), PipelineError> {
        let mut backoff = Backoff::new(&self.retry);
        loop {
            let result = tokio::select! {
                r = self.dead_letters.publish(events) => r,
                _ = self.abort.cancelled() => return Err(PipelineError::Aborted),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.metrics
                        .sink_errors
                        .with_label_values(&["dead_letter"])
                        .inc();
                    let delay = backoff.next_delay();
                    warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "dead-letter publish failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.abort.cancelled() => return Err(PipelineError::Aborted),
                    }
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(d.into()).await;
    }
}
