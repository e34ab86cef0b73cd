//! Path parameters are names, checked before anything uses them: every route of the API
//! answers 400 `invalid-name` naming the parameter for a value that is not a DNS-1123 label
//! (tenants at most 56 characters), and 404 for a valid name that does not exist; no metric
//! series or usage row is ever made from a refused name.

mod common;

use common::{Db, TestApp, unique_tenant};
use serde_json::json;
use sluice_api::Config;

/// Refused forms of a name, as they appear in a URL path.
const BAD: [&str; 6] = [
    // Decodes to `held?x=1`: once taken as stream `held` with a query string.
    "held%3Fx%3D1",
    "Orders",
    "..",
    "%2E%2E",
    "a%2Fb",
    "x_y",
];

fn too_long() -> String {
    "s".repeat(64)
}

async fn invalid(app: &TestApp, method: &str, path: &str, field: &str) {
    let body = match method {
        "POST" | "PUT" | "PATCH" => Some(json!({})),
        _ => None,
    };
    let a = app.call(method, path, Some(&app.admin), body).await;
    let p = a.problem(400, "invalid-name");
    assert_eq!(p["errors"][0]["field"], field, "{method} {path}: {p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_names_are_refused_on_every_route() {
    let app = TestApp::start_ingest(Db::Postgres, Config::default()).await;
    let tenant = unique_tenant("names");
    app.tenant(&tenant, json!({})).await;
    let producer = app.token(&tenant, "producer", "producer").await;

    let mut bad: Vec<String> = BAD.iter().map(|s| s.to_string()).collect();
    bad.push(too_long());
    for b in &bad {
        invalid(
            &app,
            "GET",
            &format!("/v1/tenants/{tenant}/streams/{b}"),
            "stream",
        )
        .await;
        invalid(
            &app,
            "POST",
            &format!("/v1/tenants/{tenant}/streams/{b}/events"),
            "stream",
        )
        .await;
        invalid(
            &app,
            "DELETE",
            &format!("/v1/tenants/{tenant}/streams/{b}"),
            "stream",
        )
        .await;
        invalid(
            &app,
            "GET",
            &format!("/v1/tenants/{tenant}/pipelines/{b}"),
            "pipeline",
        )
        .await;
        invalid(
            &app,
            "POST",
            &format!("/v1/tenants/{tenant}/pipelines/{b}/suspend"),
            "pipeline",
        )
        .await;
        invalid(
            &app,
            "DELETE",
            &format!("/v1/tenants/{tenant}/tokens/{b}"),
            "id",
        )
        .await;
        invalid(&app, "GET", &format!("/v1/tenants/{b}"), "tenant").await;
        invalid(&app, "DELETE", &format!("/v1/tenants/{b}"), "tenant").await;
        invalid(&app, "GET", &format!("/v1/tenants/{b}/usage"), "tenant").await;
        invalid(&app, "GET", &format!("/v1/tenants/{b}/audit"), "tenant").await;
        invalid(
            &app,
            "POST",
            &format!("/v1/tenants/{b}/streams/orders/events"),
            "tenant",
        )
        .await;
    }
    // Tenant names leave room for the `sluice-` namespace prefix: 57 characters are too many.
    invalid(
        &app,
        "GET",
        &format!("/v1/tenants/{}", "t".repeat(57)),
        "tenant",
    )
    .await;

    // The producer is refused the same way, before its role is looked at.
    let a = app
        .post_body(
            &format!("/v1/tenants/{tenant}/streams/held%3Fx%3D1/events"),
            &producer,
            "application/x-ndjson",
            "{}\n".into(),
        )
        .await;
    assert_eq!(
        a.problem(400, "invalid-name")["errors"][0]["field"],
        "stream"
    );

    // Valid names that do not exist: 404.
    app.call(
        "GET",
        &format!("/v1/tenants/{tenant}/streams/nope"),
        Some(&app.admin),
        None,
    )
    .await
    .problem(404, "not-found");
    app.post_body(
        &format!("/v1/tenants/{tenant}/streams/held/events"),
        &producer,
        "application/x-ndjson",
        "{}\n".into(),
    )
    .await
    .problem(404, "not-found");
    app.call("GET", "/v1/tenants/nobody-here", Some(&app.admin), None)
        .await
        .problem(404, "not-found");

    // Nothing was counted under any of those names.
    let metrics = app.metrics().await;
    for name in ["held", "Orders", "nope", "x_y"] {
        assert!(
            !metrics.contains(&format!("stream=\"{name}")),
            "{name}: {metrics}"
        );
    }
    app.state.flush_usage().await.unwrap();
    let usage = app
        .call(
            "GET",
            &format!("/v1/tenants/{tenant}/usage"),
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(
        usage.ok(200)["ingest"]["streams"],
        json!([]),
        "{}",
        usage.body
    );
    app.shutdown().await;
}

/// Every documented route with path parameters, each parameter in turn made invalid (the
/// others valid): 400 `invalid-name` naming it. A route added without validating its path
/// fails here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_validates_every_path_parameter() {
    let app = TestApp::start(Db::Postgres).await;
    app.tenant("acme", json!({})).await;
    let doc = sluice_api::openapi::document();
    let valid = |param: &str| match param {
        "tenant" => "acme".to_string(),
        "id" => "0b5e7f3c-5f0e-4c4e-9d7c-3a1f2e4d5c6b".to_string(),
        _ => "orders".to_string(),
    };
    let mut checked = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        let params: Vec<&str> = template
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for method in item.as_object().unwrap().keys() {
            let method = method.to_ascii_uppercase();
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                continue;
            }
            for bad in &params {
                let mut path = template.clone();
                for p in &params {
                    let value = if p == bad {
                        "Bad-Name".to_string()
                    } else {
                        valid(p)
                    };
                    path = path.replace(&format!("{{{p}}}"), &value);
                }
                invalid(&app, &method, &path, bad).await;
                checked += 1;
            }
        }
    }
    assert!(checked >= 25, "only {checked} route parameters checked");
    app.shutdown().await;
}
