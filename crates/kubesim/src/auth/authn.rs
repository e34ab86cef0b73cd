//! Authentication: a request's bearer token becomes an [`Identity`].

use super::{AUTHENTICATED, Identity};
use crate::cluster::Cluster;
use crate::error::{ApiError, ApiResult};
use crate::meta;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;

/// How requests are authenticated.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Static user tokens (the real server's `--token-auth-file`).
    pub tokens: Vec<StaticToken>,
    /// Whether a request without a token is `401 Unauthorized` instead of running as the
    /// administrator.
    pub require_auth: bool,
}

/// One line of a token file: `token,user,uid,"group1,group2"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticToken {
    /// The bearer token.
    pub token: String,
    /// User name.
    pub user: String,
    /// User uid (may be empty).
    pub uid: String,
    /// Groups (besides `system:authenticated`, which every authenticated user has).
    pub groups: Vec<String>,
}

/// Why a token file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenFileError {
    /// A line has fewer than three columns.
    #[error("line {0}: a token line must have at least 3 columns (token,user,uid)")]
    TooFewColumns(usize),
    /// A quoted column is not closed.
    #[error("line {0}: unterminated quoted column")]
    UnterminatedQuote(usize),
    /// A line has an empty token or user.
    #[error("line {0}: the token and the user must not be empty")]
    Empty(usize),
}

/// Parses a token file in the real server's CSV format: `token,user,uid` and optionally a
/// fourth column of comma-separated groups (quoted when there are several). Blank lines and
/// lines starting with `#` are skipped.
pub fn parse_token_file(text: &str) -> Result<Vec<StaticToken>, TokenFileError> {
    let mut out = vec![];
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let columns = csv_columns(line).ok_or(TokenFileError::UnterminatedQuote(number))?;
        if columns.len() < 3 {
            return Err(TokenFileError::TooFewColumns(number));
        }
        if columns[0].is_empty() || columns[1].is_empty() {
            return Err(TokenFileError::Empty(number));
        }
        let groups = columns
            .get(3)
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        out.push(StaticToken {
            token: columns[0].clone(),
            user: columns[1].clone(),
            uid: columns[2].clone(),
            groups,
        });
    }
    Ok(out)
}

/// Splits one CSV line; `None` when a quote is not closed.
fn csv_columns(line: &str) -> Option<Vec<String>> {
    let mut columns = vec![];
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                current.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => columns.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    if quoted {
        return None;
    }
    columns.push(current);
    Some(columns)
}

/// A ServiceAccount token this server issued.
#[derive(Debug, Clone)]
struct IssuedToken {
    namespace: String,
    name: String,
    /// The uid of the ServiceAccount when the token was issued: a ServiceAccount deleted (and
    /// perhaps created again) no longer accepts it.
    uid: String,
    expires: DateTime<Utc>,
}

/// Turns bearer tokens into identities.
#[derive(Debug, Default)]
pub struct Authenticator {
    config: AuthConfig,
    issued: Mutex<HashMap<String, IssuedToken>>,
}

impl Authenticator {
    /// An authenticator with `config`'s static tokens, and no ServiceAccount token yet.
    pub fn new(config: AuthConfig) -> Self {
        Authenticator {
            config,
            issued: Mutex::default(),
        }
    }

    /// The identity of a request whose `Authorization` header is `authorization`.
    pub fn authenticate(
        &self,
        cluster: &Cluster,
        authorization: Option<&str>,
    ) -> ApiResult<Identity> {
        let Some(header) = authorization else {
            return if self.config.require_auth {
                Err(ApiError::unauthorized())
            } else {
                Ok(Identity::admin())
            };
        };
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(ApiError::unauthorized)?;
        if let Some(t) = self.config.tokens.iter().find(|t| t.token == token) {
            let mut groups = t.groups.clone();
            if !groups.iter().any(|g| g == AUTHENTICATED) {
                groups.push(AUTHENTICATED.into());
            }
            return Ok(Identity {
                user: t.user.clone(),
                uid: (!t.uid.is_empty()).then(|| t.uid.clone()),
                groups,
            });
        }
        let issued = self.lock().get(token).cloned();
        match issued {
            Some(t)
                if t.expires > Utc::now()
                    && service_account_uid(cluster, &t.namespace, &t.name).as_deref()
                        == Some(t.uid.as_str()) =>
            {
                let mut id = Identity::service_account(&t.namespace, &t.name);
                id.uid = Some(t.uid);
                Ok(id)
            }
            _ => Err(ApiError::unauthorized()),
        }
    }

