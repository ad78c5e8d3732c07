//! A small HTTP client for `airlock serve`: hyper's HTTP/1.1 connection over a tokio TCP stream,
//! one connection per request, a JSON body out and JSON or Server-Sent Events back.
//!
//! Plain `http://` only: the CLI carries no TLS stack. A server that other hosts reach belongs
//! behind a TLS-terminating proxy; the CLI runs where plain HTTP reaches the server (its host,
//! or the private network between proxy and server).

use std::collections::VecDeque;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, Uri};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::Value;

use super::sse::{SseEvent, SseParser};

/// How long reaching the server may take. A request has no overall limit: a run lasts as long
/// as its own timeout lets it, and its output streams all along.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of an answer that is not Airlock's error body a message quotes.
const QUOTED_BYTES: usize = 200;

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server URL is not `http://HOST[:PORT][/PREFIX]`.
    #[error("server URL '{url}' {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The server URL asks for TLS.
    #[error("server URL '{0}' uses https, and airlock exec speaks plain HTTP only")]
    Https(String),
    /// The API key cannot be sent in a header.
    #[error("the API key holds characters an HTTP header cannot carry")]
    BadKey,
    /// A sandbox or context id makes no valid request path.
    #[error("'{0}' makes no valid request path")]
    BadPath(String),
    /// No TCP connection.
    #[error("cannot connect to the server at {url}: {source}")]
    Connect {
        /// The server URL.
        url: String,
        /// Why.
        source: std::io::Error,
    },
    /// No TCP connection within [`CONNECT_TIMEOUT`].
    #[error("no connection to the server at {url} within {} s", CONNECT_TIMEOUT.as_secs())]
    ConnectTimeout {
        /// The server URL.
        url: String,
    },
    /// The HTTP exchange broke off.
    #[error("the exchange with the server at {url} failed: {source}")]
    Http {
        /// The server URL.
        url: String,
        /// Why.
        source: hyper::Error,
    },
    /// The server refused the request with Airlock's error body.
    #[error("{message} (HTTP {status})")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The server's code, e.g. `SANDBOX_NOT_FOUND`.
        code: String,
        /// The server's message.
        message: String,
        /// The server's hint.
        hint: String,
    },
    /// The answer is not what `airlock serve` sends.
    #[error("the server at {url} {message}")]
    BadAnswer {
        /// The server URL.
        url: String,
        /// What was wrong, from "the server at URL" on.
        message: String,
    },
}

