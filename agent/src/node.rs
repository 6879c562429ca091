//! The agent's state between I/O events: the quorum engine plus what this agent saw.
//!
//! `Node` is synchronous and owns no sockets; the main loop and the HTTP handlers share it
//! behind a mutex and never hold the lock across an await.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use config::Config;
use quorum::{
    Accepted, AgentId, Ballot, Basis, BookConfig, CheckId, DecisionMachine, Engine, Observation,
    Outcome, Reason, Rejection, SignedBallot, SigningKey, State, Status, Transition, UnixMillis,
};

use crate::audit::{self, SharedAudit};
use crate::decisions::{self, Decision, Restore};
use crate::drill::{DrillBoard, DrillVote};
use crate::local_resource;
use crate::probe::ProbeOutcome;
use crate::status::{
    BallotSummary, CheckStatus, ControlStatus, MemberStatus, ObservationStatus,
    Status as StatusDoc, TallyStatus,
};
use crate::telemetry as t;
use crate::telemetry::checks::{self, Gauge};

/// Why this agent withholds accusations on every check: its own sickness, never one check's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbstainCause {
    /// A control probe (the agent's own network) keeps failing.
    ControlFailed(String),
    /// Probes across the scheduler start late, or the round timer fired late: the runtime
    /// cannot keep up, and a failure it measures may be its own.
    Starved,
    /// A probe or peer call ran out of descriptors, buffers, memory or ports (the detail).
    LocalResource(String),
}

impl AbstainCause {
    fn reason(&self) -> Reason {
        match self {
            AbstainCause::ControlFailed(_) => Reason::from_static("control_failed"),
            AbstainCause::Starved => Reason::from_static("starved"),
            AbstainCause::LocalResource(_) => Reason::from_static(local_resource::REASON),
        }
    }
    /// One line for people (status, systemd's STATUS=).
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            AbstainCause::ControlFailed(id) => format!("control probe {id} failing"),
            AbstainCause::Starved => "probes start late across the scheduler (starved)".to_owned(),
            AbstainCause::LocalResource(what) => format!("out of a local resource: {what}"),
        }
    }
}

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
    rejected: BTreeMap<&'static str, u64>,
    last_rejection: Option<String>,
    rounds: u64,
    ready: bool,
    audit: Option<SharedAudit>,
    last_round_at: Option<UnixMillis>,
    /// Checks a game-day drill tells this agent to treat as failed.
    drills: Option<DrillBoard>,
    /// Each check's decision and verdict gauges, in `engine.machines()` order (the engine's
    /// checks are fixed when it is built), so a round updates them without a registry lookup.
    gauges: Vec<CheckGauges>,
    /// Restart safety: what the decisions file holds (or will hold), see [`crate::decisions`].
    persisted: Persisted,
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

