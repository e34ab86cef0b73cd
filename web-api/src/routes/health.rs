//! `/healthz`, `/readyz`, `/metrics` and `/openapi.json`: no authentication.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::problem::{ApiError, Problem};

/// Health of the process or of its dependencies.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// The routes.
pub fn documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: the store and the Kubernetes API both answer.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "A dependency is down", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let (store, kube) = tokio::join!(state.store.ping(), state.kube.ping());
    let mut down = vec![];
    if let Err(e) = store {
        down.push(format!("store: {e}"));
    }
    if let Err(e) = kube {
        down.push(format!("Kubernetes API: {e}"));
    }
    if down.is_empty() {
        Ok(Json(Health {
            status: "ok".into(),
        }))
    } else {
        Err(ApiError::Unavailable(format!(
            "not ready: {}",
            down.join("; ")
        )))
    }
}

/// Prometheus metrics: request counts and latencies by method, route template and status.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition", body = String,
        content_type = "text/plain")))]
pub async fn metrics(state: State<AppState>) -> Response {
    crate::metrics::serve(state).await.into_response()
}

/// This API's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub async fn openapi_json() -> Response {
    Json(crate::openapi::document().clone()).into_response()
}
