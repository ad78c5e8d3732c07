//! End-to-end tests of the OpenSandbox execd API (`/opensandbox/execd/{sandbox_id}/...`) on the
//! real `airlock serve`: requests and streams shaped as the OpenSandbox SDKs send and parse
//! them. Sandboxes are made with the native API. Every test starts sandboxes, so every one
//! needs root (`root_*`).

mod common;
mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};
use support::{wait_for, Reply, Server};

/// The execd path of a sandbox.
fn execd(sandbox: &str, path: &str) -> String {
    format!("/opensandbox/execd/{sandbox}{path}")
}

/// The JSON objects of a stream's `data:` lines, in order.
fn stream_events(reply: &Reply) -> Vec<Value> {
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.header("content-type").is_some_and(|t| t.starts_with("text/event-stream")), "{reply:?}");
    reply
        .body
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|data| serde_json::from_str(data.trim()).unwrap_or_else(|e| panic!("{e}: {data}")))
        .collect()
}

/// The events of one type.
fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// The texts of one type of event.
fn texts(events: &[Value], kind: &str) -> Vec<String> {
    of_type(events, kind).iter().map(|e| e["text"].as_str().unwrap_or_default().to_owned()).collect()
}

/// An OpenSandbox error answer's code.
fn os_code(reply: &Reply) -> String {
    let body = reply.json();
    assert!(body["message"].is_string(), "{body}");
    body["code"].as_str().unwrap_or_default().to_owned()
}

fn command(server: &Server, sandbox: &str, body: Value) -> Vec<Value> {
    stream_events(&server.post(&execd(sandbox, "/command"), &body))
}

