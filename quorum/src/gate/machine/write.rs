//! The write path of a gate machine: a decision persisted, the batch planned, persisted and
//! sent, its end judged (also when its answer was lost), the velocity history by fence epoch,
//! reads, and the promotion a won failover owes.

use super::{
    moves_to_secondary, Action, AuditRecord, Backoff, Committed, Failure, GateMachine, Note,
    Outcome, Pending, Phase, Planned, Promoted, Records, Token, View,
};
use crate::gate::{DesiredState, Mode, PlannedChange};
use crate::time::UnixMillis;

impl GateMachine {
    /// A planned change: persist the decision first; act on it once it is durable.
    pub(super) fn decide(&mut self, change: PlannedChange, rank: usize) {
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

    pub(super) fn appended(&mut self, token: Token, result: Result<(), Failure>) {
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

    pub(super) fn decision_persisted(
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
            self.end_write(change.to, Outcome::DryRun);
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

    pub(super) fn planned(
        &mut self,
        token: Token,
        now: UnixMillis,
        result: Result<Planned, Failure>,
    ) {
        let change = match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Planning { token: t, change } if t == token => change,
            // Not the answer this gate waits for (a stale or repeated one): nothing changes.
            other => return self.phase = other,
        };
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

    pub(super) fn committed(
        &mut self,
        token: Token,
        now: UnixMillis,
        result: Result<Committed, Failure>,
    ) {
        let (change, expected_epoch) = match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Committing {
                token: t,
                change,
                expected_epoch,
            } if t == token => (change, expected_epoch),
            other => return self.phase = other,
        };
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
    pub(super) fn finish_view(
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

    pub(super) fn end_write(&mut self, to: DesiredState, outcome: Outcome) {
        self.push(Action::Append {
            token: None,
            record: AuditRecord::Outcome {
                to: to.clone(),
                result: outcome.clone(),
            },
        });
        self.note(Note::WriteEnded { to, outcome });
    }

    pub(super) fn write_failed(&mut self, to: DesiredState, error: Failure, now: UnixMillis) {
        self.end_write(to, Outcome::Failed(error.clone()));
        self.fail("write", error, now);
    }

    pub(super) fn fail(&mut self, what: &'static str, error: Failure, now: UnixMillis) {
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
    pub(super) fn learn(&mut self, epoch: u64, history: &[(u64, UnixMillis)], now: UnixMillis) {
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
    pub(super) fn sync_changes(&mut self) {
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
    pub(super) fn fence_history(&self) -> Vec<(u64, UnixMillis)> {
        let keep = usize::try_from(self.cfg.spec.policy().max_changes).unwrap_or(usize::MAX);
        let skip = self.epochs.len().saturating_sub(keep.saturating_sub(1));
        self.epochs
            .iter()
            .skip(skip)
            .map(|(e, t)| (*e, *t))
            .collect()
    }

    /// Forgets pending batches the fence has moved past (`epoch` > their base).
    pub(super) fn resolve_pending(&mut self, epoch: u64) {
        self.pending.retain(|p| p.expected_epoch >= epoch);
    }

    /// The change is in Route 53 (ours, or found in place): adopt it, audit, maybe promote.
    pub(super) fn changed(
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

    pub(super) fn adopt(&mut self, change: &PlannedChange, now: UnixMillis) {
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
    pub(super) fn promotes(&self, change: &PlannedChange) -> bool {
        self.cfg.promote && moves_to_secondary(&self.cfg.spec, &change.from, &change.to)
    }

    pub(super) fn start_promote(&mut self, epoch: u64) {
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

    pub(super) fn promoted(&mut self, token: Token, result: Result<Promoted, Failure>) {
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Promoting { token: t, epoch } if t == token => self.promote_ended(epoch, result),
            other => self.phase = other,
        }
    }

    /// A promotion ended (or could not start): audited; a failure is an alert for an
    /// operator, never retried behind their back.
    pub(super) fn promote_ended(&mut self, epoch: u64, result: Result<Promoted, Failure>) {
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

    pub(super) fn read_done(&mut self, now: UnixMillis, result: Result<View, Failure>) {
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
}
