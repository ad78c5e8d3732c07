//! The configuration file as written: every setting is optional so that "not set" can be told
//! apart from any value, and unknown keys are rejected, except in the tables capsule-run
//! defines and Airlock ignores (`[monitoring]`, `[platform.macos]`, `[platform.windows]`).
//!
//! Numeric settings that take sizes or CPU quantities are kept as written ([`Quantity`]) and
//! parsed and range-checked when the configuration is validated, so that a bad value is an
//! E1003 error naming its field rather than a type error.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

pub use super::quantity::Quantity;

/// A whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[defaults]`: applied to every run.
    #[serde(default)]
    pub defaults: Defaults,
    /// `[profiles.NAME]`: named overrides of the defaults, chosen with `--profile NAME`.
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
    /// `[platform]`.
    #[serde(default)]
    pub platform: Platform,
    /// `[security]`.
    #[serde(default)]
    pub security: Security,
    /// capsule-run's `[monitoring]` table: accepted so capsule-run files load, otherwise
    /// ignored.
    #[serde(default)]
    pub monitoring: Option<toml::Table>,
    /// `[server]`: settings of `airlock serve`.
    #[serde(default)]
    pub server: super::server::ServerSection,
}

/// `[defaults]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Wall-clock limit in milliseconds.
    pub timeout_ms: Option<u64>,
    /// `[defaults.environment]`: variables set for the command.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// `[defaults.resources]`.
    #[serde(default)]
    pub resources: Resources,
    /// `[defaults.isolation]`.
    #[serde(default)]
    pub isolation: Isolation,
}

/// `[profiles.NAME]`: the shape of [`Defaults`] plus a description.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Free text shown in listings.
    pub description: Option<String>,
    /// Wall-clock limit in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Variables set for the command, merged over the defaults' (the profile's win).
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Resource limits; each set field overrides the default.
    #[serde(default)]
    pub resources: Resources,
    /// Isolation settings; each set field overrides the default (lists are replaced whole).
    #[serde(default)]
    pub isolation: Isolation,
}

/// `[*.resources]`: resource limits.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Memory of the whole process tree: bytes or a size string (`"256M"`).
    pub memory_bytes: Option<Quantity>,
    /// Relative CPU weight (1024 = normal).
    pub cpu_shares: Option<u64>,
    /// CPU bandwidth: cores (`"0.5"`, `2`, `0.5`) or millicores (`"500m"`).
    pub cpu: Option<Quantity>,
    /// Bytes of stdout plus stderr kept.
    pub max_output_bytes: Option<Quantity>,
    /// Processes and threads in the tree.
    pub max_pids: Option<u64>,
    /// CPU time per process in milliseconds.
    pub max_cpu_time_ms: Option<u64>,
    /// Largest file the command may write.
    pub max_file_bytes: Option<Quantity>,
    /// Open file descriptors per process.
    pub max_open_files: Option<u64>,
    /// Size of the sandbox's `/tmp`.
    pub tmp_size_bytes: Option<Quantity>,
    /// Size of a fresh (tmpfs) `/workspace`.
    pub workspace_size_bytes: Option<Quantity>,
}

/// `[*.isolation]`: what the sandbox can see.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Isolation {
    /// Share the host network (`true`) or get a private one with only loopback (`false`).
    pub network: Option<bool>,
    /// Host paths bound read-only at the same path inside.
    pub readonly_paths: Option<Vec<PathBuf>>,
    /// Host paths bound read-write at the same path inside.
    pub writable_paths: Option<Vec<PathBuf>>,
    /// Working directory inside the sandbox.
    pub working_directory: Option<PathBuf>,
    /// Host directory bound read-write at `/workspace`; unset means a fresh tmpfs.
    pub workspace: Option<PathBuf>,
    /// Extra binds written `SOURCE:DESTINATION[:ro|rw]` (read-only by default).
    pub bind_mounts: Option<Vec<String>>,
}

/// `[platform]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    /// `[platform.linux]`.
    #[serde(default)]
    pub linux: LinuxPlatform,
    /// capsule-run's `[platform.macos]`: accepted, ignored.
    #[serde(default)]
    pub macos: Option<toml::Table>,
    /// capsule-run's `[platform.windows]`: accepted, ignored.
    #[serde(default)]
    pub windows: Option<toml::Table>,
}

/// `[platform.linux]`: which kernel mechanisms to use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinuxPlatform {
    /// Which cgroup hierarchy enforces limits.
    pub cgroups_version: Option<CgroupsVersion>,
    /// Install the seccomp filter.
    pub enable_seccomp: Option<bool>,
    /// How landlock is applied.
    pub landlock: Option<LandlockMode>,
}

/// `cgroups_version`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupsVersion {
    /// v2 when usable, v1 otherwise.
    #[default]
    Auto,
    /// Only v1.
    V1,
    /// Only v2.
    V2,
}

/// `landlock`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LandlockMode {
    /// Not applied.
    Off,
    /// Applied when the kernel supports it.
    #[default]
    IfSupported,
    /// Applied, or the run fails.
    Required,
}

/// `[security]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Security {
    /// Most runs at the same time across all processes of this user (see
    /// [`crate::concurrency`]).
    pub max_concurrent_executions: Option<u64>,
    /// Command names (basenames) that are refused.
    pub blocked_commands: Option<Vec<String>>,
    /// Command names (basenames) that are allowed; empty allows everything not blocked.
    pub allowed_commands: Option<Vec<String>>,
}
