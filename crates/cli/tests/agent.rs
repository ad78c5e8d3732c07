//! A long-lived sandbox: `airlock launch` with the agent inside, driven over a socket pair the
//! way the server drives it.

mod common;

use std::time::{Duration, Instant};

use common::agent_sandbox::{exec, Sandbox};
use serde_json::json;

fn processes(sandbox: &mut Sandbox, id: u64) -> String {
    let listing = sandbox.exec(id, "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done", None);
    listing["stdout"].as_str().unwrap().to_owned()
}

#[test]
fn commands_share_the_workspace_and_processes_of_one_sandbox() {
    let mut sb = Sandbox::start("share");
    let first = sb.exec(2, "echo kept > note.txt; id -u; pwd", None);
    assert_eq!(first["exit_code"], 0, "{first}");
    assert_eq!(first["stdout"], "1000\n/workspace\n");
    let second = sb.exec(3, "cat note.txt; exit 3", None);
    assert_eq!((second["stdout"].as_str(), second["exit_code"].as_i64()), (Some("kept\n"), Some(3)));
    assert_eq!(std::fs::read_to_string(sb.workspace.join("note.txt")).unwrap(), "kept\n");
    sb.send(&json!({"id": 4, "op": "start", "argv": ["no-such-program"], "cwd": "/workspace",
                    "max_output_bytes": 100}));
    let missing = sb.collect(4);
    assert_eq!(missing["exit_code"], 127, "{missing}");
    assert!(missing["spawn_error"].as_str().unwrap().contains("no-such-program"), "{missing}");
    let ended = sb.stop();
    assert_eq!(ended["result"], "ended", "{ended}");
}

#[test]
fn a_command_timeout_ends_its_own_tree_and_nothing_else() {
    let mut sb = Sandbox::start("timeout");
    // A long command runs while another one, which detaches a daemon, times out.
    sb.send(&exec(10, "sleep 1.5; echo survived", None));
    let started = Instant::now();
    let timed_out = sb.exec(11, "setsid sh -c 'sleep 300' & (sh -c 'sleep 301 &') ; sleep 302", Some(300));
    assert!(started.elapsed() < Duration::from_secs(5), "the timeout did not fire in time");
    assert_eq!(timed_out["id"], 11, "{timed_out}");
    assert_eq!(timed_out["timed_out"], true, "{timed_out}");
    let left = processes(&mut sb, 12);
    for sleeper in ["sleep 300", "sleep 301", "sleep 302"] {
        assert!(!left.contains(sleeper), "{sleeper} outlived its command's timeout:\n{left}");
    }
    assert!(left.contains("sleep 1.5"), "the other command was touched:\n{left}");
    let other = sb.exit_of(10);
    assert_eq!(
        (other["exit_code"].as_i64(), other["stdout"].as_str()),
        (Some(0), Some("survived\n")),
        "{other}"
    );
    // And the sandbox still works.
    assert_eq!(sb.exec(13, "echo still here", None)["stdout"], "still here\n");
    sb.stop();
}

#[test]
fn output_is_capped_and_stdin_is_fed() {
    let mut sb = Sandbox::start("output");
    sb.send(
        &json!({"id": 2, "op": "start", "argv": ["/bin/sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x"],
                    "cwd": "/workspace", "max_output_bytes": 1000}),
    );
    let flood = sb.collect(2);
    assert_eq!(flood["stdout"].as_str().unwrap().len(), 1000, "{}", flood["stderr"]);
    assert_eq!(flood["output_truncated"], true);
    assert_eq!(flood["stdout_bytes"], 3_000_000);
    sb.send(&json!({"id": 3, "op": "start", "argv": ["/bin/cat"], "cwd": "/workspace",
                    "stdin": "from the caller", "max_output_bytes": 100}));
    assert_eq!(sb.collect(3)["stdout"], "from the caller");
    sb.stop();
}

#[test]
fn hanging_up_ends_the_sandbox_and_everything_in_it() {
    let mut sb = Sandbox::start("hangup");
    let marker = format!("sleep 6{}", std::process::id() % 1000);
    sb.send(&exec(2, &format!("{marker} & wait"), None));
    let deadline = Instant::now() + Duration::from_secs(5);
    while host_processes_running(&marker) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(host_processes_running(&marker), 1, "the command did not start");
    let report = sb.stop();
    assert_eq!(report["result"], "ended", "{report}");
    assert_eq!(host_processes_running(&marker), 0, "a process of the sandbox outlived it");
}

