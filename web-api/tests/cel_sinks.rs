//! Hostile pipeline specs at the API: expressions built to overflow the CEL parser, sink
//! subjects in the platform's or the source's subject space, sink URLs naming metadata and
//! link-local addresses. Each is a 422 naming the field, nothing is written, and the process
//! (which runs these tests, on tokio's worker stacks) lives on.

mod common;

use common::{Db, TestApp, pipeline};
use serde_json::{Value, json};

fn fields(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_specs_are_422_naming_the_field_and_the_process_lives() {
    let app = TestApp::start(Db::Postgres).await;
    app.tenant("acme", json!({})).await;
    let dev = app.token("acme", "dev", "developer").await;
    let path = "/v1/tenants/acme/pipelines";

    // The filter of the report: `event.a` followed by `.b` 2,000 times.
    let mut deep = pipeline("deep", 1);
    deep["spec"]["filter"] = json!(format!("event.a{}", ".b".repeat(2000)));
    let a = app.call("POST", path, Some(&dev), Some(deep)).await;
    let body = a.problem(422, "validation-failed");
    assert_eq!(fields(body), ["spec.filter"]);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("nodes")
    );

    // Deep nesting in a projection expression.
    let mut nested = pipeline("nested", 1);
    nested["spec"]["projection"] =
        json!({"expression": format!("{}{{}}{}", "[".repeat(200), "]".repeat(200))});
    let a = app.call("POST", path, Some(&dev), Some(nested)).await;
    assert_eq!(
        fields(a.problem(422, "validation-failed")),
        ["spec.projection.expression"]
    );

    // Sinks into the source stream, the server's subjects, another tenant's subjects, and
    // literal metadata or link-local addresses.
    let mut sinks = pipeline("sinks", 1);
    sinks["spec"]["sinks"] = json!([
        {"name": "loop", "nats": {"subject": "orders.events"}},
        {"name": "js-api", "nats": {"subject": "$JS.API.STREAM.DELETE.sluice_acme_orders"}},
        {"name": "other", "nats": {"subject": "sluice.bob.orders.events"}},
        {"name": "js-loop", "jetstream": {"stream": "orders"}},
        {"name": "metadata", "http": {"url": "http://169.254.169.254/latest/meta-data/"}},
        {"name": "decimal", "http": {"url": "http://2852039166/"}},
        {"name": "fine", "http": {"url": "https://hooks.example.com/x"}}
    ]);
    let a = app.call("POST", path, Some(&dev), Some(sinks)).await;
    assert_eq!(
        fields(a.problem(422, "validation-failed")),
        [
            "spec.sinks[0].nats.subject",
            "spec.sinks[1].nats.subject",
            "spec.sinks[2].nats.subject",
            "spec.sinks[3].jetstream.stream",
            "spec.sinks[4].http.url",
            "spec.sinks[5].http.url",
        ]
    );
    assert!(
        app.kube_pipelines("acme").await.is_empty(),
        "nothing written"
    );

    // The process lives: the next valid request succeeds.
    app.call("POST", path, Some(&dev), Some(pipeline("fine", 1)))
        .await
        .ok(201);
    assert_eq!(app.kube_pipelines("acme").await.len(), 1);
    app.shutdown().await;
}
