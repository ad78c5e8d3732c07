//! End-to-end tests of `airlock serve`: the real binary on a free port, driven over HTTP.
//! Tests that start sandboxes need root (cgroup limits); they are named `root_*`.

mod common;
mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{host_processes, sse_events, Server};

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn errors_health_info_metrics_and_openapi() {
    let server = Server::start("api", &[]);
    let health = server.get("/health");
    assert_eq!((health.status, health.json()["ready"].as_bool()), (200, Some(true)), "{}", health.body);
    assert!(health.header("x-request-id").is_some_and(|v| !v.is_empty()));

    let info = server.get("/v1/info").json();
    assert_eq!(info["name"], "airlock");
    assert_eq!(info["features"]["seccomp"], true, "{info}");
    assert!(info["limits"]["default"]["memory_bytes"].as_u64().unwrap() > 0, "{info}");

    let openapi = server.get("/openapi.json").json();
    for path in [
        "/v1/sandboxes",
        "/v1/sandboxes/{id}/commands/{command_id}/events",
        "/v1/sandboxes/{id}/contexts/{context_id}/interrupt",
        "/v1/sandboxes/{id}/code",
        "/v1/run",
        "/health",
    ] {
        assert!(openapi["paths"][path].is_object(), "{path} missing from /openapi.json");
    }
    for schema in ["SandboxView", "CodeRunView", "RunOnce", "ContextView"] {
        assert!(openapi["components"]["schemas"][schema].is_object(), "{schema} missing from /openapi.json");
    }

    let malformed = server.try_request("POST", "/v1/sandboxes", Some("{not json"), &[]).unwrap();
    assert_eq!(
        (malformed.status, malformed.code()),
        (400, "MALFORMED_JSON".to_owned()),
        "{}",
        malformed.body
    );
    let unknown = server.post("/v1/sandboxes", &json!({"limitz": {}}));
    assert_eq!((unknown.status, unknown.code()), (400, "INVALID_ARGUMENT".to_owned()));
    assert!(unknown.json()["error"]["message"].as_str().unwrap().contains("limitz"), "{}", unknown.body);
    let wrong_type = server.post("/v1/sandboxes", &json!({"limits": {"memory_bytes": "lots"}}));
    assert!(wrong_type.json()["error"]["message"].as_str().unwrap().contains("limits.memory_bytes"));
    let too_big = server.post("/v1/sandboxes", &json!({"limits": {"memory_bytes": 1u64 << 50}}));
    assert_eq!((too_big.status, too_big.code()), (400, "INVALID_ARGUMENT".to_owned()), "{}", too_big.body);
    let huge = "x".repeat(17 << 20);
    let huge = server.try_request("POST", "/v1/sandboxes", Some(&huge), &[]).unwrap();
    assert_eq!((huge.status, huge.code()), (413, "PAYLOAD_TOO_LARGE".to_owned()), "{}", huge.body);
    let text =
        server.try_request("POST", "/v1/sandboxes", Some("{}"), &[("Content-Type", "text/plain")]).unwrap();
    assert_eq!(text.status, 415, "{}", text.body);
    let missing = server.get("/v1/sandboxes/sbx_nope");
    assert_eq!((missing.status, missing.code()), (404, "SANDBOX_NOT_FOUND".to_owned()));
    assert!(!missing.json()["error"]["hint"].as_str().unwrap().is_empty());
    assert_eq!(server.get("/v2/nothing").code(), "ROUTE_NOT_FOUND");
    let wrong_method = server.request("PUT", "/v1/sandboxes", None);
    assert_eq!((wrong_method.status, wrong_method.code()), (405, "METHOD_NOT_ALLOWED".to_owned()));
    let bad_filter = server.get("/v1/sandboxes?state=sleeping");
    assert_eq!(bad_filter.status, 400, "{}", bad_filter.body);

    let metrics = server.get("/metrics").body;
    assert!(metrics.contains("airlock_errors_total{code=\"SANDBOX_NOT_FOUND\"} 1"), "{metrics}");
    assert!(metrics.contains("airlock_sandboxes{state=\"running\"} 0"), "{metrics}");
}

