//! The desired DNS state as a pure function of the decisions, the gate's state and the
//! operators' requests, with every safety rule checked *before* a change is planned.
//!
//! Order of the rules (the first that holds decides the reported reason):
//!
//! 1. A pending, unexpired operator override that differs from the current DNS is planned at
//!    once — freeze, approvals, RPO and velocity do not apply to break-glass — but traffic
//!    still only goes to targets Healthy by quorum unless the override says `force`.
//! 2. Every target's health check must have an input (`unknown_check`: a wiring bug).
//! 3. The kind's own rules (`failover`/`weighted` modules) find a candidate or a health-level
//!    hold: `no_change`, `fail_open`, `min_serving`, `no_certificate`.
//! 4. `frozen`: a frozen gate makes no automatic change.
//! 5. Approval: failback without `auto_failback`, or an RPO over the limit or unknown, needs
//!    an unexpired operator approval naming the target (`awaiting_approval`, `rpo_exceeded`,
//!    `rpo_unknown`). The failback that ends a game-day drill has the drill command's
//!    authority instead ([`Authority::Drill`], see [`super::drill`]).
//! 6. Pacing: `wait_period`, then `velocity`.

use super::desired::DesiredState;
use super::inputs::{CheckInput, Inputs};
use super::spec::{GateKind, GateSpec, Mode, Target};
use super::state::{Approval, GateState, Override};
use super::{failover, weighted};
use crate::decision::State;
use crate::ids::{CheckId, GateId, OperatorId, TargetId};
use crate::tally::Certificate;
use crate::time::UnixMillis;

/// The outcome of one evaluation.
#[derive(Clone, Debug)]
pub enum Evaluation {
    /// Write this (unless the gate is in dry-run), then [`GateState::commit`] it.
    Change(PlannedChange),
    /// Change nothing, for this reason.
    Hold(HoldReason),
}

impl Evaluation {
    /// The low-cardinality label for metrics: the change's reason or the hold's.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Evaluation::Change(c) => c.reason.code(),
            Evaluation::Hold(h) => h.code(),
        }
    }
}

/// A change to write, with the evidence that justifies it.
#[derive(Clone, Debug)]
pub struct PlannedChange {
    pub gate: GateId,
    /// Copied from the spec: in `DryRun` the caller logs and audits but does not write.
    pub mode: Mode,
    pub from: DesiredState,
    pub to: DesiredState,
    pub reason: ChangeReason,
    pub authority: Authority,
    /// The Unhealthy certificate of every target drained because it is down, and the Healthy
    /// certificate of every target whose traffic changes to a non-zero share. Only a forced
    /// override may lack one (its signed command is the justification).
    pub certificates: Vec<Certificate>,
    /// Database gates: the standby lag (as last seen before the active was lost) this move
    /// accepts.
    pub rpo_lag_ms: Option<u64>,
}

/// Why the DNS changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeReason {
    Failover,
    Failback,
    /// Weighted: targets go to 0.
    Drain,
    /// Weighted: targets go back to their normal weights.
    Restore,
    /// Weighted: some of both.
    Reweight,
    Override,
}

impl ChangeReason {
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            ChangeReason::Failover => "failover",
            ChangeReason::Failback => "failback",
            ChangeReason::Drain => "drain",
            ChangeReason::Restore => "restore",
            ChangeReason::Reweight => "reweight",
            ChangeReason::Override => "override",
        }
    }
}

/// On whose say-so a change happens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authority {
    /// The decisions and the policy alone.
    Automatic,
    /// The policy needed an operator and got one.
    Approved(Approval),
    /// Break-glass.
    Override {
        by: OperatorId,
        seq: u64,
        force: bool,
    },
    /// The failback that ends a game-day drill: the signed drill command is its approval
    /// (failback to the primary only, after the drill's end, within its grace).
    Drill { by: OperatorId, seq: u64 },
}

