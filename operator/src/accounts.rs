//! Tenant accounts at the broker (NATS operator mode), when the operator is given the broker's
//! operator key ([`BrokerAuth`]): every admitted Tenant gets its own NATS account, whose
//! JetStream limits come from the Tenant's quota, so the broker itself refuses growth past
//! it; deleting the Tenant deletes its streams and its account, which closes every connection
//! holding its credentials. `docs/broker.md` has the design.
//!
//! The account key is derived from the operator seed and the Tenant's uid
//! (`sluice_broker::derive`), so nothing per tenant is stored; a Tenant recreated under the same
//! name gets a new account. The operator provisions a tenant's streams as the account's
//! stream manager, a user whose key is derived the same way.

use crate::error::Error;
use crate::route_users::{Rotation, RouteKey, RouteUsers, WorkerTls};
use kube::ResourceExt;
use nkeys::KeyPair;
use sluice_broker::claims::{AccountClaims, ScopedSigningKey, UserClaims};
use sluice_broker::creds::creds_file;
use sluice_broker::limits::{AccountLimits, BrokerQuota};
use sluice_broker::{AccountAdmin, derive, jwt, keys, permissions};
use sluice_core::route::BrokerTls;
use sluice_crd::Tenant;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::OnceCell;

/// The most sinks a pipeline has, so the most durable consumers (one per route) it needs.
pub const CONSUMERS_PER_PIPELINE: u64 = sluice_crd::MAX_SINKS as u64;
/// Connections one worker replica opens at most: its source (shared with its dead letters)
/// and a NATS or JetStream sink.
pub const CONNECTIONS_PER_WORKER: u64 = 2;
/// Connections of the platform in each account: the operator's stream manager, and one ingest
/// connection per API replica, with room for a rolling update of both (the broker closes none
/// of them; a replica past the limit could not ingest for the tenant).
pub const PLATFORM_CONNECTIONS: u64 = 16;
/// How long the operator trusts that the broker still holds an account it pushed: past it, a
/// reconcile pushes the account again (a broker that lost its resolver data gets it back).
pub const REPUSH_AFTER: Duration = Duration::from_secs(600);
/// The largest account JWT the operator pushes: the broker takes a request of at most its
/// `max_payload` (1 MiB by default), and the JWT grows by about 800 bytes per route key.
pub const MAX_ACCOUNT_JWT_BYTES: usize = 900 * 1024;
/// The name of the stream manager user in every tenant account.
pub const STREAM_MANAGER: &str = "stream-manager";
/// The name of the ingest user in every tenant account.
pub const INGEST: &str = "ingest";

/// What the operator needs to run the broker's accounts: the operator key and the system
/// account administrator's creds (both from `sluice_broker::Bootstrap`).
#[derive(Clone)]
pub struct BrokerAuth {
    /// The operator's seed (`SO…`).
    pub operator_seed: String,
    /// The creds file text of the system account's administrator.
    pub admin_creds: String,
    /// The public key of the ingest key (`A…`), which every tenant account lists as a scoped
    /// signing key for that tenant's events; the API holds its seed. `None`: no ingest into
    /// tenant accounts.
    pub ingest_key: Option<String>,
    /// How often route credentials rotate.
    pub rotation: Rotation,
    /// The TLS files given to the workers with their credentials, when the broker uses TLS.
    pub worker_tls: Option<WorkerTls>,
}

impl BrokerAuth {
    /// The broker identities from the operator seed, the administrator's creds and the ingest
    /// key, with the default rotation and no TLS.
    pub fn new(operator_seed: String, admin_creds: String, ingest_key: Option<String>) -> Self {
        BrokerAuth {
            operator_seed,
            admin_creds,
            ingest_key,
            rotation: Rotation::default(),
            worker_tls: None,
        }
    }
}

impl std::fmt::Debug for BrokerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BrokerAuth { .. }")
    }
}

/// The broker quota of a tenant, from its spec (pure): its storage, one consumer per route of
/// its most pipelines, and the connections of its most workers plus the platform's.
pub fn broker_quota(t: &Tenant) -> BrokerQuota {
    let q = &t.spec.quota;
    let count = |v: Option<i32>| v.map(|v| v.max(0) as u64);
    BrokerQuota {
        storage_bytes: sluice_crd::validate::tenant_storage_bytes(&t.spec),
        consumers: count(q.max_pipelines).map(|p| p.saturating_mul(CONSUMERS_PER_PIPELINE)),
        connections: count(q.max_parallelism).map(|w| {
            w.saturating_mul(CONNECTIONS_PER_WORKER)
                .saturating_add(PLATFORM_CONNECTIONS)
        }),
    }
}

