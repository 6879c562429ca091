//! What a gate reads each round: per check, the decided state and the certificate proving it.

use std::collections::{BTreeMap, BTreeSet};

use crate::decision::State;
use crate::engine::Engine;
use crate::ids::CheckId;
use crate::tally::{Certificate, Outcome};

/// The decision about one check, as a gate sees it.
#[derive(Clone, Debug)]
pub struct CheckInput {
    /// The decision machine's state (fall/rise/hold-down already applied).
    pub state: State,
    /// A certificate for `state`: the *current* tally's, when it agrees with the decided
    /// state. Without one the check is not "Healthy/Unhealthy by quorum" right now and no
    /// change may rely on it.
    pub certificate: Option<Certificate>,
    /// The quorum's measured replication lag for this check (database checks), if known.
    pub lag_ms: Option<u64>,
}

impl CheckInput {
    #[must_use]
    pub fn new(state: State, certificate: Option<Certificate>) -> Self {
        Self {
            state,
            certificate,
            lag_ms: None,
        }
    }

    #[must_use]
    pub fn with_lag_ms(mut self, lag_ms: Option<u64>) -> Self {
        self.lag_ms = lag_ms;
        self
    }

    /// The certificate proving `check` is `want` by quorum: the decided state is `want` and
    /// the certificate names `check` with the matching outcome. Anything else is no evidence.
    #[must_use]
    pub fn evidence(&self, check: &CheckId, want: State) -> Option<&Certificate> {
        let cert = self.certificate.as_ref()?;
        (self.state == want && cert.check == *check && cert.outcome == outcome_of(want))
            .then_some(cert)
    }
}

pub(crate) fn outcome_of(state: State) -> Outcome {
    match state {
        State::Healthy => Outcome::Healthy,
        State::Unhealthy => Outcome::Unhealthy,
    }
}

/// Every check's [`CheckInput`] for one evaluation.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    checks: BTreeMap<CheckId, CheckInput>,
    /// Checks with no decision yet (a restarted agent before its first quorum verdict):
    /// no input at all, so no rule can read them as Healthy; a gate holds on them.
    undecided: BTreeSet<CheckId>,
}

impl Inputs {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, check: CheckId, input: CheckInput) {
        self.checks.insert(check, input);
    }

    #[must_use]
    pub fn get(&self, check: &CheckId) -> Option<&CheckInput> {
        self.checks.get(check)
    }

    /// Marks `check` undecided (and drops any input it had).
    pub fn insert_undecided(&mut self, check: CheckId) {
        self.checks.remove(&check);
        self.undecided.insert(check);
    }

    #[must_use]
    pub fn is_undecided(&self, check: &CheckId) -> bool {
        self.undecided.contains(check)
    }

    /// The engine's view after [`Engine::evaluate`]: each machine's state (an undecided one
    /// only as [`is_undecided`](Self::is_undecided)), the latest tally's
    /// certificate when it agrees with that state, and the lag the certificate's ballots
    /// report (the largest of them, and unknown if any of them lacks one — a minority can
    /// neither hide a lag nor invent a small one).
    #[must_use]
    pub fn from_engine(engine: &Engine) -> Self {
        let mut inputs = Self::new();
        for machine in engine.machines() {
            let check = machine.check();
            let Some(state) = machine.decision() else {
                inputs.insert_undecided(check.clone());
                continue;
            };
            let cert = engine.verdict(check).and_then(|v| v.certificate.as_ref());
            let lag_ms = cert.and_then(|c| quorum_lag(c, check));
            let agreeing = cert.filter(|c| c.outcome == outcome_of(state));
            inputs.insert(
                check.clone(),
                CheckInput::new(state, agreeing.cloned()).with_lag_ms(lag_ms),
            );
        }
        inputs
    }
}

fn quorum_lag(cert: &Certificate, check: &CheckId) -> Option<u64> {
    cert.ballots
        .iter()
        .map(|b| b.ballot.observation(check).and_then(|o| o.lag_ms))
        .try_fold(0u64, |max, lag| lag.map(|l| max.max(l)))
        .filter(|_| !cert.ballots.is_empty())
}
