//! The gate driver's side of game-day drills (see [`crate::drill`]): ending a drill on time
//! or on a guard check, starting and stopping its votes, finishing it and judging it, and
//! whether a drill command may start now.

use std::collections::BTreeMap;
use std::sync::Arc;

use quorum::gate::{Drill, DrillEnd, DrillRefusal, Inputs};
use quorum::operator::{Action, ActionError, CommandRejection, OperatorCommand};
use quorum::{GateId, UnixMillis};

use super::{GateDriver, Slot};
use crate::drill::agent::{self as drills, FinishedRecord};
use crate::telemetry as t;

impl GateDriver {
    /// Ends the gate's drill when its time is over or a guard check is decided Unhealthy.
    pub(super) fn drill_tick(&self, slot: &mut Slot, inputs: &Inputs, now: UnixMillis) {
        if slot.state.drill().is_none() {
            return;
        }
        let abort = drills::guards(&slot.cfg).into_iter().find(|c| {
            inputs
                .get(c)
                .is_some_and(|i| i.state == quorum::State::Unhealthy)
        });
        if let Some(end) = slot.state.drill_tick(now, abort) {
            self.drill_ended(slot, &end, now);
        }
    }

    /// A drill just started (or was restored): the node votes its primary down from now on.
    pub(super) fn drill_started(&self, slot: &Slot, d: &Drill) {
        let gate = slot.id().clone();
        if let Some(check) = drills::primary_check(&slot.cfg) {
            self.board.set(
                check,
                crate::drill::DrillVote {
                    gate: gate.clone(),
                    by: d.by.clone(),
                    seq: d.seq,
                    until: d.ends_at,
                },
            );
        }
        metrics::gauge!(crate::drill::DRILL_ACTIVE, "gate" => gate.to_string()).set(1.0);
    }

    /// Audits a drill's end and stops its votes.
    pub(super) fn drill_ended(&self, slot: &mut Slot, end: &DrillEnd, now: UnixMillis) {
        let gate = slot.id().clone();
        let seq = slot.state.drill().map_or(0, |d| d.seq);
        if let Some(check) = drills::primary_check(&slot.cfg) {
            self.board.clear(&check, &gate);
        }
        if let Err(e) = self.audit(now, "drill_end", drills::end_body(&gate, seq, end)) {
            metrics::counter!(t::AUDIT_ERRORS).increment(1);
            tracing::error!(%gate, error = %e, "drill end not persisted");
        }
        tracing::warn!(%gate, seq, cause = end.cause.code(), "drill ended: {}; the gate returns to the primary", end.cause);
        slot.last_outcome = Some(format!("drill {seq} ended: {}", end.cause));
    }

    /// Finishes an ended drill once the gate is back at the primary (or its grace is over):
    /// this agent judges it from its own audit log, off the round's path.
    pub(super) fn drill_finish(self: &Arc<Self>, slot: &mut Slot, now: UnixMillis) {
        let Some(done) = slot.state.finish_drill(&slot.cfg.spec, now) else {
            return;
        };
        let gate = slot.id().clone();
        metrics::gauge!(crate::drill::DRILL_ACTIVE, "gate" => gate.to_string()).set(0.0);
        tracing::warn!(%gate, seq = done.drill.seq, back_at_primary = done.back_at_primary, "drill finished");
        if done.drill.dry_run && slot.live() {
            // The simulated DNS ends with the drill: read what Route 53 really holds.
            slot.synced_at = None;
        }
        slot.last_drill = Some(FinishedRecord::new(&done));
        let path = self.audit.as_ref().map(|a| {
            a.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .path()
                .to_owned()
        });
        let (me, cfg) = (Arc::clone(self), slot.cfg.clone());
        tokio::spawn(async move {
            let agent = me.agent.clone();
            let judged = tokio::task::spawn_blocking(move || {
                path.map(|p| drills::judge(&p, &agent, &cfg, &done))
            })
            .await;
            let verdict = match judged {
                Ok(Some(Ok(v))) => v,
                Ok(Some(Err(e))) => {
                    tracing::error!(%gate, error = %e, "cannot judge the drill from the audit log");
                    return;
                }
                Ok(None) | Err(_) => return,
            };
            me.drill_judged(&gate, verdict);
        });
    }

    /// Records this agent's verdict on a finished drill: audit, gauge, status.
    fn drill_judged(&self, gate: &GateId, verdict: drills::Verdict) {
        let now = self.clock.now();
        if let Err(e) = self.audit(now, "drill_result", verdict.body(gate)) {
            metrics::counter!(t::AUDIT_ERRORS).increment(1);
            tracing::error!(%gate, error = %e, "drill result not persisted");
        }
        drills::set_result_gauge(gate, Some(verdict.result()));
        tracing::warn!(%gate, seq = verdict.seq, result = verdict.result(), "drill judged: {}", verdict.summary());
        let mut inner = self.lock();
        if let Some(last) = inner
            .slots
            .get_mut(gate)
            .and_then(|s| s.last_drill.as_mut())
            .filter(|l| l.seq == verdict.seq)
        {
            last.result = Some(verdict.result().to_owned());
        }
    }
}

/// Whether a drill may start (or be aborted) now, by this agent's view of the gate. Other
/// commands pass.
pub(super) fn drill_check(
    slots: &BTreeMap<GateId, Slot>,
    c: &OperatorCommand,
    now: UnixMillis,
) -> Result<(), CommandRejection> {
    let refused = |why| CommandRejection::DrillRefused {
        gate: c.gate.clone(),
        why,
    };
    let Some(slot) = slots.get(&c.gate) else {
        return Ok(()); // refused as unknown_gate by the caller
    };
    if slot.plane == config::Plane::Data {
        let why = match c.action {
            Action::Drill { dry_run: true, .. } => Some(ActionError::DataPlaneDryRun),
            Action::Drill { .. } | Action::DrillAbort => None,
            _ => Some(ActionError::DataPlane {
                action: c.action.as_str(),
            }),
        };
        if let Some(why) = why {
            return Err(CommandRejection::InvalidAction {
                gate: c.gate.clone(),
                why,
            });
        }
    }
    match c.action {
        Action::Drill { .. } => {
            if slot.busy {
                return Err(refused(DrillRefusal::ChangeInFlight));
            }
            if slot.live() && slot.synced_at.is_none() {
                return Err(refused(DrillRefusal::StateUnknown));
            }
            let empty = Inputs::new();
            let inputs = slot.inputs.as_ref().unwrap_or(&empty);
            quorum::gate::drill::precheck(&slot.cfg.spec, &slot.state, inputs, now).map_err(refused)
        }
        Action::DrillAbort => {
            quorum::gate::drill::precheck_abort(&slot.state, now).map_err(refused)
        }
        _ => Ok(()),
    }
}
