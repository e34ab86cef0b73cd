//! Protocol-level behaviour of kubesim over real HTTP on loopback: what a client sees on the
//! wire (status codes, Status bodies, watch streams, headers), checked against what a real
//! kube-apiserver answers.
//!
//! The HTTP client is a small HTTP/1.1 implementation over `tokio::net::TcpStream`: every
//! request is sent with `Connection: close`; chunked bodies (watches) are read chunk by chunk
//! and split into lines.

use kubesim::persist::DirStore;
use kubesim::{Cluster, ClusterConfig, Server, ServerConfig};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// How long a test waits for something that should arrive before failing (a safety net against
/// hanging, never a performance assertion).
const PATIENCE: Duration = Duration::from_secs(20);

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
const MERGE: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";
const STRATEGIC: &str = "application/strategic-merge-patch+json";
const APPLY: &str = "application/apply-patch+yaml";

const WIDGETS: &str = "/apis/test.kubesim.dev/v1";

// ---------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 client.

/// One HTTP response.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).into_iter().next()
    }
}

/// A request to send.
struct Req<'a> {
    method: &'a str,
    path: &'a str,
    content_type: Option<&'a str>,
    accept: Option<&'a str>,
    body: Option<Vec<u8>>,
}

async fn send_head(
    addr: std::net::SocketAddr,
    req: &Req<'_>,
) -> std::io::Result<BufReader<TcpStream>> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: protocol-test/1.0\r\n",
        req.method, req.path
    );
    if let Some(ct) = req.content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if let Some(a) = req.accept {
        head.push_str(&format!("Accept: {a}\r\n"));
    }
    let body = req.body.clone().unwrap_or_default();
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.flush().await?;
    Ok(BufReader::new(stream))
}

/// Reads the status line and headers.
async fn read_head(r: &mut BufReader<TcpStream>) -> std::io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    r.read_line(&mut line).await?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = vec![];
    loop {
        line.clear();
        r.read_line(&mut line).await?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok((status, headers))
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    })
}

/// Reads one chunk of a chunked body; `None` at the last chunk.
async fn read_chunk(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = String::new();
    if r.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let size_text = line.trim().split(';').next().unwrap_or("").to_string();
    let size = usize::from_str_radix(&size_text, 16)
        .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
    if size == 0 {
        return Ok(None);
    }
    let mut data = vec![0; size + 2];
    r.read_exact(&mut data).await?;
    data.truncate(size);
    Ok(Some(data))
}

async fn roundtrip(addr: std::net::SocketAddr, req: Req<'_>) -> std::io::Result<Resp> {
    let mut r = send_head(addr, &req).await?;
    let (status, headers) = read_head(&mut r).await?;
    let mut body = vec![];
    if is_chunked(&headers) {
        while let Some(chunk) = read_chunk(&mut r).await? {
            body.extend(chunk);
        }
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.resize(len, 0);
        r.read_exact(&mut body).await?;
    } else {
        r.read_to_end(&mut body).await?;
    }
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// An open watch stream.
struct Watch {
    status: u16,
    reader: BufReader<TcpStream>,
    pending: Vec<u8>,
    ended: bool,
}

impl Watch {
    /// The next event, or `None` once the server ended the stream. Panics when nothing arrives
    /// within [`PATIENCE`].
    async fn next(&mut self) -> Option<Value> {
        tokio::time::timeout(PATIENCE, self.next_inner())
            .await
            .expect("the watch sent nothing in time")
    }

    async fn next_inner(&mut self) -> Option<Value> {
        loop {
            if let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line);
                if text.trim().is_empty() {
                    continue;
                }
                return Some(serde_json::from_str(text.trim()).expect("watch line is JSON"));
            }
            if self.ended {
                return None;
            }
            match read_chunk(&mut self.reader).await {
                Ok(Some(chunk)) => self.pending.extend(chunk),
                _ => self.ended = true,
            }
        }
    }

    /// The next event that is not a periodic BOOKMARK.
    async fn next_change(&mut self) -> Value {
        loop {
            let e = self.next().await.expect("the watch ended");
            if e["type"] != "BOOKMARK" {
                return e;
            }
        }
    }
}

/// A running server with helpers for the requests the tests make.
struct Sim {
    server: Server,
}

impl Sim {
    async fn start() -> Sim {
        Self::start_on(Cluster::new()).await
    }

    async fn start_on(cluster: Arc<Cluster>) -> Sim {
        let server = Server::start(cluster, "127.0.0.1:0".parse().expect("address"))
            .await
            .expect("server starts");
        Sim { server }
    }

    async fn with_bookmarks(every: Duration) -> Sim {
        let server = Server::start_with(
            Cluster::new(),
            ServerConfig {
                bookmark_interval: every,
                ..Default::default()
            },
        )
        .await
        .expect("server starts");
        Sim { server }
    }

    fn cluster(&self) -> &Arc<Cluster> {
        self.server.cluster()
    }

    async fn send(&self, req: Req<'_>) -> Resp {
        roundtrip(self.server.addr(), req)
            .await
            .expect("HTTP round trip")
    }

    async fn get(&self, path: &str) -> Resp {
        self.get_as(path, "application/json").await
    }

    async fn get_as(&self, path: &str, accept: &str) -> Resp {
        self.send(Req {
            method: "GET",
            path,
            content_type: None,
            accept: Some(accept),
            body: None,
        })
        .await
    }

    async fn write(&self, method: &str, path: &str, content_type: &str, body: &Value) -> Resp {
        self.send(Req {
            method,
            path,
            content_type: Some(content_type),
            accept: Some("application/json"),
            body: Some(serde_json::to_vec(body).expect("JSON")),
        })
        .await
    }

    async fn post(&self, path: &str, body: &Value) -> Resp {
        self.write("POST", path, "application/json", body).await
    }

    async fn put(&self, path: &str, body: &Value) -> Resp {
        self.write("PUT", path, "application/json", body).await
    }

    async fn patch(&self, path: &str, content_type: &str, body: &Value) -> Resp {
        self.write("PATCH", path, content_type, body).await
    }

    async fn delete(&self, path: &str) -> Resp {
        self.send(Req {
            method: "DELETE",
            path,
            content_type: None,
            accept: Some("application/json"),
            body: None,
        })
        .await
    }

    async fn delete_with(&self, path: &str, options: &Value) -> Resp {
        self.write("DELETE", path, "application/json", options)
            .await
    }

    /// Creates an object and returns it (panics unless `201`).
    async fn create(&self, collection: &str, body: &Value) -> Value {
        let r = self.post(collection, body).await;
        assert_eq!(r.status, 201, "create {collection}: {}", r.json());
        r.json()
    }

    async fn watch(&self, path: &str) -> Watch {
        let req = Req {
            method: "GET",
            path,
            content_type: None,
            accept: Some("application/json"),
            body: None,
        };
        let mut reader = send_head(self.server.addr(), &req)
            .await
            .expect("watch request");
        let (status, headers) = read_head(&mut reader).await.expect("watch head");
        assert!(
            is_chunked(&headers) || status != 200,
            "a watch answers with a chunked body: {headers:?}"
        );
        Watch {
            status,
            reader,
            pending: vec![],
            ended: false,
        }
    }

    async fn namespace(&self, name: &str) {
        self.create(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        )
        .await;
    }

    async fn configmap(&self, ns: &str, name: &str, labels: Value) -> Value {
        self.create(
            &format!("/api/v1/namespaces/{ns}/configmaps"),
            &json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
        )
        .await
    }
}

fn rv(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no resourceVersion in {obj}"))
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            i["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// A namespaced custom resource type with status and scale subresources, printer columns, a
/// schema with defaults and limits, and a CEL rule.
fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.test.kubesim.dev"},
        "spec": {
            "group": "test.kubesim.dev",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                      "listKind": "WidgetList", "shortNames": ["wd"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {
                    "status": {},
                    "scale": {"specReplicasPath": ".spec.replicas",
                              "statusReplicasPath": ".status.replicas",
                              "labelSelectorPath": ".status.selector"}
                },
                "additionalPrinterColumns": [
                    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                    {"name": "Color", "type": "string", "jsonPath": ".spec.color", "priority": 1},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "x-kubernetes-validations": [
                                {"rule": "self.replicas <= 10", "message": "replicas must be at most 10"}
                            ],
                            "properties": {
                                "replicas": {"type": "integer", "minimum": 0, "default": 1},
                                "color": {"type": "string", "enum": ["red", "green", "blue"]},
                                "note": {"type": "string", "maxLength": 20}
                            }
                        },
                        "status": {
                            "type": "object",
                            "properties": {
                                "replicas": {"type": "integer"},
                                "selector": {"type": "string"},
                                "phase": {"type": "string"}
                            }
                        }
                    }
                }}
            }]
        }
    })
}

/// A cluster-scoped custom resource type without subresources (status is part of the main
/// resource, so status changes move `generation`).
fn gadget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.test.kubesim.dev"},
        "spec": {
            "group": "test.kubesim.dev",
            "scope": "Cluster",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    }
                }}
            }]
        }
    })
}

