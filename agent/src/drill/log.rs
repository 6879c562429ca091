//! Reading recent audit records while the agent keeps appending to the log: `GET /v1/audit`
//! and a drill's verdict. See [`crate::audit::read`]: through the open log's sparse index,
//! from the first record at or after `since`, complete lines only, across rotated files.

pub use crate::audit::read::read_since;

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
