//! End-to-end tests of the files API of `airlock serve`: the real binary, driven over HTTP with
//! binary bodies. Tests that start sandboxes need root (cgroup limits); they are named `root_*`.
//! The attack tests plant symlinks, FIFOs and host files and show that no path through the API
//! reaches the host.

mod common;
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::Server;

/// An answer with its body as bytes.
struct Bin {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Bin {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("not JSON ({e}): {} {}", self.status, String::from_utf8_lossy(&self.body))
        })
    }

    fn code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_default().to_owned()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request with a binary body; the server's key, if any, is sent unless `headers` has one.
fn send(server: &Server, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Bin {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    let has_key = headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("x-api-key"));
    if let (Some(key), false) = (&server.key, has_key) {
        head += &format!("Authorization: Bearer {key}\r\n");
    }
    for (name, value) in headers {
        head += &format!("{name}: {value}\r\n");
    }
    head += &format!("Content-Length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let Some((name, value)) = line.trim_end().split_once(':') else { break };
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut raw = Vec::new();
    reader.read_to_end(&mut raw).unwrap();
    let chunked =
        headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(&raw) } else { raw };
    Bin { status, headers, body }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&raw[..end]).trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[end + 4 + size..];
    }
    out
}

/// `path` for a query string: everything but unreserved characters and `/` percent-encoded.
fn enc(path: &str) -> String {
    path.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn files(id: &str) -> String {
    format!("/v1/sandboxes/{id}/files")
}

fn upload(server: &Server, id: &str, path: &str, data: &[u8]) -> Bin {
    send(server, "PUT", &format!("{}/content?path={}", files(id), enc(path)), &[], data)
}

fn download(server: &Server, id: &str, path: &str, headers: &[(&str, &str)]) -> Bin {
    send(server, "GET", &format!("{}/content?path={}", files(id), enc(path)), headers, b"")
}

fn stat(server: &Server, id: &str, path: &str) -> Bin {
    send(server, "GET", &format!("{}/stat?path={}", files(id), enc(path)), &[], b"")
}

fn post_json(server: &Server, path: &str, body: &Value) -> Bin {
    send(server, "POST", path, &[("Content-Type", "application/json")], body.to_string().as_bytes())
}

/// Bytes in which every value occurs and no two pieces of the transfer look alike, so a piece
/// written at the wrong offset shows.
fn pattern(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_u32;
    (0..len)
        .map(|i| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            if i < 256 {
                i as u8
            } else {
                (state >> 24) as u8
            }
        })
        .collect()
}

fn multipart(boundary: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let filename = filename.map(|f| format!("; filename=\"{f}\"")).unwrap_or_default();
        body.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{name}\"{filename}\r\n").as_bytes(),
        );
        body.extend_from_slice(b"Content-Type: application/octet-stream\r\n\r\n");
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

#[test]
fn files_routes_are_documented_and_check_their_input_first() {
    let server = Server::start("files-api", &[]);
    let openapi = server.get("/openapi.json").json();
    for path in ["", "/content", "/upload", "/stat", "/mkdir", "/move", "/text"] {
        let path = format!("/v1/sandboxes/{{id}}/files{path}");
        assert!(openapi["paths"][&path].is_object(), "{path} missing from /openapi.json");
    }
    assert!(openapi["components"]["schemas"]["FileView"].is_object());

    let missing = stat(&server, "sbx_nope", "/workspace");
    assert_eq!((missing.status, missing.code()), (404, "SANDBOX_NOT_FOUND".to_owned()), "{}", missing.text());
    let no_path = send(&server, "GET", "/v1/sandboxes/sbx_nope/files/stat", &[], b"");
    assert_eq!((no_path.status, no_path.code()), (400, "INVALID_ARGUMENT".to_owned()));
    assert!(no_path.text().contains("path"), "{}", no_path.text());
    let unknown = send(&server, "GET", "/v1/sandboxes/sbx_nope/files?path=/&deep=2", &[], b"");
    assert!(unknown.status == 400 && unknown.text().contains("deep"), "{}", unknown.text());
    let depth = send(&server, "GET", "/v1/sandboxes/sbx_nope/files?depth=0", &[], b"");
    assert!(depth.status == 400 && depth.text().contains("depth"), "{}", depth.text());
    let mode = send(&server, "PUT", "/v1/sandboxes/sbx_nope/files/content?path=a&mode=4755", &[], b"x");
    assert!(mode.status == 400 && mode.text().contains("mode"), "{}", mode.text());
    let field = post_json(&server, "/v1/sandboxes/sbx_nope/files/move", &json!({"from": "a", "too": "b"}));
    assert!(field.status == 400 && field.text().contains("too"), "{}", field.text());
    let not_multipart = send(&server, "POST", "/v1/sandboxes/sbx_nope/files/upload", &[], b"x");
    assert_eq!(not_multipart.status, 415, "{}", not_multipart.text());
}

