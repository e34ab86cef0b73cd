//! The real controllers against kubesim: convergence, quota, suspension, sink removal,
//! cascades, invalid specs, hand edits, conflicts and watch expiry, crash recovery, leader
//! election.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, LimitRange, Namespace, ResourceQuota, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use kubesim::PodBehaviour;
use serde_json::{Value, json};
use sluice_core::route::{CONFIG_KEY, RouteConfig};
use sluice_crd::{Pipeline, PipelinePhase, Stream, Tenant};
use sluice_operator::leader::LeaseConfig;
use sluice_testkit::SimCluster;
use std::sync::Arc;

mod common;
use common::{Operator, client, eventually};
use std::time::Duration;

const NS: &str = "sluice-acme";

fn tenant(name: &str, quota: Value) -> Tenant {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": name},
        "spec": {"owners": [{"kind": "User", "name": "alice"}], "quota": quota}
    }))
    .unwrap()
}

fn pipeline(name: &str, sinks: &[&str], parallelism: i32) -> Pipeline {
    pipeline_reading(name, "orders", sinks, parallelism)
}

/// A pipeline reading the stream `stream`.
fn pipeline_reading(name: &str, stream: &str, sinks: &[&str], parallelism: i32) -> Pipeline {
    let sinks: Vec<Value> = sinks
        .iter()
        .map(|s| json!({"name": s, "nats": {"subject": format!("out.{s}")}}))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline",
        "metadata": {"name": name},
        "spec": {"source": {"stream": stream}, "filter": "event.amount > 100",
                 "sinks": sinks, "parallelism": parallelism}
    }))
    .unwrap()
}

/// Creates a tenant and, in its namespace, the stream `orders` the test pipelines read (a
/// pipeline waits with `StreamNotFound` until its source stream is provisioned).
async fn create_tenant(c: &Client, t: &Tenant) {
    create_tenant_with_stream(c, t, "orders").await;
}

/// Creates a tenant and, in its namespace, the stream `stream_name`. Its broker stream
/// (`sluice_<tenant>_<stream>`) is on the NATS server every test shares: other tests and
/// processes publish to `sluice_acme_orders` and delete it, changing the message count a
/// Stream's status shows.
async fn create_tenant_with_stream(c: &Client, t: &Tenant, stream_name: &str) {
    Api::<Tenant>::all(c.clone())
        .create(&PostParams::default(), t)
        .await
        .unwrap();
    let ns = sluice_core::names::tenant_namespace(&t.name_any());
    eventually("tenant namespace", || async {
        Api::<Namespace>::all(c.clone())
            .get_opt(&ns)
            .await
            .unwrap()
            .is_some()
    })
    .await;
    let streams: Api<Stream> = Api::namespaced(c.clone(), &ns);
    let stream: Stream = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Stream",
        "metadata": {"name": stream_name}, "spec": {"retention": {"maxAge": "1h"}}
    }))
    .unwrap();
    streams
        .create(&PostParams::default(), &stream)
        .await
        .unwrap();
    eventually("stream provisioned", || async {
        streams
            .get(stream_name)
            .await
            .unwrap()
            .status
            .and_then(|s| s.subject)
            .is_some()
    })
    .await;
}

fn pipelines(c: &Client) -> Api<Pipeline> {
    Api::namespaced(c.clone(), NS)
}

fn deployments(c: &Client) -> Api<Deployment> {
    Api::namespaced(c.clone(), NS)
}

async fn phase(c: &Client, name: &str) -> Option<PipelinePhase> {
    pipelines(c)
        .get_opt(name)
        .await
        .unwrap()
        .and_then(|p| p.status)
        .and_then(|s| s.phase)
}

async fn condition(c: &Client, name: &str, type_: &str) -> Option<(String, String, String)> {
    let p = pipelines(c).get_opt(name).await.unwrap()?;
    let cond = p
        .status?
        .conditions
        .into_iter()
        .find(|x| x.type_ == type_)?;
    Some((
        cond.status.to_string(),
        cond.reason.unwrap_or_default(),
        cond.message.unwrap_or_default(),
    ))
}

