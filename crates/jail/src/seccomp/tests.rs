//! The tests fork a child per case, install the filter in it and check what the kernel
//! answers; they pass as root and as an ordinary user.
use super::*;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use std::ffi::CString;

/// Exit code of a child whose filter could not be installed.
const INSTALL_FAILED: i32 = 250;
/// Exit code of a child whose closure panicked.
const PANICKED: i32 = 251;

/// Fork; in the child set `no_new_privs`, install `program` (if any), run `f` and
/// `_exit` with its result. Returns the child's exit code, or minus the number of the
/// signal that killed it.
fn run_forked(program: Option<&SeccompProgram>, f: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child only makes system calls, runs `f` (which the tests keep to
    // system calls and exec) and leaves with `_exit`, never returning into the test
    // harness.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if let Some(program) = program {
                    // SAFETY: prctl with integer arguments only.
                    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
                    if rc != 0 || install(program).is_err() {
                        return INSTALL_FAILED;
                    }
                }
                f()
            }))
            .unwrap_or(PANICKED);
            // SAFETY: `_exit` ends the child at once, without running the parent's
            // atexit handlers or touching state shared with the parent.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => match waitpid(child, None).expect("waitpid") {
            WaitStatus::Exited(_, code) => code,
            WaitStatus::Signaled(_, signal, _) => -(signal as i32),
            other => panic!("unexpected wait status {other:?}"),
        },
    }
}

/// [`run_forked`] under the default filters.
fn in_child(f: impl FnOnce() -> i32) -> i32 {
    let program = compile_default().expect("compile the default filter");
    run_forked(Some(&program), f)
}

/// 0 if a raw system call returned a non-negative value, else its errno.
fn errno_of(rc: libc::c_long) -> i32 {
    if rc >= 0 {
        0
    } else {
        Errno::last_raw()
    }
}

/// Run the raw system call `nr` with `args` (missing ones 0) under the filter and
/// return 0 or its errno. Only for calls that neither fork nor stay blocked.
fn syscall_errno(nr: libc::c_long, args: [libc::c_ulong; 6]) -> i32 {
    in_child(|| {
        // SAFETY: the tests pass integers, null pointers or pointers to live data, with
        // which the kernel (or the filter before it) fails or acts on the child alone.
        let rc = unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]) };
        errno_of(rc)
    })
}

/// `fork()` by hand: `clone(flags)` without a new stack. Returns 0 if the child ran and
/// exited with 42, else the errno or 1.
fn raw_clone(flags: libc::c_ulong) -> i32 {
    // SAFETY: without CLONE_VM and with a null stack, clone behaves like fork: the
    // child gets a copy of the address space and leaves at once with `_exit`.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) };
    match pid {
        // SAFETY: ends the cloned child.
        0 => unsafe { libc::_exit(42) },
        -1 => Errno::last_raw(),
        pid => {
            let mut status = 0;
            // SAFETY: waits for the child just created, writing into a local.
            let rc = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
            if rc == pid as libc::pid_t && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 42 {
                0
            } else {
                1
            }
        }
    }
}

/// Run `argv` with `execv` under the filter, stdout and stderr to /dev/null unless
/// `AIRLOCK_TEST_VERBOSE` is set. Returns its exit status.
fn exec_in_child(argv: &[&str]) -> i32 {
    let args: Vec<CString> = argv.iter().map(|a| CString::new(*a).unwrap()).collect();
    let mut ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let devnull = CString::new("/dev/null").unwrap();
    let quiet = std::env::var_os("AIRLOCK_TEST_VERBOSE").is_none();
    in_child(|| {
        if quiet {
            // SAFETY: opening /dev/null and duplicating it onto 1 and 2 in the child.
            unsafe {
                let fd = libc::open(devnull.as_ptr(), libc::O_WRONLY);
                libc::dup2(fd, 1);
                libc::dup2(fd, 2);
            }
        }
        // SAFETY: `ptrs` is a null-terminated array of pointers to C strings that live
        // until exec replaces the process.
        unsafe { libc::execv(ptrs[0], ptrs.as_ptr()) };
        127
    })
}

#[test]
fn default_filter_is_compact() {
    let program = compile_default().unwrap();
    // A binary search over ranges: far below the kernel's limit and a linear chain's ~1500.
    assert!(program.instruction_count() < 300, "{} instructions", program.instruction_count());
}

