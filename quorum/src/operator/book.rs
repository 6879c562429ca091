//! Validation of operator commands on receipt, with replay protection.
//!
//! [`OperatorBook::verify`] checks, in order: size, decoding, known operator, signature,
//! cluster (a version-2 command for this cluster: see [`crate::cluster`]), sequence (replay; a byte-identical resend of a committed command is an idempotent
//! duplicate so a CLI retry is harmless), clock (from the future, expired, validity longer
//! than allowed), known gate, whether the action fits that gate (a drill no longer than
//! `max_valid_for_ms`), and the caller's own check of the gate's state (whether a drill may
//! start now). Each failure is a distinct [`CommandRejection`] with a stable metric label.
//!
//! Verifying records nothing. The caller audits the verified command, and only once the
//! audit record is written runs [`OperatorBook::commit`], which consumes the seq, and then
//! applies the command. A command refused, or verified but not persisted, leaves its seq
//! unused, so the same saved bytes can be sent again.
//!
//! Replay protection lives in memory. After a restart the agent seeds it with
//! [`OperatorBook::restore_seq`] from its audit log; without that, a command could be
//! replayed only within its own `valid_for_ms`, which `max_valid_for_ms` bounds.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

use super::codec::{SignedCommand, MAX_COMMAND_BYTES};
use super::{check_action, Action, ActionError, OperatorCommand, VerifiedCommand};
use crate::cluster::ClusterId;
use crate::codec::DecodeError;
use crate::gate::{DrillRefusal, GateSpec};
use crate::ids::{GateId, OperatorId};
use crate::time::UnixMillis;

/// A configured operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    pub id: OperatorId,
    pub key: VerifyingKey,
}

/// Receipt policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OperatorBookConfig {
    /// How far ahead of our clock a command's `issued_at` may be.
    pub max_clock_skew_ms: u64,
    /// Longest `valid_for_ms` accepted: bounds how long an approval can linger.
    pub max_valid_for_ms: u64,
}

/// A command that passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandAccepted {
    /// First receipt: audit it, then apply it.
    New(Box<VerifiedCommand>),
    /// Byte-identical to the last command accepted from that operator (a retried send).
    Duplicate,
}

/// Why a command was refused. It changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandRejection {
    #[error("{size} bytes exceeds the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("undecodable: {0}")]
    Decode(#[from] DecodeError),
    #[error("operator {0} is not configured")]
    UnknownOperator(OperatorId),
    #[error("signature of {0}'s command does not verify with its configured key")]
    BadSignature(OperatorId),
    #[error(
        "{operator}'s command was signed by an older quorumgate without a cluster identity: \
         sign it again with `quorumgate <command>`"
    )]
    OldVersion { operator: OperatorId },
    #[error(
        "{operator}'s command is for cluster {theirs}, this agent is cluster {ours}: \
         send it to that cluster's agents, or sign it again with this cluster's config \
         (`quorumgate <command> --config <this cluster's config>`)"
    )]
    WrongCluster {
        operator: OperatorId,
        theirs: Box<ClusterId>,
        ours: Box<ClusterId>,
    },
    #[error("{operator} seq {seq} is not above the last accepted seq {last}")]
    Replay {
        operator: OperatorId,
        seq: u64,
        last: u64,
    },
    #[error(
        "{operator}'s command is issued {ahead_ms} ms in our future (beyond the allowed skew)"
    )]
    FromFuture { operator: OperatorId, ahead_ms: u64 },
    #[error("{operator}'s command expired {age_ms} ms ago")]
    Expired { operator: OperatorId, age_ms: u64 },
    #[error("{operator}'s command is valid for {valid_for_ms} ms; at most {max} ms is accepted")]
    ValidityTooLong {
        operator: OperatorId,
        valid_for_ms: u64,
        max: u64,
    },
    #[error("gate {0} is not configured")]
    UnknownGate(GateId),
    #[error("gate {gate}: {why}")]
    InvalidAction { gate: GateId, why: ActionError },
    #[error("gate {gate}: drill refused: {why}")]
    DrillRefused { gate: GateId, why: DrillRefusal },
}

