//! Per-tenant ingest rate limits: a token bucket with two dimensions, events and bytes.
//!
//! A request reserves its whole cost (every event it would write, and their bytes) before
//! anything is published: either both dimensions have the tokens and they are taken at once,
//! or nothing is taken and the caller is told how long to wait. Tokens of a request the broker
//! then fails are given back with [`RateLimiter::refund`].
//!
//! A request pays for everything it made the API read, not only for what was written: its
//! rejected events and every byte of its body are part of the reservation, and a request
//! refused while it was read (too many events, body too large) is still charged with
//! [`RateLimiter::charge`] for what was read until then.
//!
//! Each API replica has its own buckets; with `N` replicas behind a load balancer, the
//! configured `ingest_replicas = N` divides every rate and burst by `N`, so that the sum over
//! the replicas is the tenant's quota when the load is spread evenly. An exact global limit
//! would need a shared store (e.g. a counter in Redis or the database) on every request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sluice_crd::IngestQuota;

/// A tenant's ingest limits on one replica; `None` rates do not limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// Events per second.
    pub events_per_sec: Option<f64>,
    /// Bytes per second.
    pub bytes_per_sec: Option<f64>,
    /// Bucket size in events (the burst).
    pub event_capacity: f64,
    /// Bucket size in bytes.
    pub byte_capacity: f64,
}

impl Rates {
    /// No limit at all.
    pub const UNLIMITED: Rates = Rates {
        events_per_sec: None,
        bytes_per_sec: None,
        event_capacity: f64::INFINITY,
        byte_capacity: f64::INFINITY,
    };

    /// The limits of a tenant's `quota.ingest` on one of `replicas` API replicas.
    ///
    /// The events bucket holds `burst` events (one second of `eventsPerSecond` when `burst`
    /// is unset); the bytes bucket holds as many seconds of `bytesPerSecond` as the events
    /// bucket holds seconds of `eventsPerSecond` (at least one).
    pub fn from_quota(quota: Option<&IngestQuota>, replicas: u32) -> Rates {
        let Some(q) = quota else {
            return Rates::UNLIMITED;
        };
        let n = f64::from(replicas.max(1));
        let eps = q.events_per_second.map(|v| v.max(0) as f64 / n);
        let bps = q.bytes_per_second.map(|v| v.max(0) as f64 / n);
        let burst = q.burst.map(|v| v.max(0) as f64 / n);
        if eps.is_none() && bps.is_none() {
            return Rates::UNLIMITED;
        }
        let event_capacity = match (eps, burst) {
            (Some(_), Some(b)) => b.max(1.0),
            (Some(e), None) => e.max(1.0),
            (None, _) => f64::INFINITY,
        };
        let seconds = match (eps, burst) {
            (Some(e), Some(b)) if e > 0.0 => (b / e).max(1.0),
            _ => 1.0,
        };
        let byte_capacity = bps.map_or(f64::INFINITY, |b| (b * seconds).max(1.0));
        Rates {
            events_per_sec: eps,
            bytes_per_sec: bps,
            event_capacity,
            byte_capacity,
        }
    }

    /// Whether these rates limit nothing.
    pub fn is_unlimited(&self) -> bool {
        self.events_per_sec.is_none() && self.bytes_per_sec.is_none()
    }
}

/// Why a reservation was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The request is larger than the bucket itself: it can never fit, whatever the wait.
    LargerThanBurst {
        /// `events` or `bytes`.
        dimension: &'static str,
        /// What the request needs.
        requested: u64,
        /// The bucket's size.
        capacity: u64,
    },
    /// The bucket holds too few tokens now; they will be there after `wait`.
    Wait {
        /// How long until the request fits (if nothing else takes tokens meanwhile).
        wait: Duration,
        /// `events` or `bytes`: the dimension that is short.
        dimension: &'static str,
    },
}

#[derive(Debug)]
struct Bucket {
    rates: Rates,
    events: f64,
    bytes: f64,
    at: Instant,
}

impl Bucket {
    fn new(rates: Rates, now: Instant) -> Bucket {
        Bucket {
            rates,
            events: rates.event_capacity,
            bytes: rates.byte_capacity,
            at: now,
        }
    }

    fn refill(&mut self, rates: Rates, now: Instant) {
        if rates != self.rates {
            // The quota changed: keep the tokens, within the new bucket.
            self.rates = rates;
        }
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        if let Some(r) = rates.events_per_sec {
            self.events = (self.events + dt * r).min(rates.event_capacity);
        }
        if let Some(r) = rates.bytes_per_sec {
            self.bytes = (self.bytes + dt * r).min(rates.byte_capacity);
        }
    }

