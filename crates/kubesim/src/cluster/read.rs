//! get and list.

use super::{Cluster, ObjRef};
use crate::error::{ApiError, ApiResult};
use crate::resources::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use base64::Engine;
use serde_json::{Value, json};

/// Options of a list request.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// `labelSelector`.
    pub label_selector: Option<String>,
    /// `fieldSelector`.
    pub field_selector: Option<String>,
    /// `limit` (0 = no limit).
    pub limit: usize,
    /// `continue` token from an earlier page.
    pub continue_token: Option<String>,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct ListPage {
    /// The objects, ordered by namespace and name.
    pub items: Vec<Value>,
    /// The cluster's resource version at the time of the list.
    pub resource_version: u64,
    /// Token for the next page, when there is one.
    pub continue_token: Option<String>,
    /// How many matching objects remain after this page.
    pub remaining: Option<usize>,
}

/// The `resourceVersion` of a stored object as a number.
pub(crate) fn rv_of(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The object as served at the version of `rt` (custom resources with several versions are
/// stored once; the versions differ only in `apiVersion`).
pub(crate) fn served(rt: &ResourceType, mut obj: Value) -> Value {
    if rt.is_events_v1() {
        return super::events::core_to_v1(obj);
    }
    obj["apiVersion"] = Value::String(rt.api_version());
    obj["kind"] = Value::String(rt.kind.clone());
    obj
}

/// Parsed selectors of a list or watch.
pub struct Selectors {
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
}

impl Selectors {
    /// Parses `labelSelector` and `fieldSelector`; a syntax error is a `400 BadRequest`.
    pub fn parse(label: Option<&str>, field: Option<&str>) -> ApiResult<Self> {
        let labels =
            match label.filter(|s| !s.trim().is_empty()) {
                Some(s) => Some(LabelSelector::parse(s).map_err(|e| {
                    ApiError::bad_request(format!("unable to parse requirement: {e}"))
                })?),
                None => None,
            };
        let fields = match field.filter(|s| !s.trim().is_empty()) {
            Some(s) => Some(FieldSelector::parse(s).map_err(|e| {
                ApiError::bad_request(format!("invalid field selector {s:?}: {e}"))
            })?),
            None => None,
        };
        Ok(Selectors { labels, fields })
    }

    /// Like [`Selectors::parse`] for requests on `rt`: as on the real server, a custom resource's
    /// field selector may only use `metadata.name`, `metadata.namespace` (namespaced types) and
    /// the CRD version's `selectableFields`; anything else is a `400 BadRequest`. Field
    /// selectors on built-in types may name any field path.
    pub fn parse_for(
        rt: &ResourceType,
        label: Option<&str>,
        field: Option<&str>,
    ) -> ApiResult<Self> {
        let selectors = Self::parse(label, field)?;
        if rt.custom
            && let Some(fields) = &selectors.fields
        {
            for name in fields.fields() {
                let supported = name == "metadata.name"
                    || (rt.namespaced && name == "metadata.namespace")
                    || rt.selectable_fields.iter().any(|f| f == name);
                if !supported {
                    return Err(ApiError::bad_request(format!(
                        "field label not supported: {name}"
                    )));
                }
            }
        }
        Ok(selectors)
    }

    /// Whether an object matches both selectors.
    pub fn matches(&self, obj: &Value) -> bool {
        let empty = serde_json::Map::new();
        let labels = obj["metadata"]["labels"].as_object().unwrap_or(&empty);
        self.labels.as_ref().is_none_or(|s| s.matches(labels))
            && self.fields.as_ref().is_none_or(|s| s.matches(obj))
    }
}

impl Cluster {
    /// Reads one object.
    pub fn get(&self, rt: &ResourceType, namespace: &str, name: &str) -> ApiResult<Value> {
        let st = self.lock();
        let r = ObjRef {
            key: rt.key(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        st.get_stored(&r)
            .map(|o| served(rt, o.clone()))
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))
    }

    /// Lists objects of `rt`, in `namespace` or everywhere.
    pub fn list(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<ListPage> {
        let selectors = Selectors::parse_for(
            rt,
            opts.label_selector.as_deref(),
            opts.field_selector.as_deref(),
        )?;
        let after = match &opts.continue_token {
            Some(token) => Some(decode_continue(token)?),
            None => None,
        };
        let st = self.lock();
        let key = rt.key();
        let mut items = vec![];
        let mut last: Option<(String, String)> = None;
        let mut remaining = 0usize;
        if let Some(map) = st.objects.get(&key) {
            // Objects are ordered by (namespace, name): a namespaced list reads only its range.
            let objects: Box<dyn Iterator<Item = (&(String, String), &Value)>> = match namespace {
                Some(want) => Box::new(
                    map.range((want.to_string(), String::new())..)
                        .take_while(move |((ns, _), _)| ns == want),
                ),
                None => Box::new(map.iter()),
            };
            for ((ns, name), obj) in objects {
                if let Some((ans, aname)) = &after
                    && (ns, name) <= (ans, aname)
                {
                    continue;
                }
                if !selectors.matches(obj) {
                    continue;
                }
                if opts.limit > 0 && items.len() >= opts.limit {
                    remaining += 1;
                    continue;
                }
                last = Some((ns.clone(), name.clone()));
                items.push(served(rt, obj.clone()));
            }
        }
        let continue_token = if remaining > 0 {
            last.map(|(ns, name)| encode_continue(st.rv, &ns, &name))
        } else {
            None
        };
        Ok(ListPage {
            items,
            resource_version: st.rv,
            remaining: continue_token.as_ref().map(|_| remaining),
            continue_token,
        })
    }
}

fn encode_continue(rv: u64, ns: &str, name: &str) -> String {
    let raw = json!({"v": "kubesim/1", "rv": rv, "start": [ns, name]}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> ApiResult<(String, String)> {
    let bad = || ApiError::bad_request(format!("invalid continue token {token:?}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    match (v["start"][0].as_str(), v["start"][1].as_str()) {
        (Some(ns), Some(name)) => Ok((ns.to_string(), name.to_string())),
        _ => Err(bad()),
    }
}