async fn route_names(c: &Client, pipeline: &str) -> Vec<String> {
    let mut names: Vec<String> = deployments(c)
        .list(&ListParams::default().labels(&format!("sluice.dev/pipeline={pipeline}")))
        .await
        .unwrap()
        .items
        .iter()
        .map(|d| d.name_any())
        .collect();
    names.sort();
    names
}

async fn replicas(c: &Client, deployment: &str) -> Option<i32> {
    deployments(c)
        .get_opt(deployment)
        .await
        .unwrap()
        .and_then(|d| d.spec.replicas)
}

#[test]
fn tenant_and_pipeline_converge_to_isolated_routes() {
    let sim = SimCluster::start();
    sim.block_on(async {
        let c = client(&sim);
        let op = Operator::start(&sim, None);
        create_tenant(&c, &tenant("acme", json!({"maxPipelines": 5}))).await;
        let ns = Api::<Namespace>::all(c.clone()).get(NS).await.unwrap();
        assert_eq!(
            ns.labels()["pod-security.kubernetes.io/enforce"],
            "restricted"
        );
        eventually("tenant children", || async {
            Api::<ServiceAccount>::namespaced(c.clone(), NS)
                .get_opt("sluice-worker")
                .await
                .unwrap()
                .is_some()
        })
        .await;
        let sa = Api::<ServiceAccount>::namespaced(c.clone(), NS)
            .get("sluice-worker")
            .await
            .unwrap();
        assert_eq!(sa.automount_service_account_token, Some(false));

        pipelines(&c)
            .create(
                &PostParams::default(),
                &pipeline("orders", &["alerts", "audit"], 2),
            )
            .await
            .unwrap();
        eventually("pipeline running", || async {
            phase(&c, "orders").await == Some(PipelinePhase::Running)
        })
        .await;
        assert_eq!(
            route_names(&c, "orders").await,
            ["orders-alerts", "orders-audit"]
        );
        let p = pipelines(&c).get("orders").await.unwrap();
        let status = p.status.unwrap();
        assert_eq!(status.routes.len(), 2);
        assert_eq!((status.replicas, status.ready_replicas), (2, 2));
        assert_eq!(status.observed_generation, p.metadata.generation);
        // The rendered route config is valid and names the tenant's subjects.
        let cm = Api::<ConfigMap>::namespaced(c.clone(), NS)
            .get("orders-alerts")
            .await
            .unwrap();
        let config = RouteConfig::from_json(&cm.data.unwrap()[CONFIG_KEY]).unwrap();
        assert!(config.validate().is_empty());
        assert_eq!(config.filter.as_deref(), Some("event.amount > 100"));
        // Events record the transitions, for kubectl describe (recorded after the status).
        eventually("the RoutesReady Event", || async {
            Api::<Event>::namespaced(c.clone(), NS)
                .list(&ListParams::default().fields("involvedObject.name=orders"))
                .await
                .unwrap()
                .items
                .iter()
                .any(|e| e.reason.as_deref() == Some("RoutesReady"))
        })
        .await;
        // Tenant status counts the usage.
        eventually("tenant usage", || async {
            let t = Api::<Tenant>::all(c.clone()).get("acme").await.unwrap();
            t.status
                .and_then(|s| s.usage)
                .is_some_and(|u| u.pipelines == 1 && u.parallelism == 4)
        })
        .await;
        op.stop().await;
    });
    // kubectl sees it Ready.
    let out = sim.kubectl_ok(&["get", "pipelines", "-A"]);
    let line = out.lines().find(|l| l.contains("orders")).unwrap();
    assert!(line.contains("True") && line.contains("Running"), "{out}");
}