/// The account claims of a tenant (pure, but for the time they are issued at): its limits,
/// the ingest key as a signing key scoped to publishing the tenant's events, and the signing
/// keys of its routes, each scoped to its route ([`crate::route_users`]).
pub fn account_claims(
    operator: &KeyPair,
    account: &str,
    t: &Tenant,
    ingest_key: Option<&str>,
    routes: &[RouteKey],
    iat: u64,
) -> AccountClaims {
    let limits = AccountLimits::for_tenant(
        &sluice_crd::validate::tenant_limits(&t.spec),
        &broker_quota(t),
    );
    let mut claims =
        AccountClaims::account(&operator.public_key(), account, &t.name_any(), &limits, iat);
    if let Some(key) = ingest_key {
        claims.nats.signing_keys.push(ScopedSigningKey::new(
            key,
            INGEST,
            permissions::ingest_scope(&t.name_any()),
        ));
    }
    claims
        .nats
        .signing_keys
        .extend(routes.iter().map(|r| r.key.clone()));
    claims
}

/// What the operator last pushed for an account.
struct Pushed {
    /// The claims, whenever issued ([`fingerprint`]).
    print: String,
    /// When.
    at: std::time::Instant,
    /// The route signing keys it listed: public key → route identity.
    routes: BTreeMap<String, String>,
}

/// The broker's accounts, as the operator runs them.
pub struct Accounts {
    url: String,
    operator: KeyPair,
    admin_creds: String,
    ingest_key: Option<String>,
    admin: OnceCell<AccountAdmin>,
    rotation: Rotation,
    worker_tls: Option<WorkerTls>,
    tls: Option<BrokerTls>,
    /// What was last pushed for each account (by tenant uid), so a converged tenant sends
    /// nothing until [`REPUSH_AFTER`].
    pushed: Mutex<HashMap<String, Pushed>>,
    /// The stream manager's connection of each tenant account (by tenant uid).
    clients: tokio::sync::Mutex<HashMap<String, async_nats::Client>>,
}

/// What identifies a set of claims, whenever they are issued.
fn fingerprint(claims: &AccountClaims) -> String {
    let mut c = claims.clone();
    c.iat = 0;
    c.jti = String::new();
    serde_json::to_string(&c).unwrap_or_default()
}

impl Accounts {
    /// The accounts of the broker at `url`, reached with TLS as `tls` says.
    pub fn new(url: &str, auth: &BrokerAuth, tls: Option<&BrokerTls>) -> Result<Self, Error> {
        let operator = keys::from_seed(keys::Role::Operator, auth.operator_seed.trim())
            .map_err(|e| Error::Broker(format!("the broker operator seed: {e}")))?;
        Ok(Accounts {
            url: url.to_string(),
            operator,
            admin_creds: auth.admin_creds.clone(),
            ingest_key: auth.ingest_key.clone(),
            rotation: auth.rotation,
            worker_tls: auth.worker_tls.clone(),
            tls: tls.cloned(),
            admin: OnceCell::new(),
            pushed: Mutex::default(),
            clients: tokio::sync::Mutex::default(),
        })
    }

    /// The public key of the account of the tenant whose uid is `uid`.
    pub fn account_of(&self, uid: &str) -> String {
        derive::account_key(&self.operator, uid).public_key()
    }