#[test]
fn root_commands_stream_run_in_background_and_are_interrupted() {
    let server = Server::start("os-execd-commands", &[]);
    let sandbox = server.create_sandbox(&json!({}));

    let events = command(&server, &sandbox, json!({"command": "echo hi; echo oops >&2; printf 'a\\n\\nb'"}));
    assert_eq!(events[0]["type"], "init", "{events:?}");
    let id = events[0]["text"].as_str().unwrap().to_owned();
    assert!(id.starts_with("cmd_"), "{id}");
    assert!(events.iter().all(|e| e["timestamp"].as_i64().is_some_and(|t| t > 0)), "{events:?}");
    assert_eq!(texts(&events, "stdout"), ["hi", "a", "\n", "b"], "one line an event: {events:?}");
    assert_eq!(texts(&events, "stderr"), ["oops"]);
    let last = events.last().unwrap();
    assert_eq!(last["type"], "execution_complete", "{events:?}");
    assert!(last["execution_time"].is_u64(), "{last}");

    let failed = command(&server, &sandbox, json!({"command": "echo before; exit 3"}));
    let error = failed.last().unwrap();
    assert_eq!(error["type"], "error", "{failed:?}");
    assert_eq!(
        (error["error"]["ename"].as_str(), error["error"]["evalue"].as_str()),
        (Some("CommandExecError"), Some("3"))
    );
    assert!(of_type(&failed, "execution_complete").is_empty(), "{failed:?}");

    let options = json!({"command": "pwd; echo $GREETING; [[ -n $BASH_VERSION ]] && echo bash", "cwd": "/tmp",
                         "envs": {"GREETING": "hello"}});
    assert_eq!(texts(&command(&server, &sandbox, options), "stdout"), ["/tmp", "hello", "bash"]);
    let argv = command(&server, &sandbox, json!({"argv": ["/bin/echo", "$NOT_EXPANDED"]}));
    assert_eq!(texts(&argv, "stdout"), ["$NOT_EXPANDED"]);
    let timed_out = command(&server, &sandbox, json!({"command": "sleep 30", "timeout": 300}));
    let error = timed_out.last().unwrap();
    assert_eq!(
        (error["type"].as_str(), error["error"]["evalue"].as_str()),
        (Some("error"), Some("137")),
        "{timed_out:?}"
    );

    // The code-interpreter SDK's readiness probe for a Jupyter server is answered by the agent.
    let probe = "bash -c 'exec 3<>/dev/tcp/127.0.0.1/${JUPYTER_PORT:-44771}' && exit 0 || exit 1";
    let answered = command(&server, &sandbox, json!({"command": probe}));
    assert_eq!(answered.last().unwrap()["type"], "execution_complete", "{answered:?}");

    // Background: the stream ends at once; status and logs follow the command.
    let started = command(
        &server,
        &sandbox,
        json!({"command": "echo one; echo two >&2; sleep 0.3; echo three", "background": true}),
    );
    assert_eq!(
        started.iter().map(|e| e["type"].as_str().unwrap()).collect::<Vec<_>>(),
        ["init", "execution_complete"]
    );
    let id = started[0]["text"].as_str().unwrap().to_owned();
    let status = |id: &str| server.get(&execd(&sandbox, &format!("/command/status/{id}"))).json();
    wait_for(|| status(&id)["running"] == false);
    let done = status(&id);
    assert_eq!((done["exit_code"].as_i64(), done["id"].as_str()), (Some(0), Some(id.as_str())), "{done}");
    assert_eq!(done["content"], "echo one; echo two >&2; sleep 0.3; echo three");
    assert!(done["started_at"].as_str().unwrap().ends_with('Z') && done["finished_at"].is_string(), "{done}");
    let logs = server.get(&execd(&sandbox, &format!("/command/{id}/logs")));
    assert_eq!(logs.status, 200, "{}", logs.body);
    assert_eq!(logs.body, "one\ntwo\nthree\n");
    assert_eq!(logs.header("EXECD-COMMANDS-TAIL-CURSOR"), Some("14"));
    let tail = server.get(&execd(&sandbox, &format!("/command/{id}/logs?cursor=8")));
    assert_eq!((tail.body.as_str(), tail.header("EXECD-COMMANDS-TAIL-CURSOR")), ("three\n", Some("14")));

    let long = command(&server, &sandbox, json!({"command": "sleep 60", "background": true}));
    let long_id = long[0]["text"].as_str().unwrap();
    let interrupted = server.request("DELETE", &execd(&sandbox, &format!("/command?id={long_id}")), None);
    assert_eq!(interrupted.status, 200, "{}", interrupted.body);
    let killed = status(long_id);
    assert_eq!(
        (killed["running"].as_bool(), killed["exit_code"].as_i64()),
        (Some(false), Some(137)),
        "{killed}"
    );
    let again = server.request("DELETE", &execd(&sandbox, &format!("/command?id={long_id}")), None);
    assert_eq!((again.status, os_code(&again).as_str()), (409, "COMMAND_NOT_RUNNING"));

    let missing = server.get(&execd(&sandbox, "/command/status/cmd_nope"));
    assert_eq!((missing.status, os_code(&missing).as_str()), (404, "COMMAND_NOT_FOUND"));
    let bad = server.try_request("POST", &execd(&sandbox, "/command"), Some("{nope"), &[]).unwrap();
    assert_eq!((bad.status, os_code(&bad).as_str()), (400, "MALFORMED_JSON"));
    let empty = server.post(&execd(&sandbox, "/command"), &json!({"command": "  "}));
    assert_eq!((empty.status, os_code(&empty).as_str()), (400, "INVALID_ARGUMENT"));
    let uid = server.post(&execd(&sandbox, "/command"), &json!({"command": "id", "uid": 0}));
    assert_eq!((uid.status, os_code(&uid).as_str()), (400, "INVALID_ARGUMENT"));
}

