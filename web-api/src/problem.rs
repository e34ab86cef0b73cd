//! Errors as RFC 7807 `application/problem+json`: one [`ApiError`] for the whole API, each
//! variant with a stable `type` URI, a title, a status, a human `detail` and, where one field is
//! at fault, an `errors: [{field, message}]` extension.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sluice_core::quota::Exceeded;
use utoipa::ToSchema;

/// Media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";
/// `Retry-After` of `broker-unavailable` answers, in seconds.
pub const BROKER_RETRY_AFTER_SECS: u64 = 2;
/// Prefix of every problem `type`.
pub const TYPE_PREFIX: &str = "https://sluice.dev/problems/";

/// One offending field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct FieldProblem {
    /// Path of the field in the request, e.g. `spec.sinks[0].name`, or the header/parameter
    /// name.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldProblem {
    /// A field problem.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldProblem {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<sluice_crd::validate::FieldError> for FieldProblem {
    fn from(e: sluice_crd::validate::FieldError) -> Self {
        FieldProblem {
            field: e.field,
            message: e.message,
        }
    }
}

/// An RFC 7807 problem document, as served.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct Problem {
    /// Stable URI naming the kind of problem, e.g.
    /// `https://sluice.dev/problems/quota-exceeded`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What happened, for humans.
    pub detail: String,
    /// Offending fields, when the problem is in the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
    /// For `quota-exceeded`: the quota field (`maxPipelines`, `maxParallelism`, `cpu`,
    /// `memory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// For `quota-exceeded`: the limit's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
    /// For `quota-exceeded`: what the tenant uses without the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<String>,
    /// For `quota-exceeded`: what the request adds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested: Option<String>,
}

