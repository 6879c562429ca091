//! The gate driver: the I/O shell around one [`GateMachine`] per gate.
//!
//! Every gate's logic — when to read Route 53, when a change is decided, the fenced write
//! step by step, whether our batch won (also when its answer was lost), the promotion it
//! owes, operator commands and drills, persist before act — lives in the pure machine
//! (`quorum::gate::machine`), which the deterministic cluster simulation checks. The driver
//! feeds each round and every I/O result in as an event and executes the actions the machine
//! queues:
//!
//! ```text
//! round ─► Event::Round ─► machine ─► actions ─┬─ Append  → the audit appender (one thread, in
//!                                              │            order, fsync; Appended back)
//!                                              ├─ Read / Plan / Commit → Route 53 tasks
//!                                              ├─ Promote → the gate's promoter task
//!                                              ├─ CommandDone → the waiting HTTP request
//!                                              └─ drills, alert, notes → board, metrics, logs
//! ```
//!
//! Nothing here holds a lock across I/O: appends (fsync) run on the appender's thread and
//! Route 53 calls in tasks; each result re-takes the driver lock only to feed the machine.
//!
//! - [`exec`]: executing actions and feeding results back.
//! - [`journal`]: the audit records' JSON, written and replayed.
//! - [`notes`]: logs and metrics for the machine's notes.
//! - [`appender`]: ordered audit appends off the runtime's threads.
//! - [`drill`]: the drill board, drill audits and verdicts.
//!
//! Data-plane gates are here only for their drills: they never write (Route 53 follows the
//! calculated health checks); each round they follow what Route 53 serves by the quorum's
//! decisions ([`super::dataplane::data_plane_serving`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use config::{Config, GateConfig, Plane};
use quorum::gate::machine::{CommandFailure, Event, GateMachine, MachineConfig, Token};
use quorum::gate::{DesiredState, Inputs, Mode};
use quorum::operator::{
    CommandAccepted, CommandRejection, Operator, OperatorBook, OperatorBookConfig, VerifiedCommand,
};
use quorum::{GateId, UnixMillis};

use super::dataplane::data_plane_serving;
use super::promote::Promoter;
use crate::audit::{Record, SharedAudit};
use crate::clock::SharedClock;
use crate::drill::agent::{self as drills, FinishedRecord};
use crate::drill::DrillBoard;
use crate::route53::{
    FencedWriter, GateTarget, PlannedWrite, Route53Api, WriteError, WriterOptions,
};
use crate::status::GateStatus;
use crate::telemetry as t;

mod appender;
#[cfg(test)]
mod command_tests;
mod drill;
mod exec;
mod journal;
mod notes;

use appender::Appender;

/// Timing of the driver's own retries (the API adapter retries each call on its own).
#[derive(Debug, Clone, Copy)]
pub struct DriverOptions {
    /// Waiting for INSYNC after a write.
    pub writer: WriterOptions,
    /// Re-read a live gate's DNS this often even when nothing happens (another writer, a
    /// human, or a restored backup may have changed it).
    pub resync_every: Duration,
    /// The same while the gate holds with an alert (it waits for an operator).
    pub resync_on_alert: Duration,
    /// After a failed read or write: wait this long, doubling per failure, up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// How long a Route 53 request can still land after it was sent (see
    /// `MachineConfig::request_lifetime_ms`).
    pub request_lifetime: Duration,
}

impl Default for DriverOptions {
    fn default() -> Self {
        Self {
            writer: WriterOptions::default(),
            resync_every: Duration::from_secs(60),
            resync_on_alert: Duration::from_secs(5),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
            request_lifetime: Duration::from_secs(120),
        }
    }
}

/// What an operator command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOutcome {
    Applied {
        gate: GateId,
        action: &'static str,
    },
    /// The same signed command again: nothing more to do.
    Duplicate,
}

/// Why an operator command was refused.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Rejected(#[from] CommandRejection),
    /// The command is valid but could not be persisted; it was not applied.
    #[error("could not write the audit log: {0}")]
    Audit(String),
}

impl CommandError {
    /// Metric label.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            CommandError::Rejected(r) => r.reason(),
            CommandError::Audit(_) => "audit_failed",
        }
    }
}

impl From<CommandFailure> for CommandError {
    fn from(f: CommandFailure) -> Self {
        match f {
            CommandFailure::Rejected(r) => CommandError::Rejected(r),
            CommandFailure::Audit(e) => CommandError::Audit(e.detail),
        }
    }
}

