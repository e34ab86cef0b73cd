//! The API end to end, in-process: kubesim as the Kubernetes API, a fresh PostgreSQL database
//! (or SQLite file) as the store.

mod common;

use axum::body::Body;
use common::{Db, TestApp, pipeline};
use http::Request;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// A complete session, as in the README: tenant, token, pipeline, status, usage, changes.
async fn session(db: Db) {
    let app = TestApp::start(db).await;
    // A second start issues no second bootstrap token.
    assert_eq!(sluice_api::bootstrap_token(&app.state).await.unwrap(), None);

    let a = app
        .call(
            "POST",
            "/v1/tenants",
            Some(&app.admin),
            Some(json!({"name": "acme", "spec": {"displayName": "Acme",
                "quota": {"maxPipelines": 5, "maxParallelism": 10, "cpu": "4", "memory": "8Gi"}}})),
        )
        .await;
    let t = a.ok(201);
    assert_eq!(t["name"], "acme");
    assert_eq!(t["namespace"], "sluice-acme");
    assert_eq!(t["spec"]["quota"]["maxPipelines"], 5);
    // The Tenant object exists in Kubernetes.
    let tenants: kube::Api<sluice_crd::Tenant> = kube::Api::all(app.client.clone());
    assert_eq!(
        tenants
            .get("acme")
            .await
            .unwrap()
            .spec
            .display_name
            .as_deref(),
        Some("Acme")
    );
    app.namespace("acme").await;

    let dev = app.token("acme", "ci", "developer").await;
    let p = app
        .call(
            "POST",
            "/v1/tenants/acme/pipelines",
            Some(&dev),
            Some(pipeline("orders", 2)),
        )
        .await;
    assert_eq!(p.ok(201)["spec"]["parallelism"], 2);
    app.set_pipeline_status(
        "acme",
        "orders",
        json!({"phase": "Running", "replicas": 2, "readyReplicas": 2,
               "conditions": [{"type": "Ready", "status": "True", "reason": "RoutesReady",
                   "message": "all routes run", "lastTransitionTime": "2025-01-01T00:00:00Z"}]}),
    )
    .await;
    let g = app
        .call("GET", "/v1/tenants/acme/pipelines/orders", Some(&dev), None)
        .await;
    let g = g.ok(200);
    assert_eq!(g["status"]["phase"], "Running");
    assert_eq!(g["spec"]["source"]["stream"], "orders");

    let u = app
        .call("GET", "/v1/tenants/acme/usage", Some(&dev), None)
        .await;
    let u = u.ok(200);
    assert_eq!(u["pipelines"], json!({"used": 1, "limit": 5}));
    assert_eq!(u["parallelism"], json!({"used": 2, "limit": 10}));
    assert_eq!(u["cpu"], json!({"used": "200m", "limit": "4"}));
    assert_eq!(u["memory"], json!({"used": "256Mi", "limit": "8Gi"}));
    let q = app
        .call("GET", "/v1/tenants/acme/quota", Some(&dev), None)
        .await;
    assert_eq!(q.ok(200)["maxPipelines"], 5);

    // Scale with a merge patch, suspend, resume, replace.
    let s = app
        .call(
            "PATCH",
            "/v1/tenants/acme/pipelines/orders",
            Some(&dev),
            Some(json!({"spec": {"parallelism": 3, "filter": null}})),
        )
        .await;
    let s = s.ok(200);
    assert_eq!(s["spec"]["parallelism"], 3);
    assert!(s["spec"].get("filter").is_none());
    let s = app
        .call(
            "POST",
            "/v1/tenants/acme/pipelines/orders/suspend",
            Some(&dev),
            None,
        )
        .await;
    assert_eq!(s.ok(200)["spec"]["suspend"], true);
    let u = app
        .call("GET", "/v1/tenants/acme/usage", Some(&dev), None)
        .await;
    assert_eq!(u.ok(200)["parallelism"]["used"], 0);
    let s = app
        .call(
            "POST",
            "/v1/tenants/acme/pipelines/orders/resume",
            Some(&dev),
            None,
        )
        .await;
    assert_eq!(s.ok(200)["spec"]["suspend"], false);
    let mut replacement = pipeline("orders", 1)["spec"].clone();
    replacement["filter"] = json!("event.amount > 5");
    let r = app
        .call(
            "PUT",
            "/v1/tenants/acme/pipelines/orders",
            Some(&dev),
            Some(json!({"spec": replacement})),
        )
        .await;
    assert_eq!(r.ok(200)["spec"]["filter"], "event.amount > 5");
    // A stale resourceVersion is a conflict.
    let r = app
        .call(
            "PUT",
            "/v1/tenants/acme/pipelines/orders",
            Some(&dev),
            Some(json!({"spec": replacement, "resourceVersion": "1"})),
        )
        .await;
    r.problem(409, "conflict");
    // The source is immutable.
    let mut moved = replacement.clone();
    moved["source"]["stream"] = json!("payments");
    let r = app
        .call(
            "PUT",
            "/v1/tenants/acme/pipelines/orders",
            Some(&dev),
            Some(json!({"spec": moved})),
        )
        .await;
    assert_eq!(
        r.problem(422, "validation-failed")["errors"][0]["field"],
        "spec.source.stream"
    );

    // Pagination over pipelines.
    for n in ["b", "c"] {
        app.call(
            "POST",
            "/v1/tenants/acme/pipelines",
            Some(&dev),
            Some(pipeline(n, 1)),
        )
        .await
        .ok(201);
    }
    let mut seen = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/tenants/acme/pipelines?limit=2&cursor={c}"),
            None => "/v1/tenants/acme/pipelines?limit=2".to_string(),
        };
        let page = app.call("GET", &path, Some(&dev), None).await;
        let page = page.ok(200);
        for item in page["items"].as_array().unwrap() {
            seen.push(item["name"].as_str().unwrap().to_string());
        }
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["b", "c", "orders"]);

    // Delete.
    let d = app
        .call("DELETE", "/v1/tenants/acme/pipelines/b", Some(&dev), None)
        .await;
    assert!(matches!(d.status.as_u16(), 202 | 204), "{d:?}");
    app.call("GET", "/v1/tenants/acme/pipelines/b", Some(&dev), None)
        .await
        .problem(404, "not-found");

    // The audit log recorded the writes.
    let audit = app
        .call(
            "GET",
            "/v1/tenants/acme/audit?limit=100",
            Some(&app.admin),
            None,
        )
        .await;
    let actions: Vec<&str> = audit.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "tenant.create",
        "token.create",
        "pipeline.create",
        "pipeline.patch",
        "pipeline.suspend",
        "pipeline.resume",
        "pipeline.replace",
        "pipeline.delete",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_on_postgres() {
    session(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_on_sqlite() {
    session(Db::Sqlite).await;
}

fn sign(claims: Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_401_and_weak_roles_403() {
    let app = TestApp::start(Db::Postgres).await;
    app.tenant("acme", json!({})).await;
    let dev = app.token("acme", "dev", "developer").await;
    let now = chrono::Utc::now().timestamp();
    // The developer token's own claims, to tamper with.
    let claims: Value = jsonwebtoken::dangerous::insecure_decode::<Value>(&dev)
        .unwrap()
        .claims;
    let with = |k: &str, v: Value| {
        let mut c = claims.clone();
        c[k] = v;
        sign(c, common::SECRET)
    };
    let b64 = |v: Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let alg_none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(claims.clone())
    );
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("not a JWT", Some("garbage".into())),
        ("alg none", Some(alg_none)),
        (
            "forged",
            Some(sign(claims.clone(), b"another-secret-another-secret-0123")),
        ),
        ("expired", Some(with("exp", json!(now - 3600)))),
        ("wrong audience", Some(with("aud", json!("someone-else")))),
        ("wrong issuer", Some(with("iss", json!("evil")))),
        ("unknown jti", Some(with("jti", json!("nope")))),
        // Right signature and claims, but a token the store never issued with these claims.
        ("other tenant claimed", Some(with("tenant", json!("beta")))),
    ];
    for (what, token) in cases {
        let a = app
            .call("GET", "/v1/tenants/acme/pipelines", token.as_deref(), None)
            .await;
        assert_eq!(a.status, 401, "{what}: {:?}", a.body);
        a.problem(401, "unauthorized");
    }

    // Roles: a viewer reads but cannot write; a producer cannot even read.
    let viewer = app.token("acme", "viewer", "viewer").await;
    let producer = app.token("acme", "producer", "producer").await;
    app.call("GET", "/v1/tenants/acme/pipelines", Some(&viewer), None)
        .await
        .ok(200);
    app.call(
        "POST",
        "/v1/tenants/acme/pipelines",
        Some(&viewer),
        Some(pipeline("p", 1)),
    )
    .await
    .problem(403, "forbidden");
    app.call("GET", "/v1/tenants/acme/pipelines", Some(&producer), None)
        .await
        .problem(403, "forbidden");
    // Tenant roles cannot manage tenants or create tokens (developer).
    app.call("GET", "/v1/tenants", Some(&dev), None)
        .await
        .problem(403, "forbidden");
    app.call(
        "PATCH",
        "/v1/tenants/acme",
        Some(&dev),
        Some(json!({"spec": {"quota": {"maxPipelines": 100}}})),
    )
    .await
    .problem(403, "forbidden");
    app.call(
        "POST",
        "/v1/tenants/acme/tokens",
        Some(&dev),
        Some(json!({"name": "x", "role": "tenant-admin"})),
    )
    .await
    .problem(403, "forbidden");
    assert!(app.kube_pipelines("acme").await.is_empty());

    // Revocation takes effect at once on this replica.
    let list = app
        .call("GET", "/v1/tenants/acme/tokens", Some(&app.admin), None)
        .await;
    let id = list.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "viewer")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        list.body.to_string().find("\"token\"").is_none(),
        "no secrets in lists"
    );
    let r = app
        .call(
            "DELETE",
            &format!("/v1/tenants/acme/tokens/{id}"),
            Some(&app.admin),
            None,
        )
        .await;
    assert!(r.ok(200)["revokedAt"].is_string());
    app.call("GET", "/v1/tenants/acme/pipelines", Some(&viewer), None)
        .await
        .problem(401, "unauthorized");
    // The store holds a hash, never the token.
    let row = app.db.store.token(&id).await.unwrap().unwrap();
    assert_eq!(row.token_hash.len(), 64);
    assert_ne!(row.token_hash, viewer);
    app.shutdown().await;
}

