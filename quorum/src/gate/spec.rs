//! What a gate is: its targets, the checks that judge them, and its safety policy.
//!
//! A [`GateSpec`] exists only if it makes sense (parse, don't validate): targets are distinct
//! and use distinct checks, `min_serving` can be met, the RPO rule has a lag to look at.

use std::collections::BTreeSet;

use super::desired::{DesiredState, MAX_TARGETS};
use crate::ids::{CheckId, GateId, TargetId};

/// Whether the caller writes what the gate decides. Evaluation is identical in both modes;
/// in dry-run the caller logs and audits the planned change, writes nothing, and still
/// commits it to the [`GateState`](super::GateState) so later rounds see the simulated DNS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    #[default]
    Live,
    DryRun,
}

impl Mode {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::DryRun => "dry-run",
        }
    }
}

/// One place DNS can send traffic to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub id: TargetId,
    /// The check whose quorum decision says whether this target is healthy.
    pub check: CheckId,
    /// A database check whose measured replication lag (`Observation::lag_ms`) is the data a
    /// failover *into* this target would lose. Failover gates with `max_rpo_ms` only.
    pub lag_check: Option<CheckId>,
}

impl Target {
    #[must_use]
    pub fn new(id: TargetId, check: CheckId) -> Self {
        Self {
            id,
            check,
            lag_check: None,
        }
    }

    #[must_use]
    pub fn with_lag_check(mut self, check: CheckId) -> Self {
        self.lag_check = Some(check);
        self
    }
}

/// A member of a weighted set with its normal weight (the weight it has when healthy).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WeightedTarget {
    pub target: Target,
    pub weight: u8,
}

/// The shape of a gate.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum GateKind {
    /// Traffic goes to `primary`; to `secondary` only when the primary is lost.
    Failover { primary: Target, secondary: Target },
    /// Traffic is shared by weight; an unhealthy target goes to 0, a healthy one back to its
    /// normal weight. Kept sorted by target id.
    Weighted { targets: Vec<WeightedTarget> },
}

/// The safety rules, per gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GatePolicy {
    /// Never leave fewer targets serving than this (weighted sets; a pair always serves one).
    pub min_serving: usize,
    /// At most this many changes per `window_ms`.
    pub max_changes: u32,
    pub window_ms: u64,
    /// Minimum time between two changes.
    pub wait_period_ms: u64,
    /// Return to the primary without an operator approval once it is Healthy again.
    pub auto_failback: bool,
    /// Database gates: the most replication lag a failover may lose without an approval.
    pub max_rpo_ms: Option<u64>,
}

impl Default for GatePolicy {
    /// One serving target, 3 changes per hour, 5 s apart (ARC's default wait period),
    /// deliberate failback, no RPO rule.
    fn default() -> Self {
        Self {
            min_serving: 1,
            max_changes: 3,
            window_ms: 3_600_000,
            wait_period_ms: 5_000,
            auto_failback: false,
            max_rpo_ms: None,
        }
    }
}

/// Why a gate specification is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateSpecError {
    #[error("a weighted set needs at least one target")]
    NoTargets,
    #[error("{0} targets; a gate has at most {MAX_TARGETS}")]
    TooManyTargets(usize),
    #[error("target {0} appears more than once")]
    DuplicateTarget(TargetId),
    #[error("check {0} judges two targets; each target needs its own check")]
    SharedCheck(CheckId),
    #[error("target {0} has normal weight 0 and would never serve")]
    ZeroWeight(TargetId),
    #[error("min_serving is {min}; it must be between 1 and {max} for this gate")]
    MinServing { min: usize, max: usize },
    #[error("max_changes must be at least 1")]
    ZeroMaxChanges,
    #[error("window_ms must be at least 1")]
    ZeroWindow,
    #[error("max_rpo_ms is set but secondary {0} has no lag_check to measure it")]
    RpoWithoutLagCheck(TargetId),
    #[error("target {0} has a lag_check but the gate has no max_rpo_ms")]
    LagCheckWithoutRpo(TargetId),
    #[error("the RPO rule (max_rpo_ms, lag_check) applies to failover gates only")]
    RpoOnWeighted,
}

/// Why a DNS state does not fit a gate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("a {state} state does not fit a {gate} gate")]
    WrongKind {
        state: &'static str,
        gate: &'static str,
    },
    #[error("target {0} is not part of this gate")]
    UnknownTarget(TargetId),
    #[error("target {0} is missing from the weights")]
    MissingTarget(TargetId),
    #[error("{serving} targets would serve; min_serving is {min}")]
    BelowMinServing { serving: usize, min: usize },
}

/// A validated gate.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GateSpec {
    id: GateId,
    kind: GateKind,
    policy: GatePolicy,
    mode: Mode,
}

