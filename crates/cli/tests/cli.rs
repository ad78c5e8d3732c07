//! The `airlock run` front door: flags, result document, exit statuses, configuration errors.

mod common;

use std::process::Command;

use common::{airlock_bin, run, run_with_stdin, sh, spawn_output};

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("airlock-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn result_document_has_the_capsule_run_fields() {
    let r = run(&["--execution-id", "job-42"], &["/bin/echo", "hello"]);
    let j = &r.json;
    assert_eq!(j["execution_id"], "job-42");
    assert_eq!(j["status"], "success");
    assert_eq!(j["exit_code"], 0);
    assert_eq!(j["stdout"], "hello\n");
    assert_eq!(j["stderr"], "");
    for key in [
        "wall_time_ms",
        "cpu_time_ms",
        "user_time_ms",
        "kernel_time_ms",
        "max_memory_bytes",
        "io_bytes_read",
        "io_bytes_written",
    ] {
        assert!(j["metrics"][key].is_u64(), "metrics.{key} missing: {j}");
    }
    assert!(j["timestamps"]["started"].as_str().unwrap().ends_with('Z'));
    assert!(j["timestamps"]["completed"].is_string());
    assert!(j.get("error").is_none());
    assert_eq!(r.status, 0);
}

#[test]
fn exit_status_is_the_payloads_own() {
    let r = sh("exit 7");
    assert_eq!(
        (r.status, r.json["exit_code"].as_i64(), r.json["status"].as_str()),
        (7, Some(7), Some("success"))
    );
}

#[test]
fn killed_by_signal_exits_128_plus_n() {
    let r = sh("kill -TERM $$");
    assert_eq!(r.status, 128 + libc::SIGTERM);
    assert_eq!(r.json["status"], "killed");
    assert_eq!(r.code(), "E3003");
    assert_eq!(r.json["error"]["details"]["signal_name"], "SIGTERM");
}

#[test]
fn missing_command_is_e2002_with_a_hint() {
    let r = run(&[], &["no-such-program-anywhere"]);
    assert_eq!(r.code(), "E2002");
    assert_eq!(r.json["status"], "error");
    assert!(r.json["error"]["message"].as_str().unwrap().contains("no-such-program-anywhere"));
    assert!(r.json["error"]["details"]["hint"].is_string());
    assert_eq!(r.status, 127);
}

