//! End-to-end tests of sandbox networking on the real `airlock serve`: egress through the
//! host-side proxy under allowlist policies (domains, wildcards, CIDR rules, protected
//! addresses, policy changes on a running sandbox, the record of denials), the loopback-only
//! default, and ingress to servers listening inside a sandbox (HTTP and WebSocket).
//!
//! The "outside world" is HTTP servers this test starts on the host on loopback addresses of
//! their own (127.0.0.2, 127.0.0.3, 127.0.0.4), which the server's config pins names to.
//! Tests that start sandboxes need root; they are named `root_*`.

mod common;
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};
use support::{request_to, wait_for, Reply, Server};

/// Names the egress proxy resolves without DNS, to the outside servers' addresses.
const PINNED_HOSTS: &str = r#"
[server.network.hosts]
"allowed.test" = "127.0.0.2"
"denied.test" = "127.0.0.3"
"a.wild.test" = "127.0.0.2"
"wild.test" = "127.0.0.3"
"self.test" = "127.0.0.1"
"#;

/// A server whose config pins the test names above.
fn server_with_pinned_hosts(tag: &str) -> Server {
    Server::start_with_config(tag, PINNED_HOSTS, &[])
}

// ---------------------------------------------------------------------------------------------
// The outside world

/// An HTTP server on the host, outside every sandbox, on a loopback address of its own. It
/// answers every request with a line naming its address, the request target and the `Host`
/// header it got, and counts the connections it accepted. Stopped on drop.
struct Outside {
    ip: &'static str,
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Outside {
    fn start(ip: &'static str) -> Outside {
        let listener = TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("listen on {ip}: {e}"));
        let port = listener.local_addr().unwrap().port();
        let (accepted, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let (count, stopping) = (Arc::clone(&accepted), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                count.fetch_add(1, Ordering::SeqCst);
                if let Ok(stream) = stream {
                    let _ = answer_as(ip, stream);
                }
            }
        });
        Outside { ip, port, accepted, stop, thread: Some(thread) }
    }

    /// `http://NAME:PORT/PATH`, for a name or address that leads here.
    fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}/{path}", self.port)
    }

    /// What this server answers to `GET /PATH` asked for as `host` (the `Host` it sees).
    fn answer(&self, host: &str, path: &str) -> String {
        format!("outside {} saw GET /{path} for {host}:{}\n", self.ip, self.port)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect((self.ip, self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Read one request head and answer it with a line naming `ip`, the request target and `Host`.
fn answer_as(ip: &str, stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut host = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("host") {
                host = value.trim().to_owned();
            }
        }
    }
    let target: Vec<&str> = request_line.split_whitespace().take(2).collect();
    let body = format!("outside {ip} saw {} for {host}\n", target.join(" "));
    let mut stream = reader.into_inner();
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

// ---------------------------------------------------------------------------------------------
// Inside a sandbox

/// What `curl -i` in a sandbox got: the status of every answer in order (through a tunnel, the
/// proxy's answer to CONNECT comes first), the last answer's headers and body, and curl's exit
/// code.
#[derive(Debug)]
struct Fetch {
    statuses: Vec<u16>,
    headers: Vec<(String, String)>,
    body: String,
    exit_code: i64,
    stderr: String,
}

impl Fetch {
    /// The status of the last answer (0 when there was none).
    fn status(&self) -> u16 {
        self.statuses.last().copied().unwrap_or(0)
    }

    /// The rule the proxy named when it refused the request.
    fn denied_by(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("x-airlock-denied-by"))
            .map(|(_, v)| v.as_str())
    }
}

/// Run `curl -sS -i ARGS` in the sandbox (with its proxy variables, unless ARGS say otherwise).
fn curl(server: &Server, sandbox: &str, args: &str) -> Fetch {
    let ran = server.sh(sandbox, &format!("curl -sS -i --max-time 30 {args}"));
    let mut rest = ran["stdout"].as_str().unwrap_or_default();
    let (mut statuses, mut headers) = (Vec::new(), Vec::new());
    while rest.starts_with("HTTP/") {
        let (head, after) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
        let mut lines = head.split("\r\n");
        let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok());
        statuses.push(status.unwrap_or_else(|| panic!("no status in curl's output: {ran}")));
        headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        rest = after;
    }
    Fetch {
        statuses,
        headers,
        body: rest.to_owned(),
        exit_code: ran["exit_code"].as_i64().unwrap_or(-1),
        stderr: ran["stderr"].as_str().unwrap_or_default().to_owned(),
    }
}

/// `curl` sending the request through the sandbox's proxy even for an address that `NO_PROXY`
/// would send directly (127.0.0.1 and the like).
fn via_proxy(url: &str) -> String {
    format!("--noproxy '' -x http://127.0.0.1:3128 {url}")
}

/// Asserts that the proxy answered `fetch` with 403, naming `rule`.
#[track_caller]
fn assert_denied(fetch: &Fetch, rule: &str) {
    assert_eq!((fetch.status(), fetch.denied_by()), (403, Some(rule)), "{fetch:?}");
}

/// Asserts that `fetch` got `outside`'s answer through a plain proxied request.
#[track_caller]
fn assert_reached(fetch: &Fetch, expected: &str) {
    assert_eq!((fetch.statuses.as_slice(), fetch.body.as_str()), (&[200][..], expected), "{fetch:?}");
}

/// Create a sandbox with `network`; panics unless it runs.
fn sandbox_with(server: &Server, network: Value) -> String {
    server.create_sandbox(&json!({ "network": network }))
}

fn allowlist(rules: Value) -> Value {
    json!({"mode": "allowlist", "rules": rules})
}

fn allow(target: &str) -> Value {
    json!({"action": "allow", "target": target})
}

fn deny(target: &str) -> Value {
    json!({"action": "deny", "target": target})
}