/// Host processes whose command line is exactly `cmdline`.
fn host_processes_running(cmdline: &str) -> usize {
    let wanted: Vec<u8> = cmdline.replace(' ', "\0").into_bytes();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| c.strip_suffix(b"\0").unwrap_or(c) == wanted.as_slice())
        .count()
}

#[test]
fn stdin_stays_open_and_signal_and_kill_reach_only_their_command() {
    let mut sb = Sandbox::start("control");
    sb.send(&json!({"id": 2, "op": "start", "argv": ["/bin/cat"], "cwd": "/workspace",
                    "keep_stdin_open": true, "max_output_bytes": 100}));
    assert_eq!(sb.ask(&json!({"id": 3, "op": "stdin", "command": 2, "data": "one "}))["kind"], "done");
    assert_eq!(sb.ask(&json!({"id": 4, "op": "stdin", "command": 2, "data": "two"}))["kind"], "done");
    assert_eq!(sb.ask(&json!({"id": 5, "op": "close_stdin", "command": 2}))["kind"], "done");
    let cat = sb.exit_of(2);
    assert_eq!((cat["stdout"].as_str(), cat["exit_code"].as_i64()), (Some("one two"), Some(0)), "{cat}");

    sb.send(&exec(6, "trap 'echo got term; exit 7' TERM; sleep 100 & wait", None));
    sb.send(&exec(7, "setsid sleep 200 & sleep 201", None));
    // Wait until both have started, then signal one and kill the other.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes(&mut sb, 8).contains("sleep 201") && Instant::now() < deadline {}
    assert_eq!(sb.ask(&json!({"id": 9, "op": "signal", "command": 6, "signal": 15}))["kind"], "done");
    let trapped = sb.exit_of(6);
    assert_eq!((trapped["exit_code"].as_i64(), trapped["stdout"].as_str()), (Some(7), Some("got term\n")));
    assert_eq!(sb.ask(&json!({"id": 10, "op": "kill", "command": 7}))["kind"], "done");
    let killed = sb.exit_of(7);
    assert_eq!((killed["killed"].as_bool(), killed["signal"].as_i64()), (Some(true), Some(9)), "{killed}");
    let left = processes(&mut sb, 11);
    assert!(!left.contains("sleep 200") && !left.contains("sleep 201"), "{left}");
    let unknown = sb.ask(&json!({"id": 12, "op": "kill", "command": 7}));
    assert_eq!(unknown["kind"], "error", "{unknown}");
    sb.stop();
}

#[test]
fn a_kill_sent_right_after_the_start_ends_the_command() {
    let mut sb = Sandbox::start("early-kill");
    // The kill lands at every point of the start: before the runner exists, after it exists but
    // before it has started the command, and after.
    for round in 0..20u64 {
        let (start, kill) = (100 + 2 * round, 101 + 2 * round);
        sb.send(&exec(start, "sleep 5", None));
        assert_eq!(sb.ask(&json!({"id": kill, "op": "kill", "command": start}))["kind"], "done");
        let exit = sb.exit_of(start);
        assert_eq!(
            (exit["killed"].as_bool(), exit["signal"].as_i64()),
            (Some(true), Some(9)),
            "round {round}: {exit}"
        );
    }
    sb.stop();
}

#[test]
fn a_killed_runner_leaves_no_stray_process() {
    let mut sb = Sandbox::start("stray");
    sb.send(&exec(2, "sleep 300 & sleep 301", None));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes(&mut sb, 3).contains("sleep 301") {
        assert!(Instant::now() < deadline, "the command did not start");
    }
    // Another command of the same sandbox kills the first one's runner, as the OOM killer may.
    let killer = sb.exec(4, "pkill -KILL -f 'agent-run.*sleep 30[1]'", None);
    assert_eq!(killer["exit_code"], 0, "{killer}");
    let ended = sb.exit_of(2);
    assert!(ended["spawn_error"].as_str().unwrap().contains("SIGKILL"), "{ended}");
    let left = processes(&mut sb, 5);
    assert!(
        !left.contains("sleep 300") && !left.contains("sleep 301"),
        "strays outlived their runner:\n{left}"
    );
    assert_eq!(sb.exec(6, "echo fine", None)["stdout"], "fine\n");
    sb.stop();
}
