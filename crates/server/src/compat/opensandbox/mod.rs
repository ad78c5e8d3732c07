//! The OpenSandbox front door, served under `/opensandbox`: the lifecycle API (`/v1/...`),
//! and per sandbox the execd API (`/execd/{sandbox_id}/...`) and the egress API
//! (`/egress/{sandbox_id}/policy`) that the lifecycle API's endpoints point at.

pub mod access;
pub mod error;
pub mod execd;

use axum::Router;

use crate::state::AppState;

/// Settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {}

/// Routes, relative to `/opensandbox`.
pub fn routes() -> Router<AppState> {
    Router::new().merge(execd::routes())
}
