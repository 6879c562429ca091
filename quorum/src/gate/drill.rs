//! Game-day drills of a failover gate: an operator-signed practice failover and failback.
//!
//! While a drill runs, the agents vote the gate's primary check Unhealthy with reason `drill`
//! (the agent's job), so the failover goes through the quorum, the hysteresis, every safety
//! rule, the fence and the audit log exactly as a real one would. This module is the gate's
//! side of it, kept in [`GateState`]:
//!
//! - [`Drill`]: who started it, when it ends (or ended, and why), whether it is a dry run.
//! - [`precheck`]: a drill starts only from a pair at rest — at its primary, both targets
//!   Healthy by quorum, not frozen (nor overridden), no other drill, and room in the
//!   velocity window for the failover *and* the failback.
//! - The failback needs no operator approval: the signed drill command is that approval.
//!   [`evaluate`](super::evaluate) gives a failback to the primary
//!   [`Authority::Drill`](super::Authority::Drill) once the drill is over and for
//!   [`DRILL_FAILBACK_GRACE_MS`] after — never before its end, never to another target, never
//!   for a failover.
//! - A dry-run drill puts every automatic change of the gate in dry-run mode until the drill
//!   is finished (the simulated DNS is back at the primary, or the grace ran out).
//!
//! Order per round (the agent's gate driver): [`GateState::drill_tick`] (ends the drill at its
//! time, or at once when an abort check is Unhealthy) → `evaluate` → commit → `observe` →
//! [`GateState::finish_drill`] (once ended and back at the primary, or after the grace; only
//! when no write is in flight, so a failover still landing is followed by its failback).

use super::desired::DesiredState;
use super::inputs::Inputs;
use super::spec::{GateKind, GateSpec};
use super::state::GateState;
use crate::decision::State;
use crate::ids::{CheckId, OperatorId, TargetId};
use crate::time::UnixMillis;

/// How long after a drill's end its failback still needs no operator approval. Long enough
/// for `rise_after`, `wait_period` and a slow write; short enough that the drill cannot
/// authorise a later, real failback.
pub const DRILL_FAILBACK_GRACE_MS: u64 = 300_000;

/// Longest drill a command may ask for (the cluster's `operator_max_valid_for` bounds it too).
pub const MAX_DRILL_MS: u64 = 24 * 3_600_000;

/// A drill of one gate, from its signed command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drill {
    pub by: OperatorId,
    /// The drill command's sequence number (names the drill in audit records and reports).
    pub seq: u64,
    /// The command's `issued_at`: the same instant on every agent.
    pub started_at: UnixMillis,
    /// `started_at` + the drill's duration.
    pub ends_at: UnixMillis,
    /// Evaluate and audit, write nothing.
    pub dry_run: bool,
    pub ended: Option<DrillEnd>,
}

impl Drill {
    /// Whether the primary is to be treated as failed at `now`.
    #[must_use]
    pub fn running(&self, now: UnixMillis) -> bool {
        self.ended.is_none() && now < self.ends_at
    }

    /// When the drill stopped, or is scheduled to stop.
    #[must_use]
    pub fn end_time(&self) -> UnixMillis {
        self.ended.as_ref().map_or(self.ends_at, |e| e.at)
    }

    /// The last instant its failback needs no operator approval.
    #[must_use]
    pub fn failback_until(&self) -> UnixMillis {
        self.end_time().plus(DRILL_FAILBACK_GRACE_MS)
    }
}

/// When and why a drill ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrillEnd {
    pub at: UnixMillis,
    pub cause: DrillEndCause,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DrillEndCause {
    /// Its duration is over.
    Elapsed,
    /// An operator's `drill --abort` command.
    Aborted { by: OperatorId, seq: u64 },
    /// A check that guards the drill was decided Unhealthy (the secondary's own check, or the
    /// gate's configured `drill.abort_check`).
    AbortCheck(CheckId),
}

impl DrillEndCause {
    /// Stable label for audit records, status and reports.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            DrillEndCause::Elapsed => "elapsed",
            DrillEndCause::Aborted { .. } => "aborted",
            DrillEndCause::AbortCheck(_) => "abort_check",
        }
    }
}

