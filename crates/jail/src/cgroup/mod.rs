//! Cgroup management (v1 and v2) for the memory, pids and cpu limits of one sandbox.
//!
//! # Detection
//!
//! Nothing is assumed about the host: [`Hierarchies::discover`] parses `/proc/self/mountinfo`
//! for `cgroup2` and `cgroup` mounts (a v1 mount's super options name its controllers, possibly
//! co-mounted like `cpu,cpuacct`) and `/proc/self/cgroup` for the caller's own cgroup in each
//! hierarchy.
//!
//! # Placement
//!
//! Every run gets its own cgroup `<base>/<name>`, `<base>` being a shared `airlock` directory:
//!
//! * **v2** — controllers can only be handed to children through `cgroup.subtree_control`, and
//!   a non-root cgroup that has member processes cannot enable any there (the "no internal
//!   processes" rule). So the base is `<mount>/airlock` when the caller is uid 0 and the root
//!   cgroup offers the controllers; otherwise `<caller's cgroup>/airlock` when the caller's
//!   cgroup already enables them in its `cgroup.subtree_control` (a delegated subtree);
//!   otherwise v2 is unusable, with the reason.
//! * **v1** — in every hierarchy used, the base is `<mount>/<caller's path>/airlock`, nested
//!   under the caller so any limit that applies to the caller keeps applying to the sandbox.
//!
//! [`CgroupPreference::Auto`] uses v2 when it can enforce the requested limits and offers the
//! memory and pids controllers (for statistics), else v1, else v2 with whatever it offers.
//! `V1` and `V2` use only that version. [`probe`] tells the same story without touching
//! anything, for `airlock doctor` and `--dry-run`.
//!
//! Only the controllers needed by the limits that are set are required; memory and pids (and
//! cpuacct, blkio and freezer on v1, io on v2) are joined when available for statistics and for
//! a race-free kill. [`Cgroup::destroy`] removes the run's cgroups; the shared `airlock` base
//! stays (an administrator may put limits on it), and each new run sweeps the empty run cgroups
//! that supervisors killed before their cleanup left behind.
//!
//! # Fail closed
//!
//! A limit that is set and cannot be applied is an error that names it, never silently skipped:
//! a missing controller, a refused write, or a swap limit file that is missing on a host that has
//! swap (the memory limit would not cover swap). A caller that may not create cgroups (usually
//! any non-root caller without a delegated v2 subtree) gets [`CgroupError::Create`] naming the
//! directory and `EACCES`; the engine turns every such error into a failed run when limits were
//! requested.

mod discover;
mod fsops;
mod v1;
mod v2;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use serde::Serialize;

use crate::spec::{CgroupPreference, Limits};

pub use discover::{Hierarchies, V1Hierarchy, V2Hierarchy};
#[cfg(test)]
use fsops::make_run_dir;

/// Name of the shared directory under which every run's cgroup is created.
pub const BASE_DIR_NAME: &str = "airlock";

/// Cgroup hierarchy version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupVersion {
    /// Legacy per-controller hierarchies.
    V1,
    /// The unified hierarchy.
    V2,
}

