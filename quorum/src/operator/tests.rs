//! Operator commands: round trips, every rejection, malformed bytes, domain separation.

use super::book::OperatorListError;
use super::codec::{decode_command, encode_command};
use super::*;
use crate::ballot::{Ballot, ConfigDigest};
use crate::book::{BallotBook, BookConfig};
use crate::cluster::ClusterId;
use crate::codec::Writer;
use crate::gate::{GatePolicy, Mode, Target, WeightedTarget};
use crate::ids::{AgentId, CheckId};
use crate::membership::{Member, Membership};
use crate::signed::{SignedBallot, SigningKey, DOMAIN_TAG};
use ed25519_dalek::Signer;

const NOW: UnixMillis = UnixMillis(1_700_000_000_000);
const SKEW: u64 = 1_000;

fn t(s: &str) -> TargetId {
    TargetId::new(s).unwrap()
}
fn alice_key() -> SigningKey {
    SigningKey::from_bytes(&[0xa1; 32])
}
fn bob_key() -> SigningKey {
    SigningKey::from_bytes(&[0xb0; 32])
}

fn pair() -> GateSpec {
    let kind = GateKind::Failover {
        primary: Target::new(t("use1"), CheckId::new("api-use1").unwrap()),
        secondary: Target::new(t("euw1"), CheckId::new("api-euw1").unwrap()),
    };
    GateSpec::new(
        GateId::new("app").unwrap(),
        kind,
        GatePolicy::default(),
        Mode::Live,
    )
    .unwrap()
}

fn weighted() -> GateSpec {
    let targets = ["a", "b"]
        .iter()
        .map(|id| WeightedTarget {
            target: Target::new(t(id), CheckId::new(format!("ck-{id}")).unwrap()),
            weight: 10,
        })
        .collect();
    let kind = GateKind::Weighted { targets };
    GateSpec::new(
        GateId::new("web").unwrap(),
        kind,
        GatePolicy::default(),
        Mode::Live,
    )
    .unwrap()
}

fn prod() -> ClusterId {
    ClusterId {
        name: "prod".into(),
        members_sha256: [7; 32],
    }
}

fn book() -> OperatorBook {
    let operators = vec![
        Operator {
            id: OperatorId::new("alice").unwrap(),
            key: alice_key().verifying_key(),
        },
        Operator {
            id: OperatorId::new("bob").unwrap(),
            key: bob_key().verifying_key(),
        },
    ];
    let config = OperatorBookConfig {
        max_clock_skew_ms: SKEW,
        max_valid_for_ms: 600_000,
    };
    OperatorBook::new(prod(), operators, [pair(), weighted()], config).unwrap()
}

fn cmd(gate: &str, action: Action, seq: u64) -> OperatorCommand {
    OperatorCommand::new(
        prod(),
        OperatorId::new("alice").unwrap(),
        GateId::new(gate).unwrap(),
        action,
        seq,
        NOW,
        300_000,
    )
}

fn wire(c: &OperatorCommand, key: &SigningKey) -> Vec<u8> {
    SignedCommand::sign(c, key).unwrap().to_wire()
}

fn every_action() -> Vec<(&'static str, Action)> {
    let desired = DesiredState::Failover { active: t("euw1") };
    let weights = DesiredState::weighted([(t("a"), 0), (t("b"), 10)]);
    vec![
        ("app", Action::Freeze),
        ("app", Action::Unfreeze),
        ("app", Action::Approve { to: t("use1") }),
        (
            "app",
            Action::Override {
                desired,
                force: true,
            },
        ),
        (
            "web",
            Action::Override {
                desired: weights,
                force: false,
            },
        ),
        (
            "app",
            Action::Drill {
                duration_ms: 600_000,
                dry_run: false,
            },
        ),
        (
            "app",
            Action::Drill {
                duration_ms: 1,
                dry_run: true,
            },
        ),
        ("app", Action::DrillAbort),
    ]
}

