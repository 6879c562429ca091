//! Opening, appending and rotating the log.
//!
//! - Open walks every kept file (`audit.jsonl.N` … `.1`, `audit.jsonl`), carrying the chain
//!   across them. A torn last line of `audit.jsonl` (a crash mid-append) is moved to a side
//!   file and cut off, and an `audit_torn_tail` record says so; a bad line anywhere else is
//!   a hard error ([`AuditError::Broken`]).
//! - Append writes each record with one `write` and fsyncs it. On any error the file is cut
//!   back to its length before the append, so the next append continues a valid chain; if
//!   even that fails the log is poisoned: every later append fails until a restart repairs it.
//! - Before an append would grow `audit.jsonl` past `rotate_bytes`, the file is sealed with a
//!   checkpoint (when the agent's key is given), renamed to `.1` (older ones shift, those
//!   beyond `keep_files` are deleted), and the new file starts with an `audit_continued`
//!   record whose `prev` is the hash of the old file's last line.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use quorum::{AgentId, SigningKey, UnixMillis};
use serde_json::{json, Value};

use super::checkpoint::{self, Reason};
use super::read::{self, Index, SharedIndex};
use super::{chain, files, repair, sha_hex, AuditError, Record, GENESIS};

pub const CONTINUED: &str = "audit_continued";

/// Rotation and checkpoint settings.
#[derive(Clone)]
pub struct Options {
    /// `local.audit_rotate_bytes`.
    pub rotate_bytes: u64,
    /// `local.audit_keep_files`: rotated files kept (`audit.jsonl.1` … `.N`).
    pub keep_files: u64,
    /// The agent's key: checkpoints are written only with it.
    pub signer: Option<SigningKey>,
    pub checkpoint_every: u64,
    pub checkpoint_after_ms: u64,
    /// The time of the records open itself appends (torn-tail repair, continuation).
    pub now: UnixMillis,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            rotate_bytes: 64 * 1024 * 1024,
            keep_files: 8,
            signer: None,
            checkpoint_every: checkpoint::EVERY_RECORDS,
            checkpoint_after_ms: checkpoint::AFTER_MS,
            now: crate::clock::Clock::now(&crate::clock::SystemClock::default()),
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("rotate_bytes", &self.rotate_bytes)
            .field("keep_files", &self.keep_files)
            .field("signer", &self.signer.is_some())
            .finish_non_exhaustive()
    }
}

/// Faults injected into appends (tests only).
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// The next write stops after this many bytes (as ENOSPC would).
    pub short_write: Option<usize>,
    /// Cutting the file back fails.
    pub fail_truncate: bool,
    /// Every write fails, as on a full disk (until cleared).
    pub disk_full: bool,
}

/// An open audit log, positioned after its last record.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
    agent: AgentId,
    next_seq: u64,
    prev: String,
    /// Length of `audit.jsonl` up to its last record.
    len: u64,
    opts: Options,
    poisoned: Option<String>,
    last_checkpoint: Option<u64>,
    /// Records after the last checkpoint, and when the first of them was written.
    unsealed: u64,
    unsealed_since: Option<u64>,
    index: SharedIndex,
    #[cfg(test)]
    pub(crate) faults: Faults,
}

impl AuditLog {
    /// Opens (or creates) the log with default options and no checkpoints.
    pub fn open(path: &Path, agent: AgentId) -> Result<Self, AuditError> {
        Ok(Self::open_with(path, agent, Options::default())?.0)
    }

    /// [`open`](Self::open), also returning every record already in the log, across every
    /// kept file (start-up replay).
    pub fn open_with_history(
        path: &Path,
        agent: AgentId,
    ) -> Result<(Self, Vec<Record>), AuditError> {
        Self::open_with(path, agent, Options::default())
    }

