//! Hostile tenants, against the real stack: kubesim and the operator in-process, `sluice-api
//! serve` as a process, NATS JetStream and Postgres. Tenant `mallory-*` attacks, one attack
//! after the other, while tenant `alice-*` ingests and reads all along. Each attack asserts the
//! documented refusal; after each one the test asserts that the API process and the operator
//! still run and that alice's requests all succeeded with a p99 latency under 1 s; at the end,
//! that every event the API accepted from alice is in her JetStream stream.
//!
//! Every attack runs even when an earlier one failed; each prints its outcome as it ends, and the
//! test then fails listing each failed attack with its reason. `SLUICE_HOSTILE_ATTACKS=a,b` runs
//! only the attacks named.

use futures::FutureExt;
use futures::future::join_all;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams};
use rand::Rng;
use reqwest::Method;
use serde_json::{Value, json};
use sluice_core::subjects;
use sluice_crd::{Pipeline, Tenant as TenantCr};
use sluice_operator::config::OperatorConfig;
use sluice_tests::SimCluster;
use sluice_tests::load::{Load, Tenant, stored_ids};
use sluice_tests::stack::{
    ApiClient, ApiProcess, Database, Operator, Processes, api_kubeconfig, binary, eventually,
    eventually_within, nats_url, start_worker,
};
use std::collections::BTreeSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Alice's p99 latency bound during an attack.
const P99_BOUND: Duration = Duration::from_secs(1);
/// How long after a worker is killed its in-flight events must all have been redelivered.
const REDELIVERY_BOUND: Duration = Duration::from_secs(10);
/// Largest growth of the API's resident memory while it refuses an 8 MB body of `1\n` (a
/// correctness bound: an unbounded answer grew it by more than 500 MB).
const RSS_GROWTH_BOUND_KIB: u64 = 200 * 1024;
/// Largest answer to a refused ingest request.
const REFUSAL_BODY_BOUND: usize = 64 * 1024;

/// Everything an attack needs.
struct World<'a> {
    sim: &'a SimCluster,
    client: kube::Client,
    api: ApiClient,
    api_process: ApiProcess,
    operator: Operator,
    js: async_nats::jetstream::Context,
    nats: async_nats::Client,
    admin: String,
    alice: Tenant,
    mallory: Tenant,
    load: Load,
    worker_bin: PathBuf,
    dir: tempfile::TempDir,
    suffix: String,
}

#[test]
fn hostile_tenants_are_refused_while_alice_is_unharmed() {
    let sim = SimCluster::start();
    let api_bin = binary("sluice-api", "sluice-api");
    let worker_bin = binary("sluice-worker", "sluice-worker");
    let suffix = format!("{:06x}", rand::rng().random::<u32>() & 0xff_ffff);
    let db = Database::create(&format!("sluice_hostile_{suffix}"));
    let failures = sim.block_on(async {
        let w = setup(&sim, &api_bin, &db.url, worker_bin, suffix).await;
        let mut failures = attacks(&w).await;
        failures.extend(finish(w).await);
        failures
    });
    drop(db);
    assert!(
        failures.is_empty(),
        "{} attack(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Runs the attacks in order; returns one line per failed attack.
async fn attacks(w: &World<'_>) -> Vec<String> {
    let only: Option<Vec<String>> = std::env::var("SLUICE_HOSTILE_ATTACKS")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let wanted = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|n| n == name));
    let mut failures = vec![];
    macro_rules! attack {
        ($name:literal, $f:expr) => {
            if wanted($name) {
                match attempt(w, $name, $f).await {
                    Ok(()) => progress(&format!("attack {}: ok", $name)),
                    Err(why) => {
                        progress(&format!("attack {}: FAILED: {why}", $name));
                        failures.push(format!("- {}: {why}", $name));
                    }
                }
            }
        };
    }
    // The ones that may take a process down come last, so the others still report.
    attack!("cross-tenant", cross_tenant(w));
    attack!("invalid-path-names", invalid_path_names(w));
    attack!("too-many-events", too_many_events(w));
    attack!("sink-subjects", sink_subjects(w));
    attack!("sink-url-metadata", sink_url_metadata(w));
    attack!("sink-url-loopback", sink_url_loopback(w));
    attack!("platform-tokens", platform_tokens(w));
    attack!("metrics", metrics(w));
    attack!("readyz", readyz(w));
    attack!("reserved-tenant-api", reserved_tenant_api(w));
    attack!("reserved-tenant-kubectl", reserved_tenant_kubectl(w));
    attack!("squatted-namespace", squatted_namespace(w));
    attack!("concurrent-patches", concurrent_patches(w));
    attack!("worker-kill", worker_kill(w));
    attack!("tiny-events", tiny_events(w));
    attack!("deep-filter-api", deep_filter_api(w));
    attack!("deep-filter-kubectl", deep_filter_kubectl(w));
    failures
}

