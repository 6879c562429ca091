//! The gate driver: evaluates every control-plane gate after each round and, for live gates,
//! moves Route 53 through the fence. Also the receiver of signed operator commands.
//!
//! Data-plane gates are here only for their drills: the agents never write their records
//! (Route 53 follows the calculated health checks), so their slot has no writer and no rules
//! to evaluate. Each round it follows what Route 53 serves by the quorum's decisions
//! ([`super::dataplane::data_plane_serving`]), ends and finishes drills like any other gate, and refuses every
//! operator command but `drill` and `drill --abort`.
//!
//! Per gate and round (never while a write or read for that gate is in flight):
//!
//! ```text
//! DNS unknown or due for a re-read ─► read fence + records (task) ─► resync state, epoch
//! evaluate(spec, state, inputs, now)
//!   Hold(r)   ─► metrics, status; an alerting hold is logged once when it starts
//!   Change(c) ─► audit "gate_decision" (fsync) ─┬─ dry-run: commit to the simulated state
//!                                               └─ live: task: wait rank × writer_stagger,
//!        plan (re-read) ─► audit "gate_write" with the batch (fsync) ─► ChangeResourceRecordSets
//!        ─► audit "gate_outcome" ─► Applied / AlreadyInPlace: commit; Stale / LostRace: re-read;
//!        error: back off, re-read before the next try (the batch may have landed)
//! state.observe(...)
//! ```
//!
//! Game-day drills (`quorumgate drill`, see [`crate::drill`]): a verified drill command starts
//! a drill in the gate's state and on the [`DrillBoard`] the node votes from; each round first
//! ends a drill whose time is over or whose guard check (the secondary's, or
//! `[gates.drill] abort_check`) is decided Unhealthy (`drill_end`), and after the evaluation
//! finishes one that is back at the primary (or out of grace) and computes this agent's
//! verdict from its own audit log (`drill_result`, `quorumgate_drill_result`). A drill never
//! promotes a database; a dry-run drill writes nothing and re-reads Route 53 when finished.
//!
//! Architecture Invariant: nothing here writes a record without an audited decision whose
//! certificates justify it, and every write goes through [`FencedWriter`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use config::{Config, GateConfig, Plane};
use quorum::gate::{
    Authority, DesiredState, DrillEndCause, Evaluation, GateState, Inputs, Mode, PlannedChange,
};
use quorum::operator::{
    Action, CommandAccepted, CommandRejection, Operator, OperatorBook, OperatorBookConfig,
    OperatorCommand, SignedCommand, VerifiedCommand,
};
use quorum::{ClusterId, GateId, UnixMillis};
use serde_json::{json, Value};

use self::drill::drill_check;
use super::dataplane::data_plane_serving;
use super::promote::{self, PromoteOutcome, Promoter};
use super::records::{control_records, state_from_records};
use crate::audit::{self, Record, SharedAudit};
use crate::clock::SharedClock;
use crate::drill::agent::{self as drills, FinishedRecord};
use crate::drill::DrillBoard;
use crate::route53::{
    ApplyOutcome, ChangeAction, FencedWriter, GateTarget, Plan, Route53Api, WriteError,
    WriterOptions,
};
use crate::status::GateStatus;
use crate::telemetry as t;

#[cfg(test)]
mod command_tests;
mod drill;

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
}

