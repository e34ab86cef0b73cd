//! API tokens of a tenant: tenant admins (and platform admins) create, list and revoke them.
//! The secret is returned once, by the create; the store keeps only its SHA-256.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Administer, Role, TenantAccess};
use crate::body::Json;
use crate::pagination::{PageParams, Query, page_of, page_type};
use crate::path::ValidPath;
use crate::problem::{ApiError, Problem};
use crate::routes::check_name;
use crate::store::TokenRow;
use crate::{AppState, audit, format_ms, idempotency};

/// Body of `POST /v1/tenants/{tenant}/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateToken {
    /// Name, unique in the tenant (a DNS-1123 label).
    pub name: String,
    /// `tenant-admin`, `developer`, `viewer` or `producer` (ingest only).
    pub role: Role,
    /// Lifetime in seconds; the server's default (90 days) when absent, at most its maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_seconds: Option<u64>,
}

/// An API token's metadata (never its secret, except once in [`CreatedToken`]).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    /// Id (the token's `jti`).
    pub id: String,
    /// Name.
    pub name: String,
    /// Tenant.
    pub tenant: String,
    /// Role.
    pub role: Role,
    /// When it was made, by whom, and how long it lasts.
    #[serde(flatten)]
    pub lifetime: TokenLifetime,
}

/// When a token (API or platform) was made, by whom, and how long it lasts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenLifetime {
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Creator.
    pub created_by: String,
    /// Expiry (RFC 3339).
    pub expires_at: String,
    /// Last use (RFC 3339), recorded at most once a minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
    /// Revocation time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

impl TokenLifetime {
    /// The lifetime of a token row.
    pub fn of(r: &TokenRow) -> Self {
        TokenLifetime {
            created_at: format_ms(r.created_at),
            created_by: r.created_by.clone(),
            expires_at: format_ms(r.expires_at),
            last_used_at: r.last_used_at.map(format_ms),
            revoked_at: r.revoked_at.map(format_ms),
        }
    }
}

impl TokenView {
    /// The view of a token row.
    pub fn new(r: TokenRow) -> Self {
        TokenView {
            role: Role::parse(&r.role).unwrap_or(Role::Viewer),
            lifetime: TokenLifetime::of(&r),
            id: r.id,
            name: r.name,
            tenant: r.tenant_name.unwrap_or_default(),
        }
    }
}

/// A new token: its metadata and, once, its secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedToken {
    /// Metadata.
    #[serde(flatten)]
    pub meta: TokenView,
    /// The bearer token. Shown only in the answer to the create; a replay of the create with the
    /// same `Idempotency-Key` omits it (it is never stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

page_type!(TokenPage, TokenView, "A page of API tokens.");

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_token, list_tokens))
        .routes(routes!(revoke_token))
}

/// Issues a token and reads back the row it was stored as.
pub(crate) async fn issued_token(
    state: &AppState,
    request: &crate::auth::tokens::TokenRequest<'_>,
) -> Result<(crate::auth::tokens::Issued, TokenRow), ApiError> {
    let issued = state.auth.issue(&state.store, request).await?;
    let row = state
        .store
        .token(&issued.claims.jti)
        .await?
        .ok_or_else(|| ApiError::Internal("token row vanished".into()))?;
    Ok((issued, row))
}

/// Creates an API token; the answer holds the secret, shown this once.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/tokens", tag = "tokens",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant name"),
        ("Idempotency-Key" = Option<String>, Header,
            description = "Returns the first answer again (without the secret) when retried")),
    request_body = CreateToken,
    responses(
        (status = 201, description = "Created", body = CreatedToken),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn create_token(
    State(state): State<AppState>,
    access: TenantAccess<Administer>,
    headers: HeaderMap,
    Json(req): Json<CreateToken>,
) -> Result<Response, ApiError> {
    let tenant = access.tenant.clone();
    let fingerprint = serde_json::to_vec(&json!(["token.create", &req])).unwrap_or_default();
    let result = idempotency::run(&state, &tenant.id, &headers, &fingerprint, || async {
        check_name("name", &req.name, 63)?;
        if req.role == Role::PlatformAdmin {
            return Err(ApiError::field(
                "role",
                "must be tenant-admin, developer, viewer or producer",
            ));
        }
        let max = state.config.max_token_ttl;
        let ttl = match req.expires_in_seconds {
            None => state.config.default_token_ttl,
            Some(0) => return Err(ApiError::field("expiresInSeconds", "must be at least 1")),
            Some(s) if Duration::from_secs(s) > max => {
                return Err(ApiError::field(
                    "expiresInSeconds",
                    format!("must be at most {}", max.as_secs()),
                ));
            }
            Some(s) => Duration::from_secs(s),
        };
        // A token never outlives the credential that minted it.
        let ttl = crate::auth::tokens::clamp_ttl(
            ttl,
            access.caller.principal.expires_at_ms,
            chrono::Utc::now().timestamp_millis(),
        );
        if ttl.is_zero() {
            return Err(ApiError::Unauthorized(
                "the calling token expires within a second".into(),
            ));
        }
        let (issued, row) = issued_token(
            &state,
            &crate::auth::tokens::TokenRequest {
                tenant: Some((&tenant.id, &tenant.name)),
                name: &req.name,
                role: req.role,
                ttl,
                created_by: &access.caller.principal.actor,
                description: None,
            },
        )
        .await?;
        let mut created = CreatedToken {
            meta: TokenView::new(row),
            token: Some(issued.secret),
        };
        let body = serde_json::to_value(&created).map_err(|e| ApiError::Internal(e.to_string()))?;
        created.token = None;
        let stored =
            serde_json::to_value(&created).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(idempotency::Created {
            status: StatusCode::CREATED,
            body,
            stored,
        })
    })
    .await;
    audit::recorded(
        &state,
        &access.caller,
        Some(&tenant.name),
        "token.create",
        &format!("tokens/{}", req.name),
        result,
    )
    .await
}

/// Lists a tenant's API tokens (never their secrets).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/tokens", tag = "tokens",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant name"), PageParams),
    responses(
        (status = 200, description = "A page of tokens", body = TokenPage),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn list_tokens(
    State(state): State<AppState>,
    access: TenantAccess<Administer>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<TokenPage>, ApiError> {
    let limit = page.limit()?;
    let after = page.cursor()?;
    let rows = state
        .store
        .list_tokens(&access.tenant.id, after.as_deref(), i64::from(limit) + 1)
        .await?;
    let (items, next_cursor) = page_of(rows, limit, TokenView::new, |t| t.id.clone());
    Ok(axum::Json(TokenPage { items, next_cursor }))
}

/// Revokes an API token: it stops working at once on this replica and within the token cache
/// time (5 s by default) on the others.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/tokens/{id}", tag = "tokens",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant name"),
        ("id" = String, Path, description = "Token id")),
    responses(
        (status = 200, description = "The revoked token", body = TokenView),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn revoke_token(
    State(state): State<AppState>,
    access: TenantAccess<Administer>,
    ValidPath((_tenant, id)): ValidPath<(String, String)>,
) -> Result<Response, ApiError> {
    let result = async {
        let now = chrono::Utc::now().timestamp_millis();
        let row = state
            .store
            .revoke_token(&access.tenant.id, &id, now)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("token {id:?} not found")))?;
        state.auth.forget_token(&row.id);
        Ok(axum::Json(TokenView::new(row)).into_response())
    }
    .await;
    audit::recorded(
        &state,
        &access.caller,
        Some(&access.tenant.name),
        "token.revoke",
        &format!("tokens/{id}"),
        result,
    )
    .await
}