impl ClientError {
    /// A stable code: the server's for its refusals.
    pub fn code(&self) -> &str {
        match self {
            ClientError::BadUrl { .. }
            | ClientError::Https(_)
            | ClientError::BadKey
            | ClientError::BadPath(_) => "INVALID_ARGUMENT",
            ClientError::Connect { .. } => "CONNECT_FAILED",
            ClientError::ConnectTimeout { .. } => "CONNECT_TIMEOUT",
            ClientError::Http { .. } => "HTTP_FAILED",
            ClientError::Refused { code, .. } => code,
            ClientError::BadAnswer { .. } => "BAD_ANSWER",
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> &str {
        match self {
            ClientError::BadUrl { .. } => {
                "give --server (or AIRLOCK_SERVER) as http://HOST:PORT, e.g. http://127.0.0.1:8080"
            }
            ClientError::Https(_) => {
                "put a TLS-terminating proxy in front of the server and run airlock exec where plain HTTP \
                 reaches it, or run it on the server host against http://127.0.0.1:PORT"
            }
            ClientError::BadKey => {
                "give the key printed by `airlock keys create` in --api-key or AIRLOCK_API_KEY"
            }
            ClientError::BadPath(_) => "ids hold only letters, digits, `_`, `-` and `.`",
            ClientError::Connect { .. } | ClientError::ConnectTimeout { .. } => {
                "start the server with `airlock serve`, or point --server (or AIRLOCK_SERVER) at it"
            }
            ClientError::Http { .. } | ClientError::BadAnswer { .. } => {
                "check that --server points at `airlock serve` and not another service; its log may say more"
            }
            ClientError::Refused { hint, .. } => hint,
        }
    }
}

/// Airlock's error body: `{"error": {"code", "message", "hint"}}`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
    #[serde(default)]
    hint: String,
}

/// Where the server is and the key to show it.
#[derive(Debug, Clone)]
pub struct Client {
    /// The URL as given, for messages.
    url: String,
    /// `host:port`, to connect to.
    address: String,
    /// The `Host` header: the URL's authority.
    authority: String,
    /// The URL's path without its trailing `/`, put before every request's: a proxy may serve
    /// the API under a prefix.
    prefix: String,
    /// `Bearer KEY`.
    authorization: Option<HeaderValue>,
}

impl Client {
    /// A client of the server at `url` (`http://HOST[:PORT][/PREFIX]`); connects to nothing yet.
    pub fn new(url: &str, api_key: Option<&str>) -> Result<Client, ClientError> {
        let bad = |reason| ClientError::BadUrl { url: url.to_owned(), reason };
        let uri: Uri = url.parse().map_err(|_| bad("is not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(ClientError::Https(url.to_owned())),
            Some(_) => return Err(bad("has a scheme other than http")),
            None => return Err(bad("has no scheme (write http://HOST:PORT)")),
        }
        let authority = uri.authority().ok_or_else(|| bad("names no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("holds a user name, which the server does not use (give --api-key)"));
        }
        if uri.query().is_some() {
            return Err(bad("has a query, which the server does not use"));
        }
        let authorization = match api_key {
            Some(key) => {
                Some(HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| ClientError::BadKey)?)
            }
            None => None,
        };
        Ok(Client {
            url: url.to_owned(),
            // An IPv6 host keeps its brackets, which is how `host:port` must write it.
            address: format!("{}:{}", authority.host(), authority.port_u16().unwrap_or(80)),
            authority: authority.as_str().to_owned(),
            prefix: uri.path().trim_end_matches('/').to_owned(),
            authorization,
        })
    }

    /// POST `body` to `path` and collect the JSON answer.
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let response = self.send(path, Bytes::from(body.to_string()), "application/json").await?;
        let bytes = self.read_all(response).await?;
        serde_json::from_slice(&bytes).map_err(|e| self.bad_answer(format!("answered with no JSON ({e})")))
    }

    /// POST `body` to `path` and read the answer as Server-Sent Events.
    pub async fn post_events(&self, path: &str, body: &Value) -> Result<EventStream, ClientError> {
        let response = self.send(path, Bytes::from(body.to_string()), "text/event-stream").await?;
        let kind = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("none");
        if !kind.starts_with("text/event-stream") {
            return Err(self.bad_answer(format!("answered with {kind} instead of an event stream")));
        }
        Ok(EventStream {
            url: self.url.clone(),
            body: response.into_body(),
            parser: SseParser::default(),
            ready: VecDeque::new(),
        })
    }

    /// POST nothing to `path`; any success will do.
    pub async fn post_empty(&self, path: &str) -> Result<(), ClientError> {
        self.send(path, Bytes::new(), "application/json").await.map(drop)
    }