#[test]
fn quota_refusal_and_later_admission_oldest_first() {
    let sim = SimCluster::start();
    sim.block_on(async {
        let c = client(&sim);
        let op = Operator::start(&sim, None);
        create_tenant(
            &c,
            &tenant("acme", json!({"maxPipelines": 1, "maxParallelism": 4})),
        )
        .await;
        pipelines(&c)
            .create(&PostParams::default(), &pipeline("first", &["a"], 1))
            .await
            .unwrap();
        eventually("first running", || async {
            phase(&c, "first").await == Some(PipelinePhase::Running)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(1100)).await; // distinct creation seconds
        pipelines(&c)
            .create(&PostParams::default(), &pipeline("second", &["a"], 1))
            .await
            .unwrap();
        eventually("second refused", || async {
            condition(&c, "second", "Accepted")
                .await
                .is_some_and(|(s, r, _)| s == "False" && r == "QuotaExceeded")
        })
        .await;
        let (_, _, message) = condition(&c, "second", "Accepted").await.unwrap();
        assert!(
            message.contains("maxPipelines is 1: 1 in use, 1 requested"),
            "{message}"
        );
        assert_eq!(phase(&c, "second").await, Some(PipelinePhase::Failed));
        assert!(
            route_names(&c, "second").await.is_empty(),
            "nothing is scheduled"
        );

        // Room appears: the refused pipeline is admitted with nobody touching it.
        pipelines(&c)
            .delete("first", &DeleteParams::default())
            .await
            .unwrap();
        eventually("second admitted", || async {
            phase(&c, "second").await == Some(PipelinePhase::Running)
        })
        .await;

        // Raising the quota admits a pipeline refused for parallelism.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        Api::<Tenant>::all(c.clone())
            .patch(
                "acme",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"quota": {"maxPipelines": 5}}})),
            )
            .await
            .unwrap();
        pipelines(&c)
            .create(&PostParams::default(), &pipeline("wide", &["a", "b"], 2))
            .await
            .unwrap();
        eventually("wide refused for parallelism", || async {
            condition(&c, "wide", "Accepted")
                .await
                .is_some_and(|(_, r, m)| {
                    r == "QuotaExceeded" && m.contains("maxParallelism is 4: 1 in use, 4 requested")
                })
        })
        .await;
        Api::<Tenant>::all(c.clone())
            .patch(
                "acme",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"quota": {"maxParallelism": 8}}})),
            )
            .await
            .unwrap();
        eventually("wide admitted", || async {
            phase(&c, "wide").await == Some(PipelinePhase::Running)
        })
        .await;
        op.stop().await;
    });
}

#[test]
fn suspend_resume_and_sink_removal() {
    let sim = SimCluster::start();
    sim.block_on(async {
        let c = client(&sim);
        let op = Operator::start(&sim, None);
        create_tenant(&c, &tenant("acme", json!({}))).await;
        pipelines(&c)
            .create(&PostParams::default(), &pipeline("p", &["a", "b"], 3))
            .await
            .unwrap();
        eventually("running", || async {
            phase(&c, "p").await == Some(PipelinePhase::Running)
        })
        .await;
        let api = pipelines(&c);
        let merge = |v: Value| {
            let api = api.clone();
            async move {
                api.patch("p", &PatchParams::default(), &Patch::Merge(v))
                    .await
                    .unwrap();
            }
        };
        merge(json!({"spec": {"suspend": true}})).await;
        eventually("suspended", || async {
            phase(&c, "p").await == Some(PipelinePhase::Suspended)
                && replicas(&c, "p-a").await == Some(0)
                && replicas(&c, "p-b").await == Some(0)
        })
        .await;
        merge(json!({"spec": {"suspend": false}})).await;
        eventually("resumed", || async {
            phase(&c, "p").await == Some(PipelinePhase::Running)
                && replicas(&c, "p-a").await == Some(3)
        })
        .await;
        // Suspending the tenant stops all its routes.
        Api::<Tenant>::all(c.clone())
            .patch(
                "acme",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"suspend": true}})),
            )
            .await
            .unwrap();
        eventually("tenant suspended", || async {
            replicas(&c, "p-a").await == Some(0)
                && phase(&c, "p").await == Some(PipelinePhase::Suspended)
        })
        .await;
        Api::<Tenant>::all(c.clone())
            .patch(
                "acme",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"suspend": false}})),
            )
            .await
            .unwrap();
        eventually("tenant resumed", || async {
            replicas(&c, "p-a").await == Some(3)
        })
        .await;
        // Removing a sink removes its route, and only it.
        pipelines(&c)
            .patch(
                "p",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"spec": {"sinks": [{"name": "a", "nats": {"subject": "out.a"}}]}}),
                ),
            )
            .await
            .unwrap();
        eventually("route b removed", || async {
            route_names(&c, "p").await == ["p-a"]
        })
        .await;
        // The route's other objects go right after its Deployment.
        eventually("route b's ConfigMap removed", || async {
            Api::<ConfigMap>::namespaced(c.clone(), NS)
                .get_opt("p-b")
                .await
                .unwrap()
                .is_none()
        })
        .await;
        op.stop().await;
    });
}

