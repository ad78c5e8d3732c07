//! `/command`: run a command in the foreground (its output streamed until it ends) or in the
//! background (`init` and `execution_complete` at once), follow a background one with
//! `/command/status/{id}` and `/command/{id}/logs`, and interrupt with `DELETE /command?id=`.
//! Command ids are the runtime's; shell text runs as `/bin/bash -c TEXT`, as execd runs it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_runtime::{
    CommandEvent, CommandHandle, CommandRecord, CommandSpec, CommandStatus, Logs, RuntimeError,
};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::Stream;
use serde::{Deserialize, Serialize};

use super::sse::{self, Lines, StreamEvent};
use super::{query, OsJson};
use crate::api::rfc3339;
use crate::compat::opensandbox::access::SandboxAccess;
use crate::compat::opensandbox::error::OsError;
use crate::state::AppState;

/// The shell that runs command text.
pub(super) const SHELL: &str = "/bin/bash";

/// The header that carries where the next read of a background command's output starts.
const TAIL_CURSOR: &str = "EXECD-COMMANDS-TAIL-CURSOR";

/// The command the code-interpreter SDK runs to see whether a Jupyter server listens in the
/// sandbox before it hands out an interpreter. Airlock's interpreters are started by the
/// sandbox's agent, the very process that runs this command, so the probe is answered by a
/// command that succeeds whenever a command can run at all.
const INTERPRETER_PROBE: &str =
    "bash -c 'exec 3<>/dev/tcp/127.0.0.1/${JUPYTER_PORT:-44771}' && exit 0 || exit 1";

/// `POST /command`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunCommand {
    command: Option<String>,
    argv: Option<Vec<String>>,
    cwd: Option<String>,
    #[serde(default)]
    background: bool,
    /// Milliseconds; none or 0 for no timeout.
    timeout: Option<u64>,
    uid: Option<u32>,
    gid: Option<u32>,
    #[serde(default)]
    envs: BTreeMap<String, String>,
}

/// Run a command: in the foreground its events stream until it ends; in the background the
/// stream ends at once and the command goes on.
pub(super) async fn run(
    State(state): State<AppState>,
    access: SandboxAccess,
    OsJson(body): OsJson<RunCommand>,
) -> Result<Response, OsError> {
    if body.uid.is_some() || body.gid.is_some() {
        return Err(OsError::invalid(
            "uid",
            "commands run as the sandbox's own user; another uid or gid is not supported",
        ));
    }
    let argv = match (body.command, body.argv) {
        (Some(text), None) if text == INTERPRETER_PROBE => shell(":".to_owned()),
        (Some(text), None) if !text.trim().is_empty() => shell(text),
        (None, Some(argv)) if argv.first().is_some_and(|p| !p.is_empty()) => argv,
        (Some(_), Some(_)) => return Err(OsError::invalid("command", "give `command` or `argv`, not both")),
        _ => return Err(OsError::invalid("command", "give a non-empty `command` or `argv`")),
    };
    let timeout = body.timeout.filter(|ms| *ms > 0).map(Duration::from_millis);
    let spec = CommandSpec { env: body.envs, cwd: body.cwd, ..plain(&state, argv, timeout) };
    let started = Instant::now();
    let handle = start(&state, &access, spec).await?;
    if body.background {
        let events =
            [StreamEvent::init(handle.id()), StreamEvent::complete(started.elapsed().as_millis() as u64)];
        return Ok(sse::respond(futures_util::stream::iter(events)));
    }
    Ok(sse::respond(foreground(handle)))
}

/// `/bin/bash -c TEXT`.
pub(super) fn shell(text: String) -> Vec<String> {
    vec![SHELL.to_owned(), "-c".to_owned(), text]
}

