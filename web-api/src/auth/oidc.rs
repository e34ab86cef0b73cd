//! Tokens of an external OIDC issuer (platform single sign-on), verified against the issuer's
//! JWKS, read from a file or fetched from a URL. The JWKS is loaded again periodically
//! ([`OidcConfig::jwks_refresh_interval`], so removed keys stop verifying) and, at most every
//! 30 s, when a token names a key it does not know (so key rotation works). Loading happens
//! outside the key lock: verifications never wait on the network.
//!
//! Only asymmetric algorithms are accepted (RS*, PS*, ES*, EdDSA), and the token's `alg` must
//! match its key's. `iss`, `aud` and `exp` are required. A configured claim (`groups` by default,
//! a string or an array of strings) maps to roles: the admin value (default
//! `sluice-platform-admins`) gives `platform-admin`, and values `<prefix><tenant>:<role>` (default
//! prefix `sluice:`, e.g. `sluice:acme:developer`) give a role in a tenant.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde_json::Value;
use tokio::sync::RwLock;

use super::{Grant, Principal, Role};
use crate::problem::ApiError;

/// Where the JWKS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A JSON file.
    File(PathBuf),
    /// An `http(s)://` URL.
    Url(String),
}

impl JwksSource {
    /// `http://` and `https://` are URLs; anything else is a file path.
    pub fn parse(s: &str) -> JwksSource {
        if s.starts_with("http://") || s.starts_with("https://") {
            JwksSource::Url(s.to_string())
        } else {
            JwksSource::File(PathBuf::from(s))
        }
    }
}

/// Settings of the OIDC issuer.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
    /// The issuer's keys.
    pub jwks: JwksSource,
    /// Claim holding roles (a string or an array of strings).
    pub roles_claim: String,
    /// Claim value making the caller a platform admin.
    pub admin_value: String,
    /// Prefix of claim values `<prefix><tenant>:<role>`.
    pub tenant_prefix: String,
    /// How often the JWKS is loaded again in the background.
    pub jwks_refresh_interval: Duration,
}

/// The default of [`OidcConfig::jwks_refresh_interval`].
pub const DEFAULT_JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(300);

/// Why the JWKS could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// Reading the file failed.
    #[error("cannot read JWKS file {0}: {1}")]
    Read(String, std::io::Error),
    /// Fetching the URL failed.
    #[error("cannot fetch JWKS from {0}: {1}")]
    Fetch(String, String),
    /// The document is not a JWKS.
    #[error("JWKS is not valid: {0}")]
    Parse(String),
}

/// The keys and when they were last loaded (or a load last tried).
#[derive(Debug)]
struct Keys {
    config: OidcConfig,
    set: RwLock<(JwkSet, Instant)>,
    /// Held while loading, so that one load runs at a time; never held with `set`'s write lock
    /// across network I/O.
    loading: tokio::sync::Mutex<()>,
    http: reqwest::Client,
}

impl Keys {
    /// Loads the JWKS again if the last load is older than `min_age`; the key lock is taken
    /// only to swap the new set in.
    async fn reload(&self, min_age: Duration) {
        let _one = self.loading.lock().await;
        if self.set.read().await.1.elapsed() < min_age {
            return;
        }
        let loaded = load(&self.config.jwks, &self.http).await;
        let mut set = self.set.write().await;
        match loaded {
            Ok(new) => *set = (new, Instant::now()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot refresh the OIDC JWKS; keeping the old keys");
                set.1 = Instant::now();
            }
        }
    }
}

