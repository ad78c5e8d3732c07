//! A long-lived sandbox for the tests: `airlock launch` with the agent inside, driven over a
//! socket pair the way the server drives it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use airlock_jail::{
    BindMount, HostIdentity, Limits, NetworkMode, Protections, SandboxSpec, Stdin, Workspace,
};
use serde_json::{json, Value};

/// A running `airlock launch` whose payload is the agent, and our end of its control socket.
pub struct Sandbox {
    launcher: Child,
    control: BufReader<UnixStream>,
    /// The workspace on the host, bound at `/workspace`; its parent holds the spec and is the
    /// test's own directory.
    pub workspace: PathBuf,
    others: Vec<Value>,
}

impl Sandbox {
    /// Start a sandbox with the tests' usual spec; `tag` names its directory.
    pub fn start(tag: &str) -> Sandbox {
        Sandbox::start_with(tag, |_| {})
    }

    /// Like [`Sandbox::start`], with the spec changed by `adjust` first.
    pub fn start_with(tag: &str, adjust: impl FnOnce(&mut SandboxSpec)) -> Sandbox {
        let dir = std::env::temp_dir().join(format!("airlock-agent-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let workspace = dir.join("workspace");
        std::fs::create_dir_all(&workspace).unwrap();
        let identity = HostIdentity::for_caller(std::process::id() + 7);
        if super::is_root() {
            std::os::unix::fs::chown(&workspace, Some(identity.uid), Some(identity.gid)).unwrap();
        }
        let mut spec = SandboxSpec {
            argv: vec!["/.airlock/airlock".into(), "agent".into()],
            env: vec![
                ("PATH".into(), airlock_jail::DEFAULT_PATH.into()),
                ("HOME".into(), "/workspace".into()),
            ],
            workdir: "/workspace".into(),
            workspace: Workspace::Host { path: workspace.clone() },
            binds: vec![BindMount {
                source: super::airlock_bin(),
                destination: "/.airlock/airlock".into(),
                readonly: true,
            }],
            network: NetworkMode::None,
            limits: Limits { max_open_files: Some(1024), tmp_size_bytes: 16 << 20, ..Limits::default() },
            protections: Protections::default(),
            identity,
            stdin: Stdin::Null,
            hostname: "airlock".into(),
        };
        adjust(&mut spec);
        let spec_path = dir.join("spec.json");
        std::fs::write(&spec_path, serde_json::to_vec(&spec).unwrap()).unwrap();
        let (ours, theirs) = UnixStream::pair().unwrap();
        let launcher = Command::new(super::airlock_bin())
            .args(["launch", "--spec"])
            .arg(&spec_path)
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start airlock launch");
        let mut sandbox = Sandbox { launcher, control: BufReader::new(ours), workspace, others: Vec::new() };
        assert_eq!(sandbox.ask(&json!({"id": 1, "op": "ping"}))["kind"], "pong");
        sandbox
    }

    /// Send one request.
    pub fn send(&mut self, request: &Value) {
        let mut line = serde_json::to_vec(request).unwrap();
        line.push(b'\n');
        self.control.get_mut().write_all(&line).unwrap();
    }

    /// The next answer, whatever it answers.
    pub fn receive(&mut self) -> Value {
        let mut line = String::new();
        self.control.read_line(&mut line).expect("read from the agent");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad answer {line:?}: {e}"))
    }

    /// Send one request and return its answer; answers to others read meanwhile are kept.
    pub fn ask(&mut self, request: &Value) -> Value {
        self.send(request);
        loop {
            let answer = self.receive();
            if answer["id"] == request["id"] {
                return answer;
            }
            // Output of a command that runs meanwhile: kept for its own collection.
            self.others.push(answer);
        }
    }

    /// Run `script` with `/bin/sh -c` and return its exit answer with its output gathered.
    pub fn exec(&mut self, id: u64, script: &str, timeout_ms: Option<u64>) -> Value {
        self.send(&exec(id, script, timeout_ms));
        self.collect(id)
    }

    /// Read answers until command `id` exits; its output is gathered into `stdout` and `stderr`
    /// of the exit answer. Answers to other requests are left in `self.others`.
    pub fn collect(&mut self, id: u64) -> Value {
        let (mut stdout, mut stderr) = (String::new(), String::new());
        loop {
            let answer = self.receive();
            if answer["id"] != id {
                self.others.push(answer);
                continue;
            }
            match answer["kind"].as_str() {
                Some("output") if answer["stream"] == "stdout" => stdout += answer["data"].as_str().unwrap(),
                Some("output") => stderr += answer["data"].as_str().unwrap(),
                Some("exit") => {
                    let mut exit = answer;
                    exit["stdout"] = stdout.into();
                    exit["stderr"] = stderr.into();
                    return exit;
                }
                Some("started") => assert!(answer["pid"].as_i64().unwrap() > 1, "{answer}"),
                _ => panic!("unexpected answer {answer}"),
            }
        }
    }

    /// Like [`Sandbox::collect`], for a command some of whose answers were already read.
    pub fn exit_of(&mut self, id: u64) -> Value {
        let (early, others): (Vec<Value>, Vec<Value>) = self.others.drain(..).partition(|a| a["id"] == id);
        self.others = others;
        let exit = match early.iter().find(|a| a["kind"] == "exit") {
            Some(exit) => exit.clone(),
            None => self.collect(id),
        };
        let early_out: String = early
            .iter()
            .filter(|a| a["kind"] == "output" && a["stream"] == "stdout")
            .map(|a| a["data"].as_str().unwrap())
            .collect();
        let mut exit = exit;
        exit["stdout"] = (early_out + exit["stdout"].as_str().unwrap_or("")).into();
        exit
    }

    /// Hang up and wait for the sandbox to end; returns what `airlock launch` printed.
    pub fn stop(self) -> Value {
        let Sandbox { launcher, control, workspace, .. } = self;
        drop(control);
        let out = launcher.wait_with_output().unwrap();
        let _ = std::fs::remove_dir_all(workspace.parent().unwrap());
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!("launcher printed {text:?} ({e}); stderr: {}", String::from_utf8_lossy(&out.stderr))
        })
    }
}

/// A `start` request that runs `script` with `/bin/sh -c` in `/workspace`.
pub fn exec(id: u64, script: &str, timeout_ms: Option<u64>) -> Value {
    json!({"id": id, "op": "start", "argv": ["/bin/sh", "-c", script], "cwd": "/workspace",
           "timeout_ms": timeout_ms, "max_output_bytes": 1 << 20})
}