#[test]
fn every_action_round_trips_and_is_accepted() {
    let mut b = book();
    for (seq, (gate, action)) in (1..).zip(every_action()) {
        let c = cmd(gate, action.clone(), seq).with_note("incident 42: é");
        assert_eq!(decode_command(&encode_command(&c)).unwrap(), c);
        let w = wire(&c, &alice_key());
        let signed = SignedCommand::from_wire(&w).unwrap();
        assert_eq!(signed.decode_unverified().unwrap(), c);
        match b.handle(NOW, &w) {
            Ok(CommandAccepted::New(v)) => {
                assert_eq!((v.command, v.signed.to_wire()), (c, w.clone()));
                assert_eq!(v.signed.digest_hex().len(), 64);
            }
            other => panic!("{}: {other:?}", action.as_str()),
        }
        assert_eq!(
            b.handle(NOW, &w),
            Ok(CommandAccepted::Duplicate),
            "retried send"
        );
    }
    assert_eq!(b.last_seq(&OperatorId::new("alice").unwrap()), Some(8));
    let long = cmd("app", Action::Freeze, 1).with_note("é".repeat(200));
    assert_eq!(long.note.len(), MAX_NOTE_LEN);
    let mut bad = cmd("app", Action::Freeze, 1);
    bad.note = "x".repeat(MAX_NOTE_LEN + 1);
    assert!(
        SignedCommand::sign(&bad, &alice_key()).is_err(),
        "never sign what agents refuse"
    );
}

#[test]
fn every_rejection_reason() {
    let mut b = book();
    let ok = cmd("app", Action::Freeze, 10);
    assert!(matches!(
        b.handle(NOW, &wire(&ok, &alice_key())),
        Ok(CommandAccepted::New(_))
    ));
    let mut stranger = cmd("app", Action::Freeze, 11);
    stranger.operator = OperatorId::new("mallory").unwrap();
    let at = |ms: u64, valid: u32| OperatorCommand {
        issued_at: UnixMillis(ms),
        valid_for_ms: valid,
        ..cmd("app", Action::Freeze, 11)
    };
    let approve = |gate: &str, to: &str| cmd(gate, Action::Approve { to: t(to) }, 11);
    let drain_all = Action::Override {
        desired: DesiredState::weighted([(t("a"), 0), (t("b"), 0)]),
        force: true,
    };
    let for_cluster = |name: &str, members: u8| OperatorCommand {
        cluster: Some(ClusterId {
            name: name.into(),
            members_sha256: [members; 32],
        }),
        ..cmd("app", Action::Freeze, 11)
    };
    let v1 = OperatorCommand {
        cluster: None,
        ..cmd("app", Action::Freeze, 11)
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![0; MAX_COMMAND_BYTES + 1], "too_large"),
        (wire(&v1, &alice_key()), "old_version"),
        (
            wire(&for_cluster("staging", 7), &alice_key()),
            "wrong_cluster",
        ),
        (wire(&for_cluster("prod", 8), &alice_key()), "wrong_cluster"),
        (b"QGX\x01garbage".to_vec(), "decode"),
        (wire(&stranger, &alice_key()), "unknown_operator"),
        (
            wire(&cmd("app", Action::Freeze, 11), &bob_key()),
            "bad_signature",
        ),
        (
            wire(&cmd("app", Action::Unfreeze, 10), &alice_key()),
            "replay",
        ),
        (wire(&cmd("app", Action::Freeze, 9), &alice_key()), "replay"),
        (
            wire(&at(NOW.0 + SKEW + 1, 300_000), &alice_key()),
            "from_future",
        ),
        (wire(&at(NOW.0 - 1_001, 1_000), &alice_key()), "expired"),
        (wire(&at(NOW.0, 600_001), &alice_key()), "validity_too_long"),
        (
            wire(&cmd("nope", Action::Freeze, 11), &alice_key()),
            "unknown_gate",
        ),
        (wire(&approve("web", "a"), &alice_key()), "invalid_action"),
        (
            wire(&approve("app", "mars"), &alice_key()),
            "invalid_action",
        ),
        (
            wire(&cmd("web", drain_all, 11), &alice_key()),
            "invalid_action",
        ),
        (
            wire(
                &cmd(
                    "app",
                    Action::Override {
                        desired: DesiredState::weighted([]),
                        force: false,
                    },
                    11,
                ),
                &alice_key(),
            ),
            "invalid_action",
        ),
        (
            wire(&cmd("web", drill(60_000), 11), &alice_key()),
            "invalid_action",
        ),
        (
            wire(&cmd("web", Action::DrillAbort, 11), &alice_key()),
            "invalid_action",
        ),
        (
            wire(&cmd("app", drill(0), 11), &alice_key()),
            "invalid_action",
        ),
        (
            wire(&cmd("app", drill(600_001), 11), &alice_key()),
            "invalid_action",
        ),
    ];
    for (bytes, reason) in cases {
        let err = b.handle(NOW, &bytes).expect_err(reason);
        assert_eq!(err.reason(), reason, "{err}");
        assert!(CommandRejection::REASONS.contains(&err.reason()));
    }
    // Rejections changed nothing: the next seq is still accepted, at the skew limit.
    assert!(b
        .handle(NOW, &wire(&at(NOW.0 + SKEW, 300_000), &alice_key()))
        .is_ok());
    b.restore_seq(OperatorId::new("bob").unwrap(), 500);
    let mut from_bob = cmd("app", Action::Freeze, 500);
    from_bob.operator = OperatorId::new("bob").unwrap();
    assert_eq!(
        b.handle(NOW, &wire(&from_bob, &bob_key()))
            .unwrap_err()
            .reason(),
        "replay"
    );
}

