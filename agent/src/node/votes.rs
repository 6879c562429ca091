//! Observations into votes: abstentions (per check and agent-wide), drills, and when a changed
//! vote is due for an early ballot.

use std::collections::BTreeMap;

use quorum::{CheckId, Observation, Reason, Status, UnixMillis};

use super::{ControlState, Node, Seen};
use crate::drill::{DrillBoard, DrillVote};
use crate::local_resource;
use crate::probe::ProbeOutcome;
use crate::telemetry as t;

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

impl Node {
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
    pub(super) fn votes(&self, now: UnixMillis) -> Vec<Observation> {
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
}

/// Adds this ballot's abstaining votes to `quorumgate_abstentions_total{reason}`.
pub(super) fn count_abstentions(votes: &[Observation]) {
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