    /// Connect, send, and turn a refusal into an error. The connection closes once the answer's
    /// body has been read or dropped.
    async fn send(
        &self,
        path: &str,
        body: Bytes,
        accept: &'static str,
    ) -> Result<Response<Incoming>, ClientError> {
        let uri: Uri =
            format!("{}{path}", self.prefix).parse().map_err(|_| ClientError::BadPath(path.to_owned()))?;
        let stream = self.connect().await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| self.http(e))?;
        // The connection does the socket's I/O; its failures reach us through the request and
        // the body, so its own result says nothing new.
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(HOST, &self.authority)
            .header(ACCEPT, accept);
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization);
        }
        let request = request.body(Full::new(body)).map_err(|_| ClientError::BadPath(path.to_owned()))?;
        let response = sender.send_request(request).await.map_err(|e| self.http(e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let bytes = self.read_all(response).await?;
        Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(ErrorBody { error }) => ClientError::Refused {
                status: status.as_u16(),
                code: error.code,
                message: error.message,
                hint: error.hint,
            },
            Err(_) => {
                let quoted = String::from_utf8_lossy(&bytes[..bytes.len().min(QUOTED_BYTES)]).into_owned();
                self.bad_answer(format!("answered {status} without Airlock's error body: {quoted:?}"))
            }
        })
    }

    async fn connect(&self) -> Result<tokio::net::TcpStream, ClientError> {
        let connecting = tokio::net::TcpStream::connect(&self.address);
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(source)) => Err(ClientError::Connect { url: self.url.clone(), source }),
            Err(_) => Err(ClientError::ConnectTimeout { url: self.url.clone() }),
        }
    }

    async fn read_all(&self, response: Response<Incoming>) -> Result<Bytes, ClientError> {
        Ok(response.into_body().collect().await.map_err(|e| self.http(e))?.to_bytes())
    }

    fn http(&self, source: hyper::Error) -> ClientError {
        ClientError::Http { url: self.url.clone(), source }
    }

    /// An error for an answer that is not what `airlock serve` sends.
    pub fn bad_answer(&self, message: String) -> ClientError {
        ClientError::BadAnswer { url: self.url.clone(), message }
    }
}

/// The events of a streamed answer, as they arrive.
#[derive(Debug)]
pub struct EventStream {
    url: String,
    body: Incoming,
    parser: SseParser,
    /// Events parsed from the last chunk and not yet taken.
    ready: VecDeque<SseEvent>,
}

impl EventStream {
    /// The next event, or `None` when the body ends. Cancel-safe: dropped while it waits for
    /// a chunk, it loses nothing, so it can race Ctrl-C in a `select!`.
    pub async fn next(&mut self) -> Result<Option<SseEvent>, ClientError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Some(event));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(source)) => return Err(ClientError::Http { url: self.url.clone(), source }),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.ready.extend(self.parser.feed(&data));
                    }
                }
            }
        }
    }

    /// An error for a stream that broke the protocol.
    pub fn bad_answer(&self, message: String) -> ClientError {
        ClientError::BadAnswer { url: self.url.clone(), message }
    }
}

#[cfg(test)]
mod tests {
    use super::{Client, ClientError};

    #[test]
    fn urls_give_an_address_a_host_header_and_a_prefix() {
        let c = Client::new("http://127.0.0.1:8080", None).unwrap();
        assert_eq!(
            (c.address.as_str(), c.authority.as_str(), c.prefix.as_str()),
            ("127.0.0.1:8080", "127.0.0.1:8080", "")
        );
        let c = Client::new("http://example.test/airlock/", Some("ak_1")).unwrap();
        assert_eq!(
            (c.address.as_str(), c.authority.as_str(), c.prefix.as_str()),
            ("example.test:80", "example.test", "/airlock")
        );
        assert_eq!(c.authorization.unwrap(), "Bearer ak_1");
        let c = Client::new("http://[::1]:9000", None).unwrap();
        assert_eq!(c.address, "[::1]:9000");
        assert!("[::1]:9000".parse::<std::net::SocketAddr>().is_ok());
    }

    #[test]
    fn only_plain_http_urls_are_taken() {
        assert!(matches!(Client::new("https://example.test", None), Err(ClientError::Https(_))));
        for bad in
            ["127.0.0.1:8080", "ftp://example.test", "http://u:p@example.test", "http://h/?q=1", "not a url"]
        {
            let e = Client::new(bad, None).unwrap_err();
            assert!(matches!(e, ClientError::BadUrl { .. }), "{bad}: {e:?}");
            assert!(e.to_string().contains(bad), "the message names the URL: {e}");
        }
        assert!(matches!(Client::new("http://h", Some("a\nb")), Err(ClientError::BadKey)));
    }
}
