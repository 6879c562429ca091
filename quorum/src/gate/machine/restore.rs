//! Rebuilding a gate after a restart from what its audit log holds: operator commands (freeze,
//! approvals, overrides, drills), drill ends, the times of past changes (the velocity rule),
//! a batch that was sent but whose end was never recorded, and promotions owed or done.

use std::collections::BTreeMap;

use super::{Action, AuditRecord, GateMachine, Outcome, Pending};
use crate::gate::{DesiredState, DrillEnd};
use crate::operator::VerifiedCommand;
use crate::time::UnixMillis;

/// One audit record of this gate, as start-up replay reads it (oldest first).
#[derive(Clone, Debug)]
pub enum Replayed {
    /// An audited operator command (drills already judged are left out by the caller).
    Command {
        command: Box<VerifiedCommand>,
        at: UnixMillis,
    },
    DrillEnd {
        seq: u64,
        end: DrillEnd,
    },
    /// A batch persisted before it was sent.
    Write {
        expected_epoch: u64,
        to: DesiredState,
        promote: bool,
    },
    /// What became of the last write (or a dry-run change).
    Outcome {
        at: UnixMillis,
        outcome: Outcome,
    },
    Promote {
        epoch: u64,
    },
    PromoteOutcome {
        epoch: u64,
    },
}

impl Replayed {
    /// The replay form of a record the machine asked to append (the simulation's log holds
    /// these; the agent parses its JSON lines into the same).
    #[must_use]
    pub fn from_record(record: &AuditRecord, at: UnixMillis) -> Option<Self> {
        Some(match record {
            AuditRecord::OperatorCommand(command) => Replayed::Command {
                command: Box::new(command.clone()),
                at,
            },
            AuditRecord::Write {
                expected_epoch,
                to,
                promote,
                ..
            } => Replayed::Write {
                expected_epoch: *expected_epoch,
                to: to.clone(),
                promote: *promote,
            },
            AuditRecord::Outcome { result, .. } => Replayed::Outcome {
                at,
                outcome: result.clone(),
            },
            AuditRecord::Promote { epoch } => Replayed::Promote { epoch: *epoch },
            AuditRecord::PromoteOutcome { epoch, .. } => Replayed::PromoteOutcome { epoch: *epoch },
            AuditRecord::Decision { .. } => return None,
        })
    }
}

/// Replay state between [`GateMachine::restore`] calls.
#[derive(Debug, Default)]
pub(super) struct Replay {
    changes: Vec<UnixMillis>,
    /// The last write persisted and not yet ended.
    open_write: Option<Pending>,
    /// The promote flag of the last write (for its outcome).
    last_promote: bool,
    commands: usize,
    /// The epochs of those changes (live gates), for the velocity history by epoch.
    epochs: BTreeMap<u64, UnixMillis>,
}

impl GateMachine {
    /// Feeds one record of this gate's audit history (oldest first), before the first event.
    /// Returns whether it was applied (an operator command that no longer fits the gate's
    /// config is not).
    pub fn restore(&mut self, record: Replayed) -> bool {
        let r = &mut self.replay;
        match record {
            Replayed::Command { command, at } => {
                let ok = command
                    .apply_to(&self.cfg.spec, &mut self.state, at)
                    .is_ok();
                r.commands += usize::from(ok);
                return ok;
            }
            Replayed::DrillEnd { seq, end } => {
                if self.state.drill().is_some_and(|d| d.seq == seq) {
                    self.state.end_drill(end.at, end.cause);
                }
            }
            Replayed::Write {
                expected_epoch,
                to,
                promote,
            } => {
                r.last_promote = promote;
                r.open_write = Some(Pending {
                    expected_epoch,
                    to,
                    promote,
                    sent_at: None,
                });
            }
            Replayed::Outcome { at, outcome } => {
                if outcome.counts() {
                    r.changes.push(at);
                    if let Some(epoch) = outcome.epoch() {
                        r.epochs.insert(epoch, at);
                    }
                }
                match &outcome {
                    Outcome::Applied(a) if r.last_promote => {
                        self.owed.insert(a.epoch);
                    }
                    Outcome::Won { epoch } if r.last_promote => {
                        self.owed.insert(*epoch);
                    }
                    _ => {}
                }
                // A failed write may have landed: it stays open until the next read.
                if !matches!(outcome, Outcome::Failed(_) | Outcome::DryRun) {
                    r.open_write = None;
                }
            }
            Replayed::Promote { .. } => {}
            Replayed::PromoteOutcome { epoch } => {
                self.owed.remove(&epoch);
                self.promoted.insert(epoch);
            }
        }
        true
    }

    /// Ends start-up replay: restores the velocity history, keeps a write whose end was never
    /// recorded pending (the first read tells whether it won), and restarts a drill in force.
    /// Returns how many operator commands were restored.
    pub fn restored(&mut self) -> usize {
        let r = std::mem::take(&mut self.replay);
        self.state.restore_changes(&self.cfg.spec, r.changes);
        // The first read adds what others did meanwhile (the fence records it).
        self.epochs.extend(r.epochs);
        if let Some(p) = r.open_write {
            self.pending.push(p);
        }
        if let Some(d) = self.state.drill().filter(|d| d.ended.is_none()).cloned() {
            self.push(Action::DrillStarted(d));
        }
        r.commands
    }
}
