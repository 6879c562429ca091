//! One gate as a pure state machine: events in, actions out; no I/O, no clock, no tasks.
//!
//! The agent's gate driver is a shell around one [`GateMachine`] per gate: it feeds each
//! round's decisions and every I/O result in as an [`Event`] and executes the [`Action`]s the
//! machine queues ([`GateMachine::poll_action`]), in order — the shape of quinn-proto's
//! `Connection` or raft-rs's `Ready`/`advance`. The deterministic simulation
//! (`quorum/tests/simulation.rs`) runs whole clusters of these machines against a simulated
//! Route 53; the agent runs them against the real one.
//!
//! A live change, step by step (each arrow is an action and the event that answers it):
//!
//! ```text
//! Round ─ evaluate ─► Change(c) ─► Append(Decision c)   ──Appended──► Plan(to, epoch, stagger)
//!   ──Planned(Write)──► Append(Write batch)  ──Appended──► Commit(batch)
//!   ──Committed──► Applied / Won (our fence found after a lost response): commit, Append(Outcome),
//!                  [failover to a promotable secondary] Append(Promote) ──Appended──► Promote
//!                  ──Promoted──► Append(PromoteOutcome)
//!                  AlreadyInPlace: commit; Stale / LostRace: re-read; error: back off, re-read
//! ```
//!
//! Persist before act: an action that depends on an audit record is queued only after that
//! record's [`Event::Appended`] reports it durable; a failed append drops the action (and an
//! operator command is then not applied, and its sequence number not consumed). A write whose
//! result is unknown (timeout, lost response) stays *pending* until a read shows a fence past
//! the epoch it was planned on: if that fence is ours (`by=` this agent, one epoch on, our
//! records), the batch won and the promotion it owes runs, once per epoch.

mod io;
mod restore;

use std::collections::{BTreeMap, BTreeSet};

pub use io::{
    Accepted, Action, AuditRecord, CommandFailure, Committed, Event, Failure, Note, Outcome,
    Planned, Promoted, Records, Token, View,
};
pub use restore::Replayed;

use crate::gate::{
    drill::{precheck, precheck_abort},
    evaluate, DesiredState, DrillEndCause, DrillRefusal, Evaluation, GateKind, GateSpec, GateState,
    Inputs, Mode, PlannedChange,
};
use crate::ids::CheckId;
use crate::operator::{Action as OpAction, ActionError, CommandRejection, OperatorCommand};
use crate::time::UnixMillis;
use crate::{State, VerifiedCommand};

/// Whether the agents write the gate's records (control plane) or Route 53 follows the
/// health checks (data plane: drills only, never a write).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plane {
    Control,
    Data,
}

/// How one gate is driven (from its config and the agent's timing).
#[derive(Clone, Debug)]
pub struct MachineConfig {
    pub spec: GateSpec,
    pub plane: Plane,
    /// This agent's writer id (the fence's `by=`).
    pub me: String,
    /// Whether a won failover to the secondary promotes its database.
    pub promote: bool,
    /// Checks whose Unhealthy decision aborts a drill (the secondary's, `abort_check`).
    pub drill_guards: Vec<CheckId>,
    pub writer_stagger_ms: u64,
    /// Re-read a live gate this often even when nothing happens.
    pub resync_every_ms: u64,
    /// The same while the gate waits for an operator.
    pub resync_on_alert_ms: u64,
    /// After a failed read or write: wait this long, doubling per failure, up to the max.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// How long a request to Route 53 can still arrive after it was sent (the API client's
    /// whole-operation timeout, retries included, with a margin): a batch whose answer was
    /// lost and that no read has shown this long after is taken as never landed.
    pub request_lifetime_ms: u64,
    /// How far two agents' clocks may differ (the fence's times are its writer's).
    pub max_clock_skew_ms: u64,
}