impl CommandRejection {
    /// Stable low-cardinality label for `quorumgate_operator_commands_rejected_total{reason}`.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            CommandRejection::TooLarge { .. } => "too_large",
            CommandRejection::Decode(_) => "decode",
            CommandRejection::UnknownOperator(_) => "unknown_operator",
            CommandRejection::BadSignature(_) => "bad_signature",
            CommandRejection::OldVersion { .. } => "old_version",
            CommandRejection::WrongCluster { .. } => "wrong_cluster",
            CommandRejection::Replay { .. } => "replay",
            CommandRejection::FromFuture { .. } => "from_future",
            CommandRejection::Expired { .. } => "expired",
            CommandRejection::ValidityTooLong { .. } => "validity_too_long",
            CommandRejection::UnknownGate(_) => "unknown_gate",
            CommandRejection::InvalidAction { .. } => "invalid_action",
            CommandRejection::DrillRefused { .. } => "drill_refused",
        }
    }

    /// Every label [`reason`](Self::reason) can return.
    pub const REASONS: [&'static str; 13] = [
        "too_large",
        "decode",
        "unknown_operator",
        "bad_signature",
        "old_version",
        "wrong_cluster",
        "replay",
        "from_future",
        "expired",
        "validity_too_long",
        "unknown_gate",
        "invalid_action",
        "drill_refused",
    ];
}

/// Why an operator list is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorListError {
    #[error("operator {0} appears more than once")]
    DuplicateId(OperatorId),
    #[error("operators {0} and {1} share one public key")]
    DuplicateKey(OperatorId, OperatorId),
}

/// The configured operators and gates, and the last command accepted from each operator.
#[derive(Clone, Debug)]
pub struct OperatorBook {
    /// This cluster: commands signed for another are refused.
    cluster: ClusterId,
    operators: BTreeMap<OperatorId, VerifyingKey>,
    gates: BTreeMap<GateId, GateSpec>,
    config: OperatorBookConfig,
    /// Per operator: the last accepted seq and the SHA-256 of its wire form.
    last: BTreeMap<OperatorId, (u64, [u8; 32])>,
}

impl OperatorBook {
    /// The book of cluster `cluster`. Distinct ids and keys (one key under two names would double an operator's authority
    /// in any future m-of-n rule and blur the audit trail).
    pub fn new(
        cluster: ClusterId,
        operators: Vec<Operator>,
        gates: impl IntoIterator<Item = GateSpec>,
        config: OperatorBookConfig,
    ) -> Result<Self, OperatorListError> {
        let mut map: BTreeMap<OperatorId, VerifyingKey> = BTreeMap::new();
        for op in operators {
            if let Some((other, _)) = map.iter().find(|(_, k)| **k == op.key) {
                return Err(OperatorListError::DuplicateKey(other.clone(), op.id));
            }
            if map.insert(op.id.clone(), op.key).is_some() {
                return Err(OperatorListError::DuplicateId(op.id));
            }
        }
        Ok(Self {
            cluster,
            operators: map,
            gates: gates.into_iter().map(|g| (g.id().clone(), g)).collect(),
            config,
            last: BTreeMap::new(),
        })
    }

    /// The last seq accepted from `operator`.
    #[must_use]
    pub fn last_seq(&self, operator: &OperatorId) -> Option<u64> {
        self.last.get(operator).map(|(seq, _)| *seq)
    }

    /// Seeds replay protection after a restart (from the audit log): commands from
    /// `operator` with a seq at or below `seq` are refused from now on.
    pub fn restore_seq(&mut self, operator: OperatorId, seq: u64) {
        let entry = self.last.entry(operator).or_insert((seq, [0; 32]));
        if seq > entry.0 {
            *entry = (seq, [0; 32]);
        }
    }

    /// Validates a wire-encoded signed command received at `now` and commits it at once: for
    /// callers with nothing to persist in between. Never panics.
    pub fn handle(
        &mut self,
        now: UnixMillis,
        wire: &[u8],
    ) -> Result<CommandAccepted, CommandRejection> {
        let accepted = self.verify(now, wire, |_| Ok(()))?;
        if let CommandAccepted::New(v) = &accepted {
            self.commit(v);
        }
        Ok(accepted)
    }

