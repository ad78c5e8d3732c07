//! The Sandbox Executor front door end to end: the real `airlock serve`, and a small control
//! plane run by the test that records every callback and answers as each test says. Tests that
//! run code need root (cgroup limits); they are named `root_*`.

mod common;
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::{json, Value};
use support::{wait_for, Server};

/// One request the control plane received.
#[derive(Debug, Clone)]
struct Call {
    path: String,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Call {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// How the control plane answers a call: an HTTP status.
type Answer = Box<dyn FnMut(&Call) -> u16 + Send>;

/// A control plane on 127.0.0.1, one connection at a time, stopped when dropped.
struct ControlPlane {
    port: u16,
    calls: Arc<Mutex<Vec<Call>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlPlane {
    /// On a free port, answering 200 to everything.
    fn start() -> ControlPlane {
        ControlPlane::on(0, Box::new(|_| 200))
    }

    fn on(port: u16, mut answer: Answer) -> ControlPlane {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (calls, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (seen, stopping) = (Arc::clone(&calls), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                if let Some(call) = read_call(&stream) {
                    let status = answer(&call);
                    seen.lock().unwrap().push(call);
                    let mut stream = stream;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
                    );
                }
            }
        });
        ControlPlane { port, calls, stop, thread: Some(thread) }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The result deliveries of execution `id`, in order.
    fn results(&self, id: &str) -> Vec<Call> {
        let path = format!("/api/v1/internal/executions/{id}/result");
        self.calls().into_iter().filter(|c| c.path == path).collect()
    }

    /// Wait for the first result of `id`.
    fn result(&self, id: &str) -> Value {
        wait_for(|| !self.results(id).is_empty());
        self.results(id)[0].body.clone()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn read_call(stream: &TcpStream) -> Option<Call> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_owned();
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let Some((name, value)) = line.trim_end().split_once(':') else { break };
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Call { path, headers, body: serde_json::from_slice(&body).unwrap_or(Value::Null) })
}

/// Submit an execution; it must be accepted.
fn submit(server: &Server, body: Value) {
    let reply = server.post("/execute", &body);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["status"], "PENDING", "{}", reply.body);
    assert_eq!(reply.json()["execution_id"], body["execution_id"], "{}", reply.body);
}

fn info(server: &Server) -> Value {
    let reply = server.get("/info");
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

#[test]
fn info_health_and_bad_input() {
    let cp = ControlPlane::start();
    let server = Server::start(
        "executor-info",
        &[("CONTROL_PLANE_URL", &cp.url()), ("MAX_CONCURRENT_EXECUTIONS", "7")],
    );
    let info = info(&server);
    assert_eq!(
        (info["name"].as_str(), info["version"].as_str()),
        (Some("airlock"), Some(env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(info["max_concurrent_executions"], 7, "{info}");
    assert_eq!((info["active_executions"].as_u64(), info["pending_results"].as_u64()), (Some(0), Some(0)));
    assert_eq!(info["control_plane_configured"], true);
    assert_eq!(info["languages"], json!(["python", "javascript", "shell"]));
    assert_eq!(server.get("/health").status, 200);

    for (body, field) in [
        (json!({"code": "print(1)", "language": "cobol"}), "language"),
        (json!({"code": "print(1)", "timeout": 0}), "timeout"),
        (json!({"code": "print(1)", "event": {"__timeout": -1}}), "__timeout"),
        (json!({"code": "print(1)", "event": [1, 2]}), "event"),
        (json!({"code": "print(1)", "execution_id": "../../x"}), "execution_id"),
        (json!({"code": ""}), "code"),
    ] {
        let reply = server.post("/execute", &body);
        assert_eq!(
            (reply.status, reply.code()),
            (400, "INVALID_ARGUMENT".to_owned()),
            "{body}: {}",
            reply.body
        );
        assert!(reply.json()["error"]["message"].as_str().unwrap().contains(field), "{}", reply.body);
    }
    let reply = server.post("/execute", &json!({"language": "python"}));
    assert_eq!((reply.status, reply.code()), (400, "MALFORMED_JSON".to_owned()), "{}", reply.body);
    let reply = server.try_request("POST", "/execute", Some("{not json"), &[]).unwrap();
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(cp.calls().is_empty(), "nothing was run, so nothing was reported");
}

#[test]
fn bad_settings_stop_the_server_naming_the_variable() {
    let dir = std::env::temp_dir().join(format!("airlock-executor-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), "").unwrap();
    for (name, value) in [
        ("CONTROL_PLANE_URL", "https://control-plane:8000"),
        ("MAX_CONCURRENT_EXECUTIONS", "none"),
        ("MAX_MEMORY_MB", "lots"),
        ("WORKSPACE_PATH", "/nonexistent-airlock-workspace"),
    ] {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = std::process::Command::new(common::airlock_bin())
            .args(["serve", "--port", &port.to_string(), "--data-dir"])
            .arg(dir.join("data"))
            .env("AIRLOCK_CONFIG", dir.join("config.toml"))
            .env("AIRLOCK_POOL_SIZE", "0")
            .env(name, value)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut exited = child.try_wait().unwrap();
        while exited.is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            exited = child.try_wait().unwrap();
        }
        if exited.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        assert!(exited.is_some_and(|s| !s.success()) && stderr.contains(name), "{name}={value}: {stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn root_results_reach_the_control_plane_with_their_idempotency_key() {
    let cp = ControlPlane::start();
    let workspace = std::env::temp_dir().join(format!("airlock-executor-ws-{}", std::process::id()));
    std::fs::create_dir_all(&workspace).unwrap();
    std::fs::write(workspace.join("data.txt"), "from the host").unwrap();
    let server = Server::start(
        "executor-results",
        &[
            ("CONTROL_PLANE_URL", &cp.url()),
            ("INTERNAL_API_TOKEN", "t0ken"),
            ("WORKSPACE_PATH", workspace.to_str().unwrap()),
            ("MAX_MEMORY_MB", "256"),
        ],
    );
    // The Sandbox Executor's own examples post with curl's default content type.
    let script =
        json!({"execution_id": "exec_script", "code": "print('hi'); print(open('data.txt').read())"});
    let reply = server
        .try_request(
            "POST",
            "/execute",
            Some(&script.to_string()),
            &[("Content-Type", "application/x-www-form-urlencoded")],
        )
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    submit(
        &server,
        json!({"execution_id": "exec_handler", "session_id": "sess_1", "language": "python",
               "code": "def handler(event):\n    return {\"sum\": sum(event[\"xs\"])}",
               "event": {"xs": [1, 2, 3], "__timeout": 30}, "timeout": 10, "env_vars": {}}),
    );
    submit(
        &server,
        json!({"execution_id": "exec_js", "language": "javascript", "code": "exports.handler = (e) => e.n * 2",
               "event": {"n": 21}}),
    );
    submit(
        &server,
        json!({"execution_id": "exec_shell", "language": "shell", "code": "cat; echo", "event": {"a": 1}}),
    );
    submit(
        &server,
        json!({"execution_id": "exec_raise", "code": "def handler(event):\n    raise ValueError('no')", "event": {}}),
    );
    submit(
        &server,
        json!({"execution_id": "exec_memory", "code": "x = bytearray(600 << 20)\nprint(len(x))"}),
    );

    let result = cp.result("exec_script");
    assert_eq!(
        (result["status"].as_str(), result["exit_code"].as_i64()),
        (Some("success"), Some(0)),
        "{result}"
    );
    assert_eq!(result["stdout"], "hi\nfrom the host\n", "WORKSPACE_PATH is copied in: {result}");
    assert!(
        result["execution_time"].as_f64().is_some() && result["metrics"]["duration_ms"].is_u64(),
        "{result}"
    );
    let call = &cp.results("exec_script")[0];
    assert_eq!(call.header("idempotency-key"), Some("exec_script"));
    assert_eq!(call.header("authorization"), Some("Bearer t0ken"));
    assert_eq!(call.body["execution_id"], "exec_script");

    let result = cp.result("exec_handler");
    assert_eq!(
        (result["status"].as_str(), &result["return_value"]),
        (Some("success"), &json!({"sum": 6})),
        "{result}"
    );
    assert_eq!(cp.result("exec_js")["return_value"], 42);
    assert_eq!(
        cp.result("exec_shell")["stdout"],
        "{\"a\":1}\n",
        "a shell execution reads its event on stdin"
    );
    let raised = cp.result("exec_raise");
    assert_eq!(
        (raised["status"].as_str(), raised["error"]["name"].as_str()),
        (Some("failed"), Some("ValueError")),
        "{raised}"
    );
    let memory = cp.result("exec_memory");
    assert_ne!(memory["status"], "success", "MAX_MEMORY_MB holds: {memory}");

    wait_for(|| info(&server)["pending_results"] == 0);
    for id in ["exec_script", "exec_handler", "exec_js", "exec_shell", "exec_raise", "exec_memory"] {
        assert_eq!(cp.results(id).len(), 1, "{id} was delivered once");
    }
    std::fs::remove_dir_all(&workspace).unwrap();
}

#[test]
fn root_heartbeats_arrive_while_an_execution_runs() {
    let cp = ControlPlane::start();
    let server = Server::start(
        "executor-heartbeat",
        &[("CONTROL_PLANE_URL", &cp.url()), ("EXECUTOR_HEARTBEAT_SECONDS", "0.2")],
    );
    submit(
        &server,
        json!({"execution_id": "exec_long", "code": "import time\ntime.sleep(2)\nprint('done')"}),
    );
    assert_eq!(cp.result("exec_long")["stdout"], "done\n");
    let calls = cp.calls();
    let result_at = calls.iter().position(|c| c.path.ends_with("/exec_long/result")).unwrap();
    let beats: Vec<(usize, &Call)> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.path == "/api/v1/internal/executions/exec_long/heartbeat")
        .collect();
    assert!(!beats.is_empty(), "no heartbeat: {calls:?}");
    for (at, beat) in beats {
        assert!(at < result_at, "a heartbeat after the result");
        assert_eq!(
            (beat.body["execution_id"].as_str(), beat.body["status"].as_str()),
            (Some("exec_long"), Some("running"))
        );
        assert!(beat.body["elapsed_ms"].is_u64() && beat.body["timestamp"].is_string(), "{}", beat.body);
        assert_eq!(beat.header("idempotency-key"), None);
    }
}

#[test]
fn root_a_result_is_retried_until_the_control_plane_takes_it() {
    let mut refused = 0;
    let cp = ControlPlane::on(
        0,
        Box::new(move |call| {
            if call.path.ends_with("/result") && refused < 2 {
                refused += 1;
                503
            } else {
                200
            }
        }),
    );
    let server = Server::start("executor-retry", &[("CONTROL_PLANE_URL", &cp.url())]);
    submit(&server, json!({"execution_id": "exec_retry", "code": "print(6 * 7)"}));
    wait_for(|| cp.results("exec_retry").len() == 3);
    wait_for(|| info(&server)["pending_results"] == 0);
    let attempts = cp.results("exec_retry");
    assert_eq!(attempts.len(), 3, "no attempt after the acknowledgement");
    for attempt in &attempts {
        assert_eq!(attempt.header("idempotency-key"), Some("exec_retry"));
        assert_eq!(attempt.body, attempts[0].body, "every attempt sends the same result");
    }
    assert_eq!(attempts[2].body["stdout"], "42\n");
}

#[test]
fn root_a_result_waits_for_a_control_plane_that_is_down_across_a_restart() {
    // A port nothing listens on, until the control plane comes up after the restart.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let env = [("CONTROL_PLANE_URL", url.as_str())];
    let mut server = Server::start("executor-down", &env);
    submit(&server, json!({"execution_id": "exec_kept", "code": "print('kept')"}));
    wait_for(|| {
        let info = info(&server);
        info["active_executions"] == 0 && info["pending_results"] == 1
    });
    server.kill9();

    let cp = ControlPlane::on(port, Box::new(|_| 200));
    server.spawn(&env);
    let result = cp.result("exec_kept");
    assert_eq!(
        (result["status"].as_str(), result["stdout"].as_str()),
        (Some("success"), Some("kept\n")),
        "{result}"
    );
    assert_eq!(cp.results("exec_kept")[0].header("idempotency-key"), Some("exec_kept"));
    wait_for(|| info(&server)["pending_results"] == 0);
}

#[test]
fn root_timeouts_stop_runs_and_are_reported() {
    let cp = ControlPlane::start();
    let server = Server::start("executor-timeout", &[("CONTROL_PLANE_URL", &cp.url())]);
    submit(
        &server,
        json!({"execution_id": "exec_slow", "code": "import time\ntime.sleep(60)", "timeout": 1}),
    );
    submit(
        &server,
        json!({"execution_id": "exec_slow_handler", "timeout": 60, "event": {"__timeout": 1},
               "code": "import time\ndef handler(event):\n    time.sleep(60)"}),
    );
    for id in ["exec_slow", "exec_slow_handler"] {
        let result = cp.result(id);
        assert_eq!(
            (result["status"].as_str(), result["exit_code"].as_i64()),
            (Some("timeout"), Some(-1)),
            "{result}"
        );
    }
}

#[test]
fn root_max_concurrent_executions_is_enforced() {
    let cp = ControlPlane::start();
    let server = Server::start(
        "executor-busy",
        &[("CONTROL_PLANE_URL", &cp.url()), ("MAX_CONCURRENT_EXECUTIONS", "1")],
    );
    let long = json!({"execution_id": "exec_first", "code": "import time\ntime.sleep(3)"});
    submit(&server, long.clone());
    let busy = server.post("/execute", &json!({"execution_id": "exec_second", "code": "print(1)"}));
    assert_eq!((busy.status, busy.code()), (503, "EXECUTOR_BUSY".to_owned()), "{}", busy.body);
    assert_eq!(busy.header("retry-after"), Some("1"));
    let again = server.post("/execute", &long);
    assert_eq!((again.status, again.json()["message"].as_str()), (200, Some("Execution already submitted")));

    assert_eq!(cp.result("exec_first")["status"], "success");
    wait_for(|| info(&server)["active_executions"] == 0);
    submit(&server, json!({"execution_id": "exec_second", "code": "print(1)"}));
    assert_eq!(cp.result("exec_second")["status"], "success");
    assert_eq!(cp.results("exec_first").len(), 1, "the repeated submission ran nothing");
    assert_eq!(cp.results("exec_second").len(), 1);
}
