//! `/v1/sandboxes/{id}/commands`: run a command and collect its output, stream it as
//! Server-Sent Events, or start it in the background and follow it with status, logs, events,
//! stdin, signals and kill.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use airlock_runtime::{CommandEvent, CommandHandle, CommandSpec};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::Stream;
use serde::Deserialize;

use crate::api::{CommandList, CommandResult, CommandView, LogsView, RunCommand, SendSignal, WriteStdin};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

/// Run a command. By default the answer comes when it ends, with its output; with `stream`
/// (or `Accept: text/event-stream`) it is a stream of `start`, `stdout`, `stderr` and `exit`
/// events; with `background` it is the command's record at once (202).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/commands", tag = "commands", request_body = RunCommand,
    responses((status = 200, body = CommandResult), (status = 202, body = CommandView),
              (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RunCommand>,
) -> Result<Response, ApiError> {
    let argv = match (body.command, body.argv) {
        (Some(line), None) if !line.trim().is_empty() => vec!["/bin/sh".to_owned(), "-c".to_owned(), line],
        (None, Some(argv)) if argv.first().is_some_and(|p| !p.is_empty()) => argv,
        (Some(_), Some(_)) => return Err(ApiError::invalid("command", "give `command` or `argv`, not both")),
        _ => return Err(ApiError::invalid("command", "give a non-empty `command` or `argv`")),
    };
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(ApiError::invalid("argv", "must not contain NUL bytes"));
    }
    if let Some(cwd) = &body.cwd {
        if !cwd.starts_with('/') {
            return Err(ApiError::invalid("cwd", "must be an absolute path inside the sandbox"));
        }
    }
    if body.timeout_ms == Some(0) {
        return Err(ApiError::invalid("timeout_ms", "must be above 0"));
    }
    let wants_stream = body.stream
        || headers
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream"));
    if body.background && wants_stream {
        return Err(ApiError::invalid("stream", "a background command is followed with GET .../events"));
    }
    let spec = CommandSpec {
        argv,
        env: body.env,
        cwd: body.cwd,
        timeout: body.timeout_ms.map(Duration::from_millis),
        stdin: body.stdin,
        keep_stdin_open: body.background,
        max_output_bytes: body.max_output_bytes.unwrap_or(state.runtime.config().max_output_bytes),
    };
    let handle = state.runtime.run_command(caller.owner(), &id, spec).await?;
    state.metrics.command_started();
    if body.background {
        return Ok((StatusCode::ACCEPTED, Json(CommandView::from(handle.record()))).into_response());
    }
    if wants_stream {
        let command_id = handle.id().to_owned();
        let start = Event::default().event("start").data(serde_json::json!({ "id": command_id }).to_string());
        let events = futures_util::StreamExt::chain(
            futures_util::stream::once(async move { Ok::<_, Infallible>(start) }),
            event_stream(handle, 0),
        );
        let mut response = Sse::new(events).keep_alive(KeepAlive::default()).into_response();
        if let Ok(value) = HeaderValue::from_str(&command_id) {
            response.headers_mut().insert("x-command-id", value);
        }
        return Ok(response);
    }
    let record = handle.wait().await;
    let logs = handle.logs(0, 0);
    Ok(Json(CommandResult { command: record.into(), stdout: logs.stdout, stderr: logs.stderr })
        .into_response())
}

/// Every event numbered above `after`, then each new one as it comes, until the exit.
fn event_stream(handle: Arc<CommandHandle>, after: u64) -> impl Stream<Item = Result<Event, Infallible>> {
    let changes = handle.subscribe();
    let state = (handle, changes, after, VecDeque::<CommandEvent>::new(), false);
    futures_util::stream::unfold(state, |(handle, mut changes, mut after, mut queue, mut done)| async move {
        loop {
            if let Some(event) = queue.pop_front() {
                after = event.seq();
                done = matches!(event, CommandEvent::Exit { .. });
                return Some((Ok(sse_event(event)), (handle, changes, after, queue, done)));
            }
            if done {
                return None;
            }
            changes.borrow_and_update();
            queue.extend(handle.events_after(after));
            if queue.is_empty() && changes.changed().await.is_err() {
                return None;
            }
        }
    })
}

fn sse_event(event: CommandEvent) -> Event {
    let seq = event.seq();
    let (name, data) = match event {
        CommandEvent::Stdout { data, .. } => ("stdout", serde_json::json!({ "seq": seq, "data": data })),
        CommandEvent::Stderr { data, .. } => ("stderr", serde_json::json!({ "seq": seq, "data": data })),
        CommandEvent::Exit { record, .. } => {
            ("exit", serde_json::to_value(CommandView::from(record)).unwrap_or_default())
        }
    };
    Event::default().event(name).id(seq.to_string()).data(data.to_string())
}

/// The sandbox's commands, oldest first.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/commands", tag = "commands",
    responses((status = 200, body = CommandList), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CommandList>, ApiError> {
    let records = state.runtime.commands(caller.owner(), &id)?;
    Ok(Json(CommandList { items: records.into_iter().map(Into::into).collect() }))
}

/// A command's status and usage.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/commands/{command_id}", tag = "commands",
    responses((status = 200, body = CommandView), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, command_id)): Path<(String, String)>,
) -> Result<Json<CommandView>, ApiError> {
    Ok(Json(state.runtime.command_record(caller.owner(), &id, &command_id)?.into()))
}

