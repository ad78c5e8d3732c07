//! The runtime's errors. Each has a stable code, a message naming what was wrong and a hint;
//! [`ErrorClass`] tells a front door which family it belongs to (the HTTP server turns it into
//! a status code) without the runtime knowing anything of HTTP.

use airlock_agent::protocol::FileErrorKind;
use thiserror::Error;

use crate::egress::policy::PolicyError;

use crate::links::LinkRefusal;
use crate::model::SandboxState;

/// The family of an error, for front doors to map (400, 403, 404, 409, 429, 503, 500 over HTTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request itself is wrong.
    Invalid,
    /// The sandbox may not do this (a file operation its user is not allowed).
    Forbidden,
    /// What it names does not exist (or belongs to someone else).
    NotFound,
    /// It conflicts with the current state.
    Conflict,
    /// A limit on sandboxes or commands is reached; try later.
    LimitReached,
    /// A dependency (the sandbox's agent) is not answering.
    Unavailable,
    /// Something broke on the server's side.
    Internal,
}

/// Everything the runtime can fail with.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// A field of a request is out of range or malformed.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field, as the API names it.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No sandbox with this id is visible to the caller.
    #[error("no sandbox {id}")]
    SandboxNotFound {
        /// The id asked for.
        id: String,
    },
    /// No command with this id in the sandbox.
    #[error("no command {id} in sandbox {sandbox_id}")]
    CommandNotFound {
        /// The sandbox.
        sandbox_id: String,
        /// The command id asked for.
        id: String,
    },
    /// No code context with this id in the sandbox.
    #[error("no context {id} in sandbox {sandbox_id}")]
    ContextNotFound {
        /// The sandbox.
        sandbox_id: String,
        /// The context id asked for.
        id: String,
    },
    /// The sandbox has as many contexts as it may.
    #[error("the sandbox already has {max} contexts, the most it may have")]
    ContextLimit {
        /// The maximum.
        max: usize,
    },
    /// A context's interpreter could not be started.
    #[error("sandbox {sandbox_id}: the {language} context could not start: {message}")]
    ContextStartFailed {
        /// The sandbox.
        sandbox_id: String,
        /// The context's language.
        language: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The sandbox is in a state that does not allow the action.
    #[error("sandbox {id} is {state}; cannot {action}", state = state.as_str())]
    WrongState {
        /// The sandbox.
        id: String,
        /// Its state.
        state: SandboxState,
        /// What was asked.
        action: &'static str,
    },
    /// The command has already ended.
    #[error("command {id} is not running; cannot {action}")]
    CommandEnded {
        /// The command.
        id: String,
        /// What was asked.
        action: &'static str,
    },
    /// As many sandboxes as the server allows exist.
    #[error("the server already has {max} sandboxes, its maximum")]
    SandboxLimit {
        /// The configured maximum.
        max: usize,
    },
    /// As many commands as the server allows are running.
    #[error("{max} commands are already running, the server's maximum")]
    CommandLimit {
        /// The configured maximum.
        max: usize,
    },
    /// The engine could not start the sandbox.
    #[error("sandbox {id} could not start: {message}")]
    StartFailed {
        /// The sandbox.
        id: String,
        /// The engine's error code (E-codes of `airlock run`), when it gave one.
        engine_code: Option<String>,
        /// What went wrong.
        message: String,
        /// The engine's hint.
        hint: Option<String>,
    },
    /// The sandbox's agent stopped answering.
    #[error("the agent of sandbox {id} is not answering: {reason}")]
    AgentUnavailable {
        /// The sandbox.
        id: String,
        /// Why it is considered gone.
        reason: String,
    },
    /// The agent refused or failed a request.
    #[error("sandbox {id}: {message}")]
    AgentRefused {
        /// The sandbox.
        id: String,
        /// The agent's message.
        message: String,
    },
    /// A file operation in the sandbox failed; the agent's message names the path.
    #[error("sandbox {sandbox_id}: {message}")]
    File {
        /// The sandbox.
        sandbox_id: String,
        /// What kind of failure, as the agent classified it.
        kind: FileErrorKind,
        /// The agent's message.
        message: String,
    },
    /// A network policy is malformed.
    #[error(transparent)]
    NetworkPolicy(#[from] PolicyError),
    /// The server does not let sandboxes share its network.
    #[error("network mode host is not allowed on this server")]
    HostNetworkForbidden,
    /// A running sandbox cannot move between its own network and the host's.
    #[error("sandbox {id}: the network mode cannot change between host and {other} while it exists")]
    NetworkModeFixed {
        /// The sandbox.
        id: String,
        /// The other mode.
        other: &'static str,
    },
    /// Nothing in the sandbox answered on the port.
    #[error("sandbox {id}: {message}")]
    PortUnreachable {
        /// The sandbox.
        id: String,
        /// The agent's reason, naming the port.
        message: String,
    },
    /// A signed ingress link was refused.
    #[error("{}", match reason {
        LinkRefusal::Forged => "the link is not one this server signed",
        LinkRefusal::Expired => "the link has expired",
        LinkRefusal::Revoked => "the link was revoked",
    })]
    LinkRefused {
        /// Why.
        reason: LinkRefusal,
    },
    /// The SQLite store failed.
    #[error("store: {0}")]
    Store(#[from] rusqlite::Error),
    /// A file or process operation on the host failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the path.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl RuntimeError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            RuntimeError::Invalid { .. } => "INVALID_ARGUMENT",
            RuntimeError::SandboxNotFound { .. } => "SANDBOX_NOT_FOUND",
            RuntimeError::CommandNotFound { .. } => "COMMAND_NOT_FOUND",
            RuntimeError::ContextNotFound { .. } => "CONTEXT_NOT_FOUND",
            RuntimeError::ContextLimit { .. } => "CONTEXT_LIMIT_REACHED",
            RuntimeError::ContextStartFailed { .. } => "CONTEXT_START_FAILED",
            RuntimeError::WrongState { .. } => "SANDBOX_STATE_CONFLICT",
            RuntimeError::CommandEnded { .. } => "COMMAND_NOT_RUNNING",
            RuntimeError::SandboxLimit { .. } => "SANDBOX_LIMIT_REACHED",
            RuntimeError::CommandLimit { .. } => "COMMAND_LIMIT_REACHED",
            RuntimeError::StartFailed { .. } => "SANDBOX_START_FAILED",
            RuntimeError::AgentUnavailable { .. } => "AGENT_UNAVAILABLE",
            RuntimeError::AgentRefused { .. } => "AGENT_REFUSED",
            RuntimeError::File { kind, .. } => match kind {
                FileErrorKind::NotFound => "FILE_NOT_FOUND",
                FileErrorKind::PermissionDenied => "FILE_PERMISSION_DENIED",
                FileErrorKind::AlreadyExists => "FILE_EXISTS",
                FileErrorKind::NotEmpty => "DIRECTORY_NOT_EMPTY",
                FileErrorKind::NotADirectory
                | FileErrorKind::IsADirectory
                | FileErrorKind::NotARegularFile => "FILE_WRONG_TYPE",
                FileErrorKind::InvalidPath => "FILE_INVALID_PATH",
                FileErrorKind::TooLarge => "FILE_TOO_LARGE",
                FileErrorKind::Other => "FILE_OPERATION_FAILED",
            },
            RuntimeError::NetworkPolicy(e) => e.code(),
            RuntimeError::HostNetworkForbidden => "NETWORK_HOST_FORBIDDEN",
            RuntimeError::NetworkModeFixed { .. } => "NETWORK_MODE_FIXED",
            RuntimeError::PortUnreachable { .. } => "PORT_UNREACHABLE",
            RuntimeError::LinkRefused { reason: LinkRefusal::Expired } => "LINK_EXPIRED",
            RuntimeError::LinkRefused { .. } => "LINK_INVALID",
            RuntimeError::Store(_) => "STORE_FAILED",
            RuntimeError::Io { .. } => "HOST_IO_FAILED",
        }
    }

    /// The family, for front doors.
    pub fn class(&self) -> ErrorClass {
        match self {
            RuntimeError::Invalid { .. }
            | RuntimeError::AgentRefused { .. }
            | RuntimeError::NetworkPolicy(_) => ErrorClass::Invalid,
            RuntimeError::HostNetworkForbidden | RuntimeError::LinkRefused { .. } => ErrorClass::Forbidden,
            RuntimeError::NetworkModeFixed { .. } => ErrorClass::Conflict,
            RuntimeError::PortUnreachable { .. } => ErrorClass::Unavailable,
            RuntimeError::SandboxNotFound { .. }
            | RuntimeError::CommandNotFound { .. }
            | RuntimeError::ContextNotFound { .. } => ErrorClass::NotFound,
            RuntimeError::WrongState { .. } | RuntimeError::CommandEnded { .. } => ErrorClass::Conflict,
            RuntimeError::SandboxLimit { .. }
            | RuntimeError::CommandLimit { .. }
            | RuntimeError::ContextLimit { .. } => ErrorClass::LimitReached,
            RuntimeError::AgentUnavailable { .. } | RuntimeError::ContextStartFailed { .. } => {
                ErrorClass::Unavailable
            }
            RuntimeError::File { kind, .. } => match kind {
                FileErrorKind::NotFound => ErrorClass::NotFound,
                FileErrorKind::PermissionDenied => ErrorClass::Forbidden,
                FileErrorKind::AlreadyExists | FileErrorKind::NotEmpty => ErrorClass::Conflict,
                // Also `other`: a full disk or a move across filesystems is the request's to
                // change, not the server's fault.
                _ => ErrorClass::Invalid,
            },
            RuntimeError::StartFailed { .. } | RuntimeError::Store(_) | RuntimeError::Io { .. } => {
                ErrorClass::Internal
            }
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            RuntimeError::Invalid { field, .. } => format!("fix `{field}` and send the request again"),
            RuntimeError::SandboxNotFound { .. } => {
                "list your sandboxes with GET /v1/sandboxes; a sandbox is only visible to the key that \
                 created it"
                    .to_owned()
            }
            RuntimeError::CommandNotFound { .. } => {
                "list the sandbox's commands with GET /v1/sandboxes/{id}/commands".to_owned()
            }
            RuntimeError::ContextNotFound { .. } => {
                "list the sandbox's contexts with GET /v1/sandboxes/{id}/contexts; contexts end when \
                 their sandbox is paused or the server restarts"
                    .to_owned()
            }
            RuntimeError::ContextLimit { .. } => {
                "delete contexts you no longer need with DELETE /v1/sandboxes/{id}/contexts/{context_id}"
                    .to_owned()
            }
            RuntimeError::ContextStartFailed { language, .. } => format!(
                "the sandbox needs the {} interpreter on its PATH (`python3`, `node` or `bash`); the \
                 message says what went wrong",
                language
            ),
            RuntimeError::WrongState { state, .. } => match state {
                SandboxState::Paused => "resume it first: POST /v1/sandboxes/{id}/resume".to_owned(),
                SandboxState::Pending | SandboxState::Stopping => "wait a moment and try again".to_owned(),
                _ => "create a new sandbox".to_owned(),
            },
            RuntimeError::CommandEnded { .. } => {
                "read its outcome with GET /v1/sandboxes/{id}/commands/{command_id}".to_owned()
            }
            RuntimeError::SandboxLimit { .. } => {
                "delete sandboxes you no longer need, or raise `max_sandboxes` in [server]".to_owned()
            }
            RuntimeError::CommandLimit { .. } => {
                "retry when running commands end, or raise `max_concurrent_commands` in [server]".to_owned()
            }
            RuntimeError::StartFailed { hint, .. } => hint
                .clone()
                .unwrap_or_else(|| "run `airlock doctor` on the server to see what is missing".to_owned()),
            RuntimeError::AgentUnavailable { .. } => {
                "the sandbox may have run out of memory or been stopped; get its state, then resume or \
                 recreate it"
                    .to_owned()
            }
            RuntimeError::AgentRefused { .. } => "check the request's paths and values".to_owned(),
            RuntimeError::File { kind, .. } => file_hint(*kind).to_owned(),
            RuntimeError::NetworkPolicy(e) => e.hint(),
            RuntimeError::HostNetworkForbidden => {
                "use mode `allowlist` with rules for what the sandbox needs, or let the operator set \
                 `allow_host = true` in [server.network]"
                    .to_owned()
            }
            RuntimeError::NetworkModeFixed { .. } => {
                "create a new sandbox with the mode you need; `none` and `allowlist` switch freely".to_owned()
            }
            RuntimeError::PortUnreachable { .. } => {
                "start a server in the sandbox that listens on 127.0.0.1 (or 0.0.0.0) at that port, then \
                 try again"
                    .to_owned()
            }
            RuntimeError::LinkRefused { .. } => {
                "ask the sandbox's owner for a new link: POST /v1/sandboxes/{id}/links".to_owned()
            }
            RuntimeError::Store(_) => {
                "check that the data directory is writable and its disk is not full".to_owned()
            }
            RuntimeError::Io { .. } => {
                "check the data directory's permissions and free space; the server log has details".to_owned()
            }
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> RuntimeError {
        RuntimeError::Io { what: what.into(), source }
    }
}

fn file_hint(kind: FileErrorKind) -> &'static str {
    match kind {
        FileErrorKind::NotFound => {
            "paths are inside the sandbox (relative ones start at /workspace); list the directory with \
             GET /v1/sandboxes/{id}/files?path=DIR"
        }
        FileErrorKind::PermissionDenied => {
            "the sandbox writes only to /workspace, /tmp and its read-write binds, and reads what its \
             user may; every path resolves inside the sandbox"
        }
        FileErrorKind::AlreadyExists => {
            "choose another path, or pass `overwrite: true` to a move (`parents: true` accepts an \
             existing directory in mkdir)"
        }
        FileErrorKind::NotEmpty => "pass `recursive=true` to remove the directory with its contents",
        FileErrorKind::NotADirectory => {
            "a directory was needed but the path, or a component on the way, is something else; check it \
             with GET /v1/sandboxes/{id}/files/stat?path=..."
        }
        FileErrorKind::IsADirectory => {
            "only files are read and written; list a directory with GET /v1/sandboxes/{id}/files?path=DIR"
        }
        FileErrorKind::NotARegularFile => {
            "only regular files are read and written, never FIFOs, sockets or devices"
        }
        FileErrorKind::InvalidPath => {
            "send a non-empty path without NUL bytes, at most 4096 bytes long, that does not loop through \
             symlinks"
        }
        FileErrorKind::TooLarge => {
            "the sandbox's `limits.max_file_bytes` caps every file; create the sandbox with a larger one"
        }
        FileErrorKind::Other => {
            "the message says what failed: a move between /workspace and /tmp crosses filesystems (copy \
             instead), or the disk or /tmp is full"
        }
    }
}
