//! Fuzzing entry points, shared by the cargo-fuzz targets in `fuzz/` and the corpus-replay
//! tests in `quorum/tests/fuzz_corpus.rs`, so the stable test suite feeds every committed
//! corpus file through exactly the code the fuzzer ran. Not part of the API.
//!
//! Each entry point takes arbitrary bytes, drives the real receipt path, and panics only when
//! a property the protocol promises is broken (a panic inside the product code is a bug too):
//!
//! - [`ballot`]: a sequence of ballots into one [`BallotBook`] (decode, member, signature,
//!   digest, seq, skew, expiry), then a tally whose certificates must verify.
//! - [`operator_command`]: a sequence of commands into one [`OperatorBook`] (decode, operator,
//!   signature, replay, clock, gate, action), applied to the gates' states and evaluated.
//!
//! # Input framing (both targets)
//!
//! ```text
//! input = frame*
//! frame = flags:u8 len:u16 payload[len]     (a short last frame takes what is left)
//! ```
//! `flags` bit 7 set: the payload is *unsigned* canonical bytes (a ballot or a command) that
//! the harness signs with the fixed key `flags & 3` before delivering it, so the fuzzer can
//! reach the checks after the signature; clear: the payload is delivered as received from the
//! network. Bits 2..=6 move the receiver's clock: `now = NOW + step * 500 ms`.

use std::collections::BTreeSet;

use ed25519_dalek::Signer;

use crate::ballot::ConfigDigest;
use crate::book::{Accepted, BallotBook, BookConfig, Rejection};
use crate::cluster::ClusterId;
use crate::codec::{decode_ballot, encode_ballot};
use crate::gate::{
    self, DesiredState, GateKind, GatePolicy, GateSpec, GateState, Inputs, Mode, Target,
    WeightedTarget,
};
use crate::ids::{AgentId, CheckId, GateId, OperatorId, TargetId};
use crate::membership::{Member, Membership};
use crate::operator::codec::{decode_command, encode_command, OPERATOR_DOMAIN_TAG};
use crate::operator::{
    CommandAccepted, CommandRejection, Operator, OperatorBook, OperatorBookConfig, SignedCommand,
};
use crate::signed::{SignedBallot, SigningKey, DOMAIN_TAG};
use crate::tally::{tally_all, verify_certificate, Outcome};
use crate::time::UnixMillis;

/// The receiver's base clock; seed ballots and commands are issued at it.
pub const NOW: UnixMillis = UnixMillis(1_700_000_000_000);
/// Clock skew allowed by both books.
pub const SKEW_MS: u64 = 1_000;
/// The config digest the ballot book expects.
pub const DIGEST: ConfigDigest = ConfigDigest([9; 32]);
/// The members' ids; member `i` signs with [`key`]`(i)`.
pub const MEMBERS: [&str; 3] = ["a0", "a1", "a2"];
/// The operators' ids; operator `i` signs with [`key`]`(i)`.
pub const OPERATORS: [&str; 2] = ["alice", "bob"];
/// The gates the operator book knows: a failover pair and a weighted set.
pub const GATES: [&str; 2] = ["app", "web"];
/// Largest ballot the fuzzed book accepts (seed ballots are far smaller).
pub const MAX_FUZZ_BALLOT_BYTES: usize = 64 * 1024;
/// Longest command validity the operator book accepts.
pub const MAX_VALID_FOR_MS: u64 = 600_000;
/// The `ballot` target's book: longest validity a ballot may claim (the seeds' ballots claim
/// 15 s, the cluster's `ballot_valid_for`).
pub const MAX_BALLOT_VALID_FOR_MS: u64 = 15_000;

/// Fixed signing key `i` (0..=3). Keys 0..=2 belong to members/operators; 3 to nobody.
#[must_use]
pub fn key(i: u8) -> SigningKey {
    SigningKey::from_bytes(&[0x11u8.wrapping_mul(i.wrapping_add(1)); 32])
}

