//! Reading records since a time while the agent keeps appending, without loading the log.
//!
//! The open [`AuditLog`](super::AuditLog) keeps a sparse index: per file, one entry every
//! [`BLOCK_RECORDS`] records with the block's byte offset and its largest `at_ms`. A read for
//! `since` starts at the first block whose largest `at_ms` reaches `since` (exact even if the
//! clock stepped back: every earlier block holds only older records), and stops after
//! `limit` records. The index of a log open in this process is found by the log's path;
//! without one (the log is not open here), every kept file is streamed from its start.
//! Only complete lines are read: a last line still being written is left out, and the chain
//! is not re-checked (`quorumgate verify --audit` does that).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};

use super::{files, Record};

/// Records per index entry.
pub const BLOCK_RECORDS: u32 = 256;

#[derive(Debug, Clone, Copy)]
struct Block {
    offset: u64,
    records: u32,
    max_at_ms: u64,
}

#[derive(Debug, Default)]
struct FileIndex {
    /// Generation: the current file's is the highest; `audit.jsonl.N` has `current - N`.
    generation: u64,
    blocks: Vec<Block>,
    /// End of the last complete record.
    end: u64,
}

/// The sparse index of one log (every kept file).
#[derive(Debug)]
pub struct Index {
    path: PathBuf,
    files: VecDeque<FileIndex>,
}

pub type SharedIndex = Arc<RwLock<Index>>;

impl Index {
    #[must_use]
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            files: VecDeque::from([FileIndex::default()]),
        }
    }

    /// A record of `len` bytes (with its newline) at `offset` of the current file.
    pub fn push(&mut self, offset: u64, len: u64, at_ms: u64) {
        let Some(f) = self.files.back_mut() else {
            return;
        };
        match f.blocks.last_mut() {
            Some(b) if b.records < BLOCK_RECORDS => {
                b.records += 1;
                b.max_at_ms = b.max_at_ms.max(at_ms);
            }
            _ => f.blocks.push(Block {
                offset,
                records: 1,
                max_at_ms: at_ms,
            }),
        }
        f.end = offset + len;
    }

    /// A record of an older file, read at open (`n` as in [`files::numbered`]).
    pub fn push_old(&mut self, n: u64, offset: u64, len: u64, at_ms: u64) {
        let generation = u64::MAX / 2 - n;
        if self.files.back().map(|f| f.generation) != Some(generation) {
            if self.files.back().is_some_and(|f| f.blocks.is_empty()) {
                self.files.pop_back();
            }
            self.files.push_back(FileIndex {
                generation,
                ..FileIndex::default()
            });
        }
        self.push(offset, len, at_ms);
    }

    /// The current file starts from here (after open walked every file).
    pub fn start_current(&mut self) {
        let generation = u64::MAX / 2;
        if self.files.back().map(|f| f.generation) != Some(generation) {
            if self.files.back().is_some_and(|f| f.blocks.is_empty()) {
                self.files.pop_back();
            }
            self.files.push_back(FileIndex {
                generation,
                ..FileIndex::default()
            });
        }
    }

    /// `audit.jsonl` became `.1`; a new, empty current file; files beyond `keep` dropped.
    pub fn rotated(&mut self, keep: u64) {
        let next = self.files.back().map_or(0, |f| f.generation + 1);
        self.files.push_back(FileIndex {
            generation: next,
            ..FileIndex::default()
        });
        while self.files.len() as u64 > keep + 1 {
            self.files.pop_front();
        }
    }

    /// Open handles on the files (oldest first) from the first block that may hold a record
    /// at or after `since_ms`, with the byte range to read. Called under the read lock, so a
    /// rotation cannot rename a file between the lookup and the open.
    fn plan(&self, since_ms: u64) -> std::io::Result<Vec<(File, u64, u64)>> {
        let current = self.files.back().map_or(0, |f| f.generation);
        let mut out = Vec::new();
        for f in &self.files {
            let start = if out.is_empty() {
                match f.blocks.iter().find(|b| b.max_at_ms >= since_ms) {
                    Some(b) => b.offset,
                    None => continue,
                }
            } else {
                0
            };
            let path = files::numbered(&self.path, current - f.generation);
            match File::open(&path) {
                Ok(file) => out.push((file, start, f.end)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// The indexes of the logs open in this process, by path.
static OPEN: Mutex<Vec<(PathBuf, Weak<RwLock<Index>>)>> = Mutex::new(Vec::new());

/// Makes `index` the one reads of `path` use.
pub fn register(path: &Path, index: &SharedIndex) {
    let mut open = OPEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    open.retain(|(p, w)| p != path && w.strong_count() > 0);
    open.push((path.to_owned(), Arc::downgrade(index)));
}

fn registered(path: &Path) -> Option<SharedIndex> {
    let open = OPEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    open.iter()
        .find(|(p, _)| p == path)
        .and_then(|(_, w)| w.upgrade())
}

/// Records with `at_ms >= since_ms`, oldest first, at most `limit`; and whether more matched.
pub fn read_since(
    path: &Path,
    since_ms: u64,
    limit: usize,
) -> std::io::Result<(Vec<Record>, bool)> {
    let plan = match registered(path) {
        Some(index) => index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .plan(since_ms)?,
        None => unindexed(path)?,
    };
    let mut out = Vec::new();
    for (mut file, start, end) in plan {
        file.seek(SeekFrom::Start(start))?;
        let mut reader = BufReader::new(file.take(end.saturating_sub(start)));
        let mut buf = Vec::new();
        loop {
            buf.clear();
            if reader.read_until(b'\n', &mut buf)? == 0 || buf.last() != Some(&b'\n') {
                break;
            }
            let Ok(record) = serde_json::from_slice::<Record>(&buf[..buf.len() - 1]) else {
                continue;
            };
            if record.at_ms < since_ms {
                continue;
            }
            if out.len() == limit {
                return Ok((out, true));
            }
            out.push(record);
        }
    }
    Ok((out, false))
}

/// Every kept file, whole (the log is not open in this process).
fn unindexed(path: &Path) -> std::io::Result<Vec<(File, u64, u64)>> {
    let mut out = Vec::new();
    for (_, p) in files::list(path)? {
        match File::open(&p) {
            Ok(f) => {
                let len = f.metadata()?.len();
                out.push((f, 0, len));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
