//! The gate machine step by step: what follows what, and what a lost answer, a refused
//! append or another agent's changes do. (The cluster simulation checks the same machine
//! against thousands of seeded schedules.)

use super::*;
use crate::gate::machine::{
    Accepted, Action, AuditRecord, CommandFailure, Committed, Event, Failure, GateMachine,
    MachineConfig, Outcome as WriteOutcome, Plane, Planned, Promoted, Records, View,
};
use crate::operator::{Action as OpAction, OperatorCommand, SignedCommand, VerifiedCommand};

fn spec(policy: GatePolicy) -> GateSpec {
    GateSpec::new(
        GateId::new("app").unwrap(),
        GateKind::Failover {
            primary: Target::new(t("p"), c("p")),
            secondary: Target::new(t("s"), c("s")),
        },
        policy,
        Mode::Live,
    )
    .unwrap()
}

fn machine(policy: GatePolicy) -> GateMachine {
    GateMachine::new(MachineConfig {
        spec: spec(policy),
        plane: Plane::Control,
        me: "m0".into(),
        promote: true,
        drill_guards: Vec::new(),
        writer_stagger_ms: 500,
        resync_every_ms: 60_000,
        resync_on_alert_ms: 5_000,
        retry_base_ms: 1_000,
        retry_max_ms: 30_000,
        request_lifetime_ms: 120_000,
        max_clock_skew_ms: 500,
    })
}

fn active(target: &str) -> DesiredState {
    DesiredState::Failover { active: t(target) }
}

fn view(epoch: u64, by: &str, target: &str, history: &[(u64, UnixMillis)]) -> View {
    View {
        epoch,
        by: Some(by.into()),
        records: Records::State(active(target)),
        history: history.to_vec(),
    }
}

fn drain(m: &mut GateMachine) -> Vec<Action> {
    std::iter::from_fn(|| m.poll_action()).collect()
}

fn round(m: &mut GateMachine, ms: u64, rows: &[(&str, Row)]) -> Vec<Action> {
    m.handle(Event::Round {
        now: at(ms),
        inputs: inputs(rows),
        rank: 0,
        serving: None,
    });
    drain(m)
}

/// The single action of a kind in `actions`, with its token.
fn append_token(actions: &[Action], what: &str) -> u64 {
    let found = actions.iter().find_map(|a| match a {
        Action::Append {
            token: Some(token),
            record,
        } if format!("{record:?}").starts_with(what) => Some(*token),
        _ => None,
    });
    found.unwrap_or_else(|| panic!("no {what} append in {actions:?}"))
}

fn ack(m: &mut GateMachine, token: u64) -> Vec<Action> {
    m.handle(Event::Appended {
        token,
        result: Ok(()),
    });
    drain(m)
}

/// Starts at the primary (epoch 1, read), fails the primary, and walks the change up to the
/// batch being sent. Returns the commit token.
fn up_to_commit(m: &mut GateMachine) -> u64 {
    first_read(m, 0, view(1, "m1", "p", &[]));
    let actions = round(m, 1_000, &[("p", DOWN), ("s", UP)]);
    let decision = append_token(&actions, "Decision");
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Plan { .. })),
        "nothing acts before the decision is durable: {actions:?}"
    );
    let actions = ack(m, decision);
    let Some(Action::Plan {
        token: plan,
        expected_epoch: 1,
        delay_ms: 0,
        ..
    }) = actions
        .iter()
        .find(|a| matches!(a, Action::Plan { .. }))
        .cloned()
    else {
        panic!("plans from epoch 1 at once (rank 0): {actions:?}");
    };
    m.handle(Event::Planned {
        token: plan,
        now: at(1_100),
        result: Ok(Planned::Write {
            expected_epoch: 1,
            next_epoch: 2,
        }),
    });
    let actions = drain(m);
    let write = append_token(&actions, "Write");
    assert!(!actions.iter().any(|a| matches!(a, Action::Commit { .. })));
    let actions = ack(m, write);
    match actions.as_slice() {
        [Action::Commit { token, plan: p }] if *p == plan => *token,
        other => panic!("the batch is sent once it is durable: {other:?}"),
    }
}

/// Route 53 refused the batch sent with `commit`; the shell re-read `after`.
fn refused(m: &mut GateMachine, commit: u64, after: View) -> Vec<Action> {
    m.handle(Event::Committed {
        token: commit,
        now: at(1_300),
        result: Ok(Committed::Rejected {
            view: after,
            messages: vec!["InvalidChangeBatch".into()],
        }),
    });
    drain(m)
}

