//! Game-day drills (`quorumgate drill GATE --duration 10m`): a tested, measured failover and
//! failback of a control-plane failover gate, modelled on Route 53 ARC's practice runs.
//!
//! ```text
//! drill command ──signed Drill──► every agent: precheck (secondary Healthy by quorum, not frozen,
//!   │                             no drill, at the primary, 2 changes of velocity left),
//!   │                             audit, then vote the primary's check Unhealthy (reason drill)
//!   │                                 │ quorum → hysteresis → gate rules → fence → audit, as real
//!   │                                 ▼
//!   │                             drill ends (time, --abort, or a guard check Unhealthy)
//!   │                                 │ votes back to reality → failback on the drill's authority
//!   │                                 ▼
//!   │                             finished: this agent's verdict (drill_result, gauge)
//!   ├─ watches /v1/status and DNS (a resolver, or the Route 53 API)
//!   └─ collects GET /v1/audit from every agent ─► report: JSON, Markdown, SVG; pass/fail
//! ```
//!
//! # Layout
//! - [`board`]: which checks this agent votes down for a drill (driver writes, node reads).
//! - [`agent`]: the gate driver's drill helpers: guards, records, status, this agent's verdict.
//! - [`timeline`]: one agent's phases of one drill, a pure function of its audit records.
//! - [`report`]: the cluster's phases, RTO/RPO and the verdict against the objectives (pure).
//! - [`render`]: the report as Markdown and an SVG timeline.
//! - [`observe`]: watching DNS (hickory-resolver, or ListResourceRecordSets).
//! - [`log`]: reading recent audit records while the log grows (`GET /v1/audit`).
//! - [`preflight`]: why a drill must not start, by every agent's status.
//! - [`command`]: the `quorumgate drill` subcommand.

pub mod agent;
pub mod board;
pub mod command;
mod criteria;
pub mod log;
pub mod observe;
pub mod preflight;
pub mod render;
pub mod report;
pub mod timeline;

pub use board::{DrillBoard, DrillVote};

/// `quorumgate_drill_result{gate,result}`: 1 for the last finished drill's result label
/// (`pass` or `fail`), 0 for the other.
pub const DRILL_RESULT: &str = "quorumgate_drill_result";
/// `quorumgate_drill_active{gate}`: 1 while a drill of the gate is in force.
pub const DRILL_ACTIVE: &str = "quorumgate_drill_active";

/// How far before a drill's start its records are read (clock differences between agents).
pub const LOOKBACK_MS: u64 = 60_000;

/// Describes the drill metrics (called by `telemetry::install_metrics`).
pub fn describe_metrics() {
    metrics::describe_gauge!(
        DRILL_RESULT,
        "The last finished drill of a gate, as this agent judged it: 1 for its result label (pass, fail), 0 for the other"
    );
    metrics::describe_gauge!(
        DRILL_ACTIVE,
        "1 while a game-day drill of the gate is in force"
    );
}