#[test]
fn invalid_spec_keeps_the_last_accepted_routes_and_does_not_stall_others() {
    let sim = SimCluster::start();
    sim.block_on(async {
        let c = client(&sim);
        let op = Operator::start(&sim, None);
        create_tenant(&c, &tenant("acme", json!({}))).await;
        pipelines(&c)
            .create(&PostParams::default(), &pipeline("p", &["a"], 1))
            .await
            .unwrap();
        eventually("running", || async {
            phase(&c, "p").await == Some(PipelinePhase::Running)
        })
        .await;
        let before = Api::<ConfigMap>::namespaced(c.clone(), NS)
            .get("p-a")
            .await
            .unwrap()
            .data;
        pipelines(&c)
            .patch(
                "p",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"filter": "event.amount >"}})),
            )
            .await
            .unwrap();
        eventually("invalid spec reported", || async {
            condition(&c, "p", "Accepted")
                .await
                .is_some_and(|(s, r, m)| {
                    s == "False" && r == "InvalidSpec" && m.contains("spec.filter")
                })
        })
        .await;
        // The routes of the last accepted spec keep running, unchanged.
        let after = Api::<ConfigMap>::namespaced(c.clone(), NS)
            .get("p-a")
            .await
            .unwrap()
            .data;
        assert_eq!(before, after);
        assert_eq!(phase(&c, "p").await, Some(PipelinePhase::Running));
        // Another pipeline is reconciled meanwhile.
        pipelines(&c)
            .create(&PostParams::default(), &pipeline("q", &["a"], 1))
            .await
            .unwrap();
        eventually("q running", || async {
            phase(&c, "q").await == Some(PipelinePhase::Running)
        })
        .await;
        // A pipeline outside tenant namespaces is refused with NoTenant.
        Api::<Namespace>::all(c.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "elsewhere"}})).unwrap(),
            )
            .await
            .unwrap();
        Api::<Pipeline>::namespaced(c.clone(), "elsewhere")
            .create(&PostParams::default(), &pipeline("lost", &["a"], 1))
            .await
            .unwrap();
        eventually("no tenant", || async {
            Api::<Pipeline>::namespaced(c.clone(), "elsewhere")
                .get("lost")
                .await
                .unwrap()
                .status
                .is_some_and(|s| s.reason.as_deref() == Some("NoTenant"))
        })
        .await;
        op.stop().await;
    });
}

#[test]
fn a_pipeline_waits_for_its_source_stream() {
    let sim = SimCluster::start();
    sim.block_on(async {
        let c = client(&sim);
        let op = Operator::start(&sim, None);
        create_tenant(&c, &tenant("acme", json!({}))).await;
        let mut p = pipeline("later", &["a"], 1);
        p.spec.source.stream = "clicks".into();
        pipelines(&c)
            .create(&PostParams::default(), &p)
            .await
            .unwrap();
        eventually("stream not found", || async {
            condition(&c, "later", "Accepted")
                .await
                .is_some_and(|(s, r, m)| {
                    s == "False" && r == "StreamNotFound" && m.contains("clicks")
                })
        })
        .await;
        assert!(
            route_names(&c, "later").await.is_empty(),
            "nothing is scheduled"
        );
        let clicks: Stream = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Stream",
            "metadata": {"name": "clicks"}, "spec": {}
        }))
        .unwrap();
        Api::<Stream>::namespaced(c.clone(), NS)
            .create(&PostParams::default(), &clicks)
            .await
            .unwrap();
        eventually("starts by itself once the stream exists", || async {
            phase(&c, "later").await == Some(PipelinePhase::Running)
        })
        .await;
        op.stop().await;
    });
}

