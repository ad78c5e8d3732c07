//! The values of code execution: contexts, runs and what they produce. The front doors build
//! and read these; [`crate::context`] and the one-shot runs make and fill them.

use std::collections::BTreeMap;
use std::time::Duration;

use airlock_agent::protocol::{CodeMode, Language};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

/// A code context, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextRecord {
    /// `ctx_…`, or the language's name for its default context.
    pub id: String,
    /// Its interpreter.
    pub language: Language,
    /// Working directory of its interpreter.
    pub cwd: String,
    /// Environment added to the sandbox's.
    pub env: BTreeMap<String, String>,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// Runs since its interpreter last started.
    pub execution_count: u64,
    /// Whether a run is going on.
    pub running: bool,
    /// Times its interpreter was started afresh (by request, or after a run it did not survive).
    pub restarts: u64,
}

/// A context to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewContext {
    /// Its interpreter.
    pub language: Language,
    /// Working directory; the sandbox's workdir when none.
    pub cwd: Option<String>,
    /// Environment added to the sandbox's.
    pub env: BTreeMap<String, String>,
}

/// Code to run in a context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRun {
    /// The context; without it, the default context of `language` (created on first use).
    pub context: Option<String>,
    /// The language of the default context to use when no context is named.
    pub language: Language,
    /// The code.
    pub code: String,
    /// Cell or handler.
    pub mode: CodeMode,
    /// The handler's argument, in handler mode.
    pub event: Option<Value>,
    /// Interrupt the run after this long.
    pub timeout: Option<Duration>,
    /// Output kept; the rest is dropped and the outcome says so.
    pub max_output_bytes: u64,
}

/// How a run of code ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CodeStatus {
    /// It ran to its end (for a script: exit code 0).
    Ok,
    /// It raised an error (for a script: a non-zero exit or a signal).
    Error,
    /// An interrupt request stopped it.
    Interrupted,
    /// Its timeout stopped it.
    Timeout,
    /// Its interpreter ended during the run; the context was started afresh.
    ContextLost,
    /// It could not be run at all; `message` says why.
    Failed,
}

impl CodeStatus {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            CodeStatus::Ok => "ok",
            CodeStatus::Error => "error",
            CodeStatus::Interrupted => "interrupted",
            CodeStatus::Timeout => "timeout",
            CodeStatus::ContextLost => "context_lost",
            CodeStatus::Failed => "failed",
        }
    }
}

/// What a run used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CodeUsage {
    /// Wall-clock time in milliseconds.
    pub duration_ms: u64,
    /// CPU time in milliseconds.
    pub cpu_ms: u64,
    /// Peak resident memory of the interpreter, in bytes.
    pub max_rss_bytes: u64,
    /// Bytes written to stdout (kept or not).
    pub stdout_bytes: u64,
    /// Bytes written to stderr (kept or not).
    pub stderr_bytes: u64,
}

/// The end of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeOutcome {
    /// The context it ran in (none for a one-shot script).
    pub context: Option<String>,
    /// How it ended.
    pub status: CodeStatus,
    /// Its number in its context.
    pub execution_count: Option<u64>,
    /// Bash and scripts: the exit status.
    pub exit_code: Option<i32>,
    /// `CONTEXT_RESTARTED` when the context was killed and started afresh because the code ignored
    /// its interrupt, `CONTEXT_LOST` when the interpreter ended during the run.
    pub code: Option<&'static str>,
    /// Why, when the status is not `ok` or `error`.
    pub message: Option<String>,
    /// Whether output beyond the cap was dropped.
    pub output_truncated: bool,
    /// What it used.
    pub usage: CodeUsage,
}

/// One thing a run produced, in order; [`CodeEvent::End`] is last.
#[derive(Debug, Clone, PartialEq)]
pub enum CodeEvent {
    /// Output on stdout.
    Stdout(String),
    /// Output on stderr.
    Stderr(String),
    /// A value: the last expression's (`main`), a figure, or a handler's return value.
    Result {
        /// Whether it is the run's own value.
        main: bool,
        /// The value by MIME type.
        data: Map<String, Value>,
    },
    /// The error the code raised.
    Error {
        /// Its type.
        name: String,
        /// Its message.
        value: String,
        /// Its traceback.
        traceback: Vec<String>,
    },
    /// The end.
    End(CodeOutcome),
}

/// A run's events, as they come.
pub type CodeEvents = mpsc::UnboundedReceiver<CodeEvent>;

/// Everything a run produced, gathered.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeResult {
    /// Everything written to stdout (up to the cap).
    pub stdout: String,
    /// Everything written to stderr (up to the cap).
    pub stderr: String,
    /// Every value, in order.
    pub results: Vec<(bool, Map<String, Value>)>,
    /// The error, if one was raised: name, value, traceback.
    pub error: Option<(String, String, Vec<String>)>,
    /// The end.
    pub outcome: CodeOutcome,
}

impl CodeResult {
    /// Gather a run's events until its end.
    pub async fn collect(mut events: CodeEvents) -> CodeResult {
        let mut result = CodeResult {
            stdout: String::new(),
            stderr: String::new(),
            results: Vec::new(),
            error: None,
            outcome: failed_outcome(None, "the run ended without an outcome".to_owned()),
        };
        while let Some(event) = events.recv().await {
            match event {
                CodeEvent::Stdout(text) => result.stdout.push_str(&text),
                CodeEvent::Stderr(text) => result.stderr.push_str(&text),
                CodeEvent::Result { main, data } => result.results.push((main, data)),
                CodeEvent::Error { name, value, traceback } => result.error = Some((name, value, traceback)),
                CodeEvent::End(outcome) => {
                    result.outcome = outcome;
                    break;
                }
            }
        }
        result
    }
}

/// The outcome of a run that could not happen, and why.
pub(crate) fn failed_outcome(context: Option<String>, message: String) -> CodeOutcome {
    CodeOutcome {
        context,
        status: CodeStatus::Failed,
        execution_count: None,
        exit_code: None,
        code: None,
        message: Some(message),
        output_truncated: false,
        usage: CodeUsage::default(),
    }
}
