//! Sockets on the sandbox's loopback, made here because only a process inside the sandbox's
//! network namespace can make them, and handed to the runtime: the egress proxy's listener and
//! ingress connections to servers inside the sandbox.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::time::Duration;

/// How long a connection to a server in the sandbox may take to be accepted.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A socket listening on `127.0.0.1:port`.
pub(crate) fn listen(port: u16) -> Result<OwnedFd, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .map(OwnedFd::from)
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port} in the sandbox: {e}"))
}

/// A connection to `port` on `127.0.0.1`, or on `::1` for a server that listens only there.
pub(crate) fn connect(port: u16) -> Result<OwnedFd, String> {
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT)
        .or_else(|first| TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|_| first))
        .map_err(|e| format!("nothing answers on port {port} in the sandbox: {e}"))?;
    // Requests and answers are relayed as they come; small writes must not wait.
    let _ = stream.set_nodelay(true);
    Ok(OwnedFd::from(stream))
}
