//! Failover pair: one test per rule.

use super::*;

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

/// One round as the agent runs it: evaluate, commit a change, observe.
fn round(spec: &GateSpec, state: &mut GateState, inputs: &Inputs, now: UnixMillis) -> Evaluation {
    let e = evaluate(spec, state, inputs, now);
    if let Evaluation::Change(ch) = &e {
        state.commit(spec, ch, now).unwrap();
    }
    state.observe(spec, inputs, &e, now);
    e
}

fn active(state: &GateState) -> String {
    state.current().to_string()
}

#[test]
fn fails_over_with_both_certificates_and_only_then() {
    let spec = pair(policy());
    let mut state = GateState::new(&spec);
    let table: [(&str, _, _, &str); 6] = [
        ("all healthy", UP, UP, "no_change"),
        (
            "primary decided down without proof",
            decided(State::Unhealthy, false),
            UP,
            "no_certificate",
        ),
        (
            "standby healthy without proof",
            DOWN,
            decided(State::Healthy, false),
            "no_certificate",
        ),
        ("both down: fail open", DOWN, DOWN, "fail_open"),
        (
            "both down, no proof: fail open",
            decided(State::Unhealthy, false),
            decided(State::Unhealthy, false),
            "fail_open",
        ),
        ("standby down, primary up", UP, DOWN, "no_change"),
    ];
    for (name, p, s, code) in table {
        let e = evaluate(&spec, &state, &inputs(&[(P, p), (S, s)]), at(0));
        assert_eq!(e.code(), code, "{name}");
    }
    assert!(hold(&evaluate(
        &spec,
        &state,
        &inputs(&[(P, DOWN), (S, DOWN)]),
        at(0)
    ))
    .is_alert());
    let e = evaluate(&spec, &state, &inputs(&[(P, UP)]), at(0));
    assert_eq!(hold(&e), &HoldReason::UnknownCheck(c(S)));

    let ch = change(round(
        &spec,
        &mut state,
        &inputs(&[(P, DOWN), (S, UP)]),
        at(0),
    ));
    assert_eq!(
        (ch.reason, &ch.authority),
        (ChangeReason::Failover, &Authority::Automatic)
    );
    assert_eq!(
        proofs(&ch),
        [(P.into(), Outcome::Unhealthy), (S.into(), Outcome::Healthy)]
    );
    assert_eq!(
        (ch.from.to_string(), ch.to.to_string()),
        ("active=use1".into(), "active=euw1".into())
    );
    assert_eq!(active(&state), "active=euw1");
    assert_eq!(
        evaluate(&spec, &state, &inputs(&[(P, DOWN), (S, UP)]), at(1)).code(),
        "no_change"
    );
}

#[test]
fn failback_waits_for_an_unexpired_approval_of_the_primary() {
    let spec = pair(policy());
    let mut state = GateState::new(&spec);
    round(&spec, &mut state, &inputs(&[(P, DOWN), (S, UP)]), at(0));
    let back = inputs(&[(P, UP), (S, UP)]);
    let e = round(&spec, &mut state, &back, at(10));
    let want = HoldReason::AwaitingApproval {
        to: t("use1"),
        cause: ApprovalCause::Failback,
    };
    assert_eq!((hold(&e), e.code()), (&want, "awaiting_approval"));
    assert_eq!(want.awaiting_approval_for(), Some(&t("use1")));
    // Primary healthy without proof, or still down: nothing to approve yet.
    let unproven = inputs(&[(P, decided(State::Healthy, false)), (S, UP)]);
    assert_eq!(
        evaluate(&spec, &state, &unproven, at(10)).code(),
        "no_certificate"
    );
    // An approval for the wrong target, or an expired one, does not count.
    state.approve(approval("euw1", at(1_000)));
    assert_eq!(
        evaluate(&spec, &state, &back, at(20)).code(),
        "awaiting_approval"
    );
    state.approve(approval("use1", at(15)));
    assert_eq!(
        evaluate(&spec, &state, &back, at(20)).code(),
        "awaiting_approval"
    );
    state.approve(approval("use1", at(1_000)));
    let ch = change(round(&spec, &mut state, &back, at(20)));
    assert_eq!(ch.reason, ChangeReason::Failback);
    assert_eq!(
        ch.authority,
        Authority::Approved(approval("use1", at(1_000)))
    );
    assert_eq!(proofs(&ch), [(P.into(), Outcome::Healthy)]);
    assert_eq!(
        (active(&state), state.approval()),
        ("active=use1".into(), None)
    );
}