/// Cgroup failures. Each names the file or directory involved and, where the kernel refused
/// something, the errno.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No hierarchy can enforce the requested limits; the text says why for each version.
    #[error("no usable cgroup hierarchy: {0}")]
    Unavailable(String),
    /// The run name is not a single path component.
    #[error("invalid cgroup name {0:?}: must be a single non-empty path component")]
    InvalidName(String),
    /// A cgroup directory could not be created (`EACCES` for callers without the right).
    #[error("cannot create cgroup {}: {}", .path.display(), errno_text(*.errno))]
    Create {
        /// The directory.
        path: PathBuf,
        /// Why mkdir failed.
        errno: Errno,
    },
    /// A cgroup file could not be read.
    #[error("cannot read {}: {}", .path.display(), errno_text(*.errno))]
    Read {
        /// The file.
        path: PathBuf,
        /// Why the read failed.
        errno: Errno,
    },
    /// A controller could not be enabled, or another control file could not be written.
    #[error("cannot write {value:?} to {}: {}", .path.display(), errno_text(*.errno))]
    Write {
        /// The file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// Why the write failed.
        errno: Errno,
    },
    /// A limit that was asked for could not be written.
    #[error("cannot apply limit {limit}: writing {value:?} to {} failed: {}", .path.display(), errno_text(*.errno))]
    Limit {
        /// The [`Limits`] field.
        limit: &'static str,
        /// The file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// Why the write failed.
        errno: Errno,
    },
    /// A limit that was asked for cannot be enforced completely on this host.
    #[error("cannot enforce limit {limit}: {} {reason}", .path.display())]
    Unenforceable {
        /// The [`Limits`] field.
        limit: &'static str,
        /// The file that is missing or wrong.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A process could not be moved into the cgroup.
    #[error("cannot move pid {pid} into {}: {}", .path.display(), errno_text(*.errno))]
    AddProcess {
        /// The process.
        pid: i32,
        /// The `cgroup.procs` file written.
        path: PathBuf,
        /// Why the write failed.
        errno: Errno,
    },
    /// A process of the cgroup could not be signalled.
    #[error("cannot kill pid {pid} listed in {}: {}", .path.display(), errno_text(*.errno))]
    Kill {
        /// The process.
        pid: i32,
        /// The cgroup directory.
        path: PathBuf,
        /// Why kill(2) failed.
        errno: Errno,
    },
    /// Processes were still in the cgroup when the kill timeout ran out.
    #[error("{} still holds {count} process(es) after {} ms of killing", .path.display(), .waited.as_millis())]
    NotEmpty {
        /// The cgroup directory.
        path: PathBuf,
        /// How many processes were left.
        count: usize,
        /// How long it was tried.
        waited: Duration,
    },
    /// A cgroup directory could not be removed.
    #[error("cannot remove cgroup {}: {}", .path.display(), errno_text(*.errno))]
    Remove {
        /// The directory.
        path: PathBuf,
        /// Why rmdir failed.
        errno: Errno,
    },
}

/// Usage read from a cgroup after the run. `None` where the host does not report it.
#[derive(Debug, Clone, Default)]
pub struct CgroupStats {
    /// Peak memory (v2 `memory.peak`, v1 `memory.max_usage_in_bytes`).
    pub memory_peak_bytes: Option<u64>,
    /// OOM kills inside the cgroup (v2 `memory.events` `oom_kill`; v1 `memory.oom_control`
    /// `oom_kill`, kernels >= 4.13; older v1 kernels report `memory.failcnt` instead, the number
    /// of times the limit was hit, which is only an upper bound of the kills).
    pub oom_kills: u64,
    /// Forks refused because of `pids.max` (`pids.events` `max`).
    pub pids_max_hits: u64,
    /// User CPU time in ns (v2 `cpu.stat`; v1 `cpuacct.usage_user` or `cpuacct.stat`).
    pub cpu_user_ns: Option<u64>,
    /// System CPU time in ns.
    pub cpu_system_ns: Option<u64>,
    /// Bytes read from block devices (v2 `io.stat`; v1 `blkio.throttle.io_service_bytes`).
    pub io_read_bytes: Option<u64>,
    /// Bytes written to block devices.
    pub io_write_bytes: Option<u64>,
}

/// One sandbox's cgroup (one directory on v2, one per hierarchy used on v1).
#[derive(Debug)]
pub struct Cgroup {
    inner: Inner,
    live: bool,
}

#[derive(Debug)]
enum Inner {
    V1(v1::V1Cgroup),
    V2(v2::V2Cgroup),
}

/// Where a run's cgroup goes: the hierarchy chosen and checked for write access, so that a
/// caller that may not create cgroups learns it before the sandbox is started. The directories
/// are made later, by [`Placement::create`], while the sandbox builds its filesystem.
#[derive(Debug)]
pub struct Placement {
    plan: Plan,
    limits: Limits,
    host_has_swap: bool,
}

#[derive(Debug)]
enum Plan {
    V1(v1::V1Plan),
    V2(v2::V2Plan),
}