/// One gate: its machine and what the shell needs to execute its actions.
struct Slot {
    cfg: GateConfig,
    machine: GateMachine,
    /// `Some` for live control-plane gates (they read and write Route 53).
    writer: Option<FencedWriter>,
    /// `[gates.promote]` of a live failover gate.
    promoter: Option<Arc<dyn Promoter>>,
    /// Batches planned, by the plan's token, until sent.
    plans: BTreeMap<Token, PlannedWrite>,
    /// Operator commands waiting for their audit record: the HTTP request's reply.
    commands: BTreeMap<
        Token,
        (
            VerifiedCommand,
            tokio::sync::oneshot::Sender<Result<(), CommandFailure>>,
        ),
    >,
    next_command: Token,
    /// The last finished drill and this agent's verdict on it.
    last_drill: Option<FinishedRecord>,
}

impl Slot {
    fn id(&self) -> &GateId {
        self.cfg.spec.id()
    }
}

struct Inner {
    slots: BTreeMap<GateId, Slot>,
    operators: OperatorBook,
}

/// Every gate of this agent.
pub struct GateDriver {
    inner: Mutex<Inner>,
    /// One operator command at a time: verify, audit, commit.
    commands: tokio::sync::Mutex<()>,
    audit: Option<SharedAudit>,
    appender: Appender,
    clock: SharedClock,
    /// The checks drills tell this agent to vote Unhealthy (read by the node).
    board: DrillBoard,
    /// This agent's id (drill verdicts read its own timeline).
    agent: String,
    /// Where results fed from the appender's thread spawn their I/O.
    runtime: Option<tokio::runtime::Handle>,
    /// The node's decision journal: a drill is judged from the audit log only once the
    /// transitions of the round that finished it are written there.
    journal: std::sync::OnceLock<crate::node::journal::Journal>,
}

impl std::fmt::Debug for GateDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateDriver")
            .field("agent", &self.agent)
            .finish_non_exhaustive()
    }
}

