//! Corpus replay for the `http` fuzz target, on stable Rust in the normal suite: every file in
//! `fuzz/corpus/http/` is sent as one connection's byte stream through exactly the function
//! the fuzz target calls ([`quorumgate::fuzzing::HttpHarness::run`]): hyper's parser, the
//! agent's router and limits, `POST`/`GET /v1/ballots`, and a peer's pull of what was accepted.
//!
//! The `seed-*` files are generated: `cargo test -p quorumgate --test fuzz_corpus -- --ignored
//! write_seeds` rewrites them; `seeds_are_committed` fails when they went stale (the config
//! digest or the wire format moved).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use quorumgate::fuzzing::{http_seeds, HttpHarness, HttpRun};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/http")
}

fn status_lines(run: &HttpRun) -> Vec<String> {
    String::from_utf8_lossy(&run.response)
        .lines()
        .filter(|l| l.starts_with("HTTP/1.1 "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn http_corpus_replays_without_panic() {
    let dir = corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let min = http_seeds().len();
    assert!(
        files.len() >= min,
        "{} holds {} files; expected at least {min}",
        dir.display(),
        files.len()
    );
    let harness = HttpHarness::new();
    let mut runs = Vec::new();
    for path in &files {
        let bytes = std::fs::read(path).expect("read corpus file");
        let run = catch_unwind(AssertUnwindSafe(|| harness.run(&bytes)))
            .unwrap_or_else(|_| panic!("fuzz target http panicked on {}", path.display()));
        let name = path.file_name().expect("file name").to_string_lossy();
        runs.push((name.into_owned(), run));
    }
    let of = |name: &str| {
        &runs
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("corpus file {name} is missing"))
            .1
    };
    // The seeds reach the book through the real server: accepted, pulled by the peer, served.
    let valid = of("seed-post_valid");
    assert_eq!(valid.held, 1);
    assert_eq!(status_lines(valid), ["HTTP/1.1 202 Accepted"]);
    let two = of("seed-post_two_then_get");
    assert_eq!(two.held, 2);
    assert_eq!(status_lines(two).len(), 3, "{:?}", status_lines(two));
    assert_eq!(
        status_lines(of("seed-post_duplicate")),
        ["HTTP/1.1 202 Accepted", "HTTP/1.1 200 OK"]
    );
    assert_eq!(of("seed-post_chunked").held, 1);
    assert_eq!(of("seed-post_forged").held, 0);
    assert_eq!(
        status_lines(of("seed-post_declared_too_large")),
        ["HTTP/1.1 413 Payload Too Large"]
    );
    assert_eq!(
        status_lines(of("seed-post_body_too_large")),
        ["HTTP/1.1 413 Payload Too Large"]
    );
}

#[test]
fn seeds_are_committed() {
    for (name, bytes) in http_seeds() {
        let path = corpus_dir().join(format!("seed-{name}"));
        let committed = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; regenerate the seeds", path.display()));
        assert!(
            committed == bytes,
            "{} is stale; regenerate the seeds",
            path.display()
        );
    }
}

/// Writes the generated seeds into `fuzz/corpus/http` (run by hand after a format change).
#[test]
#[ignore = "writes into fuzz/corpus; run by hand"]
fn write_seeds() {
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).expect("create corpus dir");
    for (name, bytes) in http_seeds() {
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
    }
}