/// Runs one attack, then checks that it harmed nobody; the panic message when either failed.
async fn attempt(
    w: &World<'_>,
    name: &str,
    attack: impl Future<Output = ()>,
) -> Result<(), String> {
    progress(&format!("attack {name}: starts"));
    let since = w.load.mark();
    let refused = AssertUnwindSafe(attack).catch_unwind().await;
    let unharmed = AssertUnwindSafe(unharmed(w, since)).catch_unwind().await;
    match (refused, unharmed) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(p), Ok(())) => Err(panic_text(p)),
        (Ok(()), Err(p)) => Err(format!("refused, but: {}", panic_text(p))),
        (Err(p), Err(q)) => Err(format!("{}; and: {}", panic_text(p), panic_text(q))),
    }
}

/// A line on the standard error, not captured by the test harness, so that it survives a crash.
fn progress(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panicked".into())
}

/// The API process and the operator still run, and alice's requests since `since` (and a few
/// more after the attack) all succeeded with p99 under [`P99_BOUND`].
async fn unharmed(w: &World<'_>, since: Instant) {
    w.load.wait_for_requests(w.load.mark(), 6).await;
    assert!(
        w.api_process.is_running(),
        "the API process died:\n{}",
        tail(&w.api_process.logs())
    );
    assert!(w.operator.is_running(), "the operator stopped");
    let seen = w.load.window(since);
    assert!(
        seen.requests >= 6,
        "alice made only {} requests",
        seen.requests
    );
    assert!(
        seen.failures.is_empty(),
        "{} of alice's {} requests failed: {:?}",
        seen.failures.len(),
        seen.requests,
        &seen.failures[..seen.failures.len().min(5)]
    );
    assert!(
        seen.p99 < P99_BOUND,
        "alice's p99 latency was {:?} over {} requests",
        seen.p99,
        seen.requests
    );
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// Setup and teardown.

async fn setup<'a>(
    sim: &'a SimCluster,
    api_bin: &std::path::Path,
    database_url: &str,
    worker_bin: PathBuf,
    suffix: String,
) -> World<'a> {
    let client =
        kube::Client::try_from(kube::Config::new(sim.url().parse().expect("url"))).expect("client");
    let nats_url = nats_url();
    let operator = Operator::start(
        sim,
        OperatorConfig {
            nats_url: nats_url.clone(),
            ..Default::default()
        },
    );
    let api_process =
        ApiProcess::start(api_bin, database_url, &api_kubeconfig(sim), &nats_url, &[]).await;
    let api = ApiClient::new(&api_process.base);
    let admin = api_process.admin_token.clone();
    let nats = async_nats::connect(&nats_url).await.expect("NATS");
    let js = async_nats::jetstream::new(nats.clone());

    let alice = tenant(&api, &client, &admin, &format!("alice-{suffix}")).await;
    let mallory = tenant(&api, &client, &admin, &format!("mallory-{suffix}")).await;
    // Alice's pipeline copies her stream to the NATS subject `copy` (route `copy-out`), with
    // batches held up to a second so that a killed worker leaves events in flight.
    create(
        &api,
        &alice,
        "pipelines",
        json!({"name": "copy", "spec": {
            "source": {"stream": "orders", "startFrom": "all"},
            "sinks": [{"name": "out", "nats": {"subject": "copy"}}],
            "parallelism": 1,
            "batching": {"maxEvents": 200, "maxWaitMs": 1000}}}),
    )
    .await;
    create(
        &api,
        &mallory,
        "pipelines",
        json!({"name": "mp", "spec": {
            "source": {"stream": "orders"},
            "sinks": [{"name": "out", "nats": {"subject": "out"}}]}}),
    )
    .await;
    let load = Load::start(api.clone(), alice.clone(), &format!("alice-{suffix}"));
    World {
        sim,
        client,
        api,
        api_process,
        operator,
        js,
        nats,
        admin,
        alice,
        mallory,
        load,
        worker_bin,
        dir: tempfile::tempdir().expect("tempdir"),
        suffix,
    }
}

