//! Relaying one HTTP/1.1 request over a connection the caller opened, WebSocket and other
//! upgrades included: the egress proxy's plain-HTTP forwarding and ingress to a port inside a
//! sandbox both come down to this.

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Incoming};
use hyper::header::{HeaderName, CONNECTION, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The body type of relayed answers.
pub type RelayBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

/// Buffer size of each direction of a relayed upgrade or tunnel: large enough that a download
/// through a CONNECT tunnel moves in few, large copies (64 KiB took 1.6 times as long).
pub const TUNNEL_BUFFER: usize = 256 << 10;

/// How long the far side may take to answer a request's head.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

/// Headers that belong to one hop and are not passed on (RFC 9110 §7.6.1), besides those the
/// `Connection` header names.
const HOP_BY_HOP: [&str; 6] =
    ["keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer"];

/// A plain-text answer made here (an error, a refusal).
pub fn text(status: StatusCode, message: impl Into<String>) -> Response<RelayBody> {
    let body = http_body_util::Full::new(Bytes::from(message.into())).map_err(|never| match never {}).boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, "text/plain; charset=utf-8".parse().expect("valid"));
    response
}

/// Remove hop-by-hop headers, keeping `Connection: upgrade` and `Upgrade` when the request asks
/// for an upgrade.
pub fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    let upgrading = headers.contains_key(UPGRADE);
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| !(upgrading && name == UPGRADE))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    if upgrading {
        headers.insert(CONNECTION, "upgrade".parse().expect("valid"));
    } else {
        headers.remove(CONNECTION);
    }
}

/// Send `request` (already in origin form, with its `Host`) over `stream` and return the answer.
/// A `101 Switching Protocols` answer joins the two upgraded connections byte for byte.
pub async fn send<B>(stream: TcpStream, mut request: Request<B>) -> Result<Response<RelayBody>, String>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("cannot speak HTTP to the server: {e}"))?;
    tokio::spawn(connection.with_upgrades());
    let downstream = request.headers().contains_key(UPGRADE).then(|| hyper::upgrade::on(&mut request));
    let mut response = match tokio::time::timeout(ANSWER_TIMEOUT, sender.send_request(request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => return Err(format!("the server did not answer: {e}")),
        Err(_) => return Err(format!("the server did not answer within {}s", ANSWER_TIMEOUT.as_secs())),
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(downstream) = downstream {
            let upstream = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                if let (Ok(down), Ok(up)) = (downstream.await, upstream.await) {
                    join(TokioIo::new(down), TokioIo::new(up)).await;
                }
            });
        }
    }
    Ok(response.map(|body: Incoming| body.boxed()))
}

/// Copy both ways until both sides are done.
pub async fn join<A, B>(mut a: A, mut b: B)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let _ = tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, TUNNEL_BUFFER, TUNNEL_BUFFER).await;
}
