//! The per-check decision machine: hysteresis over tally verdicts.
//!
//! States are Healthy and Unhealthy. Healthy → Unhealthy only after the tally said Unhealthy
//! continuously for `fall_after`; Unhealthy → Healthy after Healthy continuously for
//! `rise_after`. `NoQuorum` holds the state and breaks any streak (it is not "continuously").
//! After a transition, `hold_down_ms` must pass before the next one.
//!
//! # Evaluations between rounds
//! [`DecisionMachine::step`] closes a round. [`DecisionMachine::step_early`] feeds a verdict
//! tallied between two rounds (a peer's ballot just arrived): it counts as the *next* round's
//! verdict, at most once per round, so a decision lands the moment the evidence for it exists
//! instead of at the next tick, while `Rounds(n)` still means n rounds of ballots. An early
//! verdict can only advance a streak or complete a transition; whether the streak was
//! continuous is still judged by the round's own evaluation, which follows: if that verdict
//! disagrees, the streak is broken as usual.
//!
//! # Restarts
//! A machine also knows where its state comes from ([`Basis`]). A restarted agent builds it
//! with [`DecisionMachine::restored`] (the state an earlier run decided) or
//! [`DecisionMachine::undecided`] (no state at all); only a brand-new install starts in the
//! configured `initial` state. Until the first quorum verdict of this run, the agent answers
//! from that basis, and an undecided machine answers nothing (see [`DecisionMachine::decision`]).

use crate::ids::CheckId;
use crate::tally::{Certificate, Outcome, Verdict};
use crate::time::UnixMillis;

/// A decided state of a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Healthy,
    Unhealthy,
}

impl State {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            State::Healthy => "healthy",
            State::Unhealthy => "unhealthy",
        }
    }
}

/// Where a machine's state comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Basis {
    /// The configured `initial` state: nothing was ever decided (a brand-new install).
    Initial,
    /// The state an earlier run of this agent decided, not yet confirmed by this run's quorum.
    Restored,
    /// No state: the agent ran before but has no decision for this check. It must not be
    /// answered (or counted) as either state until a quorum verdict arrives.
    Undecided,
    /// This run has seen a quorum verdict (Healthy or Unhealthy, with its certificate).
    Decided,
}

impl Basis {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Initial => "initial",
            Basis::Restored => "restored",
            Basis::Undecided => "undecided",
            Basis::Decided => "decided",
        }
    }
}

/// A decision persisted by an earlier run, handed to [`DecisionMachine::restored`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restored {
    pub state: State,
    /// When that state began.
    pub since: UnixMillis,
    /// The last transition the earlier run made, so the hold-down carries across the restart.
    pub last_transition: Option<UnixMillis>,
}

/// How a machine starts: what a restarted agent knows about a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// In the policy's `initial` state: a brand-new install, nothing ever decided.
    Initial,
    /// In the state an earlier run decided.
    Restored(Restored),
    /// With no state: the agent ran before but holds no decision for this check.
    Undecided,
}

/// How long a verdict must hold before the machine follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// This many consecutive evaluations (rounds) with the same verdict.
    Rounds(u32),
    /// The same verdict continuously for at least this long (and at least one round).
    Millis(u64),
}

/// The hysteresis settings of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecisionPolicy {
    /// State before any evidence. Healthy by default: a new gate must not fail over on start.
    pub initial: State,
    pub fall_after: After,
    pub rise_after: After,
    /// Minimum dwell after a transition before the next one.
    pub hold_down_ms: u64,
}

impl Default for DecisionPolicy {
    fn default() -> Self {
        Self {
            initial: State::Healthy,
            fall_after: After::Rounds(3),
            rise_after: After::Rounds(5),
            hold_down_ms: 30_000,
        }
    }
}

/// A change of decided state, with the certificate of the verdict that caused it.
#[derive(Clone, Debug)]
pub struct Transition {
    pub check: CheckId,
    pub from: State,
    pub to: State,
    pub at: UnixMillis,
    /// Rounds the verdict held before the transition.
    pub rounds: u32,
    pub certificate: Certificate,
}

