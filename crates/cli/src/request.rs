//! One request, from every source, resolved into the engine's [`SandboxSpec`].
//!
//! Precedence, lowest first: built-in defaults, the configuration file's `[defaults]`, the
//! selected profile, the `--json` request document, command-line flags. Every value is checked
//! against the same ranges whatever its source (see `config::limits`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use airlock_jail::{
    BindMount, BuiltinLimits, CgroupPreference, HostIdentity, LandlockMode, Limits, NetworkMode, Protections,
    SandboxSpec, Stdin, Workspace, DEFAULT_PATH,
};
use airlock_runtime::egress::Egress;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::args::RunArgs;
use crate::config::{self, BindSpec, CgroupsVersion, Config, ConfigError, Field, Resolved};
use crate::error::RunError;

/// A resolved request, ready for the engine.
#[derive(Debug)]
pub struct Request {
    /// What the engine runs.
    pub spec: SandboxSpec,
    /// `[security] max_concurrent_executions`.
    pub max_concurrent: u32,
    /// The configuration file used, if any.
    pub config_path: Option<PathBuf>,
    /// The profile applied, if any.
    pub profile: Option<String>,
    /// Built-in limits that this host could not enforce and were left out.
    pub warnings: Vec<String>,
    /// The egress proxy of a run with `--allow`.
    pub egress: Option<Arc<Egress>>,
}

impl Request {
    /// Built-in memory and pids limits need a cgroup. When the engine finds none usable
    /// (typically a rootless caller without a delegated cgroup v2 subtree) it leaves them out
    /// ([`airlock_jail::Limits::builtin`]); this takes them out of the reported policy and
    /// says so. Limits the user asked for are never left out: the engine fails closed.
    pub fn note_left_out(&mut self, left_out: BuiltinLimits) {
        let limits = &mut self.spec.limits;
        if left_out.memory && limits.memory_bytes.take().is_some() {
            self.warnings.push(
                "no usable cgroup: the built-in memory limit is not enforced (`airlock doctor` tells why)"
                    .into(),
            );
        }
        if left_out.pids && limits.max_pids.take().is_some() {
            self.warnings.push(
                "no usable cgroup: the built-in process limit is not enforced (`airlock doctor` tells why)"
                    .into(),
            );
        }
    }
}

