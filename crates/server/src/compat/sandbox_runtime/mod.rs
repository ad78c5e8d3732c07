//! The Sandbox Runtime front door: the `/workspace/se/...` routes of the Python session server
//! (`sandbox_runtime.shared_env.server`), so that its clients switch to Airlock by changing a
//! URL. A session is an Airlock sandbox whose metadata `se.session` holds the client's name for
//! it; names are looked up with the runtime's metadata filter, among the caller's own sandboxes
//! only, so two API keys may use the same name without meeting. Every answer, errors included,
//! has the envelope of [`envelope`]. The `SANDBOX_*` environment variables arrive as
//! [`Settings`].

mod envelope;
mod files;
mod run;
mod sessions;

use std::time::Duration;

use axum::routing::{any, get, post, MethodRouter};
use axum::Router;

use crate::state::AppState;

/// The `SANDBOX_*` settings `airlock serve` reads for this front door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `SANDBOX_TIMEOUT_SECONDS`: how long a run may take when neither the request nor its
    /// session says; 300 seconds, as the Sandbox Runtime's own default.
    pub timeout: Duration,
    /// `SANDBOX_MEMORY_LIMIT` (given in KB): memory of the sessions made here; the server's
    /// default limits when none.
    pub memory_bytes: Option<u64>,
    /// `SANDBOX_SESSION_TTL`: time to live of the sessions made here; the server's default
    /// when none.
    pub session_ttl: Option<Duration>,
    /// `SANDBOX_CPU_QUOTA` (given in cores): CPU of the sessions made here, in millicores; the
    /// server's default limits when none.
    pub cpu_millis: Option<u64>,
    /// `SANDBOX_ALLOW_NETWORK`: whether sessions reach the network (through the egress proxy,
    /// whose protected ranges still apply). Off unless set: Airlock's sandboxes start without
    /// network.
    pub allow_network: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            timeout: Duration::from_secs(300),
            memory_bytes: None,
            session_ttl: None,
            cpu_millis: None,
            allow_network: false,
        }
    }
}

/// Every route of the front door, at its absolute path.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/workspace/se/healthy", door(get(sessions::healthy)))
        .route("/workspace/se/session", door(post(sessions::create_unnamed)))
        .route(
            "/workspace/se/session/{session_id}",
            door(post(sessions::create).get(sessions::status).delete(sessions::delete)),
        )
        .route("/workspace/se/status/{session_id}", door(get(sessions::status)))
        .route("/workspace/se/execute_code/{session_id}", door(post(run::execute_code)))
        .route("/workspace/se/execute/{session_id}", door(post(run::execute)))
        .route("/workspace/se/upload/{session_id}", door(post(files::upload)))
        .route("/workspace/se/create/{session_id}", door(post(files::create)))
        .route("/workspace/se/download/{session_id}", door(get(files::download)))
        .route("/workspace/se/download/{session_id}/{*path}", door(get(files::download)))
        .route("/workspace/se/files/{session_id}", door(get(files::list)))
        .route("/workspace/se/files/{session_id}/{*path}", door(get(files::list)))
        .route("/workspace/se/{*rest}", any(envelope::no_route))
}

/// A route whose wrong methods are answered in this front door's envelope.
fn door(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route.fallback(envelope::wrong_method)
}