async fn sim_with_widgets() -> Sim {
    let sim = Sim::start().await;
    sim.cluster()
        .apply_object(&widget_crd(), "test")
        .expect("CRD installs");
    sim
}

fn widget(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "test.kubesim.dev/v1", "kind": "Widget",
           "metadata": {"name": name}, "spec": spec})
}

fn widgets_in(ns: &str) -> String {
    format!("{WIDGETS}/namespaces/{ns}/widgets")
}

fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [
                    {"name": "app", "image": "app:1"},
                    {"name": "sidecar", "image": "sidecar:1"}
                ]}
            }
        }
    })
}

fn owner_ref(owner: &Value, kind: &str, api_version: &str) -> Value {
    json!({"apiVersion": api_version, "kind": kind,
           "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
           "blockOwnerDeletion": true})
}

// ---------------------------------------------------------------------------------------------
// Watch.

#[tokio::test]
async fn watch_with_bookmarks_allowed_gets_bookmarks() -> TestResult {
    let sim = Sim::with_bookmarks(Duration::from_millis(100)).await;
    let cm = sim.configmap("default", "a", json!({})).await;
    let mut w = sim
        .watch("/api/v1/namespaces/default/configmaps?watch=true&allowWatchBookmarks=true")
        .await;
    assert_eq!(w.status, 200);
    // No resourceVersion: the current objects come first as ADDED.
    let first = w.next().await.expect("event");
    assert_eq!(first["type"], "ADDED");
    assert_eq!(first["object"]["metadata"]["name"], "a");
    let bookmark = w.next().await.expect("event");
    assert_eq!(bookmark["type"], "BOOKMARK", "{bookmark}");
    assert_eq!(bookmark["object"]["kind"], "ConfigMap");
    assert_eq!(bookmark["object"]["apiVersion"], "v1");
    assert!(rv(&bookmark["object"]) >= rv(&cm));

    // Without allowWatchBookmarks, the first thing after the initial state is a real change.
    let mut plain = sim
        .watch("/api/v1/namespaces/default/configmaps?watch=true")
        .await;
    assert_eq!(plain.next().await.expect("event")["type"], "ADDED");
    sim.configmap("default", "b", json!({})).await;
    let e = plain.next().await.expect("event");
    assert_eq!(e["type"], "ADDED", "{e}");
    assert_eq!(e["object"]["metadata"]["name"], "b");
    Ok(())
}

