//! The typed description of one sandboxed run.
//!
//! Every front door (CLI flags, TOML profiles, JSON requests) is parsed into a [`SandboxSpec`]
//! once, validated there, and handed to [`crate::run`]. The engine never reads the environment
//! or a configuration file: everything it does is written here.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The uid (and gid) the payload runs as inside the sandbox.
pub const SANDBOX_UID: u32 = 1000;

/// Everything the engine needs to start one isolated process tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// Program and arguments. `argv[0]` is looked up in `PATH` inside the sandbox when it has
    /// no slash.
    pub argv: Vec<String>,
    /// The complete environment of the payload; nothing is inherited from the caller.
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox.
    pub workdir: PathBuf,
    /// What `/workspace` is.
    pub workspace: Workspace,
    /// Extra bind mounts, applied in order after the template.
    pub binds: Vec<BindMount>,
    /// Network namespace policy.
    pub network: NetworkMode,
    /// Resource limits.
    pub limits: Limits,
    /// Which protections to apply; all on by default.
    pub protections: Protections,
    /// Host uid/gid that the sandbox user maps to.
    pub identity: HostIdentity,
    /// What the payload reads on standard input.
    pub stdin: Stdin,
    /// Hostname inside the sandbox.
    pub hostname: String,
}

/// The writable `/workspace` of a sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Workspace {
    /// A fresh tmpfs that lives and dies with the sandbox (charged to its memory limit).
    Fresh {
        /// Size cap in bytes.
        size_bytes: u64,
    },
    /// A host directory, bound read-write.
    Host {
        /// Absolute host path.
        path: PathBuf,
    },
}

/// One extra bind mount from the host into the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    /// Absolute host path.
    pub source: PathBuf,
    /// Absolute path inside the sandbox.
    pub destination: PathBuf,
    /// Bind read-only (the default) or read-write.
    pub readonly: bool,
}

/// Which network the sandbox sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// A fresh network namespace with only `lo`.
    None,
    /// The host's network namespace, shared. Only when explicitly asked for.
    Host,
    /// A fresh network namespace with only `lo`, in which init listens on `127.0.0.1:{port}`
    /// before the payload starts and hands the listening socket to the caller
    /// ([`crate::OutputSink::listener`]). The caller accepts the sandbox's connections to that
    /// port on the host side (an egress proxy), so the sandbox needs no route and no privilege.
    Proxied {
        /// The port inside the sandbox.
        port: u16,
    },
}

impl NetworkMode {
    /// Whether the sandbox gets a network namespace of its own.
    pub fn is_private(self) -> bool {
        self != NetworkMode::Host
    }
}

/// Resource limits. `None` means "not limited by this mechanism".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Wall-clock time from start to kill.
    #[serde(with = "opt_millis")]
    pub wall_time: Option<Duration>,
    /// CPU time per process (RLIMIT_CPU), rounded up to whole seconds by the kernel.
    #[serde(with = "opt_millis")]
    pub cpu_time: Option<Duration>,
    /// Memory of the whole tree in bytes (cgroup), swap included.
    pub memory_bytes: Option<u64>,
    /// Number of processes and threads in the tree (cgroup).
    pub max_pids: Option<u64>,
    /// CPU bandwidth in millicores: 500 = half a core (cgroup quota).
    pub cpu_millis: Option<u64>,
    /// Relative CPU weight in cgroup v1 shares (1024 = normal).
    pub cpu_shares: Option<u64>,
    /// Bytes of stdout plus stderr kept; the rest is drained and dropped.
    pub max_output_bytes: Option<u64>,
    /// Largest file the payload may write (RLIMIT_FSIZE).
    pub max_file_bytes: Option<u64>,
    /// Open file descriptors per process (RLIMIT_NOFILE).
    pub max_open_files: Option<u64>,
    /// Size of the sandbox's `/tmp` tmpfs in bytes.
    pub tmp_size_bytes: u64,
    /// Which of the limits above are the front door's own defaults rather than the caller's
    /// request.
    #[serde(default)]
    pub builtin: BuiltinLimits,
}