/// Start a command, checking what the runtime does not.
pub(super) async fn start(
    state: &AppState,
    access: &SandboxAccess,
    spec: CommandSpec,
) -> Result<Arc<CommandHandle>, OsError> {
    if spec.argv.iter().any(|a| a.contains('\0')) {
        return Err(OsError::invalid("command", "must not contain NUL bytes"));
    }
    if spec.cwd.as_deref().is_some_and(|cwd| !cwd.starts_with('/')) {
        return Err(OsError::invalid("cwd", "must be an absolute path inside the sandbox"));
    }
    let handle = state.runtime.run_command(access.owner(), &access.id, spec).await?;
    state.metrics.command_started();
    Ok(handle)
}

/// A command with the sandbox's environment and directory and no input.
pub(super) fn plain(state: &AppState, argv: Vec<String>, timeout: Option<Duration>) -> CommandSpec {
    CommandSpec {
        argv,
        env: BTreeMap::new(),
        cwd: None,
        timeout,
        stdin: None,
        keep_stdin_open: false,
        max_output_bytes: state.runtime.config().max_output_bytes,
    }
}

/// Run a command to its end (a minute at most) and gather its output.
pub(super) async fn run_to_end(
    state: &AppState,
    access: &SandboxAccess,
    argv: Vec<String>,
) -> Result<(CommandRecord, Logs), OsError> {
    let handle = start(state, access, plain(state, argv, Some(Duration::from_secs(60)))).await?;
    let record = handle.wait().await;
    Ok((record, handle.logs(0, 0)))
}

/// A command's events: `init`, its output line by line, then `execution_complete` when it
/// exits 0 or `error` with its exit status.
pub(super) fn foreground(handle: Arc<CommandHandle>) -> impl Stream<Item = StreamEvent> {
    let changes = handle.subscribe();
    let queue = VecDeque::from([StreamEvent::init(handle.id())]);
    let state = (handle, changes, 0u64, queue, false, [Lines::default(), Lines::default()]);
    futures_util::stream::unfold(
        state,
        |(handle, mut changes, mut after, mut queue, mut done, mut lines)| async move {
            loop {
                if let Some(event) = queue.pop_front() {
                    return Some((event, (handle, changes, after, queue, done, lines)));
                }
                if done {
                    return None;
                }
                changes.borrow_and_update();
                for event in handle.events_after(after) {
                    after = event.seq();
                    match event {
                        CommandEvent::Stdout { data, .. } => {
                            queue.extend(lines[0].push(&data).into_iter().map(StreamEvent::stdout))
                        }
                        CommandEvent::Stderr { data, .. } => {
                            queue.extend(lines[1].push(&data).into_iter().map(StreamEvent::stderr))
                        }
                        CommandEvent::Exit { record, .. } => {
                            queue.extend(lines[0].finish().map(StreamEvent::stdout));
                            queue.extend(lines[1].finish().map(StreamEvent::stderr));
                            queue.push_back(end_event(&record));
                            done = true;
                        }
                    }
                }
                if queue.is_empty() && changes.changed().await.is_err() {
                    return None;
                }
            }
        },
    )
}

fn end_event(record: &CommandRecord) -> StreamEvent {
    if record.status == CommandStatus::Ok {
        return StreamEvent::complete(record.usage.duration_ms);
    }
    let value = exit_code(record).map_or_else(|| describe(record), |code| code.to_string());
    StreamEvent::error("CommandExecError", value, vec![describe(record)])
}

/// The exit code as a shell reports it: 128 + the signal for a command a signal ended.
pub(super) fn exit_code(record: &CommandRecord) -> Option<i32> {
    record.exit_code.or(record.signal.map(|signal| 128 + signal))
}

/// Why a command did not end with status 0, in words.
pub(super) fn describe(record: &CommandRecord) -> String {
    match (record.status, &record.error, record.signal, record.exit_code) {
        (CommandStatus::Timeout, _, _, _) => format!("timed out after {} ms", record.usage.duration_ms),
        (CommandStatus::Killed, _, _, _) => "killed by an interrupt".to_owned(),
        (_, Some(error), _, _) => error.clone(),
        (_, None, Some(signal), _) => format!("killed by signal {signal}"),
        (_, None, None, Some(code)) => format!("exit status {code}"),
        (status, None, None, None) => status.as_str().to_owned(),
    }
}

