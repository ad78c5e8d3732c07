//! The sandbox side of a run: the process created by `clone` in the new namespaces.
//!
//! It is PID 1 of the sandbox's pid namespace ("init"). It waits until the supervisor has written
//! its id maps, builds the filesystem, enters the network namespace made meanwhile (see `netns`),
//! joins its cgroup, drops every privilege, installs landlock and seccomp, then spawns the payload
//! and reaps processes until the payload exits. When init exits the kernel kills everything left
//! in the namespace, `setsid` daemons included.
//!
//! Single-threaded throughout. Failures are reported to the supervisor as [`ChildMessage`]s.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{Gid, Pid, Uid};

use crate::channel::ChildMessage;
use crate::error::Stage;
use crate::exec_plan::{ExecPlan, ExecPointers};
use crate::seccomp::SeccompProgram;
use crate::spec::{LandlockMode, NetworkMode, SandboxSpec, SANDBOX_UID};
use crate::sys;
use crate::{landlock_rules, rlimits, rootfs};

/// What init needs, prepared by the supervisor before `clone`.
pub struct InitPlan<'a> {
    /// The run's spec.
    pub spec: &'a SandboxSpec,
    /// Payload argv/env as C strings.
    pub exec: ExecPlan,
    /// Compiled seccomp filter, if enabled.
    pub seccomp: Option<SeccompProgram>,
    /// Highest capability number of this kernel.
    pub cap_last: u32,
    /// Whether the supervisor runs as root (then supplementary groups are dropped).
    pub root_mode: bool,
    /// Kernel landlock ABI (0 = none).
    pub landlock_abi: u32,
    /// rlimits for the payload.
    pub rlimits: Vec<(nix::sys::resource::Resource, u64)>,
    /// Where init starts, when the caller may use several CPUs.
    pub cpus: Option<CpuSpread>,
}

/// Where init starts: every CPU the caller may use but the one the supervisor is on. A child
/// starts beside its parent, where the two would take turns; the supervisor moves init away
/// right after `clone`, so that both work in parallel. Init takes `all` back once the first go
/// arrives: pinned any longer, it would wait for its CPU while the kernel's own work (such as
/// the cleanup of an earlier sandbox's network namespace) runs there and another CPU is idle.
pub struct CpuSpread {
    /// Init's CPUs until the first go.
    pub elsewhere: nix::sched::CpuSet,
    /// The caller's CPUs.
    pub all: nix::sched::CpuSet,
}

impl CpuSpread {
    /// The spread for a caller that may run on `allowed` and runs on `current`; `None` when
    /// no other CPU is allowed.
    pub fn new(allowed: nix::sched::CpuSet, current: usize) -> Option<CpuSpread> {
        let mut elsewhere = allowed;
        elsewhere.unset(current).ok()?;
        (elsewhere != nix::sched::CpuSet::new()).then_some(CpuSpread { elsewhere, all: allowed })
    }
}

/// The sandbox ends of the supervisor's pipes.
pub struct InitFds {
    /// The sandbox's end of the socket that brings the two go bytes (id maps written; cgroup and
    /// network namespace ready); EOF means the supervisor is gone.
    pub sync: OwnedFd,
    /// Write end of the message channel (close-on-exec).
    pub channel: OwnedFd,
    /// Payload stdin, or `None` for `/dev/null`.
    pub stdin: Option<OwnedFd>,
    /// Payload stdout.
    pub stdout: OwnedFd,
    /// Payload stderr.
    pub stderr: OwnedFd,
}

type Step = Result<(), (Stage, Errno)>;

fn at(stage: Stage) -> impl Fn(Errno) -> (Stage, Errno) {
    move |e| (stage, e)
}

/// Entry point of the cloned child. Never returns.
pub fn run(plan: &InitPlan, fds: InitFds) -> ! {
    let code = match setup(plan, &fds) {
        Ok(payload) => {
            let InitFds { sync, channel, stdin, stdout, stderr } = fds;
            drop((sync, stdin, stdout, stderr));
            reap_until(payload, &channel)
        }
        Err((stage, errno)) => {
            let _ = ChildMessage::SetupFailed { stage, errno: errno as i32 }.send(&fds.channel);
            1
        }
    };
    sys::exit_now(code)
}

