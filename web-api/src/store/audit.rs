//! The audit log (`audit_log`): append and filter, newest first.

use super::{Store, StoreError};

/// One audit record as written: who did what to which object, when, from where, and how it
/// ended.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct NewAudit {
    /// When (ms).
    pub at: i64,
    /// Who: `token:<id>` or `oidc:<subject>`.
    pub actor: String,
    /// The tenant concerned, if any.
    pub tenant: Option<String>,
    /// What, e.g. `pipeline.create`.
    pub action: String,
    /// Which object, e.g. `pipelines/orders`.
    pub object: String,
    /// From where (client address), when known.
    pub source: Option<String>,
    /// HTTP status of the answer.
    pub status: i32,
    /// `success`, or the problem type's last segment.
    pub outcome: String,
}

/// One audit record as read: its sequence number and the record.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditRow {
    /// Sequence number.
    pub id: i64,
    /// The record.
    #[sqlx(flatten)]
    pub entry: NewAudit,
}

/// Filter of the audit log; newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this tenant's records.
    pub tenant: Option<String>,
    /// Only this actor's records.
    pub actor: Option<String>,
    /// Records at or after (ms).
    pub since: Option<i64>,
    /// Records before (ms).
    pub until: Option<i64>,
    /// Records with an id below this (the cursor).
    pub before_id: Option<i64>,
    /// At most this many.
    pub limit: i64,
}

impl Store {
    /// Appends an audit record.
    pub async fn insert_audit(&self, a: &NewAudit) -> Result<(), StoreError> {
        execute!(
            self,
            "INSERT INTO audit_log (at, actor, tenant, action, object, source, status, outcome) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            a.at,
            &a.actor,
            &a.tenant,
            &a.action,
            &a.object,
            &a.source,
            a.status,
            &a.outcome
        )?;
        Ok(())
    }

    /// Audit records matching `f`, newest first.
    pub async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditRow>, StoreError> {
        Ok(on_pool!(self, |p| sqlx::query_as::<_, AuditRow>(
            "SELECT id, at, actor, tenant, action, object, source, status, outcome \
             FROM audit_log \
             WHERE ($1 IS NULL OR tenant = $1) AND ($2 IS NULL OR actor = $2) \
               AND ($3 IS NULL OR at >= $3) AND ($4 IS NULL OR at < $4) \
               AND ($5 IS NULL OR id < $5) \
             ORDER BY id DESC LIMIT $6"
        )
        .bind(&f.tenant)
        .bind(&f.actor)
        .bind(f.since)
        .bind(f.until)
        .bind(f.before_id)
        .bind(f.limit)
        .fetch_all(p)
        .await)?)
    }
}
