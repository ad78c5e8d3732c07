//! The seccomp filter of the sandbox: which system calls untrusted code may make.
//!
//! # Policy
//!
//! The filter is an **allowlist** modelled on Docker's default seccomp profile
//! (`moby/profiles/seccomp/default.json`) for a container without extra capabilities: the
//! system calls listed in the tables below are allowed, every other system call fails with
//! `EPERM`. The payload already runs without capabilities inside its own namespaces; seccomp
//! shrinks the kernel surface it can reach, since most container escapes are kernel bugs
//! reached through rarely needed system calls. Compared with Docker's list this one is
//! stricter:
//!
//! * `io_uring_setup`, `io_uring_enter` and `io_uring_register` are denied. io_uring is a
//!   second system-call interface that seccomp cannot see into, and has been the source of
//!   a long series of local privilege escalations (CVE-2021-41073, CVE-2022-29582,
//!   CVE-2023-2598, CVE-2024-0582); Google reported that most of the kernel exploits
//!   submitted to its kCTF programme in 2022 used it, and disabled it on ChromeOS, Android
//!   and its servers. Docker's current profile denies it too. libuv (node) and other
//!   runtimes fall back to a thread pool when it is refused.
//! * `ptrace`, `process_vm_readv` and `process_vm_writev` are denied (Docker allows them
//!   on kernels since 4.8): a sandboxed process has no business inspecting another one, and
//!   ptrace has its own escalation history (CVE-2019-13272).
//! * `adjtimex`, `clock_adjtime` and `name_to_handle_at` are denied (Docker allows them:
//!   without `CAP_SYS_TIME` the first two can only read the clock state, and file handles
//!   are only of use with `open_by_handle_at`, the call behind the 2014 "shocker" container
//!   escape, which is denied).
//! * `socket` and `socketpair` refuse `AF_PACKET` (raw link-layer access and a string of
//!   memory-corruption bugs: CVE-2016-8655, CVE-2017-7308, CVE-2020-14386), `AF_VSOCK`
//!   (CVE-2021-26708; also a path to the hypervisor) and every `AF_NETLINK` protocol except
//!   `NETLINK_ROUTE`, which glibc's `getaddrinfo`/`if_nameindex` and `ip` need. Docker only
//!   refuses `AF_VSOCK`.
//! * `ioctl` refuses `TIOCSTI` (push characters into the terminal's input queue: a sandboxed
//!   program sharing the caller's terminal could type commands into the caller's shell once
//!   it exits; CVE-2017-5226 in bubblewrap, CVE-2016-7545 in SELinux's sandbox, CVE-2019-7303
//!   in snapd, whose filter compared the command as 64 bits while the kernel truncates it to
//!   32) and `TIOCLINUX` (the same through the Linux virtual console; CVE-2023-1523 in snapd).
//!   The command is compared as a 32-bit value, as the kernel reads it.
//! * `clone` is allowed only without namespace flags (`CLONE_NEW*`), which also refuses new
//!   user namespaces and with them the kernel code reachable with namespaced capabilities
//!   (CVE-2022-0185 in `fsconfig`, the nf_tables bugs CVE-2022-1015, CVE-2023-32233).
//!   `unshare` and `setns` are denied for the same reason.
//! * `clone3` fails with `ENOSYS` (as in Docker): its flags live in a structure in user
//!   memory that a seccomp filter cannot read, so they cannot be checked; with `ENOSYS`
//!   glibc (2.34+) and others fall back to `clone`, whose flags are checked. A second filter
//!   does this, see [Filters](#filters).
//! * `personality` is allowed only with the values Docker allows: `PER_LINUX` (0),
//!   `PER_LINUX32` (0x8, `linux32`), `UNAME26` (0x20000), `PER_LINUX32 | UNAME26` (0x20008)
//!   and the query `0xffffffff`. Anything else (`ADDR_NO_RANDOMIZE`, `READ_IMPLIES_EXEC`,
//!   `MMAP_PAGE_ZERO`, ...) would weaken the address-space hardening of what the payload
//!   runs next, so `setarch -R` fails inside the sandbox.
//! * Not allowed either, as in Docker without capabilities: `bpf`, `perf_event_open`
//!   (CVE-2013-2094, CVE-2021-3490 and many verifier bugs), `userfaultfd` (used to win the
//!   races of other kernel bugs at will), `keyctl`/`add_key`/`request_key` (CVE-2016-0728;
//!   keyrings are not namespaced), mounting (`mount`, `umount2`, `pivot_root`, `chroot`,
//!   the new mount API), `kexec_*`, module loading, `acct`, `swapon`/`swapoff`, `reboot`,
//!   clock setting, `syslog`, `quotactl`, file handles (`open_by_handle_at`), `iopl`/`ioperm`,
//!   `kcmp`, `pidfd_getfd`, `fanotify_init` and the NUMA memory policy calls.
//!
//! A few system calls newer than the Docker profile this list follows are allowed: libcs
//! and runtimes probe new calls and fall back to older ones only on `ENOSYS`, not on
//! `EPERM`, and these reach no more than calls already allowed: `fchmodat2` (glibc 2.39's
//! `fchmodat(AT_SYMLINK_NOFOLLOW)`), `cachestat` (what `mincore` tells), `map_shadow_stack`
//! (x86 CET shadow stacks), the futex2 calls, `mseal` (it only restricts) and the
//! `*xattrat` calls (the checks of the `*xattr` calls). Newer ones again (`statmount`,
//! `listmount`, the LSM calls, `open_tree_attr`, `file_getattr`, ...) fail with `EPERM`
//! until someone reviews and adds them.
//!
//! # Other ABIs
//!
//! The filter starts by comparing `seccomp_data.arch` with the native architecture
//! (`AUDIT_ARCH_X86_64` or `AUDIT_ARCH_AARCH64`) and returns `SECCOMP_RET_KILL_PROCESS` on a
//! mismatch. So on x86_64 an i386 system call (`int 0x80`, or any system call of a 32-bit
//! binary) kills the whole process with `SIGSYS`, and on aarch64 so does an AArch32 one. This
//! is deliberate: the 32-bit tables number the calls differently and the allowlist is only
//! correct for the native table. x32 system calls share `AUDIT_ARCH_X86_64` but carry bit
//! `0x40000000` in their number; the filter refuses them with `EPERM` before the lookup.
//!
//! # The program
//!
//! [`compile_default`] builds one classic-BPF program with the small generator in `bpf`:
//! `clone3` answers `ENOSYS`, the argument-checked calls run their check, and every other
//! number is looked up by binary search in the allowlist's ranges (about 150 instructions in
//! all; a linear chain would be ten times longer, and the kernel validates and compiles the
//! program at every sandbox start). It is built in the parent, before `fork`, so that
//! [`install`], which runs in the forked child, does not allocate.

