//! The `/v1/status` document: what an operator needs to see, as JSON. The `status` CLI reads
//! the same types back, so the two cannot drift apart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole status document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub agent: String,
    pub region: String,
    pub cluster: String,
    pub version: String,
    pub config_digest: String,
    pub now_ms: u64,
    pub members_total: usize,
    pub quorum: usize,
    pub ready: bool,
    pub rounds: u64,
    /// Why this agent currently withholds Unhealthy votes, if it does.
    pub abstaining: Option<String>,
    pub controls: Vec<ControlStatus>,
    pub members: Vec<MemberStatus>,
    pub checks: Vec<CheckStatus>,
    /// Ballots rejected since start, by reason.
    pub rejected: BTreeMap<String, u64>,
    pub last_rejection: Option<String>,
    /// Control-plane gates (absent in documents from older agents).
    #[serde(default)]
    pub gates: Vec<GateStatus>,
}

/// One control-plane gate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GateStatus {
    pub id: String,
    pub plane: String,
    /// `live` or `dry-run`.
    pub mode: String,
    /// The DNS state as last written, read back, or (dry-run) simulated.
    pub current: String,
    pub epoch: u64,
    /// False until Route 53 was read (live gates act only after that).
    pub synced: bool,
    /// A read or write is in flight.
    pub busy: bool,
    /// The last evaluation's code: a change reason or a hold reason.
    pub last_evaluation: String,
    pub hold: Option<String>,
    pub hold_since_ms: Option<u64>,
    /// The hold needs an operator (fail open, min_serving, approval).
    pub alert: bool,
    pub frozen_by: Option<String>,
    pub approval: Option<String>,
    /// Changes applied (or simulated) since start.
    pub changes: u64,
    pub last_change_ms: Option<u64>,
    pub last_outcome: Option<String>,
    /// After a failed Route 53 call: no new attempt before this time.
    pub retry_at_ms: Option<u64>,
    pub now_ms: u64,
    /// The drill in force, else the last finished one (absent from older agents).
    #[serde(default)]
    pub drill: Option<DrillStatus>,
}

/// A game-day drill of a gate (`quorumgate drill`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DrillStatus {
    /// The drill command's seq.
    pub seq: u64,
    pub by: String,
    pub started_at_ms: u64,
    pub ends_at_ms: u64,
    pub dry_run: bool,
    /// `running`, `ended` (failing back) or `finished`.
    pub state: String,
    pub ended_at_ms: Option<u64>,
    /// `elapsed`, `aborted` or `abort_check`.
    pub end_cause: Option<String>,
    /// Finished: the gate was back at its primary.
    pub back_at_primary: Option<bool>,
    /// Finished and judged by this agent: `pass` or `fail`.
    pub result: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlStatus {
    pub id: String,
    pub healthy: bool,
    pub reason: String,
    pub consecutive_failures: u32,
    pub observed_at_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberStatus {
    pub id: String,
    pub region: String,
    pub url: String,
    pub is_self: bool,
    /// Latest accepted ballot from this member.
    pub ballot: Option<BallotSummary>,
    /// Result of our last push to this member (peers only).
    pub last_push: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BallotSummary {
    pub seq: u64,
    pub issued_at_ms: u64,
    pub expires_at_ms: u64,
    pub live: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckStatus {
    pub id: String,
    pub kind: String,
    /// `healthy`, `unhealthy` or `undecided` (answered 503 `UNDECIDED`): what
    /// `/v1/health/{check}` answers.
    pub decision: String,
    /// Where the decision comes from: `decided` (a quorum verdict of this run), `restored`
    /// (persisted by an earlier run, not yet confirmed), `undecided` (none known since a
    /// restart), or `initial` (a brand-new install's configured state). Empty from older agents.
    #[serde(default)]
    pub basis: String,
    pub since_ms: u64,
    pub transitions: u64,
    pub pending_rounds: u32,
    pub tally: Option<TallyStatus>,
    /// Each member's latest observation of this check, by member id.
    pub observations: BTreeMap<String, ObservationStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TallyStatus {
    pub outcome: String,
    pub healthy: usize,
    pub unhealthy: usize,
    pub abstain: usize,
    pub at_ms: u64,
    /// Base64 of the portable certificate (`quorumgate verify --cert`), when decided.
    pub certificate: Option<String>,
    pub certificate_sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObservationStatus {
    pub status: String,
    pub reason: String,
    pub latency_ms: u32,
    pub observed_at_ms: u64,
    pub lag_ms: Option<u64>,
    pub detail: String,
    /// Whether the ballot carrying it still counts.
    pub live: bool,
}
