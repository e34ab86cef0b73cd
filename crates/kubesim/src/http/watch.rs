//! The watch stream: one JSON event per line over a chunked response, kept open until the
//! client goes away, `timeoutSeconds` passes or the server stops.

use super::{Query, Shared, columns_for};
use crate::cluster::{EventType, Selectors, WatchEvent, WatchStart};
use crate::error::{ApiError, ApiResult};
use crate::resources::ResourceType;
use crate::table;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{StatusCode, header};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Starts a watch and answers with its stream.
pub(super) fn serve(
    shared: &Arc<Shared>,
    rt: &ResourceType,
    namespace: Option<&str>,
    query: &Query,
    table_output: bool,
) -> ApiResult<Response> {
    let selectors = Selectors::parse_for(
        rt,
        query.get("labelSelector").map(String::as_str),
        query.get("fieldSelector").map(String::as_str),
    )?;
    let send_initial = query.get("sendInitialEvents").is_some_and(|v| v == "true");
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    if send_initial {
        if query.get("resourceVersionMatch").map(String::as_str) != Some("NotOlderThan") {
            return Err(list_option_forbidden(
                "resourceVersionMatch",
                "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if !bookmarks {
            return Err(list_option_forbidden(
                "allowWatchBookmarks",
                "Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true",
            ));
        }
    }
    let start = match query.get("resourceVersion").map(String::as_str) {
        _ if send_initial => WatchStart::Current,
        None | Some("") | Some("0") => WatchStart::Current,
        Some(rv) => WatchStart::After(
            rv.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
    };
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(256);
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::TRANSFER_ENCODING, "chunked")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .expect("response");
    let watched = match shared.cluster.watch(rt, namespace, start) {
        Ok(w) => w,
        Err(e) if e.code == 410 => {
            // The real server answers an expired watch with 200 and an ERROR event.
            let line = line(&json!({"type": "ERROR", "object": e.to_status()}));
            let _ = tx.try_send(Ok(line));
            return Ok(response);
        }
        Err(e) => return Ok(super::error_response(&e)),
    };
    let stream = WatchStream {
        rt: rt.clone(),
        selectors,
        table: table_output,
        columns_sent: false,
        last_rv: match start {
            WatchStart::After(rv) => rv,
            WatchStart::Current => watched.resource_version,
        },
    };
    let mut shutdown = shared.shutdown.clone();
    let interval = shared.bookmark_interval;
    tokio::spawn(async move {
        let mut stream = stream;
        let mut events = watched.events;
        for e in &watched.initial {
            if let Some(l) = stream.render(e)
                && tx.send(Ok(l)).await.is_err()
            {
                return;
            }
        }
        if send_initial {
            stream.last_rv = stream.last_rv.max(watched.resource_version);
            let l = stream.bookmark(true);
            if tx.send(Ok(l)).await.is_err() {
                return;
            }
        }
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            let until_deadline = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = events.recv() => {
                    let Some(ev) = ev else { return };
                    if let Some(l) = stream.render(&ev)
                        && tx.send(Ok(l)).await.is_err() {
                        return;
                    }
                }
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(Ok(stream.bookmark(false))).await.is_err() {
                        return;
                    }
                }
                _ = tx.closed() => return,
                _ = until_deadline => return,
                _ = shutdown.changed() => return,
            }
        }
    });
    Ok(response)
}

fn line(v: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(v).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

struct WatchStream {
    rt: ResourceType,
    selectors: Selectors,
    table: bool,
    columns_sent: bool,
    last_rv: u64,
}

impl WatchStream {
    /// The line for one event, or `None` when the watcher's selectors hide it.
    fn render(&mut self, e: &WatchEvent) -> Option<Bytes> {
        let now_matches = self.selectors.matches(&e.object);
        let before_matched = e.old.as_ref().map(|o| self.selectors.matches(o));
        let kind = match (e.kind, before_matched, now_matches) {
            (EventType::Deleted, _, true) => EventType::Deleted,
            (EventType::Deleted, _, false) => return None,
            (EventType::Modified, Some(false), true) => EventType::Added,
            (EventType::Modified, Some(true), false) => EventType::Deleted,
            (_, _, false) => return None,
            (k, _, true) => k,
        };
        self.last_rv = self.last_rv.max(e.rv);
        let object = crate::cluster::served_object(&self.rt, e.object.clone());
        let object = if self.table {
            let columns = columns_for(&self.rt);
            let rv = object["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let mut t = table::table(
                &columns,
                std::slice::from_ref(&object),
                &rv,
                None,
                table::IncludeObject::Metadata,
                chrono::Utc::now(),
            );
            if self.columns_sent {
                t["columnDefinitions"] = json!([]);
            }
            self.columns_sent = true;
            t
        } else {
            object
        };
        Some(line(&json!({"type": kind.as_str(), "object": object})))
    }

    fn bookmark(&self, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": self.last_rv.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(&json!({
            "type": "BOOKMARK",
            "object": {"kind": self.rt.kind, "apiVersion": self.rt.api_version(), "metadata": metadata}
        }))
    }
}

/// The 422 the real server answers for a forbidden combination of list options.
fn list_option_forbidden(field: &str, message: &str) -> ApiError {
    ApiError::invalid(
        "meta.k8s.io",
        "ListOptions",
        "",
        vec![crate::error::cause("FieldValueForbidden", field, message)],
    )
}