    /// Checks a wire-encoded signed command received at `now` — every check of the module
    /// doc, then `check`, the caller's judgement of the gate's current state (e.g. whether a
    /// drill may start) — and records nothing: the command's seq stays unused until
    /// [`commit`](Self::commit), which the caller runs only once the command is in its audit
    /// log. A command verified but never committed (the audit append failed) can therefore be
    /// sent again and is then new, not a duplicate. Never panics.
    pub fn verify(
        &self,
        now: UnixMillis,
        wire: &[u8],
        check: impl FnOnce(&OperatorCommand) -> Result<(), CommandRejection>,
    ) -> Result<CommandAccepted, CommandRejection> {
        if wire.len() > MAX_COMMAND_BYTES {
            return Err(CommandRejection::TooLarge {
                size: wire.len(),
                limit: MAX_COMMAND_BYTES,
            });
        }
        let signed = SignedCommand::from_wire(wire)?;
        let command = signed.decode_unverified()?;
        let operator = command.operator.clone();
        let Some(key) = self.operators.get(&operator) else {
            return Err(CommandRejection::UnknownOperator(operator));
        };
        if !signed.verifies_with(key) {
            return Err(CommandRejection::BadSignature(operator));
        }
        match &command.cluster {
            None => return Err(CommandRejection::OldVersion { operator }),
            Some(theirs) if *theirs != self.cluster => {
                return Err(CommandRejection::WrongCluster {
                    operator,
                    theirs: Box::new(theirs.clone()),
                    ours: Box::new(self.cluster.clone()),
                })
            }
            Some(_) => {}
        }
        if let Some(&(last, last_digest)) = self.last.get(&operator) {
            if command.seq == last && digest(&signed) == last_digest {
                return Ok(CommandAccepted::Duplicate);
            }
            if command.seq <= last {
                return Err(CommandRejection::Replay {
                    operator,
                    seq: command.seq,
                    last,
                });
            }
        }
        self.check_time(now, &command)?;
        let Some(spec) = self.gates.get(&command.gate) else {
            return Err(CommandRejection::UnknownGate(command.gate));
        };
        check_action(spec, &command.action).map_err(|why| CommandRejection::InvalidAction {
            gate: command.gate.clone(),
            why,
        })?;
        if let Action::Drill { duration_ms, .. } = command.action {
            let (ms, max_ms) = (u64::from(duration_ms), self.config.max_valid_for_ms);
            if ms > max_ms {
                return Err(CommandRejection::InvalidAction {
                    gate: command.gate.clone(),
                    why: ActionError::DrillDuration { ms, max_ms },
                });
            }
        }
        check(&command)?;
        Ok(CommandAccepted::New(Box::new(VerifiedCommand {
            command,
            signed,
        })))
    }

    /// Records `verified`'s seq as its operator's last: from now on the same bytes are a
    /// [`Duplicate`](CommandAccepted::Duplicate) and any seq at or below it a replay. Run it
    /// once the command is persisted (audited), before applying it. Never lowers a seq.
    pub fn commit(&mut self, verified: &VerifiedCommand) {
        let c = &verified.command;
        let entry = (c.seq, digest(&verified.signed));
        match self.last.get_mut(&c.operator) {
            Some(last) if last.0 >= c.seq => {}
            Some(last) => *last = entry,
            None => {
                self.last.insert(c.operator.clone(), entry);
            }
        }
    }

    fn check_time(&self, now: UnixMillis, c: &OperatorCommand) -> Result<(), CommandRejection> {
        let operator = || c.operator.clone();
        let ahead_ms = c.issued_at.since(now);
        if ahead_ms > self.config.max_clock_skew_ms {
            return Err(CommandRejection::FromFuture {
                operator: operator(),
                ahead_ms,
            });
        }
        if now > c.expires_at() {
            return Err(CommandRejection::Expired {
                operator: operator(),
                age_ms: now.since(c.expires_at()),
            });
        }
        let valid_for_ms = u64::from(c.valid_for_ms);
        if valid_for_ms > self.config.max_valid_for_ms {
            return Err(CommandRejection::ValidityTooLong {
                operator: operator(),
                valid_for_ms,
                max: self.config.max_valid_for_ms,
            });
        }
        Ok(())
    }
}

/// SHA-256 of a command's wire form (the envelope is canonical: one wire form per command).
fn digest(signed: &SignedCommand) -> [u8; 32] {
    Sha256::digest(signed.to_wire()).into()
}