fn drill(duration_ms: u32) -> Action {
    Action::Drill {
        duration_ms,
        dry_run: false,
    }
}

#[test]
fn a_drill_the_caller_refuses_changes_nothing_and_keeps_its_seq_free() {
    let b = book();
    let refuse = |_: &OperatorCommand| {
        Err(CommandRejection::DrillRefused {
            gate: GateId::new("app").unwrap(),
            why: crate::gate::DrillRefusal::Frozen,
        })
    };
    let w = wire(&cmd("app", drill(60_000), 3), &alice_key());
    let err = b.verify(NOW, &w, refuse).unwrap_err();
    assert_eq!(err.reason(), "drill_refused");
    assert!(err.to_string().contains("frozen"), "{err}");
    assert!(CommandRejection::REASONS.contains(&err.reason()));
    assert_eq!(b.last_seq(&OperatorId::new("alice").unwrap()), None);
    // The same bytes, once the gate allows it: accepted (not a duplicate, not a replay).
    assert!(matches!(
        b.verify(NOW, &w, |_| Ok(())),
        Ok(CommandAccepted::New(_))
    ));
}

/// Verifying records nothing: a command verified but never committed (its audit append
/// failed) is new when it comes again, not a duplicate; once committed, the same bytes are a
/// duplicate and any lower seq a replay.
#[test]
fn only_a_committed_command_consumes_its_seq() {
    let mut b = book();
    let alice = OperatorId::new("alice").unwrap();
    let w = wire(&cmd("app", Action::Freeze, 10), &alice_key());
    let Ok(CommandAccepted::New(v)) = b.verify(NOW, &w, |_| Ok(())) else {
        panic!("a valid command verifies");
    };
    assert_eq!(b.last_seq(&alice), None);
    assert!(matches!(
        b.verify(NOW, &w, |_| Ok(())),
        Ok(CommandAccepted::New(_))
    ));
    b.commit(&v);
    assert_eq!(b.last_seq(&alice), Some(10));
    assert_eq!(
        b.verify(NOW, &w, |_| Ok(())),
        Ok(CommandAccepted::Duplicate)
    );
    let older = wire(&cmd("app", Action::Unfreeze, 9), &alice_key());
    assert_eq!(
        b.verify(NOW, &older, |_| Ok(())).unwrap_err().reason(),
        "replay"
    );
    // Committing an older command never lowers the operator's last seq.
    let Ok(CommandAccepted::New(v9)) = book().verify(NOW, &older, |_| Ok(())) else {
        panic!("verifies on a fresh book");
    };
    b.commit(&v9);
    assert_eq!(b.last_seq(&alice), Some(10));
}

