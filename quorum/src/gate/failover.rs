//! The rules of a failover pair.
//!
//! - The active target is lost (decided Unhealthy, with the certificate) and the standby is
//!   Healthy by quorum → move to the standby. Both decided Unhealthy → `fail_open`.
//! - The secondary is active and the primary is Healthy by quorum → failback. It needs an
//!   approval unless `auto_failback`, *even when the secondary is down too*: returning to
//!   the old primary may mean returning to the old copy of the data, and that is an
//!   operator's call (use the RPO rule to let the gate judge it).
//! - RPO: moving into a target that has a `lag_check` (gates with `max_rpo_ms`) needs the
//!   lag remembered in [`LagMemory`](super::LagMemory) — the standby's lag as last seen while
//!   the active was Healthy by quorum — known and ≤ `max_rpo_ms`; otherwise an approval.

use super::evaluate::{ApprovalCause, Candidate, ChangeReason, HoldReason};
use super::inputs::{CheckInput, Inputs};
use super::spec::{GateSpec, Target};
use super::state::{active, GateState};
use super::DesiredState;
use crate::decision::State;

pub(super) fn plan(
    spec: &GateSpec,
    state: &GateState,
    inputs: &Inputs,
    primary: &Target,
    secondary: &Target,
) -> Result<Candidate, HoldReason> {
    let (act, standby) = match active(state.current()) {
        Some(a) if *a == secondary.id => (secondary, primary),
        _ => (primary, secondary),
    };
    let (act_in, sb_in) = (input(inputs, act)?, input(inputs, standby)?);
    let failing_back = standby.id == primary.id;
    let act_down = act_in.state == State::Unhealthy;
    let sb_down = sb_in.state == State::Unhealthy;
    if act_down && sb_down {
        return Err(HoldReason::FailOpen);
    }
    if sb_down || (!act_down && !failing_back) {
        return Err(HoldReason::NoChange);
    }
    let mut certificates = Vec::with_capacity(2);
    if act_down {
        let lost = act_in.evidence(&act.check, State::Unhealthy);
        certificates.push(lost.ok_or_else(|| HoldReason::NoCertificate(act.check.clone()))?);
    }
    let target = sb_in.evidence(&standby.check, State::Healthy);
    certificates.push(target.ok_or_else(|| HoldReason::NoCertificate(standby.check.clone()))?);
    let (rpo_lag_ms, rpo_cause) = rpo(spec, state, standby);
    let failback_cause =
        (failing_back && !spec.policy().auto_failback).then_some(ApprovalCause::Failback);
    Ok(Candidate {
        to: DesiredState::Failover {
            active: standby.id.clone(),
        },
        reason: if failing_back {
            ChangeReason::Failback
        } else {
            ChangeReason::Failover
        },
        certificates: certificates.into_iter().cloned().collect(),
        needs_approval: rpo_cause
            .or(failback_cause)
            .map(|cause| (standby.id.clone(), cause)),
        rpo_lag_ms,
    })
}

fn input<'a>(inputs: &'a Inputs, t: &Target) -> Result<&'a CheckInput, HoldReason> {
    inputs
        .get(&t.check)
        .ok_or_else(|| HoldReason::UnknownCheck(t.check.clone()))
}

/// The remembered lag of `into`, and why it needs an approval (if it does).
fn rpo(spec: &GateSpec, state: &GateState, into: &Target) -> (Option<u64>, Option<ApprovalCause>) {
    let Some(max_rpo_ms) = spec.policy().max_rpo_ms else {
        return (None, None);
    };
    if into.lag_check.is_none() {
        return (None, None);
    }
    let lag = state
        .standby_lag()
        .filter(|m| m.target == into.id)
        .and_then(|m| m.lag_ms);
    match lag {
        None => (None, Some(ApprovalCause::RpoUnknown)),
        Some(lag_ms) if lag_ms > max_rpo_ms => (
            Some(lag_ms),
            Some(ApprovalCause::RpoExceeded { lag_ms, max_rpo_ms }),
        ),
        Some(lag_ms) => (Some(lag_ms), None),
    }
}