#[tokio::test]
async fn watch_list_sends_initial_events_then_a_bookmark_then_changes() -> TestResult {
    let sim = Sim::start().await;
    sim.configmap("default", "a", json!({})).await;
    let b = sim.configmap("default", "b", json!({})).await;
    let mut w = sim
        .watch(
            "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true\
             &resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
        )
        .await;
    assert_eq!(w.status, 200);
    let mut seen = vec![];
    for _ in 0..2 {
        let e = w.next().await.expect("event");
        assert_eq!(e["type"], "ADDED", "{e}");
        seen.push(
            e["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
    }
    seen.sort();
    assert_eq!(seen, ["a", "b"]);
    let end = w.next().await.expect("event");
    assert_eq!(end["type"], "BOOKMARK", "{end}");
    assert_eq!(
        end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert!(rv(&end["object"]) >= rv(&b));
    sim.configmap("default", "c", json!({})).await;
    let e = w.next_change().await;
    assert_eq!(e["type"], "ADDED");
    assert_eq!(e["object"]["metadata"]["name"], "c");

    // sendInitialEvents needs resourceVersionMatch=NotOlderThan.
    let bad = sim
        .get("/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true&allowWatchBookmarks=true")
        .await;
    assert_eq!(bad.status, 422, "{}", bad.json());
    assert_eq!(bad.json()["reason"], "Invalid");
    Ok(())
}

#[tokio::test]
async fn watch_from_a_resource_version_sends_only_later_changes() -> TestResult {
    let sim = Sim::start().await;
    let a = sim.configmap("default", "a", json!({})).await;
    sim.configmap("default", "b", json!({})).await;
    let mut w = sim
        .watch(&format!(
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={}",
            rv(&a)
        ))
        .await;
    let e = w.next().await.expect("event");
    assert_eq!(e["type"], "ADDED");
    assert_eq!(e["object"]["metadata"]["name"], "b", "a is not replayed");
    let r = sim
        .patch(
            "/api/v1/namespaces/default/configmaps/a",
            MERGE,
            &json!({"data": {"k": "changed"}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let e = w.next().await.expect("event");
    assert_eq!(e["type"], "MODIFIED");
    assert_eq!(e["object"]["data"]["k"], "changed");
    assert_eq!(rv(&e["object"]), rv(&r.json()));
    let r = sim.delete("/api/v1/namespaces/default/configmaps/b").await;
    assert_eq!(r.status, 200);
    let e = w.next().await.expect("event");
    assert_eq!(e["type"], "DELETED");
    assert_eq!(e["object"]["metadata"]["name"], "b");

    // kubectl's single-object watch: resourceVersion=0 and a name selector start with the
    // object's current state.
    let mut one = sim
        .watch("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0&fieldSelector=metadata.name%3Da")
        .await;
    let e = one.next().await.expect("event");
    assert_eq!(e["type"], "ADDED");
    assert_eq!(e["object"]["data"]["k"], "changed");
    Ok(())
}

#[tokio::test]
async fn watch_from_a_compacted_version_gets_an_expired_error_event() -> TestResult {
    let sim = Sim::start().await;
    let a = sim.configmap("default", "a", json!({})).await;
    sim.configmap("default", "b", json!({})).await;
    sim.cluster().compact();
    sim.configmap("default", "c", json!({})).await;
    let mut w = sim
        .watch(&format!(
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={}",
            rv(&a)
        ))
        .await;
    assert_eq!(
        w.status, 200,
        "an expired watch is a 200 with an ERROR event"
    );
    let e = w.next().await.expect("event");
    assert_eq!(e["type"], "ERROR", "{e}");
    assert_eq!(e["object"]["kind"], "Status");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");
    assert!(
        e["object"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("too old resource version"),
        "{e}"
    );
    assert!(w.next().await.is_none(), "the stream ends after the error");
    Ok(())
}

#[tokio::test]
async fn watch_timeout_seconds_closes_the_stream() -> TestResult {
    let sim = Sim::start().await;
    let mut w = sim
        .watch("/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1")
        .await;
    assert_eq!(w.status, 200);
    assert!(w.next().await.is_none(), "the server ends the watch");
    Ok(())
}

#[tokio::test]
async fn label_selector_watch_turns_label_changes_into_added_and_deleted() -> TestResult {
    let sim = Sim::start().await;
    let mut w = sim
        .watch("/api/v1/namespaces/default/configmaps?watch=true&labelSelector=app%3Dweb")
        .await;
    sim.configmap("default", "x", json!({"app": "db"})).await;
    sim.patch(
        "/api/v1/namespaces/default/configmaps/x",
        MERGE,
        &json!({"metadata": {"labels": {"app": "web"}}}),
    )
    .await;
    let e = w.next().await.expect("event");
    assert_eq!(e["type"], "ADDED", "starts matching: {e}");
    assert_eq!(e["object"]["metadata"]["labels"]["app"], "web");
    sim.patch(
        "/api/v1/namespaces/default/configmaps/x",
        MERGE,
        &json!({"data": {"k": "2"}}),
    )
    .await;
    assert_eq!(w.next().await.expect("event")["type"], "MODIFIED");
    sim.patch(
        "/api/v1/namespaces/default/configmaps/x",
        MERGE,
        &json!({"metadata": {"labels": {"app": "other"}}}),
    )
    .await;
    let e = w.next().await.expect("event");
    assert_eq!(e["type"], "DELETED", "stops matching: {e}");
    sim.delete("/api/v1/namespaces/default/configmaps/x").await;
    sim.configmap("default", "y", json!({"app": "web"})).await;
    let e = w.next().await.expect("event");
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("y")),
        "the deletion of a non-matching object is not sent"
    );
    Ok(())
}

#[tokio::test]
async fn namespace_scoped_watch_sees_only_its_namespace() -> TestResult {
    let sim = Sim::start().await;
    sim.namespace("one").await;
    sim.namespace("two").await;
    let mut w = sim
        .watch("/api/v1/namespaces/one/configmaps?watch=true")
        .await;
    let mut all = sim.watch("/api/v1/configmaps?watch=true").await;
    sim.configmap("two", "in-two", json!({})).await;
    sim.configmap("one", "in-one", json!({})).await;
    let e = w.next().await.expect("event");
    assert_eq!(e["object"]["metadata"]["name"], "in-one");
    assert_eq!(e["object"]["metadata"]["namespace"], "one");
    let e = all.next().await.expect("event");
    assert_eq!(e["object"]["metadata"]["name"], "in-two");
    let e = all.next().await.expect("event");
    assert_eq!(e["object"]["metadata"]["name"], "in-one");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// List.

#[tokio::test]
async fn list_pages_with_limit_and_continue() -> TestResult {
    let sim = Sim::start().await;
    for n in ["c", "a", "e", "b", "d"] {
        sim.configmap("default", n, json!({})).await;
    }
    let mut collected = vec![];
    let mut path = "/api/v1/namespaces/default/configmaps?limit=2".to_string();
    let mut pages = 0;
    loop {
        let r = sim.get(&path).await;
        assert_eq!(r.status, 200);
        let list = r.json();
        assert_eq!(list["kind"], "ConfigMapList");
        assert!(list["items"].as_array().expect("items").len() <= 2);
        collected.extend(names(&list));
        pages += 1;
        match list["metadata"]["continue"].as_str() {
            Some(c) if !c.is_empty() => {
                let remaining = list["metadata"]["remainingItemCount"].as_u64();
                assert_eq!(remaining, Some(5 - collected.len() as u64));
                path = format!("/api/v1/namespaces/default/configmaps?limit=2&continue={c}");
            }
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(collected, ["a", "b", "c", "d", "e"]);
    let bad = sim
        .get("/api/v1/namespaces/default/configmaps?limit=2&continue=garbage")
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["reason"], "BadRequest");
    Ok(())
}

#[tokio::test]
async fn list_label_selector_forms() -> TestResult {
    let sim = Sim::start().await;
    sim.configmap("default", "a", json!({"tier": "front"}))
        .await;
    sim.configmap("default", "b", json!({"tier": "back"})).await;
    sim.configmap("default", "c", json!({"tier": "cache", "env": "prod"}))
        .await;
    sim.configmap("default", "d", json!({"env": "prod"})).await;
    let list = |sel: &'static str| {
        let sim = &sim;
        async move {
            let r = sim
                .get(&format!(
                    "/api/v1/namespaces/default/configmaps?labelSelector={}",
                    urlencode(sel)
                ))
                .await;
            assert_eq!(r.status, 200, "{sel}: {}", r.json());
            names(&r.json())
        }
    };
    assert_eq!(list("tier in (front,back)").await, ["a", "b"]);
    assert_eq!(list("tier notin (front)").await, ["b", "c", "d"]);
    assert_eq!(list("!tier").await, ["d"]);
    assert_eq!(list("tier").await, ["a", "b", "c"]);
    assert_eq!(list("tier!=back,env=prod").await, ["c", "d"]);
    assert_eq!(list("env==prod,tier in (cache)").await, ["c"]);
    let bad = sim
        .get("/api/v1/namespaces/default/configmaps?labelSelector=tier%20in%20front")
        .await;
    assert_eq!(bad.status, 400);
    Ok(())
}

#[tokio::test]
async fn list_field_selectors_on_name_and_namespace() -> TestResult {
    let sim = sim_with_widgets().await;
    sim.namespace("one").await;
    sim.namespace("two").await;
    for (ns, n) in [("one", "w1"), ("one", "w2"), ("two", "w1")] {
        sim.create(&widgets_in(ns), &widget(n, json!({"replicas": 1})))
            .await;
    }
    let get = |q: &'static str| {
        let sim = &sim;
        async move {
            let r = sim
                .get(&format!("{WIDGETS}/widgets?fieldSelector={}", urlencode(q)))
                .await;
            (r.status, r.json())
        }
    };
    let (status, list) = get("metadata.name=w1").await;
    assert_eq!(status, 200);
    let nss: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["metadata"]["namespace"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(nss, ["one", "two"]);
    let (_, list) = get("metadata.namespace=one").await;
    assert_eq!(names(&list), ["w1", "w2"]);
    let (_, list) = get("metadata.namespace=one,metadata.name!=w1").await;
    assert_eq!(names(&list), ["w2"]);
    // Custom resources support only metadata.name and metadata.namespace (and the CRD's
    // selectableFields).
    let (status, body) = get("spec.color=red").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["message"], "field label not supported: spec.color");
    Ok(())
}

#[tokio::test]
async fn list_as_table_uses_the_crd_printer_columns() -> TestResult {
    let sim = sim_with_widgets().await;
    let created = sim
        .create(
            &widgets_in("default"),
            &widget("w1", json!({"replicas": 3, "color": "red"})),
        )
        .await;
    let r = sim.get_as(&widgets_in("default"), TABLE).await;
    assert_eq!(r.status, 200);
    let t = r.json();
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    let cols: Vec<(&str, i64)> = t["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or(""),
                c["priority"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        cols,
        [("Name", 0), ("Replicas", 0), ("Color", 1), ("Age", 0)]
    );
    assert_eq!(t["columnDefinitions"][0]["format"], "name");
    let row = &t["rows"][0];
    assert_eq!(row["cells"][0], "w1");
    assert_eq!(row["cells"][1], 3);
    assert_eq!(row["cells"][2], "red");
    assert!(row["cells"][3].is_string());
    assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(row["object"]["metadata"]["namespace"], "default");
    assert!(
        rv(&t) >= rv(&created),
        "a Table carries the list's resourceVersion"
    );

    // A plain list carries the resourceVersion of the whole collection.
    let list = sim.get(&widgets_in("default")).await.json();
    assert_eq!(list["kind"], "WidgetList");
    assert_eq!(list["apiVersion"], "test.kubesim.dev/v1");
    assert_eq!(rv(&list), sim.cluster().resource_version());
    assert!(rv(&list) >= rv(&created));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Create.

#[tokio::test]
async fn create_fills_in_system_metadata() -> TestResult {
    let sim = sim_with_widgets().await;
    let made = sim
        .create(
            &widgets_in("default"),
            &json!({"apiVersion": "test.kubesim.dev/v1", "kind": "Widget",
                    "metadata": {"generateName": "gen-", "uid": "mine", "generation": 7},
                    "spec": {}}),
        )
        .await;
    let name = made["metadata"]["name"].as_str().expect("name");
    assert!(
        name.starts_with("gen-") && name.len() == "gen-".len() + 5,
        "{name}"
    );
    assert_ne!(made["metadata"]["uid"], "mine");
    assert_eq!(made["metadata"]["uid"].as_str().map(str::len), Some(36));
    assert_eq!(made["metadata"]["generation"], 1);
    assert!(
        chrono::DateTime::parse_from_rfc3339(
            made["metadata"]["creationTimestamp"].as_str().unwrap_or("")
        )
        .is_ok()
    );
    assert_eq!(made["spec"]["replicas"], 1, "schema default applied");
    assert_eq!(made["metadata"]["namespace"], "default");
    let got = sim.get(&format!("{}/{name}", widgets_in("default"))).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["metadata"]["uid"], made["metadata"]["uid"]);

    // Creating the same name again is AlreadyExists.
    let again = sim
        .post(&widgets_in("default"), &widget(name, json!({})))
        .await;
    assert_eq!(again.status, 409);
    assert_eq!(again.json()["reason"], "AlreadyExists");
    assert_eq!(
        again.json()["message"],
        format!("widgets.test.kubesim.dev \"{name}\" already exists")
    );
    Ok(())
}

#[tokio::test]
async fn create_dry_run_stores_nothing() -> TestResult {
    let sim = Sim::start().await;
    let before = sim.cluster().resource_version();
    let r = sim
        .post(
            "/api/v1/namespaces/default/configmaps?dryRun=All",
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dry"}}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["metadata"]["name"], "dry");
    assert_eq!(
        sim.get("/api/v1/namespaces/default/configmaps/dry")
            .await
            .status,
        404
    );
    assert_eq!(sim.cluster().resource_version(), before);
    Ok(())
}

#[tokio::test]
async fn create_checks_the_namespace() -> TestResult {
    let sim = sim_with_widgets().await;
    // A body naming another namespace.
    let r = sim
        .post(
            "/api/v1/namespaces/default/configmaps",
            &json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "x", "namespace": "elsewhere"}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "the namespace of the provided object does not match the namespace sent on the request"
    );
    // A namespace that does not exist.
    let r = sim
        .post(
            "/api/v1/namespaces/nope/configmaps",
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["reason"], "NotFound");
    assert_eq!(r.json()["message"], "namespaces \"nope\" not found");
    // A terminating namespace (a finalizer on its content keeps it).
    sim.namespace("closing").await;
    sim.create(
        &widgets_in("closing"),
        &json!({"apiVersion": "test.kubesim.dev/v1", "kind": "Widget",
                "metadata": {"name": "held", "finalizers": ["test.kubesim.dev/hold"]}}),
    )
    .await;
    let r = sim.delete("/api/v1/namespaces/closing").await;
    assert_eq!(r.status, 200);
    let ns = sim.get("/api/v1/namespaces/closing").await.json();
    assert_eq!(ns["status"]["phase"], "Terminating");
    let r = sim
        .post(&widgets_in("closing"), &widget("late", json!({})))
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["reason"], "Forbidden");
    assert_eq!(
        r.json()["message"],
        "widgets.test.kubesim.dev \"late\" is forbidden: unable to create new content in namespace closing because it is being terminated"
    );
    let r = sim
        .post(
            "/api/v1/namespaces/closing/configmaps",
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"}}),
        )
        .await;
    assert_eq!(
        r.json()["message"],
        "configmaps \"late\" is forbidden: unable to create new content in namespace closing because it is being terminated"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Update.

#[tokio::test]
async fn update_conflicts_and_preconditions() -> TestResult {
    let sim = sim_with_widgets().await;
    let w = sim
        .create(&widgets_in("default"), &widget("w", json!({"replicas": 1})))
        .await;
    let path = format!("{}/w", widgets_in("default"));
    let mut stale = w.clone();
    stale["spec"]["replicas"] = json!(2);
    let ok = sim.put(&path, &stale).await;
    assert_eq!(ok.status, 200);
    stale["spec"]["replicas"] = json!(3);
    let r = sim.put(&path, &stale).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["reason"], "Conflict");
    assert_eq!(
        r.json()["message"],
        "Operation cannot be fulfilled on widgets.test.kubesim.dev \"w\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // A custom resource cannot be updated without a resourceVersion.
    let mut unconditional = ok.json();
    unconditional["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("resourceVersion");
    let r = sim.put(&path, &unconditional).await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        "Widget.test.kubesim.dev \"w\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
    );
    // A built-in type can.
    let cm = sim.configmap("default", "c", json!({})).await;
    let mut body = cm.clone();
    body["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("resourceVersion");
    body["data"]["k"] = json!("new");
    let r = sim
        .put("/api/v1/namespaces/default/configmaps/c", &body)
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    assert!(rv(&r.json()) > rv(&cm));
    Ok(())
}

#[tokio::test]
async fn a_no_op_update_keeps_the_resource_version() -> TestResult {
    let sim = sim_with_widgets().await;
    let w = sim
        .create(&widgets_in("default"), &widget("w", json!({"replicas": 1})))
        .await;
    let path = format!("{}/w", widgets_in("default"));
    let r = sim.put(&path, &w).await;
    assert_eq!(r.status, 200);
    assert_eq!(rv(&r.json()), rv(&w));
    let r = sim
        .patch(&path, MERGE, &json!({"spec": {"replicas": 1}}))
        .await;
    assert_eq!(rv(&r.json()), rv(&w));
    assert_eq!(sim.get(&path).await.json()["metadata"], w["metadata"]);
    Ok(())
}

#[tokio::test]
async fn generation_moves_only_with_the_spec() -> TestResult {
    let sim = sim_with_widgets().await;
    let path = format!("{}/w", widgets_in("default"));
    sim.create(&widgets_in("default"), &widget("w", json!({"replicas": 1})))
        .await;
    let gen_of = |v: &Value| v["metadata"]["generation"].as_i64();
    let r = sim
        .patch(&path, MERGE, &json!({"metadata": {"labels": {"a": "b"}}}))
        .await
        .json();
    assert_eq!(gen_of(&r), Some(1), "metadata changes keep the generation");
    let r = sim
        .patch(
            &format!("{path}/status"),
            MERGE,
            &json!({"status": {"phase": "Running"}}),
        )
        .await
        .json();
    assert_eq!(r["status"]["phase"], "Running");
    assert_eq!(gen_of(&r), Some(1), "status changes keep the generation");
    let r = sim
        .patch(&path, MERGE, &json!({"spec": {"replicas": 2}}))
        .await
        .json();
    assert_eq!(gen_of(&r), Some(2), "spec changes move it");

    // Without a status subresource, status is part of the resource and moves the generation.
    sim.cluster().apply_object(&gadget_crd(), "test")?;
    sim.create(
        &format!("{WIDGETS}/gadgets"),
        &json!({"apiVersion": "test.kubesim.dev/v1", "kind": "Gadget",
                "metadata": {"name": "g"}, "spec": {"a": 1}}),
    )
    .await;
    let g = sim
        .patch(
            &format!("{WIDGETS}/gadgets/g"),
            MERGE,
            &json!({"metadata": {"labels": {"x": "y"}}}),
        )
        .await
        .json();
    assert_eq!(gen_of(&g), Some(1));
    let g = sim
        .patch(
            &format!("{WIDGETS}/gadgets/g"),
            MERGE,
            &json!({"status": {"ready": true}}),
        )
        .await
        .json();
    assert_eq!(g["status"]["ready"], true);
    assert_eq!(gen_of(&g), Some(2));
    Ok(())
}

#[tokio::test]
async fn status_and_main_resource_ignore_each_others_fields() -> TestResult {
    let sim = sim_with_widgets().await;
    let path = format!("{}/w", widgets_in("default"));
    let w = sim
        .create(
            &widgets_in("default"),
            &json!({"apiVersion": "test.kubesim.dev/v1", "kind": "Widget",
                    "metadata": {"name": "w"}, "spec": {"replicas": 1},
                    "status": {"phase": "ignored-on-create"}}),
        )
        .await;
    assert!(w.get("status").is_none(), "create drops status: {w}");
    let mut body = w.clone();
    body["spec"]["replicas"] = json!(5);
    body["status"] = json!({"phase": "Ready"});
    body["metadata"]["labels"] = json!({"from": "status"});
    let r = sim.put(&format!("{path}/status"), &body).await;
    assert_eq!(r.status, 200, "{}", r.json());
    let after = r.json();
    assert_eq!(after["status"]["phase"], "Ready");
    assert_eq!(after["spec"]["replicas"], 1, "/status ignores spec");
    assert!(
        after["metadata"]["labels"].is_null(),
        "/status ignores metadata"
    );
    let mut body = after.clone();
    body["spec"]["replicas"] = json!(4);
    body["status"] = json!({"phase": "Overwritten"});
    let r = sim.put(&path, &body).await;
    assert_eq!(r.status, 200);
    let after = r.json();
    assert_eq!(after["spec"]["replicas"], 4);
    assert_eq!(
        after["status"]["phase"], "Ready",
        "the main resource ignores status"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Patch.

#[tokio::test]
async fn merge_and_json_patches() -> TestResult {
    let sim = sim_with_widgets().await;
    let path = format!("{}/w", widgets_in("default"));
    sim.create(
        &widgets_in("default"),
        &widget("w", json!({"replicas": 1, "color": "red", "note": "n"})),
    )
    .await;
    let r = sim
        .patch(
            &path,
            MERGE,
            &json!({"spec": {"color": "blue", "note": null}}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["spec"], json!({"replicas": 1, "color": "blue"}));
    let r = sim
        .patch(
            &path,
            JSON_PATCH,
            &json!([
                {"op": "test", "path": "/spec/color", "value": "blue"},
                {"op": "replace", "path": "/spec/replicas", "value": 2},
                {"op": "add", "path": "/metadata/labels", "value": {"x": "y"}}
            ]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(r.json()["spec"]["replicas"], 2);
    assert_eq!(r.json()["metadata"]["labels"]["x"], "y");
    let before = sim.get(&path).await.json();
    let r = sim
        .patch(
            &path,
            JSON_PATCH,
            &json!([
                {"op": "test", "path": "/spec/color", "value": "green"},
                {"op": "replace", "path": "/spec/replicas", "value": 9}
            ]),
        )
        .await;
    assert_eq!(r.status, 422, "a failed test op rejects the patch");
    assert_eq!(r.json()["reason"], "Invalid");
    assert_eq!(sim.get(&path).await.json(), before, "nothing was applied");
    // A patch that makes the object invalid is refused like an update.
    let r = sim
        .patch(&path, MERGE, &json!({"spec": {"replicas": -1}}))
        .await;
    assert_eq!(r.status, 422);
    // A patch of a missing object.
    let r = sim
        .patch(
            &format!("{}/missing", widgets_in("default")),
            MERGE,
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 404);
    Ok(())
}

#[tokio::test]
async fn strategic_merge_patch_merges_containers_by_name() -> TestResult {
    let sim = sim_with_widgets().await;
    sim.create(
        "/apis/apps/v1/namespaces/default/deployments",
        &deployment("web"),
    )
    .await;
    let r = sim
        .patch(
            "/apis/apps/v1/namespaces/default/deployments/web",
            STRATEGIC,
            &json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "image": "app:2"}
            ]}}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    let containers = r.json()["spec"]["template"]["spec"]["containers"].clone();
    assert_eq!(
        containers,
        json!([{"name": "app", "image": "app:2"}, {"name": "sidecar", "image": "sidecar:1"}])
    );
    assert_eq!(r.json()["metadata"]["generation"], 2);
    // A merge patch replaces the list instead.
    let r = sim
        .patch(
            "/apis/apps/v1/namespaces/default/deployments/web",
            MERGE,
            &json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "image": "app:3"}
            ]}}}}),
        )
        .await;
    assert_eq!(
        r.json()["spec"]["template"]["spec"]["containers"],
        json!([{"name": "app", "image": "app:3"}])
    );
    // Custom resources do not support strategic merge patch.
    sim.create(&widgets_in("default"), &widget("w", json!({})))
        .await;
    let r = sim
        .patch(
            &format!("{}/w", widgets_in("default")),
            STRATEGIC,
            &json!({"spec": {"replicas": 2}}),
        )
        .await;
    assert_eq!(r.status, 415);
    assert_eq!(r.json()["reason"], "UnsupportedMediaType");
    Ok(())
}

#[tokio::test]
async fn server_side_apply_creates_conflicts_and_forces() -> TestResult {
    let sim = sim_with_widgets().await;
    let path = format!("{}/w", widgets_in("default"));
    let applied = widget("w", json!({"replicas": 2, "color": "red"}));
    let r = sim
        .patch(&format!("{path}?fieldManager=alice"), APPLY, &applied)
        .await;
    assert_eq!(r.status, 201, "apply creates: {}", r.json());
    let mf = r.json()["metadata"]["managedFields"].clone();
    assert_eq!(mf[0]["manager"], "alice");
    assert_eq!(mf[0]["operation"], "Apply");
    // The same apply again is a 200 and changes nothing.
    let again = sim
        .patch(&format!("{path}?fieldManager=alice"), APPLY, &applied)
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(rv(&again.json()), rv(&r.json()));
    // Another manager setting the same field to another value conflicts.
    let other = widget("w", json!({"color": "blue"}));
    let r = sim
        .patch(&format!("{path}?fieldManager=bob"), APPLY, &other)
        .await;
    assert_eq!(r.status, 409);
    let status = r.json();
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(
        status["message"],
        "Apply failed with 1 conflict: conflict with \"alice\": .spec.color"
    );
    assert_eq!(
        status["details"]["causes"],
        json!([{"reason": "FieldManagerConflict", "message": "conflict with \"alice\"", "field": ".spec.color"}])
    );
    // Apply must name its field manager (the User-Agent default is for other writes).
    let r = sim.patch(&path, APPLY, &other).await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    // force=true takes the field over.
    let r = sim
        .patch(
            &format!("{path}?fieldManager=bob&force=true"),
            APPLY,
            &other,
        )
        .await;
    assert_eq!(r.status, 200);
    let obj = r.json();
    assert_eq!(obj["spec"]["color"], "blue");
    assert_eq!(obj["spec"]["replicas"], 2);
    let managers: Vec<&str> = obj["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .map(|m| m["manager"].as_str().unwrap_or(""))
        .collect();
    assert!(
        managers.contains(&"alice") && managers.contains(&"bob"),
        "{managers:?}"
    );
    // alice dropping color from her config no longer touches it.
    let r = sim
        .patch(
            &format!("{path}?fieldManager=alice"),
            APPLY,
            &widget("w", json!({"replicas": 2})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["spec"]["color"], "blue");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Scale.

#[tokio::test]
async fn scale_subresource_on_a_deployment_and_a_custom_resource() -> TestResult {
    let sim = sim_with_widgets().await;
    sim.create(
        "/apis/apps/v1/namespaces/default/deployments",
        &deployment("web"),
    )
    .await;
    let scale_path = "/apis/apps/v1/namespaces/default/deployments/web/scale";
    let s = sim.get(scale_path).await;
    assert_eq!(s.status, 200);
    let s = s.json();
    assert_eq!(s["kind"], "Scale");
    assert_eq!(s["apiVersion"], "autoscaling/v1");
    assert_eq!(s["spec"]["replicas"], 2);
    assert_eq!(s["status"]["selector"], "app=web");
    // kubectl sends the scale PUT with no Content-Type.
    let mut body = s.clone();
    body["spec"]["replicas"] = json!(4);
    let r = sim
        .send(Req {
            method: "PUT",
            path: scale_path,
            content_type: None,
            accept: Some("application/json"),
            body: Some(serde_json::to_vec(&body)?),
        })
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(r.json()["kind"], "Scale");
    assert_eq!(r.json()["spec"]["replicas"], 4);
    let d = sim
        .get("/apis/apps/v1/namespaces/default/deployments/web")
        .await
        .json();
    assert_eq!(d["spec"]["replicas"], 4);
    // A stale resourceVersion in the Scale is a conflict.
    let r = sim.put(scale_path, &body).await;
    assert_eq!(r.status, 409);
    let r = sim
        .patch(scale_path, MERGE, &json!({"spec": {"replicas": 1}}))
        .await;
    assert_eq!(r.json()["spec"]["replicas"], 1);
    assert_eq!(
        sim.get("/apis/apps/v1/namespaces/default/deployments/web")
            .await
            .json()["spec"]["replicas"],
        1
    );

    // A custom resource with a scale subresource.
    let wpath = format!("{}/w", widgets_in("default"));
    sim.create(&widgets_in("default"), &widget("w", json!({"replicas": 2})))
        .await;
    sim.patch(
        &format!("{wpath}/status"),
        MERGE,
        &json!({"status": {"replicas": 2, "selector": "app=w"}}),
    )
    .await;
    let s = sim.get(&format!("{wpath}/scale")).await.json();
    assert_eq!(s["kind"], "Scale");
    assert_eq!(s["apiVersion"], "autoscaling/v1");
    assert_eq!(s["spec"]["replicas"], 2);
    assert_eq!(s["status"], json!({"replicas": 2, "selector": "app=w"}));
    let r = sim
        .patch(
            &format!("{wpath}/scale"),
            MERGE,
            &json!({"spec": {"replicas": 7}}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["spec"]["replicas"], 7);
    let mut body = r.json();
    body["spec"]["replicas"] = json!(3);
    let r = sim.put(&format!("{wpath}/scale"), &body).await;
    assert_eq!(r.status, 200);
    let w = sim.get(&wpath).await.json();
    assert_eq!(w["spec"]["replicas"], 3);
    assert_eq!(w["metadata"]["generation"], 3);
    // The CRD's CEL rule applies through the scale subresource too.
    let r = sim
        .patch(
            &format!("{wpath}/scale"),
            MERGE,
            &json!({"spec": {"replicas": 11}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.json());
    // A configmap has no scale subresource.
    sim.configmap("default", "c", json!({})).await;
    assert_eq!(
        sim.get("/api/v1/namespaces/default/configmaps/c/scale")
            .await
            .status,
        404
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Deletion.

#[tokio::test]
async fn finalizers_hold_an_object_until_the_last_one_goes() -> TestResult {
    let sim = Sim::start().await;
    let cm = sim
        .create(
            "/api/v1/namespaces/default/configmaps",
            &json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "held", "finalizers": ["a.test/one", "a.test/two"]}}),
        )
        .await;
    let path = "/api/v1/namespaces/default/configmaps/held";
    let mut w = sim
        .watch(&format!(
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={}",
            rv(&cm)
        ))
        .await;
    let r = sim.delete(path).await;
    assert_eq!(r.status, 200);
    let marked = r.json();
    assert_eq!(
        marked["kind"], "ConfigMap",
        "a held object is returned: {marked}"
    );
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    let e = w.next().await.expect("event");
    assert_eq!(e["type"], "MODIFIED");
    assert!(e["object"]["metadata"]["deletionTimestamp"].is_string());
    // Deleting again changes nothing.
    let again = sim.delete(path).await;
    assert_eq!(again.status, 200);
    assert_eq!(rv(&again.json()), rv(&marked));
    // New finalizers cannot be added once deleting.
    let r = sim
        .patch(
            path,
            MERGE,
            &json!({"metadata": {"finalizers": ["a.test/one", "a.test/two", "a.test/three"]}}),
        )
        .await;
    assert_eq!(r.status, 422);
    let r = sim
        .patch(
            path,
            MERGE,
            &json!({"metadata": {"finalizers": ["a.test/two"]}}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(sim.get(path).await.status, 200);
    assert_eq!(w.next().await.expect("event")["type"], "MODIFIED");
    let r = sim
        .patch(
            path,
            JSON_PATCH,
            &json!([{"op": "remove", "path": "/metadata/finalizers"}]),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(sim.get(path).await.status, 404);
    let e = w.next_change().await;
    let e = if e["type"] == "MODIFIED" {
        w.next_change().await
    } else {
        e
    };
    assert_eq!(e["type"], "DELETED", "{e}");
    assert_eq!(e["object"]["metadata"]["name"], "held");
    Ok(())
}

#[tokio::test]
async fn delete_preconditions_dry_run_and_missing_objects() -> TestResult {
    let sim = Sim::start().await;
    let cm = sim.configmap("default", "c", json!({})).await;
    let path = "/api/v1/namespaces/default/configmaps/c";
    let r = sim
        .delete_with(path, &json!({"preconditions": {"uid": "not-the-uid"}}))
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json()["message"],
        format!(
            "Precondition failed: UID in precondition: not-the-uid, UID in object meta: {}",
            cm["metadata"]["uid"].as_str().unwrap_or("")
        )
    );
    let r = sim.delete(&format!("{path}?dryRun=All")).await;
    assert_eq!(r.status, 200);
    assert_eq!(sim.get(path).await.status, 200, "a dry-run delete keeps it");
    let r = sim
        .delete_with(
            path,
            &json!({"preconditions": {"resourceVersion": cm["metadata"]["resourceVersion"]}}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["kind"], "Status");
    assert_eq!(r.json()["status"], "Success");
    assert_eq!(r.json()["details"]["uid"], cm["metadata"]["uid"]);
    let r = sim.delete(path).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "configmaps \"c\" not found");
    // A body of the wrong kind is refused.
    let r = sim
        .post(
            "/api/v1/namespaces/default/configmaps",
            &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}),
        )
        .await;
    assert_eq!(r.status, 400);
    Ok(())
}

#[tokio::test]
async fn background_deletion_collects_dependents() -> TestResult {
    let sim = Sim::start().await;
    let owner = sim.configmap("default", "owner", json!({})).await;
    let _dep = sim
        .create(
            "/api/v1/namespaces/default/configmaps",
            &json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "dep", "ownerReferences": [owner_ref(&owner, "ConfigMap", "v1")]}}),
        )
        .await;
    let grand = sim
        .create(
            "/api/v1/namespaces/default/secrets",
            &json!({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "grand", "ownerReferences": [owner_ref(&_dep, "ConfigMap", "v1")]}}),
        )
        .await;
    assert_eq!(grand["type"], "Opaque");
    let r = sim
        .delete_with(
            "/api/v1/namespaces/default/configmaps/owner",
            &json!({"propagationPolicy": "Background"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "Success", "{}", r.json());
    for p in [
        "/api/v1/namespaces/default/configmaps/owner",
        "/api/v1/namespaces/default/configmaps/dep",
        "/api/v1/namespaces/default/secrets/grand",
    ] {
        assert_eq!(sim.get(p).await.status, 404, "{p} is collected");
    }
    Ok(())
}

#[tokio::test]
async fn foreground_deletion_keeps_the_owner_until_dependents_are_gone() -> TestResult {
    let sim = Sim::start().await;
    let owner = sim.configmap("default", "owner", json!({})).await;
    sim.create(
        "/api/v1/namespaces/default/configmaps",
        &json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "dep", "finalizers": ["a.test/hold"],
                             "ownerReferences": [owner_ref(&owner, "ConfigMap", "v1")]}}),
    )
    .await;
    let r = sim
        .delete("/api/v1/namespaces/default/configmaps/owner?propagationPolicy=Foreground")
        .await;
    assert_eq!(r.status, 200);
    let owner_now = sim.get("/api/v1/namespaces/default/configmaps/owner").await;
    assert_eq!(owner_now.status, 200, "the owner waits for its dependents");
    let owner_now = owner_now.json();
    assert!(owner_now["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(
        owner_now["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    let dep = sim
        .get("/api/v1/namespaces/default/configmaps/dep")
        .await
        .json();
    assert!(dep["metadata"]["deletionTimestamp"].is_string(), "{dep}");
    sim.patch(
        "/api/v1/namespaces/default/configmaps/dep",
        MERGE,
        &json!({"metadata": {"finalizers": null}}),
    )
    .await;
    assert_eq!(
        sim.get("/api/v1/namespaces/default/configmaps/dep")
            .await
            .status,
        404
    );
    assert_eq!(
        sim.get("/api/v1/namespaces/default/configmaps/owner")
            .await
            .status,
        404,
        "the owner goes once its dependents are gone"
    );
    Ok(())
}

#[tokio::test]
async fn foreground_deletion_waits_only_for_blocking_dependents() -> TestResult {
    let sim = Sim::start().await;
    let owner = sim.configmap("default", "owner", json!({})).await;
    let mut non_blocking = owner_ref(&owner, "ConfigMap", "v1");
    non_blocking["blockOwnerDeletion"] = json!(false);
    sim.create(
        "/api/v1/namespaces/default/configmaps",
        &json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "dep", "finalizers": ["a.test/hold"],
                             "ownerReferences": [non_blocking]}}),
    )
    .await;
    let r = sim
        .delete("/api/v1/namespaces/default/configmaps/owner?propagationPolicy=Foreground")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        sim.get("/api/v1/namespaces/default/configmaps/owner")
            .await
            .status,
        404,
        "a dependent without blockOwnerDeletion does not hold the owner"
    );
    let dep = sim
        .get("/api/v1/namespaces/default/configmaps/dep")
        .await
        .json();
    assert!(dep["metadata"]["deletionTimestamp"].is_string(), "{dep}");
    Ok(())
}

#[tokio::test]
async fn orphan_deletion_keeps_dependents_without_the_reference() -> TestResult {
    let sim = Sim::start().await;
    let owner = sim.configmap("default", "owner", json!({})).await;
    let other = sim.configmap("default", "other", json!({})).await;
    sim.create(
        "/api/v1/namespaces/default/configmaps",
        &json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "dep", "ownerReferences": [owner_ref(&owner, "ConfigMap", "v1")]}}),
    )
    .await;
    sim.create(
        "/api/v1/namespaces/default/configmaps",
        &json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "shared", "ownerReferences": [
                    owner_ref(&owner, "ConfigMap", "v1"), owner_ref(&other, "ConfigMap", "v1")]}}),
    )
    .await;
    let r = sim
        .delete_with(
            "/api/v1/namespaces/default/configmaps/owner",
            &json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Orphan"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        sim.get("/api/v1/namespaces/default/configmaps/owner")
            .await
            .status,
        404
    );
    let dep = sim.get("/api/v1/namespaces/default/configmaps/dep").await;
    assert_eq!(dep.status, 200, "an orphaned dependent lives on");
    assert!(dep.json()["metadata"]["ownerReferences"].is_null());
    let shared = sim
        .get("/api/v1/namespaces/default/configmaps/shared")
        .await
        .json();
    assert_eq!(
        shared["metadata"]["ownerReferences"],
        json!([owner_ref(&other, "ConfigMap", "v1")])
    );
    Ok(())
}

