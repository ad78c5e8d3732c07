//! Runs: `execute_code/{session_id}` (code in the session's default context of its language,
//! so variables persist between calls; or a script file with arguments, as the Sandbox Runtime
//! ran it) and `execute/{session_id}` (a shell command, a program with arguments, or a
//! Lambda-style handler). How a run ended decides the envelope: a timeout is
//! `EXECUTION_TIMEOUT`, a process killed by `SIGKILL` (the OOM killer's signal, in a sandbox)
//! `RESOURCE_LIMIT`, and a failed run during which the egress proxy refused connections
//! `NETWORK_DISABLED`; each of these answers carries the run's output in `data`. An exception
//! or a non-zero exit is a successful answer with its `exit_code`, as running the script
//! would have been.

use std::collections::BTreeMap;
use std::time::Duration;

use airlock_runtime::{CodeMode, CodeResult, CodeRun, CodeStatus, CommandSpec, CommandStatus, Language};
use airlock_runtime::{SandboxRecord, WriteOptions};
use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::envelope::{ok, Body, SeError, Session};
use super::sessions::{open, run_timeout};
use crate::api_code::CodeRunView;
use crate::error::ApiError;
use crate::state::AppState;

/// What a run answers with, in `data`.
#[derive(Debug, Serialize)]
struct RunData {
    /// 0 for success; 1 for an exception; the program's status otherwise.
    exit_code: Option<i32>,
    /// The same, under the name the Sandbox Runtime's command route used.
    returncode: Option<i32>,
    stdout: String,
    stderr: String,
    /// The last expression's value by MIME type, or a handler's return value.
    result: Value,
    /// Seconds.
    execution_time: f64,
    /// How it ended, in Airlock's words (`ok`, `error`, `exited`, `timeout`, ...).
    status: String,
    output_truncated: bool,
    session_id: String,
    sandbox_id: String,
}

impl RunData {
    fn new(session: &Session, record: &SandboxRecord, exit_code: Option<i32>, status: &str) -> RunData {
        RunData {
            exit_code,
            returncode: exit_code,
            stdout: String::new(),
            stderr: String::new(),
            result: Value::Null,
            execution_time: 0.0,
            status: status.to_owned(),
            output_truncated: false,
            session_id: session.name.clone(),
            sandbox_id: record.id.clone(),
        }
    }
}

/// The body of `execute_code/{session_id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExecuteCode {
    /// The code.
    code: String,
    /// Seconds; the session's, then `SANDBOX_TIMEOUT_SECONDS`, when left out.
    timeout: Option<f64>,
    /// `python` (default), `javascript` or `bash`.
    language: Option<String>,
    /// The Sandbox Runtime's name for the language: `python` or `shell`.
    script_type: Option<String>,
    /// Run as a script saved under this name in the workspace, in a fresh interpreter.
    filename: Option<String>,
    /// Arguments of such a script.
    args: Option<Vec<String>>,
}

/// The body of `execute/{session_id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Execute {
    /// A shell command line, or with `args` the program to run.
    command: Option<String>,
    /// Arguments of `command`, run without a shell.
    args: Option<Vec<String>>,
    /// A Python handler `handler(event)` to call instead of a command.
    code: Option<String>,
    /// The handler's argument; `{}` when left out.
    event: Option<Value>,
    /// Seconds; the session's, then `SANDBOX_TIMEOUT_SECONDS`, when left out.
    timeout: Option<f64>,
    /// Working directory of the command.
    cwd: Option<String>,
    /// Variables added for the command.
    #[serde(default)]
    env: BTreeMap<String, String>,
}

/// `POST /workspace/se/execute_code/{session_id}`; the session is created on first use.
pub(super) async fn execute_code(
    State(state): State<AppState>,
    session: Session,
    Body(body): Body<ExecuteCode>,
) -> Result<Response, SeError> {
    let language = match (body.language.as_deref(), body.script_type.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("script_type", "give `language` or `script_type`, not both").into())
        }
        (None, None) | (Some("python"), None) | (None, Some("python")) => Language::Python,
        (Some("javascript"), None) => Language::Javascript,
        (Some("bash"), None) | (None, Some("shell")) => Language::Bash,
        (Some(other), None) | (None, Some(other)) => {
            return Err(
                ApiError::invalid("language", format!("{other:?} is not python, javascript or bash")).into()
            )
        }
    };
    let record = open(&state, &session, true).await?;
    let timeout = run_timeout(&state, &record, body.timeout)?;
    if body.filename.is_some() || body.args.is_some() {
        return run_script(&state, &session, &record, language, body, timeout).await;
    }
    let run = CodeRun {
        context: None,
        language,
        code: body.code,
        mode: CodeMode::Cell,
        event: None,
        timeout: Some(timeout),
        max_output_bytes: state.runtime.config().max_output_bytes,
    };
    run_code(&state, &session, &record, run).await
}