impl Placement {
    /// Choose the hierarchy for `limits` under `pref`. Fails if none can enforce every limit
    /// that is set ([`CgroupError::Unavailable`]) or if this process may not create the run
    /// directory there ([`CgroupError::Create`] with `EACCES`, or `EROFS`).
    pub fn choose(pref: CgroupPreference, limits: &Limits) -> Result<Placement, CgroupError> {
        let h = Hierarchies::discover()?;
        let sel = Selection::new(&h, pref, limits, nix::unistd::geteuid().is_root());
        let plan = match (sel.chosen(), sel.v2, sel.v1) {
            (Some(CgroupVersion::V2), Ok(plan), _) => Plan::V2(plan),
            (Some(CgroupVersion::V1), _, Ok(plan)) => Plan::V1(plan),
            (_, v2, v1) => {
                let sel = Selection { v2, v1, ..sel };
                return Err(CgroupError::Unavailable(sel.why_not()));
            }
        };
        let bases: Vec<&Path> = match &plan {
            Plan::V1(p) => p.dirs.iter().filter(|d| d.required).map(|d| d.base.as_path()).collect(),
            Plan::V2(p) => vec![p.base.as_path()],
        };
        for base in bases {
            fsops::check_can_create_in(base)
                .map_err(|errno| CgroupError::Create { path: base.to_owned(), errno })?;
        }
        Ok(Placement { plan, limits: limits.clone(), host_has_swap: discover::host_has_swap() })
    }

    /// Create the cgroup named `name` (unique per run, e.g. `run-<pid>-<n>`) and apply the
    /// limits. Whatever was created before a failure is removed again.
    pub fn create(&self, name: &str) -> Result<Cgroup, CgroupError> {
        if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
            return Err(CgroupError::InvalidName(name.to_owned()));
        }
        let inner = match &self.plan {
            Plan::V2(plan) => Inner::V2(v2::V2Cgroup::create(plan, name, &self.limits, self.host_has_swap)?),
            Plan::V1(plan) => Inner::V1(v1::V1Cgroup::create(plan, name, &self.limits, self.host_has_swap)?),
        };
        Ok(Cgroup { inner, live: true })
    }
}

impl Cgroup {
    /// [`Placement::choose`] then [`Placement::create`], in one step.
    ///
    /// Fails if no hierarchy allowed by `pref` can enforce every limit that is set, if a
    /// directory cannot be created (e.g. `EACCES` for an unprivileged caller) or if a limit
    /// cannot be written. Whatever was created before the failure is removed again.
    pub fn create(pref: CgroupPreference, name: &str, limits: &Limits) -> Result<Cgroup, CgroupError> {
        Placement::choose(pref, limits)?.create(name)
    }

    /// The hierarchy version in use.
    pub fn version(&self) -> CgroupVersion {
        match self.inner {
            Inner::V1(_) => CgroupVersion::V1,
            Inner::V2(_) => CgroupVersion::V2,
        }
    }

    /// The run's cgroup directories (one on v2, one per hierarchy used on v1).
    pub fn paths(&self) -> Vec<&Path> {
        match &self.inner {
            Inner::V1(c) => c.paths(),
            Inner::V2(c) => vec![c.path()],
        }
    }

    /// The controllers in use for this run (the required ones plus those joined for statistics).
    pub fn controllers(&self) -> Vec<String> {
        match &self.inner {
            Inner::V1(c) => c.dirs.iter().flat_map(|d| d.controllers.iter().cloned()).collect(),
            Inner::V2(c) => c.controllers.clone(),
        }
    }

