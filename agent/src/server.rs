//! The HTTP surface: health answers for Route 53, ballots for peers, status,
//! metrics and the agent's own liveness/readiness. HTTP/1.1 over TCP or rustls.
//!
//! Public routes are read-only and cheap. Request bodies are size-limited, slow clients time
//! out (header read, body read, TLS handshake, whole connection), and connections are capped
//! per listener (the cap comes from the descriptor budget, `fdlimit.rs`), idle connections are
//! shed for new ones when the slots run low, with a reserve that one busy source cannot take
//! (`server/admission.rs`). Every cut-off is counted in
//! `quorumgate_http_rejected_total{listener, reason}`.

mod admission;
pub mod body;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use quorum::{Accepted, CheckId, State};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::bundle;
use crate::clock::SharedClock;
use crate::gates::{CommandOutcome, GateDriver};
use crate::intake::Intake;
use crate::node::Node;
use crate::telemetry as t;
use admission::Admission;
use body::{BodyBudget, BodyError};

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// Largest request head (request line and headers); larger is answered 431. `max_buf_size`
/// alone does not bound it: hyper checks that only between reads, and its reads grow.
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The last eighth of a listener's slots is kept for light sources once the rest are taken:
/// one host with many slow connections leaves them to the peers, Route 53 and Prometheus.
const RESERVED_FRACTION: usize = 8;
/// Requests one connection may carry (keep-alive or pipelined); the answer to the last says
/// `Connection: close`. A client must not hold a slot forever by keeping it busy.
const MAX_REQUESTS_PER_CONNECTION: u64 = 100;
/// Shed connections not yet closed by their tasks (each holds a descriptor) at which the
/// accept loop waits for them before accepting more: a churning flood must not outrun the
/// closes and eat the descriptors reserved for the probes. Part of the reserve.
const MAX_CLOSING: usize = crate::fdlimit::CLOSING_PER_LISTENER as usize;
/// After `accept` failed for lack of descriptors (or memory): wait this long, so the loop
/// does not spin while connections close.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// A source (IPv4 address, IPv6 /64) holding fewer connections than this is light. A peer
/// holds at most two to another agent (one push, one pull).
const LIGHT_SOURCE_CONNECTIONS: usize = 8;
/// Refused and shed connections are logged at most this often (a flood must not flood the log
/// too).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Which routes a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// Everything: health, ballots, status, metrics, liveness.
    Full,
    /// Only `/v1/health/*`, `/livez` and `/readyz`: the public listener for Route 53.
    HealthOnly,
}

impl Surface {
    /// The `listener` label of the metrics.
    fn label(self) -> &'static str {
        match self {
            Surface::Full => "full",
            Surface::HealthOnly => "health",
        }
    }
}

/// Counts one request or connection cut off by the server's limits.
fn count_rejected(surface: Surface, reason: &'static str) {
    metrics::counter!(t::HTTP_REJECTED, "listener" => surface.label(), "reason" => reason)
        .increment(1);
}

/// Logs one kind of cut-off: the first at once, then one summary per
/// [`REFUSAL_LOG_INTERVAL`].
#[derive(Debug)]
struct RefusalLog {
    what: &'static str,
    last: Option<Instant>,
    suppressed: u64,
}

impl RefusalLog {
    fn new(what: &'static str) -> Self {
        Self {
            what,
            last: None,
            suppressed: 0,
        }
    }

    /// `peer`: the source of the connection refused or shed, when known; `detail`: the
    /// reason or kind.
    fn log(&mut self, surface: Surface, peer: Option<std::net::IpAddr>, detail: &str) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|at| now.duration_since(at) < REFUSAL_LOG_INTERVAL)
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            listener = surface.label(),
            peer = peer.map(tracing::field::display),
            detail,
            since_last_log = self.suppressed,
            "{}",
            self.what
        );
        self.last = Some(now);
        self.suppressed = 0;
    }
}

/// Whether an `accept` error means the process or system is out of descriptors.
fn out_of_descriptors(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    matches!(Errno::from_io_error(e), Some(Errno::MFILE | Errno::NFILE))
}

/// Whether an `accept` error is a resource shortage worth backing off for (the others, like a
/// connection reset before it was accepted, concern one connection only).
fn resource_shortage(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    out_of_descriptors(e) || matches!(Errno::from_io_error(e), Some(Errno::NOBUFS | Errno::NOMEM))
}

/// What the handlers need.
#[derive(Debug)]
pub struct ServerCtx {
    pub node: Arc<Mutex<Node>>,
    pub clock: SharedClock,
    pub metrics: Option<PrometheusHandle>,
    /// Largest accepted `POST /v1/ballots` body.
    pub max_body_bytes: usize,
    /// `/livez` fails when no round ran for this long.
    pub liveness_ms: u64,
    /// Control-plane gates and operator commands; `None` when no gate is configured.
    pub gates: Option<Arc<GateDriver>>,
    /// Checks received ballots before the node lock is taken (see [`crate::intake`]).
    pub intake: Intake,
    /// Request body bytes held at once, across every listener and connection.
    pub bodies: Arc<BodyBudget>,
}

