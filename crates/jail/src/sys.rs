//! The engine's raw system calls: every `unsafe` block of Airlock lives in this file, each in a
//! small named function with the reason it is sound. Everything else calls safe wrappers (these,
//! or `nix`).

use std::ffi::CStr;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::unistd::Pid;

/// Result of [`clone_into_namespaces`] as seen by each side.
pub enum CloneResult {
    /// In the parent: the child's pid.
    Parent(Pid),
    /// In the child, which runs in the new namespaces.
    Child,
}

/// `clone(2)` without a new stack, i.e. a `fork` that also creates the namespaces in `flags`.
///
/// The caller must be single-threaded so that the child's copy of the address space has no lock
/// held by a thread that does not exist in it; the engine checks this before calling.
pub fn clone_into_namespaces(flags: libc::c_int) -> Result<CloneResult, Errno> {
    // SAFETY: with a null stack pointer, clone behaves like fork: the child continues on a copy
    // of the caller's stack. No pointer arguments are passed (parent_tid, child_tid and tls are
    // 0 and unused without the matching flags).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match ret {
        -1 => Err(Errno::last()),
        0 => Ok(CloneResult::Child),
        pid => Ok(CloneResult::Parent(Pid::from_raw(pid as i32))),
    }
}

/// Run `child` in a new process on `stack`, as `posix_spawn` does: `clone(CLONE_VM |
/// CLONE_VFORK)`, plus `CLONE_FILES` when `share_files`. The caller's address space is not
/// copied (no page tables to duplicate, no copy-on-write faults), and the caller sleeps until the
/// child has called `execve` or exited, so the two never run at the same time.
///
/// `child` shares the caller's memory (and, with `share_files`, its descriptor table): it may
/// only make system calls on data prepared before this call and write what it borrows, must not
/// allocate, and ends with `execve`, `_exit`, or by returning its exit status.
pub fn spawn_vfork(
    stack: &mut [u8],
    share_files: bool,
    child: &mut dyn FnMut() -> isize,
) -> Result<Pid, Errno> {
    use nix::sched::CloneFlags;
    let mut flags = CloneFlags::CLONE_VM | CloneFlags::CLONE_VFORK;
    if share_files {
        flags |= CloneFlags::CLONE_FILES;
    }
    // SAFETY: the child runs on its own stack, which outlives it: CLONE_VFORK makes this call
    // return only once the child has exec'd or exited. It has its own signal handlers and
    // credentials (no CLONE_SIGHAND or CLONE_THREAD), so what it changes there stays its own.
    // Of the memory it shares it writes only its own stack, what `child` borrows mutably, and
    // libc's errno; the calling thread, suspended meanwhile, touches none of them.
    unsafe { nix::sched::clone(Box::new(child), stack, flags, Some(libc::SIGCHLD)) }
}

/// `open(2)` of `path`, read-only and close-on-exec, without allocating (for [`spawn_vfork`]
/// children).
pub fn open_read_only(path: &CStr) -> Result<OwnedFd, Errno> {
    let fd = nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    // SAFETY: a descriptor open(2) just returned; nothing else refers to it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `mount_setattr(2)` (Linux 5.12+) on the mount at `path`: add nosuid, nodev and, when
/// `readonly`, read-only, leaving every other flag of the mount as it is. `ENOSYS` on older
/// kernels.
pub fn restrict_mount(path: &CStr, readonly: bool) -> Result<(), Errno> {
    let mut set = libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV;
    if readonly {
        set |= libc::MOUNT_ATTR_RDONLY;
    }
    let attr = libc::mount_attr { attr_set: set, attr_clr: 0, propagation: 0, userns_fd: 0 };
    // SAFETY: `path` is NUL-terminated and `attr` is a whole `struct mount_attr` whose size is
    // passed with it; the kernel only reads both during the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            0,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    Errno::result(ret).map(drop)
}

/// The CPUs this process may run on, and the one it runs on now (`None` when the kernel does
/// not say).
pub fn cpu_placement() -> Option<(nix::sched::CpuSet, usize)> {
    let allowed = nix::sched::sched_getaffinity(Pid::from_raw(0)).ok()?;
    // SAFETY: sched_getcpu takes no arguments and only returns a number (-1 on failure).
    let current = unsafe { libc::sched_getcpu() };
    Some((allowed, usize::try_from(current).ok()?))
}

/// Resource usage returned by `wait4(2)`.
pub struct WaitResult {
    /// Raw wait status.
    pub status: libc::c_int,
    /// Usage of the process and the children it waited for.
    pub rusage: libc::rusage,
}

/// `wait4(2)` on one pid, retrying on EINTR.
pub fn wait4(pid: Pid) -> Result<WaitResult, Errno> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is plain old data; an all-zero value is valid and the kernel fills it.
        let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers point to live, writable locals of the right types.
        let ret = unsafe { libc::wait4(pid.as_raw(), &mut status, 0, &mut rusage) };
        match ret {
            -1 if Errno::last() == Errno::EINTR => continue,
            -1 => return Err(Errno::last()),
            _ => return Ok(WaitResult { status, rusage }),
        }
    }
}

