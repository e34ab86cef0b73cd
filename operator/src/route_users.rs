//! The broker users of routes, when the broker runs in operator mode (`docs/broker.md`).
//!
//! Each route has, per rotation epoch, a signing key that its tenant's account lists, scoped
//! to exactly what the route's worker does (`sluice_broker::permissions::route`), and a user
//! that key signs. The user's creds go into a Secret in the tenant namespace
//! ([`secret_name`]), which the route's pods mount. Keys and users are derived from the
//! operator seed, the account, the route's identity (its pipeline's uid and its sink) and the
//! epoch, and the user JWT is issued at the epoch's start, so the same inputs always give the
//! same creds: the operator stores nothing and reads no Secret.
//!
//! - **Rotation.** Epochs are [`Rotation::period`] long, staggered per route. When one begins,
//!   the account gets the new key, the Secret the new creds, and the pods roll (their template
//!   names the user, [`USER_ANNOTATION`]). The previous epoch's key stays in the account for
//!   [`Rotation::grace`], the time the rollout takes; then it leaves, and whatever still holds
//!   the old creds is disconnected by the broker.
//! - **Rotation on demand.** Changing the Pipeline's [`ROTATE_ANNOTATION`] (to any new
//!   value) changes the identity of its routes, so their keys and users: the account lists
//!   only the new keys at the next push, with no grace, and the old users are disconnected at
//!   once (for credentials that leaked). The pods roll to the new creds.
//! - **Revocation.** A route that goes (its pipeline deleted, its sink removed, its pipeline no
//!   longer admitted) loses its keys from the account at the next push, which closes its users'
//!   connections; a deleted tenant's account goes with all of it.
//!
//! Everything here is pure; [`crate::accounts`] pushes the keys, the pipeline controller writes
//! the Secrets.

use nkeys::KeyPair;
use sluice_broker::claims::{ScopedSigningKey, UserClaims};
use sluice_broker::{creds::creds_file, derive, jwt, keys, permissions};
use sluice_core::route::{BrokerTls, RouteConfig, SECRETS_MOUNT_DIR};
use std::time::Duration;

/// The Secret key holding the route user's creds file.
pub const CREDS_KEY: &str = "user.creds";
/// The Secret key holding the CA the broker's certificate is checked against.
pub const CA_KEY: &str = "ca.crt";
/// The Secret key holding the workers' client certificate.
pub const CERT_KEY: &str = "tls.crt";
/// The Secret key holding the workers' client certificate's key.
pub const KEY_KEY: &str = "tls.key";
/// The pod template annotation naming the route's current user (its public key): a new user
/// rolls the pods.
pub const USER_ANNOTATION: &str = "sluice.dev/broker-user";
/// The label (with value [`CREDENTIALS_KIND`]) on every broker credentials Secret: the only
/// Secrets the operator may write (its admission policy says so).
pub const CREDENTIALS_LABEL: &str = "sluice.dev/credentials";
/// The value of [`CREDENTIALS_LABEL`].
pub const CREDENTIALS_KIND: &str = "broker";

/// How often route credentials change, and how long the previous ones stay valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// The life of one epoch's credentials.
    pub period: Duration,
    /// How long the previous epoch's credentials stay valid after a rotation (the rollout
    /// to the new ones must finish within it).
    pub grace: Duration,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            period: Duration::from_secs(7 * 24 * 3600),
            grace: Duration::from_secs(15 * 60),
        }
    }
}

/// The epochs of one route at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epochs {
    /// The epoch whose creds the pods get.
    pub current: u64,
    /// When the current epoch began (Unix seconds): its user JWT's issue time.
    pub current_start: u64,
    /// The previous epoch, while its grace lasts.
    pub previous: Option<u64>,
    /// How long until the next change: the previous epoch's grace ends, or a new epoch
    /// begins.
    pub next_change: Duration,
}

impl Epochs {
    /// Every epoch whose key the account lists now: the current one, the previous one first.
    pub fn valid(&self) -> impl Iterator<Item = u64> + use<> {
        self.previous.into_iter().chain([self.current])
    }
}

/// The epochs of the route `route_id` at `now` (Unix seconds). Epoch boundaries are staggered
/// per route (an offset from a hash of its identity), so routes do not all roll at once.
pub fn epochs(rotation: &Rotation, route_id: &str, now: u64) -> Epochs {
    let period = rotation.period.as_secs().max(1);
    let grace = rotation.grace.as_secs().min(period);
    let offset = sluice_core::names::fnv1a(route_id.as_bytes()) % period;
    let shifted = now + offset;
    let current = shifted / period;
    let current_start = (current * period).saturating_sub(offset);
    let into = shifted % period;
    let (previous, next_change) = if into < grace && current > 0 {
        (Some(current - 1), grace - into)
    } else {
        (None, period - into)
    };
    Epochs {
        current,
        current_start,
        previous,
        next_change: Duration::from_secs(next_change.max(1)),
    }
}