/// Why a move needs an operator's approval.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ApprovalCause {
    /// Returning to the primary with `auto_failback = false`.
    Failback,
    /// The standby's lag when the active was lost exceeds `max_rpo_ms`.
    RpoExceeded { lag_ms: u64, max_rpo_ms: u64 },
    /// The standby's lag when the active was lost is not known.
    RpoUnknown,
}

/// Why nothing changes. [`code`](Self::code) is a metric label.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HoldReason {
    /// DNS already is what the decisions ask for.
    NoChange,
    /// A target's health check has no input: the gate and the checks are wired wrongly.
    UnknownCheck(CheckId),
    /// A target's check has no decision yet (a restarted agent before its first quorum
    /// verdict): not Healthy, not Unhealthy, so nothing may move.
    Undecided(CheckId),
    /// Every target looks down: change nothing and alert.
    FailOpen,
    /// Draining would leave fewer than `min` targets serving.
    MinServing {
        serving: usize,
        min: usize,
    },
    /// An override asks for traffic to a target decided Unhealthy.
    TargetUnhealthy(TargetId),
    /// The decided state would justify a change, but the current tally does not prove it.
    NoCertificate(CheckId),
    Frozen,
    AwaitingApproval {
        to: TargetId,
        cause: ApprovalCause,
    },
    /// Less than `wait_period_ms` since the last change; possible again at `until`.
    WaitPeriod {
        until: UnixMillis,
    },
    /// `max_changes` already made within `window_ms`; possible again at `until`.
    Velocity {
        until: UnixMillis,
    },
}

impl HoldReason {
    /// Stable, low-cardinality label for metrics and status.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            HoldReason::NoChange => "no_change",
            HoldReason::UnknownCheck(_) => "unknown_check",
            HoldReason::Undecided(_) => "undecided",
            HoldReason::FailOpen => "fail_open",
            HoldReason::MinServing { .. } => "min_serving",
            HoldReason::TargetUnhealthy(_) => "target_unhealthy",
            HoldReason::NoCertificate(_) => "no_certificate",
            HoldReason::Frozen => "frozen",
            HoldReason::AwaitingApproval { cause, .. } => match cause {
                ApprovalCause::Failback => "awaiting_approval",
                ApprovalCause::RpoExceeded { .. } => "rpo_exceeded",
                ApprovalCause::RpoUnknown => "rpo_unknown",
            },
            HoldReason::WaitPeriod { .. } => "wait_period",
            HoldReason::Velocity { .. } => "velocity",
        }
    }

    /// Every label [`code`](Self::code) can return, so exporters can pre-register them.
    pub const CODES: [&'static str; 13] = [
        "no_change",
        "unknown_check",
        "undecided",
        "fail_open",
        "min_serving",
        "target_unhealthy",
        "no_certificate",
        "frozen",
        "awaiting_approval",
        "rpo_exceeded",
        "rpo_unknown",
        "wait_period",
        "velocity",
    ];

    /// Holds an operator should hear about: the gate cannot do what the decisions ask.
    #[must_use]
    pub fn is_alert(&self) -> bool {
        matches!(
            self,
            HoldReason::UnknownCheck(_)
                | HoldReason::FailOpen
                | HoldReason::MinServing { .. }
                | HoldReason::AwaitingApproval { .. }
        )
    }

    /// The target an approval would unblock, when this hold waits for one.
    #[must_use]
    pub fn awaiting_approval_for(&self) -> Option<&TargetId> {
        match self {
            HoldReason::AwaitingApproval { to, .. } => Some(to),
            _ => None,
        }
    }
}

