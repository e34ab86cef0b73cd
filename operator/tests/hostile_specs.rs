//! The controllers against kubesim facing hostile objects applied with kubectl: an expression
//! built to overflow the parser's stack, a Tenant named after the platform's namespace, a
//! Tenant whose namespace someone else already made. The operator refuses each with a stable
//! reason, keeps running, and touches nothing it does not own.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use sluice_crd::{Pipeline, PipelinePhase, Stream, Tenant};
use sluice_testkit::SimCluster;

mod common;
use common::{Operator, client, create_namespace, eventually};

fn apply(sim: &SimCluster, yaml: &str) {
    let out = sim.kubectl_with_input(&["apply", "-f", "-"], yaml);
    assert!(
        out.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tenant_yaml(name: &str) -> String {
    format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: Tenant\nmetadata: {{name: {name}}}\n\
         spec:\n  owners: [{{kind: User, name: mallory}}]\n  quota: {{maxPipelines: 5}}\n"
    )
}

fn pipeline_yaml(name: &str, filter: &str) -> String {
    format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: Pipeline\nmetadata: {{name: {name}, namespace: sluice-acme}}\n\
         spec:\n  source: {{stream: orders}}\n  filter: '{filter}'\n  \
         sinks: [{{name: a, nats: {{subject: out.a}}}}]\n"
    )
}

async fn tenant_ready(c: &Client, name: &str) -> Option<(String, String, String)> {
    let t = Api::<Tenant>::all(c.clone()).get_opt(name).await.unwrap()?;
    let cond = t
        .status?
        .conditions
        .into_iter()
        .find(|x| x.type_ == "Ready")?;
    Some((
        cond.status.to_string(),
        cond.reason.unwrap_or_default(),
        cond.message.unwrap_or_default(),
    ))
}

async fn pipeline_condition(c: &Client, name: &str, type_: &str) -> Option<(String, String)> {
    let p = Api::<Pipeline>::namespaced(c.clone(), "sluice-acme")
        .get_opt(name)
        .await
        .unwrap()?;
    let cond = p
        .status?
        .conditions
        .into_iter()
        .find(|x| x.type_ == type_)?;
    Some((cond.status.to_string(), cond.reason.unwrap_or_default()))
}

async fn phase(c: &Client, name: &str) -> Option<PipelinePhase> {
    Api::<Pipeline>::namespaced(c.clone(), "sluice-acme")
        .get_opt(name)
        .await
        .unwrap()?
        .status?
        .phase
}

/// Nothing of the operator's is in `ns`, and the namespace carries no owner reference.
async fn untouched(c: &Client, ns: &str) {
    let n = Api::<Namespace>::all(c.clone()).get(ns).await.unwrap();
    assert!(n.owner_references().is_empty(), "{ns} adopted");
    assert!(
        !n.labels()
            .contains_key(sluice_core::names::LABEL_MANAGED_BY),
        "{ns} labelled"
    );
    // Nothing of the operator's (the chart's own roles and bindings live in sluice-system).
    let lp = ListParams::default().labels(&format!(
        "{}={}",
        sluice_core::names::LABEL_MANAGED_BY,
        sluice_core::names::MANAGED_BY
    ));
    assert!(
        Api::<NetworkPolicy>::namespaced(c.clone(), ns)
            .list(&lp)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        Api::<RoleBinding>::namespaced(c.clone(), ns)
            .list(&lp)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        Api::<ServiceAccount>::namespaced(c.clone(), ns)
            .get_opt("sluice-worker")
            .await
            .unwrap()
            .is_none()
    );
}