#[test]
fn root_bash_sessions_keep_their_shell() {
    let server = Server::start("os-execd-sessions", &[]);
    let sandbox = server.create_sandbox(&json!({}));

    let created = server.post(&execd(&sandbox, "/session"), &json!({"cwd": "/tmp"}));
    assert_eq!(created.status, 200, "{}", created.body);
    let session = created.json()["session_id"].as_str().unwrap().to_owned();
    let run = |body: Value| {
        stream_events(&server.post(&execd(&sandbox, &format!("/session/{session}/run")), &body))
    };

    let first = run(json!({"command": "N=5; greet() { echo hi $1; }; cd /workspace"}));
    assert_eq!(first[0]["text"], session.as_str(), "{first:?}");
    assert_eq!(first.last().unwrap()["type"], "execution_complete", "{first:?}");
    let second = run(json!({"command": "pwd; echo $N; greet you"}));
    assert_eq!(texts(&second, "stdout"), ["/workspace", "5", "hi you"], "{second:?}");
    let moved = run(json!({"command": "pwd", "cwd": "/tmp"}));
    assert_eq!(texts(&moved, "stdout"), ["/tmp"]);
    let failed = run(json!({"command": "false"}));
    assert_eq!(failed.last().unwrap()["error"]["evalue"], "1", "{failed:?}");

    let nowhere = server.post(
        &execd(&sandbox, &format!("/session/{session}/run")),
        &json!({"command": "pwd", "cwd": "/nowhere"}),
    );
    assert_eq!((nowhere.status, os_code(&nowhere).as_str()), (400, "INVALID_ARGUMENT"));
    let deleted = server.request("DELETE", &execd(&sandbox, &format!("/session/{session}")), None);
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    let gone = server.post(&execd(&sandbox, &format!("/session/{session}/run")), &json!({"command": "pwd"}));
    assert_eq!((gone.status, os_code(&gone).as_str()), (404, "CONTEXT_NOT_FOUND"));
    let empty = server.try_request("POST", &execd(&sandbox, "/session"), None, &[]).unwrap();
    assert_eq!(empty.status, 200, "an empty body takes the defaults: {}", empty.body);
}

#[test]
fn root_code_contexts_keep_state_and_are_interrupted() {
    let server = Server::start("os-execd-code", &[]);
    let sandbox = server.create_sandbox(&json!({}));

    let created = server.post(&execd(&sandbox, "/code/context"), &json!({"language": "python"}));
    assert_eq!(created.status, 200, "{}", created.body);
    let context = created.json();
    assert_eq!(context["language"], "python");
    let id = context["id"].as_str().unwrap().to_owned();
    let code = |code: &str, context: Value| {
        stream_events(&server.post(&execd(&sandbox, "/code"), &json!({"code": code, "context": context})))
    };
    let here = json!({"id": id, "language": "python"});

    let first = code("x = 41\nprint('set')", here.clone());
    assert_eq!((first[0]["type"].as_str(), first[0]["text"].as_str()), (Some("init"), Some(id.as_str())));
    assert_eq!(texts(&first, "stdout").concat(), "set\n");
    let second = code("x + 1", here.clone());
    let result = of_type(&second, "result");
    assert_eq!(result.len(), 1, "{second:?}");
    assert_eq!(result[0]["results"]["text"], "42", "{second:?}");
    assert_eq!(of_type(&second, "execution_count")[0]["execution_count"], 2, "{second:?}");
    assert_eq!(second.last().unwrap()["type"], "execution_complete");

    let raised = code("1 / 0", here.clone());
    let error = &of_type(&raised, "error")[0]["error"];
    assert_eq!(
        (error["ename"].as_str(), error["evalue"].as_str()),
        (Some("ZeroDivisionError"), Some("division by zero"))
    );
    assert!(error["traceback"].as_array().is_some_and(|t| !t.is_empty()), "{error}");

    let by_language = code("print(6 * 7)", json!({"language": "python"}));
    assert_eq!(
        (by_language[0]["text"].as_str(), texts(&by_language, "stdout").concat()),
        (Some("python"), "42\n".to_owned())
    );
    let javascript = code("[1, 2].map(n => n * 2)", json!({"language": "javascript"}));
    assert_eq!(of_type(&javascript, "result")[0]["results"]["text"], "[ 2, 4 ]", "{javascript:?}");
    let plain_shell =
        stream_events(&server.post(&execd(&sandbox, "/code"), &json!({"code": "echo from-shell"})));
    assert_eq!(texts(&plain_shell, "stdout"), ["from-shell"]);

    // An interrupt stops the run; the context keeps its state.
    let runner = server.post_in_background(
        &execd(&sandbox, "/code"),
        &json!({"code": "import time\nwhile True: time.sleep(0.05)", "context": here}),
    );
    wait_for(|| server.get(&format!("/v1/sandboxes/{sandbox}/contexts/{id}")).json()["running"] == true);
    let interrupted = server.request("DELETE", &execd(&sandbox, &format!("/code?id={id}")), None);
    assert_eq!(interrupted.status, 200, "{}", interrupted.body);
    let stopped = stream_events(&runner.join().unwrap());
    assert_eq!(of_type(&stopped, "error")[0]["error"]["ename"], "KeyboardInterrupt", "{stopped:?}");
    assert_eq!(of_type(&code("x", here.clone()), "result")[0]["results"]["text"], "41");

    let listed = server.get(&execd(&sandbox, "/code/contexts?language=python")).json();
    let ids: Vec<&str> = listed.as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{listed}");
    assert!(ids.contains(&id.as_str()) && ids.contains(&"python"), "{listed}");
    assert_eq!(
        server.get(&execd(&sandbox, &format!("/code/contexts/{id}"))).json(),
        json!({"id": id, "language": "python"})
    );
    let deleted = server.request("DELETE", &execd(&sandbox, &format!("/code/contexts/{id}")), None);
    assert_eq!(deleted.status, 200);
    let gone = server.get(&execd(&sandbox, &format!("/code/contexts/{id}")));
    assert_eq!((gone.status, os_code(&gone).as_str()), (404, "CONTEXT_NOT_FOUND"));
    assert_eq!(
        server.request("DELETE", &execd(&sandbox, "/code/contexts?language=python"), None).status,
        200
    );
    assert_eq!(server.get(&execd(&sandbox, "/code/contexts?language=python")).json(), json!([]));
    assert_eq!(
        server.get(&execd(&sandbox, "/code/contexts?language=javascript")).json().as_array().unwrap().len(),
        1
    );

    let unknown = server.post(&execd(&sandbox, "/code/context"), &json!({"language": "cobol"}));
    assert_eq!((unknown.status, os_code(&unknown).as_str()), (400, "INVALID_ARGUMENT"));
}

