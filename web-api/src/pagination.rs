//! Cursor pagination, the same on every list: `?limit=` (1 to 500, 50 by default) and
//! `?cursor=` (opaque, from the previous page's `nextCursor`). A page with no `nextCursor` is
//! the last.

use axum::extract::{FromRequestParts, Query as AxumQuery};
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use crate::problem::ApiError;

/// Default page size.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page size.
pub const MAX_LIMIT: u32 = 500;
/// What [`decode_cursor`] can decode, as a regular expression: unpadded URL-safe base64 whose
/// unused trailing bits are zero, at least 2 characters long (one byte). (A cursor is only meaningful as a `nextCursor` of the same
/// list; others are refused too.)
pub const CURSOR_PATTERN: &str =
    "^([A-Za-z0-9_-]{4})*([A-Za-z0-9_-][AQgw]|[A-Za-z0-9_-]{2}[AEIMQUYcgkosw048])?$";

/// Query string parameters, refused with a 400 problem naming the parameter when malformed.
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        AxumQuery::<T>::from_request_parts(parts, state)
            .await
            .map(|AxumQuery(q)| Query(q))
            .map_err(|e| ApiError::bad_param("query", e.body_text()))
    }
}

/// Page parameters of a list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Most items to return (1 to 500, default 50).
    pub limit: Option<u32>,
    /// Where to continue: the `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageParams {
    /// The page size.
    pub fn limit(&self) -> Result<u32, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(l) if (1..=MAX_LIMIT).contains(&l) => Ok(l),
            Some(_) => Err(ApiError::bad_param(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            )),
        }
    }

    /// The decoded cursor.
    pub fn cursor(&self) -> Result<Option<String>, ApiError> {
        self.cursor.as_deref().map(decode_cursor).transpose()
    }
}

/// Encodes a position as an opaque cursor.
pub fn encode_cursor(position: &str) -> String {
    URL_SAFE_NO_PAD.encode(position.as_bytes())
}

/// One page out of `rows`, fetched with one row more than `limit` to learn whether more follow:
/// the first `limit` rows as views, and the cursor after the last of them when more follow.
pub fn page_of<R, V>(
    rows: Vec<R>,
    limit: u32,
    view: impl Fn(R) -> V,
    position: impl Fn(&V) -> String,
) -> (Vec<V>, Option<String>) {
    let more = rows.len() > limit as usize;
    let items: Vec<V> = rows.into_iter().take(limit as usize).map(view).collect();
    let next_cursor = more
        .then(|| items.last().map(|v| encode_cursor(&position(v))))
        .flatten();
    (items, next_cursor)
}

/// Decodes a cursor made by [`encode_cursor`]. An empty cursor is refused: no page has one.
pub fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    Some(cursor)
        .filter(|c| !c.is_empty())
        .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::bad_param("cursor", "is not a cursor returned by this API"))
}

/// Declares a page type of `$item` (OpenAPI needs a concrete name per page).
macro_rules! page_type {
    ($name:ident, $item:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            /// The items of this page.
            pub items: Vec<$item>,
            /// Cursor of the next page; absent on the last page.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub next_cursor: Option<String>,
        }
    };
}
pub(crate) use page_type;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        assert_eq!(decode_cursor(&encode_cursor("orders")).unwrap(), "orders");
        assert!(decode_cursor("***").is_err());
        assert!(decode_cursor("").is_err());
        let p = PageParams {
            limit: Some(0),
            cursor: None,
        };
        assert!(p.limit().is_err());
        assert_eq!(PageParams::default().limit().unwrap(), DEFAULT_LIMIT);
    }
}
