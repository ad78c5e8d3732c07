//! End-to-end tests of the Sandbox Runtime front door (`/workspace/se/...`) of `airlock serve`:
//! the real binary, driven over HTTP as that server's clients drive it. Every answer has the
//! envelope `{"success", "data", "error": {"code", "message"}}`. Tests that start sandboxes need
//! root (cgroup limits); they are named `root_*`.

mod common;
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{wait_for, Reply, Server};

/// An answer's envelope, checked: `success` agrees with the status, and an error has a code
/// and a message.
fn envelope(reply: &Reply) -> Value {
    let body = reply.json();
    let success = body["success"].as_bool().unwrap_or_else(|| panic!("no `success`: {}", reply.body));
    assert_eq!(success, reply.status == 200, "{} {}", reply.status, reply.body);
    if !success {
        assert!(body["error"]["code"].is_string() && body["error"]["message"].is_string(), "{body}");
    }
    body
}

/// A successful answer's `data`.
fn data(reply: Reply) -> Value {
    let body = envelope(&reply);
    assert!(body["success"] == true, "{} {}", reply.status, reply.body);
    body["data"].clone()
}

/// A failed answer's status and code, and its `data`.
fn failure(reply: Reply) -> (u16, String, Value) {
    let body = envelope(&reply);
    assert!(body["success"] == false, "{}", reply.body);
    (reply.status, body["error"]["code"].as_str().unwrap_or_default().to_owned(), body["data"].clone())
}

fn code(server: &Server, session: &str, body: Value) -> Reply {
    server.post(&format!("/workspace/se/execute_code/{session}"), &body)
}

fn exec(server: &Server, session: &str, body: Value) -> Reply {
    server.post(&format!("/workspace/se/execute/{session}"), &body)
}

/// The native view of a session's sandbox.
fn sandbox_of(server: &Server, session: &str) -> Value {
    let status = data(server.get(&format!("/workspace/se/session/{session}")));
    server.get(&format!("/v1/sandboxes/{}", status["sandbox_id"].as_str().unwrap())).json()
}

#[test]
fn unknown_routes_wrong_methods_bad_bodies_and_unknown_sessions_keep_the_envelope() {
    let server = Server::start("se-envelope", &[]);
    assert_eq!(data(server.get("/workspace/se/healthy"))["status"], "ok");
    assert_eq!(failure(server.get("/workspace/se/nothing/here")).1, "ROUTE_NOT_FOUND");
    let put = server.request("PUT", "/workspace/se/session/a", Some(&json!({})));
    assert_eq!(failure(put).1, "METHOD_NOT_ALLOWED");
    let broken = server.try_request("POST", "/workspace/se/execute_code/a", Some("{not json"), &[]).unwrap();
    assert_eq!(failure(broken).1, "MALFORMED_JSON");
    let no_code = code(&server, "a", json!({"timeout": 1}));
    assert_eq!(failure(no_code).1, "MALFORMED_JSON");
    let bad_type = code(&server, "a", json!({"code": "1", "timeout": "soon"}));
    assert_eq!(failure(bad_type).1, "INVALID_ARGUMENT");
    let bad_name = server.get("/workspace/se/session/a%20b");
    assert_eq!(failure(bad_name).1, "INVALID_ARGUMENT");
    for path in ["/workspace/se/session/ghost", "/workspace/se/status/ghost", "/workspace/se/files/ghost"] {
        assert_eq!(failure(server.get(path)).0, 404, "{path}");
        assert_eq!(failure(server.get(path)).1, "SESSION_NOT_FOUND", "{path}");
    }
    let deleted = server.request("DELETE", "/workspace/se/session/ghost", None);
    assert_eq!(failure(deleted).1, "SESSION_NOT_FOUND");
    let download = server.get("/workspace/se/download/ghost/a.txt");
    assert_eq!(failure(download).1, "SESSION_NOT_FOUND");
    // This server gives sessions no network, so a session cannot ask for it.
    let networked = server.post("/workspace/se/session/net", &json!({"allow_network": true}));
    assert_eq!(failure(networked).0, 403);
    assert_eq!(
        failure(server.post("/workspace/se/session/net", &json!({"allow_network": true}))).1,
        "NETWORK_DISABLED"
    );
}

#[test]
fn a_bad_sandbox_variable_stops_the_server_and_names_it() {
    for (var, value) in [
        ("SANDBOX_MEMORY_LIMIT", "128MB"),
        ("SANDBOX_TIMEOUT_SECONDS", "0"),
        ("SANDBOX_CPU_QUOTA", "lots"),
        ("SANDBOX_SESSION_TTL", "-5"),
        ("SANDBOX_ALLOW_NETWORK", "maybe"),
    ] {
        let dir = std::env::temp_dir().join(format!("airlock-se-badenv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.toml"), "").unwrap();
        let mut child = Command::new(common::airlock_bin())
            .args(["serve", "--port", "0", "--data-dir"])
            .arg(&dir)
            .env("AIRLOCK_CONFIG", dir.join("config.toml"))
            .env("AIRLOCK_POOL_SIZE", "0")
            .env(var, value)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A server that accepted the value would keep running: it is stopped, and the test fails.
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.code().is_some_and(|c| c != 0), "{var}={value} was accepted: {stderr}");
        assert!(stderr.contains(var), "{var}={value}: {stderr}");
    }
}