/// Change the sandbox's policy (`PUT` or `PATCH`); panics unless it succeeds.
fn change_policy(server: &Server, sandbox: &str, method: &str, body: Value) -> Value {
    let reply = server.request(method, &format!("/v1/sandboxes/{sandbox}/network"), Some(&body));
    assert_eq!(reply.status, 200, "{method} network: {}", reply.body);
    reply.json()
}

/// The sandbox's denials from `query` (e.g. `?after=1`): the list and the total.
fn denials(server: &Server, sandbox: &str, query: &str) -> (Vec<Value>, u64) {
    let reply = server.get(&format!("/v1/sandboxes/{sandbox}/network/denials{query}"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let page = reply.json();
    (page["denials"].as_array().unwrap().clone(), page["total"].as_u64().unwrap())
}

/// The (target, rule) of each denial.
fn targets_and_rules(denials: &[Value]) -> Vec<(String, String)> {
    denials
        .iter()
        .map(|d| (d["target"].as_str().unwrap().to_owned(), d["rule"].as_str().unwrap().to_owned()))
        .collect()
}

/// Asserts that `reply` refuses a network policy, naming `field` in its message.
#[track_caller]
fn assert_policy_refused(reply: &Reply, field: &str) {
    assert_eq!((reply.status, reply.code()), (400, "NETWORK_POLICY_INVALID".to_owned()), "{}", reply.body);
    let message = reply.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains(&format!("{field}: ")), "the message names {field}: {message}");
}

/// Write `text` to `name` in the sandbox's workspace.
fn write_file(server: &Server, sandbox: &str, name: &str, text: &str) {
    let written = server.sh(sandbox, &format!("cat > {name} <<'AIRLOCK_EOF'\n{text}AIRLOCK_EOF\n"));
    assert_eq!(written["exit_code"], 0, "{written}");
}

/// Run a Python script in the sandbox to its end; panics unless the request succeeds.
fn python(server: &Server, sandbox: &str, script: &str) -> Value {
    let reply = server
        .post(&format!("/v1/sandboxes/{sandbox}/commands"), &json!({"argv": ["python3", "-c", script]}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

/// Start `command` in the background in the sandbox; panics unless it starts.
fn start_background(server: &Server, sandbox: &str, command: &str) {
    let reply = server
        .post(&format!("/v1/sandboxes/{sandbox}/commands"), &json!({"command": command, "background": true}));
    assert_eq!(reply.status, 202, "{}", reply.body);
}

/// The ingress path of `port` in the sandbox, followed by `rest` (e.g. `/file.txt`).
fn port_path(sandbox: &str, port: u16, rest: &str) -> String {
    format!("/v1/sandboxes/{sandbox}/ports/{port}{rest}")
}

/// Wait until something answers on `port` in the sandbox (ingress stops saying 503).
fn wait_for_port(server: &Server, sandbox: &str, port: u16) {
    wait_for(|| server.get(&port_path(sandbox, port, "/")).status != 503);
}

// ---------------------------------------------------------------------------------------------
// Egress

#[test]
fn root_an_allowed_domain_answers_through_the_proxy() {
    let server = server_with_pinned_hosts("net-allowed");
    let outside = Outside::start("127.0.0.2");
    let created =
        server.post("/v1/sandboxes", &json!({"network": allowlist(json!([allow("allowed.test")]))}));
    assert_eq!(created.status, 201, "{}", created.body);
    let view = created.json();
    assert_eq!(
        view["network"],
        json!({"mode": "allowlist", "default_action": "deny", "rules": [allow("allowed.test")]}),
        "{view}"
    );
    let sandbox = view["id"].as_str().unwrap();

    let env = server.sh(sandbox, "echo $HTTP_PROXY $https_proxy $ALL_PROXY $NO_PROXY")["stdout"].clone();
    assert_eq!(
        env,
        "http://127.0.0.1:3128 http://127.0.0.1:3128 http://127.0.0.1:3128 localhost,127.0.0.1,::1\n"
    );

    // Plain http: the proxy passes the request on in origin form, with the Host asked for.
    let plain = curl(&server, sandbox, &outside.url("allowed.test", "plain"));
    assert_reached(&plain, &outside.answer("allowed.test", "plain"));

    // CONNECT: the proxy answers 200 and joins the tunnel; the request inside is curl's own.
    let tunneled =
        curl(&server, sandbox, &format!("--proxytunnel {}", outside.url("allowed.test", "tunnel")));
    assert_eq!(tunneled.statuses, [200, 200], "the CONNECT answer, then the server's: {tunneled:?}");
    assert_eq!(tunneled.body, outside.answer("allowed.test", "tunnel"));

    // Python's urllib reads the proxy variables too.
    let script = format!(
        "import urllib.request\nprint(urllib.request.urlopen('{}').read().decode(), end='')",
        outside.url("allowed.test", "python")
    );
    let fetched = python(&server, sandbox, &script);
    assert_eq!(fetched["stdout"], outside.answer("allowed.test", "python"), "{fetched}");

    // A client that sends its first bytes in the same write as the CONNECT head (as some TLS
    // clients do): those bytes, read along with the head, still go through the tunnel first.
    let script = format!(
        "import socket\n\
         s = socket.create_connection(('127.0.0.1', 3128))\n\
         s.sendall(b'CONNECT allowed.test:{port} HTTP/1.1\\r\\nHost: allowed.test:{port}\\r\\n\\r\\n'\n\
                   b'GET /pipelined HTTP/1.1\\r\\nHost: allowed.test:{port}\\r\\n\\r\\n')\n\
         data = b''\n\
         while chunk := s.recv(65536):\n    data += chunk\n\
         print(data.decode().split('\\r\\n\\r\\n')[-1], end='')",
        port = outside.port
    );
    let pipelined = python(&server, sandbox, &script);
    assert_eq!(pipelined["stdout"], outside.answer("allowed.test", "pipelined"), "{pipelined}");

    assert_eq!(outside.accepted(), 4);

    // Allowed, but nothing listens there: the proxy says so with 502, and nothing is denied.
    let closed_port = TcpListener::bind(("127.0.0.2", 0)).unwrap().local_addr().unwrap().port();
    let unreachable = curl(&server, sandbox, &format!("http://allowed.test:{closed_port}/"));
    assert_eq!((unreachable.status(), unreachable.denied_by()), (502, None), "{unreachable:?}");
    assert_eq!(denials(&server, sandbox, ""), (vec![], 0), "nothing was refused");
}

#[test]
fn root_a_denied_domain_is_refused_and_recorded() {
    let server = server_with_pinned_hosts("net-denied");
    let denied = Outside::start("127.0.0.3");
    let sandbox = sandbox_with(&server, allowlist(json!([allow("allowed.test")])));
    let url = denied.url("denied.test", "");
    let target = format!("denied.test:{}", denied.port);

    let plain = curl(&server, &sandbox, &url);
    assert_denied(&plain, "default: deny");
    assert!(plain.body.contains(&target), "the refusal names what was refused: {plain:?}");
    let tunneled = curl(&server, &sandbox, &format!("--proxytunnel {url}"));
    assert_denied(&tunneled, "default: deny");
    assert_ne!(tunneled.exit_code, 0, "curl fails when the tunnel is refused: {tunneled:?}");
    assert!(tunneled.stderr.contains("CONNECT tunnel failed, response 403"), "{tunneled:?}");

    let (recorded, total) = denials(&server, &sandbox, "");
    assert_eq!(total, 2);
    assert_eq!(
        targets_and_rules(&recorded),
        [(target.clone(), "default: deny".to_owned()), (target.clone(), "default: deny".to_owned())]
    );
    assert_eq!((recorded[0]["seq"].as_u64(), recorded[1]["seq"].as_u64()), (Some(1), Some(2)));
    assert!(recorded[0]["time"].is_string(), "{recorded:?}");
    assert_eq!(recorded[0]["address"], Value::Null, "a name no rule allows is refused before any lookup");

    // An explicit deny rule is named by its position, even with the default allowing.
    let policy = json!({"mode": "allowlist", "default_action": "allow",
                        "rules": [allow("allowed.test"), deny("denied.test")]});
    assert_eq!(change_policy(&server, &sandbox, "PUT", policy.clone()), policy);
    assert_denied(&curl(&server, &sandbox, &url), "rule 2: deny denied.test");

    let (after, total) = denials(&server, &sandbox, "?after=2");
    assert_eq!(total, 3);
    assert_eq!(targets_and_rules(&after), [(target.clone(), "rule 2: deny denied.test".to_owned())]);
    assert_eq!(after[0]["seq"], 3);
    let (first, _) = denials(&server, &sandbox, "?limit=1");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["seq"], 1);
    assert_eq!(denied.accepted(), 0, "no refused request reached the server");
}

/// A raw SOCKS5 exchange from inside the sandbox: a greeting offering `methods`, then (when the
/// proxy accepted one) a request with `command` for `allowed.test:80`. Prints the proxy's
/// answer bytes as a Python list.
const SOCKS_PROBE: &str = r#"import socket, sys
methods, command = bytes.fromhex(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(('127.0.0.1', 3128))
s.sendall(bytes([5, len(methods)]) + methods)
answer = list(s.recv(2))
if answer == [5, 0]:
    s.sendall(bytes([5, command, 0, 3, 12]) + b'allowed.test' + (80).to_bytes(2, 'big'))
    answer += list(s.recv(10))
print(answer)
"#;

#[test]
fn root_socks5_clients_are_decided_like_connect() {
    let server = server_with_pinned_hosts("net-socks");
    let (allowed, denied) = (Outside::start("127.0.0.2"), Outside::start("127.0.0.3"));
    let sandbox = sandbox_with(&server, allowlist(json!([allow("allowed.test")])));
    let socks = |url: &str| curl(&server, &sandbox, &format!("--proxy socks5h://127.0.0.1:3128 {url}"));

    // The name goes to the proxy (socks5h), which decides on it and joins the connection.
    assert_reached(&socks(&allowed.url("allowed.test", "socks")), &allowed.answer("allowed.test", "socks"));
    assert_eq!(allowed.accepted(), 1);

    // A denied name, and the allowed name's address given as a literal, are refused and
    // recorded, and reach nothing.
    let refused = socks(&denied.url("denied.test", ""));
    assert_ne!(refused.exit_code, 0, "{refused:?}");
    let literal = socks(&allowed.url("127.0.0.2", ""));
    assert_ne!(literal.exit_code, 0, "{literal:?}");
    let (recorded, total) = denials(&server, &sandbox, "");
    assert_eq!(total, 2, "{recorded:?}");
    assert_eq!(
        targets_and_rules(&recorded),
        [
            (format!("denied.test:{}", denied.port), "default: deny".to_owned()),
            (format!("127.0.0.2:{}", allowed.port), "protected: loopback address".to_owned()),
        ]
    );
    assert_eq!((denied.accepted(), allowed.accepted()), (0, 1));

    // Only CONNECT without authentication: BIND gets "command not supported" (7), a client
    // offering only username/password gets "no acceptable method" (0xFF).
    write_file(&server, &sandbox, "socks_probe.py", SOCKS_PROBE);
    let probe = |methods: &str, command: u8| {
        let ran = server.sh(&sandbox, &format!("python3 socks_probe.py {methods} {command}"));
        assert_eq!(ran["exit_code"], 0, "{ran}");
        ran["stdout"].as_str().unwrap().trim().to_owned()
    };
    assert_eq!(probe("00", 2), "[5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0]");
    assert_eq!(probe("02", 1), "[5, 255]");
    assert_eq!(allowed.accepted(), 1, "neither probe connected anywhere");
}

#[test]
fn root_a_wildcard_matches_subdomains_but_not_the_apex() {
    let server = server_with_pinned_hosts("net-wildcard");
    let (sub, apex) = (Outside::start("127.0.0.2"), Outside::start("127.0.0.3"));
    let sandbox = sandbox_with(&server, allowlist(json!([allow("*.wild.test")])));

    let reached = curl(&server, &sandbox, &sub.url("a.wild.test", "x"));
    assert_reached(&reached, &sub.answer("a.wild.test", "x"));
    assert_denied(&curl(&server, &sandbox, &apex.url("wild.test", "x")), "default: deny");
    assert_eq!(apex.accepted(), 0);

    // Naming the apex opens it.
    let policy = change_policy(&server, &sandbox, "PATCH", json!({"rules": [allow("wild.test")]}));
    assert_eq!(policy["rules"], json!([allow("wild.test"), allow("*.wild.test")]), "new rules go first");
    assert_reached(&curl(&server, &sandbox, &apex.url("wild.test", "y")), &apex.answer("wild.test", "y"));
}

#[test]
fn root_cidr_rules_match_addresses_and_literals_do_not_bypass_domain_rules() {
    let server = server_with_pinned_hosts("net-cidr");
    let (named, by_address) = (Outside::start("127.0.0.2"), Outside::start("127.0.0.4"));
    let sandbox = sandbox_with(&server, allowlist(json!([allow("allowed.test"), allow("127.0.0.4/32")])));
    let policy = server.get(&format!("/v1/sandboxes/{sandbox}/network")).json();
    assert_eq!(policy["rules"][1], allow("127.0.0.4"), "a /32 reads as its address: {policy}");

    let plain = curl(&server, &sandbox, &via_proxy(&by_address.url("127.0.0.4", "cidr")));
    assert_reached(&plain, &by_address.answer("127.0.0.4", "cidr"));
    let tunneled =
        curl(&server, &sandbox, &format!("--proxytunnel {}", via_proxy(&by_address.url("127.0.0.4", "t"))));
    assert_eq!(
        (tunneled.statuses.as_slice(), tunneled.body.as_str()),
        (&[200, 200][..], by_address.answer("127.0.0.4", "t").as_str())
    );

    // 127.0.0.2 is allowed by name only: its address literal is refused.
    let literal = curl(&server, &sandbox, &via_proxy(&named.url("127.0.0.2", "")));
    assert_denied(&literal, "protected: loopback address");
    assert_eq!(named.accepted(), 0, "the literal did not reach the server");
    let (recorded, _) = denials(&server, &sandbox, "");
    assert_eq!(
        targets_and_rules(&recorded),
        [(format!("127.0.0.2:{}", named.port), "protected: loopback address".to_owned())]
    );
    assert_eq!(recorded[0]["address"], "127.0.0.2");
    // So is a name that the host's resolver (not the operator's hosts map) puts on loopback.
    let localhost = curl(&server, &sandbox, &via_proxy(&named.url("localhost", "")));
    assert_denied(&localhost, "protected: loopback address");
    assert_reached(
        &curl(&server, &sandbox, &named.url("allowed.test", "")),
        &named.answer("allowed.test", ""),
    );
}

#[test]
fn root_metadata_and_the_servers_own_address_are_protected() {
    let server = server_with_pinned_hosts("net-protected");
    let sandbox = sandbox_with(
        &server,
        json!({"mode": "allowlist", "default_action": "allow",
               "rules": [allow("0.0.0.0/0"), allow("127.0.0.0/8")]}),
    );

    let metadata = curl(&server, &sandbox, "http://169.254.169.254/latest/meta-data/");
    assert_denied(&metadata, "protected: cloud metadata address");

    // The server's API, by address and by a name pinned to it: refused although the default
    // and two rules allow loopback.
    let own = format!("127.0.0.1:{}", server.port);
    let own_rule = "protected: the server's own address";
    assert_denied(&curl(&server, &sandbox, &via_proxy(&format!("http://{own}/health"))), own_rule);
    let by_name = format!("http://self.test:{}/health", server.port);
    assert_denied(&curl(&server, &sandbox, &by_name), own_rule);
    assert_denied(&curl(&server, &sandbox, &format!("--proxytunnel {by_name}")), own_rule);

    let (recorded, _) = denials(&server, &sandbox, "");
    let self_target = format!("self.test:{}", server.port);
    assert_eq!(
        targets_and_rules(&recorded),
        [
            ("169.254.169.254:80".to_owned(), "protected: cloud metadata address".to_owned()),
            (own.clone(), own_rule.to_owned()),
            (self_target.clone(), own_rule.to_owned()),
            (self_target, own_rule.to_owned()),
        ]
    );

    // Only a rule naming exactly that address opens it.
    change_policy(&server, &sandbox, "PATCH", json!({"rules": [allow("127.0.0.1")]}));
    let health = curl(&server, &sandbox, &via_proxy(&format!("http://{own}/health")));
    assert_eq!(health.status(), 200, "{health:?}");
    assert!(health.body.contains("\"ready\":true"), "{health:?}");
}

#[test]
fn root_policy_changes_apply_to_new_connections() {
    let server = server_with_pinned_hosts("net-patch");
    let outside = Outside::start("127.0.0.2");
    let sandbox = sandbox_with(&server, allowlist(json!([])));
    let url = outside.url("allowed.test", "");

    assert_denied(&curl(&server, &sandbox, &url), "default: deny");
    let patched = change_policy(&server, &sandbox, "PATCH", json!({"rules": [allow("allowed.test")]}));
    assert_eq!(
        patched,
        json!({"mode": "allowlist", "default_action": "deny", "rules": [allow("allowed.test")]})
    );
    assert_reached(&curl(&server, &sandbox, &url), &outside.answer("allowed.test", ""));

    // A rule for the same target replaces the old one; `remove` drops it.
    let replaced = change_policy(&server, &sandbox, "PATCH", json!({"rules": [deny("allowed.test")]}));
    assert_eq!(replaced["rules"], json!([deny("allowed.test")]));
    assert_denied(&curl(&server, &sandbox, &url), "rule 1: deny allowed.test");
    let removed = change_policy(
        &server,
        &sandbox,
        "PATCH",
        json!({"remove": ["allowed.test"], "default_action": "allow"}),
    );
    assert_eq!(removed, json!({"mode": "allowlist", "default_action": "allow", "rules": []}));
    assert_reached(&curl(&server, &sandbox, &url), &outside.answer("allowed.test", ""));

    // Back to no network: everything is refused.
    let none = change_policy(&server, &sandbox, "PUT", json!({"mode": "none"}));
    assert_eq!(none, json!({"mode": "none", "default_action": "deny", "rules": []}));
    assert_eq!(server.get(&format!("/v1/sandboxes/{sandbox}/network")).json(), none);
    assert_denied(&curl(&server, &sandbox, &url), "mode none");
    assert_denied(&curl(&server, &sandbox, &format!("--proxytunnel {url}")), "mode none");

    let (recorded, total) = denials(&server, &sandbox, "");
    let rules: Vec<String> = targets_and_rules(&recorded).into_iter().map(|(_, rule)| rule).collect();
    assert_eq!(rules, ["default: deny", "rule 1: deny allowed.test", "mode none", "mode none"]);
    assert_eq!(total, 4);
    assert_eq!(outside.accepted(), 2, "only the two allowed requests reached the server");
}

#[test]
fn root_no_network_by_default_leaves_only_loopback() {
    let server = server_with_pinned_hosts("net-none");
    let outside = Outside::start("127.0.0.2");
    let created = server.post("/v1/sandboxes", &json!({}));
    assert_eq!(created.status, 201, "{}", created.body);
    let view = created.json();
    assert_eq!(view["network"], json!({"mode": "none", "default_action": "deny", "rules": []}), "{view}");
    let sandbox = view["id"].as_str().unwrap();

    let dev = server.sh(sandbox, "cat /proc/net/dev")["stdout"].as_str().unwrap().to_owned();
    let interfaces: Vec<&str> =
        dev.lines().skip(2).filter_map(|l| l.split_once(':')).map(|(name, _)| name.trim()).collect();
    assert_eq!(interfaces, ["lo"], "{dev}");

    // A direct connection to the host's loopback reaches the sandbox's own loopback instead.
    let script = format!(
        "import socket\ntry:\n    socket.create_connection(('127.0.0.2', {}), timeout=10)\n    print('connected')\n\
         except OSError as e:\n    print(type(e).__name__)",
        outside.port
    );
    let direct = python(&server, sandbox, &script);
    assert_eq!(direct["stdout"], "ConnectionRefusedError\n", "{direct}");
    let no_proxy = curl(&server, sandbox, &format!("--noproxy '*' {}", outside.url("allowed.test", "")));
    assert_ne!(no_proxy.exit_code, 0, "a name does not resolve without the proxy: {no_proxy:?}");

    // Through the proxy, mode none refuses.
    assert_denied(&curl(&server, sandbox, &outside.url("allowed.test", "")), "mode none");
    let (recorded, _) = denials(&server, sandbox, "");
    assert_eq!(
        targets_and_rules(&recorded),
        [(format!("allowed.test:{}", outside.port), "mode none".to_owned())]
    );
    assert_eq!(outside.accepted(), 0);
}

#[test]
fn root_host_mode_when_the_server_allows_it() {
    let config = format!("[server.network]\nallow_host = true\n{PINNED_HOSTS}");
    let server = Server::start_with_config("net-host", &config, &[]);
    let outside = Outside::start("127.0.0.2");
    let sandbox = sandbox_with(&server, json!({"mode": "host"}));

    let env = server.sh(&sandbox, "env | grep -ci _proxy || true");
    assert_eq!(env["stdout"], "0\n", "no proxy in host mode: {env}");
    let direct = curl(&server, &sandbox, &outside.url("127.0.0.2", "host"));
    assert_reached(&direct, &outside.answer("127.0.0.2", "host"));
    assert_eq!(outside.accepted(), 1);

    let leave = server.request(
        "PUT",
        &format!("/v1/sandboxes/{sandbox}/network"),
        Some(&json!({"mode": "allowlist"})),
    );
    assert_eq!((leave.status, leave.code()), (409, "NETWORK_MODE_FIXED".to_owned()), "{}", leave.body);
    let other = sandbox_with(&server, json!({"mode": "none"}));
    let enter =
        server.request("PATCH", &format!("/v1/sandboxes/{other}/network"), Some(&json!({"mode": "host"})));
    assert_eq!((enter.status, enter.code()), (409, "NETWORK_MODE_FIXED".to_owned()), "{}", enter.body);
}

#[test]
fn host_mode_is_refused_unless_the_server_allows_it() {
    let server = Server::start("net-host-forbidden", &[]);
    let refused = server.post("/v1/sandboxes", &json!({"network": {"mode": "host"}}));
    assert_eq!(refused.code(), "NETWORK_HOST_FORBIDDEN", "{}", refused.body);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(server.get("/v1/sandboxes").json()["items"], json!([]), "no sandbox was made");
}

#[test]
fn invalid_policies_are_refused_naming_the_field() {
    let server = Server::start("net-invalid", &[]);
    let create = |network: Value| server.post("/v1/sandboxes", &json!({ "network": network }));
    for target in ["*.*.x", "10.0.0.0/33", "exa mple.com", "127.1", "", "*.", "a.*.b"] {
        let refused = create(allowlist(json!([allow(target)])));
        assert_policy_refused(&refused, "network.rules[0].target");
        let message = refused.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains(&format!("{target:?}: ")) || target.is_empty(), "{message}");
    }
    // 10.1.2.3/8 is 10.0.0.0/8: a second rule for it would never decide.
    assert_policy_refused(
        &create(allowlist(json!([allow("10.0.0.0/8"), deny("10.1.2.3/8")]))),
        "rules[1].target",
    );
    assert_policy_refused(&create(json!({"mode": "none", "rules": [allow("x.org")]})), "rules");
    assert_policy_refused(&create(json!({"mode": "none", "default_action": "allow"})), "default_action");

    // Values of the wrong kind are refused like any other malformed field.
    for network in [
        json!({"mode": "open"}),
        json!({"mode": "allowlist", "rules": [{"action": "maybe", "target": "x.org"}]}),
    ] {
        let refused = create(network);
        assert_eq!(
            (refused.status, refused.code()),
            (400, "INVALID_ARGUMENT".to_owned()),
            "{}",
            refused.body
        );
    }
    assert_eq!(server.get("/v1/sandboxes").json()["items"], json!([]), "no sandbox was made");
}

#[test]
fn root_invalid_policy_changes_change_nothing() {
    let server = Server::start("net-invalid-change", &[]);
    let sandbox = sandbox_with(&server, allowlist(json!([allow("keep.test")])));
    let network = format!("/v1/sandboxes/{sandbox}/network");
    for (method, body, field) in [
        ("PUT", json!({"mode": "allowlist", "rules": [allow("10.0.0.0/33")]}), "rules[0].target"),
        ("PATCH", json!({"rules": [allow("ok.test"), allow("*.*.x")]}), "rules[1].target"),
        ("PATCH", json!({"remove": ["*bad"]}), "remove[0]"),
        ("PATCH", json!({"mode": "none"}), "rules"),
    ] {
        assert_policy_refused(&server.request(method, &network, Some(&body)), field);
    }
    let policy = server.get(&network).json();
    assert_eq!(policy["rules"], json!([allow("keep.test")]), "a refused change changes nothing");
}

// ---------------------------------------------------------------------------------------------
// Ingress

/// A server for the sandbox: answers any request with JSON describing it (method, path, body
/// and the headers of interest).
const ECHO_SERVER: &str = r#"import http.server, json, sys

class Echo(http.server.BaseHTTPRequestHandler):
    def answer(self):
        length = int(self.headers.get('Content-Length') or 0)
        seen = {
            'method': self.command,
            'path': self.path,
            'body': self.rfile.read(length).decode(),
            'host': self.headers.get('Host'),
            'prefix': self.headers.get('X-Forwarded-Prefix'),
            'authorization': self.headers.get('Authorization'),
            'x_api_key': self.headers.get('X-API-Key'),
            'cookie': self.headers.get('Cookie'),
            'custom': self.headers.get('X-Custom'),
        }
        out = json.dumps(seen).encode()
        self.send_response(201 if self.command == 'POST' else 200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(out)))
        self.send_header('X-From-Sandbox', 'yes')
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = answer

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), Echo).serve_forever()
"#;