impl MachineConfig {
    /// Whether this agent writes the gate's records.
    #[must_use]
    pub fn live(&self) -> bool {
        self.plane == Plane::Control && self.spec.mode() == Mode::Live
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Backoff {
    failures: u32,
    not_before: UnixMillis,
}

/// Where the gate's one write (or read, or promotion) is.
#[derive(Clone, Debug)]
enum Phase {
    Idle,
    Reading(Token),
    Deciding {
        token: Token,
        change: PlannedChange,
        delay_ms: u64,
    },
    Planning {
        token: Token,
        change: PlannedChange,
    },
    PersistingWrite {
        token: Token,
        plan: Token,
        change: PlannedChange,
        expected_epoch: u64,
    },
    Committing {
        token: Token,
        change: PlannedChange,
        expected_epoch: u64,
    },
    PersistingPromote {
        token: Token,
        epoch: u64,
    },
    Promoting {
        token: Token,
        epoch: u64,
    },
}

/// A batch sent whose result is not known yet.
#[derive(Clone, Debug)]
struct Pending {
    expected_epoch: u64,
    to: DesiredState,
    promote: bool,
    /// When it was sent (`None` after a restart: from the first read on).
    sent_at: Option<UnixMillis>,
}

/// One gate of one agent.
#[derive(Debug)]
pub struct GateMachine {
    cfg: MachineConfig,
    state: GateState,
    epoch: u64,
    synced_at: Option<UnixMillis>,
    phase: Phase,
    backoff: Backoff,
    pending: Vec<Pending>,
    /// Epochs whose promotion ran (or was found done): never twice.
    promoted: BTreeSet<u64>,
    /// Operator commands waiting for their audit record: append token → (command token,
    /// command, received at).
    commands: BTreeMap<Token, (Token, VerifiedCommand, UnixMillis)>,
    last_code: &'static str,
    last_outcome: Option<String>,
    applied: u64,
    inputs: Option<Inputs>,
    alert: bool,
    /// The latest time an event carried (appends and commands are answered at it).
    now: UnixMillis,
    /// Promotions owed by batches this agent won before a restart (the log shows the win,
    /// or a write whose end it never recorded): run once a read shows our fence still there.
    owed: BTreeSet<u64>,
    /// When each recent change landed at the latest (live gates: the velocity history).
    epochs: BTreeMap<u64, UnixMillis>,
    replay: restore::Replay,
    next_token: Token,
    actions: std::collections::VecDeque<Action>,
}

impl GateMachine {
    #[must_use]
    pub fn new(cfg: MachineConfig) -> Self {
        Self {
            state: GateState::new(&cfg.spec),
            cfg,
            epoch: 0,
            synced_at: None,
            phase: Phase::Idle,
            backoff: Backoff::default(),
            pending: Vec::new(),
            promoted: BTreeSet::new(),
            commands: BTreeMap::new(),
            last_code: "starting",
            last_outcome: None,
            applied: 0,
            inputs: None,
            alert: false,
            now: UnixMillis(0),
            owed: BTreeSet::new(),
            epochs: BTreeMap::new(),
            replay: restore::Replay::default(),
            next_token: 1,
            actions: std::collections::VecDeque::new(),
        }
    }

    /// The next action to execute, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    // --- what the shell shows (status) -----------------------------------------------------

    #[must_use]
    pub fn config(&self) -> &MachineConfig {
        &self.cfg
    }
    #[must_use]
    pub fn state(&self) -> &GateState {
        &self.state
    }
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
    /// Whether the gate knows what Route 53 holds (always, for gates that never write).
    #[must_use]
    pub fn synced(&self) -> bool {
        self.synced_at.is_some() || !self.cfg.live()
    }
    /// A read, write or promotion is in flight.
    #[must_use]
    pub fn busy(&self) -> bool {
        !matches!(self.phase, Phase::Idle)
    }
    #[must_use]
    pub fn last_code(&self) -> &'static str {
        self.last_code
    }
    #[must_use]
    pub fn last_outcome(&self) -> Option<&str> {
        self.last_outcome.as_deref()
    }
    /// Changes this agent made (or found made, or simulated).
    #[must_use]
    pub fn applied(&self) -> u64 {
        self.applied
    }
    /// When the next try after a failure may start.
    #[must_use]
    pub fn retry_at(&self) -> Option<UnixMillis> {
        (self.backoff.failures > 0).then_some(self.backoff.not_before)
    }
    /// Whether a batch was sent whose result is not known yet.
    #[must_use]
    pub fn write_pending(&self) -> bool {
        !self.pending.is_empty()
    }
    /// The recent changes by fence epoch, and when each landed at the latest (live gates).
    #[must_use]
    pub fn changes_by_epoch(&self) -> Vec<(u64, UnixMillis)> {
        self.epochs.iter().map(|(e, t)| (*e, *t)).collect()
    }

    /// The gate's checks as the last round saw them.
    #[must_use]
    pub fn inputs(&self) -> Option<&Inputs> {
        self.inputs.as_ref()
    }

    fn token(&mut self) -> Token {
        let t = self.next_token;
        self.next_token += 1;
        t
    }

    fn push(&mut self, a: Action) {
        self.actions.push_back(a);
    }

    fn note(&mut self, n: Note) {
        self.push(Action::Note(n));
    }

    // --- events ----------------------------------------------------------------------------

    /// Feeds one event; then drain [`poll_action`](Self::poll_action).
    pub fn handle(&mut self, event: Event) {
        match &event {
            Event::Round { now, .. }
            | Event::Read { now, .. }
            | Event::Planned { now, .. }
            | Event::Committed { now, .. }
            | Event::Promoted { now, .. }
            | Event::Command { now, .. } => self.now = self.now.max(*now),
            Event::Appended { .. } => {}
        }
        match event {
            Event::Round {
                now,
                inputs,
                rank,
                serving,
            } => self.round(now, inputs, rank, serving),
            Event::Appended { token, result } => self.appended(token, result),
            Event::Read { token, now, result } => {
                if matches!(self.phase, Phase::Reading(t) if t == token) {
                    self.phase = Phase::Idle;
                    self.read_done(now, result);
                }
            }
            Event::Planned { token, now, result } => self.planned(token, now, result),
            Event::Committed { token, now, result } => self.committed(token, now, result),
            Event::Promoted { token, now, result } => self.promoted(token, now, result),
            Event::Command {
                token,
                now,
                command,
            } => {
                if command.command.gate != *self.cfg.spec.id() {
                    let gate = command.command.gate.clone();
                    self.push(Action::CommandDone {
                        token,
                        result: Err(CommandRejection::UnknownGate(gate).into()),
                    });
                    return;
                }
                let append = self.token();
                let record = AuditRecord::OperatorCommand(command.clone());
                self.commands.insert(append, (token, command, now));
                self.push(Action::Append {
                    token: Some(append),
                    record,
                });
            }
        }
    }

    fn round(
        &mut self,
        now: UnixMillis,
        inputs: Inputs,
        rank: usize,
        serving: Option<DesiredState>,
    ) {
        self.drill_tick(&inputs, now);
        if self.cfg.plane == Plane::Data {
            if let Some(serving) = serving.filter(|s| s != self.state.current()) {
                let from = self.state.current().clone();
                self.last_outcome = Some(format!("Route 53 serves {serving}"));
                if let Err(e) = self.state.resync(&self.cfg.spec, serving.clone()) {
                    self.note(Note::Inconsistent(e.to_string()));
                }
                self.note(Note::Serving { from, to: serving });
            }
            self.inputs = Some(inputs);
            self.drill_finish(now);
            return;
        }
        if self.busy() || now < self.backoff.not_before {
            self.inputs = Some(inputs);
            return;
        }
        // A dry-run drill simulates from the state it started in: no re-read until it ends.
        let due = self.cfg.live() && !self.state.drill_dry_run() && self.needs_sync(now);
        if due && self.synced_at.is_none() {
            // Never read (start-up, a lost race, an error): read before deciding anything.
            self.start_read();
            self.inputs = Some(inputs);
            return;
        }
        let eval = evaluate(&self.cfg.spec, &self.state, &inputs, now);
        self.note_evaluation(&eval);
        if let Evaluation::Change(change) = &eval {
            self.decide(change.clone(), now, rank);
        }
        self.state.observe(&self.cfg.spec, &inputs, &eval, now);
        self.inputs = Some(inputs);
        if !self.busy() {
            self.drill_finish(now);
        }
        // The periodic re-read comes after this round's decision, so it never delays one.
        if due && !self.busy() {
            self.start_read();
        }
    }

    fn needs_sync(&self, now: UnixMillis) -> bool {
        // A gate waiting for an operator must show what is really in Route 53 (another agent
        // may have acted already), so it re-reads more often.
        let every = if self.state.last_hold().is_some_and(|(h, _)| h.is_alert()) {
            self.cfg.resync_on_alert_ms
        } else {
            self.cfg.resync_every_ms
        };
        self.synced_at.is_none_or(|at| now.since(at) >= every)
    }

    fn start_read(&mut self) {
        let token = self.token();
        self.phase = Phase::Reading(token);
        self.push(Action::Read { token });
    }

    fn note_evaluation(&mut self, eval: &Evaluation) {
        let code = eval.code();
        let alert = matches!(eval, Evaluation::Hold(h) if h.is_alert());
        if alert != self.alert {
            self.alert = alert;
            self.push(Action::SetAlert(alert));
        }
        if code != self.last_code {
            let detail = match eval {
                Evaluation::Hold(h) => h.to_string(),
                Evaluation::Change(c) => format!("{} → {}", c.from, c.to),
            };
            self.note(Note::Evaluation {
                code,
                previous: self.last_code,
                hold: matches!(eval, Evaluation::Hold(_)),
                alert,
                detail,
            });
            self.last_code = code;
        }
    }

    /// A planned change: persist the decision first; act on it once it is durable.
    fn decide(&mut self, change: PlannedChange, _now: UnixMillis, rank: usize) {
        let token = self.token();
        let rank = u64::try_from(rank).unwrap_or(u64::MAX);
        let delay_ms = self.cfg.writer_stagger_ms.saturating_mul(rank);
        self.push(Action::Append {
            token: Some(token),
            record: AuditRecord::Decision {
                change: change.clone(),
                based_on_epoch: self.epoch,
            },
        });
        self.phase = Phase::Deciding {
            token,
            change,
            delay_ms,
        };
    }

    fn appended(&mut self, token: Token, result: Result<(), Failure>) {
        if let Some((cmd_token, command, at)) = self.commands.remove(&token) {
            self.command_appended(cmd_token, command, at, result);
            return;
        }
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Deciding {
                token: t,
                change,
                delay_ms,
            } if t == token => self.decision_persisted(change, delay_ms, result),
            Phase::PersistingWrite {
                token: t,
                plan,
                change,
                expected_epoch,
            } if t == token => match result {
                Ok(()) => {
                    self.pending.push(Pending {
                        expected_epoch,
                        to: change.to.clone(),
                        promote: self.promotes(&change),
                        sent_at: Some(self.now),
                    });
                    let token = self.token();
                    self.phase = Phase::Committing {
                        token,
                        change,
                        expected_epoch,
                    };
                    self.push(Action::Commit { token, plan });
                }
                Err(error) => {
                    // Nothing was sent: the batch is dropped and the next round decides anew.
                    self.note(Note::NotPersisted {
                        what: "gate_write",
                        error: error.clone(),
                    });
                    self.write_failed(change.to, error, self.now);
                }
            },
            Phase::PersistingPromote { token: t, epoch } if t == token => match result {
                Ok(()) => {
                    let token = self.token();
                    self.phase = Phase::Promoting { token, epoch };
                    self.push(Action::Promote { token, epoch });
                }
                Err(error) => {
                    let result = Err(Failure::new(
                        "audit",
                        format!("not persisted, not started: {error}"),
                    ));
                    self.promote_ended(epoch, result);
                }
            },
            other => self.phase = other,
        }
    }

