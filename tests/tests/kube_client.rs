//! kube-rs clients, watchers and controllers against kubesim behave as against a real server.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Client, Config, Resource, ResourceExt};
use serde_json::json;
use sluice_crd::Pipeline;
use sluice_tests::SimCluster;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

fn client(sim: &SimCluster) -> Client {
    let config = Config::new(sim.url().parse().expect("url"));
    Client::try_from(config).expect("client")
}

fn pipeline(name: &str, parallelism: i32) -> Pipeline {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline",
        "metadata": {"name": name, "labels": {"team": "payments"}},
        "spec": {"source": {"stream": "orders"},
                 "sinks": [{"name": "alerts", "nats": {"subject": "alerts"}}],
                 "parallelism": parallelism}
    }))
    .expect("valid pipeline")
}

async fn namespace(client: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
}

/// Polls `check` until it returns true or 20 s pass.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn api_error_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

#[test]
fn typed_crud_with_optimistic_concurrency_and_generation() {
    let sim = SimCluster::start();
    sim.block_on(async {
        let c = client(&sim);
        namespace(&c, "t1").await;
        let api: Api<Pipeline> = Api::namespaced(c.clone(), "t1");
        let created = api
            .create(&PostParams::default(), &pipeline("p1", 1))
            .await
            .unwrap();
        assert_eq!(created.metadata.generation, Some(1));
        assert!(created.metadata.uid.is_some());
        let err = api
            .create(&PostParams::default(), &pipeline("p1", 1))
            .await
            .unwrap_err();
        assert_eq!(api_error_code(&err), Some(409));

        // A stale resourceVersion is a 409 Conflict; re-reading and retrying succeeds.
        let mut stale = created.clone();
        let mut fresh = api.get("p1").await.unwrap();
        fresh.spec.parallelism = 2;
        let fresh = api
            .replace("p1", &PostParams::default(), &fresh)
            .await
            .unwrap();
        assert_eq!(fresh.metadata.generation, Some(2));
        stale.spec.parallelism = 3;
        let err = api
            .replace("p1", &PostParams::default(), &stale)
            .await
            .unwrap_err();
        assert_eq!(api_error_code(&err), Some(409));
        let mut retry = api.get("p1").await.unwrap();
        retry.spec.parallelism = 3;
        api.replace("p1", &PostParams::default(), &retry)
            .await
            .unwrap();

        // Status writes go through the status subresource and leave generation alone.
        let status = json!({"status": {"phase": "Running", "replicas": 3, "readyReplicas": 3}});
        let after = api
            .patch_status("p1", &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
        assert_eq!(after.metadata.generation, Some(3));
        assert_eq!(after.status.as_ref().unwrap().ready_replicas, 3);
        // ...and a main-resource write cannot change the status.
        let mut sneaky = api.get("p1").await.unwrap();
        sneaky.status.as_mut().unwrap().ready_replicas = 0;
        let kept = api
            .replace("p1", &PostParams::default(), &sneaky)
            .await
            .unwrap();
        assert_eq!(kept.status.unwrap().ready_replicas, 3);

        // Label selectors and pagination.
        for i in 0..5 {
            let mut p = pipeline(&format!("q{i}"), 1);
            p.labels_mut().insert("team".into(), "search".into());
            api.create(&PostParams::default(), &p).await.unwrap();
        }
        let search = api
            .list(&ListParams::default().labels("team=search"))
            .await
            .unwrap();
        assert_eq!(search.items.len(), 5);
        let page = api.list(&ListParams::default().limit(2)).await.unwrap();
        assert_eq!(page.items.len(), 2);
        let token = page.metadata.continue_.clone().expect("continue token");
        let rest = api
            .list(&ListParams::default().limit(10).continue_token(&token))
            .await
            .unwrap();
        assert_eq!(rest.items.len(), 4);
        assert!(rest.metadata.continue_.is_none());
    });
}

#[test]
fn server_side_apply_between_managers() {
    let sim = SimCluster::start();
    sim.block_on(async {
        let c = client(&sim);
        namespace(&c, "t1").await;
        let api: Api<Pipeline> = Api::namespaced(c.clone(), "t1");
        let mut p = pipeline("p1", 1);
        p.spec.filter = Some("event.ok".into());
        let ssa = |m: &str| PatchParams::apply(m);
        let created = api
            .patch("p1", &ssa("alice"), &Patch::Apply(&p))
            .await
            .unwrap();
        assert_eq!(created.spec.filter.as_deref(), Some("event.ok"));
        // Re-applying the same configuration is a no-op: same resourceVersion.
        let again = api
            .patch("p1", &ssa("alice"), &Patch::Apply(&p))
            .await
            .unwrap();
        assert_eq!(again.resource_version(), created.resource_version());

        let mut bob = pipeline("p1", 4);
        bob.spec.filter = Some("event.ok".into());
        let err = api
            .patch("p1", &ssa("bob"), &Patch::Apply(&bob))
            .await
            .unwrap_err();
        assert_eq!(api_error_code(&err), Some(409));
        let forced = api
            .patch("p1", &ssa("bob").force(), &Patch::Apply(&bob))
            .await
            .unwrap();
        assert_eq!(forced.spec.parallelism, 4);

        // alice stops applying the filter; bob co-owns it, so it stays.
        let mut alice = pipeline("p1", 1);
        alice.spec.parallelism = 4;
        let out = api
            .patch("p1", &ssa("alice"), &Patch::Apply(&alice))
            .await
            .unwrap();
        assert_eq!(out.spec.filter.as_deref(), Some("event.ok"));
        // bob stops too: now nobody owns it and it disappears.
        let bob2 = pipeline("p1", 4);
        let out = api
            .patch("p1", &ssa("bob"), &Patch::Apply(&bob2))
            .await
            .unwrap();
        assert_eq!(out.spec.filter, None);
    });
}

#[test]
fn watcher_recovers_from_expired_resource_versions() {
    let sim = SimCluster::start();
    let cluster = sim.cluster().clone();
    sim.block_on(async {
        let c = client(&sim);
        namespace(&c, "t1").await;
        let api: Api<Pipeline> = Api::namespaced(c.clone(), "t1");
        api.create(&PostParams::default(), &pipeline("p1", 1))
            .await
            .unwrap();

        let inits = Arc::new(AtomicUsize::new(0));
        let names = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
        let (i2, n2) = (inits.clone(), names.clone());
        // A short server-side timeout makes the watcher reconnect often, resuming from the
        // last resourceVersion it saw.
        let stream = watcher(api.clone(), watcher::Config::default().timeout(1));
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(watcher::Event::Init) => {
                        i2.fetch_add(1, Ordering::SeqCst);
                        n2.lock().unwrap().clear();
                    }
                    Ok(watcher::Event::InitApply(p)) | Ok(watcher::Event::Apply(p)) => {
                        n2.lock().unwrap().insert(p.name_any());
                    }
                    Ok(watcher::Event::Delete(p)) => {
                        n2.lock().unwrap().remove(&p.name_any());
                    }
                    _ => {}
                }
            }
        });
        eventually("watcher sees p1", || async {
            names.lock().unwrap().contains("p1")
        })
        .await;
        assert_eq!(inits.load(Ordering::SeqCst), 1);
        // Move the cluster on, then drop the history: the watcher's next reconnect asks for a
        // version that is gone, gets 410 Gone, and must list again.
        let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "t1");
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "bump"}})).unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
        cluster.compact();
        eventually("watcher relists after 410", || async {
            inits.load(Ordering::SeqCst) >= 2
        })
        .await;
        api.create(&PostParams::default(), &pipeline("p2", 1))
            .await
            .unwrap();
        api.delete("p1", &DeleteParams::default()).await.unwrap();
        eventually("watcher converges on {p2}", || async {
            *names.lock().unwrap() == ["p2".to_string()].into_iter().collect()
        })
        .await;
        task.abort();
    });
}