    /// Opens with `opts`, repairing a torn tail; returns the history too.
    pub fn open_with(
        path: &Path,
        agent: AgentId,
        opts: Options,
    ) -> Result<(Self, Vec<Record>), AuditError> {
        let io = |source| AuditError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut index = Index::new(path);
        let mut history = Vec::new();
        let (mut last_checkpoint, mut unsealed, mut unsealed_since) = (None, 0u64, None);
        let walked = chain::walk_set(path, |n, r, offset, len| {
            index.push_old(n, offset, len, r.at_ms);
            if r.event == checkpoint::EVENT {
                (last_checkpoint, unsealed, unsealed_since) = (Some(r.seq), 0, None);
            } else {
                unsealed += 1;
                unsealed_since.get_or_insert(r.at_ms);
            }
            history.push(r.clone());
        })?;
        index.start_current();
        let repaired = match &walked.torn {
            Some((_, torn)) => Some(repair::repair(path, torn, opts.now.0)?),
            None => None,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        let (next_seq, prev) = match &walked.end {
            Some(l) => (l.seq + 1, l.hash.clone()),
            None => (0, GENESIS.to_owned()),
        };
        let index = Arc::new(RwLock::new(index));
        read::register(path, &index);
        let mut log = Self {
            path: path.to_owned(),
            file,
            agent,
            next_seq,
            prev,
            len: walked.current_good_len,
            opts,
            poisoned: None,
            last_checkpoint,
            unsealed,
            unsealed_since,
            index,
            #[cfg(test)]
            faults: Faults::default(),
        };
        let now = log.opts.now;
        if log.len == 0 && walked.end.is_some() {
            // A crash between the rotation's rename and the new file's first record.
            let body = log.continued_body();
            log.push(now, CONTINUED, body)?;
        }
        if let Some(r) = repaired {
            tracing::error!(file = %r.saved_to.display(), bytes = r.torn.bytes, why = %r.torn.why, "audit log: torn last line cut off and kept aside");
            log.push(now, repair::EVENT, r.body())?;
        }
        Ok((log, history))
    }

    /// Appends one record and fsyncs it. Only after this returns may the action proceed.
    pub fn append(
        &mut self,
        at: UnixMillis,
        event: &str,
        body: Value,
    ) -> Result<Record, AuditError> {
        let record = self.push(at, event, body)?;
        if self.opts.signer.is_some() && self.unsealed >= self.opts.checkpoint_every {
            self.checkpoint(at, Reason::Periodic)?;
        }
        Ok(record)
    }

    /// Writes a checkpoint if records are unsealed for `checkpoint_after_ms` (once a round).
    pub fn seal_if_due(&mut self, at: UnixMillis) -> Result<Option<Record>, AuditError> {
        match self.unsealed_since {
            Some(since) if at.0.saturating_sub(since) >= self.opts.checkpoint_after_ms => {
                self.checkpoint(at, Reason::Periodic)
            }
            _ => Ok(None),
        }
    }

    /// Seals the log at a clean shutdown: the last record is then a shutdown checkpoint.
    pub fn seal_shutdown(&mut self, at: UnixMillis) -> Result<Option<Record>, AuditError> {
        self.checkpoint(at, Reason::Shutdown)
    }

    /// Appends a checkpoint sealing the head (nothing without a key or before any record).
    fn checkpoint(&mut self, at: UnixMillis, reason: Reason) -> Result<Option<Record>, AuditError> {
        let Some(key) = self.opts.signer.clone() else {
            return Ok(None);
        };
        if self.next_seq == 0 {
            return Ok(None);
        }
        let body = checkpoint::body(
            &key,
            self.agent.as_str(),
            self.next_seq - 1,
            &self.prev,
            at.0,
            reason,
        );
        let r = self.push(at, checkpoint::EVENT, body)?;
        metrics::gauge!(crate::telemetry::AUDIT_CHECKPOINT_SEQ).set(r.seq as f64);
        Ok(Some(r))
    }

    /// The seq of the last checkpoint in the log, if any.
    #[must_use]
    pub fn last_checkpoint(&self) -> Option<u64> {
        self.last_checkpoint
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn continued_body(&self) -> Value {
        let previous = files::numbered(&self.path, 1);
        json!({
            "previous_file": previous.file_name().map(|n| n.to_string_lossy().into_owned()),
            "previous_seq": self.next_seq.checked_sub(1),
            "previous_hash": self.prev,
        })
    }

    /// Writes one record (rotating first when it would not fit), without the checkpoint
    /// policy.
    fn push(&mut self, at: UnixMillis, event: &str, body: Value) -> Result<Record, AuditError> {
        if let Some(why) = &self.poisoned {
            return Err(AuditError::Poisoned {
                path: self.path.clone(),
                why: why.clone(),
            });
        }
        let record = self.record(at, event, body);
        let mut line = serde_json::to_vec(&record).map_err(|e| AuditError::Corrupt {
            line: record.seq,
            why: e.to_string(),
        })?;
        if self.len > 0
            && self.len + line.len() as u64 + 1 > self.opts.rotate_bytes
            && event != checkpoint::EVENT
        {
            self.rotate(at)?;
            return self.push(at, event, record.body);
        }
        let hash = sha_hex(&line);
        line.push(b'\n');
        self.write_line(&line)?;
        self.index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(self.len, line.len() as u64, at.0);
        self.len += line.len() as u64;
        self.next_seq += 1;
        self.prev = hash;
        if event == checkpoint::EVENT {
            (self.last_checkpoint, self.unsealed, self.unsealed_since) =
                (Some(record.seq), 0, None);
        } else {
            self.unsealed += 1;
            self.unsealed_since.get_or_insert(at.0);
        }
        Ok(record)
    }

    fn record(&self, at: UnixMillis, event: &str, body: Value) -> Record {
        Record {
            seq: self.next_seq,
            prev: self.prev.clone(),
            at_ms: at.0,
            agent: self.agent.to_string(),
            event: event.to_owned(),
            body,
        }
    }

    /// One `write` of the whole line, then fsync; on any error the file is cut back.
    fn write_line(&mut self, line: &[u8]) -> Result<(), AuditError> {
        let written = self.write_once(line).and_then(|n| {
            if n == line.len() {
                self.file.sync_data()
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    format!("short write: {n} of {} bytes (disk full?)", line.len()),
                ))
            }
        });
        let Err(e) = written else {
            return Ok(());
        };
        if let Err(t) = self.truncate(self.len) {
            self.poisoned = Some(format!(
                "{e}; cutting the file back to {} bytes failed: {t}",
                self.len
            ));
            tracing::error!(path = %self.path.display(), error = %e, truncate_error = %t, "audit log poisoned");
        }
        Err(AuditError::Io {
            path: self.path.clone(),
            source: e,
        })
    }

