//! create, update, patch, and the status and scale subresources.

use super::read::served;
use super::{Cluster, ObjRef, State};
use crate::error::{ApiError, ApiResult, StatusCause, cause};
use crate::merge::{self, ApplyError, BuiltinHints, Hints, SchemaHints};
use crate::meta;
use crate::resources::ResourceType;
use crate::validation;
use serde_json::{Value, json};

/// How unknown fields in a request body are treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Dropped silently.
    Ignore,
    /// Dropped, with a `Warning` header per field (the server default).
    #[default]
    Warn,
    /// The request fails with `400 BadRequest`.
    Strict,
}

/// Options of a write.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `fieldManager`; required for apply.
    pub field_manager: Option<String>,
    /// `fieldValidation`.
    pub field_validation: FieldValidation,
    /// `dryRun=All`: everything but storing.
    pub dry_run: bool,
}

impl WriteOptions {
    /// Options with a field manager and defaults otherwise.
    pub fn manager(name: &str) -> Self {
        WriteOptions {
            field_manager: Some(name.to_string()),
            ..Default::default()
        }
    }
}

/// The subresource a write addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// `/status`: only `.status` changes.
    Status,
    /// `/scale`: the body is an `autoscaling/v1` `Scale`.
    Scale,
}

impl Subresource {
    /// The subresource's name in a path (`status`, `scale`).
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
        }
    }
}

/// The kind of a PATCH (from its `Content-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json` (built-in types only).
    Strategic,
    /// `application/apply-patch+yaml`: server-side apply.
    Apply {
        /// `force=true`: take over conflicting fields.
        force: bool,
    },
}

/// The result of a write.
#[derive(Debug, Clone)]
pub struct Written {
    /// The stored object (or the Scale, for scale writes).
    pub object: Value,
    /// Warnings for the `Warning` response header.
    pub warnings: Vec<String>,
    /// Whether the object was created (`201`).
    pub created: bool,
}

pub(crate) fn hints_for(rt: &ResourceType) -> Box<dyn Hints + '_> {
    match &rt.schema {
        Some(schema) => Box::new(SchemaHints(schema)),
        None => Box::new(BuiltinHints),
    }
}

/// The reference of object `name` of type `rt`; cluster-scoped types ignore `namespace`.
pub(super) fn obj_ref(rt: &ResourceType, namespace: &str, name: &str) -> ObjRef {
    ObjRef {
        key: rt.key(),
        namespace: if rt.namespaced {
            namespace.to_string()
        } else {
            String::new()
        },
        name: name.to_string(),
    }
}

/// What moves `generation`: everything in an object but `metadata`, and but `status` when the
/// type has a status subresource (a custom resource without one counts status changes too, as
/// the real server does).
fn spec_part(rt: &ResourceType, obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        if rt.status_subresource || !rt.custom {
            m.remove("status");
        }
        m.remove("apiVersion");
        m.remove("kind");
    }
    v
}