fn setup(plan: &InitPlan, fds: &InitFds) -> Result<Pid, (Stage, Errno)> {
    // Die with the supervisor (bubblewrap's --die-with-parent), then wait for the id maps.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(at(Stage::Sync))?;
    wait_for_supervisor(fds)?;
    if let Some(cpus) = &plan.cpus {
        // The supervisor moved init to other CPUs than its own before the go (see
        // `CpuSpread`); having started there, init may go wherever the kernel finds room.
        nix::sched::sched_setaffinity(Pid::from_raw(0), &cpus.all).map_err(at(Stage::CpuAffinity))?;
    }
    become_sandbox_user(plan.root_mode)?;
    // The kernel clears the parent-death signal when the uid changes: set it again. A supervisor
    // that died in between is seen below, as EOF on the sync socket.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(at(Stage::Sync))?;
    // The filesystem is built while the supervisor makes the cgroup and the network namespace
    // (see `netns`); nothing forks before the second go, after which every process of the
    // sandbox is born inside the cgroup.
    rootfs::build(plan.spec)?;
    nix::unistd::sethostname(&plan.spec.hostname).map_err(at(Stage::Hostname))?;
    let mut passed = second_go(fds)?.into_iter();
    if plan.spec.network.is_private() {
        let netns = passed.next().ok_or((Stage::Sync, Errno::EPROTO))?;
        nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(at(Stage::NetworkNamespace))?;
    }
    if let NetworkMode::Proxied { port } = plan.spec.network {
        send_listener(port, fds)?;
    }
    join_cgroup(passed)?;
    // Entered only now, so the namespace is rooted at the cgroup the supervisor just assigned.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP).map_err(at(Stage::CgroupNamespace))?;
    drop_capabilities(plan.cap_last)?;
    nix::sys::prctl::set_no_new_privs().map_err(at(Stage::NoNewPrivs))?;
    // Not dumpable: the payload runs as the same uid and must not open /proc/1/mem.
    nix::sys::prctl::set_dumpable(false).map_err(at(Stage::NoNewPrivs))?;
    apply_landlock(plan, fds)?;
    if let Some(filter) = &plan.seccomp {
        crate::seccomp::install(filter).map_err(at(Stage::Seccomp))?;
    }
    // What init inherited from the caller must not reach the payload; init's own descriptors
    // are close-on-exec already, and the payload's stdio is dup'ed over 0 to 2.
    sys::set_cloexec_from(3).map_err(at(Stage::Stdio))?;
    // Everything the child reads is prepared here: it runs on init's memory and must not
    // allocate (see `sys::spawn_vfork`).
    let pointers = plan.exec.pointers();
    let mut stack = vec![0u8; PAYLOAD_STACK_BYTES];
    sys::spawn_vfork(&mut stack, false, &mut || exec_payload(plan, fds, &pointers)).map_err(at(Stage::Fork))
}

/// Stack of the spawned payload until its `execve`: what `exec_payload` needs, with room to
/// spare. The pages it never touches are never backed.
const PAYLOAD_STACK_BYTES: usize = 256 * 1024;

/// One go byte from the supervisor; EOF means it is gone.
fn wait_for_supervisor(fds: &InitFds) -> Step {
    let mut byte = [0u8; 1];
    match nix::unistd::read(fds.sync.as_raw_fd(), &mut byte) {
        Ok(1) => Ok(()),
        Ok(_) => Err((Stage::Sync, Errno::EPIPE)),
        Err(e) => Err((Stage::Sync, e)),
    }
}

/// Listen on `127.0.0.1:port` in the sandbox's network namespace and send the socket to the
/// supervisor. Made before the payload exists, so the payload cannot take the port first; init
/// keeps no copy, so nothing in the sandbox can accept on it.
fn send_listener(port: u16, fds: &InitFds) -> Step {
    let listener = sys::listen_loopback(port).map_err(at(Stage::Listener))?;
    sys::send_byte_with_fds(&fds.sync, 2, &[listener]).map_err(at(Stage::Listener))
}

/// The second go byte, with what the supervisor made meanwhile: the network namespace first
/// when the network is private, then the cgroup's files to join (see [`join_cgroup`]).
fn second_go(fds: &InitFds) -> Result<Vec<OwnedFd>, (Stage, Errno)> {
    match sys::recv_byte_with_fds(&fds.sync) {
        Ok(Some(passed)) => Ok(passed),
        Ok(None) => Err((Stage::Sync, Errno::EPIPE)),
        Err(e) => Err((Stage::Sync, e)),
    }
}

/// On cgroup v1 the second go brings the run's `tasks` files: writing `0` moves this process by
/// itself, which skips the global lock a move by another process takes (its first writer waits
/// a whole RCU grace period). On v2 there are none: the supervisor has moved init already.
fn join_cgroup(files: impl Iterator<Item = OwnedFd>) -> Step {
    for file in files {
        match nix::unistd::write(file, b"0") {
            Ok(1) => {}
            Ok(_) => return Err((Stage::CgroupJoin, Errno::EIO)),
            Err(e) => return Err((Stage::CgroupJoin, e)),
        }
    }
    Ok(())
}

fn become_sandbox_user(root_mode: bool) -> Step {
    let stage = Stage::Identity;
    if root_mode {
        nix::unistd::setgroups(&[]).map_err(at(stage))?;
    }
    let (uid, gid) = (Uid::from_raw(SANDBOX_UID), Gid::from_raw(SANDBOX_UID));
    sys::set_keep_caps(true).map_err(at(stage))?;
    nix::unistd::setresgid(gid, gid, gid).map_err(at(stage))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(at(stage))?;
    sys::set_keep_caps(false).map_err(at(stage))?;
    sys::raise_effective_caps().map_err(at(stage))
}

