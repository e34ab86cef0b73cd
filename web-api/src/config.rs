//! The API's settings ([`Config`]) and every default, once: [`Config::default`] and the
//! `sluice-api serve` flags both take their defaults from the constants here.

use std::time::Duration;

/// Default of [`Config::issuer`].
pub const DEFAULT_ISSUER: &str = "sluice";
/// Default of [`Config::audience`].
pub const DEFAULT_AUDIENCE: &str = "sluice-api";
/// Default of [`Config::default_token_ttl`], in seconds (90 days).
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 90 * 24 * 3600;
/// Default of [`Config::max_token_ttl`], in seconds (366 days).
pub const DEFAULT_MAX_TOKEN_TTL_SECS: u64 = 366 * 24 * 3600;
/// Default of [`Config::bootstrap_token_ttl`], in seconds (a day).
pub const DEFAULT_BOOTSTRAP_TOKEN_TTL_SECS: u64 = 24 * 3600;
/// Default of [`Config::token_cache_ttl`], in seconds.
pub const DEFAULT_TOKEN_CACHE_SECS: u64 = 5;
/// Default of [`Config::max_body_bytes`].
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
/// Default of [`Config::ingest_max_body_bytes`].
pub const DEFAULT_INGEST_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Default of [`Config::ingest_max_events`].
pub const DEFAULT_INGEST_MAX_EVENTS: usize = 5000;
/// Default of [`Config::ingest_max_rejections`].
pub const DEFAULT_INGEST_MAX_REJECTIONS: usize = 100;
/// Default of [`Config::ingest_ack_window`].
pub const DEFAULT_INGEST_ACK_WINDOW: usize = 256;
/// Publish permits of the API's broker client: acknowledgements outstanding at once over all
/// ingest requests of one replica. [`Config::ingest_ack_window`] is at most this.
pub const INGEST_MAX_ACK_INFLIGHT: usize = 5000;
/// Default of [`Config::ingest_timeout`], in seconds.
pub const DEFAULT_INGEST_TIMEOUT_SECS: u64 = 10;
/// Default of [`Config::ingest_permit_timeout`], in milliseconds.
pub const DEFAULT_INGEST_PERMIT_TIMEOUT_MILLIS: u64 = 1000;

/// Default of [`Config::ingest_replicas`].
pub const DEFAULT_INGEST_REPLICAS: u32 = 1;
/// Default of [`Config::usage_flush_interval`], in seconds.
pub const DEFAULT_USAGE_FLUSH_SECS: u64 = 5;
/// Default of [`Config::request_timeout`], in seconds.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 30;
/// Default of [`Config::header_read_timeout`], in seconds.
pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 10;
/// Default of [`Config::quota_lock_wait`], in seconds.
pub const DEFAULT_QUOTA_LOCK_WAIT_SECS: u64 = 5;
/// Default of [`Config::readiness_grace`], in seconds.
pub const DEFAULT_READINESS_GRACE_SECS: u64 = 30;
/// The default of [`Config::reserved_tenant_names`].
pub const DEFAULT_RESERVED_TENANT_NAMES: [&str; 5] =
    ["system", "kube", "default", "admin", "platform"];

/// Default address of the API listener.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
/// Default address of the metrics listener.
pub const DEFAULT_METRICS_LISTEN: &str = "0.0.0.0:9090";
/// Default number of store connections.
pub const DEFAULT_DATABASE_MAX_CONNECTIONS: u32 = 16;
/// Default number of store connections reserved for authenticating callers.
pub const DEFAULT_AUTH_DATABASE_MAX_CONNECTIONS: u32 = 4;
/// Default `aud` OIDC tokens must carry.
pub const DEFAULT_OIDC_AUDIENCE: &str = DEFAULT_AUDIENCE;
/// Default claim holding OIDC role values.
pub const DEFAULT_OIDC_ROLES_CLAIM: &str = "groups";
/// Default OIDC claim value granting platform-admin.
pub const DEFAULT_OIDC_ADMIN_VALUE: &str = "sluice-platform-admins";
/// Default prefix of OIDC claim values `<prefix><tenant>:<role>` granting tenant roles.
pub const DEFAULT_OIDC_TENANT_PREFIX: &str = "sluice:";

