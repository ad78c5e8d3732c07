//! The supervisor side of a run: the caller's process. It clones the sandbox init, writes its id
//! maps, decides where the cgroup goes and makes it while init builds its network namespace and
//! its root, releases it, then drains its output, enforces the wall-clock limit and collects the
//! outcome. Nothing of the run outlives [`run`]: the pid namespace dies with its init and the
//! cgroup is removed.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

use crate::cgroup::{Cgroup, CgroupStats, Placement};
use crate::channel::{ChildMessage, Receiver};
use crate::error::JailError;
use crate::exec_plan::ExecPlan;
use crate::init::{CpuSpread, InitFds, InitPlan};
use crate::outcome::{Applied, Outcome, Status, Usage};
use crate::spec::{BuiltinLimits, LandlockMode, NetworkMode, SandboxSpec, Stdin};
use crate::sys::{self, CloneResult};
use crate::{netns, rlimits, seccomp, validate};

/// Which stream output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Receives the payload's output as it arrives, at most the output limit in total.
pub trait OutputSink {
    /// Called with each chunk that is kept.
    fn output(&mut self, stream: Stream, data: &[u8]);

    /// Called once, before the payload starts, with the listening socket of a
    /// [`NetworkMode::Proxied`] sandbox. The default closes it, so the sandbox's connections to
    /// that port are refused.
    fn listener(&mut self, listener: OwnedFd) {
        drop(listener);
    }
}

/// An [`OutputSink`] that keeps everything it is given.
#[derive(Debug, Default)]
pub struct Collector {
    /// Kept stdout.
    pub stdout: Vec<u8>,
    /// Kept stderr.
    pub stderr: Vec<u8>,
}

impl OutputSink for Collector {
    fn output(&mut self, stream: Stream, data: &[u8]) {
        match stream {
            Stream::Stdout => self.stdout.extend_from_slice(data),
            Stream::Stderr => self.stderr.extend_from_slice(data),
        }
    }
}

/// The namespaces `clone` makes. The network namespace is not among them: init makes it
/// itself (see `init::setup`), while this side writes the id maps and makes the cgroup.
const NAMESPACES: libc::c_int =
    libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;

fn sv(what: &'static str) -> impl Fn(Errno) -> JailError {
    move |source| JailError::Supervisor { what, source }
}

/// Run `spec` in a fresh sandbox and wait for it to end.
///
/// Must be called from a single-threaded process (a user namespace cannot be entered safely
/// from a forked copy of a multi-threaded one); async callers use a launcher process.
pub fn run(spec: &SandboxSpec, sink: &mut dyn OutputSink) -> Result<Outcome, JailError> {
    run_with_stdin(spec, None, sink)
}

/// [`run`] with the payload's standard input attached to `stdin` (e.g. one end of a socket pair
/// through which a long-lived payload is driven) instead of what `spec.stdin` says.
pub fn run_attached(
    spec: &SandboxSpec,
    stdin: OwnedFd,
    sink: &mut dyn OutputSink,
) -> Result<Outcome, JailError> {
    run_with_stdin(spec, Some(stdin), sink)
}

fn run_with_stdin(
    spec: &SandboxSpec,
    attached: Option<OwnedFd>,
    sink: &mut dyn OutputSink,
) -> Result<Outcome, JailError> {
    validate::spec(spec)?;
    if sys::thread_count() != Some(1) {
        return Err(JailError::Supervisor {
            what: "the engine must run in a single-threaded process",
            source: Errno::EINVAL,
        });
    }
    let landlock_abi = sys::landlock_abi_version().unwrap_or(0);
    if spec.protections.landlock == LandlockMode::Required && landlock_abi == 0 {
        return Err(JailError::LandlockUnsupported);
    }
    let plan = InitPlan {
        spec,
        exec: ExecPlan::new(spec)?,
        seccomp: spec.protections.seccomp.then(seccomp::compile_default).transpose()?,
        cap_last: cap_last(),
        root_mode: nix::unistd::geteuid().is_root(),
        landlock_abi,
        rlimits: rlimits::wanted(&spec.limits),
        cpus: sys::cpu_placement().and_then(|(allowed, current)| CpuSpread::new(allowed, current)),
    };
    let mut cgroup = None;
    let mut left_out = BuiltinLimits::default();
    let result = Interrupts::catch().and_then(|interrupts| {
        let started = Started { cgroup: &mut cgroup, left_out: &mut left_out, attached };
        let result = start_and_supervise(spec, &plan, started, &interrupts, sink);
        interrupts.release();
        result
    });
    let version = cgroup.as_ref().map(Cgroup::version);
    // Destroyed whatever the result: a failed run must not leave its cgroup either.
    let destroyed = cgroup.map_or(Ok(()), Cgroup::destroy);
    let (mut outcome, stats) = result?;
    destroyed?;
    outcome.applied.cgroup = version;
    outcome.applied.left_out = left_out;
    Ok(finish(outcome, spec, stats))
}