/// How deep one input got: lets the replay tests prove the seeds pass the signature checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reached {
    /// Ballots or commands accepted as new.
    pub accepted: usize,
    /// Certificates made by the tally and verified (ballot target only).
    pub certificates: usize,
}

/// One frame of the input (see the module docs).
#[derive(Debug)]
struct Frame<'a> {
    sign_with: Option<u8>,
    now: UnixMillis,
    payload: &'a [u8],
}

fn frames(mut input: &[u8]) -> Vec<Frame<'_>> {
    let mut out = Vec::new();
    while let Some((&flags, rest)) = input.split_first() {
        let (len, rest) = match rest {
            [hi, lo, rest @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), rest),
            _ => (rest.len(), &[][..]),
        };
        let len = len.min(rest.len());
        let (payload, rest) = rest.split_at(len);
        out.push(Frame {
            sign_with: (flags & 0x80 != 0).then_some(flags & 3),
            now: NOW.plus(u64::from((flags >> 2) & 0x1f) * 500),
            payload,
        });
        input = rest;
    }
    out
}

/// The cluster the `operator` target's book belongs to, and its seeds are signed for.
#[must_use]
pub fn cluster() -> ClusterId {
    ClusterId {
        name: "fuzz".to_owned(),
        members_sha256: [0x5a; 32],
    }
}

/// The clock step at which the `operator` target takes the audit append to fail.
pub const AUDIT_FAILS_STEP: u64 = 31;

/// Builds one frame: the inverse of the framing the targets parse (for seed generators).
#[must_use]
pub fn frame(sign_with: Option<u8>, clock_step: u8, payload: &[u8]) -> Vec<u8> {
    let mut flags = (clock_step & 0x1f) << 2;
    if let Some(k) = sign_with {
        flags |= 0x80 | (k & 3);
    }
    let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    let mut out = vec![flags];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&payload[..usize::from(len)]);
    out
}

/// Signs canonical-or-not ballot bytes the way [`SignedBallot::sign`] would, and wraps them in
/// the wire envelope, without decoding them first (the book must cope with what it gets).
#[must_use]
pub fn sign_ballot_bytes(ballot_bytes: &[u8], key: &SigningKey) -> Vec<u8> {
    let mut msg = DOMAIN_TAG.to_vec();
    msg.extend_from_slice(ballot_bytes);
    envelope(b"QGS", ballot_bytes, &key.sign(&msg).to_bytes())
}

/// As [`sign_ballot_bytes`], for operator command bytes.
#[must_use]
pub fn sign_command_bytes(command_bytes: &[u8], key: &SigningKey) -> Vec<u8> {
    let mut msg = OPERATOR_DOMAIN_TAG.to_vec();
    msg.extend_from_slice(command_bytes);
    envelope(b"QGX", command_bytes, &key.sign(&msg).to_bytes())
}

fn envelope(magic: &[u8; 3], body: &[u8], sig: &[u8; 64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + body.len() + 64);
    out.extend_from_slice(magic);
    out.push(1);
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(sig);
    out
}

/// The members of the fuzzed ballot book.
#[must_use]
pub fn membership() -> Membership {
    let members = MEMBERS
        .iter()
        .zip(0u8..)
        .map(|(id, i)| Member {
            id: AgentId::new(*id).unwrap_or_else(|e| panic!("fixed member id {id}: {e}")),
            region: format!("r{i}"),
            key: key(i).verifying_key(),
        })
        .collect();
    Membership::new(members).unwrap_or_else(|e| panic!("fixed membership: {e}"))
}

