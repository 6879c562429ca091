//! Property tests: a simulated cluster on a virtual clock, checked after every step.
//!
//! One observer [`Engine`] receives ballots from N ∈ {3, 5} members. An honest set (at least
//! Q members) issues ballots that report its true view; the network delivers, drops,
//! duplicates, reorders and delays them; a faulty minority (fewer than Q members, plus one
//! outsider with no membership) sends anything: accusations of everything, replays, forgeries
//! under honest names, drifted config digests, skewed and expired ballots, tampered and
//! garbage bytes. After every step:
//!
//! 1. every transition carries a certificate that `verify_certificate` accepts (membership,
//!    config digest, skew), for the transition's target state, from ≥ Q distinct members, live
//!    at the transition instant;
//! 2. a check whose honest members all say Healthy never leaves Healthy, and one that starts
//!    Unhealthy with honest members saying Unhealthy never leaves Unhealthy;
//! 3. consecutive transitions of one check are at least `hold_down_ms` apart;
//!
//! and besides: no ballot is ever accepted under an honest member's name unless that member
//! issued it. A separate group checks that `handle_ballot` and `verify_certificate` never panic
//! on arbitrary or mutated bytes, and that decoding is canonical.

// Test code: a failed unwrap is a failed test (clippy.toml allows it in #[test] fns only).
#![allow(clippy::unwrap_used)]
mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::LazyLock;

use common::{
    book_config, check, outsider_key, Cluster, Draft, MAX_BYTES, OTHER_DIGEST, SKEW_MS, T0,
    VALID_MS,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{subsequence, Index};
use proptest::strategy::ValueTree;
use proptest::test_runner::{FileFailurePersistence, RngAlgorithm, TestRng, TestRunner};
use quorum::codec::{decode_ballot, encode_ballot};
use quorum::{
    tally, verify_certificate, Accepted, After, AgentId, CheckId, DecisionPolicy, Engine, Outcome,
    SignedBallot, SigningKey, State, Status, Transition, UnixMillis,
};

/// Regressions go to `quorum/proptest-regressions/properties.txt`. proptest's default
/// (`SourceParallel`) looks for a `lib.rs` beside the source file's ancestors, finds none for
/// an integration test, and would write `tests/properties.proptest-regressions` instead.
const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/proptest-regressions/properties.txt"
);

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        ..ProptestConfig::default()
    }
}

/// Honest members always say Healthy; starts Healthy.
const STEADY_HEALTHY: &str = "steady-healthy";
/// Honest members always say Unhealthy; starts Unhealthy.
const STEADY_UNHEALTHY: &str = "steady-unhealthy";
/// Honest members report a view that changes during the run; starts Healthy.
const FLAPPY: &str = "flappy";
const CHECKS: [&str; 3] = [STEADY_HEALTHY, STEADY_UNHEALTHY, FLAPPY];

// ---------------------------------------------------------------------------------------
// Scenarios

#[derive(Clone, Debug)]
enum Action {
    /// An honest member probes and sends a ballot; it is queued, not yet delivered.
    Issue(Index),
    /// A clean round: every honest member issues a ballot and it is delivered at once.
    Round,
    /// The flappy check's true state changes as one honest member (`Some`) or all of them
    /// (`None`) see it.
    SetView(Option<Index>, Status),
    /// The network delivers a queued ballot (any of them: reordering) and forgets it.
    Deliver(Index),
    /// The network delivers a queued ballot and keeps it queued (duplication).
    Duplicate(Index),
    /// The network loses a queued ballot.
    Drop(Index),
    /// Virtual time passes; queued ballots are delayed.
    Advance(u64),
    /// The observer tallies and steps every decision machine.
    Evaluate,
    /// The observer tallies between rounds (a ballot arrived) and steps every machine early.
    EvaluateEarly,
    /// A faulty member, or the outsider, sends something.
    Fault(Index, Fault),
}

#[derive(Clone, Debug)]
enum Fault {
    /// Signed with the sender's own key: any votes, seq, issue time and validity.
    Own {
        votes: [Status; 3],
        seq: u64,
        offset_ms: i64,
        valid_for_ms: u32,
    },
    /// An honest member's name, signed with the sender's key.
    Forge {
        victim: Index,
        votes: [Status; 3],
        seq: u64,
    },
    /// Signed with the sender's own key under another config digest.
    Drift {
        votes: [Status; 3],
        seq: u64,
    },
    /// Any honest ballot ever issued, sent again.
    Replay(Index),
    /// Any honest ballot ever issued, with one byte changed.
    Tamper {
        pick: Index,
        at: Index,
        xor: u8,
    },
    Garbage(Vec<u8>),
    /// One byte over the book's size limit.
    Oversized,
}

