//! Errors of `airlock run`, each with a capsule-run code (E1xxx–E5xxx), a message naming the bad
//! input, a hint, and the exit status the CLI ends with.

use airlock_jail::{JailError, Stage};
use serde_json::{json, Value};

use crate::config::ConfigError;

/// Exit status when the sandbox could not be set up (as `timeout(1)` and `env(1)` use 125).
pub const EXIT_SETUP_FAILED: i32 = 125;

/// Why a run did not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration file or a value from it is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A flag or request field is invalid.
    #[error("{message}")]
    Invalid {
        /// E1002, E1003 or E2004.
        code: &'static str,
        /// The offending flag or field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The command is blocked by `[security]`.
    #[error("command '{0}' is blocked by the security policy")]
    Blocked(String),
    /// The engine refused or failed.
    #[error(transparent)]
    Jail(#[from] JailError),
    /// The concurrency limit stayed full.
    #[error("{0}")]
    Busy(String),
    /// The directory of the concurrency slots is unusable.
    #[error("{0}")]
    RuntimeDir(String),
}

impl RunError {
    /// An invalid flag or field.
    pub fn invalid(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> RunError {
        RunError::Invalid { code, field: field.into(), message: message.into() }
    }

    /// The capsule-run error code.
    pub fn code(&self) -> &'static str {
        match self {
            RunError::Config(e) => e.code(),
            RunError::Invalid { code, .. } => code,
            RunError::Blocked(_) => "E2003",
            RunError::Busy(_) | RunError::RuntimeDir(_) => "E5001",
            RunError::Jail(e) => match e {
                JailError::CommandNotFound(_) => "E2002",
                JailError::CommandNotExecutable { errno, .. } if *errno == nix::errno::Errno::EACCES => {
                    "E2001"
                }
                JailError::CommandNotExecutable { .. } => "E2004",
                JailError::InvalidSpec { .. } => "E2004",
                JailError::Setup { stage: Stage::Workdir, .. } => "E2004",
                _ => "E5001",
            },
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            RunError::Config(e) => e.hint(),
            RunError::Invalid { .. } => "see `airlock run --help` for the accepted values".into(),
            RunError::Blocked(_) => {
                "remove it from [security] blocked_commands or run another command".into()
            }
            RunError::Busy(_) => "raise [security] max_concurrent_executions or retry later".into(),
            RunError::RuntimeDir(_) => {
                "the slot directory must be owned by you and private (mode 0700); `airlock doctor` checks it"
                    .into()
            }
            RunError::Jail(JailError::Setup { stage: Stage::Workdir, .. }) => {
                "the working directory must exist inside the sandbox (e.g. under /workspace)".into()
            }
            RunError::Jail(e) => e.hint().into(),
        }
    }

    /// Structured details for the JSON result.
    pub fn details(&self) -> Value {
        match self {
            RunError::Invalid { field, .. } => json!({ "field": field }),
            RunError::Jail(e) => {
                let mut d = json!({ "reason": e.code() });
                if let JailError::Setup { stage, errno } = e {
                    d["stage"] = json!(stage.name());
                    d["errno"] = json!(errno.desc());
                }
                d
            }
            RunError::Config(e) => Value::Object(
                e.details().into_iter().map(|(k, v)| (k.to_string(), Value::String(v))).collect(),
            ),
            RunError::Blocked(c) => json!({ "command": c }),
            RunError::Busy(_) => json!({ "reason": "max_concurrent_executions" }),
            RunError::RuntimeDir(_) => json!({ "reason": "runtime_dir" }),
        }
    }

    /// Exit status of `airlock run` for this error.
    pub fn exit_status(&self) -> i32 {
        match self {
            RunError::Jail(JailError::CommandNotFound(_)) => 127,
            RunError::Jail(JailError::CommandNotExecutable { .. }) => 126,
            _ => EXIT_SETUP_FAILED,
        }
    }
}