    /// Move process `pid` (in the caller's pid namespace) into the cgroup (every v1 hierarchy
    /// used). Its future children are born inside.
    pub fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        match &self.inner {
            Inner::V1(c) => c.add_process(pid),
            Inner::V2(c) => c.add_process(pid),
        }
    }

    /// Files through which the sandbox init joins the cgroup itself, on v1: the `tasks` file
    /// of every hierarchy, opened here (by the supervisor, whose credentials the kernel checks)
    /// for the child to write `0` into. A thread that moves itself skips the global
    /// threadgroup lock, whose first writer waits a full RCU grace period (~10 ms) — the
    /// largest cost of a sandbox start otherwise. Empty on v2, where [`Cgroup::add_process`]
    /// is used.
    pub fn self_join_files(&self) -> Result<Vec<std::os::fd::OwnedFd>, CgroupError> {
        match &self.inner {
            Inner::V1(c) => c.self_join_files(),
            Inner::V2(_) => Ok(Vec::new()),
        }
    }

    /// Read the usage counters. Counters the host does not offer stay `None` / 0.
    pub fn stats(&self) -> CgroupStats {
        match &self.inner {
            Inner::V1(c) => c.stats(),
            Inner::V2(c) => c.stats(),
        }
    }

    /// Kill every process left in the cgroup, wait (up to about 2 s) until it is empty, and
    /// remove every directory that [`Cgroup::create`] made. Everything is attempted even after
    /// a failure; the first error is returned. Dropping a `Cgroup` does the same, best effort.
    pub fn destroy(mut self) -> Result<(), CgroupError> {
        self.live = false;
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), CgroupError> {
        match &mut self.inner {
            Inner::V1(c) => c.destroy(),
            Inner::V2(c) => c.destroy(),
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if self.live {
            self.live = false;
            let _ = self.teardown();
        }
    }
}

/// What the host offers, for `airlock doctor` and `--dry-run`.
#[derive(Debug, Clone, Serialize)]
pub struct CgroupProbe {
    /// The preference that was evaluated.
    pub preference: CgroupPreference,
    /// The controllers the evaluated limits require.
    pub required: Vec<String>,
    /// The version [`Cgroup::create`] would use, or `None` when it would fail.
    pub chosen: Option<CgroupVersion>,
    /// The unified hierarchy.
    pub v2: VersionProbe,
    /// The legacy hierarchies.
    pub v1: VersionProbe,
    /// Human-readable suggestions when something is not usable.
    pub hints: Vec<String>,
}

impl CgroupProbe {
    /// The version a sandbox cgroup can really be created with by this user: the chosen one,
    /// unless its base directory is known not to be writable.
    pub fn usable(&self) -> Option<CgroupVersion> {
        let probe = match self.chosen? {
            CgroupVersion::V1 => &self.v1,
            CgroupVersion::V2 => &self.v2,
        };
        (probe.writable != Some(false)).then_some(self.chosen?)
    }
}

/// What one cgroup version offers on this host.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VersionProbe {
    /// Whether this version is mounted at all.
    pub mounted: bool,
    /// Whether it can enforce every required controller.
    pub usable: bool,
    /// The controllers available where a sandbox cgroup would be placed.
    pub controllers: Vec<String>,
    /// The directories under which run cgroups (`<base>/<name>`) would be created.
    pub bases: Vec<PathBuf>,
    /// Whether this process may create those directories (checked with access(2); `None`
    /// when not usable).
    pub writable: Option<bool>,
    /// Why it is not usable, or what it lacks.
    pub reasons: Vec<String>,
}

/// Which version would be used for `pref` when every cgroup limit is set (memory, pids and
/// cpu), and why not the other. Reads the system; changes nothing.
pub fn probe(pref: CgroupPreference) -> CgroupProbe {
    let all =
        Limits { memory_bytes: Some(1), max_pids: Some(1), cpu_millis: Some(1000), ..Limits::default() };
    probe_for(pref, &all)
}

/// Like [`probe`], for the cgroup limits actually set in `limits`.
pub fn probe_for(pref: CgroupPreference, limits: &Limits) -> CgroupProbe {
    match Hierarchies::discover() {
        Ok(h) => probe_in(&h, pref, limits, nix::unistd::geteuid().is_root()),
        Err(e) => CgroupProbe {
            preference: pref,
            required: required_controllers(limits).iter().map(|s| s.to_string()).collect(),
            chosen: None,
            v2: VersionProbe::default(),
            v1: VersionProbe::default(),
            hints: vec![e.to_string()],
        },
    }
}

