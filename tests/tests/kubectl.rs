//! The real `kubectl` against kubesim: every command the platform's users and docs rely on.

use sluice_tests::SimCluster;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

const NAMESPACE: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: t1
";

fn pipeline(name: &str, parallelism: u32) -> String {
    format!(
        "apiVersion: sluice.dev/v1alpha1
kind: Pipeline
metadata:
  name: {name}
  namespace: t1
  labels:
    team: payments
spec:
  source:
    stream: orders
  filter: event.amount > 100
  sinks:
    - name: alerts
      nats:
        subject: alerts.orders
  parallelism: {parallelism}
"
    )
}

fn with_namespace() -> SimCluster {
    let sim = SimCluster::start();
    sim.apply(NAMESPACE, &[]);
    sim
}

#[test]
fn version_and_api_resources_list_sluice_kinds() {
    let sim = SimCluster::start();
    let version = sim.kubectl_ok(&["version", "-o", "json"]);
    assert!(version.contains("\"serverVersion\""), "{version}");
    let out = sim.kubectl_ok(&["api-resources"]);
    let line = out
        .lines()
        .find(|l| l.starts_with("pipelines "))
        .expect("pipelines listed");
    assert!(
        line.contains("pl") && line.contains("sluice.dev/v1alpha1") && line.contains("Pipeline")
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("tenants ") && l.contains("false"))
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("deployments ") && l.contains("apps/v1"))
    );
    let sluice = sim.kubectl_ok(&["api-resources", "--api-group=sluice.dev", "-o", "name"]);
    assert_eq!(
        sluice.lines().collect::<Vec<_>>(),
        [
            "pipelines.sluice.dev",
            "streams.sluice.dev",
            "tenants.sluice.dev"
        ]
    );
}

#[test]
fn create_namespace_twice_is_already_exists() {
    let sim = SimCluster::start();
    assert_eq!(
        sim.kubectl_ok(&["create", "ns", "foo"]).trim(),
        "namespace/foo created"
    );
    let err = sim.kubectl_err(&["create", "ns", "foo"]);
    assert!(
        err.contains("Error from server (AlreadyExists): namespaces \"foo\" already exists"),
        "{err}"
    );
    let ns = sim.get_json(&["ns", "foo"]);
    assert_eq!(ns["status"]["phase"], "Active");
    // The namespace controller's work: a default service account.
    sim.kubectl_ok(&["get", "serviceaccount", "default", "-n", "foo"]);
}