#[derive(Clone, Copy, Debug)]
struct Streak {
    toward: State,
    rounds: u32,
    started_at: UnixMillis,
    /// The last round of `rounds` was counted by an early verdict; the round's own evaluation
    /// confirms it (without counting it again) or breaks the streak.
    early: bool,
}

/// One check's decision machine.
#[derive(Clone, Debug)]
pub struct DecisionMachine {
    check: CheckId,
    policy: DecisionPolicy,
    state: State,
    since: UnixMillis,
    last_transition: Option<UnixMillis>,
    transitions: u64,
    streak: Option<Streak>,
    last_outcome: Option<Outcome>,
    basis: Basis,
}

impl DecisionMachine {
    /// A machine in `policy.initial` since `now`.
    #[must_use]
    pub fn new(check: CheckId, policy: DecisionPolicy, now: UnixMillis) -> Self {
        Self {
            check,
            policy,
            state: policy.initial,
            since: now,
            last_transition: None,
            transitions: 0,
            streak: None,
            last_outcome: None,
            basis: Basis::Initial,
        }
    }

    /// A machine in the state an earlier run decided (`restored`), with that run's last
    /// transition so the hold-down still applies. It continues with the normal fall/rise.
    #[must_use]
    pub fn restored(check: CheckId, policy: DecisionPolicy, restored: Restored) -> Self {
        Self {
            state: restored.state,
            since: restored.since,
            last_transition: restored.last_transition,
            basis: Basis::Restored,
            ..Self::new(check, policy, restored.since)
        }
    }

    /// A machine started as `start` says (at `now` unless restored).
    #[must_use]
    pub fn start(check: CheckId, policy: DecisionPolicy, start: Start, now: UnixMillis) -> Self {
        match start {
            Start::Initial => Self::new(check, policy, now),
            Start::Restored(r) => Self::restored(check, policy, r),
            Start::Undecided => Self::undecided(check, policy, now),
        }
    }

    /// A machine with no state since `now`: [`decision`](Self::decision) is `None` until the
    /// first quorum verdict, which it then takes as its state at once (there is no earlier
    /// state to apply hysteresis against).
    #[must_use]
    pub fn undecided(check: CheckId, policy: DecisionPolicy, now: UnixMillis) -> Self {
        Self {
            // Never answered while undecided; Unhealthy only so a reader that ignores
            // `decision()` errs toward 503 rather than toward sending traffic.
            state: State::Unhealthy,
            basis: Basis::Undecided,
            ..Self::new(check, policy, now)
        }
    }

    #[must_use]
    pub fn check(&self) -> &CheckId {
        &self.check
    }
    /// The state. Meaningless while [`basis`](Self::basis) is `Undecided`: use
    /// [`decision`](Self::decision) wherever an undecided check can be met.
    #[must_use]
    pub fn state(&self) -> State {
        self.state
    }
    /// The state, or `None` while undecided.
    #[must_use]
    pub fn decision(&self) -> Option<State> {
        (self.basis != Basis::Undecided).then_some(self.state)
    }
    #[must_use]
    pub fn basis(&self) -> Basis {
        self.basis
    }
    /// When the current state began (start-up time for the initial state).
    #[must_use]
    pub fn since(&self) -> UnixMillis {
        self.since
    }
    #[must_use]
    pub fn transitions(&self) -> u64 {
        self.transitions
    }
    #[must_use]
    pub fn last_transition(&self) -> Option<UnixMillis> {
        self.last_transition
    }
    #[must_use]
    pub fn policy(&self) -> &DecisionPolicy {
        &self.policy
    }
    /// The outcome of the last verdict fed in.
    #[must_use]
    pub fn last_outcome(&self) -> Option<Outcome> {
        self.last_outcome
    }
    /// Rounds the current streak toward the other state has lasted (0 when none).
    #[must_use]
    pub fn pending_rounds(&self) -> u32 {
        self.streak.map_or(0, |s| s.rounds)
    }

    /// Feeds one evaluation round's verdict. Returns the transition, if this round causes one.
    ///
    /// A verdict for another check is ignored. Only a verdict carrying a certificate can move
    /// the machine; the tally attaches one to every `Healthy`/`Unhealthy` outcome.
    pub fn step(&mut self, now: UnixMillis, verdict: &Verdict) -> Option<Transition> {
        self.advance(now, verdict, false)
    }

