//! The sandbox's network namespace, made beside init.
//!
//! A new network namespace costs about half a millisecond of kernel work: every protocol sets up
//! its own state in it. Made by init, that time would come before the filesystem. Instead a
//! helper forked by the supervisor enters the sandbox's user namespace, makes the network
//! namespace there (so the sandbox owns it, exactly as if init had made it), brings its loopback
//! up and sends it back as a descriptor, all while init builds the filesystem on another CPU.
//! The supervisor passes the descriptor on with the second go byte, and init enters it before
//! anything of the payload exists.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{ForkResult, Pid};

use crate::channel::{ChildMessage, Receiver};
use crate::error::{JailError, Stage};
use crate::sys;

/// The helper making one sandbox's network namespace. Dropping it reaps the helper, killed
/// first in case it has not finished: the pid cannot have been reused, as only this reaps it.
pub struct NetnsHelper {
    pid: Pid,
    /// The supervisor's end of the helper's report: one byte with the namespace attached, or a
    /// [`ChildMessage::SetupFailed`] record.
    report: OwnedFd,
}

impl NetnsHelper {
    /// Fork the helper for the sandbox whose init is `init`. The caller must be single-threaded
    /// (the engine checks it before every run).
    pub fn start(init: Pid) -> Result<NetnsHelper, JailError> {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let what = "make the network namespace";
        let (report, theirs) =
            socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
                .map_err(|source| JailError::Supervisor { what, source })?;
        match sys::fork().map_err(|source| JailError::Supervisor { what, source })? {
            ForkResult::Child => {
                drop(report);
                let sent = match make(init) {
                    Ok(netns) => sys::send_byte_with_fds(&theirs, 1, &[netns]),
                    Err((stage, errno)) => {
                        ChildMessage::SetupFailed { stage, errno: errno as i32 }.send(&theirs)
                    }
                };
                sys::exit_now(i32::from(sent.is_err()))
            }
            ForkResult::Parent { child } => Ok(NetnsHelper { pid: child, report }),
        }
    }

    /// Wait for the namespace. The helper is reaped when dropped, once the namespace has gone
    /// on to init: its exit takes no part in the sandbox's start.
    pub fn namespace(&self) -> Result<OwnedFd, JailError> {
        let mut buf = [0u8; 64];
        let received = sys::recv_with_fds(self.report.as_fd(), &mut buf);
        let lost = |source| JailError::Supervisor { what: "receive the network namespace", source };
        let (n, fds, _) = received.map_err(lost)?;
        if n == 1 {
            return fds.into_iter().next().ok_or(lost(Errno::EPROTO));
        }
        let failed = Receiver::default().feed(&buf[..n]).into_iter().find_map(|message| match message {
            ChildMessage::SetupFailed { stage, errno } => {
                Some(JailError::Setup { stage, errno: Errno::from_raw(errno) })
            }
            _ => None,
        });
        Err(failed.unwrap_or(lost(Errno::EPIPE)))
    }
}

impl Drop for NetnsHelper {
    fn drop(&mut self) {
        let _ = kill(self.pid, Signal::SIGKILL);
        let _ = sys::wait4(self.pid);
    }
}

/// In the helper: enter init's user namespace, where it has every capability, and make the
/// network namespace there. The socket that brought the loopback up names the namespace.
fn make(init: Pid) -> Result<OwnedFd, (Stage, Errno)> {
    let at = |stage: Stage| move |errno: Errno| (stage, errno);
    let errno_of = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    let userns = std::fs::File::open(format!("/proc/{init}/ns/user"))
        .map_err(|e| (Stage::NetworkNamespace, errno_of(e)))?;
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
            let child = Command::new("unshare").args(["--user", "sleep", "60"]).spawn().expect("start unshare");
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
        let netns = NetnsHelper::start(sandbox.pid()).and_then(|h| h.namespace()).expect("network namespace");
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
        match NetnsHelper::start(Pid::this()).and_then(|h| h.namespace()) {
            Err(JailError::Setup { stage, errno }) => {
                assert_eq!(stage, Stage::NetworkNamespace);
                assert_eq!(errno, Errno::EINVAL);
            }
            other => panic!("expected a setup error, got {other:?}"),
        }
    }
}
