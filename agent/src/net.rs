//! One HTTP/1.1 request over a fresh connection, every phase distinguishable.
//!
//! Shared by the HTTP probe and by peer exchange. One deadline covers resolve, connect, TLS,
//! request and (at most `max_body_bytes` of) the body; each phase that runs out of time reports
//! itself in [`NetError::Timeout`]. Redirects are never followed and every request says
//! `Connection: close`: a health check must not be answered by a pooled connection to a target
//! that has since gone away.
//!
//! [`connect`] and [`tls_handshake`] are also used on their own by the TCP probe.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, CONNECTION, HOST};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::client::TlsStream;
use url::{Position, Url};

/// One request to send.
#[derive(Debug, Clone)]
pub struct Request {
    /// `http` or `https`; the path and query are sent, user info and fragment never are.
    pub url: Url,
    pub method: Method,
    /// Extra headers, appended in order. `Host` and `Connection` are set by [`send`].
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Overrides the `Host` header (and the TLS name unless `server_name` is set).
    pub host: Option<String>,
    /// Name to verify and send as SNI instead of the host.
    pub server_name: Option<String>,
    pub body: Bytes,
    /// Required for `https` URLs; ignored for `http`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// At most this many body bytes are read; 0 reads no body at all.
    pub max_body_bytes: usize,
}

impl Request {
    /// A `GET` with no extra headers or overrides, reading at most `max_body_bytes`.
    #[must_use]
    pub fn get(url: Url, tls: Option<Arc<rustls::ClientConfig>>, max_body_bytes: usize) -> Self {
        Self {
            url,
            method: Method::GET,
            headers: Vec::new(),
            host: None,
            server_name: None,
            body: Bytes::new(),
            tls,
            max_body_bytes,
        }
    }

    /// The same request with another method and body.
    #[must_use]
    pub fn with_body(mut self, method: Method, body: Bytes) -> Self {
        self.method = method;
        self.body = body;
        self
    }
}

/// What came back.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// At most `max_body_bytes`.
    pub body: Bytes,
    /// The server sent (or may have sent) more than was read.
    pub body_truncated: bool,
    /// From the start of [`send`] until the body was read (or the head, if no body was read).
    pub elapsed: Duration,
}

/// Which part of the exchange ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Resolve,
    Connect,
    Tls,
    Request,
    Body,
}

impl Phase {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Resolve => "resolve",
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::Request => "request",
            Phase::Body => "body",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request failed; [`NetError::reason`] is its low-cardinality code.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("resolving {host}: {source}")]
    Dns { host: String, source: io::Error },
    #[error("connection refused by {addr}")]
    ConnectRefused { addr: SocketAddr },
    #[error("connecting to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("TLS with {name}: {source}")]
    Tls { name: String, source: io::Error },
    #[error("timed out after {elapsed:?} during {phase}")]
    Timeout { phase: Phase, elapsed: Duration },
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl NetError {
    /// `dns`, `connect_refused`, `connect`, `tls`, `timeout`, `http`, `error` (a request that
    /// could not be built; a configuration problem, not the target's), or `local_resource`
    /// (this agent ran out of descriptors, buffers, memory or ports: see
    /// [`crate::local_resource`]).
    #[must_use]
    pub fn reason(&self) -> &'static str {
        if self.is_local_resource() {
            return crate::local_resource::REASON;
        }
        match self {
            NetError::Dns { .. } => "dns",
            NetError::ConnectRefused { .. } => "connect_refused",
            NetError::Connect { .. } => "connect",
            NetError::Tls { .. } => "tls",
            NetError::Timeout { .. } => "timeout",
            NetError::Http(_) => "http",
            NetError::InvalidRequest(_) => "error",
        }
    }
}

impl NetError {
    /// The agent's own resources failed, not the target (see [`crate::local_resource`]).
    #[must_use]
    pub fn is_local_resource(&self) -> bool {
        use crate::local_resource::{in_chain, is_local_io};
        match self {
            NetError::Dns { source, .. }
            | NetError::Connect { source, .. }
            | NetError::Tls { source, .. } => is_local_io(source) || in_chain(source),
            NetError::Http(e) => in_chain(e),
            NetError::ConnectRefused { .. }
            | NetError::Timeout { .. }
            | NetError::InvalidRequest(_) => false,
        }
    }
}