#[test]
fn tables_have_no_duplicates_and_deny_what_they_say() {
    let allowed = allowed_syscall_names();
    let conditional = conditional_syscall_names();
    let mut seen = std::collections::HashSet::new();
    for name in allowed.iter().chain(&conditional) {
        assert!(seen.insert(*name), "{name} listed twice");
    }
    for name in denied_syscall_names() {
        assert!(!seen.contains(name), "{name} is both denied and allowed");
    }
    for name in ["clone3", "io_uring_setup", "ptrace", "unshare", "mount", "bpf"] {
        assert!(!seen.contains(name), "{name} must not be allowed");
    }
    for name in [
        "rseq",
        "membarrier",
        "close_range",
        "faccessat2",
        "epoll_pwait2",
        "statx",
        "getrandom",
        "pidfd_open",
        "pidfd_send_signal",
        "copy_file_range",
        "landlock_create_ruleset",
        "landlock_add_rule",
        "landlock_restrict_self",
        "prlimit64",
        "sched_getaffinity",
        "futex_waitv",
        "set_robust_list",
        "seccomp",
        "fchmodat2",
        "execve",
        "wait4",
    ] {
        assert!(seen.contains(name), "{name} must be allowed");
    }
    // No allowlisted number carries the x32 bit, so x32 calls fall to the default.
    for group in tables::GROUPS {
        for &(name, nr) in group.calls {
            assert!((0..0x4000_0000).contains(&nr), "{name} = {nr:#x}");
        }
    }
}

#[test]
fn describe_mentions_every_part_of_the_policy() {
    let text = describe().join("\n");
    for needle in ["EPERM", "ENOSYS", "TIOCSTI", "AF_PACKET", "io_uring_setup", "SIGSYS"] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert!(describe().iter().all(|l| !l.ends_with('.')));
}

#[test]
fn getpid_works() {
    assert_eq!(syscall_errno(libc::SYS_getpid, [0; 6]), 0);
}

#[test]
fn filters_are_installed() {
    // Count on top of whatever filters the test runner already has (a container's).
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let before = status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp_filters:"))
        .map(|n| n.trim().parse::<usize>().unwrap());
    let mut script = "grep -q '^Seccomp:[[:space:]]*2$' /proc/self/status".to_string();
    if let Some(before) = before {
        let after = before + 1;
        script += &format!(" && grep -q '^Seccomp_filters:[[:space:]]*{after}$' /proc/self/status");
    }
    assert_eq!(exec_in_child(&["/bin/sh", "-c", &script]), 0, "{script}");
}

#[test]
fn unknown_syscall_is_eperm() {
    assert_eq!(syscall_errno(1000, [0; 6]), libc::EPERM);
}

#[test]
fn unshare_is_denied() {
    for flags in [libc::CLONE_NEWUSER, libc::CLONE_NEWNS, libc::CLONE_NEWNET, 0] {
        assert_eq!(
            syscall_errno(libc::SYS_unshare, [flags as libc::c_ulong, 0, 0, 0, 0, 0]),
            libc::EPERM,
            "unshare({flags:#x})"
        );
    }
    assert_eq!(syscall_errno(libc::SYS_setns, [0; 6]), libc::EPERM);
}

#[test]
fn clone_with_namespace_flags_is_denied() {
    let flags = [
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWNS,
        libc::CLONE_NEWCGROUP,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWTIME,
    ];
    for flag in flags {
        let code = in_child(|| raw_clone((flag | libc::SIGCHLD) as libc::c_ulong));
        assert_eq!(code, libc::EPERM, "clone({flag:#x} | SIGCHLD)");
    }
    // Namespace flags hidden among others are still caught.
    let code =
        in_child(|| raw_clone((libc::CLONE_NEWUSER | libc::CLONE_NEWNET | libc::SIGCHLD) as libc::c_ulong));
    assert_eq!(code, libc::EPERM);
}

#[test]
fn plain_fork_works() {
    assert_eq!(in_child(|| raw_clone(libc::SIGCHLD as libc::c_ulong)), 0);
}

