//! Executing a machine's actions, and feeding their results back as events.

use std::sync::Arc;
use std::time::Duration;

use quorum::gate::machine::{
    Accepted, Action, Committed, Event, Failure, Planned, Promoted, Records, Token, View,
};
use quorum::gate::DesiredState;
use quorum::{GateId, UnixMillis};

use super::{journal, notes, GateDriver, Inner, Slot};
use crate::gates::promote::PromoteOutcome;
use crate::gates::records::{control_records, state_from_records};
use crate::route53::{self, plan_from_view, Plan, Sent, WriteError};
use crate::telemetry as t;

/// A Route 53 failure in the machine's terms.
fn failure(e: &WriteError) -> Failure {
    let label = match e {
        WriteError::Api(a) => a.label(),
        _ => "error",
    };
    Failure::new(label, e.to_string())
}

/// A gate without a Route 53 writer asked for I/O (never for a live gate): answered, so the
/// machine is never left waiting.
fn no_writer() -> Failure {
    Failure::new("internal", "this gate has no Route 53 writer")
}

/// What the machine needs of a read: the fence, and the gate's state by its records.
fn view_of(cfg: &config::GateConfig, view: &route53::View) -> View {
    let records = match state_from_records(cfg, &view.records) {
        Some(state) => Records::State(state),
        None if view.records.is_empty() => Records::Empty,
        None => Records::Foreign,
    };
    let fence = view.fence.as_ref();
    View {
        epoch: view.epoch(),
        by: fence.map(|f| f.by.clone()),
        records,
        history: fence
            .map(|f| {
                f.changes
                    .iter()
                    .map(|(e, at)| (*e, UnixMillis(*at)))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

impl GateDriver {
    /// Feeds one event to `gate`'s machine and executes what it asks for.
    pub(super) fn feed(self: &Arc<Self>, gate: &GateId, event: Event) {
        self.feed_with(gate, |_| {}, event);
    }

    /// [`feed`](Self::feed), after `prepare` ran on the slot under the same lock.
    fn feed_with(self: &Arc<Self>, gate: &GateId, prepare: impl FnOnce(&mut Slot), event: Event) {
        let mut inner = self.lock();
        let Some(slot) = inner.slots.get_mut(gate) else {
            return;
        };
        prepare(slot);
        slot.machine.handle(event);
        self.execute_all(&mut inner, gate);
    }

    /// Executes every queued action of `gate`'s machine. Never blocks: I/O runs on the
    /// appender thread or in tasks, which feed their results back.
    pub(super) fn execute_all(self: &Arc<Self>, inner: &mut Inner, gate: &GateId) {
        loop {
            let Some(slot) = inner.slots.get_mut(gate) else {
                return;
            };
            let Some(action) = slot.machine.poll_action() else {
                Self::epoch_gauge(inner, gate);
                return;
            };
            self.execute(inner, gate, action);
        }
    }

    fn epoch_gauge(inner: &Inner, gate: &GateId) {
        if let Some(slot) = inner.slots.get(gate) {
            #[allow(clippy::cast_precision_loss)]
            let epoch = slot.machine.epoch() as f64;
            metrics::gauge!(t::GATE_EPOCH, "gate" => gate.to_string()).set(epoch);
        }
    }

    fn execute(self: &Arc<Self>, inner: &mut Inner, gate: &GateId, action: Action) {
        let Some(slot) = inner.slots.get_mut(gate) else {
            return;
        };
        match action {
            Action::Append { token, record } => {
                let (event, body) = journal::body(slot, &record);
                let done = token.map(|token| {
                    let (me, gate) = (Arc::clone(self), gate.clone());
                    Box::new(move |result: Result<(), String>| {
                        let result = result.map_err(|e| Failure::new("audit", e));
                        me.feed(&gate, Event::Appended { token, result });
                    }) as super::appender::Done
                });
                self.appender.append(self.clock.now(), event, body, done);
            }
            Action::Read { token } => self.read(slot, gate, token),
            Action::Plan {
                token,
                to,
                expected_epoch,
                delay_ms,
                history,
            } => self.plan(slot, gate, token, &to, expected_epoch, delay_ms, history),
            Action::Commit { token, plan } => self.commit(slot, gate, token, plan),
            Action::Promote { token, .. } => self.promote(slot, gate, token),
            Action::CommandDone { token, result } => {
                if let Some((verified, reply)) = slot.commands.remove(&token) {
                    if result.is_ok() {
                        // Audited and applied: from now on the same bytes are a duplicate.
                        inner.operators.commit(&verified);
                    }
                    let _ = reply.send(result);
                }
            }
            Action::DrillStarted(d) => self.drill_started(slot, &d),
            Action::DrillEnded { seq, end } => self.drill_ended(slot, seq, &end),
            Action::DrillFinished(done) => self.drill_finish(slot, done),
            Action::SetAlert(alert) => {
                metrics::gauge!(t::GATE_ALERT, "gate" => gate.to_string()).set(if alert {
                    1.0
                } else {
                    0.0
                });
            }
            Action::Note(note) => notes::log(gate, &note),
        }
    }

    /// Spawns I/O on the current runtime, or (from the appender's thread) on the one the
    /// driver was made in.
    pub(super) fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        match tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| self.runtime.clone())
        {
            Some(rt) => {
                rt.spawn(task);
            }
            None => tracing::error!("gate driver: no runtime to run I/O on"),
        }
    }

    fn read(self: &Arc<Self>, slot: &Slot, gate: &GateId, token: Token) {
        let (me, gate) = (Arc::clone(self), gate.clone());
        let (Some(writer), cfg) = (slot.writer.clone(), slot.cfg.clone()) else {
            let result = Err(no_writer());
            let now = self.clock.now();
            return self.spawn(async move { me.feed(&gate, Event::Read { token, now, result }) });
        };
        self.spawn(async move {
            let result = match control_records(&cfg, &cfg.spec.normal_state()) {
                Ok(scope) => writer
                    .read(&scope)
                    .await
                    .map(|v| view_of(&cfg, &v))
                    .map_err(|e| failure(&e)),
                Err(e) => Err(Failure::new("config", e.to_string())),
            };
            let now = me.clock.now();
            me.feed(&gate, Event::Read { token, now, result });
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn plan(
        self: &Arc<Self>,
        slot: &Slot,
        gate: &GateId,
        token: Token,
        to: &DesiredState,
        expected_epoch: u64,
        delay_ms: u64,
        history: Vec<(u64, UnixMillis)>,
    ) {
        let (me, gate) = (Arc::clone(self), gate.clone());
        let (Some(writer), cfg) = (slot.writer.clone(), slot.cfg.clone()) else {
            let result = Err(no_writer());
            let now = self.clock.now();
            return self
                .spawn(async move { me.feed(&gate, Event::Planned { token, now, result }) });
        };
        let desired = control_records(&cfg, to);
        self.spawn(async move {
            if delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            }
            let desired = match desired {
                Ok(d) => d,
                Err(e) => {
                    let result = Err(Failure::new("config", e.to_string()));
                    let now = me.clock.now();
                    return me.feed(&gate, Event::Planned { token, now, result });
                }
            };
            let planned = async {
                let view = writer.read(&desired).await?;
                let mut changes: Vec<(u64, u64)> =
                    history.iter().map(|(e, at)| (*e, at.0)).collect();
                changes.push((expected_epoch.saturating_add(1), me.clock.now().0));
                let plan = plan_from_view(
                    &view,
                    expected_epoch,
                    &desired,
                    writer.fence_name(),
                    &writer.target().agent,
                    Some(changes),
                )?;
                Ok::<_, WriteError>((view, plan))
            }
            .await;
            let now = me.clock.now();
            match planned {
                Ok((_, Plan::Write(w))) => {
                    let result = Ok(Planned::Write {
                        expected_epoch: w.expected_epoch,
                        next_epoch: w.next.epoch,
                    });
                    me.feed_with(
                        &gate,
                        |slot| {
                            slot.plans.insert(token, w);
                        },
                        Event::Planned { token, now, result },
                    );
                }
                Ok((view, Plan::Done(_))) => {
                    let result = Ok(Planned::Nothing(view_of(&cfg, &view)));
                    me.feed(&gate, Event::Planned { token, now, result });
                }
                Err(e) => {
                    let result = Err(failure(&e));
                    me.feed(&gate, Event::Planned { token, now, result });
                }
            }
        });
    }

    /// Sends the batch planned under `plan`, then waits for INSYNC itself, timing both (the
    /// audit's `accepted_at_ms` and `in_sync_at_ms`, which drills report).
    fn commit(self: &Arc<Self>, slot: &mut Slot, gate: &GateId, token: Token, plan: Token) {
        let (me, gate) = (Arc::clone(self), gate.clone());
        let (Some(writer), Some(write)) = (slot.writer.clone(), slot.plans.remove(&plan)) else {
            let result = Err(Failure::new(
                "internal",
                format!("no batch planned under {plan}"),
            ));
            let now = self.clock.now();
            self.spawn(async move { me.feed(&gate, Event::Committed { token, now, result }) });
            return;
        };
        let cfg = slot.cfg.clone();
        self.spawn(async move {
            let result = match writer.send(&write).await {
                Ok(Sent::Accepted {
                    epoch,
                    change_id,
                    in_sync,
                }) => {
                    let accepted_at = me.clock.now().0;
                    let in_sync = in_sync || writer.wait_insync(&change_id).await;
                    let in_sync_at = in_sync.then(|| me.clock.now().0);
                    Ok(Committed::Accepted(Accepted {
                        epoch,
                        change_id,
                        in_sync,
                        accepted_at_ms: Some(accepted_at),
                        in_sync_at_ms: in_sync_at,
                    }))
                }
                Ok(Sent::Rejected { view, messages }) => Ok(Committed::Rejected {
                    view: view_of(&cfg, &view),
                    messages,
                }),
                Err(e) => Err(failure(&e)),
            };
            let now = me.clock.now();
            me.feed(&gate, Event::Committed { token, now, result });
        });
    }

    fn promote(self: &Arc<Self>, slot: &Slot, gate: &GateId, token: Token) {
        let (me, gate) = (Arc::clone(self), gate.clone());
        let (Some(promoter), Some(p)) = (slot.promoter.clone(), slot.cfg.promote.clone()) else {
            let result = Err(Failure::new("config", "no [promote] for this gate"));
            let now = self.clock.now();
            self.spawn(async move { me.feed(&gate, Event::Promoted { token, now, result }) });
            return;
        };
        self.spawn(async move {
            let result = match promoter.promote(&p.action).await {
                Ok(PromoteOutcome::Started) => Ok(Promoted::Started),
                Ok(PromoteOutcome::AlreadyDone(why)) => Ok(Promoted::AlreadyDone(why)),
                Err(e) => Err(Failure::new(e.label(), e.to_string())),
            };
            let now = me.clock.now();
            me.feed(&gate, Event::Promoted { token, now, result });
        });
    }
}