impl std::fmt::Display for DrillEndCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DrillEndCause::Elapsed => f.write_str("its duration is over"),
            DrillEndCause::Aborted { by, seq } => write!(f, "aborted by {by} (seq {seq})"),
            DrillEndCause::AbortCheck(c) => write!(f, "abort check {c} was decided Unhealthy"),
        }
    }
}

/// A finished drill: removed from the state, with how it left the gate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishedDrill {
    pub drill: Drill,
    /// The gate is back at its primary (false: the grace ran out elsewhere).
    pub back_at_primary: bool,
}

/// Why a drill may not start (or an abort has nothing to abort).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DrillRefusal {
    #[error("drills apply to failover gates only")]
    NotFailover,
    #[error("drill {seq} is still in force")]
    AlreadyRunning { seq: u64 },
    #[error("no drill is running")]
    NotRunning,
    #[error("the gate is frozen")]
    Frozen,
    #[error("the gate is at {0}, not at its primary")]
    NotAtPrimary(DesiredState),
    #[error("target {target} (check {check}) is not Healthy by quorum")]
    TargetNotHealthy { target: TargetId, check: CheckId },
    #[error("{remaining} change(s) left in the velocity window; a drill needs 2 (failover and failback)")]
    VelocityBudget { remaining: u32 },
    /// The caller does not know the gate's DNS yet (e.g. Route 53 not read since start-up).
    #[error("the gate's DNS state is not known yet")]
    StateUnknown,
    /// The caller is writing the gate's records right now.
    #[error("a change of the gate is in flight")]
    ChangeInFlight,
}

impl DrillRefusal {
    /// Stable label for metrics, the CLI and reports.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            DrillRefusal::NotFailover => "not_failover",
            DrillRefusal::AlreadyRunning { .. } => "already_running",
            DrillRefusal::NotRunning => "not_running",
            DrillRefusal::Frozen => "frozen",
            DrillRefusal::NotAtPrimary(_) => "not_at_primary",
            DrillRefusal::TargetNotHealthy { .. } => "target_not_healthy",
            DrillRefusal::VelocityBudget { .. } => "velocity_budget",
            DrillRefusal::StateUnknown => "state_unknown",
            DrillRefusal::ChangeInFlight => "change_in_flight",
        }
    }
}

/// Whether a drill of `spec` may start at `now`: see the module docs. The secondary is
/// checked before the primary, so a down standby is what the refusal names.
pub fn precheck(
    spec: &GateSpec,
    state: &GateState,
    inputs: &Inputs,
    now: UnixMillis,
) -> Result<(), DrillRefusal> {
    let GateKind::Failover { primary, secondary } = spec.kind() else {
        return Err(DrillRefusal::NotFailover);
    };
    if let Some(d) = state.drill() {
        return Err(DrillRefusal::AlreadyRunning { seq: d.seq });
    }
    // An override always freezes the gate, so this also refuses while one is pending.
    if state.frozen().is_some() {
        return Err(DrillRefusal::Frozen);
    }
    if *state.current() != spec.normal_state() {
        return Err(DrillRefusal::NotAtPrimary(state.current().clone()));
    }
    for t in [secondary, primary] {
        let healthy = inputs
            .get(&t.check)
            .and_then(|i| i.evidence(&t.check, State::Healthy))
            .is_some();
        if !healthy {
            return Err(DrillRefusal::TargetNotHealthy {
                target: t.id.clone(),
                check: t.check.clone(),
            });
        }
    }
    let policy = spec.policy();
    let recent = state
        .changes()
        .filter(|t| now.since(*t) < policy.window_ms)
        .count();
    let remaining = policy
        .max_changes
        .saturating_sub(u32::try_from(recent).unwrap_or(u32::MAX));
    if remaining < 2 {
        return Err(DrillRefusal::VelocityBudget { remaining });
    }
    Ok(())
}

/// Whether a `drill --abort` has a drill to end at `now`.
pub fn precheck_abort(state: &GateState, now: UnixMillis) -> Result<(), DrillRefusal> {
    match state.drill() {
        Some(d) if d.running(now) => Ok(()),
        _ => Err(DrillRefusal::NotRunning),
    }
}