/// capsule-run's request document (`--json`), plus `stdin`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRequest {
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    timeout_ms: Option<u64>,
    #[serde(default)]
    resources: JsonResources,
    #[serde(default)]
    isolation: JsonIsolation,
    stdin: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonResources {
    memory_bytes: Option<u64>,
    cpu_shares: Option<u64>,
    cpu: Option<String>,
    max_output_bytes: Option<u64>,
    max_pids: Option<u64>,
    max_cpu_time_ms: Option<u64>,
    max_file_bytes: Option<u64>,
    max_open_files: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonIsolation {
    network: Option<bool>,
    #[serde(default)]
    readonly_paths: Vec<PathBuf>,
    #[serde(default)]
    writable_paths: Vec<PathBuf>,
    working_directory: Option<PathBuf>,
    #[serde(default)]
    bind_mounts: Vec<BindSpec>,
}

/// Which cgroup-backed limits were asked for by the user (flag, request, configuration file);
/// the others come from the built-in defaults and are best effort.
#[derive(Debug, Default, Clone, Copy)]
struct Requested {
    memory: bool,
    pids: bool,
}

/// Resolve flags, the request document and the configuration into one request.
pub fn resolve(args: &RunArgs, document: Option<&str>) -> Result<Request, RunError> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let env_config = std::env::var_os(config::CONFIG_ENV);
    let config_path = config::locate(args.config.as_deref(), env_config.as_deref(), home.as_deref())?;
    let file = match &config_path {
        Some(path) => config::load(path)?,
        None => Config::default(),
    };
    let profile =
        args.profile.clone().or_else(|| std::env::var("AIRLOCK_PROFILE").ok().filter(|p| !p.is_empty()));
    let mut r = file.resolve(profile.as_deref())?;
    let builtin = Config::builtin().resolve(None)?;
    let mut requested =
        Requested { memory: r.memory_bytes != builtin.memory_bytes, pids: r.max_pids != builtin.max_pids };

    let mut argv = args.command.clone();
    let mut stdin = Stdin::Null;
    if let Some(text) = document {
        let doc: JsonRequest = serde_json::from_str(text)
            .map_err(|e| RunError::invalid("E1001", "stdin", format!("invalid request document: {e}")))?;
        if argv.is_empty() {
            argv = doc.command.clone();
        }
        if let Some(data) = &doc.stdin {
            stdin = Stdin::Bytes(data.clone().into_bytes());
        }
        requested.memory |= doc.resources.memory_bytes.is_some();
        requested.pids |= doc.resources.max_pids.is_some();
        apply_document(&mut r, doc)?;
    }
    requested.memory |= args.memory.is_some();
    requested.pids |= args.max_pids.is_some();
    apply_flags(&mut r, args)?;

    if argv.is_empty() || argv[0].is_empty() {
        return Err(RunError::invalid(
            "E1002",
            "command",
            "no command given: put it after `--`, or in the request's \"command\"",
        ));
    }
    if !r.security.permits(&argv[0]) {
        return Err(RunError::Blocked(argv[0].clone()));
    }
    let cgroup = cgroup_preference(r.platform.cgroups_version);
    let mut spec = build_spec(argv, stdin, &r, cgroup)?;
    spec.limits.builtin = BuiltinLimits {
        memory: !requested.memory && spec.limits.memory_bytes.is_some(),
        pids: !requested.pids && spec.limits.max_pids.is_some(),
    };
    let egress = crate::egress::from_args(args)?;
    if egress.is_some() {
        spec.network = NetworkMode::Proxied { port: airlock_runtime::egress::PROXY_PORT };
        spec.env.extend(airlock_runtime::egress::proxy_env());
    }
    Ok(Request {
        spec,
        max_concurrent: r.security.max_concurrent_executions,
        config_path,
        profile: r.profile.clone(),
        warnings: Vec::new(),
        egress,
    })
}

fn apply_document(r: &mut Resolved, doc: JsonRequest) -> Result<(), ConfigError> {
    let named = |field: Field, name: &str, v: Option<u64>| v.map(|v| field.check_named(name, v)).transpose();
    r.env.extend(doc.environment);
    let res = doc.resources;
    r.timeout_ms = named(Field::TimeoutMs, "timeout_ms", doc.timeout_ms)?.or(r.timeout_ms);
    r.memory_bytes =
        named(Field::MemoryBytes, "resources.memory_bytes", res.memory_bytes)?.or(r.memory_bytes);
    r.cpu_shares = named(Field::CpuShares, "resources.cpu_shares", res.cpu_shares)?.or(r.cpu_shares);
    if let Some(cpu) = &res.cpu {
        r.cpu_millis = Some(Field::Cpu.parse_flag("resources.cpu", cpu)?);
    }
    r.max_output_bytes = named(Field::MaxOutputBytes, "resources.max_output_bytes", res.max_output_bytes)?
        .or(r.max_output_bytes);
    r.max_pids = named(Field::MaxPids, "resources.max_pids", res.max_pids)?.or(r.max_pids);
    r.max_cpu_time_ms =
        named(Field::MaxCpuTimeMs, "resources.max_cpu_time_ms", res.max_cpu_time_ms)?.or(r.max_cpu_time_ms);
    r.max_file_bytes =
        named(Field::MaxFileBytes, "resources.max_file_bytes", res.max_file_bytes)?.or(r.max_file_bytes);
    r.max_open_files =
        named(Field::MaxOpenFiles, "resources.max_open_files", res.max_open_files)?.or(r.max_open_files);
    let iso = doc.isolation;
    r.network = iso.network.or(r.network);
    r.readonly_paths.extend(iso.readonly_paths);
    r.writable_paths.extend(iso.writable_paths);
    r.working_directory = iso.working_directory.or(r.working_directory.take());
    // The same checks as `--bind` and the configuration file.
    for b in iso.bind_mounts {
        let mode = if b.readonly { "ro" } else { "rw" };
        r.bind_mounts.push(config::parse_bind(&format!(
            "{}:{}:{mode}",
            b.source.display(),
            b.destination.display()
        ))?);
    }
    Ok(())
}

