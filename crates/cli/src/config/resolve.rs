//! Layering and validation: built-in defaults, then the file's `[defaults]`, then the chosen
//! profile, flattened into one [`Resolved`] with every value parsed and range-checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::bind::{host_path_problem, parse_bind_named, sandbox_path_problem, BindSpec};
use super::error::ConfigError;
use super::limits::Field;
use super::quantity::{Quantity, QuantityProblem};
use super::schema::{
    CgroupsVersion, Config, Defaults, Isolation, LandlockMode, LinuxPlatform, Profile, Resources, Security,
};

/// The settings of one run after layering: built-in defaults, then the file's `[defaults]`,
/// then the chosen profile. Command-line flags go on top of this.
///
/// Scalars are `None` when no layer sets them (with the built-in layer that is `cpu`,
/// `cpu_shares`, `max_cpu_time_ms` and `workspace`); collections are empty instead.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// The profile that was applied.
    pub profile: Option<String>,
    /// Its description.
    pub description: Option<String>,
    /// Wall-clock limit in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Environment variables for the command (defaults merged with the profile's).
    pub env: BTreeMap<String, String>,
    /// Memory limit in bytes.
    pub memory_bytes: Option<u64>,
    /// CPU bandwidth in millicores.
    pub cpu_millis: Option<u64>,
    /// Relative CPU weight.
    pub cpu_shares: Option<u64>,
    /// Bytes of output kept.
    pub max_output_bytes: Option<u64>,
    /// Processes and threads.
    pub max_pids: Option<u64>,
    /// CPU time per process in milliseconds.
    pub max_cpu_time_ms: Option<u64>,
    /// Largest file written.
    pub max_file_bytes: Option<u64>,
    /// Open file descriptors per process.
    pub max_open_files: Option<u64>,
    /// Size of `/tmp` in bytes.
    pub tmp_size_bytes: Option<u64>,
    /// Size of a fresh `/workspace` in bytes.
    pub workspace_size_bytes: Option<u64>,
    /// Share the host network.
    pub network: Option<bool>,
    /// Host paths bound read-only at the same path.
    pub readonly_paths: Vec<PathBuf>,
    /// Host paths bound read-write at the same path.
    pub writable_paths: Vec<PathBuf>,
    /// Working directory inside the sandbox.
    pub working_directory: Option<PathBuf>,
    /// Host directory for `/workspace`; `None` means a fresh tmpfs.
    pub workspace: Option<PathBuf>,
    /// Extra bind mounts, in order.
    pub bind_mounts: Vec<BindSpec>,
    /// `[platform.linux]`.
    pub platform: ResolvedPlatform,
    /// `[security]`.
    pub security: ResolvedSecurity,
}

/// `[platform.linux]` with every value decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedPlatform {
    /// Which cgroup hierarchy enforces limits.
    pub cgroups_version: CgroupsVersion,
    /// Install the seccomp filter.
    pub enable_seccomp: bool,
    /// How landlock is applied.
    pub landlock: LandlockMode,
}

impl Default for ResolvedPlatform {
    fn default() -> Self {
        ResolvedPlatform {
            cgroups_version: CgroupsVersion::Auto,
            enable_seccomp: true,
            landlock: LandlockMode::IfSupported,
        }
    }
}

/// `[security]` with every value decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedSecurity {
    /// Most runs at the same time.
    pub max_concurrent_executions: u32,
    /// Refused command names.
    pub blocked_commands: Vec<String>,
    /// Allowed command names; empty allows everything not blocked.
    pub allowed_commands: Vec<String>,
}

impl Default for ResolvedSecurity {
    fn default() -> Self {
        ResolvedSecurity {
            max_concurrent_executions: 10,
            blocked_commands: Vec::new(),
            allowed_commands: Vec::new(),
        }
    }
}

impl ResolvedSecurity {
    /// Whether the command `argv0` may run: its file name (the part after the last `/`) is
    /// not in `blocked_commands`, and is in `allowed_commands` when that list is not empty.
    pub fn permits(&self, argv0: &str) -> bool {
        let name = command_name(argv0);
        if self.blocked_commands.iter().any(|b| b == name) {
            return false;
        }
        self.allowed_commands.is_empty() || self.allowed_commands.iter().any(|a| a == name)
    }
}