#[test]
fn root_upload_and_download_of_binary_data_with_ranges() {
    let server = Server::start("files-data", &[]);
    let id = server.create_sandbox(&json!({}));
    // More than two pieces each way, ending in a partial one.
    let data = pattern((5 << 20) + 123);
    let size = data.len() as u64;
    let put = upload(&server, &id, "/workspace/deep/er/a.bin", &data);
    assert_eq!(put.status, 200, "{}", put.text());
    let view = put.json();
    assert_eq!(
        (view["path"].as_str(), view["type"].as_str(), view["size"].as_u64()),
        (Some("/workspace/deep/er/a.bin"), Some("file"), Some(size)),
        "{view}"
    );
    let host_copy = server.data_dir.join("sandboxes").join(&id).join("workspace/deep/er/a.bin");
    assert!(std::fs::read(host_copy).unwrap() == data, "the workspace holds other bytes");

    let got = download(&server, &id, "deep/er/a.bin", &[]);
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-length"), Some(size.to_string().as_str()));
    assert_eq!(got.header("accept-ranges"), Some("bytes"));
    assert_eq!(got.header("content-type"), Some("application/octet-stream"));
    assert!(got.body == data, "downloaded {} bytes, not the uploaded ones", got.body.len());

    let ranges: [(&str, u64, u64); 4] = [
        ("bytes=0-99", 0, 99),
        ("bytes=-10", size - 10, size - 1),
        ("bytes=1048570-3145740", 1_048_570, 3_145_740),
        ("bytes=5242000-", 5_242_000, size - 1),
    ];
    for (range, start, end) in ranges {
        let part = download(&server, &id, "deep/er/a.bin", &[("Range", range)]);
        assert_eq!(part.status, 206, "{range}");
        assert_eq!(part.header("content-range"), Some(format!("bytes {start}-{end}/{size}").as_str()));
        assert_eq!(part.header("content-length"), Some((end - start + 1).to_string().as_str()), "{range}");
        assert!(part.body == data[start as usize..=end as usize], "{range}: other bytes");
    }
    for range in [format!("bytes={size}-"), "bytes=-0".to_owned(), format!("bytes={}-{}", size + 5, size + 9)]
    {
        let refused = download(&server, &id, "deep/er/a.bin", &[("Range", &range)]);
        assert_eq!((refused.status, refused.code()), (416, "RANGE_NOT_SATISFIABLE".to_owned()), "{range}");
        assert_eq!(refused.header("content-range"), Some(format!("bytes */{size}").as_str()));
    }
    let several = download(&server, &id, "deep/er/a.bin", &[("Range", "bytes=0-1,5-6")]);
    assert_eq!((several.status, several.body.len() as u64), (200, size), "several ranges get it whole");

    // A second upload truncates; a mode applies to a new file; an empty body makes an empty file.
    assert_eq!(upload(&server, &id, "deep/er/a.bin", b"short").json()["size"], 5);
    assert_eq!(download(&server, &id, "deep/er/a.bin", &[]).body, b"short");
    let private = send(&server, "PUT", &format!("{}/content?path=private&mode=0600", files(&id)), &[], b"s");
    assert_eq!(private.json()["mode"], "0600", "{}", private.text());
    let empty = upload(&server, &id, "empty", b"");
    assert_eq!((empty.status, empty.json()["size"].as_u64()), (200, Some(0)));
    let empty = download(&server, &id, "empty", &[]);
    assert_eq!((empty.status, empty.body.len()), (200, 0));
    assert_eq!(download(&server, &id, "empty", &[("Range", "bytes=0-")]).status, 416);

    // A file of /proc reports size 0 but has content: it comes whole, without a length.
    let status = download(&server, &id, "/proc/self/status", &[]);
    assert_eq!(status.status, 200);
    assert!(
        status.header("content-length").is_none() && status.text().contains("Name:"),
        "{}",
        status.text()
    );
}