// On architectures without a policy the tables are empty and the rule builders unused.
#![cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code, unused_macros))]

mod bpf;

use nix::errno::Errno;

use bpf::{ArgRule, Policy, Special};

/// Failures building the filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The policy could not be turned into a BPF program (a bug in the policy tables).
    #[error("cannot build the seccomp filter: {0}")]
    Compile(String),
    /// The sandbox has no seccomp policy for the architecture it was built for.
    #[error("no seccomp policy for the {0} architecture")]
    UnsupportedArch(&'static str),
}

/// The compiled filter, built in the parent before fork, installed in the child.
#[derive(Clone)]
pub struct SeccompProgram {
    filter: Vec<libc::sock_filter>,
}

impl std::fmt::Debug for SeccompProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeccompProgram").field("instructions", &self.filter.len()).finish()
    }
}

impl SeccompProgram {
    /// Number of BPF instructions.
    pub fn instruction_count(&self) -> usize {
        self.filter.len()
    }
}

// ---------------------------------------------------------------------------------------
// Policy data.
// ---------------------------------------------------------------------------------------

/// One system call of a table: its `libc` constant name (`SYS_read`) and its number on the
/// architecture being built (`libc::c_long` is `i64` on every supported architecture).
type Entry = (&'static str, i64);

/// Builds a table of [`Entry`] from `SYS_*` constant names, looked up in [`sysno`].
macro_rules! syscalls {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), sysno::$name)),*]
    };
}