#[test]
fn a_public_address_without_keys_is_refused() {
    let dir = std::env::temp_dir().join(format!("airlock-serve-public-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), "").unwrap();
    let out = std::process::Command::new(common::airlock_bin())
        .args(["serve", "--address", "0.0.0.0", "--port", "1", "--data-dir"])
        .arg(&dir)
        .env("AIRLOCK_CONFIG", dir.join("config.toml"))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("without API keys") && stderr.contains("airlock keys create"), "{stderr}");
}

#[test]
fn root_sandbox_lifecycle_listing_pause_resume_delete() {
    let server = Server::start("lifecycle", &[]);
    let id = server.create_sandbox(&json!({"metadata": {"team": "red"}, "env": {"GREETING": "hello"},
                                            "ttl_seconds": 600, "limits": {"memory_bytes": 128 << 20}}));
    let other = server.create_sandbox(&json!({"metadata": {"team": "blue"}}));
    let got = server.get(&format!("/v1/sandboxes/{id}")).json();
    assert_eq!(
        (got["state"].as_str(), got["limits"]["memory_bytes"].as_u64()),
        (Some("running"), Some(128 << 20))
    );
    assert!(got["expires_at"].is_string() && got["status"]["since"].is_string(), "{got}");

    let red = server.get("/v1/sandboxes?metadata.team=red").json();
    assert_eq!(red["items"].as_array().unwrap().len(), 1, "{red}");
    assert_eq!(red["items"][0]["id"], id.as_str());
    let page = server.get("/v1/sandboxes?limit=1").json();
    assert_eq!(page["items"][0]["id"], id.as_str());
    let next = page["next"].as_str().expect("a next page");
    let page2 = server.get(&format!("/v1/sandboxes?limit=1&after={next}")).json();
    assert_eq!((page2["items"][0]["id"].as_str(), page2["next"].as_str()), (Some(other.as_str()), None));

    let renewed = server.post(&format!("/v1/sandboxes/{id}/renew"), &json!({"ttl_seconds": 1200})).json();
    assert_ne!(renewed["expires_at"], got["expires_at"]);

    let first = server.sh(&id, "echo $GREETING > note.txt; echo $GREETING");
    assert_eq!(
        (first["stdout"].as_str(), first["status"].as_str()),
        (Some("hello\n"), Some("ok")),
        "{first}"
    );

    let paused = server.post(&format!("/v1/sandboxes/{id}/pause"), &json!({})).json();
    assert_eq!(
        (paused["state"].as_str(), paused["status"]["reason"].as_str()),
        (Some("paused"), Some("paused"))
    );
    let refused = server.post(&format!("/v1/sandboxes/{id}/commands"), &json!({"command": "true"}));
    assert_eq!((refused.status, refused.code()), (409, "SANDBOX_STATE_CONFLICT".to_owned()));
    assert!(server.get("/v1/sandboxes?state=paused").body.contains(&id));
    let resumed = server.post(&format!("/v1/sandboxes/{id}/resume"), &json!({})).json();
    assert_eq!(resumed["state"], "running", "{resumed}");
    assert_eq!(server.sh(&id, "cat note.txt")["stdout"], "hello\n", "the workspace survives a pause");

    let workspace = server.data_dir.join("sandboxes").join(&id);
    assert!(workspace.exists());
    assert_eq!(server.request("DELETE", &format!("/v1/sandboxes/{id}"), None).status, 204);
    let gone = server.get(&format!("/v1/sandboxes/{id}")).json();
    assert_eq!(
        (gone["state"].as_str(), gone["status"]["reason"].as_str()),
        (Some("terminated"), Some("deleted"))
    );
    assert!(!workspace.exists(), "the workspace outlived its sandbox");
    assert_eq!(server.post(&format!("/v1/sandboxes/{id}/commands"), &json!({"command": "true"})).status, 409);
    assert_eq!(server.request("DELETE", &format!("/v1/sandboxes/{id}"), None).status, 404);
    assert_eq!(server.sh(&other, "echo fine")["stdout"], "fine\n", "the other sandbox was touched");
}

#[test]
fn root_commands_collect_stream_and_background() {
    let server = Server::start("commands", &[]);
    let id = server.create_sandbox(&json!({}));
    let commands = format!("/v1/sandboxes/{id}/commands");

    let collected =
        server.post(&commands, &json!({"argv": ["sh", "-c", "echo out; echo err >&2; exit 3"]})).json();
    assert_eq!(collected["exit_code"], 3, "{collected}");
    assert_eq!((collected["stdout"].as_str(), collected["stderr"].as_str()), (Some("out\n"), Some("err\n")));
    assert_eq!(collected["status"], "exited");
    assert!(
        collected["usage"]["duration_ms"].is_u64() && collected["usage"]["stdout_bytes"] == 4,
        "{collected}"
    );
    let missing = server.post(&commands, &json!({"argv": ["no-such-program"]})).json();
    assert_eq!(
        (missing["status"].as_str(), missing["exit_code"].as_i64()),
        (Some("failed"), Some(127)),
        "{missing}"
    );
    let capped = server
        .post(
            &commands,
            &json!({"command": "head -c 100000 /dev/zero | tr '\\0' x", "max_output_bytes": 1000}),
        )
        .json();
    assert_eq!(
        (capped["stdout"].as_str().unwrap().len(), capped["output_truncated"].as_bool()),
        (1000, Some(true))
    );

    let streamed = server
        .post(&commands, &json!({"command": "for i in 1 2 3; do echo $i; sleep 0.05; done", "stream": true}));
    assert_eq!(streamed.status, 200);
    assert!(streamed.header("content-type").unwrap().starts_with("text/event-stream"));
    let events = sse_events(&streamed.body);
    assert_eq!(events[0].0, "start");
    let out: String =
        events.iter().filter(|e| e.0 == "stdout").map(|e| e.2["data"].as_str().unwrap()).collect();
    assert_eq!(out, "1\n2\n3\n");
    let seqs: Vec<u64> = events.iter().filter_map(|e| e.1).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "numbered without gaps");
    assert_eq!(events.last().unwrap().0, "exit");
    assert_eq!(events.last().unwrap().2["status"], "ok");

    // A background command with open stdin; logs from offsets; resuming its event stream.
    let cat = server.post(&commands, &json!({"argv": ["cat"], "background": true}));
    assert_eq!(cat.status, 202, "{}", cat.body);
    let cat = cat.json()["id"].as_str().unwrap().to_owned();
    let cat_path = format!("{commands}/{cat}");
    assert_eq!(server.post(&format!("{cat_path}/stdin"), &json!({"data": "first\n"})).status, 204);
    wait_until("cat's first line", Duration::from_secs(5), || {
        server.get(&format!("{cat_path}/logs")).json()["stdout"] == "first\n"
    });
    let logs = server.get(&format!("{cat_path}/logs")).json();
    let offset = logs["stdout_offset"].as_u64().unwrap();
    assert_eq!(
        server.post(&format!("{cat_path}/stdin"), &json!({"data": "second\n", "close": true})).status,
        204
    );
    wait_until("cat's end", Duration::from_secs(5), || server.get(&cat_path).json()["status"] == "ok");
    assert_eq!(server.get(&format!("{cat_path}/logs?stdout_offset={offset}")).json()["stdout"], "second\n");
    let replay =
        server.try_request("GET", &format!("{cat_path}/events"), None, &[("Last-Event-ID", "1")]).unwrap();
    let replayed = sse_events(&replay.body);
    assert_eq!(replayed[0].1, Some(2), "resumes after the last event seen: {}", replay.body);
    assert_eq!(replayed[0].2["data"], "second\n");
    assert_eq!(replayed.last().unwrap().0, "exit");
    let closed = server.post(&format!("{cat_path}/stdin"), &json!({"data": "late"}));
    assert_eq!((closed.status, closed.code()), (409, "COMMAND_NOT_RUNNING".to_owned()));

    // A signal reaches the main process; a kill ends a setsid tree; a timeout ends only its own.
    let trap = server.post(&commands, &json!({"command": "trap 'echo got-term; exit 5' TERM; while :; do sleep 0.05; done", "background": true})).json();
    let daemon = server
        .post(&commands, &json!({"command": "setsid sleep 600 & sleep 601", "background": true}))
        .json();
    let survivor =
        server.post(&commands, &json!({"command": "sleep 2; echo survived", "background": true})).json();
    let trap_path = format!("{commands}/{}", trap["id"].as_str().unwrap());
    wait_until("the trap to start", Duration::from_secs(5), || {
        server.sh(&id, "ps -eo args")["stdout"].as_str().unwrap().contains("sleep 601")
    });
    assert_eq!(server.post(&format!("{trap_path}/signal"), &json!({"signal": "SIGTERM"})).status, 204);
    wait_until("the trap to exit", Duration::from_secs(5), || {
        server.get(&trap_path).json()["status"] != "running"
    });
    let trapped = server.get(&format!("{trap_path}/logs")).json();
    assert_eq!(
        (trapped["stdout"].as_str(), trapped["command"]["exit_code"].as_i64()),
        (Some("got-term\n"), Some(5))
    );
    let killed =
        server.post(&format!("{commands}/{}/kill", daemon["id"].as_str().unwrap()), &json!({})).json();
    assert_eq!(killed["status"], "killed", "{killed}");
    let timed_out =
        server.post(&commands, &json!({"command": "setsid sleep 700 & sleep 701", "timeout_ms": 300})).json();
    assert_eq!(timed_out["status"], "timeout", "{timed_out}");
    let left = server.sh(&id, "ps -eo args")["stdout"].as_str().unwrap().to_owned();
    for gone in ["sleep 600", "sleep 601", "sleep 700", "sleep 701"] {
        assert!(!left.contains(gone), "{gone} outlived its command:\n{left}");
    }
    assert!(left.contains("sleep 2"), "the other background command was touched:\n{left}");
    let survivor_path = format!("{commands}/{}", survivor["id"].as_str().unwrap());
    wait_until("the survivor", Duration::from_secs(10), || {
        server.get(&survivor_path).json()["status"] == "ok"
    });
    assert_eq!(server.get(&format!("{survivor_path}/logs")).json()["stdout"], "survived\n");
    let listed = server.get(&commands).json();
    assert!(listed["items"].as_array().unwrap().len() >= 9, "{listed}");
    let metrics = server.get("/metrics").body;
    for status in ["ok", "exited", "failed", "timeout", "killed"] {
        assert!(
            metrics.contains(&format!("airlock_commands_ended_total{{status=\"{status}\"}}")),
            "{status}: {metrics}"
        );
    }
}