pub(crate) fn probe_in(
    h: &Hierarchies,
    pref: CgroupPreference,
    limits: &Limits,
    euid_root: bool,
) -> CgroupProbe {
    let sel = Selection::new(h, pref, limits, euid_root);
    let chosen = sel.chosen();
    let v2 = v2::probe(h, &sel.v2);
    let v1 = v1::probe(h, &sel.v1);
    let mut hints = Vec::new();
    if chosen.is_none() {
        if !euid_root {
            hints.push(
                "run airlock as root, or from a cgroup v2 subtree delegated to this user whose \
                 cgroup.subtree_control already enables the needed controllers"
                    .to_owned(),
            );
        }
        if v2.reasons.iter().any(|r| r.contains("no internal processes")) {
            hints.push(
                "inside a container, move its processes out of the container's root cgroup into a \
                 leaf cgroup (e.g. /init) so that controllers can be enabled"
                    .to_owned(),
            );
        }
        let other_usable = match pref {
            CgroupPreference::V1 => v2.usable,
            CgroupPreference::V2 => v1.usable,
            CgroupPreference::Auto => false,
        };
        if other_usable {
            hints.push("the other cgroup version is usable: set the cgroup preference to auto".to_owned());
        }
        hints.push("without a usable cgroup, runs with memory/pids/cpu limits fail; drop those limits to run without one".to_owned());
    }
    for (vp, version) in [(&v2, CgroupVersion::V2), (&v1, CgroupVersion::V1)] {
        if chosen == Some(version) && vp.writable == Some(false) {
            hints.push(format!(
                "{} is not writable by this user: creating the sandbox cgroup will fail with permission denied",
                vp.bases.first().map_or_else(String::new, |p| p.display().to_string())
            ));
        }
    }
    CgroupProbe {
        preference: pref,
        required: sel.required.iter().map(|s| s.to_string()).collect(),
        chosen,
        v2,
        v1,
        hints,
    }
}

/// The placement decision for one request: a plan (or the reasons against) per version.
pub(crate) struct Selection {
    pub pref: CgroupPreference,
    pub required: Vec<&'static str>,
    pub v2: Result<v2::V2Plan, Vec<String>>,
    pub v1: Result<v1::V1Plan, Vec<String>>,
}

impl Selection {
    pub(crate) fn new(
        h: &Hierarchies,
        pref: CgroupPreference,
        limits: &Limits,
        euid_root: bool,
    ) -> Selection {
        let required = required_controllers(limits);
        Selection { pref, v2: v2::plan(h, &required, euid_root), v1: v1::plan(h, &required), required }
    }

    pub(crate) fn chosen(&self) -> Option<CgroupVersion> {
        match self.pref {
            CgroupPreference::V2 => self.v2.is_ok().then_some(CgroupVersion::V2),
            CgroupPreference::V1 => self.v1.is_ok().then_some(CgroupVersion::V1),
            CgroupPreference::Auto => {
                let v2_full = self.v2.as_ref().is_ok_and(|p| {
                    p.controllers.iter().any(|c| c == "memory") && p.controllers.iter().any(|c| c == "pids")
                });
                if v2_full {
                    Some(CgroupVersion::V2)
                } else if self.v1.is_ok() {
                    Some(CgroupVersion::V1)
                } else if self.v2.is_ok() {
                    Some(CgroupVersion::V2)
                } else {
                    None
                }
            }
        }
    }

    fn why_not(&self) -> String {
        let need =
            if self.required.is_empty() { "no controller".to_owned() } else { self.required.join(", ") };
        let mut parts = Vec::new();
        if self.pref != CgroupPreference::V1 {
            if let Err(r) = &self.v2 {
                parts.push(format!("cgroup v2: {}", r.join("; ")));
            }
        }
        if self.pref != CgroupPreference::V2 {
            if let Err(r) = &self.v1 {
                parts.push(format!("cgroup v1: {}", r.join("; ")));
            }
        }
        format!("limits need {need}; {}", parts.join("; "))
    }
}

/// The controllers (same names in v1 and v2) that the cgroup limits set in `limits` need.
pub(crate) fn required_controllers(limits: &Limits) -> Vec<&'static str> {
    let mut out = Vec::new();
    if limits.memory_bytes.is_some() {
        out.push("memory");
    }
    if limits.max_pids.is_some() {
        out.push("pids");
    }
    if limits.cpu_millis.is_some() || limits.cpu_shares.is_some() {
        out.push("cpu");
    }
    out
}

/// `permission denied (EACCES)`: the C library's description, lowercased, and the errno name.
pub(crate) fn errno_text(e: Errno) -> String {
    format!("{} ({e:?})", e.desc().to_lowercase())
}

pub(crate) fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}