/// Creates tenant `name` with roomy quotas, its developer and producer tokens, and its stream
/// `orders`, provisioned.
async fn tenant(api: &ApiClient, client: &kube::Client, admin: &str, name: &str) -> Tenant {
    let (s, b) = api
        .call(Method::POST, "/v1/tenants", admin, Some(json!({"name": name, "spec": {"quota": {
            "maxPipelines": 10, "maxStreams": 10, "maxParallelism": 100,
            "ingest": {"eventsPerSecond": 20000, "bytesPerSecond": 100_000_000, "burst": 40000}}}})))
        .await;
    assert_eq!(s, 201, "create tenant {name}: {b}");
    let ns = format!("sluice-{name}");
    eventually("tenant namespace", || async {
        Api::<Namespace>::all(client.clone())
            .get_opt(&ns)
            .await
            .is_ok_and(|n| n.is_some())
    })
    .await;
    let mut tokens = vec![];
    for role in ["developer", "producer"] {
        let (s, b) = api
            .call(
                Method::POST,
                &format!("/v1/tenants/{name}/tokens"),
                admin,
                Some(json!({"name": role, "role": role})),
            )
            .await;
        assert_eq!(s, 201, "create {role} token: {b}");
        tokens.push(b["token"].as_str().expect("token").to_string());
    }
    let t = Tenant {
        name: name.to_string(),
        developer: tokens[0].clone(),
        producer: tokens[1].clone(),
        stream: "orders".into(),
    };
    create(
        api,
        &t,
        "streams",
        json!({"name": "orders", "spec": {"retention": {"maxAge": "1h"}}}),
    )
    .await;
    wait_stream_provisioned(api, &t, "orders").await;
    t
}

/// `POST /v1/tenants/<t>/<kind>` of `body` as the tenant's developer; asserts 201.
async fn create(api: &ApiClient, t: &Tenant, kind: &str, body: Value) {
    let (s, b) = api
        .call(
            Method::POST,
            &format!("/v1/tenants/{}/{kind}", t.name),
            &t.developer,
            Some(body),
        )
        .await;
    assert_eq!(s, 201, "create {kind} of {}: {b}", t.name);
}

async fn wait_stream_provisioned(api: &ApiClient, t: &Tenant, stream: &str) {
    let path = format!("/v1/tenants/{}/streams/{stream}", t.name);
    eventually_within("stream provisioned", Duration::from_secs(30), || async {
        let (_, b) = api.call(Method::GET, &path, &t.developer, None).await;
        b["status"]["subject"].is_string()
    })
    .await;
}

/// Stops alice's load, stops the stack and removes the test's JetStream streams; a failure
/// line when an event the API accepted from alice is not in her JetStream stream.
async fn finish(w: World<'_>) -> Option<String> {
    let World {
        load,
        js,
        alice,
        mallory,
        operator,
        api_process,
        ..
    } = w;
    let accepted = load.stop().await;
    let stored = stored_ids(
        &js,
        &subjects::jetstream_name(&alice.name, &alice.stream),
        &subjects::events_subject(&alice.name, &alice.stream),
    )
    .await;
    drop(api_process);
    operator.stop().await;
    for t in [&alice, &mallory] {
        let _ = js
            .delete_stream(subjects::jetstream_name(&t.name, &t.stream))
            .await;
    }
    let missing: Vec<&String> = accepted.difference(&stored).collect();
    if accepted.is_empty() {
        Some("- alice's events: the API accepted none".into())
    } else if !missing.is_empty() {
        Some(format!(
            "- alice's events: {} of the {} accepted are not in her stream, e.g. {:?}",
            missing.len(),
            accepted.len(),
            &missing[..missing.len().min(5)]
        ))
    } else {
        progress(&format!(
            "alice: all {} accepted events are in her stream",
            accepted.len()
        ));
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers of the attacks.

/// Asserts `reply` is a problem with `status`, a `type` ending in `kind` (when given) and an
/// error on `field` (when given).
fn assert_problem(
    what: &str,
    status: u16,
    body: &Value,
    want: u16,
    kind: Option<&str>,
    field: Option<&str>,
) {
    assert_eq!(status, want, "{what}: want {want}, got {status} {body}");
    if let Some(kind) = kind {
        let ty = body["type"].as_str().unwrap_or_default();
        assert!(
            ty.ends_with(&format!("/{kind}")),
            "{what}: want problem type {kind}, got {body}"
        );
    }
    if let Some(field) = field {
        let fields: Vec<&str> = body["errors"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["field"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            fields.contains(&field),
            "{what}: want an error on {field}, got {body}"
        );
    }
}

/// NDJSON of `n` small events with ids `<prefix>-<i>`.
fn events(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| json!({"id": format!("{prefix}-{i}")}).to_string() + "\n")
        .collect()
}

/// Number of messages in a tenant's `orders` JetStream stream.
async fn stream_messages(w: &World<'_>, t: &Tenant) -> u64 {
    let mut s =
        w.js.get_stream(subjects::jetstream_name(&t.name, &t.stream))
            .await
            .expect("the tenant's JetStream stream");
    s.info().await.expect("stream info").state.messages
}

/// The `(status, reason)` of condition `type_` in a resource's JSON.
fn condition(obj: &Value, type_: &str) -> Option<(String, String)> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
}

/// Object `name` as JSON; `None` when it does not exist (or cannot be read).
async fn as_json<K>(api: &Api<K>, name: &str) -> Option<Value>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    serde_json::to_value(api.get_opt(name).await.ok().flatten()?).ok()
}