impl std::fmt::Display for HoldReason {
    /// One line for logs, status and the audit log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HoldReason::NoChange => f.write_str("DNS already matches the decisions"),
            HoldReason::UnknownCheck(c) => write!(f, "check {c} has no decision (config wiring)"),
            HoldReason::Undecided(c) => {
                write!(f, "check {c} is undecided since start (no quorum verdict yet)")
            }
            HoldReason::FailOpen => {
                f.write_str("every target looks down: failing open, changing nothing")
            }
            HoldReason::MinServing { serving, min } => write!(
                f,
                "draining would leave {serving} serving, below min_serving = {min}"
            ),
            HoldReason::TargetUnhealthy(t) => write!(f, "target {t} is not Healthy by quorum"),
            HoldReason::NoCertificate(c) => {
                write!(f, "the current tally for {c} does not prove its decision")
            }
            HoldReason::Frozen => f.write_str("gate is frozen by an operator"),
            HoldReason::AwaitingApproval { to, cause } => match cause {
                ApprovalCause::Failback => {
                    write!(f, "failback to {to} waits for `quorumgate approve`")
                }
                ApprovalCause::RpoExceeded { lag_ms, max_rpo_ms } => write!(
                    f,
                    "failover to {to} would lose {lag_ms} ms of writes (max_rpo {max_rpo_ms} ms): waits for `quorumgate approve`"
                ),
                ApprovalCause::RpoUnknown => write!(
                    f,
                    "failover to {to}: replication lag unknown, waits for `quorumgate approve`"
                ),
            },
            HoldReason::WaitPeriod { until } => {
                write!(f, "wait_period since the last change, until {}", until.0)
            }
            HoldReason::Velocity { until } => {
                write!(f, "max_changes reached in the window, until {}", until.0)
            }
        }
    }
}

/// What a kind's rules propose before freeze, approvals and pacing are considered.
#[derive(Debug)]
pub(super) struct Candidate {
    pub(super) to: DesiredState,
    pub(super) reason: ChangeReason,
    pub(super) certificates: Vec<Certificate>,
    pub(super) needs_approval: Option<(TargetId, ApprovalCause)>,
    pub(super) rpo_lag_ms: Option<u64>,
}

/// Evaluates one gate at `now`. Pure: the same arguments always give the same answer.
#[must_use]
pub fn evaluate(
    spec: &GateSpec,
    state: &GateState,
    inputs: &Inputs,
    now: UnixMillis,
) -> Evaluation {
    match plan(spec, state, inputs, now) {
        Ok(change) => Evaluation::Change(change),
        Err(hold) => Evaluation::Hold(hold),
    }
}

fn plan(
    spec: &GateSpec,
    state: &GateState,
    inputs: &Inputs,
    now: UnixMillis,
) -> Result<PlannedChange, HoldReason> {
    let pending = state
        .pending_override()
        .filter(|o| now <= o.expires_at && o.desired != *state.current());
    if let Some(o) = pending {
        return override_change(spec, state, inputs, o);
    }
    if let Some(t) = spec
        .targets()
        .into_iter()
        .find(|t| inputs.is_undecided(&t.check))
    {
        return Err(HoldReason::Undecided(t.check.clone()));
    }
    if let Some(t) = spec
        .targets()
        .into_iter()
        .find(|t| inputs.get(&t.check).is_none())
    {
        return Err(HoldReason::UnknownCheck(t.check.clone()));
    }
    let candidate = match spec.kind() {
        GateKind::Failover { primary, secondary } => {
            failover::plan(spec, state, inputs, primary, secondary)?
        }
        GateKind::Weighted { targets } => weighted::plan(spec, state, inputs, targets)?,
    };
    if state.frozen().is_some() {
        return Err(HoldReason::Frozen);
    }
    let authority = match candidate.needs_approval {
        None => Authority::Automatic,
        Some((to, cause)) => match state.approval() {
            Some(a) if a.to == to && now <= a.expires_at => Authority::Approved(a.clone()),
            _ => match drill_failback(spec, state, &to, &cause, now) {
                Some(authority) => authority,
                None => return Err(HoldReason::AwaitingApproval { to, cause }),
            },
        },
    };
    pacing(spec, state, now)?;
    let mode = if state.drill_dry_run() {
        Mode::DryRun
    } else {
        spec.mode()
    };
    Ok(PlannedChange {
        gate: spec.id().clone(),
        mode,
        from: state.current().clone(),
        to: candidate.to,
        reason: candidate.reason,
        authority,
        certificates: candidate.certificates,
        rpo_lag_ms: candidate.rpo_lag_ms,
    })
}

