//! Every process the agent starts is started here, one at a time. A kernel's control pipe must
//! reach it through its runner without close-on-exec; while that flag is off, no other spawn may
//! run, or its child would inherit the pipe too and keep it open.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::process::{Child, Command};
use std::sync::Mutex;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};

static SPAWNING: Mutex<()> = Mutex::new(());

/// Start `command`; `inherited`, if any, is passed on to the child (with its number unchanged).
pub(crate) fn spawn(command: &mut Command, inherited: Option<BorrowedFd<'_>>) -> std::io::Result<Child> {
    let _alone = SPAWNING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(fd) = inherited {
        fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty()))?;
    }
    let child = command.spawn();
    if let Some(fd) = inherited {
        fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    }
    child
}