    fn decision_persisted(
        &mut self,
        change: PlannedChange,
        delay_ms: u64,
        result: Result<(), Failure>,
    ) {
        if let Err(error) = result {
            self.note(Note::NotPersisted {
                what: "gate_decision",
                error,
            });
            return;
        }
        self.note(Note::Decided {
            change: change.clone(),
            epoch: self.epoch,
        });
        // A dry-run drill makes a live gate's changes dry runs too (`change.mode`).
        if !self.cfg.live() || change.mode == Mode::DryRun {
            // The change is logged and audited; the simulated DNS moves on.
            if let Err(e) = self.state.commit(&self.cfg.spec, &change, self.now) {
                self.note(Note::Inconsistent(format!("dry-run commit: {e}")));
                return;
            }
            self.applied += 1;
            self.last_outcome = Some(format!("dry-run: would set {}", change.to));
            self.push(Action::Append {
                token: None,
                record: AuditRecord::Outcome {
                    to: change.to.clone(),
                    result: Outcome::DryRun,
                },
            });
            self.note(Note::WriteEnded {
                to: change.to,
                outcome: Outcome::DryRun,
            });
            return;
        }
        let token = self.token();
        self.push(Action::Plan {
            token,
            to: change.to.clone(),
            expected_epoch: self.epoch,
            delay_ms,
            history: self.fence_history(),
        });
        self.phase = Phase::Planning { token, change };
    }

