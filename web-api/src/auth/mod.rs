//! Authentication and roles, as extractors: handlers take a [`Caller`], a [`PlatformAdmin`] or a
//! [`TenantAccess<P>`] and never check credentials or roles by hand.
//!
//! Two kinds of bearer token are accepted (see [`tokens`] and [`oidc`]): API tokens Sluice issues
//! (HS256 JWTs whose `jti` has a row in the store), and tokens of an external OIDC issuer checked
//! against its JWKS, whose claims map to `platform-admin` or to tenant roles.
//!
//! Access to a tenant the caller has no role in answers 404, exactly as for a tenant that does
//! not exist, so that tenants cannot discover each other; a role too weak for the action answers
//! 403.

pub mod oidc;
pub mod tokens;

use std::marker::PhantomData;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::problem::ApiError;
use crate::store::TenantRow;
use crate::{AppState, TenantName};

/// What a principal may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Everything, on every tenant.
    PlatformAdmin,
    /// Everything in one tenant except changing its quota, isolation or existence.
    TenantAdmin,
    /// Reads the tenant, manages its streams and pipelines, ingests.
    Developer,
    /// Reads the tenant and its pipelines.
    Viewer,
    /// Ingests events into the tenant's streams, nothing else.
    Producer,
}

impl Role {
    /// The role's name, as in tokens and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::PlatformAdmin => "platform-admin",
            Role::TenantAdmin => "tenant-admin",
            Role::Developer => "developer",
            Role::Viewer => "viewer",
            Role::Producer => "producer",
        }
    }

    /// Parses a role name.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "platform-admin" => Role::PlatformAdmin,
            "tenant-admin" => Role::TenantAdmin,
            "developer" => Role::Developer,
            "viewer" => Role::Viewer,
            "producer" => Role::Producer,
            _ => return None,
        })
    }
}

/// A role in one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Tenant name.
    pub tenant: String,
    /// Role in it.
    pub role: Role,
}

/// Who is calling, once their credentials verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// How the audit log names them: `token:<id>` or `oidc:<subject>`.
    pub actor: String,
    /// The API token's id, for Sluice tokens.
    pub token_id: Option<String>,
    /// Whether they are a platform admin.
    pub platform_admin: bool,
    /// Their roles in tenants.
    pub grants: Vec<Grant>,
    /// When their credential expires (ms since the epoch), when known: a token they mint may
    /// not outlive it.
    pub expires_at_ms: Option<i64>,
}

impl Principal {
    /// Their role in `tenant`: platform admins have [`Role::PlatformAdmin`] everywhere; otherwise
    /// the strongest granted role.
    pub fn role_in(&self, tenant: &str) -> Option<Role> {
        if self.platform_admin {
            return Some(Role::PlatformAdmin);
        }
        let rank = |r: Role| match r {
            Role::PlatformAdmin => 0,
            Role::TenantAdmin => 1,
            Role::Developer => 2,
            Role::Viewer => 3,
            Role::Producer => 4,
        };
        self.grants
            .iter()
            .filter(|g| g.tenant == tenant)
            .map(|g| g.role)
            .min_by_key(|r| rank(*r))
    }
}

/// An authenticated request: the principal and the client's address.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// From where, when known.
    pub source: Option<String>,
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer <token>".into()))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("Authorization header is not ASCII".into()))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::Unauthorized("Authorization must be Bearer <token>".into()))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::Unauthorized(
            "Authorization must be Bearer <token>".into(),
        ));
    }
    Ok(token.trim())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(c) = parts.extensions.get::<Caller>() {
            return Ok(c.clone());
        }
        let token = bearer(parts)?;
        let principal = state.auth.authenticate(token, &state.auth_store).await?;
        let source = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string());
        let caller = Caller { principal, source };
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

/// A platform admin (403 for anyone else).
#[derive(Debug, Clone)]
pub struct PlatformAdmin(pub Caller);

impl FromRequestParts<AppState> for PlatformAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if !caller.principal.platform_admin {
            return Err(ApiError::Forbidden(
                "this action needs the platform-admin role".into(),
            ));
        }
        Ok(PlatformAdmin(caller))
    }
}

