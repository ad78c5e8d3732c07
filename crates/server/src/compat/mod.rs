//! Front doors that speak other systems' interfaces: OpenSandbox (under `/opensandbox`), the
//! Sandbox Runtime (`/workspace/se/...`) and the Sandbox Executor (`/execute`, `/info`). Each
//! translates its requests into the runtime's typed values and its answers back; none has
//! sandbox logic of its own.

pub mod executor;
pub mod opensandbox;
pub mod sandbox_runtime;

use axum::Router;

use crate::state::AppState;

/// The settings of every front door, decided by the binary that starts the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrontDoors {
    /// OpenSandbox: how images map to templates.
    pub opensandbox: opensandbox::Settings,
    /// Sandbox Runtime: its `SANDBOX_*` settings.
    pub sandbox_runtime: sandbox_runtime::Settings,
    /// Sandbox Executor: control plane, concurrency, memory.
    pub executor: executor::Settings,
}

/// The routes of every front door.
pub fn routes() -> Router<AppState> {
    Router::new()
        .nest("/opensandbox", opensandbox::routes())
        .merge(sandbox_runtime::routes())
        .merge(executor::routes())
}

/// Start what the front doors do in the background (the executor's result deliveries).
pub fn start(state: &AppState) {
    executor::start(state);
}
