//! `airlock run --allow`: the one-shot run's egress proxy, against "outside" HTTP servers this
//! test starts on the host's loopback (127.0.0.2, 127.0.0.3), reached by names pinned with
//! `--add-host`. These run as root and, in the rootless pass, as an unprivileged user.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;

use common::run;

/// An HTTP server on `ip` that answers every request with `name`, on a thread of its own.
fn outside(ip: &str, name: &'static str) -> u16 {
    let listener = TcpListener::bind((ip, 0)).expect("bind an outside server");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                name.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    port
}

#[test]
fn an_allowed_name_answers_and_everything_else_is_refused_and_recorded() {
    let allowed = outside("127.0.0.2", "allowed-host");
    let denied = outside("127.0.0.3", "denied-host");
    let script = format!(
        "curl -s -m 10 http://allowed.test:{allowed}/; echo; \
         curl -s -m 10 --proxytunnel http://allowed.test:{allowed}/; echo; \
         curl -s -m 10 -o /dev/null -w '%{{http_code}}\\n' http://denied.test:{denied}/; \
         curl -s -m 10 --noproxy '' -x http://127.0.0.1:3128 -o /dev/null -w '%{{http_code}}\\n' http://127.0.0.2:{allowed}/"
    );
    let r = run(
        &[
            "--allow",
            "allowed.test",
            "--add-host",
            "allowed.test:127.0.0.2",
            "--add-host",
            "denied.test:127.0.0.3",
        ],
        &["/bin/sh", "-c", &script],
    );
    let lines: Vec<&str> = r.stdout().lines().collect();
    assert_eq!(lines, ["allowed-host", "allowed-host", "403", "403"], "{}\n{}", r.json, r.stderr);
    let denials = r.json["network_denials"].as_array().expect("denials are reported");
    let seen: Vec<(&str, &str)> =
        denials.iter().map(|d| (d["target"].as_str().unwrap(), d["rule"].as_str().unwrap())).collect();
    assert_eq!(
        seen,
        [
            (format!("denied.test:{denied}").as_str(), "default: deny"),
            // An IP literal is not the allowed name, and loopback is never reached by address.
            (format!("127.0.0.2:{allowed}").as_str(), "protected: loopback address"),
        ]
    );
}

#[test]
fn python_reaches_an_allowed_name_through_the_proxy_variables() {
    let allowed = outside("127.0.0.2", "from-python");
    let code = format!("import urllib.request; print(urllib.request.urlopen('http://allowed.test:{allowed}/').read().decode())");
    let r = run(&["--allow", "*.test", "--add-host", "allowed.test:127.0.0.2"], &["python3", "-c", &code]);
    assert_eq!(r.stdout().trim(), "from-python", "{}", r.json);
}

#[test]
fn without_allow_there_is_no_proxy_and_no_way_out() {
    let port = outside("127.0.0.2", "unreachable");
    let script = format!(
        "env | grep -ci proxy; curl -s -m 5 -o /dev/null -w '%{{http_code}}\\n' http://127.0.0.2:{port}/; \
         curl -s -m 5 -o /dev/null -w '%{{http_code}}\\n' -x http://127.0.0.1:3128 http://127.0.0.2:{port}/"
    );
    let r = run(&[], &["/bin/sh", "-c", &script]);
    assert_eq!(r.stdout().lines().collect::<Vec<_>>(), ["0", "000", "000"], "{}", r.json);
    assert!(r.json.get("network_denials").is_none());
}

#[test]
fn allow_refuses_bad_targets_and_the_host_network() {
    let bad = run(&["--allow", "*.*.example.com"], &["true"]);
    assert_eq!((bad.status, bad.code()), (125, "E1003"), "{}", bad.json);
    assert!(bad.json["error"]["message"].as_str().unwrap().contains("*.*.example.com"), "{}", bad.json);
    let both = run(&["--allow", "example.com", "--network"], &["true"]);
    assert_eq!((both.status, both.code()), (125, "E1003"), "{}", both.json);
    let pin = run(&["--add-host", "a.test:127.0.0.2"], &["true"]);
    assert_eq!(pin.code(), "E1003", "{}", pin.json);
}
