//! `/healthz`, `/readyz` and `/openapi.json`: no authentication, and nothing internal in their
//! answers. (`/metrics` is served on its own listener: [`crate::metrics_app`].)

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

/// Health of the process or of its dependencies.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` (liveness), `ready` or `unavailable` (readiness).
    pub status: String,
}

/// The routes.
pub fn documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
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

/// When each dependency began failing, for `/readyz`.
#[derive(Debug, Default)]
pub struct Readiness {
    store_down_since: Mutex<Option<Instant>>,
    kube_down_since: Mutex<Option<Instant>>,
}

/// Longest wait for one dependency's answer in `/readyz`.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Records a probe's outcome; returns how long the dependency has been failing (`None` when
/// it answered).
fn note(since: &Mutex<Option<Instant>>, ok: bool) -> Option<Duration> {
    let mut since = since.lock().unwrap_or_else(|e| e.into_inner());
    if ok {
        *since = None;
        None
    } else {
        Some(since.get_or_insert_with(Instant::now).elapsed())
    }
}

/// Whether the API is ready, given for how long each dependency has been failing (`None`: it
/// answers). One dependency failing for less than `grace` keeps it ready (ingest works from its
/// caches meanwhile); both failing, or one failing for `grace` or longer, makes it unready.
pub fn is_ready(
    store_down: Option<Duration>,
    kube_down: Option<Duration>,
    grace: Duration,
) -> bool {
    match (store_down, kube_down) {
        (None, None) => true,
        (Some(_), Some(_)) => false,
        (Some(d), None) | (None, Some(d)) => d < grace,
    }
}

fn probe_ok<E: std::fmt::Display>(
    what: &str,
    outcome: Result<Result<(), E>, tokio::time::error::Elapsed>,
) -> bool {
    match outcome {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: {what} does not answer");
            false
        }
        Err(_) => {
            tracing::warn!("readiness: {what} did not answer in time");
            false
        }
    }
}

/// Readiness: 200 `{"status":"ready"}` or 503 `{"status":"unavailable"}`, never the reason
/// (it goes to the log). Ready while the store and the Kubernetes API answer, and while only
/// one of them has been failing for less than the readiness grace period (30 s by default).
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Not ready", body = Health),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let (store, kube) = tokio::join!(
        tokio::time::timeout(PROBE_TIMEOUT, state.store.ping()),
        tokio::time::timeout(PROBE_TIMEOUT, state.kube.ping())
    );
    let store_ok = probe_ok("the store", store);
    let kube_ok = probe_ok("the Kubernetes API", kube);
    let ready = is_ready(
        note(&state.readiness.store_down_since, store_ok),
        note(&state.readiness.kube_down_since, kube_ok),
        state.config.readiness_grace,
    );
    let (status, word) = if ready {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    let mut res = (
        status,
        Json(Health {
            status: word.into(),
        }),
    )
        .into_response();
    res.extensions_mut().insert(super::DeliberateBody);
    res
}

/// This API's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub async fn openapi_json() -> Response {
    Json(crate::openapi::document().clone()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_dependency_briefly_down_keeps_the_api_ready() {
        let grace = Duration::from_secs(30);
        let brief = Some(Duration::from_secs(5));
        let long = Some(Duration::from_secs(31));
        assert!(is_ready(None, None, grace));
        assert!(is_ready(brief, None, grace));
        assert!(is_ready(None, brief, grace));
        assert!(!is_ready(long, None, grace));
        assert!(!is_ready(None, long, grace));
        assert!(!is_ready(brief, brief, grace));
    }
}
