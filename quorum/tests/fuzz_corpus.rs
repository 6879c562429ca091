//! Corpus replay for the `ballot` and `operator` fuzz targets, on stable Rust in the normal
//! suite: every file in `fuzz/corpus/<target>/` goes through exactly the function the fuzz
//! target calls (`quorum::fuzzing::*`), so a crash found once and committed stays fixed.
//!
//! The seeds are generated, not hand-made: `cargo test -p quorum --test fuzz_corpus --
//! --ignored write_seeds` rewrites `seed-*` files (ed25519 signing is deterministic, so the
//! bytes are stable); `seeds_are_committed` fails when the wire format moved and they are stale.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use quorum::fuzzing::{self, Reached};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Feeds every corpus file to `run`; fails naming the first file that panics, and when fewer
/// than `min` files exist (a vanished corpus must not pass silently).
fn replay(target: &str, min: usize, run: impl Fn(&[u8]) -> Reached) -> Vec<(String, Reached)> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= min,
        "{} holds {} files; expected at least {min} (regenerate the seeds: see this file's docs)",
        dir.display(),
        files.len()
    );
    files
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).expect("read corpus file");
            let name = path.file_name().expect("file name").to_string_lossy();
            let reached = catch_unwind(AssertUnwindSafe(|| run(&bytes)))
                .unwrap_or_else(|_| panic!("fuzz target {target} panicked on {}", path.display()));
            (name.into_owned(), reached)
        })
        .collect()
}

fn reached<'a>(runs: &'a [(String, Reached)], name: &str) -> &'a Reached {
    &runs
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("corpus file {name} is missing"))
        .1
}

#[test]
fn ballot_corpus_replays_without_panic() {
    let runs = replay("ballot", fuzzing::ballot_seeds().len(), fuzzing::ballot);
    // The seeds get past the signature: three members' ballots make a verified certificate.
    let q = reached(&runs, "seed-quorum_of_three");
    assert_eq!(q.accepted, 3);
    assert!(q.certificates >= 2, "{q:?}");
    assert_eq!(reached(&runs, "seed-harness_signed_quorum").accepted, 3);
    assert_eq!(reached(&runs, "seed-replay").accepted, 1);
    assert_eq!(reached(&runs, "seed-validity_too_long").accepted, 0);
    assert_eq!(reached(&runs, "seed-bad_signature").accepted, 0);
}

#[test]
fn operator_corpus_replays_without_panic() {
    let runs = replay(
        "operator",
        fuzzing::operator_seeds().len(),
        fuzzing::operator_command,
    );
    assert_eq!(reached(&runs, "seed-freeze").accepted, 1);
    assert_eq!(reached(&runs, "seed-drill_then_abort").accepted, 2);
    assert_eq!(reached(&runs, "seed-duplicate_then_replay").accepted, 1);
    assert_eq!(reached(&runs, "seed-unaudited_then_resent").accepted, 1);
    assert_eq!(reached(&runs, "seed-unknown_operator").accepted, 0);
    assert_eq!(reached(&runs, "seed-wrong_cluster").accepted, 0);
    assert_eq!(reached(&runs, "seed-old_version").accepted, 0);
    assert!(reached(&runs, "seed-harness_signed_all_actions").accepted >= 5);
}

fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut all = Vec::new();
    for (n, b) in fuzzing::ballot_seeds() {
        all.push(("ballot", n, b));
    }
    for (n, b) in fuzzing::operator_seeds() {
        all.push(("operator", n, b));
    }
    all
}

#[test]
fn seeds_are_committed() {
    for (target, name, bytes) in seeds() {
        let path = corpus_dir(target).join(format!("seed-{name}"));
        let committed = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; regenerate the seeds", path.display()));
        assert!(
            committed == bytes,
            "{} is stale; regenerate the seeds",
            path.display()
        );
    }
}

/// Writes the generated seeds into `fuzz/corpus/` (run by hand after a wire-format change).
#[test]
#[ignore = "writes into fuzz/corpus; run by hand"]
fn write_seeds() {
    for (target, name, bytes) in seeds() {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).expect("create corpus dir");
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
    }
}
