//! Exponential backoff between retries of a delivery that failed for a reason that may pass.

use sluice_core::route::Retry;
use std::time::Duration;

/// Doubling delays from `initial` up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff following the route's retry settings.
    pub fn new(retry: &Retry) -> Self {
        Self::from_durations(
            Duration::from_millis(retry.initial_backoff_ms),
            Duration::from_millis(retry.max_backoff_ms),
        )
    }

    /// A backoff from explicit bounds (`max` is raised to `initial` when lower).
    pub fn from_durations(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            next: initial,
        }
    }

    /// The delay before the next attempt; each call doubles the following one, up to the max.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Starts over from the initial delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_max_and_resets() {
        let mut b = Backoff::new(&Retry {
            initial_backoff_ms: 100,
            max_backoff_ms: 350,
            max_deliver: 10,
        });
        let got: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [100, 200, 350, 350, 350]);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 100);
    }

    #[test]
    fn max_below_initial_is_raised() {
        let mut b = Backoff::from_durations(Duration::from_millis(50), Duration::from_millis(10));
        assert_eq!(b.next_delay().as_millis(), 50);
        assert_eq!(b.next_delay().as_millis(), 50);
    }
}
