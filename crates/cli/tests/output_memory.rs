//! A gigabyte of output is drained and dropped, not buffered: airlock's own memory stays flat.
//! Alone in its file because it reads this test process's children's peak RSS.

mod common;

use std::process::{Command, Stdio};

use common::airlock_bin;
use nix::sys::resource::{getrusage, UsageWho};

#[test]
fn one_gibibyte_of_output_is_capped_with_flat_memory() {
    let out = Command::new(airlock_bin())
        .args([
            "run",
            "--max-output",
            "1M",
            "--timeout",
            "60000",
            "--",
            "head",
            "-c",
            "1073741824",
            "/dev/zero",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["outcome"], "output_limit", "{}", json["error"]);
    assert_eq!(json["metrics"]["stdout_bytes"], 1u64 << 30);
    assert_eq!(json["metrics"]["output_truncated"], true);
    assert_eq!(json["stdout"].as_str().unwrap().len(), 1 << 20);
    // ru_maxrss of waited-for children, in KiB: airlock itself and everything it reaped.
    let peak_kib = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap().max_rss();
    assert!(peak_kib < 48 * 1024, "airlock peaked at {peak_kib} KiB while draining 1 GiB");
}