fn cgroup_name() -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("run-{}-{n}", std::process::id())
}

fn cap_last() -> u32 {
    crate::kernel_file::read("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// SIGINT, SIGTERM, SIGHUP and SIGQUIT aimed at the supervisor while a sandbox runs: blocked and
/// read from a signalfd, so that they kill the sandbox and the run still ends cleanly (outcome
/// reported, cgroup removed) instead of killing the supervisor and orphaning the cleanup.
struct Interrupts {
    fd: SignalFd,
    old_mask: SigSet,
}

impl Interrupts {
    fn catch() -> Result<Interrupts, JailError> {
        let mut mask = SigSet::empty();
        for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT] {
            mask.add(sig);
        }
        let mut old_mask = SigSet::empty();
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old_mask)).map_err(sv("block signals"))?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(sv("signalfd"))?;
        Ok(Interrupts { fd, old_mask })
    }

    /// The next pending interrupt, if any.
    fn take(&self) -> Option<i32> {
        self.fd.read_signal().ok().flatten().map(|info| info.ssi_signo as i32)
    }

    /// Consume what is pending (it was acted on) and restore the caller's mask.
    fn release(self) {
        while self.take().is_some() {}
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.old_mask), None);
    }
}

struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

fn pipe() -> Result<Pipe, JailError> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sv("pipe"))?;
    Ok(Pipe { read, write })
}

/// A connected pair of Unix stream sockets: the go bytes need one to pass descriptors.
fn socketpair() -> Result<(OwnedFd, OwnedFd), JailError> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).map_err(sv("socketpair"))
}

/// What the supervise loop learned.
struct Raw {
    messages: Vec<ChildMessage>,
    timed_out: bool,
    /// The signal that made the supervisor kill the sandbox.
    interrupted: Option<i32>,
    wall: Duration,
    stdout_bytes: u64,
    stderr_bytes: u64,
    truncated: bool,
}

/// What a run brings to its start besides the spec: where its cgroup goes once made, which
/// built-in limits it leaves out, and an attached standard input.
struct Started<'a> {
    cgroup: &'a mut Option<Cgroup>,
    left_out: &'a mut BuiltinLimits,
    attached: Option<OwnedFd>,
}

/// Where the run's cgroup goes, if it needs one, and which built-in limits are left out because
/// this caller can make no cgroup ([`crate::Limits::builtin`]).
fn place(spec: &SandboxSpec) -> Result<(Option<Placement>, BuiltinLimits), JailError> {
    let pref = spec.protections.cgroup;
    if !spec.limits.needs_cgroup() {
        return Ok((None, BuiltinLimits::default()));
    }
    let error = match Placement::choose(pref, &spec.limits) {
        Ok(placement) => return Ok((Some(placement), BuiltinLimits::default())),
        Err(e) => e,
    };
    let (reduced, left_out) = spec.limits.without_builtin();
    if left_out.is_empty() {
        return Err(error.into());
    }
    if !reduced.needs_cgroup() {
        return Ok((None, left_out));
    }
    Ok((Some(Placement::choose(pref, &reduced)?), left_out))
}