/// A named group of unconditionally allowed system calls.
struct Group {
    /// What the group is for, shown by [`describe`].
    what: &'static str,
    /// Its system calls.
    calls: &'static [Entry],
}

/// A system call allowed only when its arguments pass [`Conditional::rules`].
struct Conditional {
    /// Name and number.
    call: Entry,
    /// The check of its arguments.
    rule: ArgRule,
    /// When it is allowed, shown by [`describe`].
    when: &'static str,
}

/// System-call numbers: `libc`'s `SYS_*` constants, plus the ones `libc` 0.2 lacks on some
/// target (an explicit constant here shadows the glob import, so a later `libc` that adds
/// them changes nothing). Since Linux 5.1 new system calls have one number on every
/// architecture (424 and up), hence the shared 451-466 below.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[allow(non_upper_case_globals, dead_code)]
mod sysno {
    use libc::c_long;
    pub(super) use libc::*;

    pub(super) const SYS_cachestat: c_long = 451;
    pub(super) const SYS_fchmodat2: c_long = 452;
    pub(super) const SYS_map_shadow_stack: c_long = 453;
    pub(super) const SYS_futex_wake: c_long = 454;
    pub(super) const SYS_futex_wait: c_long = 455;
    pub(super) const SYS_futex_requeue: c_long = 456;
    pub(super) const SYS_setxattrat: c_long = 463;
    pub(super) const SYS_getxattrat: c_long = 464;
    pub(super) const SYS_listxattrat: c_long = 465;
    pub(super) const SYS_removexattrat: c_long = 466;

    // io_pgetevents (Linux 4.18) predates the unified numbering; libc lacks it.
    #[cfg(target_arch = "x86_64")]
    pub(super) const SYS_io_pgetevents: c_long = 333;
    #[cfg(target_arch = "aarch64")]
    pub(super) const SYS_io_pgetevents: c_long = 292;

