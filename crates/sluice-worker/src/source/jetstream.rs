//! The JetStream source: a durable pull consumer shared by every replica of a route (same
//! durable name, so the server splits the messages between them), explicit per-message acks.
//! Messages are pulled in requests of at most `fetch_size`; a request is read to its end
//! before the next is made, so a stopping worker can finish it and leave nothing behind.

use super::{Acker, LagProbe, Origin, Received, Source, SourceError};
use async_nats::jetstream::consumer::pull::{Batch, Config as PullConfig};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::{Client, Subject};
use futures::{FutureExt, StreamExt};
use sluice_core::route::{BrokerClient, Source as SourceConfig, StartFrom};
use std::collections::VecDeque;
use std::time::Duration;

/// How long one pull request waits for messages on an idle stream.
const PULL_EXPIRES: Duration = Duration::from_millis(500);
/// Pull requests outstanding at once. One: the server hands messages to its waiting pull
/// requests in turn, so two requests would each get every other message and a replica would
/// deliver them out of order. The round trip between two requests of up to 1000 messages
/// costs about a percent of throughput.
pub const PULLS_IN_FLIGHT: usize = 1;

/// Connects to NATS with the options shared by sources, sinks and the dead-letter publisher.
pub async fn connect(url: &str, broker: &BrokerClient, name: &str) -> Result<Client, SourceError> {
    sluice_broker::client::options(broker)
        .await
        .map_err(SourceError)?
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connect(url)
        .await
        .map_err(|e| SourceError(format!("cannot connect to {url}: {e}")))
}

/// The consumer configuration of a route, with the ack wait the worker derived
/// ([`crate::batch::Limits::ack_wait`]). Redeliveries are not capped by the server
/// (`max_deliver` -1): the worker counts deliveries itself and dead-letters an event past
/// `retry.maxDeliver`, so that no event is ever dropped silently by the broker.
pub fn consumer_config(
    source: &SourceConfig,
    ack_wait: Duration,
) -> Result<PullConfig, SourceError> {
    let SourceConfig::Jetstream {
        subject,
        durable,
        start_from,
        start_time,
        max_ack_pending,
        ..
    } = source
    else {
        return Err(SourceError("not a JetStream source".into()));
    };
    let deliver_policy = match start_from {
        StartFrom::New => DeliverPolicy::New,
        StartFrom::All => DeliverPolicy::All,
        StartFrom::Time => {
            let text = start_time.as_deref().unwrap_or_default();
            let start_time =
                time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| SourceError(format!("source.startTime {text:?}: {e}")))?;
            DeliverPolicy::ByStartTime { start_time }
        }
    };
    Ok(PullConfig {
        durable_name: Some(durable.clone()),
        filter_subject: subject.clone(),
        deliver_policy,
        ack_policy: AckPolicy::Explicit,
        ack_wait,
        max_deliver: -1,
        max_ack_pending: i64::from(*max_ack_pending),
        ..Default::default()
    })
}

/// The settings of an existing consumer that differ from the wanted ones, applied to the
/// existing configuration; `None` when it is up to date. Only settings the server lets an
/// update change are compared (ack wait, max deliver, max ack pending): a consumer made by an
/// older worker (30 s ack wait) is updated in place, keeping its position.
pub fn consumer_update(
    existing: &async_nats::jetstream::consumer::Config,
    wanted: &PullConfig,
) -> Option<PullConfig> {
    let up_to_date = existing.ack_wait == wanted.ack_wait
        && existing.max_deliver == wanted.max_deliver
        && existing.max_ack_pending == wanted.max_ack_pending;
    if up_to_date {
        return None;
    }
    use async_nats::jetstream::consumer::FromConsumer;
    let mut update = PullConfig::try_from_consumer_config(existing.clone()).ok()?;
    update.ack_wait = wanted.ack_wait;
    update.max_deliver = wanted.max_deliver;
    update.max_ack_pending = wanted.max_ack_pending;
    Some(update)
}

/// A route's JetStream durable pull consumer.
pub struct JetStreamSource {
    client: Client,
    consumer: PullConsumer,
    stream: String,
    fetch_size: usize,
    /// Outstanding pull requests, oldest first.
    pulls: VecDeque<Batch>,
}