/// Every error the API answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No credentials, or credentials that do not verify (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but the role does not allow the action (403).
    #[error("{0}")]
    Forbidden(String),
    /// The resource does not exist, or belongs to a tenant the caller cannot see (404).
    #[error("{0}")]
    NotFound(String),
    /// No route matches the method (405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The body is not JSON (400).
    #[error("{detail}")]
    MalformedJson {
        /// What the parser said.
        detail: String,
    },
    /// The body is JSON but not the expected shape: unknown field, wrong type, missing field
    /// (422).
    #[error("{detail}")]
    InvalidBody {
        /// Summary.
        detail: String,
        /// Offending fields.
        errors: Vec<FieldProblem>,
    },
    /// The body is well formed but its values are not valid (422).
    #[error("{detail}")]
    Validation {
        /// Summary.
        detail: String,
        /// Offending fields.
        errors: Vec<FieldProblem>,
    },
    /// A query parameter or header is not valid (400).
    #[error("{detail}")]
    BadRequest {
        /// Summary.
        detail: String,
        /// Offending parameter.
        errors: Vec<FieldProblem>,
    },
    /// A path parameter is not a valid name (400).
    #[error("path parameter {field:?} is not a valid name: {message}")]
    InvalidName {
        /// The parameter (`tenant`, `stream`, `pipeline`, `id`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The body is larger than allowed (413).
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A batch of events larger than the tenant's ingest burst: it can never fit in the
    /// token bucket, so it is refused for good rather than asked to wait (413).
    #[error("{0}")]
    BatchTooLarge(String),
    /// More events in one ingest request than allowed; nothing of it was written (413).
    #[error(
        "more than {limit} events in one request; nothing of it was written: send smaller batches"
    )]
    TooManyEvents {
        /// Most events per request.
        limit: usize,
    },
    /// Ingest cannot take the request now (no publish capacity, or the request's deadline
    /// passed); retry after `Retry-After` seconds (503).
    #[error("{detail}")]
    IngestUnavailable {
        /// What happened, and whether some events may have been stored.
        detail: String,
        /// Seconds to wait before retrying (the `Retry-After` header).
        retry_after_secs: u64,
    },
    /// The body is not of a media type this endpoint accepts (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The object already exists (409).
    #[error("{0}")]
    AlreadyExists(String),
    /// The object changed since it was read, or is being deleted (409).
    #[error("{0}")]
    Conflict(String),
    /// The tenant's namespace does not exist yet: the operator has not finished (409).
    #[error("{0}")]
    TenantNotReady(String),
    /// The stream has no broker subject yet: the operator has not provisioned it (409).
    #[error("{0}")]
    StreamNotReady(String),
    /// Over the tenant's ingest rate; nothing of the request was written (429).
    #[error("{detail}")]
    RateLimited {
        /// Why, with the figures.
        detail: String,
        /// Seconds until the request can fit (the `Retry-After` header).
        retry_after_secs: u64,
    },
    /// The broker did not acknowledge every accepted event; the request may be retried and
    /// some of its events may then be stored twice (503).
    #[error("{0}")]
    BrokerUnavailable(String),
    /// The broker refused events because the tenant's stream storage quota is used up (507).
    #[error("{0}")]
    StorageQuotaExceeded(String),
    /// The request would exceed the tenant's quota (409).
    #[error("{0}")]
    QuotaExceeded(Exceeded),
    /// The `Idempotency-Key` was used before with a different request (422).
    #[error("{0}")]
    IdempotencyKeyReused(String),
    /// A request with the same `Idempotency-Key` is still being processed (409).
    #[error("a request with this Idempotency-Key is still being processed; retry later")]
    IdempotencyKeyInProgress,
    /// The Kubernetes API failed or cannot be reached (502/503).
    #[error("Kubernetes API: {0}")]
    Kubernetes(String),
    /// The store failed or cannot be reached (503).
    #[error("store: {0}")]
    Store(String),
    /// A dependency is not ready (503).
    #[error("{0}")]
    Unavailable(String),
    /// Too busy to answer in time: a held tenant lease, a full store pool or the request
    /// deadline; retry after the `Retry-After` seconds (503).
    #[error("{0}")]
    Busy(String),
    /// A bug (500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A 422 validation error with one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let p = FieldProblem::new(field, message);
        ApiError::Validation {
            detail: format!("{}: {}", p.field, p.message),
            errors: vec![p],
        }
    }

    /// A 422 validation error listing spec problems.
    pub fn validation(errors: Vec<FieldProblem>) -> Self {
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        ApiError::Validation { detail, errors }
    }

    /// `Ok` when `errors` is empty, else the 422 validation error listing them.
    pub fn check_fields(errors: Vec<FieldProblem>) -> Result<(), ApiError> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(errors))
        }
    }

    /// A 400 `invalid-name` about the path parameter `field`.
    pub fn invalid_name(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidName {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A 400 about one query parameter or header.
    pub fn bad_param(field: impl Into<String>, message: impl Into<String>) -> Self {
        let p = FieldProblem::new(field, message);
        ApiError::BadRequest {
            detail: format!("{}: {}", p.field, p.message),
            errors: vec![p],
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::MalformedJson { .. }
            | ApiError::BadRequest { .. }
            | ApiError::InvalidName { .. } => StatusCode::BAD_REQUEST,
            ApiError::InvalidBody { .. }
            | ApiError::Validation { .. }
            | ApiError::IdempotencyKeyReused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge { .. }
            | ApiError::BatchTooLarge(_)
            | ApiError::TooManyEvents { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::AlreadyExists(_)
            | ApiError::Conflict(_)
            | ApiError::TenantNotReady(_)
            | ApiError::StreamNotReady(_)
            | ApiError::QuotaExceeded(_)
            | ApiError::IdempotencyKeyInProgress => StatusCode::CONFLICT,
            ApiError::Kubernetes(_) => StatusCode::BAD_GATEWAY,
            ApiError::Store(_)
            | ApiError::Unavailable(_)
            | ApiError::Busy(_)
            | ApiError::BrokerUnavailable(_)
            | ApiError::IngestUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::StorageQuotaExceeded(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable last segment of the problem `type`.
    pub fn slug(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::MethodNotAllowed => "method-not-allowed",
            ApiError::MalformedJson { .. } => "malformed-json",
            ApiError::InvalidBody { .. } => "invalid-body",
            ApiError::Validation { .. } => "validation-failed",
            ApiError::BadRequest { .. } => "bad-request",
            ApiError::InvalidName { .. } => "invalid-name",
            ApiError::TooManyEvents { .. } => "too-many-events",
            ApiError::IngestUnavailable { .. } => "ingest-unavailable",
            ApiError::PayloadTooLarge { .. } | ApiError::BatchTooLarge(_) => "payload-too-large",
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::AlreadyExists(_) => "already-exists",
            ApiError::Conflict(_) => "conflict",
            ApiError::TenantNotReady(_) => "tenant-not-ready",
            ApiError::StreamNotReady(_) => "stream-not-ready",
            ApiError::RateLimited { .. } => "rate-limited",
            ApiError::BrokerUnavailable(_) => "broker-unavailable",
            ApiError::StorageQuotaExceeded(_) => "storage-quota-exceeded",
            ApiError::QuotaExceeded(_) => "quota-exceeded",
            ApiError::IdempotencyKeyReused(_) => "idempotency-key-reused",
            ApiError::IdempotencyKeyInProgress => "idempotency-key-in-progress",
            ApiError::Kubernetes(_) => "kubernetes-unavailable",
            ApiError::Store(_) => "store-unavailable",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Busy(_) => "busy",
            ApiError::Internal(_) => "internal",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "Missing or invalid credentials",
            ApiError::Forbidden(_) => "Not allowed",
            ApiError::NotFound(_) => "Not found",
            ApiError::MethodNotAllowed => "Method not allowed",
            ApiError::MalformedJson { .. } => "Malformed JSON",
            ApiError::InvalidBody { .. } => "Request body does not match the schema",
            ApiError::Validation { .. } => "Validation failed",
            ApiError::BadRequest { .. } => "Bad request",
            ApiError::InvalidName { .. } => "Invalid name in the path",
            ApiError::TooManyEvents { .. } => "Too many events in one request",
            ApiError::IngestUnavailable { .. } => "Ingest unavailable",
            ApiError::PayloadTooLarge { .. } => "Request body too large",
            ApiError::BatchTooLarge(_) => "Batch larger than the ingest burst",
            ApiError::UnsupportedMediaType(_) => "Unsupported media type",
            ApiError::AlreadyExists(_) => "Already exists",
            ApiError::Conflict(_) => "Conflict",
            ApiError::TenantNotReady(_) => "Tenant not ready",
            ApiError::StreamNotReady(_) => "Stream not ready",
            ApiError::RateLimited { .. } => "Ingest rate limit exceeded",
            ApiError::BrokerUnavailable(_) => "Broker unavailable",
            ApiError::StorageQuotaExceeded(_) => "Stream storage quota used up",
            ApiError::QuotaExceeded(_) => "Quota exceeded",
            ApiError::IdempotencyKeyReused(_) => "Idempotency-Key reused with another request",
            ApiError::IdempotencyKeyInProgress => "Idempotent request in progress",
            ApiError::Kubernetes(_) => "Kubernetes API unavailable",
            ApiError::Store(_) => "Store unavailable",
            ApiError::Unavailable(_) => "Service unavailable",
            ApiError::Busy(_) => "Busy, retry shortly",
            ApiError::Internal(_) => "Internal error",
        }
    }

    /// The problem document.
    pub fn problem(&self) -> Problem {
        let mut p = Problem {
            type_: format!("{TYPE_PREFIX}{}", self.slug()),
            title: self.title().to_string(),
            status: self.status().as_u16(),
            detail: self.to_string(),
            errors: vec![],
            limit: None,
            max: None,
            used: None,
            requested: None,
        };
        match self {
            ApiError::InvalidBody { errors, .. }
            | ApiError::Validation { errors, .. }
            | ApiError::BadRequest { errors, .. } => p.errors = errors.clone(),
            ApiError::InvalidName { field, message } => {
                p.errors = vec![FieldProblem::new(field.clone(), message.clone())];
            }
            ApiError::TooManyEvents { limit } => {
                p.errors = vec![FieldProblem::new(
                    "body",
                    format!("at most {limit} events per request"),
                )];
            }
            ApiError::QuotaExceeded(e) => {
                let field = format!("quota.{}", e.limit.field());
                p.errors = vec![FieldProblem::new(field, e.to_string())];
                p.limit = Some(e.limit.field().to_string());
                let fmt = |v: u64| match e.limit {
                    sluice_core::quota::Limit::Cpu => sluice_core::quota::format_cpu(v),
                    sluice_core::quota::Limit::Memory => sluice_core::quota::format_memory(v),
                    _ => v.to_string(),
                };
                p.max = Some(fmt(e.max));
                p.used = Some(fmt(e.used));
                p.requested = Some(fmt(e.requested));
            }
            _ => {}
        }
        p
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        if e.is_busy() {
            ApiError::Busy(format!("{e}; retry shortly"))
        } else {
            ApiError::Store(e.to_string())
        }
    }
}

impl From<kube::Error> for ApiError {
    fn from(e: kube::Error) -> Self {
        match &e {
            kube::Error::Api(s) if s.code == 404 => ApiError::NotFound(s.message.clone()),
            kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists" => {
                ApiError::AlreadyExists(s.message.clone())
            }
            kube::Error::Api(s) if s.code == 409 => ApiError::Conflict(s.message.clone()),
            kube::Error::Api(s) if s.code == 422 || s.code == 400 => ApiError::Validation {
                detail: format!("refused by the Kubernetes API: {}", s.message),
                errors: vec![FieldProblem::new("spec", s.message.clone())],
            },
            _ => ApiError::Kubernetes(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status().is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        let mut res = problem_response(self.status(), &self.problem());
        let retry_after = match &self {
            ApiError::RateLimited {
                retry_after_secs, ..
            }
            | ApiError::IngestUnavailable {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            ApiError::BrokerUnavailable(_) => Some(BROKER_RETRY_AFTER_SECS),
            ApiError::Busy(_) => Some(BUSY_RETRY_AFTER_SECS),
            _ => None,
        };
        if let Some(secs) = retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

/// The `Retry-After` (seconds) of [`ApiError::Busy`] answers.
pub const BUSY_RETRY_AFTER_SECS: u64 = 1;

/// A response carrying a problem document.
pub fn problem_response(status: StatusCode, problem: &Problem) -> Response {
    let body = serde_json::to_vec(problem).unwrap_or_default();
    let mut res = (status, body).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    res
}

/// Result of handlers.
pub type ApiResult<T> = Result<T, ApiError>;