#[derive(Debug, thiserror::Error)]
enum ReconcileError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Finalizer(#[from] Box<kube::runtime::finalizer::Error<kube::Error>>),
}

struct Ctx {
    client: Client,
    reconciles: AtomicUsize,
    cleanups: AtomicUsize,
}

async fn reconcile(p: Arc<Pipeline>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    ctx.reconciles.fetch_add(1, Ordering::SeqCst);
    let ns = p.namespace().unwrap_or_default();
    let api: Api<Pipeline> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, "sluice.dev/test-cleanup", p, |event| async {
        match event {
            Finalizer::Apply(p) => {
                let owner = p.controller_owner_ref(&()).expect("owner ref");
                let cm = json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("{}-route", p.name_any()), "ownerReferences": [owner]},
                    "data": {"parallelism": p.spec.parallelism.to_string()}
                });
                Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns)
                    .patch(
                        &format!("{}-route", p.name_any()),
                        &PatchParams::apply("test-operator").force(),
                        &Patch::Apply(&cm),
                    )
                    .await?;
                Ok(Action::await_change())
            }
            Finalizer::Cleanup(_) => {
                ctx.cleanups.fetch_add(1, Ordering::SeqCst);
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| ReconcileError::Finalizer(Box::new(e)))
}

fn error_policy(_: Arc<Pipeline>, _: &ReconcileError, _: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(200))
}