#[tokio::test]
async fn a_dependent_with_two_owners_survives_one_of_them() -> TestResult {
    let sim = Sim::start().await;
    let a = sim.configmap("default", "a", json!({})).await;
    let b = sim.configmap("default", "b", json!({})).await;
    sim.create(
        "/api/v1/namespaces/default/configmaps",
        &json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "dep", "ownerReferences": [
                    owner_ref(&a, "ConfigMap", "v1"), owner_ref(&b, "ConfigMap", "v1")]}}),
    )
    .await;
    sim.delete("/api/v1/namespaces/default/configmaps/a").await;
    let dep = sim.get("/api/v1/namespaces/default/configmaps/dep").await;
    assert_eq!(dep.status, 200);
    assert_eq!(
        dep.json()["metadata"]["ownerReferences"],
        json!([owner_ref(&b, "ConfigMap", "v1")]),
        "the dangling reference is dropped"
    );
    sim.delete("/api/v1/namespaces/default/configmaps/b").await;
    assert_eq!(
        sim.get("/api/v1/namespaces/default/configmaps/dep")
            .await
            .status,
        404,
        "the last owner's deletion collects it"
    );
    Ok(())
}

#[tokio::test]
async fn a_dependent_written_after_its_owner_is_gone_is_collected() -> TestResult {
    let sim = Sim::start().await;
    let owner = sim.configmap("default", "owner", json!({})).await;
    sim.delete("/api/v1/namespaces/default/configmaps/owner")
        .await;
    // An owner deleted and created again has a new uid: the old reference points at nothing.
    let again = sim.configmap("default", "owner", json!({})).await;
    assert_ne!(again["metadata"]["uid"], owner["metadata"]["uid"]);
    let r = sim
        .post(
            "/api/v1/namespaces/default/configmaps",
            &json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "late", "ownerReferences": [owner_ref(&owner, "ConfigMap", "v1")]}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json());
    assert_eq!(
        sim.get("/api/v1/namespaces/default/configmaps/late")
            .await
            .status,
        404,
        "a dependent of an absent owner is collected"
    );
    // With one owner alive, only the dangling reference goes.
    sim.create(
        "/api/v1/namespaces/default/configmaps",
        &json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "half", "ownerReferences": [
                    owner_ref(&owner, "ConfigMap", "v1"), owner_ref(&again, "ConfigMap", "v1")]}}),
    )
    .await;
    let half = sim.get("/api/v1/namespaces/default/configmaps/half").await;
    assert_eq!(half.status, 200);
    assert_eq!(
        half.json()["metadata"]["ownerReferences"],
        json!([owner_ref(&again, "ConfigMap", "v1")])
    );
    Ok(())
}