    fn planned(&mut self, token: Token, now: UnixMillis, result: Result<Planned, Failure>) {
        let Phase::Planning { token: t, change } = std::mem::replace(&mut self.phase, Phase::Idle)
        else {
            return;
        };
        if t != token {
            self.phase = Phase::Planning { token: t, change };
            return;
        }
        match result {
            Err(error) => self.write_failed(change.to, error, now),
            Ok(Planned::Write {
                expected_epoch,
                next_epoch,
            }) => {
                let append = self.token();
                self.push(Action::Append {
                    token: Some(append),
                    record: AuditRecord::Write {
                        plan: token,
                        expected_epoch,
                        next_epoch,
                        to: change.to.clone(),
                        promote: self.promotes(&change),
                    },
                });
                self.phase = Phase::PersistingWrite {
                    token: append,
                    plan: token,
                    change,
                    expected_epoch,
                };
            }
            Ok(Planned::Nothing(view)) => {
                let expected = self.epoch;
                self.finish_view(&change, expected, view, Vec::new(), now);
            }
        }
    }

    fn committed(&mut self, token: Token, now: UnixMillis, result: Result<Committed, Failure>) {
        let Phase::Committing {
            token: t,
            change,
            expected_epoch,
        } = std::mem::replace(&mut self.phase, Phase::Idle)
        else {
            return;
        };
        if t != token {
            self.phase = Phase::Committing {
                token: t,
                change,
                expected_epoch,
            };
            return;
        }
        match result {
            Ok(Committed::Accepted(a)) => {
                let epoch = a.epoch;
                self.resolve_pending(epoch);
                self.changed(&change, epoch, &[(epoch, now)], Outcome::Applied(a), now);
            }
            Ok(Committed::Rejected { view, messages }) => {
                self.finish_view(&change, expected_epoch, view, messages, now);
            }
            // The batch may have landed: it stays pending until a read tells.
            Err(error) => self.write_failed(change.to, error, now),
        }
    }