    // On aarch64 (LP64) these exist with the asm-generic numbers but libc leaves them out.
    #[cfg(target_arch = "aarch64")]
    pub(super) const SYS_renameat: c_long = 38;
    #[cfg(target_arch = "aarch64")]
    pub(super) const SYS_sync_file_range: c_long = 84;
    #[cfg(target_arch = "aarch64")]
    pub(super) const SYS_getrlimit: c_long = 163;
    #[cfg(target_arch = "aarch64")]
    pub(super) const SYS_setrlimit: c_long = 164;
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod tables {
    use super::{sysno, CLONE_RULE, IOCTL_RULE, PERSONALITY_RULE, SOCKET_RULE};
    use super::{Conditional, Group};

    /// `AUDIT_ARCH_*` of the architecture being built.
    #[cfg(target_arch = "x86_64")]
    pub(super) const TARGET: Option<u32> = Some(0xc000_003e);
    /// `AUDIT_ARCH_*` of the architecture being built.
    #[cfg(target_arch = "aarch64")]
    pub(super) const TARGET: Option<u32> = Some(0xc000_00b7);
    /// Whether the x32 ABI exists next to the native one.
    pub(super) const X32: bool = cfg!(target_arch = "x86_64");

    /// `clone3`, refused with `ENOSYS` by the second filter.
    pub(super) const CLONE3: i64 = sysno::SYS_clone3;

    /// Allowed without conditions on every supported architecture (the asm-generic table
    /// that aarch64 uses is, modulo numbering, a subset of x86_64's).
    #[rustfmt::skip]
    pub(super) const GROUPS: &[Group] = &[
        Group {
            what: "file descriptors and i/o",
            calls: syscalls![
                SYS_read, SYS_write, SYS_readv, SYS_writev, SYS_pread64, SYS_pwrite64,
                SYS_preadv, SYS_pwritev, SYS_preadv2, SYS_pwritev2, SYS_lseek, SYS_close,
                SYS_close_range, SYS_dup, SYS_dup3, SYS_fcntl, SYS_flock, SYS_fsync,
                SYS_fdatasync, SYS_sync, SYS_syncfs, SYS_sync_file_range, SYS_fallocate,
                SYS_fadvise64, SYS_readahead, SYS_sendfile, SYS_splice, SYS_tee, SYS_vmsplice,
                SYS_copy_file_range, SYS_pipe2,
            ],
        },
        Group {
            what: "paths and file metadata",
            calls: syscalls![
                SYS_openat, SYS_openat2, SYS_newfstatat, SYS_fstat, SYS_statx, SYS_statfs,
                SYS_fstatfs, SYS_faccessat, SYS_faccessat2, SYS_getcwd, SYS_chdir,
                SYS_fchdir, SYS_getdents64, SYS_readlinkat, SYS_mkdirat, SYS_mknodat,
                SYS_unlinkat, SYS_renameat, SYS_renameat2, SYS_linkat, SYS_symlinkat,
                SYS_truncate, SYS_ftruncate, SYS_fchmod, SYS_fchmodat, SYS_fchmodat2,
                SYS_fchown, SYS_fchownat, SYS_umask, SYS_utimensat, SYS_cachestat,
            ],
        },
        Group {
            what: "extended attributes",
            calls: syscalls![
                SYS_getxattr, SYS_lgetxattr, SYS_fgetxattr, SYS_setxattr, SYS_lsetxattr,
                SYS_fsetxattr, SYS_listxattr, SYS_llistxattr, SYS_flistxattr,
                SYS_removexattr, SYS_lremovexattr, SYS_fremovexattr, SYS_getxattrat,
                SYS_setxattrat, SYS_listxattrat, SYS_removexattrat,
            ],
        },
        Group {
            what: "polling and event notification",
            calls: syscalls![
                SYS_pselect6, SYS_ppoll, SYS_epoll_create1, SYS_epoll_ctl, SYS_epoll_pwait,
                SYS_epoll_pwait2, SYS_eventfd2, SYS_signalfd4, SYS_timerfd_create,
                SYS_timerfd_settime, SYS_timerfd_gettime, SYS_inotify_init1,
                SYS_inotify_add_watch, SYS_inotify_rm_watch, SYS_fanotify_mark,
            ],
        },
        Group {
            what: "asynchronous i/o (the old aio interface, not io_uring)",
            calls: syscalls![
                SYS_io_setup, SYS_io_destroy, SYS_io_submit, SYS_io_cancel, SYS_io_getevents,
                SYS_io_pgetevents,
            ],
        },
        Group {
            what: "memory",
            calls: syscalls![
                SYS_brk, SYS_mmap, SYS_munmap, SYS_mremap, SYS_mprotect, SYS_madvise,
                SYS_mincore, SYS_msync, SYS_mlock, SYS_mlock2, SYS_munlock, SYS_mlockall,
                SYS_munlockall, SYS_remap_file_pages, SYS_memfd_create, SYS_memfd_secret,
                SYS_membarrier, SYS_pkey_alloc, SYS_pkey_free, SYS_pkey_mprotect, SYS_mseal,
                SYS_map_shadow_stack,
            ],
        },
        Group {
            what: "processes and threads",
            calls: syscalls![
                SYS_execve, SYS_execveat, SYS_exit, SYS_exit_group, SYS_wait4, SYS_waitid,
                SYS_getpid, SYS_getppid, SYS_gettid, SYS_getpgid, SYS_setpgid, SYS_getsid,
                SYS_setsid, SYS_set_tid_address, SYS_set_robust_list, SYS_get_robust_list,
                SYS_futex, SYS_futex_waitv, SYS_futex_wake, SYS_futex_wait,
                SYS_futex_requeue, SYS_rseq, SYS_restart_syscall, SYS_getcpu,
                SYS_pidfd_open, SYS_pidfd_send_signal, SYS_process_mrelease, SYS_prctl,
                SYS_getrlimit, SYS_setrlimit, SYS_prlimit64, SYS_getrusage, SYS_times,
                SYS_sysinfo, SYS_uname, SYS_getrandom, SYS_ioprio_get, SYS_ioprio_set,
                SYS_getpriority, SYS_setpriority,
            ],
        },
        Group {
            what: "scheduling",
            calls: syscalls![
                SYS_sched_yield, SYS_sched_getaffinity, SYS_sched_setaffinity,
                SYS_sched_getattr, SYS_sched_setattr, SYS_sched_getparam,
                SYS_sched_setparam, SYS_sched_getscheduler, SYS_sched_setscheduler,
                SYS_sched_get_priority_max, SYS_sched_get_priority_min,
                SYS_sched_rr_get_interval,
            ],
        },
        Group {
            what: "signals",
            calls: syscalls![
                SYS_rt_sigaction, SYS_rt_sigprocmask, SYS_rt_sigreturn, SYS_rt_sigpending,
                SYS_rt_sigsuspend, SYS_rt_sigtimedwait, SYS_rt_sigqueueinfo,
                SYS_rt_tgsigqueueinfo, SYS_sigaltstack, SYS_kill, SYS_tkill, SYS_tgkill,
            ],
        },
        Group {
            what: "clocks and timers (reading, sleeping, per-process timers)",
            calls: syscalls![
                SYS_clock_gettime, SYS_clock_getres, SYS_clock_nanosleep, SYS_gettimeofday,
                SYS_nanosleep, SYS_getitimer, SYS_setitimer, SYS_timer_create,
                SYS_timer_settime, SYS_timer_gettime, SYS_timer_getoverrun,
                SYS_timer_delete,
            ],
        },
        Group {
            what: "credentials (the kernel still checks capabilities in the user namespace)",
            calls: syscalls![
                SYS_getuid, SYS_geteuid, SYS_getgid, SYS_getegid, SYS_getresuid,
                SYS_getresgid, SYS_getgroups, SYS_setuid, SYS_setgid, SYS_setreuid,
                SYS_setregid, SYS_setresuid, SYS_setresgid, SYS_setfsuid, SYS_setfsgid,
                SYS_setgroups, SYS_capget, SYS_capset,
            ],
        },
        Group {
            what: "sockets (socket and socketpair are conditional)",
            calls: syscalls![
                SYS_bind, SYS_connect, SYS_listen, SYS_accept, SYS_accept4, SYS_shutdown,
                SYS_getsockname, SYS_getpeername, SYS_getsockopt, SYS_setsockopt,
                SYS_sendto, SYS_recvfrom, SYS_sendmsg, SYS_recvmsg, SYS_sendmmsg,
                SYS_recvmmsg,
            ],
        },
        Group {
            what: "System V and POSIX ipc (namespaced)",
            calls: syscalls![
                SYS_msgget, SYS_msgsnd, SYS_msgrcv, SYS_msgctl, SYS_semget, SYS_semop,
                SYS_semtimedop, SYS_semctl, SYS_shmget, SYS_shmat, SYS_shmdt, SYS_shmctl,
                SYS_mq_open, SYS_mq_unlink, SYS_mq_timedsend, SYS_mq_timedreceive,
                SYS_mq_notify, SYS_mq_getsetattr,
            ],
        },
        Group {
            what: "self-restriction (can only narrow what the caller may do)",
            calls: syscalls![
                SYS_seccomp, SYS_landlock_create_ruleset, SYS_landlock_add_rule,
                SYS_landlock_restrict_self,
            ],
        },
        #[cfg(target_arch = "x86_64")]
        Group {
            what: "x86_64 legacy calls (superseded by *at and the calls above)",
            calls: syscalls![
                SYS_open, SYS_creat, SYS_stat, SYS_lstat, SYS_access, SYS_readlink,
                SYS_mkdir, SYS_rmdir, SYS_mknod, SYS_unlink, SYS_rename, SYS_link,
                SYS_symlink, SYS_chmod, SYS_chown, SYS_lchown, SYS_utime, SYS_utimes,
                SYS_futimesat, SYS_getdents, SYS_pipe, SYS_dup2, SYS_select, SYS_poll,
                SYS_epoll_create, SYS_epoll_wait, SYS_epoll_ctl_old, SYS_epoll_wait_old,
                SYS_eventfd, SYS_signalfd, SYS_inotify_init, SYS_fork, SYS_vfork,
                SYS_pause, SYS_alarm, SYS_time, SYS_getpgrp,
            ],
        },
        #[cfg(target_arch = "x86_64")]
        Group {
            what: "x86_64 thread-local storage and segments",
            calls: syscalls![
                SYS_arch_prctl, SYS_set_thread_area, SYS_get_thread_area, SYS_modify_ldt,
            ],
        },
    ];

    /// Allowed when their arguments pass the rules.
    pub(super) const CONDITIONAL: &[Conditional] = &[
        Conditional {
            call: ("SYS_clone", sysno::SYS_clone),
            rule: CLONE_RULE,
            when: "without namespace flags (CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, \
                      CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWTIME)",
        },
        Conditional {
            call: ("SYS_socket", sysno::SYS_socket),
            rule: SOCKET_RULE,
            when: "except AF_PACKET, AF_VSOCK, and AF_NETLINK other than NETLINK_ROUTE",
        },
        Conditional {
            call: ("SYS_socketpair", sysno::SYS_socketpair),
            rule: SOCKET_RULE,
            when: "except AF_PACKET, AF_VSOCK, and AF_NETLINK other than NETLINK_ROUTE",
        },
        Conditional {
            call: ("SYS_ioctl", sysno::SYS_ioctl),
            rule: IOCTL_RULE,
            when: "except TIOCSTI and TIOCLINUX (terminal input injection)",
        },
        Conditional {
            call: ("SYS_personality", sysno::SYS_personality),
            rule: PERSONALITY_RULE,
            when: "only PER_LINUX, PER_LINUX32, UNAME26 (alone or together) and the query 0xffffffff",
        },
    ];
}

/// Architectures without a policy: [`compile_default`] reports them as unsupported.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod tables {
    use super::{Conditional, Group};
    pub(super) const TARGET: Option<u32> = None;
    pub(super) const X32: bool = false;
    pub(super) const CLONE3: i64 = -1;
    pub(super) const GROUPS: &[Group] = &[];
    pub(super) const CONDITIONAL: &[Conditional] = &[];
}