/// The file name of `argv0`: `"/usr/bin/sudo"` → `"sudo"`.
fn command_name(argv0: &str) -> &str {
    argv0.rsplit('/').next().unwrap_or(argv0)
}

/// The parts shared by `[defaults]` and `[profiles.NAME]`.
struct Section<'a> {
    timeout_ms: Option<u64>,
    environment: &'a BTreeMap<String, String>,
    resources: &'a Resources,
    isolation: &'a Isolation,
}

impl Defaults {
    fn section(&self) -> Section<'_> {
        Section {
            timeout_ms: self.timeout_ms,
            environment: &self.environment,
            resources: &self.resources,
            isolation: &self.isolation,
        }
    }
}

impl Profile {
    fn section(&self) -> Section<'_> {
        Section {
            timeout_ms: self.timeout_ms,
            environment: &self.environment,
            resources: &self.resources,
            isolation: &self.isolation,
        }
    }
}

/// `profiles.NAME`, with the name quoted when it is not a bare TOML key.
fn profile_prefix(name: &str) -> String {
    let bare = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        format!("profiles.{name}")
    } else {
        format!("profiles.{name:?}")
    }
}

fn quantity_error(field: Field, name: &str, q: &Quantity, problem: QuantityProblem) -> ConfigError {
    match problem {
        QuantityProblem::Negative => field.out_of_range(name, q.as_written()),
        QuantityProblem::Invalid(reason) => ConfigError::InvalidValue {
            field: name.to_owned(),
            value: q.as_written(),
            reason,
            expected: field.expected().to_owned(),
        },
    }
}

/// Parse and range-check a size or CPU quantity.
pub(super) fn quantity(field: Field, name: &str, q: &Quantity) -> Result<u64, ConfigError> {
    let parsed = match field {
        Field::Cpu => q.to_cpu_millis(),
        _ => q.to_bytes(),
    };
    let value = parsed.map_err(|p| quantity_error(field, name, q, p))?;
    if field.range().contains(&value) {
        Ok(value)
    } else {
        Err(field.out_of_range(name, q.as_written()))
    }
}

fn set_quantity(
    slot: &mut Option<u64>,
    field: Field,
    prefix: &str,
    q: Option<&Quantity>,
) -> Result<(), ConfigError> {
    if let Some(q) = q {
        *slot = Some(quantity(field, &format!("{prefix}.{}", field.key()), q)?);
    }
    Ok(())
}

fn set_count(
    slot: &mut Option<u64>,
    field: Field,
    prefix: &str,
    value: Option<u64>,
) -> Result<(), ConfigError> {
    if let Some(v) = value {
        *slot = Some(field.check_named(&format!("{prefix}.{}", field.key()), v)?);
    }
    Ok(())
}

fn invalid_path(field: &str, path: &Path, reason: &str) -> ConfigError {
    ConfigError::InvalidValue {
        field: field.to_owned(),
        value: path.display().to_string(),
        reason: reason.to_owned(),
        expected: "an absolute path".to_owned(),
    }
}

fn checked_paths(field: &str, paths: &[PathBuf]) -> Result<Vec<PathBuf>, ConfigError> {
    for p in paths {
        if let Some(problem) = sandbox_path_problem(p, false) {
            return Err(invalid_path(&format!("{field} entry"), p, problem));
        }
    }
    Ok(paths.to_vec())
}

fn check_env(prefix: &str, key: &str, value: &str) -> Result<(), ConfigError> {
    let reason = if key.is_empty() {
        "a variable name cannot be empty"
    } else if key.contains('=') {
        "a variable name cannot contain '='"
    } else if key.contains('\0') {
        "a variable name cannot contain a NUL byte"
    } else if value.contains('\0') {
        "the value cannot contain a NUL byte"
    } else {
        return Ok(());
    };
    Err(ConfigError::InvalidValue {
        field: format!("{prefix}.environment"),
        value: key.to_owned(),
        reason: reason.to_owned(),
        expected: "NAME = \"value\" with a name that is not empty and has no '='".to_owned(),
    })
}

