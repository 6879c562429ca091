//! Signed operator commands: `freeze`, `unfreeze`, `approve`, `override`, and the game-day
//! `drill` and `drill --abort`.
//!
//! An operator (a person or a pipeline, listed in the config with an ed25519 public key)
//! signs a command with the CLI, which sends it to every agent. Each agent checks it with
//! [`OperatorBook::verify`] — size, decoding, known operator, signature, replay, clock —
//! records it in its audit log, then [`OperatorBook::commit`]s it (consuming its seq), and
//! applies it to the gate with [`VerifiedCommand::apply_to`]. A command that fails any check
//! changes nothing and is counted by [`CommandRejection::reason`].
//!
//! Signatures cover `OPERATOR_DOMAIN_TAG ‖ command bytes`, a different tag from ballots', so
//! an agent's ballot signature can never pass as a command and an operator's command
//! signature can never pass as a ballot, even if someone reused one key for both.
//!
//! # Layout
//!
//! - this file: [`OperatorCommand`], [`Action`], [`VerifiedCommand`] and how a command
//!   changes a [`GateState`].
//! - [`codec`]: the canonical bytes and the signed envelope ([`SignedCommand`]).
//! - [`book`]: [`OperatorBook`] — validation on receipt with replay protection.

use crate::cluster::ClusterId;
use crate::gate::{
    Approval, DesiredState, Drill, DrillEndCause, GateKind, GateSpec, GateState, Override,
    StateError, MAX_DRILL_MS,
};
use crate::ids::{GateId, OperatorId, TargetId};
use crate::time::UnixMillis;

pub mod book;
pub mod codec;
#[cfg(test)]
mod tests;

pub use book::{
    CommandAccepted, CommandRejection, Operator, OperatorBook, OperatorBookConfig,
    OperatorListError,
};
pub use codec::{SignedCommand, COMMAND_VERSION, MAX_COMMAND_BYTES, OPERATOR_DOMAIN_TAG};

/// Longest free-text note a command carries, in bytes.
pub const MAX_NOTE_LEN: usize = 256;

/// What an operator asks a gate to do.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Stop automatic changes.
    Freeze,
    /// Resume automatic changes; drops a pending override.
    Unfreeze,
    /// Allow the gate to make `to` active although the policy wants an operator: a failover
    /// whose RPO is over the limit or unknown, or a failback. Failover gates only.
    Approve { to: TargetId },
    /// Break-glass: write `desired` now, bypassing freeze, approvals, RPO and velocity, then
    /// stay frozen. Without `force` traffic still only goes to targets Healthy by quorum.
    Override { desired: DesiredState, force: bool },
    /// Game day: every agent treats the failover gate's primary as failed from the command's
    /// `issued_at` for `duration_ms`, then the gate fails back with the drill's authority
    /// (see `gate::drill`). `dry_run`: the gate writes nothing while the drill is in force.
    Drill { duration_ms: u32, dry_run: bool },
    /// Ends the running drill early (the failback follows).
    DrillAbort,
}

impl Action {
    /// Lowercase name, for logs, metrics and the audit log.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Freeze => "freeze",
            Action::Unfreeze => "unfreeze",
            Action::Approve { .. } => "approve",
            Action::Override { .. } => "override",
            Action::Drill { .. } => "drill",
            Action::DrillAbort => "drill_abort",
        }
    }
}

/// One operator request, before signing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OperatorCommand {
    /// The cluster the command is for. `None` only for a version-1 command (signed by an
    /// older release, read back from an audit log): it encodes as version 1, and the
    /// [`OperatorBook`] refuses it on receipt.
    pub cluster: Option<ClusterId>,
    pub operator: OperatorId,
    pub gate: GateId,
    pub action: Action,
    /// Monotonic per operator across all gates (the CLI starts it at the wall clock in ms).
    pub seq: u64,
    pub issued_at: UnixMillis,
    /// How long the command may be delivered, and how long an approval or a pending
    /// override stays usable.
    pub valid_for_ms: u32,
    /// Why, in the operator's words, for the audit log; at most [`MAX_NOTE_LEN`] bytes.
    pub note: String,
}

impl OperatorCommand {
    /// A command for `cluster`, with an empty note.
    #[must_use]
    pub fn new(
        cluster: ClusterId,
        operator: OperatorId,
        gate: GateId,
        action: Action,
        seq: u64,
        issued_at: UnixMillis,
        valid_for_ms: u32,
    ) -> Self {
        Self {
            cluster: Some(cluster),
            operator,
            gate,
            action,
            seq,
            issued_at,
            valid_for_ms,
            note: String::new(),
        }
    }

