//! The per-check decision machine: hysteresis over tally verdicts.
//!
//! States are Healthy and Unhealthy. Healthy → Unhealthy only after the tally said Unhealthy
//! continuously for `fall_after`; Unhealthy → Healthy after Healthy continuously for
//! `rise_after`. `NoQuorum` holds the state and breaks any streak (it is not "continuously").
//! After a transition, `hold_down_ms` must pass before the next one.

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
        }
    }

    #[must_use]
    pub fn check(&self) -> &CheckId {
        &self.check
    }
    #[must_use]
    pub fn state(&self) -> State {
        self.state
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
        if verdict.check != self.check {
            return None;
        }
        self.last_outcome = Some(verdict.outcome);
        let toward = match verdict.outcome {
            Outcome::Healthy => State::Healthy,
            Outcome::Unhealthy => State::Unhealthy,
            Outcome::NoQuorum => {
                self.streak = None;
                return None;
            }
        };
        if toward == self.state {
            self.streak = None;
            return None;
        }
        let certificate = verdict.certificate.as_ref()?;
        let streak = match self.streak {
            Some(s) if s.toward == toward => Streak {
                rounds: s.rounds.saturating_add(1),
                ..s
            },
            _ => Streak {
                toward,
                rounds: 1,
                started_at: now,
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
}
