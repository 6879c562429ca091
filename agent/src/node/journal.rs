//! Persistence off the node lock: the audit records of decision changes and the decisions
//! file are written on a thread of their own, and what `/v1/health` answers follows them.
//!
//! The node evaluates under its lock and hands the journal a [`Job`]: the audit records the
//! evaluation made (`transition`, `decided`), the answers it changed and, at a round, a
//! snapshot of the decisions file. The journal thread appends the records (each fsynced),
//! then publishes the job's answers, then writes the snapshot. So while the disk is slow the
//! node lock is free, `/v1/health` keeps answering the old verdict, and it answers a new one
//! only once the record of the change is on disk (a restart then restores it, see
//! [`crate::decisions::restore`]). Jobs are done in the order the node made them; a snapshot
//! that a later job's snapshot supersedes is not written.
//!
//! A failed append or write is logged and counted, and the answer still changes (withholding
//! it would override the quorum). A job with nothing to write is published at once when no
//! earlier job is outstanding (a node without audit log or state dir: unit tests).

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use quorum::{AgentId, Basis, CheckId, State, UnixMillis};

use crate::audit::{self, SharedAudit};
use crate::decisions::{self, Decision};
use crate::telemetry as t;

/// What `/v1/health/{check}` answers for one check (the tally in its detail line is live).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// `None`: undecided.
    pub decision: Option<State>,
    pub basis: Basis,
    pub since: UnixMillis,
}

/// One evaluation's persistence work.
#[derive(Debug, Default)]
pub struct Job {
    pub at: UnixMillis,
    /// Audit records (`event`, body), appended in order before any answer is published.
    pub records: Vec<(&'static str, serde_json::Value)>,
    /// Answers that changed; published once the records are on disk.
    pub answers: Vec<(CheckId, Answer)>,
    /// The decisions file to write after publishing (a round's evaluation).
    pub snapshot: Option<BTreeMap<CheckId, Decision>>,
}

impl Job {
    fn writes(&self) -> bool {
        !self.records.is_empty() || self.snapshot.is_some()
    }
}

/// Where the journal writes: the audit log, the state dir (decisions file) and this agent.
#[derive(Debug, Clone, Default)]
pub struct Sinks {
    pub audit: Option<SharedAudit>,
    pub state_dir: Option<(PathBuf, AgentId)>,
}

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<Job>,
    /// The thread holds a job (its records or snapshot are being written).
    busy: bool,
    answers: BTreeMap<CheckId, Answer>,
    sinks: Sinks,
    running: bool,
}

#[derive(Debug, Default)]
struct Shared {
    inner: Mutex<Inner>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The node's persistence queue and the published answers (see the module docs). Clones
/// share one queue.
#[derive(Debug, Clone)]
pub struct Journal {
    shared: Arc<Shared>,
}

impl Journal {
    /// A journal answering `answers` (what the node starts from: restored, initial or
    /// undecided; nothing to persist).
    #[must_use]
    pub fn new(answers: BTreeMap<CheckId, Answer>) -> Self {
        let shared = Arc::new(Shared::default());
        shared.lock().answers = answers;
        Self { shared }
    }

    /// Writes to `sinks` from now on.
    pub fn set_sinks(&self, sinks: Sinks) {
        self.shared.lock().sinks = sinks;
    }

    pub fn sinks(&self) -> Sinks {
        self.shared.lock().sinks.clone()
    }

    /// What `/v1/health/{check}` answers now.
    #[must_use]
    pub fn answer(&self, check: &CheckId) -> Option<Answer> {
        self.shared.lock().answers.get(check).copied()
    }

    /// Every check's answer.
    #[must_use]
    pub fn answers(&self) -> BTreeMap<CheckId, Answer> {
        self.shared.lock().answers.clone()
    }

    /// Queues `job`. A job that writes nothing is published at once when nothing is pending
    /// (so answers keep their order); otherwise the journal thread does it.
    pub fn submit(&self, mut job: Job) {
        let mut inner = self.shared.lock();
        // Without a sink there is nothing to write it to: memory only.
        if inner.sinks.audit.is_none() {
            job.records.clear();
        }
        if inner.sinks.state_dir.is_none() {
            job.snapshot = None;
        }
        if !job.writes() && job.answers.is_empty() {
            return;
        }
        if !job.writes() && inner.queue.is_empty() && !inner.busy {
            inner.answers.extend(job.answers);
            return;
        }
        inner.queue.push_back(job);
        set_pending(&inner);
        if !inner.running {
            inner.running = true;
            spawn(Arc::downgrade(&self.shared));
        }
        self.shared.cv.notify_all();
    }

    /// Jobs not done yet (queued or being written).
    #[must_use]
    pub fn pending(&self) -> usize {
        let inner = self.shared.lock();
        inner.queue.len() + usize::from(inner.busy)
    }

    /// Waits (at most `limit`) until every job submitted so far is done; whether it is.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let inner = self.shared.lock();
        let (inner, _) = self
            .shared
            .cv
            .wait_timeout_while(inner, limit, |i| !i.queue.is_empty() || i.busy)
            .unwrap_or_else(PoisonError::into_inner);
        inner.queue.is_empty() && !inner.busy
    }
}

fn set_pending(inner: &Inner) {
    let n = inner.queue.len() + usize::from(inner.busy);
    metrics::gauge!(t::PERSIST_PENDING).set(n as f64);
}

/// Starts the journal thread; it ends once the journal is dropped and nothing is queued.
fn spawn(weak: Weak<Shared>) {
    let started = std::thread::Builder::new()
        .name("journal".to_owned())
        .spawn(move || run(&weak));
    if let Err(e) = started {
        tracing::error!(error = %e, "cannot start the journal thread; decision changes are not persisted and not answered");
    }
}

fn run(weak: &Weak<Shared>) {
    loop {
        let Some(shared) = weak.upgrade() else {
            return;
        };
        let (job, sinks, superseded) = {
            let inner = shared.lock();
            let (mut inner, _) = shared
                .cv
                .wait_timeout_while(inner, Duration::from_millis(500), |i| i.queue.is_empty())
                .unwrap_or_else(PoisonError::into_inner);
            let Some(job) = inner.queue.pop_front() else {
                continue;
            };
            inner.busy = true;
            set_pending(&inner);
            let superseded = inner.queue.iter().any(|j| j.snapshot.is_some());
            (job, inner.sinks.clone(), superseded)
        };
        // Only a weak reference across the I/O: a dropped node ends the thread afterwards.
        drop(shared);
        let Job {
            at,
            records,
            answers,
            snapshot,
        } = job;
        if let Some(log) = &sinks.audit {
            for (event, body) in records {
                if let Err(e) = audit::append_shared(log, at, event, body) {
                    metrics::counter!(t::AUDIT_ERRORS).increment(1);
                    tracing::error!(error = %e, event, "could not persist a decision change to the audit log; answering it anyway");
                }
            }
        }
        if let Some(shared) = weak.upgrade() {
            shared.lock().answers.extend(answers);
        }
        if let (Some(decisions), Some((dir, agent)), false) =
            (snapshot, &sinks.state_dir, superseded)
        {
            if let Err(e) = decisions::save(dir, agent, at, &decisions) {
                metrics::counter!(t::DECISIONS_WRITE_ERRORS).increment(1);
                tracing::error!(error = %e, "could not persist the decisions; the audit log still holds every change");
            }
        }
        let Some(shared) = weak.upgrade() else {
            return;
        };
        let mut inner = shared.lock();
        inner.busy = false;
        set_pending(&inner);
        shared.cv.notify_all();
    }
}