#[test]
fn drill_codec_is_canonical() {
    let c = cmd(
        "app",
        Action::Drill {
            duration_ms: 0x0102_0304,
            dry_run: true,
        },
        1,
    );
    let bytes = encode_command(&c);
    // ... action tag 4, duration (big-endian u32), dry-run flag, then the empty note.
    assert!(bytes.ends_with(&[4, 1, 2, 3, 4, 1, 0, 0]), "{bytes:?}");
    for flag in [2u8, 0xff] {
        let mut bad = bytes.clone();
        let at = bad.len() - 3;
        bad[at] = flag;
        assert!(decode_command(&bad).is_err(), "dry-run flag {flag}");
    }
    let abort = encode_command(&cmd("app", Action::DrillAbort, 1));
    assert!(abort.ends_with(&[5, 0, 0]), "{abort:?}");
    let mut unknown = abort.clone();
    let at = unknown.len() - 3;
    unknown[at] = 6;
    assert!(decode_command(&unknown).is_err());
}

#[test]
fn truncations_and_bit_flips_are_rejected_without_panicking() {
    for (gate, action) in every_action() {
        let w = wire(&cmd(gate, action, 1), &alice_key());
        for cut in 0..w.len() {
            assert!(
                book().handle(NOW, &w[..cut]).is_err(),
                "prefix of {cut} bytes"
            );
        }
        for i in 0..w.len() {
            for bit in 0..8 {
                let mut f = w.clone();
                f[i] ^= 1 << bit;
                assert!(
                    book().handle(NOW, &f).is_err(),
                    "flip of bit {bit} at byte {i}"
                );
            }
        }
    }
}

#[test]
fn ballots_and_commands_never_pass_as_each_other() {
    let key = alice_key();
    let c = cmd("app", Action::Freeze, 1);
    // Command bytes signed under the ballot domain: a bad signature, not a command.
    let ballot_sig = key
        .sign(&[DOMAIN_TAG, &encode_command(&c)].concat())
        .to_bytes();
    let mut w = Writer::default();
    w.bytes(b"QGX");
    w.u8(1);
    w.u32(u32::try_from(encode_command(&c).len()).unwrap());
    w.bytes(&encode_command(&c));
    w.bytes(&ballot_sig);
    assert_eq!(
        book().handle(NOW, &w.buf).unwrap_err().reason(),
        "bad_signature"
    );
    // A ballot signed by the operator's key is no command either.
    let ballot = Ballot::new(
        AgentId::new("alice").unwrap(),
        1,
        NOW,
        1_000,
        ConfigDigest([0; 32]),
        vec![],
    )
    .unwrap();
    let signed_ballot = SignedBallot::sign(&ballot, &key);
    assert_eq!(
        book()
            .handle(NOW, &signed_ballot.to_wire())
            .unwrap_err()
            .reason(),
        "decode"
    );
    // A command's bytes and signature in a ballot envelope do not verify as a ballot, even
    // for a member whose ballot key is the operator's key.
    let signed = SignedCommand::sign(&c, &key).unwrap();
    let mut w = Writer::default();
    w.bytes(b"QGS");
    w.u8(1);
    w.u32(u32::try_from(signed.command_bytes().len()).unwrap());
    w.bytes(signed.command_bytes());
    w.bytes(signed.signature());
    let as_ballot = SignedBallot::from_wire(&w.buf).unwrap();
    assert!(as_ballot.verify_signature(&key.verifying_key()).is_err());
    let member = Member {
        id: AgentId::new("alice").unwrap(),
        region: "r".into(),
        key: key.verifying_key(),
    };
    let config = BookConfig {
        max_ballot_bytes: 4096,
        max_clock_skew_ms: 0,
        max_valid_for_ms: u64::from(u32::MAX),
        config_digest: ConfigDigest([0; 32]),
    };
    let mut ballots = BallotBook::new(Membership::new(vec![member]).unwrap(), config);
    assert_eq!(
        ballots.handle_ballot(NOW, &w.buf).unwrap_err().reason(),
        "decode"
    );
}