    /// Feeds a verdict tallied between two rounds (see the module docs): it may advance the
    /// streak by the next round, once, and complete a transition now; it never breaks a
    /// streak, and a `NoQuorum` or agreeing verdict changes nothing.
    pub fn step_early(&mut self, now: UnixMillis, verdict: &Verdict) -> Option<Transition> {
        self.advance(now, verdict, true)
    }

    fn advance(&mut self, now: UnixMillis, verdict: &Verdict, early: bool) -> Option<Transition> {
        if verdict.check != self.check {
            return None;
        }
        if self.settle(now, verdict) {
            return None;
        }
        self.last_outcome = Some(verdict.outcome);
        let toward = match verdict.outcome {
            Outcome::Healthy => State::Healthy,
            Outcome::Unhealthy => State::Unhealthy,
            Outcome::NoQuorum if early => return None,
            Outcome::NoQuorum => {
                self.streak = None;
                return None;
            }
        };
        if toward == self.state {
            if !early {
                self.streak = None;
            }
            return None;
        }
        let certificate = verdict.certificate.as_ref()?;
        let streak = match self.streak {
            // This round was already counted early: confirm it, or (early again) keep it.
            Some(s) if s.toward == toward && s.early => Streak { early, ..s },
            Some(s) if s.toward == toward => Streak {
                rounds: s.rounds.saturating_add(1),
                early,
                ..s
            },
            _ => Streak {
                toward,
                rounds: 1,
                started_at: now,
                early,
            },
        };
        self.streak = Some(streak);
        let needed = match toward {
            State::Unhealthy => self.policy.fall_after,
            State::Healthy => self.policy.rise_after,
        };
        let held = match needed {
            After::Rounds(n) => streak.rounds >= n.max(1),
            After::Millis(ms) => now.since(streak.started_at) >= ms,
        };
        let dwelt = self
            .last_transition
            .is_none_or(|t| now.since(t) >= self.policy.hold_down_ms);
        if !(held && dwelt) {
            return None;
        }
        let from = self.state;
        self.state = toward;
        self.since = now;
        self.last_transition = Some(now);
        self.transitions += 1;
        self.streak = None;
        Some(Transition {
            check: self.check.clone(),
            from,
            to: toward,
            at: now,
            rounds: streak.rounds,
            certificate: certificate.clone(),
        })
    }