/// Waits (up to 30 s) until condition `type_` of `get()` is `status` with `reason`.
async fn wait_condition<F, Fut>(what: &str, type_: &str, status: &str, reason: &str, mut get: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<Value>>,
{
    let mut last = None;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        let obj = get().await;
        last = obj.as_ref().and_then(|o| condition(o, type_));
        if last
            .as_ref()
            .is_some_and(|(s, r)| s == status && r == reason)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what}: want {type_}={status} reason {reason}, last saw {last:?}");
}

// ---------------------------------------------------------------------------------------------
// The attacks.

/// Mallory reaches for alice's resources with her own tokens: 404 everywhere.
async fn cross_tenant(w: &World<'_>) {
    let (m, a) = (&w.mallory, &w.alice.name);
    for (method, path) in [
        (Method::GET, format!("/v1/tenants/{a}")),
        (Method::GET, format!("/v1/tenants/{a}/streams/orders")),
        (Method::GET, format!("/v1/tenants/{a}/pipelines")),
        (Method::GET, format!("/v1/tenants/{a}/pipelines/copy")),
        (Method::DELETE, format!("/v1/tenants/{a}/pipelines/copy")),
    ] {
        let (s, b) = w.api.call(method.clone(), &path, &m.developer, None).await;
        assert_eq!(s, 404, "{method} {path} as mallory: {b}");
    }
    let (s, b, _) = w.api.ingest(a, "orders", &m.producer, events("m", 1)).await;
    assert_eq!(s, 404, "ingest into alice's stream as mallory: {b}");
}

/// A path parameter that is not a name (`held?x=1`, percent-encoded) answers 400 `invalid-name`
/// naming the parameter.
async fn invalid_path_names(w: &World<'_>) {
    let m = &w.mallory;
    let bad = "held%3Fx%3D1";
    for (method, path, token, field) in [
        (
            Method::GET,
            format!("/v1/tenants/{}/streams/{bad}", m.name),
            &m.developer,
            "stream",
        ),
        (
            Method::GET,
            format!("/v1/tenants/{}/pipelines/{bad}", m.name),
            &m.developer,
            "pipeline",
        ),
        (
            Method::DELETE,
            format!("/v1/tenants/{}/pipelines/{bad}", m.name),
            &m.developer,
            "pipeline",
        ),
        (
            Method::POST,
            format!("/v1/tenants/{}/streams/{bad}/events", m.name),
            &m.producer,
            "stream",
        ),
        (
            Method::GET,
            format!("/v1/tenants/{bad}/streams"),
            &m.developer,
            "tenant",
        ),
    ] {
        let r = w
            .api
            .send(
                method.clone(),
                &path,
                token,
                "application/x-ndjson",
                events("m", 1),
            )
            .await;
        assert_problem(
            &format!("{method} {path}"),
            r.status,
            &r.body,
            400,
            Some("invalid-name"),
            Some(field),
        );
    }
}

