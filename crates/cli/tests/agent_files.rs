//! The agent's file operations in a real sandbox (`airlock launch`), driven over the control
//! socket the way the server's files API drives them; and what sandbox code can plant in their
//! way: symlinks out of the sandbox, FIFOs and devices.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use airlock_agent::protocol::{decode_data, encode_data};
use common::agent_sandbox::Sandbox;
use serde_json::{json, Value};

/// Request ids, unique in each test binary.
static NEXT_ID: AtomicU64 = AtomicU64::new(100);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Send one file request (its id filled in) and return its answer.
fn file_op(sb: &mut Sandbox, mut request: Value) -> Value {
    let id = next_id();
    request["id"] = id.into();
    let answer = sb.ask(&request);
    assert_eq!(answer["id"], id, "{request} -> {answer}");
    answer
}

fn done(sb: &mut Sandbox, request: Value) {
    let answer = file_op(sb, request.clone());
    assert_eq!(answer["kind"], "done", "{request} -> {answer}");
}

/// The error code a request fails with; the message must name `names`.
fn fails(sb: &mut Sandbox, request: Value, names: &str) -> String {
    let answer = file_op(sb, request.clone());
    assert_eq!(answer["kind"], "file_error", "{request} -> {answer}");
    assert!(answer["message"].as_str().unwrap().contains(names), "{request} -> {answer}");
    answer["code"].as_str().unwrap().to_owned()
}

/// Data, whole file size and end of file of one read.
fn read(sb: &mut Sandbox, path: &str, offset: u64, length: Option<u64>) -> (Vec<u8>, u64, bool) {
    let answer = file_op(sb, json!({"op": "read_file", "path": path, "offset": offset, "length": length}));
    assert_eq!(answer["kind"], "file_data", "{path} -> {answer}");
    let data = decode_data(answer["data"].as_str().unwrap()).unwrap();
    (data, answer["size"].as_u64().unwrap(), answer["eof"].as_bool().unwrap())
}

fn read_text(sb: &mut Sandbox, path: &str) -> String {
    String::from_utf8(read(sb, path, 0, None).0).unwrap()
}

/// A `write_file` request for `bytes`, with `extra` fields merged in.
fn write(path: &str, bytes: &[u8], extra: Value) -> Value {
    let mut request = json!({"op": "write_file", "path": path, "data": encode_data(bytes)});
    for (k, v) in extra.as_object().unwrap() {
        request[k] = v.clone();
    }
    request
}

fn stat(sb: &mut Sandbox, path: &str) -> Value {
    let answer = file_op(sb, json!({"op": "stat", "path": path}));
    assert_eq!(answer["kind"], "stat", "{path} -> {answer}");
    answer
}

