//! The committed OpenAPI document matches the code.

#[test]
fn committed_openapi_matches_the_code() {
    let committed = include_str!("../openapi.json");
    let generated = sluice_api::openapi::document_text();
    assert!(
        committed == generated,
        "web-api/openapi.json is stale; regenerate it with\n  \
         cargo run -p sluice-api -- openapi > web-api/openapi.json"
    );
}

#[test]
fn every_endpoint_is_documented() {
    let doc = sluice_api::openapi::document();
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/tenants", "post"),
        ("/v1/tenants", "get"),
        ("/v1/tenants/{tenant}", "patch"),
        ("/v1/tenants/{tenant}", "delete"),
        ("/v1/tenants/{tenant}/tokens", "post"),
        ("/v1/tenants/{tenant}/tokens/{id}", "delete"),
        ("/v1/tenants/{tenant}/pipelines/{pipeline}", "put"),
        ("/v1/tenants/{tenant}/pipelines/{pipeline}", "patch"),
        ("/v1/tenants/{tenant}/pipelines/{pipeline}/resume", "post"),
        ("/v1/tenants/{tenant}/usage", "get"),
        ("/v1/tenants/{tenant}/streams", "post"),
        ("/v1/tenants/{tenant}/streams/{stream}", "patch"),
        ("/v1/tenants/{tenant}/streams/{stream}/events", "post"),
        ("/v1/audit", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/v1/platform/tokens", "post"),
        ("/v1/platform/tokens", "get"),
        ("/v1/platform/tokens/{id}", "delete"),
        ("/openapi.json", "get"),
    ] {
        assert!(paths[path].get(method).is_some(), "{method} {path}");
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    assert!(
        paths.get("/metrics").is_none(),
        "/metrics is not on the API port"
    );
    for s in [
        "PipelineSpec",
        "NatsSink",
        "TenantSpec",
        "TenantQuota",
        "StreamSpec",
        "StreamStatus",
        "IngestResult",
        "Problem",
    ] {
        assert!(schemas.contains_key(s), "schema {s}");
    }
    // Every reference resolves.
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = r.split('"').next().unwrap();
        assert!(schemas.contains_key(name), "dangling $ref {name}");
    }
}
