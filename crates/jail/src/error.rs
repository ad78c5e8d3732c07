//! Errors of the engine. Each variant has a stable code (see [`JailError::code`]) that front
//! doors map to their own registries.

use nix::errno::Errno;

use crate::cgroup::CgroupError;
use crate::seccomp::SeccompError;

/// A step of sandbox setup, in init or in the helper that makes its network namespace. Travels
/// over the control pipe as a number, so the discriminants are part of the wire format between
/// the two sides of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stage {
    /// Waiting for the parent to write the id maps.
    Sync = 1,
    /// Making the mount tree private.
    MountPrivate = 2,
    /// Mounting the tmpfs root and binding the template.
    RootFs = 3,
    /// Mounting `/proc`.
    Proc = 4,
    /// Building `/dev`.
    Dev = 5,
    /// Writing the generated `/etc`.
    Etc = 6,
    /// Binding the workspace and the requested binds.
    Binds = 7,
    /// pivot_root and detaching the old root.
    PivotRoot = 8,
    /// Setting the hostname.
    Hostname = 9,
    /// Dropping supplementary groups and switching to the sandbox uid/gid.
    Identity = 10,
    /// Dropping capabilities.
    Capabilities = 11,
    /// Setting no_new_privs.
    NoNewPrivs = 12,
    /// Installing the seccomp filter.
    Seccomp = 13,
    /// Applying landlock rules.
    Landlock = 14,
    /// Setting rlimits.
    Rlimits = 15,
    /// Changing to the working directory.
    Workdir = 16,
    /// Wiring standard input and output.
    Stdio = 17,
    /// Forking the payload from the sandbox init.
    Fork = 18,
    /// Bringing up the loopback interface of the new network namespace (the supervisor's helper).
    Loopback = 19,
    /// Entering a new cgroup namespace rooted at the sandbox's cgroup.
    CgroupNamespace = 20,
    /// Joining the sandbox's cgroup (v1: the init moves itself).
    CgroupJoin = 21,
    /// Making the loopback listener handed to the caller ([`crate::NetworkMode::Proxied`]).
    Listener = 22,
    /// Making the sandbox's own network namespace (the supervisor's helper) or entering it (init).
    NetworkNamespace = 23,
    /// Giving init the caller's CPUs back before the payload starts.
    CpuAffinity = 24,
}

impl Stage {
    /// Decode a stage number received over the control pipe.
    pub fn from_u32(n: u32) -> Option<Stage> {
        use Stage::*;
        const ALL: [Stage; 24] = [
            Sync,
            MountPrivate,
            RootFs,
            Proc,
            Dev,
            Etc,
            Binds,
            PivotRoot,
            Hostname,
            Identity,
            Capabilities,
            NoNewPrivs,
            Seccomp,
            Landlock,
            Rlimits,
            Workdir,
            Stdio,
            Fork,
            Loopback,
            CgroupNamespace,
            CgroupJoin,
            Listener,
            NetworkNamespace,
            CpuAffinity,
        ];
        ALL.into_iter().find(|s| *s as u32 == n)
    }

    /// Stable name used in error codes and messages.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Sync => "sync",
            Stage::MountPrivate => "mount_private",
            Stage::RootFs => "rootfs",
            Stage::Proc => "proc",
            Stage::Dev => "dev",
            Stage::Etc => "etc",
            Stage::Binds => "binds",
            Stage::PivotRoot => "pivot_root",
            Stage::Hostname => "hostname",
            Stage::Identity => "identity",
            Stage::Capabilities => "capabilities",
            Stage::NoNewPrivs => "no_new_privs",
            Stage::Seccomp => "seccomp",
            Stage::Landlock => "landlock",
            Stage::Rlimits => "rlimits",
            Stage::Workdir => "workdir",
            Stage::Stdio => "stdio",
            Stage::Fork => "fork",
            Stage::Loopback => "loopback",
            Stage::CgroupNamespace => "cgroup_namespace",
            Stage::CgroupJoin => "cgroup_join",
            Stage::Listener => "listener",
            Stage::NetworkNamespace => "network_namespace",
            Stage::CpuAffinity => "cpu_affinity",
        }
    }
}

