//! The Airlock HTTP server: the native `/v1` API over the runtime, API-key auth, Server-Sent
//! Events, `/health`, `/metrics` and `/openapi.json`. Every error answer comes from one
//! registry ([`error::REGISTRY`]) with the body `{"error": {"code", "message", "hint"}}`.
#![forbid(unsafe_code)]

pub mod api;
pub mod api_code;
pub mod api_files;
pub mod api_network;
pub mod auth;
pub mod compat;
pub mod error;
mod extract;
mod metrics;
pub mod openapi;
mod routes;
mod state;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use airlock_runtime::Runtime;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{any, get, post};
use axum::Router;
use tracing::Instrument;

pub use crate::metrics::Metrics;
use crate::routes::{code, commands, files, links, network, sandboxes, system};
pub use crate::state::AppState;

/// Largest JSON body accepted.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// How the server runs, decided by the binary that starts it.
pub struct ServeOptions {
    /// Where to listen, already bound.
    pub listener: tokio::net::TcpListener,
    /// Whether requests must carry an API key even while the store has none (a server that
    /// listens beyond loopback). Otherwise keys are required as soon as one exists.
    pub require_keys: bool,
    /// Isolation features in force, reported by `/v1/info`.
    pub features: serde_json::Value,
    /// Settings of the compatibility front doors.
    pub front_doors: compat::FrontDoors,
}

/// The application: every route with its middleware.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/sandboxes", post(sandboxes::create).get(sandboxes::list))
        .route("/sandboxes/{id}", get(sandboxes::get).delete(sandboxes::delete))
        .route("/sandboxes/{id}/renew", post(sandboxes::renew))
        .route("/sandboxes/{id}/pause", post(sandboxes::pause))
        .route("/sandboxes/{id}/resume", post(sandboxes::resume))
        .route("/sandboxes/{id}/commands", post(commands::run).get(commands::list))
        .route("/sandboxes/{id}/commands/{command_id}", get(commands::get))
        .route("/sandboxes/{id}/commands/{command_id}/logs", get(commands::logs))
        .route("/sandboxes/{id}/commands/{command_id}/events", get(commands::events))
        .route("/sandboxes/{id}/commands/{command_id}/stdin", post(commands::stdin))
        .route("/sandboxes/{id}/commands/{command_id}/signal", post(commands::signal))
        .route("/sandboxes/{id}/commands/{command_id}/kill", post(commands::kill))
        .route("/sandboxes/{id}/files", get(files::list).delete(files::remove))
        // Uploads stream their bodies to the sandbox in pieces, so no body limit applies.
        .route(
            "/sandboxes/{id}/files/content",
            get(files::download).put(files::upload).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/sandboxes/{id}/files/upload",
            post(files::upload_multipart).layer(DefaultBodyLimit::disable()),
        )
        .route("/sandboxes/{id}/files/stat", get(files::stat))
        .route("/sandboxes/{id}/files/mkdir", post(files::mkdir))
        .route("/sandboxes/{id}/files/move", post(files::move_file))
        .route("/sandboxes/{id}/files/text", get(files::read_text).put(files::write_text))
        .route("/sandboxes/{id}/contexts", post(code::create_context).get(code::list_contexts))
        .route("/sandboxes/{id}/contexts/{context_id}", get(code::get_context).delete(code::delete_context))
        .route("/sandboxes/{id}/contexts/{context_id}/restart", post(code::restart_context))
        .route("/sandboxes/{id}/contexts/{context_id}/interrupt", post(code::interrupt_context))
        .route("/sandboxes/{id}/code", post(code::run_code))
        .route("/run", post(code::run_once))
        .route(
            "/sandboxes/{id}/network",
            get(network::get_policy).put(network::put_policy).patch(network::patch_policy),
        )
        .route("/sandboxes/{id}/network/denials", get(network::denials))
        .route("/sandboxes/{id}/ports/{port}", any(network::ingress))
        .route("/sandboxes/{id}/ports/{port}/", any(network::ingress))
        .route("/sandboxes/{id}/ports/{port}/{*path}", any(network::ingress))
        .route("/sandboxes/{id}/links", post(links::create).delete(links::revoke))
        .route("/links/{token}", any(links::open))
        .route("/links/{token}/", any(links::open))
        .route("/links/{token}/{*path}", any(links::open))
        .route("/info", get(system::info));
    Router::new()
        .nest("/v1", v1)
        .route("/health", get(system::health))
        .route("/metrics", get(system::metrics))
        .route("/openapi.json", get(system::openapi))
        .merge(compat::routes())
        .fallback(system::not_found)
        .method_not_allowed_fallback(system::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Give every request an id (kept from `X-Request-Id` when sane), log it, and count it.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(new_request_id);
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = request.method().to_string();
    let started = Instant::now();
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = next.run(request).instrument(span).await;
    let took = started.elapsed();
    let error = response.extensions().get::<error::ErrorCode>().map(|c| c.0);
    state.metrics.observe(&method, &route, response.status().as_u16(), took, error);
    tracing::info!(request_id = %id, method, route, status = response.status().as_u16(),
                   micros = took.as_micros() as u64, error, "request");
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// A fresh request id: 32 hex digits, a random half drawn once per server and a counter, so that
/// ids stay unique across restarts without a random draw per request.
fn new_request_id() -> String {
    static PREFIX: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| uuid::Uuid::new_v4().simple().to_string()[..16].to_owned());
    format!("{prefix}{:016x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Serve until `shutdown` resolves; then pause every running sandbox (they come back paused
/// on the next start) and return.
pub async fn serve(
    runtime: Runtime,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let ready = Arc::new(AtomicBool::new(false));
    let state = AppState {
        runtime: runtime.clone(),
        require_keys: options.require_keys,
        metrics: Arc::default(),
        ready: Arc::clone(&ready),
        features: Arc::new(options.features),
        front_doors: Arc::new(options.front_doors),
    };
    compat::start(&state);
    let app = router(state);
    ready.store(true, Ordering::SeqCst);
    let stopping = {
        let (ready, runtime) = (Arc::clone(&ready), runtime.clone());
        async move {
            shutdown.await;
            ready.store(false, Ordering::SeqCst);
            // Ends the agents, and with them open event streams, so connections can close.
            runtime.shutdown().await;
        }
    };
    axum::serve(options.listener, app).with_graceful_shutdown(stopping).await
}
