//! Test harness: kubesim with Sluice's CRDs, a fresh store (a new PostgreSQL database on
//! 127.0.0.1:5432, dropped afterwards, or an SQLite file in a temporary directory) and the API's
//! router, driven in-process.

#![allow(dead_code)]

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use sluice_api::auth::oidc::Oidc;
use sluice_api::config::DEFAULT_AUTH_DATABASE_MAX_CONNECTIONS;
use sluice_api::k8s::Kube;
use sluice_api::server::ApiServer;
use sluice_api::store::Store;
use sluice_api::{AppState, Config};
use tower::ServiceExt;

/// Secret the test API signs tokens with.
pub const SECRET: &[u8] = b"test-secret-test-secret-test-secret-0123456789";

/// Which database backs the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    /// A fresh PostgreSQL database.
    Postgres,
    /// A fresh SQLite file.
    Sqlite,
}

/// The PostgreSQL database the tests create their own databases from:
/// `$SLUICE_TEST_DATABASE_URL`, by default `postgres://root@127.0.0.1:5432/test`.
pub fn postgres_admin_url() -> String {
    std::env::var("SLUICE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into())
}

/// A fresh store; dropping the guard removes the database.
pub struct TestDb {
    pub store: Store,
    pub url: String,
    pg_name: Option<String>,
    _dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn new(db: Db) -> TestDb {
        let dir = tempfile::tempdir().expect("tempdir");
        match db {
            Db::Sqlite => {
                let url = format!("sqlite:{}", dir.path().join("sluice.db").display());
                let store = Store::connect(&url, 8).await.expect("sqlite store");
                store.migrate().await.expect("migrate");
                TestDb {
                    store,
                    url,
                    pg_name: None,
                    _dir: dir,
                }
            }
            Db::Postgres => {
                let admin_url = postgres_admin_url();
                let name = format!("sluice_test_{}", uuid::Uuid::new_v4().simple());
                let admin = Store::connect(&admin_url, 1).await.expect("postgres admin");
                let Store::Postgres(pool) = &admin else {
                    unreachable!()
                };
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(pool)
                    .await
                    .expect("create database");
                admin.close().await;
                let (server_part, query) = match admin_url.split_once('?') {
                    Some((u, q)) => (u, format!("?{q}")),
                    None => (admin_url.as_str(), String::new()),
                };
                let base = server_part.rsplit_once('/').expect("url has a database").0;
                let url = format!("{base}/{name}{query}");
                let store = Store::connect(&url, 16).await.expect("postgres store");
                store.migrate().await.expect("migrate");
                TestDb {
                    store,
                    url,
                    pg_name: Some(name),
                    _dir: dir,
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        // Drop the database from a thread with its own runtime (Drop cannot await).
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(Store::Postgres(pool)) = Store::connect(&postgres_admin_url(), 1).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&pool)
                    .await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}

/// An answer: status, headers and JSON body (`Value::Null` when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// Asserts a problem+json answer with this status and type slug; returns the body.
    pub fn problem(&self, status: u16, slug: &str) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(
            self.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "body: {}",
            self.body
        );
        assert_eq!(
            self.body["type"],
            format!("https://sluice.dev/problems/{slug}"),
            "body: {}",
            self.body
        );
        assert_eq!(self.body["status"], status);
        assert!(self.body["title"].is_string());
        assert!(self.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
        &self.body
    }

    /// Asserts this status; returns the body.
    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        &self.body
    }
}

/// The API with kubesim and a fresh store.
pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub client: kube::Client,
    pub admin: String,
    pub db: TestDb,
    sim: Option<kubesim::Server>,
}

impl TestApp {
    pub async fn start(db: Db) -> TestApp {
        Self::start_with(db, None, Config::default()).await
    }

    pub async fn start_with(db: Db, oidc: Option<Oidc>, config: Config) -> TestApp {
        Self::start_full(db, oidc, config, None).await
    }

    /// The API with ingest to the test NATS server's JetStream.
    pub async fn start_ingest(db: Db, config: Config) -> TestApp {
        Self::start_full(db, None, config, Some(jetstream().await)).await
    }

    pub async fn start_full(
        db: Db,
        oidc: Option<Oidc>,
        config: Config,
        js: Option<async_nats::jetstream::Context>,
    ) -> TestApp {
        Self::start_brokers(db, oidc, config, js, None).await
    }

    /// The API with ingest to the test NATS server and to the tests' Kafka-protocol broker.
    pub async fn start_kafka(db: Db, config: Config) -> TestApp {
        let kafka =
            sluice_api::ingest::kafka::KafkaIngest::new(&sluice_testkit::kafka::bootstrap(), &[])
                .expect("Kafka producer");
        Self::start_brokers(db, None, config, Some(jetstream().await), Some(kafka)).await
    }

    async fn start_brokers(
        db: Db,
        oidc: Option<Oidc>,
        config: Config,
        js: Option<async_nats::jetstream::Context>,
        kafka: Option<sluice_api::ingest::kafka::KafkaIngest>,
    ) -> TestApp {
        let cluster = kubesim::Cluster::new();
        for crd in sluice_crd::crds() {
            cluster
                .apply_object(&serde_json::to_value(&crd).unwrap(), "test")
                .expect("CRD installs");
        }
        let sim = kubesim::Server::start(cluster, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("kubesim");
        let client = kube::Client::try_from(kube::Config::new(sim.url().parse().unwrap())).unwrap();
        let db = TestDb::new(db).await;
        // Authentication has a small pool of its own, as `sluice-api serve` sets it up.
        let auth_store = Store::connect(&db.url, DEFAULT_AUTH_DATABASE_MAX_CONNECTIONS)
            .await
            .expect("auth pool");
        let state = ApiServer::new(config, db.store.clone(), Kube::new(client.clone()), SECRET)
            .auth_store(auth_store)
            .oidc(oidc)
            .jetstream(js)
            .kafka(kafka)
            .build()
            .unwrap();
        let admin = sluice_api::bootstrap_token(&state)
            .await
            .unwrap()
            .expect("first start issues a bootstrap token");
        let router = sluice_api::app(state.clone());
        TestApp {
            router,
            state,
            client,
            admin,
            db,
            sim: Some(sim),
        }
    }

    /// Sends a raw request.
    pub async fn send(&self, req: Request<Body>) -> Answer {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Sends a JSON request.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut b = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(path);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(v) => {
                let ct = if method == "PATCH" {
                    "application/merge-patch+json"
                } else {
                    "application/json"
                };
                b.header("content-type", ct)
                    .body(Body::from(v.to_string()))
                    .unwrap()
            }
            None => b.body(Body::empty()).unwrap(),
        };
        self.send(req).await
    }

    /// Creates the tenant's namespace, standing for the operator.
    pub async fn namespace(&self, tenant: &str) {
        let ns: Namespace = serde_json::from_value(
            json!({"metadata": {"name": sluice_core::names::tenant_namespace(tenant)}}),
        )
        .unwrap();
        Api::<Namespace>::all(self.client.clone())
            .create(&Default::default(), &ns)
            .await
            .expect("namespace");
    }

    /// Creates a tenant through the API (as the bootstrap admin) and its namespace.
    pub async fn tenant(&self, name: &str, spec: Value) {
        self.call(
            "POST",
            "/v1/tenants",
            Some(&self.admin),
            Some(json!({"name": name, "spec": spec})),
        )
        .await
        .ok(201);
        self.namespace(name).await;
    }

    /// Creates a token with `role` in `tenant`; returns the secret.
    pub async fn token(&self, tenant: &str, name: &str, role: &str) -> String {
        let a = self
            .call(
                "POST",
                &format!("/v1/tenants/{tenant}/tokens"),
                Some(&self.admin),
                Some(json!({"name": name, "role": role})),
            )
            .await;
        a.ok(201)["token"].as_str().expect("secret").to_string()
    }

    /// Sets a pipeline's status, standing for the operator.
    pub async fn set_pipeline_status(&self, tenant: &str, name: &str, status: Value) {
        let api: Api<sluice_crd::Pipeline> = Api::namespaced(
            self.client.clone(),
            &sluice_core::names::tenant_namespace(tenant),
        );
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .expect("status patched");
    }

    /// The pipelines in the tenant's namespace, straight from Kubernetes.
    pub async fn kube_pipelines(&self, tenant: &str) -> Vec<sluice_crd::Pipeline> {
        let api: Api<sluice_crd::Pipeline> = Api::namespaced(
            self.client.clone(),
            &sluice_core::names::tenant_namespace(tenant),
        );
        api.list(&Default::default()).await.unwrap().items
    }

    /// Sets a stream's status, standing for the operator.
    pub async fn set_stream_status(&self, tenant: &str, name: &str, status: Value) {
        let api: Api<sluice_crd::Stream> = Api::namespaced(
            self.client.clone(),
            &sluice_core::names::tenant_namespace(tenant),
        );
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .expect("status patched");
    }

    /// The streams in the tenant's namespace, straight from Kubernetes.
    pub async fn kube_streams(&self, tenant: &str) -> Vec<sluice_crd::Stream> {
        let api: Api<sluice_crd::Stream> = Api::namespaced(
            self.client.clone(),
            &sluice_core::names::tenant_namespace(tenant),
        );
        api.list(&Default::default()).await.unwrap().items
    }

    /// Sends a body with a content type, as `token`.
    pub async fn post_body(
        &self,
        path: &str,
        token: &str,
        content_type: &str,
        body: Body,
    ) -> Answer {
        let req = Request::builder()
            .method("POST")
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", content_type)
            .body(body)
            .unwrap();
        self.send(req).await
    }

    /// The `/metrics` text, from the metrics router (the API router does not serve it).
    pub async fn metrics(&self) -> String {
        let res = sluice_api::metrics_app(self.state.clone())
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    pub async fn shutdown(mut self) {
        self.state.auth_store.close().await;
        self.db.store.close().await;
        if let Some(sim) = self.sim.take() {
            tokio::time::timeout(Duration::from_secs(5), sim.shutdown())
                .await
                .ok();
        }
    }
}

/// A valid pipeline body.
pub fn pipeline(name: &str, parallelism: i32) -> Value {
    json!({"name": name, "spec": {
        "source": {"stream": "orders"},
        "filter": "event.amount > 100",
        "projection": {"fields": [{"path": "id"}, {"path": "amount"}]},
        "sinks": [{"name": "alerts", "nats": {"subject": "alerts.big"}}],
        "parallelism": parallelism}})
}

/// URL of the test NATS server (`SLUICE_TEST_NATS_URL` overrides).
pub fn nats_url() -> String {
    std::env::var("SLUICE_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A JetStream context on the test NATS server.
pub async fn jetstream() -> async_nats::jetstream::Context {
    let client = async_nats::connect(nats_url())
        .await
        .expect("NATS on 127.0.0.1:4222 (SLUICE_TEST_NATS_URL overrides)");
    async_nats::jetstream::new(client)
}

/// A tenant name no other test run uses, so parallel runs never share broker streams.
pub fn unique_tenant(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// The JetStream stream backing `stream` of `tenant`, made the way the operator makes it
/// (name `sluice_<tenant>_<stream>`, subjects `sluice.<tenant>.<stream>.>`); dropping the guard
/// deletes it.
pub struct BrokerStream {
    pub js: async_nats::jetstream::Context,
    pub name: String,
}

impl BrokerStream {
    pub async fn create(tenant: &str, stream: &str) -> BrokerStream {
        let js = jetstream().await;
        let name = sluice_core::subjects::jetstream_name(tenant, stream);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![sluice_core::subjects::stream_subjects(tenant, stream)],
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("JetStream stream created");
        BrokerStream { js, name }
    }

    /// Messages the broker holds.
    pub async fn messages(&self) -> u64 {
        let s = self.js.get_stream(&self.name).await.expect("stream");
        s.get_info().await.expect("info").state.messages
    }

    /// The payloads of messages `1..=n`, as JSON.
    pub async fn payloads(&self, n: u64) -> Vec<Value> {
        let s = self.js.get_stream(&self.name).await.expect("stream");
        let mut out = vec![];
        for seq in 1..=n {
            let m = s.get_raw_message(seq).await.expect("message");
            out.push(serde_json::from_slice(&m.payload).expect("JSON payload"));
        }
        out
    }

    pub async fn delete(self) {
        let _ = self.js.delete_stream(&self.name).await;
    }
}
