//! The typed channel from the sandbox (init and payload) to the supervisor.
//!
//! Messages are fixed-size records written with one `write(2)` each, well under `PIPE_BUF`, so
//! they arrive whole even when init and payload write concurrently.

use std::os::fd::AsFd;

use nix::errno::Errno;

use crate::error::Stage;

/// A message from inside the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildMessage {
    /// A setup step failed; the sandbox is about to exit.
    SetupFailed {
        /// The failed step.
        stage: Stage,
        /// Its errno.
        errno: i32,
    },
    /// `execve` of the payload failed with this errno.
    ExecFailed {
        /// Errno of the last candidate tried.
        errno: i32,
    },
    /// Landlock was applied with this ABI (0: kernel without landlock).
    LandlockApplied {
        /// ABI version.
        abi: u32,
    },
    /// The payload ended with this raw wait status.
    PayloadExited {
        /// Raw `waitpid` status.
        status: i32,
    },
}

const RECORD: usize = 12;

impl ChildMessage {
    fn encode(self) -> [u8; RECORD] {
        let (kind, a, b): (u32, u32, i32) = match self {
            ChildMessage::SetupFailed { stage, errno } => (1, stage as u32, errno),
            ChildMessage::ExecFailed { errno } => (2, 0, errno),
            ChildMessage::LandlockApplied { abi } => (3, abi, 0),
            ChildMessage::PayloadExited { status } => (4, 0, status),
        };
        let mut out = [0u8; RECORD];
        out[0..4].copy_from_slice(&kind.to_le_bytes());
        out[4..8].copy_from_slice(&a.to_le_bytes());
        out[8..12].copy_from_slice(&b.to_le_bytes());
        out
    }

    fn decode(buf: &[u8; RECORD]) -> Option<ChildMessage> {
        let word = |i: usize| [buf[i], buf[i + 1], buf[i + 2], buf[i + 3]];
        let kind = u32::from_le_bytes(word(0));
        let a = u32::from_le_bytes(word(4));
        let b = i32::from_le_bytes(word(8));
        match kind {
            1 => Some(ChildMessage::SetupFailed { stage: Stage::from_u32(a)?, errno: b }),
            2 => Some(ChildMessage::ExecFailed { errno: b }),
            3 => Some(ChildMessage::LandlockApplied { abi: a }),
            4 => Some(ChildMessage::PayloadExited { status: b }),
            _ => None,
        }
    }

    /// Send this message. Errors are ignored by callers that are about to exit anyway.
    pub fn send(self, fd: &impl AsFd) -> Result<(), Errno> {
        let buf = self.encode();
        match nix::unistd::write(fd, &buf)? {
            RECORD => Ok(()),
            _ => Err(Errno::EIO),
        }
    }
}

/// Reassembles records from the bytes read off the channel.
#[derive(Debug, Default)]
pub struct Receiver {
    pending: Vec<u8>,
}

impl Receiver {
    /// Feed bytes; returns the complete messages they finish.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<ChildMessage> {
        self.pending.extend_from_slice(bytes);
        let whole = self.pending.len() / RECORD * RECORD;
        let msgs = self.pending[..whole]
            .chunks_exact(RECORD)
            .filter_map(|c| ChildMessage::decode(c.try_into().ok()?))
            .collect();
        self.pending.drain(..whole);
        msgs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_across_split_reads() {
        let msgs = [
            ChildMessage::SetupFailed { stage: Stage::PivotRoot, errno: 22 },
            ChildMessage::ExecFailed { errno: 2 },
            ChildMessage::LandlockApplied { abi: 4 },
            ChildMessage::PayloadExited { status: 0x0900 },
        ];
        let bytes: Vec<u8> = msgs.iter().flat_map(|m| m.encode()).collect();
        let mut rx = Receiver::default();
        let mut got = rx.feed(&bytes[..5]);
        got.extend(rx.feed(&bytes[5..30]));
        got.extend(rx.feed(&bytes[30..]));
        assert_eq!(got, msgs);
    }
}
