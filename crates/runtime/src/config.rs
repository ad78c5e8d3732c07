//! What the runtime is told by the binary that starts it. Front doors read files and the
//! environment; the runtime only ever sees this typed value.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use airlock_jail::Protections;

use crate::model::SandboxLimits;

/// The runtime's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Where the store and the sandboxes' workspaces live.
    pub data_dir: PathBuf,
    /// The `airlock` binary: run as each sandbox's launcher and bound into it as its agent.
    pub airlock_exe: PathBuf,
    /// Protections applied to every sandbox.
    pub protections: Protections,
    /// Limits of a sandbox whose creator named none.
    pub default_limits: SandboxLimits,
    /// The most a creator may ask for, field by field (`cpu_millis: None` = no maximum).
    pub max_limits: SandboxLimits,
    /// Time to live of a sandbox whose creator named none; none for no expiry.
    pub default_ttl: Option<Duration>,
    /// The longest time to live allowed; none for no maximum (and sandboxes without expiry).
    pub max_ttl: Option<Duration>,
    /// Sandboxes that may exist at once (pending, running, paused or stopping).
    pub max_sandboxes: usize,
    /// Commands that may run at once across all sandboxes.
    pub max_concurrent_commands: usize,
    /// Output kept per command when the request names no cap, and the largest cap allowed.
    pub max_output_bytes: u64,
    /// Pre-started sandboxes kept ready with the default limits.
    pub pool_size: usize,
    /// Network settings.
    pub network: NetworkConfig,
    /// Named presets for new sandboxes. [`crate::DEFAULT_TEMPLATE`] is always there: the default
    /// limits, no variables, `/workspace`.
    pub templates: BTreeMap<String, Template>,
}

/// What a sandbox made from a template starts with; its creator may override each part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Limits.
    pub limits: SandboxLimits,
    /// Variables set for every command.
    pub env: BTreeMap<String, String>,
    /// Default working directory of commands.
    pub workdir: String,
}

impl RuntimeConfig {
    /// The template named `name`; the built-in default when the configuration names none such.
    pub fn template(&self, name: &str) -> Option<Template> {
        match self.templates.get(name) {
            Some(template) => Some(template.clone()),
            None if name == crate::DEFAULT_TEMPLATE => Some(Template {
                limits: self.default_limits.clone(),
                env: BTreeMap::new(),
                workdir: "/workspace".to_owned(),
            }),
            None => None,
        }
    }
}

/// How sandboxes reach the network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Whether a sandbox may share the host's network (`mode: host`).
    pub allow_host: bool,
    /// Names the egress proxy resolves to these addresses instead of asking DNS.
    pub pinned_hosts: BTreeMap<String, Vec<IpAddr>>,
    /// The server's own listening sockets, which no sandbox may reach through the proxy.
    pub own_addresses: Vec<(IpAddr, u16)>,
}