#[derive(Clone, Debug)]
struct Scenario {
    n: usize,
    faulty: Vec<usize>,
    policies: [DecisionPolicy; 3],
    actions: Vec<Action>,
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::Healthy),
        Just(Status::Unhealthy),
        Just(Status::Abstain)
    ]
}

fn votes() -> impl Strategy<Value = [Status; 3]> {
    prop_oneof![
        Just([Status::Unhealthy; 3]),
        Just([Status::Healthy; 3]),
        proptest::array::uniform3(status()),
    ]
}

fn faulty_seq() -> impl Strategy<Value = u64> {
    // A small range, so that faulty members often repeat a seq (replay, equivocation).
    prop_oneof![4 => 0u64..4, 1 => Just(u64::MAX)]
}

fn fault() -> impl Strategy<Value = Fault> {
    let valid = i64::from(VALID_MS);
    let skew = SKEW_MS as i64;
    let offset = prop_oneof![
        // expired on arrival, or about to expire
        -(valid + 30_000)..-(valid - 1_000),
        // live (issued up to the allowed skew ahead of us)
        -valid..=skew,
        // from the future, beyond the allowed skew
        (skew + 1)..(skew + 30_000),
    ];
    prop_oneof![
        4 => (votes(), faulty_seq(), offset, prop_oneof![Just(VALID_MS), any::<u32>()]).prop_map(
            |(votes, seq, offset_ms, valid_for_ms)| Fault::Own { votes, seq, offset_ms, valid_for_ms }
        ),
        2 => (any::<Index>(), votes(), 0u64..200)
            .prop_map(|(victim, votes, seq)| Fault::Forge { victim, votes, seq }),
        1 => (votes(), faulty_seq()).prop_map(|(votes, seq)| Fault::Drift { votes, seq }),
        2 => any::<Index>().prop_map(Fault::Replay),
        1 => (any::<Index>(), any::<Index>(), 1u8..=255)
            .prop_map(|(pick, at, xor)| Fault::Tamper { pick, at, xor }),
        1 => vec(any::<u8>(), 0..128).prop_map(Fault::Garbage),
        1 => Just(Fault::Oversized),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => any::<Index>().prop_map(Action::Issue),
        2 => Just(Action::Round),
        1 => (any::<Index>(), status()).prop_map(|(m, s)| Action::SetView(Some(m), s)),
        1 => prop_oneof![Just(Status::Healthy), Just(Status::Unhealthy)]
            .prop_map(|s| Action::SetView(None, s)),
        5 => any::<Index>().prop_map(Action::Deliver),
        1 => any::<Index>().prop_map(Action::Duplicate),
        1 => any::<Index>().prop_map(Action::Drop),
        3 => prop_oneof![4 => 0u64..3_000, 1 => 3_000u64..20_000].prop_map(Action::Advance),
        4 => Just(Action::Evaluate),
        2 => Just(Action::EvaluateEarly),
        3 => (any::<Index>(), fault()).prop_map(|(who, f)| Action::Fault(who, f)),
    ]
}

fn after() -> impl Strategy<Value = After> {
    prop_oneof![
        (0u32..5).prop_map(After::Rounds),
        (0u64..30_000).prop_map(After::Millis),
    ]
}

fn policy(initial: State) -> impl Strategy<Value = DecisionPolicy> {
    let hold_down = prop_oneof![Just(0u64), 0u64..60_000];
    (after(), after(), hold_down).prop_map(move |(fall_after, rise_after, hold_down_ms)| {
        DecisionPolicy {
            initial,
            fall_after,
            rise_after,
            hold_down_ms,
        }
    })
}

fn scenario(max_steps: usize) -> impl Strategy<Value = Scenario> {
    prop_oneof![Just(3usize), Just(5usize)].prop_flat_map(move |n| {
        let q = n / 2 + 1;
        (
            subsequence((0..n).collect::<Vec<_>>(), 0..q),
            policy(State::Healthy),
            policy(State::Unhealthy),
            policy(State::Healthy),
            vec(action(), 1..max_steps),
        )
            .prop_map(move |(faulty, p0, p1, p2, actions)| Scenario {
                n,
                faulty,
                policies: [p0, p1, p2],
                actions,
            })
    })
}

