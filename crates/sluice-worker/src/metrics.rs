//! Prometheus metrics of the worker. One worker serves one route, so tenant, pipeline and
//! route are constant labels of every series.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use std::collections::HashMap;

/// The worker's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Events received from the source.
    pub events_in: IntCounter,
    /// Events the filter dropped.
    pub events_filtered: IntCounter,
    /// Events the sink accepted.
    pub events_out: IntCounter,
    /// Events sent to the dead-letter subject, by stage.
    pub events_dead: IntCounterVec,
    /// Failed deliveries (each attempt), by kind (`transient`, `rejected`, `dead_letter`).
    pub sink_errors: IntCounterVec,
    /// Seconds from handing a batch to the sink until it accepted it (retries included).
    pub batch_seconds: Histogram,
    /// Events per delivered batch.
    pub batch_events: Histogram,
    /// Messages of the source not yet delivered to the route's consumer.
    pub consumer_lag: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Metrics of a route, in a fresh registry.
    pub fn new(tenant: &str, pipeline: &str, route: &str) -> Self {
        let labels: HashMap<String, String> =
            [("tenant", tenant), ("pipeline", pipeline), ("route", route)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        let registry = Registry::new_custom(Some("sluice_worker".into()), Some(labels))
            .expect("valid registry");
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let counter_vec = |name: &str, help: &str, label: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let consumer_lag = IntGauge::new(
            "consumer_lag",
            "Messages of the source not yet delivered to the route's consumer",
        )
        .expect("valid metric");
        registry
            .register(Box::new(consumer_lag.clone()))
            .expect("unique metric");
        Metrics {
            events_in: counter("events_in_total", "Events received from the source"),
            events_filtered: counter("events_filtered_total", "Events the filter dropped"),
            events_out: counter("events_out_total", "Events the sink accepted"),
            events_dead: counter_vec(
                "events_dead_lettered_total",
                "Events sent to the dead-letter subject",
                "stage",
            ),
            sink_errors: counter_vec("sink_errors_total", "Failed delivery attempts", "kind"),
            batch_seconds: histogram(
                "batch_duration_seconds",
                "Seconds from handing a batch to the sink until it accepted it",
                prometheus::exponential_buckets(0.0005, 2.5, 14).expect("valid buckets"),
            ),
            batch_events: histogram(
                "batch_events",
                "Events per delivered batch",
                prometheus::exponential_buckets(1.0, 2.0, 14).expect("valid buckets"),
            ),
            consumer_lag,
            registry,
        }
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = vec![];
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("text format is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_carry_the_route() {
        let m = Metrics::new("acme", "orders", "audit");
        m.events_in.inc_by(3);
        m.events_dead.with_label_values(&["decode"]).inc();
        let text = m.render();
        let line = text
            .lines()
            .find(|l| l.starts_with("sluice_worker_events_in_total{"))
            .expect("series present");
        for label in [
            r#"tenant="acme""#,
            r#"pipeline="orders""#,
            r#"route="audit""#,
        ] {
            assert!(line.contains(label), "{line}");
        }
        assert!(line.ends_with(" 3"), "{line}");
        assert!(text.contains(r#"stage="decode""#), "{text}");
    }
}