#[test]
fn root_sessions_run_code_commands_and_files() {
    let server = Server::start("se-routes", &[]);
    // The seed's own example: code posted to a session nobody created makes it.
    let first = data(code(&server, "test", json!({"code": "print(1 + 1)"})));
    assert_eq!((first["exit_code"].as_i64(), first["stdout"].as_str()), (Some(0), Some("2\n")), "{first}");
    assert!(first["execution_time"].is_number(), "{first}");

    let created = data(server.post("/workspace/se/session/work", &json!({"timeout": 30, "size": "50M"})));
    assert_eq!((created["session_id"].as_str(), created["status"].as_str()), (Some("work"), Some("active")));
    assert_eq!(created["timeout"], 30.0, "{created}");
    let again = server.post("/workspace/se/session/work", &json!({}));
    assert_eq!(failure(again).1, "SESSION_EXISTS");
    assert_eq!(data(server.get("/workspace/se/status/work"))["sandbox_id"], created["sandbox_id"]);

    // Variables persist between calls, as in the native default context.
    data(code(&server, "work", json!({"code": "x = 21"})));
    let answer = data(code(&server, "work", json!({"code": "x * 2", "timeout": 10})));
    assert_eq!(answer["result"]["text/plain"], "42", "{answer}");
    let raised = data(code(&server, "work", json!({"code": "1 / 0"})));
    assert_eq!(raised["exit_code"], 1, "{raised}");
    assert!(raised["stderr"].as_str().unwrap().contains("ZeroDivisionError"), "{raised}");
    let shell =
        data(code(&server, "work", json!({"code": "cd /tmp; echo $((6 * 7))", "script_type": "shell"})));
    assert_eq!(shell["stdout"], "42\n", "{shell}");
    // As the Sandbox Runtime ran it: a script file with arguments, in a fresh interpreter.
    let script = data(code(
        &server,
        "work",
        json!({"code": "import sys\nprint(sys.argv[1:])\nsys.exit(3)", "filename": "job", "args": ["a", "b"]}),
    ));
    assert_eq!((script["stdout"].as_str(), script["exit_code"].as_i64()), (Some("['a', 'b']\n"), Some(3)));

    let line = data(exec(&server, "work", json!({"command": "echo hi; echo oops >&2; exit 4"})));
    assert_eq!((line["stdout"].as_str(), line["stderr"].as_str()), (Some("hi\n"), Some("oops\n")));
    assert_eq!((line["exit_code"].as_i64(), line["returncode"].as_i64()), (Some(4), Some(4)));
    let argv = data(exec(&server, "work", json!({"command": "echo", "args": ["Hello, World!"]})));
    assert_eq!(argv["stdout"], "Hello, World!\n", "{argv}");
    let missing = data(exec(&server, "work", json!({"command": "no-such-program", "args": []})));
    assert_eq!(missing["exit_code"], 127, "{missing}");
    let handler = data(exec(
        &server,
        "work",
        json!({"code": "def handler(event):\n    return {'message': 'Hello, ' + event['name']}",
               "event": {"name": "Sandbox"}}),
    ));
    assert_eq!(handler["result"], json!({"message": "Hello, Sandbox"}), "{handler}");
    let both = exec(&server, "work", json!({"command": "true", "code": "x"}));
    assert_eq!(failure(both).1, "INVALID_ARGUMENT");

    // Files: multipart with a directory `path` after the file, JSON with base64, create.
    let boundary = "se-boundary";
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"data.csv\"\r\n\
         Content-Type: text/csv\r\n\r\na,b\n1,2\n\r\n--{boundary}\r\n\
         Content-Disposition: form-data; name=\"path\"\r\n\r\n/workspace/files/\r\n--{boundary}--\r\n"
    );
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let uploaded = server
        .try_request("POST", "/workspace/se/upload/work", Some(&form), &[("Content-Type", &content_type)])
        .unwrap();
    let uploaded = data(uploaded);
    assert_eq!(
        (uploaded["path"].as_str(), uploaded["size"].as_u64()),
        (Some("/workspace/files/data.csv"), Some(8))
    );
    let encoded = server.post(
        "/workspace/se/upload/work",
        &json!({"filename": "bin/blob", "content": "AAEC/w==", "encoding": "base64"}),
    );
    assert_eq!(data(encoded)["size"], 4);
    let made =
        server.post("/workspace/se/create/work", &json!({"filename": "notes/a.txt", "content": "hello"}));
    assert_eq!(data(made)["path"], "/workspace/notes/a.txt");
    let read = data(code(&server, "work", json!({"code": "open('files/data.csv').read()"})));
    assert_eq!(read["result"]["text/plain"], "'a,b\\n1,2\\n'", "{read}");

    let download = server.get("/workspace/se/download/work/notes/a.txt");
    assert_eq!((download.status, download.body.as_str()), (200, "hello"));
    assert_eq!(download.header("content-disposition"), Some("attachment; filename=\"a.txt\""));
    assert_eq!(server.get("/workspace/se/download/work?path=files/data.csv").body, "a,b\n1,2\n");
    let absent = server.get("/workspace/se/download/work/nope.txt");
    assert_eq!(failure(absent).1, "FILE_NOT_FOUND");

    let top = data(server.get("/workspace/se/files/work"));
    let names: Vec<&str> =
        top["files"].as_array().unwrap().iter().map(|f| f["filename"].as_str().unwrap()).collect();
    assert!(names.contains(&"job.py") && !names.contains(&"notes/a.txt"), "{top}");
    assert!(top["directories"].as_array().unwrap().contains(&json!("notes")), "{top}");
    let deep = data(server.get("/workspace/se/files/work?recursive=true"));
    let csv = deep["files"].as_array().unwrap().iter().find(|f| f["filename"] == "files/data.csv").cloned();
    assert_eq!(
        csv.map(|f| (f["name"].clone(), f["type"].clone(), f["size"].clone())),
        Some((json!("data.csv"), json!("csv"), json!(8))),
        "{deep}"
    );
    let sub = data(server.get("/workspace/se/files/work/notes"));
    assert_eq!(sub["files"][0]["filename"], "notes/a.txt", "{sub}");

    // A paused session (as after a server restart) is resumed by its next use.
    let id = created["sandbox_id"].as_str().unwrap();
    assert_eq!(server.post(&format!("/v1/sandboxes/{id}/pause"), &json!({})).status, 200);
    assert_eq!(data(server.get("/workspace/se/session/work"))["status"], "paused");
    assert_eq!(data(exec(&server, "work", json!({"command": "cat notes/a.txt"})))["stdout"], "hello");
    assert_eq!(data(server.get("/workspace/se/session/work"))["status"], "active");

    let closed = data(server.request("DELETE", "/workspace/se/session/work", None));
    assert_eq!(closed["sandbox_id"], created["sandbox_id"]);
    let native = server.get(&format!("/v1/sandboxes/{}", created["sandbox_id"].as_str().unwrap())).json();
    assert_eq!(native["state"], "terminated", "{native}");
    assert_eq!(failure(server.get("/workspace/se/session/work")).1, "SESSION_NOT_FOUND");
    // A deleted name is free again: a first use makes a fresh session.
    let fresh = data(code(&server, "work", json!({"code": "'x' in globals()"})));
    assert_eq!(fresh["result"]["text/plain"], "False", "{fresh}");
}

