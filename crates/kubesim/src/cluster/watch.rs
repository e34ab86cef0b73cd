//! The change history and watch subscriptions.

use super::{Cluster, ObjRef, State};
use crate::error::{ApiError, ApiResult};
use crate::resources::{ResourceType, TypeKey};
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// The object was created (or, at the start of a watch, already existed).
    Added,
    /// The object changed.
    Modified,
    /// The object was removed.
    Deleted,
}

impl EventType {
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change of one object.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    /// The resource version of the change.
    pub rv: u64,
    /// The type of the object.
    pub key: TypeKey,
    /// The object's namespace ("" for cluster-scoped).
    pub namespace: String,
    /// What happened.
    pub kind: EventType,
    /// The object after the change (its last state for `Deleted`).
    pub object: Value,
    /// The object before the change, for `Modified` (watchers with selectors need it to turn a
    /// change into ADDED or DELETED when the object starts or stops matching).
    pub old: Option<Value>,
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchStart {
    /// Send every current object as `ADDED`, then the changes (`resourceVersion` unset or `0`).
    Current,
    /// Send the changes after this resource version (`410 Gone` when it is no longer kept).
    After(u64),
}

/// A new watch: the events to send first, then the live feed.
pub struct Watched {
    /// Events to send before anything from `events`.
    pub initial: Vec<Arc<WatchEvent>>,
    /// Later events, in order.
    pub events: mpsc::UnboundedReceiver<Arc<WatchEvent>>,
    /// The cluster's resource version when the watch started.
    pub resource_version: u64,
}

pub(crate) struct Watcher {
    key: TypeKey,
    namespace: Option<String>,
    tx: mpsc::UnboundedSender<Arc<WatchEvent>>,
}

impl State {
    pub(super) fn publish(
        &mut self,
        r: &ObjRef,
        kind: EventType,
        object: Value,
        old: Option<Value>,
    ) {
        let event = Arc::new(WatchEvent {
            rv: self.rv,
            key: r.key.clone(),
            namespace: r.namespace.clone(),
            kind,
            object,
            old,
        });
        self.watchers.retain(|w| {
            if w.key != event.key
                || w.namespace
                    .as_ref()
                    .is_some_and(|ns| *ns != event.namespace)
            {
                return !w.tx.is_closed();
            }
            w.tx.send(event.clone()).is_ok()
        });
        self.history.push_back(event);
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.history_floor = dropped.rv;
            }
        }
    }
}

impl Cluster {
    /// Starts watching objects of `rt` (in `namespace`, or everywhere for `None`).
    pub fn watch(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        start: WatchStart,
    ) -> ApiResult<Watched> {
        let mut st = self.lock();
        let key = rt.key();
        let matches = |e: &WatchEvent| e.key == key && namespace.is_none_or(|ns| ns == e.namespace);
        let initial: Vec<Arc<WatchEvent>> = match start {
            WatchStart::Current => st
                .list_refs(&key, namespace)
                .into_iter()
                .filter_map(|r| {
                    let obj = st.get_stored(&r)?.clone();
                    Some(Arc::new(WatchEvent {
                        rv: super::read::rv_of(&obj),
                        key: key.clone(),
                        namespace: r.namespace.clone(),
                        kind: EventType::Added,
                        object: obj,
                        old: None,
                    }))
                })
                .collect(),
            WatchStart::After(rv) => {
                if rv < st.history_floor {
                    return Err(ApiError::expired(format!(
                        "too old resource version: {rv} ({})",
                        st.history_floor + 1
                    )));
                }
                // History is ordered by resource version: find the first newer event.
                let start = st.history.partition_point(|e| e.rv <= rv);
                st.history
                    .range(start..)
                    .filter(|e| matches(e))
                    .cloned()
                    .collect()
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        st.watchers.push(Watcher {
            key,
            namespace: namespace.map(String::from),
            tx,
        });
        Ok(Watched {
            initial,
            events: rx,
            resource_version: st.rv,
        })
    }

    /// How many watches are open (closed ones are noticed at the next change of their type).
    pub fn watcher_count(&self) -> usize {
        let st = self.lock();
        st.watchers.iter().filter(|w| !w.tx.is_closed()).count()
    }
}
