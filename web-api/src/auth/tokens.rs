//! API tokens Sluice issues: HS256 JWTs with `iss`, `aud`, `exp`, `iat`, `sub` and a `jti`
//! naming a row of the store, which holds the token's SHA-256, role, expiry, revocation and last
//! use. A token verifies only if its signature, claims and row all agree.
//!
//! Verified tokens are cached in memory for [`crate::Config::token_cache_ttl`] (5 s by
//! default), keyed by the token's hash. A revocation takes effect at once on the replica that
//! served it and within that time on the others.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::oidc::Oidc;
use super::{Grant, Principal, Role};
use crate::problem::ApiError;
use crate::store::{NewToken, Store};

/// Claims of a Sluice API token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Subject: `token:<jti>`.
    pub sub: String,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Token id: the store row's key.
    pub jti: String,
    /// Tenant, for tenant tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Role.
    pub role: String,
}

/// Hex SHA-256 of a token.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

struct Cached {
    principal: Principal,
    token_id: String,
    expires_at_ms: i64,
    fetched: Instant,
    last_touched: Instant,
}

/// Verifies bearer tokens and issues API tokens.
pub struct Authenticator {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    oidc: Option<Oidc>,
    cache_ttl: Duration,
    cache: RwLock<HashMap<String, Cached>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("oidc", &self.oidc.is_some())
            .finish_non_exhaustive()
    }
}

/// What a new token is: see [`Authenticator::issue`].
#[derive(Debug, Clone, Copy)]
pub struct TokenRequest<'a> {
    /// The tenant's id and name, for tenant tokens; `None` for platform tokens.
    pub tenant: Option<(&'a str, &'a str)>,
    /// Name, unique in its tenant (or among platform tokens).
    pub name: &'a str,
    /// Role.
    pub role: Role,
    /// Lifetime.
    pub ttl: Duration,
    /// Who creates it (the audit actor).
    pub created_by: &'a str,
    /// Free-text description.
    pub description: Option<&'a str>,
}

/// A freshly issued token: the secret, shown once, and its claims.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The bearer token.
    pub secret: String,
    /// Its claims.
    pub claims: Claims,
}

const MAX_CACHE_ENTRIES: usize = 100_000;
const TOUCH_EVERY: Duration = Duration::from_secs(60);