    fn reserve(&mut self, events: u64, bytes: u64) -> Result<(), Refusal> {
        let (e, b) = (events as f64, bytes as f64);
        let r = self.rates;
        if r.events_per_sec.is_some() && e > r.event_capacity {
            return Err(Refusal::LargerThanBurst {
                dimension: "events",
                requested: events,
                capacity: r.event_capacity as u64,
            });
        }
        if r.bytes_per_sec.is_some() && b > r.byte_capacity {
            return Err(Refusal::LargerThanBurst {
                dimension: "bytes",
                requested: bytes,
                capacity: r.byte_capacity as u64,
            });
        }
        let wait_for = |have: f64, need: f64, rate: Option<f64>| match rate {
            Some(rate) if need > have => {
                if rate > 0.0 {
                    (need - have) / rate
                } else {
                    f64::INFINITY
                }
            }
            _ => 0.0,
        };
        let we = wait_for(self.events, e, r.events_per_sec);
        let wb = wait_for(self.bytes, b, r.bytes_per_sec);
        if we > 0.0 || wb > 0.0 {
            let (secs, dimension) = if we >= wb {
                (we, "events")
            } else {
                (wb, "bytes")
            };
            // A zero rate never refills: say a day.
            let wait = Duration::try_from_secs_f64(secs).unwrap_or(Duration::from_secs(86_400));
            return Err(Refusal::Wait { wait, dimension });
        }
        if r.events_per_sec.is_some() {
            self.events -= e;
        }
        if r.bytes_per_sec.is_some() {
            self.bytes -= b;
        }
        Ok(())
    }

    /// Takes what it can of `events` and `bytes`, down to an empty bucket, never refusing.
    fn drain(&mut self, events: u64, bytes: u64) {
        if self.rates.events_per_sec.is_some() {
            self.events = (self.events - events as f64).max(0.0);
        }
        if self.rates.bytes_per_sec.is_some() {
            self.bytes = (self.bytes - bytes as f64).max(0.0);
        }
    }

    fn refund(&mut self, events: u64, bytes: u64) {
        if self.rates.events_per_sec.is_some() {
            self.events = (self.events + events as f64).min(self.rates.event_capacity);
        }
        if self.rates.bytes_per_sec.is_some() {
            self.bytes = (self.bytes + bytes as f64).min(self.rates.byte_capacity);
        }
    }
}

/// The token buckets of every tenant on this replica.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// An empty limiter (every bucket starts full).
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes `events` and `bytes` from the tenant's bucket, all or nothing.
    pub fn reserve(
        &self,
        tenant: &str,
        rates: Rates,
        events: u64,
        bytes: u64,
    ) -> Result<(), Refusal> {
        if rates.is_unlimited() {
            // No clock read, no lock.
            return Ok(());
        }
        self.reserve_at(tenant, rates, events, bytes, Instant::now())
    }

    /// [`RateLimiter::reserve`] at a given time (for tests).
    pub fn reserve_at(
        &self,
        tenant: &str,
        rates: Rates,
        events: u64,
        bytes: u64,
        now: Instant,
    ) -> Result<(), Refusal> {
        if rates.is_unlimited() {
            return Ok(());
        }
        self.with_bucket(tenant, rates, now, |b| b.reserve(events, bytes))
    }

    /// Takes `events` and `bytes` from the tenant's bucket as far as it holds them, never
    /// refusing: the cost of a request refused after it was read.
    pub fn charge(&self, tenant: &str, rates: Rates, events: u64, bytes: u64) {
        if rates.is_unlimited() {
            return;
        }
        self.with_bucket(tenant, rates, Instant::now(), |b| b.drain(events, bytes));
    }

    /// Runs `f` on the tenant's bucket, refilled up to `now` (created full if new).
    fn with_bucket<T>(
        &self,
        tenant: &str,
        rates: Rates,
        now: Instant,
        f: impl FnOnce(&mut Bucket) -> T,
    ) -> T {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = match buckets.get_mut(tenant) {
            Some(b) => {
                b.refill(rates, now);
                b
            }
            None => {
                if buckets.len() > 100_000 {
                    buckets.clear();
                }
                buckets
                    .entry(tenant.to_string())
                    .or_insert_with(|| Bucket::new(rates, now))
            }
        };
        f(bucket)
    }

    /// Gives back tokens of a reservation whose events were not written.
    pub fn refund(&self, tenant: &str, events: u64, bytes: u64) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = buckets.get_mut(tenant) {
            b.refund(events, bytes);
        }
    }

    /// Forgets a tenant's bucket (after the tenant's deletion).
    pub fn forget(&self, tenant: &str) {
        self.buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(tenant);
    }
}

