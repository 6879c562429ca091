//! Request bodies: each under its route's size limit, read within a deadline, and all of them
//! together under one byte budget. 1,024 connections × a 4 MiB ballot would otherwise be
//! 4 GiB held at once; the budget makes that a 503 `Retry-After` for the uploads it does not
//! fit (counted, reason `body_budget`), and the agent keeps its memory for its answers.
//!
//! A declared `Content-Length` is reserved in full before a byte is read; a chunked body is
//! charged frame by frame as it arrives. The reservation is released when the request's
//! handler drops the [`Body`] (after the ballot is checked and counted).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{count_rejected, text, Body as RespBody, Surface};
use crate::telemetry as t;

/// The budget of a server without a config (the fuzz harness, tests); agents use
/// `local.http_body_budget_bytes`, whose default is the same.
pub const DEFAULT_BUDGET_BYTES: usize = 64 * 1024 * 1024;
/// How long a client told 503 for lack of budget should wait before retrying.
const RETRY_AFTER_SECS: &str = "1";

/// The byte budget shared by every listener's request bodies.
#[derive(Debug)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    total: usize,
    held: AtomicUsize,
}

impl BodyBudget {
    /// A budget of `total` bytes (at least 1).
    #[must_use]
    pub fn new(total: usize) -> Arc<Self> {
        let total = total.clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(Self {
            bytes: Arc::new(Semaphore::new(total)),
            total,
            held: AtomicUsize::new(0),
        })
    }

    /// Bytes reserved now.
    #[must_use]
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    #[must_use]
    pub fn total(&self) -> usize {
        self.total
    }

    /// An empty reservation.
    fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: Arc::clone(self),
            n: 0,
            permit: None,
        }
    }
}

/// Bytes of the budget one body holds; released on drop.
#[derive(Debug)]
struct Reservation {
    budget: Arc<BodyBudget>,
    n: usize,
    permit: Option<OwnedSemaphorePermit>,
}

impl Reservation {
    /// Reserves `n` more bytes without waiting; whether the budget had them.
    fn grow(&mut self, n: usize) -> bool {
        let Ok(permits) = u32::try_from(n) else {
            return false;
        };
        let Ok(more) = Arc::clone(&self.budget.bytes).try_acquire_many_owned(permits) else {
            return false;
        };
        match &mut self.permit {
            Some(p) => p.merge(more),
            None => self.permit = Some(more),
        }
        self.n += n;
        let held = self.budget.held.fetch_add(n, Ordering::Relaxed) + n;
        metrics::gauge!(t::HTTP_BODY_BYTES).set(held as f64);
        true
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let held = self.budget.held.fetch_sub(self.n, Ordering::Relaxed) - self.n;
        metrics::gauge!(t::HTTP_BODY_BYTES).set(held as f64);
    }
}

/// A request body read in full, holding its share of the budget until dropped.
#[derive(Debug)]
pub struct Body {
    pub bytes: Bytes,
    _reserved: Reservation,
}

/// Why a request body was not read.
#[derive(Debug)]
pub enum BodyError {
    /// Over the route's limit (declared or actual); the detail says which.
    TooLarge(String),
    /// Anything else, answered as it says (503 with `Retry-After` for the budget).
    Other(http::Response<RespBody>),
}

fn budget_exhausted(budget: &BodyBudget) -> BodyError {
    count_rejected(Surface::Full, "body_budget");
    let mut resp = text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "busy: request bodies in flight fill the {}-byte budget; retry\n",
            budget.total()
        ),
    );
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        http::HeaderValue::from_static(RETRY_AFTER_SECS),
    );
    BodyError::Other(resp)
}

fn too_large(detail: String) -> BodyError {
    // Only the full listener takes request bodies.
    count_rejected(Surface::Full, "too_large");
    BodyError::TooLarge(detail)
}

/// Reads a request body of at most `limit` bytes within `deadline`, charged to `budget`.
pub async fn read(
    req: Request<Incoming>,
    limit: usize,
    budget: &Arc<BodyBudget>,
    deadline: Duration,
) -> Result<Body, BodyError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut reserved = budget.reservation();
    if let Some(n) = declared {
        if n > limit as u64 {
            return Err(too_large(format!("declared {n} bytes, limit {limit}")));
        }
        // At most `limit`, so it fits in usize.
        if !reserved.grow(usize::try_from(n).unwrap_or(limit)) {
            return Err(budget_exhausted(budget));
        }
    }
    let charged = declared.is_some();
    let read = async {
        let mut body = req.into_body();
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                BodyError::Other(text(
                    StatusCode::BAD_REQUEST,
                    format!("body read failed: {e}\n"),
                ))
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if buf.len() + data.len() > limit {
                return Err(too_large(format!("body over {limit} bytes")));
            }
            if !charged && !reserved.grow(data.len()) {
                return Err(budget_exhausted(budget));
            }
            buf.extend_from_slice(&data);
        }
        Ok(buf.freeze())
    };
    match tokio::time::timeout(deadline, read).await {
        Ok(Ok(bytes)) => Ok(Body {
            bytes,
            _reserved: reserved,
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            count_rejected(Surface::Full, "body_timeout");
            Err(BodyError::Other(text(
                StatusCode::REQUEST_TIMEOUT,
                "body read timed out\n".to_owned(),
            )))
        }
    }
}
