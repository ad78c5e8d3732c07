//! What a kernel used, read from the host's `/proc`. The agent names the kernel by its pid
//! inside the sandbox; the runtime finds its host pid once, among the descendants of the
//! sandbox's launcher.

/// Most processes looked at while searching a sandbox's tree.
const MAX_SEARCHED: usize = 10_000;

/// The host pid of the process below `root` whose pid in its own (innermost) namespace is
/// `ns_pid`.
pub(super) fn host_pid(root: u32, ns_pid: i32) -> Option<i32> {
    let root = i32::try_from(root).ok()?;
    let mut todo = vec![root];
    let mut searched = 0;
    while let Some(pid) = todo.pop() {
        searched += 1;
        if searched > MAX_SEARCHED {
            return None;
        }
        if pid != root && innermost_pid(pid) == Some(ns_pid) {
            return Some(pid);
        }
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for task in tasks.flatten() {
            if let Ok(children) = std::fs::read_to_string(task.path().join("children")) {
                todo.extend(children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()));
            }
        }
    }
    None
}

/// The pid of `pid` in the innermost pid namespace it is in, when that is not the host's.
fn innermost_pid(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let pids: Vec<i32> = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    (pids.len() > 1).then(|| pids.last().copied()).flatten()
}

/// CPU time of `pid` and of the children it waited for, in clock ticks.
pub(super) fn cpu_ticks(pid: i32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
    // After `pid (comm) `: state is field 0, utime 11, stime 12, cutime 13, cstime 14.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return 0 };
    rest.split_whitespace().skip(11).take(4).filter_map(|t| t.parse::<u64>().ok()).sum()
}

/// Milliseconds in `ticks` clock ticks.
pub(super) fn ticks_to_ms(ticks: u64) -> u64 {
    let per_second = match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as u64,
        _ => 100,
    };
    ticks * 1000 / per_second
}

/// Peak resident memory of `pid` (`VmHWM`), in bytes.
pub(super) fn peak_rss(pid: i32) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return 0 };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_outside_any_inner_namespace_is_not_taken_for_a_kernel() {
        // This test's process is in its reader's own pid namespace: it has no inner pid.
        let me = std::process::id();
        assert_eq!(innermost_pid(me as i32), None);
        assert_eq!(host_pid(me, me as i32), None);
        assert!(peak_rss(me as i32) > 0);
    }
}
