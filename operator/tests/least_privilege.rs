//! The operator's identity, as the Helm chart defines it (its ServiceAccount, ClusterRole,
//! Role and admission policies, installed into kubesim from `chart-rbac.yaml`), can do its job
//! in the tenant namespaces it created and nothing outside them. Tenant owners, bound by the
//! operator, manage their own pipelines and streams and cannot reach another tenant's.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Secret};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Config};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sluice_crd::{Pipeline, Stream, Tenant};
use sluice_testkit::SimCluster;

mod common;
use common::{Operator, client, eventually, operator_client};

/// The error code and message of a refused request; panics when it went through.
fn refused<T: std::fmt::Debug>(what: &str, r: Result<T, kube::Error>) -> (u16, String) {
    match r {
        Ok(v) => panic!("{what} should have been refused, got {v:?}"),
        Err(kube::Error::Api(e)) => (e.code, e.message),
        Err(e) => panic!("{what}: not an API error: {e}"),
    }
}

fn object<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a valid object")
}

fn deployment(ns: &str) -> Deployment {
    object(json!({
        "metadata": {"name": "intruder", "namespace": ns},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    }))
}

fn binding(ns: &str, kind: &str, role: &str) -> RoleBinding {
    object(json!({
        "metadata": {"name": format!("grab-{role}"), "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": "sluice-worker", "namespace": ns}]
    }))
}

async fn create_tenant(c: &Client, name: &str, owner: &str) {
    let t: Tenant = object(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": name},
        "spec": {"owners": [{"kind": "User", "name": owner}], "quota": {"maxPipelines": 5}}
    }));
    Api::<Tenant>::all(c.clone())
        .create(&PostParams::default(), &t)
        .await
        .unwrap();
    let ns = format!("sluice-{name}");
    eventually("the owners' binding", || async {
        Api::<RoleBinding>::namespaced(c.clone(), &ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|b| b.role_ref.name == "sluice-tenant-edit")
    })
    .await;
}

