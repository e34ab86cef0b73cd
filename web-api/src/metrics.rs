//! Prometheus metrics of the API: request counts and latencies labelled by method, route
//! template (axum's `MatchedPath`, never the raw path, so tenant and object names never become
//! labels) and status.
//!
//! The ingest counters are the exception: they are labelled by tenant and stream, for
//! per-tenant dashboards and alerts, so their series grow with the number of streams (one per
//! stream and outcome).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

use crate::AppState;

/// The API's metrics, in an injected registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    /// Events ingested, by `tenant`, `stream` and `outcome` (`accepted`, `rejected`,
    /// `rate_limited`, `failed`).
    pub ingest_events: IntCounterVec,
    /// Bytes of accepted events, by `tenant` and `stream`.
    pub ingest_bytes: IntCounterVec,
}

impl Metrics {
    /// Registers the metrics in `registry`.
    pub fn new(registry: Registry) -> Result<Metrics, prometheus::Error> {
        let labels = ["method", "route", "status"];
        let requests = IntCounterVec::new(
            Opts::new("sluice_api_requests_total", "HTTP requests answered"),
            &labels,
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "sluice_api_request_duration_seconds",
                "Time to answer HTTP requests",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &labels,
        )?;
        let ingest_events = IntCounterVec::new(
            Opts::new(
                "sluice_api_ingest_events_total",
                "Events received by the ingest route, by outcome",
            ),
            &["tenant", "stream", "outcome"],
        )?;
        let ingest_bytes = IntCounterVec::new(
            Opts::new(
                "sluice_api_ingest_bytes_total",
                "Bytes of events accepted and acknowledged by the broker",
            ),
            &["tenant", "stream"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(ingest_events.clone()))?;
        registry.register(Box::new(ingest_bytes.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            duration,
            ingest_events,
            ingest_bytes,
        })
    }

    /// The text exposition of the registry.
    pub fn render(&self) -> String {
        let mut buf = vec![];
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The `method` label: the standard methods by name, anything else `other` (a client must not
/// be able to create series with made-up methods).
pub fn method_label(method: &http::Method) -> &'static str {
    use http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware recording each request.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method()).to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    let labels = [method.as_str(), route.as_str(), status.as_str()];
    state.metrics.requests.with_label_values(&labels).inc();
    state
        .metrics
        .duration
        .with_label_values(&labels)
        .observe(start.elapsed().as_secs_f64());
    res
}

/// `GET /metrics`.
pub async fn serve(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