#[test]
fn clone3_is_enosys() {
    // A null argument block: if the filter ever let clone3 through, the kernel would
    // answer EFAULT or EINVAL, not fork.
    assert_eq!(syscall_errno(libc::SYS_clone3, [0; 6]), libc::ENOSYS);
    assert_eq!(syscall_errno(libc::SYS_clone3, [0, 88, 0, 0, 0, 0]), libc::ENOSYS);
}

#[test]
fn threads_work_through_the_clone_fallback() {
    extern "C" fn start(_: *mut libc::c_void) -> *mut libc::c_void {
        7 as *mut libc::c_void
    }
    let code = in_child(|| {
        let mut thread: libc::pthread_t = 0;
        // SAFETY: `start` has the signature pthread expects and ignores its argument;
        // `thread` is a local written by pthread_create.
        let rc = unsafe { libc::pthread_create(&mut thread, std::ptr::null(), start, std::ptr::null_mut()) };
        if rc != 0 {
            return rc;
        }
        let mut ret: *mut libc::c_void = std::ptr::null_mut();
        // SAFETY: joins the thread just created, writing its result into a local.
        let rc = unsafe { libc::pthread_join(thread, &mut ret) };
        if rc != 0 {
            return rc;
        }
        if ret as usize == 7 {
            0
        } else {
            1
        }
    });
    assert_eq!(code, 0);
}

#[test]
fn io_uring_is_denied() {
    // Unfiltered, io_uring_setup(1, NULL) fails with EFAULT.
    assert_eq!(syscall_errno(libc::SYS_io_uring_setup, [1, 0, 0, 0, 0, 0]), libc::EPERM);
    assert_eq!(syscall_errno(libc::SYS_io_uring_enter, [0; 6]), libc::EPERM);
    assert_eq!(syscall_errno(libc::SYS_io_uring_register, [0; 6]), libc::EPERM);
}

#[test]
fn bpf_and_perf_are_denied() {
    assert_eq!(syscall_errno(libc::SYS_bpf, [0; 6]), libc::EPERM);
    let perf = [0, 0, u64::MAX, u64::MAX, 0, 0];
    assert_eq!(syscall_errno(libc::SYS_perf_event_open, perf), libc::EPERM);
}

#[test]
fn ptrace_and_process_vm_are_denied() {
    let traceme = [libc::PTRACE_TRACEME as libc::c_ulong, 0, 0, 0, 0, 0];
    assert_eq!(syscall_errno(libc::SYS_ptrace, traceme), libc::EPERM);
    assert_eq!(syscall_errno(libc::SYS_process_vm_readv, [0; 6]), libc::EPERM);
    assert_eq!(syscall_errno(libc::SYS_process_vm_writev, [0; 6]), libc::EPERM);
    assert_eq!(syscall_errno(libc::SYS_kcmp, [0; 6]), libc::EPERM);
    assert_eq!(syscall_errno(libc::SYS_pidfd_getfd, [0; 6]), libc::EPERM);
}

#[test]
fn keyrings_are_denied() {
    // KEYCTL_GET_KEYRING_ID(KEY_SPEC_SESSION_KEYRING) succeeds unfiltered.
    let get_session = [0, (-3i64) as libc::c_ulong, 0, 0, 0, 0];
    assert_eq!(syscall_errno(libc::SYS_keyctl, get_session), libc::EPERM);
    assert_eq!(syscall_errno(libc::SYS_add_key, [0; 6]), libc::EPERM);
    assert_eq!(syscall_errno(libc::SYS_request_key, [0; 6]), libc::EPERM);
}

#[test]
fn mounting_is_denied() {
    for nr in [
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_fsopen,
        libc::SYS_open_tree,
        libc::SYS_move_mount,
        libc::SYS_mount_setattr,
    ] {
        assert_eq!(syscall_errno(nr, [0; 6]), libc::EPERM, "syscall {nr}");
    }
}