type Body = Full<Bytes>;

/// Serves on `listener` until `shutdown` fires, then drains for a short grace period. At most
/// `max_connections` connections are held at once (the listener's share of the descriptor
/// budget).
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    surface: Surface,
    max_connections: usize,
    ctx: Arc<ServerCtx>,
    shutdown: CancellationToken,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let admission = Admission::new(
        max_connections,
        max_connections / RESERVED_FRACTION,
        LIGHT_SOURCE_CONNECTIONS,
    );
    metrics::gauge!(t::HTTP_MAX_CONNECTIONS, "listener" => surface.label())
        .set(max_connections as f64);
    let mut refusals = RefusalLog::new("connection refused: limit reached");
    let mut sheds = RefusalLog::new("idle connection closed to make room for a new one");
    let mut accept_errors = RefusalLog::new("accept failed");
    let mut conns = JoinSet::new();
    loop {
        while admission.closing() >= MAX_CLOSING && !shutdown.is_cancelled() {
            // Bounded: a close that raced the check wakes us no later than this.
            let _ = tokio::time::timeout(Duration::from_millis(10), admission.closed()).await;
        }
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            a = listener.accept() => a,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                let fds = out_of_descriptors(&e);
                count_rejected(surface, if fds { "accept_no_fd" } else { "accept_error" });
                accept_errors.log(surface, None, &e.to_string());
                if fds {
                    // Free a descriptor for the connection waiting in the backlog.
                    if let Some((kind, source)) = admission.shed_one(Instant::now()) {
                        count_rejected(surface, "shed_idle");
                        sheds.log(surface, Some(source), kind.label());
                    }
                }
                if resource_shortage(&e) {
                    // Back off instead of spinning; the shed connection closes meanwhile.
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
                continue;
            }
        };
        let ticket = match admission.admit(peer.ip(), Instant::now()) {
            Ok((ticket, shed)) => {
                if let Some((kind, source)) = shed {
                    count_rejected(surface, "shed_idle");
                    sheds.log(surface, Some(source), kind.label());
                }
                ticket
            }
            Err(refused) => {
                count_rejected(surface, refused.reason());
                refusals.log(surface, Some(peer.ip()), refused.reason());
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ctx = Arc::clone(&ctx);
        let acceptor = acceptor.clone();
        conns.spawn(async move {
            let shed = ticket.shed_signal();
            let ticket = Some(Arc::new(ticket));
            let served = tokio::time::timeout(CONNECTION_LIFETIME, async {
                match acceptor {
                    Some(acceptor) => {
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(tls)) => {
                                serve_http(TokioIo::new(tls), surface, ctx, ticket, Some(peer))
                                    .await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed")
                            }
                            Err(_) => {
                                count_rejected(surface, "tls_timeout");
                                tracing::debug!(%peer, "TLS handshake timed out");
                            }
                        }
                    }
                    None => {
                        serve_http(TokioIo::new(stream), surface, ctx, ticket, Some(peer)).await
                    }
                }
            });
            // Shed: dropping the connection closes its socket (and frees its descriptor) now.
            let result = tokio::select! {
                r = served => r,
                () = shed.cancelled() => {
                    tracing::debug!(%peer, "idle connection shed");
                    return;
                }
            };
            if result.is_err() {
                count_rejected(surface, "lifetime");
                tracing::debug!(%peer, "connection closed at its lifetime limit");
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
}

/// Serves HTTP/1 on one accepted connection (plain or TLS) until it ends. Public so the
/// fuzz harness (`fuzzing`) can drive it over an in-memory pipe.
pub async fn serve_connection<I>(io: TokioIo<I>, surface: Surface, ctx: Arc<ServerCtx>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    serve_http(io, surface, ctx, None, None).await;
}

/// The remote address of the connection a request came on (a request extension), for logs:
/// a rejected ballot names where it came from.
#[derive(Clone, Copy, Debug)]
struct RemoteAddr(std::net::SocketAddr);

/// As [`serve_connection`], telling the connection's admission `ticket` (if any) when a
/// request starts and ends (an idle connection may be shed, a busy one not). Either way the
/// connection closes after [`MAX_REQUESTS_PER_CONNECTION`].
async fn serve_http<I>(
    io: TokioIo<I>,
    surface: Surface,
    ctx: Arc<ServerCtx>,
    ticket: Option<Arc<admission::Ticket>>,
    remote: Option<std::net::SocketAddr>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let served = Arc::new(AtomicU64::new(0));
    let svc = service_fn(move |mut req: Request<Incoming>| {
        if let Some(addr) = remote {
            req.extensions_mut().insert(RemoteAddr(addr));
        }
        let ctx = Arc::clone(&ctx);
        let ticket = ticket.clone();
        let n = served.fetch_add(1, Ordering::Relaxed) + 1;
        async move {
            if let Some(t) = &ticket {
                t.begin_request();
            }
            let mut resp = route(&ctx, surface, req).await;
            if n >= MAX_REQUESTS_PER_CONNECTION {
                // hyper closes the connection after a response that says so.
                resp.headers_mut()
                    .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            if let Some(t) = &ticket {
                t.end_request(Instant::now());
            }
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(64 * 1024)
        .max_header_size(MAX_HEADER_BYTES)
        .serve_connection(io, svc);
    if let Err(e) = conn.await {
        if e.is_timeout() {
            count_rejected(surface, "header_timeout");
        } else if e.is_parse_too_large() {
            count_rejected(surface, "header_too_large");
        }
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Routes one request.
pub async fn route(ctx: &ServerCtx, surface: Surface, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let public = path.starts_with("/v1/health/") || path == "/livez" || path == "/readyz";
    if surface == Surface::HealthOnly && !public {
        return text(StatusCode::NOT_FOUND, "not found\n".to_owned());
    }
    match (method, path.as_str()) {
        (Method::GET | Method::HEAD, p) if p.starts_with("/v1/health/") => {
            health(ctx, &p["/v1/health/".len()..])
        }
        (Method::POST, "/v1/ballots") => post_ballot(ctx, req).await,
        (Method::POST, "/v1/operator") => post_operator(ctx, req).await,
        (Method::GET, "/v1/ballots") => get_ballots(ctx),
        (Method::GET, "/v1/status") => status(ctx),
        (Method::GET, "/v1/audit") => audit(ctx, req.uri().query()).await,
        (Method::GET, "/metrics") => metrics(ctx),
        (Method::GET | Method::HEAD, "/livez") => livez(ctx),
        (Method::GET | Method::HEAD, "/readyz") => readyz(ctx),
        (
            _,
            "/v1/ballots" | "/v1/operator" | "/v1/status" | "/v1/audit" | "/metrics" | "/livez"
            | "/readyz",
        ) => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".to_owned(),
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n".to_owned()),
    }
}

fn lock(ctx: &ServerCtx) -> std::sync::MutexGuard<'_, Node> {
    // A panic while holding the lock is a bug elsewhere; the state is still the best we have.
    ctx.node
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn health(ctx: &ServerCtx, check: &str) -> Response<Body> {
    let Ok(check) = CheckId::new(check) else {
        return text(StatusCode::NOT_FOUND, "UNKNOWN check\n".to_owned());
    };
    let Some(h) = lock(ctx).health(&check) else {
        return text(StatusCode::NOT_FOUND, format!("UNKNOWN check {check}\n"));
    };
    match h.decision {
        Some(State::Healthy) => text(StatusCode::OK, format!("HEALTHY {}\n", h.detail)),
        Some(State::Unhealthy) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("UNHEALTHY {}\n", h.detail),
        ),
        // A restarted agent that knows no decision must not move traffic: 503 is the side
        // on which Route 53 fails open when every agent says it (ARCHITECTURE.md).
        None => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("UNDECIDED {}\n", h.detail),
        ),
    }
}

fn too_large(limit: usize) -> Response<Body> {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("rejected: too_large: limit {limit} bytes\n"),
    )
}

/// Bodies from this size up are checked on the blocking pool, not on a runtime worker.
const BLOCKING_CHECK_BYTES: usize = 64 * 1024;

async fn post_ballot(ctx: &ServerCtx, req: Request<Incoming>) -> Response<Body> {
    let limit = ctx.max_body_bytes;
    // Where the ballot came from, for the log of a rejection (the runbook's forged-ballot
    // hunt starts there).
    let source = req
        .extensions()
        .get::<RemoteAddr>()
        .map_or_else(|| "push".to_owned(), |a| a.0.to_string());
    let body = match body::read(req, limit, &ctx.bodies, BODY_READ_TIMEOUT).await {
        Ok(b) => b,
        Err(BodyError::TooLarge(detail)) => {
            ctx.intake
                .reject_transport("too_large", &format!("{detail} (from {source})"));
            return too_large(limit);
        }
        Err(BodyError::Other(resp)) => return resp,
    };
    // Decoding and the signature check need no lock: only the book's insert does.
    let checked = if body.bytes.len() >= BLOCKING_CHECK_BYTES {
        let intake = ctx.intake.clone();
        let (bytes, src) = (body.bytes.clone(), source.clone());
        match tokio::task::spawn_blocking(move || intake.precheck(&bytes, &src)).await {
            Ok(r) => r,
            Err(e) => {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("ballot check failed: {e}\n"),
                )
            }
        }
    } else {
        ctx.intake.precheck(&body.bytes, &source)
    };
    let result = match checked {
        Ok(pre) => lock(ctx).receive_peer(ctx.clock.now(), pre, &source),
        Err(r) => Err(r),
    };
    // The body's share of the budget is released once the ballot is counted.
    drop(body);
    match result {
        Ok(Accepted::New(_)) => text(StatusCode::ACCEPTED, "accepted\n".to_owned()),
        Ok(Accepted::Duplicate) => text(StatusCode::OK, "duplicate\n".to_owned()),
        Err(r) => text(
            StatusCode::BAD_REQUEST,
            format!("rejected: {}: {r}\n", r.reason()),
        ),
    }
}

/// `POST /v1/operator`: a signed operator command (freeze, unfreeze, approve, override).
/// The signature, not the transport, carries the authority; every refusal is counted.
async fn post_operator(ctx: &ServerCtx, req: Request<Incoming>) -> Response<Body> {
    let Some(gates) = &ctx.gates else {
        return text(
            StatusCode::NOT_FOUND,
            "rejected: unknown_gate: this cluster has no control-plane gates\n".to_owned(),
        );
    };
    let limit = quorum::operator::MAX_COMMAND_BYTES;
    let body = match body::read(req, limit, &ctx.bodies, BODY_READ_TIMEOUT).await {
        Ok(b) => b,
        Err(BodyError::TooLarge(detail)) => {
            metrics::counter!(crate::telemetry::OPERATOR_COMMANDS, "result" => "too_large")
                .increment(1);
            tracing::warn!(%detail, "operator command refused: too large");
            return too_large(limit);
        }
        Err(BodyError::Other(resp)) => return resp,
    };
    match gates.handle_command(ctx.clock.now(), &body.bytes).await {
        Ok(CommandOutcome::Applied { gate, action }) => {
            text(StatusCode::OK, format!("applied: {action} {gate}\n"))
        }
        Ok(CommandOutcome::Duplicate) => text(StatusCode::OK, "duplicate\n".to_owned()),
        Err(crate::gates::CommandError::Audit(e)) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not applied: audit log unavailable: {e}\n"),
        ),
        Err(e) => text(
            StatusCode::FORBIDDEN,
            format!("rejected: {}: {e}\n", e.reason()),
        ),
    }
}

fn get_ballots(ctx: &ServerCtx) -> Response<Body> {
    let body = bundle::encode(&lock(ctx).ballots());
    respond(StatusCode::OK, "application/octet-stream", body.into())
}

fn status(ctx: &ServerCtx) -> Response<Body> {
    let now = ctx.clock.now();
    let mut doc = lock(ctx).status(now);
    if let Some(g) = &ctx.gates {
        doc.gates = g.status(now);
    }
    match serde_json::to_vec_pretty(&doc) {
        Ok(json) => respond(StatusCode::OK, "application/json", json.into()),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("status encoding failed: {e}\n"),
        ),
    }
}

/// `GET /v1/audit?since=<unix ms>[&limit=N]`: this agent's audit records since then (JSON),
/// for `quorumgate drill`'s report. Full surface only, like everything but health.
async fn audit(ctx: &ServerCtx, query: Option<&str>) -> Response<Body> {
    let Some(gates) = &ctx.gates else {
        return text(
            StatusCode::NOT_FOUND,
            "no audit records served: this cluster has no control-plane gates\n".to_owned(),
        );
    };
    match gates.audit_since(query).await {
        Ok(json) => respond(StatusCode::OK, "application/json", json.into()),
        Err((code, why)) => text(code, format!("{why}\n")),
    }
}

fn metrics(ctx: &ServerCtx) -> Response<Body> {
    match &ctx.metrics {
        Some(h) => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            crate::telemetry::render(h).into(),
        ),
        None => text(StatusCode::NOT_FOUND, "metrics not enabled\n".to_owned()),
    }
}

fn livez(ctx: &ServerCtx) -> Response<Body> {
    let now = ctx.clock.now();
    let node = lock(ctx);
    // Before the first round the loop is starting, which counts as alive.
    match node.last_round_at() {
        Some(at) if now.since(at) > ctx.liveness_ms => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("stalled: no round for {} ms\n", now.since(at)),
        ),
        _ => text(StatusCode::OK, "ok\n".to_owned()),
    }
}

fn readyz(ctx: &ServerCtx) -> Response<Body> {
    if lock(ctx).ready() {
        text(StatusCode::OK, "ready\n".to_owned())
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: first round not complete\n".to_owned(),
        )
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", body.into())
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}

#[cfg(test)]
mod tests;