impl JetStreamSource {
    /// Binds to the route's durable consumer, creating it when missing. Several replicas
    /// starting at once may all try to create it: creating a consumer that exists with the
    /// same configuration succeeds, and a lost race is retried as a lookup.
    /// A consumer that exists with other updatable settings (an older worker's ack wait) is
    /// updated in place.
    pub async fn bind(
        client: Client,
        source: &SourceConfig,
        fetch_size: usize,
        ack_wait: Duration,
    ) -> Result<Self, SourceError> {
        let SourceConfig::Jetstream {
            stream, durable, ..
        } = source
        else {
            return Err(SourceError("not a JetStream source".into()));
        };
        let config = consumer_config(source, ack_wait)?;
        let js = async_nats::jetstream::new(client.clone());
        let st = js
            .get_stream(stream)
            .await
            .map_err(|e| SourceError(format!("stream {stream}: {e}")))?;
        let consumer = match st.get_consumer::<PullConfig>(durable).await {
            Ok(c) => match consumer_update(&c.cached_info().config, &config) {
                None => c,
                // Creating a durable that exists with a new configuration updates it.
                Some(update) => st.create_consumer(update).await.map_err(|e| {
                    SourceError(format!("cannot update consumer {durable} on {stream}: {e}"))
                })?,
            },
            Err(_) => match st.create_consumer(config).await {
                Ok(c) => c,
                Err(create) => st.get_consumer::<PullConfig>(durable).await.map_err(|_| {
                    SourceError(format!(
                        "cannot create consumer {durable} on {stream}: {create}"
                    ))
                })?,
            },
        };
        Ok(JetStreamSource {
            client,
            consumer,
            stream: stream.clone(),
            fetch_size: fetch_size.max(1),
            pulls: VecDeque::with_capacity(PULLS_IN_FLIGHT),
        })
    }

    /// Tops the outstanding pull requests up to [`PULLS_IN_FLIGHT`].
    async fn request(&mut self) -> Result<(), SourceError> {
        while self.pulls.len() < PULLS_IN_FLIGHT {
            let batch = self
                .consumer
                .batch()
                .max_messages(self.fetch_size)
                .expires(PULL_EXPIRES)
                .messages()
                .await
                .map_err(|e| SourceError(format!("pull request: {e}")))?;
            self.pulls.push_back(batch);
        }
        Ok(())
    }
}

fn received(m: async_nats::jetstream::Message) -> Result<Received<Subject>, SourceError> {
    let m = m.message;
    let token = m
        .reply
        .ok_or_else(|| SourceError("a message came without an ack subject".into()))?;
    Ok(Received {
        payload: m.payload,
        subject: m.subject,
        token,
    })
}

impl Source for JetStreamSource {
    type Token = Subject;
    type Acker = JetStreamAcker;
    type Lag = JetStreamLag;

    fn acker(&self) -> JetStreamAcker {
        JetStreamAcker {
            client: self.client.clone(),
            stream: self.stream.clone(),
        }
    }

    fn lag_probe(&self) -> JetStreamLag {
        JetStreamLag {
            consumer: self.consumer.clone(),
        }
    }

    fn connection_probe(&self) -> crate::health::Probe {
        let c = self.client.clone();
        crate::health::Probe::new(move || {
            c.connection_state() == async_nats::connection::State::Connected
        })
    }

    async fn receive(
        &mut self,
        out: &mut Vec<Received<Subject>>,
        max: usize,
    ) -> Result<(), SourceError> {
        let start = out.len();
        self.request().await?;
        // Wait for the first message (or the end of an idle request).
        let Some(pull) = self.pulls.front_mut() else {
            return Ok(());
        };
        match pull.next().await {
            Some(Ok(m)) => out.push(received(m)?),
            Some(Err(e)) => {
                self.pulls.pop_front();
                return Err(SourceError(format!("pull: {e}")));
            }
            None => {
                self.pulls.pop_front();
                return Ok(());
            }
        }
        // Then take whatever has already arrived, without waiting.
        while out.len() - start < max {
            let Some(pull) = self.pulls.front_mut() else {
                break;
            };
            match pull.next().now_or_never() {
                Some(Some(Ok(m))) => out.push(received(m)?),
                Some(Some(Err(e))) => {
                    self.pulls.pop_front();
                    return Err(SourceError(format!("pull: {e}")));
                }
                Some(None) => {
                    self.pulls.pop_front();
                    break;
                }
                None => break,
            }
        }
        Ok(())
    }

    async fn finish(&mut self, out: &mut Vec<Received<Subject>>) -> Result<(), SourceError> {
        while let Some(mut pull) = self.pulls.pop_front() {
            while let Some(m) = pull.next().await {
                match m {
                    Ok(m) => out.push(received(m)?),
                    Err(e) => return Err(SourceError(format!("pull: {e}"))),
                }
            }
        }
        Ok(())
    }
}

/// Acknowledges JetStream messages: one `+ACK` per message on its reply subject, sent
/// without waiting for the server's confirmation (explicit acks stay correct when several
/// replicas share the consumer, unlike acking everything up to a sequence).
#[derive(Clone)]
pub struct JetStreamAcker {
    client: Client,
    stream: String,
}

static ACK: bytes::Bytes = bytes::Bytes::from_static(b"+ACK");
static IN_PROGRESS: bytes::Bytes = bytes::Bytes::from_static(b"+WPI");

/// The body of a negative acknowledgement asking for redelivery after `delay`.
pub fn nak_body(delay: Duration) -> bytes::Bytes {
    bytes::Bytes::from(format!("-NAK {{\"delay\": {}}}", delay.as_nanos()))
}

impl Acker for JetStreamAcker {
    type Token = Subject;

    async fn ack(&self, tokens: &[Subject]) -> Result<(), SourceError> {
        for t in tokens {
            self.client
                .publish(t.clone(), ACK.clone())
                .await
                .map_err(|e| SourceError(format!("ack: {e}")))?;
        }
        Ok(())
    }

