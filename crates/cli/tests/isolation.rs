//! Attack tests: each one tries to break a protection from inside a real sandbox.

mod common;

use std::io::ErrorKind;
use std::net::TcpListener;

use common::{is_root, py, run, sh};

#[test]
fn cannot_read_shadow_host_home_or_host_tmp() {
    let secret = std::env::temp_dir().join(format!("airlock-secret-{}", std::process::id()));
    std::fs::write(&secret, "top secret").unwrap();
    let script =
        format!("cat /etc/shadow; cat {}; ls /root /home; echo; grep -c . /etc/passwd", secret.display());
    let r = sh(&script);
    std::fs::remove_file(&secret).unwrap();
    assert!(!r.stdout().contains("top secret"), "{}", r.stdout());
    assert!(r.payload_stderr().contains("/etc/shadow: No such file"), "{}", r.payload_stderr());
    assert!(r.payload_stderr().contains("/root") && r.payload_stderr().contains("/home"));
    // The generated passwd names root, the sandbox user and nobody: nothing of the host.
    assert_eq!(r.stdout().trim(), "3", "{}", r.stdout());
}

#[test]
fn sees_only_its_own_processes() {
    let r = sh("ls /proc | grep -E '^[0-9]+$' | wc -l; cat /proc/1/status | grep PPid");
    let lines: Vec<&str> = r.stdout().lines().collect();
    let count: u32 = lines[0].trim().parse().unwrap();
    // init, sh, ls, grep, wc: never the host's hundreds.
    assert!(count <= 6, "saw {count} processes");
    assert_eq!(lines[1].split_whitespace().nth(1), Some("0"), "pid 1 must be the sandbox init");
}

#[test]
fn has_only_loopback_and_cannot_reach_host_loopback() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let code = format!(
        "import socket\nprint(socket.if_nameindex())\ns=socket.socket()\ns.settimeout(2)\n\
         try:\n  s.connect(('127.0.0.1',{port}))\n  print('connected')\nexcept OSError as e:\n  print('refused', e.errno)"
    );
    let r = py(&code);
    assert_eq!(r.stdout().lines().next(), Some("[(1, 'lo')]"), "{}", r.stdout());
    assert!(r.stdout().contains("refused 111"), "{}{}", r.stdout(), r.payload_stderr());
    assert_eq!(listener.accept().map(|_| ()).unwrap_err().kind(), ErrorKind::WouldBlock);
}

#[test]
fn network_flag_shares_the_host_network() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let code = format!(
        "import socket\ns=socket.create_connection(('127.0.0.1',{port}),timeout=5)\nprint('connected')"
    );
    let r = run(&["--network"], &["python3", "-c", &code]);
    assert_eq!(r.stdout().trim(), "connected", "{}", r.payload_stderr());
    assert!(listener.accept().is_ok());
}

#[test]
fn no_new_privs_and_empty_capability_sets() {
    let r = sh("grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status");
    let status = r.stdout();
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(status.contains(&format!("{cap}:\t0000000000000000")), "{cap} not empty:\n{status}");
    }
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(status.contains("Seccomp:\t2"), "{status}");
}

/// Each line: name, syscall number, args, expected errno.
#[cfg(target_arch = "x86_64")]
const DENIED: &[(&str, i64, &[i64], i32)] = &[
    ("unshare(CLONE_NEWUSER)", 272, &[0x1000_0000], libc::EPERM),
    ("unshare(CLONE_NEWNS)", 272, &[0x0002_0000], libc::EPERM),
    ("setns", 308, &[0, 0], libc::EPERM),
    ("clone(CLONE_NEWUSER)", 56, &[0x1000_0000 | libc::SIGCHLD as i64, 0, 0, 0, 0], libc::EPERM),
    ("clone3", 435, &[0, 0], libc::ENOSYS),
    ("io_uring_setup", 425, &[1, 0], libc::EPERM),
    ("userfaultfd", 323, &[0], libc::EPERM),
    ("bpf", 321, &[0, 0, 0], libc::EPERM),
    ("perf_event_open", 298, &[0, 0, -1, -1, 0], libc::EPERM),
    ("keyctl", 250, &[0, 0], libc::EPERM),
    ("add_key", 248, &[0, 0, 0, 0, 0], libc::EPERM),
    ("request_key", 249, &[0, 0, 0, 0], libc::EPERM),
    ("ptrace(TRACEME)", 101, &[0, 0, 0, 0], libc::EPERM),
    ("mount", 165, &[0, 0, 0, 0, 0], libc::EPERM),
    ("umount2", 166, &[0, 0], libc::EPERM),
    ("pivot_root", 155, &[0, 0], libc::EPERM),
    ("chroot", 161, &[0], libc::EPERM),
    ("kexec_load", 246, &[0, 0, 0, 0], libc::EPERM),
    ("init_module", 175, &[0, 0, 0], libc::EPERM),
    ("process_vm_readv", 310, &[1, 0, 0, 0, 0, 0], libc::EPERM),
    ("open_by_handle_at", 304, &[0, 0, 0], libc::EPERM),
    ("socket(AF_PACKET)", 41, &[17, 3, 0], libc::EPERM),
    ("socket(AF_VSOCK)", 41, &[40, 1, 0], libc::EPERM),
    ("ioctl(TIOCSTI)", 16, &[0, 0x5412, 0], libc::EPERM),
    ("ioctl(TIOCLINUX)", 16, &[0, 0x541C, 0], libc::EPERM),
];

