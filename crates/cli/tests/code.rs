//! End-to-end tests of code execution on the real `airlock serve`: contexts in Python,
//! JavaScript and Bash, runs collected and streamed, interrupts and restarts, handler mode, and
//! one-shot runs. Every test starts sandboxes, so every one needs root (`root_*`).

mod common;
mod support;

use serde_json::{json, Value};
use support::{sse_events, Server};

/// Run code in a sandbox and collect the answer; panics unless the request succeeds.
fn run(server: &Server, sandbox: &str, body: Value) -> Value {
    let reply = server.post(&format!("/v1/sandboxes/{sandbox}/code"), &body);
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

fn python(server: &Server, sandbox: &str, code: &str) -> Value {
    run(server, sandbox, json!({ "code": code }))
}

fn text_result(answer: &Value) -> &str {
    answer["result"]["text/plain"].as_str().unwrap_or_else(|| panic!("no text/plain result: {answer}"))
}

#[test]
fn root_python_state_values_errors_and_streams() {
    let server = Server::start("code-python", &[]);
    let sandbox = server.create_sandbox(&json!({}));

    let first = python(&server, &sandbox, "x = 40\nprint('set', x)");
    assert_eq!(
        (first["status"].as_str(), first["stdout"].as_str()),
        (Some("ok"), Some("set 40\n")),
        "{first}"
    );
    assert_eq!(first["result"], Value::Null, "an assignment has no value: {first}");
    assert_eq!(first["context"], "python");
    assert_eq!(first["execution_count"], 1);

    let second = python(&server, &sandbox, "def f(n):\n    return n + 2\nf(x)");
    assert_eq!(text_result(&second), "42", "{second}");
    assert_eq!(second["execution_count"], 2);

    let html = python(
        &server,
        &sandbox,
        "class Table:\n    def _repr_html_(self):\n        return '<table><tr><td>1</td></tr></table>'\nTable()",
    );
    assert_eq!(html["result"]["text/html"], "<table><tr><td>1</td></tr></table>", "{html}");
    assert!(text_result(&html).contains("Table object"), "{html}");

    let shown = python(&server, &sandbox, "display(Table(), 'note')\n7");
    let results = shown["results"].as_array().unwrap();
    assert_eq!(results.len(), 3, "{shown}");
    assert_eq!(
        (results[0]["main"].as_bool(), results[0]["data"]["text/html"].is_string()),
        (Some(false), true)
    );
    assert_eq!(
        (results[1]["main"].as_bool(), results[1]["data"]["text/plain"].as_str()),
        (Some(false), Some("'note'"))
    );
    assert_eq!((results[2]["main"].as_bool(), text_result(&shown)), (Some(true), "7"));

    let failed = python(&server, &sandbox, "y = 1\n1 / 0");
    assert_eq!(failed["status"], "error", "{failed}");
    assert_eq!(
        (failed["error"]["name"].as_str(), failed["error"]["value"].as_str()),
        (Some("ZeroDivisionError"), Some("division by zero")),
        "{failed}"
    );
    let traceback = failed["error"]["traceback"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect::<String>();
    assert!(traceback.contains("1 / 0"), "the traceback shows the cell's line: {traceback}");
    assert!(!traceback.contains("kernel"), "the traceback shows no kernel frames: {traceback}");
    let after_error = python(&server, &sandbox, "x + y");
    assert_eq!(text_result(&after_error), "41", "state survives an error: {after_error}");

    let syntax = python(&server, &sandbox, "def broken(:\n    pass");
    assert_eq!(syntax["error"]["name"], "SyntaxError", "{syntax}");

    let stdin = python(&server, &sandbox, "try:\n    input()\nexcept EOFError:\n    print('eof')");
    assert_eq!(stdin["stdout"], "eof\n", "input() gets end of file at once: {stdin}");

    let exited = python(&server, &sandbox, "import sys\nsys.exit(3)");
    assert_eq!(exited["error"]["name"], "SystemExit", "{exited}");
    assert_eq!(text_result(&python(&server, &sandbox, "x")), "40", "sys.exit keeps the context");

    // Streamed: output events come as they are written, before the end. (Output written to
    // both streams at once may arrive in either order: they are separate pipes.)
    let code =
        "import sys, time\nprint('a')\ntime.sleep(0.2)\nprint('b', file=sys.stderr)\ntime.sleep(0.2)\n\
                print('c')\nx * 2";
    let reply = server.post(&format!("/v1/sandboxes/{sandbox}/code"), &json!({"code": code, "stream": true}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let events = sse_events(&reply.body);
    let mut names: Vec<&str> = events.iter().map(|(name, _, _)| name.as_str()).collect();
    names.dedup();
    assert_eq!(names, ["stdout", "stderr", "stdout", "result", "end"], "{}", reply.body);
    let ids: Vec<u64> = events.iter().map(|(_, id, _)| id.unwrap()).collect();
    assert_eq!(ids, (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(events[0].2["data"], "a\n");
    let (result, end) = (&events[events.len() - 2].2, &events[events.len() - 1].2);
    assert_eq!(result["data"]["text/plain"], "80");
    assert_eq!((end["status"].as_str(), end["execution_count"].as_u64()), (Some("ok"), Some(11)), "{end}");
    assert!(end["usage"]["duration_ms"].is_u64(), "{end}");
}

#[test]
fn root_python_figures_render_as_png() {
    let server = Server::start("code-figures", &[]);
    let sandbox = server.create_sandbox(&json!({}));
    let answer = python(
        &server,
        &sandbox,
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()",
    );
    assert_eq!(answer["status"], "ok", "{answer}");
    assert_eq!(answer["stderr"], "", "no backend warnings: {answer}");
    let figures: Vec<&Value> =
        answer["results"].as_array().unwrap().iter().filter(|r| r["data"]["image/png"].is_string()).collect();
    assert_eq!(figures.len(), 1, "{answer}");
    let png = figures[0]["data"]["image/png"].as_str().unwrap();
    // base64 of the PNG signature \x89PNG.
    assert!(png.starts_with("iVBORw0KGgo"), "{}", &png[..png.len().min(40)]);
    // A figure left open at the end of the cell is shown too.
    let open = python(&server, &sandbox, "fig = plt.figure()\nplt.bar([1], [2])\nNone");
    assert!(open["results"].as_array().unwrap().iter().any(|r| r["data"]["image/png"].is_string()), "{open}");
}

#[test]
fn root_timeouts_interrupt_and_runaway_code_restarts_its_context() {
    let server = Server::start("code-timeout", &[]);
    let sandbox = server.create_sandbox(&json!({}));
    python(&server, &sandbox, "kept = 'still here'");

    let slept = run(&server, &sandbox, json!({"code": "import time\ntime.sleep(60)", "timeout_ms": 500}));
    assert_eq!(slept["status"], "timeout", "{slept}");
    assert_eq!(slept["error"]["name"], "KeyboardInterrupt", "{slept}");
    assert_eq!(slept["code"], Value::Null, "an interrupt that works restarts nothing: {slept}");
    assert!(slept["usage"]["duration_ms"].as_u64().unwrap() < 30_000, "{slept}");
    assert_eq!(text_result(&python(&server, &sandbox, "kept")), "'still here'");

    let stubborn = "while True:\n    try:\n        while True:\n            pass\n    except KeyboardInterrupt:\n        pass";
    let restarted = run(&server, &sandbox, json!({"code": stubborn, "timeout_ms": 300}));
    assert_eq!(
        (restarted["status"].as_str(), restarted["code"].as_str()),
        (Some("timeout"), Some("CONTEXT_RESTARTED")),
        "{restarted}"
    );
    let fresh = python(&server, &sandbox, "kept");
    assert_eq!(fresh["error"]["name"], "NameError", "a restarted context starts empty: {fresh}");
    assert_eq!(fresh["execution_count"], 1, "{fresh}");
    let context = server.get(&format!("/v1/sandboxes/{sandbox}/contexts/python")).json();
    assert_eq!(context["restarts"], 1, "{context}");

    // An interrupt request does what the timeout does, while the run goes on.
    let path = format!("/v1/sandboxes/{sandbox}/code");
    let runner = server.post_in_background(&path, &json!({"code": "import time\nkept = 1\ntime.sleep(60)"}));
    support::wait_for(|| {
        server.get(&format!("/v1/sandboxes/{sandbox}/contexts/python")).json()["running"] == true
    });
    let interrupt = server.post(&format!("/v1/sandboxes/{sandbox}/contexts/python/interrupt"), &json!({}));
    assert_eq!(interrupt.status, 204, "{}", interrupt.body);
    let interrupted = runner.join().unwrap().json();
    assert_eq!(interrupted["status"], "interrupted", "{interrupted}");
    assert_eq!(text_result(&python(&server, &sandbox, "kept")), "1");

    // A process the code left behind dies with a restart.
    let killed = run(&server, &sandbox, json!({"code": "import os\nos._exit(1)"}));
    assert_eq!(
        (killed["status"].as_str(), killed["code"].as_str()),
        (Some("context_lost"), Some("CONTEXT_LOST")),
        "{killed}"
    );
    assert_eq!(python(&server, &sandbox, "1 + 1")["result"]["text/plain"], "2");

    let metrics = server.get("/metrics").body;
    for (status, count) in [("timeout", 2), ("interrupted", 1), ("context_lost", 1)] {
        let line = format!("airlock_code_runs_total{{status=\"{status}\"}} {count}\n");
        assert!(metrics.contains(&line), "{line}: {metrics}");
    }
}

#[test]
fn root_output_is_capped_per_run() {
    let server = Server::start("code-output", &[]);
    let sandbox = server.create_sandbox(&json!({}));
    let flood = run(
        &server,
        &sandbox,
        json!({"code": "import sys\nsys.stdout.write('x' * 1_000_000)\n'done'", "max_output_bytes": 65536}),
    );
    assert_eq!(flood["status"], "ok", "{}", &flood["status"]);
    assert_eq!(flood["output_truncated"], true);
    assert_eq!(flood["stdout"].as_str().unwrap().len(), 65536);
    assert_eq!(flood["usage"]["stdout_bytes"], 1_000_000);
    assert_eq!(flood["result"]["text/plain"], "'done'");
    let next = python(&server, &sandbox, "print('small')");
    assert_eq!((next["stdout"].as_str(), next["output_truncated"].as_bool()), (Some("small\n"), Some(false)));
}

#[test]
fn root_bash_and_javascript_keep_their_state() {
    let server = Server::start("code-langs", &[]);
    let sandbox = server.create_sandbox(&json!({}));
    let bash = |code: &str| run(&server, &sandbox, json!({"code": code, "language": "bash"}));
    assert_eq!(bash("mkdir -p /tmp/work && cd /tmp/work && greeting=hello")["exit_code"], 0);
    let kept = bash("pwd; echo $greeting");
    assert_eq!(kept["stdout"], "/tmp/work\nhello\n", "{kept}");
    assert_eq!(bash("shout() { echo \"${1^^}\"; }")["status"], "ok");
    assert_eq!(bash("shout quiet")["stdout"], "QUIET\n");
    let read = bash("read line; echo \"read: $?\"");
    assert_eq!(read["stdout"], "read: 1\n", "stdin is at its end at once: {read}");
    let failed = bash("false");
    assert_eq!((failed["status"].as_str(), failed["exit_code"].as_i64()), (Some("ok"), Some(1)), "{failed}");
    let slept = run(&server, &sandbox, json!({"code": "sleep 60", "language": "bash", "timeout_ms": 300}));
    assert_eq!(
        (slept["status"].as_str(), slept["exit_code"].as_i64()),
        (Some("timeout"), Some(130)),
        "{slept}"
    );
    assert_eq!(bash("echo $greeting")["stdout"], "hello\n");

    let js = |code: &str| run(&server, &sandbox, json!({"code": code, "language": "javascript"}));
    assert_eq!(js("let counter = 41;")["status"], "ok");
    assert_eq!(text_result(&js("counter += 1; counter")), "42");
    let awaited = js("const later = await new Promise(r => setTimeout(() => r('done'), 10)); later");
    assert_eq!(text_result(&awaited), "'done'", "{awaited}");
    assert_eq!(text_result(&js("later + counter")), "'done42'");
    let thrown = js("null.x");
    assert_eq!(thrown["error"]["name"], "TypeError", "{thrown}");
    assert_eq!(js("console.log('out', counter)")["stdout"], "out 42\n");
    let spun = run(
        &server,
        &sandbox,
        json!({"code": "while (true) {}", "language": "javascript", "timeout_ms": 300}),
    );
    assert_eq!(spun["status"], "timeout", "{spun}");
    assert_eq!(text_result(&js("counter")), "42", "an interrupted node context keeps its state");
}

#[test]
fn root_contexts_are_separate_and_managed() {
    let server = Server::start("code-contexts", &[]);
    let sandbox = server.create_sandbox(&json!({}));
    let contexts: Vec<String> = (0..10)
        .map(|i| {
            let reply = server.post(
                &format!("/v1/sandboxes/{sandbox}/contexts"),
                &json!({"language": "python", "env": {"SLOT": i.to_string()}}),
            );
            assert_eq!(reply.status, 201, "{}", reply.body);
            reply.json()["id"].as_str().unwrap().to_owned()
        })
        .collect();
    for (i, context) in contexts.iter().enumerate() {
        let set = run(&server, &sandbox, json!({"context": context, "code": format!("secret = {i}")}));
        assert_eq!(set["status"], "ok", "{set}");
    }
    for (i, context) in contexts.iter().enumerate() {
        let read = run(
            &server,
            &sandbox,
            json!({"context": context, "code": "import os\n(secret, os.environ['SLOT'], [n for n in globals() if n == 'secret'])"}),
        );
        assert_eq!(text_result(&read), format!("({i}, '{i}', ['secret'])"), "{read}");
    }
    let placed = server
        .post(&format!("/v1/sandboxes/{sandbox}/contexts"), &json!({"language": "bash", "cwd": "/tmp"}));
    assert_eq!(placed.status, 201, "{}", placed.body);
    let placed_id = placed.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(run(&server, &sandbox, json!({"context": placed_id, "code": "pwd"}))["stdout"], "/tmp\n");
    let default = python(&server, &sandbox, "'secret' in globals()");
    assert_eq!(text_result(&default), "False", "the default context sees no other context's variables");

    let list = server.get(&format!("/v1/sandboxes/{sandbox}/contexts")).json();
    assert_eq!(list["items"].as_array().unwrap().len(), 12, "{list}");
    let one = server.get(&format!("/v1/sandboxes/{sandbox}/contexts/{}", contexts[0])).json();
    assert_eq!(
        (one["language"].as_str(), one["execution_count"].as_u64()),
        (Some("python"), Some(2)),
        "{one}"
    );

    let restarted =
        server.post(&format!("/v1/sandboxes/{sandbox}/contexts/{}/restart", contexts[0]), &json!({}));
    assert_eq!(restarted.status, 200, "{}", restarted.body);
    assert_eq!(restarted.json()["restarts"], 1);
    let gone = run(&server, &sandbox, json!({"context": contexts[0], "code": "secret"}));
    assert_eq!(gone["error"]["name"], "NameError", "{gone}");

    let deleted =
        server.request("DELETE", &format!("/v1/sandboxes/{sandbox}/contexts/{}", contexts[1]), None);
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    let missing =
        server.post(&format!("/v1/sandboxes/{sandbox}/code"), &json!({"context": contexts[1], "code": "1"}));
    assert_eq!((missing.status, missing.code()), (404, "CONTEXT_NOT_FOUND".to_owned()), "{}", missing.body);
    let wrong = server.post(&format!("/v1/sandboxes/{sandbox}/contexts"), &json!({"language": "cobol"}));
    assert_eq!(wrong.status, 400, "{}", wrong.body);

    // Contexts end with their agent: a paused and resumed sandbox has none.
    assert_eq!(server.post(&format!("/v1/sandboxes/{sandbox}/pause"), &json!({})).status, 200);
    assert_eq!(server.post(&format!("/v1/sandboxes/{sandbox}/resume"), &json!({})).status, 200);
    let after = server.get(&format!("/v1/sandboxes/{sandbox}/contexts")).json();
    assert_eq!(after["items"], json!([]), "{after}");
}

#[test]
fn root_handlers_and_one_shot_runs() {
    let server = Server::start("code-oneshot", &[]);
    let sandbox = server.create_sandbox(&json!({}));
    let handler = run(
        &server,
        &sandbox,
        json!({"code": "def handler(event):\n    print('got', event['n'])\n    return {'n': event['n'] + 1}",
               "event": {"n": 1}}),
    );
    assert_eq!(handler["result"], json!({"n": 2}), "{handler}");
    assert_eq!(handler["stdout"], "got 1\n");
    let js_handler = run(
        &server,
        &sandbox,
        json!({"code": "exports.handler = async (event) => ({ doubled: event.n * 2 });",
               "language": "javascript", "event": {"n": 21}}),
    );
    assert_eq!(js_handler["result"], json!({"doubled": 42}), "{js_handler}");
    let seconds = run(
        &server,
        &sandbox,
        json!({"code": "import time\ndef handler(event):\n    time.sleep(60)", "event": {"__timeout": 0.5}}),
    );
    assert_eq!(seconds["status"], "timeout", "__timeout is the run's timeout in seconds: {seconds}");

    let once = server.post(
        "/v1/run",
        &json!({"language": "python", "code": "import sys\nprint(sys.stdin.read().upper())\nsys.exit(4)",
                "stdin": "piped"}),
    );
    assert_eq!(once.status, 200, "{}", once.body);
    let once = once.json();
    assert_eq!((once["status"].as_str(), once["exit_code"].as_i64()), (Some("error"), Some(4)), "{once}");
    assert_eq!(once["stdout"], "PIPED\n");
    assert!(once["usage"]["max_rss_bytes"].as_u64().unwrap() > 0, "{once}");
    let used = once["sandbox_id"].as_str().unwrap().to_owned();
    support::wait_for(|| server.get(&format!("/v1/sandboxes/{used}")).json()["state"] == "terminated");

    let files = server
        .post(
            "/v1/run",
            &json!({"language": "javascript", "entrypoint": "main.js", "files": [
                {"path": "main.js", "content": "console.log(require('./lib/add.js')(2, 3))"},
                {"path": "lib/add.js", "content": "bW9kdWxlLmV4cG9ydHMgPSAoYSwgYikgPT4gYSArIGI7", "encoding": "base64"}]}),
        )
        .json();
    assert_eq!((files["status"].as_str(), files["stdout"].as_str()), (Some("ok"), Some("5\n")), "{files}");
    let handled = server
        .post(
            "/v1/run",
            &json!({"code": "def handler(event):\n    return sum(event['xs'])", "event": {"xs": [1, 2, 3]}}),
        )
        .json();
    assert_eq!(handled["result"], 6, "{handled}");
    let timed =
        server.post("/v1/run", &json!({"language": "bash", "code": "sleep 30", "timeout_ms": 300})).json();
    assert_eq!(timed["status"], "timeout", "{timed}");
    let streamed = server.post("/v1/run", &json!({"code": "print('one')\nprint('two')", "stream": true}));
    let names: Vec<String> = sse_events(&streamed.body).into_iter().map(|(name, _, _)| name).collect();
    assert_eq!(names.last().map(String::as_str), Some("end"), "{}", streamed.body);
    assert!(names.iter().any(|n| n == "stdout"), "{}", streamed.body);
    let bad = server.post("/v1/run", &json!({"language": "python"}));
    assert_eq!((bad.status, bad.code()), (400, "INVALID_ARGUMENT".to_owned()), "{}", bad.body);
}

#[test]
fn root_pool_sandboxes_keep_a_warm_python_for_one_shot_runs() {
    let server = Server::start("code-pool", &[("AIRLOCK_POOL_SIZE", "1")]);
    let pool_ready = || server.get("/metrics").body.contains("airlock_pool_ready 1\n");
    support::wait_for(pool_ready);
    let script = "import os, sys\nprint(sys.argv, os.environ['GREETING'], input())\nsys.exit(7)";
    let once = server
        .post("/v1/run", &json!({"code": script, "stdin": "from stdin\n", "env": {"GREETING": "hi"}}))
        .json();
    assert_eq!((once["status"].as_str(), once["exit_code"].as_i64()), (Some("error"), Some(7)), "{once}");
    assert_eq!(once["stdout"], "['-c'] hi from stdin\n", "{once}");
    assert_eq!((once["context"].clone(), once["execution_count"].clone()), (Value::Null, Value::Null));
    let metrics = server.get("/metrics").body;
    assert!(
        metrics.contains("airlock_code_runs_total{status=\"error\"} 1\n"),
        "ran in the warm kernel: {metrics}"
    );

    support::wait_for(pool_ready);
    let failing = server
        .post("/v1/run", &json!({"files": [{"path": "app/main.py", "content": "def f():\n    raise ValueError('bad')\nf()\n"}]}))
        .json();
    assert_eq!(
        (failing["status"].as_str(), failing["exit_code"].as_i64()),
        (Some("error"), Some(1)),
        "{failing}"
    );
    let stderr = failing["stderr"].as_str().unwrap();
    assert!(
        stderr.contains("/workspace/app/main.py\", line 2, in f") && stderr.ends_with("ValueError: bad\n"),
        "a traceback like python3's: {stderr}"
    );

    support::wait_for(pool_ready);
    let slow =
        server.post("/v1/run", &json!({"code": "import time\ntime.sleep(30)", "timeout_ms": 300})).json();
    assert_eq!(slow["status"], "timeout", "{slow}");

    // A sandbox claimed by a create has its Python context ready, unused.
    support::wait_for(pool_ready);
    let sandbox = server.create_sandbox(&json!({}));
    let context = server.get(&format!("/v1/sandboxes/{sandbox}/contexts/python")).json();
    assert_eq!(
        (context["language"].as_str(), context["execution_count"].as_u64()),
        (Some("python"), Some(0)),
        "{context}"
    );
    assert_eq!(text_result(&python(&server, &sandbox, "import sys\n'-c' in sys.argv")), "False");
}

#[test]
fn root_rapid_runs_each_get_their_own_output_and_value() {
    let server = Server::start("code-rapid", &[]);
    let sandbox = server.create_sandbox(&json!({}));
    let contexts: Vec<String> = ["python", "javascript", "bash"]
        .iter()
        .map(|language| {
            let reply =
                server.post(&format!("/v1/sandboxes/{sandbox}/contexts"), &json!({"language": language}));
            assert_eq!(reply.status, 201, "{}", reply.body);
            reply.json()["id"].as_str().unwrap().to_owned()
        })
        .collect();
    let port = server.port;
    let workers: Vec<_> = contexts
        .iter()
        .zip(["print({n})\n{n} * 2", "console.log({n}); {n} * 2", "echo {n}; (exit $(({n} % 7)))"])
        .map(|(context, template)| {
            let (context, template, path) =
                (context.clone(), template.to_owned(), format!("/v1/sandboxes/{sandbox}/code"));
            std::thread::spawn(move || {
                for n in 0..150 {
                    let body = json!({"context": context, "code": template.replace("{n}", &n.to_string())});
                    let reply =
                        support::request_to(port, None, "POST", &path, Some(&body.to_string()), &[]).unwrap();
                    let answer = reply.json();
                    assert_eq!(answer["stdout"], format!("{n}\n"), "run {n} in {context}: {answer}");
                    assert_eq!(answer["execution_count"], n + 1, "{answer}");
                    if template.starts_with("echo") {
                        assert_eq!(answer["exit_code"], n % 7, "{answer}");
                    } else {
                        assert_eq!(answer["result"]["text/plain"], (n * 2).to_string(), "{answer}");
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
}

#[test]
fn root_a_restart_or_delete_ends_the_run_going_on() {
    let server = Server::start("code-restart-run", &[]);
    let sandbox = server.create_sandbox(&json!({}));
    let context_path = format!("/v1/sandboxes/{sandbox}/contexts/python");
    let running = || server.get(&context_path).json()["running"] == true;
    let code_path = format!("/v1/sandboxes/{sandbox}/code");
    python(&server, &sandbox, "kept = 1");
    let idle = server.post(&format!("{context_path}/interrupt"), &json!({}));
    assert_eq!(idle.status, 204, "an interrupt with nothing running is harmless: {}", idle.body);

    let slow = server.post_in_background(&code_path, &json!({"code": "import time\ntime.sleep(60)"}));
    support::wait_for(running);
    let restarted = server.post(&format!("{context_path}/restart"), &json!({}));
    assert_eq!(restarted.status, 200, "{}", restarted.body);
    let ended = slow.join().unwrap().json();
    assert_eq!(
        (ended["status"].as_str(), ended["code"].as_str()),
        (Some("context_lost"), Some("CONTEXT_LOST")),
        "{ended}"
    );
    assert_eq!(python(&server, &sandbox, "'kept' in globals()")["result"]["text/plain"], "False");

    let slow = server.post_in_background(&code_path, &json!({"code": "import time\ntime.sleep(60)"}));
    support::wait_for(running);
    let deleted = server.request("DELETE", &context_path, None);
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    let ended = slow.join().unwrap().json();
    assert_eq!(ended["status"], "context_lost", "{ended}");
    // The default context comes back on the next use.
    assert_eq!(python(&server, &sandbox, "2 + 2")["result"]["text/plain"], "4");
}

#[test]
fn root_runs_waiting_their_turn_end_when_their_context_is_deleted() {
    let server = Server::start("code-delete-queue", &[]);
    let sandbox = server.create_sandbox(&json!({}));
    let context_path = format!("/v1/sandboxes/{sandbox}/contexts/python");
    let code_path = format!("/v1/sandboxes/{sandbox}/code");
    python(&server, &sandbox, "started = 1");
    let running = || server.get(&context_path).json()["running"] == true;
    let first = server.post_in_background(&code_path, &json!({"code": "import time\ntime.sleep(60)"}));
    support::wait_for(running);
    // The second waits for the first's turn to end; it must not start a kernel for a context
    // that is gone by then (that kernel would outlive it and block the context's name).
    let second = server.post_in_background(&code_path, &json!({"code": "print('second ran')"}));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let deleted = server.request("DELETE", &context_path, None);
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    for run in [first, second] {
        let ended = run.join().unwrap().json();
        assert_eq!(ended["status"], "context_lost", "{ended}");
    }
    assert_eq!(python(&server, &sandbox, "'started' in globals()")["result"]["text/plain"], "False");
}

#[test]
fn root_a_kernel_gone_between_runs_is_replaced_and_what_runs_use_is_measured() {
    let server = Server::start("code-gone-between", &[]);
    let sandbox = server.create_sandbox(&json!({}));
    // The server reads the kernel's CPU time from the host's /proc: a run that spends 300 ms
    // of CPU by the interpreter's own clock (whatever the machine's speed) shows it.
    let spin = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass";
    let busy = python(&server, &sandbox, spin);
    assert!(busy["usage"]["cpu_ms"].as_u64().unwrap() >= 250, "{busy}");
    assert!(busy["usage"]["max_rss_bytes"].as_u64().unwrap() > 1 << 20, "{busy}");
    let idle = python(&server, &sandbox, "kept = 1");
    assert!(idle["usage"]["cpu_ms"].as_u64().unwrap() < 250, "{idle}");

    // A thread of the code ends the interpreter after its run has ended.
    let exited =
        python(&server, &sandbox, "import os, threading\nthreading.Timer(0.2, os._exit, [3]).start()");
    assert_eq!(exited["status"], "ok", "{exited}");
    std::thread::sleep(std::time::Duration::from_millis(800));
    let next = python(&server, &sandbox, "'kept' in globals()");
    assert_eq!(text_result(&next), "False", "the next run gets a fresh interpreter: {next}");
    assert_eq!((next["status"].as_str(), next["execution_count"].as_u64()), (Some("ok"), Some(1)), "{next}");
}