// ---------------------------------------------------------------------------------------
// The simulation

/// What a run exercised, so a coverage test can tell the properties are not vacuous.
#[derive(Debug, Default)]
struct Stats {
    rejections: BTreeMap<&'static str, usize>,
    accepted: usize,
    duplicates: usize,
    transitions: BTreeMap<CheckId, usize>,
    flappy_outcomes: BTreeSet<&'static str>,
}

struct Sim {
    cluster: Cluster,
    honest: Vec<usize>,
    faulty: Vec<usize>,
    outsider: (AgentId, SigningKey),
    engine: Engine,
    policies: BTreeMap<CheckId, DecisionPolicy>,
    now: UnixMillis,
    next_seq: Vec<u64>,
    /// Each honest member's view of the flappy check.
    view: Vec<Status>,
    /// Ballots in flight to the observer.
    queue: Vec<Vec<u8>>,
    /// Every ballot an honest member ever issued.
    history: Vec<Vec<u8>>,
    issued: HashSet<Vec<u8>>,
    last_transition: BTreeMap<CheckId, UnixMillis>,
    stats: Stats,
}

fn target(state: State) -> (Outcome, Status) {
    match state {
        State::Healthy => (Outcome::Healthy, Status::Healthy),
        State::Unhealthy => (Outcome::Unhealthy, Status::Unhealthy),
    }
}

impl Sim {
    fn new(s: &Scenario) -> Self {
        let cluster = Cluster::new(s.n);
        let honest = (0..s.n).filter(|i| !s.faulty.contains(i)).collect();
        let policies: BTreeMap<CheckId, DecisionPolicy> = CHECKS
            .iter()
            .zip(s.policies)
            .map(|(c, p)| (check(c), p))
            .collect();
        let engine = Engine::new(
            cluster.membership.clone(),
            book_config(),
            policies.clone(),
            T0,
        );
        Self {
            honest,
            faulty: s.faulty.clone(),
            outsider: (AgentId::new("outsider").unwrap(), outsider_key()),
            engine,
            policies,
            now: T0,
            next_seq: vec![1; s.n],
            view: vec![Status::Healthy; s.n],
            queue: Vec::new(),
            history: Vec::new(),
            issued: HashSet::new(),
            last_transition: BTreeMap::new(),
            stats: Stats::default(),
            cluster,
        }
    }

    fn run(s: &Scenario) -> Result<Stats, TestCaseError> {
        let mut sim = Self::new(s);
        sim.check_states()?;
        for (i, action) in s.actions.iter().enumerate() {
            sim.apply(action)
                .map_err(|e| TestCaseError::fail(format!("step {i} {action:?}: {e}")))?;
            sim.check_states()
                .map_err(|e| TestCaseError::fail(format!("after step {i} {action:?}: {e}")))?;
        }
        Ok(sim.stats)
    }

    fn apply(&mut self, action: &Action) -> Result<(), TestCaseError> {
        match action {
            Action::Issue(m) => {
                let m = self.honest[m.index(self.honest.len())];
                let wire = self.issue(m);
                self.queue.push(wire);
            }
            Action::Round => {
                for m in self.honest.clone() {
                    let wire = self.issue(m);
                    self.deliver(&wire)?;
                }
            }
            Action::SetView(Some(m), s) => {
                self.view[self.honest[m.index(self.honest.len())]] = *s;
            }
            Action::SetView(None, s) => self.view.fill(*s),
            Action::Deliver(i) | Action::Duplicate(i) | Action::Drop(i) => {
                if self.queue.is_empty() {
                    return Ok(());
                }
                let i = i.index(self.queue.len());
                let wire = match action {
                    Action::Duplicate(_) => self.queue[i].clone(),
                    _ => self.queue.swap_remove(i),
                };
                if !matches!(action, Action::Drop(_)) {
                    self.deliver(&wire)?;
                }
            }
            Action::Advance(ms) => self.now = self.now.plus(*ms),
            Action::Evaluate | Action::EvaluateEarly => {
                let transitions = if matches!(action, Action::Evaluate) {
                    self.engine.evaluate(self.now)
                } else {
                    self.engine.evaluate_early(self.now)
                };
                for t in &transitions {
                    self.check_transition(t)?;
                }
                if let Some(v) = self.engine.verdict(&check(FLAPPY)) {
                    self.stats.flappy_outcomes.insert(v.outcome.as_str());
                }
            }
            Action::Fault(who, fault) => {
                let wire = self.fault(who, fault);
                self.deliver(&wire)?;
            }
        }
        Ok(())
    }

