//! Tenant accounts at a real nats-server in operator mode, run by the operator: each Tenant
//! gets its own account with its quota's JetStream limits, its Streams are made in that
//! account and nowhere else, the broker itself stops a stream at the tenant's storage quota
//! while other tenants go on, and deleting the Tenant deletes its account, closing the
//! connections that hold its credentials.

use async_nats::jetstream;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use sluice_operator::accounts::{Accounts, BrokerAuth};
use sluice_operator::config::OperatorConfig;
use sluice_testkit::SimCluster;
use sluice_testkit::nats::OperatorModeNats;
use std::time::Duration;

mod common;
use common::{Operator, client, eventually, operator_client};

fn auth(nats: &OperatorModeNats) -> BrokerAuth {
    BrokerAuth::new(
        nats.bootstrap.operator_seed(),
        nats.bootstrap.admin_creds.clone(),
        Some(nats.bootstrap.ingest.public_key()),
    )
}

async fn create_tenant(c: &Client, name: &str, quota: serde_json::Value) -> String {
    let t: sluice_crd::Tenant = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": name}, "spec": {"quota": quota}
    }))
    .unwrap();
    let t = Api::<sluice_crd::Tenant>::all(c.clone())
        .create(&PostParams::default(), &t)
        .await
        .unwrap();
    t.uid().unwrap()
}

async fn create_stream(c: &Client, tenant: &str, name: &str) {
    let ns = format!("sluice-{tenant}");
    eventually("the tenant namespace", || async {
        Api::<k8s_openapi::api::core::v1::Namespace>::all(c.clone())
            .get_opt(&ns)
            .await
            .unwrap()
            .is_some()
    })
    .await;
    let s: sluice_crd::Stream = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Stream",
        "metadata": {"name": name, "namespace": ns}, "spec": {}
    }))
    .unwrap();
    let streams = Api::<sluice_crd::Stream>::namespaced(c.clone(), &ns);
    streams.create(&PostParams::default(), &s).await.unwrap();
    eventually("the stream provisioned", || async {
        streams.get(name).await.unwrap().status.is_some_and(|st| {
            st.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status.to_string() == "True")
        })
    })
    .await;
}

/// A JetStream client in the account of the tenant `uid`, with its stream manager's creds.
async fn js_of(nats: &OperatorModeNats, accounts: &Accounts, uid: &str) -> jetstream::Context {
    js_with(nats, &accounts.stream_manager_creds(uid).unwrap()).await
}

/// A JetStream client of the tenant `name` (`uid`) as ingest publishes: its ingest user.
async fn ingest_of(
    nats: &OperatorModeNats,
    accounts: &Accounts,
    name: &str,
    uid: &str,
) -> jetstream::Context {
    js_with(nats, &accounts.ingest_creds(name, uid).unwrap()).await
}

async fn js_with(nats: &OperatorModeNats, creds: &str) -> jetstream::Context {
    let client = sluice_operator::accounts::connect(&nats.url, creds)
        .await
        .expect("the tenant's user connects");
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .build(client)
}

/// Publishes 1 KiB events until the broker refuses one; answers the refusal.
async fn fill(js: &jetstream::Context, subject: &str) -> String {
    let payload = "x".repeat(1024);
    for _ in 0..1000 {
        let ack = match js
            .publish(subject.to_string(), payload.clone().into())
            .await
        {
            Ok(ack) => ack.await,
            Err(e) => return e.to_string(),
        };
        if let Err(e) = ack {
            return e.to_string();
        }
    }
    panic!("1000 KiB went into {subject} without a refusal");
}

#[test]
fn tenants_get_accounts_their_streams_and_quota_live_there_and_deletion_revokes() {
    let nats = OperatorModeNats::start();
    let sim = SimCluster::start();
    sim.block_on(async {
        let admin = client(&sim);
        let config = OperatorConfig {
            nats_url: nats.url.clone(),
            broker_auth: Some(auth(&nats)),
            ..Default::default()
        };
        let op = Operator::start_with(operator_client(&sim), config, None);
        let accounts = Accounts::new(&nats.url, &auth(&nats), None).unwrap();

        let acme = create_tenant(&admin, "acme", json!({"maxStreams": 2, "storage": "64Ki"})).await;
        let bravo = create_tenant(&admin, "bravo", json!({"maxStreams": 2})).await;
        create_stream(&admin, "acme", "orders").await;
        create_stream(&admin, "bravo", "orders").await;

        // No anonymous client.
        assert!(
            async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_secs(2))
                .connect(&nats.url)
                .await
                .is_err(),
            "an anonymous connection is refused"
        );

        // Each stream lives in its tenant's account, invisible from the other's.
        let acme_js = js_of(&nats, &accounts, &acme).await;
        let bravo_js = js_of(&nats, &accounts, &bravo).await;
        acme_js
            .get_stream("sluice_acme_orders")
            .await
            .expect("acme's stream in acme's account");
        assert!(acme_js.get_stream("sluice_bravo_orders").await.is_err());
        assert!(bravo_js.get_stream("sluice_acme_orders").await.is_err());

        // The broker stops acme at its storage quota; bravo goes on.
        let acme_ingest = ingest_of(&nats, &accounts, "acme", &acme).await;
        let bravo_ingest = ingest_of(&nats, &accounts, "bravo", &bravo).await;
        let refusal = fill(&acme_ingest, "sluice.acme.orders.events").await;
        assert!(
            refusal.contains("10002") || refusal.contains("resource limits exceeded"),
            "{refusal}"
        );
        bravo_ingest
            .publish("sluice.bravo.orders.events", "still fine".into())
            .await
            .unwrap()
            .await
            .expect("bravo is unaffected");

        // A bigger quota is pushed to the broker: acme takes events again.
        Api::<sluice_crd::Tenant>::all(admin.clone())
            .patch(
                "acme",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"quota": {"storage": "1Mi"}}})),
            )
            .await
            .unwrap();
        eventually("the raised storage quota at the broker", || async {
            match acme_ingest
                .publish("sluice.acme.orders.events", "more".into())
                .await
            {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            }
        })
        .await;

        // Deleting acme deletes its account: its connection is closed, new ones refused.
        let (tx, mut closed) = tokio::sync::mpsc::unbounded_channel();
        let watched = async_nats::ConnectOptions::with_credentials(
            &accounts.stream_manager_creds(&acme).unwrap(),
        )
        .unwrap()
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(e);
            }
        })
        .connect(&nats.url)
        .await
        .expect("acme's credentials work while acme exists");
        Api::<sluice_crd::Tenant>::all(admin.clone())
            .delete("acme", &DeleteParams::default())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(e) = closed.recv().await {
                if matches!(e, async_nats::Event::Disconnected) {
                    return;
                }
            }
        })
        .await
        .expect("acme's connection is closed within seconds of the deletion");
        drop(watched);
        eventually("the Tenant gone, its finalizer done", || async {
            Api::<sluice_crd::Tenant>::all(admin.clone())
                .get_opt("acme")
                .await
                .unwrap()
                .is_none()
        })
        .await;
        let creds = accounts.stream_manager_creds(&acme).unwrap();
        assert!(
            sluice_operator::accounts::connect(&nats.url, &creds)
                .await
                .is_err(),
            "acme's credentials are refused after its deletion"
        );
        // bravo is untouched.
        bravo_js
            .get_stream("sluice_bravo_orders")
            .await
            .expect("bravo's stream is still there");
        op.assert_running();
        op.stop().await;
    });
}