impl Cluster {
    /// Creates an object (`POST`).
    pub fn create(
        &self,
        rt: &ResourceType,
        namespace: &str,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        check_type(rt, &obj)?;
        if rt.is_events_v1() {
            obj = super::events::v1_to_core(obj);
        }
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        if rt.namespaced {
            let body_ns = meta::meta_str(&obj, "namespace");
            if !body_ns.is_empty() && body_ns != namespace {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            obj["metadata"]["namespace"] = json!(namespace);
        } else if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        if meta::meta_str(&obj, "name").is_empty() {
            let prefix = meta::meta_str(&obj, "generateName").to_string();
            if !prefix.is_empty() {
                obj["metadata"]["name"] = json!(meta::generate_name(&prefix));
            }
        }
        let name = meta::meta_str(&obj, "name").to_string();
        let mut st = self.lock();
        if rt.namespaced {
            match st.get_stored(&super::ns_ref(namespace)) {
                None => return Err(ApiError::not_found("", "namespaces", namespace)),
                Some(ns) if !ns["metadata"]["deletionTimestamp"].is_null() => {
                    return Err(ApiError::forbidden(format!(
                        "{} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                        rt.qualified()
                    )));
                }
                _ => {}
            }
        }
        let r = obj_ref(rt, namespace, &name);
        if !name.is_empty() && st.get_stored(&r).is_some() {
            return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
        }
        // System-owned metadata is the server's to set.
        let now = meta::now();
        if let Some(m) = obj["metadata"].as_object_mut() {
            for f in [
                "uid",
                "resourceVersion",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "selfLink",
                "managedFields",
            ] {
                m.remove(f);
            }
        }
        if rt.status_subresource
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        st.defaults_on_create(rt, &mut obj);
        let mut warnings = vec![];
        let mut obj = validate(rt, obj, None, &name, opts.field_validation, &mut warnings)?;
        obj["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
        obj["metadata"]["creationTimestamp"] = json!(now);
        if rt.has_generation {
            obj["metadata"]["generation"] = json!(1);
        }
        st.status_on_create(rt, &mut obj);
        let manager = opts.field_manager.as_deref().unwrap_or("unknown");
        let hints = hints_for(rt);
        let obj = merge::record_update(None, &obj, manager, "Update", None, hints.as_ref(), &now);
        if opts.dry_run {
            return Ok(Written {
                object: served(rt, obj),
                warnings,
                created: true,
            });
        }
        let stored = st.store(&r, obj);
        st.after_write(rt, &r, None);
        let object = st.get_stored(&r).cloned().unwrap_or(stored);
        Ok(Written {
            object: served(rt, object),
            warnings,
            created: true,
        })
    }

    /// Replaces an object (`PUT`), or its status (`PUT .../status`).
    pub fn update(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        obj: Value,
        sub: Option<Subresource>,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let mut st = self.lock();
        let r = obj_ref(rt, namespace, name);
        let old = st
            .get_stored(&r)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
        let body_rv = meta::meta_str(&obj, "resourceVersion").to_string();
        if sub == Some(Subresource::Scale) {
            let replicas = scale_replicas(&obj, name)?;
            check_precondition(rt, &old, &body_rv)?;
            let new = with_replicas(rt, &old, replicas)?;
            let written = st.finish_write(rt, &r, old, new, sub, "Update", opts)?;
            return Ok(Written {
                object: scale_of(rt, &written.object),
                ..written
            });
        }
        check_type(rt, &obj)?;
        let body_name = meta::meta_str(&obj, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if body_rv.is_empty() && rt.custom {
            return Err(ApiError::invalid(
                &rt.group,
                &rt.kind,
                name,
                vec![cause(
                    "FieldValueInvalid",
                    "metadata.resourceVersion",
                    "Invalid value: 0x0: must be specified for an update",
                )],
            ));
        }
        check_precondition(rt, &old, &body_rv)?;
        st.finish_write(rt, &r, old, obj, sub, "Update", opts)
    }

    /// Patches an object, its status or its scale (`PATCH`). Server-side apply creates the object
    /// when it does not exist.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        kind: PatchKind,
        body: &Value,
        sub: Option<Subresource>,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        let now = meta::now();
        let r = obj_ref(rt, namespace, name);
        let old = { self.lock().get_stored(&r).cloned() };
        let Some(old) = old else {
            if let (PatchKind::Apply { .. }, None) = (kind, sub) {
                let manager = apply_manager(opts)?;
                let mut applied = body.clone();
                if meta::meta_str(&applied, "name").is_empty() {
                    applied["metadata"]["name"] = json!(name);
                }
                if meta::meta_str(&applied, "name") != name {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({}) does not match the name on the URL ({name})",
                        meta::meta_str(&applied, "name")
                    )));
                }
                let hints = hints_for(rt);
                let obj = merge::apply(None, &applied, manager, None, false, hints.as_ref(), &now)
                    .map_err(|e| apply_error(rt, name, e))?;
                let mut create_opts = opts.clone();
                create_opts.field_manager = Some(manager.to_string());
                let mut written = self.create(rt, namespace, obj.clone(), &create_opts)?;
                // The create recorded an Update entry; an apply that creates records Apply.
                if let Some(mf) = obj["metadata"].get("managedFields").cloned() {
                    let mut st = self.lock();
                    if let Some(stored) = st.get_stored(&r).cloned() {
                        let mut fixed = stored.clone();
                        fixed["metadata"]["managedFields"] = mf;
                        if fixed != stored && !opts.dry_run {
                            let object = st.store(&r, fixed);
                            written.object = served(rt, object);
                        }
                    }
                }
                return Ok(written);
            }
            return Err(ApiError::not_found(&rt.group, &rt.plural, name));
        };
        let view = match sub {
            Some(Subresource::Scale) => scale_of(rt, &served(rt, old.clone())),
            _ => served(rt, old.clone()),
        };
        let hints = hints_for(rt);
        let (patched, operation) = match kind {
            PatchKind::Merge => {
                let mut target = view.clone();
                json_patch::merge(&mut target, body);
                (target, "Update")
            }
            PatchKind::Json => {
                let ops: json_patch::Patch = serde_json::from_value(body.clone())
                    .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
                let mut target = view.clone();
                json_patch_lenient(&mut target, &ops).map_err(|e| {
                    ApiError::invalid(
                        &rt.group,
                        &rt.kind,
                        name,
                        vec![cause("FieldValueInvalid", "", format!("the server rejected our request due to an error in our request: {e}"))],
                    )
                })?;
                (target, "Update")
            }
            PatchKind::Strategic => {
                if rt.custom {
                    return Err(ApiError::unsupported_media_type(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                    ));
                }
                let target = merge::strategic_merge(&view, body, &BuiltinHints)
                    .map_err(ApiError::bad_request)?;
                (target, "Update")
            }
            PatchKind::Apply { force } => {
                let manager = apply_manager(opts)?;
                let applied = match sub {
                    Some(Subresource::Status) => {
                        json!({"apiVersion": body["apiVersion"], "kind": body["kind"],
                               "metadata": {"name": name}, "status": body["status"]})
                    }
                    _ => body.clone(),
                };
                let live = match sub {
                    Some(Subresource::Scale) => {
                        return Err(ApiError::unsupported_media_type(
                            "server-side apply of the scale subresource is not supported by this server",
                        ));
                    }
                    _ => view.clone(),
                };
                let target = merge::apply(
                    Some(&live),
                    &applied,
                    manager,
                    sub.map(Subresource::name),
                    force,
                    hints.as_ref(),
                    &now,
                )
                .map_err(|e| apply_error(rt, name, e))?;
                (target, "Apply")
            }
        };
        drop(hints);
        // A resourceVersion in the patch is a precondition.
        let patched_rv = meta::meta_str(&patched, "resourceVersion").to_string();
        let mut st = self.lock();
        let current = st
            .get_stored(&r)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
        if meta::meta_str(&current, "resourceVersion") != meta::meta_str(&old, "resourceVersion") {
            // Changed between our read and now: patches are retried by the real server too.
            drop(st);
            return self.patch(rt, namespace, name, kind, body, sub, opts);
        }
        check_precondition(rt, &old, &patched_rv)?;
        if sub == Some(Subresource::Scale) {
            let replicas = scale_replicas(&patched, name)?;
            let new = with_replicas(rt, &old, replicas)?;
            let written = st.finish_write(rt, &r, old, new, sub, operation, opts)?;
            return Ok(Written {
                object: scale_of(rt, &written.object),
                ..written
            });
        }
        st.finish_write(rt, &r, old, patched, sub, operation, opts)
    }

    /// The `autoscaling/v1` `Scale` of an object with a scale subresource.
    pub fn get_scale(&self, rt: &ResourceType, namespace: &str, name: &str) -> ApiResult<Value> {
        if rt.scale.is_none() {
            return Err(ApiError::no_route());
        }
        let obj = self.get(rt, namespace, name)?;
        Ok(scale_of(rt, &obj))
    }
}

