//! What the operator's integration tests share: a kube client for kubesim, the operator run
//! in-process, and polling until a condition holds.

#![allow(dead_code)] // each test binary uses its own part of this module

use kube::{Client, Config};
use sluice_operator::Error;
use sluice_operator::config::OperatorConfig;
use sluice_operator::leader::LeaseConfig;
use sluice_operator::run::{RunOptions, run};
use sluice_testkit::SimCluster;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The NATS server with JetStream every test uses: `$SLUICE_TEST_NATS_URL`, by default
/// `nats://127.0.0.1:4222`.
pub fn nats_url() -> String {
    std::env::var("SLUICE_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A kube client for the simulated cluster, as its administrator (the tests' own actions, as
/// a platform operator or a tenant would take them).
pub fn client(sim: &SimCluster) -> Client {
    Client::try_from(Config::new(sim.url().parse().unwrap())).unwrap()
}

/// A kube client with the operator's ServiceAccount token: kubesim lets it do exactly what the
/// Helm chart's RBAC and admission policies grant.
pub fn operator_client(sim: &SimCluster) -> Client {
    client_with_token(sim, &sim.operator_token())
}

/// A kube client that sends `token`.
pub fn client_with_token(sim: &SimCluster, token: &str) -> Client {
    let mut config = Config::new(sim.url().parse().unwrap());
    config.auth_info.token = Some(token.to_string().into());
    Client::try_from(config).unwrap()
}

/// The operator, running in this process until [`Operator::stop`].
pub struct Operator {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), Error>>,
}

impl Operator {
    /// Starts the operator with the default configuration against the shared NATS server,
    /// with leader election when `lease` is given, as the chart runs it: with its
    /// ServiceAccount's token, under the chart's RBAC.
    pub fn start(sim: &SimCluster, lease: Option<LeaseConfig>) -> Self {
        Self::start_as(operator_client(sim), lease)
    }

    /// Starts the operator with `client`'s identity.
    pub fn start_as(client: Client, lease: Option<LeaseConfig>) -> Self {
        Self::start_with(
            client,
            OperatorConfig {
                nats_url: nats_url(),
                ..Default::default()
            },
            lease,
        )
    }

    /// Starts the operator with `client`'s identity and `config`.
    pub fn start_with(client: Client, config: OperatorConfig, lease: Option<LeaseConfig>) -> Self {
        let (tx, rx) = oneshot::channel::<()>();
        let opts = RunOptions {
            config,
            metrics_addr: None,
            leader_election: lease,
        };
        let task = tokio::spawn(run(client, opts, async move {
            let _ = rx.await;
        }));
        Operator {
            stop: Some(tx),
            task,
        }
    }

    /// Fails the test when the operator has stopped by itself (crashed or returned).
    pub fn assert_running(&self) {
        assert!(!self.task.is_finished(), "the operator stopped by itself");
    }

    /// Asks the operator to stop and waits for it (at most 20 s).
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), &mut self.task).await;
    }
}

/// Polls `check` every 100 ms until it holds; fails the test after 30 s naming `what`.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Creates the namespace `name`, as something other than the operator would (the chart's
/// install namespace, a team's own namespace), with `labels`.
pub async fn create_namespace(c: &Client, name: &str, labels: serde_json::Value) {
    let ns: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name, "labels": labels}}))
            .unwrap();
    kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(c.clone())
        .create(&kube::api::PostParams::default(), &ns)
        .await
        .unwrap();
}
