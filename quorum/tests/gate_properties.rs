//! Property tests of the gate safety rules: random runs checked after every round.
//!
//! A run builds one gate — a failover pair (with or without auto-failback and an RPO rule)
//! or a weighted set of three (min_serving 1–3) — with random pacing, then applies random
//! steps: decisions for each check (Healthy/Unhealthy, with or without a certificate, or
//! missing), replication lags, time passing, operator freeze/unfreeze/approve/override,
//! failing writes, and evaluation rounds (evaluate → commit unless the write fails →
//! observe). After every round, for the evaluation it produced:
//!
//! 1. a change starts from the current DNS, fits the gate, and every certificate it carries
//!    verifies (`verify_certificate`) and matches the decided state of its check;
//! 2. never below `min_serving` (unless fewer served before and it does not reduce them);
//! 3. never traffic to a target not decided Healthy with a certificate (except a forced
//!    override), and every target drained because it is down carries its Unhealthy one;
//! 4. automatic changes: not while frozen, `wait_period_ms` after the previous change, fewer
//!    than `max_changes` in `window_ms` before, never when every target looks down;
//! 5. no failback without an unexpired approval when `auto_failback = false`;
//! 6. no move into a lag-checked target unless the model's lag — the standby's lag as last
//!    seen while the active was Healthy by quorum — is known and within `max_rpo_ms`, or an
//!    unexpired approval names the target;
//! 7. an override change is exactly the pending, unexpired override;
//! 8. game-day drills: one starts only when `drill::precheck` allows it (the pair at rest at
//!    its primary, both proven Healthy, not frozen, no drill in force); it ends at its time or
//!    on an abort; its authority covers only the failback to the primary, after its end and
//!    within its grace; while a dry-run drill is in force every automatic change is a dry run;
//!    it is finished once back at the primary or after the grace;
//!
//! and besides: everything down (all inputs present) is reported as `fail_open`, evaluation
//! is deterministic, and whenever the rules allow an obvious change it is made (so the
//! properties are not satisfied by never doing anything). A coverage test checks that the
//! runs reach every hold reason and every kind of change.

// Test code: a failed unwrap is a failed test (clippy.toml allows it in #[test] fns only).
#![allow(clippy::unwrap_used)]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use common::{Cluster, Draft, DIGEST, SKEW_MS, T0};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{FileFailurePersistence, RngAlgorithm, TestRng, TestRunner};
use quorum::gate::drill::precheck;
use quorum::gate::{
    Approval, Authority, ChangeReason, CheckInput, Drill, DrillEndCause, GatePolicy, Mode,
    Override, Target, WeightedTarget, DRILL_FAILBACK_GRACE_MS,
};
use quorum::operator::check_action;
use quorum::operator::Action as OpAction;
use quorum::tally::Certificate;
use quorum::{
    evaluate, verify_certificate, CheckId, DesiredState, Evaluation, GateId, GateKind, GateSpec,
    GateState, HoldReason, Inputs, OperatorId, Outcome, PlannedChange, State, Status, TargetId,
    UnixMillis,
};

/// Regressions go to `quorum/proptest-regressions/gate_properties.txt` (see properties.rs for
/// why the default location does not work for an integration test).
const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/proptest-regressions/gate_properties.txt"
);

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        ..ProptestConfig::default()
    }
}

const PAIR: [&str; 2] = ["p", "s"];
const LAGS: [&str; 2] = ["lag-p", "lag-s"];
const SET: [&str; 3] = ["a", "b", "c"];

static CLUSTER: LazyLock<Cluster> = LazyLock::new(|| Cluster::new(3));

/// A real certificate (m0 and m1, Q = 2 of 3) for every check and both outcomes.
static CERTS: LazyLock<BTreeMap<(String, bool), Certificate>> = LazyLock::new(|| {
    let c = &*CLUSTER;
    let mut out = BTreeMap::new();
    for check in PAIR.iter().chain(&LAGS).chain(&SET) {
        for healthy in [true, false] {
            let status = if healthy {
                Status::Healthy
            } else {
                Status::Unhealthy
            };
            let ballots = (0..2)
                .map(|i| Draft::new(&c.ids[i], &[(*check, status)]).verified(&c.keys[i]))
                .collect();
            let outcome = if healthy {
                Outcome::Healthy
            } else {
                Outcome::Unhealthy
            };
            let cert = Certificate {
                check: cid(check),
                outcome,
                ballots,
            };
            out.insert(((*check).to_owned(), healthy), cert);
        }
    }
    out
});