#[test]
fn the_operator_identity_is_refused_outside_the_tenant_namespaces_it_created() {
    let sim = SimCluster::start();
    sim.block_on(async {
        let admin = client(&sim);
        let op = Operator::start(&sim, None);
        create_tenant(&admin, "acme", "alice").await;
        let tenant_ns = "sluice-acme";
        let me = operator_client(&sim);
        let pp = PostParams::default();

        // Its job, in the namespace it created: allowed.
        let cm: ConfigMap =
            object(json!({"metadata": {"name": "allowed", "namespace": tenant_ns}}));
        Api::<ConfigMap>::namespaced(me.clone(), tenant_ns)
            .create(&pp, &cm)
            .await
            .expect("a ConfigMap in a tenant namespace");

        // A Deployment in kube-system (RBAC grants Deployments; the admission policy refuses).
        for ns in ["kube-system", "default", "sluice-system"] {
            let (code, message) = refused(
                &format!("a Deployment in {ns}"),
                Api::<Deployment>::namespaced(me.clone(), ns)
                    .create(&pp, &deployment(ns))
                    .await,
            );
            assert_eq!(code, 403, "{message}");
            assert!(
                message.contains("ValidatingAdmissionPolicy 'sluice-operator-tenant-objects'")
                    && message.contains(&format!("not in {ns}")),
                "{message}"
            );
        }
        // Nor can it delete or change what is there (objects that exist, so that admission,
        // not a 404, answers).
        for ns in ["kube-system", "default"] {
            let theirs: ConfigMap =
                object(json!({"metadata": {"name": "theirs", "namespace": ns}}));
            Api::<ConfigMap>::namespaced(admin.clone(), ns)
                .create(&pp, &theirs)
                .await
                .unwrap();
            let (code, message) = refused(
                &format!("deleting a ConfigMap in {ns}"),
                Api::<ConfigMap>::namespaced(me.clone(), ns)
                    .delete("theirs", &Default::default())
                    .await,
            );
            assert_eq!(code, 403, "{message}");
            assert!(message.contains("ValidatingAdmissionPolicy"), "{message}");
            let (code, message) = refused(
                &format!("changing a ConfigMap in {ns}"),
                Api::<ConfigMap>::namespaced(me.clone(), ns)
                    .patch(
                        "theirs",
                        &PatchParams::default(),
                        &Patch::Merge(json!({"data": {"x": "y"}})),
                    )
                    .await,
            );
            assert_eq!(code, 403, "{message}");
        }

        // Secrets: not readable anywhere, its own tenant namespaces included.
        for ns in ["kube-system", "default", "sluice-system", tenant_ns] {
            let (code, message) = refused(
                &format!("listing Secrets in {ns}"),
                Api::<Secret>::namespaced(me.clone(), ns)
                    .list(&ListParams::default())
                    .await,
            );
            assert_eq!(code, 403, "{message}");
            assert!(
                message.contains("cannot list resource \"secrets\""),
                "{message}"
            );
        }
        refused(
            "listing Secrets cluster-wide",
            Api::<Secret>::all(me.clone())
                .list(&ListParams::default())
                .await,
        );

        // Binding any role other than the tenant role, even in a tenant namespace.
        let rb = Api::<RoleBinding>::namespaced(me.clone(), tenant_ns);
        let (code, message) = refused(
            "binding cluster-admin",
            rb.create(&pp, &binding(tenant_ns, "ClusterRole", "cluster-admin"))
                .await,
        );
        assert_eq!(code, 403, "{message}");
        assert!(
            message.contains("attempting to grant RBAC permissions not currently held"),
            "{message}"
        );
        // Its own ClusterRole: RBAC lets it bind what it holds; the admission policy does not.
        let (code, message) = refused(
            "binding sluice-operator",
            rb.create(&pp, &binding(tenant_ns, "ClusterRole", "sluice-operator"))
                .await,
        );
        assert_eq!(code, 403, "{message}");
        assert!(message.contains("binds only the tenant role"), "{message}");
        // The tenant role itself, but to everyone authenticated, or to a ServiceAccount.
        for (kind, name) in [
            ("Group", "system:authenticated"),
            ("ServiceAccount", "sluice-worker"),
        ] {
            let mut b = binding(tenant_ns, "ClusterRole", "sluice-tenant-edit");
            b.metadata.name = Some(format!("grab-{kind}").to_lowercase());
            b.subjects = Some(vec![object(json!({
                "kind": kind, "name": name, "namespace": tenant_ns,
                "apiGroup": if kind == "ServiceAccount" { "" } else { "rbac.authorization.k8s.io" }
            }))]);
            let (code, message) = refused(
                &format!("binding the tenant role to {name}"),
                rb.create(&pp, &b).await,
            );
            assert_eq!(code, 403, "{message}");
            assert!(message.contains("people and groups only"), "{message}");
        }
        refused(
            "binding sluice-tenant-edit in kube-system",
            Api::<RoleBinding>::namespaced(me.clone(), "kube-system")
                .create(
                    &pp,
                    &binding("kube-system", "ClusterRole", "sluice-tenant-edit"),
                )
                .await,
        );

        // Namespaces: it creates tenant namespaces only, and changes only its own.
        let nss = Api::<Namespace>::all(me.clone());
        for (what, ns) in [
            (
                "an unlabelled namespace",
                json!({"metadata": {"name": "sluice-evil"}}),
            ),
            (
                "a tenant namespace without Pod Security restricted",
                json!({"metadata": {"name": "sluice-evil", "labels": {
                    "app.kubernetes.io/managed-by": "sluice-operator", "sluice.dev/tenant": "evil",
                    "pod-security.kubernetes.io/enforce": "privileged"}}}),
            ),
            (
                "a namespace not named after its tenant",
                json!({"metadata": {"name": "kube-evil", "labels": {
                    "app.kubernetes.io/managed-by": "sluice-operator", "sluice.dev/tenant": "evil",
                    "pod-security.kubernetes.io/enforce": "restricted"}}}),
            ),
        ] {
            let (code, message) = refused(what, nss.create(&pp, &object(ns)).await);
            assert_eq!(code, 403, "{what}: {message}");
        }
        // Claiming kube-system as its own.
        let claim = json!({"metadata": {"labels": {
            "app.kubernetes.io/managed-by": "sluice-operator", "sluice.dev/tenant": "system",
            "pod-security.kubernetes.io/enforce": "restricted"}}});
        let (code, message) = refused(
            "labelling kube-system as a tenant namespace",
            nss.patch(
                "kube-system",
                &PatchParams::default(),
                &Patch::Merge(&claim),
            )
            .await,
        );
        assert_eq!(code, 403, "{message}");
        assert!(message.contains("only namespaces it created"), "{message}");
        // Deleting namespaces: not even its own (they go with their Tenant); RBAC grants no
        // namespace deletion, and the policy would refuse it too.
        refused(
            "deleting a tenant namespace",
            nss.delete(tenant_ns, &Default::default()).await,
        );

        // Leases: only in its own namespace (its Role there is its only grant of Leases).
        let lease: Lease =
            object(json!({"metadata": {"name": "sluice-operator", "namespace": "default"}}));
        let (code, _) = refused(
            "a Lease in default",
            Api::<Lease>::namespaced(me.clone(), "default")
                .create(&pp, &lease)
                .await,
        );
        assert_eq!(code, 403);

        // What it did for the tenant was all allowed: its Events, the Tenant's in default.
        eventually("the Tenant's Events, written by the operator", || async {
            Api::<Event>::namespaced(admin.clone(), "default")
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .any(|e| e.involved_object.kind.as_deref() == Some("Tenant"))
        })
        .await;
        op.assert_running();
        op.stop().await;
    });
}

