//! The shapes of the code API: contexts, runs of code in them, and one-shot runs.

use std::collections::BTreeMap;

use airlock_runtime::{CodeMode, CodeOutcome, CodeResult, ContextRecord, Language};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::api::{rfc3339, LimitsRequest};
use crate::api_network::NetworkPolicyBody;

/// A context's interpreter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LanguageName {
    /// `python3`.
    #[default]
    Python,
    /// `node`.
    Javascript,
    /// `bash`.
    Bash,
}

impl From<LanguageName> for Language {
    fn from(name: LanguageName) -> Language {
        match name {
            LanguageName::Python => Language::Python,
            LanguageName::Javascript => Language::Javascript,
            LanguageName::Bash => Language::Bash,
        }
    }
}

impl From<Language> for LanguageName {
    fn from(language: Language) -> LanguageName {
        match language {
            Language::Python => LanguageName::Python,
            Language::Javascript => LanguageName::Javascript,
            Language::Bash => LanguageName::Bash,
        }
    }
}

/// How a run treats its code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModeName {
    /// Like a notebook cell: in the context's state; the last expression's value comes back.
    #[default]
    Cell,
    /// The code defines `handler(event)` (Python) or exports a handler (JavaScript), called with
    /// `event`; its return value comes back as `result`.
    Handler,
}

impl From<ModeName> for CodeMode {
    fn from(mode: ModeName) -> CodeMode {
        match mode {
            ModeName::Cell => CodeMode::Cell,
            ModeName::Handler => CodeMode::Handler,
        }
    }
}

/// `POST /v1/sandboxes/{id}/contexts`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateContext {
    /// The interpreter: `python` (the default), `javascript` or `bash`.
    #[serde(default)]
    pub language: LanguageName,
    /// Working directory; the sandbox's `workdir` when left out.
    pub cwd: Option<String>,
    /// Variables added to the sandbox's.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// A code context.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContextView {
    /// `ctx_…`, or the language's name for its default context.
    pub id: String,
    /// Its interpreter.
    pub language: LanguageName,
    /// Working directory of its interpreter.
    pub cwd: String,
    /// Variables added to the sandbox's.
    pub env: BTreeMap<String, String>,
    /// RFC 3339.
    pub created_at: String,
    /// Runs since its interpreter last started.
    pub execution_count: u64,
    /// Whether a run is going on.
    pub running: bool,
    /// Times its interpreter was started afresh.
    pub restarts: u64,
}

impl From<ContextRecord> for ContextView {
    fn from(r: ContextRecord) -> ContextView {
        ContextView {
            id: r.id,
            language: r.language.into(),
            cwd: r.cwd,
            env: r.env,
            created_at: rfc3339(r.created_ms),
            execution_count: r.execution_count,
            running: r.running,
            restarts: r.restarts,
        }
    }
}

/// A sandbox's contexts.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContextList {
    /// Every context, by id.
    pub items: Vec<ContextView>,
}

/// `POST /v1/sandboxes/{id}/code`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunCode {
    /// The code.
    pub code: String,
    /// Run in this context. Without it, the default context of `language` is used (created on
    /// first use).
    pub context: Option<String>,
    /// The default context's language when no `context` is named: `python` (the default),
    /// `javascript` or `bash`.
    pub language: Option<LanguageName>,
    /// `cell` (the default) or `handler`; `handler` when only `event` is given.
    pub mode: Option<ModeName>,
    /// The handler's argument. A number `__timeout` in it sets the timeout in seconds.
    #[schema(value_type = Option<Object>)]
    pub event: Option<Value>,
    /// Interrupt the run after this many milliseconds; the context keeps its state.
    pub timeout_ms: Option<u64>,
    /// Bytes of stdout plus stderr kept; the server's maximum when left out.
    pub max_output_bytes: Option<u64>,
    /// Answer with a Server-Sent Events stream (also chosen by `Accept: text/event-stream`).
    #[serde(default)]
    pub stream: bool,
}

/// A file of a one-shot run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunFile {
    /// Path under `/workspace`, relative.
    pub path: String,
    /// Its contents.
    pub content: String,
    /// `utf8` (the default) or `base64`.
    #[serde(default)]
    pub encoding: FileEncoding,
}

/// How a file's `content` is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileEncoding {
    /// Text as it is.
    #[default]
    Utf8,
    /// Standard base64.
    Base64,
}

/// `POST /v1/run`: run once in a fresh sandbox.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunOnce {
    /// `python` (the default), `javascript` or `bash`.
    #[serde(default)]
    pub language: LanguageName,
    /// The program, run as a script (`python3 -c`, `node -e`, `bash -c`); with `event`, the
    /// code that defines the handler.
    pub code: Option<String>,
    /// Files written under `/workspace` first.
    #[serde(default)]
    pub files: Vec<RunFile>,
    /// The file to run when there is no `code`; the only file, or `main.py`, `index.js` or
    /// `main.sh`, when left out.
    pub entrypoint: Option<String>,
    /// Text on the program's standard input.
    pub stdin: Option<String>,
    /// Environment of the program.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The sandbox's limits; the server's defaults (and its warm pool) when left out.
    #[serde(default)]
    pub limits: LimitsRequest,
    /// Stop the run after this many milliseconds.
    pub timeout_ms: Option<u64>,
    /// Bytes of stdout plus stderr kept; the server's maximum when left out.
    pub max_output_bytes: Option<u64>,
    /// Handler mode: call the code's handler with this event. A number `__timeout` in it sets
    /// the timeout in seconds.
    #[schema(value_type = Option<Object>)]
    pub event: Option<Value>,
    /// Answer with a Server-Sent Events stream (also chosen by `Accept: text/event-stream`).
    #[serde(default)]
    pub stream: bool,
    /// What the run may reach on the network; loopback only when left out.
    #[serde(default)]
    pub network: NetworkPolicyBody,
}