#[test]
fn failback_to_a_recovered_primary_needs_approval_even_when_the_secondary_is_down() {
    let spec = pair(policy());
    let mut state = GateState::new(&spec);
    round(&spec, &mut state, &inputs(&[(P, DOWN), (S, UP)]), at(0));
    let e = evaluate(&spec, &state, &inputs(&[(P, UP), (S, DOWN)]), at(10));
    assert_eq!(e.code(), "awaiting_approval");
    // With auto_failback the gate goes back by itself, carrying both certificates.
    let spec = pair(GatePolicy {
        auto_failback: true,
        ..policy()
    });
    let mut state = GateState::new(&spec);
    round(&spec, &mut state, &inputs(&[(P, DOWN), (S, UP)]), at(0));
    let ch = change(evaluate(
        &spec,
        &state,
        &inputs(&[(P, UP), (S, DOWN)]),
        at(10),
    ));
    assert_eq!(
        (ch.reason, &ch.authority),
        (ChangeReason::Failback, &Authority::Automatic)
    );
    assert_eq!(
        proofs(&ch),
        [(S.into(), Outcome::Unhealthy), (P.into(), Outcome::Healthy)]
    );
}

fn lagging(lag: Option<u64>) -> Row {
    (State::Healthy, true, lag)
}

#[test]
fn rpo_uses_the_lag_seen_while_the_primary_was_still_healthy() {
    let spec = pair(GatePolicy {
        max_rpo_ms: Some(5_000),
        ..policy()
    });
    // (case, lag seen while the primary was healthy (None: never seen), outcome, RPO).
    type Case = (&'static str, Option<Option<u64>>, &'static str, Option<u64>);
    let table: [Case; 4] = [
        (
            "within the limit",
            Some(Some(3_000)),
            "failover",
            Some(3_000),
        ),
        ("at the limit", Some(Some(5_000)), "failover", Some(5_000)),
        ("over the limit", Some(Some(8_000)), "rpo_exceeded", None),
        ("unknown lag", Some(None), "rpo_unknown", None),
    ];
    for (name, seen, code, rpo) in
        table
            .into_iter()
            .chain([("never seen", None, "rpo_unknown", None)])
    {
        let mut state = GateState::new(&spec);
        if let Some(lag) = seen {
            let healthy = inputs(&[(P, UP), (S, UP), (LAG, lagging(lag))]);
            round(&spec, &mut state, &healthy, at(0));
        }
        // Once the primary is gone the measured lag grows at wall-clock rate; that growth is
        // not data loss and must not count.
        let lost = inputs(&[(P, DOWN), (S, UP), (LAG, lagging(Some(60_000)))]);
        let e = round(&spec, &mut state, &lost, at(10_000));
        assert_eq!(e.code(), code, "{name}");
        if let Evaluation::Change(ch) = e {
            assert_eq!(ch.rpo_lag_ms, rpo, "{name}");
        }
    }
}