/// Runs `fut` until `deadline`, reporting a timeout in `phase`.
async fn phase<T>(
    phase: Phase,
    start: Instant,
    deadline: Instant,
    fut: impl std::future::Future<Output = Result<T, NetError>>,
) -> Result<T, NetError> {
    match timeout_at(deadline, fut).await {
        Ok(r) => r,
        Err(_) => Err(NetError::Timeout {
            phase,
            elapsed: start.elapsed(),
        }),
    }
}

/// Resolves `host` (IP literals directly, names with the system resolver) and connects to the
/// first address that accepts, all before `deadline`.
pub async fn connect(
    host: &str,
    port: u16,
    start: Instant,
    deadline: Instant,
) -> Result<TcpStream, NetError> {
    // `[::1]` as written in URLs.
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            let dns_err = |source| NetError::Dns {
                host: host.to_owned(),
                source,
            };
            let found = phase(Phase::Resolve, start, deadline, async {
                tokio::net::lookup_host((bare, port)).await.map_err(dns_err)
            })
            .await?;
            let addrs: Vec<SocketAddr> = found.collect();
            if addrs.is_empty() {
                return Err(dns_err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "no addresses",
                )));
            }
            addrs
        }
    };
    phase(Phase::Connect, start, deadline, async {
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    // Small requests: don't wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    last = Some(NetError::ConnectRefused { addr });
                }
                Err(source) => last = Some(NetError::Connect { addr, source }),
            }
        }
        // `addrs` is never empty, so `last` is set.
        Err(last.unwrap_or_else(|| NetError::InvalidRequest("no address to connect to".into())))
    })
    .await
}

/// Completes a TLS handshake as `name` (a DNS name or an IP address) before `deadline`.
pub async fn tls_handshake(
    stream: TcpStream,
    name: &str,
    config: &Arc<rustls::ClientConfig>,
    start: Instant,
    deadline: Instant,
) -> Result<TlsStream<TcpStream>, NetError> {
    let bare = name
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(name);
    let server_name = ServerName::try_from(bare.to_owned()).map_err(|e| NetError::Tls {
        name: name.to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidInput, e),
    })?;
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
    phase(Phase::Tls, start, deadline, async {
        connector
            .connect(server_name, stream)
            .await
            .map_err(|source| NetError::Tls {
                name: name.to_owned(),
                source,
            })
    })
    .await
}

/// `host[:port]` → `host` (IPv6 literals keep their brackets).
fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.find(']').map_or(authority, |i| &authority[..=i]);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => authority,
    }
}

/// Sends `req` over a fresh connection; everything, body included, within `timeout`.
pub async fn send(req: &Request, timeout: Duration) -> Result<Response, NetError> {
    let start = Instant::now();
    let deadline = start + timeout;

    let https = match req.url.scheme() {
        "http" => false,
        "https" => true,
        other => {
            return Err(NetError::InvalidRequest(format!(
                "unsupported scheme {other:?}"
            )))
        }
    };
    let host = req
        .url
        .host_str()
        .ok_or_else(|| NetError::InvalidRequest(format!("{} has no host", req.url)))?;
    let port = req
        .url
        .port_or_known_default()
        .ok_or_else(|| NetError::InvalidRequest(format!("{} has no port", req.url)))?;
    let http_req = build_request(req)?;

    let tcp = connect(host, port, start, deadline).await?;
    if https {
        let config = req
            .tls
            .as_ref()
            .ok_or_else(|| NetError::InvalidRequest("https without a TLS configuration".into()))?;
        let name = match (&req.server_name, &req.host) {
            (Some(name), _) => name.as_str(),
            (None, Some(host_header)) => strip_port(host_header),
            (None, None) => host,
        };
        let tls = tls_handshake(tcp, name, config, start, deadline).await?;
        exchange(tls, http_req, req.max_body_bytes, start, deadline).await
    } else {
        exchange(tcp, http_req, req.max_body_bytes, start, deadline).await
    }
}