    #[cfg(not(test))]
    fn write_once(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.file.write(line)
    }

    #[cfg(test)]
    fn write_once(&mut self, line: &[u8]) -> std::io::Result<usize> {
        if self.faults.disk_full {
            return Err(std::io::Error::other("injected: no space left on device"));
        }
        match self.faults.short_write.take() {
            Some(n) => self.file.write(&line[..n.min(line.len())]),
            None => self.file.write(line),
        }
    }

    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        #[cfg(test)]
        if self.faults.fail_truncate {
            return Err(std::io::Error::other("injected truncate failure"));
        }
        self.file.set_len(len)?;
        self.file.sync_data()
    }

    /// Tests: every later append fails as on a full disk, until
    /// [`reopen_for_test`](Self::reopen_for_test).
    #[cfg(test)]
    pub(crate) fn fail_writes_for_test(&mut self) {
        self.faults.disk_full = true;
    }

    /// Tests: appends reach the disk again.
    #[cfg(test)]
    pub(crate) fn reopen_for_test(&mut self) {
        self.faults.disk_full = false;
    }

    /// Seals and renames `audit.jsonl` to `.1` and starts a new file continuing the chain.
    fn rotate(&mut self, at: UnixMillis) -> Result<(), AuditError> {
        if self.unsealed > 0 {
            self.checkpoint(at, Reason::Rotation)?;
        }
        let renamed = {
            let mut index = self
                .index
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let r = files::rotate(&self.path, self.opts.keep_files).and_then(|()| {
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
            });
            if r.is_ok() {
                index.rotated(self.opts.keep_files);
            }
            r
        };
        match renamed {
            Ok(file) => {
                self.file = file;
                self.len = 0;
            }
            Err(e) => {
                // Part of the renames may have happened: a restart sorts the files out.
                self.poisoned = Some(format!("rotation failed: {e}"));
                return Err(AuditError::Io {
                    path: self.path.clone(),
                    source: e,
                });
            }
        }
        let body = self.continued_body();
        self.push(at, CONTINUED, body).map(|_| ())
    }
}
