//! Operator commands and drills in a gate machine.

use super::{Action, CommandFailure, Failure, GateMachine, Plane, Token};
use crate::gate::drill::{precheck, precheck_abort};
use crate::gate::{DrillEndCause, DrillRefusal, Inputs};
use crate::operator::{Action as OpAction, ActionError, CommandRejection, OperatorCommand};
use crate::time::UnixMillis;
use crate::{State, VerifiedCommand};

impl GateMachine {
    // --- operator commands -----------------------------------------------------------------

    /// Whether `c` may be applied now by this agent's view of the gate (drills need the gate
    /// at rest and known; data-plane gates take drills only). Other commands pass.
    pub fn check_command(
        &self,
        c: &OperatorCommand,
        now: UnixMillis,
    ) -> Result<(), CommandRejection> {
        let refused = |why| CommandRejection::DrillRefused {
            gate: c.gate.clone(),
            why,
        };
        if self.cfg.plane == Plane::Data {
            let why = match c.action {
                OpAction::Drill { dry_run: true, .. } => Some(ActionError::DataPlaneDryRun),
                OpAction::Drill { .. } | OpAction::DrillAbort => None,
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
            OpAction::Drill { .. } => {
                if self.busy() || self.write_pending() {
                    return Err(refused(DrillRefusal::ChangeInFlight));
                }
                if !self.synced() {
                    return Err(refused(DrillRefusal::StateUnknown));
                }
                let empty = Inputs::new();
                let inputs = self.inputs.as_ref().unwrap_or(&empty);
                precheck(&self.cfg.spec, &self.state, inputs, now).map_err(refused)
            }
            OpAction::DrillAbort => precheck_abort(&self.state, now).map_err(refused),
            _ => Ok(()),
        }
    }

    pub(super) fn command_appended(
        &mut self,
        token: Token,
        command: VerifiedCommand,
        at: UnixMillis,
        result: Result<(), Failure>,
    ) {
        if let Err(e) = result {
            self.push(Action::CommandDone {
                token,
                result: Err(CommandFailure::Audit(e)),
            });
            return;
        }
        let result = self
            .apply_command(&command, at)
            .map_err(CommandFailure::from);
        self.push(Action::CommandDone { token, result });
    }

    /// Applies an audited command (also at start-up, from the log).
    pub(super) fn apply_command(
        &mut self,
        v: &VerifiedCommand,
        at: UnixMillis,
    ) -> Result<(), CommandRejection> {
        v.apply_to(&self.cfg.spec, &mut self.state, at)?;
        match &v.command.action {
            OpAction::Drill { .. } => {
                if let Some(d) = self.state.drill().cloned() {
                    self.push(Action::DrillStarted(d));
                }
            }
            OpAction::DrillAbort => {
                let drill = self.state.drill();
                let seq = drill.map_or(0, |d| d.seq);
                let end = drill.and_then(|d| d.ended.clone());
                if let Some(end) = end.filter(|e| matches!(e.cause, DrillEndCause::Aborted { .. }))
                {
                    self.last_outcome = Some(format!("drill {seq} ended: {}", end.cause));
                    self.push(Action::DrillEnded { seq, end });
                }
            }
            _ => {}
        }
        Ok(())
    }

    // --- drills ----------------------------------------------------------------------------

    pub(super) fn drill_tick(&mut self, inputs: &Inputs, now: UnixMillis) {
        let Some(seq) = self.state.drill().map(|d| d.seq) else {
            return;
        };
        let abort = self
            .cfg
            .drill_guards
            .iter()
            .find(|c| inputs.get(c).is_some_and(|i| i.state == State::Unhealthy))
            .cloned();
        if let Some(end) = self.state.drill_tick(now, abort) {
            self.last_outcome = Some(format!("drill {seq} ended: {}", end.cause));
            self.push(Action::DrillEnded { seq, end });
        }
    }

    pub(super) fn drill_finish(&mut self, now: UnixMillis) {
        let Some(done) = self.state.finish_drill(&self.cfg.spec, now) else {
            return;
        };
        if done.drill.dry_run && self.cfg.live() {
            // The simulated DNS ends with the drill: read what Route 53 really holds.
            self.synced_at = None;
        }
        self.push(Action::DrillFinished(done));
    }
}
