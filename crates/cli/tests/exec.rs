//! End-to-end tests of `airlock exec` against the real `airlock serve`: one-shot runs, runs in a
//! sandbox's contexts, Ctrl-C, exit statuses, and the errors it reports. Tests that start
//! sandboxes need root (`root_*`); the others need no sandbox, and some no server.

mod common;
mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use support::Server;

/// What one `airlock exec` did.
#[derive(Debug)]
struct Exec {
    status: i32,
    stdout: String,
    stderr: String,
}

fn command(server: &str, args: &[&str]) -> Command {
    let mut command = Command::new(common::airlock_bin());
    command
        .arg("exec")
        .args(["--server", server])
        .args(args)
        .env_remove("AIRLOCK_SERVER")
        .env_remove("AIRLOCK_API_KEY");
    command
}

/// Run `airlock exec --server SERVER ARGS`, feeding `stdin` (else /dev/null).
fn exec_at(server: &str, args: &[&str], stdin: Option<&str>) -> Exec {
    let out = common::spawn_output(command(server, args), stdin);
    Exec {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn url(server: &Server) -> String {
    format!("http://127.0.0.1:{}", server.port)
}

fn exec(server: &Server, args: &[&str]) -> Exec {
    exec_at(&url(server), args, None)
}

/// A directory of its own for a test's files, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("airlock-exec-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Start `airlock exec`, wait for the first line the code prints, press Ctrl-C `presses` times,
/// and collect the rest.
fn interrupt_after_first_line(server: &Server, args: &[&str], presses: usize) -> Exec {
    let mut child = command(&url(server), args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn airlock exec");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first, "started\n", "output arrives while the run goes on");
    let pid = Pid::from_raw(child.id() as i32);
    for _ in 0..presses {
        kill(pid, Signal::SIGINT).unwrap();
    }
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    Exec {
        status: out.status.code().unwrap_or(-1),
        stdout: first + &rest,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn root_one_shot_runs_stream_output_and_end_with_the_scripts_status() {
    let server = Server::start("exec-once", &[]);
    let dir = Scratch::new("once");

    let hello =
        dir.file("hello.py", "import sys\nprint('hello')\nprint('to stderr', file=sys.stderr)\n6 * 7\n");
    let ran = exec(&server, &[&hello]);
    assert_eq!((ran.status, ran.stdout.as_str()), (0, "hello\n"), "a script shows no last value: {ran:?}");
    assert!(ran.stderr.contains("to stderr"), "{ran:?}");

    let exits = dir.file("exits.py", "import sys\nprint('before')\nsys.exit(3)\n");
    let exited = exec(&server, &[&exits]);
    assert_eq!((exited.status, exited.stdout.as_str()), (3, "before\n"), "{exited:?}");

    let input = dir.file("input.txt", "piped data\n");
    let upper =
        exec(&server, &["--input", &input, "-c", "import sys\nprint(sys.stdin.read().upper(), end='')"]);
    assert_eq!((upper.status, upper.stdout.as_str()), (0, "PIPED DATA\n"), "{upper:?}");

    let piped = exec_at(&url(&server), &[], Some("print('code from stdin')"));
    assert_eq!((piped.status, piped.stdout.as_str()), (0, "code from stdin\n"), "{piped:?}");

    let script = dir.file("add.mjs", "console.log(2 + 3)\n");
    let js = exec(&server, &[&script]);
    assert_eq!((js.status, js.stdout.as_str()), (0, "5\n"), "the extension picks JavaScript: {js:?}");
    let bash = exec(&server, &["-l", "bash", "-c", "echo $((6 * 7)); exit 5"]);
    assert_eq!((bash.status, bash.stdout.as_str()), (5, "42\n"), "{bash:?}");

    let slept = exec(&server, &["--timeout", "300ms", "-c", "import time\ntime.sleep(30)"]);
    assert_eq!(slept.status, 124, "{slept:?}");
    assert!(slept.stderr.contains("run ended: timeout"), "{slept:?}");

    let handled = exec(
        &server,
        &["--event", r#"{"n": 21}"#, "-c", "def handler(event):\n    return {'n': event['n'] * 2}"],
    );
    assert_eq!((handled.status, handled.stdout.as_str()), (0, "{\"n\":42}\n"), "{handled:?}");

    let collected = exec(&server, &["--json", "-c", "print('one')\nraise SystemExit(4)"]);
    assert_eq!(collected.status, 4, "{collected:?}");
    let answer: Value = serde_json::from_str(&collected.stdout).expect("--json prints JSON");
    assert_eq!(
        (answer["stdout"].as_str(), answer["status"].as_str()),
        (Some("one\n"), Some("error")),
        "{answer}"
    );
    assert_eq!(answer["exit_code"], 4, "{answer}");

    let stopped = interrupt_after_first_line(
        &server,
        &["-c", "import time\nprint('started', flush=True)\ntime.sleep(60)"],
        1,
    );
    assert_eq!(stopped.status, 130, "Ctrl-C stops a one-shot run at once: {stopped:?}");
}

#[test]
fn root_sandbox_runs_keep_state_and_show_values_and_errors() {
    let server = Server::start("exec-sandbox", &[]);
    let sandbox = server.create_sandbox(&json!({}));
    let in_sandbox = |args: &[&str]| {
        let mut all = vec!["--sandbox", sandbox.as_str()];
        all.extend_from_slice(args);
        exec(&server, &all)
    };

    let set = in_sandbox(&["-c", "x = 40"]);
    assert_eq!((set.status, set.stdout.as_str()), (0, ""), "{set:?}");
    let shown = in_sandbox(&["-c", "print('x is', x)\nx + 2"]);
    assert_eq!(
        (shown.status, shown.stdout.as_str()),
        (0, "x is 40\n42\n"),
        "the last value follows the output: {shown:?}"
    );

    let failed = in_sandbox(&["-c", "y = 1\n1 / 0"]);
    assert_eq!((failed.status, failed.stdout.as_str()), (1, ""), "{failed:?}");
    assert!(failed.stderr.contains("Traceback (most recent call last)"), "{failed:?}");
    assert!(failed.stderr.contains("ZeroDivisionError: division by zero"), "{failed:?}");

    let slept = in_sandbox(&["--timeout", "300ms", "-c", "import time\ntime.sleep(30)"]);
    assert_eq!(slept.status, 124, "{slept:?}");
    assert!(slept.stderr.contains("KeyboardInterrupt"), "{slept:?}");

    let collected = in_sandbox(&["--json", "-c", "x + y"]);
    assert_eq!(collected.status, 0, "{collected:?}");
    let answer: Value = serde_json::from_str(&collected.stdout).expect("--json prints JSON");
    assert_eq!(answer["result"]["text/plain"], "41", "state survives errors and timeouts: {answer}");
    assert_eq!(answer["context"], "python", "{answer}");

    let figure = in_sandbox(&["-c", "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()"]);
    assert_eq!(figure.status, 0, "{figure:?}");
    assert!(figure.stderr.contains("[image/png result, "), "a figure is named, not printed: {figure:?}");

    let handled = in_sandbox(&[
        "--event",
        r#"{"xs": [1, 2]}"#,
        "-c",
        "def handler(event):\n    return sum(event['xs'])",
    ]);
    assert_eq!((handled.status, handled.stdout.as_str()), (0, "3\n"), "{handled:?}");

    let missing = exec(&server, &["--sandbox", "sbx_missing", "-c", "1"]);
    assert_eq!(missing.status, 2, "{missing:?}");
    assert!(missing.stderr.starts_with("airlock exec: SANDBOX_NOT_FOUND: "), "{missing:?}");
    assert!(missing.stderr.contains("hint: "), "{missing:?}");
}

#[test]
fn root_bash_contexts_keep_their_directory() {
    let server = Server::start("exec-bash", &[]);
    let sandbox = server.create_sandbox(&json!({}));
    let moved = exec(&server, &["-l", "bash", "--sandbox", &sandbox, "-c", "cd /tmp; pwd"]);
    assert_eq!((moved.status, moved.stdout.as_str()), (0, "/tmp\n"), "{moved:?}");
    let still = exec(&server, &["-l", "bash", "--sandbox", &sandbox, "-c", "pwd"]);
    assert_eq!((still.status, still.stdout.as_str()), (0, "/tmp\n"), "{still:?}");
    let failed = exec(&server, &["-l", "bash", "--sandbox", &sandbox, "-c", "(exit 3)"]);
    assert_eq!(failed.status, 3, "a cell exits with its last command's status, as bash -c: {failed:?}");
}

#[test]
fn root_ctrl_c_interrupts_the_context_which_keeps_its_state() {
    let server = Server::start("exec-interrupt", &[]);
    let sandbox = server.create_sandbox(&json!({}));
    let code = "import time\nkept = 'yes'\nprint('started', flush=True)\ntime.sleep(60)";
    let stopped = interrupt_after_first_line(&server, &["--sandbox", &sandbox, "-c", code], 1);
    assert_eq!(stopped.status, 130, "{stopped:?}");
    assert!(stopped.stderr.contains("KeyboardInterrupt"), "the run went on to its end: {stopped:?}");
    assert!(stopped.stderr.contains("run ended: interrupted"), "{stopped:?}");
    let kept = exec(&server, &["--sandbox", &sandbox, "-c", "kept"]);
    assert_eq!((kept.status, kept.stdout.as_str()), (0, "'yes'\n"), "{kept:?}");
}

#[test]
fn server_refusals_and_api_keys() {
    let mut server = Server::start("exec-keys", &[]);
    let key = server.create_key("exec");
    let anonymous = exec(&server, &["--sandbox", "sbx_missing", "-c", "1"]);
    assert_eq!(anonymous.status, 2, "{anonymous:?}");
    assert!(anonymous.stderr.starts_with("airlock exec: UNAUTHORIZED: "), "{anonymous:?}");

    let flagged = exec(&server, &["--api-key", &key, "--sandbox", "sbx_missing", "-c", "1"]);
    assert!(
        flagged.stderr.starts_with("airlock exec: SANDBOX_NOT_FOUND: "),
        "the key was taken: {flagged:?}"
    );
    let mut from_env = command(&url(&server), &["--sandbox", "sbx_missing", "-c", "1"]);
    from_env.env("AIRLOCK_API_KEY", &key);
    let out = common::spawn_output(from_env, None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("airlock exec: SANDBOX_NOT_FOUND: "));
}

#[test]
fn a_closed_port_is_a_connection_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = format!("http://127.0.0.1:{port}");
    let refused = exec_at(&server, &["-c", "print(1)"], None);
    assert_eq!((refused.status, refused.stdout.as_str()), (2, ""), "{refused:?}");
    assert!(
        refused
            .stderr
            .starts_with(&format!("airlock exec: CONNECT_FAILED: cannot connect to the server at {server}")),
        "{refused:?}"
    );
    assert!(refused.stderr.contains("hint: start the server with `airlock serve`"), "{refused:?}");
}

#[test]
fn bad_flags_are_refused_before_anything_is_sent() {
    // Port 9 (discard) is never reached: every case fails before connecting.
    let server = "http://127.0.0.1:9";
    let dir = Scratch::new("flags");
    let script = dir.file("a.py", "print(1)\n");
    let missing = dir.0.join("missing.py");
    let cases: &[(&[&str], &str)] = &[
        (&["--sandbox", "sbx_1", "--input", &script, "-c", "1"], "--input cannot be used with --sandbox"),
        (&["--context", "python", "-c", "1"], "--context needs --sandbox"),
        (
            &["--sandbox", "sbx_1", "--context", "c", "-l", "bash", "-c", "1"],
            "--language cannot be used with --context",
        ),
        (&["-c", "1", &script], "both -c/--code and FILE are given"),
        (&["--sandbox", "../x", "-c", "1"], "--sandbox '../x' is not an id"),
        (&["--timeout", "30", "-c", "1"], "--timeout '30' is not a duration"),
        (&["--event", "{x}", "-c", "1"], "--event is not JSON"),
        (&["--input", "-", "-"], "--input - and the code both read standard input"),
    ];
    for (args, message) in cases {
        let refused = exec_at(server, args, None);
        assert_eq!(refused.status, 2, "{args:?}: {refused:?}");
        assert!(
            refused.stderr.starts_with(&format!("airlock exec: INVALID_ARGUMENT: {message}")),
            "{args:?}: {refused:?}"
        );
        assert!(refused.stderr.contains("\n  hint: "), "{refused:?}");
    }

    let https = exec_at("https://airlock.example", &["-c", "1"], None);
    assert_eq!(https.status, 2, "{https:?}");
    assert!(https.stderr.contains("uses https, and airlock exec speaks plain HTTP only"), "{https:?}");
    assert!(https.stderr.contains("TLS-terminating proxy"), "{https:?}");

    let unreadable = exec_at(server, &[missing.to_str().unwrap()], None);
    assert_eq!(unreadable.status, 2, "{unreadable:?}");
    let expected = format!("airlock exec: READ_FAILED: cannot read the code '{}': ", missing.display());
    assert!(unreadable.stderr.starts_with(&expected), "{unreadable:?}");
}
