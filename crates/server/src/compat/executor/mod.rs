//! The Sandbox Executor front door: `POST /execute` accepts code at once and runs it in the
//! background as a one-shot run of the runtime; the result goes to the control plane
//! (`CONTROL_PLANE_URL`) with the execution id as its idempotency key, retried until
//! acknowledged, while heartbeats tell it the run goes on. `GET /info` describes the executor;
//! `GET /health` is the native one.
//!
//! Threads and ownership: each accepted execution is one tokio task that owns its run, its
//! heartbeat task and, once it ends, the delivery task of its result. The set of running
//! executions is shared by the routes through an [`axum::Extension`]; undelivered results live
//! in the store's outbox, so that a restart picks them up again ([`start`]).

mod deliver;
mod execute;
mod url;
mod workspace;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{json, Value};

pub use self::url::HttpUrl;
use crate::state::AppState;

/// The executor's settings, from the Sandbox Executor's environment variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Where results and heartbeats go (`CONTROL_PLANE_URL`). Without one, results are kept in
    /// the store and delivered once a later start names a control plane.
    pub control_plane: Option<HttpUrl>,
    /// Sent as `Authorization: Bearer` with every call to the control plane
    /// (`INTERNAL_API_TOKEN`).
    pub control_plane_token: Option<BearerToken>,
    /// Executions that may run at once; more are refused (`MAX_CONCURRENT_EXECUTIONS`).
    pub max_concurrent_executions: usize,
    /// Memory of each execution's sandbox in bytes (`MAX_MEMORY_MB`); none: the server's default.
    pub memory_bytes: Option<u64>,
    /// Timeout of an execution that asks for none (`MAX_EXECUTION_TIME`).
    pub default_timeout: Duration,
    /// A host directory whose files every execution finds in its `/workspace` (`WORKSPACE_PATH`).
    pub workspace: Option<PathBuf>,
    /// Time between heartbeats of a running execution (`EXECUTOR_HEARTBEAT_SECONDS`).
    pub heartbeat_interval: Duration,
}

impl Default for Settings {
    /// The Sandbox Executor's defaults, without a control plane.
    fn default() -> Settings {
        Settings {
            control_plane: None,
            control_plane_token: None,
            max_concurrent_executions: 100,
            memory_bytes: None,
            default_timeout: Duration::from_secs(300),
            workspace: None,
            heartbeat_interval: Duration::from_secs(5),
        }
    }
}

/// A secret sent to the control plane; `Debug` does not show it, so settings can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// A token, if it can travel in a header (visible ASCII, not empty).
    pub fn new(token: &str) -> Option<BearerToken> {
        let fits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic());
        fits.then(|| BearerToken(token.to_owned()))
    }

    /// The token itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(***)")
    }
}

/// `POST /execute` and `GET /info`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/execute", post(execute::execute))
        .route("/info", get(info))
        .layer(Extension(execute::Executions::default()))
}

/// Deliver the results an earlier run of the server left undelivered, and warn about settings
/// the runtime will refuse.
pub fn start(state: &AppState) {
    let settings = &state.front_doors.executor;
    let most = state.runtime.config().max_limits.memory_bytes;
    if let Some(memory) = settings.memory_bytes.filter(|m| *m > most) {
        tracing::error!(
            max_memory_mb = memory >> 20,
            server_max_mb = most >> 20,
            "MAX_MEMORY_MB is above the server's maximum sandbox memory: every execution will fail; \
             lower it or raise the server's max_limits"
        );
    }
    deliver::redeliver(state);
}

/// `GET /info`: version, isolation, languages and load, in the Sandbox Executor's fields.
async fn info(
    State(state): State<AppState>,
    Extension(executions): Extension<execute::Executions>,
) -> Json<Value> {
    let settings = &state.front_doors.executor;
    let memory = settings.memory_bytes.unwrap_or(state.runtime.config().default_limits.memory_bytes);
    let pending = state.runtime.with_store(|s| s.outbox_len(deliver::TOPIC)).ok();
    Json(json!({
        "name": "airlock",
        "version": env!("CARGO_PKG_VERSION"),
        "platform": "Linux",
        "isolation": "airlock",
        "features": *state.features,
        "languages": ["python", "javascript", "shell"],
        "workspace_path": "/workspace",
        "active_executions": executions.count(),
        "max_concurrent_executions": settings.max_concurrent_executions,
        "max_memory_mb": memory >> 20,
        "default_timeout_seconds": settings.default_timeout.as_secs_f64(),
        "heartbeat_interval_seconds": settings.heartbeat_interval.as_secs_f64(),
        "control_plane_configured": settings.control_plane.is_some(),
        "pending_results": pending,
    }))
}
