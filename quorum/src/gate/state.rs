//! A gate's own memory: what DNS says now, when it last changed, and what operators asked.
//!
//! The round is: [`evaluate`](super::evaluate) (pure) → the caller writes the planned change →
//! [`GateState::commit`] once the write succeeded → [`GateState::observe`] with the same inputs
//! and evaluation. Operator commands arrive in between through `freeze`, `unfreeze`,
//! `approve` and `set_override` (see `operator::VerifiedCommand::apply_to`).

use std::collections::VecDeque;

use super::desired::DesiredState;
use super::drill::{Drill, DrillEnd, DrillEndCause, FinishedDrill};
use super::evaluate::{Authority, Evaluation, HoldReason, PlannedChange};
use super::inputs::Inputs;
use super::spec::{GateKind, GateSpec, StateError};
use crate::decision::State;
use crate::ids::{CheckId, GateId, OperatorId, TargetId};
use crate::time::UnixMillis;

/// An operator's permission for a move the gate will not make on its own: a failover whose
/// RPO is over the limit or unknown, or a failback when `auto_failback` is off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approval {
    /// The target that may become active.
    pub to: TargetId,
    pub by: OperatorId,
    pub seq: u64,
    /// An approval is for the situation at hand, not for days later.
    pub expires_at: UnixMillis,
}

/// An operator's break-glass desired state, waiting to be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Override {
    pub desired: DesiredState,
    /// Also allow traffic to targets without quorum-healthy evidence. The change then carries
    /// whatever certificates exist; the signed command is its justification.
    pub force: bool,
    pub by: OperatorId,
    pub seq: u64,
    /// A pending override not written by then is dropped (the gate stays frozen).
    pub expires_at: UnixMillis,
}

/// Who froze the gate, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frozen {
    pub by: OperatorId,
    pub at: UnixMillis,
}

/// The standby's replication lag as last seen while the active target was still Healthy by
/// quorum: once the active is lost this value stops moving, and it is the RPO of failing over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LagMemory {
    pub target: TargetId,
    /// `None`: the standby's lag was unknown at that moment.
    pub lag_ms: Option<u64>,
    /// When `lag_ms` was measured (a known lag is kept through rounds without one for at most
    /// `max_rpo_ms`).
    pub at: UnixMillis,
}

/// Why a change cannot be committed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    #[error("the change is for gate {0}")]
    WrongGate(GateId),
    #[error("the change's target state does not fit the gate: {0}")]
    Shape(#[from] StateError),
    #[error("the change starts from {planned_from}, but the gate is at {current}")]
    Stale {
        planned_from: DesiredState,
        current: DesiredState,
    },
}

/// One gate's state. See the module docs for the order of calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GateState {
    current: DesiredState,
    /// Times of the latest changes, oldest first; at most `max_changes` are kept.
    changes: VecDeque<UnixMillis>,
    frozen: Option<Frozen>,
    approval: Option<Approval>,
    pending_override: Option<Override>,
    standby_lag: Option<LagMemory>,
    last_hold: Option<(HoldReason, UnixMillis)>,
    /// A game-day drill, from its start until it is finished (see [`super::drill`]).
    drill: Option<Drill>,
}

impl GateState {
    /// A gate whose DNS is in its normal state (primary active, normal weights).
    #[must_use]
    pub fn new(spec: &GateSpec) -> Self {
        Self::from_parts(spec.normal_state())
    }

    /// A gate whose DNS was read back as `current` (e.g. from the fence and the records).
    pub fn with_current(spec: &GateSpec, current: DesiredState) -> Result<Self, StateError> {
        spec.check_shape(&current)?;
        Ok(Self::from_parts(current))
    }

    fn from_parts(current: DesiredState) -> Self {
        Self {
            current,
            changes: VecDeque::new(),
            frozen: None,
            approval: None,
            pending_override: None,
            standby_lag: None,
            last_hold: None,
            drill: None,
        }
    }

