//! The Kafka source: a consumer group per route (every replica joins the same group, and the
//! cluster splits the topic's partitions between them). Offsets are stored only for events
//! the sink accepted, and only up to the first one still in flight on each partition
//! ([`Offsets`]); librdkafka commits what is stored every second, when partitions are revoked,
//! and when the worker stops. A killed worker's events are read again by whoever gets its
//! partitions: delivery is at least once.
//!
//! `startFrom` applies to a group with no committed offset on a partition: `new` starts at
//! the end, `all` at the beginning, `time` at the first event at or after `startTime`
//! (looked up with offsets-for-times when the partitions are assigned).

use super::{Acker, LagProbe, Origin, Received, Source, SourceError};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use sluice_core::route::{KafkaClient, Source as SourceConfig, StartFrom};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long one receive waits for a first message on an idle topic.
const RECEIVE_WAIT: Duration = Duration::from_millis(500);
/// Time limit of the cluster requests made while partitions are assigned, and of lag reads.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The librdkafka configuration of a client of `kafka`.
pub fn client_config(kafka: &KafkaClient) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &kafka.bootstrap_servers);
    for (k, v) in &kafka.properties {
        config.set(k, v);
    }
    config
}

/// One message's position: the token the pipeline acknowledges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The partition.
    pub partition: i32,
    /// The offset in it.
    pub offset: i64,
}

/// What is in flight on each partition (pure bookkeeping): the offset to commit is the
/// first offset received and not yet acknowledged, or one past the last received when
/// everything was acknowledged. Acknowledgements may come out of order (filtered events are
/// acknowledged before the batch ahead of them), so one past the highest acknowledged offset
/// would skip events still in flight.
#[derive(Debug, Default)]
pub struct Offsets {
    partitions: BTreeMap<i32, InFlight>,
    /// Times each message was given back, for its delivery count.
    given_back: BTreeMap<Position, u64>,
}

#[derive(Debug, Default)]
struct InFlight {
    outstanding: BTreeSet<i64>,
    next: i64,
}

impl Offsets {
    /// A message was received.
    pub fn received(&mut self, at: Position) {
        let p = self.partitions.entry(at.partition).or_default();
        p.outstanding.insert(at.offset);
        p.next = p.next.max(at.offset + 1);
    }

    /// These messages were handled; returns the offset to commit of each partition that
    /// moved. Positions on partitions no longer assigned are ignored.
    pub fn acknowledged(&mut self, done: &[Position]) -> BTreeMap<i32, i64> {
        let mut moved = BTreeSet::new();
        for at in done {
            self.given_back.remove(at);
            if let Some(p) = self.partitions.get_mut(&at.partition)
                && p.outstanding.remove(&at.offset)
            {
                moved.insert(at.partition);
            }
        }
        moved
            .into_iter()
            .filter_map(|n| self.commit_offset(n).map(|o| (n, o)))
            .collect()
    }

    /// The offset to commit on `partition`.
    pub fn commit_offset(&self, partition: i32) -> Option<i64> {
        let p = self.partitions.get(&partition)?;
        Some(p.outstanding.first().copied().unwrap_or(p.next))
    }

    /// These messages are given back: they stay in flight (nothing past them is committed)
    /// and count one more delivery.
    pub fn given_back(&mut self, positions: &[Position]) {
        for at in positions {
            *self.given_back.entry(*at).or_default() += 1;
        }
    }

    /// How many times the message at `at` was delivered.
    pub fn delivered(&self, at: &Position) -> u64 {
        1 + self.given_back.get(at).copied().unwrap_or(0)
    }

    /// The partitions were revoked: what was in flight on them is another consumer's now.
    pub fn revoked(&mut self, partitions: &[i32]) {
        for n in partitions {
            self.partitions.remove(n);
        }
        self.given_back
            .retain(|at, _| !partitions.contains(&at.partition));
    }
}

/// The consumer's callbacks: where partitions start when assigned, and whether the
/// cluster is reachable.
pub struct GroupContext {
    topic: String,
    start_from: StartFrom,
    /// Milliseconds since the epoch of `startTime`.
    start_time_ms: Option<i64>,
    offsets: Arc<Mutex<Offsets>>,
    connected: Arc<AtomicBool>,
}