#[test]
fn an_approval_lets_an_over_limit_failover_proceed() {
    let spec = pair(GatePolicy {
        max_rpo_ms: Some(5_000),
        ..policy()
    });
    let mut state = GateState::new(&spec);
    round(
        &spec,
        &mut state,
        &inputs(&[(P, UP), (S, UP), (LAG, lagging(Some(30_000)))]),
        at(0),
    );
    let lost = inputs(&[(P, DOWN), (S, UP), (LAG, lagging(Some(31_000)))]);
    let e = round(&spec, &mut state, &lost, at(1_000));
    let cause = ApprovalCause::RpoExceeded {
        lag_ms: 30_000,
        max_rpo_ms: 5_000,
    };
    assert_eq!(
        hold(&e),
        &HoldReason::AwaitingApproval {
            to: t("euw1"),
            cause
        }
    );
    assert_eq!(
        state.last_hold().map(|(h, since)| (h.code(), *since)),
        Some(("rpo_exceeded", at(1_000)))
    );
    round(&spec, &mut state, &lost, at(2_000));
    assert_eq!(
        state.last_hold().map(|(_, since)| *since),
        Some(at(1_000)),
        "hold-since is kept"
    );
    state.approve(approval("euw1", at(60_000)));
    let ch = change(round(&spec, &mut state, &lost, at(3_000)));
    assert_eq!(
        (ch.reason, ch.rpo_lag_ms),
        (ChangeReason::Failover, Some(30_000))
    );
    assert!(matches!(ch.authority, Authority::Approved(_)));
    // The new standby is the old primary, which has no lag check: its lag is unknown.
    let memory = state
        .standby_lag()
        .map(|m| (m.target.to_string(), m.lag_ms));
    assert_eq!(
        (state.last_hold(), memory),
        (None, Some(("use1".into(), None)))
    );
}

#[test]
fn an_approval_is_spent_by_the_move_it_allowed() {
    let policy = GatePolicy {
        max_rpo_ms: Some(5_000),
        auto_failback: true,
        ..policy()
    };
    let spec = pair(policy);
    let mut state = GateState::new(&spec);
    let healthy = inputs(&[(P, UP), (S, UP), (LAG, lagging(Some(30_000)))]);
    let lost = inputs(&[(P, DOWN), (S, UP), (LAG, lagging(Some(30_000)))]);
    round(&spec, &mut state, &healthy, at(0));
    state.approve(approval("euw1", at(600_000)));
    assert_eq!(
        round(&spec, &mut state, &lost, at(1_000)).code(),
        "failover"
    );
    assert_eq!(state.approval(), None);
    // Automatic failback (the primary has no lag check), then the primary is lost again:
    // the earlier approval does not cover this second over-limit failover.
    assert_eq!(
        round(&spec, &mut state, &healthy, at(2_000)).code(),
        "failback"
    );
    round(&spec, &mut state, &healthy, at(3_000));
    assert_eq!(
        round(&spec, &mut state, &lost, at(4_000)).code(),
        "rpo_exceeded"
    );
}

#[test]
fn a_frozen_gate_makes_no_automatic_change_but_still_reports_fail_open() {
    let spec = pair(policy());
    let mut state = GateState::new(&spec);
    state.freeze(op("alice"), at(0));
    assert_eq!(
        evaluate(&spec, &state, &inputs(&[(P, DOWN), (S, UP)]), at(1)).code(),
        "frozen"
    );
    assert_eq!(
        evaluate(&spec, &state, &inputs(&[(P, DOWN), (S, DOWN)]), at(1)).code(),
        "fail_open"
    );
    assert_eq!(
        evaluate(&spec, &state, &inputs(&[(P, UP), (S, UP)]), at(1)).code(),
        "no_change"
    );
    state.approve(approval("euw1", at(100)));
    assert_eq!(
        evaluate(&spec, &state, &inputs(&[(P, DOWN), (S, UP)]), at(1)).code(),
        "frozen"
    );
    state.unfreeze();
    assert_eq!(
        evaluate(&spec, &state, &inputs(&[(P, DOWN), (S, UP)]), at(1)).code(),
        "failover"
    );
}