#[test]
fn root_multipart_list_stat_mkdir_move_delete_and_text() {
    let server = Server::start("files-ops", &[]);
    let id = server.create_sandbox(&json!({}));
    let f = files(&id);

    let binary = pattern(300_000);
    let form =
        multipart("xXairlockXx", &[("file", Some("one.bin"), &binary), ("file", Some("two.txt"), b"two\n")]);
    let uploaded = send(
        &server,
        "POST",
        &format!("{f}/upload?dir=/workspace/up"),
        &[("Content-Type", "multipart/form-data; boundary=xXairlockXx")],
        &form,
    );
    assert_eq!(uploaded.status, 201, "{}", uploaded.text());
    let written = uploaded.json();
    let names: Vec<&str> =
        written["files"].as_array().unwrap().iter().map(|v| v["path"].as_str().unwrap()).collect();
    assert_eq!(names, ["/workspace/up/one.bin", "/workspace/up/two.txt"]);
    assert_eq!(written["files"][0]["size"], 300_000);
    assert!(download(&server, &id, "up/one.bin", &[]).body == binary);
    assert_eq!(server.sh(&id, "cat /workspace/up/two.txt")["stdout"], "two\n", "a command sees the upload");
    for (filename, why) in [("../escape", "a slash"), ("..", "dot-dot"), ("a/b", "a slash")] {
        let form = multipart("b", &[("file", Some(filename), b"x")]);
        let refused = send(
            &server,
            "POST",
            &format!("{f}/upload"),
            &[("Content-Type", "multipart/form-data; boundary=b")],
            &form,
        );
        assert_eq!((refused.status, refused.code()), (400, "INVALID_ARGUMENT".to_owned()), "{why}");
    }
    let plain = multipart("b", &[("note", None, b"not a file")]);
    let plain = send(
        &server,
        "POST",
        &format!("{f}/upload"),
        &[("Content-Type", "multipart/form-data; boundary=b")],
        &plain,
    );
    assert!(plain.status == 400 && plain.text().contains("note"), "{}", plain.text());

    // mkdir with and without parents.
    let made = post_json(&server, &format!("{f}/mkdir"), &json!({"path": "a/b/c", "parents": true}));
    assert_eq!(made.status, 201, "{}", made.text());
    assert_eq!(
        (made.json()["type"].as_str(), made.json()["path"].as_str()),
        (Some("directory"), Some("/workspace/a/b/c"))
    );
    assert_eq!(
        post_json(&server, &format!("{f}/mkdir"), &json!({"path": "a/b/c", "parents": true})).status,
        201
    );
    let exists = post_json(&server, &format!("{f}/mkdir"), &json!({"path": "a/b/c"}));
    assert_eq!((exists.status, exists.code()), (409, "FILE_EXISTS".to_owned()));
    let orphan = post_json(&server, &format!("{f}/mkdir"), &json!({"path": "x/y"}));
    assert_eq!((orphan.status, orphan.code()), (404, "FILE_NOT_FOUND".to_owned()));

    // Listing with depth, stat.
    upload(&server, &id, "a/b/c/leaf.txt", b"leaf");
    let listed = |depth: u32| -> Vec<String> {
        let reply = send(&server, "GET", &format!("{f}?path=/workspace/a&depth={depth}"), &[], b"");
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["truncated"], false);
        reply.json()["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["path"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(listed(1), ["/workspace/a/b"]);
    assert_eq!(listed(2), ["/workspace/a/b", "/workspace/a/b/c"]);
    assert_eq!(listed(3), ["/workspace/a/b", "/workspace/a/b/c", "/workspace/a/b/c/leaf.txt"]);
    let whole = send(&server, "GET", &f, &[], b"").json();
    assert!(whole["entries"].as_array().unwrap().iter().any(|e| e["name"] == "up"), "{whole}");
    let leaf = stat(&server, &id, "/workspace/a/b/c/leaf.txt").json();
    assert_eq!((leaf["size"].as_u64(), leaf["name"].as_str()), (Some(4), Some("leaf.txt")), "{leaf}");
    assert!(leaf["modified_at"].as_str().unwrap().ends_with('Z'), "{leaf}");
    assert_eq!(stat(&server, &id, "nothing-here").code(), "FILE_NOT_FOUND");

    // Move with and without overwrite.
    upload(&server, &id, "m1", b"first");
    upload(&server, &id, "m2", b"second");
    let refused = post_json(&server, &format!("{f}/move"), &json!({"from": "m1", "to": "m2"}));
    assert_eq!((refused.status, refused.code()), (409, "FILE_EXISTS".to_owned()), "{}", refused.text());
    assert_eq!(download(&server, &id, "m2", &[]).body, b"second");
    let moved =
        post_json(&server, &format!("{f}/move"), &json!({"from": "m1", "to": "m2", "overwrite": true}));
    assert_eq!((moved.status, moved.json()["path"].as_str()), (200, Some("/workspace/m2")));
    assert_eq!(download(&server, &id, "m2", &[]).body, b"first");
    assert_eq!(stat(&server, &id, "m1").status, 404);
    let renamed = post_json(&server, &format!("{f}/move"), &json!({"from": "m2", "to": "a/m3"}));
    assert_eq!(renamed.json()["path"], "/workspace/a/m3");

    // Delete: a directory with contents needs recursive.
    let delete = |path: &str, recursive: bool| {
        send(&server, "DELETE", &format!("{f}?path={}&recursive={recursive}", enc(path)), &[], b"")
    };
    let full = delete("a", false);
    assert_eq!((full.status, full.code()), (409, "DIRECTORY_NOT_EMPTY".to_owned()));
    assert_eq!(delete("a", true).status, 204);
    assert_eq!(stat(&server, &id, "a").status, 404);
    assert_eq!(delete("a", true).code(), "FILE_NOT_FOUND");

    // Text files as JSON, both ways with commands.
    let text = "grüße\nline two\n";
    let wrote = send(
        &server,
        "PUT",
        &format!("{f}/text"),
        &[("Content-Type", "application/json")],
        json!({"path": "notes/hello.txt", "content": text}).to_string().as_bytes(),
    );
    assert_eq!(
        (wrote.status, wrote.json()["size"].as_u64()),
        (200, Some(text.len() as u64)),
        "{}",
        wrote.text()
    );
    assert_eq!(server.sh(&id, "cat notes/hello.txt")["stdout"], text);
    server.sh(&id, "printf 'from a command\\n' > made.txt; printf '\\377\\376' > binary.dat");
    let read = send(&server, "GET", &format!("{f}/text?path=made.txt"), &[], b"").json();
    assert_eq!(
        (read["content"].as_str(), read["size"].as_u64()),
        (Some("from a command\n"), Some(15)),
        "{read}"
    );
    assert_eq!(read["path"], "made.txt");
    let not_text = send(&server, "GET", &format!("{f}/text?path=binary.dat"), &[], b"");
    assert_eq!((not_text.status, not_text.code()), (400, "FILE_NOT_UTF8".to_owned()));
    assert_eq!(download(&server, &id, "made.txt", &[]).body, b"from a command\n");

    // Wrong kinds and bad paths.
    let dir = download(&server, &id, "/workspace", &[]);
    assert_eq!((dir.status, dir.code()), (400, "FILE_WRONG_TYPE".to_owned()));
    let file_as_dir = send(&server, "GET", &format!("{f}?path=made.txt"), &[], b"");
    assert_eq!(file_as_dir.code(), "FILE_WRONG_TYPE");
    for path in ["", "a\0b", "/workspace/x\0"] {
        let bad = download(&server, &id, path, &[]);
        assert_eq!((bad.status, bad.code()), (400, "FILE_INVALID_PATH".to_owned()), "{path:?}");
        assert_eq!(upload(&server, &id, path, b"x").status, 400, "{path:?}");
    }
    let nul_json = post_json(&server, &format!("{f}/mkdir"), &json!({"path": "a\u{0}b"}));
    assert_eq!(nul_json.status, 400, "{}", nul_json.text());
}

#[test]
fn root_paused_sandboxes_and_other_keys() {
    let mut server = Server::start("files-state", &[]);
    let bob = {
        server.create_key("alice");
        server.create_key("bob")
    };
    let id = server.create_sandbox(&json!({}));
    assert_eq!(upload(&server, &id, "kept.txt", b"kept").status, 200);
    let key = [("X-API-Key", bob.as_str())];
    let path = format!("{}/content?path=kept.txt", files(&id));
    for (method, path) in [
        ("GET", path.clone()),
        ("PUT", path.clone()),
        ("GET", format!("{}?path=/workspace", files(&id))),
        ("GET", format!("{}/stat?path=kept.txt", files(&id))),
        ("GET", format!("{}/text?path=kept.txt", files(&id))),
        ("DELETE", format!("{}?path=kept.txt", files(&id))),
    ] {
        let other = send(&server, method, &path, &key, b"x");
        assert_eq!((other.status, other.code()), (404, "SANDBOX_NOT_FOUND".to_owned()), "{method} {path}");
    }
    let moved = send(
        &server,
        "POST",
        &format!("{}/move", files(&id)),
        &[key[0], ("Content-Type", "application/json")],
        br#"{"from": "kept.txt", "to": "stolen.txt"}"#,
    );
    assert_eq!(moved.status, 404);

    assert_eq!(server.post(&format!("/v1/sandboxes/{id}/pause"), &json!({})).json()["state"], "paused");
    let paused = [
        download(&server, &id, "kept.txt", &[]),
        upload(&server, &id, "new.txt", b"x"),
        stat(&server, &id, "kept.txt"),
        send(&server, "GET", &files(&id), &[], b""),
        post_json(&server, &format!("{}/mkdir", files(&id)), &json!({"path": "d"})),
        send(&server, "DELETE", &format!("{}?path=kept.txt", files(&id)), &[], b""),
    ];
    for reply in paused {
        assert_eq!(
            (reply.status, reply.code()),
            (409, "SANDBOX_STATE_CONFLICT".to_owned()),
            "{}",
            reply.text()
        );
    }
    assert_eq!(server.post(&format!("/v1/sandboxes/{id}/resume"), &json!({})).json()["state"], "running");
    assert_eq!(download(&server, &id, "kept.txt", &[]).body, b"kept");
}

/// Attack: symlinks planted by sandbox code, `..`, `/proc/self/root` and `/proc/1/root` lead to
/// the sandbox's own files, never the host's, for reads, writes, moves and deletes; a FIFO is
/// refused at once.
#[test]
fn root_planted_paths_never_reach_the_host() {
    let server = Server::start("files-attack", &[]);
    let id = server.create_sandbox(&json!({}));
    // Host files the sandbox must not see: one beside its workspace on the host, one under the
    // test's temporary directory, one that only root can create.
    let pid = std::process::id();
    let beside = server.data_dir.join("sandboxes").join(&id).join(format!("host-marker-{pid}"));
    let in_tmp = server.data_dir.join(format!("host-marker-{pid}"));
    let under_root = format!("/root/airlock-marker-{pid}");
    for marker in [beside.to_str().unwrap(), in_tmp.to_str().unwrap(), &under_root] {
        std::fs::write(marker, "HOST-ONLY-MARKER\n").unwrap();
    }
    let shadow = std::fs::read("/etc/shadow").expect("the host's /etc/shadow (as root)");
    let passwd = std::fs::read("/etc/passwd").unwrap();
    let hostname = std::fs::read("/etc/hostname").ok();
    let planted = server.sh(
        &id,
        &format!(
            "ln -s /etc /workspace/etc-link && ln -s / /workspace/rootlink && \
             ln -s /proc/self/root /workspace/p && ln -s /proc/1/root /workspace/p1 && \
             mkfifo /workspace/fifo && ln -s {under_root} /workspace/m && ln -s /root /workspace/r && \
             ln -s {} /workspace/t",
            in_tmp.display()
        ),
    );
    assert_eq!(planted["exit_code"], 0, "{planted}");

    let refused = |reply: &Bin, what: &str| {
        assert!(matches!(reply.status, 403 | 404), "{what}: {} {}", reply.status, reply.text());
        assert!(
            reply.body != shadow && !reply.text().contains("HOST-ONLY-MARKER"),
            "{what} reached the host"
        );
    };
    for path in [
        "/workspace/etc-link/shadow",
        "/workspace/rootlink/etc/shadow",
        "/workspace/../../etc/shadow",
        "../../../../etc/shadow",
        "/workspace/p/etc/shadow",
        "/workspace/p1/etc/shadow",
        "/proc/self/root/etc/shadow",
        "/proc/1/root/etc/shadow",
        "/etc/shadow",
    ] {
        refused(&download(&server, &id, path, &[]), path);
        refused(&send(&server, "GET", &format!("{}/text?path={}", files(&id), enc(path)), &[], b""), path);
    }
    // The sandbox's own /etc is what the links reach: its hostname is the sandbox's.
    for path in
        ["/workspace/etc-link/hostname", "/workspace/rootlink/etc/hostname", "/workspace/p/etc/hostname"]
    {
        let got = download(&server, &id, path, &[]);
        assert_eq!((got.status, got.text()), (200, "airlock\n".to_owned()), "{path}");
    }
    assert_ne!(
        hostname.as_deref(),
        Some(&b"airlock\n"[..]),
        "the host is named airlock: the test proves nothing"
    );

    let beside_path = beside.to_str().unwrap();
    let tmp_path = in_tmp.to_str().unwrap();
    let marker_name = format!("host-marker-{pid}");
    for path in [
        beside_path.to_owned(),
        format!("/workspace/../{marker_name}"),
        format!("/workspace/rootlink{beside_path}"),
        tmp_path.to_owned(),
        "/workspace/t".to_owned(),
        format!("/workspace/p{tmp_path}"),
        format!("/workspace/p1{tmp_path}"),
        under_root.clone(),
        "/workspace/m".to_owned(),
        format!("/workspace/r/airlock-marker-{pid}"),
        format!("/workspace/rootlink{under_root}"),
        format!("/proc/self/root{under_root}"),
    ] {
        refused(&download(&server, &id, &path, &[]), &path);
        // A planted link itself may be described; what it names may not.
        if path.contains("marker") {
            refused(&stat(&server, &id, &path), &path);
        }
    }
    let root_listing = send(&server, "GET", &format!("{}?path=/workspace/r", files(&id)), &[], b"");
    assert!(!root_listing.text().contains("airlock-marker"), "{}", root_listing.text());

    // Writes: the root is read-only, the host out of reach.
    for path in ["/workspace/rootlink/etc/passwd", "/etc/x", "/workspace/etc-link/passwd", "/workspace/m"] {
        let put = upload(&server, &id, path, b"pwned\n");
        assert!(matches!(put.status, 403 | 404), "upload to {path}: {} {}", put.status, put.text());
    }
    let text = json!({"path": "/workspace/r/airlock-pwned", "content": "pwned"}).to_string();
    let text = send(
        &server,
        "PUT",
        &format!("{}/text", files(&id)),
        &[("Content-Type", "application/json")],
        text.as_bytes(),
    );
    // `r` names a /root the sandbox lacks: creating the parent meets the dangling link itself.
    assert_eq!(text.code(), "FILE_EXISTS", "{}", text.text());
    let made = post_json(
        &server,
        &format!("{}/mkdir", files(&id)),
        &json!({"path": "/workspace/rootlink/etc/evil"}),
    );
    assert_eq!(made.status, 403, "{}", made.text());
    upload(&server, &id, "payload", b"pwned\n");
    let moved = post_json(
        &server,
        &format!("{}/move", files(&id)),
        &json!({"from": "payload", "to": "/workspace/etc-link/passwd", "overwrite": true}),
    );
    assert!(moved.status >= 400, "{}", moved.text());
    for path in ["/workspace/rootlink/etc/hostname", "/workspace/m"] {
        let gone = send(&server, "DELETE", &format!("{}?path={}", files(&id), enc(path)), &[], b"");
        // Removing the link `m` itself is allowed; what it names is not touched.
        assert!(gone.status == 403 || path == "/workspace/m", "{path}: {}", gone.text());
    }
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd, "the host's /etc/passwd changed");
    assert!(!std::path::Path::new("/etc/x").exists());
    assert!(!std::path::Path::new("/root/airlock-pwned").exists());
    assert_eq!(std::fs::read("/etc/hostname").ok(), hostname);
    for marker in [beside.to_str().unwrap(), in_tmp.to_str().unwrap(), &under_root] {
        assert_eq!(std::fs::read_to_string(marker).unwrap(), "HOST-ONLY-MARKER\n", "{marker} changed");
    }
    std::fs::remove_file(&under_root).unwrap();

    // A FIFO (and a device) is refused at once, for reads and writes.
    let started = Instant::now();
    for path in ["/workspace/fifo", "/dev/zero"] {
        let got = download(&server, &id, path, &[]);
        assert_eq!((got.status, got.code()), (400, "FILE_WRONG_TYPE".to_owned()), "{path}");
        let text = send(&server, "GET", &format!("{}/text?path={path}", files(&id)), &[], b"");
        assert_eq!(text.code(), "FILE_WRONG_TYPE", "{path}");
    }
    assert_eq!(upload(&server, &id, "/workspace/fifo", b"x").code(), "FILE_WRONG_TYPE");
    assert!(started.elapsed() < Duration::from_secs(5), "the FIFO took {:?}", started.elapsed());
    assert_eq!(server.sh(&id, "echo alive")["stdout"], "alive\n");
}