/// Fuzz target `ballot`: every frame's wire goes through [`BallotBook::handle_ballot`].
///
/// Checks: canonical encodings round-trip byte for byte; an accepted ballot is from a member,
/// verifies with its key, carries our digest, is live, and has a seq above the previous one;
/// a duplicate is byte-identical to the held ballot; and every certificate the tally makes
/// from the accepted ballots verifies with [`verify_certificate`].
pub fn ballot(input: &[u8]) -> Reached {
    let mut reached = Reached::default();
    let config = BookConfig {
        max_ballot_bytes: MAX_FUZZ_BALLOT_BYTES,
        max_clock_skew_ms: SKEW_MS,
        max_valid_for_ms: MAX_BALLOT_VALID_FOR_MS,
        config_digest: DIGEST,
    };
    let mut book = BallotBook::new(membership(), config);
    let mut checks: BTreeSet<CheckId> = BTreeSet::new();
    let mut last_now = NOW;
    for f in frames(input) {
        let wire = match f.sign_with {
            Some(k) => {
                check_ballot_canonical(f.payload);
                sign_ballot_bytes(f.payload, &key(k))
            }
            None => f.payload.to_vec(),
        };
        let held_before = SignedBallot::from_wire(&wire)
            .ok()
            .and_then(|s| s.decode_unverified().ok())
            .and_then(|b| book.latest(b.agent()).cloned());
        if let Ok(s) = SignedBallot::from_wire(&wire) {
            assert_eq!(s.to_wire(), wire, "signed envelope does not round-trip");
            check_ballot_canonical(s.ballot_bytes());
        }
        let result = book.handle_ballot(f.now, &wire);
        match &result {
            Ok(Accepted::New(v)) => {
                let agent = v.ballot.agent();
                let member = book
                    .membership()
                    .get(agent)
                    .unwrap_or_else(|| panic!("accepted a ballot from non-member {agent}"));
                assert!(v.signed.verify_signature(&member.key).is_ok());
                assert_eq!(*v.ballot.config_digest(), DIGEST);
                assert!(
                    v.ballot.is_live_at(f.now, SKEW_MS),
                    "accepted a dead ballot"
                );
                assert!(
                    u64::from(v.ballot.valid_for_ms()) <= MAX_BALLOT_VALID_FOR_MS,
                    "accepted a ballot valid for longer than the cluster allows"
                );
                if let Some(h) = &held_before {
                    assert!(v.ballot.seq() > h.ballot.seq(), "accepted a replay");
                }
                checks.extend(v.ballot.observations().iter().map(|o| o.check.clone()));
                reached.accepted += 1;
            }
            Ok(Accepted::Duplicate) => {
                let held = held_before.unwrap_or_else(|| panic!("duplicate of nothing"));
                assert_eq!(
                    held.signed.to_wire(),
                    wire,
                    "duplicate is not byte-identical"
                );
            }
            Err(r) => {
                assert!(Rejection::REASONS.contains(&r.reason()));
                let _ = r.to_string();
            }
        }
        last_now = f.now;
    }
    for verdict in tally_all(&book, &checks, last_now) {
        let Some(cert) = verdict.certificate else {
            assert_eq!(verdict.outcome, Outcome::NoQuorum);
            continue;
        };
        let bytes = cert.to_bytes();
        if let Err(e) = verify_certificate(&bytes, book.membership(), Some(&DIGEST), SKEW_MS) {
            panic!("certificate made by the tally does not verify: {e}");
        }
        reached.certificates += 1;
    }
    reached
}

/// Decoding canonical ballot bytes and encoding them again gives the same bytes.
fn check_ballot_canonical(bytes: &[u8]) {
    if let Ok(b) = decode_ballot(bytes) {
        assert_eq!(encode_ballot(&b), bytes, "ballot encoding is not canonical");
    }
}