/// Denied system calls worth naming in `--dry-run` and `doctor` output, by reason. They
/// are not in the allowlist, so they fail with `EPERM` like every other call not listed;
/// the table only documents the choice (a test checks none of them is allowed). Names,
/// not numbers: several exist only on some architectures.
#[rustfmt::skip]
const DENIED: &[(&str, &[&str])] = &[
    (
        "kernel attack surface with a record of privilege escalations",
        &[
            "io_uring_setup", "io_uring_enter", "io_uring_register", "userfaultfd", "bpf",
            "perf_event_open", "keyctl", "add_key", "request_key",
        ],
    ),
    (
        "inspecting or controlling other processes",
        &[
            "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "kcmp",
            "pidfd_getfd",
        ],
    ),
    (
        "namespaces and mounts",
        &[
            "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "move_mount",
            "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
        ],
    ),
    (
        "system administration",
        &[
            "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
            "create_module", "get_kernel_syms", "query_module", "acct", "swapon", "swapoff",
            "reboot", "syslog", "quotactl", "quotactl_fd", "nfsservctl", "lookup_dcookie",
            "sethostname", "setdomainname", "vhangup", "uselib", "ustat", "sysfs", "_sysctl",
        ],
    ),
    (
        "setting clocks",
        &["settimeofday", "clock_settime", "adjtimex", "clock_adjtime"],
    ),
    (
        "file handles, fanotify and raw hardware access",
        &[
            "name_to_handle_at", "open_by_handle_at", "fanotify_init", "iopl", "ioperm",
            "vm86", "vm86old",
        ],
    ),
    (
        "NUMA memory policy (Docker requires CAP_SYS_NICE)",
        &[
            "mbind", "set_mempolicy", "get_mempolicy", "migrate_pages", "move_pages",
            "set_mempolicy_home_node",
        ],
    ),
];