fn apply_flags(r: &mut Resolved, a: &RunArgs) -> Result<(), ConfigError> {
    let size = |field: Field, name: &str, v: &Option<String>| {
        v.as_deref().map(|s| field.parse_flag(name, s)).transpose()
    };
    let num = |field: Field, name: &str, v: Option<u64>| v.map(|v| field.check_named(name, v)).transpose();
    r.timeout_ms = num(Field::TimeoutMs, "--timeout", a.timeout)?.or(r.timeout_ms);
    r.memory_bytes = size(Field::MemoryBytes, "--memory", &a.memory)?.or(r.memory_bytes);
    r.cpu_millis = size(Field::Cpu, "--cpu", &a.cpu)?.or(r.cpu_millis);
    r.cpu_shares = num(Field::CpuShares, "--cpu-shares", a.cpu_shares)?.or(r.cpu_shares);
    r.max_cpu_time_ms = num(Field::MaxCpuTimeMs, "--max-cpu-time", a.max_cpu_time)?.or(r.max_cpu_time_ms);
    r.max_output_bytes = size(Field::MaxOutputBytes, "--max-output", &a.max_output)?.or(r.max_output_bytes);
    r.max_pids = num(Field::MaxPids, "--max-pids", a.max_pids)?.or(r.max_pids);
    r.max_file_bytes = size(Field::MaxFileBytes, "--max-file-size", &a.max_file_size)?.or(r.max_file_bytes);
    r.max_open_files = num(Field::MaxOpenFiles, "--max-open-files", a.max_open_files)?.or(r.max_open_files);
    r.tmp_size_bytes = size(Field::TmpSizeBytes, "--tmp-size", &a.tmp_size)?.or(r.tmp_size_bytes);
    if a.network {
        r.network = Some(true);
    }
    if let Some(dir) = &a.workdir {
        r.working_directory = Some(dir.clone());
    }
    if let Some(dir) = &a.workspace {
        r.workspace = Some(dir.clone());
    }
    for kv in &a.env {
        let (k, v) = kv.split_once('=').ok_or_else(|| ConfigError::InvalidValue {
            field: "--env".into(),
            value: kv.clone(),
            reason: "missing '='".into(),
            expected: "KEY=VALUE".into(),
        })?;
        r.env.insert(k.to_string(), v.to_string());
    }
    r.readonly_paths.extend(a.readonly.iter().cloned());
    r.writable_paths.extend(a.writable.iter().cloned());
    for b in &a.bind {
        r.bind_mounts.push(config::parse_bind(b)?);
    }
    Ok(())
}

/// The engine's protections for the `[platform.linux]` settings.
pub fn protections(platform: &config::resolve::ResolvedPlatform, cgroup: CgroupPreference) -> Protections {
    Protections {
        seccomp: platform.enable_seccomp,
        landlock: match platform.landlock {
            config::LandlockMode::Off => LandlockMode::Off,
            config::LandlockMode::IfSupported => LandlockMode::IfSupported,
            config::LandlockMode::Required => LandlockMode::Required,
        },
        cgroup,
    }
}

/// The engine's cgroup preference for `cgroups_version`.
pub fn cgroup_preference(v: CgroupsVersion) -> CgroupPreference {
    match v {
        CgroupsVersion::Auto => CgroupPreference::Auto,
        CgroupsVersion::V1 => CgroupPreference::V1,
        CgroupsVersion::V2 => CgroupPreference::V2,
    }
}