#[test]
fn admin_calls_are_denied() {
    for nr in [
        libc::SYS_kexec_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_acct,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_reboot,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_adjtimex,
        libc::SYS_clock_adjtime,
        libc::SYS_syslog,
        libc::SYS_quotactl,
        libc::SYS_name_to_handle_at,
        libc::SYS_open_by_handle_at,
        libc::SYS_fanotify_init,
        libc::SYS_mbind,
        libc::SYS_set_mempolicy,
        libc::SYS_migrate_pages,
        libc::SYS_move_pages,
        libc::SYS_vhangup,
        libc::SYS_sethostname,
    ] {
        assert_eq!(syscall_errno(nr, [0; 6]), libc::EPERM, "syscall {nr}");
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x86_io_port_calls_are_denied() {
    for nr in [libc::SYS_iopl, libc::SYS_ioperm, libc::SYS_uselib, libc::SYS_ustat] {
        assert_eq!(syscall_errno(nr, [0; 6]), libc::EPERM, "syscall {nr}");
    }
}

#[test]
fn userfaultfd_is_denied() {
    // UFFD_USER_MODE_ONLY (1) is allowed to unprivileged users unfiltered.
    assert_eq!(syscall_errno(libc::SYS_userfaultfd, [1, 0, 0, 0, 0, 0]), libc::EPERM);
}

/// socket(domain, type, protocol) under the filter: 0 or errno.
fn socket_errno(domain: libc::c_int, ty: libc::c_int, protocol: libc::c_int) -> i32 {
    let args = [domain as u64, ty as u64, protocol as u64, 0, 0, 0];
    syscall_errno(libc::SYS_socket, args)
}

#[test]
fn dangerous_socket_families_are_denied() {
    let raw = libc::SOCK_RAW;
    let dgram = libc::SOCK_DGRAM;
    let packet_all = (libc::ETH_P_ALL as u16).to_be() as libc::c_int;
    assert_eq!(socket_errno(libc::AF_PACKET, raw, packet_all), libc::EPERM);
    assert_eq!(socket_errno(libc::AF_PACKET, dgram, 0), libc::EPERM);
    assert_eq!(socket_errno(libc::AF_VSOCK, libc::SOCK_STREAM, 0), libc::EPERM);
    assert_eq!(socket_errno(libc::AF_NETLINK, raw, libc::NETLINK_AUDIT), libc::EPERM);
    assert_eq!(socket_errno(libc::AF_NETLINK, raw, libc::NETLINK_NETFILTER), libc::EPERM);
    assert_eq!(socket_errno(libc::AF_NETLINK, raw, libc::NETLINK_SOCK_DIAG), libc::EPERM);
    // High bits of the domain do not sneak past the 32-bit comparison.
    let sneaky = (1u64 << 32) | libc::AF_PACKET as u64;
    let args = [sneaky, raw as u64, 0, 0, 0, 0];
    assert_eq!(syscall_errno(libc::SYS_socket, args), libc::EPERM);
    let pair = [libc::AF_PACKET as u64, raw as u64, 0, 0, 0, 0];
    assert_eq!(syscall_errno(libc::SYS_socketpair, pair), libc::EPERM);
}

#[test]
fn ordinary_sockets_work() {
    assert_eq!(socket_errno(libc::AF_INET, libc::SOCK_STREAM, 0), 0);
    assert_eq!(socket_errno(libc::AF_INET, libc::SOCK_DGRAM, 0), 0);
    assert_eq!(socket_errno(libc::AF_UNIX, libc::SOCK_STREAM, 0), 0);
    let route = socket_errno(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE);
    assert_eq!(route, 0);
    // AF_INET6 may be compiled out of the kernel; it must not be the filter refusing.
    assert_ne!(socket_errno(libc::AF_INET6, libc::SOCK_STREAM, 0), libc::EPERM);
    let code = in_child(|| {
        let mut fds = [0; 2];
        // SAFETY: writes two descriptors into a local array.
        errno_of(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) }
            as libc::c_long)
    });
    assert_eq!(code, 0);
}

#[test]
fn tiocsti_and_tioclinux_are_denied() {
    // fd -1: should the filter ever let these through, the kernel answers EBADF
    // instead of typing into the terminal running the tests.
    let c = b"x".as_ptr() as libc::c_ulong;
    let (sti, linux) = (u64::from(TIOCSTI), u64::from(TIOCLINUX));
    for cmd in [sti, linux, sti | (1 << 32), linux | (0xdead << 32)] {
        let args = [u64::MAX, cmd, c, 0, 0, 0];
        assert_eq!(syscall_errno(libc::SYS_ioctl, args), libc::EPERM, "{cmd:#x}");
    }
}