// ---------------------------------------------------------------------------------------
// Conditional rules. Each returns rules that are OR-ed; a rule is an AND of conditions.
// ---------------------------------------------------------------------------------------

/// `CLONE_NEW*` flags: creating any namespace is refused.
const CLONE_NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWTIME) as u32;

/// Terminal ioctls that inject input (same values on x86_64 and aarch64).
const TIOCSTI: u32 = 0x5412;
/// The Linux virtual-console multiplexer ioctl (selection paste, among others).
const TIOCLINUX: u32 = 0x541C;

/// The `personality` values allowed (Docker's list).
const PERSONALITIES: [u32; 5] = [
    0x0000_0000, // PER_LINUX
    0x0000_0008, // PER_LINUX32
    0x0002_0000, // UNAME26
    0x0002_0008, // UNAME26 | PER_LINUX32
    0xffff_ffff, // query the current persona
];

/// `clone`: the flags (argument 0 on x86_64 and aarch64 alike) carry no namespace flag.
/// The kernel only uses the low 32 bits of the flags, so a 32-bit test is exact.
/// (`CLONE_NEWTIME` overlaps the exit-signal byte of `clone`; no valid signal sets it.)
const CLONE_RULE: ArgRule = ArgRule::NoBits { arg: 0, mask: CLONE_NAMESPACE_FLAGS };

