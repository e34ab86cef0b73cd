//! The HTTP face of the cluster: the Kubernetes REST protocol over plain HTTP on loopback.
//!
//! - `route.rs`: which resource a path addresses;
//! - `discovery.rs` and `openapi.rs`: what the server tells clients about itself;
//! - `watch.rs`: the chunked watch stream;
//! - this file: request decoding, dispatch to [`Cluster`] and response encoding.

pub mod discovery;
pub mod openapi;
pub mod route;
mod watch;

use crate::admission;
use crate::auth::escalation::{self, RbacKind};
use crate::auth::impersonate::impersonate;
use crate::auth::rbac::{self, Authorizer};
use crate::auth::request_info::request_info;
use crate::auth::review::{Review, ReviewContext};
use crate::auth::{Authenticator, Identity};
use crate::cluster::{
    Cluster, DeleteOptions, FieldValidation, ListOptions, PatchKind, Propagation, Subresource,
    WriteOptions, Written,
};
use crate::error::{ApiError, ApiResult};
use crate::resources::ResourceType;
use crate::table;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use route::{Route, Target};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The largest request body accepted (the real server's limit is 3 MiB for etcd objects).
const MAX_BODY: usize = 10 * 1024 * 1024;

/// What every request handler shares.
pub struct Shared {
    /// The cluster state.
    pub cluster: Arc<Cluster>,
    /// `host:port` the server listens on.
    pub address: String,
    /// How often watches with `allowWatchBookmarks=true` get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Flips to `true` when the server shuts down, ending open watches.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Turns bearer tokens into identities, and issues ServiceAccount tokens.
    pub authenticator: Arc<Authenticator>,
}

type Query = HashMap<String, String>;

/// The single entry point for every request.
pub async fn handle(State(shared): State<Arc<Shared>>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let query: Query = parts
        .uri
        .query()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .map(|v| v.into_iter().collect())
        .unwrap_or_default();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(&ApiError {
                code: 413,
                reason: "RequestEntityTooLarge",
                ..ApiError::bad_request("the request body is too large")
            });
        }
    };
    let path = parts.uri.path().to_string();
    let method = parts.method.clone();
    let identity = match admit(&shared, &method, &path, &query, &parts.headers) {
        Ok(identity) => identity,
        Err(e) => return error_response(&e),
    };
    let request = Request {
        method: &method,
        path: &path,
        query: &query,
        headers: &parts.headers,
        identity: &identity,
    };
    let result = dispatch(&shared, &request, body).await;
    let response = result.unwrap_or_else(|e| error_response(&e));
    tracing::debug!(%method, %path, user = %identity.user, status = response.status().as_u16(), "request");
    response
}

/// Authenticates a request and authorizes what it asks: the identity it runs as, or the
/// `401`/`403` answer.
fn admit(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &Query,
    headers: &HeaderMap,
) -> ApiResult<Identity> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let requester = shared
        .authenticator
        .authenticate(&shared.cluster, authorization)?;
    let authorizer = Authorizer::new(&shared.cluster);
    let identity = impersonate(&authorizer, requester, headers, path)?;
    let info = request_info(method.as_str(), path, query);
    let decision = authorizer.authorize(&identity, &info);
    if !decision.allowed {
        return Err(rbac::forbidden(&identity.user, &info, &decision.reason));
    }
    Ok(identity)
}

/// What a request asks, and who asks it.
struct Request<'a> {
    method: &'a Method,
    path: &'a str,
    query: &'a Query,
    headers: &'a HeaderMap,
    identity: &'a Identity,
}