    /// Honest member `m` signs its true view now.
    fn issue(&mut self, m: usize) -> Vec<u8> {
        let seq = self.next_seq[m];
        self.next_seq[m] += 1;
        let votes = [
            (STEADY_HEALTHY, Status::Healthy),
            (STEADY_UNHEALTHY, Status::Unhealthy),
            (FLAPPY, self.view[m]),
        ];
        let wire = Draft::new(&self.cluster.ids[m], &votes)
            .seq(seq)
            .issued_at(self.now)
            .wire(&self.cluster.keys[m]);
        self.issued.insert(wire.clone());
        self.history.push(wire.clone());
        wire
    }

    /// The bytes a faulty member (or the outsider) sends.
    fn fault(&self, who: &Index, fault: &Fault) -> Vec<u8> {
        let sender = who.index(self.faulty.len() + 1);
        let (id, key) = match self.faulty.get(sender) {
            Some(&m) => (&self.cluster.ids[m], &self.cluster.keys[m]),
            None => (&self.outsider.0, &self.outsider.1),
        };
        let draft = |agent: &AgentId, votes: &[Status; 3], seq: u64| {
            let v: Vec<_> = CHECKS.iter().copied().zip(votes.iter().copied()).collect();
            Draft::new(agent, &v).seq(seq).issued_at(self.now)
        };
        match fault {
            Fault::Own {
                votes,
                seq,
                offset_ms,
                valid_for_ms,
            } => {
                let at = if *offset_ms >= 0 {
                    self.now.plus(offset_ms.unsigned_abs())
                } else {
                    self.now.minus(offset_ms.unsigned_abs())
                };
                draft(id, votes, *seq)
                    .issued_at(at)
                    .valid_for_ms(*valid_for_ms)
                    .wire(key)
            }
            Fault::Forge { victim, votes, seq } => {
                let victim = self.honest[victim.index(self.honest.len())];
                draft(&self.cluster.ids[victim], votes, *seq).wire(key)
            }
            Fault::Drift { votes, seq } => draft(id, votes, *seq).digest(OTHER_DIGEST).wire(key),
            Fault::Replay(i) if !self.history.is_empty() => {
                self.history[i.index(self.history.len())].clone()
            }
            Fault::Tamper { pick, at, xor } if !self.history.is_empty() => {
                let mut w = self.history[pick.index(self.history.len())].clone();
                let at = at.index(w.len());
                w[at] ^= xor;
                w
            }
            Fault::Replay(_) | Fault::Tamper { .. } => b"QGS".to_vec(),
            Fault::Garbage(bytes) => bytes.clone(),
            Fault::Oversized => vec![0; MAX_BYTES + 1],
        }
    }

    fn deliver(&mut self, wire: &[u8]) -> Result<(), TestCaseError> {
        match self.engine.handle_ballot(self.now, wire) {
            Ok(Accepted::New(v)) => {
                self.stats.accepted += 1;
                let agent = v.ballot.agent();
                let member = self.cluster.ids.iter().position(|id| id == agent);
                prop_assert!(member.is_some(), "accepted a ballot of non-member {agent}");
                if member.is_some_and(|m| self.honest.contains(&m)) {
                    prop_assert!(
                        self.issued.contains(wire),
                        "accepted a ballot under honest {agent}'s name it never issued"
                    );
                }
            }
            Ok(Accepted::Duplicate) => self.stats.duplicates += 1,
            Err(r) => *self.stats.rejections.entry(r.reason()).or_default() += 1,
        }
        Ok(())
    }

