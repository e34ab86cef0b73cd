//! The command line of the operator.

use clap::Parser;
use sluice_operator::{Cli, Command, cli};

#[tokio::test]
async fn crds_prints_the_crd_yaml() {
    let parsed = Cli::try_parse_from(["sluice-operator", "crds"]).expect("`crds` parses");
    assert!(matches!(parsed.command, Command::Crds));
    let mut out = Vec::new();
    cli(parsed, &mut out).await.expect("crds runs");
    assert_eq!(
        String::from_utf8(out).expect("UTF-8"),
        sluice_crd::crds_yaml()
    );
}

#[test]
fn a_subcommand_is_required_and_unknown_ones_are_refused() {
    assert!(Cli::try_parse_from(["sluice-operator"]).is_err());
    assert!(Cli::try_parse_from(["sluice-operator", "reconcile"]).is_err());
}

/// `broker-bootstrap` writes files that work together: a nats-server started with the written
/// configuration lets the operator, with the written seed and creds, create a tenant account;
/// the seeds are private files, and an existing bootstrap is never overwritten.
#[tokio::test]
async fn broker_bootstrap_writes_a_working_installation() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let files = dir.path().join("broker");
    let data = dir.path().join("data");
    let args = [
        "sluice-operator",
        "broker-bootstrap",
        "--dir",
        files.to_str().unwrap(),
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let mut out = Vec::new();
    cli(Cli::try_parse_from(args).unwrap(), &mut out)
        .await
        .expect("broker-bootstrap runs");
    let printed = String::from_utf8(out).unwrap();
    for (name, _) in sluice_operator::BROKER_BOOTSTRAP_FILES {
        assert!(printed.contains(name), "{printed}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(files.join("operator.seed"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "the operator seed is readable by its owner only"
    );
    let again = cli(Cli::try_parse_from(args).unwrap(), &mut Vec::new()).await;
    assert!(again.is_err(), "an existing bootstrap is not overwritten");

    let mut server = std::process::Command::new("nats-server")
        .arg("-c")
        .arg(files.join("nats-server.conf"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nats-server (scripts/test.sh installs it)");
    let url = format!("nats://127.0.0.1:{port}");
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let read = |n: &str| std::fs::read_to_string(files.join(n)).unwrap();
    let accounts = sluice_operator::accounts::Accounts::new(
        &url,
        &sluice_operator::accounts::BrokerAuth::new(
            read("operator.seed"),
            read("admin.creds"),
            Some(read("ingest.pub")),
        ),
        None,
    )
    .unwrap();
    let tenant: sluice_crd::Tenant = serde_json::from_value(serde_json::json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "acme", "uid": "uid-1"}, "spec": {"quota": {"maxStreams": 1}}
    }))
    .unwrap();
    let result = accounts.ensure(&tenant, &[]).await;
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(
        result.expect("the account is created"),
        accounts.account_of("uid-1")
    );
}

#[test]
fn broker_bootstrap_needs_a_dir_or_a_secret_and_not_both() {
    let parse = |args: &[&str]| {
        Cli::try_parse_from(["sluice-operator", "broker-bootstrap"].iter().chain(args))
    };
    assert!(parse(&[]).is_err(), "neither");
    assert!(parse(&["--dir", "d", "--secret", "s"]).is_err(), "both");
    assert!(parse(&["--secret", "s", "--namespace", "sluice-system"]).is_ok());
}

/// `broker-bootstrap --secret` (the chart's hook Job) creates the Secret once, and keeps it
/// as it is when it exists, so the identities of an installation never change under it.
#[test]
fn broker_bootstrap_creates_the_secret_once_and_then_keeps_it() {
    use k8s_openapi::api::core::v1::Secret;
    use sluice_operator::bootstrap::{SecretOutcome, ServerPlace, create_secret};
    let sim = sluice_testkit::SimCluster::start();
    sim.block_on(async {
        let client = kube::Client::try_from(kube::Config::new(sim.url().parse().unwrap())).unwrap();
        let place = ServerPlace {
            host: "0.0.0.0".into(),
            port: 4222,
            data_dir: "/data".into(),
        };
        let name = "sluice-broker-identities";
        let first = create_secret(client.clone(), "sluice-system", name, &place)
            .await
            .unwrap();
        assert_eq!(first, SecretOutcome::Created);
        let api = kube::Api::<Secret>::namespaced(client.clone(), "sluice-system");
        let made = api.get(name).await.unwrap().data.unwrap();
        for (key, _) in sluice_operator::BROKER_BOOTSTRAP_FILES {
            assert!(made.contains_key(key), "{key} in the Secret");
        }
        let again = create_secret(client.clone(), "sluice-system", name, &place)
            .await
            .unwrap();
        assert_eq!(again, SecretOutcome::Kept);
        assert_eq!(
            api.get(name).await.unwrap().data.unwrap(),
            made,
            "the existing identities are not replaced"
        );
    });
}