/// RFC 6902 as the real server applies it: a `test` for `null` passes when the path is absent
/// (kube-rs' finalizer helper relies on that).
fn json_patch_lenient(
    target: &mut Value,
    ops: &json_patch::Patch,
) -> Result<(), json_patch::PatchError> {
    for op in ops.iter() {
        if let json_patch::PatchOperation::Test(t) = op
            && t.value.is_null()
            && target.pointer(t.path.as_str()).is_none()
        {
            continue;
        }
        json_patch::patch(target, std::slice::from_ref(op))?;
    }
    Ok(())
}

fn apply_manager(opts: &WriteOptions) -> ApiResult<&str> {
    opts.field_manager
        .as_deref()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            // The real server validates PatchOptions before anything else.
            ApiError::invalid(
                "meta.k8s.io",
                "PatchOptions",
                "",
                vec![cause(
                    "FieldValueRequired",
                    "fieldManager",
                    "Required value: is required for apply patch",
                )],
            )
        })
}

fn apply_error(rt: &ResourceType, name: &str, e: ApplyError) -> ApiError {
    match e {
        ApplyError::Conflicts(conflicts) => {
            let message = merge::conflict_message(&conflicts);
            let causes = conflicts
                .iter()
                .map(|c| StatusCause {
                    reason: "FieldManagerConflict".into(),
                    message: format!("conflict with {}", c.manager_display()),
                    field: c.field.clone(),
                })
                .collect();
            ApiError::conflict_message(&rt.group, &rt.plural, name, message, causes)
        }
        ApplyError::Invalid(msg) => ApiError::bad_request(msg),
    }
}

