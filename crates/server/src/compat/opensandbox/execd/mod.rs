//! STUB: the execd API of a sandbox, under `/execd/{sandbox_id}`.

use axum::Router;

use crate::state::AppState;

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}
