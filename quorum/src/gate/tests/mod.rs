//! Table tests of the gate rules, one module per gate kind, on a fixed 3-member cluster whose
//! certificates are real (signed, verifiable).

mod drill;
mod failover;
mod machine;
mod spec;
mod weighted;

use std::sync::Arc;

use super::*;
use crate::ballot::{Ballot, ConfigDigest};
use crate::book::VerifiedBallot;
use crate::decision::State;
use crate::ids::{AgentId, CheckId, GateId, OperatorId, TargetId};
use crate::membership::{Member, Membership};
use crate::observation::{Observation, Status};
use crate::signed::{SignedBallot, SigningKey};
use crate::tally::{verify_certificate, Certificate, Outcome};
use crate::time::UnixMillis;
use crate::Reason;

const DIGEST: ConfigDigest = ConfigDigest([0x42; 32]);
const T0: UnixMillis = UnixMillis(1_700_000_000_000);

fn at(ms: u64) -> UnixMillis {
    T0.plus(ms)
}
fn c(s: &str) -> CheckId {
    CheckId::new(s).unwrap()
}
fn t(s: &str) -> TargetId {
    TargetId::new(s).unwrap()
}
fn op(s: &str) -> OperatorId {
    OperatorId::new(s).unwrap()
}

fn key(i: u8) -> SigningKey {
    SigningKey::from_bytes(&[i + 1; 32])
}

fn membership() -> Membership {
    let members = (0..3)
        .map(|i| Member {
            id: AgentId::new(format!("m{i}")).unwrap(),
            region: "r".into(),
            key: key(i).verifying_key(),
        })
        .collect();
    Membership::new(members).unwrap()
}

/// A real certificate: Q = 2 members' signed ballots saying `outcome` about `check`.
fn cert(check: &str, outcome: Outcome) -> Certificate {
    let status = match outcome {
        Outcome::Healthy => Status::Healthy,
        _ => Status::Unhealthy,
    };
    let ballots = (0..2)
        .map(|i| {
            let obs = Observation::new(c(check), status, Reason::from_static("ok"), 1, T0);
            let b = Ballot::new(
                AgentId::new(format!("m{i}")).unwrap(),
                1,
                T0,
                15_000,
                DIGEST,
                vec![obs],
            )
            .unwrap();
            let signed = SignedBallot::sign(&b, &key(i));
            Arc::new(VerifiedBallot { signed, ballot: b })
        })
        .collect();
    Certificate {
        check: c(check),
        outcome,
        ballots,
    }
}

fn assert_verifies(cert: &Certificate) {
    let v = verify_certificate(&cert.to_bytes(), &membership(), Some(&DIGEST), 0);
    assert!(v.is_ok(), "{v:?}");
}

/// One check's input in a table: decided state, whether a certificate proves it, its lag.
type Row = (State, bool, Option<u64>);

/// Decided state of a check, with (`proved`) or without the certificate for it.
fn decided(state: State, proved: bool) -> Row {
    (state, proved, None)
}
const UP: Row = (State::Healthy, true, None);
const DOWN: Row = (State::Unhealthy, true, None);

fn inputs(rows: &[(&str, Row)]) -> Inputs {
    let mut inputs = Inputs::new();
    for (check, (state, proved, lag)) in rows {
        let outcome = match state {
            State::Healthy => Outcome::Healthy,
            State::Unhealthy => Outcome::Unhealthy,
        };
        let certificate = proved.then(|| cert(check, outcome));
        inputs.insert(
            c(check),
            CheckInput::new(*state, certificate).with_lag_ms(*lag),
        );
    }
    inputs
}

fn change(e: Evaluation) -> PlannedChange {
    match e {
        Evaluation::Change(c) => c,
        Evaluation::Hold(h) => panic!("expected a change, got hold {h:?}"),
    }
}

fn hold(e: &Evaluation) -> &HoldReason {
    match e {
        Evaluation::Hold(h) => h,
        Evaluation::Change(c) => panic!("expected a hold, got change to {}", c.to),
    }
}

/// The checks and outcomes of a change's certificates, each verified.
fn proofs(change: &PlannedChange) -> Vec<(String, Outcome)> {
    change
        .certificates
        .iter()
        .map(|cert| {
            assert_verifies(cert);
            (cert.check.to_string(), cert.outcome)
        })
        .collect()
}

fn approval(to: &str, expires_at: UnixMillis) -> Approval {
    Approval {
        to: t(to),
        by: op("alice"),
        seq: 7,
        expires_at,
    }
}

fn gate_id(s: &str) -> GateId {
    GateId::new(s).unwrap()
}