/// A command's status, as execd reports it.
#[derive(Debug, Serialize)]
pub(super) struct StatusView {
    id: String,
    /// The command text (or the arguments, joined by spaces).
    content: String,
    running: bool,
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    started_at: String,
    finished_at: Option<String>,
}

/// `GET /command/status/{id}`.
pub(super) async fn status(
    State(state): State<AppState>,
    access: SandboxAccess,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<StatusView>, OsError> {
    let record = state.runtime.command_record(access.owner(), &access.id, &id)?;
    let running = record.status == CommandStatus::Running;
    let content = match record.argv.as_slice() {
        [shell, flag, text] if shell == SHELL && flag == "-c" => text.clone(),
        argv => argv.join(" "),
    };
    let ok = matches!(record.status, CommandStatus::Running | CommandStatus::Ok);
    Ok(Json(StatusView {
        error: (!ok).then(|| describe(&record)),
        exit_code: exit_code(&record),
        started_at: rfc3339(record.started_ms),
        finished_at: record.ended_ms.map(rfc3339),
        id: record.id,
        content,
        running,
    }))
}

/// `?cursor=` of `logs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogsQuery {
    cursor: Option<u64>,
}

/// `GET /command/{id}/logs?cursor=N`: stdout and stderr together, in the order written, from
/// byte N on, as plain text; the header `EXECD-COMMANDS-TAIL-CURSOR` says where the next read
/// starts.
pub(super) async fn logs(
    State(state): State<AppState>,
    access: SandboxAccess,
    Path((_, id)): Path<(String, String)>,
    q: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Response, OsError> {
    let q = query(q)?;
    let handle = state.runtime.command(access.owner(), &access.id, &id)?;
    let combined: String = handle
        .events_after(0)
        .into_iter()
        .filter_map(|event| match event {
            CommandEvent::Stdout { data, .. } | CommandEvent::Stderr { data, .. } => Some(data),
            CommandEvent::Exit { .. } => None,
        })
        .collect();
    let mut from = usize::try_from(q.cursor.unwrap_or(0)).unwrap_or(usize::MAX).min(combined.len());
    while !combined.is_char_boundary(from) {
        from += 1;
    }
    let mut response = (StatusCode::OK, combined[from..].to_owned()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(TAIL_CURSOR, HeaderValue::from(combined.len()));
    Ok(response)
}

/// `?id=` of an interrupt.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InterruptQuery {
    pub(super) id: String,
}

/// `DELETE /command?id=`: kill the command and everything it started, and answer once it has
/// ended; an id of a bash session or code context interrupts its run instead.
pub(super) async fn interrupt(
    State(state): State<AppState>,
    access: SandboxAccess,
    q: Result<Query<InterruptQuery>, QueryRejection>,
) -> Result<StatusCode, OsError> {
    let q = query(q)?;
    interrupt_any(&state, &access, &q.id, true).await?;
    Ok(StatusCode::OK)
}

/// Interrupt what `id` names: a command (killed, with what it started) or a context's run.
/// `commands_first` says which kind of id the route expects, whose not-found error is kept.
pub(super) async fn interrupt_any(
    state: &AppState,
    access: &SandboxAccess,
    id: &str,
    commands_first: bool,
) -> Result<(), OsError> {
    let (owner, sandbox) = (access.owner(), access.id.as_str());
    let command = match state.runtime.command(owner, sandbox, id) {
        Ok(handle) => return kill_and_wait(state, &handle).await,
        Err(e @ RuntimeError::CommandNotFound { .. }) => e,
        Err(e) => return Err(e.into()),
    };
    match state.runtime.interrupt_context(owner, sandbox, id).await {
        Err(RuntimeError::ContextNotFound { .. }) if commands_first => Err(command.into()),
        other => Ok(other?),
    }
}

/// Kill a command with everything it started, and wait for its end.
async fn kill_and_wait(state: &AppState, handle: &CommandHandle) -> Result<(), OsError> {
    state.runtime.kill(handle).await?;
    handle.wait().await;
    Ok(())
}
