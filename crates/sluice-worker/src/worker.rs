//! A whole worker: metrics and health endpoints, the source, the sink, the dead-letter
//! publisher and the delivery loop of one route, from its configuration to a clean stop.

use crate::backoff::Backoff;
use crate::batch::Limits;
use crate::dead_letter::DeadLetters;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::pipeline::{self, Parts, PipelineError};
use crate::sink::{AnySink, Sink};
use crate::source::jetstream::{JetStreamSource, connect};
use crate::source::kafka::KafkaSource;
use crate::source::{LagProbe, Source};
use crate::timing::Timing;
use crate::transform::{BuildError, Transform};
use sluice_core::route::{RouteConfig, Source as SourceConfig};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

/// How often the consumer lag is read.
const LAG_INTERVAL: Duration = Duration::from_secs(2);

/// Why a worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The configuration's expressions do not compile.
    #[error("the route configuration is not valid: {0}")]
    Config(#[from] BuildError),
    /// The metrics address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The delivery loop stopped before draining.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

/// How to run a worker, beyond its configuration.
#[derive(Debug, Default)]
pub struct RunOptions {
    /// Address of the metrics and health endpoints; `0.0.0.0:<metricsPort>` when unset.
    pub metrics_addr: Option<SocketAddr>,
    /// Told the bound address of the endpoints once they listen.
    pub listening: Option<oneshot::Sender<SocketAddr>>,
}

/// Retries `attempt` with backoff until it succeeds, or gives up (`None`) on shutdown.
async fn until_ok<T, E: std::fmt::Display, F: Future<Output = Result<T, E>>>(
    what: &str,
    shutdown: &CancellationToken,
    mut attempt: impl FnMut() -> F,
) -> Option<T> {
    let mut backoff = Backoff::from_durations(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        match attempt().await {
            Ok(v) => return Some(v),
            Err(e) => {
                let delay = backoff.next_delay();
                warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "{what} failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return None,
                }
            }
        }
    }
}

/// Runs the route until `shutdown` is cancelled, then drains: what was fetched is
/// delivered and acknowledged before this returns. Cancelling `abort` as well stops at once
/// (unacknowledged messages are redelivered). The configuration must be valid
/// ([`crate::config::load`] validates it).
pub async fn run(
    config: RouteConfig,
    options: RunOptions,
    shutdown: CancellationToken,
    abort: CancellationToken,
) -> Result<(), WorkerError> {
    let span = info_span!(
        "worker",
        tenant = %config.tenant,
        pipeline = %config.pipeline,
        route = %config.route
    );
    run_route(config, options, shutdown, abort)
        .instrument(span)
        .await
}

async fn run_route(
    config: RouteConfig,
    options: RunOptions,
    shutdown: CancellationToken,
    abort: CancellationToken,
) -> Result<(), WorkerError> {
    let transform = Arc::new(Transform::new(&config)?);
    let metrics = Metrics::new(&config.tenant, &config.pipeline, &config.route);
    let timing = Timing::for_route(&config);
    let health = Health::new(timing.stall_timeout);

    let addr = options
        .metrics_addr
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], config.metrics_port)));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| WorkerError::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| WorkerError::Listen { addr, source })?;
    eprintln!("metrics listening on {bound}");
    if let Some(tx) = options.listening {
        let _ = tx.send(bound);
    }
    let stop_http = CancellationToken::new();
    let http = {
        let app = crate::http::app(metrics.clone(), health.clone());
        let stop = stop_http.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                warn!(error = %e, "metrics endpoint failed");
            }
        })
    };

    let result = move_events(config, transform, metrics, health, timing, &shutdown, abort).await;
    stop_http.cancel();
    let _ = http.await;
    result
}