/// Why the driver cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("gate {gate}: {source}")]
    Writer {
        gate: GateId,
        #[source]
        source: WriteError,
    },
    #[error("gate {0} is live on the control plane but no Route 53 client was given")]
    NoApi(GateId),
    #[error("operators: {0}")]
    Operators(String),
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl GateDriver {
    /// A driver for `cfg`'s gates. `api` is required when any control-plane gate is live.
    pub fn new(
        cfg: &Config,
        api: Option<Arc<dyn Route53Api>>,
        promoters: BTreeMap<GateId, Arc<dyn Promoter>>,
        audit: Option<SharedAudit>,
        clock: SharedClock,
        options: DriverOptions,
    ) -> Result<Self, DriverError> {
        let operators = OperatorBook::new(
            quorum::ClusterId::new(&cfg.shared.cluster.name, &cfg.shared.membership),
            cfg.shared
                .operators
                .iter()
                .map(|o| Operator {
                    id: o.id.clone(),
                    key: o.public_key,
                })
                .collect(),
            cfg.shared.gates.iter().map(|g| g.spec.clone()),
            OperatorBookConfig {
                max_clock_skew_ms: cfg.shared.cluster.max_clock_skew_ms,
                max_valid_for_ms: cfg.shared.cluster.operator_max_valid_for_ms,
            },
        )
        .map_err(|e| DriverError::Operators(e.to_string()))?;
        let mut slots = BTreeMap::new();
        for g in &cfg.shared.gates {
            let id = g.spec.id().clone();
            let writer = match (g.plane, g.spec.mode()) {
                (Plane::Data, _) | (Plane::Control, Mode::DryRun) => None,
                (Plane::Control, Mode::Live) => {
                    let api = api.clone().ok_or_else(|| DriverError::NoApi(id.clone()))?;
                    let target = GateTarget {
                        zone_id: g.zone_id.clone(),
                        zone_name: g.zone_name.clone(),
                        gate: id.to_string(),
                        agent: cfg.local.agent_id.to_string(),
                    };
                    Some(
                        FencedWriter::new(api, target, options.writer).map_err(|source| {
                            DriverError::Writer {
                                gate: id.clone(),
                                source,
                            }
                        })?,
                    )
                }
            };
            metrics::gauge!(t::GATE_ALERT, "gate" => id.to_string()).set(0.0);
            let promoter = writer.as_ref().and_then(|_| promoters.get(&id).cloned());
            let machine = GateMachine::new(MachineConfig {
                spec: g.spec.clone(),
                plane: match g.plane {
                    Plane::Control => quorum::gate::machine::Plane::Control,
                    Plane::Data => quorum::gate::machine::Plane::Data,
                },
                me: cfg.local.agent_id.to_string(),
                promote: promoter.is_some(),
                drill_guards: drills::guards(g),
                writer_stagger_ms: g.writer_stagger_ms,
                resync_every_ms: millis(options.resync_every),
                resync_on_alert_ms: millis(options.resync_on_alert),
                retry_base_ms: millis(options.retry_base),
                retry_max_ms: millis(options.retry_max),
                request_lifetime_ms: millis(options.request_lifetime),
                max_clock_skew_ms: cfg.shared.cluster.max_clock_skew_ms,
            });
            slots.insert(
                id,
                Slot {
                    cfg: g.clone(),
                    machine,
                    writer,
                    promoter,
                    plans: BTreeMap::new(),
                    commands: BTreeMap::new(),
                    next_command: 1,
                    last_drill: None,
                },
            );
        }
        Ok(Self {
            inner: Mutex::new(Inner { slots, operators }),
            commands: tokio::sync::Mutex::new(()),
            appender: Appender::start(audit.clone()),
            audit,
            clock,
            board: DrillBoard::default(),
            agent: cfg.local.agent_id.to_string(),
            runtime: tokio::runtime::Handle::try_current().ok(),
            journal: std::sync::OnceLock::new(),
        })
    }

    /// Follows the node's decision journal (see [`GateDriver::journal`]); once, at start-up.
    pub fn follow_journal(&self, journal: crate::node::journal::Journal) {
        let _ = self.journal.set(journal);
    }

    /// The board the node reads drilled checks from (shared, not copied).
    #[must_use]
    pub fn drill_board(&self) -> DrillBoard {
        self.board.clone()
    }

    /// Whether there is anything to drive.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lock().slots.is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Rebuilds what must survive a restart from this agent's audit log: operator commands
    /// (freeze, approvals, overrides, drills, and replay protection), drill ends, the times
    /// of past changes (the velocity rule), a batch sent whose end was never recorded, and
    /// promotions owed or done. Call once, before the first round.
    pub fn replay(self: &Arc<Self>, records: &[Record]) {
        let judged = drills::judged(records);
        let mut inner = self.lock();
        let Inner { slots, operators } = &mut *inner;
        let mut restored = 0usize;
        for r in records {
            let Some((gate, item)) = journal::replayed(r, &judged, operators) else {
                continue;
            };
            if let Some(slot) = slots.get_mut(&gate) {
                slot.machine.restore(item);
            }
        }
        let ids: Vec<GateId> = slots.keys().cloned().collect();
        for id in ids {
            let Some(slot) = inner.slots.get_mut(&id) else {
                continue;
            };
            restored += slot.machine.restored();
            slot.last_drill = drills::last_result(records, &id);
            if let Some(last) = &slot.last_drill {
                drills::set_result_gauge(&id, last.result.as_deref());
            }
            self.execute_all(&mut inner, &id);
        }
        if restored > 0 {
            tracing::info!(restored, "operator commands restored from the audit log");
        }
    }

    /// Runs the gates after a round. `rank` is this agent's position among the members whose
    /// ballots are live (0: the preferred writer). Never blocks on I/O.
    pub fn on_round(self: &Arc<Self>, now: UnixMillis, inputs: &Inputs, rank: usize) {
        let mut inner = self.lock();
        let ids: Vec<GateId> = inner.slots.keys().cloned().collect();
        for id in ids {
            let Some(slot) = inner.slots.get_mut(&id) else {
                continue;
            };
            let serving = (slot.cfg.plane == Plane::Data)
                .then(|| data_plane_serving(&slot.cfg, inputs))
                .flatten();
            let event = Event::Round {
                now,
                inputs: drills::gate_inputs(&slot.cfg, inputs),
                rank,
                serving,
            };
            slot.machine.handle(event);
            self.execute_all(&mut inner, &id);
        }
    }

    /// Validates, audits and applies a signed operator command received at `now`. Answers
    /// once the command is applied (its audit record durable) or refused.
    pub async fn handle_command(
        self: &Arc<Self>,
        now: UnixMillis,
        wire: &[u8],
    ) -> Result<CommandOutcome, CommandError> {
        let result = self.handle_command_inner(now, wire).await;
        let label = match &result {
            Ok(CommandOutcome::Applied { .. }) => "accepted",
            Ok(CommandOutcome::Duplicate) => "duplicate",
            Err(e) => e.reason(),
        };
        metrics::counter!(t::OPERATOR_COMMANDS, "result" => label).increment(1);
        match &result {
            Ok(CommandOutcome::Applied { gate, action }) => {
                tracing::warn!(%gate, action, "operator command applied");
            }
            Ok(CommandOutcome::Duplicate) => {}
            Err(e) => tracing::warn!(reason = e.reason(), "operator command refused: {e}"),
        }
        result
    }

    async fn handle_command_inner(
        self: &Arc<Self>,
        now: UnixMillis,
        wire: &[u8],
    ) -> Result<CommandOutcome, CommandError> {
        let _one = self.commands.lock().await;
        let (reply, gate, action) = {
            let mut inner = self.lock();
            let Inner { slots, operators } = &mut *inner;
            let check = |c: &quorum::operator::OperatorCommand| match slots.get(&c.gate) {
                Some(slot) => slot.machine.check_command(c, now),
                None => Ok(()), // refused as unknown_gate by the book
            };
            let verified = match operators.verify(now, wire, check)? {
                CommandAccepted::Duplicate => return Ok(CommandOutcome::Duplicate),
                CommandAccepted::New(v) => *v,
            };
            let gate = verified.command.gate.clone();
            let action = verified.command.action.as_str();
            let slot = inner
                .slots
                .get_mut(&gate)
                .ok_or_else(|| CommandRejection::UnknownGate(gate.clone()))?;
            let token = slot.next_command;
            slot.next_command += 1;
            let (tx, rx) = tokio::sync::oneshot::channel();
            slot.commands.insert(token, (verified.clone(), tx));
            slot.machine.handle(Event::Command {
                token,
                now,
                command: verified,
            });
            self.execute_all(&mut inner, &gate);
            (rx, gate, action)
        };
        match reply.await {
            Ok(Ok(())) => Ok(CommandOutcome::Applied { gate, action }),
            Ok(Err(failure)) => Err(failure.into()),
            Err(_) => Err(CommandError::Audit("the gate driver stopped".to_owned())),
        }
    }

    /// `GET /v1/audit?since=…`: this agent's audit records since then, as JSON.
    pub async fn audit_since(
        &self,
        query: Option<&str>,
    ) -> Result<Vec<u8>, (http::StatusCode, String)> {
        let path = self.audit.as_ref().map(|a| {
            a.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .path()
                .to_owned()
        });
        let Some(path) = path else {
            return Err((http::StatusCode::NOT_FOUND, "no audit log".to_owned()));
        };
        drills::serve_audit(path, self.agent.clone(), query).await
    }

    /// Every gate's state for `/v1/status`.
    #[must_use]
    pub fn status(&self, now: UnixMillis) -> Vec<GateStatus> {
        let inner = self.lock();
        inner
            .slots
            .values()
            .map(|s| {
                let m = &s.machine;
                let state = m.state();
                let hold = state.last_hold();
                GateStatus {
                    id: s.id().to_string(),
                    plane: s.cfg.plane.as_str().to_owned(),
                    mode: s.cfg.spec.mode().as_str().to_owned(),
                    current: state.current().to_string(),
                    epoch: m.epoch(),
                    synced: m.synced(),
                    busy: m.busy(),
                    last_evaluation: m.last_code().to_owned(),
                    hold: hold.map(|(r, _)| r.to_string()),
                    hold_since_ms: hold.map(|(_, since)| since.0),
                    alert: hold.is_some_and(|(r, _)| r.is_alert()),
                    frozen_by: state.frozen().map(|f| f.by.to_string()),
                    approval: state.approval().map(|a| format!("{} by {}", a.to, a.by)),
                    changes: m.applied(),
                    last_change_ms: state.last_change().map(|t| t.0),
                    last_outcome: m.last_outcome().map(ToOwned::to_owned),
                    retry_at_ms: m.retry_at().map(|t| t.0),
                    now_ms: now.0,
                    drill: drills::status(state.drill(), s.last_drill.as_ref(), now),
                }
            })
            .collect()
    }

    /// The state a gate is in (tests, status).
    #[must_use]
    pub fn current(&self, gate: &GateId) -> Option<DesiredState> {
        self.lock()
            .slots
            .get(gate)
            .map(|s| s.machine.state().current().clone())
    }
}