impl ClientContext for GroupContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown)
        ) {
            self.connected.store(false, Ordering::Relaxed);
        }
        tracing::warn!(error = %error, reason, "kafka client error");
    }
}

fn lock(offsets: &Mutex<Offsets>) -> std::sync::MutexGuard<'_, Offsets> {
    offsets.lock().unwrap_or_else(|e| e.into_inner())
}

impl GroupContext {
    /// The start offsets of newly assigned partitions that have no committed offset, when
    /// the route starts from a time: the first offset at or after it (the end when none).
    fn start_offsets(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let Some(ms) = self.start_time_ms else { return };
        if self.start_from != StartFrom::Time {
            return;
        }
        let committed = match consumer.committed_offsets(tpl.clone(), REQUEST_TIMEOUT) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "reading committed offsets failed; partitions start as auto.offset.reset says");
                return;
            }
        };
        let mut fresh = TopicPartitionList::new();
        for e in committed.elements() {
            if !matches!(e.offset(), Offset::Offset(_)) {
                let _ = fresh.add_partition_offset(e.topic(), e.partition(), Offset::Offset(ms));
            }
        }
        if fresh.count() == 0 {
            return;
        }
        match consumer.offsets_for_times(fresh, REQUEST_TIMEOUT) {
            Ok(found) => {
                for e in found.elements() {
                    let start = match e.offset() {
                        Offset::Offset(o) if o >= 0 => Offset::Offset(o),
                        _ => Offset::End,
                    };
                    let _ = tpl.set_partition_offset(e.topic(), e.partition(), start);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "offsets-for-times failed; partitions start as auto.offset.reset says")
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.start_offsets(consumer, tpl);
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(topic = %self.topic, ?partitions, "partitions assigned");
                if let Err(e) = consumer.assign(tpl) {
                    tracing::warn!(error = %e, "assigning partitions failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // What was acknowledged is committed before the partitions go.
                if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                    tracing::debug!(error = %e, "committing before a rebalance");
                }
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                lock(&self.offsets).revoked(&partitions);
                tracing::info!(topic = %self.topic, ?partitions, "partitions revoked");
                if let Err(e) = consumer.unassign() {
                    tracing::warn!(error = %e, "unassigning partitions failed");
                }
            }
            other => {
                tracing::warn!(error = ?other, "rebalance failed");
                let _ = consumer.unassign();
            }
        }
    }
}

type GroupConsumer = StreamConsumer<GroupContext>;

/// A route's member of its consumer group.
pub struct KafkaSource {
    consumer: Arc<GroupConsumer>,
    topic: String,
    offsets: Arc<Mutex<Offsets>>,
    connected: Arc<AtomicBool>,
}

/// Milliseconds since the epoch of an RFC 3339 time.
fn epoch_millis(text: &str) -> Result<i64, SourceError> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| SourceError(format!("source.startTime {text:?}: {e}")))?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

impl KafkaSource {
    /// Joins the route's consumer group on its topic.
    pub fn join(source: &SourceConfig, name: &str) -> Result<Self, SourceError> {
        let SourceConfig::Kafka {
            kafka,
            topic,
            group,
            start_from,
            start_time,
        } = source
        else {
            return Err(SourceError("not a Kafka source".into()));
        };
        let start_time_ms = start_time.as_deref().map(epoch_millis).transpose()?;
        let offsets = Arc::new(Mutex::new(Offsets::default()));
        let connected = Arc::new(AtomicBool::new(true));
        let context = GroupContext {
            topic: topic.clone(),
            start_from: *start_from,
            start_time_ms,
            offsets: offsets.clone(),
            connected: connected.clone(),
        };
        let reset = match start_from {
            StartFrom::All => "earliest",
            // A time with no event at or after it starts at the end.
            StartFrom::New | StartFrom::Time => "latest",
        };
        let consumer: GroupConsumer = client_config(kafka)
            .set("group.id", group)
            .set("client.id", name)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", reset)
            // A replica that died without leaving is out of the group after 10 s, and its
            // partitions go to the others.
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "3000")
            .create_with_context(context)
            .map_err(|e| SourceError(format!("kafka consumer: {e}")))?;
        consumer
            .subscribe(&[topic])
            .map_err(|e| SourceError(format!("subscribing to {topic}: {e}")))?;
        Ok(KafkaSource {
            consumer: Arc::new(consumer),
            topic: topic.clone(),
            offsets,
            connected,
        })
    }

    fn received(&self, m: &rdkafka::message::BorrowedMessage<'_>) -> Received<Position> {
        let at = Position {
            partition: m.partition(),
            offset: m.offset(),
        };
        lock(&self.offsets).received(at);
        Received {
            payload: bytes::Bytes::copy_from_slice(m.payload().unwrap_or_default()),
            subject: async_nats::Subject::from(self.topic.as_str()),
            token: at,
        }
    }
}