#[test]
fn a_missing_dead_letter_stream_degrades_the_pipeline_until_it_exists() {
    let sim = SimCluster::start();
    sim.block_on(async {
        let c = client(&sim);
        let op = Operator::start(&sim, None);
        create_tenant(&c, &tenant("acme", json!({}))).await;
        let mut p = pipeline("dl", &["a"], 1);
        p.spec.dead_letter = Some(serde_json::from_value(json!({"stream": "dead"})).unwrap());
        pipelines(&c)
            .create(&PostParams::default(), &p)
            .await
            .unwrap();
        eventually("degraded with the reason", || async {
            condition(&c, "dl", "Degraded")
                .await
                .is_some_and(|(s, r, m)| {
                    s == "True" && r == "DeadLetterUnavailable" && m.contains("\"dead\"")
                })
        })
        .await;
        assert_eq!(phase(&c, "dl").await, Some(PipelinePhase::Degraded));
        // The routes run meanwhile: the workers keep delivering the good events.
        assert_eq!(route_names(&c, "dl").await, ["dl-a"]);
        let dead: Stream = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Stream",
            "metadata": {"name": "dead"}, "spec": {}
        }))
        .unwrap();
        Api::<Stream>::namespaced(c.clone(), NS)
            .create(&PostParams::default(), &dead)
            .await
            .unwrap();
        eventually("recovers by itself once the stream exists", || async {
            phase(&c, "dl").await == Some(PipelinePhase::Running)
        })
        .await;
        op.stop().await;
    });
}

#[test]
fn children_edited_or_deleted_by_hand_are_restored() {
    let sim = SimCluster::start();
    let cluster = sim.cluster().clone();
    sim.block_on(async {
        let c = client(&sim);
        let op = Operator::start(&sim, None);
        create_tenant(&c, &tenant("acme", json!({}))).await;
        pipelines(&c)
            .create(&PostParams::default(), &pipeline("p", &["a"], 2))
            .await
            .unwrap();
        eventually("running", || async {
            phase(&c, "p").await == Some(PipelinePhase::Running)
        })
        .await;
        deployments(&c)
            .delete("p-a", &DeleteParams::default())
            .await
            .unwrap();
        eventually("deployment restored", || async {
            replicas(&c, "p-a").await == Some(2)
        })
        .await;
        // Another manager scales it by hand: the operator wins (forced apply).
        deployments(&c)
            .patch(
                "p-a",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 7}})),
            )
            .await
            .unwrap();
        eventually("replicas restored", || async {
            replicas(&c, "p-a").await == Some(2)
        })
        .await;
        let cms = Api::<ConfigMap>::namespaced(c.clone(), NS);
        cms.patch(
            "p-a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {CONFIG_KEY: "{}"}})),
        )
        .await
        .unwrap();
        eventually("config restored", || async {
            RouteConfig::from_json(&cms.get("p-a").await.unwrap().data.unwrap()[CONFIG_KEY]).is_ok()
        })
        .await;
        // Watch expiry: the history is dropped; the controllers re-list and keep working.
        cluster.compact();
        pipelines(&c)
            .patch(
                "p",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"parallelism": 4}})),
            )
            .await
            .unwrap();
        eventually("change after compaction", || async {
            replicas(&c, "p-a").await == Some(4)
        })
        .await;
        // A crashing route degrades the pipeline with a stable reason.
        cluster.set_kubelet(Arc::new(kubesim::kubelet::Uniform(PodBehaviour::CrashLoop)));
        pipelines(&c)
            .patch(
                "p",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"parallelism": 3}})),
            )
            .await
            .unwrap();
        eventually("degraded", || async {
            phase(&c, "p").await == Some(PipelinePhase::Degraded)
                && condition(&c, "p", "Degraded")
                    .await
                    .is_some_and(|(s, r, _)| s == "True" && r == "RouteFailing")
        })
        .await;
        op.stop().await;
    });
}