/// Offsets for `logs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    #[serde(default)]
    stdout_offset: usize,
    #[serde(default)]
    stderr_offset: usize,
}

/// A command's output from byte offsets on (`stdout_offset`, `stderr_offset`; 0 by default).
#[utoipa::path(get, path = "/v1/sandboxes/{id}/commands/{command_id}/logs", tag = "commands",
    params(("stdout_offset" = Option<usize>, Query), ("stderr_offset" = Option<usize>, Query)),
    responses((status = 200, body = LogsView), (status = 404, body = ErrorBody)))]
pub async fn logs(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, command_id)): Path<(String, String)>,
    query: Result<Query<LogsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<LogsView>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let handle = state.runtime.command(caller.owner(), &id, &command_id)?;
    let logs = handle.logs(query.stdout_offset, query.stderr_offset);
    Ok(Json(LogsView {
        stdout: logs.stdout,
        stderr: logs.stderr,
        stdout_offset: logs.stdout_end,
        stderr_offset: logs.stderr_end,
        command: handle.record().into(),
    }))
}

/// A command's events as Server-Sent Events: `stdout`, `stderr` and `exit`, each with its
/// sequence number as the event id. A client that reconnects with `Last-Event-ID: N` (or
/// `?after=N`) gets every event after N, then new ones as they come.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/commands/{command_id}/events", tag = "commands",
    params(("after" = Option<u64>, Query)),
    responses((status = 200, content_type = "text/event-stream"), (status = 404, body = ErrorBody)))]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, command_id)): Path<(String, String)>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let from_header = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let from_query = query.into_iter().find(|(k, _)| k == "after").map(|(_, v)| v);
    let after = match from_header.or(from_query) {
        Some(text) => {
            text.trim().parse::<u64>().map_err(|_| ApiError::invalid("Last-Event-ID", "must be a number"))?
        }
        None => 0,
    };
    let handle = state.runtime.command(caller.owner(), &id, &command_id)?;
    Ok(Sse::new(event_stream(handle, after)).keep_alive(KeepAlive::default()).into_response())
}

/// Write to a background command's standard input, and optionally close it.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/commands/{command_id}/stdin", tag = "commands",
    request_body = WriteStdin, responses((status = 204), (status = 409, body = ErrorBody)))]
pub async fn stdin(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, command_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<WriteStdin>,
) -> Result<StatusCode, ApiError> {
    let handle = state.runtime.command(caller.owner(), &id, &command_id)?;
    if !body.data.is_empty() {
        state.runtime.write_stdin(&handle, body.data).await?;
    }
    if body.close {
        state.runtime.close_stdin(&handle).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Signal numbers by name, with or without `SIG`.
const SIGNALS: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("KILL", 9),
    ("USR1", 10),
    ("USR2", 12),
    ("TERM", 15),
    ("CONT", 18),
    ("STOP", 19),
];

fn signal_number(value: &serde_json::Value) -> Result<i32, ApiError> {
    let number = match value {
        serde_json::Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
        serde_json::Value::String(name) => {
            let name = name.trim().to_ascii_uppercase();
            let name = name.strip_prefix("SIG").unwrap_or(&name);
            SIGNALS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        }
        _ => None,
    };
    number.filter(|n| (1..=64).contains(n)).ok_or_else(|| {
        ApiError::invalid(
            "signal",
            format!("{value} is not a signal name (TERM, INT, KILL, ...) or number 1-64"),
        )
    })
}

/// Send a signal to the command's main process.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/commands/{command_id}/signal", tag = "commands",
    request_body = SendSignal, responses((status = 204), (status = 409, body = ErrorBody)))]
pub async fn signal(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, command_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<SendSignal>,
) -> Result<StatusCode, ApiError> {
    let number = signal_number(&body.signal)?;
    let handle = state.runtime.command(caller.owner(), &id, &command_id)?;
    state.runtime.signal(&handle, number).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Kill the command and every process it started (even ones that called `setsid`); answers
/// with its final record.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/commands/{command_id}/kill", tag = "commands",
    responses((status = 200, body = CommandView), (status = 409, body = ErrorBody)))]
pub async fn kill(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, command_id)): Path<(String, String)>,
) -> Result<Json<CommandView>, ApiError> {
    let handle = state.runtime.command(caller.owner(), &id, &command_id)?;
    state.runtime.kill(&handle).await?;
    Ok(Json(handle.wait().await.into()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::signal_number;

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(signal_number(&json!("SIGTERM")).unwrap(), 15);
        assert_eq!(signal_number(&json!("int")).unwrap(), 2);
        assert_eq!(signal_number(&json!(9)).unwrap(), 9);
        assert!(signal_number(&json!("SIGNOPE")).is_err());
        assert!(signal_number(&json!(0)).is_err());
        assert!(signal_number(&json!([1])).is_err());
    }
}
