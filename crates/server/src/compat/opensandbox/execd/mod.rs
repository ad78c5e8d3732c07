//! The execd API of a sandbox, under `/execd/{sandbox_id}`: what OpenSandbox's daemon inside a
//! sandbox answers (commands, bash sessions, code contexts, files, metrics), translated into
//! calls on the runtime. Every handler takes [`SandboxAccess`](super::access::SandboxAccess),
//! so a caller needs the sandbox's access token or its owner's API key, and every error answer
//! is an [`OsError`].

mod code;
mod command;
mod files;
mod glob;
mod metrics;
mod session;
mod sse;
mod transfer;

use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Query, Request};
use axum::routing::{delete, get, post};
use axum::Router;
use serde::de::DeserializeOwned;

use super::error::OsError;
use crate::extract::ApiJson;
use crate::state::AppState;

/// Routes, relative to `/opensandbox`.
pub fn routes() -> Router<AppState> {
    let execd = Router::new()
        .route("/ping", get(metrics::ping))
        .route("/metrics", get(metrics::snapshot))
        .route("/metrics/watch", get(metrics::watch))
        .route("/command", post(command::run).delete(command::interrupt))
        .route("/command/status/{id}", get(command::status))
        .route("/command/{id}/logs", get(command::logs))
        .route("/session", post(session::create))
        // A session is a Bash context: ending one is deleting the context.
        .route("/session/{session_id}", delete(code::delete_context))
        .route("/session/{session_id}/run", post(session::run))
        .route("/code", post(code::run).delete(code::interrupt))
        .route("/code/context", post(code::create_context))
        .route("/code/contexts", get(code::list_contexts).delete(code::delete_contexts))
        .route("/code/contexts/{context_id}", get(code::get_context).delete(code::delete_context))
        .route("/files", delete(files::remove_files))
        .route("/files/info", get(files::info))
        .route("/files/mv", post(files::move_files))
        .route("/files/permissions", post(files::set_permissions))
        .route("/files/search", get(files::search))
        .route("/files/replace", post(files::replace))
        .route("/files/download", get(transfer::download))
        // Uploads stream their bodies to the sandbox in pieces, so no body limit applies.
        .route("/files/upload", post(transfer::upload).layer(DefaultBodyLimit::disable()))
        .route("/directories", post(files::make_dirs).delete(files::remove_dirs))
        .route("/directories/list", get(files::list_dir));
    Router::new().nest("/execd/{sandbox_id}", execd)
}

/// A JSON body whose rejection is an [`OsError`].
pub(super) struct OsJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OsJson<T> {
    type Rejection = OsError;

    async fn from_request(req: Request, state: &S) -> Result<Self, OsError> {
        let ApiJson(value) = ApiJson::<T>::from_request(req, state).await.map_err(OsError)?;
        Ok(OsJson(value))
    }
}

/// A query string, or the [`OsError`] that says what is wrong with it.
fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, OsError> {
    query.map(|Query(q)| q).map_err(|e| OsError::invalid("query", e.body_text()))
}

/// Every value of a repeated query parameter (`?path=a&path=b`), at least one.
fn repeated(pairs: Vec<(String, String)>, name: &str) -> Result<Vec<String>, OsError> {
    let values: Vec<String> = pairs.into_iter().filter(|(k, _)| k == name).map(|(_, v)| v).collect();
    if values.is_empty() {
        return Err(OsError::invalid(name, "give it at least once"));
    }
    Ok(values)
}