    /// A write ended without an acceptance: judge it by what Route 53 holds.
    fn finish_view(
        &mut self,
        change: &PlannedChange,
        expected_epoch: u64,
        view: View,
        messages: Vec<String>,
        now: UnixMillis,
    ) {
        let ours = view.shows_our_batch(&self.cfg.me, expected_epoch, &change.to);
        let epoch = view.epoch;
        if view.epoch > expected_epoch {
            self.resolve_pending(view.epoch);
        }
        if ours {
            self.changed(change, epoch, &view.history, Outcome::Won { epoch }, now);
        } else if view.records == Records::State(change.to.clone()) {
            self.changed(
                change,
                epoch,
                &view.history,
                Outcome::AlreadyInPlace { epoch },
                now,
            );
        } else {
            // Someone else moved the fence: read what is there before deciding again.
            let outcome = if messages.is_empty() {
                Outcome::Stale {
                    expected_epoch,
                    current: epoch,
                }
            } else {
                Outcome::LostRace {
                    current: epoch,
                    messages,
                }
            };
            self.last_outcome = Some(format!("{}: re-reading", outcome.label()));
            self.learn(epoch, &view.history, now);
            self.synced_at = None;
            self.end_write(change.to.clone(), outcome);
        }
    }

    fn end_write(&mut self, to: DesiredState, outcome: Outcome) {
        self.push(Action::Append {
            token: None,
            record: AuditRecord::Outcome {
                to: to.clone(),
                result: outcome.clone(),
            },
        });
        self.note(Note::WriteEnded { to, outcome });
    }

    fn write_failed(&mut self, to: DesiredState, error: Failure, now: UnixMillis) {
        self.end_write(to, Outcome::Failed(error.clone()));
        self.fail("write", error, now);
    }