async fn dispatch(shared: &Arc<Shared>, request: &Request<'_>, body: Bytes) -> ApiResult<Response> {
    let Request {
        method,
        path,
        headers,
        ..
    } = *request;
    let registry = shared.cluster.registry();
    let accept = header_str(headers, header::ACCEPT);
    let route = route::parse(path, &registry).ok_or_else(ApiError::no_route)?;
    if !matches!(route, Route::Resource(_)) && *method != Method::GET {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method} {path})"
        )));
    }
    match route {
        Route::Version => Ok(json_response(StatusCode::OK, &version())),
        Route::Health => Ok(Response::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from("ok"))
            .expect("response")),
        Route::CoreVersions | Route::Groups => {
            let core = matches!(route, Route::CoreVersions);
            match discovery::aggregated_version(accept) {
                Some(v) => {
                    let mut r =
                        json_response(StatusCode::OK, &discovery::aggregated(&registry, core, v));
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_str(&discovery::aggregated_content_type(v))
                            .expect("header"),
                    );
                    Ok(r)
                }
                None if core => Ok(json_response(
                    StatusCode::OK,
                    &discovery::core_versions(&shared.address),
                )),
                None => Ok(json_response(StatusCode::OK, &discovery::groups(&registry))),
            }
        }
        Route::Group(g) => discovery::group(&registry, &g)
            .map(|v| json_response(StatusCode::OK, &v))
            .ok_or_else(ApiError::no_route),
        Route::ResourceList { group, version } => {
            discovery::resource_list(&registry, &group, &version)
                .map(|v| json_response(StatusCode::OK, &v))
                .ok_or_else(ApiError::no_route)
        }
        Route::OpenApiV2 => Err(ApiError::no_route()),
        Route::OpenApiV3Index => Ok(json_response(StatusCode::OK, &openapi::index(&registry))),
        Route::OpenApiV3 { group, version } => {
            if registry.in_group_version(&group, &version).next().is_none() {
                return Err(ApiError::no_route());
            }
            Ok(json_response(
                StatusCode::OK,
                &openapi::document(&registry, &group, &version),
            ))
        }
        Route::Resource(target) => {
            let rt = target
                .resource_type(&registry)
                .ok_or_else(ApiError::no_route)?;
            if rt.review {
                return review(shared, request, &rt, &target, &body);
            }
            if rt.group.is_empty()
                && rt.plural == "serviceaccounts"
                && target.subresource.as_deref() == Some("token")
            {
                return token_request(shared, method, &target, headers, &body);
            }
            resource(shared, request, &rt, &target, body).await
        }
    }
}

/// The `/version` answer. Its `minor` decides which kubectl a version-dispatching kubectl runs.
pub fn version() -> Value {
    let (major, minor) = crate::KUBERNETES_VERSION
        .trim_start_matches('v')
        .split_once('.')
        .map(|(a, b)| {
            (
                a.to_string(),
                b.split('.').next().unwrap_or("0").to_string(),
            )
        })
        .unwrap_or(("1".into(), "32".into()));
    json!({
        "major": major,
        "minor": minor,
        "gitVersion": crate::KUBERNETES_VERSION,
        "gitCommit": "kubesim",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn wants_table(headers: &HeaderMap) -> bool {
    header_str(headers, header::ACCEPT)
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

fn write_options(query: &Query, headers: &HeaderMap) -> ApiResult<WriteOptions> {
    let field_validation = match query.get("fieldValidation").map(String::as_str) {
        None | Some("") | Some("Warn") => FieldValidation::Warn,
        Some("Ignore") => FieldValidation::Ignore,
        Some("Strict") => FieldValidation::Strict,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\" or \"Strict\", got {other:?}"
            )));
        }
    };
    let user_agent = header_str(headers, header::USER_AGENT);
    let default_manager = user_agent.split('/').next().unwrap_or_default();
    let manager = query
        .get("fieldManager")
        .cloned()
        .or_else(|| (!default_manager.is_empty()).then(|| default_manager.to_string()));
    if manager.as_ref().is_some_and(|m| m.len() > 128) {
        return Err(ApiError::bad_request(
            "fieldManager must be at most 128 characters",
        ));
    }
    Ok(WriteOptions {
        field_manager: manager,
        field_validation,
        dry_run: query.get("dryRun").is_some_and(|d| d == "All"),
    })
}

fn parse_body(headers: &HeaderMap, body: &Bytes) -> ApiResult<Value> {
    let content_type = header_str(headers, header::CONTENT_TYPE);
    if content_type.starts_with("application/vnd.kubernetes.protobuf") {
        return crate::protobuf::decode(body).map_err(|e| {
            ApiError::unsupported_media_type(format!(
                "this server cannot decode this protobuf request body: {e}"
            ))
        });
    }
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    if content_type.contains("yaml") {
        return serde_norway::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

/// Decodes the body of an authentication or authorization request (JSON, YAML or protobuf).
fn parse_auth_body(headers: &HeaderMap, body: &Bytes) -> ApiResult<Value> {
    if crate::protobuf::is_protobuf_content_type(header_str(headers, header::CONTENT_TYPE)) {
        return crate::auth::decode_protobuf(body)
            .map_err(|e| ApiError::bad_request(format!("cannot decode the protobuf body: {e}")));
    }
    parse_body(headers, body)
}

/// `POST` of a review (`selfsubjectaccessreviews`, ...): answered, not stored.
fn review(
    shared: &Shared,
    request: &Request<'_>,
    rt: &ResourceType,
    target: &Target,
    body: &Bytes,
) -> ApiResult<Response> {
    let method = request.method;
    if *method != Method::POST || target.name.is_some() {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        )));
    }
    let kind = Review::of(&rt.plural).ok_or_else(ApiError::no_route)?;
    let mut asked = parse_auth_body(request.headers, body)?;
    asked["apiVersion"] = json!(rt.api_version());
    asked["kind"] = json!(rt.kind);
    let ctx = ReviewContext {
        cluster: &shared.cluster,
        authenticator: &shared.authenticator,
        requester: request.identity,
    };
    let answer = crate::auth::review::answer(&ctx, kind, target.namespace.as_deref(), &asked)?;
    Ok(json_response(StatusCode::CREATED, &answer))
}