#[test]
fn a_crash_between_two_applies_recovers_and_a_converged_operator_writes_nothing() {
    let sim = SimCluster::start();
    let cluster = sim.cluster().clone();
    sim.block_on(async {
        let c = client(&sim);
        // State as an operator that crashed after writing one ConfigMap would leave it.
        let op = Operator::start(&sim, None);
        // A stream of this test's own: the restarted operator reconciles the Stream too, and its
        // status shows the broker stream's message count, which must not change meanwhile
        // (`orders` is shared with the other tests, which publish to it and delete it).
        create_tenant_with_stream(&c, &tenant("acme", json!({})), "recovery").await;
        op.stop().await;
        let p = pipelines(&c)
            .create(
                &PostParams::default(),
                &pipeline_reading("p", "recovery", &["a", "b"], 1),
            )
            .await
            .unwrap();
        let stale = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "p-a", "namespace": NS,
                "labels": {"sluice.dev/pipeline": "p", "app.kubernetes.io/managed-by": "sluice-operator"},
                "ownerReferences": [{"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "name": "p",
                                     "uid": p.metadata.uid, "controller": true}]},
            "data": {CONFIG_KEY: "{\"half\": true}"}});
        Api::<ConfigMap>::namespaced(c.clone(), NS)
            .create(&PostParams::default(), &serde_json::from_value(stale).unwrap())
            .await
            .unwrap();
        let op = Operator::start(&sim, None);
        eventually("recovered", || async {
            phase(&c, "p").await == Some(PipelinePhase::Running) && route_names(&c, "p").await.len() == 2
        })
        .await;
        let cm = Api::<ConfigMap>::namespaced(c.clone(), NS).get("p-a").await.unwrap();
        assert!(RouteConfig::from_json(&cm.data.unwrap()[CONFIG_KEY]).is_ok());
        // Let the first operator finish converging (tenant usage, conditions) before stopping it.
        let mut last = cluster.resource_version();
        loop {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let now = cluster.resource_version();
            if now == last {
                break;
            }
            last = now;
        }
        op.stop().await;

        // A restarted operator on a converged cluster reconciles everything and writes nothing.
        let before = cluster.resource_version();
        let versions_before = versions(&c).await;
        let op = Operator::start(&sim, None);
        tokio::time::sleep(Duration::from_secs(3)).await;
        op.stop().await;
        let after = versions(&c).await;
        let written: Vec<&String> = after
            .iter()
            .filter(|(k, v)| versions_before.get(*k) != Some(v))
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            cluster.resource_version(),
            before,
            "a no-op reconcile wrote something: {written:?}"
        );
    });
}

#[test]
fn a_tenant_that_stops_asking_for_its_quota_and_owners_loses_them() {
    let sim = SimCluster::start();
    sim.block_on(async {
        let c = client(&sim);
        let op = Operator::start(&sim, None);
        create_tenant(&c, &tenant("acme", json!({"cpu": "2"}))).await;
        let quotas = Api::<ResourceQuota>::namespaced(c.clone(), NS);
        let bindings = Api::<RoleBinding>::namespaced(c.clone(), NS);
        let present = |quota: bool, binding: bool| {
            let (quotas, bindings) = (quotas.clone(), bindings.clone());
            async move {
                quotas.get_opt("sluice-quota").await.unwrap().is_some() == quota
                    && bindings.get_opt("sluice-owners").await.unwrap().is_some() == binding
            }
        };
        eventually("quota and owners' binding", || present(true, true)).await;
        Api::<Tenant>::all(c.clone())
            .patch(
                "acme",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"owners": [], "quota": {"cpu": null}}})),
            )
            .await
            .unwrap();
        eventually("both pruned", || present(false, false)).await;
        // The rest of the namespace stays.
        assert!(
            Api::<ServiceAccount>::namespaced(c.clone(), NS)
                .get_opt("sluice-worker")
                .await
                .unwrap()
                .is_some()
        );
        op.stop().await;
    });
}

