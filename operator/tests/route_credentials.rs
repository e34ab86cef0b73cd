//! Route users at a real nats-server in operator mode, run by the operator under the chart's
//! RBAC and admission policies: each route gets its own user in a credentials Secret its pods
//! mount; the user can do its route's work and nothing else; it rotates (new creds, pods
//! rolled, the old user shut out after the grace); deleting the pipeline shuts its user out;
//! and the operator, which cannot read Secrets, cannot write one that is not broker
//! credentials either. Rotation on demand (the Pipeline's rotate annotation) shuts the old
//! user out at once.

use async_nats::jetstream::{self, consumer::pull};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use sluice_operator::accounts::BrokerAuth;
use sluice_operator::config::OperatorConfig;
use sluice_operator::route_users::{ROTATE_ANNOTATION, Rotation, USER_ANNOTATION};
use sluice_testkit::SimCluster;
use sluice_testkit::nats::OperatorModeNats;
use std::time::Duration;

mod common;
use common::{Operator, client, eventually, operator_client};

const NS: &str = "sluice-acme";
const ROUTE: &str = "orders-alerts";

async fn create(c: &Client, yaml: serde_json::Value) {
    let obj: kube::api::DynamicObject = serde_json::from_value(yaml).unwrap();
    let gvk = kube::api::GroupVersionKind::try_from(obj.types.as_ref().unwrap()).unwrap();
    let (ar, _) = kube::discovery::pinned_kind(c, &gvk).await.unwrap();
    let api: Api<kube::api::DynamicObject> = match obj.namespace() {
        Some(ns) => Api::namespaced_with(c.clone(), &ns, &ar),
        None => Api::all_with(c.clone(), &ar),
    };
    api.create(&PostParams::default(), &obj).await.unwrap();
}

/// The route's current user (from its pods' template) and its creds (from its Secret).
async fn current_user(admin: &Client) -> Option<(String, String)> {
    let d = Api::<Deployment>::namespaced(admin.clone(), NS)
        .get_opt(ROUTE)
        .await
        .unwrap()?;
    let user = d
        .spec
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(USER_ANNOTATION)?
        .clone();
    let secret = Api::<Secret>::namespaced(admin.clone(), NS)
        .get_opt(&format!("{ROUTE}-broker"))
        .await
        .unwrap()?;
    let creds = String::from_utf8(secret.data?.get("user.creds")?.0.clone()).unwrap();
    let seed = creds.lines().find(|l| l.starts_with("SU"))?;
    let key = nkeys::KeyPair::from_seed(seed).unwrap().public_key();
    (key == user).then_some((user, creds))
}

/// A client with a route's creds, on the route's inbox prefix, with its events.
async fn connect(
    url: &str,
    creds: &str,
) -> (
    async_nats::Client,
    tokio::sync::mpsc::UnboundedReceiver<async_nats::Event>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::with_credentials(creds)
        .unwrap()
        .custom_inbox_prefix(sluice_broker::permissions::route_inbox_prefix(ROUTE))
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(e);
            }
        })
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .expect("the route's user connects");
    (client, rx)
}

fn js(client: &async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(3))
        .build(client.clone())
}

