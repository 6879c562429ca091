//! What one agent saw of one check in one round.

use crate::ids::{CheckId, Reason};
use crate::time::UnixMillis;

/// Longest free-text detail carried in an observation, in bytes.
pub const MAX_DETAIL_LEN: usize = 256;

/// One agent's vote about one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// The target answered as configured.
    Healthy,
    /// The target failed, and this agent trusts its own view enough to accuse it.
    Unhealthy,
    /// This agent withholds its vote (its control probes failed, its loop overran, or it has
    /// no result yet). Counts neither way.
    Abstain,
}

impl Status {
    /// Lowercase name, for logs, JSON and metric labels.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Unhealthy => "unhealthy",
            Status::Abstain => "abstain",
        }
    }

    pub(crate) fn to_byte(self) -> u8 {
        match self {
            Status::Healthy => 0,
            Status::Unhealthy => 1,
            Status::Abstain => 2,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Status::Healthy),
            1 => Some(Status::Unhealthy),
            2 => Some(Status::Abstain),
            _ => None,
        }
    }
}

/// The result of probing one check once. An unhealthy target is data, never an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub check: CheckId,
    pub status: Status,
    /// Low-cardinality code: `ok`, `timeout`, `connect_refused`, `status`, `body`, …
    pub reason: Reason,
    pub latency_ms: u32,
    pub observed_at: UnixMillis,
    /// Measured replication lag, for database checks (the RPO a failover would cost).
    pub lag_ms: Option<u64>,
    /// Short human-readable detail (e.g. `status=503`); at most [`MAX_DETAIL_LEN`] bytes.
    /// Longer text is truncated at a character boundary by [`Observation::with_detail`].
    pub detail: String,
}

impl Observation {
    /// An observation with no lag and no detail.
    #[must_use]
    pub fn new(
        check: CheckId,
        status: Status,
        reason: Reason,
        latency_ms: u32,
        observed_at: UnixMillis,
    ) -> Self {
        Self {
            check,
            status,
            reason,
            latency_ms,
            observed_at,
            lag_ms: None,
            detail: String::new(),
        }
    }

    /// Sets the detail, truncated to [`MAX_DETAIL_LEN`] bytes at a character boundary.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        let mut d: String = detail.into();
        if d.len() > MAX_DETAIL_LEN {
            let mut cut = MAX_DETAIL_LEN;
            while !d.is_char_boundary(cut) {
                cut -= 1;
            }
            d.truncate(cut);
        }
        self.detail = d;
        self
    }

    /// Sets the measured replication lag.
    #[must_use]
    pub fn with_lag_ms(mut self, lag_ms: u64) -> Self {
        self.lag_ms = Some(lag_ms);
        self
    }
}
