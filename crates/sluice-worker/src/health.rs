//! Readiness and liveness, shared between the parts of the worker and its `/readyz` and
//! `/healthz` endpoints.
//!
//! - **Readiness**: connected to the broker, the sink set up and not failing, and the
//!   dead-letter subject accepting publishes. When not ready, [`Health::readiness`] says why
//!   with a stable reason ([`NotReady`]).
//! - **Liveness**: every step of the delivery loop that waits on something outside the
//!   worker (a pull from the source, a sink attempt, a dead-letter publish, acknowledgements)
//!   is timed with a [`Step`] guard; a step running longer than the stall timeout means the
//!   loop is stuck. Waiting for events on an idle source, or between retries, is not a step.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

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

/// Why the worker is not ready; the reason is stable, the message is for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// Still connecting to the source or setting up the sink.
    Starting,
    /// The connection to the source broker is down.
    SourceDisconnected,
    /// The sink's connection is down.
    SinkUnavailable,
    /// The last delivery failed.
    SinkFailing,
    /// Dead events cannot be published (the dead-letter stream is missing or refuses them);
    /// they are given back to the source and retried with backoff while the others flow.
    DeadLetterUnavailable(String),
}

impl NotReady {
    /// The stable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            NotReady::Starting => "Starting",
            NotReady::SourceDisconnected => "SourceDisconnected",
            NotReady::SinkUnavailable => "SinkUnavailable",
            NotReady::SinkFailing => "SinkFailing",
            NotReady::DeadLetterUnavailable(_) => "DeadLetterUnavailable",
        }
    }

    /// What happened, in words.
    pub fn message(&self) -> String {
        match self {
            NotReady::Starting => "connecting to the source and setting up the sink".into(),
            NotReady::SourceDisconnected => "the connection to the source broker is down".into(),
            NotReady::SinkUnavailable => "the sink's connection is down".into(),
            NotReady::SinkFailing => "the last delivery to the sink failed".into(),
            NotReady::DeadLetterUnavailable(m) => {
                format!("dead events cannot be published: {m}")
            }
        }
    }
}

/// The stages of the delivery loop timed for liveness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Pulling from the source.
    Fetch,
    /// Delivering, dead-lettering and acknowledging.
    Deliver,
    /// Sending in-progress acknowledgements for held messages.
    Keepalive,
}

const STAGES: [Stage; 3] = [Stage::Fetch, Stage::Deliver, Stage::Keepalive];

/// The worker's readiness and liveness. Cloned handles share their state.
#[derive(Debug, Clone)]
pub struct Health {
    probes: Arc<OnceLock<(Probe, Probe)>>,
    sink_failing: Arc<AtomicBool>,
    dead_letter: Arc<Mutex<Option<String>>>,
    started: Instant,
    /// Per stage: milliseconds since `started` at which its current step began, plus one
    /// (0 = no step running).
    busy_since: Arc<[AtomicU64; 3]>,
    stall_timeout: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Health::new(Duration::from_secs(120))
    }
}

/// A step of the delivery loop in progress; it ends when dropped.
#[must_use = "the step ends when the guard is dropped"]
#[derive(Debug)]
pub struct Step {
    health: Health,
    stage: Stage,
}

impl Drop for Step {
    fn drop(&mut self) {
        self.health.busy_since[self.stage as usize].store(0, Ordering::Relaxed);
    }
}

impl Health {
    /// Health whose liveness fails when one step takes longer than `stall_timeout`.
    pub fn new(stall_timeout: Duration) -> Self {
        Health {
            probes: Arc::new(OnceLock::new()),
            sink_failing: Arc::new(AtomicBool::new(false)),
            dead_letter: Arc::new(Mutex::new(None)),
            started: Instant::now(),
            busy_since: Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]),
            stall_timeout,
        }
    }

    /// Records the probes of the source and the sink, once both are set up.
    pub fn set_probes(&self, source: Probe, sink: Probe) {
        let _ = self.probes.set((source, sink));
    }

    /// Records whether the last delivery failed.
    pub fn set_sink_failing(&self, failing: bool) {
        self.sink_failing.store(failing, Ordering::Relaxed);
    }

    /// Records whether the last dead-letter publish failed, and why.
    pub fn set_dead_letter_error(&self, error: Option<String>) {
        *self.dead_letter.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    /// Whether the worker can move events now, and if not, why.
    pub fn readiness(&self) -> Result<(), NotReady> {
        let Some((source, sink)) = self.probes.get() else {
            return Err(NotReady::Starting);
        };
        if !source.check() {
            return Err(NotReady::SourceDisconnected);
        }
        if !sink.check() {
            return Err(NotReady::SinkUnavailable);
        }
        if let Some(m) = self
            .dead_letter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Err(NotReady::DeadLetterUnavailable(m));
        }
        if self.sink_failing.load(Ordering::Relaxed) {
            return Err(NotReady::SinkFailing);
        }
        Ok(())
    }

    /// Whether the worker can move events now.
    pub fn is_ready(&self) -> bool {
        self.readiness().is_ok()
    }

    /// Starts a step of `stage`; it ends when the returned guard is dropped.
    pub fn step(&self, stage: Stage) -> Step {
        let since = self.started.elapsed().as_millis() as u64 + 1;
        self.busy_since[stage as usize].store(since, Ordering::Relaxed);
        Step {
            health: self.clone(),
            stage,
        }
    }

    /// The stage whose current step has run longer than the stall timeout, with how long.
    pub fn stalled(&self) -> Option<(Stage, Duration)> {
        let now = self.started.elapsed().as_millis() as u64 + 1;
        STAGES.into_iter().find_map(|stage| {
            let since = self.busy_since[stage as usize].load(Ordering::Relaxed);
            let running = Duration::from_millis(now.saturating_sub(since));
            (since != 0 && running > self.stall_timeout).then_some((stage, running))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_set_up_and_while_the_sink_works() {
        let h = Health::default();
        assert_eq!(h.readiness(), Err(NotReady::Starting));
        let shared = h.clone();
        let up = Arc::new(AtomicBool::new(true));
        shared.set_probes(Probe::flag(up.clone()), Probe::always());
        assert!(h.is_ready());
        h.set_sink_failing(true);
        assert_eq!(shared.readiness(), Err(NotReady::SinkFailing));
        h.set_sink_failing(false);
        h.set_dead_letter_error(Some("no stream".into()));
        let err = shared.readiness().unwrap_err();
        assert_eq!(err.reason(), "DeadLetterUnavailable");
        assert!(err.message().contains("no stream"));
        h.set_dead_letter_error(None);
        assert!(h.is_ready());
        up.store(false, Ordering::Relaxed);
        assert_eq!(h.readiness(), Err(NotReady::SourceDisconnected));
    }

    #[test]
    fn a_step_running_past_the_stall_timeout_fails_liveness() {
        let h = Health::new(Duration::from_millis(50));
        assert_eq!(h.stalled(), None);
        let quick = h.step(Stage::Fetch);
        drop(quick);
        std::thread::sleep(Duration::from_millis(80));
        // Idle (no step running) for longer than the timeout: alive.
        assert_eq!(h.stalled(), None);
        let _stuck = h.step(Stage::Deliver);
        assert_eq!(h.stalled(), None);
        std::thread::sleep(Duration::from_millis(80));
        let (stage, running) = h.stalled().expect("stalled");
        assert_eq!(stage, Stage::Deliver);
        assert!(running >= Duration::from_millis(50));
    }
}
