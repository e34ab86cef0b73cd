//! The operator's Prometheus metrics, in an injected registry.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Metrics of the controllers.
#[derive(Clone)]
pub struct Metrics {
    /// `sluice_operator_reconciles_total{controller}`.
    pub reconciles: IntCounterVec,
    /// `sluice_operator_reconcile_errors_total{controller,reason}`.
    pub errors: IntCounterVec,
    /// `sluice_operator_reconcile_duration_seconds{controller}`.
    pub duration: HistogramVec,
    /// `sluice_operator_reconciles_in_flight{controller}`: reconciles running now.
    pub in_flight: IntGaugeVec,
    /// `sluice_operator_pipelines{phase}`: pipelines per phase, as last reconciled.
    pub pipelines_by_phase: IntGaugeVec,
    /// `sluice_operator_api_writes_total{kind}`: writes to the Kubernetes API.
    pub writes: IntCounterVec,
    /// `sluice_operator_leader`: 1 while this replica leads.
    pub leader: IntGauge,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let m = Metrics {
            reconciles: IntCounterVec::new(
                Opts::new("sluice_operator_reconciles_total", "Reconciles started"),
                &["controller"],
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "sluice_operator_reconcile_errors_total",
                    "Reconciles that failed",
                ),
                &["controller", "reason"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "sluice_operator_reconcile_duration_seconds",
                    "Duration of reconciles",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ]),
                &["controller"],
            )?,
            in_flight: IntGaugeVec::new(
                Opts::new(
                    "sluice_operator_reconciles_in_flight",
                    "Reconciles running now",
                ),
                &["controller"],
            )?,
            pipelines_by_phase: IntGaugeVec::new(
                Opts::new("sluice_operator_pipelines", "Pipelines per phase"),
                &["phase"],
            )?,
            writes: IntCounterVec::new(
                Opts::new(
                    "sluice_operator_api_writes_total",
                    "Writes to the Kubernetes API",
                ),
                &["kind"],
            )?,
            leader: IntGauge::new("sluice_operator_leader", "1 while this replica leads")?,
        };
        registry.register(Box::new(m.reconciles.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        registry.register(Box::new(m.in_flight.clone()))?;
        registry.register(Box::new(m.pipelines_by_phase.clone()))?;
        registry.register(Box::new(m.writes.clone()))?;
        registry.register(Box::new(m.leader.clone()))?;
        Ok(m)
    }

    /// Starts timing a reconcile; the guard records its end.
    pub fn start(&self, controller: &'static str) -> ReconcileTimer {
        self.reconciles.with_label_values(&[controller]).inc();
        self.in_flight.with_label_values(&[controller]).inc();
        ReconcileTimer {
            metrics: self.clone(),
            controller,
            started: std::time::Instant::now(),
        }
    }
}

/// Records a reconcile's duration and in-flight count when dropped.
pub struct ReconcileTimer {
    metrics: Metrics,
    controller: &'static str,
    started: std::time::Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.metrics
            .duration
            .with_label_values(&[self.controller])
            .observe(self.started.elapsed().as_secs_f64());
        self.metrics
            .in_flight
            .with_label_values(&[self.controller])
            .dec();
    }
}