#[test]
fn root_timeouts_and_the_memory_limit_answer_with_their_codes() {
    let server = Server::start(
        "se-limits",
        &[("SANDBOX_MEMORY_LIMIT", "98304"), ("SANDBOX_TIMEOUT_SECONDS", "2"), ("SANDBOX_CPU_QUOTA", "0.5")],
    );
    data(code(&server, "busy", json!({"code": "n = 7"})));
    let limits = &sandbox_of(&server, "busy")["limits"];
    assert_eq!((limits["memory_bytes"].as_u64(), limits["cpu_millis"].as_u64()), (Some(96 << 20), Some(500)));
    assert_eq!(data(server.get("/workspace/se/session/busy"))["memory_limit"], 98304);

    // SANDBOX_TIMEOUT_SECONDS applies when the request gives none; the request's wins.
    let slow =
        code(&server, "busy", json!({"code": "import time\nprint('started', flush=True)\ntime.sleep(30)"}));
    let (status, code_name, output) = failure(slow);
    assert_eq!((status, code_name.as_str()), (408, "EXECUTION_TIMEOUT"), "{output}");
    assert_eq!(output["stdout"], "started\n", "{output}");
    let quick = code(&server, "busy", json!({"code": "while True: pass", "timeout": 0.5}));
    assert_eq!(failure(quick).1, "EXECUTION_TIMEOUT");
    let command = exec(&server, "busy", json!({"command": "sleep 30", "timeout": 1}));
    assert_eq!(failure(command).1, "EXECUTION_TIMEOUT");
    // An interrupted run keeps the interpreter's state.
    assert_eq!(data(code(&server, "busy", json!({"code": "n"})))["result"]["text/plain"], "7");

    let hog = code(&server, "busy", json!({"code": "block = b'x' * (400 << 20)", "timeout": 60}));
    let (status, code_name, output) = failure(hog);
    assert_eq!((status, code_name.as_str()), (429, "RESOURCE_LIMIT"), "{output}");
    // A fresh interpreter takes the killed one's place.
    let after = data(code(&server, "busy", json!({"code": "'n' in globals()"})));
    assert_eq!(after["result"]["text/plain"], "False", "{after}");
}