fn start_and_supervise(
    spec: &SandboxSpec,
    plan: &InitPlan,
    started: Started,
    interrupts: &Interrupts,
    sink: &mut dyn OutputSink,
) -> Result<(Outcome, Option<CgroupStats>), JailError> {
    let Started { cgroup, left_out, attached } = started;
    let (sync, sync_child) = socketpair()?;
    let channel = pipe()?;
    let stdout = pipe()?;
    let stderr = pipe()?;
    let (stdin, stdin_writer) = match (attached, &spec.stdin) {
        (Some(fd), _) => (Some(fd), None),
        (None, Stdin::Null) => (None, None),
        (None, Stdin::Bytes(_)) => {
            let p = pipe()?;
            (Some(p.read), Some(p.write))
        }
    };
    let start = Instant::now();
    let pid = match sys::clone_into_namespaces(NAMESPACES).map_err(JailError::UserNamespace)? {
        CloneResult::Child => {
            drop((sync, channel.read, stdout.read, stderr.read, stdin_writer));
            let fds = InitFds {
                sync: sync_child,
                channel: channel.write,
                stdin,
                stdout: stdout.write,
                stderr: stderr.write,
            };
            crate::init::run(plan, fds)
        }
        CloneResult::Parent(pid) => pid,
    };
    if let Some(cpus) = &plan.cpus {
        // Only a placement hint: where it cannot be had, init runs where the kernel puts it.
        let _ = nix::sched::sched_setaffinity(pid, &cpus.elsewhere);
    }
    drop((sync_child, channel.write, stdout.write, stderr.write, stdin));
    let go = |passed: &[OwnedFd]| sys::send_byte_with_fds(&sync, 1, passed).map_err(sv("release sandbox"));
    let released = release(pid, spec, plan.root_mode, (cgroup, left_out), &go);
    let released = released.and_then(|()| match spec.network {
        NetworkMode::Proxied { .. } => receive_listener(&sync).map(|listener| sink.listener(listener)),
        NetworkMode::None | NetworkMode::Host => Ok(()),
    });
    if let Err(e) = released {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = sys::wait4(pid);
        // A go byte that cannot be sent usually means init failed first; what it reported on
        // the channel names the stage and the cause, which the broken socket does not.
        return Err(setup_failure(&channel.read).unwrap_or(e));
    }
    let raw =
        supervise(spec, pid, start, [channel.read, stdout.read, stderr.read], stdin_writer, interrupts, sink);
    if raw.is_err() {
        let _ = kill(pid, Signal::SIGKILL);
    }
    // Read while init is still tearing its namespaces down: once the payload and every
    // process it started are gone, the peak and the limits hit are final.
    let stats = cgroup.as_ref().map(Cgroup::stats);
    let wait = sys::wait4(pid).map_err(sv("wait for sandbox"))?;
    drop(sync);
    Ok((outcome_from(raw?, &wait, spec)?, stats))
}

/// Take init from `clone` to its last setup steps with two go bytes (`go`). The first comes
/// once the id maps exist; init then builds its filesystem while a helper makes the network
/// namespace (see `netns`) and the cgroup is made here. The second carries the namespace, then
/// on v1 the `tasks` files init writes itself into (see `Cgroup::self_join_files`); on v2 init
/// has been moved already.
fn release(
    pid: Pid,
    spec: &SandboxSpec,
    root_mode: bool,
    (cgroup, left_out): (&mut Option<Cgroup>, &mut BuiltinLimits),
    go: &dyn Fn(&[OwnedFd]) -> Result<(), JailError>,
) -> Result<(), JailError> {
    write_id_maps(pid, spec, root_mode)?;
    // Decided before the go: it reads the mount table, which would wait on the kernel's global
    // mount lock while init mounts.
    let (placement, dropped) = place(spec)?;
    *left_out = dropped;
    go(&[])?;
    let netns = spec.network.is_private().then(|| netns::make_for(pid)).transpose()?;
    let made = match placement {
        Some(placement) => Some(cgroup.insert(placement.create(&cgroup_name())?)),
        None => None,
    };
    let mut passed: Vec<OwnedFd> = netns.into_iter().collect();
    if let Some(made) = made {
        let join = made.self_join_files()?;
        if join.is_empty() {
            made.add_process(pid.as_raw())?;
        }
        passed.extend(join);
    }
    go(&passed)
}

/// The listening socket init sends on the sync socket before it joins its cgroup; end of file
/// means init failed first (and says why on the channel).
fn receive_listener(sync: &OwnedFd) -> Result<OwnedFd, JailError> {
    match sys::recv_byte_with_fds(sync).map_err(sv("receive the sandbox's listener"))? {
        Some(fds) if fds.len() == 1 => Ok(fds.into_iter().next().expect("one descriptor")),
        Some(_) | None => {
            Err(JailError::Supervisor { what: "receive the sandbox's listener", source: Errno::EPIPE })
        }
    }
}

/// The setup failure init reported on the channel before it ended, if it did. Init is dead by
/// now, so every read ends.
fn setup_failure(channel: &OwnedFd) -> Option<JailError> {
    let mut rx = Receiver::default();
    let mut buf = [0u8; 256];
    while let Ok(n @ 1..) = nix::unistd::read(channel.as_raw_fd(), &mut buf) {
        for message in rx.feed(&buf[..n]) {
            if let ChildMessage::SetupFailed { stage, errno } = message {
                return Some(JailError::Setup { stage, errno: Errno::from_raw(errno) });
            }
        }
    }
    None
}