/// Apply one `[defaults]` or `[profiles.NAME]` layer over `out`.
fn apply_section(out: &mut Resolved, s: Section<'_>, prefix: &str) -> Result<(), ConfigError> {
    set_count(&mut out.timeout_ms, Field::TimeoutMs, prefix, s.timeout_ms)?;
    for (key, value) in s.environment {
        check_env(prefix, key, value)?;
        out.env.insert(key.clone(), value.clone());
    }

    let r = s.resources;
    let rp = format!("{prefix}.resources");
    set_quantity(&mut out.memory_bytes, Field::MemoryBytes, &rp, r.memory_bytes.as_ref())?;
    set_quantity(&mut out.cpu_millis, Field::Cpu, &rp, r.cpu.as_ref())?;
    set_count(&mut out.cpu_shares, Field::CpuShares, &rp, r.cpu_shares)?;
    set_quantity(&mut out.max_output_bytes, Field::MaxOutputBytes, &rp, r.max_output_bytes.as_ref())?;
    set_count(&mut out.max_pids, Field::MaxPids, &rp, r.max_pids)?;
    set_count(&mut out.max_cpu_time_ms, Field::MaxCpuTimeMs, &rp, r.max_cpu_time_ms)?;
    set_quantity(&mut out.max_file_bytes, Field::MaxFileBytes, &rp, r.max_file_bytes.as_ref())?;
    set_count(&mut out.max_open_files, Field::MaxOpenFiles, &rp, r.max_open_files)?;
    set_quantity(&mut out.tmp_size_bytes, Field::TmpSizeBytes, &rp, r.tmp_size_bytes.as_ref())?;
    set_quantity(
        &mut out.workspace_size_bytes,
        Field::WorkspaceSizeBytes,
        &rp,
        r.workspace_size_bytes.as_ref(),
    )?;

    let i = s.isolation;
    let ip = format!("{prefix}.isolation");
    if let Some(network) = i.network {
        out.network = Some(network);
    }
    if let Some(paths) = &i.readonly_paths {
        out.readonly_paths = checked_paths(&format!("{ip}.readonly_paths"), paths)?;
    }
    if let Some(paths) = &i.writable_paths {
        out.writable_paths = checked_paths(&format!("{ip}.writable_paths"), paths)?;
    }
    if let Some(dir) = &i.working_directory {
        if let Some(problem) = sandbox_path_problem(dir, true) {
            return Err(invalid_path(&format!("{ip}.working_directory"), dir, problem));
        }
        out.working_directory = Some(dir.clone());
    }
    if let Some(dir) = &i.workspace {
        if let Some(problem) = host_path_problem(dir) {
            return Err(invalid_path(&format!("{ip}.workspace"), dir, problem));
        }
        out.workspace = Some(dir.clone());
    }
    if let Some(binds) = &i.bind_mounts {
        let what = format!("{ip}.bind_mounts entry");
        out.bind_mounts = binds.iter().map(|b| parse_bind_named(&what, b)).collect::<Result<_, _>>()?;
    }
    Ok(())
}

fn apply_platform(out: &mut Resolved, linux: &LinuxPlatform) {
    let p = &mut out.platform;
    if let Some(v) = linux.cgroups_version {
        p.cgroups_version = v;
    }
    if let Some(v) = linux.enable_seccomp {
        p.enable_seccomp = v;
    }
    if let Some(v) = linux.landlock {
        p.landlock = v;
    }
}

fn checked_commands(field: &str, names: &[String]) -> Result<Vec<String>, ConfigError> {
    for name in names {
        let reason = if name.is_empty() {
            "a command name cannot be empty"
        } else if name.contains('/') {
            "commands are matched by file name, write it without a directory"
        } else if name.contains('\0') {
            "a command name cannot contain a NUL byte"
        } else {
            continue;
        };
        return Err(ConfigError::InvalidValue {
            field: format!("{field} entry"),
            value: name.clone(),
            reason: reason.to_owned(),
            expected: "a command file name such as \"sudo\"".to_owned(),
        });
    }
    Ok(names.to_vec())
}