#[test]
fn other_ioctls_work() {
    let code = in_child(|| {
        let mut fds = [0; 2];
        // SAFETY: writes two descriptors into a local array.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return 100;
        }
        let mut n: libc::c_int = -1;
        // SAFETY: FIONREAD writes an int into `n`.
        let rc = unsafe { libc::ioctl(fds[0], libc::FIONREAD, &mut n) };
        if rc == 0 && n == 0 {
            0
        } else {
            Errno::last_raw()
        }
    });
    assert_eq!(code, 0);
}

#[test]
fn personality_is_limited() {
    let personality = |p: u64| syscall_errno(libc::SYS_personality, [p, 0, 0, 0, 0, 0]);
    assert_eq!(personality(0xffff_ffff), 0);
    assert_eq!(personality(0), 0);
    assert_eq!(personality(0x0040_0000), libc::EPERM); // READ_IMPLIES_EXEC
    assert_eq!(personality(0x0004_0000), libc::EPERM); // ADDR_NO_RANDOMIZE
}

#[test]
fn self_restriction_is_allowed() {
    // landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) returns the ABI
    // version, or EOPNOTSUPP where landlock is off; never the filter's EPERM.
    let landlock = syscall_errno(libc::SYS_landlock_create_ruleset, [0, 0, 1, 0, 0, 0]);
    assert!(landlock == 0 || landlock == libc::EOPNOTSUPP, "{landlock}");
    // SECCOMP_GET_ACTION_AVAIL for ALLOW.
    let code = in_child(|| {
        let action: u32 = libc::SECCOMP_RET_ALLOW;
        // SAFETY: the kernel reads a u32 from `action`.
        errno_of(unsafe { libc::syscall(libc::SYS_seccomp, 2, 0, &action as *const u32) })
    });
    assert_eq!(code, 0);
    assert_eq!(syscall_errno(libc::SYS_getrandom, [0, 0, 0, 0, 0, 0]), 0);
    assert_eq!(syscall_errno(libc::SYS_prlimit64, [0, 7, 0, 0, 0, 0]), 0);
}

