//! Spec validation, state shape checks, commit errors and inputs from an engine.

use super::*;
use crate::book::BookConfig;
use crate::decision::{After, DecisionPolicy};
use crate::engine::Engine;

fn target(id: &str, check: &str) -> Target {
    Target::new(t(id), c(check))
}

fn weighted(targets: Vec<(Target, u8)>) -> GateKind {
    GateKind::Weighted {
        targets: targets
            .into_iter()
            .map(|(target, weight)| WeightedTarget { target, weight })
            .collect(),
    }
}

fn errors(kind: GateKind, policy: GatePolicy) -> Vec<GateSpecError> {
    GateSpec::new(gate_id("g"), kind, policy, Mode::Live).unwrap_err()
}

#[test]
fn validation_collects_every_problem() {
    let bad = GatePolicy {
        min_serving: 0,
        max_changes: 0,
        window_ms: 0,
        max_rpo_ms: Some(1),
        ..GatePolicy::default()
    };
    let kind = GateKind::Failover {
        primary: target("p", "same"),
        secondary: target("p", "same"),
    };
    assert_eq!(
        errors(kind, bad),
        [
            GateSpecError::RpoWithoutLagCheck(t("p")),
            GateSpecError::DuplicateTarget(t("p")),
            GateSpecError::SharedCheck(c("same")),
            GateSpecError::MinServing { min: 0, max: 1 },
            GateSpecError::ZeroMaxChanges,
            GateSpecError::ZeroWindow,
        ]
    );
    let kind = GateKind::Failover {
        primary: target("p", "cp").with_lag_check(c("lag")),
        secondary: target("s", "cs"),
    };
    let two = GatePolicy {
        min_serving: 2,
        ..GatePolicy::default()
    };
    assert_eq!(
        errors(kind, two),
        [
            GateSpecError::LagCheckWithoutRpo(t("p")),
            GateSpecError::MinServing { min: 2, max: 1 }
        ]
    );
    let kind = weighted(vec![(target("a", "ca").with_lag_check(c("l")), 0)]);
    assert_eq!(
        errors(
            kind,
            GatePolicy {
                min_serving: 2,
                ..GatePolicy::default()
            }
        ),
        [
            GateSpecError::RpoOnWeighted,
            GateSpecError::ZeroWeight(t("a")),
            GateSpecError::MinServing { min: 2, max: 1 }
        ]
    );
    assert_eq!(
        errors(weighted(vec![]), GatePolicy::default()),
        [GateSpecError::NoTargets]
    );
    let many = (0..=MAX_TARGETS)
        .map(|i| (target(&format!("t{i}"), &format!("c{i}")), 1))
        .collect();
    assert_eq!(
        errors(weighted(many), GatePolicy::default()),
        [GateSpecError::TooManyTargets(101)]
    );
}

fn pair() -> GateSpec {
    let kind = GateKind::Failover {
        primary: target("p", "cp"),
        secondary: target("s", "cs").with_lag_check(c("lag")),
    };
    let policy = GatePolicy {
        max_rpo_ms: Some(1_000),
        ..GatePolicy::default()
    };
    GateSpec::new(gate_id("g"), kind, policy, Mode::Live).unwrap()
}

fn abc(min_serving: usize) -> GateSpec {
    let kind = weighted(vec![(target("b", "cb"), 5), (target("a", "ca"), 1)]);
    let policy = GatePolicy {
        min_serving,
        ..GatePolicy::default()
    };
    GateSpec::new(gate_id("w"), kind, policy, Mode::Live).unwrap()
}

#[test]
fn specs_know_their_targets_checks_and_shapes() {
    let p = pair();
    let ids: Vec<_> = p.targets().iter().map(|t| t.id.to_string()).collect();
    assert_eq!(ids, ["p", "s"]);
    assert_eq!(
        p.checks()
            .into_iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>(),
        ["cp", "cs", "lag"]
    );
    assert_eq!(p.normal_state(), DesiredState::Failover { active: t("p") });
    assert!(p
        .check_shape(&DesiredState::Failover { active: t("s") })
        .is_ok());
    assert_eq!(
        p.check_shape(&DesiredState::Failover { active: t("x") }),
        Err(StateError::UnknownTarget(t("x")))
    );
    assert!(matches!(
        p.check_shape(&DesiredState::weighted([])),
        Err(StateError::WrongKind { .. })
    ));
    let w = abc(2);
    assert_eq!(w.normal_state().to_string(), "a=1,b=5");
    let only_a = DesiredState::weighted([(t("a"), 1)]);
    assert_eq!(
        w.check_shape(&only_a),
        Err(StateError::MissingTarget(t("b")))
    );
    let extra = DesiredState::weighted([(t("a"), 1), (t("b"), 1), (t("z"), 1)]);
    assert_eq!(
        w.check_shape(&extra),
        Err(StateError::UnknownTarget(t("z")))
    );
    let drained = DesiredState::weighted([(t("a"), 0), (t("b"), 9)]);
    assert!(w.check_shape(&drained).is_ok());
    assert_eq!(
        w.check_override(&drained),
        Err(StateError::BelowMinServing { serving: 1, min: 2 })
    );
    assert!(GateState::with_current(&w, only_a).is_err());
}

