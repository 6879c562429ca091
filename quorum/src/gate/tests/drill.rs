//! Game-day drills: when one may start, how it ends, and the failback authority it carries.

use super::*;
use crate::gate::drill::{precheck, precheck_abort};

const P: &str = "api-use1";
const S: &str = "api-euw1";
const LAG: &str = "db-euw1";

fn policy() -> GatePolicy {
    GatePolicy {
        wait_period_ms: 0,
        max_changes: 100,
        ..GatePolicy::default()
    }
}

fn pair(policy: GatePolicy) -> GateSpec {
    let mut secondary = Target::new(t("euw1"), c(S));
    if policy.max_rpo_ms.is_some() {
        secondary = secondary.with_lag_check(c(LAG));
    }
    let kind = GateKind::Failover {
        primary: Target::new(t("use1"), c(P)),
        secondary,
    };
    GateSpec::new(gate_id("app"), kind, policy, Mode::Live).unwrap()
}

fn drill(dry_run: bool) -> Drill {
    Drill {
        by: op("alice"),
        seq: 42,
        started_at: at(0),
        ends_at: at(60_000),
        dry_run,
        ended: None,
    }
}

fn round(spec: &GateSpec, state: &mut GateState, inputs: &Inputs, now: UnixMillis) -> Evaluation {
    let e = evaluate(spec, state, inputs, now);
    if let Evaluation::Change(ch) = &e {
        state.commit(spec, ch, now).unwrap();
    }
    state.observe(spec, inputs, &e, now);
    e
}

fn healthy() -> Inputs {
    inputs(&[(P, UP), (S, UP)])
}

#[test]
fn a_drill_starts_only_from_a_healthy_pair_at_rest() {
    let spec = pair(policy());
    let rest = GateState::new(&spec);
    assert_eq!(precheck(&spec, &rest, &healthy(), at(0)), Ok(()));

    let refusal =
        |state: &GateState, inputs: &Inputs| precheck(&spec, state, inputs, at(0)).unwrap_err();
    let secondary_down = inputs(&[(P, UP), (S, DOWN)]);
    let why = refusal(&rest, &secondary_down);
    assert_eq!(why.code(), "target_not_healthy");
    assert!(why.to_string().contains("euw1"), "{why}");
    let unproven = inputs(&[(P, UP), (S, decided(State::Healthy, false))]);
    assert_eq!(refusal(&rest, &unproven).code(), "target_not_healthy");
    let why = refusal(&rest, &inputs(&[(P, DOWN), (S, UP)]));
    assert!(why.to_string().contains("use1"), "{why}");
    assert_eq!(
        refusal(&rest, &inputs(&[(P, UP)])).code(),
        "target_not_healthy"
    );

    let mut frozen = rest.clone();
    frozen.freeze(op("bob"), at(0));
    assert_eq!(refusal(&frozen, &healthy()).code(), "frozen");

    let mut running = rest.clone();
    running.start_drill(drill(false));
    assert_eq!(
        refusal(&running, &healthy()),
        DrillRefusal::AlreadyRunning { seq: 42 }
    );
    // Ended but not finished (the failback is still due): still in force.
    running.drill_tick(at(60_000), None);
    assert_eq!(refusal(&running, &healthy()).code(), "already_running");

    let mut failed_over = rest.clone();
    round(
        &spec,
        &mut failed_over,
        &inputs(&[(P, DOWN), (S, UP)]),
        at(0),
    );
    assert_eq!(refusal(&failed_over, &healthy()).code(), "not_at_primary");

    let mut overridden = GateState::new(&spec);
    overridden.set_override(
        Override {
            desired: DesiredState::Failover { active: t("euw1") },
            force: false,
            by: op("bob"),
            seq: 1,
            expires_at: at(1_000),
        },
        at(0),
    );
    assert_eq!(refusal(&overridden, &healthy()).code(), "frozen");

    // Two changes (failover and failback) must fit in the velocity window.
    let tight = pair(GatePolicy {
        max_changes: 3,
        ..policy()
    });
    let mut busy = GateState::new(&tight);
    busy.restore_changes(&tight, [at(0), at(1)]);
    assert_eq!(
        precheck(&tight, &busy, &healthy(), at(10)),
        Err(DrillRefusal::VelocityBudget { remaining: 1 })
    );
    // ...and they age out of it.
    assert_eq!(precheck(&tight, &busy, &healthy(), at(3_600_001)), Ok(()));
}

#[test]
fn an_abort_needs_a_running_drill() {
    let spec = pair(policy());
    let mut state = GateState::new(&spec);
    assert_eq!(precheck_abort(&state, at(0)), Err(DrillRefusal::NotRunning));
    state.start_drill(drill(false));
    assert_eq!(precheck_abort(&state, at(0)), Ok(()));
    assert_eq!(
        precheck_abort(&state, at(60_000)),
        Err(DrillRefusal::NotRunning),
        "its time is over"
    );
}

