//! SOCKS5 (RFC 1928) on the proxy's port, for clients that speak it rather than HTTP: git and
//! ssh through `nc -X 5`, database drivers, browsers. The first byte tells the two apart (5 for
//! SOCKS, a letter for HTTP). Only CONNECT without authentication is offered; a name
//! (`socks5h://`) is decided like a CONNECT's host, an address like an IP literal, and an
//! allowed connection is joined in the kernel as a CONNECT tunnel is.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::proxy::open;
use super::Egress;
use crate::splice;

/// The first byte of every SOCKS5 greeting.
pub(super) const VERSION: u8 = 5;

/// How long a client may take to say where it wants to go.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Reply codes (RFC 1928 §6).
const SUCCEEDED: u8 = 0;
const GENERAL_FAILURE: u8 = 1;
const NOT_ALLOWED: u8 = 2;
const HOST_UNREACHABLE: u8 = 4;
const COMMAND_NOT_SUPPORTED: u8 = 7;
const ADDRESS_TYPE_NOT_SUPPORTED: u8 = 8;

/// Serve one SOCKS5 client: the handshake, the decision, then the tunnel.
pub(super) async fn serve(egress: &Egress, mut client: TcpStream) {
    let target = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut client)).await {
        Ok(Ok(target)) => target,
        Ok(Err(Some(code))) => {
            reply(&mut client, code).await;
            return;
        }
        Ok(Err(None)) | Err(_) => return,
    };
    let upstream = match open(egress, &target, 0).await {
        Ok(stream) => stream,
        Err(refusal) => {
            let code = match refusal.status() {
                StatusCode::FORBIDDEN => NOT_ALLOWED,
                StatusCode::BAD_GATEWAY => HOST_UNREACHABLE,
                _ => GENERAL_FAILURE,
            };
            reply(&mut client, code).await;
            return;
        }
    };
    if reply(&mut client, SUCCEEDED).await {
        let _ = splice::join(&client, &upstream).await;
    }
}

/// Read the greeting and the request; the target as `host:port`, or the reply code to refuse
/// with (`None` when the client is not worth a reply).
async fn handshake(client: &mut TcpStream) -> Result<String, Option<u8>> {
    let [version, methods] = read_array(client).await?;
    if version != VERSION {
        return Err(None);
    }
    let mut offered = vec![0u8; usize::from(methods)];
    client.read_exact(&mut offered).await.map_err(|_| None)?;
    // Method 0 is "no authentication"; a client that insists on another gets 0xFF and is closed.
    let method = if offered.contains(&0) { 0 } else { 0xff };
    client.write_all(&[VERSION, method]).await.map_err(|_| None)?;
    if method != 0 {
        return Err(None);
    }
    let [version, command, _, address_type] = read_array(client).await?;
    if version != VERSION {
        return Err(None);
    }
    let host = match address_type {
        1 => Ipv4Addr::from(read_array::<4>(client).await?).to_string(),
        4 => format!("[{}]", Ipv6Addr::from(read_array::<16>(client).await?)),
        3 => {
            let [length] = read_array(client).await?;
            let mut name = vec![0u8; usize::from(length)];
            client.read_exact(&mut name).await.map_err(|_| None)?;
            // Not UTF-8 is not a name; the authority parser refuses the rest of what is not one.
            String::from_utf8(name).map_err(|_| Some(HOST_UNREACHABLE))?
        }
        _ => return Err(Some(ADDRESS_TYPE_NOT_SUPPORTED)),
    };
    let port = u16::from_be_bytes(read_array(client).await?);
    // CONNECT only: BIND and UDP ASSOCIATE would open listeners and datagrams outside.
    if command != 1 {
        return Err(Some(COMMAND_NOT_SUPPORTED));
    }
    Ok(format!("{host}:{port}"))
}

async fn read_array<const N: usize>(client: &mut TcpStream) -> Result<[u8; N], Option<u8>> {
    let mut bytes = [0u8; N];
    client.read_exact(&mut bytes).await.map_err(|_| None)?;
    Ok(bytes)
}

/// Send the reply with `code`; the bound address is not told (all zeros, as clients ignore it).
/// Whether it was sent.
async fn reply(client: &mut TcpStream, code: u8) -> bool {
    client.write_all(&[VERSION, code, 0, 1, 0, 0, 0, 0, 0, 0]).await.is_ok()
}