/// The gates of the fuzzed operator book: a failover pair and a weighted set of three.
#[must_use]
pub fn gate_specs() -> Vec<GateSpec> {
    let id = |s: &str| TargetId::new(s).unwrap_or_else(|e| panic!("fixed target {s}: {e}"));
    let check = |s: &str| CheckId::new(s).unwrap_or_else(|e| panic!("fixed check {s}: {e}"));
    let gate = |s: &str| GateId::new(s).unwrap_or_else(|e| panic!("fixed gate {s}: {e}"));
    let pair = GateKind::Failover {
        primary: Target::new(id("use1"), check("api-use1")),
        secondary: Target::new(id("euw1"), check("api-euw1")).with_lag_check(check("lag-euw1")),
    };
    let weighted = GateKind::Weighted {
        targets: ["a", "b", "c"]
            .iter()
            .map(|t| WeightedTarget {
                target: Target::new(id(t), check(&format!("ck-{t}"))),
                weight: 10,
            })
            .collect(),
    };
    let rpo = GatePolicy {
        max_rpo_ms: Some(30_000),
        ..GatePolicy::default()
    };
    [
        (GATES[0], pair, rpo),
        (GATES[1], weighted, GatePolicy::default()),
    ]
    .into_iter()
    .map(|(g, kind, policy)| {
        GateSpec::new(gate(g), kind, policy, Mode::Live)
            .unwrap_or_else(|e| panic!("fixed gate spec {g}: {e:?}"))
    })
    .collect()
}

/// Fuzz target `operator`: every frame's wire goes through [`OperatorBook::verify`] with the
/// drill prechecks the agent runs; a verified command is committed and applied to its gate's
/// state, and the gate is evaluated, as the agent's gate driver does — except on frames at the
/// last clock step ([`AUDIT_FAILS_STEP`]), where the audit append is taken to have failed:
/// nothing is committed or applied, so the same bytes may come back as new.
///
/// Checks: canonical command (and desired-state) encodings round-trip byte for byte; an
/// accepted command is from a configured operator, verifies, is newer than the last one from
/// that operator, and applies cleanly to the gate it was accepted for.
pub fn operator_command(input: &[u8]) -> Reached {
    let mut reached = Reached::default();
    let specs = gate_specs();
    let operators = OPERATORS
        .iter()
        .zip(0u8..)
        .map(|(id, i)| Operator {
            id: OperatorId::new(*id).unwrap_or_else(|e| panic!("fixed operator {id}: {e}")),
            key: key(i).verifying_key(),
        })
        .collect();
    let config = OperatorBookConfig {
        max_clock_skew_ms: SKEW_MS,
        max_valid_for_ms: MAX_VALID_FOR_MS,
    };
    let mut book = OperatorBook::new(cluster(), operators, specs.clone(), config)
        .unwrap_or_else(|e| panic!("fixed operator list: {e}"));
    let mut states: Vec<GateState> = specs.iter().map(GateState::new).collect();
    let inputs = Inputs::new();
    for f in frames(input) {
        let wire = match f.sign_with {
            Some(k) => {
                check_command_canonical(f.payload);
                sign_command_bytes(f.payload, &key(k))
            }
            None => f.payload.to_vec(),
        };
        if let Ok(s) = SignedCommand::from_wire(&wire) {
            assert_eq!(s.to_wire(), wire, "signed command does not round-trip");
            check_command_canonical(s.command_bytes());
        }
        let last = SignedCommand::from_wire(&wire)
            .ok()
            .and_then(|s| s.decode_unverified().ok())
            .and_then(|c| book.last_seq(&c.operator));
        let now = f.now;
        // The agent's drill precheck, except that this harness has no probe evidence: a
        // refusal for want of a healthy target is ignored so drills can start at all.
        let result = book.verify(now, &wire, |c| {
            let Some(i) = specs.iter().position(|s| *s.id() == c.gate) else {
                return Ok(());
            };
            let refused = |why| CommandRejection::DrillRefused {
                gate: c.gate.clone(),
                why,
            };
            match c.action {
                crate::operator::Action::Drill { .. } => {
                    match gate::drill::precheck(&specs[i], &states[i], &inputs, now) {
                        Err(gate::DrillRefusal::TargetNotHealthy { .. }) | Ok(()) => Ok(()),
                        Err(why) => Err(refused(why)),
                    }
                }
                crate::operator::Action::DrillAbort => {
                    gate::drill::precheck_abort(&states[i], now).map_err(refused)
                }
                _ => Ok(()),
            }
        });
        match result {
            Ok(CommandAccepted::New(v)) if now == NOW.plus(AUDIT_FAILS_STEP * 500) => {
                let recorded = book.last_seq(&v.command.operator);
                assert_eq!(recorded, last, "verify recorded a seq");
            }
            Ok(CommandAccepted::New(v)) => {
                book.commit(&v);
                let c = &v.command;
                assert!(
                    last.is_none_or(|l| c.seq > l),
                    "accepted a replayed command"
                );
                assert_eq!(v.signed.to_wire(), wire);
                let i = specs
                    .iter()
                    .position(|s| *s.id() == c.gate)
                    .unwrap_or_else(|| panic!("accepted a command for unknown gate {}", c.gate));
                if let Err(e) = v.apply_to(&specs[i], &mut states[i], now) {
                    panic!("accepted command does not apply to its gate: {e}");
                }
                let _ = gate::evaluate(&specs[i], &states[i], &inputs, now);
                // What the gate would do once the command's validity is over (on a copy:
                // later frames see the state as the command left it).
                let later = now.plus(u64::from(c.valid_for_ms));
                let mut future = states[i].clone();
                let _ = future.drill_tick(later, None);
                let _ = future.finish_drill(&specs[i], later);
                let _ = gate::evaluate(&specs[i], &future, &inputs, later);
                reached.accepted += 1;
            }
            Ok(CommandAccepted::Duplicate) => {
                assert!(last.is_some(), "duplicate of nothing");
            }
            Err(r) => {
                assert!(CommandRejection::REASONS.contains(&r.reason()));
                let _ = r.to_string();
            }
        }
    }
    reached
}

