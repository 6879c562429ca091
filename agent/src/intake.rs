//! Ballots from outside (`POST /v1/ballots`, pulls): decoded and their signatures verified
//! before the node lock is taken, and every refusal counted, none of it under that lock. The
//! lock is held only for the book's insert ([`crate::node::Node::admit`]): a flood of large or
//! forged ballots costs CPU, never the `/v1/health` answers that wait on the lock.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use quorum::{Prechecked, Receipt, Rejection};

use crate::telemetry as t;

/// Refused ballots by reason, and the last one (for `/v1/status`). Shared.
#[derive(Clone, Debug, Default)]
pub struct Rejections {
    inner: Arc<Mutex<RejectLog>>,
}

#[derive(Debug, Default)]
struct RejectLog {
    counts: BTreeMap<&'static str, u64>,
    last: Option<String>,
}

impl Rejections {
    /// Counts one refused ballot: by the book, or before parsing (an oversized HTTP body).
    pub fn count(&self, reason: &'static str, detail: &str) {
        metrics::counter!(t::BALLOTS_REJECTED, "reason" => reason).increment(1);
        tracing::info!(reason, %detail, "ballot rejected");
        let mut log = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        *log.counts.entry(reason).or_default() += 1;
        log.last = Some(format!("{reason}: {detail}"));
    }

    /// Counts by reason, and the last refusal.
    #[must_use]
    pub fn snapshot(&self) -> (BTreeMap<String, u64>, Option<String>) {
        let log = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let counts = log
            .counts
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect();
        (counts, log.last.clone())
    }
}

/// The lock-free half of receiving a ballot. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Intake {
    receipt: Receipt,
    rejections: Rejections,
}

impl Intake {
    #[must_use]
    pub fn new(receipt: Receipt, rejections: Rejections) -> Self {
        Self {
            receipt,
            rejections,
        }
    }

    /// Size, decoding, issuer, signature and digest of a ballot from `source`; a refusal is
    /// counted. Never panics, whatever `wire` holds.
    pub fn precheck(&self, wire: &[u8], source: &str) -> Result<Prechecked, Rejection> {
        self.receipt.precheck(wire).inspect_err(|r| {
            self.rejections
                .count(r.reason(), &format!("{r} (from {source})"));
        })
    }

    /// Counts a ballot refused before parsing (e.g. an oversized HTTP body).
    pub fn reject_transport(&self, reason: &'static str, detail: &str) {
        self.rejections.count(reason, detail);
    }
}