    /// Invariants 1 and 3 for one transition.
    fn check_transition(&mut self, t: &Transition) -> Result<(), TestCaseError> {
        let q = self.cluster.quorum();
        let cert = &t.certificate;
        let vc = verify_certificate(
            &cert.to_bytes(),
            &self.cluster.membership,
            Some(&common::DIGEST),
            SKEW_MS,
        );
        prop_assert!(vc.is_ok(), "certificate refused: {:?}", vc.err());
        let vc = vc.unwrap();
        let (outcome, status) = target(t.to);
        prop_assert_ne!(t.from, t.to);
        prop_assert_eq!(vc.outcome, outcome);
        prop_assert_eq!(cert.outcome, outcome);
        prop_assert_eq!(&vc.check, &t.check);
        prop_assert!(vc.agents.len() >= q, "{} agents, Q = {q}", vc.agents.len());
        let distinct: BTreeSet<_> = cert.agents().collect();
        prop_assert!(distinct.len() >= q);
        prop_assert!(
            vc.valid_from <= t.at && t.at <= vc.valid_until,
            "certificate not live at the transition: {vc:?} at {}",
            t.at
        );
        for b in &cert.ballots {
            let said = b.ballot.observation(&t.check).map(|o| o.status);
            prop_assert_eq!(said, Some(status));
        }
        let hold_down = self.policies[&t.check].hold_down_ms;
        if let Some(prev) = self.last_transition.insert(t.check.clone(), t.at) {
            prop_assert!(
                t.at.since(prev) >= hold_down,
                "{} transitions {prev} and {} closer than hold_down {hold_down}",
                t.check,
                t.at
            );
        }
        *self.stats.transitions.entry(t.check.clone()).or_default() += 1;
        let machine = self.engine.machine(&t.check).unwrap();
        prop_assert_eq!(machine.state(), t.to);
        prop_assert_eq!(machine.last_transition(), Some(t.at));
        Ok(())
    }

    /// Invariant 2, checked after every step, on the decided state and on the raw tally.
    fn check_states(&self) -> Result<(), TestCaseError> {
        let f = self.faulty.len();
        for (name, state, against) in [
            (STEADY_HEALTHY, State::Healthy, Outcome::Unhealthy),
            (STEADY_UNHEALTHY, State::Unhealthy, Outcome::Healthy),
        ] {
            let c = check(name);
            let m = self.engine.machine(&c).unwrap();
            prop_assert_eq!(m.state(), state, "{} left {:?}", name, state);
            prop_assert_eq!(m.transitions(), 0);
            let v = tally(self.engine.book(), &c, self.now);
            let (h, u) = (v.healthy, v.unhealthy);
            let dissent = if state == State::Healthy { u } else { h };
            prop_assert!(
                dissent <= f,
                "{name}: {dissent} dissenting votes from {f} faulty"
            );
            prop_assert_ne!(v.outcome, against);
            prop_assert_eq!(h + u + v.abstain, self.cluster.n());
        }
        for (c, n) in &self.stats.transitions {
            prop_assert_eq!(self.engine.machine(c).unwrap().transitions(), *n as u64);
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn invariants_hold_after_every_step(s in scenario(200)) {
        Sim::run(&s)?;
    }
}

/// The simulation reaches every rejection reason, both acceptance kinds, transitions of the
/// flappy check and all three outcomes: the properties above are not vacuously true.
#[test]
fn simulation_exercises_every_path() {
    let mut runner = TestRunner::new_with_rng(
        proptest::test_runner::Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let strategy = scenario(160);
    let mut total = Stats::default();
    for _ in 0..48 {
        let s = strategy.new_tree(&mut runner).unwrap().current();
        let stats = Sim::run(&s).unwrap_or_else(|e| panic!("{e}\n{s:#?}"));
        for (r, n) in stats.rejections {
            *total.rejections.entry(r).or_default() += n;
        }
        total.accepted += stats.accepted;
        total.duplicates += stats.duplicates;
        for (c, n) in stats.transitions {
            *total.transitions.entry(c).or_default() += n;
        }
        total.flappy_outcomes.extend(stats.flappy_outcomes);
    }
    for reason in quorum::Rejection::REASONS {
        assert!(
            total.rejections.contains_key(reason),
            "never saw {reason}: {total:?}"
        );
    }
    assert!(total.accepted > 100 && total.duplicates > 0, "{total:?}");
    assert!(
        total
            .transitions
            .get(&check(FLAPPY))
            .is_some_and(|n| *n > 5),
        "{total:?}"
    );
    assert_eq!(total.flappy_outcomes.len(), 3, "{total:?}");
}

// ---------------------------------------------------------------------------------------
// Untrusted bytes

/// Valid wire ballots of a 3-member cluster, issued at `T0`, with 0 to 3 observations.
static VALID_WIRES: LazyLock<(Cluster, Vec<Vec<u8>>)> = LazyLock::new(|| {
    let c = Cluster::new(3);
    let shapes: [&[(&str, Status)]; 3] = [
        &[],
        &[("api", Status::Unhealthy)],
        &[
            ("a", Status::Healthy),
            ("b", Status::Abstain),
            ("c", Status::Unhealthy),
        ],
    ];
    let wires = shapes
        .iter()
        .enumerate()
        .map(|(i, votes)| Draft::new(&c.ids[i], votes).wire(&c.keys[i]))
        .collect();
    (c, wires)
});

/// The tally's certificate that m0 and m1 (Q = 2 of 3) found `api` Unhealthy at `T0`.
static VALID_CERT: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let cluster = &VALID_WIRES.0;
    let mut book = cluster.book();
    for i in 0..2 {
        let w = Draft::new(&cluster.ids[i], &[("api", Status::Unhealthy)]).wire(&cluster.keys[i]);
        book.handle_ballot(T0, &w).unwrap();
    }
    let verdict = tally(&book, &check("api"), T0);
    verdict.certificate.unwrap().to_bytes()
});

fn observer() -> Engine {
    let c = &VALID_WIRES.0;
    let checks = [(check("api"), DecisionPolicy::default())];
    Engine::new(c.membership.clone(), book_config(), checks, T0)
}

#[derive(Clone, Debug)]
enum Mutation {
    Xor(Index, u8),
    Set(Index, u8),
    Insert(Index, u8),
    Remove(Index),
    Truncate(Index),
    Append(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 1u8..=255).prop_map(|(i, x)| Mutation::Xor(i, x)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => any::<Index>().prop_map(Mutation::Remove),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => vec(any::<u8>(), 1..16).prop_map(Mutation::Append),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match m {
            Mutation::Append(tail) => bytes.extend_from_slice(tail),
            Mutation::Insert(i, b) => bytes.insert(i.index(len + 1), *b),
            _ if len == 0 => {}
            Mutation::Xor(i, x) => bytes[i.index(len)] ^= x,
            Mutation::Set(i, b) => bytes[i.index(len)] = *b,
            Mutation::Remove(i) => {
                bytes.remove(i.index(len));
            }
            Mutation::Truncate(i) => bytes.truncate(i.index(len)),
        }
    }
    bytes
}

fn with_u32_len(magic: &[u8], body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).unwrap().to_be_bytes();
    [magic, &len, body].concat()
}

