//! Who may use a sandbox's execd and egress APIs: a caller with the owner's API key (in any of
//! the headers [`crate::auth`] reads, or `OPEN-SANDBOX-API-KEY`), or one holding the sandbox's
//! access token in `X-EXECD-ACCESS-TOKEN`, which the lifecycle API hands out with the
//! sandbox's endpoints so that the API key need not travel with every execd request.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;

use super::error::OsError;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// The header that carries a sandbox's access token.
pub const TOKEN_HEADER: &str = "x-execd-access-token";

/// A sandbox the request may use: from the route's `{sandbox_id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxAccess {
    /// The sandbox.
    pub id: String,
    /// Its owner, as the runtime's calls take it.
    pub owner: Option<String>,
}

impl SandboxAccess {
    /// The owner, as the runtime takes it.
    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }
}

impl FromRequestParts<AppState> for SandboxAccess {
    type Rejection = OsError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<SandboxAccess, OsError> {
        let params = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| OsError::invalid("sandbox_id", e))?;
        let id =
            params.get("sandbox_id").cloned().ok_or_else(|| OsError::invalid("sandbox_id", "missing"))?;
        if let Some(token) = parts.headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()) {
            let owner = state.runtime.owner_by_token(&id, token.trim())?;
            return Ok(SandboxAccess { id, owner });
        }
        let caller = Caller::from_request_parts(parts, state).await.map_err(OsError::from)?;
        state.runtime.get(caller.owner(), &id).map_err(|e| OsError(ApiError::from(e)))?;
        Ok(SandboxAccess { id, owner: caller.owner })
    }
}
