//! The rules of a weighted set.
//!
//! Each target wants its normal weight when decided Healthy and 0 when decided Unhealthy;
//! a target moves only with the certificate for where it goes. Then:
//!
//! - every target decided Unhealthy → `fail_open` (Route 53 would answer all of them anyway);
//! - if the drains would leave fewer than `min_serving` targets serving (and fewer than now),
//!   *no* target is drained this round — which one to sacrifice is not the gate's call — but
//!   restores still happen; with nothing left to do the hold is `min_serving`.

use std::collections::BTreeMap;

use super::evaluate::{Candidate, ChangeReason, HoldReason};
use super::inputs::Inputs;
use super::spec::{GateSpec, WeightedTarget};
use super::state::GateState;
use super::DesiredState;
use crate::decision::State;
use crate::ids::{CheckId, TargetId};
use crate::tally::Certificate;

pub(super) fn plan(
    spec: &GateSpec,
    state: &GateState,
    inputs: &Inputs,
    targets: &[WeightedTarget],
) -> Result<Candidate, HoldReason> {
    let current = state.current();
    let mut decided = Vec::with_capacity(targets.len());
    for w in targets {
        match inputs.get(&w.target.check) {
            Some(i) => decided.push((w, i)),
            None => return Err(HoldReason::UnknownCheck(w.target.check.clone())),
        }
    }
    if decided.iter().all(|(_, i)| i.state == State::Unhealthy) {
        return Err(HoldReason::FailOpen);
    }
    let mut to: BTreeMap<TargetId, u8> = BTreeMap::new();
    let mut moves: BTreeMap<TargetId, &Certificate> = BTreeMap::new();
    let mut unproven: Option<&CheckId> = None;
    for (w, input) in decided {
        let (id, check) = (&w.target.id, &w.target.check);
        let now_w = current.weight(id);
        let want = match input.state {
            State::Healthy => w.weight,
            State::Unhealthy => 0,
        };
        to.insert(id.clone(), now_w);
        if want == now_w {
            continue;
        }
        match input.evidence(check, input.state) {
            Some(cert) => {
                to.insert(id.clone(), want);
                moves.insert(id.clone(), cert);
            }
            None => {
                unproven.get_or_insert(check);
            }
        }
    }
    let min = spec.policy().min_serving;
    let serving = |m: &BTreeMap<TargetId, u8>| m.values().filter(|w| **w > 0).count();
    let would_serve = serving(&to);
    if would_serve < min && would_serve < current.serving() {
        for (id, w) in &mut to {
            if *w == 0 && current.weight(id) > 0 {
                *w = current.weight(id);
                moves.remove(id);
            }
        }
        if moves.is_empty() {
            return Err(HoldReason::MinServing {
                serving: would_serve,
                min,
            });
        }
    }
    if moves.is_empty() {
        return Err(unproven.map_or(HoldReason::NoChange, |c| {
            HoldReason::NoCertificate(c.clone())
        }));
    }
    let reason = reason(current, &to);
    Ok(Candidate {
        to: DesiredState::Weighted { weights: to },
        reason,
        certificates: moves.into_values().cloned().collect(),
        needs_approval: None,
        rpo_lag_ms: None,
    })
}

fn reason(from: &DesiredState, to: &BTreeMap<TargetId, u8>) -> ChangeReason {
    let (mut down, mut up) = (false, false);
    for (id, w) in to {
        let before = from.weight(id);
        down |= *w == 0 && before > 0;
        up |= *w > 0 && *w != before;
    }
    match (down, up) {
        (true, false) => ChangeReason::Drain,
        (false, true) => ChangeReason::Restore,
        _ => ChangeReason::Reweight,
    }
}