#[test]
fn commands_change_the_gate_state() {
    let spec = pair();
    let mut state = GateState::new(&spec);
    let mut b = book();
    let mut apply = |seq, action| {
        let w = wire(&cmd("app", action, seq), &alice_key());
        let Ok(CommandAccepted::New(v)) = b.handle(NOW, &w) else {
            panic!("refused")
        };
        v.apply_to(&spec, &mut state, NOW).unwrap();
        state.clone()
    };
    assert!(apply(1, Action::Freeze).frozen().is_some());
    assert!(apply(2, Action::Unfreeze).frozen().is_none());
    let s = apply(3, Action::Approve { to: t("euw1") });
    let a = s.approval().unwrap();
    assert_eq!(
        (&a.to, a.seq, a.expires_at),
        (&t("euw1"), 3, NOW.plus(300_000))
    );
    let desired = DesiredState::Failover { active: t("euw1") };
    let s = apply(
        4,
        Action::Override {
            desired: desired.clone(),
            force: false,
        },
    );
    let o = s.pending_override().unwrap();
    assert_eq!(
        (&o.desired, o.force, s.frozen().is_some()),
        (&desired, false, true)
    );
    let s = apply(5, Action::Unfreeze);
    assert!(s.pending_override().is_none() && s.frozen().is_none());
    let s = apply(
        6,
        Action::Drill {
            duration_ms: 60_000,
            dry_run: true,
        },
    );
    let d = s.drill().unwrap();
    assert_eq!(
        (d.seq, d.started_at, d.ends_at, d.dry_run, d.running(NOW)),
        (6, NOW, NOW.plus(60_000), true, true)
    );
    let s = apply(7, Action::DrillAbort);
    let end = s.drill().unwrap().ended.clone().unwrap();
    assert_eq!(end.at, NOW);
    assert_eq!(end.cause.code(), "aborted");
    assert!(!s.drill().unwrap().running(NOW));
    // Applying to another gate's state is refused.
    let mut other = GateState::new(&weighted());
    let v = VerifiedCommand {
        command: cmd("app", Action::Freeze, 8),
        signed: SignedCommand::sign(&cmd("app", Action::Freeze, 8), &alice_key()).unwrap(),
    };
    assert_eq!(
        v.apply_to(&weighted(), &mut other, NOW)
            .unwrap_err()
            .reason(),
        "unknown_gate"
    );
}

#[test]
fn operator_lists_must_be_unique() {
    let op = |id: &str, seed: u8| Operator {
        id: OperatorId::new(id).unwrap(),
        key: SigningKey::from_bytes(&[seed; 32]).verifying_key(),
    };
    let config = OperatorBookConfig {
        max_clock_skew_ms: 0,
        max_valid_for_ms: 1,
    };
    let err = OperatorBook::new(prod(), vec![op("a", 1), op("a", 2)], [], config).unwrap_err();
    assert!(matches!(err, OperatorListError::DuplicateId(_)));
    let err = OperatorBook::new(prod(), vec![op("a", 1), op("b", 1)], [], config).unwrap_err();
    assert!(matches!(err, OperatorListError::DuplicateKey(..)));
}

/// The refusals an operator meets after a config mix-up or an upgrade say what happened and
/// what to do, naming both clusters.
#[test]
fn cluster_refusals_name_the_clusters_and_the_fix() {
    let b = book();
    let staging = OperatorCommand {
        cluster: Some(ClusterId {
            name: "staging".into(),
            members_sha256: [3; 32],
        }),
        ..cmd("app", Action::Freeze, 1)
    };
    let err = b
        .verify(NOW, &wire(&staging, &alice_key()), |_| Ok(()))
        .unwrap_err()
        .to_string();
    for part in [
        "alice's command is for cluster \"staging\" (members 030303030303)",
        "this agent is cluster \"prod\" (members 070707070707)",
        "sign it again with this cluster's config",
    ] {
        assert!(err.contains(part), "{part}: {err}");
    }
    let v1 = OperatorCommand {
        cluster: None,
        ..cmd("app", Action::Freeze, 1)
    };
    let bytes = encode_command(&v1);
    assert_eq!(&bytes[..4], b"QGO\x01", "no cluster: the version-1 layout");
    assert_eq!(
        decode_command(&bytes).unwrap(),
        v1,
        "version 1 still decodes"
    );
    let err = b
        .verify(NOW, &wire(&v1, &alice_key()), |_| Ok(()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("signed by an older quorumgate without a cluster identity")
            && err.contains("sign it again with `quorumgate <command>`"),
        "{err}"
    );
    let v2 = encode_command(&cmd("app", Action::Freeze, 1));
    assert_eq!(&v2[..4], b"QGO\x02");
    let mut v3 = v2.clone();
    v3[3] = 3;
    assert_eq!(
        decode_command(&v3),
        Err(crate::codec::DecodeError::UnsupportedVersion(3))
    );
}