#[test]
fn client_side_apply_creates_configures_and_leaves_unchanged() {
    let sim = with_namespace();
    assert_eq!(
        sim.apply(&pipeline("p1", 1), &[]).trim(),
        "pipeline.sluice.dev/p1 created"
    );
    assert_eq!(
        sim.apply(&pipeline("p1", 1), &[]).trim(),
        "pipeline.sluice.dev/p1 unchanged"
    );
    assert_eq!(
        sim.apply(&pipeline("p1", 2), &[]).trim(),
        "pipeline.sluice.dev/p1 configured"
    );
    let p = sim.get_json(&["pipeline", "p1", "-n", "t1"]);
    assert_eq!(p["spec"]["parallelism"], 2);
    assert_eq!(p["metadata"]["generation"], 2);
    assert!(
        p["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );
}

#[test]
fn server_side_apply_owns_fields_and_reports_conflicts() {
    let sim = with_namespace();
    let out = sim.apply(&pipeline("p1", 1), &["--server-side"]);
    assert_eq!(out.trim(), "pipeline.sluice.dev/p1 serverside-applied");
    // Another manager changes a field the applier owns...
    sim.kubectl_ok(&["scale", "pipeline", "p1", "-n", "t1", "--replicas=4"]);
    // ...so applying the old value again conflicts, as on a real server.
    let out = sim.kubectl_with_input(&["apply", "--server-side", "-f", "-"], &pipeline("p1", 1));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Apply failed with 1 conflict"), "{err}");
    assert!(err.contains(".spec.parallelism"), "{err}");
    let out = sim.apply(&pipeline("p1", 1), &["--server-side", "--force-conflicts"]);
    assert!(out.contains("serverside-applied"));
    let p = sim.get_json(&["pipeline", "p1", "-n", "t1", "--show-managed-fields"]);
    assert_eq!(p["spec"]["parallelism"], 1);
    let managers: Vec<&str> = p["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert!(managers.contains(&"kubectl"), "{managers:?}");
    // Fields the applier stops applying disappear.
    let without_filter = pipeline("p1", 1).replace("  filter: event.amount > 100\n", "");
    sim.apply(&without_filter, &["--server-side"]);
    let p = sim.get_json(&["pipeline", "p1", "-n", "t1"]);
    assert!(p["spec"].get("filter").is_none(), "{p}");
}

#[test]
fn get_in_all_output_forms() {
    let sim = with_namespace();
    sim.apply(&pipeline("p1", 1), &[]);
    sim.apply(
        &pipeline("p2", 3).replace("team: payments", "team: search"),
        &[],
    );
    let all = sim.kubectl_ok(&["get", "pipelines", "-A"]);
    let header = all.lines().next().unwrap();
    for col in [
        "NAMESPACE",
        "NAME",
        "READY",
        "PHASE",
        "SOURCE",
        "PARALLELISM",
        "AGE",
    ] {
        assert!(header.contains(col), "{header}");
    }
    assert!(
        all.lines()
            .any(|l| l.starts_with("t1") && l.contains("p2") && l.contains(" 3 ")),
        "{all}"
    );
    let yaml = sim.kubectl_ok(&["get", "pl", "-n", "t1", "-o", "yaml"]);
    let list: serde_json::Value = serde_norway::from_str(&yaml).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let labelled = sim.kubectl_ok(&["get", "pl", "-n", "t1", "-l", "team=search", "-o", "name"]);
    assert_eq!(labelled.trim(), "pipeline.sluice.dev/p2");
    let not = sim.kubectl_ok(&["get", "pl", "-n", "t1", "-l", "team!=search", "-o", "name"]);
    assert_eq!(not.trim(), "pipeline.sluice.dev/p1");
    let shown = sim.kubectl_ok(&["get", "pl", "-n", "t1", "--show-labels"]);
    assert!(shown.contains("team=payments"), "{shown}");
    let jsonpath = sim.kubectl_ok(&[
        "get",
        "pl",
        "p2",
        "-n",
        "t1",
        "-o",
        "jsonpath={.spec.sinks[0].nats.subject}",
    ]);
    assert_eq!(jsonpath, "alerts.orders");
    let by_category = sim.kubectl_ok(&["get", "sluice", "-A", "-o", "name"]);
    assert!(
        by_category.contains("pipeline.sluice.dev/p1"),
        "{by_category}"
    );
    let err = sim.kubectl_err(&["get", "pl", "nope", "-n", "t1"]);
    assert!(
        err.contains("Error from server (NotFound): pipelines.sluice.dev \"nope\" not found"),
        "{err}"
    );
}

/// Reads lines of a running `kubectl ... -w` until `want` matches one, or the deadline passes.
fn wait_for_line(
    lines: &std::sync::mpsc::Receiver<String>,
    want: impl Fn(&str) -> bool,
    seen: &mut Vec<String>,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(l) = lines.recv_timeout(Duration::from_millis(200)) {
            let hit = want(&l);
            seen.push(l);
            if hit {
                return true;
            }
        }
    }
    false
}

#[test]
fn get_watch_prints_changes_as_they_happen() {
    let sim = with_namespace();
    sim.apply(&pipeline("p1", 1), &[]);
    let mut child = sim
        .kubectl_command(&["get", "pipelines", "-n", "t1", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = vec![];
    assert!(
        wait_for_line(&rx, |l| l.starts_with("p1 "), &mut seen),
        "{seen:?}"
    );
    sim.kubectl_ok(&["scale", "pipeline", "p1", "-n", "t1", "--replicas=7"]);
    assert!(
        wait_for_line(
            &rx,
            |l| l.starts_with("p1 ") && l.contains(" 7 "),
            &mut seen
        ),
        "{seen:?}"
    );
    sim.apply(&pipeline("p9", 2), &[]);
    assert!(
        wait_for_line(&rx, |l| l.starts_with("p9 "), &mut seen),
        "{seen:?}"
    );
    // The watch stays open: kubectl is still running.
    assert!(child.try_wait().unwrap().is_none());
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn describe_shows_spec_status_and_events() {
    let sim = with_namespace();
    sim.apply(&pipeline("p1", 1), &[]);
    let uid = sim.get_json(&["pipeline", "p1", "-n", "t1"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let event = format!(
        "apiVersion: v1
kind: Event
metadata:
  name: p1.1
  namespace: t1
involvedObject:
  apiVersion: sluice.dev/v1alpha1
  kind: Pipeline
  name: p1
  namespace: t1
  uid: {uid}
reason: Accepted
message: pipeline accepted
type: Normal
source:
  component: sluice-operator
count: 1
firstTimestamp: \"2026-01-01T00:00:00Z\"
lastTimestamp: \"2026-01-01T00:00:00Z\"
"
    );
    sim.apply(&event, &[]);
    let out = sim.kubectl_ok(&["describe", "pipeline", "p1", "-n", "t1"]);
    assert!(out.contains("Name:         p1"), "{out}");
    assert!(out.contains("Kind:         Pipeline"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("Stream:") && l.ends_with(" orders")),
        "{out}"
    );
    assert!(
        out.contains("Accepted") && out.contains("pipeline accepted"),
        "{out}"
    );
    assert!(out.contains("sluice-operator"), "{out}");
}

#[test]
fn explain_shows_the_field_docs() {
    let sim = SimCluster::start();
    let out = sim.kubectl_ok(&["explain", "pipeline.spec.source"]);
    assert!(out.contains("KIND:       Pipeline"), "{out}");
    assert!(out.contains("stream\t<string> -required-"), "{out}");
    let out = sim.kubectl_ok(&["explain", "tenants.spec.quota"]);
    assert!(out.contains("maxPipelines"), "{out}");
    let out = sim.kubectl_ok(&["explain", "pipeline", "--recursive"]);
    assert!(out.contains("parallelism"), "{out}");
}

#[test]
fn delete_waits_for_finalizers_and_reports_not_found() {
    let sim = with_namespace();
    sim.apply(&pipeline("p1", 1), &[]);
    sim.kubectl_ok(&[
        "patch",
        "pipeline",
        "p1",
        "-n",
        "t1",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["sluice.dev/cleanup"]}}"#,
    ]);
    let mut deleting = sim
        .kubectl_command(&["delete", "pipeline", "p1", "-n", "t1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The object stays, marked, while its finalizer is there.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let p = sim.get_json(&["pipeline", "p1", "-n", "t1"]);
        if p["metadata"]["deletionTimestamp"].is_string() {
            break;
        }
        assert!(Instant::now() < deadline, "never marked for deletion");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        deleting.try_wait().unwrap().is_none(),
        "kubectl delete should wait"
    );
    sim.kubectl_ok(&[
        "patch",
        "pipeline",
        "p1",
        "-n",
        "t1",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    let out = deleting.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pipeline.sluice.dev \"p1\" deleted"));
    let err = sim.kubectl_err(&["delete", "pipeline", "p1", "-n", "t1"]);
    assert!(
        err.contains("Error from server (NotFound): pipelines.sluice.dev \"p1\" not found"),
        "{err}"
    );
}

#[test]
fn scale_writes_parallelism_through_the_scale_subresource() {
    let sim = with_namespace();
    sim.apply(&pipeline("p1", 1), &[]);
    let out = sim.kubectl_ok(&["scale", "pipeline", "p1", "-n", "t1", "--replicas=3"]);
    assert_eq!(out.trim(), "pipeline.sluice.dev/p1 scaled");
    assert_eq!(
        sim.get_json(&["pl", "p1", "-n", "t1"])["spec"]["parallelism"],
        3
    );
    // --current-replicas reads the Scale first and refuses on a mismatch.
    let err = sim.kubectl_err(&[
        "scale",
        "pipeline",
        "p1",
        "-n",
        "t1",
        "--current-replicas=1",
        "--replicas=5",
    ]);
    assert!(err.contains("Expected replicas to be 1, was 3"), "{err}");
    sim.kubectl_ok(&[
        "scale",
        "pipeline",
        "p1",
        "-n",
        "t1",
        "--current-replicas=3",
        "--replicas=5",
    ]);
    assert_eq!(
        sim.get_json(&["pl", "p1", "-n", "t1"])["spec"]["parallelism"],
        5
    );
    let err = sim.kubectl_err(&["scale", "pipeline", "p1", "-n", "t1", "--replicas=-1"]);
    assert!(err.contains("replicas"), "{err}");
}

#[test]
fn patch_merge_json_and_strategic() {
    let sim = with_namespace();
    sim.apply(&pipeline("p1", 1), &[]);
    let out = sim.kubectl_ok(&[
        "patch",
        "pipeline",
        "p1",
        "-n",
        "t1",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
    assert_eq!(out.trim(), "pipeline.sluice.dev/p1 patched");
    let out = sim.kubectl_ok(&[
        "patch",
        "pipeline",
        "p1",
        "-n",
        "t1",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
    assert_eq!(out.trim(), "pipeline.sluice.dev/p1 patched (no change)");
    sim.kubectl_ok(&[
        "patch",
        "pipeline",
        "p1",
        "-n",
        "t1",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/parallelism","value":4}]"#,
    ]);
    assert_eq!(
        sim.get_json(&["pl", "p1", "-n", "t1"])["spec"]["parallelism"],
        4
    );
    // Strategic merge is for built-in kinds only, as on a real server.
    let err = sim.kubectl_err(&[
        "patch",
        "pipeline",
        "p1",
        "-n",
        "t1",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]);
    assert!(
        err.contains("application/strategic-merge-patch+json is not supported"),
        "{err}"
    );
    sim.kubectl_ok(&[
        "create",
        "configmap",
        "c1",
        "-n",
        "t1",
        "--from-literal=a=1",
    ]);
    sim.kubectl_ok(&[
        "patch",
        "configmap",
        "c1",
        "-n",
        "t1",
        "-p",
        r#"{"data":{"b":"2"}}"#,
    ]);
    let cm = sim.get_json(&["cm", "c1", "-n", "t1"]);
    assert_eq!(cm["data"], serde_json::json!({"a": "1", "b": "2"}));
}

#[test]
fn invalid_custom_resources_get_the_real_servers_errors() {
    let sim = with_namespace();
    // A CEL rule: exactly one sink kind.
    let two_kinds = pipeline("bad", 1).replace(
        "      nats:\n        subject: alerts.orders\n",
        "      nats:\n        subject: a\n      jetstream:\n        stream: b\n",
    );
    let out = sim.kubectl_with_input(&["apply", "-f", "-"], &two_kinds);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("The Pipeline \"bad\" is invalid"), "{err}");
    assert!(err.contains("spec.sinks[0]"), "{err}");
    // The schema: a negative parallelism.
    let out = sim.kubectl_with_input(
        &["apply", "-f", "-"],
        &pipeline("bad", 1).replace("parallelism: 1", "parallelism: -1"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec.parallelism"), "{err}");
    // Unknown fields are refused with strict validation (kubectl's default).
    let out = sim.kubectl_with_input(
        &["apply", "-f", "-"],
        &pipeline("bad", 1).replace("  parallelism: 1", "  paralelism: 1"),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field \"spec.paralelism\""), "{err}");
    // A transition rule: the source stream is immutable.
    sim.apply(&pipeline("p1", 1), &[]);
    let out = sim.kubectl_with_input(
        &["apply", "-f", "-"],
        &pipeline("p1", 1).replace("stream: orders", "stream: other"),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.source.stream") && err.contains("immutable"),
        "{err}"
    );
    // Nothing invalid was stored.
    let names = sim.kubectl_ok(&["get", "pl", "-n", "t1", "-o", "name"]);
    assert_eq!(names.trim(), "pipeline.sluice.dev/p1");
}

#[test]
fn deleting_a_namespace_removes_its_content() {
    let sim = with_namespace();
    sim.apply(&pipeline("p1", 1), &[]);
    sim.kubectl_ok(&[
        "create",
        "configmap",
        "c1",
        "-n",
        "t1",
        "--from-literal=a=1",
    ]);
    let out = sim.kubectl_ok(&["delete", "namespace", "t1"]);
    assert!(out.contains("namespace \"t1\" deleted"), "{out}");
    let err = sim.kubectl_err(&["get", "ns", "t1"]);
    assert!(err.contains("NotFound"), "{err}");
    assert_eq!(
        sim.kubectl_ok(&["get", "pl", "-A", "-o", "name"]).trim(),
        ""
    );
    let err = sim.kubectl_err(&["create", "configmap", "c2", "-n", "t1"]);
    assert!(err.contains("namespaces \"t1\" not found"), "{err}");
}

#[test]
fn imperative_creates_send_protobuf_that_is_decoded_whole() {
    let sim = with_namespace();
    let n = ["-n", "t1"];
    for args in [
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx:1",
            "--replicas=2",
            "--port=80",
        ][..],
        &["create", "service", "clusterip", "web", "--tcp=80:8080"],
        &[
            "create",
            "job",
            "once",
            "--image=busybox",
            "--",
            "echo",
            "hi",
        ],
        &["create", "secret", "generic", "s", "--from-literal=a=b"],
        &["create", "configmap", "c", "--from-literal=a=b"],
        &[
            "create",
            "role",
            "reader",
            "--verb=get",
            "--resource=configmaps",
        ],
        &[
            "create",
            "rolebinding",
            "bob-reads",
            "--role=reader",
            "--user=bob",
        ],
        &["create", "quota", "q", "--hard=requests.cpu=1"],
        &[
            "create",
            "pdb",
            "web",
            "--selector=app=web",
            "--min-available=1",
        ],
    ] {
        // The namespace goes first: what follows `--` is the job's command.
        sim.kubectl_ok(&[&n[..], args].concat());
    }
    let d = sim.get_json(&["deployment", "web", "-n", "t1"]);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "nginx:1");
    assert_eq!(c["ports"][0]["containerPort"], 80);
    let s = sim.get_json(&["service", "web", "-n", "t1"]);
    assert_eq!(s["spec"]["ports"][0]["port"], 80);
    assert_eq!(s["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(s["spec"]["type"], "ClusterIP");
    let j = sim.get_json(&["job", "once", "-n", "t1"]);
    let c = &j["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["command"], serde_json::json!(["echo", "hi"]));
    assert_eq!(j["spec"]["template"]["spec"]["restartPolicy"], "Never");
    let r = sim.get_json(&["role", "reader", "-n", "t1"]);
    assert_eq!(r["rules"][0]["apiGroups"], serde_json::json!([""]));
    assert_eq!(
        r["rules"][0]["resources"],
        serde_json::json!(["configmaps"])
    );
    let b = sim.get_json(&["rolebinding", "bob-reads", "-n", "t1"]);
    assert_eq!(b["subjects"][0]["name"], "bob");
    assert_eq!(b["roleRef"]["name"], "reader");
    let q = sim.get_json(&["quota", "q", "-n", "t1"]);
    assert_eq!(q["spec"]["hard"]["requests.cpu"], "1");
    let p = sim.get_json(&["pdb", "web", "-n", "t1"]);
    assert_eq!(p["spec"]["minAvailable"], 1);
    // A Service name must be a DNS-1035 label, as in a real cluster.
    let err = sim.kubectl_err(&[
        "create",
        "service",
        "clusterip",
        "1web",
        "--tcp=80",
        "-n",
        "t1",
    ]);
    assert!(err.contains("Invalid value: \"1web\""), "{err}");
}

/// The chart's admission policies, as kubectl users meet them: RBAC lets the operator's
/// identity create Deployments (`kubectl auth can-i` says yes), and the policy refuses one in
/// `kube-system` with the real server's wording. Other identities are not bound by it.
#[test]
fn the_operators_admission_policy_refuses_it_outside_tenant_namespaces() {
    let sim = SimCluster::start();
    let operator = "--as=system:serviceaccount:sluice-system:sluice-operator";
    assert_eq!(
        sim.kubectl_ok(&[
            "auth",
            "can-i",
            "create",
            "deployments",
            "-n",
            "kube-system",
            operator
        ])
        .trim(),
        "yes",
        "RBAC alone would allow it"
    );
    let out = sim.kubectl(&[
        "auth",
        "can-i",
        "get",
        "secrets",
        "-n",
        "kube-system",
        operator,
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
    let err = sim.kubectl_err(&[
        "create",
        "deployment",
        "intruder",
        "--image=busybox",
        "-n",
        "kube-system",
        operator,
    ]);
    assert!(
        err.contains("ValidatingAdmissionPolicy 'sluice-operator-tenant-objects' with binding 'sluice-operator-tenant-objects' denied request: the operator writes only in the tenant namespaces it created, not in kube-system"),
        "{err}"
    );
    // The administrator is not the operator: the policy does not apply.
    sim.kubectl_ok(&[
        "create",
        "deployment",
        "mine",
        "--image=busybox",
        "-n",
        "kube-system",
    ]);
    let policies = sim.kubectl_ok(&["get", "validatingadmissionpolicies", "-o", "name"]);
    assert!(
        policies.contains("sluice-operator-namespaces"),
        "{policies}"
    );
}
