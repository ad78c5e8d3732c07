//! A real `airlock serve` on a free port with its own data directory, and a minimal HTTP/1.1
//! client (one connection per request) to drive it.
// Shared by several test files, each of which uses only part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// An answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The error code of an error answer.
    pub fn code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_default().to_owned()
    }
}

/// A server process and its data directory (removed on drop, after the server is killed).
pub struct Server {
    pub child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
    pub key: Option<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    /// A fresh server with `extra` environment variables.
    pub fn start(tag: &str, extra: &[(&str, &str)]) -> Server {
        Server::start_with_config(tag, "", extra)
    }

    /// A fresh server whose configuration file (`AIRLOCK_CONFIG`) holds `config`, with `extra`
    /// environment variables.
    pub fn start_with_config(tag: &str, config: &str, extra: &[(&str, &str)]) -> Server {
        let data_dir = std::env::temp_dir().join(format!("airlock-serve-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        std::fs::create_dir_all(&data_dir).unwrap();
        std::fs::write(data_dir.join("config.toml"), config).unwrap();
        let mut server = Server { child: None, port: free_port(), data_dir, key: None };
        server.spawn(extra);
        server
    }

    /// Start the server process on this data directory and wait until `/health` answers.
    pub fn spawn(&mut self, extra: &[(&str, &str)]) {
        let mut command = Command::new(super::common::airlock_bin());
        command
            .args(["serve", "--port", &self.port.to_string(), "--data-dir"])
            .arg(&self.data_dir)
            .env("AIRLOCK_CONFIG", "/nonexistent-airlock-config")
            .env_remove("RUST_LOG")
            .env("LOG_LEVEL", "warn")
            // No pool unless a test asks for one: pool sandboxes would show in the counts.
            .env("AIRLOCK_POOL_SIZE", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in extra {
            command.env(k, v);
        }
        // An explicit config path that does not exist is an error; point at an empty file.
        let config = self.data_dir.join("config.toml");
        if !config.exists() {
            std::fs::write(&config, "").unwrap();
        }
        command.env("AIRLOCK_CONFIG", &config);
        self.child = Some(command.spawn().expect("start airlock serve"));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(reply) = self.try_request("GET", "/health", None, &[]) {
                assert_eq!(reply.status, 200, "{}", reply.body);
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("airlock serve exited: {status}");
            }
            assert!(Instant::now() < deadline, "airlock serve did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Create an API key with `airlock keys create`; later requests use the first one made.
    pub fn create_key(&mut self, name: &str) -> String {
        let out = Command::new(super::common::airlock_bin())
            .args(["keys", "create", "--name", name, "--data-dir"])
            .arg(&self.data_dir)
            .env("AIRLOCK_CONFIG", self.data_dir.join("config.toml"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let created: Value = serde_json::from_slice(&out.stdout).unwrap();
        let key = created["key"].as_str().unwrap().to_owned();
        self.key.get_or_insert(key.clone());
        key
    }

    /// SIGKILL the server (not its sandboxes' launchers).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM the server and wait for it.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        child.wait().unwrap()
    }

    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Reply> {
        request_to(self.port, self.key.as_deref(), method, path, body, headers)
    }

    /// POST from another thread, so that the caller can act while the request is under way.
    pub fn post_in_background(&self, path: &str, body: &Value) -> std::thread::JoinHandle<Reply> {
        let (port, key, path, body) = (self.port, self.key.clone(), path.to_owned(), body.to_string());
        std::thread::spawn(move || {
            request_to(port, key.as_deref(), "POST", &path, Some(&body), &[])
                .unwrap_or_else(|e| panic!("POST {path}: {e}"))
        })
    }

    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let text = body.map(|b| b.to_string());
        self.try_request(method, path, text.as_deref(), &[])
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.request("POST", path, Some(body))
    }

    /// Create a sandbox; panics unless it runs.
    pub fn create_sandbox(&self, body: &Value) -> String {
        let reply = self.post("/v1/sandboxes", body);
        assert_eq!(reply.status, 201, "{}", reply.body);
        let sandbox = reply.json();
        assert_eq!(sandbox["state"], "running", "{sandbox}");
        sandbox["id"].as_str().unwrap().to_owned()
    }

    /// Run a shell command to its end.
    pub fn sh(&self, sandbox: &str, script: &str) -> Value {
        let reply = self
            .post(&format!("/v1/sandboxes/{sandbox}/commands"), &serde_json::json!({ "command": script }));
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// One request to the server on `port`, from any thread.
pub fn request_to(
    port: u16,
    key: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(key) = key {
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("authorization") || n.eq_ignore_ascii_case("x-api-key"))
        {
            head += &format!("Authorization: Bearer {key}\r\n");
        }
    }
    for (name, value) in headers {
        head += &format!("{name}: {value}\r\n");
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method == "POST" {
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type")) {
            head += "Content-Type: application/json\r\n";
        }
        head += &format!("Content-Length: {}\r\n", body.len());
    }
    head += "\r\n";
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    read_reply(stream)
}

/// Wait until `done` holds, up to 30 s.
pub fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for a condition");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_reply(stream: TcpStream) -> std::io::Result<Reply> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let chunked =
        headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let mut raw = Vec::new();
    reader.read_to_end(&mut raw)?;
    let body = if chunked { dechunk(&raw) } else { raw };
    Ok(Reply { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = raw.windows(2).position(|w| w == b"\r\n") else { return out };
        let size = usize::from_str_radix(String::from_utf8_lossy(&raw[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = end + 2;
        out.extend_from_slice(&raw[start..(start + size).min(raw.len())]);
        raw = &raw[(start + size + 2).min(raw.len())..];
    }
}

/// The events of a Server-Sent Events body: (event, id, data).
pub fn sse_events(body: &str) -> Vec<(String, Option<u64>, Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let (mut event, mut id, mut data) = (String::new(), None, String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data += v.trim_start();
                }
            }
            (!event.is_empty()).then(|| (event, id, serde_json::from_str(&data).unwrap_or(Value::Null)))
        })
        .collect()
}

/// Host processes whose command line contains `needle`.
pub fn host_processes(needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).replace('\0', " ").contains(needle))
        .count()
}