/// Drop `cap` from the bounding set (`PR_CAPBSET_DROP`), so no later execve can regain it.
pub fn drop_bounding_cap(cap: u32) -> Result<(), Errno> {
    // SAFETY: PR_CAPBSET_DROP takes one integer argument; no memory is passed.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
    Errno::result(ret).map(drop)
}

/// Clear the ambient capability set.
pub fn clear_ambient_caps() -> Result<(), Errno> {
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes only integer arguments.
    let ret = unsafe {
        libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0)
    };
    Errno::result(ret).map(drop)
}

/// Keep permitted capabilities across a uid change (`PR_SET_KEEPCAPS`).
pub fn set_keep_caps(keep: bool) -> Result<(), Errno> {
    // SAFETY: PR_SET_KEEPCAPS takes one integer argument.
    let ret = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, keep as libc::c_ulong, 0, 0, 0) };
    Errno::result(ret).map(drop)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Make the effective set equal the permitted set (after a uid change with keep-caps).
pub fn raise_effective_caps() -> Result<(), Errno> {
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: version 3 capget reads one header and writes two CapData structs, which is what we
    // pass; both are repr(C) and live for the call.
    let ret = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    Errno::result(ret)?;
    for d in &mut data {
        d.effective = d.permitted;
    }
    // SAFETY: as above; capset reads the header and two CapData structs.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    Errno::result(ret).map(drop)
}

/// Clear the effective, permitted and inheritable capability sets.
pub fn clear_caps() -> Result<(), Errno> {
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let data = [CapData::default(); 2];
    // SAFETY: version 3 capset reads one header and two CapData structs, which we pass.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    Errno::result(ret).map(drop)
}

/// Mark every fd from `first` up close-on-exec, so that an `execve` closes whatever this process
/// inherited (`close_range(2)` with `CLOSE_RANGE_CLOEXEC`, Linux 5.11+, with a fallback that
/// walks `/proc/self/fd` on older kernels).
pub fn set_cloexec_from(first: RawFd) -> Result<(), Errno> {
    // SAFETY: close_range only takes integers; with CLOSE_RANGE_CLOEXEC it closes nothing.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret == 0 {
        return Ok(());
    }
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map_err(|_| Errno::EBADF)?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd >= first)
        .collect();
    for fd in fds {
        // The directory's own descriptor is gone by now: EBADF is expected once.
        match nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC)) {
            Ok(_) | Err(Errno::EBADF) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reset every signal to its default action and unblock all signals, so the payload does not
/// inherit the supervisor's `SIGPIPE` ignore (which Rust programs set at start).
pub fn reset_signals() {
    use nix::sys::signal::{sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL does not run any handler code, so there is no
        // async-signal-safety requirement on our side.
        let _ = unsafe { nix::sys::signal::signal(sig, SigHandler::SigDfl) };
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// `execve(2)`. Returns only on failure.
pub fn execve(path: &CStr, argv: &[*const libc::c_char], envp: &[*const libc::c_char]) -> Errno {
    // SAFETY: `path` is NUL-terminated; `argv` and `envp` are NULL-terminated arrays of pointers
    // to NUL-terminated strings that the caller keeps alive for the call (see `ExecPlan`).
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    Errno::last()
}

/// Bring up the loopback interface of the current network namespace (it starts down) and return
/// the socket that did it, which belongs to that namespace.
pub fn loopback_up() -> Result<OwnedFd, Errno> {
    use std::os::fd::AsRawFd;
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes the flags of the ifreq we pass.
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
    // SAFETY: the flags member of the union was just written by the kernel.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the ifreq we pass.
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) })?;
    Ok(sock)
}