    async fn admin(&self) -> Result<&AccountAdmin, Error> {
        self.admin
            .get_or_try_init(|| async {
                AccountAdmin::connect_tls(
                    &self.url,
                    &self.admin_creds,
                    self.operator.clone(),
                    self.tls.as_ref(),
                )
                .await
            })
            .await
            .map_err(|e| Error::Broker(e.to_string()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pushed>> {
        self.pushed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the route users of the tenant whose uid is `uid` are made from, at `now` (Unix
    /// seconds).
    pub fn route_users(&self, uid: &str, now: u64) -> RouteUsers {
        RouteUsers {
            operator: self.operator.clone(),
            account: derive::account_key(&self.operator, uid),
            rotation: self.rotation,
            now,
        }
    }

    /// The TLS files given to the workers, when the broker uses TLS.
    pub fn worker_tls(&self) -> Option<&WorkerTls> {
        self.worker_tls.as_ref()
    }

    /// Whether the account of the tenant whose uid is `uid`, as this operator last pushed it,
    /// lists exactly `keys` for the routes of the pipeline whose uid is `pipeline_uid`: then
    /// the pipeline's routes need no push.
    pub fn lists_routes(&self, uid: &str, pipeline_uid: &str, keys: &[RouteKey]) -> bool {
        let prefix = format!("{pipeline_uid}/");
        self.lock().get(uid).is_some_and(|p| {
            let listed: BTreeSet<&str> = p
                .routes
                .iter()
                .filter(|(_, route)| route.starts_with(&prefix))
                .map(|(key, _)| key.as_str())
                .collect();
            let wanted: BTreeSet<&str> = keys.iter().map(|k| k.key.key.as_str()).collect();
            listed == wanted && p.at.elapsed() < REPUSH_AFTER
        })
    }

    /// Creates the tenant's account, or brings it in line with the quota and with `routes`
    /// (the signing keys of its routes); sends nothing when this operator pushed these claims
    /// less than [`REPUSH_AFTER`] ago. Answers the account's public key.
    pub async fn ensure(&self, t: &Tenant, routes: &[RouteKey]) -> Result<String, Error> {
        let uid = t.uid().ok_or(Error::MissingField("metadata.uid"))?;
        let account = derive::account_key(&self.operator, &uid);
        let claims = account_claims(
            &self.operator,
            &account.public_key(),
            t,
            self.ingest_key.as_deref(),
            routes,
            jwt::now(),
        );
        let print = fingerprint(&claims);
        if self
            .lock()
            .get(&uid)
            .is_some_and(|p| p.print == print && p.at.elapsed() < REPUSH_AFTER)
        {
            return Ok(account.public_key());
        }
        let token =
            jwt::encode(claims, &self.operator).map_err(|e| Error::Broker(e.to_string()))?;
        if token.len() > MAX_ACCOUNT_JWT_BYTES {
            return Err(Error::Broker(format!(
                "the account of tenant {} would be {} bytes with its {} route keys, over the \
                 {MAX_ACCOUNT_JWT_BYTES} bytes the broker takes in one request: lower the \
                 tenant's maxPipelines quota or its pipelines' sinks",
                t.name_any(),
                token.len(),
                routes.len()
            )));
        }
        self.admin()
            .await?
            .upsert_account(&token)
            .await
            .map_err(|e| Error::Broker(e.to_string()))?;
        let routes = routes
            .iter()
            .map(|r| (r.key.key.clone(), r.route_id.clone()))
            .collect();
        self.lock().insert(
            uid,
            Pushed {
                print,
                at: std::time::Instant::now(),
                routes,
            },
        );
        Ok(account.public_key())
    }

    /// The creds of the stream manager of the tenant whose uid is `uid`: the JetStream API of
    /// its account, nothing else.
    pub fn stream_manager_creds(&self, uid: &str) -> Result<String, Error> {
        self.user_creds(uid, STREAM_MANAGER, permissions::stream_manager())
    }

    /// The creds of the ingest user of `tenant` (uid `uid`): publishing its streams' events
    /// subjects, nothing else.
    pub fn ingest_creds(&self, tenant: &str, uid: &str) -> Result<String, Error> {
        self.user_creds(uid, INGEST, permissions::ingest(tenant))
    }

    /// The creds of the platform user `purpose` in the account of the tenant whose uid is
    /// `uid`, with `permissions`; its key is derived, its JWT issued now.
    fn user_creds(
        &self,
        uid: &str,
        purpose: &str,
        permissions: sluice_broker::Permissions,
    ) -> Result<String, Error> {
        let account = derive::account_key(&self.operator, uid);
        let user = derive::user_key(&self.operator, &account.public_key(), purpose);
        let claims = UserClaims::user(
            &account.public_key(),
            &user.public_key(),
            purpose,
            permissions,
            jwt::now(),
        );
        let token = jwt::encode(claims, &account).map_err(|e| Error::Broker(e.to_string()))?;
        Ok(creds_file(&token, &keys::seed(&user)))
    }

    /// The stream manager's connection to the account of the tenant whose uid is `uid`, made
    /// on first use and kept.
    pub async fn client(&self, uid: &str) -> Result<async_nats::Client, String> {
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(uid) {
            return Ok(c.clone());
        }
        let creds = self.stream_manager_creds(uid).map_err(|e| e.to_string())?;
        let client = connect_tls(&self.url, &creds, self.tls.as_ref()).await?;
        clients.insert(uid.to_string(), client.clone());
        Ok(client)
    }

    /// Deletes the tenant's streams and then its account (closing every connection with its
    /// credentials). A tenant whose account does not exist is done at once.
    pub async fn remove(&self, t: &Tenant) -> Result<(), Error> {
        let Some(uid) = t.uid() else {
            return Ok(());
        };
        let account = self.account_of(&uid);
        self.purge_streams(&uid).await?;
        let message = self
            .admin()
            .await?
            .delete_accounts(std::slice::from_ref(&account))
            .await
            .map_err(|e| Error::Broker(e.to_string()))?;
        tracing::info!(tenant = %t.name_any(), %account, %message, "broker account deleted");
        self.lock().remove(&uid);
        if let Some(client) = self.clients.lock().await.remove(&uid) {
            drop(client);
        }
        Ok(())
    }

    /// Deletes every stream of the tenant's account, as its stream manager.
    async fn purge_streams(&self, uid: &str) -> Result<(), Error> {
        use futures::TryStreamExt;
        let client = match self.client(uid).await {
            Ok(c) => c,
            Err(e) if is_unknown_account(&e) => return Ok(()),
            Err(e) => return Err(Error::Broker(e)),
        };
        let js = async_nats::jetstream::new(client);
        let names: Vec<String> = js
            .stream_names()
            .try_collect()
            .await
            .map_err(|e| Error::Broker(e.to_string()))?;
        for name in names {
            js.delete_stream(&name)
                .await
                .map_err(|e| Error::Broker(format!("deleting stream {name}: {e}")))?;
        }
        Ok(())
    }
}

/// Whether a connection error says the account is unknown to the broker (never created, or
/// deleted already): its users are refused with an authorization violation.
pub fn is_unknown_account(connect_error: &str) -> bool {
    connect_error
        .to_lowercase()
        .contains("authorization violation")
}

/// A client of the broker at `url` with `creds` (a creds file's text).
pub async fn connect(url: &str, creds: &str) -> Result<async_nats::Client, String> {
    connect_tls(url, creds, None).await
}

/// [`connect`], with TLS as `tls` says.
pub async fn connect_tls(
    url: &str,
    creds: &str,
    tls: Option<&BrokerTls>,
) -> Result<async_nats::Client, String> {
    let options = async_nats::ConnectOptions::with_credentials(creds)
        .map_err(|e| format!("credentials: {e}"))?;
    sluice_broker::client::with_tls(options, tls)
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|e| format!("{url}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(quota: serde_json::Value) -> Tenant {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Tenant",
            "metadata": {"name": "acme", "uid": "u-1"},
            "spec": {"quota": quota}
        }))
        .unwrap()
    }

    #[test]
    fn the_broker_quota_follows_the_tenant_quota() {
        let q = broker_quota(&tenant(serde_json::json!({
            "maxPipelines": 3, "maxParallelism": 10, "storage": "1Gi"
        })));
        assert_eq!(q.storage_bytes, Some(1 << 30));
        assert_eq!(q.consumers, Some(3 * CONSUMERS_PER_PIPELINE));
        assert_eq!(
            q.connections,
            Some(10 * CONNECTIONS_PER_WORKER + PLATFORM_CONNECTIONS)
        );
        assert_eq!(
            broker_quota(&tenant(serde_json::json!({}))),
            BrokerQuota::default()
        );
    }

    #[test]
    fn claims_carry_the_limits_and_their_fingerprint_ignores_the_issue_time() {
        let op = keys::generate(keys::Role::Operator);
        let t = tenant(serde_json::json!({"maxStreams": 4, "storage": "64Ki"}));
        let a = account_claims(&op, "AXYZ", &t, None, &[], 1);
        assert_eq!(a.nats.limits.disk_storage, 65536);
        assert_eq!(a.nats.limits.streams, 4);
        assert_eq!(a.nats.limits.mem_storage, 0);
        let mut later = account_claims(&op, "AXYZ", &t, None, &[], 2);
        later.jti = "other".into();
        assert_eq!(fingerprint(&a), fingerprint(&later));
        let bigger = account_claims(
            &op,
            "AXYZ",
            &tenant(serde_json::json!({"maxStreams": 5})),
            None,
            &[],
            1,
        );
        assert_ne!(fingerprint(&a), fingerprint(&bigger));
        let ingest = keys::generate(keys::Role::Account).public_key();
        let with_ingest = account_claims(&op, "AXYZ", &t, Some(&ingest), &[], 1);
        let key = &with_ingest.nats.signing_keys[0];
        assert_eq!(key.key, ingest);
        assert_eq!(key.template.permissions, permissions::ingest_scope("acme"));
    }
}
