//! The audit log: append-only JSON lines, each hash-chained to the previous one and fsynced
//! before the action it describes is taken ("persist before act").
//!
//! ```text
//! {"seq":0,"prev":"000…0","at_ms":…,"agent":"use1","event":"started","body":{…}}
//! {"seq":1,"prev":"<sha256 of line 0>","at_ms":…,"agent":"use1","event":"transition","body":{…}}
//! ```
//! `prev` is the SHA-256 (hex) of the previous line's bytes, so editing, dropping or reordering
//! any line breaks the chain at the next one. Certificates inside bodies (fields named
//! `certificate` or `certificates`, base64 of `quorum::Certificate::to_bytes`) are re-verified
//! by [`verify_file`] against the configured members' keys.
//!
//! - [`log`]: opening (with torn-tail repair), appending (one write per record, rolled back on
//!   failure), rotation (`audit.jsonl.1`, `.2` …, the chain carried across files).
//! - [`checkpoint`]: signed checkpoints that seal the chain's head with the agent's key.
//! - [`verify`]: `quorumgate verify --audit`.
//! - [`read`]: `since`/`limit` reads through a sparse in-memory index, while appends go on.

pub mod chain;
pub mod checkpoint;
pub mod files;
pub mod log;
pub mod read;
mod repair;
pub mod verify;

use std::path::PathBuf;

use quorum::UnixMillis;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use chain::read_records;
pub use log::{AuditLog, Options};
pub use verify::{verify_file, Summary, Trust};

/// `prev` of the very first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One line of the log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub seq: u64,
    pub prev: String,
    pub at_ms: u64,
    pub agent: String,
    pub event: String,
    pub body: Value,
}

/// Why the log cannot be written or does not verify.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit log line {line}: {why}")]
    Corrupt { line: u64, why: String },
    /// A record continues the chain but what it holds does not verify.
    #[error("audit log record seq {seq}: {why}")]
    Invalid { seq: u64, why: String },
    /// A record in the middle of a file does not continue the chain: not a crash (that tears
    /// only the last line), so the agent refuses to start rather than guess.
    #[error("audit log {path} line {line} (1-based): {why}; the chain is broken before the last line, which a crash cannot cause: keep the file for investigation, move it (and its rotated audit.jsonl.N siblings) out of the state directory, and start with a new log")]
    Broken {
        path: PathBuf,
        line: u64,
        why: String,
    },
    /// An append failed and the file could not be cut back to its last complete record.
    #[error("audit log {path} is poisoned since an earlier append failed and could not be rolled back ({why}); nothing more is appended until the agent restarts, which repairs the torn tail")]
    Poisoned { path: PathBuf, why: String },
}

pub(crate) fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The log shared by everything in the agent that acts (decisions, gate writes, operator
/// commands). Take the lock only around an append; never across an await.
pub type SharedAudit = std::sync::Arc<std::sync::Mutex<AuditLog>>;

/// Appends to a shared log (poisoning of the mutex is ignored: a panicked appender left at
/// worst a torn last line, which [`AuditLog::open`] repairs at the next start).
pub fn append_shared(
    log: &SharedAudit,
    at: UnixMillis,
    event: &str,
    body: Value,
) -> Result<Record, AuditError> {
    log.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .append(at, event, body)
}

/// Seals the chain's head with a checkpoint if the periodic policy says so (called once a
/// round); see [`AuditLog::seal_if_due`].
pub fn seal_shared(log: &SharedAudit, at: UnixMillis) -> Result<Option<Record>, AuditError> {
    log.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .seal_if_due(at)
}

#[cfg(test)]
mod tests;