/// `Retry-After` for a wait: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let ms = wait.as_millis();
    (ms.div_ceil(1000) as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(eps: Option<i64>, bps: Option<i64>, burst: Option<i64>) -> IngestQuota {
        IngestQuota {
            events_per_second: eps,
            bytes_per_second: bps,
            burst,
        }
    }

    #[test]
    fn rates_follow_the_quota_and_the_replica_count() {
        assert!(Rates::from_quota(None, 1).is_unlimited());
        assert!(Rates::from_quota(Some(&quota(None, None, Some(5))), 1).is_unlimited());
        let r = Rates::from_quota(Some(&quota(Some(100), Some(10_000), Some(300))), 1);
        assert_eq!(r.event_capacity, 300.0);
        // Three seconds of events, so three seconds of bytes.
        assert_eq!(r.byte_capacity, 30_000.0);
        let r = Rates::from_quota(Some(&quota(Some(100), None, None)), 4);
        assert_eq!(r.events_per_sec, Some(25.0));
        assert_eq!(r.event_capacity, 25.0);
        assert_eq!(r.byte_capacity, f64::INFINITY);
    }

    #[test]
    fn all_or_nothing_with_the_wait_until_it_fits() {
        let l = RateLimiter::new();
        let t0 = Instant::now();
        let r = Rates::from_quota(Some(&quota(Some(10), Some(1000), Some(10))), 1);
        assert_eq!(l.reserve_at("a", r, 6, 100, t0), Ok(()));
        // 4 events left: 6 more need 0.2 s.
        match l.reserve_at("a", r, 6, 100, t0) {
            Err(Refusal::Wait { wait, dimension }) => {
                assert_eq!(dimension, "events");
                assert!((wait.as_secs_f64() - 0.2).abs() < 1e-6, "{wait:?}");
                assert_eq!(retry_after_secs(wait), 1);
            }
            other => panic!("{other:?}"),
        }
        // The refusal took nothing: 4 still fit.
        assert_eq!(l.reserve_at("a", r, 4, 100, t0), Ok(()));
        // Bytes can be the short dimension.
        assert_eq!(l.reserve_at("c", r, 1, 900, t0), Ok(()));
        match l.reserve_at("c", r, 1, 200, t0) {
            Err(Refusal::Wait { dimension, .. }) => assert_eq!(dimension, "bytes"),
            other => panic!("{other:?}"),
        }
        // Other tenants have their own bucket.
        assert_eq!(l.reserve_at("b", r, 10, 1000, t0), Ok(()));
        // Refunds give tokens back, within the bucket.
        l.refund("b", 10, 1000);
        assert_eq!(l.reserve_at("b", r, 10, 1000, t0), Ok(()));
    }

    #[test]
    fn larger_than_the_burst_never_fits() {
        let l = RateLimiter::new();
        let r = Rates::from_quota(Some(&quota(Some(10), None, Some(20))), 1);
        assert_eq!(
            l.reserve("a", r, 21, 1),
            Err(Refusal::LargerThanBurst {
                dimension: "events",
                requested: 21,
                capacity: 20
            })
        );
        assert_eq!(l.reserve("a", Rates::UNLIMITED, u64::MAX, u64::MAX), Ok(()));
    }

    #[test]
    fn charges_empty_the_bucket_but_never_refuse() {
        let l = RateLimiter::new();
        let r = Rates::from_quota(Some(&quota(Some(1), None, Some(10))), 1);
        // Far more than the bucket holds: taken down to empty, not refused.
        l.charge("a", r, 5000, 1 << 20);
        assert!(matches!(
            l.reserve("a", r, 1, 0),
            Err(Refusal::Wait {
                dimension: "events",
                ..
            })
        ));
        // Unlimited tenants are not charged at all.
        l.charge("b", Rates::UNLIMITED, 5000, 0);
        assert_eq!(l.reserve("b", Rates::UNLIMITED, 1, 0), Ok(()));
    }

    #[test]
    fn refill_is_capped_by_the_bucket() {
        let l = RateLimiter::new();
        let t0 = Instant::now();
        let r = Rates::from_quota(Some(&quota(Some(10), None, Some(10))), 1);
        assert_eq!(l.reserve_at("a", r, 10, 0, t0), Ok(()));
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(l.reserve_at("a", r, 10, 0, later), Ok(()));
        assert!(l.reserve_at("a", r, 1, 0, later).is_err());
    }
}