impl Default for DriverOptions {
    fn default() -> Self {
        Self {
            writer: WriterOptions::default(),
            resync_every: Duration::from_secs(60),
            resync_on_alert: Duration::from_secs(5),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
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

#[derive(Debug, Default, Clone, Copy)]
struct Backoff {
    failures: u32,
    not_before: UnixMillis,
}

#[derive(Debug)]
struct Slot {
    cfg: GateConfig,
    /// A data-plane slot follows Route 53's own selection and never writes.
    plane: Plane,
    /// `Some` for live gates (they read and write Route 53).
    writer: Option<FencedWriter>,
    /// The same writer without the INSYNC wait, so acceptance and INSYNC are timed apart.
    accept_writer: Option<FencedWriter>,
    /// `[gates.promote]` of a live failover gate.
    promoter: Option<Arc<dyn Promoter>>,
    state: GateState,
    /// The fence epoch as last read or written.
    epoch: u64,
    /// When DNS was last read (or written) successfully; `None`: read before acting.
    synced_at: Option<UnixMillis>,
    busy: bool,
    backoff: Backoff,
    last_code: &'static str,
    last_outcome: Option<String>,
    applied: u64,
    /// The gate's checks as the last round saw them (a drill's precheck on receipt).
    inputs: Option<Inputs>,
    /// The last finished drill and this agent's verdict on it.
    last_drill: Option<FinishedRecord>,
}

impl Slot {
    fn id(&self) -> &GateId {
        self.cfg.spec.id()
    }

    fn live(&self) -> bool {
        self.writer.is_some()
    }
}

#[derive(Debug)]
struct Inner {
    slots: BTreeMap<GateId, Slot>,
    operators: OperatorBook,
}

/// Every control-plane gate of this agent.
#[derive(Debug)]
pub struct GateDriver {
    inner: Mutex<Inner>,
    audit: Option<SharedAudit>,
    clock: SharedClock,
    options: DriverOptions,
    /// The checks drills tell this agent to vote Unhealthy (read by the node).
    board: DrillBoard,
    /// This agent's id (drill verdicts read its own timeline).
    agent: String,
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

impl GateDriver {
    /// A driver for `cfg`'s control-plane gates (data-plane gates need nothing at run time:
    /// `/v1/health` is their whole job). `api` is required when any of them is live.
    pub fn new(
        cfg: &Config,
        api: Option<Arc<dyn Route53Api>>,
        promoters: BTreeMap<GateId, Arc<dyn Promoter>>,
        audit: Option<SharedAudit>,
        clock: SharedClock,
        options: DriverOptions,
    ) -> Result<Self, DriverError> {
        let gates: Vec<&GateConfig> = cfg.shared.gates.iter().collect();
        let operators = OperatorBook::new(
            ClusterId::new(&cfg.shared.cluster.name, &cfg.shared.membership),
            cfg.shared
                .operators
                .iter()
                .map(|o| Operator {
                    id: o.id.clone(),
                    key: o.public_key,
                })
                .collect(),
            gates.iter().map(|g| g.spec.clone()),
            OperatorBookConfig {
                max_clock_skew_ms: cfg.shared.cluster.max_clock_skew_ms,
                max_valid_for_ms: cfg.shared.cluster.operator_max_valid_for_ms,
            },
        )
        .map_err(|e| DriverError::Operators(e.to_string()))?;
        let mut slots = BTreeMap::new();
        for g in gates {
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
            let accept_writer = match (&api, &writer) {
                (Some(api), Some(w)) => {
                    let no_wait = WriterOptions {
                        insync_timeout: Duration::ZERO,
                        ..options.writer
                    };
                    Some(
                        FencedWriter::new(Arc::clone(api), w.target().clone(), no_wait).map_err(
                            |source| DriverError::Writer {
                                gate: id.clone(),
                                source,
                            },
                        )?,
                    )
                }
                _ => None,
            };
            slots.insert(
                id,
                Slot {
                    promoter,
                    state: GateState::new(&g.spec),
                    cfg: g.clone(),
                    plane: g.plane,
                    writer,
                    accept_writer,
                    epoch: 0,
                    synced_at: None,
                    busy: false,
                    backoff: Backoff::default(),
                    last_code: "starting",
                    last_outcome: None,
                    applied: 0,
                    inputs: None,
                    last_drill: None,
                },
            );
        }
        Ok(Self {
            inner: Mutex::new(Inner { slots, operators }),
            audit,
            clock,
            options,
            board: DrillBoard::default(),
            agent: cfg.local.agent_id.to_string(),
        })
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
    /// (freeze, approvals, overrides, and replay protection) and the times of past changes
    /// (the velocity rule). Call once, before the first round.
    pub fn replay(&self, records: &[Record]) {
        let mut inner = self.lock();
        let Inner { slots, operators } = &mut *inner;
        let mut changes: BTreeMap<String, Vec<UnixMillis>> = BTreeMap::new();
        let mut replayed = 0usize;
        // Drills this agent already judged are over: they are not restored.
        let judged = drills::judged(records);
        for r in records {
            let at = UnixMillis(r.at_ms);
            match r.event.as_str() {
                "operator_command" => {
                    let Some(cmd) = r.body.get("signed").and_then(Value::as_str) else {
                        continue;
                    };
                    let Some(signed) = STANDARD
                        .decode(cmd)
                        .ok()
                        .and_then(|w| SignedCommand::from_wire(&w).ok())
                    else {
                        continue;
                    };
                    let Ok(command) = signed.decode_unverified() else {
                        continue;
                    };
                    operators.restore_seq(command.operator.clone(), command.seq);
                    let done = matches!(command.action, Action::Drill { .. })
                        && judged.contains(&(command.gate.to_string(), command.seq));
                    if let Some(slot) = slots.get_mut(&command.gate).filter(|_| !done) {
                        let verified = VerifiedCommand { command, signed };
                        if verified
                            .apply_to(&slot.cfg.spec, &mut slot.state, at)
                            .is_ok()
                        {
                            replayed += 1;
                        }
                    }
                }
                "drill_end" => {
                    if let Some((gate, seq, end)) = drills::end_from_record(r) {
                        let slot = slots
                            .get_mut(&gate)
                            .filter(|s| s.state.drill().is_some_and(|d| d.seq == seq));
                        if let Some(slot) = slot {
                            slot.state.end_drill(end.at, end.cause);
                        }
                    }
                }
                "gate_outcome" => {
                    // Every change this agent committed: its own writes, the ones another
                    // writer made first (found in place), and simulated ones.
                    let counts = matches!(
                        r.body.get("result").and_then(Value::as_str),
                        Some("applied" | "already_in_place" | "dry_run")
                    );
                    if let (true, Some(gate)) = (counts, r.body.get("gate").and_then(Value::as_str))
                    {
                        changes.entry(gate.to_owned()).or_default().push(at);
                    }
                }
                _ => {}
            }
        }
        for slot in slots.values_mut() {
            if let Some(times) = changes.remove(slot.id().as_str()) {
                slot.state.restore_changes(&slot.cfg.spec, times);
            }
            if let Some(d) = slot.state.drill().filter(|d| d.ended.is_none()).cloned() {
                tracing::warn!(gate = %slot.id(), seq = d.seq, ends_at = d.ends_at.0, "drill restored from the audit log");
                self.drill_started(slot, &d);
            }
            slot.last_drill = drills::last_result(records, slot.id());
            if let Some(last) = &slot.last_drill {
                drills::set_result_gauge(slot.id(), last.result.as_deref());
            }
        }
        if replayed > 0 {
            tracing::info!(replayed, "operator commands restored from the audit log");
        }
    }

    /// Runs the gates after a round. `rank` is this agent's position among the members whose
    /// ballots are live (0: the preferred writer). Never blocks on I/O: reads and writes run
    /// as tasks and report back.
    pub fn on_round(self: &Arc<Self>, now: UnixMillis, inputs: &Inputs, rank: usize) {
        let mut inner = self.lock();
        let ids: Vec<GateId> = inner.slots.keys().cloned().collect();
        for id in ids {
            let Some(slot) = inner.slots.get_mut(&id) else {
                continue;
            };
            slot.inputs = Some(drills::gate_inputs(&slot.cfg, inputs));
            if slot.plane == Plane::Data {
                self.follow_data_plane(slot, inputs, now);
                continue;
            }
            self.drill_tick(slot, inputs, now);
            if slot.busy || now < slot.backoff.not_before {
                continue;
            }
            // A dry-run drill simulates from the state it started in: no re-read until it ends.
            let due = slot.live() && !slot.state.drill_dry_run() && self.needs_sync(slot, now);
            if due && slot.synced_at.is_none() {
                // Never read (start-up, a lost race, an error): read before deciding anything.
                self.spawn_sync(slot, id);
                continue;
            }
            let eval = quorum::gate::evaluate(&slot.cfg.spec, &slot.state, inputs, now);
            self.note_evaluation(slot, &eval);
            if let Evaluation::Change(change) = &eval {
                // The write re-reads Route 53 itself, so a periodic re-read can wait.
                self.act(slot, change, now, rank);
            }
            slot.state.observe(&slot.cfg.spec, inputs, &eval, now);
            if !slot.busy {
                self.drill_finish(slot, now);
            }
            // The periodic re-read comes after this round's decision, so it never delays one.
            if due && !slot.busy {
                self.spawn_sync(slot, id);
            }
        }
    }

    /// A data-plane gate's round: what Route 53 serves now, by the quorum's decisions, then
    /// the drill's end and finish as for any gate.
    fn follow_data_plane(self: &Arc<Self>, slot: &mut Slot, inputs: &Inputs, now: UnixMillis) {
        self.drill_tick(slot, inputs, now);
        if let Some(serving) = data_plane_serving(&slot.cfg, inputs) {
            if serving != *slot.state.current() {
                tracing::info!(gate = %slot.id(), from = %slot.state.current(), to = %serving, "data-plane gate: Route 53 serves another target by the quorum's decisions");
                slot.last_outcome = Some(format!("Route 53 serves {serving}"));
                if let Err(e) = slot.state.resync(&slot.cfg.spec, serving) {
                    tracing::error!(gate = %slot.id(), error = %e, "data-plane state");
                }
            }
        }
        self.drill_finish(slot, now);
    }

    fn spawn_sync(self: &Arc<Self>, slot: &mut Slot, id: GateId) {
        slot.busy = true;
        let me = Arc::clone(self);
        tokio::spawn(async move { me.sync(id).await });
    }

    fn needs_sync(&self, slot: &Slot, now: UnixMillis) -> bool {
        // A gate waiting for an operator must show what is really in Route 53 (another agent
        // may have acted already), so it re-reads more often.
        let every = if slot.state.last_hold().is_some_and(|(h, _)| h.is_alert()) {
            self.options.resync_on_alert
        } else {
            self.options.resync_every
        };
        let every = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
        slot.synced_at.is_none_or(|at| now.since(at) >= every)
    }

    fn note_evaluation(&self, slot: &mut Slot, eval: &Evaluation) {
        let gate = slot.id().to_string();
        let code = eval.code();
        let alert = matches!(eval, Evaluation::Hold(h) if h.is_alert());
        metrics::gauge!(t::GATE_ALERT, "gate" => gate.clone()).set(if alert { 1.0 } else { 0.0 });
        if code != slot.last_code {
            metrics::gauge!(t::GATE_HOLD, "gate" => gate.clone(), "reason" => slot.last_code)
                .set(0.0);
            if let Evaluation::Hold(h) = eval {
                metrics::gauge!(t::GATE_HOLD, "gate" => gate.clone(), "reason" => code).set(1.0);
                if h.is_alert() {
                    tracing::error!(gate, reason = code, "gate cannot act: {h}");
                } else if !matches!(h, quorum::gate::HoldReason::NoChange) {
                    tracing::info!(gate, reason = code, "gate holds: {h}");
                }
            }
            slot.last_code = code;
        }
    }

    /// A planned change: persist the decision, then simulate (dry-run) or start the write.
    fn act(
        self: &Arc<Self>,
        slot: &mut Slot,
        change: &PlannedChange,
        now: UnixMillis,
        rank: usize,
    ) {
        let gate = slot.id().to_string();
        let mode = slot.cfg.spec.mode();
        let desired = match control_records(&slot.cfg, &change.to) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(gate, error = %e, "cannot build the desired records");
                return;
            }
        };
        let decision = decision_body(change, slot.epoch, &desired.digest());
        if let Err(e) = self.audit(now, "gate_decision", decision) {
            // Persist before act: without the record there is no write.
            metrics::counter!(t::AUDIT_ERRORS).increment(1);
            tracing::error!(gate, error = %e, "decision not persisted; not acting on it");
            return;
        }
        tracing::warn!(
            gate, mode = mode.as_str(), from = %change.from, to = %change.to,
            reason = change.reason.code(), epoch = slot.epoch,
            certificates = %change.certificates.iter().map(|c| c.digest_hex()).collect::<Vec<_>>().join(","),
            "gate change decided"
        );
        // A dry-run drill makes a live gate's changes dry runs too (`change.mode`).
        match slot.writer.as_ref().filter(|_| change.mode == Mode::Live) {
            None => {
                // Dry-run: the change is logged and audited; the simulated DNS moves on.
                if let Err(e) = slot.state.commit(&slot.cfg.spec, change, now) {
                    tracing::error!(gate, error = %e, "dry-run commit failed");
                    return;
                }
                slot.applied += 1;
                slot.last_outcome = Some(format!("dry-run: would set {}", change.to));
                metrics::counter!(t::GATE_CHANGES, "gate" => gate.clone(), "mode" => "dry-run", "result" => "dry_run").increment(1);
                let body = json!({ "gate": gate, "result": "dry_run", "to": change.to.to_string(), "records": records_text(desired.records()) });
                self.audit_after(now, "gate_outcome", body);
            }
            Some(writer) => {
                slot.busy = true;
                let delay = self.stagger(&slot.cfg, rank);
                let job = WriteJob {
                    gate: slot.id().clone(),
                    writer: writer.clone(),
                    accept_writer: slot.accept_writer.clone().unwrap_or_else(|| writer.clone()),
                    change: change.clone(),
                    expected_epoch: slot.epoch,
                    desired,
                    delay,
                };
                let me = Arc::clone(self);
                tokio::spawn(async move { me.write(job).await });
            }
        }
    }

    fn stagger(&self, gate: &GateConfig, rank: usize) -> Duration {
        let rank = u32::try_from(rank).unwrap_or(u32::MAX);
        Duration::from_millis(gate.writer_stagger_ms).saturating_mul(rank)
    }

    fn audit(&self, now: UnixMillis, event: &str, body: Value) -> Result<(), audit::AuditError> {
        match &self.audit {
            Some(log) => audit::append_shared(log, now, event, body).map(|_| ()),
            None => Ok(()),
        }
    }

    /// Audits what already happened (an outcome): nothing waits on the record, but a failed
    /// append is counted (`quorumgate_audit_errors_total`) and logged, never dropped silently.
    fn audit_after(&self, now: UnixMillis, event: &str, body: Value) {
        if let Err(e) = self.audit(now, event, body) {
            metrics::counter!(t::AUDIT_ERRORS).increment(1);
            tracing::error!(event, error = %e, "audit record not persisted");
        }
    }

    /// Reads the gate's fence and records and adopts them as the current state.
    async fn sync(self: Arc<Self>, id: GateId) {
        let (writer, cfg) = {
            let inner = self.lock();
            let Some(slot) = inner.slots.get(&id) else {
                return;
            };
            let Some(writer) = slot.writer.clone() else {
                return;
            };
            (writer, slot.cfg.clone())
        };
        let scope = control_records(&cfg, &cfg.spec.normal_state());
        let result = match scope {
            Ok(scope) => writer.read(&scope).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let now = self.clock.now();
        let mut inner = self.lock();
        let Some(slot) = inner.slots.get_mut(&id) else {
            return;
        };
        slot.busy = false;
        match result {
            Ok(view) => {
                slot.epoch = view.epoch();
                slot.synced_at = Some(now);
                slot.backoff = Backoff::default();
                metrics::gauge!(t::GATE_EPOCH, "gate" => id.to_string()).set(view.epoch() as f64);
                match state_from_records(&cfg, &view.records) {
                    Some(current) => {
                        if *slot.state.current() != current {
                            tracing::warn!(gate = %id, was = %slot.state.current(), now = %current, epoch = view.epoch(), "gate state re-read from Route 53");
                        }
                        if let Err(e) = slot.state.resync(&cfg.spec, current) {
                            tracing::error!(gate = %id, error = %e, "records read back do not fit the gate");
                        }
                    }
                    None if view.records.is_empty() => {
                        tracing::info!(gate = %id, "gate records not in Route 53 yet; the first change creates them (see `quorumgate provision`)");
                    }
                    None => {
                        tracing::warn!(gate = %id, records = %records_text(view.records.iter()).join("; "), "gate records are in no state this gate produces (edited by hand?); assuming {}", slot.state.current());
                    }
                }
            }
            Err(e) => {
                self.fail(slot, now, "sync", &e);
            }
        }
    }

    fn fail(&self, slot: &mut Slot, now: UnixMillis, what: &str, error: &str) {
        let failures = slot.backoff.failures.saturating_add(1);
        let base = self.options.retry_base.as_millis() as u64;
        let wait = base
            .saturating_mul(1u64 << failures.saturating_sub(1).min(16))
            .min(self.options.retry_max.as_millis() as u64);
        slot.backoff = Backoff {
            failures,
            not_before: now.plus(wait),
        };
        slot.synced_at = None;
        slot.last_outcome = Some(format!("{what} failed: {error}"));
        tracing::warn!(gate = %slot.id(), failures, retry_in_ms = wait, "route53 {what} failed, will retry: {error}");
    }

    /// Sends the batch, then waits for INSYNC itself, timing both (the audit's
    /// `accepted_at_ms` and `in_sync_at_ms`, which drills report).
    async fn commit_timed(
        &self,
        job: &WriteJob,
        w: crate::route53::PlannedWrite,
        times: &mut Times,
    ) -> Result<ApplyOutcome, WriteError> {
        let result = job.accept_writer.commit(w).await;
        let Ok(ApplyOutcome::Applied {
            epoch,
            change_id,
            in_sync,
        }) = result
        else {
            return result;
        };
        let accepted_at = self.clock.now().0;
        times.accepted_at = Some(accepted_at);
        if in_sync {
            times.in_sync_at = Some(accepted_at);
        }
        let in_sync = in_sync || job.writer.wait_insync(&change_id).await;
        if in_sync && times.in_sync_at.is_none() {
            times.in_sync_at = Some(self.clock.now().0);
        }
        Ok(ApplyOutcome::Applied {
            epoch,
            change_id,
            in_sync,
        })
    }

    async fn write(self: Arc<Self>, job: WriteJob) {
        if !job.delay.is_zero() {
            tokio::time::sleep(job.delay).await;
        }
        let gate = job.gate.to_string();
        let mut times = Times::default();
        let result = match job.writer.plan(job.expected_epoch, &job.desired).await {
            Ok(Plan::Done(outcome)) => Ok(outcome),
            Ok(Plan::Write(w)) => {
                let body = json!({
                    "gate": gate,
                    "expected_epoch": w.expected_epoch,
                    "next_fence": w.next.txt_value(),
                    "to": job.change.to.to_string(),
                    "batch": w.changes.iter().map(|c| format!("{} {}", action(c.action), c.record)).collect::<Vec<_>>(),
                });
                match self.audit(self.clock.now(), "gate_write", body) {
                    Ok(()) => self.commit_timed(&job, w, &mut times).await,
                    Err(e) => {
                        metrics::counter!(t::AUDIT_ERRORS).increment(1);
                        Err(WriteError::Api(crate::route53::ApiError::Malformed {
                            op: "audit",
                            detail: format!("write not persisted, not sent: {e}"),
                        }))
                    }
                }
            }
            Err(e) => Err(e),
        };
        let now = self.clock.now();
        let outcome_body = outcome_body(&gate, &result, times);
        self.audit_after(now, "gate_outcome", outcome_body);
        let label = match &result {
            Ok(o) => outcome_label(o),
            Err(e) => match e {
                WriteError::Api(a) => a.label(),
                _ => "error",
            },
        };
        metrics::counter!(t::GATE_CHANGES, "gate" => gate.clone(), "mode" => "live", "result" => label).increment(1);

        let mut inner = self.lock();
        let Some(slot) = inner.slots.get_mut(&job.gate) else {
            return;
        };
        slot.busy = false;
        match result {
            Ok(ApplyOutcome::Applied { epoch, .. } | ApplyOutcome::AlreadyInPlace { epoch }) => {
                slot.epoch = epoch;
                slot.synced_at = Some(now);
                slot.backoff = Backoff::default();
                metrics::gauge!(t::GATE_EPOCH, "gate" => gate.clone()).set(epoch as f64);
                let spec = &slot.cfg.spec;
                if *slot.state.current() == job.change.from {
                    if let Err(e) = slot.state.commit(spec, &job.change, now) {
                        tracing::error!(gate, error = %e, "commit after write failed");
                    }
                } else if let Err(e) = slot.state.resync(spec, job.change.to.clone()) {
                    tracing::error!(gate, error = %e, "resync after write failed");
                }
                slot.applied += 1;
                slot.last_outcome = Some(format!("{label}: {} at epoch {epoch}", job.change.to));
                // Only the writer whose batch won promotes: exactly one agent per epoch. A drill
                // practises DNS only: re-seeding a promoted database is no drill.
                let drilling = slot.state.drill().is_some();
                let promoter = slot
                    .promoter
                    .clone()
                    .filter(|_| label == "applied" && moves_to_secondary(&slot.cfg, &job.change));
                if promoter.is_some() && drilling {
                    tracing::warn!(gate, epoch, "drill: the database is not promoted");
                }
                let promoter = promoter.filter(|_| !drilling);
                let action = slot.cfg.promote.as_ref().map(|p| p.action.clone());
                if let (Some(promoter), Some(action)) = (promoter, action) {
                    slot.busy = true;
                    drop(inner);
                    let me = Arc::clone(&self);
                    tokio::spawn(async move {
                        me.promote(job.gate, epoch, promoter, action).await;
                    });
                }
            }
            Ok(ApplyOutcome::Stale { .. } | ApplyOutcome::LostRace { .. }) => {
                // Someone else moved the fence: read what is there before deciding again.
                slot.synced_at = None;
                slot.last_outcome = Some(format!("{label}: re-reading"));
            }
            Err(e) => self.fail(slot, now, "write", &e.to_string()),
        }
    }

    /// Runs the gate's database action after its failover batch won (audited before and
    /// after; a failure is an alert for an operator, never retried behind their back).
    async fn promote(
        self: Arc<Self>,
        gate: GateId,
        epoch: u64,
        promoter: Arc<dyn Promoter>,
        action: config::PromoteAction,
    ) {
        let what = promote::describe(&action);
        let intent = json!({ "gate": gate.as_str(), "epoch": epoch, "action": what });
        let result = match self.audit(self.clock.now(), "gate_promote", intent) {
            Ok(()) => promoter.promote(&action).await.map_err(|e| e.to_string()),
            Err(e) => {
                metrics::counter!(t::AUDIT_ERRORS).increment(1);
                Err(format!("not persisted, not started: {e}"))
            }
        };
        let (label, detail) = match &result {
            Ok(PromoteOutcome::Started) => ("started", what.clone()),
            Ok(PromoteOutcome::AlreadyDone(why)) => ("already_done", why.clone()),
            Err(e) => ("error", e.clone()),
        };
        let now = self.clock.now();
        let body = json!({ "gate": gate.as_str(), "epoch": epoch, "action": what, "result": label, "detail": detail });
        self.audit_after(now, "gate_promote_outcome", body);
        metrics::counter!(t::GATE_PROMOTIONS, "gate" => gate.to_string(), "result" => label)
            .increment(1);
        if result.is_err() {
            tracing::error!(%gate, epoch, action = %what, "database promotion failed: {detail}");
        } else {
            tracing::warn!(%gate, epoch, action = %what, result = label, "database promotion: {detail}");
        }
        let mut inner = self.lock();
        if let Some(slot) = inner.slots.get_mut(&gate) {
            slot.busy = false;
            slot.last_outcome = Some(format!("promote {label}: {detail}"));
        }
    }

    /// Verifies, audits, commits (consumes its seq) and applies a signed operator command
    /// received at `now`.
    pub fn handle_command(
        &self,
        now: UnixMillis,
        wire: &[u8],
    ) -> Result<CommandOutcome, CommandError> {
        let result = self.handle_command_inner(now, wire);
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

    fn handle_command_inner(
        &self,
        now: UnixMillis,
        wire: &[u8],
    ) -> Result<CommandOutcome, CommandError> {
        let mut inner = self.lock();
        let Inner { slots, operators } = &mut *inner;
        let verified = match operators.verify(now, wire, |c| drill_check(slots, c, now))? {
            CommandAccepted::Duplicate => return Ok(CommandOutcome::Duplicate),
            CommandAccepted::New(v) => v,
        };
        let c = &verified.command;
        let body = json!({
            "gate": c.gate.as_str(),
            "operator": c.operator.as_str(),
            "action": c.action.as_str(),
            "detail": action_detail(c),
            "seq": c.seq,
            "issued_at_ms": c.issued_at.0,
            "valid_for_ms": c.valid_for_ms,
            "note": c.note,
            "signed": STANDARD.encode(wire),
        });
        // Persist, then consume the seq, then act: a command whose record could not be
        // written leaves its seq unused, so re-sending the same bytes applies it.
        self.audit(now, "operator_command", body)
            .map_err(|e| CommandError::Audit(e.to_string()))?;
        inner.operators.commit(&verified);
        let slot = inner
            .slots
            .get_mut(&c.gate)
            .ok_or_else(|| CommandRejection::UnknownGate(c.gate.clone()))?;
        verified.apply_to(&slot.cfg.spec, &mut slot.state, now)?;
        match &c.action {
            Action::Drill { .. } => {
                if let Some(d) = slot.state.drill().cloned() {
                    tracing::warn!(gate = %c.gate, seq = d.seq, ends_at = d.ends_at.0, dry_run = d.dry_run, "drill started: this agent treats the primary as failed");
                    self.drill_started(slot, &d);
                }
            }
            Action::DrillAbort => {
                let end = slot.state.drill().and_then(|d| d.ended.clone());
                if let Some(end) = end.filter(|e| matches!(e.cause, DrillEndCause::Aborted { .. }))
                {
                    self.drill_ended(slot, &end, now);
                }
            }
            _ => {}
        }
        Ok(CommandOutcome::Applied {
            gate: c.gate.clone(),
            action: c.action.as_str(),
        })
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
                let hold = s.state.last_hold();
                GateStatus {
                    id: s.id().to_string(),
                    plane: s.plane.as_str().to_owned(),
                    mode: s.cfg.spec.mode().as_str().to_owned(),
                    current: s.state.current().to_string(),
                    epoch: s.epoch,
                    synced: s.synced_at.is_some() || !s.live(),
                    busy: s.busy,
                    last_evaluation: s.last_code.to_owned(),
                    hold: hold.map(|(r, _)| r.to_string()),
                    hold_since_ms: hold.map(|(_, since)| since.0),
                    alert: hold.is_some_and(|(r, _)| r.is_alert()),
                    frozen_by: s.state.frozen().map(|f| f.by.to_string()),
                    approval: s.state.approval().map(|a| format!("{} by {}", a.to, a.by)),
                    changes: s.applied,
                    last_change_ms: s.state.last_change().map(|t| t.0),
                    last_outcome: s.last_outcome.clone(),
                    retry_at_ms: (s.backoff.failures > 0).then_some(s.backoff.not_before.0),
                    now_ms: now.0,
                    drill: drills::status(s.state.drill(), s.last_drill.as_ref(), now),
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
            .map(|s| s.state.current().clone())
    }
}

struct WriteJob {
    gate: GateId,
    writer: FencedWriter,
    accept_writer: FencedWriter,
    change: PlannedChange,
    expected_epoch: u64,
    desired: crate::route53::DesiredRecords,
    delay: Duration,
}

/// Whether `change` gives the secondary of a failover gate the traffic it did not have.
fn moves_to_secondary(gate: &GateConfig, change: &PlannedChange) -> bool {
    let quorum::gate::GateKind::Failover { secondary, .. } = gate.spec.kind() else {
        return false;
    };
    let is_secondary = |s: &DesiredState| matches!(s, DesiredState::Failover { active } if *active == secondary.id);
    is_secondary(&change.to) && !is_secondary(&change.from)
}

fn action(a: ChangeAction) -> &'static str {
    a.as_str()
}

fn records_text<'a>(records: impl Iterator<Item = &'a crate::route53::RecordSet>) -> Vec<String> {
    records.map(ToString::to_string).collect()
}

fn decision_body(change: &PlannedChange, epoch: u64, desired_digest: &str) -> Value {
    let authority = match &change.authority {
        Authority::Automatic => json!({ "kind": "automatic" }),
        Authority::Approved(a) => {
            json!({ "kind": "approved", "by": a.by.as_str(), "seq": a.seq, "to": a.to.as_str() })
        }
        Authority::Override { by, seq, force } => {
            json!({ "kind": "override", "by": by.as_str(), "seq": seq, "force": force })
        }
        // The failback that ends a drill: the signed drill command is its approval.
        Authority::Drill { by, seq } => {
            json!({ "kind": "drill", "by": by.as_str(), "seq": seq })
        }
    };
    json!({
        "gate": change.gate.as_str(),
        "mode": change.mode.as_str(),
        "from": change.from.to_string(),
        "to": change.to.to_string(),
        "reason": change.reason.code(),
        "authority": authority,
        "rpo_lag_ms": change.rpo_lag_ms,
        "based_on_epoch": epoch,
        "desired_records_sha256": desired_digest,
        "certificates": change.certificates.iter().map(|c| STANDARD.encode(c.to_bytes())).collect::<Vec<_>>(),
        "certificate_sha256": change.certificates.iter().map(|c| c.digest_hex()).collect::<Vec<_>>(),
    })
}

fn outcome_label(o: &ApplyOutcome) -> &'static str {
    match o {
        ApplyOutcome::Applied { .. } => "applied",
        ApplyOutcome::AlreadyInPlace { .. } => "already_in_place",
        ApplyOutcome::Stale { .. } => "stale",
        ApplyOutcome::LostRace { .. } => "lost_race",
    }
}

fn outcome_body(gate: &str, result: &Result<ApplyOutcome, WriteError>, times: Times) -> Value {
    match result {
        Ok(ApplyOutcome::Applied {
            epoch,
            change_id,
            in_sync,
        }) => {
            json!({ "gate": gate, "result": "applied", "epoch": epoch, "change_id": change_id, "in_sync": in_sync,
                    "accepted_at_ms": times.accepted_at, "in_sync_at_ms": times.in_sync_at })
        }
        Ok(ApplyOutcome::AlreadyInPlace { epoch }) => {
            json!({ "gate": gate, "result": "already_in_place", "epoch": epoch })
        }
        Ok(ApplyOutcome::Stale {
            expected_epoch,
            current,
        }) => {
            json!({ "gate": gate, "result": "stale", "expected_epoch": expected_epoch, "current_epoch": current.as_ref().map(|f| f.epoch) })
        }
        Ok(ApplyOutcome::LostRace { current, messages }) => {
            json!({ "gate": gate, "result": "lost_race", "current_epoch": current.as_ref().map(|f| f.epoch), "messages": messages })
        }
        Err(e) => json!({ "gate": gate, "result": "error", "error": e.to_string() }),
    }
}

fn action_detail(c: &OperatorCommand) -> String {
    match &c.action {
        Action::Freeze | Action::Unfreeze | Action::DrillAbort => String::new(),
        Action::Approve { to } => format!("to={to}"),
        Action::Override { desired, force } => format!("{desired} force={force}"),
        Action::Drill {
            duration_ms,
            dry_run,
        } => format!(
            "duration_ms={duration_ms} dry_run={dry_run} ends_at_ms={}",
            c.issued_at.plus(u64::from(*duration_ms)).0
        ),
    }
}

/// When Route 53 accepted a batch and confirmed it INSYNC (this agent's clock).
#[derive(Debug, Default, Clone, Copy)]
struct Times {
    accepted_at: Option<u64>,
    in_sync_at: Option<u64>,
}
