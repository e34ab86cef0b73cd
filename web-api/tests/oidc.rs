//! Tokens of an external OIDC issuer, verified against its JWKS (file or URL).

mod common;

use common::{Db, TestApp};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sluice_api::Config;
use sluice_api::auth::oidc::{JwksSource, Oidc, OidcConfig};

const KEY: &str = include_str!("fixtures/oidc-test-key.pem");
const JWKS: &str = include_str!("fixtures/oidc-test-jwks.json");

fn config(jwks: JwksSource) -> OidcConfig {
    OidcConfig {
        issuer: "https://sso.example.test".into(),
        audience: "sluice-api".into(),
        jwks,
        roles_claim: "groups".into(),
        admin_value: "sluice-platform-admins".into(),
        tenant_prefix: "sluice:".into(),
        jwks_refresh_interval: sluice_api::auth::oidc::DEFAULT_JWKS_REFRESH_INTERVAL,
    }
}

fn sign(claims: Value, kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(KEY.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn claims(groups: Value) -> Value {
    json!({"iss": "https://sso.example.test", "aud": "sluice-api", "sub": "alice",
        "exp": chrono::Utc::now().timestamp() + 600, "groups": groups})
}

async fn check(app: &TestApp) {
    app.tenant("acme", json!({})).await;
    app.tenant("beta", json!({})).await;
    let admin = sign(claims(json!(["sluice-platform-admins"])), "test-key-1");
    app.call("GET", "/v1/tenants", Some(&admin), None)
        .await
        .ok(200);
    let dev = sign(claims(json!(["sluice:acme:developer"])), "test-key-1");
    app.call("GET", "/v1/tenants/acme/pipelines", Some(&dev), None)
        .await
        .ok(200);
    app.call("GET", "/v1/tenants/beta/pipelines", Some(&dev), None)
        .await
        .problem(404, "not-found");
    app.call("GET", "/v1/tenants", Some(&dev), None)
        .await
        .problem(403, "forbidden");
    // Wrong audience, wrong issuer, expired, unknown key: 401.
    let mut c = claims(json!(["sluice-platform-admins"]));
    c["aud"] = json!("other");
    let mut i = claims(json!(["sluice-platform-admins"]));
    i["iss"] = json!("https://evil.test");
    let mut e = claims(json!(["sluice-platform-admins"]));
    e["exp"] = json!(chrono::Utc::now().timestamp() - 3600);
    // Not valid yet (`nbf` an hour ahead): 401.
    let mut n = claims(json!(["sluice-platform-admins"]));
    n["nbf"] = json!(chrono::Utc::now().timestamp() + 3600);
    for token in [
        sign(c, "test-key-1"),
        sign(i, "test-key-1"),
        sign(e, "test-key-1"),
        sign(n, "test-key-1"),
        sign(claims(json!(["sluice-platform-admins"])), "unknown-key"),
    ] {
        app.call("GET", "/v1/tenants", Some(&token), None)
            .await
            .problem(401, "unauthorized");
    }
    // The audit log names the OIDC subject.
    let a = app
        .call("POST", "/v1/tenants/acme/suspend", Some(&admin), None)
        .await;
    a.ok(200);
    let log = app
        .call("GET", "/v1/audit?actor=oidc:alice", Some(&admin), None)
        .await;
    assert_eq!(log.ok(200)["items"][0]["action"], "tenant.suspend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_tokens_from_a_jwks_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, JWKS).unwrap();
    let oidc = Oidc::new(config(JwksSource::File(path))).await.unwrap();
    let app = TestApp::start_with(Db::Postgres, Some(oidc), Config::default()).await;
    check(&app).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_tokens_from_a_jwks_url() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let server = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(|| async { ([("content-type", "application/json")], JWKS) }),
    );
    tokio::spawn(async move { axum::serve(listener, server).await });
    let oidc = Oidc::new(config(JwksSource::parse(&url))).await.unwrap();
    let app = TestApp::start_with(Db::Postgres, Some(oidc), Config::default()).await;
    check(&app).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwks_is_reloaded_periodically_so_removed_keys_stop_verifying() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, JWKS).unwrap();
    let oidc = Oidc::new(OidcConfig {
        jwks_refresh_interval: std::time::Duration::from_millis(300),
        ..config(JwksSource::File(path.clone()))
    })
    .await
    .unwrap();
    let app = TestApp::start_with(Db::Postgres, Some(oidc), Config::default()).await;
    let admin = sign(claims(json!(["sluice-platform-admins"])), "test-key-1");
    app.call("GET", "/v1/tenants", Some(&admin), None)
        .await
        .ok(200);
    // The issuer retires the key: within a refresh interval, its tokens stop verifying.
    std::fs::write(&path, r#"{"keys":[]}"#).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let a = app.call("GET", "/v1/tenants", Some(&admin), None).await;
        if a.status.as_u16() == 401 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the old key still verifies"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    app.shutdown().await;
}