    /// The DNS state as last written (or confirmed).
    #[must_use]
    pub fn current(&self) -> &DesiredState {
        &self.current
    }
    /// Times of the latest changes, oldest first (enough of them for the velocity rule).
    pub fn changes(&self) -> impl Iterator<Item = UnixMillis> + '_ {
        self.changes.iter().copied()
    }
    #[must_use]
    pub fn last_change(&self) -> Option<UnixMillis> {
        self.changes.back().copied()
    }
    #[must_use]
    pub fn frozen(&self) -> Option<&Frozen> {
        self.frozen.as_ref()
    }
    #[must_use]
    pub fn approval(&self) -> Option<&Approval> {
        self.approval.as_ref()
    }
    #[must_use]
    pub fn pending_override(&self) -> Option<&Override> {
        self.pending_override.as_ref()
    }
    #[must_use]
    pub fn standby_lag(&self) -> Option<&LagMemory> {
        self.standby_lag.as_ref()
    }
    /// The drill in force: running, or ended and not yet finished.
    #[must_use]
    pub fn drill(&self) -> Option<&Drill> {
        self.drill.as_ref()
    }
    /// Whether a dry-run drill is in force: every automatic change is then a dry run.
    #[must_use]
    pub fn drill_dry_run(&self) -> bool {
        self.drill.as_ref().is_some_and(|d| d.dry_run)
    }
    /// The current hold and since when it has lasted (for status and alerts).
    #[must_use]
    pub fn last_hold(&self) -> Option<&(HoldReason, UnixMillis)> {
        self.last_hold.as_ref()
    }

    /// Replaces the current DNS state with what was read back from Route 53 (after a lost
    /// race, a stale write, or at start-up). Everything else (freeze, approval, velocity
    /// history) stays: the gate's rules still count changes made by other writers.
    pub fn resync(&mut self, spec: &GateSpec, current: DesiredState) -> Result<(), StateError> {
        spec.check_shape(&current)?;
        if active(&self.current) != active(&current) {
            self.standby_lag = None;
        }
        self.current = current;
        Ok(())
    }

    /// Restores the velocity history after a restart (times of past changes, e.g. from the
    /// audit log), so a restarting agent cannot exceed `max_changes` per window.
    pub fn restore_changes(
        &mut self,
        spec: &GateSpec,
        times: impl IntoIterator<Item = UnixMillis>,
    ) {
        let mut all: Vec<UnixMillis> = self.changes.iter().copied().chain(times).collect();
        all.sort_unstable();
        all.dedup();
        let keep = usize::try_from(spec.policy().max_changes).unwrap_or(usize::MAX);
        let skip = all.len().saturating_sub(keep);
        self.changes = all.into_iter().skip(skip).collect();
    }

    /// Replaces the velocity history (a live gate's, kept by fence epoch by its driver).
    /// Two changes may share a time (learnt by one read): both count.
    pub fn set_changes(&mut self, spec: &GateSpec, times: impl IntoIterator<Item = UnixMillis>) {
        let mut all: Vec<UnixMillis> = times.into_iter().collect();
        all.sort_unstable();
        let keep = usize::try_from(spec.policy().max_changes).unwrap_or(usize::MAX);
        let skip = all.len().saturating_sub(keep);
        self.changes = all.into_iter().skip(skip).collect();
    }

    /// Stops automatic changes. A pending override is still written.
    pub fn freeze(&mut self, by: OperatorId, now: UnixMillis) {
        self.frozen = Some(Frozen { by, at: now });
    }

    /// Returns the gate to automatic control: clears the freeze and any pending override.
    pub fn unfreeze(&mut self) {
        self.frozen = None;
        self.pending_override = None;
    }

    /// Records an approval (replacing an earlier one).
    pub fn approve(&mut self, approval: Approval) {
        self.approval = Some(approval);
    }

    /// Records a break-glass override and freezes the gate, so that once it is written
    /// nothing automatic undoes it until an operator unfreezes.
    pub fn set_override(&mut self, o: Override, now: UnixMillis) {
        self.freeze(o.by.clone(), now);
        self.pending_override = Some(o);
    }

    /// Starts a drill (a verified command; [`super::drill::precheck`] decides whether it may).
    pub fn start_drill(&mut self, drill: Drill) {
        self.drill = Some(drill);
    }

    /// Ends the drill at `at` for `cause`, unless it has already ended. Returns the end.
    pub fn end_drill(&mut self, at: UnixMillis, cause: DrillEndCause) -> Option<DrillEnd> {
        let d = self.drill.as_mut().filter(|d| d.ended.is_none())?;
        let end = DrillEnd { at, cause };
        d.ended = Some(end.clone());
        Some(end)
    }

    /// Ends a running drill whose time is over (at its scheduled end), or at once when
    /// `abort` names a guarding check decided Unhealthy. Returns the end it just recorded.
    pub fn drill_tick(&mut self, now: UnixMillis, abort: Option<CheckId>) -> Option<DrillEnd> {
        let d = self.drill.as_ref().filter(|d| d.ended.is_none())?;
        let ends_at = d.ends_at;
        match abort {
            Some(check) if now < ends_at => self.end_drill(now, DrillEndCause::AbortCheck(check)),
            _ if now >= ends_at => self.end_drill(ends_at, DrillEndCause::Elapsed),
            _ => None,
        }
    }

    /// Removes an ended drill once the gate is back at its primary, or once its failback
    /// grace is over. Call only when no write of the gate is in flight.
    pub fn finish_drill(&mut self, spec: &GateSpec, now: UnixMillis) -> Option<FinishedDrill> {
        let d = self.drill.as_ref().filter(|d| d.ended.is_some())?;
        let back_at_primary = self.current == spec.normal_state();
        if !back_at_primary && now <= d.failback_until() {
            return None;
        }
        self.drill.take().map(|drill| FinishedDrill {
            drill,
            back_at_primary,
        })
    }

    /// Records a change the caller has written (or, in dry-run, would have written).
    pub fn commit(
        &mut self,
        spec: &GateSpec,
        change: &PlannedChange,
        now: UnixMillis,
    ) -> Result<(), CommitError> {
        if change.gate != *spec.id() {
            return Err(CommitError::WrongGate(change.gate.clone()));
        }
        spec.check_shape(&change.to)?;
        if change.from != self.current {
            return Err(CommitError::Stale {
                planned_from: change.from.clone(),
                current: self.current.clone(),
            });
        }
        let active_changed = active(&change.from) != active(&change.to);
        self.current = change.to.clone();
        self.changes.push_back(now);
        let keep = usize::try_from(spec.policy().max_changes).unwrap_or(usize::MAX);
        while self.changes.len() > keep {
            self.changes.pop_front();
        }
        if matches!(change.authority, Authority::Override { .. }) {
            self.pending_override = None;
        }
        // An approval is spent once its target is active, whoever made it so.
        if self
            .approval
            .as_ref()
            .is_some_and(|a| active(&self.current) == Some(&a.to))
        {
            self.approval = None;
        }
        if active_changed {
            self.standby_lag = None;
        }
        Ok(())
    }

    /// Ends a round: remembers the standby's lag while the active target is Healthy by
    /// quorum, records the hold (and since when), and drops expired operator requests.
    pub fn observe(
        &mut self,
        spec: &GateSpec,
        inputs: &Inputs,
        eval: &Evaluation,
        now: UnixMillis,
    ) {
        self.remember_lag(spec, inputs, now);
        self.last_hold = match (eval, self.last_hold.take()) {
            (Evaluation::Hold(r), Some((prev, since))) if prev.code() == r.code() => {
                Some((r.clone(), since))
            }
            (Evaluation::Hold(r), _) => Some((r.clone(), now)),
            (Evaluation::Change(_), _) => None,
        };
        if self.approval.as_ref().is_some_and(|a| now > a.expires_at) {
            self.approval = None;
        }
        if self
            .pending_override
            .as_ref()
            .is_some_and(|o| now > o.expires_at)
        {
            self.pending_override = None;
        }
    }

    fn remember_lag(&mut self, spec: &GateSpec, inputs: &Inputs, now: UnixMillis) {
        let GateKind::Failover { primary, secondary } = spec.kind() else {
            return;
        };
        if spec.policy().max_rpo_ms.is_none() {
            return;
        }
        let (act, standby) = match active(&self.current) {
            Some(a) if *a == secondary.id => (secondary, primary),
            _ => (primary, secondary),
        };
        let active_healthy = inputs
            .get(&act.check)
            .and_then(|i| i.evidence(&act.check, State::Healthy))
            .is_some();
        if active_healthy {
            let lag_ms = standby
                .lag_check
                .as_ref()
                .and_then(|c| inputs.get(c))
                .and_then(|i| i.lag_ms);
            // One round without a quorum on the lag (a probe timed out, a ballot lacked it)
            // must not make a known RPO unknown: a lag measured within the last `max_rpo_ms`
            // still vouches for it. Older than that, it no longer covers what was written since.
            let max_rpo_ms = spec.policy().max_rpo_ms.unwrap_or(0);
            let recent = self.standby_lag.as_ref().is_some_and(|m| {
                m.target == standby.id && m.lag_ms.is_some() && now.since(m.at) <= max_rpo_ms
            });
            if lag_ms.is_some() || !recent {
                self.standby_lag = Some(LagMemory {
                    target: standby.id.clone(),
                    lag_ms,
                    at: now,
                });
            }
        }
    }
}

/// The active target of a failover state.
pub(crate) fn active(state: &DesiredState) -> Option<&TargetId> {
    match state {
        DesiredState::Failover { active } => Some(active),
        DesiredState::Weighted { .. } => None,
    }
}