/// `POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`.
fn token_request(
    shared: &Shared,
    method: &Method,
    target: &Target,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Response> {
    let (Some(ns), Some(name)) = (&target.namespace, &target.name) else {
        return Err(ApiError::no_route());
    };
    if *method != Method::POST {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        )));
    }
    let request = parse_auth_body(headers, body)?;
    let answer =
        crate::auth::token_request(&shared.authenticator, &shared.cluster, ns, name, &request)?;
    Ok(json_response(StatusCode::CREATED, &answer))
}

fn subresource(rt: &ResourceType, target: &Target) -> ApiResult<Option<Subresource>> {
    match target.subresource.as_deref() {
        None => Ok(None),
        Some("status") if rt.status_subresource => Ok(Some(Subresource::Status)),
        Some("scale") if rt.scale.is_some() => Ok(Some(Subresource::Scale)),
        Some(_) => Err(ApiError::no_route()),
    }
}

/// What a write is checked against before it is made: the escalation and bind checks for an
/// RBAC object, and the validating admission policies.
struct Checked<'a> {
    shared: &'a Shared,
    identity: &'a Identity,
    rt: &'a ResourceType,
    namespace: &'a str,
    /// The name addressed (empty for a create).
    name: &'a str,
    sub: Option<Subresource>,
}

impl Checked<'_> {
    /// Runs `write` as a dry run first, when a check needs the object it would store, and lets
    /// the real write happen only when every check passes. The warnings it gives are for the
    /// response.
    fn confirm_write(
        &self,
        opts: &WriteOptions,
        write: impl FnOnce(&WriteOptions) -> ApiResult<Written>,
    ) -> ApiResult<Vec<String>> {
        let cluster = &self.shared.cluster;
        let rt = self.rt;
        let rbac_kind = RbacKind::of(&rt.group, &rt.plural)
            .filter(|_| self.sub.is_none() && !self.identity.is_master());
        let is_policy = rt.group == admission::GROUP && rt.plural == admission::POLICIES;
        let admitting = admission::any_binding(cluster);
        if rbac_kind.is_none() && !is_policy && !admitting {
            return Ok(vec![]);
        }
        let old = (!self.name.is_empty())
            .then(|| cluster.get(rt, self.namespace, self.name).ok())
            .flatten();
        let preview = write(&WriteOptions {
            dry_run: true,
            ..opts.clone()
        })?;
        if let Some(kind) = rbac_kind {
            escalation::confirm_write(
                &Authorizer::new(cluster),
                self.identity,
                kind,
                self.namespace,
                &preview.object,
            )?;
        }
        if is_policy && self.sub.is_none() {
            admission::check_policy(&preview.object)?;
        }
        if !admitting {
            return Ok(vec![]);
        }
        let name = crate::meta::meta_str(&preview.object, "name");
        let name = if name.is_empty() { self.name } else { name };
        admission::admit(
            cluster,
            &admission::Attributes {
                operation: if preview.created {
                    admission::Operation::Create
                } else {
                    admission::Operation::Update
                },
                rt,
                namespace: self.namespace,
                name,
                subresource: self.sub.map(Subresource::name),
                object: Some(&preview.object),
                old_object: old.as_ref(),
                identity: self.identity,
                dry_run: opts.dry_run,
            },
        )
    }

    /// Checks the deletion of each of `objects` against the admission policies.
    fn confirm_delete(&self, objects: &[Value], dry_run: bool) -> ApiResult<()> {
        let cluster = &self.shared.cluster;
        if !admission::any_binding(cluster) {
            return Ok(());
        }
        for old in objects {
            admission::admit(
                cluster,
                &admission::Attributes {
                    operation: admission::Operation::Delete,
                    rt: self.rt,
                    namespace: crate::meta::meta_str(old, "namespace"),
                    name: crate::meta::meta_str(old, "name"),
                    subresource: None,
                    object: None,
                    old_object: Some(old),
                    identity: self.identity,
                    dry_run,
                },
            )?;
        }
        Ok(())
    }
}