/// A multipart body of (metadata, file) pairs, as the SDK writes it.
fn multipart(files: &[(&str, Option<u32>, &str)]) -> (String, String) {
    let boundary = "airlock-test-boundary".to_owned();
    let mut body = String::new();
    for (path, mode, content) in files {
        let metadata = json!({"path": path, "owner": null, "group": null, "mode": mode});
        body += &format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"; filename=\"metadata\"\r\n\
             Content-Type: application/json\r\n\r\n{metadata}\r\n"
        );
        body += &format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n{content}\r\n"
        );
    }
    body += &format!("--{boundary}--\r\n");
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[test]
fn root_files_and_directories() {
    let server = Server::start("os-execd-files", &[]);
    let sandbox = server.create_sandbox(&json!({}));
    let (content_type, body) = multipart(&[
        ("/workspace/docs/a.txt", Some(644), "one\ntwo\nthree\n"),
        ("/workspace/run.sh", Some(755), "echo ran"),
    ]);
    let uploaded = server
        .try_request(
            "POST",
            &execd(&sandbox, "/files/upload"),
            Some(&body),
            &[("Content-Type", &content_type)],
        )
        .unwrap();
    assert_eq!(uploaded.status, 200, "{}", uploaded.body);

    let info =
        server.get(&execd(&sandbox, "/files/info?path=/workspace/docs/a.txt&path=/workspace/run.sh")).json();
    let a = &info["/workspace/docs/a.txt"];
    assert_eq!(
        (a["size"].as_u64(), a["mode"].as_u64(), a["type"].as_str()),
        (Some(14), Some(644), Some("file")),
        "{info}"
    );
    assert!(a["modified_at"].as_str().unwrap().ends_with('Z') && a["created_at"].is_string(), "{a}");
    assert_eq!(info["/workspace/run.sh"]["mode"], 755, "{info}");

    let whole = server.get(&execd(&sandbox, "/files/download?path=/workspace/docs/a.txt"));
    assert_eq!((whole.status, whole.body.as_str()), (200, "one\ntwo\nthree\n"));
    let part = server
        .try_request(
            "GET",
            &execd(&sandbox, "/files/download?path=/workspace/docs/a.txt"),
            None,
            &[("Range", "bytes=4-6")],
        )
        .unwrap();
    assert_eq!((part.status, part.body.as_str()), (206, "two"));
    let beyond = server
        .try_request(
            "GET",
            &execd(&sandbox, "/files/download?path=/workspace/docs/a.txt"),
            None,
            &[("Range", "bytes=99-")],
        )
        .unwrap();
    assert_eq!((beyond.status, os_code(&beyond).as_str()), (416, "RANGE_NOT_SATISFIABLE"));
    assert_eq!(beyond.header("content-range"), Some("bytes */14"));
    let lines = server.get(&execd(&sandbox, "/files/download?path=/workspace/docs/a.txt&offset=2&limit=2"));
    assert_eq!((lines.status, lines.body.as_str()), (200, "two\nthree\n"));

    let made = server.post(
        &execd(&sandbox, "/directories"),
        &json!({"/workspace/x/y": {"mode": 700, "owner": null, "group": null}}),
    );
    assert_eq!(made.status, 200, "{}", made.body);
    let listed = server.get(&execd(&sandbox, "/directories/list?path=/workspace&depth=2")).json();
    let entries: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["path"].as_str().unwrap(), e["type"].as_str().unwrap()))
        .collect();
    assert!(
        entries.contains(&("/workspace/x/y", "directory"))
            && entries.contains(&("/workspace/docs/a.txt", "file")),
        "{listed}"
    );
    assert_eq!(
        listed.as_array().unwrap().iter().find(|e| e["path"] == "/workspace/x/y").unwrap()["mode"],
        700
    );
    let shallow = server.get(&execd(&sandbox, "/directories/list?path=/workspace")).json();
    assert!(
        shallow.as_array().unwrap().iter().all(|e| e["path"] != "/workspace/x/y"),
        "depth 1 by default: {shallow}"
    );

    let moved = server.post(
        &execd(&sandbox, "/files/mv"),
        &json!([{"src": "/workspace/docs/a.txt", "dest": "/workspace/x/b.txt"}]),
    );
    assert_eq!(moved.status, 200, "{}", moved.body);
    let found = server.get(&execd(&sandbox, "/files/search?path=/workspace&pattern=*.txt")).json();
    let paths: Vec<&str> = found.as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/workspace/x/b.txt"]);
    let everything = server.get(&execd(&sandbox, "/files/search?path=/workspace")).json();
    assert_eq!(everything.as_array().unwrap().len(), 2, "files only, `**` by default: {everything}");

    let chmod =
        server.post(&execd(&sandbox, "/files/permissions"), &json!({"/workspace/x/b.txt": {"mode": 600}}));
    assert_eq!(chmod.status, 200, "{}", chmod.body);
    assert_eq!(
        server.get(&execd(&sandbox, "/files/info?path=/workspace/x/b.txt")).json()["/workspace/x/b.txt"]
            ["mode"],
        600
    );
    let owner = server.post(
        &execd(&sandbox, "/files/permissions"),
        &json!({"/workspace/x/b.txt": {"mode": 600, "owner": "root"}}),
    );
    assert_eq!((owner.status, os_code(&owner).as_str()), (400, "INVALID_ARGUMENT"));

    let replaced = server.post(
        &execd(&sandbox, "/files/replace?verbose=true"),
        &json!({"/workspace/x/b.txt": {"old": "two", "new": "2"}}),
    );
    assert_eq!(replaced.json(), json!({"/workspace/x/b.txt": {"replacedCount": 1}}));
    assert_eq!(
        server.get(&execd(&sandbox, "/files/download?path=/workspace/x/b.txt")).body,
        "one\n2\nthree\n"
    );

    let removed = server.request(
        "DELETE",
        &execd(&sandbox, "/files?path=/workspace/x/b.txt&path=/workspace/run.sh"),
        None,
    );
    assert_eq!(removed.status, 200, "{}", removed.body);
    let missing = server.get(&execd(&sandbox, "/files/info?path=/workspace/run.sh"));
    assert_eq!((missing.status, os_code(&missing).as_str()), (404, "FILE_NOT_FOUND"));
    let dirs = server.request(
        "DELETE",
        &execd(&sandbox, "/directories?path=/workspace/x&path=/workspace/docs"),
        None,
    );
    assert_eq!(dirs.status, 200, "{}", dirs.body);
    assert_eq!(server.get(&execd(&sandbox, "/directories/list?path=/workspace")).json(), json!([]));
    let outside = server.get(&execd(&sandbox, "/files/download?path=/workspace/../../etc/../nope"));
    assert_eq!(outside.status, 404, "{}", outside.body);
}

