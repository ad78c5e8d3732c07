//! Why `airlock exec` ran nothing to an end: each error has a code (the server's own when the
//! server refused), a message naming the bad input, and a hint.

use super::client::ClientError;

/// An error of `airlock exec`; it exits with [`super::end::EXIT_REQUEST_FAILED`].
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// A flag is malformed, or flags contradict each other.
    #[error("{message}")]
    Invalid {
        /// What is wrong, naming the flag.
        message: String,
        /// What to write instead.
        hint: String,
    },
    /// The code or the input could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// `the code` or `the input`.
        what: &'static str,
        /// The file, or `standard input`.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The async runtime or the Ctrl-C handler could not be set up.
    #[error("cannot set up the client: {0}")]
    Setup(std::io::Error),
    /// Talking to the server failed, or it refused the request.
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl ExecError {
    /// A flag error.
    pub fn invalid(message: impl Into<String>, hint: impl Into<String>) -> ExecError {
        ExecError::Invalid { message: message.into(), hint: hint.into() }
    }

    /// A stable code: the server's for its refusals, else one of this client's.
    pub fn code(&self) -> &str {
        match self {
            ExecError::Invalid { .. } => "INVALID_ARGUMENT",
            ExecError::Read { .. } => "READ_FAILED",
            ExecError::Setup(_) => "SETUP_FAILED",
            ExecError::Client(e) => e.code(),
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> &str {
        match self {
            ExecError::Invalid { hint, .. } => hint,
            ExecError::Read { .. } => "the file must exist, be readable and hold UTF-8 text",
            ExecError::Setup(_) => "the host is short of threads or file descriptors; retry",
            ExecError::Client(e) => e.hint(),
        }
    }
}