/// Map the sandbox user to the host identity. Rootless callers may only map themselves, after
/// denying setgroups (user_namespaces(7)); root keeps setgroups so init can drop host groups.
fn write_id_maps(pid: Pid, spec: &SandboxSpec, root_mode: bool) -> Result<(), JailError> {
    let base = format!("/proc/{pid}");
    let write = |file: &'static str, contents: String| {
        std::fs::write(format!("{base}/{file}"), contents).map_err(|source| JailError::IdMap { file, source })
    };
    let inside = crate::spec::SANDBOX_UID;
    write("uid_map", format!("{inside} {} 1\n", spec.identity.uid))?;
    if !root_mode {
        write("setgroups", "deny\n".into())?;
    }
    write("gid_map", format!("{inside} {} 1\n", spec.identity.gid))
}

/// Drain `[channel, stdout, stderr]` until the sandbox has closed them all (init is exiting),
/// feeding stdin and enforcing the wall-clock limit and interrupts on the way.
fn supervise(
    spec: &SandboxSpec,
    pid: Pid,
    start: Instant,
    readers: [OwnedFd; 3],
    mut stdin: Option<OwnedFd>,
    interrupts: &Interrupts,
    sink: &mut dyn OutputSink,
) -> Result<Raw, JailError> {
    for fd in readers.iter().chain(stdin.as_ref()) {
        set_nonblocking(fd)?;
    }
    let deadline = spec.limits.wall_time.map(|d| start + d);
    let cap = spec.limits.max_output_bytes.unwrap_or(u64::MAX);
    let stdin_data: &[u8] = match &spec.stdin {
        Stdin::Bytes(b) => b,
        Stdin::Null => &[],
    };
    let mut stdin_off = 0usize;
    let mut open = readers.map(Some);
    let mut interrupted = None;
    let mut rx = Receiver::default();
    let mut messages = Vec::new();
    let mut counts = [0u64; 2];
    let mut kept = 0u64;
    let mut timed_out = false;
    let mut buf = vec![0u8; 64 * 1024];

    while open.iter().any(Option::is_some) {
        let timeout = match deadline {
            Some(d) if !timed_out => {
                let left = d.saturating_duration_since(Instant::now());
                PollTimeout::try_from(left.as_millis().min(60_000) as i32 + 1).unwrap_or(PollTimeout::MAX)
            }
            _ => PollTimeout::NONE,
        };
        let mut pollfds: Vec<PollFd> =
            open.iter().flatten().map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN)).collect();
        pollfds.push(PollFd::new(interrupts.fd.as_fd(), PollFlags::POLLIN));
        if let Some(w) = &stdin {
            pollfds.push(PollFd::new(w.as_fd(), PollFlags::POLLOUT));
        }
        match poll(&mut pollfds, timeout) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(sv("poll")(e)),
            Ok(_) => {}
        }
        let ready: Vec<bool> = pollfds.iter().map(|p| p.any().unwrap_or(false)).collect();
        drop(pollfds);
        if !timed_out && deadline.is_some_and(|d| Instant::now() >= d) {
            timed_out = true;
            let _ = kill(pid, Signal::SIGKILL);
        }
        let mut slot = 0;
        for (i, entry) in open.iter_mut().enumerate() {
            let Some(fd) = entry else { continue };
            let is_ready = ready[slot];
            slot += 1;
            if !is_ready {
                continue;
            }
            match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
                Ok(0) => *entry = None,
                Ok(n) => {
                    let data = &buf[..n];
                    if i == 0 {
                        messages.extend(rx.feed(data));
                        continue;
                    }
                    counts[i - 1] += n as u64;
                    let room = cap.saturating_sub(kept).min(n as u64) as usize;
                    if room > 0 {
                        kept += room as u64;
                        let stream = if i == 1 { Stream::Stdout } else { Stream::Stderr };
                        sink.output(stream, &data[..room]);
                    }
                }
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(_) => *entry = None,
            }
        }
        if ready.get(slot).copied().unwrap_or(false) {
            if let Some(sig) = interrupts.take() {
                interrupted.get_or_insert(sig);
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
        slot += 1;
        if stdin.is_some() && ready.get(slot).copied().unwrap_or(false) {
            let w = stdin.as_ref().map(|w| nix::unistd::write(w, &stdin_data[stdin_off..]));
            match w {
                Some(Ok(n)) => stdin_off += n,
                Some(Err(Errno::EAGAIN | Errno::EINTR)) => {}
                _ => stdin_off = stdin_data.len(),
            }
        }
        if stdin_off >= stdin_data.len() {
            stdin = None;
        }
    }
    Ok(Raw {
        messages,
        timed_out,
        interrupted,
        wall: start.elapsed(),
        stdout_bytes: counts[0],
        stderr_bytes: counts[1],
        truncated: counts[0] + counts[1] > kept,
    })
}

