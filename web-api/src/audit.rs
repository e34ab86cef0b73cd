//! The audit log: every write through the API (and every refused write by an authenticated
//! caller) is recorded with who, what, which object, when, from where and the outcome.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::problem::ApiError;
use crate::store::{AuditRow, NewAudit};
use crate::{AppState, format_ms};

/// How an action ended: HTTP status and `success` or the problem's slug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// HTTP status.
    pub status: u16,
    /// `success` or the problem type's last segment.
    pub outcome: String,
}

/// An answer whose success status the audit log records: a [`Response`](axum::response::Response)
/// carries its own, a JSON body is `200 OK`.
pub trait Answer {
    /// The HTTP status of this successful answer.
    fn success_status(&self) -> u16;
}

impl Answer for axum::response::Response {
    fn success_status(&self) -> u16 {
        self.status().as_u16()
    }
}

impl<T> Answer for axum::Json<T> {
    fn success_status(&self) -> u16 {
        200
    }
}

impl Outcome {
    /// The outcome of a handler's result.
    pub fn of<T: Answer>(result: &Result<T, ApiError>) -> Outcome {
        match result {
            Ok(answer) => Outcome {
                status: answer.success_status(),
                outcome: "success".into(),
            },
            Err(e) => Outcome {
                status: e.status().as_u16(),
                outcome: e.slug().into(),
            },
        }
    }
}

/// Records the outcome of an action. Failure to record is logged, not returned: the action has
/// happened by then.
pub async fn record(
    state: &AppState,
    caller: &Caller,
    tenant: Option<&str>,
    action: &str,
    object: &str,
    outcome: Outcome,
) {
    let Outcome { status, outcome } = outcome;
    let entry = NewAudit {
        at: chrono::Utc::now().timestamp_millis(),
        actor: caller.principal.actor.clone(),
        tenant: tenant.map(str::to_string),
        action: action.to_string(),
        object: object.to_string(),
        source: caller.source.clone(),
        status: i32::from(status),
        outcome,
    };
    if let Err(e) = state.store.insert_audit(&entry).await {
        tracing::error!(error = %e, action, object, "cannot write the audit log");
    }
}

/// Records the outcome of a write on `object` and hands its result back unchanged: the one
/// tail of every audited handler.
pub async fn recorded<T: Answer>(
    state: &AppState,
    caller: &Caller,
    tenant: Option<&str>,
    action: &str,
    object: &str,
    result: Result<T, ApiError>,
) -> Result<T, ApiError> {
    record(state, caller, tenant, action, object, Outcome::of(&result)).await;
    result
}

/// One audit record.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Sequence number.
    pub id: i64,
    /// When (RFC 3339).
    pub at: String,
    /// Who: `token:<id>` or `oidc:<subject>`.
    pub actor: String,
    /// The tenant concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// What, e.g. `pipeline.create`.
    pub action: String,
    /// Which object, e.g. `pipelines/orders`.
    pub object: String,
    /// The client's address, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// HTTP status of the answer.
    pub status: i32,
    /// `success`, or the problem type's last segment (e.g. `quota-exceeded`).
    pub outcome: String,
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> Self {
        let e = r.entry;
        AuditEntry {
            id: r.id,
            at: format_ms(e.at),
            actor: e.actor,
            tenant: e.tenant,
            action: e.action,
            object: e.object,
            source: e.source,
            status: e.status,
            outcome: e.outcome,
        }
    }
}
