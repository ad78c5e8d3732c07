//! Who is calling: the API key in `Authorization: Bearer KEY` or `X-API-Key: KEY`, looked up by
//! its hash. The key's id owns the sandboxes made with it; every lookup of a sandbox is by
//! owner, so another key's sandbox is a 404, not a 403 that would confirm it exists.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;

use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key id; none on a server without keys.
    pub owner: Option<String>,
}

impl Caller {
    /// The owner, as the runtime takes it.
    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }
}

/// The secret a request carries, if any. `OPEN-SANDBOX-API-KEY` is what OpenSandbox clients send.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    for name in ["x-api-key", "open-sandbox-api-key"] {
        if let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) {
            return Some(value.trim());
        }
    }
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(
        "UNAUTHORIZED",
        message,
        "send `Authorization: Bearer KEY` or `X-API-Key: KEY` with a key from `airlock keys create`",
    )
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        // Keys made with `airlock keys create` while the server runs apply at once.
        if !state.require_keys && !state.runtime.with_store(|s| s.has_keys())? {
            return Ok(Caller { owner: None });
        }
        let secret =
            presented_key(&parts.headers).ok_or_else(|| unauthorized("no API key in the request"))?;
        let hash = airlock_runtime::keys::hash_secret(secret);
        match state.runtime.with_store(|s| s.key_by_hash(&hash))? {
            Some(key) => Ok(Caller { owner: Some(key.id) }),
            None => Err(unauthorized("the API key is not known to this server")),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn keys_come_from_either_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented_key(&headers), None);
        headers.insert("authorization", HeaderValue::from_static("Bearer ak_1"));
        assert_eq!(presented_key(&headers), Some("ak_1"));
        headers.insert("authorization", HeaderValue::from_static("Basic xyz"));
        assert_eq!(presented_key(&headers), None);
        headers.insert("open-sandbox-api-key", HeaderValue::from_static("ak_3"));
        assert_eq!(presented_key(&headers), Some("ak_3"));
        headers.insert("x-api-key", HeaderValue::from_static("ak_2"));
        assert_eq!(presented_key(&headers), Some("ak_2"));
    }
}
