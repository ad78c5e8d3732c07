//! What every handler shares.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use airlock_runtime::Runtime;

use crate::metrics::Metrics;

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    /// The runtime.
    pub runtime: Runtime,
    /// Whether requests must carry an API key even while the store has none.
    pub require_keys: bool,
    /// Request counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// False while starting and once stopping; `/health` reports it.
    pub ready: Arc<AtomicBool>,
    /// Isolation features in force, for `/v1/info`.
    pub features: Arc<serde_json::Value>,
    /// Settings of the compatibility front doors.
    pub front_doors: Arc<crate::compat::FrontDoors>,
}