/// Settings of the API.
#[derive(Debug, Clone)]
pub struct Config {
    /// `iss` of the API tokens Sluice issues.
    pub issuer: String,
    /// `aud` of the API tokens Sluice issues.
    pub audience: String,
    /// Lifetime of new API tokens when the request does not say.
    pub default_token_ttl: Duration,
    /// Longest lifetime a new API token may have.
    pub max_token_ttl: Duration,
    /// Lifetime of the bootstrap admin token.
    pub bootstrap_token_ttl: Duration,
    /// How long a verified API token (and a tenant registry row) is cached; revocation and
    /// tenant deletion take effect on other replicas within this time.
    pub token_cache_ttl: Duration,
    /// Largest request body, in bytes (except ingest).
    pub max_body_bytes: usize,
    /// Largest ingest request body, in bytes.
    pub ingest_max_body_bytes: usize,
    /// Most events in one ingest request; more answer 413 `too-many-events` and nothing of
    /// the request is written.
    pub ingest_max_events: usize,
    /// Most rejection records in one ingest answer; `rejectedCount` counts them all.
    pub ingest_max_rejections: usize,
    /// Events published before their acknowledgements are awaited together; also the most
    /// broker publish permits one request holds at once.
    pub ingest_ack_window: usize,
    /// Deadline of one ingest request, from its headers to its answer; past it, 503
    /// `ingest-unavailable` with `Retry-After`.
    pub ingest_timeout: Duration,
    /// Longest wait of one publish for a broker publish permit (the broker client bounds the
    /// acknowledgements outstanding over all requests); past it, 503 `ingest-unavailable`.
    pub ingest_permit_timeout: Duration,
    /// Number of API replicas sharing the ingest load: each replica enforces `1/N` of every
    /// tenant's ingest rates and bursts.
    pub ingest_replicas: u32,
    /// How often ingest counts are written to the store.
    pub usage_flush_interval: Duration,
    /// Tenant names refused at creation (besides the one whose namespace is the install
    /// namespace).
    pub reserved_tenant_names: Vec<String>,
    /// The namespace Sluice itself is installed in; the tenant whose namespace `sluice-<t>`
    /// would be this one is refused.
    pub install_namespace: Option<String>,
    /// Longest time a request may take before it answers 503 `busy`.
    pub request_timeout: Duration,
    /// Longest time a client may take to send a request's head; the connection is closed after.
    pub header_read_timeout: Duration,
    /// Longest wait for a tenant's quota lease (held by another write of the same tenant)
    /// before answering 503 `busy` with `Retry-After`.
    pub quota_lock_wait: Duration,
    /// How long `/readyz` stays ready while one dependency (the store or the Kubernetes API)
    /// fails to answer; it turns unready at once when both fail.
    pub readiness_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            issuer: DEFAULT_ISSUER.into(),
            audience: DEFAULT_AUDIENCE.into(),
            default_token_ttl: Duration::from_secs(DEFAULT_TOKEN_TTL_SECS),
            max_token_ttl: Duration::from_secs(DEFAULT_MAX_TOKEN_TTL_SECS),
            bootstrap_token_ttl: Duration::from_secs(DEFAULT_BOOTSTRAP_TOKEN_TTL_SECS),
            token_cache_ttl: Duration::from_secs(DEFAULT_TOKEN_CACHE_SECS),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            ingest_max_body_bytes: DEFAULT_INGEST_MAX_BODY_BYTES,
            ingest_max_events: DEFAULT_INGEST_MAX_EVENTS,
            ingest_max_rejections: DEFAULT_INGEST_MAX_REJECTIONS,
            ingest_ack_window: DEFAULT_INGEST_ACK_WINDOW,
            ingest_timeout: Duration::from_secs(DEFAULT_INGEST_TIMEOUT_SECS),
            ingest_permit_timeout: Duration::from_millis(DEFAULT_INGEST_PERMIT_TIMEOUT_MILLIS),
            ingest_replicas: DEFAULT_INGEST_REPLICAS,
            usage_flush_interval: Duration::from_secs(DEFAULT_USAGE_FLUSH_SECS),
            reserved_tenant_names: DEFAULT_RESERVED_TENANT_NAMES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            install_namespace: None,
            request_timeout: Duration::from_secs(DEFAULT_REQUEST_TIMEOUT_SECS),
            header_read_timeout: Duration::from_secs(DEFAULT_HEADER_READ_TIMEOUT_SECS),
            quota_lock_wait: Duration::from_secs(DEFAULT_QUOTA_LOCK_WAIT_SECS),
            readiness_grace: Duration::from_secs(DEFAULT_READINESS_GRACE_SECS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_come_from_the_constants() {
        let c = Config::default();
        assert_eq!(c.issuer, "sluice");
        assert_eq!(c.audience, "sluice-api");
        assert_eq!(c.default_token_ttl, Duration::from_secs(90 * 24 * 3600));
        assert_eq!(c.max_token_ttl, Duration::from_secs(366 * 24 * 3600));
        assert_eq!(c.bootstrap_token_ttl, Duration::from_secs(86_400));
        assert_eq!(c.token_cache_ttl, Duration::from_secs(5));
        assert_eq!(c.max_body_bytes, 256 * 1024);
        assert_eq!(c.ingest_max_body_bytes, 8 * 1024 * 1024);
        assert_eq!(c.ingest_max_events, 5000);
        assert_eq!(c.ingest_max_rejections, 100);
        assert_eq!(c.ingest_ack_window, 256);
        assert!(c.ingest_ack_window <= INGEST_MAX_ACK_INFLIGHT);
        assert_eq!(c.ingest_timeout, Duration::from_secs(10));
        assert_eq!(c.ingest_permit_timeout, Duration::from_millis(1000));
        assert_eq!(c.ingest_replicas, 1);
        assert_eq!(c.usage_flush_interval, Duration::from_secs(5));
        assert_eq!(
            c.reserved_tenant_names,
            ["system", "kube", "default", "admin", "platform"]
        );
        assert_eq!(c.install_namespace, None);
        assert_eq!(c.request_timeout, Duration::from_secs(30));
        assert_eq!(c.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.quota_lock_wait, Duration::from_secs(5));
        assert_eq!(c.readiness_grace, Duration::from_secs(30));
    }

    #[test]
    fn default_listen_addresses_parse() {
        assert!(DEFAULT_LISTEN.parse::<std::net::SocketAddr>().is_ok());
        assert!(
            DEFAULT_METRICS_LISTEN
                .parse::<std::net::SocketAddr>()
                .is_ok()
        );
    }
}
