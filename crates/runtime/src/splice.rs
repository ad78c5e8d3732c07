//! Joining two TCP connections inside the kernel: each direction moves through a pipe with
//! `splice(2)`, so the bytes of a tunnel never enter this process's memory, where a copy through
//! user space would read every byte in and write it out again.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use nix::sys::socket::{shutdown, Shutdown};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Pipe capacity asked for: one pipe holds this much of a direction in flight. The kernel may
/// give less (`fs.pipe-max-size`), which only means more, smaller moves.
const PIPE_CAPACITY: i32 = 1 << 20;

/// Move bytes both ways between `a` and `b` until both directions have ended, or one fails.
/// The end of one direction is passed on as a half-close, so a client that shuts down its
/// sending side still gets the rest of the answer.
pub async fn join(a: &TcpStream, b: &TcpStream) -> io::Result<()> {
    let (a_to_b, b_to_a) = (Pipe::new()?, Pipe::new()?);
    tokio::try_join!(a_to_b.carry(a, b), b_to_a.carry(b, a))?;
    Ok(())
}

/// One direction's pipe: what `from` gave that `to` has not taken yet waits in it.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        // A smaller pipe than asked for still works; the size only sets how much moves at once.
        let _ = fcntl(write.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(PIPE_CAPACITY));
        Ok(Pipe { read, write })
    }

    /// Move everything `from` sends to `to`, then half-close `to`.
    async fn carry(&self, from: &TcpStream, to: &TcpStream) -> io::Result<()> {
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        // The pipe is empty whenever `from` is read, so a `WouldBlock` there comes from the
        // socket, as `async_io` takes it to; likewise the pipe holds bytes whenever `to` is
        // written.
        loop {
            let taken = from
                .async_io(Interest::READABLE, || {
                    splice(from.as_fd(), None, self.write.as_fd(), None, PIPE_CAPACITY as usize, flags)
                        .map_err(io::Error::from)
                })
                .await?;
            if taken == 0 {
                // `to` may already be gone (the other direction failed); nothing is lost then.
                let _ = shutdown(to.as_raw_fd(), Shutdown::Write);
                return Ok(());
            }
            let mut waiting = taken;
            while waiting > 0 {
                waiting -= to
                    .async_io(Interest::WRITABLE, || {
                        splice(self.read.as_fd(), None, to.as_fd(), None, waiting, flags)
                            .map_err(io::Error::from)
                    })
                    .await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A connected pair of TCP streams on loopback.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn bytes_cross_both_ways_intact_and_a_half_close_passes_on() {
        let (mut client, proxy_in) = pair().await;
        let (proxy_out, mut origin) = pair().await;
        let joined = tokio::spawn(async move { join(&proxy_in, &proxy_out).await });

        // More than a pipe holds, in a pattern that shows any lost or reordered byte.
        let upload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let sent = upload.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client.shutdown().await.unwrap();
            client
        });
        let mut received = Vec::new();
        origin.read_to_end(&mut received).await.unwrap();
        assert!(received == upload, "the upload arrived changed ({} bytes)", received.len());

        // The client's half-close reached the origin, and the other way still works.
        let mut client = writer.await.unwrap();
        origin.write_all(b"the answer").await.unwrap();
        origin.shutdown().await.unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"the answer");
        joined.await.unwrap().unwrap();
    }
}