impl GateSpec {
    /// Validates a gate; returns every problem found, not just the first.
    pub fn new(
        id: GateId,
        mut kind: GateKind,
        policy: GatePolicy,
        mode: Mode,
    ) -> Result<Self, Vec<GateSpecError>> {
        if let GateKind::Weighted { targets } = &mut kind {
            targets.sort_by(|a, b| a.target.id.cmp(&b.target.id));
        }
        let errors = validate(&kind, &policy);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            id,
            kind,
            policy,
            mode,
        })
    }

    #[must_use]
    pub fn id(&self) -> &GateId {
        &self.id
    }
    #[must_use]
    pub fn kind(&self) -> &GateKind {
        &self.kind
    }
    #[must_use]
    pub fn policy(&self) -> &GatePolicy {
        &self.policy
    }
    #[must_use]
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Every target, primary first for a pair, by id for a weighted set.
    #[must_use]
    pub fn targets(&self) -> Vec<&Target> {
        match &self.kind {
            GateKind::Failover { primary, secondary } => vec![primary, secondary],
            GateKind::Weighted { targets } => targets.iter().map(|w| &w.target).collect(),
        }
    }

    #[must_use]
    pub fn target(&self, id: &TargetId) -> Option<&Target> {
        self.targets().into_iter().find(|t| t.id == *id)
    }

    /// Every check this gate reads (health and lag), so config can verify they exist.
    #[must_use]
    pub fn checks(&self) -> BTreeSet<&CheckId> {
        self.targets()
            .into_iter()
            .flat_map(|t| std::iter::once(&t.check).chain(t.lag_check.as_ref()))
            .collect()
    }

    /// Where traffic goes when everything is healthy: the primary, or every normal weight.
    #[must_use]
    pub fn normal_state(&self) -> DesiredState {
        match &self.kind {
            GateKind::Failover { primary, .. } => DesiredState::Failover {
                active: primary.id.clone(),
            },
            GateKind::Weighted { targets } => {
                DesiredState::weighted(targets.iter().map(|w| (w.target.id.clone(), w.weight)))
            }
        }
    }

    /// Whether `state` names exactly this gate's targets in this gate's shape.
    pub fn check_shape(&self, state: &DesiredState) -> Result<(), StateError> {
        match (&self.kind, state) {
            (GateKind::Failover { .. }, DesiredState::Failover { active }) => {
                match self.target(active) {
                    Some(_) => Ok(()),
                    None => Err(StateError::UnknownTarget(active.clone())),
                }
            }
            (GateKind::Weighted { targets }, DesiredState::Weighted { weights }) => {
                if let Some(t) = weights.keys().find(|t| self.target(t).is_none()) {
                    return Err(StateError::UnknownTarget(t.clone()));
                }
                match targets.iter().find(|w| !weights.contains_key(&w.target.id)) {
                    Some(w) => Err(StateError::MissingTarget(w.target.id.clone())),
                    None => Ok(()),
                }
            }
            (gate, state) => Err(StateError::WrongKind {
                state: kind_name(matches!(state, DesiredState::Failover { .. })),
                gate: kind_name(matches!(gate, GateKind::Failover { .. })),
            }),
        }
    }

    /// What an operator override may ask for: the right shape and at least `min_serving`
    /// targets serving (even a forced override may not drain the gate).
    pub fn check_override(&self, state: &DesiredState) -> Result<(), StateError> {
        self.check_shape(state)?;
        let (serving, min) = (state.serving(), self.policy.min_serving);
        if serving < min {
            return Err(StateError::BelowMinServing { serving, min });
        }
        Ok(())
    }
}

fn kind_name(failover: bool) -> &'static str {
    if failover {
        "failover"
    } else {
        "weighted"
    }
}

fn validate(kind: &GateKind, policy: &GatePolicy) -> Vec<GateSpecError> {
    let mut errors = Vec::new();
    let (targets, max_serving): (Vec<&Target>, usize) = match kind {
        GateKind::Failover { primary, secondary } => {
            if policy.max_rpo_ms.is_some() && secondary.lag_check.is_none() {
                errors.push(GateSpecError::RpoWithoutLagCheck(secondary.id.clone()));
            }
            (vec![primary, secondary], 1)
        }
        GateKind::Weighted { targets } => {
            if targets.is_empty() {
                errors.push(GateSpecError::NoTargets);
            }
            if targets.len() > MAX_TARGETS {
                errors.push(GateSpecError::TooManyTargets(targets.len()));
            }
            let with_lag = targets.iter().any(|w| w.target.lag_check.is_some());
            if policy.max_rpo_ms.is_some() || with_lag {
                errors.push(GateSpecError::RpoOnWeighted);
            }
            errors.extend(
                targets
                    .iter()
                    .filter(|w| w.weight == 0)
                    .map(|w| GateSpecError::ZeroWeight(w.target.id.clone())),
            );
            (targets.iter().map(|w| &w.target).collect(), targets.len())
        }
    };
    let (mut ids, mut checks) = (BTreeSet::new(), BTreeSet::new());
    for t in &targets {
        if !ids.insert(&t.id) {
            errors.push(GateSpecError::DuplicateTarget(t.id.clone()));
        }
        if !checks.insert(&t.check) {
            errors.push(GateSpecError::SharedCheck(t.check.clone()));
        }
        if matches!(kind, GateKind::Failover { .. })
            && t.lag_check.is_some()
            && policy.max_rpo_ms.is_none()
        {
            errors.push(GateSpecError::LagCheckWithoutRpo(t.id.clone()));
        }
    }
    if policy.min_serving == 0 || policy.min_serving > max_serving.max(1) {
        errors.push(GateSpecError::MinServing {
            min: policy.min_serving,
            max: max_serving.max(1),
        });
    }
    if policy.max_changes == 0 {
        errors.push(GateSpecError::ZeroMaxChanges);
    }
    if policy.window_ms == 0 {
        errors.push(GateSpecError::ZeroWindow);
    }
    errors
}
