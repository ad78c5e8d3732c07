//! Limits: each test provokes one and checks the outcome, the error code and the exit status.

mod common;

use std::process::Command;

use common::{airlock_bin, is_root, run};

#[test]
fn root_memory_bomb_ends_as_memory_limit() {
    assert!(is_root(), "this test needs root (cgroups)");
    let code = "b = []\nwhile True:\n    b.append(bytearray(8 << 20))";
    let r = run(&["--memory", "64M", "--timeout", "20000"], &["python3", "-c", code]);
    assert_eq!(r.outcome(), "memory_limit", "{}", r.json);
    assert_eq!(r.json["status"], "killed");
    assert_eq!(r.code(), "E4001");
    assert_eq!(r.status, 128 + libc::SIGKILL);
}

#[test]
fn root_fork_bomb_ends_as_pids_limit() {
    assert!(is_root(), "this test needs root (cgroups)");
    let r =
        run(&["--max-pids", "32", "--timeout", "3000"], &["/bin/bash", "-c", "f() { f | f & }; f; sleep 10"]);
    assert_eq!(r.outcome(), "pids_limit", "{}", r.json);
    assert_eq!(r.code(), "E4003");
}

#[test]
fn root_cgroup_limits_are_written_and_removed() {
    assert!(is_root(), "this test needs root (cgroups)");
    let marker = format!("{}", 3_000_000 + std::process::id());
    let mut child = Command::new(airlock_bin())
        .args(["run", "--memory", "96M", "--max-pids", "40", "--cpu", "0.5", "--", "sleep", &marker])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let name = format!("run-{}-0", child.id());
    let read = |file: &str| {
        find_dirs("/sys/fs/cgroup", &name)
            .iter()
            .find_map(|d| std::fs::read_to_string(d.join(file)).ok())
            .map(|s| s.trim().to_string())
    };
    // The limits are written before the sandbox starts: wait until the payload runs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !processes_with(&marker) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(processes_with(&marker), "the payload never started");
    // Every hierarchy holds the sandbox (init and payload), none is empty.
    for dir in find_dirs("/sys/fs/cgroup", &name) {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
        assert!(procs.lines().count() >= 2, "{} holds {procs:?}", dir.display());
    }
    if let Some(max) = read("memory.max") {
        assert_eq!(max, (96u64 << 20).to_string());
        assert_eq!(read("pids.max").unwrap(), "40");
        assert_eq!(read("cpu.max").unwrap(), "50000 100000");
    } else {
        assert_eq!(read("memory.limit_in_bytes").unwrap(), (96u64 << 20).to_string());
        assert_eq!(read("pids.max").unwrap(), "40");
        assert_eq!(read("cpu.cfs_quota_us").unwrap(), "50000");
        assert_eq!(read("cpu.cfs_period_us").unwrap(), "100000");
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(128 + libc::SIGTERM));
    let left = find_dirs("/sys/fs/cgroup", &name);
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
}

fn find_dirs(root: &str, name: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![std::path::PathBuf::from(root)];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir() && !t.is_symlink()).unwrap_or(false) {
                if e.file_name() == name {
                    out.push(e.path());
                }
                stack.push(e.path());
            }
        }
    }
    out
}

#[test]
fn busy_loop_ends_as_timeout() {
    let r = run(&["--timeout", "700"], &["python3", "-c", "while True: pass"]);
    assert_eq!(r.outcome(), "timeout", "{}", r.json);
    assert_eq!(r.json["status"], "timeout");
    assert_eq!(r.code(), "E3001");
    assert_eq!(r.json["error"]["details"]["timeout_ms"], 700);
    assert_eq!(r.status, 124);
}

#[test]
fn setsid_double_fork_leaves_nothing_after_timeout() {
    // A daemon that escapes its process group and session must still die with the sandbox.
    let marker = format!("{}", 7_000_000 + std::process::id());
    let script = format!("setsid sh -c 'sleep {marker} & sleep {marker}' & sleep {marker}");
    let r = run(&["--timeout", "500"], &["/bin/sh", "-c", &script]);
    assert_eq!(r.outcome(), "timeout", "{}", r.json);
    let survivors: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&marker) && c.starts_with("sleep"))
        .collect();
    assert!(survivors.is_empty(), "left running: {survivors:?}");
}

#[test]
fn background_processes_die_when_the_payload_exits() {
    let marker = format!("{}", 8_000_000 + std::process::id());
    let r = run(&[], &["/bin/sh", "-c", &format!("setsid sleep {marker} & echo started")]);
    assert_eq!(r.stdout(), "started\n");
    let alive = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .any(|c| String::from_utf8_lossy(&c).contains(&marker));
    assert!(!alive, "a background process outlived its sandbox");
}