/// Empty the bounding, ambient, effective, permitted and inheritable sets.
fn drop_capabilities(cap_last: u32) -> Step {
    let stage = Stage::Capabilities;
    for cap in 0..=cap_last {
        sys::drop_bounding_cap(cap).map_err(at(stage))?;
    }
    sys::clear_ambient_caps().map_err(at(stage))?;
    sys::clear_caps().map_err(at(stage))
}

fn apply_landlock(plan: &InitPlan, fds: &InitFds) -> Step {
    let mode = plan.spec.protections.landlock;
    if mode == LandlockMode::Off {
        return Ok(());
    }
    if plan.landlock_abi == 0 {
        return match mode {
            LandlockMode::Required => Err((Stage::Landlock, Errno::ENOSYS)),
            _ => {
                let _ = ChildMessage::LandlockApplied { abi: 0 }.send(&fds.channel);
                Ok(())
            }
        };
    }
    let abi = landlock_rules::apply(plan.spec, plan.landlock_abi).map_err(at(Stage::Landlock))?;
    if abi == 0 && mode == LandlockMode::Required {
        return Err((Stage::Landlock, Errno::ENOSYS));
    }
    let _ = ChildMessage::LandlockApplied { abi }.send(&fds.channel);
    Ok(())
}

/// In the spawned payload, on init's memory: wire stdio, apply rlimits, exec. Only system calls
/// on prepared data: nothing here allocates.
fn exec_payload(plan: &InitPlan, fds: &InitFds, pointers: &ExecPointers) -> ! {
    let report = |stage: Stage, errno: Errno| -> ! {
        let _ = ChildMessage::SetupFailed { stage, errno: errno as i32 }.send(&fds.channel);
        sys::exit_now(126)
    };
    sys::reset_signals();
    if let Err(e) = nix::unistd::setsid() {
        report(Stage::Stdio, e);
    }
    let null;
    let stdin_fd = match &fds.stdin {
        Some(fd) => fd.as_raw_fd(),
        None => {
            let flags = nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC;
            match nix::fcntl::open(c"/dev/null", flags, nix::sys::stat::Mode::empty()) {
                Ok(fd) => {
                    null = fd;
                    null
                }
                Err(e) => report(Stage::Stdio, e),
            }
        }
    };
    for (from, to) in [(stdin_fd, 0), (fds.stdout.as_raw_fd(), 1), (fds.stderr.as_raw_fd(), 2)] {
        if let Err(e) = nix::unistd::dup2(from, to) {
            report(Stage::Stdio, e);
        }
    }
    if let Err(e) = rlimits::apply(&plan.rlimits) {
        report(Stage::Rlimits, e);
    }
    if let Err(e) = nix::unistd::chdir(plan.exec.workdir.as_c_str()) {
        report(Stage::Workdir, e);
    }
    let (argv, envp) = pointers;
    let mut errno = Errno::ENOENT;
    for path in &plan.exec.candidates {
        match sys::execve(path, argv, envp) {
            Errno::ENOENT | Errno::ENOTDIR => {}
            Errno::EACCES => errno = Errno::EACCES,
            other => {
                errno = other;
                break;
            }
        }
    }
    let _ = ChildMessage::ExecFailed { errno: errno as i32 }.send(&fds.channel);
    sys::exit_now(127)
}

/// Reap every child; when the payload ends, report its status and exit (which kills the rest).
fn reap_until(payload: Pid, channel: &OwnedFd) -> i32 {
    loop {
        match waitpid(None, None) {
            Ok(status) if status.pid() == Some(payload) => {
                let raw = match status {
                    WaitStatus::Exited(_, code) => (code & 0xff) << 8,
                    WaitStatus::Signaled(_, sig, core) => sig as i32 | if core { 0x80 } else { 0 },
                    _ => continue,
                };
                let _ = ChildMessage::PayloadExited { status: raw }.send(channel);
                return 0;
            }
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => return 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use nix::sched::CpuSet;

    use super::CpuSpread;

    fn set(cpus: &[usize]) -> CpuSet {
        let mut set = CpuSet::new();
        for &cpu in cpus {
            set.set(cpu).unwrap();
        }
        set
    }

    #[test]
    fn init_starts_on_the_other_cpus_and_gives_them_all_back() {
        let spread = CpuSpread::new(set(&[0, 1, 3]), 1).expect("other CPUs are allowed");
        assert_eq!(spread.elsewhere, set(&[0, 3]));
        assert_eq!(spread.all, set(&[0, 1, 3]));
        assert!(CpuSpread::new(set(&[2]), 2).is_none(), "one CPU: nowhere else to go");
    }
}