/// The Pipeline annotation that rotates its routes' broker credentials on demand: any new
/// value gives every route of the pipeline new keys and users, and shuts the old ones out at
/// once, with no grace (`kubectl annotate pipeline NAME
/// sluice.dev/rotate-broker-credentials="$(date +%s)" --overwrite`).
pub const ROTATE_ANNOTATION: &str = "sluice.dev/rotate-broker-credentials";

/// The identity of a route for its keys: its pipeline's uid, its sink, and the pipeline's
/// [`ROTATE_ANNOTATION`] when it has one. A pipeline deleted and created again under the
/// same name gets new keys; so does one whose annotation changes. (Sink names are DNS
/// labels, so the `#` cannot be part of one.)
pub fn route_id(pipeline: &sluice_crd::Pipeline, sink: &str) -> String {
    let uid = pipeline.metadata.uid.as_deref().unwrap_or_default();
    let rotation = pipeline
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ROTATE_ANNOTATION));
    match rotation {
        Some(value) => format!("{uid}/{sink}#{value}"),
        None => format!("{uid}/{sink}"),
    }
}

/// The name of the Secret holding route `route`'s broker credentials.
pub fn secret_name(route: &str) -> String {
    format!("{route}-broker")
}

/// Where the pods of route `route` find the file `key` of its credentials Secret.
pub fn mounted_file(route: &str, key: &str) -> String {
    format!("{SECRETS_MOUNT_DIR}/{}/{key}", secret_name(route))
}

/// The TLS files the workers are given in their credentials Secret (PEM texts), when the
/// platform runs the broker with TLS.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct WorkerTls {
    /// The CA the broker's certificate is checked against (the system roots when `None`).
    pub ca: Option<String>,
    /// The client certificate and its key, when the broker asks for one.
    pub client: Option<(String, String)>,
}

impl std::fmt::Debug for WorkerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerTls")
            .field("ca", &self.ca.is_some())
            .field("client", &self.client.is_some())
            .finish()
    }
}

impl WorkerTls {
    /// The route configuration's TLS settings for route `route`: its Secret's files.
    pub fn config(&self, route: &str) -> BrokerTls {
        BrokerTls {
            ca_file: self.ca.as_ref().map(|_| mounted_file(route, CA_KEY)),
            cert_file: self.client.as_ref().map(|_| mounted_file(route, CERT_KEY)),
            key_file: self.client.as_ref().map(|_| mounted_file(route, KEY_KEY)),
        }
    }
}

/// What the route users of one tenant account are made from (pure: the time is given).
#[derive(Clone)]
pub struct RouteUsers {
    /// The broker's operator key.
    pub operator: KeyPair,
    /// The tenant's account key.
    pub account: KeyPair,
    /// The rotation policy.
    pub rotation: Rotation,
    /// Now (Unix seconds).
    pub now: u64,
}

/// One route's user for its current epoch.
#[derive(Clone, PartialEq, Eq)]
pub struct RouteUser {
    /// The user's public key (`U…`), named in the pod template.
    pub public_key: String,
    /// The creds file (user JWT and seed).
    pub creds: String,
    /// The route's epochs now.
    pub epochs: Epochs,
}

impl std::fmt::Debug for RouteUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteUser")
            .field("public_key", &self.public_key)
            .field("epochs", &self.epochs)
            .finish_non_exhaustive()
    }
}

/// A signing key of a route, as its account lists it, with the route it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteKey {
    /// The route's identity ([`route_id`]).
    pub route_id: String,
    /// The scoped signing key.
    pub key: ScopedSigningKey,
}

impl RouteUsers {
    /// The user of route `route_id` (called `route`) for its current epoch.
    pub fn user(&self, route_id: &str, route: &str) -> RouteUser {
        let epochs = epochs(&self.rotation, route_id, self.now);
        let account = self.account.public_key();
        let signing = derive::route_signing_key(&self.operator, &account, route_id, epochs.current);
        let user = derive::route_user_key(&self.operator, &account, route_id, epochs.current);
        let claims = UserClaims::scoped_user(
            &account,
            &signing.public_key(),
            &user.public_key(),
            route,
            epochs.current_start,
        );
        let token = jwt::encode(claims, &signing)
            .expect("user claims are plain data, which always serialise");
        RouteUser {
            public_key: user.public_key(),
            creds: creds_file(&token, &keys::seed(&user)),
            epochs,
        }
    }