#[test]
fn controller_with_owned_children_and_finalizer() {
    let sim = SimCluster::start();
    sim.block_on(async {
        let c = client(&sim);
        namespace(&c, "t1").await;
        let pipelines: Api<Pipeline> = Api::namespaced(c.clone(), "t1");
        let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "t1");
        let ctx = Arc::new(Ctx {
            client: c.clone(),
            reconciles: AtomicUsize::new(0),
            cleanups: AtomicUsize::new(0),
        });
        let controller =
            Controller::new(Api::<Pipeline>::all(c.clone()), watcher::Config::default())
                .owns(Api::<ConfigMap>::all(c.clone()), watcher::Config::default())
                .run(reconcile, error_policy, ctx.clone())
                .for_each(|r| async move {
                    if let Err(e) = r {
                        eprintln!("reconcile error: {e:?}");
                    }
                });
        let task = tokio::spawn(controller);

        pipelines
            .create(&PostParams::default(), &pipeline("p1", 2))
            .await
            .unwrap();
        eventually("child ConfigMap created", || async {
            cms.get_opt("p1-route").await.unwrap().is_some()
        })
        .await;
        let p = pipelines.get("p1").await.unwrap();
        assert!(
            p.finalizers()
                .contains(&"sluice.dev/test-cleanup".to_string())
        );

        // A child deleted by hand is restored by the controller (owner watch).
        cms.delete("p1-route", &DeleteParams::default())
            .await
            .unwrap();
        eventually("child ConfigMap restored", || async {
            cms.get_opt("p1-route").await.unwrap().is_some()
        })
        .await;
        // A spec change reaches the child.
        pipelines
            .patch(
                "p1",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"parallelism": 5}})),
            )
            .await
            .unwrap();
        eventually("child follows the spec", || async {
            cms.get("p1-route").await.unwrap().data.unwrap()["parallelism"] == "5"
        })
        .await;

        // Deleting the pipeline runs the cleanup, drops the finalizer, and the garbage
        // collector removes the child.
        pipelines
            .delete("p1", &DeleteParams::default())
            .await
            .unwrap();
        eventually("pipeline gone", || async {
            pipelines.get_opt("p1").await.unwrap().is_none()
        })
        .await;
        // Cleanup ran (at least once: a retried finalizer removal may run it again).
        assert!(ctx.cleanups.load(Ordering::SeqCst) >= 1);
        eventually("child collected", || async {
            cms.get_opt("p1-route").await.unwrap().is_none()
        })
        .await;
        assert!(ctx.reconciles.load(Ordering::SeqCst) >= 3);
        task.abort();
    });
}

