//! The book plus one decision machine per check: the whole protocol state of one agent.
//!
//! The agent feeds it ballots (its own and its peers') as they arrive and calls
//! [`Engine::evaluate`] once per round; it reports transitions, each with its certificate.

use std::collections::BTreeMap;

use crate::book::{Accepted, BallotBook, BookConfig, Rejection};
use crate::decision::{DecisionMachine, DecisionPolicy, Transition};
use crate::ids::CheckId;
use crate::membership::Membership;
use crate::tally::{tally_all, Verdict};
use crate::time::UnixMillis;

/// One agent's protocol state.
#[derive(Debug, Clone)]
pub struct Engine {
    book: BallotBook,
    machines: BTreeMap<CheckId, DecisionMachine>,
    verdicts: BTreeMap<CheckId, Verdict>,
}

impl Engine {
    /// An engine with every check in its policy's initial state since `now`.
    pub fn new(
        membership: Membership,
        config: BookConfig,
        checks: impl IntoIterator<Item = (CheckId, DecisionPolicy)>,
        now: UnixMillis,
    ) -> Self {
        let machines = checks
            .into_iter()
            .map(|(id, policy)| (id.clone(), DecisionMachine::new(id, policy, now)))
            .collect();
        Self {
            book: BallotBook::new(membership, config),
            machines,
            verdicts: BTreeMap::new(),
        }
    }

    /// Validates and records a wire-encoded ballot (see [`BallotBook::handle_ballot`]).
    pub fn handle_ballot(&mut self, now: UnixMillis, wire: &[u8]) -> Result<Accepted, Rejection> {
        self.book.handle_ballot(now, wire)
    }

    /// Tallies every check at `now` and steps its machine: one evaluation round.
    pub fn evaluate(&mut self, now: UnixMillis) -> Vec<Transition> {
        let verdicts = tally_all(&self.book, self.machines.keys(), now);
        let mut transitions = Vec::new();
        for verdict in verdicts {
            if let Some(machine) = self.machines.get_mut(&verdict.check) {
                transitions.extend(machine.step(now, &verdict));
            }
            self.verdicts.insert(verdict.check.clone(), verdict);
        }
        transitions
    }

    #[must_use]
    pub fn book(&self) -> &BallotBook {
        &self.book
    }

    #[must_use]
    pub fn machine(&self, check: &CheckId) -> Option<&DecisionMachine> {
        self.machines.get(check)
    }

    pub fn machines(&self) -> impl Iterator<Item = &DecisionMachine> {
        self.machines.values()
    }

    /// The verdict of the last [`evaluate`](Self::evaluate), if any.
    #[must_use]
    pub fn verdict(&self, check: &CheckId) -> Option<&Verdict> {
        self.verdicts.get(check)
    }
}
