//! Code contexts (`/code/context`, `/code/contexts...`) and runs of code in them (`/code`), on
//! the runtime's code contexts: Python, JavaScript and Bash interpreters whose state survives
//! between runs. A run names a context by id, or only a language for that language's default
//! context; a run with neither is a plain shell command, as in execd.

use std::collections::VecDeque;

use airlock_runtime::{
    CodeEvent, CodeEvents, CodeMode, CodeOutcome, CodeRun, CodeStatus, ContextRecord, Language, NewContext,
};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use futures_util::Stream;
use serde::{Deserialize, Serialize};

use super::command::{self, interrupt_any, InterruptQuery};
use super::sse::{self, Lines, StreamEvent};
use super::{query, OsJson};
use crate::compat::opensandbox::access::SandboxAccess;
use crate::compat::opensandbox::error::OsError;
use crate::state::AppState;

/// A language by its OpenSandbox name.
fn language(name: &str) -> Result<Language, OsError> {
    Language::ALL.into_iter().find(|l| l.as_str() == name).ok_or_else(|| {
        OsError::invalid(
            "language",
            format!("{name:?} is not supported here; use python, javascript or bash"),
        )
    })
}

/// A context, as execd shows it.
#[derive(Debug, Serialize)]
pub(super) struct ContextView {
    id: String,
    language: &'static str,
}

impl From<ContextRecord> for ContextView {
    fn from(record: ContextRecord) -> ContextView {
        ContextView { id: record.id, language: record.language.as_str() }
    }
}

/// `POST /code/context`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateContext {
    language: Option<String>,
    cwd: Option<String>,
}

/// Create a context and start its interpreter (Python when no language is given).
pub(super) async fn create_context(
    State(state): State<AppState>,
    access: SandboxAccess,
    OsJson(body): OsJson<CreateContext>,
) -> Result<Json<ContextView>, OsError> {
    let language = language(body.language.as_deref().unwrap_or("python"))?;
    let new = NewContext { language, cwd: body.cwd, env: Default::default() };
    Ok(Json(state.runtime.create_context(access.owner(), &access.id, new).await?.into()))
}

/// `?language=` of the listing and the bulk delete.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LanguageQuery {
    language: Option<String>,
}

/// The contexts of a language (every context without one); bash sessions are bash contexts.
async fn contexts_of(
    state: &AppState,
    access: &SandboxAccess,
    q: LanguageQuery,
) -> Result<Vec<ContextRecord>, OsError> {
    let wanted = q.language.as_deref().map(language).transpose()?;
    let all = state.runtime.contexts(access.owner(), &access.id)?;
    Ok(all.into_iter().filter(|c| wanted.is_none_or(|l| l == c.language)).collect())
}

/// `GET /code/contexts?language=`.
pub(super) async fn list_contexts(
    State(state): State<AppState>,
    access: SandboxAccess,
    q: Result<Query<LanguageQuery>, QueryRejection>,
) -> Result<Json<Vec<ContextView>>, OsError> {
    let contexts = contexts_of(&state, &access, query(q)?).await?;
    Ok(Json(contexts.into_iter().map(Into::into).collect()))
}

/// `DELETE /code/contexts?language=`: every context of the language.
pub(super) async fn delete_contexts(
    State(state): State<AppState>,
    access: SandboxAccess,
    q: Result<Query<LanguageQuery>, QueryRejection>,
) -> Result<StatusCode, OsError> {
    let q = query(q)?;
    if q.language.is_none() {
        return Err(OsError::invalid("language", "name the language whose contexts to delete"));
    }
    for context in contexts_of(&state, &access, q).await? {
        state.runtime.delete_context(access.owner(), &access.id, &context.id).await?;
    }
    Ok(StatusCode::OK)
}

/// `GET /code/contexts/{context_id}`.
pub(super) async fn get_context(
    State(state): State<AppState>,
    access: SandboxAccess,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<ContextView>, OsError> {
    Ok(Json(state.runtime.context(access.owner(), &access.id, &id)?.into()))
}

/// `DELETE /code/contexts/{context_id}`: stop its interpreter.
pub(super) async fn delete_context(
    State(state): State<AppState>,
    access: SandboxAccess,
    Path((_, id)): Path<(String, String)>,
) -> Result<StatusCode, OsError> {
    state.runtime.delete_context(access.owner(), &access.id, &id).await?;
    Ok(StatusCode::OK)
}

/// `POST /code`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunCode {
    code: String,
    context: Option<ContextRef>,
}

/// The context a run names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ContextRef {
    id: Option<String>,
    language: Option<String>,
}