#[tokio::test]
async fn names_follow_the_rule_of_their_kind() -> TestResult {
    let sim = Sim::start().await;
    let svc = |name: &str| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}});
    let r = sim
        .post("/api/v1/namespaces/default/services", &svc("1abc-o"))
        .await;
    assert_eq!(r.status, 422, "{}", r.json());
    let status = r.json();
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(status["details"]["causes"][0]["field"], "metadata.name");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("DNS-1035")),
        "{status}"
    );
    let r = sim
        .post("/api/v1/namespaces/default/services", &svc(&"a".repeat(64)))
        .await;
    assert_eq!(r.status, 422, "a Service name has at most 63 characters");
    sim.create("/api/v1/namespaces/default/services", &svc("abc-o"))
        .await;
    // A ConfigMap's name is a DNS-1123 subdomain: digits first and dots are fine.
    sim.configmap("default", "1abc.o", json!({})).await;
    // RBAC names are path segments.
    sim.create(
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "system:sluice:reader"}, "rules": []}),
    )
    .await;
    Ok(())
}

#[tokio::test]
async fn deleting_a_namespace_cascades() -> TestResult {
    let sim = sim_with_widgets().await;
    sim.namespace("doomed").await;
    sim.configmap("doomed", "c", json!({})).await;
    sim.create(&widgets_in("doomed"), &widget("w", json!({})))
        .await;
    sim.configmap("default", "keep", json!({})).await;
    let mut w = sim
        .watch("/api/v1/namespaces?watch=true&resourceVersion=1")
        .await;
    let r = sim.delete("/api/v1/namespaces/doomed").await;
    assert_eq!(r.status, 200);
    assert_eq!(sim.get("/api/v1/namespaces/doomed").await.status, 404);
    assert_eq!(
        sim.get("/api/v1/namespaces/doomed/configmaps/c")
            .await
            .status,
        404
    );
    assert_eq!(
        sim.get(&format!("{}/w", widgets_in("doomed"))).await.status,
        404
    );
    assert_eq!(
        sim.get("/api/v1/namespaces/doomed/serviceaccounts/default")
            .await
            .status,
        404
    );
    assert_eq!(
        sim.get("/api/v1/namespaces/default/configmaps/keep")
            .await
            .status,
        200
    );
    let mut deleted = false;
    while let Some(e) = w.next().await {
        if e["type"] == "DELETED" && e["object"]["metadata"]["name"] == "doomed" {
            deleted = true;
            break;
        }
    }
    assert!(deleted, "the namespace's DELETED event is sent");
    Ok(())
}

