//! The one registry of error codes the HTTP API can answer with, and the error body every one
//! of them has: `{"error": {"code", "message", "hint"}}`.

use airlock_runtime::{ErrorClass, RuntimeError};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Every code, its HTTP status and when it happens. `docs/troubleshooting.md` has an entry for
/// each; a test keeps the two in step.
pub const REGISTRY: &[(&str, u16, &str)] = &[
    ("INVALID_ARGUMENT", 400, "a field of the request is out of range or malformed"),
    ("IMAGE_NOT_MAPPED", 400, "the OpenSandbox image is not one the server maps to a template"),
    ("MALFORMED_JSON", 400, "the body is not JSON of the expected shape"),
    ("UNSUPPORTED_MEDIA_TYPE", 415, "the body is not sent as application/json"),
    ("PAYLOAD_TOO_LARGE", 413, "the body is larger than the server accepts"),
    ("UNAUTHORIZED", 401, "no API key, or one the server does not know"),
    ("ROUTE_NOT_FOUND", 404, "no such path"),
    ("METHOD_NOT_ALLOWED", 405, "the path exists but not with this method"),
    ("SANDBOX_NOT_FOUND", 404, "no sandbox with this id belongs to the caller"),
    ("COMMAND_NOT_FOUND", 404, "no command with this id in the sandbox"),
    ("CONTEXT_NOT_FOUND", 404, "no code context with this id in the sandbox"),
    ("CONTEXT_LIMIT_REACHED", 429, "the sandbox has as many code contexts as it may"),
    ("CONTEXT_START_FAILED", 503, "a code context's interpreter could not start"),
    ("SANDBOX_STATE_CONFLICT", 409, "the sandbox's state does not allow the action"),
    ("COMMAND_NOT_RUNNING", 409, "the command has already ended"),
    ("SANDBOX_LIMIT_REACHED", 429, "the server has as many sandboxes as it allows"),
    ("COMMAND_LIMIT_REACHED", 429, "as many commands run as the server allows"),
    ("SANDBOX_START_FAILED", 500, "the engine could not start the sandbox"),
    ("AGENT_UNAVAILABLE", 503, "the sandbox's agent does not answer"),
    ("AGENT_REFUSED", 400, "the sandbox's agent refused the request"),
    ("NETWORK_POLICY_INVALID", 400, "a network policy's mode, action or target is malformed"),
    ("NETWORK_HOST_FORBIDDEN", 403, "the server does not let sandboxes share its network"),
    ("NETWORK_MODE_FIXED", 409, "a sandbox cannot move between its own network and the host's"),
    ("PORT_UNREACHABLE", 503, "nothing listens on that port inside the sandbox"),
    ("LINK_INVALID", 403, "an ingress link that this server did not sign, or one revoked since"),
    ("LINK_EXPIRED", 403, "an ingress link past its expiry"),
    ("STORE_FAILED", 500, "the SQLite store failed"),
    ("HOST_IO_FAILED", 500, "a file or process operation on the server failed"),
    ("NOT_READY", 503, "the server is starting or stopping"),
    ("FILE_NOT_FOUND", 404, "the path, or a directory on the way, does not exist in the sandbox"),
    ("FILE_PERMISSION_DENIED", 403, "the sandbox may not do this there (e.g. write outside /workspace)"),
    ("FILE_EXISTS", 409, "something is already at the path"),
    ("DIRECTORY_NOT_EMPTY", 409, "a directory with contents was removed without `recursive`"),
    ("FILE_WRONG_TYPE", 400, "a directory, FIFO or device where a file is needed, or the reverse"),
    ("FILE_INVALID_PATH", 400, "the path is empty, holds a NUL byte, is too long or loops"),
    ("FILE_TOO_LARGE", 400, "beyond the sandbox's file size limit, or the text API's 16 MiB"),
    ("FILE_NOT_UTF8", 400, "a file read as text is not UTF-8"),
    ("FILE_OPERATION_FAILED", 400, "a file operation failed otherwise: a full disk, a cross-device move"),
    ("RANGE_NOT_SATISFIABLE", 416, "the requested byte range lies beyond the end of the file"),
    ("EXECUTOR_BUSY", 503, "MAX_CONCURRENT_EXECUTIONS executions already run"),
    ("SESSION_NOT_FOUND", 404, "Sandbox Runtime: no session of this name belongs to the caller"),
    ("SESSION_EXPIRED", 410, "Sandbox Runtime: the session ended when its time to live ran out"),
    ("SESSION_EXISTS", 409, "Sandbox Runtime: a session of this name exists already"),
    ("EXECUTION_TIMEOUT", 408, "Sandbox Runtime: a run was stopped at its timeout"),
    ("RESOURCE_LIMIT", 429, "Sandbox Runtime: a memory, process or server limit stopped the work"),
    ("ISOLATION_FAILED", 500, "Sandbox Runtime: the session's sandbox could not start or went away"),
    ("NETWORK_DISABLED", 403, "Sandbox Runtime: the session has no network for what the code asked"),
];