/// Run code; its events stream until it ends.
pub(super) async fn run(
    State(state): State<AppState>,
    access: SandboxAccess,
    OsJson(body): OsJson<RunCode>,
) -> Result<Response, OsError> {
    if body.code.trim().is_empty() {
        return Err(OsError::invalid("code", "must not be empty"));
    }
    // A named context runs in its own language; `language` only picks a default context.
    let (context, language) = match body.context {
        Some(ContextRef { id: Some(id), language: _ }) if !id.is_empty() => (Some(id), Language::Python),
        Some(ContextRef { language: Some(name), .. }) if !name.is_empty() => (None, language(&name)?),
        _ => {
            let spec = command::plain(&state, command::shell(body.code), None);
            let handle = command::start(&state, &access, spec).await?;
            return Ok(sse::respond(command::foreground(handle)));
        }
    };
    // A default context's id is its language's name.
    let id = context.clone().unwrap_or_else(|| language.as_str().to_owned());
    let run = CodeRun {
        context,
        language,
        code: body.code,
        mode: CodeMode::Cell,
        event: None,
        timeout: None,
        max_output_bytes: state.runtime.config().max_output_bytes,
    };
    let events = state.runtime.run_code(access.owner(), &access.id, run).await?;
    Ok(sse::respond(run_events(id, events, Framing::Cell)))
}

/// `DELETE /code?id=`: interrupt the run going on in a context; the context keeps its state.
pub(super) async fn interrupt(
    State(state): State<AppState>,
    access: SandboxAccess,
    q: Result<Query<InterruptQuery>, QueryRejection>,
) -> Result<StatusCode, OsError> {
    interrupt_any(&state, &access, &query(q)?.id, false).await?;
    Ok(StatusCode::OK)
}

/// How a run's output and end are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// A notebook cell: output as written; the end is `execution_count` and
    /// `execution_complete`, after an `error` when the code raised one.
    Cell,
    /// A command in a bash session: output line by line; a non-zero exit status is an
    /// `error`, as for `/command`.
    Command,
}

/// A run's events: `init` with the context's id, then what the run produced, then its end.
pub(super) fn run_events(
    id: String,
    events: CodeEvents,
    framing: Framing,
) -> impl Stream<Item = StreamEvent> {
    let queue = VecDeque::from([StreamEvent::init(&id)]);
    let state = (events, queue, false, false, [Lines::default(), Lines::default()]);
    futures_util::stream::unfold(
        state,
        move |(mut events, mut queue, mut done, mut raised, mut lines)| async move {
            loop {
                if let Some(event) = queue.pop_front() {
                    return Some((event, (events, queue, done, raised, lines)));
                }
                if done {
                    return None;
                }
                match events.recv().await? {
                    CodeEvent::Stdout(text) if framing == Framing::Command => {
                        queue.extend(lines[0].push(&text).into_iter().map(StreamEvent::stdout))
                    }
                    CodeEvent::Stderr(text) if framing == Framing::Command => {
                        queue.extend(lines[1].push(&text).into_iter().map(StreamEvent::stderr))
                    }
                    CodeEvent::Stdout(text) => queue.push_back(StreamEvent::stdout(text)),
                    CodeEvent::Stderr(text) => queue.push_back(StreamEvent::stderr(text)),
                    CodeEvent::Result { data, .. } => queue.push_back(StreamEvent::result(data)),
                    CodeEvent::Error { name, value, traceback } => {
                        raised = true;
                        queue.push_back(StreamEvent::error(&name, value, traceback));
                    }
                    CodeEvent::End(outcome) => {
                        queue.extend(lines[0].finish().map(StreamEvent::stdout));
                        queue.extend(lines[1].finish().map(StreamEvent::stderr));
                        queue.extend(end_events(&outcome, framing, raised));
                        done = true;
                    }
                }
            }
        },
    )
}

/// The events that tell how a run ended.
fn end_events(outcome: &CodeOutcome, framing: Framing, raised: bool) -> Vec<StreamEvent> {
    let why = || outcome.message.clone().unwrap_or_else(|| outcome.status.as_str().to_owned());
    let stopped = match outcome.status {
        CodeStatus::Ok | CodeStatus::Error => None,
        CodeStatus::Interrupted => Some("KeyboardInterrupt"),
        CodeStatus::Timeout => Some("TimeoutError"),
        CodeStatus::ContextLost => Some("ContextLost"),
        CodeStatus::Failed => Some("ExecutionFailed"),
    };
    match framing {
        Framing::Command => match (stopped, outcome.exit_code) {
            _ if raised => Vec::new(),
            (Some(name), _) => vec![StreamEvent::error(name, why(), vec![why()])],
            (None, None | Some(0)) => vec![StreamEvent::complete(outcome.usage.duration_ms)],
            (None, Some(code)) => {
                vec![StreamEvent::error(
                    "CommandExecError",
                    code.to_string(),
                    vec![format!("exit status {code}")],
                )]
            }
        },
        Framing::Cell => {
            let mut end = Vec::new();
            if let (Some(name), false) = (stopped, raised) {
                end.push(StreamEvent::error(name, why(), vec![why()]));
            }
            end.extend(outcome.execution_count.filter(|n| *n > 0).map(StreamEvent::execution_count));
            end.push(StreamEvent::complete(outcome.usage.duration_ms));
            end
        }
    }
}