/// Cgroup limits that a front door sets by default, not because the caller asked for them.
/// When the caller can make no cgroup (a rootless caller without a delegated v2 subtree), the
/// engine runs without these and says so in [`crate::Applied::left_out`]; a limit the caller
/// asked for always fails closed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltinLimits {
    /// `memory_bytes` is a default.
    pub memory: bool,
    /// `max_pids` is a default.
    pub pids: bool,
}

impl BuiltinLimits {
    /// Whether neither limit is marked.
    pub fn is_empty(&self) -> bool {
        !self.memory && !self.pids
    }
}

impl Limits {
    /// Whether any limit needs a cgroup to be enforced.
    pub fn needs_cgroup(&self) -> bool {
        self.memory_bytes.is_some()
            || self.max_pids.is_some()
            || self.cpu_millis.is_some()
            || self.cpu_shares.is_some()
    }

    /// These limits without the built-in ones that are set, and which those were.
    pub fn without_builtin(&self) -> (Limits, BuiltinLimits) {
        let mut reduced = self.clone();
        let left_out = BuiltinLimits {
            memory: self.builtin.memory && reduced.memory_bytes.take().is_some(),
            pids: self.builtin.pids && reduced.max_pids.take().is_some(),
        };
        reduced.builtin = BuiltinLimits::default();
        (reduced, left_out)
    }
}

/// Protections that can be switched off by an administrator. Off only when the configuration
/// says so; the engine never turns one off by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protections {
    /// Install the seccomp filter.
    pub seccomp: bool,
    /// Apply landlock rules. `Required` fails the run on kernels without landlock.
    pub landlock: LandlockMode,
    /// Which cgroup hierarchy to use for limits.
    pub cgroup: CgroupPreference,
}

impl Default for Protections {
    fn default() -> Self {
        Protections { seccomp: true, landlock: LandlockMode::IfSupported, cgroup: CgroupPreference::Auto }
    }
}

/// How landlock is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LandlockMode {
    /// Not applied.
    Off,
    /// Applied when the kernel supports it; reported in the outcome either way.
    IfSupported,
    /// Applied, or the run fails.
    Required,
}

/// Which cgroup version to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupPreference {
    /// v2 when its controllers are usable, v1 otherwise.
    Auto,
    /// Only v1.
    V1,
    /// Only v2.
    V2,
}

/// The host identity that the sandbox user (uid/gid [`SANDBOX_UID`] inside) maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostIdentity {
    /// Host uid of every process in the sandbox. Never 0.
    pub uid: u32,
    /// Host gid of every process in the sandbox. Never 0.
    pub gid: u32,
}

impl HostIdentity {
    /// First host uid handed to sandboxes when the caller is root.
    pub const ROOT_RANGE_START: u32 = 0x4000_0000;

    /// The identity for a sandbox started by the current user: the caller itself when it is not
    /// root, otherwise an unprivileged host uid derived from `slot` (unique among the sandboxes
    /// that run at the same time, e.g. the supervisor's pid) so sandboxes cannot signal each other.
    pub fn for_caller(slot: u32) -> HostIdentity {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        if uid != 0 {
            return HostIdentity { uid, gid };
        }
        let id = Self::ROOT_RANGE_START + (slot & 0x3fff_ffff);
        HostIdentity { uid: id, gid: id }
    }
}

/// Standard input of the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stdin {
    /// `/dev/null`: reads get EOF at once.
    Null,
    /// These bytes, then EOF.
    Bytes(Vec<u8>),
}

mod opt_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_builtin_limits_that_are_set_are_left_out() {
        let limits = Limits {
            memory_bytes: Some(1 << 28),
            max_pids: Some(64),
            builtin: BuiltinLimits { memory: true, pids: false },
            ..Limits::default()
        };
        let (reduced, left_out) = limits.without_builtin();
        assert_eq!(left_out, BuiltinLimits { memory: true, pids: false });
        assert_eq!(reduced.memory_bytes, None);
        assert_eq!(reduced.max_pids, Some(64), "a requested limit stays");
        assert!(reduced.builtin.is_empty());

        let unset = Limits { builtin: BuiltinLimits { memory: true, pids: true }, ..Limits::default() };
        assert!(unset.without_builtin().1.is_empty(), "nothing set, nothing left out");
    }
}