fn check_type(rt: &ResourceType, obj: &Value) -> ApiResult<()> {
    if let Some(kind) = obj["kind"].as_str()
        && !kind.is_empty()
        && kind != rt.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            rt.kind
        )));
    }
    if let Some(av) = obj["apiVersion"].as_str()
        && !av.is_empty()
        && av != rt.api_version()
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            rt.api_version()
        )));
    }
    Ok(())
}

fn check_precondition(rt: &ResourceType, old: &Value, rv: &str) -> ApiResult<()> {
    if !rv.is_empty() && rv != meta::meta_str(old, "resourceVersion") {
        return Err(ApiError::conflict(
            &rt.group,
            &rt.plural,
            meta::meta_str(old, "name"),
        ));
    }
    Ok(())
}

/// Validates an object about to be stored: metadata rules for every type, the structural
/// schema and CEL rules for custom resources, the built-in rules for built-in types. Returns
/// the pruned and defaulted object.
fn validate(
    rt: &ResourceType,
    obj: Value,
    old: Option<&Value>,
    name: &str,
    field_validation: FieldValidation,
    warnings: &mut Vec<String>,
) -> ApiResult<Value> {
    let mut causes = meta::validate_metadata(&obj, meta::NameRule::of(&rt.group, &rt.plural));
    let obj = match &rt.schema {
        Some(schema) => {
            let outcome = validation::validate(schema, &obj, old);
            if !outcome.unknown_fields.is_empty() {
                match field_validation {
                    FieldValidation::Strict => {
                        let list: Vec<String> = outcome
                            .unknown_fields
                            .iter()
                            .map(|f| format!("unknown field \"{f}\""))
                            .collect();
                        return Err(ApiError::bad_request(format!(
                            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                            rt.kind,
                            rt.version,
                            rt.kind,
                            list.join(", ")
                        )));
                    }
                    FieldValidation::Warn => warnings.extend(
                        outcome
                            .unknown_fields
                            .iter()
                            .map(|f| format!("unknown field \"{f}\"")),
                    ),
                    FieldValidation::Ignore => {}
                }
            }
            causes.extend(outcome.causes.into_iter().map(|c| StatusCause {
                reason: c.reason,
                message: c.message,
                field: c.field,
            }));
            outcome.object
        }
        None => obj,
    };
    causes.extend(super::builtin::validate_builtin(rt, &obj, old));
    if causes.is_empty() {
        Ok(obj)
    } else {
        Err(ApiError::invalid(&rt.group, &rt.kind, name, causes))
    }
}

fn scale_of(rt: &ResourceType, obj: &Value) -> Value {
    let spec = rt
        .scale
        .clone()
        .unwrap_or_else(|| crate::resources::ScaleSpec {
            spec_replicas_path: ".spec.replicas".into(),
            status_replicas_path: ".status.replicas".into(),
            label_selector_path: None,
        });
    let replicas = meta::get_path(obj, &spec.spec_replicas_path)
        .cloned()
        .unwrap_or(json!(0));
    let status_replicas = meta::get_path(obj, &spec.status_replicas_path)
        .cloned()
        .unwrap_or(json!(0));
    let mut status = json!({"replicas": status_replicas});
    let selector = match &spec.label_selector_path {
        Some(p) => meta::get_path(obj, p)
            .and_then(|v| v.as_str())
            .map(String::from),
        None => obj["spec"]["selector"]["matchLabels"].as_object().map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        }),
    };
    if let Some(s) = selector {
        status["selector"] = json!(s);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj["metadata"]["name"],
            "namespace": obj["metadata"]["namespace"],
            "uid": obj["metadata"]["uid"],
            "resourceVersion": obj["metadata"]["resourceVersion"],
            "creationTimestamp": obj["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": replicas},
        "status": status,
    })
}

/// `spec.replicas` of a `Scale` body, or the real server's 422 when it is missing.
fn scale_replicas(scale: &Value, name: &str) -> ApiResult<i64> {
    scale["spec"]["replicas"].as_i64().ok_or_else(|| {
        ApiError::invalid(
            "autoscaling",
            "Scale",
            name,
            vec![cause(
                "FieldValueRequired",
                "spec.replicas",
                "Required value",
            )],
        )
    })
}

