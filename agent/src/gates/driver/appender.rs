//! The gates' audit appends, in the order the machines asked for them, on a thread of their
//! own: an fsync never holds the driver lock or a runtime thread, and the record an action
//! waits for is durable before that action runs (its `done` feeds the machine).

use std::sync::mpsc;

use quorum::UnixMillis;
use serde_json::Value;

use crate::audit::{self, SharedAudit};
use crate::telemetry as t;

/// Called once the record is durable (`Ok`) or could not be written.
pub type Done = Box<dyn FnOnce(Result<(), String>) + Send>;

struct Job {
    at: UnixMillis,
    event: &'static str,
    body: Value,
    done: Option<Done>,
}

/// A handle to the appender thread.
pub struct Appender {
    tx: Option<mpsc::Sender<Job>>,
    /// The thread could not start: every append fails (never a silent success).
    broken: bool,
}

impl Appender {
    /// Starts the thread (none without a log: every append then succeeds at once).
    pub fn start(log: Option<SharedAudit>) -> Self {
        let Some(log) = log else {
            return Self {
                tx: None,
                broken: false,
            };
        };
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("gate-audit".into())
            .spawn(move || {
                for job in rx {
                    let result = audit::append_shared(&log, job.at, job.event, job.body)
                        .map(|_| ())
                        .map_err(|e| e.to_string());
                    if let Err(e) = &result {
                        metrics::counter!(t::AUDIT_ERRORS).increment(1);
                        tracing::error!(event = job.event, error = %e, "audit record not persisted");
                    }
                    if let Some(done) = job.done {
                        done(result);
                    }
                }
            });
        match spawned {
            Ok(_) => Self {
                tx: Some(tx),
                broken: false,
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot start the gates' audit thread; every gate append will fail");
                Self {
                    tx: None,
                    broken: true,
                }
            }
        }
    }

    /// Queues a record. `done` runs on the appender thread (or, without a log, on a
    /// thread of its own — never inline, so the caller may hold its lock).
    pub fn append(&self, at: UnixMillis, event: &'static str, body: Value, done: Option<Done>) {
        let job = Job {
            at,
            event,
            body,
            done,
        };
        match &self.tx {
            Some(tx) => {
                if let Err(mpsc::SendError(job)) = tx.send(job) {
                    if let Some(done) = job.done {
                        std::thread::spawn(move || done(Err("the audit thread stopped".into())));
                    }
                }
            }
            None => {
                let result = if self.broken {
                    Err("the audit thread could not start".to_owned())
                } else {
                    Ok(())
                };
                if let Some(done) = job.done {
                    std::thread::spawn(move || done(result));
                }
            }
        }
    }
}