    /// Issues a token for the ServiceAccount `namespace/name`, valid for `lifetime`.
    pub fn issue(
        &self,
        cluster: &Cluster,
        namespace: &str,
        name: &str,
        lifetime: Duration,
    ) -> ApiResult<(String, DateTime<Utc>)> {
        let uid = service_account_uid(cluster, namespace, name)
            .ok_or_else(|| ApiError::not_found("", "serviceaccounts", name))?;
        let token = format!(
            "kubesim-sa.{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let expires = Utc::now() + lifetime;
        self.lock().insert(
            token.clone(),
            IssuedToken {
                namespace: namespace.into(),
                name: name.into(),
                uid,
                expires,
            },
        );
        Ok((token, expires))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, IssuedToken>> {
        self.issued.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn service_account_uid(cluster: &Cluster, namespace: &str, name: &str) -> Option<String> {
    let rt = cluster.resource_type("", "v1", "serviceaccounts")?;
    let sa = cluster.get(&rt, namespace, name).ok()?;
    Some(meta::meta_str(&sa, "uid").to_string())
}

/// The spec of a TokenRequest.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenRequestSpec {
    #[serde(default)]
    audiences: Vec<String>,
    expiration_seconds: Option<i64>,
}

/// The shortest and the default lifetime of a requested token, as the real server has them.
const MIN_EXPIRATION_SECONDS: i64 = 600;
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// Answers `POST .../serviceaccounts/{name}/token`: `request` is the TokenRequest (JSON form);
/// the answer carries `status.token` and `status.expirationTimestamp`.
pub fn token_request(
    authenticator: &Authenticator,
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    request: &Value,
) -> ApiResult<Value> {
    let spec: TokenRequestSpec = serde_json::from_value(request["spec"].clone())
        .map_err(|e| ApiError::bad_request(format!("invalid TokenRequest: {e}")))?;
    let seconds = spec
        .expiration_seconds
        .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
    if seconds < MIN_EXPIRATION_SECONDS {
        return Err(ApiError::invalid(
            "authentication.k8s.io",
            "TokenRequest",
            name,
            vec![crate::error::cause(
                "FieldValueInvalid",
                "spec.expirationSeconds",
                format!(
                    "Invalid value: {seconds}: may not specify a duration less than 10 minutes"
                ),
            )],
        ));
    }
    let (token, expires) =
        authenticator.issue(cluster, namespace, name, Duration::seconds(seconds))?;
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": meta::now()},
        "spec": {"audiences": spec.audiences, "expirationSeconds": seconds, "boundObjectRef": null},
        "status": {
            "token": token,
            "expirationTimestamp": expires.to_rfc3339_opts(SecondsFormat::Secs, true),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_parse_like_the_real_server() {
        let text = "# comment\n\
                    t1,alice,u1\n\
                    \n\
                    t2,bob,,\"dev, ops\"\n\
                    t3,carol,u3,admins\n";
        let tokens = parse_token_file(text).unwrap();
        assert_eq!(tokens.len(), 3);
        assert_eq!(tokens[0].user, "alice");
        assert_eq!(tokens[0].uid, "u1");
        assert!(tokens[0].groups.is_empty());
        assert_eq!(tokens[1].groups, vec!["dev", "ops"]);
        assert_eq!(tokens[1].uid, "");
        assert_eq!(tokens[2].groups, vec!["admins"]);
        assert_eq!(
            parse_token_file("t1,alice"),
            Err(TokenFileError::TooFewColumns(1))
        );
        assert_eq!(
            parse_token_file("x,y,z\nt1,alice,u,\"a,b"),
            Err(TokenFileError::UnterminatedQuote(2))
        );
        assert_eq!(parse_token_file(",alice,u"), Err(TokenFileError::Empty(1)));
    }

    #[test]
    fn static_tokens_and_missing_tokens() {
        let cluster = Cluster::new();
        let auth = Authenticator::new(AuthConfig {
            tokens: parse_token_file("t1,alice,u1,dev").unwrap(),
            require_auth: false,
        });
        let alice = auth.authenticate(&cluster, Some("Bearer t1")).unwrap();
        assert_eq!(alice.user, "alice");
        assert_eq!(alice.uid.as_deref(), Some("u1"));
        assert_eq!(alice.groups, vec!["dev", AUTHENTICATED]);
        assert_eq!(
            auth.authenticate(&cluster, None).unwrap(),
            Identity::admin()
        );
        assert_eq!(
            auth.authenticate(&cluster, Some("Bearer nope"))
                .unwrap_err()
                .code,
            401
        );
        let strict = Authenticator::new(AuthConfig {
            require_auth: true,
            ..Default::default()
        });
        assert_eq!(strict.authenticate(&cluster, None).unwrap_err().code, 401);
    }
}
