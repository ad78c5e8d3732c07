//! `/health`, `/v1/info`, `/metrics` and `/openapi.json`, and the answers for unknown routes.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use utoipa::OpenApi;

use crate::api::Health;
use crate::error::ApiError;
use crate::state::AppState;

/// Liveness and readiness, with the reasons when not ready (503 then).
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let mut reasons = Vec::new();
    if !state.ready.load(Ordering::SeqCst) {
        reasons.push("the server is starting or stopping".to_owned());
    }
    if let Err(e) = state.runtime.with_store(|s| s.keys().map(|_| ())) {
        reasons.push(format!("the store does not answer: {e}"));
    }
    let ready = reasons.is_empty();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body =
        Health { status: if ready { "ok" } else { "unavailable" }.to_owned(), live: true, ready, reasons };
    (status, Json(body))
}

/// Version, isolation features in force, and limits.
#[utoipa::path(get, path = "/v1/info", tag = "operations", responses((status = 200, body = serde_json::Value)))]
pub async fn info(State(state): State<AppState>) -> Json<serde_json::Value> {
    let config = state.runtime.config();
    let limits = |l: &airlock_runtime::SandboxLimits| {
        serde_json::to_value(crate::api::LimitsView::from(l)).unwrap_or_default()
    };
    Json(serde_json::json!({
        "name": "airlock",
        "version": env!("CARGO_PKG_VERSION"),
        "features": *state.features,
        "auth_required": state.require_keys || state.runtime.with_store(|s| s.has_keys()).unwrap_or(true),
        "limits": {
            "default": limits(&config.default_limits),
            "maximum": limits(&config.max_limits),
            "default_ttl_seconds": config.default_ttl.map(|t| t.as_secs()),
            "max_ttl_seconds": config.max_ttl.map(|t| t.as_secs()),
            "max_sandboxes": config.max_sandboxes,
            "max_concurrent_commands": config.max_concurrent_commands,
            "max_output_bytes": config.max_output_bytes,
            "pool_size": config.pool_size,
        },
    }))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let text = state.metrics.render(&state.runtime.stats());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// This API's OpenAPI document.
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi::ApiDoc::openapi())
}

/// Any path the API does not have.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        "ROUTE_NOT_FOUND",
        format!("no route {}", uri.path()),
        "see /openapi.json for the routes this server has",
    )
}

/// A path the API has, with a method it does not take.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        "METHOD_NOT_ALLOWED",
        format!("{} does not take {method}", uri.path()),
        "see /openapi.json for the methods each route takes",
    )
}