/// Random bytes, also wrapped in a valid envelope header and a ballot header so that the
/// decoder gets past its first checks.
fn untrusted_bytes() -> impl Strategy<Value = Vec<u8>> {
    let bytes = || vec(any::<u8>(), 0..2048);
    prop_oneof![
        bytes(),
        bytes().prop_map(|b| with_u32_len(b"QGS\x01", &b)),
        bytes().prop_map(|b| {
            let ballot = [b"QGB\x01\x02m0".as_slice(), &b].concat();
            [with_u32_len(b"QGS\x01", &ballot), vec![0; 64]].concat()
        }),
    ]
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn arbitrary_bytes_are_refused_without_panicking(bytes in untrusted_bytes()) {
        let mut engine = observer();
        prop_assert!(engine.handle_ballot(T0, &bytes).is_err());
        prop_assert!(engine.evaluate(T0).is_empty());
        let membership = &VALID_WIRES.0.membership;
        prop_assert!(verify_certificate(&bytes, membership, None, SKEW_MS).is_err());
        if let Ok(ballot) = decode_ballot(&bytes) {
            prop_assert_eq!(encode_ballot(&ballot), bytes);
        }
    }

    #[test]
    fn mutated_wire_ballots_are_refused_unless_unchanged(
        base in 0..3usize,
        mutations in vec(mutation(), 1..6),
    ) {
        let original = &VALID_WIRES.1[base];
        let wire = mutate(original.clone(), &mutations);
        let mut engine = observer();
        match engine.handle_ballot(T0, &wire) {
            Ok(_) => prop_assert_eq!(&wire, original),
            Err(r) => prop_assert!(quorum::Rejection::REASONS.contains(&r.reason())),
        }
        // Decoding is canonical: whatever decodes re-encodes to the same bytes, so one
        // signature covers exactly one meaning.
        let ballot_bytes = mutate(SignedBallot::from_wire(original).unwrap().ballot_bytes().to_vec(), &mutations);
        if let Ok(ballot) = decode_ballot(&ballot_bytes) {
            prop_assert_eq!(encode_ballot(&ballot), ballot_bytes);
        }
    }

    #[test]
    fn mutated_certificates_are_refused_unless_unchanged(mutations in vec(mutation(), 1..6)) {
        let (cluster, cert) = (&VALID_WIRES.0, &*VALID_CERT);
        let bytes = mutate(cert.clone(), &mutations);
        if verify_certificate(&bytes, &cluster.membership, Some(&common::DIGEST), SKEW_MS).is_ok() {
            prop_assert_eq!(&bytes, cert);
        }
    }
}