    /// Restart safety, before the hysteresis of [`step`](Self::step): the first quorum verdict
    /// (an outcome with its certificate) of this run makes the basis `Decided`. An undecided
    /// machine takes that verdict as its state at once — not a transition, as there was no
    /// state to leave — and until then consumes every verdict. Returns whether it consumed
    /// `verdict` (then `step` does nothing more).
    fn settle(&mut self, now: UnixMillis, verdict: &Verdict) -> bool {
        let quorum = match verdict.outcome {
            Outcome::Healthy => Some(State::Healthy),
            Outcome::Unhealthy => Some(State::Unhealthy),
            Outcome::NoQuorum => None,
        }
        .filter(|_| verdict.certificate.is_some());
        match (self.basis, quorum) {
            (Basis::Decided, _) | (Basis::Initial | Basis::Restored, None) => false,
            (Basis::Initial | Basis::Restored, Some(_)) => {
                self.basis = Basis::Decided;
                false
            }
            (Basis::Undecided, quorum) => {
                self.last_outcome = Some(verdict.outcome);
                if let Some(state) = quorum {
                    self.state = state;
                    self.since = now;
                    self.basis = Basis::Decided;
                }
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ballot::{Ballot, ConfigDigest};
    use crate::book::VerifiedBallot;
    use crate::ids::AgentId;
    use crate::signed::{SignedBallot, SigningKey};

    const T: u64 = 1_700_000_000_000;

    fn api() -> CheckId {
        CheckId::new("api").unwrap()
    }

    fn at(ms: u64) -> UnixMillis {
        UnixMillis(T + ms)
    }

    fn policy(fall: After, rise: After, hold_down_ms: u64) -> DecisionPolicy {
        DecisionPolicy {
            initial: State::Healthy,
            fall_after: fall,
            rise_after: rise,
            hold_down_ms,
        }
    }

    /// A certificate whose single ballot has sequence number `tag`, so a test can tell
    /// which verdict's certificate a transition carries. The machine does not inspect it.
    fn certificate(outcome: Outcome, tag: u64) -> Certificate {
        let ballot = Ballot::new(
            AgentId::new("m0").unwrap(),
            tag,
            UnixMillis(T),
            15_000,
            ConfigDigest::default(),
            vec![],
        )
        .unwrap();
        let signed = SignedBallot::sign(&ballot, &SigningKey::from_bytes(&[1; 32]));
        Certificate {
            check: api(),
            outcome,
            ballots: vec![Arc::new(VerifiedBallot { signed, ballot })],
        }
    }

    fn verdict(outcome: Outcome, ms: u64) -> Verdict {
        Verdict {
            check: api(),
            outcome,
            healthy: 0,
            unhealthy: 0,
            abstain: 0,
            at: at(ms),
            certificate: (outcome != Outcome::NoQuorum).then(|| certificate(outcome, ms)),
        }
    }

    /// Feeds `outcomes` one round per `step_ms` from `start_ms`; returns (round, transition).
    fn run(
        m: &mut DecisionMachine,
        start_ms: u64,
        step_ms: u64,
        outcomes: &[Outcome],
    ) -> Vec<(usize, Transition)> {
        outcomes
            .iter()
            .enumerate()
            .filter_map(|(i, o)| {
                let ms = start_ms + step_ms * i as u64;
                m.step(at(ms), &verdict(*o, ms)).map(|t| (i, t))
            })
            .collect()
    }

    use Outcome::{Healthy as H, NoQuorum as N, Unhealthy as U};

    #[test]
    fn initial_state_is_honoured() {
        let m = DecisionMachine::new(api(), DecisionPolicy::default(), at(5));
        assert_eq!(m.state(), State::Healthy);
        assert_eq!(DecisionPolicy::default().initial, State::Healthy);
        let p = DecisionPolicy {
            initial: State::Unhealthy,
            ..policy(After::Rounds(1), After::Rounds(1), 0)
        };
        let mut m = DecisionMachine::new(api(), p, at(5));
        assert_eq!(
            (m.state(), m.since(), m.transitions()),
            (State::Unhealthy, at(5), 0)
        );
        assert_eq!(m.last_transition(), None);
        assert_eq!((m.last_outcome(), m.pending_rounds()), (None, 0));
        // Verdicts agreeing with the initial state change nothing.
        assert!(run(&mut m, 0, 1_000, &[U, U, U, N, U]).is_empty());
        assert_eq!(
            (m.state(), m.since(), m.transitions()),
            (State::Unhealthy, at(5), 0)
        );
        assert_eq!(m.last_outcome(), Some(U));
        // With Rounds(1) one Healthy round is enough to rise.
        let t = run(&mut m, 10_000, 1_000, &[H]);
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].1.from, t[0].1.to), (State::Unhealthy, State::Healthy));
    }