fn set_nonblocking(fd: &OwnedFd) -> Result<(), JailError> {
    let flags = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).map_err(sv("fcntl"))?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags)).map_err(sv("fcntl"))?;
    Ok(())
}

fn tv(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}

/// Turn what the loop saw and how init ended into an outcome, or the setup error the sandbox
/// reported.
fn outcome_from(raw: Raw, wait: &sys::WaitResult, spec: &SandboxSpec) -> Result<Outcome, JailError> {
    let mut payload_status = None;
    let mut landlock_abi = None;
    for msg in &raw.messages {
        match *msg {
            ChildMessage::SetupFailed { stage, errno } => {
                return Err(JailError::Setup { stage, errno: Errno::from_raw(errno) })
            }
            ChildMessage::ExecFailed { errno } => {
                let command = spec.argv[0].clone();
                return Err(match Errno::from_raw(errno) {
                    Errno::ENOENT | Errno::ENOTDIR => JailError::CommandNotFound(command),
                    errno => JailError::CommandNotExecutable { command, errno },
                });
            }
            ChildMessage::LandlockApplied { abi } => landlock_abi = (abi > 0).then_some(abi),
            ChildMessage::PayloadExited { status } => payload_status = Some(status),
        }
    }
    let (exit_code, signal) = match payload_status {
        Some(s) if libc::WIFEXITED(s) => (Some(libc::WEXITSTATUS(s)), None),
        Some(s) if libc::WIFSIGNALED(s) => (None, Some(libc::WTERMSIG(s))),
        _ if raw.interrupted.is_some() => (None, raw.interrupted),
        _ if raw.timed_out => (None, Some(libc::SIGKILL)),
        // Init died without a report: it was killed from outside (e.g. the OOM killer picked it).
        _ => (None, Some(libc::WTERMSIG(wait.status).max(libc::SIGKILL))),
    };
    let ru = &wait.rusage;
    let usage = Usage {
        wall: raw.wall,
        user_cpu: tv(ru.ru_utime),
        system_cpu: tv(ru.ru_stime),
        peak_memory_bytes: ru.ru_maxrss.max(0) as u64 * 1024,
        io_read_bytes: ru.ru_inblock.max(0) as u64 * 512,
        io_write_bytes: ru.ru_oublock.max(0) as u64 * 512,
        stdout_bytes: raw.stdout_bytes,
        stderr_bytes: raw.stderr_bytes,
        output_truncated: raw.truncated,
    };
    Ok(Outcome {
        status: Status::Ok,
        exit_code,
        signal,
        timed_out: raw.timed_out,
        usage,
        applied: Applied {
            seccomp: spec.protections.seccomp,
            landlock_abi,
            cgroup: None,
            host_uid: spec.identity.uid,
            left_out: BuiltinLimits::default(),
        },
    })
}

/// Fold cgroup statistics in and decide the status. A limit the tree hit is reported even when
/// the payload itself exited 0 (a fork bomb's parent usually does); the exit code stays.
fn finish(mut outcome: Outcome, spec: &SandboxSpec, stats: Option<CgroupStats>) -> Outcome {
    let stats = stats.unwrap_or_default();
    let u = &mut outcome.usage;
    if let Some(ns) = stats.cpu_user_ns {
        u.user_cpu = Duration::from_nanos(ns);
    }
    if let Some(ns) = stats.cpu_system_ns {
        u.system_cpu = Duration::from_nanos(ns);
    }
    if let Some(peak) = stats.memory_peak_bytes {
        u.peak_memory_bytes = peak;
    }
    u.io_read_bytes = stats.io_read_bytes.unwrap_or(u.io_read_bytes);
    u.io_write_bytes = stats.io_write_bytes.unwrap_or(u.io_write_bytes);

    let cpu_used = u.user_cpu + u.system_cpu;
    let cpu_limited = outcome.signal == Some(libc::SIGXCPU)
        || (outcome.signal == Some(libc::SIGKILL)
            && !outcome.timed_out
            && spec.limits.cpu_time.is_some_and(|limit| cpu_used >= limit));
    outcome.status = if stats.oom_kills > 0 {
        Status::MemoryLimit
    } else if stats.pids_max_hits > 0 {
        Status::PidsLimit
    } else if outcome.timed_out {
        Status::Timeout
    } else if cpu_limited {
        Status::CpuTimeLimit
    } else if outcome.signal == Some(libc::SIGXFSZ) {
        Status::FileSizeLimit
    } else if u.output_truncated {
        Status::OutputLimit
    } else if outcome.signal.is_some() {
        Status::Signaled
    } else if outcome.exit_code == Some(0) {
        Status::Ok
    } else {
        Status::Exited
    };
    outcome
}
