//! Airlock's isolation engine: one [`SandboxSpec`] in, one isolated process tree, one
//! [`Outcome`] out.
//!
//! The engine knows nothing of HTTP, configuration files or environment variables. It runs in
//! the caller's process, which must be single-threaded: [`run`] clones a child into new user,
//! mount, pid, ipc and uts namespaces, and that child (the sandbox init) builds a fresh root,
//! enters a new network namespace (made beside it, see `netns`) and a cgroup namespace, drops
//! every privilege and runs the payload; see `init` for the order of steps.
//! All `unsafe` code is in `sys`.

pub mod cgroup;
mod channel;
pub mod error;
mod exec_plan;
mod init;
mod kernel_file;
mod landlock_rules;
mod netns;
pub mod outcome;
mod rlimits;
mod rootfs;
pub mod seccomp;
pub mod spec;
mod supervisor;
mod sys;
mod validate;

pub use error::{JailError, Stage};
pub use exec_plan::DEFAULT_PATH;
pub use outcome::{Applied, Outcome, Status, Usage};
pub use spec::{
    BindMount, BuiltinLimits, CgroupPreference, HostIdentity, LandlockMode, Limits, NetworkMode, Protections,
    SandboxSpec, Stdin, Workspace, SANDBOX_UID,
};
pub use supervisor::{run, run_attached, Collector, OutputSink, Stream};
pub use sys::{recv_with_fds, MAX_PASSED_FDS};

/// The landlock ABI version of the running kernel (0 when landlock is unavailable).
pub fn landlock_abi() -> u32 {
    sys::landlock_abi_version().unwrap_or(0)
}