fn with_warnings(mut written: Written, warnings: Vec<String>) -> Written {
    written.warnings.extend(warnings);
    written
}

async fn resource(
    shared: &Arc<Shared>,
    request: &Request<'_>,
    rt: &ResourceType,
    target: &Target,
    body: Bytes,
) -> ApiResult<Response> {
    let Request {
        method,
        query,
        headers,
        identity,
        ..
    } = *request;
    let cluster = &shared.cluster;
    if rt.namespaced && target.name.is_some() && target.namespace.is_none() {
        return Err(ApiError::no_route());
    }
    let ns = target.namespace.clone().unwrap_or_default();
    let sub = subresource(rt, target)?;
    let table = wants_table(headers);
    let checked = |name| Checked {
        shared,
        identity,
        rt,
        namespace: &ns,
        name,
        sub,
    };
    match (method.clone(), target.name.as_deref()) {
        (Method::GET, None) => {
            let watching = query.get("watch").is_some_and(|w| w == "true" || w == "1");
            if watching {
                return watch::serve(shared, rt, target.namespace.as_deref(), query, table);
            }
            let opts = ListOptions {
                label_selector: query.get("labelSelector").cloned(),
                field_selector: query.get("fieldSelector").cloned(),
                limit: query.get("limit").and_then(|l| l.parse().ok()).unwrap_or(0),
                continue_token: query.get("continue").filter(|c| !c.is_empty()).cloned(),
            };
            let page = cluster.list(rt, target.namespace.as_deref(), &opts)?;
            let rv = page.resource_version.to_string();
            if table {
                let columns = columns_for(rt);
                let include = include_object(query);
                return Ok(json_response(
                    StatusCode::OK,
                    &table::table(
                        &columns,
                        &page.items,
                        &rv,
                        page.continue_token.as_deref(),
                        include,
                        chrono::Utc::now(),
                    ),
                ));
            }
            let mut metadata = json!({"resourceVersion": rv});
            if let Some(c) = &page.continue_token {
                metadata["continue"] = json!(c);
                metadata["remainingItemCount"] = json!(page.remaining.unwrap_or(0));
            }
            Ok(json_response(
                StatusCode::OK,
                &json!({
                    "apiVersion": rt.api_version(),
                    "kind": format!("{}List", rt.kind),
                    "metadata": metadata,
                    "items": page.items,
                }),
            ))
        }
        (Method::GET, Some(name)) => {
            let obj = match sub {
                Some(Subresource::Scale) => cluster.get_scale(rt, &ns, name)?,
                _ => cluster.get(rt, &ns, name)?,
            };
            if table && sub.is_none() {
                let rv = obj["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                return Ok(json_response(
                    StatusCode::OK,
                    &table::table(
                        &columns_for(rt),
                        std::slice::from_ref(&obj),
                        &rv,
                        None,
                        include_object(query),
                        chrono::Utc::now(),
                    ),
                ));
            }
            Ok(json_response(StatusCode::OK, &obj))
        }
        (Method::POST, None) => {
            if sub.is_some() {
                return Err(ApiError::method_not_allowed(
                    "POST is not allowed on subresources",
                ));
            }
            let obj = parse_body(headers, &body)?;
            let opts = write_options(query, headers)?;
            let warnings =
                checked("").confirm_write(&opts, |o| cluster.create(rt, &ns, obj.clone(), o))?;
            let written = cluster.create(rt, &ns, obj, &opts)?;
            Ok(written_response(with_warnings(written, warnings)))
        }
        (Method::PUT, Some(name)) => {
            let obj = parse_body(headers, &body)?;
            let opts = write_options(query, headers)?;
            let warnings = checked(name).confirm_write(&opts, |o| {
                cluster.update(rt, &ns, name, obj.clone(), sub, o)
            })?;
            let written = cluster.update(rt, &ns, name, obj, sub, &opts)?;
            Ok(written_response(with_warnings(written, warnings)))
        }
        (Method::PATCH, Some(name)) => {
            let content_type = header_str(headers, header::CONTENT_TYPE);
            let kind = match content_type.split(';').next().unwrap_or("").trim() {
                "application/json-patch+json" => PatchKind::Json,
                "application/merge-patch+json" | "" => PatchKind::Merge,
                "application/strategic-merge-patch+json" => PatchKind::Strategic,
                "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                    PatchKind::Apply {
                        force: query.get("force").is_some_and(|f| f == "true"),
                    }
                }
                other => {
                    return Err(ApiError::unsupported_media_type(format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other:?})"
                    )));
                }
            };
            let patch = parse_body(headers, &body)?;
            let mut opts = write_options(query, headers)?;
            if matches!(kind, PatchKind::Apply { .. })
                && query.get("fieldManager").is_none_or(|m| m.is_empty())
            {
                // Other writes default the manager from the User-Agent; apply must name one.
                opts.field_manager = None;
            }
            let warnings = checked(name).confirm_write(&opts, |o| {
                cluster.patch(rt, &ns, name, kind, &patch, sub, o)
            })?;
            let written = cluster.patch(rt, &ns, name, kind, &patch, sub, &opts)?;
            Ok(written_response(with_warnings(written, warnings)))
        }
        (Method::DELETE, name) => {
            let opts = delete_options(query, &body)?;
            match name {
                Some(name) => {
                    if let Ok(old) = cluster.get(rt, &ns, name) {
                        checked(name).confirm_delete(&[old], opts.dry_run)?;
                    }
                    let deleted = cluster.delete(rt, &ns, name, &opts)?;
                    if deleted.gone {
                        Ok(json_response(
                            StatusCode::OK,
                            &json!({
                                "kind": "Status", "apiVersion": "v1", "metadata": {},
                                "status": "Success",
                                "details": {"name": name, "group": rt.group, "kind": rt.plural,
                                            "uid": deleted.object["metadata"]["uid"]}
                            }),
                        ))
                    } else {
                        Ok(json_response(StatusCode::OK, &deleted.object))
                    }
                }
                None => {
                    let list = ListOptions {
                        label_selector: query.get("labelSelector").cloned(),
                        field_selector: query.get("fieldSelector").cloned(),
                        ..Default::default()
                    };
                    if admission::any_binding(cluster) {
                        let page = cluster.list(rt, target.namespace.as_deref(), &list)?;
                        checked("").confirm_delete(&page.items, opts.dry_run)?;
                    }
                    let items =
                        cluster.delete_collection(rt, target.namespace.as_deref(), &list, &opts)?;
                    Ok(json_response(
                        StatusCode::OK,
                        &json!({
                            "apiVersion": rt.api_version(),
                            "kind": format!("{}List", rt.kind),
                            "metadata": {"resourceVersion": cluster.resource_version().to_string()},
                            "items": items,
                        }),
                    ))
                }
            }
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        ))),
    }
}

