//! A well-behaved tenant's steady load: it ingests events with unique ids and reads its stream
//! and pipelines, recording the latency and outcome of every request and every id the API
//! accepted, so that a test can show that another tenant's attack neither slowed nor failed
//! nor lost anything of it.

use crate::stack::ApiClient;
use futures::StreamExt;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Events per ingest request.
pub const BATCH: usize = 10;
/// Pause between two rounds (one ingest and two reads).
pub const PAUSE: Duration = Duration::from_millis(100);

/// Who the load acts as, and on what.
#[derive(Clone, Debug)]
pub struct Tenant {
    /// Tenant name.
    pub name: String,
    /// A `producer` token (ingest).
    pub producer: String,
    /// A `developer` token (reads and writes streams and pipelines).
    pub developer: String,
    /// The stream the load ingests into and reads.
    pub stream: String,
}

/// One request of the load.
#[derive(Clone, Debug)]
pub struct Sample {
    /// When it ended.
    pub at: Instant,
    /// How long it took.
    pub latency: Duration,
    /// What it was, e.g. `POST events`.
    pub what: &'static str,
    /// `None` when it succeeded, else what went wrong.
    pub failure: Option<String>,
}

#[derive(Default)]
struct Log {
    samples: Vec<Sample>,
    accepted: Vec<String>,
}

/// The load, running on the current runtime until [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Log>>,
    task: tokio::task::JoinHandle<()>,
}

/// What the load saw during a period.
#[derive(Debug)]
pub struct Window {
    /// Requests made.
    pub requests: usize,
    /// The failed ones.
    pub failures: Vec<String>,
    /// 99th percentile of the latencies.
    pub p99: Duration,
}

impl Load {
    /// Starts the load of `tenant` against `api`; event ids are `<id_prefix>-<n>`.
    pub fn start(api: ApiClient, tenant: Tenant, id_prefix: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Log::default()));
        let task = tokio::spawn(run(
            api,
            tenant,
            id_prefix.to_string(),
            stop.clone(),
            log.clone(),
        ));
        Load { stop, log, task }
    }

    /// Now, to pass to [`Load::window`] later.
    pub fn mark(&self) -> Instant {
        Instant::now()
    }

    /// Waits until the load made at least `n` requests after `since` (at most 30 s).
    pub async fn wait_for_requests(&self, since: Instant, n: usize) {
        let start = Instant::now();
        while self.count_since(since) < n && start.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(PAUSE).await;
        }
    }

    fn count_since(&self, since: Instant) -> usize {
        let log = self.log.lock().expect("lock");
        log.samples.iter().filter(|s| s.at >= since).count()
    }

    /// What the load saw since `since`.
    pub fn window(&self, since: Instant) -> Window {
        let log = self.log.lock().expect("lock");
        let samples: Vec<&Sample> = log.samples.iter().filter(|s| s.at >= since).collect();
        let mut latencies: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
        Window {
            requests: samples.len(),
            failures: samples
                .iter()
                .filter_map(|s| s.failure.as_ref().map(|f| format!("{}: {f}", s.what)))
                .collect(),
            p99: p99(&mut latencies),
        }
    }

    /// Every event id the API accepted so far.
    pub fn accepted(&self) -> BTreeSet<String> {
        let log = self.log.lock().expect("lock");
        log.accepted.iter().cloned().collect()
    }

    /// Stops the load after its current round; returns every event id the API accepted.
    pub async fn stop(self) -> BTreeSet<String> {
        self.stop.store(true, Ordering::SeqCst);
        let log = self.log.clone();
        let _ = self.task.await;
        let log = log.lock().expect("lock");
        log.accepted.iter().cloned().collect()
    }
}

/// The 99th percentile (nearest rank) of `latencies`; zero when there are none.
pub fn p99(latencies: &mut [Duration]) -> Duration {
    if latencies.is_empty() {
        return Duration::ZERO;
    }
    latencies.sort();
    let rank = (latencies.len() * 99).div_ceil(100);
    latencies[rank.max(1) - 1]
}