/// An error as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code from [`REGISTRY`].
    pub code: &'static str,
    /// What was wrong, naming the input.
    pub message: String,
    /// What to do.
    pub hint: String,
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Code, message and hint.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code, e.g. `SANDBOX_NOT_FOUND`; `docs/troubleshooting.md` explains each.
    pub code: String,
    /// What was wrong.
    pub message: String,
    /// What to do.
    pub hint: String,
}

impl ApiError {
    /// An error with a code from the registry.
    pub fn new(code: &'static str, message: impl Into<String>, hint: impl Into<String>) -> ApiError {
        let status = REGISTRY
            .iter()
            .find(|(c, _, _)| *c == code)
            .and_then(|(_, s, _)| StatusCode::from_u16(*s).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError { status, code, message: message.into(), hint: hint.into() }
    }

    /// A bad field.
    pub fn invalid(field: &str, reason: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            "INVALID_ARGUMENT",
            format!("invalid {field}: {reason}"),
            format!("fix `{field}` and send the request again"),
        )
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> ApiError {
        let status = match e.class() {
            ErrorClass::Invalid => StatusCode::BAD_REQUEST,
            ErrorClass::Forbidden => StatusCode::FORBIDDEN,
            ErrorClass::NotFound => StatusCode::NOT_FOUND,
            ErrorClass::Conflict => StatusCode::CONFLICT,
            ErrorClass::LimitReached => StatusCode::TOO_MANY_REQUESTS,
            ErrorClass::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(code = e.code(), error = %e, "internal error");
        }
        ApiError { status, code: e.code(), message: e.to_string(), hint: e.hint() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail { code: self.code.to_owned(), message: self.message, hint: self.hint },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        // Read by the metrics layer, which counts errors by code.
        response.extensions_mut().insert(ErrorCode(self.code));
        response
    }
}

/// The code of an error response, for metrics.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

#[cfg(test)]
mod tests {
    use airlock_runtime::FileErrorKind;

    use super::*;

    #[test]
    fn every_code_has_a_status_and_is_listed_once() {
        for (i, (code, status, _)) in REGISTRY.iter().enumerate() {
            assert!(StatusCode::from_u16(*status).is_ok(), "{code}");
            assert!(!REGISTRY[i + 1..].iter().any(|(c, _, _)| c == code), "{code} twice");
        }
    }

    #[test]
    fn runtime_codes_are_registered_with_their_status() {
        let samples = [
            RuntimeError::SandboxNotFound { id: "x".into() },
            RuntimeError::CommandLimit { max: 1 },
            RuntimeError::Invalid { field: "f".into(), reason: "r".into() },
            RuntimeError::AgentUnavailable { id: "x".into(), reason: "r".into() },
            RuntimeError::ContextNotFound { sandbox_id: "x".into(), id: "c".into() },
            RuntimeError::ContextLimit { max: 1 },
            RuntimeError::LinkRefused { reason: airlock_runtime::LinkRefusal::Expired },
            RuntimeError::LinkRefused { reason: airlock_runtime::LinkRefusal::Forged },
            RuntimeError::ContextStartFailed {
                sandbox_id: "x".into(),
                language: "python",
                message: "m".into(),
            },
        ];
        let files = [
            FileErrorKind::NotFound,
            FileErrorKind::PermissionDenied,
            FileErrorKind::AlreadyExists,
            FileErrorKind::NotADirectory,
            FileErrorKind::IsADirectory,
            FileErrorKind::NotEmpty,
            FileErrorKind::NotARegularFile,
            FileErrorKind::InvalidPath,
            FileErrorKind::TooLarge,
            FileErrorKind::Other,
        ]
        .map(|kind| RuntimeError::File { sandbox_id: "x".into(), kind, message: "m".into() });
        for e in samples.into_iter().chain(files) {
            assert!(REGISTRY.iter().any(|(c, _, _)| *c == e.code()), "{} is not registered", e.code());
            let api = ApiError::from(e);
            let registered = ApiError::new(api.code, "", "");
            assert_eq!(api.status, registered.status, "{}", api.code);
        }
    }

    #[test]
    fn the_troubleshooting_guide_has_an_entry_per_code() {
        let guide = include_str!("../../../docs/troubleshooting.md");
        for (code, _, _) in REGISTRY {
            assert!(guide.contains(&format!("### {code}")), "docs/troubleshooting.md lacks `### {code}`");
        }
    }
}