/// The paths of a listing, relative to `under`, and whether it was truncated.
fn list(sb: &mut Sandbox, path: &str, depth: u32, under: &str) -> (Vec<String>, bool) {
    let answer = file_op(sb, json!({"op": "list", "path": path, "depth": depth}));
    assert_eq!(answer["kind"], "listing", "{path} -> {answer}");
    let paths = answer["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().strip_prefix(under).unwrap().to_owned())
        .collect();
    (paths, answer["truncated"].as_bool().unwrap())
}

/// Run a shell script in the sandbox; it must succeed. Returns its stdout.
fn sh(sb: &mut Sandbox, script: &str) -> String {
    let exit = sb.exec(next_id(), script, Some(30_000));
    assert_eq!(exit["exit_code"], 0, "{script}: {exit}");
    exit["stdout"].as_str().unwrap().to_owned()
}

/// The sandbox's umask, which the modes of created files and directories go through.
fn umask(sb: &mut Sandbox) -> u32 {
    u32::from_str_radix(sh(sb, "umask").trim(), 8).unwrap()
}

#[test]
fn binary_data_round_trips_with_offsets_appends_and_reads_in_pieces() {
    let mut sb = Sandbox::start("files-data");
    let all: Vec<u8> = (0..=255).collect();
    done(&mut sb, write("bin/all.dat", &all, json!({"create_parents": true})));
    assert_eq!(std::fs::read(sb.workspace.join("bin/all.dat")).unwrap(), all, "not in the workspace");
    assert_eq!(read(&mut sb, "/workspace/bin/all.dat", 0, None), (all.clone(), 256, true));

    let mut pieces = Vec::new();
    for (offset, eof) in [(0, false), (100, false), (200, true)] {
        let (data, size, at_end) = read(&mut sb, "bin/all.dat", offset, Some(100));
        assert_eq!((size, at_end), (256, eof), "piece at {offset}");
        pieces.extend(data);
    }
    assert_eq!(pieces, all);
    assert_eq!(read(&mut sb, "bin/all.dat", 250, Some(6)), (all[250..].to_vec(), 256, true));
    assert_eq!(read(&mut sb, "bin/all.dat", 300, None), (Vec::new(), 256, true));

    // At an offset the rest stays; appending adds; without either the file is replaced.
    done(&mut sb, write("bin/all.dat", b"\xff\x00", json!({"offset": 10})));
    let mut expected = all.clone();
    expected[10..12].copy_from_slice(b"\xff\x00");
    assert_eq!(read(&mut sb, "bin/all.dat", 0, None).0, expected);
    done(&mut sb, write("bin/all.dat", b"\x01\x02", json!({"append": true})));
    expected.extend(b"\x01\x02");
    assert_eq!(read(&mut sb, "bin/all.dat", 0, None), (expected, 258, true));
    done(&mut sb, write("bin/all.dat", b"short", json!({})));
    assert_eq!(read(&mut sb, "bin/all.dat", 0, None), (b"short".to_vec(), 5, true));
    let both = write("bin/all.dat", b"x", json!({"offset": 1, "append": true}));
    assert_eq!(fails(&mut sb, both, "/workspace/bin/all.dat"), "other");

    // Modes: asked for, or 0644, through the umask, for new files only.
    let umask = umask(&mut sb);
    done(&mut sb, write("default.txt", b"", json!({})));
    assert_eq!(stat(&mut sb, "default.txt")["mode"], 0o644 & !umask);
    done(&mut sb, write("secret.txt", b"", json!({"mode": 0o600})));
    assert_eq!(stat(&mut sb, "secret.txt")["mode"], 0o600 & !umask);
    done(&mut sb, write("secret.txt", b"again", json!({"mode": 0o666})));
    assert_eq!(stat(&mut sb, "secret.txt")["mode"], 0o600 & !umask);

    // One answer carries at most 4 MiB, whatever was asked.
    let big: Vec<u8> = (0..(5u32 << 20) + 3).map(|i| (i % 251) as u8).collect();
    done(&mut sb, write("big.bin", &big, json!({})));
    let (first, size, eof) = read(&mut sb, "big.bin", 0, Some(64 << 20));
    assert_eq!((first.len(), size, eof), (4 << 20, big.len() as u64, false));
    let (rest, _, eof) = read(&mut sb, "big.bin", 4 << 20, None);
    assert!(eof);
    assert!(first.iter().chain(&rest).eq(big.iter()), "the pieces differ from what was written");
    sb.stop();
}

#[test]
fn stat_and_list_describe_entries_without_following_symlinks() {
    let mut sb = Sandbox::start("files-list");
    sh(&mut sb, "mkdir -p tree/a/b/c && echo hi > tree/a/f && ln -s / tree/root && touch tree/z tree/a-z && mkfifo tree/fifo");
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();

    let file = stat(&mut sb, "tree/a/f");
    assert_eq!(
        (&file["path"], &file["name"], &file["type"], &file["size"], &file["symlink_target"]),
        (&json!("/workspace/tree/a/f"), &json!("f"), &json!("file"), &json!(3), &Value::Null),
        "{file}"
    );
    let age_ms = now_ms.abs_diff(file["modified_ms"].as_u64().unwrap() as u128);
    assert!(age_ms < 60_000, "modified {age_ms} ms away from now: {file}");
    let link = stat(&mut sb, "tree/root");
    assert_eq!((&link["type"], &link["symlink_target"]), (&json!("symlink"), &json!("/")), "{link}");
    assert_eq!(stat(&mut sb, "tree/fifo")["type"], "other");
    let dir = stat(&mut sb, "./tree/a/../a/");
    assert_eq!(
        (&dir["path"], &dir["name"], &dir["type"]),
        (&json!("/workspace/tree/a"), &json!("a"), &json!("directory"))
    );
    let root = stat(&mut sb, "/");
    assert_eq!((&root["path"], &root["name"]), (&json!("/"), &json!("/")));

    let under = "/workspace/tree";
    let top = ["/a", "/a-z", "/fifo", "/root", "/z"];
    assert_eq!(list(&mut sb, "tree", 1, under), (top.map(String::from).to_vec(), false));
    let two = ["/a", "/a/b", "/a/f", "/a-z", "/fifo", "/root", "/z"];
    assert_eq!(list(&mut sb, "/workspace/tree/", 2, under), (two.map(String::from).to_vec(), false));
    // Depth beyond the maximum is the maximum; the symlink to / is never entered.
    let all = ["/a", "/a/b", "/a/b/c", "/a/f", "/a-z", "/fifo", "/root", "/z"];
    assert_eq!(list(&mut sb, "tree", 1000, under), (all.map(String::from).to_vec(), false));
    let (top_level, _) = list(&mut sb, "/", 1, "");
    for expected in ["/etc", "/tmp", "/workspace"] {
        assert!(top_level.iter().any(|p| p == expected), "{expected} not in {top_level:?}");
    }

    // At most 10 000 entries, the first ones in order.
    sh(&mut sb, "mkdir many && cd many && seq -w 10050 | xargs touch");
    let (many, truncated) = list(&mut sb, "many", 1, "/workspace/many/");
    assert!(truncated);
    let expected: Vec<String> = (1..=10_000).map(|i| format!("{i:05}")).collect();
    assert_eq!(many, expected);
    sb.stop();
}

#[test]
fn mkdir_move_and_remove_with_their_errors() {
    let mut sb = Sandbox::start("files-tree");
    let umask = umask(&mut sb);
    done(&mut sb, json!({"op": "mkdir", "path": "d1"}));
    assert_eq!(fails(&mut sb, json!({"op": "mkdir", "path": "d1"}), "/workspace/d1"), "already_exists");
    done(&mut sb, json!({"op": "mkdir", "path": "d1", "parents": true}));
    assert_eq!(fails(&mut sb, json!({"op": "mkdir", "path": "p/q/r"}), "/workspace/p/q/r"), "not_found");
    done(&mut sb, json!({"op": "mkdir", "path": "p/q/r", "parents": true, "mode": 0o700}));
    assert_eq!(stat(&mut sb, "p/q/r")["mode"], 0o700 & !umask);
    assert!(sb.workspace.join("p/q/r").is_dir());

    done(&mut sb, write("a", b"from a", json!({})));
    done(&mut sb, write("b", b"from b", json!({})));
    let no_overwrite = json!({"op": "move", "from": "a", "to": "b"});
    assert_eq!(fails(&mut sb, no_overwrite, "/workspace/b"), "already_exists");
    assert_eq!((read_text(&mut sb, "a"), read_text(&mut sb, "b")), ("from a".into(), "from b".into()));
    done(&mut sb, json!({"op": "move", "from": "a", "to": "/workspace/b", "overwrite": true}));
    assert_eq!(read_text(&mut sb, "b"), "from a");
    assert_eq!(fails(&mut sb, json!({"op": "stat", "path": "a"}), "/workspace/a"), "not_found");
    assert_eq!(fails(&mut sb, json!({"op": "move", "from": "a", "to": "c"}), "/workspace/a"), "not_found");
    done(&mut sb, json!({"op": "move", "from": "p", "to": "p2"}));
    assert_eq!(stat(&mut sb, "p2/q/r")["type"], "directory");
    let dir_over_file = json!({"op": "move", "from": "d1", "to": "b", "overwrite": true});
    assert_eq!(fails(&mut sb, dir_over_file, "/workspace/d1"), "not_a_directory");

    assert_eq!(fails(&mut sb, json!({"op": "remove", "path": "p2"}), "/workspace/p2"), "not_empty");
    done(&mut sb, json!({"op": "remove", "path": "p2", "recursive": true}));
    assert!(!sb.workspace.join("p2").exists());
    done(&mut sb, json!({"op": "remove", "path": "d1"}));
    done(&mut sb, json!({"op": "remove", "path": "b"}));
    assert_eq!(fails(&mut sb, json!({"op": "remove", "path": "b"}), "/workspace/b"), "not_found");
    // A symlink is removed itself, never what it points to.
    sh(&mut sb, "mkdir keep && touch keep/x && ln -s /workspace/keep link");
    done(&mut sb, json!({"op": "remove", "path": "link", "recursive": true}));
    assert_eq!(stat(&mut sb, "keep/x")["type"], "file");

    // Error kinds.
    assert_eq!(
        fails(&mut sb, json!({"op": "read_file", "path": "keep"}), "/workspace/keep"),
        "is_a_directory"
    );
    let write_dir = write("keep", b"x", json!({}));
    assert_eq!(fails(&mut sb, write_dir, "/workspace/keep"), "is_a_directory");
    let list_file = json!({"op": "list", "path": "keep/x"});
    assert_eq!(fails(&mut sb, list_file, "/workspace/keep/x"), "not_a_directory");
    let under_file = write("keep/x/y", b"x", json!({}));
    assert_eq!(fails(&mut sb, under_file, "/workspace/keep/x/y"), "not_a_directory");
    assert_eq!(fails(&mut sb, json!({"op": "stat", "path": ""}), "empty"), "invalid_path");
    assert_eq!(fails(&mut sb, json!({"op": "read_file", "path": "a\u{0}b"}), "NUL"), "invalid_path");
    sh(&mut sb, "echo locked > locked && chmod 000 locked");
    let locked = json!({"op": "read_file", "path": "locked"});
    assert_eq!(fails(&mut sb, locked, "/workspace/locked"), "permission_denied");
    let read_only = write("/etc/new", b"x", json!({}));
    assert_eq!(fails(&mut sb, read_only, "/etc/new"), "permission_denied");
    let bad_data = json!({"op": "write_file", "path": "c", "data": "not base64!"});
    assert_eq!(fails(&mut sb, bad_data, "base64"), "other");
    sb.stop();
}

/// Attack: symlinks planted by sandbox code lead to the sandbox's own files, never the host's.
#[test]
fn planted_symlinks_resolve_inside_the_sandbox() {
    let mut sb = Sandbox::start("files-links");
    // A host file the sandbox must not see: in the test's own directory, under the host's /tmp,
    // which the sandbox's own /tmp replaces.
    let host_secret = sb.workspace.parent().unwrap().join("host-secret");
    std::fs::write(&host_secret, "host only\n").unwrap();
    let host_secret = host_secret.to_str().unwrap().to_owned();
    sh(
        &mut sb,
        &format!(
            "echo sandbox-only > /tmp/marker && ln -s /etc/shadow s1 && ln -s / root && \
             ln -s /proc/1/root p && ln -s {host_secret} h && ln -s /tmp tmp-link"
        ),
    );

    // The sandbox's /etc is generated and has no shadow file, whatever the host has.
    assert_eq!(
        fails(&mut sb, json!({"op": "read_file", "path": "/workspace/s1"}), "/workspace/s1"),
        "not_found"
    );
    let hostname = read_text(&mut sb, "root/etc/hostname");
    assert_eq!(hostname, "airlock\n");
    if let Ok(host_hostname) = std::fs::read_to_string("/etc/hostname") {
        assert_ne!(host_hostname, hostname, "the host's hostname is the sandbox's: the test proves nothing");
    }
    assert_eq!(read_text(&mut sb, "root/tmp/marker"), "sandbox-only\n");
    assert_eq!(read_text(&mut sb, "tmp-link/marker"), "sandbox-only\n");
    assert_eq!(read_text(&mut sb, "/proc/self/root/tmp/marker"), "sandbox-only\n");
    assert_eq!(read_text(&mut sb, "../../../etc/hostname"), "airlock\n");
    assert_eq!(read_text(&mut sb, "../../../tmp/marker"), "sandbox-only\n");
    assert_eq!(stat(&mut sb, "../../..")["path"], "/");
    // PID 1 is the sandbox's init, which is not dumpable: its root cannot even be opened, and
    // were it opened it would be the sandbox's root.
    let through_init = file_op(&mut sb, json!({"op": "read_file", "path": "p/tmp/marker"}));
    match through_init["kind"].as_str() {
        Some("file_error") => assert_eq!(through_init["code"], "permission_denied", "{through_init}"),
        _ => assert_eq!(decode_data(through_init["data"].as_str().unwrap()).unwrap(), b"sandbox-only\n"),
    }
    for path in ["h", host_secret.as_str()] {
        let request = json!({"op": "read_file", "path": path});
        assert_eq!(fails(&mut sb, request, path), "not_found", "{path}");
    }
    sb.stop();
}

/// Attack: FIFOs and devices where a file is expected neither hang nor flood the agent.
#[test]
fn fifos_and_devices_are_refused_at_once() {
    let mut sb = Sandbox::start("files-fifo");
    sh(&mut sb, "mkfifo fifo && ln -s /dev/zero zero-link");
    let started = Instant::now();
    for path in ["fifo", "/dev/zero", "/dev/urandom", "zero-link", "/proc/self/fd/0"] {
        let request = json!({"op": "read_file", "path": path});
        assert_eq!(fails(&mut sb, request, path), "not_a_regular_file", "read {path}");
    }
    for path in ["fifo", "/dev/null", "/dev/full", "/proc/self/fd/0"] {
        let request = write(path, b"x", json!({}));
        assert_eq!(fails(&mut sb, request, path), "not_a_regular_file", "write {path}");
    }
    assert!(started.elapsed() < Duration::from_secs(5), "refusals took {:?}", started.elapsed());
    assert_eq!(file_op(&mut sb, json!({"op": "ping"}))["kind"], "pong");
    sb.stop();
}

/// Attack: writes through planted symlinks land in the sandbox's writable places or fail; the
/// read-only root and the host are never written.
#[test]
fn writes_through_symlinks_stay_in_the_sandbox() {
    let mut sb = Sandbox::start("files-write-links");
    let host_secret = sb.workspace.parent().unwrap().join("host-secret");
    std::fs::write(&host_secret, "host only\n").unwrap();
    let host_secret = host_secret.to_str().unwrap().to_owned();
    let host_new = format!("/usr/airlock-files-test-{}", std::process::id());
    let host_hostname = std::fs::read("/etc/hostname").ok();
    sh(
        &mut sb,
        &format!(
            "ln -s /etc/hostname w1 && ln -s {host_new} w2 && ln -s {host_secret} w3 && \
             ln -s /tmp/inside w4 && ln -s /usr w5"
        ),
    );

    assert_eq!(fails(&mut sb, write("w1", b"pwned\n", json!({})), "/workspace/w1"), "permission_denied");
    assert_eq!(read_text(&mut sb, "/etc/hostname"), "airlock\n");
    assert_eq!(fails(&mut sb, write("w2", b"pwned\n", json!({})), "/workspace/w2"), "permission_denied");
    let under_usr = write("w5/airlock-files-test/x", b"pwned\n", json!({"create_parents": true}));
    assert_eq!(fails(&mut sb, under_usr, "/workspace/w5/airlock-files-test/x"), "permission_denied");
    let via_dotdot = write("../etc/passwd", b"pwned\n", json!({}));
    assert_eq!(fails(&mut sb, via_dotdot, "/etc/passwd"), "permission_denied");
    // The host's path names a place in the sandbox's own /tmp, where the write lands.
    assert_eq!(fails(&mut sb, write("w3", b"pwned\n", json!({})), "/workspace/w3"), "not_found");
    done(&mut sb, write(&host_secret, b"in the sandbox\n", json!({"create_parents": true})));
    assert_eq!(sh(&mut sb, &format!("cat {host_secret}")), "in the sandbox\n");
    done(&mut sb, write("w4", b"inside\n", json!({})));
    assert_eq!(sh(&mut sb, "cat /tmp/inside"), "inside\n");

    assert_eq!(std::fs::read_to_string(&host_secret).unwrap(), "host only\n");
    assert!(!std::path::Path::new(&host_new).exists(), "{host_new} was created on the host");
    assert!(!std::path::Path::new("/usr/airlock-files-test").exists());
    assert_eq!(std::fs::read("/etc/hostname").ok(), host_hostname);
    sb.stop();
}

/// Attack: a write past the sandbox's file size limit fails with `too_large`; the SIGXFSZ it
/// raises does not end the agent, and commands still get it.
#[test]
fn a_write_beyond_the_file_size_limit_fails_and_the_agent_lives_on() {
    let mut sb = Sandbox::start_with("files-fsize", |spec| spec.limits.max_file_bytes = Some(4096));
    let big = write("big", &[7u8; 8192], json!({}));
    assert_eq!(fails(&mut sb, big, "/workspace/big"), "too_large");
    assert_eq!(file_op(&mut sb, json!({"op": "ping"}))["kind"], "pong");
    done(&mut sb, write("small", &[7u8; 100], json!({})));
    assert_eq!(sh(&mut sb, "grep SigBlk /proc/self/status"), "SigBlk:\t0000000000000000\n");
    // SIGXFSZ is signal 25: the shell reports 128 + 25.
    assert_eq!(sh(&mut sb, "head -c 8192 /dev/zero > big2; echo $?"), "153\n");
    sb.stop();
}

/// Attack: a file only root can create on the host, under /root, is not reachable by path or
/// through a symlink.
#[test]
fn root_host_files_under_root_stay_out_of_reach() {
    let marker = format!("/root/airlock-files-marker-{}", std::process::id());
    std::fs::write(&marker, "host root only\n").unwrap();
    let mut sb = Sandbox::start("files-root");
    sh(&mut sb, &format!("ln -s {marker} m"));
    for path in ["m", marker.as_str()] {
        let request = json!({"op": "read_file", "path": path});
        assert_eq!(fails(&mut sb, request, path), "not_found", "{path}");
    }
    assert_eq!(fails(&mut sb, write("m", b"x", json!({})), "/workspace/m"), "not_found");
    sb.stop();
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "host root only\n");
    std::fs::remove_file(&marker).unwrap();
}