async fn move_events(
    config: RouteConfig,
    transform: Arc<Transform>,
    metrics: Metrics,
    health: Health,
    timing: Timing,
    shutdown: &CancellationToken,
    abort: CancellationToken,
) -> Result<(), WorkerError> {
    let name = format!(
        "sluice-worker/{}/{}/{}",
        config.tenant, config.pipeline, config.route
    );
    // NATS connections, by URL: the source's is shared with the dead-letter publisher.
    let mut nats: Vec<(String, async_nats::Client)> = vec![];
    if let SourceConfig::Jetstream { url, .. } = &config.source {
        let Some(client) = until_ok("connecting to the source", shutdown, || {
            connect(url, &config.broker, &name)
        })
        .await
        else {
            return Ok(());
        };
        nats.push((url.clone(), client));
    }
    let Some(sink) = until_ok("setting up the sink", shutdown, || {
        AnySink::connect(&config.sink, &config.sink_policy, &config.broker, &name)
    })
    .await
    else {
        return Ok(());
    };
    let dead_letters = match &config.dead_letter.kafka {
        Some(to) => {
            let made = until_ok("setting up the dead-letter producer", shutdown, || async {
                DeadLetters::kafka(to, &name, &config.tenant, &config.pipeline, &config.route)
            })
            .await;
            let Some(d) = made else { return Ok(()) };
            d
        }
        None => {
            let url = &config.dead_letter.url;
            let client = match nats.iter().find(|(u, _)| u == url) {
                Some((_, c)) => c.clone(),
                None => {
                    let Some(c) =
                        until_ok("connecting to the dead-letter broker", shutdown, || {
                            connect(url, &config.broker, &name)
                        })
                        .await
                    else {
                        return Ok(());
                    };
                    nats.push((url.clone(), c.clone()));
                    c
                }
            };
            DeadLetters::new(
                client,
                &config.dead_letter.subject,
                &config.tenant,
                &config.pipeline,
                &config.route,
            )
        }
    };
    let limits = Limits::for_route(&config);
    let rest = Rest {
        sink,
        transform,
        dead_letters,
        metrics,
        health,
        limits,
        retry: config.retry,
        timing,
    };
    let result = match &config.source {
        SourceConfig::Jetstream { .. } => {
            let client = nats[0].1.clone();
            let Some(source) = until_ok("binding the durable consumer", shutdown, || {
                JetStreamSource::bind(
                    client.clone(),
                    &config.source,
                    limits.fetch_size,
                    timing.ack_wait,
                )
            })
            .await
            else {
                return Ok(());
            };
            deliver(rest.with(source), shutdown, abort).await
        }
        SourceConfig::Kafka { .. } => {
            let Some(source) = until_ok("joining the consumer group", shutdown, || async {
                KafkaSource::join(&config.source, &name)
            })
            .await
            else {
                return Ok(());
            };
            deliver(rest.with(source), shutdown, abort).await
        }
    };
    for (_, c) in &nats {
        if let Err(e) = c.flush().await {
            warn!(error = %e, "flushing the broker connection failed");
        }
    }
    info!("stopped");
    result
}

/// The parts of the delivery loop but its source.
struct Rest {
    sink: AnySink,
    transform: Arc<Transform>,
    dead_letters: DeadLetters,
    metrics: Metrics,
    health: Health,
    limits: Limits,
    retry: sluice_core::route::Retry,
    timing: Timing,
}

impl Rest {
    fn with<Src: Source>(self, source: Src) -> Parts<Src, AnySink> {
        Parts {
            source,
            sink: self.sink,
            transform: self.transform,
            dead_letters: self.dead_letters,
            metrics: self.metrics,
            health: self.health,
            limits: self.limits,
            retry: self.retry,
            timing: self.timing,
        }
    }
}

/// Runs the delivery loop over `parts` with the lag read every [`LAG_INTERVAL`].
async fn deliver<Src: Source>(
    parts: Parts<Src, AnySink>,
    shutdown: &CancellationToken,
    abort: CancellationToken,
) -> Result<(), WorkerError> {
    let source_probe = parts.source.connection_probe();
    parts
        .health
        .set_probes(source_probe, parts.sink.readiness());
    info!(
        fetch_size = parts.limits.fetch_size,
        max_events = parts.limits.max_events,
        max_in_flight = parts.limits.max_in_flight(),
        ack_wait_ms = parts.timing.ack_wait.as_millis() as u64,
        max_deliver = parts.timing.max_deliver,
        "moving events"
    );
    let lag_task = {
        let mut probe = parts.source.lag_probe();
        let gauge = parts.metrics.consumer_lag.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                match probe.lag().await {
                    Ok(n) => gauge.set(i64::try_from(n).unwrap_or(i64::MAX)),
                    Err(e) => warn!(error = %e, "reading the consumer lag failed"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(LAG_INTERVAL) => {}
                    _ = stop.cancelled() => break,
                }
            }
        })
    };
    let result = pipeline::run(parts, shutdown.clone(), abort).await;
    lag_task.abort();
    result.map_err(WorkerError::from)
}
