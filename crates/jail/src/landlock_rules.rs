//! Landlock: the sandbox may read and execute anywhere in its own root, and write only in
//! `/workspace`, `/tmp`, `/dev` and the binds it was given read-write. Defence in depth under the
//! read-only mounts: it also closes paths that mounts cannot, such as writable host files that
//! a bind exposes through a hard link.

use landlock::{
    path_beneath_rules, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, ABI,
};
use nix::errno::Errno;

use crate::spec::SandboxSpec;

/// Directories inside the sandbox that are always writable.
const WRITABLE: &[&str] = &["/workspace", "/tmp", "/dev"];

/// Map the kernel's landlock ABI number to the crate's enum (the highest both know).
fn abi_for(version: u32) -> ABI {
    match version {
        0 => ABI::Unsupported,
        1 => ABI::V1,
        2 => ABI::V2,
        3 => ABI::V3,
        4 => ABI::V4,
        _ => ABI::V5,
    }
}

/// Restrict the calling process (and its future children). Returns the ABI enforced.
pub fn apply(spec: &SandboxSpec, kernel_abi: u32) -> Result<u32, Errno> {
    let abi = abi_for(kernel_abi);
    let writable: Vec<&std::path::Path> = WRITABLE
        .iter()
        .map(std::path::Path::new)
        .chain(spec.binds.iter().filter(|b| !b.readonly).map(|b| b.destination.as_path()))
        .collect();
    let fail = |_| Errno::EINVAL;
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(fail)?
        .create()
        .map_err(fail)?
        .add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi)))
        .map_err(fail)?
        .add_rules(path_beneath_rules(["/proc"], AccessFs::from_read(abi) | AccessFs::WriteFile))
        .map_err(fail)?
        .add_rules(path_beneath_rules(writable, AccessFs::from_all(abi)))
        .map_err(fail)?
        .restrict_self()
        .map_err(fail)?;
    match status.ruleset {
        RulesetStatus::NotEnforced => Ok(0),
        _ => Ok(kernel_abi.min(5)),
    }
}