fn cid(s: &str) -> CheckId {
    CheckId::new(s).unwrap()
}
fn tid(s: &str) -> TargetId {
    TargetId::new(s).unwrap()
}
fn operator() -> OperatorId {
    OperatorId::new("oncall").unwrap()
}
fn outcome(state: State) -> Outcome {
    match state {
        State::Healthy => Outcome::Healthy,
        State::Unhealthy => Outcome::Unhealthy,
    }
}

// ---------------------------------------------------------------------------------------
// Scenarios

#[derive(Clone, Debug)]
enum Shape {
    Failover {
        auto_failback: bool,
        max_rpo_ms: Option<u64>,
    },
    Weighted {
        min_serving: usize,
        weights: [u8; 3],
    },
}

/// The certificate that comes with a decided state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proof {
    /// The current tally agrees: the state is proven by quorum.
    Agreeing,
    /// No certificate (the current tally is NoQuorum).
    Missing,
    /// A certificate for the opposite outcome (the tally moved, the machine has not yet).
    Contradicting,
    /// A certificate for another check with the same outcome (a wiring bug).
    Foreign,
}

#[derive(Clone, Debug)]
enum Step {
    /// A health check's decided state, and what certificate comes with it.
    Decide {
        check: Index,
        healthy: bool,
        proof: Proof,
    },
    /// A health check's input is missing in the next round.
    Forget(Index),
    /// A health check is undecided in the next round (a restarted agent before its first
    /// quorum verdict).
    Undecide(Index),
    /// A lag check reports a lag (or none).
    Lag(Index, Option<u64>),
    Advance(u64),
    Freeze,
    Unfreeze,
    Approve {
        target: Index,
        valid_for_ms: u32,
    },
    Override {
        pick: Index,
        weights: [u8; 3],
        force: bool,
        valid_for_ms: u32,
    },
    /// Route 53 writes fail (no commit) until set back.
    WritesFail(bool),
    /// An operator starts a drill (if the gate allows it now).
    Drill {
        duration_ms: u64,
        dry_run: bool,
    },
    /// The running drill is aborted: by an operator, or by its abort check.
    DrillEnd {
        by_check: bool,
    },
    Round,
}

/// The model of a drill: its seq, scheduled end, dry run, and when it ended.
#[derive(Clone, Copy, Debug)]
struct DrillModel {
    seq: u64,
    ends_at: UnixMillis,
    dry_run: bool,
    ended_at: Option<UnixMillis>,
}

impl DrillModel {
    fn running(&self, now: UnixMillis) -> bool {
        self.ended_at.is_none() && now < self.ends_at
    }
}

#[derive(Clone, Debug)]
struct Scenario {
    shape: Shape,
    policy: GatePolicy,
    mode: Mode,
    steps: Vec<Step>,
}

fn shape() -> impl Strategy<Value = Shape> {
    let weight = 1u8..=255;
    prop_oneof![
        (any::<bool>(), proptest::option::of(0u64..20_000)).prop_map(
            |(auto_failback, max_rpo_ms)| Shape::Failover {
                auto_failback,
                max_rpo_ms
            }
        ),
        (1usize..=3, [weight.clone(), weight.clone(), weight]).prop_map(
            |(min_serving, weights)| Shape::Weighted {
                min_serving,
                weights
            }
        ),
    ]
}