/// 5,001 events in one request: 413 `too-many-events` on `body`, nothing published; 5,000 pass.
async fn too_many_events(w: &World<'_>) {
    let m = &w.mallory;
    let before = stream_messages(w, m).await;
    let (s, b, _) = w
        .api
        .ingest(&m.name, &m.stream, &m.producer, events("over", 5001))
        .await;
    assert_problem(
        "5,001 events",
        s,
        &b,
        413,
        Some("too-many-events"),
        Some("body"),
    );
    // Give a wrongly accepted publish the time to land before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stream_messages(w, m).await,
        before,
        "events of the refused request were published"
    );
    let (s, b, _) = w
        .api
        .ingest(&m.name, &m.stream, &m.producer, events("limit", 5000))
        .await;
    assert_eq!(s, 202, "5,000 events: {b}");
    assert_eq!(b["accepted"], 5000, "5,000 events: {b}");
}

/// 8 MB of `1\n` (4 million events that are not objects): a 4xx with a small body, and the
/// API's resident memory stays bounded.
async fn tiny_events(w: &World<'_>) {
    let m = &w.mallory;
    let pid = w.api_process.pid();
    let before = w.api_process.rss_kib();
    let peak = Arc::new(Mutex::new(before));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    && let Some(rss) = sluice_tests::stack::parse_vm_rss_kib(&status)
                {
                    let mut p = peak.lock().expect("lock");
                    *p = (*p).max(rss);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let body = "1\n".repeat(4_000_000);
    let path = format!("/v1/tenants/{}/streams/{}/events", m.name, m.stream);
    let r = w
        .api
        .try_send(
            Method::POST,
            &path,
            &m.producer,
            "application/x-ndjson",
            body,
        )
        .await;
    sampling.store(false, std::sync::atomic::Ordering::SeqCst);
    let _ = sampler.await;
    let r = r.expect("the API answers 8 MB of `1\\n`");
    let growth = peak.lock().expect("lock").saturating_sub(before);
    assert!(
        (400..500).contains(&r.status),
        "8 MB of `1\\n`: want a 4xx, got {} ({} bytes)",
        r.status,
        r.size
    );
    assert!(
        r.size <= REFUSAL_BODY_BOUND,
        "8 MB of `1\\n`: the answer has {} bytes (bound {REFUSAL_BODY_BOUND})",
        r.size
    );
    assert!(
        growth <= RSS_GROWTH_BOUND_KIB,
        "8 MB of `1\\n`: the API's RSS grew by {} MiB (bound {} MiB)",
        growth / 1024,
        RSS_GROWTH_BOUND_KIB / 1024
    );
}

/// A filter of 2,001 nested member selections.
fn deep_filter_text() -> String {
    format!("event.a{}", ".b".repeat(2000))
}

/// The deep filter through the API: 422 on `spec.filter`.
async fn deep_filter_api(w: &World<'_>) {
    let m = &w.mallory;
    let (s, b) = w
        .api
        .call(
            Method::POST,
            &format!("/v1/tenants/{}/pipelines", m.name),
            &m.developer,
            Some(
                json!({"name": "deep", "spec": {"source": {"stream": "orders"},
                "filter": deep_filter_text(),
                "sinks": [{"name": "out", "nats": {"subject": "deep"}}]}}),
            ),
        )
        .await;
    assert_problem(
        "deep filter via the API",
        s,
        &b,
        422,
        None,
        Some("spec.filter"),
    );
}

/// The deep filter applied with kubectl: `Accepted=False` `InvalidSpec`, and the operator still
/// serves alice (a new stream of hers is provisioned).
async fn deep_filter_kubectl(w: &World<'_>) {
    let ns = format!("sluice-{}", w.mallory.name);
    let yaml = format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: Pipeline\nmetadata:\n  name: deep-cr\n  namespace: {ns}\n\
         spec:\n  source:\n    stream: orders\n  filter: \"{}\"\n  sinks:\n  - name: out\n    nats:\n      subject: deep\n",
        deep_filter_text()
    );
    w.sim.apply(&yaml, &[]);
    let pipelines: Api<Pipeline> = Api::namespaced(w.client.clone(), &ns);
    wait_condition(
        "deep filter via kubectl",
        "Accepted",
        "False",
        "InvalidSpec",
        || as_json(&pipelines, "deep-cr"),
    )
    .await;

    create(
        &w.api,
        &w.alice,
        "streams",
        json!({"name": "after-deep", "spec": {}}),
    )
    .await;
    wait_stream_provisioned(&w.api, &w.alice, "after-deep").await;
    let _ =
        w.js.delete_stream(subjects::jetstream_name(&w.alice.name, "after-deep"))
            .await;
}