#[test]
fn root_keys_see_only_their_own_sandboxes() {
    let mut server = Server::start("keys", &[]);
    // Keys made while the server runs take effect at once.
    let alice = server.create_key("alice");
    let bob = server.create_key("bob");
    let anonymous =
        server.try_request("GET", "/v1/sandboxes", None, &[("Authorization", "Bearer ")]).unwrap();
    assert_eq!((anonymous.status, anonymous.code()), (401, "UNAUTHORIZED".to_owned()), "{}", anonymous.body);
    let wrong = server.try_request("GET", "/v1/sandboxes", None, &[("X-API-Key", "ak_wrong")]).unwrap();
    assert_eq!(wrong.status, 401);
    let id = server.create_sandbox(&json!({}));
    let as_bob = |method: &str, path: &str, body: Option<&str>| {
        server.try_request(method, path, body, &[("X-API-Key", bob.as_str())]).unwrap()
    };
    assert_eq!(as_bob("GET", &format!("/v1/sandboxes/{id}"), None).status, 404);
    assert_eq!(
        as_bob("POST", &format!("/v1/sandboxes/{id}/commands"), Some(r#"{"command":"true"}"#)).status,
        404
    );
    assert_eq!(as_bob("DELETE", &format!("/v1/sandboxes/{id}"), None).status, 404);
    assert_eq!(as_bob("GET", "/v1/sandboxes", None).json()["items"], json!([]));
    let mine = server
        .try_request("GET", "/v1/sandboxes", None, &[("Authorization", &format!("Bearer {alice}"))])
        .unwrap();
    assert_eq!(mine.json()["items"][0]["id"], id.as_str());
    assert_eq!(server.sh(&id, "echo still mine")["stdout"], "still mine\n");
}

#[test]
fn root_kill_9_then_restart_loses_no_file_or_record_and_leaves_nothing() {
    let mut server = Server::start("restart", &[]);
    let id = server.create_sandbox(&json!({"metadata": {"keep": "me"}}));
    let short = server.create_sandbox(&json!({"ttl_seconds": 2}));
    assert_eq!(server.sh(&id, "echo precious > kept.txt; mkdir -p d && echo deep > d/f")["status"], "ok");
    let commands = format!("/v1/sandboxes/{id}/commands");
    let running = server.post(&commands, &json!({"command": "sleep 300", "background": true})).json();
    let data_dir = format!("launch --spec {}", server.data_dir.display());
    assert!(host_processes(&data_dir) >= 1, "no launcher found");
    server.kill9();
    wait_until("the old sandbox's processes to end", Duration::from_secs(15), || {
        host_processes(&data_dir) == 0
    });
    assert_eq!(host_processes("sleep 300"), 0, "a command outlived the server");
    let cgroups = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in cgroups.lines().filter(|l| l.contains(" cgroup")) {
        let mount = line.split(' ').nth(4).unwrap();
        let leftover = std::fs::read_dir(mount)
            .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().contains(&id)).count())
            .unwrap_or(0);
        assert_eq!(leftover, 0, "a cgroup of {id} is left in {mount}");
    }

    std::thread::sleep(Duration::from_secs(2));
    server.spawn(&[]);
    wait_until("the sandbox that expired meanwhile to be cleaned", Duration::from_secs(10), || {
        let status = server.get(&format!("/v1/sandboxes/{short}")).json()["status"].clone();
        status["state"] == "terminated" && status["reason"] == "expired"
    });
    assert!(!server.data_dir.join("sandboxes").join(&short).exists());
    let back = server.get(&format!("/v1/sandboxes/{id}")).json();
    assert_eq!(
        (back["state"].as_str(), back["status"]["reason"].as_str()),
        (Some("paused"), Some("server_restarted"))
    );
    assert_eq!(back["metadata"]["keep"], "me");
    let history = server.get(&commands).json();
    let lost =
        history["items"].as_array().unwrap().iter().find(|c| c["id"] == running["id"]).expect("record kept");
    assert_eq!(lost["status"], "lost", "{lost}");
    assert_eq!(server.post(&format!("/v1/sandboxes/{id}/resume"), &json!({})).json()["state"], "running");
    assert_eq!(server.sh(&id, "cat kept.txt d/f")["stdout"], "precious\ndeep\n");

    // A clean stop pauses too.
    assert!(server.stop().success());
    assert_eq!(host_processes(&data_dir), 0, "a clean stop left sandbox processes");
    server.spawn(&[]);
    assert_eq!(server.get(&format!("/v1/sandboxes/{id}")).json()["status"]["reason"], "server_stopped");
}

