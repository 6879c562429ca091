//! Walking the hash chain through one file, then through the set of files of a log.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::{files, sha_hex, AuditError, Record, GENESIS};

/// The last record walked: what the next record must continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub seq: u64,
    pub hash: String,
}

/// A last line that is not a complete record continuing the chain: what a crash in the
/// middle of an append leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Torn {
    /// Where the torn bytes start (the end of the last good record).
    pub offset: u64,
    pub bytes: u64,
    /// 1-based line number in its file.
    pub line: u64,
    pub why: String,
}

/// One file walked.
#[derive(Debug, Clone, Default)]
pub struct FileWalk {
    /// The last good record, or the `start` given when there was none.
    pub end: Option<Link>,
    pub records: u64,
    /// Bytes up to the end of the last good record.
    pub good_len: u64,
    pub torn: Option<Torn>,
}

/// Walks one file, continuing `start` (`None`: the oldest file kept, whose first record may
/// begin anywhere but at seq 0 must follow the genesis hash). Hands each good record and its
/// byte offset and length (with its newline) to `each`. Only the last line may be torn
/// (not a record, or without its newline: reported as [`Torn`]); a torn line with more after
/// it, or a complete record that does not continue the chain, is [`AuditError::Broken`].
pub fn walk_file(
    path: &Path,
    start: Option<&Link>,
    mut each: impl FnMut(&Record, u64, u64),
) -> Result<FileWalk, AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_owned(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(io)?);
    let mut out = FileWalk {
        end: start.cloned(),
        ..FileWalk::default()
    };
    let mut offset = 0u64;
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io)? as u64;
        if n == 0 {
            return Ok(out);
        }
        line_no += 1;
        let terminated = buf.last() == Some(&b'\n');
        let line = if terminated {
            &buf[..buf.len() - 1]
        } else {
            &buf[..]
        };
        if line.is_empty() && terminated {
            offset += n;
            out.good_len = offset;
            continue;
        }
        let parsed = serde_json::from_slice::<Record>(line);
        let checked = match (&parsed, terminated) {
            // A complete record that does not continue the chain is no crash artefact (an
            // append writes whole records in order): broken, wherever it is.
            (Ok(r), true) => match check(r, out.end.as_ref()) {
                Ok(()) => None,
                Err(why) => {
                    return Err(AuditError::Broken {
                        path: path.to_owned(),
                        line: line_no,
                        why,
                    })
                }
            },
            (Ok(_), false) => Some("the line has no newline (an append cut short)".to_owned()),
            (Err(e), _) => Some(format!("not a record: {e}")),
        };
        if let Some(why) = checked {
            // Torn only if nothing but this line follows.
            let mut rest = 0u64;
            loop {
                let chunk = reader.fill_buf().map_err(io)?;
                if chunk.is_empty() {
                    break;
                }
                let k = chunk.len();
                rest += k as u64;
                reader.consume(k);
            }
            if rest > 0 {
                return Err(AuditError::Broken {
                    path: path.to_owned(),
                    line: line_no,
                    why,
                });
            }
            out.torn = Some(Torn {
                offset,
                bytes: n,
                line: line_no,
                why,
            });
            return Ok(out);
        }
        let Ok(record) = parsed else {
            return Ok(out);
        };
        each(&record, offset, n);
        out.end = Some(Link {
            seq: record.seq,
            hash: sha_hex(line),
        });
        out.records += 1;
        offset += n;
        out.good_len = offset;
    }
}

/// Why `record` does not continue `prev`, if it does not.
fn check(record: &Record, prev: Option<&Link>) -> Result<(), String> {
    match prev {
        Some(p) => {
            if record.seq != p.seq + 1 {
                return Err(format!(
                    "seq {} where {} was expected",
                    record.seq,
                    p.seq + 1
                ));
            }
            if record.prev != p.hash {
                return Err("hash chain broken: prev does not match the previous line".into());
            }
        }
        None if record.seq == 0 && record.prev != GENESIS => {
            return Err(
                "hash chain broken: the first record does not follow the genesis hash".into(),
            );
        }
        None => {}
    }
    Ok(())
}

/// Every file of the log walked in order, the chain carried across them.
#[derive(Debug, Clone, Default)]
pub struct SetWalk {
    pub files: Vec<PathBuf>,
    pub end: Option<Link>,
    /// The seq the oldest kept record has (older files rotated away when > 0).
    pub first_seq: Option<u64>,
    /// A torn last line of `audit.jsonl`, and that file's length up to its last good record.
    pub torn: Option<(PathBuf, Torn)>,
    pub current_good_len: u64,
}

/// Walks every file of the log at `path`, oldest first; `each` gets the file's number (0 for
/// `audit.jsonl`), each record and its offset. A torn line in a rotated file is
/// [`AuditError::Broken`]: rotation happens only after a complete append.
pub fn walk_set(
    path: &Path,
    mut each: impl FnMut(u64, &Record, u64, u64),
) -> Result<SetWalk, AuditError> {
    let listed = files::list(path).map_err(|source| AuditError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut out = SetWalk::default();
    for (n, file) in listed {
        let mut first = None;
        let walked = walk_file(&file, out.end.as_ref(), |r, off, len| {
            first.get_or_insert(r.seq);
            each(n, r, off, len);
        })?;
        if out.first_seq.is_none() {
            out.first_seq = first;
        }
        if let Some(t) = walked.torn {
            if n != 0 {
                return Err(AuditError::Broken {
                    path: file,
                    line: t.line,
                    why: t.why,
                });
            }
            out.torn = Some((file.clone(), t));
        }
        if n == 0 {
            out.current_good_len = walked.good_len;
        }
        out.end = walked.end;
        out.files.push(file);
    }
    Ok(out)
}

/// Every record of a log (all its kept files), in order, after checking the chain (a torn
/// last line, still being written or left by a crash, is left out).
pub fn read_records(path: &Path) -> Result<Vec<Record>, AuditError> {
    let mut records = Vec::new();
    walk_set(path, |_, r, _, _| records.push(r.clone()))?;
    Ok(records)
}
