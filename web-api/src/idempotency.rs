//! `Idempotency-Key` on creates: the first answer is stored per scope (tenant) and key with a
//! hash of the request, and returned again on a retry of the same request; the same key with a
//! different request is refused (422); a retry while the first is still running gets 409.
//! Answers with a 5xx status are not stored, so a retry can succeed. Keys are kept 24 hours.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::problem::{ApiError, PROBLEM_JSON};
use crate::store::Idempotency;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// Response header set on replayed answers.
pub const REPLAYED: &str = "idempotent-replayed";
/// Longest key, in characters.
pub const MAX_KEY_LEN: usize = 255;
/// What a key is made of: visible ASCII characters (`!` to `~`), as a regular expression.
/// [`is_valid_key`] is the same rule in code.
pub const KEY_PATTERN: &str = "^[!-~]+$";

/// Whether `key` is an acceptable `Idempotency-Key`: 1 to [`MAX_KEY_LEN`] visible ASCII
/// characters.
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic())
}

/// What a create handler produced: status, body to send, and body to store for replays
/// (differs when the answer holds a secret that must never be stored).
pub struct Created {
    /// Status.
    pub status: StatusCode,
    /// Body sent now.
    pub body: Value,
    /// Body stored for replays.
    pub stored: Value,
}

fn key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(HEADER) else {
        return Ok(None);
    };
    let v = v.to_str().ok().filter(|s| is_valid_key(s)).ok_or_else(|| {
        ApiError::bad_param(
            "Idempotency-Key",
            format!("must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
        )
    })?;
    Ok(Some(v.to_string()))
}

fn json_response(status: StatusCode, body: String) -> Response {
    let ct = if status.is_client_error() || status.is_server_error() {
        PROBLEM_JSON
    } else {
        "application/json"
    };
    let mut res = (status, body).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    res
}

/// Runs `create` at most once per `Idempotency-Key` (when the header is present) in `scope`.
/// `fingerprint` identifies the request (operation and body).
pub async fn run<F, Fut>(
    state: &AppState,
    scope: &str,
    headers: &HeaderMap,
    fingerprint: &[u8],
    create: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Created, ApiError>>,
{
    let Some(key) = key(headers)? else {
        let c = create().await?;
        return Ok(json_response(c.status, c.body.to_string()));
    };
    let hash: String = Sha256::digest(fingerprint)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let now = chrono::Utc::now().timestamp_millis();
    match state
        .store
        .idempotency_begin(scope, &key, &hash, now)
        .await?
    {
        Idempotency::Fresh => {}
        Idempotency::Replay { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut res = json_response(status, body);
            res.headers_mut()
                .insert(REPLAYED, HeaderValue::from_static("true"));
            return Ok(res);
        }
        Idempotency::Mismatch => {
            return Err(ApiError::IdempotencyKeyReused(
                "this Idempotency-Key was already used with a different request".into(),
            ));
        }
        Idempotency::InProgress => return Err(ApiError::IdempotencyKeyInProgress),
    }
    match create().await {
        Ok(c) => {
            state
                .store
                .idempotency_finish(scope, &key, c.status.as_u16(), &c.stored.to_string())
                .await?;
            Ok(json_response(c.status, c.body.to_string()))
        }
        Err(e) if e.status().is_server_error() => {
            state.store.idempotency_abort(scope, &key).await?;
            Err(e)
        }
        Err(e) => {
            let body = serde_json::to_string(&e.problem()).unwrap_or_default();
            state
                .store
                .idempotency_finish(scope, &key, e.status().as_u16(), &body)
                .await?;
            Err(e)
        }
    }
}
