//! Corpus replay for the `config` fuzz target, on stable Rust in the normal suite: every file
//! in `fuzz/corpus/config/` goes through exactly the function the fuzz target calls
//! ([`config::fuzzing::config`]), so a crash found once and committed stays fixed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use config::fuzzing::{self, Outcome};

/// At least the hand-written seeds; the fuzzer's additions only add to it.
const MIN_FILES: usize = 8;

#[test]
fn config_corpus_replays_without_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= MIN_FILES,
        "{} holds {} files; expected at least {MIN_FILES}",
        dir.display(),
        files.len()
    );
    let mut outcomes = Vec::new();
    for path in &files {
        let bytes = std::fs::read(path).expect("read corpus file");
        let outcome = catch_unwind(AssertUnwindSafe(|| fuzzing::config(&bytes)))
            .unwrap_or_else(|_| panic!("fuzz target config panicked on {}", path.display()));
        let name = path.file_name().expect("file name").to_string_lossy();
        outcomes.push((name.into_owned(), outcome));
    }
    let of = |name: &str| {
        outcomes
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("corpus file {name} is missing"))
            .1
    };
    // The seeds reach both ends: full validation, and refusals with errors.
    assert_eq!(of("seed-example.toml"), Outcome::Valid);
    assert_eq!(of("seed-every-section.toml"), Outcome::Valid);
    assert!(matches!(of("seed-syntax-error.toml"), Outcome::Invalid(n) if n >= 1));
    assert!(matches!(of("seed-bad-values.toml"), Outcome::Invalid(n) if n >= 3));
}