/// Why a sandbox could not be started.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    /// The spec is inconsistent; the front door should have caught it.
    #[error("invalid sandbox spec: {field}: {reason}")]
    InvalidSpec {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The kernel refused to create the namespaces.
    #[error("cannot create user namespace: {0}")]
    UserNamespace(Errno),
    /// Writing `/proc/PID/{uid_map,gid_map,setgroups}` failed.
    #[error("cannot write {file} for the sandbox: {source}")]
    IdMap {
        /// The file that could not be written.
        file: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A cgroup could not be created or configured.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// The seccomp filter could not be built.
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    /// Landlock was required and the kernel does not support it.
    #[error("landlock is required but not supported by this kernel")]
    LandlockUnsupported,
    /// A setup step inside the sandbox failed.
    #[error("sandbox setup failed at {}: {errno}", stage.name())]
    Setup {
        /// The step that failed.
        stage: Stage,
        /// The errno it failed with.
        errno: Errno,
    },
    /// The command does not exist inside the sandbox.
    #[error("command '{0}' not found in the sandbox")]
    CommandNotFound(String),
    /// The command exists but cannot be executed.
    #[error("command '{command}' cannot be executed: {errno}")]
    CommandNotExecutable {
        /// The command.
        command: String,
        /// Why execve failed.
        errno: Errno,
    },
    /// The supervisor itself failed (pipes, fork, poll).
    #[error("{what}: {source}")]
    Supervisor {
        /// What the supervisor was doing.
        what: &'static str,
        /// The underlying error.
        source: Errno,
    },
}

impl JailError {
    /// Stable machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            JailError::InvalidSpec { .. } => "spec_invalid",
            JailError::UserNamespace(_) => "userns_unavailable",
            JailError::IdMap { .. } => "userns_idmap",
            JailError::Cgroup(_) => "cgroup_unavailable",
            JailError::Seccomp(_) => "seccomp_failed",
            JailError::LandlockUnsupported => "landlock_unsupported",
            JailError::Setup { stage, .. } => match stage {
                Stage::Seccomp => "seccomp_failed",
                Stage::Landlock => "landlock_failed",
                Stage::Proc => "proc_mount_failed",
                Stage::Workdir => "workdir_invalid",
                Stage::CgroupJoin => "cgroup_unavailable",
                _ => "setup_failed",
            },
            JailError::CommandNotFound(_) => "command_not_found",
            JailError::CommandNotExecutable { .. } => "command_not_executable",
            JailError::Supervisor { .. } => "supervisor_failed",
        }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            JailError::InvalidSpec { .. } => "fix the named field of the request",
            JailError::UserNamespace(_) => {
                "enable unprivileged user namespaces (run `airlock doctor` for the exact fix)"
            }
            JailError::IdMap { .. } => "run as root, or as a user allowed to create user namespaces",
            JailError::Cgroup(_) => {
                "run as root or with a delegated cgroup v2 subtree, or drop the memory/pids/cpu limits; `airlock doctor` shows what is available"
            }
            JailError::Seccomp(_) => "run `airlock doctor`; seccomp can only be disabled in [platform.linux]",
            JailError::LandlockUnsupported => "use a kernel with landlock (5.13+) or set landlock to if_supported",
            JailError::Setup { stage: Stage::Binds, errno: Errno::EACCES } => {
                "the sandbox's user cannot reach a directory bound into it: every directory on the way \
                 to the workspace and the binds must be searchable by others (mode 0711 or 0755)"
            }
            JailError::Setup { .. } => "run `airlock doctor` to see which kernel feature is missing",
            JailError::CommandNotFound(_) => "use an absolute path, or bind the directory that holds the program",
            JailError::CommandNotExecutable { .. } => "check the file's permissions and that its interpreter exists in the sandbox",
            JailError::Supervisor { .. } => "check the host's process and file-descriptor limits",
        }
    }
}
