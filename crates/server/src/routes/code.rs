//! Code execution: contexts (`/v1/sandboxes/{id}/contexts`), runs of code in them
//! (`/v1/sandboxes/{id}/code`), and one-shot runs in a fresh sandbox (`/v1/run`). A run answers
//! when it ends, or as Server-Sent Events: `stdout`, `stderr`, `result`, `error`, then `end`.

use std::convert::Infallible;
use std::time::Duration;

use airlock_runtime::{CodeEvent, CodeEvents, CodeMode, CodeResult, CodeRun, OneShot};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use futures_util::Stream;
use serde_json::{json, Value};

use crate::api_code::{
    CodeEndView, CodeRunView, ContextList, ContextView, CreateContext, FileEncoding, ModeName, RunCode,
    RunOnce,
};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

/// Create a context and start its interpreter.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/contexts", tag = "code", request_body = CreateContext,
    responses((status = 201, body = ContextView), (status = 404, body = ErrorBody),
              (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create_context(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CreateContext>,
) -> Result<(StatusCode, Json<ContextView>), ApiError> {
    let new = airlock_runtime::NewContext { language: body.language.into(), cwd: body.cwd, env: body.env };
    let record = state.runtime.create_context(caller.owner(), &id, new).await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// The sandbox's contexts.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/contexts", tag = "code",
    responses((status = 200, body = ContextList), (status = 404, body = ErrorBody)))]
pub async fn list_contexts(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ContextList>, ApiError> {
    let records = state.runtime.contexts(caller.owner(), &id)?;
    Ok(Json(ContextList { items: records.into_iter().map(Into::into).collect() }))
}

/// One context.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/contexts/{context_id}", tag = "code",
    responses((status = 200, body = ContextView), (status = 404, body = ErrorBody)))]
pub async fn get_context(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, context_id)): Path<(String, String)>,
) -> Result<Json<ContextView>, ApiError> {
    Ok(Json(state.runtime.context(caller.owner(), &id, &context_id)?.into()))
}

/// Stop a context's interpreter and forget it.
#[utoipa::path(delete, path = "/v1/sandboxes/{id}/contexts/{context_id}", tag = "code",
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_context(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, context_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.runtime.delete_context(caller.owner(), &id, &context_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Start a context's interpreter afresh: variables are gone, id and settings stay.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/contexts/{context_id}/restart", tag = "code",
    responses((status = 200, body = ContextView), (status = 404, body = ErrorBody)))]
pub async fn restart_context(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, context_id)): Path<(String, String)>,
) -> Result<Json<ContextView>, ApiError> {
    Ok(Json(state.runtime.restart_context(caller.owner(), &id, &context_id).await?.into()))
}