    fn fail(&mut self, what: &'static str, error: Failure, now: UnixMillis) {
        let failures = self.backoff.failures.saturating_add(1);
        let wait = self
            .cfg
            .retry_base_ms
            .saturating_mul(1u64 << failures.saturating_sub(1).min(16))
            .min(self.cfg.retry_max_ms);
        self.backoff = Backoff {
            failures,
            not_before: now.plus(wait),
        };
        self.synced_at = None;
        self.last_outcome = Some(format!("{what} failed: {error}"));
        self.note(Note::Failed {
            what,
            failures,
            retry_in_ms: wait,
            error,
        });
    }

    /// Learns the fence at `epoch` and the changes its history lists. A change counts against
    /// the velocity rule from the latest moment it can have landed, never earlier: the smaller
    /// of when this agent learns of it and when its writer planned it plus a request's
    /// lifetime and the clocks' skew. Live gates keep the history by epoch, so a change is
    /// counted once however many ways it is learnt of, and an agent that missed changes (it
    /// was down, or restarted) learns them from the fence.
    fn learn(&mut self, epoch: u64, history: &[(u64, UnixMillis)], now: UnixMillis) {
        let slack = self
            .cfg
            .request_lifetime_ms
            .saturating_add(self.cfg.max_clock_skew_ms);
        // Only the changes the fence lists count: a write that is no gate change (the records
        // `quorumgate provision` creates) moves the epoch without listing itself.
        let learnt = history
            .iter()
            .map(|(e, planned)| (*e, planned.plus(slack).min(now)));
        for (e, at) in learnt {
            self.epochs
                .entry(e)
                .and_modify(|t| *t = (*t).min(at))
                .or_insert(at);
        }
        self.epoch = epoch;
        self.sync_changes();
    }

    /// The velocity history of a live gate is its history by epoch.
    fn sync_changes(&mut self) {
        if !self.cfg.live() {
            return;
        }
        let keep = usize::try_from(self.cfg.spec.policy().max_changes).unwrap_or(usize::MAX);
        while self.epochs.len() > keep {
            self.epochs.pop_first();
        }
        let mut times: Vec<UnixMillis> = self.epochs.values().copied().collect();
        times.sort_unstable();
        self.state.set_changes(&self.cfg.spec, times);
    }

    /// The changes a new fence carries: the latest this agent knows, by epoch.
    fn fence_history(&self) -> Vec<(u64, UnixMillis)> {
        let keep = usize::try_from(self.cfg.spec.policy().max_changes).unwrap_or(usize::MAX);
        let skip = self.epochs.len().saturating_sub(keep.saturating_sub(1));
        self.epochs
            .iter()
            .skip(skip)
            .map(|(e, t)| (*e, *t))
            .collect()
    }

    /// Forgets pending batches the fence has moved past (`epoch` > their base).
    fn resolve_pending(&mut self, epoch: u64) {
        self.pending.retain(|p| p.expected_epoch >= epoch);
    }

    /// The change is in Route 53 (ours, or found in place): adopt it, audit, maybe promote.
    fn changed(
        &mut self,
        change: &PlannedChange,
        epoch: u64,
        history: &[(u64, UnixMillis)],
        outcome: Outcome,
        now: UnixMillis,
    ) {
        self.synced_at = Some(now);
        self.backoff = Backoff::default();
        self.adopt(change, now);
        self.learn(epoch, history, now);
        self.applied += 1;
        self.last_outcome = Some(format!(
            "{}: {} at epoch {epoch}",
            outcome.label(),
            change.to
        ));
        let won = matches!(outcome, Outcome::Applied(_) | Outcome::Won { .. });
        self.end_write(change.to.clone(), outcome);
        if won && self.promotes(change) {
            self.start_promote(epoch);
        }
    }

    fn adopt(&mut self, change: &PlannedChange, now: UnixMillis) {
        let spec = &self.cfg.spec;
        let result = if *self.state.current() == change.from {
            self.state
                .commit(spec, change, now)
                .map_err(|e| e.to_string())
        } else {
            self.state
                .resync(spec, change.to.clone())
                .map_err(|e| e.to_string())
        };
        if let Err(e) = result {
            self.note(Note::Inconsistent(format!("adopting {}: {e}", change.to)));
        }
    }