/// The resourceVersion of every object the operator reads or writes in the cluster, by kind,
/// namespace and name: what changed between two calls names what was written.
async fn versions(c: &Client) -> std::collections::BTreeMap<String, String> {
    async fn of<K>(c: &Client, out: &mut std::collections::BTreeMap<String, String>)
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let kind = K::kind(&()).to_string();
        for o in Api::<K>::all(c.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
        {
            let key = format!(
                "{kind} {}/{}",
                o.namespace().unwrap_or_default(),
                o.name_any()
            );
            out.insert(key, o.resource_version().unwrap_or_default());
        }
    }
    let mut out = std::collections::BTreeMap::new();
    of::<Tenant>(c, &mut out).await;
    of::<Pipeline>(c, &mut out).await;
    of::<Stream>(c, &mut out).await;
    of::<Namespace>(c, &mut out).await;
    of::<ConfigMap>(c, &mut out).await;
    of::<Deployment>(c, &mut out).await;
    of::<Event>(c, &mut out).await;
    of::<ResourceQuota>(c, &mut out).await;
    of::<RoleBinding>(c, &mut out).await;
    of::<ServiceAccount>(c, &mut out).await;
    of::<Service>(c, &mut out).await;
    of::<PodDisruptionBudget>(c, &mut out).await;
    of::<LimitRange>(c, &mut out).await;
    of::<NetworkPolicy>(c, &mut out).await;
    out
}

#[test]
fn deleting_a_tenant_removes_everything_it_made() {
    let sim = SimCluster::start();
    sim.block_on(async {
        let c = client(&sim);
        let op = Operator::start(&sim, None);
        create_tenant(&c, &tenant("acme", json!({}))).await;
        pipelines(&c)
            .create(&PostParams::default(), &pipeline("p", &["a"], 1))
            .await
            .unwrap();
        eventually("running", || async {
            phase(&c, "p").await == Some(PipelinePhase::Running)
        })
        .await;
        Api::<Tenant>::all(c.clone())
            .delete("acme", &DeleteParams::default())
            .await
            .unwrap();
        eventually("namespace gone", || async {
            Api::<Namespace>::all(c.clone())
                .get_opt(NS)
                .await
                .unwrap()
                .is_none()
        })
        .await;
        let all = Api::<Deployment>::all(c.clone())
            .list(&ListParams::default())
            .await
            .unwrap();
        assert!(all.items.is_empty());
        let ps = Api::<Pipeline>::all(c.clone())
            .list(&ListParams::default())
            .await
            .unwrap();
        assert!(ps.items.is_empty());
        op.stop().await;
    });
}

#[test]
fn two_replicas_with_one_leader() {
    let sim = SimCluster::start();
    sim.block_on(async {
        let c = client(&sim);
        let lease = |id: &str| LeaseConfig {
            duration: Duration::from_secs(2),
            renew_every: Duration::from_millis(300),
            ..LeaseConfig::new("sluice-system", id)
        };
        let one = Operator::start(&sim, Some(lease("one")));
        let leases: Api<Lease> = Api::namespaced(c.clone(), "sluice-system");
        eventually("a leader", || async {
            leases.get_opt("sluice-operator").await.unwrap().is_some()
        })
        .await;
        let two = Operator::start(&sim, Some(lease("two")));
        create_tenant(&c, &tenant("acme", json!({}))).await;
        pipelines(&c)
            .create(&PostParams::default(), &pipeline("p", &["a"], 1))
            .await
            .unwrap();
        eventually("running", || async {
            phase(&c, "p").await == Some(PipelinePhase::Running)
        })
        .await;
        let holder = |l: Lease| l.spec.and_then(|s| s.holder_identity);
        assert_eq!(
            holder(leases.get("sluice-operator").await.unwrap()).as_deref(),
            Some("one")
        );
        // Only the leader acted: every event comes from it.
        let events = Api::<Event>::namespaced(c.clone(), NS)
            .list(&ListParams::default())
            .await
            .unwrap();
        assert!(!events.items.is_empty());
        assert!(
            events
                .items
                .iter()
                .all(|e| e.reporting_instance.as_deref() == Some("one"))
        );
        // The leader stops; the standby takes over and acts.
        one.stop().await;
        eventually("two leads", || async {
            holder(leases.get("sluice-operator").await.unwrap()).as_deref() == Some("two")
        })
        .await;
        pipelines(&c)
            .create(&PostParams::default(), &pipeline("q", &["a"], 1))
            .await
            .unwrap();
        eventually("q running", || async {
            phase(&c, "q").await == Some(PipelinePhase::Running)
        })
        .await;
        two.stop().await;
    });
}