#[test]
fn output_beyond_the_limit_is_dropped_and_flagged() {
    let r = run(
        &["--max-output", "1K"],
        &["/bin/sh", "-c", "head -c 100000 /dev/zero | tr '\\0' x; echo err >&2"],
    );
    assert_eq!(r.outcome(), "output_limit", "{}", r.json);
    assert_eq!(r.code(), "E4004");
    assert_eq!(r.stdout().len(), 1024);
    assert_eq!(r.json["metrics"]["stdout_bytes"], 100_000);
    assert_eq!(r.json["metrics"]["output_truncated"], true);
    assert_eq!(r.status, 0, "the payload's own exit status is kept");
}

#[test]
fn cpu_time_limit_kills_a_spinning_process() {
    let r = run(&["--max-cpu-time", "1000", "--timeout", "20000"], &["python3", "-c", "while True: pass"]);
    assert_eq!(r.outcome(), "cpu_time_limit", "{}", r.json);
    assert_eq!(r.code(), "E3003");
    assert_eq!(r.json["error"]["details"]["reason"], "cpu_time_limit");
}

#[test]
fn file_size_limit_stops_a_large_write() {
    let r = run(&["--max-file-size", "1M"], &["dd", "if=/dev/zero", "of=/workspace/big", "bs=1M", "count=4"]);
    assert_eq!(r.outcome(), "file_size_limit", "{}", r.json);
    assert_eq!(r.json["error"]["details"]["signal_name"], "SIGXFSZ");
}

#[test]
fn open_files_limit_applies() {
    let code = "import os\nfds=[]\ntry:\n    while True: fds.append(os.open('/dev/null', os.O_RDONLY))\nexcept OSError as e:\n    print(e.errno, len(fds) < 40)";
    let r = run(&["--max-open-files", "32"], &["python3", "-c", code]);
    assert_eq!(r.stdout().trim(), "24 True", "{}", r.payload_stderr());
}

#[test]
fn stdin_reads_get_eof_at_once() {
    let r = run(&["--timeout", "5000"], &["python3", "-c", "import sys; print(repr(sys.stdin.read()))"]);
    assert_eq!(r.stdout().trim(), "''");
}

#[test]
fn explicit_limit_is_enforced_or_fails_closed() {
    let r = run(&["--memory", "64M"], &["/bin/true"]);
    if is_root() {
        assert_eq!(r.outcome(), "ok", "{}", r.json);
        assert!(r.json["isolation"]["cgroup"].is_string(), "the memory limit needs a cgroup: {}", r.json);
    } else {
        // Rootless without a delegated cgroup: the asked-for limit cannot be applied.
        assert_eq!(r.status, 125, "{}", r.json);
        assert_eq!(r.code(), "E5001");
        assert_eq!(r.json["error"]["details"]["reason"], "cgroup_unavailable");
    }
}

#[test]
fn terminating_airlock_kills_the_sandbox_and_still_reports() {
    let marker = format!("{}", 9_000_000 + std::process::id());
    let child = Command::new(airlock_bin())
        .args(["run", "--", "/bin/sh", "-c", &format!("setsid sleep {marker} & sleep {marker}")])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let cgroup = format!("run-{}-0", child.id());
    // Wait until the payload runs, then stop airlock the way a terminal or a supervisor would.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !processes_with(&marker) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(processes_with(&marker), "the payload never started");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(128 + libc::SIGTERM));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["status"], "killed", "{json}");
    assert_eq!(json["error"]["details"]["signal_name"], "SIGTERM");
    assert!(!processes_with(&marker), "sandbox processes survived airlock");
    assert!(find_dirs("/sys/fs/cgroup", &cgroup).is_empty(), "cgroup {cgroup} left behind");
}

fn processes_with(marker: &str) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .any(|c| {
            String::from_utf8_lossy(&c).starts_with("sleep") && String::from_utf8_lossy(&c).contains(marker)
        })
}

#[test]
fn a_killed_airlock_takes_its_sandbox_with_it() {
    let marker = format!("{}", 9_500_000 + std::process::id());
    let mut child = Command::new(airlock_bin())
        .args(["run", "--", "/bin/sh", "-c", &format!("setsid sleep {marker} & sleep {marker}")])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !processes_with(&marker) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(processes_with(&marker), "the payload never started");
    child.kill().unwrap();
    child.wait().unwrap();
    // The kernel delivers the parent-death signal to the sandbox init, whose exit ends the rest.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while processes_with(&marker) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!processes_with(&marker), "sandbox processes outlived a killed airlock");
}

#[test]
fn built_in_limits_are_enforced_or_reported() {
    let r = run(&[], &["/bin/true"]);
    assert_eq!(r.outcome(), "ok", "{}", r.json);
    if is_root() {
        assert!(r.json["isolation"]["cgroup"].is_string(), "{}", r.json);
        assert!(r.json.get("warnings").is_none(), "{}", r.json);
    } else {
        // No usable cgroup: the run goes ahead and says which built-in limits are not enforced.
        assert!(r.json["isolation"]["cgroup"].is_null(), "{}", r.json);
        let warnings = r.json["warnings"].as_array().expect("warnings");
        assert!(warnings.iter().any(|w| w.as_str().unwrap().contains("memory limit")), "{warnings:?}");
    }
}