fn apply_security(out: &mut Resolved, security: &Security) -> Result<(), ConfigError> {
    let s = &mut out.security;
    if let Some(max) = security.max_concurrent_executions {
        let name = "security.max_concurrent_executions";
        let max = Field::MaxConcurrentExecutions.check_named(name, max)?;
        // The range ends at 10000, far below u32::MAX.
        s.max_concurrent_executions = u32::try_from(max).unwrap_or(u32::MAX);
    }
    if let Some(names) = &security.blocked_commands {
        s.blocked_commands = checked_commands("security.blocked_commands", names)?;
    }
    if let Some(names) = &security.allowed_commands {
        s.allowed_commands = checked_commands("security.allowed_commands", names)?;
    }
    if let Some(both) = s.allowed_commands.iter().find(|a| s.blocked_commands.contains(a)) {
        return Err(ConfigError::InvalidValue {
            field: "security.allowed_commands entry".to_owned(),
            value: both.clone(),
            reason: "the command is also in security.blocked_commands".to_owned(),
            expected: "each command in at most one of the two lists".to_owned(),
        });
    }
    Ok(())
}

impl Config {
    /// Check every value of the file, including profiles that are not used, without
    /// layering the built-in defaults.
    pub fn validate(&self) -> Result<(), ConfigError> {
        apply_section(&mut Resolved::default(), self.defaults.section(), "defaults")?;
        for (name, profile) in &self.profiles {
            apply_section(&mut Resolved::default(), profile.section(), &profile_prefix(name))?;
        }
        let mut scratch = Resolved::default();
        apply_platform(&mut scratch, &self.platform.linux);
        apply_security(&mut scratch, &self.security)?;
        super::server::validate(&self.server)
    }

    /// Layer the built-in defaults, this file's `[defaults]` and, when `profile` is given,
    /// `[profiles.NAME]` into one [`Resolved`]. A set field of a later layer wins;
    /// environment tables merge (later keys win); lists set in a later layer replace the
    /// earlier list. Unknown profile: E1004 listing the available ones.
    pub fn resolve(&self, profile: Option<&str>) -> Result<Resolved, ConfigError> {
        let chosen = match profile {
            None => None,
            Some(name) => match self.profiles.get(name) {
                Some(p) => Some((name, p)),
                None => {
                    return Err(ConfigError::UnknownProfile {
                        name: name.to_owned(),
                        available: self.profile_names(),
                    })
                }
            },
        };
        let builtin = Config::builtin();
        let mut out = Resolved::default();
        for layer in [builtin, self] {
            apply_section(&mut out, layer.defaults.section(), "defaults")?;
            apply_platform(&mut out, &layer.platform.linux);
            apply_security(&mut out, &layer.security)?;
        }
        if let Some((name, p)) = chosen {
            apply_section(&mut out, p.section(), &profile_prefix(name))?;
            out.profile = Some(name.to_owned());
            out.description = p.description.clone();
        }
        Ok(out)
    }

    /// The names of the profiles, sorted.
    pub fn profile_names(&self) -> Vec<String> {
        self.profiles.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_policy() {
        let s = ResolvedSecurity {
            max_concurrent_executions: 1,
            blocked_commands: vec!["sudo".into()],
            allowed_commands: vec![],
        };
        assert!(!s.permits("sudo"));
        assert!(!s.permits("/usr/bin/sudo"));
        assert!(s.permits("sudoedit"));
        assert!(s.permits("python3"));
        let s = ResolvedSecurity { allowed_commands: vec!["python3".into()], ..s };
        assert!(s.permits("/usr/bin/python3"));
        assert!(!s.permits("sh"));
        assert!(!s.permits("sudo"));
    }

    #[test]
    fn profile_prefixes() {
        assert_eq!(profile_prefix("ai-agent"), "profiles.ai-agent");
        assert_eq!(profile_prefix("a.b"), "profiles.\"a.b\"");
    }
}
