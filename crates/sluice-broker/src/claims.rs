//! Typed claims of the NATS JWTs (version 2) that operator mode needs: the operator's own, an
//! account's (issued by the operator), a user's (issued by its account), and the generic claim
//! that asks the server to delete accounts (issued by the operator). [`crate::jwt`] signs them.

use crate::limits::{AccountLimits, Limit};
use crate::permissions::Permissions;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The JWT version these claims follow.
pub const VERSION: u8 = 2;

/// The common part of every claim set; `nats` holds the part specific to its type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims<N> {
    /// Identifier: a hash of the other claims, set by [`crate::jwt::encode`].
    #[serde(default)]
    pub jti: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Public key of the issuer, whose key signs the JWT.
    pub iss: String,
    /// Public key of the subject.
    pub sub: String,
    /// A readable name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The type-specific part.
    pub nats: N,
}

impl<N> Claims<N> {
    /// Claims issued by `iss` about `sub`; the `jti` is left for [`crate::jwt::encode`].
    pub fn new(iss: &str, sub: &str, name: &str, iat: u64, nats: N) -> Self {
        Claims {
            jti: String::new(),
            iat,
            iss: iss.to_string(),
            sub: sub.to_string(),
            name: name.to_string(),
            nats,
        }
    }
}

/// The `type` of a claim set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClaimType {
    /// An operator.
    Operator,
    /// An account.
    Account,
    /// A user.
    User,
    /// A generic claim; here, the list of accounts to delete.
    Generic,
}

/// The operator's part: which account is the system account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorNats {
    /// Public key of the system account.
    pub system_account: String,
    /// Always [`ClaimType::Operator`].
    #[serde(rename = "type")]
    pub kind: ClaimType,
    /// Always [`VERSION`].
    pub version: u8,
}

/// An account's limits as the JWT holds them; `-1` is no limit. Every field is written, so
/// that nothing depends on how the server reads a missing one (0 means none for a limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountLimitsClaim {
    /// Subscriptions.
    pub subs: i64,
    /// Bytes of data.
    pub data: i64,
    /// Largest message payload.
    pub payload: i64,
    /// Imports.
    pub imports: i64,
    /// Exports.
    pub exports: i64,
    /// Whether exports may use wildcards.
    pub wildcards: bool,
    /// Client connections.
    pub conn: i64,
    /// Leaf node connections.
    pub leaf: i64,
    /// JetStream memory storage (bytes).
    pub mem_storage: i64,
    /// JetStream file storage (bytes).
    pub disk_storage: i64,
    /// JetStream streams.
    pub streams: i64,
    /// JetStream consumers.
    pub consumer: i64,
}

impl From<&AccountLimits> for AccountLimitsClaim {
    fn from(l: &AccountLimits) -> Self {
        // Without JetStream every JetStream limit is 0, which is how the server knows it is off.
        let (disk_storage, streams, consumer) = match &l.jetstream {
            Some(js) => (
                js.storage_bytes.claim_value(),
                js.streams.claim_value(),
                js.consumers.claim_value(),
            ),
            None => (0, 0, 0),
        };
        AccountLimitsClaim {
            subs: Limit::Unlimited.claim_value(),
            data: Limit::Unlimited.claim_value(),
            payload: Limit::Unlimited.claim_value(),
            imports: Limit::Unlimited.claim_value(),
            exports: Limit::Unlimited.claim_value(),
            wildcards: true,
            conn: l.connections.claim_value(),
            leaf: Limit::Unlimited.claim_value(),
            mem_storage: 0,
            disk_storage,
            streams,
            consumer,
        }
    }
}

/// An account's part: its limits and its revoked users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountNats {
    /// What the broker lets the account use.
    pub limits: AccountLimitsClaim,
    /// Revoked users: user public key → Unix time (seconds). A user JWT of that key issued at
    /// or before that time is refused, and its connections are closed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub revocations: BTreeMap<String, u64>,
    /// Scoped signing keys: keys that may sign the account's users besides the account key;
    /// a user one signs gets the key's template permissions, whatever its own JWT says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_keys: Vec<ScopedSigningKey>,
    /// Always [`ClaimType::Account`].
    #[serde(rename = "type")]
    pub kind: ClaimType,
    /// Always [`VERSION`].
    pub version: u8,
}