/// The first event of a stream that does not end.
fn first_event(server: &Server, path: &str) -> Value {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let key = server.key.as_deref().unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {key}\r\nConnection: close\r\n\r\n")
        .unwrap();
    let reader = BufReader::new(stream);
    let line = reader.lines().map(Result::unwrap).find(|l| l.contains("data:")).unwrap();
    let data = &line[line.find("data:").unwrap() + 5..];
    serde_json::from_str(data.trim()).unwrap()
}

#[test]
fn root_ping_metrics_and_who_may_call() {
    let mut server = Server::start("os-execd-ping", &[]);
    let key = server.create_key("owner");
    let other = server.create_key("other");
    let sandbox = server.create_sandbox(&json!({"limits": {"memory_bytes": 256 << 20}}));

    let ping = server.try_request("GET", &execd(&sandbox, "/ping"), None, &[("X-API-Key", &key)]).unwrap();
    assert_eq!(ping.status, 200, "{}", ping.body);
    let foreign =
        server.try_request("GET", &execd(&sandbox, "/ping"), None, &[("X-API-Key", &other)]).unwrap();
    assert_eq!((foreign.status, os_code(&foreign).as_str()), (404, "SANDBOX_NOT_FOUND"));
    let nobody = request_without_key(&server, &execd(&sandbox, "/ping"), &[]);
    assert_eq!(nobody.status, 401, "{}", nobody.body);
    // The token the lifecycle API hands out with the endpoint stands in for the key.
    let endpoint = server.get(&format!("/opensandbox/v1/sandboxes/{sandbox}/endpoints/44772")).json();
    let token = endpoint["headers"]["x-execd-access-token"].as_str().unwrap_or_else(|| panic!("{endpoint}"));
    let with_token =
        request_without_key(&server, &execd(&sandbox, "/ping"), &[("X-EXECD-ACCESS-TOKEN", token)]);
    assert_eq!(with_token.status, 200, "{}", with_token.body);
    let wrong_token =
        request_without_key(&server, &execd(&sandbox, "/ping"), &[("X-EXECD-ACCESS-TOKEN", "nope")]);
    assert_ne!(wrong_token.status, 200, "{}", wrong_token.body);
    let unknown = server.get(&execd("sbx_nope", "/ping"));
    assert_eq!((unknown.status, os_code(&unknown).as_str()), (404, "SANDBOX_NOT_FOUND"));

    // A busy process shows in the CPU use; memory is the sandbox's processes' against its limit.
    let busy = command(
        &server,
        &sandbox,
        json!({"command": "timeout 20 sh -c 'while :; do :; done'", "background": true}),
    );
    let metrics = server.get(&execd(&sandbox, "/metrics")).json();
    assert_eq!(metrics["mem_total_mib"], 256.0, "{metrics}");
    let used = metrics["mem_used_mib"].as_f64().unwrap();
    assert!(used > 0.0 && used < 256.0, "{metrics}");
    assert!(metrics["cpu_count"].as_f64().unwrap() >= 1.0, "{metrics}");
    assert!(metrics["cpu_used_pct"].as_f64().unwrap() > 0.0, "{metrics}");
    assert!(metrics["timestamp"].as_i64().unwrap() > 0, "{metrics}");
    let watched = first_event(&server, &execd(&sandbox, "/metrics/watch"));
    assert_eq!(watched["mem_total_mib"], 256.0, "{watched}");
    let busy_id = busy[0]["text"].as_str().unwrap();
    assert_eq!(
        server.request("DELETE", &execd(&sandbox, &format!("/command?id={busy_id}")), None).status,
        200
    );

    let paused = server.post(&format!("/v1/sandboxes/{sandbox}/pause"), &json!({}));
    assert_eq!(paused.status, 200, "{}", paused.body);
    let asleep = server.get(&execd(&sandbox, "/ping"));
    assert_eq!((asleep.status, os_code(&asleep).as_str()), (503, "AGENT_UNAVAILABLE"));
}

/// A GET that carries no API key, only `headers`.
fn request_without_key(server: &Server, path: &str, headers: &[(&str, &str)]) -> Reply {
    support::request_to(server.port, None, "GET", path, None, headers).unwrap()
}
