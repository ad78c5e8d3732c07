//! The egress proxy: an HTTP proxy (CONNECT tunnels and plain `http://` requests, and SOCKS5 on
//! the same port) that accepts the sandbox's connections on the listener made inside its network
//! namespace, decides each against the policy, and connects out from the host.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, HOST};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;

use super::decide::{decide, parse_authority, Host, Source};
use super::socks;
use super::Egress;
use crate::relay::{self, RelayBody};
use crate::splice;

/// How long connecting to one address may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Accept the sandbox's connections until the task is aborted; aborting it ends every
/// connection still being served.
pub(super) async fn accept_loop(egress: Arc<Egress>, listener: TcpListener) {
    let mut connections = JoinSet::new();
    loop {
        // A sandbox that holds as many connections as it may waits for one to end.
        let Ok(permit) = Arc::clone(&egress.connections).acquire_owned().await else { return };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(Arc::clone(&egress), stream, permit));
                }
                // Out of descriptors or memory: wait instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(egress: Arc<Egress>, stream: TcpStream, _permit: OwnedSemaphorePermit) {
    let _ = stream.set_nodelay(true);
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) if first[0] == socks::VERSION => return socks::serve(&egress, stream).await,
        Ok(1) => {}
        _ => return,
    }
    let service = service_fn(move |request| {
        let egress = Arc::clone(&egress);
        async move { Ok::<_, Infallible>(handle(&egress, request).await) }
    });
    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).with_upgrades().await;
}

async fn handle(egress: &Egress, request: Request<Incoming>) -> Response<RelayBody> {
    match *request.method() {
        Method::CONNECT => tunnel(egress, request).await,
        _ => forward(egress, request).await,
    }
}

/// `CONNECT host:port`: decide, connect, answer 200 and join the two connections.
async fn tunnel(egress: &Egress, request: Request<Incoming>) -> Response<RelayBody> {
    let Some(authority) = request.uri().authority().map(|a| a.as_str().to_owned()) else {
        return relay::text(StatusCode::BAD_REQUEST, "airlock proxy: CONNECT needs host:port\n");
    };
    // The tunnel outlives the request that opened it, so it holds a connection of its own.
    let Ok(permit) = Arc::clone(&egress.connections).try_acquire_owned() else {
        return relay::text(StatusCode::SERVICE_UNAVAILABLE, "airlock proxy: too many open connections\n");
    };
    let upstream = match open(egress, &authority, 443).await {
        Ok(stream) => stream,
        Err(refusal) => return refusal,
    };
    tokio::spawn(async move {
        let _permit = permit;
        if let Ok(upgraded) = hyper::upgrade::on(request).await {
            join_tunnel(upgraded, upstream).await;
        }
    });
    Response::new(relay::text(StatusCode::OK, "").into_body())
}

/// Join the sandbox's side of a tunnel to the connection out. The sandbox's side is the proxy's
/// own TCP connection, so the two are joined in the kernel; what the client sent after its
/// CONNECT head, and hyper already read, goes out first.
async fn join_tunnel(upgraded: Upgraded, mut upstream: TcpStream) {
    let parts = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => parts,
        Err(upgraded) => return relay::join(TokioIo::new(upgraded), upstream).await,
    };
    if !parts.read_buf.is_empty() && upstream.write_all(&parts.read_buf).await.is_err() {
        return;
    }
    let _ = splice::join(parts.io.inner(), &upstream).await;
}

/// A plain `http://` request in absolute form: decide, connect, pass it on in origin form.
async fn forward(egress: &Egress, mut request: Request<Incoming>) -> Response<RelayBody> {
    let uri = request.uri().clone();
    let Some(authority) = uri.authority().map(|a| a.as_str().to_owned()) else {
        return relay::text(
            StatusCode::BAD_REQUEST,
            "airlock proxy: send requests in absolute form (http://host/path), or CONNECT\n",
        );
    };
    if uri.scheme_str() != Some("http") {
        return relay::text(
            StatusCode::BAD_REQUEST,
            "airlock proxy: only http:// is forwarded; use CONNECT for https\n",
        );
    }
    let upstream = match open(egress, &authority, 80).await {
        Ok(stream) => stream,
        Err(refusal) => return refusal,
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() = match path.parse() {
        Ok(path) => path,
        Err(_) => return relay::text(StatusCode::BAD_REQUEST, "airlock proxy: bad request path\n"),
    };
    relay::strip_hop_by_hop(request.headers_mut());
    // The Host header names what was decided on, never something else on the same address.
    match HeaderValue::from_str(&authority) {
        Ok(host) => request.headers_mut().insert(HOST, host),
        Err(_) => return relay::text(StatusCode::BAD_REQUEST, "airlock proxy: bad host\n"),
    };
    match relay::send(upstream, request).await {
        Ok(response) => response,
        Err(e) => relay::text(StatusCode::BAD_GATEWAY, format!("airlock proxy: {authority}: {e}\n")),
    }
}

/// Decide on `authority` and connect to an address the policy allows, or the answer that
/// refuses it (403 for a denial, which is recorded; 502 when nothing could be reached).
pub(super) async fn open(
    egress: &Egress,
    authority: &str,
    default_port: u16,
) -> Result<TcpStream, Response<RelayBody>> {
    let (host, port) = parse_authority(authority, default_port)
        .map_err(|e| relay::text(StatusCode::BAD_REQUEST, format!("airlock proxy: {e}\n")))?;
    let target = match &host {
        Host::Name(name) => format!("{name}:{port}"),
        Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        Host::Ip(ip) => format!("{ip}:{port}"),
    };
    let policy = egress.policy_now();
    let (addresses, source) = match &host {
        Host::Ip(ip) => (vec![*ip], Source::Literal),
        Host::Name(name) => {
            // A name no address could make allowed is refused before any lookup, so that a
            // denied name never reaches a DNS server (where it could carry data out).
            if let Some(decision) = super::decide::refuse_by_name(&policy, name) {
                return Err(egress.refuse(&target, None, &decision.rule));
            }
            egress
                .settings
                .resolver
                .resolve(name, port)
                .await
                .map_err(|e| relay::text(StatusCode::BAD_GATEWAY, format!("airlock proxy: {e}\n")))?
        }
    };
    let mut allowed = Vec::new();
    let mut first_refusal = None;
    for ip in addresses {
        let addr = SocketAddr::new(ip, port);
        let decision = decide(&policy, &egress.settings.protected, &host, addr, source);
        match decision.allow {
            true => allowed.push(addr),
            false => {
                first_refusal.get_or_insert((addr, decision.rule));
            }
        }
    }
    if allowed.is_empty() {
        let (addr, rule) = first_refusal.expect("at least one address was decided on");
        return Err(egress.refuse(&target, Some(addr.ip()), &rule));
    }
    let mut last_error = String::new();
    for addr in allowed {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => last_error = format!("{addr}: {e}"),
            Err(_) => last_error = format!("{addr}: no answer within {}s", CONNECT_TIMEOUT.as_secs()),
        }
    }
    Err(relay::text(StatusCode::BAD_GATEWAY, format!("airlock proxy: cannot reach {target}: {last_error}\n")))
}