/// NATS sinks publishing into the platform's subject space (her own source stream, alice's
/// stream): 422 on the subject.
async fn sink_subjects(w: &World<'_>) {
    let m = &w.mallory;
    for subject in [
        // Relative to her subject space `sluice.<mallory>.`: her own source stream.
        format!("{}.events", m.stream),
        subjects::events_subject(&m.name, &m.stream),
        subjects::events_subject(&w.alice.name, &w.alice.stream),
    ] {
        let (s, b) = w
            .api
            .call(
                Method::POST,
                &format!("/v1/tenants/{}/pipelines", m.name),
                &m.developer,
                Some(
                    json!({"name": "loop", "spec": {"source": {"stream": "orders"},
                    "sinks": [{"name": "out", "nats": {"subject": subject}}]}}),
                ),
            )
            .await;
        assert_problem(
            &format!("sink subject {subject}"),
            s,
            &b,
            422,
            None,
            Some("spec.sinks[0].nats.subject"),
        );
    }
}

/// An HTTP sink aimed at the metadata service: 422 on the URL.
async fn sink_url_metadata(w: &World<'_>) {
    let (s, b) = create_http_sink(w, "ssrf", "http://169.254.169.254/latest/meta-data").await;
    assert_problem(
        "sink URL 169.254.169.254",
        s,
        &b,
        422,
        None,
        Some("spec.sinks[0].http.url"),
    );
}