#[test]
fn a_drill_ends_at_its_time_or_at_once_on_an_abort_check() {
    let spec = pair(policy());
    let mut state = GateState::new(&spec);
    state.start_drill(drill(false));
    assert_eq!(state.drill_tick(at(59_999), None), None);
    let end = state.drill_tick(at(60_400), None).unwrap();
    assert_eq!(
        (end.at, end.cause.code()),
        (at(60_000), "elapsed"),
        "ends at its scheduled time, however late the round"
    );
    assert_eq!(state.drill_tick(at(70_000), Some(c(S))), None, "once");

    let mut state = GateState::new(&spec);
    state.start_drill(drill(false));
    let end = state.drill_tick(at(5_000), Some(c(S))).unwrap();
    assert_eq!(end.cause, DrillEndCause::AbortCheck(c(S)));
    assert_eq!(end.at, at(5_000));
    assert!(!state.drill().unwrap().running(at(5_001)));
    let aborted = DrillEndCause::Aborted {
        by: op("bob"),
        seq: 9,
    };
    assert_eq!(state.end_drill(at(6_000), aborted), None, "already ended");
}

#[test]
fn the_drill_authorises_its_failback_and_nothing_else() {
    let spec = pair(policy());
    let mut state = GateState::new(&spec);
    state.start_drill(drill(false));
    let ch = change(round(
        &spec,
        &mut state,
        &inputs(&[(P, DOWN), (S, UP)]),
        at(1_000),
    ));
    assert_eq!(
        (ch.reason, &ch.authority, ch.mode),
        (ChangeReason::Failover, &Authority::Automatic, Mode::Live),
        "the failover is an ordinary, automatic one"
    );
    // While the drill runs, a recovered primary still waits (it cannot recover in a drill
    // unless its real probe and the drill disagree; the drill's authority starts at its end).
    let back = healthy();
    assert_eq!(
        evaluate(&spec, &state, &back, at(30_000)).code(),
        "awaiting_approval"
    );
    assert_eq!(state.finish_drill(&spec, at(30_000)), None, "still running");
    state.drill_tick(at(60_000), None);
    assert_eq!(
        state.finish_drill(&spec, at(60_000)),
        None,
        "not back at the primary yet"
    );
    let ch = change(round(&spec, &mut state, &back, at(61_000)));
    assert_eq!(ch.reason, ChangeReason::Failback);
    assert_eq!(
        ch.authority,
        Authority::Drill {
            by: op("alice"),
            seq: 42
        }
    );
    assert_eq!(proofs(&ch), [(P.into(), Outcome::Healthy)]);
    let done = state.finish_drill(&spec, at(61_000)).unwrap();
    assert!(done.back_at_primary);
    assert_eq!(done.drill.seq, 42);
    assert!(state.drill().is_none());

    // After the grace the drill authorises nothing, and it is finished elsewhere.
    let mut late = GateState::new(&spec);
    late.start_drill(drill(false));
    round(&spec, &mut late, &inputs(&[(P, DOWN), (S, UP)]), at(1_000));
    late.drill_tick(at(60_000), None);
    let limit = at(60_000 + DRILL_FAILBACK_GRACE_MS);
    assert!(matches!(
        evaluate(&spec, &late, &back, limit),
        Evaluation::Change(_)
    ));
    assert_eq!(
        evaluate(&spec, &late, &back, limit.plus(1)).code(),
        "awaiting_approval"
    );
    let done = late.finish_drill(&spec, limit.plus(1)).unwrap();
    assert!(!done.back_at_primary);
}

#[test]
fn the_drill_is_no_rpo_approval() {
    let spec = pair(GatePolicy {
        max_rpo_ms: Some(5_000),
        ..policy()
    });
    let mut state = GateState::new(&spec);
    let lag = |ms| (LAG, (State::Healthy, true, Some(ms)));
    round(
        &spec,
        &mut state,
        &inputs(&[(P, UP), (S, UP), lag(9_000)]),
        at(0),
    );
    state.start_drill(drill(false));
    let e = round(
        &spec,
        &mut state,
        &inputs(&[(P, DOWN), (S, UP), lag(9_000)]),
        at(1_000),
    );
    assert_eq!(e.code(), "rpo_exceeded", "a drill meets the real RPO rule");
    state.drill_tick(at(60_000), None);
    assert_eq!(
        evaluate(
            &spec,
            &state,
            &inputs(&[(P, DOWN), (S, UP), lag(9_000)]),
            at(61_000)
        )
        .code(),
        "rpo_exceeded"
    );
}

#[test]
fn a_dry_run_drill_makes_every_automatic_change_a_dry_run_until_it_is_finished() {
    let spec = pair(policy());
    let mut state = GateState::new(&spec);
    state.start_drill(drill(true));
    let ch = change(round(
        &spec,
        &mut state,
        &inputs(&[(P, DOWN), (S, UP)]),
        at(1_000),
    ));
    assert_eq!(ch.mode, Mode::DryRun);
    state.drill_tick(at(60_000), None);
    let ch = change(round(&spec, &mut state, &healthy(), at(61_000)));
    assert_eq!((ch.mode, ch.reason), (Mode::DryRun, ChangeReason::Failback));
    assert!(state.finish_drill(&spec, at(61_000)).is_some());
    let ch = change(evaluate(
        &spec,
        &state,
        &inputs(&[(P, DOWN), (S, UP)]),
        at(70_000),
    ));
    assert_eq!(ch.mode, Mode::Live, "the drill is over: real again");
}