/// A permission on a tenant's resources; [`TenantAccess`] checks it.
pub trait Permission: Send + Sync + 'static {
    /// What the permission is called in errors.
    const NAME: &'static str;
    /// Whether `role` has it.
    fn allows(role: Role) -> bool;
}

/// Read the tenant, its quota, usage, streams and pipelines.
#[derive(Debug)]
pub struct Read;
impl Permission for Read {
    const NAME: &'static str = "read this tenant (viewer or above)";
    fn allows(role: Role) -> bool {
        !matches!(role, Role::Producer)
    }
}

/// Create, change and delete pipelines.
#[derive(Debug)]
pub struct WritePipelines;
impl Permission for WritePipelines {
    const NAME: &'static str = "change pipelines (developer or above)";
    fn allows(role: Role) -> bool {
        matches!(
            role,
            Role::PlatformAdmin | Role::TenantAdmin | Role::Developer
        )
    }
}

/// Create, change and delete streams.
#[derive(Debug)]
pub struct WriteStreams;
impl Permission for WriteStreams {
    const NAME: &'static str = "change streams (developer or above)";
    fn allows(role: Role) -> bool {
        matches!(
            role,
            Role::PlatformAdmin | Role::TenantAdmin | Role::Developer
        )
    }
}

/// Ingest events into the tenant's streams.
#[derive(Debug)]
pub struct Produce;
impl Permission for Produce {
    const NAME: &'static str = "ingest events (producer, developer or above)";
    fn allows(role: Role) -> bool {
        !matches!(role, Role::Viewer)
    }
}

/// Create, list and revoke API tokens; read the tenant's audit log.
#[derive(Debug)]
pub struct Administer;
impl Permission for Administer {
    const NAME: &'static str = "administer this tenant (tenant-admin or above)";
    fn allows(role: Role) -> bool {
        matches!(role, Role::PlatformAdmin | Role::TenantAdmin)
    }
}

/// Change the tenant itself: quota, isolation, suspension, deletion.
#[derive(Debug)]
pub struct ManageTenant;
impl Permission for ManageTenant {
    const NAME: &'static str = "change the tenant itself (platform-admin)";
    fn allows(role: Role) -> bool {
        matches!(role, Role::PlatformAdmin)
    }
}

/// Access to the tenant named by the `{tenant}` path parameter with permission `P`:
/// 400 `invalid-name` when a path parameter is not a valid name (see [`crate::path`]), 404
/// when the tenant does not exist or the caller has no role in it, 403 when the role lacks `P`.
#[derive(Debug, Clone)]
pub struct TenantAccess<P> {
    /// The caller.
    pub caller: Caller,
    /// The tenant's registry row.
    pub tenant: TenantRow,
    /// The caller's role in it.
    pub role: Role,
    _p: PhantomData<fn() -> P>,
}

/// The 404 answered for tenants that do not exist or that the caller cannot see.
pub fn tenant_not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("tenant {name:?} not found"))
}

impl<P: Permission> FromRequestParts<AppState> for TenantAccess<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        // Every path parameter is a valid name before the tenant's is looked up.
        let params = crate::path::validated_params(parts, state).await?;
        let raw = params
            .iter()
            .find(|(k, _)| k == "tenant")
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| ApiError::Internal("route has no {tenant} parameter".into()))?;
        let name = TenantName::parse(raw).map_err(|_| tenant_not_found(raw))?;
        let Some(role) = caller.principal.role_in(&name) else {
            return Err(tenant_not_found(&name));
        };
        let tenant = state
            .tenant_row(&name)
            .await?
            .ok_or_else(|| tenant_not_found(&name))?;
        if !P::allows(role) {
            return Err(ApiError::Forbidden(format!(
                "role {} cannot {}",
                role.as_str(),
                P::NAME
            )));
        }
        Ok(TenantAccess {
            caller,
            tenant,
            role,
            _p: PhantomData,
        })
    }
}