/// Reads the gate in its first round at `ms`: `shown` is what Route 53 holds.
fn first_read(m: &mut GateMachine, ms: u64, shown: View) {
    let actions = round(m, ms, &[("p", UP), ("s", UP)]);
    let Some(Action::Read { token }) = actions.first().cloned() else {
        panic!("reads before deciding anything: {actions:?}");
    };
    m.handle(Event::Read {
        token,
        now: at(ms + 10),
        result: Ok(shown),
    });
    drain(m);
}

fn promotes(actions: &[Action]) -> bool {
    actions.iter().any(|a| {
        matches!(
            a,
            Action::Append {
                token: Some(_),
                record: AuditRecord::Promote { epoch: 2 }
            }
        )
    })
}

#[test]
fn an_accepted_failover_promotes_once_its_intent_is_durable() {
    let mut m = machine(GatePolicy::default());
    let commit = up_to_commit(&mut m);
    m.handle(Event::Committed {
        token: commit,
        now: at(1_300),
        result: Ok(Committed::Accepted(Accepted {
            epoch: 2,
            change_id: "C1".into(),
            in_sync: true,
            accepted_at_ms: None,
            in_sync_at_ms: None,
        })),
    });
    let actions = drain(&mut m);
    assert!(promotes(&actions), "{actions:?}");
    let intent = append_token(&actions, "Promote");
    let actions = ack(&mut m, intent);
    let Some(Action::Promote { token, epoch: 2 }) = actions.first().cloned() else {
        panic!("{actions:?}");
    };
    m.handle(Event::Promoted {
        token,
        now: at(1_400),
        result: Ok(Promoted::Started),
    });
    drain(&mut m);
    assert_eq!(*m.state().current(), active("s"));
    assert!(!m.busy());
}

/// The SDK retried a batch whose first attempt had landed: Route 53 refuses the retry and
/// the re-read shows our own fence. Before, this was "already in place" and the database was
/// never promoted while DNS pointed at it.
#[test]
fn a_refused_retry_of_our_own_landed_batch_is_won_and_promotes() {
    let mut m = machine(GatePolicy::default());
    let commit = up_to_commit(&mut m);
    let actions = refused(&mut m, commit, view(2, "m0", "s", &[(2, at(1_100))]));
    assert!(
        actions.iter().any(|a| matches!(
            a,
            Action::Append {
                record: AuditRecord::Outcome {
                    result: WriteOutcome::Won { epoch: 2 },
                    ..
                },
                ..
            }
        )),
        "{actions:?}"
    );
    assert!(promotes(&actions), "{actions:?}");
}

/// Someone else's fence with the same records is theirs: in place, nothing to promote.
#[test]
fn another_writers_batch_in_place_does_not_promote() {
    let mut m = machine(GatePolicy::default());
    let commit = up_to_commit(&mut m);
    let actions = refused(&mut m, commit, view(2, "m1", "s", &[(2, at(1_000))]));
    assert!(!promotes(&actions), "{actions:?}");
    assert_eq!(*m.state().current(), active("s"));
}

/// The answer was lost (a timeout): the batch stays pending; the next read shows our fence,
/// so it won and the promotion runs.
#[test]
fn a_lost_answer_is_resolved_by_the_next_read() {
    let mut m = machine(GatePolicy::default());
    let commit = up_to_commit(&mut m);
    m.handle(Event::Committed {
        token: commit,
        now: at(1_300),
        result: Err(Failure::new("timeout", "no response")),
    });
    drain(&mut m);
    assert!(m.write_pending());
    // After the backoff, the next round reads before deciding anything.
    let actions = round(&mut m, 3_000, &[("p", DOWN), ("s", UP)]);
    let Some(Action::Read { token }) = actions.first().cloned() else {
        panic!("{actions:?}");
    };
    m.handle(Event::Read {
        token,
        now: at(3_100),
        result: Ok(view(2, "m0", "s", &[(2, at(1_100))])),
    });
    let actions = drain(&mut m);
    assert!(promotes(&actions), "{actions:?}");
    assert!(!m.write_pending());
    assert_eq!(m.applied(), 1);
}

