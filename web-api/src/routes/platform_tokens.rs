//! Platform tokens (role `platform-admin`, no tenant): platform admins create, list and revoke
//! them, and every create and revoke is audited. The secret is returned once, by the create; the
//! store keeps only its SHA-256. The bootstrap token is one of them and is revoked the same way.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::tokens::{TokenRequest, clamp_ttl};
use crate::auth::{PlatformAdmin, Role};
use crate::body::Json;
use crate::pagination::{PageParams, Query, page_of, page_type};
use crate::path::ValidPath;
use crate::problem::{ApiError, Problem};
use crate::routes::tokens::{TokenLifetime, issued_token};
use crate::store::TokenRow;
use crate::{AppState, audit};

/// Longest description of a platform token, in characters.
pub const MAX_DESCRIPTION: usize = 256;

/// Body of `POST /v1/platform/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreatePlatformToken {
    /// What the token is for (at most 256 characters).
    pub description: String,
    /// Lifetime in seconds; the server's default when absent, at most its maximum, and never
    /// beyond the expiry of the token that creates it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

/// A platform token's metadata (never its secret, except once in [`CreatedPlatformToken`]).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformTokenView {
    /// Id (the token's `jti`).
    pub id: String,
    /// Name (`bootstrap-admin` for the bootstrap token).
    pub name: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When it was made, by whom, and how long it lasts.
    #[serde(flatten)]
    pub lifetime: TokenLifetime,
}

impl PlatformTokenView {
    fn new(r: TokenRow) -> Self {
        PlatformTokenView {
            lifetime: TokenLifetime::of(&r),
            id: r.id,
            name: r.name,
            description: r.description,
        }
    }
}

/// A new platform token: its metadata and, once, its secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedPlatformToken {
    /// Metadata.
    #[serde(flatten)]
    pub meta: PlatformTokenView,
    /// The bearer token, shown only in this answer (it is never stored).
    pub token: String,
}

page_type!(
    PlatformTokenPage,
    PlatformTokenView,
    "A page of platform tokens."
);

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_platform_token, list_platform_tokens))
        .routes(routes!(revoke_platform_token))
}

/// The lifetime asked for, checked against the server's maximum (422 naming `ttlSeconds`).
fn requested_ttl(state: &AppState, ttl_seconds: Option<u64>) -> Result<Duration, ApiError> {
    let max = state.config.max_token_ttl;
    match ttl_seconds {
        None => Ok(state.config.default_token_ttl.min(max)),
        Some(0) => Err(ApiError::field("ttlSeconds", "must be at least 1")),
        Some(s) if Duration::from_secs(s) > max => Err(ApiError::field(
            "ttlSeconds",
            format!("must be at most {}", max.as_secs()),
        )),
        Some(s) => Ok(Duration::from_secs(s)),
    }
}

/// Creates a platform-admin token; the answer holds the secret, shown this once.
#[utoipa::path(post, path = "/v1/platform/tokens", tag = "tokens",
    security(("bearer" = [])),
    request_body = CreatePlatformToken,
    responses(
        (status = 201, description = "Created", body = CreatedPlatformToken),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn create_platform_token(
    State(state): State<AppState>,
    PlatformAdmin(caller): PlatformAdmin,
    Json(req): Json<CreatePlatformToken>,
) -> Result<Response, ApiError> {
    let mut created_id = None;
    let result = async {
        if req.description.trim().is_empty() {
            return Err(ApiError::field("description", "must not be empty"));
        }
        if req.description.chars().count() > MAX_DESCRIPTION {
            return Err(ApiError::field(
                "description",
                format!("must be at most {MAX_DESCRIPTION} characters"),
            ));
        }
        let now = chrono::Utc::now().timestamp_millis();
        let ttl = clamp_ttl(
            requested_ttl(&state, req.ttl_seconds)?,
            caller.principal.expires_at_ms,
            now,
        );
        if ttl.is_zero() {
            return Err(ApiError::Unauthorized(
                "the calling token expires within a second".into(),
            ));
        }
        let name = format!("platform-{}", uuid::Uuid::new_v4());
        let (issued, row) = issued_token(
            &state,
            &TokenRequest {
                tenant: None,
                name: &name,
                role: Role::PlatformAdmin,
                ttl,
                created_by: &caller.principal.actor,
                description: Some(&req.description),
            },
        )
        .await?;
        created_id = Some(row.id.clone());
        let created = CreatedPlatformToken {
            meta: PlatformTokenView::new(row),
            token: issued.secret,
        };
        Ok((StatusCode::CREATED, axum::Json(created)).into_response())
    }
    .await;
    let object = match created_id {
        Some(id) => format!("platform/tokens/{id}"),
        None => "platform/tokens".to_string(),
    };
    audit::recorded(
        &state,
        &caller,
        None,
        "platform-token.create",
        &object,
        result,
    )
    .await
}

/// Lists platform tokens (never their secrets), revoked and expired ones included.
#[utoipa::path(get, path = "/v1/platform/tokens", tag = "tokens",
    security(("bearer" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "A page of platform tokens", body = PlatformTokenPage),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn list_platform_tokens(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<PlatformTokenPage>, ApiError> {
    let limit = page.limit()?;
    let after = page.cursor()?;
    let rows = state
        .store
        .list_platform_tokens(after.as_deref(), i64::from(limit) + 1)
        .await?;
    let (items, next_cursor) = page_of(rows, limit, PlatformTokenView::new, |t| t.id.clone());
    Ok(axum::Json(PlatformTokenPage { items, next_cursor }))
}

/// Revokes a platform token: it stops working at once on this replica and within the token
/// cache time (5 s by default) on the others.
#[utoipa::path(delete, path = "/v1/platform/tokens/{id}", tag = "tokens",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Token id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn revoke_platform_token(
    State(state): State<AppState>,
    PlatformAdmin(caller): PlatformAdmin,
    ValidPath(id): ValidPath<String>,
) -> Result<Response, ApiError> {
    let result = async {
        if uuid::Uuid::parse_str(&id).is_err() {
            return Err(ApiError::bad_param("id", "must be a token id (a UUID)"));
        }
        let now = chrono::Utc::now().timestamp_millis();
        let row = state
            .store
            .revoke_platform_token(&id, now)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("platform token {id:?} not found")))?;
        state.auth.forget_token(&row.id);
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    audit::recorded(
        &state,
        &caller,
        None,
        "platform-token.revoke",
        &format!("platform/tokens/{id}"),
        result,
    )
    .await
}