/// A scoped signing key of an account (`kind: user_scope`): whoever holds it can sign users of
/// the account, and those users can do exactly what `template` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopedSigningKey {
    /// Always `user_scope`.
    pub kind: String,
    /// The signing key's public key (`A…`).
    pub key: String,
    /// A name for what the key signs.
    pub role: String,
    /// The permissions and limits of every user the key signs.
    pub template: UserScope,
}

/// The permissions and limits of a scoped signing key's users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserScope {
    /// What they may publish and subscribe to.
    #[serde(flatten)]
    pub permissions: Permissions,
    /// Subscriptions (`-1`: the account's limit).
    pub subs: i64,
    /// Bytes of data (`-1`: the account's limit).
    pub data: i64,
    /// Largest payload (`-1`: the account's limit).
    pub payload: i64,
}

impl ScopedSigningKey {
    /// The signing key `key` (a public key) for users with exactly `permissions`.
    pub fn new(key: &str, role: &str, permissions: Permissions) -> Self {
        ScopedSigningKey {
            kind: "user_scope".into(),
            key: key.into(),
            role: role.into(),
            template: UserScope {
                permissions,
                subs: Limit::Unlimited.claim_value(),
                data: Limit::Unlimited.claim_value(),
                payload: Limit::Unlimited.claim_value(),
            },
        }
    }
}

/// A user's part: its permissions, and no limits of its own beyond its account's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNats {
    /// What the user may publish and subscribe to.
    #[serde(flatten)]
    pub permissions: Permissions,
    /// Subscriptions (`-1`: the account's limit).
    pub subs: i64,
    /// Bytes of data (`-1`: the account's limit).
    pub data: i64,
    /// Largest payload (`-1`: the account's limit).
    pub payload: i64,
    /// The account, when a signing key of it (not the account key) issues the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_account: Option<String>,
    /// Always [`ClaimType::User`].
    #[serde(rename = "type")]
    pub kind: ClaimType,
    /// Always [`VERSION`].
    pub version: u8,
}

/// The generic claim's part that asks the server to delete accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteAccountsNats {
    /// Public keys of the accounts to delete.
    pub accounts: Vec<String>,
    /// Always [`ClaimType::Generic`].
    #[serde(rename = "type")]
    pub kind: ClaimType,
    /// Always [`VERSION`].
    pub version: u8,
}

/// The operator's claims (self-signed).
pub type OperatorClaims = Claims<OperatorNats>;
/// An account's claims (signed by the operator).
pub type AccountClaims = Claims<AccountNats>;
/// A user's claims (signed by its account).
pub type UserClaims = Claims<UserNats>;
/// The claims asking to delete accounts (signed by the operator).
pub type DeleteAccountsClaims = Claims<DeleteAccountsNats>;

impl OperatorClaims {
    /// The operator `operator` naming `system_account` its system account.
    pub fn operator(operator: &str, name: &str, system_account: &str, iat: u64) -> Self {
        Claims::new(
            operator,
            operator,
            name,
            iat,
            OperatorNats {
                system_account: system_account.to_string(),
                kind: ClaimType::Operator,
                version: VERSION,
            },
        )
    }
}

impl AccountClaims {
    /// The account `account`, issued by `operator`, with `limits`.
    pub fn account(
        operator: &str,
        account: &str,
        name: &str,
        limits: &AccountLimits,
        iat: u64,
    ) -> Self {
        Claims::new(
            operator,
            account,
            name,
            iat,
            AccountNats {
                limits: limits.into(),
                revocations: BTreeMap::new(),
                signing_keys: Vec::new(),
                kind: ClaimType::Account,
                version: VERSION,
            },
        )
    }

    /// The same account with the users `users` revoked: their JWTs issued at or before `at`
    /// (Unix seconds) are refused from then on. Rotating a route's credentials mints a new
    /// user and revokes the old one this way.
    pub fn revoke_users<S: Into<String>>(
        mut self,
        users: impl IntoIterator<Item = S>,
        at: u64,
    ) -> Self {
        for user in users {
            self.nats.revocations.insert(user.into(), at);
        }
        self
    }
}

impl UserClaims {
    /// The user `user` of `account` (which issues it), with `permissions`.
    pub fn user(account: &str, user: &str, name: &str, permissions: Permissions, iat: u64) -> Self {
        Claims::new(
            account,
            user,
            name,
            iat,
            UserNats {
                permissions,
                subs: Limit::Unlimited.claim_value(),
                data: Limit::Unlimited.claim_value(),
                payload: Limit::Unlimited.claim_value(),
                issuer_account: None,
                kind: ClaimType::User,
                version: VERSION,
            },
        )
    }

