//! Weighted set: one test per rule.

use super::*;

const A: &str = "ck-a";
const B: &str = "ck-b";
const C: &str = "ck-c";

fn set(policy: GatePolicy) -> GateSpec {
    let w = |id: &str, check: &str, weight| WeightedTarget {
        target: Target::new(t(id), c(check)),
        weight,
    };
    let kind = GateKind::Weighted {
        targets: vec![w("c", C, 10), w("a", A, 100), w("b", B, 50)],
    };
    GateSpec::new(gate_id("web"), kind, policy, Mode::Live).unwrap()
}

fn free() -> GatePolicy {
    GatePolicy {
        wait_period_ms: 0,
        max_changes: 100,
        ..GatePolicy::default()
    }
}

fn weights(a: u8, b: u8, cc: u8) -> DesiredState {
    DesiredState::weighted([(t("a"), a), (t("b"), b), (t("c"), cc)])
}

/// Evaluates, expects a change, commits it.
fn commit(
    spec: &GateSpec,
    state: &mut GateState,
    inputs: &Inputs,
    now: UnixMillis,
) -> PlannedChange {
    let ch = change(evaluate(spec, state, inputs, now));
    state.commit(spec, &ch, now).unwrap();
    ch
}

#[test]
fn drains_the_unhealthy_and_restores_the_healthy_with_their_certificates() {
    let spec = set(free());
    let mut state = GateState::new(&spec);
    assert_eq!(state.current(), &weights(100, 50, 10));
    let all_up = inputs(&[(A, UP), (B, UP), (C, UP)]);
    assert_eq!(evaluate(&spec, &state, &all_up, at(0)).code(), "no_change");
    let a_unproven = inputs(&[(A, decided(State::Unhealthy, false)), (B, UP), (C, UP)]);
    assert_eq!(
        hold(&evaluate(&spec, &state, &a_unproven, at(0))),
        &HoldReason::NoCertificate(c(A))
    );

    let ch = commit(
        &spec,
        &mut state,
        &inputs(&[(A, DOWN), (B, UP), (C, UP)]),
        at(0),
    );
    assert_eq!(
        (ch.reason, &ch.to),
        (ChangeReason::Drain, &weights(0, 50, 10))
    );
    assert_eq!(proofs(&ch), [(A.into(), Outcome::Unhealthy)]);

    let back_unproven = inputs(&[(A, decided(State::Healthy, false)), (B, UP), (C, UP)]);
    assert_eq!(
        evaluate(&spec, &state, &back_unproven, at(1)).code(),
        "no_certificate"
    );
    let ch = commit(&spec, &mut state, &all_up, at(1));
    assert_eq!(
        (ch.reason, &ch.to),
        (ChangeReason::Restore, &weights(100, 50, 10))
    );
    assert_eq!(proofs(&ch), [(A.into(), Outcome::Healthy)]);
}

#[test]
fn one_change_can_drain_and_restore_and_normalise() {
    let spec = set(free());
    let state = GateState::with_current(&spec, weights(0, 50, 200)).unwrap();
    let ch = change(evaluate(
        &spec,
        &state,
        &inputs(&[(A, UP), (B, DOWN), (C, UP)]),
        at(0),
    ));
    assert_eq!(
        (ch.reason, &ch.to),
        (ChangeReason::Reweight, &weights(100, 0, 10))
    );
    assert_eq!(
        proofs(&ch),
        [
            (A.into(), Outcome::Healthy),
            (B.into(), Outcome::Unhealthy),
            (C.into(), Outcome::Healthy)
        ]
    );
}

#[test]
fn everything_down_fails_open() {
    let spec = set(free());
    for current in [weights(100, 50, 10), weights(0, 50, 0)] {
        let state = GateState::with_current(&spec, current).unwrap();
        for row in [DOWN, decided(State::Unhealthy, false)] {
            let e = evaluate(
                &spec,
                &state,
                &inputs(&[(A, row), (B, DOWN), (C, DOWN)]),
                at(0),
            );
            assert_eq!(hold(&e), &HoldReason::FailOpen);
        }
    }
}

#[test]
fn never_drains_below_min_serving_but_still_restores() {
    let spec = set(GatePolicy {
        min_serving: 2,
        ..free()
    });
    let mut state = GateState::new(&spec);
    let two_down = inputs(&[(A, DOWN), (B, DOWN), (C, UP)]);
    let e = evaluate(&spec, &state, &two_down, at(0));
    assert_eq!(hold(&e), &HoldReason::MinServing { serving: 1, min: 2 });
    assert!(hold(&e).is_alert());
    // One down is fine: two still serve.
    let ch = commit(
        &spec,
        &mut state,
        &inputs(&[(A, DOWN), (B, UP), (C, UP)]),
        at(0),
    );
    assert_eq!(ch.to, weights(0, 50, 10));
    // Now a is back but b and c fail: draining both would leave only a. Restore a, drain none.
    let swap = inputs(&[(A, UP), (B, DOWN), (C, DOWN)]);
    let ch = commit(&spec, &mut state, &swap, at(1));
    assert_eq!(
        (ch.reason, &ch.to),
        (ChangeReason::Restore, &weights(100, 50, 10))
    );
    assert_eq!(proofs(&ch), [(A.into(), Outcome::Healthy)]);
    assert_eq!(evaluate(&spec, &state, &swap, at(2)).code(), "min_serving");
    // With min_serving 1 both go at once.
    let spec = set(free());
    let ch = change(evaluate(&spec, &GateState::new(&spec), &two_down, at(0)));
    assert_eq!(
        (ch.reason, &ch.to, ch.certificates.len()),
        (ChangeReason::Drain, &weights(0, 0, 10), 2)
    );
}

#[test]
fn wait_period_then_velocity_pace_a_flapping_target() {
    let spec = set(GatePolicy {
        max_changes: 2,
        window_ms: 60_000,
        wait_period_ms: 10_000,
        ..free()
    });
    let mut state = GateState::new(&spec);
    let down = inputs(&[(A, DOWN), (B, UP), (C, UP)]);
    let up = inputs(&[(A, UP), (B, UP), (C, UP)]);
    commit(&spec, &mut state, &down, at(0));
    let e = evaluate(&spec, &state, &up, at(5_000));
    assert_eq!(hold(&e), &HoldReason::WaitPeriod { until: at(10_000) });
    commit(&spec, &mut state, &up, at(10_000));
    let e = evaluate(&spec, &state, &down, at(20_000));
    assert_eq!(hold(&e), &HoldReason::Velocity { until: at(60_000) });
    assert_eq!(
        evaluate(&spec, &state, &down, at(59_999)).code(),
        "velocity"
    );
    let ch = commit(&spec, &mut state, &down, at(60_000));
    assert_eq!(ch.to, weights(0, 50, 10));
    assert_eq!(
        state.changes().collect::<Vec<_>>(),
        [at(10_000), at(60_000)]
    );
    // A clock that jumps back only delays.
    assert_eq!(
        evaluate(&spec, &state, &up, at(30_000)).code(),
        "wait_period"
    );
}