    /// The signing keys the account lists for route `route_id` (called `route`), whose worker
    /// runs `config`: one per valid epoch, each scoped to the route's permissions.
    pub fn keys(&self, route_id: &str, route: &str, config: &RouteConfig) -> Vec<RouteKey> {
        let account = self.account.public_key();
        let scope = permissions::route(config);
        epochs(&self.rotation, route_id, self.now)
            .valid()
            .map(|epoch| RouteKey {
                route_id: route_id.to_string(),
                key: ScopedSigningKey::new(
                    &derive::route_signing_key(&self.operator, &account, route_id, epoch)
                        .public_key(),
                    route,
                    scope.clone(),
                ),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3600;

    fn rotation() -> Rotation {
        Rotation {
            period: Duration::from_secs(24 * HOUR),
            grace: Duration::from_secs(HOUR),
        }
    }

    #[test]
    fn an_epoch_lasts_a_period_and_the_previous_one_its_grace() {
        let r = rotation();
        let id = "uid/alerts";
        let start = epochs(&r, id, 10 * 24 * HOUR).current_start;
        let at = |t: u64| epochs(&r, id, t);
        let first = at(start);
        assert_eq!(first.current_start, start);
        assert!(first.previous.is_some(), "a fresh epoch keeps the previous");
        assert_eq!(first.next_change, Duration::from_secs(HOUR));
        let later = at(start + HOUR);
        assert_eq!(later.current, first.current);
        assert_eq!(later.previous, None, "the grace is over");
        assert_eq!(later.next_change, Duration::from_secs(23 * HOUR));
        let next = at(start + 24 * HOUR);
        assert_eq!(next.current, first.current + 1);
        assert_eq!(next.previous, Some(first.current));
        assert_eq!(
            next.valid().collect::<Vec<_>>(),
            [first.current, next.current]
        );
    }

    #[test]
    fn routes_rotate_at_different_times() {
        let r = rotation();
        let now = 100 * 24 * HOUR;
        let starts: std::collections::BTreeSet<u64> = (0..20)
            .map(|i| epochs(&r, &format!("uid/{i}"), now).current_start)
            .collect();
        assert!(starts.len() > 10, "{starts:?}");
    }

    fn users(now: u64) -> RouteUsers {
        let operator = keys::generate(keys::Role::Operator);
        let account = derive::account_key(&operator, "tenant-uid");
        RouteUsers {
            operator,
            account,
            rotation: rotation(),
            now,
        }
    }

    #[test]
    fn the_same_epoch_gives_the_same_creds_and_a_new_epoch_new_ones() {
        let u = users(50 * 24 * HOUR);
        let a = u.user("uid/alerts", "orders-alerts");
        assert_eq!(a, u.user("uid/alerts", "orders-alerts"));
        assert!(a.public_key.starts_with('U'));
        assert!(a.creds.contains("BEGIN NATS USER JWT"));
        let later = RouteUsers {
            now: u.now + 24 * HOUR,
            ..u.clone()
        };
        let b = later.user("uid/alerts", "orders-alerts");
        assert_ne!(a.public_key, b.public_key);
        assert_ne!(a.public_key, u.user("uid/other", "orders-other").public_key);
        let seed = a.creds.lines().find(|l| l.starts_with("SU")).unwrap();
        assert!(
            !format!("{a:?}").contains(seed),
            "no seed in the debug output"
        );
    }

    #[test]
    fn the_rotate_annotation_gives_a_route_new_keys_and_a_new_user() {
        let mut p: sluice_crd::Pipeline = serde_json::from_value(serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline",
            "metadata": {"name": "orders", "namespace": "sluice-acme", "uid": "uid-1"},
            "spec": {"source": {"stream": "orders"},
                     "sinks": [{"name": "alerts", "nats": {"subject": "alerts"}}]}
        }))
        .unwrap();
        let plain = route_id(&p, "alerts");
        assert_eq!(plain, "uid-1/alerts");
        p.metadata.annotations = Some(
            [(ROTATE_ANNOTATION.to_string(), "1".to_string())]
                .into_iter()
                .collect(),
        );
        let once = route_id(&p, "alerts");
        assert_ne!(once, plain);
        assert!(once.starts_with("uid-1/"), "still the pipeline's: {once}");
        let u = users(50 * 24 * HOUR);
        assert_ne!(
            u.user(&plain, "orders-alerts").public_key,
            u.user(&once, "orders-alerts").public_key
        );
    }

    #[test]
    fn tls_files_are_in_the_routes_secret() {
        let tls = WorkerTls {
            ca: Some("ca".into()),
            client: None,
        };
        let c = tls.config("orders-alerts");
        assert_eq!(
            c.ca_file.as_deref(),
            Some("/var/run/sluice/secrets/orders-alerts-broker/ca.crt")
        );
        assert_eq!(c.cert_file, None);
    }
}