#[test]
fn newer_calls_are_allowed() {
    // Bad arguments (fd -1, null pointers, zero lengths): the kernel fails them with
    // EBADF/EFAULT/EINVAL, or ENOSYS where it is too old; only the filter says EPERM.
    let bad_fd = u64::MAX;
    for nr in [
        sysno::SYS_fchmodat2,
        sysno::SYS_cachestat,
        sysno::SYS_futex_wake,
        sysno::SYS_futex_wait,
        sysno::SYS_mseal,
        sysno::SYS_getxattrat,
        sysno::SYS_setxattrat,
        sysno::SYS_listxattrat,
        sysno::SYS_removexattrat,
        sysno::SYS_io_pgetevents,
        sysno::SYS_renameat,
        sysno::SYS_sync_file_range,
        sysno::SYS_getrlimit,
        sysno::SYS_close_range,
        sysno::SYS_epoll_pwait2,
        sysno::SYS_faccessat2,
        sysno::SYS_futex_waitv,
        sysno::SYS_rseq,
        sysno::SYS_membarrier,
    ] {
        let err = syscall_errno(nr, [bad_fd, 0, 0, 0, 0, 0]);
        assert_ne!(err, libc::EPERM, "syscall {nr}");
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x32_syscalls_are_denied() {
    const X32: libc::c_long = 0x4000_0000;
    assert_eq!(syscall_errno(libc::SYS_getpid | X32, [0; 6]), libc::EPERM);
    assert_eq!(syscall_errno(libc::SYS_unshare | X32, [0; 6]), libc::EPERM);
}

/// The i386 `getpid` through `int 0x80`.
#[cfg(target_arch = "x86_64")]
fn int80_getpid() -> i32 {
    let ret: i32;
    // SAFETY: i386 system call 20 (getpid) takes no arguments; from 64-bit code the
    // kernel returns in eax and zeroes r8-r11, which are declared clobbered.
    unsafe {
        std::arch::asm!(
            "int 0x80",
            inlateout("eax") 20 => ret,
            lateout("r8") _, lateout("r9") _, lateout("r10") _, lateout("r11") _,
        );
    }
    ret
}

#[cfg(target_arch = "x86_64")]
#[test]
fn i386_syscalls_kill_the_process() {
    let check = || {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        i32::from(int80_getpid() != pid)
    };
    let unfiltered = run_forked(None, check);
    let filtered = in_child(check);
    if unfiltered == 0 {
        assert_eq!(filtered, -libc::SIGSYS);
    } else {
        // A kernel without ia32 emulation refuses int 0x80 by itself; the call must still fail.
        assert_ne!(filtered, 0, "int 0x80 getpid succeeded under the filter");
    }
}

#[test]
fn sh_and_coreutils_work() {
    let script = r#"set -e
            d=$(mktemp -d)
            printf 'b\na\n' > "$d/f"
            [ "$(sort "$d/f" | head -n 1)" = a ]
            cp "$d/f" "$d/g"; mv "$d/g" "$d/h"; ln -s h "$d/l"; chmod 600 "$d/h"
            ls -la "$d" >/dev/null; stat "$d/l" >/dev/null; touch "$d/h"
            [ "$(cat "$d/l" | wc -l)" -eq 2 ]
            sleep 0.01 & wait
            echo hi | tr a-z A-Z | grep -q HI
            id >/dev/null; uname -a >/dev/null; date >/dev/null; df / >/dev/null
            rm -rf "$d"
        "#;
    assert_eq!(exec_in_child(&["/bin/sh", "-c", script]), 0);
    if std::path::Path::new("/bin/bash").exists() {
        let script = "set -e; x=$(cat <(echo ok)); [ \"$x\" = ok ]; \
                          coproc cat; echo hi >&${COPROC[1]}; read -r y <&${COPROC[0]}; \
                          [ \"$y\" = hi ]";
        assert_eq!(exec_in_child(&["/bin/bash", "-c", script]), 0);
    }
}

/// The first of `candidates` that exists.
fn find(candidates: &[&'static str]) -> Option<&'static str> {
    candidates.iter().copied().find(|p| std::path::Path::new(p).exists())
}

#[test]
fn python_works() {
    let python = find(&["/usr/bin/python3", "/usr/local/bin/python3"])
        .expect("python3 must be installed (scripts/test.sh installs it)");
    let script = r#"
import asyncio, os, socket, subprocess, tempfile, threading, multiprocessing
subprocess.run(["true"], check=True)
assert subprocess.check_output(["echo", "hi"]) == b"hi\n"
t = threading.Thread(target=lambda: None); t.start(); t.join()
with tempfile.TemporaryDirectory() as d:
    p = os.path.join(d, "f")
    open(p, "w").write("x")
    os.chmod(p, 0o600); os.rename(p, p + "2"); os.listdir(d)
socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
a, b = socket.socketpair(); a.send(b"x"); assert b.recv(1) == b"x"
async def main():
    await asyncio.sleep(0)
    proc = await asyncio.create_subprocess_exec("true")
    await proc.wait()
asyncio.run(main())
with multiprocessing.Pool(2) as pool:
    assert pool.map(abs, [-1, -2]) == [1, 2]
os.urandom(8)
"#;
    assert_eq!(exec_in_child(&[python, "-c", script]), 0);
}

#[test]
fn node_works() {
    let node = find(&["/usr/bin/node", "/usr/local/bin/node"])
        .expect("node must be installed (scripts/test.sh installs it)");
    let script = r#"
const fs = require('fs'), os = require('os'), path = require('path');
const cp = require('child_process'), { Worker } = require('worker_threads');
cp.execSync('true');
const d = fs.mkdtempSync(path.join(os.tmpdir(), 'airlock-'));
fs.writeFileSync(path.join(d, 'f'), 'x');
(async () => {
  const s = await fs.promises.readFile(path.join(d, 'f'), 'utf8');
  if (s !== 'x') process.exit(3);
  await new Promise((ok, err) => {
    const w = new Worker('require("worker_threads").parentPort.postMessage(1)', { eval: true });
    w.on('message', ok); w.on('error', err);
  });
  await new Promise((ok) => cp.exec('echo hi', ok));
  fs.rmSync(d, { recursive: true });
  require('crypto').randomBytes(8);
})().catch((e) => { console.error(e); process.exit(2); });
"#;
    assert_eq!(exec_in_child(&[node, "-e", script]), 0);
}