fn override_to(active: &str, force: bool, expires_at: UnixMillis) -> Override {
    Override {
        desired: DesiredState::Failover { active: t(active) },
        force,
        by: op("bob"),
        seq: 9,
        expires_at,
    }
}

#[test]
fn override_bypasses_freeze_and_pacing_but_not_target_health_unless_forced() {
    let spec = pair(GatePolicy {
        wait_period_ms: 60_000,
        max_changes: 1,
        ..policy()
    });
    let mut state = GateState::new(&spec);
    round(&spec, &mut state, &inputs(&[(P, DOWN), (S, UP)]), at(0));
    // Back to the primary, which is down: refused without force.
    state.set_override(override_to("use1", false, at(10_000)), at(1));
    let down = inputs(&[(P, DOWN), (S, UP)]);
    assert_eq!(
        hold(&evaluate(&spec, &state, &down, at(2))),
        &HoldReason::TargetUnhealthy(t("use1"))
    );
    let unproven = inputs(&[(P, decided(State::Healthy, false)), (S, UP)]);
    assert_eq!(
        evaluate(&spec, &state, &unproven, at(2)).code(),
        "no_certificate"
    );
    // Forced: planned at once (wait period and velocity notwithstanding), with the evidence
    // that exists (here the primary's Unhealthy certificate does not fit, so none).
    state.set_override(override_to("use1", true, at(10_000)), at(3));
    let ch = change(round(&spec, &mut state, &down, at(4)));
    assert_eq!(ch.reason, ChangeReason::Override);
    assert_eq!(
        ch.authority,
        Authority::Override {
            by: op("bob"),
            seq: 9,
            force: true
        }
    );
    assert!(ch.certificates.is_empty());
    // Written: the override is spent and the gate stays frozen.
    assert_eq!(
        (state.pending_override(), state.frozen().map(|f| &f.by)),
        (None, Some(&op("bob")))
    );
    assert_eq!(evaluate(&spec, &state, &down, at(100_000)).code(), "frozen");
    // A non-forced override to a healthy target carries its Healthy certificate, and the
    // Unhealthy certificate of the target it drains.
    state.set_override(override_to("euw1", false, at(200_000)), at(100_000));
    let ch = change(evaluate(&spec, &state, &down, at(100_001)));
    assert_eq!(
        proofs(&ch),
        [(P.into(), Outcome::Unhealthy), (S.into(), Outcome::Healthy)]
    );
    // An expired pending override is ignored (and dropped by observe).
    assert_eq!(evaluate(&spec, &state, &down, at(200_001)).code(), "frozen");
    state.observe(
        &spec,
        &down,
        &evaluate(&spec, &state, &down, at(200_001)),
        at(200_001),
    );
    assert_eq!(state.pending_override(), None);
}

#[test]
fn dry_run_evaluates_identically_and_says_so() {
    let live = pair(policy());
    let kind = live.kind().clone();
    let dry = GateSpec::new(gate_id("app"), kind, policy(), Mode::DryRun).unwrap();
    let i = inputs(&[(P, DOWN), (S, UP)]);
    let (a, b) = (
        change(evaluate(&live, &GateState::new(&live), &i, at(0))),
        change(evaluate(&dry, &GateState::new(&dry), &i, at(0))),
    );
    assert_eq!((a.to, a.reason, a.mode), (b.to, b.reason, Mode::Live));
    assert_eq!((b.mode, b.mode.as_str()), (Mode::DryRun, "dry-run"));
}

#[test]
fn resync_adopts_dns_read_back_and_keeps_freeze_and_history() {
    let spec = pair(GatePolicy {
        max_changes: 2,
        window_ms: 1_000,
        ..policy()
    });
    let mut state = GateState::new(&spec);
    state.freeze(op("alice"), at(0));
    state
        .resync(&spec, DesiredState::Failover { active: t("euw1") })
        .unwrap();
    assert_eq!(active(&state), "active=euw1");
    assert!(
        state.frozen().is_some(),
        "a re-read keeps the operator's freeze"
    );
    assert!(state
        .resync(&spec, DesiredState::weighted([(t("use1"), 1)]))
        .is_err());
    assert!(state
        .resync(&spec, DesiredState::Failover { active: t("nope") })
        .is_err());
}