fn with_replicas(rt: &ResourceType, old: &Value, replicas: i64) -> ApiResult<Value> {
    let Some(scale) = &rt.scale else {
        return Err(ApiError::no_route());
    };
    if replicas < 0 {
        return Err(ApiError::invalid(
            "autoscaling",
            "Scale",
            meta::meta_str(old, "name"),
            vec![cause(
                "FieldValueInvalid",
                "spec.replicas",
                format!("Invalid value: {replicas}: must be greater than or equal to 0"),
            )],
        ));
    }
    let mut new = old.clone();
    meta::set_path(&mut new, &scale.spec_replicas_path, json!(replicas));
    Ok(new)
}

impl State {
    /// The common end of update, patch and the subresource writes.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn finish_write(
        &mut self,
        rt: &ResourceType,
        r: &ObjRef,
        old: Value,
        mut new: Value,
        sub: Option<Subresource>,
        operation: &str,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        let name = r.name.clone();
        let now = meta::now();
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the patched object is not a JSON object",
            ));
        }
        new["apiVersion"] = json!(rt.api_version());
        new["kind"] = json!(rt.kind);
        if rt.is_events_v1() {
            new = super::events::v1_to_core(new);
        }
        if !new["metadata"].is_object() {
            new["metadata"] = json!({});
        }
        match sub {
            Some(Subresource::Status) => {
                // Only the status moves; managed fields follow the writer.
                let mut merged = old.clone();
                merged["status"] = new.get("status").cloned().unwrap_or(Value::Null);
                if merged["status"].is_null()
                    && let Some(m) = merged.as_object_mut()
                {
                    m.remove("status");
                }
                if operation == "Apply" {
                    merged["metadata"]["managedFields"] = new["metadata"]["managedFields"].clone();
                }
                new = merged;
            }
            _ => {
                if rt.status_subresource && sub.is_none() {
                    match old.get("status") {
                        Some(s) => new["status"] = s.clone(),
                        None => {
                            if let Some(m) = new.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
            }
        }
        // Immutable and system metadata come from the stored object.
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ] {
            match old["metadata"].get(f) {
                Some(v) => new["metadata"][f] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(f);
                    }
                }
            }
        }
        if meta::meta_str(&new, "name") != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta::meta_str(&new, "name")
            )));
        }
        if rt.namespaced {
            new["metadata"]["namespace"] = json!(r.namespace);
        }
        if !old["metadata"]["deletionTimestamp"].is_null() {
            let before = meta::finalizers(&old);
            let added: Vec<String> = meta::finalizers(&new)
                .into_iter()
                .filter(|f| !before.contains(f))
                .collect();
            if !added.is_empty() {
                return Err(ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    &name,
                    vec![cause(
                        "FieldValueForbidden",
                        "metadata.finalizers",
                        format!(
                            "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                        ),
                    )],
                ));
            }
        }
        self.defaults_on_update(rt, &old, &mut new);
        let mut warnings = vec![];
        // Status writes are validated against the schema too (status is part of it).
        let mut new = validate(
            rt,
            new,
            Some(&old),
            &name,
            opts.field_validation,
            &mut warnings,
        )?;
        if rt.has_generation && spec_part(rt, &old) != spec_part(rt, &new) {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            new["metadata"]["generation"] = json!(g);
        }
        if operation != "Apply" {
            let manager = opts.field_manager.as_deref().unwrap_or("unknown");
            let hints = hints_for(rt);
            new = merge::record_update(
                Some(&old),
                &new,
                manager,
                operation,
                sub.map(Subresource::name),
                hints.as_ref(),
                &now,
            );
        }
        if new == old {
            // A no-op write changes nothing, not even the resource version.
            return Ok(Written {
                object: served(rt, old),
                warnings,
                created: false,
            });
        }
        if opts.dry_run {
            return Ok(Written {
                object: served(rt, new),
                warnings,
                created: false,
            });
        }
        let finalized =
            !new["metadata"]["deletionTimestamp"].is_null() && meta::finalizers(&new).is_empty();
        if finalized && !self.holds_back_removal(rt, &new) {
            let stored = self.store(r, new);
            self.remove(r);
            let mut last = stored;
            last["metadata"]["resourceVersion"] = json!(self.rv.to_string());
            return Ok(Written {
                object: served(rt, last),
                warnings,
                created: false,
            });
        }
        let stored = self.store(r, new);
        self.after_write(rt, r, Some(&old));
        let object = self.get_stored(r).cloned().unwrap_or(stored);
        Ok(Written {
            object: served(rt, object),
            warnings,
            created: false,
        })
    }
}
