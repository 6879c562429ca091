//! The agent's state between I/O events: the quorum engine plus what this agent saw.
//!
//! `Node` is synchronous and owns no sockets; the main loop and the HTTP handlers share it
//! behind a mutex and never hold the lock across an await, nor across disk I/O (the
//! [`journal`] writes) or signature checks of received ballots (done before the lock, see
//! [`crate::intake`]).
//!
//! `votes.rs`: observations into votes; `persist.rs`: decision changes into audit records,
//! answers and the decisions file; `journal.rs`: the thread that writes them and publishes
//! the answers; `status.rs`: the `/v1/status` document.

pub(crate) mod journal;
mod persist;
mod status;
mod votes;

use std::collections::BTreeMap;
use std::sync::Arc;

use config::Config;
use quorum::{
    Accepted, AgentId, Ballot, Basis, BookConfig, CheckId, DecisionMachine, Engine, Observation,
    Prechecked, Rejection, SignedBallot, SigningKey, State, Transition, UnixMillis,
};

use crate::decisions::Restore;
use crate::drill::DrillBoard;
use crate::intake::{Intake, Rejections};
use crate::probe::ProbeOutcome;
use crate::telemetry as t;
use crate::telemetry::checks::{self, Gauge};
use journal::Journal;
use persist::{answer_of, Persisted};
use votes::count_abstentions;
pub use votes::AbstainCause;

/// One check's latest result as this agent saw it.
#[derive(Debug, Clone)]
struct Seen {
    observation: Observation,
    /// The run started late (see [`crate::scheduler::ProbeReport::late`]).
    late: bool,
}

#[derive(Debug, Clone)]
struct ControlState {
    last: ProbeOutcome,
    observed_at: UnixMillis,
    consecutive_failures: u32,
}

/// One agent's state.
#[derive(Debug)]
pub struct Node {
    cfg: Arc<Config>,
    engine: Engine,
    observations: BTreeMap<CheckId, Seen>,
    /// Position of each check in `cfg.shared.checks`.
    check_index: BTreeMap<CheckId, usize>,
    controls: BTreeMap<String, ControlState>,
    starved_at: Option<UnixMillis>,
    /// The last local resource failure: when, and what.
    local_resource: Option<(UnixMillis, String)>,
    /// A result changed this agent's vote since its last ballot: publish early.
    publish_due: bool,
    seq: u64,
    own_wire: Option<Arc<Vec<u8>>>,
    last_push: BTreeMap<AgentId, String>,
    /// Refused ballots, counted outside the lock too (see [`crate::intake`]).
    rejections: Rejections,
    rounds: u64,
    ready: bool,
    last_round_at: Option<UnixMillis>,
    /// Checks a game-day drill tells this agent to treat as failed.
    drills: Option<DrillBoard>,
    /// Each check's decision and verdict gauges, in `engine.machines()` order (the engine's
    /// checks are fixed when it is built), so a round updates them without a registry lookup.
    gauges: Vec<CheckGauges>,
    /// Restart safety: what the decisions file holds (or will hold), see [`crate::decisions`].
    persisted: Persisted,
    /// Writes decision changes and publishes what `/v1/health` answers.
    journal: Journal,
}

/// The outcome labels of `quorumgate_verdict`.
const OUTCOMES: [&str; 3] = ["healthy", "unhealthy", "no_quorum"];

#[derive(Debug)]
struct CheckGauges {
    /// Registered once the check is decided: an undecided check (a restarted agent before its
    /// first quorum verdict) must not read as either state.
    decision: Option<Gauge>,
    /// One per [`OUTCOMES`] label; registered at the check's first tally, as before.
    verdict: Option<[Gauge; 3]>,
}

impl CheckGauges {
    fn new(m: &DecisionMachine) -> Self {
        let mut g = Self {
            decision: None,
            verdict: None,
        };
        g.set_decision(m);
        g
    }

    fn set_decision(&mut self, m: &DecisionMachine) {
        if let Some(state) = m.decision() {
            self.decision
                .get_or_insert_with(|| checks::global().decision(m.check().as_str()))
                .set(state_gauge(state));
        }
    }
}

/// What `/v1/health/{check}` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// `None`: undecided (a restarted agent before its first quorum verdict).
    pub decision: Option<State>,
    pub basis: Basis,
    /// One line for the response body.
    pub detail: String,
}

impl Node {
    /// A node of a brand-new install: every check in its configured `initial` state.
    #[must_use]
    pub fn new(cfg: Arc<Config>, now: UnixMillis) -> Self {
        Self::restored(cfg, now, Restore::brand_new())
    }