#[test]
fn restored_change_times_count_against_the_velocity_rule() {
    let spec = pair(GatePolicy {
        max_changes: 2,
        window_ms: 10_000,
        ..policy()
    });
    let mut state = GateState::new(&spec);
    // Three changes before a restart; only the latest `max_changes` are kept.
    state.restore_changes(&spec, [at(300), at(100), at(200), at(200)]);
    assert_eq!(state.changes().collect::<Vec<_>>(), [at(200), at(300)]);
    assert_eq!(
        evaluate(&spec, &state, &inputs(&[(P, DOWN), (S, UP)]), at(5_000)).code(),
        "velocity"
    );
    assert_eq!(
        evaluate(&spec, &state, &inputs(&[(P, DOWN), (S, UP)]), at(10_201)).code(),
        "failover"
    );
}

#[test]
fn a_known_lag_survives_rounds_without_one_for_at_most_max_rpo() {
    let spec = pair(GatePolicy {
        max_rpo_ms: Some(5_000),
        ..policy()
    });
    let healthy = |lag| inputs(&[(P, UP), (S, UP), (LAG, lagging(lag))]);
    let lost = inputs(&[(P, DOWN), (S, UP), (LAG, lagging(None))]);

    // A lag of 1 s, then one round where the quorum had no lag: still 1 s.
    let mut state = GateState::new(&spec);
    round(&spec, &mut state, &healthy(Some(1_000)), at(0));
    round(&spec, &mut state, &healthy(None), at(1_000));
    let m = state.standby_lag().unwrap();
    assert_eq!((m.lag_ms, m.at), (Some(1_000), at(0)));
    let e = round(&spec, &mut state, &lost, at(2_000));
    assert_eq!(e.code(), "failover");

    // Unknown for longer than max_rpo: the old measurement no longer covers the writes
    // since, so the RPO is unknown.
    let mut state = GateState::new(&spec);
    round(&spec, &mut state, &healthy(Some(1_000)), at(0));
    round(&spec, &mut state, &healthy(None), at(5_001));
    assert_eq!(state.standby_lag().unwrap().lag_ms, None);
    assert_eq!(
        round(&spec, &mut state, &lost, at(6_000)).code(),
        "rpo_unknown"
    );
}

#[test]
fn an_undecided_check_holds_the_gate_and_never_counts_as_healthy() {
    let spec = pair(policy());
    let undecided = |decided: &[(&str, Row)], undecided: &str| {
        let mut i = inputs(decided);
        i.insert_undecided(c(undecided));
        i
    };
    // After a restart the primary is undecided while the standby is Healthy by quorum: had
    // the primary been read as its placeholder (or as Healthy), this would fail over or stay.
    let mut state = GateState::new(&spec);
    for (name, i) in [
        ("primary undecided", undecided(&[(S, UP)], P)),
        ("standby undecided", undecided(&[(P, DOWN)], S)),
        (
            "primary undecided, row dropped",
            undecided(&[(P, DOWN), (S, UP)], P),
        ),
    ] {
        let e = round(&spec, &mut state, &i, at(0));
        assert!(
            matches!(hold(&e), HoldReason::Undecided(_)),
            "{name}: {e:?}"
        );
        assert_eq!(e.code(), "undecided", "{name}");
        assert!(!hold(&e).is_alert(), "{name}: a restart is not an alert");
    }
    assert_eq!(active(&state), "active=use1");
    // Once decided, the same inputs fail over.
    let e = round(&spec, &mut state, &inputs(&[(P, DOWN), (S, UP)]), at(1_000));
    assert_eq!(change(e).reason, ChangeReason::Failover);
}