async fn run(
    api: ApiClient,
    tenant: Tenant,
    id_prefix: String,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Log>>,
) {
    let t = &tenant.name;
    let mut next = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let ids: Vec<String> = (next..next + BATCH)
            .map(|i| format!("{id_prefix}-{i}"))
            .collect();
        next += BATCH;
        let body: String = ids
            .iter()
            .map(|id| serde_json::json!({"id": id, "amount": 7}).to_string() + "\n")
            .collect();
        let path = format!("/v1/tenants/{t}/streams/{}/events", tenant.stream);
        let (sample, reply) = timed("POST events", || {
            api.try_send(
                reqwest::Method::POST,
                &path,
                &tenant.producer,
                "application/x-ndjson",
                body.clone(),
            )
        })
        .await;
        let sample = match reply {
            Some(r) if r.status == 202 && r.body["accepted"] == BATCH => {
                log.lock().expect("lock").accepted.extend(ids);
                sample
            }
            Some(r) => Sample {
                failure: Some(format!("{} {}", r.status, r.body)),
                ..sample
            },
            None => sample,
        };
        log.lock().expect("lock").samples.push(sample);
        for (what, path) in [
            (
                "GET stream",
                format!("/v1/tenants/{t}/streams/{}", tenant.stream),
            ),
            ("GET pipelines", format!("/v1/tenants/{t}/pipelines")),
        ] {
            let (sample, reply) = timed(what, || {
                api.try_send(
                    reqwest::Method::GET,
                    &path,
                    &tenant.developer,
                    "",
                    String::new(),
                )
            })
            .await;
            let sample = match reply {
                Some(r) if r.status == 200 => sample,
                Some(r) => Sample {
                    failure: Some(format!("{} {}", r.status, r.body)),
                    ..sample
                },
                None => sample,
            };
            log.lock().expect("lock").samples.push(sample);
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// Runs one request and times it; a transport error becomes the sample's failure.
async fn timed<F, Fut>(what: &'static str, request: F) -> (Sample, Option<crate::stack::Reply>)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<crate::stack::Reply, reqwest::Error>>,
{
    let start = Instant::now();
    let result = request().await;
    let sample = Sample {
        at: Instant::now(),
        latency: start.elapsed(),
        what,
        failure: result.as_ref().err().map(|e| format!("no answer: {e}")),
    };
    (sample, result.ok())
}

/// Every `id` of the JSON events stored on `subject` in JetStream stream `stream`.
pub async fn stored_ids(
    js: &async_nats::jetstream::Context,
    stream: &str,
    subject: &str,
) -> BTreeSet<String> {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
    let mut s = js.get_stream(stream).await.expect("the JetStream stream");
    let last = s.info().await.expect("stream info").state.last_sequence;
    let mut ids = BTreeSet::new();
    if last == 0 {
        return ids;
    }
    let consumer = s
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            filter_subject: subject.to_string(),
            ..Default::default()
        })
        .await
        .expect("an ordered consumer");
    let mut messages = consumer.messages().await.expect("messages");
    loop {
        let next = tokio::time::timeout(Duration::from_secs(5), messages.next()).await;
        let Ok(Some(Ok(m))) = next else { break };
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&m.payload)
            && let Some(id) = v["id"].as_str()
        {
            ids.insert(id.to_string());
        }
        if m.info().is_ok_and(|i| i.stream_sequence >= last) {
            break;
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_is_the_nearest_rank() {
        let ms = Duration::from_millis;
        assert_eq!(p99(&mut []), Duration::ZERO);
        assert_eq!(p99(&mut [ms(5)]), ms(5));
        let mut hundred: Vec<Duration> = (1..=100).rev().map(ms).collect();
        assert_eq!(p99(&mut hundred), ms(99));
        let mut two_hundred: Vec<Duration> = (1..=200).map(ms).collect();
        assert_eq!(p99(&mut two_hundred), ms(198));
    }
}
