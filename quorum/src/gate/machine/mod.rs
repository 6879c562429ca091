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

// `io`: events, actions, audit records. `write`: the write path, reads, velocity by epoch,
// promotion. `command`: operator commands and drills. `restore`: replay after a restart.
mod command;
mod io;
mod restore;
mod write;

use std::collections::{BTreeMap, BTreeSet};

pub use io::{
    Accepted, Action, AuditRecord, CommandFailure, Committed, Event, Failure, Note, Outcome,
    Planned, Promoted, Records, Token, View,
};
pub use restore::Replayed;

use crate::gate::{
    evaluate, DesiredState, Evaluation, GateKind, GateSpec, GateState, Inputs, Mode, PlannedChange,
};
use crate::ids::CheckId;
use crate::operator::CommandRejection;
use crate::time::UnixMillis;
use crate::VerifiedCommand;

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
            Event::Promoted { token, result, .. } => self.promoted(token, result),
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
            self.decide(change.clone(), rank);
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
