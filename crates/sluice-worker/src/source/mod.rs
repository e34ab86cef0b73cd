//! Sources of events. A source hands out messages in chunks and acknowledges them on
//! request; acknowledgement is separate ([`Acker`]) so that the delivering stage can ack
//! while the fetching stage keeps fetching. The interface fits a JetStream durable pull
//! consumer (one ack per message) as well as a Kafka consumer group (an acker committing the
//! highest contiguous offset per partition).

pub mod jetstream;
pub mod kafka;

use bytes::Bytes;
use std::future::Future;

/// One received message.
#[derive(Debug, Clone)]
pub struct Received<T> {
    /// The event as published.
    pub payload: Bytes,
    /// The subject (or topic) it was published on.
    pub subject: async_nats::Subject,
    /// What the source needs to acknowledge it.
    pub token: T,
}

/// Where a message came from, for dead-letter headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The stream (or topic) name.
    pub stream: String,
    /// The message's sequence number in the stream (offset in a partition).
    pub sequence: u64,
    /// How many times it has been delivered.
    pub delivered: u64,
}

/// Why the source failed; the worker retries with backoff.
#[derive(Debug, thiserror::Error)]
#[error("source: {0}")]
pub struct SourceError(pub String);

/// A source of messages: fetching side.
pub trait Source: Send + 'static {
    /// What acknowledges one message.
    type Token: Clone + Ord + Send + Sync + 'static;
    /// The acknowledging side, usable from another task.
    type Acker: Acker<Token = Self::Token>;
    /// The lag-reporting side, usable from another task.
    type Lag: LagProbe;

    /// The acknowledging side.
    fn acker(&self) -> Self::Acker;

    /// The lag-reporting side.
    fn lag_probe(&self) -> Self::Lag;

    /// A readiness probe telling whether the connection to the broker is up.
    fn connection_probe(&self) -> crate::health::Probe;

    /// Appends to `out` at least one and at most `max` messages, or none when nothing came
    /// in for a while (so the caller can look at its shutdown signal).
    fn receive(
        &mut self,
        out: &mut Vec<Received<Self::Token>>,
        max: usize,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;

    /// Appends to `out` every message of requests still outstanding, waiting for them to
    /// end, so that stopping leaves nothing delivered but unseen.
    fn finish(
        &mut self,
        out: &mut Vec<Received<Self::Token>>,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;
}

/// Acknowledges messages, once the sink accepted them.
pub trait Acker: Clone + Send + Sync + 'static {
    /// What acknowledges one message.
    type Token: Clone + Ord + Send + Sync + 'static;

    /// Acknowledges these messages. Acks may still be buffered when this returns; they are
    /// sent by [`Acker::flush`].
    fn ack(&self, tokens: &[Self::Token]) -> impl Future<Output = Result<(), SourceError>> + Send;

    /// Tells the broker these messages are still being worked on, so that it does not
    /// redeliver them when the ack wait passes; sent at once.
    fn progress(
        &self,
        tokens: &[Self::Token],
    ) -> impl Future<Output = Result<(), SourceError>> + Send;

    /// Gives these messages back for redelivery after `delay`.
    fn nak(
        &self,
        tokens: &[Self::Token],
        delay: std::time::Duration,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;

    /// Sends buffered acknowledgements to the broker.
    fn flush(&self) -> impl Future<Output = Result<(), SourceError>> + Send;

    /// Where the message of `token` came from.
    fn origin(&self, token: &Self::Token) -> Origin;
}

/// Reports how many messages of the source are still to be consumed.
pub trait LagProbe: Send + 'static {
    /// Messages not yet delivered to the consumer, when the source knows.
    fn lag(&mut self) -> impl Future<Output = Result<u64, SourceError>> + Send;
}