fn absolute(field: &str, p: &Path) -> Result<PathBuf, RunError> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(p))
            .map_err(|e| RunError::invalid("E1003", field, format!("cannot resolve {}: {e}", p.display())))
    }
}

fn build_spec(
    argv: Vec<String>,
    stdin: Stdin,
    r: &Resolved,
    cgroup: CgroupPreference,
) -> Result<SandboxSpec, RunError> {
    let mut env: BTreeMap<String, String> = [
        ("PATH", DEFAULT_PATH),
        ("HOME", "/workspace"),
        ("USER", "sandbox"),
        ("LOGNAME", "sandbox"),
        ("LANG", "C.UTF-8"),
        ("TMPDIR", "/tmp"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.extend(r.env.clone());
    let mut binds: Vec<BindMount> = Vec::new();
    for p in &r.readonly_paths {
        let p = absolute("readonly", p)?;
        binds.push(BindMount { source: p.clone(), destination: p, readonly: true });
    }
    for p in &r.writable_paths {
        let p = absolute("writable", p)?;
        binds.push(BindMount { source: p.clone(), destination: p, readonly: false });
    }
    for b in &r.bind_mounts {
        binds.push(BindMount {
            source: absolute("bind", &b.source)?,
            destination: b.destination.clone(),
            readonly: b.readonly,
        });
    }
    let workspace = match &r.workspace {
        Some(dir) => Workspace::Host { path: absolute("workspace", dir)? },
        None => Workspace::Fresh { size_bytes: r.workspace_size_bytes.unwrap_or(256 << 20) },
    };
    Ok(SandboxSpec {
        argv,
        env: env.into_iter().collect(),
        workdir: r.working_directory.clone().unwrap_or_else(|| "/workspace".into()),
        workspace,
        binds,
        network: if r.network == Some(true) { NetworkMode::Host } else { NetworkMode::None },
        limits: Limits {
            wall_time: r.timeout_ms.map(Duration::from_millis),
            cpu_time: r.max_cpu_time_ms.map(Duration::from_millis),
            memory_bytes: r.memory_bytes,
            max_pids: r.max_pids,
            cpu_millis: r.cpu_millis,
            cpu_shares: r.cpu_shares,
            max_output_bytes: r.max_output_bytes,
            max_file_bytes: r.max_file_bytes,
            max_open_files: r.max_open_files,
            tmp_size_bytes: r.tmp_size_bytes.unwrap_or(64 << 20),
            builtin: BuiltinLimits::default(),
        },
        protections: protections(&r.platform, cgroup),
        identity: HostIdentity::for_caller(std::process::id()),
        stdin,
        hostname: "airlock".into(),
    })
}

/// The `--dry-run` document: the resolved policy and what the host must offer for it.
pub fn dry_run(id: &str, req: &Request) -> Value {
    let spec = &req.spec;
    let probe = airlock_jail::cgroup::probe(spec.protections.cgroup);
    let mut checks = vec![json!({
        "check": "user_namespaces",
        "why": "every sandbox runs in new user, mount, pid, ipc, uts, net and cgroup namespaces",
    })];
    if spec.limits.needs_cgroup() {
        checks.push(json!({
            "check": "cgroup",
            "why": "memory, pids and cpu limits",
            "available": probe.usable(),
            "hints": probe.hints,
        }));
    }
    if spec.protections.seccomp {
        checks.push(json!({ "check": "seccomp", "why": "system call filter", "denies": airlock_jail::seccomp::describe() }));
    }
    if spec.protections.landlock != LandlockMode::Off {
        checks.push(json!({
            "check": "landlock",
            "mode": spec.protections.landlock,
            "kernel_abi": airlock_jail::landlock_abi(),
        }));
    }
    json!({
        "execution_id": id,
        "dry_run": true,
        "config": req.config_path,
        "profile": req.profile,
        "policy": spec,
        "checks": checks,
        "best_effort_limits": {
            "memory": spec.limits.builtin.memory,
            "max_pids": spec.limits.builtin.pids,
        },
    })
}
