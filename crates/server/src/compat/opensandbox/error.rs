//! Errors as OpenSandbox answers them: the HTTP status and `{"code", "message"}`. The codes are
//! Airlock's registry codes; the hint is kept at the end of the message.

use airlock_runtime::RuntimeError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::{ApiError, ErrorCode};

/// An error of the OpenSandbox front door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsError(pub ApiError);

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: String,
}

impl OsError {
    /// A bad field.
    pub fn invalid(field: &str, reason: impl std::fmt::Display) -> OsError {
        OsError(ApiError::invalid(field, reason))
    }

    /// The status it answers with.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }
}

impl From<ApiError> for OsError {
    fn from(e: ApiError) -> OsError {
        OsError(e)
    }
}

impl From<RuntimeError> for OsError {
    fn from(e: RuntimeError) -> OsError {
        OsError(ApiError::from(e))
    }
}

impl IntoResponse for OsError {
    fn into_response(self) -> Response {
        let ApiError { status, code, message, hint } = self.0;
        let message = if hint.is_empty() { message } else { format!("{message} (hint: {hint})") };
        let mut response = (status, axum::Json(Body { code, message })).into_response();
        response.extensions_mut().insert(ErrorCode(code));
        response
    }
}
