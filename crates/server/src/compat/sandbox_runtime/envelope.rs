//! The Sandbox Runtime's answer shape, `{"success": true, "data": {...}}` or
//! `{"success": false, "error": {"code", "message", "hint"}}` (with `data` too when a run
//! produced output before it failed), for every answer of its routes: unknown paths, wrong
//! methods, bad bodies and a missing API key included. The extractors here reject in that shape.

use std::collections::HashMap;

use airlock_runtime::RuntimeError;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::extract::ApiJson;
use crate::state::AppState;

/// A successful answer: `{"success": true, "data": DATA}`.
pub(super) fn ok(data: impl Serialize) -> Response {
    Json(json!({ "success": true, "data": data })).into_response()
}

/// An error of this front door: a registry error, and what a run produced before it failed.
#[derive(Debug)]
pub(super) struct SeError {
    error: ApiError,
    data: Option<Value>,
}

impl SeError {
    /// An error with a code from the registry.
    pub(super) fn new(code: &'static str, message: impl Into<String>, hint: impl Into<String>) -> SeError {
        SeError { error: ApiError::new(code, message, hint), data: None }
    }

    /// The same error, with the output of the run it ended.
    pub(super) fn with_data(self, data: impl Serialize) -> SeError {
        SeError { data: serde_json::to_value(data).ok(), ..self }
    }

    /// The error's code.
    pub(super) fn code(&self) -> &'static str {
        self.error.code
    }
}

/// The Sandbox Runtime's names for the runtime's errors that it has its own codes for; the
/// others keep Airlock's code.
fn translate(e: ApiError) -> ApiError {
    let code = match e.code {
        "SANDBOX_NOT_FOUND" => "SESSION_NOT_FOUND",
        "SANDBOX_START_FAILED" => "ISOLATION_FAILED",
        "SANDBOX_LIMIT_REACHED" | "COMMAND_LIMIT_REACHED" | "CONTEXT_LIMIT_REACHED" => "RESOURCE_LIMIT",
        _ => return e,
    };
    ApiError::new(code, e.message, e.hint)
}

impl From<ApiError> for SeError {
    fn from(e: ApiError) -> SeError {
        SeError { error: translate(e), data: None }
    }
}

impl From<RuntimeError> for SeError {
    fn from(e: RuntimeError) -> SeError {
        SeError::from(ApiError::from(e))
    }
}

impl IntoResponse for SeError {
    fn into_response(self) -> Response {
        let ApiError { status, code, message, hint } = self.error;
        let mut body = json!({
            "success": false,
            "error": { "code": code, "message": message, "hint": hint },
        });
        if let Some(data) = self.data {
            body["data"] = data;
        }
        let mut response = (status, Json(body)).into_response();
        // Read by the metrics layer, which counts errors by code.
        response.extensions_mut().insert(ErrorCode(code));
        response
    }
}

/// The answer to a path under `/workspace/se/` that no route has.
pub(super) async fn no_route(uri: Uri) -> SeError {
    SeError::new(
        "ROUTE_NOT_FOUND",
        format!("no route {}", uri.path()),
        "the Sandbox Runtime routes are /workspace/se/ session, status, execute_code, execute, upload, \
         create, download, files and healthy",
    )
}

/// The answer to a route asked with a method it does not take.
pub(super) async fn wrong_method(method: Method, uri: Uri) -> SeError {
    SeError::new(
        "METHOD_NOT_ALLOWED",
        format!("{} does not take {method}", uri.path()),
        "see the Sandbox Runtime routes and their methods in the documentation",
    )
}

/// A JSON body, parsed as strictly as the native API's; rejected in this front door's shape.
pub(super) struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = SeError;

    async fn from_request(req: Request, state: &AppState) -> Result<Body<T>, SeError> {
        let ApiJson(value) = ApiJson::<T>::from_request(req, state).await?;
        Ok(Body(value))
    }
}

/// Longest session name.
const MAX_NAME: usize = 128;

/// The session a request names (`{session_id}` of its route), the caller's key, and the
/// file path of the routes that end in one.
#[derive(Debug, Clone)]
pub(super) struct Session {
    /// The key id; none on a server without keys.
    pub(super) owner: Option<String>,
    /// The client's name for the session.
    pub(super) name: String,
    /// The route's `{*path}`, if it has one.
    pub(super) path: Option<String>,
}

impl Session {
    /// The owner, as the runtime takes it.
    pub(super) fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }
}

/// Check a client's session name: 1 to 128 letters, digits, `-`, `_` and `.`.
pub(super) fn check_name(name: &str) -> Result<(), SeError> {
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(fine) {
        return Err(SeError::from(ApiError::invalid(
            "session_id",
            format!("{name:?} is not 1 to {MAX_NAME} letters, digits, '-', '_' or '.'"),
        )));
    }
    Ok(())
}

impl FromRequestParts<AppState> for Session {
    type Rejection = SeError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Session, SeError> {
        let mut params = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| SeError::from(ApiError::invalid("session_id", e.body_text())))?
            .0;
        let name = params.remove("session_id").unwrap_or_default();
        check_name(&name)?;
        let caller = Caller::from_request_parts(parts, state).await?;
        Ok(Session { owner: caller.owner, name, path: params.remove("path") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_codes_take_the_sandbox_runtime_names() {
        let missing = SeError::from(RuntimeError::SandboxNotFound { id: "sbx_1".into() });
        assert_eq!((missing.code(), missing.error.status.as_u16()), ("SESSION_NOT_FOUND", 404));
        let busy = SeError::from(RuntimeError::CommandLimit { max: 1 });
        assert_eq!(busy.code(), "RESOURCE_LIMIT");
        let bad = SeError::from(ApiError::invalid("code", "missing"));
        assert_eq!(bad.code(), "INVALID_ARGUMENT");
    }

    #[test]
    fn session_names_are_plain_words() {
        for good in ["test", "my_session", "a.b-c", &"x".repeat(MAX_NAME)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a/b", "..%2f", "a b", "é", &"x".repeat(MAX_NAME + 1)] {
            assert_eq!(check_name(bad).map_err(|e| e.code()), Err("INVALID_ARGUMENT"), "{bad}");
        }
    }
}