/// `socket` and `socketpair`: any domain but `AF_PACKET`, `AF_VSOCK` and `AF_NETLINK`, or
/// `AF_NETLINK` with protocol `NETLINK_ROUTE`.
const SOCKET_RULE: ArgRule = ArgRule::SocketDomain {
    refused: &[libc::AF_PACKET as u32, libc::AF_VSOCK as u32],
    netlink: libc::AF_NETLINK as u32,
    netlink_protocol: libc::NETLINK_ROUTE as u32,
};

/// `ioctl`: any command but `TIOCSTI` and `TIOCLINUX`, compared as 32 bits like the kernel
/// does (a 64-bit comparison was the snapd bypass, CVE-2019-7303).
const IOCTL_RULE: ArgRule = ArgRule::Except { arg: 1, values: &[TIOCSTI, TIOCLINUX] };

/// `personality`: only the values in [`PERSONALITIES`].
const PERSONALITY_RULE: ArgRule = ArgRule::Only { arg: 0, values: &PERSONALITIES };

// ---------------------------------------------------------------------------------------
// Compiling.
// ---------------------------------------------------------------------------------------

/// The kernel's limit on the length of one classic-BPF program (`BPF_MAXINSNS`).
const BPF_MAXINSNS: usize = 4096;

/// Build the default filter.
pub fn compile_default() -> Result<SeccompProgram, SeccompError> {
    let audit_arch = tables::TARGET.ok_or(SeccompError::UnsupportedArch(std::env::consts::ARCH))?;
    let number = |(name, nr): Entry| {
        u32::try_from(nr).map_err(|_| SeccompError::Compile(format!("{} has no number", display_name(name))))
    };
    let mut allowed = Vec::new();
    for group in tables::GROUPS {
        for &entry in group.calls {
            allowed.push(number(entry)?);
        }
    }
    let mut special = vec![(number(("SYS_clone3", tables::CLONE3))?, Special::Errno(libc::ENOSYS as u32))];
    for cond in tables::CONDITIONAL {
        special.push((number(cond.call)?, Special::Checked(cond.rule)));
    }
    let mut all: Vec<u32> = allowed.iter().copied().chain(special.iter().map(|(nr, _)| *nr)).collect();
    all.sort_unstable();
    if let Some(w) = all.windows(2).find(|w| w[0] == w[1]) {
        return Err(SeccompError::Compile(format!("system call {} is listed twice in the policy", w[0])));
    }
    let policy = Policy {
        audit_arch,
        refuse_x32: tables::X32,
        allowed: &allowed,
        special: &special,
        default_errno: libc::EPERM as u32,
    };
    let filter = bpf::generate(&policy).map_err(SeccompError::Compile)?;
    if filter.len() > BPF_MAXINSNS {
        return Err(SeccompError::Compile(format!(
            "the filter has {} instructions, more than the kernel's {BPF_MAXINSNS}",
            filter.len()
        )));
    }
    Ok(SeccompProgram { filter })
}

/// `SYS_read` -> `read`.
fn display_name(constant: &'static str) -> &'static str {
    constant.strip_prefix("SYS_").unwrap_or(constant)
}

/// Names of the system calls allowed without conditions, in table order.
pub fn allowed_syscall_names() -> Vec<&'static str> {
    tables::GROUPS.iter().flat_map(|g| g.calls.iter().map(|&(name, _)| display_name(name))).collect()
}

