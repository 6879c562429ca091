//! A controllable HTTP target for the demo and the integration tests: healthy, down, or
//! broken for chosen agents only (recognised by the `X-Quorumgate-Agent` request header).

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Debug, Default)]
struct Behaviour {
    down: bool,
    broken_for: BTreeSet<String>,
    /// Route 53's health checkers (their `User-Agent`) get no answer: the app is reachable
    /// only from inside its network, as a VPC-private endpoint is.
    private: bool,
}

/// What Route 53's health checkers send as `User-Agent` (a prefix).
pub const ROUTE53_USER_AGENT: &str = "Amazon-Route53-Health-Check-Service";

/// The app: `GET /healthz` answers `200 ok`, or `503 down` when failing for the caller.
#[derive(Debug)]
pub struct TargetApp {
    addr: SocketAddr,
    behaviour: Arc<Mutex<Behaviour>>,
    task: tokio::task::JoinHandle<()>,
}

impl TargetApp {
    /// Binds 127.0.0.1 on an ephemeral port and serves until dropped.
    pub async fn start() -> std::io::Result<Self> {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Binds `addr` (e.g. a region namespace's address) and serves until dropped.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let behaviour = Arc::new(Mutex::new(Behaviour::default()));
        let task = tokio::spawn(serve(listener, Arc::clone(&behaviour)));
        Ok(Self {
            addr,
            behaviour,
            task,
        })
    }

    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The health URL probes should use.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}/healthz", self.addr)
    }

    fn with(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self
            .behaviour
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    /// Fail (or recover) for everyone.
    pub fn set_down(&self, down: bool) {
        self.with(|b| b.down = down);
    }

    /// Fail for `agent` only: its view of the app "hallucinates".
    pub fn break_view(&self, agent: &str) {
        self.with(|b| {
            b.broken_for.insert(agent.to_owned());
        });
    }

    /// Reachable only from inside (see `Behaviour::private`): Route 53's checkers time out.
    pub fn set_private(&self, private: bool) {
        self.with(|b| b.private = private);
    }

    /// Undo every [`break_view`](Self::break_view).
    pub fn heal_views(&self) {
        self.with(|b| b.broken_for.clear());
    }
}

impl Drop for TargetApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, behaviour: Arc<Mutex<Behaviour>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let behaviour = Arc::clone(&behaviour);
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let agent = req
                    .headers()
                    .get("x-quorumgate-agent")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let checker = req
                    .headers()
                    .get(http::header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|ua| ua.starts_with(ROUTE53_USER_AGENT));
                let (failing, unreachable) = {
                    let b = behaviour
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    (b.down || b.broken_for.contains(agent), b.private && checker)
                };
                let (status, body) = if failing {
                    (StatusCode::SERVICE_UNAVAILABLE, "down\n")
                } else {
                    (StatusCode::OK, "ok\n")
                };
                let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                *resp.status_mut() = status;
                async move {
                    if unreachable {
                        // Longer than any checker waits; the connection then just closes.
                        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                    }
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