/// Decoding canonical command bytes and encoding them again gives the same bytes; the same for
/// an override's desired state.
fn check_command_canonical(bytes: &[u8]) {
    if let Ok(c) = decode_command(bytes) {
        assert_eq!(
            encode_command(&c),
            bytes,
            "command encoding is not canonical"
        );
        if let crate::operator::Action::Override { desired, .. } = &c.action {
            let d = desired.to_bytes();
            assert_eq!(DesiredState::from_bytes(&d).as_ref(), Ok(desired));
        }
    }
}

/// Seed inputs for the `ballot` target: valid signed ballots from every member (some with
/// observations that make a quorum), a replay, a duplicate, expired, future, wrong-digest,
/// unknown-agent and badly signed ones, plus unsigned canonical bytes for the signing path.
#[must_use]
pub fn ballot_seeds() -> Vec<(String, Vec<u8>)> {
    use crate::observation::{Observation, Status};
    use crate::Ballot;
    use crate::Reason;
    let obs = |check: &str, status: Status, lag: Option<u64>| {
        let o = Observation::new(
            CheckId::new(check).unwrap_or_else(|e| panic!("{e}")),
            status,
            Reason::from_static(if status == Status::Healthy {
                "ok"
            } else {
                "http_status"
            }),
            12,
            NOW.minus(300),
        );
        let o = if status == Status::Healthy {
            o
        } else {
            o.with_detail("status=503")
        };
        match lag {
            Some(l) => o.with_lag_ms(l),
            None => o,
        }
    };
    let ballot = |agent: &str, seq: u64, issued: UnixMillis, digest: ConfigDigest, h: bool| {
        let s = if h {
            Status::Healthy
        } else {
            Status::Unhealthy
        };
        Ballot::new(
            AgentId::new(agent).unwrap_or_else(|e| panic!("{e}")),
            seq,
            issued,
            15_000,
            digest,
            vec![
                obs("api-use1", s, None),
                obs("api-euw1", Status::Healthy, Some(250)),
                obs("db", Status::Abstain, None),
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let wire = |b: &Ballot, k: u8| SignedBallot::sign(b, &key(k)).to_wire();
    let ok: Vec<Ballot> = (0u8..3)
        .map(|i| ballot(MEMBERS[usize::from(i)], 10, NOW, DIGEST, i != 2))
        .collect();
    let mut seeds = Vec::new();
    let mut quorum = Vec::new();
    for (i, b) in ok.iter().enumerate() {
        quorum.extend(frame(None, 0, &wire(b, i as u8)));
    }
    seeds.push(("quorum_of_three".to_owned(), quorum));
    let a0 = wire(&ok[0], 0);
    let mut dup = frame(None, 0, &a0);
    dup.extend(frame(None, 1, &a0));
    seeds.push(("duplicate".to_owned(), dup));
    let mut replay = frame(None, 0, &wire(&ballot("a0", 11, NOW, DIGEST, true), 0));
    replay.extend(frame(None, 0, &a0));
    seeds.push(("replay".to_owned(), replay));
    let mut equiv = frame(None, 0, &a0);
    equiv.extend(frame(
        None,
        0,
        &wire(&ballot("a0", 10, NOW, DIGEST, false), 0),
    ));
    seeds.push(("equivocation".to_owned(), equiv));
    let singles = [
        ("single_valid", wire(&ok[1], 1)),
        ("bad_signature", wire(&ok[1], 0)),
        (
            "unknown_agent",
            wire(&ballot("zz", 1, NOW, DIGEST, true), 3),
        ),
        (
            "config_drift",
            wire(&ballot("a1", 1, NOW, ConfigDigest([1; 32]), true), 1),
        ),
        (
            "from_future",
            wire(&ballot("a1", 1, NOW.plus(5_000), DIGEST, true), 1),
        ),
        (
            "expired",
            wire(&ballot("a1", 1, NOW.minus(60_000), DIGEST, true), 1),
        ),
        ("validity_too_long", {
            let b = Ballot::new(
                AgentId::new("a2").unwrap_or_else(|e| panic!("{e}")),
                1,
                NOW,
                15_001,
                DIGEST,
                vec![],
            )
            .unwrap_or_else(|e| panic!("{e}"));
            wire(&b, 2)
        }),
        ("empty_ballot", {
            let b = Ballot::new(
                AgentId::new("a2").unwrap_or_else(|e| panic!("{e}")),
                1,
                NOW,
                1_000,
                DIGEST,
                vec![],
            )
            .unwrap_or_else(|e| panic!("{e}"));
            wire(&b, 2)
        }),
    ];
    for (name, w) in singles {
        seeds.push((name.to_owned(), frame(None, 0, &w)));
    }
    let mut signed_here = Vec::new();
    for (i, b) in ok.iter().enumerate() {
        signed_here.extend(frame(Some(i as u8), 0, &encode_ballot(b)));
    }
    seeds.push(("harness_signed_quorum".to_owned(), signed_here));
    seeds.push((
        "harness_signed_later".to_owned(),
        frame(Some(1), 20, &encode_ballot(&ok[1])),
    ));
    seeds
}

/// Seed inputs for the `operator` target: every action, signed by a configured operator, plus
/// a replay, a duplicate, an unknown operator, a bad signature and the unsigned-bytes path.
#[must_use]
pub fn operator_seeds() -> Vec<(String, Vec<u8>)> {
    use crate::operator::{Action, OperatorCommand};
    let t = |s: &str| TargetId::new(s).unwrap_or_else(|e| panic!("{e}"));
    let cmd = |op: &str, gate: &str, action: Action, seq: u64| {
        OperatorCommand::new(
            cluster(),
            OperatorId::new(op).unwrap_or_else(|e| panic!("{e}")),
            GateId::new(gate).unwrap_or_else(|e| panic!("{e}")),
            action,
            seq,
            NOW,
            300_000,
        )
        .with_note("fuzz seed")
    };
    let wire = |c: &OperatorCommand, k: u8| {
        SignedCommand::sign(c, &key(k))
            .unwrap_or_else(|e| panic!("{e}"))
            .to_wire()
    };
    let actions = [
        ("freeze", "app", Action::Freeze),
        ("unfreeze", "app", Action::Unfreeze),
        ("approve", "app", Action::Approve { to: t("euw1") }),
        (
            "override_failover",
            "app",
            Action::Override {
                desired: DesiredState::Failover { active: t("euw1") },
                force: false,
            },
        ),
        (
            "override_weighted",
            "web",
            Action::Override {
                desired: DesiredState::weighted([(t("a"), 0), (t("b"), 20), (t("c"), 10)]),
                force: true,
            },
        ),
        (
            "drill",
            "app",
            Action::Drill {
                duration_ms: 60_000,
                dry_run: true,
            },
        ),
        ("drill_abort", "app", Action::DrillAbort),
        ("approve_weighted", "web", Action::Approve { to: t("a") }),
    ];
    let mut seeds = Vec::new();
    for (seq, (name, gate, action)) in (1u64..).zip(actions.iter()) {
        let c = cmd("alice", gate, action.clone(), seq);
        seeds.push(((*name).to_owned(), frame(None, 0, &wire(&c, 0))));
    }
    let drill = cmd(
        "bob",
        "app",
        Action::Drill {
            duration_ms: 60_000,
            dry_run: false,
        },
        5,
    );
    let abort = cmd("bob", "app", Action::DrillAbort, 6);
    let mut drill_then_abort = frame(None, 0, &wire(&drill, 1));
    drill_then_abort.extend(frame(None, 2, &wire(&abort, 1)));
    seeds.push(("drill_then_abort".to_owned(), drill_then_abort));
    let freeze = wire(&cmd("alice", "app", Action::Freeze, 7), 0);
    let mut dup = frame(None, 0, &freeze);
    dup.extend(frame(None, 0, &freeze));
    dup.extend(frame(
        None,
        1,
        &wire(&cmd("alice", "app", Action::Unfreeze, 7), 0),
    ));
    seeds.push(("duplicate_then_replay".to_owned(), dup));
    // Verified while the audit log failed (not committed), then sent again: applied once.
    let unaudited = wire(&cmd("alice", "app", Action::Freeze, 8), 0);
    let mut resent = frame(None, 31, &unaudited);
    resent.extend(frame(None, 0, &unaudited));
    resent.extend(frame(None, 0, &unaudited));
    seeds.push(("unaudited_then_resent".to_owned(), resent));
    let elsewhere = OperatorCommand {
        cluster: Some(ClusterId {
            name: "elsewhere".to_owned(),
            members_sha256: [0x5a; 32],
        }),
        ..cmd("alice", "app", Action::Freeze, 9)
    };
    seeds.push((
        "wrong_cluster".to_owned(),
        frame(None, 0, &wire(&elsewhere, 0)),
    ));
    let v1 = OperatorCommand {
        cluster: None,
        ..cmd("alice", "app", Action::Freeze, 9)
    };
    seeds.push(("old_version".to_owned(), frame(None, 0, &wire(&v1, 0))));
    seeds.push((
        "unknown_operator".to_owned(),
        frame(None, 0, &wire(&cmd("mallory", "app", Action::Freeze, 1), 3)),
    ));
    seeds.push((
        "bad_signature".to_owned(),
        frame(None, 0, &wire(&cmd("bob", "app", Action::Freeze, 1), 0)),
    ));
    let mut signed_here = Vec::new();
    for (seq, (_, gate, action)) in (20u64..).zip(actions.iter()) {
        let c = cmd("bob", gate, action.clone(), seq);
        signed_here.extend(frame(Some(1), 0, &encode_command(&c)));
    }
    seeds.push(("harness_signed_all_actions".to_owned(), signed_here));
    seeds
}
