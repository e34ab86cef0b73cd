//! A reconcile that runs on a stale copy of its Tenant or Pipeline (the controller's cache
//! still holds it, but the object was deleted, or replaced by a new one of the same name)
//! writes no child for it: children are written only for an owner read afresh with the same
//! uid and no deletion under way.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::Reporter;
use kube::runtime::{reflector, watcher};
use serde_json::json;
use sluice_crd::{Pipeline, Stream, Tenant};
use sluice_operator::Error;
use sluice_operator::config::OperatorConfig;
use sluice_operator::context::Context;
use sluice_operator::metrics::Metrics;
use sluice_operator::pipeline::index::ByNamespace;
use sluice_testkit::SimCluster;
use std::sync::Arc;

mod common;
use common::{Operator, client, eventually, nats_url, operator_client};

/// What the controllers share, for calling one reconcile directly as the operator, with
/// `pipelines` as the pipeline watch would have listed them.
fn context(sim: &SimCluster, pipelines: &[Pipeline]) -> Arc<Context> {
    let (store, mut writer) = reflector::store::<Pipeline>();
    let index = ByNamespace::default();
    for event in [watcher::Event::Init]
        .into_iter()
        .chain(pipelines.iter().cloned().map(watcher::Event::InitApply))
        .chain([watcher::Event::InitDone])
    {
        writer.apply_watcher_event(&event);
        index.observe(&event);
    }
    let (tenants, _) = reflector::store::<Tenant>();
    let (requeue, _) = tokio::sync::mpsc::unbounded_channel();
    Arc::new(Context {
        client: operator_client(sim),
        config: OperatorConfig {
            nats_url: nats_url(),
            ..Default::default()
        },
        metrics: Metrics::new(&prometheus::Registry::new()).unwrap(),
        reporter: Reporter {
            controller: "sluice-operator".into(),
            instance: None,
        },
        pipelines: store,
        pipelines_by_namespace: index,
        tenants,
        broker: Arc::new(sluice_operator::stream::broker::JetStream::new(
            &nats_url(),
            None,
        )),
        accounts: None,
        requeue,
    })
}

fn tenant(name: &str) -> Tenant {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": name}, "spec": {"quota": {"maxPipelines": 5}}
    }))
    .unwrap()
}

fn assert_owner_gone(result: Result<kube::runtime::controller::Action, Error>, uid: &str) {
    match result {
        Err(Error::OwnerGone { uid: gone, .. }) => assert_eq!(gone, uid),
        other => panic!("expected OwnerGone for uid {uid}, got {other:?}"),
    }
}

#[test]
fn a_stale_tenant_gets_no_namespace() {
    let sim = SimCluster::start();
    sim.block_on(async {
        let admin = client(&sim);
        let tenants = Api::<Tenant>::all(admin.clone());
        let ctx = context(&sim, &[]);

        // Replaced by a new Tenant of the same name.
        let old = tenants
            .create(&PostParams::default(), &tenant("acme"))
            .await
            .unwrap();
        tenants
            .delete("acme", &DeleteParams::default())
            .await
            .unwrap();
        let new = tenants
            .create(&PostParams::default(), &tenant("acme"))
            .await
            .unwrap();
        assert_ne!(old.uid(), new.uid());
        let result = sluice_operator::tenant::reconcile(Arc::new(old.clone()), ctx.clone()).await;
        assert_owner_gone(result, &old.uid().unwrap());

        // Being deleted (something else holds it with a finalizer); the cache has the copy
        // from before the deletion.
        let held = tenants
            .patch(
                "acme",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold"]}})),
            )
            .await
            .unwrap();
        tenants
            .delete("acme", &DeleteParams::default())
            .await
            .unwrap();
        let result = sluice_operator::tenant::reconcile(Arc::new(held.clone()), ctx.clone()).await;
        assert_owner_gone(result, &held.uid().unwrap());

        assert!(
            Api::<Namespace>::all(admin.clone())
                .get_opt("sluice-acme")
                .await
                .unwrap()
                .is_none(),
            "no namespace was created for a Tenant that is gone"
        );
    });
}

#[test]
fn a_stale_pipeline_gets_no_routes() {
    let sim = SimCluster::start();
    sim.block_on(async {
        let admin = client(&sim);
        // The tenant, set up by the operator, which then stops.
        let op = Operator::start(&sim, None);
        Api::<Tenant>::all(admin.clone())
            .create(&PostParams::default(), &tenant("acme"))
            .await
            .unwrap();
        eventually("the tenant namespace", || async {
            Api::<Namespace>::all(admin.clone()).get_opt("sluice-acme").await.unwrap().is_some()
        })
        .await;
        let streams = Api::<Stream>::namespaced(admin.clone(), "sluice-acme");
        let stream: Stream = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Stream",
            "metadata": {"name": "orders", "namespace": "sluice-acme"}, "spec": {}
        }))
        .unwrap();
        streams.create(&PostParams::default(), &stream).await.unwrap();
        eventually("the stream provisioned", || async {
            streams
                .get("orders")
                .await
                .unwrap()
                .status
                .is_some_and(|s| !s.conditions.is_empty())
        })
        .await;
        op.stop().await;

        let pipelines = Api::<Pipeline>::namespaced(admin.clone(), "sluice-acme");
        let p: Pipeline = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline",
            "metadata": {"name": "p", "namespace": "sluice-acme"},
            "spec": {"source": {"stream": "orders"}, "sinks": [{"name": "a", "nats": {"subject": "out"}}]}
        }))
        .unwrap();
        let old = pipelines.create(&PostParams::default(), &p).await.unwrap();
        pipelines.delete("p", &DeleteParams::default()).await.unwrap();
        let new = pipelines.create(&PostParams::default(), &p).await.unwrap();
        assert_ne!(old.uid(), new.uid());

        let result = sluice_operator::pipeline::reconcile(Arc::new(old.clone()), context(&sim, std::slice::from_ref(&new))).await;
        assert_owner_gone(result, &old.uid().unwrap());
        let no_routes = || async {
            let deployments = Api::<Deployment>::namespaced(admin.clone(), "sluice-acme")
                .list(&ListParams::default())
                .await
                .unwrap();
            let configs = Api::<ConfigMap>::namespaced(admin.clone(), "sluice-acme")
                .list(&ListParams::default().labels("sluice.dev/pipeline=p"))
                .await
                .unwrap();
            deployments.items.is_empty() && configs.items.is_empty()
        };
        assert!(no_routes().await, "no route was written for the deleted pipeline");

        // The live pipeline is reconciled as usual.
        let result = sluice_operator::pipeline::reconcile(Arc::new(new.clone()), context(&sim, &[new])).await;
        assert!(result.is_ok(), "{result:?}");
        assert!(!no_routes().await, "the new pipeline has its route");
    });
}