#[tokio::test]
async fn deleting_a_crd_removes_its_instances_and_its_type() -> TestResult {
    let sim = sim_with_widgets().await;
    sim.create(&widgets_in("default"), &widget("w", json!({})))
        .await;
    let groups = sim.get("/apis").await.json();
    assert!(
        groups["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .any(|g| g["name"] == "test.kubesim.dev")
    );
    let r = sim
        .delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.test.kubesim.dev")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        sim.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.test.kubesim.dev")
            .await
            .status,
        404
    );
    let groups = sim.get("/apis").await.json();
    assert!(
        !groups["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .any(|g| g["name"] == "test.kubesim.dev"),
        "{groups}"
    );
    let agg = sim.get_as("/apis", AGGREGATED).await.json();
    assert!(
        !agg["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|g| g["metadata"]["name"] == "test.kubesim.dev")
    );
    assert_eq!(sim.get(WIDGETS).await.status, 404);
    assert_eq!(sim.get(&widgets_in("default")).await.status, 404);
    assert_eq!(
        sim.get(&format!("{}/w", widgets_in("default")))
            .await
            .status,
        404
    );
    // Installing it again starts empty.
    sim.cluster().apply_object(&widget_crd(), "test")?;
    let list = sim.get(&widgets_in("default")).await;
    assert_eq!(list.status, 200);
    assert_eq!(names(&list.json()), Vec::<String>::new());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// CRD validation.

#[tokio::test]
async fn invalid_custom_resources_are_refused_with_causes() -> TestResult {
    let sim = sim_with_widgets().await;
    let r = sim
        .post(
            &widgets_in("default"),
            &widget("bad", json!({"replicas": -1, "color": "purple"})),
        )
        .await;
    assert_eq!(r.status, 422);
    let s = r.json();
    assert_eq!(s["reason"], "Invalid");
    assert_eq!(s["details"]["kind"], "Widget");
    assert_eq!(s["details"]["group"], "test.kubesim.dev");
    let fields: Vec<&str> = s["details"]["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .map(|c| c["field"].as_str().unwrap_or(""))
        .collect();
    assert!(fields.contains(&"spec.replicas"), "{s}");
    assert!(fields.contains(&"spec.color"), "{s}");
    let enum_cause = s["details"]["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .find(|c| c["field"] == "spec.color")
        .expect("color cause");
    assert_eq!(enum_cause["reason"], "FieldValueNotSupported");
    assert_eq!(
        enum_cause["message"],
        "Unsupported value: \"purple\": supported values: \"red\", \"green\", \"blue\""
    );

    // A CEL rule.
    let r = sim
        .post(
            &widgets_in("default"),
            &widget("big", json!({"replicas": 11})),
        )
        .await;
    assert_eq!(r.status, 422);
    let s = r.json();
    assert_eq!(
        s["message"],
        "Widget.test.kubesim.dev \"big\" is invalid: spec: Invalid value: \"object\": replicas must be at most 10"
    );
    assert_eq!(s["details"]["causes"][0]["field"], "spec");
    assert_eq!(
        sim.get(&format!("{}/big", widgets_in("default")))
            .await
            .status,
        404
    );
    Ok(())
}

#[tokio::test]
async fn field_validation_strict_and_warn() -> TestResult {
    let sim = sim_with_widgets().await;
    let body = widget("w", json!({"replicas": 1, "bogus": true}));
    let r = sim
        .post(
            &format!("{}?fieldValidation=Strict", widgets_in("default")),
            &body,
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["reason"], "BadRequest");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap_or("")
            .contains("unknown field \"spec.bogus\""),
        "{}",
        r.json()
    );
    let r = sim
        .post(
            &format!("{}?fieldValidation=Warn", widgets_in("default")),
            &body,
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        r.header_values("Warning"),
        ["299 - \"unknown field \\\"spec.bogus\\\"\""]
    );
    assert!(
        r.json()["spec"].get("bogus").is_none(),
        "unknown fields are pruned"
    );
    let r = sim
        .post(
            &format!("{}?fieldValidation=Ignore", widgets_in("default")),
            &widget("w2", json!({"bogus": 1})),
        )
        .await;
    assert_eq!(r.status, 201);
    assert!(r.header("Warning").is_none());
    let r = sim
        .post(
            &format!("{}?fieldValidation=Sometimes", widgets_in("default")),
            &widget("w3", json!({})),
        )
        .await;
    assert_eq!(r.status, 400);
    Ok(())
}

#[tokio::test]
async fn invalid_crds_are_refused() -> TestResult {
    let sim = Sim::start().await;
    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    let mut bad_cel = widget_crd();
    bad_cel["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"] =
        json!([{"rule": "self.replicas <="}]);
    let r = sim.post(crds, &bad_cel).await;
    assert_eq!(r.status, 422, "{}", r.json());
    assert_eq!(r.json()["reason"], "Invalid");
    assert!(
        r.json()["message"].as_str().unwrap_or("").starts_with(
            "CustomResourceDefinition.apiextensions.k8s.io \"widgets.test.kubesim.dev\" is invalid"
        ),
        "{}",
        r.json()
    );
    let mut non_structural = widget_crd();
    non_structural["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["replicas"] = json!({"minimum": 0});
    let r = sim.post(crds, &non_structural).await;
    assert_eq!(r.status, 422, "{}", r.json());
    assert!(
        r.json()["details"]["causes"]
            .as_array()
            .expect("causes")
            .iter()
            .any(|c| c["field"]
                == "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[replicas].type"
                && c["reason"] == "FieldValueRequired"),
        "{}",
        r.json()
    );
    // Nothing was installed.
    assert_eq!(sim.get(WIDGETS).await.status, 404);
    let r = sim.post(crds, &widget_crd()).await;
    assert_eq!(r.status, 201);
    assert_eq!(sim.get(WIDGETS).await.status, 200);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Discovery, OpenAPI, version.

#[tokio::test]
async fn discovery_legacy_and_aggregated() -> TestResult {
    let sim = sim_with_widgets().await;
    // Legacy.
    let api = sim.get("/api").await;
    assert_eq!(api.header("Content-Type"), Some("application/json"));
    let api = api.json();
    assert_eq!(api["kind"], "APIVersions");
    assert_eq!(api["versions"], json!(["v1"]));
    let apis = sim.get("/apis").await.json();
    assert_eq!(apis["kind"], "APIGroupList");
    let group = apis["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["name"] == "test.kubesim.dev")
        .expect("the CRD's group is listed")
        .clone();
    assert_eq!(
        group["preferredVersion"]["groupVersion"],
        "test.kubesim.dev/v1"
    );
    let list = sim.get(WIDGETS).await.json();
    assert_eq!(list["kind"], "APIResourceList");
    assert_eq!(list["groupVersion"], "test.kubesim.dev/v1");
    let res: Vec<&str> = list["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r["name"].as_str().unwrap_or(""))
        .collect();
    assert!(res.contains(&"widgets"), "{res:?}");
    assert!(res.contains(&"widgets/status"), "{res:?}");
    assert!(res.contains(&"widgets/scale"), "{res:?}");
    let widgets = list["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "widgets")
        .expect("widgets");
    assert_eq!(widgets["namespaced"], true);
    assert_eq!(widgets["kind"], "Widget");
    assert_eq!(widgets["shortNames"], json!(["wd"]));
    let core = sim.get("/api/v1").await.json();
    assert!(
        core["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .any(|r| r["name"] == "configmaps")
    );
    // Aggregated, chosen by the Accept header.
    let agg = sim.get_as("/apis", AGGREGATED).await;
    let ct = agg.header("Content-Type").unwrap_or("").to_string();
    assert!(
        ct.contains("g=apidiscovery.k8s.io")
            && ct.contains("v=v2")
            && ct.contains("as=APIGroupDiscoveryList"),
        "{ct}"
    );
    let agg = agg.json();
    assert_eq!(agg["kind"], "APIGroupDiscoveryList");
    let g = agg["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|g| g["metadata"]["name"] == "test.kubesim.dev")
        .expect("group");
    let r = &g["versions"][0]["resources"][0];
    assert_eq!(r["resource"], "widgets");
    assert_eq!(r["scope"], "Namespaced");
    assert_eq!(r["responseKind"]["kind"], "Widget");
    assert!(!r["verbs"].as_array().expect("verbs").is_empty());
    let scale = r["subresources"]
        .as_array()
        .expect("subresources")
        .iter()
        .find(|s| s["subresource"] == "scale")
        .expect("scale");
    assert_eq!(scale["responseKind"]["kind"], "Scale");
    assert_eq!(scale["responseKind"]["group"], "autoscaling");
    let core = sim.get_as("/api", AGGREGATED).await.json();
    assert_eq!(core["kind"], "APIGroupDiscoveryList");
    assert_eq!(core["items"][0]["versions"][0]["version"], "v1");
    // Unknown groups and versions.
    assert_eq!(sim.get("/apis/nothing.example/v1").await.status, 404);
    assert_eq!(sim.get("/apis/test.kubesim.dev/v9").await.status, 404);
    Ok(())
}

#[tokio::test]
async fn openapi_v3_and_version() -> TestResult {
    let sim = sim_with_widgets().await;
    let index = sim.get("/openapi/v3").await.json();
    let entry = &index["paths"]["apis/test.kubesim.dev/v1"];
    let url = entry["serverRelativeURL"]
        .as_str()
        .expect("serverRelativeURL")
        .to_string();
    assert!(
        url.starts_with("/openapi/v3/apis/test.kubesim.dev/v1"),
        "{url}"
    );
    assert!(index["paths"]["api/v1"].is_object());
    let doc = sim.get(&url).await;
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3."));
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let (name, widget_schema) = schemas
        .iter()
        .find(|(k, _)| k.ends_with(".Widget"))
        .expect("the Widget schema");
    assert!(
        name.contains("test.kubesim.dev") || name.contains("dev.kubesim.test"),
        "{name}"
    );
    assert_eq!(
        widget_schema["x-kubernetes-group-version-kind"][0]["kind"],
        "Widget"
    );
    assert!(widget_schema["properties"]["spec"]["properties"]["replicas"].is_object());
    assert_eq!(
        sim.get("/openapi/v3/apis/nothing.example/v1").await.status,
        404
    );
    let v = sim.get("/version").await.json();
    assert_eq!(v["major"], "1");
    assert_eq!(v["minor"], "32");
    assert_eq!(v["gitVersion"], kubesim::KUBERNETES_VERSION);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Persistence.

#[tokio::test]
async fn state_survives_a_restart_with_a_dir_store() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (cm_rv, w_uid, last_rv, old_rv) = {
        let cluster = Cluster::with(
            ClusterConfig::default(),
            Box::new(DirStore::new(dir.path())?),
        )?;
        cluster.apply_object(&widget_crd(), "test")?;
        let sim = Sim::start_on(cluster).await;
        sim.namespace("keep").await;
        let cm = sim.configmap("keep", "c", json!({"a": "b"})).await;
        let w = sim
            .create(&widgets_in("keep"), &widget("w", json!({"replicas": 3})))
            .await;
        sim.configmap("keep", "gone", json!({})).await;
        sim.delete("/api/v1/namespaces/keep/configmaps/gone").await;
        let last = sim.cluster().resource_version();
        sim.server.shutdown().await;
        (rv(&cm), w["metadata"]["uid"].clone(), last, rv(&cm) - 1)
    };
    let cluster = Cluster::with(
        ClusterConfig::default(),
        Box::new(DirStore::new(dir.path())?),
    )?;
    assert!(
        cluster.resource_version() >= cm_rv,
        "the resource version counter resumes"
    );
    let sim = Sim::start_on(cluster).await;
    let cm = sim.get("/api/v1/namespaces/keep/configmaps/c").await;
    assert_eq!(cm.status, 200);
    assert_eq!(rv(&cm.json()), cm_rv);
    assert_eq!(cm.json()["metadata"]["labels"]["a"], "b");
    assert_eq!(
        sim.get("/api/v1/namespaces/keep/configmaps/gone")
            .await
            .status,
        404
    );
    let w = sim.get(&format!("{}/w", widgets_in("keep"))).await;
    assert_eq!(w.status, 200, "the CRD type is back");
    assert_eq!(w.json()["metadata"]["uid"], w_uid);
    assert_eq!(w.json()["spec"]["replicas"], 3);
    // The CRD still validates.
    let r = sim
        .post(&widgets_in("keep"), &widget("bad", json!({"replicas": -1})))
        .await;
    assert_eq!(r.status, 422);
    // New writes get newer resource versions than anything before the restart.
    let n = sim.configmap("keep", "new", json!({})).await;
    assert!(rv(&n) > last_rv, "{} > {last_rv}", rv(&n));
    // The watch history did not survive.
    let mut w = sim
        .watch(&format!(
            "/api/v1/namespaces/keep/configmaps?watch=true&resourceVersion={old_rv}"
        ))
        .await;
    let e = w.next().await.expect("event");
    assert_eq!(e["type"], "ERROR", "{e}");
    assert_eq!(e["object"]["code"], 410);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Built-in controllers.

#[tokio::test]
async fn cluster_roles_aggregate_by_label() -> TestResult {
    let sim = Sim::start().await;
    let roles = "/apis/rbac.authorization.k8s.io/v1/clusterroles";
    sim.create(
        roles,
        &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "agg"},
        "aggregationRule": {"clusterRoleSelectors": [
            {"matchLabels": {"test/aggregate": "true"}},
            {"matchExpressions": [{"key": "test/extra", "operator": "Exists"}]}
        ]}}),
    )
    .await;
    let rule = |r: &str| json!({"apiGroups": [""], "resources": [r], "verbs": ["get"]});
    sim.create(
        roles,
        &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "part1", "labels": {"test/aggregate": "true"}},
                "rules": [rule("configmaps")]}),
    )
    .await;
    sim.create(
        roles,
        &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "part2", "labels": {"test/extra": "yes"}},
                "rules": [rule("secrets")]}),
    )
    .await;
    sim.create(
        roles,
        &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "unrelated"}, "rules": [rule("services")]}),
    )
    .await;
    let agg = sim.get(&format!("{roles}/agg")).await.json();
    assert_eq!(
        agg["rules"],
        json!([rule("configmaps"), rule("secrets")]),
        "{agg}"
    );
    sim.delete(&format!("{roles}/part1")).await;
    let agg = sim.get(&format!("{roles}/agg")).await.json();
    assert_eq!(
        agg["rules"],
        json!([rule("secrets")]),
        "a deleted part drops out"
    );
    sim.patch(
        &format!("{roles}/part2"),
        MERGE,
        &json!({"rules": [rule("secrets"), rule("pods")]}),
    )
    .await;
    let agg = sim.get(&format!("{roles}/agg")).await.json();
    assert_eq!(agg["rules"], json!([rule("secrets"), rule("pods")]));
    Ok(())
}