    /// Sets the note, truncated to [`MAX_NOTE_LEN`] bytes at a character boundary.
    #[must_use]
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        let mut n: String = note.into();
        if n.len() > MAX_NOTE_LEN {
            let mut cut = MAX_NOTE_LEN;
            while !n.is_char_boundary(cut) {
                cut -= 1;
            }
            n.truncate(cut);
        }
        self.note = n;
        self
    }

    /// The instant after which the command (and what it grants) no longer counts.
    #[must_use]
    pub fn expires_at(&self) -> UnixMillis {
        self.issued_at.plus(u64::from(self.valid_for_ms))
    }
}

/// Why an action does not fit its gate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("approvals apply to failover gates only")]
    ApproveWeighted,
    #[error("target {0} is not part of the gate")]
    UnknownTarget(TargetId),
    #[error("override: {0}")]
    Override(#[from] StateError),
    #[error("drills apply to failover gates only")]
    DrillWeighted,
    #[error("a drill lasts 1 ms to {max_ms} ms, not {ms} ms")]
    DrillDuration { ms: u64, max_ms: u64 },
    /// Route 53 follows a data-plane gate's health checks; the agents never write its
    /// records, so only a drill (which moves the agents' votes) means anything there.
    #[error("{action} does not apply to a data-plane gate (Route 53 follows its health checks; only drill and drill --abort do)")]
    DataPlane { action: &'static str },
    #[error("a dry-run drill does not apply to a data-plane gate: the agents' votes move its DNS")]
    DataPlaneDryRun,
}

/// Whether `action` makes sense for `spec`.
pub fn check_action(spec: &GateSpec, action: &Action) -> Result<(), ActionError> {
    match action {
        Action::Freeze | Action::Unfreeze => Ok(()),
        Action::Approve { to } => {
            if matches!(spec.kind(), GateKind::Weighted { .. }) {
                return Err(ActionError::ApproveWeighted);
            }
            match spec.target(to) {
                Some(_) => Ok(()),
                None => Err(ActionError::UnknownTarget(to.clone())),
            }
        }
        Action::Override { desired, .. } => Ok(spec.check_override(desired)?),
        Action::Drill { duration_ms, .. } => {
            if matches!(spec.kind(), GateKind::Weighted { .. }) {
                return Err(ActionError::DrillWeighted);
            }
            let ms = u64::from(*duration_ms);
            if ms == 0 || ms > MAX_DRILL_MS {
                return Err(ActionError::DrillDuration {
                    ms,
                    max_ms: MAX_DRILL_MS,
                });
            }
            Ok(())
        }
        Action::DrillAbort => match spec.kind() {
            GateKind::Weighted { .. } => Err(ActionError::DrillWeighted),
            GateKind::Failover { .. } => Ok(()),
        },
    }
}

/// A command that passed every check of [`OperatorBook::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCommand {
    pub command: OperatorCommand,
    /// The signed form, for the audit log (`quorumgate verify` re-checks it).
    pub signed: SignedCommand,
}

impl VerifiedCommand {
    /// Applies the command to the state of its gate at `now`. Re-checks that `spec` is the
    /// command's gate and that the action fits it (the config may have been reloaded).
    pub fn apply_to(
        &self,
        spec: &GateSpec,
        state: &mut GateState,
        now: UnixMillis,
    ) -> Result<(), CommandRejection> {
        let c = &self.command;
        if *spec.id() != c.gate {
            return Err(CommandRejection::UnknownGate(c.gate.clone()));
        }
        check_action(spec, &c.action).map_err(|why| CommandRejection::InvalidAction {
            gate: c.gate.clone(),
            why,
        })?;
        match &c.action {
            Action::Freeze => state.freeze(c.operator.clone(), now),
            Action::Unfreeze => state.unfreeze(),
            Action::Approve { to } => state.approve(Approval {
                to: to.clone(),
                by: c.operator.clone(),
                seq: c.seq,
                expires_at: c.expires_at(),
            }),
            Action::Override { desired, force } => state.set_override(
                Override {
                    desired: desired.clone(),
                    force: *force,
                    by: c.operator.clone(),
                    seq: c.seq,
                    expires_at: c.expires_at(),
                },
                now,
            ),
            Action::Drill {
                duration_ms,
                dry_run,
            } => state.start_drill(Drill {
                by: c.operator.clone(),
                seq: c.seq,
                started_at: c.issued_at,
                ends_at: c.issued_at.plus(u64::from(*duration_ms)),
                dry_run: *dry_run,
                ended: None,
            }),
            Action::DrillAbort => {
                let cause = DrillEndCause::Aborted {
                    by: c.operator.clone(),
                    seq: c.seq,
                };
                state.end_drill(now, cause);
            }
        }
        Ok(())
    }
}