/// An HTTP sink aimed at a loopback address: refused by the API (422 on the URL) or, where the
/// API leaves loopback to the worker's egress policy, never reached by the route's worker.
async fn sink_url_loopback(w: &World<'_>) {
    let m = &w.mallory;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let reached = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = {
        let reached = reached.clone();
        tokio::spawn(async move {
            while let Ok((_conn, _)) = listener.accept().await {
                reached.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    let (s, b) = create_http_sink(w, "loopback", &url).await;
    if s == 422 {
        assert_problem(
            "sink URL on loopback",
            s,
            &b,
            422,
            None,
            Some("spec.sinks[0].http.url"),
        );
        counter.abort();
        return;
    }
    assert_eq!(s, 201, "sink URL on loopback: {b}");
    let ns = format!("sluice-{}", m.name);
    eventually("the loopback route's config", || async {
        let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
            Api::namespaced(w.client.clone(), &ns);
        cms.get_opt("loopback-out").await.is_ok_and(|c| c.is_some())
    })
    .await;
    let mut worker = Processes::default();
    worker
        .0
        .push(start_worker(&w.worker_bin, &w.client, &ns, "loopback-out", w.dir.path()).await);
    let (s, b, _) = w
        .api
        .ingest(&m.name, &m.stream, &m.producer, events("lo", 10))
        .await;
    assert_eq!(s, 202, "mallory's events for the loopback route: {b}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(worker);
    counter.abort();
    assert_eq!(
        reached.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the route's worker connected to {url}"
    );
}

/// `POST` of a pipeline `name` of mallory's with one HTTP sink to `url`.
async fn create_http_sink(w: &World<'_>, name: &str, url: &str) -> (u16, Value) {
    let m = &w.mallory;
    w.api
        .call(
            Method::POST,
            &format!("/v1/tenants/{}/pipelines", m.name),
            &m.developer,
            Some(
                json!({"name": name, "spec": {"source": {"stream": "orders", "startFrom": "all"},
                "sinks": [{"name": "out", "http": {"url": url}}]}}),
            ),
        )
        .await
}

/// Mallory's tokens mint no platform tokens, tenants or tenant-admin tokens; the bootstrap token
/// is nowhere in the API's output.
async fn platform_tokens(w: &World<'_>) {
    let m = &w.mallory;
    for token in [&m.developer, &m.producer] {
        for (method, path, body) in [
            (
                Method::POST,
                "/v1/platform/tokens".to_string(),
                Some(json!({"description": "mine", "ttlSeconds": 3600})),
            ),
            (Method::GET, "/v1/platform/tokens".to_string(), None),
            (
                Method::POST,
                "/v1/tenants".to_string(),
                Some(json!({"name": format!("evil-{}", w.suffix), "spec": {}})),
            ),
            (
                Method::POST,
                format!("/v1/tenants/{}/tokens", m.name),
                Some(json!({"name": "boss", "role": "tenant-admin"})),
            ),
        ] {
            let (s, b) = w.api.call(method.clone(), &path, token, body).await;
            assert!(
                s == 403 || s == 404,
                "{method} {path} with mallory's token: want 403/404, got {s} {b}"
            );
        }
    }
    let logs = w.api_process.logs();
    assert!(
        !logs.contains(&w.admin),
        "the bootstrap token is in the API's output"
    );
}

/// `/metrics` is not served on the API port; it is on the metrics listener.
async fn metrics(w: &World<'_>) {
    let r = w
        .api
        .try_send(Method::GET, "/metrics", "", "", String::new())
        .await
        .expect("answer");
    assert_eq!(r.status, 404, "/metrics on the API port");
    let metrics = format!("{}/metrics", w.api_process.metrics_base);
    let r = w.api.http.get(&metrics).send().await;
    assert!(
        r.as_ref().is_ok_and(|r| r.status().is_success()),
        "/metrics on SLUICE_METRICS_LISTEN ({metrics}): {r:?}\nthe API's log:\n{}",
        tail(&w.api_process.logs())
    );
}

/// `/readyz` tells no internals: exactly `{"status":"ready"}`.
async fn readyz(w: &World<'_>) {
    let r = w
        .api
        .try_send(Method::GET, "/readyz", "", "", String::new())
        .await
        .expect("answer");
    assert_eq!(
        (r.status, r.body.clone()),
        (200, json!({"status": "ready"})),
        "/readyz"
    );
}

/// A reserved tenant name through the API: 422 on `name`.
async fn reserved_tenant_api(w: &World<'_>) {
    let (s, b) = w
        .api
        .call(
            Method::POST,
            "/v1/tenants",
            &w.admin,
            Some(json!({"name": "system", "spec": {}})),
        )
        .await;
    assert_problem("tenant system", s, &b, 422, None, Some("name"));
}

/// A reserved Tenant name applied with kubectl: `Ready=False` `ReservedName`.
async fn reserved_tenant_kubectl(w: &World<'_>) {
    let tenants: Api<TenantCr> = Api::all(w.client.clone());
    w.sim.apply(
        "apiVersion: sluice.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: admin\nspec: {}\n",
        &[],
    );
    wait_condition(
        "Tenant admin via kubectl",
        "Ready",
        "False",
        "ReservedName",
        || as_json(&tenants, "admin"),
    )
    .await;
}

/// A Tenant whose namespace exists without the operator's label, applied with kubectl:
/// `Ready=False` `NamespaceConflict`, and the operator leaves that namespace alone.
async fn squatted_namespace(w: &World<'_>) {
    let tenants: Api<TenantCr> = Api::all(w.client.clone());
    let squat = format!("squat-{}", w.suffix);
    let ns = format!("sluice-{squat}");
    w.sim.kubectl_ok(&["create", "namespace", &ns]);
    let namespaces: Api<Namespace> = Api::all(w.client.clone());
    let labels_before = namespaces
        .get(&ns)
        .await
        .expect("namespace")
        .metadata
        .labels;
    w.sim.apply(
        &format!("apiVersion: sluice.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: {squat}\nspec: {{}}\n"),
        &[],
    );
    wait_condition(
        "Tenant over an existing namespace",
        "Ready",
        "False",
        "NamespaceConflict",
        || as_json(&tenants, &squat),
    )
    .await;
    let after = namespaces.get(&ns).await.expect("namespace");
    assert_eq!(
        after.metadata.labels, labels_before,
        "the operator relabelled {ns}"
    );
    let policies: Api<NetworkPolicy> = Api::namespaced(w.client.clone(), &ns);
    let made = policies.list(&ListParams::default()).await.expect("list");
    assert!(
        made.items.is_empty(),
        "the operator created NetworkPolicies in {ns}"
    );
}

/// 64 concurrent PATCHes of mallory's pipeline and stream: each answers (no 5xx but 503) and
/// alice is unharmed (checked after every attack).
async fn concurrent_patches(w: &World<'_>) {
    let m = &w.mallory;
    let patches = (0..64).map(|i| {
        let (path, body) = if i % 2 == 0 {
            (
                format!("/v1/tenants/{}/pipelines/mp", m.name),
                json!({"spec": {"batching": {"maxEvents": 10 + i}}}),
            )
        } else {
            (
                format!("/v1/tenants/{}/streams/{}", m.name, m.stream),
                json!({"spec": {"retention": {"maxAge": format!("{}m", 10 + i)}}}),
            )
        };
        let api = w.api.clone();
        let token = m.developer.clone();
        async move {
            api.send(
                Method::PATCH,
                &path,
                &token,
                "application/merge-patch+json",
                body.to_string(),
            )
            .await
        }
    });
    let replies = join_all(patches).await;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    for r in &replies {
        assert!(
            matches!(r.status, 200 | 409 | 429 | 503),
            "a concurrent PATCH answered {} {} (all: {statuses:?})",
            r.status,
            r.body
        );
    }
    assert!(
        statuses.contains(&200),
        "no concurrent PATCH succeeded: {statuses:?}"
    );
}

/// Alice's route worker is SIGKILLed with events in flight; a new worker delivers every event,
/// the ones in flight within [`REDELIVERY_BOUND`] of the kill.
async fn worker_kill(w: &World<'_>) {
    let a = &w.alice;
    let ns = format!("sluice-{}", a.name);
    let received = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let mut sub = w
        .nats
        .subscribe(format!("{}.copy", subjects::tenant_prefix(&a.name)))
        .await
        .expect("subscribe");
    let collector = {
        let received = received.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            while let Some(msg) = sub.next().await {
                if let Ok(v) = serde_json::from_slice::<Value>(&msg.payload)
                    && let Some(id) = v["id"].as_str()
                {
                    received.lock().expect("lock").insert(id.to_string());
                }
            }
        })
    };
    let mut workers = Processes::default();
    eventually("alice's route config", || async {
        let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
            Api::namespaced(w.client.clone(), &ns);
        cms.get_opt("copy-out").await.is_ok_and(|c| c.is_some())
    })
    .await;
    workers
        .0
        .push(start_worker(&w.worker_bin, &w.client, &ns, "copy-out", w.dir.path()).await);
    eventually("the first worker delivers", || async {
        !received.lock().expect("lock").is_empty()
    })
    .await;

    // Kill it while it holds unacknowledged events (its batches wait up to a second).
    let stream = subjects::jetstream_name(&a.name, &a.stream);
    let durable = subjects::durable_name("copy", "out");
    let consumer = || async {
        let s = w.js.get_stream(&stream).await.ok()?;
        let mut c: async_nats::jetstream::consumer::PullConsumer =
            s.get_consumer(&durable).await.ok()?;
        c.info().await.ok().cloned()
    };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if consumer().await.is_some_and(|c| c.num_ack_pending > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut first = workers.0.remove(0);
    first.kill().expect("SIGKILL the worker");
    let killed = Instant::now();
    let before_kill = w.load.accepted();
    let _ = first.wait();
    // What the dead worker held: delivered to it, never acknowledged.
    let at_kill = consumer().await.expect("the route's consumer");
    assert!(
        at_kill.num_ack_pending > 0,
        "the worker was killed holding no events, so redelivery cannot be shown (harness timing)"
    );
    workers
        .0
        .push(start_worker(&w.worker_bin, &w.client, &ns, "copy-out", w.dir.path()).await);
    // Redelivery is complete when the consumer's acknowledgement floor passed everything
    // delivered before the kill and every event accepted before the kill reached the sink.
    let complete = || async {
        let floor = consumer().await.map_or(0, |c| c.ack_floor.stream_sequence);
        let got = received.lock().expect("lock");
        floor >= at_kill.delivered.stream_sequence && before_kill.iter().all(|id| got.contains(id))
    };
    while !complete().await && killed.elapsed() < REDELIVERY_BOUND {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let floor = consumer().await.map_or(0, |c| c.ack_floor.stream_sequence);
    let missing = before_kill
        .difference(&received.lock().expect("lock"))
        .count();
    assert!(
        missing == 0 && floor >= at_kill.delivered.stream_sequence,
        "{REDELIVERY_BOUND:?} after the kill of a worker holding {} events: {missing} of the {} \
         events accepted before the kill were not delivered; acknowledged up to stream sequence \
         {floor} of {} delivered",
        at_kill.num_ack_pending,
        before_kill.len(),
        at_kill.delivered.stream_sequence
    );
    // And it keeps delivering what alice ingests after the kill.
    let later = w.load.accepted();
    eventually_within(
        "events accepted after the kill are delivered",
        Duration::from_secs(20),
        || async {
            let got = received.lock().expect("lock");
            later.iter().all(|id| got.contains(id))
        },
    )
    .await;
    drop(workers);
    collector.abort();
}