/// The network namespace `sock` belongs to, as a namespace descriptor for `setns` (`SIOCGSKNS`,
/// Linux 4.9+). The kernel opens it close-on-exec.
pub fn network_namespace_of(sock: &OwnedFd) -> Result<OwnedFd, Errno> {
    // SAFETY: SIOCGSKNS takes no argument and passes no memory.
    let fd = Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGSKNS) })?;
    // SAFETY: on success the ioctl returns a descriptor it just installed in this process's
    // table; nothing else refers to it, so it is owned exactly once, here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The user namespace that owns the namespace `ns` (`NS_GET_USERNS`, Linux 4.9+).
#[cfg(test)]
pub fn namespace_owner(ns: &OwnedFd) -> Result<OwnedFd, Errno> {
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    // SAFETY: NS_GET_USERNS takes no argument and passes no memory.
    let fd = Errno::result(unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_USERNS) })?;
    // SAFETY: a new descriptor the ioctl just installed; nothing else refers to it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A TCP socket listening on `127.0.0.1:port` in the current network namespace.
pub fn listen_loopback(port: u16) -> Result<OwnedFd, Errno> {
    std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port))
        .map(OwnedFd::from)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// The landlock ABI version the kernel supports, or `None` without landlock.
pub fn landlock_abi_version() -> Option<u32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with the VERSION flag, landlock_create_ruleset takes a null attr pointer and size 0
    // and only returns a number.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    (ret > 0).then_some(ret as u32)
}

/// Number of threads of the calling process, from `/proc/self/status`.
pub fn thread_count() -> Option<usize> {
    let status = crate::kernel_file::read("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok())
}

/// The most descriptors [`recv_byte_with_fds`] accepts with one byte.
pub const MAX_PASSED_FDS: usize = 8;

/// Send one `byte` on the Unix socket `sock` with `fds` attached (SCM_RIGHTS); the receiver
/// gets its own copies.
pub fn send_byte_with_fds(sock: &OwnedFd, byte: u8, fds: &[OwnedFd]) -> Result<(), Errno> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let cmsgs = match raw.is_empty() {
        true => Vec::new(),
        false => vec![ControlMessage::ScmRights(&raw)],
    };
    let sent =
        sendmsg::<UnixAddr>(sock.as_raw_fd(), &[IoSlice::new(&[byte])], &cmsgs, MsgFlags::empty(), None)?;
    match sent {
        1 => Ok(()),
        _ => Err(Errno::EIO),
    }
}

/// Receive one byte on the Unix socket `sock` and the descriptors sent with it (at most
/// [`MAX_PASSED_FDS`]), close-on-exec. `Ok(None)` at end of file.
pub fn recv_byte_with_fds(sock: &OwnedFd) -> Result<Option<Vec<OwnedFd>>, Errno> {
    let mut byte = [0u8; 1];
    let (n, fds, truncated) = recv_with_fds(sock.as_fd(), &mut byte)?;
    if truncated {
        return Err(Errno::EMSGSIZE);
    }
    Ok((n == 1).then_some(fds))
}

/// Receive bytes into `buf` on the Unix socket `sock` with the descriptors that came with them
/// (at most [`MAX_PASSED_FDS`], close-on-exec): the count of bytes (0 at end of file), the
/// descriptors, and whether the kernel dropped descriptors beyond that many (it closes them).
pub fn recv_with_fds(sock: BorrowedFd, buf: &mut [u8]) -> Result<(usize, Vec<OwnedFd>, bool), Errno> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; MAX_PASSED_FDS]);
    let msg = recvmsg::<UnixAddr>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            // SAFETY: SCM_RIGHTS descriptors are new entries the kernel installed in this
            // process's table for this message; nothing else refers to them, so each is owned
            // exactly once, here.
            fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    Ok((msg.bytes, fds, msg.flags.contains(MsgFlags::MSG_CTRUNC)))
}

/// `_exit(2)`: end a forked process without running the parent's exit handlers or flushing
/// buffers that belong to the parent's copy of the address space.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions; it never returns.
    unsafe { libc::_exit(code) }
}
