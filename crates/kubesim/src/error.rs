//! Errors answered as Kubernetes `Status` objects, with the codes, reasons and messages a real
//! API server uses.

use serde_json::{Value, json};

/// One cause of an error, as in `Status.details.causes`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusCause {
    /// Machine-readable reason, e.g. `FieldValueInvalid`.
    pub reason: String,
    /// Human message.
    pub message: String,
    /// Field path, e.g. `spec.parallelism`.
    pub field: String,
}

/// An API error; it becomes a `Status` body with `code`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Status reason, e.g. `NotFound`.
    pub reason: &'static str,
    /// Human message.
    pub message: String,
    /// `details` (boxed: errors travel through every `Result` of the server).
    pub details: Box<ErrorDetails>,
}

/// The `details` of a `Status`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ErrorDetails {
    /// `details.name`.
    pub name: Option<String>,
    /// `details.group`.
    pub group: Option<String>,
    /// `details.kind` (the resource plural for most errors, the Kind for `Invalid`).
    pub kind: Option<String>,
    /// `details.causes`.
    pub causes: Vec<StatusCause>,
    /// `details.retryAfterSeconds`.
    pub retry_after: Option<u32>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

/// Result of an API operation.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: Box::default(),
        }
    }

    fn with_details(mut self, group: &str, kind: &str, name: &str) -> Self {
        self.details.group = Some(group.to_string());
        self.details.kind = Some(kind.to_string());
        self.details.name = Some(name.to_string());
        self
    }

    /// `404 NotFound`: `pipelines.sluice.dev "p1" not found`.
    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(group, plural)),
        )
        .with_details(group, plural, name)
    }

    /// `404 NotFound` for a path the server does not serve.
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// `409 AlreadyExists`.
    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(group, plural)),
        )
        .with_details(group, plural, name)
    }

    /// `409 Conflict` for a stale `resourceVersion`.
    pub fn conflict(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                qualified(group, plural)
            ),
        )
        .with_details(group, plural, name)
    }

    /// `409 Conflict` with a free message (server-side apply conflicts).
    pub fn conflict_message(
        group: &str,
        plural: &str,
        name: &str,
        message: String,
        causes: Vec<StatusCause>,
    ) -> Self {
        let mut e = Self::new(409, "Conflict", message).with_details(group, plural, name);
        e.details.causes = causes;
        e
    }

    /// `422 Invalid`: `Pipeline.sluice.dev "p1" is invalid: <causes>`.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<StatusCause>) -> Self {
        let gk = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let rendered: Vec<String> = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        let list = match rendered.len() {
            1 => rendered[0].clone(),
            _ => format!("[{}]", rendered.join(", ")),
        };
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{gk} \"{name}\" is invalid: {list}"),
        )
        .with_details(group, kind, name);
        e.details.causes = causes;
        e
    }

    /// `400 BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// `403 Forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// `401 Unauthorized`, for a missing (when required) or unknown token.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// `403 Forbidden` about a resource, worded as the real server's `NewForbidden`:
    /// `pipelines.sluice.dev "p1" is forbidden: <why>` (without the name when `name` is empty,
    /// `forbidden: <why>` when `resource` is empty too).
    pub fn forbidden_resource(group: &str, resource: &str, name: &str, why: &str) -> Self {
        let message = match (resource, name) {
            ("", _) if group.is_empty() => format!("forbidden: {why}"),
            (_, "") => format!("{} is forbidden: {why}", qualified(group, resource)),
            _ => format!(
                "{} \"{name}\" is forbidden: {why}",
                qualified(group, resource)
            ),
        };
        let mut e = Self::new(403, "Forbidden", message);
        let given = |s: &str| (!s.is_empty()).then(|| s.to_string());
        e.details.group = given(group);
        e.details.kind = given(resource);
        e.details.name = given(name);
        e
    }

    /// `405 MethodNotAllowed`.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    /// `410 Expired` (`Gone`) for a resource version that is no longer in the history.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// `415 UnsupportedMediaType`.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    /// `500 InternalError`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut details = serde_json::Map::new();
        if let Some(n) = &self.details.name {
            details.insert("name".into(), json!(n));
        }
        if let Some(g) = &self.details.group {
            details.insert("group".into(), json!(g));
        }
        if let Some(k) = &self.details.kind {
            details.insert("kind".into(), json!(k));
        }
        if !self.details.causes.is_empty() {
            details.insert(
                "causes".into(),
                Value::Array(
                    self.details
                        .causes
                        .iter()
                        .map(
                            |c| json!({"reason": c.reason, "message": c.message, "field": c.field}),
                        )
                        .collect(),
                ),
            );
        }
        if let Some(r) = self.details.retry_after {
            details.insert("retryAfterSeconds".into(), json!(r));
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }
}

/// `plural.group`, or `plural` in the core group.
pub fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

/// A field-level cause.
pub fn cause(reason: &str, field: &str, message: impl Into<String>) -> StatusCause {
    StatusCause {
        reason: reason.to_string(),
        message: message.into(),
        field: field.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_matches_the_real_server() {
        let s = ApiError::not_found("sluice.dev", "pipelines", "p1").to_status();
        assert_eq!(s["message"], "pipelines.sluice.dev \"p1\" not found");
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["code"], 404);
        assert_eq!(s["details"]["kind"], "pipelines");
        let s = ApiError::already_exists("", "namespaces", "t1").to_status();
        assert_eq!(s["message"], "namespaces \"t1\" already exists");
    }

    #[test]
    fn invalid_lists_several_causes_in_brackets() {
        let one = ApiError::invalid(
            "sluice.dev",
            "Pipeline",
            "p1",
            vec![cause(
                "FieldValueInvalid",
                "spec.a",
                "Invalid value: 1: bad",
            )],
        );
        assert_eq!(
            one.message,
            "Pipeline.sluice.dev \"p1\" is invalid: spec.a: Invalid value: 1: bad"
        );
        let two = ApiError::invalid(
            "",
            "ConfigMap",
            "c",
            vec![
                cause("FieldValueRequired", "a", "Required value"),
                cause("FieldValueRequired", "b", "Required value"),
            ],
        );
        assert_eq!(
            two.message,
            "ConfigMap \"c\" is invalid: [a: Required value, b: Required value]"
        );
        assert_eq!(two.to_status()["details"]["causes"][1]["field"], "b");
    }
}