#[test]
fn nothing_acts_on_a_decision_that_could_not_be_persisted() {
    let mut m = machine(GatePolicy::default());
    first_read(&mut m, 0, view(1, "m1", "p", &[]));
    let actions = round(&mut m, 1_000, &[("p", DOWN), ("s", UP)]);
    let decision = append_token(&actions, "Decision");
    m.handle(Event::Appended {
        token: decision,
        result: Err(Failure::new("audit", "disk full")),
    });
    let actions = drain(&mut m);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Plan { .. } | Action::Commit { .. })),
        "{actions:?}"
    );
    assert!(!m.busy(), "the next round decides again");
    assert_eq!(*m.state().current(), active("p"));
}

fn freeze(seq: u64) -> VerifiedCommand {
    let command = OperatorCommand::new(
        crate::ClusterId::new("test", &membership()),
        op("oncall"),
        GateId::new("app").unwrap(),
        OpAction::Freeze,
        seq,
        T0,
        60_000,
    );
    let signed = SignedCommand::sign(&command, &key(9)).unwrap();
    VerifiedCommand { command, signed }
}

#[test]
fn an_operator_command_is_applied_only_once_audited() {
    let mut m = machine(GatePolicy::default());
    m.handle(Event::Command {
        token: 7,
        now: at(0),
        command: freeze(1),
    });
    let actions = drain(&mut m);
    let append = append_token(&actions, "OperatorCommand");
    assert!(m.state().frozen().is_none(), "not before it is durable");
    m.handle(Event::Appended {
        token: append,
        result: Err(Failure::new("audit", "disk full")),
    });
    let actions = drain(&mut m);
    assert!(
        matches!(
            actions.as_slice(),
            [Action::CommandDone {
                token: 7,
                result: Err(CommandFailure::Audit(_))
            }]
        ),
        "{actions:?}"
    );
    assert!(m.state().frozen().is_none());

    m.handle(Event::Command {
        token: 8,
        now: at(10),
        command: freeze(1),
    });
    let actions = drain(&mut m);
    let append = append_token(&actions, "OperatorCommand");
    let actions = ack(&mut m, append);
    assert!(
        matches!(
            actions.as_slice(),
            [Action::CommandDone {
                token: 8,
                result: Ok(())
            }]
        ),
        "{actions:?}"
    );
    assert!(m.state().frozen().is_some());
}

/// Changes other agents made, listed by the fence, count against the velocity rule of an
/// agent that never saw them (it was down): with max_changes = 2 in the window, a third
/// waits.
#[test]
fn changes_listed_by_the_fence_count_against_velocity() {
    let policy = GatePolicy {
        max_changes: 2,
        wait_period_ms: 0,
        auto_failback: true,
        ..GatePolicy::default()
    };
    let mut m = machine(policy);
    // Two changes in the last minute by others; the records are back at the primary.
    first_read(
        &mut m,
        60_000,
        view(3, "m1", "p", &[(2, at(1_000)), (3, at(30_000))]),
    );
    let actions = round(&mut m, 61_000, &[("p", DOWN), ("s", UP)]);
    assert!(
        !actions.iter().any(|a| matches!(
            a,
            Action::Append {
                record: AuditRecord::Decision { .. },
                ..
            }
        )),
        "{actions:?}"
    );
    assert_eq!(m.last_code(), "velocity");
}

/// An answer the gate no longer waits for (a repeated or stale one, another token) changes
/// nothing: the batch in flight is still judged by its own answer, and promotes.
#[test]
fn a_stale_answer_does_not_lose_the_write_in_flight() {
    let mut m = machine(GatePolicy::default());
    let commit = up_to_commit(&mut m);
    for stale in [
        Event::Planned {
            token: commit + 100,
            now: at(1_250),
            result: Err(Failure::new("timeout", "an old plan's answer")),
        },
        Event::Committed {
            token: commit + 100,
            now: at(1_250),
            result: Err(Failure::new("timeout", "an old batch's answer")),
        },
    ] {
        m.handle(stale);
        assert!(drain(&mut m).is_empty(), "a stale answer acts");
        assert!(m.busy(), "the write is still in flight");
    }
    m.handle(Event::Committed {
        token: commit,
        now: at(1_300),
        result: Ok(Committed::Accepted(Accepted {
            epoch: 2,
            change_id: "C1".into(),
            in_sync: true,
            accepted_at_ms: None,
            in_sync_at_ms: None,
        })),
    });
    let actions = drain(&mut m);
    assert!(promotes(&actions), "{actions:?}");
    assert_eq!(*m.state().current(), active("s"));
}