    /// Whether winning `change` owes a promotion: a failover pair with `[promote]` moving to
    /// its secondary. (A drill's move is checked when the promotion would start.)
    fn promotes(&self, change: &PlannedChange) -> bool {
        self.cfg.promote && moves_to_secondary(&self.cfg.spec, &change.from, &change.to)
    }

    fn start_promote(&mut self, epoch: u64) {
        if self.promoted.contains(&epoch) {
            return;
        }
        if self.state.drill().is_some() {
            // A drill practises DNS only: re-seeding a promoted database is no drill.
            self.promoted.insert(epoch);
            self.note(Note::DrillNoPromotion { epoch });
            return;
        }
        let token = self.token();
        self.phase = Phase::PersistingPromote { token, epoch };
        self.push(Action::Append {
            token: Some(token),
            record: AuditRecord::Promote { epoch },
        });
    }

    fn promoted(&mut self, token: Token, _now: UnixMillis, result: Result<Promoted, Failure>) {
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Promoting { token: t, epoch } if t == token => self.promote_ended(epoch, result),
            other => self.phase = other,
        }
    }

    /// A promotion ended (or could not start): audited; a failure is an alert for an
    /// operator, never retried behind their back.
    fn promote_ended(&mut self, epoch: u64, result: Result<Promoted, Failure>) {
        self.promoted.insert(epoch);
        self.last_outcome = Some(match &result {
            Ok(Promoted::Started) => "promote started".to_owned(),
            Ok(Promoted::AlreadyDone(why)) => format!("promote already_done: {why}"),
            Err(e) => format!("promote error: {e}"),
        });
        self.push(Action::Append {
            token: None,
            record: AuditRecord::PromoteOutcome {
                epoch,
                result: result.clone(),
            },
        });
        self.note(Note::PromoteEnded { epoch, result });
    }

    fn read_done(&mut self, now: UnixMillis, result: Result<View, Failure>) {
        let view = match result {
            Ok(v) => v,
            Err(error) => return self.fail("sync", error, now),
        };
        self.synced_at = Some(now);
        self.backoff = Backoff::default();
        // A batch whose result was lost: the fence tells whether it won.
        let won = self
            .pending
            .iter()
            .find(|p| view.shows_our_batch(&self.cfg.me, p.expected_epoch, &p.to))
            .cloned();
        if view.epoch > 0 {
            self.resolve_pending(view.epoch);
        }
        // Not landed long after it was sent: it never will.
        let lifetime = self.cfg.request_lifetime_ms;
        self.pending.retain_mut(|p| {
            let sent = *p.sent_at.get_or_insert(now);
            now.since(sent) <= lifetime
        });
        match &view.records {
            Records::State(current) => {
                if self.state.current() != current {
                    self.note(Note::Resynced {
                        was: self.state.current().clone(),
                        now: current.clone(),
                        epoch: view.epoch,
                    });
                    let spec = &self.cfg.spec;
                    if let Err(e) = self.state.resync(spec, current.clone()) {
                        self.note(Note::Inconsistent(format!("records read back: {e}")));
                    }
                }
            }
            Records::Empty => self.note(Note::RecordsMissing),
            Records::Foreign => self.note(Note::RecordsForeign),
        }
        self.learn(view.epoch, &view.history, now);
        let ours_now = view.by.as_deref() == Some(self.cfg.me.as_str());
        if let Some(p) = won {
            let epoch = view.epoch;
            self.applied += 1;
            self.last_outcome = Some(format!("won: {} at epoch {epoch}", p.to));
            self.end_write(p.to.clone(), Outcome::Won { epoch });
            if p.promote {
                self.owed.insert(epoch);
            }
        }
        // A promotion is owed only while the fence still shows the batch that won it.
        self.owed.retain(|e| ours_now && *e == view.epoch);
        if let Some(epoch) = self.owed.pop_first() {
            self.start_promote(epoch);
        }
    }

    // --- operator commands -----------------------------------------------------------------

    /// Whether `c` may be applied now by this agent's view of the gate (drills need the gate
    /// at rest and known; data-plane gates take drills only). Other commands pass.
    pub fn check_command(
        &self,
        c: &OperatorCommand,
        now: UnixMillis,
    ) -> Result<(), CommandRejection> {
        let refused = |why| CommandRejection::DrillRefused {
            gate: c.gate.clone(),
            why,
        };
        if self.cfg.plane == Plane::Data {
            let why = match c.action {
                OpAction::Drill { dry_run: true, .. } => Some(ActionError::DataPlaneDryRun),
                OpAction::Drill { .. } | OpAction::DrillAbort => None,
                _ => Some(ActionError::DataPlane {
                    action: c.action.as_str(),
                }),
            };
            if let Some(why) = why {
                return Err(CommandRejection::InvalidAction {
                    gate: c.gate.clone(),
                    why,
                });
            }
        }
        match c.action {
            OpAction::Drill { .. } => {
                if self.busy() || self.write_pending() {
                    return Err(refused(DrillRefusal::ChangeInFlight));
                }
                if !self.synced() {
                    return Err(refused(DrillRefusal::StateUnknown));
                }
                let empty = Inputs::new();
                let inputs = self.inputs.as_ref().unwrap_or(&empty);
                precheck(&self.cfg.spec, &self.state, inputs, now).map_err(refused)
            }
            OpAction::DrillAbort => precheck_abort(&self.state, now).map_err(refused),
            _ => Ok(()),
        }
    }

    fn command_appended(
        &mut self,
        token: Token,
        command: VerifiedCommand,
        at: UnixMillis,
        result: Result<(), Failure>,
    ) {
        if let Err(e) = result {
            self.push(Action::CommandDone {
                token,
                result: Err(CommandFailure::Audit(e)),
            });
            return;
        }
        let result = self
            .apply_command(&command, at)
            .map_err(CommandFailure::from);
        self.push(Action::CommandDone { token, result });
    }

    /// Applies an audited command (also at start-up, from the log).
    fn apply_command(
        &mut self,
        v: &VerifiedCommand,
        at: UnixMillis,
    ) -> Result<(), CommandRejection> {
        v.apply_to(&self.cfg.spec, &mut self.state, at)?;
        match &v.command.action {
            OpAction::Drill { .. } => {
                if let Some(d) = self.state.drill().cloned() {
                    self.push(Action::DrillStarted(d));
                }
            }
            OpAction::DrillAbort => {
                let drill = self.state.drill();
                let seq = drill.map_or(0, |d| d.seq);
                let end = drill.and_then(|d| d.ended.clone());
                if let Some(end) = end.filter(|e| matches!(e.cause, DrillEndCause::Aborted { .. }))
                {
                    self.last_outcome = Some(format!("drill {seq} ended: {}", end.cause));
                    self.push(Action::DrillEnded { seq, end });
                }
            }
            _ => {}
        }
        Ok(())
    }

    // --- drills ----------------------------------------------------------------------------

    fn drill_tick(&mut self, inputs: &Inputs, now: UnixMillis) {
        let Some(seq) = self.state.drill().map(|d| d.seq) else {
            return;
        };
        let abort = self
            .cfg
            .drill_guards
            .iter()
            .find(|c| inputs.get(c).is_some_and(|i| i.state == State::Unhealthy))
            .cloned();
        if let Some(end) = self.state.drill_tick(now, abort) {
            self.last_outcome = Some(format!("drill {seq} ended: {}", end.cause));
            self.push(Action::DrillEnded { seq, end });
        }
    }

    fn drill_finish(&mut self, now: UnixMillis) {
        let Some(done) = self.state.finish_drill(&self.cfg.spec, now) else {
            return;
        };
        if done.drill.dry_run && self.cfg.live() {
            // The simulated DNS ends with the drill: read what Route 53 really holds.
            self.synced_at = None;
        }
        self.push(Action::DrillFinished(done));
    }
}

/// Whether a change from `from` to `to` gives a failover pair's secondary the traffic it did
/// not have.
#[must_use]
pub fn moves_to_secondary(spec: &GateSpec, from: &DesiredState, to: &DesiredState) -> bool {
    let GateKind::Failover { secondary, .. } = spec.kind() else {
        return false;
    };
    let is_secondary = |s: &DesiredState| matches!(s, DesiredState::Failover { active } if *active == secondary.id);
    is_secondary(to) && !is_secondary(from)
}