#[test]
fn env_workdir_and_readonly_binds() {
    let dir = temp_dir("ro");
    std::fs::write(dir.join("data.txt"), "from host\n").unwrap();
    let d = dir.to_str().unwrap();
    let script =
        format!("echo $GREETING; pwd; cat {d}/data.txt; (echo x > {d}/new) 2>/dev/null || echo read-only");
    let r = run(&["-e", "GREETING=hi", "-w", "/tmp", "--readonly", d], &["/bin/sh", "-c", &script]);
    assert_eq!(r.stdout(), "hi\n/tmp\nfrom host\nread-only\n", "{}", r.payload_stderr());
    assert!(!dir.join("new").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bind_rw_reaches_the_host_directory() {
    let dir = temp_dir("rw");
    // As root the sandbox user is an unprivileged host uid: the directory must let it write.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let bind = format!("{}:/out:rw", dir.display());
    let r = run(&["--bind", &bind], &["/bin/sh", "-c", "echo result > /out/r.txt"]);
    assert_eq!(r.outcome(), "ok", "{}", r.json);
    assert_eq!(std::fs::read_to_string(dir.join("r.txt")).unwrap(), "result\n");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn no_host_descriptor_reaches_the_payload() {
    // Bind sources are held open while the root is built; none may survive into the sandbox,
    // where an O_PATH descriptor of a host directory would lead out of it.
    let (ro, rw) = (temp_dir("fds-ro"), temp_dir("fds-rw"));
    let flags = ["--readonly", ro.to_str().unwrap(), "--writable", rw.to_str().unwrap()];
    let r = run(&flags, &["/bin/sh", "-c", "ls /proc/self/fd"]);
    assert_eq!(r.stdout(), "0\n1\n2\n3\n", "{}", r.json);
    std::fs::remove_dir_all(&ro).unwrap();
    std::fs::remove_dir_all(&rw).unwrap();
}

#[test]
fn invalid_bind_is_rejected_with_e1003() {
    let r = run(&["--bind", "relative/path:/x"], &["/bin/true"]);
    assert_eq!(r.code(), "E1003", "{}", r.json);
    assert_eq!(r.status, 125);
}

#[test]
fn out_of_range_flag_names_the_allowed_range() {
    let r = run(&["--memory", "1K"], &["/bin/true"]);
    assert_eq!(r.code(), "E1003");
    let msg = r.json["error"]["message"].as_str().unwrap();
    assert!(msg.contains("--memory") && msg.contains("4MiB"), "{msg}");
}

#[test]
fn config_syntax_error_reports_file_line_and_column() {
    let dir = temp_dir("syntax");
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[defaults]\ntimeout_ms = 1000\nmemory = = 3\n").unwrap();
    let r = run(&["-c", path.to_str().unwrap()], &["/bin/true"]);
    assert_eq!(r.code(), "E1001");
    let msg = r.json["error"]["message"].as_str().unwrap();
    assert!(msg.contains(path.to_str().unwrap()) && msg.contains("line 3"), "{msg}");
    assert!(msg.contains("column"), "{msg}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_profile_is_e1004_and_profiles_apply() {
    let dir = temp_dir("profile");
    let path = dir.join("c.toml");
    std::fs::write(
        &path,
        "[profiles.quick]\ntimeout_ms = 300\n[profiles.quick.environment]\nMODE = \"quick\"\n",
    )
    .unwrap();
    let c = path.to_str().unwrap();
    let r = run(&["-c", c, "-p", "production"], &["/bin/true"]);
    assert_eq!(r.code(), "E1004");
    assert!(r.json["error"]["message"].as_str().unwrap().contains("quick"));
    let r = run(&["-c", c, "-p", "quick"], &["/bin/sh", "-c", "echo $MODE; sleep 5"]);
    assert_eq!(r.stdout(), "quick\n");
    assert_eq!(r.outcome(), "timeout");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn out_of_range_config_value_is_e1003() {
    let dir = temp_dir("range");
    let path = dir.join("c.toml");
    std::fs::write(&path, "[defaults.resources]\nmax_pids = 0\n").unwrap();
    let r = run(&["-c", path.to_str().unwrap()], &["/bin/true"]);
    assert_eq!(r.code(), "E1003");
    assert!(r.json["error"]["message"].as_str().unwrap().contains("max_pids"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn config_is_found_through_the_environment() {
    let dir = temp_dir("env");
    let path = dir.join("c.toml");
    std::fs::write(&path, "[defaults.environment]\nFROM_CONFIG = \"yes\"\n").unwrap();
    let mut cmd = Command::new(airlock_bin());
    cmd.env("AIRLOCK_CONFIG", &path).args(["run", "--", "/bin/sh", "-c", "echo $FROM_CONFIG"]);
    let out = spawn_output(cmd, None);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["stdout"], "yes\n");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn blocked_command_is_e2003() {
    let dir = temp_dir("blocked");
    let path = dir.join("c.toml");
    std::fs::write(&path, "[security]\nblocked_commands = [\"sudo\", \"rm\"]\n").unwrap();
    let r = run(&["-c", path.to_str().unwrap()], &["/usr/bin/rm", "-rf", "/workspace"]);
    assert_eq!(r.code(), "E2003");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn json_request_on_stdin() {
    let doc = r#"{"command": ["/bin/sh", "-c", "echo $A; cat"], "environment": {"A": "b"},
                  "timeout_ms": 5000, "resources": {"max_output_bytes": 1048576},
                  "isolation": {"working_directory": "/tmp"}, "stdin": "piped in"}"#;
    let r = run_with_stdin(&["--json"], &[], Some(doc));
    assert_eq!(r.stdout(), "b\npiped in", "{}", r.json);
}

#[test]
fn malformed_json_request_is_rejected() {
    let r = run_with_stdin(&["--json"], &[], Some(r#"{"command": ["x"], "bogus": 1}"#));
    assert_eq!(r.code(), "E1001");
    assert!(r.json["error"]["message"].as_str().unwrap().contains("bogus"));
}

#[test]
fn dry_run_prints_the_policy_and_runs_nothing() {
    let dir = temp_dir("dry");
    let marker = dir.join("ran");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let touch = format!("touch {}", marker.display());
    let r = run(
        &["--dry-run", "--writable", dir.to_str().unwrap(), "--memory", "128M"],
        &["/bin/sh", "-c", &touch],
    );
    assert_eq!(r.json["dry_run"], true);
    assert_eq!(r.json["policy"]["limits"]["memory_bytes"], 128u64 << 20);
    assert_eq!(r.json["policy"]["argv"][2], touch.as_str());
    let checks: Vec<&str> =
        r.json["checks"].as_array().unwrap().iter().filter_map(|c| c["check"].as_str()).collect();
    assert!(checks.contains(&"user_namespaces") && checks.contains(&"seccomp") && checks.contains(&"cgroup"));
    assert!(!marker.exists(), "dry run executed the command");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn create_config_writes_defaults_and_refuses_to_overwrite() {
    let dir = temp_dir("create");
    let path = dir.join("airlock.toml");
    let p = path.to_str().unwrap();
    let mut cmd = Command::new(airlock_bin());
    cmd.args(["run", "--create-config", p]);
    assert!(spawn_output(cmd, None).status.success());
    assert!(std::fs::read_to_string(&path).unwrap().contains("[defaults.resources]"));
    // The written file is a valid configuration.
    let r = run(&["-c", p], &["/bin/true"]);
    assert_eq!(r.outcome(), "ok", "{}", r.json);
    let mut again = Command::new(airlock_bin());
    again.args(["run", "--create-config", p]);
    let out = spawn_output(again, None);
    assert_eq!(out.status.code(), Some(125));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn verbose_logs_never_reach_stdout() {
    let r = run(&["-vvv"], &["/bin/echo", "only this"]);
    assert_eq!(r.stdout(), "only this\n");
}

#[test]
fn text_format_streams_output_and_prints_a_summary() {
    let mut cmd = Command::new(airlock_bin());
    cmd.args(["run", "--format", "text", "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 3"]);
    let out = spawn_output(cmd, None);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.lines().any(|l| l == "err"), "{err}");
    assert!(err.lines().last().unwrap().starts_with("airlock: exited 3 in"), "{err}");
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn doctor_reports_every_check() {
    let mut cmd = Command::new(airlock_bin());
    cmd.args(["doctor", "--json"]);
    let out = spawn_output(cmd, None);
    let checks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = checks.as_array().unwrap().iter().filter_map(|c| c["check"].as_str()).collect();
    for want in ["user_namespaces", "sandbox", "cgroups", "seccomp", "landlock", "python3", "node"] {
        assert!(names.contains(&want), "doctor lacks {want}: {names:?}");
    }
    let sandbox = checks.as_array().unwrap().iter().find(|c| c["check"] == "sandbox").unwrap();
    assert_eq!(sandbox["status"], "ok", "{sandbox}");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn json_request_binds_get_the_same_checks_as_flags() {
    let doc = r#"{"command": ["/bin/true"],
                  "isolation": {"bind_mounts": [{"source": "/usr", "destination": "data/..", "readonly": true}]}}"#;
    let r = run_with_stdin(&["--json"], &[], Some(doc));
    assert_eq!(r.code(), "E1003", "{}", r.json);
}

#[test]
fn metrics_count_the_whole_trees_cpu_and_memory() {
    // The work happens in a grandchild: its usage must still be counted.
    let r = sh("python3 -c 'b = bytearray(40 << 20); print(sum(range(3 * 10**6)))' | cat");
    assert_eq!(r.outcome(), "ok", "{}", r.json);
    let m = &r.json["metrics"];
    assert!(m["cpu_time_ms"].as_u64().unwrap() >= 20, "{m}");
    assert!(m["max_memory_bytes"].as_u64().unwrap() >= 40 << 20, "{m}");
}

#[test]
fn the_payload_runs_on_the_callers_cpus() {
    // Init builds the sandbox on other CPUs than the supervisor's; the payload gets them all.
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    let allowed = |status: &str| {
        status
            .lines()
            .find(|l| l.starts_with("Cpus_allowed_list:"))
            .map(|l| l.split_whitespace().nth(1).unwrap().to_owned())
    };
    let r = run(&[], &["/bin/cat", "/proc/self/status"]);
    assert_eq!(r.outcome(), "ok", "{}", r.json);
    assert_eq!(allowed(r.stdout()), allowed(&own), "{}", r.stdout());
}
