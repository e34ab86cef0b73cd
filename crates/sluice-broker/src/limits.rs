//! An account's limits, which the broker enforces itself: for a tenant, its JetStream storage,
//! streams and consumers, and its connections, derived from the tenant's quota.

use sluice_core::quota;

/// One limit: a number, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Limit {
    /// No limit (`-1` in the JWT).
    #[default]
    Unlimited,
    /// At most this many.
    AtMost(u64),
}

impl Limit {
    /// `None` is [`Limit::Unlimited`].
    pub fn from_option(value: Option<u64>) -> Self {
        value.map_or(Limit::Unlimited, Limit::AtMost)
    }

    /// The value in a JWT: `-1` for no limit; numbers above `i64::MAX` are `i64::MAX`.
    pub fn claim_value(self) -> i64 {
        match self {
            Limit::Unlimited => -1,
            Limit::AtMost(n) => i64::try_from(n).unwrap_or(i64::MAX),
        }
    }
}

/// JetStream limits of an account. An account with them has JetStream; one without has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JetStreamLimits {
    /// Bytes of file storage over all its streams. A limit of 0 leaves the account without
    /// JetStream (the server enables JetStream for an account when some storage is allowed).
    /// Memory storage is never allowed: Sluice's streams are file streams.
    pub storage_bytes: Limit,
    /// Streams.
    pub streams: Limit,
    /// Consumers over all its streams.
    pub consumers: Limit,
}

/// The limits of a NATS account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AccountLimits {
    /// Client connections at once.
    pub connections: Limit,
    /// JetStream, when the account has it.
    pub jetstream: Option<JetStreamLimits>,
}

/// The parts of a tenant's broker quota that the tenant quota ([`quota::Limits`]) does not
/// hold yet; `None` does not constrain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BrokerQuota {
    /// Bytes of stream storage.
    pub storage_bytes: Option<u64>,
    /// Durable consumers (one per route).
    pub consumers: Option<u64>,
    /// Client connections (workers, the API's and the operator's).
    pub connections: Option<u64>,
}

impl AccountLimits {
    /// A tenant's account: JetStream on, its streams limited by the quota's `max_streams`
    /// (dead-letter streams are streams of the tenant, so they count), storage, consumers
    /// and connections by `broker`.
    pub fn for_tenant(quota: &quota::Limits, broker: &BrokerQuota) -> Self {
        AccountLimits {
            connections: Limit::from_option(broker.connections),
            jetstream: Some(JetStreamLimits {
                storage_bytes: Limit::from_option(broker.storage_bytes),
                streams: Limit::from_option(quota.max_streams),
                consumers: Limit::from_option(broker.consumers),
            }),
        }
    }

    /// The system account's: unlimited connections, no JetStream (the server refuses
    /// JetStream in the system account).
    pub fn system() -> Self {
        AccountLimits {
            connections: Limit::Unlimited,
            jetstream: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_in_claims_use_minus_one_for_none() {
        assert_eq!(Limit::Unlimited.claim_value(), -1);
        assert_eq!(Limit::AtMost(0).claim_value(), 0);
        assert_eq!(Limit::AtMost(42).claim_value(), 42);
        assert_eq!(Limit::AtMost(u64::MAX).claim_value(), i64::MAX);
        assert_eq!(Limit::from_option(None), Limit::Unlimited);
        assert_eq!(Limit::from_option(Some(3)), Limit::AtMost(3));
    }

    #[test]
    fn a_tenant_quota_becomes_account_limits() {
        let quota = quota::Limits {
            max_streams: Some(5),
            max_pipelines: Some(2),
            ..Default::default()
        };
        let broker = BrokerQuota {
            storage_bytes: Some(1 << 30),
            consumers: Some(8),
            connections: None,
        };
        assert_eq!(
            AccountLimits::for_tenant(&quota, &broker),
            AccountLimits {
                connections: Limit::Unlimited,
                jetstream: Some(JetStreamLimits {
                    storage_bytes: Limit::AtMost(1 << 30),
                    streams: Limit::AtMost(5),
                    consumers: Limit::AtMost(8),
                }),
            }
        );
        let open = AccountLimits::for_tenant(&quota::Limits::default(), &BrokerQuota::default());
        assert_eq!(open.jetstream, Some(JetStreamLimits::default()));
        assert_eq!(AccountLimits::system().jetstream, None);
    }
}
