//! The gate driver's side of game-day drills (see [`crate::drill`]): the machine decides
//! when a drill starts, ends and is finished; here its votes start and stop on the board,
//! its end is audited, and this agent judges it from its own audit log.

use std::sync::Arc;

use quorum::gate::{Drill, DrillEnd, FinishedDrill};
use quorum::GateId;

use super::{GateDriver, Slot};

/// How long a drill's verdict waits for the node's pending decision records.
const JOURNAL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
use crate::drill::agent::{self as drills, FinishedRecord};

impl GateDriver {
    /// A drill just started (or was restored): the node votes its primary down from now on.
    pub(super) fn drill_started(&self, slot: &Slot, d: &Drill) {
        let gate = slot.id().clone();
        tracing::warn!(%gate, seq = d.seq, ends_at = d.ends_at.0, dry_run = d.dry_run, "drill started: this agent treats the primary as failed");
        if let Some(check) = drills::primary_check(&slot.cfg) {
            self.board.set(
                check,
                crate::drill::DrillVote {
                    gate: gate.clone(),
                    by: d.by.clone(),
                    seq: d.seq,
                    until: d.ends_at,
                },
            );
        }
        metrics::gauge!(crate::drill::DRILL_ACTIVE, "gate" => gate.to_string()).set(1.0);
    }

    /// Audits a drill's end and stops its votes.
    pub(super) fn drill_ended(&self, slot: &Slot, seq: u64, end: &DrillEnd) {
        let gate = slot.id().clone();
        if let Some(check) = drills::primary_check(&slot.cfg) {
            self.board.clear(&check, &gate);
        }
        self.appender.append(
            self.clock.now(),
            "drill_end",
            drills::end_body(&gate, seq, end),
            None,
        );
        tracing::warn!(%gate, seq, cause = end.cause.code(), "drill ended: {}; the gate returns to the primary", end.cause);
    }

    /// A drill is over and the gate back at the primary (or out of grace): this agent judges
    /// it from its own audit log, off the round's path.
    pub(super) fn drill_finish(self: &Arc<Self>, slot: &mut Slot, done: FinishedDrill) {
        let gate = slot.id().clone();
        metrics::gauge!(crate::drill::DRILL_ACTIVE, "gate" => gate.to_string()).set(0.0);
        tracing::warn!(%gate, seq = done.drill.seq, back_at_primary = done.back_at_primary, "drill finished");
        slot.last_drill = Some(FinishedRecord::new(&done));
        let path = self.audit.as_ref().map(|a| {
            a.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .path()
                .to_owned()
        });
        let (me, cfg) = (Arc::clone(self), slot.cfg.clone());
        let journal = self.journal.get().cloned();
        self.spawn(async move {
            let agent = me.agent.clone();
            let judged = tokio::task::spawn_blocking(move || {
                // The round that finished the drill handed its transitions (the primary's
                // recovery) to the node's journal: judge once they are in the log.
                if let Some(j) = journal.filter(|j| !j.wait_idle(JOURNAL_WAIT)) {
                    tracing::warn!(
                        pending = j.pending(),
                        "judging a drill before the node's decision records are all written"
                    );
                }
                path.map(|p| drills::judge(&p, &agent, &cfg, &done))
            })
            .await;
            let verdict = match judged {
                Ok(Some(Ok(v))) => v,
                Ok(Some(Err(e))) => {
                    tracing::error!(%gate, error = %e, "cannot judge the drill from the audit log");
                    return;
                }
                Ok(None) | Err(_) => return,
            };
            me.drill_judged(&gate, verdict);
        });
    }

    /// Records this agent's verdict on a finished drill: audit, gauge, status.
    fn drill_judged(&self, gate: &GateId, verdict: drills::Verdict) {
        self.appender
            .append(self.clock.now(), "drill_result", verdict.body(gate), None);
        drills::set_result_gauge(gate, Some(verdict.result()));
        tracing::warn!(%gate, seq = verdict.seq, result = verdict.result(), "drill judged: {}", verdict.summary());
        let mut inner = self.lock();
        if let Some(last) = inner
            .slots
            .get_mut(gate)
            .and_then(|s| s.last_drill.as_mut())
            .filter(|l| l.seq == verdict.seq)
        {
            last.result = Some(verdict.result().to_owned());
        }
    }
}