/// The drill's authority for the failback that ends it: only a failback (never an RPO
/// approval), only to the primary, only after the drill's end and within its grace.
fn drill_failback(
    spec: &GateSpec,
    state: &GateState,
    to: &TargetId,
    cause: &ApprovalCause,
    now: UnixMillis,
) -> Option<Authority> {
    let GateKind::Failover { primary, .. } = spec.kind() else {
        return None;
    };
    let d = state.drill()?;
    let allowed = *cause == ApprovalCause::Failback
        && *to == primary.id
        && !d.running(now)
        && now <= d.failback_until();
    allowed.then(|| Authority::Drill {
        by: d.by.clone(),
        seq: d.seq,
    })
}

/// `wait_period_ms` since the last change, and fewer than `max_changes` within `window_ms`.
/// A clock that went backwards makes past changes look recent: it only ever delays.
fn pacing(spec: &GateSpec, state: &GateState, now: UnixMillis) -> Result<(), HoldReason> {
    let policy = spec.policy();
    if let Some(last) = state.last_change() {
        if now.since(last) < policy.wait_period_ms {
            return Err(HoldReason::WaitPeriod {
                until: last.plus(policy.wait_period_ms),
            });
        }
    }
    let recent: Vec<UnixMillis> = state
        .changes()
        .filter(|t| now.since(*t) < policy.window_ms)
        .collect();
    if recent.len() >= usize::try_from(policy.max_changes).unwrap_or(usize::MAX) {
        let oldest = recent.iter().min().copied().unwrap_or(now);
        return Err(HoldReason::Velocity {
            until: oldest.plus(policy.window_ms),
        });
    }
    Ok(())
}

/// Break-glass: plans the override's state. Every target whose share of traffic changes
/// contributes the certificate that matches where it goes (Unhealthy to 0, Healthy
/// otherwise); a target that *gains* traffic must have one unless the override is forced.
fn override_change(
    spec: &GateSpec,
    state: &GateState,
    inputs: &Inputs,
    o: &Override,
) -> Result<PlannedChange, HoldReason> {
    let mut certificates = Vec::new();
    for t in spec.targets() {
        let (before, after) = (state.current().weight(&t.id), o.desired.weight(&t.id));
        if before == after {
            continue;
        }
        let want = if after == 0 {
            State::Unhealthy
        } else {
            State::Healthy
        };
        let input = inputs.get(&t.check);
        match input.and_then(|i| i.evidence(&t.check, want)) {
            Some(c) => certificates.push(c.clone()),
            None if after > before && !o.force => return Err(not_healthy(t, input)),
            None => {}
        }
    }
    Ok(PlannedChange {
        gate: spec.id().clone(),
        mode: spec.mode(),
        from: state.current().clone(),
        to: o.desired.clone(),
        reason: ChangeReason::Override,
        authority: Authority::Override {
            by: o.by.clone(),
            seq: o.seq,
            force: o.force,
        },
        certificates,
        rpo_lag_ms: None,
    })
}

/// Why `target` is not Healthy by quorum.
pub(super) fn not_healthy(target: &Target, input: Option<&CheckInput>) -> HoldReason {
    match input {
        None => HoldReason::UnknownCheck(target.check.clone()),
        Some(i) if i.state == State::Unhealthy => HoldReason::TargetUnhealthy(target.id.clone()),
        Some(_) => HoldReason::NoCertificate(target.check.clone()),
    }
}
