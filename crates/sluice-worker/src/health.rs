//! Readiness probes, shared between the parts of the worker and its `/readyz` endpoint.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// A check answering whether one part of the worker is ready.
#[derive(Clone)]
pub struct Probe(Arc<dyn Fn() -> bool + Send + Sync>);

impl Probe {
    /// A probe from a check.
    pub fn new(check: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Probe(Arc::new(check))
    }

    /// A probe that is always ready.
    pub fn always() -> Self {
        Probe::new(|| true)
    }

    /// A probe reading a flag.
    pub fn flag(flag: Arc<AtomicBool>) -> Self {
        Probe::new(move || flag.load(Ordering::Relaxed))
    }

    /// Whether the part is ready now.
    pub fn check(&self) -> bool {
        (self.0)()
    }
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Probe")
    }
}

/// The worker's readiness: connected to the broker, and the sink set up and not failing.
/// Cloned handles share their state.
#[derive(Debug, Clone, Default)]
pub struct Health {
    probes: Arc<OnceLock<(Probe, Probe)>>,
    sink_failing: Arc<AtomicBool>,
}

impl Health {
    /// Records the probes of the source and the sink, once both are set up.
    pub fn set_probes(&self, source: Probe, sink: Probe) {
        let _ = self.probes.set((source, sink));
    }

    /// Records whether the last delivery failed.
    pub fn set_sink_failing(&self, failing: bool) {
        self.sink_failing.store(failing, Ordering::Relaxed);
    }

    /// Whether the worker can move events now.
    pub fn is_ready(&self) -> bool {
        self.probes
            .get()
            .is_some_and(|(source, sink)| source.check() && sink.check())
            && !self.sink_failing.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_set_up_and_while_the_sink_works() {
        let h = Health::default();
        assert!(!h.is_ready());
        let shared = h.clone();
        let up = Arc::new(AtomicBool::new(true));
        shared.set_probes(Probe::flag(up.clone()), Probe::always());
        assert!(h.is_ready());
        h.set_sink_failing(true);
        assert!(!shared.is_ready());
        h.set_sink_failing(false);
        up.store(false, Ordering::Relaxed);
        assert!(!h.is_ready());
    }
}