fn delete_options(query: &Query, body: &Bytes) -> ApiResult<DeleteOptions> {
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    let policy = body["propagationPolicy"]
        .as_str()
        .or(query.get("propagationPolicy").map(String::as_str));
    let orphan = body["orphanDependents"].as_bool() == Some(true)
        || query.get("orphanDependents").is_some_and(|o| o == "true");
    let propagation = match policy {
        Some("Foreground") => Propagation::Foreground,
        Some("Orphan") => Propagation::Orphan,
        Some("Background") => Propagation::Background,
        None if orphan => Propagation::Orphan,
        None => Propagation::Background,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy must be Foreground, Background or Orphan, got {other:?}"
            )));
        }
    };
    let dry_run = query.get("dryRun").is_some_and(|d| d == "All")
        || body["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|d| d == "All"));
    Ok(DeleteOptions {
        propagation,
        uid: body["preconditions"]["uid"].as_str().map(String::from),
        resource_version: body["preconditions"]["resourceVersion"]
            .as_str()
            .map(String::from),
        dry_run,
    })
}

fn include_object(query: &Query) -> table::IncludeObject {
    match query.get("includeObject").map(String::as_str) {
        Some("None") => table::IncludeObject::None,
        Some("Object") => table::IncludeObject::Object,
        _ => table::IncludeObject::Metadata,
    }
}

pub(crate) fn columns_for(rt: &ResourceType) -> Vec<table::Column> {
    if rt.custom {
        table::crd_columns(&rt.printer_columns)
    } else {
        table::builtin_columns(&rt.kind)
    }
}

fn written_response(written: Written) -> Response {
    let status = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut r = json_response(status, &written.object);
    for w in &written.warnings {
        let text = format!("299 - {}", serde_json::to_string(w).unwrap_or_default());
        if let Ok(v) = HeaderValue::from_str(&text) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
    r
}

/// A JSON response.
pub fn json_response(status: StatusCode, value: &Value) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(value).unwrap_or_default()))
        .expect("valid response")
}

/// A `Status` error response.
pub fn error_response(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &e.to_status())
}
