//! How Sluice's components connect to the platform's broker: the worker from its route
//! configuration ([`options`]), the operator and the API with creds they hold in memory; all
//! of them with the same TLS settings ([`with_tls`]).

use async_nats::ConnectOptions;
use sluice_core::route::{BrokerClient, BrokerTls};
use std::path::PathBuf;

/// `options` with TLS as `tls` says: TLS required, the server checked against the CA file
/// (the system's roots when unset), a client certificate presented when both of its files
/// are set. `None` leaves the options as they are (TLS only when the server asks for it).
pub fn with_tls(mut options: ConnectOptions, tls: Option<&BrokerTls>) -> ConnectOptions {
    let Some(tls) = tls else {
        return options;
    };
    options = options.require_tls(true);
    if let Some(ca) = &tls.ca_file {
        options = options.add_root_certificates(PathBuf::from(ca));
    }
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        options = options.add_client_certificate(PathBuf::from(cert), PathBuf::from(key));
    }
    options
}

/// The connect options of a worker: its route user's creds file, its inbox prefix and TLS.
pub async fn options(broker: &BrokerClient) -> Result<ConnectOptions, String> {
    let mut options = ConnectOptions::new();
    if let Some(path) = &broker.credentials_file {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| format!("credentials file {path}: {e}"))?;
    }
    if let Some(prefix) = &broker.inbox_prefix {
        options = options.custom_inbox_prefix(prefix);
    }
    Ok(with_tls(options, broker.tls.as_ref()))
}