/// Waits until the connection is closed by the server, and checks `creds` are refused.
async fn assert_shut_out(
    url: &str,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<async_nats::Event>,
    creds: &str,
    what: &str,
) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(e) = events.recv().await {
            if matches!(
                e,
                async_nats::Event::Disconnected | async_nats::Event::Closed
            ) {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: the connection was not closed"));
    let refused = async_nats::ConnectOptions::with_credentials(creds)
        .unwrap()
        .connection_timeout(Duration::from_secs(3))
        .connect(url)
        .await
        .expect_err("the old credentials are refused");
    assert_eq!(
        refused.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation,
        "{what}: {refused}"
    );
}

/// The Tenant acme, its Stream orders and the Pipeline orders with one sink (the route
/// orders-alerts); answers once the route's credentials are in place.
async fn tenant_with_pipeline(admin: &Client) {
    create(
        admin,
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Tenant",
               "metadata": {"name": "acme"},
               "spec": {"owners": [{"kind": "User", "name": "alice"}], "quota": {}}}),
    )
    .await;
    eventually("the tenant namespace", || async {
        Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
            .get_opt(NS)
            .await
            .unwrap()
            .is_some()
    })
    .await;
    create(
        admin,
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Stream",
               "metadata": {"name": "orders", "namespace": NS}, "spec": {}}),
    )
    .await;
    create(
        admin,
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline",
               "metadata": {"name": "orders", "namespace": NS},
               "spec": {"source": {"stream": "orders"},
                        "sinks": [{"name": "alerts", "nats": {"subject": "alerts"}}]}}),
    )
    .await;

    // The route's user, in its Secret, named by its pods.
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while current_user(admin).await.is_none() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    if waited.is_err() {
        let p = Api::<sluice_crd::Pipeline>::namespaced(admin.clone(), NS)
            .get("orders")
            .await
            .unwrap();
        panic!(
            "no route credentials; the pipeline's status: {}",
            serde_json::to_string_pretty(&p.status).unwrap()
        );
    }
}

#[test]
fn routes_get_their_own_rotated_users_and_lose_them_with_their_pipeline() {
    let nats = OperatorModeNats::start();
    let sim = SimCluster::start();
    sim.block_on(async {
        let admin = client(&sim);
        let mut auth = BrokerAuth::new(
            nats.bootstrap.operator_seed(),
            nats.bootstrap.admin_creds.clone(),
            Some(nats.bootstrap.ingest.public_key()),
        );
        // Short epochs, so that the test sees a rotation.
        auth.rotation = Rotation {
            period: Duration::from_secs(20),
            grace: Duration::from_secs(4),
        };
        let config = OperatorConfig {
            nats_url: nats.url.clone(),
            broker_auth: Some(auth),
            ..Default::default()
        };
        let op = Operator::start_with(operator_client(&sim), config, None);

        tenant_with_pipeline(&admin).await;
        let (first_user, first_creds) = current_user(&admin).await.unwrap();
        let secret = Api::<Secret>::namespaced(admin.clone(), NS)
            .get(&format!("{ROUTE}-broker"))
            .await
            .unwrap();
        assert_eq!(secret.labels()["sluice.dev/credentials"], "broker");
        assert_eq!(secret.owner_references()[0].kind, "Pipeline");

        // It does the route's work: binds its durable consumer on its stream and reads it.
        let (route, mut route_events) = connect(&nats.url, &first_creds).await;
        let stream = js(&route)
            .get_stream("sluice_acme_orders")
            .await
            .expect("the route reads its source stream's info");
        let consumer = stream
            .get_or_create_consumer(
                "orders_alerts",
                pull::Config {
                    durable_name: Some("orders_alerts".into()),
                    filter_subject: "sluice.acme.orders.events".into(),
                    ..Default::default()
                },
            )
            .await
            .expect("the route creates its own durable consumer");
        consumer
            .fetch()
            .max_messages(1)
            .expires(Duration::from_millis(200))
            .messages()
            .await
            .expect("the route pulls from it");
        // And nothing else: another consumer, deleting the stream.
        assert!(
            stream
                .create_consumer(pull::Config {
                    durable_name: Some("other".into()),
                    ..Default::default()
                })
                .await
                .is_err(),
            "another route's consumer"
        );
        assert!(
            js(&route)
                .delete_stream("sluice_acme_orders")
                .await
                .is_err(),
            "deleting the stream"
        );

        // The operator writes broker credentials only: a tenant's Secret is out of its reach,
        // and it reads no Secret at all.
        let operator = operator_client(&sim);
        Api::<Secret>::namespaced(admin.clone(), NS)
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "db", "namespace": NS},
                    "stringData": {"password": "tenant-secret"}
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        let overwrite = Api::<Secret>::namespaced(operator.clone(), NS)
            .patch(
                "db",
                &PatchParams::apply("sluice-operator").force(),
                &Patch::Apply(json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "db", "labels": {"sluice.dev/credentials": "broker"}},
                    "stringData": {"password": "x"}
                })),
            )
            .await
            .expect_err("the operator may not overwrite a tenant's Secret");
        assert!(
            overwrite.to_string().contains("broker credentials"),
            "{overwrite}"
        );
        let read = Api::<Secret>::namespaced(operator.clone(), NS)
            .get("db")
            .await
            .expect_err("the operator may not read Secrets");
        assert!(read.to_string().contains("forbidden"), "{read}");

        // Rotation: new creds in the Secret and the pods, then the old user is shut out after
        // the grace, while the new one works.
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                if let Some((user, _)) = current_user(&admin).await
                    && user != first_user
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
        .await
        .expect("the route's credentials rotate within an epoch");
        let (_, second_creds) = current_user(&admin).await.unwrap();
        let (second, mut second_events) = connect(&nats.url, &second_creds).await;
        assert_shut_out(&nats.url, &mut route_events, &first_creds, "rotation").await;
        second.flush().await.expect("the new user goes on");

        // Deleting the pipeline shuts its user out.
        Api::<sluice_crd::Pipeline>::namespaced(admin.clone(), NS)
            .delete("orders", &DeleteParams::default())
            .await
            .unwrap();
        assert_shut_out(
            &nats.url,
            &mut second_events,
            &second_creds,
            "pipeline deleted",
        )
        .await;
        op.assert_running();
        op.stop().await;
    });
}