/// Every tenant-scoped endpoint, called with a tenant-admin token of another tenant, answers
/// 404 (as for a tenant that does not exist), and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_tenant_access_is_404_everywhere() {
    let app = TestApp::start(Db::Postgres).await;
    app.tenant("acme", json!({})).await;
    app.tenant("beta", json!({})).await;
    let acme_dev = app.token("acme", "dev", "developer").await;
    app.call(
        "POST",
        "/v1/tenants/acme/pipelines",
        Some(&acme_dev),
        Some(pipeline("orders", 1)),
    )
    .await
    .ok(201);
    app.call(
        "POST",
        "/v1/tenants/acme/streams",
        Some(&acme_dev),
        Some(json!({"name": "orders", "spec": {"retention": {"maxAge": "1d"}}})),
    )
    .await
    .ok(201);
    let tokens = app
        .call("GET", "/v1/tenants/acme/tokens", Some(&app.admin), None)
        .await;
    let token_id = tokens.ok(200)["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = app.kube_pipelines("acme").await;
    let streams_before = app.kube_streams("acme").await;

    let spec = pipeline("orders", 1)["spec"].clone();
    let table: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/v1/tenants/acme".into(), None),
        (
            "PATCH",
            "/v1/tenants/acme".into(),
            Some(json!({"spec": {"suspend": true}})),
        ),
        ("DELETE", "/v1/tenants/acme".into(), None),
        ("POST", "/v1/tenants/acme/suspend".into(), None),
        ("POST", "/v1/tenants/acme/resume".into(), None),
        ("GET", "/v1/tenants/acme/quota".into(), None),
        ("GET", "/v1/tenants/acme/usage".into(), None),
        ("GET", "/v1/tenants/acme/audit".into(), None),
        ("GET", "/v1/tenants/acme/tokens".into(), None),
        (
            "POST",
            "/v1/tenants/acme/tokens".into(),
            Some(json!({"name": "x", "role": "viewer"})),
        ),
        (
            "DELETE",
            format!("/v1/tenants/acme/tokens/{token_id}"),
            None,
        ),
        ("GET", "/v1/tenants/acme/pipelines".into(), None),
        (
            "POST",
            "/v1/tenants/acme/pipelines".into(),
            Some(pipeline("evil", 1)),
        ),
        ("GET", "/v1/tenants/acme/pipelines/orders".into(), None),
        (
            "PUT",
            "/v1/tenants/acme/pipelines/orders".into(),
            Some(json!({"spec": spec})),
        ),
        (
            "PATCH",
            "/v1/tenants/acme/pipelines/orders".into(),
            Some(json!({"spec": {"parallelism": 5}})),
        ),
        ("DELETE", "/v1/tenants/acme/pipelines/orders".into(), None),
        (
            "POST",
            "/v1/tenants/acme/pipelines/orders/suspend".into(),
            None,
        ),
        (
            "POST",
            "/v1/tenants/acme/pipelines/orders/resume".into(),
            None,
        ),
        ("GET", "/v1/tenants/acme/streams".into(), None),
        (
            "POST",
            "/v1/tenants/acme/streams".into(),
            Some(json!({"name": "evil", "spec": {}})),
        ),
        ("GET", "/v1/tenants/acme/streams/orders".into(), None),
        (
            "PUT",
            "/v1/tenants/acme/streams/orders".into(),
            Some(json!({"spec": {"retention": {"maxAge": "1h"}}})),
        ),
        (
            "PATCH",
            "/v1/tenants/acme/streams/orders".into(),
            Some(json!({"spec": {"retention": {"maxAge": "1h"}}})),
        ),
        ("DELETE", "/v1/tenants/acme/streams/orders".into(), None),
        (
            "POST",
            "/v1/tenants/acme/streams/orders/events".into(),
            Some(json!({"id": "evil"})),
        ),
    ];
    // Every route with a {tenant} parameter is in the table.
    let doc = sluice_api::openapi::document();
    let mut documented = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        if !path.contains("{tenant}") {
            continue;
        }
        for method in ops.as_object().unwrap().keys() {
            documented += 1;
            let concrete = path
                .replace("{tenant}", "acme")
                .replace("{pipeline}", "orders")
                .replace("{stream}", "orders")
                .replace("{id}", &token_id);
            assert!(
                table
                    .iter()
                    .any(|(m, p, _)| m.eq_ignore_ascii_case(method) && *p == concrete),
                "{method} {path} missing from the cross-tenant table"
            );
        }
    }
    assert_eq!(documented, table.len());

    let beta_admin = app.token("beta", "admin", "tenant-admin").await;
    let beta_dev = app.token("beta", "dev", "developer").await;
    let beta_producer = app.token("beta", "producer", "producer").await;
    for token in [&beta_admin, &beta_dev, &beta_producer] {
        for (method, path, body) in &table {
            let a = app.call(method, path, Some(token), body.clone()).await;
            assert_eq!(a.status, 404, "{method} {path}: {}", a.body);
            a.problem(404, "not-found");
            // Same answer as a tenant that does not exist.
            let ghost = app
                .call(
                    method,
                    &path.replace("acme", "ghost"),
                    Some(token),
                    body.clone(),
                )
                .await;
            assert_eq!(ghost.status, 404, "{method} {path} (ghost)");
        }
    }
    // Nothing changed.
    assert_eq!(app.kube_pipelines("acme").await, before);
    assert_eq!(app.kube_streams("acme").await, streams_before);
    let t = app.db.store.token(&token_id).await.unwrap().unwrap();
    assert_eq!(t.revoked_at, None);
    let acme = app
        .call("GET", "/v1/tenants/acme", Some(&app.admin), None)
        .await;
    let acme = acme.ok(200);
    assert_eq!(acme["spec"]["suspend"], false);
    assert_eq!(acme["deleting"], false);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_nothing_is_written() {
    let app = TestApp::start(Db::Postgres).await;
    app.tenant("acme", json!({})).await;
    let dev = app.token("acme", "dev", "developer").await;
    let path = "/v1/tenants/acme/pipelines";
    let raw = |body: &str, ct: &str| {
        Request::builder()
            .method("POST")
            .uri(path)
            .header("authorization", format!("Bearer {dev}"))
            .header("content-type", ct)
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    app.send(raw("{\"name\": \"x\", ", "application/json"))
        .await
        .problem(400, "malformed-json");
    app.send(raw(&pipeline("x", 1).to_string(), "text/plain"))
        .await
        .problem(415, "unsupported-media-type");
    let big = json!({"name": "x", "spec": {"filter": "x".repeat(300 * 1024)}});
    app.send(raw(&big.to_string(), "application/json"))
        .await
        .problem(413, "payload-too-large");

    let field_of = |a: &common::Answer| a.body["errors"][0]["field"].as_str().unwrap().to_string();
    let mut unknown_top = pipeline("x", 1);
    unknown_top["owner"] = json!("me");
    let a = app.call("POST", path, Some(&dev), Some(unknown_top)).await;
    a.problem(422, "invalid-body");
    assert_eq!(field_of(&a), "owner");
    // An inline secret in a sink is an unknown field.
    let mut inline_secret = pipeline("x", 1);
    inline_secret["spec"]["sinks"] = json!([{"name": "db", "postgres": {"table": "t",
        "connectionSecretRef": {"name": "s", "key": "url"},
        "password": "hunter2"}}]);
    let a = app
        .call("POST", path, Some(&dev), Some(inline_secret))
        .await;
    a.problem(422, "invalid-body");
    assert_eq!(field_of(&a), "spec.sinks[0].postgres.password");
    let mut wrong_type = pipeline("x", 1);
    wrong_type["spec"]["parallelism"] = json!("two");
    let a = app.call("POST", path, Some(&dev), Some(wrong_type)).await;
    a.problem(422, "invalid-body");
    assert_eq!(field_of(&a), "spec.parallelism");
    let a = app
        .call("POST", path, Some(&dev), Some(json!({"name": "x"})))
        .await;
    a.problem(422, "invalid-body");
    let a = app
        .call("POST", path, Some(&dev), Some(pipeline("Not_DNS", 1)))
        .await;
    a.problem(422, "validation-failed");
    assert_eq!(field_of(&a), "name");
    // A digit first is a DNS-1123 label, but the routes' Services could not carry it.
    let a = app
        .call("POST", path, Some(&dev), Some(pipeline("1abc", 1)))
        .await;
    a.problem(422, "validation-failed");
    assert_eq!(field_of(&a), "name");
    assert!(
        a.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("start with a letter")
    );
    let mut bad_cel = pipeline("x", 1);
    bad_cel["spec"]["filter"] = json!("event.amount >");
    let a = app.call("POST", path, Some(&dev), Some(bad_cel)).await;
    a.problem(422, "validation-failed");
    assert_eq!(field_of(&a), "spec.filter");
    let mut no_kind = pipeline("x", 1);
    no_kind["spec"]["sinks"] = json!([{"name": "nowhere"}]);
    let a = app.call("POST", path, Some(&dev), Some(no_kind)).await;
    assert_eq!(field_of(&a), "spec.sinks[0]");
    app.call(
        "GET",
        "/v1/tenants/acme/pipelines?limit=0",
        Some(&dev),
        None,
    )
    .await
    .problem(400, "bad-request");
    app.call(
        "GET",
        "/v1/tenants/acme/pipelines?cursor=%%%",
        Some(&dev),
        None,
    )
    .await
    .problem(400, "bad-request");
    app.call("GET", "/v1/tenants/nope/pipelines", Some(&app.admin), None)
        .await
        .problem(404, "not-found");
    app.call("GET", "/v1/nothing-here", Some(&dev), None)
        .await
        .problem(404, "not-found");
    app.call("PUT", "/v1/tenants", Some(&app.admin), None)
        .await
        .problem(405, "method-not-allowed");
    // Tenant names and quotas are validated too.
    let a = app
        .call(
            "POST",
            "/v1/tenants",
            Some(&app.admin),
            Some(json!({"name": "x".repeat(60), "spec": {"quota": {"memory": "lots"}}})),
        )
        .await;
    let fields: Vec<&str> = a.problem(422, "validation-failed")["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "spec.quota.memory"]);
    assert!(app.kube_pipelines("acme").await.is_empty());
    let tenants: kube::Api<sluice_crd::Tenant> = kube::Api::all(app.client.clone());
    assert_eq!(
        tenants.list(&Default::default()).await.unwrap().items.len(),
        1
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_are_enforced_at_the_door() {
    let app = TestApp::start(Db::Postgres).await;
    app.tenant(
        "acme",
        json!({"quota": {"maxPipelines": 2, "maxParallelism": 4, "cpu": "1"}}),
    )
    .await;
    let dev = app.token("acme", "dev", "developer").await;
    let path = "/v1/tenants/acme/pipelines";
    app.call("POST", path, Some(&dev), Some(pipeline("a", 3)))
        .await
        .ok(201);
    let a = app
        .call("POST", path, Some(&dev), Some(pipeline("b", 2)))
        .await;
    let p = a.problem(409, "quota-exceeded");
    assert_eq!(p["limit"], "maxParallelism");
    assert_eq!(
        (
            p["max"].as_str(),
            p["used"].as_str(),
            p["requested"].as_str()
        ),
        (Some("4"), Some("3"), Some("2"))
    );
    assert!(p["detail"].as_str().unwrap().contains("maxParallelism"));
    app.call("POST", path, Some(&dev), Some(pipeline("b", 1)))
        .await
        .ok(201);
    let a = app
        .call("POST", path, Some(&dev), Some(pipeline("c", 0)))
        .await;
    assert_eq!(a.problem(409, "quota-exceeded")["limit"], "maxPipelines");
    // Scaling past the quota is refused; scaling down is allowed.
    let a = app
        .call(
            "PATCH",
            "/v1/tenants/acme/pipelines/b",
            Some(&dev),
            Some(json!({"spec": {"parallelism": 2}})),
        )
        .await;
    assert_eq!(a.problem(409, "quota-exceeded")["limit"], "maxParallelism");
    // CPU: 4 workers × 100m = 400m used; asking 1 worker × 800m more breaks `cpu: 1`.
    let a = app
        .call(
            "PATCH",
            "/v1/tenants/acme/pipelines/b",
            Some(&dev),
            Some(json!({"spec": {"resources": {"requests": {"cpu": "800m"}}}})),
        )
        .await;
    assert_eq!(a.problem(409, "quota-exceeded")["limit"], "cpu");
    app.call(
        "PATCH",
        "/v1/tenants/acme/pipelines/a",
        Some(&dev),
        Some(json!({"spec": {"parallelism": 1}})),
    )
    .await
    .ok(200);
    let names: Vec<_> = app
        .kube_pipelines("acme")
        .await
        .into_iter()
        .map(|p| (p.metadata.name.unwrap(), p.spec.parallelism))
        .collect();
    assert_eq!(names, [("a".to_string(), 1), ("b".to_string(), 1)]);
    app.shutdown().await;
}

async fn concurrent_creates(db: Db) {
    let app = TestApp::start(db).await;
    app.tenant("acme", json!({"quota": {"maxPipelines": 3}}))
        .await;
    let dev = app.token("acme", "dev", "developer").await;
    app.call(
        "POST",
        "/v1/tenants/acme/pipelines",
        Some(&dev),
        Some(pipeline("first", 1)),
    )
    .await
    .ok(201);
    // Ten creates race for the last two slots.
    let app = std::sync::Arc::new(app);
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let (app, dev) = (app.clone(), dev.clone());
            tokio::spawn(async move {
                app.call(
                    "POST",
                    "/v1/tenants/acme/pipelines",
                    Some(&dev),
                    Some(pipeline(&format!("p{i}"), 1)),
                )
                .await
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        let a = t.await.unwrap();
        match a.status.as_u16() {
            201 => created += 1,
            _ => {
                a.problem(409, "quota-exceeded");
            }
        }
    }
    assert_eq!(created, 2);
    assert_eq!(app.kube_pipelines("acme").await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_never_exceed_quota_on_postgres() {
    concurrent_creates(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_never_exceed_quota_on_sqlite() {
    concurrent_creates(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_returns_the_first_result() {
    let app = TestApp::start(Db::Postgres).await;
    app.tenant("acme", json!({})).await;
    let dev = app.token("acme", "dev", "developer").await;
    let create = |body: Value, key: &str| {
        Request::builder()
            .method("POST")
            .uri("/v1/tenants/acme/pipelines")
            .header("authorization", format!("Bearer {dev}"))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let first = app.send(create(pipeline("orders", 1), "k-1")).await;
    first.ok(201);
    let again = app.send(create(pipeline("orders", 1), "k-1")).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers.get("idempotent-replayed").unwrap(), "true");
    app.send(create(pipeline("other", 1), "k-1"))
        .await
        .problem(422, "idempotency-key-reused");
    assert_eq!(app.kube_pipelines("acme").await.len(), 1);
    // Another key creates normally (and then the name is taken).
    app.send(create(pipeline("orders", 1), "k-2"))
        .await
        .problem(409, "already-exists");
    // Token creates replay without the secret.
    let tok = |key: &str| {
        Request::builder()
            .method("POST")
            .uri("/v1/tenants/acme/tokens")
            .header("authorization", format!("Bearer {}", app.admin))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(Body::from(
                json!({"name": "ci", "role": "viewer"}).to_string(),
            ))
            .unwrap()
    };
    let t1 = app.send(tok("t-1")).await;
    assert!(t1.ok(201)["token"].is_string());
    let t2 = app.send(tok("t-1")).await;
    assert_eq!(t2.ok(201)["id"], t1.body["id"]);
    assert!(t2.body.get("token").is_none());
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_writes_wait_for_the_tenant_namespace() {
    let app = TestApp::start(Db::Postgres).await;
    app.call(
        "POST",
        "/v1/tenants",
        Some(&app.admin),
        Some(json!({"name": "acme", "spec": {}})),
    )
    .await
    .ok(201);
    let dev = app.token("acme", "dev", "developer").await;
    app.call(
        "POST",
        "/v1/tenants/acme/pipelines",
        Some(&dev),
        Some(pipeline("orders", 1)),
    )
    .await
    .problem(409, "tenant-not-ready");
    app.namespace("acme").await;
    app.call(
        "POST",
        "/v1/tenants/acme/pipelines",
        Some(&dev),
        Some(pipeline("orders", 1)),
    )
    .await
    .ok(201);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_managed_by_platform_admins() {
    let app = TestApp::start(Db::Postgres).await;
    app.tenant("acme", json!({"quota": {"maxPipelines": 1}}))
        .await;
    app.tenant("beta", json!({})).await;
    app.call(
        "POST",
        "/v1/tenants",
        Some(&app.admin),
        Some(json!({"name": "acme", "spec": {}})),
    )
    .await
    .problem(409, "already-exists");
    let page = app
        .call("GET", "/v1/tenants?limit=1", Some(&app.admin), None)
        .await;
    let page = page.ok(200);
    assert_eq!(page["items"][0]["name"], "acme");
    let next = page["nextCursor"].as_str().unwrap();
    let page2 = app
        .call(
            "GET",
            &format!("/v1/tenants?limit=1&cursor={next}"),
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(page2.ok(200)["items"][0]["name"], "beta");
    assert!(page2.body.get("nextCursor").is_none());

    let p = app
        .call(
            "PATCH",
            "/v1/tenants/acme",
            Some(&app.admin),
            Some(json!({"spec": {"quota": {"maxPipelines": 7},
                "isolation": {"nodeSelector": {"pool": "acme"}}}})),
        )
        .await;
    let p = p.ok(200);
    assert_eq!(p["spec"]["quota"]["maxPipelines"], 7);
    assert_eq!(p["spec"]["isolation"]["nodeSelector"]["pool"], "acme");
    app.call(
        "PATCH",
        "/v1/tenants/acme",
        Some(&app.admin),
        Some(json!({"spec": {"quota": {"maxPipelinez": 7}}})),
    )
    .await
    .problem(422, "invalid-body");
    let s = app
        .call("POST", "/v1/tenants/acme/suspend", Some(&app.admin), None)
        .await;
    assert_eq!(s.ok(200)["spec"]["suspend"], true);
    let admin = app.token("acme", "admin", "tenant-admin").await;
    let got = app
        .call("GET", "/v1/tenants/acme", Some(&admin), None)
        .await;
    assert_eq!(got.ok(200)["spec"]["suspend"], true);
    let r = app
        .call("POST", "/v1/tenants/acme/resume", Some(&app.admin), None)
        .await;
    assert_eq!(r.ok(200)["spec"]["suspend"], false);

    // Tenant admins see their tenant's audit log only; platform admins filter.
    let own = app
        .call("GET", "/v1/tenants/acme/audit", Some(&admin), None)
        .await;
    assert!(
        own.ok(200)["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["tenant"] == "acme")
    );
    app.call("GET", "/v1/audit", Some(&admin), None)
        .await
        .problem(403, "forbidden");
    app.call(
        "GET",
        "/v1/tenants/acme/audit?tenant=beta",
        Some(&admin),
        None,
    )
    .await
    .problem(400, "bad-request");
    let beta = app
        .call(
            "GET",
            "/v1/audit?tenant=beta&limit=500",
            Some(&app.admin),
            None,
        )
        .await;
    let items = beta.ok(200)["items"].as_array().unwrap().clone();
    assert!(!items.is_empty() && items.iter().all(|e| e["tenant"] == "beta"));

    // Deletion: marked or gone, and its tokens stop working.
    let d = app
        .call("DELETE", "/v1/tenants/acme", Some(&app.admin), None)
        .await;
    assert!(matches!(d.status.as_u16(), 202 | 204), "{d:?}");
    app.call("GET", "/v1/tenants/acme", Some(&admin), None)
        .await
        .problem(401, "unauthorized");
    app.call("GET", "/v1/tenants/acme", Some(&app.admin), None)
        .await
        .problem(404, "not-found");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    let app = TestApp::start(Db::Postgres).await;
    app.tenant("acme", json!({})).await;
    app.call("GET", "/healthz", None, None).await.ok(200);
    assert_eq!(
        app.call("GET", "/readyz", None, None).await.ok(200)["status"],
        "ready"
    );
    app.call(
        "GET",
        "/v1/tenants/acme/pipelines/zzz",
        Some(&app.admin),
        None,
    )
    .await
    .problem(404, "not-found");
    // The API router does not serve /metrics; the metrics router does.
    app.call("GET", "/metrics", None, None)
        .await
        .problem(404, "not-found");
    let res = sluice_api::metrics_app(app.state.clone())
        .oneshot_text("/metrics")
        .await;
    assert!(
        res.contains(
            "sluice_api_requests_total{method=\"GET\",route=\"/v1/tenants/{tenant}/pipelines/{pipeline}\",status=\"404\"} 1"
        ),
        "{res}"
    );
    assert!(res.contains("sluice_api_request_duration_seconds_bucket"));
    assert!(!res.contains("acme"), "no tenant names in labels");
    assert!(!res.contains("zzz"), "no raw paths in labels");
    // Readiness survives the store being briefly gone (one dependency, within the grace).
    app.db.store.close().await;
    assert_eq!(
        app.call("GET", "/readyz", None, None).await.ok(200)["status"],
        "ready"
    );
}

trait OneshotText {
    async fn oneshot_text(self, path: &str) -> String;
}

impl OneshotText for axum::Router {
    async fn oneshot_text(self, path: &str) -> String {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let res = self
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }
}