#[tokio::test]
async fn services_get_cluster_ips() -> TestResult {
    let sim = Sim::start().await;
    let svc = |name: &str, spec: Value| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec});
    let port = json!([{"port": 80}]);
    let a = sim
        .create(
            "/api/v1/namespaces/default/services",
            &svc("a", json!({"ports": port})),
        )
        .await;
    let b = sim
        .create(
            "/api/v1/namespaces/default/services",
            &svc("b", json!({"ports": port})),
        )
        .await;
    let ip_a = a["spec"]["clusterIP"]
        .as_str()
        .expect("clusterIP")
        .to_string();
    let ip_b = b["spec"]["clusterIP"]
        .as_str()
        .expect("clusterIP")
        .to_string();
    assert!(ip_a.parse::<std::net::Ipv4Addr>().is_ok(), "{ip_a}");
    assert_ne!(ip_a, ip_b);
    assert_eq!(a["spec"]["clusterIPs"], json!([ip_a]));
    assert_eq!(a["spec"]["type"], "ClusterIP");
    let headless = sim
        .create(
            "/api/v1/namespaces/default/services",
            &svc("h", json!({"clusterIP": "None", "ports": port})),
        )
        .await;
    assert_eq!(headless["spec"]["clusterIP"], "None");
    // An update that leaves clusterIP out keeps it.
    let mut body = a.clone();
    body["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("clusterIP");
    body["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("clusterIPs");
    body["metadata"]["labels"] = json!({"x": "y"});
    let r = sim
        .put("/api/v1/namespaces/default/services/a", &body)
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(r.json()["spec"]["clusterIP"], ip_a);
    Ok(())
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
