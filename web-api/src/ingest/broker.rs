//! Where ingest publishes. Either one JetStream connection for every tenant (a broker without
//! tenant accounts), or, when the broker runs in operator mode, one connection per tenant
//! account: the API holds the ingest key, which every tenant account lists as a signing key
//! scoped to publishing that tenant's events, and connects to a tenant's account as a user the
//! key signs. Whatever the API does, such a connection can publish only the events of the
//! tenant whose account it is in (`docs/broker.md`).

use crate::problem::ApiError;
use nkeys::KeyPair;
use sluice_broker::claims::UserClaims;
use sluice_broker::{creds, jwt, keys};
use std::collections::HashMap;
use std::time::Duration;

use crate::config::INGEST_MAX_ACK_INFLIGHT;

/// How long connecting to a tenant's account may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where ingest publishes.
#[derive(Debug)]
pub enum IngestBroker {
    /// One connection for every tenant.
    Shared(Box<async_nats::jetstream::Context>),
    /// A connection per tenant account.
    TenantAccounts(Box<TenantAccounts>),
}

/// The connections to tenants' accounts, made on first use and kept.
pub struct TenantAccounts {
    url: String,
    ingest_key: KeyPair,
    tls: Option<sluice_core::route::BrokerTls>,
    contexts: tokio::sync::Mutex<HashMap<String, Connection>>,
}

/// A tenant account's connection.
struct Connection {
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
}

impl Connection {
    fn is_up(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

impl std::fmt::Debug for TenantAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantAccounts")
            .field("url", &self.url)
            .field("ingest_key", &self.ingest_key.public_key())
            .finish_non_exhaustive()
    }
}

/// Why the ingest key cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("the broker ingest seed: {0}")]
pub struct IngestKeyError(String);

impl TenantAccounts {
    /// Connections to the tenants' accounts of the broker at `url`, as users `ingest_seed`
    /// (an account seed, `SA…`) signs.
    pub fn new(url: &str, ingest_seed: &str) -> Result<Self, IngestKeyError> {
        let ingest_key = keys::from_seed(keys::Role::Account, ingest_seed.trim())
            .map_err(|e| IngestKeyError(e.to_string()))?;
        Ok(TenantAccounts {
            url: url.to_string(),
            ingest_key,
            tls: None,
            contexts: Default::default(),
        })
    }

    /// The same connections, made with TLS as `tls` says.
    pub fn with_tls(mut self, tls: Option<sluice_core::route::BrokerTls>) -> Self {
        self.tls = tls;
        self
    }

    /// The creds of a new user of `account`, signed by the ingest key.
    fn user_creds(&self, account: &str) -> Result<String, ApiError> {
        let user = keys::generate(keys::Role::User);
        let claims = UserClaims::scoped_user(
            account,
            &self.ingest_key.public_key(),
            &user.public_key(),
            "sluice-api-ingest",
            jwt::now(),
        );
        let token = jwt::encode(claims, &self.ingest_key)
            .map_err(|e| ApiError::Internal(format!("signing an ingest user: {e}")))?;
        Ok(creds::creds_file(&token, &keys::seed(&user)))
    }

    /// The connection to `account`, made on first use and kept while it is up. A connection
    /// that is down (the broker restarting, or the account deleted with its tenant) is
    /// dropped, and made anew; connections that are down are dropped whenever a new one is
    /// kept, so deleted tenants' connections do not pile up. The lock is never held while
    /// connecting, so a tenant whose account cannot be reached delays no other tenant.
    async fn context(&self, account: &str) -> Result<async_nats::jetstream::Context, ApiError> {
        if let Some(c) = self
            .contexts
            .lock()
            .await
            .get(account)
            .filter(|c| c.is_up())
        {
            return Ok(c.js.clone());
        }
        let creds = self.user_creds(account)?;
        let options = async_nats::ConnectOptions::with_credentials(&creds)
            .map_err(|e| ApiError::Internal(format!("ingest user credentials: {e}")))?;
        let client = sluice_broker::client::with_tls(options, self.tls.as_ref())
            .name("sluice-api")
            .custom_inbox_prefix(sluice_broker::permissions::INGEST_INBOX_PREFIX)
            .connection_timeout(CONNECT_TIMEOUT)
            .connect(self.url.as_str())
            .await
            .map_err(|e| {
                ApiError::BrokerUnavailable(format!(
                    "cannot reach the tenant's broker account ({e}); retry later"
                ))
            })?;
        let js = async_nats::jetstream::context::ContextBuilder::new()
            .max_ack_inflight(INGEST_MAX_ACK_INFLIGHT)
            .build(client.clone());
        let mut contexts = self.contexts.lock().await;
        // Another request may have connected meanwhile: keep one connection.
        if let Some(c) = contexts.get(account).filter(|c| c.is_up()) {
            return Ok(c.js.clone());
        }
        contexts.retain(|_, c| c.is_up());
        contexts.insert(
            account.to_string(),
            Connection {
                client,
                js: js.clone(),
            },
        );
        Ok(js)
    }
}

impl IngestBroker {
    /// The JetStream context for a tenant whose account is `account` (the Tenant's
    /// `status.brokerAccount`).
    pub async fn context(
        &self,
        tenant: &str,
        account: Option<&str>,
    ) -> Result<async_nats::jetstream::Context, ApiError> {
        match self {
            IngestBroker::Shared(js) => Ok(js.as_ref().clone()),
            IngestBroker::TenantAccounts(accounts) => {
                let account = account.ok_or_else(|| {
                    ApiError::BrokerUnavailable(format!(
                        "tenant {tenant:?} has no broker account yet (status.brokerAccount); the \
                         operator sets it up shortly after the tenant is created; retry later"
                    ))
                })?;
                accounts.context(account).await
            }
        }
    }
}

/// Whether a publish was refused because the account's storage is full (JetStream error
/// 10002, "resource limits exceeded for account").
pub fn is_storage_full(e: &async_nats::jetstream::context::PublishError) -> bool {
    let by_code = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
        .is_some_and(|je| je.error_code().0 == 10002);
    by_code || e.to_string().contains("error code 10002")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_signed_by_the_ingest_key_for_the_tenants_account() {
        let seed = keys::seed(&keys::generate(keys::Role::Account));
        let accounts = TenantAccounts::new("nats://127.0.0.1:1", &seed).unwrap();
        let creds = accounts.user_creds("AACCOUNT").unwrap();
        let token = creds.lines().nth(1).unwrap();
        let claims: sluice_broker::claims::Claims<sluice_broker::claims::UserNats> =
            jwt::decode(token).unwrap();
        assert_eq!(claims.iss, accounts.ingest_key.public_key());
        assert_eq!(claims.nats.issuer_account.as_deref(), Some("AACCOUNT"));
        assert_eq!(
            claims.nats.permissions,
            Default::default(),
            "the key's scope decides"
        );
        assert!(TenantAccounts::new("nats://x", "SUnot-an-account-seed").is_err());
    }
}