#[test]
fn recorded_events_show_in_both_event_apis() {
    let sim = SimCluster::start();
    sim.block_on(async {
        let c = client(&sim);
        namespace(&c, "t1").await;
        let api: Api<Pipeline> = Api::namespaced(c.clone(), "t1");
        let p = api
            .create(&PostParams::default(), &pipeline("p1", 1))
            .await
            .unwrap();
        let recorder = Recorder::new(
            c.clone(),
            Reporter {
                controller: "sluice-operator".into(),
                instance: None,
            },
        );
        let ev = KubeEvent {
            type_: EventType::Normal,
            reason: "Accepted".into(),
            note: Some("pipeline accepted".into()),
            action: "Reconcile".into(),
            secondary: None,
        };
        recorder.publish(&ev, &p.object_ref(&())).await.unwrap();
        recorder.publish(&ev, &p.object_ref(&())).await.unwrap();
        let v1: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(c.clone(), "t1");
        let list = v1.list(&ListParams::default()).await.unwrap();
        assert_eq!(list.items.len(), 1, "the second publish updates the series");
        assert_eq!(list.items[0].series.as_ref().map(|s| s.count), Some(2));
        let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(c.clone(), "t1");
        let list = core
            .list(&ListParams::default().fields("involvedObject.name=p1"))
            .await
            .unwrap();
        assert_eq!(list.items.len(), 1);
        assert_eq!(list.items[0].message.as_deref(), Some("pipeline accepted"));
        assert_eq!(list.items[0].reason.as_deref(), Some("Accepted"));
    });
    let out = sim.kubectl_ok(&["describe", "pipeline", "p1", "-n", "t1"]);
    assert!(out.contains("pipeline accepted"), "{out}");
}

#[test]
fn deployment_status_follows_the_kubelet_hook() {
    use k8s_openapi::api::apps::v1::Deployment;
    use kubesim::kubelet::PodBehaviour;
    let sim = SimCluster::start();
    let cluster = sim.cluster().clone();
    sim.block_on(async {
        let c = client(&sim);
        namespace(&c, "t1").await;
        let api: Api<Deployment> = Api::namespaced(c.clone(), "t1");
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "route"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "r"}},
                     "template": {"metadata": {"labels": {"app": "r"}},
                                  "spec": {"containers": [{"name": "w", "image": "sluice-worker"}]}}}
        }))
        .unwrap();
        api.create(&PostParams::default(), &d).await.unwrap();
        let got = api.get("route").await.unwrap();
        assert_eq!(got.status.unwrap().ready_replicas, Some(2));

        cluster.set_kubelet(Arc::new(|d: &serde_json::Value| {
            if d["metadata"]["name"] == "route" {
                PodBehaviour::CrashLoop
            } else {
                PodBehaviour::Ready
            }
        }));
        let got = api.get("route").await.unwrap();
        let status = got.status.unwrap();
        assert_eq!(status.ready_replicas, None);
        assert_eq!(status.unavailable_replicas, Some(2));
        // A Deployment whose selector does not match its pod labels is refused, as on a real server.
        let mut bad = d.clone();
        bad.metadata.name = Some("bad".into());
        bad.spec.template.metadata.as_mut().unwrap().labels = None;
        let err = api.create(&PostParams::default(), &bad).await.unwrap_err();
        assert_eq!(api_error_code(&err), Some(422));
    });
}

#[test]
fn lists_of_all_namespaces_and_typed_errors() {
    let sim = SimCluster::start();
    sim.block_on(async {
        let c = client(&sim);
        namespace(&c, "a").await;
        namespace(&c, "b").await;
        for ns in ["a", "b"] {
            Api::<Pipeline>::namespaced(c.clone(), ns)
                .create(&PostParams::default(), &pipeline("p", 1))
                .await
                .unwrap();
        }
        let all = Api::<Pipeline>::all(c.clone())
            .list(&ListParams::default())
            .await
            .unwrap();
        let mut where_: Vec<String> = all.items.iter().map(|p| p.namespace().unwrap()).collect();
        where_.sort();
        assert_eq!(where_, ["a", "b"]);
        let err = Api::<Pipeline>::namespaced(c.clone(), "missing")
            .create(&PostParams::default(), &pipeline("p", 1))
            .await
            .unwrap_err();
        match err {
            kube::Error::Api(s) => {
                assert_eq!(s.code, 404);
                assert_eq!(s.message, "namespaces \"missing\" not found");
            }
            other => panic!("unexpected {other:?}"),
        }
        let _ = Pipeline::kind(&());
    });
}