/// `POST /workspace/se/execute/{session_id}`; the session is created on first use.
pub(super) async fn execute(
    State(state): State<AppState>,
    session: Session,
    Body(body): Body<Execute>,
) -> Result<Response, SeError> {
    let record = open(&state, &session, true).await?;
    let timeout = run_timeout(&state, &record, body.timeout)?;
    let (command, code) = (body.command, body.code);
    let argv = match (command, code, body.args) {
        (None, Some(code), None) => {
            let run = CodeRun {
                context: None,
                language: Language::Python,
                code,
                mode: CodeMode::Handler,
                event: Some(body.event.unwrap_or_else(|| Value::Object(Default::default()))),
                timeout: Some(timeout),
                max_output_bytes: state.runtime.config().max_output_bytes,
            };
            return run_code(&state, &session, &record, run).await;
        }
        (Some(program), None, Some(args)) if !program.is_empty() => {
            std::iter::once(program).chain(args).collect()
        }
        (Some(line), None, None) if !line.trim().is_empty() => {
            vec!["/bin/sh".to_owned(), "-c".to_owned(), line]
        }
        (Some(_), Some(_), _) => {
            return Err(ApiError::invalid("command", "give `command` or `code`, not both").into())
        }
        _ => {
            return Err(
                ApiError::invalid("command", "give a non-empty `command`, or a handler's `code`").into()
            )
        }
    };
    if body.event.is_some() {
        return Err(ApiError::invalid("event", "only a handler's `code` takes an `event`").into());
    }
    let spec = CommandSpec {
        argv,
        env: body.env,
        cwd: body.cwd,
        timeout: Some(timeout),
        stdin: None,
        keep_stdin_open: false,
        max_output_bytes: state.runtime.config().max_output_bytes,
    };
    run_command(&state, &session, &record, spec).await
}

/// Save the code as `filename` in the workspace and run it in a fresh interpreter with `args`,
/// as the Sandbox Runtime ran every `execute_code`.
async fn run_script(
    state: &AppState,
    session: &Session,
    record: &SandboxRecord,
    language: Language,
    body: ExecuteCode,
    timeout: Duration,
) -> Result<Response, SeError> {
    let (program, extension) = match language {
        Language::Python => ("python3", ".py"),
        Language::Javascript => ("node", ".js"),
        Language::Bash => ("bash", ".sh"),
    };
    let mut filename = body.filename.unwrap_or_else(|| format!("script_{}", uuid::Uuid::new_v4().simple()));
    if !filename.ends_with(extension) {
        filename.push_str(extension);
    }
    let how = WriteOptions { offset: None, create_parents: true, mode: None };
    state.runtime.write_file(session.owner(), &record.id, &filename, body.code.as_bytes(), how).await?;
    let spec = CommandSpec {
        argv: [program.to_owned(), filename].into_iter().chain(body.args.unwrap_or_default()).collect(),
        env: BTreeMap::new(),
        cwd: None,
        timeout: Some(timeout),
        stdin: None,
        keep_stdin_open: false,
        max_output_bytes: state.runtime.config().max_output_bytes,
    };
    run_command(state, session, record, spec).await
}

/// How many connections the session's egress proxy has refused so far.
fn denials(state: &AppState, session: &Session, record: &SandboxRecord) -> u64 {
    state.runtime.network_denials(session.owner(), &record.id, 0, 0).map_or(0, |(_, total)| total)
}