    async fn progress(&self, tokens: &[Subject]) -> Result<(), SourceError> {
        for t in tokens {
            self.client
                .publish(t.clone(), IN_PROGRESS.clone())
                .await
                .map_err(|e| SourceError(format!("in-progress ack: {e}")))?;
        }
        self.flush().await
    }

    async fn nak(&self, tokens: &[Subject], delay: Duration) -> Result<(), SourceError> {
        let body = nak_body(delay);
        for t in tokens {
            self.client
                .publish(t.clone(), body.clone())
                .await
                .map_err(|e| SourceError(format!("nak: {e}")))?;
        }
        Ok(())
    }

    async fn flush(&self) -> Result<(), SourceError> {
        self.client
            .flush()
            .await
            .map_err(|e| SourceError(format!("flush acks: {e}")))
    }

    fn origin(&self, token: &Subject) -> Origin {
        parse_ack_subject(token).unwrap_or_else(|| Origin {
            stream: self.stream.clone(),
            ..Origin::default()
        })
    }
}

/// Reads stream, stream sequence and delivery count from an ack subject:
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>`,
/// or the longer form with a domain and account hash
/// (`$JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<time>.<pending>[.<token>]`).
pub fn parse_ack_subject(subject: &str) -> Option<Origin> {
    let parts: Vec<&str> = subject.split('.').collect();
    if parts.len() < 9 || parts[0] != "$JS" || parts[1] != "ACK" {
        return None;
    }
    let base = if parts.len() == 9 { 2 } else { 4 };
    Some(Origin {
        stream: parts.get(base)?.to_string(),
        delivered: parts.get(base + 2)?.parse().ok()?,
        sequence: parts.get(base + 3)?.parse().ok()?,
    })
}

/// Reads the consumer's pending count (messages not yet delivered).
pub struct JetStreamLag {
    consumer: PullConsumer,
}

impl LagProbe for JetStreamLag {
    async fn lag(&mut self) -> Result<u64, SourceError> {
        self.consumer
            .info()
            .await
            .map(|i| i.num_pending)
            .map_err(|e| SourceError(format!("consumer info: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_subjects_tell_where_a_message_came_from() {
        let o = parse_ack_subject("$JS.ACK.orders.c1.2.1234.1200.1700000000000000000.5").unwrap();
        assert_eq!(
            o,
            Origin {
                stream: "orders".into(),
                sequence: 1234,
                delivered: 2
            }
        );
        let o =
            parse_ack_subject("$JS.ACK.hub.ACCHASH.orders.c1.1.77.70.1700000000000000000.0.tok")
                .unwrap();
        assert_eq!(
            (o.stream.as_str(), o.sequence, o.delivered),
            ("orders", 77, 1)
        );
        assert!(parse_ack_subject("_INBOX.x").is_none());
    }

    #[test]
    fn consumer_config_follows_the_route() {
        let source = SourceConfig::Jetstream {
            url: "nats://x".into(),
            stream: "s".into(),
            subject: "s.events".into(),
            durable: "p_r".into(),
            start_from: StartFrom::Time,
            start_time: Some("2026-01-02T03:04:05Z".into()),
            max_ack_pending: 64,
            ack_wait_seconds: 7,
        };
        let c = consumer_config(&source, Duration::from_secs(3)).unwrap();
        assert_eq!(c.durable_name.as_deref(), Some("p_r"));
        assert_eq!(c.filter_subject, "s.events");
        assert_eq!(c.max_ack_pending, 64);
        assert_eq!(c.ack_wait, Duration::from_secs(3));
        assert_eq!(c.max_deliver, -1);
        assert_eq!(c.ack_policy, AckPolicy::Explicit);
        assert!(matches!(
            c.deliver_policy,
            DeliverPolicy::ByStartTime { .. }
        ));
    }

    #[test]
    fn an_old_consumer_is_updated_keeping_what_cannot_change() {
        use async_nats::jetstream::consumer::IntoConsumerConfig;
        let old = PullConfig {
            durable_name: Some("p_r".into()),
            filter_subject: "s.events".into(),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 64,
            ..Default::default()
        }
        .into_consumer_config();
        let wanted = PullConfig {
            durable_name: Some("p_r".into()),
            filter_subject: "s.events".into(),
            deliver_policy: DeliverPolicy::New,
            ack_wait: Duration::from_secs(5),
            max_deliver: -1,
            max_ack_pending: 64,
            ..Default::default()
        };
        let update = consumer_update(&old, &wanted).expect("an update");
        assert_eq!(update.ack_wait, Duration::from_secs(5));
        assert_eq!(update.max_deliver, -1);
        // The deliver policy of an existing consumer cannot change: the old one is kept.
        assert_eq!(update.deliver_policy, DeliverPolicy::All);
        let current = update.into_consumer_config();
        assert!(consumer_update(&current, &wanted).is_none());
    }

    #[test]
    fn naks_carry_their_delay_in_nanoseconds() {
        assert_eq!(
            nak_body(Duration::from_millis(1500)),
            bytes::Bytes::from_static(b"-NAK {\"delay\": 1500000000}")
        );
    }
}