#[test]
fn an_expression_built_to_overflow_the_parser_is_an_invalid_spec() {
    let sim = SimCluster::start();
    sim.block_on(async {
        let c = client(&sim);
        let op = Operator::start(&sim, None);
        apply(&sim, &tenant_yaml("acme"));
        eventually("tenant namespace", || async {
            tenant_ready(&c, "acme")
                .await
                .is_some_and(|(s, _, _)| s == "True")
        })
        .await;
        let stream: Stream = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Stream",
            "metadata": {"name": "orders"}, "spec": {"retention": {"maxAge": "1h"}}
        }))
        .unwrap();
        Api::<Stream>::namespaced(c.clone(), "sluice-acme")
            .create(&PostParams::default(), &stream)
            .await
            .unwrap();
        apply(&sim, &pipeline_yaml("p", "event.amount > 100"));
        eventually("p running", || async {
            phase(&c, "p").await == Some(PipelinePhase::Running)
        })
        .await;
        let config_maps = Api::<ConfigMap>::namespaced(c.clone(), "sluice-acme");
        let before = config_maps.get("p-a").await.unwrap().data;

        // The filter of the report: a member chain 2,000 long (4,007 bytes, under the
        // schema's length limit, so it reaches the operator).
        let deep = format!("event.a{}", ".b".repeat(2000));
        apply(&sim, &pipeline_yaml("p", &deep));
        eventually("invalid spec reported", || async {
            pipeline_condition(&c, "p", "Accepted").await
                == Some(("False".into(), "InvalidSpec".into()))
        })
        .await;
        // The routes of the last accepted version keep running, unchanged.
        assert_eq!(config_maps.get("p-a").await.unwrap().data, before);
        assert_eq!(phase(&c, "p").await, Some(PipelinePhase::Running));
        // A deeply nested one, created afresh, is refused too; other pipelines converge.
        let nested = format!("{}true{}", "(".repeat(500), ")".repeat(500));
        apply(&sim, &pipeline_yaml("nested", &nested));
        apply(&sim, &pipeline_yaml("q", "event.amount > 1"));
        eventually("q running, nested refused", || async {
            phase(&c, "q").await == Some(PipelinePhase::Running)
                && pipeline_condition(&c, "nested", "Accepted").await
                    == Some(("False".into(), "InvalidSpec".into()))
        })
        .await;
        assert!(config_maps.get_opt("nested-a").await.unwrap().is_none());
        // A name a route's Service cannot carry (a digit first) is refused before anything is
        // applied: a real API server would refuse the Service `1abc-a`.
        apply(&sim, &pipeline_yaml("1abc", "event.amount > 1"));
        eventually("1abc refused", || async {
            pipeline_condition(&c, "1abc", "Accepted").await
                == Some(("False".into(), "InvalidSpec".into()))
        })
        .await;
        assert!(config_maps.get_opt("1abc-a").await.unwrap().is_none());
        op.assert_running();
        op.stop().await;
    });
}

#[test]
fn a_reserved_tenant_name_creates_nothing() {
    let sim = SimCluster::start();
    sim.block_on(async {
        let c = client(&sim);
        // The platform's namespace, sluice-system, is there as the chart installs it.
        let op = Operator::start(&sim, None);
        apply(&sim, &tenant_yaml("system"));
        apply(&sim, &tenant_yaml("admin"));
        for name in ["system", "admin"] {
            eventually("reserved name reported", || async {
                tenant_ready(&c, name)
                    .await
                    .is_some_and(|(s, r, _)| s == "False" && r == "ReservedName")
            })
            .await;
        }
        untouched(&c, "sluice-system").await;
        assert!(
            Api::<Namespace>::all(c.clone())
                .get_opt("sluice-admin")
                .await
                .unwrap()
                .is_none(),
            "no namespace for a reserved name"
        );
        let t = Api::<Tenant>::all(c.clone()).get("system").await.unwrap();
        assert_eq!(t.status.unwrap().namespace, None);
        op.assert_running();
        op.stop().await;
    });
}

#[test]
fn a_namespace_the_operator_did_not_create_is_never_adopted() {
    let sim = SimCluster::start();
    sim.block_on(async {
        let c = client(&sim);
        create_namespace(&c, "sluice-bob", json!({"team": "someone-else"})).await;
        let op = Operator::start(&sim, None);
        apply(&sim, &tenant_yaml("bob"));
        eventually("conflict reported", || async {
            tenant_ready(&c, "bob")
                .await
                .is_some_and(|(s, r, m)| {
                    s == "False" && r == "NamespaceConflict" && m.contains("sluice-bob")
                })
        })
        .await;
        // A pipeline someone puts there is not run.
        let p: Pipeline = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline",
            "metadata": {"name": "p"},
            "spec": {"source": {"stream": "orders"}, "sinks": [{"name": "a", "nats": {"subject": "x"}}]}
        }))
        .unwrap();
        let pipelines = Api::<Pipeline>::namespaced(c.clone(), "sluice-bob");
        pipelines.create(&PostParams::default(), &p).await.unwrap();
        eventually("pipeline refused", || async {
            pipelines
                .get("p")
                .await
                .unwrap()
                .status
                .is_some_and(|s| s.reason.as_deref() == Some("NoTenant"))
        })
        .await;
        // Nor is a stream provisioned there.
        let stream: Stream = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Stream",
            "metadata": {"name": "orders"}, "spec": {"retention": {"maxAge": "1h"}}
        }))
        .unwrap();
        let streams = Api::<Stream>::namespaced(c.clone(), "sluice-bob");
        streams.create(&PostParams::default(), &stream).await.unwrap();
        eventually("stream refused", || async {
            streams.get("orders").await.unwrap().status.is_some_and(|s| {
                s.subject.is_none()
                    && s.conditions.iter().any(|c| {
                        c.type_ == "Accepted" && c.reason.as_deref() == Some("NoTenant")
                    })
            })
        })
        .await;
        untouched(&c, "sluice-bob").await;
        assert!(
            Api::<ConfigMap>::namespaced(c.clone(), "sluice-bob")
                .get_opt("p-a")
                .await
                .unwrap()
                .is_none()
        );
        let n = Api::<Namespace>::all(c.clone()).get("sluice-bob").await.unwrap();
        assert_eq!(n.labels().get("team").map(String::as_str), Some("someone-else"));
        op.assert_running();
        op.stop().await;
    });
}
