//! The nats-server configuration for operator mode: the operator's JWT, the system account, the
//! full account resolver (accounts are created and deleted at run time, and kept in a
//! directory), and JetStream.

use std::path::PathBuf;

/// How often a full resolver compares its accounts with its cluster peers'.
pub const RESOLVER_SYNC_INTERVAL: &str = "2m";

/// What the server configuration holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address the client port listens on.
    pub host: String,
    /// The client port.
    pub port: u16,
    /// The operator's JWT (self-signed).
    pub operator_jwt: String,
    /// Public key of the system account (the one the operator JWT names).
    pub system_account: String,
    /// The system account's JWT, preloaded so the server knows it before any update.
    pub system_account_jwt: String,
    /// Where the full resolver keeps account JWTs.
    pub resolver_dir: PathBuf,
    /// Where JetStream keeps its data.
    pub jetstream_store_dir: PathBuf,
}

/// A double-quoted string of the configuration format (its escapes are JSON's).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

impl ServerConfig {
    /// The configuration file's text. Account deletion is allowed (`allow_delete`), so that a
    /// tenant's deletion revokes its account.
    pub fn render(&self) -> String {
        format!(
            "host: {host}\n\
             port: {port}\n\
             operator: {operator}\n\
             system_account: {system}\n\
             resolver: {{\n  type: full\n  dir: {resolver_dir}\n  allow_delete: true\n  \
             interval: {interval}\n}}\n\
             resolver_preload: {{\n  {system}: {system_jwt}\n}}\n\
             jetstream: {{\n  store_dir: {store_dir}\n}}\n",
            host = quoted(&self.host),
            port = self.port,
            operator = quoted(&self.operator_jwt),
            system = self.system_account,
            resolver_dir = quoted(&self.resolver_dir.to_string_lossy()),
            interval = quoted(RESOLVER_SYNC_INTERVAL),
            system_jwt = quoted(&self.system_account_jwt),
            store_dir = quoted(&self.jetstream_store_dir.to_string_lossy()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_mode_with_a_full_resolver() {
        let text = ServerConfig {
            host: "127.0.0.1".into(),
            port: 4222,
            operator_jwt: "eyJop".into(),
            system_account: "ASYS".into(),
            system_account_jwt: "eyJsys".into(),
            resolver_dir: "/data/jwt".into(),
            jetstream_store_dir: "/data/js".into(),
        }
        .render();
        assert_eq!(
            text,
            r#"host: "127.0.0.1"
port: 4222
operator: "eyJop"
system_account: ASYS
resolver: {
  type: full
  dir: "/data/jwt"
  allow_delete: true
  interval: "2m"
}
resolver_preload: {
  ASYS: "eyJsys"
}
jetstream: {
  store_dir: "/data/js"
}
"#
        );
    }
}