impl Authenticator {
    /// An authenticator signing with `secret` (HS256) for `issuer`/`audience`, optionally
    /// accepting OIDC tokens.
    pub fn new(
        secret: &[u8],
        issuer: &str,
        audience: &str,
        oidc: Option<Oidc>,
        cache_ttl: Duration,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.leeway = 30;
        Authenticator {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            oidc,
            cache_ttl,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// Signs a new token and stores its row; the secret is returned once and never stored.
    pub async fn issue(&self, store: &Store, req: &TokenRequest<'_>) -> Result<Issued, IssueError> {
        let TokenRequest {
            tenant,
            name,
            role,
            ttl,
            created_by,
            description,
        } = *req;
        let now = chrono::Utc::now();
        let jti = uuid::Uuid::new_v4().to_string();
        let exp = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(90));
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: format!("token:{jti}"),
            exp: exp.timestamp(),
            iat: now.timestamp(),
            jti: jti.clone(),
            tenant: tenant.map(|(_, name)| name.to_string()),
            role: role.as_str().to_string(),
        };
        let secret = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| IssueError::Sign(e.to_string()))?;
        let hash = token_hash(&secret);
        store
            .insert_token(&NewToken {
                id: &jti,
                tenant_id: tenant.map(|(id, _)| id),
                name,
                role: role.as_str(),
                token_hash: &hash,
                created_at: now.timestamp_millis(),
                created_by,
                expires_at: exp.timestamp_millis(),
                description,
            })
            .await
            .map_err(|e| match e {
                crate::store::StoreError::Duplicate => IssueError::Duplicate,
                e => IssueError::Store(e),
            })?;
        Ok(Issued { secret, claims })
    }

    /// Verifies a bearer token: a Sluice API token or, when configured, an OIDC token.
    pub async fn authenticate(&self, token: &str, store: &Store) -> Result<Principal, ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            ApiError::Unauthorized(format!("bearer token is not a usable JWT: {e}"))
        })?;
        match header.alg {
            Algorithm::HS256 => self.authenticate_api_token(token, store).await,
            alg => match &self.oidc {
                Some(oidc) => oidc.authenticate(token, &header, alg).await,
                None => Err(ApiError::Unauthorized(format!(
                    "tokens signed with {alg:?} are not accepted"
                ))),
            },
        }
    }

    async fn authenticate_api_token(
        &self,
        token: &str,
        store: &Store,
    ) -> Result<Principal, ApiError> {
        let hash = token_hash(token);
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut touch = None;
        {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = cache.get(&hash)
                && c.fetched.elapsed() < self.cache_ttl
                && c.expires_at_ms > now_ms
            {
                if c.last_touched.elapsed() >= TOUCH_EVERY {
                    touch = Some(c.token_id.clone());
                } else {
                    return Ok(c.principal.clone());
                }
            }
        }
        if let Some(id) = touch {
            // Refresh `last_used_at` at most once a minute per token, off the request path.
            if let Some(c) = self
                .cache
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(&hash)
            {
                c.last_touched = Instant::now();
                let principal = c.principal.clone();
                let store = store.clone();
                tokio::spawn(async move {
                    if let Err(e) = store.touch_token(&id, now_ms).await {
                        tracing::debug!(error = %e, "cannot record token use");
                    }
                });
                return Ok(principal);
            }
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| ApiError::Unauthorized(format!("API token refused: {e}")))?;
        let claims = data.claims;
        let row = store
            .token(&claims.jti)
            .await?
            .ok_or_else(|| ApiError::Unauthorized("API token is unknown".into()))?;
        if !constant_time_eq(row.token_hash.as_bytes(), hash.as_bytes()) {
            return Err(ApiError::Unauthorized("API token is unknown".into()));
        }
        if row.revoked_at.is_some() {
            return Err(ApiError::Unauthorized("API token was revoked".into()));
        }
        if row.expires_at <= now_ms {
            return Err(ApiError::Unauthorized("API token has expired".into()));
        }
        let role = Role::parse(&row.role)
            .ok_or_else(|| ApiError::Unauthorized("API token has an unknown role".into()))?;
        if row.tenant_name != claims.tenant {
            return Err(ApiError::Unauthorized(
                "API token's tenant no longer exists".into(),
            ));
        }
        let principal = match (&row.tenant_name, role) {
            (None, Role::PlatformAdmin) => Principal {
                actor: format!("token:{}", row.id),
                token_id: Some(row.id.clone()),
                platform_admin: true,
                grants: vec![],
                expires_at_ms: Some(row.expires_at),
            },
            (Some(tenant), role) if role != Role::PlatformAdmin => Principal {
                actor: format!("token:{}", row.id),
                token_id: Some(row.id.clone()),
                platform_admin: false,
                grants: vec![Grant {
                    tenant: tenant.clone(),
                    role,
                }],
                expires_at_ms: Some(row.expires_at),
            },
            _ => {
                return Err(ApiError::Unauthorized(
                    "API token's role does not fit its scope".into(),
                ));
            }
        };
        let store2 = store.clone();
        let id = row.id.clone();
        tokio::spawn(async move {
            if let Err(e) = store2.touch_token(&id, now_ms).await {
                tracing::debug!(error = %e, "cannot record token use");
            }
        });
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(
            hash,
            Cached {
                principal: principal.clone(),
                token_id: row.id,
                expires_at_ms: row.expires_at,
                fetched: Instant::now(),
                last_touched: Instant::now(),
            },
        );
        Ok(principal)
    }

    /// Drops a token from this replica's cache (after revocation).
    pub fn forget_token(&self, token_id: &str) {
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, c| c.token_id != token_id);
    }

    /// Drops every cached token of a tenant (after its deletion).
    pub fn forget_tenant(&self, tenant: &str) {
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, c| !c.principal.grants.iter().any(|g| g.tenant == tenant));
    }

    /// Whether OIDC tokens are accepted.
    pub fn oidc(&self) -> Option<&Oidc> {
        self.oidc.as_ref()
    }
}

/// The lifetime of a token minted by a caller whose own credential expires at
/// `minter_expires_at_ms` (ms; `None`: unknown, no clamp): `ttl`, shortened so that the new
/// token never outlives the one that minted it.
pub fn clamp_ttl(ttl: Duration, minter_expires_at_ms: Option<i64>, now_ms: i64) -> Duration {
    match minter_expires_at_ms {
        Some(exp) => {
            let left = Duration::from_millis(u64::try_from(exp - now_ms).unwrap_or(0));
            // Whole seconds, rounded down: token expiries are whole seconds.
            ttl.min(Duration::from_secs(left.as_secs()))
        }
        None => ttl,
    }
}

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// A token of that name exists in the tenant.
    #[error("a token with this name already exists")]
    Duplicate,
    /// Signing failed.
    #[error("cannot sign token: {0}")]
    Sign(String),
    /// The store failed.
    #[error(transparent)]
    Store(crate::store::StoreError),
}

impl From<IssueError> for ApiError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Duplicate => ApiError::AlreadyExists(e.to_string()),
            IssueError::Sign(m) => ApiError::Internal(m),
            IssueError::Store(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_never_outlives_its_minter() {
        let day = Duration::from_secs(86_400);
        let now = 1_000_000_000_000;
        assert_eq!(clamp_ttl(day, None, now), day);
        assert_eq!(
            clamp_ttl(day, Some(now + 3_600_500), now),
            Duration::from_secs(3600)
        );
        assert_eq!(clamp_ttl(day, Some(now + 2 * 86_400_000), now), day);
        assert_eq!(clamp_ttl(day, Some(now - 5), now), Duration::ZERO);
    }
}