/// A client that impersonates `user` (`kubectl --as`), through the administrator.
fn as_user(sim: &SimCluster, user: &str) -> Client {
    let mut config = Config::new(sim.url().parse().unwrap());
    config.auth_info.impersonate = Some(user.to_string());
    Client::try_from(config).unwrap()
}

fn stream(ns: &str) -> Stream {
    object(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Stream",
        "metadata": {"name": "orders", "namespace": ns}, "spec": {}
    }))
}

fn pipeline(ns: &str) -> Pipeline {
    object(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline",
        "metadata": {"name": "p", "namespace": ns},
        "spec": {"source": {"stream": "orders"}, "sinks": [{"name": "a", "nats": {"subject": "out"}}]}
    }))
}

#[test]
fn tenant_owners_manage_their_own_pipelines_and_cannot_reach_another_tenant() {
    let sim = SimCluster::start();
    sim.block_on(async {
        let admin = client(&sim);
        let op = Operator::start(&sim, None);
        create_tenant(&admin, "acme", "alice").await;
        create_tenant(&admin, "bravo", "bob").await;
        let alice = as_user(&sim, "alice");
        let pp = PostParams::default();

        // In her own namespace: streams and pipelines, created, read, scaled and deleted.
        let streams = Api::<Stream>::namespaced(alice.clone(), "sluice-acme");
        streams
            .create(&pp, &stream("sluice-acme"))
            .await
            .expect("her stream");
        let pipelines = Api::<Pipeline>::namespaced(alice.clone(), "sluice-acme");
        pipelines
            .create(&pp, &pipeline("sluice-acme"))
            .await
            .expect("her pipeline");
        pipelines.get("p").await.expect("reads it");
        pipelines
            .patch(
                "p",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"parallelism": 2}})),
            )
            .await
            .expect("changes it");
        pipelines
            .delete("p", &Default::default())
            .await
            .expect("deletes it");

        // Bob's namespace: nothing, not even a read.
        let theirs = Api::<Pipeline>::namespaced(alice.clone(), "sluice-bravo");
        let (code, message) = refused(
            "reading bravo's pipelines",
            theirs.list(&ListParams::default()).await,
        );
        assert_eq!(code, 403, "{message}");
        assert!(
            message.contains("User \"alice\" cannot list resource \"pipelines\"")
                && message.contains("in the namespace \"sluice-bravo\""),
            "{message}"
        );
        refused(
            "creating a pipeline in bravo",
            theirs.create(&pp, &pipeline("sluice-bravo")).await,
        );
        refused(
            "creating a stream in bravo",
            Api::<Stream>::namespaced(alice.clone(), "sluice-bravo")
                .create(&pp, &stream("sluice-bravo"))
                .await,
        );
        // Nor the platform's objects: Tenants, other namespaces, the routes' Deployments.
        refused(
            "listing Tenants",
            Api::<Tenant>::all(alice.clone())
                .list(&ListParams::default())
                .await,
        );
        refused(
            "a Deployment in her namespace",
            Api::<Deployment>::namespaced(alice.clone(), "sluice-acme")
                .create(&pp, &deployment("sluice-acme"))
                .await,
        );
        // Secrets are opt-in (tenantRoles.manageSecrets), off by default.
        let (code, message) = refused(
            "reading Secrets in her namespace",
            Api::<Secret>::namespaced(alice.clone(), "sluice-acme")
                .list(&ListParams::default())
                .await,
        );
        assert_eq!(code, 403, "{message}");
        // Bob, the other way round.
        let bob = as_user(&sim, "bob");
        refused(
            "bob reading acme's streams",
            Api::<Stream>::namespaced(bob, "sluice-acme")
                .list(&ListParams::default())
                .await,
        );
        op.stop().await;
    });
}

/// The owners' binding points at sluice-tenant-edit, which is exactly the chart's tenant
/// role: its rules are the aggregate of the chart's tenant ClusterRoles.
#[test]
fn the_tenant_role_aggregates_the_chart_rules_and_no_secrets_by_default() {
    let sim = SimCluster::start();
    sim.block_on(async {
        let admin = client(&sim);
        eventually("the aggregated tenant role", || async {
            let role = Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(admin.clone())
                .get("sluice-tenant-edit")
                .await
                .unwrap();
            role.rules.is_some_and(|rules| {
                !rules.is_empty()
                    && rules.iter().all(|r| {
                        !r.resources
                            .as_ref()
                            .is_some_and(|res| res.iter().any(|x| x == "secrets" || x == "*"))
                    })
            })
        })
        .await;
    });
}