#[test]
fn root_expired_sandboxes_are_cleaned() {
    let server = Server::start("ttl", &[]);
    let id = server.create_sandbox(&json!({"ttl_seconds": 1}));
    let workspace = server.data_dir.join("sandboxes").join(&id);
    wait_until("expiry", Duration::from_secs(10), || {
        server.get(&format!("/v1/sandboxes/{id}")).json()["state"] == "terminated"
    });
    assert_eq!(server.get(&format!("/v1/sandboxes/{id}")).json()["status"]["reason"], "expired");
    assert!(!workspace.exists());
    assert_eq!(host_processes(&format!("launch --spec {}", server.data_dir.display())), 0);
}

#[test]
fn root_the_pool_hands_out_each_sandbox_once_and_refills() {
    let server = Server::start("pool", &[("AIRLOCK_POOL_SIZE", "2")]);
    let pool_ready = |n: usize| server.get("/metrics").body.contains(&format!("airlock_pool_ready {n}\n"));
    wait_until("a full pool", Duration::from_secs(20), || pool_ready(2));
    assert_eq!(server.get("/v1/sandboxes").json()["items"], json!([]), "pool sandboxes are invisible");

    let claims: Vec<String> = std::thread::scope(|scope| {
        let claim = || {
            let reply = server.post("/v1/sandboxes", &json!({"env": {"WHO": "claimer"}}));
            assert_eq!(reply.status, 201, "{}", reply.body);
            let sandbox = reply.json();
            assert!(sandbox["status"]["message"].as_str().unwrap().contains("pool"), "{sandbox}");
            sandbox["id"].as_str().unwrap().to_owned()
        };
        let handles = [scope.spawn(claim), scope.spawn(claim)];
        handles.map(|h| h.join().unwrap()).to_vec()
    });
    assert_ne!(claims[0], claims[1], "one pool sandbox was handed out twice");
    assert_eq!(server.sh(&claims[0], "echo $WHO")["stdout"], "claimer\n");
    let cold = server.post("/v1/sandboxes", &json!({"limits": {"max_pids": 77}})).json();
    assert!(!cold["status"]["message"].as_str().unwrap().contains("pool"), "{cold}");

    assert_eq!(server.request("DELETE", &format!("/v1/sandboxes/{}", claims[0]), None).status, 204);
    wait_until("the pool to refill", Duration::from_secs(20), || pool_ready(2));
    for _ in 0..2 {
        let again = server.create_sandbox(&json!({}));
        assert!(!claims.contains(&again), "a claimed sandbox came back from the pool");
    }
    let deleted = server.get(&format!("/v1/sandboxes/{}", claims[0])).json();
    assert_eq!(deleted["state"], "terminated", "a deleted sandbox was reused");
}

