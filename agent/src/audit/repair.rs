//! Torn-tail repair at open: a crash in the middle of an append leaves a last line that is
//! not a complete record. Its bytes are kept in `audit.jsonl.torn-<at_ms>` (fsynced), the log
//! is cut back to its last good record, and the caller appends an `audit_torn_tail` record
//! naming the side file, the byte count and the SHA-256 of what was dropped.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::chain::Torn;
use super::{files, AuditError};

pub const EVENT: &str = "audit_torn_tail";

/// What a repair dropped.
#[derive(Debug, Clone)]
pub struct Repaired {
    pub torn: Torn,
    pub saved_to: PathBuf,
    pub sha256: String,
}

impl Repaired {
    /// The `audit_torn_tail` record's body.
    #[must_use]
    pub fn body(&self) -> Value {
        json!({
            "bytes": self.torn.bytes,
            "sha256": self.sha256,
            "offset": self.torn.offset,
            "line": self.torn.line,
            "why": self.torn.why,
            "saved_to": self.saved_to.file_name().map(|n| n.to_string_lossy().into_owned()),
        })
    }
}

/// Moves the torn tail of `path` into a side file and truncates `path` before it.
pub fn repair(path: &Path, torn: &Torn, at_ms: u64) -> Result<Repaired, AuditError> {
    let io = |p: &Path| {
        let p = p.to_owned();
        move |source| AuditError::Io { path: p, source }
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io(path))?;
    file.seek(SeekFrom::Start(torn.offset)).map_err(io(path))?;
    // The torn tail is at most one line; cap what is kept in memory anyway.
    let mut dropped = Vec::new();
    (&mut file)
        .take(torn.bytes.min(64 * 1024 * 1024))
        .read_to_end(&mut dropped)
        .map_err(io(path))?;
    let sha256 = hex::encode(Sha256::digest(&dropped));
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".torn-{at_ms}"));
    let mut saved_to = path.with_file_name(&name);
    let mut k = 0;
    while saved_to.exists() && k < 1000 {
        k += 1;
        let mut n = name.clone();
        n.push(format!("-{k}"));
        saved_to = path.with_file_name(n);
    }
    let mut side = File::create_new(&saved_to).map_err(io(&saved_to))?;
    side.write_all(&dropped).map_err(io(&saved_to))?;
    side.sync_all().map_err(io(&saved_to))?;
    files::sync_dir(path).map_err(io(path))?;
    file.set_len(torn.offset).map_err(io(path))?;
    file.sync_all().map_err(io(path))?;
    Ok(Repaired {
        torn: torn.clone(),
        saved_to,
        sha256,
    })
}