/// Verifier of OIDC tokens.
#[derive(Debug)]
pub struct Oidc {
    keys: Arc<Keys>,
    refresher: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Oidc {
    fn drop(&mut self) {
        if let Some(r) = &self.refresher {
            r.abort();
        }
    }
}

const REFRESH_AT_MOST_EVERY: Duration = Duration::from_secs(30);

const ACCEPTED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

impl Oidc {
    /// Loads the JWKS and returns the verifier.
    pub async fn new(config: OidcConfig) -> Result<Oidc, JwksError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| JwksError::Fetch("client".into(), e.to_string()))?;
        let set = load(&config.jwks, &http).await?;
        let every = config.jwks_refresh_interval.max(Duration::from_secs(1));
        let keys = Arc::new(Keys {
            config,
            set: RwLock::new((set, Instant::now())),
            loading: tokio::sync::Mutex::new(()),
            http,
        });
        let weak = Arc::downgrade(&keys);
        let refresher = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(keys) = weak.upgrade() else { return };
                keys.reload(Duration::ZERO).await;
            }
        });
        Ok(Oidc {
            keys,
            refresher: Some(refresher),
        })
    }

    /// The settings.
    pub fn config(&self) -> &OidcConfig {
        &self.keys.config
    }

    async fn key(&self, kid: Option<&str>) -> Result<jsonwebtoken::jwk::Jwk, ApiError> {
        let find = |set: &JwkSet| match kid {
            Some(kid) => set.find(kid).cloned(),
            None if set.keys.len() == 1 => set.keys.first().cloned(),
            None => None,
        };
        {
            let keys = self.keys.set.read().await;
            if let Some(k) = find(&keys.0) {
                return Ok(k);
            }
            if keys.1.elapsed() < REFRESH_AT_MOST_EVERY {
                return Err(ApiError::Unauthorized(
                    "token is signed with an unknown key".into(),
                ));
            }
        }
        self.keys.reload(REFRESH_AT_MOST_EVERY).await;
        find(&self.keys.set.read().await.0)
            .ok_or_else(|| ApiError::Unauthorized("token is signed with an unknown key".into()))
    }

    /// Verifies an OIDC token and maps its claims to a principal.
    pub async fn authenticate(
        &self,
        token: &str,
        header: &Header,
        alg: Algorithm,
    ) -> Result<Principal, ApiError> {
        if !ACCEPTED.contains(&alg) {
            return Err(ApiError::Unauthorized(format!(
                "OIDC tokens signed with {alg:?} are not accepted"
            )));
        }
        let jwk = self.key(header.kid.as_deref()).await?;
        let family_ok = matches!(
            (&jwk.algorithm, alg),
            (
                AlgorithmParameters::RSA(_),
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ) | (
                AlgorithmParameters::EllipticCurve(_),
                Algorithm::ES256 | Algorithm::ES384
            ) | (AlgorithmParameters::OctetKeyPair(_), Algorithm::EdDSA)
        );
        let declared_ok = jwk
            .common
            .key_algorithm
            .is_none_or(|k| format!("{k:?}") == format!("{alg:?}"));
        if !family_ok || !declared_ok {
            return Err(ApiError::Unauthorized(
                "token's algorithm does not match its key".into(),
            ));
        }
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|e| ApiError::Unauthorized(format!("unusable JWKS key: {e}")))?;
        let mut v = Validation::new(alg);
        v.algorithms = vec![alg];
        v.set_issuer(&[&self.keys.config.issuer]);
        v.set_audience(&[&self.keys.config.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = 30;
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<Value>(token, &key, &v)
            .map_err(|e| ApiError::Unauthorized(format!("OIDC token refused: {e}")))?;
        let claims = data.claims;
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let values: Vec<String> = match claims.get(&self.keys.config.roles_claim) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => vec![],
        };
        let mut principal = map_claims(&self.keys.config, &sub, &values);
        principal.expires_at_ms = claims
            .get("exp")
            .and_then(Value::as_i64)
            .map(|s| s.saturating_mul(1000));
        Ok(principal)
    }
}

/// Maps claim values to a principal.
pub fn map_claims(config: &OidcConfig, subject: &str, values: &[String]) -> Principal {
    let mut principal = Principal {
        actor: format!("oidc:{subject}"),
        token_id: None,
        platform_admin: false,
        grants: vec![],
        expires_at_ms: None,
    };
    for v in values {
        if *v == config.admin_value {
            principal.platform_admin = true;
        } else if let Some(rest) = v.strip_prefix(&config.tenant_prefix)
            && let Some((tenant, role)) = rest.rsplit_once(':')
            && let Some(role) = Role::parse(role)
            && role != Role::PlatformAdmin
            && sluice_core::names::is_dns1123_label(tenant)
        {
            principal.grants.push(Grant {
                tenant: tenant.to_string(),
                role,
            });
        }
    }
    principal
}

async fn load(source: &JwksSource, http: &reqwest::Client) -> Result<JwkSet, JwksError> {
    let text = match source {
        JwksSource::File(path) => tokio::fs::read_to_string(path)
            .await
            .map_err(|e| JwksError::Read(path.display().to_string(), e))?,
        JwksSource::Url(url) => {
            let res = http
                .get(url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| JwksError::Fetch(url.clone(), e.to_string()))?;
            res.text()
                .await
                .map_err(|e| JwksError::Fetch(url.clone(), e.to_string()))?
        }
    };
    serde_json::from_str(&text).map_err(|e| JwksError::Parse(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_map_to_roles() {
        let config = OidcConfig {
            issuer: "i".into(),
            audience: "a".into(),
            jwks: JwksSource::parse("/x"),
            roles_claim: "groups".into(),
            admin_value: "admins".into(),
            tenant_prefix: "sluice:".into(),
            jwks_refresh_interval: DEFAULT_JWKS_REFRESH_INTERVAL,
        };
        let p = map_claims(
            &config,
            "alice",
            &[
                "sluice:acme:developer".into(),
                "sluice:beta:platform-admin".into(),
                "sluice:Bad:viewer".into(),
                "other".into(),
            ],
        );
        assert!(!p.platform_admin);
        assert_eq!(p.role_in("acme"), Some(Role::Developer));
        assert_eq!(p.role_in("beta"), None);
        assert_eq!(p.actor, "oidc:alice");
        assert!(map_claims(&config, "bob", &["admins".into()]).platform_admin);
    }
}
