//! STUB

use axum::Router;

use crate::state::AppState;

/// Settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {}

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}

/// Start background work.
pub fn start(_state: &AppState) {}