#[cfg(target_arch = "x86_64")]
#[test]
fn denied_syscalls_fail_with_their_errno() {
    let mut code = String::from(
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.syscall.restype = ctypes.c_long\n\
         def sc(nr, *a):\n    ctypes.set_errno(0)\n    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(x) for x in a])\n    return r, ctypes.get_errno()\n",
    );
    for (name, nr, args, _) in DENIED {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let sep = if args.is_empty() { "" } else { ", " };
        code.push_str(&format!("print({name:?}, *sc({nr}{sep}{}))\n", args.join(", ")));
    }
    let r = py(&code);
    assert_eq!(r.outcome(), "ok", "{}", r.payload_stderr());
    let lines: Vec<&str> = r.stdout().lines().collect();
    assert_eq!(lines.len(), DENIED.len(), "{}", r.stdout());
    for ((name, _, _, errno), line) in DENIED.iter().zip(lines) {
        assert_eq!(line, format!("{name} -1 {errno}"), "{name} was not denied as expected");
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn allowed_syscalls_still_work() {
    // fork via clone without namespace flags, an inet socket, getpid: the filter is not a wall.
    let r = py("import os, socket\nsocket.socket(socket.AF_INET, socket.SOCK_STREAM)\n\
                pid = os.fork()\nif pid == 0:\n    os._exit(3)\nprint(os.waitpid(pid, 0)[1] >> 8)");
    assert_eq!(r.stdout().trim(), "3", "{}", r.payload_stderr());
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x32_and_i386_system_calls_are_refused() {
    // x32: getpid with the x32 bit. i386: getpid through int 0x80 from an executable page.
    let code = "import ctypes, mmap\nlibc = ctypes.CDLL(None, use_errno=True)\n\
                print('x32', libc.syscall(ctypes.c_long(39 | 0x40000000)), ctypes.get_errno(), flush=True)\n\
                m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n\
                m.write(bytes([0xb8, 0x14, 0, 0, 0, 0xcd, 0x80, 0xc3]))\n\
                f = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))\n\
                print('i386', f(), flush=True)";
    let r = py(code);
    let out = r.stdout();
    assert!(out.lines().next().is_some_and(|l| l.starts_with("x32 -1 ")), "{out}");
    // The i386 call must not succeed: either the process is killed, or it returns an error.
    match out.lines().nth(1) {
        None => assert_eq!(r.outcome(), "signaled", "{}", r.json),
        Some(line) => {
            let ret: i64 = line.trim_start_matches("i386 ").parse().unwrap();
            assert!(ret < 0, "int 0x80 getpid succeeded: {line}");
        }
    }
}

#[test]
fn cannot_create_a_nested_user_namespace() {
    let r = sh("unshare -U true && echo nested; unshare -Ur true && echo nested-root; echo done");
    assert_eq!(r.stdout().trim(), "done", "{}", r.payload_stderr());
    assert!(r.payload_stderr().contains("unshare failed"), "{}", r.payload_stderr());
}

#[test]
fn cannot_write_outside_workspace_and_tmp() {
    let r = sh("for p in /x /etc/x /usr/x /bin/x /lib/x /dev/x /proc/x /proc/sys/x /etc/passwd; do \
                (echo 1 > $p) 2>/dev/null && echo wrote $p; done; \
                echo ok > /workspace/f && echo ok > /tmp/f && echo ok > /dev/shm/f && cat /workspace/f /tmp/f /dev/shm/f");
    assert_eq!(r.stdout(), "ok\nok\nok\n", "{}", r.payload_stderr());
}

#[test]
fn kernel_interfaces_are_masked() {
    // kcore and sysrq-trigger are covered with /dev/null where the kernel has them.
    let r = sh("ls /proc/sys | wc -l; cat /proc/kcore 2>/dev/null | wc -c; test -e /sys && echo has-sys; \
                (echo b > /proc/sysrq-trigger) 2>/dev/null; cat /proc/sysrq-trigger 2>/dev/null | wc -c; echo done");
    assert_eq!(r.stdout(), "0\n0\n0\ndone\n", "{}", r.payload_stderr());
}

#[test]
fn every_masked_proc_entry_is_empty() {
    // The masked directories share one empty tmpfs: each one this kernel has must be covered,
    // not only the first; the masked files read as /dev/null.
    let dirs = ["sys", "acpi", "scsi", "firmware", "asound", "bus", "irq"];
    let files = ["kcore", "timer_list", "keys", "sched_debug", "kallsyms"];
    let script = format!(
        "for d in {}; do [ -d /proc/$d ] && echo \"$d $(ls -A /proc/$d | wc -l)\"; done; \
         for f in {}; do [ -e /proc/$f ] && echo \"$f $(cat /proc/$f 2>/dev/null | wc -c)\"; done; echo done",
        dirs.join(" "),
        files.join(" ")
    );
    let r = sh(&script);
    let host: Vec<String> = dirs
        .iter()
        .chain(files.iter())
        .filter(|name| std::path::Path::new("/proc").join(name).exists())
        .map(|name| format!("{name} 0"))
        .collect();
    assert!(host.len() >= 3, "this kernel has too few of the masked entries to test: {host:?}");
    assert_eq!(r.stdout(), format!("{}\ndone\n", host.join("\n")), "{}", r.payload_stderr());
}

#[test]
fn python_node_and_bash_run_inside() {
    let r = sh("python3 -c 'print(6*7)' && node -e 'console.log(6*7)' && bash -c 'echo $((6*7))'");
    assert_eq!(r.stdout(), "42\n42\n42\n", "{}", r.payload_stderr());
}

/// The loader's cache and the TLS bundle are the host's, byte for byte, where the host has them
/// (the loader's cache always): the sandbox's `/etc` keeps what programs read at run time.
#[test]
fn the_loader_cache_and_the_ca_bundle_are_the_hosts() {
    let script = "cksum /etc/ld.so.cache /etc/ssl/certs/ca-certificates.crt 2>&1; true";
    let host = std::process::Command::new("sh").args(["-c", script]).output().expect("run cksum on the host");
    let host = String::from_utf8(host.stdout).unwrap();
    assert!(host.lines().next().is_some_and(|l| l.ends_with(" /etc/ld.so.cache")), "host: {host}");
    let r = sh(script);
    assert_eq!(r.stdout(), host, "{}", r.payload_stderr());
}

#[test]
fn runs_as_the_sandbox_user_with_generated_identity() {
    let r = sh("id; hostname; cat /proc/self/uid_map");
    let out = r.stdout();
    assert!(out.starts_with("uid=1000(sandbox) gid=1000(sandbox) groups=1000(sandbox)\nairlock\n"), "{out}");
    let map: Vec<u64> = out.lines().nth(2).unwrap().split_whitespace().map(|v| v.parse().unwrap()).collect();
    assert_eq!(map[0], 1000);
    assert_eq!(map[2], 1);
    assert_eq!(map[1], r.json["isolation"]["host_uid"].as_u64().unwrap());
    if is_root() {
        assert!(map[1] >= 0x4000_0000, "root must map to an unprivileged host uid, got {}", map[1]);
    } else {
        assert_eq!(map[1], u64::from(nix::unistd::geteuid().as_raw()), "rootless maps to the caller");
    }
}

#[test]
fn root_sandboxes_get_distinct_host_uids() {
    assert!(is_root(), "this test needs root");
    let a = sh("sleep 0.2 && cat /proc/self/uid_map");
    let b = sh("cat /proc/self/uid_map");
    assert_ne!(a.json["isolation"]["host_uid"], b.json["isolation"]["host_uid"]);
    assert_ne!(a.json["isolation"]["host_uid"].as_u64(), Some(0));
}

#[test]
fn root_host_groups_do_not_leak_into_the_sandbox() {
    assert!(is_root(), "this test needs root");
    let r = sh("grep Groups /proc/self/status");
    assert_eq!(r.stdout().trim(), "Groups:", "{}", r.stdout());
}

#[test]
fn the_sandbox_init_cannot_be_inspected_or_hijacked() {
    // init runs as the same uid as the payload but is not dumpable: its memory and
    // environment stay closed, so the payload cannot rewrite a process without seccomp.
    let r = sh("cat /proc/1/environ >/dev/null 2>&1 || echo environ-denied; \
                (echo x > /proc/1/mem) 2>/dev/null || echo mem-denied; kill -9 1; echo alive");
    assert_eq!(r.stdout(), "environ-denied\nmem-denied\nalive\n", "{}", r.payload_stderr());
}

#[test]
fn descriptors_the_caller_leaks_do_not_reach_the_payload() {
    // The shell opens a host file on fd 7 without close-on-exec and execs airlock with it; the
    // payload must see only its own stdio (and the directory `ls` opens to list them).
    let secret = std::env::temp_dir().join(format!("airlock-leak-{}", std::process::id()));
    std::fs::write(&secret, "host file").unwrap();
    let script = format!(
        "exec 7<'{}'; exec '{}' run -- /bin/sh -c 'ls /proc/self/fd; cat <&7'",
        secret.display(),
        common::airlock_bin().display()
    );
    let out = std::process::Command::new("/bin/sh").args(["-c", &script]).output().unwrap();
    std::fs::remove_file(&secret).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["stdout"], "0\n1\n2\n3\n", "{json}");
    assert!(json["stderr"].as_str().unwrap().contains("7"), "reading fd 7 must fail: {json}");
}