/// The node's side of the decisions file.
#[derive(Debug, Default)]
struct Persisted {
    /// Writes it in the state dir; `None`: keep it in memory only.
    writer: Option<decisions::Writer>,
    decisions: BTreeMap<CheckId, Decision>,
    /// Checks whose decided state is not in `decisions` yet (every check not restored, and
    /// any check that just made a transition).
    pending: BTreeSet<CheckId>,
    /// Checks that started undecided and have had no quorum verdict yet.
    undecided: BTreeSet<CheckId>,
    /// `decisions` holds changes not yet handed to the writer (at the next round's evaluation).
    unsaved: bool,
    /// The wire bytes of ballots in `decisions`, so the checks one round decided share one copy.
    wires: BTreeMap<(AgentId, u64), Arc<[u8]>>,
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
        let mut persisted = Persisted::default();
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
            rejected: BTreeMap::new(),
            last_rejection: None,
            rounds: 0,
            ready: false,
            audit: None,
            last_round_at: None,
            drills: None,
            gauges,
            persisted,
        }
    }

    /// Writes the decisions file in `state_dir` from now on (see [`crate::decisions`]).
    pub fn set_decisions_dir(&mut self, state_dir: PathBuf) {
        let agent = self.cfg.local.agent_id.clone();
        self.persisted.writer = Some(decisions::Writer::start(state_dir, agent));
    }

    /// Waits (at most `limit`) until the decisions submitted so far are written; whether they
    /// are (true without a decisions dir).
    pub fn wait_decisions_written(&self, limit: std::time::Duration) -> bool {
        self.persisted
            .writer
            .as_ref()
            .is_none_or(|w| w.wait_idle(limit))
    }

    #[must_use]
    pub fn config(&self) -> &Arc<Config> {
        &self.cfg
    }

    /// Records a check probe result; `late`: its run started late. Returns whether it changed
    /// this agent's vote for the check since its last ballot (then [`publish_due`] is set).
    ///
    /// [`publish_due`]: Self::publish_due
    pub fn record_check(
        &mut self,
        check: CheckId,
        outcome: &ProbeOutcome,
        observed_at: UnixMillis,
        late: bool,
    ) -> bool {
        let status = if outcome.healthy {
            Status::Healthy
        } else {
            Status::Unhealthy
        };
        let latency_ms = u32::try_from(outcome.latency.as_millis()).unwrap_or(u32::MAX);
        let obs = Observation::new(
            check.clone(),
            status,
            outcome.reason.clone(),
            latency_ms,
            observed_at,
        )
        .with_detail(outcome.detail.clone());
        let obs = match outcome.lag_ms {
            Some(lag_ms) => obs.with_lag_ms(lag_ms),
            None => obs,
        };
        if outcome.reason.as_str() == local_resource::REASON {
            self.record_local_resource(observed_at, format!("probe {check}: {}", outcome.detail));
        }
        let seen = Seen {
            observation: obs,
            late,
        };
        self.observations.insert(check.clone(), seen);
        let changed = self.vote_changed(&check, observed_at);
        self.publish_due |= changed;
        changed
    }

    /// Whether `check`'s vote now differs from the one in this agent's latest ballot.
    fn vote_changed(&self, check: &CheckId, now: UnixMillis) -> bool {
        let Some(c) = self
            .check_index
            .get(check)
            .and_then(|i| self.cfg.shared.checks.get(*i))
        else {
            return false;
        };
        let published = self
            .engine
            .book()
            .latest(&self.cfg.local.agent_id)
            .and_then(|v| v.ballot.observation(check).map(|o| o.status));
        let cause = self.abstain_cause(now);
        let drills = self.active_drills(now);
        Some(self.vote(c, now, cause.as_ref(), &drills).status) != published
    }

    /// A probe or peer call ran out of a local resource at `at`: abstain on every check for
    /// a while (counted, logged, shown in status).
    pub fn record_local_resource(&mut self, at: UnixMillis, what: String) {
        metrics::counter!(t::LOCAL_RESOURCE_ERRORS).increment(1);
        if self.abstain_cause(at).is_none() {
            tracing::warn!(%what, "out of a local resource: abstaining from accusations");
        }
        self.local_resource = Some((at, what));
    }

    /// Records a control probe result.
    pub fn record_control(&mut self, id: String, outcome: ProbeOutcome, observed_at: UnixMillis) {
        if outcome.reason.as_str() == local_resource::REASON {
            self.record_local_resource(observed_at, format!("control {id}: {}", outcome.detail));
        }
        let prev = self.controls.get(&id).map_or(0, |c| c.consecutive_failures);
        let consecutive_failures = if outcome.healthy {
            0
        } else {
            prev.saturating_add(1)
        };
        self.controls.insert(
            id,
            ControlState {
                last: outcome,
                observed_at,
                consecutive_failures,
            },
        );
    }

    /// Records that the agent was starved at `at` (late probe starts across the scheduler, or
    /// a late round timer): it abstains on every check for two rounds after.
    pub fn record_starved(&mut self, at: UnixMillis) {
        if self.starved_at.is_none_or(|t| t < at) {
            self.starved_at = Some(at);
        }
    }

    /// Why this agent abstains now, if it does.
    #[must_use]
    pub fn abstain_cause(&self, now: UnixMillis) -> Option<AbstainCause> {
        let limit = self.cfg.local.control_failures_to_abstain.max(1);
        if let Some((id, _)) = self
            .controls
            .iter()
            .find(|(_, c)| c.consecutive_failures >= limit)
        {
            return Some(AbstainCause::ControlFailed(id.clone()));
        }
        let window = 2 * self.cfg.shared.cluster.round_interval_ms;
        if let Some((_, what)) = self
            .local_resource
            .as_ref()
            .filter(|(at, _)| now.since(*at) <= window)
        {
            return Some(AbstainCause::LocalResource(what.clone()));
        }
        self.starved_at
            .filter(|at| now.since(*at) <= window)
            .map(|_| AbstainCause::Starved)
    }

    /// Reads game-day drills from `board` from now on (see [`crate::drill`]).
    pub fn set_drill_board(&mut self, board: DrillBoard) {
        self.drills = Some(board);
    }

    fn active_drills(&self, now: UnixMillis) -> BTreeMap<CheckId, DrillVote> {
        self.drills
            .as_ref()
            .map(|b| b.active(now))
            .unwrap_or_default()
    }

    /// This round's vote for each check (see [`vote`](Self::vote)).
    fn votes(&self, now: UnixMillis) -> Vec<Observation> {
        let cause = self.abstain_cause(now);
        let drills = self.active_drills(now);
        self.cfg
            .shared
            .checks
            .iter()
            .map(|c| self.vote(c, now, cause.as_ref(), &drills))
            .collect()
    }

    /// One check's vote: the latest observation, turned into an abstention when there is none
    /// yet, when it is stale, when it measured this agent rather than the target (reason
    /// `local_resource`), when it accuses while the agent abstains, or when it is a failure
    /// other than a timeout from a run that started late (reason `overrun`, this check only: a
    /// late start means the agent was busy, and such a failure may be its own; a timeout runs
    /// in full from the run's own start, so it stays an Unhealthy `timeout` vote). A drilled
    /// check's Healthy observation becomes an Unhealthy vote with reason `drill` (before the
    /// abstention rules, so an agent that cannot see does not accuse for a drill either); a
    /// real Unhealthy observation stays what it is.
    fn vote(
        &self,
        c: &config::CheckConfig,
        now: UnixMillis,
        cause: Option<&AbstainCause>,
        drills: &BTreeMap<CheckId, DrillVote>,
    ) -> Observation {
        let round = self.cfg.shared.cluster.round_interval_ms;
        let Some(seen) = self.observations.get(&c.id) else {
            return Observation::new(
                c.id.clone(),
                Status::Abstain,
                Reason::from_static("no_data"),
                0,
                now,
            );
        };
        let o = &seen.observation;
        if now.since(o.observed_at) > 2 * c.interval_ms + c.timeout_ms + round {
            return abstain(o, Reason::from_static("stale"), "last result too old");
        }
        if o.reason.as_str() == local_resource::REASON {
            return abstain(
                o,
                Reason::from_static(local_resource::REASON),
                "the probe ran out of a local resource",
            );
        }
        let o = match drills.get(&c.id) {
            Some(d) if o.status == Status::Healthy => drilled(o, d),
            _ => o.clone(),
        };
        if o.status != Status::Unhealthy {
            return o;
        }
        match cause {
            Some(cause) => abstain(&o, cause.reason(), &cause.describe()),
            None if seen.late && o.reason.as_str() != "timeout" && o.reason.as_str() != "drill" => {
                abstain(&o, Reason::from_static("overrun"), "its run started late")
            }
            None => o,
        }
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

    /// Validates a peer's ballot like [`receive`](Self::receive) and, when it is new,
    /// evaluates every check at once: a decision whose evidence it completes lands now, not
    /// at the next round.
    pub fn receive_peer(
        &mut self,
        now: UnixMillis,
        wire: &[u8],
        source: &str,
    ) -> Result<Accepted, Rejection> {
        let result = self.receive(now, wire, source);
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

    /// Audits, logs and counts `transitions`, and refreshes every check's gauges (atomics:
    /// cheap enough for every evaluation, early ones included). `round`: a round's own
    /// evaluation, when the decisions file is brought up to date (see `persist_decisions`).
    fn after_evaluate(&mut self, now: UnixMillis, transitions: &[Transition], round: bool) {
        for (m, g) in self.engine.machines().zip(self.gauges.iter_mut()) {
            g.set_decision(m);
            if let Some(v) = self.engine.verdict(m.check()) {
                let verdict = g.verdict.get_or_insert_with(|| {
                    OUTCOMES.map(|o| checks::global().verdict(m.check().as_str(), o))
                });
                for (outcome, gauge) in OUTCOMES.iter().zip(verdict.iter()) {
                    gauge.set(if v.outcome.as_str() == *outcome {
                        1.0
                    } else {
                        0.0
                    });
                }
            }
        }
        for tr in transitions {
            self.audit_transition(now, tr);
            checks::global()
                .transitions(tr.check.as_str(), tr.to.as_str())
                .increment(1);
            tracing::warn!(
                check = %tr.check, from = tr.from.as_str(), to = tr.to.as_str(), rounds = tr.rounds,
                certificate = %tr.certificate.digest_hex(),
                voters = %tr.certificate.agents().map(AgentId::as_str).collect::<Vec<_>>().join(","),
                "decision changed"
            );
        }
        self.persist_decisions(now, transitions, round);
    }

    /// Restart safety: audits each undecided check's first verdict, and records a check's
    /// decision when it made a transition or got its first decided state with an agreeing
    /// certificate. The file is written at the round's evaluation (`round`) when something
    /// changed — once per round at most, however many checks and early evaluations — while
    /// each change is already in the audit log (a transition or `decided` record, written
    /// under this lock), which the restore reconciles with the file. The writer thread does
    /// the disk I/O: neither this lock nor the runtime waits for it; a failed write is logged
    /// and counted and does not stop the answers (that would override the quorum).
    fn persist_decisions(&mut self, now: UnixMillis, transitions: &[Transition], round: bool) {
        let settled: Vec<CheckId> = self
            .persisted
            .undecided
            .iter()
            .filter(|c| {
                self.engine
                    .machine(c)
                    .is_some_and(|m| m.decision().is_some())
            })
            .cloned()
            .collect();
        for check in settled {
            self.persisted.undecided.remove(&check);
            self.audit_decided(now, &check);
        }
        let p = &mut self.persisted;
        p.pending
            .extend(transitions.iter().map(|t| t.check.clone()));
        let mut done = Vec::new();
        for check in &p.pending {
            let Some(m) = self.engine.machine(check) else {
                done.push(check.clone());
                continue;
            };
            let want = outcome_of(m.state());
            let cert = self
                .engine
                .verdict(check)
                .and_then(|v| v.certificate.as_ref())
                .filter(|c| c.outcome == want);
            let (Basis::Decided, Some(cert)) = (m.basis(), cert) else {
                continue;
            };
            let ballots = shared_wires(&mut p.wires, cert);
            let decision = Decision {
                state: m.state(),
                since: m.since(),
                last_transition: m.last_transition(),
                ballots,
            };
            p.decisions.insert(check.clone(), decision);
            done.push(check.clone());
            p.unsaved = true;
        }
        for check in done {
            p.pending.remove(&check);
        }
        if !(round && p.unsaved) {
            return;
        }
        // Every decision the current tally still proves takes the current certificate, so
        // the file holds about one round's ballots instead of one set per moment of decision.
        for (check, d) in &mut p.decisions {
            let cert = self
                .engine
                .verdict(check)
                .and_then(|v| v.certificate.as_ref())
                .filter(|c| c.outcome == outcome_of(d.state));
            if let Some(cert) = cert {
                d.ballots = shared_wires(&mut p.wires, cert);
            }
        }
        // Forget the wire bytes no decision refers to any more.
        p.wires.retain(|_, w| Arc::strong_count(w) > 1);
        p.unsaved = false;
        if let Some(w) = &p.writer {
            w.submit(now, p.decisions.clone());
        }
    }

    /// Appends a `decided` record: an undecided check's first quorum verdict (its health
    /// answer changes from UNDECIDED). Like a transition, it carries its certificate.
    fn audit_decided(&mut self, now: UnixMillis, check: &CheckId) {
        let (Some(log), Some(m)) = (self.audit.as_ref(), self.engine.machine(check)) else {
            return;
        };
        let Some(cert) = self
            .engine
            .verdict(check)
            .and_then(|v| v.certificate.as_ref())
        else {
            return;
        };
        let body = serde_json::json!({
            "check": check.as_str(),
            "from": "undecided",
            "to": m.state().as_str(),
            "certificate": STANDARD.encode(cert.to_bytes()),
            "certificate_sha256": cert.digest_hex(),
        });
        tracing::info!(check = %check, to = m.state().as_str(), certificate = %cert.digest_hex(), "undecided check decided");
        if let Err(e) = audit::append_shared(log, now, "decided", body) {
            metrics::counter!(t::AUDIT_ERRORS).increment(1);
            tracing::error!(error = %e, check = %check, "could not persist the first decision to the audit log");
        }
    }

    /// Uses `log` for decision records from now on.
    pub fn set_audit(&mut self, log: SharedAudit) {
        self.audit = Some(log);
    }

    /// Appends the transition to the audit log. Called with the node lock held, so no health
    /// answer reflects the new state before its record is on disk. A failed append does not
    /// stop the data-plane answer (that would override the quorum) but is logged and counted.
    fn audit_transition(&mut self, now: UnixMillis, tr: &Transition) {
        let Some(log) = self.audit.as_ref() else {
            return;
        };
        let body = serde_json::json!({
            "check": tr.check.as_str(),
            "from": tr.from.as_str(),
            "to": tr.to.as_str(),
            "rounds": tr.rounds,
            "certificate": STANDARD.encode(tr.certificate.to_bytes()),
            "certificate_sha256": tr.certificate.digest_hex(),
        });
        if let Err(e) = audit::append_shared(log, now, "transition", body) {
            metrics::counter!(t::AUDIT_ERRORS).increment(1);
            tracing::error!(error = %e, check = %tr.check, "could not persist the transition to the audit log");
        }
    }

    /// Validates a ballot from `source` (a peer address, `self`, or `pull:<peer>`), counting
    /// the result. Never panics on any input.
    pub fn receive(
        &mut self,
        now: UnixMillis,
        wire: &[u8],
        source: &str,
    ) -> Result<Accepted, Rejection> {
        let result = self.engine.handle_ballot(now, wire);
        match &result {
            Ok(Accepted::New(v)) => {
                metrics::counter!(t::BALLOTS_ACCEPTED, "from" => v.ballot.agent().to_string())
                    .increment(1);
            }
            Ok(Accepted::Duplicate) => {}
            Err(rejection) => {
                self.reject_transport(rejection.reason(), format!("{rejection} (from {source})"));
            }
        }
        result
    }

    /// Counts a refused ballot: by the book, or before parsing (e.g. an oversized HTTP body).
    pub fn reject_transport(&mut self, reason: &'static str, detail: String) {
        metrics::counter!(t::BALLOTS_REJECTED, "reason" => reason).increment(1);
        *self.rejected.entry(reason).or_default() += 1;
        tracing::info!(reason, %detail, "ballot rejected");
        self.last_rejection = Some(format!("{reason}: {detail}"));
    }

    /// What `/v1/health/{check}` answers: the decided state (`None` while undecided) and a
    /// one-line explanation. `None` for an unknown check.
    #[must_use]
    pub fn health(&self, check: &CheckId) -> Option<Health> {
        let m = self.engine.machine(check)?;
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
            decision: m.decision(),
            basis: m.basis(),
            detail: format!(
                "{check} decision={} since_ms={} quorum={}/{} {tally}",
                m.basis().as_str(),
                m.since().0,
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

    /// The `/v1/status` document.
    #[must_use]
    pub fn status(&self, now: UnixMillis) -> StatusDoc {
        let cfg = &self.cfg;
        let book = self.engine.book();
        let skew = cfg.shared.cluster.max_clock_skew_ms;
        let members = cfg
            .shared
            .members
            .iter()
            .map(|m| MemberStatus {
                id: m.id.to_string(),
                region: m.region.clone(),
                url: m.url.to_string(),
                is_self: m.id == cfg.local.agent_id,
                ballot: book.latest(&m.id).map(|v| BallotSummary {
                    seq: v.ballot.seq(),
                    issued_at_ms: v.ballot.issued_at().0,
                    expires_at_ms: v.ballot.expires_at().0,
                    live: v.ballot.is_live_at(now, skew),
                }),
                last_push: self.last_push.get(&m.id).cloned(),
            })
            .collect();
        let checks = cfg
            .shared
            .checks
            .iter()
            .filter_map(|c| self.check_status(c, now))
            .collect();
        StatusDoc {
            gates: Vec::new(),
            agent: cfg.local.agent_id.to_string(),
            region: cfg
                .member(&cfg.local.agent_id)
                .map(|m| m.region.clone())
                .unwrap_or_default(),
            cluster: cfg.shared.cluster.name.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            config_digest: cfg.digest.to_hex(),
            now_ms: now.0,
            members_total: book.membership().len(),
            quorum: book.membership().quorum(),
            ready: self.ready,
            rounds: self.rounds,
            abstaining: self.abstain_cause(now).map(|c| c.describe()),
            controls: self
                .controls
                .iter()
                .map(|(id, c)| ControlStatus {
                    id: id.clone(),
                    healthy: c.last.healthy,
                    reason: c.last.reason.to_string(),
                    consecutive_failures: c.consecutive_failures,
                    observed_at_ms: c.observed_at.0,
                })
                .collect(),
            members,
            checks,
            rejected: self
                .rejected
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            last_rejection: self.last_rejection.clone(),
        }
    }

    fn check_status(&self, c: &config::CheckConfig, now: UnixMillis) -> Option<CheckStatus> {
        let m = self.engine.machine(&c.id)?;
        let skew = self.cfg.shared.cluster.max_clock_skew_ms;
        let observations = self
            .engine
            .book()
            .iter()
            .filter_map(|v| {
                let o = v.ballot.observation(&c.id)?;
                Some((
                    v.ballot.agent().to_string(),
                    ObservationStatus {
                        status: o.status.as_str().to_owned(),
                        reason: o.reason.to_string(),
                        latency_ms: o.latency_ms,
                        observed_at_ms: o.observed_at.0,
                        lag_ms: o.lag_ms,
                        detail: o.detail.clone(),
                        live: v.ballot.is_live_at(now, skew),
                    },
                ))
            })
            .collect();
        let tally = self.engine.verdict(&c.id).map(|v| TallyStatus {
            outcome: v.outcome.as_str().to_owned(),
            healthy: v.healthy,
            unhealthy: v.unhealthy,
            abstain: v.abstain,
            at_ms: v.at.0,
            certificate: v
                .certificate
                .as_ref()
                .map(|cert| STANDARD.encode(cert.to_bytes())),
            certificate_sha256: v.certificate.as_ref().map(quorum::Certificate::digest_hex),
        });
        Some(CheckStatus {
            id: c.id.to_string(),
            kind: c.probe.kind().to_owned(),
            decision: m.decision().map_or("undecided", State::as_str).to_owned(),
            basis: m.basis().as_str().to_owned(),
            since_ms: m.since().0,
            transitions: m.transitions(),
            pending_rounds: m.pending_rounds(),
            tally,
            observations,
        })
    }
}

/// A certificate's ballots as wire bytes, one shared copy per ballot across decisions.
fn shared_wires(
    wires: &mut BTreeMap<(AgentId, u64), Arc<[u8]>>,
    cert: &quorum::Certificate,
) -> Vec<Arc<[u8]>> {
    cert.ballots
        .iter()
        .map(|b| {
            let key = (b.ballot.agent().clone(), b.ballot.seq());
            Arc::clone(
                wires
                    .entry(key)
                    .or_insert_with(|| Arc::from(b.signed.to_wire())),
            )
        })
        .collect()
}

/// Adds this ballot's abstaining votes to `quorumgate_abstentions_total{reason}`.
fn count_abstentions(votes: &[Observation]) {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for v in votes.iter().filter(|v| v.status == Status::Abstain) {
        *counts.entry(v.reason.as_str()).or_default() += 1;
    }
    for (reason, n) in counts {
        metrics::counter!(t::ABSTENTIONS, "reason" => reason.to_owned()).increment(n);
    }
}

fn abstain(o: &Observation, reason: Reason, why: &str) -> Observation {
    let mut a = o
        .clone()
        .with_detail(format!("{why}; saw {} {}", o.reason, o.detail));
    a.status = Status::Abstain;
    a.reason = reason;
    a
}

fn drilled(o: &Observation, d: &DrillVote) -> Observation {
    let mut v = o.clone().with_detail(format!(
        "drill {} of gate {} by {}; saw {} {}",
        d.seq, d.gate, d.by, o.reason, o.detail
    ));
    v.status = Status::Unhealthy;
    v.reason = Reason::from_static("drill");
    v
}

fn outcome_of(s: State) -> Outcome {
    match s {
        State::Healthy => Outcome::Healthy,
        State::Unhealthy => Outcome::Unhealthy,
    }
}

fn state_gauge(s: State) -> f64 {
    match s {
        State::Healthy => 1.0,
        State::Unhealthy => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::keys;

    const T0: UnixMillis = UnixMillis(1_700_000_000_000);

    fn single_member(control: bool) -> (Arc<Config>, SigningKey) {
        let key = SigningKey::from_bytes(&[7; 32]);
        let control = if control {
            "[[local.control]]\nid = \"vpc\"\ntimeout = \"100ms\"\n[local.control.tcp]\naddress = \"127.0.0.1:9\"\n"
        } else {
            ""
        };
        let toml = format!(
            r#"[cluster]
name = "t"
round_interval = "1s"
ballot_valid_for = "4s"
peer_timeout = "500ms"
allow_single_member = true
[[members]]
id = "solo"
region = "r"
url = "http://127.0.0.1:1/"
public_key = "{}"
[[checks]]
id = "app"
interval = "1s"
timeout = "500ms"
fall_after = 2
rise_after = 2
hold_down = "1s"
[checks.http]
url = "http://127.0.0.1:1/healthz"
[local]
agent_id = "solo"
key_file = "/nonexistent"
{control}"#,
            keys::public_key_base64(&key.verifying_key())
        );
        (
            Arc::new(Config::from_toml_str(&toml).expect("valid test config")),
            key,
        )
    }

    fn app() -> CheckId {
        CheckId::new("app").expect("id")
    }

    fn outcome(healthy: bool) -> ProbeOutcome {
        let reason = if healthy { "ok" } else { "status" };
        ProbeOutcome {
            healthy,
            reason: Reason::from_static(reason),
            latency: Duration::from_millis(3),
            detail: String::new(),
            lag_ms: None,
        }
    }

    fn own_vote(node: &Node) -> Observation {
        let v = node
            .engine
            .book()
            .latest(&AgentId::new("solo").expect("id"))
            .expect("own ballot counted");
        v.ballot.observation(&app()).expect("vote for app").clone()
    }

    #[test]
    fn no_result_yet_is_an_abstention() {
        let (cfg, key) = single_member(false);
        let mut node = Node::new(cfg, T0);
        node.round(T0, &key);
        let vote = own_vote(&node);
        assert_eq!(
            (vote.status, vote.reason.as_str()),
            (Status::Abstain, "no_data")
        );
    }

    #[test]
    fn a_stale_result_is_an_abstention() {
        let (cfg, key) = single_member(false);
        let mut node = Node::new(cfg, T0);
        node.record_check(app(), &outcome(false), T0, false);
        // 2 intervals + timeout + one round: 3.5 s; a little more makes it stale.
        node.round(T0.plus(3_600), &key);
        let vote = own_vote(&node);
        assert_eq!(
            (vote.status, vote.reason.as_str()),
            (Status::Abstain, "stale")
        );
    }

    #[test]
    fn failing_control_probes_turn_accusations_into_abstentions_only() {
        let (cfg, key) = single_member(true);
        let mut node = Node::new(cfg, T0);
        node.record_control("vpc".to_owned(), outcome(false), T0);
        node.record_check(app(), &outcome(false), T0, false);
        node.round(T0, &key);
        let vote = own_vote(&node);
        assert_eq!(
            (vote.status, vote.reason.as_str()),
            (Status::Abstain, "control_failed")
        );
        assert!(vote.detail.contains("saw status"), "{}", vote.detail);

        node.record_check(app(), &outcome(true), T0.plus(1_000), false);
        node.round(T0.plus(1_000), &key);
        assert_eq!(
            own_vote(&node).status,
            Status::Healthy,
            "a healthy observation is still a vote"
        );

        node.record_control("vpc".to_owned(), outcome(true), T0.plus(2_000));
        node.record_check(app(), &outcome(false), T0.plus(2_000), false);
        node.round(T0.plus(2_000), &key);
        assert_eq!(
            own_vote(&node).status,
            Status::Unhealthy,
            "control recovered: accuse again"
        );
    }

    fn timeout() -> ProbeOutcome {
        ProbeOutcome::unhealthy("timeout", Duration::from_millis(500), "")
    }

    #[test]
    fn starvation_abstains_on_every_check_for_two_rounds() {
        let (cfg, key) = single_member(false);
        let mut node = Node::new(cfg, T0);
        node.record_starved(T0);
        node.record_check(app(), &outcome(false), T0.plus(1_000), false);
        node.round(T0.plus(1_000), &key);
        assert_eq!(own_vote(&node).reason.as_str(), "starved");
        node.record_check(app(), &outcome(false), T0.plus(3_000), false);
        node.round(T0.plus(3_000), &key);
        assert_eq!(own_vote(&node).status, Status::Unhealthy);
    }

    #[test]
    fn a_late_run_abstains_on_its_check_only_and_a_timeout_stays_a_vote() {
        let (cfg, key) = single_member(false);
        let mut node = Node::new(cfg, T0);
        // A hung target: the run timed out, late or not, and that is what the vote says.
        node.record_check(app(), &timeout(), T0, true);
        node.round(T0, &key);
        let vote = own_vote(&node);
        assert_eq!(
            (vote.status, vote.reason.as_str()),
            (Status::Unhealthy, "timeout")
        );
        assert!(
            node.status(T0).abstaining.is_none(),
            "no agent-wide abstention"
        );
        // Another failure from a run that started late: this check abstains, nothing else.
        node.record_check(app(), &outcome(false), T0.plus(1_000), true);
        node.round(T0.plus(1_000), &key);
        let vote = own_vote(&node);
        assert_eq!(
            (vote.status, vote.reason.as_str()),
            (Status::Abstain, "overrun")
        );
        assert!(node.status(T0.plus(1_000)).abstaining.is_none());
        // A healthy result from a late run is still a Healthy vote.
        node.record_check(app(), &outcome(true), T0.plus(2_000), true);
        node.round(T0.plus(2_000), &key);
        assert_eq!(own_vote(&node).status, Status::Healthy);
    }

    #[test]
    fn a_local_resource_failure_is_never_an_accusation() {
        let (cfg, key) = single_member(false);
        let mut node = Node::new(cfg, T0);
        let emfile = ProbeOutcome::unhealthy(
            local_resource::REASON,
            Duration::from_millis(1),
            "connecting to 127.0.0.1:80: Too many open files (os error 24)",
        );
        node.record_check(app(), &emfile, T0, false);
        node.round(T0, &key);
        let vote = own_vote(&node);
        assert_eq!(
            (vote.status, vote.reason.as_str()),
            (Status::Abstain, "local_resource")
        );
        // For two rounds every accusation is withheld, whatever the probe saw next.
        node.record_check(app(), &outcome(false), T0.plus(1_000), false);
        node.round(T0.plus(1_000), &key);
        assert_eq!(own_vote(&node).reason.as_str(), "local_resource");
        let abstaining = node.status(T0.plus(1_000)).abstaining.expect("abstaining");
        assert!(abstaining.contains("Too many open files"), "{abstaining}");
        // A peer call failing the same way counts too.
        node.record_local_resource(T0.plus(1_500), "push to b: os error 24".to_owned());
        node.record_check(app(), &outcome(false), T0.plus(3_000), false);
        node.round(T0.plus(3_000), &key);
        assert_eq!(own_vote(&node).reason.as_str(), "local_resource");
        node.record_check(app(), &outcome(false), T0.plus(4_000), false);
        node.round(T0.plus(4_000), &key);
        assert_eq!(
            own_vote(&node).status,
            Status::Unhealthy,
            "over: accuse again"
        );
    }

    #[test]
    fn a_changed_vote_is_due_for_publication_and_decides_early() {
        let (cfg, key) = single_member(false);
        let mut node = Node::new(cfg, T0);
        assert!(node.record_check(app(), &outcome(true), T0, false));
        node.round(T0, &key);
        assert!(!node.publish_due(), "a round publishes everything");
        assert!(
            !node.record_check(app(), &outcome(true), T0.plus(300), false),
            "the same vote again changes nothing"
        );
        assert!(!node.publish_due());
        assert!(node.record_check(app(), &outcome(false), T0.plus(400), false));
        assert!(node.publish_due());
        node.publish(T0.plus(410), &key);
        assert!(!node.publish_due());
        assert_eq!(own_vote(&node).status, Status::Unhealthy);
        // fall_after = 2: the early ballot counted the next round, its tick only confirms it,
        // and the round after decides.
        node.round(T0.plus(1_000), &key);
        assert_eq!(
            node.health(&app()).expect("check").decision,
            Some(State::Healthy)
        );
        node.round(T0.plus(2_000), &key);
        assert_eq!(
            node.health(&app()).expect("check").decision,
            Some(State::Unhealthy)
        );
    }

    #[test]
    fn a_drilled_check_votes_unhealthy_unless_real_or_abstaining() {
        let (cfg, key) = single_member(true);
        let mut node = Node::new(cfg, T0);
        let board = DrillBoard::default();
        node.set_drill_board(board.clone());
        board.set(
            app(),
            DrillVote {
                gate: quorum::GateId::new("app").expect("gate"),
                by: quorum::OperatorId::new("alice").expect("op"),
                seq: 7,
                until: T0.plus(2_500),
            },
        );
        node.record_check(app(), &outcome(true), T0, false);
        node.round(T0, &key);
        let vote = own_vote(&node);
        assert_eq!(
            (vote.status, vote.reason.as_str()),
            (Status::Unhealthy, "drill")
        );
        assert!(
            vote.detail.contains("drill 7 of gate app by alice; saw ok"),
            "{}",
            vote.detail
        );

        node.record_check(app(), &outcome(false), T0.plus(1_000), false);
        node.round(T0.plus(1_000), &key);
        let vote = own_vote(&node);
        assert_eq!(
            (vote.status, vote.reason.as_str()),
            (Status::Unhealthy, "status"),
            "a real failure stays real"
        );

        node.record_control("vpc".to_owned(), outcome(false), T0.plus(2_000));
        node.record_check(app(), &outcome(true), T0.plus(2_000), false);
        node.round(T0.plus(2_000), &key);
        assert_eq!(
            own_vote(&node).reason.as_str(),
            "control_failed",
            "an agent that cannot see does not accuse, not even for a drill"
        );

        node.record_control("vpc".to_owned(), outcome(true), T0.plus(3_000));
        node.record_check(app(), &outcome(true), T0.plus(3_000), false);
        node.round(T0.plus(3_000), &key);
        assert_eq!(own_vote(&node).status, Status::Healthy, "the drill is over");
    }

    #[test]
    fn rounds_decide_after_fall_after_and_report_the_transition() {
        let (cfg, key) = single_member(false);
        let mut node = Node::new(cfg, T0);
        let mut transitions = Vec::new();
        for i in 0..3 {
            let now = T0.plus(i * 1_000);
            node.record_check(app(), &outcome(false), now, false);
            transitions.push(node.round(now, &key).1.len());
        }
        assert_eq!(transitions, [0, 1, 0], "fall_after = 2 rounds, then hold");
        let h = node.health(&app()).expect("known check");
        assert_eq!(
            (h.decision, h.basis),
            (Some(State::Unhealthy), Basis::Decided)
        );
        assert!(h.detail.contains("quorum=1/1"), "{}", h.detail);
        let status = node.status(T0.plus(2_000));
        assert_eq!(status.checks[0].decision, "unhealthy");
        assert_eq!(status.checks[0].transitions, 1);
        assert!(status.checks[0]
            .tally
            .as_ref()
            .and_then(|t| t.certificate.as_ref())
            .is_some());
    }

    #[test]
    fn garbage_and_transport_rejections_are_counted() {
        let (cfg, _) = single_member(false);
        let mut node = Node::new(cfg, T0);
        assert!(node.receive(T0, b"\x00\x01garbage", "test").is_err());
        node.reject_transport("too_large", "declared 99 bytes".to_owned());
        let s = node.status(T0);
        assert_eq!(s.rejected.get("decode"), Some(&1));
        assert_eq!(s.rejected.get("too_large"), Some(&1));
    }
}
