//! The book plus one decision machine per check: the whole protocol state of one agent.
//!
//! The agent feeds it ballots (its own and its peers') as they arrive, calls
//! [`Engine::evaluate`] once per round and [`Engine::evaluate_early`] when a peer's ballot
//! arrives between rounds; both report transitions, each with its certificate.

use std::collections::BTreeMap;

use crate::book::{Accepted, BallotBook, BookConfig, Prechecked, Receipt, Rejection};
use crate::decision::{DecisionMachine, DecisionPolicy, Start, Transition};
use crate::ids::CheckId;
use crate::membership::Membership;
use crate::tally::{tally_all, Verdict};
use crate::time::UnixMillis;

/// One agent's protocol state.
#[derive(Debug, Clone)]
pub struct Engine {
    book: BallotBook,
    /// One entry per check, sorted by check id: its machine and the last verdict.
    checks: Vec<(DecisionMachine, Option<Verdict>)>,
}

impl Engine {
    /// An engine with every check in its policy's initial state since `now`.
    /// A check listed twice keeps its last policy (config validation rejects duplicates).
    pub fn new(
        membership: Membership,
        config: BookConfig,
        checks: impl IntoIterator<Item = (CheckId, DecisionPolicy)>,
        now: UnixMillis,
    ) -> Self {
        let checks = checks
            .into_iter()
            .map(|(id, policy)| (id, policy, Start::Initial));
        Self::restore(membership, config, checks, now)
    }

    /// An engine after a restart: each check starts as its [`Start`] says — in the state an
    /// earlier run decided, undecided, or (brand-new install) in its policy's initial state.
    /// The caller reads what was persisted; the engine only takes it as arguments.
    /// A check listed twice keeps its last entry.
    pub fn restore(
        membership: Membership,
        config: BookConfig,
        checks: impl IntoIterator<Item = (CheckId, DecisionPolicy, Start)>,
        now: UnixMillis,
    ) -> Self {
        let unique: BTreeMap<CheckId, (DecisionPolicy, Start)> = checks
            .into_iter()
            .map(|(id, policy, start)| (id, (policy, start)))
            .collect();
        let checks = unique
            .into_iter()
            .map(|(id, (policy, start))| (DecisionMachine::start(id, policy, start, now), None))
            .collect();
        Self {
            book: BallotBook::new(membership, config),
            checks,
        }
    }

    /// Validates and records a wire-encoded ballot (see [`BallotBook::handle_ballot`]).
    pub fn handle_ballot(&mut self, now: UnixMillis, wire: &[u8]) -> Result<Accepted, Rejection> {
        self.book.handle_ballot(now, wire)
    }

    /// The stateless half of receipt (see [`crate::book::Receipt`]), to run outside whatever
    /// guards this engine.
    #[must_use]
    pub fn receipt(&self) -> Receipt {
        self.book.receipt()
    }

    /// Records a prechecked ballot (see [`BallotBook::admit`]).
    pub fn admit(&mut self, now: UnixMillis, pre: Prechecked) -> Result<Accepted, Rejection> {
        self.book.admit(now, pre)
    }

    /// Tallies every check at `now` and steps its machine: one evaluation round.
    pub fn evaluate(&mut self, now: UnixMillis) -> Vec<Transition> {
        self.step_all(now, DecisionMachine::step)
    }

    /// Tallies every check between two rounds (a peer's ballot just arrived) and feeds each
    /// machine an early verdict ([`DecisionMachine::step_early`]): a decision whose evidence is
    /// complete lands now instead of at the next round.
    pub fn evaluate_early(&mut self, now: UnixMillis) -> Vec<Transition> {
        self.step_all(now, DecisionMachine::step_early)
    }

    fn step_all(
        &mut self,
        now: UnixMillis,
        step: fn(&mut DecisionMachine, UnixMillis, &Verdict) -> Option<Transition>,
    ) -> Vec<Transition> {
        // Check ids are ascending, so the tally walks each ballot once.
        let verdicts = tally_all(&self.book, self.checks.iter().map(|(m, _)| m.check()), now);
        let mut transitions = Vec::new();
        for ((machine, last), verdict) in self.checks.iter_mut().zip(verdicts) {
            transitions.extend(step(machine, now, &verdict));
            *last = Some(verdict);
        }
        transitions
    }

    #[must_use]
    pub fn book(&self) -> &BallotBook {
        &self.book
    }

    fn entry(&self, check: &CheckId) -> Option<&(DecisionMachine, Option<Verdict>)> {
        self.checks
            .binary_search_by(|(m, _)| m.check().cmp(check))
            .ok()
            .map(|i| &self.checks[i])
    }

    #[must_use]
    pub fn machine(&self, check: &CheckId) -> Option<&DecisionMachine> {
        self.entry(check).map(|(m, _)| m)
    }

    /// Machines in check-id order.
    pub fn machines(&self) -> impl Iterator<Item = &DecisionMachine> {
        self.checks.iter().map(|(m, _)| m)
    }

    /// The verdict of the last [`evaluate`](Self::evaluate), if any.
    #[must_use]
    pub fn verdict(&self, check: &CheckId) -> Option<&Verdict> {
        self.entry(check).and_then(|(_, v)| v.as_ref())
    }
}
