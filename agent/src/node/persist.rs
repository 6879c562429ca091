//! The node's side of persistence: which decision changes an evaluation makes, as audit
//! records, answers and the decisions file, handed to the [`Journal`] (see `journal.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use quorum::{AgentId, Basis, CheckId, DecisionMachine, Outcome, State, Transition, UnixMillis};

use super::journal::{Answer, Job, Sinks};
use super::{Node, OUTCOMES};
use crate::audit::SharedAudit;
use crate::decisions::Decision;
use crate::telemetry::checks;

/// The node's side of the decisions file.
#[derive(Debug, Default)]
pub(super) struct Persisted {
    /// Decision records go to an audit log (see [`Node::set_audit`]).
    pub(super) audited: bool,
    /// The answers last handed to the journal, in `engine.machines()` order.
    pub(super) answered: Vec<Answer>,
    pub(super) decisions: BTreeMap<CheckId, Decision>,
    /// Checks whose decided state is not in `decisions` yet (every check not restored, and
    /// any check that just made a transition).
    pub(super) pending: BTreeSet<CheckId>,
    /// Checks that started undecided and have had no quorum verdict yet.
    pub(super) undecided: BTreeSet<CheckId>,
    /// `decisions` holds changes not yet handed to the journal (at the next round's evaluation).
    pub(super) unsaved: bool,
    /// The wire bytes of ballots in `decisions`, so the checks one round decided share one copy.
    pub(super) wires: BTreeMap<(AgentId, u64), Arc<[u8]>>,
}

/// What a machine's check answers now.
pub(super) fn answer_of(m: &DecisionMachine) -> Answer {
    Answer {
        decision: m.decision(),
        basis: m.basis(),
        since: m.since(),
    }
}

impl Node {
    /// Writes the decisions file in `state_dir` from now on (see [`crate::decisions`]).
    pub fn set_decisions_dir(&mut self, state_dir: PathBuf) {
        let agent = self.cfg.local.agent_id.clone();
        let sinks = Sinks {
            state_dir: Some((state_dir, agent)),
            ..self.journal.sinks()
        };
        self.journal.set_sinks(sinks);
    }

    /// Uses `log` for decision records from now on: a changed answer is published only once
    /// its record is in the log.
    pub fn set_audit(&mut self, log: SharedAudit) {
        self.persisted.audited = true;
        let sinks = Sinks {
            audit: Some(log),
            ..self.journal.sinks()
        };
        self.journal.set_sinks(sinks);
    }

    /// Waits (at most `limit`) until every decision change so far is written and answered;
    /// whether it is.
    pub fn wait_decisions_written(&self, limit: Duration) -> bool {
        self.journal.wait_idle(limit)
    }

    /// A handle on the queue that writes decision changes (for whoever must read the audit
    /// log only once this round's records are in it).
    #[must_use]
    pub fn journal(&self) -> super::journal::Journal {
        self.journal.clone()
    }

    /// Decision changes handed to the journal and not yet on disk.
    #[must_use]
    pub fn persist_pending(&self) -> usize {
        self.journal.pending()
    }

    /// Audits, logs and counts `transitions`, and refreshes every check's gauges (atomics:
    /// cheap enough for every evaluation, early ones included). `round`: a round's own
    /// evaluation, when the decisions file is brought up to date (see `persist_decisions`).
    /// The disk I/O is the journal's: this lock never waits for it.
    pub(super) fn after_evaluate(
        &mut self,
        now: UnixMillis,
        transitions: &[Transition],
        round: bool,
    ) {
        let mut job = Job {
            at: now,
            ..Job::default()
        };
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
            self.audit_transition(&mut job, tr);
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
        self.persist_decisions(&mut job, transitions, round);
        for (m, last) in self
            .engine
            .machines()
            .zip(self.persisted.answered.iter_mut())
        {
            let now_answers = answer_of(m);
            if *last != now_answers {
                *last = now_answers;
                job.answers.push((m.check().clone(), now_answers));
            }
        }
        self.journal.submit(job);
    }

    /// Restart safety: audits each undecided check's first verdict, and records a check's
    /// decision when it made a transition or got its first decided state with an agreeing
    /// certificate. The file is written at the round's evaluation (`round`) when something
    /// changed — once per round at most, however many checks and early evaluations — after
    /// each change's audit record (a transition or `decided` record), which the restore
    /// reconciles with the file. A failed write is logged and counted and does not stop the
    /// answers (that would override the quorum).
    fn persist_decisions(&mut self, job: &mut Job, transitions: &[Transition], round: bool) {
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
            self.audit_decided(job, &check);
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
        job.snapshot = Some(p.decisions.clone());
    }

    /// Appends a `decided` record: an undecided check's first quorum verdict (its health
    /// answer changes from UNDECIDED). Like a transition, it carries its certificate.
    fn audit_decided(&self, job: &mut Job, check: &CheckId) {
        let (true, Some(m)) = (self.persisted.audited, self.engine.machine(check)) else {
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
        job.records.push(("decided", body));
    }

    /// The transition's audit record: the journal appends it before any answer reflects the
    /// new state. A failed append does not stop the data-plane answer (that would override
    /// the quorum) but is logged and counted.
    fn audit_transition(&self, job: &mut Job, tr: &Transition) {
        if !self.persisted.audited {
            return;
        }
        let body = serde_json::json!({
            "check": tr.check.as_str(),
            "from": tr.from.as_str(),
            "to": tr.to.as_str(),
            "rounds": tr.rounds,
            "certificate": STANDARD.encode(tr.certificate.to_bytes()),
            "certificate_sha256": tr.certificate.digest_hex(),
        });
        job.records.push(("transition", body));
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

fn outcome_of(s: State) -> Outcome {
    match s {
        State::Healthy => Outcome::Healthy,
        State::Unhealthy => Outcome::Unhealthy,
    }
}