#[test]
fn root_an_expired_session_answers_session_expired_until_it_is_made_again() {
    let server = Server::start("se-ttl", &[("SANDBOX_SESSION_TTL", "1")]);
    let created = data(server.post("/workspace/se/session/brief", &json!({})));
    assert!(created["expires_at"].is_string(), "{created}");
    wait_for(|| server.get("/workspace/se/session/brief").status == 410);
    let (status, name, _) = failure(server.get("/workspace/se/status/brief"));
    assert_eq!((status, name.as_str()), (410, "SESSION_EXPIRED"));
    assert_eq!(failure(code(&server, "brief", json!({"code": "1"}))).1, "SESSION_EXPIRED");
    assert_eq!(failure(server.request("DELETE", "/workspace/se/session/brief", None)).1, "SESSION_EXPIRED");
    let renewed = data(server.post("/workspace/se/session/brief", &json!({"ttl": 600})));
    assert_ne!(renewed["sandbox_id"], created["sandbox_id"]);
    assert_eq!(data(code(&server, "brief", json!({"code": "1 + 1"})))["result"]["text/plain"], "2");
}

#[test]
fn root_two_keys_never_see_each_others_sessions() {
    let mut server = Server::start("se-keys", &[]);
    let alice = server.create_key("alice");
    let bob = server.create_key("bob");
    let as_key = |key: &str, method: &str, path: &str, body: Option<Value>| {
        let text = body.map(|b| b.to_string());
        server.try_request(method, path, text.as_deref(), &[("X-API-Key", key)]).unwrap()
    };
    let anonymous = server
        .try_request("GET", "/workspace/se/session/shared", None, &[("Authorization", "Bearer nope")])
        .unwrap();
    assert_eq!(failure(anonymous).1, "UNAUTHORIZED");
    data(as_key(&alice, "POST", "/workspace/se/execute_code/shared", Some(json!({"code": "secret = 1"}))));
    assert_eq!(failure(as_key(&bob, "GET", "/workspace/se/session/shared", None)).1, "SESSION_NOT_FOUND");
    assert_eq!(failure(as_key(&bob, "DELETE", "/workspace/se/session/shared", None)).1, "SESSION_NOT_FOUND");
    // Bob's first use of the same name makes his own session, which has none of Alice's state.
    let bobs = data(as_key(
        &bob,
        "POST",
        "/workspace/se/execute_code/shared",
        Some(json!({"code": "'secret' in globals()"})),
    ));
    assert_eq!(bobs["result"]["text/plain"], "False", "{bobs}");
    let alices =
        data(as_key(&alice, "POST", "/workspace/se/execute_code/shared", Some(json!({"code": "secret"}))));
    assert_eq!(alices["result"]["text/plain"], "1", "{alices}");
    assert_ne!(alices["sandbox_id"], bobs["sandbox_id"]);
}

#[test]
fn root_the_network_setting_decides_the_sessions_policy() {
    let open = Server::start("se-net-on", &[("SANDBOX_ALLOW_NETWORK", "true")]);
    data(open.post("/workspace/se/session/web", &json!({})));
    let policy = &sandbox_of(&open, "web")["network"];
    assert_eq!(
        (policy["mode"].as_str(), policy["default_action"].as_str()),
        (Some("allowlist"), Some("allow"))
    );
    data(open.post("/workspace/se/session/quiet", &json!({"allow_network": false})));
    assert_eq!(sandbox_of(&open, "quiet")["network"]["mode"], "none");
    drop(open);

    let closed = Server::start("se-net-off", &[]);
    let fetch = "import urllib.request\nurllib.request.urlopen('http://example.com', timeout=10)";
    let (status, name, output) = failure(code(&closed, "offline", json!({"code": fetch})));
    assert_eq!((status, name.as_str()), (403, "NETWORK_DISABLED"), "{output}");
    assert_eq!(output["exit_code"], 1, "{output}");
    assert_eq!(sandbox_of(&closed, "offline")["network"]["mode"], "none");
    // Code that handles the refusal itself succeeds.
    let handled =
        format!("try:\n    {}\nexcept Exception:\n    print('no network')", fetch.replace('\n', "\n    "));
    assert_eq!(data(code(&closed, "offline", json!({"code": handled})))["stdout"], "no network\n");
}
