//! Streams and ingest, in-process: kubesim as the Kubernetes API, a fresh PostgreSQL database
//! (or SQLite file) as the store, and the real NATS JetStream server on 127.0.0.1:4222, where
//! each test makes the broker stream itself, as the operator would, under a tenant name of its
//! own.

mod common;

use axum::body::Body;
use bytes::Bytes;
use common::{Answer, BrokerStream, Db, TestApp, unique_tenant};
use serde_json::{Value, json};
use sluice_api::Config;

fn stream(name: &str) -> Value {
    json!({"name": name, "spec": {"retention": {"maxAge": "24h", "maxBytes": 1048576},
        "partitions": 1, "replicas": 1}})
}

fn fields(a: &Answer) -> Vec<String> {
    a.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_string())
        .collect()
}

async fn crud(db: Db) {
    let app = TestApp::start(db).await;
    app.tenant("acme", json!({"quota": {"maxStreams": 2}}))
        .await;
    let dev = app.token("acme", "dev", "developer").await;
    let viewer = app.token("acme", "viewer", "viewer").await;
    let path = "/v1/tenants/acme/streams";

    let mut orders = stream("orders");
    orders["spec"]["schema"] = json!({"type": "object", "required": ["id"]});
    let c = app.call("POST", path, Some(&dev), Some(orders)).await;
    let c = c.ok(201);
    assert_eq!(c["spec"]["retention"]["maxAge"], "24h");
    assert_eq!(c["spec"]["schema"]["required"][0], "id");
    assert_eq!(c["deleting"], false);
    // Written to Kubernetes, labelled with its tenant.
    let kube = app.kube_streams("acme").await;
    assert_eq!(kube.len(), 1);
    assert_eq!(
        kube[0].metadata.labels.as_ref().unwrap()["sluice.dev/tenant"],
        "acme"
    );

    // Status as the operator writes it.
    app.set_stream_status(
        "acme",
        "orders",
        json!({"subject": "sluice.acme.orders.events", "messages": 3, "bytes": 300,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Provisioned",
                "message": "ok", "lastTransitionTime": "2025-01-01T00:00:00Z"}]}),
    )
    .await;
    let g = app
        .call(
            "GET",
            "/v1/tenants/acme/streams/orders",
            Some(&viewer),
            None,
        )
        .await;
    let g = g.ok(200);
    assert_eq!(g["status"]["subject"], "sluice.acme.orders.events");
    assert_eq!(g["status"]["messages"], 3);
    let rv = g["resourceVersion"].as_str().unwrap().to_string();

    // Retention by merge patch, and by replace; a stale version conflicts.
    let p = app
        .call(
            "PATCH",
            "/v1/tenants/acme/streams/orders",
            Some(&dev),
            Some(json!({"spec": {"retention": {"maxAge": "7d", "maxBytes": null}}})),
        )
        .await;
    let p = p.ok(200);
    assert_eq!(p["spec"]["retention"], json!({"maxAge": "7d"}));
    assert_eq!(p["spec"]["schema"]["required"][0], "id", "the rest is kept");
    let mut spec = p["spec"].clone();
    spec["retention"] = json!({"maxBytes": 2048});
    let r = app
        .call(
            "PUT",
            "/v1/tenants/acme/streams/orders",
            Some(&dev),
            Some(json!({"spec": spec, "resourceVersion": rv})),
        )
        .await;
    r.problem(409, "conflict");
    let r = app
        .call(
            "PUT",
            "/v1/tenants/acme/streams/orders",
            Some(&dev),
            Some(json!({"spec": spec})),
        )
        .await;
    assert_eq!(r.ok(200)["spec"]["retention"], json!({"maxBytes": 2048}));
    let a = app
        .call(
            "PATCH",
            "/v1/tenants/acme/streams/orders",
            Some(&dev),
            Some(json!({"spec": {"partitions": 4}})),
        )
        .await;
    assert_eq!(a.ok(200)["spec"]["partitions"], 4, "partitions may grow");
    let a = app
        .call(
            "PATCH",
            "/v1/tenants/acme/streams/orders",
            Some(&dev),
            Some(json!({"spec": {"partitions": 2}})),
        )
        .await;
    a.problem(422, "validation-failed");
    assert_eq!(fields(&a), ["spec.partitions"]);
    let a = app
        .call(
            "PATCH",
            "/v1/tenants/acme/streams/orders",
            Some(&dev),
            Some(json!({"spec": {"broker": "nats"}})),
        )
        .await;
    assert_eq!(a.ok(200)["spec"]["broker"], "nats");
    let a = app
        .call(
            "PATCH",
            "/v1/tenants/acme/streams/orders",
            Some(&dev),
            Some(json!({"spec": {"broker": "kafka"}})),
        )
        .await;
    a.problem(422, "validation-failed");
    assert_eq!(fields(&a), ["spec.broker"]);

    // Validation: names, retention, schema (an object, and a valid JSON Schema).
    let a = app
        .call("POST", path, Some(&dev), Some(stream("Not_DNS")))
        .await;
    a.problem(422, "validation-failed");
    assert_eq!(fields(&a), ["name"]);
    let mut bad = stream("x");
    bad["spec"]["retention"]["maxAge"] = json!("forever");
    bad["spec"]["schema"] = json!({"type": "no-such-type"});
    let a = app.call("POST", path, Some(&dev), Some(bad)).await;
    a.problem(422, "validation-failed");
    assert_eq!(fields(&a), ["spec.retention.maxAge", "spec.schema"]);
    let mut bad = stream("x");
    bad["spec"]["schema"] = json!(["not", "an", "object"]);
    let a = app.call("POST", path, Some(&dev), Some(bad)).await;
    a.problem(422, "invalid-body");
    assert_eq!(fields(&a), ["spec.schema"]);
    let mut bad = stream("x");
    bad["spec"]["colour"] = json!("red");
    let a = app.call("POST", path, Some(&dev), Some(bad)).await;
    a.problem(422, "invalid-body");
    assert_eq!(fields(&a), ["spec.colour"]);
    let a = app
        .call("POST", path, Some(&dev), Some(stream("orders")))
        .await;
    a.problem(409, "already-exists");
    // Viewers read but do not write.
    app.call("POST", path, Some(&viewer), Some(stream("x")))
        .await
        .problem(403, "forbidden");
    assert_eq!(app.kube_streams("acme").await.len(), 1);

    // maxStreams, at the door.
    app.call("POST", path, Some(&dev), Some(stream("payments")))
        .await
        .ok(201);
    let a = app
        .call("POST", path, Some(&dev), Some(stream("third")))
        .await;
    let p = a.problem(409, "quota-exceeded");
    assert_eq!(p["limit"], "maxStreams");
    assert_eq!(
        (
            p["max"].as_str(),
            p["used"].as_str(),
            p["requested"].as_str()
        ),
        (Some("2"), Some("2"), Some("1"))
    );
    let u = app
        .call("GET", "/v1/tenants/acme/usage", Some(&viewer), None)
        .await;
    assert_eq!(u.ok(200)["streams"], json!({"used": 2, "limit": 2}));

    // Cursor pagination.
    let mut seen = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let p = match &cursor {
            Some(c) => format!("{path}?limit=1&cursor={c}"),
            None => format!("{path}?limit=1"),
        };
        let page = app.call("GET", &p, Some(&viewer), None).await;
        let page = page.ok(200);
        assert!(page["items"].as_array().unwrap().len() <= 1);
        for item in page["items"].as_array().unwrap() {
            seen.push(item["name"].as_str().unwrap().to_string());
        }
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ["orders", "payments"]);

    // Delete frees the slot.
    let d = app
        .call(
            "DELETE",
            "/v1/tenants/acme/streams/payments",
            Some(&dev),
            None,
        )
        .await;
    assert!(matches!(d.status.as_u16(), 202 | 204), "{d:?}");
    app.call("GET", "/v1/tenants/acme/streams/payments", Some(&dev), None)
        .await
        .problem(404, "not-found");
    app.call(
        "DELETE",
        "/v1/tenants/acme/streams/payments",
        Some(&dev),
        None,
    )
    .await
    .problem(404, "not-found");
    app.call("POST", path, Some(&dev), Some(stream("third")))
        .await
        .ok(201);

    let audit = app
        .call(
            "GET",
            "/v1/tenants/acme/audit?limit=100",
            Some(&app.admin),
            None,
        )
        .await;
    let actions: Vec<String> = audit.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{} {}", e["action"].as_str().unwrap(), e["outcome"]))
        .collect();
    for a in [
        "stream.create \"success\"",
        "stream.create \"quota-exceeded\"",
        "stream.patch \"success\"",
        "stream.replace \"conflict\"",
        "stream.delete \"success\"",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} missing from {actions:?}"
        );
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_crud_quota_and_validation_on_postgres() {
    crud(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_crud_quota_and_validation_on_sqlite() {
    crud(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_create_is_idempotent() {
    let app = TestApp::start(Db::Postgres).await;
    app.tenant("acme", json!({})).await;
    let dev = app.token("acme", "dev", "developer").await;
    let req = |body: &Value, key: &str| {
        http::Request::builder()
            .method("POST")
            .uri("/v1/tenants/acme/streams")
            .header("authorization", format!("Bearer {dev}"))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let first = app.send(req(&stream("orders"), "k")).await;
    first.ok(201);
    let again = app.send(req(&stream("orders"), "k")).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers.get("idempotent-replayed").unwrap(), "true");
    app.send(req(&stream("other"), "k"))
        .await
        .problem(422, "idempotency-key-reused");
    assert_eq!(app.kube_streams("acme").await.len(), 1);
    app.shutdown().await;
}

/// A tenant with a stream `orders` whose schema needs `id` (a string) and a numeric `amount`,
/// provisioned on the broker.
async fn ingest_setup(app: &TestApp, prefix: &str, quota: Value) -> (String, BrokerStream) {
    let tenant = unique_tenant(prefix);
    app.tenant(&tenant, json!({"quota": quota})).await;
    let dev = app.token(&tenant, "setup", "developer").await;
    let mut s = stream("orders");
    s["spec"]["schema"] = json!({"type": "object", "required": ["id"],
        "properties": {"id": {"type": "string"}, "amount": {"type": "number"}}});
    app.call(
        "POST",
        &format!("/v1/tenants/{tenant}/streams"),
        Some(&dev),
        Some(s),
    )
    .await
    .ok(201);
    let broker = BrokerStream::create(&tenant, "orders").await;
    (tenant, broker)
}

async fn provision(app: &TestApp, tenant: &str) {
    app.set_stream_status(
        tenant,
        "orders",
        json!({"subject": sluice_core::subjects::events_subject(tenant, "orders")}),
    )
    .await;
}

/// A body sent in the given pieces (as a client streaming it would).
fn chunked(pieces: &[&str]) -> Body {
    let chunks: Vec<Result<Bytes, std::io::Error>> = pieces
        .iter()
        .map(|p| Ok(Bytes::copy_from_slice(p.as_bytes())))
        .collect();
    Body::from_stream(futures::stream::iter(chunks))
}

async fn ingest(db: Db) {
    let app = TestApp::start_ingest(db, Config::default()).await;
    let (tenant, broker) = ingest_setup(&app, "ing", json!({})).await;
    let producer = app.token(&tenant, "producer", "producer").await;
    let viewer = app.token(&tenant, "viewer", "viewer").await;
    let dev = app.token(&tenant, "dev", "developer").await;
    let events = format!("/v1/tenants/{tenant}/streams/orders/events");

    // Not provisioned yet: 409, nothing written.
    app.post_body(
        &events,
        &producer,
        "application/json",
        Body::from(r#"{"id": "a"}"#),
    )
    .await
    .problem(409, "stream-not-ready");
    provision(&app, &tenant).await;

    // One event.
    let a = app
        .post_body(
            &events,
            &producer,
            "application/json",
            Body::from(r#"{"id": "e0", "amount": 1}"#),
        )
        .await;
    assert_eq!(
        a.ok(202),
        &json!({"accepted": 1, "rejected": [], "rejectedCount": 0})
    );
    // The 202 came after the broker's acknowledgement: the event is there now.
    assert_eq!(broker.messages().await, 1);

    // An array, one of them against the schema, one not an object.
    let a = app
        .post_body(
            &events,
            &dev,
            "application/json",
            Body::from(r#"[{"id": "e1"}, {"id": 7}, {"id": "e2", "amount": 2.5}, "x"]"#),
        )
        .await;
    let a = a.ok(202);
    assert_eq!(a["accepted"], 2);
    let rejected = a["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0]["index"], 1);
    assert!(
        rejected[0]["error"].as_str().unwrap().contains("/id"),
        "{a}"
    );
    assert_eq!(rejected[1]["index"], 3);
    assert_eq!(broker.messages().await, 3);

    // NDJSON, streamed in pieces that cut lines anywhere; a blank line does not count.
    let a = app
        .post_body(
            &events,
            &producer,
            "application/x-ndjson",
            chunked(&[
                "{\"id\": \"e3\"}\n{\"id\"",
                ": \"e4\", \"amount\": 4}\n\n{\"amount\": 5}\n{not json}\n",
                "{\"id\": \"e5\"}",
            ]),
        )
        .await;
    let a = a.ok(202);
    assert_eq!(a["accepted"], 3, "{a}");
    let idx: Vec<_> = a["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, [2, 3]);
    assert!(
        a["rejected"][0]["error"]
            .as_str()
            .unwrap()
            .contains("\"id\" is a required property"),
        "{a}"
    );
    assert!(
        a["rejected"][1]["error"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );

    // Every accepted event, in order, exactly once, read back from JetStream.
    assert_eq!(broker.messages().await, 6);
    // Ingest has its own body limit (8 MiB by default), above the API's 256 KiB.
    let big: String = (0..1500)
        .map(|i| {
            format!(
                "{{\"id\": \"big-{i}\", \"pad\": \"{}\"}}\n",
                "p".repeat(180)
            )
        })
        .collect();
    assert!(big.len() > Config::default().max_body_bytes);
    let a = app
        .post_body(&events, &producer, "application/x-ndjson", Body::from(big))
        .await;
    assert_eq!(a.ok(202)["accepted"], 1500);
    assert_eq!(broker.messages().await, 1506);
    let ids: Vec<_> = broker
        .payloads(6)
        .await
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["e0", "e1", "e2", "e3", "e4", "e5"]);

    // Roles: a viewer cannot ingest; a producer can ingest but not read.
    app.post_body(
        &events,
        &viewer,
        "application/json",
        Body::from(r#"{"id": "v"}"#),
    )
    .await
    .problem(403, "forbidden");
    for path in ["pipelines", "streams", "streams/orders", "usage"] {
        app.call(
            "GET",
            &format!("/v1/tenants/{tenant}/{path}"),
            Some(&producer),
            None,
        )
        .await
        .problem(403, "forbidden");
    }
    // Missing stream, media type, malformed JSON.
    app.post_body(
        &format!("/v1/tenants/{tenant}/streams/nope/events"),
        &producer,
        "application/json",
        Body::from(r#"{"id": "x"}"#),
    )
    .await
    .problem(404, "not-found");
    app.post_body(&events, &producer, "text/plain", Body::from("{}"))
        .await
        .problem(415, "unsupported-media-type");
    app.post_body(
        &events,
        &producer,
        "application/json",
        Body::from("[{\"id\": \"x\"},"),
    )
    .await
    .problem(400, "malformed-json");
    assert_eq!(broker.messages().await, 1506);

    // A schema change through the API applies to the next request at once.
    app.call(
        "PATCH",
        &format!("/v1/tenants/{tenant}/streams/orders"),
        Some(&dev),
        Some(json!({"spec": {"schema": {"type": "object", "required": ["sku"]}}})),
    )
    .await
    .ok(200);
    provision(&app, &tenant).await;
    let a = app
        .post_body(
            &events,
            &producer,
            "application/json",
            Body::from(r#"[{"id": "e6"}, {"sku": "s1"}]"#),
        )
        .await;
    let a = a.ok(202);
    assert_eq!(a["accepted"], 1);
    assert_eq!(a["rejected"][0]["index"], 0);
    assert_eq!(broker.messages().await, 1507);

    // Metrics, per tenant and stream.
    let m = app.metrics().await;
    let line = |outcome: &str, n: u64| {
        format!(
            "sluice_api_ingest_events_total{{outcome=\"{outcome}\",stream=\"orders\",tenant=\"{tenant}\"}} {n}"
        )
    };
    assert!(m.contains(&line("accepted", 1507)), "{m}");
    assert!(m.contains(&line("rejected", 5)), "{m}");

    // Metering: pending counts show at once, and reach the usage table on flush.
    let u = app
        .call(
            "GET",
            &format!("/v1/tenants/{tenant}/usage"),
            Some(&dev),
            None,
        )
        .await;
    let u = u.ok(200);
    assert_eq!(u["ingest"]["total"]["events"], 1507, "{u}");
    assert!(app.state.flush_usage().await.unwrap() >= 1);
    let tenant_id = app
        .db
        .store
        .tenant_by_name(&sluice_api::TenantName::parse(&tenant).unwrap())
        .await
        .unwrap()
        .unwrap()
        .id;
    let rows = app.db.store.ingest_usage(&tenant_id).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.events).sum::<i64>(), 1507);
    let stored_bytes: i64 = rows.iter().map(|r| r.bytes).sum();
    assert!(
        rows.iter()
            .all(|r| r.stream == "orders" && r.minute % 60_000 == 0)
    );
    assert!(
        m.contains(&format!(
            "sluice_api_ingest_bytes_total{{stream=\"orders\",tenant=\"{tenant}\"}} {stored_bytes}"
        )),
        "{m}"
    );
    let u = app
        .call(
            "GET",
            &format!("/v1/tenants/{tenant}/usage"),
            Some(&dev),
            None,
        )
        .await;
    let u = u.ok(200);
    assert_eq!(u["ingest"]["total"]["events"], 1507, "{u}");
    assert_eq!(u["ingest"]["total"]["bytes"], stored_bytes);
    assert_eq!(u["ingest"]["lastHour"]["events"], 1507);
    assert_eq!(u["ingest"]["streams"][0]["stream"], "orders");
    assert_eq!(u["ingest"]["streams"][0]["total"]["events"], 1507);
    // A second flush adds to the same minute rather than writing it again.
    app.post_body(
        &events,
        &producer,
        "application/json",
        Body::from(r#"{"sku": "s2"}"#),
    )
    .await
    .ok(202);
    app.state.flush_usage().await.unwrap();
    let rows = app.db.store.ingest_usage(&tenant_id).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.events).sum::<i64>(), 1508);
    broker.delete().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_json_array_and_ndjson_on_postgres() {
    ingest(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_json_array_and_ndjson_on_sqlite() {
    ingest(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_limits_write_nothing_when_they_refuse() {
    let config = Config {
        ingest_max_body_bytes: 2048,
        ..Config::default()
    };
    let app = TestApp::start_ingest(Db::Postgres, config).await;
    // One event per second, ten at once.
    let (tenant, broker) = ingest_setup(
        &app,
        "lim",
        json!({"ingest": {"eventsPerSecond": 1, "burst": 10, "bytesPerSecond": 1000000}}),
    )
    .await;
    provision(&app, &tenant).await;
    let producer = app.token(&tenant, "producer", "producer").await;
    let events = format!("/v1/tenants/{tenant}/streams/orders/events");
    let ndjson = |n: usize| -> String {
        (0..n)
            .map(|i| format!("{{\"id\": \"e{i}\"}}\n"))
            .collect::<String>()
    };

    // Eight of the ten fit; five more do not, and none of them is written.
    app.post_body(
        &events,
        &producer,
        "application/x-ndjson",
        Body::from(ndjson(8)),
    )
    .await
    .ok(202);
    assert_eq!(broker.messages().await, 8);
    let a = app
        .post_body(
            &events,
            &producer,
            "application/x-ndjson",
            Body::from(ndjson(5)),
        )
        .await;
    a.problem(429, "rate-limited");
    let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3).contains(&retry), "Retry-After {retry}");
    assert_eq!(broker.messages().await, 8);
    // More than the burst can ever hold: refused for good, not "wait".
    let a = app
        .post_body(
            &events,
            &producer,
            "application/x-ndjson",
            Body::from(ndjson(11)),
        )
        .await;
    a.problem(413, "payload-too-large");
    assert!(a.headers.get("retry-after").is_none());
    assert_eq!(broker.messages().await, 8);
    // The refused request took no tokens: two still fit.
    app.post_body(
        &events,
        &producer,
        "application/x-ndjson",
        Body::from(ndjson(2)),
    )
    .await
    .ok(202);
    assert_eq!(broker.messages().await, 10);
    let m = app.metrics().await;
    assert!(
        m.contains(&format!(
            "sluice_api_ingest_events_total{{outcome=\"rate_limited\",stream=\"orders\",tenant=\"{tenant}\"}} 16"
        )),
        "{m}"
    );

    // Too large: declared (refused before reading), and streamed without a length (reading
    // stops past the limit). Nothing is written.
    let big = format!("{{\"id\": \"{}\"}}", "x".repeat(3000));
    app.post_body(
        &events,
        &producer,
        "application/json",
        Body::from(big.clone()),
    )
    .await
    .problem(413, "payload-too-large");
    let pieces: Vec<String> = (0..40).map(|_| ndjson(5)).collect();
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    app.post_body(&events, &producer, "application/x-ndjson", chunked(&refs))
        .await
        .problem(413, "payload-too-large");
    assert_eq!(broker.messages().await, 10);
    broker.delete().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_failure_is_503_and_returns_the_tokens() {
    let app = TestApp::start_ingest(Db::Postgres, Config::default()).await;
    let (tenant, broker) = ingest_setup(
        &app,
        "fail",
        json!({"ingest": {"eventsPerSecond": 1, "burst": 3}}),
    )
    .await;
    // A subject no JetStream stream holds: the broker answers "no responders".
    app.set_stream_status(
        &tenant,
        "orders",
        json!({"subject": format!("sluice.{tenant}.nowhere.events")}),
    )
    .await;
    let producer = app.token(&tenant, "producer", "producer").await;
    let events = format!("/v1/tenants/{tenant}/streams/orders/events");
    for _ in 0..3 {
        // Three failures of three events each: without refunds the second would be a 429.
        let a = app
            .post_body(
                &events,
                &producer,
                "application/json",
                Body::from(r#"[{"id": "a"}, {"id": "b"}, {"id": "c"}]"#),
            )
            .await;
        let p = a.problem(503, "broker-unavailable");
        assert!(p["detail"].as_str().unwrap().contains("retry"));
        assert!(a.headers.contains_key("retry-after"), "{:?}", a.headers);
    }
    assert_eq!(broker.messages().await, 0);
    broker.delete().await;

    // Without a broker configured at all, ingest is 503 too.
    let bare = TestApp::start(Db::Sqlite).await;
    bare.tenant("acme", json!({})).await;
    let p = bare.token("acme", "p", "producer").await;
    bare.post_body(
        "/v1/tenants/acme/streams/orders/events",
        &p,
        "application/json",
        Body::from("{}"),
    )
    .await
    .problem(503, "broker-unavailable");
    bare.shutdown().await;
    app.shutdown().await;
}
