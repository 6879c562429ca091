//! Reading recent audit records while the agent keeps appending to the log.
//!
//! Unlike [`crate::audit::read_records`] (start-up replay, which checks the hash chain and
//! refuses a torn line), this serves `GET /v1/audit` and a drill's verdict while appends go
//! on: a last line without its newline is still being written and is left out, and the chain
//! is not re-checked (`quorumgate verify --audit` does that).

use std::path::Path;

use crate::audit::Record;

/// Records with `at_ms >= since_ms`, oldest first, at most `limit`; and whether more matched.
pub fn read_since(
    path: &Path,
    since_ms: u64,
    limit: usize,
) -> std::io::Result<(Vec<Record>, bool)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), false)),
        Err(e) => return Err(e),
    };
    let complete = match bytes.iter().rposition(|b| *b == b'\n') {
        Some(end) => &bytes[..end],
        None => &[][..],
    };
    let mut out = Vec::new();
    for line in complete.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(record) = serde_json::from_slice::<Record>(line) else {
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
    Ok((out, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_complete_lines_since_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let line = |seq: u64, at: u64| {
            format!(
                r#"{{"seq":{seq},"prev":"x","at_ms":{at},"agent":"a","event":"e","body":{{}}}}"#
            )
        };
        let text = format!(
            "{}\n{}\n{}\n{}",
            line(0, 10),
            line(1, 20),
            line(2, 30),
            &line(3, 40)[..20]
        );
        std::fs::write(&path, text).expect("write");
        let (records, more) = read_since(&path, 20, 10).expect("read");
        assert_eq!(
            records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [1, 2],
            "the torn line is left out"
        );
        assert!(!more);
        let (records, more) = read_since(&path, 0, 2).expect("read");
        assert_eq!((records.len(), more), (2, true));
        assert_eq!(
            read_since(&dir.path().join("none"), 0, 1).expect("read").0,
            []
        );
    }
}