fn proof() -> impl Strategy<Value = Proof> {
    prop_oneof![
        12 => Just(Proof::Agreeing),
        2 => Just(Proof::Missing),
        1 => Just(Proof::Contradicting),
        1 => Just(Proof::Foreign),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let weight = prop_oneof![Just(0u8), 1u8..=255];
    prop_oneof![
        6 => Just(Step::Round),
        5 => (any::<Index>(), any::<bool>(), proof())
            .prop_map(|(check, healthy, proof)| Step::Decide { check, healthy, proof }),
        1 => any::<Index>().prop_map(Step::Forget),
        1 => any::<Index>().prop_map(Step::Undecide),
        2 => (any::<Index>(), proptest::option::weighted(0.8, 0u64..30_000))
            .prop_map(|(i, lag)| Step::Lag(i, lag)),
        3 => prop_oneof![4 => 0u64..3_000, 1 => 3_000u64..90_000].prop_map(Step::Advance),
        1 => Just(Step::Freeze),
        2 => Just(Step::Unfreeze),
        2 => (any::<Index>(), 1u32..120_000)
            .prop_map(|(target, valid_for_ms)| Step::Approve { target, valid_for_ms }),
        1 => (any::<Index>(), [weight.clone(), weight.clone(), weight], any::<bool>(), 1u32..120_000)
            .prop_map(|(pick, weights, force, valid_for_ms)| Step::Override { pick, weights, force, valid_for_ms }),
        1 => prop::bool::weighted(0.3).prop_map(Step::WritesFail),
        2 => (prop_oneof![1u64..5_000, 5_000u64..200_000], any::<bool>())
            .prop_map(|(duration_ms, dry_run)| Step::Drill { duration_ms, dry_run }),
        1 => any::<bool>().prop_map(|by_check| Step::DrillEnd { by_check }),
    ]
}

fn scenario(max_steps: usize) -> impl Strategy<Value = Scenario> {
    let pacing = (0u64..15_000, 1u32..=4, 1u64..120_000);
    let mode = prop_oneof![Just(Mode::Live), Just(Mode::DryRun)];
    (shape(), pacing, mode, vec(step(), 1..max_steps)).prop_map(
        |(shape, (wait_period_ms, max_changes, window_ms), mode, steps)| {
            let (min_serving, auto_failback, max_rpo_ms) = match &shape {
                Shape::Failover {
                    auto_failback,
                    max_rpo_ms,
                } => (1, *auto_failback, *max_rpo_ms),
                Shape::Weighted { min_serving, .. } => (*min_serving, false, None),
            };
            let policy = GatePolicy {
                min_serving,
                max_changes,
                window_ms,
                wait_period_ms,
                auto_failback,
                max_rpo_ms,
            };
            Scenario {
                shape,
                policy,
                mode,
                steps,
            }
        },
    )
}

fn spec(s: &Scenario) -> GateSpec {
    let kind = match &s.shape {
        Shape::Failover { max_rpo_ms, .. } => {
            let target = |i: usize| {
                let t = Target::new(tid(&format!("t-{}", PAIR[i])), cid(PAIR[i]));
                if max_rpo_ms.is_some() {
                    t.with_lag_check(cid(LAGS[i]))
                } else {
                    t
                }
            };
            GateKind::Failover {
                primary: target(0),
                secondary: target(1),
            }
        }
        Shape::Weighted { weights, .. } => GateKind::Weighted {
            targets: (0..3)
                .map(|i| WeightedTarget {
                    target: Target::new(tid(&format!("t-{}", SET[i])), cid(SET[i])),
                    weight: weights[i],
                })
                .collect(),
        },
    };
    GateSpec::new(GateId::new("g").unwrap(), kind, s.policy, s.mode).unwrap()
}

fn op_action() -> impl Strategy<Value = OpAction> {
    prop_oneof![
        Just(OpAction::Freeze),
        Just(OpAction::Unfreeze),
        Just(OpAction::DrillAbort),
        Just(OpAction::Approve { to: tid("t-p") }),
        (any::<u32>(), any::<bool>()).prop_map(|(duration_ms, dry_run)| OpAction::Drill {
            duration_ms,
            dry_run
        }),
        any::<bool>().prop_map(|force| OpAction::Override {
            desired: DesiredState::Failover { active: tid("t-s") },
            force
        }),
    ]
}

// ---------------------------------------------------------------------------------------
// The simulation

/// What the runs reached: evaluation codes and kinds of authority.
#[derive(Debug, Default)]
struct Stats {
    codes: BTreeMap<&'static str, usize>,
    authorities: BTreeSet<&'static str>,
}

struct Sim {
    spec: GateSpec,
    state: GateState,
    now: UnixMillis,
    /// Health checks: decided state and whether a certificate proves it.
    decisions: BTreeMap<String, (State, Proof)>,
    /// A health check whose input is missing in the next round.
    forgotten: Option<String>,
    /// A health check that is undecided in the next round.
    undecided: Option<String>,
    lags: BTreeMap<String, Option<u64>>,
    writes_fail: bool,
    seq: u64,
    /// Every committed change, in order (the implementation keeps only what it needs).
    history: Vec<UnixMillis>,
    /// The model of the RPO memory: (standby, its lag) seen while the active was proven
    /// Healthy, since the last change of the active target.
    lag_memory: Option<(TargetId, Option<u64>, UnixMillis)>,
    /// The latest approval granted, until a change makes its target active (one approval,
    /// one move).
    unspent_approval: Option<Approval>,
    drill: Option<DrillModel>,
    stats: Stats,
}

impl Sim {
    fn run(s: &Scenario) -> Result<Stats, TestCaseError> {
        let spec = spec(s);
        let health: Vec<&str> = spec.targets().iter().map(|t| t.check.as_str()).collect();
        let mut sim = Sim {
            state: GateState::new(&spec),
            now: T0.plus(60_000),
            decisions: health
                .iter()
                .map(|c| ((*c).to_owned(), (State::Healthy, Proof::Agreeing)))
                .collect(),
            lags: LAGS.iter().map(|c| ((*c).to_owned(), Some(0))).collect(),
            forgotten: None,
            undecided: None,
            writes_fail: false,
            seq: 0,
            history: Vec::new(),
            lag_memory: None,
            unspent_approval: None,
            drill: None,
            stats: Stats::default(),
            spec,
        };
        for step in &s.steps {
            sim.step(step)?;
        }
        Ok(sim.stats)
    }

    fn health_checks(&self) -> Vec<String> {
        self.spec
            .targets()
            .iter()
            .map(|t| t.check.to_string())
            .collect()
    }

    fn step(&mut self, step: &Step) -> Result<(), TestCaseError> {
        self.seq += 1;
        match step {
            Step::Decide {
                check,
                healthy,
                proof,
            } => {
                let c = check.get(&self.health_checks()).clone();
                let state = if *healthy {
                    State::Healthy
                } else {
                    State::Unhealthy
                };
                self.decisions.insert(c, (state, *proof));
            }
            Step::Forget(check) => self.forgotten = Some(check.get(&self.health_checks()).clone()),
            Step::Undecide(check) => {
                self.undecided = Some(check.get(&self.health_checks()).clone());
            }
            Step::Lag(i, lag) => {
                self.lags.insert(i.get(&LAGS).to_string(), *lag);
            }
            Step::Advance(ms) => self.now = self.now.plus(*ms),
            Step::Freeze => self.state.freeze(operator(), self.now),
            Step::Unfreeze => self.state.unfreeze(),
            Step::Approve {
                target,
                valid_for_ms,
            } => {
                let to = target.get(&self.spec.targets()).id.clone();
                if check_action(&self.spec, &OpAction::Approve { to: to.clone() }).is_ok() {
                    let expires_at = self.now.plus(u64::from(*valid_for_ms));
                    let a = Approval {
                        to,
                        by: operator(),
                        seq: self.seq,
                        expires_at,
                    };
                    self.state.approve(a.clone());
                    self.unspent_approval = Some(a);
                }
            }
            Step::Override {
                pick,
                weights,
                force,
                valid_for_ms,
            } => {
                let ids: Vec<TargetId> = self.spec.targets().iter().map(|t| t.id.clone()).collect();
                let desired = match self.spec.kind() {
                    GateKind::Failover { .. } => DesiredState::Failover {
                        active: pick.get(&ids).clone(),
                    },
                    GateKind::Weighted { .. } => {
                        DesiredState::weighted(ids.into_iter().zip(weights.iter().copied()))
                    }
                };
                if self.spec.check_override(&desired).is_ok() {
                    let expires_at = self.now.plus(u64::from(*valid_for_ms));
                    let o = Override {
                        desired,
                        force: *force,
                        by: operator(),
                        seq: self.seq,
                        expires_at,
                    };
                    self.state.set_override(o, self.now);
                }
            }
            Step::WritesFail(fail) => self.writes_fail = *fail,
            Step::Drill {
                duration_ms,
                dry_run,
            } => self.start_drill(*duration_ms, *dry_run)?,
            Step::DrillEnd { by_check } => {
                let end = if *by_check {
                    let check = self.spec.targets()[self.spec.targets().len() - 1]
                        .check
                        .clone();
                    self.state.drill_tick(self.now, Some(check))
                } else {
                    let cause = DrillEndCause::Aborted {
                        by: operator(),
                        seq: self.seq,
                    };
                    self.state
                        .drill()
                        .filter(|d| d.running(self.now))
                        .cloned()
                        .and_then(|_| self.state.end_drill(self.now, cause))
                };
                let now = self.now;
                if *by_check {
                    // A tick: a drill whose time is over ends as elapsed, not aborted.
                    let overdue = self
                        .drill
                        .as_mut()
                        .filter(|d| d.ended_at.is_none() && now >= d.ends_at);
                    if let Some(d) = overdue {
                        prop_assert_eq!(end.map(|e| e.at), Some(d.ends_at));
                        d.ended_at = Some(d.ends_at);
                        return Ok(());
                    }
                }
                let model = self.drill.as_mut().filter(|d| d.running(now));
                prop_assert_eq!(end.is_some(), model.is_some(), "abort of a running drill");
                if let Some(d) = model {
                    d.ended_at = Some(now);
                }
            }
            Step::Round => self.round()?,
        }
        Ok(())
    }

    fn start_drill(&mut self, duration_ms: u64, dry_run: bool) -> Result<(), TestCaseError> {
        let allowed = precheck(&self.spec, &self.state, &self.inputs(), self.now).is_ok();
        if let (true, GateKind::Failover { primary, secondary }) = (allowed, self.spec.kind()) {
            prop_assert!(self.drill.is_none(), "a second drill");
            prop_assert!(self.state.frozen().is_none(), "a drill of a frozen gate");
            prop_assert_eq!(active(self.state.current()), Some(&primary.id));
            prop_assert!(self.proved(&secondary.check, State::Healthy));
            prop_assert!(self.proved(&primary.check, State::Healthy));
            let ends_at = self.now.plus(duration_ms);
            self.state.start_drill(Drill {
                by: operator(),
                seq: self.seq,
                started_at: self.now,
                ends_at,
                dry_run,
                ended: None,
            });
            self.drill = Some(DrillModel {
                seq: self.seq,
                ends_at,
                dry_run,
                ended_at: None,
            });
        }
        Ok(())
    }

    /// Before a round: a drill whose time is over ends (at its scheduled time).
    fn drill_tick(&mut self) -> Result<(), TestCaseError> {
        let end = self.state.drill_tick(self.now, None);
        let now = self.now;
        let due = self
            .drill
            .as_mut()
            .filter(|d| d.ended_at.is_none() && now >= d.ends_at);
        prop_assert_eq!(end.is_some(), due.is_some(), "drill end at its time");
        if let Some(d) = due {
            prop_assert_eq!(end.map(|e| e.at), Some(d.ends_at));
            d.ended_at = Some(d.ends_at);
        }
        Ok(())
    }

    /// After a round: an ended drill is finished back at the primary, or after the grace.
    fn drill_finish(&mut self) -> Result<(), TestCaseError> {
        let done = self.state.finish_drill(&self.spec, self.now);
        let normal = *self.state.current() == self.spec.normal_state();
        let due = self.drill.is_some_and(|d| {
            d.ended_at
                .is_some_and(|e| normal || self.now > e.plus(DRILL_FAILBACK_GRACE_MS))
        });
        prop_assert_eq!(done.is_some(), due, "drill finish");
        if due {
            self.drill = None;
        }
        prop_assert_eq!(self.state.drill().is_some(), self.drill.is_some());
        Ok(())
    }

    fn inputs(&self) -> Inputs {
        let mut inputs = Inputs::new();
        for check in self.decisions.keys() {
            let Some((state, proof)) = self.decision(check) else {
                continue;
            };
            let healthy = state == State::Healthy;
            let cert = match proof {
                Proof::Agreeing => Some(CERTS[&(check.clone(), healthy)].clone()),
                Proof::Missing => None,
                Proof::Contradicting => Some(CERTS[&(check.clone(), !healthy)].clone()),
                Proof::Foreign => Some(CERTS[&("lag-s".to_owned(), healthy)].clone()),
            };
            inputs.insert(cid(check), CheckInput::new(state, cert));
        }
        if let Some(check) = &self.undecided {
            inputs.insert_undecided(cid(check));
        }
        for (check, lag) in &self.lags {
            let cert = CERTS[&(check.clone(), true)].clone();
            inputs.insert(
                cid(check),
                CheckInput::new(State::Healthy, Some(cert)).with_lag_ms(*lag),
            );
        }
        inputs
    }

    /// The input of `check` this round, if it has one. While a drill runs the agents vote its
    /// primary Unhealthy, so the quorum decides it so (with a certificate).
    fn decision(&self, check: &str) -> Option<(State, Proof)> {
        let own = self
            .decisions
            .get(check)
            .filter(|_| self.forgotten.as_deref() != Some(check))
            .filter(|_| self.undecided.as_deref() != Some(check))
            .copied();
        let drilled = match self.spec.kind() {
            GateKind::Failover { primary, .. } => {
                primary.check.as_str() == check && self.drill.is_some_and(|d| d.running(self.now))
            }
            GateKind::Weighted { .. } => false,
        };
        own.map(|o| {
            if drilled {
                (State::Unhealthy, Proof::Agreeing)
            } else {
                o
            }
        })
    }

    /// Proven `want` by quorum (decided so, with a certificate).
    fn proved(&self, check: &CheckId, want: State) -> bool {
        self.decision(check.as_str()) == Some((want, Proof::Agreeing))
    }

    fn round(&mut self) -> Result<(), TestCaseError> {
        self.drill_tick()?;
        let inputs = self.inputs();
        let eval = evaluate(&self.spec, &self.state, &inputs, self.now);
        let again = evaluate(&self.spec, &self.state, &inputs, self.now);
        prop_assert_eq!(eval.code(), again.code(), "evaluation is not deterministic");
        *self.stats.codes.entry(eval.code()).or_default() += 1;
        // An undecided target counts as neither state: only an operator's override may move.
        if self.undecided.is_some() && self.pending_override().is_none() {
            prop_assert!(
                matches!(&eval, Evaluation::Hold(HoldReason::Undecided(_))),
                "undecided {:?}: {:?}",
                self.undecided,
                eval.code()
            );
        }
        match &eval {
            Evaluation::Change(ch) => self.check_change(ch)?,
            Evaluation::Hold(h) => self.check_hold(h)?,
        }
        if let Evaluation::Change(ch) = &eval {
            self.stats.authorities.insert(match ch.authority {
                Authority::Automatic => "automatic",
                Authority::Approved(_) => "approved",
                Authority::Override { force: false, .. } => "override",
                Authority::Override { force: true, .. } => "forced_override",
                Authority::Drill { .. } => "drill",
            });
            if !self.writes_fail {
                let before = self.state.current().clone();
                self.state.commit(&self.spec, ch, self.now).unwrap();
                self.history.push(self.now);
                let now_active = active(self.state.current());
                if self
                    .unspent_approval
                    .as_ref()
                    .is_some_and(|a| Some(&a.to) == now_active)
                {
                    self.unspent_approval = None;
                }
                if active(&before) != active(self.state.current()) {
                    self.lag_memory = None;
                }
            }
        }
        self.state.observe(&self.spec, &inputs, &eval, self.now);
        self.remember_lag();
        self.forgotten = None;
        self.undecided = None;
        self.drill_finish()
    }

    fn remember_lag(&mut self) {
        let GateKind::Failover { primary, secondary } = self.spec.kind() else {
            return;
        };
        if self.spec.policy().max_rpo_ms.is_none() {
            return;
        }
        let (act, standby) = if active(self.state.current()) == Some(&secondary.id) {
            (secondary, primary)
        } else {
            (primary, secondary)
        };
        if self.proved(&act.check, State::Healthy) {
            let lag = standby
                .lag_check
                .as_ref()
                .and_then(|c| self.lags[c.as_str()]);
            // A known lag measured within max_rpo_ms survives rounds without one.
            let max = self.spec.policy().max_rpo_ms.unwrap_or(0);
            let recent = matches!(&self.lag_memory,
                Some((id, Some(_), at)) if *id == standby.id && self.now.since(*at) <= max);
            if lag.is_some() || !recent {
                self.lag_memory = Some((standby.id.clone(), lag, self.now));
            }
        }
    }

    fn all_down(&self) -> bool {
        let checks = self.health_checks();
        checks
            .iter()
            .all(|c| matches!(self.decision(c), Some((State::Unhealthy, _))))
    }

    fn pending_override(&self) -> Option<&Override> {
        self.state
            .pending_override()
            .filter(|o| self.now <= o.expires_at && o.desired != *self.state.current())
    }

    fn paced(&self) -> bool {
        let p = self.spec.policy();
        let waited = self
            .history
            .last()
            .is_none_or(|t| self.now.since(*t) >= p.wait_period_ms);
        let recent = self
            .history
            .iter()
            .filter(|t| self.now.since(**t) < p.window_ms)
            .count();
        waited && recent < p.max_changes as usize
    }

    fn check_change(&self, ch: &PlannedChange) -> Result<(), TestCaseError> {
        let (spec, state, policy) = (&self.spec, &self.state, self.spec.policy());
        prop_assert_eq!(&ch.from, state.current());
        prop_assert!(spec.check_shape(&ch.to).is_ok());
        prop_assert_ne!(&ch.from, &ch.to);
        let drill_dry = self.drill.is_some_and(|d| d.dry_run)
            && !matches!(ch.authority, Authority::Override { .. });
        let mode = if drill_dry { Mode::DryRun } else { spec.mode() };
        prop_assert_eq!(ch.mode, mode);
        for cert in &ch.certificates {
            let v = verify_certificate(
                &cert.to_bytes(),
                &CLUSTER.membership,
                Some(&DIGEST),
                SKEW_MS,
            );
            prop_assert!(v.is_ok(), "{:?}", v);
            let input = self.decision(cert.check.as_str());
            let fits = input.is_some_and(|(decided, proof)| {
                proof == Proof::Agreeing && outcome(decided) == cert.outcome
            });
            prop_assert!(fits, "certificate without a matching input: {:?}", input);
        }
        let has = |check: &CheckId, o: Outcome| {
            ch.certificates
                .iter()
                .any(|c| c.check == *check && c.outcome == o)
        };
        let is_override = matches!(ch.authority, Authority::Override { .. });
        let forced = matches!(ch.authority, Authority::Override { force: true, .. });
        let (from_serving, to_serving) = (ch.from.serving(), ch.to.serving());
        prop_assert!(
            to_serving >= policy.min_serving || to_serving >= from_serving,
            "min_serving"
        );
        for t in spec.targets() {
            let (before, after) = (ch.from.weight(&t.id), ch.to.weight(&t.id));
            if after > before && !forced {
                prop_assert!(
                    self.proved(&t.check, State::Healthy),
                    "traffic to unproven {}",
                    t.id
                );
                prop_assert!(has(&t.check, Outcome::Healthy));
            }
            if after == 0 && before > 0 && !is_override && ch.reason != ChangeReason::Failback {
                prop_assert!(
                    self.proved(&t.check, State::Unhealthy),
                    "drained unproven {}",
                    t.id
                );
                prop_assert!(has(&t.check, Outcome::Unhealthy));
            }
        }
        if is_override {
            let o = self.pending_override();
            prop_assert!(
                o.is_some_and(|o| o.desired == ch.to),
                "override without a pending one"
            );
            return Ok(());
        }
        prop_assert_ne!(ch.reason, ChangeReason::Override);
        prop_assert!(state.frozen().is_none(), "automatic change while frozen");
        prop_assert!(self.paced(), "wait_period or velocity violated");
        prop_assert!(!self.all_down(), "change while everything looks down");
        self.check_approvals(ch)
    }

    fn check_approvals(&self, ch: &PlannedChange) -> Result<(), TestCaseError> {
        let GateKind::Failover { primary, .. } = self.spec.kind() else {
            return Ok(());
        };
        let policy = self.spec.policy();
        let to = active(&ch.to).unwrap();
        let approved = match &ch.authority {
            Authority::Approved(a) => {
                a.to == *to && self.now <= a.expires_at && self.unspent_approval.as_ref() == Some(a)
            }
            _ => false,
        };
        let drilled = match &ch.authority {
            Authority::Drill { seq, .. } => {
                let d = self.drill.as_ref();
                let over = d.and_then(|d| d.ended_at);
                prop_assert!(
                    ch.reason == ChangeReason::Failback && *to == primary.id,
                    "a drill authorised {:?}",
                    ch.reason
                );
                prop_assert_eq!(d.map(|d| d.seq), Some(*seq));
                prop_assert!(
                    over.is_some_and(|e| self.now <= e.plus(DRILL_FAILBACK_GRACE_MS)),
                    "drill authority outside its window: {:?} at {:?}",
                    d,
                    self.now
                );
                true
            }
            _ => false,
        };
        if *to == primary.id && !policy.auto_failback {
            prop_assert!(approved || drilled, "failback without approval");
        }
        let target = self.spec.target(to).unwrap();
        if let (Some(max), Some(_)) = (policy.max_rpo_ms, &target.lag_check) {
            let within =
                matches!(&self.lag_memory, Some((id, Some(l), _)) if id == to && *l <= max);
            prop_assert!(
                within || approved,
                "RPO over the limit or unknown: {:?}",
                self.lag_memory
            );
        }
        Ok(())
    }

    fn check_hold(&self, h: &HoldReason) -> Result<(), TestCaseError> {
        let complete = self.forgotten.is_none() && self.undecided.is_none();
        let manual = self.pending_override().is_some();
        if complete && !manual && self.all_down() {
            prop_assert_eq!(h, &HoldReason::FailOpen);
        }
        let free = complete && !manual && self.state.frozen().is_none() && self.paced();
        let all_proved = self
            .decisions
            .keys()
            .all(|c| self.decision(c).is_none_or(|(_, p)| p == Proof::Agreeing));
        if !(free && all_proved && !self.all_down()) {
            return Ok(());
        }
        // The rules allow an obvious change: it must be made.
        let obvious = match (self.spec.kind(), &self.state) {
            (GateKind::Failover { primary, secondary }, state) => {
                let rpo_ok = match self.spec.policy().max_rpo_ms {
                    None => true,
                    Some(max) => {
                        matches!(&self.lag_memory, Some((id, Some(l), _)) if *id == secondary.id && *l <= max)
                    }
                };
                active(state.current()) == Some(&primary.id)
                    && self.proved(&primary.check, State::Unhealthy)
                    && self.proved(&secondary.check, State::Healthy)
                    && rpo_ok
            }
            (GateKind::Weighted { targets }, state) => {
                self.spec.policy().min_serving == 1
                    && targets.iter().any(|w| {
                        let want = if self.proved(&w.target.check, State::Healthy) {
                            w.weight
                        } else {
                            0
                        };
                        state.current().weight(&w.target.id) != want
                    })
            }
        };
        prop_assert!(!obvious, "held ({:?}) although a change was allowed", h);
        Ok(())
    }
}

fn active(state: &DesiredState) -> Option<&TargetId> {
    match state {
        DesiredState::Failover { active } => Some(active),
        DesiredState::Weighted { .. } => None,
    }
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn no_rule_is_ever_violated(s in scenario(200)) {
        Sim::run(&s)?;
    }

    /// Operator commands (drills included), mutated: decoding never panics, and whatever
    /// decodes re-encodes to the same bytes (one byte form per command).
    #[test]
    fn untrusted_operator_command_bytes_never_panic_and_decode_canonically(
        action in op_action(),
        seq in any::<u64>(),
        edits in vec((any::<Index>(), any::<u8>(), 0u8..3), 0..4),
        cut in proptest::option::of(any::<Index>()),
    ) {
        use quorum::operator::codec::{decode_command, encode_command};
        let cmd = quorum::OperatorCommand::new(
            quorum::fuzzing::cluster(),
            OperatorId::new("alice").unwrap(),
            GateId::new("app").unwrap(),
            action,
            seq,
            T0,
            60_000,
        )
        .with_note("game day");
        let mut bytes = encode_command(&cmd);
        prop_assert_eq!(decode_command(&bytes), Ok(cmd.clone()));
        for (at, value, how) in edits {
            let i = at.index(bytes.len());
            match how {
                0 => bytes[i] = value,
                1 => bytes.insert(i, value),
                _ => {
                    bytes.remove(i);
                }
            }
            if bytes.is_empty() {
                break;
            }
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        if let Ok(decoded) = decode_command(&bytes) {
            prop_assert_eq!(encode_command(&decoded), bytes);
        }
    }

    #[test]
    fn untrusted_desired_state_bytes_never_panic_and_decode_canonically(
        bytes in vec(any::<u8>(), 0..96)
    ) {
        if let Ok(state) = DesiredState::from_bytes(&bytes) {
            prop_assert_eq!(state.to_bytes(), bytes);
        }
    }
}

/// The runs reach every hold reason, every kind of change and every authority: the
/// properties above are not vacuously true.
#[test]
fn simulation_exercises_every_rule() {
    let mut runner = TestRunner::new_with_rng(
        proptest::test_runner::Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let strategy = scenario(200);
    let mut total = Stats::default();
    for _ in 0..200 {
        let s = strategy.new_tree(&mut runner).unwrap().current();
        let stats = Sim::run(&s).unwrap_or_else(|e| panic!("{e}\n{s:#?}"));
        for (code, n) in stats.codes {
            *total.codes.entry(code).or_default() += n;
        }
        total.authorities.extend(stats.authorities);
    }
    let changes = [
        "failover", "failback", "drain", "restore", "reweight", "override",
    ];
    for code in HoldReason::CODES.iter().chain(&changes) {
        assert!(
            total.codes.contains_key(code),
            "never saw {code}: {total:?}"
        );
    }
    assert_eq!(total.authorities.len(), 5, "{total:?}");
}
