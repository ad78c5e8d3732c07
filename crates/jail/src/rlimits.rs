//! Per-process limits (`setrlimit(2)`) of the payload. A limit is never raised above the hard
//! limit the sandbox inherited: asking for more yields the hard limit, which is stricter than
//! what was asked, never looser.

use nix::errno::Errno;
use nix::sys::resource::{getrlimit, setrlimit, Resource};

use crate::spec::Limits;

/// The rlimits a spec asks for, core dumps always off.
///
/// For CPU time the hard limit is one second above the soft one, so the payload first gets
/// SIGXCPU (which the outcome reports as a CPU-time limit) and SIGKILL only if it ignores it.
pub fn wanted(limits: &Limits) -> Vec<(Resource, u64)> {
    let mut out = vec![(Resource::RLIMIT_CORE, 0)];
    if let Some(cpu) = limits.cpu_time {
        // The kernel counts whole seconds; round up so a 1500 ms limit is not 1 s.
        out.push((Resource::RLIMIT_CPU, cpu.as_millis().div_ceil(1000).max(1) as u64));
    }
    if let Some(bytes) = limits.max_file_bytes {
        out.push((Resource::RLIMIT_FSIZE, bytes));
    }
    if let Some(files) = limits.max_open_files {
        out.push((Resource::RLIMIT_NOFILE, files));
    }
    out
}

/// Apply `wanted` limits to the calling process, clamped to the current hard limits.
pub fn apply(wanted: &[(Resource, u64)]) -> Result<(), Errno> {
    for &(resource, value) in wanted {
        let (_, hard) = getrlimit(resource)?;
        let soft = value.min(hard);
        let new_hard = match resource {
            Resource::RLIMIT_CPU => soft.saturating_add(1).min(hard),
            _ => soft,
        };
        setrlimit(resource, soft, new_hard)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn cpu_time_rounds_up_to_whole_seconds() {
        let limits = Limits { cpu_time: Some(Duration::from_millis(1500)), ..Limits::default() };
        assert!(wanted(&limits).contains(&(Resource::RLIMIT_CPU, 2)));
    }

    #[test]
    fn core_dumps_are_always_off() {
        assert_eq!(wanted(&Limits::default()), vec![(Resource::RLIMIT_CORE, 0)]);
    }
}