/// Interrupt the run going on in a context (KeyboardInterrupt in Python); the context keeps its
/// state. Code that ignores the interrupt gets its context restarted.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/contexts/{context_id}/interrupt", tag = "code",
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn interrupt_context(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, context_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.runtime.interrupt_context(caller.owner(), &id, &context_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Run code in a context. By default the answer comes when the run ends; with `stream` (or
/// `Accept: text/event-stream`) it is a stream of `stdout`, `stderr`, `result`, `error` and
/// `end` events.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/code", tag = "code", request_body = RunCode,
    responses((status = 200, body = CodeRunView), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn run_code(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RunCode>,
) -> Result<Response, ApiError> {
    let mode = match (body.mode, &body.event) {
        (Some(mode), _) => mode,
        (None, Some(_)) => ModeName::Handler,
        (None, None) => ModeName::Cell,
    };
    if mode == ModeName::Handler && body.event.is_none() {
        return Err(ApiError::invalid("event", "handler mode needs an `event` (use {} for none)"));
    }
    if mode == ModeName::Cell && body.event.is_some() {
        return Err(ApiError::invalid("event", "only handler mode takes an `event`"));
    }
    if body.context.is_some() && body.language.is_some() {
        return Err(ApiError::invalid("language", "give `context` or `language`, not both"));
    }
    let run = CodeRun {
        context: body.context,
        language: body.language.unwrap_or_default().into(),
        code: body.code,
        mode: mode.into(),
        timeout: timeout(body.timeout_ms, body.event.as_ref())?,
        event: body.event,
        max_output_bytes: body.max_output_bytes.unwrap_or(state.runtime.config().max_output_bytes),
    };
    let handler = run.mode == CodeMode::Handler;
    let events = state.runtime.run_code(caller.owner(), &id, run).await?;
    answer(id, events, handler, wants_stream(body.stream, &headers)).await
}

/// Run code once in a fresh sandbox (from the warm pool when the limits are the defaults), then
/// delete it: as a script with stdin and an exit code, or with `event` as a handler.
#[utoipa::path(post, path = "/v1/run", tag = "code", request_body = RunOnce,
    responses((status = 200, body = CodeRunView), (status = 400, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
pub async fn run_once(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RunOnce>,
) -> Result<Response, ApiError> {
    let config = state.runtime.config();
    let mut files = Vec::with_capacity(body.files.len());
    for file in body.files {
        let bytes = match file.encoding {
            FileEncoding::Utf8 => file.content.into_bytes(),
            FileEncoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(file.content.as_bytes())
                .map_err(|e| ApiError::invalid("files", format!("{}: bad base64: {e}", file.path)))?,
        };
        files.push((file.path, bytes));
    }
    let shot = OneShot {
        language: body.language.into(),
        code: body.code,
        files,
        entrypoint: body.entrypoint,
        stdin: body.stdin,
        env: body.env,
        limits: body.limits.over(&config.default_limits)?,
        timeout: timeout(body.timeout_ms, body.event.as_ref())?,
        max_output_bytes: body.max_output_bytes.unwrap_or(config.max_output_bytes),
        event: body.event,
        network: body.network.into_policy("network")?,
    };
    let handler = shot.event.is_some();
    let (sandbox_id, events) = state.runtime.run_once(caller.owner(), shot).await?;
    answer(sandbox_id, events, handler, wants_stream(body.stream, &headers)).await
}

/// The run's timeout: `__timeout` in the event (seconds, as the Sandbox Executor takes it) wins
/// over `timeout_ms`.
fn timeout(timeout_ms: Option<u64>, event: Option<&Value>) -> Result<Option<Duration>, ApiError> {
    if let Some(seconds) = event.and_then(|e| e.get("__timeout")) {
        return match seconds.as_f64() {
            Some(s) if s > 0.0 && s.is_finite() && s <= 86_400.0 => Ok(Some(Duration::from_secs_f64(s))),
            _ => Err(ApiError::invalid(
                "event.__timeout",
                "must be a number of seconds above 0, at most 86400",
            )),
        };
    }
    match timeout_ms {
        Some(0) => Err(ApiError::invalid("timeout_ms", "must be above 0")),
        other => Ok(other.map(Duration::from_millis)),
    }
}

fn wants_stream(asked: bool, headers: &HeaderMap) -> bool {
    asked
        || headers
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream"))
}

async fn answer(
    sandbox_id: String,
    events: CodeEvents,
    handler: bool,
    stream: bool,
) -> Result<Response, ApiError> {
    if stream {
        let mut response = Sse::new(event_stream(events)).keep_alive(KeepAlive::default()).into_response();
        if let Ok(value) = HeaderValue::from_str(&sandbox_id) {
            response.headers_mut().insert("x-sandbox-id", value);
        }
        return Ok(response);
    }
    let run = CodeResult::collect(events).await;
    Ok(Json(CodeRunView::new(sandbox_id, run, handler)).into_response())
}

/// A run's events as Server-Sent Events, numbered from 1, until `end`.
fn event_stream(events: CodeEvents) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold((events, 0u64, false), |(mut events, seq, done)| async move {
        if done {
            return None;
        }
        let event = events.recv().await?;
        let seq = seq + 1;
        let last = matches!(event, CodeEvent::End(_));
        let (name, data) = match event {
            CodeEvent::Stdout(data) => ("stdout", json!({ "data": data })),
            CodeEvent::Stderr(data) => ("stderr", json!({ "data": data })),
            CodeEvent::Result { main, data } => ("result", json!({ "main": main, "data": data })),
            CodeEvent::Error { name, value, traceback } => {
                ("error", json!({ "name": name, "value": value, "traceback": traceback }))
            }
            CodeEvent::End(outcome) => {
                ("end", serde_json::to_value(CodeEndView::from(outcome)).unwrap_or_default())
            }
        };
        let event = Event::default().event(name).id(seq.to_string()).data(data.to_string());
        Some((Ok(event), (events, seq, last)))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::timeout;

    #[test]
    fn the_events_timeout_is_in_seconds_and_wins() {
        let event = json!({"__timeout": 1.5, "x": 1});
        assert_eq!(timeout(Some(10), Some(&event)).unwrap(), Some(std::time::Duration::from_millis(1500)));
        assert_eq!(timeout(Some(10), None).unwrap(), Some(std::time::Duration::from_millis(10)));
        assert_eq!(timeout(None, Some(&json!({}))).unwrap(), None);
        assert!(timeout(None, Some(&json!({"__timeout": "soon"}))).is_err());
        assert!(timeout(None, Some(&json!({"__timeout": 0}))).is_err());
        assert!(timeout(Some(0), None).is_err());
    }
}