    #[test]
    fn fall_and_rise_after_rounds_are_asymmetric() {
        let mut m =
            DecisionMachine::new(api(), policy(After::Rounds(3), After::Rounds(5), 0), at(0));
        assert!(run(&mut m, 0, 1_000, &[U, U]).is_empty());
        assert_eq!(m.pending_rounds(), 2);
        let t = run(&mut m, 2_000, 1_000, &[U]);
        assert_eq!(t.len(), 1);
        let t = &t[0].1;
        assert_eq!(
            (t.from, t.to, t.at, t.rounds),
            (State::Healthy, State::Unhealthy, at(2_000), 3)
        );
        assert_eq!(
            (m.state(), m.since(), m.last_transition()),
            (State::Unhealthy, at(2_000), Some(at(2_000)))
        );
        assert_eq!((m.transitions(), m.pending_rounds()), (1, 0));
        // Rising takes five Healthy rounds, not three.
        let t = run(&mut m, 10_000, 1_000, &[H, H, H, H, H, H]);
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].0, t[0].1.to, t[0].1.rounds), (4, State::Healthy, 5));
        assert_eq!(m.transitions(), 2);
    }

    #[test]
    fn rounds_zero_means_one_round() {
        let mut m =
            DecisionMachine::new(api(), policy(After::Rounds(0), After::Rounds(0), 0), at(0));
        let t = run(&mut m, 0, 1_000, &[U, H, U]);
        let idx: Vec<_> = t.iter().map(|(i, t)| (*i, t.to)).collect();
        assert_eq!(
            idx,
            [
                (0, State::Unhealthy),
                (1, State::Healthy),
                (2, State::Unhealthy)
            ]
        );
    }

    #[test]
    fn fall_and_rise_after_millis() {
        let p = policy(After::Millis(10_000), After::Millis(30_000), 0);
        let mut m = DecisionMachine::new(api(), p, at(0));
        for ms in [0, 5_000, 9_999] {
            assert!(m.step(at(ms), &verdict(U, ms)).is_none(), "{ms}");
        }
        let t = m.step(at(10_000), &verdict(U, 10_000)).unwrap();
        assert_eq!((t.to, t.at, t.rounds), (State::Unhealthy, at(10_000), 4));
        // Rising: 30 s of Healthy from the first Healthy round, however many rounds.
        for ms in [20_000, 49_999] {
            assert!(m.step(at(ms), &verdict(H, ms)).is_none(), "{ms}");
        }
        let t = m.step(at(50_000), &verdict(H, 50_000)).unwrap();
        assert_eq!((t.to, t.rounds), (State::Healthy, 3));
        // Millis(0): the first round suffices (a streak always has at least one round).
        let mut m =
            DecisionMachine::new(api(), policy(After::Millis(0), After::Millis(0), 0), at(0));
        assert_eq!(m.step(at(1), &verdict(U, 1)).map(|t| t.rounds), Some(1));
    }

    #[test]
    fn no_quorum_holds_the_state_and_breaks_a_streak() {
        let mut m =
            DecisionMachine::new(api(), policy(After::Rounds(3), After::Rounds(3), 0), at(0));
        assert!(run(&mut m, 0, 1_000, &[U, U, N, U, U, N, N, N, N, N, U, U]).is_empty());
        assert_eq!(
            (m.state(), m.last_outcome(), m.pending_rounds()),
            (State::Healthy, Some(U), 2)
        );
        let t = run(&mut m, 20_000, 1_000, &[U]);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].1.rounds, 3);
        // A long NoQuorum in the Unhealthy state holds Unhealthy.
        assert!(run(&mut m, 30_000, 1_000, &[N; 50]).is_empty());
        assert_eq!(m.state(), State::Unhealthy);
        // A round agreeing with the current state also breaks a streak.
        assert!(run(&mut m, 100_000, 1_000, &[H, H, U, H, H]).is_empty());
        assert_eq!(m.pending_rounds(), 2);

        // The same with a duration: NoQuorum restarts the clock of the streak.
        let mut m = DecisionMachine::new(
            api(),
            policy(After::Millis(10_000), After::Millis(10_000), 0),
            at(0),
        );
        for (ms, o) in [(0, U), (5_000, N), (6_000, U), (15_999, U)] {
            assert!(m.step(at(ms), &verdict(o, ms)).is_none(), "{ms}");
        }
        assert!(m.step(at(16_000), &verdict(U, 16_000)).is_some());
    }

    #[test]
    fn hold_down_delays_the_next_transition_until_it_elapses() {
        let mut m = DecisionMachine::new(
            api(),
            policy(After::Rounds(1), After::Rounds(1), 30_000),
            at(0),
        );
        // The first transition is not held down (there was no earlier one).
        assert!(m.step(at(0), &verdict(U, 0)).is_some());
        for ms in [10_000, 20_000, 29_999] {
            assert!(m.step(at(ms), &verdict(H, ms)).is_none(), "{ms}");
        }
        assert_eq!((m.state(), m.pending_rounds()), (State::Unhealthy, 3));
        let t = m.step(at(30_000), &verdict(H, 30_000)).unwrap();
        assert_eq!(
            (t.from, t.to, t.rounds),
            (State::Unhealthy, State::Healthy, 4)
        );
        // A streak that was already long enough still waits out the next hold-down.
        assert!(m.step(at(45_000), &verdict(U, 45_000)).is_none());
        assert!(m.step(at(59_999), &verdict(U, 59_999)).is_none());
        assert!(m.step(at(60_000), &verdict(U, 60_000)).is_some());
        assert_eq!(m.transitions(), 3);
        // Interrupted during the hold-down, the streak starts again after it.
        let mut m = DecisionMachine::new(
            api(),
            policy(After::Rounds(2), After::Rounds(2), 30_000),
            at(0),
        );
        assert_eq!(run(&mut m, 0, 1_000, &[U, U]).len(), 1);
        assert!(run(&mut m, 10_000, 10_000, &[H, H, N, H]).is_empty());
        assert_eq!(m.pending_rounds(), 1);
        assert!(m.step(at(40_000), &verdict(H, 40_000)).is_some());
    }

    #[test]
    fn a_verdict_without_certificate_cannot_move_it() {
        let mut m =
            DecisionMachine::new(api(), policy(After::Rounds(1), After::Rounds(1), 0), at(0));
        for ms in 0..10 {
            let v = Verdict {
                certificate: None,
                ..verdict(U, ms)
            };
            assert!(m.step(at(ms), &v).is_none());
        }
        assert_eq!(
            (m.state(), m.transitions(), m.pending_rounds()),
            (State::Healthy, 0, 0)
        );
        assert_eq!(m.last_outcome(), Some(U));
        // A verdict for another check is ignored entirely.
        let other = Verdict {
            check: CheckId::new("db").unwrap(),
            ..verdict(U, 20)
        };
        assert!(m.step(at(20), &other).is_none());
        assert_eq!(m.last_outcome(), Some(U));
        assert_eq!(m.state(), State::Healthy);
    }

    #[test]
    fn a_transition_carries_the_certificate_of_its_verdict() {
        let mut m =
            DecisionMachine::new(api(), policy(After::Rounds(2), After::Rounds(2), 0), at(0));
        let first = verdict(U, 1_000);
        let second = verdict(U, 2_000);
        assert!(m.step(at(1_000), &first).is_none());
        let t = m.step(at(2_000), &second).unwrap();
        assert_eq!(t.check, api());
        assert_eq!(t.certificate.outcome, Outcome::Unhealthy);
        let carried = &t.certificate.ballots[0];
        let expected = &second.certificate.as_ref().unwrap().ballots[0];
        assert!(
            Arc::ptr_eq(carried, expected),
            "not the deciding verdict's certificate"
        );
        assert_eq!(carried.ballot.seq(), 2_000);
    }

    /// One evaluation: at this many ms, early or not, with this outcome.
    type Eval = (u64, bool, Outcome);

    /// Feeds `steps`; returns the indices of the transitions.
    fn feed(m: &mut DecisionMachine, steps: &[Eval]) -> Vec<usize> {
        steps
            .iter()
            .enumerate()
            .filter_map(|(i, (ms, early, o))| {
                let v = verdict(*o, *ms);
                let t = if *early {
                    m.step_early(at(*ms), &v)
                } else {
                    m.step(at(*ms), &v)
                };
                t.map(|_| i)
            })
            .collect()
    }

    #[test]
    fn early_verdicts_count_as_the_next_round_once() {
        const E: bool = true;
        const R: bool = false;
        // (fall_after rounds, evaluations, transitions at, pending rounds after)
        let table: &[(u32, &[Eval], &[usize], u32)] = &[
            // fall_after 1: the first early Unhealthy decides, before the tick.
            (1, &[(0, R, H), (300, E, U), (1_000, R, U)], &[1], 0),
            // fall_after 2: round 1 early, confirmed by its tick, round 2 early decides.
            (
                2,
                &[(0, R, H), (300, E, U), (1_000, R, U), (1_300, E, U)],
                &[3],
                0,
            ),
            // Many early verdicts in one round count once.
            (
                3,
                &[
                    (0, R, H),
                    (100, E, U),
                    (200, E, U),
                    (300, E, U),
                    (400, E, U),
                ],
                &[],
                1,
            ),
            // A tick's own Unhealthy round, then an early one: two rounds.
            (2, &[(0, R, U), (300, E, U)], &[1], 0),
            // An early verdict never breaks a streak: NoQuorum and agreeing verdicts are no-ops.
            (
                3,
                &[(0, R, U), (300, E, N), (400, E, H), (1_000, R, U)],
                &[],
                2,
            ),
            // The round's own evaluation breaks a streak an early verdict advanced.
            (
                2,
                &[(0, R, H), (300, E, U), (1_000, R, N), (1_300, E, U)],
                &[],
                1,
            ),
            (
                2,
                &[(0, R, H), (300, E, U), (1_000, R, H), (1_300, E, U)],
                &[],
                1,
            ),
        ];
        for (fall, steps, want, pending) in table {
            let mut m = DecisionMachine::new(
                api(),
                policy(After::Rounds(*fall), After::Rounds(5), 0),
                at(0),
            );
            assert_eq!(&feed(&mut m, steps), want, "fall_after {fall}: {steps:?}");
            assert_eq!(m.pending_rounds(), *pending, "fall_after {fall}: {steps:?}");
        }
    }

    #[test]
    fn early_verdicts_respect_hold_down_and_durations() {
        // hold_down 5 s after the first transition: an early verdict cannot undercut it.
        let mut m = DecisionMachine::new(
            api(),
            policy(After::Rounds(1), After::Rounds(1), 5_000),
            at(0),
        );
        assert_eq!(feed(&mut m, &[(0, false, U)]), [0]);
        assert!(m.step_early(at(4_999), &verdict(H, 4_999)).is_none());
        assert!(m.step_early(at(5_000), &verdict(H, 5_000)).is_some());
        // Millis: an early verdict completes the transition as soon as the time has passed.
        let mut m = DecisionMachine::new(
            api(),
            policy(After::Millis(2_000), After::Rounds(1), 0),
            at(0),
        );
        assert!(m.step(at(0), &verdict(U, 0)).is_none());
        assert!(m.step(at(1_000), &verdict(U, 1_000)).is_none());
        let t = m
            .step_early(at(2_000), &verdict(U, 2_000))
            .expect("2 s held");
        assert_eq!(t.at, at(2_000));
    }

    /// Restart safety, table-style: how each start answers before and after the first quorum
    /// verdict. Each row: start, policy (fall, rise, hold-down), then per round `(outcome,
    /// certified, expected decision, expected basis, expected transition)`; rounds are 1 s
    /// apart from `at(10_000)`.
    #[test]
    fn restart_starts_table() {
        use Basis::{Decided as Dd, Initial as In, Restored as Rs, Undecided as Ud};
        const HL: Option<State> = Some(State::Healthy);
        const UL: Option<State> = Some(State::Unhealthy);
        const NONE: Option<State> = None;
        let restored = |state, last_transition: Option<u64>| {
            Start::Restored(Restored {
                state,
                since: at(1_000),
                last_transition: last_transition.map(at),
            })
        };
        type Round = (Outcome, bool, Option<State>, Basis, Option<(State, State)>);
        type Row = (&'static str, Start, (u32, u32, u64), Vec<Round>);
        let down = Some((State::Healthy, State::Unhealthy));
        let up = Some((State::Unhealthy, State::Healthy));
        let table: Vec<Row> = vec![
            (
                "undecided: no quorum and uncertified verdicts leave it undecided, the first \
                 quorum verdict is its state at once (fall_after does not apply)",
                Start::Undecided,
                (3, 3, 0),
                vec![
                    (N, false, NONE, Ud, None),
                    (U, false, NONE, Ud, None),
                    (N, false, NONE, Ud, None),
                    (U, true, UL, Dd, None),
                    (U, true, UL, Dd, None),
                ],
            ),
            (
                "undecided: Healthy at once too, then normal hysteresis",
                Start::Undecided,
                (2, 5, 0),
                vec![
                    (H, true, HL, Dd, None),
                    (U, true, HL, Dd, None),
                    (U, true, UL, Dd, down),
                ],
            ),
            (
                "restored Unhealthy holds through no quorum and needs rise_after to rise",
                restored(State::Unhealthy, None),
                (2, 3, 0),
                vec![
                    (N, false, UL, Rs, None),
                    (H, true, UL, Dd, None),
                    (H, true, UL, Dd, None),
                    (H, true, HL, Dd, up),
                ],
            ),
            (
                "restored Unhealthy confirmed by an agreeing verdict",
                restored(State::Unhealthy, None),
                (1, 1, 0),
                vec![(U, true, UL, Dd, None), (N, false, UL, Dd, None)],
            ),
            (
                "restored: the earlier run's hold-down still applies (transition at 9 s, \
                 30 s hold-down: no rise before 39 s)",
                restored(State::Unhealthy, Some(9_000)),
                (1, 1, 30_000),
                vec![
                    (H, true, UL, Dd, None),
                    (H, true, UL, Dd, None),
                    (H, true, UL, Dd, None),
                ],
            ),
            (
                "initial (brand-new install): Healthy until fall_after, like before",
                Start::Initial,
                (2, 2, 0),
                vec![
                    (N, false, HL, In, None),
                    (U, true, HL, Dd, None),
                    (U, true, UL, Dd, down),
                ],
            ),
        ];
        for (name, start, (fall, rise, hold), rounds) in table {
            let p = policy(After::Rounds(fall), After::Rounds(rise), hold);
            let mut m = DecisionMachine::start(api(), p, start, at(10_000));
            let before = if matches!(start, Start::Undecided) {
                NONE
            } else {
                Some(m.state())
            };
            assert_eq!(m.decision(), before, "{name}: before any round");
            for (i, (outcome, certified, decision, basis, transition)) in
                rounds.into_iter().enumerate()
            {
                let ms = 10_000 + 1_000 * i as u64;
                let mut v = verdict(outcome, ms);
                if !certified {
                    v.certificate = None;
                }
                let t = m.step(at(ms), &v).map(|t| (t.from, t.to));
                assert_eq!(
                    (m.decision(), m.basis(), t),
                    (decision, basis, transition),
                    "{name}: round {i}"
                );
            }
        }
    }

    #[test]
    fn restored_and_undecided_machines_report_their_start() {
        let r = Restored {
            state: State::Unhealthy,
            since: at(1_000),
            last_transition: Some(at(1_000)),
        };
        let m = DecisionMachine::start(
            api(),
            DecisionPolicy::default(),
            Start::Restored(r),
            at(5_000),
        );
        assert_eq!(
            (
                m.decision(),
                m.basis(),
                m.since(),
                m.last_transition(),
                m.transitions()
            ),
            (
                Some(State::Unhealthy),
                Basis::Restored,
                at(1_000),
                Some(at(1_000)),
                0
            )
        );
        // Undecided: no decision, whatever `initial` says, and settling is not a transition.
        let mut m = DecisionMachine::undecided(api(), DecisionPolicy::default(), at(5_000));
        assert_eq!(
            (m.decision(), m.basis(), m.since()),
            (None, Basis::Undecided, at(5_000))
        );
        assert!(m.step(at(6_000), &verdict(H, 6_000)).is_none());
        assert_eq!(
            (
                m.decision(),
                m.since(),
                m.transitions(),
                m.last_transition()
            ),
            (Some(State::Healthy), at(6_000), 0, None)
        );
        // A verdict tallied between rounds settles an undecided machine just the same (it is
        // a quorum verdict with its certificate); the round's own verdict then agrees.
        let mut m = DecisionMachine::undecided(api(), DecisionPolicy::default(), at(5_000));
        assert!(m.step_early(at(5_500), &verdict(U, 5_500)).is_none());
        assert_eq!(
            (m.decision(), m.basis()),
            (Some(State::Unhealthy), Basis::Decided)
        );
        assert!(m.step(at(6_000), &verdict(U, 6_000)).is_none());
        assert_eq!((m.decision(), m.transitions()), (Some(State::Unhealthy), 0));
        let mut m = DecisionMachine::restored(api(), DecisionPolicy::default(), r);
        assert!(m.step_early(at(5_500), &verdict(N, 5_500)).is_none());
        assert_eq!(m.basis(), Basis::Restored, "no quorum: still restored");
        assert!(m.step_early(at(5_600), &verdict(H, 5_600)).is_none());
        assert_eq!(
            (m.decision(), m.basis()),
            (Some(State::Unhealthy), Basis::Decided)
        );
        assert_eq!(
            [
                Basis::Initial,
                Basis::Restored,
                Basis::Undecided,
                Basis::Decided
            ]
            .map(Basis::as_str),
            ["initial", "restored", "undecided", "decided"]
        );
    }
}
