//! The Stream controller against kubesim and the real NATS JetStream server.

use async_nats::jetstream;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, Config};
use rand::Rng;
use serde_json::{Value, json};
use sluice_crd::{Stream, Tenant};
use sluice_operator::config::OperatorConfig;
use sluice_operator::run::{RunOptions, run};
use sluice_testkit::SimCluster;
use std::time::Duration;

mod common;
use common::{eventually, nats_url, operator_client};

fn unique_tenant() -> String {
    format!("t{:08x}", rand::rng().random::<u32>())
}

fn stream(name: &str, retention: Value) -> Stream {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Stream",
        "metadata": {"name": name}, "spec": {"retention": retention}
    }))
    .unwrap()
}

async fn broker_stream(js: &jetstream::Context, name: &str) -> Option<jetstream::stream::Info> {
    match js.get_stream(name).await {
        Ok(mut s) => s.info().await.ok().cloned(),
        Err(_) => None,
    }
}

async fn ready(api: &Api<Stream>, name: &str) -> bool {
    api.get_opt(name)
        .await
        .unwrap()
        .and_then(|s| s.status)
        .is_some_and(|st| {
            st.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status.to_string() == "True")
        })
}

#[test]
fn streams_are_provisioned_updated_limited_and_removed() {
    let sim = SimCluster::start();
    sim.block_on(async {
        let c = Client::try_from(Config::new(sim.url().parse().unwrap())).unwrap();
        let js = jetstream::new(
            async_nats::connect(nats_url())
                .await
                .expect("NATS with JetStream runs"),
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let opts = RunOptions {
            config: OperatorConfig {
                nats_url: nats_url(),
                ..Default::default()
            },
            metrics_addr: None,
            leader_election: None,
        };
        let op = tokio::spawn(run(operator_client(&sim), opts, async move {
            let _ = rx.await;
        }));
        let t = unique_tenant();
        let tenant: Tenant = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Tenant",
            "metadata": {"name": t}, "spec": {"quota": {"maxStreams": 1}}
        }))
        .unwrap();
        Api::<Tenant>::all(c.clone())
            .create(&PostParams::default(), &tenant)
            .await
            .unwrap();
        let ns = format!("sluice-{t}");
        eventually("namespace", || async {
            Api::<k8s_openapi::api::core::v1::Namespace>::all(c.clone())
                .get_opt(&ns)
                .await
                .unwrap()
                .is_some()
        })
        .await;
        let api: Api<Stream> = Api::namespaced(c.clone(), &ns);
        api.create(
            &PostParams::default(),
            &stream("orders", json!({"maxAge": "1h", "maxBytes": 1048576})),
        )
        .await
        .unwrap();
        eventually("orders ready", || ready(&api, "orders")).await;
        let name = format!("sluice_{t}_orders");
        let info = broker_stream(&js, &name)
            .await
            .expect("broker stream exists");
        assert_eq!(info.config.subjects, [format!("sluice.{t}.orders.>")]);
        assert_eq!(info.config.max_age, Duration::from_secs(3600));
        assert_eq!(info.config.max_bytes, 1048576);
        let s = api.get("orders").await.unwrap();
        assert_eq!(
            s.status.as_ref().unwrap().subject.as_deref(),
            Some(format!("sluice.{t}.orders.events").as_str())
        );
        assert!(
            s.metadata
                .finalizers
                .unwrap()
                .contains(&"sluice.dev/broker-stream".to_string())
        );

        // Retention changes reach the broker.
        api.patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"retention": {"maxAge": "2h"}}})),
        )
        .await
        .unwrap();
        eventually("retention updated", || async {
            broker_stream(&js, &name)
                .await
                .is_some_and(|i| i.config.max_age == Duration::from_secs(7200))
        })
        .await;

        // maxStreams: the second stream waits, nothing is provisioned for it.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        api.create(&PostParams::default(), &stream("clicks", json!({})))
            .await
            .unwrap();
        eventually("clicks refused", || async {
            api.get("clicks").await.unwrap().status.is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Accepted" && c.reason.as_deref() == Some("QuotaExceeded"))
            })
        })
        .await;
        assert!(
            broker_stream(&js, &format!("sluice_{t}_clicks"))
                .await
                .is_none()
        );

        // Deleting a stream removes its broker stream; the waiting one is admitted.
        api.delete("orders", &DeleteParams::default())
            .await
            .unwrap();
        eventually("orders gone from the broker", || async {
            broker_stream(&js, &name).await.is_none()
        })
        .await;
        eventually("orders gone", || async {
            api.get_opt("orders").await.unwrap().is_none()
        })
        .await;
        eventually("clicks admitted", || ready(&api, "clicks")).await;

        // Deleting the tenant removes its remaining broker streams.
        Api::<Tenant>::all(c.clone())
            .delete(&t, &DeleteParams::default())
            .await
            .unwrap();
        eventually("clicks gone from the broker", || async {
            broker_stream(&js, &format!("sluice_{t}_clicks"))
                .await
                .is_none()
        })
        .await;
        let _ = tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(20), op).await;
    });
}