fn build_request(req: &Request) -> Result<http::Request<Full<Bytes>>, NetError> {
    let invalid = |e: &dyn std::fmt::Display| NetError::InvalidRequest(e.to_string());
    let path = &req.url[Position::BeforePath..Position::AfterQuery];
    let path = if path.is_empty() { "/" } else { path };
    let host_value = match &req.host {
        Some(h) => HeaderValue::from_str(h),
        None => HeaderValue::from_str(&req.url[Position::BeforeHost..Position::AfterPort]),
    }
    .map_err(|e| invalid(&e))?;

    let mut http_req = http::Request::new(Full::new(req.body.clone()));
    *http_req.method_mut() = req.method.clone();
    *http_req.uri_mut() = http::Uri::try_from(path).map_err(|e| invalid(&e))?;
    let headers = http_req.headers_mut();
    headers.reserve(req.headers.len() + 2);
    headers.insert(HOST, host_value);
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    for (name, value) in &req.headers {
        headers.append(name.clone(), value.clone());
    }
    Ok(http_req)
}

/// Aborts the spawned hyper connection task when the exchange ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn exchange<S>(
    stream: S,
    http_req: http::Request<Full<Bytes>>,
    max_body_bytes: usize,
    start: Instant,
    deadline: Instant,
) -> Result<Response, NetError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = phase(Phase::Request, start, deadline, async {
        Ok(hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?)
    })
    .await?;
    // The connection's error, if any, also surfaces through `send_request` or the body.
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));

    let response = phase(Phase::Request, start, deadline, async {
        Ok(sender.send_request(http_req).await?)
    })
    .await?;
    let (parts, mut body) = response.into_parts();

    let (body, body_truncated) = if max_body_bytes == 0 {
        (Bytes::new(), !hyper::body::Body::is_end_stream(&body))
    } else {
        phase(
            Phase::Body,
            start,
            deadline,
            read_body(&mut body, max_body_bytes),
        )
        .await?
    };
    Ok(Response {
        status: parts.status,
        headers: parts.headers,
        body,
        body_truncated,
        elapsed: start.elapsed(),
    })
}

/// Reads at most `max` bytes; a body that arrives in one frame is not copied.
async fn read_body(
    body: &mut hyper::body::Incoming,
    max: usize,
) -> Result<(Bytes, bool), NetError> {
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    loop {
        let len = first.as_ref().map_or(buf.len(), Bytes::len);
        if len >= max {
            return Ok((take(first, buf), !hyper::body::Body::is_end_stream(body)));
        }
        let Some(frame) = body.frame().await else {
            return Ok((take(first, buf), false));
        };
        let Ok(mut data) = frame?.into_data() else {
            continue; // trailers
        };
        let room = max - len;
        let truncated = data.len() > room;
        data.truncate(room);
        if let Some(f) = first.take() {
            buf.reserve(f.len() + data.len());
            buf.extend_from_slice(&f);
            buf.extend_from_slice(&data);
        } else if buf.is_empty() {
            first = Some(data);
        } else {
            buf.extend_from_slice(&data);
        }
        if truncated {
            return Ok((take(first, buf), true));
        }
    }
}

fn take(first: Option<Bytes>, buf: BytesMut) -> Bytes {
    first.unwrap_or_else(|| buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_port_handles_names_and_ipv6() {
        assert_eq!(strip_port("example.com:8443"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:443"), "[::1]");
        assert_eq!(strip_port("::1"), "::1");
    }

    #[test]
    fn request_sets_host_connection_and_origin_form() {
        let req = Request {
            url: Url::parse("http://user:pw@127.0.0.1:8080/a/b?c=d#frag").expect("url"),
            method: Method::POST,
            headers: vec![(
                HeaderName::from_static("x-a"),
                HeaderValue::from_static("1"),
            )],
            host: None,
            server_name: None,
            body: Bytes::from_static(b"hi"),
            tls: None,
            max_body_bytes: 0,
        };
        let built = build_request(&req).expect("request");
        assert_eq!(built.uri(), "/a/b?c=d");
        assert_eq!(built.headers()[HOST], "127.0.0.1:8080");
        assert_eq!(built.headers()[CONNECTION], "close");
        assert_eq!(built.headers()["x-a"], "1");
        let with_host = Request {
            host: Some("app.example".into()),
            ..req
        };
        assert_eq!(
            build_request(&with_host).expect("request").headers()[HOST],
            "app.example"
        );
    }
}
