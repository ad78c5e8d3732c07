//! Bash sessions (`/session`, `/session/{id}/run`, `DELETE /session/{id}`): one shell whose
//! working directory, variables and functions persist between runs. A session is a Bash code
//! context of the runtime, so its id is the context's.

use airlock_runtime::{CodeMode, CodeResult, CodeRun, Language, NewContext};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::code::{run_events, Framing};
use super::sse;
use super::OsJson;
use crate::compat::opensandbox::access::SandboxAccess;
use crate::compat::opensandbox::error::OsError;
use crate::state::AppState;

/// `POST /session` (the body may be empty).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateSession {
    cwd: Option<String>,
}

/// A new session's id.
#[derive(Debug, Serialize)]
pub(super) struct Created {
    session_id: String,
}

/// Start a shell.
pub(super) async fn create(
    State(state): State<AppState>,
    access: SandboxAccess,
    OsJson(body): OsJson<CreateSession>,
) -> Result<Json<Created>, OsError> {
    let new = NewContext { language: Language::Bash, cwd: body.cwd, env: Default::default() };
    let record = state.runtime.create_context(access.owner(), &access.id, new).await?;
    Ok(Json(Created { session_id: record.id }))
}

/// `POST /session/{id}/run`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunInSession {
    command: String,
    /// Change to this directory first (it stays the session's directory after the run).
    cwd: Option<String>,
    /// Milliseconds; none or 0 for no timeout. A timeout interrupts the run, not the shell.
    timeout: Option<u64>,
}

/// Run a command in the session's shell; its events stream as for `/command`.
pub(super) async fn run(
    State(state): State<AppState>,
    access: SandboxAccess,
    Path((_, id)): Path<(String, String)>,
    OsJson(body): OsJson<RunInSession>,
) -> Result<Response, OsError> {
    if body.command.trim().is_empty() {
        return Err(OsError::invalid("command", "must not be empty"));
    }
    let context = state.runtime.context(access.owner(), &access.id, &id)?;
    if context.language != Language::Bash {
        return Err(OsError::invalid(
            "session_id",
            format!("{id} is a {} code context, not a bash session", context.language.as_str()),
        ));
    }
    if let Some(cwd) = body.cwd {
        change_directory(&state, &access, &id, &cwd).await?;
    }
    let run = bash(id.clone(), body.command, body.timeout.filter(|ms| *ms > 0), &state);
    let events = state.runtime.run_code(access.owner(), &access.id, run).await?;
    Ok(sse::respond(run_events(id, events, Framing::Command)))
}

/// A run in the session's shell.
fn bash(id: String, code: String, timeout_ms: Option<u64>, state: &AppState) -> CodeRun {
    CodeRun {
        context: Some(id),
        language: Language::Bash,
        code,
        mode: CodeMode::Cell,
        event: None,
        timeout: timeout_ms.map(std::time::Duration::from_millis),
        max_output_bytes: state.runtime.config().max_output_bytes,
    }
}

/// `cd` in the session's shell, as a run of its own, so that a directory that is not there
/// is a 400 before the command's stream starts.
async fn change_directory(
    state: &AppState,
    access: &SandboxAccess,
    id: &str,
    cwd: &str,
) -> Result<(), OsError> {
    if !cwd.starts_with('/') {
        return Err(OsError::invalid("cwd", "must be an absolute path inside the sandbox"));
    }
    let quoted = format!("'{}'", cwd.replace('\'', r"'\''"));
    let run = bash(id.to_owned(), format!("cd -- {quoted}"), None, state);
    let result = CodeResult::collect(state.runtime.run_code(access.owner(), &access.id, run).await?).await;
    if result.outcome.exit_code == Some(0) {
        return Ok(());
    }
    Err(OsError::invalid("cwd", format!("cannot change to it: {}", result.stderr.trim())))
}
