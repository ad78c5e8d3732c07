//! The OpenSandbox front door, served under `/opensandbox`: the lifecycle API (`/v1/...`),
//! and per sandbox the execd API (`/execd/{sandbox_id}/...`) and the egress API
//! (`/egress/{sandbox_id}/policy`) that the lifecycle API's endpoints point at.

pub mod access;
pub mod error;
pub mod execd;
pub mod lifecycle;
pub mod model;
pub mod policy;
pub mod quantity;

use std::collections::BTreeMap;

use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

/// How the front door picks a template for an image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// Image name to template name; the templates exist (checked when the server starts).
    pub images: BTreeMap<String, String>,
    /// Refuse an image `images` does not name, instead of giving it the default template.
    pub only_mapped_images: bool,
}

/// Routes, relative to `/opensandbox`.
pub fn routes() -> Router<AppState> {
    let policy = || {
        get(policy::get)
            .put(policy::replace)
            .post(policy::replace)
            .patch(policy::patch)
            .delete(policy::delete)
    };
    Router::new()
        .route("/v1/sandboxes", post(lifecycle::create).get(lifecycle::list))
        .route("/v1/sandboxes/{sandbox_id}", get(lifecycle::get).delete(lifecycle::delete))
        .route("/v1/sandboxes/{sandbox_id}/pause", post(lifecycle::pause))
        .route("/v1/sandboxes/{sandbox_id}/resume", post(lifecycle::resume))
        .route("/v1/sandboxes/{sandbox_id}/renew-expiration", post(lifecycle::renew))
        .route("/v1/sandboxes/{sandbox_id}/metadata", axum::routing::patch(lifecycle::patch_metadata))
        .route("/v1/sandboxes/{sandbox_id}/endpoints/{port}", get(lifecycle::endpoint))
        .route("/v1/sandboxes/{sandbox_id}/networkpolicy", policy())
        .route("/egress/{sandbox_id}/policy", policy())
        .route("/health", get(health))
        .merge(execd::routes())
}

/// `GET /opensandbox/health`: the lifecycle server answers.
async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "healthy" }))
}
