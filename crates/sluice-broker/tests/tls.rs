//! TLS to the broker, as every component connects (`sluice_broker::client`): against a real
//! nats-server that requires TLS, with a certificate authority and a server certificate made
//! for the test (the `openssl` command), a client given the CA connects and works; one that
//! checks against the system roots is refused; one that does not ask for TLS still upgrades
//! (the server requires it), and the worker's route configuration (`broker.tls.caFile`) works
//! the same way. A server that asks for client certificates (`verify: true`) admits a client
//! presenting one the CA signed, and refuses one that presents none.

mod common;

use common::Server;
use sluice_core::route::{BrokerClient, BrokerTls};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command (the test command installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.crt`) and a server certificate for 127.0.0.1 it signed (`server.crt`,
/// `server.key`), in `dir`.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=sluice test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    );
}

/// A client certificate the CA of `certificates(dir)` signed (`client.crt`, `client.key`).
fn client_certificate(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=sluice-operator",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
        ],
    );
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "client.ext",
            "-out",
            "client.crt",
        ],
    );
}

async fn connect(url: &str, tls: Option<&BrokerTls>) -> Result<async_nats::Client, String> {
    sluice_broker::client::with_tls(async_nats::ConnectOptions::new(), tls)
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_client_given_the_ca_connects_over_tls_and_one_without_it_is_refused() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let file = |name: &str| certs.path().join(name).display().to_string();
    let (cert, key) = (file("server.crt"), file("server.key"));
    let server = Server::start(|port, _| {
        format!(
            "host: \"127.0.0.1\"\nport: {port}\ntls {{\n  cert_file: \"{cert}\"\n  key_file: \"{key}\"\n  timeout: 5\n}}\n"
        )
    });
    let with_ca = BrokerTls {
        ca_file: Some(file("ca.crt")),
        ..Default::default()
    };

    let client = connect(&server.url, Some(&with_ca))
        .await
        .expect("the CA the platform gives checks the broker's certificate");
    client.publish("t", "over tls".into()).await.unwrap();
    client.flush().await.expect("the connection works");

    let refused = connect(&server.url, Some(&BrokerTls::default()))
        .await
        .expect_err("the system roots do not know the test CA");
    assert!(
        refused.to_lowercase().contains("certificate") || refused.to_lowercase().contains("tls"),
        "{refused}"
    );

    // The worker's connect options, from its route configuration.
    let worker = sluice_broker::client::options(&BrokerClient {
        tls: Some(with_ca),
        inbox_prefix: Some("_INBOX_route_r".into()),
        ..Default::default()
    })
    .await
    .unwrap()
    .connection_timeout(Duration::from_secs(5))
    .connect(&server.url)
    .await
    .expect("a worker with the CA file in its route configuration");
    worker.flush().await.unwrap();
}

#[tokio::test]
async fn a_broker_that_verifies_clients_admits_a_signed_certificate_and_refuses_none() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    client_certificate(certs.path());
    let file = |name: &str| certs.path().join(name).display().to_string();
    let (cert, key, ca) = (file("server.crt"), file("server.key"), file("ca.crt"));
    let server = Server::start(|port, _| {
        format!(
            "host: \"127.0.0.1\"\nport: {port}\ntls {{\n  cert_file: \"{cert}\"\n  key_file: \"{key}\"\n  ca_file: \"{ca}\"\n  verify: true\n  timeout: 5\n}}\n"
        )
    });
    let with_certificate = BrokerTls {
        ca_file: Some(file("ca.crt")),
        cert_file: Some(file("client.crt")),
        key_file: Some(file("client.key")),
    };
    let client = connect(&server.url, Some(&with_certificate))
        .await
        .expect("a client certificate the CA signed is admitted");
    client.publish("t", "mutual tls".into()).await.unwrap();
    client.flush().await.expect("the connection works");

    let without = BrokerTls {
        ca_file: Some(file("ca.crt")),
        ..Default::default()
    };
    connect(&server.url, Some(&without))
        .await
        .expect_err("a client without a certificate is refused by a broker that verifies clients");

    // The worker presents the certificate its route configuration names.
    let worker = sluice_broker::client::options(&BrokerClient {
        tls: Some(with_certificate),
        inbox_prefix: Some("_INBOX_route_r".into()),
        ..Default::default()
    })
    .await
    .unwrap()
    .connection_timeout(Duration::from_secs(5))
    .connect(&server.url)
    .await
    .expect("a worker with a client certificate in its route configuration");
    worker.flush().await.unwrap();
}