#[test]
fn root_fifty_hostile_sandboxes_at_once_leave_the_server_answering() {
    let server = Server::start("hostile", &[]);
    // 128 MiB leaves the agent and the runners room beside 32 processes of a fork bomb; at the
    // memory limit the kernel's OOM killer may pick any process of the sandbox (a known limit).
    let limits = json!({"memory_bytes": 128 << 20, "max_pids": 32});
    let ids: Vec<String> = (0..50).map(|_| server.create_sandbox(&json!({"limits": limits}))).collect();
    let payloads = [
        "f() { f | f & }; f; sleep 5",
        "python3 -c 'a = []\nwhile True: a.append(bytearray(1 << 20))'",
        "yes flood | head -c 50000000",
    ];
    let bombs: Vec<(String, String)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            // The bombs end at their timeout; the flood ends by itself, however slowly it runs.
            let timeout = (i % 3 != 2).then_some(3000);
            let body = json!({"command": payloads[i % 3], "background": true, "timeout_ms": timeout,
                              "max_output_bytes": 1 << 20});
            let reply = server.post(&format!("/v1/sandboxes/{id}/commands"), &body);
            assert_eq!(reply.status, 202, "{}", reply.body);
            (id.clone(), reply.json()["id"].as_str().unwrap().to_owned())
        })
        .collect();
    // While they rage, the server answers (each call waits as long as it takes; no timing here).
    for _ in 0..10 {
        let health = server.get("/health");
        assert_eq!((health.status, health.json()["ready"].as_bool()), (200, Some(true)), "{}", health.body);
        std::thread::sleep(Duration::from_millis(200));
    }
    for (i, (id, command)) in bombs.iter().enumerate() {
        let path = format!("/v1/sandboxes/{id}/commands/{command}");
        wait_until("a hostile command to end", Duration::from_secs(60), || {
            server.get(&path).json()["status"] != "running"
        });
        let ended = server.get(&path).json();
        // At the memory limit the kernel's OOM killer may pick the command's runner instead of
        // the command: the command then ends `failed`, and the agent kills what it left. On a
        // slow machine the memory bomb may still be reclaiming pages at its timeout.
        let expected: &[&str] = match i % 3 {
            0 => &["timeout", "exited", "failed"],
            1 => &["signaled", "exited", "failed", "timeout"],
            _ => &["ok"],
        };
        assert!(expected.contains(&ended["status"].as_str().unwrap()), "payload {i}: {ended}");
        if i % 3 == 2 {
            assert_eq!(ended["output_truncated"], true, "{ended}");
            assert_eq!(ended["usage"]["stdout_bytes"], 50_000_000, "{ended}");
        }
        let after = server.sh(id, "echo alive; ps -e | wc -l");
        assert_eq!(after["status"], "ok", "sandbox {i} did not recover: {after}");
        let processes: u32 =
            after["stdout"].as_str().unwrap().lines().nth(1).unwrap().trim().parse().unwrap();
        assert!(processes <= 8, "sandbox {i} kept {processes} processes:\n{after}");
    }
}

#[test]
fn root_a_data_directory_the_sandbox_cannot_reach_is_named_as_the_cause() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start("data-dir-mode", &[]);
    std::fs::set_permissions(&server.data_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let refused = server.post("/v1/sandboxes", &json!({}));
    assert_eq!(
        (refused.status, refused.code()),
        (500, "SANDBOX_START_FAILED".to_owned()),
        "{}",
        refused.body
    );
    let error = &refused.json()["error"];
    assert!(error["message"].as_str().unwrap().contains("binds: EACCES"), "{error}");
    assert!(error["hint"].as_str().unwrap().contains("searchable"), "{error}");
    std::fs::set_permissions(&server.data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    server.create_sandbox(&json!({}));
}