/// Names of the system calls allowed only with some arguments.
pub fn conditional_syscall_names() -> Vec<&'static str> {
    tables::CONDITIONAL.iter().map(|c| display_name(c.call.0)).collect()
}

/// Notable denied system calls (every call not allowed is denied; these are the ones the
/// policy refuses on purpose). Some exist only on some architectures.
pub fn denied_syscall_names() -> Vec<&'static str> {
    DENIED.iter().flat_map(|(_, names)| names.iter().copied()).collect()
}

/// A human-readable summary of the policy, one line per item, for `--dry-run` and `doctor`.
pub fn describe() -> Vec<String> {
    let mut lines = Vec::new();
    match tables::TARGET {
        None => {
            lines.push(format!("seccomp: no policy for the {} architecture", std::env::consts::ARCH));
            return lines;
        }
        Some(_) => lines.push(format!(
            "seccomp: allowlist for {} modelled on Docker's default profile; any other \
             system call fails with EPERM",
            std::env::consts::ARCH
        )),
    }
    let total: usize = tables::GROUPS.iter().map(|g| g.calls.len()).sum();
    lines.push(format!(
        "allowed without conditions: {total} system calls; with conditions: {}",
        tables::CONDITIONAL.len()
    ));
    for group in tables::GROUPS {
        let names: Vec<&str> = group.calls.iter().map(|&(n, _)| display_name(n)).collect();
        lines.push(format!("allowed, {}: {}", group.what, names.join(", ")));
    }
    for cond in tables::CONDITIONAL {
        lines.push(format!("allowed, {}: {}", display_name(cond.call.0), cond.when));
    }
    lines.push(
        "clone3: fails with ENOSYS (its flags cannot be inspected), so libc falls back to \
         clone"
            .to_string(),
    );
    for (why, names) in DENIED {
        lines.push(format!("denied, {why}: {}", names.join(", ")));
    }
    lines.push(
        "other ABIs: a 32-bit (i386/arm) system call kills the process with SIGSYS; x32 \
         system calls fail with EPERM"
            .to_string(),
    );
    lines
}

// ---------------------------------------------------------------------------------------
// Installing.
// ---------------------------------------------------------------------------------------

/// Install the filter on the calling thread. The caller has already set `no_new_privs`
/// (otherwise the kernel refuses with `EACCES` unless the caller has `CAP_SYS_ADMIN`).
///
/// Does not allocate: it runs in a forked child.
pub fn install(program: &SeccompProgram) -> Result<(), Errno> {
    let len = u16::try_from(program.filter.len()).map_err(|_| Errno::EINVAL)?;
    let fprog = libc::sock_fprog {
        len,
        // The kernel only reads through this pointer (it copies the program).
        filter: program.filter.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog.filter` points to `fprog.len` initialised instructions owned by
    // `program`, which outlives the call.
    unsafe { set_mode_filter(&fprog) }
}

/// Load one classic-BPF program with `seccomp(SECCOMP_SET_MODE_FILTER, 0, prog)`, or with
/// `prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prog)` on kernels older than 3.17.
///
/// No flags: in particular not `SECCOMP_FILTER_FLAG_SPEC_ALLOW`, so on kernels booted with
/// `spec_store_bypass_disable=seccomp` the sandbox keeps the speculative-store-bypass
/// mitigation.
///
/// # Safety
///
/// `fprog.filter` must point to `fprog.len` readable `sock_filter` instructions.
unsafe fn set_mode_filter(fprog: &libc::sock_fprog) -> Result<(), Errno> {
    let ptr: *const libc::sock_fprog = fprog;
    // SAFETY: the caller guarantees that `fprog` describes a readable program; the kernel
    // copies it and validates every instruction before using it.
    let rc =
        unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0 as libc::c_uint, ptr) };
    if rc == 0 {
        return Ok(());
    }
    let err = Errno::last();
    if err != Errno::ENOSYS {
        return Err(err);
    }
    // SAFETY: same program as above; prctl copies and validates it the same way.
    let rc = unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER as libc::c_ulong, ptr) };
    Errno::result(rc).map(drop)
}

#[cfg(all(test, any(target_arch = "x86_64", target_arch = "aarch64")))]
mod tests;