/// Run code in a context and answer with its outcome.
async fn run_code(
    state: &AppState,
    session: &Session,
    record: &SandboxRecord,
    run: CodeRun,
) -> Result<Response, SeError> {
    let handler = run.mode == CodeMode::Handler;
    let refused_before = denials(state, session, record);
    let events = state.runtime.run_code(session.owner(), &record.id, run).await?;
    let run = CodeResult::collect(events).await;
    let status = run.outcome.status;
    let (exit_code, message) = (run.outcome.exit_code, run.outcome.message.clone().unwrap_or_default());
    let view = CodeRunView::new(record.id.clone(), run, handler);
    let exit_code = match status {
        CodeStatus::Ok => Some(exit_code.unwrap_or(0)),
        CodeStatus::Error => Some(exit_code.unwrap_or(1)),
        _ => exit_code,
    };
    let mut data = RunData::new(session, record, exit_code, &view.end.status);
    data.stdout = view.stdout;
    data.stderr = view.stderr;
    if let Some(error) = &view.error {
        // As the interpreter would have printed it, for clients that read stderr.
        for line in &error.traceback {
            data.stderr.push_str(line);
            if !line.ends_with('\n') {
                data.stderr.push('\n');
            }
        }
    }
    data.result = view.result;
    data.execution_time = view.end.usage.duration_ms as f64 / 1000.0;
    data.output_truncated = view.end.output_truncated;
    let failure = match status {
        CodeStatus::Ok | CodeStatus::Error | CodeStatus::Interrupted => None,
        CodeStatus::Timeout => Some(timed_out(&data)),
        CodeStatus::ContextLost if message.contains("signal 9") || message.contains("SIGKILL") => {
            Some(killed(&message))
        }
        CodeStatus::ContextLost | CodeStatus::Failed => Some(SeError::new(
            "ISOLATION_FAILED",
            format!("the run did not complete: {message}"),
            "run it again; the session's interpreter was started afresh",
        )),
    };
    answer(state, session, record, data, failure, refused_before)
}

/// Run a command to its end and answer with its outcome.
async fn run_command(
    state: &AppState,
    session: &Session,
    record: &SandboxRecord,
    spec: CommandSpec,
) -> Result<Response, SeError> {
    let refused_before = denials(state, session, record);
    let handle = state.runtime.run_command(session.owner(), &record.id, spec).await?;
    state.metrics.command_started();
    let ended = handle.wait().await;
    let logs = handle.logs(0, 0);
    let exit_code = match (ended.status, ended.exit_code, ended.signal) {
        (_, Some(code), _) => Some(code),
        (_, None, Some(signal)) => Some(128 + signal),
        // It could not start, as a shell reports a missing program.
        (CommandStatus::Failed, None, None) => Some(127),
        _ => None,
    };
    let mut data = RunData::new(session, record, exit_code, ended.status.as_str());
    data.stdout = logs.stdout;
    data.stderr = logs.stderr;
    if let (CommandStatus::Failed, Some(error)) = (ended.status, &ended.error) {
        data.stderr.push_str(error);
        data.stderr.push('\n');
    }
    data.execution_time = ended.usage.duration_ms as f64 / 1000.0;
    data.output_truncated = ended.output_truncated;
    let failure = match ended.status {
        CommandStatus::Timeout => Some(timed_out(&data)),
        CommandStatus::Signaled if ended.signal == Some(9) => {
            Some(killed("the command was killed by SIGKILL"))
        }
        CommandStatus::Lost => Some(SeError::new(
            "ISOLATION_FAILED",
            format!(
                "the command did not complete: {}",
                ended.error.as_deref().unwrap_or("its session stopped")
            ),
            "get the session's status; create it again if it has ended",
        )),
        _ => None,
    };
    answer(state, session, record, data, failure, refused_before)
}

fn timed_out(data: &RunData) -> SeError {
    SeError::new(
        "EXECUTION_TIMEOUT",
        format!("the run was stopped at its timeout after {:.3}s", data.execution_time),
        "send a larger `timeout` (seconds), or raise SANDBOX_TIMEOUT_SECONDS on the server",
    )
}

fn killed(why: &str) -> SeError {
    SeError::new(
        "RESOURCE_LIMIT",
        format!("the run was killed, most likely at the session's memory limit: {why}"),
        "use less memory, or create the session with a larger `memory_limit` (KB) or raise \
         SANDBOX_MEMORY_LIMIT on the server",
    )
}

/// The envelope of a run: its failure if it had one, `NETWORK_DISABLED` when it failed while
/// the egress proxy refused connections, and success otherwise.
fn answer(
    state: &AppState,
    session: &Session,
    record: &SandboxRecord,
    data: RunData,
    failure: Option<SeError>,
    refused_before: u64,
) -> Result<Response, SeError> {
    let refused = denials(state, session, record).saturating_sub(refused_before);
    let unsuccessful = failure.is_some() || data.exit_code != Some(0);
    if refused > 0 && unsuccessful && failure.as_ref().is_none_or(|f| f.code() != "EXECUTION_TIMEOUT") {
        let network = SeError::new(
            "NETWORK_DISABLED",
            format!("the run failed after the session's network refused {refused} connection(s)"),
            "create the session with `allow_network: true` on a server with SANDBOX_ALLOW_NETWORK=true; \
             GET /v1/sandboxes/{id}/network/denials lists what was refused",
        );
        return Err(network.with_data(data));
    }
    match failure {
        Some(failure) => Err(failure.with_data(data)),
        None => Ok(ok(data)),
    }
}
