//! The OpenSandbox front door driven by the official `opensandbox` and
//! `opensandbox-code-interpreter` Python packages (installed by `scripts/test.sh` into
//! `target/python-sdk`, or wherever `AIRLOCK_SDK_PYTHONPATH` says), through their public API
//! only: tests/sdk/opensandbox_sdk.py.

mod common;
mod support;

use std::path::PathBuf;
use std::process::Command;

use serde_json::json;
use support::Server;

/// Where the SDK packages are.
fn sdk_path() -> PathBuf {
    match std::env::var_os("AIRLOCK_SDK_PYTHONPATH") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/python-sdk"),
    }
}

/// Run the SDK suite against `server`; its output goes to the test's.
fn run_suite(server: &Server, api_key: Option<&str>) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/opensandbox_sdk.py");
    let mut command = Command::new("python3");
    command
        .arg(&script)
        .env("PYTHONPATH", sdk_path())
        .env("OPEN_SANDBOX_DOMAIN", format!("127.0.0.1:{}/opensandbox", server.port))
        .env("OPENSANDBOX_DISABLE_METRICS", "1")
        .env_remove("OPEN_SANDBOX_API_KEY");
    if let Some(key) = api_key {
        command.env("OPEN_SANDBOX_API_KEY", key);
    }
    let output = command.output().expect("run python3");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the SDK suite failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("all steps passed"), "{stdout}\n{stderr}");
}

#[test]
fn root_the_opensandbox_sdks_drive_the_whole_lifecycle() {
    let server = Server::start("os-sdk", &[]);
    run_suite(&server, None);
}

#[test]
fn root_the_opensandbox_sdks_work_with_an_api_key_and_see_only_their_sandboxes() {
    let mut server = Server::start("os-sdk-keys", &[]);
    let mine = server.create_key("sdk");
    run_suite(&server, Some(&mine));
    // Whatever the suite made with its key is invisible to another key.
    let other = server.create_key("other");
    let listed = support::request_to(
        server.port,
        None,
        "GET",
        "/opensandbox/v1/sandboxes",
        None,
        &[("OPEN-SANDBOX-API-KEY", other.as_str())],
    )
    .unwrap();
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.json()["pagination"]["totalItems"], json!(0), "{}", listed.body);
    let unkeyed =
        support::request_to(server.port, None, "GET", "/opensandbox/v1/sandboxes", None, &[]).unwrap();
    assert_eq!(unkeyed.status, 401, "{}", unkeyed.body);
    assert_eq!(unkeyed.json()["code"], json!("UNAUTHORIZED"), "{}", unkeyed.body);
}
