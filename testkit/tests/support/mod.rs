//! Helpers for the data-plane tests: loopback HTTP(S) endpoints whose answer the test
//! controls and which remember who asked, and a bounded wait.

#![allow(dead_code)] // each test binary uses its own subset

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// One request as an endpoint saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub peer: IpAddr,
    pub path: String,
    pub host: String,
    pub user_agent: String,
    /// HTTPS: the SNI the client sent.
    pub sni: Option<String>,
}

#[derive(Debug)]
struct Reply {
    status: u16,
    body: Vec<u8>,
}

/// A loopback HTTP endpoint answering what the test sets; stops when dropped.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    reply: Arc<Mutex<Reply>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// HTTPS: the SNI of every completed handshake, in order.
    handshakes: Arc<Mutex<Vec<Option<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Endpoint {
    /// Plain HTTP, answering `200 HEALTHY` until told otherwise.
    pub async fn http() -> Self {
        Self::start(None).await
    }

    /// HTTPS with a self-signed certificate for `names` (never valid for the checker, which
    /// must not care).
    pub async fn https(names: &[&str]) -> Self {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let cert = rcgen::generate_simple_self_signed(names).expect("cert");
        let key = rustls_pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .expect("server config");
        Self::start(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let reply = Arc::new(Mutex::new(Reply {
            status: 200,
            body: b"200 HEALTHY".to_vec(),
        }));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let (r, s, h) = (
            Arc::clone(&reply),
            Arc::clone(&seen),
            Arc::clone(&handshakes),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let (reply, seen, tls) = (Arc::clone(&r), Arc::clone(&s), tls.clone());
                let handshakes = Arc::clone(&h);
                tokio::spawn(async move {
                    match tls {
                        None => serve(stream, peer.ip(), None, reply, seen).await,
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            let sni = stream.get_ref().1.server_name().map(str::to_owned);
                            handshakes.lock().expect("handshakes").push(sni.clone());
                            serve(stream, peer.ip(), sni, reply, seen).await;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            reply,
            seen,
            handshakes,
            task,
        }
    }

    /// From now on every request gets `status` and `body`.
    pub fn set(&self, status: u16, body: impl Into<Vec<u8>>) {
        let mut r = self.reply.lock().expect("reply");
        r.status = status;
        r.body = body.into();
    }

    /// What an agent answers for a healthy quorum decision.
    pub fn healthy(&self) {
        self.set(200, "200 HEALTHY app-use1");
    }

    /// What an agent answers otherwise (the body still contains HEALTHY: the 503 fails it).
    pub fn unhealthy(&self) {
        self.set(503, "503 UNHEALTHY app-use1");
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }

    pub fn handshakes(&self) -> Vec<Option<String>> {
        self.handshakes.lock().expect("handshakes").clone()
    }
}

async fn serve<S>(
    stream: S,
    peer: IpAddr,
    sni: Option<String>,
    reply: Arc<Mutex<Reply>>,
    seen: Arc<Mutex<Vec<Seen>>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let header = |h: http::header::HeaderName| {
            req.headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        seen.lock().expect("seen").push(Seen {
            peer,
            path: req.uri().path().to_owned(),
            host: header(http::header::HOST),
            user_agent: header(http::header::USER_AGENT),
            sni: sni.clone(),
        });
        let (status, body) = {
            let r = reply.lock().expect("reply");
            (r.status, r.body.clone())
        };
        async move {
            let mut resp = http::Response::new(Full::new(Bytes::from(body)));
            *resp.status_mut() = http::StatusCode::from_u16(status).expect("status");
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

/// Polls `probe` every 50 ms until it returns `Some`, for at most `limit`; panics naming
/// `what` (with the last error it returned) when it never does.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let last = match probe().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