    /// A node after a restart: each check restored, undecided, or (brand-new install only)
    /// in its `initial` state, as `restore` says.
    #[must_use]
    pub fn restored(cfg: Arc<Config>, now: UnixMillis, restore: Restore) -> Self {
        let shared = &cfg.shared;
        let book = BookConfig {
            max_ballot_bytes: shared.cluster.max_ballot_bytes,
            max_clock_skew_ms: shared.cluster.max_clock_skew_ms,
            max_valid_for_ms: u64::from(shared.cluster.ballot_valid_for_ms),
            config_digest: cfg.digest,
        };
        let checks = shared
            .checks
            .iter()
            .map(|c| (c.id.clone(), c.policy, restore.start(&c.id)));
        let engine = Engine::restore(shared.membership.clone(), book, checks, now);
        let gauges = engine.machines().map(CheckGauges::new).collect();
        let mut persisted = Persisted {
            answered: engine.machines().map(answer_of).collect(),
            ..Persisted::default()
        };
        let journal = Journal::new(
            engine
                .machines()
                .map(|m| (m.check().clone(), answer_of(m)))
                .collect(),
        );
        for m in engine.machines() {
            let check = m.check().clone();
            match m.basis() {
                Basis::Restored => {}
                Basis::Undecided => {
                    persisted.undecided.insert(check.clone());
                    persisted.pending.insert(check);
                }
                Basis::Initial | Basis::Decided => {
                    persisted.pending.insert(check);
                }
            }
        }
        persisted.decisions = restore
            .decisions
            .into_iter()
            .filter(|(c, _)| engine.machine(c).is_some())
            .collect();
        let check_index = shared
            .checks
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i))
            .collect();
        Self {
            cfg,
            engine,
            observations: BTreeMap::new(),
            check_index,
            controls: BTreeMap::new(),
            starved_at: None,
            local_resource: None,
            publish_due: false,
            seq: 0,
            own_wire: None,
            last_push: BTreeMap::new(),
            rejections: Rejections::default(),
            rounds: 0,
            ready: false,
            last_round_at: None,
            drills: None,
            gauges,
            persisted,
            journal,
        }
    }

    #[must_use]
    pub fn config(&self) -> &Arc<Config> {
        &self.cfg
    }

    /// Issues this agent's ballot for the round, counts it, and evaluates every check.
    /// Returns the signed wire ballot (to push to peers) and the transitions it caused.
    pub fn round(&mut self, now: UnixMillis, key: &SigningKey) -> (Arc<Vec<u8>>, Vec<Transition>) {
        let wire = self.sign_ballot(now, key);
        let transitions = self.engine.evaluate(now);
        self.after_evaluate(now, &transitions, true);
        self.rounds += 1;
        self.ready = true;
        self.last_round_at = Some(now);
        metrics::counter!(t::ROUNDS).increment(1);
        let abstaining = self.abstain_cause(now).is_some();
        metrics::gauge!(t::ABSTAINING).set(if abstaining { 1.0 } else { 0.0 });
        (wire, transitions)
    }

    /// A probe result changed this agent's vote since its last ballot.
    #[must_use]
    pub fn publish_due(&self) -> bool {
        self.publish_due
    }

    /// Issues a ballot between rounds because a vote changed (see [`publish_due`]), and
    /// evaluates early with it (a single-member cluster decides on it at once). Returns the
    /// wire ballot to push to peers.
    ///
    /// [`publish_due`]: Self::publish_due
    pub fn publish(&mut self, now: UnixMillis, key: &SigningKey) -> Arc<Vec<u8>> {
        let wire = self.sign_ballot(now, key);
        let transitions = self.engine.evaluate_early(now);
        self.after_evaluate(now, &transitions, false);
        metrics::counter!(t::EARLY_BALLOTS).increment(1);
        wire
    }

    /// What the server and the exchange check ballots with before they take this lock.
    #[must_use]
    pub fn intake(&self) -> Intake {
        Intake::new(self.engine.receipt(), self.rejections.clone())
    }

    /// Counts a peer's prechecked ballot like [`admit`](Self::admit) and, when it is new,
    /// evaluates every check at once: a decision whose evidence it completes lands now, not
    /// at the next round.
    pub fn receive_peer(
        &mut self,
        now: UnixMillis,
        pre: Prechecked,
        source: &str,
    ) -> Result<Accepted, Rejection> {
        let result = self.admit(now, pre, source);
        if matches!(result, Ok(Accepted::New(_))) && self.ready {
            let transitions = self.engine.evaluate_early(now);
            self.after_evaluate(now, &transitions, false);
        }
        result
    }

    /// Signs and counts this agent's ballot with its votes at `now`.
    fn sign_ballot(&mut self, now: UnixMillis, key: &SigningKey) -> Arc<Vec<u8>> {
        let cluster = &self.cfg.shared.cluster;
        let last_seq = self
            .engine
            .book()
            .latest(&self.cfg.local.agent_id)
            .map_or(0, |v| v.ballot.seq());
        // Seq starts at the wall clock so it keeps rising across restarts.
        self.seq = self.seq.max(last_seq).saturating_add(1).max(now.0);
        let votes = self.votes(now);
        count_abstentions(&votes);
        let ballot = Ballot::new(
            self.cfg.local.agent_id.clone(),
            self.seq,
            now,
            cluster.ballot_valid_for_ms,
            self.cfg.digest,
            votes,
        );
        let wire = match ballot {
            Ok(b) => Arc::new(SignedBallot::sign(&b, key).to_wire()),
            // Checks are unique by config validation, so a ballot always builds.
            Err(e) => unreachable!("config guarantees a valid ballot: {e}"),
        };
        if let Err(rejection) = self.receive(now, &wire, "self") {
            // Our own ballot failing validation means our clock jumped backwards past our last
            // seq, or the key does not match the config; peers will refuse it as well.
            tracing::error!(%rejection, "own ballot rejected");
        }
        self.own_wire = Some(Arc::clone(&wire));
        self.publish_due = false;
        wire
    }

    /// Validates a ballot from `source` (`self`, or a test's), counting the result. Never
    /// panics on any input. Ballots from peers are prechecked outside the lock instead
    /// ([`intake`](Self::intake), then [`admit`](Self::admit)).
    pub fn receive(
        &mut self,
        now: UnixMillis,
        wire: &[u8],
        source: &str,
    ) -> Result<Accepted, Rejection> {
        let pre = self.engine.receipt().precheck(wire).inspect_err(|r| {
            self.rejections
                .count(r.reason(), &format!("{r} (from {source})"));
        })?;
        self.admit(now, pre, source)
    }

    /// Counts a prechecked ballot from `source` if it is newer than what the book holds
    /// (sequence, skew, expiry: the checks that need the book), counting the result.
    pub fn admit(
        &mut self,
        now: UnixMillis,
        pre: Prechecked,
        source: &str,
    ) -> Result<Accepted, Rejection> {
        let result = self.engine.admit(now, pre);
        match &result {
            Ok(Accepted::New(v)) => {
                metrics::counter!(t::BALLOTS_ACCEPTED, "from" => v.ballot.agent().to_string())
                    .increment(1);
            }
            Ok(Accepted::Duplicate) => {}
            Err(rejection) => {
                self.rejections
                    .count(rejection.reason(), &format!("{rejection} (from {source})"));
            }
        }
        result
    }

    /// Counts a refused ballot: by the book, or before parsing (e.g. an oversized HTTP body).
    pub fn reject_transport(&mut self, reason: &'static str, detail: String) {
        self.rejections.count(reason, &detail);
    }

    /// What `/v1/health/{check}` answers: the decided state (`None` while undecided) and a
    /// one-line explanation. `None` for an unknown check. A decision change is answered once
    /// the journal has its audit record on disk; until then the previous answer stands.
    #[must_use]
    pub fn health(&self, check: &CheckId) -> Option<Health> {
        let a = self.journal.answer(check)?;
        let tally = self.engine.verdict(check).map_or_else(
            || "tally=pending".to_owned(),
            |v| {
                format!(
                    "tally={} votes={}h/{}u/{}a",
                    v.outcome.as_str(),
                    v.healthy,
                    v.unhealthy,
                    v.abstain
                )
            },
        );
        let q = self.engine.book().membership();
        Some(Health {
            decision: a.decision,
            basis: a.basis,
            detail: format!(
                "{check} decision={} since_ms={} quorum={}/{} {tally}",
                a.basis.as_str(),
                a.since.0,
                q.quorum(),
                q.len()
            ),
        })
    }

    /// Latest accepted ballot of every member, wire-encoded (for `GET /v1/ballots`).
    #[must_use]
    pub fn ballots(&self) -> Vec<Vec<u8>> {
        self.engine
            .book()
            .iter()
            .map(|v| v.signed.to_wire())
            .collect()
    }

    /// What the gates read after a round: every check's decided state, certificate and lag.
    #[must_use]
    pub fn gate_inputs(&self) -> quorum::gate::Inputs {
        quorum::gate::Inputs::from_engine(&self.engine)
    }

    /// Whether each member's latest ballot counts at `now`.
    #[must_use]
    pub fn live_members(&self, now: UnixMillis) -> BTreeMap<AgentId, bool> {
        let skew = self.cfg.shared.cluster.max_clock_skew_ms;
        self.engine
            .book()
            .iter()
            .map(|v| (v.ballot.agent().clone(), v.ballot.is_live_at(now, skew)))
            .collect()
    }

    pub fn set_push_result(&mut self, peer: AgentId, result: String) {
        self.last_push.insert(peer, result);
    }

    /// Ready once the first round is done.
    #[must_use]
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// When the last round ran (liveness).
    #[must_use]
    pub fn last_round_at(&self) -> Option<UnixMillis> {
        self.last_round_at
    }
}

fn state_gauge(s: State) -> f64 {
    match s {
        State::Healthy => 1.0,
        State::Unhealthy => 0.0,
    }
}

#[cfg(test)]
pub(crate) mod tests;