impl Source for KafkaSource {
    type Token = Position;
    type Acker = KafkaAcker;
    type Lag = KafkaLag;

    fn acker(&self) -> KafkaAcker {
        KafkaAcker {
            consumer: self.consumer.clone(),
            topic: self.topic.clone(),
            offsets: self.offsets.clone(),
        }
    }

    fn lag_probe(&self) -> KafkaLag {
        KafkaLag {
            consumer: self.consumer.clone(),
            topic: self.topic.clone(),
        }
    }

    fn connection_probe(&self) -> crate::health::Probe {
        let connected = self.connected.clone();
        crate::health::Probe::new(move || connected.load(Ordering::Relaxed))
    }

    async fn receive(
        &mut self,
        out: &mut Vec<Received<Position>>,
        max: usize,
    ) -> Result<(), SourceError> {
        let first = match tokio::time::timeout(RECEIVE_WAIT, self.consumer.recv()).await {
            Err(_) => return Ok(()),
            Ok(Err(e)) => return Err(SourceError(format!("kafka receive: {e}"))),
            Ok(Ok(m)) => self.received(&m),
        };
        self.connected.store(true, Ordering::Relaxed);
        out.push(first);
        // Then whatever librdkafka already fetched, without waiting.
        use futures::FutureExt;
        while out.len() < max {
            match self.consumer.recv().now_or_never() {
                Some(Ok(m)) => {
                    let r = self.received(&m);
                    out.push(r);
                }
                Some(Err(e)) => return Err(SourceError(format!("kafka receive: {e}"))),
                None => break,
            }
        }
        Ok(())
    }

    async fn finish(&mut self, _out: &mut Vec<Received<Position>>) -> Result<(), SourceError> {
        // Nothing is outstanding: what librdkafka fetched ahead is not committed, so it is
        // read again by whoever gets the partition.
        Ok(())
    }
}

/// Stores the offsets of handled messages for librdkafka to commit.
#[derive(Clone)]
pub struct KafkaAcker {
    consumer: Arc<GroupConsumer>,
    topic: String,
    offsets: Arc<Mutex<Offsets>>,
}

impl KafkaAcker {
    fn store(&self, commit: BTreeMap<i32, i64>) -> Result<(), SourceError> {
        if commit.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in commit {
            tpl.add_partition_offset(&self.topic, partition, Offset::Offset(offset))
                .map_err(|e| SourceError(format!("offset list: {e}")))?;
        }
        match self.consumer.store_offsets(&tpl) {
            Ok(()) => Ok(()),
            // A partition revoked meanwhile: its new owner reads those events again.
            Err(e) => {
                tracing::debug!(error = %e, "storing offsets of a partition no longer assigned");
                Ok(())
            }
        }
    }
}

impl Acker for KafkaAcker {
    type Token = Position;

    async fn ack(&self, tokens: &[Position]) -> Result<(), SourceError> {
        let commit = lock(&self.offsets).acknowledged(tokens);
        self.store(commit)
    }

    async fn progress(&self, _tokens: &[Position]) -> Result<(), SourceError> {
        // A consumer group has no ack wait: the group membership is kept by librdkafka's
        // heartbeats, and nothing is read again while the worker holds it.
        Ok(())
    }

