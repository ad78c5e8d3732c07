//! The sandbox's network namespace, made beside init.
//!
//! A new network namespace costs about half a millisecond of kernel work: every protocol sets up
//! its own state in it. Made by init, that time would come before the filesystem. Instead the
//! supervisor, once init is building the filesystem on another CPU, spawns a helper that enters
//! the sandbox's user namespace, makes the network namespace there (so the sandbox owns it,
//! exactly as if init had made it) and brings its loopback up. The supervisor passes the
//! namespace on with the second go byte, and init enters it before anything of the payload
//! exists.
//!
//! The helper is spawned as `posix_spawn` spawns: it shares the supervisor's memory and
//! descriptor table while the supervisor waits, so nothing is copied and the namespace's
//! descriptor is simply left in the table.

use std::ffi::CString;
use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::Pid;

use crate::error::{JailError, Stage};
use crate::sys;

/// Stack of the helper: a few system calls deep, with room to spare. Pages it never touches are
/// never backed.
const HELPER_STACK_BYTES: usize = 64 * 1024;

/// Make a network namespace owned by the user namespace of `init`, with its loopback up.
pub fn make_for(init: Pid) -> Result<OwnedFd, JailError> {
    let lost = |source| JailError::Supervisor { what: "make the network namespace", source };
    // Prepared here: the helper runs on this process's memory and must not allocate. Init is
    // this process's child, not yet reaped, so its pid cannot name another process.
    let userns = CString::new(format!("/proc/{init}/ns/user")).map_err(|_| lost(Errno::EINVAL))?;
    let mut made = None;
    let mut stack = vec![0u8; HELPER_STACK_BYTES];
    let helper = sys::spawn_vfork(&mut stack, true, &mut || {
        made = Some(make(&userns));
        0
    })
    .map_err(lost)?;
    // It has returned; reaping takes only the rest of its exit.
    sys::wait4(helper).map_err(lost)?;
    match made {
        Some(Ok(netns)) => Ok(netns),
        Some(Err((stage, errno))) => Err(JailError::Setup { stage, errno }),
        None => Err(lost(Errno::ECHILD)),
    }
}

/// In the helper: enter init's user namespace, where it has every capability, and make the
/// network namespace there. The socket that brought the loopback up names the namespace.
fn make(userns: &std::ffi::CStr) -> Result<OwnedFd, (Stage, Errno)> {
    let at = |stage: Stage| move |errno: Errno| (stage, errno);
    let userns = sys::open_read_only(userns).map_err(at(Stage::NetworkNamespace))?;
    nix::sched::setns(userns, CloneFlags::CLONE_NEWUSER).map_err(at(Stage::NetworkNamespace))?;
    nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(at(Stage::NetworkNamespace))?;
    let socket = sys::loopback_up().map_err(at(Stage::Loopback))?;
    sys::network_namespace_of(&socket).map_err(at(Stage::NetworkNamespace))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    use super::*;

    fn inode(path: &str) -> u64 {
        std::fs::metadata(path).expect("namespace link").ino()
    }

    /// A process in a user namespace of its own, as init is; killed when dropped.
    struct InUserNamespace(Child);

    impl InUserNamespace {
        fn start() -> InUserNamespace {
            let child =
                Command::new("unshare").args(["--user", "sleep", "60"]).spawn().expect("start unshare");
            let process = InUserNamespace(child);
            let ours = inode("/proc/self/ns/user");
            let deadline = Instant::now() + Duration::from_secs(10);
            while inode(&format!("/proc/{}/ns/user", process.0.id())) == ours {
                assert!(Instant::now() < deadline, "unshare --user did not enter a user namespace");
                std::thread::sleep(Duration::from_millis(5));
            }
            process
        }

        fn pid(&self) -> Pid {
            Pid::from_raw(self.0.id() as i32)
        }
    }

    impl Drop for InUserNamespace {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn the_namespace_is_new_and_owned_by_the_sandboxs_user_namespace() {
        let sandbox = InUserNamespace::start();
        let netns = make_for(sandbox.pid()).expect("network namespace");
        let netns = std::fs::File::from(netns);
        assert_ne!(netns.metadata().unwrap().ino(), inode("/proc/self/ns/net"), "not the caller's namespace");
        let owner = std::fs::File::from(sys::namespace_owner(&netns.into()).expect("owner"));
        assert_eq!(
            owner.metadata().unwrap().ino(),
            inode(&format!("/proc/{}/ns/user", sandbox.pid())),
            "owned by the sandbox's user namespace, where it has no say on the host's network"
        );
    }

    #[test]
    fn a_helper_that_cannot_enter_the_user_namespace_fails_naming_the_network_stage() {
        // Entering one's own user namespace is refused (EINVAL): it would grant capabilities.
        match make_for(Pid::this()) {
            Err(JailError::Setup { stage, errno }) => {
                assert_eq!(stage, Stage::NetworkNamespace);
                assert_eq!(errno, Errno::EINVAL);
            }
            other => panic!("expected a setup error, got {other:?}"),
        }
    }
}