    /// The user `user` of `account`, issued by the account's scoped signing key `signing_key`
    /// (a public key): it has no permissions or limits of its own, the key's template gives
    /// them. The server refuses a scoped user whose JWT sets any (its limits must be the zero
    /// values, not `-1`).
    pub fn scoped_user(account: &str, signing_key: &str, user: &str, name: &str, iat: u64) -> Self {
        let mut claims = Self::user(signing_key, user, name, Permissions::default(), iat);
        claims.nats.issuer_account = Some(account.to_string());
        claims.nats.subs = 0;
        claims.nats.data = 0;
        claims.nats.payload = 0;
        claims
    }
}

impl DeleteAccountsClaims {
    /// The request of `operator` to delete `accounts`.
    pub fn delete_accounts(operator: &str, accounts: &[String], iat: u64) -> Self {
        Claims::new(
            operator,
            operator,
            "",
            iat,
            DeleteAccountsNats {
                accounts: accounts.to_vec(),
                kind: ClaimType::Generic,
                version: VERSION,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::JetStreamLimits;
    use crate::permissions::SubjectRules;
    use serde_json::Value;

    fn field<'a>(v: &'a Value, path: &str) -> &'a Value {
        path.split('.')
            .fold(v, |v, k| v.get(k).unwrap_or_else(|| panic!("no {path}")))
    }

    #[test]
    fn account_claims_write_every_limit() {
        let limits = AccountLimits {
            connections: Limit::AtMost(10),
            jetstream: Some(JetStreamLimits {
                storage_bytes: Limit::AtMost(65536),
                streams: Limit::AtMost(3),
                consumers: Limit::Unlimited,
            }),
        };
        let c = AccountClaims::account("OP", "AC", "acme", &limits, 7);
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(field(&v, "nats.type"), "account");
        assert_eq!(field(&v, "nats.version"), 2);
        assert_eq!(field(&v, "iss"), "OP");
        assert_eq!(field(&v, "sub"), "AC");
        for (k, want) in [
            ("conn", 10),
            ("disk_storage", 65536),
            ("mem_storage", 0),
            ("streams", 3),
            ("consumer", -1),
            ("subs", -1),
            ("data", -1),
            ("payload", -1),
            ("imports", -1),
            ("exports", -1),
            ("leaf", -1),
        ] {
            assert_eq!(field(&v, &format!("nats.limits.{k}")), want, "{k}");
        }
        assert!(field(&v, "nats").get("revocations").is_none());
        let revoked = c.revoke_users(["U1"], 9);
        let v = serde_json::to_value(&revoked).unwrap();
        assert_eq!(field(&v, "nats.revocations.U1"), 9);
        let system = AccountClaims::account("OP", "AS", "SYS", &AccountLimits::system(), 7);
        assert_eq!(system.nats.limits.disk_storage, 0);
        assert_eq!(system.nats.limits.streams, 0);
        assert_eq!(system.nats.limits.conn, -1);
    }

    #[test]
    fn user_claims_hold_pub_and_sub_rules() {
        let p = Permissions {
            publish: SubjectRules::allow(["a.b"]),
            subscribe: SubjectRules::allow(["_INBOX.>"]),
        };
        let v = serde_json::to_value(UserClaims::user("AC", "US", "r", p, 1)).unwrap();
        assert_eq!(field(&v, "nats.type"), "user");
        assert_eq!(field(&v, "nats.pub.allow"), &serde_json::json!(["a.b"]));
        assert_eq!(
            field(&v, "nats.sub.allow"),
            &serde_json::json!(["_INBOX.>"])
        );
        assert_eq!(field(&v, "nats.subs"), -1);
        assert_eq!(field(&v, "iss"), "AC");
    }

    #[test]
    fn operator_and_delete_claims() {
        let v = serde_json::to_value(OperatorClaims::operator("OP", "sluice", "AS", 1)).unwrap();
        assert_eq!(field(&v, "iss"), "OP");
        assert_eq!(field(&v, "sub"), "OP");
        assert_eq!(field(&v, "nats.system_account"), "AS");
        assert_eq!(field(&v, "nats.type"), "operator");
        let d = DeleteAccountsClaims::delete_accounts("OP", &["A1".into(), "A2".into()], 1);
        let v = serde_json::to_value(d).unwrap();
        assert_eq!(field(&v, "nats.type"), "generic");
        assert_eq!(field(&v, "nats.accounts"), &serde_json::json!(["A1", "A2"]));
    }
}