#[test]
fn the_rotate_annotation_replaces_a_routes_user_at_once() {
    let nats = OperatorModeNats::start();
    let sim = SimCluster::start();
    sim.block_on(async {
        let admin = client(&sim);
        // The default rotation (a week): only the annotation can change the user here.
        let config = OperatorConfig {
            nats_url: nats.url.clone(),
            broker_auth: Some(BrokerAuth::new(
                nats.bootstrap.operator_seed(),
                nats.bootstrap.admin_creds.clone(),
                Some(nats.bootstrap.ingest.public_key()),
            )),
            ..Default::default()
        };
        let op = Operator::start_with(operator_client(&sim), config, None);
        tenant_with_pipeline(&admin).await;
        let (first_user, first_creds) = current_user(&admin).await.unwrap();
        let (_first, mut first_events) = connect(&nats.url, &first_creds).await;

        let pipelines = Api::<sluice_crd::Pipeline>::namespaced(admin.clone(), NS);
        pipelines
            .patch(
                "orders",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {ROTATE_ANNOTATION: "leaked-1"}}}),
                ),
            )
            .await
            .unwrap();
        let started = std::time::Instant::now();
        assert_shut_out(
            &nats.url,
            &mut first_events,
            &first_creds,
            "rotation on demand",
        )
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "shut out at once, not after a grace: {:?}",
            started.elapsed()
        );
        let (second_user, second_creds) = eventually_user(&admin, &first_user).await;
        let (second, _) = connect(&nats.url, &second_creds).await;
        js(&second)
            .get_stream("sluice_acme_orders")
            .await
            .expect("the new user does the route's work");

        // Another change to the pipeline, with the annotation as it is, keeps the user.
        pipelines
            .patch(
                "orders",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(current_user(&admin).await.unwrap().0, second_user);
        second
            .flush()
            .await
            .expect("the current user stays connected");
        op.assert_running();
        op.stop().await;
    });
}

/// Waits for the route's user to be another than `old`; answers it and its creds.
async fn eventually_user(admin: &Client, old: &str) -> (String, String) {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some((user, creds)) = current_user(admin).await
                && user != old
            {
                return (user, creds);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await
    .expect("the route gets a new user")
}