/// A WebSocket server for the sandbox, stdlib only: it completes the upgrade, reads one text
/// frame and sends back `echo: ` and the frame's text. Any other request gets 400.
const WEBSOCKET_ECHO: &str = r#"import base64, hashlib, socket, sys

GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(('127.0.0.1', int(sys.argv[1])))
listener.listen()
while True:
    conn, _ = listener.accept()
    with conn:
        stream = conn.makefile('rb')
        request_line = stream.readline().decode()
        headers = {}
        while True:
            line = stream.readline()
            if line in (b'\r\n', b''):
                break
            name, value = line.decode().split(':', 1)
            headers[name.strip().lower()] = value.strip()
        if headers.get('upgrade', '').lower() != 'websocket':
            conn.sendall(b'HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
            continue
        accept = base64.b64encode(hashlib.sha1((headers['sec-websocket-key'] + GUID).encode()).digest())
        conn.sendall(b'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
                     b'Sec-WebSocket-Accept: ' + accept + b'\r\nX-Path: '
                     + request_line.split()[1].encode() + b'\r\n\r\n')
        first, second = stream.read(2)
        length = second & 0x7f
        if length == 126:
            length = int.from_bytes(stream.read(2), 'big')
        mask = stream.read(4) if second & 0x80 else bytes(4)
        text = bytes(b ^ mask[i % 4] for i, b in enumerate(stream.read(length)))
        reply = b'echo: ' + text
        conn.sendall(bytes([0x81, len(reply)]) + reply)
"#;

/// Start the echo server on `port` in the sandbox and wait until it answers.
fn start_echo_server(server: &Server, sandbox: &str, port: u16) {
    write_file(server, sandbox, "echo_server.py", ECHO_SERVER);
    start_background(server, sandbox, &format!("exec python3 echo_server.py {port}"));
    wait_for_port(server, sandbox, port);
}

/// What the echo server saw, from its answer.
fn seen(reply: &Reply) -> Value {
    assert!(reply.status == 200 || reply.status == 201, "{} {}", reply.status, reply.body);
    reply.json()
}

#[test]
fn root_ingress_reaches_a_server_in_the_sandbox() {
    let mut server = Server::start("net-ingress", &[]);
    let key = server.create_key("owner");
    let sandbox = server.create_sandbox(&json!({}));

    // Nothing listens yet.
    let unreachable = server.get(&port_path(&sandbox, 8000, "/file.txt"));
    assert_eq!(
        (unreachable.status, unreachable.code()),
        (503, "PORT_UNREACHABLE".to_owned()),
        "{}",
        unreachable.body
    );

    for bad in ["0", "65536", "http"] {
        let refused = server.get(&format!("/v1/sandboxes/{sandbox}/ports/{bad}/"));
        assert_eq!(
            (refused.status, refused.code()),
            (400, "INVALID_ARGUMENT".to_owned()),
            "{}",
            refused.body
        );
    }

    // A static file server.
    let made = server.sh(&sandbox, "mkdir site && printf 'served from the sandbox\\n' > site/file.txt");
    assert_eq!(made["exit_code"], 0, "{made}");
    start_background(&server, &sandbox, "exec python3 -m http.server 8000 --bind 127.0.0.1 --directory site");
    wait_for_port(&server, &sandbox, 8000);
    let file = server.get(&port_path(&sandbox, 8000, "/file.txt"));
    assert_eq!((file.status, file.body.as_str()), (200, "served from the sandbox\n"), "{file:?}");
    let listing = server.get(&port_path(&sandbox, 8000, "/"));
    assert!(listing.status == 200 && listing.body.contains("file.txt"), "{listing:?}");

    // A server that says what it got: paths, queries, bodies and headers pass through; the
    // caller's credentials for this server do not.
    start_echo_server(&server, &sandbox, 8001);
    let get = server
        .try_request(
            "GET",
            &port_path(&sandbox, 8001, "/a/b?x=1&y=two"),
            None,
            &[("Cookie", "session=secret"), ("X-Custom", "kept")],
        )
        .unwrap();
    assert_eq!(get.header("x-from-sandbox"), Some("yes"), "{get:?}");
    let got = seen(&get);
    assert_eq!(
        (got["method"].as_str(), got["path"].as_str(), got["custom"].as_str()),
        (Some("GET"), Some("/a/b?x=1&y=two"), Some("kept")),
        "{got}"
    );
    assert_eq!(
        (&got["authorization"], &got["cookie"]),
        (&Value::Null, &Value::Null),
        "credentials leaked: {got}"
    );
    assert_eq!(got["host"], "localhost:8001", "{got}");
    assert_eq!(got["prefix"], format!("/v1/sandboxes/{sandbox}/ports/8001"), "{got}");

    let post = server
        .try_request(
            "POST",
            &port_path(&sandbox, 8001, "/submit"),
            Some("name=airlock&n=3"),
            &[("X-API-Key", key.as_str()), ("Content-Type", "application/x-www-form-urlencoded")],
        )
        .unwrap();
    assert_eq!(post.status, 201, "the sandbox server's status passes back: {post:?}");
    let posted = seen(&post);
    assert_eq!(
        (posted["method"].as_str(), posted["path"].as_str(), posted["body"].as_str()),
        (Some("POST"), Some("/submit"), Some("name=airlock&n=3")),
        "{posted}"
    );
    assert_eq!(posted["x_api_key"], Value::Null, "the API key leaked: {posted}");

    for (rest, path) in [("", "/"), ("/", "/"), ("/?q=1", "/?q=1")] {
        let root = seen(&server.get(&port_path(&sandbox, 8001, rest)));
        assert_eq!(root["path"], path, "ports/8001{rest}: {root}");
    }
    let put = seen(&server.request("PUT", &port_path(&sandbox, 8001, "/thing"), Some(&json!({"v": 1}))));
    assert_eq!((put["method"].as_str(), put["body"].as_str()), (Some("PUT"), Some(r#"{"v":1}"#)), "{put}");
}

#[test]
fn root_ingress_relays_websockets() {
    const PORT: u16 = 8765;
    let server = Server::start("net-websocket", &[]);
    let sandbox = server.create_sandbox(&json!({}));
    write_file(&server, &sandbox, "ws_echo.py", WEBSOCKET_ECHO);
    start_background(&server, &sandbox, &format!("exec python3 ws_echo.py {PORT}"));
    wait_for_port(&server, &sandbox, PORT);

    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // The key and its accept value are RFC 6455's example.
    write!(
        stream,
        "GET {} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        port_path(&sandbox, PORT, "/ws")
    )
    .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.trim_end().is_empty() {
            break;
        }
        head.push(line.trim_end().to_owned());
    }
    assert!(head[0].starts_with("HTTP/1.1 101"), "{head:?}");
    let header = |name: &str| {
        head.iter()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    assert_eq!(header("sec-websocket-accept").as_deref(), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head:?}");
    assert_eq!(header("x-path").as_deref(), Some("/ws"), "{head:?}");

    // One masked text frame out, one text frame back.
    let text = b"hello through airlock";
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(text.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    stream.write_all(&frame).unwrap();
    let mut frame_head = [0u8; 2];
    reader.read_exact(&mut frame_head).unwrap();
    assert_eq!(frame_head[0], 0x81, "a final text frame");
    let mut payload = vec![0u8; usize::from(frame_head[1] & 0x7f)];
    reader.read_exact(&mut payload).unwrap();
    assert_eq!(String::from_utf8_lossy(&payload), "echo: hello through airlock");
}

#[test]
fn root_ingress_belongs_to_the_sandboxs_key() {
    let mut server = Server::start("net-ingress-keys", &[]);
    let _owner = server.create_key("owner");
    let other = server.create_key("other");
    let sandbox = server.create_sandbox(&json!({}));
    start_echo_server(&server, &sandbox, 8080);
    let path = port_path(&sandbox, 8080, "/private");

    assert_eq!(seen(&server.get(&path))["path"], "/private", "the owner gets through");
    let as_other = server.try_request("GET", &path, None, &[("X-API-Key", other.as_str())]).unwrap();
    assert_eq!(
        (as_other.status, as_other.code()),
        (404, "SANDBOX_NOT_FOUND".to_owned()),
        "{}",
        as_other.body
    );
    let bearer = format!("Bearer {other}");
    let posted =
        server.try_request("POST", &path, Some("{}"), &[("Authorization", bearer.as_str())]).unwrap();
    assert_eq!(posted.status, 404, "{}", posted.body);
    let anonymous = request_to(server.port, None, "GET", &path, None, &[]).unwrap();
    assert_eq!((anonymous.status, anonymous.code()), (401, "UNAUTHORIZED".to_owned()), "{}", anonymous.body);
}

/// Make a signed link to `port` of the sandbox.
fn make_link(server: &Server, sandbox: &str, body: Value) -> Reply {
    server.post(&format!("/v1/sandboxes/{sandbox}/links"), &body)
}

#[test]
fn root_signed_links_open_one_port_without_a_key_until_they_expire_or_are_revoked() {
    let mut server = Server::start("net-links", &[]);
    let _owner = server.create_key("owner");
    let other = server.create_key("other");
    let sandbox = server.create_sandbox(&json!({}));
    start_echo_server(&server, &sandbox, 8080);
    let anonymous = |path: &str, headers: &[(&str, &str)]| {
        request_to(server.port, None, "GET", path, None, headers).unwrap()
    };

    let made = make_link(&server, &sandbox, json!({"port": 8080}));
    assert_eq!(made.status, 201, "{}", made.body);
    let link = made.json();
    let path = link["path"].as_str().unwrap().to_owned();
    assert_eq!(link["url"], format!("http://localhost{path}"), "{link}");
    assert_eq!(link["port"], 8080, "{link}");
    assert!(path.starts_with("/v1/links/") && path.ends_with('/'), "{link}");

    // No key needed, none passed on; the path after the token is the sandbox server's.
    let got = seen(&anonymous(&format!("{path}a/b?x=1"), &[("Cookie", "s=1")]));
    assert_eq!((got["path"].as_str(), got["cookie"].as_str()), (Some("/a/b?x=1"), None), "{got}");
    assert_eq!(got["prefix"], path.trim_end_matches('/'), "{got}");
    let with_other_key = request_to(server.port, Some(&other), "GET", &path, None, &[]).unwrap();
    assert_eq!(seen(&with_other_key)["path"], "/", "a link works whatever key comes with it");

    // A changed token opens nothing: another port, another sandbox, a later expiry.
    let token = link["token"].as_str().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 5, "{token}");
    let forgeries = [
        format!("{}.8081.{}.{}.{}", parts[0], parts[2], parts[3], parts[4]),
        format!("sbx_00000000000000000000.{}", parts[1..].join(".")),
        format!("{}.{}.{}.9999999999999.{}", parts[0], parts[1], parts[2], parts[4]),
        token.replace(parts[4], &"0".repeat(32)),
        "not-a-token".to_owned(),
    ];
    for forged in forgeries {
        let refused = anonymous(&format!("/v1/links/{forged}/"), &[]);
        assert_eq!(
            (refused.status, refused.code()),
            (403, "LINK_INVALID".to_owned()),
            "{forged}: {}",
            refused.body
        );
    }

    // Only the sandbox's owner makes links, for sensible ports and lifetimes.
    let as_other = server
        .try_request(
            "POST",
            &format!("/v1/sandboxes/{sandbox}/links"),
            Some(r#"{"port": 8080}"#),
            &[("X-API-Key", other.as_str())],
        )
        .unwrap();
    assert_eq!(
        (as_other.status, as_other.code()),
        (404, "SANDBOX_NOT_FOUND".to_owned()),
        "{}",
        as_other.body
    );
    for (body, field) in [
        (json!({"port": 0}), "port"),
        (json!({"port": 8080, "expires_in": 0}), "expires_in"),
        (json!({"port": 8080, "expires_in": 604801}), "expires_in"),
    ] {
        let refused = make_link(&server, &sandbox, body.clone());
        assert_eq!(
            (refused.status, refused.code()),
            (400, "INVALID_ARGUMENT".to_owned()),
            "{body}: {}",
            refused.body
        );
        assert!(refused.body.contains(field), "{body}: {}", refused.body);
    }

    // A link stops at its expiry.
    let short = make_link(&server, &sandbox, json!({"port": 8080, "expires_in": 1})).json();
    let short_path = short["path"].as_str().unwrap().to_owned();
    wait_for(|| anonymous(&short_path, &[]).code() == "LINK_EXPIRED");
    assert_eq!(anonymous(&short_path, &[]).status, 403);

    // Revoking refuses every link made so far, and later links work.
    let revoked = server.request("DELETE", &format!("/v1/sandboxes/{sandbox}/links"), None);
    assert_eq!(revoked.status, 204, "{}", revoked.body);
    let refused = anonymous(&path, &[]);
    assert_eq!((refused.status, refused.code()), (403, "LINK_INVALID".to_owned()), "{}", refused.body);
    assert!(refused.body.contains("revoked"), "{}", refused.body);
    let fresh = make_link(&server, &sandbox, json!({"port": 8080, "expires_in": 600})).json();
    assert_eq!(seen(&anonymous(fresh["path"].as_str().unwrap(), &[]))["path"], "/", "{fresh}");

    // A deleted sandbox's links lead nowhere.
    let deleted = server.request("DELETE", &format!("/v1/sandboxes/{sandbox}"), None);
    assert!(deleted.status < 300, "{}", deleted.body);
    let gone = anonymous(fresh["path"].as_str().unwrap(), &[]);
    assert_eq!((gone.status, gone.code()), (409, "SANDBOX_STATE_CONFLICT".to_owned()), "{}", gone.body);
    assert!(gone.body.contains("terminated"), "{}", gone.body);
}
