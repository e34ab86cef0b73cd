//! The worker's HTTP endpoints: `/metrics` (Prometheus text), `/healthz` (liveness: the
//! delivery loop is not stuck) and `/readyz` (connected to the broker, the sink set up and
//! working, dead letters publishable). Both probes answer `ok`/`ready` with 200, or 503 with
//! a line `<reason>: <message>` whose reason is stable.

use crate::health::{Health, Stage};
use crate::metrics::Metrics;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    health: Health,
}

/// The router of the endpoints.
pub fn app(metrics: Metrics, health: Health) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(live))
        .route("/readyz", get(ready))
        .with_state(AppState { metrics, health })
}

async fn render_metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

async fn live(State(s): State<AppState>) -> impl IntoResponse {
    match s.health.stalled() {
        None => (StatusCode::OK, "ok".to_string()),
        Some((stage, running)) => {
            let what = match stage {
                Stage::Fetch => "pulling from the source",
                Stage::Deliver => "delivering to the sink",
                Stage::Keepalive => "sending in-progress acknowledgements",
            };
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("DeliveryStalled: {what} has taken {} s", running.as_secs()),
            )
        }
    }
}

async fn ready(State(s): State<AppState>) -> impl IntoResponse {
    match s.health.readiness() {
        Ok(()) => (StatusCode::OK, "ready".to_string()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}: {}", why.reason(), why.message()),
        ),
    }
}
