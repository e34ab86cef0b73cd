//! Path parameters, validated before anything uses them.
//!
//! Every name in a path (`{tenant}`, `{stream}`, `{pipeline}`, a token `{id}` …) must be a
//! DNS-1123 label — tenants at most [`sluice_core::names::MAX_TENANT_NAME`] characters so that
//! their namespace `sluice-<tenant>` stays a label, everything else at most 63. Anything else
//! answers 400 `invalid-name` naming the parameter, before the value reaches the store, the
//! Kubernetes API, the broker, a metric label or a usage row. Handlers take [`ValidPath`]
//! instead of axum's `Path`; [`crate::auth::TenantAccess`] validates the same way.

use axum::extract::{FromRequestParts, Path, RawPathParams};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::TenantName;
use crate::problem::ApiError;

/// Longest name of a path parameter other than `tenant`.
pub const MAX_NAME: usize = 63;

/// Why the value of the path parameter `param` is not acceptable, if it is not.
pub fn check_param(param: &str, value: &str) -> Result<(), ApiError> {
    if param == "tenant" {
        return TenantName::parse(value)
            .map(|_| ())
            .map_err(|e| ApiError::invalid_name(param, e.0));
    }
    match sluice_core::names::check_name(value, MAX_NAME) {
        Some(message) => Err(ApiError::invalid_name(param, message)),
        None => Ok(()),
    }
}

/// The route's path parameters, each validated with [`check_param`], as `(name, value)`.
pub async fn validated_params<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
) -> Result<Vec<(String, String)>, ApiError> {
    let raw = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|e| ApiError::invalid_name("path", e.body_text()))?;
    raw.iter()
        .map(|(name, value)| {
            check_param(name, value)?;
            Ok((name.to_string(), value.to_string()))
        })
        .collect()
}

/// Like axum's `Path<T>`, but every parameter is first checked with [`check_param`]
/// (400 `invalid-name` naming the parameter).
#[derive(Debug, Clone)]
pub struct ValidPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ValidPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        validated_params(parts, state).await?;
        let Path(value) = Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid_name("path", e.body_text()))?;
        Ok(ValidPath(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(r: Result<(), ApiError>) -> Option<String> {
        r.err().map(|e| e.problem().errors[0].field.clone())
    }

    #[test]
    fn names_are_dns_labels_and_tenants_fit_their_namespace() {
        assert!(check_param("stream", "orders-2").is_ok());
        assert!(check_param("id", "0b5e7f3c-5f0e-4c4e-9d7c-3a1f2e4d5c6b").is_ok());
        for bad in [
            "held?x=1", "Orders", "..", "", "a/b", "-a", "a-", "a.b", "é",
        ] {
            assert_eq!(field(check_param("stream", bad)).as_deref(), Some("stream"));
        }
        assert!(check_param("pipeline", &"p".repeat(63)).is_ok());
        assert!(check_param("pipeline", &"p".repeat(64)).is_err());
        assert!(check_param("tenant", &"t".repeat(56)).is_ok());
        assert_eq!(
            field(check_param("tenant", &"t".repeat(57))).as_deref(),
            Some("tenant")
        );
    }
}
