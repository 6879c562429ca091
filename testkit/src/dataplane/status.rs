//! What the data plane sees, as a Rust snapshot and as JSON on `GET /status`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;

use super::checker::CheckerStatus;

/// One health check's computed status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckStatus {
    /// `HTTPS_STR_MATCH`, `CALCULATED`, ...
    pub kind: String,
    /// The status Route 53 would use for routing (checkers, FailureThreshold, the 18 % rule,
    /// children, Inverted and Disabled all applied).
    pub healthy: bool,
    pub inverted: bool,
    pub disabled: bool,
    /// CALCULATED: the children and the threshold.
    pub children: Vec<String>,
    pub health_threshold: u32,
    /// Endpoint checks: every checker, by region (empty while disabled).
    pub checkers: Vec<CheckerStatus>,
}

/// One record that may answer now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub set_identifier: Option<String>,
    /// Weighted records: the weight (one candidate is picked per query, by weight).
    pub weight: Option<u32>,
    /// The values it answers (an alias's resolved through its target).
    pub values: Vec<String>,
}

/// The current answer for one (name, type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnswerStatus {
    pub zone: String,
    pub name: String,
    pub rtype: String,
    /// `Simple`, `Failover` or `Weighted`.
    pub routing: String,
    /// The records a query may be answered from now: the one selected for failover, every
    /// record for simple, the eligible set for weighted.
    pub candidates: Vec<Candidate>,
}

/// Everything at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// Health checks by id.
    pub checks: BTreeMap<String, CheckStatus>,
    /// Every (name, type) with records, zone by zone.
    pub answers: Vec<AnswerStatus>,
    /// Successful reads of the source so far.
    pub refreshes: u64,
    /// The latest failed read of the source (the previous state is kept), cleared by a good one.
    pub source_error: Option<String>,
}

impl Snapshot {
    /// The answer entry for `name` (normalized or not) and `rtype`.
    #[must_use]
    pub fn answer(&self, name: &str, rtype: &str) -> Option<&AnswerStatus> {
        let name = super::model::normalize_name(name);
        let rtype = rtype.to_ascii_uppercase();
        self.answers
            .iter()
            .find(|a| a.name == name && a.rtype == rtype)
    }

    /// Every checker of health check `id` and, for a calculated check, of its children.
    pub fn checkers_of<'s>(&'s self, id: &str) -> impl Iterator<Item = &'s CheckerStatus> + 's {
        let check = self.checks.get(id);
        let children = check
            .into_iter()
            .flat_map(|c| c.children.iter())
            .filter_map(|child| self.checks.get(child));
        check
            .into_iter()
            .chain(children)
            .flat_map(|c| c.checkers.iter())
    }

    /// Polls made so far by [`checkers_of`](Self::checkers_of) `id` (evidence that Route 53
    /// was looking); `None`: every check.
    #[must_use]
    pub fn polls(&self, id: Option<&str>) -> u64 {
        match id {
            Some(id) => self.checkers_of(id).map(|k| k.polls).sum(),
            None => self
                .checks
                .values()
                .flat_map(|c| c.checkers.iter())
                .map(|k| k.polls)
                .sum(),
        }
    }

    /// How many of [`checkers_of`](Self::checkers_of) `id` failed their latest poll.
    #[must_use]
    pub fn failing(&self, id: &str) -> usize {
        self.checkers_of(id)
            .filter(|k| k.last.as_ref().is_some_and(|o| !o.ok))
            .count()
    }
}

/// Serves `GET /status` (and `/`) with `snapshot()` as JSON on `listen`.
pub async fn serve(
    listen: SocketAddr,
    snapshot: Arc<dyn Fn() -> Snapshot + Send + Sync>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the status page on {listen}"))?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let snapshot = Arc::clone(&snapshot);
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let snapshot = Arc::clone(&snapshot);
                    async move { Ok::<_, Infallible>(respond(&req, &*snapshot)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((addr, task))
}

fn respond<B>(
    req: &http::Request<B>,
    snapshot: &dyn Fn() -> Snapshot,
) -> http::Response<Full<Bytes>> {
    let (status, body, ctype) = match (req.method(), req.uri().path()) {
        (&http::Method::GET, "/status" | "/") => match serde_json::to_vec_pretty(&snapshot()) {
            Ok(json) => (http::StatusCode::OK, json, "application/json"),
            Err(e) => (
                http::StatusCode::INTERNAL_SERVER_ERROR,
                e.to_string().into_bytes(),
                "text/plain",
            ),
        },
        _ => (
            http::StatusCode::NOT_FOUND,
            b"GET /status\n".to_vec(),
            "text/plain",
        ),
    };
    let mut resp = http::Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(ctype),
    );
    resp
}