/// One value a run produced.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResultView {
    /// Whether it is the run's own value (the last expression's, or the handler's) rather than
    /// something it displayed (a figure).
    pub main: bool,
    /// The value by MIME type: `text/plain` always, and `text/html`, `image/png` (base64),
    /// `application/json` and others when the value has them.
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
}

/// The error a run raised.
#[derive(Debug, Serialize, ToSchema)]
pub struct CodeErrorView {
    /// Its type, e.g. `ZeroDivisionError`.
    pub name: String,
    /// Its message.
    pub value: String,
    /// The traceback, as the language prints it.
    pub traceback: Vec<String>,
}

/// What a run used.
#[derive(Debug, Serialize, ToSchema)]
pub struct CodeUsageView {
    /// Wall-clock milliseconds.
    pub duration_ms: u64,
    /// CPU milliseconds.
    pub cpu_ms: u64,
    /// Peak resident memory of the interpreter, in bytes.
    pub max_rss_bytes: u64,
    /// Bytes written to stdout, kept or not.
    pub stdout_bytes: u64,
    /// Bytes written to stderr, kept or not.
    pub stderr_bytes: u64,
}

/// How a run ended: the `end` event, and part of every collected answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CodeEndView {
    /// `ok`, `error` (an exception, or a script's non-zero exit), `interrupted`, `timeout`,
    /// `context_lost` (the interpreter ended during the run) or `failed` (it could not run).
    pub status: String,
    /// The context it ran in.
    pub context: Option<String>,
    /// Its number in the context (from 1; it starts again after a restart).
    pub execution_count: Option<u64>,
    /// Bash and scripts: the exit status.
    pub exit_code: Option<i32>,
    /// `CONTEXT_RESTARTED` when the code ignored its interrupt and the context was started
    /// afresh (its state is gone), `CONTEXT_LOST` when the interpreter ended during the run.
    pub code: Option<String>,
    /// Why, when the status is not `ok` or `error`.
    pub message: Option<String>,
    /// Whether output beyond `max_output_bytes` was dropped.
    pub output_truncated: bool,
    /// What it used.
    pub usage: CodeUsageView,
}

impl From<CodeOutcome> for CodeEndView {
    fn from(o: CodeOutcome) -> CodeEndView {
        CodeEndView {
            status: o.status.as_str().to_owned(),
            context: o.context,
            execution_count: o.execution_count,
            exit_code: o.exit_code,
            code: o.code.map(str::to_owned),
            message: o.message,
            output_truncated: o.output_truncated,
            usage: CodeUsageView {
                duration_ms: o.usage.duration_ms,
                cpu_ms: o.usage.cpu_ms,
                max_rss_bytes: o.usage.max_rss_bytes,
                stdout_bytes: o.usage.stdout_bytes,
                stderr_bytes: o.usage.stderr_bytes,
            },
        }
    }
}

/// A run, collected.
#[derive(Debug, Serialize, ToSchema)]
pub struct CodeRunView {
    /// The sandbox it ran in (for a one-shot run, deleted by now).
    pub sandbox_id: String,
    /// Everything written to stdout, up to the cap.
    pub stdout: String,
    /// Everything written to stderr, up to the cap.
    pub stderr: String,
    /// Cell mode: the last expression's value by MIME type (`{"text/plain": "2"}`), or null.
    /// Handler mode: the handler's return value as JSON (its `text/plain` form when it is not
    /// JSON).
    #[schema(value_type = Option<Object>)]
    pub result: Value,
    /// Every value the run produced, in order (figures included).
    pub results: Vec<ResultView>,
    /// The error it raised.
    pub error: Option<CodeErrorView>,
    /// How it ended.
    #[serde(flatten)]
    pub end: CodeEndView,
}

impl CodeRunView {
    /// The answer for a collected run; `handler` picks the shape of `result`.
    pub fn new(sandbox_id: String, run: CodeResult, handler: bool) -> CodeRunView {
        let main = run.results.iter().find(|(main, _)| *main).map(|(_, data)| data.clone());
        let result = match main {
            None => Value::Null,
            Some(data) if handler => data
                .get("application/json")
                .or_else(|| data.get("text/plain"))
                .cloned()
                .unwrap_or(Value::Null),
            Some(data) => Value::Object(data),
        };
        CodeRunView {
            sandbox_id,
            stdout: run.stdout,
            stderr: run.stderr,
            result,
            results: run.results.into_iter().map(|(main, data)| ResultView { main, data }).collect(),
            error: run.error.map(|(name, value, traceback)| CodeErrorView { name, value, traceback }),
            end: run.outcome.into(),
        }
    }
}
