//! API security: the bootstrap token, platform tokens, minted-token expiry, reserved tenant
//! names, `/metrics` off the API port, `/readyz` without internals, and writes of one tenant
//! that cannot starve the others (pool, quota lock, request deadline). Real PostgreSQL and
//! kubesim; the `sluice-api` binary where the behaviour is the process's.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{Db, TestApp, TestDb, pipeline};
use serde_json::{Value, json};
use sluice_api::auth::tokens::Authenticator;
use sluice_api::k8s::Kube;
use sluice_api::metrics::Metrics;
use sluice_api::store::{AuditFilter, Store};
use sluice_api::{AppState, Config};

fn ms(rfc3339: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339.as_str().expect("a time"))
        .expect("RFC 3339")
        .timestamp_millis()
}

async fn audit_actions(app: &TestApp) -> Vec<(String, String, i32)> {
    app.state
        .store
        .list_audit(&AuditFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.entry.action, a.entry.object, a.entry.status))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_tokens_are_created_listed_and_revoked_by_platform_admins_only() {
    let app = TestApp::start(Db::Postgres).await;
    app.tenant("acme", json!({})).await;
    let tenant_admin = app.token("acme", "boss", "tenant-admin").await;

    // Create: 201 with the secret once; it works as a platform admin.
    let created = app
        .call(
            "POST",
            "/v1/platform/tokens",
            Some(&app.admin),
            Some(json!({"description": "ops automation", "ttlSeconds": 3600})),
        )
        .await;
    let created = created.ok(201).clone();
    let id = created["id"].as_str().unwrap().to_string();
    let secret = created["token"].as_str().unwrap().to_string();
    assert_eq!(created["description"], "ops automation");
    let lifetime = ms(&created["expiresAt"]) - ms(&created["createdAt"]);
    assert!((3_599_000..=3_601_000).contains(&lifetime), "{lifetime}");
    app.call("GET", "/v1/tenants", Some(&secret), None)
        .await
        .ok(200);

    // List: both platform tokens (the bootstrap one and the new one), never a secret.
    let list = app
        .call("GET", "/v1/platform/tokens", Some(&app.admin), None)
        .await;
    let items = list.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(items.iter().all(|t| t.get("token").is_none()));
    assert!(items.iter().any(|t| t["name"] == "bootstrap-admin"));

    // Refused: a tenant admin (403), no token (401), bad bodies (422 naming the field).
    for (method, path, body) in [
        (
            "POST",
            "/v1/platform/tokens",
            Some(json!({"description": "x"})),
        ),
        ("GET", "/v1/platform/tokens", None),
        ("DELETE", &*format!("/v1/platform/tokens/{id}"), None),
    ] {
        app.call(method, path, Some(&tenant_admin), body.clone())
            .await
            .problem(403, "forbidden");
        app.call(method, path, None, body)
            .await
            .problem(401, "unauthorized");
    }
    let too_long = app.state.config.max_token_ttl.as_secs() + 1;
    for (body, field) in [
        (json!({"description": ""}), "description"),
        (json!({"description": "x".repeat(257)}), "description"),
        (json!({"description": "x", "ttlSeconds": 0}), "ttlSeconds"),
        (
            json!({"description": "x", "ttlSeconds": too_long}),
            "ttlSeconds",
        ),
    ] {
        let a = app
            .call("POST", "/v1/platform/tokens", Some(&app.admin), Some(body))
            .await;
        assert_eq!(
            a.problem(422, "validation-failed")["errors"][0]["field"],
            field
        );
    }

    // Revoke: 204, then the token answers 401; again 204; unknown ids 404, malformed ones 400.
    app.call(
        "DELETE",
        &format!("/v1/platform/tokens/{id}"),
        Some(&app.admin),
        None,
    )
    .await
    .ok(204);
    app.call("GET", "/v1/tenants", Some(&secret), None)
        .await
        .problem(401, "unauthorized");
    app.call(
        "DELETE",
        &format!("/v1/platform/tokens/{id}"),
        Some(&app.admin),
        None,
    )
    .await
    .ok(204);
    app.call(
        "DELETE",
        &format!("/v1/platform/tokens/{}", uuid::Uuid::new_v4()),
        Some(&app.admin),
        None,
    )
    .await
    .problem(404, "not-found");
    app.call(
        "DELETE",
        "/v1/platform/tokens/not-a-uuid",
        Some(&app.admin),
        None,
    )
    .await
    .problem(400, "bad-request");
    // A tenant token's id is not a platform token's.
    let tenant_token_id = app
        .call("GET", "/v1/tenants/acme/tokens", Some(&app.admin), None)
        .await
        .ok(200)["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.call(
        "DELETE",
        &format!("/v1/platform/tokens/{tenant_token_id}"),
        Some(&app.admin),
        None,
    )
    .await
    .problem(404, "not-found");
    app.call("GET", "/v1/tenants/acme", Some(&tenant_admin), None)
        .await
        .ok(200);

    // Audited: the create, the revoke, and the refusals.
    let log = audit_actions(&app).await;
    assert!(
        log.contains(&(
            "platform-token.create".into(),
            format!("platform/tokens/{id}"),
            201
        )),
        "{log:?}"
    );
    assert!(
        log.contains(&(
            "platform-token.revoke".into(),
            format!("platform/tokens/{id}"),
            204
        )),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|(a, _, s)| a == "platform-token.revoke" && *s == 404),
        "{log:?}"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minted_token_never_outlives_the_token_that_minted_it() {
    let app = TestApp::start(Db::Postgres).await;
    app.tenant("acme", json!({})).await;
    // A short-lived tenant admin mints a long-lived developer token: clamped.
    let short = app
        .call(
            "POST",
            "/v1/tenants/acme/tokens",
            Some(&app.admin),
            Some(json!({"name": "short", "role": "tenant-admin", "expiresInSeconds": 120})),
        )
        .await;
    let short = short.ok(201).clone();
    let minted = app
        .call(
            "POST",
            "/v1/tenants/acme/tokens",
            Some(short["token"].as_str().unwrap()),
            Some(json!({"name": "long", "role": "developer", "expiresInSeconds": 86400})),
        )
        .await;
    let minted = minted.ok(201).clone();
    assert!(ms(&minted["expiresAt"]) <= ms(&short["expiresAt"]));
    assert!(ms(&minted["expiresAt"]) > ms(&short["expiresAt"]) - 5_000);

    // Same for platform tokens.
    let platform = app
        .call(
            "POST",
            "/v1/platform/tokens",
            Some(&app.admin),
            Some(json!({"description": "short", "ttlSeconds": 60})),
        )
        .await;
    let platform = platform.ok(201).clone();
    let child = app
        .call(
            "POST",
            "/v1/platform/tokens",
            Some(platform["token"].as_str().unwrap()),
            Some(json!({"description": "long", "ttlSeconds": 86400})),
        )
        .await;
    let child = child.ok(201).clone();
    assert!(ms(&child["expiresAt"]) <= ms(&platform["expiresAt"]));
    // A lifetime shorter than the minter's is kept as asked.
    let brief = app
        .call(
            "POST",
            "/v1/platform/tokens",
            Some(platform["token"].as_str().unwrap()),
            Some(json!({"description": "brief", "ttlSeconds": 10})),
        )
        .await;
    let brief = brief.ok(201).clone();
    let lifetime = ms(&brief["expiresAt"]) - ms(&brief["createdAt"]);
    assert!((9_000..=11_000).contains(&lifetime), "{lifetime}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_tenant_names_are_refused() {
    let config = Config {
        install_namespace: Some("sluice-ops".into()),
        reserved_tenant_names: vec!["system".into(), "kube".into(), "internal".into()],
        ..Config::default()
    };
    let app = TestApp::start_with(Db::Postgres, None, config).await;
    for name in ["system", "kube", "internal", "ops"] {
        let a = app
            .call(
                "POST",
                "/v1/tenants",
                Some(&app.admin),
                Some(json!({"name": name})),
            )
            .await;
        let body = a.problem(422, "validation-failed");
        assert_eq!(body["errors"][0]["field"], "name", "{body}");
    }
    app.call(
        "POST",
        "/v1/tenants",
        Some(&app.admin),
        Some(json!({"name": "systems"})),
    )
    .await
    .ok(201);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_not_served_on_the_api_router() {
    let app = TestApp::start(Db::Postgres).await;
    app.call("GET", "/metrics", None, None)
        .await
        .problem(404, "not-found");
    app.call("GET", "/metrics", Some(&app.admin), None)
        .await
        .problem(404, "not-found");
    let text = app.metrics().await;
    assert!(text.contains("sluice_api_requests_total"), "{text}");
    app.shutdown().await;
}

/// A state whose store is a PostgreSQL pool to a closed port, with the test app's kubesim.
fn state_with_unreachable_store(app: &TestApp, config: Config) -> AppState {
    let store = Store::connect_lazy_postgres(
        "postgres://root@127.0.0.1:1/nowhere",
        2,
        Duration::from_millis(500),
    )
    .unwrap();
    let auth = Authenticator::new(
        common::SECRET,
        &config.issuer,
        &config.audience,
        None,
        config.token_cache_ttl,
    );
    let metrics = Metrics::new(prometheus::Registry::new()).unwrap();
    AppState::new(config, store, Kube::new(app.client.clone()), auth, metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_tells_nothing_internal_and_tolerates_a_brief_store_outage() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let app = TestApp::start(Db::Postgres).await;
    let get = |state: AppState| async move {
        let res = sluice_api::app(state)
            .oneshot(
                http::Request::get("/readyz")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    };
    // Past the grace period: 503 with a bare status, no error text.
    let down = state_with_unreachable_store(
        &app,
        Config {
            readiness_grace: Duration::ZERO,
            ..Config::default()
        },
    );
    let (status, body) = get(down).await;
    assert_eq!(status, 503);
    assert_eq!(body, r#"{"status":"unavailable"}"#);
    // Within the grace period (only the store is down): still ready.
    let brief = state_with_unreachable_store(&app, Config::default());
    let (status, body) = get(brief).await;
    assert_eq!(status, 200);
    assert_eq!(body, r#"{"status":"ready"}"#);
    app.shutdown().await;
}

async fn pipelines_tenant(app: &TestApp, name: &str) {
    app.tenant(
        name,
        json!({"quota": {"maxPipelines": 10, "maxParallelism": 1000}}),
    )
    .await;
    let token = app.admin.clone();
    app.call(
        "POST",
        &format!("/v1/tenants/{name}/streams"),
        Some(&token),
        Some(json!({"name": "orders", "spec": {}})),
    )
    .await
    .ok(201);
    app.call(
        "POST",
        &format!("/v1/tenants/{name}/pipelines"),
        Some(&token),
        Some(pipeline("p", 1)),
    )
    .await
    .ok(201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_one_tenants_writes_does_not_starve_another_tenant() {
    let app = TestApp::start(Db::Postgres).await;
    pipelines_tenant(&app, "mallory").await;
    pipelines_tenant(&app, "alice").await;
    let mallory = app.token("mallory", "dev", "developer").await;
    // Alice's tokens are used for the first time during the burst: authentication has to
    // reach the store, not a cache.
    let mut alice = vec![];
    for i in 0..10 {
        alice.push(app.token("alice", &format!("viewer-{i}"), "viewer").await);
    }
    let app = std::sync::Arc::new(app);
    // Connections in use, sampled during the burst.
    let Store::Postgres(pool) = app.state.store.clone() else {
        unreachable!()
    };
    let pool_size = pool.options().get_max_connections() as usize;
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut most = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(pool.size() as usize - pool.num_idle());
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            most
        })
    };
    // More concurrent quota-affecting writes than the pool has connections (16).
    let burst: Vec<_> = (0..48)
        .map(|i| {
            let (app, token) = (app.clone(), mallory.clone());
            tokio::spawn(async move {
                let a = app
                    .call(
                        "PATCH",
                        "/v1/tenants/mallory/pipelines/p",
                        Some(&token),
                        Some(json!({"spec": {"parallelism": 1 + (i % 7)}})),
                    )
                    .await;
                (a.status.as_u16(), a.headers.get("retry-after").is_some())
            })
        })
        .collect();
    let started = Instant::now();
    let mut alice_statuses = vec![];
    for token in &alice {
        let a = app
            .call("GET", "/v1/tenants/alice/pipelines/p", Some(token), None)
            .await;
        alice_statuses.push(a.status.as_u16());
    }
    let alice_took = started.elapsed();
    for h in burst {
        let (status, retry_after) = h.await.unwrap();
        // Each write is done, or refused as busy with Retry-After: never a hang or a 500.
        assert!(
            status == 200 || (status == 503 && retry_after),
            "mallory's PATCH answered {status}"
        );
    }
    assert!(
        alice_statuses.iter().all(|s| *s == 200),
        "alice's reads during the burst: {alice_statuses:?}"
    );
    assert!(
        alice_took < Duration::from_secs(10),
        "alice waited {alice_took:?}"
    );
    // The waiting writes held no connections: far fewer than the pool were ever in use.
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let most = sampler.await.unwrap();
    assert!(
        most <= pool_size / 2,
        "{most} of {pool_size} connections in use during the burst"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_quota_lock_answers_busy_and_the_deadline_answers_503() {
    let config = Config {
        quota_lock_wait: Duration::from_millis(300),
        ..Config::default()
    };
    let app = TestApp::start_with(Db::Postgres, None, config).await;
    pipelines_tenant(&app, "acme").await;
    let acme = sluice_api::TenantName::parse("acme").unwrap();
    let id = app.state.tenant_row(&acme).await.unwrap().unwrap().id;
    let held = app.state.lock_tenant(&id).await.unwrap();
    let started = Instant::now();
    let a = app
        .call(
            "PATCH",
            "/v1/tenants/acme/pipelines/p",
            Some(&app.admin),
            Some(json!({"spec": {"parallelism": 3}})),
        )
        .await;
    a.problem(503, "busy");
    assert_eq!(a.headers["retry-after"], "1");
    assert!(started.elapsed() < Duration::from_secs(5));

    // A request over the deadline answers 503 busy (the handler is cancelled), and its lock
    // wait does not outlive it.
    let slow = Config {
        quota_lock_wait: Duration::from_secs(20),
        request_timeout: Duration::from_millis(400),
        ..Config::default()
    };
    let mut state = app.state.clone();
    state.config = std::sync::Arc::new(slow);
    let router = sluice_api::app(state);
    let started = Instant::now();
    let res = tower::ServiceExt::oneshot(
        router,
        http::Request::patch("/v1/tenants/acme/pipelines/p")
            .header("authorization", format!("Bearer {}", app.admin))
            .header("content-type", "application/merge-patch+json")
            .body(axum::body::Body::from(
                json!({"spec": {"parallelism": 3}}).to_string(),
            ))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(res.status().as_u16(), 503);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert!(started.elapsed() < Duration::from_secs(5));
    held.release().await.unwrap();
    app.call(
        "PATCH",
        "/v1/tenants/acme/pipelines/p",
        Some(&app.admin),
        Some(json!({"spec": {"parallelism": 3}})),
    )
    .await
    .ok(200);
    app.shutdown().await;
}

/// The `sluice-api` process: reads the log it writes to `log`.
struct Process {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Process {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The address logged after `key=` on the "serving" line.
    fn logged_addr(&self, key: &str) -> Option<std::net::SocketAddr> {
        let log = self.log();
        let line = log.lines().find(|l| l.contains("serving"))?;
        let rest = line.split(&format!("{key}=")).nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_writes_the_bootstrap_token_to_a_file_never_to_its_log() {
    let cluster = kubesim::Cluster::new();
    for crd in sluice_crd::crds() {
        cluster
            .apply_object(&serde_json::to_value(&crd).unwrap(), "test")
            .unwrap();
    }
    let sim = kubesim::Server::start(cluster, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let db = TestDb::new(Db::Postgres).await;
    let client = kube::Client::try_from(kube::Config::new(sim.url().parse().unwrap())).unwrap();
    let ns: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(json!({"metadata": {"name": "sluice-system"}})).unwrap();
    kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .create(&Default::default(), &ns)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, sim.kubeconfig()).unwrap();
    let token_file = dir.path().join("secrets/admin-token");
    let log = dir.path().join("api.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice-api"))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .args(["--database-url", &db.url])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--bootstrap-token-file")
        .arg(&token_file)
        .args(["--bootstrap-token-ttl-seconds", "3600"])
        .args(["--bootstrap-token-secret", "sluice-system/bootstrap"])
        .args(["--header-read-timeout-seconds", "1"])
        .env(
            "SLUICE_JWT_SECRET",
            "a-test-signing-key-of-at-least-32-bytes!!",
        )
        .env("RUST_LOG", "debug")
        .env("NO_COLOR", "1")
        .env_remove("SLUICE_NATS_URL")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let process = Process { child, log };
    let deadline = Instant::now() + Duration::from_secs(30);
    let (api, metrics) = loop {
        if let (Some(a), Some(m)) = (process.logged_addr("addr"), process.logged_addr("metrics")) {
            break (a, m);
        }
        assert!(
            Instant::now() < deadline,
            "no serving line:\n{}",
            process.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // The token file: owner-only, one token, valid for the TTL asked for.
    let token = std::fs::read_to_string(&token_file).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let rows = db.store.list_platform_tokens(None, 10).await.unwrap();
    assert_eq!(rows.len(), 1);
    let ttl = rows[0].expires_at - rows[0].created_at;
    assert!((3_599_000..=3_601_000).contains(&ttl), "{ttl}");
    assert!(!process.log().contains(&token), "the token is in the log");
    // The same token in the Secret.
    let secret = kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(
        client.clone(),
        "sluice-system",
    )
    .get("bootstrap")
    .await
    .unwrap();
    assert_eq!(secret.data.unwrap()["token"].0, token.as_bytes());

    let (api_status, _) = tokio::task::spawn_blocking({
        let token = token.clone();
        move || get(api, "/v1/platform/tokens", Some(&token))
    })
    .await
    .unwrap();
    assert_eq!(api_status, 200);
    // /metrics: 404 on the API port, 200 on the metrics port.
    let (s, _) = tokio::task::spawn_blocking(move || get(api, "/metrics", None))
        .await
        .unwrap();
    assert_eq!(s, 404);
    let (s, body) = tokio::task::spawn_blocking(move || get(metrics, "/metrics", None))
        .await
        .unwrap();
    assert_eq!(s, 200);
    assert!(body.contains("sluice_api_requests_total"));

    // A client that never finishes its request head is disconnected.
    let closed = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(api).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        let started = Instant::now();
        let mut buf = vec![];
        let _ = s.read_to_end(&mut buf);
        started.elapsed()
    })
    .await
    .unwrap();
    assert!(closed < Duration::from_secs(5), "closed after {closed:?}");
    assert!(!process.log().contains(&token), "the token is in the log");
    drop(process);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_secret_is_created_then_replaced() {
    let app = TestApp::start(Db::Postgres).await;
    app.namespace("ops").await;
    let kube = Kube::new(app.client.clone());
    let api = kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(
        app.client.clone(),
        "sluice-ops",
    );
    for value in ["first", "second"] {
        kube.write_secret("sluice-ops", "bootstrap", "token", value)
            .await
            .unwrap();
        let secret = api.get("bootstrap").await.unwrap();
        assert_eq!(secret.data.unwrap()["token"].0, value.as_bytes());
    }
    app.shutdown().await;
}