    async fn nak(&self, tokens: &[Position], delay: Duration) -> Result<(), SourceError> {
        // Nothing past the first of them is committed; after `delay`, each partition is
        // read again from there (events after it that were delivered come again too).
        let mut from: BTreeMap<i32, i64> = BTreeMap::new();
        lock(&self.offsets).given_back(tokens);
        for t in tokens {
            let o = from.entry(t.partition).or_insert(t.offset);
            *o = (*o).min(t.offset);
        }
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tokio::task::spawn_blocking(move || {
                for (partition, offset) in from {
                    if let Err(e) =
                        consumer.seek(&topic, partition, Offset::Offset(offset), REQUEST_TIMEOUT)
                    {
                        tracing::warn!(error = %e, partition, offset, "seeking back to events given back failed; they come back at the next rebalance");
                    }
                }
            })
            .await;
        });
        Ok(())
    }

    async fn flush(&self) -> Result<(), SourceError> {
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || consumer.commit_consumer_state(CommitMode::Sync))
            .await
            .map_err(|e| SourceError(format!("commit: {e}")))?
            .or_else(|e| match e {
                // Nothing stored since the last commit.
                KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset) => Ok(()),
                e => Err(SourceError(format!("commit: {e}"))),
            })
    }

    fn origin(&self, token: &Position) -> Origin {
        Origin {
            stream: self.topic.clone(),
            sequence: token.offset.max(0) as u64,
            delivered: lock(&self.offsets).delivered(token),
        }
    }
}

/// Reads how far behind the end of its partitions the consumer is.
pub struct KafkaLag {
    consumer: Arc<GroupConsumer>,
    topic: String,
}

impl LagProbe for KafkaLag {
    async fn lag(&mut self) -> Result<u64, SourceError> {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            let positions = consumer.position()?;
            let mut lag = 0u64;
            for e in positions.elements_for_topic(&topic) {
                let (_, high) =
                    consumer.fetch_watermarks(&topic, e.partition(), REQUEST_TIMEOUT)?;
                let at = match e.offset() {
                    Offset::Offset(o) => o,
                    _ => continue,
                };
                lag += (high - at).max(0) as u64;
            }
            Ok::<_, KafkaError>(lag)
        })
        .await
        .map_err(|e| SourceError(format!("lag: {e}")))?
        .map_err(|e| SourceError(format!("lag: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(partition: i32, offset: i64) -> Position {
        Position { partition, offset }
    }

    #[test]
    fn the_committed_offset_never_passes_an_event_in_flight() {
        let mut o = Offsets::default();
        for offset in 10..15 {
            o.received(at(0, offset));
        }
        o.received(at(1, 3));
        // 12 and 13 (filtered) are done before 10 and 11: nothing moves past 10.
        assert_eq!(
            o.acknowledged(&[at(0, 12), at(0, 13)]),
            BTreeMap::from([(0, 10)])
        );
        assert_eq!(
            o.acknowledged(&[at(0, 10), at(0, 11)]),
            BTreeMap::from([(0, 14)])
        );
        assert_eq!(
            o.acknowledged(&[at(0, 14), at(1, 3)]),
            BTreeMap::from([(0, 15), (1, 4)])
        );
        // An ack of a partition this consumer does not hold moves nothing.
        assert!(o.acknowledged(&[at(7, 1)]).is_empty());
    }

    #[test]
    fn events_given_back_hold_the_offset_and_count_deliveries() {
        let mut o = Offsets::default();
        o.received(at(0, 5));
        o.received(at(0, 6));
        o.given_back(&[at(0, 5)]);
        assert_eq!(o.delivered(&at(0, 5)), 2);
        assert_eq!(o.delivered(&at(0, 6)), 1);
        assert_eq!(o.acknowledged(&[at(0, 6)]), BTreeMap::from([(0, 5)]));
        // Read again after the seek, then handled.
        o.received(at(0, 5));
        o.received(at(0, 6));
        assert_eq!(
            o.acknowledged(&[at(0, 5), at(0, 6)]),
            BTreeMap::from([(0, 7)])
        );
        assert_eq!(o.delivered(&at(0, 5)), 1);
    }

    #[test]
    fn revoked_partitions_are_forgotten() {
        let mut o = Offsets::default();
        o.received(at(0, 1));
        o.received(at(1, 1));
        o.given_back(&[at(1, 1)]);
        o.revoked(&[1]);
        assert_eq!(o.commit_offset(1), None);
        assert_eq!(o.delivered(&at(1, 1)), 1);
        assert!(o.acknowledged(&[at(1, 1)]).is_empty());
        assert_eq!(o.commit_offset(0), Some(1));
    }
}
