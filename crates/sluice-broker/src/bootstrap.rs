//! What must exist before a nats-server runs in operator mode: the operator key, the system
//! account and the system account's administrator. [`Bootstrap::generate`] makes them once;
//! the operator keeps the operator seed and the administrator's creds, and the server's
//! configuration ([`Bootstrap::server_config`]) names the operator's and the system account's
//! JWTs.

use crate::claims::{AccountClaims, OperatorClaims, UserClaims};
use crate::creds::creds_file;
use crate::jwt::{self, JwtError};
use crate::keys::{self, KeyError, Role};
use crate::limits::AccountLimits;
use crate::permissions;
use crate::server_config::ServerConfig;
use nkeys::KeyPair;
use std::path::Path;

/// The name the operator JWT gives the Sluice operator.
pub const OPERATOR_NAME: &str = "sluice";
/// The name of the system account.
pub const SYSTEM_ACCOUNT_NAME: &str = "SYS";

/// The operator-mode identities every installation starts from.
#[derive(Clone)]
pub struct Bootstrap {
    /// The operator key: it signs every account.
    pub operator: KeyPair,
    /// The operator's self-signed JWT.
    pub operator_jwt: String,
    /// The system account's public key.
    pub system_account: String,
    /// The system account's JWT, signed by the operator.
    pub system_account_jwt: String,
    /// The creds file text of the system account's administrator, allowed only to create,
    /// update and delete accounts.
    pub admin_creds: String,
    /// The ingest key: every tenant account lists it as a scoped signing key whose users may
    /// only publish that tenant's events, so the API, which holds it, can reach each tenant's
    /// streams and nothing else.
    pub ingest: KeyPair,
}

impl std::fmt::Debug for Bootstrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bootstrap")
            .field("operator", &self.operator.public_key())
            .field("system_account", &self.system_account)
            .field("ingest", &self.ingest.public_key())
            .finish_non_exhaustive()
    }
}

/// Why a bootstrap could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// A key is malformed or of the wrong role.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A JWT could not be signed.
    #[error(transparent)]
    Jwt(#[from] JwtError),
}

impl Bootstrap {
    /// A new operator, system account and administrator, issued at `iat`.
    pub fn generate(iat: u64) -> Result<Bootstrap, BootstrapError> {
        Self::from_keys(
            keys::generate(Role::Operator),
            keys::generate(Role::Account),
            keys::generate(Role::User),
            keys::generate(Role::Account),
            iat,
        )
    }

    /// The bootstrap of an operator seed and an ingest seed kept from an earlier run (local
    /// mode keeps only these two): the system account and its administrator are derived from
    /// the operator seed, so the same seeds always give the same installation.
    pub fn from_seeds(
        operator_seed: &str,
        ingest_seed: &str,
        iat: u64,
    ) -> Result<Bootstrap, BootstrapError> {
        let operator = keys::from_seed(Role::Operator, operator_seed.trim())?;
        let ingest = keys::from_seed(Role::Account, ingest_seed.trim())?;
        let system = crate::derive::system_account_key(&operator);
        let admin = crate::derive::system_admin_key(&operator);
        Self::from_keys(operator, system, admin, ingest, iat)
    }

    fn from_keys(
        operator: KeyPair,
        system: KeyPair,
        admin: KeyPair,
        ingest: KeyPair,
        iat: u64,
    ) -> Result<Bootstrap, BootstrapError> {
        let operator_jwt = jwt::encode(
            OperatorClaims::operator(
                &operator.public_key(),
                OPERATOR_NAME,
                &system.public_key(),
                iat,
            ),
            &operator,
        )?;
        let system_account_jwt = jwt::encode(
            AccountClaims::account(
                &operator.public_key(),
                &system.public_key(),
                SYSTEM_ACCOUNT_NAME,
                &AccountLimits::system(),
                iat,
            ),
            &operator,
        )?;
        let admin_jwt = jwt::encode(
            UserClaims::user(
                &system.public_key(),
                &admin.public_key(),
                "account-admin",
                permissions::account_admin(),
                iat,
            ),
            &system,
        )?;
        Ok(Bootstrap {
            operator,
            operator_jwt,
            system_account: system.public_key(),
            system_account_jwt,
            admin_creds: creds_file(&admin_jwt, &keys::seed(&admin)),
            ingest,
        })
    }

    /// The ingest key's seed (`SA…`), the secret the API keeps.
    pub fn ingest_seed(&self) -> String {
        keys::seed(&self.ingest)
    }

    /// The operator's seed (`SO…`), the secret the Sluice operator keeps.
    pub fn operator_seed(&self) -> String {
        keys::seed(&self.operator)
    }

    /// The server configuration for this bootstrap, listening on `host:port`, keeping its
    /// account JWTs and JetStream data under `data_dir`.
    pub fn server_config(&self, host: &str, port: u16, data_dir: &Path) -> ServerConfig {
        ServerConfig {
            host: host.into(),
            port,
            operator_jwt: self.operator_jwt.clone(),
            system_account: self.system_account.clone(),
            system_account_jwt: self.system_account_jwt.clone(),
            resolver_dir: data_dir.join("jwt"),
            jetstream_store_dir: data_dir.join("jetstream"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_administrator_belongs_to_the_system_account_the_operator_names() {
        let b = Bootstrap::generate(1_700_000_000).unwrap();
        let op: crate::claims::Claims<crate::claims::OperatorNats> =
            jwt::decode(&b.operator_jwt).unwrap();
        assert_eq!(op.nats.system_account, b.system_account);
        let admin_jwt = b.admin_creds.lines().nth(1).unwrap();
        let admin: crate::claims::Claims<crate::claims::UserNats> = jwt::decode(admin_jwt).unwrap();
        assert_eq!(admin.iss, b.system_account);
        assert!(b.operator_seed().starts_with("SO"));
        assert!(
            !format!("{b:?}").contains(&b.operator_seed()),
            "no secret in Debug"
        );
        let config = b
            .server_config("127.0.0.1", 4222, Path::new("/data"))
            .render();
        assert!(config.contains(&b.system_account));
    }

    #[test]
    fn the_same_seeds_give_the_same_installation() {
        let b = Bootstrap::generate(1).unwrap();
        let again = Bootstrap::from_seeds(&b.operator_seed(), &b.ingest_seed(), 2).unwrap();
        let twice = Bootstrap::from_seeds(&b.operator_seed(), &b.ingest_seed(), 3).unwrap();
        assert_eq!(again.system_account, twice.system_account);
        assert_eq!(again.operator.public_key(), b.operator.public_key());
        assert_eq!(again.ingest.public_key(), b.ingest.public_key());
        assert!(Bootstrap::from_seeds(&b.ingest_seed(), &b.ingest_seed(), 1).is_err());
    }
}