#[test]
fn commit_refuses_stale_foreign_and_misshapen_changes() {
    let spec = pair();
    let mut state = GateState::new(&spec);
    let planned = |from: &str, to: &str, gate: &str| PlannedChange {
        gate: gate_id(gate),
        mode: Mode::Live,
        from: DesiredState::Failover { active: t(from) },
        to: DesiredState::Failover { active: t(to) },
        reason: ChangeReason::Failover,
        authority: Authority::Automatic,
        certificates: vec![],
        rpo_lag_ms: None,
    };
    assert!(matches!(
        state.commit(&spec, &planned("p", "s", "other"), at(0)),
        Err(CommitError::WrongGate(_))
    ));
    assert!(matches!(
        state.commit(&spec, &planned("s", "p", "g"), at(0)),
        Err(CommitError::Stale { .. })
    ));
    assert!(matches!(
        state.commit(&spec, &planned("p", "x", "g"), at(0)),
        Err(CommitError::Shape(_))
    ));
    assert_eq!(state.last_change(), None);
    state.commit(&spec, &planned("p", "s", "g"), at(5)).unwrap();
    assert_eq!(
        (state.current().to_string(), state.last_change()),
        ("active=s".into(), Some(at(5)))
    );
}

#[test]
fn inputs_from_engine_take_the_agreeing_certificate_and_the_largest_lag() {
    let checks = [c("api"), c("db")];
    let policy = DecisionPolicy {
        fall_after: After::Rounds(1),
        rise_after: After::Rounds(1),
        hold_down_ms: 0,
        ..DecisionPolicy::default()
    };
    let config = BookConfig {
        max_ballot_bytes: 1 << 16,
        max_clock_skew_ms: 0,
        max_valid_for_ms: u64::from(u32::MAX),
        config_digest: DIGEST,
    };
    let mut engine = Engine::new(
        membership(),
        config,
        checks.iter().map(|c| (c.clone(), policy)),
        T0,
    );
    for (i, (api, lag)) in [
        (Status::Unhealthy, Some(300)),
        (Status::Unhealthy, Some(900)),
        (Status::Healthy, None),
    ]
    .into_iter()
    .enumerate()
    {
        let obs = |check: &str, status, lag: Option<u64>| {
            let o = Observation::new(c(check), status, Reason::from_static("ok"), 1, T0);
            match lag {
                Some(l) => o.with_lag_ms(l),
                None => o,
            }
        };
        let id = AgentId::new(format!("m{i}")).unwrap();
        let obs = vec![obs("api", api, None), obs("db", Status::Healthy, lag)];
        let b = Ballot::new(id, 1, T0, 15_000, DIGEST, obs).unwrap();
        let wire = SignedBallot::sign(&b, &key(u8::try_from(i).unwrap())).to_wire();
        engine.handle_ballot(T0, &wire).unwrap();
    }
    engine.evaluate(T0);
    let inputs = Inputs::from_engine(&engine);
    let api = inputs.get(&c("api")).unwrap();
    assert_eq!(api.state, State::Unhealthy);
    assert_verifies(api.evidence(&c("api"), State::Unhealthy).unwrap());
    assert!(api.evidence(&c("api"), State::Healthy).is_none());
    assert!(
        api.evidence(&c("db"), State::Unhealthy).is_none(),
        "a certificate for another check"
    );
    // db: Healthy by all three; the certificate's ballots (the first Q) report 300 and 900.
    let db = inputs.get(&c("db")).unwrap();
    assert_eq!((db.state, db.lag_ms), (State::Healthy, Some(900)));
    assert!(inputs.get(&c("nope")).is_none());
}

#[test]
fn inputs_from_a_restored_engine_leave_undecided_checks_out() {
    use crate::decision::{Restored, Start};
    let policy = DecisionPolicy::default();
    let config = BookConfig {
        max_ballot_bytes: 1 << 16,
        max_clock_skew_ms: 0,
        max_valid_for_ms: u64::from(u32::MAX),
        config_digest: DIGEST,
    };
    let restored = Start::Restored(Restored {
        state: State::Unhealthy,
        since: T0,
        last_transition: None,
    });
    let mut engine = Engine::restore(
        membership(),
        config,
        [
            (c("api"), policy, Start::Undecided),
            (c("db"), policy, restored),
            (c("web"), policy, Start::Initial),
        ],
        T0,
    );
    let inputs = Inputs::from_engine(&engine);
    assert!(inputs.is_undecided(&c("api")) && inputs.get(&c("api")).is_none());
    let db = inputs.get(&c("db")).unwrap();
    assert_eq!(
        (db.state, db.certificate.is_none()),
        (State::Unhealthy, true)
    );
    assert_eq!(inputs.get(&c("web")).unwrap().state, State::Healthy);
    assert!(!inputs.is_undecided(&c("db")) && !inputs.is_undecided(&c("web")));

    // Two members say api is Healthy: the undecided check takes it at once (fall/rise are 3
    // and 5 rounds by default), with its certificate, and no transition is reported.
    for i in 0..2u8 {
        let obs = ["api", "db", "web"]
            .map(|k| Observation::new(c(k), Status::Healthy, Reason::from_static("ok"), 1, T0));
        let id = AgentId::new(format!("m{i}")).unwrap();
        let b = Ballot::new(id, 1, T0, 15_000, DIGEST, obs.to_vec()).unwrap();
        engine
            .handle_ballot(T0, &SignedBallot::sign(&b, &key(i)).to_wire())
            .unwrap();
    }
    assert!(engine.evaluate(T0).is_empty());
    let inputs = Inputs::from_engine(&engine);
    let api = inputs.get(&c("api")).unwrap();
    assert_eq!(api.state, State::Healthy);
    assert_verifies(api.evidence(&c("api"), State::Healthy).unwrap());
    assert!(!inputs.is_undecided(&c("api")));
    // The restored check keeps its state under hysteresis (one Healthy round of five).
    assert_eq!(inputs.get(&c("db")).unwrap().state, State::Unhealthy);
    let basis = |k: &str| engine.machine(&c(k)).unwrap().basis().as_str();
    assert_eq!([basis("api"), basis("db"), basis("web")], ["decided"; 3]);
}
